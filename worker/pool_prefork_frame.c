/* worker/pool_prefork_frame.c - the frames the prefork pool's parent and
 * children exchange over their socketpair (see pool_prefork.c).
 *
 * A frame is a 4-byte big-endian payload length, then one msgpack array
 * whose first element is FRAME_VERSION:
 *   job:    [version, seq, task_id str, task_name str, retries int,
 *            headers bin|nil, args bin|nil, kwargs bin|nil, soft_time_limit float]
 *   result: [version, seq, status int, result bin|nil, exc_type str|nil,
 *            exc_module str|nil, exc_message str|nil, traceback str|nil,
 *            retry_countdown float, runtime float, pid int, retiring bool]
 * Bump FRAME_VERSION when an element is added, removed or retyped, and
 * update JOB_FIELDS/RESULT_FIELDS and both decoders. Parent and child are one
 * binary (fork, no exec), so the version mostly tells desynchronised or
 * garbage bytes from a frame; the decoders check every element's type, so a
 * child that writes anything else is caught and treated as lost.
 *
 * The packed headers/args/kwargs travel as bin, not inlined, so a child can
 * tell "the producer's bytes are not msgpack" (the task fails DecodeError)
 * from "the frame is broken" (the child is not trusted).
 */
#include <stdlib.h>
#include <string.h>

#include "worker.h"

#define FRAME_VERSION 1
#define JOB_FIELDS 9
#define RESULT_FIELDS 12

