/* config/tree.c - YAML text to the generic node tree, with libyaml's event API.
 *
 * We build our own small tree instead of using yaml_document_t because the
 * loader must refuse hostile input before it costs anything: libyaml's
 * document loader would expand nothing either, but it knows no node budget,
 * allows recursive aliases and keeps duplicate keys. Here an alias is a
 * second pointer to the anchored node (never a copy), yet it is counted as
 * the nodes it stands for, so anything walking the tree walks at most
 * CONFIG_MAX_NODES nodes at most CONFIG_MAX_DEPTH deep.
 */
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include "config.h"

/* A collection being built: its children gather in a malloc'd vector and
 * move into the arena when it ends. For a map, keys and values alternate. */
typedef struct frame {
	config_node *node;
	const config_node **items;
	size_t n, cap;
	size_t nodes_before; /* the node count before this collection began */
	const char *anchor;  /* registered at the end: no alias to itself */
} frame;

typedef struct anchor_slot {
	const char *name;
	const config_node *node;
} anchor_slot;

typedef struct builder {
	const char *name;
	const char *text;
	size_t len;
	config_arena *arena;
	warren_error *err;
	frame stack[CONFIG_MAX_DEPTH];
	size_t depth;
	anchor_slot *anchors; /* open addressing, power-of-two size */
	size_t n_anchors, anchor_cap;
	size_t n_nodes; /* with aliases expanded */
	const config_node *root;
	int documents;
} builder;

static int fail_at(builder *b, unsigned line, unsigned column, int code, const char *fmt, ...)
	WARREN_PRINTF(5, 6);

static int fail_at(builder *b, unsigned line, unsigned column, int code, const char *fmt, ...)
{
	char what[WARREN_ERROR_MSG_MAX];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(what, sizeof what, fmt, ap);
	va_end(ap);
	return warren_error_set(b->err, code, "%s:%u:%u: %s", b->name, line, column, what);
}

static int fail_nomem(builder *b)
{
	return warren_error_set(b->err, WARREN_ENOMEM, "%s: out of memory while parsing", b->name);
}

/* The dotted key path to the collection on top of the stack, for messages. */
static void stack_path(const builder *b, char *buf, size_t size)
{
	size_t used = 0;
	buf[0] = '\0';
	for (size_t i = 0; i + 1 < b->depth && used < size; i++) {
		const frame *f = &b->stack[i];
		int w;
		if (f->node->kind == CONFIG_NODE_MAP)
			w = snprintf(buf + used, size - used, "%s%s", used ? "." : "",
				     f->items[f->n - 1]->text);
		else
			w = snprintf(buf + used, size - used, "[%zu]", f->n);
		if (w < 0)
			return;
		used += (size_t)w;
	}
}

/* ---- anchors ---- */

static size_t hash_name(const char *s)
{
	size_t h = 1469598103934665603u; /* FNV-1a */
	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 1099511628211u;
	return h;
}

static anchor_slot *anchor_slot_for(builder *b, const char *name)
{
	size_t mask = b->anchor_cap - 1;
	for (size_t i = hash_name(name) & mask;; i = (i + 1) & mask) {
		anchor_slot *s = &b->anchors[i];
		if (!s->name || strcmp(s->name, name) == 0)
			return s;
	}
}

static int anchor_grow(builder *b)
{
	size_t old_cap = b->anchor_cap;
	anchor_slot *old = b->anchors;
	size_t cap = old_cap ? old_cap * 2 : 64;
	b->anchors = calloc(cap, sizeof *b->anchors);
	if (!b->anchors) {
		b->anchors = old;
		return fail_nomem(b);
	}
	b->anchor_cap = cap;
	for (size_t i = 0; i < old_cap; i++)
		if (old[i].name)
			*anchor_slot_for(b, old[i].name) = old[i];
	free(old);
	return 0;
}

/* A later anchor of the same name replaces the earlier one, as YAML says.
 * name must live as long as the builder (an arena copy). */
static int anchor_define(builder *b, const char *name, const config_node *node)
{
	if (2 * (b->n_anchors + 1) > b->anchor_cap) {
		int rc = anchor_grow(b);
		if (rc)
			return rc;
	}
	anchor_slot *s = anchor_slot_for(b, name);
	if (!s->name)
		b->n_anchors++;
	s->name = name;
	s->node = node;
	return 0;
}

