/* producer/cli_pipeline.c - `warren pipeline list|show|run|status`: the
 * YAML pipelines of a config (config/pipeline*.c) from the command line.
 *
 * run binds the inputs from --set, sends the pipeline as one canvas
 * (producer/pipeline.c), stores a run record in the result backend and
 * prints the run id; with --wait it follows every step's state at about
 * 5 Hz (warren_result_wait_many with a 200 ms deadline, so between changes
 * it sleeps in the backend's wait, never spins), draws progress on stderr
 * when stderr is a terminal, and prints the result as JSON on stdout. Exit
 * codes are `warren call`'s: 0 ok, 1 a step failed, 2 timeout. status reads
 * the record and each step's latest state, from any process.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "producer/cli.h"
#include "producer/producer.h"

#define POLL_MS 200 /* progress refresh: 5 Hz */
#define MAX_SETS 256

static void usage(FILE *out)
{
	fprintf(out,
		"usage: warren --config FILE pipeline list\n"
		"       warren --config FILE pipeline show NAME\n"
		"       warren --config FILE pipeline run NAME [--set KEY=VALUE]... [--wait]\n"
		"                                   [--timeout S] [--queue Q] [--json] [-v]\n"
		"       warren [--config FILE] pipeline status ID [--json]\n"
		"\n"
		"The pipelines of a config's `pipelines:` section (and pipelines_dir).\n"
		"  list            name, inputs and description of each pipeline\n"
		"  show NAME       the pipeline's inputs and its tree, as an outline\n"
		"  run NAME        bind the inputs, send the pipeline, print the run id\n"
		"  status ID       a run's progress and result, from the result backend\n"
		"\n"
		"run options:\n"
		"  --set KEY=VALUE an input (lists and maps as JSON); repeat for each\n"
		"  --wait          wait for the result and print it as JSON; on a terminal,\n"
		"                  show progress on stderr (tasks done / total, the step\n"
		"                  running, failures as they happen)\n"
		"  --timeout S     with --wait: give up after S seconds (exit 2)\n"
		"  --queue Q       send every task to queue Q (overrides the pipeline's)\n"
		"  --json          print an object: id, pipeline, state, done, total, result\n"
		"  -v, --verbose   print the traceback of a failure\n"
		"\n"
		"A run record (pipeline, inputs, task ids) is kept in a redis:// result\n"
		"backend for result_expires, so `status` works from any process.\n"
		"exit codes: 0 ok, 1 a step failed, 2 timeout (status: not finished),\n"
		"            65 bad --set, 66 no such pipeline or run, as `warren --help`.\n");
}

typedef struct pipeline_cmd {
	const char *action, *target;
	const char *keys[MAX_SETS], *values[MAX_SETS];
	char *sets[MAX_SETS]; /* owned copies split at '=' */
	size_t n_sets;
	bool wait, json, verbose;
	double timeout; /* < 0: none */
	const char *queue;
} pipeline_cmd;

static void cmd_release(pipeline_cmd *c)
{
	for (size_t i = 0; i < c->n_sets; i++)
		free(c->sets[i]);
}

static int add_set(pipeline_cmd *c, const char *kv)
{
	const char *eq = strchr(kv, '=');
	if (!eq || eq == kv)
		return cli_usage_error("pipeline run: --set wants KEY=VALUE, got '%s'", kv);
	if (c->n_sets == MAX_SETS)
		return cli_usage_error("pipeline run: more than %d --set", MAX_SETS);
	char *copy = strdup(kv);
	if (!copy) {
		fputs("warren: out of memory\n", stderr);
		return CLI_SOFTWARE;
	}
	copy[eq - kv] = '\0';
	c->sets[c->n_sets] = copy;
	c->keys[c->n_sets] = copy;
	c->values[c->n_sets++] = copy + (eq - kv) + 1;
	return 0;
}

