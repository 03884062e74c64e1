/* producer/control.c - the client side of Celery's remote control (kombu's
 * Mailbox._broadcast and _collect, Celery's app/control.py), on the client's
 * broker connection: declare the `celery.pidbox` fanout exchange and the
 * `reply.celery.pidbox` direct exchange, consume the reply queue
 * "<oid>.reply.celery.pidbox" bound with the client's oid (both as kombu
 * declares them), publish the request with a fresh ticket, and collect the
 * replies carrying that ticket until the timeout, or until every named
 * destination answered. Node replies are merged by name, later ones winning
 * (Celery's flatten_reply).
 *
 * Library-internal (producer.h); used by `warren inspect` and `warren
 * control`. While a call runs, deliveries to other consumers of the
 * connection (the rpc backend's) are dropped, so a call is not made with
 * results in flight. */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "producer.h"
#include "schemas/schemas.h"

#define CONTROL_COOKIE (UINT64_C(1) << 60) /* unwaited publishes, as the worker's */

static double wall_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int64_t mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void producer_control_result_release(producer_control_result *r)
{
	for (size_t i = 0; r && i < r->n; i++) {
		free(r->nodes[i].nodename);
		free(r->nodes[i].json);
	}
	if (r) {
		free(r->nodes);
		*r = (producer_control_result){0};
	}
}

static int declare(warren_client *c, bool want_reply, char *tag, size_t tag_cap,
		   warren_error *err)
{
	char qname[128];
	int rc = schema_control_reply_queue_name(c->oid, qname, sizeof qname, err);
	if (rc)
		return rc;
	broker_exchange xs[2] = {
		{.name = SCHEMA_CONTROL_EXCHANGE, .type = BROKER_EXCHANGE_FANOUT},
		{.name = SCHEMA_CONTROL_REPLY_EXCHANGE, .type = BROKER_EXCHANGE_DIRECT},
	};
	broker_queue q;
	broker_queue_init(&q, qname);
	q.durable = false;
	q.auto_delete = true;
	q.expires_ms = SCHEMA_CONTROL_QUEUE_EXPIRES_MS;
	q.message_ttl_ms = SCHEMA_CONTROL_QUEUE_TTL_MS;
	broker_binding b = {qname, SCHEMA_CONTROL_REPLY_EXCHANGE, c->oid};
	broker_topology t = {xs, 2, &q, want_reply, &b, want_reply};
	rc = broker_declare(c->conn, &t, err);
	if (!rc && want_reply)
		rc = broker_consume(c->conn, qname, 0, true, tag, tag_cap, err);
	return rc;
}

static int publish(warren_client *c, const producer_control_call *call, const char *ticket,
		   warren_error *err)
{
	msgpack_sbuffer headers, body;
	msgpack_sbuffer_init(&headers);
	msgpack_sbuffer_init(&body);
	schema_control_request_spec spec = {
		.method = call->method,
		.arguments_mp = call->arguments_mp, .arguments_len = call->arguments_len,
		.destination = call->destination, .n_destination = call->n_destination,
		.ticket = call->reply ? ticket : NULL,
		.reply_routing_key = call->reply ? c->oid : NULL,
		.clock = 1,
		.expires = call->timeout > 0 ? wall_now() + call->timeout : 0,
	};
	int rc = schema_control_request_encode(&spec, SCHEMA_CONTROL_MSGPACK, &headers, &body, err);
	broker_props p = {.content_type = schema_control_content_type(SCHEMA_CONTROL_MSGPACK),
			  .content_encoding = schema_control_content_encoding(SCHEMA_CONTROL_MSGPACK),
			  .delivery_mode = SCHEMA_CONTROL_REQUEST_DELIVERY_MODE,
			  .priority = BROKER_UNSET, .headers = headers.data,
			  .headers_len = headers.size};
	if (!rc)
		rc = broker_publish(c->conn, SCHEMA_CONTROL_EXCHANGE, "", &p, body.data, body.size,
				    CONTROL_COOKIE, err);
	if (!rc) /* a cast has nothing else to wait for: make sure it left */
		rc = broker_publish_flush(c->conn, 5000, err);
	msgpack_sbuffer_destroy(&headers);
	msgpack_sbuffer_destroy(&body);
	return rc;
}

