/* worker/cli.c - warren-worker's command line: a small table-driven parser
 * (no getopt state, so it is a pure function the unit tests can call) for
 * long options with Celery's names and Celery's short spellings. */
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "worker.h"

const char worker_cli_usage[] =
	"usage: warren-worker [options]\n"
	"\n"
	"  --config FILE              YAML config (default: built-in defaults)\n"
	"  -b, --broker URL           broker URL(s), ';' between failover URLs\n"
	"  --plugin PATH              task plugin .so (repeatable; replaces worker.plugins)\n"
	"  -Q, --queues a,b           queues to consume (default: worker.queues or 'celery')\n"
	"  -c, --concurrency N        threads or child processes\n"
	"  -P, --pool threads|prefork\n"
	"  --prefetch-multiplier N    prefetch = concurrency x N per consumer (0: unlimited)\n"
	"  --result-backend URL       redis://..., rpc://, or none\n"
	"  -l, --loglevel L           debug, info, warning, error, critical\n"
	"  --log-format text|json\n"
	"  -n, --hostname NAME        node name (default celery@<host>; %h %n %d expand)\n"
	"  --statedb PATH|none        revoked task ids kept across restarts (default:\n"
	"                             worker-<node>.state in the state directory)\n"
	"  --without-mingle           do not ask other workers for revokes at start\n"
	"  -E, --events               send task events to the celeryev exchange\n"
	"  --without-heartbeat        no worker-online/heartbeat/offline events\n"
	"  --metrics-port N           serve /metrics and /healthz on port N\n"
	"  --metrics-bind ADDR        address for them (default 127.0.0.1)\n"
	"  --check-config             validate config and plugins, then exit (0, or 78)\n"
	"  -h, --help                 this text\n"
	"\n"
	"Environment: WARREN_BROKER_URL and WARREN_RESULT_BACKEND override the config;\n"
	"flags override both. Exit status: 0 clean, 64 usage, 69 broker unreachable,\n"
	"78 configuration.\n";

typedef enum opt_kind { OPT_STR, OPT_INT, OPT_PLUGIN, OPT_FLAG } opt_kind;

typedef struct opt_spec {
	const char *lng;
	char shrt;
	opt_kind kind;
	size_t offset;
} opt_spec;

#define OFF(f) offsetof(worker_cli, f)

static const opt_spec opts[] = {
	{"config", 0, OPT_STR, OFF(config)},
	{"broker", 'b', OPT_STR, OFF(broker)},
	{"plugin", 0, OPT_PLUGIN, 0},
	{"queues", 'Q', OPT_STR, OFF(queues)},
	{"concurrency", 'c', OPT_INT, OFF(concurrency)},
	{"pool", 'P', OPT_STR, OFF(pool)},
	{"prefetch-multiplier", 0, OPT_INT, OFF(prefetch_multiplier)},
	{"result-backend", 0, OPT_STR, OFF(result_backend)},
	{"loglevel", 'l', OPT_STR, OFF(loglevel)},
	{"log-format", 0, OPT_STR, OFF(log_format)},
	{"hostname", 'n', OPT_STR, OFF(hostname)},
	{"statedb", 0, OPT_STR, OFF(statedb)},
	{"without-mingle", 0, OPT_FLAG, OFF(without_mingle)},
	{"events", 'E', OPT_FLAG, OFF(events)},
	{"without-heartbeat", 0, OPT_FLAG, OFF(without_heartbeat)},
	{"metrics-port", 0, OPT_INT, OFF(metrics_port)},
	{"metrics-bind", 0, OPT_STR, OFF(metrics_bind)},
	{"check-config", 0, OPT_FLAG, OFF(check_config)},
	{"help", 'h', OPT_FLAG, OFF(help)},
};

/* The spec for argument a ("--name", "--name=v", "-x"), and where an
 * inline value starts (NULL if none). */
