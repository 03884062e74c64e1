/* tests/unit/test_pool_prefork.c - the prefork pool with real child
 * processes and the real example plugins: results, crashes, hard and soft
 * time limits, child recycling, terminate, close and free. Every wait goes
 * through pt_wait (poll pool_fd, pool_tick, pool_take_done), as the loop does.
 *
 * A few handlers are registered here (registry_add) to break the protocol on
 * purpose from inside a child: they write to fd 3, which is where
 * pool_prefork.c puts a child's socket (CHILD_FD). */
#include <signal.h>
#include <time.h>
#include <unistd.h>

#include "pool_test.h"

static registry *reg;
static pool *pl;

static void setup(void)
{
	reg = pt_registry();
}

static void teardown(void)
{
	pool_free(pl);
	registry_free(reg);
}

TestSuite(pool_prefork, .init = setup, .fini = teardown, .timeout = 60);

static pool *open_pool(int concurrency, int max_tasks, long long max_kib)
{
	pool_options o = {.kind = POOL_PREFORK, .concurrency = concurrency,
			  .max_tasks_per_child = max_tasks, .max_memory_per_child = max_kib};
	warren_error err = {0};
	cr_assert_eq(pool_new(&o, reg, &pl, &err), 0, "%s", err.msg);
	return pl;
}

/* Runs one job to its end. */
static pool_job *run(pool_job *j, double timeout)
{
	pt_submit(pl, j);
	pool_job *d = pt_expect(pl, timeout);
	cr_assert_eq(d, j);
	return d;
}

/* ---- handlers that misbehave inside a child --------------------------------- */

static int garbage_task(warren_task *t)
{
	(void)t;
	static const char junk[] = "\x00\x00\x00\x05\xc1\xc1\xc1\xc1\xc1";
	ssize_t n = write(3, junk, sizeof junk - 1);
	(void)n;
	return 0;
}

static int half_frame_task(warren_task *t)
{
	(void)t;
	static const char half[] = "\x00\x00\x01\x00\x9c\x01";
	ssize_t n = write(3, half, sizeof half - 1);
	(void)n;
	_exit(0);
}

/* Returns the child's open fds (without the one listing them). */
static int fds_task(warren_task *t)
{
	DIR *d = opendir("/proc/self/fd");
	if (!d)
		return warren_task_fail(t, "OSError", "opendir");
	int fds[64], n = 0;
	for (struct dirent *e; (e = readdir(d)) && n < 64;)
		if (e->d_name[0] != '.' && atoi(e->d_name) != dirfd(d))
			fds[n++] = atoi(e->d_name);
	closedir(d);
	msgpack_packer *pk = warren_task_result(t);
	msgpack_pack_array(pk, (size_t)n);
	for (int i = 0; i < n; i++)
		msgpack_pack_int(pk, fds[i]);
	return 0;
}

/* Blocks in poll() for 5 s unless a signal wakes it: only the soft-limit
 * signal can end it early. */
static int block_task(warren_task *t)
{
	poll(NULL, 0, 5000);
	if (warren_task_soft_limit_passed(t))
		return warren_task_fail(t, "billiard.exceptions.SoftTimeLimitExceeded", "woken");
	return 0;
}

/* nap(path): creates the file at path, then sleeps up to 10 s honouring the
 * soft limit, so a test knows the child is running it. */
static int nap_task(warren_task *t)
{
	const char *path;
	size_t len;
	if (warren_task_arg_str(t, 0, &path, &len) != 0)
		return -1;
	char buf[256];
	snprintf(buf, sizeof buf, "%.*s", (int)len, path);
	FILE *f = fopen(buf, "w");
	if (f)
		fclose(f);
	for (int i = 0; i < 1000; i++) {
		if (warren_task_soft_limit_passed(t))
			return warren_task_fail(t, "billiard.exceptions.SoftTimeLimitExceeded", "napped");
		struct timespec ms10 = {.tv_nsec = 10000000};
		nanosleep(&ms10, NULL);
	}
	return 0;
}

