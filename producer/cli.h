/* producer/cli.h - what the `warren` command's files share: the global
 * options, exit codes and the helpers every subcommand uses. */
#ifndef WARREN_CLI_H
#define WARREN_CLI_H

#include <stdbool.h>
#include <stdio.h>

#include "warren/warren.h"

/* Exit codes (sysexits.h where one fits). */
enum {
	CLI_OK = 0,
	CLI_TASK_FAILED = 1, /* the task ran and failed, or sends were not confirmed */
	CLI_TIMEOUT = 2,     /* no result in time */
	CLI_USAGE = 64,      /* EX_USAGE */
	CLI_DATAERR = 65,    /* EX_DATAERR: bad JSON, schema mismatch */
	CLI_NOINPUT = 66,    /* EX_NOINPUT: no such file or queue */
	CLI_UNAVAILABLE = 69, /* EX_UNAVAILABLE: broker or backend unreachable */
	CLI_SOFTWARE = 70,   /* EX_SOFTWARE: out of memory, internal error */
	CLI_CONFIG = 78,     /* EX_CONFIG: bad config file */
};

/* Global options, given before the subcommand. */
typedef struct cli_globals {
	const char *broker;         /* --broker URL */
	const char *config;         /* --config FILE */
	const char *result_backend; /* --result-backend URL */
	const char *retry;          /* --retry S: how long a lost broker is retried */
} cli_globals;

/* The exit code for a warren error code. */
int cli_exit_code(int rc);

/* Prints "warren: <err->msg>" on stderr and returns cli_exit_code(rc). */
int cli_fail(int rc, const warren_error *err);

/* Prints "warren: <message>" and returns CLI_USAGE. */
int cli_usage_error(const char *fmt, ...) WARREN_PRINTF(1, 2);

/* A client from the global options (a config file, else --broker and
 * WARREN_BROKER_URL, else the local default broker). On failure prints why
 * and returns the exit code; 0 with *out set on success. */
int cli_client(const cli_globals *g, warren_client **out);

/* Subcommands: argv[0] is the subcommand's name. Each returns an exit code. */
int cli_send_main(const cli_globals *g, int argc, char **argv);
int cli_call_main(const cli_globals *g, int argc, char **argv);
int cli_result_main(const cli_globals *g, int argc, char **argv);
int cli_queues_main(const cli_globals *g, int argc, char **argv);
int cli_purge_main(const cli_globals *g, int argc, char **argv);

/* The options send and call share, for their --help (cli_send.c). */
void cli_task_options_help(FILE *out);

/* send --from FILE (cli_bulk.c). */
struct producer_task_cmd;
int cli_bulk_send(warren_client *c, const struct producer_task_cmd *cmd);

/* Prints a failed or revoked result: "TYPE: message" (and the traceback
 * when verbose) on stderr. */
void cli_print_failure(const warren_result *r, bool verbose);

#endif
