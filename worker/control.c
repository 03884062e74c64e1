/* worker/control.c - remote control: Celery's pidbox, served by the loop.
 *
 * Design: the worker declares the `celery.pidbox` fanout exchange and
 * consumes its own "<hostname>.celery.pidbox" queue (no_ack, queue arguments
 * as kombu's Mailbox) on the loop's connection, so requests are handled on
 * the loop thread between two tasks' settles and need no lock: a revoke
 * lands in the revoked set before the next delivery is looked at. Requests
 * not addressed to this node (destination, pattern + matcher) are dropped as
 * kombu's Node.handle_message does. A reply goes to the request's
 * reply_to exchange (`reply.celery.pidbox`, declared here too, as kombu
 * declares it before replying) with the client's routing key and the ticket
 * in the headers, serialized as the request was. The commands live in
 * control_cmd.c (control) and control_inspect.c (inspect).
 *
 * Revokes reach a fleet the way Celery's do, so that mixed Celery and warren
 * fleets share them in both directions:
 * - a revoke is a broadcast: every worker alive gets it and keeps it for
 *   REVOKE_EXPIRES in its revoked set, written to its state file (revoke.c),
 *   so a restarted worker still refuses the task;
 * - a worker that starts later asks the living ones with Celery's mingle
 *   `hello` at start-up, before it consumes a task, and merges the revoked
 *   ids they answer with (and answers other workers' hello alike).
 * Why not a retained record in the broker or backend: a Celery client's
 * revoke is only a fanout to the pidbox queues, so what a fleet knows is
 * what its live workers received; a record only warren clients wrote would
 * miss Celery's revokes, and a durable revoke queue per worker would only
 * help workers that existed at the time. A revoke sent while no worker at
 * all runs is lost, as with Celery.
 */
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "worker.h"

/* Our publishes' cookies: apart from the loop's (counting from 1), events'
 * (bit 61), the producer's (62) and the rpc backend's (63); their outcome is
 * not waited for (a reply to a client that left is simply returned). */
#define CONTROL_COOKIE (UINT64_C(1) << 60)
#define MINGLE_TIMEOUT_MS 1000            /* Celery's mingle inspect timeout */

/* ---- small shared helpers ---------------------------------------------------- */

double control_wall_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static double mono_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

uint64_t control_clock_forward(control *c, uint64_t seen)
{
	if (seen > c->clock)
		c->clock = seen;
	return ++c->clock;
}

bool control_arg_string(const schema_control_request *req, const char *key, char *buf,
			size_t cap)
{
	const msgpack_object *o = schema_control_arg(req, key);
	if (!o || o->type != MSGPACK_OBJECT_STR || o->via.str.size >= cap)
		return false;
	memcpy(buf, o->via.str.ptr, o->via.str.size);
	buf[o->via.str.size] = '\0';
	return true;
}

bool control_arg_number(const schema_control_request *req, const char *key, double *out)
{
	const msgpack_object *o = schema_control_arg(req, key);
	char text[64];
	if (!o)
		return false;
	switch (o->type) {
	case MSGPACK_OBJECT_POSITIVE_INTEGER: *out = (double)o->via.u64; return true;
	case MSGPACK_OBJECT_NEGATIVE_INTEGER: *out = (double)o->via.i64; return true;
	case MSGPACK_OBJECT_FLOAT32:
	case MSGPACK_OBJECT_FLOAT64: *out = o->via.f64; return true;
	case MSGPACK_OBJECT_STR:
		if (!control_arg_string(req, key, text, sizeof text))
			return false;
		char *end;
		*out = strtod(text, &end);
		return end != text && *end == '\0';
	default: return false;
	}
}

