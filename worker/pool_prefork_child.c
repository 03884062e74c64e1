/* worker/pool_prefork_child.c - a prefork child's life: from fork to exit it
 * reads job frames from its socket, runs each task with task_run and writes
 * a result frame back (see pool_prefork.c for the whole design).
 *
 * Everything here runs in the child only, single-threaded, with a copy of
 * the parent's memory: the registry (read-only) and the pool options. It
 * never touches the parent's objects and never returns: it leaves with
 * _exit(), so atexit handlers it inherited (Criterion's, LeakSanitizer's,
 * the worker's own) never run twice.
 *
 * Exit codes: 0 after EOF from the parent or after the last task when it
 * retires; 2 when a frame is broken or the parent is gone; 3 when its socket
 * cannot be set up; 4 when the parent died before the child started.
 *
 * The soft time limit, as billiard: a CLOCK_MONOTONIC timer raises SIGUSR1
 * at the deadline, and SIGUSR1 from anyone else means the same. A signal
 * handler receives no argument, so the child keeps one file-scope atomic
 * pointer to the running task's soft_limit_hit flag. It is the only global
 * this pool writes, and only children write it: the parent never installs
 * the handler nor stores the pointer.
 */
#define _GNU_SOURCE /* NSIG, SYS_close_range */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "worker.h"

#define TRACEBACK_MAX 4096

/* The running task's soft_limit_hit, or NULL between tasks. */
static _Atomic(atomic_bool *) soft_flag;

static void on_soft_limit(int signum)
{
	(void)signum;
	atomic_bool *flag = atomic_load(&soft_flag);
	if (flag)
		atomic_store(flag, true);
}

/* The child's exit: the plugin's stdio flushed (the parent flushed its own
 * before fork, so nothing is printed twice), no atexit handlers. */
static _Noreturn void child_exit(int code)
{
	fflush(NULL);
	_exit(code);
}

/* Signals back to their defaults (SIGSEGV too, so a crash is a crash even
 * when a sanitizer installed a handler in the parent), SIGINT ignored as in
 * Celery's children (Ctrl-C reaches the whole process group; the parent
 * decides about shutdown), SIGUSR1 the soft limit, and nothing blocked: the
 * loop may block signals for its signalfd, and the parent blocked all of them
 * across fork. */
static void reset_signals(void)
{
	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sigemptyset(&sa.sa_mask);
	sa.sa_handler = SIG_DFL;
	for (int sig = 1; sig < NSIG; sig++)
		if (sig != SIGKILL && sig != SIGSTOP)
			sigaction(sig, &sa, NULL); /* the reserved ones fail harmlessly */
	sa.sa_handler = SIG_IGN;
	sigaction(SIGINT, &sa, NULL);
	sa.sa_handler = on_soft_limit;
	sa.sa_flags = SA_RESTART; /* reads and writes restart; sleeps return EINTR */
	sigaction(SIGUSR1, &sa, NULL);
	sigset_t none;
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
}

/* Moves the socket to PREFORK_CHILD_FD and closes every other fd above
 * stderr: the broker connection above all must never be written by a child
 * (rabbitmq-c's framing state lives in the parent), and a sibling's socket
 * kept open here would hide that sibling's death from the parent. */
static void close_inherited_fds(int fd)
{
	if (fd != PREFORK_CHILD_FD) {
		if (dup2(fd, PREFORK_CHILD_FD) < 0)
			child_exit(3);
		fcntl(PREFORK_CHILD_FD, F_SETFD, FD_CLOEXEC); /* a plugin's exec must not inherit it */
	}
#ifdef SYS_close_range
	if (syscall(SYS_close_range, PREFORK_CHILD_FD + 1, ~0U, 0) == 0)
		return;
#endif
	struct rlimit rl;
	int max = getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < 65536 ? (int)rl.rlim_cur
									     : 65536;
	for (int i = PREFORK_CHILD_FD + 1; i < max; i++)
		close(i);
}

static void setup(int fd, int parent_pid)
{
	reset_signals();
	if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || getppid() != (pid_t)parent_pid)
		child_exit(4); /* the parent is already gone */
	close_inherited_fds(fd);
}

/* 0 after len bytes, 1 on EOF before the first byte, -1 otherwise. */
static int read_full(char *buf, size_t len)
{
	size_t got = 0;
	while (got < len) {
		ssize_t n = read(PREFORK_CHILD_FD, buf + got, len - got);
		if (n > 0)
			got += (size_t)n;
		else if (n == 0)
			return got == 0 ? 1 : -1;
		else if (errno != EINTR)
			return -1;
	}
	return 0;
}

