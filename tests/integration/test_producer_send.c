/* tests/integration/test_producer_send.c - libwarren and the `warren` CLI
 * against the real broker, without a worker: the message on the wire
 * (properties, Celery headers, body), routing and declaring as Celery does,
 * schema validation before sending, queue stats and purge, the CLI's exit
 * codes, and `warren send --from` with 20,000 tasks surviving a broker
 * restart in the middle of the run (on a private node of its own).
 */
#include <criterion/criterion.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "broker_support.h"
#include "schemas/schemas.h"
#include "support.h"
#include "warren/warren.h"

#define WARREN_BIN WARREN_BUILD_DIR "/bin/warren"

static char qname[128];
static char cfg_path[256];

static const char *name_for(const char *what)
{
	snprintf(qname, sizeof qname, "p.it.%s.%d", what, (int)getpid());
	return qname;
}

static warren_client *client(void)
{
	warren_client *c = NULL;
	warren_error err = {0};
	cr_assert_eq(warren_client_new(support_service_url("WARREN_TEST_BROKER"), NULL, NULL, &c,
				       &err),
		     0, "%s", err.msg);
	return c;
}

static uint32_t depth(warren_client *c, const char *queue)
{
	uint32_t n = 0;
	warren_error err = {0};
	cr_assert_eq(warren_queue_stats(c, queue, &n, NULL, &err), 0, "%s", err.msg);
	return n;
}

/* A config file in /tmp with `yaml` (a printf format) as its content. */
static warren_client *client_from_config(const char *fmt, ...)
{
	snprintf(cfg_path, sizeof cfg_path, "/tmp/warren-test-%d.yaml", (int)getpid());
	FILE *f = fopen(cfg_path, "w");
	cr_assert_not_null(f);
	va_list ap;
	va_start(ap, fmt);
	vfprintf(f, fmt, ap);
	va_end(ap);
	fclose(f);
	warren_client_opts o;
	warren_client_opts_init(&o);
	o.broker_url = support_service_url("WARREN_TEST_BROKER");
	warren_client *c = NULL;
	warren_error err = {0};
	cr_assert_eq(warren_client_new_from_config(cfg_path, &o, &c, &err), 0, "%s", err.msg);
	return c;
}

static void remove_config(void)
{
	if (cfg_path[0])
		unlink(cfg_path);
}

TestSuite(integration_producer, .fini = remove_config, .timeout = 60);

/* Reads the one message waiting in queue with a consumer of our own. */
static broker_message *take_one(const char *queue)
{
	broker_conn *bc = broker_test_connect();
	warren_error err = {0};
	cr_assert_eq(broker_consume(bc, queue, 1, true, NULL, 0, &err), 0, "%s", err.msg);
	broker_message *m = broker_test_receive(bc, 5000);
	broker_conn_free(bc);
	return m;
}

