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
	warren_task_options_ext ext; /* the same for warren_register_ext's (size: ours) */
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
/* ext as the plugin built it: only the fields within ext->size are read,
 * and bytes past the fields this worker knows must be zero (see plugin.h). */
int registry_host_register_ext(warren_registry *reg, const char *name, warren_task_fn fn,
			       const warren_task_options *opts,
			       const warren_task_options_ext *ext);
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
	/* Or, instead of `headers`: the packed map, unpacked only if the handler
	 * asks (warren_task_headers), into `defaults`. The threads pool passes
	 * them so: the loop already checked these bytes (schema_task_decode),
	 * and few handlers read headers (unpacking 16 Celery headers was ~8% of
	 * a noop task). Borrowed; must outlive the context. */
	const void *headers_packed;
	size_t headers_packed_len;
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
 *
 * A job's start (a thread took it; its frame reached an idle prefork child,
 * which runs it as soon as it reads it) is stamped on the job by the pool,
 * always: a clock read, no message. The loop learns of it in two ways, both
 * on its own thread. Asked: pool_job_started() (inspect active/reserved,
 * rare). Told, only for a job submitted with report_start: the pool then
 * makes pool_fd() readable and calls the pool_on_start() function from
 * pool_tick or pool_take_done, always before that job comes back through
 * pool_take_done and after every job that finished before it started. Being
 * told costs a lock, a wake-up and a turn of the loop per task, so the loop
 * asks for it only when something must happen at the start (results.c
 * loop_watch_start: STARTED for track_started, task-started with -E).
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
	/* (report_start, an input, is with the bools at the end: a job is one
	 * malloc per task and stays at 200 bytes, the size class of the
	 * 192 it was before the start fields.) */

	/* set by the pool when the job starts (the loop reads them in its start
	 * function, through pool_job_started, or once the job is back) */
	int64_t start_ns;       /* CLOCK_MONOTONIC; 0: not started */
	int32_t start_pid;      /* the process that runs it */

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
	bool report_start;      /* input: call the pool_on_start function when it starts */
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
 * running job cannot be stopped (WARREN_EINVAL, with a message).
 * How it comes back through pool_take_done:
 * - queued: status TASK_PENDING (it never ran); the loop stores REVOKED.
 * - running, and the child dies of the signal: TASK_FAILURE with exc_type
 *   "TaskRevokedError", exc_module "celery.exceptions", exc_message
 *   "terminated", worker_lost false: the loop stores REVOKED with
 *   TaskRevokedError('terminated') as Celery does, not FAILURE.
 * - running, and the child survives the signal (SIGUSR1 is the soft time
 *   limit, as in Celery; SIGINT is ignored by children): the job ends as the
 *   task reports it.
 * Prefork: WARREN_ENOTFOUND if no job with seq is queued or running. */
int pool_terminate(pool *p, uint64_t seq, int signum, warren_error *err);

/* Jobs submitted and not yet taken back. */
size_t pool_pending(const pool *p);

/* What the pool calls, on the loop thread (from pool_tick or
 * pool_take_done), for each job submitted with report_start once it has
 * started (start_ns, start_pid set). job is the pool's: read it during the
 * call only, touch no output, take nothing back from the pool. */
typedef void (*pool_start_fn)(void *arg, const pool_job *job);
/* Sets it; set before submitting a job with report_start (setting it again
 * is cheap). */
void pool_on_start(pool *p, pool_start_fn fn, void *arg);

/* Whether the job with seq has started: true with *start_ns (CLOCK_MONOTONIC)
 * and *pid (the process running it) set while it runs or waits to be taken
 * back; false while it waits in the pool's queue, or for a seq the pool does
 * not hold. O(concurrency + done). */
bool pool_job_started(pool *p, uint64_t seq, int64_t *start_ns, int64_t *pid);

/* Hands back every job not yet started, with status TASK_PENDING (through
 * pool_take_done, as pool_close does), and lets the running ones finish; the
 * pool stays open. A warm shutdown and a lost connection use it so that
 * prefetched work goes back to the broker at once. Returns how many. */
size_t pool_unqueue(pool *p);

/* Stops taking jobs, waits up to grace_ms for running ones (their jobs are
 * then taken back as usual), and stops the threads/children. Jobs never
 * started are handed back with status TASK_PENDING so the loop can requeue. */
int pool_close(pool *p, int grace_ms, warren_error *err);

/* Frees the pool; kills whatever still runs. NULL is a no-op. */
void pool_free(pool *p);

#define POOL_MAX_CONCURRENCY 1024 /* pool_resize's ceiling */

/* Changes the pool's size to new_concurrency (1..POOL_MAX_CONCURRENCY, else
 * WARREN_EINVAL) for pool_grow/pool_shrink. Growing starts threads/forks
 * children at once (loop thread only: prefork children must be forked by the
 * thread that lives as long as the worker). Shrinking never interrupts a
 * running task: surplus idle threads/children go at once, busy ones as they
 * finish their job (no new job is handed to them); queued jobs wait for the
 * remaining ones. A child that cannot be forked now is retried with backoff
 * (0 is still returned). WARREN_EINVAL once the pool is closing. */
