/* worker/control_cmd.c - remote control commands that change the worker
 * (Celery's worker/control.py `control_command`s): revoke, terminate,
 * rate_limit, time_limit, shutdown, add_consumer, cancel_consumer,
 * pool_grow/pool_shrink, enable_events/disable_events, heartbeat, election.
 * Replies are word for word Celery's. Loop thread only. */
#include <ctype.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "worker.h"

#define MAX_IDS 1024 /* task ids in one revoke */

/* ---- revoke and terminate ------------------------------------------------------ */

/* Celery's signals.signum: "TERM", "SIGTERM", "15"; 0 when unknown. */
static int signum_of(const char *name)
{
	static const struct { const char *name; int num; } sigs[] = {
		{"HUP", SIGHUP}, {"INT", SIGINT}, {"QUIT", SIGQUIT}, {"KILL", SIGKILL},
		{"USR1", SIGUSR1}, {"USR2", SIGUSR2}, {"TERM", SIGTERM}, {"ALRM", SIGALRM},
	};
	if (isdigit((unsigned char)name[0]))
		return atoi(name);
	if (!strncasecmp(name, "SIG", 3))
		name += 3;
	for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++)
		if (!strcasecmp(name, sigs[i].name))
			return sigs[i].num;
	return 0;
}

/* task_id as one id or a list: copies into ids (NUL-terminated, in zone-free
 * storage the caller frees with free_ids). */
static size_t collect_ids(const schema_control_request *req, char **ids)
{
	const msgpack_object *o = schema_control_arg(req, "task_id");
	if (!o)
		return 0;
	const msgpack_object *items = o;
	uint32_t n = 1;
	if (o->type == MSGPACK_OBJECT_ARRAY) {
		items = o->via.array.ptr;
		n = o->via.array.size;
	}
	size_t k = 0;
	for (uint32_t i = 0; i < n && k < MAX_IDS; i++) {
		if (items[i].type != MSGPACK_OBJECT_STR || items[i].via.str.size == 0)
			continue;
		ids[k] = strndup(items[i].via.str.ptr, items[i].via.str.size);
		if (ids[k])
			k++;
	}
	return k;
}

static void free_ids(char **ids, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(ids[i]);
}

static const control_active *find_active(const control *c, const char *id)
{
	for (size_t i = 0; i < c->n_active; i++)
		if (strcmp(c->active[i].t->tm->id, id) == 0)
			return &c->active[i];
	return NULL;
}

/* Terminates the ids running here; fills terminated[] (borrowed from ids). */
static int terminate_ids(loop *l, char **ids, size_t n, int signum, const char **terminated,
			 size_t *n_terminated, warren_error *err)
{
	for (size_t i = 0; i < n; i++) {
		const control_active *a = find_active(l->control, ids[i]);
		if (!a)
			continue;
		log_at(CONFIG_LOG_INFO, NULL, "Terminating %s (%d)", ids[i], signum);
		int rc = pool_terminate(l->pool, a->seq, signum, err);
		if (rc == WARREN_EINVAL)
			return rc; /* the threads pool: it cannot */
		if (rc == 0)
			terminated[(*n_terminated)++] = ids[i];
	}
	return 0;
}

static int revoke_common(loop *l, const schema_control_request *req, bool terminate,
			 msgpack_packer *pk, warren_error *err)
{
	char **ids = calloc(MAX_IDS, sizeof *ids);
	const char **terminated = calloc(MAX_IDS, sizeof *terminated);
	int rc = WARREN_ENOMEM;
	if (!ids || !terminated) {
		warren_error_set(err, rc, "revoke: out of memory");
		goto out_free;
	}
	size_t n = collect_ids(req, ids), n_terminated = 0;
	double now = control_wall_now();
	for (size_t i = 0; i < n; i++)
		revoke_add(l->control->revoked, ids[i], now);
	char sig[32] = "SIGTERM";
	control_arg_string(req, "signal", sig, sizeof sig);
	int signum = signum_of(sig);
	rc = 0;
	if (terminate && !signum)
		rc = warren_error_set(err, WARREN_EINVAL, "terminate: unknown signal '%s'", sig);
	else if (terminate)
		rc = terminate_ids(l, ids, n, signum, terminated, &n_terminated, err);
	if (rc == 0) {
		if (!terminate)
			log_at(CONFIG_LOG_INFO, NULL, "Tasks flagged as revoked: %s",
			       n ? ids[0] : "");
		rc = schema_control_pack_revoke(pk, (const char *const *)ids, n, terminate,
						terminated, n_terminated, err);
	}
	free_ids(ids, n);
out_free:
	free(ids);
	free(terminated);
	return rc;
}

