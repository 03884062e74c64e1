/* tests/integration/test_broker_crash.c - issue 3's crash test: RabbitMQ is
 * killed with SIGKILL (no shutdown of any kind) while `warren send --from -`
 * publishes 20,000 tasks into a durable queue, then started again on the
 * same port with the same data. The command must ride it out with its
 * reconnect and backoff, report 0 failed and exit 0, and every task must be
 * in the queue at least once: a message RabbitMQ confirmed is on disk, and
 * one it had not confirmed is published again after the reconnect (so a few
 * duplicates are allowed, and counted).
 *
 * The node is a private one (scripts/rabbitmq-local start/kill/restart); the
 * suite's .fini kills the CLI and removes the node whatever happened.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "broker_support.h"
#include "schemas/schemas.h"
#include "support.h"
#include "warren/warren.h"

#define WARREN_BIN WARREN_BUILD_DIR "/bin/warren"
#define N_TASKS 20000
#define KILL_AT 5000 /* messages in the queue when the broker dies */

static char node[64];
static pid_t cli_pid;
static char errlog[256];

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

/* scripts/rabbitmq-local <what> --name <node>; stdout into out. */
static int node_cmd(const char *what, char *out, size_t cap)
{
	char cmd[512];
	snprintf(cmd, sizeof cmd, "%s %s --name %s 2>/dev/null",
		 support_source_path("scripts/rabbitmq-local"), what, node);
	return support_run(cmd, out, cap);
}

static void cleanup(void)
{
	if (cli_pid > 0) {
		kill(cli_pid, SIGKILL);
		waitpid(cli_pid, NULL, 0);
		cli_pid = 0;
	}
	if (node[0]) {
		char cmd[512];
		node_cmd("stop", NULL, 0);
		snprintf(cmd, sizeof cmd, "rm -rf %s/.run/rabbitmq-%s", WARREN_SOURCE_DIR, node);
		support_run(cmd, NULL, 0);
		node[0] = '\0';
	}
	if (errlog[0])
		unlink(errlog);
}

TestSuite(integration_broker_crash, .fini = cleanup, .timeout = 120);

/* Starts `warren ... send --from -` with its stdin on a pipe (returned) and
 * its stderr in errlog. */
static FILE *start_cli(const char *url, const char *queue)
{
	int fds[2];
	cr_assert_eq(pipe(fds), 0, "pipe: %s", strerror(errno));
	/* Close-on-exec: a broker node started later (restart) must not
	 * inherit the write end, or the command never sees the end of input. */
	fcntl(fds[0], F_SETFD, FD_CLOEXEC);
	fcntl(fds[1], F_SETFD, FD_CLOEXEC);
	snprintf(errlog, sizeof errlog, "/tmp/warren-crash-%d.log", (int)getpid());
	cli_pid = fork();
	cr_assert_neq(cli_pid, -1, "fork: %s", strerror(errno));
	if (cli_pid == 0) {
		int fd = open(errlog, O_WRONLY | O_CREAT | O_TRUNC, 0644);
		dup2(fds[0], 0);
		if (fd >= 0)
			dup2(fd, 2);
		close(fds[0]);
		close(fds[1]);
		/* --retry: longer than a node takes to come back from a crash. */
		execl(WARREN_BIN, WARREN_BIN, "--retry", "60", "--broker", url, "send", "--queue",
		      queue, "--from", "-", (char *)NULL);
		_exit(127);
	}
	close(fds[0]);
	FILE *in = fdopen(fds[1], "w");
	cr_assert_not_null(in);
	return in;
}

/* Feeds the task lines at about 10,000 a second, so the broker dies while
 * the command is still publishing; blocks (on the pipe) while it cannot. */
static void *feed(void *arg)
{
	FILE *in = arg;
	for (int i = 0; i < N_TASKS; i++) {
		if (fprintf(in, "{\"task\": \"math.add\", \"args\": [%d, 1]}\n", i) < 0)
			break;
		if (i % 100 == 99) {
			fflush(in);
			nap_ms(10);
		}
	}
	fclose(in);
	return NULL;
}

static uint32_t depth(warren_client *c, const char *queue)
{
	uint32_t n = 0;
	warren_error err = {0};
	if (warren_queue_stats(c, queue, &n, NULL, &err) != 0)
		return 0;
	return n;
}

/* The first arg of a task body [[i, 1], {}, embed]; -1 if it is not one. */
static long first_arg(const broker_message *m)
{
	msgpack_zone zone;
	msgpack_zone_init(&zone, 256);
	schema_limits lim;
	schema_limits_default(&lim);
	msgpack_object body;
	long v = -1;
	if (schema_unpack(m->body, m->body_len, &lim, "body", &zone, &body, NULL) == 0 &&
	    body.type == MSGPACK_OBJECT_ARRAY && body.via.array.size == 3 &&
	    body.via.array.ptr[0].type == MSGPACK_OBJECT_ARRAY &&
	    body.via.array.ptr[0].via.array.size == 2 &&
	    body.via.array.ptr[0].via.array.ptr[0].type == MSGPACK_OBJECT_POSITIVE_INTEGER)
		v = (long)body.via.array.ptr[0].via.array.ptr[0].via.u64;
	msgpack_zone_destroy(&zone);
	return v;
}

/* Takes all `count` messages out of queue; checks every task 0..N-1 is
 * there and reports the duplicates. */
