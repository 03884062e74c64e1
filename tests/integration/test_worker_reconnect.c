/* tests/integration/test_worker_reconnect.c - a worker survives its broker:
 * RabbitMQ is killed with SIGKILL in the middle of 200 test.sleep tasks and
 * started again on the same port with the same data; the worker reconnects,
 * resumes consuming, and every task ends SUCCESS in Redis. At-least-once:
 * a task that ran while its delivery's connection died is redelivered, and
 * the worker skips the copy when its SUCCESS is already stored; the copies
 * that ran twice anyway are counted and printed.
 *
 * The node is private to the test (scripts/rabbitmq-local start/kill/
 * restart), so the worker and the Celery client helper are pointed at it
 * through WARREN_TEST_BROKER. The suite's .fini reaps the worker and removes
 * the node whatever happened.
 */
#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "support.h"
#include "test_worker_support.h"

#define WARREN_BIN WARREN_BUILD_DIR "/bin/warren"
#define N_TASKS 200

static char node[64];
static char ids_path[256], tasks_path[256];

static long long now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void nap_ms(int ms)
{
	struct timespec d = {ms / 1000, (long)(ms % 1000) * 1000000};
	nanosleep(&d, NULL);
}

static int node_cmd(const char *what, char *out, size_t cap)
{
	char cmd[512];
	snprintf(cmd, sizeof cmd, "%s %s --name %s 2>/dev/null",
		 support_source_path("scripts/rabbitmq-local"), what, node);
	return support_run(cmd, out, cap);
}

static void cleanup(void)
{
	worker_test_fini();
	if (node[0]) {
		char cmd[512];
		node_cmd("stop", NULL, 0);
		snprintf(cmd, sizeof cmd, "rm -rf %s/.run/rabbitmq-%s", WARREN_SOURCE_DIR, node);
		support_run(cmd, NULL, 0);
		node[0] = '\0';
	}
	if (ids_path[0])
		unlink(ids_path);
	if (tasks_path[0])
		unlink(tasks_path);
}

TestSuite(integration_worker_reconnect, .fini = cleanup, .timeout = 120);

static void task_id(char *buf, size_t cap, int i)
{
	snprintf(buf, cap, "reconnect-%d-%04d", (int)getpid(), i);
}

/* Publishes the tasks with `warren send --from` (publisher confirms: each is
 * on the node's disk before the command returns, so the kill cannot take a
 * task that was never stored) and writes their ids for `collect`. */
static void send_tasks(const char *url, const char *queue)
{
	snprintf(ids_path, sizeof ids_path, "/tmp/warren-reconnect-ids.%d.json", (int)getpid());
	snprintf(tasks_path, sizeof tasks_path, "/tmp/warren-reconnect-tasks.%d", (int)getpid());
	FILE *ids = fopen(ids_path, "w"), *tasks = fopen(tasks_path, "w");
	cr_assert(ids && tasks);
	fputc('[', ids);
	for (int i = 0; i < N_TASKS; i++) {
		char id[64];
		task_id(id, sizeof id, i);
		fprintf(ids, "%s\"%s\"", i ? ", " : "", id);
		fprintf(tasks, "{\"task\": \"test.sleep\", \"args\": [0.01], \"id\": \"%s\"}\n", id);
	}
	fputs("]\n", ids);
	fclose(ids);
	fclose(tasks);
	char cmd[1024], out[4096];
	snprintf(cmd, sizeof cmd, "%s --broker '%s' send --queue %s --from %s 2>&1", WARREN_BIN,
		 url, queue, tasks_path);
	cr_assert_eq(support_run(cmd, out, sizeof out), 0, "%s", out);
}

/* How many ids ran more than once (and lines of them into list). */
static int count_duplicates(pid_t pid, char *list, size_t cap)
{
	FILE *f = fopen(worker_test_log(pid), "r");
	cr_assert_not_null(f);
	static char text[4 << 20];
	size_t len = fread(text, 1, sizeof text - 1, f);
	text[len] = '\0';
	fclose(f);
	int dups = 0;
	list[0] = '\0';
	for (int i = 0; i < N_TASKS; i++) {
		char needle[96];
		int runs = 0;
		task_id(needle, sizeof needle, i);
		size_t nl = strlen(needle);
		snprintf(needle + nl, sizeof needle - nl, "] succeeded in");
		for (const char *p = text; (p = strstr(p, needle)); p++)
			runs++;
		if (runs > 1) {
			size_t used = strlen(list);
			if (dups++ < 10)
				snprintf(list + used, cap - used, " #%d(x%d)", i, runs);
		}
	}
	return dups;
}

