/* worker/task.c - the host side of the plugin ABI: the task context a
 * handler runs against, and the const function table plugins call through.
 *
 * Concurrency: a task_ctx belongs to the one thread (or prefork child) running
 * its task; the table and the registry it reads are immutable once the worker
 * runs. The only field another party may write while a handler runs is
 * soft_limit_hit (atomic), so a timer thread or a SIGUSR1 handler in a
 * prefork child can end a handler's wait early.
 */
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "schemas/schemas.h"
#include "worker.h"

static const msgpack_object empty_array = {.type = MSGPACK_OBJECT_ARRAY};
static const msgpack_object empty_map = {.type = MSGPACK_OBJECT_MAP};

/* The ABI hands plugins a warren_task *, which is the first member of our
 * task_ctx: converting back is the one place that relies on it. */
static task_ctx *ctx_of(warren_task *t)
{
	return (task_ctx *)t;
}

static const task_ctx *const_ctx_of(const warren_task *t)
{
	return (const task_ctx *)t;
}

int64_t task_monotonic_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

void task_ctx_init(task_ctx *ctx)
{
	memset(ctx, 0, sizeof *ctx);
	ctx->base.host = &task_host;
	ctx->headers.type = MSGPACK_OBJECT_NIL;
	ctx->args.type = MSGPACK_OBJECT_NIL;
	ctx->kwargs.type = MSGPACK_OBJECT_NIL;
	atomic_init(&ctx->soft_limit_hit, false);
	msgpack_sbuffer_init(&ctx->result);
	msgpack_packer_init(&ctx->packer, &ctx->result, msgpack_sbuffer_write);
}

void task_ctx_release(task_ctx *ctx)
{
	msgpack_sbuffer_destroy(&ctx->result);
	msgpack_sbuffer_init(&ctx->result);
	if (ctx->defaults)
		msgpack_zone_free(ctx->defaults);
	ctx->defaults = NULL;
}

void task_set_soft_limit(task_ctx *ctx, double seconds)
{
	if (!(seconds > 0)) {
		ctx->soft_deadline_ns = 0;
		return;
	}
	ctx->soft_deadline_ns = task_monotonic_ns() + (int64_t)(seconds * 1e9);
}

/* ---- msgpack structure check --------------------------------------------- */

/* Reads an n-byte big-endian number at *off. */
static bool read_be(const unsigned char *p, size_t len, size_t *off, int n, uint64_t *v)
{
	if ((size_t)n > len - *off)
		return false;
	*v = 0;
	for (int i = 0; i < n; i++)
		*v = (*v << 8) | p[(*off)++];
	return true;
}

/* For header byte b: bytes of payload to skip (fixed ones in *skip, or a
 * length field of *len_bytes), children to expect per counted element
 * (*per_count: 1 for arrays, 2 for maps) and the size of a count field. */
typedef struct mp_shape {
	uint64_t skip;     /* fixed payload bytes after any length field */
	int len_bytes;     /* length field preceding a variable payload */
	int count_bytes;   /* count field of an array or map */
	uint64_t children; /* fixed number of children (fixarray, fixmap) */
	int per_count;     /* children per counted element */
} mp_shape;

static bool shape_of(unsigned char b, mp_shape *s)
{
	memset(s, 0, sizeof *s);
	if (b <= 0x7f || b >= 0xe0 || b == 0xc0 || b == 0xc2 || b == 0xc3)
		return true;
	if (b <= 0x8f) {
		s->children = 2u * (b & 0x0f);
		return true;
	}
	if (b <= 0x9f) {
		s->children = b & 0x0f;
		return true;
	}
	if (b <= 0xbf) {
		s->skip = b & 0x1f;
		return true;
	}
	switch (b) {
	case 0xc4: case 0xd9: s->len_bytes = 1; return true; /* bin8, str8 */
	case 0xc5: case 0xda: s->len_bytes = 2; return true;
	case 0xc6: case 0xdb: s->len_bytes = 4; return true;
	case 0xc7: s->len_bytes = 1; s->skip = 1; return true; /* ext: + type byte */
	case 0xc8: s->len_bytes = 2; s->skip = 1; return true;
	case 0xc9: s->len_bytes = 4; s->skip = 1; return true;
	case 0xca: s->skip = 4; return true;
	case 0xcb: s->skip = 8; return true;
	case 0xcc: case 0xd0: s->skip = 1; return true;
	case 0xcd: case 0xd1: s->skip = 2; return true;
	case 0xce: case 0xd2: s->skip = 4; return true;
	case 0xcf: case 0xd3: s->skip = 8; return true;
	case 0xd4: s->skip = 2; return true; /* fixext: type + data */
	case 0xd5: s->skip = 3; return true;
	case 0xd6: s->skip = 5; return true;
	case 0xd7: s->skip = 9; return true;
	case 0xd8: s->skip = 17; return true;
	case 0xdc: s->count_bytes = 2; s->per_count = 1; return true;
	case 0xdd: s->count_bytes = 4; s->per_count = 1; return true;
	case 0xde: s->count_bytes = 2; s->per_count = 2; return true;
	case 0xdf: s->count_bytes = 4; s->per_count = 2; return true;
	default: return false; /* 0xc1 is never used */
	}
}

