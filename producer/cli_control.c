/* producer/cli_control.c - `warren control revoke ID...|shutdown|rate-limit
 * TASK RATE`, and what `warren inspect` (cli_inspect.c) shares with it: the
 * options (--destination, --timeout, --json), the call through
 * producer_control, and the output - a table with one row per node (or per
 * item), or with --json one object {"<node>": <reply>} as Celery's
 * `--json` prints it.
 *
 * Exit status: 0 when every node answered ok, 1 when one answered with an
 * error, 2 when no node answered within the timeout (Celery: "No nodes
 * replied within time constraint"). */
#include <jansson.h>
#include <msgpack.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "producer/cli.h"
#include "producer/producer.h"

#define CLI_CTL_DEFAULT_TIMEOUT 1.0 /* Celery's --timeout default */

/* ---- options --------------------------------------------------------------- */

static int set_destination(cli_ctl_opts *o, const char *text)
{
	free(o->dest_buf);
	o->dest_buf = strdup(text);
	o->n_dests = 0;
	if (!o->dest_buf)
		return CLI_SOFTWARE;
	char *save = NULL;
	for (char *d = strtok_r(o->dest_buf, ",", &save); d; d = strtok_r(NULL, ",", &save))
		if (*d && o->n_dests < CLI_CTL_MAX_DESTS)
			o->dests[o->n_dests++] = d;
	return 0;
}

/* An option at argv[*i] with its value (inline "--x=v" or the next word). */
static const char *value_of(const char *name, int argc, char **argv, int *i)
{
	size_t n = strlen(name);
	const char *a = argv[*i];
	if (strncmp(a, name, n))
		return NULL;
	if (a[n] == '=')
		return a + n + 1;
	if (a[n] == '\0' && *i + 1 < argc)
		return argv[++*i];
	return NULL;
}

static int parse_one(const char *cmd, cli_ctl_opts *o, int argc, char **argv, int *i)
{
	const char *a = argv[*i], *v;
	if (!strcmp(a, "--json")) {
		o->json = true;
	} else if (!strcmp(a, "--terminate")) {
		o->terminate = true;
	} else if ((v = value_of("--destination", argc, argv, i)) ||
		   (v = value_of("-d", argc, argv, i))) {
		if (set_destination(o, v))
			return CLI_SOFTWARE;
	} else if ((v = value_of("--timeout", argc, argv, i)) ||
		   (v = value_of("-t", argc, argv, i))) {
		warren_error err = {0};
		if (producer_parse_seconds(v, "--timeout", &o->timeout, &err) || o->timeout <= 0)
			return cli_usage_error("%s: %s", cmd,
					       err.msg[0] ? err.msg : "--timeout must be positive");
	} else if ((v = value_of("--signal", argc, argv, i))) {
		o->signal = v;
	} else {
		return cli_usage_error("%s: unknown option or missing value '%s'", cmd, a);
	}
	return 0;
}

int cli_ctl_parse(const char *cmd, int argc, char **argv, cli_ctl_opts *o)
{
	*o = (cli_ctl_opts){.timeout = CLI_CTL_DEFAULT_TIMEOUT, .signal = "SIGTERM"};
	for (int i = 1; i < argc; i++) {
		if (argv[i][0] != '-' || !argv[i][1]) {
			if (o->n_args < CLI_CTL_MAX_ARGS)
				o->args[o->n_args++] = argv[i];
			continue;
		}
		int code = parse_one(cmd, o, argc, argv, &i);
		if (code)
			return code;
	}
	if (o->n_args == 0)
		return cli_usage_error("%s: which action? (see --help)", cmd);
	return 0;
}

void cli_ctl_release(cli_ctl_opts *o)
{
	free(o->dest_buf);
	o->dest_buf = NULL;
}

/* ---- output ------------------------------------------------------------------ */

void cli_table_add(cli_table *t, const char *const *cells)
{
	if (t->n_rows == CLI_TABLE_MAX_ROWS)
		return;
	for (size_t c = 0; c < t->n_cols; c++) {
		t->cells[t->n_rows][c] = strdup(cells[c] ? cells[c] : "");
		size_t w = t->cells[t->n_rows][c] ? strlen(t->cells[t->n_rows][c]) : 0;
		if (w > t->width[c])
			t->width[c] = w;
	}
	t->n_rows++;
}

