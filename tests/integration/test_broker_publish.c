/* tests/integration/test_broker_publish.c - publisher confirms against the
 * real broker: a pipelined window, returns for unroutable messages, a
 * missing exchange, header errors, and republishing after a lost connection. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "broker_support.h"

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
	q.auto_delete = false;
	q.durable = false;
	q.expires_ms = 60000; /* gone a minute after the test */
	broker_topology t = {.queues = &q, .n_queues = 1};
	warren_error err = {0};
	cr_assert_eq(broker_declare(c, &t, &err), 0, "%s", err.msg);
}

Test(integration_broker, publish_confirms_window)
{
	static broker_test_outcomes r;
	broker_conn *c = connect_with(&r);
	const char *q = broker_test_name(0, "window");
	declare_queue(c, q);
	broker_props p = {.content_type = "application/x-msgpack", .content_encoding = "binary",
			  .delivery_mode = 2, .priority = 0};
	char body[100];
	memset(body, 'x', sizeof body);
	enum { N = 10000 };
	size_t max_in_flight = 0;
	double t0 = now_s();
	for (uint64_t i = 0; i < N; i++) {
		warren_error err = {0};
		cr_assert_eq(broker_publish(c, "", q, &p, body, sizeof body, i, &err), 0, "#%llu: %s",
			     (unsigned long long)i, err.msg);
		size_t u = broker_publish_unconfirmed(c);
		if (u > max_in_flight)
			max_in_flight = u;
	}
	warren_error err = {0};
	cr_assert_eq(broker_publish_flush(c, 20000, &err), 0, "%s", err.msg);
	double took = now_s() - t0;
	cr_expect_eq(r.n[BROKER_CONFIRMED], N, "confirmed %zu, nacked %zu, returned %zu, unknown %zu",
		     r.n[BROKER_CONFIRMED], r.n[BROKER_NACKED], r.n[BROKER_RETURNED], r.n[BROKER_UNKNOWN]);
	for (int i = 0; i < N; i++)
		cr_assert_eq(r.by_cookie[i], BROKER_CONFIRMED, "cookie %d: %d", i, r.by_cookie[i]);
	cr_expect_leq(max_in_flight, 1000, "window exceeded: %zu", max_in_flight);
	cr_expect_gt(max_in_flight, 10, "no pipelining? at most %zu in flight", max_in_flight);
	cr_log_info("published and confirmed %d persistent messages in %.3f s: %.0f msg/s, "
		    "at most %zu in flight", N, took, N / took, max_in_flight);
	fprintf(stderr, "publish_confirms_window: %d in %.3f s = %.0f msg/s, max in flight %zu\n", N,
		took, N / took, max_in_flight);
	broker_conn_free(c);
}

Test(integration_broker, unroutable_message_is_returned_not_silent)
{
	static broker_test_outcomes r;
	broker_conn *c = connect_with(&r);
	const char *q = broker_test_name(0, "routable");
	declare_queue(c, q);
	warren_error err = {0};
	cr_assert_eq(broker_publish(c, "", q, NULL, "a", 1, 1, &err), 0, "%s", err.msg);
	cr_assert_eq(broker_publish(c, "", "warren.test.nobody-here", NULL, "b", 1, 2, &err), 0, "%s",
		     err.msg);
	cr_assert_eq(broker_publish(c, "", q, NULL, "c", 1, 3, &err), 0, "%s", err.msg);
	cr_assert_eq(broker_publish_flush(c, 5000, &err), 0, "%s", err.msg);
	cr_expect_eq(r.by_cookie[1], BROKER_CONFIRMED);
	cr_expect_eq(r.by_cookie[2], BROKER_RETURNED);
	cr_expect_eq(r.by_cookie[3], BROKER_CONFIRMED);
	cr_expect_str_eq(r.last_reason, "unroutable: no queue bound for exchange '' key "
					"'warren.test.nobody-here' (312 NO_ROUTE)");
	broker_conn_free(c);
}

Test(integration_broker, missing_exchange_nacks_that_message_and_recovers)
{
	static broker_test_outcomes r;
	broker_conn *c = connect_with(&r);
	const char *q = broker_test_name(0, "afterbad");
	declare_queue(c, q);
	warren_error err = {0};
	cr_assert_eq(broker_publish(c, "warren.test.no-such-exchange", "k", NULL, "a", 1, 1, &err), 0,
		     "%s", err.msg);
	cr_assert_eq(broker_publish_flush(c, 5000, &err), 0, "%s", err.msg);
	cr_expect_eq(r.by_cookie[1], BROKER_NACKED);
	cr_expect(strstr(r.last_reason, "publish to exchange 'warren.test.no-such-exchange': 404 "
					"NOT_FOUND - no exchange"), "%s", r.last_reason);
	/* The publish channel is back, in confirm mode. */
	cr_assert_eq(broker_publish(c, "", q, NULL, "b", 1, 2, &err), 0, "%s", err.msg);
	cr_assert_eq(broker_publish_flush(c, 5000, &err), 0, "%s", err.msg);
	cr_expect_eq(r.by_cookie[2], BROKER_CONFIRMED);
	broker_conn_free(c);
}

Test(integration_broker, bad_headers_are_refused_before_sending)
{
	static broker_test_outcomes r;
	broker_conn *c = connect_with(&r);
	unsigned char arr[] = {0x90}; /* a msgpack array, not a map */
	broker_props p = {.priority = BROKER_UNSET, .headers = arr, .headers_len = 1};
	warren_error err = {0};
	cr_expect_eq(broker_publish(c, "", "x", &p, "a", 1, 1, &err), WARREN_EENCODE);
	cr_expect_str_eq(err.msg, "headers: expected a msgpack map, got array");
	cr_expect_eq(broker_publish_unconfirmed(c), 0);
	broker_conn_free(c);
}

Test(integration_broker, unconfirmed_messages_are_republished_after_reconnect)
{
	static broker_test_outcomes r;
	broker_conn *c = connect_with(&r);
	const char *q = broker_test_name(0, "republish");
	declare_queue(c, q);
	warren_error err = {0};
	for (uint64_t i = 0; i < 200; i++)
		cr_assert_eq(broker_publish(c, "", q, NULL, &i, sizeof i, i, &err), 0, "%s", err.msg);
	size_t pending = broker_publish_unconfirmed(c);
	broker_conn_drop(c); /* acks in flight are lost with the connection */
	cr_assert_eq(broker_publish_flush(c, 10000, &err), 0, "%s", err.msg);
	cr_expect_eq(r.n[BROKER_CONFIRMED], 200, "confirmed %zu (had %zu pending at the drop)",
		     r.n[BROKER_CONFIRMED], pending);
	cr_expect_eq(r.n[BROKER_UNKNOWN], 0);
	broker_conn_free(c);
}
