/* warren/params.h - task argument schemas: what a task declares it takes.
 *
 * A task may declare its parameters and result type, in YAML (config/) or from
 * a plugin. The producer validates args+kwargs against the schema before it
 * sends, the worker before it runs (schemas/args.c). Celery semantics: a
 * parameter can be given positionally (in order) or by name in kwargs.
 */
#ifndef WARREN_PARAMS_H
#define WARREN_PARAMS_H

#include <stddef.h>

#include "warren/error.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum warren_type {
	WARREN_TYPE_ANY = 0, /* anything, including null */
	WARREN_TYPE_INT,
	WARREN_TYPE_FLOAT, /* an int is accepted where a float is expected */
	WARREN_TYPE_STR,
	WARREN_TYPE_BYTES,
	WARREN_TYPE_BOOL,
	WARREN_TYPE_LIST,
	WARREN_TYPE_MAP,
	WARREN_TYPE_NULL,
} warren_type;

typedef struct warren_param {
	const char *name;
	warren_type type;
	int required;           /* nonzero: the caller must give it */
	const void *default_mp; /* the default as packed msgpack, NULL if none */
	size_t default_len;
} warren_param;

typedef struct warren_task_schema {
	const warren_param *params; /* in positional order */
	size_t n_params;
	warren_type result;   /* WARREN_TYPE_ANY: not checked */
	int extra_args;       /* nonzero: more positional args than params allowed (*args) */
	int extra_kwargs;     /* nonzero: unknown kwargs allowed (**kwargs) */
} warren_task_schema;

/* "int", "float", ... ; "?" for an out-of-range value. Static storage. */
WARREN_API const char *warren_type_name(warren_type t);

/* Parses a type name as written in YAML ("int", "str", ...). Returns 0 and
 * sets *out, or WARREN_EINVAL for an unknown name. */
WARREN_API int warren_type_parse(const char *name, warren_type *out);

#ifdef __cplusplus
}
#endif
#endif
