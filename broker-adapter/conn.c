/* broker-adapter/conn.c - one AMQP connection: connect (TCP or TLS) with
 * timeouts, login, channels, heartbeats, failover with backoff, and the frame
 * pump that every other file waits through.
 *
 * Concurrency: none. The loop thread owns the connection. rabbitmq-c sends
 * and checks heartbeats only inside its frame waits, so every wait here goes
 * through amqp_simple_wait_frame_noblock with a finite timeout, never a raw
 * poll on the socket that would starve them.
 *
 * Reconnect: when the socket fails, broker_conn_lost drops the rabbitmq-c
 * state and the next call that needs the broker runs broker_conn_ensure: the
 * URL list in order, a backoff with jitter between passes, then confirm mode,
 * the remembered topology, the consumers and every unconfirmed message again.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"

#define SYSTEM_CA_BUNDLE "/etc/ssl/certs/ca-certificates.crt"

int64_t broker_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static struct timeval ms_to_tv(int ms)
{
	if (ms < 0)
		ms = 0;
	return (struct timeval){.tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000};
}

static void sleep_ms(int ms)
{
	struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000};
	while (nanosleep(&ts, &ts) == -1 && errno == EINTR)
		;
}

char *broker_bytes_dup(amqp_bytes_t b)
{
	char *s = malloc(b.len + 1);
	if (!s)
		return NULL;
	if (b.len)
		memcpy(s, b.bytes, b.len);
	s[b.len] = '\0';
	return s;
}

void broker_conn_opts_init(broker_conn_opts *o)
{
	*o = (broker_conn_opts){
		.heartbeat = 60,
		.connect_timeout_ms = 10000,
		.rpc_timeout_ms = 30000,
		.reconnect_timeout_ms = 60000,
		.backoff_initial_ms = 100,
		.backoff_max_ms = 5000,
		.publish_window = 1000,
		.confirm_timeout_ms = 30000,
		.tls_verify_peer = true,
		.tls_verify_hostname = true,
	};
}

/* ---- errors ------------------------------------------------------------- */

int broker_rpc_error(broker_conn *c, int channel, amqp_rpc_reply_t r, warren_error *err,
		     const char *what)
{
	const char *url = broker_conn_url(c);
	switch (r.reply_type) {
	case AMQP_RESPONSE_NORMAL:
		return 0;
	case AMQP_RESPONSE_NONE:
		warren_error_set(err, WARREN_EBROKER, "%s on '%s': no reply from the broker", what, url);
		break;
	case AMQP_RESPONSE_LIBRARY_EXCEPTION:
		warren_error_set(err, r.library_error == AMQP_STATUS_TIMEOUT ? WARREN_ETIMEOUT
									      : WARREN_EBROKER,
				 "%s on '%s': %s", what, url, amqp_error_string2(r.library_error));
		break;
	case AMQP_RESPONSE_SERVER_EXCEPTION:
		if (r.reply.id == AMQP_CHANNEL_CLOSE_METHOD) {
			amqp_channel_close_t *m = r.reply.decoded;
			warren_error_set(err, WARREN_EBROKER, "%s: %u %.*s", what, m->reply_code,
					 (int)m->reply_text.len, (char *)m->reply_text.bytes);
			amqp_channel_close_ok_t ok = {0};
			/* The broker waits for close-ok before it accepts channel.open again. */
			if (amqp_send_method(c->amqp, (amqp_channel_t)channel,
					     AMQP_CHANNEL_CLOSE_OK_METHOD, &ok) != AMQP_STATUS_OK) {
				broker_conn_lost(c, err ? err->msg : what);
				return WARREN_EBROKER;
			}
			c->closed_channels |= 1u << channel;
			return WARREN_EBROKER;
		}
		if (r.reply.id == AMQP_CONNECTION_CLOSE_METHOD) {
			amqp_connection_close_t *m = r.reply.decoded;
			warren_error_set(err, WARREN_EBROKER, "%s on '%s': connection closed: %u %.*s",
					 what, url, m->reply_code, (int)m->reply_text.len,
					 (char *)m->reply_text.bytes);
			amqp_connection_close_ok_t ok = {0};
			amqp_send_method(c->amqp, 0, AMQP_CONNECTION_CLOSE_OK_METHOD, &ok);
		} else {
			warren_error_set(err, WARREN_EBROKER, "%s on '%s': unexpected method 0x%08x",
					 what, url, r.reply.id);
		}
		break;
	}
	/* Every case that reaches here leaves the connection unusable. */
	broker_conn_lost(c, err && err->code ? err->msg : what);
	return err && err->code ? err->code : WARREN_EBROKER;
}

