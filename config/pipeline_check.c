/* config/pipeline_check.c - what a pipeline is checked against: task names,
 * task argument schemas, and the result backend.
 *
 * The loader calls these node by node while it still has the YAML (so an
 * error points at the very argument); config_pipeline_check_tasks() and
 * config_pipeline_check_backend() walk the finished model later, for names
 * only a worker's registry knows and for a backend changed by the
 * environment.
 *
 * Argument checks follow schemas/args.c (Python's binding rules, msgpack's
 * types: an int is a fine float, a bool is not an int) with what a node
 * receives from the step before it counted as the first positional
 * argument: a chain link gets its parent's result, a chord body the list of
 * header results, unless the node is immutable. A value whose type is not
 * known at load (an `any` input, an undeclared task's result) passes.
 */
#include <stdlib.h>
#include <string.h>

#include "config.h"

/* ---- task names ---- */

static int declares_schemas(const warren_config *cfg)
{
	for (size_t i = 0; i < cfg->n_tasks; i++)
		if (cfg->tasks[i].has_schema)
			return 1;
	return 0;
}

/* "unknown task 'x'; did you mean 'y'?" with known as the candidates. */
static int fail_unknown_task(config_ctx *ctx, const config_node *at, const char *name,
			     const char *const *known)
{
	const char *near = config_nearest(name, known);
	if (near)
		return config_fail(ctx, at, "unknown task '%.64s'; did you mean '%s'?", name, near);
	return config_fail(ctx, at, "unknown task '%.64s'", name);
}

int config_pipeline_check_task_name(config_ctx *ctx, const config_node *name_node,
				    const char *name)
{
	const warren_config *cfg = ctx->cfg;
	if (config_task_find(cfg, name) || !declares_schemas(cfg))
		return 0;
	const char **known = malloc((cfg->n_tasks + 1) * sizeof *known);
	if (!known)
		return config_fail_nomem(ctx);
	for (size_t i = 0; i < cfg->n_tasks; i++)
		known[i] = cfg->tasks[i].name;
	known[cfg->n_tasks] = NULL;
	int rc = fail_unknown_task(ctx, name_node, name, known);
	free(known);
	return rc;
}

warren_type config_pipeline_task_result(const warren_config *cfg, const char *task)
{
	const config_task *t = config_task_find(cfg, task);
	return t && t->has_schema ? t->schema.result : WARREN_TYPE_ANY;
}

/* ---- argument schemas ---- */

/* What is known of one argument at load time. */
typedef struct arg_info {
	warren_type type;
	const config_node *at; /* NULL: the previous step's result */
	const char *input;     /* the input it names, or NULL */
} arg_info;

static arg_info arg_of(const pipeline_def *def, const config_node *n)
{
	arg_info a = { .type = config_pipeline_literal_type(n), .at = n };
	const char *name;
	size_t len;
	if (!config_pipeline_whole_ref(n, &name, &len))
		return a;
	for (size_t i = 0; i < def->n_inputs; i++) {
		if (strlen(def->inputs[i].name) == len && !strncmp(def->inputs[i].name, name, len)) {
			a.type = def->inputs[i].type;
			a.input = def->inputs[i].name;
		}
	}
	return a;
}

/* Python's `b: int = None`: a parameter whose default is None takes None. */
static int default_is_nil(const warren_param *p)
{
	return p->default_mp && p->default_len == 1 &&
	       *(const unsigned char *)p->default_mp == 0xc0;
}

static int type_fits(const warren_param *p, warren_type have)
{
	if (p->type == WARREN_TYPE_ANY || have == WARREN_TYPE_ANY || p->type == have)
		return 1;
	if (p->type == WARREN_TYPE_FLOAT && have == WARREN_TYPE_INT)
		return 1;
	return have == WARREN_TYPE_NULL && default_is_nil(p);
}

static int check_type(config_ctx *ctx, const pipeline_node *node, const warren_param *p,
		      const arg_info *a)
{
	if (type_fits(p, a->type))
		return 0;
	const char *want = warren_type_name(p->type), *have = warren_type_name(a->type);
	if (!a->at) {
		config_node at = { .line = node->line, .column = node->column };
		return config_fail(ctx, &at, "%s: argument '%s' expects %s, but the previous "
					     "step returns %s", node->task, p->name, want, have);
	}
	if (a->input)
		return config_fail(ctx, a->at, "%s: argument '%s' expects %s, got $input.%s (%s)",
				   node->task, p->name, want, a->input, have);
	char got[64];
	config_got(a->at, got, sizeof got);
	return config_fail(ctx, a->at, "%s: argument '%s' expects %s, got %s %s", node->task,
			   p->name, want, have, got);
}

static long param_index(const warren_task_schema *s, const char *name)
{
	for (size_t i = 0; i < s->n_params; i++)
		if (!strcmp(s->params[i].name, name))
			return (long)i;
	return -1;
}

