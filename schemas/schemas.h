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

/* Where a value lies in the bytes it was unpacked from. */
typedef struct schema_span {
	size_t off, len;
} schema_span;

/* schema_unpack, and when the value is an array, spans[i] (i < n_spans and
 * i < its size) is where element i lies in data: a part can then be passed
 * on as the bytes it came in, without packing it again. */
int schema_unpack_spans(const void *data, size_t len, const schema_limits *lim,
			const char *what, msgpack_zone *zone, msgpack_object *out,
			schema_span *spans, size_t n_spans, warren_error *err);

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
	schema_span args_span, kwargs_span; /* their bytes in the body decoded */
	schema_signature *callbacks; /* embed.callbacks (link); n == 0: nil */
	size_t n_callbacks;
	schema_signature *errbacks;  /* embed.errbacks (link_error) */
	size_t n_errbacks;
	schema_signature *chain;     /* embed.chain: remaining steps, last runs next */
	size_t n_chain;
	schema_signature *chord;     /* embed.chord: the chord body; NULL if none */

	msgpack_zone *zone;          /* owns everything above (&zone_store) */
	msgpack_zone zone_store;     /* in the message: one allocation fewer */
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

/* ==== events (schemas/event.c) ==== */

/* Celery's monitoring events (celery/events/event.py, dispatcher.py,
 * worker/heartbeat.py, worker/request.py, worker/strategy.py) as JSON, the
 * default event_serializer. An event is a json_t object (jansson) whose keys
 * are in the order Celery's Event() writes them:
 *   hostname, utcoffset, pid, clock, <type's own fields>, timestamp, type
 * and it is serialized the way Python's json.dumps does it (", " and ": "
 * separators, ensure_ascii, floats as Python's repr), so the bytes equal
 * what a Celery worker sends for the same values.
 *
 * Wire format note: a change to any type's field list or order, the routing
 * key rule, the exchange or the monitor queue arguments must bump
 * SCHEMA_EVENT_WIRE_VERSION and be checked with
 * tests/interop/test_control_events_celery.c (Celery's State reads ours). */
#define SCHEMA_EVENT_WIRE_VERSION 1
#define SCHEMA_EVENT_EXCHANGE "celeryev"          /* topic, durable */
#define SCHEMA_EVENT_EXCHANGE_TYPE "topic"
#define SCHEMA_EVENT_CONTENT_TYPE "application/json"
#define SCHEMA_EVENT_CONTENT_ENCODING "utf-8"
#define SCHEMA_EVENT_DELIVERY_MODE 1              /* transient */
#define SCHEMA_EVENT_QUEUE_PREFIX "celeryev"      /* monitor queue celeryev.<uuid> */
#define SCHEMA_EVENT_QUEUE_TTL_MS 5000            /* x-message-ttl (event_queue_ttl 5.0) */
#define SCHEMA_EVENT_QUEUE_EXPIRES_MS 60000       /* x-expires (event_queue_expires 60.0) */
#define SCHEMA_EVENT_MONITOR_BINDING "#"
#define SCHEMA_EVENT_HEARTBEAT_FREQ 2.0           /* seconds, worker_heartbeat default */
#define SCHEMA_EVENT_BUFFER_LIMIT 24              /* task events per task.multi list */
#define SCHEMA_EVENT_SW_IDENT "warren"            /* Celery sends "py-celery" */

struct json_t;

typedef enum schema_event_type {
	SCHEMA_EVENT_UNKNOWN = 0, /* any other type: decoded, not built */
	SCHEMA_EVENT_WORKER_ONLINE,
	SCHEMA_EVENT_WORKER_HEARTBEAT,
	SCHEMA_EVENT_WORKER_OFFLINE,
	SCHEMA_EVENT_TASK_SENT,
	SCHEMA_EVENT_TASK_RECEIVED,
	SCHEMA_EVENT_TASK_STARTED,
	SCHEMA_EVENT_TASK_SUCCEEDED,
	SCHEMA_EVENT_TASK_FAILED,
	SCHEMA_EVENT_TASK_RETRIED,
	SCHEMA_EVENT_TASK_REJECTED,
	SCHEMA_EVENT_TASK_REVOKED,
} schema_event_type;

