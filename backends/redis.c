/* backends/redis.c - Celery's Redis result backend with hiredis, so a Python
 * client reads what warren stores and warren reads what a Python worker
 * stores. The authority is Celery 5.2's backends/redis.py and base.py
 * (BaseKeyValueStoreBackend); CELERY-WIRE.md §4 records what was observed.
 *
 * Two connections: `cmd` for GET/SET/MGET/DEL, opened at open time, and `sub`
 * for pub/sub, opened at the first wait and kept (unsubscribed) between
 * waits, because a connection in subscribed mode accepts no other command.
 * Both are blocking sockets with SO_RCVTIMEO; waiting on `sub` polls its fd
 * with the time left, so a deadline never depends on the socket timeout.
 * A dropped connection is reconnected once per operation, then the error
 * is reported (Celery retries the same way: reconnect, MGET, resubscribe).
 */
#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

#include <hiredis/hiredis.h>

#include "backend.h"

/* Wire layout, as Celery 5.2 writes it:
 *   key and pub/sub channel  "celery-task-meta-<task id>"
 *   value                    the msgpack meta of schema_result_encode_redis
 *   store                    GET key (a stored SUCCESS is final), then
 *                            MULTI; SETEX key <result_expires> value (SET when
 *                            0); PUBLISH key value; EXEC
 * A change to any of these must bump WARREN_RESULT_WIRE_VERSION (schemas.h)
 * and be checked against Celery with tests/interop/test_backend_redis_celery.c. */
#define KEY_PREFIX "celery-task-meta-"
#define KEY_PREFIX_LEN (sizeof KEY_PREFIX - 1)
/* Redis refuses string values over 512 MiB; Celery checks the same. */
#define MAX_VALUE_SIZE ((size_t)536870912)

typedef struct redis_backend {
	backend_redis_url url;
	const char *masked; /* lives in the handle */
	backend_options opts;
	redisContext *cmd;  /* NULL after a drop until the next use */
	redisContext *sub;  /* NULL until the first wait, or after a drop */
	bool dropped;       /* the last failure was a lost connection */
} redis_backend;

/* ---- time ---- */

static int64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static struct timeval tv_of_ms(int ms)
{
	struct timeval tv = {.tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000};
	return tv;
}

/* ---- keys ---- */

/* "celery-task-meta-<id>", malloc'd; the caller frees it. NULL: no memory. */
static char *key_for(const char *id, size_t *len)
{
	size_t n = KEY_PREFIX_LEN + strlen(id);
	char *key = malloc(n + 1);
	if (!key)
		return NULL;
	memcpy(key, KEY_PREFIX, KEY_PREFIX_LEN);
	memcpy(key + KEY_PREFIX_LEN, id, n - KEY_PREFIX_LEN + 1);
	*len = n;
	return key;
}

static int oom(redis_backend *rb, warren_error *err)
{
	return warren_error_set(err, WARREN_ENOMEM, "result backend '%s': out of memory",
				rb->masked);
}

/* ---- connections ---- */

/* Records c's error (hiredis's errstr) for `what`. A lost connection
 * (I/O error, EOF, socket timeout) sets rb->dropped so the caller may
 * reconnect; the context is dead either way and is freed. */
static int context_failed(redis_backend *rb, redisContext **slot, const char *what,
			  warren_error *err)
{
	redisContext *c = *slot;
	rb->dropped = c->err == REDIS_ERR_IO || c->err == REDIS_ERR_EOF;
	int rc = warren_error_set(err, WARREN_EBACKEND, "result backend '%s': %s: %s",
				  rb->masked, what, c->errstr[0] ? c->errstr : "connection lost");
	redisFree(c);
	*slot = NULL;
	return rc;
}

