/* worker/metrics.c - the worker's Prometheus endpoint: /metrics in the text
 * exposition format (0.0.4) and /healthz, served by libmicrohttpd.
 *
 * Threading. libmicrohttpd runs one thread of its own
 * (MHD_USE_AUTO_INTERNAL_THREAD) and calls answer() there; the loop thread
 * owns the rest of the worker. The two threads share exactly one struct
 * metrics, and nothing else of the worker:
 *  - scalar counters and gauges are C11 atomics with relaxed order: the loop
 *    thread adds or stores, the HTTP thread loads. A scrape may mix values
 *    from slightly different instants, which Prometheus tolerates.
 *  - the per-task table (names, counts by final state, retries, runtime
 *    histogram) grows as task names are seen, so it lives under `lock`. The
 *    loop thread holds it for one update per finished task, the HTTP thread
 *    while it renders the table into memory; never across I/O.
 *  - `opts` and `bind` are written before the daemon starts and
 *    only read afterwards.
 * The loop thread never waits for the HTTP thread, except in metrics_free,
 * which stops the daemon (libmicrohttpd joins its thread) before freeing.
 *
 * /healthz is 200 while the loop last reported the broker connected and a
 * task consumer active, and made that report less than METRICS_STALE_MS ago:
 * the loop blocks inside the broker adapter while it reconnects, so a stale
 * report is itself the sign that no task is being served.
 *
 * Process metrics come from /proc at scrape time, on the HTTP thread.
 *
 * libmicrohttpd is dlopen'd by metrics_new, not linked. Debian builds it
 * against gnutls, which brings p11-kit, nettle, hogweed, gmp, tasn1,
 * unistring and idn2 along: about 2.5 MB resident in the parent and 0.5 MB
 * in every prefork child, in every worker, for an endpoint that is off
 * unless configured. <microhttpd.h> still gives the types and constants
 * (libmicrohttpd-dev stays a build dependency); the few functions called
 * here go through the table `mhd`. The library is loaded once per process
 * and never unloaded: the worker serves until it exits, and gnutls is not
 * made to be unloaded (p11-kit is NODELETE). A worker asked to serve metrics
 * that cannot load it fails to start, naming the library and dlerror().
 */
#include <arpa/inet.h>
#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <microhttpd.h>

#include "worker.h"

#define METRICS_STALE_MS 3000   /* a loop report older than this is unhealthy */
#define METRICS_MAX_TASKS 512   /* distinct task labels; the rest are "_other_" */
#define METRICS_OTHER_TASK "_other_"
#define METRICS_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

/* Prometheus' default buckets, stretched to a minute for slow tasks. */
static const double bucket_le[] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
				   1, 2.5, 5, 10, 30, 60};
#define N_BUCKETS (sizeof bucket_le / sizeof bucket_le[0])

/* The final states warren_tasks_total counts (RETRY is not final: it is
 * warren_task_retries_total). */
static const char *const state_names[] = {"SUCCESS", "FAILURE", "REVOKED", "REJECTED"};
#define N_STATES (sizeof state_names / sizeof state_names[0])

typedef struct task_stats {
	char *name;
	uint64_t by_state[N_STATES];
	uint64_t retries;
	uint64_t bucket[N_BUCKETS]; /* per bucket, made cumulative when rendered */
	uint64_t runs;
	double runtime_sum;
} task_stats;

struct metrics {
	struct MHD_Daemon *daemon;
	metrics_options opts;
	char bind[64];

	pthread_mutex_t lock;       /* guards tasks, n_tasks, cap_tasks */
	task_stats *tasks;
	size_t n_tasks, cap_tasks;

	atomic_uint_fast64_t dead_lettered, reconnects, cancelled;
	atomic_int_fast64_t in_flight, prefetched;
	atomic_bool connected, consuming;
	atomic_int_fast64_t reported_ns; /* CLOCK_MONOTONIC of the last metrics_set */
};

