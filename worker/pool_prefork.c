/* worker/pool_prefork.c - the prefork pool: tasks run in child processes, so
 * a crash, a leak or a hard time limit costs one child, never the worker.
 * This file is the parent's side (the loop thread's); a child's life is in
 * pool_prefork_child.c and the frames between them in pool_prefork_frame.c.
 *
 * Shape. The parent is the worker's loop thread; it never blocks here except
 * in close/free. Each child is forked after the plugins are loaded (it
 * inherits the registry, read-only) and talks to the parent over its own
 * AF_UNIX stream socketpair: job frames down, result frames up. A child runs
 * one job at a time; the parent queues jobs when every child is busy.
 *
 *   submit -> queue -> idle child --job frame--> child: task_run
 *   done list <- result frame <------------------'
 *   pool_fd (epoll) readable -> loop calls pool_tick / pool_take_done
 *
 * File descriptors, one owner each:
 * - prefork.epfd (parent): the fd pool_fd() returns. An epoll set holding
 *   every child's socket (EPOLLIN, plus EPOLLOUT while a job frame is only
 *   partly sent) and done_fd. So it turns readable when a child wrote
 *   results, when a child died (its socket hits EOF: that is our SIGCHLD), and
 *   while finished jobs wait in the done list.
 * - prefork.done_fd (parent): an eventfd, non-zero exactly while the done list
 *   or the starts list (below) is not empty.
 * - prefork_child.fd (parent): the parent's end of a child's socketpair,
 *   non-blocking, CLOEXEC. Closing it tells an idle child to exit.
 * - PREFORK_CHILD_FD (child): the child's end, moved to fd 3, blocking. A child closes
 *   every other inherited fd at start. That matters: the parent's AMQP socket,
 *   its epoll set and the other children's sockets would otherwise live on in
 *   every child. A child that wrote to the broker connection would corrupt the
 *   loop's AMQP framing (rabbitmq-c's state lives in the parent), and a child
 *   holding a sibling's socket would hide that sibling's death (no EOF) and
 *   keep TLS/TCP connections open after the worker closed them.
 *
 * A child also dies with the worker: PR_SET_PDEATHSIG(SIGKILL), checked
 * against a parent that died before the prctl. The kernel fires it when the
 * *thread* that forked the child exits, so children must be forked (open,
 * tick, take_done, submit) from the loop thread, which lives as long as the
 * worker. Every signal is blocked across fork until the child has set its
 * own dispositions, so a signal sent to a brand-new child is not lost to, or
 * misread by, the parent's handlers.
 *
 * Frames (layouts in pool_prefork_frame.c): a 4-byte big-endian length,
 * then one msgpack array. A job frame carries the job's inputs, a result
 * frame its outputs plus `retiring`: the child exits after this frame
 * (max_tasks_per_child or max_memory_per_child reached), so the parent sends
 * it nothing more and starts its replacement at once. A job frame is encoded
 * at submit, while the caller still owns the job, so a job too big for a
 * frame is refused there (WARREN_ELIMIT). The parent writes frames without
 * blocking (EPOLLOUT), reads results without blocking and keeps a partial
 * frame per child.
 *
 * How a child's end is reported (the job, if it had one, as Celery stores it):
 * - result frame, then EOF: normal (retired, or closed by the parent).
 * - EOF under a job, no kill by us: crash, OOM kill, kill -9 by an admin ->
 *   FAILURE billiard.exceptions.WorkerLostError "Worker exited prematurely:
 *   signal 11 (SIGSEGV) Job: <seq>." (billiard pool.py mark_as_worker_lost),
 *   worker_lost = true. The loop decides about reject_on_worker_lost.
 * - garbage or an unexpected frame: the parent SIGKILLs the child, then as
 *   above ("signal 9 (SIGKILL)").
 * - hard time limit: pool_tick SIGKILLs it -> FAILURE
 *   billiard.exceptions.TimeLimitExceeded, exc_message the limit as Python
 *   prints the float ("0.5"; Celery stores exc_message [0.5], a float: the
 *   loop may pack job->time_limit instead when time_limit_hit), no traceback
 *   (Celery stores None), worker_lost and time_limit_hit true (the loop
 *   must test time_limit_hit first: Celery's reject_on_worker_lost requeues
 *   a WorkerLostError, never a TimeLimitExceeded).
 * - pool_terminate: signum is sent; if the child dies without a result ->
 *   FAILURE celery.exceptions.TaskRevokedError "terminated", worker_lost
 *   false (the loop stores REVOKED). If the task still reports (a signal the
 *   child survives, e.g. SIGUSR1 = soft limit) that report stands.
 * - pool_close past its grace: SIGKILL -> TASK_PENDING with worker_lost true
 *   (the task started but never finished: the loop leaves it to the broker).
 * - pool_free: SIGKILL to every child; the jobs the pool still owns are freed.
 * In every case the pid is reaped with waitpid(pid, WNOHANG) (EOF may come a
 * moment before the child is a zombie, so an unreaped corpse makes
 * pool_next_deadline_ns ask for a tick REAP_POLL_NS later) and, unless the
 * pool is closing, a new child takes the slot at once. The worker must keep
 * SIGCHLD at SIG_DFL and never waitpid(-1): both would steal our exit
 * statuses (an unknown status is reported as "exitcode unknown").
 *
 * Start: a job starts when the last byte of its frame is written to its
 * child (flush_child), idle by construction (a job goes only to a child that
 * reported its last one and did not retire), so blocked in read() for
 * exactly this frame and running the handler as soon as it has it: Celery's
 * "accepted" without an extra frame back per task. The parent stamps
 * start_ns and start_pid (the child's) on the job then; a job with
 * report_start also goes on the starts list. Done and start entries are numbered as they
 * are pushed and take_done reports the starts in that order among the done
 * jobs it hands out: a job's start before the job (its start is pushed
 * before its result can arrive), a child's next start after its last
 * result.
 *
 * Soft time limit: the child sets task_ctx.soft_deadline_ns (handlers that
 * poll warren_task_soft_limit_passed see it) and arms a CLOCK_MONOTONIC
 * timer that raises SIGUSR1 at the deadline, as billiard does; the signal
 * sets the running task's soft_limit_hit and interrupts a sleeping handler
 * (EINTR). SIGUSR1 from outside (pool_terminate(seq, SIGUSR1), an admin) does
 * the same, as with Celery. The parent keeps no global mutable state; the one
 * file-scope variable is the child's (pool_prefork_child.c says why).
 *
 * Resize (pool_grow/pool_shrink): opts.concurrency is the size wanted and
 * jobs only go to slots below it. Growing adds slots and forks their
 * children at once (spawn_child, so with the signal mask rule above; from
 * the loop thread). Shrinking leaves the slots above it in place until their
 * children are idle: retire_surplus (every tick) then closes an idle one's
 * socket, the child exits on EOF and is reaped as a corpse without a job, and
 * no child replaces it; once the top slots are empty, n_slots comes down. A
 * running job is never interrupted, and a job frame half sent still goes.
 */
