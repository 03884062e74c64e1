/* worker/pool_threads.c - the threads pool: N threads run handlers in the
 * worker process itself, the lowest-overhead pool.
 *
 * Concurrency design. Two queues, one mutex:
 *   - `todo`: jobs the loop submitted; threads wait on `work` for it to fill.
 *   - `done`: finished jobs; the loop takes them back on its own thread.
 * The eventfd is readable exactly while `done` or `starts` (below) is
 * non-empty: a thread writes it when it makes one of them non-empty and the
 * loop reads (resets) it when it has taken the last of both, all under the
 * mutex, so the loop's poll() never misses a completion and never spins on a
 * stale one. Handlers run with the mutex released; a job belongs to exactly
 * one party at a time (loop -> todo -> thread -> done -> loop), so job fields
 * need no locking.
 * Starts: the thread that takes a job stamps start_ns/start_pid on it and
 * notes it in its `current` slot, under the mutex it holds to take it
 * (pool_job_started reads them under the mutex). A job with report_start
 * is also pushed on `starts`, with the eventfd written. Every push, start or
 * done, takes the next `order` under the mutex, and take_done merges the
 * two by it: a start is reported (start_fn called) before any job that
 * finished after it and after every job that finished before it. So a job's
 * start reaches the loop before the job does (its thread pushed the start
 * before running it), and with one thread the next task's STARTED and
 * task-started come after the previous task's result, as they happened.
 * start_fn reads what the thread wrote before the push, and inputs; the
 * thread meanwhile writes only outputs.
 * Close: `closing` stops threads from taking new work; unstarted jobs move to
 * `done` as TASK_PENDING for the loop to requeue; the loop waits for the
 * running ones up to its grace (`idle` is signalled as each finishes). A
 * thread cannot be killed safely, so a hard time limit is refused at start-up
 * (worker_main.c) and free() joins only threads that have finished; a thread
 * still inside a handler after the grace is detached and the process exits
 * under it (a cold shutdown).
 * Resize (pool_grow/pool_shrink): `n_threads` is the size wanted, `alive`
 * the threads that serve it. Growing starts threads at once. Shrinking only
 * lowers n_threads and wakes the idle: a thread that finds alive >
 * n_threads when it looks for work (so never in the middle of a job) leaves;
 * tick joins it and its slot is reused by a later grow.
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "schemas/schemas.h"
#include "worker.h"

typedef struct job_node {
	pool_job *job;
	uint64_t order;        /* done: when it was pushed, among done and starts */
	struct job_node *next;
} job_node;

/* A started job whose on_start the loop has not called yet. */
typedef struct start_rep {
	pool_job *job;
	uint64_t order;
} start_rep;

typedef struct start_list {
	start_rep *v;
	size_t n, cap;
	size_t next;           /* the loop's copy: reported up to here */
} start_list;

typedef struct job_list {
	job_node *head, *tail;
	size_t n;
} job_list;

typedef struct threads_pool {
	const registry *reg;
	int n_threads;         /* the size wanted (pool_resize changes it) */
	int alive;             /* threads serving, not leaving */
	pthread_t *threads;
	pool_job **current;    /* per slot: the job its thread runs, or NULL */
	bool *finished;        /* per slot: its thread returned from its main */
	bool *joined;          /* per slot: joined by tick/resize; free for reuse */
	int started;           /* slots in use (created at least once) */
	int cap;               /* slots allocated */
	pthread_mutex_t mu;
	pthread_cond_t work;   /* todo non-empty or closing */
	pthread_cond_t idle;   /* a job finished */
	job_list todo, done;
	start_list starts;     /* pushed by threads, under the mutex */
	uint64_t order;        /* the last order given, under the mutex */
	size_t running;
	bool closing;
	int efd;
	bool efd_set;          /* efd written and not yet read back: saves the loop a
				* read() syscall per take that finds nothing (two a turn) */
	atomic_int unjoined;   /* threads returned and not joined: tick checks this
				* before taking the mutex (once per turn otherwise) */
	job_list mine;         /* the loop's: done jobs taken in one go, handed out
				* by take_done without the mutex */
	start_list mine_starts; /* the loop's: the starts taken with them */
	bool efd_maybe_stale;  /* the loop's: take_done gave the last of `mine` and
				* did not look at `done` since (threads_tick does) */
	pool_start_fn start_fn; /* the loop's, called from take_done */
	void *start_arg;
} threads_pool;