int broker_rpc_check(broker_conn *c, int channel, warren_error *err, const char *what)
{
	return broker_rpc_error(c, channel, amqp_get_rpc_reply(c->amqp), err, what);
}

/* ---- one connection attempt --------------------------------------------- */

static int tls_setup(broker_conn *c, amqp_socket_t *sock, const broker_url *u, warren_error *err)
{
	const broker_conn_opts *o = &c->opts;
	const char *ca = o->tls_ca_file;
	if (!ca && o->tls_verify_peer && access(SYSTEM_CA_BUNDLE, R_OK) == 0)
		ca = SYSTEM_CA_BUNDLE;
	if (ca && amqp_ssl_socket_set_cacert(sock, ca) != AMQP_STATUS_OK)
		return warren_error_set(err, WARREN_ECONFIG,
					"connect '%s': tls: cannot load CA file '%s'", u->masked, ca);
	if (o->tls_cert_file &&
	    amqp_ssl_socket_set_key(sock, o->tls_cert_file, o->tls_key_file) != AMQP_STATUS_OK)
		return warren_error_set(err, WARREN_ECONFIG,
					"connect '%s': tls: cannot load client certificate '%s' "
					"with key '%s'", u->masked, o->tls_cert_file, o->tls_key_file);
	amqp_ssl_socket_set_verify_peer(sock, o->tls_verify_peer);
	amqp_ssl_socket_set_verify_hostname(sock, o->tls_verify_hostname);
	return 0;
}

/* Client properties: a name for the management UI, and the capabilities we
 * handle (a broker-side consumer cancel arrives only if we say we take it). */
static amqp_rpc_reply_t login(broker_conn *c, const broker_url *u, int heartbeat)
{
	amqp_table_entry_t caps[] = {
		{.key = amqp_cstring_bytes("consumer_cancel_notify"),
		 .value = {.kind = AMQP_FIELD_KIND_BOOLEAN, .value.boolean = 1}},
		{.key = amqp_cstring_bytes("publisher_confirms"),
		 .value = {.kind = AMQP_FIELD_KIND_BOOLEAN, .value.boolean = 1}},
		{.key = amqp_cstring_bytes("basic.nack"),
		 .value = {.kind = AMQP_FIELD_KIND_BOOLEAN, .value.boolean = 1}},
	};
	amqp_table_entry_t props[] = {
		{.key = amqp_cstring_bytes("capabilities"),
		 .value = {.kind = AMQP_FIELD_KIND_TABLE,
			   .value.table = {.num_entries = 3, .entries = caps}}},
		{.key = amqp_cstring_bytes("connection_name"),
		 .value = {.kind = AMQP_FIELD_KIND_UTF8,
			   .value.bytes = amqp_cstring_bytes(c->opts.connection_name
								     ? c->opts.connection_name
								     : "warren")}},
	};
	amqp_table_t table = {.num_entries = 2, .entries = props};
	return amqp_login_with_properties(c->amqp, u->vhost, 0, 131072, heartbeat, &table,
					  AMQP_SASL_METHOD_PLAIN, u->user, u->password);
}

static int open_channels(broker_conn *c, warren_error *err)
{
	for (int ch = BROKER_CH_TOPOLOGY; ch <= BROKER_CH_CONSUME; ch++) {
		amqp_channel_open(c->amqp, (amqp_channel_t)ch);
		int rc = broker_rpc_check(c, ch, err, "open channel");
		if (rc)
			return rc;
	}
	c->closed_channels = 0;
	return 0;
}

