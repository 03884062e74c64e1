/* backends/backend.h - private header of the result backends: one small
 * interface (store a result, read one, wait for one or many with a deadline,
 * forget one) behind an opaque `backend` handle, and the implementations
 * chosen by URL scheme:
 *
 *   redis://[[user]:password@]host[:port][/db]   Celery's Redis layout (redis.c)
 *   rediss://...                                 the same over TLS (parsed; needs
 *                                                hiredis >= 1.0 with SSL to open)
 *   none, none:// or an empty URL                results disabled (none.c)
 *   rpc://                                       Celery's rpc backend over the
 *                                                AMQP connection in
 *                                                backend_options.conn (rpc.c);
 *                                                anything after rpc:// is
 *                                                ignored, as Celery does
 *
 * A handle is not thread-safe: one per thread, or the caller locks. Every
 * message names the URL with its password masked.
 *
 * rpc in short (details at the top of rpc.c): a result travels as an AMQP
 * message to the queue named by the task's reply_to, with its
 * correlation_id; the client that sent the task consumes its own reply
 * queue (backend_reply_to) to wait. rabbitmq-c connections are not
 * thread-safe, so the backend owns no connection: it borrows the caller's
 * (backend_options.conn), and runs only inside calls on the thread that
 * owns that connection.
 *  - Worker: open with the loop thread's connection; backend_store
 *    publishes on it. Its outcome callback stays the worker's: either
 *    forward the backend's cookies with backend_outcome (then store returns
 *    the broker's verdict), or set backend_request.async_confirm and read
 *    the outcome under your own cookie (see backend_request).
 *  - Client: open with the client's connection; call backend_before_send
 *    before publishing each task, put backend_reply_to in its reply_to and
 *    the task id in its correlation_id; backend_wait/backend_get read the
 *    replies. Results are read once: a ready result handed out by wait or
 *    get is forgotten by the backend.
 */
#ifndef WARREN_BACKEND_H
#define WARREN_BACKEND_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "warren/error.h"
#include "broker-adapter/broker.h"
#include "../schemas/schemas.h"

typedef struct backend backend;

/* ==== options (backends/backend.c) ==== */

typedef struct backend_options {
	/* Seconds a stored result lives (Celery's result_expires, default
	 * 86400); 0 stores it forever (SET instead of SETEX). */
	int64_t result_expires;
	/* Hard limits for decoding stored results, which are untrusted input.
	 * Copied at open. */
	schema_limits limits;
	/* Connecting (TCP and handshake), default 4000 ms. */
	int connect_timeout_ms;
	/* One command's round trip once connected, default 10000 ms. rpc: how
	 * long a store waits for the broker's confirm. */
	int io_timeout_ms;
	/* rpc only (required there, ignored elsewhere): the AMQP connection
	 * results go out and come in on. Borrowed: it must outlive the backend,
	 * and the backend is used only on the thread that owns it. */
	broker_conn *conn;
	/* rpc: send results persistent (delivery_mode 2), Celery's
	 * result_persistent; default false (delivery_mode 1). */
	bool result_persistent;
} backend_options;

/* Fills o with the defaults above and schema_limits_default(). */
void backend_options_default(backend_options *o);

/* ==== the interface (backends/backend.c) ==== */

/* Where the task that produced a result asked for it to go. The rpc backend
 * publishes to reply_to with correlation_id (NULL or "": the task id); redis
 * and none ignore it. Strings are borrowed for the call. */
typedef struct backend_request {
	const char *reply_to;
	const char *correlation_id;
	/* rpc: how the broker's verdict on the result comes back.
	 * false (the zero value): backend_store waits for it (up to
	 * io_timeout_ms, with broker_publish_flush, so other messages
	 * unconfirmed on the connection are waited for too) and returns it;
	 * this needs the connection's outcome callback to hand the backend its
	 * cookies (backend_outcome). true: backend_store returns once the
	 * message is written (pipelined, no round trip), and the outcome
	 * arrives later at the connection's outcome callback under `cookie`,
	 * which the caller chose (keep BACKEND_COOKIE_TAG clear in it). */
	bool async_confirm;
	uint64_t cookie;
} backend_request;

/* Opens the backend `url` names (see the top of this file); opts NULL means
 * backend_options_default. Connects eagerly, so a bad host or password is
 * reported here; rpc:// talks to the broker only when first used. *out is
 * freed by backend_free. Returns 0, WARREN_EINVAL (bad or unsupported URL,
 * rpc:// without opts->conn), WARREN_EBACKEND (cannot connect or
 * authenticate) or WARREN_ENOMEM. */