static void list_push(job_list *l, job_node *n)
{
	n->next = NULL;
	if (l->tail)
		l->tail->next = n;
	else
		l->head = n;
	l->tail = n;
	l->n++;
}

static job_node *list_pop(job_list *l)
{
	job_node *n = l->head;
	if (!n)
		return NULL;
	l->head = n->next;
	if (!l->head)
		l->tail = NULL;
	l->n--;
	return n;
}

/* ---- running one job ------------------------------------------------------ */

static char *dup_or_null(const char *s)
{
	return s && *s ? strdup(s) : NULL;
}

static int unpack_part(const void *data, size_t len, const char *what, msgpack_zone *zone,
		       msgpack_object *out, warren_error *err)
{
	if (!data || len == 0) {
		out->type = MSGPACK_OBJECT_NIL;
		return 0;
	}
	schema_limits lim;
	schema_limits_default(&lim);
	return schema_unpack(data, len, &lim, what, zone, out, err);
}

static void job_fail(pool_job *job, const char *type, const char *module, const char *msg)
{
	job->status = TASK_FAILURE;
	job->exc_type = strdup(type);
	job->exc_module = strdup(module);
	job->exc_message = strdup(msg);
}

/* Copies a finished context's outcome into the job (the context dies with
 * the stack frame of the thread that ran it). */
static void job_take_outcome(pool_job *job, task_ctx *ctx)
{
	job->status = ctx->status;
	if (ctx->status == TASK_SUCCESS) {
		size_t len;
		const char *bytes = task_result_bytes(ctx, &len);
		job->result = malloc(len);
		if (job->result) {
			memcpy(job->result, bytes, len);
			job->result_len = len;
		}
		return;
	}
	job->exc_type = dup_or_null(ctx->exc_type);
	job->exc_module = dup_or_null(ctx->exc_module);
	job->exc_message = strdup(ctx->exc_message);
	job->retry_countdown = ctx->retry_countdown;
	if (ctx->status == TASK_FAILURE) {
		char tb[2048];
		task_format_traceback(ctx, tb, sizeof tb);
		job->traceback = strdup(tb);
	}
}

/* The worker's pid, read once by threads_open: getpid() is a real syscall
 * since glibc 2.25 and was one per task. 0 (no pool opened) reads it. */
static pid_t self_pid;

void pool_job_execute(const registry *reg, pool_job *job)
{
	job->worker_pid = (int64_t)(self_pid ? self_pid : getpid());
	const registry_entry *entry = registry_lookup(reg, job->task_name, strlen(job->task_name));
	if (!entry) {
		job_fail(job, "NotRegistered", "celery.exceptions", job->task_name);
		return;
	}
	msgpack_zone *zone = msgpack_zone_new(4096);
	if (!zone) {
		job_fail(job, "MemoryError", "builtins", "out of memory");
		return;
	}
	task_ctx ctx;
	task_ctx_init(&ctx);
	warren_error err = {0};
	/* Headers stay packed until the handler asks (task.c host_task_headers). */
	ctx.headers_packed = job->headers;
	ctx.headers_packed_len = job->headers_len;
	if (unpack_part(job->args, job->args_len, "args", zone, &ctx.args, &err) ||
	    unpack_part(job->kwargs, job->kwargs_len, "kwargs", zone, &ctx.kwargs, &err)) {
		job_fail(job, "DecodeError", "kombu.exceptions", err.msg);
		goto out_release;
	}
	ctx.id = job->task_id;
	ctx.name = job->task_name;
	ctx.retries = job->retries;
	task_set_soft_limit(&ctx, job->soft_time_limit);
	int64_t t0 = task_monotonic_ns();
	task_run(&ctx, entry);
	job->runtime = (double)(task_monotonic_ns() - t0) * 1e-9;
	job_take_outcome(job, &ctx);
out_release:
	task_ctx_release(&ctx);
	msgpack_zone_free(zone);
}