/* "task-received", ...; NULL for SCHEMA_EVENT_UNKNOWN or out of range.
 * Static storage. */
const char *schema_event_type_name(schema_event_type t);
/* The type for a wire name; SCHEMA_EVENT_UNKNOWN if it is none of ours. */
schema_event_type schema_event_type_parse(const char *name);
/* True for task-* types. */
bool schema_event_is_task(schema_event_type t);

/* The routing key Celery publishes an event under: the type with every '-'
 * replaced by '.' ("task-succeeded" -> "task.succeeded"). A buffered group
 * goes out as "<group>.multi" (schema_event_multi_routing_key). Writes at
 * most cap bytes with the NUL; returns 0 or WARREN_ELIMIT if it does not fit. */
int schema_event_routing_key(const char *type, char *buf, size_t cap,
			     warren_error *err);
/* "task.multi": the key of a JSON list of buffered task events. */
const char *schema_event_multi_routing_key(void);

/* Celery's celery.utils.time.utcoffset() for the local zone at `when`:
 * hours WEST of UTC, floored (UTC+1 -> -1, UTC-5 -> 5). */
int schema_event_utcoffset(int64_t when);

/* What the dispatcher adds to every event. Strings are borrowed. */
typedef struct schema_event_source {
	const char *hostname; /* the node name, "w1@host" */
	int64_t pid;
	int utcoffset;        /* schema_event_utcoffset() */
} schema_event_source;

/* worker-online / worker-heartbeat / worker-offline fields
 * (worker/heartbeat.py _send). */
typedef struct schema_event_worker_info {
	double freq;          /* SCHEMA_EVENT_HEARTBEAT_FREQ */
	int64_t active;       /* requests executing now */
	int64_t processed;    /* all tasks processed since start */
	double loadavg[3];    /* rounded up to 2 decimals as Celery does */
	const char *sw_ident; /* NULL: SCHEMA_EVENT_SW_IDENT */
	const char *sw_ver;   /* NULL: the library version */
	const char *sw_sys;   /* NULL: uname sysname ("Linux") */
} schema_event_worker_info;

/* The fields of a task event; each type writes only its own (see the
 * table in event.c). Strings are borrowed; a NULL string is JSON null. */
typedef struct schema_event_task_info {
	const char *uuid;      /* required */
	/* task-received (and task-sent) */
	const char *name;
	const char *args;      /* argsrepr, e.g. "(2, 3)" */
	const char *kwargs;    /* kwargsrepr, e.g. "{}" */
	const char *root_id;
	const char *parent_id;
	int64_t retries;
	const char *eta;       /* ISO-8601 or NULL */
	const char *expires;   /* ISO-8601 or NULL */
	/* task-sent only */
	const char *queue;
	const char *exchange;
	const char *routing_key;
	/* task-succeeded: result is the repr string of the return value */
	const char *result;
	double runtime;        /* seconds */
	/* task-failed, task-retried: exception repr and formatted traceback */
	const char *exception;
	const char *traceback;
	/* task-rejected */
	bool requeue;
	/* task-revoked */
	bool terminated;
	bool has_signum;       /* false: signum is null */
	int64_t signum;
	bool expired;
} schema_event_task_info;

/* Builds a worker-* event. clock is the worker's Lamport clock after
 * forward(); timestamp is time.time() (seconds, UTC epoch). *out is a new
 * jansson object the caller frees with json_decref(). Returns 0,
 * WARREN_EINVAL (not a worker type, no hostname) or WARREN_ENOMEM. */
int schema_event_worker(const schema_event_source *src, schema_event_type type,
			uint64_t clock, double timestamp,
			const schema_event_worker_info *info, struct json_t **out,
			warren_error *err);

