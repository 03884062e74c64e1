/* tests/unit/test_worker_metrics.c - worker/metrics.c's exposition text
 * without a broker: counters by task and state, the cumulative histogram,
 * label escaping and the cap on distinct task labels. The HTTP side is
 * tested against a real worker in tests/integration/test_worker_monitor.c. */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "support.h"
#include "worker/worker.h"

static metrics *start(void)
{
	metrics_options o = {.port = support_free_port(), .pool = POOL_THREADS, .concurrency = 3,
			     .consumers = 1};
	metrics *m = NULL;
	warren_error err = {0};
	cr_assert_eq(metrics_new(&o, &m, &err), 0, "%s", err.msg);
	return m;
}

static void expect_line(const char *text, const char *line)
{
	cr_expect(strstr(text, line), "no '%s' in:\n%s", line, text);
}

Test(worker_metrics, counts_states_and_a_cumulative_histogram_per_task)
{
	metrics *m = start();
	metrics_task_done(m, "math.add", "SUCCESS", 0.001);
	metrics_task_done(m, "math.add", "SUCCESS", 0.2);
	metrics_task_done(m, "math.add", "FAILURE", 100.0);
	metrics_task_done(m, "math.add", "REVOKED", -1); /* never ran: no sample */
	metrics_task_done(m, "math.add", "PENDING", 1);   /* not a final state: ignored */
	metrics_task_retried(m, "math.add", 0.01);
	metrics_dead_lettered(m);
	metrics_reconnected(m);
	metrics_gauges g = {.in_flight = 2, .prefetched = 5, .connected = true, .consuming = true};
	metrics_set(m, &g);
	char *text = metrics_render(m);
	cr_assert_not_null(text);
	expect_line(text, "warren_tasks_total{task=\"math.add\",state=\"SUCCESS\"} 2\n");
	expect_line(text, "warren_tasks_total{task=\"math.add\",state=\"FAILURE\"} 1\n");
	expect_line(text, "warren_tasks_total{task=\"math.add\",state=\"REVOKED\"} 1\n");
	expect_line(text, "warren_task_retries_total{task=\"math.add\"} 1\n");
	expect_line(text, "warren_task_runtime_seconds_bucket{task=\"math.add\",le=\"0.005\"} 1\n");
	expect_line(text, "warren_task_runtime_seconds_bucket{task=\"math.add\",le=\"0.01\"} 2\n");
	expect_line(text, "warren_task_runtime_seconds_bucket{task=\"math.add\",le=\"0.25\"} 3\n");
	expect_line(text, "warren_task_runtime_seconds_bucket{task=\"math.add\",le=\"60\"} 3\n");
	expect_line(text, "warren_task_runtime_seconds_bucket{task=\"math.add\",le=\"+Inf\"} 4\n");
	expect_line(text, "warren_task_runtime_seconds_count{task=\"math.add\"} 4\n");
	expect_line(text, "warren_tasks_in_flight 2\n");
	expect_line(text, "warren_tasks_prefetched 5\n");
	expect_line(text, "warren_dead_lettered_total 1\n");
	expect_line(text, "warren_broker_reconnects_total 1\n");
	expect_line(text, "warren_broker_connected 1\n");
	expect_line(text, "warren_pool_children_alive 3\n");
	cr_expect_null(strstr(text, "PENDING"));
	free(text);
	metrics_free(m);
}

Test(worker_metrics, task_labels_are_escaped_and_capped)
{
	metrics *m = start();
	metrics_task_done(m, "we\"ird\\na\nme", "SUCCESS", -1);
	char name[32];
	for (int i = 0; i < 600; i++) {
		snprintf(name, sizeof name, "t.%d", i);
		metrics_task_done(m, name, "SUCCESS", -1);
	}
	char *text = metrics_render(m);
	cr_assert_not_null(text);
	expect_line(text, "warren_tasks_total{task=\"we\\\"ird\\\\na\\nme\",state=\"SUCCESS\"} 1\n");
	expect_line(text, "warren_tasks_total{task=\"t.510\",state=\"SUCCESS\"} 1\n");
	cr_expect_null(strstr(text, "task=\"t.511\""), "the 513th name gets no label of its own");
	expect_line(text, "warren_tasks_total{task=\"_other_\",state=\"SUCCESS\"} 89\n");
	free(text);
	metrics_free(m);
}

Test(worker_metrics, a_bad_bind_address_is_a_config_error)
{
	metrics_options o = {.port = support_free_port(), .bind = "localhost", .concurrency = 1};
	metrics *m = NULL;
	warren_error err = {0};
	cr_assert_eq(metrics_new(&o, &m, &err), WARREN_ECONFIG);
	cr_expect_str_eq(err.msg, "metrics: bind address 'localhost': not an IPv4 or IPv6 address");
	metrics_free(NULL);
}