static const config_node *anchor_find(builder *b, const char *name)
{
	if (b->anchor_cap == 0)
		return NULL;
	return anchor_slot_for(b, name)->node;
}

/* ---- nodes ---- */

static config_node *node_new(builder *b, config_node_kind kind, yaml_mark_t mark,
			     const yaml_char_t *tag)
{
	config_node *n = config_arena_alloc(b->arena, sizeof *n);
	if (!n)
		return NULL;
	n->kind = kind;
	n->line = (unsigned)mark.line + 1;
	n->column = (unsigned)mark.column + 1;
	n->height = 1;
	if (tag) {
		n->tag = config_arena_strndup(b->arena, (const char *)tag, strlen((const char *)tag));
		if (!n->tag)
			return NULL;
	}
	return n;
}

static int count_nodes(builder *b, size_t more, unsigned line, unsigned column)
{
	if (more > CONFIG_MAX_NODES - b->n_nodes)
		return fail_at(b, line, column, WARREN_ELIMIT,
			       "document too large: more than %d nodes once aliases are expanded",
			       CONFIG_MAX_NODES);
	b->n_nodes += more;
	return 0;
}

/* Adds a finished node (or an alias's target) to the collection on top. */
static int attach(builder *b, const config_node *n, unsigned line, unsigned column)
{
	if (b->depth == 0) {
		b->root = n;
		return 0;
	}
	frame *f = &b->stack[b->depth - 1];
	if (b->depth + n->height > CONFIG_MAX_DEPTH)
		return fail_at(b, line, column, WARREN_ELIMIT, "nested more than %d levels deep",
			       CONFIG_MAX_DEPTH);
	if (f->node->kind == CONFIG_NODE_MAP && f->n % 2 == 0 && n->kind != CONFIG_NODE_SCALAR)
		return fail_at(b, line, column, WARREN_ECONFIG,
			       "expected a scalar key, got a %s",
			       n->kind == CONFIG_NODE_MAP ? "mapping" : "sequence");
	if (f->n == f->cap) {
		size_t cap = f->cap ? f->cap * 2 : 8;
		const config_node **items = realloc(f->items, cap * sizeof *items);
		if (!items)
			return fail_nomem(b);
		f->items = items;
		f->cap = cap;
	}
	f->items[f->n++] = n;
	if (f->node->height < n->height + 1)
		f->node->height = n->height + 1;
	return 0;
}

static int on_scalar(builder *b, const yaml_event_t *ev)
{
	const char *value = (const char *)ev->data.scalar.value;
	size_t len = ev->data.scalar.length;
	unsigned line = (unsigned)ev->start_mark.line + 1, column = (unsigned)ev->start_mark.column + 1;
	int rc = count_nodes(b, 1, line, column);
	if (rc)
		return rc;
	/* Every consumer wants a C string, so a NUL inside ("\0") would
	 * silently cut it short. */
	if (memchr(value, '\0', len))
		return fail_at(b, line, column, WARREN_ECONFIG, "NUL character in a scalar");
	config_node *n = node_new(b, CONFIG_NODE_SCALAR, ev->start_mark, ev->data.scalar.tag);
	if (!n || !(n->text = config_arena_strndup(b->arena, value, len)))
		return fail_nomem(b);
	n->len = len;
	n->plain = ev->data.scalar.style == YAML_PLAIN_SCALAR_STYLE && !n->tag;
	n->weight = 1;
	if (ev->data.scalar.anchor) {
		/* The event's anchor dies with the event; the table keeps a copy. */
		const char *anchor = (const char *)ev->data.scalar.anchor;
		const char *name = config_arena_strndup(b->arena, anchor, strlen(anchor));
		if (!name)
			return fail_nomem(b);
		if ((rc = anchor_define(b, name, n)))
			return rc;
	}
	return attach(b, n, line, column);
}