/* Iterative, so a deeply nested result cannot overflow the stack: it counts
 * the objects still expected instead of recursing into them. */
bool task_msgpack_check(const void *data, size_t len)
{
	const unsigned char *p = data;
	size_t off = 0;
	uint64_t pending = 1;
	while (pending > 0) {
		mp_shape s;
		uint64_t n = 0;
		if (pending > len - off || !shape_of(p[off++], &s))
			return false; /* every pending object needs at least one byte */
		pending--;
		if (s.len_bytes && !read_be(p, len, &off, s.len_bytes, &n))
			return false;
		uint64_t skip = s.skip + n;
		if (s.count_bytes) {
			if (!read_be(p, len, &off, s.count_bytes, &n))
				return false;
			pending += n * (uint64_t)s.per_count;
		}
		pending += s.children;
		if (skip > len - off)
			return false;
		off += skip;
	}
	return off == len;
}

/* ---- UTF-8 ----------------------------------------------------------------- */

/* Length of the valid UTF-8 sequence at s (n bytes available), 0 if invalid:
 * no overlongs, no surrogates, nothing above U+10FFFF. */
static size_t utf8_valid_len(const unsigned char *s, size_t n)
{
	if (s[0] < 0x80)
		return 1;
	size_t need = s[0] >= 0xf0 ? 4 : s[0] >= 0xe0 ? 3 : s[0] >= 0xc2 ? 2 : 0;
	if (need == 0 || s[0] > 0xf4 || need > n)
		return 0;
	for (size_t i = 1; i < need; i++)
		if ((s[i] & 0xc0) != 0x80)
			return 0;
	if ((s[0] == 0xe0 && s[1] < 0xa0) || (s[0] == 0xed && s[1] >= 0xa0) ||
	    (s[0] == 0xf0 && s[1] < 0x90) || (s[0] == 0xf4 && s[1] >= 0x90))
		return 0;
	return need;
}

/* Copies src into dst (cap bytes, NUL-terminated), replacing invalid UTF-8
 * with U+FFFD and cutting only between characters, so the message is a
 * valid msgpack str on the wire whatever the plugin passed. */
static void utf8_copy(char *dst, size_t cap, const char *src, size_t len)
{
	static const char replacement[] = "\xef\xbf\xbd";
	const unsigned char *s = (const unsigned char *)src;
	size_t out = 0;
	for (size_t i = 0; i < len;) {
		size_t n = utf8_valid_len(s + i, len - i);
		const char *piece = n ? src + i : replacement;
		size_t piece_len = n ? n : 3;
		if (out + piece_len >= cap)
			break;
		memcpy(dst + out, piece, piece_len);
		out += piece_len;
		i += n ? n : 1;
	}
	dst[out] = '\0';
}

/* ---- outcome --------------------------------------------------------------- */

static const char *task_label(const task_ctx *ctx)
{
	if (ctx->name)
		return ctx->name;
	return ctx->entry ? ctx->entry->name : "?";
}

/* Copies at most cap-1 bytes of s[0..len) into dst. */
static void copy_bounded(char *dst, size_t cap, const char *s, size_t len)
{
	if (len >= cap)
		len = cap - 1;
	memcpy(dst, s, len);
	dst[len] = '\0';
}