/* ---- the loop thread's side ---------------------------------------------- */

static int state_index(const char *state)
{
	for (size_t i = 0; i < N_STATES; i++)
		if (strcmp(state, state_names[i]) == 0)
			return (int)i;
	return -1;
}

/* The row for name, created if there is room; the "_other_" row once the
 * table is full. Called with the lock held. NULL when out of memory. */
static task_stats *task_row(metrics *m, const char *name)
{
	if (!name)
		name = METRICS_OTHER_TASK;
	for (size_t i = 0; i < m->n_tasks; i++)
		if (strcmp(m->tasks[i].name, name) == 0)
			return &m->tasks[i];
	if (m->n_tasks >= METRICS_MAX_TASKS && strcmp(name, METRICS_OTHER_TASK) != 0)
		return task_row(m, METRICS_OTHER_TASK);
	if (m->n_tasks == m->cap_tasks) {
		size_t cap = m->cap_tasks ? 2 * m->cap_tasks : 16;
		task_stats *t = realloc(m->tasks, cap * sizeof *t);
		if (!t)
			return NULL;
		m->tasks = t;
		m->cap_tasks = cap;
	}
	task_stats *row = &m->tasks[m->n_tasks];
	memset(row, 0, sizeof *row);
	row->name = strdup(name);
	if (!row->name)
		return NULL;
	m->n_tasks++;
	return row;
}

static void observe(task_stats *row, double runtime)
{
	if (runtime < 0)
		return;
	size_t b = 0;
	while (b < N_BUCKETS && runtime > bucket_le[b])
		b++;
	if (b < N_BUCKETS)
		row->bucket[b]++;
	row->runs++;
	row->runtime_sum += runtime;
}

void metrics_task_done(metrics *m, const char *task, const char *state, double runtime)
{
	int s = state ? state_index(state) : -1;
	if (!m || s < 0)
		return;
	pthread_mutex_lock(&m->lock);
	task_stats *row = task_row(m, task);
	if (row) {
		row->by_state[s]++;
		observe(row, runtime);
	}
	pthread_mutex_unlock(&m->lock);
}

void metrics_task_retried(metrics *m, const char *task, double runtime)
{
	if (!m)
		return;
	pthread_mutex_lock(&m->lock);
	task_stats *row = task_row(m, task);
	if (row) {
		row->retries++;
		observe(row, runtime);
	}
	pthread_mutex_unlock(&m->lock);
}

void metrics_dead_lettered(metrics *m)
{
	if (m)
		atomic_fetch_add_explicit(&m->dead_lettered, 1, memory_order_relaxed);
}

void metrics_reconnected(metrics *m)
{
	if (m)
		atomic_fetch_add_explicit(&m->reconnects, 1, memory_order_relaxed);
}

void metrics_consumer_cancelled(metrics *m)
{
	if (m)
		atomic_fetch_add_explicit(&m->cancelled, 1, memory_order_relaxed);
}

void metrics_set(metrics *m, const metrics_gauges *g)
{
	if (!m)
		return;
	atomic_store_explicit(&m->in_flight, g->in_flight, memory_order_relaxed);
	atomic_store_explicit(&m->prefetched, g->prefetched, memory_order_relaxed);
	atomic_store_explicit(&m->connected, g->connected, memory_order_relaxed);
	atomic_store_explicit(&m->consuming, g->consuming, memory_order_relaxed);
	atomic_store_explicit(&m->reported_ns, task_monotonic_ns(), memory_order_relaxed);
}

/* ---- rendering (HTTP thread, and tests) ------------------------------------- */

typedef struct out_buf {
	char *p;
	size_t len, cap;
	bool failed;
} out_buf;

static void out_printf(out_buf *o, const char *fmt, ...) WARREN_PRINTF(2, 3);