static void add_builtin(const char *name, warren_task_fn fn)
{
	warren_error err = {0};
	cr_assert_eq(registry_add(reg, name, fn, NULL, &err), 0, "%s", err.msg);
}

/* Submits t.nap as job seq and waits (driving the pool) until it runs. */
static void submit_nap(uint64_t seq)
{
	char path[128];
	snprintf(path, sizeof path, "/tmp/warren-test-prefork-%d-%llu", (int)getpid(),
		 (unsigned long long)seq);
	unlink(path);
	pt_submit(pl, pt_job_str(seq, "t.nap", path));
	double until = pt_now() + 5;
	while (access(path, F_OK) != 0) {
		cr_assert(pt_now() < until, "t.nap did not start");
		cr_assert_null(pt_wait(pl, 0.005), "t.nap ended before it started");
	}
	unlink(path);
}

/* ---- results ------------------------------------------------------------------ */

Test(pool_prefork, math_add_1000_jobs_across_two_children_every_result_right)
{
	open_pool(2, 0, 0);
	enum { N = 1000 };
	double t0 = pt_now();
	for (uint64_t i = 1; i <= N; i++)
		pt_submit(pl, pt_job_ints(i, "math.add", (int64_t)i, 2 * (int64_t)i));
	bool seen[N + 1] = {0};
	int64_t pids[2] = {0, 0};
	for (int n = 0; n < N; n++) {
		pool_job *j = pt_expect(pl, 10);
		cr_assert(j->seq >= 1 && j->seq <= N && !seen[j->seq]);
		seen[j->seq] = true;
		cr_assert_eq(pt_result_int(j), 3 * (int64_t)j->seq);
		if (!pids[0] || pids[0] == j->worker_pid)
			pids[0] = j->worker_pid;
		else
			pids[1] = j->worker_pid;
		pool_job_free(j);
	}
	double dt = pt_now() - t0;
	cr_log_info("prefork: %d math.add jobs across 2 children in %.3f s: %.0f jobs/s", N, dt,
		    N / dt);
	fprintf(stderr, "prefork: %d math.add across 2 children: %.0f jobs/s\n", N, N / dt);
	cr_assert(pids[0] && pids[1] && pids[0] != pids[1], "both children should have run jobs");
	cr_assert_eq(pool_pending(pl), 0);
}

Test(pool_prefork, echo_round_trip_keeps_every_type)
{
	open_pool(1, 0, 0);
	msgpack_sbuffer sb;
	msgpack_sbuffer_init(&sb);
	msgpack_packer pk;
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	msgpack_pack_array(&pk, 8);
	msgpack_pack_int64(&pk, -5);
	msgpack_pack_uint64(&pk, UINT64_MAX);
	msgpack_pack_double(&pk, 2.5);
	msgpack_pack_str_with_body(&pk, "h\xc3\xa9llo", 6);
	msgpack_pack_bin_with_body(&pk, "\x00\x01\x02", 3);
	msgpack_pack_nil(&pk);
	msgpack_pack_true(&pk);
	msgpack_pack_array(&pk, 1);
	msgpack_pack_map(&pk, 1);
	msgpack_pack_str_with_body(&pk, "k", 1);
	msgpack_pack_ext_with_body(&pk, "xy", 2, 7);
	pool_job *j = pt_job(1, "test.echo", &sb);
	msgpack_sbuffer kw;
	msgpack_sbuffer_init(&kw);
	msgpack_packer_init(&pk, &kw, msgpack_sbuffer_write);
	msgpack_pack_map(&pk, 1);
	msgpack_pack_str_with_body(&pk, "a", 1);
	msgpack_pack_float(&pk, 1.5f);
	j->kwargs_len = kw.size;
	j->kwargs = msgpack_sbuffer_release(&kw);

	msgpack_unpacked in_args, in_kwargs, out;
	size_t off = 0;
	msgpack_unpacked_init(&in_args);
	msgpack_unpacked_init(&in_kwargs);
	msgpack_unpack_next(&in_args, j->args, j->args_len, &off);
	off = 0;
	msgpack_unpack_next(&in_kwargs, j->kwargs, j->kwargs_len, &off);

	run(j, 10);
	const msgpack_object *r = pt_result(j, &out);
	cr_assert_eq(r->type, MSGPACK_OBJECT_ARRAY);
	cr_assert_eq(r->via.array.size, 2);
	cr_assert(msgpack_object_equal(r->via.array.ptr[0], in_args.data));
	cr_assert(msgpack_object_equal(r->via.array.ptr[1], in_kwargs.data));
	cr_assert_neq(j->worker_pid, (int64_t)getpid(), "ran in a child");
	cr_assert(j->runtime >= 0 && j->runtime < 5);
	msgpack_unpacked_destroy(&out);
	msgpack_unpacked_destroy(&in_args);
	msgpack_unpacked_destroy(&in_kwargs);
	pool_job_free(j);
}

