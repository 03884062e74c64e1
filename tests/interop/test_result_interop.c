/* tests/interop/test_result_interop.c - results encoded by schemas/result.c,
 * decoded by Celery 5.2's own client code (tests/interop/result_interop.py
 * run with /usr/bin/python3): a Python client must see our FAILURE as the
 * right exception class with the right message, our REVOKED as
 * TaskRevokedError, and every meta field as Celery itself writes it. */
#include <criterion/criterion.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "schemas/schemas.h"

#define HELPER WARREN_SOURCE_DIR "/tests/interop/result_interop.py"

/* Runs the helper on an encoded message and returns its JSON (the caller
 * frees it with json_decref). Fails the test if Python fails. */
static json_t *python_decode(const char *kind, const char *data, size_t len)
{
	static const char prefix[] = "/usr/bin/python3 " HELPER " ";
	size_t cap = sizeof prefix + strlen(kind) + 2 + 2 * len + 1;
	char *cmd = malloc(cap);
	cr_assert_not_null(cmd);
	size_t n = (size_t)snprintf(cmd, cap, "%s%s ", prefix, kind);
	for (size_t i = 0; i < len; i++)
		n += (size_t)snprintf(cmd + n, cap - n, "%02x", (unsigned char)data[i]);

	FILE *p = popen(cmd, "r");
	cr_assert_not_null(p, "popen %s", HELPER);
	json_error_t jerr;
	json_t *doc = json_loadf(p, 0, &jerr);
	int status = pclose(p);
	free(cmd);
	cr_assert_eq(status, 0, "%s exited with status %d (2: no Celery)", HELPER, status);
	cr_assert_not_null(doc, "helper output is not JSON: %s", jerr.text);
	return doc;
}

static const char *jstr(json_t *obj, const char *key)
{
	json_t *v = json_object_get(obj, key);
	cr_assert(json_is_string(v), "\"%s\" is not a string", key);
	return json_string_value(v);
}

static void ok(int rc, const warren_error *err)
{
	cr_assert_eq(rc, 0, "%s", err->msg);
}

/* Encodes r for the backend `kind` and hands it to Python. */
static json_t *round_trip(const char *kind, const schema_result *r)
{
	warren_error err = {0};
	char *out = NULL;
	size_t out_len = 0;
	if (strcmp(kind, "rpc") == 0)
		ok(schema_result_encode_rpc(r, &out, &out_len, &err), &err);
	else
		ok(schema_result_encode_redis(r, &out, &out_len, &err), &err);
	json_t *doc = python_decode(kind, out, out_len);
	free(out);
	return doc;
}

static void expect_exception(json_t *doc, const char *cls, const char *module, bool real,
			     const char *str)
{
	json_t *exc = json_object_get(doc, "exception");
	cr_assert_not_null(exc, "Python did not rebuild an exception");
	cr_expect_str_eq(jstr(exc, "class"), cls);
	cr_expect_str_eq(jstr(exc, "module"), module);
	cr_expect_eq(json_is_true(json_object_get(exc, "is_real_class")), real,
		     "is_real_class for %s", cls);
	cr_expect_str_eq(jstr(exc, "str"), str);
}

Test(interop_result, python_reads_our_failure_as_the_real_value_error)
{
	warren_error err = {0};
	schema_result r;
	schema_result_init(&r);
	ok(schema_result_set_task_id(&r, "t-fail", &err), &err);
	ok(schema_result_set_exception_args(&r, SCHEMA_STATE_FAILURE, "ValueError", "builtins",
					    "\x92\xa4" "boom" "\x2a", 7, &err),
	   &err);
	ok(schema_result_set_traceback(&r, "Traceback (most recent call last):\n", &err), &err);
	json_t *doc = round_trip("rpc", &r);
	cr_expect_str_eq(jstr(doc, "task_id"), "t-fail");
	cr_expect_str_eq(jstr(doc, "status"), "FAILURE");
	cr_expect_str_eq(jstr(doc, "traceback"), "Traceback (most recent call last):\n");
	expect_exception(doc, "ValueError", "builtins", true, "('boom', 42)");
	json_t *args = json_object_get(json_object_get(doc, "exception"), "args");
	cr_expect_eq(json_array_size(args), 2);
	cr_expect_str_eq(json_string_value(json_array_get(args, 0)), "boom");
	cr_expect_eq(json_integer_value(json_array_get(args, 1)), 42);
	json_decref(doc);
	schema_result_release(&r);
}