static void out_printf(out_buf *o, const char *fmt, ...)
{
	for (int attempt = 0; attempt < 2 && !o->failed; attempt++) {
		va_list ap;
		va_start(ap, fmt);
		int n = vsnprintf(o->p ? o->p + o->len : NULL, o->p ? o->cap - o->len : 0, fmt, ap);
		va_end(ap);
		if (n < 0) {
			o->failed = true;
			return;
		}
		if (o->p && o->len + (size_t)n < o->cap) {
			o->len += (size_t)n;
			return;
		}
		size_t cap = o->cap ? o->cap : 4096;
		while (cap <= o->len + (size_t)n)
			cap *= 2;
		char *p = realloc(o->p, cap);
		if (!p) {
			o->failed = true;
			return;
		}
		o->p = p;
		o->cap = cap;
	}
}

/* A label value with \, " and newline escaped as the text format wants. */
static void escape_label(const char *s, char *buf, size_t cap)
{
	size_t o = 0;
	for (; *s && o + 3 < cap; s++) {
		if (*s == '\\' || *s == '"') {
			buf[o++] = '\\';
			buf[o++] = *s;
		} else if (*s == '\n') {
			buf[o++] = '\\';
			buf[o++] = 'n';
		} else {
			buf[o++] = *s;
		}
	}
	buf[o] = '\0';
}

