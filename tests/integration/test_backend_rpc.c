/* tests/integration/test_backend_rpc.c - the rpc result backend
 * (backends/rpc.c) against the real RabbitMQ of scripts/with-services
 * (WARREN_TEST_BROKER): a "worker" connection stores results that a
 * "client" connection waits for: one and many, out of order, the latest
 * state per task, read-once, deadlines with the pending count, a reply
 * queue that does not exist (RETURNED), the properties on the wire, the
 * reply queue's declaration, both ways of learning a store's confirm, junk
 * on the reply queue, and a reply queue deleted under a waiting client.
 * Every test uses its own connections and task ids (tests run in parallel). */
#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "backends/backend.h"
#include "broker_support.h"
#include "support.h"

/* ---- helpers ---- */

static void ok(int rc, const warren_error *err)
{
	cr_assert_eq(rc, 0, "rc %d: %s", rc, err->msg);
}

static void unique_id(char *buf, size_t cap, const char *tag)
{
	static unsigned counter;
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	snprintf(buf, cap, "rpc-%s-%d-%ld%09ld-%u", tag, (int)getpid(), (long)ts.tv_sec,
		 ts.tv_nsec, counter++);
}

static backend *open_rpc(broker_conn *conn, bool persistent)
{
	warren_error err = {0};
	backend_options o;
	backend_options_default(&o);
	o.conn = conn;
	o.result_persistent = persistent;
	backend *b = NULL;
	ok(backend_open("rpc://", &o, &b, &err), &err);
	cr_assert_str_eq(backend_name(b), "rpc");
	return b;
}

/* A worker side: its own connection whose outcome callback is the
 * backend's, as a worker loop would forward them. */
typedef struct side {
	broker_conn *conn;
	backend *b;
} side;

static side worker_side(void)
{
	side w = {.conn = broker_test_connect()};
	w.b = open_rpc(w.conn, false);
	broker_set_outcome_fn(w.conn, backend_outcome_fn, w.b);
	return w;
}

static side client_side(void)
{
	warren_error err = {0};
	side c = {.conn = broker_test_connect()};
	c.b = open_rpc(c.conn, false);
	ok(backend_before_send(c.b, &err), &err);
	return c;
}

static void side_close(side *s)
{
	backend_free(s->b);
	broker_conn_free(s->conn);
}

/* Stores state for id to reply_to: SUCCESS/STARTED carry `value` (one
 * packed msgpack byte), FAILURE a ValueError. Returns store's code. */
static int store(backend *b, const char *id, schema_state state, char value,
		 const char *reply_to, warren_error *err)
{
	schema_result r;
	schema_result_init(&r);
	ok(schema_result_set_task_id(&r, id, err), err);
	if (state == SCHEMA_STATE_FAILURE)
		ok(schema_result_set_exception(&r, state, "ValueError", "builtins", "boom", err),
		   err);
	else if (state == SCHEMA_STATE_STARTED)
		ok(schema_result_set_started(&r, 42, "host", err), err);
	else
		ok(schema_result_set_success(&r, &value, 1, err), err);
	backend_request req = {.reply_to = reply_to, .correlation_id = id};
	int rc = backend_store(b, &r, &req, err);
	schema_result_release(&r);
	return rc;
}

static void store_ok(backend *b, const char *id, schema_state state, char value,
		     const char *reply_to)
{
	warren_error err = {0};
	ok(store(b, id, state, value, reply_to, &err), &err);
}

static void expect_success(const schema_result *r, const char *id, char value)
{
	cr_expect_eq(r->state, SCHEMA_STATE_SUCCESS, "%s: %s", id, schema_state_name(r->state));
	cr_expect_str_eq(r->task_id, id);
	cr_assert_eq(r->result_len, 1);
	cr_expect_eq(r->result_mp[0], value);
}

static void expect_pending(backend *b, const char *id)
{
	warren_error err = {0};
	schema_result r;
	schema_result_init(&r);
	ok(backend_get(b, id, &r, &err), &err);
	cr_expect_eq(r.state, SCHEMA_STATE_PENDING, "%s: %s", id, schema_state_name(r.state));
	cr_expect_str_eq(r.task_id, id);
	schema_result_release(&r);
}

