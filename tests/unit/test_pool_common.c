/* tests/unit/test_pool_common.c - the contract every pool kind keeps (the
 * pools section of worker/worker.h), one suite per kind: results come back
 * through pool_fd/pool_tick/pool_take_done, failures carry their exception,
 * queued jobs come back TASK_PENDING from close and terminate, the soft limit
 * reaches the handler, free leaves no fd and no child behind, a job's start
 * is stamped, asked and (when wanted) reported in the order things happen.
 *
 * POOL_CONTRACT(suffix, kind) stamps out the suite `pool_contract_<suffix>`;
 * add a line at the bottom for a new pool kind. What only one kind can do
 * (hard limits, crashes, child recycling) lives in its own test file. */
#include <unistd.h>

#include "pool_test.h"

typedef struct contract {
	registry *reg;
	pool *p;
} contract;

static contract ct;

static void contract_setup(void)
{
	ct.reg = pt_registry();
}

static void contract_teardown(void)
{
	pool_free(ct.p);
	registry_free(ct.reg);
}

static void c_echo(pool_kind kind)
{
	ct.p = pt_pool(kind, 2, ct.reg);
	pt_submit(ct.p, pt_job_str(1, "test.echo", "hi"));
	pool_job *j = pt_expect(ct.p, 10);
	cr_assert_eq(j->seq, 1);
	msgpack_unpacked u;
	const msgpack_object *r = pt_result(j, &u);
	cr_assert_eq(r->type, MSGPACK_OBJECT_ARRAY);
	cr_assert_eq(r->via.array.size, 2);
	const msgpack_object *args = &r->via.array.ptr[0];
	cr_assert_eq(args->via.array.size, 1);
	cr_assert_eq(args->via.array.ptr[0].via.str.size, 2);
	cr_assert(memcmp(args->via.array.ptr[0].via.str.ptr, "hi", 2) == 0);
	cr_assert(j->worker_pid > 0);
	msgpack_unpacked_destroy(&u);
	pool_job_free(j);
	cr_assert_eq(pool_pending(ct.p), 0);
}

static void c_fail(pool_kind kind)
{
	ct.p = pt_pool(kind, 1, ct.reg);
	pt_submit(ct.p, pt_job_str(1, "test.fail", "nope"));
	pool_job *j = pt_expect(ct.p, 10);
	pt_expect_failure(j, "ValueError", "builtins");
	cr_assert_str_eq(j->exc_message, "nope");
	cr_assert_not_null(j->traceback);
	cr_assert(!j->worker_lost && !j->time_limit_hit);
	pool_job_free(j);
}

static void c_many(pool_kind kind)
{
	ct.p = pt_pool(kind, 3, ct.reg);
	enum { N = 200 };
	for (uint64_t i = 1; i <= N; i++)
		pt_submit(ct.p, pt_job_ints(i, "math.add", (int64_t)i, -1));
	cr_assert_eq(pool_pending(ct.p), N);
	bool seen[N + 1] = {0};
	for (int n = 0; n < N; n++) {
		pool_job *j = pt_expect(ct.p, 10);
		cr_assert(j->seq >= 1 && j->seq <= N && !seen[j->seq]);
		seen[j->seq] = true;
		cr_assert_eq(pt_result_int(j), (int64_t)j->seq - 1);
		pool_job_free(j);
	}
	cr_assert_eq(pool_pending(ct.p), 0);
	cr_assert_null(pool_take_done(ct.p));
}

static void c_soft_limit(pool_kind kind)
{
	ct.p = pt_pool(kind, 1, ct.reg);
	pool_job *j = pt_job_double(1, "test.sleep", 10);
	j->soft_time_limit = 0.2;
	double t0 = pt_now();
	pt_submit(ct.p, j);
	pool_job *d = pt_expect(ct.p, 5);
	cr_assert(pt_now() - t0 < 2);
	pt_expect_failure(d, "SoftTimeLimitExceeded", "billiard.exceptions");
	pool_job_free(d);
}

