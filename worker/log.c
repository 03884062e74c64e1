/* worker/log.c - the worker's log: one line per event, text or JSON.
 *
 * Text lines read like Celery's ("[2026-11-27 10:18:50,001: INFO/celery@h]
 * Task math.add[id] succeeded in 0.000120s"); JSON lines carry the same
 * message plus task id, name, state and runtime as separate keys, so a log
 * shipper needs no regular expression. Each line is formatted into a stack
 * buffer and written with one fwrite() on an unbuffered-by-line stream, so
 * lines from different threads never interleave mid-line.
 *
 * The settings are statics written by main() before any thread starts (see
 * worker.h); level and format may change later on a SIGHUP reload, so they
 * are relaxed atomics (a line being formatted meanwhile may use either the
 * old or the new value; either is fine). Nothing else here is mutable.
 */
#include <stdarg.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "worker.h"

#define LOG_LINE_MAX 4096

static atomic_int log_level = CONFIG_LOG_WARNING;   /* a config_log_level */
static atomic_int log_format = CONFIG_LOG_TEXT;     /* a config_log_format */
static char *log_hostname;
static FILE *log_out;

void log_setup(config_log_level level, config_log_format format, const char *hostname, FILE *out)
{
	log_set_level_format(level, format);
	free(log_hostname);
	log_hostname = hostname ? strdup(hostname) : NULL;
	log_out = out;
}

void log_set_level_format(config_log_level level, config_log_format format)
{
	atomic_store_explicit(&log_level, (int)level, memory_order_relaxed);
	atomic_store_explicit(&log_format, (int)format, memory_order_relaxed);
}

void log_teardown(void)
{
	free(log_hostname);
	log_hostname = NULL;
}

bool log_enabled(config_log_level level)
{
	return (int)level >= atomic_load_explicit(&log_level, memory_order_relaxed);
}

static const char *level_upper(config_log_level l)
{
	static const char *const names[] = {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"};
	return (unsigned)l < 5 ? names[l] : "?";
}

int log_level_parse(const char *name, config_log_level *out)
{
	static const char *const names[] = {"debug", "info", "warning", "error", "critical"};
	for (int i = 0; i < 5; i++)
		if (strcasecmp(name, names[i]) == 0) {
			*out = (config_log_level)i;
			return 0;
		}
	if (strcasecmp(name, "warn") == 0) {
		*out = CONFIG_LOG_WARNING;
		return 0;
	}
	if (strcasecmp(name, "fatal") == 0) {
		*out = CONFIG_LOG_CRITICAL;
		return 0;
	}
	return WARREN_EINVAL;
}

/* A bounded appender: once full it drops the rest, and `len` never passes
 * cap - 1, so the buffer always stays NUL-terminated. */
typedef struct out_buf {
	char *p;
	size_t cap, len;
} out_buf;

static void put(out_buf *o, const char *s, size_t n)
{
	if (o->len + 1 >= o->cap)
		return;
	size_t room = o->cap - 1 - o->len;
	if (n > room)
		n = room;
	memcpy(o->p + o->len, s, n);
	o->len += n;
	o->p[o->len] = '\0';
}

static void puts_(out_buf *o, const char *s)
{
	put(o, s, strlen(s));
}

static void putf(out_buf *o, const char *fmt, ...) WARREN_PRINTF(2, 3);
static void putf(out_buf *o, const char *fmt, ...)
{
	char tmp[128];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
	va_end(ap);
	if (n > 0)
		put(o, tmp, (size_t)n < sizeof tmp ? (size_t)n : sizeof tmp - 1);
}

/* A JSON string, escaped; control bytes as \u00XX. Bytes >= 0x80 pass as
 * they are (our messages are UTF-8 or already replaced). */
static void put_json_str(out_buf *o, const char *s)
{
	put(o, "\"", 1);
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;
		if (c == '"' || c == '\\') {
			char esc[2] = {'\\', (char)c};
			put(o, esc, 2);
		} else if (c == '\n') {
			put(o, "\\n", 2);
		} else if (c < 0x20) {
			putf(o, "\\u%04x", c);
		} else {
			put(o, (const char *)&c, 1);
		}
	}
	put(o, "\"", 1);
}

