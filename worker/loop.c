/* worker/loop.c - the worker's event loop: one thread owns the AMQP
 * connection, the result backend and every in-flight message.
 *
 * Concurrency design (STYLE.md "The worker's shape"):
 *
 *   loop thread                                   pool (threads / children)
 *   broker_receive -> consume.c checks -> pool_submit --> handler runs
 *   results.c: store, ack, republish  <-- pool_take_done <-- eventfd
 *
 * Only this thread calls the broker adapter and the backend, so neither
 * needs a lock, and heartbeats are served because no handler ever runs here.
 * Each turn drains finished jobs, reads frames rabbitmq-c already buffered
 * (poll would not see them), then polls the socket, the pool's fd, a
 * signalfd (no signal handler, no global flag) and the nearest timer: a
 * rate-limited task's token, the shutdown grace, the pool's own deadline,
 * and at most a second so heartbeats are answered in time. Prefetch (per
 * consumer, global=false) bounds everything the loop holds: the pool queue,
 * the rate-limit wait lists and the publishes awaiting confirms.
 *
 * Shutdown: the first SIGTERM/SIGINT starts a warm shutdown - the task
 * consumers are cancelled (basic.cancel), and everything delivered but not
 * started (in the pool's queue, waiting for a rate-limit token, or still
 * arriving) is nacked back to its queue at once; running tasks finish
 * within worker.shutdown_timeout and are stored and acked. A second signal
 * or SIGQUIT is a cold shutdown: return at once; unacked tasks go back to
 * their queues when the process exits. SIGHUP re-reads the --config file
 * and applies what can change safely (reload.c).
 */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <time.h>
#include <unistd.h>

#include "worker.h"

#define LOOP_RECEIVE_BUDGET 512 /* events per turn before completions get a look in */
#define LOOP_MAX_WAIT_MS 1000

static void fill_sigset(sigset_t *set)
{
	sigemptyset(set);
	sigaddset(set, SIGTERM);
	sigaddset(set, SIGINT);
	sigaddset(set, SIGQUIT);
	sigaddset(set, SIGHUP); /* reload the config (reload.c) */
}

int loop_block_signals(warren_error *err)
{
	sigset_t set;
	fill_sigset(&set);
	int rc = pthread_sigmask(SIG_BLOCK, &set, NULL);
	if (rc != 0)
		return warren_error_set(err, WARREN_EIO, "block signals: %s", strerror(rc));
	return 0;
}

/* ---- topology ---------------------------------------------------------------- */

static broker_exchange_type exchange_type(config_exchange_type t)
{
	switch (t) {
	case CONFIG_EXCHANGE_TOPIC: return BROKER_EXCHANGE_TOPIC;
	case CONFIG_EXCHANGE_FANOUT: return BROKER_EXCHANGE_FANOUT;
	case CONFIG_EXCHANGE_HEADERS: return BROKER_EXCHANGE_HEADERS;
	default: return BROKER_EXCHANGE_DIRECT;
	}
}

/* One consumed queue as Celery declares it (exchange and binding named after
 * it, direct, durable), or as the config's queues section says. */
static void queue_topology(const warren_config *cfg, const char *name, broker_exchange *x,
			   broker_queue *q, broker_binding *b)
{
	const config_queue *cq = cfg ? config_queue_find(cfg, name) : NULL;
	broker_queue_init(q, name);
	*x = (broker_exchange){.name = name, .type = BROKER_EXCHANGE_DIRECT, .durable = true};
	*b = (broker_binding){.queue = name, .exchange = name, .routing_key = name};
	if (!cq)
		return;
	const config_exchange *ce = config_exchange_find(cfg, cq->exchange);
	x->name = cq->exchange;
	x->type = exchange_type(ce ? ce->type : cq->exchange_type);
	x->durable = ce ? ce->durable : true;
	q->durable = cq->durable;
	q->quorum = cq->type == CONFIG_QUEUE_QUORUM;
	q->max_priority = cq->max_priority > 0 ? cq->max_priority : BROKER_UNSET;
	q->dead_letter_exchange = cq->dead_letter_exchange;
	q->dead_letter_routing_key = cq->dead_letter_routing_key;
	q->delivery_limit = cq->delivery_limit > 0 ? cq->delivery_limit : BROKER_UNSET;
	q->message_ttl_ms = cq->message_ttl_ms >= 0 ? cq->message_ttl_ms : BROKER_UNSET;
	q->expires_ms = cq->expires_ms >= 0 ? cq->expires_ms : BROKER_UNSET;
	b->exchange = cq->exchange;
	b->routing_key = cq->routing_key;
}

