/* tests/unit/test_worker_loop_helpers.c - the worker loop's pure parts:
 * ISO-8601 eta/expires, retry delays with Celery's backoff, autoretry
 * matching, the token bucket, the command line and log lines. */
#include <criterion/criterion.h>
#include <jansson.h>
#include <string.h>

#include "worker/worker.h"

static void ok(int rc, const warren_error *err)
{
	cr_assert_eq(rc, 0, "rc %d: %s", rc, err->msg);
}

Test(worker_eta, parses_celery_iso_times_with_offsets_and_naive_as_utc)
{
	warren_error err = {0};
	double t;
	ok(loop_parse_iso8601("1970-01-01T00:00:00", &t, &err), &err);
	cr_expect_float_eq(t, 0.0, 1e-9);
	ok(loop_parse_iso8601("2026-11-27T10:18:50.001900+00:00", &t, &err), &err);
	cr_expect_float_eq(t, 1795774730.0019, 1e-6);
	double z;
	ok(loop_parse_iso8601("2026-11-27T10:18:50.0019Z", &z, &err), &err);
	cr_expect_float_eq(z, t, 1e-6);
	double plus2;
	ok(loop_parse_iso8601("2026-11-27T12:18:50.001900+02:00", &plus2, &err), &err);
	cr_expect_float_eq(plus2, t, 1e-6, "+02:00 is two hours ahead of UTC");
	ok(loop_parse_iso8601("2000-02-29 12:00:00", &t, &err), &err);
	cr_expect_float_eq(t, 951825600.0, 1e-6);
}

Test(worker_eta, refuses_what_is_not_a_time)
{
	static const char *const bad[] = {"", "tomorrow", "2026-13-01T00:00:00",
					  "2026-11-27T25:00:00", "2026-11-27T10:18:50+0", "2026-11-27X"};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		warren_error err = {0};
		double t;
		cr_expect_eq(loop_parse_iso8601(bad[i], &t, &err), WARREN_EDECODE, "'%s'", bad[i]);
		cr_expect(strstr(err.msg, "not an ISO-8601") != NULL, "%s", err.msg);
	}
}

Test(worker_eta, formats_what_it_parses)
{
	char buf[40];
	loop_format_iso8601(1795774730.0019, buf);
	cr_expect_str_eq(buf, "2026-11-27T10:18:50.001900+00:00");
	double back;
	ok(loop_parse_iso8601(buf, &back, NULL), &(warren_error){0});
	cr_expect_float_eq(back, 1795774730.0019, 1e-6);
}

static loop_task_conf conf(void)
{
	return (loop_task_conf){.default_retry_delay = 180, .retry_backoff_max = 600,
				.retry_jitter = false, .max_retries = 3};
}

Test(worker_retry, handler_countdown_wins_else_default_delay)
{
	loop_task_conf c = conf();
	unsigned seed = 1;
	cr_expect_float_eq(loop_retry_delay(&c, 0, 0, false, &seed), 0, 1e-9);
	cr_expect_float_eq(loop_retry_delay(&c, 0, 7.5, false, &seed), 7.5, 1e-9);
	cr_expect_float_eq(loop_retry_delay(&c, 2, -1, false, &seed), 180, 1e-9);
	cr_expect_float_eq(loop_retry_delay(&c, 2, -1, true, &seed), 180, 1e-9,
			   "autoretry without backoff: default_retry_delay");
}

Test(worker_retry, autoretry_backoff_doubles_caps_and_jitters)
{
	loop_task_conf c = conf();
	c.retry_backoff = 2;
	c.retry_backoff_max = 20;
	unsigned seed = 1;
	cr_expect_float_eq(loop_retry_delay(&c, 0, -1, true, &seed), 2, 1e-9);
	cr_expect_float_eq(loop_retry_delay(&c, 3, -1, true, &seed), 16, 1e-9);
	cr_expect_float_eq(loop_retry_delay(&c, 4, -1, true, &seed), 20, 1e-9, "capped");
	c.retry_jitter = true;
	for (int i = 0; i < 100; i++) {
		double d = loop_retry_delay(&c, 10, -1, true, &seed);
		cr_expect(d >= 0 && d <= 20, "full jitter in [0, cap], got %g", d);
	}
}

Test(worker_retry, autoretry_matches_names_qualified_names_and_exception)
{
	static const char *const list[] = {"ValueError", "mymod.Boom", NULL};
	static const char *const any[] = {"Exception", NULL};
	cr_expect(loop_autoretry_matches(list, "builtins", "ValueError"));
	cr_expect(loop_autoretry_matches(list, "mymod", "Boom"));
	cr_expect_not(loop_autoretry_matches(list, "other", "Boom2"));
	cr_expect_not(loop_autoretry_matches(list, "builtins", "TypeError"));
	cr_expect_not(loop_autoretry_matches(NULL, "builtins", "ValueError"));
	cr_expect(loop_autoretry_matches(any, "x", "Anything"));
}

#define S 1000000000LL

Test(worker_ratelimit, token_bucket_spaces_tasks_at_the_rate)
{
	rate_bucket b;
	rate_bucket_init(&b, 10, 0); /* 10/s */
	cr_expect_eq(rate_bucket_take(&b, 0), 0, "starts with one token");
	int64_t wait = rate_bucket_take(&b, 0);
	cr_expect(wait > 0 && wait <= S / 10, "next in <= 100 ms, got %lld", (long long)wait);
	cr_expect_eq(rate_bucket_take(&b, S / 10), 0, "a token after 100 ms");
	cr_expect_gt(rate_bucket_take(&b, S / 10), 0);
	/* A long idle time saves up no burst beyond one token. */
	cr_expect_eq(rate_bucket_take(&b, 100 * S), 0);
	cr_expect_gt(rate_bucket_take(&b, 100 * S), 0);
}

