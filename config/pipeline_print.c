/* config/pipeline_print.c - pipelines as text: `warren pipeline show` and
 * `list`, and values as JSON for messages and "${input.x}" interpolation.
 *
 * The outline shows one node a line, indented by depth:
 *
 *   pipeline wordcount (pipelines.yaml:30:3)
 *     count the words of each text, then add the counts
 *   inputs:
 *     texts: list, required - the texts to count
 *   run:
 *     chord
 *       header: map text.wordcount over $input.texts
 *       body: math.sum
 *
 * A group whose members all call the same task is one line
 * (`group of 3 × text.wordcount(...)`), so a large fan-out stays readable;
 * other long groups show their first members and a count of the rest.
 */
#include <math.h>
#include <msgpack.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"

/* Members of a mixed group shown before "... and N more". */
#define MAX_SHOWN 10

/* ---- values as JSON ---- */

static int put(msgpack_sbuffer *out, const char *s, size_t len)
{
	return msgpack_sbuffer_write(out, s, len);
}

static int puts_(msgpack_sbuffer *out, const char *s)
{
	return put(out, s, strlen(s));
}

static int put_quoted(msgpack_sbuffer *out, const char *s, size_t len)
{
	int rc = put(out, "\"", 1);
	for (size_t i = 0; rc == 0 && i < len; i++) {
		unsigned char c = (unsigned char)s[i];
		char esc[8];
		if (c == '"' || c == '\\') {
			esc[0] = '\\';
			esc[1] = (char)c;
			rc = put(out, esc, 2);
		} else if (c < 0x20 || c == 0x7f) {
			snprintf(esc, sizeof esc, "\\u%04x", c);
			rc = puts_(out, esc);
		} else {
			rc = put(out, s + i, 1);
		}
	}
	return rc ? rc : put(out, "\"", 1);
}

/* Shortest %g that reads back as d; JSON has no inf or nan, Python's json
 * writes them as below. */
static int put_float(msgpack_sbuffer *out, double d)
{
	char buf[40];
	if (isnan(d))
		return puts_(out, "NaN");
	if (isinf(d))
		return puts_(out, d < 0 ? "-Infinity" : "Infinity");
	if (d == floor(d) && fabs(d) < 1e15) {
		snprintf(buf, sizeof buf, "%.1f", d);
		return puts_(out, buf);
	}
	for (int prec = 1; prec <= 17; prec++) {
		snprintf(buf, sizeof buf, "%.*g", prec, d);
		if (strtod(buf, NULL) == d)
			break;
	}
	/* 3.0 stays visibly a float. */
	if (!strpbrk(buf, ".eE"))
		strcat(buf, ".0");
	return puts_(out, buf);
}

static int put_ext(msgpack_sbuffer *out, const msgpack_object *o, const pipeline_def *def)
{
	const unsigned char *p = (const unsigned char *)o->via.ext.ptr;
	if (o->via.ext.type == PIPELINE_EXT_FORMAT)
		return put_quoted(out, o->via.ext.ptr, o->via.ext.size);
	if (o->via.ext.type == PIPELINE_EXT_INPUT && o->via.ext.size == 4 && def) {
		size_t i = (size_t)p[0] << 24 | (size_t)p[1] << 16 | (size_t)p[2] << 8 | p[3];
		if (i < def->n_inputs)
			return puts_(out, "$input.") || puts_(out, def->inputs[i].name);
	}
	return puts_(out, "?");
}

int config_pipeline_write_text(msgpack_sbuffer *out, const msgpack_object *o, int quote,
			       const pipeline_def *def)
{
	char num[32];
	int rc = 0;
	switch (o->type) {
	case MSGPACK_OBJECT_NIL:
		return puts_(out, "null");
	case MSGPACK_OBJECT_BOOLEAN:
		return puts_(out, o->via.boolean ? "true" : "false");
	case MSGPACK_OBJECT_POSITIVE_INTEGER:
		snprintf(num, sizeof num, "%llu", (unsigned long long)o->via.u64);
		return puts_(out, num);
	case MSGPACK_OBJECT_NEGATIVE_INTEGER:
		snprintf(num, sizeof num, "%lld", (long long)o->via.i64);
		return puts_(out, num);
	case MSGPACK_OBJECT_FLOAT32:
	case MSGPACK_OBJECT_FLOAT64:
		return put_float(out, o->via.f64);
	case MSGPACK_OBJECT_STR:
		return quote ? put_quoted(out, o->via.str.ptr, o->via.str.size)
			     : put(out, o->via.str.ptr, o->via.str.size);
	case MSGPACK_OBJECT_BIN:
		return quote ? put_quoted(out, o->via.bin.ptr, o->via.bin.size)
			     : put(out, o->via.bin.ptr, o->via.bin.size);
	case MSGPACK_OBJECT_EXT:
		return put_ext(out, o, def);
	case MSGPACK_OBJECT_ARRAY:
		rc = put(out, "[", 1);
		for (uint32_t i = 0; rc == 0 && i < o->via.array.size; i++) {
			if (i)
				rc = put(out, ", ", 2);
			if (rc == 0)
				rc = config_pipeline_write_text(out, &o->via.array.ptr[i], 1, def);
		}
		return rc ? rc : put(out, "]", 1);
	case MSGPACK_OBJECT_MAP:
		rc = put(out, "{", 1);
		for (uint32_t i = 0; rc == 0 && i < o->via.map.size; i++) {
			if (i)
				rc = put(out, ", ", 2);
			if (rc == 0)
				rc = config_pipeline_write_text(out, &o->via.map.ptr[i].key, 1, def);
			if (rc == 0)
				rc = put(out, ": ", 2);
			if (rc == 0)
				rc = config_pipeline_write_text(out, &o->via.map.ptr[i].val, 1, def);
		}
		return rc ? rc : put(out, "}", 1);
	}
	return puts_(out, "?");
}

