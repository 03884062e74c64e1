/* schemas/event.c - Celery monitoring events on the wire: building the JSON
 * bodies a worker publishes to the `celeryev` topic exchange, serializing them
 * byte for byte as Python's json.dumps does, and decoding what a monitor
 * (`warren events`) receives.
 *
 * The authority is Celery 5.2.6: events/event.py Event() (field order),
 * events/dispatcher.py (routing key, task.multi buffering, headers,
 * delivery_mode=1), worker/heartbeat.py (worker-* fields), worker/strategy.py
 * and worker/request.py (task-* fields), events/receiver.py (monitor queue)
 * and events/state.py (what a monitor reads). tests/interop/
 * test_control_events_celery.c feeds our events to Celery's own State.
 *
 * Uses jansson for the object model and for parsing, so the library must be
 * linked with -ljansson. Serializing is ours (json_dumps differs from Python
 * in float digits and \u escapes).
 *
 * Wire format note: the per-type field lists below (worker_fields(),
 * task_fields()) and the key order of Event() are the format; a change bumps
 * SCHEMA_EVENT_WIRE_VERSION in schemas.h and must pass the interop test.
 */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>
#include <time.h>

#include <jansson.h>

#include "schemas.h"

/* sw_ver when the caller gives none; the lead may pass -DWARREN_VERSION. */
#ifndef WARREN_VERSION
#define WARREN_VERSION "0.1.0"
#endif

/* ---- types and routing keys ---- */

static const char *const type_names[] = {
	[SCHEMA_EVENT_UNKNOWN] = NULL,
	[SCHEMA_EVENT_WORKER_ONLINE] = "worker-online",
	[SCHEMA_EVENT_WORKER_HEARTBEAT] = "worker-heartbeat",
	[SCHEMA_EVENT_WORKER_OFFLINE] = "worker-offline",
	[SCHEMA_EVENT_TASK_SENT] = "task-sent",
	[SCHEMA_EVENT_TASK_RECEIVED] = "task-received",
	[SCHEMA_EVENT_TASK_STARTED] = "task-started",
	[SCHEMA_EVENT_TASK_SUCCEEDED] = "task-succeeded",
	[SCHEMA_EVENT_TASK_FAILED] = "task-failed",
	[SCHEMA_EVENT_TASK_RETRIED] = "task-retried",
	[SCHEMA_EVENT_TASK_REJECTED] = "task-rejected",
	[SCHEMA_EVENT_TASK_REVOKED] = "task-revoked",
};
#define N_TYPES (sizeof type_names / sizeof type_names[0])

const char *schema_event_type_name(schema_event_type t)
{
	if ((unsigned)t >= N_TYPES)
		return NULL;
	return type_names[t];
}

schema_event_type schema_event_type_parse(const char *name)
{
	for (size_t i = 1; name && i < N_TYPES; i++)
		if (strcmp(name, type_names[i]) == 0)
			return (schema_event_type)i;
	return SCHEMA_EVENT_UNKNOWN;
}

bool schema_event_is_task(schema_event_type t)
{
	return t >= SCHEMA_EVENT_TASK_SENT && t <= SCHEMA_EVENT_TASK_REVOKED;
}

static bool is_worker_type(schema_event_type t)
{
	return t >= SCHEMA_EVENT_WORKER_ONLINE && t <= SCHEMA_EVENT_WORKER_OFFLINE;
}

int schema_event_routing_key(const char *type, char *buf, size_t cap,
			     warren_error *err)
{
	size_t n = type ? strlen(type) : 0;
	if (n == 0)
		return warren_error_set(err, WARREN_EINVAL, "event: empty type");
	if (n >= cap)
		return warren_error_set(err, WARREN_ELIMIT,
					"event '%s': routing key longer than %zu bytes",
					type, cap ? cap - 1 : 0);
	for (size_t i = 0; i < n; i++)
		buf[i] = type[i] == '-' ? '.' : type[i];
	buf[n] = '\0';
	return 0;
}

