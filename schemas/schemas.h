/* schemas/schemas.h - private header of the wire module: Celery protocol v2 +
 * msgpack task messages, rpc/redis result messages, hard limits on untrusted
 * input, and task argument schemas. Depends on msgpack-c and the public
 * warren/error.h and warren/params.h only; knows nothing of AMQP or rabbitmq-c.
 *
 * AMQP headers cross into and out of this module as a msgpack map (packed
 * bytes); broker-adapter/ converts that map to and from an AMQP table.
 *
 * Sections are owned by different files; keep each section's declarations
 * together under its banner.
 */
#ifndef WARREN_SCHEMAS_H
#define WARREN_SCHEMAS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <msgpack.h>

#include "warren/error.h"
#include "warren/params.h"

/* ==== limits and checked decoding (schemas/limits.c, schemas/decode.c) ==== */

/* Hard limits on untrusted input. Every decoder of bytes that came over the
 * network takes one; schema_limits_default() gives the safe defaults. */
typedef struct schema_limits {
	size_t max_body;    /* bytes in one message body (default 16 MiB) */
	unsigned max_depth; /* nesting of arrays/maps (default 64) */
	size_t max_elems;   /* elements in one array or pairs in one map (default 1,000,000) */
	size_t max_str;     /* bytes in one str/bin/ext (default 8 MiB) */
} schema_limits;

void schema_limits_default(schema_limits *lim);

#define SCHEMA_DEPTH_CEILING 1024

/* The value stored under str key `key` in map, or NULL if map is not a map
 * or has no such key (the first one wins if a key repeats). */
const msgpack_object *schema_map_get(const msgpack_object *map, const char *key);

/* "nil", "bool", "int", "float", "str", "bin", "ext", "array", "map" for
 * error messages. Static storage. */
const char *schema_obj_type_name(const msgpack_object *obj);

/* A NUL-terminated copy of s[0..len) in zone, living as long as the zone;
 * NULL when out of memory. */
char *schema_zone_strndup(msgpack_zone *zone, const char *s, size_t len);

/* Decodes exactly one msgpack value filling all of data[0..len) into objects
 * allocated from zone (owned by the caller, who frees it with
 * msgpack_zone_free / msgpack_zone_destroy). `what` names the input in error
 * messages ("body"), and a violation names the path:
 * "body: nesting deeper than 64 at [0][3]". Never allocates more than a small
 * multiple of len, whatever the input claims. str, bin and ext payloads are
 * copied into the zone (the AMQP envelope they came from is freed soon
 * after); a str copy is followed by a NUL not counted in its size, so a str
 * without embedded NULs can be used as a C string. lim->max_depth above
 * SCHEMA_DEPTH_CEILING is treated as the ceiling (the decoder recurses).
 * Returns 0, WARREN_EDECODE, WARREN_ELIMIT or WARREN_ENOMEM. */
int schema_unpack(const void *data, size_t len, const schema_limits *lim,
		  const char *what, msgpack_zone *zone, msgpack_object *out,
		  warren_error *err);

/* ==== task messages (schemas/task.c, schemas/signature.c) ==== */

/* One Celery protocol v2 task message as Celery 5.2 sends it (celery/app/amqp.py
 * as_task_v2): AMQP basic properties, the application headers and the msgpack
 * body [args, kwargs, embed].
 *
 * Wire format note: this is Celery task protocol 2 with the msgpack
 * serializer. When Celery adds or changes a header or an embed key, update
 * schemas/task.c (header table and its order), schemas/signature.c, rerun
 * tests/interop/gen_celery_fixtures.py and bump SCHEMA_TASK_PROTOCOL if the
 * protocol number itself changes. */
#define SCHEMA_TASK_PROTOCOL 2
#define SCHEMA_CONTENT_TYPE "application/x-msgpack"
#define SCHEMA_CONTENT_ENCODING "binary"
#define SCHEMA_REPR_MAX 1024 /* argsrepr/kwargsrepr, as Celery's saferepr */