int backend_open(const char *url, const backend_options *opts, backend **out,
		 warren_error *err);

/* Closes the connections and frees b. NULL is a no-op. rpc: the borrowed
 * connection stays open, and a reply queue consumer started by wait or get
 * stays on it (the adapter has no cancel): free the connection after the
 * backend, or expect later reads of it to see those replies. */
void backend_free(backend *b);

/* "redis", "rpc", "none": a static name for logs. */
const char *backend_name(const backend *b);

/* The URL b was opened with, password masked; lives as long as b. */
const char *backend_url(const backend *b);

/* Stores r (task_id required) as Celery does. redis: a stored SUCCESS is
 * never overwritten (the call then succeeds without writing), the value
 * expires after opts.result_expires, and waiting clients are notified.
 * req may be NULL. Returns 0, WARREN_EINVAL, WARREN_ELIMIT (value over 512
 * MiB, Redis's limit), WARREN_EBACKEND or WARREN_ENOMEM; none: always 0.
 * rpc: publishes the result to req->reply_to (nothing is sent, and 0
 * returned, when it is NULL or empty, as Celery). With the default
 * req->async_confirm false it returns 0 once the broker confirmed it,
 * WARREN_ENOTFOUND when the broker returned it because the reply queue does
 * not exist (the client went away: worth a log line, not a task failure),
 * WARREN_EBACKEND (nacked, or the connection was lost for good),
 * WARREN_ETIMEOUT (no verdict within io_timeout_ms) or WARREN_EINVAL (the
 * verdict never reached backend_outcome). With async_confirm it returns 0
 * once published, or WARREN_EBACKEND / WARREN_ENOMEM. */
int backend_store(backend *b, const schema_result *r, const backend_request *req,
		  warren_error *err);

/* Reads task `id`'s latest result without waiting into *out, which the
 * caller initialized with schema_result_init and frees with
 * schema_result_release (it is released first). No record yet: out is
 * PENDING with task_id set. Returns 0, WARREN_EDECODE/WARREN_ELIMIT (a
 * stored value that is not a result), WARREN_EBACKEND, WARREN_ENOMEM, or
 * WARREN_EINVAL for the none backend. rpc: reads the replies that already
 * arrived, without waiting, and gives the latest state seen for id; a
 * ready one is handed out once (read-once, as Celery's). */
int backend_get(backend *b, const char *id, schema_result *out, warren_error *err);

/* Called once for each id whose result is ready (SUCCESS, FAILURE, REVOKED),
 * as soon as it is known; index is its position in ids[] (an id given twice
 * is reported at each position). r is valid until the callback returns; to
 * keep it, move it: `*mine = *r; schema_result_init(r);`. Return 0 to go on,
 * or a negative WARREN_E* code to stop waiting: backend_wait returns it. */
typedef int (*backend_ready_fn)(void *arg, size_t index, schema_result *r);

/* Waits until every one of ids[0..n) is ready or timeout_ms passes
 * (timeout_ms < 0: no deadline; 0: look once, do not wait), calling on_ready
 * for each as it becomes ready. Needs no polling on redis (pub/sub). Returns
 * 0 when all were reported; WARREN_ETIMEOUT, whose message says how many of
 * n are still pending; the callback's code; WARREN_EDECODE (a result that
 * cannot be decoded: its id is named); WARREN_EBACKEND; WARREN_ENOMEM; or
 * WARREN_EINVAL (none backend, NULL ids).
 * rpc: consumes the reply queue (from the first wait or get on) and takes
 * every event of the connection: replies for ids not asked for are kept
 * (the latest state per task, at most 8192 tasks, oldest dropped first, as
 * Celery's buffer) for a later wait or get; a delivery for another consumer
 * on the same connection is dropped unacked (the broker redelivers it once
 * the connection closes), so a client's connection should have no other
 * consumer. A deleted reply queue ends the wait with WARREN_EBACKEND; the
 * next backend_before_send declares it again. */
int backend_wait(backend *b, const char *const *ids, size_t n, int timeout_ms,
		 backend_ready_fn on_ready, void *arg, warren_error *err);

/* backend_wait into an array: results[i] (initialized by the caller, who
 * releases each) receives ids[i]'s ready result; the ones not ready when the
 * deadline passes are left as they were. *pending (may be NULL) receives how
 * many are not ready. Returns what backend_wait returns. */
