/* config/pipeline_template.c - YAML args, kwargs and defaults to packed msgpack.
 *
 * A pipeline's args may refer to its inputs, whose values are known only
 * when the pipeline runs. So args are packed once, at load, into a template:
 * plain msgpack where the YAML is literal, and an ext value where it names
 * an input (see PIPELINE_EXT_INPUT/FORMAT in config.h). Binding then only
 * swaps those ext values, and a template without references is final.
 *
 * Reference syntax, in any string scalar (plain or quoted):
 *   $input.url          the whole value: replaced by the input, keeping its type
 *   "see ${input.url}"  inside a string: the input's value as text
 *   $$                  a literal '$'; any other '$' is literal too
 * `$input.x` inside a longer string is refused (it must be ${input.x} there),
 * as is "${" not followed by "input.NAME}".
 *
 * Scalars are typed strictly by YAML's core schema, as task defaults are
 * (config/tasks.c): 42 is an int, "42" a str, yes a str.
 */
#include <msgpack.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"

#define INPUT_PREFIX "$input."
#define FORMAT_PREFIX "${input."

/* The references found while packing one template. */
typedef struct ref_list {
	pipeline_ref *items;
	size_t n, cap;
} ref_list;

typedef struct packing {
	config_ctx *ctx;
	const pipeline_input *inputs;
	size_t n_inputs;
	const char *const *input_names; /* NULL-terminated, for hints */
	msgpack_packer pk;
	ref_list refs;
	int oom; /* the packer or the ref list could not grow */
} packing;

static int is_name_char(char c, int first)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' ||
	       (!first && c >= '0' && c <= '9');
}

int config_pipeline_name_ok(const char *s, size_t len)
{
	if (len == 0 || len > 64)
		return 0;
	for (size_t i = 0; i < len; i++)
		if (!is_name_char(s[i], i == 0))
			return 0;
	return 1;
}

/* Length of the identifier at s (0 when none). */
static size_t name_len(const char *s)
{
	size_t n = 0;
	while (s[n] && is_name_char(s[n], n == 0))
		n++;
	return n;
}

int config_pipeline_whole_ref(const config_node *n, const char **name, size_t *len)
{
	if (n->kind != CONFIG_NODE_SCALAR || config_scalar_kind_of(n) != CONFIG_SCALAR_STR ||
	    strncmp(n->text, INPUT_PREFIX, strlen(INPUT_PREFIX)) != 0)
		return 0;
	const char *s = n->text + strlen(INPUT_PREFIX);
	size_t l = name_len(s);
	if (l == 0 || s[l] != '\0')
		return 0;
	*name = s;
	*len = l;
	return 1;
}

static long find_input(const packing *p, const char *name, size_t len)
{
	for (size_t i = 0; i < p->n_inputs; i++)
		if (strlen(p->inputs[i].name) == len && !strncmp(p->inputs[i].name, name, len))
			return (long)i;
	return -1;
}

static int fail_unknown_input(packing *p, const config_node *n, const char *name, size_t len)
{
	char word[72];
	snprintf(word, sizeof word, "%.*s", (int)(len > 64 ? 64 : len), name);
	const char *near = p->input_names ? config_nearest(word, p->input_names) : NULL;
	if (near)
		return config_fail(p->ctx, n, "unknown input '%s'; did you mean '%s'?", word, near);
	if (p->n_inputs == 0)
		return config_fail(p->ctx, n, "unknown input '%s': the pipeline declares no inputs",
				   word);
	return config_fail(p->ctx, n, "unknown input '%s'", word);
}

static int add_ref(packing *p, const config_node *n, size_t input, int whole)
{
	ref_list *r = &p->refs;
	if (r->n == r->cap) {
		size_t cap = r->cap ? r->cap * 2 : 4;
		pipeline_ref *items = realloc(r->items, cap * sizeof *items);
		if (!items) {
			p->oom = 1;
			return config_fail_nomem(p->ctx);
		}
		r->items = items;
		r->cap = cap;
	}
	r->items[r->n++] = (pipeline_ref){ .input = input, .whole = whole, .line = n->line,
					   .column = n->column };
	return 0;
}

/* msgpack's packers fail only when the buffer cannot grow. */
static int packed(packing *p, int rc)
{
	if (rc == 0)
		return 0;
	p->oom = 1;
	return config_fail_nomem(p->ctx);
}

static int pack_whole_ref(packing *p, const config_node *n, const char *name, size_t len)
{
	long i = find_input(p, name, len);
	if (i < 0)
		return fail_unknown_input(p, n, name, len);
	int rc = add_ref(p, n, (size_t)i, 1);
	if (rc)
		return rc;
	unsigned char be[4] = { (unsigned char)(i >> 24), (unsigned char)(i >> 16),
				(unsigned char)(i >> 8), (unsigned char)i };
	rc = msgpack_pack_ext(&p->pk, sizeof be, PIPELINE_EXT_INPUT);
	if (rc == 0)
		rc = msgpack_pack_ext_body(&p->pk, be, sizeof be);
	return packed(p, rc);
}

