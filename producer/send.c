/* producer/send.c - warren_send / warren_send_async: one task message, built,
 * validated, routed and published the way Celery 5.2's send_task does
 * (celery/app/base.py send_task, celery/app/amqp.py send_task_message).
 *
 * Routing. The queue is the --queue option, else the first task_routes
 * match, else task_default_queue ("celery"). For a queue whose exchange is
 * direct, Celery publishes to the default exchange "" with the queue name as
 * routing key unless both an exchange and a routing key are given
 * explicitly; for topic/fanout exchanges it publishes to the queue's
 * exchange with its routing key. Before the first publish to a queue the
 * client declares its exchange, the queue and the binding (Celery's
 * declare=[queue]); the broker adapter re-declares them after a reconnect.
 *
 * Time. countdown becomes an absolute eta header (as Celery does) and, unless
 * the client was made with broker_delay = false, the message is parked in the
 * broker's delay cascade (broker_publish_delayed) until due, so no worker
 * holds it unacked. expires becomes the ISO `expires` header and the AMQP
 * per-message `expiration` (milliseconds), as Celery sends both.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "producer.h"
#include "schemas/schemas.h"

void warren_send_opts_init(warren_send_opts *o)
{
	*o = (warren_send_opts){.priority = -1};
}

/* Where one message goes. Strings live in the config, the options or q. */
typedef struct dest {
	const char *queue; /* NULL when a route names only an exchange */
	const char *exchange;
	const char *routing_key;
} dest;

static config_exchange_type exchange_type_of(const warren_client *c, const char *exchange,
					     const config_queue *cq)
{
	const config_exchange *ce = c->cfg && exchange ? config_exchange_find(c->cfg, exchange) : NULL;
	if (ce)
		return ce->type;
	return cq ? cq->exchange_type : CONFIG_EXCHANGE_DIRECT;
}

static void route(const warren_client *c, const char *task, const warren_send_opts *o, dest *d)
{
	const config_route *r = !o->queue && c->cfg ? config_route_task(c->cfg, task) : NULL;
	d->queue = o->queue ? o->queue : r ? r->queue : "celery";
	const config_queue *cq = c->cfg && d->queue ? config_queue_find(c->cfg, d->queue) : NULL;
	/* Exchange and key: the route's (config resolved a missing one from
	 * the queue's declaration at load), else the declared queue's, else
	 * Celery's Queue(q, Exchange(q), q). */
	const char *q_exchange = r ? r->exchange : cq ? cq->exchange : d->queue;
	const char *q_key = r ? r->routing_key : cq ? cq->routing_key : d->queue;
	const char *exchange = o->exchange ? o->exchange : q_exchange;
	config_exchange_type type = exchange_type_of(c, exchange, cq);
	/* celery/app/amqp.py: convert to the anonymous exchange when the
	 * exchange is direct and not both exchange and key were given. */
	if (d->queue && type == CONFIG_EXCHANGE_DIRECT && !(o->exchange && o->routing_key)) {
		d->exchange = "";
		d->routing_key = d->queue;
		return;
	}
	d->exchange = exchange ? exchange : "";
	d->routing_key = o->routing_key ? o->routing_key : q_key ? q_key : "";
}

static bool declared(const warren_client *c, const char *queue)
{
	for (size_t i = 0; i < c->n_declared; i++)
		if (strcmp(c->declared[i], queue) == 0)
			return true;
	return false;
}

static int remember_declared(warren_client *c, const char *queue)
{
	if (c->n_declared == c->cap_declared) {
		size_t cap = c->cap_declared ? 2 * c->cap_declared : 8;
		char **p = realloc(c->declared, cap * sizeof *p);
		if (!p)
			return WARREN_ENOMEM;
		c->declared = p;
		c->cap_declared = cap;
	}
	if (!(c->declared[c->n_declared] = strdup(queue)))
		return WARREN_ENOMEM;
	c->n_declared++;
	return 0;
}