/* AMQP basic properties of a task message. As decode input every string is
 * borrowed and copied; inside a schema_task_msg they live in the message's
 * zone; as encode output they point into the message or at static strings. */
typedef struct schema_task_props {
	const char *correlation_id;   /* task id */
	const char *content_type;     /* must be SCHEMA_CONTENT_TYPE */
	const char *content_encoding; /* "binary"; ignored on decode, as kombu does */
	const char *reply_to;         /* client reply queue; "" or NULL if none */
	const char *expiration;       /* per-message TTL, string ms; NULL if none */
	bool has_priority;
	uint8_t priority;             /* 0-9 conventional */
	bool has_delivery_mode;
	uint8_t delivery_mode;        /* 2 = persistent */
} schema_task_props;

/* A signature dict (celery/canvas.py Signature): a task to run later with
 * these arguments and apply_async options. Composites (subtask_type "group",
 * "chain", "chord") are decoded into `tasks` / `body` as well; their kwargs
 * object is kept whole. */
typedef struct schema_signature schema_signature;
struct schema_signature {
	const char *task;         /* "tasks.add", or "celery.group" ... */
	msgpack_object args;      /* array */
	msgpack_object kwargs;    /* map; a composite's own kwargs as received */
	msgpack_object options;   /* map: task_id, reply_to, link, group_id, ... */
	const char *subtask_type; /* NULL, "group", "chain" or "chord" */
	bool immutable;
	/* group, chain: kwargs.tasks; chord: the header's tasks (kwargs.header,
	 * a group signature or a list). NULL/0 for a plain task. */
	schema_signature *tasks;
	size_t n_tasks;
	schema_signature *body;   /* chord: kwargs.body; else NULL */
};

/* A task message. Every pointer (strings, msgpack objects, signatures) lives
 * in `zone` and dies with schema_task_msg_free(); to set a string field, copy
 * it in with schema_task_msg_strdup(). NULL string = absent (sent as nil). */
typedef struct schema_task_msg {
	schema_task_props props;

	/* headers, in as_task_v2 order */
	const char *lang;      /* "py" from Celery, "c" from warren */
	const char *task;      /* required */
	const char *id;        /* required */
	const char *shadow;
	const char *eta;       /* ISO-8601 as sent; not parsed here */
	const char *expires;   /* ISO-8601 as sent */
	const char *group;
	bool has_group_index;
	int64_t group_index;   /* position in a chord header */
	int64_t retries;
	/* timelimit header [hard, soft], in that order (CELERY-WIRE §0.2). */
	bool has_time_limit;
	double time_limit;
	bool has_soft_time_limit;
	double soft_time_limit;
	const char *root_id;   /* encode sends id when NULL */
	const char *parent_id;
	const char *argsrepr;  /* encode computes it from args when NULL */
	const char *kwargsrepr;
	const char *origin;
	bool ignore_result;

	/* body [args, kwargs, embed] */
	msgpack_object args;   /* array */
	msgpack_object kwargs; /* map */
	schema_signature *callbacks; /* embed.callbacks (link); n == 0: nil */
	size_t n_callbacks;
	schema_signature *errbacks;  /* embed.errbacks (link_error) */
	size_t n_errbacks;
	schema_signature *chain;     /* embed.chain: remaining steps, last runs next */
	size_t n_chain;
	schema_signature *chord;     /* embed.chord: the chord body; NULL if none */

	msgpack_zone *zone;          /* owns everything above */
} schema_task_msg;

/* Decodes one delivered task message. props, headers (a packed msgpack map,
 * as broker-adapter/ converts the AMQP table) and body are borrowed; the
 * result copies what it keeps. Unknown headers and embed keys are ignored.
 * On success *out is a new message the caller frees with
 * schema_task_msg_free(). Returns 0, WARREN_EDECODE (wrong content type,
 * missing or mistyped header, body not [args, kwargs, embed]), WARREN_ELIMIT
 * or WARREN_ENOMEM; err names the header or body path at fault. */
