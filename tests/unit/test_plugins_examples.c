/* tests/unit/test_plugins_examples.c - the example plugins' tasks run
 * in-process through the host API with real msgpack args, and the task
 * context's own behaviour (getters, failures, results) through small
 * handlers registered here.
 *
 * Inputs are written as JSON (jansson) and packed to msgpack the way a
 * producer would; types JSON lacks (bytes, ext, float32, uint64) are packed
 * by hand. */
#include <criterion/criterion.h>
#include <jansson.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "worker/worker.h"

#define PLUGIN_DIR WARREN_BUILD_DIR "/plugins/"

static registry *reg;
static msgpack_sbuffer input;      /* packed [args, kwargs] */
static msgpack_packer in_pk;
static msgpack_unpacked input_obj;
static msgpack_unpacked output;    /* the unpacked result */
static task_ctx ctx;

static void setup(void)
{
	warren_error err = {0};
	cr_assert_eq(registry_new(&reg, &err), 0, "%s", err.msg);
	cr_assert_eq(plugin_load(reg, PLUGIN_DIR "math.so", &err), 0, "%s", err.msg);
	cr_assert_eq(plugin_load(reg, PLUGIN_DIR "text.so", &err), 0, "%s", err.msg);
	cr_assert_eq(plugin_load(reg, PLUGIN_DIR "test.so", &err), 0, "%s", err.msg);
	msgpack_sbuffer_init(&input);
	msgpack_packer_init(&in_pk, &input, msgpack_sbuffer_write);
	msgpack_unpacked_init(&input_obj);
	msgpack_unpacked_init(&output);
	task_ctx_init(&ctx);
}

static void teardown(void)
{
	task_ctx_release(&ctx);
	msgpack_unpacked_destroy(&output);
	msgpack_unpacked_destroy(&input_obj);
	msgpack_sbuffer_destroy(&input);
	registry_free(reg);
}

TestSuite(plugins_math, .init = setup, .fini = teardown);
TestSuite(plugins_text, .init = setup, .fini = teardown);
TestSuite(plugins_test, .init = setup, .fini = teardown);
TestSuite(task_context, .init = setup, .fini = teardown);

/* ---- helpers --------------------------------------------------------------- */

static void pack_json(msgpack_packer *pk, const json_t *j)
{
	switch (json_typeof(j)) {
	case JSON_OBJECT: {
		const char *key;
		json_t *val;
		msgpack_pack_map(pk, json_object_size(j));
		json_object_foreach((json_t *)j, key, val) {
			msgpack_pack_str_with_body(pk, key, strlen(key));
			pack_json(pk, val);
		}
		break;
	}
	case JSON_ARRAY:
		msgpack_pack_array(pk, json_array_size(j));
		for (size_t i = 0; i < json_array_size(j); i++)
			pack_json(pk, json_array_get(j, i));
		break;
	case JSON_STRING:
		msgpack_pack_str_with_body(pk, json_string_value(j), json_string_length(j));
		break;
	case JSON_INTEGER: msgpack_pack_int64(pk, json_integer_value(j)); break;
	case JSON_REAL: msgpack_pack_double(pk, json_real_value(j)); break;
	case JSON_TRUE: msgpack_pack_true(pk); break;
	case JSON_FALSE: msgpack_pack_false(pk); break;
	case JSON_NULL: msgpack_pack_nil(pk); break;
	}
}

static void pack_json_text(const char *text)
{
	json_error_t jerr;
	json_t *j = json_loads(text, JSON_DECODE_ANY, &jerr);
	cr_assert_not_null(j, "bad test JSON '%s': %s", text, jerr.text);
	pack_json(&in_pk, j);
	json_decref(j);
}

static const registry_entry *lookup(const char *name)
{
	const registry_entry *e = registry_lookup(reg, name, strlen(name));
	cr_assert_not_null(e, "task %s not registered", name);
	return e;
}

/* Starts a new task context (the previous run's is released). */
static void fresh_ctx(void)
{
	task_ctx_release(&ctx);
	task_ctx_init(&ctx);
	ctx.id = "6c8b6f8e-0000-4000-8000-000000000001";
}

/* Runs task on the [args, kwargs] packed into `input`; on success the result
 * is unpacked into `output`. */
static task_status run_packed(const char *task)
{
	size_t off = 0;
	cr_assert_eq(msgpack_unpack_next(&input_obj, input.data, input.size, &off),
		     MSGPACK_UNPACK_SUCCESS, "test input does not unpack");
	const msgpack_object *in = &input_obj.data;
	cr_assert_eq(in->type, MSGPACK_OBJECT_ARRAY);
	cr_assert_eq(in->via.array.size, 2);
	ctx.args = in->via.array.ptr[0];
	ctx.kwargs = in->via.array.ptr[1];
	if (!ctx.id)
		ctx.id = "6c8b6f8e-0000-4000-8000-000000000001";
	task_status st = task_run(&ctx, lookup(task));
	if (st == TASK_SUCCESS) {
		size_t len;
		const char *bytes = task_result_bytes(&ctx, &len);
		off = 0;
		cr_assert_eq(msgpack_unpack_next(&output, bytes, len, &off), MSGPACK_UNPACK_SUCCESS);
		cr_assert_eq(off, len, "result has trailing bytes");
	}
	return st;
}