static void queue_from_config(broker_queue *bq, const config_queue *cq)
{
	bq->durable = cq->durable != 0;
	bq->quorum = cq->type == CONFIG_QUEUE_QUORUM;
	bq->max_priority = cq->max_priority ? cq->max_priority : BROKER_UNSET;
	bq->dead_letter_exchange = cq->dead_letter_exchange;
	bq->dead_letter_routing_key = cq->dead_letter_routing_key;
	bq->delivery_limit = cq->delivery_limit ? cq->delivery_limit : BROKER_UNSET;
	bq->message_ttl_ms = cq->message_ttl_ms >= 0 ? cq->message_ttl_ms : BROKER_UNSET;
	bq->expires_ms = cq->expires_ms >= 0 ? cq->expires_ms : BROKER_UNSET;
}

/* Celery's declare=[queue]: the queue's exchange, the queue, the binding. */
static int declare_queue(warren_client *c, const char *queue, warren_error *err)
{
	if (declared(c, queue))
		return 0;
	const config_queue *cq = c->cfg ? config_queue_find(c->cfg, queue) : NULL;
	const char *xname = cq ? cq->exchange : queue;
	const config_exchange *ce = c->cfg ? config_exchange_find(c->cfg, xname) : NULL;
	broker_exchange bx = {.name = xname,
			      .type = (broker_exchange_type)(ce ? ce->type
								: cq ? cq->exchange_type
								     : CONFIG_EXCHANGE_DIRECT),
			      .durable = ce ? ce->durable != 0 : true};
	broker_queue bq;
	broker_queue_init(&bq, queue);
	if (cq)
		queue_from_config(&bq, cq);
	broker_binding bb = {.queue = queue, .exchange = xname,
			     .routing_key = cq ? cq->routing_key : queue};
	bool named = *xname != '\0';
	broker_topology t = {.exchanges = &bx, .n_exchanges = named, .queues = &bq, .n_queues = 1,
			     .bindings = &bb, .n_bindings = named};
	int rc = broker_declare(c->conn, &t, err);
	if (!rc && remember_declared(c, queue))
		rc = warren_error_set(err, WARREN_ENOMEM, "declare: out of memory");
	return rc;
}

/* ---- the message ---- */

static int set_args(schema_task_msg *msg, const warren_args *args, const warren_args *kwargs,
		    warren_error *err)
{
	const void *p;
	size_t n;
	int rc = producer_args_bytes(args, false, "args", &p, &n, err);
	if (!rc && args)
		rc = schema_task_msg_set_args(msg, p, n, err);
	if (!rc && kwargs && !(rc = producer_args_bytes(kwargs, true, "kwargs", &p, &n, err)))
		rc = schema_task_msg_set_kwargs(msg, p, n, err);
	return rc;
}

static int validate(const warren_client *c, const schema_task_msg *msg, warren_error *err)
{
	const config_task *ct = c->cfg ? config_task_find(c->cfg, msg->task) : NULL;
	if (!ct || !ct->has_schema)
		return 0;
	return schema_args_validate(msg->task, &ct->schema, &msg->args, &msg->kwargs, err);
}

static int set_str(schema_task_msg *msg, const char **field, const char *s, warren_error *err)
{
	if (!(*field = schema_task_msg_strdup(msg, s)))
		return warren_error_set(err, WARREN_ENOMEM, "task '%s': out of memory", msg->task);
	return 0;
}

/* eta / countdown and expires. *delay_ms gets how long the message should
 * wait in the broker (0: not at all). */
