/* config/pipeline_bind.c - a pipeline plus `--set key=value` inputs to a
 * bound tree whose args and kwargs are final msgpack.
 *
 * Values arrive as text from a command line, so each is read by its
 * input's declared type. Lists and maps are JSON; they are read with
 * libyaml's flow style, of which JSON is (for our purposes) a subset, so
 * config/ needs no JSON library and `[a, b]` works too. Templates without
 * references are used as they are; the others are unpacked and packed
 * again with each input's value in place (see pipeline_template.c).
 *
 * The bound tree lives in its own arena but points into the config's for
 * what binding does not change (names, options, templates without refs).
 */
#include <msgpack.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "config.h"

static const unsigned char empty_array[] = { 0x90 };
static const unsigned char empty_map[] = { 0x80 };

typedef struct binder {
	const pipeline_def *def;
	config_arena *arena;
	warren_error *err;
	const void **input_mp; /* the bound value of each input */
	size_t *input_len;
	msgpack_unpacked *values; /* the same, unpacked */
	size_t n_tasks;
} binder;

static int fail_nomem(binder *b)
{
	return warren_error_set(b->err, WARREN_ENOMEM, "pipeline '%s': out of memory",
				b->def->name);
}

/* Copies an sbuffer's bytes into the arena. */
static int keep(binder *b, const msgpack_sbuffer *buf, const void **mp, size_t *len)
{
	void *copy = config_arena_alloc(b->arena, buf->size);
	if (!copy)
		return fail_nomem(b);
	memcpy(copy, buf->data, buf->size);
	*mp = copy;
	*len = buf->size;
	return 0;
}

/* ---- reading one --set value ---- */

static int fail_value(binder *b, const pipeline_input *in, const char *text)
{
	char got[64];
	config_node n = { .kind = CONFIG_NODE_SCALAR, .text = text, .len = strlen(text) };
	config_got(&n, got, sizeof got);
	return warren_error_set(b->err, WARREN_ECONFIG, "input '%s': expected %s, got %s", in->name,
				warren_type_name(in->type), got);
}

static int read_bool(const char *text, int *out)
{
	static const char *const yes[] = { "true", "yes", "on", "1", NULL };
	static const char *const no[] = { "false", "no", "off", "0", NULL };
	for (size_t i = 0; yes[i]; i++) {
		if (!strcasecmp(text, yes[i]) || !strcasecmp(text, no[i])) {
			*out = !strcasecmp(text, yes[i]);
			return 0;
		}
	}
	return WARREN_EINVAL;
}

/* Scalars by type; returns WARREN_EINVAL when text is not one. */
static int pack_typed_scalar(msgpack_packer *pk, warren_type type, const char *text)
{
	long long i;
	double d;
	int flag;
	size_t len = strlen(text);
	switch (type) {
	case WARREN_TYPE_INT:
		return config_parse_int(text, &i) ? WARREN_EINVAL : msgpack_pack_int64(pk, i);
	case WARREN_TYPE_FLOAT:
		if (config_parse_int(text, &i) == 0)
			return msgpack_pack_double(pk, (double)i);
		return config_parse_float(text, &d) ? WARREN_EINVAL : msgpack_pack_double(pk, d);
	case WARREN_TYPE_BOOL:
		if (read_bool(text, &flag))
			return WARREN_EINVAL;
		return flag ? msgpack_pack_true(pk) : msgpack_pack_false(pk);
	case WARREN_TYPE_BYTES:
		return msgpack_pack_bin(pk, len) ? -1 : msgpack_pack_bin_body(pk, text, len);
	default:
		return msgpack_pack_str(pk, len) ? -1 : msgpack_pack_str_body(pk, text, len);
	}
}

/* JSON (or YAML flow) text to packed msgpack; WARREN_EINVAL when it does
 * not parse or is not of the wanted kind. */
