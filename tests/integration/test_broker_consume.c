/* tests/integration/test_broker_consume.c - consuming from the real broker:
 * properties and headers copied out, ack, reject to a dead-letter exchange,
 * nack with requeue, a broker-side cancel, and a broker restart in the
 * middle of consuming (the node is stopped and started again on its port). */
#include <criterion/criterion.h>
#include <msgpack.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "broker_support.h"
#include "support.h"

static void declare(broker_conn *c, broker_queue *qs, size_t nq, broker_exchange *ex, size_t ne,
		    broker_binding *b, size_t nb)
{
	broker_topology t = {ex, ne, qs, nq, b, nb};
	warren_error err = {0};
	cr_assert_eq(broker_declare(c, &t, &err), 0, "%s", err.msg);
}

static void publish(broker_conn *c, const char *key, const char *body, const broker_props *p)
{
	warren_error err = {0};
	cr_assert_eq(broker_publish(c, "", key, p, body, strlen(body), 0, &err), 0, "%s", err.msg);
	cr_assert_eq(broker_publish_flush(c, 5000, &err), 0, "%s", err.msg);
}

static void consume(broker_conn *c, const char *q, uint16_t prefetch)
{
	warren_error err = {0};
	cr_assert_eq(broker_consume(c, q, prefetch, false, NULL, 0, &err), 0, "%s", err.msg);
}

static void expect_body(const broker_message *m, const char *body)
{
	cr_expect_eq(m->body_len, strlen(body));
	cr_expect_eq(memcmp(m->body, body, m->body_len), 0, "body '%.*s'", (int)m->body_len,
		     (char *)m->body);
}

static void ack(broker_conn *c, broker_message *m)
{
	warren_error err = {0};
	cr_assert_eq(broker_ack(c, m, &err), 0, "%s", err.msg);
	broker_message_free(m);
}

static broker_queue temp_queue(const char *name)
{
	broker_queue q;
	broker_queue_init(&q, name);
	q.durable = false;
	q.expires_ms = 60000;
	return q;
}

Test(integration_broker, consume_copies_properties_and_headers_then_acks)
{
	broker_conn *c = broker_test_connect();
	broker_queue q = temp_queue(broker_test_name(0, "props"));
	q.max_priority = 10;
	declare(c, &q, 1, NULL, 0, NULL, 0);

	msgpack_sbuffer sb;
	msgpack_packer pk;
	msgpack_sbuffer_init(&sb);
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	msgpack_pack_map(&pk, 2);
	msgpack_pack_str_with_body(&pk, "task", 4), msgpack_pack_str_with_body(&pk, "math.add", 8);
	msgpack_pack_str_with_body(&pk, "retries", 7), msgpack_pack_int(&pk, 3);
	broker_props p = {.content_type = "application/x-msgpack", .content_encoding = "binary",
			  .correlation_id = "id-1", .reply_to = "replies", .expiration = "60000",
			  .message_id = "m-1", .delivery_mode = 2, .priority = 7,
			  .headers = sb.data, .headers_len = sb.size};
	publish(c, q.name, "hello", &p);
	consume(c, q.name, 10);
	broker_message *m = broker_test_receive(c, 5000);
	expect_body(m, "hello");
	cr_expect_str_eq(m->content_type, "application/x-msgpack");
	cr_expect_str_eq(m->content_encoding, "binary");
	cr_expect_str_eq(m->correlation_id, "id-1");
	cr_expect_str_eq(m->reply_to, "replies");
	cr_expect_str_eq(m->expiration, "60000");
	cr_expect_str_eq(m->message_id, "m-1");
	cr_expect_eq(m->delivery_mode, 2);
	cr_expect_eq(m->priority, 7);
	cr_expect_str_eq(m->exchange, "");
	cr_expect_str_eq(m->routing_key, q.name);
	cr_expect(!m->redelivered);
	cr_expect_eq(m->headers_len, sb.size);
	cr_expect_eq(memcmp(m->headers, sb.data, sb.size), 0, "headers changed on the way");
	msgpack_sbuffer_destroy(&sb);
	ack(c, m);

	/* Nothing more, and the ack stuck: a fresh connection sees an empty queue. */
	broker_event ev;
	warren_error err = {0};
	cr_expect_eq(broker_receive(c, 200, &ev, &err), WARREN_ETIMEOUT);
	broker_conn_free(c);
	c = broker_test_connect();
	consume(c, q.name, 10);
	cr_expect_eq(broker_receive(c, 300, &ev, &err), WARREN_ETIMEOUT, "ack was lost");
	broker_conn_free(c);
}

