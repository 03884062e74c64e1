/* tests/interop/test_backend_rpc_celery.c - warren's rpc result backend
 * (backends/rpc.c) and Celery 5.2's, on the real RabbitMQ of
 * scripts/with-services (WARREN_TEST_BROKER), each reading what the other
 * sent:
 *  - a Python Celery client (tests/interop/backend_rpc_celery.py) sends a
 *    task to a queue nobody else consumes; this test plays the worker:
 *    consumes it, decodes it, and stores the result with warren's backend to
 *    the message's reply_to/correlation_id; Python's AsyncResult.get()
 *    returns it (or raises the ValueError warren stored);
 *  - warren's client sends tasks (schema_task_encode, reply_to = its reply
 *    queue) to a real `celery worker` with the rpc backend, and waits for
 *    math.add's 5 and test.fail's ValueError.
 * The Celery worker is started by the test, waited for by its consumer
 * count on the queue (no sleeps), and stopped in .fini even on failure; its
 * log is left in $(BUILD)/tests/celery-rpc-worker-<pid>.log. */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
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

#define HELPER WARREN_SOURCE_DIR "/tests/interop/backend_rpc_celery.py"
#define INTEROP_DIR WARREN_SOURCE_DIR "/tests/interop"

static void ok(int rc, const warren_error *err)
{
	cr_assert_eq(rc, 0, "rc %d: %s", rc, err->msg);
}

static void nap_ms(long ms)
{
	struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};
	nanosleep(&ts, NULL);
}

/* A durable classic queue, as `celery worker -Q name` declares it. */
static void declare_task_queue(broker_conn *conn, const char *name)
{
	warren_error err = {0};
	broker_queue q;
	broker_queue_init(&q, name);
	ok(broker_declare(conn, &(broker_topology){.queues = &q, .n_queues = 1}, &err), &err);
}

static backend *open_rpc(broker_conn *conn)
{
	warren_error err = {0};
	backend_options o;
	backend_options_default(&o);
	o.conn = conn;
	backend *b = NULL;
	ok(backend_open("rpc://", &o, &b, &err), &err);
	return b;
}

/* ---- Python's client, warren as the worker ---- */

static FILE *helper_call(const char *task, const char *queue, const char *args,
			 const char *kwargs)
{
	char cmd[1024];
	support_service_url("WARREN_TEST_BROKER"); /* fails the test when unset */
	snprintf(cmd, sizeof cmd, "/usr/bin/python3 %s call %s %s 10 '%s' '%s'", HELPER, task,
		 queue, args, kwargs);
	FILE *p = popen(cmd, "r");
	cr_assert_not_null(p, "popen %s", cmd);
	return p;
}

static json_t *helper_json(FILE *p)
{
	json_error_t jerr;
	json_t *doc = json_loadf(p, 0, &jerr);
	int status = pclose(p);
	cr_assert_eq(status, 0, "%s exited with status %d (2: no Celery)", HELPER, status);
	cr_assert_not_null(doc, "helper output is not JSON: %s", jerr.text);
	return doc;
}

static const char *jstr(json_t *obj, const char *key)
{
	json_t *v = json_object_get(obj, key);
	cr_assert(json_is_string(v), "\"%s\" is not a string", key);
	return json_string_value(v);
}

/* Receives the task Python sent to queue and decodes it; the caller frees
 * both. */
static schema_task_msg *receive_task(broker_conn *conn, broker_message **out)
{
	warren_error err = {0};
	broker_message *m = broker_test_receive(conn, 15000);
	schema_task_props props = {
		.correlation_id = m->correlation_id,
		.content_type = m->content_type,
		.content_encoding = m->content_encoding,
		.reply_to = m->reply_to,
		.expiration = m->expiration,
		.has_priority = m->priority != BROKER_UNSET,
		.priority = m->priority != BROKER_UNSET ? (uint8_t)m->priority : 0,
		.has_delivery_mode = m->delivery_mode != 0,
		.delivery_mode = (uint8_t)m->delivery_mode,
	};
	schema_limits lim;
	schema_limits_default(&lim);
	schema_task_msg *task = NULL;
	ok(schema_task_decode(&props, m->headers, m->headers_len, m->body, m->body_len, &lim,
			      &task, &err), &err);
	*out = m;
	return task;
}

