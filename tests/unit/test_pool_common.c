/* tests/unit/test_pool_common.c - the contract every pool kind keeps (the
 * pools section of worker/worker.h), one suite per kind: results come back
 * through pool_fd/pool_tick/pool_take_done, failures carry their exception,
 * queued jobs come back TASK_PENDING from close and terminate, the soft limit
 * reaches the handler, free leaves no fd and no child behind.
 *
 * POOL_CONTRACT(suffix, kind) stamps out the suite `pool_contract_<suffix>`;
 * add a line at the bottom for a new pool kind. What only one kind can do
 * (hard limits, crashes, child recycling) lives in its own test file. */
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
	}

POOL_CONTRACT(prefork, POOL_PREFORK)
POOL_CONTRACT(threads, POOL_THREADS)
