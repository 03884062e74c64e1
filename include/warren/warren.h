/* warren/warren.h - libwarren, the client side of warren: send tasks to a
 * Celery-compatible fleet (warren-worker or Celery 5.2 workers) over RabbitMQ
 * and read their results back.
 *
 *   warren_client *c;
 *   warren_error err = {0};
 *   if (warren_client_new("amqp://guest:guest@localhost:5672/%2F",
 *                         "redis://localhost:6379/0", NULL, &c, &err))
 *           die(err.msg);
 *   warren_args *args = warren_args_new();
 *   warren_args_int(args, 2);
 *   warren_args_int(args, 3);
 *   char id[WARREN_TASK_ID_MAX];
 *   warren_send(c, "math.add", args, NULL, NULL, id, &err);
 *   warren_result *r;
 *   warren_result_wait(c, id, 10000, &r, &err);
 *   puts(warren_result_json(r));            // 5
 *   warren_result_free(r);
 *   warren_args_free(args);
 *   warren_client_free(c);
 *
 * Wire: Celery task protocol 2 with msgpack (see schemas/), routed as Celery
 * routes (task_routes, then the default queue "celery"; direct exchanges
 * through the default exchange "" with the queue name as routing key), after
 * declaring the queue's exchange, queue and binding as Celery does.
 *
 * Threads: a warren_client is not thread-safe. Use one client per thread (a
 * client holds one AMQP connection and one backend connection), or guard one
 * client with a mutex of your own. warren_args and warren_result values are
 * plain data: they may be handed between threads but not used by two at
 * once. Nothing in libwarren starts a thread or installs a signal handler.
 *
 * Errors: every fallible function returns 0 or a negative WARREN_E* code and
 * fills the warren_error passed last (may be NULL); see warren/error.h.
 * Ownership: every `**out` says which function frees it; `const char *`
 * arguments are borrowed for the call.
 */
#ifndef WARREN_WARREN_H
#define WARREN_WARREN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <msgpack.h>

#include "warren/error.h"