/* Parses argv (argv[0] is "pipeline"); 0, -1 after --help, or an exit code. */
static int parse(int argc, char **argv, pipeline_cmd *c)
{
	c->timeout = -1;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		int rc = 0;
		if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
			usage(stdout);
			return -1;
		} else if (!strcmp(a, "--wait")) {
			c->wait = true;
		} else if (!strcmp(a, "--json")) {
			c->json = true;
		} else if (!strcmp(a, "-v") || !strcmp(a, "--verbose")) {
			c->verbose = true;
		} else if (!strncmp(a, "--set=", 6)) {
			rc = add_set(c, a + 6);
		} else if (!strcmp(a, "--set") || !strcmp(a, "--timeout") || !strcmp(a, "--queue")) {
			if (i + 1 == argc)
				return cli_usage_error("pipeline: option '%s' needs a value", a);
			const char *v = argv[++i];
			warren_error err = {0};
			if (!strcmp(a, "--set"))
				rc = add_set(c, v);
			else if (!strcmp(a, "--queue"))
				c->queue = v;
			else if (producer_parse_seconds(v, "--timeout", &c->timeout, &err))
				rc = cli_usage_error("pipeline: %s", err.msg);
		} else if (a[0] == '-') {
			rc = cli_usage_error("pipeline: unknown option '%s'", a);
		} else if (!c->action) {
			c->action = a;
		} else if (!c->target) {
			c->target = a;
		} else {
			rc = cli_usage_error("pipeline: unexpected argument '%s'", a);
		}
		if (rc)
			return rc;
	}
	if (!c->action) {
		usage(stderr);
		return CLI_USAGE;
	}
	bool is_run = !strcmp(c->action, "run");
	if (!is_run && (c->n_sets || c->wait || c->queue || c->timeout >= 0 || c->verbose))
		return cli_usage_error("pipeline %s: --set, --wait, --timeout, --queue and -v "
				       "belong to run", c->action);
	if (!strcmp(c->action, "list")) {
		if (c->target)
			return cli_usage_error("pipeline list: takes no argument");
	} else if (is_run || !strcmp(c->action, "show") || !strcmp(c->action, "status")) {
		if (!c->target)
			return cli_usage_error("pipeline %s: %s is required", c->action,
					       !strcmp(c->action, "status") ? "a run id"
									    : "a pipeline name");
	} else {
		return cli_usage_error("pipeline: unknown action '%s'", c->action);
	}
	return 0;
}

static int need_config(const cli_globals *g, const char *action)
{
	if (g->config)
		return 0;
	return cli_usage_error("pipeline %s: give --config FILE, the config whose `pipelines:` "
			       "section holds it", action);
}

/* The named pipeline, or an error naming the known ones (exit 66). */
static int find(const warren_config *cfg, const char *name, const pipeline_def **out)
{
	if ((*out = config_pipeline_find(cfg, name)))
		return 0;
	fprintf(stderr, "warren: pipeline '%s': no such pipeline in '%s'", name, cfg->name);
	for (size_t i = 0; i < cfg->n_pipelines; i++)
		fprintf(stderr, "%s%s", i ? ", " : "; known: ", cfg->pipeline_defs[i].name);
	fputc('\n', stderr);
	return CLI_NOINPUT;
}

/* ---- list, show ---- */

static int list_or_show(const cli_globals *g, const pipeline_cmd *c)
{
	int code = need_config(g, c->action);
	if (code)
		return code;
	warren_config *cfg = NULL;
	warren_error err = {0};
	int rc = config_load(g->config, &cfg, &err);
	if (rc)
		return cli_fail(rc, &err);
	if (!strcmp(c->action, "list")) {
		if (cfg->n_pipelines)
			pipeline_print_list(cfg, stdout);
		else
			fprintf(stderr, "warren: '%s' declares no pipelines\n", cfg->name);
	} else {
		const pipeline_def *def;
		if (!(code = find(cfg, c->target, &def)))
			pipeline_print(def, stdout);
	}
	config_free(cfg);
	return code;
}

/* ---- progress ---- */

static size_t count_done(const producer_pipeline_run *run, warren_result *const *res)
{
	size_t n = 0;
	for (size_t i = 0; i < run->n_steps; i++)
		n += res[i] && warren_result_ready(res[i]);
	return n;
}