const char *schema_event_multi_routing_key(void)
{
	return "task.multi";
}

/* Seconds east of UTC for the local zone at `when`, from the difference of
 * the broken-down local and UTC times (tm_gmtoff is not POSIX). */
static long local_offset_east(time_t when)
{
	struct tm lt, gt;
	if (!localtime_r(&when, &lt) || !gmtime_r(&when, &gt))
		return 0;
	long days = lt.tm_yday - gt.tm_yday;
	if (lt.tm_year != gt.tm_year)
		days = lt.tm_year > gt.tm_year ? 1 : -1;
	return days * 86400L + (lt.tm_hour - gt.tm_hour) * 3600L +
	       (lt.tm_min - gt.tm_min) * 60L + (lt.tm_sec - gt.tm_sec);
}

int schema_event_utcoffset(int64_t when)
{
	tzset();
	long west = -local_offset_east((time_t)when);
	/* Python's floor division: -3600 // 3600 == -1, 1800 // 3600 == 0,
	 * -1800 // 3600 == -1. */
	long q = west / 3600;
	if (west % 3600 != 0 && west < 0)
		q--;
	return (int)q;
}

/* ---- building ---- */

/* Length of the valid UTF-8 sequence at s[0..n), or 0 if invalid. */
static size_t utf8_seq(const unsigned char *s, size_t n)
{
	unsigned c = s[0];
	size_t len;
	unsigned min;
	if (c < 0x80)
		return 1;
	if (c >= 0xc2 && c <= 0xdf)
		len = 2, min = 0x80;
	else if (c >= 0xe0 && c <= 0xef)
		len = 3, min = 0x800;
	else if (c >= 0xf0 && c <= 0xf4)
		len = 4, min = 0x10000;
	else
		return 0;
	if (len > n)
		return 0;
	unsigned cp = c & (0x7f >> len);
	for (size_t i = 1; i < len; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		cp = (cp << 6) | (s[i] & 0x3f);
	}
	if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
		return 0;
	return len;
}

/* A JSON string for s: NULL is null; bytes that are not UTF-8 (a handler's
 * message in Latin-1) become U+FFFD, as Python's errors='replace' would. */
static json_t *jstr(const char *s)
{
	if (!s)
		return json_null();
	size_t n = strlen(s);
	json_t *v = json_stringn(s, n);
	if (v)
		return v;
	char *fixed = malloc(3 * n + 1);
	if (!fixed)
		return NULL;
	size_t o = 0;
	for (size_t i = 0; i < n;) {
		size_t k = utf8_seq((const unsigned char *)s + i, n - i);
		if (k == 0) {
			memcpy(fixed + o, "\xef\xbf\xbd", 3);
			o += 3;
			i++;
		} else {
			memcpy(fixed + o, s + i, k);
			o += k;
			i += k;
		}
	}
	v = json_stringn(fixed, o);
	free(fixed);
	return v;
}

/* Sets key to v (stolen). A NULL v means its constructor ran out of memory;
 * the error is recorded once and later sets are skipped. */
static void put(json_t *obj, const char *key, json_t *v, int *rc)
{
	if (*rc != 0) {
		json_decref(v);
		return;
	}
	if (!v || json_object_set_new(obj, key, v) != 0)
		*rc = WARREN_ENOMEM;
}

/* The fields Event() puts before the type's own, in its order. */
static json_t *new_event(const schema_event_source *src, uint64_t clock, int *rc)
{
	json_t *ev = json_object();
	if (!ev) {
		*rc = WARREN_ENOMEM;
		return NULL;
	}
	put(ev, "hostname", jstr(src->hostname), rc);
	put(ev, "utcoffset", json_integer(src->utcoffset), rc);
	put(ev, "pid", json_integer(src->pid), rc);
	put(ev, "clock", json_integer((json_int_t)clock), rc);
	return ev;
}