static int cmd_revoke(loop *l, const schema_control_request *req, msgpack_packer *pk,
		      warren_error *err)
{
	return revoke_common(l, req, control_arg_bool(req, "terminate", false), pk, err);
}

static int cmd_terminate(loop *l, const schema_control_request *req, msgpack_packer *pk,
			 warren_error *err)
{
	return revoke_common(l, req, true, pk, err);
}

/* ---- limits ----------------------------------------------------------------------- */

static const registry_entry *task_arg(loop *l, const schema_control_request *req)
{
	char name[256];
	if (!control_arg_string(req, "task_name", name, sizeof name))
		return NULL;
	return registry_lookup(l->s->reg, name, strlen(name));
}

/* The live bucket follows the new rate; tasks already waiting keep their
 * place (a rate of 0 lets them all go on the next turn). reload.c uses it
 * too. */
void control_retune_limiter(loop *l, const registry_entry *e, double rate)
{
	for (loop_limiter *q = l->limiters; q; q = q->next)
		if (q->entry == e) {
			rate_bucket_init(&q->bucket, rate > 0 ? rate : 1e9, task_monotonic_ns());
			q->wake_ns = q->head ? task_monotonic_ns() : 0;
		}
}

static int cmd_rate_limit(loop *l, const schema_control_request *req, msgpack_packer *pk,
			  warren_error *err)
{
	char text[64] = "";
	double rate = 0;
	if (!control_arg_string(req, "rate_limit", text, sizeof text) &&
	    control_arg_number(req, "rate_limit", &rate))
		snprintf(text, sizeof text, "%g", rate);
	warren_error perr = {0};
	if (text[0] && registry_parse_rate(text, &rate, &perr) != 0) {
		char msg[400];
		snprintf(msg, sizeof msg, "Invalid rate limit string: ValueError(%.300s)", perr.msg);
		return schema_control_pack_error(pk, msg, err);
	}
	const registry_entry *e = task_arg(l, req);
	control_override *o = e ? control_override_for(l->control, e, true) : NULL;
	if (!e || !o) {
		log_at(CONFIG_LOG_ERROR, NULL, "Rate limit attempt for unknown task");
		return schema_control_pack_error(pk, "unknown task", err);
	}
	o->rate = rate;
	control_retune_limiter(l, e, rate);
	if (rate <= 0) {
		log_at(CONFIG_LOG_INFO, NULL, "Rate limits disabled for tasks of type %s", e->name);
		return schema_control_pack_ok(pk, "rate limit disabled successfully", err);
	}
	log_at(CONFIG_LOG_INFO, NULL, "New rate limit for tasks of type %s: %s.", e->name, text);
	return schema_control_pack_ok(pk, "new rate limit set successfully", err);
}

static int cmd_time_limit(loop *l, const schema_control_request *req, msgpack_packer *pk,
			  warren_error *err)
{
	const registry_entry *e = task_arg(l, req);
	control_override *o = e ? control_override_for(l->control, e, true) : NULL;
	if (!e || !o) {
		log_at(CONFIG_LOG_ERROR, NULL, "Change time limit attempt for unknown task");
		return schema_control_pack_error(pk, "unknown task", err);
	}
	double soft = 0, hard = 0; /* Celery sets both: None means no limit */
	control_arg_number(req, "soft", &soft);
	control_arg_number(req, "hard", &hard);
	o->soft_time_limit = soft > 0 ? soft : 0;
	o->time_limit = hard > 0 ? hard : 0;
	if (hard > 0 && l->s->pool.kind == POOL_THREADS)
		log_at(CONFIG_LOG_WARNING, NULL,
		       "task %s: hard time limit %gs is not enforced by the threads pool", e->name,
		       hard);
	log_at(CONFIG_LOG_INFO, NULL, "New time limits for tasks of type %s: soft=%g hard=%g",
	       e->name, soft, hard);
	return schema_control_pack_ok(pk, "time limits set successfully", err);
}