int pool_resize(pool *p, int new_concurrency, warren_error *err);
/* The size asked for (at open, or by the last pool_resize). */
int pool_concurrency(const pool *p);


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
	size_t (*unqueue)(void *impl);
	int (*close)(void *impl, int grace_ms, warren_error *err);
	void (*free)(void *impl);
	int (*resize)(void *impl, int concurrency, warren_error *err); /* checked by pool.c */
	bool (*started)(void *impl, uint64_t seq, int64_t *start_ns, int64_t *pid);
	void (*on_start)(void *impl, pool_start_fn fn, void *arg);
} pool_ops;

extern const pool_ops pool_threads_ops; /* pool_threads.c */
extern const pool_ops pool_prefork_ops; /* pool_prefork.c */


/* ==== prefork internals (pool_prefork.c the parent, pool_prefork_child.c a
 * child's loop, pool_prefork_frame.c the frames between them) ====
 * The design comment at the top of pool_prefork.c explains fds, frames and
 * child deaths. Frame layouts and what to bump: pool_prefork_frame.c. */

#define PREFORK_FRAME_HEADER 4        /* big-endian payload length */
#define PREFORK_FRAME_MAX (64u << 20) /* a longer payload is garbage */
#define PREFORK_CHILD_FD 3            /* where a child keeps its socket */

/* A job frame as a child decodes it. Strings are NUL-terminated copies in
 * the unpacked's zone; headers/args/kwargs are the packed bytes (NULL/0 =
 * none), pointing into the frame. Valid while both live. */
typedef struct prefork_job_frame {
	uint64_t seq;
	const char *task_id;
	const char *task_name;
	int retries;
	const void *headers, *args, *kwargs;
	size_t headers_len, args_len, kwargs_len;
	double soft_time_limit;
} prefork_job_frame;

/* A result as a child encodes it. Strings NUL-terminated; NULL or "" = none. */
typedef struct prefork_result_frame {
	uint64_t seq;
	task_status status;
	const void *result; /* packed; NULL = none */
	size_t result_len;
	const char *exc_type, *exc_module, *exc_message, *traceback;
	double retry_countdown;
	double runtime;
	int64_t pid;
	bool retiring; /* the child exits after this frame */
} prefork_result_frame;

/* The payload length in a frame's PREFORK_FRAME_HEADER bytes. */
uint32_t prefork_frame_length(const void *header);

/* Whole frames (header included) into *out, malloc'd, freed by the caller.
 * 0, WARREN_ENOMEM or WARREN_ELIMIT (payload over PREFORK_FRAME_MAX). */
int prefork_encode_job(const pool_job *job, char **out, size_t *len, warren_error *err);
int prefork_encode_result(const prefork_result_frame *r, char **out, size_t *len,
			  warren_error *err);

/* Decodes a payload (no header). u must be initialized; the caller destroys
 * it. 0, or WARREN_EDECODE for anything but a well-formed frame of this
 * version. */
int prefork_decode_job(const void *payload, size_t len, msgpack_unpacked *u,
		       prefork_job_frame *out, warren_error *err);

/* Decodes a result payload for job: WARREN_EDECODE unless it is well formed
 * and for job->seq; then fills job's outputs (copies, owned by the job) and
 * *retiring. WARREN_ENOMEM leaves job's outputs partly filled. */
int prefork_decode_result(const void *payload, size_t len, pool_job *job, bool *retiring,
			  warren_error *err);

/* A child's life after fork: resets signals, closes every inherited fd but
 * fd (moved to PREFORK_CHILD_FD), serves job frames until EOF, exits. */
_Noreturn void prefork_child_main(const registry *reg, const pool_options *o, int fd,
				  int parent_pid);


/* ==== job execution (pool_threads.c; any pool may use it) ==== */

/* Runs one job on the calling thread against reg: unpacks its headers, args
 * and kwargs under the default limits, looks the task up, applies the soft
 * time limit, runs the handler and fills the job's outputs (status, result,
 * exc_*, traceback, retry_countdown, runtime, worker_pid). Never fails: a
 * job that cannot be run ends as a FAILURE saying why. */
void pool_job_execute(const registry *reg, pool_job *job);


/* ==== log (worker/log.c) ====
 *
 * One line per event on stderr, as text or JSON. The level and format are set
 * by main() before any thread starts and may change later only through
 * log_set_level_format() (a SIGHUP reload, reload.c): they are relaxed atomics
 * in log.c's statics, read by any thread. log_at() checks the level before any
 * argument is formatted (redis's serverLog idea), so a debug line costs one
 * comparison when debug is off. */

#include <stdio.h>
#include <time.h>

#include "config/config.h"

/* The task a log line is about; any field may be NULL, runtime < 0: none. */
typedef struct log_fields {
	const char *task_id;
	const char *task_name;
	const char *state;
	double runtime;
} log_fields;

/* Sets the level, format, hostname (copied, may be NULL) and stream (NULL:
 * stderr). Call before starting threads. */
void log_setup(config_log_level level, config_log_format format, const char *hostname,
	       FILE *out);
/* Frees what log_setup copied. */
void log_teardown(void);
/* Changes the level and format of every later line (reload.c; any thread may
 * be logging meanwhile). Prefork children keep what they forked with. */
