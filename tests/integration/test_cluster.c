/* tests/integration/test_cluster.c - a real distributed engine: three
 * RabbitMQ nodes (scripts/rabbitmq-cluster), a quorum queue with a delivery
 * limit and a dead-letter exchange, two warren workers and `warren send
 * --from -`, all given the three URLs with node 1 first so they start on
 * node 1. While 10,000 tasks flow (the producer is fed in paced batches, so
 * it is mid-send too), node 1 is SIGKILLed: both workers and the producer
 * must fail over to another node and go on.
 *
 * Checks: every task ends with a SUCCESS result in Redis (read back by
 * Celery itself, the interop helper's `collect`); executions are counted
 * from the workers' own "Task test.sleep[ID] succeeded in" log lines, one
 * per completed run, so a task that ran twice is seen twice. At-least-once
 * allows a re-run for what was unsettled when the connection died: the
 * workers' unacked deliveries (2 workers x prefetch 16) and the producer's
 * unconfirmed publishes, which it sends again on the new node (at most its
 * window, 1000). The counts and the failover times are printed. */
#define _DEFAULT_SOURCE /* timegm */
#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "support.h"
#include "test_worker_support.h"

#define N_TASKS 10000
#define BATCH 250                  /* lines fed to the producer per 100 ms */
#define KILL_AFTER_LINES 4000      /* node 1 dies while the producer is mid-send */
#define CONCURRENCY 4
#define PREFETCH (CONCURRENCY * 4) /* the default prefetch multiplier */
#define PRODUCER_WINDOW 1000       /* broker_conn_opts' publish_window default */

static char cluster_name[64];

static const char *cluster_script(void)
{
	return support_source_path("scripts/rabbitmq-cluster");
}

/* Unique to this test and to the services instance (make test, a private
 * BUILD run): a cluster leaked by a crashed run is replaced by the next. */
static const char *name(void)
{
	if (!cluster_name[0]) {
		const char *svc = getenv("WARREN_SERVICES_NAME");
		snprintf(cluster_name, sizeof cluster_name, "itest_%s", svc && *svc ? svc : "test");
	}
	return cluster_name;
}

static void cluster_fini(void)
{
	worker_test_fini();
	char cmd[1024], out[256];
	snprintf(cmd, sizeof cmd, "%s stop --name %s", cluster_script(), name());
	support_run(cmd, out, sizeof out);
}

TestSuite(integration_cluster, .fini = cluster_fini, .timeout = 150);

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

static long long wall_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* The UTC time stamp of the worker log's first line holding needle
 * ("[2026-01-02 03:04:05,678: ..."), in ms since the epoch; -1 if none. */
static long long log_time_ms(pid_t pid, const char *needle)
{
	FILE *f = fopen(worker_test_log(pid), "r");
	char line[1024];
	long long t = -1;
	while (f && t < 0 && fgets(line, sizeof line, f)) {
		struct tm tm = {0};
		int ms = 0;
		if (!strstr(line, needle) ||
		    sscanf(line, "[%d-%d-%d %d:%d:%d,%d", &tm.tm_year, &tm.tm_mon, &tm.tm_mday,
			   &tm.tm_hour, &tm.tm_min, &tm.tm_sec, &ms) != 7)
			continue;
		tm.tm_year -= 1900;
		tm.tm_mon -= 1;
		t = (long long)timegm(&tm) * 1000 + ms;
	}
	if (f)
		fclose(f);
	return t;
}

static int succeeded(pid_t w1, pid_t w2)
{
	return worker_test_count_log(w1, "succeeded in") + worker_test_count_log(w2, "succeeded in");
}