#define _GNU_SOURCE /* SOCK_CLOEXEC, sigabbrev_np */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "worker.h"

#define DONE_TAG UINT64_MAX /* epoll tag of done_fd; children are tagged by slot */

#define REAP_POLL_NS 2000000LL          /* between waitpid(WNOHANG) tries */
#define REAP_KILL_AFTER_NS 2000000000LL /* a corpse that lingers gets SIGKILL */
#define RESPAWN_MIN_NS 100000000LL      /* fork failed: retry after 100 ms... */
#define RESPAWN_MAX_NS 5000000000LL     /* ...doubling up to 5 s */
#define TRACEBACK_MAX 4096

/* Why a child ended, as far as the parent knows. */
typedef enum child_cause {
	CAUSE_NONE = 0,   /* nothing the parent did: crash, OOM, outside kill, exit */
	CAUSE_GARBAGE,    /* killed for an unreadable frame */
	CAUSE_HARD_LIMIT, /* killed at its job's hard deadline */
	CAUSE_TERMINATED, /* pool_terminate signalled it */
	CAUSE_CLOSED,     /* killed at the end of pool_close's grace */
} child_cause;

/* A job waiting for a child, with its frame already encoded (so submit is
 * where encoding can fail, while the caller still owns the job). In the done
 * list only .job is used. */
typedef struct queued {
	pool_job *job;
	char *frame;
	size_t len;
	uint64_t order; /* done and starts: when pushed, among both (take_done merges) */
} queued;

typedef struct fifo {
	queued *v;
	size_t head, len, cap;
} fifo;

typedef struct inbuf {
	char *data;
	size_t len, cap;
} inbuf;

typedef struct prefork_child {
	pid_t pid;           /* 0: the slot is empty (respawn at respawn_at_ns) */
	int fd;              /* the parent's end; -1 when empty */
	pool_job *job;       /* the running job, owned here; NULL: idle */
	char *out;           /* its job frame, until fully sent */
	size_t out_len, out_off;
	bool want_out;       /* EPOLLOUT is in the epoll set */
	inbuf in;            /* result bytes not yet a whole frame */
	int64_t started_ns;
	int64_t hard_deadline_ns; /* 0: none, or already acted on */
	child_cause cause;
	int64_t respawn_at_ns;
	int64_t respawn_backoff_ns;
} prefork_child;

/* A child that ended and is not reaped yet, with the job it took along. */
typedef struct corpse {
	pid_t pid;
	pool_job *job;
	child_cause cause;
	int64_t started_ns; /* the job's start */
	int64_t since_ns;   /* when the parent saw it end */
	bool kill_sent;
} corpse;

typedef struct prefork {
	pool_options opts;
	const registry *reg;
	int epfd;
	int done_fd;
	prefork_child *children; /* n_slots slots */
	size_t n_slots;          /* opts.concurrency, or more while a shrink retires
				  * the children of slots >= opts.concurrency */
	fifo queue;              /* submitted, waiting for an idle child */
	fifo done;               /* finished, waiting for pool_take_done */
	fifo starts;             /* started, start_fn not called yet (.job only) */
	pool_start_fn start_fn;  /* the loop's, called from take_done */
	void *start_arg;
	uint64_t order;          /* the last order given to a done or start entry */
	bool done_fd_set;        /* done_fd written and not read back */
	corpse *corpses;
	size_t n_corpses, cap_corpses;
	bool closing;            /* pool_close started: no new jobs, no respawn */
	bool closed;             /* every child is gone */
} prefork;

