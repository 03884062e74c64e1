/* worker/events.c - Celery's monitoring events from warren-worker, and the
 * task transitions metrics.c counts.
 *
 * What is sent follows Celery 5.2: worker-online when the consumers run,
 * worker-heartbeat every SCHEMA_EVENT_HEARTBEAT_FREQ seconds and
 * worker-offline at shutdown (worker/heartbeat.py), unless
 * --without-heartbeat: Celery's Heart bootstep is the only sender of worker-*
 * events and it is disabled by exactly that flag; the dispatcher itself is
 * on whenever Heart is (worker/consumer/events.py). Task events need -E
 * (worker.events). Worker events go out one per message; task events are
 * buffered and published as one JSON list under "task.multi", as a Celery
 * worker with an event loop does (buffer_group=['task']): the buffer is
 * flushed when it holds SCHEMA_EVENT_BUFFER_LIMIT events or its oldest event
 * is EVENTS_FLUSH_MS old (Celery flushes on the hub's next turn).
 *
 * Publishing: on the loop's connection, delivery_mode 1, fire-and-forget.
 * broker_publish returns once the frames are written; the broker's outcome
 * (a confirm, or a basic.return when no monitor is bound) arrives later
 * under a cookie with EVENTS_COOKIE_TAG, which loop_on_outcome drops. Events
 * therefore never hold a task's settle back, and the loop's own cookies
 * (counting from 1) and the rpc backend's (bit 63) never meet ours.
 *
 * Beyond Celery's fields the worker-* events carry warren_pool,
 * warren_concurrency and warren_uptime for `warren status`; Celery's State
 * sets unknown fields as attributes of its Worker and otherwise ignores them
 * (events/state.py Worker.event), as tests/interop/events_celery.py checks.
 *
 * Loop thread only.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "worker.h"

#define EVENTS_FLUSH_MS 100

struct events {
	broker_conn *conn;
	bool task_events, worker_events;
	schema_event_source src;
	uint64_t clock;          /* Celery's Lamport clock: forwarded per event */
	uint64_t seq;            /* cookie numbers */
	json_t *buffer;          /* task events waiting for task.multi */
	int64_t buffered_ns;     /* when the oldest of them was buffered */
	int64_t heartbeat_ns;    /* when the next worker-heartbeat is due */
	double started;          /* wall clock at start, for warren_uptime */
	msgpack_sbuffer headers; /* {"hostname": ...}, packed once */
	bool warned;             /* a failed publish was logged already */
	uint64_t accepted;       /* tasks that began to run: Celery's `processed` */
};

static double wall_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

bool events_owns_cookie(uint64_t cookie)
{
	return (cookie & EVENTS_COOKIE_TAG) && !(cookie & BACKEND_COOKIE_TAG);
}

/* ---- publishing ------------------------------------------------------------- */

static void publish(events *ev, const char *routing_key, const json_t *body_json)
{
	char *body = NULL;
	size_t len = 0;
	warren_error err = {0};
	int rc = schema_event_encode(body_json, &body, &len, &err);
	if (rc == 0) {
		broker_props p = {
			.content_type = SCHEMA_EVENT_CONTENT_TYPE,
			.content_encoding = SCHEMA_EVENT_CONTENT_ENCODING,
			.delivery_mode = SCHEMA_EVENT_DELIVERY_MODE,
			.priority = BROKER_UNSET,
			.headers = ev->headers.data,
			.headers_len = ev->headers.size,
		};
		ev->seq = (ev->seq + 1) & (EVENTS_COOKIE_TAG - 1);
		rc = broker_publish(ev->conn, SCHEMA_EVENT_EXCHANGE, routing_key, &p, body, len,
				    EVENTS_COOKIE_TAG | ev->seq, &err);
	}
	free(body);
	if (rc != 0 && !ev->warned) {
		/* Once: a lost broker would otherwise log every event. */
		log_at(CONFIG_LOG_WARNING, NULL, "events: publishing '%s': %s", routing_key, err.msg);
		ev->warned = true;
	} else if (rc == 0) {
		ev->warned = false;
	}
}

static void flush(events *ev)
{
	if (!ev || json_array_size(ev->buffer) == 0)
		return;
	publish(ev, schema_event_multi_routing_key(), ev->buffer);
	json_array_clear(ev->buffer);
}

/* ---- worker events -------------------------------------------------------------- */

