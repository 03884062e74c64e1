/* tests/integration/test_broker_delay.c - delayed delivery through the TTL
 * cascade against the real broker: messages arrive no earlier than due and
 * within 1.5 s after, with headers and body intact and their original
 * address; long delays park in level 28; parked messages need no consumer
 * and survive a reconnect; a re-parked message (a retry, carrying x-death)
 * is not dropped as a dead-letter cycle; a missing destination is an error
 * at once. Delays run concurrently inside each test to keep it short. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "broker-adapter/internal.h"
#include "broker_support.h"
#include "support.h"

#define LATE_MAX_S 1.5

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static broker_conn *connect_with(broker_test_outcomes *r)
{
	broker_conn *c = broker_test_connect();
	broker_test_outcomes_init(r);
	broker_set_outcome_fn(c, broker_test_record, r);
	return c;
}

static void declare_queue(broker_conn *c, const char *name)
{
	broker_queue q;
	broker_queue_init(&q, name);
	q.durable = false;
	q.expires_ms = 60000; /* gone a minute after the test */
	broker_topology t = {.queues = &q, .n_queues = 1};
	warren_error err = {0};
	cr_assert_eq(broker_declare(c, &t, &err), 0, "%s", err.msg);
}

/* The cascade's last-hop queue for a destination, so the test can delete it. */
static const char *to_queue(const char *exchange, const char *routing_key)
{
	static char name[300];
	char key[256];
	warren_error err = {0};
	cr_assert_eq(broker_delay_key(1, exchange, routing_key, key, sizeof key, &err), 0, "%s",
		     err.msg);
	snprintf(name, sizeof name, "warren.delay.to.%s", key + 2 * BROKER_DELAY_LEVELS);
	return name;
}

/* Headers {"id": id, "task": "test.echo", "n": n}, packed into sb. */
static void pack_headers(msgpack_sbuffer *sb, const char *id, int n)
{
	msgpack_packer pk;
	msgpack_sbuffer_init(sb);
	msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
	msgpack_pack_map(&pk, 3);
	msgpack_pack_str_with_body(&pk, "id", 2);
	msgpack_pack_str_with_body(&pk, id, strlen(id));
	msgpack_pack_str_with_body(&pk, "task", 4);
	msgpack_pack_str_with_body(&pk, "test.echo", 9);
	msgpack_pack_str_with_body(&pk, "n", 1);
	msgpack_pack_int(&pk, n);
}

/* The value of header `key` in m (type checked by the caller), or NULL; it
 * lives in *u until msgpack_unpacked_destroy. */
static const msgpack_object *header(const broker_message *m, const char *key, msgpack_unpacked *u)
{
	msgpack_unpacked_init(u);
	cr_assert_not_null(m->headers, "message without headers");
	cr_assert_eq(msgpack_unpack_next(u, m->headers, m->headers_len, NULL),
		     MSGPACK_UNPACK_SUCCESS);
	const msgpack_object_map *map = &u->data.via.map;
	for (uint32_t i = 0; i < map->size; i++) {
		const msgpack_object *k = &map->ptr[i].key;
		if (k->type == MSGPACK_OBJECT_STR && k->via.str.size == strlen(key) &&
		    !memcmp(k->via.str.ptr, key, k->via.str.size))
			return &map->ptr[i].val;
	}
	return NULL;
}

static int header_n(const broker_message *m)
{
	msgpack_unpacked u;
	const msgpack_object *v = header(m, "n", &u);
	cr_assert(v && v->type == MSGPACK_OBJECT_POSITIVE_INTEGER, "header 'n' missing");
	int n = (int)v->via.u64;
	msgpack_unpacked_destroy(&u);
	return n;
}

static void expect_header_str(const broker_message *m, const char *key, const char *want)
{
	msgpack_unpacked u;
	const msgpack_object *v = header(m, key, &u);
	cr_expect(v && v->type == MSGPACK_OBJECT_STR && v->via.str.size == strlen(want) &&
			  !memcmp(v->via.str.ptr, want, strlen(want)),
		  "header '%s' is not '%s'", key, want);
	msgpack_unpacked_destroy(&u);
}