static task_status run(const char *task, const char *args_json, const char *kwargs_json)
{
	msgpack_sbuffer_clear(&input);
	msgpack_pack_array(&in_pk, 2);
	pack_json_text(args_json);
	pack_json_text(kwargs_json);
	return run_packed(task);
}

static void expect_success(task_status st)
{
	cr_assert_eq(st, TASK_SUCCESS, "task %s: status %d: %s.%s: %s", ctx.name, (int)st,
		     ctx.exc_module, ctx.exc_type, ctx.exc_message);
}

static void expect_int(task_status st, int64_t v)
{
	expect_success(st);
	const msgpack_object *o = &output.data;
	cr_assert(o->type == MSGPACK_OBJECT_POSITIVE_INTEGER || o->type == MSGPACK_OBJECT_NEGATIVE_INTEGER,
		  "result type %d is not an int", (int)o->type);
	cr_assert_eq(o->via.i64, v, "result %lld, expected %lld", (long long)o->via.i64, (long long)v);
}

static void expect_float(task_status st, double v)
{
	expect_success(st);
	const msgpack_object *o = &output.data;
	cr_assert_eq(o->type, MSGPACK_OBJECT_FLOAT64, "result type %d is not a float", (int)o->type);
	cr_assert_float_eq(o->via.f64, v, 1e-12, "result %g, expected %g", o->via.f64, v);
}

static void expect_str(task_status st, const char *s)
{
	expect_success(st);
	const msgpack_object *o = &output.data;
	cr_assert_eq(o->type, MSGPACK_OBJECT_STR, "result type %d is not a str", (int)o->type);
	cr_assert_eq(o->via.str.size, strlen(s), "result '%.*s', expected '%s'",
		     (int)o->via.str.size, o->via.str.ptr, s);
	cr_assert(o->via.str.size == 0 || memcmp(o->via.str.ptr, s, strlen(s)) == 0, "result '%.*s', expected '%s'",
		     (int)o->via.str.size, o->via.str.ptr, s);
}

static void expect_failure(task_status st, const char *module, const char *type, const char *msg)
{
	cr_assert_eq(st, TASK_FAILURE, "status %d, expected failure", (int)st);
	cr_assert_str_eq(ctx.exc_module, module);
	cr_assert_str_eq(ctx.exc_type, type);
	cr_assert_str_eq(ctx.exc_message, msg);
}

/* ---- math ------------------------------------------------------------------ */

Test(plugins_math, add_keeps_ints)
{
	expect_int(run("math.add", "[2, 3]", "{}"), 5);
	fresh_ctx();
	expect_int(run("math.add", "[-7, 3]", "{}"), -4);
}

Test(plugins_math, add_with_a_float_gives_float)
{
	expect_float(run("math.add", "[2, 0.5]", "{}"), 2.5);
	fresh_ctx();
	expect_float(run("math.add", "[1.25, 1.25]", "{}"), 2.5);
}

Test(plugins_math, add_takes_kwargs_by_schema_name)
{
	expect_int(run("math.add", "[]", "{\"a\": 40, \"b\": 2}"), 42);
	fresh_ctx();
	expect_int(run("math.add", "[40]", "{\"b\": 2}"), 42);
}

Test(plugins_math, add_overflow_fails)
{
	expect_failure(run("math.add", "[9223372036854775807, 1]", "{}"), "builtins",
		       "OverflowError", "math.add: int64 overflow");
}

Test(plugins_math, add_refuses_uint64_beyond_int64)
{
	msgpack_pack_array(&in_pk, 2);
	msgpack_pack_array(&in_pk, 2);
	msgpack_pack_uint64(&in_pk, UINT64_MAX);
	msgpack_pack_int(&in_pk, 1);
	msgpack_pack_map(&in_pk, 0);
	expect_failure(run_packed("math.add"), "builtins", "OverflowError",
		       "math.add: argument a: 18446744073709551615 does not fit in int64");
}

Test(plugins_math, add_wrong_type_names_the_argument)
{
	expect_failure(run("math.add", "[1, \"2\"]", "{}"), "builtins", "TypeError",
		       "math.add: argument b: expected float, got str");
}

Test(plugins_math, add_missing_argument)
{
	expect_failure(run("math.add", "[1]", "{}"), "builtins", "TypeError",
		       "math.add: missing argument b");
}

Test(plugins_math, mul_keeps_ints)
{
	expect_int(run("math.mul", "[6, 7]", "{}"), 42);
	fresh_ctx();
	expect_int(run("math.mul", "[-3, 3]", "{}"), -9);
}

