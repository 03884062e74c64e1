/* worker/consume.c - what the loop does with one delivery: decode it under
 * hard limits, run the checks in the order that keeps callers informed and
 * tasks safe (bad bytes -> warren.dead, unknown task -> NotRegistered,
 * expired -> REVOKED, future eta -> parked in the broker, bad arguments ->
 * TypeError), then the per-task rate limit, then the pool. Loop thread only. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>

#include "worker.h"

static double wall_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

void loop_task_free(loop_task *t)
{
	if (!t)
		return;
	broker_message_free(t->msg);
	schema_task_msg_free(t->tm);
	free(t);
}

const char *loop_queue_of(const loop *l, const broker_message *msg)
{
	for (size_t i = 0; i < l->s->n_queues; i++)
		if (msg->consumer_tag && strcmp(l->consumer_tags[i], msg->consumer_tag) == 0)
			return l->s->queues[i];
	return msg->routing_key ? msg->routing_key : l->s->queues[0];
}

/* ---- task settings ----------------------------------------------------------- */

static bool switch_or(warren_switch sw, bool dflt)
{
	return sw == WARREN_UNSET ? dflt : sw == WARREN_ON;
}

static void conf_from_plugin(const registry_entry *e, loop_task_conf *c)
{
	const warren_task_options *o = &e->opts;
	c->acks_late = switch_or(o->acks_late, true);
	c->ignore_result = switch_or(o->ignore_result, false);
	c->track_started = switch_or(o->track_started, false);
	c->retry_jitter = switch_or(o->retry_jitter, true);
	c->max_retries = o->max_retries == WARREN_RETRIES_DEFAULT ? 3
			 : o->max_retries == WARREN_RETRIES_NONE  ? 0
			 : o->max_retries == WARREN_RETRIES_FOREVER ? -1
								     : o->max_retries;
	c->default_retry_delay = o->default_retry_delay > 0 ? o->default_retry_delay : 180;
	c->retry_backoff = o->retry_backoff;
	c->retry_backoff_max = o->retry_backoff_max > 0 ? o->retry_backoff_max : 600;
	c->rate = e->rate_per_second;
	c->soft_time_limit = o->soft_time_limit;
	c->time_limit = o->time_limit;
	c->schema = o->schema;
	c->autoretry_for = o->autoretry_for;
	c->reject_on_worker_lost = e->ext.reject_on_worker_lost == WARREN_ON;
}

/* A task in the config overrides the plugin's defaults key by key; the
 * config filled Celery's defaults for keys it did not see, so only values
 * that differ from those defaults are taken as overrides. */
void loop_task_conf_resolve(const warren_config *cfg, const registry_entry *entry,
			    loop_task_conf *out)
{
	memset(out, 0, sizeof *out);
	conf_from_plugin(entry, out);
	const config_task *ct = cfg ? config_task_find(cfg, entry->name) : NULL;
	if (!ct)
		return;
	if (ct->rate_limit > 0)
		out->rate = ct->rate_limit;
	if (ct->time_limit > 0)
		out->time_limit = ct->time_limit;
	if (ct->soft_time_limit > 0)
		out->soft_time_limit = ct->soft_time_limit;
	if (ct->max_retries != 3)
		out->max_retries = ct->max_retries;
	if (ct->retry_backoff > 0)
		out->retry_backoff = ct->retry_backoff;
	if (ct->retry_backoff_max != 600)
		out->retry_backoff_max = ct->retry_backoff_max;
	if (!ct->retry_jitter)
		out->retry_jitter = false;
	if (ct->default_retry_delay != 180)
		out->default_retry_delay = ct->default_retry_delay;
	if (!ct->acks_late)
		out->acks_late = false;
	if (ct->ignore_result)
		out->ignore_result = true;
	if (ct->track_started)
		out->track_started = true;
	if (ct->reject_on_worker_lost)
		out->reject_on_worker_lost = true;
	if (ct->has_schema)
		out->schema = &ct->schema;
}

/* ---- decode and checks ------------------------------------------------------- */

static void props_of(const broker_message *m, schema_task_props *p)
{
	memset(p, 0, sizeof *p);
	p->correlation_id = m->correlation_id;
	p->content_type = m->content_type;
	p->content_encoding = m->content_encoding;
	p->reply_to = m->reply_to;
	p->expiration = m->expiration;
	p->has_priority = m->priority != BROKER_UNSET;
	p->priority = (uint8_t)(m->priority != BROKER_UNSET ? m->priority : 0);
	p->has_delivery_mode = m->delivery_mode != 0;
	p->delivery_mode = (uint8_t)m->delivery_mode;
}

