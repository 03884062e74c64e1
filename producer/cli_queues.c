/* producer/cli_queues.c - `warren queues [QUEUE...]` (ready messages and
 * consumers per queue: the config's queues and the default one, or the
 * ones named) and `warren purge QUEUE`. */
#include <stdio.h>
#include <string.h>

#include "producer/cli.h"

static bool wants_help(int argc, char **argv)
{
	for (int i = 1; i < argc; i++)
		if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help"))
			return true;
	return false;
}

static int check_no_options(const char *cmd, int argc, char **argv)
{
	for (int i = 1; i < argc; i++)
		if (argv[i][0] == '-')
			return cli_usage_error("%s: unknown option '%s'", cmd, argv[i]);
	return 0;
}

/* One table row; returns 0, or the error code when the broker failed. */
static int show_queue(warren_client *c, const char *name, warren_error *err)
{
	uint32_t messages = 0, consumers = 0;
	int rc = warren_queue_stats(c, name, &messages, &consumers, err);
	if (rc == WARREN_ENOTFOUND) {
		printf("%-40s %10s %10s  (not declared)\n", name, "-", "-");
		warren_error_clear(err);
		return 0;
	}
	if (!rc)
		printf("%-40s %10u %10u\n", name, messages, consumers);
	return rc;
}

int cli_queues_main(const cli_globals *g, int argc, char **argv)
{
	if (wants_help(argc, argv)) {
		printf("usage: warren queues [QUEUE...]\n\n"
		       "Prints the ready messages and the consumers of each queue: the ones\n"
		       "named, else the config's queues and the default queue.\n");
		return CLI_OK;
	}
	int code = check_no_options("queues", argc, argv);
	warren_client *c = NULL;
	if (code || (code = cli_client(g, &c)))
		return code;
	const char *const *names;
	size_t n = warren_client_queues(c, &names);
	if (argc > 1) {
		names = (const char *const *)argv + 1;
		n = (size_t)argc - 1;
	}
	printf("%-40s %10s %10s\n", "QUEUE", "MESSAGES", "CONSUMERS");
	warren_error err = {0};
	for (size_t i = 0; i < n && !code; i++) {
		int rc = show_queue(c, names[i], &err);
		if (rc)
			code = cli_fail(rc, &err);
	}
	warren_client_free(c);
	return code;
}

int cli_purge_main(const cli_globals *g, int argc, char **argv)
{
	if (wants_help(argc, argv)) {
		printf("usage: warren purge QUEUE\n\n"
		       "Deletes every ready message of QUEUE (unacked ones stay) and prints how\n"
		       "many. Exit 66 when there is no such queue.\n");
		return CLI_OK;
	}
	int code = check_no_options("purge", argc, argv);
	if (code)
		return code;
	if (argc != 2)
		return cli_usage_error("purge: exactly one queue name is required");
	warren_client *c = NULL;
	if ((code = cli_client(g, &c)))
		return code;
	warren_error err = {0};
	uint32_t purged = 0;
	int rc = warren_queue_purge(c, argv[1], &purged, &err);
	if (rc)
		code = cli_fail(rc, &err);
	else
		printf("purged %u message%s from '%s'\n", purged, purged == 1 ? "" : "s", argv[1]);
	warren_client_free(c);
	return code;
}