static int connect_one(broker_conn *c, const broker_url *u, warren_error *err)
{
	int timeout = u->connection_timeout_ms > 0 ? u->connection_timeout_ms
						   : c->opts.connect_timeout_ms;
	int heartbeat = u->heartbeat >= 0 ? u->heartbeat : c->opts.heartbeat;
	struct timeval tv = ms_to_tv(timeout), rpc_tv = ms_to_tv(c->opts.rpc_timeout_ms);
	int rc;

	c->amqp = amqp_new_connection();
	if (!c->amqp)
		return warren_error_set(err, WARREN_ENOMEM, "connect '%s': out of memory", u->masked);
	amqp_socket_t *sock = u->tls ? amqp_ssl_socket_new(c->amqp) : amqp_tcp_socket_new(c->amqp);
	if (!sock) {
		rc = warren_error_set(err, WARREN_ENOMEM, "connect '%s': cannot create a %s socket",
				      u->masked, u->tls ? "TLS" : "TCP");
		goto out_destroy;
	}
	if (u->tls && (rc = tls_setup(c, sock, u, err)))
		goto out_destroy;
	int st = amqp_socket_open_noblock(sock, u->host, u->port, &tv);
	if (st != AMQP_STATUS_OK) {
		rc = warren_error_set(err, st == AMQP_STATUS_TIMEOUT
					   ? WARREN_ETIMEOUT : WARREN_EBROKER,
				      "connect '%s': %s", u->masked, amqp_error_string2(st));
		goto out_destroy;
	}
	amqp_set_handshake_timeout(c->amqp, &tv);
	amqp_set_rpc_timeout(c->amqp, &rpc_tv);
	amqp_rpc_reply_t r = login(c, u, heartbeat);
	if (r.reply_type != AMQP_RESPONSE_NORMAL) {
		char what[160];
		snprintf(what, sizeof what, "login as '%s' to vhost '%s'", u->user, u->vhost);
		return broker_rpc_error(c, 0, r, err, what); /* it drops the connection */
	}
	return open_channels(c, err);
out_destroy:
	amqp_destroy_connection(c->amqp);
	c->amqp = NULL;
	return rc;
}

/* Everything that lives on a fresh connection. */
static int after_connect(broker_conn *c, warren_error *err)
{
	int rc;
	c->generation++;
	/* The delay cascade's bindings come back before any resend (delay.c). */
	if ((rc = broker_publish_setup(c, err)) || (rc = broker_topology_redeclare(c, err)) ||
	    (rc = broker_delay_redeclare(c, err)) || (rc = broker_consume_resume(c, err)) ||
	    (rc = broker_publish_resend(c, err)))
		return rc;
	if (c->generation > 1) {
		broker_event ev = {.type = BROKER_EVENT_RECONNECTED, .reason = strdup(c->lost_reason)};
		broker_event_push(c, &ev);
	}
	return 0;
}

int broker_conn_ensure(broker_conn *c, warren_error *err)
{
	if (c->amqp && !c->closed_channels)
		return 0;
	if (c->amqp)
		return broker_channels_repair(c, err);
	int64_t deadline = broker_now_ms() + c->opts.reconnect_timeout_ms;
	warren_error last = {0};
	char why[sizeof c->lost_reason]; /* failed attempts overwrite lost_reason */
	memcpy(why, c->lost_reason, sizeof why);
	for (unsigned pass = 0;; pass++) {
		for (size_t i = 0; i < c->n_urls; i++) {
			c->url_index = i;
			warren_error_clear(&last);
			memcpy(c->lost_reason, why, sizeof why);
			if (connect_one(c, &c->urls[i], &last) == 0 && after_connect(c, &last) == 0)
				return 0;
			if (c->amqp)
				broker_conn_lost(c, last.msg);
		}
		int delay = broker_backoff_ms(pass, c->opts.backoff_initial_ms,
					      c->opts.backoff_max_ms, &c->seed);
		if (broker_now_ms() + delay > deadline)
			break;
		sleep_ms(delay);
	}
	if (c->n_urls > 1)
		return warren_error_set(err, last.code, "%s (all %zu broker urls failed)", last.msg,
					c->n_urls);
	return warren_error_set(err, last.code, "%s", last.msg);
}