/* ---- the threads ------------------------------------------------------------ */

typedef struct thread_arg {
	threads_pool *tp;
	int index;
} thread_arg;

/* Called with the mutex held: makes the eventfd readable (done or starts
 * just became non-empty). */
static void signal_locked(threads_pool *tp)
{
	if (!tp->efd_set) {
		uint64_t one = 1;
		ssize_t w = write(tp->efd, &one, sizeof one);
		(void)w; /* an eventfd write only fails on counter overflow */
		tp->efd_set = true;
	}
}

/* Called with the mutex held: hands a finished node to the loop. */
static void finish_locked(threads_pool *tp, job_node *n)
{
	n->order = ++tp->order;
	list_push(&tp->done, n);
	signal_locked(tp);
}

/* Called with the mutex held, by the thread at index that just took job:
 * the start stamp, and the report when the loop asked for one (without
 * memory for it the loop is not told; it can still ask). */
static void start_locked(threads_pool *tp, int index, pool_job *job)
{
	job->start_ns = task_monotonic_ns();
	job->start_pid = (int32_t)self_pid;
	tp->current[index] = job;
	if (!job->report_start)
		return;
	start_list *sl = &tp->starts;
	if (sl->n == sl->cap) {
		size_t cap = sl->cap ? sl->cap * 2 : 16;
		start_rep *v = realloc(sl->v, cap * sizeof *v);
		if (!v)
			return;
		sl->v = v;
		sl->cap = cap;
	}
	sl->v[sl->n++] = (start_rep){job, ++tp->order};
	signal_locked(tp);
}

static void *thread_main(void *arg)
{
	thread_arg *ta = arg;
	threads_pool *tp = ta->tp;
	int index = ta->index;
	free(ta);
	pthread_mutex_lock(&tp->mu);
	for (;;) {
		while (!tp->closing && tp->todo.n == 0 && tp->alive <= tp->n_threads)
			pthread_cond_wait(&tp->work, &tp->mu);
		if (tp->closing)
			break;
		if (tp->alive > tp->n_threads) { /* shrunk: leave, between jobs */
			tp->alive--;
			break;
		}
		job_node *n = list_pop(&tp->todo);
		tp->running++;
		start_locked(tp, index, n->job);
		pthread_mutex_unlock(&tp->mu);
		pool_job_execute(tp->reg, n->job);
		pthread_mutex_lock(&tp->mu);
		tp->running--;
		tp->current[index] = NULL;
		finish_locked(tp, n);
		pthread_cond_broadcast(&tp->idle);
	}
	tp->finished[index] = true;
	atomic_fetch_add(&tp->unjoined, 1);
	pthread_cond_broadcast(&tp->idle);
	pthread_mutex_unlock(&tp->mu);
	return NULL;
}

static void threads_free(void *impl);

/* Makes room for one more slot; called with the mutex held (threads write
 * their `finished` entry under it). */
static int grow_slots(threads_pool *tp)
{
	int cap = tp->cap ? tp->cap * 2 : 4;
	pthread_t *t = realloc(tp->threads, (size_t)cap * sizeof *t);
	if (!t)
		return WARREN_ENOMEM;
	tp->threads = t;
	pool_job **c = realloc(tp->current, (size_t)cap * sizeof *c);
	if (!c)
		return WARREN_ENOMEM;
	tp->current = c;
	bool *f = realloc(tp->finished, (size_t)cap * sizeof *f);
	if (!f)
		return WARREN_ENOMEM;
	tp->finished = f;
	bool *j = realloc(tp->joined, (size_t)cap * sizeof *j);
	if (!j)
		return WARREN_ENOMEM;
	tp->joined = j;
	tp->cap = cap;
	return 0;
}