static int set_times(schema_task_msg *msg, const warren_send_opts *o, int64_t *delay_ms,
		     warren_error *err)
{
	int64_t now = producer_now_us(), eta = 0;
	char iso[40], ms[32];
	int rc = 0;
	*delay_ms = 0;
	if (o->eta && (rc = producer_iso8601_parse(o->eta, &eta, err)))
		return rc;
	if (!o->eta && o->countdown > 0)
		eta = now + (int64_t)llround(o->countdown * 1e6);
	if (o->eta || o->countdown > 0) {
		producer_iso8601_format(eta, iso);
		if ((rc = set_str(msg, &msg->eta, iso, err)))
			return rc;
		*delay_ms = eta > now ? (eta - now + 999) / 1000 : 0;
	}
	if (o->expires > 0) {
		producer_iso8601_format(now + (int64_t)llround(o->expires * 1e6), iso);
		snprintf(ms, sizeof ms, "%lld", (long long)llround(o->expires * 1000));
		if ((rc = set_str(msg, &msg->expires, iso, err)) ||
		    (rc = set_str(msg, &msg->props.expiration, ms, err)))
			return rc;
	}
	return 0;
}

static int check_opts(const char *task, const warren_send_opts *o, warren_error *err)
{
	if (o->priority > 255)
		return warren_error_set(err, WARREN_EINVAL, "task '%s': priority %d is over 255",
					task, o->priority);
	if (o->task_id && (!*o->task_id || strlen(o->task_id) >= WARREN_TASK_ID_MAX))
		return warren_error_set(err, WARREN_EINVAL,
					"task '%s': task id must be 1 to %d bytes", task,
					WARREN_TASK_ID_MAX - 1);
	if (o->countdown < 0 || o->expires < 0 || o->time_limit < 0 || o->soft_time_limit < 0 ||
	    o->retries < 0 || !isfinite(o->countdown) || !isfinite(o->expires))
		return warren_error_set(err, WARREN_EINVAL,
					"task '%s': negative or infinite countdown, expires, "
					"time limit or retries", task);
	return 0;
}

static int set_options(warren_client *c, schema_task_msg *msg, const warren_send_opts *o,
		       int64_t *delay_ms, warren_error *err)
{
	int rc = 0;
	if (o->task_id && ((rc = set_str(msg, &msg->id, o->task_id, err))))
		return rc;
	msg->root_id = msg->id;
	if ((rc = set_times(msg, o, delay_ms, err)))
		return rc;
	if (o->priority >= 0) {
		msg->props.has_priority = true;
		msg->props.priority = (uint8_t)o->priority;
	}
	msg->retries = o->retries;
	msg->has_time_limit = o->time_limit > 0;
	msg->time_limit = o->time_limit;
	msg->has_soft_time_limit = o->soft_time_limit > 0;
	msg->soft_time_limit = o->soft_time_limit;
	msg->ignore_result = o->ignore_result;
	/* Celery always sends a reply_to: its rpc reply queue, else its oid. */
	const char *reply_to;
	if ((rc = producer_reply_to(c, &reply_to, err)))
		return rc;
	return set_str(msg, &msg->props.reply_to, reply_to, err);
}

/* Celery's headers plus the caller's: a key in both takes the caller's value. */
static int merge_headers(msgpack_sbuffer *hdr, const warren_args *extra, warren_error *err)
{
	const void *xp;
	size_t xn;
	int rc = producer_args_bytes(extra, true, "headers", &xp, &xn, err);
	if (rc)
		return rc;
	msgpack_zone zone;
	if (!msgpack_zone_init(&zone, 2048))
		return warren_error_set(err, WARREN_ENOMEM, "headers: out of memory");
	schema_limits lim;
	schema_limits_default(&lim);
	msgpack_object base, add;
	if ((rc = schema_unpack(hdr->data, hdr->size, &lim, "headers", &zone, &base, err)) ||
	    (rc = schema_unpack(xp, xn, &lim, "headers", &zone, &add, err)))
		goto out_zone;
	msgpack_sbuffer out;
	msgpack_sbuffer_init(&out);
	msgpack_packer pk;
	msgpack_packer_init(&pk, &out, msgpack_sbuffer_write);
	uint32_t keep = 0;
	for (uint32_t i = 0; i < base.via.map.size; i++) {
		const msgpack_object *k = &base.via.map.ptr[i].key;
		char key[128];
		snprintf(key, sizeof key, "%.*s", (int)k->via.str.size, k->via.str.ptr);
		base.via.map.ptr[i].key.type = schema_map_get(&add, key) ? MSGPACK_OBJECT_NIL
									  : k->type;
		keep += base.via.map.ptr[i].key.type != MSGPACK_OBJECT_NIL;
	}
	int bad = msgpack_pack_map(&pk, keep + add.via.map.size);
	for (uint32_t i = 0; i < base.via.map.size; i++)
		if (base.via.map.ptr[i].key.type != MSGPACK_OBJECT_NIL)
			bad |= msgpack_pack_object(&pk, base.via.map.ptr[i].key) ||
			       msgpack_pack_object(&pk, base.via.map.ptr[i].val);
	for (uint32_t i = 0; i < add.via.map.size; i++)
		bad |= msgpack_pack_object(&pk, add.via.map.ptr[i].key) ||
		       msgpack_pack_object(&pk, add.via.map.ptr[i].val);
	if (bad) {
		msgpack_sbuffer_destroy(&out);
		rc = warren_error_set(err, WARREN_ENOMEM, "headers: out of memory");
		goto out_zone;
	}
	msgpack_sbuffer_destroy(hdr);
	*hdr = out;
out_zone:
	msgpack_zone_destroy(&zone);
	return rc;
}