/* ---- the worker --------------------------------------------------------------------- */

/* A warm shutdown, exactly as a SIGTERM starts one: the loop's signalfd
 * reads it on the next turn. Celery sends no reply. */
static int cmd_shutdown(loop *l, const schema_control_request *req, msgpack_packer *pk,
			warren_error *err)
{
	(void)l, (void)pk, (void)err;
	char msg[200] = "Got shutdown from remote";
	control_arg_string(req, "msg", msg, sizeof msg);
	log_at(CONFIG_LOG_WARNING, NULL, "%s", msg);
	kill(getpid(), SIGTERM);
	return CONTROL_NO_REPLY;
}

int control_concurrency(const loop *l)
{
	return l->pool ? pool_concurrency(l->pool) : l->s->pool.concurrency;
}

uint16_t control_prefetch(const loop *l)
{
	long prefetch = (long)control_concurrency(l) * l->s->prefetch_multiplier;
	return (uint16_t)(prefetch > 65535 ? 65535 : prefetch < 0 ? 0 : prefetch);
}

/* Moves the consumer of one task queue to a new prefetch. RabbitMQ applies a
 * per-consumer basic.qos (global=false, what broker_consume sends) only to
 * consumers started after it, so a live consumer keeps its old limit: the
 * queue is consumed again with the new one (new consumer first, so
 * consumption never stops), then the old consumer is cancelled. Its unacked
 * deliveries stay on the channel and are settled as usual (acks go by
 * delivery tag); until they are, they no longer count against any limit, so
 * for a moment the worker may hold up to old + new prefetch. A failure
 * leaves the old consumer running (logged): the new prefetch then applies on
 * the worker's next restart. Returns the tag to keep in tag (cap bytes). */
static void reconsume(loop *l, const char *queue, char *tag, size_t cap, uint16_t prefetch)
{
	char fresh[128];
	warren_error e = {0};
	if (broker_consume(l->conn, queue, prefetch, false, fresh, sizeof fresh, &e) != 0) {
		log_at(CONFIG_LOG_WARNING, NULL, "pool resize: re-consuming %s with prefetch %u: %s",
		       queue, (unsigned)prefetch, e.msg);
		return;
	}
	if (broker_cancel(l->conn, tag, &e) != 0)
		log_at(CONFIG_LOG_WARNING, NULL, "pool resize: cancelling the old consumer of %s: %s",
		       queue, e.msg);
	snprintf(tag, cap, "%s", fresh);
}

/* Celery's consumer._update_prefetch_count: prefetch follows the pool size
 * (concurrency x multiplier) on every task queue consumed now. */
static void update_prefetch(loop *l)
{
	if (l->s->prefetch_multiplier <= 0 || !l->conn)
		return; /* unlimited prefetch: nothing to change */
	uint16_t prefetch = control_prefetch(l);
	control *c = l->control;
	for (size_t i = 0; i < l->s->n_queues; i++)
		if (!c->cancelled[i])
			reconsume(l, l->s->queues[i], l->consumer_tags[i], sizeof l->consumer_tags[i],
				  prefetch);
	for (size_t i = 0; i < c->n_added; i++)
		if (!c->added[i].cancelled)
			reconsume(l, c->added[i].name, c->added[i].tag, sizeof c->added[i].tag,
				  prefetch);
	/* acks.c flushes at half the prefetch (loop_run's rule). */
	l->acks.bound = prefetch > 0 ? ((size_t)prefetch + 1) / 2 : 64;
}

