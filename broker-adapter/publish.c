/* broker-adapter/publish.c - publishing with publisher confirms, pipelined.
 *
 * The publish channel is in confirm mode. Messages go out without waiting;
 * each is kept (one allocation: strings, headers, body) in a ring in publish
 * order until the broker acks or nacks its delivery tag, so that
 *  - the caller learns every message's outcome through the outcome callback,
 *  - at most publish_window messages are unconfirmed (broker_publish waits
 *    for room, which also bounds unread acks so neither side's socket
 *    buffer can fill and deadlock us),
 *  - after a reconnect every unconfirmed message is published again (the
 *    consumer may see a duplicate: delivery is at-least-once).
 * Tags from ring[head] onwards are contiguous, so a tag maps to a slot by
 * subtraction; acks may settle slots out of order, and head advances over the
 * settled prefix.
 *
 * mandatory is always set. An unroutable message comes back as basic.return
 * (no delivery tag) just before its ack; we match it to the oldest unsettled
 * message with the same exchange, routing key and body, and that ack then
 * reports BROKER_RETURNED.
 */
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

/* Drain acks without blocking at most every this many publishes. */
#define DRAIN_EVERY 64

/* ---- pending messages --------------------------------------------------- */

static size_t str_size(const char *s) { return s ? strlen(s) + 1 : 0; }

/* Copies s (if any) to *pos and returns the copy. */
static const char *put_str(char **pos, const char *s)
{
	if (!s)
		return NULL;
	size_t n = strlen(s) + 1;
	memcpy(*pos, s, n);
	char *r = *pos;
	*pos += n;
	return r;
}

static const void *put_mem(char **pos, const void *p, size_t n)
{
	if (!n)
		return NULL;
	memcpy(*pos, p, n);
	char *r = *pos;
	*pos += n;
	return r;
}

static broker_pending *pending_new(const char *exchange, const char *key, const broker_props *p,
				   const void *body, size_t len, uint64_t cookie)
{
	size_t size = sizeof(broker_pending) + str_size(exchange) + str_size(key) +
		      str_size(p->content_type) + str_size(p->content_encoding) +
		      str_size(p->correlation_id) + str_size(p->reply_to) +
		      str_size(p->expiration) + str_size(p->message_id) + p->headers_len + len;
	broker_pending *m = malloc(size);
	if (!m)
		return NULL;
	char *pos = (char *)(m + 1);
	*m = (broker_pending){.cookie = cookie, .delivery_mode = p->delivery_mode,
			     .priority = p->priority, .headers_len = p->headers ? p->headers_len : 0,
			     .body_len = len};
	m->exchange = put_str(&pos, exchange);
	m->routing_key = put_str(&pos, key);
	m->content_type = put_str(&pos, p->content_type);
	m->content_encoding = put_str(&pos, p->content_encoding);
	m->correlation_id = put_str(&pos, p->correlation_id);
	m->reply_to = put_str(&pos, p->reply_to);
	m->expiration = put_str(&pos, p->expiration);
	m->message_id = put_str(&pos, p->message_id);
	m->headers = p->headers ? put_mem(&pos, p->headers, p->headers_len) : NULL;
	m->body = put_mem(&pos, body, len);
	return m;
}

static void pending_free(broker_pending *m)
{
	if (m)
		free(m->reason);
	free(m);
}

static broker_pending *slot(broker_conn *c, size_t k)
{
	return c->ring[(c->head + k) % c->cap];
}

static void settle(broker_conn *c, broker_pending *m, broker_outcome o, const char *reason)
{
	if (m->settled)
		return;
	m->settled = true;
	if (o == BROKER_CONFIRMED && m->returned) {
		o = BROKER_RETURNED;
		reason = m->reason;
	}
	if (c->outcome_fn)
		c->outcome_fn(c->outcome_arg, m->cookie, o, o == BROKER_CONFIRMED ? NULL : reason);
}

static void advance(broker_conn *c)
{
	while (c->count && slot(c, 0)->settled) {
		pending_free(c->ring[c->head]);
		c->ring[c->head] = NULL;
		c->head = (c->head + 1) % c->cap;
		c->count--;
	}
}

void broker_set_outcome_fn(broker_conn *c, broker_outcome_fn fn, void *arg)
{
	c->outcome_fn = fn;
	c->outcome_arg = arg;
}

size_t broker_publish_unconfirmed(const broker_conn *c)
{
	return c->count;
}

/* ---- events from the broker --------------------------------------------- */

void broker_publish_on_ack(broker_conn *c, uint64_t tag, bool multiple, broker_outcome o)
{
	if (!c->count)
		return;
	uint64_t first = slot(c, 0)->tag;
	if (tag < first || tag >= first + c->count)
		return; /* settled already, or not ours */
	char reason[WARREN_ERROR_MSG_MAX];
	for (size_t k = multiple ? 0 : (size_t)(tag - first); k <= (size_t)(tag - first); k++) {
		broker_pending *m = slot(c, k);
		if (o == BROKER_NACKED)
			snprintf(reason, sizeof reason,
				 "nacked by the broker: exchange '%s' key '%s' did not take it",
				 m->exchange, m->routing_key);
		settle(c, m, o, reason);
	}
	advance(c);
}

