/* worker/results.c - the loop's side of a finished task: store its result
 * through the backend exactly as Celery reports it, then settle the message
 * (acks_late: only after the store); retries republished through delayed
 * delivery with publisher confirms, the original acked only once the broker
 * confirmed the copy, so a task is never lost between the two. Loop thread
 * only. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "worker.h"

static double wall_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* ---- store and settle ---------------------------------------------------------- */

void loop_store(loop *l, const char *task_id, const schema_task_msg *tm,
		const broker_message *msg, schema_result *r)
{
	if (!l->results || !task_id)
		return;
	warren_error err = {0};
	int rc = schema_result_set_task_id(r, task_id, &err);
	if (rc == 0 && tm && tm->group)
		rc = schema_result_set_group_id(r, tm->group, &err);
	if (rc == 0 && tm && tm->parent_id)
		rc = schema_result_set_parent_id(r, tm->parent_id, &err);
	if (rc == 0)
		rc = schema_result_stamp_date_done(r, NULL, &err);
	backend_request req = {
		.reply_to = msg ? msg->reply_to : NULL,
		.correlation_id = msg && msg->correlation_id ? msg->correlation_id : task_id,
	};
	if (rc == 0)
		rc = backend_store(l->results, r, &req, &err);
	if (rc == WARREN_ENOTFOUND) {
		log_fields f = {task_id, tm ? tm->task : NULL, schema_state_name(r->state), -1};
		log_at(CONFIG_LOG_WARNING, &f, "Task %s[%s]: reply queue gone: %s",
		       tm ? tm->task : "?", task_id, err.msg);
	} else if (rc != 0) {
		log_fields f = {task_id, tm ? tm->task : NULL, schema_state_name(r->state), -1};
		log_at(CONFIG_LOG_ERROR, &f, "Task %s[%s]: storing %s failed: %s",
		       tm ? tm->task : "?", task_id, schema_state_name(r->state), err.msg);
	}
}

static int send_ack(void *arg, uint64_t tag, bool multiple)
{
	loop *l = arg;
	warren_error err = {0};
	int rc = broker_ack_tag(l->conn, l->acks.generation, tag, multiple, &err);
	if (rc != 0)
		log_at(CONFIG_LOG_DEBUG, NULL, "ack of delivery %llu%s: %s (the broker redelivers it)",
		       (unsigned long long)tag, multiple ? " and before" : "", err.msg);
	return rc;
}

void loop_flush_acks(loop *l, bool all)
{
	acks_flush(&l->acks, broker_conn_generation(l->conn), task_monotonic_ns(), all, send_ack, l);
}

/* Acks are batched (acks.c): a tracked delivery is only marked here and
 * acked with the others by loop_flush_acks, at the latest before the loop
 * next polls. Everything that must happen before the ack (result stored,
 * republish confirmed) has happened by the time this is called, so a later
 * ack only means a redelivery if the worker dies in between. */
void loop_ack(loop *l, const broker_message *msg)
{
	if (acks_settle(&l->acks, msg->generation, msg->delivery_tag, true)) {
		if (acks_due(&l->acks))
			loop_flush_acks(l, false);
		return;
	}
	warren_error err = {0};
	if (broker_ack(l->conn, msg, &err) != 0)
		log_at(CONFIG_LOG_DEBUG, NULL, "ack of delivery %llu: %s (the broker redelivers it)",
		       (unsigned long long)msg->delivery_tag, err.msg);
}

/* Nacks and rejects go out at once, one delivery each; the tracker forgets
 * the delivery so no batched ack waits for it. */
void loop_requeue(loop *l, const broker_message *msg)
{
	acks_settle(&l->acks, msg->generation, msg->delivery_tag, false);
	warren_error err = {0};
	if (broker_nack(l->conn, msg, true, &err) != 0)
		log_at(CONFIG_LOG_DEBUG, NULL, "requeue of delivery %llu: %s",
		       (unsigned long long)msg->delivery_tag, err.msg);
}