/* Adds or replaces a node's answer (later wins, as flatten_reply). */
static int merge_node(producer_control_result *r, const schema_control_node_reply *n)
{
	char *json = producer_object_to_json(&n->value);
	if (!json)
		return WARREN_ENOMEM;
	for (size_t i = 0; i < r->n; i++)
		if (!strcmp(r->nodes[i].nodename, n->nodename)) {
			free(r->nodes[i].json);
			r->nodes[i].json = json;
			r->nodes[i].is_error = n->is_error;
			return 0;
		}
	producer_control_node *a = realloc(r->nodes, (r->n + 1) * sizeof *a);
	char *name = strdup(n->nodename);
	if (!a || !name) {
		free(json);
		free(name);
		if (a)
			r->nodes = a;
		return WARREN_ENOMEM;
	}
	r->nodes = a;
	r->nodes[r->n++] = (producer_control_node){name, json, n->is_error};
	return 0;
}

static bool all_replied(const producer_control_call *call, const producer_control_result *r)
{
	if (!call->n_destination)
		return false; /* a broadcast: nobody knows how many will answer */
	for (size_t i = 0; i < call->n_destination; i++) {
		bool found = false;
		for (size_t k = 0; k < r->n && !found; k++)
			found = !strcmp(r->nodes[k].nodename, call->destination[i]);
		if (!found)
			return false;
	}
	return true;
}

static int on_reply(const broker_message *m, const char *ticket, producer_control_result *out)
{
	schema_control_reply *r = NULL;
	if (schema_control_reply_decode(m->content_type, m->headers, m->headers_len, m->body,
					m->body_len, NULL, &r, NULL))
		return 0; /* not ours to judge: kombu drops undecodable replies too */
	int rc = 0;
	if (r->ticket && !strcmp(r->ticket, ticket))
		for (size_t i = 0; i < r->n_nodes && !rc; i++)
			rc = merge_node(out, &r->nodes[i]);
	schema_control_reply_free(r);
	return rc;
}

static int collect(warren_client *c, const producer_control_call *call, const char *tag,
		   const char *ticket, producer_control_result *out, warren_error *err)
{
	int64_t until = mono_ms() + (int64_t)(call->timeout * 1000);
	for (int64_t now; (now = mono_ms()) < until && !all_replied(call, out);) {
		broker_event ev = {0};
		int rc = broker_receive(c->conn, (int)(until - now), &ev, err);
		if (rc == WARREN_ETIMEOUT)
			break;
		if (rc)
			return rc;
		if (ev.type == BROKER_EVENT_MESSAGE && ev.msg->consumer_tag &&
		    !strcmp(ev.msg->consumer_tag, tag))
			rc = on_reply(ev.msg, ticket, out);
		broker_event_release(&ev);
		if (rc)
			return warren_error_set(err, rc, "control: out of memory");
	}
	return 0;
}

int producer_control(warren_client *c, const producer_control_call *call,
		     producer_control_result *out, warren_error *err)
{
	*out = (producer_control_result){0};
	char ticket[37], tag[128] = "";
	int rc = producer_broker(c, err);
	if (!rc)
		rc = schema_uuid4(ticket, err);
	if (!rc)
		rc = declare(c, call->reply, tag, sizeof tag, err);
	if (!rc)
		rc = publish(c, call, ticket, err);
	if (!rc && call->reply)
		rc = collect(c, call, tag, ticket, out, err);
	if (tag[0])
		broker_cancel(c->conn, tag, NULL);
	if (rc)
		producer_control_result_release(out);
	return rc;
}