static void drain_and_check(const char *url, const char *queue, uint32_t count)
{
	broker_conn_opts o;
	broker_test_opts(&o);
	o.urls = url;
	broker_conn *bc = NULL;
	warren_error err = {0};
	cr_assert_eq(broker_conn_new(&o, &bc, &err), 0, "%s", err.msg);
	cr_assert_eq(broker_consume(bc, queue, 0, true, NULL, 0, &err), 0, "%s", err.msg);
	unsigned char *seen = calloc(N_TASKS, 1);
	cr_assert_not_null(seen);
	for (uint32_t got = 0; got < count; got++) {
		broker_message *m = broker_test_receive(bc, 10000);
		long i = first_arg(m);
		cr_assert(i >= 0 && i < N_TASKS, "message %u is not one of ours", got);
		if (seen[i] < 255)
			seen[i]++;
		broker_message_free(m);
	}
	int missing = 0, first = -1, dups = 0, shown = 0;
	char list[512] = "";
	for (int i = 0; i < N_TASKS; i++) {
		if (!seen[i] && missing++ == 0)
			first = i;
		if (seen[i] > 1) {
			dups += seen[i] - 1;
			if (shown++ < 20) {
				size_t len = strlen(list);
				snprintf(list + len, sizeof list - len, " #%d(x%d)", i, seen[i]);
			}
		}
	}
	fprintf(stderr, "broker_crash: %u messages for %d tasks: %d missing, %d duplicate(s)%s%s\n",
		count, N_TASKS, missing, dups, dups ? ":" : "", list);
	cr_expect_eq(missing, 0, "%d confirmed tasks lost, the first is #%d", missing, first);
	free(seen);
	broker_conn_free(bc);
}

static void read_log(char *buf, size_t cap)
{
	buf[0] = '\0';
	FILE *f = fopen(errlog, "r");
	if (!f)
		return;
	size_t got = fread(buf, 1, cap - 1, f);
	buf[got] = '\0';
	fclose(f);
}

Test(integration_broker_crash, send_from_survives_kill_9_of_the_broker)
{
	signal(SIGPIPE, SIG_IGN); /* a CLI that died must fail the test, not kill it */
	snprintf(node, sizeof node, "crash-%d", (int)getpid());
	char url[256];
	cr_assert_eq(node_cmd("start", url, sizeof url), 0, "could not start node %s", node);
	url[strcspn(url, "\n")] = '\0';
	char queue[64];
	snprintf(queue, sizeof queue, "warren.test.crash.%d", (int)getpid());

	FILE *in = start_cli(url, queue);
	pthread_t feeder;
	cr_assert_eq(pthread_create(&feeder, NULL, feed, in), 0);

	/* Kill the node once a good part is in the queue, while the rest is
	 * still being sent. */
	warren_client *c = NULL;
	warren_error err = {0};
	cr_assert_eq(warren_client_new(url, NULL, NULL, &c, &err), 0, "%s", err.msg);
	long long t0 = now_ms();
	uint32_t before = 0;
	while ((before = depth(c, queue)) < KILL_AT) {
		cr_assert_lt(now_ms() - t0, 30000, "only %u tasks arrived", before);
		nap_ms(5);
	}
	warren_client_free(c);
	long long killed_at = now_ms();
	cr_assert_eq(node_cmd("kill", NULL, 0), 0, "rabbitmq-local kill failed");
	char again[256];
	cr_assert_eq(node_cmd("restart", again, sizeof again), 0, "restart failed");
	again[strcspn(again, "\n")] = '\0';
	cr_assert_str_eq(again, url, "the node came back elsewhere");
	long long back_at = now_ms();

	pthread_join(feeder, NULL);
	int status = 0;
	long long until = now_ms() + 60000;
	while (waitpid(cli_pid, &status, WNOHANG) == 0) {
		cr_assert_lt(now_ms(), until, "warren send still running 60 s after the restart");
		nap_ms(20);
	}
	cli_pid = 0;
	long long done_at = now_ms();
	char log[8192];
	read_log(log, sizeof log);
	fprintf(stderr,
		"broker_crash: killed with %u in the queue; node back after %.1f s; the command "
		"finished %.1f s later\n",
		before, (back_at - killed_at) / 1000.0, (done_at - back_at) / 1000.0);
	cr_expect(WIFEXITED(status) && WEXITSTATUS(status) == 0, "status %d: %s", status, log);
	unsigned long sent = 0, confirmed = 0, failed = 0, bad = 0;
	const char *summary = strstr(log, "warren: sent ");
	cr_assert_not_null(summary, "no summary: %s", log);
	cr_assert_eq(sscanf(summary, "warren: sent %lu, confirmed %lu, failed %lu, bad lines %lu",
			    &sent, &confirmed, &failed, &bad),
		     4, "%s", log);
	cr_expect_eq(sent, N_TASKS, "%s", log);
	cr_expect_eq(confirmed, N_TASKS, "%s", log);
	cr_expect_eq(failed, 0, "%s", log);
	cr_expect_eq(bad, 0, "%s", log);

	cr_assert_eq(warren_client_new(url, NULL, NULL, &c, &err), 0, "%s", err.msg);
	uint32_t n = depth(c, queue);
	warren_client_free(c);
	cr_expect_geq(n, confirmed, "queue holds %u of %lu confirmed", n, confirmed);
	drain_and_check(url, queue, n);
}
