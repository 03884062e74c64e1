/* tests/unit/test_backend_url.c - result backend URLs (backends/url.c), the
 * masking that keeps passwords out of messages, the dispatch by scheme and
 * the none backend (backends/backend.c, none.c). No service needed. */
#include <criterion/criterion.h>
#include <hiredis/hiredis.h>
#include <string.h>

#include "backends/backend.h"

static backend_redis_url parse_ok(const char *url)
{
	warren_error err = {0};
	backend_redis_url u;
	cr_assert_eq(backend_redis_url_parse(url, &u, &err), 0, "%s: %s", url, err.msg);
	return u;
}

static void parse_fails(const char *url, const char *msg)
{
	warren_error err = {0};
	backend_redis_url u;
	cr_assert_eq(backend_redis_url_parse(url, &u, &err), WARREN_EINVAL, "%s parsed", url);
	cr_expect_str_eq(err.msg, msg);
	cr_expect_null(u.host);
}

Test(backend_url, defaults_are_celerys)
{
	backend_redis_url u = parse_ok("redis://");
	cr_expect_str_eq(u.host, "localhost");
	cr_expect_eq(u.port, 6379);
	cr_expect_eq(u.db, 0);
	cr_expect_null(u.username);
	cr_expect_null(u.password);
	cr_expect_not(u.tls);
	backend_redis_url_release(&u);
	u = parse_ok("redis://h/");
	cr_expect_str_eq(u.host, "h");
	cr_expect_eq(u.port, 6379);
	backend_redis_url_release(&u);
}

Test(backend_url, reads_host_port_db_and_password)
{
	backend_redis_url u = parse_ok("redis://:s%40cr%3At@10.0.0.5:6390/3");
	cr_expect_str_eq(u.host, "10.0.0.5");
	cr_expect_eq(u.port, 6390);
	cr_expect_eq(u.db, 3);
	cr_expect_null(u.username);
	cr_expect_str_eq(u.password, "s@cr:t");
	backend_redis_url_release(&u);
	backend_redis_url_release(&u); /* twice is safe */
}

Test(backend_url, reads_acl_user_ipv6_and_tls)
{
	backend_redis_url u = parse_ok("rediss://app:pw@[::1]:6380/15");
	cr_expect(u.tls);
	cr_expect_str_eq(u.host, "::1");
	cr_expect_eq(u.port, 6380);
	cr_expect_eq(u.db, 15);
	cr_expect_str_eq(u.username, "app");
	cr_expect_str_eq(u.password, "pw");
	backend_redis_url_release(&u);
}

Test(backend_url, the_last_at_sign_ends_the_password)
{
	backend_redis_url u = parse_ok("redis://:p@ss@h:1");
	cr_expect_str_eq(u.password, "p@ss");
	cr_expect_str_eq(u.host, "h");
	backend_redis_url_release(&u);
}

Test(backend_url, bad_urls_are_named_with_the_password_masked)
{
	parse_fails("amqp://h", "result backend 'amqp://h': not a redis:// or rediss:// URL");
	parse_fails("redis://:pw@h:0/1",
		    "result backend 'redis://:****@h:0/1': port \"0\" is not a number in 1..65535");
	parse_fails("redis://:pw@h:99999",
		    "result backend 'redis://:****@h:99999': port \"99999\" is not a number in 1..65535");
	parse_fails("redis://h:6379/x",
		    "result backend 'redis://h:6379/x': database \"x\" is not a number");
	parse_fails("redis://h/0?ssl_cert_reqs=none",
		    "result backend 'redis://h/0?ssl_cert_reqs=none': URL options "
		    "(\"?ssl_cert_reqs=none\") are not supported");
	parse_fails("redis://secret@h",
		    "result backend 'redis://****@h': a user without a password; write "
		    "redis://:PASSWORD@host for a password alone");
	parse_fails("redis://:p%zz@h",
		    "result backend 'redis://:****@h': bad percent escape in the password");
	parse_fails("redis://[::1:6379", "result backend 'redis://[::1:6379': '[' without ']' in the host");
}

Test(backend_url, masking_hides_only_the_password)
{
	char buf[128];
	backend_url_mask("redis://:secret@h:1/0", buf, sizeof buf);
	cr_expect_str_eq(buf, "redis://:****@h:1/0");
	backend_url_mask("redis://user:secret@h", buf, sizeof buf);
	cr_expect_str_eq(buf, "redis://user:****@h");
	backend_url_mask("redis://h:1/0", buf, sizeof buf);
	cr_expect_str_eq(buf, "redis://h:1/0");
	/* An '@' after the authority is no userinfo. */
	backend_url_mask("redis://h/0?x=a@b", buf, sizeof buf);
	cr_expect_str_eq(buf, "redis://h/0?x=a@b");
	backend_url_mask(NULL, buf, sizeof buf);
	cr_expect_str_eq(buf, "");
	backend_url_mask("redis://:secret@h", buf, 12);
	cr_expect_str_eq(buf, "redis://:**");
	cr_expect_null(strstr(buf, "sec"));
}

