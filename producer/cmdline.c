/* producer/cmdline.c - the command line of `warren send` and `warren call`:
 * TASK, ARGs and options into a producer_task_cmd. It lives in the library
 * (internal, not exported) rather than in cli_*.c so the unit tests can
 * call it.
 *
 * Hand-rolled rather than getopt_long: an ARG may be a negative number
 * ("-5"), which getopt would take for an option, and options may follow
 * ARGs (`warren call math.add 2 3 --timeout 5`). `--` ends the options.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "producer.h"
#include "producer/cmdline.h"

void producer_task_cmd_release(producer_task_cmd *c)
{
	warren_args_free(c->args);
	warren_args_free(c->kwargs);
	warren_args_free(c->headers);
	memset(c, 0, sizeof *c);
}

static int parse_int(const char *opt, const char *text, long min, long max, int *out,
		     warren_error *err)
{
	char *end = NULL;
	errno = 0;
	long v = strtol(text, &end, 10);
	if (!*text || *end || errno || v < min || v > max)
		return warren_error_set(err, WARREN_EINVAL, "%s '%s': expected an integer from %ld to %ld",
					opt, text, min, max);
	*out = (int)v;
	return 0;
}

/* --header NAME=VALUE: VALUE read like an ARG (JSON, else a string). */
static int add_header(producer_task_cmd *c, const char *text, warren_error *err)
{
	const char *eq = strchr(text, '=');
	if (!eq || eq == text)
		return warren_error_set(err, WARREN_EINVAL, "--header '%s': expected NAME=VALUE", text);
	if (!c->headers && !(c->headers = warren_kwargs_new()))
		return warren_error_set(err, WARREN_ENOMEM, "--header: out of memory");
	char name[256];
	snprintf(name, sizeof name, "%.*s", (int)(eq - text), text);
	warren_args_key(c->headers, name);
	warren_args_auto(c->headers, eq + 1);
	const char *msg;
	int rc = warren_args_status(c->headers, &msg);
	return rc ? warren_error_set(err, rc, "--header '%s': %s", text, msg) : 0;
}

static int set_kwargs(producer_task_cmd *c, const char *json, warren_error *err)
{
	warren_args_free(c->kwargs);
	c->kwargs = NULL;
	return warren_kwargs_from_json(json, &c->kwargs, err);
}

/* Options that take a value. */
static int value_option(producer_task_cmd *c, const char *opt, const char *v, warren_error *err)
{
	warren_send_opts *o = &c->opts;
	if (!strcmp(opt, "--kwargs"))
		return set_kwargs(c, v, err);
	if (!strcmp(opt, "--queue"))
		return o->queue = v, 0;
	if (!strcmp(opt, "--exchange"))
		return o->exchange = v, 0;
	if (!strcmp(opt, "--routing-key"))
		return o->routing_key = v, 0;
	if (!strcmp(opt, "--id"))
		return o->task_id = v, 0;
	if (!strcmp(opt, "--eta")) {
		int64_t us;
		return o->eta = v, producer_iso8601_parse(v, &us, err);
	}
	if (!strcmp(opt, "--countdown"))
		return producer_parse_seconds(v, "--countdown", &o->countdown, err);
	if (!strcmp(opt, "--expires"))
		return producer_parse_seconds(v, "--expires", &o->expires, err);
	if (!strcmp(opt, "--time-limit"))
		return producer_parse_seconds(v, "--time-limit", &o->time_limit, err);
	if (!strcmp(opt, "--soft-time-limit"))
		return producer_parse_seconds(v, "--soft-time-limit", &o->soft_time_limit, err);
	if (!strcmp(opt, "--priority"))
		return parse_int(opt, v, 0, 255, &o->priority, err);
	if (!strcmp(opt, "--retries"))
		return parse_int(opt, v, 0, INT_MAX, &o->retries, err);
	if (!strcmp(opt, "--header"))
		return add_header(c, v, err);
	if (!strcmp(opt, "--timeout") && c->is_call) {
		c->has_timeout = true;
		return producer_parse_seconds(v, "--timeout", &c->timeout, err);
	}
	if (!strcmp(opt, "--from") && !c->is_call)
		return c->from = v, 0;
	return 1; /* not a value option */
}