/* Renders into buf; "..." marks a cut. Items of a top-level array or map
 * are shown without their brackets when bare is set (an argument list). */
static void format_packed(const pipeline_def *def, const void *mp, size_t len, int bare,
			  char *buf, size_t size)
{
	msgpack_unpacked u;
	msgpack_sbuffer text;
	msgpack_unpacked_init(&u);
	msgpack_sbuffer_init(&text);
	buf[0] = '\0';
	if (mp && msgpack_unpack_next(&u, mp, len, NULL) == MSGPACK_UNPACK_SUCCESS &&
	    config_pipeline_write_text(&text, &u.data, 1, def) == 0 && text.size) {
		const char *s = text.data;
		size_t n = text.size;
		if (bare && n >= 2 && (s[0] == '[' || s[0] == '{')) {
			s++;
			n -= 2;
		}
		if (n < size)
			snprintf(buf, size, "%.*s", (int)n, s);
		else if (size > 4)
			snprintf(buf, size, "%.*s...", (int)(size - 4), s);
	}
	msgpack_sbuffer_destroy(&text);
	msgpack_unpacked_destroy(&u);
}

void pipeline_format_value(const pipeline_def *def, const void *mp, size_t len, char *buf,
			   size_t size)
{
	format_packed(def, mp, len, 0, buf, size);
}

/* ---- the outline ---- */

static void print_options(const pipeline_options *o, FILE *out)
{
	static const char *const names[] = { "queue", "countdown", "expires", "time_limit",
					      "soft_time_limit", "max_retries", "ignore_result",
					      "priority", "immutable" };
	const double secs[] = { 0, o->countdown, o->expires, o->time_limit, o->soft_time_limit };
	int first = 1;
	for (unsigned i = 0; i < sizeof names / sizeof names[0]; i++) {
		if (!(o->set & (1u << i)))
			continue;
		fprintf(out, "%s%s=", first ? " [" : ", ", names[i]);
		first = 0;
		if (i == 0)
			fprintf(out, "%s", o->queue);
		else if (i < 5)
			fprintf(out, "%gs", secs[i]);
		else if (i == 5 && o->max_retries < 0)
			fprintf(out, "unlimited");
		else if (i == 5 || i == 7)
			fprintf(out, "%d", i == 5 ? o->max_retries : o->priority);
		else
			fprintf(out, "%s", (i == 6 ? o->ignore_result : o->immutable) ? "true"
										: "false");
	}
	if (!first)
		fputc(']', out);
}

/* Python's call syntax: task(1, "a", key=value), cut when long. */
static int write_call(msgpack_sbuffer *text, const pipeline_def *def, const pipeline_node *n,
		      const msgpack_object *args, const msgpack_object *kwargs)
{
	int none = (!args || args->via.array.size == 0) && (!kwargs || kwargs->via.map.size == 0);
	if (none)
		return puts_(text, n->task);
	int rc = puts_(text, n->task) || put(text, "(", 1);
	for (uint32_t i = 0; rc == 0 && args && i < args->via.array.size; i++)
		rc = (i && put(text, ", ", 2)) ||
		     config_pipeline_write_text(text, &args->via.array.ptr[i], 1, def);
	for (uint32_t i = 0; rc == 0 && kwargs && i < kwargs->via.map.size; i++) {
		const msgpack_object *k = &kwargs->via.map.ptr[i].key;
		rc = ((i || (args && args->via.array.size)) && put(text, ", ", 2)) ||
		     config_pipeline_write_text(text, k, 0, def) || put(text, "=", 1) ||
		     config_pipeline_write_text(text, &kwargs->via.map.ptr[i].val, 1, def);
	}
	return rc || put(text, ")", 1);
}

