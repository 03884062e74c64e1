/* config/value.c - reading typed values out of nodes, and the error messages.
 *
 * Every section parser goes through these readers so that every error has
 * the same shape: "file:line:col: key.path: expected <what>, got <value>".
 * Config values are read leniently ("42" quoted is still 42; yes/no are
 * booleans, as PyYAML users expect); task argument defaults are not, see
 * config_scalar_kind_of() and tasks.c.
 */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "config.h"

#define TAG_PREFIX "tag:yaml.org,2002:"

/* ---- scalars ---- */

static int is_int_text(const char *s)
{
	if (s[0] == '0' && (s[1] == 'x' || s[1] == 'o')) {
		const char *digits = s[1] == 'x' ? "0123456789abcdefABCDEF" : "01234567";
		return s[2] && strspn(s + 2, digits) == strlen(s + 2);
	}
	if (*s == '-' || *s == '+')
		s++;
	return *s && strspn(s, "0123456789") == strlen(s);
}

int config_parse_int(const char *text, long long *out)
{
	if (!is_int_text(text))
		return WARREN_EINVAL;
	int base = 10;
	const char *digits = text;
	if (text[0] == '0' && (text[1] == 'x' || text[1] == 'o')) {
		base = text[1] == 'x' ? 16 : 8;
		digits = text + 2;
	}
	errno = 0;
	char *end;
	long long v = strtoll(digits, &end, base);
	if (errno || *end)
		return WARREN_EINVAL;
	*out = v;
	return 0;
}

/* YAML 1.2 core: [-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)? and .inf/.nan. */
static int is_float_text(const char *s)
{
	if (*s == '-' || *s == '+')
		s++;
	if (!strcmp(s, ".inf") || !strcmp(s, ".Inf") || !strcmp(s, ".INF"))
		return 1;
	size_t int_digits = strspn(s, "0123456789");
	s += int_digits;
	size_t frac_digits = 0;
	if (*s == '.') {
		s++;
		frac_digits = strspn(s, "0123456789");
		s += frac_digits;
	}
	if (int_digits + frac_digits == 0)
		return 0;
	if (*s == 'e' || *s == 'E') {
		s++;
		if (*s == '-' || *s == '+')
			s++;
		size_t exp_digits = strspn(s, "0123456789");
		if (!exp_digits)
			return 0;
		s += exp_digits;
	}
	return *s == '\0';
}

int config_parse_float(const char *text, double *out)
{
	const char *s = text;
	int negative = *s == '-';
	if (!strcmp(text, ".nan") || !strcmp(text, ".NaN") || !strcmp(text, ".NAN")) {
		*out = NAN;
		return 0;
	}
	if (!is_float_text(text))
		return WARREN_EINVAL;
	if (*s == '-' || *s == '+')
		s++;
	if (*s == '.' && (s[1] == 'i' || s[1] == 'I')) {
		*out = negative ? -INFINITY : INFINITY;
		return 0;
	}
	*out = strtod(text, NULL);
	return 0;
}

static int is_null_text(const char *s)
{
	return !*s || !strcmp(s, "~") || !strcmp(s, "null") || !strcmp(s, "Null") ||
	       !strcmp(s, "NULL");
}

static int is_bool_text(const char *s)
{
	static const char *const words[] = { "true", "True", "TRUE", "false", "False", "FALSE" };
	for (size_t i = 0; i < sizeof words / sizeof words[0]; i++)
		if (!strcmp(s, words[i]))
			return 1;
	return 0;
}

