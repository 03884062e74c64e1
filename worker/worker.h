/* worker/worker.h - the worker's private header: internal types and functions
 * shared between the files of worker/. Nothing here is public API; each
 * section belongs to the files named in its banner. */
#ifndef WARREN_WORKER_H
#define WARREN_WORKER_H

#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <msgpack.h>

#include "warren/error.h"
#include "warren/params.h"
#include "warren/plugin.h"

/* ==== plugins, registry and task context ==== */
/* worker/registry.c: task name -> handler + options, and the plugins that
 * registered them. Filled at start-up (single-threaded), then read-only: any
 * thread or prefork child may look tasks up without locking.
 * worker/plugin.c: loading a plugin .so into a registry.
 * worker/task.c: the host side of the plugin ABI, a task context a handler
 * runs against. */

typedef struct registry registry;

/* One registered task. Pointers into the entry stay valid until
 * registry_free(); the entry itself may move while plugins are still being
 * loaded (do not keep a registry_entry * across plugin_load()). */
typedef struct registry_entry {
	const char *name;           /* owned by the registry */
	size_t name_len;
	warren_task_fn fn;
	warren_task_options opts;   /* as the plugin gave them; 0 = unset */
	double rate_per_second;     /* opts.rate_limit parsed; 0 = unlimited */
	const char *plugin_path;    /* the plugin that registered it, "<builtin>" */
} registry_entry;

/* A new, empty registry; *out is freed by registry_free(). */
int registry_new(registry **out, warren_error *err);

/* Frees every entry and dlclose()s every plugin (in reverse load order).
 * NULL is a no-op. */
void registry_free(registry *reg);

/* Registers a handler compiled into the worker itself (no plugin). name is
 * copied; opts are copied, what they point to is borrowed for the registry's
 * life. Same checks and messages as a plugin's registration. */
int registry_add(registry *reg, const char *name, warren_task_fn fn,
		 const warren_task_options *opts, warren_error *err);

/* The entry for a task name of len bytes (need not be NUL-terminated: names
 * come straight from message headers), or NULL. O(1). */
const registry_entry *registry_lookup(const registry *reg, const char *name, size_t len);

/* Number of entries, and entry i in registration order (for `registered`
 * control replies and logs). */
size_t registry_count(const registry *reg);
const registry_entry *registry_at(const registry *reg, size_t i);

/* Parses a Celery rate limit ("10/s", "600/m", "3600/h", "5" = per second)
 * into tasks per second; 0 means unlimited ("0", "0/s"). Returns 0 or
 * WARREN_EINVAL with err saying why. */
int registry_parse_rate(const char *text, double *per_second, warren_error *err);

/* Loads the plugin at path into reg: dlopen(RTLD_NOW | RTLD_LOCAL), checks
 * warren_plugin_abi, runs warren_plugin_init. On success reg owns the handle
 * (dlclose()d by registry_free). On failure nothing of the plugin stays in
 * reg and err names the plugin and the cause:
 *   plugin 'x.so': cannot open: No such file or directory
 *   plugin 'x.so': not a loadable shared object: <dlerror>
 *   plugin 'x.so': no 'warren_plugin_abi' symbol: not a warren plugin
 *   plugin 'x.so': no 'warren_plugin_init' symbol
 *   plugin 'x.so': plugin ABI 2, this worker speaks 1
 *   plugin 'x.so': init failed: <the plugin's warren_plugin_error message>
 *   plugin 'b.so': task 'math.add' is already registered by plugin 'a.so'
 *   plugin 'x.so': task 'x.y': <what is wrong with its options> */
int plugin_load(registry *reg, const char *path, warren_error *err);

/* Runs a plugin's init against reg with its registrations attributed to
 * path (plugin.c calls it after the ABI check). On success reg owns handle
 * and dlclose()s it in registry_free(); on failure every task the plugin
 * registered is removed again, handle stays the caller's, and err says why
 * (a registration error, or "init failed: <the plugin's message>"). */
int registry_adopt_plugin(registry *reg, const char *path, void *handle,
			  int (*init)(warren_registry *), warren_error *err);

/* Host-table entry points for registration (task.c puts them in the table). */
int registry_host_register(warren_registry *reg, const char *name, warren_task_fn fn,
			   const warren_task_options *opts);
void registry_host_error(warren_registry *reg, const char *fmt, va_list ap);

/* The worker's host function table (const: shared by every thread). */
extern const warren_host task_host;

/* How a task ended. */
typedef enum task_status {
	TASK_PENDING = 0, /* not run yet */
	TASK_SUCCESS,
	TASK_FAILURE,
	TASK_RETRY,
} task_status;

#define TASK_EXC_TYPE_MAX 128
#define TASK_EXC_MESSAGE_MAX 1024

/* One task being run: the worker fills the inputs (borrowed from the decoded
 * message, which must outlive the context), task_run() runs the handler and
 * sets the outcome. Lives on the stack of whichever thread or prefork child
 * runs the task; holds no pointer to global mutable state. */
typedef struct task_ctx {
	warren_task base; /* what the plugin sees; first, so a warren_task * is a task_ctx * */

	/* inputs: set by the worker between task_ctx_init and task_run */
	const char *id;     /* NUL-terminated */
	const char *name;   /* NUL-terminated; NULL: the entry's name */
	int retries;
	msgpack_object headers; /* a map, or nil */
	msgpack_object args;    /* an array, or nil for none */
	msgpack_object kwargs;  /* a map, or nil for none */
	int64_t soft_deadline_ns; /* CLOCK_MONOTONIC; 0: no soft limit */
	atomic_bool soft_limit_hit; /* may be set from a timer or signal handler */

	/* set by task_run */
	const registry_entry *entry;
	task_status status;
	msgpack_sbuffer result; /* packed result; empty means null */
	msgpack_packer packer;
	char exc_type[TASK_EXC_TYPE_MAX];
	char exc_module[TASK_EXC_TYPE_MAX];
	char exc_message[TASK_EXC_MESSAGE_MAX];
	double retry_countdown;

	msgpack_zone *defaults; /* schema defaults unpacked on demand */
} task_ctx;

/* Prepares ctx for one task: no args, no soft limit, status pending. */
void task_ctx_init(task_ctx *ctx);

/* Frees what the run allocated (the result buffer, unpacked defaults). */
void task_ctx_release(task_ctx *ctx);

/* Sets the soft deadline to now + seconds on CLOCK_MONOTONIC (<= 0: none). */
void task_set_soft_limit(task_ctx *ctx, double seconds);

/* CLOCK_MONOTONIC in nanoseconds. */
int64_t task_monotonic_ns(void);

/* Runs entry's handler against ctx and sets ctx->status and the outcome
 * fields. Returns the status. A handler's bad result (not exactly one
 * well-formed msgpack object) becomes a RuntimeError failure. */
task_status task_run(task_ctx *ctx, const registry_entry *entry);

/* The packed result (ctx->result, or a msgpack nil when nothing was packed);
 * valid until task_ctx_release(). */
const char *task_result_bytes(const task_ctx *ctx, size_t *len);

/* True if data holds exactly one well-formed msgpack object (structure
 * only: lengths and counts, no allocation). */
bool task_msgpack_check(const void *data, size_t len);

/* Writes a Python-style traceback text for a failed task into buf
 * (truncated, always NUL-terminated). Returns the length it wanted. */
size_t task_format_traceback(const task_ctx *ctx, char *buf, size_t len);

#endif
