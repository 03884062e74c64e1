/* config/tasks.c - the `tasks` section: per-task options and argument schemas.
 *
 * Options carry Celery's Task attribute names and defaults, except acks_late,
 * which is on by default (DESIGN.md: a killed worker loses nothing).
 * Argument defaults are packed to msgpack here, once, so producer and
 * worker can splice them into a message without knowing YAML. Unlike other
 * config values, defaults are typed strictly by YAML's core schema: a str
 * parameter's default 42 is an error, "42" is a string.
 */
#include <limits.h>
#include <msgpack.h>
#include <stdio.h>
#include <string.h>

#include "config.h"

/* A bound that keeps the duplicate-name check cheap on hostile input;
 * no real task comes near it. */
#define MAX_PARAMS 256

static const char *const task_keys[] = {
	"rate_limit",	    "time_limit",    "soft_time_limit",	    "max_retries",
	"retry_backoff",    "retry_backoff_max", "retry_jitter",    "default_retry_delay",
	"acks_late",	    "ignore_result", "track_started",	    "args",
	"result",	    "extra_args",    "extra_kwargs",	    "reject_on_worker_lost",
	NULL,
};

static const char *const param_keys[] = { "name", "type", "required", "default", NULL };

/* ---- rate limits: "100/s", "10/m", "3600/h", or "100" per second (Celery's rate()) ---- */

static int parse_rate(const char *text, double *per_second)
{
	char number[64];
	const char *slash = strchr(text, '/');
	size_t len = slash ? (size_t)(slash - text) : strlen(text);
	if (len == 0 || len >= sizeof number)
		return WARREN_EINVAL;
	memcpy(number, text, len);
	number[len] = '\0';
	double count;
	if (config_parse_float(number, &count) || !(count >= 0 && count <= 1e9))
		return WARREN_EINVAL;
	double seconds = 1;
	if (slash) {
		if (!strcmp(slash + 1, "s"))
			seconds = 1;
		else if (!strcmp(slash + 1, "m"))
			seconds = 60;
		else if (!strcmp(slash + 1, "h"))
			seconds = 3600;
		else
			return WARREN_EINVAL;
	}
	*per_second = count / seconds;
	return 0;
}

static int get_rate(config_ctx *ctx, const config_node *v, double *out)
{
	if (v->kind == CONFIG_NODE_SCALAR && config_scalar_kind_of(v) == CONFIG_SCALAR_NULL) {
		*out = 0;
		return 0;
	}
	if (v->kind == CONFIG_NODE_SCALAR && parse_rate(v->text, out) == 0)
		return 0;
	return config_fail_expected(ctx, v, "a rate like 100/s, 10/m or 3600/h");
}

/* ---- argument defaults to msgpack ---- */

static int pack_node(config_ctx *ctx, msgpack_packer *pk, const config_node *n);

static int pack_scalar(config_ctx *ctx, msgpack_packer *pk, const config_node *n)
{
	long long i;
	double d;
	switch (config_scalar_kind_of(n)) {
	case CONFIG_SCALAR_NULL:
		return msgpack_pack_nil(pk);
	case CONFIG_SCALAR_BOOL:
		return (n->text[0] == 't' || n->text[0] == 'T') ? msgpack_pack_true(pk)
								: msgpack_pack_false(pk);
	case CONFIG_SCALAR_INT:
		if (config_parse_int(n->text, &i))
			return config_fail_expected(ctx, n, "an integer that fits in 64 bits");
		return msgpack_pack_int64(pk, i);
	case CONFIG_SCALAR_FLOAT:
		if (config_parse_float(n->text, &d))
			return config_fail_expected(ctx, n, "a floating-point number");
		return msgpack_pack_double(pk, d);
	case CONFIG_SCALAR_STR:
	default:
		if (msgpack_pack_str(pk, n->len))
			return -1;
		return msgpack_pack_str_body(pk, n->text, n->len);
	}
}