static bool has_header(const broker_message *m, const char *key)
{
	msgpack_unpacked u;
	bool found = header(m, key, &u) != NULL;
	msgpack_unpacked_destroy(&u);
	return found;
}

static void publish_delayed(broker_conn *c, const char *x, const char *rk, int64_t delay_ms,
			    const char *expiration, int n)
{
	char id[64], body[64];
	snprintf(id, sizeof id, "task-%d", n);
	snprintf(body, sizeof body, "body of task %d", n);
	msgpack_sbuffer sb;
	pack_headers(&sb, id, n);
	broker_props p = {.content_type = "application/x-msgpack", .content_encoding = "binary",
			  .correlation_id = id, .expiration = expiration, .delivery_mode = 2,
			  .priority = 3, .headers = sb.data, .headers_len = sb.size};
	warren_error err = {0};
	cr_assert_eq(broker_publish_delayed(c, x, rk, delay_ms, &p, body, strlen(body), (uint64_t)n,
					    &err), 0, "delay %lld ms: %s", (long long)delay_ms,
		     err.msg);
	msgpack_sbuffer_destroy(&sb);
}

/* Everything but the timing: the message is the one sent, to the address
 * it was sent to, with its own headers and properties. */
static void expect_intact(const broker_message *m, const char *x, const char *rk, int n)
{
	char id[64], body[64];
	snprintf(id, sizeof id, "task-%d", n);
	snprintf(body, sizeof body, "body of task %d", n);
	cr_expect_eq(m->body_len, strlen(body));
	cr_expect(m->body_len == strlen(body) && !memcmp(m->body, body, m->body_len), "body");
	expect_header_str(m, "id", id);
	expect_header_str(m, "task", "test.echo");
	cr_expect_str_eq(m->exchange, x, "delivered as if published to its exchange");
	cr_expect_str_eq(m->routing_key, rk, "delivered with its own routing key");
	cr_expect_str_eq(m->content_type, "application/x-msgpack");
	cr_expect_str_eq(m->correlation_id, id);
	cr_expect_eq(m->delivery_mode, 2);
	cr_expect_eq(m->priority, 3);
}

static void flush_confirmed(broker_conn *c, broker_test_outcomes *r, size_t n)
{
	warren_error err = {0};
	cr_assert_eq(broker_publish_flush(c, 10000, &err), 0, "%s", err.msg);
	cr_assert_eq(r->n[BROKER_CONFIRMED], n, "confirmed %zu of %zu: %s",
		     r->n[BROKER_CONFIRMED], n, r->last_reason);
}

Test(integration_broker_delay, arrives_after_due_not_before, .timeout = 30)
{
	static broker_test_outcomes r;
	broker_conn *c = connect_with(&r);
	const char *q = broker_test_name(0, "delay");
	declare_queue(c, q);
	/* 1500 ms rounds up to 2 s. The 5 s one carries an expiration of 1 s,
	 * which would let it out of its TTL queue after 1 s if it were kept. */
	static const int64_t delays[] = {0, 1000, 1500, 2000, 3000, 5000};
	enum { N = sizeof delays / sizeof *delays };
	double sent[N];
	for (int i = 0; i < N; i++) {
		sent[i] = now_s();
		publish_delayed(c, "", q, delays[i], delays[i] == 5000 ? "1000" : NULL, i);
	}
	flush_confirmed(c, &r, N);
	warren_error err = {0};
	cr_assert_eq(broker_consume(c, q, 10, false, NULL, 0, &err), 0, "%s", err.msg);
	bool seen[N] = {0};
	for (int got = 0; got < N; got++) {
		broker_message *m = broker_test_receive(c, 8000);
		double at = now_s();
		int n = header_n(m);
		cr_assert(n >= 0 && n < N && !seen[n], "unexpected or duplicate message %d", n);
		seen[n] = true;
		double due = delays[n] / 1000.0, took = at - sent[n];
		cr_log_info("delay %lld ms: arrived after %.3f s (%+.3f s from due)",
			    (long long)delays[n], took, took - due);
		fprintf(stderr, "arrives_after_due_not_before: delay %5lld ms arrived after %.3f s "
			"(%+.3f s)\n", (long long)delays[n], took, took - due);
		cr_expect_geq(took, due, "delay %lld ms arrived early, after %.3f s",
			      (long long)delays[n], took);
		cr_expect_leq(took, due + LATE_MAX_S, "delay %lld ms arrived late, after %.3f s",
			      (long long)delays[n], took);
		expect_intact(m, "", q, n);
		if (delays[n] == 5000)
			cr_expect_null(m->expiration, "expiration dropped while parked");
		cr_expect_eq(broker_ack(c, m, &err), 0, "%s", err.msg);
		broker_message_free(m);
	}
	broker_conn_free(c);
	broker_test_delete_queue(q);
	broker_test_delete_queue(to_queue("", q));
}