/* Builds a task-* event the same way. WARREN_EINVAL for a non-task type,
 * no hostname or no uuid. */
int schema_event_task(const schema_event_source *src, schema_event_type type,
		      uint64_t clock, double timestamp,
		      const schema_event_task_info *info, struct json_t **out,
		      warren_error *err);

/* Serializes an event object, or a JSON array of them (the task.multi
 * list) -- any JSON object or array -- as Python's json.dumps would. *out is malloc'd, NUL-terminated (not
 * counted in *out_len), freed by the caller with free(). Returns 0,
 * WARREN_EINVAL (not an object or array), WARREN_EENCODE (a NaN or
 * infinite real) or WARREN_ENOMEM. */
int schema_event_encode(const struct json_t *event, char **out, size_t *out_len,
			warren_error *err);

/* The AMQP application headers of an event message, {"hostname": hostname},
 * packed as a msgpack map and appended to buf (initialised by the caller). */
int schema_event_headers(const char *hostname, msgpack_sbuffer *buf,
			 warren_error *err);

/* Writes the monitor queue name "celeryev.<uuid4>" (declare it non-durable,
 * auto_delete, x-message-ttl SCHEMA_EVENT_QUEUE_TTL_MS, x-expires
 * SCHEMA_EVENT_QUEUE_EXPIRES_MS, bound to SCHEMA_EVENT_EXCHANGE with "#"). */
int schema_event_monitor_queue_name(char buf[64], warren_error *err);

/* One received event. Pointers point into `object` (borrowed from the
 * schema_event_list it came from) and live as long as the list. */
typedef struct schema_event {
	schema_event_type type; /* SCHEMA_EVENT_UNKNOWN for other types */
	const char *type_name;  /* as received, never NULL */
	const char *hostname;   /* NULL if absent or not a string */
	const char *uuid;       /* task events; NULL otherwise */
	bool has_timestamp;
	double timestamp;
	bool has_clock;
	int64_t clock;
	bool has_pid;
	int64_t pid;
	struct json_t *object;  /* every field, unknown ones included */
} schema_event;

/* A decoded message: one event, or the events of a *.multi list in order. */
typedef struct schema_event_list {
	schema_event *events;
	size_t n;
	struct json_t *root; /* owns everything */
} schema_event_list;

/* Decodes an event message body. content_type must be
 * SCHEMA_EVENT_CONTENT_TYPE (NULL is taken as JSON). A list element that is
 * not an object with a string "type" fails the whole message; unknown
 * fields and unknown types are kept. lim: max_body, max_elems (list length)
 * and max_depth apply (NULL = defaults). On success *out holds the events;
 * release it with schema_event_list_release(). Returns 0, WARREN_EDECODE,
 * WARREN_ELIMIT or WARREN_ENOMEM. */
int schema_event_decode(const char *content_type, const void *body, size_t len,
			const schema_limits *lim, schema_event_list *out,
			warren_error *err);
void schema_event_list_release(schema_event_list *list);

/* Field getters for a decoded event: the value under key if it has that
 * type, else the fallback / NULL. Strings live as long as the list. */
const char *schema_event_get_str(const schema_event *ev, const char *key);
double schema_event_get_num(const schema_event *ev, const char *key, double fallback);

/* ==== remote control (schemas/control.c) ==== */