/* Event() appends timestamp and type last (event.update(timestamp=, type=)). */
static void finish_event(json_t *ev, schema_event_type type, double timestamp, int *rc)
{
	put(ev, "timestamp", json_real(timestamp), rc);
	put(ev, "type", json_string(schema_event_type_name(type)), rc);
}

/* Python's ceil(l * 1e2) / 1e2 (celery/utils/sysinfo.py load_average). */
static double load_round(double l)
{
	return ceil(l * 1e2) / 1e2;
}

static void worker_fields(json_t *ev, const schema_event_worker_info *info, int *rc)
{
	struct utsname uts;
	bool have_uts = !info->sw_sys && uname(&uts) == 0;

	put(ev, "freq", json_real(info->freq), rc);
	put(ev, "active", json_integer(info->active), rc);
	put(ev, "processed", json_integer(info->processed), rc);
	json_t *load = json_array();
	for (int i = 0; load && i < 3; i++)
		if (json_array_append_new(load, json_real(load_round(info->loadavg[i]))) != 0)
			*rc = WARREN_ENOMEM;
	put(ev, "loadavg", load, rc);
	put(ev, "sw_ident", jstr(info->sw_ident ? info->sw_ident : SCHEMA_EVENT_SW_IDENT), rc);
	put(ev, "sw_ver", jstr(info->sw_ver ? info->sw_ver : WARREN_VERSION), rc);
	put(ev, "sw_sys", jstr(info->sw_sys ? info->sw_sys : have_uts ? uts.sysname : "Linux"), rc);
}

int schema_event_worker(const schema_event_source *src, schema_event_type type,
			uint64_t clock, double timestamp,
			const schema_event_worker_info *info, json_t **out,
			warren_error *err)
{
	if (!is_worker_type(type) || !src || !src->hostname || !info)
		return warren_error_set(err, WARREN_EINVAL,
					"event '%s': not a worker event or no hostname",
					schema_event_type_name(type) ? schema_event_type_name(type) : "?");
	int rc = 0;
	json_t *ev = new_event(src, clock, &rc);
	if (ev) {
		worker_fields(ev, info, &rc);
		finish_event(ev, type, timestamp, &rc);
	}
	if (rc != 0) {
		json_decref(ev);
		return warren_error_set(err, rc, "event '%s': out of memory",
					schema_event_type_name(type));
	}
	*out = ev;
	return 0;
}

/* The fields of task-received and task-sent, in strategy.py's order. */
static void received_fields(json_t *ev, const schema_event_task_info *t, int *rc)
{
	put(ev, "name", jstr(t->name), rc);
	put(ev, "args", jstr(t->args), rc);
	put(ev, "kwargs", jstr(t->kwargs), rc);
	put(ev, "root_id", jstr(t->root_id), rc);
	put(ev, "parent_id", jstr(t->parent_id), rc);
	put(ev, "retries", json_integer(t->retries), rc);
	put(ev, "eta", jstr(t->eta), rc);
	put(ev, "expires", jstr(t->expires), rc);
}