/* Runs one command on a fresh connection during the handshake. */
static int handshake_command(redis_backend *rb, redisContext *c, int argc,
			     const char **argv, warren_error *err)
{
	redisReply *reply = redisCommandArgv(c, argc, argv, NULL);
	if (!reply)
		return warren_error_set(err, WARREN_EBACKEND, "result backend '%s': %s: %s",
					rb->masked, argv[0], c->errstr);
	int rc = 0;
	if (reply->type == REDIS_REPLY_ERROR)
		rc = warren_error_set(err, WARREN_EBACKEND, "result backend '%s': %s: %s",
				      rb->masked, argv[0], reply->str);
	freeReplyObject(reply);
	return rc;
}

/* AUTH when the URL has a password, SELECT when its database is not 0. */
static int handshake(redis_backend *rb, redisContext *c, warren_error *err)
{
	char db[16];
	int rc = 0;

	if (rb->url.password && rb->url.username) {
		const char *argv[] = {"AUTH", rb->url.username, rb->url.password};
		rc = handshake_command(rb, c, 3, argv, err);
	} else if (rb->url.password) {
		const char *argv[] = {"AUTH", rb->url.password};
		rc = handshake_command(rb, c, 2, argv, err);
	}
	if (rc == 0 && rb->url.db != 0) {
		snprintf(db, sizeof db, "%d", rb->url.db);
		const char *argv[] = {"SELECT", db};
		rc = handshake_command(rb, c, 2, argv, err);
	}
	return rc;
}

/* A connected, authenticated context in *out; freed with redisFree. */
static int redis_connect(redis_backend *rb, redisContext **out, warren_error *err)
{
	int rc;
	redisContext *c = redisConnectWithTimeout(rb->url.host, rb->url.port,
						  tv_of_ms(rb->opts.connect_timeout_ms));
	if (!c)
		return oom(rb, err);
	if (c->err) {
		rc = warren_error_set(err, WARREN_EBACKEND, "result backend '%s': connect: %s",
				      rb->masked, c->errstr);
		goto out_free;
	}
	if (redisSetTimeout(c, tv_of_ms(rb->opts.io_timeout_ms)) != REDIS_OK) {
		rc = warren_error_set(err, WARREN_EBACKEND,
				      "result backend '%s': set socket timeout: %s",
				      rb->masked, c->errstr);
		goto out_free;
	}
	rc = handshake(rb, c, err);
	if (rc)
		goto out_free;
	*out = c;
	return 0;
out_free:
	redisFree(c);
	return rc;
}

static int ensure_cmd(redis_backend *rb, warren_error *err)
{
	return rb->cmd ? 0 : redis_connect(rb, &rb->cmd, err);
}

/* ---- commands on the cmd connection ---- */

typedef struct command {
	int argc;
	const char **argv;
	const size_t *lens;
} command;

static void free_replies(redisReply **replies, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (replies[i])
			freeReplyObject(replies[i]);
		replies[i] = NULL;
	}
}

/* Sends n commands in one write and reads their n replies into replies[]
 * (NULL-initialized by the caller, who frees them with free_replies).
 * `what` names the exchange in errors. Error replies are the caller's to
 * judge. */
static int exchange(redis_backend *rb, size_t n, const command *cmds, redisReply **replies,
		    const char *what, warren_error *err)
{
	for (size_t i = 0; i < n; i++)
		if (redisAppendCommandArgv(rb->cmd, cmds[i].argc, cmds[i].argv, cmds[i].lens) !=
		    REDIS_OK)
			return context_failed(rb, &rb->cmd, what, err);
	for (size_t i = 0; i < n; i++) {
		void *reply = NULL;
		if (redisGetReply(rb->cmd, &reply) != REDIS_OK) {
			free_replies(replies, i);
			return context_failed(rb, &rb->cmd, what, err);
		}
		replies[i] = reply;
	}
	return 0;
}

typedef int (*cmd_op)(redis_backend *rb, void *ctx, warren_error *err);

/* Runs op, and once more on a fresh connection if the first attempt lost
 * the connection. The first attempt's message is kept aside, so a retry
 * that succeeds leaves err clean. op must be safe to repeat. */