/* Returns 0, WARREN_ECONFIG, or -1 when the packer ran out of memory. */
static int pack_node(config_ctx *ctx, msgpack_packer *pk, const config_node *n)
{
	int rc = 0;
	if (n->kind == CONFIG_NODE_SCALAR)
		return pack_scalar(ctx, pk, n);
	if (n->kind == CONFIG_NODE_SEQ) {
		rc = msgpack_pack_array(pk, n->n_items);
		for (size_t i = 0; rc == 0 && i < n->n_items; i++)
			rc = pack_node(ctx, pk, n->items[i]);
		return rc;
	}
	rc = msgpack_pack_map(pk, n->n_pairs);
	for (size_t i = 0; rc == 0 && i < n->n_pairs; i++) {
		rc = pack_scalar(ctx, pk, n->pairs[i].key);
		if (rc == 0)
			rc = pack_node(ctx, pk, n->pairs[i].value);
	}
	return rc;
}

static int default_matches(const config_node *n, warren_type type)
{
	if (type == WARREN_TYPE_ANY)
		return 1;
	if (type == WARREN_TYPE_LIST)
		return n->kind == CONFIG_NODE_SEQ;
	if (type == WARREN_TYPE_MAP)
		return n->kind == CONFIG_NODE_MAP;
	if (n->kind != CONFIG_NODE_SCALAR)
		return 0;
	config_scalar_kind k = config_scalar_kind_of(n);
	switch (type) {
	case WARREN_TYPE_INT:
		return k == CONFIG_SCALAR_INT;
	case WARREN_TYPE_FLOAT:
		return k == CONFIG_SCALAR_INT || k == CONFIG_SCALAR_FLOAT;
	case WARREN_TYPE_STR:
	case WARREN_TYPE_BYTES:
		return k == CONFIG_SCALAR_STR;
	case WARREN_TYPE_BOOL:
		return k == CONFIG_SCALAR_BOOL;
	case WARREN_TYPE_NULL:
		return k == CONFIG_SCALAR_NULL;
	default:
		return 0;
	}
}

static const char *node_type_name(const config_node *n)
{
	static const char *const kinds[] = { "null", "bool", "int", "float", "str" };
	if (n->kind == CONFIG_NODE_SEQ)
		return "list";
	if (n->kind == CONFIG_NODE_MAP)
		return "map";
	return kinds[config_scalar_kind_of(n)];
}

/* Packs the default of a parameter of the given type into the arena. */
static int pack_default(config_ctx *ctx, const config_node *n, warren_type type, warren_param *p)
{
	if (!default_matches(n, type)) {
		char got[64];
		config_got(n, got, sizeof got);
		if (n->kind != CONFIG_NODE_SCALAR)
			return config_fail(ctx, n, "expected a value of type %s, got %s",
					   warren_type_name(type), got);
		return config_fail(ctx, n, "expected a value of type %s, got %s %s",
				   warren_type_name(type), node_type_name(n), got);
	}
	msgpack_sbuffer buf;
	msgpack_packer pk;
	msgpack_sbuffer_init(&buf);
	msgpack_packer_init(&pk, &buf, msgpack_sbuffer_write);
	int rc;
	if (type == WARREN_TYPE_FLOAT) {
		/* An int default of a float parameter is packed as the float. */
		double d;
		long long i;
		if (config_scalar_kind_of(n) == CONFIG_SCALAR_INT && config_parse_int(n->text, &i) == 0)
			rc = msgpack_pack_double(&pk, (double)i);
		else if (config_parse_float(n->text, &d) == 0)
			rc = msgpack_pack_double(&pk, d);
		else
			rc = config_fail_expected(ctx, n, "a number");
	} else if (type == WARREN_TYPE_BYTES) {
		rc = msgpack_pack_bin(&pk, n->len);
		if (rc == 0)
			rc = msgpack_pack_bin_body(&pk, n->text, n->len);
	} else {
		rc = pack_node(ctx, &pk, n);
	}
	if (rc == 0) {
		void *copy = config_arena_alloc(ctx->arena, buf.size);
		if (copy) {
			memcpy(copy, buf.data, buf.size);
			p->default_mp = copy;
			p->default_len = buf.size;
		} else {
			rc = -1;
		}
	}
	msgpack_sbuffer_destroy(&buf);
	/* msgpack's packers fail only when the buffer cannot grow. */
	return rc == -1 ? config_fail_nomem(ctx) : rc;
}

/* ---- parameters ---- */

static int get_type(config_ctx *ctx, const config_node *v, warren_type *out)
{
	if (v->kind == CONFIG_NODE_SCALAR && warren_type_parse(v->text, out) == 0)
		return 0;
	return config_fail_expected(ctx, v,
				    "a type: int, float, str, bytes, bool, list, map, any or null");
}

