/* config/pipeline.c - the `pipelines` section: YAML canvas trees to pipeline_def.
 *
 *   pipelines:
 *     wordcount:
 *       description: count the words of each text, then add the counts
 *       inputs:
 *         texts: {type: list, description: the texts}
 *       run:
 *         chord:
 *           header: {map: {task: text.wordcount, over: $input.texts}}
 *           body: math.sum
 *
 * A node is a mapping with exactly one of task, chain, group, chord or map,
 * plus options (queue, countdown, ...); a bare string is a task without
 * args. `run:` may be left out when the pipeline's own mapping is the node
 * (`ingest: {chain: [...]}`). Every node is checked as it is read - keys,
 * inputs it refers to, task names and argument schemas, chords against the
 * result backend - so a pipeline that loads can be sent.
 *
 * Pipelines may also live in the *.yaml files of `pipelines_dir:` (see
 * pipeline_dir.c); a name defined twice is an error naming both places.
 */
#include <string.h>

#include "config.h"

static const char *const kind_keys[] = { "task", "chain", "group", "chord", "map", NULL };

static const char *const option_keys[] = {
	"queue",       "countdown",     "expires",  "time_limit", "soft_time_limit",
	"max_retries", "ignore_result", "priority", "immutable",  NULL,
};

/* Every key a node may have, for hints: kinds, args, kwargs, options. */
static const char *const node_keys[] = {
	"task",		 "chain",     "group",	     "chord",	"map",
	"args",		 "kwargs",    "queue",	     "countdown", "expires",
	"time_limit",	 "soft_time_limit", "max_retries", "ignore_result", "priority",
	"immutable",	 NULL,
};

/* The same for a pipeline whose mapping is its run node. */
static const char *const inline_keys[] = {
	"description",	 "inputs",    "task",	 "chain",
	"group",	 "chord",     "map",	     "args",	 "kwargs",
	"queue",	 "countdown", "expires",     "time_limit", "soft_time_limit",
	"max_retries",	 "ignore_result", "priority", "immutable", NULL,
};

static const char *const pipeline_keys[] = { "description", "inputs", "run", NULL };

/* What reading one pipeline needs besides the ctx. */
typedef struct reader {
	config_ctx *ctx;
	pipeline_def *def;
	const char *const *input_names; /* NULL-terminated */
} reader;

static int in_list(const char *word, const char *const *list)
{
	for (; *list; list++)
		if (!strcmp(word, *list))
			return 1;
	return 0;
}

static int parse_node(reader *r, const config_node *n, pipeline_incoming in,
		      const pipeline_options *outer, const char *const *extra_keys,
		      const pipeline_node **out, warren_type *result);

/* ---- options ---- */

static int get_max_retries(config_ctx *ctx, const config_node *v, int *out)
{
	if (v->kind == CONFIG_NODE_SCALAR && config_scalar_kind_of(v) == CONFIG_SCALAR_NULL) {
		*out = -1;
		return 0;
	}
	return config_get_int32(ctx, v, 0, 1 << 30, out);
}

static int parse_option(config_ctx *ctx, const char *key, const config_node *v,
			pipeline_options *o)
{
	unsigned bit = 0;
	int rc = 0;
	for (size_t i = 0; option_keys[i]; i++)
		if (!strcmp(key, option_keys[i]))
			bit = 1u << i;
	if (bit == PIPELINE_OPT_QUEUE)
		rc = config_get_string(ctx, v, &o->queue);
	else if (bit == PIPELINE_OPT_COUNTDOWN)
		rc = config_get_seconds(ctx, v, &o->countdown);
	else if (bit == PIPELINE_OPT_EXPIRES)
		rc = config_get_seconds(ctx, v, &o->expires);
	else if (bit == PIPELINE_OPT_TIME_LIMIT)
		rc = config_get_seconds(ctx, v, &o->time_limit);
	else if (bit == PIPELINE_OPT_SOFT_TIME_LIMIT)
		rc = config_get_seconds(ctx, v, &o->soft_time_limit);
	else if (bit == PIPELINE_OPT_MAX_RETRIES)
		rc = get_max_retries(ctx, v, &o->max_retries);
	else if (bit == PIPELINE_OPT_IGNORE_RESULT)
		rc = config_get_bool(ctx, v, &o->ignore_result);
	else if (bit == PIPELINE_OPT_PRIORITY)
		rc = config_get_int32(ctx, v, 0, 255, &o->priority);
	else if (bit == PIPELINE_OPT_IMMUTABLE)
		rc = config_get_bool(ctx, v, &o->immutable);
	o->set |= bit;
	return rc;
}