/* Starts one thread, in a slot a joined thread left or a new one. */
static int start_thread(threads_pool *tp, warren_error *err)
{
	thread_arg *ta = malloc(sizeof *ta);
	if (!ta)
		return warren_error_set(err, WARREN_ENOMEM, "threads pool: out of memory");
	pthread_mutex_lock(&tp->mu);
	int i = 0;
	while (i < tp->started && !tp->joined[i])
		i++;
	if (i == tp->cap && grow_slots(tp) != 0) {
		pthread_mutex_unlock(&tp->mu);
		free(ta);
		return warren_error_set(err, WARREN_ENOMEM, "threads pool: out of memory");
	}
	*ta = (thread_arg){tp, i};
	tp->current[i] = NULL;
	tp->finished[i] = false;
	tp->joined[i] = false;
	int rc = pthread_create(&tp->threads[i], NULL, thread_main, ta);
	if (rc != 0) {
		tp->joined[i] = true; /* still free */
		tp->finished[i] = true;
		pthread_mutex_unlock(&tp->mu);
		free(ta);
		return warren_error_set(err, WARREN_EIO, "threads pool: thread %d: %s", i,
					strerror(rc));
	}
	if (i == tp->started)
		tp->started++;
	tp->alive++;
	pthread_mutex_unlock(&tp->mu);
	return 0;
}

static int start_threads(threads_pool *tp, int n, warren_error *err)
{
	for (int k = 0; k < n; k++) {
		int rc = start_thread(tp, err);
		if (rc != 0)
			return rc;
	}
	return 0;
}

/* Joins the threads that left after a shrink (loop thread). */
static void join_finished(threads_pool *tp)
{
	if (atomic_load(&tp->unjoined) == 0)
		return;
	for (int i = 0; i < tp->started; i++) {
		pthread_mutex_lock(&tp->mu);
		bool done = tp->finished[i] && !tp->joined[i];
		pthread_mutex_unlock(&tp->mu);
		if (!done)
			continue;
		pthread_join(tp->threads[i], NULL);
		atomic_fetch_sub(&tp->unjoined, 1);
		pthread_mutex_lock(&tp->mu);
		tp->joined[i] = true;
		pthread_mutex_unlock(&tp->mu);
	}
}

static int threads_open(const pool_options *o, const registry *reg, void **impl,
			warren_error *err)
{
	threads_pool *tp = calloc(1, sizeof *tp);
	if (!tp)
		return warren_error_set(err, WARREN_ENOMEM, "threads pool: out of memory");
	tp->reg = reg;
	tp->n_threads = o->concurrency;
	self_pid = getpid();
	tp->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	tp->cap = o->concurrency;
	tp->threads = calloc((size_t)o->concurrency, sizeof *tp->threads);
	tp->current = calloc((size_t)o->concurrency, sizeof *tp->current);
	tp->finished = calloc((size_t)o->concurrency, sizeof *tp->finished);
	tp->joined = calloc((size_t)o->concurrency, sizeof *tp->joined);
	pthread_mutex_init(&tp->mu, NULL);
	pthread_cond_init(&tp->work, NULL);
	pthread_cond_init(&tp->idle, NULL);
	int rc;
	if (tp->efd < 0)
		rc = warren_error_set(err, WARREN_EIO, "threads pool: eventfd: %s", strerror(errno));
	else if (!tp->threads || !tp->current || !tp->finished || !tp->joined)
		rc = warren_error_set(err, WARREN_ENOMEM, "threads pool: out of memory");
	else
		rc = start_threads(tp, o->concurrency, err);
	if (rc != 0) {
		threads_free(tp);
		return rc;
	}
	*impl = tp;
	return 0;
}

