/* tests/unit/test_worker_reload.c - the pure part of a SIGHUP reload: the
 * diff of two configs into what applies live (log level and format,
 * per-task settings) and what needs a restart (broker, queues, pool, ...),
 * with passwords masked; and the threads pool's hard time limit refusal. */
#include <criterion/criterion.h>
#include <string.h>

#include "worker/worker.h"

static warren_config *load(const char *yaml)
{
	warren_config *cfg = NULL;
	warren_error err = {0};
	cr_assert_eq(config_load_string(yaml, strlen(yaml), "t.yaml", &cfg, &err), 0, "%s",
		     err.msg);
	return cfg;
}

static const reload_change *find(const reload_change *ch, size_t n, const char *key)
{
	for (size_t i = 0; i < n; i++)
		if (!strcmp(ch[i].key, key))
			return &ch[i];
	return NULL;
}

Test(worker_reload, identical_configs_differ_in_nothing)
{
	const char *y = "worker:\n  concurrency: 4\ntasks:\n  math.add:\n    rate_limit: 1/s\n";
	warren_config *a = load(y), *b = load(y);
	cr_expect_eq(reload_diff(a, b, NULL, 0), 0);
	config_free(a);
	config_free(b);
}

Test(worker_reload, names_live_and_restart_settings)
{
	warren_config *a = load("broker:\n  url: amqp://u:secret@h1//\n"
				"worker:\n  concurrency: 4\n  log_level: warning\n"
				"  queues: [a]\n"
				"tasks:\n  math.add:\n    rate_limit: 1/s\n    max_retries: 5\n");
	warren_config *b = load("broker:\n  url: amqp://u:other@h2//\n"
				"worker:\n  concurrency: 8\n  log_level: info\n"
				"  log_format: json\n  queues: [a, b]\n"
				"tasks:\n  math.add:\n    rate_limit: 100/s\n"
				"  text.upper:\n    soft_time_limit: 2\n");
	size_t n = reload_diff(a, b, NULL, 0);
	reload_change ch[32];
	cr_assert_leq(n, 32);
	cr_assert_eq(reload_diff(a, b, ch, 32), n);

	const reload_change *c = find(ch, n, "worker.concurrency");
	cr_assert_not_null(c);
	cr_expect(c->restart);
	cr_expect_str_eq(c->before, "4");
	cr_expect_str_eq(c->after, "8");
	c = find(ch, n, "worker.queues");
	cr_assert_not_null(c);
	cr_expect(c->restart);
	cr_expect_str_eq(c->after, "a,b");
	c = find(ch, n, "broker.urls");
	cr_assert_not_null(c);
	cr_expect(c->restart);
	cr_expect_str_eq(c->before, "amqp://u:****@h1//", "password masked: %s", c->before);
	cr_expect_null(strstr(c->after, "other"), "%s", c->after);

	c = find(ch, n, "worker.log_level");
	cr_assert_not_null(c);
	cr_expect_not(c->restart);
	cr_expect_str_eq(c->before, "warning");
	cr_expect_str_eq(c->after, "info");
	cr_expect_not_null(find(ch, n, "worker.log_format"));
	c = find(ch, n, "tasks.math.add.rate_limit");
	cr_assert_not_null(c);
	cr_expect_not(c->restart);
	cr_expect_str_eq(c->before, "1/s");
	cr_expect_str_eq(c->after, "100/s");
	c = find(ch, n, "tasks.math.add.max_retries");
	cr_assert_not_null(c, "a key dropped from the file goes back to its default");
	cr_expect_str_eq(c->after, "3");
	c = find(ch, n, "tasks.text.upper.soft_time_limit");
	cr_assert_not_null(c, "a task new in the file");
	cr_expect_str_eq(c->before, "0s");
	cr_expect_str_eq(c->after, "2s");
	cr_expect_null(find(ch, n, "worker.pool"), "unchanged settings are not named");

	/* A short out array: the count is still the whole diff. */
	cr_expect_eq(reload_diff(a, b, ch, 2), n);
	config_free(a);
	config_free(b);
}

Test(worker_reload, hard_time_limit_needs_prefork)
{
	warren_config *cfg = load("tasks:\n  test.sleep:\n    time_limit: 5\n");
	warren_error err = {0};
	cr_expect_eq(reload_check_time_limits(cfg, POOL_PREFORK, &err), 0);
	cr_expect_eq(reload_check_time_limits(cfg, POOL_THREADS, &err), WARREN_ECONFIG);
	cr_expect(strstr(err.msg, "t.yaml:2:3: tasks.test.sleep.time_limit: a hard time limit"),
		  "%s", err.msg);
	config_free(cfg);
}