void loop_reject(loop *l, const broker_message *msg)
{
	acks_settle(&l->acks, msg->generation, msg->delivery_tag, false);
	warren_error err = {0};
	if (broker_reject(l->conn, msg, false, &err) != 0)
		log_at(CONFIG_LOG_DEBUG, NULL, "reject of delivery %llu: %s",
		       (unsigned long long)msg->delivery_tag, err.msg);
}

/* ---- confirms ------------------------------------------------------------------- */

void loop_after_add(loop *l, loop_after *a)
{
	a->next = l->afters;
	l->afters = a;
}

loop_after *loop_after_take(loop *l, uint64_t cookie)
{
	for (loop_after **pp = &l->afters; *pp; pp = &(*pp)->next)
		if ((*pp)->cookie == cookie) {
			loop_after *a = *pp;
			*pp = a->next;
			return a;
		}
	return NULL;
}

static void after_confirmed(loop *l, loop_after *a)
{
	switch (a->kind) {
	case LOOP_AFTER_DEADLETTER:
		loop_ack(l, a->msg);
		break;
	case LOOP_AFTER_RETRY:
		if (!a->task->conf.ignore_result && !a->task->tm->ignore_result)
			loop_store(l, a->task->tm->id, a->task->tm, a->task->msg, &a->result);
		/* fall through */
	case LOOP_AFTER_PARK:
		if (!a->task->acked)
			loop_ack(l, a->task->msg);
		break;
	}
}

static void after_refused(loop *l, loop_after *a, const char *reason)
{
	if (a->kind == LOOP_AFTER_DEADLETTER) {
		/* Requeueing a message we cannot read would loop forever. */
		log_at(CONFIG_LOG_ERROR, NULL, "dead-letter copy refused (%s): message dropped",
		       reason ? reason : "?");
		loop_reject(l, a->msg);
		return;
	}
	log_fields f = {a->task->tm->id, a->task->tm->task, NULL, -1};
	log_at(CONFIG_LOG_ERROR, &f, "Task %s[%s]: republish refused (%s); requeued",
	       a->task->tm->task, a->task->tm->id, reason ? reason : "?");
	if (!a->task->acked)
		loop_requeue(l, a->task->msg);
}

static void after_free(loop_after *a)
{
	broker_message_free(a->msg);
	loop_task_free(a->task);
	schema_result_release(&a->result);
	free(a);
}

void loop_on_outcome(void *arg, uint64_t cookie, broker_outcome outcome, const char *reason)
{
	loop *l = arg;
	if (backend_outcome(l->results, cookie, outcome, reason))
		return; /* an rpc result: backend_store waits for it */
	if (events_owns_cookie(cookie))
		return; /* events are fire-and-forget */
	if (canvas_outcome(l, cookie, outcome, reason))
		return; /* canvas.c waits for its own confirms */
	loop_after *a = loop_after_take(l, cookie);
	if (!a)
		return; /* a result published by the rpc backend, say */
	if (outcome == BROKER_CONFIRMED)
		after_confirmed(l, a);
	else
		after_refused(l, a, reason);
	after_free(a);
}

/* ---- delayed delivery -------------------------------------------------------- */

/* The single call site of delayed delivery (broker-adapter/delay.c): every
 * retry and every future eta goes through here, and always back to the
 * queue the task came from via the default exchange, whatever exchange the
 * message was first published to. */
int loop_publish_delayed(loop *l, const char *routing_key, int64_t delay_ms,
			 const broker_props *props, const void *body, size_t len,
			 uint64_t cookie, warren_error *err)
{
	return broker_publish_delayed(l->conn, "", routing_key, delay_ms, props, body, len, cookie,
				      err);
}

static void props_from_msg(const broker_message *m, broker_props *p)
{
	memset(p, 0, sizeof *p);
	p->content_type = m->content_type;
	p->content_encoding = m->content_encoding;
	p->correlation_id = m->correlation_id;
	p->reply_to = m->reply_to;
	p->message_id = m->message_id;
	p->delivery_mode = m->delivery_mode ? m->delivery_mode : 2;
	p->priority = m->priority;
	p->headers = m->headers;
	p->headers_len = m->headers_len;
}

