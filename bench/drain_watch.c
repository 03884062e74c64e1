/* bench/drain_watch.c - times one consumer's drain of a queue for
 * bench/worker.sh, the same way for every peer, and samples its memory.
 *
 * A passive queue.declare every POLL_MS returns the queue's ready count. The
 * drain starts at the first poll that sees fewer than N ready (the consumer
 * took its first prefetch) and ends at the first poll that sees 0, so a
 * consumer's start-up (Celery's takes seconds) is not counted. Messages
 * still unacked at that moment (at most the prefetch) are not in the ready
 * count: worker.sh checks with rabbitmqctl that every message was acked
 * before it accepts the figure.
 *
 * Memory: every RSS_EVERY polls it sums VmRSS and VmHWM (/proc/<pid>/status)
 * and Pss (/proc/<pid>/smaps_rollup) over PID and all its descendants
 * (/proc/<pid>/stat gives the parent), and keeps the peaks. VmHWM is each
 * process's own high-water mark, so its sum counts a page shared by the
 * parent and its prefork children once per process. Pss charges every page
 * to the processes mapping it in equal parts (a library page shared with
 * unrelated processes on the machine too), so the summed Pss is what the
 * tree costs the machine; there is no high-water mark for it, so its peak is
 * the highest sample.
 *
 *   drain_watch HOST PORT QUEUE N PID TIMEOUT_S
 * prints "drained N in S s: R tasks/s rss_kb K hwm_kb H pss_kb S procs P".
 * Built by bench/worker.sh with plain `cc ... -lrabbitmq`; not a test.
 */
#if __has_include(<rabbitmq-c/amqp.h>)
#include <rabbitmq-c/amqp.h>
#include <rabbitmq-c/tcp.h>
#else
#include <amqp.h>
#include <amqp_tcp_socket.h>
#endif
#include <dirent.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define POLL_MS 5
#define RSS_EVERY 4
#define MAX_PROCS 4096

static void die_on(int bad, const char *what)
{
	if (bad) {
		fprintf(stderr, "drain_watch: %s failed\n", what);
		exit(1);
	}
}

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* The parent of pid from /proc/pid/stat ("pid (comm) state ppid ..."; comm
 * may hold spaces and parentheses, so parse after the last ')'). */
static long parent_of(long pid)
{
	char path[64], buf[1024];
	snprintf(path, sizeof path, "/proc/%ld/stat", pid);
	FILE *f = fopen(path, "r");
	if (!f)
		return -1;
	size_t n = fread(buf, 1, sizeof buf - 1, f);
	fclose(f);
	buf[n] = '\0';
	char *p = strrchr(buf, ')');
	long ppid = -1;
	if (!p || sscanf(p + 1, " %*c %ld", &ppid) != 1)
		return -1;
	return ppid;
}

/* VmRSS and VmHWM of one process, in kB (0 when it is gone). */
static void mem_of(long pid, long *rss, long *hwm)
{
	char path[64], line[256];
	*rss = *hwm = 0;
	snprintf(path, sizeof path, "/proc/%ld/status", pid);
	FILE *f = fopen(path, "r");
	if (!f)
		return;
	while (fgets(line, sizeof line, f)) {
		if (!strncmp(line, "VmRSS:", 6))
			*rss = atol(line + 6);
		else if (!strncmp(line, "VmHWM:", 6))
			*hwm = atol(line + 6);
	}
	fclose(f);
}

/* Pss of one process, in kB (0 when it is gone). */
static long pss_of(long pid)
{
	char path[64], line[256];
	long pss = 0;
	snprintf(path, sizeof path, "/proc/%ld/smaps_rollup", pid);
	FILE *f = fopen(path, "r");
	if (!f)
		return 0;
	while (fgets(line, sizeof line, f))
		if (!strncmp(line, "Pss:", 4)) {
			pss = atol(line + 4);
			break;
		}
	fclose(f);
	return pss;
}

