/* broker-adapter/consume.c - consumers, deliveries, acks, and broker_receive.
 *
 * A delivery is copied out of rabbitmq-c the moment its frames are read
 * (properties, body, headers converted to a packed msgpack map; one
 * allocation for all but the body), because
 * rabbitmq-c recycles that memory on its next frame wait and its memory must
 * never reach another thread. Copies wait in an event queue: deliveries
 * arrive while we wait for confirms or RPC replies too, not only in
 * broker_receive.
 *
 * Consumers live on their own channel, each with basic.qos(prefetch,
 * global=false) just before its basic.consume, and are remembered so a
 * reconnect resumes them with the same consumer tag. A delivery carries the
 * connection generation it came on: after a reconnect its tag means nothing
 * to the broker, which redelivers the message anyway.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"

/* ---- the event queue ---------------------------------------------------- */

void broker_event_push(broker_conn *c, const broker_event *ev)
{
	broker_event_node *n = malloc(sizeof *n);
	if (!n) {
		/* Nowhere to put it: a lost delivery is redelivered after the next
		 * reconnect, which dropping the connection forces. */
		broker_event tmp = *ev;
		broker_event_release(&tmp);
		broker_conn_lost(c, "out of memory queueing a delivery");
		return;
	}
	n->next = NULL;
	n->ev = *ev;
	if (c->ev_tail)
		c->ev_tail->next = n;
	else
		c->ev_head = n;
	c->ev_tail = n;
}

static bool event_pop(broker_conn *c, broker_event *ev)
{
	broker_event_node *n = c->ev_head;
	if (!n)
		return false;
	c->ev_head = n->next;
	if (!c->ev_head)
		c->ev_tail = NULL;
	*ev = n->ev;
	free(n);
	return true;
}

void broker_event_release(broker_event *ev)
{
	if (!ev)
		return;
	broker_message_free(ev->msg);
	free(ev->consumer_tag);
	free(ev->queue);
	free(ev->reason);
	memset(ev, 0, sizeof *ev);
}

/* One allocation holds the message and its strings and headers (consume.c
 * message_copy); the body is its own, because a taker may keep it
 * (backends/rpc.c takes m->body and sets it NULL). */
void broker_message_free(broker_message *m)
{
	if (!m)
		return;
	free(m->body);
	free(m);
}

void broker_consume_release(broker_conn *c)
{
	broker_event ev;
	while (event_pop(c, &ev))
		broker_event_release(&ev);
	for (size_t i = 0; i < c->n_consumers; i++)
		free(c->consumers[i].queue);
	free(c->consumers);
	c->consumers = NULL;
	c->n_consumers = 0;
}

/* ---- deliveries --------------------------------------------------------- */

/* An optional short string property, or NULL when unset. */
static const amqp_bytes_t *prop(const amqp_basic_properties_t *p, amqp_flags_t flag,
				const amqp_bytes_t *b)
{
	return p->_flags & flag ? b : NULL;
}

static size_t bytes_size(const amqp_bytes_t *b)
{
	return b ? b->len + 1 : 0;
}

/* Copies b (if set) to *pos as a C string and returns the copy. */
static char *put_bytes(char **pos, const amqp_bytes_t *b)
{
	if (!b)
		return NULL;
	char *r = *pos;
	if (b->len)
		memcpy(r, b->bytes, b->len);
	r[b->len] = '\0';
	*pos += b->len + 1;
	return r;
}

/* The headers, packed into c->headers_scratch (reused: no allocation per
 * message once it has grown). Headers that cannot be converted (nested too
 * deep, a type we do not know) leave the message marked, not dropped: the
 * worker dead-letters it with that reason. */
static void pack_headers(broker_conn *c, const amqp_basic_properties_t *p, broker_message *m)
{
	c->headers_scratch.size = 0;
	if (!(p->_flags & AMQP_BASIC_HEADERS_FLAG))
		return;
	if (broker_headers_to_msgpack(&p->headers, &c->headers_scratch, NULL))
		m->headers_invalid = true;
}