static int pack_structured(binder *b, const pipeline_input *in, const char *text,
			   const void **mp, size_t *len)
{
	warren_error perr = { 0 };
	const config_node *root = NULL;
	int rc = config_tree_parse(text, strlen(text), "--set", b->arena, &root, &perr);
	if (rc == WARREN_ENOMEM)
		return fail_nomem(b);
	if (rc || !root)
		return WARREN_EINVAL;
	if ((in->type == WARREN_TYPE_LIST && root->kind != CONFIG_NODE_SEQ) ||
	    (in->type == WARREN_TYPE_MAP && root->kind != CONFIG_NODE_MAP))
		return WARREN_EINVAL;
	config_ctx ctx = { .file = "--set", .arena = b->arena, .err = &perr };
	rc = config_pipeline_pack_default(&ctx, root, WARREN_TYPE_ANY, mp, len);
	if (rc == WARREN_ENOMEM)
		return fail_nomem(b);
	return rc ? WARREN_EINVAL : 0;
}

static int wants_structured(const pipeline_input *in, const char *text)
{
	if (in->type == WARREN_TYPE_LIST || in->type == WARREN_TYPE_MAP)
		return 1;
	text += strspn(text, " \t");
	return in->type == WARREN_TYPE_ANY && (*text == '[' || *text == '{' || *text == '"');
}

/* An `any` value that is not JSON: a YAML plain scalar (42, 2.5, true, text). */
static int pack_any_scalar(binder *b, const char *text, const void **mp, size_t *len)
{
	warren_error perr = { 0 };
	config_node n = { .kind = CONFIG_NODE_SCALAR, .text = text, .len = strlen(text),
			  .plain = 1 };
	config_ctx ctx = { .file = "--set", .arena = b->arena, .err = &perr };
	int rc = config_pipeline_pack_default(&ctx, &n, WARREN_TYPE_ANY, mp, len);
	if (rc == WARREN_ENOMEM)
		return fail_nomem(b);
	return rc ? WARREN_EINVAL : 0;
}

static int read_value(binder *b, const pipeline_input *in, const char *text, const void **mp,
		      size_t *len)
{
	int rc;
	if (wants_structured(in, text))
		rc = pack_structured(b, in, text, mp, len);
	else if (in->type == WARREN_TYPE_ANY)
		rc = pack_any_scalar(b, text, mp, len);
	else {
		msgpack_sbuffer buf;
		msgpack_packer pk;
		msgpack_sbuffer_init(&buf);
		msgpack_packer_init(&pk, &buf, msgpack_sbuffer_write);
		rc = pack_typed_scalar(&pk, in->type, text);
		if (rc == -1)
			rc = fail_nomem(b);
		else if (rc == 0)
			rc = keep(b, &buf, mp, len);
		msgpack_sbuffer_destroy(&buf);
	}
	return rc == WARREN_EINVAL ? fail_value(b, in, text) : rc;
}

/* ---- the inputs ---- */

static long input_index(const pipeline_def *def, const char *name)
{
	for (size_t i = 0; i < def->n_inputs; i++)
		if (!strcmp(def->inputs[i].name, name))
			return (long)i;
	return -1;
}

static int fail_unknown_key(binder *b, const char *key)
{
	const pipeline_def *def = b->def;
	const char **names = malloc((def->n_inputs + 1) * sizeof *names);
	if (!names)
		return fail_nomem(b);
	for (size_t i = 0; i < def->n_inputs; i++)
		names[i] = def->inputs[i].name;
	names[def->n_inputs] = NULL;
	const char *near = config_nearest(key, names);
	int rc = near ? warren_error_set(b->err, WARREN_ECONFIG,
					 "pipeline '%s' has no input '%.64s'; did you mean '%s'?",
					 def->name, key, near)
		      : warren_error_set(b->err, WARREN_ECONFIG, "pipeline '%s' has no input '%.64s'",
					 def->name, key);
	free(names);
	return rc;
}

static int read_given(binder *b, const char *const *keys, const char *const *values, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		long k = input_index(b->def, keys[i]);
		if (k < 0)
			return fail_unknown_key(b, keys[i]);
		if (b->input_mp[k])
			return warren_error_set(b->err, WARREN_ECONFIG, "input '%s' given twice",
						keys[i]);
		int rc = read_value(b, &b->def->inputs[k], values[i], &b->input_mp[k],
				    &b->input_len[k]);
		if (rc)
			return rc;
	}
	return 0;
}