Test(integration_worker_reconnect, worker_survives_kill_9_of_the_broker)
{
	snprintf(node, sizeof node, "reconnect-%d", (int)getpid());
	char url[256];
	cr_assert_eq(node_cmd("start", url, sizeof url), 0, "could not start node %s", node);
	url[strcspn(url, "\n")] = '\0';
	setenv("WARREN_TEST_BROKER", url, 1); /* the worker and the client helper */

	const char *queue = worker_test_queue(0, "reconnect");
	char args[1024];
	snprintf(args, sizeof args, "%s -P threads -c 2 -Q %s --result-backend %s -l info",
		 WORKER_PLUGINS, queue, support_service_url("WARREN_TEST_REDIS"));
	pid_t pid = worker_test_start(args);
	cr_assert(worker_test_wait_log(pid, " ready:", 15000), "see %s", worker_test_log(pid));
	send_tasks(url, queue);

	/* Kill the node while the tasks run. */
	long long t0 = now_ms();
	int done_before;
	while ((done_before = worker_test_count_log(pid, "succeeded in")) < 30) {
		cr_assert_lt(now_ms() - t0, 20000, "only %d tasks ran; see %s", done_before,
			     worker_test_log(pid));
		nap_ms(5);
	}
	long long killed_at = now_ms();
	cr_assert_eq(node_cmd("kill", NULL, 0), 0, "rabbitmq-local kill failed");
	char again[256];
	cr_assert_eq(node_cmd("restart", again, sizeof again), 0, "restart failed");
	again[strcspn(again, "\n")] = '\0';
	cr_assert_str_eq(again, url, "the node came back elsewhere");
	long long back_at = now_ms();
	cr_assert(worker_test_wait_log(pid, "connection restored", 30000),
		  "no reconnect; see %s", worker_test_log(pid));
	long long restored_at = now_ms();

	const char *json = worker_test_client(support_service_url("WARREN_TEST_REDIS"), "collect",
					      ids_path, "40");
	long long all_done_at = now_ms();
	char list[512];
	int dups = count_duplicates(pid, list, sizeof list);
	int skipped = worker_test_count_log(pid, "already succeeded, not run again");
	fprintf(stderr,
		"worker_reconnect: %d of %d done when the node was killed; node back after %.1f s; "
		"worker reconnected %.1f s after that, all done %.1f s after the kill; "
		"%d redelivered copies skipped (SUCCESS stored), %d ran twice%s\n",
		done_before, N_TASKS, (back_at - killed_at) / 1000.0,
		(restored_at - back_at) / 1000.0, (all_done_at - killed_at) / 1000.0, skipped, dups,
		list);
	worker_test_assert_ok(json, "every task SUCCESS after the broker was killed");
	cr_expect_geq(worker_test_count_log(pid, "connection restored"), 1);
	cr_expect_eq(waitpid(pid, NULL, WNOHANG), 0, "the worker exited; see %s",
		     worker_test_log(pid));
	/* Still consuming: one more task after everything settled. */
	char cmd[1024], out[1024];
	snprintf(cmd, sizeof cmd,
		 "%s --broker '%s' --result-backend %s call --queue %s --timeout 10 math.add 2 3 2>&1",
		 WARREN_BIN, url, support_service_url("WARREN_TEST_REDIS"), queue);
	cr_expect_eq(support_run(cmd, out, sizeof out), 0, "%s", out);
	cr_expect(strstr(out, "5") != NULL, "%s", out);
	cr_assert_eq(worker_test_stop(pid, SIGTERM, 15000), 0, "warm shutdown; see %s",
		     worker_test_log(pid));
}

/* Issue 4: an unreachable broker at start is exit 69 with the masked URL and
 * the reason; broker.connection_retry_on_startup: false makes it immediate. */
Test(integration_worker_reconnect, unreachable_broker_at_start_exits_69)
{
	char cfg[256];
	snprintf(cfg, sizeof cfg, "/tmp/warren-reconnect-%d.yaml", (int)getpid());
	FILE *f = fopen(cfg, "w");
	cr_assert_not_null(f);
	fputs("broker:\n  connection_retry_on_startup: false\n  connect_timeout: 2\n", f);
	fclose(f);
	char cmd[1024], out[4096];
	snprintf(cmd, sizeof cmd,
		 "%s --config %s --broker amqp://guest:secret@127.0.0.1:1/ "
		 "--plugin %s/plugins/test.so -Q q 2>&1",
		 WORKER_BIN, cfg, WARREN_BUILD_DIR);
	long long t0 = now_ms();
	int rc = support_run(cmd, out, sizeof out);
	long long took = now_ms() - t0;
	unlink(cfg);
	cr_expect_eq(rc, 69, "exit %d: %s", rc, out);
	cr_expect_lt(took, 5000, "took %lld ms", took);
	cr_expect(strstr(out, "amqp://guest:****@127.0.0.1:1/") != NULL, "%s", out);
	cr_expect(strstr(out, "secret") == NULL, "password shown: %s", out);
	cr_expect(strstr(out, "socket error") != NULL || strstr(out, "refused") != NULL,
		  "no reason: %s", out);
}
