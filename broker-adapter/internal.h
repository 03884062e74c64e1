/* broker-adapter/internal.h - what the adapter's own files share: the one
 * place rabbitmq-c is included, the connection struct behind the opaque
 * broker_conn, and helpers between url.c, conn.c, headers.c, topology.c,
 * publish.c and consume.c. Nothing outside broker-adapter/ (except the
 * adapter's own unit tests) includes this file.
 */
#ifndef WARREN_BROKER_INTERNAL_H
#define WARREN_BROKER_INTERNAL_H

/* rabbitmq-c 0.12+ moved its headers under rabbitmq-c/ and warns on the old
 * paths; Debian 12 ships 0.11 with the old ones. */
#if __has_include(<rabbitmq-c/amqp.h>)
#include <rabbitmq-c/amqp.h>
#include <rabbitmq-c/ssl_socket.h>
#include <rabbitmq-c/tcp.h>
#else
#include <amqp.h>
#include <amqp_ssl_socket.h>
#include <amqp_tcp_socket.h>
#endif
#include <msgpack.h>

#include "broker.h"

/* One channel per concern, so a declare the broker refuses (which closes its
 * channel) never takes the publisher's confirm state or a consumer with it. */
enum {
	BROKER_CH_TOPOLOGY = 1,
	BROKER_CH_PUBLISH = 2,
	BROKER_CH_CONSUME = 3,
};

/* ---- headers.c ---------------------------------------------------------- */

/* Deepest nesting of tables and arrays converted either way; deeper input is
 * WARREN_ELIMIT rather than a stack overflow. */
#define BROKER_HEADERS_MAX_DEPTH 32

/* msgpack map -> AMQP table. Everything *out points to (entries, strings)
 * lives in pool: it stays valid until the pool is recycled or emptied, and
 * borrows nothing from map. Only S, I, l, t, V, A, F and d are written. */
int broker_headers_from_msgpack(const msgpack_object *map, amqp_pool_t *pool,
				amqp_table_t *out, warren_error *err);

/* The same from a packed msgpack map (len bytes at buf). */
int broker_headers_from_packed(const void *buf, size_t len, amqp_pool_t *pool,
			       amqp_table_t *out, warren_error *err);

/* AMQP table -> msgpack map appended to out (its size grows; on error it is
 * left as it was); every field type rabbitmq-c decodes is accepted (see
 * headers.c for the mapping). */
int broker_headers_to_msgpack(const amqp_table_t *t, msgpack_sbuffer *out, warren_error *err);

/* ---- conn.c ------------------------------------------------------------- */

/* One message published and not yet settled, with everything needed to
 * publish it again after a reconnect. One allocation holds it all. */
typedef struct broker_pending {
	uint64_t tag;      /* delivery tag on the current connection */
	uint64_t cookie;
	bool settled;
	bool returned;     /* a basic.return matched it; its ack then means "returned" */
	char *reason;      /* why it was returned (malloc'd), or NULL */
	const char *exchange, *routing_key;
	const char *content_type, *content_encoding;
	const char *correlation_id, *reply_to, *expiration, *message_id;
	int delivery_mode, priority;
	const void *headers;
	size_t headers_len;
	const void *body;
	size_t body_len;
} broker_pending;

typedef struct broker_consumer {
	char *queue;
	char tag[64];
	uint16_t prefetch;
	bool no_ack;
	bool cancelled;
} broker_consumer;

/* One queued event for broker_receive: deliveries are read while waiting for
 * confirms or RPC replies, so they wait here, already copied. */
typedef struct broker_event_node {
	struct broker_event_node *next;
	broker_event ev;
} broker_event_node;

/* A message's content as read_content (conn.c) leaves it: properties as
 * rabbitmq-c decoded them and the body, both borrowed from the connection
 * until its next frame wait. */
typedef struct broker_content {
	const amqp_basic_properties_t *props;
	amqp_bytes_t body;
} broker_content;

/* Topology declared so far, deep-copied, for re-declaring after a reconnect. */
typedef struct broker_topology_rec {
	broker_exchange *exchanges;
	size_t n_exchanges;
	broker_queue *queues;
	size_t n_queues;
	broker_binding *bindings;
	size_t n_bindings;
} broker_topology_rec;

#define BROKER_HELD_MAX 64

struct broker_conn {
	broker_conn_opts opts;   /* strings point into owned copies below */
	char *opt_strings[6];    /* urls, connection_name, tls ca/cert/key, spare */
	broker_url *urls;
	size_t n_urls;
	size_t url_index;        /* the URL in use or last tried */
	unsigned seed;           /* backoff jitter */