static const opt_spec *find(const char *a, const char **inline_value)
{
	*inline_value = NULL;
	for (size_t i = 0; i < sizeof opts / sizeof opts[0]; i++) {
		const opt_spec *o = &opts[i];
		if (a[0] == '-' && a[1] == '-') {
			size_t n = strlen(o->lng);
			if (strncmp(a + 2, o->lng, n) != 0)
				continue;
			if (a[2 + n] == '=') {
				*inline_value = a + 3 + n;
				return o;
			}
			if (a[2 + n] == '\0')
				return o;
		} else if (a[0] == '-' && o->shrt && a[1] == o->shrt) {
			if (a[2])
				*inline_value = a + 2;
			return o;
		}
	}
	return NULL;
}

static int parse_int(const char *name, const char *v, int *out, warren_error *err)
{
	char *end;
	errno = 0;
	long n = strtol(v, &end, 10);
	if (errno || end == v || *end || n < 0 || n > INT_MAX)
		return warren_error_set(err, WARREN_EINVAL,
					"option '--%s': '%s' is not a non-negative integer", name, v);
	*out = (int)n;
	return 0;
}

static int apply(const opt_spec *o, const char *v, worker_cli *out, warren_error *err)
{
	char *field = (char *)out + o->offset;
	switch (o->kind) {
	case OPT_FLAG:
		if (v)
			return warren_error_set(err, WARREN_EINVAL, "option '--%s' takes no value",
						o->lng);
		*(bool *)(void *)field = true;
		return 0;
	case OPT_STR:
		memcpy(field, &v, sizeof v);
		return 0;
	case OPT_INT:
		return parse_int(o->lng, v, (int *)(void *)field, err);
	case OPT_PLUGIN:
		if (out->n_plugins == WORKER_CLI_MAX_PLUGINS)
			return warren_error_set(err, WARREN_EINVAL, "more than %d --plugin options",
						WORKER_CLI_MAX_PLUGINS);
		out->plugins[out->n_plugins++] = v;
		return 0;
	}
	return 0;
}

int worker_cli_parse(int argc, char **argv, worker_cli *out, warren_error *err)
{
	memset(out, 0, sizeof *out);
	out->concurrency = -1;
	out->prefetch_multiplier = -1;
	out->metrics_port = -1;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *v;
		const opt_spec *o = find(a, &v);
		if (!o)
			return warren_error_set(err, WARREN_EINVAL,
						a[0] == '-' ? "unknown option '%s'"
							    : "unexpected argument '%s'", a);
		if (o->kind != OPT_FLAG && !v) {
			if (i + 1 >= argc)
				return warren_error_set(err, WARREN_EINVAL,
							"option '--%s' needs a value", o->lng);
			v = argv[++i];
		}
		int rc = apply(o, v, out, err);
		if (rc != 0)
			return rc;
	}
	if (out->metrics_port > 65535)
		return warren_error_set(err, WARREN_EINVAL,
					"option '--metrics-port': %d is not a TCP port", out->metrics_port);
	if (out->concurrency == 0)
		return warren_error_set(err, WARREN_EINVAL, "option '--concurrency': must be at least 1");
	if (out->pool && strcmp(out->pool, "threads") != 0 && strcmp(out->pool, "prefork") != 0)
		return warren_error_set(err, WARREN_EINVAL,
					"option '--pool': '%s', expected threads or prefork", out->pool);
	if (out->log_format && strcmp(out->log_format, "text") != 0 &&
	    strcmp(out->log_format, "json") != 0)
		return warren_error_set(err, WARREN_EINVAL,
					"option '--log-format': '%s', expected text or json",
					out->log_format);
	config_log_level lv;
	if (out->loglevel && log_level_parse(out->loglevel, &lv) != 0)
		return warren_error_set(err, WARREN_EINVAL,
					"option '--loglevel': '%s', expected debug, info, warning, "
					"error or critical", out->loglevel);
	return 0;
}