/* /proc/loadavg's three averages (zeros if unreadable). */
static void read_loadavg(double load[3])
{
	load[0] = load[1] = load[2] = 0;
	FILE *f = fopen("/proc/loadavg", "r");
	if (!f)
		return;
	if (fscanf(f, "%lf %lf %lf", &load[0], &load[1], &load[2]) != 3)
		load[0] = load[1] = load[2] = 0;
	fclose(f);
}

/* Celery's `active`: requests executing now, at most the pool's size. */
static int64_t active_now(const loop *l)
{
	size_t conc = (size_t)control_concurrency(l); /* after pool_grow/shrink */
	return (int64_t)(l->in_pool < conc ? l->in_pool : conc);
}

static void add_extras(const loop *l, json_t *obj)
{
	const events *ev = l->events;
	json_object_set_new(obj, "warren_pool",
			    json_string(l->s->pool.kind == POOL_PREFORK ? "prefork" : "threads"));
	json_object_set_new(obj, "warren_concurrency", json_integer(control_concurrency(l)));
	json_object_set_new(obj, "warren_uptime", json_real(wall_now() - ev->started));
}

static void send_worker(loop *l, schema_event_type type)
{
	events *ev = l->events;
	schema_event_worker_info info = {
		.freq = SCHEMA_EVENT_HEARTBEAT_FREQ,
		.active = active_now(l),
		.processed = (int64_t)ev->accepted,
	};
	read_loadavg(info.loadavg);
	json_t *obj = NULL;
	warren_error err = {0};
	char key[64];
	ev->src.utcoffset = schema_event_utcoffset((int64_t)time(NULL));
	if (schema_event_worker(&ev->src, type, ++ev->clock, wall_now(), &info, &obj, &err) != 0 ||
	    schema_event_routing_key(schema_event_type_name(type), key, sizeof key, &err) != 0) {
		log_at(CONFIG_LOG_WARNING, NULL, "events: %s", err.msg);
		json_decref(obj);
		return;
	}
	add_extras(l, obj);
	publish(ev, key, obj);
	json_decref(obj);
}

static int declare_exchange(loop *l, warren_error *err)
{
	broker_exchange x = {.name = SCHEMA_EVENT_EXCHANGE, .type = BROKER_EXCHANGE_TOPIC,
			     .durable = true};
	broker_topology t = {.exchanges = &x, .n_exchanges = 1};
	return broker_declare(l->conn, &t, err);
}

int events_start(loop *l, warren_error *err)
{
	if (!l->s->task_events && !l->s->worker_events)
		return 0;
	events *ev = calloc(1, sizeof *ev);
	int rc = WARREN_ENOMEM;
	if (!ev || !(ev->buffer = json_array())) {
		warren_error_set(err, rc, "events: out of memory");
		goto out_free;
	}
	msgpack_sbuffer_init(&ev->headers);
	rc = schema_event_headers(l->s->hostname, &ev->headers, err);
	if (rc == 0)
		rc = declare_exchange(l, err);
	if (rc != 0)
		goto out_headers;
	ev->conn = l->conn;
	ev->task_events = l->s->task_events;
	ev->worker_events = l->s->worker_events;
	ev->src = (schema_event_source){.hostname = l->s->hostname, .pid = (int64_t)getpid()};
	ev->started = wall_now();
	ev->heartbeat_ns = task_monotonic_ns() + (int64_t)(SCHEMA_EVENT_HEARTBEAT_FREQ * 1e9);
	l->events = ev;
	if (ev->worker_events)
		send_worker(l, SCHEMA_EVENT_WORKER_ONLINE);
	return 0;
out_headers:
	msgpack_sbuffer_destroy(&ev->headers);
out_free:
	if (ev)
		json_decref(ev->buffer);
	free(ev);
	return rc;
}

void events_stop(loop *l)
{
	events *ev = l->events;
	if (!ev)
		return;
	/* Celery sends worker-offline without retrying: skip both when the
	 * connection is down rather than block the shutdown reconnecting. */
	if (broker_conn_fd(l->conn) >= 0) {
		flush(ev);
		if (ev->worker_events)
			send_worker(l, SCHEMA_EVENT_WORKER_OFFLINE);
	}
	json_decref(ev->buffer);
	msgpack_sbuffer_destroy(&ev->headers);
	free(ev);
	l->events = NULL;
}

/* ---- the turn ------------------------------------------------------------------- */