/* The first failed or revoked step, or n_steps. */
static size_t first_failed(const producer_pipeline_run *run, warren_result *const *res)
{
	for (size_t i = 0; i < run->n_steps; i++)
		if (res[i] && warren_result_ready(res[i]) &&
		    warren_result_state(res[i]) != WARREN_STATE_SUCCESS)
			return i;
	return run->n_steps;
}

static void failure_text(const warren_result *r, char *buf, size_t cap)
{
	const char *type = warren_result_exc_type(r);
	const char *msg = warren_result_exc_message(r);
	if (type)
		snprintf(buf, cap, "%s: %s", type, msg ? msg : "");
	else
		snprintf(buf, cap, "%s", warren_state_name(warren_result_state(r)));
}

typedef struct progress {
	bool tty;
	bool *announced; /* failures already printed */
	bool drawn;      /* a progress line is on screen */
} progress;

static void progress_clear(progress *p)
{
	if (p->tty && p->drawn)
		fputs("\r\033[K", stderr);
	p->drawn = false;
}

static void progress_draw(progress *p, const producer_pipeline_run *run,
			  warren_result *const *res, double elapsed)
{
	if (!p->tty)
		return;
	for (size_t i = 0; i < run->n_steps; i++) {
		const warren_result *r = res[i];
		if (p->announced[i] || !r || !warren_result_ready(r) ||
		    warren_result_state(r) == WARREN_STATE_SUCCESS)
			continue;
		char why[300];
		failure_text(r, why, sizeof why);
		progress_clear(p);
		fprintf(stderr, "  failed  %s %s: %s\n", run->steps[i].node, run->steps[i].task, why);
		p->announced[i] = true;
	}
	size_t done = count_done(run, res), running = run->n_steps, waiting = 0;
	for (size_t i = 0; i < run->n_steps; i++)
		if (!res[i] || !warren_result_ready(res[i])) {
			if (running == run->n_steps)
				running = i;
			waiting++;
		}
	progress_clear(p);
	fprintf(stderr, "  [%zu/%zu] %.1fs", done, run->n_steps, elapsed);
	if (running < run->n_steps)
	{
		fprintf(stderr, "  running %s (%s)", run->steps[running].task,
			run->steps[running].node);
		if (waiting > 1)
			fprintf(stderr, ", %zu more to go", waiting - 1);
	}
	fflush(stderr);
	p->drawn = true;
}

/* ---- output ---- */

/* Prints o's compact text with `"k1":raw1` (and k2, when not NULL) added at
 * the end: raw values are JSON text as warren writes it (results, inputs),
 * kept as they are rather than re-encoded by jansson (which writes 0.3 as
 * 0.29999999999999999). */
static void print_with_raw(json_t *o, const char *k1, const char *raw1, const char *k2,
			   const char *raw2)
{
	char *base = o ? json_dumps(o, JSON_COMPACT) : NULL;
	size_t bl = base ? strlen(base) : 0;
	if (bl >= 2) {
		printf("%.*s%s\"%s\":%s", (int)(bl - 1), base, bl > 2 ? "," : "", k1,
		       raw1 ? raw1 : "null");
		if (k2)
			printf(",\"%s\":%s", k2, raw2 ? raw2 : "null");
		printf("}\n");
	}
	free(base);
}

static void print_json_outcome(const producer_pipeline_run *run, warren_result *const *res,
			       const char *state, const char *result, size_t failed)
{
	json_t *o = json_pack("{s:s,s:s,s:s,s:I,s:I}", "id", run->id, "pipeline", run->pipeline,
			      "state", state, "done", (json_int_t)count_done(run, res), "total",
			      (json_int_t)run->n_steps);
	if (!o)
		return;
	if (failed < run->n_steps) {
		const warren_result *r = res[failed];
		json_object_set_new(o, "failed", json_pack("{s:s,s:s,s:s}", "node",
							   run->steps[failed].node, "task",
							   run->steps[failed].task, "id",
							   run->steps[failed].task_id));
		const char *t = warren_result_exc_type(r), *m = warren_result_exc_message(r);
		json_object_set_new(o, "exc_type", t ? json_string(t) : json_null());
		json_object_set_new(o, "exc_message", m ? json_string(m) : json_null());
	}
	print_with_raw(o, "result", result, NULL, NULL);
	json_decref(o);
}