static int apply_defaults(binder *b)
{
	for (size_t i = 0; i < b->def->n_inputs; i++) {
		const pipeline_input *in = &b->def->inputs[i];
		if (b->input_mp[i])
			continue;
		if (in->required)
			return warren_error_set(b->err, WARREN_ECONFIG,
						"pipeline '%s': missing required input '%s' (%s)",
						b->def->name, in->name, warren_type_name(in->type));
		b->input_mp[i] = in->default_mp;
		b->input_len[i] = in->default_len;
	}
	return 0;
}

static int unpack_inputs(binder *b)
{
	for (size_t i = 0; i < b->def->n_inputs; i++) {
		msgpack_unpacked_init(&b->values[i]);
		if (msgpack_unpack_next(&b->values[i], b->input_mp[i], b->input_len[i], NULL) !=
		    MSGPACK_UNPACK_SUCCESS)
			return fail_nomem(b);
	}
	return 0;
}

static int pack_inputs_map(binder *b, pipeline_bound *out)
{
	msgpack_sbuffer buf;
	msgpack_packer pk;
	msgpack_sbuffer_init(&buf);
	msgpack_packer_init(&pk, &buf, msgpack_sbuffer_write);
	int rc = msgpack_pack_map(&pk, b->def->n_inputs);
	for (size_t i = 0; rc == 0 && i < b->def->n_inputs; i++) {
		const char *name = b->def->inputs[i].name;
		rc = msgpack_pack_str(&pk, strlen(name));
		if (rc == 0)
			rc = msgpack_pack_str_body(&pk, name, strlen(name));
		if (rc == 0)
			rc = msgpack_pack_object(&pk, b->values[i].data);
	}
	rc = rc ? fail_nomem(b) : keep(b, &buf, &out->inputs_mp, &out->inputs_len);
	msgpack_sbuffer_destroy(&buf);
	return rc;
}

/* ---- templates ---- */