int schema_task_decode(const schema_task_props *props, const void *headers,
		       size_t headers_len, const void *body, size_t body_len,
		       const schema_limits *lim, schema_task_msg **out,
		       warren_error *err);

/* Encodes msg for publishing. headers and body must be initialised by the
 * caller (msgpack_sbuffer_init) and are appended to; the caller destroys
 * them. *props_out gets the AMQP properties to send, pointing into msg or at
 * static strings (valid while msg lives). Headers use only msgpack types that
 * map to AMQP S, I, l, t, V, A, F and d; the embed is always the full 4-key
 * map. Returns 0, WARREN_EINVAL (no task or id, args not an array, ...),
 * WARREN_EENCODE or WARREN_ENOMEM. */
int schema_task_encode(const schema_task_msg *msg, msgpack_sbuffer *headers,
		       msgpack_sbuffer *body, schema_task_props *props_out,
		       warren_error *err);

/* A new message for task `task` with a fresh UUID4 id, root_id = id,
 * lang "c", origin "gen<pid>@<host>", empty args and kwargs, and the default
 * properties (persistent, priority 0). *out is freed by schema_task_msg_free(). */
int schema_task_msg_new(const char *task, schema_task_msg **out,
			warren_error *err);

/* Frees msg and everything in its zone. NULL is a no-op. */
void schema_task_msg_free(schema_task_msg *msg);

/* Copies s into msg's zone; the copy lives as long as msg. NULL if s is NULL
 * or memory ran out. */
const char *schema_task_msg_strdup(schema_task_msg *msg, const char *s);

/* Sets args (a packed msgpack array) or kwargs (a packed msgpack map),
 * unpacked with default limits into msg's zone, and refreshes argsrepr or
 * kwargsrepr. Returns 0, WARREN_EINVAL (wrong type), WARREN_EDECODE,
 * WARREN_ELIMIT or WARREN_ENOMEM. */
int schema_task_msg_set_args(schema_task_msg *msg, const void *packed,
			     size_t len, warren_error *err);
int schema_task_msg_set_kwargs(schema_task_msg *msg, const void *packed,
			       size_t len, warren_error *err);

/* Writes a new random (version 4) UUID, 36 chars + NUL, to buf. Returns 0 or
 * WARREN_EIO if the kernel's random source failed. */
int schema_uuid4(char buf[37], warren_error *err);

/* Writes a Python-like repr of obj to buf (NUL-terminated, schemas/repr.c):
 * the top array as a tuple when as_tuple, strings quoted, bin as b''. Output
 * longer than SCHEMA_REPR_MAX (or cap - 4) is cut there and ends in "...";
 * cap = SCHEMA_REPR_MAX + 4 always fits. Returns the length written. */
size_t schema_repr(const msgpack_object *obj, bool as_tuple, char *buf,
		   size_t cap);

/* Decodes one signature dict from obj into *out, allocating strings and
 * children from zone (msgpack objects inside are shared with obj, which
 * must live as long as *out). `path` names obj
 * in errors ("body[2][\"chain\"][0]"). Returns 0, WARREN_EDECODE or
 * WARREN_ENOMEM. */
int schema_signature_decode(const msgpack_object *obj, msgpack_zone *zone,
			    const char *path, schema_signature *out,
			    warren_error *err);

/* Packs sig as a complete 6-key signature map. Composites get their kwargs
 * from `tasks`/`body` (plus any other keys of sig->kwargs), so a group is a
 * correct map even inside a chain (celery#4710 corrupts exactly that).
 * Returns 0 or WARREN_EENCODE / WARREN_ENOMEM. */
int schema_signature_pack(msgpack_packer *pk, const schema_signature *sig,
			  warren_error *err);

/* ==== result messages (schemas/result.c) ==== */