config_scalar_kind config_scalar_kind_of(const config_node *n)
{
	if (n->tag) {
		static const struct {
			const char *name;
			config_scalar_kind kind;
		} tags[] = {
			{ TAG_PREFIX "null", CONFIG_SCALAR_NULL },
			{ TAG_PREFIX "bool", CONFIG_SCALAR_BOOL },
			{ TAG_PREFIX "int", CONFIG_SCALAR_INT },
			{ TAG_PREFIX "float", CONFIG_SCALAR_FLOAT },
		};
		for (size_t i = 0; i < sizeof tags / sizeof tags[0]; i++)
			if (!strcmp(n->tag, tags[i].name))
				return tags[i].kind;
		return CONFIG_SCALAR_STR;
	}
	if (!n->plain)
		return CONFIG_SCALAR_STR;
	if (is_null_text(n->text))
		return CONFIG_SCALAR_NULL;
	if (is_bool_text(n->text))
		return CONFIG_SCALAR_BOOL;
	if (is_int_text(n->text))
		return CONFIG_SCALAR_INT;
	if (is_float_text(n->text) || !strcmp(n->text, ".nan") || !strcmp(n->text, ".NaN") ||
	    !strcmp(n->text, ".NAN"))
		return CONFIG_SCALAR_FLOAT;
	return CONFIG_SCALAR_STR;
}

static int is_null(const config_node *n)
{
	return n->kind == CONFIG_NODE_SCALAR && config_scalar_kind_of(n) == CONFIG_SCALAR_NULL;
}

const config_node *config_node_get(const config_node *n, const char *key)
{
	if (!n || n->kind != CONFIG_NODE_MAP)
		return NULL;
	for (size_t i = 0; i < n->n_pairs; i++)
		if (!strcmp(n->pairs[i].key->text, key))
			return n->pairs[i].value;
	return NULL;
}

/* ---- key paths and errors ---- */

size_t config_path_push(config_ctx *ctx, const char *key)
{
	size_t old = ctx->path_len;
	if (old < sizeof ctx->path - 1) {
		int w = snprintf(ctx->path + old, sizeof ctx->path - old, "%s%s", old ? "." : "", key);
		if (w > 0)
			ctx->path_len = old + (size_t)w < sizeof ctx->path ? old + (size_t)w
									 : sizeof ctx->path - 1;
	}
	return old;
}

size_t config_path_push_index(config_ctx *ctx, size_t index)
{
	size_t old = ctx->path_len;
	if (old < sizeof ctx->path - 1) {
		int w = snprintf(ctx->path + old, sizeof ctx->path - old, "[%zu]", index);
		if (w > 0)
			ctx->path_len = old + (size_t)w < sizeof ctx->path ? old + (size_t)w
									 : sizeof ctx->path - 1;
	}
	return old;
}

void config_path_pop(config_ctx *ctx, size_t old_len)
{
	ctx->path_len = old_len;
	ctx->path[old_len] = '\0';
}

int config_fail(config_ctx *ctx, const config_node *n, const char *fmt, ...)
{
	char what[WARREN_ERROR_MSG_MAX];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(what, sizeof what, fmt, ap);
	va_end(ap);
	return warren_error_set(ctx->err, WARREN_ECONFIG, "%s:%u:%u: %s%s%s", ctx->file,
				n ? n->line : 0, n ? n->column : 0, ctx->path,
				ctx->path_len ? ": " : "", what);
}

int config_check_entries(config_ctx *ctx, const config_node *n, size_t count)
{
	if (count <= CONFIG_MAX_ENTRIES)
		return 0;
	return config_fail(ctx, n, "more than %d entries", CONFIG_MAX_ENTRIES);
}

int config_fail_nomem(config_ctx *ctx)
{
	return warren_error_set(ctx->err, WARREN_ENOMEM, "%s: out of memory", ctx->file);
}

void config_got(const config_node *n, char *buf, size_t size)
{
	if (n->kind == CONFIG_NODE_MAP) {
		snprintf(buf, size, "a mapping");
		return;
	}
	if (n->kind == CONFIG_NODE_SEQ) {
		snprintf(buf, size, "a sequence");
		return;
	}
	const size_t max_chars = 40;
	size_t used = 0;
	buf[used++] = '"';
	for (size_t i = 0; i < n->len && used + 5 < size; i++) {
		if (i == max_chars) {
			memcpy(buf + used, "...", 3);
			used += 3;
			break;
		}
		unsigned char c = (unsigned char)n->text[i];
		buf[used++] = (c < 0x20 || c == 0x7f) ? '?' : (char)c;
	}
	buf[used++] = '"';
	buf[used] = '\0';
}