/* Adds each "Task test.sleep[<prefix><i>] succeeded" line of the log to runs[i]. */
static void count_runs(const char *log, const char *prefix, unsigned char *runs)
{
	FILE *f = fopen(log, "r");
	cr_assert_not_null(f, "open %s", log);
	char line[1024], needle[128];
	snprintf(needle, sizeof needle, "Task test.sleep[%s", prefix);
	while (fgets(line, sizeof line, f)) {
		const char *p = strstr(line, needle);
		if (!p || !strstr(p, "] succeeded in"))
			continue;
		long i = strtol(p + strlen(needle), NULL, 10);
		if (i >= 0 && i < N_TASKS && runs[i] < 255)
			runs[i]++;
	}
	fclose(f);
}

static void write_config(const char *path, const char *urls, const char *queue)
{
	FILE *f = fopen(path, "w");
	cr_assert_not_null(f);
	fprintf(f,
		"broker:\n"
		"  url: \"%s\"\n"
		"  heartbeat: 10\n"
		"  connect_timeout: 2\n"
		"queues:\n"
		"  %s:\n"
		"    queue_type: quorum\n"
		"    delivery_limit: 5\n"
		"    dead_letter: {exchange: warren.dead, routing_key: %s.dead}\n"
		"task_default_queue: %s\n"
		"worker:\n"
		"  queues: [%s]\n"
		"result_backend: %s\n",
		urls, queue, queue, queue, queue, support_service_url("WARREN_TEST_REDIS"));
	fclose(f);
}

static pid_t start_worker(const char *config, const char *urls, const char *host)
{
	char args[2048];
	/* --broker again: worker_test_start gives the single test broker first. */
	snprintf(args, sizeof args, "--config %s --broker %s %s -P threads -c %d -l info -n %s",
		 config, urls, WORKER_PLUGINS, CONCURRENCY, host);
	pid_t pid = worker_test_start(args);
	cr_assert(worker_test_wait_log(pid, " ready:", 20000), "see %s", worker_test_log(pid));
	return pid;
}