static int on_alias(builder *b, const yaml_event_t *ev)
{
	const char *name = (const char *)ev->data.alias.anchor;
	unsigned line = (unsigned)ev->start_mark.line + 1, column = (unsigned)ev->start_mark.column + 1;
	const config_node *target = anchor_find(b, name);
	if (!target)
		return fail_at(b, line, column, WARREN_ECONFIG,
			       "alias '*%.64s' names no anchor defined before it", name);
	int rc = count_nodes(b, target->weight, line, column);
	if (rc)
		return rc;
	return attach(b, target, line, column);
}

static int on_collection_start(builder *b, const yaml_event_t *ev, config_node_kind kind)
{
	unsigned line = (unsigned)ev->start_mark.line + 1, column = (unsigned)ev->start_mark.column + 1;
	if (b->depth >= CONFIG_MAX_DEPTH)
		return fail_at(b, line, column, WARREN_ELIMIT, "nested more than %d levels deep",
			       CONFIG_MAX_DEPTH);
	if (b->depth > 0) {
		const frame *parent = &b->stack[b->depth - 1];
		if (parent->node->kind == CONFIG_NODE_MAP && parent->n % 2 == 0)
			return fail_at(b, line, column, WARREN_ECONFIG,
				       "expected a scalar key, got a %s",
				       kind == CONFIG_NODE_MAP ? "mapping" : "sequence");
	}
	size_t before = b->n_nodes;
	int rc = count_nodes(b, 1, line, column);
	if (rc)
		return rc;
	const yaml_char_t *tag = kind == CONFIG_NODE_MAP ? ev->data.mapping_start.tag
							 : ev->data.sequence_start.tag;
	const yaml_char_t *anchor = kind == CONFIG_NODE_MAP ? ev->data.mapping_start.anchor
							    : ev->data.sequence_start.anchor;
	config_node *n = node_new(b, kind, ev->start_mark, tag);
	if (!n)
		return fail_nomem(b);
	frame *f = &b->stack[b->depth++];
	memset(f, 0, sizeof *f);
	f->node = n;
	f->nodes_before = before;
	if (anchor) {
		f->anchor = config_arena_strndup(b->arena, (const char *)anchor,
						 strlen((const char *)anchor));
		if (!f->anchor)
			return fail_nomem(b);
	}
	return 0;
}

typedef struct key_ref {
	const char *text;
	size_t index;
} key_ref;

static int key_ref_cmp(const void *a, const void *b)
{
	const key_ref *x = a, *y = b;
	int c = strcmp(x->text, y->text);
	if (c)
		return c;
	return x->index < y->index ? -1 : x->index > y->index;
}

/* Refuses the first (in document order) repeated key of a finished map.
 * Sorting keeps this O(n log n) for a map with many keys. */
static int check_duplicate_keys(builder *b, const config_node *map)
{
	size_t n = map->n_pairs;
	if (n < 2)
		return 0;
	key_ref *refs = malloc(n * sizeof *refs);
	if (!refs)
		return fail_nomem(b);
	for (size_t i = 0; i < n; i++)
		refs[i] = (key_ref){ map->pairs[i].key->text, i };
	qsort(refs, n, sizeof *refs, key_ref_cmp);
	size_t dup = SIZE_MAX, first = 0;
	for (size_t i = 1; i < n; i++) {
		if (strcmp(refs[i - 1].text, refs[i].text) == 0 && refs[i].index < dup &&
		    (i < 2 || strcmp(refs[i - 2].text, refs[i].text) != 0)) {
			dup = refs[i].index;
			first = refs[i - 1].index;
		}
	}
	free(refs);
	if (dup == SIZE_MAX)
		return 0;
	const config_node *k = map->pairs[dup].key, *k0 = map->pairs[first].key;
	char path[160];
	stack_path(b, path, sizeof path);
	return fail_at(b, k->line, k->column, WARREN_ECONFIG,
		       "%s%s%.64s: duplicate key (first at line %u, column %u)", path,
		       path[0] ? "." : "", k->text, k0->line, k0->column);
}

static int is_merge_key(const config_node *key)
{
	return (key->plain && !strcmp(key->text, "<<")) ||
	       (key->tag && !strcmp(key->tag, "tag:yaml.org,2002:merge"));
}

typedef struct merge_ref {
	const config_pair *pair;
	const char *text;
	size_t source; /* 0: the map's own keys; i: the i-th merged map */
	size_t order;  /* position in the merged result */
	int keep;
} merge_ref;