Test(integration_broker, reject_goes_to_the_dead_letter_exchange)
{
	broker_conn *c = broker_test_connect();
	const char *dlx = broker_test_name(2, "dlx");
	broker_exchange ex = {.name = dlx, .type = BROKER_EXCHANGE_FANOUT, .auto_delete = true};
	broker_queue qs[2] = {temp_queue(broker_test_name(0, "work")),
			      temp_queue(broker_test_name(1, "dead"))};
	qs[0].dead_letter_exchange = dlx;
	broker_binding b = {.queue = qs[1].name, .exchange = dlx, .routing_key = ""};
	declare(c, qs, 2, &ex, 1, &b, 1);
	publish(c, qs[0].name, "bad task", NULL);
	consume(c, qs[0].name, 1);
	broker_message *m = broker_test_receive(c, 5000);
	warren_error err = {0};
	cr_assert_eq(broker_reject(c, m, false, &err), 0, "%s", err.msg);
	broker_message_free(m);
	consume(c, qs[1].name, 1);
	m = broker_test_receive(c, 5000);
	expect_body(m, "bad task");
	cr_expect_str_eq(m->exchange, dlx);
	/* RabbitMQ records the death in x-death, an array of tables: decoded here. */
	cr_expect_not_null(m->headers);
	msgpack_unpacked u;
	msgpack_unpacked_init(&u);
	cr_assert_eq(msgpack_unpack_next(&u, m->headers, m->headers_len, NULL), MSGPACK_UNPACK_SUCCESS);
	bool found = false;
	for (uint32_t i = 0; i < u.data.via.map.size; i++) {
		msgpack_object *k = &u.data.via.map.ptr[i].key;
		if (k->via.str.size == 7 && !memcmp(k->via.str.ptr, "x-death", 7))
			found = u.data.via.map.ptr[i].val.type == MSGPACK_OBJECT_ARRAY;
	}
	cr_expect(found, "no x-death array in the dead-lettered message");
	msgpack_unpacked_destroy(&u);
	ack(c, m);
	broker_conn_free(c);
}

Test(integration_broker, nack_with_requeue_redelivers_and_without_drops)
{
	broker_conn *c = broker_test_connect();
	broker_queue q = temp_queue(broker_test_name(0, "nack"));
	declare(c, &q, 1, NULL, 0, NULL, 0);
	publish(c, q.name, "again", NULL);
	consume(c, q.name, 1);
	broker_message *m = broker_test_receive(c, 5000);
	cr_expect(!m->redelivered);
	warren_error err = {0};
	cr_assert_eq(broker_nack(c, m, true, &err), 0, "%s", err.msg);
	broker_message_free(m);
	m = broker_test_receive(c, 5000);
	expect_body(m, "again");
	cr_expect(m->redelivered);
	cr_assert_eq(broker_nack(c, m, false, &err), 0, "%s", err.msg);
	broker_message_free(m);
	broker_event ev;
	cr_expect_eq(broker_receive(c, 300, &ev, &err), WARREN_ETIMEOUT, "dropped message came back");
	broker_conn_free(c);
}

/* Bodies over the negotiated frame size (128 KiB) arrive in several body
 * frames, which the adapter gathers; an empty body has no body frame. Both
 * come out whole, in order, between one-frame messages. */