Test(pool_prefork, large_args_and_result_cross_many_partial_reads_and_writes)
{
	open_pool(1, 0, 0);
	size_t n = 4u << 20;
	char *big = malloc(n + 1);
	cr_assert_not_null(big);
	for (size_t i = 0; i < n; i++)
		big[i] = (char)('a' + i % 26);
	big[n] = '\0';
	pool_job *j = run(pt_job_str(1, "test.echo", big), 20);
	msgpack_unpacked out;
	const msgpack_object *r = pt_result(j, &out);
	const msgpack_object *s = &r->via.array.ptr[0].via.array.ptr[0];
	cr_assert_eq(s->type, MSGPACK_OBJECT_STR);
	cr_assert_eq(s->via.str.size, n);
	cr_assert(memcmp(s->via.str.ptr, big, n) == 0);
	msgpack_unpacked_destroy(&out);
	pool_job_free(j);
	free(big);
}

Test(pool_prefork, fail_reports_value_error_with_message_and_traceback)
{
	open_pool(1, 0, 0);
	pool_job *j = run(pt_job_str(1, "test.fail", "boom"), 10);
	pt_expect_failure(j, "ValueError", "builtins");
	cr_assert_str_eq(j->exc_message, "boom");
	cr_assert_not_null(j->traceback);
	cr_assert(strstr(j->traceback, "Traceback (most recent call last):") != NULL);
	cr_assert(strstr(j->traceback, "ValueError: boom") != NULL, "%s", j->traceback);
	cr_assert(!j->worker_lost);
	pool_job_free(j);
}

Test(pool_prefork, unknown_task_fails_not_registered)
{
	open_pool(1, 0, 0);
	pool_job *j = run(pt_job_ints(1, "no.such", 1, 2), 10);
	pt_expect_failure(j, "NotRegistered", "celery.exceptions");
	cr_assert_str_eq(j->exc_message, "no.such");
	pool_job_free(j);
}

/* ---- children that die ---------------------------------------------------------- */

Test(pool_prefork, crash_fails_job_with_worker_lost_and_pool_keeps_serving)
{
	open_pool(1, 0, 0);
	pool_job *j = run(pt_job(7, "test.crash", NULL), 10);
	pt_expect_failure(j, "WorkerLostError", "billiard.exceptions");
	cr_assert_str_eq(j->exc_message, "Worker exited prematurely: signal 11 (SIGSEGV) Job: 7.");
	cr_assert(j->worker_lost);
	cr_assert(!j->time_limit_hit);
	cr_assert_not_null(j->traceback);
	cr_assert(strstr(j->traceback, "test.so") != NULL, "%s", j->traceback);
	cr_assert(strstr(j->traceback, "billiard.exceptions.WorkerLostError: Worker exited") != NULL,
		  "%s", j->traceback);
	int64_t dead = j->worker_pid;
	pool_job_free(j);

	pool_job *next = run(pt_job_ints(8, "math.add", 2, 3), 10);
	cr_assert_eq(pt_result_int(next), 5);
	cr_assert_neq(next->worker_pid, dead, "a new child replaced the crashed one");
	pool_job_free(next);
}