void log_set_level_format(config_log_level level, config_log_format format);
bool log_enabled(config_log_level level);
/* Formats and writes one line; use log_at() instead, it checks the level. */
void log_emit(config_log_level level, const log_fields *f, const char *fmt, ...)
	WARREN_PRINTF(3, 4);
#define log_at(level, fields, ...)                              \
	do {                                                    \
		if (log_enabled(level))                         \
			log_emit((level), (fields), __VA_ARGS__); \
	} while (0)

/* The pure part, for tests: one line (with '\n') into buf, truncated but
 * always NUL-terminated and, in JSON, always a complete object. Returns the
 * length written. */
size_t log_format_line(char *buf, size_t cap, config_log_format format, config_log_level level,
		       const struct timespec *now, const char *hostname, const log_fields *f,
		       const char *msg);
/* "debug", "info", ... ; parses the names Celery's --loglevel takes
 * (case-insensitive, "warn" too). Returns 0 or WARREN_EINVAL. */
int log_level_parse(const char *name, config_log_level *out);


/* ==== loop (worker/loop.c, consume.c, results.c, deadletter.c) ====
 *
 * The loop thread owns the broker connection, the result backend and every
 * in-flight message; see the design comment at the top of loop.c. The pure
 * helpers (rate limiter, times, backoff) live in ratelimit.c and eta.c. */

#include "backends/backend.h"
#include "broker-adapter/broker.h"

#define LOOP_DEAD_LETTER "warren.dead"  /* exchange and queue */
#define LOOP_REASON_HEADER "x-warren-reason"

/* What the worker was asked to do, merged from config and flags by main. */
typedef struct loop_settings {
	const warren_config *cfg;   /* borrowed: tasks, queues, exchanges */
	const registry *reg;        /* borrowed */
	pool_options pool;
	int prefetch_multiplier;    /* 0: unlimited prefetch */
	const char *const *queues;  /* consumed queues */
	size_t n_queues;
	const char *broker_urls;    /* ';'-separated failover list */
	const char *result_backend; /* URL; NULL or "" = none */
	long long result_expires;   /* seconds */
	const char *hostname;       /* "celery@host" */
	double shutdown_timeout;    /* seconds of grace for running tasks, 0 = none */
	bool task_events;           /* -E: task-* events to celeryev (events.c) */
	bool worker_events;         /* worker-* heartbeats; off with --without-heartbeat */
	int metrics_port;           /* /metrics and /healthz (metrics.c); 0 = off */
	const char *metrics_bind;   /* their address; NULL = 127.0.0.1 */
	const char *statedb;        /* revoked-ids state file; NULL = in memory only */
	bool without_mingle;        /* skip the start-up `hello` to other workers */
	const struct worker_cli *cli; /* borrowed: the flags (cli->config: the file a
				       * SIGHUP re-reads); flags keep winning over a
				       * reloaded file. NULL: none */
} loop_settings;

/* How loop_run ended: LOOP_WARM after a warm shutdown (everything finished
 * or requeued), LOOP_COLD after a cold one (handlers may still be running:
 * main must exit without freeing what they use). Negative: an error, err
 * says why (WARREN_EBROKER: broker unreachable at start). */
enum { LOOP_WARM = 0, LOOP_COLD = 1 };
int loop_run(const loop_settings *s, warren_error *err);

/* Signals the loop handles: block them in every thread (before the pool
 * starts) so only the loop's signalfd sees them. */
int loop_block_signals(warren_error *err);

/* notify.c: sends `state` ("READY=1", "STOPPING=1") to the service manager
 * over $NOTIFY_SOCKET (systemd's sd_notify protocol); 0 and nothing sent
 * when the variable is unset (not started by systemd with Type=notify). */
int worker_notify(const char *state, warren_error *err);

/* The effective settings of one task: config over plugin options over
 * Celery's defaults. */
typedef struct loop_task_conf {
	bool acks_late, ignore_result, track_started, retry_jitter;
	bool reject_on_worker_lost; /* a dead child requeues the task once */
	int max_retries;            /* -1: forever */
	double default_retry_delay; /* seconds */
	double retry_backoff;       /* factor in seconds, 0: none */
	double retry_backoff_max;   /* seconds */
	double rate;                /* tasks per second, 0: unlimited */
	double soft_time_limit, time_limit;
	const warren_task_schema *schema; /* NULL: unchecked */
	const char *const *autoretry_for;
} loop_task_conf;

void loop_task_conf_resolve(const warren_config *cfg, const registry_entry *entry,
			    loop_task_conf *out);

/* ---- pure helpers (eta.c, ratelimit.c), unit-tested ---- */

/* Parses Celery's ISO-8601 eta/expires ("2026-11-27T10:18:50.001900+00:00";
 * naive means UTC, 'Z' accepted) into seconds since the epoch. Returns 0 or
 * WARREN_EDECODE. */
int loop_parse_iso8601(const char *text, double *epoch, warren_error *err);
/* Writes epoch as "YYYY-MM-DDTHH:MM:SS.ffffff+00:00" (33 bytes with NUL). */
void loop_format_iso8601(double epoch, char buf[40]);
/* Seconds before retry number `retries` (0-based) of a task with conf:
 * countdown when the handler gave one (>= 0), else Celery's autoretry
 * backoff (factor * 2^retries capped, full jitter from *seed) or
 * default_retry_delay. */
