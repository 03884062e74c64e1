/* plugins/test.c - tasks for tests and the benchmark: test.echo, test.noop,
 * test.sleep, test.fail, test.crash, test.flaky, test.crash_requeued.
 *
 * Each exercises one path of the worker: echo the wire types, noop the
 * per-task overhead, sleep time limits and in-flight work, fail FAILURE
 * results, crash prefork child loss, flaky retries; crash_requeued is crash
 * with reject_on_worker_lost on by the plugin (warren_register_ext).
 */
#include <stdint.h>
#include <time.h>

#include "warren/plugin.h"

WARREN_PLUGIN_DEFINE_ABI();

/* echo(*args, **kwargs) -> [args, kwargs], every msgpack type unchanged. */
static int echo(warren_task *t)
{
	msgpack_packer *pk = warren_task_result(t);
	msgpack_pack_array(pk, 2);
	msgpack_pack_object(pk, *warren_task_args(t));
	msgpack_pack_object(pk, *warren_task_kwargs(t));
	return 0;
}

/* noop(*args) -> null: packs nothing. */
static int noop(warren_task *t)
{
	(void)t;
	return 0;
}

/* Sleeps in steps of at most 10 ms so a soft time limit is noticed within
 * one step. */
#define SLEEP_STEP_NS 10000000LL

static int64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void nap_ns(int64_t ns)
{
	struct timespec d = {.tv_sec = ns / 1000000000, .tv_nsec = ns % 1000000000};
	while (nanosleep(&d, &d) != 0)
		; /* interrupted by a signal: sleep the rest */
}

/* sleep(seconds) -> seconds; honours the soft time limit. */
static int sleep_task(warren_task *t)
{
	const msgpack_object *arg;
	double seconds;
	if (warren_task_arg_float(t, 0, &seconds) != 0 ||
	    warren_task_arg_object(t, 0, WARREN_TYPE_FLOAT, &arg) != 0)
		return -1;
	if (!(seconds >= 0) || seconds > 86400)
		return warren_task_fail(t, "ValueError", "%s: seconds must be in [0, 86400], got %g",
					warren_task_name(t), seconds);
	int64_t end = now_ns() + (int64_t)(seconds * 1e9);
	for (int64_t left; (left = end - now_ns()) > 0;) {
		if (warren_task_soft_limit_passed(t))
			return warren_task_fail(t, "billiard.exceptions.SoftTimeLimitExceeded",
						"%s: soft time limit exceeded", warren_task_name(t));
		nap_ns(left < SLEEP_STEP_NS ? left : SLEEP_STEP_NS);
	}
	msgpack_pack_object(warren_task_result(t), *arg); /* int stays int */
	return 0;
}

/* fail(message): raises ValueError(message). */
static int fail(warren_task *t)
{
	const char *msg;
	size_t len;
	if (warren_task_arg_str(t, 0, &msg, &len) != 0)
		return -1;
	return warren_task_fail(t, "ValueError", "%.*s", len > INT32_MAX ? INT32_MAX : (int)len, msg);
}

/* crash(): a segmentation fault. Both the pointer and what it points to are
 * volatile: the compiler can neither see the pointer is NULL nor drop the
 * store (GCC drops a plain store through a volatile NULL pointer). UBSan's
 * null check is off here so a sanitizer build dies of the same SIGSEGV. */
#if defined(__GNUC__)
__attribute__((no_sanitize("undefined")))
#endif
static int crash(warren_task *t)
{
	(void)t;
	volatile int *volatile nowhere = NULL;
	*nowhere = 42;
	return 0;
}

/* flaky(key, n, countdown=0): asks for a retry in countdown seconds while
 * fewer than n retries happened, then returns the attempt number. key only
 * names the caller's test. */
static int flaky(warren_task *t)
{
	const char *key;
	size_t key_len;
	int64_t n;
	double countdown;
	if (warren_task_arg_str(t, 0, &key, &key_len) != 0 || warren_task_arg_int(t, 1, &n) != 0 ||
	    warren_task_arg_float(t, 2, &countdown) != 0)
		return -1;
	int retries = warren_task_retries(t);
	if (retries < n)
		return warren_task_retry(t, countdown);
	msgpack_pack_int64(warren_task_result(t), (int64_t)retries + 1);
	return 0;
}

static const warren_task_schema echo_schema = {.extra_args = 1, .extra_kwargs = 1};
static const warren_task_schema noop_schema = {.extra_args = 1, .result = WARREN_TYPE_NULL};
static const warren_param seconds_param[] = {
	{.name = "seconds", .type = WARREN_TYPE_FLOAT, .required = 1},
};
static const warren_task_schema sleep_schema = {
	.params = seconds_param, .n_params = 1, .result = WARREN_TYPE_FLOAT,
};
static const warren_param message_param[] = {
	{.name = "message", .type = WARREN_TYPE_STR, .required = 1},
};
static const warren_task_schema fail_schema = {.params = message_param, .n_params = 1};
static const warren_task_schema crash_schema = {0};
static const warren_param flaky_params[] = {
	{.name = "key", .type = WARREN_TYPE_STR, .required = 1},
	{.name = "n", .type = WARREN_TYPE_INT, .required = 1},
	{.name = "countdown", .type = WARREN_TYPE_FLOAT, .default_mp = "\x00", .default_len = 1},
};
static const warren_task_schema flaky_schema = {
	.params = flaky_params, .n_params = 3, .result = WARREN_TYPE_INT,
};

/* flaky keeps the default max_retries (3, or the config's), so flaky(k, 2)
 * ends in SUCCESS and flaky(k, 5) in MaxRetriesExceededError. */
static const warren_task_options flaky_options = {.schema = &flaky_schema};

WARREN_PLUGIN_EXPORT int warren_plugin_init(warren_registry *reg)
{
	const struct {
		const char *name;
		warren_task_fn fn;
		warren_task_options opts;
	} tasks[] = {
		{"test.echo", echo, {.schema = &echo_schema}},
		{"test.noop", noop, {.schema = &noop_schema}},
		{"test.sleep", sleep_task, {.schema = &sleep_schema}},
		{"test.fail", fail, {.schema = &fail_schema}},
		{"test.crash", crash, {.schema = &crash_schema}},
		{"test.flaky", flaky, flaky_options},
	};
	for (size_t i = 0; i < sizeof tasks / sizeof tasks[0]; i++)
		if (warren_register(reg, tasks[i].name, tasks[i].fn, &tasks[i].opts) != 0)
			return -1;
	static const warren_task_options crash_options = {.schema = &crash_schema};
	static const warren_task_options_ext requeued = {
		.size = sizeof requeued, .reject_on_worker_lost = WARREN_ON,
	};
	return warren_register_ext(reg, "test.crash_requeued", crash, &crash_options, &requeued);
}
