/* producer/cli_call.c - `warren call TASK [ARG...]`: send, wait for the
 * result, print it as JSON on stdout (exit 0), or the failure as
 * "TYPE: message" on stderr (exit 1), or exit 2 on timeout. */
#include <stdio.h>

#include "producer/cli.h"
#include "producer/cmdline.h"

static void usage(FILE *out)
{
	fprintf(out, "usage: warren call TASK [ARG...] [options]\n"
		     "\n"
		     "Sends a task, waits for its result and prints it as JSON. Needs a result\n"
		     "backend (--result-backend or the config's). Exit 0 on success; 1 when the\n"
		     "task failed (TYPE: message on stderr, the traceback too with -v); 2 on\n"
		     "timeout.\n"
		     "\n");
	cli_task_options_help(out);
	fprintf(out, "  --timeout S            give up after S seconds (default: wait forever)\n"
		     "  -v, --verbose          print the traceback of a failure\n");
}

static int print_result(const warren_result *r, bool verbose)
{
	if (warren_result_state(r) == WARREN_STATE_SUCCESS) {
		const char *json = warren_result_json(r);
		printf("%s\n", json ? json : "null");
		return CLI_OK;
	}
	cli_print_failure(r, verbose);
	return CLI_TASK_FAILED;
}

int cli_call_main(const cli_globals *g, int argc, char **argv)
{
	producer_task_cmd cmd;
	warren_error err = {0};
	int rc = producer_task_cmd_parse(argc - 1, argv + 1, true, &cmd, &err);
	if (rc)
		return rc == WARREN_EINVAL ? cli_usage_error("call: %s", err.msg) : cli_fail(rc, &err);
	if (cmd.help) {
		usage(stdout);
		producer_task_cmd_release(&cmd);
		return CLI_OK;
	}
	warren_client *c = NULL;
	warren_result *r = NULL;
	int code = cli_client(g, &c);
	if (code)
		goto out_cmd;
	/* Fail on a missing or unreachable backend before anything is sent. */
	char id[WARREN_TASK_ID_MAX];
	if ((rc = warren_client_connect(c, true, &err)) ||
	    (rc = warren_send(c, cmd.task, cmd.args, cmd.kwargs, &cmd.opts, id, &err))) {
		code = cli_fail(rc, &err);
		goto out_client;
	}
	int timeout_ms = cmd.has_timeout ? (int)(cmd.timeout * 1000) : -1;
	rc = warren_result_wait(c, id, timeout_ms, &r, &err);
	if (rc == WARREN_ETIMEOUT) {
		fprintf(stderr, "warren: task %s: no result within %g s\n", id, cmd.timeout);
		code = CLI_TIMEOUT;
	} else if (rc) {
		code = cli_fail(rc, &err);
	} else {
		code = print_result(r, cmd.verbose);
	}
	warren_result_free(r);
out_client:
	warren_client_free(c);
out_cmd:
	producer_task_cmd_release(&cmd);
	return code;
}
