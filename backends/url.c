/* backends/url.c - redis:// and rediss:// result backend URLs, read the way
 * Celery reads them (kombu's _parse_url: userinfo before the last '@',
 * percent-decoded; the path is the database number), and URL masking so a
 * password never reaches a log or an error message. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"

/* Where the authority (userinfo@host:port) ends: at the first '/', '?' or '#'. */
static const char *authority_end(const char *p)
{
	return p + strcspn(p, "/?#");
}

/* The last '@' in [p, end), or NULL. */
static const char *last_at(const char *p, const char *end)
{
	const char *at = NULL;
	for (; p < end; p++)
		if (*p == '@')
			at = p;
	return at;
}

void backend_url_mask(const char *url, char *buf, size_t cap)
{
	if (!cap)
		return;
	if (!url)
		url = "";
	const char *sep = strstr(url, "://");
	const char *auth = sep ? sep + 3 : NULL;
	const char *at = auth ? last_at(auth, authority_end(auth)) : NULL;
	if (!at) {
		snprintf(buf, cap, "%s", url);
		return;
	}
	/* Keep the user name, hide what follows its ':'; with no ':' the whole
	 * userinfo may be a secret, so hide it all. */
	const char *colon = memchr(auth, ':', (size_t)(at - auth));
	const char *keep_end = colon ? colon + 1 : auth;
	snprintf(buf, cap, "%.*s****%s", (int)(keep_end - url), url, at);
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	c = (char)tolower((unsigned char)c);
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

/* A malloc'd, percent-decoded copy of s[0..len); NULL with err set. */
static char *decode_part(const char *s, size_t len, const char *what, const char *masked,
			 warren_error *err)
{
	char *out = malloc(len + 1);
	if (!out) {
		warren_error_set(err, WARREN_ENOMEM, "result backend '%s': out of memory", masked);
		return NULL;
	}
	size_t n = 0;
	for (size_t i = 0; i < len; i++) {
		if (s[i] != '%') {
			out[n++] = s[i];
			continue;
		}
		int hi = i + 2 < len ? hexval(s[i + 1]) : -1;
		int lo = i + 2 < len ? hexval(s[i + 2]) : -1;
		if (hi < 0 || lo < 0 || (hi == 0 && lo == 0)) {
			warren_error_set(err, WARREN_EINVAL,
					 "result backend '%s': bad percent escape in the %s",
					 masked, what);
			free(out);
			return NULL;
		}
		out[n++] = (char)(hi << 4 | lo);
		i += 2;
	}
	out[n] = '\0';
	return out;
}

/* Reads a decimal number in [min, max] from s[0..len). */
static int parse_number(const char *s, size_t len, long min, long max, long *out)
{
	long v = 0;
	if (len == 0 || len > 9)
		return -1;
	for (size_t i = 0; i < len; i++) {
		if (!isdigit((unsigned char)s[i]))
			return -1;
		v = v * 10 + (s[i] - '0');
	}
	if (v < min || v > max)
		return -1;
	*out = v;
	return 0;
}

static int parse_userinfo(const char *p, const char *at, backend_redis_url *u,
			  const char *masked, warren_error *err)
{
	const char *colon = memchr(p, ':', (size_t)(at - p));
	if (!colon)
		return warren_error_set(err, WARREN_EINVAL,
					"result backend '%s': a user without a password; write "
					"redis://:PASSWORD@host for a password alone", masked);
	if (colon > p) {
		u->username = decode_part(p, (size_t)(colon - p), "user name", masked, err);
		if (!u->username)
			return err ? err->code : WARREN_EINVAL;
	}
	u->password = decode_part(colon + 1, (size_t)(at - colon - 1), "password", masked, err);
	if (!u->password)
		return err ? err->code : WARREN_EINVAL;
	return 0;
}

/* host, [v6host], host:port or [v6host]:port in [p, end). */
static int parse_hostport(const char *p, const char *end, backend_redis_url *u,
			  const char *masked, warren_error *err)
{
	const char *host = p, *host_end, *port = NULL;
	if (*p == '[') {
		const char *close = memchr(p, ']', (size_t)(end - p));
		if (!close)
			return warren_error_set(err, WARREN_EINVAL,
						"result backend '%s': '[' without ']' in the host",
						masked);
		host = p + 1;
		host_end = close;
		if (close + 1 < end && close[1] != ':')
			return warren_error_set(err, WARREN_EINVAL,
						"result backend '%s': junk after ']'", masked);
		if (close + 1 < end)
			port = close + 2;
	} else {
		const char *colon = memchr(p, ':', (size_t)(end - p));
		host_end = colon ? colon : end;
		if (colon)
			port = colon + 1;
	}
	long v = 6379;
	if (port && parse_number(port, (size_t)(end - port), 1, 65535, &v) != 0)
		return warren_error_set(err, WARREN_EINVAL,
					"result backend '%s': port \"%.*s\" is not a number in 1..65535",
					masked, (int)(end - port), port);
	u->port = (int)v;
	if (host_end == host) {
		host = "localhost";
		host_end = host + strlen(host);
	}
	u->host = decode_part(host, (size_t)(host_end - host), "host", masked, err);
	return u->host ? 0 : (err ? err->code : WARREN_EINVAL);
}

/* "", "/" or "/N" (the database), then nothing: query options are refused
 * rather than silently ignored. */
static int parse_path(const char *p, backend_redis_url *u, const char *masked,
		      warren_error *err)
{
	if (*p == '?' || *p == '#')
		return warren_error_set(err, WARREN_EINVAL,
					"result backend '%s': URL options (\"%s\") are not supported",
					masked, p);
	if (*p == '/')
		p++;
	size_t len = strcspn(p, "?#");
	long db = 0;
	if (len && parse_number(p, len, 0, 1000000, &db) != 0)
		return warren_error_set(err, WARREN_EINVAL,
					"result backend '%s': database \"%.*s\" is not a number",
					masked, (int)len, p);
	u->db = (int)db;
	if (p[len])
		return warren_error_set(err, WARREN_EINVAL,
					"result backend '%s': URL options (\"%s\") are not supported",
					masked, p + len);
	return 0;
}

int backend_redis_url_parse(const char *url, backend_redis_url *u, warren_error *err)
{
	char masked[512];
	int rc;

	memset(u, 0, sizeof *u);
	backend_url_mask(url, masked, sizeof masked);
	if (strncmp(url, "redis://", 8) == 0) {
		url += 8;
	} else if (strncmp(url, "rediss://", 9) == 0) {
		u->tls = true;
		url += 9;
	} else {
		return warren_error_set(err, WARREN_EINVAL,
					"result backend '%s': not a redis:// or rediss:// URL", masked);
	}
	const char *end = authority_end(url);
	const char *at = last_at(url, end);
	if (at) {
		rc = parse_userinfo(url, at, u, masked, err);
		if (rc)
			goto out_release;
		url = at + 1;
	}
	rc = parse_hostport(url, end, u, masked, err);
	if (rc)
		goto out_release;
	rc = parse_path(end, u, masked, err);
	if (rc)
		goto out_release;
	return 0;
out_release:
	backend_redis_url_release(u);
	return rc;
}

void backend_redis_url_release(backend_redis_url *u)
{
	free(u->host);
	free(u->username);
	free(u->password);
	memset(u, 0, sizeof *u);
}