static bool bytes_eq(amqp_bytes_t b, const void *p, size_t n)
{
	return b.len == n && (n == 0 || !memcmp(b.bytes, p, n));
}

void broker_publish_on_return(broker_conn *c, const amqp_basic_return_t *r,
			      const broker_content *msg)
{
	for (size_t k = 0; k < c->count; k++) {
		broker_pending *m = slot(c, k);
		if (m->settled || m->returned || !bytes_eq(r->exchange, m->exchange, strlen(m->exchange)) ||
		    !bytes_eq(r->routing_key, m->routing_key, strlen(m->routing_key)) ||
		    !bytes_eq(msg->body, m->body, m->body_len))
			continue;
		m->returned = true;
		char buf[WARREN_ERROR_MSG_MAX];
		snprintf(buf, sizeof buf, "unroutable: no queue bound for exchange '%s' key '%s' (%u %.*s)",
			 m->exchange, m->routing_key, r->reply_code, (int)r->reply_text.len,
			 (char *)r->reply_text.bytes);
		m->reason = strdup(buf);
		return;
	}
}

void broker_publish_on_channel_close(broker_conn *c, const char *text)
{
	/* "404 NOT_FOUND - no exchange 'x' in vhost '/'" names the culprit. */
	const char *p = strstr(text, "no exchange '");
	size_t n = 0;
	if (p) {
		p += strlen("no exchange '");
		n = strcspn(p, "'");
	}
	char reason[WARREN_ERROR_MSG_MAX];
	bool any = false;
	for (size_t k = 0; k < c->count; k++) {
		broker_pending *m = slot(c, k);
		if (m->settled || !p || strlen(m->exchange) != n || strncmp(m->exchange, p, n))
			continue;
		snprintf(reason, sizeof reason, "publish to exchange '%s': %s", m->exchange, text);
		settle(c, m, BROKER_NACKED, reason);
		any = true;
	}
	/* When we cannot tell which message the broker refused, republishing them
	 * all could close the channel again forever: refuse them all instead. */
	for (size_t k = 0; !any && k < c->count; k++) {
		snprintf(reason, sizeof reason, "publish channel closed by the broker: %s", text);
		settle(c, slot(c, k), BROKER_NACKED, reason);
	}
	advance(c);
}

void broker_publish_fail_all(broker_conn *c, const char *why)
{
	for (size_t k = 0; k < c->count; k++)
		settle(c, slot(c, k), BROKER_UNKNOWN, why);
	advance(c);
}

void broker_publish_release(broker_conn *c)
{
	for (size_t k = 0; c->ring && k < c->count; k++)
		pending_free(slot(c, k));
	free(c->ring);
	c->ring = NULL;
	c->count = 0;
}

/* ---- sending ------------------------------------------------------------ */

int broker_publish_setup(broker_conn *c, warren_error *err)
{
	amqp_confirm_select(c->amqp, BROKER_CH_PUBLISH);
	int rc = broker_rpc_check(c, BROKER_CH_PUBLISH, err, "confirm.select");
	c->next_tag = 1;
	return rc;
}

static void set_str(amqp_basic_properties_t *p, amqp_flags_t flag, amqp_bytes_t *field,
		    const char *s)
{
	if (!s)
		return;
	p->_flags |= flag;
	*field = amqp_cstring_bytes(s);
}

/* Builds m's properties; the header table goes into c->pool. */
static int build_props(broker_conn *c, const broker_pending *m, amqp_basic_properties_t *p,
		       warren_error *err)
{
	memset(p, 0, sizeof *p);
	set_str(p, AMQP_BASIC_CONTENT_TYPE_FLAG, &p->content_type, m->content_type);
	set_str(p, AMQP_BASIC_CONTENT_ENCODING_FLAG, &p->content_encoding, m->content_encoding);
	set_str(p, AMQP_BASIC_CORRELATION_ID_FLAG, &p->correlation_id, m->correlation_id);
	set_str(p, AMQP_BASIC_REPLY_TO_FLAG, &p->reply_to, m->reply_to);
	set_str(p, AMQP_BASIC_EXPIRATION_FLAG, &p->expiration, m->expiration);
	set_str(p, AMQP_BASIC_MESSAGE_ID_FLAG, &p->message_id, m->message_id);
	if (m->delivery_mode) {
		p->_flags |= AMQP_BASIC_DELIVERY_MODE_FLAG;
		p->delivery_mode = (uint8_t)m->delivery_mode;
	}
	if (m->priority != BROKER_UNSET) {
		p->_flags |= AMQP_BASIC_PRIORITY_FLAG;
		p->priority = (uint8_t)m->priority;
	}
	if (m->headers) {
		p->_flags |= AMQP_BASIC_HEADERS_FLAG;
		return broker_headers_from_packed(m->headers, m->headers_len, &c->pool, &p->headers,
						  err);
	}
	return 0;
}