static int merge_ref_by_key(const void *a, const void *b)
{
	const merge_ref *x = a, *y = b;
	int c = strcmp(x->text, y->text);
	if (c)
		return c;
	if (x->source != y->source)
		return x->source < y->source ? -1 : 1;
	return x->order < y->order ? -1 : x->order > y->order;
}

static int merge_ref_by_order(const void *a, const void *b)
{
	const merge_ref *x = a, *y = b;
	return x->order < y->order ? -1 : x->order > y->order;
}

/* The maps a "<<" value names: one map or a sequence of maps. */
static int merge_sources(builder *b, const config_node *value, const config_node *const **maps,
			 size_t *n_maps)
{
	if (value->kind == CONFIG_NODE_MAP) {
		const config_node **one = config_arena_alloc(b->arena, sizeof *one);
		if (!one)
			return fail_nomem(b);
		one[0] = value;
		*maps = one;
		*n_maps = 1;
		return 0;
	}
	int all_maps = value->kind == CONFIG_NODE_SEQ;
	for (size_t i = 0; all_maps && i < value->n_items; i++)
		all_maps = value->items[i]->kind == CONFIG_NODE_MAP;
	if (all_maps) {
		*maps = value->items;
		*n_maps = value->n_items;
		return 0;
	}
	return fail_at(b, value->line, value->column, WARREN_ECONFIG,
		       "expected a mapping or a sequence of mappings to merge with <<");
}

/* YAML merge keys ("<<: *defaults"): the map's own keys win, then earlier
 * merged maps over later ones. The merged pairs were counted against the
 * node budget when their alias was, so this adds no expansion of its own. */
static int apply_merge_key(builder *b, config_node *map)
{
	size_t merge_at = SIZE_MAX;
	for (size_t i = 0; i < map->n_pairs && merge_at == SIZE_MAX; i++)
		if (is_merge_key(map->pairs[i].key))
			merge_at = i;
	if (merge_at == SIZE_MAX)
		return 0;
	const config_node *const *maps = NULL;
	size_t n_maps = 0, total = map->n_pairs - 1;
	int rc = merge_sources(b, map->pairs[merge_at].value, &maps, &n_maps);
	if (rc)
		return rc;
	for (size_t m = 0; m < n_maps; m++)
		total += maps[m]->n_pairs;
	merge_ref *refs = malloc((total ? total : 1) * sizeof *refs);
	if (!refs)
		return fail_nomem(b);
	size_t n = 0;
	for (size_t i = 0; i < map->n_pairs; i++) {
		if (i == merge_at)
			continue;
		refs[n] = (merge_ref){ &map->pairs[i], map->pairs[i].key->text, 0, n, 0 };
		n++;
	}
	for (size_t m = 0; m < n_maps; m++) {
		for (size_t i = 0; i < maps[m]->n_pairs; i++) {
			const config_pair *p = &maps[m]->pairs[i];
			refs[n] = (merge_ref){ p, p->key->text, m + 1, n, 0 };
			n++;
		}
	}
	qsort(refs, n, sizeof *refs, merge_ref_by_key);
	for (size_t i = 0; i < n; i++)
		refs[i].keep = i == 0 || strcmp(refs[i - 1].text, refs[i].text) != 0;
	qsort(refs, n, sizeof *refs, merge_ref_by_order);
	config_pair *pairs = config_arena_alloc(b->arena, (n ? n : 1) * sizeof *pairs);
	size_t kept = 0;
	for (size_t i = 0; pairs && i < n; i++)
		if (refs[i].keep)
			pairs[kept++] = *refs[i].pair;
	free(refs);
	if (!pairs)
		return fail_nomem(b);
	map->pairs = pairs;
	map->n_pairs = kept;
	return 0;
}

