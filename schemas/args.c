/* schemas/args.c - checks a task call's args and kwargs against the task's
 * declared parameters (include/warren/params.h) and binds them by name.
 *
 * Binding follows Python's rules for `def task(a, b, *args, **kwargs)`, so a
 * Celery client's apply_async((2,), {'b': 3}) means what it means in
 * Python: positional values fill the parameters in order, kwargs fill the
 * rest by name, and giving one both ways is an error. Types are msgpack's,
 * which unlike Python tell bool from int: a bool is not an int here, while
 * an int is a fine float. Every message starts with the task name, because
 * it ends up in a FAILURE result or a producer's error far from the schema.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "schemas.h"

/* Longest string body shown in a preview before it is cut with "...". */
#define PREVIEW_STR_MAX 24

/* ---- previews of values for messages ---- */

/* Shortest %g that reads back as d, so 2.5 shows as 2.5, not 2.50000. */
static void format_float(char *buf, size_t size, double d)
{
	for (int prec = 1; prec <= 17; prec++) {
		snprintf(buf, size, "%.*g", prec, d);
		if (strtod(buf, NULL) == d)
			return;
	}
}

/* Cuts at most max bytes of a UTF-8 string without splitting a character. */
static size_t utf8_cut(const char *s, size_t len, size_t max)
{
	if (len <= max)
		return len;
	size_t n = max;
	while (n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80)
		n--;
	return n;
}

/* `"text"`, cut with ... when long. */
static char *quote_preview(const char *s, size_t len, char *buf, size_t size)
{
	char body[PREVIEW_STR_MAX + 1];
	size_t n = utf8_cut(s, len, PREVIEW_STR_MAX);
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		/* A message is one line of text: no control bytes from the wire. */
		body[i] = (c < 0x20 || c == 0x7f) ? '?' : (char)c;
	}
	body[n] = '\0';
	snprintf(buf, size, "\"%s%s\"", body, n < len ? "..." : "");
	return buf;
}

char *schema_value_preview(const msgpack_object *v, char *buf, size_t size)
{
	char num[PREVIEW_STR_MAX + 8];
	switch (v->type) {
	case MSGPACK_OBJECT_NIL:
		snprintf(buf, size, "null");
		break;
	case MSGPACK_OBJECT_BOOLEAN:
		snprintf(buf, size, "bool %s", v->via.boolean ? "true" : "false");
		break;
	case MSGPACK_OBJECT_POSITIVE_INTEGER:
		snprintf(buf, size, "int %llu", (unsigned long long)v->via.u64);
		break;
	case MSGPACK_OBJECT_NEGATIVE_INTEGER:
		snprintf(buf, size, "int %lld", (long long)v->via.i64);
		break;
	case MSGPACK_OBJECT_FLOAT32:
	case MSGPACK_OBJECT_FLOAT64:
		format_float(num, sizeof num, v->via.f64);
		snprintf(buf, size, "float %s", num);
		break;
	case MSGPACK_OBJECT_STR:
		snprintf(buf, size, "str %s",
			 quote_preview(v->via.str.ptr, v->via.str.size, num, sizeof num));
		break;
	case MSGPACK_OBJECT_BIN:
		snprintf(buf, size, "bytes of %u", (unsigned)v->via.bin.size);
		break;
	case MSGPACK_OBJECT_ARRAY:
		snprintf(buf, size, "list of %u", (unsigned)v->via.array.size);
		break;
	case MSGPACK_OBJECT_MAP:
		snprintf(buf, size, "map of %u", (unsigned)v->via.map.size);
		break;
	case MSGPACK_OBJECT_EXT:
		snprintf(buf, size, "ext type %d", (int)v->via.ext.type);
		break;
	default:
		snprintf(buf, size, "unknown value");
		break;
	}
	return buf;
}

/* ---- type checks ---- */