void broker_conn_lost(broker_conn *c, const char *reason)
{
	if (reason && reason != c->lost_reason)
		snprintf(c->lost_reason, sizeof c->lost_reason, "%s", reason);
	if (!c->amqp)
		return;
	amqp_destroy_connection(c->amqp);
	c->amqp = NULL;
	c->closed_channels = 0;
	c->n_held = 0; /* they pointed into the state just destroyed */
}

void broker_conn_drop(broker_conn *c)
{
	broker_conn_lost(c, "dropped by the caller");
}

int broker_channels_repair(broker_conn *c, warren_error *err)
{
	int rc = 0;
	while (c->amqp && c->closed_channels && !rc) {
		int ch = __builtin_ctz(c->closed_channels);
		c->closed_channels &= ~(1u << ch);
		amqp_channel_open(c->amqp, (amqp_channel_t)ch);
		if ((rc = broker_rpc_check(c, ch, err, "reopen channel")))
			break;
		if (ch == BROKER_CH_PUBLISH) {
			if (!(rc = broker_publish_setup(c, err)))
				rc = broker_publish_resend(c, err);
		} else if (ch == BROKER_CH_CONSUME) {
			/* Deliveries on the closed channel can no longer be acked. */
			c->generation++;
			rc = broker_consume_resume(c, err);
			broker_event ev = {.type = BROKER_EVENT_RECONNECTED,
					   .reason = strdup(c->lost_reason)};
			broker_event_push(c, &ev);
		}
	}
	return rc;
}

/* ---- lifecycle ---------------------------------------------------------- */

static int copy_opts(broker_conn *c, const broker_conn_opts *o, warren_error *err)
{
	const char *src[5] = {o->urls, o->connection_name, o->tls_ca_file, o->tls_cert_file,
			      o->tls_key_file};
	const char **dst[5] = {&c->opts.urls, &c->opts.connection_name, &c->opts.tls_ca_file,
			       &c->opts.tls_cert_file, &c->opts.tls_key_file};
	c->opts = *o;
	for (int i = 0; i < 5; i++) {
		*dst[i] = NULL;
		if (!src[i])
			continue;
		c->opt_strings[i] = strdup(src[i]);
		if (!c->opt_strings[i])
			return warren_error_set(err, WARREN_ENOMEM, "broker: out of memory");
		*dst[i] = c->opt_strings[i];
	}
	return 0;
}

static int check_tls_opts(const broker_conn_opts *o, warren_error *err)
{
	if (!o->tls_cert_file != !o->tls_key_file)
		return warren_error_set(err, WARREN_ECONFIG,
					"tls: client %s '%s' given without a %s",
					o->tls_cert_file ? "certificate" : "key",
					o->tls_cert_file ? o->tls_cert_file : o->tls_key_file,
					o->tls_cert_file ? "key" : "certificate");
	const char *files[3] = {o->tls_ca_file, o->tls_cert_file, o->tls_key_file};
	static const char *const what[3] = {"CA file", "client certificate", "client key"};
	for (int i = 0; i < 3; i++)
		if (files[i] && access(files[i], R_OK) != 0)
			return warren_error_set(err, WARREN_ECONFIG, "tls: %s '%s': %s", what[i],
						files[i], strerror(errno));
	return 0;
}