static void family(out_buf *o, const char *name, const char *type, const char *help)
{
	out_printf(o, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void render_task_states(out_buf *o, const metrics *m)
{
	char label[600];
	family(o, "warren_tasks_total", "counter",
	       "Tasks that reached a final state, by task name and state.");
	for (size_t i = 0; i < m->n_tasks; i++) {
		escape_label(m->tasks[i].name, label, sizeof label);
		for (size_t s = 0; s < N_STATES; s++)
			if (m->tasks[i].by_state[s])
				out_printf(o, "warren_tasks_total{task=\"%s\",state=\"%s\"} %llu\n",
					   label, state_names[s],
					   (unsigned long long)m->tasks[i].by_state[s]);
	}
	family(o, "warren_task_retries_total", "counter",
	       "Retries scheduled (explicit and autoretry), by task name.");
	for (size_t i = 0; i < m->n_tasks; i++) {
		if (!m->tasks[i].retries)
			continue;
		escape_label(m->tasks[i].name, label, sizeof label);
		out_printf(o, "warren_task_retries_total{task=\"%s\"} %llu\n", label,
			   (unsigned long long)m->tasks[i].retries);
	}
}

static void render_histogram(out_buf *o, const metrics *m)
{
	char label[600];
	family(o, "warren_task_runtime_seconds", "histogram",
	       "How long task handlers ran, by task name.");
	for (size_t i = 0; i < m->n_tasks; i++) {
		const task_stats *t = &m->tasks[i];
		if (!t->runs)
			continue;
		escape_label(t->name, label, sizeof label);
		uint64_t cum = 0;
		for (size_t b = 0; b < N_BUCKETS; b++) {
			cum += t->bucket[b];
			out_printf(o, "warren_task_runtime_seconds_bucket{task=\"%s\",le=\"%g\"} %llu\n",
				   label, bucket_le[b], (unsigned long long)cum);
		}
		out_printf(o, "warren_task_runtime_seconds_bucket{task=\"%s\",le=\"+Inf\"} %llu\n",
			   label, (unsigned long long)t->runs);
		out_printf(o, "warren_task_runtime_seconds_sum{task=\"%s\"} %.9g\n", label,
			   t->runtime_sum);
		out_printf(o, "warren_task_runtime_seconds_count{task=\"%s\"} %llu\n", label,
			   (unsigned long long)t->runs);
	}
}

/* Live children of this process (the prefork pool's), from /proc. */
static long children_alive(void)
{
	DIR *d = opendir("/proc");
	if (!d)
		return -1;
	long n = 0;
	pid_t self = getpid();
	for (struct dirent *e; (e = readdir(d));) {
		if (e->d_name[0] < '1' || e->d_name[0] > '9')
			continue;
		char path[300], buf[512];
		snprintf(path, sizeof path, "/proc/%s/stat", e->d_name);
		FILE *f = fopen(path, "r");
		if (!f)
			continue;
		size_t len = fread(buf, 1, sizeof buf - 1, f);
		fclose(f);
		buf[len] = '\0';
		const char *rp = strrchr(buf, ')');
		char state;
		int ppid;
		if (rp && sscanf(rp + 1, " %c %d", &state, &ppid) == 2 && ppid == self &&
		    state != 'Z' && state != 'X')
			n++;
	}
	closedir(d);
	return n;
}

static void render_scalars(out_buf *o, const metrics *m)
{
	family(o, "warren_tasks_in_flight", "gauge",
	       "Tasks handed to the pool and not finished (running or queued there).");
	out_printf(o, "warren_tasks_in_flight %lld\n",
		   (long long)atomic_load_explicit(&m->in_flight, memory_order_relaxed));
	family(o, "warren_tasks_prefetched", "gauge",
	       "Deliveries held by the worker outside the pool (rate limits, eta parking).");
	out_printf(o, "warren_tasks_prefetched %lld\n",
		   (long long)atomic_load_explicit(&m->prefetched, memory_order_relaxed));
	family(o, "warren_dead_lettered_total", "counter",
	       "Messages copied to warren.dead (undecodable, unknown task, ...).");
	out_printf(o, "warren_dead_lettered_total %llu\n",
		   (unsigned long long)atomic_load_explicit(&m->dead_lettered,
							    memory_order_relaxed));
	family(o, "warren_broker_reconnects_total", "counter",
	       "Times the broker connection was lost and restored.");
	out_printf(o, "warren_broker_reconnects_total %llu\n",
		   (unsigned long long)atomic_load_explicit(&m->reconnects, memory_order_relaxed));
	family(o, "warren_broker_connected", "gauge",
	       "1 while the loop reports the broker connection up.");
	out_printf(o, "warren_broker_connected %d\n",
		   atomic_load_explicit(&m->connected, memory_order_relaxed) ? 1 : 0);
	long alive = m->opts.pool == POOL_PREFORK ? children_alive() : m->opts.concurrency;
	family(o, "warren_pool_children_alive", "gauge",
	       "Pool processes alive (prefork), or pool threads (threads).");
	out_printf(o, "warren_pool_children_alive %ld\n", alive < 0 ? 0 : alive);
	family(o, "warren_pool_concurrency", "gauge", "The pool size the worker was started with.");
	out_printf(o, "warren_pool_concurrency %d\n", m->opts.concurrency);
}

static double boot_time(void)
{
	FILE *f = fopen("/proc/stat", "r");
	char line[256];
	double bt = 0;
	while (f && fgets(line, sizeof line, f))
		if (sscanf(line, "btime %lf", &bt) == 1)
			break;
	if (f)
		fclose(f);
	return bt;
}

static long open_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	if (!d)
		return -1;
	long n = 0;
	for (struct dirent *e; (e = readdir(d));)
		if (e->d_name[0] != '.')
			n++;
	closedir(d);
	return n - 1; /* the directory's own fd */
}

/* Prometheus' standard process_* metrics, from /proc/self/stat. */
static void render_process(out_buf *o)
{
	char buf[1024];
	FILE *f = fopen("/proc/self/stat", "r");
	size_t len = f ? fread(buf, 1, sizeof buf - 1, f) : 0;
	if (f)
		fclose(f);
	buf[len] = '\0';
	const char *rp = strrchr(buf, ')');
	unsigned long utime, stime, vsize;
	unsigned long long start;
	long rss;
	/* fields 3.. after the name: state ppid pgrp session tty tpgid flags
	 * minflt cminflt majflt cmajflt utime stime cutime cstime priority nice
	 * threads itrealvalue starttime vsize rss */
	if (!rp || sscanf(rp + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu %*d %*d "
			  "%*d %*d %*d %*d %llu %lu %ld", &utime, &stime, &start, &vsize, &rss) != 5)
		return;
	double hz = (double)sysconf(_SC_CLK_TCK);
	long page = sysconf(_SC_PAGESIZE);
	struct rlimit rl;
	family(o, "process_cpu_seconds_total", "counter", "User and system CPU time in seconds.");
	out_printf(o, "process_cpu_seconds_total %.2f\n", (double)(utime + stime) / hz);
	family(o, "process_resident_memory_bytes", "gauge", "Resident memory size in bytes.");
	out_printf(o, "process_resident_memory_bytes %ld\n", rss * page);
	family(o, "process_virtual_memory_bytes", "gauge", "Virtual memory size in bytes.");
	out_printf(o, "process_virtual_memory_bytes %lu\n", vsize);
	family(o, "process_start_time_seconds", "gauge",
	       "Start time of the process since the epoch in seconds.");
	out_printf(o, "process_start_time_seconds %.2f\n", boot_time() + (double)start / hz);
	family(o, "process_open_fds", "gauge", "Open file descriptors.");
	out_printf(o, "process_open_fds %ld\n", open_fds());
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY) {
		family(o, "process_max_fds", "gauge", "Maximum number of open file descriptors.");
		out_printf(o, "process_max_fds %llu\n", (unsigned long long)rl.rlim_cur);
	}
}