/* Everything but the publish: a message ready to go, or an error. */
static int build(warren_client *c, const char *task, const warren_args *args,
		 const warren_args *kwargs, const warren_send_opts *o, schema_task_msg **out,
		 int64_t *delay_ms, warren_error *err)
{
	if (!task || !*task)
		return warren_error_set(err, WARREN_EINVAL, "send: a task name is required");
	int rc = check_opts(task, o, err);
	if (rc)
		return rc;
	schema_task_msg *msg = NULL;
	if ((rc = schema_task_msg_new(task, &msg, err)))
		return rc;
	if ((rc = set_args(msg, args, kwargs, err)) || (rc = validate(c, msg, err)) ||
	    (rc = set_options(c, msg, o, delay_ms, err))) {
		schema_task_msg_free(msg);
		return rc;
	}
	*out = msg;
	return 0;
}

static int publish(warren_client *c, const schema_task_msg *msg, const warren_send_opts *o,
		   int64_t delay_ms, const dest *d, uint64_t cookie, warren_error *err)
{
	msgpack_sbuffer hdr, body;
	msgpack_sbuffer_init(&hdr);
	msgpack_sbuffer_init(&body);
	schema_task_props tp;
	int rc = schema_task_encode(msg, &hdr, &body, &tp, err);
	if (!rc && o->headers)
		rc = merge_headers(&hdr, o->headers, err);
	if (rc)
		goto out_buffers;
	broker_props bp = {.content_type = tp.content_type, .content_encoding = tp.content_encoding,
			   .correlation_id = tp.correlation_id, .reply_to = tp.reply_to,
			   .expiration = tp.expiration, .delivery_mode = tp.delivery_mode,
			   .priority = tp.priority, .headers = hdr.data, .headers_len = hdr.size};
	if (delay_ms > 0 && c->opts.broker_delay)
		rc = broker_publish_delayed(c->conn, d->exchange, d->routing_key, delay_ms, &bp,
					    body.data, body.size, cookie, err);
	else
		rc = broker_publish(c->conn, d->exchange, d->routing_key, &bp, body.data, body.size,
				    cookie, err);
out_buffers:
	msgpack_sbuffer_destroy(&hdr);
	msgpack_sbuffer_destroy(&body);
	return rc;
}

static int send_one(warren_client *c, const char *task, const warren_args *args,
		    const warren_args *kwargs, const warren_send_opts *opts, uint64_t cookie,
		    char *id_out, warren_error *err)
{
	warren_send_opts none;
	if (!opts) {
		warren_send_opts_init(&none);
		opts = &none;
	}
	if (!c)
		return warren_error_set(err, WARREN_EINVAL, "send: NULL client");
	schema_task_msg *msg = NULL;
	int64_t delay_ms = 0;
	int rc = build(c, task, args, kwargs, opts, &msg, &delay_ms, err);
	if (rc)
		return rc;
	dest d;
	route(c, task, opts, &d);
	if ((rc = producer_broker(c, err)) || (d.queue && (rc = declare_queue(c, d.queue, err))) ||
	    (rc = publish(c, msg, opts, delay_ms, &d, cookie, err)))
		goto out_msg;
	if (id_out)
		snprintf(id_out, WARREN_TASK_ID_MAX, "%s", msg->id);
out_msg:
	schema_task_msg_free(msg);
	return rc;
}

