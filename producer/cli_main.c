/* producer/cli_main.c - `warren`: the command-line client. Global options,
 * the subcommand table, exit codes, and the client every subcommand builds
 * from the global options. One file per subcommand (cli_send.c, ...).
 *
 *   warren [--broker URL] [--config FILE] [--result-backend URL] COMMAND [ARG...]
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "producer/cli.h"
#include "producer/producer.h"

#define DEFAULT_BROKER "amqp://guest:guest@localhost:5672/%2F"
#define CLI_DEFAULT_RETRY_S 20

static void usage(FILE *out)
{
	fprintf(out,
		"usage: warren [--broker URL] [--config FILE] [--result-backend URL] COMMAND ...\n"
		"\n"
		"Sends tasks to Celery-compatible workers over RabbitMQ and reads their results.\n"
		"\n"
		"commands:\n"
		"  send TASK [ARG...]    send a task, print its id (send --from FILE: many)\n"
		"  call TASK [ARG...]    send a task, wait, print its result as JSON\n"
		"  result ID             print a task's result\n"
		"  queues [QUEUE...]     messages and consumers per queue\n"
		"  purge QUEUE           delete the ready messages of a queue\n"
		"  events                print the workers' monitoring events live\n"
		"  status                the fleet: one row per worker, from heartbeats\n"
		"  inspect ACTION        ask the workers: ping, stats, active, registered, queues\n"
		"  control ACTION        steer the workers: revoke, rate-limit, shutdown\n"
		"  pipeline ACTION       YAML pipelines: list, show NAME, run NAME, status ID\n"
		"  COMMAND --help        the command's options\n"
		"\n"
		"global options:\n"
		"  --broker URL          amqp[s]://user:pass@host:port/vhost (';' for failover);\n"
		"                        default: $WARREN_BROKER_URL, the config's, else %s\n"
		"  --config FILE         warren YAML config: broker, queues, task_routes, schemas\n"
		"  --result-backend URL  redis://host:port/db, rpc://, none;\n"
		"                        default: $WARREN_RESULT_BACKEND, the config's, else none\n"
		"  --retry S             keep trying an unreachable broker for S seconds (default %d)\n"
		"\n"
		"exit codes: 0 ok, 1 task failed, 2 timeout, 64 usage, 65 bad data,\n"
		"            66 no such file or queue, 69 broker or backend unreachable,\n"
		"            70 internal error, 78 bad config\n",
		"amqp://guest:****@localhost:5672/%2F", CLI_DEFAULT_RETRY_S);
}

int cli_exit_code(int rc)
{
	switch (rc) {
	case 0:
		return CLI_OK;
	case WARREN_EINVAL:
		return CLI_USAGE;
	case WARREN_EDECODE:
	case WARREN_ESCHEMA:
	case WARREN_ELIMIT:
	case WARREN_EENCODE:
		return CLI_DATAERR;
	case WARREN_ENOTFOUND:
	case WARREN_EIO:
		return CLI_NOINPUT;
	case WARREN_EBROKER:
	case WARREN_EBACKEND:
		return CLI_UNAVAILABLE;
	case WARREN_ETIMEOUT:
		return CLI_TIMEOUT;
	case WARREN_ECONFIG:
		return CLI_CONFIG;
	default:
		return CLI_SOFTWARE;
	}
}

int cli_fail(int rc, const warren_error *err)
{
	fprintf(stderr, "warren: %s\n", err && err->msg[0] ? err->msg : warren_strerror(rc));
	return cli_exit_code(rc);
}

int cli_usage_error(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fputs("warren: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputs(" (see --help)\n", stderr);
	va_end(ap);
	return CLI_USAGE;
}

static const char *env(const char *name)
{
	const char *v = getenv(name);
	return v && *v ? v : NULL;
}

int cli_client(const cli_globals *g, warren_client **out)
{
	warren_error err = {0};
	warren_client_opts o;
	warren_client_opts_init(&o);
	o.broker_url = g->broker;
	o.result_backend = g->result_backend;
	o.reconnect_timeout_ms = CLI_DEFAULT_RETRY_S * 1000;
	if (g->retry) {
		double s;
		if (producer_parse_seconds(g->retry, "--retry", &s, &err) || s < 0.1)
			return cli_usage_error("%s", err.msg[0] ? err.msg : "--retry: at least 0.1 s");
		o.reconnect_timeout_ms = (int)(s * 1000);
	}
	int rc;
	if (g->config) {
		rc = warren_client_new_from_config(g->config, &o, out, &err);
	} else {
		const char *broker = g->broker ? g->broker : env("WARREN_BROKER_URL");
		const char *backend = g->result_backend ? g->result_backend
							: env("WARREN_RESULT_BACKEND");
		rc = warren_client_new(broker ? broker : DEFAULT_BROKER, backend, &o, out, &err);
	}
	return rc ? cli_fail(rc, &err) : 0;
}

void cli_print_failure(const warren_result *r, bool verbose)
{
	const char *type = warren_result_exc_type(r);
	const char *msg = warren_result_exc_message(r);
	if (type)
		fprintf(stderr, "%s: %s\n", type, msg ? msg : "");
	else
		fprintf(stderr, "%s: %s\n", warren_state_name(warren_result_state(r)),
			warren_result_json(r));
	const char *tb = warren_result_traceback(r);
	if (verbose && tb)
		fprintf(stderr, "%s%s", tb, tb[0] && tb[strlen(tb) - 1] == '\n' ? "" : "\n");
}

typedef struct command {
	const char *name;
	int (*main)(const cli_globals *g, int argc, char **argv);
} command;

static const command commands[] = {
	{"send", cli_send_main},     {"call", cli_call_main},   {"result", cli_result_main},
	{"queues", cli_queues_main}, {"purge", cli_purge_main},
	{"events", cli_events_main}, {"status", cli_status_main},
	{"inspect", cli_inspect_main}, {"control", cli_control_main},
	{"pipeline", cli_pipeline_main},
};

/* A global option at argv[*i]; returns 0, or an exit code. */
static int global_option(cli_globals *g, int argc, char **argv, int *i)
{
	static const struct {
		const char *name;
		size_t off;
	} opts[] = {
		{"--broker", offsetof(cli_globals, broker)},
		{"--config", offsetof(cli_globals, config)},
		{"--result-backend", offsetof(cli_globals, result_backend)},
		{"--retry", offsetof(cli_globals, retry)},
	};
	const char *arg = argv[*i];
	for (size_t k = 0; k < sizeof opts / sizeof *opts; k++) {
		size_t n = strlen(opts[k].name);
		if (strncmp(arg, opts[k].name, n) || (arg[n] && arg[n] != '='))
			continue;
		const char *v = arg[n] == '=' ? arg + n + 1 : *i + 1 < argc ? argv[++*i] : NULL;
		if (!v)
			return cli_usage_error("option '%s' needs a value", opts[k].name);
		*(const char **)((char *)g + opts[k].off) = v;
		return 0;
	}
	return cli_usage_error("unknown option '%s'", arg);
}

int main(int argc, char **argv)
{
	cli_globals g = {0};
	int i = 1;
	for (; i < argc && argv[i][0] == '-'; i++) {
		if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
			usage(stdout);
			return CLI_OK;
		}
		int rc = global_option(&g, argc, argv, &i);
		if (rc)
			return rc;
	}
	if (i == argc) {
		usage(stderr);
		return CLI_USAGE;
	}
	for (size_t k = 0; k < sizeof commands / sizeof *commands; k++)
		if (!strcmp(argv[i], commands[k].name))
			return commands[k].main(&g, argc - i, argv + i);
	return cli_usage_error("unknown command '%s'", argv[i]);
}