/* Celery's remote control over kombu's pidbox Mailbox (kombu/pidbox.py,
 * celery/app/control.py, celery/worker/control.py). Requests go to the
 * fanout exchange SCHEMA_CONTROL_EXCHANGE; every worker consumes its own
 * "<nodename>.celery.pidbox" queue; replies go to SCHEMA_CONTROL_REPLY_EXCHANGE
 * with the client's oid as routing key, into "<oid>.reply.celery.pidbox".
 *
 * Bodies are msgpack (Celery clients use their task_serializer; warren's is
 * msgpack) or JSON (a default Celery client): decoders pick by content type
 * and JSON is converted to msgpack objects, so callers see one shape.
 *
 * request body: {method, arguments, destination, pattern, matcher,
 *                [ticket, reply_to{exchange, routing_key}]}, in that order;
 *   headers {clock, expires}.
 * reply body:   {"<nodename>": <result>}, result {"ok": v} / {"error": msg}
 *   or a bare value (inspect commands); headers {ticket, clock}.
 *
 * Wire format note: when kombu's Mailbox or Celery's Panel change a name,
 * key, order or reply shape, bump SCHEMA_CONTROL_WIRE_VERSION, rerun
 * tests/interop/gen_control_fixtures.py and review the diff. */
#define SCHEMA_CONTROL_WIRE_VERSION 1
#define SCHEMA_CONTROL_NAMESPACE "celery"             /* control_exchange */
#define SCHEMA_CONTROL_EXCHANGE "celery.pidbox"       /* fanout, non-durable */
#define SCHEMA_CONTROL_EXCHANGE_TYPE "fanout"
#define SCHEMA_CONTROL_REPLY_EXCHANGE "reply.celery.pidbox" /* direct, non-durable */
#define SCHEMA_CONTROL_REPLY_EXCHANGE_TYPE "direct"
#define SCHEMA_CONTROL_QUEUE_SUFFIX ".celery.pidbox"
#define SCHEMA_CONTROL_REPLY_QUEUE_SUFFIX ".reply.celery.pidbox"
/* Both queues: non-durable, auto_delete, these arguments
 * (control_queue_expires 10.0, control_queue_ttl 300.0). */
#define SCHEMA_CONTROL_QUEUE_EXPIRES_MS 10000         /* x-expires */
#define SCHEMA_CONTROL_QUEUE_TTL_MS 300000            /* x-message-ttl */
#define SCHEMA_CONTROL_REQUEST_DELIVERY_MODE 2        /* what kombu sends */
#define SCHEMA_CONTROL_REPLY_DELIVERY_MODE 1          /* transient */
#define SCHEMA_CONTROL_JSON_CONTENT_TYPE "application/json"
#define SCHEMA_CONTROL_JSON_CONTENT_ENCODING "utf-8"

/* "<nodename>.celery.pidbox" and "<oid>.reply.celery.pidbox" into buf.
 * Returns 0, WARREN_EINVAL (empty name) or WARREN_ELIMIT (does not fit). */
int schema_control_queue_name(const char *nodename, char *buf, size_t cap,
			      warren_error *err);
int schema_control_reply_queue_name(const char *oid, char *buf, size_t cap,
				    warren_error *err);

typedef enum schema_control_format {
	SCHEMA_CONTROL_MSGPACK = 0, /* application/x-msgpack, binary */
	SCHEMA_CONTROL_JSON,        /* application/json, utf-8 */
} schema_control_format;

/* The format for a content type: 0 and *out, or WARREN_EDECODE for one we
 * do not speak (kombu's other serializers: pickle, yaml). NULL = msgpack. */
int schema_control_format_of(const char *content_type, schema_control_format *out,
			     warren_error *err);
/* Content type and encoding strings for a format. Static storage. */
const char *schema_control_content_type(schema_control_format fmt);
const char *schema_control_content_encoding(schema_control_format fmt);

/* A control request. Every pointer lives in `zone` and dies with
 * schema_control_request_free(). */
typedef struct schema_control_request {
	const char *method;          /* "ping", "revoke", ... never NULL */
	msgpack_object arguments;    /* a map; nil/absent decodes as {} */
	const char **destination;    /* node names; NULL/0 = every node */
	size_t n_destination;
	const char *pattern;         /* with matcher: kombu.matcher match() */
	const char *matcher;         /* "glob" or "pcre"; NULL if absent */
	const char *ticket;          /* the call's id, echoed in the reply headers */
	const char *reply_exchange;  /* reply_to.exchange; NULL: a cast, no reply
				      * (kombu replies iff reply_to is set) */
	const char *reply_routing_key; /* reply_to.routing_key (client oid) */
	bool has_clock;
	uint64_t clock;              /* headers.clock */
	double expires;              /* headers.expires, unix time; 0 = none */
	schema_control_format format;/* what the body was in; reply in kind */
	msgpack_zone *zone;
} schema_control_request;