Test(plugins_math, mul_with_a_float_gives_float)
{
	expect_float(run("math.mul", "[3, 0.5]", "{}"), 1.5);
}

Test(plugins_math, mul_overflow_fails)
{
	expect_failure(run("math.mul", "[4611686018427387904, 2]", "{}"), "builtins",
		       "OverflowError", "math.mul: int64 overflow");
}

Test(plugins_math, sum_keeps_ints)
{
	expect_int(run("math.sum", "[[1, 2, 3, -10]]", "{}"), -4);
}

Test(plugins_math, sum_of_empty_list_is_zero)
{
	expect_int(run("math.sum", "[[]]", "{}"), 0);
}

Test(plugins_math, sum_with_a_float_gives_float)
{
	expect_float(run("math.sum", "[[1, 2.5, 3]]", "{}"), 6.5);
}

Test(plugins_math, sum_refuses_non_numbers)
{
	expect_failure(run("math.sum", "[[1, 2, \"3\"]]", "{}"), "builtins", "TypeError",
		       "math.sum: argument numbers[2]: expected int or float");
}

Test(plugins_math, sum_refuses_a_non_list)
{
	expect_failure(run("math.sum", "[5]", "{}"), "builtins", "TypeError",
		       "math.sum: argument numbers: expected list, got int");
}

Test(plugins_math, sum_overflow_fails)
{
	expect_failure(run("math.sum", "[[9223372036854775807, 1]]", "{}"), "builtins",
		       "OverflowError", "math.sum: int64 overflow");
}

/* ---- text ------------------------------------------------------------------- */

Test(plugins_text, upper_ascii)
{
	expect_str(run("text.upper", "[\"hello, World 42!\"]", "{}"), "HELLO, WORLD 42!");
}

Test(plugins_text, upper_latin1_and_beyond)
{
	/* Python: 'àéîõüÿßµ çñø ÷'.upper() */
	expect_str(run("text.upper", "[\"àéîõüÿßµ çñø ÷\"]", "{}"), "ÀÉÎÕÜŸSSΜ ÇÑØ ÷");
	fresh_ctx();
	expect_str(run("text.upper", "[\"łódź ŉ ıſ\"]", "{}"), "ŁÓDŹ ʼN IS");
	fresh_ctx();
	expect_str(run("text.upper", "[\"αβγ ς ά привет ё 日本\"]", "{}"), "ΑΒΓ Σ Ά ПРИВЕТ Ё 日本");
}

Test(plugins_text, upper_empty)
{
	expect_str(run("text.upper", "[\"\"]", "{}"), "");
}

static task_status run_one_str(const char *task, const char *bytes, size_t len)
{
	msgpack_sbuffer_clear(&input);
	msgpack_pack_array(&in_pk, 2);
	msgpack_pack_array(&in_pk, 1);
	msgpack_pack_str_with_body(&in_pk, bytes, len);
	msgpack_pack_map(&in_pk, 0);
	return run_packed(task);
}

Test(plugins_text, upper_refuses_invalid_utf8)
{
	expect_failure(run_one_str("text.upper", "ab\xc3(", 4), "builtins", "ValueError",
		       "text.upper: invalid UTF-8 at byte 2");
	fresh_ctx();
	/* an overlong '/' and a UTF-16 surrogate */
	expect_failure(run_one_str("text.upper", "\xc0\xaf", 2), "builtins", "ValueError",
		       "text.upper: invalid UTF-8 at byte 0");
	fresh_ctx();
	expect_failure(run_one_str("text.upper", "x\xed\xa0\x80", 4), "builtins", "ValueError",
		       "text.upper: invalid UTF-8 at byte 1");
}

Test(plugins_text, upper_refuses_non_strings)
{
	expect_failure(run("text.upper", "[1]", "{}"), "builtins", "TypeError",
		       "text.upper: argument s: expected str, got int");
}

Test(plugins_text, wordcount_splits_on_whitespace)
{
	expect_int(run("text.wordcount", "[\"  the quick\\tbrown\\n\\nfox  \"]", "{}"), 4);
	fresh_ctx();
	expect_int(run("text.wordcount", "[\"one\"]", "{}"), 1);
}

Test(plugins_text, wordcount_of_blank_is_zero)
{
	expect_int(run("text.wordcount", "[\"\"]", "{}"), 0);
	fresh_ctx();
	expect_int(run("text.wordcount", "[\" \\t\\r\\n \"]", "{}"), 0);
}

Test(plugins_text, wordcount_knows_unicode_spaces)
{
	/* no-break space, ideographic space, em space: Python's str.split() splits on them */
	expect_int(run("text.wordcount", "[\"a\u00a0b\u3000c\u2003d é\"]", "{}"), 5);
}

Test(plugins_text, wordcount_refuses_invalid_utf8)
{
	expect_failure(run_one_str("text.wordcount", "ok \xff", 4), "builtins", "ValueError",
		       "text.wordcount: invalid UTF-8 at byte 3");
}