static int parse_options(config_ctx *ctx, const config_node *n, pipeline_options *o)
{
	const config_node *soft = NULL;
	for (size_t i = 0; i < n->n_pairs; i++) {
		const config_node *k = n->pairs[i].key;
		if (!in_list(k->text, option_keys))
			continue;
		size_t old = config_path_push(ctx, k->text);
		int rc = parse_option(ctx, k->text, n->pairs[i].value, o);
		config_path_pop(ctx, old);
		if (rc)
			return rc;
		if (!strcmp(k->text, "soft_time_limit"))
			soft = n->pairs[i].value;
	}
	if (soft && (o->set & PIPELINE_OPT_TIME_LIMIT) && o->soft_time_limit > o->time_limit) {
		size_t old = config_path_push(ctx, "soft_time_limit");
		int rc = config_fail(ctx, soft, "must not exceed time_limit (%g s), got %g s",
				     o->time_limit, o->soft_time_limit);
		config_path_pop(ctx, old);
		return rc;
	}
	return 0;
}

/* ---- nodes ---- */

static pipeline_node *node_new(reader *r, const config_node *at, pipeline_kind kind)
{
	pipeline_node *node = config_arena_alloc(r->ctx->arena, sizeof *node);
	if (!node)
		return NULL;
	node->kind = kind;
	node->line = at->line;
	node->column = at->column;
	node->file = r->ctx->file;
	node->path = config_arena_strndup(r->ctx->arena, r->ctx->path, r->ctx->path_len);
	r->def->n_nodes++;
	return node->path ? node : NULL;
}

/* A composite's options are its members' defaults; immutable is its own. */
static pipeline_options inherit(const pipeline_options *outer, const pipeline_options *own)
{
	pipeline_options o = *outer;
	o.set &= ~(unsigned)PIPELINE_OPT_IMMUTABLE;
	o.immutable = 0;
	unsigned s = own->set;
	o.set |= s;
	if (s & PIPELINE_OPT_QUEUE)
		o.queue = own->queue;
	if (s & PIPELINE_OPT_COUNTDOWN)
		o.countdown = own->countdown;
	if (s & PIPELINE_OPT_EXPIRES)
		o.expires = own->expires;
	if (s & PIPELINE_OPT_TIME_LIMIT)
		o.time_limit = own->time_limit;
	if (s & PIPELINE_OPT_SOFT_TIME_LIMIT)
		o.soft_time_limit = own->soft_time_limit;
	if (s & PIPELINE_OPT_MAX_RETRIES)
		o.max_retries = own->max_retries;
	if (s & PIPELINE_OPT_IGNORE_RESULT)
		o.ignore_result = own->ignore_result;
	if (s & PIPELINE_OPT_PRIORITY)
		o.priority = own->priority;
	if (s & PIPELINE_OPT_IMMUTABLE)
		o.immutable = own->immutable;
	return o;
}

static int get_task_name(reader *r, const config_node *v, pipeline_node *node)
{
	int rc = config_get_string(r->ctx, v, &node->task);
	if (rc == 0 && node->task[0] == '\0')
		rc = config_fail_expected(r->ctx, v, "a task name");
	if (rc == 0)
		rc = config_pipeline_check_task_name(r->ctx, v, node->task);
	node->task_line = v->line;
	node->task_column = v->column;
	if (rc == 0 && !(node->task_path = config_arena_strndup(r->ctx->arena, r->ctx->path,
								  r->ctx->path_len)))
		rc = config_fail_nomem(r->ctx);
	return rc;
}