#ifdef __cplusplus
extern "C" {
#endif

/* A task id is a UUID (36 chars) in practice; any id up to 255 bytes works. */
#define WARREN_TASK_ID_MAX 256

/* ==== arguments (producer/args.c) ======================================== */

/* A builder of positional args (a list) or keyword args (a map), packed as
 * msgpack as it goes. Calls append one value each; inside a map (kwargs, or
 * a nested begin_map) every value is preceded by warren_args_key. Errors are
 * sticky: the first misuse or allocation failure is recorded, later calls
 * return the same code and do nothing, and warren_send refuses the builder
 * with that message. So a caller may build first and check once. */
typedef struct warren_args warren_args;

/* New empty positional args (top level is a list) / keyword args (a map).
 * NULL when out of memory. Freed with warren_args_free. */
WARREN_API warren_args *warren_args_new(void);
WARREN_API warren_args *warren_kwargs_new(void);
/* NULL is a no-op. */
WARREN_API void warren_args_free(warren_args *a);

WARREN_API int warren_args_key(warren_args *a, const char *key); /* UTF-8 */
WARREN_API int warren_args_int(warren_args *a, int64_t v);
WARREN_API int warren_args_float(warren_args *a, double v);
WARREN_API int warren_args_str(warren_args *a, const char *s);   /* UTF-8, NUL-terminated */
WARREN_API int warren_args_strn(warren_args *a, const char *s, size_t len);
WARREN_API int warren_args_bytes(warren_args *a, const void *p, size_t len); /* Python bytes */
WARREN_API int warren_args_bool(warren_args *a, bool v);
WARREN_API int warren_args_nil(warren_args *a);                  /* Python None */
WARREN_API int warren_args_begin_list(warren_args *a);
WARREN_API int warren_args_end_list(warren_args *a);
WARREN_API int warren_args_begin_map(warren_args *a);
WARREN_API int warren_args_end_map(warren_args *a);

/* Appends one value given as JSON text (any JSON value; objects become
 * maps, integers int64, other numbers float). WARREN_EDECODE with the
 * position of the mistake when text is not JSON. */
WARREN_API int warren_args_json(warren_args *a, const char *json);

/* Appends text as the command line reads an argument: the JSON value when
 * text is valid JSON ("2" is 2, "[1,2]" a list, "\"x\"" the string x), else
 * text itself as a string ("héllo"). Never fails on content. */
WARREN_API int warren_args_auto(warren_args *a, const char *text);

/* A whole args list from a JSON array, or kwargs from a JSON object.
 * *out is freed with warren_args_free. WARREN_EDECODE for bad JSON or the
 * wrong top-level type. */
WARREN_API int warren_args_from_json(const char *json, warren_args **out, warren_error *err);
WARREN_API int warren_kwargs_from_json(const char *json, warren_args **out, warren_error *err);

/* The recorded error (0 and "" when none). The string lives as long as a. */
WARREN_API int warren_args_status(const warren_args *a, const char **msg);

/* The packed msgpack (an array or a map) built so far; every open list or
 * map must be closed (else WARREN_EINVAL). *data lives until the next change
 * to a or warren_args_free. */
WARREN_API int warren_args_packed(const warren_args *a, const void **data, size_t *len,
				  warren_error *err);

/* JSON text of one packed msgpack value, as `warren call` prints results:
 * UTF-8 kept as is, floats in their shortest round-trip form (2.5, 0.1),
 * bytes as a string when they are UTF-8 else "base64:<...>", NaN/Inf as
 * null, non-string map keys as their JSON text. *out is malloc'd: free()
 * it. WARREN_EDECODE when mp is not one msgpack value. */
WARREN_API int warren_msgpack_to_json(const void *mp, size_t len, char **out, warren_error *err);

/* ==== the client (producer/client.c) ===================================== */

typedef struct warren_client warren_client;

typedef struct warren_client_opts {
	/* Override the config file (and the environment); NULL keeps it. A
	 * broker URL may be a ';'-separated failover list. */
	const char *broker_url;
	const char *result_backend; /* "redis://host:port/db", "rpc://", "none" */
	/* Let WARREN_BROKER_URL / WARREN_RESULT_BACKEND override the config
	 * file (not broker_url/result_backend above). Default true. */
	bool use_env;
	unsigned publish_window;  /* unconfirmed messages in flight, default 1000 */
	int connect_timeout_ms;   /* one connect attempt; 0 = the config's, else 10000 */
	int reconnect_timeout_ms; /* how long a lost broker is retried, default 60000 */
	int heartbeat;            /* seconds, 0 = off; -1 = the config's, else 60 */
	/* Delay countdown/eta tasks in the broker (delayed delivery) besides the
	 * eta header, so no worker holds them. Default true. With false only the
	 * Celery eta header is sent (Celery workers hold the task until due). */
	bool broker_delay;
} warren_client_opts;

/* Fills o with the defaults above. */
WARREN_API void warren_client_opts_init(warren_client_opts *o);

/* A client for broker_url (required) and backend_url (NULL or "none": no
 * results), with Celery's default routing (queue "celery"). opts may be
 * NULL (defaults); its broker_url/result_backend are ignored here. Nothing
 * is connected yet: the broker on the first send, the backend on the first
 * wait (warren_client_connect forces both). *out is freed with
 * warren_client_free. WARREN_EINVAL for a malformed URL. */
WARREN_API int warren_client_new(const char *broker_url, const char *backend_url,
				 const warren_client_opts *opts, warren_client **out,
				 warren_error *err);

/* A client from a warren YAML config (broker URLs, queues, task_routes,
 * task schemas, result_backend), with the overrides in opts. WARREN_ECONFIG
 * with file:line:column for a bad file. */
WARREN_API int warren_client_new_from_config(const char *path, const warren_client_opts *opts,
					     warren_client **out, warren_error *err);

/* Closes the connections (waiting at most 5 s for outstanding confirms) and
 * frees c. NULL is a no-op. */
WARREN_API void warren_client_free(warren_client *c);

/* Connects the broker now (and the backend when `backend` is true):
 * WARREN_EBROKER / WARREN_EBACKEND with the masked URL and the reason. */
WARREN_API int warren_client_connect(warren_client *c, bool backend, warren_error *err);

/* The broker URL in use (password masked); lives as long as c. */
WARREN_API const char *warren_client_broker_url(const warren_client *c);

/* ==== sending (producer/send.c) ========================================== */

typedef struct warren_send_opts {
	const char *queue;       /* overrides task_routes; NULL = routed */
	const char *exchange;    /* NULL = the queue's (see the top of this file) */
	const char *routing_key; /* NULL = the queue's */
	double countdown;        /* run no earlier than this many seconds from now; 0 = now */
	const char *eta;         /* ISO-8601 (naive = UTC); wins over countdown; NULL = none */
	double expires;          /* seconds from now after which it is REVOKED unrun; 0 = never */
	int priority;            /* 0..255; -1 = unset (sent as 0, as Celery does) */
	const char *task_id;     /* NULL = a fresh UUID4 */
	int retries;             /* the retries header, 0 on a first send */
	double time_limit;       /* hard, seconds, 0 = the worker's */
	double soft_time_limit;  /* seconds, 0 = the worker's */
	bool ignore_result;      /* the worker stores no result */
	/* Extra application headers: a warren_kwargs_new() map whose values are
	 * str, int, float, bool, nil, or lists of those. They are added after
	 * Celery's and replace one of the same name. NULL = none. */
	const warren_args *headers;
} warren_send_opts;

/* Fills o with "nothing set". */
WARREN_API void warren_send_opts_init(warren_send_opts *o);

/* Sends task `task` with args (NULL = no positional args) and kwargs (NULL
 * = none) and waits until the broker confirmed it. When the config declares
 * a schema for the task, args and kwargs are validated first, and a mismatch
 * is WARREN_ESCHEMA with nothing sent. id_out (WARREN_TASK_ID_MAX bytes, may
 * be NULL) receives the task id. Returns 0; WARREN_EINVAL (bad options or
 * builder), WARREN_ESCHEMA, WARREN_EBROKER (unreachable, nacked or
 * unroutable; message names the masked URL and the reason), WARREN_ETIMEOUT
 * (no confirm in time), WARREN_ENOMEM. Waiting for the confirm also settles
 * every earlier warren_send_async. */
WARREN_API int warren_send(warren_client *c, const char *task, const warren_args *args,
			   const warren_args *kwargs, const warren_send_opts *opts,
			   char *id_out, warren_error *err);

/* How the broker settled one asynchronous send. */
typedef enum warren_send_outcome {
	WARREN_SEND_CONFIRMED = 0, /* the broker has it (persisted for durable queues) */
	WARREN_SEND_NACKED,        /* the broker refused it */
	WARREN_SEND_RETURNED,      /* no queue was bound for its route */
	WARREN_SEND_UNKNOWN,       /* the broker stayed away longer than reconnect_timeout_ms */
} warren_send_outcome;

/* Called on the sending thread, from inside warren_send_async,
 * warren_client_flush or warren_send, once per asynchronous send. reason is
 * NULL when confirmed, else lives until the callback returns. */
typedef void (*warren_send_fn)(void *arg, uint64_t cookie, warren_send_outcome outcome,
			       const char *reason);
WARREN_API void warren_client_on_send(warren_client *c, warren_send_fn fn, void *arg);

/* Like warren_send, but returns once the message is written (cookie must be
 * below 2^62; the top bits are libwarren's): confirms are
 * pipelined (at most publish_window unconfirmed), each reported later
 * through the warren_client_on_send callback with `cookie`. A message the
 * broker did not confirm before a connection loss is published again after
 * the reconnect (a worker may see it twice; it never sees a confirmed one
 * lost). An error return means this message was not sent and gets no
 * callback. */
WARREN_API int warren_send_async(warren_client *c, const char *task, const warren_args *args,
				 const warren_args *kwargs, const warren_send_opts *opts,
				 uint64_t cookie, char *id_out, warren_error *err);

/* Waits until every asynchronous send has its outcome or timeout_ms passes
 * (WARREN_ETIMEOUT). */
WARREN_API int warren_client_flush(warren_client *c, int timeout_ms, warren_error *err);

/* Asynchronous sends still without an outcome. */
WARREN_API size_t warren_client_unconfirmed(const warren_client *c);

/* ==== results (producer/result.c) ======================================== */

/* Celery's task states. PENDING means "no result yet" (unknown ids too). */
typedef enum warren_state {
	WARREN_STATE_PENDING = 0,
	WARREN_STATE_RECEIVED,
	WARREN_STATE_STARTED,
	WARREN_STATE_SUCCESS,
	WARREN_STATE_FAILURE,
	WARREN_STATE_RETRY,
	WARREN_STATE_REVOKED,
	WARREN_STATE_REJECTED,
	WARREN_STATE_IGNORED,
} warren_state;

/* "SUCCESS", ...; static. */
WARREN_API const char *warren_state_name(warren_state s);

typedef struct warren_result warren_result;

/* Reads task id's latest result without waiting. *out is freed with
 * warren_result_free (PENDING when there is none yet). WARREN_EINVAL when
 * the client has no result backend; WARREN_EBACKEND. */
WARREN_API int warren_result_get(warren_client *c, const char *id, warren_result **out,
				 warren_error *err);

/* Waits up to timeout_ms (< 0: forever) for task id to be ready (SUCCESS,
 * FAILURE or REVOKED). On 0, *out is the ready result; on WARREN_ETIMEOUT
 * *out is NULL. Freed with warren_result_free. */
WARREN_API int warren_result_wait(warren_client *c, const char *id, int timeout_ms,
				  warren_result **out, warren_error *err);

/* Waits for all of ids[0..n) together. out[i] receives a result for every
 * i (PENDING when not ready by the deadline), each freed with
 * warren_result_free. Returns 0 when all are ready, WARREN_ETIMEOUT (with
 * *pending, may be NULL, set to how many are not) or another error, in which
 * case every out[i] is NULL. */
WARREN_API int warren_result_wait_many(warren_client *c, const char *const *ids, size_t n,
				       int timeout_ms, warren_result **out, size_t *pending,
				       warren_error *err);

/* NULL is a no-op. */
WARREN_API void warren_result_free(warren_result *r);

/* Getters. Every pointer lives as long as r. */
WARREN_API const char *warren_result_id(const warren_result *r);
WARREN_API warren_state warren_result_state(const warren_result *r);
/* true for SUCCESS, FAILURE and REVOKED. */
WARREN_API bool warren_result_ready(const warren_result *r);
/* The task's return value (the exc_* map for a failure): packed msgpack
 * (NULL, 0 for none), as a msgpack_object, and as JSON text (see
 * warren_msgpack_to_json; "null" for none; NULL only when out of memory). */
WARREN_API const void *warren_result_packed(const warren_result *r, size_t *len);
WARREN_API const msgpack_object *warren_result_object(const warren_result *r);
WARREN_API const char *warren_result_json(const warren_result *r);
/* FAILURE, REVOKED, RETRY: the exception's type ("ValueError"), message
 * ("boom", as Python's str(exc)) and module; NULL otherwise. */
WARREN_API const char *warren_result_exc_type(const warren_result *r);
WARREN_API const char *warren_result_exc_message(const warren_result *r);
WARREN_API const char *warren_result_exc_module(const warren_result *r);
/* The formatted traceback the worker sent, or NULL. */
WARREN_API const char *warren_result_traceback(const warren_result *r);

/* ==== queues (producer/queues.c) ========================================= */

/* Messages ready in queue `name` and consumers on it (a passive declare).
 * WARREN_ENOTFOUND when the queue does not exist. */
WARREN_API int warren_queue_stats(warren_client *c, const char *name, uint32_t *messages,
				  uint32_t *consumers, warren_error *err);

/* Deletes every ready message of queue `name`; *purged (may be NULL) gets
 * how many. WARREN_ENOTFOUND when the queue does not exist. */
WARREN_API int warren_queue_purge(warren_client *c, const char *name, uint32_t *purged,
				  warren_error *err);

/* The queues the config declares (plus the default queue), in order.
 * *names points into c and lives as long as it. */
WARREN_API size_t warren_client_queues(const warren_client *c, const char *const **names);

/* ==== canvas (producer/canvas.c) ======================================== */

/* Signatures and canvases: Celery's chain, group, chord and xmap/xstarmap,
 * sent as Celery 5.2's client sends them, so warren workers and Celery
 * workers run them alike (see CELERY-WIRE.md §5):
 *
 *   warren_sig *a, *b, *c, *ch;
 *   warren_sig_new("math.add", args_2_3, NULL, &a, &err);   // add(2, 3)
 *   warren_sig_new("math.mul", args_10, NULL, &b, &err);    // mul(_, 10)
 *   warren_sig_new("math.add", args_1, NULL, &c, &err);     // add(_, 1)
 *   const warren_sig *steps[] = {a, b, c};
 *   warren_chain(steps, 3, &ch, &err);
 *   warren_canvas *cv;
 *   warren_canvas_send(client, ch, &cv, &err);
 *   warren_result *r;
 *   warren_canvas_wait(client, cv, 10000, &r, &err);        // 51
 *
 * A warren_sig is plain data (the signature dict, packed): composing copies
 * the members, so every warren_sig is freed by its creator with
 * warren_sig_free. Sending never changes a warren_sig: ids not set with
 * warren_sig_set_task_id are fresh at each send. */
typedef struct warren_sig warren_sig;

/* A task signature: task(args..., **kwargs), args/kwargs may be NULL. The
 * result of the task before it (chain) or the task it is linked to
 * (callback) is prepended to args when it runs, unless it is immutable.
 * *out is freed with warren_sig_free. */
WARREN_API int warren_sig_new(const char *task, const warren_args *args,
			      const warren_args *kwargs, warren_sig **out, warren_error *err);
/* NULL is a no-op. */
WARREN_API void warren_sig_free(warren_sig *s);

/* Options (Celery's signature options). */
WARREN_API int warren_sig_set_immutable(warren_sig *s, bool immutable, warren_error *err);
WARREN_API int warren_sig_set_queue(warren_sig *s, const char *queue, warren_error *err);
WARREN_API int warren_sig_set_countdown(warren_sig *s, double seconds, warren_error *err);
WARREN_API int warren_sig_set_task_id(warren_sig *s, const char *id, warren_error *err);
/* Any other apply_async option as JSON text: "priority", "5";
 * "time_limit", "30"; "expires", "60"; "ignore_result", "true". */
WARREN_API int warren_sig_set_option(warren_sig *s, const char *key, const char *json,
				     warren_error *err);
/* Adds a copy of cb as a callback (link: runs with s's result prepended) or
 * an errback (link_error: runs with s's task id as its argument when s
 * fails; Celery's old-style errback). */
WARREN_API int warren_sig_link(warren_sig *s, const warren_sig *cb, warren_error *err);
WARREN_API int warren_sig_link_error(warren_sig *s, const warren_sig *eb, warren_error *err);

/* Composites, each a new signature holding copies of the members.
 * chain: each step gets the previous step's result first; a group followed
 * by a step becomes a chord (as Celery's `group | task`); its result is the
 * last step's. group: members run in parallel; the result is the list of
 * their results in order. chord: header members in parallel, then body
 * with the list of their results (needs a redis:// result backend). */
WARREN_API int warren_chain(const warren_sig *const *steps, size_t n, warren_sig **out,
			    warren_error *err);
WARREN_API int warren_group(const warren_sig *const *members, size_t n, warren_sig **out,
			    warren_error *err);
WARREN_API int warren_chord(const warren_sig *const *header, size_t n, const warren_sig *body,
			    warren_sig **out, warren_error *err);

/* task applied to each item of items (a warren_args list): map calls
 * task(item), starmap task(*item) (items are lists). Up to
 * WARREN_MAP_INLINE_MAX items it is one Celery `celery.map` /
 * `celery.starmap` task that runs them one after another on one worker
 * (Celery's xmap); a longer list is sent as a group, one task per item.
 * The result is the list of results in order either way. */
#define WARREN_MAP_INLINE_MAX 100
WARREN_API int warren_map(const char *task, const warren_args *items, warren_sig **out,
			  warren_error *err);
WARREN_API int warren_starmap(const char *task, const warren_args *items, warren_sig **out,
			      warren_error *err);

/* A sent canvas: the ids to wait on. */
typedef struct warren_canvas warren_canvas;

/* Sends sig (any kind) and waits for the broker to confirm every message.
 * A chord anywhere in it is refused with WARREN_EINVAL, before anything is
 * sent, unless the result backend is redis:// (Celery refuses chords on
 * rpc:// too). *out is freed with warren_canvas_free. */
WARREN_API int warren_canvas_send(warren_client *c, const warren_sig *sig, warren_canvas **out,
				  warren_error *err);
/* The id a caller waits on: a task's or chain's last task id, a chord's
 * body id, a group's group id. Lives as long as cv. */
WARREN_API const char *warren_canvas_id(const warren_canvas *cv);
/* The task ids whose results make the canvas's result (one, or a group's
 * members in order); *ids lives as long as cv. */
WARREN_API size_t warren_canvas_ids(const warren_canvas *cv, const char *const **ids);
/* Waits for the whole result: a chain's last result, a chord body's, a
 * group's list in index order (as one SUCCESS result whose value is the
 * list; the first failed member's result when one failed). Returns as
 * warren_result_wait. */
WARREN_API int warren_canvas_wait(warren_client *c, const warren_canvas *cv, int timeout_ms,
				  warren_result **out, warren_error *err);
/* NULL is a no-op. */
WARREN_API void warren_canvas_free(warren_canvas *cv);

#ifdef __cplusplus
}
#endif
#endif