/* Each type's own fields after uuid (Request.send_event(type, **fields)). */
static void task_fields(json_t *ev, schema_event_type type,
			const schema_event_task_info *t, int *rc)
{
	switch (type) {
	case SCHEMA_EVENT_TASK_SENT:
		/* app/amqp.py as_task_v2 sent_event, then send_task_message's
		 * queue/exchange/routing_key; uuid is already written. */
		put(ev, "root_id", jstr(t->root_id), rc);
		put(ev, "parent_id", jstr(t->parent_id), rc);
		put(ev, "name", jstr(t->name), rc);
		put(ev, "args", jstr(t->args), rc);
		put(ev, "kwargs", jstr(t->kwargs), rc);
		put(ev, "retries", json_integer(t->retries), rc);
		put(ev, "eta", jstr(t->eta), rc);
		put(ev, "expires", jstr(t->expires), rc);
		put(ev, "queue", jstr(t->queue), rc);
		put(ev, "exchange", jstr(t->exchange), rc);
		put(ev, "routing_key", jstr(t->routing_key), rc);
		break;
	case SCHEMA_EVENT_TASK_RECEIVED:
		received_fields(ev, t, rc);
		break;
	case SCHEMA_EVENT_TASK_SUCCEEDED:
		put(ev, "result", jstr(t->result), rc);
		put(ev, "runtime", json_real(t->runtime), rc);
		break;
	case SCHEMA_EVENT_TASK_FAILED:
	case SCHEMA_EVENT_TASK_RETRIED:
		put(ev, "exception", jstr(t->exception), rc);
		put(ev, "traceback", jstr(t->traceback), rc);
		break;
	case SCHEMA_EVENT_TASK_REJECTED:
		put(ev, "requeue", json_boolean(t->requeue), rc);
		break;
	case SCHEMA_EVENT_TASK_REVOKED:
		put(ev, "terminated", json_boolean(t->terminated), rc);
		put(ev, "signum", t->has_signum ? json_integer(t->signum) : json_null(), rc);
		put(ev, "expired", json_boolean(t->expired), rc);
		break;
	default: /* task-started: nothing more */
		break;
	}
}

int schema_event_task(const schema_event_source *src, schema_event_type type,
		      uint64_t clock, double timestamp,
		      const schema_event_task_info *info, json_t **out,
		      warren_error *err)
{
	if (!schema_event_is_task(type) || !src || !src->hostname || !info || !info->uuid)
		return warren_error_set(err, WARREN_EINVAL,
					"event '%s': not a task event, or no hostname or uuid",
					schema_event_type_name(type) ? schema_event_type_name(type) : "?");
	if (!isfinite(info->runtime))
		return warren_error_set(err, WARREN_EINVAL, "event '%s': runtime is not finite",
					schema_event_type_name(type));
	int rc = 0;
	json_t *ev = new_event(src, clock, &rc);
	if (ev) {
		put(ev, "uuid", jstr(info->uuid), &rc);
		task_fields(ev, type, info, &rc);
		finish_event(ev, type, timestamp, &rc);
	}
	if (rc != 0) {
		json_decref(ev);
		return warren_error_set(err, rc, "event '%s': out of memory",
					schema_event_type_name(type));
	}
	*out = ev;
	return 0;
}

/* ---- serializing as Python's json.dumps ---- */

typedef struct jbuf {
	char *p;
	size_t len, cap;
	int rc;
} jbuf;

static void jput(jbuf *b, const char *s, size_t n)
{
	if (b->rc != 0)
		return;
	if (b->len + n + 1 > b->cap) {
		size_t cap = b->cap ? b->cap : 256;
		while (cap < b->len + n + 1)
			cap *= 2;
		char *p = realloc(b->p, cap);
		if (!p) {
			b->rc = WARREN_ENOMEM;
			return;
		}
		b->p = p;
		b->cap = cap;
	}
	memcpy(b->p + b->len, s, n);
	b->len += n;
	b->p[b->len] = '\0';
}

static void jputs(jbuf *b, const char *s)
{
	jput(b, s, strlen(s));
}

/* Python's ensure_ascii escaping: \" \\ \n \r \t \b \f, any other byte
 * outside ' '..'~' as \u00xx, non-ASCII as \uxxxx (surrogate pairs above
 * the BMP), lower-case hex. jansson guarantees valid UTF-8. */