void loop_park(loop *l, loop_task *t, double when)
{
	int64_t delay_ms = (int64_t)ceil((when - wall_now()) * 1000);
	broker_props props;
	props_from_msg(t->msg, &props);
	loop_after *a = calloc(1, sizeof *a);
	warren_error err = {0};
	if (!a) {
		loop_requeue(l, t->msg);
		loop_task_free(t);
		return;
	}
	a->cookie = ++l->next_cookie;
	a->kind = LOOP_AFTER_PARK;
	a->task = t;
	schema_result_init(&a->result);
	loop_after_add(l, a);
	log_fields f = {t->tm->id, t->tm->task, NULL, -1};
	log_at(CONFIG_LOG_INFO, &f, "Task %s[%s] parked for %.3fs (eta %s)", t->tm->task, t->tm->id,
	       delay_ms / 1000.0, t->tm->eta);
	if (loop_publish_delayed(l, t->queue, delay_ms, &props, t->msg->body, t->msg->body_len,
				 a->cookie, &err) != 0) {
		/* Never reached the broker: a delay we cannot express, say. */
		loop_after_take(l, a->cookie);
		a->task = NULL;
		after_free(a);
		loop_dead_letter(l, t->msg, t->tm, "DecodeError", "kombu.exceptions", err.msg);
		t->msg = NULL;
		loop_task_free(t);
	}
}

/* ---- retries ----------------------------------------------------------------- */

static int encode_retry(loop_task *t, double delay, msgpack_sbuffer *hb, msgpack_sbuffer *bb,
			broker_props *bp, warren_error *err)
{
	schema_task_msg *tm = t->tm;
	char eta[40];
	loop_format_iso8601(wall_now() + delay, eta);
	tm->retries++;
	tm->eta = schema_task_msg_strdup(tm, eta);
	schema_task_props sp;
	int rc = schema_task_encode(tm, hb, bb, &sp, err);
	tm->retries--; /* the stored RETRY and the logs talk about this attempt */
	if (rc != 0)
		return rc;
	memset(bp, 0, sizeof *bp);
	bp->content_type = sp.content_type;
	bp->content_encoding = sp.content_encoding;
	bp->correlation_id = sp.correlation_id;
	bp->reply_to = sp.reply_to;
	bp->delivery_mode = sp.has_delivery_mode ? sp.delivery_mode : 2;
	bp->priority = sp.has_priority ? sp.priority : BROKER_UNSET;
	bp->headers = hb->data;
	bp->headers_len = hb->size;
	return 0;
}

/* Task.retry sends the next attempt (same id) from inside the task, so its
 * AsyncResult is the RETRY's one child: children [[[id, nil], nil]]. */
static void set_retry_children(schema_result *r, const char *id)
{
	msgpack_sbuffer sb;
	msgpack_sbuffer_init(&sb);
	msgpack_packer pk;
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	if ((msgpack_pack_array(&pk, 1) | msgpack_pack_array(&pk, 2) | msgpack_pack_array(&pk, 2) |
	     msgpack_pack_str_with_body(&pk, id, strlen(id)) | msgpack_pack_nil(&pk) |
	     msgpack_pack_nil(&pk)) == 0)
		schema_result_set_children(r, sb.data, sb.size, NULL);
	msgpack_sbuffer_destroy(&sb);
}

static void set_retry_result(schema_result *r, double delay, const pool_job *job, bool autoretry)
{
	char msg[1400];
	if (autoretry)
		snprintf(msg, sizeof msg, "Retry in %gs: %s('%s')", delay,
			 job->exc_type ? job->exc_type : "Exception",
			 job->exc_message ? job->exc_message : "");
	else
		snprintf(msg, sizeof msg, "Retry in %gs", delay);
	schema_result_set_exception(r, SCHEMA_STATE_RETRY, "Retry", "celery.exceptions", msg, NULL);
	set_retry_children(r, job->task_id);
}

/* Republishes t for another attempt. Returns false when it could not (the
 * caller then fails the task). */