static void log_task(config_log_level level, const schema_task_msg *tm, const char *state,
		     double runtime, const char *fmt, const char *detail)
{
	log_fields f = {tm->id, tm->task, state, runtime};
	log_at(level, &f, fmt, tm->task, tm->id, detail);
}

/* Decodes msg, or dead-letters it (and returns NULL). */
static schema_task_msg *decode(loop *l, broker_message *msg)
{
	if (msg->headers_invalid) {
		loop_dead_letter(l, msg, NULL, "DecodeError", "kombu.exceptions",
				 "headers: not convertible (nested too deep or malformed)");
		return NULL;
	}
	if (!msg->content_type || strcmp(msg->content_type, SCHEMA_CONTENT_TYPE) != 0) {
		char why[200];
		snprintf(why, sizeof why, "content type '%.64s' is not accepted (only %s)",
			 msg->content_type ? msg->content_type : "", SCHEMA_CONTENT_TYPE);
		loop_dead_letter(l, msg, NULL, "ContentDisallowed", "kombu.exceptions", why);
		return NULL;
	}
	schema_task_props props;
	props_of(msg, &props);
	schema_limits lim;
	schema_limits_default(&lim);
	schema_task_msg *tm = NULL;
	warren_error err = {0};
	if (schema_task_decode(&props, msg->headers, msg->headers_len, msg->body, msg->body_len,
			       &lim, &tm, &err) != 0) {
		loop_dead_letter(l, msg, NULL, "DecodeError", "kombu.exceptions", err.msg);
		return NULL;
	}
	return tm;
}

/* Settles a task that ends without running: stores r, acks, frees. */
static void finish_unrun(loop *l, loop_task *t, schema_result *r)
{
	if (!t->conf.ignore_result && !t->tm->ignore_result)
		loop_store(l, t->tm->id, t->tm, t->msg, r);
	canvas_on_final(l, t, r); /* a chain or chord must hear of it too */
	if (!t->acked)
		loop_ack(l, t->msg);
	loop_task_free(t);
}

static bool check_expired(loop *l, loop_task *t, double now)
{
	if (!t->tm->expires)
		return false;
	double when;
	warren_error err = {0};
	if (loop_parse_iso8601(t->tm->expires, &when, &err) != 0 || when > now)
		return false; /* an unreadable expires never expires, as Celery's would raise */
	log_task(CONFIG_LOG_WARNING, t->tm, "REVOKED", -1, "Task %s[%s] expired: %s", "revoked");
	events_task_revoked(l, t->tm, false, -1, true);
	schema_result r;
	schema_result_init(&r);
	schema_result_set_revoked(&r, SCHEMA_REVOKED_EXPIRED, NULL);
	finish_unrun(l, t, &r);
	schema_result_release(&r);
	return true;
}

/* Celery's worker_deduplicate_successful_tasks, always on here: a
 * redelivered acks-late task whose SUCCESS is already in a persistent
 * backend (redis) ran to the end under a connection that died before its
 * ack could be sent; running it again would only store the same SUCCESS
 * twice. It is acked, not run. Only redelivered messages pay the read; the
 * rpc backend keeps nothing to read, so there every copy runs. */
static bool check_duplicate(loop *l, loop_task *t)
{
	if (!t->msg->redelivered || !t->conf.acks_late || !l->results ||
	    strcmp(backend_name(l->results), "redis") != 0)
		return false;
	schema_result r;
	schema_result_init(&r);
	bool done = backend_get(l->results, t->tm->id, &r, NULL) == 0 &&
		    r.state == SCHEMA_STATE_SUCCESS;
	if (!done) {
		schema_result_release(&r);
		return false;
	}
	log_task(CONFIG_LOG_INFO, t->tm, "SUCCESS", -1, "Task %s[%s] redelivered: %s",
		 "already succeeded, not run again");
	/* The first run may have died between its store and its chord part:
	 * count the part now (idempotent per task id), or the chord never joins. */
	canvas_on_final(l, t, &r);
	schema_result_release(&r);
	loop_ack(l, t->msg);
	loop_task_free(t);
	return true;
}

static bool check_args(loop *l, loop_task *t)
{
	warren_error err = {0};
	if (!t->conf.schema ||
	    schema_args_validate(t->tm->task, t->conf.schema, &t->tm->args, &t->tm->kwargs,
				 &err) == 0)
		return false;
	log_task(CONFIG_LOG_ERROR, t->tm, "FAILURE", -1, "Task %s[%s] raised TypeError: %s",
		 err.msg);
	events_task_failed(l, t->tm, "TypeError", err.msg, NULL, -1);
	schema_result r;
	schema_result_init(&r);
	schema_result_set_exception(&r, SCHEMA_STATE_FAILURE, "TypeError", "builtins", err.msg,
				    NULL);
	finish_unrun(l, t, &r);
	schema_result_release(&r);
	return true;
}