/* Decodes a request. headers is the AMQP table as a packed msgpack map
 * (NULL/0: none); body is borrowed and copied. lim applies to both (NULL =
 * defaults); a destination list longer than lim->max_elems is
 * WARREN_ELIMIT. Unknown keys are ignored. *out is freed with
 * schema_control_request_free(). Returns 0, WARREN_EDECODE (`control
 * request: "method" is missing`), WARREN_ELIMIT or WARREN_ENOMEM. */
int schema_control_request_decode(const char *content_type, const void *headers,
				  size_t headers_len, const void *body,
				  size_t body_len, const schema_limits *lim,
				  schema_control_request **out, warren_error *err);
void schema_control_request_free(schema_control_request *req);

/* Whether node `nodename` must handle req, as kombu's Node.handle_message
 * decides: named in destination; else, with pattern and matcher, the glob
 * (fnmatch) or pcre (POSIX extended regex, searched like re.search) match;
 * else everyone. An unknown matcher matches nothing. */
bool schema_control_request_is_for(const schema_control_request *req,
				   const char *nodename);
/* True when headers.expires is set and passed at `now` (unix seconds).
 * Celery 5.2 workers ignore expires; the check is for warren's own. */
bool schema_control_request_expired(const schema_control_request *req, double now);

/* Looks up an argument: the value under key in req->arguments, or NULL. */
const msgpack_object *schema_control_arg(const schema_control_request *req,
					 const char *key);

/* What to send. Strings are borrowed. arguments_mp is one packed msgpack
 * map (NULL: {}); destination NULL/0 sends nil (every node). ticket and
 * reply_routing_key: both or neither (a call wanting replies, or a cast). */
typedef struct schema_control_request_spec {
	const char *method;
	const void *arguments_mp;
	size_t arguments_len;
	const char *const *destination;
	size_t n_destination;
	const char *pattern;
	const char *matcher;
	const char *ticket;
	const char *reply_routing_key;  /* the client's oid */
	uint64_t clock;
	double expires;                 /* time() + timeout, 0 = none */
} schema_control_request_spec;

/* Encodes a request as kombu's Mailbox._publish does, in fmt. body and
 * headers are initialised by the caller and appended to (a JSON body is
 * written as bytes into body); headers get {clock, expires} as a msgpack
 * map. Publish to SCHEMA_CONTROL_EXCHANGE, routing key "", delivery mode
 * SCHEMA_CONTROL_REQUEST_DELIVERY_MODE, content type/encoding of fmt.
 * Returns 0, WARREN_EINVAL (no method, arguments not one map, ticket
 * without reply key), WARREN_EENCODE or WARREN_ENOMEM. */
int schema_control_request_encode(const schema_control_request_spec *spec,
				  schema_control_format fmt, msgpack_sbuffer *headers,
				  msgpack_sbuffer *body, warren_error *err);

/* Reply headers {ticket, clock} as a msgpack map appended to buf. Publish
 * the reply to SCHEMA_CONTROL_REPLY_EXCHANGE with the request's
 * reply_routing_key, delivery mode SCHEMA_CONTROL_REPLY_DELIVERY_MODE. */
int schema_control_reply_headers(const char *ticket, uint64_t clock,
				 msgpack_sbuffer *buf, warren_error *err);

/* Encodes a reply body {nodename: result} in fmt, appended to body.
 * result_mp is one packed msgpack value (built with the schema_control_pack_*
 * helpers below). Returns 0, WARREN_EINVAL (no nodename, result not one
 * value), WARREN_EENCODE (a value JSON cannot hold, e.g. bin) or
 * WARREN_ENOMEM. */