/* Stores r for task as a warren worker would: to its reply_to, with its
 * correlation id, confirmed. */
static void reply(backend *b, const schema_task_msg *task, schema_result *r)
{
	warren_error err = {0};
	cr_assert(task->props.reply_to && *task->props.reply_to, "Celery sent no reply_to");
	ok(schema_result_set_task_id(r, task->id, &err), &err);
	backend_request req = {.reply_to = task->props.reply_to,
			       .correlation_id = task->props.correlation_id};
	ok(backend_store(b, r, &req, &err), &err);
}

typedef struct worker_side {
	broker_conn *conn;
	backend *b;
	const char *queue;
} worker_side;

static worker_side worker_side_open(void)
{
	warren_error err = {0};
	worker_side w = {.conn = broker_test_connect(), .queue = broker_test_name(0, "rpc.py2c")};
	w.b = open_rpc(w.conn);
	broker_set_outcome_fn(w.conn, backend_outcome_fn, w.b);
	declare_task_queue(w.conn, w.queue);
	ok(broker_consume(w.conn, w.queue, 1, false, NULL, 0, &err), &err);
	return w;
}

static void worker_side_close(worker_side *w)
{
	backend_free(w->b);
	broker_conn_free(w->conn);
	broker_test_delete_queue(w->queue);
}

Test(interop_backend_rpc, python_gets_the_result_warren_stored, .timeout = 60)
{
	warren_error err = {0};
	worker_side w = worker_side_open();
	FILE *p = helper_call("test.echo", w.queue, "[2, \"h\\u00e9llo\", [1.5, null]]",
			      "{\"k\": \"v\"}");
	broker_message *m;
	schema_task_msg *task = receive_task(w.conn, &m);
	cr_expect_str_eq(task->task, "test.echo");
	cr_expect_str_eq(task->props.correlation_id, task->id);

	/* Echo as celery_app's test.echo does: [list(args), kwargs]. */
	msgpack_sbuffer sb;
	msgpack_sbuffer_init(&sb);
	msgpack_packer pk;
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	msgpack_pack_array(&pk, 2);
	msgpack_pack_object(&pk, task->args);
	msgpack_pack_object(&pk, task->kwargs);
	schema_result r;
	schema_result_init(&r);
	ok(schema_result_set_success(&r, sb.data, sb.size, &err), &err);
	reply(w.b, task, &r);
	ok(broker_ack(w.conn, m, &err), &err);

	json_t *doc = helper_json(p);
	cr_expect_str_eq(jstr(doc, "task_id"), task->id);
	cr_expect_str_eq(jstr(doc, "status"), "SUCCESS");
	json_t *want = json_pack("[[i,s,[f,n]],{s:s}]", 2, "h\xc3\xa9llo", 1.5, "k", "v");
	char *dump = json_dumps(doc, 0);
	cr_expect(json_equal(json_object_get(doc, "result"), want), "Python saw %s", dump);
	free(dump);
	json_decref(want);
	json_decref(doc);
	schema_result_release(&r);
	msgpack_sbuffer_destroy(&sb);
	schema_task_msg_free(task);
	broker_message_free(m);
	worker_side_close(&w);
}

Test(interop_backend_rpc, python_gets_warrens_failure_as_value_error, .timeout = 60)
{
	warren_error err = {0};
	worker_side w = worker_side_open();
	FILE *p = helper_call("test.echo", w.queue, "[]", "{}");
	broker_message *m;
	schema_task_msg *task = receive_task(w.conn, &m);
	schema_result r;
	schema_result_init(&r);
	ok(schema_result_set_exception(&r, SCHEMA_STATE_FAILURE, "ValueError", "builtins",
				       "bad input: \xc3\xa9", &err), &err);
	ok(schema_result_set_traceback(&r, "Traceback (most recent call last):\n", &err), &err);
	reply(w.b, task, &r);
	ok(broker_ack(w.conn, m, &err), &err);

	json_t *doc = helper_json(p);
	cr_expect_str_eq(jstr(doc, "status"), "FAILURE");
	json_t *exc = json_object_get(doc, "exception");
	cr_assert_not_null(exc, "get() did not raise");
	cr_expect_str_eq(jstr(exc, "class"), "ValueError");
	cr_expect_str_eq(jstr(exc, "module"), "builtins");
	cr_expect_str_eq(jstr(exc, "str"), "bad input: \xc3\xa9");
	json_decref(doc);
	schema_result_release(&r);
	schema_task_msg_free(task);
	broker_message_free(m);
	worker_side_close(&w);
}

