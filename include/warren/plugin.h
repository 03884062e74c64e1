/* warren/plugin.h - the task plugin ABI: what a plugin .so sees of the worker.
 *
 * A plugin is a shared object that exports exactly two symbols:
 *
 *     WARREN_PLUGIN_EXPORT const int warren_plugin_abi = WARREN_PLUGIN_ABI;
 *     WARREN_PLUGIN_EXPORT int warren_plugin_init(warren_registry *reg);
 *
 * and registers its task handlers from init with warren_register().
 *
 * Why it is shaped this way (refining DESIGN.md's sketch):
 *
 * - The worker dlopen()s plugins with RTLD_NOW | RTLD_LOCAL and is not linked
 *   with -rdynamic, so a plugin cannot call worker functions by name. As in
 *   sqlite's loadext, every call from plugin to host goes through a table of
 *   function pointers (warren_host). Unlike sqlite, the table is not passed as
 *   a separate argument that the plugin must stash in a global: it hangs off
 *   every handle the plugin is given (registry and task), so plugins keep no
 *   global state, and the inline wrappers below read it from the handle.
 *   That is why warren_registry and warren_task expose one member, `host`;
 *   everything else about them is private to the worker.
 * - Versioning, as in redis's module API: the plugin states the ABI it was
 *   built for in a data symbol the worker reads *before* running any plugin
 *   code, so a mismatch is refused with a clear message instead of a crash.
 *   Within one ABI version the host table only grows at its end (host->size
 *   says how far it goes); any other change to this header's types - the
 *   options struct, the table's existing entries, a handle's layout - bumps
 *   WARREN_PLUGIN_ABI.
 * - Task options added after ABI 1 was frozen live in a second, size-prefixed
 *   struct (warren_task_options_ext) given to a host entry appended to the
 *   table (register_task_ext), so no built plugin breaks: an ABI-1 plugin
 *   built before never calls the entry and keeps every default, and the
 *   worker reads only the ext fields that fit in the plugin's ext.size. New
 *   options are appended to that struct; a plugin built with more of them
 *   than a worker knows is refused only if it set one (a nonzero byte past
 *   what the worker knows), and a worker without register_task_ext at all
 *   (host->size too short) makes warren_register_ext fail with a message
 *   instead of dropping the options. One entry and one growing struct, rather
 *   than a setter per option: the table stays small and the options of a
 *   task are registered together, checked together, in one call.
 * - Argument getters go through one host entry (host->task_arg) that resolves
 *   an argument by position or by name through the task's schema, type-checks
 *   it and fails the task with a TypeError naming the argument; the typed
 *   getters are inline conversions on top, so the ABI stays small.
 * - Failing, retrying and the argument getters return -1 so a handler can
 *   `return warren_task_fail(t, ...)` or `if (warren_task_arg_int(...)) return -1;`.
 * - Everything a handler may touch is per task (the warren_task handle), the
 *   host table is const: handlers run on any pool thread or prefork child.
 */
#ifndef WARREN_PLUGIN_H
#define WARREN_PLUGIN_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <msgpack.h>

#include "warren/params.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Bump on any incompatible change to this header (see above). */
#define WARREN_PLUGIN_ABI 1

/* Plugins are built with -fvisibility=hidden like the rest of warren: mark
 * the two entry points with this so dlsym() can find them. */
#if defined(__GNUC__)
#define WARREN_PLUGIN_EXPORT __attribute__((visibility("default")))
#else
#define WARREN_PLUGIN_EXPORT
#endif

/* Defines the ABI symbol; write it once in each plugin. */
#define WARREN_PLUGIN_DEFINE_ABI() \
	WARREN_PLUGIN_EXPORT const int warren_plugin_abi = WARREN_PLUGIN_ABI

typedef struct warren_host warren_host;
typedef struct warren_task warren_task;
typedef struct warren_registry warren_registry;