/* Prints the outcome of a finished run (or of a status read) and returns
 * its exit code: 0 ok, 1 a step failed, 2 not finished. */
static int print_outcome(const producer_pipeline_run *run, warren_result *const *res, bool json,
			 bool verbose)
{
	size_t failed = first_failed(run, res);
	warren_error err = {0};
	char *result = NULL;
	int code;
	if (failed < run->n_steps) {
		fprintf(stderr, "warren: pipeline '%s' (run %s) failed at step %s: task %s[%s]\n",
			run->pipeline, run->id, run->steps[failed].node, run->steps[failed].task,
			run->steps[failed].task_id);
		cli_print_failure(res[failed], verbose);
		code = CLI_TASK_FAILED;
	} else if (count_done(run, res) == run->n_steps &&
		   producer_pipeline_result_json(run, res, &result, &err) == 0) {
		code = CLI_OK;
	} else {
		code = CLI_TIMEOUT;
	}
	if (json)
		print_json_outcome(run, res, code == CLI_OK ? "SUCCESS"
					     : code == CLI_TASK_FAILED ? "FAILURE" : "PENDING",
				   result, failed);
	else if (code == CLI_OK)
		printf("%s\n", result);
	free(result);
	return code;
}

static double now_s(void)
{
	return (double)producer_now_us() / 1e6;
}

/* ---- run ---- */

static int wait_run(warren_client *c, const producer_pipeline_run *run, const pipeline_cmd *cmd)
{
	warren_result **res = calloc(run->n_steps ? run->n_steps : 1, sizeof *res);
	progress p = {.tty = isatty(STDERR_FILENO) == 1,
		      .announced = calloc(run->n_steps ? run->n_steps : 1, sizeof(bool))};
	if (!res || !p.announced) {
		free(res);
		free(p.announced);
		fputs("warren: out of memory\n", stderr);
		return CLI_SOFTWARE;
	}
	warren_error err = {0};
	double start = now_s(), deadline = cmd->timeout >= 0 ? start + cmd->timeout : -1;
	int code = -1;
	while (code < 0) {
		int ms = POLL_MS;
		if (deadline >= 0 && (deadline - now_s()) * 1000 < ms)
			ms = (int)((deadline - now_s()) * 1000);
		int rc = producer_pipeline_poll(c, run, res, ms > 0 ? ms : 0, &err);
		if (rc) {
			progress_clear(&p);
			code = cli_fail(rc, &err);
			break;
		}
		progress_draw(&p, run, res, now_s() - start);
		if (first_failed(run, res) < run->n_steps || count_done(run, res) == run->n_steps) {
			progress_clear(&p);
			if (p.tty)
				fprintf(stderr, "  [%zu/%zu] finished in %.1fs\n", count_done(run, res),
					run->n_steps, now_s() - start);
			code = print_outcome(run, res, cmd->json, cmd->verbose);
		} else if (deadline >= 0 && now_s() >= deadline) {
			progress_clear(&p);
			fprintf(stderr, "warren: pipeline '%s' (run %s): %zu of %zu tasks done within "
				"%g s\n", run->pipeline, run->id, count_done(run, res), run->n_steps,
				cmd->timeout);
			if (cmd->json)
				print_outcome(run, res, true, false);
			code = CLI_TIMEOUT;
		}
	}
	for (size_t i = 0; i < run->n_steps; i++)
		warren_result_free(res[i]);
	free(res);
	free(p.announced);
	return code;
}

/* Does n hold a chain of two steps or more? */
static bool has_chain(const pipeline_bound_node *n)
{
	if (n->kind == PIPELINE_CHAIN && n->n_children > 1)
		return true;
	for (size_t i = 0; i < n->n_children; i++)
		if (has_chain(&n->children[i]))
			return true;
	return (n->header && has_chain(n->header)) || (n->body && has_chain(n->body));
}