void cli_table_print(cli_table *t)
{
	for (size_t c = 0; c < t->n_cols; c++)
		if (strlen(t->head[c]) > t->width[c])
			t->width[c] = strlen(t->head[c]);
	for (size_t r = 0; r <= t->n_rows; r++) {
		for (size_t c = 0; c < t->n_cols; c++) {
			const char *s = r == 0 ? t->head[c] : t->cells[r - 1][c];
			if (c + 1 == t->n_cols)
				printf("%s\n", s ? s : "");
			else
				printf("%-*s  ", (int)t->width[c], s ? s : "");
		}
	}
	for (size_t r = 0; r < t->n_rows; r++)
		for (size_t c = 0; c < t->n_cols; c++)
			free(t->cells[r][c]);
	t->n_rows = 0;
}

static void print_json(const producer_control_result *r)
{
	printf("{");
	for (size_t i = 0; i < r->n; i++) {
		json_t *name = json_string(r->nodes[i].nodename);
		char *quoted = name ? json_dumps(name, JSON_ENCODE_ANY) : NULL;
		printf("%s%s: %s", i ? ", " : "", quoted ? quoted : "\"?\"", r->nodes[i].json);
		free(quoted);
		json_decref(name);
	}
	printf("}\n");
}

/* "ok" / "error" and the message of a {"ok": x} / {"error": x} reply. */
void cli_ctl_status(json_t *v, const char **status, char *msg, size_t cap)
{
	json_t *ok = json_object_get(v, "ok"), *e = json_object_get(v, "error");
	json_t *x = ok ? ok : e;
	*status = e ? "error" : "ok";
	char *dumped = NULL;
	if (json_is_string(x))
		snprintf(msg, cap, "%s", json_string_value(x));
	else if ((dumped = json_dumps(x ? x : v, JSON_ENCODE_ANY | JSON_COMPACT)))
		snprintf(msg, cap, "%s", dumped);
	else
		snprintf(msg, cap, "null");
	free(dumped);
}

/* The ok/error table every control command and ping print. */
void cli_ctl_status_rows(cli_table *t, const char *node, json_t *v)
{
	const char *status;
	char msg[1024];
	cli_ctl_status(v, &status, msg, sizeof msg);
	cli_table_add(t, (const char *[]){node, status, msg});
}

int cli_ctl_run(const cli_globals *g, const cli_ctl_opts *o, const char *method,
		const msgpack_sbuffer *args, bool reply, const cli_ctl_printer *printer)
{
	warren_client *c = NULL;
	int code = cli_client(g, &c);
	if (code)
		return code;
	producer_control_call call = {
		.method = method, .arguments_mp = args ? args->data : NULL,
		.arguments_len = args ? args->size : 0, .destination = o->dests,
		.n_destination = o->n_dests, .timeout = o->timeout, .reply = reply,
	};
	producer_control_result r;
	warren_error err = {0};
	int rc = producer_control(c, &call, &r, &err);
	warren_client_free(c);
	if (rc)
		return cli_fail(rc, &err);
	if (!reply)
		return CLI_OK;
	if (r.n == 0) {
		fprintf(stderr, "warren: no nodes replied within %gs\n", o->timeout);
		return CLI_TIMEOUT;
	}
	code = CLI_OK;
	for (size_t i = 0; i < r.n; i++)
		if (r.nodes[i].is_error)
			code = CLI_TASK_FAILED;
	if (o->json) {
		print_json(&r);
	} else {
		cli_table t = {.n_cols = printer->n_cols};
		memcpy(t.head, printer->head, sizeof t.head);
		for (size_t i = 0; i < r.n; i++) {
			json_t *v = json_loads(r.nodes[i].json, JSON_DECODE_ANY, NULL);
			printer->rows(&t, r.nodes[i].nodename, v);
			json_decref(v);
		}
		cli_table_print(&t);
	}
	producer_control_result_release(&r);
	return code;
}