static int check_positional(config_ctx *ctx, const pipeline_def *def, const pipeline_node *node,
			    const warren_task_schema *s, pipeline_incoming in,
			    const config_node *args)
{
	size_t given = args ? args->n_items : 0, n = (size_t)in.takes + given;
	if (n > s->n_params && !s->extra_args) {
		/* Point at the first argument too many, if it is one of args. */
		config_node node_at = { .line = node->line, .column = node->column };
		const config_node *at = &node_at;
		size_t old = ctx->path_len, takes = (size_t)in.takes;
		if (args) {
			config_path_push(ctx, "args");
			at = args;
			if (s->n_params >= takes && s->n_params - takes < given) {
				at = args->items[s->n_params - takes];
				config_path_push_index(ctx, s->n_params - takes);
			}
		}
		int rc = config_fail(ctx, at, "%s takes %zu argument%s, got %zu%s", node->task,
				     s->n_params, s->n_params == 1 ? "" : "s", n,
				     !in.takes ? ""
				     : in.item ? " (one is the map's item)"
						: " (one is the previous step's result)");
		config_path_pop(ctx, old);
		return rc;
	}
	for (size_t i = 0; i < n && i < s->n_params; i++) {
		arg_info a = { .type = in.type };
		if (!(in.takes && i == 0))
			a = arg_of(def, args->items[i - (size_t)in.takes]);
		size_t old = a.at ? config_path_push(ctx, "args") : ctx->path_len;
		if (a.at)
			config_path_push_index(ctx, i - (size_t)in.takes);
		int rc = check_type(ctx, node, &s->params[i], &a);
		config_path_pop(ctx, old);
		if (rc)
			return rc;
	}
	return 0;
}

static int check_kwarg(config_ctx *ctx, const pipeline_def *def, const pipeline_node *node,
		       const warren_task_schema *s, size_t n_positional, const config_pair *kv)
{
	long i = param_index(s, kv->key->text);
	if (i < 0 && s->extra_kwargs)
		return 0;
	if (i < 0) {
		const char **names = malloc((s->n_params + 1) * sizeof *names);
		if (!names)
			return config_fail_nomem(ctx);
		for (size_t k = 0; k < s->n_params; k++)
			names[k] = s->params[k].name;
		names[s->n_params] = NULL;
		const char *near = config_nearest(kv->key->text, names);
		free(names);
		if (near)
			return config_fail(ctx, kv->key, "%s has no parameter '%.64s'; did you mean "
							 "'%s'?", node->task, kv->key->text, near);
		return config_fail(ctx, kv->key, "%s has no parameter '%.64s'", node->task,
				   kv->key->text);
	}
	if ((size_t)i < n_positional)
		return config_fail(ctx, kv->key, "%s: argument '%s' given twice, by position and "
						 "by name", node->task, kv->key->text);
	arg_info a = arg_of(def, kv->value);
	return check_type(ctx, node, &s->params[i], &a);
}

static int check_required(config_ctx *ctx, const pipeline_node *node, const warren_task_schema *s,
			  size_t n_positional, const config_node *kwargs, const config_node *at)
{
	for (size_t i = n_positional; i < s->n_params; i++) {
		const warren_param *p = &s->params[i];
		if (p->required && !config_node_get(kwargs, p->name))
			return config_fail(ctx, at, "%s: missing required argument '%s'", node->task,
					   p->name);
	}
	return 0;
}

int config_pipeline_check_call(config_ctx *ctx, const pipeline_def *def, const pipeline_node *node,
			       pipeline_incoming in, const config_node *args,
			       const config_node *kwargs)
{
	const config_task *t = config_task_find(ctx->cfg, node->task);
	if (!t || !t->has_schema)
		return 0;
	const warren_task_schema *s = &t->schema;
	int rc = check_positional(ctx, def, node, s, in, args);
	size_t n_positional = (size_t)in.takes + (args ? args->n_items : 0);
	for (size_t i = 0; rc == 0 && kwargs && i < kwargs->n_pairs; i++) {
		size_t old = config_path_push(ctx, "kwargs");
		config_path_push(ctx, kwargs->pairs[i].key->text);
		rc = check_kwarg(ctx, def, node, s, n_positional, &kwargs->pairs[i]);
		config_path_pop(ctx, old);
	}
	if (rc == 0) {
		/* A map's calls are made from its task name; a task's from its node. */
		int map = node->kind == PIPELINE_MAP;
		config_node at = { .line = map ? node->task_line : node->line,
				   .column = map ? node->task_column : node->column };
		rc = check_required(ctx, node, s, n_positional, kwargs, &at);
	}
	return rc;
}

/* ---- map ---- */

static const pipeline_input *input_named(const pipeline_def *def, const char *name, size_t len)
{
	for (size_t i = 0; i < def->n_inputs; i++)
		if (strlen(def->inputs[i].name) == len && !strncmp(def->inputs[i].name, name, len))
			return &def->inputs[i];
	return NULL;
}