/* ---- test ------------------------------------------------------------------- */

/* Packs args and kwargs with every msgpack type, nested. */
static void pack_every_type(msgpack_packer *pk)
{
	msgpack_pack_array(pk, 16);
	msgpack_pack_nil(pk);
	msgpack_pack_true(pk);
	msgpack_pack_false(pk);
	msgpack_pack_int64(pk, 0);
	msgpack_pack_int64(pk, -1);
	msgpack_pack_int64(pk, INT64_MIN);
	msgpack_pack_uint64(pk, UINT64_MAX);
	msgpack_pack_float(pk, 1.5f);
	msgpack_pack_double(pk, -0.1);
	msgpack_pack_str_with_body(pk, "héllo", 6);
	msgpack_pack_str_with_body(pk, "", 0);
	msgpack_pack_bin_with_body(pk, "\x00\xff\x01", 3);
	msgpack_pack_ext_with_body(pk, "\x01\x02\x03\x04", 4, 42);
	msgpack_pack_array(pk, 0);
	msgpack_pack_array(pk, 2); /* [[1, {"k": [null]}], "x"] */
	msgpack_pack_array(pk, 2);
	msgpack_pack_int(pk, 1);
	msgpack_pack_map(pk, 1);
	msgpack_pack_str_with_body(pk, "k", 1);
	msgpack_pack_array(pk, 1);
	msgpack_pack_nil(pk);
	msgpack_pack_str_with_body(pk, "x", 1);
	msgpack_pack_map(pk, 0);

	msgpack_pack_map(pk, 3);
	msgpack_pack_str_with_body(pk, "nested", 6);
	msgpack_pack_map(pk, 1);
	msgpack_pack_int(pk, 7); /* a non-string key, too */
	msgpack_pack_bin_with_body(pk, "b", 1);
	msgpack_pack_str_with_body(pk, "big", 3);
	msgpack_pack_str(pk, 70000);
	for (int i = 0; i < 70000; i++)
		msgpack_pack_str_body(pk, "z", 1);
	msgpack_pack_str_with_body(pk, "f", 1);
	msgpack_pack_double(pk, 1e300);
}

Test(plugins_test, echo_returns_args_and_kwargs_unchanged)
{
	msgpack_pack_array(&in_pk, 2);
	pack_every_type(&in_pk);
	expect_success(run_packed("test.echo"));
	/* The input was packed canonically, so [args, kwargs] must come back
	 * byte for byte, float32 and ext included. */
	size_t len;
	const char *bytes = task_result_bytes(&ctx, &len);
	cr_assert_eq(len, input.size, "echo result is %zu bytes, input %zu", len, input.size);
	cr_assert_eq(memcmp(bytes, input.data, len), 0, "echo changed the bytes");
}

Test(plugins_test, echo_of_nothing_is_two_empties)
{
	ctx.id = "x";
	task_status st = task_run(&ctx, lookup("test.echo")); /* args, kwargs nil */
	expect_success(st);
	size_t len;
	const char *bytes = task_result_bytes(&ctx, &len);
	cr_assert_eq(len, 3);
	cr_assert_eq(memcmp(bytes, "\x92\x90\x80", 3), 0);
}

Test(plugins_test, noop_returns_null)
{
	expect_success(run("test.noop", "[1, 2, 3]", "{}"));
	cr_assert_eq(output.data.type, MSGPACK_OBJECT_NIL);
	size_t len;
	cr_assert_eq(memcmp(task_result_bytes(&ctx, &len), "\xc0", 1), 0);
	cr_assert_eq(len, 1);
}

static double elapsed_since(int64_t start_ns)
{
	return (double)(task_monotonic_ns() - start_ns) / 1e9;
}

Test(plugins_test, sleep_sleeps_and_returns_seconds)
{
	int64_t start = task_monotonic_ns();
	expect_float(run("test.sleep", "[0.05]", "{}"), 0.05);
	double took = elapsed_since(start);
	cr_assert_geq(took, 0.05, "slept only %g s", took);
	cr_assert_lt(took, 5.0, "slept %g s", took);
	fresh_ctx();
	expect_int(run("test.sleep", "[0]", "{}"), 0);
}

Test(plugins_test, sleep_honours_the_soft_time_limit)
{
	task_set_soft_limit(&ctx, 0.1);
	int64_t start = task_monotonic_ns();
	expect_failure(run("test.sleep", "[30]", "{}"), "billiard.exceptions",
		       "SoftTimeLimitExceeded", "test.sleep: soft time limit exceeded");
	double took = elapsed_since(start);
	cr_assert_geq(took, 0.1, "gave up after %g s, before the limit", took);
	cr_assert_lt(took, 5.0, "took %g s to notice a 0.1 s soft limit", took);
}