static int with_reconnect(redis_backend *rb, cmd_op op, void *ctx, warren_error *err)
{
	warren_error first = {0};
	int rc = ensure_cmd(rb, err);
	if (rc)
		return rc;
	rb->dropped = false;
	rc = op(rb, ctx, &first);
	if (rc && rb->dropped) {
		rb->dropped = false;
		rc = ensure_cmd(rb, err);
		return rc ? rc : op(rb, ctx, err);
	}
	if (rc)
		warren_error_set(err, rc, "%s", first.msg);
	return rc;
}

/* A Redis error reply as an error. */
static int reply_error(redis_backend *rb, const char *what, const redisReply *reply,
		       warren_error *err)
{
	return warren_error_set(err, WARREN_EBACKEND, "result backend '%s': %s: %s",
				rb->masked, what,
				reply->type == REDIS_REPLY_ERROR ? reply->str : "unexpected reply");
}

/* ---- store ---- */

typedef struct store_ctx {
	const char *key;
	size_t key_len;
	const char *value;
	size_t value_len;
	const char *id;
} store_ctx;

/* Celery's rule (base.py _store_result): once SUCCESS is stored, later
 * updates are dropped, so a redelivered task cannot overwrite its result. A
 * stored value we cannot decode is overwritten, as it is no SUCCESS we know. */
static bool stored_success(redis_backend *rb, const redisReply *reply)
{
	schema_result old;
	bool success = false;

	if (reply->type != REDIS_REPLY_STRING)
		return false;
	schema_result_init(&old);
	if (schema_result_decode_redis(reply->str, reply->len, &rb->opts.limits, &old, NULL) == 0)
		success = old.state == SCHEMA_STATE_SUCCESS;
	schema_result_release(&old);
	return success;
}

static int check_transaction(redis_backend *rb, redisReply **replies, const store_ctx *s,
			     warren_error *err)
{
	static const char *const names[] = {"MULTI", "SET", "PUBLISH"};
	for (size_t i = 0; i < 3; i++)
		if (replies[i]->type == REDIS_REPLY_ERROR)
			return reply_error(rb, names[i], replies[i], err);
	if (replies[3]->type != REDIS_REPLY_ARRAY || replies[3]->elements != 2) {
		char what[64];
		snprintf(what, sizeof what, "store '%.40s': EXEC", s->id);
		return reply_error(rb, what, replies[3], err);
	}
	return 0;
}

static int store_once(redis_backend *rb, void *ctx, warren_error *err)
{
	store_ctx *s = ctx;
	redisReply *replies[4] = {NULL};
	char expires[24];
	int rc;

	const char *get_argv[] = {"GET", s->key};
	const size_t get_lens[] = {3, s->key_len};
	command get = {2, get_argv, get_lens};
	rc = exchange(rb, 1, &get, replies, "GET", err);
	if (rc)
		return rc;
	if (replies[0]->type == REDIS_REPLY_ERROR)
		rc = reply_error(rb, "GET", replies[0], err);
	else if (stored_success(rb, replies[0]))
		rc = 1; /* nothing to write */
	free_replies(replies, 1);
	if (rc)
		return rc > 0 ? 0 : rc;

	snprintf(expires, sizeof expires, "%lld", (long long)rb->opts.result_expires);
	const char *multi_argv[] = {"MULTI"};
	const char *setex_argv[] = {"SETEX", s->key, expires, s->value};
	const size_t setex_lens[] = {5, s->key_len, strlen(expires), s->value_len};
	const char *set_argv[] = {"SET", s->key, s->value};
	const size_t set_lens[] = {3, s->key_len, s->value_len};
	const char *publish_argv[] = {"PUBLISH", s->key, s->value};
	const size_t publish_lens[] = {7, s->key_len, s->value_len};
	const char *exec_argv[] = {"EXEC"};
	bool expire = rb->opts.result_expires > 0;
	command tx[4] = {
		{1, multi_argv, NULL},
		expire ? (command){4, setex_argv, setex_lens} : (command){3, set_argv, set_lens},
		{3, publish_argv, publish_lens},
		{1, exec_argv, NULL},
	};
	rc = exchange(rb, 4, tx, replies, "MULTI/SET/PUBLISH/EXEC", err);
	if (rc)
		return rc;
	rc = check_transaction(rb, replies, s, err);
	free_replies(replies, 4);
	return rc;
}

