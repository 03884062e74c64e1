/* tests/integration/test_worker_monitor.c - watching a fleet of real
 * warren-worker processes: `warren status` from their heartbeats, the
 * Prometheus /metrics endpoint (checked by promtool) and /healthz, which
 * turns 503 when the worker's own RabbitMQ node is stopped. */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <jansson.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "support.h"
#include "test_worker_support.h"
#include "warren/warren.h"

#define WARREN_CLI WARREN_BUILD_DIR "/bin/warren"
#define RABBIT_LOCAL WARREN_SOURCE_DIR "/scripts/rabbitmq-local"

static char node[64];      /* our own RabbitMQ node (healthz test), if started */
static char metrics_out[128];

static void monitor_fini(void)
{
	worker_test_fini();
	if (node[0]) {
		char cmd[256], out[256];
		snprintf(cmd, sizeof cmd, "%s stop --name %s >/dev/null 2>&1", RABBIT_LOCAL, node);
		support_run(cmd, out, sizeof out);
	}
	if (metrics_out[0])
		unlink(metrics_out);
}

static void nap_ms(int ms)
{
	struct timespec d = {ms / 1000, (long)(ms % 1000) * 1000000};
	nanosleep(&d, NULL);
}

/* GET http://127.0.0.1:port/path; the status (0: no answer), the body into
 * body (NUL-terminated). */
static int http_get(int port, const char *path, char *body, size_t cap)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
				.sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	body[0] = '\0';
	if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
		if (fd >= 0)
			close(fd);
		return 0;
	}
	char req[256];
	int n = snprintf(req, sizeof req, "GET %s HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n", path);
	if (write(fd, req, (size_t)n) != n) {
		close(fd);
		return 0;
	}
	static char buf[1 << 20];
	size_t len = 0;
	for (ssize_t r; len < sizeof buf - 1 && (r = read(fd, buf + len, sizeof buf - 1 - len)) > 0;)
		len += (size_t)r;
	close(fd);
	buf[len] = '\0';
	int status = 0;
	sscanf(buf, "HTTP/%*s %d", &status);
	const char *b = strstr(buf, "\r\n\r\n");
	snprintf(body, cap, "%s", b ? b + 4 : "");
	return status;
}

static bool wait_status(int port, const char *path, int want, int timeout_ms)
{
	char body[4096];
	for (int waited = 0; waited < timeout_ms; waited += 100) {
		if (http_get(port, path, body, sizeof body) == want)
			return true;
		nap_ms(100);
	}
	return false;
}

/* ---- warren status ------------------------------------------------------------ */

static json_t *find_row(json_t *rows, const char *host)
{
	for (size_t i = 0; i < json_array_size(rows); i++) {
		const char *h = json_string_value(json_object_get(json_array_get(rows, i), "hostname"));
		if (h && strcmp(h, host) == 0)
			return json_array_get(rows, i);
	}
	return NULL;
}

static void check_row(json_t *rows, const char *host, pid_t pid, const char *pool, int conc)
{
	json_t *r = find_row(rows, host);
	cr_assert_not_null(r, "warren status does not list %s", host);
	cr_expect_str_eq(json_string_value(json_object_get(r, "status")), "online");
	cr_expect_eq(json_integer_value(json_object_get(r, "pid")), pid);
	cr_expect_str_eq(json_string_value(json_object_get(r, "pool")), pool);
	cr_expect_eq(json_integer_value(json_object_get(r, "concurrency")), conc);
	cr_expect(json_is_integer(json_object_get(r, "processed")));
	cr_expect_eq(json_array_size(json_object_get(r, "loadavg")), 3);
	cr_expect_lt(json_real_value(json_object_get(r, "heartbeat_age")), 3.0);
}

Test(integration_monitor, status_shows_two_running_workers, .fini = monitor_fini, .timeout = 60)
{
	char h1[96], h2[96], args[1024], cmd[1024];
	static char out[1 << 16];
	snprintf(h1, sizeof h1, "status-a%d@warren-test", (int)getpid());
	snprintf(h2, sizeof h2, "status-b%d@warren-test", (int)getpid());
	snprintf(args, sizeof args, "%s -Q %s -c 2 -P prefork -n %s", WORKER_PLUGINS,
		 worker_test_queue(0, "status"), h1);
	pid_t w1 = worker_test_start(args);
	snprintf(args, sizeof args, "%s -Q %s -c 3 -P threads -n %s", WORKER_PLUGINS,
		 worker_test_queue(0, "status"), h2);
	pid_t w2 = worker_test_start(args);
	cr_assert(worker_test_wait_log(w1, "ready", 15000) && worker_test_wait_log(w2, "ready", 15000));

	snprintf(cmd, sizeof cmd, "%s --broker '%s' status --json --timeout 3", WARREN_CLI,
		 support_service_url("WARREN_TEST_BROKER"));
	cr_assert_eq(support_run(cmd, out, sizeof out), 0, "%s: %s", cmd, out);
	json_t *rows = json_loads(out, 0, NULL);
	cr_assert(json_is_array(rows), "not a JSON array: %s", out);
	check_row(rows, h1, w1, "prefork", 2);
	check_row(rows, h2, w2, "threads", 3);
	json_decref(rows);

	snprintf(cmd, sizeof cmd, "%s --broker '%s' status", WARREN_CLI,
		 support_service_url("WARREN_TEST_BROKER"));
	cr_assert_eq(support_run(cmd, out, sizeof out), 0, "%s: %s", cmd, out);
	cr_expect(strstr(out, "HOSTNAME") && strstr(out, h1) && strstr(out, h2), "%s", out);
}

