/* tests/unit/test_producer_cmdline.c - the command line of `warren send` and
 * `warren call` (producer/cmdline.c): ARGs as JSON-or-string, options with
 * and without '=', negative numbers as ARGs, and usage errors. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "producer/cmdline.h"
#include "producer/producer.h"

static int parse(bool is_call, producer_task_cmd *c, warren_error *err, int argc, ...)
{
	static char *argv[32];
	va_list ap;
	va_start(ap, argc);
	for (int i = 0; i < argc; i++)
		argv[i] = va_arg(ap, char *);
	va_end(ap);
	return producer_task_cmd_parse(argc, argv, is_call, c, err);
}

static char *json_of(const warren_args *a)
{
	const void *p;
	size_t n;
	warren_error err = {0};
	cr_assert_eq(warren_args_packed(a, &p, &n, &err), 0, "%s", err.msg);
	char *s = NULL;
	cr_assert_eq(warren_msgpack_to_json(p, n, &s, &err), 0, "%s", err.msg);
	return s;
}

Test(producer_cmdline, args_json_or_string)
{
	producer_task_cmd c;
	warren_error err = {0};
	cr_assert_eq(parse(true, &c, &err, 7, "text.upper", "h\xc3\xa9llo", "2", "-5", "[1]",
			   "--timeout", "1.5"), 0, "%s", err.msg);
	cr_expect_str_eq(c.task, "text.upper");
	char *s = json_of(c.args);
	cr_expect_str_eq(s, "[\"h\xc3\xa9llo\", 2, -5, [1]]");
	free(s);
	cr_expect(c.has_timeout);
	cr_expect_float_eq(c.timeout, 1.5, 1e-9);
	cr_expect_null(c.kwargs);
	producer_task_cmd_release(&c);
}

Test(producer_cmdline, options)
{
	producer_task_cmd c;
	warren_error err = {0};
	cr_assert_eq(parse(false, &c, &err, 20, "math.add", "--queue=q1", "--countdown", "10",
			   "--eta", "2030-01-01T00:00:00Z", "--expires=60", "--priority", "9",
			   "--id", "my-id", "--kwargs", "{\"b\": 2}", "--header", "x-n=3",
			   "--ignore-result", "--retries", "2", "--", "--not-an-option"),
		     0, "%s", err.msg);
	cr_expect_str_eq(c.opts.queue, "q1");
	cr_expect_float_eq(c.opts.countdown, 10, 1e-9);
	cr_expect_str_eq(c.opts.eta, "2030-01-01T00:00:00Z");
	cr_expect_float_eq(c.opts.expires, 60, 1e-9);
	cr_expect_eq(c.opts.priority, 9);
	cr_expect_str_eq(c.opts.task_id, "my-id");
	cr_expect(c.opts.ignore_result);
	cr_expect_eq(c.opts.retries, 2);
	cr_expect_eq(c.opts.headers, c.headers);
	char *s = json_of(c.kwargs);
	cr_expect_str_eq(s, "{\"b\": 2}");
	free(s);
	s = json_of(c.headers);
	cr_expect_str_eq(s, "{\"x-n\": 3}");
	free(s);
	s = json_of(c.args);
	cr_expect_str_eq(s, "[\"--not-an-option\"]");
	free(s);
	producer_task_cmd_release(&c);
}

Test(producer_cmdline, usage_errors)
{
	producer_task_cmd c;
	struct {
		int argc;
		char *argv[4];
		bool is_call;
		int rc;
		const char *msg;
	} cases[] = {
		{0, {0}, false, WARREN_EINVAL, "task name is required"},
		{2, {"t", "--bogus"}, false, WARREN_EINVAL, "unknown option '--bogus'"},
		{2, {"t", "--queue"}, false, WARREN_EINVAL, "needs a value"},
		{3, {"t", "--priority", "300"}, false, WARREN_EINVAL, "0 to 255"},
		{3, {"t", "--countdown", "soon"}, false, WARREN_EINVAL, "seconds"},
		{3, {"t", "--eta", "tomorrow"}, false, WARREN_EINVAL, "ISO-8601"},
		{3, {"t", "--timeout", "1"}, false, WARREN_EINVAL, "unknown option"},
		{3, {"t", "--from", "f"}, true, WARREN_EINVAL, "unknown option"},
		{3, {"t", "--from", "f"}, false, WARREN_EINVAL, "give no TASK"},
		{2, {"t", "--help=x"}, false, WARREN_EINVAL, "takes no value"},
		{3, {"t", "--kwargs", "[1]"}, false, WARREN_EDECODE, "JSON object"},
	};
	for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
		warren_error err = {0};
		int rc = producer_task_cmd_parse(cases[i].argc, cases[i].argv, cases[i].is_call, &c,
						 &err);
		cr_expect_eq(rc, cases[i].rc, "case %zu: rc %d (%s)", i, rc, err.msg);
		cr_expect(strstr(err.msg, cases[i].msg), "case %zu: %s", i, err.msg);
	}
}

Test(producer_cmdline, help_and_from)
{
	producer_task_cmd c;
	warren_error err = {0};
	cr_assert_eq(parse(false, &c, &err, 1, "--help"), 0, "%s", err.msg);
	cr_expect(c.help);
	producer_task_cmd_release(&c);
	cr_assert_eq(parse(false, &c, &err, 2, "--from", "-"), 0, "%s", err.msg);
	cr_expect_str_eq(c.from, "-");
	cr_expect_null(c.task);
	producer_task_cmd_release(&c);
}
