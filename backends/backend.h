/* backends/backend.h - private header of the result backends: one small
 * interface (store a result, read one, wait for one or many with a deadline,
 * forget one) behind an opaque `backend` handle, and the implementations
 * chosen by URL scheme:
 *
 *   redis://[[user]:password@]host[:port][/db]   Celery's Redis layout (redis.c)
 *   rediss://...                                 the same over TLS (parsed; needs
 *                                                hiredis >= 1.0 with SSL to open)
 *   none, none:// or an empty URL                results disabled (none.c)
 *   rpc://                                       not in this build yet (see below)
 *
 * A handle is not thread-safe: one per thread, or the caller locks. Every
 * message names the URL with its password masked.
 *
 * How rpc fits later: Celery's rpc backend publishes a result to the AMQP
 * queue named by the request's reply_to, with its correlation_id, and a
 * client waits by consuming its own reply queue. So store takes a
 * backend_request (reply_to, correlation_id: redis ignores both), and
 * backend_options will grow the broker connection (and the client's reply
 * queue name) that rpc needs; wait/get keep their signatures.
 */
#ifndef WARREN_BACKEND_H
#define WARREN_BACKEND_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "warren/error.h"
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
	/* One command's round trip once connected, default 10000 ms. */
	int io_timeout_ms;
} backend_options;

/* Fills o with the defaults above and schema_limits_default(). */
void backend_options_default(backend_options *o);

/* ==== the interface (backends/backend.c) ==== */

/* Where the task that produced a result asked for it to go. The rpc backend
 * publishes to reply_to with correlation_id (NULL: the task id); redis and
 * none ignore it. Strings are borrowed for the call. */
typedef struct backend_request {
	const char *reply_to;
	const char *correlation_id;
} backend_request;

/* Opens the backend `url` names (see the top of this file); opts NULL means
 * backend_options_default. Connects eagerly, so a bad host or password is
 * reported here. *out is freed by backend_free. Returns 0, WARREN_EINVAL (bad
 * or unsupported URL, rpc://), WARREN_EBACKEND (cannot connect or
 * authenticate) or WARREN_ENOMEM. */
int backend_open(const char *url, const backend_options *opts, backend **out,
		 warren_error *err);

/* Closes the connections and frees b. NULL is a no-op. */
void backend_free(backend *b);

/* "redis", "none": a static name for logs. */
const char *backend_name(const backend *b);

/* The URL b was opened with, password masked; lives as long as b. */
const char *backend_url(const backend *b);

/* Stores r (task_id required) as Celery does. redis: a stored SUCCESS is
 * never overwritten (the call then succeeds without writing), the value
 * expires after opts.result_expires, and waiting clients are notified.
 * req may be NULL. Returns 0, WARREN_EINVAL, WARREN_ELIMIT (value over 512
 * MiB, Redis's limit), WARREN_EBACKEND or WARREN_ENOMEM; none: always 0. */
int backend_store(backend *b, const schema_result *r, const backend_request *req,
		  warren_error *err);

/* Reads task `id`'s latest result without waiting into *out, which the
 * caller initialized with schema_result_init and frees with
 * schema_result_release (it is released first). No record yet: out is
 * PENDING with task_id set. Returns 0, WARREN_EDECODE/WARREN_ELIMIT (a
 * stored value that is not a result), WARREN_EBACKEND, WARREN_ENOMEM, or
 * WARREN_EINVAL for the none backend. */
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
 * WARREN_EINVAL (none backend, NULL ids). */
int backend_wait(backend *b, const char *const *ids, size_t n, int timeout_ms,
		 backend_ready_fn on_ready, void *arg, warren_error *err);

/* backend_wait into an array: results[i] (initialized by the caller, who
 * releases each) receives ids[i]'s ready result; the ones not ready when the
 * deadline passes are left as they were. *pending (may be NULL) receives how
 * many are not ready. Returns what backend_wait returns. */
int backend_wait_results(backend *b, const char *const *ids, size_t n, int timeout_ms,
			 schema_result *results, size_t *pending, warren_error *err);

/* Deletes task id's result (a missing one is fine). Returns 0,
 * WARREN_EBACKEND, or WARREN_EINVAL for the none backend. */
int backend_forget(backend *b, const char *id, warren_error *err);

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

/* ==== for implementations only (backend.c, redis.c, none.c) ==== */

/* One implementation. impl is what its open returned (freed with its free);
 * every function gets arguments already checked by backend.c (non-NULL,
 * n > 0). url_masked is for messages and lives in the handle, as long as
 * impl. */
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
} backend_ops;

extern const backend_ops backend_redis_ops; /* redis.c */
extern const backend_ops backend_none_ops;  /* none.c */

#endif
