/* broker-adapter/url.c - amqp:// and amqps:// URLs: parsing with RabbitMQ's
 * defaults, failover lists, and the masked form every message uses.
 *
 * A password must never reach a log or an error message, so every message
 * here quotes the URL through broker_url_mask, even for input that does not
 * parse. Defaults follow https://www.rabbitmq.com/uri-spec.html, except that
 * an empty path ("amqp://host/") means vhost "/" rather than "".
 */
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "internal.h"

#define MASK "****"

void broker_url_mask(const char *url, char *buf, size_t size)
{
	if (!size)
		return;
	const char *auth = strstr(url, "://");
	auth = auth ? auth + 3 : url;
	size_t alen = strcspn(auth, "/?#");
	/* The last '@' ends the userinfo: a raw '@' in a password is wrong but
	 * must still not leak. */
	const char *at = NULL;
	for (const char *p = auth; p < auth + alen; p++)
		if (*p == '@')
			at = p;
	const char *colon = at ? memchr(auth, ':', (size_t)(at - auth)) : NULL;
	if (!colon) {
		snprintf(buf, size, "%s", url);
		return;
	}
	snprintf(buf, size, "%.*s" MASK "%s", (int)(colon + 1 - url), url, at);
}

/* Decodes %XX escapes of s[0..len) into a new string. */
static int pct_decode(const char *s, size_t len, char **out)
{
	char *d = malloc(len + 1);
	if (!d)
		return WARREN_ENOMEM;
	size_t j = 0;
	for (size_t i = 0; i < len; i++) {
		if (s[i] != '%') {
			d[j++] = s[i];
			continue;
		}
		if (i + 2 >= len || !isxdigit((unsigned char)s[i + 1]) ||
		    !isxdigit((unsigned char)s[i + 2])) {
			free(d);
			return WARREN_EINVAL;
		}
		char hex[3] = {s[i + 1], s[i + 2], 0};
		d[j++] = (char)strtol(hex, NULL, 16);
		i += 2;
	}
	d[j] = '\0';
	*out = d;
	return 0;
}

/* Appends s percent-encoded (all but RFC 3986 unreserved) to buf at *pos. */
static void pct_encode(char *buf, size_t size, size_t *pos, const char *s)
{
	for (; *s; s++) {
		unsigned char ch = (unsigned char)*s;
		int n;
		if (isalnum(ch) || strchr("-._~", ch))
			n = snprintf(buf + *pos, size - *pos, "%c", ch);
		else
			n = snprintf(buf + *pos, size - *pos, "%%%02X", ch);
		if (n < 0 || (size_t)n >= size - *pos) {
			*pos = size - 1;
			return;
		}
		*pos += (size_t)n;
	}
}

static char *make_masked(const broker_url *u)
{
	size_t size = 64 + 3 * (strlen(u->user) + strlen(u->host) + strlen(u->vhost));
	char *buf = malloc(size);
	if (!buf)
		return NULL;
	size_t pos = (size_t)snprintf(buf, size, "%s://", u->tls ? "amqps" : "amqp");
	pct_encode(buf, size, &pos, u->user);
	bool v6 = strchr(u->host, ':') != NULL;
	pos += (size_t)snprintf(buf + pos, size - pos, ":" MASK "@%s%s%s:%d/", v6 ? "[" : "",
				u->host, v6 ? "]" : "", u->port);
	pct_encode(buf, size, &pos, u->vhost);
	return buf;
}