Test(integration_broker, bodies_of_several_frames_and_none_arrive_whole)
{
	broker_conn *c = broker_test_connect();
	broker_queue q = temp_queue(broker_test_name(0, "frames"));
	declare(c, &q, 1, NULL, 0, NULL, 0);
	static const size_t sizes[] = {5, 300000, 0, 131072, 1000000, 7};
	enum { N = sizeof sizes / sizeof sizes[0] };
	char *bodies[N];
	warren_error err = {0};
	for (size_t i = 0; i < N; i++) {
		bodies[i] = malloc(sizes[i] + 1);
		cr_assert_not_null(bodies[i]);
		for (size_t k = 0; k < sizes[i]; k++)
			bodies[i][k] = (char)('a' + (k * 7 + i) % 26);
		cr_assert_eq(broker_publish(c, "", q.name, NULL, bodies[i], sizes[i], 0, &err), 0,
			     "%s", err.msg);
	}
	cr_assert_eq(broker_publish_flush(c, 10000, &err), 0, "%s", err.msg);
	consume(c, q.name, 10);
	for (size_t i = 0; i < N; i++) {
		broker_message *m = broker_test_receive(c, 5000);
		cr_assert_eq(m->body_len, sizes[i], "message %zu: %zu bytes", i, m->body_len);
		cr_expect(sizes[i] == 0 || memcmp(m->body, bodies[i], sizes[i]) == 0,
			  "message %zu: body differs", i);
		ack(c, m);
		free(bodies[i]);
	}
	broker_conn_free(c);
}

Test(integration_broker, prefetch_bounds_unacked_deliveries)
{
	broker_conn *c = broker_test_connect();
	broker_queue q = temp_queue(broker_test_name(0, "prefetch"));
	declare(c, &q, 1, NULL, 0, NULL, 0);
	for (int i = 0; i < 5; i++)
		publish(c, q.name, "p", NULL);
	consume(c, q.name, 2);
	broker_message *a = broker_test_receive(c, 5000), *b = broker_test_receive(c, 5000);
	broker_event ev;
	warren_error err = {0};
	cr_expect_eq(broker_receive(c, 300, &ev, &err), WARREN_ETIMEOUT, "a third beyond prefetch 2");
	ack(c, a);
	broker_message_free(broker_test_receive(c, 5000));
	broker_message_free(b);
	broker_conn_free(c);
}

Test(integration_broker, broker_cancel_is_an_event_and_old_deliveries_cannot_be_acked)
{
	broker_conn *c = broker_test_connect();
	broker_queue q = temp_queue(broker_test_name(0, "cancel"));
	declare(c, &q, 1, NULL, 0, NULL, 0);
	publish(c, q.name, "x", NULL);
	char tag[64];
	warren_error err = {0};
	cr_assert_eq(broker_consume(c, q.name, 5, false, tag, sizeof tag, &err), 0, "%s", err.msg);
	broker_message *m = broker_test_receive(c, 5000);
	cr_expect_str_eq(m->consumer_tag, tag);

	/* A delivery from a dropped connection cannot be acked: it is redelivered. */
	broker_conn_drop(c);
	cr_expect_eq(broker_ack(c, m, &err), WARREN_EBROKER);
	cr_expect(strstr(err.msg, "the connection it came on is gone"), "%s", err.msg);
	broker_message_free(m);
	broker_event ev;
	warren_error_clear(&err);
	cr_assert_eq(broker_receive(c, 5000, &ev, &err), 0, "%s", err.msg);
	cr_expect_eq(ev.type, BROKER_EVENT_RECONNECTED);
	cr_expect_str_eq(ev.reason, "dropped by the caller");
	broker_event_release(&ev);
	m = broker_test_receive(c, 5000);
	cr_expect(m->redelivered);
	ack(c, m);

	/* Deleting the queue from another connection cancels our consumer. */
	broker_test_delete_queue(q.name);
	cr_assert_eq(broker_receive(c, 5000, &ev, &err), 0, "%s", err.msg);
	cr_expect_eq(ev.type, BROKER_EVENT_CANCELLED);
	cr_expect_str_eq(ev.consumer_tag, tag);
	cr_expect_str_eq(ev.queue, q.name);
	broker_event_release(&ev);
	/* A cancelled consumer is not resumed by a reconnect. */
	broker_conn_drop(c);
	cr_assert_eq(broker_receive(c, 5000, &ev, &err), 0, "%s", err.msg);
	cr_expect_eq(ev.type, BROKER_EVENT_RECONNECTED);
	broker_event_release(&ev);
	broker_conn_free(c);
}

