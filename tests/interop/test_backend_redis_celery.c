/* tests/interop/test_backend_redis_celery.c - warren's redis result backend
 * (backends/redis.c) and Celery 5.2's, on the same real Redis
 * (WARREN_TEST_REDIS), each reading what the other stored:
 * tests/interop/backend_redis_celery.py runs Celery's AsyncResult.get(),
 * backend.store_result() and backend.mark_as_failure() with /usr/bin/python3.
 * Both directions are also checked while the reader is already waiting, so
 * the pub/sub notification is exercised, not only the stored key. */
#include <criterion/criterion.h>
#include <hiredis/hiredis.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "backends/backend.h"
#include "support.h"

#define HELPER WARREN_SOURCE_DIR "/tests/interop/backend_redis_celery.py"

/* {"sum": [1, 2.5, "é"]} as both msgpack-c and Python's msgpack pack it. */
static const char NESTED[] = "\x81\xa3sum\x93\x01\xcb\x40\x04\x00\x00\x00\x00\x00\x00\xa2\xc3\xa9";
#define NESTED_LEN (sizeof NESTED - 1)

static void ok(int rc, const warren_error *err)
{
	cr_assert_eq(rc, 0, "rc %d: %s", rc, err->msg);
}

static void unique_id(char *buf, size_t cap, const char *tag)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	snprintf(buf, cap, "interop-%s-%d-%ld%09ld", tag, (int)getpid(), (long)ts.tv_sec,
		 ts.tv_nsec);
}

static backend *open_redis(void)
{
	warren_error err = {0};
	backend *b = NULL;
	ok(backend_open(support_service_url("WARREN_TEST_REDIS"), NULL, &b, &err), &err);
	return b;
}

/* Starts the helper with `args`; the caller reads and closes the pipe. */
static FILE *helper_start(const char *args)
{
	char cmd[512];
	support_service_url("WARREN_TEST_REDIS"); /* fails the test when unset */
	snprintf(cmd, sizeof cmd, "/usr/bin/python3 %s %s", HELPER, args);
	FILE *p = popen(cmd, "r");
	cr_assert_not_null(p, "popen %s", cmd);
	return p;
}

static void helper_finish(FILE *p, const char *what)
{
	int status = pclose(p);
	cr_assert_eq(status, 0, "%s: %s exited with status %d (2: no Celery)", what, HELPER,
		     status);
}

/* Runs the helper to completion. */
static void helper_run(const char *args)
{
	FILE *p = helper_start(args);
	char sink[256];
	while (fread(sink, 1, sizeof sink, p) > 0)
		;
	helper_finish(p, args);
}

/* Reads the helper's JSON and waits for it to exit; json_decref frees it. */
static json_t *helper_json(FILE *p, const char *what)
{
	json_error_t jerr;
	json_t *doc = json_loadf(p, 0, &jerr);
	helper_finish(p, what);
	cr_assert_not_null(doc, "%s: helper output is not JSON: %s", what, jerr.text);
	return doc;
}

static const char *jstr(json_t *obj, const char *key)
{
	json_t *v = json_object_get(obj, key);
	cr_assert(json_is_string(v), "\"%s\" is not a string", key);
	return json_string_value(v);
}

static void store_nested_success(backend *b, const char *id)
{
	warren_error err = {0};
	schema_result r;
	schema_result_init(&r);
	ok(schema_result_set_task_id(&r, id, &err), &err);
	ok(schema_result_set_success(&r, NESTED, NESTED_LEN, &err), &err);
	ok(schema_result_stamp_date_done(&r, NULL, &err), &err);
	ok(backend_store(b, &r, NULL, &err), &err);
	schema_result_release(&r);
}

static void expect_python_saw_nested(json_t *doc)
{
	cr_expect_str_eq(jstr(doc, "status"), "SUCCESS");
	json_t *want = json_pack("{s:[i,f,s]}", "sum", 1, 2.5, "\xc3\xa9");
	json_t *got = json_object_get(doc, "result");
	char *dump = json_dumps(doc, 0);
	cr_expect(json_equal(got, want), "Python saw %s", dump);
	free(dump);
	json_decref(want);
}

/* Blocks (bounded) until some client subscribes to id's channel. */
static void until_subscribed(const char *id)
{
	char host[256], key[256];
	int port;
	cr_assert_eq(support_url_host_port(support_service_url("WARREN_TEST_REDIS"), host,
					   sizeof host, &port), 0);
	redisContext *c = redisConnect(host, port);
	cr_assert(c && !c->err);
	snprintf(key, sizeof key, "celery-task-meta-%s", id);
	for (int i = 0; i < 5000; i++) {
		redisReply *r = redisCommand(c, "PUBSUB NUMSUB %s", key);
		cr_assert(r && r->type == REDIS_REPLY_ARRAY && r->elements == 2);
		long long n = r->element[1]->integer;
		freeReplyObject(r);
		if (n > 0) {
			redisFree(c);
			return;
		}
		struct timespec ts = {0, 2000000};
		nanosleep(&ts, NULL);
	}
	cr_assert_fail("nobody subscribed to %s within 10 s", key);
}

/* ---- Python reads what warren stored ---- */

