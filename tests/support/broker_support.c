/* tests/support/broker_support.c - see broker_support.h. */
#include "broker_support.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "broker-adapter/internal.h"
#include "support.h"

void broker_test_opts(broker_conn_opts *o)
{
	broker_conn_opts_init(o);
	o->urls = support_service_url("WARREN_TEST_BROKER");
	o->connect_timeout_ms = 3000;
	o->rpc_timeout_ms = 5000;
	o->reconnect_timeout_ms = 5000;
	o->confirm_timeout_ms = 10000;
	o->connection_name = "warren-tests";
}

broker_conn *broker_test_connect(void)
{
	broker_conn_opts o;
	broker_test_opts(&o);
	broker_conn *c;
	warren_error err = {0};
	cr_assert_eq(broker_conn_new(&o, &c, &err), 0, "%s", err.msg);
	return c;
}

const char *broker_test_name(int slot, const char *what)
{
	static char names[4][128];
	snprintf(names[slot & 3], sizeof names[0], "warren.test.%s.%ld", what, (long)getpid());
	return names[slot & 3];
}

void broker_test_outcomes_init(broker_test_outcomes *r)
{
	memset(r, 0, sizeof *r);
	memset(r->by_cookie, -1, sizeof r->by_cookie);
}

void broker_test_record(void *arg, uint64_t cookie, broker_outcome o, const char *reason)
{
	broker_test_outcomes *r = arg;
	r->n[o]++;
	if (reason)
		snprintf(r->last_reason, sizeof r->last_reason, "%s", reason);
	if (cookie < BROKER_TEST_MAX_COOKIES) {
		cr_expect_eq(r->by_cookie[cookie], -1, "cookie %llu settled twice",
			     (unsigned long long)cookie);
		r->by_cookie[cookie] = (signed char)o;
	}
}

broker_message *broker_test_receive(broker_conn *c, int timeout_ms)
{
	for (;;) {
		broker_event ev;
		warren_error err = {0};
		int rc = broker_receive(c, timeout_ms, &ev, &err);
		cr_assert_eq(rc, 0, "receive: %s", err.msg);
		if (ev.type == BROKER_EVENT_MESSAGE) {
			broker_message *m = ev.msg;
			ev.msg = NULL;
			broker_event_release(&ev);
			return m;
		}
		cr_assert_eq(ev.type, BROKER_EVENT_RECONNECTED, "unexpected event %d", ev.type);
		broker_event_release(&ev);
	}
}

int broker_test_port(void)
{
	char host[256];
	int port;
	cr_assert_eq(support_url_host_port(support_service_url("WARREN_TEST_BROKER"), host,
					   sizeof host, &port), 0);
	return port;
}

void broker_test_delete_queue(const char *name)
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
	amqp_queue_delete(conn, 1, amqp_cstring_bytes(name), 0, 0);
	cr_assert_eq(amqp_get_rpc_reply(conn).reply_type, AMQP_RESPONSE_NORMAL, "queue.delete");
	amqp_connection_close(conn, AMQP_REPLY_SUCCESS);
	amqp_destroy_connection(conn);
	broker_url_release(&u);
}