/* A task handler. Returns 0 for success (the result is whatever it packed
 * into warren_task_result(); nothing packed means null), non-zero after
 * warren_task_fail() or warren_task_retry(). A recorded failure or retry wins
 * over a 0 return; a non-zero return with neither recorded fails the task
 * with RuntimeError. */
typedef int (*warren_task_fn)(warren_task *t);

/* Three-state switches: unset leaves the choice to the worker's config
 * (Celery's defaults unless configured). */
typedef enum warren_switch {
	WARREN_UNSET = 0,
	WARREN_ON = 1,
	WARREN_OFF = 2,
} warren_switch;

/* max_retries values besides a positive count. */
#define WARREN_RETRIES_DEFAULT 0    /* the worker's default (3, as Celery) */
#define WARREN_RETRIES_NONE (-1)    /* never retry */
#define WARREN_RETRIES_FOREVER (-2) /* Celery's max_retries=None */

/* Per-task defaults a plugin declares; the worker's config may override any
 * of them. Zero means "unset" throughout, so `{ .schema = &s }` is complete.
 * The struct is copied at registration; what its pointers point to is
 * borrowed and must live as long as the plugin is loaded (static storage). */
typedef struct warren_task_options {
	const warren_task_schema *schema; /* args schema; NULL: unchecked */
	double soft_time_limit;           /* seconds; 0: unset */
	double time_limit;                /* hard, seconds; 0: unset */
	const char *rate_limit;           /* "10/s", "600/m", "3600/h", "5"; NULL: none */
	int max_retries;                  /* count or WARREN_RETRIES_* */
	double default_retry_delay;       /* seconds before a retry; 0: unset (180) */
	/* Autoretry: a failure whose exception type is in this NULL-terminated
	 * list ("Exception" matches any) is retried instead of failed. */
	const char *const *autoretry_for;
	double retry_backoff;         /* backoff factor in seconds; 0: no backoff */
	double retry_backoff_max;     /* cap in seconds; 0: unset (600) */
	warren_switch retry_jitter;   /* randomise the backoff (Celery: on) */
	warren_switch acks_late;      /* ack after the result is stored (warren: on) */
	warren_switch ignore_result;  /* store no result */
	warren_switch track_started;  /* report STARTED */
} warren_task_options;

/* Task options beyond warren_task_options, for warren_register_ext. Zero
 * means "unset" as there, and the worker's config goes over them the same
 * way.
 * Size-prefixed: `size` must be sizeof(warren_task_options_ext) as this
 * header declares it (WARREN_TASK_OPTIONS_EXT_INIT sets it); fields are only
 * ever appended, never reordered, so a worker reads the ones that fit in
 * `size` and a plugin built against an older header leaves the newer ones
 * unset. The struct has no tail padding, so each appended field makes it
 * larger (the worker checks this at build time). Copied at registration. */
typedef struct warren_task_options_ext {
	uint32_t size;
	/* Celery's reject_on_worker_lost: a task whose prefork child dies
	 * under it (crash, OOM kill) goes back to its queue once instead of
	 * failing with WorkerLostError. Needs acks_late (warren's default).
	 * The config's `reject_on_worker_lost: true` turns it on whatever the
	 * plugin says; the config's false is also its default, so it leaves
	 * the plugin's choice (as with track_started). */
	warren_switch reject_on_worker_lost;
} warren_task_options_ext;

#define WARREN_TASK_OPTIONS_EXT_INIT {.size = sizeof(warren_task_options_ext)}

/* The host function table. Plugins call it through the inline wrappers
 * below rather than directly. Append-only within one ABI version. */
struct warren_host {
	int abi;     /* WARREN_PLUGIN_ABI the worker speaks */
	size_t size; /* sizeof(warren_host) in the worker */

	/* Registration; valid only during warren_plugin_init(). */
	int (*register_task)(warren_registry *reg, const char *name, warren_task_fn fn,
			     const warren_task_options *opts);
	void (*plugin_error)(warren_registry *reg, const char *fmt, va_list ap);