static int pack_at(reader *r, const char *key, const config_node *v, pipeline_template *out)
{
	size_t old = config_path_push(r->ctx, key);
	int rc = config_pipeline_pack(r->ctx, r->def->inputs, r->def->n_inputs, r->input_names, v,
				      out);
	config_path_pop(r->ctx, old);
	return rc;
}

static int parse_task(reader *r, const config_node *n, pipeline_node *node, pipeline_incoming in)
{
	const config_node *name = n->kind == CONFIG_NODE_MAP ? config_node_get(n, "task") : n;
	const config_node *args = config_node_get(n, "args");
	const config_node *kwargs = config_node_get(n, "kwargs");
	size_t old = n->kind == CONFIG_NODE_MAP ? config_path_push(r->ctx, "task") : r->ctx->path_len;
	int rc = get_task_name(r, name, node);
	config_path_pop(r->ctx, old);
	if (rc == 0 && args && args->kind != CONFIG_NODE_SEQ) {
		old = config_path_push(r->ctx, "args");
		rc = config_fail_expected(r->ctx, args, "a sequence of arguments");
		config_path_pop(r->ctx, old);
	}
	if (rc == 0 && kwargs && kwargs->kind != CONFIG_NODE_MAP) {
		old = config_path_push(r->ctx, "kwargs");
		rc = config_fail_expected(r->ctx, kwargs, "a mapping of keyword arguments");
		config_path_pop(r->ctx, old);
	}
	if (rc == 0 && args)
		rc = pack_at(r, "args", args, &node->args);
	if (rc == 0 && kwargs)
		rc = pack_at(r, "kwargs", kwargs, &node->kwargs);
	if (rc == 0)
		rc = config_pipeline_check_call(r->ctx, r->def, node, in, args, kwargs);
	return rc;
}

/* Members of a chain or group: a non-empty sequence of nodes. */
static int parse_members(reader *r, const char *what, const config_node *v, pipeline_node *node,
			 pipeline_incoming in, warren_type *last)
{
	if (v->kind != CONFIG_NODE_SEQ)
		return config_fail_expected(r->ctx, v, "a sequence of nodes");
	if (v->n_items == 0)
		return config_fail(r->ctx, v, "an empty %s: expected at least one node", what);
	const pipeline_node **members = config_arena_alloc(r->ctx->arena,
							   v->n_items * sizeof *members);
	if (!members)
		return config_fail_nomem(r->ctx);
	int chain = node->kind == PIPELINE_CHAIN;
	for (size_t i = 0; i < v->n_items; i++) {
		size_t old = config_path_push_index(r->ctx, i);
		int rc = parse_node(r, v->items[i], in, &node->options, NULL, &members[i], last);
		config_path_pop(r->ctx, old);
		if (rc)
			return rc;
		if (chain)
			in = (pipeline_incoming){ 1, *last, 0 };
	}
	node->children = members;
	node->n_children = v->n_items;
	return 0;
}