/* Copies a delivery out of rabbitmq-c's memory: the message, its strings and
 * packed headers in one allocation, the body in another. */
static broker_message *message_copy(broker_conn *c, const amqp_basic_deliver_t *d,
				    const broker_content *msg)
{
	const amqp_basic_properties_t *p = msg->props;
	const amqp_bytes_t *ct = prop(p, AMQP_BASIC_CONTENT_TYPE_FLAG, &p->content_type),
			   *ce = prop(p, AMQP_BASIC_CONTENT_ENCODING_FLAG, &p->content_encoding),
			   *cid = prop(p, AMQP_BASIC_CORRELATION_ID_FLAG, &p->correlation_id),
			   *rt = prop(p, AMQP_BASIC_REPLY_TO_FLAG, &p->reply_to),
			   *ex = prop(p, AMQP_BASIC_EXPIRATION_FLAG, &p->expiration),
			   *mid = prop(p, AMQP_BASIC_MESSAGE_ID_FLAG, &p->message_id);
	broker_message head = {0};
	pack_headers(c, p, &head);
	size_t headers_len = c->headers_scratch.size;
	size_t size = sizeof head + bytes_size(&d->consumer_tag) + bytes_size(&d->exchange) +
		      bytes_size(&d->routing_key) + bytes_size(ct) + bytes_size(ce) +
		      bytes_size(cid) + bytes_size(rt) + bytes_size(ex) + bytes_size(mid) +
		      headers_len;
	broker_message *m = malloc(size);
	void *body = malloc(msg->body.len ? msg->body.len : 1);
	if (!m || !body) {
		free(m);
		free(body);
		return NULL;
	}
	*m = head;
	m->delivery_tag = d->delivery_tag;
	m->generation = c->generation;
	m->redelivered = d->redelivered;
	m->delivery_mode = p->_flags & AMQP_BASIC_DELIVERY_MODE_FLAG ? p->delivery_mode : 0;
	m->priority = p->_flags & AMQP_BASIC_PRIORITY_FLAG ? p->priority : BROKER_UNSET;
	char *pos = (char *)(m + 1);
	m->consumer_tag = put_bytes(&pos, &d->consumer_tag);
	m->exchange = put_bytes(&pos, &d->exchange);
	m->routing_key = put_bytes(&pos, &d->routing_key);
	m->content_type = put_bytes(&pos, ct);
	m->content_encoding = put_bytes(&pos, ce);
	m->correlation_id = put_bytes(&pos, cid);
	m->reply_to = put_bytes(&pos, rt);
	m->expiration = put_bytes(&pos, ex);
	m->message_id = put_bytes(&pos, mid);
	if (headers_len) {
		memcpy(pos, c->headers_scratch.data, headers_len);
		m->headers = pos;
		m->headers_len = headers_len;
	}
	m->body = body;
	m->body_len = msg->body.len;
	if (msg->body.len)
		memcpy(m->body, msg->body.bytes, msg->body.len);
	return m;
}

void broker_consume_on_deliver(broker_conn *c, const amqp_basic_deliver_t *d,
			       const broker_content *msg)
{
	broker_message *m = message_copy(c, d, msg);
	if (!m) {
		broker_conn_lost(c, "out of memory copying a delivery");
		return;
	}
	broker_event ev = {.type = BROKER_EVENT_MESSAGE, .msg = m};
	broker_event_push(c, &ev);
}

void broker_consume_on_cancel(broker_conn *c, const amqp_basic_cancel_t *cancel)
{
	broker_event ev = {.type = BROKER_EVENT_CANCELLED,
			   .consumer_tag = broker_bytes_dup(cancel->consumer_tag)};
	for (size_t i = 0; ev.consumer_tag && i < c->n_consumers; i++) {
		if (strcmp(c->consumers[i].tag, ev.consumer_tag))
			continue;
		c->consumers[i].cancelled = true;
		ev.queue = strdup(c->consumers[i].queue);
	}
	if (!cancel->nowait) {
		amqp_basic_cancel_ok_t ok = {.consumer_tag = cancel->consumer_tag};
		amqp_send_method(c->amqp, BROKER_CH_CONSUME, AMQP_BASIC_CANCEL_OK_METHOD, &ok);
	}
	broker_event_push(c, &ev);
}

