/* tests/unit/test_broker_url.c - broker URLs: defaults, decoding, failover
 * lists, masking (no password in any message), every error, and backoff. */
#include <criterion/criterion.h>
#include <string.h>

#include "broker-adapter/broker.h"

static broker_url parse_ok(const char *s)
{
	broker_url u;
	warren_error err = {0};
	cr_assert_eq(broker_url_parse(s, &u, &err), 0, "%s: %s", s, err.msg);
	return u;
}

/* Parses s expecting failure; the message must contain want and never "secret". */
static void parse_bad(const char *s, const char *want)
{
	broker_url u;
	warren_error err = {0};
	cr_assert_eq(broker_url_parse(s, &u, &err), WARREN_EINVAL, "%s parsed", s);
	cr_expect(strstr(err.msg, want), "'%s': message '%s' lacks '%s'", s, err.msg, want);
	cr_expect(!strstr(err.msg, "secret"), "password leaked: %s", err.msg);
}

Test(broker_url, defaults_follow_rabbitmq)
{
	broker_url u = parse_ok("amqp://");
	cr_expect(!u.tls);
	cr_expect_str_eq(u.user, "guest");
	cr_expect_str_eq(u.password, "guest");
	cr_expect_str_eq(u.host, "localhost");
	cr_expect_eq(u.port, 5672);
	cr_expect_str_eq(u.vhost, "/");
	cr_expect_eq(u.heartbeat, -1);
	cr_expect_eq(u.connection_timeout_ms, -1);
	cr_expect_str_eq(u.masked, "amqp://guest:****@localhost:5672/%2F");
	broker_url_release(&u);

	u = parse_ok("amqps://h");
	cr_expect(u.tls);
	cr_expect_eq(u.port, 5671);
	cr_expect_str_eq(u.masked, "amqps://guest:****@h:5671/%2F");
	broker_url_release(&u);
}

Test(broker_url, full_url_is_percent_decoded)
{
	broker_url u = parse_ok("amqp://us%40er:p%3Ass@rabbit.example:5673/my%2Fvhost"
				"?heartbeat=30&connection_timeout=2500");
	cr_expect_str_eq(u.user, "us@er");
	cr_expect_str_eq(u.password, "p:ss");
	cr_expect_str_eq(u.host, "rabbit.example");
	cr_expect_eq(u.port, 5673);
	cr_expect_str_eq(u.vhost, "my/vhost");
	cr_expect_eq(u.heartbeat, 30);
	cr_expect_eq(u.connection_timeout_ms, 2500);
	cr_expect_str_eq(u.masked, "amqp://us%40er:****@rabbit.example:5673/my%2Fvhost");
	broker_url_release(&u);
}

Test(broker_url, vhost_forms)
{
	const char *slash[] = {"amqp://h", "amqp://h/", "amqp://h/%2F", "amqp://h/%2f",
			       "amqp://guest:guest@localhost:5672//" /* kombu's spelling */};
	for (size_t i = 0; i < sizeof slash / sizeof *slash; i++) {
		broker_url u = parse_ok(slash[i]);
		cr_expect_str_eq(u.vhost, "/", "%s", slash[i]);
		broker_url_release(&u);
	}
	broker_url u = parse_ok("amqp://h/prod");
	cr_expect_str_eq(u.vhost, "prod");
	broker_url_release(&u);
}

Test(broker_url, user_without_password_and_ipv6)
{
	broker_url u = parse_ok("amqp://bob@[::1]:5680/v");
	cr_expect_str_eq(u.user, "bob");
	cr_expect_str_eq(u.password, "guest");
	cr_expect_str_eq(u.host, "::1");
	cr_expect_eq(u.port, 5680);
	cr_expect_str_eq(u.masked, "amqp://bob:****@[::1]:5680/v");
	broker_url_release(&u);
}

