/* tests/unit/test_pipeline.c - config/pipeline*.c: YAML pipelines to the
 * model, every error's exact message and place, binding inputs to final
 * msgpack, the outline printer, pipelines_dir, and a large fan-out. */
#include <criterion/criterion.h>
#include <msgpack.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "config/config.h"

#define EXAMPLES WARREN_SOURCE_DIR "/config/examples/pipelines.yaml"
#define FIXTURE(name) WARREN_SOURCE_DIR "/tests/fixtures/pipelines/" name

/* The task schemas of the example plugins, and a backend that can join. */
#define PRELUDE                                                                  \
	"result_backend: redis://localhost:6379/0\n"                             \
	"tasks:\n"                                                               \
	"  math.add: {args: [{name: a, type: float}, {name: b, type: float}], "  \
	"result: float}\n"                                                       \
	"  math.sum: {args: [{name: numbers, type: list}], result: float}\n"     \
	"  text.wordcount: {args: [{name: s, type: str}], result: int}\n"        \
	"  text.upper: {args: [{name: s, type: str}], result: str}\n"            \
	"  test.echo: {extra_args: true, extra_kwargs: true}\n"
/* PRELUDE is 7 lines: pipelines start on line 8. */

static int load(const char *yaml, warren_config **cfg, warren_error *err)
{
	return config_load_string(yaml, strlen(yaml), "p.yaml", cfg, err);
}

static const char *load_error(const char *yaml)
{
	static warren_error err;
	warren_config *cfg = NULL;
	warren_error_clear(&err);
	int rc = load(yaml, &cfg, &err);
	cr_assert_eq(rc, WARREN_ECONFIG, "rc %d: %s", rc, err.msg);
	cr_assert_null(cfg);
	return err.msg;
}

static warren_config *load_ok(const char *yaml)
{
	warren_config *cfg = NULL;
	warren_error err = { 0 };
	cr_assert_eq(load(yaml, &cfg, &err), 0, "%s", err.msg);
	return cfg;
}

/* Packed msgpack as JSON text (static buffer). */
static const char *json(const void *mp, size_t len)
{
	static char text[4096];
	msgpack_unpacked u;
	msgpack_sbuffer buf;
	msgpack_unpacked_init(&u);
	msgpack_sbuffer_init(&buf);
	cr_assert_eq(msgpack_unpack_next(&u, mp, len, NULL), MSGPACK_UNPACK_SUCCESS);
	cr_assert_eq(config_pipeline_write_text(&buf, &u.data, 1, NULL), 0);
	snprintf(text, sizeof text, "%.*s", (int)buf.size, buf.data);
	msgpack_sbuffer_destroy(&buf);
	msgpack_unpacked_destroy(&u);
	return text;
}

static char *outline(const pipeline_def *def)
{
	char *text = NULL;
	size_t len = 0;
	FILE *out = open_memstream(&text, &len);
	cr_assert_not_null(out);
	pipeline_print(def, out);
	fclose(out);
	return text;
}

static pipeline_bound *bind_ok(const pipeline_def *def, const char *const *kv, size_t n)
{
	const char *keys[16], *values[16];
	for (size_t i = 0; i < n; i++) {
		keys[i] = kv[2 * i];
		values[i] = kv[2 * i + 1];
	}
	pipeline_bound *b = NULL;
	warren_error err = { 0 };
	cr_assert_eq(pipeline_bind(def, keys, values, n, &b, &err), 0, "%s", err.msg);
	return b;
}

static const char *bind_error(const pipeline_def *def, const char *const *kv, size_t n)
{
	static warren_error err;
	const char *keys[16], *values[16];
	for (size_t i = 0; i < n; i++) {
		keys[i] = kv[2 * i];
		values[i] = kv[2 * i + 1];
	}
	pipeline_bound *b = NULL;
	warren_error_clear(&err);
	cr_assert_eq(pipeline_bind(def, keys, values, n, &b, &err), WARREN_ECONFIG, "%s", err.msg);
	cr_assert_null(b);
	return err.msg;
}

/* ---- the examples ---- */

Test(pipeline, examples_load_with_every_kind)
{
	warren_config *cfg = NULL;
	warren_error err = { 0 };
	cr_assert_eq(config_load(EXAMPLES, &cfg, &err), 0, "%s", err.msg);
	cr_assert_eq(cfg->n_pipelines, 5);

	const pipeline_def *a = config_pipeline_find(cfg, "arithmetic");
	cr_assert_not_null(a);
	cr_assert_eq(a->n_inputs, 4);
	cr_assert_eq(a->run->kind, PIPELINE_CHAIN);
	cr_assert_eq(a->run->n_children, 3);
	cr_assert_str_eq(a->run->children[1]->task, "math.mul");
	cr_assert_eq(a->run->children[0]->args.n_refs, 2);

	const pipeline_def *w = config_pipeline_find(cfg, "wordcount");
	cr_assert_eq(w->run->kind, PIPELINE_CHORD);
	cr_assert_eq(w->run->header->kind, PIPELINE_MAP);
	cr_assert_str_eq(w->run->header->task, "text.wordcount");
	cr_assert_str_eq(w->run->body->task, "math.sum");
	cr_assert(w->n_inputs == 1 && w->inputs[0].required);
	cr_assert_eq(w->inputs[0].type, WARREN_TYPE_LIST);

	const pipeline_def *f = config_pipeline_find(cfg, "wordcount_fixed");
	cr_assert_eq(f->run->header->kind, PIPELINE_GROUP);
	cr_assert_eq(f->run->n_children, 3);
	cr_assert_str_eq(f->run->body->options.queue, "celery");

	const pipeline_def *s = config_pipeline_find(cfg, "shout");
	cr_assert_eq(s->run->kind, PIPELINE_MAP);
	cr_assert_eq(s->run->options.set, PIPELINE_OPT_TIME_LIMIT);
	cr_assert_null(config_pipeline_find(cfg, "nope"));
	config_free(cfg);
}