bool control_arg_bool(const schema_control_request *req, const char *key, bool dflt)
{
	const msgpack_object *o = schema_control_arg(req, key);
	if (!o || o->type == MSGPACK_OBJECT_NIL)
		return dflt;
	if (o->type == MSGPACK_OBJECT_BOOLEAN)
		return o->via.boolean;
	if (o->type == MSGPACK_OBJECT_POSITIVE_INTEGER)
		return o->via.u64 != 0;
	if (o->type == MSGPACK_OBJECT_STR) /* Celery's strtobool */
		return o->via.str.size > 0 && strchr("yYtT1", o->via.str.ptr[0]) &&
		       !(o->via.str.size == 3 && !strncasecmp(o->via.str.ptr, "off", 3));
	return dflt;
}

control_override *control_override_for(control *c, const registry_entry *e, bool create)
{
	for (size_t i = 0; i < c->n_overrides; i++)
		if (c->overrides[i].entry == e)
			return &c->overrides[i];
	if (!create)
		return NULL;
	control_override *o = realloc(c->overrides, (c->n_overrides + 1) * sizeof *o);
	if (!o)
		return NULL;
	c->overrides = o;
	o = &o[c->n_overrides++];
	*o = (control_override){e, -1, -1, -1};
	return o;
}

/* ---- node name ---------------------------------------------------------------- */

static void append(char *buf, size_t cap, size_t *len, const char *s, size_t n)
{
	while (n-- && *s && *len + 1 < cap)
		buf[(*len)++] = *s++;
	buf[*len] = '\0';
}

void control_nodename(const char *given, char *buf, size_t cap)
{
	char host[256] = "localhost";
	gethostname(host, sizeof host - 1);
	host[sizeof host - 1] = '\0';
	const char *dot = strchr(host, '.');
	size_t short_len = dot ? (size_t)(dot - host) : strlen(host);
	const char *domain = dot ? dot + 1 : "";
	char expanded[512];
	size_t len = 0;
	expanded[0] = '\0';
	for (const char *p = given ? given : "%h"; *p; p++) {
		if (*p != '%' || !p[1]) {
			append(expanded, sizeof expanded, &len, p, 1);
			continue;
		}
		p++;
		if (*p == 'h')
			append(expanded, sizeof expanded, &len, host, SIZE_MAX);
		else if (*p == 'n')
			append(expanded, sizeof expanded, &len, host, short_len);
		else if (*p == 'd')
			append(expanded, sizeof expanded, &len, domain, SIZE_MAX);
		else if (*p == '%')
			append(expanded, sizeof expanded, &len, "%", 1);
		else
			append(expanded, sizeof expanded, &len, p - 1, 2);
	}
	snprintf(buf, cap, "%s%s", strchr(expanded, '@') ? "" : "celery@", expanded);
}

/* ---- replies ------------------------------------------------------------------ */

static void reply(loop *l, const schema_control_request *req, const msgpack_sbuffer *value)
{
	control *c = l->control;
	msgpack_sbuffer body, headers;
	msgpack_sbuffer_init(&body);
	msgpack_sbuffer_init(&headers);
	warren_error err = {0};
	int rc = schema_control_reply_encode(l->s->hostname, value->data, value->size,
					     req->format, &body, &err);
	if (rc == 0)
		rc = schema_control_reply_headers(req->ticket, control_clock_forward(c, 0),
						  &headers, &err);
	broker_props p = {
		.content_type = schema_control_content_type(req->format),
		.content_encoding = schema_control_content_encoding(req->format),
		.delivery_mode = SCHEMA_CONTROL_REPLY_DELIVERY_MODE,
		.priority = BROKER_UNSET,
		.headers = headers.data,
		.headers_len = headers.size,
	};
	if (rc == 0)
		rc = broker_publish(l->conn, req->reply_exchange, req->reply_routing_key, &p,
				    body.data, body.size, CONTROL_COOKIE | ++c->next_cookie, &err);
	if (rc != 0)
		log_at(CONFIG_LOG_WARNING, NULL, "control: reply to '%s': %s", req->method,
		       err.msg);
	msgpack_sbuffer_destroy(&body);
	msgpack_sbuffer_destroy(&headers);
}