Test(integration_producer, message_on_the_wire_is_celerys)
{
	warren_client *c = client();
	warren_send_opts o;
	warren_send_opts_init(&o);
	o.queue = name_for("wire");
	o.expires = 60;
	o.priority = 3;
	o.time_limit = 30;
	o.soft_time_limit = 20;
	o.eta = "2030-01-02T03:04:05Z";
	o.task_id = "d5a8e3c2-1b4f-4a9e-9c3e-000000000001";
	warren_args *h = warren_kwargs_new();
	warren_args_key(h, "x-trace");
	warren_args_str(h, "abc");
	warren_args_key(h, "lang"); /* replaces Celery's */
	warren_args_str(h, "c-custom");
	o.headers = h;
	warren_args *a = warren_args_new();
	warren_args_int(a, 2);
	warren_args_int(a, 3);
	char id[WARREN_TASK_ID_MAX];
	warren_error err = {0};
	/* Broker-side delay off would park it; an eta years ahead must not: */
	warren_client_free(c);
	warren_client_opts co;
	warren_client_opts_init(&co);
	co.broker_delay = false;
	cr_assert_eq(warren_client_new(support_service_url("WARREN_TEST_BROKER"), NULL, &co, &c,
				       &err),
		     0, "%s", err.msg);
	cr_assert_eq(warren_send(c, "math.add", a, NULL, &o, id, &err), 0, "%s", err.msg);
	cr_expect_str_eq(id, o.task_id);

	broker_message *m = take_one(o.queue);
	cr_expect_str_eq(m->exchange, "");
	cr_expect_str_eq(m->routing_key, o.queue);
	cr_expect_str_eq(m->content_type, "application/x-msgpack");
	cr_expect_str_eq(m->content_encoding, "binary");
	cr_expect_str_eq(m->correlation_id, id);
	cr_expect_eq(m->delivery_mode, 2);
	cr_expect_eq(m->priority, 3);
	cr_expect_str_eq(m->expiration, "60000");
	cr_expect(m->reply_to && strlen(m->reply_to) == 36, "reply_to %s", m->reply_to);

	schema_task_props p = {.content_type = m->content_type, .reply_to = m->reply_to};
	schema_limits lim;
	schema_limits_default(&lim);
	schema_task_msg *t = NULL;
	cr_assert_eq(schema_task_decode(&p, m->headers, m->headers_len, m->body, m->body_len, &lim,
					&t, &err),
		     0, "%s", err.msg);
	cr_expect_str_eq(t->task, "math.add");
	cr_expect_str_eq(t->id, id);
	cr_expect_str_eq(t->root_id, id);
	cr_expect_str_eq(t->eta, "2030-01-02T03:04:05+00:00");
	cr_expect(t->expires && strstr(t->expires, "+00:00"), "%s", t->expires);
	cr_expect(t->has_time_limit && t->time_limit == 30);
	cr_expect(t->has_soft_time_limit && t->soft_time_limit == 20);
	cr_expect_str_eq(t->lang, "c-custom");
	cr_expect_str_eq(t->argsrepr, "(2, 3)");
	cr_expect_eq(t->args.via.array.size, 2);
	msgpack_zone zone;
	msgpack_zone_init(&zone, 256);
	msgpack_object hdrs;
	cr_assert_eq(schema_unpack(m->headers, m->headers_len, &lim, "h", &zone, &hdrs, &err), 0);
	const msgpack_object *x = schema_map_get(&hdrs, "x-trace");
	cr_expect(x && x->type == MSGPACK_OBJECT_STR && x->via.str.size == 3);
	msgpack_zone_destroy(&zone);
	schema_task_msg_free(t);
	broker_message_free(m);
	warren_args_free(a);
	warren_args_free(h);
	warren_client_free(c);
}

Test(integration_producer, schema_mismatch_sends_nothing)
{
	const char *q = name_for("schema");
	warren_client *c = client_from_config(
		"task_routes:\n  'math.*': %s\n"
		"tasks:\n  math.add:\n    args:\n      - {name: x, type: int}\n"
		"      - {name: y, type: int, default: 0}\n",
		q);
	warren_args *a = warren_args_new();
	warren_args_str(a, "two");
	char id[WARREN_TASK_ID_MAX];
	warren_error err = {0};
	cr_expect_eq(warren_send(c, "math.add", a, NULL, NULL, id, &err), WARREN_ESCHEMA);
	cr_expect(strstr(err.msg, "math.add: argument x: expected int"), "%s", err.msg);
	uint32_t n;
	warren_error_clear(&err);
	cr_expect_eq(warren_queue_stats(c, q, &n, NULL, &err), WARREN_ENOTFOUND,
		     "nothing declared or sent");
	warren_args_free(a);
	a = warren_args_new();
	warren_args_int(a, 2);
	warren_error_clear(&err);
	cr_assert_eq(warren_send(c, "math.add", a, NULL, NULL, id, &err), 0, "%s", err.msg);
	cr_expect_eq(depth(c, q), 1);
	warren_args_free(a);

	char out[1024], cmd[1024];
	snprintf(cmd, sizeof cmd, "%s --broker '%s' --config %s send math.add two 2>&1", WARREN_BIN,
		 support_service_url("WARREN_TEST_BROKER"), cfg_path);
	cr_expect_eq(support_run(cmd, out, sizeof out), 65, "%s", out);
	cr_expect(strstr(out, "math.add: argument x: expected int, got str \"two\""), "%s", out);
	warren_client_free(c);
}