static void set_exc_type(task_ctx *ctx, const char *type)
{
	if (!type || !*type)
		type = "Exception";
	const char *dot = strrchr(type, '.');
	if (!dot) {
		copy_bounded(ctx->exc_module, sizeof ctx->exc_module, "builtins", 8);
		copy_bounded(ctx->exc_type, sizeof ctx->exc_type, type, strlen(type));
		return;
	}
	copy_bounded(ctx->exc_module, sizeof ctx->exc_module, type, (size_t)(dot - type));
	copy_bounded(ctx->exc_type, sizeof ctx->exc_type, dot + 1, strlen(dot + 1));
}

static int fail_v(task_ctx *ctx, const char *type, const char *fmt, va_list ap)
{
	if (ctx->status != TASK_PENDING)
		return -1; /* the first failure or retry wins */
	char raw[TASK_EXC_MESSAGE_MAX];
	int n = vsnprintf(raw, sizeof raw, fmt ? fmt : "", ap);
	size_t len = n < 0 ? 0 : (size_t)n < sizeof raw ? (size_t)n : sizeof raw - 1;
	set_exc_type(ctx, type);
	utf8_copy(ctx->exc_message, sizeof ctx->exc_message, raw, len);
	ctx->status = TASK_FAILURE;
	return -1;
}

static int fail(task_ctx *ctx, const char *type, const char *fmt, ...) WARREN_PRINTF(3, 4);
static int fail(task_ctx *ctx, const char *type, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int rc = fail_v(ctx, type, fmt, ap);
	va_end(ap);
	return rc;
}

task_status task_run(task_ctx *ctx, const registry_entry *entry)
{
	ctx->entry = entry;
	if (!ctx->name)
		ctx->name = entry->name;
	int rc = entry->fn(&ctx->base);
	if (ctx->status != TASK_PENDING)
		return ctx->status;
	if (rc != 0)
		fail(ctx, "RuntimeError", "%s: handler returned %d without failing or retrying the task",
		     ctx->name, rc);
	else if (ctx->result.size > 0 && !task_msgpack_check(ctx->result.data, ctx->result.size))
		fail(ctx, "RuntimeError", "%s: handler packed a malformed result (%zu bytes)",
		     ctx->name, ctx->result.size);
	else
		ctx->status = TASK_SUCCESS;
	return ctx->status;
}

const char *task_result_bytes(const task_ctx *ctx, size_t *len)
{
	if (ctx->result.size == 0) {
		*len = 1;
		return "\xc0"; /* nothing packed: null */
	}
	*len = ctx->result.size;
	return ctx->result.data;
}

/* Python prints builtins' exceptions bare and others qualified; so do we. */
size_t task_format_traceback(const task_ctx *ctx, char *buf, size_t len)
{
	bool builtin = strcmp(ctx->exc_module, "builtins") == 0 || ctx->exc_module[0] == '\0';
	int n = snprintf(buf, len,
			 "Traceback (most recent call last):\n"
			 "  File \"%s\", in %s\n"
			 "%s%s%s: %s\n",
			 ctx->entry ? ctx->entry->plugin_path : "?", task_label(ctx),
			 builtin ? "" : ctx->exc_module, builtin ? "" : ".", ctx->exc_type,
			 ctx->exc_message);
	return n < 0 ? 0 : (size_t)n;
}

/* ---- arguments ------------------------------------------------------------- */

static const char *object_type_name(const msgpack_object *o)
{
	switch (o->type) {
	case MSGPACK_OBJECT_NIL: return "null";
	case MSGPACK_OBJECT_BOOLEAN: return "bool";
	case MSGPACK_OBJECT_POSITIVE_INTEGER:
	case MSGPACK_OBJECT_NEGATIVE_INTEGER: return "int";
	case MSGPACK_OBJECT_FLOAT32:
	case MSGPACK_OBJECT_FLOAT64: return "float";
	case MSGPACK_OBJECT_STR: return "str";
	case MSGPACK_OBJECT_BIN: return "bytes";
	case MSGPACK_OBJECT_ARRAY: return "list";
	case MSGPACK_OBJECT_MAP: return "map";
	case MSGPACK_OBJECT_EXT: return "ext";
	}
	return "?";
}

static bool is_int(const msgpack_object *o)
{
	return o->type == MSGPACK_OBJECT_POSITIVE_INTEGER || o->type == MSGPACK_OBJECT_NEGATIVE_INTEGER;
}