static int threads_fd(const void *impl)
{
	return ((const threads_pool *)impl)->efd;
}

static int threads_submit(void *impl, pool_job *job, warren_error *err)
{
	threads_pool *tp = impl;
	job_node *n = malloc(sizeof *n);
	if (!n)
		return warren_error_set(err, WARREN_ENOMEM, "threads pool: out of memory");
	n->job = job;
	pthread_mutex_lock(&tp->mu);
	if (tp->closing) {
		pthread_mutex_unlock(&tp->mu);
		free(n);
		return warren_error_set(err, WARREN_EINVAL, "threads pool: closing");
	}
	list_push(&tp->todo, n);
	pthread_mutex_unlock(&tp->mu);
	/* Signalled after the unlock, so the woken thread does not block at
	 * once on the mutex still held here (one futex wait and wake fewer).
	 * No wakeup is lost: a thread that sleeps saw todo empty under the
	 * mutex before this push, so it is on `work` when this signal comes. */
	pthread_cond_signal(&tp->work);
	return 0;
}

/* Calls start_fn for the starts the loop took, in order, up to (not
 * including) `until`; without the mutex. */
static void report_until(threads_pool *tp, uint64_t until)
{
	start_list *ms = &tp->mine_starts;
	while (ms->next < ms->n && ms->v[ms->next].order < until)
		tp->start_fn(tp->start_arg, ms->v[ms->next++].job);
	if (ms->next == ms->n)
		ms->n = ms->next = 0;
}

/* Takes every done job in one go into `mine` and hands them out from there,
 * so the loop takes the mutex twice per batch, not once per job (it contends
 * with the threads); the pending starts come along (the two arrays swap) and
 * are reported in order among those jobs. The eventfd is reset only when
 * `done` and `starts` are empty and `mine` too: it stays readable while
 * take_done has something to give, and after it handed out the last job of
 * `mine` until the next call finds nothing (the loop's drain always makes
 * that call) or the next tick looks (a caller that stopped at the job it
 * wanted, then polls). */
static pool_job *threads_take_done(void *impl)
{
	threads_pool *tp = impl;
	if (!tp->mine.head) {
		if (tp->mine_starts.n) /* the last batch's starts come first */
			report_until(tp, UINT64_MAX);
		pthread_mutex_lock(&tp->mu);
		tp->mine = tp->done;
		tp->done = (job_list){0};
		if (tp->starts.n) {
			start_list taken = tp->starts;
			tp->starts = (start_list){.v = tp->mine_starts.v, .cap = tp->mine_starts.cap};
			tp->mine_starts = taken;
		}
		if (!tp->mine.head && tp->efd_set) { /* starts taken are reported below */
			uint64_t v;
			ssize_t r = read(tp->efd, &v, sizeof v);
			(void)r;
			tp->efd_set = false;
		}
		pthread_mutex_unlock(&tp->mu);
		tp->efd_maybe_stale = false;
	}
	if (tp->mine_starts.n)
		report_until(tp, tp->mine.head ? tp->mine.head->order : UINT64_MAX);
	job_node *n = list_pop(&tp->mine);
	if (!n)
		return NULL;
	tp->efd_maybe_stale = !tp->mine.head;
	pool_job *job = n->job;
	free(n);
	return job;
}

/* An eventfd take_done left readable with nothing left to give is reset
 * here, so a poll after it waits again. The loop's drain ends with a call
 * of take_done that does this, so for the loop it costs a test. */
static void reset_stale_efd(threads_pool *tp)
{
	tp->efd_maybe_stale = false;
	pthread_mutex_lock(&tp->mu);
	if (!tp->done.head && !tp->starts.n && tp->efd_set) {
		uint64_t v;
		ssize_t r = read(tp->efd, &v, sizeof v);
		(void)r;
		tp->efd_set = false;
	}
	pthread_mutex_unlock(&tp->mu);
}