/* ---- consumers ---------------------------------------------------------- */

static int start_consumer(broker_conn *c, const broker_consumer *k, warren_error *err)
{
	char what[200];
	snprintf(what, sizeof what, "basic.qos prefetch %u for queue '%s'", k->prefetch, k->queue);
	amqp_basic_qos(c->amqp, BROKER_CH_CONSUME, 0, k->prefetch, 0);
	int rc = broker_rpc_check(c, BROKER_CH_CONSUME, err, what);
	if (rc)
		return rc;
	snprintf(what, sizeof what, "consume queue '%s'", k->queue);
	amqp_basic_consume(c->amqp, BROKER_CH_CONSUME, amqp_cstring_bytes(k->queue),
			   amqp_cstring_bytes(k->tag), 0, k->no_ack, 0, amqp_empty_table);
	return broker_rpc_check(c, BROKER_CH_CONSUME, err, what);
}

int broker_consume_resume(broker_conn *c, warren_error *err)
{
	for (size_t i = 0; i < c->n_consumers; i++) {
		if (c->consumers[i].cancelled)
			continue;
		int rc = start_consumer(c, &c->consumers[i], err);
		if (rc)
			return rc;
	}
	return 0;
}

int broker_consume(broker_conn *c, const char *queue, uint16_t prefetch, bool no_ack,
		   char *tag_out, size_t tag_size, warren_error *err)
{
	if (!queue || !*queue)
		return warren_error_set(err, WARREN_EINVAL, "consume: a queue name is required");
	int rc = broker_conn_ensure(c, err);
	if (rc)
		return rc;
	broker_consumer *a = realloc(c->consumers, (c->n_consumers + 1) * sizeof *a);
	if (!a)
		return warren_error_set(err, WARREN_ENOMEM, "consume: out of memory");
	c->consumers = a;
	broker_consumer *k = &a[c->n_consumers];
	*k = (broker_consumer){.queue = strdup(queue), .prefetch = prefetch, .no_ack = no_ack};
	if (!k->queue)
		return warren_error_set(err, WARREN_ENOMEM, "consume: out of memory");
	snprintf(k->tag, sizeof k->tag, "warren.%ld.%u", (long)getpid(), ++c->consumer_seq);
	if ((rc = start_consumer(c, k, err))) {
		/* A refused consume (no such queue) closed the channel with every
		 * other consumer on it: bring those back without this one. */
		free(k->queue);
		warren_error repair = {0};
		if (c->amqp && broker_channels_repair(c, &repair))
			broker_conn_lost(c, repair.msg);
		return rc;
	}
	c->n_consumers++;
	if (tag_out && tag_size)
		snprintf(tag_out, tag_size, "%s", k->tag);
	return 0;
}

/* Remote control's cancel_consumer and the worker's short-lived consumers. */
int broker_cancel(broker_conn *c, const char *tag, warren_error *err)
{
	for (size_t i = 0; tag && i < c->n_consumers; i++) {
		broker_consumer *k = &c->consumers[i];
		if (strcmp(k->tag, tag) != 0 || k->cancelled)
			continue;
		k->cancelled = true; /* not resumed after a reconnect, whatever happens */
		if (!c->amqp)
			return 0;
		char what[200];
		snprintf(what, sizeof what, "cancel consumer of queue '%s'", k->queue);
		amqp_basic_cancel(c->amqp, BROKER_CH_CONSUME, amqp_cstring_bytes(k->tag));
		return broker_rpc_check(c, BROKER_CH_CONSUME, err, what);
	}
	return warren_error_set(err, WARREN_ENOTFOUND, "cancel: no consumer '%s'",
				tag ? tag : "(null)");
}

/* ---- receiving and settling --------------------------------------------- */