static int declare(loop *l, warren_error *err)
{
	size_t n = l->s->n_queues + 1;
	broker_exchange *xs = calloc(n, sizeof *xs);
	broker_queue *qs = calloc(n, sizeof *qs);
	broker_binding *bs = calloc(n, sizeof *bs);
	int rc = WARREN_ENOMEM;
	if (!xs || !qs || !bs) {
		warren_error_set(err, rc, "declare: out of memory");
		goto out_free;
	}
	for (size_t i = 0; i < l->s->n_queues; i++)
		queue_topology(l->s->cfg, l->s->queues[i], &xs[i], &qs[i], &bs[i]);
	/* warren.dead: fanout, so a copy lands whatever its routing key. */
	const config_exchange *dx = l->s->cfg ? config_exchange_find(l->s->cfg, LOOP_DEAD_LETTER)
					      : NULL;
	xs[n - 1] = (broker_exchange){.name = LOOP_DEAD_LETTER, .durable = true,
				      .type = dx ? exchange_type(dx->type) : BROKER_EXCHANGE_FANOUT};
	broker_queue_init(&qs[n - 1], LOOP_DEAD_LETTER);
	/* On a cluster, `queues: {warren.dead: {queue_type: quorum}}` keeps it
	 * available when a node goes down (a classic queue lives on one node). */
	const config_queue *dq = l->s->cfg ? config_queue_find(l->s->cfg, LOOP_DEAD_LETTER) : NULL;
	qs[n - 1].quorum = dq && dq->type == CONFIG_QUEUE_QUORUM;
	bs[n - 1] = (broker_binding){LOOP_DEAD_LETTER, LOOP_DEAD_LETTER, "#"};
	broker_topology t = {xs, n, qs, n, bs, n};
	rc = broker_declare(l->conn, &t, err);
out_free:
	free(xs);
	free(qs);
	free(bs);
	return rc;
}

static int consume(loop *l, warren_error *err)
{
	long prefetch = (long)l->s->pool.concurrency * l->s->prefetch_multiplier;
	if (prefetch > 65535)
		prefetch = 65535;
	l->consumer_tags = calloc(l->s->n_queues, sizeof *l->consumer_tags);
	if (!l->consumer_tags)
		return warren_error_set(err, WARREN_ENOMEM, "consume: out of memory");
	for (size_t i = 0; i < l->s->n_queues; i++) {
		int rc = broker_consume(l->conn, l->s->queues[i], (uint16_t)prefetch, false,
					l->consumer_tags[i], sizeof l->consumer_tags[i], err);
		if (rc != 0)
			return rc;
	}
	return 0;
}

/* ---- setup --------------------------------------------------------------------- */

static int open_backend(loop *l, warren_error *err)
{
	const char *url = l->s->result_backend;
	if (!url || !*url)
		return 0;
	backend_options o;
	backend_options_default(&o);
	o.result_expires = l->s->result_expires;
	o.conn = l->conn; /* rpc publishes results on the loop's connection */
	return backend_open(url, &o, &l->results, err);
}

static int open_broker(loop *l, warren_error *err)
{
	broker_conn_opts o;
	broker_conn_opts_init(&o);
	o.urls = l->s->broker_urls;
	o.connection_name = l->s->hostname;
	if (l->s->cfg) {
		o.heartbeat = l->s->cfg->broker.heartbeat;
		o.connect_timeout_ms = (int)(l->s->cfg->broker.connect_timeout * 1000);
		o.connect_once = !l->s->cfg->broker.connection_retry_on_startup;
		const config_tls *tls = &l->s->cfg->broker.tls;
		o.tls_ca_file = tls->ca;
		o.tls_cert_file = tls->cert;
		o.tls_key_file = tls->key;
		o.tls_verify_peer = o.tls_verify_hostname = tls->verify != 0;
	}
	int rc = broker_conn_new(&o, &l->conn, err);
	if (rc != 0)
		return rc;
	broker_set_outcome_fn(l->conn, loop_on_outcome, l);
	return 0;
}

