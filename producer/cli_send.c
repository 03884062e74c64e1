/* producer/cli_send.c - `warren send TASK [ARG...]`: send one task and print
 * its id; `warren send --from FILE` hands over to cli_bulk.c. */
#include <stdio.h>

#include "producer/cli.h"
#include "producer/cmdline.h"

void cli_task_options_help(FILE *out)
{
	fprintf(out,
		"Each ARG is a JSON value when it parses as one (2, 2.5, true, null, [1,2],\n"
		"{\"a\":1}, \"\\\"quoted\\\"\"), else the text itself as a string. -- ends the options.\n"
		"\n"
		"options:\n"
		"  --kwargs JSON          keyword arguments, a JSON object\n"
		"  --queue Q              the queue (default: task_routes, else celery)\n"
		"  --exchange X           publish to exchange X (with --routing-key)\n"
		"  --routing-key K        the routing key\n"
		"  --countdown S          run no earlier than S seconds from now\n"
		"  --eta ISO8601          run no earlier than then (naive = UTC)\n"
		"  --expires S            revoke it unrun after S seconds\n"
		"  --priority N           message priority 0-255\n"
		"  --id ID                the task id (default: a new UUID)\n"
		"  --retries N            the retries header\n"
		"  --time-limit S         hard time limit\n"
		"  --soft-time-limit S    soft time limit\n"
		"  --ignore-result        the worker stores no result\n"
		"  --header NAME=VALUE    an extra message header (VALUE read like an ARG)\n"
		"  -h, --help             this help\n");
}

static void usage(FILE *out)
{
	fprintf(out, "usage: warren send TASK [ARG...] [options]\n"
		     "       warren send --from FILE|- [options]\n"
		     "\n"
		     "Sends a task and prints its id once the broker confirmed it.\n"
		     "With --from, reads one task per line, {\"task\": ..., \"args\": [...],\n"
		     "\"kwargs\": {...}} (optional \"queue\", \"id\", \"countdown\", \"expires\",\n"
		     "\"priority\"), publishes them with pipelined confirms and reports\n"
		     "sent/confirmed/failed and the rate; exit 1 if any was not confirmed.\n"
		     "\n");
	cli_task_options_help(out);
	fprintf(out, "  --from FILE            tasks as JSON lines; - reads stdin\n");
}

int cli_send_main(const cli_globals *g, int argc, char **argv)
{
	producer_task_cmd cmd;
	warren_error err = {0};
	int rc = producer_task_cmd_parse(argc - 1, argv + 1, false, &cmd, &err);
	if (rc)
		return rc == WARREN_EINVAL ? cli_usage_error("send: %s", err.msg) : cli_fail(rc, &err);
	if (cmd.help) {
		usage(stdout);
		producer_task_cmd_release(&cmd);
		return CLI_OK;
	}
	warren_client *c = NULL;
	int code = cli_client(g, &c);
	if (code)
		goto out_cmd;
	if (cmd.from) {
		code = cli_bulk_send(c, &cmd);
		goto out_client;
	}
	char id[WARREN_TASK_ID_MAX];
	rc = warren_send(c, cmd.task, cmd.args, cmd.kwargs, &cmd.opts, id, &err);
	if (rc) {
		code = cli_fail(rc, &err);
		goto out_client;
	}
	printf("%s\n", id);
out_client:
	warren_client_free(c);
out_cmd:
	producer_task_cmd_release(&cmd);
	return code;
}
