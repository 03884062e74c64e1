/* tests/unit/test_pool_resize.c - pool_resize (pool_grow/pool_shrink) on both
 * pool kinds: growing from 1 to 3 runs three test.sleep(0.5) jobs at once;
 * shrinking back to 1 while they run lets them finish, then jobs run one at a
 * time; prefork leaves no zombie and no fd behind, threads no thread. */
#define _GNU_SOURCE /* gettid */
#include <unistd.h>

#include "pool_test.h"

typedef struct resize_fixture {
	registry *reg;
	pool *p;
} resize_fixture;

static resize_fixture rf;

static void resize_setup(void)
{
	rf.reg = pt_registry();
}

static void resize_teardown(void)
{
	pool_free(rf.p);
	registry_free(rf.reg);
}

/* Children of the calling thread (the pool forks from it), zombies included. */
static int children_now(void)
{
	char path[64], buf[4096];
	snprintf(path, sizeof path, "/proc/self/task/%d/children", (int)gettid());
	FILE *f = fopen(path, "r");
	cr_assert_not_null(f, "%s: %s", path, strerror(errno));
	size_t n = fread(buf, 1, sizeof buf - 1, f);
	fclose(f);
	buf[n] = '\0';
	int count = 0;
	for (char *s = strtok(buf, " \n"); s; s = strtok(NULL, " \n"))
		count++;
	return count;
}

/* The Threads: line of /proc/self/status. */
static int threads_now(void)
{
	FILE *f = fopen("/proc/self/status", "r");
	cr_assert_not_null(f);
	char line[256];
	int n = -1;
	while (fgets(line, sizeof line, f))
		if (sscanf(line, "Threads: %d", &n) == 1)
			break;
	fclose(f);
	return n;
}

/* Ticks the pool as the loop would until count() == want or timeout. */
static bool settle_until(int (*count)(void), int want, double timeout)
{
	double until = pt_now() + timeout;
	while (count() != want && pt_now() < until) {
		struct pollfd pfd = {.fd = pool_fd(rf.p), .events = POLLIN};
		poll(&pfd, 1, 5);
		pool_tick(rf.p);
	}
	return count() == want;
}

/* Submits n test.sleep(secs) jobs and waits for all; returns the wall time
 * from the submit to the last one and fills the distinct worker pids. */
static double run_batch(uint64_t first_seq, int n, double secs, int64_t *pids, int *n_pids)
{
	double t0 = pt_now();
	for (int i = 0; i < n; i++)
		pt_submit(rf.p, pt_job_double(first_seq + (uint64_t)i, "test.sleep", secs));
	*n_pids = 0;
	for (int i = 0; i < n; i++) {
		pool_job *j = pt_expect(rf.p, 10);
		cr_assert_eq(j->status, TASK_SUCCESS, "job %llu: %s: %s",
			     (unsigned long long)j->seq, j->exc_type ? j->exc_type : "-",
			     j->exc_message ? j->exc_message : "-");
		bool seen = false;
		for (int k = 0; k < *n_pids; k++)
			seen = seen || pids[k] == j->worker_pid;
		if (!seen)
			pids[(*n_pids)++] = j->worker_pid;
		pool_job_free(j);
	}
	return pt_now() - t0;
}