/* ---- rate limits ----------------------------------------------------------- */

static loop_limiter *limiter_for(loop *l, const registry_entry *e, double rate)
{
	for (loop_limiter *q = l->limiters; q; q = q->next)
		if (q->entry == e)
			return q;
	loop_limiter *q = calloc(1, sizeof *q);
	if (!q)
		return NULL;
	q->entry = e;
	rate_bucket_init(&q->bucket, rate, task_monotonic_ns());
	q->next = l->limiters;
	l->limiters = q;
	return q;
}

static void limiter_push(loop_limiter *q, loop_task *t)
{
	t->next = NULL;
	if (q->tail)
		q->tail->next = t;
	else
		q->head = t;
	q->tail = t;
	q->waiting++;
}

static void rate_limit_or_submit(loop *l, loop_task *t)
{
	loop_limiter *q = t->conf.rate > 0 ? limiter_for(l, t->entry, t->conf.rate) : NULL;
	if (!q) {
		loop_submit(l, t);
		return;
	}
	int64_t now = task_monotonic_ns();
	if (q->waiting == 0) {
		int64_t wait = rate_bucket_take(&q->bucket, now);
		if (wait == 0) {
			loop_submit(l, t);
			return;
		}
		q->wake_ns = now + wait;
	}
	limiter_push(q, t);
}

int64_t loop_release_limited(loop *l, int64_t now_ns)
{
	int64_t next = 0;
	for (loop_limiter *q = l->limiters; q; q = q->next) {
		while (q->head && q->wake_ns <= now_ns) {
			int64_t wait = rate_bucket_take(&q->bucket, now_ns);
			if (wait > 0) {
				q->wake_ns = now_ns + wait;
				break;
			}
			loop_task *t = q->head;
			q->head = t->next;
			if (!q->head)
				q->tail = NULL;
			q->waiting--;
			loop_submit(l, t);
		}
		if (q->head && (next == 0 || q->wake_ns < next))
			next = q->wake_ns;
	}
	return next;
}

void loop_drop_limited(loop *l)
{
	for (loop_limiter *q = l->limiters; q; q = q->next) {
		for (loop_task *t = q->head, *next; t; t = next) {
			next = t->next;
			if (t->acked && !l->cold) {
				/* Acked on receipt: the broker no longer has it, so run it. */
				loop_submit(l, t);
				continue;
			}
			loop_requeue(l, t->msg); /* unacked: back to its queue */
			loop_task_free(t);
		}
		q->head = q->tail = NULL;
		q->waiting = 0;
	}
}

/* ---- the pool ----------------------------------------------------------------- */

static int pack_object(const msgpack_object *o, void **out, size_t *len)
{
	/* Starts small: msgpack_sbuffer's first write would take 8 KiB, a
	 * large malloc and free per part for the usual few bytes of args. It
	 * doubles from here as needed. */
	msgpack_sbuffer sb;
	msgpack_sbuffer_init(&sb);
	sb.data = malloc(64);
	if (!sb.data)
		return WARREN_ENOMEM;
	sb.alloc = 64;
	msgpack_packer pk;
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	if (msgpack_pack_object(&pk, *o) != 0) {
		msgpack_sbuffer_destroy(&sb);
		return WARREN_ENOMEM;
	}
	*out = sb.data; /* msgpack_sbuffer allocates with malloc */
	*len = sb.size;
	return 0;
}

/* A part of the body as the pool needs it, packed: the bytes it came in when
 * the decoder saw where they lie (no packing again), else packed from o. */
static int job_part(const loop_task *t, const msgpack_object *o, schema_span span, void **out,
		    size_t *len)
{
	if (!span.len || span.off + span.len > t->msg->body_len)
		return pack_object(o, out, len);
	*out = malloc(span.len);
	if (!*out)
		return WARREN_ENOMEM;
	memcpy(*out, (const char *)t->msg->body + span.off, span.len);
	*len = span.len;
	return 0;
}