Test(integration_producer, routes_and_declares_like_celery)
{
	char feeds[128], topicq[128], other[128];
	snprintf(feeds, sizeof feeds, "p.it.feeds.%d", (int)getpid());
	snprintf(topicq, sizeof topicq, "p.it.video.%d", (int)getpid());
	snprintf(other, sizeof other, "p.it.other.%d", (int)getpid());
	warren_client *c = client_from_config(
		"exchanges:\n  p.media.%d: {type: topic}\n"
		"queues:\n  %s: {}\n  %s: {exchange: p.media.%d, routing_key: 'video.#'}\n"
		"task_routes:\n  'feeds.*': %s\n  'video.*': {queue: %s, routing_key: video.x}\n"
		"task_default_queue: %s\n",
		(int)getpid(), feeds, topicq, (int)getpid(), feeds, topicq, other);
	warren_error err = {0};
	cr_assert_eq(warren_send(c, "feeds.fetch", NULL, NULL, NULL, NULL, &err), 0, "%s", err.msg);
	cr_assert_eq(warren_send(c, "video.cut", NULL, NULL, NULL, NULL, &err), 0, "%s", err.msg);
	cr_assert_eq(warren_send(c, "misc.task", NULL, NULL, NULL, NULL, &err), 0, "%s", err.msg);
	cr_expect_eq(depth(c, feeds), 1);
	cr_expect_eq(depth(c, topicq), 1, "via the topic exchange");
	cr_expect_eq(depth(c, other), 1, "the default queue");
	/* A topic message goes to the exchange with the route's key. */
	broker_message *m = take_one(topicq);
	char want[64];
	snprintf(want, sizeof want, "p.media.%d", (int)getpid());
	cr_expect_str_eq(m->exchange, want);
	cr_expect_str_eq(m->routing_key, "video.x");
	broker_message_free(m);
	warren_client_free(c);
}

static int cli(char *out, size_t cap, const char *fmt, ...)
{
	char args[1024], cmd[2048];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(args, sizeof args, fmt, ap);
	va_end(ap);
	snprintf(cmd, sizeof cmd, "%s --retry 2 --broker '%s' %s 2>&1", WARREN_BIN,
		 support_service_url("WARREN_TEST_BROKER"), args);
	return support_run(cmd, out, cap);
}

Test(integration_producer, cli_send_queues_purge_and_exit_codes)
{
	const char *q = name_for("cli");
	char out[4096];
	cr_assert_eq(cli(out, sizeof out, "send --queue %s math.add 1 2", q), 0, "%s", out);
	cr_expect_eq(strlen(out), 37, "a task id: %s", out);
	cr_assert_eq(cli(out, sizeof out, "send --queue %s --countdown 0 test.echo '[1]'", q), 0);
	cr_assert_eq(cli(out, sizeof out, "queues %s p.it.none.%d", q, (int)getpid()), 0, "%s", out);
	char row[256];
	snprintf(row, sizeof row, "%-40s %10u %10u\n", q, 2u, 0u);
	cr_expect(strstr(out, row), "%s", out);
	cr_expect(strstr(out, "(not declared)"), "%s", out);
	cr_assert_eq(cli(out, sizeof out, "purge %s", q), 0, "%s", out);
	snprintf(row, sizeof row, "purged 2 messages from '%s'\n", q);
	cr_expect_str_eq(out, row);
	cr_expect_eq(cli(out, sizeof out, "purge p.it.none.%d", (int)getpid()), 66, "%s", out);
	cr_expect_eq(cli(out, sizeof out, "send"), 64, "%s", out);
	cr_expect_eq(cli(out, sizeof out, "send t --priority 999"), 64, "%s", out);
	cr_expect_eq(cli(out, sizeof out, "frobnicate"), 64, "%s", out);
	cr_expect_eq(cli(out, sizeof out, "send t --kwargs '[1'"), 65, "%s", out);
	cr_expect_eq(cli(out, sizeof out, "call --queue %s math.add 1 2", q), 64,
		     "no result backend: %s", out);
	for (const char *const *sub = (const char *const[]){"send", "call", "result", "queues",
							   "purge", NULL};
	     *sub; sub++) {
		cr_expect_eq(cli(out, sizeof out, "%s --help", *sub), 0, "%s", *sub);
		cr_expect(strstr(out, "usage: warren"), "%s: %s", *sub, out);
	}
	/* Unreachable: 69, the URL masked, the reason given. */
	char cmd[512];
	snprintf(cmd, sizeof cmd,
		 "%s --retry 0.5 --broker amqp://guest:s3cret@127.0.0.1:1/%%2F send t 2>&1",
		 WARREN_BIN);
	cr_expect_eq(support_run(cmd, out, sizeof out), 69, "%s", out);
	cr_expect(strstr(out, "amqp://guest:****@127.0.0.1:1/%2F"), "%s", out);
	cr_expect_null(strstr(out, "s3cret"), "%s", out);
}