/* ==== small helpers ========================================================= */

static int64_t now_ns(void)
{
	return task_monotonic_ns();
}

/* Makes room for n elements in all. */
static int fifo_reserve(fifo *f, size_t n)
{
	if (n > f->cap) {
		size_t cap = f->cap ? f->cap : 16;
		while (cap < n)
			cap *= 2;
		queued *v = malloc(cap * sizeof *v);
		if (!v)
			return WARREN_ENOMEM;
		for (size_t i = 0; i < f->len; i++)
			v[i] = f->v[(f->head + i) % f->cap];
		free(f->v);
		f->v = v;
		f->cap = cap;
		f->head = 0;
	}
	return 0;
}

static int fifo_push(fifo *f, queued q)
{
	if (fifo_reserve(f, f->len + 1) != 0)
		return WARREN_ENOMEM;
	f->v[(f->head + f->len) % f->cap] = q;
	f->len++;
	return 0;
}

static queued fifo_pop(fifo *f)
{
	queued q = f->v[f->head];
	f->head = (f->head + 1) % f->cap;
	f->len--;
	return q;
}

static queued *fifo_at(fifo *f, size_t i)
{
	return &f->v[(f->head + i) % f->cap];
}

/* Removes element i, keeping the order of the rest. */
static queued fifo_remove(fifo *f, size_t i)
{
	queued q = *fifo_at(f, i);
	for (; i + 1 < f->len; i++)
		*fifo_at(f, i) = *fifo_at(f, i + 1);
	f->len--;
	return q;
}

/* ==== the parent: children =================================================== */

static int epoll_set(prefork *p, size_t slot, int op, bool out)
{
	struct epoll_event ev = {.events = EPOLLIN | (out ? EPOLLOUT : 0), .data.u64 = slot};
	return epoll_ctl(p->epfd, op, p->children[slot].fd, &ev);
}

static int spawn_child(prefork *p, size_t slot, warren_error *err)
{
	int sv[2];
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0)
		return warren_error_set(err, WARREN_EIO, "pool: prefork child %zu: socketpair: %s",
					slot, strerror(errno));
	fflush(NULL); /* or the child would print our buffered output again */
	/* Every signal stays blocked from fork until the child has installed its
	 * own dispositions: a SIGUSR1 or SIGTERM sent to a brand-new child then
	 * waits and meets the child's handlers, not the parent's. */
	sigset_t all, old;
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	pid_t parent = getpid();
	pid_t pid = fork();
	if (pid == 0) {
		close(sv[0]);
		prefork_child_main(p->reg, &p->opts, sv[1], (int)parent);
	}
	int saved = errno;
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	close(sv[1]);
	if (pid < 0) {
		close(sv[0]);
		return warren_error_set(err, WARREN_EIO, "pool: prefork child %zu: fork: %s", slot,
					strerror(saved));
	}
	prefork_child *c = &p->children[slot];
	c->pid = pid;
	c->fd = sv[0];
	c->respawn_backoff_ns = 0;
	if (fcntl(c->fd, F_SETFL, O_NONBLOCK) != 0 || epoll_set(p, slot, EPOLL_CTL_ADD, false) != 0) {
		/* Cannot watch it: it would be a child we never hear from. */
		saved = errno;
		kill(pid, SIGKILL);
		waitpid(pid, NULL, 0);
		close(c->fd);
		c->fd = -1;
		c->pid = 0;
		return warren_error_set(err, WARREN_EIO, "pool: prefork child %zu: epoll: %s", slot,
					strerror(saved));
	}
	return 0;
}

/* Forks into an empty slot; on failure retries later with backoff. */
static void respawn(prefork *p, size_t slot)
{
	prefork_child *c = &p->children[slot];
	if (p->closing || slot >= (size_t)p->opts.concurrency)
		return; /* closing, or a slot a shrink is retiring */
	if (spawn_child(p, slot, NULL) == 0)
		return;
	int64_t b = c->respawn_backoff_ns ? c->respawn_backoff_ns * 2 : RESPAWN_MIN_NS;
	c->respawn_backoff_ns = b > RESPAWN_MAX_NS ? RESPAWN_MAX_NS : b;
	c->respawn_at_ns = now_ns() + c->respawn_backoff_ns;
}

static int add_corpse(prefork *p, corpse k)
{
	if (p->n_corpses == p->cap_corpses) {
		size_t cap = p->cap_corpses ? p->cap_corpses * 2 : 8;
		corpse *v = realloc(p->corpses, cap * sizeof *v);
		if (!v)
			return WARREN_ENOMEM;
		p->corpses = v;
		p->cap_corpses = cap;
	}
	p->corpses[p->n_corpses++] = k;
	return 0;
}

static void done_push(prefork *p, pool_job *job);
static void reap(prefork *p);

/* The child in slot is gone or going: forget its socket, keep its pid (and
 * job) as a corpse to reap, and put a new child in its place. */