/* Runs the handler into a packed value, as kombu's Node.dispatch: an
 * unknown method or a failing handler answers {"error": ...}. */
static int run(loop *l, const schema_control_request *req, msgpack_sbuffer *value)
{
	msgpack_packer pk;
	msgpack_packer_init(&pk, value, msgpack_sbuffer_write);
	control_fn fn = control_cmd_find(req->method);
	if (!fn)
		fn = control_inspect_find(req->method);
	warren_error err = {0};
	if (!fn) {
		char msg[300];
		snprintf(msg, sizeof msg, "KeyError('%.200s')", req->method);
		return schema_control_pack_error(&pk, msg, NULL);
	}
	size_t mark = value->size;
	int rc = fn(l, req, &pk, &err);
	if (rc == CONTROL_NO_REPLY || rc == 0)
		return rc;
	value->size = mark; /* drop a partly packed value */
	log_at(CONFIG_LOG_WARNING, NULL, "control: %s: %s", req->method, err.msg);
	return schema_control_pack_error(&pk, err.msg, NULL);
}

static void handle(loop *l, const schema_control_request *req)
{
	control *c = l->control;
	if (req->has_clock)
		control_clock_forward(c, req->clock);
	if (!schema_control_request_is_for(req, l->s->hostname))
		return;
	log_at(CONFIG_LOG_DEBUG, NULL, "control: %s (ticket %s)", req->method,
	       req->ticket ? req->ticket : "-");
	msgpack_sbuffer value;
	msgpack_sbuffer_init(&value);
	int rc = run(l, req, &value);
	if (rc == 0 && req->reply_exchange && req->reply_routing_key)
		reply(l, req, &value);
	msgpack_sbuffer_destroy(&value);
}

/* ---- mingle: the start-up hello -------------------------------------------------- */

static void on_hello_reply(loop *l, const broker_message *m)
{
	control *c = l->control;
	schema_control_reply *r = NULL;
	warren_error err = {0};
	if (schema_control_reply_decode(m->content_type, m->headers, m->headers_len, m->body,
					m->body_len, NULL, &r, &err) != 0) {
		log_at(CONFIG_LOG_WARNING, NULL, "mingle: bad reply: %s", err.msg);
		return;
	}
	if (r->ticket && strcmp(r->ticket, c->mingle_ticket) == 0) {
		for (size_t i = 0; i < r->n_nodes; i++) {
			const schema_control_node_reply *n = &r->nodes[i];
			if (strcmp(n->nodename, l->s->hostname) == 0 ||
			    n->value.type != MSGPACK_OBJECT_MAP)
				continue;
			c->mingled++;
			for (uint32_t k = 0; k < n->value.via.map.size; k++) {
				const msgpack_object_kv *kv = &n->value.via.map.ptr[k];
				if (kv->key.type == MSGPACK_OBJECT_STR && kv->key.via.str.size == 7 &&
				    !memcmp(kv->key.via.str.ptr, "revoked", 7))
					control_merge_revoked(l, &kv->val);
				if (kv->key.type == MSGPACK_OBJECT_STR && kv->key.via.str.size == 5 &&
				    !memcmp(kv->key.via.str.ptr, "clock", 5) &&
				    kv->val.type == MSGPACK_OBJECT_POSITIVE_INTEGER)
					control_clock_forward(c, kv->val.via.u64);
			}
		}
	}
	schema_control_reply_free(r);
}

static int mingle_topology(loop *l, const char *oid, char *tag, size_t tag_cap,
			   warren_error *err)
{
	char qname[128];
	int rc = schema_control_reply_queue_name(oid, qname, sizeof qname, err);
	if (rc != 0)
		return rc;
	broker_queue q;
	broker_queue_init(&q, qname);
	q.durable = false;
	q.auto_delete = true;
	q.expires_ms = SCHEMA_CONTROL_QUEUE_EXPIRES_MS;
	q.message_ttl_ms = SCHEMA_CONTROL_QUEUE_TTL_MS;
	broker_binding b = {qname, SCHEMA_CONTROL_REPLY_EXCHANGE, oid};
	broker_topology t = {NULL, 0, &q, 1, &b, 1};
	rc = broker_declare(l->conn, &t, err);
	if (rc == 0)
		rc = broker_consume(l->conn, qname, 0, true, tag, tag_cap, err);
	return rc;
}