static int redis_store(void *impl, const schema_result *r, const backend_request *req,
		       warren_error *err)
{
	redis_backend *rb = impl;
	store_ctx s = {.id = r->task_id};
	char *value = NULL;
	int rc;

	(void)req; /* rpc's routing; Redis keys by task id */
	rc = schema_result_encode_redis(r, &value, &s.value_len, err);
	if (rc)
		return rc;
	if (s.value_len > MAX_VALUE_SIZE) {
		rc = warren_error_set(err, WARREN_ELIMIT,
				      "result backend '%s': result of task '%s' is %zu bytes, "
				      "over Redis's 512 MiB", rb->masked, r->task_id, s.value_len);
		goto out_value;
	}
	s.value = value;
	char *key = key_for(r->task_id, &s.key_len);
	if (!key) {
		rc = oom(rb, err);
		goto out_value;
	}
	s.key = key;
	rc = with_reconnect(rb, store_once, &s, err);
	free(key);
out_value:
	free(value);
	return rc;
}

/* ---- get and forget ---- */

/* Decodes a stored value of task id into out (initialized). A value that is
 * not a result is named by its task id. */
static int decode_value(redis_backend *rb, const char *id, const char *data, size_t len,
			schema_result *out, warren_error *err)
{
	warren_error why = {0};
	int rc = schema_result_decode_redis(data, len, &rb->opts.limits, out, &why);
	if (rc)
		return warren_error_set(err, rc, "result backend '%s': task '%s': %s",
					rb->masked, id, why.msg);
	if (!out->task_id)
		return schema_result_set_task_id(out, id, err);
	return 0;
}

typedef struct key_ctx {
	const char *verb;
	const char *key;
	size_t key_len;
	redisReply *reply; /* GET's reply, owned */
} key_ctx;

/* One single-key command (GET, DEL); the reply is kept in k->reply. */
static int key_command_once(redis_backend *rb, void *ctx, warren_error *err)
{
	key_ctx *k = ctx;
	const char *argv[] = {k->verb, k->key};
	const size_t lens[] = {strlen(k->verb), k->key_len};
	command c = {2, argv, lens};

	if (k->reply)
		freeReplyObject(k->reply);
	k->reply = NULL;
	int rc = exchange(rb, 1, &c, &k->reply, k->verb, err);
	if (rc == 0 && k->reply->type == REDIS_REPLY_ERROR)
		rc = reply_error(rb, k->verb, k->reply, err);
	return rc;
}

static int key_command(redis_backend *rb, const char *verb, const char *id, key_ctx *k,
		       warren_error *err)
{
	memset(k, 0, sizeof *k);
	k->verb = verb;
	char *key = key_for(id, &k->key_len);
	if (!key)
		return oom(rb, err);
	k->key = key;
	int rc = with_reconnect(rb, key_command_once, k, err);
	free(key);
	return rc;
}

static int redis_get(void *impl, const char *id, schema_result *out, warren_error *err)
{
	redis_backend *rb = impl;
	key_ctx k;

	schema_result_release(out);
	int rc = key_command(rb, "GET", id, &k, err);
	if (rc == 0 && k.reply->type == REDIS_REPLY_STRING)
		rc = decode_value(rb, id, k.reply->str, k.reply->len, out, err);
	else if (rc == 0)
		rc = schema_result_set_task_id(out, id, err); /* no record: PENDING */
	if (k.reply)
		freeReplyObject(k.reply);
	return rc;
}

static int redis_forget(void *impl, const char *id, warren_error *err)
{
	key_ctx k;
	int rc = key_command(impl, "DEL", id, &k, err);
	if (k.reply)
		freeReplyObject(k.reply);
	return rc;
}

/* ---- waiting ---- */