double loop_retry_delay(const loop_task_conf *conf, int retries, double countdown,
			bool autoretry, unsigned *seed);
/* True when exc_type (module-qualified or bare) is in the NULL-terminated
 * list; "Exception" matches everything. */
bool loop_autoretry_matches(const char *const *list, const char *exc_module,
			    const char *exc_type);

/* A token bucket: `rate` tokens a second, up to `burst`, starting full. */
typedef struct rate_bucket {
	double rate, burst, tokens;
	int64_t last_ns;
} rate_bucket;

void rate_bucket_init(rate_bucket *b, double rate, int64_t now_ns);
/* Takes one token if there is one (returns 0), else returns how many ns until
 * there will be, taking nothing. */
int64_t rate_bucket_take(rate_bucket *b, int64_t now_ns);


/* ---- inside the loop (loop.c, consume.c, results.c, deadletter.c) ---- */

/* ---- batched acks (acks.c; the design comment is there) ---- */

typedef struct acks_entry {
	uint64_t tag;
	bool settled; /* acked by intent; the basic.ack is not sent yet */
} acks_entry;

typedef struct loop_acks {
	uint64_t generation;   /* the connection generation of every entry */
	acks_entry *ent;       /* outstanding task deliveries, tags ascending */
	size_t n, cap;
	size_t settled;        /* entries marked settled, not yet acked */
	size_t bound;          /* flush when this many are settled */
	int64_t hold_ns;       /* longest wait of settled ones behind an unsettled one */
	int64_t held_since_ns; /* 0: none held */
} loop_acks;

/* Sends one ack (multiple: every unacked delivery <= tag); 0 or an error. */
typedef int (*acks_send_fn)(void *arg, uint64_t tag, bool multiple);

void acks_init(loop_acks *a, size_t bound, int64_t hold_ns);
void acks_release(loop_acks *a);
/* Tracks a delivery before anything may settle it; another generation
 * resets the tracker first. WARREN_ENOMEM, or WARREN_EINVAL for a tag not
 * above the last one: the caller must then settle it on its own (requeue). */
int acks_track(loop_acks *a, uint64_t generation, uint64_t tag);
/* ack: marks it settled, to be acked by acks_flush. !ack: the caller has
 * nacked or rejected it itself; it is forgotten. False when the delivery is
 * not tracked (another generation, never tracked, already acked): the
 * caller then sends its ack itself. */
bool acks_settle(loop_acks *a, uint64_t generation, uint64_t tag, bool ack);
/* True when `bound` settled ones wait: flush now. */
bool acks_due(const loop_acks *a);
/* When held acks must go out (CLOCK_MONOTONIC ns), 0: no deadline. */
int64_t acks_deadline_ns(const loop_acks *a);
/* Sends what may go now (see acks.c); all: also every held one (shutdown).
 * generation is the connection's current one. Returns the acks sent. */
size_t acks_flush(loop_acks *a, uint64_t generation, int64_t now_ns, bool all,
		  acks_send_fn send, void *arg);

/* One delivered task the loop holds: from decode until ack. */
typedef struct loop_task {
	broker_message *msg;          /* owned; settled by the loop */
	schema_task_msg *tm;          /* owned; the decoded message */
	const registry_entry *entry;
	loop_task_conf conf;
	const char *queue;            /* the consumed queue it came from; lives in the loop */
	int64_t received_ns;
	bool acked;                   /* acks_late off: acked on receipt */
	struct loop_task *next;       /* rate-limit wait list */
} loop_task;

/* What to do once the broker confirms (or refuses) a publish. */
typedef enum loop_after_kind {
	LOOP_AFTER_DEADLETTER, /* a copy in warren.dead: ack the original */
	LOOP_AFTER_RETRY,      /* the retry is parked: store RETRY, ack */
	LOOP_AFTER_PARK,       /* a future eta is parked: ack */
} loop_after_kind;

typedef struct loop_after {
	uint64_t cookie;
	loop_after_kind kind;
	loop_task *task;      /* RETRY, PARK: owned */
	broker_message *msg;  /* DEADLETTER: owned */
	schema_result result; /* RETRY: stored once confirmed */
	struct loop_after *next;
} loop_after;

/* A rate-limited task name's bucket and its waiting tasks (FIFO). */
typedef struct loop_limiter {
	const registry_entry *entry;
	rate_bucket bucket;
	loop_task *head, *tail;
	size_t waiting;
	int64_t wake_ns;      /* 0: nobody waits */
	struct loop_limiter *next;
} loop_limiter;

typedef struct loop {
	const loop_settings *s;
	broker_conn *conn;
	backend *results;
	pool *pool;
	int sigfd;
	char (*consumer_tags)[128]; /* per settings queue */
	uint64_t next_seq;
	uint64_t next_cookie;
	loop_after *afters;         /* publishes awaiting their outcome */
	loop_limiter *limiters;
	size_t in_pool;
	unsigned seed;
	bool draining;              /* warm shutdown started */
	bool cold;
	int64_t drain_deadline_ns;  /* 0: none */
	int64_t received_ns;        /* loop.c: when the broker was last read */
	uint64_t processed;
	struct events *events;      /* celeryev dispatcher (events.c); NULL = off */
	struct metrics *metrics;    /* Prometheus endpoint (metrics.c); NULL = off */
	struct control *control;    /* remote control and revokes (control.c) */
	struct canvas *canvas;      /* canvas.c: chord join handle, confirms; NULL until used */
	loop_acks acks;             /* acks.c: settled task deliveries awaiting a batched ack */
	struct reload *reload;      /* reload.c: configs a SIGHUP loaded; NULL until one did */
} loop;