Test(pipeline, example_outline_reads_as_a_tree)
{
	warren_config *cfg = NULL;
	warren_error err = { 0 };
	cr_assert_eq(config_load(EXAMPLES, &cfg, &err), 0, "%s", err.msg);
	char *text = outline(config_pipeline_find(cfg, "wordcount_fixed"));
	cr_assert_str_eq(text, "pipeline wordcount_fixed (" EXAMPLES ":85:3)\n"
			       "  the words of three fixed texts, counted in parallel and added\n"
			       "run:\n"
			       "  chord\n"
			       "    header: group of 3 × text.wordcount(...)\n"
			       "    body: math.sum [queue=celery]\n");
	free(text);
	text = outline(config_pipeline_find(cfg, "arithmetic"));
	cr_assert_str_eq(text, "pipeline arithmetic (" EXAMPLES ":54:3)\n"
			       "  add, multiply, add again\n"
			       "inputs:\n"
			       "  x: float = 2.0\n"
			       "  y: float = 3.0\n"
			       "  factor: float = 10.0 - what the sum is multiplied by\n"
			       "  offset: float = 1.0\n"
			       "run:\n"
			       "  chain of 3\n"
			       "    1. math.add($input.x, $input.y)\n"
			       "    2. math.mul($input.factor)\n"
			       "    3. math.add($input.offset)\n");
	free(text);
	text = outline(config_pipeline_find(cfg, "report"));
	cr_assert_not_null(strstr(text, "    4. test.sleep($input.pause) [time_limit=10s, "
					"soft_time_limit=5s, immutable=true]\n"), "%s", text);
	cr_assert_not_null(strstr(text, "    5. test.echo(greeting=\"hello ${input.who}, this cost "
					"$$0\") [countdown=1s, max_retries=2]\n"), "%s", text);
	free(text);
	text = outline(config_pipeline_find(cfg, "wordcount"));
	cr_assert_not_null(strstr(text, "  texts: list, required - the texts to count, as a JSON "
					"list\n"), "%s", text);
	cr_assert_not_null(strstr(text, "    header: map text.wordcount over $input.texts\n"
					"    body: math.sum\n"), "%s", text);
	free(text);
	config_free(cfg);
}

Test(pipeline, describe_lists_pipelines)
{
	warren_config *cfg = NULL;
	warren_error err = { 0 };
	cr_assert_eq(config_load(EXAMPLES, &cfg, &err), 0, "%s", err.msg);
	char *text = NULL;
	size_t len = 0;
	FILE *out = open_memstream(&text, &len);
	config_describe(cfg, out);
	fclose(out);
	cr_assert_not_null(strstr(text, "pipelines: 5\n  arithmetic(x?, y?, factor?, offset?) - add, "
					"multiply, add again\n  wordcount(texts) - "), "%s", text);
	free(text);
	config_free(cfg);
}

Test(pipeline, every_out_of_memory_path_fails_cleanly)
{
	FILE *f = fopen(EXAMPLES, "rb");
	cr_assert_not_null(f);
	static char text[65536];
	size_t len = fread(text, 1, sizeof text, f);
	fclose(f);
	long n;
	for (n = 0; n < 100000; n++) {
		warren_config *cfg = NULL;
		warren_error err = { 0 };
		config_arena_fail_after(n);
		int rc = config_load_string(text, len, "pipelines.yaml", &cfg, &err);
		config_arena_fail_after(-1);
		if (rc == 0) {
			config_free(cfg);
			break;
		}
		cr_assert_eq(rc, WARREN_ENOMEM, "allocation %ld: rc %d: %s", n, rc, err.msg);
		cr_assert_null(cfg);
	}
	cr_assert_lt(n, 100000);
}

Test(pipeline, binding_out_of_memory_fails_cleanly)
{
	warren_config *cfg = NULL;
	warren_error err = { 0 };
	cr_assert_eq(config_load(EXAMPLES, &cfg, &err), 0, "%s", err.msg);
	const pipeline_def *def = config_pipeline_find(cfg, "report");
	long n;
	for (n = 0; n < 1000; n++) {
		pipeline_bound *b = NULL;
		warren_error_clear(&err);
		config_arena_fail_after(n);
		int rc = pipeline_bind(def, NULL, NULL, 0, &b, &err);
		config_arena_fail_after(-1);
		if (rc == 0) {
			pipeline_bound_free(b);
			break;
		}
		cr_assert_eq(rc, WARREN_ENOMEM, "allocation %ld: %s", n, err.msg);
		cr_assert_null(b);
	}
	cr_assert_lt(n, 1000);
	config_free(cfg);
}

/* ---- structure errors ---- */