static int open_signals(loop *l, warren_error *err)
{
	sigset_t set;
	fill_sigset(&set);
	l->sigfd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
	if (l->sigfd < 0)
		return warren_error_set(err, WARREN_EIO, "signalfd: %s", strerror(errno));
	return 0;
}

/* ---- the turn ------------------------------------------------------------------ */

static void drain_done(loop *l)
{
	for (pool_job *job; (job = pool_take_done(l->pool));)
		loop_on_done(l, job);
}

/* Warm shutdown: basic.cancel every task consumer so no more deliveries
 * come, then give back what was delivered and not started (nack with
 * requeue, in loop_on_done), so another worker can take it now rather than
 * when this connection closes. */
static void stop_consuming(loop *l)
{
	loop_flush_acks(l, true); /* settled work is acked before the cancels */
	for (size_t i = 0; l->consumer_tags && i < l->s->n_queues; i++) {
		warren_error err = {0};
		if (l->consumer_tags[i][0] && broker_cancel(l->conn, l->consumer_tags[i], &err) != 0)
			log_at(CONFIG_LOG_WARNING, NULL, "worker: stop consuming '%s': %s",
			       l->s->queues[i], err.msg);
	}
	loop_drop_limited(l);
	pool_unqueue(l->pool);
}

static void begin_warm(loop *l)
{
	l->draining = true;
	worker_notify("STOPPING=1", NULL);
	if (l->s->shutdown_timeout > 0)
		l->drain_deadline_ns = task_monotonic_ns() + (int64_t)(l->s->shutdown_timeout * 1e9);
	log_at(CONFIG_LOG_WARNING, NULL,
	       "worker: warm shutdown (%zu task(s) running; signal again for a cold one)",
	       l->in_pool);
	stop_consuming(l);
}

static void on_signals(loop *l)
{
	struct signalfd_siginfo si;
	while (read(l->sigfd, &si, sizeof si) == (ssize_t)sizeof si) {
		if (si.ssi_signo == SIGHUP) {
			reload_on_hup(l);
			continue;
		}
		if (si.ssi_signo == SIGQUIT || l->draining) {
			log_at(CONFIG_LOG_WARNING, NULL, "worker: cold shutdown (signal %u)",
			       si.ssi_signo);
			l->cold = true;
			return;
		}
		begin_warm(l);
	}
}

static void on_event(loop *l, broker_event *ev)
{
	switch (ev->type) {
	case BROKER_EVENT_MESSAGE: {
		broker_message *m = ev->msg;
		ev->msg = NULL;
		if (control_owns(l, m))
			control_on_message(l, m); /* pidbox: remote control */
		else
			loop_on_message(l, m);
		break;
	}
	case BROKER_EVENT_CANCELLED:
		log_at(CONFIG_LOG_ERROR, NULL, "consumer of queue '%s' cancelled by the broker",
		       ev->queue ? ev->queue : "?");
		events_consumer_cancelled(l, ev->queue);
		break;
	case BROKER_EVENT_RECONNECTED:
		log_at(CONFIG_LOG_WARNING, NULL, "connection restored to %s (lost: %s)",
		       broker_conn_url(l->conn), ev->reason ? ev->reason : "?");
		metrics_reconnected(l->metrics);
		/* Deliveries of the old connection are void: the broker redelivers
		 * them. What finished while we reconnected is stored first, so a
		 * redelivered copy finds its SUCCESS (consume.c skips it); the
		 * not-started ones leave the pool (their copies run instead);
		 * running ones finish and store their result, and their ack fails. */
		drain_done(l);
		loop_drop_limited(l);
		pool_unqueue(l->pool);
		loop_flush_acks(l, true); /* the generation moved: drops the old acks */
		break;
	}
	broker_event_release(ev);
}

/* Takes the events the broker has for us. Once nothing is left in
 * rabbitmq-c's buffer it stops rather than read the socket again (that read
 * mostly finds nothing: a wasted syscall per turn); poll watches it next. */