/* consume.c: one broker event. */
void loop_on_message(loop *l, broker_message *msg);
/* consume.c: submits a task that passed every check (rate limit included). */
void loop_submit(loop *l, loop_task *t);
/* consume.c: releases rate-limited tasks whose token is due; returns the
 * next wake-up (0: none). */
int64_t loop_release_limited(loop *l, int64_t now_ns);
/* consume.c: drops waiting tasks (their messages return to the queue when
 * the connection closes or was lost). */
void loop_drop_limited(loop *l);
void loop_task_free(loop_task *t);
/* consume.c: the queue a delivery came from. */
const char *loop_queue_of(const loop *l, const broker_message *msg);

/* results.c: a finished job from the pool. */
void loop_on_done(loop *l, pool_job *job);
/* results.c, before pool_submit: asks the pool to report job's start when
 * something happens then (STARTED with track_started, task-started with
 * -E); the report stores and sends them when the task really starts. */
void loop_watch_start(loop *l, loop_task *t, pool_job *job);
/* results.c: stores r (state and value set by the caller) as task_id's
 * result, replying to msg's reply_to/correlation_id; tm (may be NULL) adds
 * group and parent ids. Does nothing without a backend. Errors are logged:
 * the message is still settled, as Celery does when a store fails. */
void loop_store(loop *l, const char *task_id, const schema_task_msg *tm,
		const broker_message *msg, schema_result *r);
/* results.c: settle; errors are logged (an old connection's delivery is
 * redelivered by the broker anyway). */
void loop_ack(loop *l, const broker_message *msg);
void loop_requeue(loop *l, const broker_message *msg);
/* results.c: reject without requeue (dead-lettering refused or failed). */
void loop_reject(loop *l, const broker_message *msg);
/* results.c: sends the batched acks that may go now (acks.c); all: every
 * settled one (shutdown). */
void loop_flush_acks(loop *l, bool all);
/* results.c: the broker's outcome callback. */
void loop_on_outcome(void *arg, uint64_t cookie, broker_outcome outcome, const char *reason);
/* results.c: parks t until epoch `when` (a future eta), acks once parked. */
void loop_park(loop *l, loop_task *t, double when);
/* results.c: the one call into delayed delivery. */
int loop_publish_delayed(loop *l, const char *routing_key, int64_t delay_ms,
			 const broker_props *props, const void *body, size_t len,
			 uint64_t cookie, warren_error *err);
void loop_after_add(loop *l, loop_after *a);
/* Unlinks and returns the entry for cookie (the caller owns it), or NULL. */
loop_after *loop_after_take(loop *l, uint64_t cookie);

/* deadletter.c: copies msg into warren.dead with the reason, then acks it;
 * if the message named a task id, stores FAILURE exc_type(reason) so the
 * caller is not left waiting. Takes msg. tm may be NULL. */
void loop_dead_letter(loop *l, broker_message *msg, const schema_task_msg *tm,
		      const char *exc_type, const char *exc_module, const char *reason);


/* ==== remote control (worker/control.c, control_inspect.c) and revokes
 * (worker/revoke.c) ====
 *
 * Celery's pidbox: the loop consumes "<hostname>.celery.pidbox" on its own
 * connection and control.c answers on the loop thread, so a reply never
 * races a task's settle. See the top of control.c. */

#define REVOKE_MAX 50000        /* Celery's REVOKES_MAX */
#define REVOKE_EXPIRES 10800.0  /* Celery's REVOKE_EXPIRES: 3 h, in seconds */

typedef struct revoke_set revoke_set;

/* An empty set; path (copied; NULL or "" = none) is its state file, read by
 * revoke_load and written by revoke_save. Freed by revoke_set_free. */
int revoke_set_new(const char *path, revoke_set **out, warren_error *err);
void revoke_set_free(revoke_set *s);
/* The state file's path, or NULL; lives as long as s. */
const char *revoke_set_path(const revoke_set *s);
/* Adds id (copied) revoked at `when` (unix seconds); an id already there is
 * renewed if when is later. 0, WARREN_EINVAL (empty id) or WARREN_ENOMEM. */
int revoke_add(revoke_set *s, const char *id, double when);
/* True when id was revoked less than REVOKE_EXPIRES before now. */
bool revoke_contains(const revoke_set *s, const char *id, double now);
/* Drops expired ids, then the oldest beyond REVOKE_MAX; returns how many. */
size_t revoke_purge(revoke_set *s, double now);
size_t revoke_count(const revoke_set *s);
/* Entry i (< revoke_count): its id (valid until the set changes) and when. */
const char *revoke_at(const revoke_set *s, size_t i, double *when);
/* Reads the state file, skipping expired ids; a missing file is empty.
 * WARREN_EDECODE for a file of another version (nothing loaded), WARREN_EIO. */
