/* tests/integration/test_worker_shutdown.c - never lose a task: a warm
 * shutdown (SIGTERM) lets in-flight tasks finish, store and ack; a worker
 * killed with SIGKILL in the middle of 2,000 tasks loses none of them once a
 * new worker has started (acks late: the broker redelivers); a warm
 * shutdown hands prefetched tasks back at once. The Celery
 * client helper sends the tasks and reads their states from Redis. */
#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "support.h"
#include "test_worker_support.h"
#include "warren/warren.h"

static void nap_ms(int ms)
{
	struct timespec d = {ms / 1000, (long)(ms % 1000) * 1000000};
	nanosleep(&d, NULL);
}

TestSuite(integration_worker_shutdown, .fini = worker_test_fini, .timeout = 240);

static pid_t start(const char *queue, int concurrency, const char *extra)
{
	char args[1024];
	snprintf(args, sizeof args, "%s -P threads -c %d -Q %s --result-backend %s -l info %s",
		 WORKER_PLUGINS, concurrency, queue, support_service_url("WARREN_TEST_REDIS"),
		 extra ? extra : "");
	pid_t pid = worker_test_start(args);
	cr_assert(worker_test_wait_log(pid, " ready:", 15000), "see %s", worker_test_log(pid));
	return pid;
}

/* Sends n test.sleep(sec) tasks; their ids go to a file for `collect`. */
static const char *send_sleeps(const char *queue, int n, const char *sec, char *path, size_t cap)
{
	char arg[64];
	snprintf(arg, sizeof arg, "%d %s", n, sec);
	const char *ids = worker_test_client(support_service_url("WARREN_TEST_REDIS"), "send",
					     queue, arg);
	snprintf(path, cap, "/tmp/warren-test-ids.%d.%s.json", (int)getpid(), sec);
	FILE *f = fopen(path, "w");
	cr_assert_not_null(f);
	fputs(ids, f);
	fclose(f);
	return path;
}

Test(integration_worker_shutdown, warm_shutdown_finishes_in_flight_tasks)
{
	const char *queue = worker_test_queue(0, "warm");
	pid_t pid = start(queue, 4, NULL);
	char path[256];
	send_sleeps(queue, 4, "1", path, sizeof path);
	cr_assert(worker_test_wait_log(pid, "test.sleep", 10000));
	/* All four are running (concurrency 4): now ask for a warm shutdown. */
	for (int i = 0; i < 200 && worker_test_count_log(pid, "received") < 4; i++)
		nap_ms(10);
	cr_assert_eq(worker_test_stop(pid, SIGTERM, 15000), 0, "warm shutdown status; see %s",
		     worker_test_log(pid));
	cr_expect_eq(worker_test_count_log(pid, "succeeded in"), 4, "see %s",
		     worker_test_log(pid));
	/* Stored and acked: every result is SUCCESS without another worker. */
	const char *json = worker_test_client(support_service_url("WARREN_TEST_REDIS"), "collect",
					      path, "10");
	worker_test_assert_ok(json, "results after warm shutdown");
	/* Acked: a new worker finds nothing to run again. */
	pid_t again = start(queue, 1, NULL);
	nap_ms(500);
	cr_expect_eq(worker_test_count_log(again, "received"), 0, "a task was not acked");
	cr_assert_eq(worker_test_stop(again, SIGTERM, 10000), 0);
	unlink(path);
}

/* Prefetch 8 over 2 running: a warm shutdown cancels the consumer and gives
 * the 6 prefetched-but-not-started tasks back to the queue at once, while
 * the 2 running ones finish, store SUCCESS and are acked. */
