/* backends/chord.c - the Redis chord join, exactly as Celery 5.2's Redis
 * backend does it (backends/redis.py set_chord_size, on_chord_part_return,
 * _unpack_chord_result), so a chord's header may run on warren workers,
 * Celery workers or both, and either kind fires the body.
 *
 * Keys (group id gid): celery-taskset-meta-<gid>.s holds the header size,
 * .t a size adjustment (Task.replace / add_to_chord; read, never written
 * here), .j a sorted set of msgpack [1, tid, state, result] scored by
 * group_index. Each part is one MULTI/EXEC, so the count each part reads
 * includes every part added before it and exactly one part reads the full
 * count. The handle has its own blocking hiredis connection (a worker's
 * result backend handle is not shared with it), reconnected once per
 * operation when it dropped.
 *
 * Wire format note: key names, the member layout and the command sequence
 * are Celery's (CELERY-WIRE.md §4); a change must be checked with the
 * canvas interop tests (a chord whose header runs on warren and Celery
 * workers alike).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include <hiredis/hiredis.h>

#include "backend.h"

#define TASKSET_PREFIX "celery-taskset-meta-"

struct backend_chord {
	backend_redis_url url;
	char masked[512];
	backend_options opts;
	redisContext *c; /* NULL until first use, or after a drop */
};

static struct timeval tv_ms(int ms)
{
	struct timeval tv = {.tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000};
	return tv;
}

bool backend_chord_supported(const char *url)
{
	return url && (strncmp(url, "redis://", 8) == 0 || strncmp(url, "rediss://", 9) == 0);
}

int backend_chord_open(const char *url, const backend_options *opts, backend_chord **out,
		       warren_error *err)
{
	*out = NULL;
	if (!backend_chord_supported(url))
		return warren_error_set(err, WARREN_EINVAL,
					"chord: result backend '%s' cannot join a chord; use redis://",
					url ? url : "");
	backend_chord *ch = calloc(1, sizeof *ch);
	if (!ch)
		return warren_error_set(err, WARREN_ENOMEM, "chord: out of memory");
	if (opts)
		ch->opts = *opts;
	else
		backend_options_default(&ch->opts);
	backend_url_mask(url, ch->masked, sizeof ch->masked);
	int rc = backend_redis_url_parse(url, &ch->url, err);
	if (rc) {
		free(ch);
		return rc;
	}
	if (ch->url.tls) {
		rc = warren_error_set(err, WARREN_EINVAL, "chord: '%s': rediss:// is not supported "
				      "for chords yet", ch->masked);
		backend_chord_free(ch);
		return rc;
	}
	*out = ch;
	return 0;
}

void backend_chord_free(backend_chord *ch)
{
	if (!ch)
		return;
	if (ch->c)
		redisFree(ch->c);
	backend_redis_url_release(&ch->url);
	free(ch);
}

/* ---- connection ---- */

static int fail_ctx(backend_chord *ch, const char *what, warren_error *err)
{
	int rc = warren_error_set(err, WARREN_EBACKEND, "chord: result backend '%s': %s: %s",
				  ch->masked, what, ch->c && ch->c->errstr[0] ? ch->c->errstr
									  : "connection lost");
	if (ch->c)
		redisFree(ch->c);
	ch->c = NULL;
	return rc;
}

static int simple(backend_chord *ch, int argc, const char **argv, warren_error *err)
{
	redisReply *r = redisCommandArgv(ch->c, argc, argv, NULL);
	if (!r)
		return fail_ctx(ch, argv[0], err);
	int rc = r->type == REDIS_REPLY_ERROR
			 ? warren_error_set(err, WARREN_EBACKEND, "chord: '%s': %s: %s", ch->masked,
					    argv[0], r->str)
			 : 0;
	freeReplyObject(r);
	return rc;
}

static int connect_once(backend_chord *ch, warren_error *err)
{
	if (ch->c)
		return 0;
	ch->c = redisConnectWithTimeout(ch->url.host, ch->url.port,
					tv_ms(ch->opts.connect_timeout_ms));
	if (!ch->c)
		return warren_error_set(err, WARREN_ENOMEM, "chord: out of memory");
	if (ch->c->err || redisSetTimeout(ch->c, tv_ms(ch->opts.io_timeout_ms)) != REDIS_OK)
		return fail_ctx(ch, "connect", err);
	int rc = 0;
	if (ch->url.password && ch->url.username) {
		const char *argv[] = {"AUTH", ch->url.username, ch->url.password};
		rc = simple(ch, 3, argv, err);
	} else if (ch->url.password) {
		const char *argv[] = {"AUTH", ch->url.password};
		rc = simple(ch, 2, argv, err);
	}
	if (!rc && ch->url.db) {
		char db[16];
		snprintf(db, sizeof db, "%d", ch->url.db);
		const char *argv[] = {"SELECT", db};
		rc = simple(ch, 2, argv, err);
	}
	return rc;
}