/* Celery task states (celery/states.py). PENDING is never stored: it means
 * "no record yet". RECEIVED and REJECTED appear in events only. */
typedef enum schema_state {
	SCHEMA_STATE_PENDING = 0,
	SCHEMA_STATE_RECEIVED,
	SCHEMA_STATE_STARTED,
	SCHEMA_STATE_SUCCESS,
	SCHEMA_STATE_FAILURE,
	SCHEMA_STATE_RETRY,
	SCHEMA_STATE_REVOKED,
	SCHEMA_STATE_REJECTED,
	SCHEMA_STATE_IGNORED,
} schema_state;

/* "SUCCESS", ...; "?" for an out-of-range value. Static storage. */
const char *schema_state_name(schema_state s);
/* Parses a wire state name (exact, upper case) of len bytes. Returns 0 and
 * sets *out, or -1 for a name Celery does not define. */
int schema_state_parse(const char *name, size_t len, schema_state *out);
/* celery.states READY_STATES {SUCCESS, FAILURE, REVOKED}: no more updates. */
bool schema_state_is_ready(schema_state s);
/* EXCEPTION_STATES {RETRY, FAILURE, REVOKED}: the result holds an exc_* map. */
bool schema_state_is_exception(schema_state s);
/* PROPAGATE_STATES {FAILURE, REVOKED}: a client's get() raises. */
bool schema_state_is_propagate(schema_state s);

/* One task result, as the rpc backend sends it and the Redis backend stores
 * it. Every pointer is owned by the struct (malloc'd; released by
 * schema_result_release); a NULL string or value is msgpack nil on the wire.
 * Values are kept packed, so a result passes through byte for byte. */
typedef struct schema_result {
	char *task_id;
	schema_state state;
	char *result_mp; /* packed msgpack value; NULL = nil */
	size_t result_len;
	char *traceback; /* formatted Python traceback, NULL = nil */
	/* Packed msgpack list of result tuples (celery.result as_tuple):
	 * AsyncResult [[id, parent|nil], nil], GroupResult [[gid, parent|nil],
	 * [tuples]]. NULL encodes as [] (what a Celery worker sends) and nil
	 * decodes as NULL: nil and [] both mean "no children". */
	char *children_mp;
	size_t children_len;
	/* Redis meta only (not in the rpc body). */
	char *date_done; /* utcnow().isoformat(), NULL = nil (not ready) */
	char *group_id;  /* written only when set */
	char *parent_id; /* written only when set */
	/* Redis meta with result_extended=True: written iff `extended`. */
	bool extended;
	char *name;
	char *args_mp; /* packed list; NULL = nil */
	size_t args_len;
	char *kwargs_mp; /* packed map; NULL = nil */
	size_t kwargs_len;
	char *worker; /* the worker's hostname */
	int64_t retries;
	char *queue; /* the routing key it was delivered with */
} schema_result;

/* An exception as Celery serializes it for json/msgpack (backends/base.py
 * prepare_exception): {"exc_type": qualname, "exc_message": [args...],
 * "exc_module": module}. Owned strings; released by schema_exc_release. */
typedef struct schema_exc {
	char *type;    /* qualname, e.g. "ValueError" or "Outer.Inner" */
	char *module;  /* "builtins", "celery.exceptions"; NULL if absent */
	char *message; /* str(exc) as Python would print it, never NULL */
	char *args_mp; /* exc_message as packed msgpack (list, or str from
			* older senders); NULL if absent */
	size_t args_len;
} schema_exc;

/* Why a task was revoked: the TaskRevokedError argument. */
typedef enum schema_revoke_reason {
	SCHEMA_REVOKED_REVOKED = 0, /* "revoked" */
	SCHEMA_REVOKED_EXPIRED,     /* "expired" */
	SCHEMA_REVOKED_TERMINATED,  /* "terminated" */
} schema_revoke_reason;