/* Sums memory over root and its descendants; returns how many processes. */
static int tree_mem(long root, long *rss, long *hwm, long *pss)
{
	static long pids[MAX_PROCS], ppids[MAX_PROCS];
	static long tree[MAX_PROCS];
	int n = 0, nt = 0;
	DIR *d = opendir("/proc");
	struct dirent *e;
	while (d && (e = readdir(d)) && n < MAX_PROCS) {
		char *end;
		long pid = strtol(e->d_name, &end, 10);
		if (*end || pid <= 0)
			continue;
		pids[n] = pid;
		ppids[n++] = parent_of(pid);
	}
	if (d)
		closedir(d);
	tree[nt++] = root;
	for (int i = 0; i < nt; i++) /* breadth first: children of tree[i] */
		for (int k = 0; k < n && nt < MAX_PROCS; k++)
			if (ppids[k] == tree[i])
				tree[nt++] = pids[k];
	*rss = *hwm = *pss = 0;
	int alive = 0;
	for (int i = 0; i < nt; i++) {
		long r, h;
		mem_of(tree[i], &r, &h);
		*rss += r;
		*hwm += h;
		if (r > 0)
			*pss += pss_of(tree[i]);
		alive += r > 0;
	}
	return alive;
}

int main(int argc, char **argv)
{
	if (argc != 7) {
		fprintf(stderr, "usage: drain_watch HOST PORT QUEUE N PID TIMEOUT_S\n");
		return 64;
	}
	const char *host = argv[1], *queue = argv[3];
	int port = atoi(argv[2]);
	unsigned long n = strtoul(argv[4], NULL, 10);
	long pid = atol(argv[5]);
	double timeout = atof(argv[6]);
	amqp_connection_state_t c = amqp_new_connection();
	amqp_socket_t *s = amqp_tcp_socket_new(c);
	die_on(amqp_socket_open(s, host, port) != AMQP_STATUS_OK, "connect");
	die_on(amqp_login(c, "/", 0, 131072, 60, AMQP_SASL_METHOD_PLAIN, "guest", "guest").reply_type !=
		       AMQP_RESPONSE_NORMAL, "login");
	amqp_channel_open(c, 1);
	die_on(amqp_get_rpc_reply(c).reply_type != AMQP_RESPONSE_NORMAL, "channel open");

	double t_begin = now_s(), t0 = 0, t1 = 0;
	long rss_peak = 0, hwm_peak = 0, pss_peak = 0;
	int procs_peak = 0;
	const struct timespec nap = {0, POLL_MS * 1000000L};
	for (unsigned long i = 0;; i++) {
		amqp_queue_declare_ok_t *ok = amqp_queue_declare(c, 1, amqp_cstring_bytes(queue), 1,
								 0, 0, 0, amqp_empty_table);
		die_on(!ok, "passive queue.declare");
		double t = now_s();
		if (!t0 && ok->message_count < n)
			t0 = t;
		if (t0 && ok->message_count == 0) {
			t1 = t;
			break;
		}
		if (i % RSS_EVERY == 0) {
			long rss, hwm, pss;
			int procs = tree_mem(pid, &rss, &hwm, &pss);
			if (!procs) {
				fprintf(stderr, "drain_watch: process %ld is gone, %u still ready\n",
					pid, ok->message_count);
				return 1;
			}
			rss_peak = rss > rss_peak ? rss : rss_peak;
			hwm_peak = hwm > hwm_peak ? hwm : hwm_peak;
			pss_peak = pss > pss_peak ? pss : pss_peak;
			procs_peak = procs > procs_peak ? procs : procs_peak;
		}
		if (t - t_begin > timeout) {
			fprintf(stderr, "drain_watch: not drained after %.0f s (%u ready)\n", timeout,
				ok->message_count);
			return 1;
		}
		nanosleep(&nap, NULL);
	}
	/* One last sample: the peak is often at the end. */
	long rss, hwm, pss;
	int procs = tree_mem(pid, &rss, &hwm, &pss);
	rss_peak = rss > rss_peak ? rss : rss_peak;
	hwm_peak = hwm > hwm_peak ? hwm : hwm_peak;
	pss_peak = pss > pss_peak ? pss : pss_peak;
	procs_peak = procs > procs_peak ? procs : procs_peak;
	double secs = t1 - t0;
	printf("drained %lu in %.3f s: %.0f tasks/s rss_kb %ld hwm_kb %ld pss_kb %ld procs %d\n", n,
	       secs, secs > 0 ? n / secs : 0.0, rss_peak, hwm_peak, pss_peak, procs_peak);
	amqp_channel_close(c, 1, AMQP_REPLY_SUCCESS);
	amqp_connection_close(c, AMQP_REPLY_SUCCESS);
	amqp_destroy_connection(c);
	return 0;
}