/* The restart test gets a node of its own, so stopping it cannot disturb the
 * tests that Criterion runs in parallel against the shared one. */
static char own_node[128];

static void node_name(void)
{
	const char *name = getenv("WARREN_SERVICES_NAME");
	snprintf(own_node, sizeof own_node, "%s-restart", name && *name ? name : "test");
}

/* Runs rabbitmq-local VERB for our node; its stdout (the URL) into out. */
static int node_ctl(const char *verb, int port, char *out, size_t cap)
{
	char cmd[1024];
	int n = snprintf(cmd, sizeof cmd, "%s/scripts/rabbitmq-local %s --name %s", WARREN_SOURCE_DIR,
			 verb, own_node);
	if (port)
		snprintf(cmd + n, sizeof cmd - (size_t)n, " --port %d", port);
	return support_run(cmd, out, cap);
}

static void stop_own_node(void)
{
	node_ctl("stop", 0, NULL, 0);
}

Test(integration_broker, broker_restart_mid_consume_reconnects_and_resumes, .fini = stop_own_node)
{
	char url[256], host[128];
	int port;
	node_name();
	cr_assert_eq(node_ctl("start", 0, url, sizeof url), 0, "cannot start node %s", own_node);
	url[strcspn(url, "\n")] = '\0';
	cr_assert_eq(support_url_host_port(url, host, sizeof host, &port), 0, "url '%s'", url);

	broker_conn_opts o;
	broker_test_opts(&o);
	o.urls = url;
	o.reconnect_timeout_ms = 40000;
	o.backoff_max_ms = 500;
	o.heartbeat = 2;
	broker_conn *c;
	warren_error err = {0};
	cr_assert_eq(broker_conn_new(&o, &c, &err), 0, "%s", err.msg);
	broker_queue q;
	broker_queue_init(&q, broker_test_name(0, "restart"));
	declare(c, &q, 1, NULL, 0, NULL, 0);
	publish(c, q.name, "before", NULL);
	consume(c, q.name, 10);
	ack(c, broker_test_receive(c, 5000));

	/* Down, then up again on the same port while we wait in receive. The
	 * node comes back empty (rabbitmq-local starts from a clean directory):
	 * the queue exists again only because the reconnect re-declares it. */
	cr_assert_eq(node_ctl("stop", 0, NULL, 0), 0);
	char cmd[1024];
	snprintf(cmd, sizeof cmd, "%s/scripts/rabbitmq-local start --name %s --port %d >/dev/null 2>&1 &",
		 WARREN_SOURCE_DIR, own_node, port);
	cr_assert_eq(system(cmd), 0);
	broker_event ev;
	cr_assert_eq(broker_receive(c, 40000, &ev, &err), 0, "%s", err.msg);
	cr_expect_eq(ev.type, BROKER_EVENT_RECONNECTED, "event %d", ev.type);
	cr_log_info("reconnected after: %s", ev.reason);
	broker_event_release(&ev);

	publish(c, q.name, "after", NULL);
	broker_message *m = broker_test_receive(c, 5000);
	expect_body(m, "after");
	ack(c, m);
	broker_conn_free(c);
}