static pool_job *job_new(loop *l, loop_task *t)
{
	pool_job *job = calloc(1, sizeof *job);
	if (!job)
		return NULL;
	const schema_task_msg *tm = t->tm;
	job->seq = ++l->next_seq;
	job->loop_data = t;
	job->task_id = strdup(tm->id);
	job->task_name = strdup(tm->task);
	job->retries = (int)tm->retries;
	if (t->msg->headers && t->msg->headers_len) {
		job->headers = malloc(t->msg->headers_len);
		if (job->headers) {
			memcpy(job->headers, t->msg->headers, t->msg->headers_len);
			job->headers_len = t->msg->headers_len;
		}
	}
	job->soft_time_limit = tm->has_soft_time_limit && tm->soft_time_limit > 0
				       ? tm->soft_time_limit : t->conf.soft_time_limit;
	job->time_limit = tm->has_time_limit && tm->time_limit > 0 ? tm->time_limit
								   : t->conf.time_limit;
	if (!job->task_id || !job->task_name ||
	    (t->msg->headers_len && !job->headers) ||
	    job_part(t, &tm->args, tm->args_span, &job->args, &job->args_len) != 0 ||
	    job_part(t, &tm->kwargs, tm->kwargs_span, &job->kwargs, &job->kwargs_len) != 0) {
		pool_job_free(job);
		return NULL;
	}
	return job;
}

void loop_submit(loop *l, loop_task *t)
{
	warren_error err = {0};
	if (control_check_revoked(l, t))
		return; /* revoked while it waited for a rate-limit token */
	pool_job *job = job_new(l, t);
	if (!job) {
		log_at(CONFIG_LOG_ERROR, NULL, "Task %s[%s]: out of memory; requeued", t->tm->task,
		       t->tm->id);
		loop_requeue(l, t->msg);
		loop_task_free(t);
		return;
	}
	loop_watch_start(l, t, job); /* STARTED, task-started: when it runs (results.c) */
	if (pool_submit(l->pool, job, &err) != 0) {
		log_at(CONFIG_LOG_ERROR, NULL, "Task %s[%s]: %s; requeued", t->tm->task, t->tm->id,
		       err.msg);
		pool_job_free(job);
		loop_requeue(l, t->msg);
		loop_task_free(t);
		return;
	}
	l->in_pool++;
	control_task_submitted(l, t, job->seq);
}

void loop_on_message(loop *l, broker_message *msg)
{
	if (l->draining || msg->generation != broker_conn_generation(l->conn)) {
		/* Shutting down: back to its queue now, for another worker. Or it
		 * came on a connection that is gone: the broker redelivers it,
		 * and the nack only logs that it cannot be sent. */
		loop_requeue(l, msg);
		broker_message_free(msg);
		return;
	}
	/* Tracked before anything can settle it, so no batched ack passes over
	 * it while it is unsettled (acks.c). Untrackable: give it back. */
	if (acks_track(&l->acks, msg->generation, msg->delivery_tag) != 0) {
		loop_requeue(l, msg);
		broker_message_free(msg);
		return;
	}
	schema_task_msg *tm = decode(l, msg);
	if (!tm)
		return;
	const registry_entry *e = registry_lookup(l->s->reg, tm->task, strlen(tm->task));
	if (!e) {
		events_task_failed(l, tm, "NotRegistered", tm->task, NULL, -1); /* consumer.py */
		loop_dead_letter(l, msg, tm, "NotRegistered", "celery.exceptions", tm->task);
		schema_task_msg_free(tm);
		return;
	}
	loop_task *t = calloc(1, sizeof *t);
	if (!t) {
		loop_requeue(l, msg);
		broker_message_free(msg);
		schema_task_msg_free(tm);
		return;
	}
	t->msg = msg;
	t->tm = tm;
	t->entry = e;
	t->queue = loop_queue_of(l, msg);
	t->received_ns = task_monotonic_ns();
	loop_task_conf_resolve(reload_config(l), e, &t->conf); /* the last SIGHUP's */
	control_apply_overrides(l, t); /* live rate_limit / time_limit */
	log_task(CONFIG_LOG_INFO, tm, "RECEIVED", -1, "Task %s[%s] received%s",
		 msg->redelivered ? " (redelivered)" : "");
	if (check_duplicate(l, t))
		return;
	double now = wall_now();
	if (check_expired(l, t, now) || control_check_revoked(l, t))
		return;
	double eta;
	if (tm->eta && loop_parse_iso8601(tm->eta, &eta, NULL) == 0 && eta - now > 0.05) {
		loop_park(l, t, eta);
		return;
	}
	events_task_received(l, t); /* after the expiry and eta checks, as strategy.py */
	if (check_args(l, t))
		return;
	if (!t->conf.acks_late) {
		loop_ack(l, msg);
		t->acked = true;
	}
	rate_limit_or_submit(l, t);
}