Test(pool_prefork, garbage_from_a_child_is_worker_lost_and_it_is_replaced)
{
	add_builtin("t.garbage", garbage_task);
	open_pool(1, 0, 0);
	pool_job *j = run(pt_job(1, "t.garbage", NULL), 10);
	pt_expect_failure(j, "WorkerLostError", "billiard.exceptions");
	cr_assert_str_eq(j->exc_message, "Worker exited prematurely: signal 9 (SIGKILL) Job: 1.");
	cr_assert(j->worker_lost);
	pool_job_free(j);
	pool_job *next = run(pt_job_ints(2, "math.add", 1, 1), 10);
	cr_assert_eq(pt_result_int(next), 2);
	pool_job_free(next);
}

Test(pool_prefork, child_dying_mid_frame_is_worker_lost)
{
	add_builtin("t.half", half_frame_task);
	open_pool(1, 0, 0);
	pool_job *j = run(pt_job(3, "t.half", NULL), 10);
	pt_expect_failure(j, "WorkerLostError", "billiard.exceptions");
	cr_assert_str_eq(j->exc_message, "Worker exited prematurely: exitcode 0 Job: 3.");
	pool_job_free(j);
	pool_job *next = run(pt_job_ints(4, "math.add", 1, 1), 10);
	cr_assert_eq(pt_result_int(next), 2);
	pool_job_free(next);
}

/* ---- time limits ----------------------------------------------------------------- */

Test(pool_prefork, hard_time_limit_kills_child_with_time_limit_exceeded)
{
	open_pool(1, 0, 0);
	pool_job *j = pt_job_double(1, "test.sleep", 10);
	j->time_limit = 0.5;
	double t0 = pt_now();
	run(j, 5);
	double dt = pt_now() - t0;
	pt_expect_failure(j, "TimeLimitExceeded", "billiard.exceptions");
	cr_assert_str_eq(j->exc_message, "0.5");
	cr_assert(j->time_limit_hit && j->worker_lost);
	cr_assert(dt >= 0.45 && dt < 1.5, "took %.3f s", dt);
	int64_t dead = j->worker_pid;
	pool_job_free(j);

	pool_job *next = run(pt_job_ints(2, "math.add", 20, 22), 10);
	cr_assert_eq(pt_result_int(next), 42);
	cr_assert_neq(next->worker_pid, dead);
	pool_job_free(next);
}

Test(pool_prefork, hard_limit_of_one_job_leaves_other_children_alone)
{
	open_pool(2, 0, 0);
	pool_job *slow = pt_job_double(1, "test.sleep", 10);
	slow->time_limit = 0.3;
	pool_job *ok = pt_job_double(2, "test.sleep", 0.6);
	ok->time_limit = 5;
	pt_submit(pl, slow);
	pt_submit(pl, ok);
	pool_job *a = pt_expect(pl, 5);
	pool_job *b = pt_expect(pl, 5);
	cr_assert_eq(a->seq, 1);
	pt_expect_failure(a, "TimeLimitExceeded", "billiard.exceptions");
	cr_assert_eq(b->seq, 2);
	cr_assert_eq(b->status, TASK_SUCCESS);
	pool_job_free(a);
	pool_job_free(b);
}

Test(pool_prefork, soft_time_limit_raises_soft_time_limit_exceeded_child_survives)
{
	open_pool(1, 0, 0);
	pool_job *j = pt_job_double(1, "test.sleep", 10);
	j->soft_time_limit = 0.2;
	double t0 = pt_now();
	run(j, 5);
	double dt = pt_now() - t0;
	pt_expect_failure(j, "SoftTimeLimitExceeded", "billiard.exceptions");
	cr_assert(!j->worker_lost && !j->time_limit_hit);
	cr_assert(dt >= 0.15 && dt < 1.5, "took %.3f s", dt);
	int64_t pid = j->worker_pid;
	pool_job_free(j);
	pool_job *next = run(pt_job_ints(2, "math.add", 1, 2), 10);
	cr_assert_eq(next->worker_pid, pid, "a soft limit does not cost the child");
	pool_job_free(next);
}