static void child_gone(prefork *p, size_t slot)
{
	prefork_child *c = &p->children[slot];
	epoll_ctl(p->epfd, EPOLL_CTL_DEL, c->fd, NULL);
	close(c->fd);
	corpse k = {.pid = c->pid, .job = c->job, .cause = c->cause,
		    .started_ns = c->started_ns, .since_ns = now_ns()};
	if (add_corpse(p, k) != 0) {
		/* No memory to remember it: settle it now, blocking. */
		kill(k.pid, SIGKILL);
		waitpid(k.pid, NULL, 0);
		if (k.job) {
			k.job->status = TASK_PENDING; /* the loop can still requeue it */
			done_push(p, k.job);
		}
	}
	free(c->out);
	free(c->in.data);
	*c = (prefork_child){.fd = -1};
	reap(p);
	respawn(p, slot);
}

/* A child that broke the protocol is not trusted with another job. */
static void child_kill(prefork *p, size_t slot, child_cause cause)
{
	prefork_child *c = &p->children[slot];
	kill(c->pid, SIGKILL);
	if (c->cause == CAUSE_NONE)
		c->cause = cause;
	child_gone(p, slot);
}

/* ==== the parent: results ==================================================== */

/* Handles one whole frame from slot's child: 1 if the child retires, -1 if
 * the frame is garbage (or came for no job, or before its job was sent). A
 * job whose outputs could not be copied (no memory) still completes: the
 * loop sees what was filled. */
static int handle_result(prefork *p, size_t slot, const char *data, size_t len)
{
	prefork_child *c = &p->children[slot];
	bool retiring = false;
	if (!c->job || c->out)
		return -1;
	int rc = prefork_decode_result(data, len, c->job, &retiring, NULL);
	if (rc == WARREN_EDECODE)
		return -1;
	done_push(p, c->job);
	c->job = NULL;
	c->cause = CAUSE_NONE;
	c->hard_deadline_ns = 0;
	return retiring ? 1 : 0;
}

/* Whole frames at the front of c->in: handled and dropped. 1 once the child
 * said it retires, -1 on garbage. */
static int parse_frames(prefork *p, size_t slot)
{
	inbuf *in = &p->children[slot].in;
	size_t off = 0;
	int rc = 0;
	while (rc == 0 && in->len - off >= PREFORK_FRAME_HEADER) {
		uint32_t n = prefork_frame_length(in->data + off);
		if (n > PREFORK_FRAME_MAX) {
			rc = -1;
			break;
		}
		if (in->len - off - PREFORK_FRAME_HEADER < n)
			break; /* partial: wait for the rest */
		rc = handle_result(p, slot, in->data + off + PREFORK_FRAME_HEADER, n);
		off += PREFORK_FRAME_HEADER + n;
	}
	memmove(in->data, in->data + off, in->len - off);
	in->len -= off;
	return rc;
}

static int inbuf_reserve(inbuf *in, size_t more)
{
	if (in->cap - in->len >= more)
		return 0;
	size_t cap = in->cap ? in->cap : 4096;
	while (cap - in->len < more)
		cap *= 2;
	char *d = realloc(in->data, cap);
	if (!d)
		return -1;
	in->data = d;
	in->cap = cap;
	return 0;
}

/* Reads what the child wrote; handles whole frames; notices its end. */
static void read_child(prefork *p, size_t slot)
{
	prefork_child *c = &p->children[slot];
	bool eof = false;
	for (;;) {
		if (inbuf_reserve(&c->in, 4096) != 0) {
			child_kill(p, slot, CAUSE_GARBAGE);
			return;
		}
		ssize_t n = read(c->fd, c->in.data + c->in.len, c->in.cap - c->in.len);
		if (n > 0) {
			c->in.len += (size_t)n;
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		eof = n == 0 || errno != EAGAIN;
		break;
	}
	int rc = parse_frames(p, slot);
	if (rc < 0 || (eof && c->in.len > 0))
		child_kill(p, slot, CAUSE_GARBAGE); /* garbage, or died mid-frame */
	else if (rc > 0 || eof)
		child_gone(p, slot); /* retiring, or died (a job it had is lost) */
}

/* ==== the parent: jobs ======================================================= */

/* done_fd: readable while done or starts holds something. */
static void signal_loop(prefork *p)
{
	if (p->done_fd_set)
		return;
	uint64_t one = 1;
	ssize_t n = write(p->done_fd, &one, sizeof one);
	(void)n; /* an eventfd write of 1 fails only on overflow */
	p->done_fd_set = true;
}

static void unsignal_loop(prefork *p)
{
	if (!p->done_fd_set || p->done.len > 0 || p->starts.len > 0)
		return;
	uint64_t v;
	ssize_t n = read(p->done_fd, &v, sizeof v);
	(void)n;
	p->done_fd_set = false;
}

/* Never fails: submit reserved a place in the done list for every job. */
static void done_push(prefork *p, pool_job *job)
{
	fifo_push(&p->done, (queued){.job = job, .order = ++p->order});
	signal_loop(p);
}

/* slot's job frame is all written: the job has started. Never fails: submit
 * reserved a place in the starts list for every job with report_start. */
static void job_started(prefork *p, size_t slot)
{
	prefork_child *c = &p->children[slot];
	c->job->start_ns = now_ns();
	c->job->start_pid = (int32_t)c->pid;
	if (!c->job->report_start)
		return;
	fifo_push(&p->starts, (queued){.job = c->job, .order = ++p->order});
	signal_loop(p);
}

/* Calls start_fn for the jobs that started before `until` (an order). */
static void report_starts(prefork *p, uint64_t until)
{
	while (p->starts.len > 0 && fifo_at(&p->starts, 0)->order < until)
		p->start_fn(p->start_arg, fifo_pop(&p->starts).job);
}

/* Sends what is left of slot's job frame without blocking. */
static void flush_child(prefork *p, size_t slot)
{
	prefork_child *c = &p->children[slot];
	while (c->out && c->out_off < c->out_len) {
		ssize_t n = send(c->fd, c->out + c->out_off, c->out_len - c->out_off, MSG_NOSIGNAL);
		if (n > 0) {
			c->out_off += (size_t)n;
		} else if (n < 0 && errno == EINTR) {
			continue;
		} else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			if (!c->want_out && epoll_set(p, slot, EPOLL_CTL_MOD, true) == 0)
				c->want_out = true;
			return;
		} else {
			child_gone(p, slot); /* EPIPE: it died; the job is lost */
			return;
		}
	}
	if (c->out) {
		free(c->out);
		c->out = NULL;
		job_started(p, slot);
	}
	if (c->want_out && epoll_set(p, slot, EPOLL_CTL_MOD, false) == 0)
		c->want_out = false;
}