/* A raw second connection, as an operator would look at the broker. */
static amqp_connection_state_t raw_open(void)
{
	broker_url u;
	warren_error err = {0};
	cr_assert_eq(broker_url_parse(support_service_url("WARREN_TEST_BROKER"), &u, &err), 0, "%s",
		     err.msg);
	amqp_connection_state_t conn = amqp_new_connection();
	amqp_socket_t *sock = amqp_tcp_socket_new(conn);
	cr_assert_eq(amqp_socket_open(sock, u.host, u.port), AMQP_STATUS_OK);
	amqp_rpc_reply_t r = amqp_login(conn, u.vhost, 0, 131072, 0, AMQP_SASL_METHOD_PLAIN, u.user,
					u.password);
	cr_assert_eq(r.reply_type, AMQP_RESPONSE_NORMAL, "login");
	amqp_channel_open(conn, 1);
	cr_assert_eq(amqp_get_rpc_reply(conn).reply_type, AMQP_RESPONSE_NORMAL, "channel");
	broker_url_release(&u);
	return conn;
}

static void raw_close(amqp_connection_state_t conn)
{
	amqp_connection_close(conn, AMQP_REPLY_SUCCESS);
	amqp_destroy_connection(conn);
}

Test(integration_broker_delay, long_delays_park_in_level_28, .timeout = 20)
{
	static broker_test_outcomes r;
	broker_conn *c = connect_with(&r);
	const char *q = broker_test_name(0, "delay.long");
	declare_queue(c, q);
	publish_delayed(c, "", q, (int64_t)(1u << 28) * 1000, NULL, 0);
	publish_delayed(c, "", q, (int64_t)BROKER_DELAY_MAX_S * 1000, "60000", 1);
	flush_confirmed(c, &r, 2);
	warren_error err = {0};
	cr_expect_eq(broker_publish_delayed(c, "", q, (int64_t)BROKER_DELAY_MAX_S * 1000 + 1, NULL,
					    "x", 1, 2, &err), WARREN_EINVAL);
	cr_expect(strstr(err.msg, "longest delay"), "%s", err.msg);

	/* Both wait in level 28's queue (bit 28 set), nowhere else yet. Taking
	 * everything out of it (no_ack, so nothing goes back) empties it for the
	 * next run; the routing keys say how long and where to. */
	amqp_connection_state_t raw = raw_open();
	amqp_queue_declare_ok_t *ok = amqp_queue_declare(raw, 1, amqp_cstring_bytes("warren.delay.28"),
							 1, 0, 0, 0, amqp_empty_table);
	cr_assert_not_null(ok, "passive declare of warren.delay.28");
	cr_expect_geq(ok->message_count, 2, "level 28 holds %u messages", ok->message_count);
	int ours = 0;
	for (int i = 0; i < 100; i++) {
		amqp_rpc_reply_t gr = amqp_basic_get(raw, 1, amqp_cstring_bytes("warren.delay.28"), 1);
		cr_assert_eq(gr.reply_type, AMQP_RESPONSE_NORMAL);
		if (gr.reply.id != AMQP_BASIC_GET_OK_METHOD)
			break; /* basic.get-empty */
		amqp_basic_get_ok_t *get = gr.reply.decoded;
		char key[256], x[64], rk[128];
		snprintf(key, sizeof key, "%.*s", (int)get->routing_key.len,
			 (char *)get->routing_key.bytes);
		amqp_message_t msg;
		cr_assert_eq(amqp_read_message(raw, 1, &msg, 0).reply_type, AMQP_RESPONSE_NORMAL);
		uint32_t s = 0;
		if (broker_delay_key_parse(key, &s, x, sizeof x, rk, sizeof rk, NULL) == 0 &&
		    !strcmp(rk, q) && !*x) {
			ours++;
			cr_expect(s == (1u << 28) || s == BROKER_DELAY_MAX_S, "parked for %u s", s);
			cr_expect_eq(msg.properties._flags & AMQP_BASIC_EXPIRATION_FLAG, 0,
				     "no expiration while parked");
		}
		amqp_destroy_message(&msg);
	}
	cr_expect_eq(ours, 2, "%d of our 2 messages in level 28", ours);
	raw_close(raw);

	broker_conn_free(c);
	broker_test_delete_queue(q);
	broker_test_delete_queue(to_queue("", q));
}