/* Sends n commands (argv arrays with lengths) in one write and reads the n
 * replies; replies[] get the caller's to free. One reconnect and retry when
 * the connection was found dead before any reply was read. */
typedef struct cmd {
	int argc;
	const char *argv[10];
	size_t lens[10];
} cmd;

static void free_replies(redisReply **r, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (r[i]) {
			freeReplyObject(r[i]);
			r[i] = NULL;
		}
}

static int exchange_once(backend_chord *ch, const cmd *cmds, size_t n, redisReply **replies,
			 const char *what, warren_error *err)
{
	int rc = connect_once(ch, err);
	if (rc)
		return rc;
	for (size_t i = 0; i < n; i++)
		if (redisAppendCommandArgv(ch->c, cmds[i].argc, (const char **)cmds[i].argv,
					   cmds[i].lens) != REDIS_OK)
			return fail_ctx(ch, what, err);
	for (size_t i = 0; i < n; i++) {
		void *r = NULL;
		if (redisGetReply(ch->c, &r) != REDIS_OK) {
			free_replies(replies, i);
			return fail_ctx(ch, what, err);
		}
		replies[i] = r;
	}
	for (size_t i = 0; i < n; i++)
		if (replies[i]->type == REDIS_REPLY_ERROR) {
			rc = warren_error_set(err, WARREN_EBACKEND, "chord: '%s': %s: %s",
					      ch->masked, what, replies[i]->str);
			free_replies(replies, n);
			return rc;
		}
	return 0;
}

/* A MULTI/EXEC is all or nothing, and the single reads are idempotent, so
 * a lost connection is retried once on a fresh one. */
static int exchange(backend_chord *ch, const cmd *cmds, size_t n, redisReply **replies,
		    const char *what, warren_error *err)
{
	bool had = ch->c != NULL;
	int rc = exchange_once(ch, cmds, n, replies, what, err);
	if (rc == WARREN_EBACKEND && had && !ch->c)
		rc = exchange_once(ch, cmds, n, replies, what, err);
	return rc;
}

static void set_arg(cmd *c, const char *s, size_t len)
{
	c->argv[c->argc] = s;
	c->lens[c->argc] = len;
	c->argc++;
}

static void set_str(cmd *c, const char *s)
{
	set_arg(c, s, strlen(s));
}

/* ---- keys ---- */

typedef struct keys {
	char j[300], t[300], s[300];
} keys;

static int make_keys(const char *gid, keys *k, warren_error *err)
{
	if (strlen(gid) > 256)
		return warren_error_set(err, WARREN_EINVAL, "chord: group id longer than 256 bytes");
	snprintf(k->j, sizeof k->j, TASKSET_PREFIX "%s.j", gid);
	snprintf(k->t, sizeof k->t, TASKSET_PREFIX "%s.t", gid);
	snprintf(k->s, sizeof k->s, TASKSET_PREFIX "%s.s", gid);
	return 0;
}

/* ---- size ---- */

int backend_chord_set_size(backend_chord *ch, const char *group_id, int64_t size,
			   warren_error *err)
{
	keys k;
	int rc = make_keys(group_id, &k, err);
	if (rc)
		return rc;
	char n[24], ex[24];
	snprintf(n, sizeof n, "%lld", (long long)size);
	snprintf(ex, sizeof ex, "%lld", (long long)ch->opts.result_expires);
	cmd cmds[4] = {{0}};
	set_str(&cmds[0], "MULTI");
	set_str(&cmds[1], ch->opts.result_expires > 0 ? "SETEX" : "SET");
	set_str(&cmds[1], k.s);
	if (ch->opts.result_expires > 0)
		set_str(&cmds[1], ex);
	set_str(&cmds[1], n);
	set_str(&cmds[2], "PUBLISH");
	set_str(&cmds[2], k.s);
	set_str(&cmds[2], n);
	set_str(&cmds[3], "EXEC");
	redisReply *r[4] = {0};
	rc = exchange(ch, cmds, 4, r, "set chord size", err);
	free_replies(r, 4);
	return rc;
}

/* ---- parts ---- */

