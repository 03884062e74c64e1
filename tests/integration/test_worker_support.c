/* tests/integration/test_worker_support.c - see test_worker_support.h. */
#include "test_worker_support.h"

#include <criterion/criterion.h>
#include <errno.h>
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

#define MAX_CHILDREN 8

/* Criterion runs each test in its own process: these statics are per test. */
static struct {
	pid_t pid;
	bool reaped;
	char log[256];
} children[MAX_CHILDREN];
static int n_children;

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

const char *worker_test_queue(int slot, const char *tag)
{
	static char names[4][128];
	snprintf(names[slot & 3], sizeof names[0], "warren.test.worker.%s.%d", tag, (int)getpid());
	return names[slot & 3];
}

static int split_args(char *line, char **argv, int max)
{
	int n = 0;
	char *save = NULL;
	for (char *t = strtok_r(line, " ", &save); t && n < max - 1; t = strtok_r(NULL, " ", &save))
		argv[n++] = t;
	argv[n] = NULL;
	return n;
}

pid_t worker_test_start(const char *args)
{
	cr_assert_lt(n_children, MAX_CHILDREN);
	const char *broker = support_service_url("WARREN_TEST_BROKER");
	char line[2048];
	snprintf(line, sizeof line, "%s --broker %s %s", WORKER_BIN, broker, args);
	char *argv[64];
	split_args(line, argv, 64);
	char log[256];
	snprintf(log, sizeof log, "/tmp/warren-test-worker.%d.%d.log", (int)getpid(), n_children);
	pid_t pid = fork();
	cr_assert_neq(pid, -1, "fork: %s", strerror(errno));
	if (pid == 0) {
		int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
		if (fd >= 0) {
			dup2(fd, 1);
			dup2(fd, 2);
		}
		execv(argv[0], argv);
		_exit(127);
	}
	children[n_children].pid = pid;
	snprintf(children[n_children].log, sizeof children[0].log, "%s", log);
	n_children++;
	return pid;
}

const char *worker_test_log(pid_t pid)
{
	for (int i = 0; i < n_children; i++)
		if (children[i].pid == pid)
			return children[i].log;
	return "/dev/null";
}

static char *slurp(const char *path)
{
	FILE *f = fopen(path, "r");
	if (!f)
		return NULL;
	size_t cap = 1 << 16, len = 0;
	char *buf = malloc(cap);
	for (size_t n; buf && (n = fread(buf + len, 1, cap - len - 1, f)) > 0;) {
		len += n;
		if (cap - len < 2) {
			cap *= 2;
			buf = realloc(buf, cap);
		}
	}
	fclose(f);
	if (buf)
		buf[len] = '\0';
	return buf;
}

int worker_test_count_log(pid_t pid, const char *needle)
{
	char *text = slurp(worker_test_log(pid));
	int n = 0;
	for (const char *p = text; p && (p = strstr(p, needle)); p += strlen(needle))
		n++;
	free(text);
	return n;
}

bool worker_test_wait_log(pid_t pid, const char *needle, int timeout_ms)
{
	long long until = now_ms() + timeout_ms;
	do {
		if (worker_test_count_log(pid, needle) > 0)
			return true;
		nap_ms(20);
	} while (now_ms() < until);
	return false;
}

static void forget(pid_t pid)
{
	for (int i = 0; i < n_children; i++)
		if (children[i].pid == pid)
			children[i].reaped = true;
}

int worker_test_stop(pid_t pid, int sig, int timeout_ms)
{
	if (sig)
		kill(pid, sig);
	long long until = now_ms() + timeout_ms;
	int status;
	for (;;) {
		pid_t r = waitpid(pid, &status, WNOHANG);
		if (r == pid)
			break;
		if (now_ms() >= until) {
			kill(pid, SIGKILL);
			waitpid(pid, &status, 0);
			forget(pid);
			return -1;
		}
		nap_ms(10);
	}
	forget(pid);
	return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

const char *worker_test_client(const char *backend_url, const char *mode, const char *queue,
			       const char *args)
{
	static char out[1 << 18];
	char cmd[1024];
	snprintf(cmd, sizeof cmd,
		 "WARREN_TEST_BROKER='%s' CELERY_RESULT_BACKEND='%s' /usr/bin/python3 %s %s %s %s",
		 support_service_url("WARREN_TEST_BROKER"), backend_url, WORKER_CLIENT, mode, queue,
		 args ? args : "");
	int rc = support_run(cmd, out, sizeof out);
	cr_assert_eq(rc, 0, "%s exited %d: %s", cmd, rc, out);
	return out;
}

void worker_test_assert_ok(const char *json, const char *what)
{
	json_error_t jerr;
	json_t *doc = json_loads(json, 0, &jerr);
	cr_assert_not_null(doc, "%s: not JSON: %s", what, json);
	bool ok = json_is_true(json_object_get(doc, "ok"));
	json_decref(doc);
	cr_assert(ok, "%s: %s", what, json);
}

void worker_test_fini(void)
{
	for (int i = 0; i < n_children; i++)
		if (children[i].pid > 0 && !children[i].reaped) {
			kill(children[i].pid, SIGKILL);
			waitpid(children[i].pid, NULL, 0);
			children[i].reaped = true;
		}
	if (getenv("WARREN_TEST_KEEP_LOGS"))
		return; /* for a post-mortem of a failed test */
	for (int i = 0; i < n_children; i++)
		unlink(children[i].log);
}