Test(pipeline, unknown_node_key_is_refused_with_a_hint)
{
	cr_assert_str_eq(load_error(PRELUDE "pipelines:\n  p:\n    run:\n"
					    "      task: math.add\n      agrs: [1, 2]\n"),
			 "p.yaml:12:7: pipelines.p.run.agrs: unknown key; did you mean 'args'?");
}

Test(pipeline, unknown_pipeline_key_is_refused_with_a_hint)
{
	cr_assert_str_eq(load_error(PRELUDE "pipelines:\n  p:\n    descripton: x\n"
					    "    run: math.sum\n"),
			 "p.yaml:10:5: pipelines.p.descripton: unknown key; did you mean "
			 "'description'?");
}

Test(pipeline, node_with_two_kinds_is_refused)
{
	cr_assert_str_eq(load_error(PRELUDE "pipelines:\n  p:\n    run:\n"
					    "      chain: [math.sum]\n      group: [math.sum]\n"),
			 "p.yaml:12:7: pipelines.p.run.group: a node has one kind, this one has "
			 "both 'chain' and 'group'");
}

Test(pipeline, node_without_kind_is_refused)
{
	cr_assert_str_eq(load_error(PRELUDE "pipelines:\n  p:\n    run: {queue: q}\n"),
			 "p.yaml:10:10: pipelines.p.run: a node needs one of task, chain, group, "
			 "chord or map");
	cr_assert_str_eq(load_error(PRELUDE "pipelines:\n  p:\n    run: [math.sum]\n"),
			 "p.yaml:10:10: pipelines.p.run: expected a task name or a mapping with "
			 "one of task, chain, group, chord or map, got a sequence");
	cr_assert_str_eq(load_error(PRELUDE "pipelines:\n  p:\n    description: nothing\n"),
			 "p.yaml:10:5: pipelines.p: a pipeline needs run (or one of task, chain, "
			 "group, chord or map)");
}

Test(pipeline, empty_chain_and_group_are_refused)
{
	cr_assert_str_eq(load_error(PRELUDE "pipelines:\n  p:\n    run: {chain: []}\n"),
			 "p.yaml:10:18: pipelines.p.run.chain: an empty chain: expected at least "
			 "one node");
	cr_assert_str_eq(load_error(PRELUDE "pipelines:\n  p:\n    group: []\n"),
			 "p.yaml:10:12: pipelines.p.group: an empty group: expected at least one "
			 "node");
	cr_assert_str_eq(load_error(PRELUDE "pipelines:\n  p:\n    chain: math.sum\n"),
			 "p.yaml:10:12: pipelines.p.chain: expected a sequence of nodes, got "
			 "\"math.sum\"");
}

Test(pipeline, chord_without_body_or_header_is_refused)
{
	cr_assert_str_eq(load_error(PRELUDE "pipelines:\n  p:\n    chord:\n"
					    "      header: [math.sum]\n"),
			 "p.yaml:11:7: pipelines.p.chord: a chord needs a body");
	cr_assert_str_eq(load_error(PRELUDE "pipelines:\n  p:\n    chord: {body: math.sum}\n"),
			 "p.yaml:10:12: pipelines.p.chord: a chord needs a header");
	cr_assert_str_eq(load_error(PRELUDE "pipelines:\n  p:\n    chord:\n"
					    "      header: math.sum\n      body: math.sum\n"),
			 "p.yaml:11:15: pipelines.p.chord.header: expected a sequence of nodes, "
			 "a group or a map");
	cr_assert_str_eq(load_error(PRELUDE "pipelines:\n  p:\n    chord:\n"
					    "      header: []\n      body: math.sum\n"),
			 "p.yaml:11:15: pipelines.p.chord.header: an empty chord header: expected "
			 "at least one node");
	cr_assert_str_eq(load_error(PRELUDE "pipelines:\n  p:\n    chord:\n"
					    "      heder: []\n      body: math.sum\n"),
			 "p.yaml:11:7: pipelines.p.chord.heder: unknown key; did you mean 'header'?");
}

Test(pipeline, args_on_a_composite_and_bad_shapes_are_refused)
{
	cr_assert_str_eq(load_error(PRELUDE "pipelines:\n  p:\n    group: [math.sum]\n"
					    "    args: [1]\n"),
			 "p.yaml:11:5: pipelines.p.args: args belongs to a task node, not a group");
	cr_assert_str_eq(load_error(PRELUDE "pipelines:\n  p:\n    task: test.echo\n"
					    "    args: 1\n"),
			 "p.yaml:11:11: pipelines.p.args: expected a sequence of arguments, got "
			 "\"1\"");
	cr_assert_str_eq(load_error(PRELUDE "pipelines:\n  p:\n    task: test.echo\n"
					    "    kwargs: [1]\n"),
			 "p.yaml:11:13: pipelines.p.kwargs: expected a mapping of keyword "
			 "arguments, got a sequence");
	cr_assert_str_eq(load_error(PRELUDE "pipelines:\n  p:\n    run: 42\n"),
			 "p.yaml:10:10: pipelines.p.run: expected a task name or a mapping with "
			 "one of task, chain, group, chord or map, got \"42\"");
}