Test(broker_url, every_error_names_the_masked_url_and_the_problem)
{
	parse_bad("http://u:secret@h/", "url 'http://u:****@h/': scheme must be amqp:// or amqps://");
	parse_bad("", "empty broker URL");
	parse_bad("amqp://u:secret@h:0/", "port '0' is not a number in 1..65535");
	parse_bad("amqp://u:secret@h:70000/", "port '70000'");
	parse_bad("amqp://u:secret@h:ab/", "port 'ab'");
	parse_bad("amqp://u:secret@[::1/", "IPv6 address without a closing ']'");
	parse_bad("amqp://u:secret@[::1]x/", "junk after the IPv6 address");
	parse_bad("amqp://u:secret@h/a/b", "vhost 'a/b' has a raw '/'; write it as %2F");
	parse_bad("amqp://u:secret@h/%zz", "bad percent-encoding in vhost '%zz'");
	parse_bad("amqp://u%4:secret@h/", "bad percent-encoding in the user name");
	parse_bad("amqp://u:secret%g1@h/", "url 'amqp://u:****@h/': bad percent-encoding in the password");
	parse_bad("amqp://u:secret@h/?heartbeat=x", "heartbeat 'x' is not a number of seconds");
	parse_bad("amqp://u:secret@h/?connection_timeout=0", "connection_timeout '0'");
	parse_bad("amqp://u:secret@h/?frame_max=1", "unknown option 'frame_max'");
	parse_bad("amqp://u:secret@h/#frag", "a fragment ('#') is not allowed");
	parse_bad("amqp://u:secret@h%zz/", "bad percent-encoding in the host");
}

Test(broker_url, mask_hides_only_the_password)
{
	char buf[128];
	broker_url_mask("amqp://guest:guest@127.0.0.1:5672/%2F", buf, sizeof buf);
	cr_expect_str_eq(buf, "amqp://guest:****@127.0.0.1:5672/%2F");
	broker_url_mask("amqp://a:b@c@host/", buf, sizeof buf); /* raw '@' in password */
	cr_expect_str_eq(buf, "amqp://a:****@host/");
	broker_url_mask("amqp://user@host/", buf, sizeof buf);
	cr_expect_str_eq(buf, "amqp://user@host/");
	broker_url_mask("amqp://host:5672/x@y", buf, sizeof buf); /* '@' in the path is no userinfo */
	cr_expect_str_eq(buf, "amqp://host:5672/x@y");
	broker_url_mask("garbage:pw@x", buf, sizeof buf);
	cr_expect_str_eq(buf, "garbage:****@x");
	broker_url_mask("amqp://u:secret@h/", buf, 10);
	cr_expect_str_eq(buf, "amqp://u:");
}

Test(broker_url, failover_list)
{
	broker_url *l;
	size_t n;
	warren_error err = {0};
	cr_assert_eq(broker_url_list_parse(" amqp://a ; amqps://b:6000/v ;", &l, &n, &err), 0, "%s",
		     err.msg);
	cr_assert_eq(n, 2);
	cr_expect_str_eq(l[0].host, "a");
	cr_expect_str_eq(l[1].host, "b");
	cr_expect(l[1].tls);
	cr_expect_eq(l[1].port, 6000);
	broker_url_list_free(l, n);

	cr_expect_eq(broker_url_list_parse(" ; ", &l, &n, &err), WARREN_EINVAL);
	cr_expect_str_eq(err.msg, "broker urls: no URL given");
	warren_error_clear(&err);
	cr_expect_eq(broker_url_list_parse("amqp://a;amqp://u:secret@b:0", &l, &n, &err), WARREN_EINVAL);
	cr_expect(strstr(err.msg, "url 'amqp://u:****@b:0'"), "%s", err.msg);
	cr_expect_null(l);
}

Test(broker_backoff, doubles_with_jitter_up_to_the_cap)
{
	unsigned seed = 42;
	for (int round = 0; round < 200; round++) {
		for (unsigned a = 0; a < 12; a++) {
			int d = broker_backoff_ms(a, 100, 5000, &seed);
			int full = 100 << a;
			if (full > 5000)
				full = 5000;
			cr_assert(d >= full / 2 && d <= full, "attempt %u: %d ms not in [%d, %d]", a, d,
				  full / 2, full);
		}
	}
	/* A huge attempt count does not overflow. */
	cr_expect_leq(broker_backoff_ms(4000000000u, 100, 5000, &seed), 5000);
}