int revoke_load(revoke_set *s, double now, size_t *loaded, warren_error *err);
/* The default state file for a node: "worker-<hostname>.state" under
 * $STATE_DIRECTORY (systemd's StateDirectory=), else $XDG_STATE_HOME/warren,
 * else ~/.local/state/warren (created), else the working directory. */
void revoke_default_path(const char *hostname, char *buf, size_t cap);
/* Writes the state file atomically (see revoke.c for the format). */
int revoke_save(revoke_set *s, double now, warren_error *err);
/* revoke_save when something changed and the last write is a second old. */
int revoke_maybe_save(revoke_set *s, double now, warren_error *err);

/* Celery's node name from --hostname / worker.hostname (NULL: default):
 * "%h" the host name, "%n" its first label, "%d" the rest (the domain), "%%"
 * a '%'; a name without '@' gets "celery@" in front, so NULL gives
 * "celery@<host>". Writes into buf (always NUL-terminated). */
void control_nodename(const char *given, char *buf, size_t cap);

/* Sets up remote control for the loop: the revoked set (loaded from
 * s->statedb), the pidbox exchange and queue and their consumer, then the
 * start-up `hello` (mingle). Call after the loop's topology is declared and
 * before its task consumers start. Freed by control_close. */
int control_open(loop *l, warren_error *err);
/* Writes the state file a last time and frees everything. NULL-safe. */
void control_close(loop *l);
/* Whether msg came from a consumer control.c started (the pidbox queue). */
bool control_owns(const loop *l, const broker_message *msg);
/* Handles one pidbox message; takes msg. */
void control_on_message(loop *l, broker_message *msg);
/* Housekeeping on every turn: the throttled state-file write. */
void control_tick(loop *l);
/* consume.c: true when t was revoked; then it is settled as Celery does
 * (REVOKED TaskRevokedError('revoked') stored, acked) and freed. */
bool control_check_revoked(loop *l, loop_task *t);
/* consume.c: applies live rate_limit/time_limit changes to a task's conf. */
void control_apply_overrides(const loop *l, loop_task *t);
/* control_cmd.c, reload.c: the live bucket of e's limiter (if any) follows
 * rate (<= 0: unlimited); tasks already waiting keep their place. */
void control_retune_limiter(loop *l, const registry_entry *e, double rate);
/* control_cmd.c: the pool size now (pool_grow/pool_shrink change it; the
 * started size until the pool exists), and the per-consumer prefetch that
 * goes with it (concurrency x multiplier, capped at 65535; 0 = unlimited). */
int control_concurrency(const loop *l);
uint16_t control_prefetch(const loop *l);
/* consume.c / results.c: a job entered the pool, and left it. */
void control_task_submitted(loop *l, loop_task *t, uint64_t seq);
void control_task_done(loop *l, const pool_job *job);
/* results.c: a queued job came back unrun; true when it was revoked (the
 * caller stores REVOKED and acks instead of requeueing). */
bool control_is_revoked(const loop *l, const char *task_id);

/* ---- inside remote control (control.c, control_cmd.c, control_inspect.c) ---- */

/* A task in the pool, for active, query_task and terminate. */
typedef struct control_active {
	uint64_t seq;
	loop_task *t;        /* the loop's; valid until control_task_done */
} control_active;

/* Tasks processed per name, for stats' "total". */
typedef struct control_count {
	const registry_entry *entry;
	int64_t count;
} control_count;

/* A live rate_limit / time_limit change; < 0: not changed. */
typedef struct control_override {
	const registry_entry *entry;
	double rate;
	double soft_time_limit, time_limit;
} control_override;

/* A queue consumed by add_consumer. */
typedef struct control_queue {
	char *name, *exchange, *exchange_type, *routing_key;
	char tag[128];
	bool cancelled;
} control_queue;

typedef struct control {
	revoke_set *revoked;
	char queue[300];              /* "<hostname>.celery.pidbox" */
	char tag[128];                /* its consumer */
	char mingle_tag[128];         /* the hello replies' consumer while mingling */
	char mingle_ticket[37];
	uint64_t clock;               /* Celery's Lamport clock */
	double started;               /* unix seconds */
	uint64_t next_cookie;
	control_active *active;
	size_t n_active, cap_active;
	control_count *counts;
	size_t n_counts;
	control_override *overrides;
	size_t n_overrides;
	control_queue *added;
	size_t n_added;
	bool *cancelled;              /* per settings queue: cancel_consumer'd */
	size_t mingled;               /* nodes that answered hello */
} control;

#define CONTROL_NO_REPLY 1 /* a handler's "do not answer" (shutdown) */

/* A command: packs its reply value into pk (0), returns CONTROL_NO_REPLY,
 * or fails (the reply is {"error": err->msg}). */
typedef int (*control_fn)(loop *l, const schema_control_request *req, msgpack_packer *pk,
			  warren_error *err);

/* The handler for method, or NULL (control_cmd.c and control_inspect.c). */
control_fn control_cmd_find(const char *method);
control_fn control_inspect_find(const char *method);

/* An argument as a NUL-terminated copy into buf: true when present and a
 * string that fits. */