int broker_conn_new(const broker_conn_opts *opts, broker_conn **out, warren_error *err)
{
	int rc;
	*out = NULL;
	if (opts->publish_window == 0)
		return warren_error_set(err, WARREN_EINVAL, "broker: publish_window must be > 0");
	if ((rc = check_tls_opts(opts, err)))
		return rc;
	broker_conn *c = calloc(1, sizeof *c);
	if (!c)
		return warren_error_set(err, WARREN_ENOMEM, "broker: out of memory");
	c->seed = (unsigned)getpid() ^ (unsigned)broker_now_ms();
	init_amqp_pool(&c->pool, 4096);
	msgpack_sbuffer_init(&c->headers_scratch);
	if ((rc = copy_opts(c, opts, err)))
		goto out_free;
	if ((rc = broker_url_list_parse(opts->urls, &c->urls, &c->n_urls, err)))
		goto out_free;
	c->cap = opts->publish_window;
	c->ring = calloc(c->cap, sizeof *c->ring);
	if (!c->ring) {
		rc = warren_error_set(err, WARREN_ENOMEM, "broker: out of memory");
		goto out_free;
	}
	/* connect_once: a budget of 0 is exactly one pass over the URLs. */
	c->opts.reconnect_timeout_ms = opts->connect_once ? 0 : opts->reconnect_timeout_ms;
	rc = broker_conn_ensure(c, err);
	c->opts.reconnect_timeout_ms = opts->reconnect_timeout_ms;
	if (rc)
		goto out_free;
	*out = c;
	return 0;
out_free:
	broker_conn_free(c);
	return rc;
}

void broker_conn_free(broker_conn *c)
{
	if (!c)
		return;
	if (c->amqp) {
		/* Polite close so the broker logs no "client unexpectedly closed". */
		amqp_connection_close(c->amqp, AMQP_REPLY_SUCCESS);
		amqp_destroy_connection(c->amqp);
	}
	broker_publish_release(c);
	broker_consume_release(c);
	broker_topology_rec_free(&c->topo);
	broker_delay_free(c->delay);
	broker_url_list_free(c->urls, c->n_urls);
	empty_amqp_pool(&c->pool);
	free(c->content_body);
	msgpack_sbuffer_destroy(&c->headers_scratch);
	for (size_t i = 0; i < sizeof c->opt_strings / sizeof *c->opt_strings; i++)
		free(c->opt_strings[i]);
	free(c);
}

const char *broker_conn_url(const broker_conn *c)
{
	return c->n_urls ? c->urls[c->url_index].masked : "";
}

uint64_t broker_conn_generation(const broker_conn *c)
{
	return c->generation;
}

int broker_conn_heartbeat(const broker_conn *c)
{
	return c->amqp ? amqp_get_heartbeat(c->amqp) : 0;
}

int broker_conn_fd(const broker_conn *c)
{
	return c->amqp ? amqp_get_sockfd(c->amqp) : -1;
}

bool broker_conn_pending(const broker_conn *c)
{
	return c->ev_head || c->n_held || (c->amqp && (amqp_frames_enqueued(c->amqp) ||
					  amqp_data_in_buffer(c->amqp)));
}

/* ---- the frame pump ----------------------------------------------------- */

static int lost(broker_conn *c, warren_error *err, const char *fmt, const char *detail)
{
	char msg[WARREN_ERROR_MSG_MAX];
	snprintf(msg, sizeof msg, fmt, broker_conn_url(c), detail);
	broker_conn_lost(c, msg);
	return warren_error_set(err, WARREN_EBROKER, "%s", msg);
}

/* basic.return and basic.deliver are followed by a content header and body
 * frames on the same channel. We read them ourselves rather than with
 * amqp_read_message, which clones the properties (header table included)
 * into a fresh 4 KB pool and mallocs the body for every message: a third of
 * the worker's instructions per task. Here the properties stay where
 * rabbitmq-c decoded them (the channel's pool) and a one-frame body is the
 * frame itself; only a body split over several frames is gathered, into
 * c->content_body. All of it is valid until the next
 * amqp_maybe_release_buffers (broker_conn_pump) or the next read_content, so
 * the callers copy what they keep at once. */
static int content_error(broker_conn *c, const amqp_frame_t *f, warren_error *err)
{
	const char *why = "unexpected frame inside a message";
	if (f->frame_type == AMQP_FRAME_METHOD && (f->payload.method.id == AMQP_CHANNEL_CLOSE_METHOD ||
						   f->payload.method.id == AMQP_CONNECTION_CLOSE_METHOD))
		why = "closed by the broker inside a message";
	return lost(c, err, "connection to '%s' lost while reading a message: %s", why);
}

