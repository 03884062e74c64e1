/* producer/cli_inspect.c - `warren inspect ping|stats|active|registered|
 * queues|revoked|reserved`: Celery's inspect commands against every worker
 * (warren's and Celery's alike), one table row per node or per item, or
 * {"<node>": <reply>} with --json. Options and output: cli_control.c. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "producer/cli.h"

/* ---- rows per command -------------------------------------------------------- */

static void ping_rows(cli_table *t, const char *node, json_t *v)
{
	cli_ctl_status_rows(t, node, v);
}

static void stats_rows(cli_table *t, const char *node, json_t *v)
{
	char pid[32], conc[32], done[32], up[32];
	json_int_t processed = 0;
	const char *key;
	json_t *n;
	json_object_foreach(json_object_get(v, "total"), key, n)
		processed += json_integer_value(n);
	json_t *pool = json_object_get(v, "pool");
	snprintf(pid, sizeof pid, "%" JSON_INTEGER_FORMAT,
		 json_integer_value(json_object_get(v, "pid")));
	snprintf(conc, sizeof conc, "%" JSON_INTEGER_FORMAT,
		 json_integer_value(json_object_get(pool, "max-concurrency")));
	snprintf(done, sizeof done, "%" JSON_INTEGER_FORMAT, processed);
	snprintf(up, sizeof up, "%" JSON_INTEGER_FORMAT "s",
		 json_integer_value(json_object_get(v, "uptime")));
	json_t *broker = json_object_get(v, "broker");
	const char *host = json_string_value(json_object_get(broker, "hostname"));
	cli_table_add(t, (const char *[]){node, pid, conc, done, up, host ? host : "-"});
}

static void active_rows(cli_table *t, const char *node, json_t *v)
{
	size_t i;
	json_t *task;
	json_array_foreach(v, i, task) {
		char *args = json_dumps(json_object_get(task, "args"), JSON_ENCODE_ANY | JSON_COMPACT);
		char started[32] = "-";
		json_t *ts = json_object_get(task, "time_start");
		if (json_is_number(ts))
			cli_format_time(json_number_value(ts), started);
		cli_table_add(t, (const char *[]){node, json_string_value(json_object_get(task, "id")),
						  json_string_value(json_object_get(task, "name")),
						  args ? args : "", started});
		free(args);
	}
	if (json_array_size(v) == 0)
		cli_table_add(t, (const char *[]){node, "-", "(none)", "", ""});
}

/* registered and revoked: a list of strings, one row each. */
static void list_rows(cli_table *t, const char *node, json_t *v)
{
	size_t i;
	json_t *s;
	json_array_foreach(v, i, s)
		cli_table_add(t, (const char *[]){node, json_string_value(s)});
	if (json_array_size(v) == 0)
		cli_table_add(t, (const char *[]){node, "(none)"});
}

static void queue_rows(cli_table *t, const char *node, json_t *v)
{
	size_t i;
	json_t *q;
	json_array_foreach(v, i, q) {
		json_t *x = json_object_get(q, "exchange");
		cli_table_add(t, (const char *[]){node, json_string_value(json_object_get(q, "name")),
						  json_string_value(json_object_get(x, "name")),
						  json_string_value(json_object_get(x, "type")),
						  json_string_value(json_object_get(q, "routing_key"))});
	}
}

typedef struct action {
	const char *name, *method;
	cli_ctl_printer printer;
} action;

static const action actions[] = {
	{"ping", "ping", {3, {"NODE", "STATUS", "REPLY"}, ping_rows}},
	{"stats", "stats",
	 {6, {"NODE", "PID", "CONCURRENCY", "PROCESSED", "UPTIME", "BROKER"}, stats_rows}},
	{"active", "active", {5, {"NODE", "ID", "TASK", "ARGS", "STARTED"}, active_rows}},
	{"reserved", "reserved", {5, {"NODE", "ID", "TASK", "ARGS", "STARTED"}, active_rows}},
	{"registered", "registered", {2, {"NODE", "TASK"}, list_rows}},
	{"revoked", "revoked", {2, {"NODE", "TASK ID"}, list_rows}},
	{"queues", "active_queues",
	 {5, {"NODE", "QUEUE", "EXCHANGE", "TYPE", "ROUTING KEY"}, queue_rows}},
	{"active_queues", "active_queues",
	 {5, {"NODE", "QUEUE", "EXCHANGE", "TYPE", "ROUTING KEY"}, queue_rows}},
};

static void usage(FILE *out)
{
	fprintf(out,
		"usage: warren inspect ACTION [--destination NODE[,NODE]] [--timeout S] [--json]\n"
		"\n"
		"Asks the workers (warren's and Celery's: Celery's pidbox) and prints what\n"
		"each node answers within the timeout.\n"
		"\n"
		"actions:\n"
		"  ping        is it alive\n"
		"  stats       pid, pool size, tasks processed, uptime, broker\n"
		"  active      the tasks running now\n"
		"  reserved    the tasks received and waiting (rate limits)\n"
		"  registered  the task names it runs\n"
		"  queues      the queues it consumes\n"
		"  revoked     the revoked task ids it keeps\n"
		"\n"
		"  -d, --destination N,N  only these nodes (default: all)\n"
		"  -t, --timeout S        seconds to wait for replies (default 1)\n"
		"  --json                 print {\"node\": reply} as JSON\n"
		"\n"
		"exit codes: 0 ok, 1 a node answered with an error, 2 no node answered\n");
}

int cli_inspect_main(const cli_globals *g, int argc, char **argv)
{
	for (int i = 1; i < argc; i++)
		if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
			usage(stdout);
			return CLI_OK;
		}
	cli_ctl_opts o;
	int code = cli_ctl_parse("inspect", argc, argv, &o);
	if (code)
		return code;
	const action *a = NULL;
	for (size_t i = 0; i < sizeof actions / sizeof *actions && !a; i++)
		if (!strcmp(actions[i].name, o.args[0]))
			a = &actions[i];
	if (!a)
		code = cli_usage_error("inspect: unknown action '%s'", o.args[0]);
	else if (o.n_args > 1)
		code = cli_usage_error("inspect %s: unexpected argument '%s'", a->name, o.args[1]);
	else
		code = cli_ctl_run(g, &o, a->method, NULL, true, &a->printer);
	cli_ctl_release(&o);
	return code;
}