static int mingle_send(loop *l, const char *oid, warren_error *err)
{
	control *c = l->control;
	msgpack_sbuffer args, headers, body;
	msgpack_sbuffer_init(&args);
	msgpack_sbuffer_init(&headers);
	msgpack_sbuffer_init(&body);
	msgpack_packer pk;
	msgpack_packer_init(&pk, &args, msgpack_sbuffer_write);
	msgpack_pack_map(&pk, 2);
	msgpack_pack_str_with_body(&pk, "from_node", 9);
	msgpack_pack_str_with_body(&pk, l->s->hostname, strlen(l->s->hostname));
	msgpack_pack_str_with_body(&pk, "revoked", 7);
	/* control_pack_hello packs {"revoked": {...}, "clock": n}: take the inner map. */
	msgpack_sbuffer hello;
	msgpack_sbuffer_init(&hello);
	msgpack_packer hp;
	msgpack_packer_init(&hp, &hello, msgpack_sbuffer_write);
	int rc = control_pack_hello(l, &hp);
	if (rc == 0) {
		msgpack_unpacked u;
		msgpack_unpacked_init(&u);
		if (msgpack_unpack_next(&u, hello.data, hello.size, NULL) == MSGPACK_UNPACK_SUCCESS &&
		    u.data.type == MSGPACK_OBJECT_MAP && u.data.via.map.size > 0)
			msgpack_pack_object(&pk, u.data.via.map.ptr[0].val);
		else
			msgpack_pack_map(&pk, 0);
		msgpack_unpacked_destroy(&u);
	}
	msgpack_sbuffer_destroy(&hello);
	schema_control_request_spec spec = {
		.method = "hello", .arguments_mp = args.data, .arguments_len = args.size,
		.ticket = c->mingle_ticket, .reply_routing_key = oid,
		.clock = control_clock_forward(c, 0),
		.expires = control_wall_now() + MINGLE_TIMEOUT_MS / 1000.0,
	};
	if (rc == 0)
		rc = schema_control_request_encode(&spec, SCHEMA_CONTROL_MSGPACK, &headers, &body,
						   err);
	broker_props p = {.content_type = schema_control_content_type(SCHEMA_CONTROL_MSGPACK),
			  .content_encoding = schema_control_content_encoding(SCHEMA_CONTROL_MSGPACK),
			  .delivery_mode = SCHEMA_CONTROL_REQUEST_DELIVERY_MODE,
			  .priority = BROKER_UNSET, .headers = headers.data,
			  .headers_len = headers.size};
	if (rc == 0)
		rc = broker_publish(l->conn, SCHEMA_CONTROL_EXCHANGE, "", &p, body.data, body.size,
				    CONTROL_COOKIE | ++c->next_cookie, err);
	msgpack_sbuffer_destroy(&args);
	msgpack_sbuffer_destroy(&headers);
	msgpack_sbuffer_destroy(&body);
	return rc;
}

/* Serves the connection (our own pidbox included: other workers may be
 * mingling too) until the hello's time is up. No task consumer runs yet. */