/* Writes m's frames (when connected). A socket failure marks the connection
 * lost and leaves m pending: the reconnect sends it again. Fails only when
 * m's headers do not convert. */
static int send_pending(broker_conn *c, broker_pending *m, warren_error *err)
{
	amqp_basic_properties_t props;
	int rc = build_props(c, m, &props, err);
	if (!rc && c->amqp) {
		m->tag = c->next_tag++;
		int st = amqp_basic_publish(c->amqp, BROKER_CH_PUBLISH, amqp_cstring_bytes(m->exchange),
					    amqp_cstring_bytes(m->routing_key), 1, 0, &props,
					    (amqp_bytes_t){.len = m->body_len, .bytes = (void *)m->body});
		if (st != AMQP_STATUS_OK) {
			char msg[WARREN_ERROR_MSG_MAX];
			snprintf(msg, sizeof msg, "connection to '%s' lost while publishing: %s",
				 broker_conn_url(c), amqp_error_string2(st));
			broker_conn_lost(c, msg);
		}
	}
	recycle_amqp_pool(&c->pool);
	return rc;
}

int broker_publish_resend(broker_conn *c, warren_error *err)
{
	/* Compact: drop settled holes so the tags we now assign are contiguous. */
	size_t n = 0;
	for (size_t k = 0; k < c->count; k++) {
		broker_pending *m = slot(c, k);
		c->ring[(c->head + k) % c->cap] = NULL;
		if (m->settled)
			pending_free(m);
		else
			c->ring[(c->head + n++) % c->cap] = m;
	}
	c->count = n;
	for (size_t k = 0; k < n && c->amqp; k++) {
		int rc = send_pending(c, slot(c, k), err);
		if (rc)
			return rc;
	}
	if (!c->amqp)
		return warren_error_set(err, WARREN_EBROKER, "%s", c->lost_reason);
	return 0;
}

/* Restores the connection; when that fails for good, every pending message's
 * outcome becomes BROKER_UNKNOWN. */
static int reconnect_or_fail(broker_conn *c, warren_error *err)
{
	warren_error e = {0};
	int rc = broker_conn_ensure(c, &e);
	if (rc) {
		broker_publish_fail_all(c, e.msg);
		return warren_error_set(err, rc, "%s", e.msg);
	}
	return 0;
}

/* Waits until fewer than `limit` messages are unconfirmed. */
static int wait_below(broker_conn *c, size_t limit, int timeout_ms, warren_error *err)
{
	int64_t deadline = broker_now_ms() + timeout_ms;
	while (c->count >= limit) {
		int rc;
		if (!c->amqp || c->closed_channels) {
			if ((rc = reconnect_or_fail(c, err)))
				return rc;
			continue;
		}
		int64_t left = deadline - broker_now_ms();
		if (left <= 0)
			return warren_error_set(err, WARREN_ETIMEOUT,
						"publish to '%s': %zu messages still unconfirmed after %d ms",
						broker_conn_url(c), c->count, timeout_ms);
		warren_error e = {0};
		rc = broker_conn_pump(c, (int)(left < 1000 ? left : 1000), &e);
		if (rc && rc != WARREN_ETIMEOUT && c->amqp)
			return warren_error_set(err, rc, "%s", e.msg);
	}
	return 0;
}

int broker_publish(broker_conn *c, const char *exchange, const char *routing_key,
		   const broker_props *props, const void *body, size_t len, uint64_t cookie,
		   warren_error *err)
{
	static const broker_props none = {.priority = BROKER_UNSET};
	if (!props)
		props = &none;
	if (!exchange || !routing_key)
		return warren_error_set(err, WARREN_EINVAL, "publish: exchange and routing key are required");
	if (props->priority != BROKER_UNSET && (props->priority < 0 || props->priority > 255))
		return warren_error_set(err, WARREN_EINVAL, "publish: priority %d is not in 0..255",
					props->priority);
	int rc;
	if (!c->amqp || c->closed_channels) {
		if ((rc = reconnect_or_fail(c, err)))
			return rc;
	}
	if ((rc = wait_below(c, c->cap, c->opts.confirm_timeout_ms, err)))
		return rc;
	broker_pending *m = pending_new(exchange, routing_key, props, body, len, cookie);
	if (!m)
		return warren_error_set(err, WARREN_ENOMEM, "publish: out of memory");
	c->ring[(c->head + c->count) % c->cap] = m;
	c->count++;
	if ((rc = send_pending(c, m, err))) {
		/* Headers that do not convert: never sent, not ours to track. */
		c->count--;
		c->ring[(c->head + c->count) % c->cap] = NULL;
		pending_free(m);
		return rc;
	}
	/* Read acks now and then so the window keeps moving without a wait. */
	if (c->amqp && (m->tag % DRAIN_EVERY == 0 || amqp_data_in_buffer(c->amqp)))
		broker_conn_pump(c, 0, NULL);
	return 0;
}

int broker_publish_flush(broker_conn *c, int timeout_ms, warren_error *err)
{
	return wait_below(c, 1, timeout_ms, err);
}