static int run_main(const cli_globals *g, const pipeline_cmd *cmd)
{
	int code = need_config(g, "run");
	if (code)
		return code;
	/* Inputs are bound (and refused) before any connection is tried. */
	warren_config *cfg = NULL;
	warren_client *c = NULL;
	warren_error err = {0};
	pipeline_bound *bound = NULL;
	producer_pipeline_run *run = NULL;
	const pipeline_def *def;
	int rc = config_load(g->config, &cfg, &err);
	if (!rc)
		rc = config_apply_env(cfg, getenv, &err);
	if (rc) {
		code = cli_fail(rc, &err);
		goto out_cfg;
	}
	if ((code = find(cfg, cmd->target, &def)))
		goto out_cfg;
	if ((rc = pipeline_bind(def, cmd->keys, cmd->values, cmd->n_sets, &bound, &err))) {
		if (strncmp(err.msg, "pipeline '", 10))
			fprintf(stderr, "warren: pipeline '%s': %s\n", def->name, err.msg);
		else
			fprintf(stderr, "warren: %s\n", err.msg);
		code = rc == WARREN_ENOMEM ? CLI_SOFTWARE : CLI_DATAERR;
		goto out_cfg;
	}
	/* The environment may have replaced the result backend since loading. */
	if (!g->result_backend && (rc = config_pipeline_check_backend(cfg, &err))) {
		code = cli_fail(rc, &err);
		goto out_bound;
	}
	if ((code = cli_client(g, &c)))
		goto out_bound;
	if (cmd->wait && !c->backend_url) {
		code = cli_usage_error("pipeline run --wait: needs a result backend "
				       "(result_backend in the config, or --result-backend)");
		goto out_bound;
	}
	/* rpc:// results go to the reply queue of whoever sent the task: a
	 * chain's later steps are sent by workers, so their results never come
	 * here (Celery's rpc backend has the same limit). Say so up front. */
	if (cmd->wait && producer_backend_is_rpc(c) && has_chain(bound->root)) {
		code = cli_usage_error("pipeline '%s': --wait over rpc:// cannot follow a chain (its "
				       "later steps report to the workers that send them); use a "
				       "redis:// result backend", def->name);
		goto out_bound;
	}
	/* An unreachable broker or backend fails before anything is sent. */
	if ((rc = warren_client_connect(c, c->backend_url != NULL, &err)) ||
	    (rc = producer_pipeline_start(c, bound, cmd->queue, &run, &err))) {
		code = cli_fail(rc, &err);
		goto out_bound;
	}
	if (backend_record_supported(c->backend_url)) {
		if ((rc = producer_pipeline_record_put(c, run, &err)))
			fprintf(stderr, "warren: warning: run %s: no run record: %s\n", run->id,
				err.msg);
	} else if (!cmd->wait) {
		fprintf(stderr, "warren: note: `pipeline status` needs a redis result backend; "
			"this run has no record\n");
	}
	if (!cmd->wait) {
		if (cmd->json)
			printf("{\"id\":\"%s\",\"pipeline\":\"%s\",\"total\":%zu}\n", run->id,
			       run->pipeline, run->n_steps);
		else
			printf("%s\n", run->id);
		code = CLI_OK;
	} else {
		fprintf(stderr, "warren: pipeline '%s' run %s: %zu tasks\n", run->pipeline, run->id,
			run->n_steps);
		code = wait_run(c, run, cmd);
	}
	producer_pipeline_run_free(run);
out_bound:
	warren_client_free(c);
	pipeline_bound_free(bound);
out_cfg:
	config_free(cfg);
	return code;
}

/* ---- status ---- */