static uint32_t ext_index(const msgpack_object *o)
{
	const unsigned char *p = (const unsigned char *)o->via.ext.ptr;
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* "${input.x}" replaced by x's value as text, "$$" by '$'. */
static int interpolate(binder *b, msgpack_packer *pk, const char *s, size_t len)
{
	msgpack_sbuffer text;
	msgpack_sbuffer_init(&text);
	int rc = 0;
	for (size_t i = 0; rc == 0 && i < len; i++) {
		if (s[i] == '$' && i + 1 < len && s[i + 1] == '$') {
			rc = msgpack_sbuffer_write(&text, "$", 1);
			i++;
		} else if (s[i] == '$' && i + 1 < len && s[i + 1] == '{') {
			const char *name = s + i + strlen("${input.");
			size_t l = strcspn(name, "}");
			long k = -1;
			for (size_t j = 0; k < 0 && j < b->def->n_inputs; j++)
				if (strlen(b->def->inputs[j].name) == l &&
				    !strncmp(b->def->inputs[j].name, name, l))
					k = (long)j;
			rc = k < 0 ? -1 : config_pipeline_write_text(&text, &b->values[k].data, 0, NULL);
			i = (size_t)(name - s) + l;
		} else {
			rc = msgpack_sbuffer_write(&text, s + i, 1);
		}
	}
	if (rc == 0)
		rc = msgpack_pack_str(pk, text.size);
	if (rc == 0)
		rc = msgpack_pack_str_body(pk, text.data, text.size);
	msgpack_sbuffer_destroy(&text);
	return rc;
}

static int substitute(binder *b, msgpack_packer *pk, const msgpack_object *o)
{
	int rc = 0;
	switch (o->type) {
	case MSGPACK_OBJECT_EXT:
		if (o->via.ext.type == PIPELINE_EXT_INPUT && o->via.ext.size == 4 &&
		    ext_index(o) < b->def->n_inputs)
			return msgpack_pack_object(pk, b->values[ext_index(o)].data);
		if (o->via.ext.type == PIPELINE_EXT_FORMAT)
			return interpolate(b, pk, o->via.ext.ptr, o->via.ext.size);
		return -1;
	case MSGPACK_OBJECT_ARRAY:
		rc = msgpack_pack_array(pk, o->via.array.size);
		for (uint32_t i = 0; rc == 0 && i < o->via.array.size; i++)
			rc = substitute(b, pk, &o->via.array.ptr[i]);
		return rc;
	case MSGPACK_OBJECT_MAP:
		rc = msgpack_pack_map(pk, o->via.map.size);
		for (uint32_t i = 0; rc == 0 && i < o->via.map.size; i++) {
			rc = msgpack_pack_object(pk, o->via.map.ptr[i].key);
			if (rc == 0)
				rc = substitute(b, pk, &o->via.map.ptr[i].val);
		}
		return rc;
	default:
		return msgpack_pack_object(pk, *o);
	}
}

static int bind_template(binder *b, const pipeline_template *t, const unsigned char *empty,
			 const void **mp, size_t *len)
{
	if (!t->mp || t->n_refs == 0) {
		*mp = t->mp ? t->mp : empty;
		*len = t->mp ? t->len : 1;
		return 0;
	}
	msgpack_unpacked u;
	msgpack_unpacked_init(&u);
	msgpack_sbuffer buf;
	msgpack_packer pk;
	msgpack_sbuffer_init(&buf);
	msgpack_packer_init(&pk, &buf, msgpack_sbuffer_write);
	int rc = msgpack_unpack_next(&u, t->mp, t->len, NULL) == MSGPACK_UNPACK_SUCCESS
			 ? substitute(b, &pk, &u.data)
			 : -1;
	rc = rc ? fail_nomem(b) : keep(b, &buf, mp, len);
	msgpack_sbuffer_destroy(&buf);
	msgpack_unpacked_destroy(&u);
	return rc;
}

/* ---- the tree ---- */

static int bind_node(binder *b, const pipeline_node *node, pipeline_bound_node *out);

static int bind_list(binder *b, const pipeline_node *const *defs, size_t n,
		     const pipeline_bound_node **out)
{
	pipeline_bound_node *list = config_arena_alloc(b->arena, (n ? n : 1) * sizeof *list);
	if (!list)
		return fail_nomem(b);
	for (size_t i = 0; i < n; i++) {
		int rc = bind_node(b, defs[i], &list[i]);
		if (rc)
			return rc;
	}
	*out = list;
	return 0;
}

static int fail_over(binder *b, const pipeline_node *node, const char *what,
		     const msgpack_object *o)
{
	char text[64];
	msgpack_sbuffer buf;
	msgpack_sbuffer_init(&buf);
	if (config_pipeline_write_text(&buf, o, 1, NULL) == 0)
		snprintf(text, sizeof text, "%.*s%s", buf.size > 40 ? 40 : (int)buf.size,
			 buf.data ? buf.data : "", buf.size > 40 ? "..." : "");
	else
		snprintf(text, sizeof text, "?");
	msgpack_sbuffer_destroy(&buf);
	return warren_error_set(b->err, WARREN_ECONFIG, "%s:%u:%u: %s.map.over: expected %s, got %s",
				node->file, node->line, node->column, node->path, what, text);
}

/* One TASK child per item of a map's list. */
static int expand_map(binder *b, const pipeline_node *node, pipeline_bound_node *out,
		      const msgpack_object *items)
{
	if (items->type != MSGPACK_OBJECT_ARRAY)
		return fail_over(b, node, "a list", items);
	uint32_t n = items->via.array.size;
	pipeline_bound_node *list = config_arena_alloc(b->arena, (n ? n : 1) * sizeof *list);
	if (!list)
		return fail_nomem(b);
	pipeline_options o = node->options;
	o.immutable = 1; /* a map's tasks take their item, not a parent's result */
	o.set |= PIPELINE_OPT_IMMUTABLE;
	for (uint32_t i = 0; i < n; i++) {
		const msgpack_object *item = &items->via.array.ptr[i];
		if (node->starmap && item->type != MSGPACK_OBJECT_ARRAY)
			return fail_over(b, node, "a list of lists (starmap)", item);
		msgpack_sbuffer buf;
		msgpack_packer pk;
		msgpack_sbuffer_init(&buf);
		msgpack_packer_init(&pk, &buf, msgpack_sbuffer_write);
		list[i] = (pipeline_bound_node){ .kind = PIPELINE_TASK, .def = node,
						 .task = node->task, .kwargs_mp = empty_map,
						 .kwargs_len = 1, .options = o };
		int rc = node->starmap ? 0 : msgpack_pack_array(&pk, 1);
		rc = rc ? rc : msgpack_pack_object(&pk, *item);
		rc = rc ? fail_nomem(b) : keep(b, &buf, &list[i].args_mp, &list[i].args_len);
		msgpack_sbuffer_destroy(&buf);
		if (rc)
			return rc;
	}
	out->children = list;
	out->n_children = n;
	b->n_tasks += n;
	return 0;
}

static int bind_map(binder *b, const pipeline_node *node, pipeline_bound_node *out)
{
	int rc = bind_template(b, &node->over, empty_array, &out->items_mp, &out->items_len);
	if (rc)
		return rc;
	msgpack_unpacked u;
	msgpack_unpacked_init(&u);
	if (msgpack_unpack_next(&u, out->items_mp, out->items_len, NULL) != MSGPACK_UNPACK_SUCCESS)
		rc = fail_nomem(b);
	else
		rc = expand_map(b, node, out, &u.data);
	msgpack_unpacked_destroy(&u);
	return rc;
}

static int bind_node(binder *b, const pipeline_node *node, pipeline_bound_node *out)
{
	*out = (pipeline_bound_node){ .kind = node->kind, .def = node, .task = node->task,
				      .options = node->options };
	int rc = 0;
	switch (node->kind) {
	case PIPELINE_TASK:
		b->n_tasks++;
		rc = bind_template(b, &node->args, empty_array, &out->args_mp, &out->args_len);
		if (rc == 0)
			rc = bind_template(b, &node->kwargs, empty_map, &out->kwargs_mp,
					   &out->kwargs_len);
		return rc;
	case PIPELINE_MAP:
		return bind_map(b, node, out);
	case PIPELINE_CHORD: {
		pipeline_bound_node *parts = config_arena_alloc(b->arena, 2 * sizeof *parts);
		if (!parts)
			return fail_nomem(b);
		if ((rc = bind_node(b, node->header, &parts[0])) ||
		    (rc = bind_node(b, node->body, &parts[1])))
			return rc;
		out->header = &parts[0];
		out->body = &parts[1];
		out->children = parts[0].children;
		out->n_children = parts[0].n_children;
		return 0;
	}
	default:
		out->n_children = node->n_children;
		return bind_list(b, node->children, node->n_children, &out->children);
	}
}

/* ---- entry points ---- */

static int bind_all(binder *b, const char *const *keys, const char *const *values, size_t n,
		    pipeline_bound *out)
{
	int rc = read_given(b, keys, values, n);
	if (rc == 0)
		rc = apply_defaults(b);
	if (rc == 0)
		rc = unpack_inputs(b);
	if (rc == 0)
		rc = pack_inputs_map(b, out);
	pipeline_bound_node *root = rc ? NULL : config_arena_alloc(b->arena, sizeof *root);
	if (rc == 0 && !root)
		rc = fail_nomem(b);
	if (rc == 0)
		rc = bind_node(b, b->def->run, root);
	out->root = root;
	out->n_tasks = b->n_tasks;
	return rc;
}

int pipeline_bind(const pipeline_def *def, const char *const *keys, const char *const *values,
		  size_t n, pipeline_bound **out, warren_error *err)
{
	size_t n_in = def->n_inputs ? def->n_inputs : 1;
	pipeline_bound *bound = calloc(1, sizeof *bound);
	binder b = { .def = def, .err = err, .input_mp = calloc(n_in, sizeof *b.input_mp),
		     .input_len = calloc(n_in, sizeof *b.input_len),
		     .values = calloc(n_in, sizeof *b.values) };
	int rc = 0;
	if (!bound || !b.input_mp || !b.input_len || !b.values ||
	    !(b.arena = bound->arena = config_arena_new()))
		rc = fail_nomem(&b);
	if (bound)
		bound->def = def;
	if (rc == 0)
		rc = bind_all(&b, keys, values, n, bound);
	for (size_t i = 0; b.values && i < def->n_inputs; i++)
		msgpack_unpacked_destroy(&b.values[i]);
	free(b.values);
	free(b.input_len);
	free(b.input_mp);
	if (rc) {
		pipeline_bound_free(bound);
		return rc;
	}
	*out = bound;
	return 0;
}

void pipeline_bound_free(pipeline_bound *b)
{
	if (!b)
		return;
	config_arena_free(b->arena);
	free(b);
}
