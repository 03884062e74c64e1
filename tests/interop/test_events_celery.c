/* tests/interop/test_events_celery.c - a real warren-worker with -E watched
 * by Celery 5.2's own monitor (EventReceiver + State, events_celery.py) and
 * by `warren events`, over a run of 100 tasks that succeed, fail and retry.
 *
 * Other tests share the broker and their workers heartbeat too, so every
 * count here is filtered by this test's worker hostname. */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "support.h"
#include "../integration/test_worker_support.h"

#define WARREN_CLI WARREN_BUILD_DIR "/bin/warren"
#define EVENTS_HELPER WARREN_SOURCE_DIR "/tests/interop/events_celery.py"
#define N_ADD 80
#define N_FAIL 10
#define N_FLAKY 10

static pid_t clis[2] = {-1, -1};
static char outs[2][128];

static void events_fini(void)
{
	for (int i = 0; i < 2; i++) {
		if (clis[i] > 0) {
			kill(clis[i], SIGKILL);
			waitpid(clis[i], NULL, 0);
		}
		if (outs[i][0] && !getenv("WARREN_TEST_KEEP_LOGS"))
			unlink(outs[i]);
	}
	worker_test_fini();
}

static void nap_ms(int ms)
{
	struct timespec d = {ms / 1000, (long)(ms % 1000) * 1000000};
	nanosleep(&d, NULL);
}

/* Starts `warren --broker <test broker> events <args>` with stdout into
 * outs[slot]. */
static void start_cli(int slot, const char *args)
{
	snprintf(outs[slot], sizeof outs[slot], "/tmp/warren-test-events.%d.%d.out", (int)getpid(),
		 slot);
	char line[512];
	snprintf(line, sizeof line, "events %s", args);
	char *argv[16] = {WARREN_CLI, "--broker", (char *)support_service_url("WARREN_TEST_BROKER")};
	int n = 3;
	for (char *save = NULL, *t = strtok_r(line, " ", &save); t && n < 15;
	     t = strtok_r(NULL, " ", &save))
		argv[n++] = t;
	argv[n] = NULL;
	pid_t pid = fork();
	cr_assert_neq(pid, -1);
	if (pid == 0) {
		int fd = open(outs[slot], O_WRONLY | O_CREAT | O_TRUNC, 0644);
		if (fd >= 0)
			dup2(fd, 1);
		execv(argv[0], argv);
		_exit(127);
	}
	clis[slot] = pid;
}

/* Counts the JSON lines of outs[slot] whose hostname is host (NULL: any)
 * and type is type (NULL: any). */
static int count_events(int slot, const char *host, const char *type)
{
	FILE *f = fopen(outs[slot], "r");
	if (!f)
		return 0;
	char line[1 << 16];
	int n = 0;
	while (fgets(line, sizeof line, f)) {
		json_t *ev = json_loads(line, 0, NULL);
		const char *h = json_string_value(json_object_get(ev, "hostname"));
		const char *t = json_string_value(json_object_get(ev, "type"));
		if (ev && t && (!host || (h && strcmp(h, host) == 0)) && (!type || strcmp(t, type) == 0))
			n++;
		json_decref(ev);
	}
	fclose(f);
	return n;
}

static bool wait_events(int slot, const char *host, const char *type, int want, int timeout_ms)
{
	for (int waited = 0; waited < timeout_ms; waited += 50) {
		if (count_events(slot, host, type) >= want)
			return true;
		nap_ms(50);
	}
	return false;
}

/* Waits up to timeout_ms for CLI slot to exit; its exit status, or -1. */
static int wait_cli(int slot, int timeout_ms)
{
	int status;
	for (int waited = 0; waited <= timeout_ms; waited += 20) {
		if (waitpid(clis[slot], &status, WNOHANG) == clis[slot]) {
			clis[slot] = -1;
			return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
		}
		nap_ms(20);
	}
	return -1;
}

static void run_celery_monitor(const char *queue, const char *host)
{
	static char out[1 << 16];
	char cmd[1024];
	snprintf(cmd, sizeof cmd, "WARREN_TEST_BROKER='%s' /usr/bin/python3 %s run %s %s %d %d %d",
		 support_service_url("WARREN_TEST_BROKER"), EVENTS_HELPER, queue, host, N_ADD,
		 N_FAIL, N_FLAKY);
	int rc = support_run(cmd, out, sizeof out);
	cr_assert_eq(rc, 0, "%s exited %d: %s", cmd, rc, out);
	worker_test_assert_ok(out, "Celery's EventReceiver and State");
}

Test(interop_events, celery_monitor_and_warren_events_see_a_run_of_100_tasks,
     .fini = events_fini, .timeout = 90)
{
	char host[96], args[1024];
	snprintf(host, sizeof host, "events%d@warren-test", (int)getpid());
	const char *queue = worker_test_queue(0, "events");

	/* `warren events` first, so it sees worker-online too: it is bound
	 * once it prints another worker's heartbeat, or ours. */
	start_cli(0, "--json");
	snprintf(args, sizeof args, "%s -Q %s -c 4 -P threads -E -n %s", WORKER_PLUGINS, queue, host);
	nap_ms(1000);
	pid_t w = worker_test_start(args);
	cr_assert(worker_test_wait_log(w, "ready", 15000), "worker never got ready");
	cr_assert(wait_events(0, host, "worker-heartbeat", 1, 6000), "no heartbeat from %s", host);
	start_cli(1, "--json --count 40 --timeout 30");

	run_celery_monitor(queue, host);

	cr_assert_eq(worker_test_stop(w, SIGTERM, 15000), 0);
	cr_assert(wait_events(0, host, "worker-offline", 1, 5000), "no worker-offline");
	kill(clis[0], SIGINT);
	cr_assert_eq(wait_cli(0, 3000), 0, "warren events did not exit 0 on SIGINT");
	const struct {
		const char *type;
		int want;
	} want[] = {
		{"task-received", N_ADD + N_FAIL + 2 * N_FLAKY},
		{"task-started", N_ADD + N_FAIL + 2 * N_FLAKY},
		{"task-succeeded", N_ADD + N_FLAKY},
		{"task-failed", N_FAIL},
		{"task-retried", N_FLAKY},
		{"worker-offline", 1},
	};
	for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
		cr_expect_eq(count_events(0, host, want[i].type), want[i].want, "%s: %d, want %d",
			     want[i].type, count_events(0, host, want[i].type), want[i].want);
	cr_expect_leq(count_events(0, host, "worker-online"), 1);
	cr_expect_geq(count_events(0, host, "worker-heartbeat"), 1);

	cr_assert_eq(wait_cli(1, 30000), 0, "warren events --count 40 did not end with 0");
	cr_assert_eq(count_events(1, NULL, NULL), 40);
}

Test(interop_events, without_heartbeat_a_worker_sends_no_worker_events, .fini = events_fini,
     .timeout = 30)
{
	char host[96], args[1024];
	snprintf(host, sizeof host, "quiet%d@warren-test", (int)getpid());
	start_cli(0, "--json --timeout 5");
	nap_ms(500);
	snprintf(args, sizeof args, "%s -Q %s -c 1 -P threads --without-heartbeat -n %s",
		 WORKER_PLUGINS, worker_test_queue(0, "quiet"), host);
	pid_t w = worker_test_start(args);
	cr_assert(worker_test_wait_log(w, "ready", 15000));
	cr_assert_eq(wait_cli(0, 8000), 0);
	cr_assert_eq(count_events(0, host, NULL), 0, "Celery's Heart is off: no worker-* events");
}