Test(pipeline, bad_options_are_refused)
{
	cr_assert_str_eq(load_error(PRELUDE "pipelines:\n  p:\n    task: test.echo\n"
					    "    priority: 300\n"),
			 "p.yaml:11:15: pipelines.p.priority: expected an integer from 0 to 255, "
			 "got \"300\"");
	cr_assert_str_eq(load_error(PRELUDE "pipelines:\n  p:\n    task: test.echo\n"
					    "    time_limit: 5\n    soft_time_limit: 9\n"),
			 "p.yaml:12:22: pipelines.p.soft_time_limit: must not exceed time_limit "
			 "(5 s), got 9 s");
	cr_assert_str_eq(load_error(PRELUDE "pipelines:\n  p:\n    task: test.echo\n"
					    "    countdown: soon\n"),
			 "p.yaml:11:16: pipelines.p.countdown: expected a non-negative number of "
			 "seconds, got \"soon\"");
}

/* ---- tasks and schemas ---- */

Test(pipeline, unknown_task_is_refused_with_a_hint)
{
	cr_assert_str_eq(load_error(PRELUDE "pipelines:\n  wordcount:\n    run:\n"
					    "      chord:\n"
					    "        header: [{task: text.wordcount, args: [a]}]\n"
					    "        body: {task: math.summ}\n"),
			 "p.yaml:13:22: pipelines.wordcount.run.chord.body.task: unknown task "
			 "'math.summ'; did you mean 'math.sum'?");
	cr_assert_str_eq(load_error(PRELUDE "pipelines:\n  p:\n    chain: [feeds.fetch]\n"),
			 "p.yaml:10:13: pipelines.p.chain[0]: unknown task 'feeds.fetch'");
}

Test(pipeline, task_names_are_free_without_schemas)
{
	warren_config *cfg = load_ok("result_backend: rpc://\n"
				     "pipelines:\n  p:\n    chain: [any.thing, {task: other, "
				     "args: [1, 2, 3]}]\n");
	cr_assert_eq(cfg->n_pipelines, 1);
	config_free(cfg);
}

Test(pipeline, registry_names_are_checked_on_demand)
{
	warren_config *cfg = load_ok("pipelines:\n  p:\n    chain:\n      - math.add\n"
				     "      - {map: {task: text.uper, over: [a]}}\n");
	const char *known[] = { "text.upper", "math.add", "math.sum" };
	warren_error err = { 0 };
	cr_assert_eq(config_pipeline_check_tasks(cfg, known, 3, &err), WARREN_ECONFIG);
	cr_assert_str_eq(err.msg, "p.yaml:5:22: pipelines.p.chain[1].map.task: unknown task "
				  "'text.uper'; did you mean 'text.upper'?");
	warren_error_clear(&err);
	const char *all[] = { "text.uper", "math.add" };
	cr_assert_eq(config_pipeline_check_tasks(cfg, all, 2, &err), 0, "%s", err.msg);
	config_free(cfg);
}

Test(pipeline, too_many_arguments_are_refused)
{
	cr_assert_str_eq(load_error(PRELUDE "pipelines:\n  p:\n    task: math.add\n"
					    "    args: [1, 2, 3]\n"),
			 "p.yaml:11:18: pipelines.p.args[2]: math.add takes 2 arguments, got 3");
	cr_assert_str_eq(load_error(PRELUDE "pipelines:\n  p:\n    chain:\n"
					    "      - {task: math.add, args: [1, 2]}\n"
					    "      - {task: math.add, args: [1, 2]}\n"),
			 "p.yaml:12:36: pipelines.p.chain[1].args[1]: math.add takes 2 "
			 "arguments, got 3 (one is the previous step's result)");
	cr_assert_str_eq(load_error(PRELUDE "pipelines:\n  p:\n    map: {task: math.add, over: "
					    "[1]}\n"),
			 "p.yaml:10:17: pipelines.p.map.task: math.add: missing required "
			 "argument 'b'");
}

Test(pipeline, missing_and_doubled_arguments_are_refused)
{
	cr_assert_str_eq(load_error(PRELUDE "pipelines:\n  p:\n    run: {task: math.add, "
					    "args: [1]}\n"),
			 "p.yaml:10:10: pipelines.p.run: math.add: missing required argument 'b'");
	cr_assert_str_eq(load_error(PRELUDE "pipelines:\n  p:\n    run: math.sum\n"),
			 "p.yaml:10:10: pipelines.p.run: math.sum: missing required argument "
			 "'numbers'");
	cr_assert_str_eq(load_error(PRELUDE "pipelines:\n  p:\n    task: math.add\n"
					    "    args: [1]\n    kwargs: {a: 2}\n"),
			 "p.yaml:12:14: pipelines.p.kwargs.a: math.add: argument 'a' given twice, "
			 "by position and by name");
	cr_assert_str_eq(load_error(PRELUDE "pipelines:\n  p:\n    task: math.add\n"
					    "    kwargs: {a: 2, bb: 3}\n"),
			 "p.yaml:11:20: pipelines.p.kwargs.bb: math.add has no parameter 'bb'; "
			 "did you mean 'b'?");
}