Test(integration_broker_delay, parked_messages_need_no_consumer_and_survive_reconnect,
     .timeout = 30)
{
	static broker_test_outcomes r;
	broker_conn *c = connect_with(&r);
	const char *q = broker_test_name(0, "delay.offline");
	declare_queue(c, q);
	double sent = now_s();
	publish_delayed(c, "", q, 1000, NULL, 0);
	flush_confirmed(c, &r, 1);
	broker_conn_free(c); /* nobody connected while it is due */
	struct timespec pause = {.tv_sec = 1, .tv_nsec = 800 * 1000000L};
	nanosleep(&pause, NULL);

	static broker_test_outcomes r2;
	c = connect_with(&r2);
	/* A reconnect before the next delayed publish: the cascade's exchange
	 * bindings come back with the topology (broker_delay_redeclare). */
	double sent2 = now_s();
	publish_delayed(c, "", q, 2000, NULL, 1);
	broker_conn_drop(c);
	double sent3 = now_s();
	publish_delayed(c, "", q, 1000, NULL, 2);
	flush_confirmed(c, &r2, 2);
	warren_error err = {0};
	cr_assert_eq(broker_consume(c, q, 10, false, NULL, 0, &err), 0, "%s", err.msg);
	const double sent_at[3] = {sent, sent2, sent3}, due[3] = {1, 2, 1};
	for (int got = 0; got < 3; got++) {
		broker_message *m = broker_test_receive(c, 5000);
		int n = header_n(m);
		cr_assert(n >= 0 && n < 3, "unexpected message %d", n);
		double took = now_s() - sent_at[n];
		expect_intact(m, "", q, n);
		cr_expect_geq(took, due[n], "message %d early: %.3f s", n, took);
		/* Message 0 waited in the queue for us: only "not early" holds. */
		if (n)
			cr_expect_leq(took, due[n] + LATE_MAX_S, "message %d late: %.3f s", n, took);
		fprintf(stderr, "parked_messages_need_no_consumer: message %d after %.3f s\n", n,
			took);
		cr_expect_eq(broker_ack(c, m, &err), 0, "%s", err.msg);
		broker_message_free(m);
	}
	broker_conn_free(c);
	broker_test_delete_queue(q);
	broker_test_delete_queue(to_queue("", q));
}

/* A worker's retry republishes a task with the headers it arrived with,
 * x-death included. Without stripping them RabbitMQ would see the message
 * re-enter warren.delay.0 and drop it as a dead-letter cycle. */