static void assign(prefork *p, size_t slot, queued q)
{
	prefork_child *c = &p->children[slot];
	int64_t now = now_ns();
	c->job = q.job;
	c->out = q.frame;
	c->out_len = q.len;
	c->out_off = 0;
	c->started_ns = now;
	c->cause = CAUSE_NONE;
	double tl = q.job->time_limit;
	c->hard_deadline_ns = tl > 0 ? now + (int64_t)(tl * 1e9) : 0;
	flush_child(p, slot);
}

static void dispatch(prefork *p)
{
	for (size_t i = 0; i < (size_t)p->opts.concurrency && p->queue.len > 0; i++)
		if (p->children[i].pid && !p->children[i].job)
			assign(p, i, fifo_pop(&p->queue));
}

/* Python's repr() of a float: the shortest form that reads back the same,
 * with ".0" on integral values. */
static void python_float_repr(double v, char *buf, size_t len)
{
	for (int prec = 1; prec <= 17; prec++) {
		snprintf(buf, len, "%.*g", prec, v);
		if (strtod(buf, NULL) == v)
			break;
	}
	if (isfinite(v) && !strpbrk(buf, ".en"))
		snprintf(buf + strlen(buf), len - strlen(buf), ".0");
}

/* billiard's human_status(): "signal 11 (SIGSEGV)" or "exitcode 1". */
static void human_status(int status, bool known, char *buf, size_t len)
{
	if (!known) {
		snprintf(buf, len, "exitcode unknown");
	} else if (WIFSIGNALED(status)) {
		const char *abbrev = sigabbrev_np(WTERMSIG(status));
		if (abbrev)
			snprintf(buf, len, "signal %d (SIG%s)", WTERMSIG(status), abbrev);
		else
			snprintf(buf, len, "signal %d", WTERMSIG(status));
	} else {
		snprintf(buf, len, "exitcode %d", WEXITSTATUS(status));
	}
}

static void job_set_exc(pool_job *job, const char *type, const char *module, const char *msg)
{
	job->status = TASK_FAILURE;
	job->exc_type = strdup(type);
	job->exc_module = strdup(module);
	job->exc_message = strdup(msg);
}

/* The traceback text a Python worker would store, pointing at the plugin
 * that registered the task. */
static char *lost_traceback(const prefork *p, const pool_job *job)
{
	task_ctx ctx;
	task_ctx_init(&ctx);
	const char *name = job->task_name ? job->task_name : "?";
	ctx.name = name;
	ctx.entry = registry_lookup(p->reg, name, strlen(name));
	snprintf(ctx.exc_type, sizeof ctx.exc_type, "%s", job->exc_type ? job->exc_type : "");
	snprintf(ctx.exc_module, sizeof ctx.exc_module, "%s", job->exc_module ? job->exc_module : "");
	snprintf(ctx.exc_message, sizeof ctx.exc_message, "%s",
		 job->exc_message ? job->exc_message : "");
	char tb[TRACEBACK_MAX];
	task_format_traceback(&ctx, tb, sizeof tb);
	task_ctx_release(&ctx);
	return strdup(tb);
}

/* The outcome of a job whose child ended without reporting it. */
static void settle_corpse_job(prefork *p, const corpse *k, int status, bool known)
{
	pool_job *job = k->job;
	char msg[160];
	job->worker_pid = k->pid;
	job->runtime = (double)(now_ns() - k->started_ns) / 1e9;
	switch (k->cause) {
	case CAUSE_HARD_LIMIT:
		python_float_repr(job->time_limit, msg, sizeof msg);
		job_set_exc(job, "TimeLimitExceeded", "billiard.exceptions", msg);
		job->time_limit_hit = true;
		job->worker_lost = true;
		break;
	case CAUSE_TERMINATED:
		job_set_exc(job, "TaskRevokedError", "celery.exceptions", "terminated");
		break;
	case CAUSE_CLOSED:
		job->status = TASK_PENDING;
		job->worker_lost = true;
		break;
	case CAUSE_NONE:
	case CAUSE_GARBAGE: {
		char how[64];
		human_status(status, known, how, sizeof how);
		snprintf(msg, sizeof msg, "Worker exited prematurely: %s Job: %" PRIu64 ".", how,
			 job->seq);
		job_set_exc(job, "WorkerLostError", "billiard.exceptions", msg);
		job->traceback = lost_traceback(p, job);
		job->worker_lost = true;
		break;
	}
	}
	done_push(p, job);
}