static void mingle_collect(loop *l)
{
	control *c = l->control;
	int64_t until = task_monotonic_ns() + (int64_t)MINGLE_TIMEOUT_MS * 1000000;
	for (int64_t now; (now = task_monotonic_ns()) < until;) {
		broker_event ev = {0};
		warren_error err = {0};
		int rc = broker_receive(l->conn, (int)((until - now) / 1000000) + 1, &ev, &err);
		if (rc == WARREN_ETIMEOUT)
			continue;
		if (rc != 0)
			return;
		if (ev.type == BROKER_EVENT_MESSAGE && ev.msg->consumer_tag &&
		    !strcmp(ev.msg->consumer_tag, c->mingle_tag))
			on_hello_reply(l, ev.msg);
		else if (ev.type == BROKER_EVENT_MESSAGE && control_owns(l, ev.msg)) {
			control_on_message(l, ev.msg);
			ev.msg = NULL;
		}
		broker_event_release(&ev);
	}
}

static void mingle(loop *l)
{
	control *c = l->control;
	char oid[37];
	warren_error err = {0};
	log_at(CONFIG_LOG_INFO, NULL, "mingle: searching for neighbors");
	int rc = schema_uuid4(oid, &err);
	if (rc == 0)
		rc = schema_uuid4(c->mingle_ticket, &err);
	if (rc == 0)
		rc = mingle_topology(l, oid, c->mingle_tag, sizeof c->mingle_tag, &err);
	if (rc == 0)
		rc = mingle_send(l, oid, &err);
	if (rc == 0)
		mingle_collect(l);
	if (c->mingle_tag[0] && broker_cancel(l->conn, c->mingle_tag, &err) != 0)
		log_at(CONFIG_LOG_DEBUG, NULL, "mingle: cancel: %s", err.msg);
	c->mingle_tag[0] = '\0';
	if (rc != 0)
		log_at(CONFIG_LOG_WARNING, NULL, "mingle: %s (going on alone)", err.msg);
	else if (c->mingled)
		log_at(CONFIG_LOG_INFO, NULL, "mingle: sync with %zu node(s): %zu revoked id(s)",
		       c->mingled, revoke_count(c->revoked));
	else
		log_at(CONFIG_LOG_INFO, NULL, "mingle: all alone");
}

/* ---- lifecycle ------------------------------------------------------------------ */

static int declare_pidbox(loop *l, warren_error *err)
{
	control *c = l->control;
	int rc = schema_control_queue_name(l->s->hostname, c->queue, sizeof c->queue, err);
	if (rc != 0)
		return rc;
	broker_exchange xs[2] = {
		{.name = SCHEMA_CONTROL_EXCHANGE, .type = BROKER_EXCHANGE_FANOUT},
		{.name = SCHEMA_CONTROL_REPLY_EXCHANGE, .type = BROKER_EXCHANGE_DIRECT},
	};
	broker_queue q;
	broker_queue_init(&q, c->queue);
	q.durable = false;
	q.auto_delete = true;
	q.expires_ms = SCHEMA_CONTROL_QUEUE_EXPIRES_MS;
	q.message_ttl_ms = SCHEMA_CONTROL_QUEUE_TTL_MS;
	broker_binding b = {c->queue, SCHEMA_CONTROL_EXCHANGE, ""};
	broker_topology t = {xs, 2, &q, 1, &b, 1};
	rc = broker_declare(l->conn, &t, err);
	if (rc == 0)
		rc = broker_consume(l->conn, c->queue, 0, true, c->tag, sizeof c->tag, err);
	return rc;
}

static int open_revoked(loop *l, warren_error *err)
{
	control *c = l->control;
	int rc = revoke_set_new(l->s->statedb, &c->revoked, err);
	if (rc != 0)
		return rc;
	size_t loaded = 0;
	warren_error lerr = {0};
	if (revoke_load(c->revoked, control_wall_now(), &loaded, &lerr) != 0)
		log_at(CONFIG_LOG_WARNING, NULL, "%s", lerr.msg);
	else if (l->s->statedb)
		log_at(CONFIG_LOG_INFO, NULL, "statedb '%s': %zu revoked id(s)", l->s->statedb,
		       loaded);
	return 0;
}