static int parse_map(reader *r, const config_node *v, pipeline_node *node)
{
	static const char *const keys[] = { "task", "over", "starmap", NULL };
	if (v->kind != CONFIG_NODE_MAP)
		return config_fail_expected(r->ctx, v, "a mapping with task and over");
	int rc = 0;
	for (size_t i = 0; rc == 0 && i < v->n_pairs; i++) {
		const config_node *k = v->pairs[i].key;
		if (in_list(k->text, keys))
			continue;
		size_t old = config_path_push(r->ctx, k->text);
		rc = config_fail_unknown_key(r->ctx, k, keys);
		config_path_pop(r->ctx, old);
	}
	const config_node *task = config_node_get(v, "task"), *over = config_node_get(v, "over");
	const config_node *starmap = config_node_get(v, "starmap");
	if (rc == 0 && (!task || !over))
		return config_fail(r->ctx, v, "a map needs %s", task ? "over" : "task");
	size_t old = config_path_push(r->ctx, "task");
	if (rc == 0)
		rc = get_task_name(r, task, node);
	config_path_pop(r->ctx, old);
	old = config_path_push(r->ctx, "starmap");
	if (rc == 0 && starmap)
		rc = config_get_bool(r->ctx, starmap, &node->starmap);
	config_path_pop(r->ctx, old);
	old = config_path_push(r->ctx, "over");
	if (rc == 0)
		rc = config_pipeline_check_over(r->ctx, r->def, node, over);
	config_path_pop(r->ctx, old);
	if (rc == 0)
		rc = pack_at(r, "over", over, &node->over);
	/* Each call takes one item; a starmap item's length is known at run. */
	if (rc == 0 && !node->starmap) {
		old = config_path_push(r->ctx, "task");
		rc = config_pipeline_check_call(r->ctx, r->def, node,
						(pipeline_incoming){ 1, WARREN_TYPE_ANY, 1 }, NULL,
						NULL);
		config_path_pop(r->ctx, old);
	}
	return rc;
}

/* A chord's header: a sequence (a group of those nodes), a group or a map. */
static int parse_header(reader *r, const config_node *v, pipeline_node *chord, pipeline_incoming in)
{
	warren_type ignored;
	if (v->kind == CONFIG_NODE_SEQ) {
		pipeline_node *group = node_new(r, v, PIPELINE_GROUP);
		if (!group)
			return config_fail_nomem(r->ctx);
		group->options = chord->options;
		chord->header = group;
		return parse_members(r, "chord header", v, group, in, &ignored);
	}
	if (!config_node_get(v, "group") && !config_node_get(v, "map"))
		return config_fail(r->ctx, v, "expected a sequence of nodes, a group or a map");
	return parse_node(r, v, in, &chord->options, NULL, &chord->header, &ignored);
}

static int parse_chord(reader *r, const config_node *v, pipeline_node *node, pipeline_incoming in,
		       warren_type *result)
{
	static const char *const keys[] = { "header", "body", NULL };
	if (v->kind != CONFIG_NODE_MAP)
		return config_fail_expected(r->ctx, v, "a mapping with header and body");
	for (size_t i = 0; i < v->n_pairs; i++) {
		const config_node *k = v->pairs[i].key;
		if (in_list(k->text, keys))
			continue;
		size_t old = config_path_push(r->ctx, k->text);
		int rc = config_fail_unknown_key(r->ctx, k, keys);
		config_path_pop(r->ctx, old);
		return rc;
	}
	const config_node *header = config_node_get(v, "header"), *body = config_node_get(v, "body");
	if (!header || !body)
		return config_fail(r->ctx, v, "a chord needs a %s", header ? "body" : "header");
	size_t old = config_path_push(r->ctx, "header");
	int rc = parse_header(r, header, node, in);
	config_path_pop(r->ctx, old);
	if (rc)
		return rc;
	node->children = node->header->children;
	node->n_children = node->header->n_children;
	old = config_path_push(r->ctx, "body");
	rc = parse_node(r, body, (pipeline_incoming){ 1, WARREN_TYPE_LIST, 0 }, &node->options, NULL,
			&node->body, result);
	config_path_pop(r->ctx, old);
	return rc;
}