static int64_t held_outside_pool(const loop *l)
{
	int64_t n = 0;
	for (const loop_limiter *q = l->limiters; q; q = q->next)
		n += (int64_t)q->waiting;
	for (const loop_after *a = l->afters; a; a = a->next)
		n += a->task != NULL;
	return n;
}

void events_tick(loop *l)
{
	int64_t now = task_monotonic_ns();
	events *ev = l->events;
	if (ev && json_array_size(ev->buffer) > 0 &&
	    now - ev->buffered_ns >= (int64_t)EVENTS_FLUSH_MS * 1000000)
		flush(ev);
	if (ev && ev->worker_events && now >= ev->heartbeat_ns) {
		send_worker(l, SCHEMA_EVENT_WORKER_HEARTBEAT);
		ev->heartbeat_ns = now + (int64_t)(SCHEMA_EVENT_HEARTBEAT_FREQ * 1e9);
	}
	if (l->metrics) {
		metrics_gauges g = {
			.in_flight = (int64_t)l->in_pool,
			.prefetched = held_outside_pool(l),
			.connected = broker_conn_fd(l->conn) >= 0,
			.consuming = l->consumer_tags != NULL && !l->draining, /* a warm stop */
		};
		metrics_set(l->metrics, &g);
	}
}

int64_t events_next_deadline_ns(const loop *l)
{
	const events *ev = l->events;
	if (!ev)
		return 0;
	int64_t next = ev->worker_events ? ev->heartbeat_ns : 0;
	if (json_array_size(ev->buffer) > 0) {
		int64_t due = ev->buffered_ns + (int64_t)EVENTS_FLUSH_MS * 1000000;
		if (!next || due < next)
			next = due;
	}
	return next;
}

void events_consumer_cancelled(loop *l, const char *queue)
{
	for (size_t i = 0; queue && i < l->s->n_queues; i++)
		if (strcmp(queue, l->s->queues[i]) == 0)
			metrics_consumer_cancelled(l->metrics);
}

int events_metrics_start(loop *l, warren_error *err)
{
	if (l->s->metrics_port <= 0)
		return 0;
	metrics_options o = {
		.port = l->s->metrics_port,
		.bind = l->s->metrics_bind,
		.pool = l->s->pool.kind,
		.concurrency = l->s->pool.concurrency,
		.consumers = l->s->n_queues,
	};
	int rc = metrics_new(&o, &l->metrics, err);
	if (rc == 0)
		log_at(CONFIG_LOG_INFO, NULL, "metrics: serving /metrics and /healthz on %s port %d",
		       o.bind ? o.bind : "127.0.0.1", o.port);
	return rc;
}

/* ---- task events ------------------------------------------------------------------ */

static void send_task(loop *l, schema_event_type type, const schema_event_task_info *info)
{
	events *ev = l->events;
	if (!ev || !ev->task_events)
		return;
	json_t *obj = NULL;
	warren_error err = {0};
	if (schema_event_task(&ev->src, type, ++ev->clock, wall_now(), info, &obj, &err) != 0) {
		log_at(CONFIG_LOG_DEBUG, NULL, "events: %s", err.msg);
		return;
	}
	if (json_array_size(ev->buffer) == 0)
		ev->buffered_ns = task_monotonic_ns();
	if (json_array_append_new(ev->buffer, obj) != 0)
		return;
	if (json_array_size(ev->buffer) >= SCHEMA_EVENT_BUFFER_LIMIT)
		flush(ev);
}

/* Python's repr of an exception with one string argument: ValueError('boom'). */
static void exc_repr(const char *type, const char *message, char *buf, size_t cap)
{
	char arg[SCHEMA_REPR_MAX + 4];
	msgpack_object o = {.type = MSGPACK_OBJECT_STR};
	o.via.str.ptr = message ? message : "";
	o.via.str.size = (uint32_t)strlen(o.via.str.ptr);
	schema_repr(&o, false, arg, sizeof arg);
	snprintf(buf, cap, "%s(%s)", type ? type : "Exception", arg);
}

