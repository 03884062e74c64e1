/* producer/cmdline.h - the parsed command line of `warren send` / `warren
 * call` (producer/cmdline.c), shared by the CLI and the unit tests. */
#ifndef WARREN_PRODUCER_CMDLINE_H
#define WARREN_PRODUCER_CMDLINE_H

#include <stdbool.h>

#include "warren/warren.h"

typedef struct producer_task_cmd {
	bool is_call;
	const char *task;     /* NULL with --from; points into argv */
	warren_args *args;    /* owned: the ARGs, each JSON or a string */
	warren_args *kwargs;  /* owned; NULL when --kwargs was not given */
	warren_args *headers; /* owned; --header NAME=VALUE; also in opts.headers */
	warren_send_opts opts; /* strings point into argv */
	const char *from;     /* send --from FILE ("-" = stdin) */
	bool has_timeout;     /* call --timeout */
	double timeout;
	bool verbose, help;
} producer_task_cmd;

/* Parses argv[0..argc) (after the subcommand's name) into *c. is_call
 * allows --timeout, else --from. On success release *c with
 * producer_task_cmd_release; on failure (WARREN_EINVAL for usage,
 * WARREN_EDECODE for bad JSON in --kwargs) there is nothing to release. */
int producer_task_cmd_parse(int argc, char **argv, bool is_call, producer_task_cmd *c,
			    warren_error *err);
void producer_task_cmd_release(producer_task_cmd *c);

#endif