Test(integration_producer, send_from_file_reports_bad_lines)
{
	const char *q = name_for("from");
	char path[256], out[4096];
	snprintf(path, sizeof path, "/tmp/warren-from-%d.jsonl", (int)getpid());
	FILE *f = fopen(path, "w");
	cr_assert_not_null(f);
	fprintf(f, "{\"task\": \"math.add\", \"args\": [1, 2]}\n\n"
		   "{\"task\": \"test.echo\", \"kwargs\": {\"a\": \"\xc3\xa9\"}, \"priority\": 1}\n"
		   "not json\n{\"args\": []}\n");
	fclose(f);
	int rc = cli(out, sizeof out, "send --queue %s --from %s", q, path);
	unlink(path);
	cr_expect_eq(rc, 65, "%s", out);
	cr_expect(strstr(out, "line 4: bad JSON"), "%s", out);
	cr_expect(strstr(out, "line 5: \"task\" is missing"), "%s", out);
	cr_expect(strstr(out, "sent 2, confirmed 2, failed 0, bad lines 2"), "%s", out);
	warren_client *c = client();
	cr_expect_eq(depth(c, q), 2);
	warren_client_free(c);
}

/* ---- a broker restart in the middle of `warren send --from -` ---- */

static char node[64];

static void stop_node(void)
{
	if (!node[0])
		return;
	char cmd[512];
	snprintf(cmd, sizeof cmd, "%s stop --name %s >/dev/null 2>&1; rm -rf %s/.run/rabbitmq-%s",
		 support_source_path("scripts/rabbitmq-local"), node, WARREN_SOURCE_DIR, node);
	support_run(cmd, NULL, 0);
	node[0] = '\0';
}

/* rabbitmqctl stop_app / start_app on our node: the AMQP listener and every
 * connection go away and come back on the same port, with the durable queue
 * and its persistent messages recovered from disk. (rabbitmq-local start
 * would wipe the node's data; this keeps it, as a real restart does.) */
static int node_ctl(const char *what, bool background)
{
	char cmd[1024];
	snprintf(cmd, sizeof cmd,
		 "%s(d=%s/.run/rabbitmq-%s; export HOME=$d/home ERL_EPMD_PORT=$(cat $d/epmdport); "
		 "/usr/lib/rabbitmq/bin/rabbitmqctl -n $(cat $d/nodename) %s >/dev/null 2>&1)%s",
		 background ? "sleep 2; " : "", WARREN_SOURCE_DIR, node, what,
		 background ? " &" : "");
	return system(cmd);
}

TestSuite(integration_producer_restart, .fini = stop_node, .timeout = 300);

/* The first arg of a task body [[i, 1], {}, embed]; -1 if it is not one. */
static long first_arg(const broker_message *m)
{
	msgpack_zone zone;
	msgpack_zone_init(&zone, 256);
	schema_limits lim;
	schema_limits_default(&lim);
	msgpack_object body;
	long v = -1;
	if (schema_unpack(m->body, m->body_len, &lim, "body", &zone, &body, NULL) == 0 &&
	    body.type == MSGPACK_OBJECT_ARRAY && body.via.array.size == 3 &&
	    body.via.array.ptr[0].type == MSGPACK_OBJECT_ARRAY &&
	    body.via.array.ptr[0].via.array.size == 2 &&
	    body.via.array.ptr[0].via.array.ptr[0].type == MSGPACK_OBJECT_POSITIVE_INTEGER)
		v = (long)body.via.array.ptr[0].via.array.ptr[0].via.u64;
	msgpack_zone_destroy(&zone);
	return v;
}

/* Consumes all `count` messages of queue and checks every task 0..n-1 is
 * among them. */
static void drain_and_check(const char *url, const char *queue, uint32_t count, int n)
{
	broker_conn_opts o;
	broker_test_opts(&o);
	o.urls = url;
	broker_conn *bc = NULL;
	warren_error err = {0};
	cr_assert_eq(broker_conn_new(&o, &bc, &err), 0, "%s", err.msg);
	cr_assert_eq(broker_consume(bc, queue, 0, true, NULL, 0, &err), 0, "%s", err.msg);
	char *seen = calloc((size_t)n, 1);
	cr_assert_not_null(seen);
	for (uint32_t got = 0; got < count; got++) {
		broker_message *m = broker_test_receive(bc, 10000);
		long i = first_arg(m);
		cr_assert(i >= 0 && i < n, "message %u is not one of ours", got);
		seen[i] = 1;
		broker_message_free(m);
	}
	int missing = 0, first = -1;
	for (int i = 0; i < n; i++)
		if (!seen[i] && missing++ == 0)
			first = i;
	cr_expect_eq(missing, 0, "%d confirmed tasks lost, the first is #%d", missing, first);
	free(seen);
	broker_conn_free(bc);
}