/* The one kind key of a node mapping; unknown keys are refused here too. */
static int find_kind(reader *r, const config_node *n, const char *const *known,
		     const config_node **kind)
{
	*kind = NULL;
	for (size_t i = 0; i < n->n_pairs; i++) {
		const config_node *k = n->pairs[i].key;
		int rc = 0;
		size_t old = config_path_push(r->ctx, k->text);
		if (!in_list(k->text, known))
			rc = config_fail_unknown_key(r->ctx, k, known);
		else if (in_list(k->text, kind_keys) && *kind)
			rc = config_fail(r->ctx, k, "a node has one kind, this one has both '%s' "
						    "and '%s'", (*kind)->text, k->text);
		else if (in_list(k->text, kind_keys))
			*kind = k;
		config_path_pop(r->ctx, old);
		if (rc)
			return rc;
	}
	if (!*kind)
		return config_fail(r->ctx, n, "a node needs one of task, chain, group, chord or map");
	return 0;
}

static int check_task_only_keys(reader *r, const config_node *n, const config_node *kind)
{
	static const char *const task_only[] = { "args", "kwargs", NULL };
	if (!strcmp(kind->text, "task"))
		return 0;
	for (size_t i = 0; i < n->n_pairs; i++) {
		const config_node *k = n->pairs[i].key;
		if (!in_list(k->text, task_only))
			continue;
		size_t old = config_path_push(r->ctx, k->text);
		int rc = config_fail(r->ctx, k, "%s belongs to a task node, not a %s", k->text,
				     kind->text);
		config_path_pop(r->ctx, old);
		return rc;
	}
	return 0;
}

static int parse_kind(reader *r, const config_node *n, const config_node *kind, pipeline_node *node,
		      pipeline_incoming in, warren_type *result)
{
	const config_node *v = config_node_get(n, kind->text);
	if (node->kind == PIPELINE_TASK) {
		*result = WARREN_TYPE_ANY;
		int rc = parse_task(r, n, node, in);
		if (rc == 0)
			*result = config_pipeline_task_result(r->ctx->cfg, node->task);
		return rc;
	}
	size_t old = config_path_push(r->ctx, kind->text);
	int rc;
	*result = WARREN_TYPE_LIST;
	if (node->kind == PIPELINE_CHAIN || node->kind == PIPELINE_GROUP) {
		warren_type last;
		rc = parse_members(r, kind->text, v, node, in, &last);
		if (node->kind == PIPELINE_CHAIN)
			*result = last;
	} else if (node->kind == PIPELINE_CHORD) {
		rc = config_pipeline_check_chord(r->ctx, kind);
		if (rc == 0)
			rc = parse_chord(r, v, node, in, result);
	} else {
		rc = parse_map(r, v, node);
	}
	config_path_pop(r->ctx, old);
	return rc;
}

static int parse_node(reader *r, const config_node *n, pipeline_incoming in,
		      const pipeline_options *outer, const char *const *extra_keys,
		      const pipeline_node **out, warren_type *result)
{
	pipeline_options own = { 0 };
	pipeline_node *node;
	if (n->kind == CONFIG_NODE_SCALAR && config_scalar_kind_of(n) == CONFIG_SCALAR_STR) {
		if (!(node = node_new(r, n, PIPELINE_TASK)))
			return config_fail_nomem(r->ctx);
		node->options = inherit(outer, &own);
		*out = node;
		int rc = parse_task(r, n, node, in);
		*result = rc ? WARREN_TYPE_ANY : config_pipeline_task_result(r->ctx->cfg, node->task);
		return rc;
	}
	if (n->kind != CONFIG_NODE_MAP)
		return config_fail_expected(r->ctx, n, "a task name or a mapping with one of task, "
						       "chain, group, chord or map");
	const config_node *kind;
	int rc = find_kind(r, n, extra_keys ? extra_keys : node_keys, &kind);
	if (rc == 0)
		rc = check_task_only_keys(r, n, kind);
	if (rc == 0)
		rc = parse_options(r->ctx, n, &own);
	if (rc)
		return rc;
	int k = 0;
	while (strcmp(kind_keys[k], kind->text))
		k++;
	if (!(node = node_new(r, n, (pipeline_kind)k)))
		return config_fail_nomem(r->ctx);
	node->options = inherit(outer, &own);
	if (node->options.immutable || node->kind == PIPELINE_MAP)
		in = (pipeline_incoming){ 0, WARREN_TYPE_ANY, 0 };
	*out = node;
	return parse_kind(r, n, kind, node, in, result);
}