Test(interop_result, python_reads_a_message_failure_and_an_unknown_module)
{
	warren_error err = {0};
	schema_result r;
	schema_result_init(&r);
	ok(schema_result_set_task_id(&r, "t", &err), &err);
	ok(schema_result_set_exception(&r, SCHEMA_STATE_FAILURE, "KeyError", "builtins",
				       "missing", &err),
	   &err);
	json_t *doc = round_trip("redis", &r);
	/* KeyError's str() quotes its argument, as Python's own does. */
	expect_exception(doc, "KeyError", "builtins", true, "'missing'");
	json_decref(doc);

	/* A class Python cannot import: Celery synthesizes one of that name. */
	ok(schema_result_set_exception(&r, SCHEMA_STATE_FAILURE, "PluginError", "warren.plugins",
				       "disk full", &err),
	   &err);
	doc = round_trip("rpc", &r);
	expect_exception(doc, "PluginError", "celery.exceptions", false, "disk full");
	json_decref(doc);
	schema_result_release(&r);
}

Test(interop_result, python_reads_our_revoked_and_retry)
{
	static const char *const reasons[] = {"revoked", "expired", "terminated"};
	warren_error err = {0};
	schema_result r;
	schema_result_init(&r);
	ok(schema_result_set_task_id(&r, "t", &err), &err);
	for (int i = 0; i < 3; i++) {
		ok(schema_result_set_revoked(&r, (schema_revoke_reason)i, &err), &err);
		json_t *doc = round_trip(i == 2 ? "redis" : "rpc", &r);
		cr_expect_str_eq(jstr(doc, "status"), "REVOKED");
		expect_exception(doc, "TaskRevokedError", "celery.exceptions", true, reasons[i]);
		json_decref(doc);
	}
	ok(schema_result_set_exception(&r, SCHEMA_STATE_RETRY, "ConnectionError", "builtins",
				       "broker down", &err),
	   &err);
	json_t *doc = round_trip("rpc", &r);
	cr_expect_str_eq(jstr(doc, "status"), "RETRY");
	expect_exception(doc, "ConnectionError", "builtins", true, "broker down");
	json_decref(doc);
	schema_result_release(&r);
}

Test(interop_result, our_exception_message_matches_python_str)
{
	/* E(1.5, None, True, "it's", b'\x00a', [-1, 'a\nb'], {'k': 0.1}, 1e+22) */
	msgpack_sbuffer sb;
	msgpack_packer pk;
	msgpack_sbuffer_init(&sb);
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	msgpack_pack_array(&pk, 8);
	msgpack_pack_double(&pk, 1.5);
	msgpack_pack_nil(&pk);
	msgpack_pack_true(&pk);
	msgpack_pack_str_with_body(&pk, "it's", 4);
	msgpack_pack_bin_with_body(&pk, "\x00" "a", 2);
	msgpack_pack_array(&pk, 2);
	msgpack_pack_int(&pk, -1);
	msgpack_pack_str_with_body(&pk, "a\nb", 3);
	msgpack_pack_map(&pk, 1);
	msgpack_pack_str_with_body(&pk, "k", 1);
	msgpack_pack_double(&pk, 0.1);
	msgpack_pack_double(&pk, 1e22);

	warren_error err = {0};
	schema_result r;
	schema_exc exc;
	schema_result_init(&r);
	ok(schema_result_set_task_id(&r, "t", &err), &err);
	ok(schema_result_set_exception_args(&r, SCHEMA_STATE_FAILURE, "RuntimeError", "builtins",
					    sb.data, sb.size, &err),
	   &err);
	ok(schema_exc_read(r.result_mp, r.result_len, &exc, &err), &err);
	json_t *doc = round_trip("rpc", &r);
	expect_exception(doc, "RuntimeError", "builtins", true, exc.message);
	json_decref(doc);
	schema_exc_release(&exc);
	schema_result_release(&r);
	msgpack_sbuffer_destroy(&sb);
}