	/* The task being run. */
	const char *(*task_id)(const warren_task *t);
	const char *(*task_name)(const warren_task *t);
	int (*task_retries)(const warren_task *t);
	const msgpack_object *(*task_headers)(const warren_task *t);
	const msgpack_object *(*task_args)(const warren_task *t);
	const msgpack_object *(*task_kwargs)(const warren_task *t);
	int (*task_arg)(warren_task *t, size_t index, const char *name, warren_type want,
			const msgpack_object **out);
	msgpack_packer *(*task_result)(warren_task *t);
	int (*task_fail)(warren_task *t, const char *type, const char *fmt, va_list ap);
	int (*task_retry)(warren_task *t, double countdown);
	bool (*task_soft_limit_passed)(warren_task *t);

	/* Appended within ABI 1: present when WARREN_HOST_HAS(host,
	 * register_task_ext). As register_task, plus ext (may be NULL). */
	int (*register_task_ext)(warren_registry *reg, const char *name, warren_task_fn fn,
				 const warren_task_options *opts,
				 const warren_task_options_ext *ext);
};

/* True when the worker's host table reaches `member` (an entry appended
 * after the first ABI-1 workers). */
#define WARREN_HOST_HAS(host, member) \
	((host)->size >= offsetof(warren_host, member) + sizeof((host)->member))

/* What a plugin sees of the two handles it is given. Never copy them, never
 * create them: the worker's structs start with these and go on privately. */
struct warren_registry {
	const warren_host *host;
};
struct warren_task {
	const warren_host *host;
};

/* The two entry points every plugin defines (declared here so their
 * definitions are type-checked and exported). */
WARREN_PLUGIN_EXPORT extern const int warren_plugin_abi;

/* Registers the plugin's tasks. Returns 0, or non-zero after saying why with
 * warren_plugin_error(); the worker then refuses to start. */
WARREN_PLUGIN_EXPORT int warren_plugin_init(warren_registry *reg);

/* ---- registration ------------------------------------------------------ */

/* Registers handler fn under a task name such as "math.add" (copied). opts
 * may be NULL. Returns 0, or -1 when the worker refuses (bad options, a name
 * another plugin already has): init should then return that -1. */
static inline int warren_register(warren_registry *reg, const char *name, warren_task_fn fn,
				  const warren_task_options *opts)
{
	return reg->host->register_task(reg, name, fn, opts);
}

/* Records why init fails (the worker prints it, naming the plugin).
 * Returns -1 for `return warren_plugin_error(reg, ...);`. */
static inline int warren_plugin_error(warren_registry *reg, const char *fmt, ...)
	WARREN_PRINTF(2, 3);
static inline int warren_plugin_error(warren_registry *reg, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	reg->host->plugin_error(reg, fmt, ap);
	va_end(ap);
	return -1;
}

/* warren_register with options beyond ABI 1's struct:
 *
 *     static const warren_task_options_ext ext = {
 *             .size = sizeof ext, .reject_on_worker_lost = WARREN_ON};
 *     return warren_register_ext(reg, "media.transcode", transcode, &opts, &ext);
 *
 * ext may be NULL (then it is warren_register). Returns 0, or -1 when the
 * worker refuses: besides warren_register's reasons, an ext.size smaller
 * than its `size` field or larger than 4 KiB, a switch that is not a
 * warren_switch, an option the worker does not know set to nonzero, or a
 * worker older than register_task_ext (the message says so; a plugin that
 * would rather run without the options tests WARREN_HOST_HAS(reg->host,
 * register_task_ext) first and calls warren_register). */
static inline int warren_register_ext(warren_registry *reg, const char *name, warren_task_fn fn,
				      const warren_task_options *opts,
				      const warren_task_options_ext *ext)
{
	if (!WARREN_HOST_HAS(reg->host, register_task_ext))
		return warren_plugin_error(reg,
					   "task '%s': warren_register_ext needs a newer "
					   "warren-worker (no register_task_ext in its host table)",
					   name);
	return reg->host->register_task_ext(reg, name, fn, opts, ext);
}