int backend_wait_results(backend *b, const char *const *ids, size_t n, int timeout_ms,
			 schema_result *results, size_t *pending, warren_error *err);

/* Deletes task id's result (a missing one is fine). Returns 0,
 * WARREN_EBACKEND, or WARREN_EINVAL for the none backend. rpc: drops what
 * this client buffered for id. */
int backend_forget(backend *b, const char *id, warren_error *err);

/* ==== rpc only (no-ops for the other backends) ==== */

/* The name of this client's reply queue: a uuid, as Celery's oid, to put in
 * the reply_to of every task whose result it will wait for. Lives as long
 * as b. NULL for the other backends. */
const char *backend_reply_to(const backend *b);

/* Call before publishing a task that names backend_reply_to (Celery's
 * on_task_call): declares the reply queue as Celery does (non-durable,
 * auto-delete, not exclusive, x-expires = result_expires * 1000 ms), so the
 * worker's reply always has somewhere to go. Only the first call talks to
 * the broker; the adapter re-declares after a reconnect. Returns 0,
 * WARREN_EBACKEND (the broker refused: err says why) or WARREN_ENOMEM. */
int backend_before_send(backend *b, warren_error *err);

/* Cookies of the results an rpc store publishes carry this bit; keep it
 * clear in your own cookies on a connection a backend shares. */
#define BACKEND_COOKIE_TAG (UINT64_C(1) << 63)

/* Hands b an outcome from the connection's outcome callback. Call it first
 * in that callback; it returns true when the cookie was b's (then ignore
 * it), false otherwise (always false for non-rpc backends and NULL b). */
bool backend_outcome(backend *b, uint64_t cookie, broker_outcome o, const char *reason);

/* backend_outcome with the broker_outcome_fn signature, for a connection
 * whose only publisher is the backend: broker_set_outcome_fn(conn,
 * backend_outcome_fn, b). */
void backend_outcome_fn(void *b, uint64_t cookie, broker_outcome o, const char *reason);

/* ==== URLs (backends/url.c) ==== */

/* A parsed redis:// or rediss:// URL. Strings are owned (malloc'd) and freed
 * by backend_redis_url_release. */
typedef struct backend_redis_url {
	bool tls;       /* rediss:// */
	char *host;     /* never NULL; default "localhost"; [v6] brackets removed */
	int port;       /* default 6379 */
	char *username; /* NULL: none (Redis 6 ACL user) */
	char *password; /* NULL: none; percent-decoded */
	int db;         /* default 0 */
} backend_redis_url;

/* Parses `redis://[[user]:password@]host[:port][/db]` (or rediss://) into
 * out, which needs no initialization. Query options are refused rather than
 * ignored. Errors name the masked URL: `result backend 'redis://:****@h/x':
 * database "x" is not a number`. Returns 0, WARREN_EINVAL or WARREN_ENOMEM. */
int backend_redis_url_parse(const char *url, backend_redis_url *out, warren_error *err);
void backend_redis_url_release(backend_redis_url *u);

/* Copies url into buf (cap bytes, always NUL-terminated, truncated if need
 * be) with the password, if any, replaced by "****". */
void backend_url_mask(const char *url, char *buf, size_t cap);

/* ==== for implementations only (backend.c, redis.c, rpc.c, none.c) ==== */

/* One implementation. impl is what its open returned (freed with its free);
 * every function gets arguments already checked by backend.c (non-NULL,
 * n > 0). url_masked is for messages and lives in the handle, as long as
 * impl. The members after `free` are rpc's and may be NULL. */
typedef struct backend_ops {
	const char *name;
	int (*open)(const char *url, const char *url_masked, const backend_options *o,
		    void **impl, warren_error *err);
	int (*store)(void *impl, const schema_result *r, const backend_request *req,
		     warren_error *err);
	int (*get)(void *impl, const char *id, schema_result *out, warren_error *err);
	int (*wait)(void *impl, const char *const *ids, size_t n, int timeout_ms,
		    backend_ready_fn on_ready, void *arg, warren_error *err);
	int (*forget)(void *impl, const char *id, warren_error *err);
	void (*free)(void *impl);
	const char *(*reply_to)(const void *impl);
	int (*before_send)(void *impl, warren_error *err);
	bool (*outcome)(void *impl, uint64_t cookie, broker_outcome o, const char *reason);
} backend_ops;