int schema_control_reply_encode(const char *nodename, const void *result_mp,
				size_t result_len, schema_control_format fmt,
				msgpack_sbuffer *body, warren_error *err);

/* One node's answer inside a reply. */
typedef struct schema_control_node_reply {
	const char *nodename;
	msgpack_object value;  /* the whole result */
	bool is_ok;            /* value is a 1-key map {"ok": ...} */
	bool is_error;         /* value is a 1-key map {"error": ...} */
	const char *error;     /* the error string when is_error, else NULL */
} schema_control_node_reply;

/* A decoded reply message. Pointers live in `zone`. */
typedef struct schema_control_reply {
	const char *ticket;    /* headers.ticket; NULL if absent */
	bool has_clock;
	uint64_t clock;
	schema_control_node_reply *nodes;
	size_t n_nodes;
	msgpack_zone *zone;
} schema_control_reply;

/* Decodes one reply message (a map of one or more nodes). The client
 * keeps replies whose ticket equals its request's (kombu _collect) and
 * merges their nodes by name, later ones winning (Celery flatten_reply).
 * *out is freed with schema_control_reply_free(). Returns 0,
 * WARREN_EDECODE, WARREN_ELIMIT or WARREN_ENOMEM. */
int schema_control_reply_decode(const char *content_type, const void *headers,
				size_t headers_len, const void *body,
				size_t body_len, const schema_limits *lim,
				schema_control_reply **out, warren_error *err);
void schema_control_reply_free(schema_control_reply *reply);

/* ---- result shapes (celery/worker/control.py), packed into pk ---- */

/* {"ok": text} / {"error": text}; ping is {"ok": "pong"}. */
int schema_control_pack_ok(msgpack_packer *pk, const char *text, warren_error *err);
int schema_control_pack_error(msgpack_packer *pk, const char *text, warren_error *err);

/* revoke's reply. Without terminate: {"ok": "tasks <ids> flagged as
 * revoked"} with ids joined by ", ". With terminate, the ids of the tasks
 * actually terminated: {"ok": "terminate: <ids>"}, or {"ok": "terminate:
 * tasks unknown"} when none ran here. */
int schema_control_pack_revoke(msgpack_packer *pk, const char *const *ids, size_t n,
			       bool terminate, const char *const *terminated,
			       size_t n_terminated, warren_error *err);

/* A list of strings: registered (task names, sorted by the caller, without
 * celery.* builtins) and revoked (ids). */
int schema_control_pack_strings(msgpack_packer *pk, const char *const *s, size_t n,
				warren_error *err);

/* A queue as kombu's Queue.as_dict(recurse=True), for active_queues. */
typedef struct schema_control_queue_info {
	const char *name;
	const char *exchange;      /* "" for the default exchange */
	const char *exchange_type; /* "direct", "topic", "fanout" */
	bool exchange_durable;
	const char *routing_key;
	bool durable;
	bool exclusive;
	bool auto_delete;
	bool has_max_priority;     /* x-max-priority in queue_arguments (the
				    * max_priority attribute stays None, as
				    * in a Celery worker) */
	int64_t max_priority;
	bool has_message_ttl;      /* seconds, as kombu keeps it */
	double message_ttl;
	bool has_expires;
	double expires;
	const char *queue_type;    /* x-queue-type ("quorum") or NULL */
} schema_control_queue_info;
int schema_control_pack_queues(msgpack_packer *pk, const schema_control_queue_info *q,
			       size_t n, warren_error *err);