Test(plugins_test, sleep_stops_when_told_the_limit_passed)
{
	/* What a timer thread or a prefork child's signal handler does. */
	atomic_store(&ctx.soft_limit_hit, true);
	int64_t start = task_monotonic_ns();
	expect_failure(run("test.sleep", "[30]", "{}"), "billiard.exceptions",
		       "SoftTimeLimitExceeded", "test.sleep: soft time limit exceeded");
	cr_assert_lt(elapsed_since(start), 5.0);
}

Test(plugins_test, sleep_refuses_negative_seconds)
{
	expect_failure(run("test.sleep", "[-1]", "{}"), "builtins", "ValueError",
		       "test.sleep: seconds must be in [0, 86400], got -1");
}

Test(plugins_test, fail_raises_value_error_with_the_message)
{
	expect_failure(run("test.fail", "[\"boom: it broke\"]", "{}"), "builtins", "ValueError",
		       "boom: it broke");
}

Test(plugins_test, fail_with_an_empty_message)
{
	expect_failure(run("test.fail", "[\"\"]", "{}"), "builtins", "ValueError", "");
}

Test(plugins_test, crash_dies_of_sigsegv)
{
	fflush(NULL);
	pid_t pid = fork();
	cr_assert_neq(pid, -1, "fork");
	if (pid == 0) {
		/* Criterion and sanitizers catch SIGSEGV to report it; the worker's
		 * prefork child is expected to die of it, so test that. */
		struct rlimit no_core = {0, 0};
		setrlimit(RLIMIT_CORE, &no_core);
		signal(SIGSEGV, SIG_DFL);
		run("test.crash", "[]", "{}");
		_exit(0);
	}
	int status;
	cr_assert_eq(waitpid(pid, &status, 0), pid);
	cr_assert(WIFSIGNALED(status), "child did not die of a signal (status %#x)", status);
	cr_assert_eq(WTERMSIG(status), SIGSEGV, "child died of signal %d", WTERMSIG(status));
}

Test(plugins_test, flaky_retries_then_returns_the_attempt_count)
{
	for (int retries = 0; retries < 3; retries++) {
		fresh_ctx();
		ctx.retries = retries;
		task_status st = run("test.flaky", "[\"k1\", 3]", "{}");
		cr_assert_eq(st, TASK_RETRY, "attempt %d: status %d", retries + 1, (int)st);
		cr_assert_eq(ctx.retry_countdown, 0.0);
	}
	fresh_ctx();
	ctx.retries = 3;
	expect_int(run("test.flaky", "[\"k1\", 3]", "{}"), 4);
	fresh_ctx();
	expect_int(run("test.flaky", "[\"k2\", 0]", "{}"), 1);
}

/* ---- the task context itself ----------------------------------------------- */

static void add_task(const char *name, warren_task_fn fn, const warren_task_options *opts)
{
	warren_error err = {0};
	cr_assert_eq(registry_add(reg, name, fn, opts, &err), 0, "%s", err.msg);
}

static const warren_param getter_params[] = {
	{.name = "a", .type = WARREN_TYPE_INT, .required = 1},
	{.name = "b", .type = WARREN_TYPE_STR, .required = 1},
	{.name = "c", .type = WARREN_TYPE_FLOAT, .default_mp = "\xcb\x3f\xf8\0\0\0\0\0\0",
	 .default_len = 9}, /* 1.5 */
	{.name = "d", .type = WARREN_TYPE_BOOL},
	{.name = "e", .type = WARREN_TYPE_BYTES, .required = 1},
};
static const warren_task_schema getter_schema = {.params = getter_params, .n_params = 5};
static const warren_task_options getter_options = {.schema = &getter_schema};

/* Reads a by index, b, c and e by name, d (optional, absent) by index;
 * returns [a, b, c, d's getter result, e]. */
static int getters(warren_task *t)
{
	int64_t a;
	const char *b;
	size_t b_len, e_len;
	double c;
	bool d;
	const void *e;
	if (warren_task_arg_int(t, 0, &a) || warren_task_kwarg_str(t, "b", &b, &b_len) ||
	    warren_task_kwarg_float(t, "c", &c) || warren_task_kwarg_bytes(t, "e", &e, &e_len))
		return -1;
	int d_rc = warren_task_arg_bool(t, 3, &d);
	msgpack_packer *pk = warren_task_result(t);
	msgpack_pack_array(pk, 5);
	msgpack_pack_int64(pk, a);
	msgpack_pack_str_with_body(pk, b, b_len);
	msgpack_pack_double(pk, c);
	msgpack_pack_int(pk, d_rc);
	msgpack_pack_bin_with_body(pk, e, e_len);
	return 0;
}

static void pack_getter_input(bool with_e)
{
	msgpack_pack_array(&in_pk, 2);
	msgpack_pack_array(&in_pk, 2);
	msgpack_pack_int(&in_pk, 7);
	msgpack_pack_str_with_body(&in_pk, "bee", 3); /* b, positionally */
	msgpack_pack_map(&in_pk, with_e ? 1 : 0);
	if (with_e) {
		msgpack_pack_str_with_body(&in_pk, "e", 1);
		msgpack_pack_bin_with_body(&in_pk, "\x01\x02", 2);
	}
}