extern const backend_ops backend_redis_ops; /* redis.c */
extern const backend_ops backend_rpc_ops;   /* rpc.c */
extern const backend_ops backend_none_ops;  /* none.c */

/* ==== chords (backends/chord.c) ==== */

/* Celery's Redis chord join (celery/backends/redis.py on_chord_part_return,
 * set_chord_size; CELERY-WIRE.md §4), on a connection of its own, so warren
 * and Celery workers can share one chord:
 *   size   SETEX celery-taskset-meta-<gid>.s <expires> <n>; PUBLISH (the client)
 *   part   MULTI; ZADD <gid>.j <group_index|+inf> [1, tid, state, result];
 *          ZCOUNT <gid>.j -inf +inf; GET <gid>.t; GET <gid>.s;
 *          EXPIRE .j/.t/.s <expires>; EXEC   (each header task)
 *   join   ZRANGE <gid>.j 0 -1 when the count equals .s + .t, then DEL .j .t .s
 * The MULTI makes exactly one part see the final count. Only redis:// and
 * rediss:// can join: anything else is WARREN_EINVAL at open. */
typedef struct backend_chord backend_chord;

/* Opens a chord handle for a redis URL (opts as backend_open, NULL =
 * defaults); *out is freed with backend_chord_free. Returns 0, WARREN_EINVAL
 * (not redis, or a bad URL), WARREN_EBACKEND or WARREN_ENOMEM. */
int backend_chord_open(const char *url, const backend_options *opts, backend_chord **out,
		       warren_error *err);
void backend_chord_free(backend_chord *ch);

/* True when url names a backend that can join chords (redis, rediss). */
bool backend_chord_supported(const char *url);

/* Records a chord header's size (Celery's set_chord_size). */
int backend_chord_set_size(backend_chord *ch, const char *group_id, int64_t size,
			   warren_error *err);

/* One finished header task. result_mp is its encoded result (the value, or
 * the exc_* map of a failure). redelivered: the message may have been
 * counted already by a worker that died before acking it; the part is then
 * added only when no member of the join holds its task id, so a redelivery
 * never counts twice. */
typedef struct backend_chord_part {
	const char *group_id;
	const char *task_id;
	bool has_index;
	int64_t index;      /* group_index; without one the score is +inf */
	schema_state state;
	const void *result_mp;
	size_t result_len;
	bool redelivered;
} backend_chord_part;

/* Adds a part; *complete is true when the join's count (after this part)
 * equals the recorded size: the caller then reads the parts, fires the
 * body and forgets the chord. Returns 0, WARREN_EBACKEND or WARREN_ENOMEM. */
int backend_chord_add(backend_chord *ch, const backend_chord_part *part, bool *complete,
		      warren_error *err);

/* One joined part, owned by the array backend_chord_read returns. */
typedef struct backend_chord_result {
	char *task_id;
	schema_state state;
	char *result_mp; /* packed; never NULL (nil is "\xc0") */
	size_t result_len;
} backend_chord_result;

/* The parts in group_index order (ZRANGE). *out is freed with
 * backend_chord_results_free. Returns 0, WARREN_EDECODE (a member that is
 * not [1, tid, state, result]), WARREN_EBACKEND or WARREN_ENOMEM. */
int backend_chord_read(backend_chord *ch, const char *group_id, backend_chord_result **out,
		       size_t *n, warren_error *err);
void backend_chord_results_free(backend_chord_result *r, size_t n);

/* DEL .j .t .s. */
int backend_chord_forget(backend_chord *ch, const char *group_id, warren_error *err);

/* ==== records (backends/record.c) ==== */

/* A small value that is not a task result (a pipeline run's record) under
 * its own key in a redis:// result backend, on a connection opened for the
 * call. Anything but redis is WARREN_EINVAL: "this needs a redis result
 * backend". opts as backend_open (NULL = defaults). */
bool backend_record_supported(const char *url);
/* SETEX key expires_s data (SET when expires_s <= 0). */
int backend_record_put(const char *url, const backend_options *opts, const char *key,
		       const void *data, size_t len, int64_t expires_s, warren_error *err);
/* GET key: *data is malloc'd, NUL-terminated (free it); WARREN_ENOTFOUND
 * when the key does not exist. */
int backend_record_get(const char *url, const backend_options *opts, const char *key,
		       char **data, size_t *len, warren_error *err);

#endif
