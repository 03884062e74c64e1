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

/* ---- control.c: Celery's remote control, the client side ---- */

/* One broadcast. Strings and bytes are borrowed. */
typedef struct producer_control_call {
	const char *method;                 /* "ping", "revoke", ... */
	const void *arguments_mp;           /* one packed msgpack map; NULL = {} */
	size_t arguments_len;
	const char *const *destination;     /* node names; NULL/0 = every node */
	size_t n_destination;
	double timeout;                     /* seconds to collect replies */
	bool reply;                         /* false: a cast (shutdown), none collected */
} producer_control_call;

/* One node's answer: its value as JSON text ({"ok": ...}, {"error": ...} or
 * an inspect command's bare value). */
typedef struct producer_control_node {
	char *nodename;
	char *json;
	bool is_error;
} producer_control_node;

typedef struct producer_control_result {
	producer_control_node *nodes;       /* in the order they first answered */
	size_t n;
} producer_control_result;

/* Broadcasts call and collects the replies carrying its ticket for
 * call->timeout seconds, or until every named destination answered. *out
 * (possibly empty: nobody answered) is freed with
 * producer_control_result_release. 0, WARREN_EBROKER, WARREN_ENOMEM, or the
 * encoder's WARREN_EINVAL. */
int producer_control(warren_client *c, const producer_control_call *call,
		     producer_control_result *out, warren_error *err);
void producer_control_result_release(producer_control_result *r);

/* ---- canvas.c's hooks in send.c and result.c ---- */

/* send.c: publishes a message canvas.c built, as warren_send would
 * (schema check, routing with `queue` over task_routes, declare, countdown
 * and expires), without waiting: the confirm comes to the client's outcome
 * callback under cookie. */
int producer_send_msg(warren_client *c, schema_task_msg *msg, const char *queue,
		      double countdown, double expires, uint64_t cookie, warren_error *err);
/* result.c: takes r's contents (r is left initialized) into a new result,
 * freed with warren_result_free. */
int producer_result_from(schema_result *r, warren_result **out, warren_error *err);

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

/* ---- pipeline.c: running YAML pipelines (`warren pipeline`) ---- */

/* One followed task of a run: its id, task name and node path within the
 * pipeline ("run.chain[1]", a map's items "run.map[0]"). Owned strings. */
typedef struct producer_pipeline_step {
	char *task_id;
	char *task;
	char *node;
} producer_pipeline_step;

/* A started (or, from its record, an earlier) pipeline run. Freed with
 * producer_pipeline_run_free. */
typedef struct producer_pipeline_run {
	char *id;            /* the run id: the canvas's id (warren_canvas_id) */
	char *pipeline;      /* its name */
	char *inputs_json;   /* the bound inputs as a JSON object; NULL when none */
	double started;      /* epoch seconds */
	producer_pipeline_step *steps; /* in send order */
	size_t n_steps;
	size_t n_untracked;  /* ignore_result tasks: no state to follow */
	char **result_ids;   /* the steps whose results make the run's result */
	size_t n_result_ids;
	bool result_is_list; /* the result is the list of those (a group's) */
} producer_pipeline_run;

/* Turns bound into a canvas with an id on every task, sends it (queue, if
 * not NULL, overrides every node's queue) and fills a new *out. */
int producer_pipeline_start(warren_client *c, const pipeline_bound *bound, const char *queue,
			    producer_pipeline_run **out, warren_error *err);
void producer_pipeline_run_free(producer_pipeline_run *run);

/* The run record: JSON under "warren-pipeline-<id>" in the (redis) result
 * backend, expiring with the results. Anything but redis is WARREN_EINVAL
 * ("needs a redis result backend"); get: WARREN_ENOTFOUND for no record. */
int producer_pipeline_record_put(warren_client *c, const producer_pipeline_run *run,
				 warren_error *err);
int producer_pipeline_record_get(warren_client *c, const char *id, producer_pipeline_run **out,
				 warren_error *err);

/* results[0..run->n_steps) is the caller's, NULL-initialized and freed by
 * it. poll waits up to timeout_ms (warren_result_wait_many, no busy loop)
 * for the steps not ready yet and keeps each ready result in results[i];
 * over rpc:// results are read once, so results[] is then the only copy.
 * peek reads every unready step's latest state (STARTED, RETRY, ...) with
 * warren_result_get, without waiting. */
int producer_pipeline_poll(warren_client *c, const producer_pipeline_run *run,
			   warren_result **results, int timeout_ms, warren_error *err);
int producer_pipeline_peek(warren_client *c, const producer_pipeline_run *run,
			   warren_result **results, warren_error *err);
/* The run's result as JSON (malloc'd, free it), when every result step
 * succeeded; WARREN_ENOTFOUND otherwise. */
int producer_pipeline_result_json(const producer_pipeline_run *run,
				  warren_result *const *results, char **json, warren_error *err);

#endif