/* The rest of a message has this long to arrive. */
#define CONTENT_TIMEOUT_MS 30000

/* The next frame on channel ch. Frames of other channels that come first
 * (RabbitMQ does not interleave them inside a message, but AMQP allows it)
 * are held, in order, for broker_conn_pump to dispatch next. */
static int next_frame_on(broker_conn *c, amqp_channel_t ch, amqp_frame_t *f, warren_error *err)
{
	for (size_t i = 0; i < c->n_held; i++) {
		if (c->held[i].channel != ch)
			continue;
		*f = c->held[i]; /* a held deliver's own content, held behind it */
		memmove(c->held + i, c->held + i + 1, (--c->n_held - i) * sizeof *c->held);
		return 0;
	}
	struct timeval tv = {.tv_sec = CONTENT_TIMEOUT_MS / 1000};
	for (;;) {
		int st = amqp_simple_wait_frame_noblock(c->amqp, f, &tv);
		if (st != AMQP_STATUS_OK)
			return lost(c, err, "connection to '%s' lost while reading a message: %s",
				    amqp_error_string2(st));
		if (f->channel == ch)
			return 0;
		if (c->n_held == BROKER_HELD_MAX)
			return lost(c, err, "connection to '%s' lost while reading a message: %s",
				    "too many frames of other channels inside it");
		c->held[c->n_held++] = *f;
	}
}

static int read_content(broker_conn *c, amqp_channel_t ch, broker_content *out, warren_error *err)
{
	amqp_frame_t f;
	if (next_frame_on(c, ch, &f, err))
		return WARREN_EBROKER;
	if (f.frame_type != AMQP_FRAME_HEADER || f.payload.properties.class_id != AMQP_BASIC_CLASS)
		return content_error(c, &f, err);
	uint64_t size = f.payload.properties.body_size;
	out->props = f.payload.properties.decoded;
	out->body = amqp_empty_bytes;
	for (size_t got = 0; got < size;) {
		if (next_frame_on(c, ch, &f, err))
			return WARREN_EBROKER;
		if (f.frame_type != AMQP_FRAME_BODY)
			return content_error(c, &f, err);
		amqp_bytes_t part = f.payload.body_fragment;
		if (part.len > size - got)
			return lost(c, err, "connection to '%s' lost while reading a message: %s",
				    "body longer than its header said");
		if (got == 0 && part.len == size) { /* the usual case: one frame */
			out->body = part;
			return 0;
		}
		if (got == 0 && size > c->content_cap) {
			void *grown = realloc(c->content_body, (size_t)size);
			if (!grown)
				return lost(c, err, "connection to '%s' lost: %s",
					    "out of memory reading a message");
			c->content_body = grown;
			c->content_cap = (size_t)size;
		}
		memcpy((char *)c->content_body + got, part.bytes, part.len);
		got += part.len;
		out->body = (amqp_bytes_t){.len = got, .bytes = c->content_body};
	}
	return 0;
}

static int on_channel_close(broker_conn *c, amqp_channel_t ch, const amqp_channel_close_t *m,
			    warren_error *err)
{
	char text[WARREN_ERROR_MSG_MAX];
	snprintf(text, sizeof text, "%u %.*s", m->reply_code, (int)m->reply_text.len,
		 (char *)m->reply_text.bytes);
	amqp_channel_close_ok_t ok = {0};
	if (amqp_send_method(c->amqp, ch, AMQP_CHANNEL_CLOSE_OK_METHOD, &ok) != AMQP_STATUS_OK)
		return lost(c, err, "connection to '%s' lost: %s", text);
	snprintf(c->lost_reason, sizeof c->lost_reason, "channel %u closed by the broker: %.200s",
		 (unsigned)ch, text);
	c->closed_channels |= 1u << ch;
	if (ch == BROKER_CH_PUBLISH)
		broker_publish_on_channel_close(c, text);
	return broker_channels_repair(c, err);
}