/* One request as Request.info() gives it, for active and reserved. */
typedef struct schema_control_task_info {
	const char *id;
	const char *name;          /* also sent as "type" */
	const void *args_mp;       /* packed list (or the argsrepr str with
				    * active(safe=True)); NULL = [] */
	size_t args_len;
	const void *kwargs_mp;     /* packed map or kwargsrepr; NULL = {} */
	size_t kwargs_len;
	const char *hostname;      /* the worker's node name */
	bool has_time_start;       /* false: None (not started yet) */
	double time_start;         /* unix seconds */
	bool acknowledged;
	const char *exchange;      /* delivery_info */
	const char *routing_key;
	bool has_priority;
	int64_t priority;
	bool redelivered;
	bool has_worker_pid;       /* false: None */
	int64_t worker_pid;
} schema_control_task_info;
int schema_control_pack_tasks(msgpack_packer *pk, const schema_control_task_info *t,
			      size_t n, warren_error *err);

/* The keys of a Celery worker's stats (WorkController.stats) in its order:
 * total, pid, clock, uptime, pool, broker, prefetch_count, rusage. */
typedef struct schema_control_task_count {
	const char *name;
	int64_t count;
} schema_control_task_count;

typedef struct schema_control_stats {
	const schema_control_task_count *total; /* per task name, processed */
	size_t n_total;
	int64_t pid;
	uint64_t clock;                /* sent as a string, as Celery does */
	int64_t uptime;                /* whole seconds */
	/* pool (prefork shape; a thread pool lists its pids as processes) */
	int64_t max_concurrency;
	const int64_t *processes;      /* child pids */
	size_t n_processes;
	int64_t max_tasks_per_child;   /* 0: "N/A" */
	bool put_guarded_by_semaphore;
	double soft_timeout;           /* 0: none */
	double hard_timeout;
	/* broker (kombu Connection.info() without the password) */
	const char *broker_hostname;
	const char *broker_userid;
	const char *broker_vhost;
	int64_t broker_port;
	bool broker_ssl;
	const char *broker_transport;  /* "amqp" */
	double broker_connect_timeout;
	double broker_heartbeat;
	int64_t prefetch_count;
	/* rusage (getrusage RUSAGE_SELF) */
	bool has_rusage;               /* false: "N/A" */
	double utime, stime;
	int64_t maxrss, ixrss, idrss, isrss, minflt, majflt, nswap;
	int64_t inblock, oublock, msgsnd, msgrcv, nsignals, nvcsw, nivcsw;
} schema_control_stats;
int schema_control_pack_stats(msgpack_packer *pk, const schema_control_stats *st,
			      warren_error *err);

/* ==== canvas (schemas/canvas.c) ==== */

/* Celery 5.2's apply_async for every kind of signature (celery/canvas.py
 * Signature, _chain.run/prepare_steps, group._prepared/_apply_tasks,
 * _chord.run), with the publishing left to the caller: the producer and the
 * worker both run canvases (a worker sends callbacks, the next link of a
 * chain, a group or chord popped from a chain, a chord's body). Everything
 * made while applying (ids, merged options, packed signatures) is allocated
 * from the caller's zone, which must outlive the call.
 *
 * Wire format note: what each message carries is Celery 5.2.6's
 * (CELERY-WIRE.md §4, §5). When Celery changes an option name or how a
 * composite is sent, change it here and rerun the canvas interop tests. */

/* Where and when one built message goes, from the signature's options. */
typedef struct schema_canvas_route {
	const char *queue;  /* options.queue; NULL: the sender routes by task name */
	double countdown;   /* options.countdown, seconds; 0: now */
	double expires;     /* options.expires, seconds from now; 0: never */
} schema_canvas_route;

/* The sender's side. publish sends msg (every header and the embed set;
 * the callee may set eta/expires strings in msg, copying them in with
 * schema_task_msg_strdup) and returns 0 or a negative code. chord_size
 * records a chord header's size before its members are sent (Redis: SETEX
 * + PUBLISH celery-taskset-meta-<gid>.s); NULL means the result backend
 * cannot join chords, and applying one fails with WARREN_EINVAL. reply_to
 * is used for signatures whose options carry none (may be NULL). */
