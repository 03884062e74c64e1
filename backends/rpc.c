/* backends/rpc.c - Celery's rpc:// result backend over AMQP, so a Python
 * client reads what a warren worker sends and warren's client reads what a
 * Python worker sends. The authority is Celery 5.2's backends/rpc.py
 * (RPCBackend, ResultConsumer) and base.py; CELERY-WIRE.md §3 records what
 * was observed.
 *
 * Design. rabbitmq-c connections are not thread-safe and the worker's loop
 * thread owns its connection, so this backend owns none: it borrows the
 * caller's (backend_options.conn) and only runs inside the caller's calls,
 * on the caller's thread. It never touches the connection's outcome
 * callback either, which belongs to whoever owns the connection:
 *  - store publishes with a cookie of its own (BACKEND_COOKIE_TAG, this
 *    backend's number, a sequence) and waits with broker_publish_flush; the
 *    owner's outcome callback hands those cookies over with backend_outcome
 *    (or the owner installs backend_outcome_fn), and store returns the
 *    verdict. A caller that cannot afford the round trip sets
 *    backend_request.async_confirm and gets the outcome under its own
 *    cookie, as for any other publish.
 *  - the client side declares its reply queue before the first send
 *    (backend_before_send), consumes it from the first wait or get (no_ack,
 *    as Celery), and reads every event of the connection while it waits.
 *    Replies are decoded on arrival (to learn the task and its state) and
 *    kept as body bytes, the latest per task, until handed out once.
 *
 * Wire (Celery 5.2 store_result / on_task_call / binding):
 *   reply queue  name = a uuid4 per client (Celery's thread oid), declared
 *                durable=false, auto_delete=true, exclusive=false,
 *                x-expires = result_expires * 1000 (none when 0); reached
 *                through the default exchange with key = name.
 *   result       exchange "", routing key = request reply_to,
 *                correlation_id = request correlation_id or the task id,
 *                content_type application/x-msgpack, content_encoding
 *                binary, delivery_mode 1 (2 with result_persistent),
 *                priority 0, headers {}; body = schema_result_encode_rpc
 *                {task_id, status, result, traceback, children}.
 * A change to any of these must bump WARREN_RESULT_WIRE_VERSION (schemas.h)
 * and be checked against Celery with tests/interop/test_backend_rpc_celery.c.
 */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "backend.h"

/* Celery's MESSAGE_BUFFER_MAX: replies kept for tasks nobody waits for yet. */
#define REPLY_BUFFER_MAX 8192
#define BUCKETS 4096 /* a power of two */
/* The longest slice of one broker_receive when there is no deadline. */
#define SLICE_MS 1000

/* One task's latest reply, kept as it came (decoded again when handed out). */
typedef struct reply {
	struct reply *next;         /* in its bucket */
	struct reply *older, *newer; /* arrival order, for eviction */
	schema_state state;
	void *body;
	size_t body_len;
	char id[];                  /* task id */
} reply;

typedef struct rpc_backend {
	const char *masked;   /* lives in the handle */
	backend_options opts; /* conn borrowed */
	char oid[37];         /* reply queue name */
	char tag[128];        /* our consumer tag, once consuming */
	bool declared, consuming;

	/* store's confirm: cookies are TAG | number << 32 | seq */
	uint32_t number;
	uint32_t seq;
	uint64_t waiting;     /* the cookie store waits for; 0: none */
	bool have_verdict;
	broker_outcome verdict;
	char reason[WARREN_ERROR_MSG_MAX];

	reply *buckets[BUCKETS];
	reply *oldest, *newest;
	size_t n_replies;
} rpc_backend;

static atomic_uint next_number;

/* ---- time ---- */

static int64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- the reply buffer ---- */

static size_t bucket_of(const char *id)
{
	uint32_t h = 2166136261u; /* FNV-1a */
	for (const unsigned char *p = (const unsigned char *)id; *p; p++)
		h = (h ^ *p) * 16777619u;
	return h & (BUCKETS - 1);
}

static reply *reply_find(rpc_backend *rb, const char *id)
{
	for (reply *r = rb->buckets[bucket_of(id)]; r; r = r->next)
		if (strcmp(r->id, id) == 0)
			return r;
	return NULL;
}

static void reply_unlink(rpc_backend *rb, reply *r)
{
	reply **p = &rb->buckets[bucket_of(r->id)];
	while (*p != r)
		p = &(*p)->next;
	*p = r->next;
	if (r->older)
		r->older->newer = r->newer;
	else
		rb->oldest = r->newer;
	if (r->newer)
		r->newer->older = r->older;
	else
		rb->newest = r->older;
	rb->n_replies--;
}