uint32_t prefork_frame_length(const void *header)
{
	const unsigned char *p = header;
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static void put_be32(char *p, uint32_t v)
{
	p[0] = (char)(v >> 24);
	p[1] = (char)(v >> 16);
	p[2] = (char)(v >> 8);
	p[3] = (char)v;
}

/* ---- encoding ------------------------------------------------------------------ */

/* msgpack_pack_* return non-zero only when the sbuffer cannot grow. */
static int pack_str_or_nil(msgpack_packer *pk, const char *s)
{
	if (!s || !*s)
		return msgpack_pack_nil(pk);
	size_t len = strlen(s);
	return msgpack_pack_str(pk, len) | msgpack_pack_str_body(pk, s, len);
}

static int pack_str(msgpack_packer *pk, const char *s)
{
	size_t len = s ? strlen(s) : 0;
	return msgpack_pack_str(pk, len) | msgpack_pack_str_body(pk, s ? s : "", len);
}

static int pack_bin_or_nil(msgpack_packer *pk, const void *p, size_t len)
{
	if (!p)
		return msgpack_pack_nil(pk);
	return msgpack_pack_bin(pk, len) | msgpack_pack_bin_body(pk, p, len);
}

/* Starts a frame: the length placeholder, then the array header. */
static int frame_begin(msgpack_sbuffer *sb, msgpack_packer *pk, uint32_t fields)
{
	static const char zero[PREFORK_FRAME_HEADER];
	msgpack_sbuffer_init(sb);
	msgpack_packer_init(pk, sb, msgpack_sbuffer_write);
	return msgpack_sbuffer_write(sb, zero, sizeof zero) | msgpack_pack_array(pk, fields) |
	       msgpack_pack_int(pk, FRAME_VERSION);
}

/* Patches the length in and hands the bytes over; frees them on failure. */
static int frame_end(msgpack_sbuffer *sb, int pack_rc, const char *what, char **out,
		     size_t *len, warren_error *err)
{
	if (pack_rc != 0) {
		msgpack_sbuffer_destroy(sb);
		return warren_error_set(err, WARREN_ENOMEM, "pool: %s frame: out of memory", what);
	}
	size_t payload = sb->size - PREFORK_FRAME_HEADER;
	if (payload > PREFORK_FRAME_MAX) {
		msgpack_sbuffer_destroy(sb);
		return warren_error_set(err, WARREN_ELIMIT, "pool: %s frame: %zu bytes, over %u", what,
					payload, PREFORK_FRAME_MAX);
	}
	put_be32(sb->data, (uint32_t)payload);
	*len = sb->size;
	*out = msgpack_sbuffer_release(sb);
	return 0;
}

int prefork_encode_job(const pool_job *job, char **out, size_t *len, warren_error *err)
{
	msgpack_sbuffer sb;
	msgpack_packer pk;
	int rc = frame_begin(&sb, &pk, JOB_FIELDS);
	rc |= msgpack_pack_uint64(&pk, job->seq);
	rc |= pack_str(&pk, job->task_id);
	rc |= pack_str(&pk, job->task_name);
	rc |= msgpack_pack_int(&pk, job->retries);
	rc |= pack_bin_or_nil(&pk, job->headers_len ? job->headers : NULL, job->headers_len);
	rc |= pack_bin_or_nil(&pk, job->args_len ? job->args : NULL, job->args_len);
	rc |= pack_bin_or_nil(&pk, job->kwargs_len ? job->kwargs : NULL, job->kwargs_len);
	rc |= msgpack_pack_double(&pk, job->soft_time_limit);
	return frame_end(&sb, rc, "job", out, len, err);
}

int prefork_encode_result(const prefork_result_frame *r, char **out, size_t *len,
			  warren_error *err)
{
	msgpack_sbuffer sb;
	msgpack_packer pk;
	int rc = frame_begin(&sb, &pk, RESULT_FIELDS);
	rc |= msgpack_pack_uint64(&pk, r->seq);
	rc |= msgpack_pack_int(&pk, (int)r->status);
	rc |= pack_bin_or_nil(&pk, r->result, r->result_len);
	rc |= pack_str_or_nil(&pk, r->exc_type);
	rc |= pack_str_or_nil(&pk, r->exc_module);
	rc |= pack_str_or_nil(&pk, r->exc_message);
	rc |= pack_str_or_nil(&pk, r->traceback);
	rc |= msgpack_pack_double(&pk, r->retry_countdown);
	rc |= msgpack_pack_double(&pk, r->runtime);
	rc |= msgpack_pack_int64(&pk, r->pid);
	rc |= r->retiring ? msgpack_pack_true(&pk) : msgpack_pack_false(&pk);
	return frame_end(&sb, rc, "result", out, len, err);
}

/* ---- decoding ------------------------------------------------------------------ */

static bool is_str_or_nil(const msgpack_object *o)
{
	return o->type == MSGPACK_OBJECT_STR || o->type == MSGPACK_OBJECT_NIL;
}

static bool is_bin_or_nil(const msgpack_object *o)
{
	return o->type == MSGPACK_OBJECT_BIN || o->type == MSGPACK_OBJECT_NIL;
}

static bool is_float(const msgpack_object *o)
{
	return o->type == MSGPACK_OBJECT_FLOAT64 || o->type == MSGPACK_OBJECT_FLOAT32;
}

static bool is_uint(const msgpack_object *o)
{
	return o->type == MSGPACK_OBJECT_POSITIVE_INTEGER;
}

static bool is_int(const msgpack_object *o)
{
	return o->type == MSGPACK_OBJECT_POSITIVE_INTEGER || o->type == MSGPACK_OBJECT_NEGATIVE_INTEGER;
}

/* One msgpack array of `fields` elements, this version, nothing after it. */
static int frame_unpack(msgpack_unpacked *u, const void *data, size_t len, uint32_t fields,
			const char *what, const msgpack_object **items, warren_error *err)
{
	size_t off = 0;
	if (msgpack_unpack_next(u, data, len, &off) != MSGPACK_UNPACK_SUCCESS || off != len)
		return warren_error_set(err, WARREN_EDECODE, "pool: %s frame: not one msgpack object",
					what);
	const msgpack_object *o = &u->data;
	if (o->type != MSGPACK_OBJECT_ARRAY || o->via.array.size != fields)
		return warren_error_set(err, WARREN_EDECODE, "pool: %s frame: not an array of %u",
					what, fields);
	*items = o->via.array.ptr;
	if (!is_uint(&(*items)[0]) || (*items)[0].via.u64 != FRAME_VERSION)
		return warren_error_set(err, WARREN_EDECODE, "pool: %s frame: not version %d", what,
					FRAME_VERSION);
	return 0;
}

static const char *zone_strdup(msgpack_zone *z, const msgpack_object *o)
{
	char *s = msgpack_zone_malloc(z, o->via.str.size + 1);
	if (s) {
		memcpy(s, o->via.str.ptr, o->via.str.size);
		s[o->via.str.size] = '\0';
	}
	return s;
}

static void bin_field(const msgpack_object *o, const void **p, size_t *len)
{
	*p = o->type == MSGPACK_OBJECT_BIN ? o->via.bin.ptr : NULL;
	*len = o->type == MSGPACK_OBJECT_BIN ? o->via.bin.size : 0;
}

int prefork_decode_job(const void *payload, size_t len, msgpack_unpacked *u,
		       prefork_job_frame *out, warren_error *err)
{
	const msgpack_object *it = NULL;
	int rc = frame_unpack(u, payload, len, JOB_FIELDS, "job", &it, err);
	if (rc != 0)
		return rc;
	if (!is_uint(&it[1]) || it[2].type != MSGPACK_OBJECT_STR ||
	    it[3].type != MSGPACK_OBJECT_STR || !is_int(&it[4]) || !is_bin_or_nil(&it[5]) ||
	    !is_bin_or_nil(&it[6]) || !is_bin_or_nil(&it[7]) || !is_float(&it[8]))
		return warren_error_set(err, WARREN_EDECODE, "pool: job frame: an element of the wrong type");
	memset(out, 0, sizeof *out);
	out->seq = it[1].via.u64;
	out->task_id = zone_strdup(u->zone, &it[2]);
	out->task_name = zone_strdup(u->zone, &it[3]);
	if (!out->task_id || !out->task_name)
		return warren_error_set(err, WARREN_ENOMEM, "pool: job frame: out of memory");
	out->retries = (int)it[4].via.i64;
	bin_field(&it[5], &out->headers, &out->headers_len);
	bin_field(&it[6], &out->args, &out->args_len);
	bin_field(&it[7], &out->kwargs, &out->kwargs_len);
	out->soft_time_limit = it[8].via.f64;
	return 0;
}

static bool result_shape_ok(const msgpack_object *it)
{
	return is_uint(&it[1]) && is_int(&it[2]) && it[2].via.i64 >= TASK_SUCCESS &&
	       it[2].via.i64 <= TASK_RETRY && is_bin_or_nil(&it[3]) && is_str_or_nil(&it[4]) &&
	       is_str_or_nil(&it[5]) && is_str_or_nil(&it[6]) && is_str_or_nil(&it[7]) &&
	       is_float(&it[8]) && is_float(&it[9]) && is_int(&it[10]) &&
	       it[11].type == MSGPACK_OBJECT_BOOLEAN;
}

/* A malloc'd NUL-terminated copy of a str or bin; *ok false when out of
 * memory (nil gives NULL and leaves *ok alone). */
static char *dup_object(const msgpack_object *o, bool *ok)
{
	const char *p = o->type == MSGPACK_OBJECT_STR ? o->via.str.ptr : o->via.bin.ptr;
	size_t len = o->type == MSGPACK_OBJECT_STR ? o->via.str.size : o->via.bin.size;
	if (o->type != MSGPACK_OBJECT_STR && o->type != MSGPACK_OBJECT_BIN)
		return NULL;
	char *d = malloc(len + 1);
	if (!d) {
		*ok = false;
		return NULL;
	}
	memcpy(d, p, len);
	d[len] = '\0';
	return d;
}

static int fill_job(pool_job *job, const msgpack_object *it, warren_error *err)
{
	bool ok = true;
	job->status = (task_status)it[2].via.i64;
	job->result = dup_object(&it[3], &ok);
	job->result_len = job->result ? it[3].via.bin.size : 0;
	job->exc_type = dup_object(&it[4], &ok);
	job->exc_module = dup_object(&it[5], &ok);
	job->exc_message = dup_object(&it[6], &ok);
	job->traceback = dup_object(&it[7], &ok);
	job->retry_countdown = it[8].via.f64;
	job->runtime = it[9].via.f64;
	job->worker_pid = it[10].via.i64;
	return ok ? 0 : warren_error_set(err, WARREN_ENOMEM, "pool: result frame: out of memory");
}

int prefork_decode_result(const void *payload, size_t len, pool_job *job, bool *retiring,
			  warren_error *err)
{
	msgpack_unpacked u;
	msgpack_unpacked_init(&u);
	const msgpack_object *it = NULL;
	int rc = frame_unpack(&u, payload, len, RESULT_FIELDS, "result", &it, err);
	if (rc != 0)
		goto out_unpacked;
	if (!result_shape_ok(it)) {
		rc = warren_error_set(err, WARREN_EDECODE, "pool: result frame: an element of the wrong type");
		goto out_unpacked;
	}
	if (it[1].via.u64 != job->seq) {
		rc = warren_error_set(err, WARREN_EDECODE, "pool: result frame: for job %llu, running %llu",
				      (unsigned long long)it[1].via.u64, (unsigned long long)job->seq);
		goto out_unpacked;
	}
	*retiring = it[11].via.boolean;
	rc = fill_job(job, it, err);
out_unpacked:
	msgpack_unpacked_destroy(&u);
	return rc;
}