/* Reaps ended children without blocking; settles their jobs. */
static void reap(prefork *p)
{
	int64_t now = now_ns();
	for (size_t i = 0; i < p->n_corpses;) {
		corpse *k = &p->corpses[i];
		if (!k->kill_sent && now - k->since_ns > REAP_KILL_AFTER_NS) {
			kill(k->pid, SIGKILL); /* closed its socket but lingers */
			k->kill_sent = true;
		}
		int status = 0;
		pid_t r;
		do
			r = waitpid(k->pid, &status, WNOHANG);
		while (r < 0 && errno == EINTR);
		if (r == 0) {
			i++;
			continue;
		}
		if (k->job)
			settle_corpse_job(p, k, status, r > 0); /* r < 0: someone else reaped it */
		p->corpses[i] = p->corpses[--p->n_corpses];
	}
}

/* Reaps every corpse, waiting for them: children the parent closed exit on
 * EOF at once, killed ones as soon as the kernel is done with them, and
 * reap() SIGKILLs any that linger past REAP_KILL_AFTER_NS. Only close and
 * free wait like this. */
static void reap_all(prefork *p)
{
	for (;;) {
		reap(p);
		if (p->n_corpses == 0)
			return;
		struct timespec ms = {.tv_nsec = 1000000};
		nanosleep(&ms, NULL);
	}
}

/* Hard time limits: SIGKILL; the EOF that follows settles the job. */
static void enforce_limits(prefork *p)
{
	int64_t now = now_ns();
	for (size_t i = 0; i < p->n_slots; i++) {
		prefork_child *c = &p->children[i];
		if (!c->job || !c->hard_deadline_ns || now < c->hard_deadline_ns)
			continue;
		c->hard_deadline_ns = 0;
		c->cause = CAUSE_HARD_LIMIT;
		kill(c->pid, SIGKILL);
	}
}

static void respawn_due(prefork *p)
{
	int64_t now = now_ns();
	for (size_t i = 0; i < p->n_slots; i++)
		if (!p->children[i].pid && p->children[i].respawn_at_ns <= now)
			respawn(p, i);
}

/* Handles whatever the epoll set reports, without blocking. */
static void pump(prefork *p)
{
	struct epoll_event ev[64];
	int n;
	do {
		n = epoll_wait(p->epfd, ev, 64, 0);
		for (int i = 0; i < n; i++) {
			uint64_t slot = ev[i].data.u64;
			if (slot == DONE_TAG || !p->children[slot].pid)
				continue; /* a slot emptied earlier in this batch */
			if (ev[i].events & EPOLLOUT)
				flush_child(p, slot);
			if (p->children[slot].pid && ev[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR))
				read_child(p, slot);
		}
	} while (n == 64);
}

/* After a shrink: closes the sockets of idle children in surplus slots (each
 * exits on EOF; reap() collects it) and drops the empty top slots. */
static void retire_surplus(prefork *p)
{
	for (size_t i = (size_t)p->opts.concurrency; i < p->n_slots; i++) {
		prefork_child *c = &p->children[i];
		if (c->pid && !c->job && !c->out)
			child_gone(p, i); /* no respawn above opts.concurrency */
	}
	while (p->n_slots > (size_t)p->opts.concurrency && !p->children[p->n_slots - 1].pid)
		p->n_slots--;
}

static void tick(void *impl)
{
	prefork *p = impl;
	if (p->closed)
		return;
	pump(p);
	enforce_limits(p);
	reap(p);
	retire_surplus(p);
	respawn_due(p);
	dispatch(p);
}

static int prefork_resize(void *impl, int concurrency, warren_error *err)
{
	prefork *p = impl;
	if (p->closing)
		return warren_error_set(err, WARREN_EINVAL, "pool: closing, cannot resize");
	size_t want = (size_t)concurrency;
	if (want > p->n_slots) {
		prefork_child *v = realloc(p->children, want * sizeof *v);
		if (!v)
			return warren_error_set(err, WARREN_ENOMEM, "pool: out of memory");
		p->children = v;
		for (size_t i = p->n_slots; i < want; i++)
			p->children[i] = (prefork_child){.fd = -1};
		p->n_slots = want;
	}
	p->opts.concurrency = concurrency;
	for (size_t i = 0; i < want; i++)
		if (!p->children[i].pid)
			respawn(p, i); /* a fork that fails is retried with backoff */
	retire_surplus(p);
	dispatch(p);
	return 0;
}

/* ==== pool_ops =============================================================== */

static void kill_all(prefork *p)
{
	for (size_t i = 0; p->children && i < p->n_slots; i++) {
		prefork_child *c = &p->children[i];
		if (!c->pid)
			continue;
		kill(c->pid, SIGKILL);
		child_gone(p, i);
	}
	for (size_t i = 0; i < p->n_corpses; i++)
		kill(p->corpses[i].pid, SIGKILL);
	reap_all(p);
}