Test(pipeline, argument_types_are_checked)
{
	cr_assert_str_eq(load_error(PRELUDE "pipelines:\n  p:\n    task: math.add\n"
					    "    args: [1, \"2\"]\n"),
			 "p.yaml:11:15: pipelines.p.args[1]: math.add: argument 'b' expects "
			 "float, got str \"2\"");
	cr_assert_str_eq(load_error(PRELUDE "pipelines:\n  p:\n    inputs: {word: str}\n"
					    "    task: math.add\n    kwargs: {a: 1, b: $input.word}\n"),
			 "p.yaml:12:23: pipelines.p.kwargs.b: math.add: argument 'b' expects "
			 "float, got $input.word (str)");
	cr_assert_str_eq(load_error(PRELUDE "pipelines:\n  p:\n    chain:\n"
					    "      - {task: text.upper, args: [a]}\n"
					    "      - math.sum\n"),
			 "p.yaml:12:9: pipelines.p.chain[1]: math.sum: argument 'numbers' expects "
			 "list, but the previous step returns str");
	/* an int is a fine float; a group's result is a list */
	warren_config *cfg = load_ok(PRELUDE "pipelines:\n  p:\n    chain:\n"
					     "      - group: [{task: text.wordcount, args: [a]}]\n"
					     "      - math.sum\n"
					     "      - {task: math.add, args: [1]}\n");
	config_free(cfg);
}

/* ---- inputs ---- */

Test(pipeline, unknown_input_references_are_refused_with_place)
{
	cr_assert_str_eq(load_error(PRELUDE "pipelines:\n  p:\n    inputs: {url: str}\n"
					    "    task: test.echo\n    args: [1, [$input.urll]]\n"),
			 "p.yaml:12:16: pipelines.p.args[1][0]: unknown input 'urll'; did you mean "
			 "'url'?");
	cr_assert_str_eq(load_error(PRELUDE "pipelines:\n  p:\n    task: test.echo\n"
					    "    kwargs: {s: \"see ${input.url}\"}\n"),
			 "p.yaml:11:17: pipelines.p.kwargs.s: unknown input 'url': the pipeline "
			 "declares no inputs");
	cr_assert_str_eq(load_error(PRELUDE "pipelines:\n  p:\n    inputs: {url: str}\n"
					    "    task: test.echo\n    args: [$input.url/x]\n"),
			 "p.yaml:12:12: pipelines.p.args[0]: '$input.url' inside a string: write "
			 "${input.url} to interpolate, or $$ for a literal '$'");
	cr_assert_str_eq(load_error(PRELUDE "pipelines:\n  p:\n    task: test.echo\n"
					    "    args: [\"${url}\"]\n"),
			 "p.yaml:11:12: pipelines.p.args[0]: expected ${input.NAME} after '${', or "
			 "$$ for a literal '$'");
}

Test(pipeline, input_defaults_of_the_wrong_type_are_refused)
{
	cr_assert_str_eq(load_error(PRELUDE "pipelines:\n  p:\n    inputs:\n"
					    "      n: {type: int, default: \"3\"}\n    run: test.echo\n"),
			 "p.yaml:11:31: pipelines.p.inputs.n.default: expected a value of type int, "
			 "got str \"3\"");
	cr_assert_str_eq(load_error(PRELUDE "pipelines:\n  p:\n    inputs:\n"
					    "      n: {type: list, default: {a: 1}}\n    run: test.echo\n"),
			 "p.yaml:11:32: pipelines.p.inputs.n.default: expected a value of type "
			 "list, got a mapping");
	cr_assert_str_eq(load_error(PRELUDE "pipelines:\n  p:\n    inputs:\n"
					    "      n: {type: integer}\n    run: test.echo\n"),
			 "p.yaml:11:17: pipelines.p.inputs.n.type: expected a type: int, float, "
			 "str, bytes, bool, list, map or any, got \"integer\"");
	cr_assert_str_eq(load_error(PRELUDE "pipelines:\n  p:\n    inputs:\n"
					    "      2n: int\n    run: test.echo\n"),
			 "p.yaml:11:7: pipelines.p.inputs.2n: an input name is letters, digits and "
			 "'_', not starting with a digit");
}

Test(pipeline, map_over_a_non_list_is_refused)
{
	cr_assert_str_eq(load_error(PRELUDE "pipelines:\n  p:\n    inputs: {n: int}\n"
					    "    map: {task: text.upper, over: $input.n}\n"),
			 "p.yaml:11:35: pipelines.p.map.over: a map goes over a list, and input 'n' "
			 "is int");
	cr_assert_str_eq(load_error(PRELUDE "pipelines:\n  p:\n"
					    "    map: {task: math.add, over: [[1, 2], 3], starmap: true}\n"),
			 "p.yaml:10:42: pipelines.p.map.over[1]: expected a list of arguments "
			 "(starmap), got \"3\"");
	cr_assert_str_eq(load_error(PRELUDE "pipelines:\n  p:\n    map: {task: text.upper}\n"),
			 "p.yaml:10:10: pipelines.p.map: a map needs over");
}

/* ---- chords and the result backend ---- */

Test(pipeline, chord_over_rpc_is_refused_with_place)
{
	cr_assert_str_eq(load_error("result_backend: rpc://\n"
				    "pipelines:\n  p:\n    run:\n      chord:\n"
				    "        header: [a, b]\n        body: c\n"),
			 "p.yaml:5:7: pipelines.p.run.chord: a chord needs a result backend that "
			 "can join (redis); result_backend is rpc://");
	cr_assert_str_eq(load_error("pipelines:\n  p:\n    group:\n"
				    "      - chord: {header: [a], body: b}\n"),
			 "p.yaml:4:9: pipelines.p.group[0].chord: a chord needs a result backend "
			 "that can join (redis); result_backend is none");
}