/* Lifecycle for a schema_result in caller storage: _init zeroes it (state
 * PENDING, everything nil), _release frees what it owns and zeroes it again
 * (safe to call twice). */
void schema_result_init(schema_result *r);
void schema_result_release(schema_result *r);

/* Setters copy their arguments (a NULL string or value sets nil) and replace
 * what was there. Each returns 0 or WARREN_ENOMEM. */
int schema_result_set_task_id(schema_result *r, const char *task_id, warren_error *err);
int schema_result_set_traceback(schema_result *r, const char *traceback, warren_error *err);
int schema_result_set_group_id(schema_result *r, const char *group_id, warren_error *err);
int schema_result_set_parent_id(schema_result *r, const char *parent_id, warren_error *err);
/* mp is one packed msgpack value (the handler's packed result); not checked. */
int schema_result_set_value(schema_result *r, const void *mp, size_t len, warren_error *err);
int schema_result_set_children(schema_result *r, const void *mp, size_t len, warren_error *err);
/* Sets the result_extended fields and r->extended. args_mp/kwargs_mp are
 * packed msgpack (NULL = nil). */
int schema_result_set_extended(schema_result *r, const char *name,
			       const void *args_mp, size_t args_len,
			       const void *kwargs_mp, size_t kwargs_len,
			       const char *worker, int64_t retries,
			       const char *queue, warren_error *err);

/* State plus result in one step, for the shapes a worker writes. Each
 * returns 0, WARREN_EINVAL (NULL type, unknown reason) or WARREN_ENOMEM.
 * SUCCESS with the handler's packed value; */
int schema_result_set_success(schema_result *r, const void *mp, size_t len, warren_error *err);
/* FAILURE (or RETRY, or any exception state) as exc_type/exc_module with
 * exc_message [message], like Python's `Type(message)`; */
int schema_result_set_exception(schema_result *r, schema_state state,
				const char *type, const char *module,
				const char *message, warren_error *err);
/* the same with exc_message taken from a packed msgpack list (several args,
 * `ValueError('boom', 42)`); */
int schema_result_set_exception_args(schema_result *r, schema_state state,
				     const char *type, const char *module,
				     const void *args_mp, size_t args_len,
				     warren_error *err);
/* STARTED with {"pid": pid, "hostname": hostname} (task_track_started); */
int schema_result_set_started(schema_result *r, int64_t pid, const char *hostname,
			      warren_error *err);
/* REVOKED with TaskRevokedError([reason]) from celery.exceptions. */
int schema_result_set_revoked(schema_result *r, schema_revoke_reason reason,
			      warren_error *err);

struct timespec;
/* Sets date_done as Celery's Redis meta has it: for a ready state
 * datetime.utcnow().isoformat() of `now` (UTC; naive, no 'Z', microseconds
 * only when nonzero: "2026-11-27T10:19:08.323802"), else nil. now == NULL
 * reads CLOCK_REALTIME. Returns 0 or WARREN_ENOMEM. */
int schema_result_stamp_date_done(schema_result *r, const struct timespec *now,
				  warren_error *err);

/* Wire formats. A change to either layout (keys, their order, or how a
 * value is written) must bump WARREN_RESULT_WIRE_VERSION, regenerate
 * tests/fixtures/results/ with tests/interop/gen_result_fixtures.py and be
 * checked against the Celery version we target (docs CELERY-WIRE.md §3, §4).
 *
 * rpc body:   {task_id, status, result, traceback, children}, in that order.
 * Redis meta: {status, result, traceback, children, date_done,
 *              [group_id], [parent_id],
 *              [name, args, kwargs, worker, retries, queue], task_id}. */
#define WARREN_RESULT_WIRE_VERSION 1

/* Encode r. *out is malloc'd; the caller frees it with free(). Returns 0,
 * WARREN_EINVAL (no task_id) or WARREN_ENOMEM. */
int schema_result_encode_rpc(const schema_result *r, char **out, size_t *out_len,
			     warren_error *err);