bool control_arg_string(const schema_control_request *req, const char *key, char *buf,
			size_t cap);
/* A number (int or float) or a numeric string argument; false if absent. */
bool control_arg_number(const schema_control_request *req, const char *key, double *out);
bool control_arg_bool(const schema_control_request *req, const char *key, bool dflt);
double control_wall_now(void);
/* Advances the Lamport clock (and past `seen`, 0 = none); returns it. */
uint64_t control_clock_forward(control *c, uint64_t seen);
/* The override for entry (created with every field < 0), or NULL. */
control_override *control_override_for(control *c, const registry_entry *e, bool create);
/* Packs a revoked set as hello's {"revoked": {id: [t, id]}, "clock": n}
 * (t on this host's monotonic clock, as Celery's LimitedSet keeps it). */
int control_pack_hello(loop *l, msgpack_packer *pk);
/* Merges a peer's revoked map ({id: t} or {id: [t, id]}) into the set. */
size_t control_merge_revoked(loop *l, const msgpack_object *revoked);


/* ==== monitoring: events (worker/events.c) and metrics (worker/metrics.c) ====
 *
 * events.c publishes Celery's monitoring events on the loop's connection,
 * fire-and-forget (delivery_mode 1, no wait for a confirm: the broker's
 * outcome for them is dropped by cookie, EVENTS_COOKIE_TAG), and reports the
 * same task transitions to metrics.c. metrics.c serves /metrics and /healthz
 * from libmicrohttpd's own thread; the loop thread only writes counters (see
 * the top of metrics.c for what is shared and how). Every function here is a
 * no-op when its part is off (l->events / l->metrics NULL). Loop thread only,
 * except where metrics.c says otherwise. */

/* Publish cookies of events carry this bit. The loop's own cookies count up
 * from 1 and the rpc backend's carry BACKEND_COOKIE_TAG (bit 63). */
#define EVENTS_COOKIE_TAG (UINT64_C(1) << 61)
typedef struct events events; /* events.c's dispatcher state */
bool events_owns_cookie(uint64_t cookie);

/* Declares the celeryev exchange and sends worker-online (when worker or
 * task events are on); call once the consumers run. Freed by events_stop. */
int events_start(loop *l, warren_error *err);
/* Flushes buffered task events, sends worker-offline, frees. NULL-safe. */
void events_stop(loop *l);
/* Every turn: the heartbeat when due, the task buffer when its short timer
 * ran out, and the gauges and liveness metrics.c reports. */
void events_tick(loop *l);
/* When events_tick next has work (CLOCK_MONOTONIC ns), 0 = none. */
int64_t events_next_deadline_ns(const loop *l);

/* Task transitions, as Celery's worker reports them (worker/request.py,
 * strategy.py, consumer.py): each sends its event with -E and counts it. */
void events_task_received(loop *l, const loop_task *t);
/* t began to run (Celery's task_accepted): task-started with -E, and the
 * count heartbeats report as `processed`. A task whose start was not
 * reported is counted when it comes back instead (events_task_accepted). */
void events_task_started(loop *l, const loop_task *t);
void events_task_accepted(loop *l);
void events_task_succeeded(loop *l, const loop_task *t, const pool_job *job);
/* exc_message is the exception's one argument (its repr is sent);
 * traceback may be NULL; runtime < 0: the task never ran. */
void events_task_failed(loop *l, const schema_task_msg *tm, const char *exc_type,
			const char *exc_message, const char *traceback, double runtime);
void events_task_retried(loop *l, const loop_task *t, const pool_job *job);
/* signum < 0: none (null). */
void events_task_revoked(loop *l, const schema_task_msg *tm, bool terminated, int signum,
			 bool expired);
void events_task_rejected(loop *l, const schema_task_msg *tm, bool requeue);
/* The broker cancelled the consumer of `queue` (on_event in loop.c). */
void events_consumer_cancelled(loop *l, const char *queue);
/* Starts the metrics server from l->s when a port is set (before the
 * broker connects, so /healthz answers 503 meanwhile). Freed by
 * metrics_free(l->metrics). */
int events_metrics_start(loop *l, warren_error *err);

typedef struct metrics metrics;

typedef struct metrics_options {
	int port;             /* TCP port, > 0 */
	const char *bind;     /* IPv4 or IPv6 address; NULL = 127.0.0.1 */
	pool_kind pool;       /* for warren_pool_children_alive */
	int concurrency;
	size_t consumers;     /* task queues consumed (healthz: one must stay) */
} metrics_options;

/* Loads libmicrohttpd (dlopen'd on first use, see the top of metrics.c) and
 * starts the HTTP server thread. *out is freed by metrics_free (which stops
 * the thread first). WARREN_ECONFIG when the library cannot be loaded (the
 * message names it and says dlerror()) or when it cannot listen. */
int metrics_new(const metrics_options *o, metrics **out, warren_error *err);
/* The seam metrics_new loads libmicrohttpd through: dlopen, unless a test
 * puts a failing one in its place. */
extern void *(*metrics_dlopen)(const char *file, int mode);
void metrics_free(metrics *m);
/* Counters the loop thread bumps. task names are copied. runtime < 0: no
 * histogram sample (the task never ran). */
