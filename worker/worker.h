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


/* ==== pools (pool.c dispatch, pool_threads.c, pool_prefork.c) ====
 *
 * The loop thread owns the AMQP connection and never runs a handler; a pool
 * runs them. A job is self-contained bytes, so it can go to a thread or down a
 * pipe to a prefork child alike. Ownership: the loop fills a job and hands it
 * to pool_submit (the pool owns it from then on, on success only); when it is
 * done the pool makes pool_fd() readable and pool_take_done() gives it back
 * with its outputs filled; the loop frees it with pool_job_free().
 */

typedef struct pool_job {
	uint64_t seq;       /* the loop's handle for the job; unique within a worker */
	void *loop_data;    /* the loop's own per-job state; the pool never touches it */

	/* inputs, owned by the job */
	char *task_id;
	char *task_name;
	int retries;
	void *headers;      /* packed msgpack map; NULL/0 = none */
	size_t headers_len;
	void *args;         /* packed msgpack array */
	size_t args_len;
	void *kwargs;       /* packed msgpack map */
	size_t kwargs_len;
	double soft_time_limit; /* seconds, 0 = none */
	double time_limit;      /* hard, seconds, 0 = none; prefork only */

	/* outputs, filled by the pool before pool_take_done returns the job */
	task_status status;     /* SUCCESS, FAILURE or RETRY */
	void *result;           /* packed msgpack result (SUCCESS); NULL = null */
	size_t result_len;
	char *exc_type;         /* FAILURE/RETRY: "ValueError", "TimeLimitExceeded", ... */
	char *exc_module;       /* "builtins", "celery.exceptions", ... */
	char *exc_message;
	char *traceback;        /* Python-style text, may be NULL */
	double retry_countdown; /* RETRY: seconds */
	double runtime;         /* seconds the handler ran */
	int64_t worker_pid;     /* process that ran it (the worker's own for threads) */
	bool worker_lost;       /* prefork: the child died under it (crash, kill, hard limit) */
	bool time_limit_hit;    /* prefork: killed for its hard time limit */
} pool_job;

/* Frees a job and everything it owns. NULL is a no-op. */
void pool_job_free(pool_job *job);

typedef enum pool_kind { POOL_THREADS, POOL_PREFORK } pool_kind;

typedef struct pool_options {
	pool_kind kind;
	int concurrency;                 /* threads or children, >= 1 */
	int max_tasks_per_child;         /* prefork: replace a child after N tasks, 0 = never */
	long long max_memory_per_child;  /* prefork: KiB of RSS (as Celery), 0 = no limit */
} pool_options;

typedef struct pool pool;

/* Starts the pool. Prefork children fork here and inherit reg, which must
 * outlive the pool. *out is freed with pool_free(). */
int pool_new(const pool_options *o, const registry *reg, pool **out, warren_error *err);

/* Readable (for poll) whenever pool_take_done has a job to give back. */
int pool_fd(const pool *p);

/* Queues a job; the pool owns it from here on success. Jobs wait in the pool
 * when every thread/child is busy: the loop bounds them by its prefetch. */
int pool_submit(pool *p, pool_job *job, warren_error *err);

/* One finished job, or NULL when none is ready. The caller frees it. */
pool_job *pool_take_done(pool *p);

/* Housekeeping the loop calls on its timer and whenever pool_fd is readable:
 * enforces hard time limits, reaps and replaces dead children. */
void pool_tick(pool *p);

/* When pool_tick next needs to run (CLOCK_MONOTONIC ns), or 0 if never. */
int64_t pool_next_deadline_ns(const pool *p);

/* Stops the job with this seq: prefork signals its child (signum, e.g.
 * SIGTERM); a queued job is taken back as REVOKED-by-the-loop. Threads: a
 * running job cannot be stopped (WARREN_EINVAL, with a message). */
int pool_terminate(pool *p, uint64_t seq, int signum, warren_error *err);

/* Jobs submitted and not yet taken back. */
size_t pool_pending(const pool *p);

/* Stops taking jobs, waits up to grace_ms for running ones (their jobs are
 * then taken back as usual), and stops the threads/children. Jobs never
 * started are handed back with status TASK_PENDING so the loop can requeue. */
int pool_close(pool *p, int grace_ms, warren_error *err);

/* Frees the pool; kills whatever still runs. NULL is a no-op. */
void pool_free(pool *p);


/* Each pool kind implements these; pool.c dispatches on pool_options.kind.
 * `impl` is the kind's own state. */
typedef struct pool_ops {
	const char *name; /* "threads", "prefork" */
	int (*open)(const pool_options *o, const registry *reg, void **impl, warren_error *err);
	int (*fd)(const void *impl);
	int (*submit)(void *impl, pool_job *job, warren_error *err);
	pool_job *(*take_done)(void *impl);
	void (*tick)(void *impl);
	int64_t (*next_deadline_ns)(const void *impl);
	int (*terminate)(void *impl, uint64_t seq, int signum, warren_error *err);
	size_t (*pending)(const void *impl);
	int (*close)(void *impl, int grace_ms, warren_error *err);
	void (*free)(void *impl);
} pool_ops;

extern const pool_ops pool_threads_ops; /* pool_threads.c */
extern const pool_ops pool_prefork_ops; /* pool_prefork.c */

#endif