/* A flag (no value); 1 when opt is none of them. */
static int flag_option(producer_task_cmd *c, const char *opt)
{
	if (!strcmp(opt, "-h") || !strcmp(opt, "--help"))
		return c->help = true, 0;
	if (!strcmp(opt, "-v") || !strcmp(opt, "--verbose"))
		return c->verbose = true, 0;
	if (!strcmp(opt, "--ignore-result"))
		return c->opts.ignore_result = true, 0;
	return 1;
}

/* Is arg an option (rather than a positional, such as -5 or -0.5)? */
static bool looks_like_option(const char *arg)
{
	if (arg[0] != '-' || !arg[1])
		return false;
	char *end;
	strtod(arg, &end);
	return *end != '\0';
}

static int add_positional(producer_task_cmd *c, const char *arg, warren_error *err)
{
	if (!c->task) {
		c->task = arg;
		return 0;
	}
	warren_args_auto(c->args, arg);
	const char *msg;
	int rc = warren_args_status(c->args, &msg);
	return rc ? warren_error_set(err, rc, "argument '%s': %s", arg, msg) : 0;
}

static const char *const flag_names[] = {"-h", "--help", "-v", "--verbose", "--ignore-result",
					 NULL};
static const char *const value_names[] = {
	"--kwargs", "--queue", "--exchange", "--routing-key", "--id", "--eta", "--countdown",
	"--expires", "--time-limit", "--soft-time-limit", "--priority", "--retries", "--header",
	NULL};

static bool listed(const char *const *names, const char *s)
{
	for (; *names; names++)
		if (!strcmp(*names, s))
			return true;
	return false;
}

static bool takes_value(const producer_task_cmd *c, const char *name)
{
	return listed(value_names, name) || !strcmp(name, c->is_call ? "--timeout" : "--from");
}

/* One option at argv[*i] (advancing *i past its value). */
static int option(producer_task_cmd *c, int argc, char **argv, int *i, warren_error *err)
{
	char name[64];
	const char *arg = argv[*i], *eq = strchr(arg, '=');
	const char *value = NULL;
	if (eq && !strncmp(arg, "--", 2)) {
		snprintf(name, sizeof name, "%.*s", (int)(eq - arg), arg);
		value = eq + 1;
	} else {
		snprintf(name, sizeof name, "%s", arg);
	}
	if (listed(flag_names, name)) {
		if (value)
			return warren_error_set(err, WARREN_EINVAL, "option '%s' takes no value", name);
		return flag_option(c, name);
	}
	if (!takes_value(c, name))
		return warren_error_set(err, WARREN_EINVAL, "unknown option '%s'", name);
	if (!value && *i + 1 >= argc)
		return warren_error_set(err, WARREN_EINVAL, "option '%s' needs a value", name);
	if (!value)
		value = argv[++*i];
	return value_option(c, name, value, err);
}

int producer_task_cmd_parse(int argc, char **argv, bool is_call, producer_task_cmd *c,
			    warren_error *err)
{
	memset(c, 0, sizeof *c);
	c->is_call = is_call;
	warren_send_opts_init(&c->opts);
	if (!(c->args = warren_args_new()))
		return warren_error_set(err, WARREN_ENOMEM, "out of memory");
	bool options_done = false;
	int rc = 0;
	for (int i = 0; i < argc && !rc; i++) {
		if (!options_done && !strcmp(argv[i], "--"))
			options_done = true;
		else if (!options_done && looks_like_option(argv[i]))
			rc = option(c, argc, argv, &i, err);
		else
			rc = add_positional(c, argv[i], err);
	}
	if (!rc && c->opts.headers == NULL && c->headers)
		c->opts.headers = c->headers;
	if (!rc && !c->help && !c->task && !c->from)
		rc = warren_error_set(err, WARREN_EINVAL, "a task name is required");
	if (!rc && c->from && c->task)
		rc = warren_error_set(err, WARREN_EINVAL,
				      "--from reads tasks from a file: give no TASK with it");
	if (rc)
		producer_task_cmd_release(c);
	return rc;
}