Test(task_context, getters_resolve_by_index_name_and_default)
{
	add_task("ctx.getters", getters, &getter_options);
	pack_getter_input(true);
	expect_success(run_packed("ctx.getters"));
	const msgpack_object_array *r = &output.data.via.array;
	cr_assert_eq(r->size, 5);
	cr_assert_eq(r->ptr[0].via.i64, 7);
	cr_assert_eq(r->ptr[1].via.str.size, 3);
	cr_assert_eq(memcmp(r->ptr[1].via.str.ptr, "bee", 3), 0, "b by name found the positional");
	cr_assert_float_eq(r->ptr[2].via.f64, 1.5, 1e-12, "c from the schema default");
	cr_assert_eq(r->ptr[3].via.i64, WARREN_ARG_ABSENT, "d absent without failing");
	cr_assert_eq(r->ptr[4].via.bin.size, 2);
	cr_assert_eq(memcmp(r->ptr[4].via.bin.ptr, "\x01\x02", 2), 0);
}

Test(task_context, missing_required_argument_fails_naming_it)
{
	add_task("ctx.getters", getters, &getter_options);
	pack_getter_input(false);
	expect_failure(run_packed("ctx.getters"), "builtins", "TypeError",
		       "ctx.getters: missing argument e");
}

Test(task_context, wrong_type_fails_naming_the_argument)
{
	add_task("ctx.getters", getters, &getter_options);
	expect_failure(run("ctx.getters", "[\"7\", \"b\"]", "{}"), "builtins", "TypeError",
		       "ctx.getters: argument a: expected int, got str");
}

/* No schema: arguments are args[i] or kwargs by name only. */
static int bare(warren_task *t)
{
	int64_t v;
	bool flag;
	if (warren_task_arg_int(t, 1, &v) || warren_task_kwarg_bool(t, "flag", &flag))
		return -1;
	msgpack_pack_int64(warren_task_result(t), flag ? v : -v);
	return 0;
}

Test(task_context, getters_without_schema)
{
	add_task("ctx.bare", bare, NULL);
	expect_int(run("ctx.bare", "[0, 5]", "{\"flag\": false}"), -5);
	fresh_ctx();
	expect_failure(run("ctx.bare", "[0]", "{\"flag\": true}"), "builtins", "TypeError",
		       "ctx.bare: missing argument args[1]");
	fresh_ctx();
	expect_failure(run("ctx.bare", "[0, 2.5]", "{}"), "builtins", "TypeError",
		       "ctx.bare: argument args[1]: expected int, got float");
	fresh_ctx();
	expect_failure(run("ctx.bare", "[0, 1]", "{\"flag\": null}"), "builtins", "TypeError",
		       "ctx.bare: argument flag: expected bool, got null");
}

Test(task_context, int_getter_refuses_uint64_beyond_int64)
{
	add_task("ctx.bare", bare, NULL);
	msgpack_pack_array(&in_pk, 2);
	msgpack_pack_array(&in_pk, 2);
	msgpack_pack_int(&in_pk, 0);
	msgpack_pack_uint64(&in_pk, (uint64_t)INT64_MAX + 1);
	msgpack_pack_map(&in_pk, 0);
	expect_failure(run_packed("ctx.bare"), "builtins", "OverflowError",
		       "ctx.bare: argument args[1]: 9223372036854775808 does not fit in int64");
}

static int fails_then_succeeds(warren_task *t)
{
	warren_task_fail(t, "KeyError", "first %d", 1);
	warren_task_fail(t, "ValueError", "second");
	warren_task_retry(t, 5);
	msgpack_pack_int(warren_task_result(t), 1);
	return 0;
}

Test(task_context, first_failure_wins_over_later_ones_and_return_0)
{
	add_task("ctx.fails", fails_then_succeeds, NULL);
	expect_failure(run("ctx.fails", "[]", "{}"), "builtins", "KeyError", "first 1");
}

static int returns_5(warren_task *t)
{
	(void)t;
	return 5;
}

Test(task_context, nonzero_return_without_a_reason_is_runtime_error)
{
	add_task("ctx.silent", returns_5, NULL);
	expect_failure(run("ctx.silent", "[]", "{}"), "builtins", "RuntimeError",
		       "ctx.silent: handler returned 5 without failing or retrying the task");
}

static int packs_half_an_array(warren_task *t)
{
	msgpack_pack_array(warren_task_result(t), 2);
	msgpack_pack_int(warren_task_result(t), 1);
	return 0;
}

static int packs_two_objects(warren_task *t)
{
	msgpack_pack_int(warren_task_result(t), 1);
	msgpack_pack_int(warren_task_result(t), 2);
	return 0;
}