static bool type_accepts(warren_type want, const msgpack_object *o)
{
	switch (want) {
	case WARREN_TYPE_ANY: return true;
	case WARREN_TYPE_INT: return is_int(o);
	case WARREN_TYPE_FLOAT:
		return is_int(o) || o->type == MSGPACK_OBJECT_FLOAT32 || o->type == MSGPACK_OBJECT_FLOAT64;
	case WARREN_TYPE_STR: return o->type == MSGPACK_OBJECT_STR;
	case WARREN_TYPE_BYTES: return o->type == MSGPACK_OBJECT_BIN;
	case WARREN_TYPE_BOOL: return o->type == MSGPACK_OBJECT_BOOLEAN;
	case WARREN_TYPE_LIST: return o->type == MSGPACK_OBJECT_ARRAY;
	case WARREN_TYPE_MAP: return o->type == MSGPACK_OBJECT_MAP;
	case WARREN_TYPE_NULL: return o->type == MSGPACK_OBJECT_NIL;
	}
	return false;
}

static const msgpack_object *find_kwarg(const task_ctx *ctx, const char *name)
{
	if (ctx->kwargs.type != MSGPACK_OBJECT_MAP)
		return NULL;
	size_t len = strlen(name);
	const msgpack_object_map *m = &ctx->kwargs.via.map;
	for (uint32_t i = 0; i < m->size; i++) {
		const msgpack_object *k = &m->ptr[i].key;
		if (k->type == MSGPACK_OBJECT_STR && k->via.str.size == len &&
		    memcmp(k->via.str.ptr, name, len) == 0)
			return &m->ptr[i].val;
	}
	return NULL;
}

static const warren_param *find_param(const task_ctx *ctx, size_t *index, const char *name)
{
	const warren_task_schema *s = ctx->entry ? ctx->entry->opts.schema : NULL;
	if (!s)
		return NULL;
	if (!name)
		return *index < s->n_params ? &s->params[*index] : NULL;
	for (size_t i = 0; i < s->n_params; i++) {
		if (strcmp(s->params[i].name, name) == 0) {
			*index = i;
			return &s->params[i];
		}
	}
	return NULL;
}

/* The schema default, unpacked into a zone that lives as long as ctx. */
static const msgpack_object *unpack_default(task_ctx *ctx, const warren_param *p)
{
	if (!ctx->defaults && !(ctx->defaults = msgpack_zone_new(256)))
		return NULL;
	msgpack_object *obj = msgpack_zone_malloc(ctx->defaults, sizeof *obj);
	size_t off = 0;
	if (!obj || msgpack_unpack(p->default_mp, p->default_len, &off, ctx->defaults, obj) !=
			    MSGPACK_UNPACK_SUCCESS)
		return NULL;
	return obj;
}

/* "b" with a schema or a name; "args[1]" for a bare index. */
static void arg_label(char *buf, size_t cap, size_t index, const char *name)
{
	if (name)
		snprintf(buf, cap, "%s", name);
	else
		snprintf(buf, cap, "args[%zu]", index);
}

static int check_arg(task_ctx *ctx, const char *label, warren_type want,
		     const msgpack_object *o)
{
	if (!type_accepts(want, o))
		return fail(ctx, "TypeError", "%s: argument %s: expected %s, got %s", task_label(ctx),
			    label, warren_type_name(want), object_type_name(o));
	if (want == WARREN_TYPE_INT && o->type == MSGPACK_OBJECT_POSITIVE_INTEGER &&
	    o->via.u64 > INT64_MAX)
		return fail(ctx, "OverflowError", "%s: argument %s: %llu does not fit in int64",
			    task_label(ctx), label, (unsigned long long)o->via.u64);
	return 0;
}