/* A decimal in [min, max] from s[0..len). */
static int parse_int(const char *s, size_t len, long min, long max, long *out)
{
	if (len == 0 || len > 18)
		return -1;
	long v = 0;
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

static int parse_query(const char *q, broker_url *u, const char *masked, warren_error *err)
{
	while (*q) {
		size_t len = strcspn(q, "&");
		const char *eq = memchr(q, '=', len);
		size_t klen = eq ? (size_t)(eq - q) : len;
		const char *val = eq ? eq + 1 : q + len;
		size_t vlen = (size_t)(q + len - val);
		long v;
		if (klen == 9 && !strncmp(q, "heartbeat", klen)) {
			if (parse_int(val, vlen, 0, 65535, &v))
				return warren_error_set(err, WARREN_EINVAL,
							"url '%s': heartbeat '%.*s' is not a number of seconds in 0..65535",
							masked, (int)vlen, val);
			u->heartbeat = (int)v;
		} else if (klen == 18 && !strncmp(q, "connection_timeout", klen)) {
			if (parse_int(val, vlen, 1, INT_MAX, &v))
				return warren_error_set(err, WARREN_EINVAL,
							"url '%s': connection_timeout '%.*s' is not a positive number of milliseconds",
							masked, (int)vlen, val);
			u->connection_timeout_ms = (int)v;
		} else if (len) {
			return warren_error_set(err, WARREN_EINVAL,
						"url '%s': unknown option '%.*s' (known: heartbeat, connection_timeout)",
						masked, (int)klen, q);
		}
		q += len;
		if (*q == '&')
			q++;
	}
	return 0;
}

/* user[:password]@ into u, percent-decoded; absent parts keep their defaults. */
static int parse_userinfo(const char *s, size_t len, broker_url *u, const char *masked,
			  warren_error *err)
{
	const char *colon = memchr(s, ':', len);
	size_t ulen = colon ? (size_t)(colon - s) : len;
	char *user = NULL, *pass = NULL;
	if (pct_decode(s, ulen, &user))
		goto bad;
	if (colon && pct_decode(colon + 1, len - ulen - 1, &pass))
		goto bad;
	free(u->user);
	u->user = user;
	if (pass) {
		free(u->password);
		u->password = pass;
	}
	return 0;
bad:
	free(user);
	/* Says which part without quoting it: it may be the password. */
	return warren_error_set(err, WARREN_EINVAL, "url '%s': bad percent-encoding in the %s",
				masked, user ? "password" : "user name");
}

static int parse_hostport(const char *s, size_t len, broker_url *u, const char *masked,
			  warren_error *err)
{
	const char *host = s, *port = NULL;
	size_t hlen = len;
	if (len && s[0] == '[') {
		const char *close = memchr(s, ']', len);
		if (!close)
			return warren_error_set(err, WARREN_EINVAL,
						"url '%s': IPv6 address without a closing ']'", masked);
		host = s + 1;
		hlen = (size_t)(close - host);
		if (close + 1 < s + len) {
			if (close[1] != ':')
				return warren_error_set(err, WARREN_EINVAL,
							"url '%s': junk after the IPv6 address", masked);
			port = close + 2;
		}
	} else {
		const char *colon = memchr(s, ':', len);
		if (colon) {
			hlen = (size_t)(colon - s);
			port = colon + 1;
		}
	}
	if (port) {
		long v;
		size_t plen = (size_t)(s + len - port);
		if (parse_int(port, plen, 1, 65535, &v))
			return warren_error_set(err, WARREN_EINVAL,
						"url '%s': port '%.*s' is not a number in 1..65535",
						masked, (int)plen, port);
		u->port = (int)v;
	}
	if (hlen) {
		char *h = NULL;
		if (pct_decode(host, hlen, &h))
			return warren_error_set(err, WARREN_EINVAL,
						"url '%s': bad percent-encoding in the host", masked);
		free(u->host);
		u->host = h;
	}
	return 0;
}

static int parse_vhost(const char *s, size_t len, broker_url *u, const char *masked,
		       warren_error *err)
{
	if (len == 0)
		return 0; /* "amqp://host" and "amqp://host/" both mean "/" */
	if (len == 1 && s[0] == '/')
		return 0; /* "amqp://host//": kombu's and Celery's spelling of vhost "/" */
	if (memchr(s, '/', len))
		return warren_error_set(err, WARREN_EINVAL,
					"url '%s': vhost '%.*s' has a raw '/'; write it as %%2F",
					masked, (int)len, s);
	char *v = NULL;
	if (pct_decode(s, len, &v))
		return warren_error_set(err, WARREN_EINVAL,
					"url '%s': bad percent-encoding in vhost '%.*s'",
					masked, (int)len, s);
	free(u->vhost);
	u->vhost = v;
	return 0;
}

static int set_defaults(broker_url *u)
{
	u->heartbeat = -1;
	u->connection_timeout_ms = -1;
	u->user = strdup("guest");
	u->password = strdup("guest");
	u->host = strdup("localhost");
	u->vhost = strdup("/");
	return u->user && u->password && u->host && u->vhost ? 0 : WARREN_ENOMEM;
}

int broker_url_parse(const char *url, broker_url *out, warren_error *err)
{
	char masked[200];
	broker_url u = {0};
	int rc;
	broker_url_mask(url ? url : "", masked, sizeof masked);
	memset(out, 0, sizeof *out);
	if (!url || !*url)
		return warren_error_set(err, WARREN_EINVAL, "url '': empty broker URL");
	if (!strncasecmp(url, "amqps://", 8)) {
		u.tls = true;
		u.port = 5671;
	} else if (!strncasecmp(url, "amqp://", 7)) {
		u.port = 5672;
	} else {
		return warren_error_set(err, WARREN_EINVAL,
					"url '%s': scheme must be amqp:// or amqps://", masked);
	}
	if (set_defaults(&u)) {
		rc = warren_error_set(err, WARREN_ENOMEM, "url '%s': out of memory", masked);
		goto out_release;
	}
	const char *p = url + (u.tls ? 8 : 7);
	size_t alen = strcspn(p, "/?#");
	const char *at = NULL;
	for (const char *q = p; q < p + alen; q++)
		if (*q == '@')
			at = q;
	if (at && (rc = parse_userinfo(p, (size_t)(at - p), &u, masked, err)))
		goto out_release;
	const char *hp = at ? at + 1 : p;
	if ((rc = parse_hostport(hp, (size_t)(p + alen - hp), &u, masked, err)))
		goto out_release;
	p += alen;
	if (*p == '/') {
		p++;
		size_t vlen = strcspn(p, "?#");
		if ((rc = parse_vhost(p, vlen, &u, masked, err)))
			goto out_release;
		p += vlen;
	}
	if (*p == '?') {
		size_t qlen = strcspn(p + 1, "#");
		char *q = strndup(p + 1, qlen);
		if (!q) {
			rc = warren_error_set(err, WARREN_ENOMEM, "url '%s': out of memory", masked);
			goto out_release;
		}
		rc = parse_query(q, &u, masked, err);
		free(q);
		if (rc)
			goto out_release;
		p += 1 + qlen;
	}
	if (*p == '#') {
		rc = warren_error_set(err, WARREN_EINVAL, "url '%s': a fragment ('#') is not allowed",
				      masked);
		goto out_release;
	}
	u.masked = make_masked(&u);
	if (!u.masked) {
		rc = warren_error_set(err, WARREN_ENOMEM, "url '%s': out of memory", masked);
		goto out_release;
	}
	*out = u;
	return 0;
out_release:
	broker_url_release(&u);
	return rc;
}

void broker_url_release(broker_url *u)
{
	if (!u)
		return;
	free(u->user);
	if (u->password) /* scrub: the struct may sit in freed memory a while */
		memset(u->password, 0, strlen(u->password));
	free(u->password);
	free(u->host);
	free(u->vhost);
	free(u->masked);
	memset(u, 0, sizeof *u);
}

void broker_url_list_free(broker_url *urls, size_t n)
{
	for (size_t i = 0; urls && i < n; i++)
		broker_url_release(&urls[i]);
	free(urls);
}

int broker_url_list_parse(const char *urls, broker_url **out, size_t *n, warren_error *err)
{
	*out = NULL;
	*n = 0;
	if (!urls)
		urls = "";
	size_t cap = 1;
	for (const char *p = urls; *p; p++)
		cap += *p == ';';
	broker_url *list = calloc(cap, sizeof *list);
	if (!list)
		return warren_error_set(err, WARREN_ENOMEM, "broker urls: out of memory");
	size_t count = 0;
	int rc;
	for (const char *p = urls;;) {
		size_t len = strcspn(p, ";");
		while (len && isspace((unsigned char)*p))
			p++, len--;
		while (len && isspace((unsigned char)p[len - 1]))
			len--;
		if (len) {
			char *one = strndup(p, len);
			if (!one) {
				rc = warren_error_set(err, WARREN_ENOMEM, "broker urls: out of memory");
				goto out_free;
			}
			rc = broker_url_parse(one, &list[count], err);
			free(one);
			if (rc)
				goto out_free;
			count++;
		}
		p += strcspn(p, ";");
		if (!*p)
			break;
		p++;
	}
	if (!count) {
		rc = warren_error_set(err, WARREN_EINVAL, "broker urls: no URL given");
		goto out_free;
	}
	*out = list;
	*n = count;
	return 0;
out_free:
	broker_url_list_free(list, count);
	return rc;
}

int broker_backoff_ms(unsigned attempt, int initial_ms, int max_ms, unsigned *seed)
{
	if (initial_ms < 1)
		initial_ms = 1;
	if (max_ms < initial_ms)
		max_ms = initial_ms;
	int64_t d = initial_ms;
	for (unsigned i = 0; i < attempt && d < max_ms; i++)
		d *= 2;
	if (d > max_ms)
		d = max_ms;
	int64_t half = d / 2;
	return (int)(half + (int64_t)(rand_r(seed) % (int)(d - half + 1)));
}