static void c_close_hands_back_queued(pool_kind kind)
{
	ct.p = pt_pool(kind, 1, ct.reg);
	pt_submit(ct.p, pt_job_double(1, "test.sleep", 0.2));
	for (uint64_t i = 2; i <= 4; i++)
		pt_submit(ct.p, pt_job_ints(i, "math.add", 1, 1));
	warren_error err = {0};
	cr_assert_eq(pool_close(ct.p, 5000, &err), 0, "%s", err.msg);
	int pending = 0, success = 0;
	for (pool_job *j; (j = pool_take_done(ct.p)); pool_job_free(j)) {
		if (j->status == TASK_PENDING)
			pending++;
		else if (j->status == TASK_SUCCESS && j->seq == 1)
			success++;
	}
	/* The first job may or may not have started before close: either it
	 * finished, or it came back unstarted with the others. */
	cr_assert(pending + success == 4 && pending >= 3, "pending %d success %d", pending, success);
	pool_job *late = pt_job_ints(9, "math.add", 1, 1);
	cr_assert_eq(pool_submit(ct.p, late, &err), WARREN_EINVAL);
	pool_job_free(late); /* refused: still ours */
}

static void c_terminate_queued(pool_kind kind)
{
	ct.p = pt_pool(kind, 1, ct.reg);
	pt_submit(ct.p, pt_job_double(1, "test.sleep", 0.2));
	pt_submit(ct.p, pt_job_ints(2, "math.add", 1, 1));
	pt_submit(ct.p, pt_job_ints(3, "math.add", 1, 2));
	cr_assert_eq(pool_terminate(ct.p, 3, 15, NULL), 0);
	int got = 0;
	for (int n = 0; n < 3; n++) {
		pool_job *j = pt_expect(ct.p, 5);
		if (j->seq == 3)
			cr_assert_eq(j->status, TASK_PENDING);
		else
			cr_assert_eq(j->status, TASK_SUCCESS);
		got++;
		pool_job_free(j);
	}
	cr_assert_eq(got, 3);
}

static void c_free_leaves_nothing(pool_kind kind)
{
	char before[4096], after[4096];
	pt_fds(before, sizeof before);
	ct.p = pt_pool(kind, 2, ct.reg);
	for (uint64_t i = 1; i <= 10; i++)
		pt_submit(ct.p, pt_job_ints(i, "math.add", 1, 1));
	for (int n = 0; n < 5; n++)
		pool_job_free(pt_expect(ct.p, 10));
	pool_free(ct.p); /* five jobs still in the pool, finished or not */
	ct.p = NULL;
	pt_fds(after, sizeof after);
	cr_assert_str_eq(after, before);
	pt_expect_no_children();
}

/* What the start function and pool_take_done saw, in order: "S<seq>" and
 * "D<seq>". */
static char trace[256];
static int64_t start_ns[8], start_pid[8];

static void trace_add(char what, uint64_t seq)
{
	size_t n = strlen(trace);
	snprintf(trace + n, sizeof trace - n, "%s%c%llu", n ? " " : "", what,
		 (unsigned long long)seq);
}

static void on_start(void *arg, const pool_job *job)
{
	cr_assert_eq(arg, &ct);
	cr_assert(job->seq < 8);
	cr_assert_neq(job->start_ns, 0, "reported before it was stamped");
	start_ns[job->seq] = job->start_ns;
	start_pid[job->seq] = job->start_pid;
	trace_add('S', job->seq);
}

/* Drives the pool as the loop does until `needle` is in the trace. */
static void until_traced(const char *needle)
{
	int64_t until = task_monotonic_ns() + 5000000000LL;
	while (!strstr(trace, needle)) {
		cr_assert_lt(task_monotonic_ns(), until, "no '%s' in '%s'", needle, trace);
		pool_job *j = pt_wait(ct.p, 0.05);
		if (j) {
			trace_add('D', j->seq);
			pool_job_free(j);
		}
	}
}

/* One thread or child, three 0.3 s jobs queued at once: each start is
 * reported after the job before it came back and before its own job does;
 * while the first runs, the pool says it started and the others did not. */