void events_task_received(loop *l, const loop_task *t)
{
	if (!l->events || !l->events->task_events)
		return;
	const schema_task_msg *tm = t->tm;
	char args[SCHEMA_REPR_MAX + 4], kwargs[SCHEMA_REPR_MAX + 4];
	if (!tm->argsrepr)
		schema_repr(&tm->args, true, args, sizeof args);
	if (!tm->kwargsrepr)
		schema_repr(&tm->kwargs, false, kwargs, sizeof kwargs);
	schema_event_task_info info = {
		.uuid = tm->id,
		.name = tm->task,
		.args = tm->argsrepr ? tm->argsrepr : args,
		.kwargs = tm->kwargsrepr ? tm->kwargsrepr : kwargs,
		.root_id = tm->root_id,
		.parent_id = tm->parent_id,
		.retries = tm->retries,
		.eta = tm->eta,
		.expires = tm->expires,
	};
	send_task(l, SCHEMA_EVENT_TASK_RECEIVED, &info);
}

void events_task_accepted(loop *l)
{
	if (l->events)
		l->events->accepted++; /* worker/state.py task_accepted */
}

void events_task_started(loop *l, const loop_task *t)
{
	events_task_accepted(l);
	schema_event_task_info info = {.uuid = t->tm->id};
	send_task(l, SCHEMA_EVENT_TASK_STARTED, &info);
}

/* The repr of a job's packed result, as Celery's saferepr of the value. */
static void result_repr(const pool_job *job, char *buf, size_t cap)
{
	snprintf(buf, cap, "None");
	if (!job->result)
		return;
	msgpack_zone zone;
	msgpack_zone_init(&zone, 256);
	msgpack_object o;
	if (msgpack_unpack(job->result, job->result_len, NULL, &zone, &o) == MSGPACK_UNPACK_SUCCESS)
		schema_repr(&o, false, buf, cap);
	msgpack_zone_destroy(&zone);
}

void events_task_succeeded(loop *l, const loop_task *t, const pool_job *job)
{
	metrics_task_done(l->metrics, t->tm->task, "SUCCESS", job->runtime);
	if (!l->events || !l->events->task_events)
		return;
	char repr[SCHEMA_REPR_MAX + 4];
	result_repr(job, repr, sizeof repr);
	schema_event_task_info info = {.uuid = t->tm->id, .result = repr, .runtime = job->runtime};
	send_task(l, SCHEMA_EVENT_TASK_SUCCEEDED, &info);
}

void events_task_failed(loop *l, const schema_task_msg *tm, const char *exc_type,
			const char *exc_message, const char *traceback, double runtime)
{
	metrics_task_done(l->metrics, tm->task, "FAILURE", runtime);
	if (!l->events || !l->events->task_events)
		return;
	char repr[SCHEMA_REPR_MAX + TASK_EXC_TYPE_MAX + 8];
	exc_repr(exc_type, exc_message, repr, sizeof repr);
	schema_event_task_info info = {.uuid = tm->id, .exception = repr, .traceback = traceback};
	send_task(l, SCHEMA_EVENT_TASK_FAILED, &info);
}

void events_task_retried(loop *l, const loop_task *t, const pool_job *job)
{
	metrics_task_retried(l->metrics, t->tm->task, job->runtime);
	if (!l->events || !l->events->task_events)
		return;
	/* Celery sends repr(Retry.exc): the exception an autoretry caught, or
	 * None for an explicit self.retry() without exc. */
	char repr[SCHEMA_REPR_MAX + TASK_EXC_TYPE_MAX + 8] = "None";
	if (job->status == TASK_FAILURE)
		exc_repr(job->exc_type, job->exc_message, repr, sizeof repr);
	schema_event_task_info info = {
		.uuid = t->tm->id,
		.exception = repr,
		.traceback = job->traceback ? job->traceback : "",
	};
	send_task(l, SCHEMA_EVENT_TASK_RETRIED, &info);
}

void events_task_revoked(loop *l, const schema_task_msg *tm, bool terminated, int signum,
			 bool expired)
{
	metrics_task_done(l->metrics, tm->task, "REVOKED", -1);
	schema_event_task_info info = {
		.uuid = tm->id,
		.terminated = terminated,
		.has_signum = signum >= 0,
		.signum = signum,
		.expired = expired,
	};
	send_task(l, SCHEMA_EVENT_TASK_REVOKED, &info);
}

void events_task_rejected(loop *l, const schema_task_msg *tm, bool requeue)
{
	metrics_task_done(l->metrics, tm->task, "REJECTED", -1);
	schema_event_task_info info = {.uuid = tm->id, .requeue = requeue};
	send_task(l, SCHEMA_EVENT_TASK_REJECTED, &info);
}