static void threads_tick(void *impl)
{
	threads_pool *tp = impl;
	if (tp->efd_maybe_stale && !tp->mine.head && !tp->mine_starts.n)
		reset_stale_efd(tp);
	join_finished(tp); /* threads that left after a shrink */
}

static int threads_resize(void *impl, int concurrency, warren_error *err)
{
	threads_pool *tp = impl;
	pthread_mutex_lock(&tp->mu);
	if (tp->closing) {
		pthread_mutex_unlock(&tp->mu);
		return warren_error_set(err, WARREN_EINVAL, "threads pool: closing");
	}
	tp->n_threads = concurrency;
	int need = concurrency - tp->alive;
	if (need < 0)
		pthread_cond_broadcast(&tp->work); /* the idle ones leave now */
	pthread_mutex_unlock(&tp->mu);
	join_finished(tp);
	int rc = need > 0 ? start_threads(tp, need, err) : 0;
	if (rc != 0) {
		pthread_mutex_lock(&tp->mu);
		tp->n_threads = tp->alive; /* what it could start */
		pthread_mutex_unlock(&tp->mu);
	}
	return rc;
}

static int64_t threads_next_deadline_ns(const void *impl)
{
	(void)impl;
	return 0;
}

static int threads_terminate(void *impl, uint64_t seq, int signum, warren_error *err)
{
	threads_pool *tp = impl;
	(void)signum;
	pthread_mutex_lock(&tp->mu);
	job_node **pp = &tp->todo.head, *prev = NULL;
	for (; *pp; prev = *pp, pp = &(*pp)->next) {
		job_node *n = *pp;
		if (n->job->seq != seq)
			continue;
		*pp = n->next;
		if (tp->todo.tail == n)
			tp->todo.tail = prev;
		tp->todo.n--;
		n->job->status = TASK_PENDING;
		finish_locked(tp, n);
		pthread_mutex_unlock(&tp->mu);
		return 0;
	}
	pthread_mutex_unlock(&tp->mu);
	return warren_error_set(err, WARREN_EINVAL,
				"threads pool: job %llu is running or unknown; a thread cannot be stopped",
				(unsigned long long)seq);
}

static size_t threads_pending(const void *impl)
{
	threads_pool *tp = (threads_pool *)impl;
	pthread_mutex_lock(&tp->mu);
	size_t n = tp->todo.n + tp->done.n + tp->mine.n + tp->running;
	pthread_mutex_unlock(&tp->mu);
	return n;
}

static const pool_job *find_job(const job_list *l, uint64_t seq)
{
	for (const job_node *n = l->head; n; n = n->next)
		if (n->job->seq == seq)
			return n->job;
	return NULL;
}

static bool threads_started(void *impl, uint64_t seq, int64_t *start_ns, int64_t *pid)
{
	threads_pool *tp = impl;
	const pool_job *job = find_job(&tp->mine, seq); /* the loop's own list */
	pthread_mutex_lock(&tp->mu);
	for (int i = 0; !job && i < tp->started; i++)
		if (tp->current[i] && tp->current[i]->seq == seq)
			job = tp->current[i];
	if (!job)
		job = find_job(&tp->done, seq);
	bool started = job && job->start_ns != 0; /* 0: handed back unrun */
	if (started) {
		*start_ns = job->start_ns;
		*pid = job->start_pid;
	}
	pthread_mutex_unlock(&tp->mu);
	return started;
}

/* Loop thread, before it submits a job with report_start; take_done reads
 * it on the same thread. */
static void threads_on_start(void *impl, pool_start_fn fn, void *arg)
{
	threads_pool *tp = impl;
	tp->start_fn = fn;
	tp->start_arg = arg;
}

