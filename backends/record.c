/* backends/record.c - small records that are not task results, kept in the
 * result backend beside them: a pipeline run's record (producer/pipeline.c)
 * so `warren pipeline status ID` can read it from another process.
 *
 * Only Redis can hold them (rpc:// results are messages read once, none://
 * stores nothing): anything else is WARREN_EINVAL with a message that says
 * a redis result backend is needed. Each call opens its own blocking
 * hiredis connection and closes it: records are written once per run and
 * read once per status, so a pooled connection would buy nothing.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include <hiredis/hiredis.h>

#include "backend.h"

bool backend_record_supported(const char *url)
{
	return url && (strncmp(url, "redis://", 8) == 0 || strncmp(url, "rediss://", 9) == 0);
}

static struct timeval tv_ms(int ms)
{
	struct timeval tv = {.tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000};
	return tv;
}

typedef struct record_conn {
	backend_redis_url url;
	char masked[512];
	redisContext *c;
} record_conn;

static int fail_ctx(record_conn *rec, const char *what, warren_error *err)
{
	return warren_error_set(err, WARREN_EBACKEND, "record: result backend '%s': %s: %s",
				rec->masked, what,
				rec->c && rec->c->errstr[0] ? rec->c->errstr : "connection lost");
}

/* Runs argv and returns the reply (freed by the caller), or NULL after
 * setting err (also for an error reply). */
static redisReply *command(record_conn *rec, int argc, const char **argv, const size_t *lens,
			   warren_error *err)
{
	redisReply *r = redisCommandArgv(rec->c, argc, argv, lens);
	if (!r) {
		fail_ctx(rec, argv[0], err);
		return NULL;
	}
	if (r->type == REDIS_REPLY_ERROR) {
		warren_error_set(err, WARREN_EBACKEND, "record: result backend '%s': %s: %s",
				 rec->masked, argv[0], r->str);
		freeReplyObject(r);
		return NULL;
	}
	return r;
}

static int simple(record_conn *rec, int argc, const char **argv, warren_error *err)
{
	redisReply *r = command(rec, argc, argv, NULL, err);
	if (!r)
		return err ? err->code : WARREN_EBACKEND;
	freeReplyObject(r);
	return 0;
}

static void record_close(record_conn *rec)
{
	if (rec->c)
		redisFree(rec->c);
	backend_redis_url_release(&rec->url);
}

static int record_connect(const char *url, const backend_options *opts, record_conn *rec,
			  warren_error *err)
{
	memset(rec, 0, sizeof *rec);
	backend_options def;
	if (!opts) {
		backend_options_default(&def);
		opts = &def;
	}
	if (!backend_record_supported(url))
		return warren_error_set(err, WARREN_EINVAL,
					"record: result backend '%s' cannot keep run records; "
					"this needs a redis result backend (redis://)",
					url && *url ? url : "none");
	backend_url_mask(url, rec->masked, sizeof rec->masked);
	int rc = backend_redis_url_parse(url, &rec->url, err);
	if (rc)
		return rc;
	if (rec->url.tls) {
		rc = warren_error_set(err, WARREN_EINVAL,
				      "record: '%s': rediss:// is not supported for run records yet",
				      rec->masked);
		goto out_url;
	}
	rec->c = redisConnectWithTimeout(rec->url.host, rec->url.port,
					 tv_ms(opts->connect_timeout_ms));
	if (!rec->c) {
		rc = warren_error_set(err, WARREN_ENOMEM, "record: out of memory");
		goto out_url;
	}
	if (rec->c->err || redisSetTimeout(rec->c, tv_ms(opts->io_timeout_ms)) != REDIS_OK) {
		rc = fail_ctx(rec, "connect", err);
		goto out_close;
	}
	if (rec->url.password && rec->url.username) {
		const char *argv[] = {"AUTH", rec->url.username, rec->url.password};
		rc = simple(rec, 3, argv, err);
	} else if (rec->url.password) {
		const char *argv[] = {"AUTH", rec->url.password};
		rc = simple(rec, 2, argv, err);
	}
	if (!rc && rec->url.db) {
		char db[16];
		snprintf(db, sizeof db, "%d", rec->url.db);
		const char *argv[] = {"SELECT", db};
		rc = simple(rec, 2, argv, err);
	}
	if (rc)
		goto out_close;
	return 0;
out_close:
	redisFree(rec->c);
	rec->c = NULL;
out_url:
	backend_redis_url_release(&rec->url);
	return rc;
}

int backend_record_put(const char *url, const backend_options *opts, const char *key,
		       const void *data, size_t len, int64_t expires_s, warren_error *err)
{
	if (!key || !*key || (!data && len))
		return warren_error_set(err, WARREN_EINVAL, "record: NULL key or data");
	record_conn conn;
	int rc = record_connect(url, opts, &conn, err);
	if (rc)
		return rc;
	char ttl[32];
	snprintf(ttl, sizeof ttl, "%lld", (long long)expires_s);
	const char *argv[] = {expires_s > 0 ? "SETEX" : "SET", key, ttl, data ? data : ""};
	size_t lens[] = {strlen(argv[0]), strlen(key), strlen(ttl), len};
	if (expires_s <= 0) { /* SET key value */
		argv[2] = argv[3];
		lens[2] = lens[3];
	}
	redisReply *r = command(&conn, expires_s > 0 ? 4 : 3, argv, lens, err);
	if (!r)
		rc = err ? err->code : WARREN_EBACKEND;
	freeReplyObject(r);
	record_close(&conn);
	return rc;
}

int backend_record_get(const char *url, const backend_options *opts, const char *key,
		       char **data, size_t *len, warren_error *err)
{
	if (!key || !*key || !data)
		return warren_error_set(err, WARREN_EINVAL, "record: NULL key or out");
	*data = NULL;
	if (len)
		*len = 0;
	record_conn conn;
	int rc = record_connect(url, opts, &conn, err);
	if (rc)
		return rc;
	const char *argv[] = {"GET", key};
	redisReply *r = command(&conn, 2, argv, NULL, err);
	if (!r) {
		rc = err ? err->code : WARREN_EBACKEND;
	} else if (r->type != REDIS_REPLY_STRING) {
		rc = warren_error_set(err, WARREN_ENOTFOUND, "record '%s': not found in '%s' "
				      "(unknown, or expired)", key, conn.masked);
	} else if (!(*data = malloc(r->len + 1))) {
		rc = warren_error_set(err, WARREN_ENOMEM, "record: out of memory");
	} else {
		memcpy(*data, r->str, r->len);
		(*data)[r->len] = '\0';
		if (len)
			*len = r->len;
	}
	freeReplyObject(r);
	record_close(&conn);
	return rc;
}