static int dispatch(broker_conn *c, const amqp_frame_t *f, warren_error *err)
{
	if (f->frame_type != AMQP_FRAME_METHOD)
		return 0; /* stray content of something we did not ask for */
	const amqp_method_t *m = &f->payload.method;
	broker_content msg;
	switch (m->id) {
	case AMQP_BASIC_ACK_METHOD: {
		const amqp_basic_ack_t *a = m->decoded;
		if (f->channel == BROKER_CH_PUBLISH)
			broker_publish_on_ack(c, a->delivery_tag, a->multiple, BROKER_CONFIRMED);
		return 0;
	}
	case AMQP_BASIC_NACK_METHOD: {
		const amqp_basic_nack_t *n = m->decoded;
		if (f->channel == BROKER_CH_PUBLISH)
			broker_publish_on_ack(c, n->delivery_tag, n->multiple, BROKER_NACKED);
		return 0;
	}
	case AMQP_BASIC_RETURN_METHOD: {
		/* Decoded into the channel's pool, which reading the content only grows. */
		const amqp_basic_return_t *r = m->decoded;
		if (read_content(c, f->channel, &msg, err))
			return WARREN_EBROKER;
		broker_publish_on_return(c, r, &msg);
		return 0;
	}
	case AMQP_BASIC_DELIVER_METHOD: {
		const amqp_basic_deliver_t *d = m->decoded;
		if (read_content(c, f->channel, &msg, err))
			return WARREN_EBROKER;
		broker_consume_on_deliver(c, d, &msg);
		return 0;
	}
	case AMQP_BASIC_CANCEL_METHOD:
		broker_consume_on_cancel(c, m->decoded);
		return 0;
	case AMQP_CHANNEL_CLOSE_METHOD:
		return on_channel_close(c, f->channel, m->decoded, err);
	case AMQP_CONNECTION_CLOSE_METHOD: {
		const amqp_connection_close_t *cc = m->decoded;
		char text[WARREN_ERROR_MSG_MAX];
		snprintf(text, sizeof text, "%u %.*s", cc->reply_code, (int)cc->reply_text.len,
			 (char *)cc->reply_text.bytes);
		amqp_connection_close_ok_t ok = {0};
		amqp_send_method(c->amqp, 0, AMQP_CONNECTION_CLOSE_OK_METHOD, &ok);
		return lost(c, err, "connection to '%s' closed by the broker: %s", text);
	}
	default:
		/* connection.blocked/unblocked and the like: publishing simply waits. */
		return 0;
	}
}

/* At most this many frames per call, so a flood of deliveries cannot keep
 * the caller from its other work. */
#define PUMP_BATCH 256

int broker_conn_pump(broker_conn *c, int timeout_ms, warren_error *err)
{
	if (!c->amqp)
		return warren_error_set(err, WARREN_EBROKER, "broker '%s': not connected",
					broker_conn_url(c));
	/* Safe only here: no decoded frame is referenced between calls, unless
	 * held frames (next_frame_on) still point into the channels' pools. */
	if (!c->n_held)
		amqp_maybe_release_buffers(c->amqp);
	struct timeval tv = ms_to_tv(timeout_ms), zero = {0, 0};
	int handled = 0;
	while (handled < PUMP_BATCH) {
		amqp_frame_t f;
		if (c->n_held) {
			f = c->held[0];
			memmove(c->held, c->held + 1, --c->n_held * sizeof *c->held);
		} else if (handled && !amqp_frames_enqueued(c->amqp) &&
			   !amqp_data_in_buffer(c->amqp)) {
			break; /* a read now would mostly find nothing: the caller polls */
		} else {
			int st = amqp_simple_wait_frame_noblock(c->amqp, &f, handled ? &zero : &tv);
			if (st == AMQP_STATUS_TIMEOUT)
				break;
			if (st != AMQP_STATUS_OK)
				return lost(c, err, "connection to '%s' lost: %s",
					    amqp_error_string2(st));
		}
		int rc = dispatch(c, &f, err);
		if (rc)
			return rc;
		handled++;
		if (!c->amqp)
			break;
	}
	return handled ? 0 : WARREN_ETIMEOUT;
}