static void print_status_text(const producer_pipeline_run *run, warren_result *const *res)
{
	char when[32];
	cli_format_time(run->started, when);
	printf("pipeline %s  run %s\n", run->pipeline, run->id);
	printf("started  %s\n", when);
	printf("inputs   %s\n", run->inputs_json ? run->inputs_json : "{}");
	printf("done     %zu/%zu", count_done(run, res), run->n_steps);
	if (run->n_untracked)
		printf(" (and %zu with ignore_result, not followed)", run->n_untracked);
	putchar('\n');
	cli_table t = {.n_cols = 4, .head = {"STATE", "STEP", "TASK", "ID"}};
	for (size_t i = 0; i < run->n_steps; i++) {
		const char *cells[] = {warren_state_name(res[i] ? warren_result_state(res[i])
							     : WARREN_STATE_PENDING),
				       run->steps[i].node, run->steps[i].task, run->steps[i].task_id};
		cli_table_add(&t, cells);
	}
	cli_table_print(&t);
}

static void print_status_json(const producer_pipeline_run *run, warren_result *const *res,
			      int code)
{
	json_t *steps = json_array();
	for (size_t i = 0; steps && i < run->n_steps; i++) {
		warren_state st = res[i] ? warren_result_state(res[i]) : WARREN_STATE_PENDING;
		json_array_append_new(steps, json_pack("{s:s,s:s,s:s,s:s}", "id",
						       run->steps[i].task_id, "task",
						       run->steps[i].task, "node", run->steps[i].node,
						       "state", warren_state_name(st)));
	}
	char *result = NULL;
	if (code == CLI_OK)
		producer_pipeline_result_json(run, res, &result, NULL);
	json_t *o = json_pack("{s:s,s:s,s:f,s:s,s:I,s:I,s:o}", "id", run->id, "pipeline",
			      run->pipeline, "started", run->started, "state",
			      code == CLI_OK ? "SUCCESS" : code == CLI_TASK_FAILED ? "FAILURE"
										: "PENDING",
			      "done", (json_int_t)count_done(run, res), "total",
			      (json_int_t)run->n_steps, "steps", steps ? steps : json_array());
	print_with_raw(o, "inputs", run->inputs_json ? run->inputs_json : "{}", "result",
		       result);
	free(result);
	json_decref(o);
}

static int status_main(const cli_globals *g, const pipeline_cmd *cmd)
{
	warren_client *c = NULL;
	int code = cli_client(g, &c);
	if (code)
		return code;
	warren_error err = {0};
	producer_pipeline_run *run = NULL;
	warren_result **res = NULL;
	int rc = producer_pipeline_record_get(c, cmd->target, &run, &err);
	if (rc) {
		code = cli_fail(rc, &err);
		goto out_client;
	}
	if (!(res = calloc(run->n_steps ? run->n_steps : 1, sizeof *res))) {
		code = CLI_SOFTWARE;
		goto out_run;
	}
	if ((rc = producer_pipeline_peek(c, run, res, &err))) {
		code = cli_fail(rc, &err);
		goto out_res;
	}
	size_t failed = first_failed(run, res);
	code = failed < run->n_steps ? CLI_TASK_FAILED
	       : count_done(run, res) == run->n_steps ? CLI_OK : CLI_TIMEOUT;
	if (cmd->json) {
		print_status_json(run, res, code);
	} else {
		print_status_text(run, res);
		char *result = NULL;
		if (code == CLI_OK && !producer_pipeline_result_json(run, res, &result, NULL))
			printf("result   %s\n", result);
		else if (code == CLI_TASK_FAILED)
			print_outcome(run, res, false, false);
		else
			printf("result   not ready\n");
		free(result);
	}
out_res:
	for (size_t i = 0; res && i < run->n_steps; i++)
		warren_result_free(res[i]);
	free(res);
out_run:
	producer_pipeline_run_free(run);
out_client:
	warren_client_free(c);
	return code;
}

int cli_pipeline_main(const cli_globals *g, int argc, char **argv)
{
	pipeline_cmd cmd = {0};
	int code = parse(argc, argv, &cmd);
	if (code == 0) {
		if (!strcmp(cmd.action, "run"))
			code = run_main(g, &cmd);
		else if (!strcmp(cmd.action, "status"))
			code = status_main(g, &cmd);
		else
			code = list_or_show(g, &cmd);
	} else if (code < 0) {
		code = CLI_OK;
	}
	cmd_release(&cmd);
	return code;
}