static void receive_all(loop *l)
{
	for (int i = 0; i < LOOP_RECEIVE_BUDGET && !l->cold; i++) {
		if (i > 0 && !broker_conn_pending(l->conn))
			return;
		broker_event ev = {0};
		warren_error err = {0};
		int rc = broker_receive(l->conn, 0, &ev, &err);
		if (rc == WARREN_ETIMEOUT)
			return;
		if (rc != 0) {
			log_at(CONFIG_LOG_ERROR, NULL, "connection lost: %s (retrying)", err.msg);
			return;
		}
		on_event(l, &ev);
	}
}

static int poll_timeout_ms(loop *l, int64_t now, int64_t limiter_wake)
{
	int64_t wake = now + (int64_t)LOOP_MAX_WAIT_MS * 1000000;
	int64_t pool_wake = pool_next_deadline_ns(l->pool);
	if (limiter_wake && limiter_wake < wake)
		wake = limiter_wake;
	if (pool_wake && pool_wake < wake)
		wake = pool_wake;
	if (l->drain_deadline_ns && l->drain_deadline_ns < wake)
		wake = l->drain_deadline_ns;
	int64_t events_wake = events_next_deadline_ns(l);
	if (events_wake && events_wake < wake)
		wake = events_wake;
	int64_t acks_wake = acks_deadline_ns(&l->acks);
	if (acks_wake && acks_wake < wake)
		wake = acks_wake;
	if (broker_conn_pending(l->conn))
		return 0;
	int64_t ms = (wake - now + 999999) / 1000000;
	return ms < 0 ? 0 : (int)ms;
}

static void turn(loop *l)
{
	drain_done(l);
	control_tick(l); /* the throttled revoked-ids state file write */
	reload_tick(l);  /* frees configs a reload replaced, once no task uses them */
	int64_t now = task_monotonic_ns();
	int64_t limiter_wake = loop_release_limited(l, now);
	struct pollfd fds[3];
	nfds_t n = 0;
	fds[n++] = (struct pollfd){.fd = l->sigfd, .events = POLLIN};
	fds[n++] = (struct pollfd){.fd = pool_fd(l->pool), .events = POLLIN};
	int bfd = broker_conn_fd(l->conn);
	if (bfd >= 0)
		fds[n++] = (struct pollfd){.fd = bfd, .events = POLLIN};
	/* Batched acks (acks.c): what settled this turn is acked before we
	 * sleep, so the broker can send the next prefetch's worth. */
	loop_flush_acks(l, false);
	int rc = poll(fds, n, poll_timeout_ms(l, now, limiter_wake));
	if (rc > 0 && (fds[0].revents & POLLIN))
		on_signals(l);
	if (l->cold)
		return;
	if (rc > 0 && fds[1].revents)
		pool_tick(l->pool);
	/* The broker is read when poll says so, when frames wait in rabbitmq-c's
	 * buffer, when disconnected (the read reconnects), and at least every
	 * LOOP_MAX_WAIT_MS (rabbitmq-c sends heartbeats inside its reads). Not
	 * on a wake by the pool alone: that read would find nothing (EAGAIN),
	 * one wasted syscall per turn. */
	int64_t after = task_monotonic_ns();
	if (rc == 0 || bfd < 0 || (fds[n - 1].revents && bfd >= 0) ||
	    broker_conn_pending(l->conn) ||
	    after - l->received_ns >= (int64_t)LOOP_MAX_WAIT_MS * 1000000) {
		l->received_ns = after;
		receive_all(l);
	}
	drain_done(l);
	events_tick(l); /* heartbeat, task.multi flush, metrics gauges */
}

static bool drained(loop *l)
{
	return l->in_pool == 0 && l->afters == NULL;
}

/* Past the grace: take back what never started and give up on the rest. */
static void force_close(loop *l)
{
	warren_error err = {0};
	if (pool_close(l->pool, 0, &err) != 0) {
		log_at(CONFIG_LOG_WARNING, NULL, "worker: grace over: %s", err.msg);
		l->cold = true;
	}
	drain_done(l);
}

static int run(loop *l)
{
	while (!l->cold) {
		turn(l);
		if (!l->draining)
			continue;
		if (drained(l))
			return LOOP_WARM;
		if (l->drain_deadline_ns && task_monotonic_ns() >= l->drain_deadline_ns) {
			force_close(l);
			if (!l->cold && drained(l))
				return LOOP_WARM;
			l->cold = true;
		}
	}
	return LOOP_COLD;
}