void metrics_task_done(metrics *m, const char *task, const char *state, double runtime);
void metrics_task_retried(metrics *m, const char *task, double runtime);
void metrics_dead_lettered(metrics *m);
void metrics_reconnected(metrics *m);
/* A task queue's consumer was cancelled by the broker (not resumed). */
void metrics_consumer_cancelled(metrics *m);
/* Gauges and liveness, set every turn. */
typedef struct metrics_gauges {
	int64_t in_flight;    /* jobs in the pool (running or queued there) */
	int64_t prefetched;   /* deliveries held outside the pool (rate limits, parking) */
	bool connected;       /* the broker connection is up */
	bool consuming;       /* at least one task consumer is active */
} metrics_gauges;
void metrics_set(metrics *m, const metrics_gauges *g);

/* The pure part, for tests and the HTTP thread: the whole /metrics page
 * into a malloc'd string (free it), or NULL when out of memory. */
char *metrics_render(metrics *m);


/* ==== config reload on SIGHUP (worker/reload.c) ====
 *
 * The loop re-reads the --config file, validates it as start-up does, and
 * applies what can change safely (log level and format, every per-task
 * setting for tasks received afterwards); what needs a restart is named in
 * the log and kept. The design comment at the top of reload.c says which
 * config a task resolves against and how long an old one lives. */

/* One setting that differs between two configs. */
typedef struct reload_change {
	char key[200];          /* dotted: "worker.concurrency", "tasks.math.add.rate_limit" */
	char before[160], after[160]; /* as written for a log line (URLs masked) */
	bool restart;           /* true: only a restart applies it */
} reload_change;

/* The pure part, unit-tested: every setting that differs between old and
 * cur, at most cap of them into out (out may be NULL when cap is 0), in
 * section order. Returns how many differ (may exceed cap). */
size_t reload_diff(const warren_config *old, const warren_config *cur, reload_change *out,
		   size_t cap);
/* The threads pool cannot stop a running handler: a hard time limit in
 * cfg's tasks is refused (WARREN_ECONFIG, file:line:column) unless the pool
 * is prefork. worker_main.c at start, reload.c on SIGHUP. */
int reload_check_time_limits(const warren_config *cfg, pool_kind kind, warren_error *err);
/* The config tasks received now resolve against (l->s->cfg until a reload). */
const warren_config *reload_config(const loop *l);
/* loop.c: SIGHUP arrived. Logs everything; never fails the loop. */
void reload_on_hup(loop *l);
/* loop.c, every turn: frees old configs once no task can point into them. */
void reload_tick(loop *l);
/* loop.c, at the end: frees everything reload.c holds. */
void reload_free(loop *l);


/* ==== command line (worker/cli.c; main in worker_main.c) ==== */

#define WORKER_CLI_MAX_PLUGINS 64

/* What the command line said; NULL / -1 = not given. Strings point into argv. */
typedef struct worker_cli {
	const char *config, *broker, *result_backend, *queues, *pool;
	const char *loglevel, *log_format, *hostname;
	const char *plugins[WORKER_CLI_MAX_PLUGINS];
	size_t n_plugins;
	int concurrency;
	int prefetch_multiplier;
	bool check_config, help;
	bool events, without_heartbeat; /* -E, --without-heartbeat */
	int metrics_port;                /* --metrics-port; -1 = not given */
	const char *metrics_bind;        /* --metrics-bind */
	const char *statedb;             /* --statedb PATH|none */
	bool without_mingle;             /* --without-mingle */
} worker_cli;

/* Parses argv (`--opt value`, `--opt=value`, and Celery's short -c -Q -l -P
 * -n -b). Returns 0 or WARREN_EINVAL with err saying which option is wrong:
 * main exits 64 then. */
int worker_cli_parse(int argc, char **argv, worker_cli *out, warren_error *err);
/* The --help text. */
extern const char worker_cli_usage[];

/* ==== canvas (worker/canvas.c) ====
 * Callbacks, chain links, errbacks, failure down a chain, the chord join;
 * the order against the result store and the ack is explained at the top
 * of canvas.c. Loop thread only. */

/* SUCCESS, before the result is stored: sends the callbacks and the next
 * link of the chain with the result (packed msgpack) as first argument,
 * waits for their confirms, and sets r's children to what was sent, as
 * Celery's worker stores them (r may be NULL: nothing recorded). */
void canvas_on_success(loop *l, loop_task *t, const void *result, size_t len,
		       schema_result *r);
/* Any final state (r as stored, state and value set), after the store and
 * before the ack: counts a chord part (firing or failing the body when it
 * completes the join); on FAILURE/REVOKED stores it under each remaining
 * chain step's id; on FAILURE runs the errbacks. */
void canvas_on_final(loop *l, loop_task *t, const schema_result *r);
/* The broker's outcome for a message canvas.c published: true when the
 * cookie was canvas's (then ignore it). */
bool canvas_outcome(loop *l, uint64_t cookie, broker_outcome o, const char *reason);
/* Frees l->canvas. */
void canvas_free(loop *l);
/* Registers celery.map and celery.starmap (Celery's xmap/xstarmap) in reg,
 * unless a plugin did. Call once plugins are loaded, before the pool starts. */
int canvas_register_builtins(registry *reg, warren_error *err);

#endif