static char *fake_env(const char *name)
{
	return !strcmp(name, "WARREN_RESULT_BACKEND") ? "rpc://" : NULL;
}

Test(pipeline, chord_is_checked_again_after_env_overrides)
{
	warren_config *cfg = load_ok("result_backend: redis://r:6379/0\n"
				     "pipelines:\n  p:\n    chain:\n      - a\n"
				     "      - chord: {header: [a], body: b}\n");
	warren_error err = { 0 };
	cr_assert_eq(config_pipeline_check_backend(cfg, &err), 0, "%s", err.msg);
	cr_assert_eq(config_apply_env(cfg, fake_env, &err), 0, "%s", err.msg);
	cr_assert_eq(config_pipeline_check_backend(cfg, &err), WARREN_ECONFIG);
	cr_assert_str_eq(err.msg, "p.yaml:6:9: pipelines.p.chain[1].chord: a chord needs a result "
				  "backend that can join (redis); result_backend is rpc://");
	config_free(cfg);
}

/* ---- pipelines_dir ---- */

Test(pipeline, pipelines_dir_adds_files_in_name_order)
{
	warren_config *cfg = NULL;
	warren_error err = { 0 };
	cr_assert_eq(config_load(FIXTURE("main.yaml"), &cfg, &err), 0, "%s", err.msg);
	cr_assert_str_eq(cfg->pipelines_dir, FIXTURE("dir"));
	cr_assert_eq(cfg->n_pipelines, 3);
	cr_assert_str_eq(cfg->pipeline_defs[0].name, "inline");
	cr_assert_str_eq(cfg->pipeline_defs[1].name, "from_a");
	cr_assert_str_eq(cfg->pipeline_defs[1].file, FIXTURE("dir/a.yaml"));
	cr_assert_str_eq(cfg->pipeline_defs[2].name, "from_b");
	config_free(cfg);
}

Test(pipeline, name_defined_twice_names_both_places)
{
	warren_config *cfg = NULL;
	warren_error err = { 0 };
	cr_assert_eq(config_load(FIXTURE("twice.yaml"), &cfg, &err), WARREN_ECONFIG);
	cr_assert_str_eq(err.msg, FIXTURE("dir/a.yaml") ":3:3: pipelines.from_a: pipeline defined "
			 "twice (first at " FIXTURE("twice.yaml") ":4:3)");
}

Test(pipeline, pipelines_dir_errors_name_the_file)
{
	cr_assert_str_eq(load_error("pipelines_dir: no/such/folder\n"),
			 "p.yaml:1:16: pipelines_dir: cannot open folder 'no/such/folder': No such "
			 "file or directory");
	warren_config *cfg = NULL;
	warren_error err = { 0 };
	cr_assert_eq(config_load(FIXTURE("bad_dir.yaml"), &cfg, &err), WARREN_ECONFIG);
	cr_assert_str_eq(err.msg, FIXTURE("bad/x.yaml") ":1:1: pipeline: unknown key; did you "
			 "mean 'pipelines'?");
	warren_error_clear(&err);
	cr_assert_eq(config_load(FIXTURE("bad_dir2.yaml"), &cfg, &err), WARREN_ECONFIG);
	cr_assert_str_eq(err.msg, FIXTURE("bad2/y.yaml") ":3:12: pipelines.p.chain: an empty "
			 "chain: expected at least one node");
}

/* ---- binding ---- */

Test(pipeline, binding_applies_defaults_and_given_values)
{
	warren_config *cfg = NULL;
	warren_error err = { 0 };
	cr_assert_eq(config_load(EXAMPLES, &cfg, &err), 0, "%s", err.msg);
	const char *kv[] = { "x", "4", "offset", "-0.5" };
	pipeline_bound *b = bind_ok(config_pipeline_find(cfg, "arithmetic"), kv, 2);
	const pipeline_bound_node *r = b->root;
	cr_assert_eq(r->kind, PIPELINE_CHAIN);
	cr_assert_eq(r->n_children, 3);
	cr_assert_eq(b->n_tasks, 3);
	cr_assert_str_eq(r->children[0].task, "math.add");
	cr_assert_str_eq(json(r->children[0].args_mp, r->children[0].args_len), "[4.0, 3.0]");
	cr_assert_str_eq(json(r->children[0].kwargs_mp, r->children[0].kwargs_len), "{}");
	cr_assert_str_eq(json(r->children[1].args_mp, r->children[1].args_len), "[10.0]");
	cr_assert_str_eq(json(r->children[2].args_mp, r->children[2].args_len), "[-0.5]");
	cr_assert_str_eq(json(b->inputs_mp, b->inputs_len),
			 "{\"x\": 4.0, \"y\": 3.0, \"factor\": 10.0, \"offset\": -0.5}");
	pipeline_bound_free(b);
	config_free(cfg);
}