Test(integration_producer_restart, send_from_survives_broker_restart)
{
	enum { N = 20000, BEFORE = 8000 };
	snprintf(node, sizeof node, "p-restart-%d", (int)getpid());
	char url[256], cmd[1024];
	snprintf(cmd, sizeof cmd, "%s start --name %s 2>/dev/null",
		 support_source_path("scripts/rabbitmq-local"), node);
	cr_assert_eq(support_run(cmd, url, sizeof url), 0, "could not start node %s", node);
	url[strcspn(url, "\n")] = '\0';
	const char *q = name_for("restart");
	char errlog[256];
	snprintf(errlog, sizeof errlog, "/tmp/warren-restart-%d.log", (int)getpid());
	snprintf(cmd, sizeof cmd, "%s --retry 90 --broker '%s' send --queue %s --from - 2>%s",
		 WARREN_BIN, url, q, errlog);
	FILE *p = popen(cmd, "w");
	cr_assert_not_null(p);
	for (int i = 0; i < BEFORE; i++)
		fprintf(p, "{\"task\": \"math.add\", \"args\": [%d, 1]}\n", i);
	fflush(p);
	/* Wait until a good part is in the queue, then take the broker away
	 * while the rest is still being sent. */
	warren_client *c = NULL;
	warren_error err = {0};
	cr_assert_eq(warren_client_new(url, NULL, NULL, &c, &err), 0, "%s", err.msg);
	struct timespec t0;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (;;) {
		uint32_t n = 0;
		warren_error e = {0};
		if (warren_queue_stats(c, q, &n, NULL, &e) == 0 && n >= BEFORE / 2)
			break;
		struct timespec t;
		clock_gettime(CLOCK_MONOTONIC, &t);
		cr_assert_lt(t.tv_sec - t0.tv_sec, 60, "the first tasks never arrived");
		nanosleep(&(struct timespec){.tv_nsec = 20 * 1000 * 1000}, NULL);
	}
	warren_client_free(c);
	cr_assert_eq(node_ctl("stop_app", false), 0, "stop_app failed");
	node_ctl("start_app", true);
	for (int i = BEFORE; i < N; i++)
		fprintf(p, "{\"task\": \"math.add\", \"args\": [%d, 1]}\n", i);
	int status = pclose(p);
	char log[4096] = "";
	FILE *lf = fopen(errlog, "r");
	if (lf) {
		size_t got = fread(log, 1, sizeof log - 1, lf);
		log[got] = '\0';
		fclose(lf);
		unlink(errlog);
	}
	cr_expect(WIFEXITED(status) && WEXITSTATUS(status) == 0, "status %d: %s", status, log);
	unsigned long sent = 0, confirmed = 0, failed = 0, bad = 0;
	const char *summary = strstr(log, "warren: sent ");
	cr_assert_not_null(summary, "no summary: %s", log);
	cr_assert_eq(sscanf(summary, "warren: sent %lu, confirmed %lu, failed %lu, bad lines %lu",
			    &sent, &confirmed, &failed, &bad),
		     4, "%s", log);
	cr_expect_eq(sent, N, "%s", log);
	cr_expect_eq(confirmed, N, "%s", log);
	cr_expect_eq(failed, 0, "%s", log);
	/* Every confirmed task is in the queue at least once. */
	cr_assert_eq(warren_client_new(url, NULL, NULL, &c, &err), 0, "%s", err.msg);
	uint32_t n = 0;
	cr_assert_eq(warren_queue_stats(c, q, &n, NULL, &err), 0, "%s", err.msg);
	cr_expect_geq(n, confirmed, "queue holds %u of %lu confirmed", n, confirmed);
	cr_expect_leq(n, confirmed + 1000, "more duplicates than one window: %u", n);
	warren_client_free(c);
	drain_and_check(url, q, n, N);
}