Test(task_context, malformed_results_fail_the_task)
{
	add_task("ctx.half", packs_half_an_array, NULL);
	add_task("ctx.two", packs_two_objects, NULL);
	expect_failure(run("ctx.half", "[]", "{}"), "builtins", "RuntimeError",
		       "ctx.half: handler packed a malformed result (2 bytes)");
	fresh_ctx();
	expect_failure(run("ctx.two", "[]", "{}"), "builtins", "RuntimeError",
		       "ctx.two: handler packed a malformed result (2 bytes)");
}

static int retry_in_2(warren_task *t)
{
	return warren_task_retry(t, 2.5);
}

Test(task_context, retry_records_the_countdown)
{
	add_task("ctx.retry", retry_in_2, NULL);
	cr_assert_eq(run("ctx.retry", "[]", "{}"), TASK_RETRY);
	cr_assert_float_eq(ctx.retry_countdown, 2.5, 1e-12);
}

static int dotted(warren_task *t)
{
	return warren_task_fail(t, "celery.exceptions.Reject", "no %s", "thanks");
}

static int untyped(warren_task *t)
{
	return warren_task_fail(t, NULL, "why");
}

Test(task_context, dotted_exception_types_carry_their_module)
{
	add_task("ctx.dotted", dotted, NULL);
	add_task("ctx.untyped", untyped, NULL);
	expect_failure(run("ctx.dotted", "[]", "{}"), "celery.exceptions", "Reject", "no thanks");
	char tb[512];
	task_format_traceback(&ctx, tb, sizeof tb);
	cr_assert_str_eq(tb, "Traceback (most recent call last):\n"
			     "  File \"<builtin>\", in ctx.dotted\n"
			     "celery.exceptions.Reject: no thanks\n");
	fresh_ctx();
	expect_failure(run("ctx.untyped", "[]", "{}"), "builtins", "Exception", "why");
}

Test(task_context, traceback_of_a_plugin_task_names_the_plugin)
{
	expect_failure(run("test.fail", "[\"bad\"]", "{}"), "builtins", "ValueError", "bad");
	char tb[512];
	size_t want = task_format_traceback(&ctx, tb, sizeof tb);
	cr_assert_str_eq(tb, "Traceback (most recent call last):\n"
			     "  File \"" PLUGIN_DIR "test.so\", in test.fail\n"
			     "ValueError: bad\n");
	cr_assert_eq(want, strlen(tb));
	char small[16];
	cr_assert_eq(task_format_traceback(&ctx, small, sizeof small), want);
	cr_assert_eq(strlen(small), sizeof small - 1, "truncated and terminated");
}

Test(task_context, failure_message_is_valid_utf8)
{
	expect_failure(run_one_str("test.fail", "ok\xff\xc3", 4), "builtins", "ValueError",
		       "ok\xef\xbf\xbd\xef\xbf\xbd");
}

Test(task_context, long_failure_message_is_cut_between_characters)
{
	char msg[3001];
	for (int i = 0; i < 1500; i++)
		memcpy(msg + 2 * i, "\xc3\xa9", 2); /* é */
	msg[3000] = '\0';
	task_status st = run_one_str("test.fail", msg, 3000);
	cr_assert_eq(st, TASK_FAILURE);
	size_t len = strlen(ctx.exc_message);
	cr_assert_lt(len, TASK_EXC_MESSAGE_MAX);
	cr_assert_geq(len, TASK_EXC_MESSAGE_MAX - 3);
	cr_assert_eq(len % 2, 0, "cut inside a character (%zu bytes)", len);
	cr_assert_eq(memcmp(ctx.exc_message, msg, len), 0);
}

/* Packs [id, name, retries, headers, soft limit passed]. */
static int info(warren_task *t)
{
	msgpack_packer *pk = warren_task_result(t);
	const char *id = warren_task_id(t), *name = warren_task_name(t);
	msgpack_pack_array(pk, 5);
	msgpack_pack_str_with_body(pk, id, strlen(id));
	msgpack_pack_str_with_body(pk, name, strlen(name));
	msgpack_pack_int(pk, warren_task_retries(t));
	msgpack_pack_object(pk, *warren_task_headers(t));
	if (warren_task_soft_limit_passed(t))
		msgpack_pack_true(pk);
	else
		msgpack_pack_false(pk);
	return 0;
}