Test(integration_worker_shutdown, warm_shutdown_requeues_prefetched_tasks_at_once)
{
	const char *queue = worker_test_queue(0, "prefetch");
	pid_t pid = start(queue, 2, "--prefetch-multiplier 4");
	char path[256];
	send_sleeps(queue, 10, "2", path, sizeof path);
	for (int i = 0; i < 500 && worker_test_count_log(pid, "received") < 8; i++)
		nap_ms(10);
	cr_assert_eq(worker_test_count_log(pid, "received"), 8, "prefetch; see %s",
		     worker_test_log(pid));
	warren_client *c = NULL;
	warren_error err = {0};
	cr_assert_eq(warren_client_new(support_service_url("WARREN_TEST_BROKER"), NULL, NULL, &c,
				       &err),
		     0, "%s", err.msg);
	kill(pid, SIGTERM);
	uint32_t ready = 0, consumers = 1;
	for (int i = 0; i < 150; i++) {
		cr_assert_eq(warren_queue_stats(c, queue, &ready, &consumers, &err), 0, "%s",
			     err.msg);
		if (ready == 8)
			break;
		nap_ms(10);
	}
	bool running = waitpid(pid, NULL, WNOHANG) == 0;
	warren_client_free(c);
	cr_expect_eq(ready, 8, "ready %u: 2 never delivered + 6 given back", ready);
	cr_expect_eq(consumers, 0, "the consumer was not cancelled");
	cr_expect(running, "the worker exited before its tasks finished");
	cr_assert_eq(worker_test_stop(pid, 0, 15000), 0, "warm shutdown; see %s",
		     worker_test_log(pid));
	cr_expect_eq(worker_test_count_log(pid, "succeeded in"), 2, "see %s", worker_test_log(pid));
	/* Nothing lost: a new worker runs the other 8, and all 10 are SUCCESS. */
	pid_t again = start(queue, 8, NULL);
	const char *json = worker_test_client(support_service_url("WARREN_TEST_REDIS"), "collect",
					      path, "20");
	worker_test_assert_ok(json, "every task SUCCESS after the requeue");
	cr_expect_eq(worker_test_count_log(again, "succeeded in"), 8, "see %s",
		     worker_test_log(again));
	cr_assert_eq(worker_test_stop(again, SIGTERM, 15000), 0);
	unlink(path);
}

Test(integration_worker_shutdown, kill_9_loses_no_task)
{
	const char *queue = worker_test_queue(0, "kill9");
	pid_t pid = start(queue, 8, NULL);
	char path[256];
	send_sleeps(queue, 2000, "0.01", path, sizeof path);
	/* Let it get well into the work, then kill it without warning. */
	for (int i = 0; i < 1000 && worker_test_count_log(pid, "succeeded in") < 300; i++)
		nap_ms(10);
	cr_assert_eq(worker_test_stop(pid, SIGKILL, 5000), 128 + SIGKILL);
	pid_t again = start(queue, 8, NULL);
	const char *json = worker_test_client(support_service_url("WARREN_TEST_REDIS"), "collect",
					      path, "120");
	worker_test_assert_ok(json, "every task SUCCESS after kill -9");
	cr_assert_eq(worker_test_stop(again, SIGTERM, 15000), 0);
	unlink(path);
}

Test(integration_worker_shutdown, second_signal_is_a_cold_shutdown)
{
	const char *queue = worker_test_queue(0, "cold");
	pid_t pid = start(queue, 1, NULL);
	char path[256];
	send_sleeps(queue, 1, "5", path, sizeof path);
	cr_assert(worker_test_wait_log(pid, "received", 10000));
	kill(pid, SIGTERM);
	cr_assert(worker_test_wait_log(pid, "warm shutdown", 5000));
	cr_assert_eq(worker_test_stop(pid, SIGTERM, 3000), 1, "cold shutdown exits 1 at once");
	/* Unacked: the task went back to the queue and a new worker runs it. */
	pid_t again = start(queue, 1, NULL);
	const char *json = worker_test_client(support_service_url("WARREN_TEST_REDIS"), "collect",
					      path, "20");
	worker_test_assert_ok(json, "task requeued by a cold shutdown ran again");
	cr_assert_eq(worker_test_stop(again, SIGTERM, 15000), 0);
	unlink(path);
}