static void grow_then_shrink(pool_kind kind)
{
	char fds_at_one[4096], fds_before[4096];
	pt_fds(fds_before, sizeof fds_before);
	int threads_before = threads_now();
	rf.p = pt_pool(kind, 1, rf.reg);
	pt_fds(fds_at_one, sizeof fds_at_one);
	int64_t pids[8];
	int n_pids;

	warren_error err = {0};
	cr_assert_eq(pool_concurrency(rf.p), 1);

	/* Grow to 3: the three run together. */
	cr_assert_eq(pool_resize(rf.p, 3, &err), 0, "%s", err.msg);
	cr_assert_eq(pool_concurrency(rf.p), 3);
	if (kind == POOL_PREFORK)
		cr_assert_eq(children_now(), 3);
	double took = run_batch(100, 3, 0.5, pids, &n_pids);
	cr_assert_lt(took, 1.2, "3 jobs on 3 workers took %.2f s: not concurrent", took);
	if (kind == POOL_PREFORK)
		cr_assert_eq(n_pids, 3, "3 jobs ran in %d children", n_pids);

	/* Shrink to 1 while three run: none is interrupted. */
	double t0 = pt_now();
	for (uint64_t i = 0; i < 3; i++)
		pt_submit(rf.p, pt_job_double(200 + i, "test.sleep", 0.5));
	for (int spin = 0; spin < 20; spin++) { /* let every worker take its job */
		struct pollfd pfd = {.fd = pool_fd(rf.p), .events = POLLIN};
		poll(&pfd, 1, 5);
		pool_tick(rf.p);
	}
	cr_assert_eq(pool_resize(rf.p, 1, &err), 0, "%s", err.msg);
	cr_assert_eq(pool_concurrency(rf.p), 1);
	for (int i = 0; i < 3; i++) {
		pool_job *j = pt_expect(rf.p, 10);
		cr_assert_eq(j->status, TASK_SUCCESS, "job %llu interrupted by the shrink: %s",
			     (unsigned long long)j->seq, j->exc_type ? j->exc_type : "-");
		pool_job_free(j);
	}
	took = pt_now() - t0;
	cr_assert_lt(took, 1.2, "the running jobs should have finished together (%.2f s)", took);

	/* The surplus is gone: one child (reaped, no zombie), its fds only; or
	 * one thread (joined). */
	if (kind == POOL_PREFORK) {
		cr_assert(settle_until(children_now, 1, 5), "children left: %d", children_now());
		char fds_now[4096];
		pt_fds(fds_now, sizeof fds_now);
		cr_assert_str_eq(fds_now, fds_at_one);
	} else {
		cr_assert(settle_until(threads_now, threads_before + 1, 5),
			  "threads: %d, expected %d", threads_now(), threads_before + 1);
	}

	/* And now one at a time again. */
	took = run_batch(300, 3, 0.3, pids, &n_pids);
	cr_assert_geq(took, 0.85, "3 jobs on 1 worker took %.2f s: ran concurrently", took);
	if (kind == POOL_PREFORK)
		cr_assert_eq(n_pids, 1, "3 jobs ran in %d children", n_pids);

	/* Grow again after the shrink (threads reuse a joined slot), then free. */
	cr_assert_eq(pool_resize(rf.p, 2, &err), 0, "%s", err.msg);
	took = run_batch(400, 2, 0.4, pids, &n_pids);
	cr_assert_lt(took, 0.75, "2 jobs on 2 workers took %.2f s", took);
	pool_free(rf.p);
	rf.p = NULL;
	char fds_after[4096];
	pt_fds(fds_after, sizeof fds_after);
	cr_assert_str_eq(fds_after, fds_before);
	if (kind == POOL_PREFORK)
		pt_expect_no_children();
	else
		cr_assert_eq(threads_now(), threads_before);
}

static void shrink_below_one(pool_kind kind)
{
	rf.p = pt_pool(kind, 2, rf.reg);
	warren_error err = {0};
	cr_assert_eq(pool_resize(rf.p, 0, &err), WARREN_EINVAL);
	cr_assert(strstr(err.msg, "cannot resize to 0"), "%s", err.msg);
	cr_assert_eq(pool_concurrency(rf.p), 2);
	err = (warren_error){0};
	cr_assert_eq(pool_resize(rf.p, POOL_MAX_CONCURRENCY + 1, &err), WARREN_EINVAL);
	cr_assert_eq(pool_resize(rf.p, 1, &err), 0, "%s", err.msg);
	pt_submit(rf.p, pt_job_ints(1, "math.add", 2, 3));
	pool_job *j = pt_expect(rf.p, 10);
	cr_assert_eq(pt_result_int(j), 5);
	pool_job_free(j);
}

/* A shrink with jobs queued behind busy workers: nothing is lost. */
static void shrink_with_queue(pool_kind kind)
{
	rf.p = pt_pool(kind, 3, rf.reg);
	for (uint64_t i = 1; i <= 9; i++)
		pt_submit(rf.p, pt_job_double(i, "test.sleep", 0.05));
	warren_error err = {0};
	cr_assert_eq(pool_resize(rf.p, 1, &err), 0, "%s", err.msg);
	bool seen[10] = {false};
	for (int n = 0; n < 9; n++) {
		pool_job *j = pt_expect(rf.p, 10);
		cr_assert_eq(j->status, TASK_SUCCESS);
		cr_assert(!seen[j->seq], "job %llu twice", (unsigned long long)j->seq);
		seen[j->seq] = true;
		pool_job_free(j);
	}
	cr_assert_eq(pool_pending(rf.p), 0);
}

TestSuite(pool_resize, .init = resize_setup, .fini = resize_teardown, .timeout = 60);

Test(pool_resize, threads_grow_then_shrink) { grow_then_shrink(POOL_THREADS); }
Test(pool_resize, prefork_grow_then_shrink) { grow_then_shrink(POOL_PREFORK); }
Test(pool_resize, threads_refuses_below_one) { shrink_below_one(POOL_THREADS); }
Test(pool_resize, prefork_refuses_below_one) { shrink_below_one(POOL_PREFORK); }
Test(pool_resize, threads_shrink_keeps_queued_jobs) { shrink_with_queue(POOL_THREADS); }
Test(pool_resize, prefork_shrink_keeps_queued_jobs) { shrink_with_queue(POOL_PREFORK); }