static int write_full(const char *buf, size_t len)
{
	while (len > 0) {
		ssize_t n = send(PREFORK_CHILD_FD, buf, len, MSG_NOSIGNAL);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		buf += n;
		len -= (size_t)n;
	}
	return 0;
}

/* Reads one job frame's payload into *buf (grown as needed); 1 on a clean
 * EOF, -1 on a broken frame. */
static int read_frame(char **buf, size_t *cap, size_t *len)
{
	char head[PREFORK_FRAME_HEADER];
	int rc = read_full(head, sizeof head);
	if (rc != 0)
		return rc;
	uint32_t n = prefork_frame_length(head);
	if (n > PREFORK_FRAME_MAX)
		return -1;
	if (n > *cap) {
		char *p = realloc(*buf, n);
		if (!p)
			return -1;
		*buf = p;
		*cap = n;
	}
	*len = n;
	return read_full(*buf, n) == 0 ? 0 : -1;
}

/* A failure the worker reports itself, not the handler. */
static void ctx_fail(task_ctx *ctx, const char *type, const char *module, const char *msg)
{
	ctx->status = TASK_FAILURE;
	snprintf(ctx->exc_type, sizeof ctx->exc_type, "%s", type);
	snprintf(ctx->exc_module, sizeof ctx->exc_module, "%s", module);
	snprintf(ctx->exc_message, sizeof ctx->exc_message, "%s", msg);
}

/* Unpacks one packed part into the zone; nil when absent. -1 if the bytes
 * are not exactly one msgpack object. */
static int unpack_part(const void *p, size_t len, msgpack_zone *z, msgpack_object *out)
{
	out->type = MSGPACK_OBJECT_NIL;
	if (!p)
		return 0;
	size_t off = 0;
	if (msgpack_unpack(p, len, &off, z, out) != MSGPACK_UNPACK_SUCCESS || off != len) {
		out->type = MSGPACK_OBJECT_NIL;
		return -1;
	}
	return 0;
}

/* Fills ctx's inputs from the frame; fails the task if a part is broken. */
static int fill_inputs(task_ctx *ctx, const prefork_job_frame *j, msgpack_zone *z)
{
	ctx->id = j->task_id;
	ctx->name = j->task_name;
	ctx->retries = j->retries;
	const char *bad = unpack_part(j->headers, j->headers_len, z, &ctx->headers) ? "headers"
			  : unpack_part(j->args, j->args_len, z, &ctx->args)        ? "args"
			  : unpack_part(j->kwargs, j->kwargs_len, z, &ctx->kwargs)  ? "kwargs"
										    : NULL;
	if (!bad)
		return 0;
	char msg[64];
	snprintf(msg, sizeof msg, "%s: not one msgpack object", bad);
	ctx_fail(ctx, "DecodeError", "kombu.exceptions", msg);
	return -1;
}

/* Arms (seconds > 0) or disarms the soft-limit timer. */
static void arm_timer(timer_t *timer, double seconds)
{
	if (!timer)
		return; /* no timer: the deadline in the task context still works */
	struct itimerspec its;
	memset(&its, 0, sizeof its);
	if (seconds > 0) {
		its.it_value.tv_sec = (time_t)seconds;
		its.it_value.tv_nsec = (long)((seconds - (double)its.it_value.tv_sec) * 1e9);
		if (its.it_value.tv_sec == 0 && its.it_value.tv_nsec == 0)
			its.it_value.tv_nsec = 1;
	}
	timer_settime(*timer, 0, &its, NULL);
}

static void run_task(const registry *reg, const prefork_job_frame *j, task_ctx *ctx,
		     msgpack_zone *z, timer_t *timer)
{
	const registry_entry *e = registry_lookup(reg, j->task_name, strlen(j->task_name));
	ctx->entry = e;
	if (!e) {
		/* Celery raises NotRegistered(name): its one arg is the bare name
		 * (str() adds KeyError's quotes; the stored exc_message does not). */
		ctx_fail(ctx, "NotRegistered", "celery.exceptions", j->task_name);
		return;
	}
	if (fill_inputs(ctx, j, z) != 0)
		return;
	task_set_soft_limit(ctx, j->soft_time_limit);
	atomic_store(&soft_flag, &ctx->soft_limit_hit);
	arm_timer(timer, j->soft_time_limit);
	task_run(ctx, e);
	arm_timer(timer, 0);
	atomic_store(&soft_flag, NULL);
}