	amqp_connection_state_t amqp; /* NULL while disconnected */
	uint64_t generation;     /* bumped on every successful connect */
	unsigned closed_channels; /* bit n: the broker closed channel n */
	char lost_reason[WARREN_ERROR_MSG_MAX]; /* why the last connection ended */

	amqp_pool_t pool;        /* per-publish scratch: header tables */
	void *content_body;      /* read_content: a body split over frames, gathered */
	size_t content_cap;
	amqp_frame_t held[BROKER_HELD_MAX]; /* other channels' frames read inside a
					      * message, for the pump to dispatch next */
	size_t n_held;
	msgpack_sbuffer headers_scratch; /* consume.c: a delivery's headers, packed */

	/* publisher: a ring of pending messages in publish order whose tags
	 * are contiguous from ring[head] */
	broker_pending **ring;
	size_t cap, head, count;
	uint64_t next_tag;
	broker_outcome_fn outcome_fn;
	void *outcome_arg;

	broker_consumer *consumers;
	size_t n_consumers;
	unsigned consumer_seq;

	broker_event_node *ev_head, *ev_tail;
	broker_topology_rec topo;
	struct broker_delay *delay; /* delay.c's record of the cascade; NULL until used */
};

/* Makes sure c is connected, reconnecting (with failover, backoff, topology,
 * consumers and republishing) if it is not. */
int broker_conn_ensure(broker_conn *c, warren_error *err);

/* Tears the connection down after a failure (reason is kept for the
 * RECONNECTED event); the next broker_conn_ensure reconnects. */
void broker_conn_lost(broker_conn *c, const char *reason);

/* Reopens the channels the broker closed (c->closed_channels) and restores
 * what lived on them: confirm mode and unconfirmed messages on the publish
 * channel, consumers on the consume channel. */
int broker_channels_repair(broker_conn *c, warren_error *err);

/* Reads frames for up to timeout_ms (0 = only what is already there) and
 * dispatches them: confirms, returns, deliveries, cancels, closes. Returns 0
 * once at least one frame was handled, WARREN_ETIMEOUT if none came, or
 * WARREN_EBROKER (connection marked lost) on failure. */
int broker_conn_pump(broker_conn *c, int timeout_ms, warren_error *err);

/* err <- "what: reason" from a failed rabbitmq-c RPC reply; marks the
 * connection lost when the reply means it is gone. */
int broker_rpc_error(broker_conn *c, int channel, amqp_rpc_reply_t r, warren_error *err,
		     const char *what);

/* Checks the last RPC reply on c (amqp_get_rpc_reply) with broker_rpc_error. */
int broker_rpc_check(broker_conn *c, int channel, warren_error *err, const char *what);

/* Monotonic milliseconds. */
int64_t broker_now_ms(void);

/* ---- topology.c / publish.c / consume.c, called on (re)connect ---------- */

int broker_topology_redeclare(broker_conn *c, warren_error *err);
void broker_topology_rec_free(broker_topology_rec *t);

/* Publisher: confirm.select on the publish channel. */
int broker_publish_setup(broker_conn *c, warren_error *err);
int broker_publish_resend(broker_conn *c, warren_error *err);
void broker_publish_on_ack(broker_conn *c, uint64_t tag, bool multiple, broker_outcome o);
void broker_publish_on_return(broker_conn *c, const amqp_basic_return_t *r,
			      const broker_content *m);
void broker_publish_fail_all(broker_conn *c, const char *why);
/* The broker closed the publish channel (reply text given): messages to the
 * exchange it names are settled NACKED; the rest are sent again. */
void broker_publish_on_channel_close(broker_conn *c, const char *text);
void broker_publish_release(broker_conn *c);

int broker_consume_resume(broker_conn *c, warren_error *err);
void broker_consume_on_deliver(broker_conn *c, const amqp_basic_deliver_t *d,
			       const broker_content *m);
void broker_consume_on_cancel(broker_conn *c, const amqp_basic_cancel_t *cancel);
void broker_consume_release(broker_conn *c);
void broker_event_push(broker_conn *c, const broker_event *ev);

/* NUL-terminated malloc'd copy of b; NULL for empty-and-absent or no memory. */
char *broker_bytes_dup(amqp_bytes_t b);

/* ---- delay.c, called on (re)connect and free ---------------------------- */

/* Restores the parts of the delay cascade that broker_topology_redeclare
 * cannot (exchange-to-exchange bindings). Runs right after it, before
 * unconfirmed messages are sent again, so a resent delayed message finds its
 * path. A no-op while c->delay is NULL. */
int broker_delay_redeclare(broker_conn *c, warren_error *err);
void broker_delay_free(struct broker_delay *d);

#endif