Test(task_context, handler_sees_id_name_retries_and_headers)
{
	add_task("ctx.info", info, NULL);
	/* The headers map rides in the kwargs slot of the input for convenience. */
	msgpack_sbuffer_clear(&input);
	msgpack_pack_array(&in_pk, 2);
	pack_json_text("[]");
	pack_json_text("{\"task\": \"ctx.info\", \"retries\": 2}");
	size_t off = 0;
	cr_assert_eq(msgpack_unpack_next(&input_obj, input.data, input.size, &off),
		     MSGPACK_UNPACK_SUCCESS);
	ctx.headers = input_obj.data.via.array.ptr[1];
	ctx.retries = 2;
	ctx.id = "abc-123";
	task_set_soft_limit(&ctx, 3600);
	expect_success(task_run(&ctx, lookup("ctx.info")));
	size_t len;
	const char *bytes = task_result_bytes(&ctx, &len);
	off = 0;
	cr_assert_eq(msgpack_unpack_next(&output, bytes, len, &off), MSGPACK_UNPACK_SUCCESS);
	const msgpack_object_array *r = &output.data.via.array;
	cr_assert_eq(r->size, 5);
	cr_assert_eq(memcmp(r->ptr[0].via.str.ptr, "abc-123", 7), 0);
	cr_assert_eq(memcmp(r->ptr[1].via.str.ptr, "ctx.info", 8), 0);
	cr_assert_eq(r->ptr[2].via.i64, 2);
	cr_assert(msgpack_object_equal(r->ptr[3], ctx.headers), "headers changed");
	cr_assert_eq(r->ptr[4].via.boolean, false, "an hour's soft limit passed at once");
}

Test(task_context, headers_default_to_an_empty_map)
{
	add_task("ctx.info", info, NULL);
	expect_success(run("ctx.info", "[]", "{}"));
	cr_assert_eq(output.data.via.array.ptr[3].type, MSGPACK_OBJECT_MAP);
	cr_assert_eq(output.data.via.array.ptr[3].via.map.size, 0);
}

Test(task_context, msgpack_check_accepts_exactly_one_object)
{
	static const struct {
		const char *bytes;
		size_t len;
		bool ok;
	} cases[] = {
		{"\xc0", 1, true},
		{"\x92\x01\xa1x", 4, true},
		{"\x81\xa1k\x90", 4, true},
		{"\xd9\x03" "abc", 5, true},
		{"\xc7\x02\x05" "ab", 5, true},
		{"\xd4\x01\x02", 3, true},
		{"\xcb\0\0\0\0\0\0\0\0", 9, true},
		{"", 0, false},
		{"\xc1", 1, false},
		{"\x01\x02", 2, false},
		{"\x92\x01", 2, false},
		{"\xd9\x04" "abc", 5, false},
		{"\xcb\0\0", 3, false},
		{"\xdd\xff\xff\xff\xff\x01", 6, false},
		{"\xdf\xff\xff\xff\xff", 5, false},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
		cr_assert_eq(task_msgpack_check(cases[i].bytes, cases[i].len), cases[i].ok,
			     "case %zu", i);
}

Test(task_context, msgpack_check_survives_deep_nesting)
{
	enum { DEPTH = 1000000 };
	char *deep = malloc(DEPTH + 1);
	cr_assert_not_null(deep);
	memset(deep, 0x91, DEPTH); /* [[[[...]]]] */
	deep[DEPTH] = (char)0xc0;
	cr_assert(task_msgpack_check(deep, DEPTH + 1));
	cr_assert_not(task_msgpack_check(deep, DEPTH), "unterminated nesting accepted");
	free(deep);
}

/* Many threads run tasks against one registry at once, each with its own
 * context: nothing in the registry or the host table is written. */
static void *add_many(void *arg)
{
	intptr_t base = (intptr_t)arg;
	const registry_entry *add = registry_lookup(reg, "math.add", 8);
	for (int i = 0; i < 2000; i++) {
		msgpack_sbuffer in;
		msgpack_sbuffer_init(&in);
		msgpack_packer pk;
		msgpack_packer_init(&pk, &in, msgpack_sbuffer_write);
		msgpack_pack_array(&pk, 2);
		msgpack_pack_int64(&pk, base);
		msgpack_pack_int(&pk, i);
		msgpack_unpacked args;
		msgpack_unpacked_init(&args);
		size_t off = 0;
		msgpack_unpack_next(&args, in.data, in.size, &off);
		task_ctx c;
		task_ctx_init(&c);
		c.args = args.data;
		bool ok = task_run(&c, add) == TASK_SUCCESS;
		size_t len;
		const char *bytes = task_result_bytes(&c, &len);
		msgpack_unpacked r;
		msgpack_unpacked_init(&r);
		off = 0;
		ok = ok && msgpack_unpack_next(&r, bytes, len, &off) == MSGPACK_UNPACK_SUCCESS &&
		     r.data.via.i64 == base + i;
		msgpack_unpacked_destroy(&r);
		task_ctx_release(&c);
		msgpack_unpacked_destroy(&args);
		msgpack_sbuffer_destroy(&in);
		if (!ok)
			return (void *)1;
	}
	return NULL;
}

Test(task_context, runs_tasks_on_many_threads_at_once)
{
	pthread_t th[8];
	for (intptr_t i = 0; i < 8; i++)
		cr_assert_eq(pthread_create(&th[i], NULL, add_many, (void *)(i * 1000000)), 0);
	for (int i = 0; i < 8; i++) {
		void *failed;
		cr_assert_eq(pthread_join(th[i], &failed), 0);
		cr_assert_null(failed, "thread %d got a wrong result", i);
	}
}