/* Scans a string for "${input.x}", "$$" and misplaced "$input.x". On
 * success *refs says how many inputs it interpolates and *dollars how many
 * "$$" it holds. */
static int scan_string(packing *p, const config_node *n, size_t *refs, size_t *dollars)
{
	const char *s = n->text;
	*refs = *dollars = 0;
	for (size_t i = 0; i < n->len; i++) {
		if (s[i] != '$')
			continue;
		if (s[i + 1] == '$') {
			(*dollars)++;
			i++;
		} else if (!strncmp(s + i, INPUT_PREFIX, strlen(INPUT_PREFIX))) {
			size_t l = name_len(s + i + strlen(INPUT_PREFIX));
			return config_fail(p->ctx, n,
					   "'$input.%.*s' inside a string: write ${input.%.*s} "
					   "to interpolate, or $$ for a literal '$'",
					   (int)l, s + i + 7, (int)l, s + i + 7);
		} else if (s[i + 1] == '{') {
			const char *name = s + i + strlen(FORMAT_PREFIX);
			size_t l = strncmp(s + i, FORMAT_PREFIX, strlen(FORMAT_PREFIX)) ? 0
											 : name_len(name);
			if (l == 0 || name[l] != '}')
				return config_fail(p->ctx, n,
						   "expected ${input.NAME} after '${', or $$ for a "
						   "literal '$'");
			long k = find_input(p, name, l);
			if (k < 0)
				return fail_unknown_input(p, n, name, l);
			int rc = add_ref(p, n, (size_t)k, 0);
			if (rc)
				return rc;
			(*refs)++;
			i += strlen(FORMAT_PREFIX) + l;
		}
	}
	return 0;
}

/* A string without interpolation, with "$$" made '$'. */
static int pack_unescaped(packing *p, const char *s, size_t len, size_t dollars)
{
	int rc = msgpack_pack_str(&p->pk, len - dollars);
	for (size_t i = 0; rc == 0 && i < len; i++) {
		rc = msgpack_pack_str_body(&p->pk, s + i, 1);
		if (s[i] == '$' && i + 1 < len && s[i + 1] == '$')
			i++;
	}
	return packed(p, rc);
}

static int pack_string(packing *p, const config_node *n)
{
	const char *name;
	size_t len, refs, dollars;
	if (config_pipeline_whole_ref(n, &name, &len))
		return pack_whole_ref(p, n, name, len);
	int rc = scan_string(p, n, &refs, &dollars);
	if (rc)
		return rc;
	if (refs) {
		rc = msgpack_pack_ext(&p->pk, n->len, PIPELINE_EXT_FORMAT);
		if (rc == 0)
			rc = msgpack_pack_ext_body(&p->pk, n->text, n->len);
		return packed(p, rc);
	}
	if (dollars)
		return pack_unescaped(p, n->text, n->len, dollars);
	rc = msgpack_pack_str(&p->pk, n->len);
	if (rc == 0)
		rc = msgpack_pack_str_body(&p->pk, n->text, n->len);
	return packed(p, rc);
}

/* A literal scalar; refs is 0 for map keys and defaults. */
static int pack_scalar(packing *p, const config_node *n, int refs)
{
	long long i;
	double d;
	switch (config_scalar_kind_of(n)) {
	case CONFIG_SCALAR_NULL:
		return packed(p, msgpack_pack_nil(&p->pk));
	case CONFIG_SCALAR_BOOL:
		return packed(p, (n->text[0] == 't' || n->text[0] == 'T') ? msgpack_pack_true(&p->pk)
									  : msgpack_pack_false(&p->pk));
	case CONFIG_SCALAR_INT:
		if (config_parse_int(n->text, &i))
			return config_fail_expected(p->ctx, n, "an integer that fits in 64 bits");
		return packed(p, msgpack_pack_int64(&p->pk, i));
	case CONFIG_SCALAR_FLOAT:
		if (config_parse_float(n->text, &d))
			return config_fail_expected(p->ctx, n, "a floating-point number");
		return packed(p, msgpack_pack_double(&p->pk, d));
	case CONFIG_SCALAR_STR:
	default:
		if (refs)
			return pack_string(p, n);
		if (msgpack_pack_str(&p->pk, n->len))
			return packed(p, -1);
		return packed(p, msgpack_pack_str_body(&p->pk, n->text, n->len));
	}
}

static int pack_node(packing *p, const config_node *n, int refs)
{
	int rc;
	if (n->kind == CONFIG_NODE_SCALAR)
		return pack_scalar(p, n, refs);
	if (n->kind == CONFIG_NODE_SEQ) {
		rc = packed(p, msgpack_pack_array(&p->pk, n->n_items));
		for (size_t i = 0; rc == 0 && i < n->n_items; i++) {
			size_t old = config_path_push_index(p->ctx, i);
			rc = pack_node(p, n->items[i], refs);
			config_path_pop(p->ctx, old);
		}
		return rc;
	}
	rc = packed(p, msgpack_pack_map(&p->pk, n->n_pairs));
	for (size_t i = 0; rc == 0 && i < n->n_pairs; i++) {
		size_t old = config_path_push(p->ctx, n->pairs[i].key->text);
		rc = pack_scalar(p, n->pairs[i].key, 0);
		if (rc == 0)
			rc = pack_node(p, n->pairs[i].value, refs);
		config_path_pop(p->ctx, old);
	}
	return rc;
}