static void free_jobs(fifo *f)
{
	while (f->len > 0) {
		queued q = fifo_pop(f);
		free(q.frame);
		pool_job_free(q.job);
	}
	free(f->v);
}

static void prefork_free(void *impl)
{
	prefork *p = impl;
	if (!p)
		return;
	p->closing = true; /* no respawn */
	kill_all(p);
	free_jobs(&p->queue);
	free_jobs(&p->done);
	free(p->starts.v); /* its jobs were freed with their lists */
	free(p->corpses);
	free(p->children);
	if (p->epfd >= 0)
		close(p->epfd);
	if (p->done_fd >= 0)
		close(p->done_fd);
	free(p);
}

static int prefork_open(const pool_options *o, const registry *reg, void **impl, warren_error *err)
{
	if (o->concurrency < 1)
		return warren_error_set(err, WARREN_EINVAL, "pool: concurrency %d, expected at least 1",
					o->concurrency);
	prefork *p = calloc(1, sizeof *p);
	if (!p)
		return warren_error_set(err, WARREN_ENOMEM, "pool: out of memory");
	p->opts = *o;
	p->reg = reg;
	p->epfd = p->done_fd = -1;
	int rc;
	p->children = calloc((size_t)o->concurrency, sizeof *p->children);
	if (!p->children) {
		rc = warren_error_set(err, WARREN_ENOMEM, "pool: out of memory");
		goto out_free;
	}
	p->n_slots = (size_t)o->concurrency;
	for (int i = 0; i < o->concurrency; i++)
		p->children[i].fd = -1;
	p->epfd = epoll_create1(EPOLL_CLOEXEC);
	p->done_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	struct epoll_event ev = {.events = EPOLLIN, .data.u64 = DONE_TAG};
	if (p->epfd < 0 || p->done_fd < 0 || epoll_ctl(p->epfd, EPOLL_CTL_ADD, p->done_fd, &ev) != 0) {
		rc = warren_error_set(err, WARREN_EIO, "pool: epoll/eventfd: %s", strerror(errno));
		goto out_free;
	}
	for (int i = 0; i < o->concurrency; i++)
		if ((rc = spawn_child(p, (size_t)i, err)) != 0)
			goto out_free;
	*impl = p;
	return 0;
out_free:
	prefork_free(p); /* kills and reaps the children forked so far */
	return rc;
}

static int prefork_fd(const void *impl)
{
	return ((const prefork *)impl)->epfd;
}

static size_t prefork_pending(const void *impl);

static int prefork_submit(void *impl, pool_job *job, warren_error *err)
{
	prefork *p = impl;
	if (p->closing)
		return warren_error_set(err, WARREN_EINVAL, "pool: job '%s': the pool is closing",
					job->task_id ? job->task_id : "?");
	if (fifo_reserve(&p->done, prefork_pending(p) + 1) != 0 ||
	    (job->report_start && fifo_reserve(&p->starts, prefork_pending(p) + 1) != 0))
		return warren_error_set(err, WARREN_ENOMEM, "pool: out of memory");
	queued q = {.job = job};
	int rc = prefork_encode_job(job, &q.frame, &q.len, err);
	if (rc != 0)
		return rc;
	if (fifo_push(&p->queue, q) != 0) {
		free(q.frame);
		return warren_error_set(err, WARREN_ENOMEM, "pool: out of memory");
	}
	dispatch(p);
	return 0;
}

static pool_job *prefork_take_done(void *impl)
{
	prefork *p = impl;
	if (p->done.len == 0)
		tick(p);
	/* Starts and done jobs in the order they happened: a job's start before
	 * it, the next task's start after the result of the one it followed. */
	report_starts(p, p->done.len > 0 ? fifo_at(&p->done, 0)->order : UINT64_MAX);
	pool_job *job = p->done.len > 0 ? fifo_pop(&p->done).job : NULL;
	unsignal_loop(p);
	return job;
}

static int64_t min_deadline(int64_t a, int64_t b)
{
	return a == 0 || (b != 0 && b < a) ? b : a;
}

static int64_t prefork_next_deadline_ns(const void *impl)
{
	const prefork *p = impl;
	int64_t d = 0;
	for (size_t i = 0; !p->closed && i < p->n_slots; i++) {
		const prefork_child *c = &p->children[i];
		d = min_deadline(d, c->job ? c->hard_deadline_ns : 0);
		if (!c->pid && !p->closing)
			d = min_deadline(d, c->respawn_at_ns);
	}
	if (p->n_corpses > 0)
		d = min_deadline(d, now_ns() + REAP_POLL_NS);
	return d;
}