/* ---- inputs ---- */

static int get_input_type(config_ctx *ctx, const config_node *v, warren_type *out)
{
	if (v->kind == CONFIG_NODE_SCALAR && warren_type_parse(v->text, out) == 0 &&
	    *out != WARREN_TYPE_NULL)
		return 0;
	return config_fail_expected(ctx, v, "a type: int, float, str, bytes, bool, list, map or any");
}

static int parse_input_map(config_ctx *ctx, const config_node *n, pipeline_input *in)
{
	static const char *const keys[] = { "type", "default", "description", NULL };
	const config_node *def = config_node_get(n, "default");
	int rc = 0;
	for (size_t i = 0; rc == 0 && i < n->n_pairs; i++) {
		const config_node *k = n->pairs[i].key, *v = n->pairs[i].value;
		size_t old = config_path_push(ctx, k->text);
		if (!strcmp(k->text, "type"))
			rc = get_input_type(ctx, v, &in->type);
		else if (!strcmp(k->text, "description"))
			rc = config_get_string(ctx, v, &in->description);
		else if (strcmp(k->text, "default"))
			rc = config_fail_unknown_key(ctx, k, keys);
		config_path_pop(ctx, old);
	}
	in->required = def == NULL;
	if (rc == 0 && def) {
		size_t old = config_path_push(ctx, "default");
		rc = config_pipeline_pack_default(ctx, def, in->type, &in->default_mp,
						  &in->default_len);
		config_path_pop(ctx, old);
	}
	return rc;
}

/* An input is {type, default, description}, or just its type. */
static int parse_input(config_ctx *ctx, const config_node *k, const config_node *v,
		       pipeline_input *in)
{
	*in = (pipeline_input){ .name = k->text, .type = WARREN_TYPE_ANY, .required = 1,
				.line = k->line, .column = k->column };
	if (!config_pipeline_name_ok(k->text, k->len))
		return config_fail(ctx, k, "an input name is letters, digits and '_', not "
					   "starting with a digit");
	if (v->kind == CONFIG_NODE_SCALAR && config_scalar_kind_of(v) == CONFIG_SCALAR_NULL)
		return 0;
	if (v->kind == CONFIG_NODE_SCALAR)
		return get_input_type(ctx, v, &in->type);
	if (v->kind != CONFIG_NODE_MAP)
		return config_fail_expected(ctx, v, "a type or a mapping with type, default and "
						    "description");
	return parse_input_map(ctx, v, in);
}

static int parse_inputs(reader *r, const config_node *n)
{
	config_ctx *ctx = r->ctx;
	size_t old = config_path_push(ctx, "inputs");
	int rc = config_expect_map(ctx, n);
	size_t count = n->kind == CONFIG_NODE_MAP ? n->n_pairs : 0;
	pipeline_input *inputs = NULL;
	const char **names = NULL;
	if (rc == 0 && (rc = config_check_entries(ctx, n, count)) == 0 &&
	    (!(inputs = config_arena_alloc(ctx->arena, (count ? count : 1) * sizeof *inputs)) ||
	     !(names = config_arena_alloc(ctx->arena, (count + 1) * sizeof *names))))
		rc = config_fail_nomem(ctx);
	for (size_t i = 0; rc == 0 && i < count; i++) {
		size_t key_old = config_path_push(ctx, n->pairs[i].key->text);
		rc = parse_input(ctx, n->pairs[i].key, n->pairs[i].value, &inputs[i]);
		names[i] = inputs[i].name;
		config_path_pop(ctx, key_old);
	}
	config_path_pop(ctx, old);
	if (rc == 0) {
		r->def->inputs = inputs;
		r->def->n_inputs = count;
		r->input_names = names;
	}
	return rc;
}