Test(worker_ratelimit, per_minute_and_unlimited)
{
	rate_bucket b;
	rate_bucket_init(&b, 600.0 / 60, 0);
	cr_expect_eq(rate_bucket_take(&b, 0), 0);
	cr_expect_gt(rate_bucket_take(&b, 0), 0);
	rate_bucket_init(&b, 0, 0);
	for (int i = 0; i < 1000; i++)
		cr_expect_eq(rate_bucket_take(&b, 0), 0, "0 = unlimited");
}

Test(worker_cli, parses_long_short_and_inline_values)
{
	char *argv[] = {"warren-worker", "--config", "w.yaml", "-c", "8", "--queues=a,b",
			"-Pthreads", "--plugin", "x.so", "--plugin=y.so", "--log-format", "json",
			"-l", "INFO", "--check-config", "--prefetch-multiplier", "0", NULL};
	worker_cli cli;
	warren_error err = {0};
	ok(worker_cli_parse(17, argv, &cli, &err), &err);
	cr_expect_str_eq(cli.config, "w.yaml");
	cr_expect_eq(cli.concurrency, 8);
	cr_expect_str_eq(cli.queues, "a,b");
	cr_expect_str_eq(cli.pool, "threads");
	cr_expect_eq(cli.n_plugins, 2);
	cr_expect_str_eq(cli.plugins[1], "y.so");
	cr_expect_str_eq(cli.log_format, "json");
	cr_expect(cli.check_config);
	cr_expect_eq(cli.prefetch_multiplier, 0);
	cr_expect_null(cli.broker);
}

Test(worker_cli, rejects_bad_usage_naming_the_option)
{
	static struct {
		int argc;
		char *argv[4];
		const char *msg;
	} cases[] = {
		{2, {"w", "--bogus"}, "unknown option '--bogus'"},
		{2, {"w", "--concurrency"}, "'--concurrency' needs a value"},
		{3, {"w", "-c", "x"}, "not a non-negative integer"},
		{3, {"w", "-c", "0"}, "at least 1"},
		{3, {"w", "--pool", "solo"}, "expected threads or prefork"},
		{3, {"w", "--log-format", "xml"}, "expected text or json"},
		{3, {"w", "-l", "loud"}, "'--loglevel'"},
		{2, {"w", "--help=1"}, "takes no value"},
		{2, {"w", "stray"}, "unexpected argument 'stray'"},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		worker_cli cli;
		warren_error err = {0};
		cr_expect_eq(worker_cli_parse(cases[i].argc, cases[i].argv, &cli, &err),
			     WARREN_EINVAL, "case %zu", i);
		cr_expect(strstr(err.msg, cases[i].msg) != NULL, "case %zu: '%s'", i, err.msg);
	}
}

Test(worker_log, text_line_reads_like_celery)
{
	struct timespec t = {.tv_sec = 1795774730, .tv_nsec = 1900000};
	char buf[256];
	size_t n = log_format_line(buf, sizeof buf, CONFIG_LOG_TEXT, CONFIG_LOG_INFO, &t, "celery@h",
				   NULL, "Task x[1] received");
	cr_expect_str_eq(buf, "[2026-11-27 10:18:50,001: INFO/celery@h] Task x[1] received\n");
	cr_expect_eq(n, strlen(buf));
}

Test(worker_log, json_line_carries_task_fields_and_escapes)
{
	struct timespec t = {.tv_sec = 0, .tv_nsec = 0};
	log_fields f = {"id-1", "math.add", "SUCCESS", 0.5};
	char buf[512];
	log_format_line(buf, sizeof buf, CONFIG_LOG_JSON, CONFIG_LOG_ERROR, &t, "h", &f,
			"say \"hi\"\n\\ \x01");
	json_error_t jerr;
	json_t *doc = json_loads(buf, 0, &jerr);
	cr_assert_not_null(doc, "%s: %s", buf, jerr.text);
	cr_expect_str_eq(json_string_value(json_object_get(doc, "task_id")), "id-1");
	cr_expect_str_eq(json_string_value(json_object_get(doc, "task")), "math.add");
	cr_expect_str_eq(json_string_value(json_object_get(doc, "state")), "SUCCESS");
	cr_expect_str_eq(json_string_value(json_object_get(doc, "level")), "ERROR");
	cr_expect_float_eq(json_real_value(json_object_get(doc, "runtime")), 0.5, 1e-9);
	cr_expect_str_eq(json_string_value(json_object_get(doc, "msg")), "say \"hi\"\n\\ \x01");
	json_decref(doc);
}

Test(worker_log, truncated_json_line_is_still_one_object)
{
	struct timespec t = {0};
	char msg[600];
	memset(msg, 'x', sizeof msg - 1);
	msg[sizeof msg - 1] = '\0';
	char buf[200];
	size_t n = log_format_line(buf, sizeof buf, CONFIG_LOG_JSON, CONFIG_LOG_INFO, &t, NULL,
				   NULL, msg);
	cr_expect_lt(n, sizeof buf);
	cr_expect_eq(buf[n - 1], '\n');
	json_error_t jerr;
	json_t *doc = json_loads(buf, 0, &jerr);
	cr_expect_not_null(doc, "%s: %s", buf, jerr.text);
	json_decref(doc);
}

Test(worker_log, level_names_parse_like_celery)
{
	config_log_level l;
	cr_expect_eq(log_level_parse("DEBUG", &l), 0);
	cr_expect_eq(l, CONFIG_LOG_DEBUG);
	cr_expect_eq(log_level_parse("warn", &l), 0);
	cr_expect_eq(l, CONFIG_LOG_WARNING);
	cr_expect_eq(log_level_parse("nope", &l), WARREN_EINVAL);
}