/* [1, tid, state, result] packed into sb. */
static int encode_member(const backend_chord_part *p, msgpack_sbuffer *sb, warren_error *err)
{
	msgpack_packer pk;
	msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
	const char *state = schema_state_name(p->state);
	size_t tl = strlen(p->task_id), sl = strlen(state);
	int bad = msgpack_pack_array(&pk, 4) || msgpack_pack_int(&pk, 1) ||
		  msgpack_pack_str(&pk, tl) || msgpack_pack_str_body(&pk, p->task_id, tl) ||
		  msgpack_pack_str(&pk, sl) || msgpack_pack_str_body(&pk, state, sl);
	if (!bad && p->result_mp && p->result_len)
		bad = msgpack_sbuffer_write(sb, p->result_mp, p->result_len);
	else if (!bad)
		bad = msgpack_pack_nil(&pk);
	return bad ? warren_error_set(err, WARREN_ENOMEM, "chord: out of memory") : 0;
}

/* Decodes one member; out's strings are malloc'd. */
static int decode_member(const char *data, size_t len, backend_chord_result *out,
			 warren_error *err)
{
	msgpack_zone zone;
	if (!msgpack_zone_init(&zone, 256))
		return warren_error_set(err, WARREN_ENOMEM, "chord: out of memory");
	schema_limits lim;
	schema_limits_default(&lim);
	msgpack_object o;
	int rc = schema_unpack(data, len, &lim, "chord part", &zone, &o, err);
	if (rc)
		goto out_zone;
	const msgpack_object *a = o.via.array.ptr;
	if (o.type != MSGPACK_OBJECT_ARRAY || o.via.array.size != 4 ||
	    a[1].type != MSGPACK_OBJECT_STR || a[2].type != MSGPACK_OBJECT_STR ||
	    schema_state_parse(a[2].via.str.ptr, a[2].via.str.size, &out->state) != 0) {
		rc = warren_error_set(err, WARREN_EDECODE,
				      "chord part: not [1, task id, state, result]");
		goto out_zone;
	}
	msgpack_sbuffer sb;
	msgpack_sbuffer_init(&sb);
	msgpack_packer pk;
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	out->task_id = strndup(a[1].via.str.ptr, a[1].via.str.size);
	if (msgpack_pack_object(&pk, a[3]) || !out->task_id) {
		msgpack_sbuffer_destroy(&sb);
		free(out->task_id);
		out->task_id = NULL;
		rc = warren_error_set(err, WARREN_ENOMEM, "chord: out of memory");
		goto out_zone;
	}
	out->result_mp = sb.data;
	out->result_len = sb.size;
out_zone:
	msgpack_zone_destroy(&zone);
	return rc;
}

/* Does the join already hold a member for task_id? */
static int holds_task(backend_chord *ch, const keys *k, const char *task_id, bool *found,
		      warren_error *err)
{
	cmd c = {0};
	set_str(&c, "ZRANGE");
	set_str(&c, k->j);
	set_str(&c, "0");
	set_str(&c, "-1");
	redisReply *r[1] = {0};
	int rc = exchange(ch, &c, 1, r, "ZRANGE", err);
	*found = false;
	for (size_t i = 0; !rc && !*found && r[0]->type == REDIS_REPLY_ARRAY && i < r[0]->elements;
	     i++) {
		backend_chord_result m = {0};
		const redisReply *e = r[0]->element[i];
		if (e->type == REDIS_REPLY_STRING && decode_member(e->str, e->len, &m, NULL) == 0) {
			*found = strcmp(m.task_id, task_id) == 0;
			free(m.task_id);
			free(m.result_mp);
		}
	}
	free_replies(r, 1);
	return rc;
}

static int64_t reply_int(const redisReply *r)
{
	if (!r)
		return 0;
	if (r->type == REDIS_REPLY_INTEGER)
		return r->integer;
	if (r->type == REDIS_REPLY_STRING)
		return strtoll(r->str, NULL, 10);
	return 0;
}

/* Builds MULTI [ZADD] ZCOUNT GET GET [EXPIRE x3] EXEC into cmds. */
static size_t part_commands(backend_chord *ch, const keys *k, const char *score,
			    const msgpack_sbuffer *member, bool add, const char *ex, cmd *cmds)
{
	size_t n = 0;
	set_str(&cmds[n++], "MULTI");
	if (add) {
		set_str(&cmds[n], "ZADD");
		set_str(&cmds[n], k->j);
		set_str(&cmds[n], score);
		set_arg(&cmds[n], member->data, member->size);
		n++;
	}
	set_str(&cmds[n], "ZCOUNT");
	set_str(&cmds[n], k->j);
	set_str(&cmds[n], "-inf");
	set_str(&cmds[n++], "+inf");
	set_str(&cmds[n], "GET");
	set_str(&cmds[n++], k->t);
	set_str(&cmds[n], "GET");
	set_str(&cmds[n++], k->s);
	const char *keyv[3] = {k->j, k->t, k->s};
	for (int i = 0; ch->opts.result_expires > 0 && i < 3; i++) {
		set_str(&cmds[n], "EXPIRE");
		set_str(&cmds[n], keyv[i]);
		set_str(&cmds[n++], ex);
	}
	set_str(&cmds[n++], "EXEC");
	return n;
}