Test(pool_prefork, soft_limit_signal_wakes_a_handler_blocked_in_a_syscall)
{
	add_builtin("t.block", block_task);
	open_pool(1, 0, 0);
	pool_job *j = pt_job(1, "t.block", NULL);
	j->soft_time_limit = 0.2;
	double t0 = pt_now();
	run(j, 10);
	double dt = pt_now() - t0;
	pt_expect_failure(j, "SoftTimeLimitExceeded", "billiard.exceptions");
	cr_assert(dt < 2, "took %.3f s: the timer's SIGUSR1 should interrupt poll()", dt);
	pool_job_free(j);
}

Test(pool_prefork, sigusr1_through_terminate_is_the_soft_limit_as_in_celery)
{
	add_builtin("t.nap", nap_task);
	open_pool(1, 0, 0);
	submit_nap(1);
	warren_error err = {0};
	cr_assert_eq(pool_terminate(pl, 1, SIGUSR1, &err), 0, "%s", err.msg);
	pool_job *d = pt_expect(pl, 5);
	pt_expect_failure(d, "SoftTimeLimitExceeded", "billiard.exceptions");
	cr_assert_str_eq(d->exc_message, "napped");
	cr_assert(!d->worker_lost);
	pool_job_free(d);
}

/* ---- recycling ---------------------------------------------------------------------- */

Test(pool_prefork, max_tasks_per_child_replaces_the_child_after_n_tasks)
{
	open_pool(1, 3, 0);
	int64_t pids[7];
	for (int i = 0; i < 7; i++) {
		pool_job *j = run(pt_job_ints((uint64_t)i + 1, "math.add", i, 1), 10);
		cr_assert_eq(pt_result_int(j), i + 1);
		pids[i] = j->worker_pid;
		pool_job_free(j);
	}
	cr_assert(pids[0] == pids[1] && pids[1] == pids[2]);
	cr_assert(pids[3] == pids[4] && pids[4] == pids[5]);
	cr_assert(pids[2] != pids[3] && pids[5] != pids[6] && pids[0] != pids[6]);
}

Test(pool_prefork, max_tasks_per_child_under_load_loses_nothing)
{
	open_pool(2, 2, 0);
	enum { N = 60 };
	for (uint64_t i = 1; i <= N; i++)
		pt_submit(pl, pt_job_ints(i, "math.add", (int64_t)i, 1));
	for (int n = 0; n < N; n++) {
		pool_job *j = pt_expect(pl, 10);
		cr_assert_eq(pt_result_int(j), (int64_t)j->seq + 1);
		pool_job_free(j);
	}
}

Test(pool_prefork, max_memory_per_child_finishes_the_task_then_replaces_the_child)
{
	open_pool(1, 0, 1); /* 1 KiB: every child is over it after its first task */
	int64_t last = 0;
	for (int i = 0; i < 3; i++) {
		pool_job *j = run(pt_job_ints((uint64_t)i + 1, "math.add", i, i), 10);
		cr_assert_eq(pt_result_int(j), 2 * i);
		cr_assert_neq(j->worker_pid, last);
		last = j->worker_pid;
		pool_job_free(j);
	}
}

/* ---- terminate ------------------------------------------------------------------------ */

Test(pool_prefork, terminate_running_job_reports_task_revoked_error)
{
	add_builtin("t.nap", nap_task);
	open_pool(1, 0, 0);
	submit_nap(1);
	warren_error err = {0};
	cr_assert_eq(pool_terminate(pl, 1, SIGTERM, &err), 0, "%s", err.msg);
	pool_job *j = pt_expect(pl, 5);
	pt_expect_failure(j, "TaskRevokedError", "celery.exceptions");
	cr_assert_str_eq(j->exc_message, "terminated");
	cr_assert(!j->worker_lost);
	pool_job_free(j);
	pool_job *next = run(pt_job_ints(2, "math.add", 1, 1), 10);
	cr_assert_eq(pt_result_int(next), 2);
	pool_job_free(next);
}