static void put_string(jbuf *b, const char *s, size_t n)
{
	char esc[16];
	jput(b, "\"", 1);
	for (size_t i = 0; i < n;) {
		unsigned char c = (unsigned char)s[i];
		const char *e = NULL;
		switch (c) {
		case '"': e = "\\\""; break;
		case '\\': e = "\\\\"; break;
		case '\n': e = "\\n"; break;
		case '\r': e = "\\r"; break;
		case '\t': e = "\\t"; break;
		case '\b': e = "\\b"; break;
		case '\f': e = "\\f"; break;
		default: break;
		}
		if (e) {
			jputs(b, e);
			i++;
			continue;
		}
		if (c >= 0x20 && c < 0x7f) {
			size_t j = i;
			while (j < n && (unsigned char)s[j] >= 0x20 && (unsigned char)s[j] < 0x7f &&
			       s[j] != '"' && s[j] != '\\')
				j++;
			jput(b, s + i, j - i);
			i = j;
			continue;
		}
		size_t k = utf8_seq((const unsigned char *)s + i, n - i);
		if (k == 0)
			k = 1; /* not reached for jansson strings */
		unsigned cp = k == 1 ? c : (unsigned)(c & (0x7f >> k));
		for (size_t m = 1; m < k; m++)
			cp = (cp << 6) | ((unsigned char)s[i + m] & 0x3f);
		if (cp >= 0x10000) {
			cp -= 0x10000;
			snprintf(esc, sizeof esc, "\\u%04x\\u%04x", 0xd800 + (cp >> 10),
				 0xdc00 + (cp & 0x3ff));
		} else {
			snprintf(esc, sizeof esc, "\\u%04x", cp);
		}
		jputs(b, esc);
		i += k;
	}
	jput(b, "\"", 1);
}

/* Python's float repr: the shortest digits that read back as d, fixed
 * notation for a decimal point position in (-4, 16], else d.ddde+XX. */
static void put_real(jbuf *b, double d)
{
	char tmp[40], digits[24], out[64];
	int exp10 = 0;
	if (!isfinite(d)) {
		b->rc = b->rc ? b->rc : WARREN_EENCODE;
		return;
	}
	for (int prec = 0; prec <= 16; prec++) {
		snprintf(tmp, sizeof tmp, "%.*e", prec, d);
		if (strtod(tmp, NULL) == d)
			break;
	}
	const char *t = tmp + (tmp[0] == '-');
	size_t nd = 0;
	for (; *t && *t != 'e'; t++)
		if (*t != '.')
			digits[nd++] = *t;
	if (*t == 'e')
		exp10 = atoi(t + 1);
	while (nd > 1 && digits[nd - 1] == '0')
		nd--;
	digits[nd] = '\0';
	int decpt = exp10 + 1;
	size_t o = 0;
	if (signbit(d))
		out[o++] = '-';
	if (decpt > -4 && decpt <= 16) {
		if (decpt <= 0) {
			o += (size_t)snprintf(out + o, sizeof out - o, "0.%.*s%s", -decpt,
					      "0000", digits);
		} else if ((size_t)decpt >= nd) {
			o += (size_t)snprintf(out + o, sizeof out - o, "%s%.*s.0", digits,
					      decpt - (int)nd, "0000000000000000");
		} else {
			o += (size_t)snprintf(out + o, sizeof out - o, "%.*s.%s", decpt, digits,
					      digits + decpt);
		}
	} else {
		o += (size_t)snprintf(out + o, sizeof out - o, "%c%s%se%c%02d", digits[0],
				      nd > 1 ? "." : "", digits + 1, exp10 < 0 ? '-' : '+',
				      exp10 < 0 ? -exp10 : exp10);
	}
	jput(b, out, o);
}

static void put_value(jbuf *b, const json_t *v, unsigned depth);

static void put_object(jbuf *b, const json_t *v, unsigned depth)
{
	const char *key;
	json_t *val;
	bool first = true;
	jput(b, "{", 1);
	json_object_foreach((json_t *)v, key, val) {
		if (!first)
			jput(b, ", ", 2);
		first = false;
		put_string(b, key, strlen(key));
		jput(b, ": ", 2);
		put_value(b, val, depth + 1);
	}
	jput(b, "}", 1);
}

static void put_array(jbuf *b, const json_t *v, unsigned depth)
{
	jput(b, "[", 1);
	for (size_t i = 0; i < json_array_size(v); i++) {
		if (i)
			jput(b, ", ", 2);
		put_value(b, json_array_get(v, i), depth + 1);
	}
	jput(b, "]", 1);
}