Test(backend_open, rpc_and_unknown_schemes_are_clear_errors)
{
	warren_error err = {0};
	backend *b = (backend *)1;
	cr_assert_eq(backend_open("rpc://", NULL, &b, &err), WARREN_EINVAL);
	cr_expect_null(b);
	cr_expect_str_eq(err.msg, "result backend 'rpc://': rpc backend needs a broker "
				  "connection: set backend_options.conn");
	warren_error_clear(&err);
	cr_assert_eq(backend_open("mongodb://u:pw@h/db", NULL, &b, &err), WARREN_EINVAL);
	cr_expect_str_eq(err.msg, "result backend 'mongodb://u:****@h/db': unsupported scheme; "
				  "expected redis://, rediss://, rpc:// or none");
}

Test(backend_open, rediss_is_refused_without_tls_support)
{
	warren_error err = {0};
	backend *b = NULL;
	int rc = backend_open("rediss://:pw@localhost:6380/0", NULL, &b, &err);
#if HIREDIS_MAJOR < 1
	cr_assert_eq(rc, WARREN_EINVAL);
	cr_expect(strstr(err.msg, "result backend 'rediss://:****@localhost:6380/0': rediss:// "
				  "needs hiredis >= 1.0") == err.msg, "%s", err.msg);
#else
	(void)rc;
#endif
	cr_expect_null(b);
}

Test(backend_open, bad_options_are_refused)
{
	warren_error err = {0};
	backend_options o;
	backend_options_default(&o);
	cr_expect_eq(o.result_expires, 86400);
	o.result_expires = -1;
	backend *b = NULL;
	cr_assert_eq(backend_open("none", &o, &b, &err), WARREN_EINVAL);
	cr_expect_str_eq(err.msg, "result backend 'none': result_expires -1 is negative");
}

Test(backend_open, an_unreachable_redis_names_the_masked_url)
{
	warren_error err = {0};
	backend_options o;
	backend_options_default(&o);
	o.connect_timeout_ms = 500;
	backend *b = NULL;
	/* Port 1 on loopback: nothing listens, the connection is refused. */
	cr_assert_eq(backend_open("redis://:pw@127.0.0.1:1/0", &o, &b, &err), WARREN_EBACKEND);
	cr_expect(strstr(err.msg, "result backend 'redis://:****@127.0.0.1:1/0': connect: ") ==
		  err.msg, "%s", err.msg);
	cr_expect_null(strstr(err.msg, "pw"));
	cr_expect_null(b);
}

Test(backend_none, store_succeeds_and_reading_is_a_clear_error)
{
	static const char *const urls[] = {"none", "", "none://", NULL};
	for (size_t i = 0; i < sizeof urls / sizeof urls[0]; i++) {
		warren_error err = {0};
		backend *b = NULL;
		cr_assert_eq(backend_open(urls[i], NULL, &b, &err), 0, "%s", err.msg);
		cr_expect_str_eq(backend_name(b), "none");

		schema_result r;
		schema_result_init(&r);
		cr_assert_eq(schema_result_set_task_id(&r, "t1", &err), 0);
		cr_expect_eq(backend_store(b, &r, NULL, &err), 0, "%s", err.msg);
		cr_expect_eq(backend_get(b, "t1", &r, &err), WARREN_EINVAL);
		cr_expect(strstr(err.msg, "results are disabled (result_backend: none)"),
			  "%s", err.msg);
		warren_error_clear(&err);
		const char *ids[] = {"t1"};
		cr_expect_eq(backend_wait_results(b, ids, 1, 1000, &r, NULL, &err), WARREN_EINVAL);
		cr_expect(strstr(err.msg, "cannot wait for a result: results are disabled"),
			  "%s", err.msg);
		warren_error_clear(&err);
		cr_expect_eq(backend_forget(b, "t1", &err), WARREN_EINVAL);
		schema_result_release(&r);
		backend_free(b);
	}
	backend_free(NULL);
}

Test(backend_none, store_needs_a_task_id)
{
	warren_error err = {0};
	backend *b = NULL;
	cr_assert_eq(backend_open("none", NULL, &b, &err), 0);
	schema_result r;
	schema_result_init(&r);
	cr_expect_eq(backend_store(b, &r, NULL, &err), WARREN_EINVAL);
	cr_expect_str_eq(err.msg, "result backend 'none': store: the result has no task id");
	backend_free(b);
}
