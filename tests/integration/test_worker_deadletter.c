/* tests/integration/test_worker_deadletter.c - bad input never stops the
 * worker: garbage, pickle, JSON, truncated, over-deep and header-less
 * messages land in warren.dead with an x-warren-reason header, their callers
 * get a FAILURE in the result backend, and a good task sent after them still
 * runs. The dead letters are read through a private queue bound to the
 * warren.dead fanout exchange, so parallel tests do not see each other's. */
#include <criterion/criterion.h>
#include <msgpack.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "backends/backend.h"
#include "broker-adapter/broker.h"
#include "broker_support.h"
#include "schemas/schemas.h"
#include "support.h"
#include "test_worker_support.h"

TestSuite(integration_worker_deadletter, .fini = worker_test_fini, .timeout = 90);

#define N_BAD 6

static void pack_headers(msgpack_sbuffer *sb, const char *task, const char *id)
{
	msgpack_packer pk;
	msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
	msgpack_pack_map(&pk, task ? 2 : 1);
	if (task) {
		msgpack_pack_str_with_body(&pk, "task", 4);
		msgpack_pack_str_with_body(&pk, task, strlen(task));
	}
	msgpack_pack_str_with_body(&pk, "id", 2);
	msgpack_pack_str_with_body(&pk, id, strlen(id));
}

static void publish_raw(broker_conn *c, const char *queue, const char *ctype, const char *task,
			const char *id, const void *body, size_t len, uint64_t cookie)
{
	msgpack_sbuffer hb;
	msgpack_sbuffer_init(&hb);
	pack_headers(&hb, task, id);
	broker_props p = {.content_type = ctype, .content_encoding = "binary",
			  .correlation_id = id, .delivery_mode = 2, .priority = BROKER_UNSET,
			  .headers = hb.data, .headers_len = hb.size};
	warren_error err = {0};
	cr_assert_eq(broker_publish(c, "", queue, &p, body, len, cookie, &err), 0, "%s", err.msg);
	msgpack_sbuffer_destroy(&hb);
}

/* [[[[...]]]] nested `depth` deep as the args, then {} and nil. */
static void pack_deep(msgpack_sbuffer *sb, int depth)
{
	msgpack_packer pk;
	msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
	msgpack_pack_array(&pk, 3);
	for (int i = 0; i < depth; i++)
		msgpack_pack_array(&pk, 1);
	msgpack_pack_nil(&pk);
	msgpack_pack_map(&pk, 0);
	msgpack_pack_nil(&pk);
}

static void publish_good(broker_conn *c, const char *queue, char *id_out)
{
	schema_task_msg *m = NULL;
	warren_error err = {0};
	cr_assert_eq(schema_task_msg_new("math.add", &m, &err), 0, "%s", err.msg);
	cr_assert_eq(schema_task_msg_set_args(m, "\x92\x02\x03", 3, &err), 0, "%s", err.msg);
	msgpack_sbuffer hb, bb;
	msgpack_sbuffer_init(&hb);
	msgpack_sbuffer_init(&bb);
	schema_task_props sp;
	cr_assert_eq(schema_task_encode(m, &hb, &bb, &sp, &err), 0, "%s", err.msg);
	broker_props p = {.content_type = sp.content_type, .content_encoding = sp.content_encoding,
			  .correlation_id = sp.correlation_id, .delivery_mode = 2,
			  .priority = BROKER_UNSET, .headers = hb.data, .headers_len = hb.size};
	cr_assert_eq(broker_publish(c, "", queue, &p, bb.data, bb.size, 99, &err), 0, "%s",
		     err.msg);
	strcpy(id_out, m->id);
	msgpack_sbuffer_destroy(&hb);
	msgpack_sbuffer_destroy(&bb);
	schema_task_msg_free(m);
}

/* The x-warren-reason header of a dead letter, copied into buf. */
static bool reason_of(const broker_message *m, char *buf, size_t cap)
{
	msgpack_unpacked u;
	msgpack_unpacked_init(&u);
	bool found = false;
	if (m->headers &&
	    msgpack_unpack_next(&u, m->headers, m->headers_len, NULL) == MSGPACK_UNPACK_SUCCESS) {
		const msgpack_object *r = schema_map_get(&u.data, "x-warren-reason");
		if (r && r->type == MSGPACK_OBJECT_STR) {
			snprintf(buf, cap, "%.*s", (int)r->via.str.size, r->via.str.ptr);
			found = true;
		}
	}
	msgpack_unpacked_destroy(&u);
	return found;
}

static void expect_failure(backend *b, const char *id, const char *exc_type)
{
	schema_result r;
	schema_result_init(&r);
	warren_error err = {0};
	cr_assert_eq(backend_get(b, id, &r, &err), 0, "%s", err.msg);
	cr_expect_eq(r.state, SCHEMA_STATE_FAILURE, "%s: state %s", id, schema_state_name(r.state));
	schema_exc exc;
	if (r.result_mp && schema_exc_read(r.result_mp, r.result_len, &exc, &err) == 0) {
		cr_expect_str_eq(exc.type, exc_type, "%s", id);
		schema_exc_release(&exc);
	} else {
		cr_expect_fail("%s: no exception stored", id);
	}
	schema_result_release(&r);
}