char *metrics_render(metrics *m)
{
	out_buf o = {0};
	pthread_mutex_lock(&m->lock);
	render_task_states(&o, m);
	render_histogram(&o, m);
	pthread_mutex_unlock(&m->lock);
	render_scalars(&o, m);
	render_process(&o);
	if (o.failed || !o.p) {
		free(o.p);
		return NULL;
	}
	return o.p;
}

/* ---- libmicrohttpd, loaded on demand ------------------------------------------ */

/* The sonames tried in order: the runtime package's (libmicrohttpd12),
 * then the development symlink. Bump the first with libmicrohttpd's ABI
 * (its soname major), which <microhttpd.h> does not tell. */
static const char *const mhd_sonames[] = {"libmicrohttpd.so.12", "libmicrohttpd.so"};
#define N_SONAMES (sizeof mhd_sonames / sizeof mhd_sonames[0])

/* Every libmicrohttpd function metrics.c calls. __typeof__ takes each type
 * from <microhttpd.h>, so a pointer cannot disagree with the prototype. */
typedef struct mhd_api {
	void *handle;
	__typeof__(MHD_start_daemon) *start_daemon;
	__typeof__(MHD_stop_daemon) *stop_daemon;
	__typeof__(MHD_create_response_from_buffer) *create_response_from_buffer;
	__typeof__(MHD_add_response_header) *add_response_header;
	__typeof__(MHD_queue_response) *queue_response;
	__typeof__(MHD_destroy_response) *destroy_response;
} mhd_api;

static const struct {
	const char *name;
	size_t offset;
} mhd_symbols[] = {
	{"MHD_start_daemon", offsetof(mhd_api, start_daemon)},
	{"MHD_stop_daemon", offsetof(mhd_api, stop_daemon)},
	{"MHD_create_response_from_buffer", offsetof(mhd_api, create_response_from_buffer)},
	{"MHD_add_response_header", offsetof(mhd_api, add_response_header)},
	{"MHD_queue_response", offsetof(mhd_api, queue_response)},
	{"MHD_destroy_response", offsetof(mhd_api, destroy_response)},
};

/* Filled once under mhd_lock, before the first daemon starts (and with it
 * the HTTP thread that reads it), then only read. */
static pthread_mutex_t mhd_lock = PTHREAD_MUTEX_INITIALIZER;
static mhd_api mhd;

void *(*metrics_dlopen)(const char *file, int mode) = dlopen;