Test(pool_prefork, children_unblock_the_signals_the_loop_blocks)
{
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigprocmask(SIG_BLOCK, &set, NULL); /* as a loop with a signalfd would */
	open_pool(1, 0, 0);
	pt_submit(pl, pt_job_double(1, "test.sleep", 10));
	cr_assert_eq(pool_terminate(pl, 1, SIGTERM, NULL), 0);
	pool_job *j = pt_expect(pl, 5);
	pt_expect_failure(j, "TaskRevokedError", "celery.exceptions");
	pool_job_free(j);
}

Test(pool_prefork, terminate_queued_job_hands_it_back_pending)
{
	open_pool(1, 0, 0);
	pt_submit(pl, pt_job_double(1, "test.sleep", 0.3));
	pt_submit(pl, pt_job_ints(2, "math.add", 1, 1));
	cr_assert_eq(pool_pending(pl), 2);
	cr_assert_eq(pool_terminate(pl, 2, SIGTERM, NULL), 0);
	pool_job *j = pt_expect(pl, 1);
	cr_assert_eq(j->seq, 2);
	cr_assert_eq(j->status, TASK_PENDING);
	pool_job_free(j);
	j = pt_expect(pl, 5);
	cr_assert_eq(j->seq, 1);
	cr_assert_eq(j->status, TASK_SUCCESS);
	pool_job_free(j);
	warren_error err = {0};
	cr_assert_eq(pool_terminate(pl, 99, SIGTERM, &err), WARREN_ENOTFOUND);
	cr_assert(strstr(err.msg, "99") != NULL, "%s", err.msg);
}

/* ---- isolation ---------------------------------------------------------------------- */

Test(pool_prefork, children_keep_only_stdio_and_their_socket)
{
	add_builtin("t.fds", fds_task);
	int sock[2];
	cr_assert_eq(pipe(sock), 0); /* stands for the broker socket */
	open_pool(2, 0, 0);
	pool_job *j = run(pt_job(1, "t.fds", NULL), 10);
	msgpack_unpacked out;
	const msgpack_object *r = pt_result(j, &out);
	cr_assert_eq(r->type, MSGPACK_OBJECT_ARRAY);
	bool have[4] = {0};
	for (uint32_t i = 0; i < r->via.array.size; i++) {
		int64_t fd = r->via.array.ptr[i].via.i64;
		cr_assert(fd >= 0 && fd <= 3, "child has fd %lld open", (long long)fd);
		have[fd] = true;
	}
	cr_assert(have[3], "the child's socket is fd 3");
	msgpack_unpacked_destroy(&out);
	pool_job_free(j);
	close(sock[0]);
	close(sock[1]);
}

/* ---- close and free --------------------------------------------------------------------- */

Test(pool_prefork, close_with_grace_lets_running_task_finish_and_hands_back_queued)
{
	open_pool(1, 0, 0);
	pt_submit(pl, pt_job_double(1, "test.sleep", 0.3));
	pt_submit(pl, pt_job_ints(2, "math.add", 1, 1));
	pt_submit(pl, pt_job_ints(3, "math.add", 1, 2));
	double t0 = pt_now();
	warren_error err = {0};
	cr_assert_eq(pool_close(pl, 5000, &err), 0, "%s", err.msg);
	double dt = pt_now() - t0;
	cr_assert(dt >= 0.2 && dt < 3, "close took %.3f s", dt);
	cr_assert_eq(pool_pending(pl), 3);
	int pending = 0, success = 0;
	for (pool_job *j; (j = pool_take_done(pl)); pool_job_free(j)) {
		if (j->seq == 1) {
			cr_assert_eq(j->status, TASK_SUCCESS);
			success++;
		} else {
			cr_assert_eq(j->status, TASK_PENDING);
			pending++;
		}
	}
	cr_assert(success == 1 && pending == 2);
	cr_assert_eq(pool_pending(pl), 0);
	pool_job *late = pt_job_ints(4, "math.add", 1, 1);
	cr_assert_eq(pool_submit(pl, late, &err), WARREN_EINVAL);
	pool_job_free(late); /* refused: still ours */
	pt_expect_no_children();
}