static bool retry(loop *l, loop_task *t, const pool_job *job, bool autoretry)
{
	double delay = loop_retry_delay(&t->conf, (int)t->tm->retries,
					autoretry ? -1 : job->retry_countdown, autoretry, &l->seed);
	msgpack_sbuffer hb, bb;
	msgpack_sbuffer_init(&hb);
	msgpack_sbuffer_init(&bb);
	broker_props bp;
	warren_error err = {0};
	loop_after *a = calloc(1, sizeof *a);
	bool ok = a && encode_retry(t, delay, &hb, &bb, &bp, &err) == 0;
	if (ok) {
		a->cookie = ++l->next_cookie;
		a->kind = LOOP_AFTER_RETRY;
		a->task = t;
		schema_result_init(&a->result);
		set_retry_result(&a->result, delay, job, autoretry);
		loop_after_add(l, a);
		ok = loop_publish_delayed(l, t->queue, (int64_t)ceil(delay * 1000), &bp, bb.data,
					  bb.size, a->cookie, &err) == 0;
		if (!ok) {
			loop_after_take(l, a->cookie);
			schema_result_release(&a->result);
		}
	}
	msgpack_sbuffer_destroy(&hb);
	msgpack_sbuffer_destroy(&bb);
	log_fields f = {t->tm->id, t->tm->task, "RETRY", job->runtime};
	if (!ok) {
		free(a);
		log_at(CONFIG_LOG_ERROR, &f, "Task %s[%s] retry could not be published: %s",
		       t->tm->task, t->tm->id, err.msg[0] ? err.msg : "out of memory");
		return false;
	}
	log_at(CONFIG_LOG_INFO, &f, "Task %s[%s] retry: Retry in %gs", t->tm->task, t->tm->id,
	       delay);
	events_task_retried(l, t, job);
	return true;
}

/* ---- the start ------------------------------------------------------------------ */

/* STARTED as Celery's trace.py stores it: {pid, hostname} of the process
 * that runs the task (a prefork child's pid, not the worker's). */
static void store_started(loop *l, loop_task *t, int64_t pid)
{
	schema_result r;
	schema_result_init(&r);
	if (schema_result_set_started(&r, pid, l->s->hostname, NULL) == 0)
		loop_store(l, t->tm->id, t->tm, t->msg, &r);
	schema_result_release(&r);
}

static bool stores_started(const loop_task *t)
{
	return t->conf.track_started && !t->conf.ignore_result && !t->tm->ignore_result;
}

/* The pool's start report, on the loop thread (pool_start_fn): Celery's on_accepted
 * (worker/request.py: task-started) and the STARTED store trace.py makes
 * before calling the task. */
static void on_started(void *arg, const pool_job *job)
{
	loop *l = arg;
	loop_task *t = job->loop_data;
	log_fields f = {t->tm->id, t->tm->task, "STARTED", -1};
	log_at(CONFIG_LOG_DEBUG, &f, "Task %s[%s] started: pid %lld", t->tm->task, t->tm->id,
	       (long long)job->start_pid);
	if (stores_started(t))
		store_started(l, t, job->start_pid);
	events_task_started(l, t);
}

/* Why a report only then: it is the only way those two can happen while the
 * task runs rather than before (at submit, when the job may still wait
 * behind others in the pool) or after, and it costs the pool a lock and an
 * eventfd write and the loop a wake-up per task; the drain benchmark's tasks
 * need neither. `inspect active/reserved` needs no report: it asks the pool
 * (pool_job_started), and the heartbeat's count of started tasks takes an
 * unreported task when it comes back (loop_on_done). The flag -E is read
 * from the settings, not events.c: this runs for every task. */
void loop_watch_start(loop *l, loop_task *t, pool_job *job)
{
	if (!l->s->task_events && !stores_started(t))
		return;
	pool_on_start(l->pool, on_started, l);
	job->report_start = true;
}

/* ---- outcomes ----------------------------------------------------------------- */

static void finish(loop *l, loop_task *t, schema_result *r)
{
	if (!t->conf.ignore_result && !t->tm->ignore_result)
		loop_store(l, t->tm->id, t->tm, t->msg, r);
	canvas_on_final(l, t, r); /* chord part, chain failure, errbacks: before the ack */
	if (!t->acked)
		loop_ack(l, t->msg);
	l->processed++;
	loop_task_free(t);
}