/* ---- what the task is ---------------------------------------------------- */
/* Pointers returned here live until the handler returns. */

/* The task id (a UUID string). */
static inline const char *warren_task_id(const warren_task *t)
{
	return t->host->task_id(t);
}

/* The task name the message asked for ("math.add"). */
static inline const char *warren_task_name(const warren_task *t)
{
	return t->host->task_name(t);
}

/* How many times this task was retried before (0 on the first attempt). */
static inline int warren_task_retries(const warren_task *t)
{
	return t->host->task_retries(t);
}

/* The message headers as a msgpack map (an empty map if there were none). */
static inline const msgpack_object *warren_task_headers(const warren_task *t)
{
	return t->host->task_headers(t);
}

/* The positional args (always an array) and keyword args (always a map). */
static inline const msgpack_object *warren_task_args(const warren_task *t)
{
	return t->host->task_args(t);
}

static inline const msgpack_object *warren_task_kwargs(const warren_task *t)
{
	return t->host->task_kwargs(t);
}

/* ---- arguments ------------------------------------------------------------ *
 * By index: args[i]; if the message has fewer args and the schema names
 * parameter i, kwargs[that name]; then the schema's default.
 * By name: the schema's parameter of that name, found as above; without a
 * schema (or parameter), kwargs[name].
 * Returns 0 and sets *out; WARREN_ARG_ABSENT when the schema marks the
 * parameter optional, it has no default and the caller gave none (*out is
 * untouched and the task is not failed); -1 after failing the task with
 * TypeError (missing or wrongly typed: "math.add: argument b: expected int,
 * got str") or OverflowError (an int outside int64). WARREN_TYPE_FLOAT
 * accepts ints, WARREN_TYPE_ANY anything including null. String pointers
 * point into the message: valid until the handler returns, not
 * NUL-terminated, never NULL (even for ""). */
#define WARREN_ARG_ABSENT 1
#define WARREN_NO_INDEX SIZE_MAX

static inline int warren_task_arg_object(warren_task *t, size_t i, warren_type want,
					 const msgpack_object **out)
{
	return t->host->task_arg(t, i, NULL, want, out);
}

static inline int warren_task_kwarg_object(warren_task *t, const char *name, warren_type want,
					   const msgpack_object **out)
{
	return t->host->task_arg(t, WARREN_NO_INDEX, name, want, out);
}

/* The typed getters share one body per type: (index, name) as above. */
static inline int warren__get_int(warren_task *t, size_t i, const char *name, int64_t *out)
{
	const msgpack_object *o;
	int rc = t->host->task_arg(t, i, name, WARREN_TYPE_INT, &o);
	if (rc == 0) /* the host refused positives above INT64_MAX */
		*out = o->type == MSGPACK_OBJECT_POSITIVE_INTEGER ? (int64_t)o->via.u64 : o->via.i64;
	return rc;
}

static inline int warren__get_float(warren_task *t, size_t i, const char *name, double *out)
{
	const msgpack_object *o;
	int rc = t->host->task_arg(t, i, name, WARREN_TYPE_FLOAT, &o);
	if (rc == 0) {
		if (o->type == MSGPACK_OBJECT_POSITIVE_INTEGER)
			*out = (double)o->via.u64;
		else if (o->type == MSGPACK_OBJECT_NEGATIVE_INTEGER)
			*out = (double)o->via.i64;
		else
			*out = o->via.f64;
	}
	return rc;
}

static inline int warren__get_bool(warren_task *t, size_t i, const char *name, bool *out)
{
	const msgpack_object *o;
	int rc = t->host->task_arg(t, i, name, WARREN_TYPE_BOOL, &o);
	if (rc == 0)
		*out = o->via.boolean;
	return rc;
}