static void reply_drop(rpc_backend *rb, reply *r)
{
	reply_unlink(rb, r);
	free(r->body);
	free(r);
}

static void reply_link(rpc_backend *rb, reply *r)
{
	size_t b = bucket_of(r->id);
	r->next = rb->buckets[b];
	rb->buckets[b] = r;
	r->older = rb->newest;
	r->newer = NULL;
	if (rb->newest)
		rb->newest->newer = r;
	else
		rb->oldest = r;
	rb->newest = r;
	rb->n_replies++;
}

/* Keeps m's body as task id's latest reply (taking it out of m). A ready
 * state is final: a later non-ready one for the same task is ignored
 * (*out = NULL). When the buffer is full the oldest reply goes. */
static int reply_put(rpc_backend *rb, const char *id, schema_state state, broker_message *m,
		     reply **out, warren_error *err)
{
	*out = NULL;
	reply *old = reply_find(rb, id);
	if (old && schema_state_is_ready(old->state) && !schema_state_is_ready(state))
		return 0;
	size_t n = strlen(id);
	reply *r = malloc(sizeof *r + n + 1);
	if (!r)
		return warren_error_set(err, WARREN_ENOMEM, "result backend '%s': out of memory",
					rb->masked);
	memcpy(r->id, id, n + 1);
	r->state = state;
	r->body = m->body;
	r->body_len = m->body_len;
	m->body = NULL;
	if (old)
		reply_drop(rb, old);
	else if (rb->n_replies >= REPLY_BUFFER_MAX)
		reply_drop(rb, rb->oldest);
	reply_link(rb, r);
	*out = r;
	return 0;
}

/* Decodes r into out (initialized; released first). */
static int reply_decode(rpc_backend *rb, const reply *r, schema_result *out, warren_error *err)
{
	return schema_result_decode_rpc(r->body, r->body_len, &rb->opts.limits, out, err);
}

/* ---- storing (worker side) ---- */

static uint64_t next_cookie(rpc_backend *rb)
{
	rb->seq = rb->seq == UINT32_MAX ? 1 : rb->seq + 1;
	return BACKEND_COOKIE_TAG | (uint64_t)rb->number << 32 | rb->seq;
}

static bool rpc_outcome(void *impl, uint64_t cookie, broker_outcome o, const char *reason)
{
	rpc_backend *rb = impl;
	if ((uint32_t)(cookie >> 32 & 0x7fffffff) != rb->number)
		return false;
	if (cookie == rb->waiting) {
		rb->have_verdict = true;
		rb->verdict = o;
		snprintf(rb->reason, sizeof rb->reason, "%s", reason ? reason : "");
	}
	return true;
}

static int verdict_code(rpc_backend *rb, const schema_result *r, const char *reply_to,
			warren_error *err)
{
	switch (rb->verdict) {
	case BROKER_CONFIRMED:
		return 0;
	case BROKER_RETURNED:
		return warren_error_set(err, WARREN_ENOTFOUND,
					"result backend '%s': result of '%s' not delivered: reply "
					"queue '%s' does not exist (the client went away): %s",
					rb->masked, r->task_id, reply_to, rb->reason);
	case BROKER_NACKED:
		return warren_error_set(err, WARREN_EBACKEND,
					"result backend '%s': result of '%s' refused by the broker: %s",
					rb->masked, r->task_id, rb->reason);
	default:
		return warren_error_set(err, WARREN_EBACKEND,
					"result backend '%s': result of '%s' may be lost: %s",
					rb->masked, r->task_id, rb->reason);
	}
}

/* Waits for the verdict on the message published with rb->waiting. */
static int await_verdict(rpc_backend *rb, const schema_result *r, const char *reply_to,
			 warren_error *err)
{
	warren_error e = {0};
	int rc = broker_publish_flush(rb->opts.conn, rb->opts.io_timeout_ms, &e);
	rb->waiting = 0;
	if (rb->have_verdict)
		return verdict_code(rb, r, reply_to, err);
	if (rc)
		return warren_error_set(err, rc == WARREN_ETIMEOUT ? WARREN_ETIMEOUT : WARREN_EBACKEND,
					"result backend '%s': result of '%s': %s", rb->masked,
					r->task_id, e.msg);
	return warren_error_set(err, WARREN_EINVAL,
				"result backend '%s': result of '%s' was published but its confirm "
				"never reached the backend: the connection's outcome callback must "
				"call backend_outcome", rb->masked, r->task_id);
}