static void on_success(loop *l, loop_task *t, const pool_job *job)
{
	log_fields f = {t->tm->id, t->tm->task, "SUCCESS", job->runtime};
	if (log_enabled(CONFIG_LOG_INFO)) {
		char repr[SCHEMA_REPR_MAX + 4] = "None";
		msgpack_zone zone;
		msgpack_zone_init(&zone, 256);
		msgpack_object o;
		if (job->result && msgpack_unpack(job->result, job->result_len, NULL, &zone, &o) ==
					   MSGPACK_UNPACK_SUCCESS)
			schema_repr(&o, false, repr, sizeof repr);
		msgpack_zone_destroy(&zone);
		log_emit(CONFIG_LOG_INFO, &f, "Task %s[%s] succeeded in %.6fs: %s", t->tm->task,
			 t->tm->id, job->runtime, repr);
	}
	schema_result r;
	schema_result_init(&r);
	events_task_succeeded(l, t, job);
	schema_result_set_success(&r, job->result ? job->result : "\xc0",
				  job->result ? job->result_len : 1, NULL);
	/* before the store, as Celery: what it sends becomes r's children */
	canvas_on_success(l, t, job->result, job->result_len, &r);
	finish(l, t, &r);
	schema_result_release(&r);
}

static void fail_with(loop *l, loop_task *t, const pool_job *job, const char *type,
		      const char *module, const char *message, const char *traceback)
{
	log_fields f = {t->tm->id, t->tm->task, "FAILURE", job->runtime};
	log_at(CONFIG_LOG_ERROR, &f, "Task %s[%s] raised unexpected: %s('%s')", t->tm->task,
	       t->tm->id, type, message);
	events_task_failed(l, t->tm, type, message, traceback, job->runtime);
	schema_result r;
	schema_result_init(&r);
	schema_result_set_exception(&r, SCHEMA_STATE_FAILURE, type, module, message, NULL);
	if (traceback)
		schema_result_set_traceback(&r, traceback, NULL);
	finish(l, t, &r);
	schema_result_release(&r);
}

static bool retries_left(const loop_task *t)
{
	return t->conf.max_retries < 0 || t->tm->retries < t->conf.max_retries;
}

static void on_retry(loop *l, loop_task *t, const pool_job *job)
{
	if (!retries_left(t)) {
		char msg[600];
		char args[SCHEMA_REPR_MAX + 4], kwargs[SCHEMA_REPR_MAX + 4];
		schema_repr(&t->tm->args, true, args, sizeof args);
		schema_repr(&t->tm->kwargs, false, kwargs, sizeof kwargs);
		snprintf(msg, sizeof msg, "Can't retry %s[%s] args:%.200s kwargs:%.200s", t->tm->task,
			 t->tm->id, args, kwargs);
		fail_with(l, t, job, "MaxRetriesExceededError", "celery.exceptions", msg, NULL);
		return;
	}
	if (!retry(l, t, job, false))
		fail_with(l, t, job, "Retry", "celery.exceptions", "retry could not be published",
			  NULL);
}

/* A hard time limit is stored as Celery stores it: TimeLimitExceeded with the
 * limit as a float argument, e.g. exc_message [0.5], not the string "0.5". */
static void fail_time_limit(loop *l, loop_task *t, const pool_job *job)
{
	log_fields f = {t->tm->id, t->tm->task, "FAILURE", job->runtime};
	log_at(CONFIG_LOG_ERROR, &f, "Task %s[%s] hard time limit (%gs) exceeded", t->tm->task,
	       t->tm->id, job->time_limit);
	msgpack_sbuffer sb;
	msgpack_sbuffer_init(&sb);
	msgpack_packer pk;
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	msgpack_pack_array(&pk, 1);
	msgpack_pack_double(&pk, job->time_limit);
	char limit[32];
	snprintf(limit, sizeof limit, "%g", job->time_limit);
	events_task_failed(l, t->tm, "TimeLimitExceeded", limit, NULL, job->runtime);
	schema_result r;
	schema_result_init(&r);
	schema_result_set_exception_args(&r, SCHEMA_STATE_FAILURE, "TimeLimitExceeded",
					 "billiard.exceptions", sb.data, sb.size, NULL);
	msgpack_sbuffer_destroy(&sb);
	finish(l, t, &r);
	schema_result_release(&r);
}