/* ---- /metrics and /healthz ------------------------------------------------------ */

static void send_tasks(const char *queue, const char *task, int n, bool fail)
{
	warren_client *c = NULL;
	warren_error err = {0};
	cr_assert_eq(warren_client_new(support_service_url("WARREN_TEST_BROKER"), NULL, NULL, &c,
				       &err), 0, "%s", err.msg);
	warren_send_opts o;
	warren_send_opts_init(&o);
	o.queue = queue;
	for (int i = 0; i < n; i++) {
		warren_args *a = warren_args_new();
		if (fail) {
			warren_args_str(a, "boom");
		} else {
			warren_args_int(a, i);
			warren_args_int(a, 1);
		}
		cr_assert_eq(warren_send(c, task, a, NULL, &o, NULL, &err), 0, "%s", err.msg);
		warren_args_free(a);
	}
	warren_client_free(c);
}

static bool wait_metric(int port, const char *line, int timeout_ms, char *body, size_t cap)
{
	for (int waited = 0; waited < timeout_ms; waited += 100) {
		if (http_get(port, "/metrics", body, cap) == 200 && strstr(body, line))
			return true;
		nap_ms(100);
	}
	return false;
}

Test(integration_monitor, metrics_count_known_tasks_and_pass_promtool, .fini = monitor_fini,
     .timeout = 60)
{
	static char body[1 << 20];
	char args[1024];
	int port = support_free_port();
	const char *queue = worker_test_queue(0, "metrics");
	snprintf(args, sizeof args, "%s -Q %s -c 2 -P prefork --metrics-port %d", WORKER_PLUGINS,
		 queue, port);
	pid_t w = worker_test_start(args);
	cr_assert(worker_test_wait_log(w, "ready", 15000));
	cr_assert(wait_status(port, "/healthz", 200, 5000), "/healthz never said 200");

	send_tasks(queue, "math.add", 20, false);
	send_tasks(queue, "test.fail", 5, true);
	cr_assert(wait_metric(port, "warren_tasks_total{task=\"test.fail\",state=\"FAILURE\"} 5\n",
			      15000, body, sizeof body), "%s", body);
	cr_assert(wait_metric(port, "warren_tasks_total{task=\"math.add\",state=\"SUCCESS\"} 20\n",
			      5000, body, sizeof body), "%s", body);
	const char *lines[] = {
		"warren_task_runtime_seconds_count{task=\"math.add\"} 20\n",
		"warren_task_runtime_seconds_bucket{task=\"test.fail\",le=\"+Inf\"} 5\n",
		"warren_tasks_in_flight 0\n",
		"warren_tasks_prefetched 0\n",
		"warren_dead_lettered_total 0\n",
		"warren_broker_reconnects_total 0\n",
		"warren_pool_children_alive 2\n",
		"# TYPE warren_task_runtime_seconds histogram\n",
		"process_resident_memory_bytes ",
	};
	for (size_t i = 0; i < sizeof lines / sizeof lines[0]; i++)
		cr_expect(strstr(body, lines[i]), "no '%s' in:\n%s", lines[i], body);
	cr_expect_null(strstr(body, "state=\"SUCCESS\"} 21"));

	snprintf(metrics_out, sizeof metrics_out, "/tmp/warren-test-metrics.%d.txt", (int)getpid());
	FILE *f = fopen(metrics_out, "w");
	cr_assert_not_null(f);
	fputs(body, f);
	fclose(f);
	char cmd[512], out[8192];
	snprintf(cmd, sizeof cmd, "promtool check metrics < %s 2>&1", metrics_out);
	cr_assert_eq(support_run(cmd, out, sizeof out), 0, "promtool check metrics: %s", out);

	char small[256];
	cr_expect_eq(http_get(port, "/nope", small, sizeof small), 404);
	cr_expect_eq(worker_test_stop(w, SIGTERM, 15000), 0);
}

Test(integration_monitor, healthz_turns_503_when_the_broker_stops, .fini = monitor_fini,
     .timeout = 90)
{
	char cmd[512], url[256] = "", args[1024];
	snprintf(node, sizeof node, "evmh%d", (int)getpid());
	snprintf(cmd, sizeof cmd, "%s start --name %s --port %d", RABBIT_LOCAL, node, support_free_port());
	cr_assert_eq(support_run(cmd, url, sizeof url), 0, "%s: %s", cmd, url);
	url[strcspn(url, "\n")] = '\0';
	int port = support_free_port();
	snprintf(args, sizeof args, "%s -Q %s -c 1 -P threads --metrics-port %d --broker %s",
		 WORKER_PLUGINS, worker_test_queue(0, "healthz"), port, url);
	pid_t w = worker_test_start(args);
	cr_assert(worker_test_wait_log(w, "ready", 20000), "worker on %s never got ready", url);
	cr_assert(wait_status(port, "/healthz", 200, 5000), "/healthz never said 200");

	snprintf(cmd, sizeof cmd, "%s stop --name %s 2>&1", RABBIT_LOCAL, node);
	char out[1024];
	cr_assert_eq(support_run(cmd, out, sizeof out), 0, "%s: %s", cmd, out);
	cr_assert(wait_status(port, "/healthz", 503, 15000), "/healthz still not 503");
	char body[256];
	cr_expect_eq(http_get(port, "/metrics", body, sizeof body), 200,
		     "/metrics answers while the loop reconnects");
}