Test(interop_result, python_reads_our_success_started_and_children)
{
	warren_error err = {0};
	schema_result r;
	schema_result_init(&r);
	ok(schema_result_set_task_id(&r, "t-ok", &err), &err);
	/* {"sum": 5, "parts": [2, 3.5]} */
	static const char value[] = "\x82\xa3sum\x05\xa5parts\x92\x02\xcb\x40\x0c\x00\x00\x00\x00\x00\x00";
	ok(schema_result_set_success(&r, value, sizeof value - 1, &err), &err);
	/* [[["c-1", None], None]] */
	ok(schema_result_set_children(&r, "\x91\x92\x92\xa3" "c-1\xc0\xc0", 9, &err), &err);
	json_t *doc = round_trip("rpc", &r);
	cr_expect_str_eq(jstr(doc, "status"), "SUCCESS");
	json_t *result = json_object_get(doc, "result");
	cr_expect_eq(json_integer_value(json_object_get(result, "sum")), 5);
	cr_expect_eq(json_real_value(json_array_get(json_object_get(result, "parts"), 1)), 3.5);
	json_t *child = json_array_get(json_array_get(json_object_get(doc, "children"), 0), 0);
	cr_expect_str_eq(json_string_value(json_array_get(child, 0)), "c-1");
	cr_expect(json_is_null(json_object_get(doc, "traceback")));
	json_decref(doc);

	ok(schema_result_set_started(&r, 4242, "w1@host", &err), &err);
	doc = round_trip("rpc", &r);
	cr_expect_str_eq(jstr(doc, "status"), "STARTED");
	result = json_object_get(doc, "result");
	cr_expect_eq(json_integer_value(json_object_get(result, "pid")), 4242);
	cr_expect_str_eq(jstr(result, "hostname"), "w1@host");
	json_decref(doc);
	schema_result_release(&r);
}

Test(interop_result, python_reads_every_redis_meta_field)
{
	warren_error err = {0};
	schema_result r;
	schema_result_init(&r);
	ok(schema_result_set_task_id(&r, "t-redis", &err), &err);
	ok(schema_result_set_success(&r, "\x05", 1, &err), &err);
	ok(schema_result_set_group_id(&r, "g-1", &err), &err);
	ok(schema_result_set_parent_id(&r, "p-1", &err), &err);
	ok(schema_result_set_extended(&r, "math.add", "\x92\x02\x03", 3, "\x81\xa1z\x01", 4,
				      "w1@host", 2, "celery", &err),
	   &err);
	ok(schema_result_stamp_date_done(&r, NULL, &err), &err);
	json_t *doc = round_trip("redis", &r);
	cr_expect_str_eq(jstr(doc, "task_id"), "t-redis");
	cr_expect_str_eq(jstr(doc, "status"), "SUCCESS");
	cr_expect_eq(json_integer_value(json_object_get(doc, "result")), 5);
	/* AsyncResult.date_done parses it back to the same instant. */
	cr_expect_str_eq(jstr(doc, "date_done"), r.date_done);
	cr_expect_str_eq(jstr(doc, "date_done_parsed"), r.date_done);
	cr_expect_str_eq(jstr(doc, "group_id"), "g-1");
	cr_expect_str_eq(jstr(doc, "parent_id"), "p-1");
	cr_expect_str_eq(jstr(doc, "name"), "math.add");
	cr_expect_eq(json_array_size(json_object_get(doc, "args")), 2);
	cr_expect_eq(json_integer_value(json_object_get(json_object_get(doc, "kwargs"), "z")), 1);
	cr_expect_str_eq(jstr(doc, "worker"), "w1@host");
	cr_expect_eq(json_integer_value(json_object_get(doc, "retries")), 2);
	cr_expect_str_eq(jstr(doc, "queue"), "celery");
	json_decref(doc);

	/* Not ready: date_done is None, as Celery writes it. */
	ok(schema_result_set_started(&r, 1, "h", &err), &err);
	ok(schema_result_stamp_date_done(&r, NULL, &err), &err);
	doc = round_trip("redis", &r);
	cr_expect(json_is_null(json_object_get(doc, "date_done")));
	json_decref(doc);
	schema_result_release(&r);
}
