/* producer/producer.h - private header of libwarren's producer: the client
 * struct behind the opaque warren_client, and helpers the producer's files
 * (client.c, send.c, args.c, result.c, queues.c, clock.c, cmdline.c) and the
 * CLI (cli_*.c) share. Not installed.
 */
#ifndef WARREN_PRODUCER_H
#define WARREN_PRODUCER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "warren/warren.h"
#include "backends/backend.h"
#include "broker-adapter/broker.h"
#include "config/config.h"

/* Cookies with this bit set belong to warren_send (synchronous sends); the
 * rest are the caller's warren_send_async cookies. Bit 63 is the rpc
 * backend's (BACKEND_COOKIE_TAG). */
#define PRODUCER_SYNC_COOKIE (UINT64_C(1) << 62)
#define PRODUCER_USER_COOKIE_MAX (UINT64_C(1) << 62)

struct warren_client {
	warren_config *cfg;  /* NULL for warren_client_new */
	char *broker_urls;   /* ';'-separated, owned */
	char *backend_url;   /* owned; NULL = no result backend */
	char broker_masked[512];
	warren_client_opts opts;
	broker_conn *conn;   /* NULL until the first send */
	backend *be;         /* NULL until the first result call */
	char oid[37];        /* reply_to: this client's reply queue name (Celery's oid) */

	char **declared;     /* queues whose topology was declared, owned */
	size_t n_declared, cap_declared;
	const char **queue_names; /* for warren_client_queues, into cfg or static */
	size_t n_queue_names;

	warren_send_fn on_send;
	void *on_send_arg;
	/* the synchronous send in flight: its cookie and what became of it */
	uint64_t sync_seq;
	bool sync_done;
	broker_outcome sync_outcome;
	char sync_reason[WARREN_ERROR_MSG_MAX];
};

/* ---- client.c ---- */

/* Connects the broker unless connected. */
int producer_broker(warren_client *c, warren_error *err);
/* Opens the result backend unless open (rpc: connects the broker first, as
 * the backend borrows that connection); WARREN_EINVAL when there is none. */
int producer_backend(warren_client *c, warren_error *err);
/* Is the result backend rpc:// (results come over the broker)? */
bool producer_backend_is_rpc(const warren_client *c);
/* The reply_to for the next task: the rpc backend's reply queue, declared
 * before first use, else the client's oid as Celery sends it. */
int producer_reply_to(warren_client *c, const char **reply_to, warren_error *err);

/* ---- args.c ---- */

/* A builder's packed bytes, or an error (its sticky one, an unclosed
 * container) under the name `what` ("args", "kwargs", "headers"). NULL a
 * gives an empty array/map per want_map. */
int producer_args_bytes(const warren_args *a, bool want_map, const char *what,
			const void **data, size_t *len, warren_error *err);

/* A builder from a parsed jansson value: a JSON array as args (is_map
 * false) or an object as kwargs. *out is freed with warren_args_free. */
struct json_t;
int producer_args_from_jansson(const struct json_t *v, bool is_map, warren_args **out,
			       warren_error *err);

/* JSON text of an unpacked msgpack object (see warren_msgpack_to_json),
 * malloc'd (free it); NULL when out of memory. */
char *producer_object_to_json(const msgpack_object *o);

/* ---- clock.c ---- */

/* Microseconds since the epoch (CLOCK_REALTIME). */
int64_t producer_now_us(void);
/* Parses ISO-8601 "YYYY-MM-DD[T ]HH:MM[:SS[.ffffff]][Z|+HH:MM|-HH:MM]"
 * (naive = UTC, as Celery's maybe_make_aware) into microseconds since the
 * epoch. WARREN_EINVAL, naming the text, when it is not one. */
int producer_iso8601_parse(const char *text, int64_t *us, warren_error *err);
/* Writes t as Python's aware isoformat, "2026-11-27T10:18:50.001900+00:00"
 * (microseconds only when nonzero, as Python does). buf holds 40 bytes. */
void producer_iso8601_format(int64_t us, char buf[40]);
/* Parses a non-negative number of seconds ("10", "1.5"). WARREN_EINVAL when
 * text is not one; `what` names the option. */
int producer_parse_seconds(const char *text, const char *what, double *out, warren_error *err);

#endif