static int parse_param_keys(config_ctx *ctx, const config_node *n, warren_param *p,
			    const config_node **required, const config_node **def)
{
	int rc = 0;
	for (size_t i = 0; rc == 0 && i < n->n_pairs; i++) {
		const config_node *k = n->pairs[i].key, *v = n->pairs[i].value;
		size_t old = config_path_push(ctx, k->text);
		if (!strcmp(k->text, "name"))
			rc = config_get_string(ctx, v, &p->name);
		else if (!strcmp(k->text, "type"))
			rc = get_type(ctx, v, &p->type);
		else if (!strcmp(k->text, "required")) {
			rc = config_get_bool(ctx, v, &p->required);
			*required = k;
		} else if (!strcmp(k->text, "default"))
			*def = v;
		else
			rc = config_fail_unknown_key(ctx, k, param_keys);
		config_path_pop(ctx, old);
	}
	return rc;
}

/* A parameter without a default is required unless it says otherwise. */
static int parse_param(config_ctx *ctx, const config_node *n, warren_param *p)
{
	if (n->kind != CONFIG_NODE_MAP)
		return config_fail_expected(ctx, n, "a mapping with name and type");
	*p = (warren_param){ .type = WARREN_TYPE_ANY };
	const config_node *required = NULL, *def = NULL;
	int rc = parse_param_keys(ctx, n, p, &required, &def);
	if (rc)
		return rc;
	if (!p->name)
		return config_fail(ctx, n, "a parameter needs a name");
	if (!required)
		p->required = def == NULL;
	if (def && p->required) {
		size_t old = config_path_push(ctx, "required");
		rc = config_fail(ctx, required, "a required parameter cannot have a default");
		config_path_pop(ctx, old);
		return rc;
	}
	if (def) {
		size_t old = config_path_push(ctx, "default");
		rc = pack_default(ctx, def, p->type, p);
		config_path_pop(ctx, old);
	}
	return rc;
}

static int parse_args(config_ctx *ctx, const config_node *n, warren_task_schema *schema)
{
	if (n->kind != CONFIG_NODE_SEQ)
		return config_fail_expected(ctx, n, "a sequence of parameters");
	if (n->n_items > MAX_PARAMS)
		return config_fail(ctx, n, "more than %d parameters", MAX_PARAMS);
	warren_param *params = config_arena_alloc(ctx->arena, n->n_items * sizeof *params);
	if (!params)
		return config_fail_nomem(ctx);
	for (size_t i = 0; i < n->n_items; i++) {
		size_t old = config_path_push_index(ctx, i);
		int rc = parse_param(ctx, n->items[i], &params[i]);
		for (size_t j = 0; rc == 0 && j < i; j++)
			if (!strcmp(params[j].name, params[i].name))
				rc = config_fail(ctx, n->items[i],
						 "duplicate parameter name '%.64s'",
						 params[i].name);
		config_path_pop(ctx, old);
		if (rc)
			return rc;
	}
	schema->params = params;
	schema->n_params = n->n_items;
	return 0;
}

/* ---- one task ---- */

static int get_backoff(config_ctx *ctx, const config_node *v, int *out)
{
	/* Celery: True means a factor of 1 second, an integer is the factor. */
	if (v->kind == CONFIG_NODE_SCALAR && config_scalar_kind_of(v) == CONFIG_SCALAR_BOOL) {
		*out = v->text[0] == 't' || v->text[0] == 'T';
		return 0;
	}
	return config_get_int32(ctx, v, 0, INT_MAX, out);
}

static int get_max_retries(config_ctx *ctx, const config_node *v, int *out)
{
	/* Celery's max_retries=None retries forever. */
	if (v->kind == CONFIG_NODE_SCALAR && config_scalar_kind_of(v) == CONFIG_SCALAR_NULL) {
		*out = -1;
		return 0;
	}
	return config_get_int32(ctx, v, 0, INT_MAX, out);
}