int config_pipeline_check_over(config_ctx *ctx, const pipeline_def *def, const pipeline_node *node,
			       const config_node *over)
{
	const char *name;
	size_t len;
	if (config_pipeline_whole_ref(over, &name, &len)) {
		const pipeline_input *in = input_named(def, name, len);
		if (!in || in->type == WARREN_TYPE_LIST || in->type == WARREN_TYPE_ANY)
			return 0; /* an unknown name is reported when over is packed */
		return config_fail(ctx, over, "a map goes over a list, and input '%s' is %s",
				   in->name, warren_type_name(in->type));
	}
	if (over->kind != CONFIG_NODE_SEQ)
		return config_fail_expected(ctx, over, "a list or $input.NAME");
	for (size_t i = 0; node->starmap && i < over->n_items; i++) {
		const config_node *item = over->items[i];
		if (item->kind == CONFIG_NODE_SEQ || config_pipeline_whole_ref(item, &name, &len))
			continue;
		size_t old = config_path_push_index(ctx, i);
		int rc = config_fail_expected(ctx, item, "a list of arguments (starmap)");
		config_path_pop(ctx, old);
		return rc;
	}
	return 0;
}

/* ---- chords and the result backend ---- */

static int backend_can_join(const warren_config *cfg)
{
	return cfg->result_backend.kind == CONFIG_BACKEND_REDIS;
}

static const char *backend_text(const warren_config *cfg)
{
	if (cfg->result_backend.kind == CONFIG_BACKEND_RPC)
		return cfg->result_backend.url ? cfg->result_backend.url : "rpc://";
	return "none";
}

int config_pipeline_check_chord(config_ctx *ctx, const config_node *at)
{
	if (backend_can_join(ctx->cfg))
		return 0;
	return config_fail(ctx, at, "a chord needs a result backend that can join (redis); "
				    "result_backend is %s", backend_text(ctx->cfg));
}

/* ---- checks of the finished model ---- */

typedef int (*node_check)(const warren_config *cfg, const pipeline_node *node, void *arg,
			  warren_error *err);

static int walk(const warren_config *cfg, const pipeline_node *node, node_check check, void *arg,
		warren_error *err)
{
	int rc = check(cfg, node, arg, err);
	for (size_t i = 0; rc == 0 && node->kind != PIPELINE_CHORD && i < node->n_children; i++)
		rc = walk(cfg, node->children[i], check, arg, err);
	if (rc == 0 && node->header)
		rc = walk(cfg, node->header, check, arg, err);
	if (rc == 0 && node->body)
		rc = walk(cfg, node->body, check, arg, err);
	return rc;
}

static int walk_all(const warren_config *cfg, node_check check, void *arg, warren_error *err)
{
	int rc = 0;
	for (size_t i = 0; rc == 0 && i < cfg->n_pipelines; i++)
		rc = walk(cfg, cfg->pipeline_defs[i].run, check, arg, err);
	return rc;
}

static int check_backend_node(const warren_config *cfg, const pipeline_node *node, void *arg,
			      warren_error *err)
{
	(void)arg;
	if (node->kind != PIPELINE_CHORD || backend_can_join(cfg))
		return 0;
	return warren_error_set(err, WARREN_ECONFIG,
				"%s:%u:%u: %s.chord: a chord needs a result backend that can join "
				"(redis); result_backend is %s",
				node->file, node->line, node->column, node->path,
				backend_text(cfg));
}

int config_pipeline_check_backend(const warren_config *cfg, warren_error *err)
{
	return walk_all(cfg, check_backend_node, NULL, err);
}

/* The sorted names a registry knows, NULL-terminated for hints. */
typedef struct known_names {
	const char **sorted;
	size_t n;
} known_names;

static int cmp_name(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static int check_task_node(const warren_config *cfg, const pipeline_node *node, void *arg,
			   warren_error *err)
{
	(void)cfg;
	const known_names *k = arg;
	if ((node->kind != PIPELINE_TASK && node->kind != PIPELINE_MAP) ||
	    bsearch(&node->task, k->sorted, k->n, sizeof *k->sorted, cmp_name))
		return 0;
	const char *near = config_nearest(node->task, k->sorted);
	return warren_error_set(err, WARREN_ECONFIG,
				"%s:%u:%u: %s: unknown task '%.64s'%s%s%s", node->file,
				node->task_line, node->task_column, node->task_path, node->task,
				near ? "; did you mean '" : "", near ? near : "", near ? "'?" : "");
}

int config_pipeline_check_tasks(const warren_config *cfg, const char *const *known, size_t n,
				warren_error *err)
{
	known_names k = { .sorted = malloc((n + 1) * sizeof *k.sorted), .n = n };
	if (!k.sorted)
		return warren_error_set(err, WARREN_ENOMEM, "%s: out of memory", cfg->name);
	if (n)
		memcpy(k.sorted, known, n * sizeof *k.sorted);
	qsort(k.sorted, n, sizeof *k.sorted, cmp_name);
	k.sorted[n] = NULL;
	int rc = walk_all(cfg, check_task_node, &k, err);
	free(k.sorted);
	return rc;
}