static size_t threads_unqueue(void *impl)
{
	threads_pool *tp = impl;
	size_t n = 0;
	pthread_mutex_lock(&tp->mu);
	for (job_node *node; (node = list_pop(&tp->todo)); n++) {
		node->job->status = TASK_PENDING;
		finish_locked(tp, node);
	}
	pthread_mutex_unlock(&tp->mu);
	return n;
}

static void deadline_after(struct timespec *ts, int ms)
{
	clock_gettime(CLOCK_REALTIME, ts);
	ts->tv_sec += ms / 1000;
	ts->tv_nsec += (long)(ms % 1000) * 1000000;
	if (ts->tv_nsec >= 1000000000) {
		ts->tv_sec++;
		ts->tv_nsec -= 1000000000;
	}
}

static int threads_close(void *impl, int grace_ms, warren_error *err)
{
	threads_pool *tp = impl;
	struct timespec until;
	deadline_after(&until, grace_ms > 0 ? grace_ms : 0);
	pthread_mutex_lock(&tp->mu);
	tp->closing = true;
	for (job_node *n; (n = list_pop(&tp->todo));) {
		n->job->status = TASK_PENDING;
		finish_locked(tp, n);
	}
	pthread_cond_broadcast(&tp->work);
	int rc = 0;
	while (tp->running > 0 && rc == 0)
		rc = pthread_cond_timedwait(&tp->idle, &tp->mu, &until);
	size_t still = tp->running;
	pthread_mutex_unlock(&tp->mu);
	if (still > 0)
		return warren_error_set(err, WARREN_ETIMEOUT,
					"threads pool: %zu task(s) still running after %d ms", still,
					grace_ms);
	return 0;
}

static void free_list(job_list *l)
{
	for (job_node *n; (n = list_pop(l));) {
		pool_job_free(n->job);
		free(n);
	}
}

static void threads_free(void *impl)
{
	threads_pool *tp = impl;
	if (!tp)
		return;
	pthread_mutex_lock(&tp->mu);
	tp->closing = true;
	pthread_cond_broadcast(&tp->work);
	pthread_mutex_unlock(&tp->mu);
	bool all_joined = true;
	for (int i = 0; i < tp->started; i++) {
		if (tp->joined[i])
			continue; /* left after a shrink, joined by tick */
		pthread_mutex_lock(&tp->mu);
		/* A thread still inside a handler: wait briefly, then leave it. */
		struct timespec until;
		deadline_after(&until, 100);
		while (!tp->finished[i] &&
		       pthread_cond_timedwait(&tp->idle, &tp->mu, &until) == 0)
			;
		bool done = tp->finished[i];
		pthread_mutex_unlock(&tp->mu);
		if (done)
			pthread_join(tp->threads[i], NULL);
		else {
			pthread_detach(tp->threads[i]);
			all_joined = false;
		}
	}
	if (!all_joined)
		return; /* the detached threads still use tp: leave it to process exit */
	free_list(&tp->todo);
	free_list(&tp->done);
	free_list(&tp->mine);
	free(tp->starts.v); /* their jobs are in the lists above */
	free(tp->mine_starts.v);
	pthread_cond_destroy(&tp->idle);
	pthread_cond_destroy(&tp->work);
	pthread_mutex_destroy(&tp->mu);
	if (tp->efd >= 0)
		close(tp->efd);
	free(tp->threads);
	free(tp->current);
	free(tp->finished);
	free(tp->joined);
	free(tp);
}

const pool_ops pool_threads_ops = {
	.name = "threads",
	.open = threads_open,
	.fd = threads_fd,
	.submit = threads_submit,
	.take_done = threads_take_done,
	.tick = threads_tick,
	.next_deadline_ns = threads_next_deadline_ns,
	.terminate = threads_terminate,
	.pending = threads_pending,
	.unqueue = threads_unqueue,
	.close = threads_close,
	.free = threads_free,
	.resize = threads_resize,
	.started = threads_started,
	.on_start = threads_on_start,
};