/* ---- one pipeline ---- */

static int parse_def_keys(reader *r, const config_node *n, const config_node **run)
{
	config_ctx *ctx = r->ctx;
	const config_node *desc = config_node_get(n, "description");
	const config_node *inputs = config_node_get(n, "inputs");
	int rc = 0;
	*run = config_node_get(n, "run");
	for (size_t i = 0; rc == 0 && !*run && i < n->n_pairs; i++)
		if (in_list(n->pairs[i].key->text, kind_keys))
			*run = n;
	for (size_t i = 0; rc == 0 && *run != n && i < n->n_pairs; i++) {
		const config_node *k = n->pairs[i].key;
		if (in_list(k->text, pipeline_keys))
			continue;
		size_t old = config_path_push(ctx, k->text);
		rc = config_fail_unknown_key(ctx, k, pipeline_keys);
		config_path_pop(ctx, old);
	}
	if (rc == 0 && !*run)
		rc = config_fail(ctx, n, "a pipeline needs run (or one of task, chain, group, "
					 "chord or map)");
	if (rc == 0 && desc) {
		size_t old = config_path_push(ctx, "description");
		rc = config_get_string(ctx, desc, &r->def->description);
		config_path_pop(ctx, old);
	}
	if (rc == 0 && inputs)
		rc = parse_inputs(r, inputs);
	return rc;
}

static int parse_def(config_ctx *ctx, const config_node *k, const config_node *n, pipeline_def *def)
{
	static const pipeline_options none = { 0 };
	static const char *const no_names[] = { NULL };
	*def = (pipeline_def){ .name = k->text, .file = ctx->file, .line = k->line,
			       .column = k->column };
	reader r = { .ctx = ctx, .def = def, .input_names = no_names };
	if (n->kind != CONFIG_NODE_MAP)
		return config_fail_expected(ctx, n, "a mapping with run, inputs and description");
	const config_node *run;
	int rc = parse_def_keys(&r, n, &run);
	if (rc)
		return rc;
	warren_type result;
	if (run == n)
		return parse_node(&r, n, (pipeline_incoming){ 0, WARREN_TYPE_ANY, 0 }, &none,
				  inline_keys, &def->run, &result);
	size_t old = config_path_push(ctx, "run");
	rc = parse_node(&r, run, (pipeline_incoming){ 0, WARREN_TYPE_ANY, 0 }, &none, NULL, &def->run,
			&result);
	config_path_pop(ctx, old);
	return rc;
}

/* ---- the section ---- */

static const pipeline_def *find_def(const pipeline_def *defs, size_t n, const char *name)
{
	for (size_t i = 0; i < n; i++)
		if (!strcmp(defs[i].name, name))
			return &defs[i];
	return NULL;
}

int config_pipeline_read_section(config_ctx *ctx, const config_node *section,
				 pipeline_def *defs, size_t *n_defs)
{
	size_t old = config_path_push(ctx, "pipelines");
	int rc = config_expect_map(ctx, section);
	size_t count = section->kind == CONFIG_NODE_MAP ? section->n_pairs : 0;
	for (size_t i = 0; rc == 0 && i < count; i++) {
		const config_node *k = section->pairs[i].key;
		size_t key_old = config_path_push(ctx, k->text);
		const pipeline_def *first = find_def(defs, *n_defs, k->text);
		if (first)
			rc = config_fail(ctx, k, "pipeline defined twice (first at %s:%u:%u)",
					 first->file, first->line, first->column);
		else if ((rc = parse_def(ctx, k, section->pairs[i].value, &defs[*n_defs])) == 0)
			(*n_defs)++;
		config_path_pop(ctx, key_old);
	}
	config_path_pop(ctx, old);
	return rc;
}

const pipeline_def *config_pipeline_find(const warren_config *cfg, const char *name)
{
	return find_def(cfg->pipeline_defs, cfg->n_pipelines, name);
}