static inline int warren__get_str(warren_task *t, size_t i, const char *name, const char **ptr,
				  size_t *len)
{
	const msgpack_object *o;
	int rc = t->host->task_arg(t, i, name, WARREN_TYPE_STR, &o);
	if (rc == 0) {
		*ptr = o->via.str.size ? o->via.str.ptr : ""; /* never NULL */
		*len = o->via.str.size;
	}
	return rc;
}

static inline int warren__get_bytes(warren_task *t, size_t i, const char *name,
				    const void **ptr, size_t *len)
{
	const msgpack_object *o;
	int rc = t->host->task_arg(t, i, name, WARREN_TYPE_BYTES, &o);
	if (rc == 0) {
		*ptr = o->via.bin.size ? o->via.bin.ptr : ""; /* never NULL */
		*len = o->via.bin.size;
	}
	return rc;
}

static inline int warren_task_arg_int(warren_task *t, size_t i, int64_t *out)
{
	return warren__get_int(t, i, NULL, out);
}
static inline int warren_task_arg_float(warren_task *t, size_t i, double *out)
{
	return warren__get_float(t, i, NULL, out);
}
static inline int warren_task_arg_bool(warren_task *t, size_t i, bool *out)
{
	return warren__get_bool(t, i, NULL, out);
}
static inline int warren_task_arg_str(warren_task *t, size_t i, const char **ptr, size_t *len)
{
	return warren__get_str(t, i, NULL, ptr, len);
}
static inline int warren_task_arg_bytes(warren_task *t, size_t i, const void **ptr, size_t *len)
{
	return warren__get_bytes(t, i, NULL, ptr, len);
}

static inline int warren_task_kwarg_int(warren_task *t, const char *name, int64_t *out)
{
	return warren__get_int(t, WARREN_NO_INDEX, name, out);
}
static inline int warren_task_kwarg_float(warren_task *t, const char *name, double *out)
{
	return warren__get_float(t, WARREN_NO_INDEX, name, out);
}
static inline int warren_task_kwarg_bool(warren_task *t, const char *name, bool *out)
{
	return warren__get_bool(t, WARREN_NO_INDEX, name, out);
}
static inline int warren_task_kwarg_str(warren_task *t, const char *name, const char **ptr,
					size_t *len)
{
	return warren__get_str(t, WARREN_NO_INDEX, name, ptr, len);
}
static inline int warren_task_kwarg_bytes(warren_task *t, const char *name, const void **ptr,
					  size_t *len)
{
	return warren__get_bytes(t, WARREN_NO_INDEX, name, ptr, len);
}

/* ---- outcome ------------------------------------------------------------- */

/* The packer for the result: pack exactly one object (or none, for null).
 * The worker checks the bytes are one well-formed object and fails the task
 * with RuntimeError otherwise. */
static inline msgpack_packer *warren_task_result(warren_task *t)
{
	return t->host->task_result(t);
}

/* Fails the task with a Python exception: type "ValueError" (module
 * builtins) or dotted, "billiard.exceptions.SoftTimeLimitExceeded". The
 * message is formatted printf-style, truncated at 1 KiB on a UTF-8 boundary,
 * invalid UTF-8 replaced. The first failure or retry recorded wins.
 * Returns -1. */
static inline int warren_task_fail(warren_task *t, const char *type, const char *fmt, ...)
	WARREN_PRINTF(3, 4);
static inline int warren_task_fail(warren_task *t, const char *type, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int rc = t->host->task_fail(t, type, fmt, ap);
	va_end(ap);
	return rc;
}

/* Asks for the task to run again after countdown seconds (>= 0), with
 * retries + 1. Past max_retries the worker fails it with
 * MaxRetriesExceededError instead. Returns -1. */
static inline int warren_task_retry(warren_task *t, double countdown)
{
	return t->host->task_retry(t, countdown);
}

/* True once the task's soft time limit has passed: a long handler checks it
 * now and then and fails with billiard.exceptions.SoftTimeLimitExceeded. */
static inline bool warren_task_soft_limit_passed(warren_task *t)
{
	return t->host->task_soft_limit_passed(t);
}

#ifdef __cplusplus
}
#endif
#endif