/* ---- warren control ------------------------------------------------------------ */

static const cli_ctl_printer status_printer = {3, {"NODE", "STATUS", "MESSAGE"},
					       cli_ctl_status_rows};

static void usage(FILE *out)
{
	fprintf(out,
		"usage: warren control ACTION [ARG...] [--destination NODE[,NODE]] [--timeout S]\n"
		"                      [--json]\n"
		"\n"
		"Sends a remote control command to the workers (Celery's pidbox; Celery\n"
		"workers answer too) and prints each node's reply.\n"
		"\n"
		"actions:\n"
		"  revoke ID... [--terminate [--signal SIG]]  refuse these tasks (and kill\n"
		"                         them where they run, prefork pool only)\n"
		"  rate-limit TASK RATE   change a task's rate limit live (\"10/s\", \"0\": none)\n"
		"  shutdown               warm shutdown of the workers (no reply)\n"
		"\n"
		"  -d, --destination N,N  only these nodes (default: all)\n"
		"  -t, --timeout S        seconds to wait for replies (default 1)\n"
		"  --json                 print {\"node\": reply} as JSON\n");
}

static void pack_str(msgpack_packer *pk, const char *s)
{
	msgpack_pack_str_with_body(pk, s, strlen(s));
}

static int control_revoke(const cli_globals *g, const cli_ctl_opts *o, msgpack_packer *pk,
			  const msgpack_sbuffer *sb)
{
	if (o->n_args < 2)
		return cli_usage_error("control revoke: give at least one task id");
	msgpack_pack_map(pk, 3);
	pack_str(pk, "task_id");
	msgpack_pack_array(pk, (uint32_t)(o->n_args - 1));
	for (size_t i = 1; i < o->n_args; i++)
		pack_str(pk, o->args[i]);
	pack_str(pk, "terminate");
	if (o->terminate)
		msgpack_pack_true(pk);
	else
		msgpack_pack_false(pk);
	pack_str(pk, "signal");
	pack_str(pk, o->signal);
	return cli_ctl_run(g, o, "revoke", sb, true, &status_printer);
}

static int control_rate_limit(const cli_globals *g, const cli_ctl_opts *o, msgpack_packer *pk,
			      const msgpack_sbuffer *sb)
{
	if (o->n_args != 3)
		return cli_usage_error("control rate-limit: give TASK and RATE");
	msgpack_pack_map(pk, 2);
	pack_str(pk, "task_name");
	pack_str(pk, o->args[1]);
	pack_str(pk, "rate_limit");
	pack_str(pk, o->args[2]);
	return cli_ctl_run(g, o, "rate_limit", sb, true, &status_printer);
}

static int control_shutdown(const cli_globals *g, const cli_ctl_opts *o, msgpack_packer *pk,
			    const msgpack_sbuffer *sb)
{
	msgpack_pack_map(pk, 0);
	int code = cli_ctl_run(g, o, "shutdown", sb, false, &status_printer);
	if (!code)
		printf("shutdown sent to %s\n", o->n_dests ? "the named nodes" : "every node");
	return code;
}

int cli_control_main(const cli_globals *g, int argc, char **argv)
{
	for (int i = 1; i < argc; i++)
		if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
			usage(stdout);
			return CLI_OK;
		}
	cli_ctl_opts o;
	int code = cli_ctl_parse("control", argc, argv, &o);
	if (code)
		return code;
	msgpack_sbuffer sb;
	msgpack_sbuffer_init(&sb);
	msgpack_packer pk;
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	const char *action = o.args[0];
	if (!strcmp(action, "revoke"))
		code = control_revoke(g, &o, &pk, &sb);
	else if (!strcmp(action, "rate-limit") || !strcmp(action, "rate_limit"))
		code = control_rate_limit(g, &o, &pk, &sb);
	else if (!strcmp(action, "shutdown"))
		code = control_shutdown(g, &o, &pk, &sb);
	else
		code = cli_usage_error("control: unknown action '%s'", action);
	msgpack_sbuffer_destroy(&sb);
	cli_ctl_release(&o);
	return code;
}