Test(pool_prefork, close_past_grace_kills_and_hands_the_job_back_pending)
{
	open_pool(2, 0, 0);
	pt_submit(pl, pt_job_double(1, "test.sleep", 10));
	double t0 = pt_now();
	warren_error err = {0};
	cr_assert_eq(pool_close(pl, 200, &err), WARREN_ETIMEOUT);
	cr_assert(strstr(err.msg, "1 jobs still running") != NULL, "%s", err.msg);
	cr_assert(pt_now() - t0 < 2);
	pool_job *j = pool_take_done(pl);
	cr_assert_not_null(j);
	cr_assert_eq(j->status, TASK_PENDING);
	cr_assert(j->worker_lost);
	pool_job_free(j);
	pt_expect_no_children();
}

Test(pool_prefork, free_leaves_no_zombie_and_no_fd)
{
	char before[4096], after[4096];
	pt_fds(before, sizeof before);
	open_pool(2, 2, 0);
	pt_submit(pl, pt_job(1, "test.crash", NULL));
	for (uint64_t i = 2; i <= 9; i++)
		pt_submit(pl, pt_job_ints(i, "math.add", 1, 1));
	for (int i = 0; i < 9; i++)
		pool_job_free(pt_expect(pl, 10));
	pt_submit(pl, pt_job_double(10, "test.sleep", 10)); /* still running at free */
	pt_submit(pl, pt_job_double(11, "test.sleep", 10));
	pt_submit(pl, pt_job_double(12, "test.sleep", 10)); /* still queued at free */
	pool_free(pl);
	pl = NULL;
	pt_fds(after, sizeof after);
	cr_assert_str_eq(after, before);
	pt_expect_no_children();
}

Test(pool_prefork, pool_fd_is_quiet_when_idle)
{
	open_pool(2, 0, 0);
	struct pollfd pfd = {.fd = pool_fd(pl), .events = POLLIN};
	cr_assert_eq(poll(&pfd, 1, 50), 0, "nothing to do, yet readable");
	cr_assert_eq(pool_next_deadline_ns(pl), 0);
	pool_job *j = run(pt_job_ints(1, "math.add", 1, 1), 10);
	pool_job_free(j);
	pool_tick(pl);
	cr_assert_eq(poll(&pfd, 1, 0), 0, "readable after the done list was drained");
}

/* ---- the frame codec (pool_prefork_frame.c) ------------------------------------------ */

TestSuite(pool_prefork_frame);

Test(pool_prefork_frame, job_round_trip_keeps_every_field)
{
	pool_job *j = pt_job_ints(42, "math.add", 1, 2);
	j->retries = 3;
	j->soft_time_limit = 1.25;
	j->kwargs = strdup("\x80"); /* {} */
	j->kwargs_len = 1;
	char *frame;
	size_t len;
	cr_assert_eq(prefork_encode_job(j, &frame, &len, NULL), 0);
	cr_assert_eq(prefork_frame_length(frame), len - PREFORK_FRAME_HEADER);
	msgpack_unpacked u;
	msgpack_unpacked_init(&u);
	prefork_job_frame f;
	warren_error err = {0};
	cr_assert_eq(prefork_decode_job(frame + PREFORK_FRAME_HEADER, len - PREFORK_FRAME_HEADER, &u,
					&f, &err), 0, "%s", err.msg);
	cr_assert_eq(f.seq, 42);
	cr_assert_str_eq(f.task_id, j->task_id);
	cr_assert_str_eq(f.task_name, "math.add");
	cr_assert_eq(f.retries, 3);
	cr_assert_eq(f.soft_time_limit, 1.25);
	cr_assert_null(f.headers);
	cr_assert_eq(f.args_len, j->args_len);
	cr_assert(memcmp(f.args, j->args, j->args_len) == 0);
	cr_assert_eq(f.kwargs_len, 1);
	msgpack_unpacked_destroy(&u);
	free(frame);
	pool_job_free(j);
}