/* An id and its position in ids[]; a wait keeps them sorted by id to find
 * the positions of an id that arrives on a channel. */
typedef struct slot {
	const char *id;
	size_t index;
} slot;

typedef struct waiter {
	redis_backend *rb;
	const char *const *ids;
	size_t n;
	slot *order; /* sorted by id */
	bool *done;  /* by position in ids[] */
	size_t pending;
	backend_ready_fn on_ready;
	void *arg;
} waiter;

static int by_id(const void *a, const void *b)
{
	return strcmp(((const slot *)a)->id, ((const slot *)b)->id);
}

/* strcmp of id (NUL-terminated) against s[0..len), which came off the wire
 * and may hold NUL bytes. */
static int cmp_id(const char *id, const char *s, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		unsigned char a = (unsigned char)id[i], b = (unsigned char)s[i];
		if (a == '\0')
			return -1; /* id is shorter (or s has a NUL here) */
		if (a != b)
			return a < b ? -1 : 1;
	}
	return id[len] ? 1 : 0;
}

/* First position in order[] whose id is not less than s[0..len). */
static size_t lower_bound(const waiter *w, const char *s, size_t len)
{
	size_t lo = 0, hi = w->n;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (cmp_id(w->order[mid].id, s, len) < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

/* A stored or published value for task (id, len): if it is ready, report
 * it at each position of that id not yet done. */
static int take_value(waiter *w, const char *id, size_t len, const char *data,
		      size_t data_len, warren_error *err)
{
	for (size_t p = lower_bound(w, id, len); p < w->n; p++) {
		size_t i = w->order[p].index;
		if (cmp_id(w->order[p].id, id, len) != 0)
			break;
		if (w->done[i])
			continue;
		schema_result r;
		schema_result_init(&r);
		int rc = decode_value(w->rb, w->ids[i], data, data_len, &r, err);
		if (rc == 0 && !schema_state_is_ready(r.state)) {
			schema_result_release(&r);
			return 0; /* STARTED, RETRY...: keep waiting */
		}
		if (rc == 0) {
			w->done[i] = true;
			w->pending--;
			rc = w->on_ready(w->arg, i, &r);
			if (rc)
				warren_error_set(err, rc, "result backend '%s': waiting stopped "
						 "by the caller", w->rb->masked);
		}
		schema_result_release(&r);
		if (rc)
			return rc;
	}
	return 0;
}

/* The keys of the distinct ids not yet done, with argv[0] = verb; freed by
 * free_keys. *reps receives the index (in ids[]) each key stands for. */
static int pending_keys(waiter *w, const char *verb, char ***argv_out, size_t **lens_out,
			size_t **reps_out, int *argc_out, warren_error *err)
{
	char **argv = calloc(w->pending + 1, sizeof *argv);
	size_t *lens = calloc(w->pending + 1, sizeof *lens);
	size_t *reps = calloc(w->pending + 1, sizeof *reps);
	int argc = 1;
	if (!argv || !lens || !reps)
		goto out_oom;
	argv[0] = (char *)verb;
	lens[0] = strlen(verb);
	for (size_t p = 0; p < w->n; p++) {
		size_t i = w->order[p].index;
		if (w->done[i] || (p > 0 && strcmp(w->order[p - 1].id, w->ids[i]) == 0))
			continue;
		argv[argc] = key_for(w->ids[i], &lens[argc]);
		if (!argv[argc])
			goto out_oom;
		reps[argc - 1] = i;
		argc++;
	}
	*argv_out = argv;
	*lens_out = lens;
	*reps_out = reps;
	*argc_out = argc;
	return 0;
out_oom:
	if (argv)
		for (int a = 1; a < argc; a++)
			free(argv[a]);
	free(argv);
	free(lens);
	free(reps);
	return oom(w->rb, err);
}

static void free_keys(char **argv, size_t *lens, size_t *reps, int argc)
{
	for (int a = 1; a < argc; a++)
		free(argv[a]);
	free(argv);
	free(lens);
	free(reps);
}

/* Sends a command on the subscriber connection and flushes it. */
static int sub_send(redis_backend *rb, int argc, const char **argv, const size_t *lens,
		    warren_error *err)
{
	int done = 0;
	if (redisAppendCommandArgv(rb->sub, argc, argv, lens) != REDIS_OK)
		return context_failed(rb, &rb->sub, argv[0], err);
	while (!done)
		if (redisBufferWrite(rb->sub, &done) != REDIS_OK)
			return context_failed(rb, &rb->sub, argv[0], err);
	return 0;
}

/* The next push on the subscriber connection. Returns 1 with *out set (the
 * caller frees it), 0 when `deadline` (monotonic ms; < 0: none) passed, or
 * a negative code. */
static int sub_read(redis_backend *rb, int64_t deadline, redisReply **out, warren_error *err)
{
	for (;;) {
		void *reply = NULL;
		if (redisGetReplyFromReader(rb->sub, &reply) != REDIS_OK)
			return context_failed(rb, &rb->sub, "read", err);
		if (reply) {
			*out = reply;
			return 1;
		}
		int64_t left = deadline < 0 ? -1 : deadline - now_ms();
		if (deadline >= 0 && left <= 0)
			return 0;
		struct pollfd pfd = {.fd = rb->sub->fd, .events = POLLIN};
		int ready = poll(&pfd, 1, left > 0x7fffffff ? 0x7fffffff : (int)left);
		if (ready < 0 && errno == EINTR)
			continue;
		if (ready < 0) {
			int rc = warren_error_set(err, WARREN_EBACKEND,
						  "result backend '%s': poll: %s", rb->masked,
						  strerror(errno));
			redisFree(rb->sub);
			rb->sub = NULL;
			return rc;
		}
		if (ready == 0)
			return 0;
		if (redisBufferRead(rb->sub) != REDIS_OK)
			return context_failed(rb, &rb->sub, "read", err);
	}
}

static bool push_is(const redisReply *r, const char *kind)
{
	return r->type == REDIS_REPLY_ARRAY && r->elements == 3 &&
	       r->element[0]->type == REDIS_REPLY_STRING && strcmp(r->element[0]->str, kind) == 0;
}

/* A "message" push: a published result, for one of our keys. */
static int take_message(waiter *w, const redisReply *r, warren_error *err)
{
	const redisReply *ch = r->element[1], *data = r->element[2];
	if (ch->type != REDIS_REPLY_STRING || data->type != REDIS_REPLY_STRING ||
	    ch->len < KEY_PREFIX_LEN || memcmp(ch->str, KEY_PREFIX, KEY_PREFIX_LEN) != 0)
		return 0;
	return take_value(w, ch->str + KEY_PREFIX_LEN, ch->len - KEY_PREFIX_LEN, data->str,
			  data->len, err);
}

/* SUBSCRIBE to every pending key and read the confirmations, taking any
 * result published meanwhile. */
static int subscribe_pending(waiter *w, warren_error *err)
{
	redis_backend *rb = w->rb;
	char **argv;
	size_t *lens, *reps;
	int argc, rc;

	if (!rb->sub && (rc = redis_connect(rb, &rb->sub, err)) != 0)
		return rc;
	rc = pending_keys(w, "SUBSCRIBE", &argv, &lens, &reps, &argc, err);
	if (rc)
		return rc;
	rc = sub_send(rb, argc, (const char **)argv, lens, err);
	int64_t deadline = now_ms() + rb->opts.io_timeout_ms;
	for (int confirmed = 1; rc == 0 && confirmed < argc;) {
		redisReply *reply = NULL;
		rc = sub_read(rb, deadline, &reply, err);
		if (rc == 0) {
			rc = warren_error_set(err, WARREN_EBACKEND,
					      "result backend '%s': SUBSCRIBE: no answer",
					      rb->masked);
			break;
		}
		if (rc < 0)
			break;
		rc = 0;
		if (push_is(reply, "subscribe"))
			confirmed++;
		else if (push_is(reply, "message"))
			rc = take_message(w, reply, err);
		else if (reply->type == REDIS_REPLY_ERROR)
			rc = reply_error(rb, "SUBSCRIBE", reply, err);
		freeReplyObject(reply);
	}
	free_keys(argv, lens, reps, argc);
	return rc;
}

typedef struct mget_ctx {
	waiter *w;
	char **argv;
	size_t *lens;
	size_t *reps;
	int argc;
	redisReply *reply;
} mget_ctx;

static int mget_once(redis_backend *rb, void *ctx, warren_error *err)
{
	mget_ctx *m = ctx;
	command c = {m->argc, (const char **)m->argv, m->lens};

	if (m->reply)
		freeReplyObject(m->reply);
	m->reply = NULL;
	int rc = exchange(rb, 1, &c, &m->reply, "MGET", err);
	if (rc == 0 && (m->reply->type != REDIS_REPLY_ARRAY ||
			m->reply->elements != (size_t)m->argc - 1))
		rc = reply_error(rb, "MGET", m->reply, err);
	return rc;
}

/* MGET every pending key: results stored before we subscribed. */
static int fetch_pending(waiter *w, warren_error *err)
{
	mget_ctx m = {.w = w};
	int rc = pending_keys(w, "MGET", &m.argv, &m.lens, &m.reps, &m.argc, err);
	if (rc)
		return rc;
	if (m.argc > 1)
		rc = with_reconnect(w->rb, mget_once, &m, err);
	for (int a = 1; rc == 0 && a < m.argc; a++) {
		const redisReply *v = m.reply->element[a - 1];
		const char *id = w->ids[m.reps[a - 1]];
		if (v->type == REDIS_REPLY_STRING)
			rc = take_value(w, id, strlen(id), v->str, v->len, err);
	}
	if (m.reply)
		freeReplyObject(m.reply);
	free_keys(m.argv, m.lens, m.reps, m.argc);
	return rc;
}

/* Subscribe first, then read what is already stored, so a result stored in
 * between is seen one way or the other. */
static int sync_pending(waiter *w, warren_error *err)
{
	int rc = subscribe_pending(w, err);
	return rc ? rc : fetch_pending(w, err);
}

/* sync_pending, once more if the subscriber connection kept from the last
 * wait turns out to be gone (an idle timeout, a server restart). */
static int sync_with_reconnect(waiter *w, warren_error *err)
{
	warren_error first = {0};
	w->rb->dropped = false;
	int rc = sync_pending(w, &first);
	if (rc && w->rb->dropped) {
		w->rb->dropped = false;
		return sync_pending(w, err);
	}
	if (rc)
		warren_error_set(err, rc, "%s", first.msg);
	return rc;
}

/* Leaves the subscriber connection unsubscribed for the next wait, or
 * closes it if that fails (the next wait reconnects). */
static void unsubscribe_all(redis_backend *rb)
{
	static const char *argv[] = {"UNSUBSCRIBE"};
	int64_t deadline = now_ms() + rb->opts.io_timeout_ms;
	redisReply *reply = NULL;

	if (!rb->sub)
		return;
	if (sub_send(rb, 1, argv, NULL, NULL) != 0)
		return;
	while (sub_read(rb, deadline, &reply, NULL) == 1) {
		bool last = push_is(reply, "unsubscribe") &&
			    reply->element[2]->type == REDIS_REPLY_INTEGER &&
			    reply->element[2]->integer == 0;
		freeReplyObject(reply);
		if (last)
			return;
	}
	if (rb->sub) {
		redisFree(rb->sub);
		rb->sub = NULL;
	}
}

/* Reads published results until none is pending or the deadline passes.
 * A lost subscriber connection is reconnected once: subscribe again and
 * MGET, since results may have been stored while it was down. */
static int await_published(waiter *w, int64_t deadline, warren_error *err)
{
	bool reconnected = false;

	while (w->pending > 0) {
		warren_error first = {0};
		redisReply *reply = NULL;
		w->rb->dropped = false;
		int rc = sub_read(w->rb, deadline, &reply, reconnected ? err : &first);
		if (rc == 0)
			return 0;
		if (rc < 0 && w->rb->dropped && !reconnected) {
			reconnected = true;
			rc = sync_pending(w, err);
			if (rc)
				return rc;
			continue;
		}
		if (rc < 0)
			return warren_error_set(err, rc, "%s", first.msg);
		rc = push_is(reply, "message") ? take_message(w, reply, err) : 0;
		freeReplyObject(reply);
		if (rc)
			return rc;
	}
	return 0;
}

static int wait_timed_out(waiter *w, int timeout_ms, warren_error *err)
{
	return warren_error_set(err, WARREN_ETIMEOUT,
				"result backend '%s': %zu of %zu results still pending after %d ms",
				w->rb->masked, w->pending, w->n, timeout_ms);
}

static int redis_wait(void *impl, const char *const *ids, size_t n, int timeout_ms,
		      backend_ready_fn on_ready, void *arg, warren_error *err)
{
	redis_backend *rb = impl;
	int64_t deadline = timeout_ms < 0 ? -1 : now_ms() + timeout_ms;
	waiter w = {.rb = rb, .ids = ids, .n = n, .pending = n, .on_ready = on_ready, .arg = arg};
	int rc;

	if (n >= (size_t)INT_MAX) /* one SUBSCRIBE names them all */
		return warren_error_set(err, WARREN_EINVAL, "result backend '%s': cannot wait "
					"for %zu results at once", rb->masked, n);
	w.order = malloc(n * sizeof *w.order);
	w.done = calloc(n, sizeof *w.done);
	if (!w.order || !w.done) {
		rc = oom(rb, err);
		goto out_free;
	}
	for (size_t i = 0; i < n; i++)
		w.order[i] = (slot){ids[i], i};
	qsort(w.order, n, sizeof *w.order, by_id);

	/* No deadline to wait for: a look is all that is asked. */
	if (timeout_ms == 0) {
		rc = fetch_pending(&w, err);
		goto out_result;
	}
	rc = sync_with_reconnect(&w, err);
	if (rc == 0)
		rc = await_published(&w, deadline, err);
	unsubscribe_all(rb);
out_result:
	if (rc == 0 && w.pending > 0)
		rc = wait_timed_out(&w, timeout_ms, err);
out_free:
	free(w.order);
	free(w.done);
	return rc;
}

/* ---- lifecycle ---- */

static int redis_open(const char *url, const char *url_masked, const backend_options *o,
		      void **impl, warren_error *err)
{
	int rc;
	redis_backend *rb = calloc(1, sizeof *rb);
	if (!rb)
		return warren_error_set(err, WARREN_ENOMEM, "result backend: out of memory");
	rb->masked = url_masked;
	rb->opts = *o;
	rc = backend_redis_url_parse(url, &rb->url, err);
	if (rc)
		goto out_free;
	if (rb->url.tls) {
		rc = warren_error_set(err, WARREN_EINVAL,
				      "result backend '%s': rediss:// needs hiredis >= 1.0 built "
				      "with SSL; this build has hiredis %d.%d", url_masked,
				      HIREDIS_MAJOR, HIREDIS_MINOR);
		goto out_url;
	}
	rc = redis_connect(rb, &rb->cmd, err);
	if (rc)
		goto out_url;
	*impl = rb;
	return 0;
out_url:
	backend_redis_url_release(&rb->url);
out_free:
	free(rb);
	return rc;
}

static void redis_free(void *impl)
{
	redis_backend *rb = impl;
	if (rb->cmd)
		redisFree(rb->cmd);
	if (rb->sub)
		redisFree(rb->sub);
	backend_redis_url_release(&rb->url);
	free(rb);
}

const backend_ops backend_redis_ops = {
	.name = "redis",
	.open = redis_open,
	.store = redis_store,
	.get = redis_get,
	.wait = redis_wait,
	.forget = redis_forget,
	.free = redis_free,
};
