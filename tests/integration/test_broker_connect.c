/* tests/integration/test_broker_connect.c - connecting to the real broker:
 * login, heartbeat negotiation, failover, and the errors for bad passwords,
 * dead brokers and TLS settings (no TLS broker here: only that settings are
 * applied or refused sensibly). */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "broker_support.h"
#include "support.h"

static int64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* The test URL with "guest:guest@" replaced by userinfo. */
static const char *url_with(const char *userinfo)
{
	static char buf[512];
	const char *url = support_service_url("WARREN_TEST_BROKER");
	const char *at = strchr(url, '@');
	cr_assert(at, "test url has no userinfo");
	snprintf(buf, sizeof buf, "amqp://%s@%s", userinfo, at + 1);
	return buf;
}

Test(integration_broker, connects_and_negotiates_heartbeat)
{
	broker_conn_opts o;
	broker_test_opts(&o);
	o.heartbeat = 7;
	broker_conn *c;
	warren_error err = {0};
	cr_assert_eq(broker_conn_new(&o, &c, &err), 0, "%s", err.msg);
	cr_expect_eq(broker_conn_heartbeat(c), 7);
	cr_expect_geq(broker_conn_fd(c), 0);
	cr_expect(strstr(broker_conn_url(c), ":****@"), "%s", broker_conn_url(c));
	broker_conn_free(c);
}

Test(integration_broker, url_heartbeat_option_wins)
{
	char url[512];
	snprintf(url, sizeof url, "%s?heartbeat=3", support_service_url("WARREN_TEST_BROKER"));
	broker_conn_opts o;
	broker_test_opts(&o);
	o.urls = url;
	broker_conn *c;
	warren_error err = {0};
	cr_assert_eq(broker_conn_new(&o, &c, &err), 0, "%s", err.msg);
	cr_expect_eq(broker_conn_heartbeat(c), 3);
	broker_conn_free(c);
}

Test(integration_broker, fails_over_to_the_next_url_in_order)
{
	char urls[1024];
	snprintf(urls, sizeof urls, "amqp://guest:guest@127.0.0.1:1/ ; %s",
		 support_service_url("WARREN_TEST_BROKER"));
	broker_conn_opts o;
	broker_test_opts(&o);
	o.urls = urls;
	broker_conn *c;
	warren_error err = {0};
	cr_assert_eq(broker_conn_new(&o, &c, &err), 0, "%s", err.msg);
	cr_expect(!strstr(broker_conn_url(c), ":1/"), "still on the dead url: %s", broker_conn_url(c));
	broker_conn_free(c);
}

Test(integration_broker, wrong_password_names_url_and_reason_but_not_the_password)
{
	broker_conn_opts o;
	broker_test_opts(&o);
	o.urls = url_with("guest:wrongsecret");
	o.reconnect_timeout_ms = 0;
	broker_conn *c;
	warren_error err = {0};
	cr_assert_eq(broker_conn_new(&o, &c, &err), WARREN_EBROKER);
	cr_expect_null(c);
	cr_expect(strstr(err.msg, "login as 'guest' to vhost '/' on 'amqp://guest:****@"), "%s", err.msg);
	cr_expect(strstr(err.msg, "ACCESS_REFUSED"), "%s", err.msg);
	cr_expect(!strstr(err.msg, "wrongsecret"), "password leaked: %s", err.msg);
}

Test(integration_broker, dead_brokers_fail_after_backoff_within_the_deadline)
{
	broker_conn_opts o;
	broker_test_opts(&o);
	o.urls = "amqp://u:secret@127.0.0.1:1/;amqp://u:secret@127.0.0.1:2/";
	o.reconnect_timeout_ms = 600;
	o.backoff_initial_ms = 50;
	o.backoff_max_ms = 200;
	broker_conn *c;
	warren_error err = {0};
	int64_t t0 = now_ms();
	cr_assert_eq(broker_conn_new(&o, &c, &err), WARREN_EBROKER);
	int64_t took = now_ms() - t0;
	cr_expect_str_eq(err.msg, "connect 'amqp://u:****@127.0.0.1:2/%2F': a socket error occurred "
				  "(all 2 broker urls failed)");
	cr_expect(took >= 200 && took < 1500, "took %lld ms", (long long)took);
}

Test(integration_broker, tls_settings_are_checked_and_applied)
{
	broker_conn_opts o;
	broker_test_opts(&o);
	broker_conn *c;
	warren_error err = {0};

	o.tls_cert_file = support_source_path("Makefile");
	cr_expect_eq(broker_conn_new(&o, &c, &err), WARREN_ECONFIG);
	cr_expect(strstr(err.msg, "tls: client certificate '") && strstr(err.msg, "given without a key"),
		  "%s", err.msg);

	warren_error_clear(&err);
	broker_test_opts(&o);
	o.tls_ca_file = "/nonexistent/ca.pem";
	cr_expect_eq(broker_conn_new(&o, &c, &err), WARREN_ECONFIG);
	cr_expect_str_eq(err.msg, "tls: CA file '/nonexistent/ca.pem': No such file or directory");

	/* A file that is not a certificate is refused when the TLS socket loads it. */
	warren_error_clear(&err);
	broker_test_opts(&o);
	char url[512];
	snprintf(url, sizeof url, "amqps://guest:guest@127.0.0.1:%d/", broker_test_port());
	o.urls = url;
	o.reconnect_timeout_ms = 0;
	o.tls_ca_file = support_source_path("Makefile");
	cr_expect_eq(broker_conn_new(&o, &c, &err), WARREN_ECONFIG);
	cr_expect(strstr(err.msg, "tls: cannot load CA file '"), "%s", err.msg);

	/* TLS against the plain AMQP port: the handshake fails, named. */
	warren_error_clear(&err);
	o.tls_ca_file = NULL;
	cr_expect_eq(broker_conn_new(&o, &c, &err), WARREN_EBROKER);
	cr_expect(strstr(err.msg, "connect 'amqps://guest:****@127.0.0.1:"), "%s", err.msg);
	cr_expect(!strstr(err.msg, "guest:guest"), "%s", err.msg);
}