static int rpc_store(void *impl, const schema_result *r, const backend_request *req,
		     warren_error *err)
{
	static const char empty_map[] = "\x80"; /* headers {} */
	rpc_backend *rb = impl;
	char *body;
	size_t len;

	if (!req->reply_to || !*req->reply_to)
		return 0; /* the client asked for no reply (Celery sends nothing) */
	int rc = schema_result_encode_rpc(r, &body, &len, err);
	if (rc)
		return rc;
	broker_props p = {
		.content_type = SCHEMA_CONTENT_TYPE,
		.content_encoding = SCHEMA_CONTENT_ENCODING,
		.correlation_id = req->correlation_id && *req->correlation_id ? req->correlation_id
									     : r->task_id,
		.delivery_mode = rb->opts.result_persistent ? 2 : 1,
		.priority = 0,
		.headers = empty_map,
		.headers_len = 1,
	};
	uint64_t cookie = req->async_confirm ? req->cookie : next_cookie(rb);
	if (!req->async_confirm) {
		rb->waiting = cookie;
		rb->have_verdict = false;
	}
	warren_error e = {0};
	rc = broker_publish(rb->opts.conn, "", req->reply_to, &p, body, len, cookie, &e);
	free(body);
	if (rc) {
		rb->waiting = 0;
		return warren_error_set(err, rc == WARREN_ENOMEM ? rc : WARREN_EBACKEND,
					"result backend '%s': publish result of '%s' to '%s': %s",
					rb->masked, r->task_id, req->reply_to, e.msg);
	}
	if (req->async_confirm)
		return 0;
	return await_verdict(rb, r, req->reply_to, err);
}

/* ---- the reply queue (client side) ---- */

static int broker_failed(rpc_backend *rb, const char *what, const warren_error *e,
			 warren_error *err)
{
	return warren_error_set(err, e->code == WARREN_ENOMEM ? WARREN_ENOMEM : WARREN_EBACKEND,
				"result backend '%s': %s '%s': %s", rb->masked, what, rb->oid,
				e->msg);
}

static int declare_reply_queue(rpc_backend *rb, warren_error *err)
{
	int64_t expires = rb->opts.result_expires;
	broker_queue q;
	broker_queue_init(&q, rb->oid);
	q.durable = false;
	q.auto_delete = true;
	q.exclusive = false;
	if (expires > 0)
		q.expires_ms = expires > INT64_MAX / 1000 ? INT64_MAX : expires * 1000;
	broker_topology t = {.queues = &q, .n_queues = 1};
	warren_error e = {0};
	if (broker_declare(rb->opts.conn, &t, &e))
		return broker_failed(rb, "declare reply queue", &e, err);
	rb->declared = true;
	return 0;
}

static int rpc_before_send(void *impl, warren_error *err)
{
	rpc_backend *rb = impl;
	return rb->declared ? 0 : declare_reply_queue(rb, err);
}

static int ensure_consuming(rpc_backend *rb, warren_error *err)
{
	int rc = rpc_before_send(rb, err);
	if (rc || rb->consuming)
		return rc;
	warren_error e = {0};
	if (broker_consume(rb->opts.conn, rb->oid, 0, true, rb->tag, sizeof rb->tag, &e))
		return broker_failed(rb, "consume reply queue", &e, err);
	rb->consuming = true;
	return 0;
}

static const char *rpc_reply_to(const void *impl)
{
	return ((const rpc_backend *)impl)->oid;
}

/* ---- reading replies ---- */

/* An id and its position in ids[]; a wait keeps them sorted by id to find
 * the positions of an id a reply names. */
typedef struct slot {
	const char *id;
	size_t index;
} slot;

typedef struct waiter {
	rpc_backend *rb;
	const char *const *ids;
	size_t n;
	slot *order;  /* sorted by id */
	bool *done;   /* by position in ids[] */
	size_t pending;
	backend_ready_fn on_ready; /* NULL: only buffer (get) */
	void *arg;
} waiter;

static int by_id(const void *a, const void *b)
{
	return strcmp(((const slot *)a)->id, ((const slot *)b)->id);
}