/* Copies the packed bytes and refs of p into the arena as *out. */
static int finish(packing *p, const msgpack_sbuffer *buf, pipeline_template *out)
{
	void *mp = config_arena_alloc(p->ctx->arena, buf->size);
	pipeline_ref *refs = NULL;
	if (mp && p->refs.n)
		refs = config_arena_alloc(p->ctx->arena, p->refs.n * sizeof *refs);
	if (!mp || (p->refs.n && !refs))
		return config_fail_nomem(p->ctx);
	memcpy(mp, buf->data, buf->size);
	if (p->refs.n)
		memcpy(refs, p->refs.items, p->refs.n * sizeof *refs);
	*out = (pipeline_template){ .mp = mp, .len = buf->size, .refs = refs,
				    .n_refs = p->refs.n };
	return 0;
}

int config_pipeline_pack(config_ctx *ctx, const pipeline_input *inputs, size_t n_inputs,
			 const char *const *input_names, const config_node *n,
			 pipeline_template *out)
{
	msgpack_sbuffer buf;
	msgpack_sbuffer_init(&buf);
	packing p = { .ctx = ctx, .inputs = inputs, .n_inputs = n_inputs,
		      .input_names = input_names };
	msgpack_packer_init(&p.pk, &buf, msgpack_sbuffer_write);
	int rc = pack_node(&p, n, 1);
	if (rc == 0)
		rc = finish(&p, &buf, out);
	free(p.refs.items);
	msgpack_sbuffer_destroy(&buf);
	return rc;
}

/* ---- input defaults ---- */

static int default_matches(const config_node *n, warren_type type)
{
	warren_type have = config_pipeline_literal_type(n);
	if (type == WARREN_TYPE_ANY || have == type)
		return 1;
	return type == WARREN_TYPE_FLOAT && have == WARREN_TYPE_INT;
}

static const char *literal_type_name(const config_node *n)
{
	return warren_type_name(config_pipeline_literal_type(n));
}

int config_pipeline_pack_default(config_ctx *ctx, const config_node *n, warren_type type,
				 const void **mp, size_t *len)
{
	/* A bytes default is written as a string and packed as bin. */
	int bytes = type == WARREN_TYPE_BYTES &&
		    config_pipeline_literal_type(n) == WARREN_TYPE_STR;
	if (!bytes && !default_matches(n, type)) {
		char got[64];
		config_got(n, got, sizeof got);
		if (n->kind != CONFIG_NODE_SCALAR)
			return config_fail(ctx, n, "expected a value of type %s, got %s",
					   warren_type_name(type), got);
		return config_fail(ctx, n, "expected a value of type %s, got %s %s",
				   warren_type_name(type), literal_type_name(n), got);
	}
	msgpack_sbuffer buf;
	msgpack_sbuffer_init(&buf);
	packing p = { .ctx = ctx };
	msgpack_packer_init(&p.pk, &buf, msgpack_sbuffer_write);
	long long i;
	int rc;
	if (bytes) {
		rc = msgpack_pack_bin(&p.pk, n->len);
		rc = packed(&p, rc ? rc : msgpack_pack_bin_body(&p.pk, n->text, n->len));
	} else if (type == WARREN_TYPE_FLOAT && config_scalar_kind_of(n) == CONFIG_SCALAR_INT &&
		   config_parse_int(n->text, &i) == 0) {
		rc = packed(&p, msgpack_pack_double(&p.pk, (double)i));
	} else {
		rc = pack_node(&p, n, 0);
	}
	pipeline_template t;
	if (rc == 0 && (rc = finish(&p, &buf, &t)) == 0) {
		*mp = t.mp;
		*len = t.len;
	}
	msgpack_sbuffer_destroy(&buf);
	return rc;
}

/* ---- static types, for checking args against task schemas ---- */

warren_type config_pipeline_literal_type(const config_node *n)
{
	static const warren_type scalar_types[] = {
		[CONFIG_SCALAR_NULL] = WARREN_TYPE_NULL, [CONFIG_SCALAR_BOOL] = WARREN_TYPE_BOOL,
		[CONFIG_SCALAR_INT] = WARREN_TYPE_INT,	 [CONFIG_SCALAR_FLOAT] = WARREN_TYPE_FLOAT,
		[CONFIG_SCALAR_STR] = WARREN_TYPE_STR,
	};
	if (n->kind == CONFIG_NODE_SEQ)
		return WARREN_TYPE_LIST;
	if (n->kind == CONFIG_NODE_MAP)
		return WARREN_TYPE_MAP;
	return scalar_types[config_scalar_kind_of(n)];
}