int warren_send_async(warren_client *c, const char *task, const warren_args *args,
		      const warren_args *kwargs, const warren_send_opts *opts, uint64_t cookie,
		      char *id_out, warren_error *err)
{
	if (cookie >= PRODUCER_USER_COOKIE_MAX)
		return warren_error_set(err, WARREN_EINVAL, "send: cookie must be below 2^62");
	return send_one(c, task, args, kwargs, opts, cookie, id_out, err);
}

/* How long warren_send waits for its confirm: a reconnect may come first. */
static int confirm_wait_ms(const warren_client *c)
{
	return c->opts.reconnect_timeout_ms + 30000;
}

int warren_send(warren_client *c, const char *task, const warren_args *args,
		const warren_args *kwargs, const warren_send_opts *opts, char *id_out,
		warren_error *err)
{
	if (!c)
		return warren_error_set(err, WARREN_EINVAL, "send: NULL client");
	uint64_t seq = (c->sync_seq + 1) % PRODUCER_USER_COOKIE_MAX;
	c->sync_seq = seq;
	c->sync_done = false;
	int rc = send_one(c, task, args, kwargs, opts, seq | PRODUCER_SYNC_COOKIE, id_out, err);
	if (rc)
		return rc;
	while (!c->sync_done)
		if ((rc = broker_publish_flush(c->conn, confirm_wait_ms(c), err)))
			return rc;
	switch (c->sync_outcome) {
	case BROKER_CONFIRMED:
		return 0;
	case BROKER_NACKED:
		return warren_error_set(err, WARREN_EBROKER, "send '%s': the broker refused it: %s",
					task, c->sync_reason);
	case BROKER_RETURNED:
		return warren_error_set(err, WARREN_EBROKER, "send '%s': %s", task, c->sync_reason);
	default:
		return warren_error_set(err, WARREN_EBROKER, "send '%s': not confirmed: %s", task,
					c->sync_reason);
	}
}

int warren_client_flush(warren_client *c, int timeout_ms, warren_error *err)
{
	if (!c)
		return warren_error_set(err, WARREN_EINVAL, "flush: NULL client");
	return c->conn ? broker_publish_flush(c->conn, timeout_ms, err) : 0;
}

size_t warren_client_unconfirmed(const warren_client *c)
{
	return c && c->conn ? broker_publish_unconfirmed(c->conn) : 0;
}

/* ---- canvas.c's way in ---- */

/* A message canvas.c built (ids, group, embed set) goes out the way
 * warren_send's do: validated against the task's schema, routed (queue
 * overrides task_routes), its queue declared, countdown/expires turned into
 * headers (and a broker delay). The confirm arrives under `cookie` at the
 * client's outcome callback. */
int producer_send_msg(warren_client *c, schema_task_msg *msg, const char *queue,
		      double countdown, double expires, uint64_t cookie, warren_error *err)
{
	warren_send_opts o;
	warren_send_opts_init(&o);
	o.queue = queue;
	o.countdown = countdown;
	o.expires = expires;
	int64_t delay_ms = 0;
	dest d;
	route(c, msg->task, &o, &d);
	int rc = validate(c, msg, err);
	if (!rc)
		rc = set_times(msg, &o, &delay_ms, err);
	if (!rc)
		rc = producer_broker(c, err);
	if (!rc && d.queue)
		rc = declare_queue(c, d.queue, err);
	if (!rc)
		rc = publish(c, msg, &o, delay_ms, &d, cookie, err);
	return rc;
}