int schema_result_encode_redis(const schema_result *r, char **out, size_t *out_len,
			       warren_error *err);

/* Decode a result from an already-unpacked object into `out`, which must be
 * initialized (it is released first). Unknown keys are ignored. The rpc body
 * needs task_id and status; the Redis meta needs status. On failure `out` is
 * left released and err says what and where, e.g.
 * `result: "status" is an int, expected a string`. Returns 0,
 * WARREN_EDECODE or WARREN_ENOMEM. */
int schema_result_decode_rpc_obj(const msgpack_object *obj, schema_result *out,
				 warren_error *err);
int schema_result_decode_redis_obj(const msgpack_object *obj, schema_result *out,
				   warren_error *err);
/* The same from untrusted bytes, unpacked with schema_unpack under lim
 * (NULL = schema_limits_default). Also WARREN_ELIMIT. */
int schema_result_decode_rpc(const void *data, size_t len, const schema_limits *lim,
			     schema_result *out, warren_error *err);
int schema_result_decode_redis(const void *data, size_t len, const schema_limits *lim,
			       schema_result *out, warren_error *err);

/* Reads an exc_* map (from schema_result.result_mp of an exception state)
 * into `out` (which need not be initialized). exc_message may be a list of
 * args or a plain string; message renders it as Python's str(exc):
 * ['boom'] -> "boom", ['boom', 42] -> "('boom', 42)", [] -> "". Note a
 * RETRY stored by `self.retry()` without an exc has a nil result: check
 * result_mp before calling. Returns 0, WARREN_EDECODE (`exception:
 * "exc_type" is missing`) or WARREN_ENOMEM; on failure `out` is released. */
int schema_exc_read(const void *result_mp, size_t result_len, schema_exc *out,
		    warren_error *err);
void schema_exc_release(schema_exc *exc);

/* ==== task argument schemas (schemas/args.c) ==== */

/* Checks a call's args (a msgpack array) and kwargs (a msgpack map) against
 * schema the way Python binds arguments: positional parameters in order,
 * then by name from kwargs. NULL or nil args/kwargs count as empty. A nil
 * value is accepted for a parameter of any type whose default is nil
 * (Python's `b=None`). Every message begins with the task name:
 *   math.add: argument a: given positionally and by keyword
 *   math.add: argument b: expected int, got str "x"
 * Returns 0 or WARREN_ESCHEMA. */
int schema_args_validate(const char *task_name, const warren_task_schema *schema,
			 const msgpack_object *args, const msgpack_object *kwargs,
			 warren_error *err);

/* Checks a handler's result against schema->result (WARREN_TYPE_ANY: no
 * check): `math.add: result: expected int, got str "x"`. Returns 0 or
 * WARREN_ESCHEMA. */
int schema_args_validate_result(const char *task_name, const warren_task_schema *schema,
				const msgpack_object *result, warren_error *err);

/* Validates, then binds: values[i] (an array of schema->n_params the caller
 * provides) receives parameter i's value, from args, kwargs, its default
 * (unpacked into zone) or nil. Values taken from args/kwargs point into those
 * objects and live as long as they do; defaults live as long as zone.
 * Returns 0, WARREN_ESCHEMA, WARREN_EINVAL (a default that is not one packed
 * msgpack value) or WARREN_ENOMEM. */
int schema_args_bind(const char *task_name, const warren_task_schema *schema,
		     const msgpack_object *args, const msgpack_object *kwargs,
		     msgpack_zone *zone, msgpack_object *values, warren_error *err);

/* A short description of a value for error messages: `str "x"` (quoted,
 * truncated with ...), `int 42`, `float 1.5`, `bool true`, `null`,
 * `list of 3`, `map of 2`, `bytes of 4`. Writes at most size bytes
 * including the NUL; returns buf. */
char *schema_value_preview(const msgpack_object *v, char *buf, size_t size);

#endif