static int host_task_arg(warren_task *t, size_t index, const char *name, warren_type want,
			 const msgpack_object **out)
{
	task_ctx *ctx = ctx_of(t);
	if (ctx->status == TASK_FAILURE)
		return -1; /* an earlier getter failed: do not overwrite its reason */
	const warren_param *p = find_param(ctx, &index, name);
	const char *pname = name ? name : p ? p->name : NULL;
	char label[128];
	arg_label(label, sizeof label, index, pname);

	const msgpack_object *o = NULL;
	const msgpack_object *args = ctx->args.type == MSGPACK_OBJECT_ARRAY ? &ctx->args : &empty_array;
	if (index != WARREN_NO_INDEX && index < args->via.array.size)
		o = &args->via.array.ptr[index];
	else if (pname)
		o = find_kwarg(ctx, pname);
	if (!o && p && p->default_mp && !(o = unpack_default(ctx, p)))
		return fail(ctx, "RuntimeError", "%s: argument %s: bad default in the schema",
			    task_label(ctx), label);
	if (!o && p && !p->required)
		return WARREN_ARG_ABSENT;
	if (!o)
		return fail(ctx, "TypeError", "%s: missing argument %s", task_label(ctx), label);
	if (check_arg(ctx, label, want, o) != 0)
		return -1;
	*out = o;
	return 0;
}

/* ---- the rest of the host table ------------------------------------------- */

static const char *host_task_id(const warren_task *t)
{
	const char *id = const_ctx_of(t)->id;
	return id ? id : "";
}

static const char *host_task_name(const warren_task *t)
{
	return task_label(const_ctx_of(t));
}

static int host_task_retries(const warren_task *t)
{
	return const_ctx_of(t)->retries;
}

static const msgpack_object *host_task_headers(const warren_task *t)
{
	/* The context is the caller's own (the thread running the task), so
	 * filling it lazily here is safe; only the API's pointer is const. */
	task_ctx *ctx = (task_ctx *)const_ctx_of(t);
	if (ctx->headers.type != MSGPACK_OBJECT_MAP && ctx->headers_packed &&
	    ctx->headers_packed_len &&
	    (ctx->defaults || (ctx->defaults = msgpack_zone_new(1024)))) {
		schema_limits lim;
		schema_limits_default(&lim);
		msgpack_object h;
		if (schema_unpack(ctx->headers_packed, ctx->headers_packed_len, &lim, "headers",
				  ctx->defaults, &h, NULL) == 0)
			ctx->headers = h;
		ctx->headers_packed = NULL; /* once, even if broken */
	}
	return ctx->headers.type == MSGPACK_OBJECT_MAP ? &ctx->headers : &empty_map;
}

static const msgpack_object *host_task_args(const warren_task *t)
{
	const task_ctx *ctx = const_ctx_of(t);
	return ctx->args.type == MSGPACK_OBJECT_ARRAY ? &ctx->args : &empty_array;
}

static const msgpack_object *host_task_kwargs(const warren_task *t)
{
	const task_ctx *ctx = const_ctx_of(t);
	return ctx->kwargs.type == MSGPACK_OBJECT_MAP ? &ctx->kwargs : &empty_map;
}

static msgpack_packer *host_task_result(warren_task *t)
{
	return &ctx_of(t)->packer;
}

static int host_task_fail(warren_task *t, const char *type, const char *fmt, va_list ap)
{
	return fail_v(ctx_of(t), type, fmt, ap);
}

static int host_task_retry(warren_task *t, double countdown)
{
	task_ctx *ctx = ctx_of(t);
	if (ctx->status != TASK_PENDING)
		return -1;
	ctx->retry_countdown = countdown > 0 && isfinite(countdown) ? countdown : 0;
	ctx->status = TASK_RETRY;
	return -1;
}

static bool host_task_soft_limit_passed(warren_task *t)
{
	task_ctx *ctx = ctx_of(t);
	if (atomic_load_explicit(&ctx->soft_limit_hit, memory_order_relaxed))
		return true;
	if (ctx->soft_deadline_ns == 0 || task_monotonic_ns() < ctx->soft_deadline_ns)
		return false;
	atomic_store_explicit(&ctx->soft_limit_hit, true, memory_order_relaxed);
	return true;
}

const warren_host task_host = {
	.abi = WARREN_PLUGIN_ABI,
	.size = sizeof(warren_host),
	.register_task = registry_host_register,
	.plugin_error = registry_host_error,
	.task_id = host_task_id,
	.task_name = host_task_name,
	.task_retries = host_task_retries,
	.task_headers = host_task_headers,
	.task_args = host_task_args,
	.task_kwargs = host_task_kwargs,
	.task_arg = host_task_arg,
	.task_result = host_task_result,
	.task_fail = host_task_fail,
	.task_retry = host_task_retry,
	.task_soft_limit_passed = host_task_soft_limit_passed,
	.register_task_ext = registry_host_register_ext,
};