static void put_value(jbuf *b, const json_t *v, unsigned depth)
{
	char num[32];
	if (b->rc != 0)
		return;
	if (depth > SCHEMA_DEPTH_CEILING) {
		b->rc = WARREN_ELIMIT;
		return;
	}
	switch (json_typeof(v)) {
	case JSON_OBJECT: put_object(b, v, depth); break;
	case JSON_ARRAY: put_array(b, v, depth); break;
	case JSON_STRING: put_string(b, json_string_value(v), json_string_length(v)); break;
	case JSON_INTEGER:
		snprintf(num, sizeof num, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
		jputs(b, num);
		break;
	case JSON_REAL: put_real(b, json_real_value(v)); break;
	case JSON_TRUE: jputs(b, "true"); break;
	case JSON_FALSE: jputs(b, "false"); break;
	default: jputs(b, "null"); break;
	}
}

int schema_event_encode(const json_t *event, char **out, size_t *out_len,
			warren_error *err)
{
	if (!event || (!json_is_object(event) && !json_is_array(event)))
		return warren_error_set(err, WARREN_EINVAL,
					"event: expected an object or a list of them");
	jbuf b = {0};
	put_value(&b, event, 0);
	if (b.rc != 0) {
		free(b.p);
		return warren_error_set(err, b.rc, "event: cannot serialize: %s",
					warren_strerror(b.rc));
	}
	*out = b.p;
	*out_len = b.len;
	return 0;
}

/* ---- publishing details ---- */

int schema_event_headers(const char *hostname, msgpack_sbuffer *buf, warren_error *err)
{
	if (!hostname)
		return warren_error_set(err, WARREN_EINVAL, "event headers: no hostname");
	msgpack_packer pk;
	msgpack_packer_init(&pk, buf, msgpack_sbuffer_write);
	size_t n = strlen(hostname);
	if (msgpack_pack_map(&pk, 1) || msgpack_pack_str_with_body(&pk, "hostname", 8) ||
	    msgpack_pack_str_with_body(&pk, hostname, n))
		return warren_error_set(err, WARREN_ENOMEM, "event headers: out of memory");
	return 0;
}

int schema_event_monitor_queue_name(char buf[64], warren_error *err)
{
	char id[37];
	int rc = schema_uuid4(id, err);
	if (rc != 0)
		return rc;
	snprintf(buf, 64, "%s.%s", SCHEMA_EVENT_QUEUE_PREFIX, id);
	return 0;
}

/* ---- decoding ---- */

/* Depth and element limits over a parsed document (jansson itself stops
 * at 2048 levels while parsing). */
static int check_limits(const json_t *v, const schema_limits *lim, unsigned depth,
			warren_error *err)
{
	if (depth > lim->max_depth)
		return warren_error_set(err, WARREN_ELIMIT, "event: nesting deeper than %u",
					lim->max_depth);
	size_t n = json_is_array(v) ? json_array_size(v) :
		   json_is_object(v) ? json_object_size(v) : 0;
	if (n > lim->max_elems)
		return warren_error_set(err, WARREN_ELIMIT, "event: %zu elements, limit %zu",
					n, lim->max_elems);
	if (json_is_array(v)) {
		for (size_t i = 0; i < n; i++)
			if (check_limits(json_array_get(v, i), lim, depth + 1, err) != 0)
				return err ? err->code : WARREN_ELIMIT;
	} else if (json_is_object(v)) {
		const char *key;
		json_t *val;
		json_object_foreach((json_t *)v, key, val)
			if (check_limits(val, lim, depth + 1, err) != 0)
				return err ? err->code : WARREN_ELIMIT;
	}
	return 0;
}

static bool get_int(json_t *obj, const char *key, int64_t *out)
{
	json_t *v = json_object_get(obj, key);
	if (json_is_integer(v)) {
		*out = json_integer_value(v);
		return true;
	}
	if (json_is_real(v) && fabs(json_real_value(v)) < 9.2e18) {
		*out = (int64_t)json_real_value(v);
		return true;
	}
	return false;
}

static int read_event(json_t *obj, size_t index, schema_event *ev, warren_error *err)
{
	json_t *type = json_object_get(obj, "type");
	if (!json_is_object(obj) || !json_is_string(type))
		return warren_error_set(err, WARREN_EDECODE,
					"event [%zu]: not an object with a string \"type\"", index);
	memset(ev, 0, sizeof *ev);
	ev->object = obj;
	ev->type_name = json_string_value(type);
	ev->type = schema_event_type_parse(ev->type_name);
	json_t *host = json_object_get(obj, "hostname");
	ev->hostname = json_is_string(host) ? json_string_value(host) : NULL;
	json_t *uuid = json_object_get(obj, "uuid");
	ev->uuid = json_is_string(uuid) ? json_string_value(uuid) : NULL;
	json_t *ts = json_object_get(obj, "timestamp");
	if ((ev->has_timestamp = json_is_number(ts)))
		ev->timestamp = json_number_value(ts);
	ev->has_clock = get_int(obj, "clock", &ev->clock);
	ev->has_pid = get_int(obj, "pid", &ev->pid);
	return 0;
}

static int parse_body(const void *body, size_t len, const schema_limits *lim,
		      json_t **root, warren_error *err)
{
	if (len > lim->max_body)
		return warren_error_set(err, WARREN_ELIMIT, "event: body of %zu bytes, limit %zu",
					len, lim->max_body);
	json_error_t jerr;
	*root = json_loadb(body, len, 0, &jerr);
	if (!*root)
		return warren_error_set(err, WARREN_EDECODE, "event: not JSON: %s at %d:%d",
					jerr.text, jerr.line, jerr.column);
	int rc = check_limits(*root, lim, 0, err);
	if (rc != 0) {
		json_decref(*root);
		*root = NULL;
	}
	return rc;
}

int schema_event_decode(const char *content_type, const void *body, size_t len,
			const schema_limits *lim, schema_event_list *out,
			warren_error *err)
{
	schema_limits def;
	if (!lim) {
		schema_limits_default(&def);
		lim = &def;
	}
	memset(out, 0, sizeof *out);
	if (content_type && strcmp(content_type, SCHEMA_EVENT_CONTENT_TYPE) != 0)
		return warren_error_set(err, WARREN_EDECODE,
					"event: content type '%s', expected '%s'",
					content_type, SCHEMA_EVENT_CONTENT_TYPE);
	json_t *root = NULL;
	int rc = parse_body(body, len, lim, &root, err);
	if (rc != 0)
		return rc;
	size_t n = json_is_array(root) ? json_array_size(root) : 1;
	schema_event *evs = calloc(n ? n : 1, sizeof *evs);
	if (!evs) {
		rc = warren_error_set(err, WARREN_ENOMEM, "event: out of memory");
		goto out_root;
	}
	for (size_t i = 0; i < n; i++) {
		json_t *obj = json_is_array(root) ? json_array_get(root, i) : root;
		rc = read_event(obj, i, &evs[i], err);
		if (rc != 0)
			goto out_events;
	}
	out->events = evs;
	out->n = n;
	out->root = root;
	return 0;
out_events:
	free(evs);
out_root:
	json_decref(root);
	return rc;
}

void schema_event_list_release(schema_event_list *list)
{
	if (!list)
		return;
	free(list->events);
	json_decref(list->root);
	memset(list, 0, sizeof *list);
}

const char *schema_event_get_str(const schema_event *ev, const char *key)
{
	json_t *v = json_object_get(ev->object, key);
	return json_is_string(v) ? json_string_value(v) : NULL;
}

double schema_event_get_num(const schema_event *ev, const char *key, double fallback)
{
	json_t *v = json_object_get(ev->object, key);
	return json_is_number(v) ? json_number_value(v) : fallback;
}