/* ---- the reply queue ---- */

Test(interop_backend_rpc, celerys_own_declaration_matches_our_reply_queue)
{
	warren_error err = {0};
	char cmd[512], out[16384];
	broker_conn *conn = broker_test_connect();
	backend *b = open_rpc(conn);
	ok(backend_before_send(b, &err), &err);
	snprintf(cmd, sizeof cmd, "/usr/bin/python3 %s declare-reply-queue %s 2>&1", HELPER,
		 backend_reply_to(b));
	int status = support_run(cmd, out, sizeof out);
	cr_expect_eq(status, 0, "Celery's binding differs from our queue: %s", out);

	/* The control: a queue declared otherwise is refused by Celery's. */
	broker_queue q;
	broker_queue_init(&q, broker_test_name(2, "rpc.notcelerys"));
	q.durable = false;
	q.auto_delete = true;
	q.expires_ms = 1000;
	ok(broker_declare(conn, &(broker_topology){.queues = &q, .n_queues = 1}, &err), &err);
	snprintf(cmd, sizeof cmd, "/usr/bin/python3 %s declare-reply-queue %s 2>&1", HELPER, q.name);
	status = support_run(cmd, out, sizeof out);
	cr_expect_neq(status, 0, "Celery accepted x-expires 1000: %s", out);
	cr_expect(strstr(out, "PRECONDITION_FAILED"), "%s", out);
	broker_test_delete_queue(q.name);
	backend_free(b);
	broker_conn_free(conn);
}

/* ---- warren's client, a real Celery worker ---- */

static pid_t celery_pid = -1;
static char celery_log[256];