static void put_time(out_buf *o, const struct timespec *now, bool iso)
{
	struct tm tm;
	time_t secs = now->tv_sec;
	gmtime_r(&secs, &tm);
	char date[32];
	strftime(date, sizeof date, iso ? "%Y-%m-%dT%H:%M:%S" : "%Y-%m-%d %H:%M:%S", &tm);
	puts_(o, date);
	putf(o, iso ? ".%06ldZ" : ",%03ld", iso ? now->tv_nsec / 1000 : now->tv_nsec / 1000000);
}

static void format_text(out_buf *o, config_log_level level, const struct timespec *now,
			const char *hostname, const char *msg)
{
	puts_(o, "[");
	put_time(o, now, false);
	putf(o, ": %s/", level_upper(level));
	puts_(o, hostname ? hostname : "warren-worker");
	puts_(o, "] ");
	puts_(o, msg);
}

static void format_json(out_buf *o, config_log_level level, const struct timespec *now,
			const char *hostname, const log_fields *f, const char *msg)
{
	puts_(o, "{\"ts\":\"");
	put_time(o, now, true);
	putf(o, "\",\"level\":\"%s\"", level_upper(level));
	if (hostname) {
		puts_(o, ",\"hostname\":");
		put_json_str(o, hostname);
	}
	if (f && f->task_id) {
		puts_(o, ",\"task_id\":");
		put_json_str(o, f->task_id);
	}
	if (f && f->task_name) {
		puts_(o, ",\"task\":");
		put_json_str(o, f->task_name);
	}
	if (f && f->state) {
		puts_(o, ",\"state\":");
		put_json_str(o, f->state);
	}
	if (f && f->runtime >= 0)
		putf(o, ",\"runtime\":%.6f", f->runtime);
	puts_(o, ",\"msg\":");
	put_json_str(o, msg);
}

size_t log_format_line(char *buf, size_t cap, config_log_format format, config_log_level level,
		       const struct timespec *now, const char *hostname, const log_fields *f,
		       const char *msg)
{
	if (cap < 4) {
		if (cap)
			buf[0] = '\0';
		return 0;
	}
	/* Keep room for the closing "}\n" so a truncated JSON line still parses
	 * as far as its closing brace goes. */
	out_buf o = {.p = buf, .cap = cap - 3, .len = 0};
	buf[0] = '\0';
	if (format == CONFIG_LOG_JSON)
		format_json(&o, level, now, hostname, f, msg);
	else
		format_text(&o, level, now, hostname, msg);
	if (format == CONFIG_LOG_JSON && o.len + 1 >= o.cap && o.len > 0) {
		/* Cut inside the msg string: close it so the object stays valid. */
		while (o.len > 0 && buf[o.len - 1] == '\\')
			o.len--;
		buf[o.len++] = '"';
	}
	o.cap = cap;
	if (format == CONFIG_LOG_JSON)
		put(&o, "}", 1);
	put(&o, "\n", 1);
	return o.len;
}

void log_emit(config_log_level level, const log_fields *f, const char *fmt, ...)
{
	char msg[LOG_LINE_MAX];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	struct timespec now;
	clock_gettime(CLOCK_REALTIME, &now);
	char line[LOG_LINE_MAX + 512];
	config_log_format format =
		(config_log_format)atomic_load_explicit(&log_format, memory_order_relaxed);
	size_t n = log_format_line(line, sizeof line, format, level, &now, log_hostname, f, msg);
	FILE *out = log_out ? log_out : stderr;
	fwrite(line, 1, n, out);
	fflush(out);
}