/* First position in order[] whose id is not less than id. */
static size_t lower_bound(const waiter *w, const char *id)
{
	size_t lo = 0, hi = w->n;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (strcmp(w->order[mid].id, id) < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

static bool waited_for(const waiter *w, const char *id)
{
	size_t p = lower_bound(w, id);
	return p < w->n && strcmp(w->order[p].id, id) == 0;
}

/* Hands a ready reply to every position of its id not yet done, then
 * forgets it: a result is read once. */
static int report(waiter *w, reply *r, warren_error *err)
{
	int rc = 0;
	for (size_t p = lower_bound(w, r->id); p < w->n && !rc; p++) {
		size_t i = w->order[p].index;
		if (strcmp(w->order[p].id, r->id) != 0)
			break;
		if (w->done[i])
			continue;
		schema_result res;
		schema_result_init(&res);
		rc = reply_decode(w->rb, r, &res, err);
		if (rc == 0) {
			w->done[i] = true;
			w->pending--;
			rc = w->on_ready(w->arg, i, &res);
			if (rc)
				warren_error_set(err, rc, "result backend '%s': waiting stopped by "
						 "the caller", w->rb->masked);
		}
		schema_result_release(&res);
	}
	reply_drop(w->rb, r);
	return rc;
}

/* Decodes a delivery of our reply queue and buffers it; *out gets the
 * buffered reply (NULL when it was ignored). */
static int take_reply(rpc_backend *rb, broker_message *m, reply **out, warren_error *err)
{
	*out = NULL;
	if (!m->content_type || strcmp(m->content_type, SCHEMA_CONTENT_TYPE) != 0)
		return warren_error_set(err, WARREN_EDECODE, "content type '%s' is not %s",
					m->content_type ? m->content_type : "", SCHEMA_CONTENT_TYPE);
	schema_result r;
	schema_result_init(&r);
	int rc = schema_result_decode_rpc(m->body, m->body_len, &rb->opts.limits, &r, err);
	if (rc == 0)
		rc = reply_put(rb, r.task_id, r.state, m, out, err);
	schema_result_release(&r);
	return rc;
}

/* A reply came: buffer it, and report it if it is ready and waited for. A
 * reply that does not decode fails the wait only when its correlation id
 * is one we wait for; other junk on the queue is dropped. */
static int on_delivery(waiter *w, broker_message *m, warren_error *err)
{
	rpc_backend *rb = w->rb;
	if (!m->consumer_tag || strcmp(m->consumer_tag, rb->tag) != 0)
		return 0; /* another consumer's: dropped unacked (see backend.h) */
	reply *r;
	warren_error e = {0};
	int rc = take_reply(rb, m, &r, &e);
	if (rc == WARREN_ENOMEM)
		return warren_error_set(err, rc, "%s", e.msg);
	if (rc) {
		if (m->correlation_id && waited_for(w, m->correlation_id))
			return warren_error_set(err, rc, "result backend '%s': reply for '%s': %s",
						rb->masked, m->correlation_id, e.msg);
		return 0;
	}
	if (r && w->on_ready && schema_state_is_ready(r->state) && waited_for(w, r->id))
		return report(w, r, err);
	return 0;
}

static int on_event(waiter *w, broker_event *ev, warren_error *err)
{
	rpc_backend *rb = w->rb;
	switch (ev->type) {
	case BROKER_EVENT_MESSAGE:
		return on_delivery(w, ev->msg, err);
	case BROKER_EVENT_CANCELLED:
		if (!ev->consumer_tag || strcmp(ev->consumer_tag, rb->tag) != 0)
			return 0;
		rb->declared = rb->consuming = false;
		return warren_error_set(err, WARREN_EBACKEND,
					"result backend '%s': reply queue '%s' was deleted; results "
					"sent to it are lost", rb->masked, rb->oid);
	default:
		return 0; /* RECONNECTED: the adapter re-declared and resumed us */
	}
}

/* Handles the next event, waiting for it until deadline (-1: none; a past
 * deadline: only what is already there). Returns 0, WARREN_ETIMEOUT (the
 * deadline passed; err untouched) or an error. */
static int pump(waiter *w, int64_t deadline, warren_error *err)
{
	int64_t left = deadline < 0 ? SLICE_MS : deadline - now_ms();
	broker_event ev;
	warren_error e = {0};
	int rc = broker_receive(w->rb->opts.conn, left > 0 ? (int)left : 0, &ev, &e);
	if (rc == WARREN_ETIMEOUT)
		return deadline < 0 ? 0 : WARREN_ETIMEOUT;
	if (rc)
		return warren_error_set(err, WARREN_EBACKEND, "result backend '%s': reading "
					"replies: %s", w->rb->masked, e.msg);
	rc = on_event(w, &ev, err);
	broker_event_release(&ev);
	return rc;
}

/* Reports the waited-for replies already buffered. */
static int report_buffered(waiter *w, warren_error *err)
{
	for (size_t p = 0; p < w->n; p++) {
		if (w->done[w->order[p].index])
			continue;
		reply *r = reply_find(w->rb, w->order[p].id);
		if (r && schema_state_is_ready(r->state)) {
			int rc = report(w, r, err);
			if (rc)
				return rc;
		}
	}
	return 0;
}

static int waiter_init(waiter *w, rpc_backend *rb, const char *const *ids, size_t n,
		       warren_error *err)
{
	*w = (waiter){.rb = rb, .ids = ids, .n = n, .pending = n};
	w->order = malloc(n * sizeof *w->order);
	w->done = calloc(n, sizeof *w->done);
	if (!w->order || !w->done) {
		free(w->order);
		free(w->done);
		return warren_error_set(err, WARREN_ENOMEM, "result backend '%s': out of memory",
					rb->masked);
	}
	for (size_t i = 0; i < n; i++)
		w->order[i] = (slot){ids[i], i};
	qsort(w->order, n, sizeof *w->order, by_id);
	return 0;
}

static void waiter_release(waiter *w)
{
	free(w->order);
	free(w->done);
}

static int rpc_wait(void *impl, const char *const *ids, size_t n, int timeout_ms,
		    backend_ready_fn on_ready, void *arg, warren_error *err)
{
	rpc_backend *rb = impl;
	int64_t deadline = timeout_ms < 0 ? -1 : now_ms() + timeout_ms;
	waiter w;
	int rc = ensure_consuming(rb, err);
	if (rc || (rc = waiter_init(&w, rb, ids, n, err)))
		return rc;
	w.on_ready = on_ready;
	w.arg = arg;
	rc = report_buffered(&w, err);
	while (rc == 0 && w.pending > 0)
		rc = pump(&w, deadline, err);
	if (rc == WARREN_ETIMEOUT)
		rc = warren_error_set(err, WARREN_ETIMEOUT,
				      "result backend '%s': %zu of %zu results still pending after "
				      "%d ms", rb->masked, w.pending, n, timeout_ms);
	waiter_release(&w);
	return rc;
}

static int rpc_get(void *impl, const char *id, schema_result *out, warren_error *err)
{
	rpc_backend *rb = impl;
	waiter w;
	int rc = ensure_consuming(rb, err);
	if (rc || (rc = waiter_init(&w, rb, &id, 1, err)))
		return rc;
	int64_t now = now_ms();
	while ((rc = pump(&w, now, err)) == 0)
		; /* only what already arrived */
	waiter_release(&w);
	if (rc != WARREN_ETIMEOUT)
		return rc;
	reply *r = reply_find(rb, id);
	if (!r) {
		schema_result_release(out);
		return schema_result_set_task_id(out, id, err);
	}
	rc = reply_decode(rb, r, out, err);
	if (rc == 0 && schema_state_is_ready(r->state))
		reply_drop(rb, r); /* read once */
	return rc;
}

static int rpc_forget(void *impl, const char *id, warren_error *err)
{
	(void)err;
	rpc_backend *rb = impl;
	reply *r = reply_find(rb, id);
	if (r)
		reply_drop(rb, r);
	return 0;
}

/* ---- lifecycle ---- */

static int rpc_open(const char *url, const char *url_masked, const backend_options *o,
		    void **impl, warren_error *err)
{
	(void)url; /* rpc://anything: the rest is ignored, as Celery does */
	if (!o->conn)
		return warren_error_set(err, WARREN_EINVAL,
					"result backend '%s': rpc backend needs a broker connection: "
					"set backend_options.conn", url_masked);
	rpc_backend *rb = calloc(1, sizeof *rb);
	if (!rb)
		return warren_error_set(err, WARREN_ENOMEM, "result backend: out of memory");
	rb->masked = url_masked;
	rb->opts = *o;
	rb->number = (atomic_fetch_add(&next_number, 1) + 1) & 0x7fffffff;
	int rc = schema_uuid4(rb->oid, err);
	if (rc) {
		free(rb);
		return rc;
	}
	*impl = rb;
	return 0;
}

static void rpc_free(void *impl)
{
	rpc_backend *rb = impl;
	while (rb->oldest)
		reply_drop(rb, rb->oldest);
	free(rb);
}

const backend_ops backend_rpc_ops = {
	.name = "rpc",
	.open = rpc_open,
	.store = rpc_store,
	.get = rpc_get,
	.wait = rpc_wait,
	.forget = rpc_forget,
	.free = rpc_free,
	.reply_to = rpc_reply_to,
	.before_send = rpc_before_send,
	.outcome = rpc_outcome,
};