static void start_celery_worker(const char *queue)
{
	char node[128];
	const char *broker = support_service_url("WARREN_TEST_BROKER");
	snprintf(celery_log, sizeof celery_log, WARREN_BUILD_DIR "/tests/celery-rpc-worker-%ld.log",
		 (long)getpid());
	snprintf(node, sizeof node, "rpc-interop-%ld@%%h", (long)getpid());
	pid_t pid = fork();
	cr_assert_neq(pid, -1, "fork: %s", strerror(errno));
	if (pid == 0) {
		int fd = open(celery_log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
		if (fd < 0 || chdir(INTEROP_DIR) != 0)
			_exit(127);
		dup2(fd, STDOUT_FILENO);
		dup2(fd, STDERR_FILENO);
		setenv("WARREN_TEST_BROKER", broker, 1);
		setenv("CELERY_RESULT_BACKEND", "rpc://", 1);
		execl("/usr/bin/python3", "python3", "-m", "celery", "-A", "celery_app", "worker",
		      "-P", "solo", "-c", "1", "-Q", queue, "-n", node, "--loglevel", "INFO",
		      "--without-gossip", "--without-mingle", "--without-heartbeat", (char *)NULL);
		_exit(127);
	}
	celery_pid = pid;
}

/* .fini: stops the worker (warm shutdown, then SIGKILL) and reaps it. */
static void stop_celery_worker(void)
{
	if (celery_pid <= 0)
		return;
	kill(celery_pid, SIGTERM);
	for (int i = 0; i < 100; i++) {
		if (waitpid(celery_pid, NULL, WNOHANG) == celery_pid) {
			celery_pid = -1;
			return;
		}
		nap_ms(50);
	}
	kill(celery_pid, SIGKILL);
	waitpid(celery_pid, NULL, 0);
	celery_pid = -1;
}

/* Until the worker consumes queue (its consumer count), 60 s at most. */
static void until_consuming(broker_conn *conn, const char *queue)
{
	for (int i = 0; i < 1200; i++) {
		warren_error err = {0};
		uint32_t msgs = 0, consumers = 0;
		int rc = broker_queue_inspect(conn, queue, &msgs, &consumers, &err);
		cr_assert(rc == 0 || rc == WARREN_ENOTFOUND, "inspect: %s", err.msg);
		if (consumers > 0)
			return;
		int status;
		cr_assert_eq(waitpid(celery_pid, &status, WNOHANG), 0,
			     "celery worker exited (status %d); see %s", status, celery_log);
		nap_ms(50);
	}
	cr_assert_fail("celery worker not consuming '%s' after 60 s; see %s", queue, celery_log);
}

/* Publishes task(args) to queue as warren's producer will: encoded by
 * schemas/, reply_to = our reply queue, correlation_id = the task id.
 * Writes the task id to id. */
static void send_task(broker_conn *conn, backend *b, const char *queue, const char *name,
		      const char *args, size_t args_len, char id[64])
{
	warren_error err = {0};
	schema_task_msg *msg;
	ok(schema_task_msg_new(name, &msg, &err), &err);
	ok(schema_task_msg_set_args(msg, args, args_len, &err), &err);
	msg->props.reply_to = schema_task_msg_strdup(msg, backend_reply_to(b));
	msg->props.correlation_id = msg->id;
	snprintf(id, 64, "%s", msg->id);

	msgpack_sbuffer headers, body;
	msgpack_sbuffer_init(&headers);
	msgpack_sbuffer_init(&body);
	schema_task_props tp;
	ok(schema_task_encode(msg, &headers, &body, &tp, &err), &err);
	broker_props p = {
		.content_type = tp.content_type,
		.content_encoding = tp.content_encoding,
		.correlation_id = tp.correlation_id,
		.reply_to = tp.reply_to,
		.delivery_mode = tp.has_delivery_mode ? tp.delivery_mode : 0,
		.priority = tp.has_priority ? tp.priority : BROKER_UNSET,
		.headers = headers.data,
		.headers_len = headers.size,
	};
	ok(backend_before_send(b, &err), &err);
	ok(broker_publish(conn, "", queue, &p, body.data, body.size, 1, &err), &err);
	ok(broker_publish_flush(conn, 10000, &err), &err);
	msgpack_sbuffer_destroy(&headers);
	msgpack_sbuffer_destroy(&body);
	schema_task_msg_free(msg);
}

Test(interop_backend_rpc, warren_waits_for_a_celery_workers_results, .timeout = 120,
     .fini = stop_celery_worker)
{
	warren_error err = {0};
	const char *queue = broker_test_name(1, "rpc.c2py");
	broker_conn *conn = broker_test_connect();
	backend *b = open_rpc(conn);
	declare_task_queue(conn, queue);
	start_celery_worker(queue);
	until_consuming(conn, queue);

	char add_id[64], fail_id[64];
	send_task(conn, b, queue, "test.fail", "\x91\xa4nope", 6, fail_id);
	send_task(conn, b, queue, "math.add", "\x92\x02\x03", 3, add_id);

	/* add first, although fail's reply comes first: it is buffered. */
	const char *ids[] = {add_id, fail_id};
	schema_result r[2];
	schema_result_init(&r[0]);
	schema_result_init(&r[1]);
	ok(backend_wait_results(b, ids, 1, 30000, r, NULL, &err), &err);
	ok(backend_wait_results(b, ids + 1, 1, 30000, r + 1, NULL, &err), &err);

	cr_expect_eq(r[0].state, SCHEMA_STATE_SUCCESS, "%s", schema_state_name(r[0].state));
	cr_expect_str_eq(r[0].task_id, add_id);
	cr_assert_eq(r[0].result_len, 1);
	cr_expect_eq(r[0].result_mp[0], 5);

	cr_expect_eq(r[1].state, SCHEMA_STATE_FAILURE, "%s", schema_state_name(r[1].state));
	cr_expect_str_eq(r[1].task_id, fail_id);
	schema_exc exc;
	ok(schema_exc_read(r[1].result_mp, r[1].result_len, &exc, &err), &err);
	cr_expect_str_eq(exc.type, "ValueError");
	cr_expect_str_eq(exc.module, "builtins");
	cr_expect_str_eq(exc.message, "nope");
	cr_expect(r[1].traceback && strstr(r[1].traceback, "ValueError: nope"), "traceback %s",
		  r[1].traceback ? r[1].traceback : "(nil)");
	schema_exc_release(&exc);
	schema_result_release(&r[0]);
	schema_result_release(&r[1]);
	backend_free(b);
	broker_test_delete_queue(queue);
	broker_conn_free(conn);
}