/* Resident set in KiB (Celery's max_memory_per_child unit), 0 if unknown. */
static long long rss_kib(void)
{
	FILE *f = fopen("/proc/self/statm", "r");
	if (!f)
		return 0;
	long long size = 0, resident = 0;
	int n = fscanf(f, "%lld %lld", &size, &resident);
	fclose(f);
	long page = sysconf(_SC_PAGESIZE);
	return n == 2 && page > 0 ? resident * (page / 1024) : 0;
}

/* As Celery: the task that crosses a limit finishes, then the child goes. */
static bool should_retire(const pool_options *o, int tasks_done)
{
	if (o->max_tasks_per_child > 0 && tasks_done >= o->max_tasks_per_child)
		return true;
	return o->max_memory_per_child > 0 && rss_kib() > o->max_memory_per_child;
}

/* Writes ctx's outcome as a result frame. */
static int report(const prefork_job_frame *j, task_ctx *ctx, double runtime, bool retiring)
{
	char tb[TRACEBACK_MAX] = "";
	if (ctx->status == TASK_FAILURE)
		task_format_traceback(ctx, tb, sizeof tb);
	prefork_result_frame r = {
		.seq = j->seq, .status = ctx->status, .exc_type = ctx->exc_type,
		.exc_module = ctx->exc_module, .exc_message = ctx->exc_message, .traceback = tb,
		.retry_countdown = ctx->retry_countdown, .runtime = runtime,
		.pid = (int64_t)getpid(), .retiring = retiring,
	};
	if (ctx->status == TASK_SUCCESS)
		r.result = task_result_bytes(ctx, &r.result_len);
	char *frame;
	size_t len;
	if (prefork_encode_result(&r, &frame, &len, NULL) != 0) {
		/* Too big for a frame (or no memory): report that instead. */
		ctx_fail(ctx, "EncodeError", "kombu.exceptions", "result too large for the prefork pool");
		r = (prefork_result_frame){
			.seq = j->seq, .status = TASK_FAILURE, .exc_type = ctx->exc_type,
			.exc_module = ctx->exc_module, .exc_message = ctx->exc_message,
			.runtime = runtime, .pid = (int64_t)getpid(), .retiring = retiring,
		};
		if (prefork_encode_result(&r, &frame, &len, NULL) != 0)
			return -1;
	}
	int rc = write_full(frame, len);
	free(frame);
	return rc;
}

/* One job: decode, run, report. 0 to go on, 1 to exit after it (retiring),
 * -1 on a broken frame or a parent gone. */
static int serve_one(const registry *reg, const pool_options *o, const char *payload,
		     size_t len, int tasks_done, timer_t *timer)
{
	msgpack_unpacked u;
	msgpack_unpacked_init(&u);
	prefork_job_frame j;
	int rc = -1;
	if (prefork_decode_job(payload, len, &u, &j, NULL) != 0)
		goto out_unpacked;
	msgpack_zone *z = msgpack_zone_new(4096);
	if (!z)
		goto out_unpacked;
	task_ctx ctx;
	task_ctx_init(&ctx);
	int64_t t0 = task_monotonic_ns();
	run_task(reg, &j, &ctx, z, timer);
	double runtime = (double)(task_monotonic_ns() - t0) / 1e9;
	bool retiring = should_retire(o, tasks_done + 1);
	if (report(&j, &ctx, runtime, retiring) == 0)
		rc = retiring ? 1 : 0;
	task_ctx_release(&ctx);
	msgpack_zone_free(z);
out_unpacked:
	msgpack_unpacked_destroy(&u);
	return rc;
}

_Noreturn void prefork_child_main(const registry *reg, const pool_options *o, int fd,
				  int parent_pid)
{
	setup(fd, parent_pid);
	struct sigevent sev;
	memset(&sev, 0, sizeof sev);
	sev.sigev_notify = SIGEV_SIGNAL;
	sev.sigev_signo = SIGUSR1;
	timer_t timer_storage;
	timer_t *timer = timer_create(CLOCK_MONOTONIC, &sev, &timer_storage) == 0 ? &timer_storage
										   : NULL;
	char *buf = NULL;
	size_t cap = 0, len = 0;
	int code = 0;
	for (int done = 0;; done++) {
		int rc = read_frame(&buf, &cap, &len);
		if (rc == 1)
			break; /* the parent closed our socket */
		if (rc == 0)
			rc = serve_one(reg, o, buf, len, done, timer);
		if (rc != 0) {
			code = rc < 0 ? 2 : 0;
			break;
		}
	}
	free(buf);
	child_exit(code);
}