/* pool_grow / pool_shrink [n=1], as Celery's: the pool changes size (a
 * shrink takes effect as threads/children become idle: a running task is
 * never interrupted) and the prefetch follows. A pool cannot go below 1. */
static int cmd_pool_resize(loop *l, const schema_control_request *req, msgpack_packer *pk,
			   warren_error *err)
{
	bool grow = strcmp(req->method, "pool_grow") == 0;
	double n = 1;
	control_arg_number(req, "n", &n);
	int now = control_concurrency(l);
	if (n < 1 || n > POOL_MAX_CONCURRENCY)
		return warren_error_set(err, WARREN_EINVAL, "ValueError('%s: n must be 1 to %d, not %g')",
					req->method, POOL_MAX_CONCURRENCY, n);
	int want = grow ? now + (int)n : now - (int)n;
	if (want < 1)
		return warren_error_set(err, WARREN_EINVAL,
					"ValueError(\"Can't shrink pool below 1 process: concurrency is %d\")",
					now);
	warren_error perr = {0};
	if (pool_resize(l->pool, want, &perr) != 0)
		return warren_error_set(err, perr.code, "RuntimeError('%s: %s')", req->method, perr.msg);
	log_at(CONFIG_LOG_INFO, NULL, "%s: pool %s x%d -> x%d", req->method,
	       l->s->pool.kind == POOL_PREFORK ? "prefork" : "threads", now, want);
	update_prefetch(l);
	return schema_control_pack_ok(pk, grow ? "pool will grow" : "pool will shrink", err);
}

/* warren's task events are switched at start (--events); events.c has no
 * live switch yet, so this answers ok as Celery does and says so when the
 * state asked for is not the one the worker is in. */
static int cmd_events(loop *l, const schema_control_request *req, msgpack_packer *pk,
		      warren_error *err)
{
	bool enable = strcmp(req->method, "enable_events") == 0;
	const char *text = enable == l->s->task_events
				   ? (enable ? "task events already enabled"
					     : "task events already disabled")
			   : enable ? "task events not enabled: start the worker with --events"
				    : "task events not disabled: restart the worker without --events";
	return schema_control_pack_ok(pk, text, err);
}

/* heartbeat and election: Celery's return None. */
static int cmd_none(loop *l, const schema_control_request *req, msgpack_packer *pk,
		    warren_error *err)
{
	(void)l, (void)req, (void)err;
	return msgpack_pack_nil(pk);
}

/* ---- queues ---------------------------------------------------------------------------- */

static bool consuming(const loop *l, const char *queue)
{
	for (size_t i = 0; i < l->s->n_queues; i++)
		if (!l->control->cancelled[i] && strcmp(l->s->queues[i], queue) == 0)
			return true;
	for (size_t i = 0; i < l->control->n_added; i++)
		if (!l->control->added[i].cancelled && strcmp(l->control->added[i].name, queue) == 0)
			return true;
	return false;
}

static broker_exchange_type type_of(const char *t)
{
	return !strcmp(t, "topic") ? BROKER_EXCHANGE_TOPIC
	       : !strcmp(t, "fanout") ? BROKER_EXCHANGE_FANOUT
	       : !strcmp(t, "headers") ? BROKER_EXCHANGE_HEADERS : BROKER_EXCHANGE_DIRECT;
}

/* Declares queue as Celery's add_task_queue does (exchange named after it
 * unless given, direct, durable) and consumes it with the loop's prefetch. */
static int add_queue(loop *l, control_queue *q, warren_error *err)
{
	broker_exchange x = {.name = q->exchange, .type = type_of(q->exchange_type),
			     .durable = true};
	broker_queue bq;
	broker_queue_init(&bq, q->name);
	broker_binding b = {q->name, q->exchange, q->routing_key};
	broker_topology t = {&x, 1, &bq, 1, &b, 1};
	int rc = broker_declare(l->conn, &t, err);
	if (rc == 0)
		rc = broker_consume(l->conn, q->name, control_prefetch(l), false, q->tag,
				    sizeof q->tag, err);
	return rc;
}