static void free_limiters(loop *l)
{
	loop_drop_limited(l);
	for (loop_limiter *q = l->limiters, *next; q; q = next) {
		next = q->next;
		free(q);
	}
	l->limiters = NULL;
}

static void free_afters(loop *l)
{
	for (loop_after *a = l->afters, *next; a; a = next) {
		next = a->next;
		broker_message_free(a->msg);
		loop_task_free(a->task);
		schema_result_release(&a->result);
		free(a);
	}
	l->afters = NULL;
}

/* Warm end: results are out, acks written; flush confirms and close. */
static void close_warm(loop *l)
{
	warren_error err = {0};
	loop_flush_acks(l, true);
	if (broker_publish_flush(l->conn, 5000, &err) != 0)
		log_at(CONFIG_LOG_WARNING, NULL, "worker: flushing publishes: %s", err.msg);
	pool_close(l->pool, 0, NULL);
	drain_done(l);
	loop_flush_acks(l, true);
	pool_free(l->pool);
	l->pool = NULL;
}

int loop_run(const loop_settings *s, warren_error *err)
{
	loop l = {.s = s, .sigfd = -1, .seed = (unsigned)getpid() ^ (unsigned)time(NULL)};
	/* Batched acks: flushed at half the prefetch, so the broker always has
	 * room to send more while the rest are acked; held ones (behind a long
	 * task) wait at most 50 ms. */
	long prefetch = (long)s->pool.concurrency * s->prefetch_multiplier;
	acks_init(&l.acks, prefetch > 0 ? (size_t)(prefetch + 1) / 2 : 64, 50 * 1000000LL);
	int rc = open_signals(&l, err);
	if (rc == 0)
		rc = events_metrics_start(&l, err); /* /healthz says 503 until consuming */
	if (rc == 0)
		rc = open_broker(&l, err);
	if (rc == 0)
		rc = open_backend(&l, err);
	if (rc == 0)
		rc = declare(&l, err);
	if (rc == 0)
		rc = control_open(&l, err); /* pidbox, revokes, mingle: before any task */
	if (rc == 0)
		rc = pool_new(&s->pool, s->reg, &l.pool, err);
	if (rc == 0)
		rc = consume(&l, err);
	if (rc == 0)
		rc = events_start(&l, err); /* worker-online */
	if (rc != 0)
		goto out_close;
	log_at(CONFIG_LOG_WARNING, NULL, "worker %s ready: %zu queue(s), pool %s x%d, broker %s",
	       s->hostname, s->n_queues, s->pool.kind == POOL_PREFORK ? "prefork" : "threads",
	       s->pool.concurrency, broker_conn_url(l.conn));
	warren_error nerr = {0}; /* systemd's Type=notify: consuming now (notify.c) */
	if (worker_notify("READY=1", &nerr) != 0)
		log_at(CONFIG_LOG_WARNING, NULL, "worker: %s", nerr.msg);
	rc = run(&l);
	if (rc == LOOP_COLD) {
		/* Handlers may still run: leave the pool and the registry alone;
		 * closing the socket returns every unacked task to its queue.
		 * What is settled is acked first, so it does not run twice. */
		loop_flush_acks(&l, true);
		control_close(&l);
		events_stop(&l);
		metrics_free(l.metrics);
		broker_conn_free(l.conn);
		acks_release(&l.acks);
		close(l.sigfd);
		return LOOP_COLD;
	}
	events_stop(&l); /* worker-offline, before the last flush */
	close_warm(&l);
	log_at(CONFIG_LOG_WARNING, NULL, "worker: stopped after %llu task(s)",
	       (unsigned long long)l.processed);
out_close:
	free_limiters(&l);
	free_afters(&l);
	canvas_free(&l);
	control_close(&l);
	pool_free(l.pool);
	metrics_free(l.metrics);
	broker_conn_free(l.conn);
	backend_free(l.results);
	free(l.consumer_tags);
	reload_free(&l);
	acks_release(&l.acks);
	if (l.sigfd >= 0)
		close(l.sigfd);
	return rc;
}