int control_open(loop *l, warren_error *err)
{
	control *c = calloc(1, sizeof *c);
	if (!c || !(c->cancelled = calloc(l->s->n_queues + 1, sizeof *c->cancelled))) {
		free(c);
		return warren_error_set(err, WARREN_ENOMEM, "control: out of memory");
	}
	c->started = control_wall_now();
	l->control = c;
	int rc = open_revoked(l, err);
	if (rc == 0)
		rc = declare_pidbox(l, err);
	if (rc == 0 && !l->s->without_mingle)
		mingle(l);
	return rc;
}

void control_close(loop *l)
{
	control *c = l->control;
	if (!c)
		return;
	warren_error err = {0};
	if (c->revoked && revoke_set_path(c->revoked) &&
	    revoke_save(c->revoked, control_wall_now(), &err) != 0)
		log_at(CONFIG_LOG_WARNING, NULL, "%s", err.msg);
	revoke_set_free(c->revoked);
	for (size_t i = 0; i < c->n_added; i++) {
		free(c->added[i].name);
		free(c->added[i].exchange);
		free(c->added[i].exchange_type);
		free(c->added[i].routing_key);
	}
	free(c->added);
	free(c->active);
	free(c->counts);
	free(c->overrides);
	free(c->cancelled);
	free(c);
	l->control = NULL;
}

bool control_owns(const loop *l, const broker_message *msg)
{
	const control *c = l->control;
	return c && msg->consumer_tag && c->tag[0] && strcmp(msg->consumer_tag, c->tag) == 0;
}

void control_on_message(loop *l, broker_message *msg)
{
	schema_control_request *req = NULL;
	warren_error err = {0};
	if (schema_control_request_decode(msg->content_type, msg->headers, msg->headers_len,
					  msg->body, msg->body_len, NULL, &req, &err) != 0)
		log_at(CONFIG_LOG_WARNING, NULL, "control: request dropped: %s", err.msg);
	else
		handle(l, req);
	schema_control_request_free(req);
	broker_message_free(msg);
}

void control_tick(loop *l)
{
	control *c = l->control;
	warren_error err = {0};
	if (c && c->revoked && revoke_maybe_save(c->revoked, control_wall_now(), &err) != 0)
		log_at(CONFIG_LOG_WARNING, NULL, "%s", err.msg);
}

/* ---- revokes: the loop's checks ---------------------------------------------------- */

bool control_is_revoked(const loop *l, const char *task_id)
{
	const control *c = l->control;
	return c && c->revoked && revoke_contains(c->revoked, task_id, control_wall_now());
}

bool control_check_revoked(loop *l, loop_task *t)
{
	if (!control_is_revoked(l, t->tm->id))
		return false;
	log_fields f = {t->tm->id, t->tm->task, "REVOKED", -1};
	log_at(CONFIG_LOG_WARNING, &f, "Discarding revoked task: %s[%s]", t->tm->task, t->tm->id);
	events_task_revoked(l, t->tm, false, -1, false);
	schema_result r;
	schema_result_init(&r);
	schema_result_set_revoked(&r, SCHEMA_REVOKED_REVOKED, NULL);
	if (!t->conf.ignore_result && !t->tm->ignore_result)
		loop_store(l, t->tm->id, t->tm, t->msg, &r);
	schema_result_release(&r);
	if (!t->acked)
		loop_ack(l, t->msg);
	loop_task_free(t);
	return true;
}

void control_apply_overrides(const loop *l, loop_task *t)
{
	const control *c = l->control;
	for (size_t i = 0; c && i < c->n_overrides; i++) {
		const control_override *o = &c->overrides[i];
		if (o->entry != t->entry)
			continue;
		if (o->rate >= 0)
			t->conf.rate = o->rate;
		if (o->soft_time_limit >= 0)
			t->conf.soft_time_limit = o->soft_time_limit;
		if (o->time_limit >= 0)
			t->conf.time_limit = o->time_limit;
	}
}

/* ---- the tasks in the pool ------------------------------------------------------- */