static int cmd_add_consumer(loop *l, const schema_control_request *req, msgpack_packer *pk,
			    warren_error *err)
{
	char name[256], exchange[256], type[32] = "direct", key[256], msg[300];
	if (!control_arg_string(req, "queue", name, sizeof name) || !name[0])
		return warren_error_set(err, WARREN_EINVAL, "TypeError('add_consumer: queue')");
	if (!control_arg_string(req, "exchange", exchange, sizeof exchange) || !exchange[0])
		snprintf(exchange, sizeof exchange, "%s", name);
	control_arg_string(req, "exchange_type", type, sizeof type);
	if (!control_arg_string(req, "routing_key", key, sizeof key) || !key[0])
		snprintf(key, sizeof key, "%s", name);
	snprintf(msg, sizeof msg, "add consumer %s", name);
	if (consuming(l, name))
		return schema_control_pack_ok(pk, msg, err);
	control *c = l->control;
	control_queue *a = realloc(c->added, (c->n_added + 1) * sizeof *a);
	if (!a)
		return warren_error_set(err, WARREN_ENOMEM, "add_consumer: out of memory");
	c->added = a;
	control_queue *q = &a[c->n_added];
	*q = (control_queue){strdup(name), strdup(exchange), strdup(type), strdup(key), "", false};
	int rc = q->name && q->exchange && q->exchange_type && q->routing_key
			 ? add_queue(l, q, err)
			 : warren_error_set(err, WARREN_ENOMEM, "add_consumer: out of memory");
	if (rc != 0) {
		free(q->name), free(q->exchange), free(q->exchange_type), free(q->routing_key);
		return rc;
	}
	c->n_added++;
	log_at(CONFIG_LOG_INFO, NULL, "Started consuming from %s", name);
	return schema_control_pack_ok(pk, msg, err);
}

static int cmd_cancel_consumer(loop *l, const schema_control_request *req, msgpack_packer *pk,
			       warren_error *err)
{
	char name[256], msg[300];
	if (!control_arg_string(req, "queue", name, sizeof name))
		return warren_error_set(err, WARREN_EINVAL, "TypeError('cancel_consumer: queue')");
	control *c = l->control;
	const char *tag = NULL;
	for (size_t i = 0; i < l->s->n_queues && !tag; i++)
		if (!c->cancelled[i] && strcmp(l->s->queues[i], name) == 0) {
			c->cancelled[i] = true;
			tag = l->consumer_tags[i];
		}
	for (size_t i = 0; i < c->n_added && !tag; i++)
		if (!c->added[i].cancelled && strcmp(c->added[i].name, name) == 0) {
			c->added[i].cancelled = true;
			tag = c->added[i].tag;
		}
	warren_error cerr = {0};
	if (tag && broker_cancel(l->conn, tag, &cerr) != 0)
		log_at(CONFIG_LOG_WARNING, NULL, "cancel_consumer '%s': %s", name, cerr.msg);
	else if (tag)
		log_at(CONFIG_LOG_INFO, NULL, "Stopped consuming from %s", name);
	snprintf(msg, sizeof msg, "no longer consuming from %s", name);
	return schema_control_pack_ok(pk, msg, err);
}

/* ---- the table ------------------------------------------------------------------------- */

control_fn control_cmd_find(const char *method)
{
	static const struct { const char *name; control_fn fn; } cmds[] = {
		{"revoke", cmd_revoke},
		{"terminate", cmd_terminate},
		{"rate_limit", cmd_rate_limit},
		{"time_limit", cmd_time_limit},
		{"shutdown", cmd_shutdown},
		{"add_consumer", cmd_add_consumer},
		{"cancel_consumer", cmd_cancel_consumer},
		{"pool_grow", cmd_pool_resize},
		{"pool_shrink", cmd_pool_resize},
		{"enable_events", cmd_events},
		{"disable_events", cmd_events},
		{"heartbeat", cmd_none},
		{"election", cmd_none},
	};
	for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++)
		if (!strcmp(cmds[i].name, method))
			return cmds[i].fn;
	return NULL;
}