Test(integration_broker_delay, reparked_message_is_not_dropped_as_a_cycle, .timeout = 30)
{
	static broker_test_outcomes r;
	broker_conn *c = connect_with(&r);
	const char *q = broker_test_name(0, "delay.retry");
	declare_queue(c, q);
	publish_delayed(c, "", q, 1000, NULL, 0);
	flush_confirmed(c, &r, 1);
	warren_error err = {0};
	cr_assert_eq(broker_consume(c, q, 10, false, NULL, 0, &err), 0, "%s", err.msg);
	broker_message *m = broker_test_receive(c, 5000);
	cr_assert(has_header(m, "x-death"), "the broker did not add x-death: premise gone");
	broker_props p = {.content_type = m->content_type, .correlation_id = m->correlation_id,
			  .delivery_mode = 2, .priority = BROKER_UNSET, .headers = m->headers,
			  .headers_len = m->headers_len};
	double sent = now_s();
	cr_assert_eq(broker_publish_delayed(c, "", q, 1000, &p, m->body, m->body_len, 1, &err), 0,
		     "%s", err.msg);
	cr_expect_eq(broker_ack(c, m, &err), 0, "%s", err.msg);
	broker_message_free(m);
	m = broker_test_receive(c, 5000);
	double took = now_s() - sent;
	cr_expect(took >= 1.0 && took <= 1.0 + LATE_MAX_S, "re-parked message after %.3f s", took);
	expect_header_str(m, "id", "task-0");
	cr_expect_eq(broker_ack(c, m, &err), 0, "%s", err.msg);
	broker_message_free(m);
	broker_conn_free(c);
	broker_test_delete_queue(q);
	broker_test_delete_queue(to_queue("", q));
}

Test(integration_broker_delay, other_exchanges_keep_their_routing_key, .timeout = 20)
{
	static broker_test_outcomes r;
	broker_conn *c = connect_with(&r);
	const char *q = broker_test_name(0, "delay.direct");
	const char *x = broker_test_name(1, "delay.x");
	declare_queue(c, q);
	broker_exchange ex = {.name = x, .type = BROKER_EXCHANGE_DIRECT, .auto_delete = true};
	broker_binding b = {.queue = q, .exchange = x, .routing_key = "route.me"};
	broker_topology t = {.exchanges = &ex, .n_exchanges = 1, .bindings = &b, .n_bindings = 1};
	warren_error err = {0};
	cr_assert_eq(broker_declare(c, &t, &err), 0, "%s", err.msg);
	double sent = now_s();
	publish_delayed(c, x, "route.me", 1000, NULL, 7);
	flush_confirmed(c, &r, 1);
	cr_assert_eq(broker_consume(c, q, 10, false, NULL, 0, &err), 0, "%s", err.msg);
	broker_message *m = broker_test_receive(c, 5000);
	double took = now_s() - sent;
	cr_expect(took >= 1.0 && took <= 1.0 + LATE_MAX_S, "after %.3f s", took);
	expect_intact(m, x, "route.me", 7);
	broker_message_free(m);
	broker_conn_free(c);
	broker_test_delete_queue(q);
	broker_test_delete_queue(to_queue(x, "route.me"));
}

Test(integration_broker_delay, missing_destination_is_an_error_at_once)
{
	static broker_test_outcomes r;
	broker_conn *c = connect_with(&r);
	warren_error err = {0};
	const char *missing = broker_test_name(0, "delay.nosuch");
	cr_expect_eq(broker_publish_delayed(c, "", missing, 1000, NULL, "x", 1, 0, &err),
		     WARREN_ENOTFOUND, "%s", err.msg);
	cr_expect(strstr(err.msg, missing) && strstr(err.msg, "does not exist"), "%s", err.msg);
	warren_error e2 = {0};
	cr_expect_eq(broker_publish_delayed(c, missing, "k", 1000, NULL, "x", 1, 1, &e2),
		     WARREN_ENOTFOUND, "%s", e2.msg);
	cr_expect(strstr(e2.msg, "exchange"), "%s", e2.msg);
	/* The channel the broker closed for the passive declare is back. */
	const char *q = broker_test_name(1, "delay.after");
	declare_queue(c, q);
	publish_delayed(c, "", q, 1000, NULL, 2);
	flush_confirmed(c, &r, 1);
	broker_conn_free(c);
	broker_test_delete_queue(q);
	broker_test_delete_queue(to_queue("", q));
}