static int mhd_open(warren_error *err)
{
	char why[160] = "";
	const char *soname = NULL;
	void *handle = NULL;
	for (size_t i = 0; i < N_SONAMES && !handle; i++) {
		soname = mhd_sonames[i];
		dlerror(); /* clear a stale message */
		handle = metrics_dlopen(soname, RTLD_NOW | RTLD_LOCAL);
		if (!handle && i == 0) {
			/* The runtime soname's reason is the one to report: the
			 * fallback is only there on machines with the -dev package. */
			const char *e = dlerror();
			snprintf(why, sizeof why, "%s", e ? e : "unknown dlopen error");
		}
	}
	if (!handle)
		return warren_error_set(err, WARREN_ECONFIG,
					"metrics: cannot load '%s' to serve /metrics: %s", mhd_sonames[0],
					why);
	int rc;
	mhd_api api = {.handle = handle};
	for (size_t i = 0; i < sizeof mhd_symbols / sizeof mhd_symbols[0]; i++) {
		dlerror();
		void *sym = dlsym(handle, mhd_symbols[i].name);
		if (!sym) {
			const char *e = dlerror();
			rc = warren_error_set(err, WARREN_ECONFIG, "metrics: '%s' has no '%s': %s",
					      soname, mhd_symbols[i].name, e ? e : "null symbol");
			goto out_close;
		}
		/* dlsym() returns void *; ISO C has no cast from it to a function
		 * pointer, POSIX guarantees the representation: copy the bits. */
		memcpy((char *)&api + mhd_symbols[i].offset, &sym, sizeof sym);
	}
	mhd = api;
	return 0;
out_close:
	dlclose(handle);
	return rc;
}

static int mhd_load(warren_error *err)
{
	pthread_mutex_lock(&mhd_lock);
	int rc = mhd.handle ? 0 : mhd_open(err);
	pthread_mutex_unlock(&mhd_lock);
	return rc;
}

/* ---- HTTP (libmicrohttpd's thread) ------------------------------------------ */

static bool healthy(const metrics *m, const char **why)
{
	int64_t age_ms = (task_monotonic_ns() -
			  atomic_load_explicit(&m->reported_ns, memory_order_relaxed)) / 1000000;
	*why = "ok";
	if (!atomic_load_explicit(&m->connected, memory_order_relaxed))
		*why = "broker not connected";
	else if (age_ms > METRICS_STALE_MS)
		*why = "worker loop not reporting (reconnecting to the broker?)";
	else if (!atomic_load_explicit(&m->consuming, memory_order_relaxed) ||
		 atomic_load_explicit(&m->cancelled, memory_order_relaxed) >= m->opts.consumers)
		*why = "not consuming";
	return strcmp(*why, "ok") == 0;
}

static enum MHD_Result respond(struct MHD_Connection *c, unsigned status, char *body,
			       const char *type)
{
	if (!body)
		return MHD_NO; /* out of memory: libmicrohttpd drops the connection */
	struct MHD_Response *r =
		mhd.create_response_from_buffer(strlen(body), body, MHD_RESPMEM_MUST_FREE);
	if (!r) {
		free(body);
		return MHD_NO;
	}
	mhd.add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, type);
	enum MHD_Result ret = mhd.queue_response(c, status, r);
	mhd.destroy_response(r);
	return ret;
}

static char *text(const char *fmt, const char *arg)
{
	size_t n = strlen(fmt) + strlen(arg) + 1;
	char *s = malloc(n);
	if (s)
		snprintf(s, n, fmt, arg);
	return s;
}