static void print_call(const pipeline_def *def, const pipeline_node *n, FILE *out)
{
	const size_t max = 120;
	msgpack_unpacked a, k;
	msgpack_sbuffer text;
	msgpack_unpacked_init(&a);
	msgpack_unpacked_init(&k);
	msgpack_sbuffer_init(&text);
	int have_a = n->args.mp && msgpack_unpack_next(&a, n->args.mp, n->args.len, NULL) ==
					   MSGPACK_UNPACK_SUCCESS;
	int have_k = n->kwargs.mp && msgpack_unpack_next(&k, n->kwargs.mp, n->kwargs.len, NULL) ==
					     MSGPACK_UNPACK_SUCCESS;
	if (write_call(&text, def, n, have_a ? &a.data : NULL, have_k ? &k.data : NULL) == 0)
		fprintf(out, "%.*s%s", text.size > max ? (int)max : (int)text.size, text.data,
			text.size > max ? "...)" : "");
	msgpack_sbuffer_destroy(&text);
	msgpack_unpacked_destroy(&k);
	msgpack_unpacked_destroy(&a);
}

static void print_node(const pipeline_def *def, const pipeline_node *n, int depth,
		       const char *label, FILE *out);

/* All members call one task with no members of their own. */
static int uniform(const pipeline_node *g)
{
	for (size_t i = 0; i < g->n_children; i++)
		if (g->children[i]->kind != PIPELINE_TASK ||
		    strcmp(g->children[i]->task, g->children[0]->task))
			return 0;
	return g->n_children > 1;
}

static void print_members(const pipeline_def *def, const pipeline_node *n, int depth, FILE *out)
{
	int numbered = n->kind == PIPELINE_CHAIN;
	for (size_t i = 0; i < n->n_children; i++) {
		if (!numbered && i == MAX_SHOWN && n->n_children > MAX_SHOWN + 1) {
			fprintf(out, "%*s... and %zu more\n", 2 * depth, "", n->n_children - i);
			return;
		}
		char label[32];
		snprintf(label, sizeof label, numbered ? "%zu." : "-", i + 1);
		print_node(def, n->children[i], depth, label, out);
	}
}

static void print_group(const pipeline_def *def, const pipeline_node *n, int depth, FILE *out)
{
	if (uniform(n)) {
		fprintf(out, "group of %zu × %s(...)", n->n_children, n->children[0]->task);
		print_options(&n->options, out);
		fputc('\n', out);
		return;
	}
	fprintf(out, "group of %zu", n->n_children);
	print_options(&n->options, out);
	fputc('\n', out);
	print_members(def, n, depth + 1, out);
}

static void print_node(const pipeline_def *def, const pipeline_node *n, int depth,
		       const char *label, FILE *out)
{
	char over[160];
	fprintf(out, "%*s%s%s", 2 * depth, "", label ? label : "", label ? " " : "");
	switch (n->kind) {
	case PIPELINE_TASK:
		print_call(def, n, out);
		print_options(&n->options, out);
		fputc('\n', out);
		return;
	case PIPELINE_MAP:
		format_packed(def, n->over.mp, n->over.len, 0, over, sizeof over);
		fprintf(out, "%s %s over %s", n->starmap ? "starmap" : "map", n->task, over);
		print_options(&n->options, out);
		fputc('\n', out);
		return;
	case PIPELINE_GROUP:
		print_group(def, n, depth, out);
		return;
	case PIPELINE_CHAIN:
		fprintf(out, "chain of %zu", n->n_children);
		print_options(&n->options, out);
		fputc('\n', out);
		print_members(def, n, depth + 1, out);
		return;
	case PIPELINE_CHORD:
		fputs("chord", out);
		print_options(&n->options, out);
		fputc('\n', out);
		print_node(def, n->header, depth + 1, "header:", out);
		print_node(def, n->body, depth + 1, "body:", out);
		return;
	}
}

static void print_input(const pipeline_def *def, const pipeline_input *in, FILE *out)
{
	char value[120];
	fprintf(out, "  %s: %s", in->name, warren_type_name(in->type));
	if (in->required) {
		fputs(", required", out);
	} else {
		format_packed(def, in->default_mp, in->default_len, 0, value, sizeof value);
		fprintf(out, " = %s", value);
	}
	if (in->description)
		fprintf(out, " - %s", in->description);
	fputc('\n', out);
}

void pipeline_print(const pipeline_def *def, FILE *out)
{
	fprintf(out, "pipeline %s (%s:%u:%u)\n", def->name, def->file, def->line, def->column);
	if (def->description)
		fprintf(out, "  %s\n", def->description);
	if (def->n_inputs)
		fputs("inputs:\n", out);
	for (size_t i = 0; i < def->n_inputs; i++)
		print_input(def, &def->inputs[i], out);
	fputs("run:\n", out);
	print_node(def, def->run, 1, NULL, out);
}

void pipeline_print_list(const warren_config *cfg, FILE *out)
{
	fprintf(out, "pipelines: %zu\n", cfg->n_pipelines);
	for (size_t i = 0; i < cfg->n_pipelines; i++) {
		const pipeline_def *def = &cfg->pipeline_defs[i];
		fprintf(out, "  %s(", def->name);
		for (size_t k = 0; k < def->n_inputs; k++)
			fprintf(out, "%s%s%s", k ? ", " : "", def->inputs[k].name,
				def->inputs[k].required ? "" : "?");
		fprintf(out, ")%s%s\n", def->description ? " - " : "",
			def->description ? def->description : "");
	}
}