typedef struct schema_canvas_env {
	int (*publish)(void *arg, schema_task_msg *msg, const schema_canvas_route *route,
		       warren_error *err);
	int (*chord_size)(void *arg, const char *group_id, int64_t size, warren_error *err);
	void *arg;
	const char *reply_to;
} schema_canvas_env;

/* apply_async's keyword arguments (all optional; zero = not given). */
typedef struct schema_canvas_call {
	const msgpack_object *args;   /* partial args (an array), prepended unless immutable */
	const char *task_id;
	const char *parent_id;
	const char *root_id;
	const char *group_id;         /* kept when the signature has its own */
	bool has_group_index;
	int64_t group_index;
	schema_signature *chain;      /* remaining steps, in reverse order (embed.chain) */
	size_t n_chain;
	schema_signature *chord;      /* the chord body this task is a header part of */
	/* Other apply_async options (a map: queue, countdown, ...), merged over
	 * the signature's own (a group's or chord's options reach its members
	 * this way, a chain's its first step). NULL: none. */
	const msgpack_object *options;
} schema_canvas_call;

/* Applies sig as Celery's sig.apply_async(**call) does: a plain task is one
 * message; a group sends its (unrolled) members with group=<gid>; a chain
 * sends its first step carrying the rest reversed in embed.chain (a group
 * followed by a step becomes a chord, nested chains are spliced, the chain's
 * link_error is copied onto every step); a chord records its header size
 * and sends the header with group, group_index and embed.chord = body.
 * sig may be rewritten in place (ids assigned, chains normalised), into
 * zone. Returns 0 or the first error (messages published before it stay
 * published). */
int schema_canvas_apply(const schema_canvas_env *env, schema_signature *sig,
			const schema_canvas_call *call, msgpack_zone *zone, warren_error *err);

/* Assigns every id a send would assign, so a caller knows them before
 * sending: options.task_id of each plain task, of each group (its group id)
 * and of each chord body; chains are normalised as apply does. Idempotent. */
int schema_canvas_freeze(schema_signature *sig, msgpack_zone *zone, warren_error *err);

/* The kind of a signature by its subtask_type / task name. */
typedef enum schema_canvas_kind {
	SCHEMA_CANVAS_TASK = 0,
	SCHEMA_CANVAS_GROUP,
	SCHEMA_CANVAS_CHAIN,
	SCHEMA_CANVAS_CHORD,
} schema_canvas_kind;
schema_canvas_kind schema_canvas_kind_of(const schema_signature *sig);

/* True when sig holds a chord anywhere (Celery's ensure_chords_allowed). */
bool schema_canvas_has_chord(const schema_signature *sig);

/* options[key] as a NUL-terminated string copied into zone, or NULL when
 * absent or not a str. */
const char *schema_canvas_opt_str(const schema_signature *sig, const char *key,
				  msgpack_zone *zone);

/* Sets options[key] = val (replacing one of that name), in zone. val's
 * memory must live as long as sig. Returns 0 or WARREN_ENOMEM. */
int schema_canvas_opt_set(schema_signature *sig, const char *key, msgpack_object val,
			  msgpack_zone *zone, warren_error *err);

/* A str object holding a copy of s in zone (type nil when out of memory). */
msgpack_object schema_canvas_str(msgpack_zone *zone, const char *s);

/* Decodes options[key] (a signature or a list of them: link, link_error,
 * chain) into *out (zone array). 0 and n 0 when absent. */
int schema_canvas_opt_sigs(const schema_signature *sig, const char *key, msgpack_zone *zone,
			   schema_signature **out, size_t *n, warren_error *err);

/* Python's repr of an exception from its exc_* map ("ValueError('boom')"),
 * as ChordError's "Dependency <id> raised <repr>" shows it. Writes at most
 * cap bytes (NUL included). */
void schema_canvas_exc_repr(const void *result_mp, size_t len, char *buf, size_t cap);

#endif