static int prefork_terminate(void *impl, uint64_t seq, int signum, warren_error *err)
{
	prefork *p = impl;
	for (size_t i = 0; i < p->queue.len; i++) {
		if (fifo_at(&p->queue, i)->job->seq != seq)
			continue;
		queued q = fifo_remove(&p->queue, i);
		free(q.frame);
		q.job->status = TASK_PENDING;
		done_push(p, q.job);
		return 0;
	}
	for (size_t i = 0; i < p->n_slots; i++) {
		prefork_child *c = &p->children[i];
		if (!c->job || c->job->seq != seq)
			continue;
		if (c->cause == CAUSE_NONE)
			c->cause = CAUSE_TERMINATED;
		if (kill(c->pid, signum) != 0)
			return warren_error_set(err, WARREN_EINVAL, "pool: terminate job %" PRIu64
						": signal %d: %s", seq, signum, strerror(errno));
		return 0;
	}
	for (size_t i = 0; i < p->n_corpses; i++)
		if (p->corpses[i].job && p->corpses[i].job->seq == seq)
			return 0; /* its child already ended; the job is being settled */
	return warren_error_set(err, WARREN_ENOTFOUND, "pool: terminate job %" PRIu64
				": not queued or running", seq);
}

static bool prefork_started(void *impl, uint64_t seq, int64_t *start_ns, int64_t *pid)
{
	prefork *p = impl;
	const pool_job *job = NULL;
	for (size_t i = 0; !job && i < p->n_slots; i++)
		if (p->children[i].job && p->children[i].job->seq == seq)
			job = p->children[i].job;
	for (size_t i = 0; !job && i < p->n_corpses; i++)
		if (p->corpses[i].job && p->corpses[i].job->seq == seq)
			job = p->corpses[i].job;
	for (size_t i = 0; !job && i < p->done.len; i++)
		if (fifo_at(&p->done, i)->job->seq == seq)
			job = fifo_at(&p->done, i)->job;
	if (!job || job->start_ns == 0) /* queued, frame half sent, or handed back unrun */
		return false;
	*start_ns = job->start_ns;
	*pid = job->start_pid;
	return true;
}

static void prefork_on_start(void *impl, pool_start_fn fn, void *arg)
{
	prefork *p = impl;
	p->start_fn = fn;
	p->start_arg = arg;
}

static size_t running(const prefork *p)
{
	size_t n = 0;
	for (size_t i = 0; i < p->n_slots; i++)
		n += p->children[i].job != NULL;
	for (size_t i = 0; i < p->n_corpses; i++)
		n += p->corpses[i].job != NULL;
	return n;
}

static size_t prefork_pending(const void *impl)
{
	const prefork *p = impl;
	return p->queue.len + p->done.len + running(p);
}

static size_t prefork_unqueue(void *impl)
{
	prefork *p = impl;
	size_t n = 0;
	for (; p->queue.len > 0; n++) {
		queued q = fifo_pop(&p->queue);
		free(q.frame);
		q.job->status = TASK_PENDING;
		done_push(p, q.job);
	}
	return n;
}

/* Waits for the epoll set or the next deadline, at most until `until`.
 * close() takes done_fd out of the set first, or the jobs it handed back
 * would keep the set readable and this would spin. */
static void wait_events(prefork *p, int64_t until)
{
	int64_t d = min_deadline(prefork_next_deadline_ns(p), until);
	int64_t left = d - now_ns();
	int ms = left <= 0 ? 0 : (int)((left + 999999) / 1000000);
	struct epoll_event ev;
	epoll_wait(p->epfd, &ev, 1, ms); /* only to sleep: pump reads the events */
}

static int prefork_close(void *impl, int grace_ms, warren_error *err)
{
	prefork *p = impl;
	if (p->closed)
		return 0;
	p->closing = true;
	while (p->queue.len > 0) {
		queued q = fifo_pop(&p->queue);
		free(q.frame);
		q.job->status = TASK_PENDING;
		done_push(p, q.job);
	}
	int64_t until = now_ns() + (int64_t)(grace_ms > 0 ? grace_ms : 0) * 1000000;
	epoll_ctl(p->epfd, EPOLL_CTL_DEL, p->done_fd, NULL);
	while (running(p) > 0 && now_ns() < until) {
		wait_events(p, until);
		tick(p);
	}
	struct epoll_event ev = {.events = EPOLLIN, .data.u64 = DONE_TAG};
	epoll_ctl(p->epfd, EPOLL_CTL_ADD, p->done_fd, &ev); /* pool_fd tells of them again */
	size_t killed = 0;
	for (size_t i = 0; i < p->n_slots; i++) {
		prefork_child *c = &p->children[i];
		if (!c->pid)
			continue;
		if (c->job) {
			kill(c->pid, SIGKILL);
			c->cause = CAUSE_CLOSED;
			killed++;
		}
		child_gone(p, i); /* an idle child exits on EOF */
	}
	reap_all(p);
	p->closed = true;
	if (killed > 0)
		return warren_error_set(err, WARREN_ETIMEOUT,
					"pool: %zu jobs still running after %d ms: their children were killed",
					killed, grace_ms);
	return 0;
}

const pool_ops pool_prefork_ops = {
	.name = "prefork",
	.open = prefork_open,
	.fd = prefork_fd,
	.submit = prefork_submit,
	.take_done = prefork_take_done,
	.tick = tick,
	.next_deadline_ns = prefork_next_deadline_ns,
	.terminate = prefork_terminate,
	.pending = prefork_pending,
	.unqueue = prefork_unqueue,
	.close = prefork_close,
	.free = prefork_free,
	.resize = prefork_resize,
	.started = prefork_started,
	.on_start = prefork_on_start,
};