int broker_receive(broker_conn *c, int timeout_ms, broker_event *ev, warren_error *err)
{
	memset(ev, 0, sizeof *ev);
	int64_t deadline = broker_now_ms() + (timeout_ms > 0 ? timeout_ms : 0);
	for (;;) {
		if (event_pop(c, ev))
			return 0;
		int rc;
		if (!c->amqp || c->closed_channels) {
			warren_error e = {0};
			if ((rc = broker_conn_ensure(c, &e))) {
				broker_publish_fail_all(c, e.msg);
				return warren_error_set(err, rc, "%s", e.msg);
			}
			continue; /* a RECONNECTED event is queued */
		}
		int64_t left = deadline - broker_now_ms();
		rc = broker_conn_pump(c, left > 0 ? (int)left : 0, NULL);
		if (rc == WARREN_ETIMEOUT || (rc == 0 && !c->ev_head && left <= 0)) {
			if (event_pop(c, ev))
				return 0;
			return warren_error_set(err, WARREN_ETIMEOUT, "receive from '%s': nothing in %d ms",
						broker_conn_url(c), timeout_ms);
		}
		/* rc == WARREN_EBROKER: the connection was lost; the loop reconnects. */
	}
}

typedef enum { SETTLE_ACK, SETTLE_NACK, SETTLE_REJECT } settle_kind;

static int settle_delivery(broker_conn *c, const broker_message *m, settle_kind kind,
			   bool requeue, warren_error *err)
{
	static const char *const names[] = {"ack", "nack", "reject"};
	if (!c->amqp || m->generation != c->generation)
		return warren_error_set(err, WARREN_EBROKER,
					"%s of delivery %llu: the connection it came on is gone; "
					"the broker redelivers it", names[kind],
					(unsigned long long)m->delivery_tag);
	int st;
	switch (kind) {
	case SETTLE_ACK:
		st = amqp_basic_ack(c->amqp, BROKER_CH_CONSUME, m->delivery_tag, 0);
		break;
	case SETTLE_NACK:
		st = amqp_basic_nack(c->amqp, BROKER_CH_CONSUME, m->delivery_tag, 0, requeue);
		break;
	default:
		st = amqp_basic_reject(c->amqp, BROKER_CH_CONSUME, m->delivery_tag, requeue);
		break;
	}
	if (st == AMQP_STATUS_OK)
		return 0;
	char msg[WARREN_ERROR_MSG_MAX];
	snprintf(msg, sizeof msg, "%s of delivery %llu on '%s': %s", names[kind],
		 (unsigned long long)m->delivery_tag, broker_conn_url(c), amqp_error_string2(st));
	broker_conn_lost(c, msg);
	return warren_error_set(err, WARREN_EBROKER, "%s", msg);
}

int broker_ack(broker_conn *c, const broker_message *m, warren_error *err)
{
	return settle_delivery(c, m, SETTLE_ACK, false, err);
}

int broker_ack_tag(broker_conn *c, uint64_t generation, uint64_t delivery_tag, bool multiple,
		   warren_error *err)
{
	if (!c->amqp || generation != c->generation)
		return warren_error_set(err, WARREN_EBROKER,
					"ack of delivery %llu: the connection it came on is gone; "
					"the broker redelivers it", (unsigned long long)delivery_tag);
	int st = amqp_basic_ack(c->amqp, BROKER_CH_CONSUME, delivery_tag, multiple);
	if (st == AMQP_STATUS_OK)
		return 0;
	char msg[WARREN_ERROR_MSG_MAX];
	snprintf(msg, sizeof msg, "ack of delivery %llu%s on '%s': %s",
		 (unsigned long long)delivery_tag, multiple ? " (multiple)" : "",
		 broker_conn_url(c), amqp_error_string2(st));
	broker_conn_lost(c, msg);
	return warren_error_set(err, WARREN_EBROKER, "%s", msg);
}

int broker_nack(broker_conn *c, const broker_message *m, bool requeue, warren_error *err)
{
	return settle_delivery(c, m, SETTLE_NACK, requeue, err);
}

int broker_reject(broker_conn *c, const broker_message *m, bool requeue, warren_error *err)
{
	return settle_delivery(c, m, SETTLE_REJECT, requeue, err);
}