Test(pipeline, binding_refuses_missing_unknown_and_mistyped_inputs)
{
	warren_config *cfg = NULL;
	warren_error err = { 0 };
	cr_assert_eq(config_load(EXAMPLES, &cfg, &err), 0, "%s", err.msg);
	const pipeline_def *w = config_pipeline_find(cfg, "wordcount");
	const pipeline_def *a = config_pipeline_find(cfg, "arithmetic");
	cr_assert_str_eq(bind_error(w, NULL, 0),
			 "pipeline 'wordcount': missing required input 'texts' (list)");
	const char *bad_list[] = { "texts", "abc" };
	cr_assert_str_eq(bind_error(w, bad_list, 1), "input 'texts': expected list, got \"abc\"");
	const char *bad_json[] = { "texts", "[1, 2" };
	cr_assert_str_eq(bind_error(w, bad_json, 1), "input 'texts': expected list, got \"[1, 2\"");
	const char *a_map[] = { "texts", "{\"a\": 1}" };
	cr_assert_str_eq(bind_error(w, a_map, 1),
			 "input 'texts': expected list, got \"{\"a\": 1}\"");
	const char *typo[] = { "txts", "[]" };
	cr_assert_str_eq(bind_error(w, typo, 1),
			 "pipeline 'wordcount' has no input 'txts'; did you mean 'texts'?");
	const char *twice[] = { "x", "1", "x", "2" };
	cr_assert_str_eq(bind_error(a, twice, 2), "input 'x' given twice");
	const char *nan[] = { "x", "two" };
	cr_assert_str_eq(bind_error(a, nan, 1), "input 'x': expected float, got \"two\"");
	config_free(cfg);
}

Test(pipeline, values_are_read_by_their_declared_type)
{
	warren_config *cfg = load_ok(
		"pipelines:\n  p:\n    inputs:\n"
		"      i: int\n      f: float\n      b: bool\n      s: str\n      y: bytes\n"
		"      l: list\n      m: map\n      a1: any\n      a2: any\n      a3: any\n"
		"    task: t\n"
		"    args: [$input.i, $input.f, $input.b, $input.s, $input.l, $input.m, $input.a1, "
		"$input.a2, $input.a3]\n");
	const char *kv[] = { "i", "0x10", "f", "2", "b", "yes", "s", "42", "y", "raw",
			     "l", "[1, \"two\", 3.5, null, true]", "m", "{\"k\": [1]}",
			     "a1", "17", "a2", "hello world", "a3", "\"quoted\"" };
	pipeline_bound *b = bind_ok(config_pipeline_find(cfg, "p"), kv, 10);
	cr_assert_str_eq(json(b->root->args_mp, b->root->args_len),
			 "[16, 2.0, true, \"42\", [1, \"two\", 3.5, null, true], {\"k\": [1]}, 17, "
			 "\"hello world\", \"quoted\"]");
	pipeline_bound_free(b);
	const char *bad_int[] = { "i", "1.5", "f", "1", "b", "1", "s", "", "y", "", "l", "[]",
				  "m", "{}", "a1", "1", "a2", "1", "a3", "1" };
	cr_assert_str_eq(bind_error(config_pipeline_find(cfg, "p"), bad_int, 10),
			 "input 'i': expected int, got \"1.5\"");
	const char *bad_bool[] = { "i", "1", "f", "1", "b", "maybe" };
	cr_assert_str_eq(bind_error(config_pipeline_find(cfg, "p"), bad_bool, 3),
			 "input 'b': expected bool, got \"maybe\"");
	config_free(cfg);
}

Test(pipeline, input_references_keep_types_in_nested_lists_and_maps)
{
	warren_config *cfg = load_ok(
		"pipelines:\n  p:\n    inputs:\n      n: {type: int, default: 5}\n"
		"      flag: {type: bool, default: true}\n      tags: {type: list, default: [x]}\n"
		"      who: {type: str, default: ann}\n"
		"    task: t\n"
		"    args: [[$input.n, {k: $input.flag, t: $input.tags}], \"${input.n} items\"]\n"
		"    kwargs:\n      deep: {a: [[$input.who]]}\n"
		"      text: \"$$5 for ${input.who}: ${input.tags} $x\"\n"
		"      plain: \"cost: $$5\"\n      lit: \"$input\"\n");
	const pipeline_def *def = config_pipeline_find(cfg, "p");
	cr_assert_eq(def->run->args.n_refs, 4);
	cr_assert_eq(def->run->args.refs[0].whole, 1);
	cr_assert_eq(def->run->args.refs[0].line, 9);
	cr_assert_eq(def->run->args.refs[3].whole, 0);
	pipeline_bound *b = bind_ok(def, NULL, 0);
	cr_assert_str_eq(json(b->root->args_mp, b->root->args_len),
			 "[[5, {\"k\": true, \"t\": [\"x\"]}], \"5 items\"]");
	cr_assert_str_eq(json(b->root->kwargs_mp, b->root->kwargs_len),
			 "{\"deep\": {\"a\": [[\"ann\"]]}, \"text\": \"$5 for ann: [\\\"x\\\"] $x\", "
			 "\"plain\": \"cost: $5\", \"lit\": \"$input\"}");
	pipeline_bound_free(b);
	const char *kv[] = { "tags", "[1, {\"a\": null}]", "n", "-3" };
	b = bind_ok(def, kv, 2);
	cr_assert_str_eq(json(b->root->args_mp, b->root->args_len),
			 "[[-3, {\"k\": true, \"t\": [1, {\"a\": null}]}], \"-3 items\"]");
	pipeline_bound_free(b);
	config_free(cfg);
}