static char *result_frame(const prefork_result_frame *r, size_t *len)
{
	char *frame;
	cr_assert_eq(prefork_encode_result(r, &frame, len, NULL), 0);
	return frame;
}

Test(pool_prefork_frame, result_round_trip_fills_the_job)
{
	prefork_result_frame r = {.seq = 9, .status = TASK_FAILURE, .exc_type = "ValueError",
				  .exc_module = "builtins", .exc_message = "bad", .traceback = "tb",
				  .runtime = 0.5, .pid = 1234, .retiring = true};
	size_t len;
	char *frame = result_frame(&r, &len);
	pool_job *j = pt_job(9, "x", NULL);
	bool retiring = false;
	warren_error err = {0};
	cr_assert_eq(prefork_decode_result(frame + 4, len - 4, j, &retiring, &err), 0, "%s", err.msg);
	cr_assert(retiring);
	cr_assert_eq(j->status, TASK_FAILURE);
	cr_assert_str_eq(j->exc_type, "ValueError");
	cr_assert_str_eq(j->exc_module, "builtins");
	cr_assert_str_eq(j->exc_message, "bad");
	cr_assert_str_eq(j->traceback, "tb");
	cr_assert_null(j->result);
	cr_assert_eq(j->runtime, 0.5);
	cr_assert_eq(j->worker_pid, 1234);
	pool_job_free(j);
	free(frame);

	prefork_result_frame ok = {.seq = 10, .status = TASK_SUCCESS, .result = "\x05",
				   .result_len = 1};
	frame = result_frame(&ok, &len);
	j = pt_job(10, "x", NULL);
	cr_assert_eq(prefork_decode_result(frame + 4, len - 4, j, &retiring, NULL), 0);
	cr_assert(!retiring);
	cr_assert_eq(j->result_len, 1);
	cr_assert_eq(((unsigned char *)j->result)[0], 5);
	cr_assert_null(j->exc_type);
	pool_job_free(j);
	free(frame);
}

Test(pool_prefork_frame, garbage_and_foreign_results_are_decode_errors)
{
	prefork_result_frame r = {.seq = 1, .status = TASK_SUCCESS};
	size_t len;
	char *frame = result_frame(&r, &len);
	pool_job *j = pt_job(2, "x", NULL);
	bool retiring;
	warren_error err = {0};
	cr_assert_eq(prefork_decode_result(frame + 4, len - 4, j, &retiring, &err), WARREN_EDECODE);
	cr_assert(strstr(err.msg, "for job 1, running 2") != NULL, "%s", err.msg);
	j->seq = 1;
	cr_assert_eq(prefork_decode_result(frame + 4, len - 5, j, &retiring, NULL), WARREN_EDECODE,
		     "truncated");
	frame[5] = 2; /* [version 2, ...] */
	cr_assert_eq(prefork_decode_result(frame + 4, len - 4, j, &retiring, NULL), WARREN_EDECODE,
		     "another version");
	cr_assert_eq(prefork_decode_result("\xc1", 1, j, &retiring, NULL), WARREN_EDECODE);
	cr_assert_eq(prefork_decode_result("\x91\x01", 2, j, &retiring, NULL), WARREN_EDECODE);
	cr_assert_null(j->exc_type, "nothing filled from a bad frame");
	pool_job_free(j);
	free(frame);
}

Test(pool_prefork_frame, a_job_over_the_frame_limit_is_refused_at_submit)
{
	pool_job *j = pt_job(1, "test.echo", NULL);
	j->args_len = PREFORK_FRAME_MAX + 1;
	j->args = calloc(1, j->args_len);
	cr_assert_not_null(j->args);
	char *frame = NULL;
	size_t len;
	warren_error err = {0};
	cr_assert_eq(prefork_encode_job(j, &frame, &len, &err), WARREN_ELIMIT);
	cr_assert(strstr(err.msg, "over") != NULL, "%s", err.msg);
	cr_assert_null(frame);
	pool_job_free(j);
}