void control_task_submitted(loop *l, loop_task *t, uint64_t seq)
{
	control *c = l->control;
	if (!c)
		return;
	if (c->n_active == c->cap_active) {
		size_t cap = c->cap_active ? c->cap_active * 2 : 16;
		control_active *a = realloc(c->active, cap * sizeof *a);
		if (!a)
			return; /* only inspect loses sight of it */
		c->active = a;
		c->cap_active = cap;
	}
	c->active[c->n_active++] = (control_active){seq, t};
}

static void count_done(control *c, const registry_entry *e)
{
	for (size_t i = 0; i < c->n_counts; i++)
		if (c->counts[i].entry == e) {
			c->counts[i].count++;
			return;
		}
	control_count *n = realloc(c->counts, (c->n_counts + 1) * sizeof *n);
	if (!n)
		return;
	c->counts = n;
	c->counts[c->n_counts++] = (control_count){e, 1};
}

void control_task_done(loop *l, const pool_job *job)
{
	control *c = l->control;
	if (!c)
		return;
	for (size_t i = 0; i < c->n_active; i++) {
		if (c->active[i].seq != job->seq)
			continue;
		if (job->status != TASK_PENDING)
			count_done(c, c->active[i].t->entry);
		c->active[i] = c->active[--c->n_active];
		return;
	}
}

/* ---- hello's revoked map ---------------------------------------------------------- */

int control_pack_hello(loop *l, msgpack_packer *pk)
{
	control *c = l->control;
	double wall = control_wall_now(), offset = wall - mono_now();
	revoke_purge(c->revoked, wall);
	size_t n = revoke_count(c->revoked);
	msgpack_pack_map(pk, 2);
	msgpack_pack_str_with_body(pk, "revoked", 7);
	msgpack_pack_map(pk, (uint32_t)n);
	for (size_t i = 0; i < n; i++) {
		double when;
		const char *id = revoke_at(c->revoked, i, &when);
		size_t len = strlen(id);
		msgpack_pack_str_with_body(pk, id, len);
		msgpack_pack_array(pk, 2);
		msgpack_pack_double(pk, when - offset);
		msgpack_pack_str_with_body(pk, id, len);
	}
	msgpack_pack_str_with_body(pk, "clock", 5);
	return msgpack_pack_uint64(pk, control_clock_forward(c, 0));
}

/* A peer's timestamp as unix seconds: Celery sends its monotonic clock
 * (comparable on one host only); a value that is already a unix time (a
 * year after 2001) is taken as it is. */
static bool peer_time(const msgpack_object *v, double offset, double *out)
{
	if (v->type == MSGPACK_OBJECT_ARRAY && v->via.array.size > 0)
		v = &v->via.array.ptr[0];
	double t;
	if (v->type == MSGPACK_OBJECT_FLOAT32 || v->type == MSGPACK_OBJECT_FLOAT64)
		t = v->via.f64;
	else if (v->type == MSGPACK_OBJECT_POSITIVE_INTEGER)
		t = (double)v->via.u64;
	else
		return false;
	*out = t > 1e9 ? t : t + offset;
	return true;
}

size_t control_merge_revoked(loop *l, const msgpack_object *revoked)
{
	control *c = l->control;
	if (revoked->type != MSGPACK_OBJECT_MAP)
		return 0;
	double wall = control_wall_now(), offset = wall - mono_now();
	size_t n = 0;
	for (uint32_t i = 0; i < revoked->via.map.size; i++) {
		const msgpack_object_kv *kv = &revoked->via.map.ptr[i];
		char id[256];
		double when;
		if (kv->key.type != MSGPACK_OBJECT_STR || kv->key.via.str.size >= sizeof id ||
		    !peer_time(&kv->val, offset, &when) || when + REVOKE_EXPIRES <= wall)
			continue;
		memcpy(id, kv->key.via.str.ptr, kv->key.via.str.size);
		id[kv->key.via.str.size] = '\0';
		if (revoke_add(c->revoked, id, when > wall ? wall : when) == 0)
			n++;
	}
	return n;
}