Test(pipeline, templates_without_references_are_final_at_load)
{
	warren_config *cfg = load_ok("pipelines:\n  p:\n    task: t\n    args: [1, \"a\"]\n");
	const pipeline_def *def = config_pipeline_find(cfg, "p");
	cr_assert_eq(def->run->args.n_refs, 0);
	pipeline_bound *b = bind_ok(def, NULL, 0);
	cr_assert_eq(b->root->args_mp, def->run->args.mp);
	cr_assert_str_eq(json(b->root->args_mp, b->root->args_len), "[1, \"a\"]");
	pipeline_bound_free(b);
	config_free(cfg);
}

Test(pipeline, map_binds_to_one_immutable_task_per_item)
{
	warren_config *cfg = NULL;
	warren_error err = { 0 };
	cr_assert_eq(config_load(EXAMPLES, &cfg, &err), 0, "%s", err.msg);
	const char *kv[] = { "texts", "[\"a b\", \"c\", \"d e f\"]" };
	pipeline_bound *b = bind_ok(config_pipeline_find(cfg, "wordcount"), kv, 1);
	const pipeline_bound_node *chord = b->root;
	cr_assert_eq(chord->kind, PIPELINE_CHORD);
	cr_assert_eq(chord->header->kind, PIPELINE_MAP);
	cr_assert_eq(chord->n_children, 3);
	cr_assert_eq(b->n_tasks, 4);
	cr_assert_str_eq(json(chord->header->items_mp, chord->header->items_len),
			 "[\"a b\", \"c\", \"d e f\"]");
	const pipeline_bound_node *t = &chord->children[2];
	cr_assert_str_eq(t->task, "text.wordcount");
	cr_assert_str_eq(json(t->args_mp, t->args_len), "[\"d e f\"]");
	cr_assert(t->options.immutable && (t->options.set & PIPELINE_OPT_IMMUTABLE));
	cr_assert_str_eq(chord->body->task, "math.sum");
	cr_assert_str_eq(json(chord->body->args_mp, chord->body->args_len), "[]");
	pipeline_bound_free(b);

	warren_config *star = load_ok("pipelines:\n  p:\n    inputs: {pairs: any}\n"
				      "    map: {task: t, over: $input.pairs, starmap: true}\n");
	const char *pairs[] = { "pairs", "[[1, 2], [3, 4]]" };
	b = bind_ok(config_pipeline_find(star, "p"), pairs, 1);
	cr_assert_str_eq(json(b->root->children[1].args_mp, b->root->children[1].args_len),
			 "[3, 4]");
	pipeline_bound_free(b);
	const char *not_pairs[] = { "pairs", "[[1, 2], 3]" };
	cr_assert_str_eq(bind_error(config_pipeline_find(star, "p"), not_pairs, 1),
			 "p.yaml:3:5: pipelines.p.map.over: expected a list of lists (starmap), "
			 "got 3");
	const char *scalar[] = { "pairs", "7" };
	cr_assert_str_eq(bind_error(config_pipeline_find(star, "p"), scalar, 1),
			 "p.yaml:3:5: pipelines.p.map.over: expected a list, got 7");
	config_free(star);
	config_free(cfg);
}

Test(pipeline, options_of_a_composite_are_its_members_defaults)
{
	warren_config *cfg = load_ok("pipelines:\n  p:\n    queue: slow\n    priority: 3\n"
				     "    chain:\n      - a\n      - {task: b, queue: fast}\n");
	pipeline_bound *b = bind_ok(config_pipeline_find(cfg, "p"), NULL, 0);
	const pipeline_bound_node *a = &b->root->children[0], *bb = &b->root->children[1];
	cr_assert_str_eq(a->options.queue, "slow");
	cr_assert_str_eq(bb->options.queue, "fast");
	cr_assert_eq(bb->options.priority, 3);
	cr_assert_eq(bb->options.set, PIPELINE_OPT_QUEUE | PIPELINE_OPT_PRIORITY);
	pipeline_bound_free(b);
	config_free(cfg);
}

/* ---- scale ---- */

Test(pipeline, ten_thousand_group_members_load_quickly)
{
	const size_t n = 10000;
	size_t cap = 4096 + n * 64;
	char *yaml = malloc(cap);
	cr_assert_not_null(yaml);
	size_t used = (size_t)snprintf(yaml, cap, "%s", PRELUDE "pipelines:\n  big:\n"
						"    inputs: {n: {type: str, default: x}}\n"
						"    chord:\n      header:\n");
	for (size_t i = 0; i < n; i++)
		used += (size_t)snprintf(yaml + used, cap - used,
					 "        - {task: text.wordcount, args: [$input.n]}\n");
	used += (size_t)snprintf(yaml + used, cap - used, "      body: math.sum\n");
	struct timespec t0, t1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	warren_config *cfg = NULL;
	warren_error err = { 0 };
	cr_assert_eq(config_load_string(yaml, used, "big.yaml", &cfg, &err), 0, "%s", err.msg);
	const pipeline_def *def = config_pipeline_find(cfg, "big");
	cr_assert_eq(def->run->n_children, n);
	cr_assert_eq(def->n_nodes, n + 3);
	pipeline_bound *b = bind_ok(def, NULL, 0);
	cr_assert_eq(b->n_tasks, n + 1);
	char *text = outline(def);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	double secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
	cr_assert_lt(secs, 2.0, "took %.3f s", secs);
	cr_assert_not_null(strstr(text, "header: group of 10000 × text.wordcount(...)"), "%s",
			   text);
	free(text);
	pipeline_bound_free(b);
	config_free(cfg);
	free(yaml);
}