int config_fail_expected(config_ctx *ctx, const config_node *n, const char *what)
{
	char got[64];
	config_got(n, got, sizeof got);
	return config_fail(ctx, n, "expected %s, got %s", what, got);
}

/* Optimal string alignment distance: a typo is mostly one insertion,
 * deletion, substitution or swap of neighbours. */
static size_t edit_distance(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b);
	unsigned char d[65][65]; /* both words are at most 64 characters */
	for (size_t i = 0; i <= la; i++)
		d[i][0] = (unsigned char)i;
	for (size_t j = 0; j <= lb; j++)
		d[0][j] = (unsigned char)j;
	for (size_t i = 1; i <= la; i++) {
		for (size_t j = 1; j <= lb; j++) {
			unsigned cost = a[i - 1] != b[j - 1];
			unsigned best = d[i - 1][j] + 1u;
			if (d[i][j - 1] + 1u < best)
				best = d[i][j - 1] + 1u;
			if (d[i - 1][j - 1] + cost < best)
				best = d[i - 1][j - 1] + cost;
			if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] &&
			    d[i - 2][j - 2] + 1u < best)
				best = d[i - 2][j - 2] + 1u;
			d[i][j] = (unsigned char)best;
		}
	}
	return d[la][lb];
}

const char *config_nearest(const char *word, const char *const *known)
{
	if (strlen(word) > 64)
		return NULL;
	const char *nearest = NULL;
	size_t best = SIZE_MAX;
	for (; *known; known++) {
		size_t len = strlen(*known);
		if (len > 64)
			continue;
		size_t limit = len / 3 < 1 ? 1 : len / 3 > 3 ? 3 : len / 3;
		size_t d = edit_distance(word, *known);
		if (d <= limit && d < best) {
			best = d;
			nearest = *known;
		}
	}
	return nearest;
}

int config_fail_unknown_key(config_ctx *ctx, const config_node *key, const char *const *known)
{
	const char *nearest = config_nearest(key->text, known);
	if (nearest)
		return config_fail(ctx, key, "unknown key; did you mean '%s'?", nearest);
	return config_fail(ctx, key, "unknown key");
}

/* ---- typed readers ---- */

int config_expect_map(config_ctx *ctx, const config_node *n)
{
	if (n->kind == CONFIG_NODE_MAP || is_null(n))
		return 0;
	return config_fail_expected(ctx, n, "a mapping");
}

int config_get_bool(config_ctx *ctx, const config_node *n, int *out)
{
	static const char *const yes[] = { "true", "yes", "on" };
	static const char *const no[] = { "false", "no", "off" };
	if (n->kind == CONFIG_NODE_SCALAR) {
		for (size_t i = 0; i < 3; i++) {
			if (!strcasecmp(n->text, yes[i])) {
				*out = 1;
				return 0;
			}
			if (!strcasecmp(n->text, no[i])) {
				*out = 0;
				return 0;
			}
		}
	}
	return config_fail_expected(ctx, n, "true or false");
}

int config_get_int(config_ctx *ctx, const config_node *n, long long min, long long max,
		   long long *out)
{
	long long v = 0;
	int parsed = n->kind == CONFIG_NODE_SCALAR && config_parse_int(n->text, &v) == 0;
	if (parsed && v >= min && v <= max) {
		*out = v;
		return 0;
	}
	/* Not a number at all: say what kind of number; out of range: say the range. */
	char what[96];
	int numeric = n->kind == CONFIG_NODE_SCALAR && is_int_text(n->text);
	int no_max = !numeric || (max >= INT_MAX && parsed && v <= max);
	if (no_max && min == 0)
		snprintf(what, sizeof what, "a non-negative integer");
	else if (no_max && min == 1)
		snprintf(what, sizeof what, "a positive integer");
	else if (no_max)
		snprintf(what, sizeof what, "an integer of at least %lld", min);
	else
		snprintf(what, sizeof what, "an integer from %lld to %lld", min, max);
	return config_fail_expected(ctx, n, what);
}