/* Records the order of on_ready calls. */
typedef struct seen {
	size_t index[8];
	size_t n;
} seen;

static int record_index(void *arg, size_t index, schema_result *r)
{
	seen *s = arg;
	cr_assert_lt(s->n, 8);
	cr_expect_eq(r->state, SCHEMA_STATE_SUCCESS);
	s->index[s->n++] = index;
	return 0;
}

/* ---- storing and waiting ---- */

Test(integration_backend_rpc, one_result_reaches_the_waiting_client)
{
	warren_error err = {0};
	char id[96];
	unique_id(id, sizeof id, "one");
	side w = worker_side(), c = client_side();
	store_ok(w.b, id, SCHEMA_STATE_SUCCESS, 5, backend_reply_to(c.b));

	const char *ids[] = {id};
	schema_result r;
	schema_result_init(&r);
	size_t pending = 9;
	ok(backend_wait_results(c.b, ids, 1, 5000, &r, &pending, &err), &err);
	cr_expect_eq(pending, 0);
	expect_success(&r, id, 5);
	schema_result_release(&r);
	expect_pending(c.b, id); /* read once */
	side_close(&w);
	side_close(&c);
}

Test(integration_backend_rpc, a_waiting_client_is_woken_by_a_later_store)
{
	warren_error err = {0};
	char id[96];
	unique_id(id, sizeof id, "late");
	side c = client_side();
	const char *oid = backend_reply_to(c.b);
	pid_t child = fork();
	cr_assert_neq(child, -1);
	if (child == 0) {
		/* Stores once the client consumes its reply queue. */
		side w = worker_side();
		uint32_t msgs = 0, consumers = 0;
		for (int i = 0; i < 2000 && consumers == 0; i++) {
			warren_error e = {0};
			if (broker_queue_inspect(w.conn, oid, &msgs, &consumers, &e))
				_exit(3);
			if (!consumers)
				nanosleep(&(struct timespec){0, 5000000}, NULL);
		}
		int rc = consumers ? store(w.b, id, SCHEMA_STATE_SUCCESS, 7, oid, &err) : -1;
		side_close(&w);
		_exit(rc == 0 ? 0 : 4);
	}
	const char *ids[] = {id};
	schema_result r;
	schema_result_init(&r);
	ok(backend_wait_results(c.b, ids, 1, 15000, &r, NULL, &err), &err);
	expect_success(&r, id, 7);
	schema_result_release(&r);
	int status;
	cr_assert_eq(waitpid(child, &status, 0), child);
	cr_expect(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child status %d", status);
	side_close(&c);
}

Test(integration_backend_rpc, many_results_out_of_order)
{
	warren_error err = {0};
	char a[96], b[96], c3[96];
	unique_id(a, sizeof a, "a");
	unique_id(b, sizeof b, "b");
	unique_id(c3, sizeof c3, "c");
	side w = worker_side(), c = client_side();
	const char *oid = backend_reply_to(c.b);
	store_ok(w.b, a, SCHEMA_STATE_SUCCESS, 1, oid);
	store_ok(w.b, b, SCHEMA_STATE_SUCCESS, 2, oid);
	store_ok(w.b, c3, SCHEMA_STATE_SUCCESS, 3, oid);

	/* B first although A's reply came first: A and C stay buffered. */
	const char *only_b[] = {b};
	schema_result r;
	schema_result_init(&r);
	ok(backend_wait_results(c.b, only_b, 1, 5000, &r, NULL, &err), &err);
	expect_success(&r, b, 2);

	const char *rest[] = {c3, a};
	schema_result two[2];
	schema_result_init(&two[0]);
	schema_result_init(&two[1]);
	ok(backend_wait_results(c.b, rest, 2, 5000, two, NULL, &err), &err);
	expect_success(&two[0], c3, 3);
	expect_success(&two[1], a, 1);
	expect_pending(c.b, b);
	schema_result_release(&r);
	schema_result_release(&two[0]);
	schema_result_release(&two[1]);
	side_close(&w);
	side_close(&c);
}

Test(integration_backend_rpc, an_id_given_twice_is_reported_at_each_position)
{
	warren_error err = {0};
	char a[96], b[96];
	unique_id(a, sizeof a, "dup-a");
	unique_id(b, sizeof b, "dup-b");
	side w = worker_side(), c = client_side();
	store_ok(w.b, b, SCHEMA_STATE_SUCCESS, 2, backend_reply_to(c.b));
	store_ok(w.b, a, SCHEMA_STATE_SUCCESS, 1, backend_reply_to(c.b));
	const char *ids[] = {a, b, a};
	seen s = {0};
	ok(backend_wait(c.b, ids, 3, 5000, record_index, &s, &err), &err);
	cr_assert_eq(s.n, 3);
	bool at[3] = {0};
	for (size_t i = 0; i < s.n; i++)
		at[s.index[i]] = true;
	cr_expect(at[0] && at[1] && at[2]);
	side_close(&w);
	side_close(&c);
}

/* Polls backend_get until id shows state (5 s at most); r receives it. */
static void get_until(backend *b, const char *id, schema_state state, schema_result *r)
{
	warren_error err = {0};
	for (int i = 0; i < 500; i++) {
		ok(backend_get(b, id, r, &err), &err);
		if (r->state == state)
			return;
		nanosleep(&(struct timespec){0, 10000000}, NULL);
	}
	cr_assert_fail("%s: still %s, expected %s", id, schema_state_name(r->state),
		       schema_state_name(state));
}

Test(integration_backend_rpc, get_gives_the_latest_state_and_a_ready_one_once)
{
	warren_error err = {0};
	char id[96];
	unique_id(id, sizeof id, "latest");
	side w = worker_side(), c = client_side();
	const char *oid = backend_reply_to(c.b);
	store_ok(w.b, id, SCHEMA_STATE_STARTED, 0, oid);

	schema_result r;
	schema_result_init(&r);
	get_until(c.b, id, SCHEMA_STATE_STARTED, &r);
	ok(backend_get(c.b, id, &r, &err), &err); /* not ready: kept */
	cr_expect_eq(r.state, SCHEMA_STATE_STARTED, "%s", schema_state_name(r.state));

	store_ok(w.b, id, SCHEMA_STATE_FAILURE, 0, oid);
	const char *ids[] = {id};
	ok(backend_wait_results(c.b, ids, 1, 5000, &r, NULL, &err), &err);
	cr_expect_eq(r.state, SCHEMA_STATE_FAILURE, "%s", schema_state_name(r.state));
	schema_exc exc;
	ok(schema_exc_read(r.result_mp, r.result_len, &exc, &err), &err);
	cr_expect_str_eq(exc.type, "ValueError");
	cr_expect_str_eq(exc.message, "boom");
	schema_exc_release(&exc);
	schema_result_release(&r);
	expect_pending(c.b, id);
	side_close(&w);
	side_close(&c);
}

Test(integration_backend_rpc, a_ready_state_is_not_overwritten_by_a_late_one)
{
	warren_error err = {0};
	char id[96], nobody[96];
	unique_id(id, sizeof id, "final");
	unique_id(nobody, sizeof nobody, "nobody");
	side w = worker_side(), c = client_side();
	const char *oid = backend_reply_to(c.b);
	/* All three wait in the queue: the client consumes from its first wait. */
	store_ok(w.b, id, SCHEMA_STATE_STARTED, 0, oid);
	store_ok(w.b, id, SCHEMA_STATE_SUCCESS, 9, oid);
	store_ok(w.b, id, SCHEMA_STATE_STARTED, 0, oid);
	const char *other[] = {nobody};
	seen s = {0};
	cr_assert_eq(backend_wait(c.b, other, 1, 500, record_index, &s, &err), WARREN_ETIMEOUT,
		     "%s", err.msg);
	cr_expect_eq(s.n, 0);
	schema_result r;
	schema_result_init(&r);
	ok(backend_get(c.b, id, &r, &err), &err);
	expect_success(&r, id, 9);
	schema_result_release(&r);
	side_close(&w);
	side_close(&c);
}

Test(integration_backend_rpc, a_deadline_reports_how_many_are_pending)
{
	warren_error err = {0};
	char a[96], x[96], y[96];
	unique_id(a, sizeof a, "dl-a");
	unique_id(x, sizeof x, "dl-x");
	unique_id(y, sizeof y, "dl-y");
	side w = worker_side(), c = client_side();
	store_ok(w.b, a, SCHEMA_STATE_SUCCESS, 4, backend_reply_to(c.b));

	const char *ids[] = {x, a, y};
	schema_result r[3];
	for (int i = 0; i < 3; i++)
		schema_result_init(&r[i]);
	size_t pending = 0;
	struct timespec t0, t1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	cr_assert_eq(backend_wait_results(c.b, ids, 3, 300, r, &pending, &err), WARREN_ETIMEOUT,
		     "%s", err.msg);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	long ms = (t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000;
	cr_expect(ms >= 290 && ms < 2000, "waited %ld ms", ms);
	cr_expect_eq(pending, 2);
	cr_expect_str_eq(err.msg, "result backend 'rpc://': 2 of 3 results still pending "
				  "after 300 ms");
	expect_success(&r[1], a, 4);
	cr_expect_eq(r[0].state, SCHEMA_STATE_PENDING);

	warren_error_clear(&err);
	cr_expect_eq(backend_wait_results(c.b, ids, 1, 0, r, &pending, &err), WARREN_ETIMEOUT);
	cr_expect_eq(pending, 1);
	for (int i = 0; i < 3; i++)
		schema_result_release(&r[i]);
	side_close(&w);
	side_close(&c);
}

/* ---- the worker side ---- */

Test(integration_backend_rpc, a_missing_reply_queue_is_returned_not_failed)
{
	warren_error err = {0};
	char id[96];
	unique_id(id, sizeof id, "gone");
	side w = worker_side();
	const char *gone = broker_test_name(0, "rpc.gone");
	cr_assert_eq(store(w.b, id, SCHEMA_STATE_SUCCESS, 1, gone, &err), WARREN_ENOTFOUND,
		     "%s", err.msg);
	cr_expect(strstr(err.msg, "does not exist"), "%s", err.msg);
	cr_expect(strstr(err.msg, gone), "%s", err.msg);
	/* the connection and the backend go on */
	side c = client_side();
	warren_error_clear(&err);
	ok(store(w.b, id, SCHEMA_STATE_SUCCESS, 1, backend_reply_to(c.b), &err), &err);
	side_close(&c);
	side_close(&w);
}

Test(integration_backend_rpc, no_reply_to_sends_nothing)
{
	warren_error err = {0};
	char id[96];
	unique_id(id, sizeof id, "noreply");
	side w = worker_side();
	schema_result r;
	schema_result_init(&r);
	ok(schema_result_set_task_id(&r, id, &err), &err);
	ok(schema_result_set_success(&r, "\x01", 1, &err), &err);
	ok(backend_store(w.b, &r, NULL, &err), &err);
	backend_request empty = {.reply_to = ""};
	ok(backend_store(w.b, &r, &empty, &err), &err);
	cr_expect_eq(broker_publish_unconfirmed(w.conn), 0);
	schema_result_release(&r);
	side_close(&w);
}

/* Consumes queue q (declared here) on conn and returns the next message. */
static broker_message *capture(broker_conn *conn, const char *q, backend *b, const char *id,
			       const char *correlation_id)
{
	warren_error err = {0};
	schema_result r;
	schema_result_init(&r);
	ok(schema_result_set_task_id(&r, id, &err), &err);
	ok(schema_result_set_success(&r, "\x05", 1, &err), &err);
	backend_request req = {.reply_to = q, .correlation_id = correlation_id};
	ok(backend_store(b, &r, &req, &err), &err);
	schema_result_release(&r);
	return broker_test_receive(conn, 5000);
}

Test(integration_backend_rpc, the_reply_carries_celerys_properties)
{
	warren_error err = {0};
	char id[96];
	unique_id(id, sizeof id, "props");
	side w = worker_side();
	broker_conn *raw = broker_test_connect();
	const char *q = broker_test_name(1, "rpc.props");
	broker_queue queue;
	broker_queue_init(&queue, q);
	queue.durable = false;
	queue.auto_delete = true;
	ok(broker_declare(raw, &(broker_topology){.queues = &queue, .n_queues = 1}, &err), &err);
	ok(broker_consume(raw, q, 0, true, NULL, 0, &err), &err);

	broker_message *m = capture(raw, q, w.b, id, "corr-1");
	cr_expect_str_eq(m->exchange, "");
	cr_expect_str_eq(m->routing_key, q);
	cr_expect_str_eq(m->correlation_id, "corr-1");
	cr_expect_str_eq(m->content_type, "application/x-msgpack");
	cr_expect_str_eq(m->content_encoding, "binary");
	cr_expect_eq(m->delivery_mode, 1);
	cr_expect_eq(m->priority, 0);
	cr_assert_not_null(m->headers, "headers {} expected");
	cr_expect_eq(m->headers_len, 1);
	cr_expect_eq(((unsigned char *)m->headers)[0], 0x80);
	cr_expect_null(m->reply_to);
	/* the body is the rpc layout, byte for byte */
	schema_result r;
	schema_result_init(&r);
	ok(schema_result_set_task_id(&r, id, &err), &err);
	ok(schema_result_set_success(&r, "\x05", 1, &err), &err);
	char *want;
	size_t want_len;
	ok(schema_result_encode_rpc(&r, &want, &want_len, &err), &err);
	cr_assert_eq(m->body_len, want_len);
	cr_expect_eq(memcmp(m->body, want, want_len), 0);
	free(want);
	schema_result_release(&r);
	broker_message_free(m);

	/* no correlation id: the task id; result_persistent: delivery mode 2 */
	broker_conn *pconn = broker_test_connect();
	backend *persistent = open_rpc(pconn, true);
	broker_set_outcome_fn(pconn, backend_outcome_fn, persistent);
	m = capture(raw, q, persistent, id, NULL);
	cr_expect_str_eq(m->correlation_id, id);
	cr_expect_eq(m->delivery_mode, 2);
	broker_message_free(m);
	backend_free(persistent);
	broker_conn_free(pconn);
	broker_conn_free(raw);
	side_close(&w);
}

Test(integration_backend_rpc, the_reply_queue_is_declared_as_celerys)
{
	warren_error err = {0};
	side c = client_side();
	const char *oid = backend_reply_to(c.b);
	cr_assert_eq(strlen(oid), 36, "%s", oid);
	cr_expect_eq(oid[14], '4', "uuid4 %s", oid);
	broker_conn *other = broker_test_connect();
	broker_queue q;
	broker_queue_init(&q, oid);
	q.durable = false;
	q.auto_delete = true;
	q.expires_ms = 86400000;
	/* The same declaration is equivalent; another x-expires is not. */
	ok(broker_declare(other, &(broker_topology){.queues = &q, .n_queues = 1}, &err), &err);
	q.expires_ms = 1000;
	cr_expect_eq(broker_declare(other, &(broker_topology){.queues = &q, .n_queues = 1}, &err),
		     WARREN_EBROKER);
	cr_expect(strstr(err.msg, "x-expires"), "%s", err.msg);
	warren_error_clear(&err);
	uint32_t msgs = 9, consumers = 9;
	ok(broker_queue_inspect(other, oid, &msgs, &consumers, &err), &err);
	cr_expect_eq(consumers, 0, "consumed only from the first wait or get");
	broker_conn_free(other);
	side_close(&c);
}

Test(integration_backend_rpc, async_confirm_reports_to_the_owners_callback)
{
	warren_error err = {0};
	char id[96];
	unique_id(id, sizeof id, "async");
	side c = client_side();
	broker_conn *conn = broker_test_connect();
	backend *b = open_rpc(conn, false);
	broker_test_outcomes *seen = malloc(sizeof *seen);
	broker_test_outcomes_init(seen);
	broker_set_outcome_fn(conn, broker_test_record, seen);

	schema_result r;
	schema_result_init(&r);
	ok(schema_result_set_task_id(&r, id, &err), &err);
	ok(schema_result_set_success(&r, "\x03", 1, &err), &err);
	backend_request req = {.reply_to = backend_reply_to(c.b), .async_confirm = true, .cookie = 7};
	ok(backend_store(b, &r, &req, &err), &err);
	req.reply_to = broker_test_name(0, "rpc.async.gone");
	req.cookie = 8;
	ok(backend_store(b, &r, &req, &err), &err);
	ok(broker_publish_flush(conn, 5000, &err), &err);
	cr_expect_eq(seen->by_cookie[7], BROKER_CONFIRMED);
	cr_expect_eq(seen->by_cookie[8], BROKER_RETURNED);

	/* Without async_confirm the verdict must reach backend_outcome. */
	req = (backend_request){.reply_to = backend_reply_to(c.b)};
	cr_expect_eq(backend_store(b, &r, &req, &err), WARREN_EINVAL);
	cr_expect(strstr(err.msg, "backend_outcome"), "%s", err.msg);

	const char *ids[] = {id};
	warren_error_clear(&err);
	ok(backend_wait_results(c.b, ids, 1, 5000, &r, NULL, &err), &err);
	expect_success(&r, id, 3);
	schema_result_release(&r);
	free(seen);
	backend_free(b);
	broker_conn_free(conn);
	side_close(&c);
}

typedef struct two_backends {
	backend *first, *second;
	size_t unclaimed;
} two_backends;

static void forward_to_both(void *arg, uint64_t cookie, broker_outcome o, const char *reason)
{
	two_backends *t = arg;
	if (!backend_outcome(t->first, cookie, o, reason) &&
	    !backend_outcome(t->second, cookie, o, reason))
		t->unclaimed++;
}

Test(integration_backend_rpc, backends_sharing_a_connection_claim_only_their_cookies)
{
	warren_error err = {0};
	char id[96];
	unique_id(id, sizeof id, "cookie");
	broker_conn *conn = broker_test_connect();
	two_backends t = {.first = open_rpc(conn, false), .second = open_rpc(conn, false)};
	broker_set_outcome_fn(conn, forward_to_both, &t);
	cr_expect_not(backend_outcome(t.first, 7, BROKER_CONFIRMED, NULL));
	cr_expect_not(backend_outcome(NULL, BACKEND_COOKIE_TAG | 1, BROKER_CONFIRMED, NULL));

	/* If first took second's verdict, second would never see it (EINVAL). */
	cr_expect_eq(store(t.second, id, SCHEMA_STATE_SUCCESS, 1, "warren.test.nowhere", &err),
		     WARREN_ENOTFOUND, "%s", err.msg);
	side c = client_side();
	warren_error_clear(&err);
	ok(store(t.first, id, SCHEMA_STATE_SUCCESS, 1, backend_reply_to(c.b), &err), &err);
	warren_error_clear(&err);
	ok(store(t.second, id, SCHEMA_STATE_SUCCESS, 1, backend_reply_to(c.b), &err), &err);

	/* A plain publish's cookie is nobody's. */
	ok(broker_publish(conn, "", backend_reply_to(c.b), NULL, "x", 1, 5, &err), &err);
	ok(broker_publish_flush(conn, 5000, &err), &err);
	cr_expect_eq(t.unclaimed, 1);
	backend_free(t.first);
	backend_free(t.second);
	broker_conn_free(conn);
	side_close(&c);
}

/* ---- junk and trouble on the reply queue ---- */

static void publish_raw(broker_conn *conn, const char *q, const char *correlation_id,
			const char *content_type, const char *body, size_t len)
{
	warren_error err = {0};
	broker_props p = {.content_type = content_type, .correlation_id = correlation_id,
			  .priority = BROKER_UNSET};
	ok(broker_publish(conn, "", q, &p, body, len, 1, &err), &err);
	ok(broker_publish_flush(conn, 5000, &err), &err);
}

Test(integration_backend_rpc, junk_fails_only_the_wait_it_names)
{
	warren_error err = {0};
	char id[96], other[96];
	unique_id(id, sizeof id, "junk");
	unique_id(other, sizeof other, "junk-other");
	side w = worker_side(), c = client_side();
	broker_conn *raw = broker_test_connect();
	const char *oid = backend_reply_to(c.b);
	publish_raw(raw, oid, other, "application/x-msgpack", "\xc1", 1);
	publish_raw(raw, oid, other, "application/json", "{}", 2);
	store_ok(w.b, id, SCHEMA_STATE_SUCCESS, 6, oid);
	const char *ids[] = {id};
	schema_result r;
	schema_result_init(&r);
	ok(backend_wait_results(c.b, ids, 1, 5000, &r, NULL, &err), &err);
	expect_success(&r, id, 6);

	publish_raw(raw, oid, id, "application/json", "{}", 2);
	cr_expect_eq(backend_wait_results(c.b, ids, 1, 5000, &r, NULL, &err), WARREN_EDECODE);
	cr_expect(strstr(err.msg, id), "%s", err.msg);
	cr_expect(strstr(err.msg, "application/json"), "%s", err.msg);
	warren_error_clear(&err);
	publish_raw(raw, oid, id, "application/x-msgpack", "\x93\x01\x02\x03", 4);
	cr_expect_eq(backend_wait_results(c.b, ids, 1, 5000, &r, NULL, &err), WARREN_EDECODE);
	cr_expect(strstr(err.msg, id), "%s", err.msg);
	schema_result_release(&r);
	broker_conn_free(raw);
	side_close(&w);
	side_close(&c);
}

Test(integration_backend_rpc, a_deleted_reply_queue_ends_the_wait)
{
	warren_error err = {0};
	char id[96];
	unique_id(id, sizeof id, "deleted");
	side w = worker_side(), c = client_side();
	const char *oid = backend_reply_to(c.b);
	expect_pending(c.b, id); /* consuming now */
	broker_test_delete_queue(oid);
	const char *ids[] = {id};
	schema_result r;
	schema_result_init(&r);
	cr_assert_eq(backend_wait_results(c.b, ids, 1, 5000, &r, NULL, &err), WARREN_EBACKEND,
		     "%s", err.msg);
	cr_expect(strstr(err.msg, "was deleted"), "%s", err.msg);
	warren_error_clear(&err);
	cr_expect_eq(store(w.b, id, SCHEMA_STATE_SUCCESS, 1, oid, &err), WARREN_ENOTFOUND);

	/* Declared again before the next send, consumed again by the next wait. */
	warren_error_clear(&err);
	ok(backend_before_send(c.b, &err), &err);
	store_ok(w.b, id, SCHEMA_STATE_SUCCESS, 8, oid);
	ok(backend_wait_results(c.b, ids, 1, 5000, &r, NULL, &err), &err);
	expect_success(&r, id, 8);
	schema_result_release(&r);
	side_close(&w);
	side_close(&c);
}

Test(integration_backend_rpc, forget_drops_a_buffered_reply)
{
	warren_error err = {0};
	char id[96];
	unique_id(id, sizeof id, "forget");
	side w = worker_side(), c = client_side();
	store_ok(w.b, id, SCHEMA_STATE_STARTED, 0, backend_reply_to(c.b));
	schema_result r;
	schema_result_init(&r);
	for (int i = 0; i < 500 && r.state != SCHEMA_STATE_STARTED; i++) {
		ok(backend_get(c.b, id, &r, &err), &err);
		if (r.state != SCHEMA_STATE_STARTED)
			nanosleep(&(struct timespec){0, 10000000}, NULL);
	}
	cr_expect_eq(r.state, SCHEMA_STATE_STARTED);
	ok(backend_forget(c.b, id, &err), &err);
	expect_pending(c.b, id);
	schema_result_release(&r);
	side_close(&w);
	side_close(&c);
}

Test(integration_backend_rpc, open_needs_a_connection)
{
	warren_error err = {0};
	backend *b = (backend *)1;
	cr_assert_eq(backend_open("rpc://", NULL, &b, &err), WARREN_EINVAL);
	cr_expect_null(b);
	cr_expect_str_eq(err.msg, "result backend 'rpc://': rpc backend needs a broker "
				  "connection: set backend_options.conn");
	cr_expect_null(backend_reply_to(NULL));
}
