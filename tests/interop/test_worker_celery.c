/* tests/interop/test_worker_celery.c - a real Celery 5.2 client (msgpack,
 * redis and rpc result backends) against the real warren-worker binary:
 * tests/interop/worker_celery_client.py sends the tasks and checks what it
 * gets back on the Python side; this file starts and stops the worker. */
#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>

#include "../integration/test_worker_support.h"
#include "support.h"

TestSuite(interop_worker_celery, .fini = worker_test_fini, .timeout = 120);

/* A threads worker on its own queue, ready to consume. */
static pid_t start_worker(const char *queue, const char *backend, const char *extra)
{
	char args[1024];
	snprintf(args, sizeof args, "%s -P threads -c 4 -Q %s --result-backend %s -l info %s",
		 WORKER_PLUGINS, queue, backend, extra ? extra : "");
	pid_t pid = worker_test_start(args);
	cr_assert(worker_test_wait_log(pid, " ready:", 15000), "worker did not start; see %s",
		  worker_test_log(pid));
	return pid;
}

static void run_mode(const char *backend, const char *mode, const char *arg, const char *tag)
{
	const char *q = worker_test_queue(0, tag);
	pid_t pid = start_worker(q, backend, NULL);
	const char *json = worker_test_client(backend, mode, q, arg);
	worker_test_assert_ok(json, mode);
	cr_assert_eq(worker_test_stop(pid, SIGTERM, 10000), 0, "warm shutdown exit status");
}

static const char *redis(void)
{
	return support_service_url("WARREN_TEST_REDIS");
}

Test(interop_worker_celery, every_msgpack_type_through_echo_redis)
{
	run_mode(redis(), "types", NULL, "types-redis");
}

Test(interop_worker_celery, every_msgpack_type_through_echo_rpc)
{
	run_mode("rpc://", "types", NULL, "types-rpc");
}

Test(interop_worker_celery, math_and_text_tasks)
{
	run_mode(redis(), "math", NULL, "math");
}

Test(interop_worker_celery, fail_raises_value_error_in_python)
{
	run_mode(redis(), "fail", NULL, "fail");
}

Test(interop_worker_celery, fail_raises_value_error_over_rpc)
{
	run_mode("rpc://", "fail", NULL, "fail-rpc");
}

Test(interop_worker_celery, five_hundred_in_flight_matched_to_ids)
{
	run_mode(redis(), "many", "500", "many");
}

Test(interop_worker_celery, five_hundred_in_flight_over_rpc)
{
	run_mode("rpc://", "many", "500", "many-rpc");
}

Test(interop_worker_celery, expired_task_reported_revoked)
{
	run_mode(redis(), "expired", NULL, "expired");
}

Test(interop_worker_celery, countdown_respected_through_delayed_delivery)
{
	run_mode(redis(), "countdown", NULL, "countdown");
}

Test(interop_worker_celery, retries_to_success_and_to_max_retries_exceeded)
{
	run_mode(redis(), "retries", NULL, "retries");
}