int config_get_int32(config_ctx *ctx, const config_node *n, int min, int max, int *out)
{
	long long v;
	int rc = config_get_int(ctx, n, min, max, &v);
	if (rc == 0)
		*out = (int)v;
	return rc;
}

int config_get_seconds(config_ctx *ctx, const config_node *n, double *out)
{
	double v;
	/* A billion seconds is 31 years; the cap keeps later conversions to
	 * milliseconds or timespecs far from overflow. */
	if (n->kind == CONFIG_NODE_SCALAR && config_parse_float(n->text, &v) == 0 && v >= 0 &&
	    v <= 1e9) {
		*out = v;
		return 0;
	}
	return config_fail_expected(ctx, n, "a non-negative number of seconds");
}

int config_get_string(config_ctx *ctx, const config_node *n, const char **out)
{
	if (n->kind == CONFIG_NODE_SCALAR && !is_null(n)) {
		*out = n->text;
		return 0;
	}
	return config_fail_expected(ctx, n, "a string");
}

int config_get_enum(config_ctx *ctx, const config_node *n, const char *const *names, int *out)
{
	if (n->kind == CONFIG_NODE_SCALAR) {
		for (int i = 0; names[i]; i++) {
			if (!strcmp(n->text, names[i])) {
				*out = i;
				return 0;
			}
		}
	}
	char what[160];
	size_t used = (size_t)snprintf(what, sizeof what, "one of");
	for (int i = 0; names[i] && used < sizeof what; i++)
		used += (size_t)snprintf(what + used, sizeof what - used, "%s %s",
					 i ? "," : "", names[i]);
	return config_fail_expected(ctx, n, what);
}

int config_get_string_list(config_ctx *ctx, const config_node *n, const char *const **out,
			   size_t *n_out)
{
	if (is_null(n)) {
		*out = NULL;
		*n_out = 0;
		return 0;
	}
	if (n->kind != CONFIG_NODE_SEQ)
		return config_fail_expected(ctx, n, "a sequence of strings");
	const char **list = config_arena_alloc(ctx->arena, n->n_items * sizeof *list);
	if (!list)
		return config_fail_nomem(ctx);
	for (size_t i = 0; i < n->n_items; i++) {
		size_t old = config_path_push_index(ctx, i);
		int rc = config_get_string(ctx, n->items[i], &list[i]);
		config_path_pop(ctx, old);
		if (rc)
			return rc;
	}
	*out = list;
	*n_out = n->n_items;
	return 0;
}

int config_url_scheme_ok(const char *url, const char *const *schemes)
{
	const char *sep = strstr(url, "://");
	if (!sep)
		return 0;
	size_t len = (size_t)(sep - url);
	for (; *schemes; schemes++)
		if (strlen(*schemes) == len && !strncmp(url, *schemes, len))
			return 1;
	return 0;
}

int config_check_url(config_ctx *ctx, const config_node *n, const char *url,
		     const char *const *schemes)
{
	if (config_url_scheme_ok(url, schemes))
		return 0;
	char what[96];
	size_t used = (size_t)snprintf(what, sizeof what, "a URL with scheme");
	for (size_t i = 0; schemes[i] && used < sizeof what; i++)
		used += (size_t)snprintf(what + used, sizeof what - used, "%s %s://",
					 i == 0 ? "" : schemes[i + 1] ? "," : " or", schemes[i]);
	return config_fail_expected(ctx, n, what);
}