Test(interop_backend_redis, python_reads_our_success_with_nested_values)
{
	char id[96], args[256];
	unique_id(id, sizeof id, "c2py-ok");
	backend *b = open_redis();
	store_nested_success(b, id);
	snprintf(args, sizeof args, "get %s 10", id);
	json_t *doc = helper_json(helper_start(args), "get");
	expect_python_saw_nested(doc);
	json_decref(doc);
	backend_free(b);
}

Test(interop_backend_redis, python_gets_our_failure_as_value_error)
{
	char id[96], args[256];
	warren_error err = {0};
	unique_id(id, sizeof id, "c2py-fail");
	backend *b = open_redis();
	schema_result r;
	schema_result_init(&r);
	ok(schema_result_set_task_id(&r, id, &err), &err);
	ok(schema_result_set_exception(&r, SCHEMA_STATE_FAILURE, "ValueError", "builtins",
				       "bad input: é", &err), &err);
	ok(schema_result_set_traceback(&r, "Traceback (most recent call last):\n", &err), &err);
	ok(schema_result_stamp_date_done(&r, NULL, &err), &err);
	ok(backend_store(b, &r, NULL, &err), &err);
	schema_result_release(&r);

	snprintf(args, sizeof args, "get %s 10", id);
	json_t *doc = helper_json(helper_start(args), "get");
	cr_expect_str_eq(jstr(doc, "status"), "FAILURE");
	json_t *exc = json_object_get(doc, "exception");
	cr_assert_not_null(exc, "get() did not raise");
	cr_expect_str_eq(jstr(exc, "class"), "ValueError");
	cr_expect_str_eq(jstr(exc, "module"), "builtins");
	cr_expect_str_eq(jstr(exc, "str"), "bad input: \xc3\xa9");
	json_decref(doc);
	backend_free(b);
}

Test(interop_backend_redis, python_waiting_is_woken_by_our_store)
{
	char id[96], args[256];
	unique_id(id, sizeof id, "c2py-late");
	backend *b = open_redis();
	snprintf(args, sizeof args, "get %s 20", id);
	FILE *p = helper_start(args);
	until_subscribed(id); /* Python's get() is listening */
	store_nested_success(b, id);
	json_t *doc = helper_json(p, "get");
	expect_python_saw_nested(doc);
	json_decref(doc);
	backend_free(b);
}

/* ---- warren reads what Celery stored ---- */

Test(interop_backend_redis, we_read_celerys_success)
{
	char id[96], args[256];
	warren_error err = {0};
	unique_id(id, sizeof id, "py2c-ok");
	snprintf(args, sizeof args, "store-success %s", id);
	helper_run(args);
	backend *b = open_redis();
	schema_result r;
	schema_result_init(&r);
	ok(backend_get(b, id, &r, &err), &err);
	cr_expect_eq(r.state, SCHEMA_STATE_SUCCESS, "%s", schema_state_name(r.state));
	cr_expect_str_eq(r.task_id, id);
	cr_expect_not_null(r.date_done);
	cr_assert_eq(r.result_len, NESTED_LEN);
	cr_expect_eq(memcmp(r.result_mp, NESTED, NESTED_LEN), 0);
	schema_result_release(&r);
	backend_free(b);
}

Test(interop_backend_redis, we_read_celerys_failure)
{
	char id[96], args[256];
	warren_error err = {0};
	unique_id(id, sizeof id, "py2c-fail");
	snprintf(args, sizeof args, "store-failure %s", id);
	helper_run(args);
	backend *b = open_redis();
	const char *ids[] = {id};
	schema_result r;
	schema_result_init(&r);
	ok(backend_wait_results(b, ids, 1, 5000, &r, NULL, &err), &err);
	cr_expect_eq(r.state, SCHEMA_STATE_FAILURE, "%s", schema_state_name(r.state));
	cr_expect_str_eq(r.traceback, "Traceback (most recent call last):\n"
				      "ValueError: python says no\n");
	schema_exc exc;
	ok(schema_exc_read(r.result_mp, r.result_len, &exc, &err), &err);
	cr_expect_str_eq(exc.type, "ValueError");
	cr_expect_str_eq(exc.module, "builtins");
	cr_expect_str_eq(exc.message, "python says no");
	schema_exc_release(&exc);
	schema_result_release(&r);
	backend_free(b);
}

Test(interop_backend_redis, our_wait_is_woken_by_celerys_store)
{
	char id[96], args[256];
	warren_error err = {0};
	unique_id(id, sizeof id, "py2c-late");
	backend *b = open_redis();
	snprintf(args, sizeof args, "store-late %s", id);
	FILE *p = helper_start(args); /* stores once we are subscribed */
	const char *ids[] = {id};
	schema_result r;
	schema_result_init(&r);
	ok(backend_wait_results(b, ids, 1, 20000, &r, NULL, &err), &err);
	helper_finish(p, "store-late");
	cr_expect_eq(r.state, SCHEMA_STATE_SUCCESS);
	cr_assert_eq(r.result_len, NESTED_LEN);
	cr_expect_eq(memcmp(r.result_mp, NESTED, NESTED_LEN), 0);
	schema_result_release(&r);
	backend_free(b);
}