static void c_start_reports(pool_kind kind)
{
	ct.p = pt_pool(kind, 1, ct.reg);
	trace[0] = '\0';
	pool_on_start(ct.p, on_start, &ct);
	for (uint64_t i = 1; i <= 3; i++) {
		pool_job *j = pt_job_double(i, "test.sleep", 0.3);
		j->report_start = true;
		pt_submit(ct.p, j);
	}
	until_traced("S1");
	int64_t ns = 0, pid = 0;
	cr_assert(pool_job_started(ct.p, 1, &ns, &pid));
	cr_assert_eq(ns, start_ns[1]);
	cr_assert_eq(pid, start_pid[1]);
	cr_assert_not(pool_job_started(ct.p, 2, &ns, &pid), "job 2 waits behind job 1");
	cr_assert_not(pool_job_started(ct.p, 3, &ns, &pid));
	cr_assert_not(pool_job_started(ct.p, 99, &ns, &pid), "a seq the pool does not hold");
	until_traced("D3");
	cr_assert_str_eq(trace, "S1 D1 S2 D2 S3 D3");
	for (int i = 2; i <= 3; i++)
		cr_assert_geq(start_ns[i] - start_ns[i - 1], 300000000LL, "job %d started early", i);
	if (kind == POOL_THREADS)
		cr_assert_eq(start_pid[1], (int64_t)getpid());
	else
		cr_assert(start_pid[1] > 0 && start_pid[1] != (int64_t)getpid());
}

/* Without report_start nothing is reported, but the start is still stamped
 * (what inspect asks for), and a job taken back unrun has none. */
static void c_start_stamped_unreported(pool_kind kind)
{
	ct.p = pt_pool(kind, 1, ct.reg);
	pt_submit(ct.p, pt_job_double(1, "test.sleep", 0.3));
	pt_submit(ct.p, pt_job_ints(2, "math.add", 1, 1));
	int64_t ns = 0, pid = 0;
	int64_t until = task_monotonic_ns() + 5000000000LL;
	while (!pool_job_started(ct.p, 1, &ns, &pid)) {
		cr_assert_lt(task_monotonic_ns(), until, "job 1 never started");
		cr_assert_null(pt_wait(ct.p, 0.01));
	}
	cr_assert_gt(ns, 0);
	cr_assert_eq(pool_terminate(ct.p, 2, 15, NULL), 0);
	pool_job *j = pt_expect(ct.p, 5);
	cr_assert_eq(j->seq, 2);
	cr_assert_eq(j->status, TASK_PENDING);
	cr_assert_eq(j->start_ns, 0, "a job handed back unrun has no start");
	pool_job_free(j);
	j = pt_expect(ct.p, 5);
	cr_assert_eq(j->seq, 1);
	cr_assert_eq(j->start_ns, ns);
	pool_job_free(j);
}

#define POOL_CONTRACT(suffix, kind)                                                         \
	TestSuite(pool_contract_##suffix, .init = contract_setup, .fini = contract_teardown,  \
		  .timeout = 60);                                                             \
	Test(pool_contract_##suffix, echo_round_trip) { c_echo(kind); }                       \
	Test(pool_contract_##suffix, fail_carries_value_error) { c_fail(kind); }               \
	Test(pool_contract_##suffix, two_hundred_jobs_each_back_once) { c_many(kind); }        \
	Test(pool_contract_##suffix, soft_limit_reaches_the_handler) { c_soft_limit(kind); }   \
	Test(pool_contract_##suffix, close_hands_back_queued_jobs_pending)                     \
	{                                                                                     \
		c_close_hands_back_queued(kind);                                              \
	}                                                                                     \
	Test(pool_contract_##suffix, terminate_queued_job_hands_it_back_pending)               \
	{                                                                                     \
		c_terminate_queued(kind);                                                     \
	}                                                                                     \
	Test(pool_contract_##suffix, free_leaves_no_fd_and_no_child)                           \
	{                                                                                     \
		c_free_leaves_nothing(kind);                                                  \
	}                                                                                     \
	Test(pool_contract_##suffix, starts_are_reported_in_order) { c_start_reports(kind); } \
	Test(pool_contract_##suffix, starts_are_stamped_unreported)                           \
	{                                                                                     \
		c_start_stamped_unreported(kind);                                             \
	}

POOL_CONTRACT(prefork, POOL_PREFORK)
POOL_CONTRACT(threads, POOL_THREADS)