static int on_collection_end(builder *b)
{
	frame *f = &b->stack[b->depth - 1];
	config_node *n = f->node;
	int rc = 0;
	if (n->kind == CONFIG_NODE_MAP) {
		config_pair *pairs = config_arena_alloc(b->arena, (f->n / 2) * sizeof *pairs);
		if (!pairs)
			return fail_nomem(b);
		for (size_t i = 0; i + 1 < f->n; i += 2)
			pairs[i / 2] = (config_pair){ f->items[i], f->items[i + 1] };
		n->pairs = pairs;
		n->n_pairs = f->n / 2;
		rc = check_duplicate_keys(b, n);
		if (rc == 0)
			rc = apply_merge_key(b, n);
	} else {
		const config_node **items = config_arena_alloc(b->arena, f->n * sizeof *items);
		if (!items)
			return fail_nomem(b);
		if (f->n)
			memcpy(items, f->items, f->n * sizeof *items);
		n->items = items;
		n->n_items = f->n;
	}
	if (rc)
		return rc;
	n->weight = b->n_nodes - f->nodes_before;
	if (f->anchor && (rc = anchor_define(b, f->anchor, n)))
		return rc;
	free(f->items);
	f->items = NULL;
	b->depth--;
	return attach(b, n, n->line, n->column);
}

static int on_event(builder *b, const yaml_event_t *ev)
{
	switch (ev->type) {
	case YAML_DOCUMENT_START_EVENT:
		if (b->documents++ > 0)
			return fail_at(b, (unsigned)ev->start_mark.line + 1,
				       (unsigned)ev->start_mark.column + 1, WARREN_ECONFIG,
				       "expected a single YAML document, found another");
		return 0;
	case YAML_SCALAR_EVENT:
		return on_scalar(b, ev);
	case YAML_ALIAS_EVENT:
		return on_alias(b, ev);
	case YAML_SEQUENCE_START_EVENT:
		return on_collection_start(b, ev, CONFIG_NODE_SEQ);
	case YAML_MAPPING_START_EVENT:
		return on_collection_start(b, ev, CONFIG_NODE_MAP);
	case YAML_SEQUENCE_END_EVENT:
	case YAML_MAPPING_END_EVENT:
		return on_collection_end(b);
	default:
		return 0;
	}
}

/* libyaml's reader errors carry a byte offset, not a mark. */
static void offset_to_mark(const builder *b, size_t offset, unsigned *line, unsigned *column)
{
	*line = 1;
	*column = 1;
	for (size_t i = 0; i < offset && i < b->len; i++) {
		if (b->text[i] == '\n') {
			(*line)++;
			*column = 1;
		} else if (((unsigned char)b->text[i] & 0xC0) != 0x80) {
			(*column)++;
		}
	}
}

static int syntax_error(builder *b, const yaml_parser_t *p)
{
	const char *problem = p->problem ? p->problem : "unknown problem";
	if (p->error == YAML_MEMORY_ERROR)
		return fail_nomem(b);
	if (p->error == YAML_READER_ERROR) {
		unsigned line, column;
		offset_to_mark(b, p->problem_offset, &line, &column);
		return fail_at(b, line, column, WARREN_ECONFIG, "yaml: %s", problem);
	}
	unsigned line = (unsigned)p->problem_mark.line + 1;
	unsigned column = (unsigned)p->problem_mark.column + 1;
	if (p->context)
		return fail_at(b, line, column, WARREN_ECONFIG, "yaml: %s %s at line %u, column %u",
			       problem, p->context, (unsigned)p->context_mark.line + 1,
			       (unsigned)p->context_mark.column + 1);
	return fail_at(b, line, column, WARREN_ECONFIG, "yaml: %s", problem);
}

int config_tree_parse(const char *text, size_t len, const char *name, config_arena *arena,
		      const config_node **root, warren_error *err)
{
	builder b = { .name = name, .text = text, .len = len, .arena = arena, .err = err };
	yaml_parser_t parser;
	int rc = 0;

	if (!yaml_parser_initialize(&parser))
		return fail_nomem(&b);
	yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
	for (;;) {
		yaml_event_t ev;
		if (!yaml_parser_parse(&parser, &ev)) {
			rc = syntax_error(&b, &parser);
			break;
		}
		rc = on_event(&b, &ev);
		int done = ev.type == YAML_STREAM_END_EVENT;
		yaml_event_delete(&ev);
		if (rc || done)
			break;
	}
	for (size_t i = 0; i < b.depth; i++)
		free(b.stack[i].items);
	free(b.anchors);
	yaml_parser_delete(&parser);
	if (rc == 0)
		*root = b.root;
	return rc;
}