static bool type_matches(warren_type t, const msgpack_object *v)
{
	switch (t) {
	case WARREN_TYPE_ANY:
		return true;
	case WARREN_TYPE_INT:
		return v->type == MSGPACK_OBJECT_POSITIVE_INTEGER ||
		       v->type == MSGPACK_OBJECT_NEGATIVE_INTEGER;
	case WARREN_TYPE_FLOAT:
		return v->type == MSGPACK_OBJECT_FLOAT32 || v->type == MSGPACK_OBJECT_FLOAT64 ||
		       v->type == MSGPACK_OBJECT_POSITIVE_INTEGER ||
		       v->type == MSGPACK_OBJECT_NEGATIVE_INTEGER;
	case WARREN_TYPE_STR:
		return v->type == MSGPACK_OBJECT_STR;
	case WARREN_TYPE_BYTES:
		return v->type == MSGPACK_OBJECT_BIN;
	case WARREN_TYPE_BOOL:
		return v->type == MSGPACK_OBJECT_BOOLEAN;
	case WARREN_TYPE_LIST:
		return v->type == MSGPACK_OBJECT_ARRAY;
	case WARREN_TYPE_MAP:
		return v->type == MSGPACK_OBJECT_MAP;
	case WARREN_TYPE_NULL:
		return v->type == MSGPACK_OBJECT_NIL;
	}
	return false;
}

/* Python's `b: int = None` idiom: a parameter whose default is None also
 * takes an explicit None, whatever its type. */
static bool default_is_nil(const warren_param *p)
{
	return p->default_mp && p->default_len == 1 &&
	       *(const unsigned char *)p->default_mp == 0xc0;
}

static int type_error(const char *task_name, const char *subject, warren_type expected,
		      const msgpack_object *v, warren_error *err)
{
	char preview[64];
	return warren_error_set(err, WARREN_ESCHEMA, "%s: %s: expected %s, got %s", task_name,
				subject, warren_type_name(expected),
				schema_value_preview(v, preview, sizeof preview));
}

static int check_param_value(const char *task_name, const warren_param *p,
			     const msgpack_object *v, warren_error *err)
{
	if (type_matches(p->type, v))
		return 0;
	if (v->type == MSGPACK_OBJECT_NIL && default_is_nil(p))
		return 0;
	char subject[160];
	snprintf(subject, sizeof subject, "argument %s", p->name);
	return type_error(task_name, subject, p->type, v, err);
}

/* ---- binding ---- */

static bool str_is(const msgpack_object *k, const char *name)
{
	return k->type == MSGPACK_OBJECT_STR && k->via.str.size == strlen(name) &&
	       memcmp(k->via.str.ptr, name, k->via.str.size) == 0;
}

static const warren_param *find_param(const warren_task_schema *schema,
				      const msgpack_object *key, size_t *index)
{
	for (size_t i = 0; i < schema->n_params; i++) {
		if (str_is(key, schema->params[i].name)) {
			*index = i;
			return &schema->params[i];
		}
	}
	return NULL;
}

/* The last value given for name in kwargs (Python keeps the last of
 * duplicate keys), or NULL. */
static const msgpack_object *find_kwarg(const msgpack_object_map *kwargs, const char *name)
{
	const msgpack_object *found = NULL;
	for (uint32_t i = 0; i < kwargs->size; i++) {
		if (str_is(&kwargs->ptr[i].key, name))
			found = &kwargs->ptr[i].val;
	}
	return found;
}

/* NULL and nil both mean "none given"; anything else must be kind. */
static int check_container(const char *task_name, const char *subject,
			   const msgpack_object *o, msgpack_object_type kind,
			   warren_type expected, warren_error *err)
{
	if (!o || o->type == MSGPACK_OBJECT_NIL || o->type == kind)
		return 0;
	return type_error(task_name, subject, expected, o, err);
}

static int check_positional_count(const char *task_name, const warren_task_schema *schema,
				  uint32_t given, warren_error *err)
{
	if (given <= schema->n_params || schema->extra_args)
		return 0;
	return warren_error_set(err, WARREN_ESCHEMA,
				"%s: takes %zu positional argument%s but %u %s given", task_name,
				schema->n_params, schema->n_params == 1 ? "" : "s", (unsigned)given,
				given == 1 ? "was" : "were");
}

/* Every kwarg names a parameter not already given positionally, or is
 * allowed by **kwargs. */