static enum MHD_Result answer(void *cls, struct MHD_Connection *c, const char *url,
			      const char *method, const char *version, const char *upload,
			      size_t *upload_size, void **con_cls)
{
	metrics *m = cls;
	(void)version, (void)upload, (void)upload_size, (void)con_cls;
	if (strcmp(method, MHD_HTTP_METHOD_GET) != 0 && strcmp(method, MHD_HTTP_METHOD_HEAD) != 0)
		return respond(c, MHD_HTTP_METHOD_NOT_ALLOWED, text("%s\n", "method not allowed"),
			       "text/plain");
	if (strcmp(url, "/metrics") == 0)
		return respond(c, MHD_HTTP_OK, metrics_render(m), METRICS_CONTENT_TYPE);
	if (strcmp(url, "/healthz") == 0) {
		const char *why;
		bool ok = healthy(m, &why);
		return respond(c, ok ? MHD_HTTP_OK : MHD_HTTP_SERVICE_UNAVAILABLE, text("%s\n", why),
			       "text/plain");
	}
	return respond(c, MHD_HTTP_NOT_FOUND, text("no %s here: try /metrics or /healthz\n", url),
		       "text/plain");
}

/* ---- lifecycle ----------------------------------------------------------------- */

static int listen_addr(const metrics *m, struct sockaddr_storage *ss, unsigned *flags,
		       warren_error *err)
{
	memset(ss, 0, sizeof *ss);
	struct sockaddr_in *in4 = (struct sockaddr_in *)ss;
	struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ss;
	if (inet_pton(AF_INET, m->bind, &in4->sin_addr) == 1) {
		in4->sin_family = AF_INET;
		in4->sin_port = htons((uint16_t)m->opts.port);
		return 0;
	}
	if (inet_pton(AF_INET6, m->bind, &in6->sin6_addr) == 1) {
		in6->sin6_family = AF_INET6;
		in6->sin6_port = htons((uint16_t)m->opts.port);
		*flags |= MHD_USE_IPv6;
		return 0;
	}
	return warren_error_set(err, WARREN_ECONFIG,
				"metrics: bind address '%s': not an IPv4 or IPv6 address", m->bind);
}

int metrics_new(const metrics_options *o, metrics **out, warren_error *err)
{
	int rc;
	if (o->port <= 0 || o->port > 65535)
		return warren_error_set(err, WARREN_ECONFIG, "metrics: port %d out of range",
					o->port);
	rc = mhd_load(err);
	if (rc != 0)
		return rc;
	metrics *m = calloc(1, sizeof *m);
	if (!m)
		return warren_error_set(err, WARREN_ENOMEM, "metrics: out of memory");
	m->opts = *o;
	snprintf(m->bind, sizeof m->bind, "%s", o->bind ? o->bind : "127.0.0.1");
	m->opts.bind = m->bind;
	if (pthread_mutex_init(&m->lock, NULL) != 0) {
		rc = warren_error_set(err, WARREN_ENOMEM, "metrics: cannot create a mutex");
		goto out_free;
	}
	struct sockaddr_storage ss;
	unsigned flags = MHD_USE_AUTO_INTERNAL_THREAD;
	rc = listen_addr(m, &ss, &flags, err);
	if (rc != 0)
		goto out_mutex;
	m->daemon = mhd.start_daemon(flags, (uint16_t)o->port, NULL, NULL, answer, m,
				     MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&ss,
				     MHD_OPTION_CONNECTION_LIMIT, (unsigned)32,
				     MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)10, MHD_OPTION_END);
	if (!m->daemon) {
		rc = warren_error_set(err, WARREN_ECONFIG, "metrics: cannot listen on %s port %d: %s",
				      m->bind, o->port, errno ? strerror(errno) : "libmicrohttpd failed");
		goto out_mutex;
	}
	*out = m;
	return 0;
out_mutex:
	pthread_mutex_destroy(&m->lock);
out_free:
	free(m);
	return rc;
}

void metrics_free(metrics *m)
{
	if (!m)
		return;
	if (m->daemon)
		mhd.stop_daemon(m->daemon); /* joins the HTTP thread */
	for (size_t i = 0; i < m->n_tasks; i++)
		free(m->tasks[i].name);
	free(m->tasks);
	pthread_mutex_destroy(&m->lock);
	free(m);
}
