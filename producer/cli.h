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
int cli_events_main(const cli_globals *g, int argc, char **argv);
int cli_status_main(const cli_globals *g, int argc, char **argv);

int cli_inspect_main(const cli_globals *g, int argc, char **argv);
int cli_control_main(const cli_globals *g, int argc, char **argv);
int cli_pipeline_main(const cli_globals *g, int argc, char **argv); /* cli_pipeline.c */

/* What `inspect` and `control` share (cli_control.c): their options, a
 * small table and the call itself. */
#define CLI_CTL_MAX_DESTS 64
#define CLI_CTL_MAX_ARGS 256
typedef struct cli_ctl_opts {
	const char *args[CLI_CTL_MAX_ARGS]; /* positional: the action, then its args */
	size_t n_args;
	const char *dests[CLI_CTL_MAX_DESTS]; /* --destination, split; into dest_buf */
	size_t n_dests;
	char *dest_buf;
	double timeout;                     /* --timeout, default 1 s */
	bool json;                          /* --json */
	bool terminate;                     /* control revoke --terminate */
	const char *signal;                 /* --signal, default SIGTERM */
} cli_ctl_opts;
/* Parses argv (argv[0] is the subcommand); 0, or an exit code after
 * printing why. Release with cli_ctl_release. */
int cli_ctl_parse(const char *cmd, int argc, char **argv, cli_ctl_opts *o);
void cli_ctl_release(cli_ctl_opts *o);

#define CLI_TABLE_MAX_ROWS 4096
#define CLI_TABLE_MAX_COLS 6
typedef struct cli_table {
	size_t n_cols, n_rows;
	const char *head[CLI_TABLE_MAX_COLS];
	size_t width[CLI_TABLE_MAX_COLS];
	char *cells[CLI_TABLE_MAX_ROWS][CLI_TABLE_MAX_COLS];
} cli_table;
/* Copies a row of n_cols cells (NULL = ""). */
void cli_table_add(cli_table *t, const char *const *cells);
/* Prints the head and the rows in aligned columns, and frees the rows. */
void cli_table_print(cli_table *t);

/* How one command's replies become rows: rows() adds the rows for a node
 * (v is its reply, parsed; NULL if unparseable). */
struct json_t;
typedef struct cli_ctl_printer {
	size_t n_cols;
	const char *head[CLI_TABLE_MAX_COLS];
	void (*rows)(cli_table *t, const char *node, struct json_t *v);
} cli_ctl_printer;
/* "ok"/"error" and the text of an {"ok": x} / {"error": x} reply. */
void cli_ctl_status(struct json_t *v, const char **status, char *msg, size_t cap);
/* The NODE STATUS MESSAGE rows of such a reply. */
void cli_ctl_status_rows(cli_table *t, const char *node, struct json_t *v);
/* Broadcasts method with args (a packed map; NULL = {}) and prints the
 * replies as printer says (or JSON with o->json). reply false: a cast.
 * Returns the exit code. */
struct msgpack_sbuffer;
int cli_ctl_run(const cli_globals *g, const cli_ctl_opts *o, const char *method,
		const struct msgpack_sbuffer *args, bool reply, const cli_ctl_printer *printer);

/* The options send and call share, for their --help (cli_send.c). */
void cli_task_options_help(FILE *out);

/* send --from FILE (cli_bulk.c). */
struct producer_task_cmd;
int cli_bulk_send(warren_client *c, const struct producer_task_cmd *cmd);

/* Prints a failed or revoked result: "TYPE: message" (and the traceback
 * when verbose) on stderr. */
void cli_print_failure(const warren_result *r, bool verbose);

/* A monitor of the celeryev exchange (cli_events.c), for `events` and
 * `status`: its own auto-delete queue bound with `binding` ("#", "worker.#").
 * Returns 0 with *out set, or an exit code after printing why. */
typedef struct cli_monitor cli_monitor;
struct schema_event;
int cli_monitor_open(const cli_globals *g, const char *binding, cli_monitor **out);
/* The next event within timeout_ms (< 0: until one comes or an interrupt):
 * 0 with *out valid until the next call, WARREN_ETIMEOUT (also once
 * interrupted), or a broker error. */
int cli_monitor_next(cli_monitor *m, int timeout_ms, const struct schema_event **out,
		     warren_error *err);
void cli_monitor_free(cli_monitor *m);
/* SIGINT/SIGTERM set a flag that cli_interrupted() reads. */
void cli_catch_interrupt(void);
bool cli_interrupted(void);
/* "2026-05-01 10:00:00.123", local time. */
void cli_format_time(double epoch, char buf[32]);

#endif