int backend_chord_add(backend_chord *ch, const backend_chord_part *p, bool *complete,
		      warren_error *err)
{
	*complete = false;
	keys k;
	int rc = make_keys(p->group_id, &k, err);
	bool known = false;
	if (!rc && p->redelivered)
		rc = holds_task(ch, &k, p->task_id, &known, err);
	if (rc)
		return rc;
	msgpack_sbuffer member;
	msgpack_sbuffer_init(&member);
	if ((rc = encode_member(p, &member, err)))
		goto out_member;
	char score[24], ex[24];
	if (p->has_index)
		snprintf(score, sizeof score, "%lld", (long long)p->index);
	else
		snprintf(score, sizeof score, "+inf");
	snprintf(ex, sizeof ex, "%lld", (long long)ch->opts.result_expires);
	cmd cmds[9];
	memset(cmds, 0, sizeof cmds);
	size_t n = part_commands(ch, &k, score, &member, !known, ex, cmds);
	redisReply *r[9] = {0};
	if ((rc = exchange(ch, cmds, n, r, "chord part", err)))
		goto out_member;
	const redisReply *x = r[n - 1];
	size_t at = known ? 0 : 1; /* ZCOUNT's place in EXEC's reply */
	if (x->type != REDIS_REPLY_ARRAY || x->elements < at + 3) {
		rc = warren_error_set(err, WARREN_EBACKEND, "chord: '%s': EXEC aborted", ch->masked);
	} else {
		int64_t ready = reply_int(x->element[at]);
		int64_t diff = reply_int(x->element[at + 1]);
		const redisReply *size = x->element[at + 2];
		*complete = size && size->type == REDIS_REPLY_STRING &&
			    ready == reply_int(size) + diff;
	}
	free_replies(r, n);
out_member:
	msgpack_sbuffer_destroy(&member);
	return rc;
}

/* ---- join ---- */

void backend_chord_results_free(backend_chord_result *r, size_t n)
{
	for (size_t i = 0; r && i < n; i++) {
		free(r[i].task_id);
		free(r[i].result_mp);
	}
	if (n)
		free(r);
}

int backend_chord_read(backend_chord *ch, const char *group_id, backend_chord_result **out,
		       size_t *n, warren_error *err)
{
	*out = NULL;
	*n = 0;
	keys k;
	int rc = make_keys(group_id, &k, err);
	if (rc)
		return rc;
	cmd c = {0};
	set_str(&c, "ZRANGE");
	set_str(&c, k.j);
	set_str(&c, "0");
	set_str(&c, "-1");
	redisReply *r[1] = {0};
	if ((rc = exchange(ch, &c, 1, r, "ZRANGE", err)))
		return rc;
	size_t count = r[0]->type == REDIS_REPLY_ARRAY ? r[0]->elements : 0;
	backend_chord_result *res = count ? calloc(count, sizeof *res) : NULL;
	if (count && !res)
		rc = warren_error_set(err, WARREN_ENOMEM, "chord: out of memory");
	for (size_t i = 0; !rc && i < count; i++) {
		const redisReply *e = r[0]->element[i];
		rc = e->type == REDIS_REPLY_STRING ? decode_member(e->str, e->len, &res[i], err)
						   : warren_error_set(err, WARREN_EDECODE,
								      "chord part: not a string");
	}
	free_replies(r, 1);
	if (rc) {
		backend_chord_results_free(res, count);
		return rc;
	}
	*out = res;
	*n = count;
	return 0;
}

int backend_chord_forget(backend_chord *ch, const char *group_id, warren_error *err)
{
	keys k;
	int rc = make_keys(group_id, &k, err);
	if (rc)
		return rc;
	cmd cmds[3] = {{0}};
	const char *keyv[3] = {k.j, k.t, k.s};
	for (int i = 0; i < 3; i++) {
		set_str(&cmds[i], "DEL");
		set_str(&cmds[i], keyv[i]);
	}
	redisReply *r[3] = {0};
	rc = exchange(ch, cmds, 3, r, "DEL", err);
	free_replies(r, 3);
	return rc;
}