/* terminate (remote control) comes back from the pool as TaskRevokedError;
 * Celery stores that as REVOKED, not FAILURE. */
static void revoke_terminated(loop *l, loop_task *t, const pool_job *job)
{
	log_fields f = {t->tm->id, t->tm->task, "REVOKED", job->runtime};
	log_at(CONFIG_LOG_WARNING, &f, "Task %s[%s] terminated", t->tm->task, t->tm->id);
	events_task_revoked(l, t->tm, true, -1, false);
	schema_result r;
	schema_result_init(&r);
	schema_result_set_revoked(&r, SCHEMA_REVOKED_TERMINATED, NULL);
	finish(l, t, &r);
	schema_result_release(&r);
}

/* Celery's reject_on_worker_lost: a task whose child died under it goes back
 * to the queue instead of failing. Once: a redelivered copy that dies too is
 * a crash of the task itself, not of the worker, and fails as usual (Celery
 * would loop on it). A task acked on receipt cannot be given back. */
static bool requeue_worker_lost(loop *l, loop_task *t)
{
	if (!t->conf.reject_on_worker_lost || t->acked || !t->msg || t->msg->redelivered)
		return false;
	log_fields f = {t->tm->id, t->tm->task, "REJECTED", -1};
	log_at(CONFIG_LOG_WARNING, &f, "Task %s[%s] lost its worker process: requeued once",
	       t->tm->task, t->tm->id);
	loop_requeue(l, t->msg);
	loop_task_free(t);
	return true;
}

static void on_failure(loop *l, loop_task *t, const pool_job *job)
{
	const char *type = job->exc_type ? job->exc_type : "Exception";
	const char *module = job->exc_module ? job->exc_module : "builtins";
	const char *message = job->exc_message ? job->exc_message : "";
	/* A hard limit kills the child, so the pool sets worker_lost too: test
	 * the more specific cause first. */
	if (job->time_limit_hit) {
		fail_time_limit(l, t, job);
		return;
	}
	if (job->worker_lost) {
		if (requeue_worker_lost(l, t))
			return;
		type = "WorkerLostError";
		module = "billiard.exceptions";
	} else if (strcmp(type, "TaskRevokedError") == 0) {
		revoke_terminated(l, t, job);
		return;
	} else if (loop_autoretry_matches(t->conf.autoretry_for, module, type) && retries_left(t) &&
		   retry(l, t, job, true)) {
		return;
	}
	fail_with(l, t, job, type, module, message, job->traceback);
}

void loop_on_done(loop *l, pool_job *job)
{
	loop_task *t = job->loop_data;
	l->in_pool--;
	control_task_done(l, job);
	if (job->start_ns && !job->report_start)
		events_task_accepted(l); /* reported ones were counted at the start */
	switch (job->status) {
	case TASK_SUCCESS:
		on_success(l, t, job);
		break;
	case TASK_FAILURE:
		on_failure(l, t, job);
		break;
	case TASK_RETRY:
		on_retry(l, t, job);
		break;
	case TASK_PENDING:
		/* Never started (pool closing, or taken back by pool_unqueue).
		 * Acked on receipt: the broker no longer has it, so it still runs
		 * here while the pool takes work. Unacked: back to the broker. */
		if (control_check_revoked(l, t)) /* terminate of a queued job */
			break;
		if (t->acked && !l->cold && pool_submit(l->pool, job, NULL) == 0) {
			l->in_pool++;
			control_task_submitted(l, t, job->seq);
			return;
		}
		if (!t->acked)
			loop_requeue(l, t->msg);
		loop_task_free(t);
		break;
	}
	pool_job_free(job);
}