Test(integration_cluster, node_lost_mid_run_every_task_succeeds)
{
	long long t0 = now_ms();
	char cmd[2048], urls[1024];
	snprintf(cmd, sizeof cmd, "%s start --name %s", cluster_script(), name());
	int rc = support_run(cmd, urls, sizeof urls);
	cr_assert_eq(rc, 0, "%s: exit %d", cmd, rc);
	urls[strcspn(urls, "\n")] = '\0';
	long long t_cluster = now_ms();
	char node1_port[16];
	const char *colon = strchr(strchr(urls, '@'), ':');
	snprintf(node1_port, sizeof node1_port, ":%d/", atoi(colon + 1));

	char queue[64], config[128], ids_path[128], sent_log[128];
	snprintf(queue, sizeof queue, "warren.test.cluster.%d", (int)getpid());
	snprintf(config, sizeof config, "/tmp/warren-test-cluster.%d.yaml", (int)getpid());
	snprintf(ids_path, sizeof ids_path, "/tmp/warren-test-cluster.%d.ids.json", (int)getpid());
	snprintf(sent_log, sizeof sent_log, "/tmp/warren-test-cluster.%d.send.log", (int)getpid());
	write_config(config, urls, queue);

	pid_t w1 = start_worker(config, urls, "c1@cluster");
	pid_t w2 = start_worker(config, urls, "c2@cluster");
	/* Both on node 1, the one about to die. */
	cr_assert_eq(worker_test_count_log(w1, node1_port), 1, "see %s", worker_test_log(w1));
	cr_assert_eq(worker_test_count_log(w2, node1_port), 1, "see %s", worker_test_log(w2));

	char prefix[32];
	snprintf(prefix, sizeof prefix, "c%d-", (int)getpid());
	FILE *ids = fopen(ids_path, "w");
	cr_assert_not_null(ids);
	snprintf(cmd, sizeof cmd, "%s/bin/warren --config %s send --from - >%s 2>&1",
		 WARREN_BUILD_DIR, config, sent_log);
	FILE *producer = popen(cmd, "w");
	cr_assert_not_null(producer, "%s", cmd);
	long long t_kill = 0, t_kill_wall = 0;
	fputc('[', ids);
	for (int i = 0; i < N_TASKS; i++) {
		fprintf(producer, "{\"task\": \"test.sleep\", \"args\": [0.002], \"id\": \"%s%d\"}\n",
			prefix, i);
		fprintf(ids, "%s\"%s%d\"", i ? "," : "", prefix, i);
		if ((i + 1) % BATCH)
			continue;
		fflush(producer);
		nap_ms(100);
		if (i + 1 == KILL_AFTER_LINES) {
			t_kill = now_ms();
			t_kill_wall = wall_ms();
			snprintf(cmd, sizeof cmd, "%s kill 1 --name %s", cluster_script(), name());
			char out[256];
			cr_assert_eq(support_run(cmd, out, sizeof out), 0, "%s: %s", cmd, out);
		}
	}
	fputs("]\n", ids);
	fclose(ids);
	int send_status = pclose(producer);
	long long t_sent = now_ms();

	/* Failover: each worker logs when its connection is back, on another node. */
	long long fo[2] = {-1, -1};
	pid_t ws[2] = {w1, w2};
	for (int k = 0; k < 2; k++) {
		cr_assert(worker_test_wait_log(ws[k], "connection restored to", 30000),
			  "worker %d never reconnected; see %s", k + 1, worker_test_log(ws[k]));
		fo[k] = log_time_ms(ws[k], "connection restored to") - t_kill_wall;
	}
	for (long long until = now_ms() + 60000; succeeded(w1, w2) < N_TASKS && now_ms() < until;)
		nap_ms(100);
	long long t_done = now_ms();

	char sent[512] = "";
	FILE *sf = fopen(sent_log, "r");
	if (sf) {
		size_t n = fread(sent, 1, sizeof sent - 1, sf);
		sent[n] = '\0';
		fclose(sf);
	}
	cr_expect_eq(send_status, 0, "warren send --from - failed: %s", sent);

	/* Every result SUCCESS, as Celery reads it back from Redis. */
	const char *json = worker_test_client(support_service_url("WARREN_TEST_REDIS"), "collect",
					      ids_path, "60");
	worker_test_assert_ok(json, "every task SUCCESS after losing node 1");

	static unsigned char runs[N_TASKS];
	memset(runs, 0, sizeof runs);
	count_runs(worker_test_log(w1), prefix, runs);
	count_runs(worker_test_log(w2), prefix, runs);
	int never = 0, twice = 0, extra = 0;
	for (int i = 0; i < N_TASKS; i++) {
		never += runs[i] == 0;
		twice += runs[i] > 1;
		extra += runs[i] > 1 ? runs[i] - 1 : 0;
	}
	fprintf(stderr,
		"integration_cluster: cluster up in %.1f s; %d tasks sent in %.1f s (%s); "
		"node 1 killed after %d lines; workers reconnected after %lld / %lld ms; all run "
		"%.1f s after the kill; tasks run more than once: %d (%d extra runs; allowed: "
		"%d unacked + %d unconfirmed)\n",
		(t_cluster - t0) / 1000.0, N_TASKS, (t_sent - t_kill) / 1000.0 +
		KILL_AFTER_LINES / BATCH * 0.1, sent[0] ? strtok(sent, "\n") : "?",
		KILL_AFTER_LINES, fo[0], fo[1], (t_done - t_kill) / 1000.0, twice, extra,
		2 * PREFETCH, PRODUCER_WINDOW);
	cr_expect_eq(never, 0, "%d task(s) never ran to success", never);
	cr_expect_leq(extra, 2 * PREFETCH + PRODUCER_WINDOW, "more re-runs than at-least-once allows");

	cr_expect_eq(worker_test_stop(w1, SIGTERM, 15000), 0);
	cr_expect_eq(worker_test_stop(w2, SIGTERM, 15000), 0);
	unlink(config);
	unlink(ids_path);
	unlink(sent_log);
}
