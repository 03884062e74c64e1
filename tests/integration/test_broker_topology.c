/* tests/integration/test_broker_topology.c - declaring exchanges, queues and
 * bindings against the real broker: idempotence, every queue argument, and
 * the plain-words message for a queue that exists with other arguments. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "broker_support.h"

Test(integration_broker, declares_everything_idempotently)
{
	broker_conn *c = broker_test_connect();
	const char *ex = broker_test_name(0, "topo.ex");
	const char *q = broker_test_name(1, "topo.q");
	const char *dlx = broker_test_name(2, "topo.dlx");
	const char *qq = broker_test_name(3, "topo.quorum");
	broker_exchange exs[] = {
		{.name = ex, .type = BROKER_EXCHANGE_TOPIC, .durable = true},
		{.name = dlx, .type = BROKER_EXCHANGE_FANOUT, .durable = false, .auto_delete = true},
		{.name = "", .type = BROKER_EXCHANGE_DIRECT}, /* the default exchange: skipped */
	};
	broker_queue qs[2];
	broker_queue_init(&qs[0], q);
	qs[0].max_priority = 10;
	qs[0].dead_letter_exchange = dlx;
	qs[0].dead_letter_routing_key = "dead";
	qs[0].message_ttl_ms = 60000;
	qs[0].expires_ms = 3000000000LL; /* beyond int32: sent as 'l' */
	broker_queue_init(&qs[1], qq);
	qs[1].quorum = true;
	qs[1].delivery_limit = 5;
	broker_binding bs[] = {{.queue = q, .exchange = ex, .routing_key = "a.#"},
			       {.queue = qq, .exchange = ex, .routing_key = "b.*"}};
	broker_topology t = {exs, 3, qs, 2, bs, 2};
	warren_error err = {0};
	cr_assert_eq(broker_declare(c, &t, &err), 0, "%s", err.msg);
	cr_assert_eq(broker_declare(c, &t, &err), 0, "second time: %s", err.msg);
	broker_conn_free(c);
}

Test(integration_broker, queue_argument_mismatch_is_restated_in_plain_words)
{
	broker_conn *c = broker_test_connect();
	const char *name = broker_test_name(0, "mismatch");
	broker_queue q;
	broker_queue_init(&q, name);
	q.max_priority = 10;
	q.auto_delete = true;
	broker_topology t = {.queues = &q, .n_queues = 1};
	warren_error err = {0};
	cr_assert_eq(broker_declare(c, &t, &err), 0, "%s", err.msg);

	broker_queue q2;
	broker_queue_init(&q2, name);
	q2.auto_delete = true;
	t.queues = &q2;
	cr_assert_eq(broker_declare(c, &t, &err), WARREN_EBROKER);
	char want[256];
	snprintf(want, sizeof want, "queue '%s': exists with x-max-priority 10, declared with none", name);
	cr_expect_str_eq(err.msg, want);

	warren_error_clear(&err);
	q2.max_priority = 5;
	cr_assert_eq(broker_declare(c, &t, &err), WARREN_EBROKER);
	snprintf(want, sizeof want, "queue '%s': exists with x-max-priority 10, declared with 5", name);
	cr_expect_str_eq(err.msg, want);

	warren_error_clear(&err);
	q2.max_priority = 10;
	q2.durable = false;
	cr_assert_eq(broker_declare(c, &t, &err), WARREN_EBROKER);
	snprintf(want, sizeof want, "queue '%s': exists with durable true, declared with false", name);
	cr_expect_str_eq(err.msg, want);

	/* The refused declare closed only the topology channel, which is back. */
	warren_error_clear(&err);
	t.queues = &q;
	cr_expect_eq(broker_declare(c, &t, &err), 0, "after the mismatch: %s", err.msg);
	/* A mismatch is not remembered: a reconnect re-declares only the original. */
	broker_conn_drop(c);
	cr_expect_eq(broker_declare(c, &t, &err), 0, "after a reconnect: %s", err.msg);
	broker_conn_free(c);
}

Test(integration_broker, binding_to_a_missing_exchange_names_both)
{
	broker_conn *c = broker_test_connect();
	broker_queue q;
	broker_queue_init(&q, broker_test_name(0, "bindq"));
	q.auto_delete = true;
	broker_binding b = {.queue = q.name, .exchange = "warren.test.no-such-exchange", .routing_key = "k"};
	broker_topology t = {.queues = &q, .n_queues = 1, .bindings = &b, .n_bindings = 1};
	warren_error err = {0};
	cr_assert_eq(broker_declare(c, &t, &err), WARREN_ENOTFOUND); /* 404: see topology.c */
	cr_expect(strstr(err.msg, "bind queue 'warren.test.bindq.") &&
		  strstr(err.msg, "to exchange 'warren.test.no-such-exchange' key 'k': 404 NOT_FOUND"),
		  "%s", err.msg);
	broker_conn_free(c);
}
