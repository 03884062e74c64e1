/* producer/cli_result.c - `warren result ID [--wait] [--timeout S] [-v]`:
 * a task's result from the result backend, printed as `warren call` does.
 * With rpc:// only the client that sent a task sees its result, so this
 * command is for redis:// (or another shared backend). */
#include <stdio.h>
#include <string.h>

#include "producer/cli.h"
#include "producer/producer.h"

static void usage(FILE *out)
{
	fprintf(out, "usage: warren result ID [--wait] [--timeout S] [-v]\n"
		     "\n"
		     "Prints task ID's result as JSON (exit 0), or its failure as TYPE: message\n"
		     "on stderr (exit 1). A task not finished yet prints its state on stderr and\n"
		     "exits 2. Needs a shared result backend such as redis://.\n"
		     "\n"
		     "options:\n"
		     "  --wait        wait until the task is finished\n"
		     "  --timeout S   with --wait: give up after S seconds (exit 2)\n"
		     "  -v, --verbose print the traceback of a failure\n"
		     "  -h, --help    this help\n");
}

typedef struct result_cmd {
	const char *id;
	bool wait, verbose;
	double timeout; /* < 0: none */
} result_cmd;

static int parse(int argc, char **argv, result_cmd *rc_out)
{
	result_cmd r = {.timeout = -1};
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
			usage(stdout);
			return -1;
		} else if (!strcmp(a, "--wait")) {
			r.wait = true;
		} else if (!strcmp(a, "-v") || !strcmp(a, "--verbose")) {
			r.verbose = true;
		} else if (!strcmp(a, "--timeout")) {
			warren_error err = {0};
			if (i + 1 == argc)
				return cli_usage_error("result: option '--timeout' needs a value");
			if (producer_parse_seconds(argv[++i], "--timeout", &r.timeout, &err))
				return cli_usage_error("result: %s", err.msg);
		} else if (a[0] == '-') {
			return cli_usage_error("result: unknown option '%s'", a);
		} else if (r.id) {
			return cli_usage_error("result: one task id only");
		} else {
			r.id = a;
		}
	}
	if (!r.id)
		return cli_usage_error("result: a task id is required");
	*rc_out = r;
	return 0;
}

int cli_result_main(const cli_globals *g, int argc, char **argv)
{
	result_cmd cmd = {.timeout = -1};
	int code = parse(argc, argv, &cmd);
	if (code)
		return code < 0 ? CLI_OK : code;
	warren_client *c = NULL;
	if ((code = cli_client(g, &c)))
		return code;
	warren_error err = {0};
	warren_result *r = NULL;
	int rc = cmd.wait ? warren_result_wait(c, cmd.id, cmd.timeout < 0 ? -1 : (int)(cmd.timeout * 1000), &r, &err)
			  : warren_result_get(c, cmd.id, &r, &err);
	if (rc == WARREN_ETIMEOUT) {
		fprintf(stderr, "warren: task %s: not finished within %g s\n", cmd.id, cmd.timeout);
		code = CLI_TIMEOUT;
	} else if (rc) {
		code = cli_fail(rc, &err);
	} else if (warren_result_state(r) == WARREN_STATE_SUCCESS) {
		printf("%s\n", warren_result_json(r));
	} else if (warren_result_ready(r)) {
		cli_print_failure(r, cmd.verbose);
		code = CLI_TASK_FAILED;
	} else {
		fprintf(stderr, "%s\n", warren_state_name(warren_result_state(r)));
		code = CLI_TIMEOUT;
	}
	warren_result_free(r);
	warren_client_free(c);
	return code;
}