static int check_kwargs(const char *task_name, const warren_task_schema *schema,
			const msgpack_object_map *kwargs, uint32_t n_positional,
			warren_error *err)
{
	for (uint32_t i = 0; i < kwargs->size; i++) {
		const msgpack_object *key = &kwargs->ptr[i].key;
		char preview[64];
		size_t index;
		if (key->type != MSGPACK_OBJECT_STR)
			return warren_error_set(err, WARREN_ESCHEMA,
						"%s: kwargs: expected str keys, got %s", task_name,
						schema_value_preview(key, preview, sizeof preview));
		const warren_param *p = find_param(schema, key, &index);
		if (p && index < n_positional)
			return warren_error_set(err, WARREN_ESCHEMA,
						"%s: argument %s: given positionally and by keyword",
						task_name, p->name);
		if (!p && !schema->extra_kwargs)
			return warren_error_set(err, WARREN_ESCHEMA,
						"%s: unexpected keyword argument %s", task_name,
						quote_preview(key->via.str.ptr, key->via.str.size,
							      preview, sizeof preview));
	}
	return 0;
}

/* A parameter's default, unpacked into zone; nil when it has none. */
static int unpack_default(const char *task_name, const warren_param *p, msgpack_zone *zone,
			  msgpack_object *out, warren_error *err)
{
	if (!p->default_mp) {
		out->type = MSGPACK_OBJECT_NIL;
		return 0;
	}
	size_t off = 0;
	msgpack_unpack_return ret =
		msgpack_unpack(p->default_mp, p->default_len, &off, zone, out);
	if (ret == MSGPACK_UNPACK_NOMEM_ERROR)
		return warren_error_set(err, WARREN_ENOMEM, "%s: argument %s: out of memory",
					task_name, p->name);
	if (ret != MSGPACK_UNPACK_SUCCESS || off != p->default_len)
		return warren_error_set(err, WARREN_EINVAL,
					"%s: argument %s: default is not one msgpack value",
					task_name, p->name);
	return 0;
}

/* The one pass behind validate and bind: values == NULL only checks. */
static int bind_args(const char *task_name, const warren_task_schema *schema,
		const msgpack_object *args, const msgpack_object *kwargs, msgpack_zone *zone,
		msgpack_object *values, warren_error *err)
{
	static const msgpack_object_map no_kwargs = {0, NULL};
	int rc;
	if ((rc = check_container(task_name, "args", args, MSGPACK_OBJECT_ARRAY,
				  WARREN_TYPE_LIST, err)) ||
	    (rc = check_container(task_name, "kwargs", kwargs, MSGPACK_OBJECT_MAP,
				  WARREN_TYPE_MAP, err)))
		return rc;
	uint32_t n_positional =
		(args && args->type == MSGPACK_OBJECT_ARRAY) ? args->via.array.size : 0;
	const msgpack_object_map *kw =
		(kwargs && kwargs->type == MSGPACK_OBJECT_MAP) ? &kwargs->via.map : &no_kwargs;

	if ((rc = check_positional_count(task_name, schema, n_positional, err)) ||
	    (rc = check_kwargs(task_name, schema, kw, n_positional, err)))
		return rc;

	for (size_t i = 0; i < schema->n_params; i++) {
		const warren_param *p = &schema->params[i];
		const msgpack_object *v =
			i < n_positional ? &args->via.array.ptr[i] : find_kwarg(kw, p->name);
		if (!v && p->required)
			return warren_error_set(err, WARREN_ESCHEMA,
						"%s: argument %s: required but not given", task_name,
						p->name);
		if (v && (rc = check_param_value(task_name, p, v, err)))
			return rc;
		if (!values)
			continue;
		if (v)
			values[i] = *v;
		else if ((rc = unpack_default(task_name, p, zone, &values[i], err)))
			return rc;
	}
	return 0;
}

int schema_args_validate(const char *task_name, const warren_task_schema *schema,
			 const msgpack_object *args, const msgpack_object *kwargs,
			 warren_error *err)
{
	return bind_args(task_name, schema, args, kwargs, NULL, NULL, err);
}

int schema_args_bind(const char *task_name, const warren_task_schema *schema,
		     const msgpack_object *args, const msgpack_object *kwargs,
		     msgpack_zone *zone, msgpack_object *values, warren_error *err)
{
	return bind_args(task_name, schema, args, kwargs, zone, values, err);
}

int schema_args_validate_result(const char *task_name, const warren_task_schema *schema,
				const msgpack_object *result, warren_error *err)
{
	if (type_matches(schema->result, result))
		return 0;
	return type_error(task_name, "result", schema->result, result, err);
}