Test(integration_worker_deadletter, bad_messages_land_in_warren_dead_and_good_ones_still_run)
{
	const char *queue = worker_test_queue(0, "dead");
	const char *dlq = worker_test_queue(1, "deadcopy");
	const char *redis_url = support_service_url("WARREN_TEST_REDIS");
	char args[1024];
	snprintf(args, sizeof args, "%s -P threads -c 2 -Q %s --result-backend %s -l info",
		 WORKER_PLUGINS, queue, redis_url);
	pid_t pid = worker_test_start(args);
	cr_assert(worker_test_wait_log(pid, " ready:", 15000), "see %s", worker_test_log(pid));

	broker_conn *c = broker_test_connect();
	warren_error err = {0};
	broker_queue q;
	broker_queue_init(&q, dlq);
	q.durable = false;
	q.auto_delete = true;
	broker_binding bind = {dlq, "warren.dead", "#"};
	broker_topology t = {.queues = &q, .n_queues = 1, .bindings = &bind, .n_bindings = 1};
	cr_assert_eq(broker_declare(c, &t, &err), 0, "%s", err.msg);

	static const char *const ids[N_BAD] = {"dl-garbage", "dl-pickle", "dl-json",
					       "dl-truncated", "dl-deep", "dl-noheader"};
	static const char *const want[N_BAD] = {"DecodeError", "ContentDisallowed",
						"ContentDisallowed", "DecodeError", "DecodeError",
						"DecodeError"};
	char idbuf[N_BAD][64];
	for (int i = 0; i < N_BAD; i++)
		snprintf(idbuf[i], sizeof idbuf[i], "%s-%d", ids[i], (int)getpid());
	const char *mp = "application/x-msgpack";
	publish_raw(c, queue, mp, "math.add", idbuf[0], "\xc1\xc1 garbage", 10, 1);
	publish_raw(c, queue, "application/x-python-serialize", "math.add", idbuf[1],
		    "\x80\x04\x95\x05\x00.", 7, 2);
	publish_raw(c, queue, "application/json", "math.add", idbuf[2], "[[1, 2], {}, {}]", 16,
		    3);
	publish_raw(c, queue, mp, "math.add", idbuf[3], "\x93\x92\x01", 3, 4);
	msgpack_sbuffer deep;
	msgpack_sbuffer_init(&deep);
	pack_deep(&deep, 100);
	publish_raw(c, queue, mp, "math.add", idbuf[4], deep.data, deep.size, 5);
	msgpack_sbuffer_destroy(&deep);
	publish_raw(c, queue, mp, NULL, idbuf[5], "\x93\x90\x80\xc0", 4, 6);
	char good[64];
	publish_good(c, queue, good);
	cr_assert_eq(broker_publish_flush(c, 10000, &err), 0, "%s", err.msg);

	backend *b = NULL;
	cr_assert_eq(backend_open(redis_url, NULL, &b, &err), 0, "%s", err.msg);
	const char *gid[1] = {good};
	schema_result res;
	schema_result_init(&res);
	size_t pending = 1;
	backend_wait_results(b, gid, 1, 20000, &res, &pending, &err);
	cr_assert_eq(pending, 0, "the good task after the bad ones never ran: %s", err.msg);
	cr_expect_eq(res.state, SCHEMA_STATE_SUCCESS);
	cr_expect_eq(res.result_len, 1);
	cr_expect_eq(res.result_mp[0], 5, "2 + 3");
	schema_result_release(&res);

	cr_assert_eq(broker_consume(c, dlq, 100, false, NULL, 0, &err), 0, "%s", err.msg);
	int seen[N_BAD] = {0};
	for (int got = 0; got < N_BAD;) {
		broker_message *m = broker_test_receive(c, 10000);
		char reason[512] = "";
		cr_expect(reason_of(m, reason, sizeof reason), "dead letter without a reason");
		for (int i = 0; i < N_BAD; i++)
			if (m->correlation_id && strcmp(m->correlation_id, idbuf[i]) == 0) {
				seen[i]++;
				got++;
				cr_expect(strncmp(reason, want[i], strlen(want[i])) == 0,
					  "%s: reason '%s', expected %s", ids[i], reason, want[i]);
			}
		broker_ack(c, m, NULL);
		broker_message_free(m);
	}
	for (int i = 0; i < N_BAD; i++) {
		cr_expect_eq(seen[i], 1, "%s dead-lettered %d times", ids[i], seen[i]);
		expect_failure(b, idbuf[i], want[i]);
	}
	cr_expect_eq(worker_test_count_log(pid, "into warren.dead"), N_BAD);
	backend_free(b);
	broker_conn_free(c);
	cr_assert_eq(worker_test_stop(pid, SIGTERM, 10000), 0);
}