static int parse_task_key(config_ctx *ctx, const config_node *k, const config_node *v,
			  config_task *t)
{
	const char *key = k->text;
	if (!strcmp(key, "rate_limit"))
		return get_rate(ctx, v, &t->rate_limit);
	if (!strcmp(key, "time_limit"))
		return config_get_seconds(ctx, v, &t->time_limit);
	if (!strcmp(key, "soft_time_limit"))
		return config_get_seconds(ctx, v, &t->soft_time_limit);
	if (!strcmp(key, "max_retries"))
		return get_max_retries(ctx, v, &t->max_retries);
	if (!strcmp(key, "retry_backoff"))
		return get_backoff(ctx, v, &t->retry_backoff);
	if (!strcmp(key, "retry_backoff_max"))
		return config_get_int32(ctx, v, 0, INT_MAX, &t->retry_backoff_max);
	if (!strcmp(key, "retry_jitter"))
		return config_get_bool(ctx, v, &t->retry_jitter);
	if (!strcmp(key, "default_retry_delay"))
		return config_get_seconds(ctx, v, &t->default_retry_delay);
	if (!strcmp(key, "acks_late"))
		return config_get_bool(ctx, v, &t->acks_late);
	if (!strcmp(key, "ignore_result"))
		return config_get_bool(ctx, v, &t->ignore_result);
	if (!strcmp(key, "track_started"))
		return config_get_bool(ctx, v, &t->track_started);
	if (!strcmp(key, "reject_on_worker_lost"))
		return config_get_bool(ctx, v, &t->reject_on_worker_lost);
	t->has_schema = 1;
	if (!strcmp(key, "args"))
		return parse_args(ctx, v, &t->schema);
	if (!strcmp(key, "result"))
		return get_type(ctx, v, &t->schema.result);
	if (!strcmp(key, "extra_args"))
		return config_get_bool(ctx, v, &t->schema.extra_args);
	if (!strcmp(key, "extra_kwargs"))
		return config_get_bool(ctx, v, &t->schema.extra_kwargs);
	return config_fail_unknown_key(ctx, k, task_keys);
}

static int parse_task(config_ctx *ctx, const config_node *k, const config_node *n, config_task *t)
{
	*t = (config_task){ .name = k->text, .max_retries = 3, .retry_backoff_max = 600,
			    .retry_jitter = 1, .default_retry_delay = 180, .acks_late = 1,
			    .schema = { .result = WARREN_TYPE_ANY },
			    .line = k->line, .column = k->column };
	int rc = config_expect_map(ctx, n);
	const config_node *soft = NULL;
	for (size_t i = 0; rc == 0 && i < n->n_pairs; i++) {
		const config_node *key = n->pairs[i].key;
		size_t old = config_path_push(ctx, key->text);
		rc = parse_task_key(ctx, key, n->pairs[i].value, t);
		if (rc == 0 && !strcmp(key->text, "soft_time_limit"))
			soft = n->pairs[i].value;
		config_path_pop(ctx, old);
	}
	if (rc == 0 && soft && t->time_limit > 0 && t->soft_time_limit > t->time_limit) {
		size_t old = config_path_push(ctx, "soft_time_limit");
		rc = config_fail(ctx, soft, "must not exceed time_limit (%g s), got %g s",
				 t->time_limit, t->soft_time_limit);
		config_path_pop(ctx, old);
	}
	return rc;
}

int config_parse_tasks(config_ctx *ctx, const config_node *node)
{
	if (!node)
		return 0;
	size_t old = config_path_push(ctx, "tasks");
	int rc = config_expect_map(ctx, node);
	if (rc == 0)
		rc = config_check_entries(ctx, node, node->n_pairs);
	config_task *tasks = NULL;
	if (rc == 0 && node->n_pairs &&
	    !(tasks = config_arena_alloc(ctx->arena, node->n_pairs * sizeof *tasks)))
		rc = config_fail_nomem(ctx);
	for (size_t i = 0; rc == 0 && i < node->n_pairs; i++) {
		size_t key_old = config_path_push(ctx, node->pairs[i].key->text);
		rc = parse_task(ctx, node->pairs[i].key, node->pairs[i].value, &tasks[i]);
		config_path_pop(ctx, key_old);
	}
	config_path_pop(ctx, old);
	if (rc == 0) {
		ctx->cfg->tasks = tasks;
		ctx->cfg->n_tasks = node->kind == CONFIG_NODE_MAP ? node->n_pairs : 0;
	}
	return rc;
}

const config_task *config_task_find(const warren_config *cfg, const char *name)
{
	for (size_t i = 0; i < cfg->n_tasks; i++)
		if (!strcmp(cfg->tasks[i].name, name))
			return &cfg->tasks[i];
	return NULL;
}
