/* broker-adapter/broker.h - the broker adapter: the only code that talks AMQP.
 *
 * It knows bytes and AMQP 0-9-1, not tasks or config: callers hand it exchange,
 * queue and binding structs, message bytes and properties, and headers as a
 * packed msgpack map. rabbitmq-c itself stays behind this header (see
 * broker-adapter/internal.h); nothing here needs <amqp.h>.
 *
 * Threading: a broker_conn belongs to one thread (the loop thread). rabbitmq-c
 * is not thread-safe per connection, and heartbeats are only served while that
 * thread is inside broker_receive / broker_publish / broker_publish_flush, so
 * it must call one of them at least every heartbeat/2 seconds.
 */
#ifndef WARREN_BROKER_H
#define WARREN_BROKER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "warren/error.h"

/* ---- URLs (url.c) ------------------------------------------------------- */

/* One parsed broker URL. Every string is owned (broker_url_release frees). */
typedef struct broker_url {
	bool tls;                  /* amqps:// */
	char *user;                /* percent-decoded; default "guest" */
	char *password;            /* percent-decoded; default "guest"; never print it */
	char *host;                /* default "localhost"; IPv6 without brackets */
	int port;                  /* default 5672, 5671 for amqps */
	char *vhost;               /* percent-decoded; default "/" */
	int heartbeat;             /* ?heartbeat=N seconds; -1 = not given */
	int connection_timeout_ms; /* ?connection_timeout=N ms; -1 = not given */
	char *masked;              /* "amqp://guest:****@host:5672/%2F", for messages */
} broker_url;

/* Parses one URL into *out (caller storage; release with broker_url_release).
 * On error *out is left empty and err names the masked URL and the problem. */
int broker_url_parse(const char *url, broker_url *out, warren_error *err);
void broker_url_release(broker_url *u);

/* Parses a ';'-separated failover list ("amqp://a;amqp://b"), spaces around
 * items ignored. *out is an array of *n URLs; free it with broker_url_list_free. */
int broker_url_list_parse(const char *urls, broker_url **out, size_t *n, warren_error *err);
void broker_url_list_free(broker_url *urls, size_t n);

/* Writes url with its password replaced by "****" into buf (always
 * NUL-terminated, truncated to size). Works on unparseable input too, so an
 * error about a bad URL can quote it. */
void broker_url_mask(const char *url, char *buf, size_t size);

/* Reconnect backoff: the delay before pass `attempt` (0-based) over the URL
 * list: initial_ms * 2^attempt capped at max_ms, then drawn uniformly from
 * [d/2, d] so a fleet that lost its broker does not come back in lockstep. */
int broker_backoff_ms(unsigned attempt, int initial_ms, int max_ms, unsigned *seed);

/* ---- connection (conn.c) ------------------------------------------------ */

typedef struct broker_conn broker_conn;

typedef struct broker_conn_opts {
	const char *urls;          /* one URL or a ';'-separated failover list */
	int heartbeat;             /* seconds asked for, 0 = off; a URL's ?heartbeat wins */
	int connect_timeout_ms;    /* TCP + TLS + AMQP handshake; a URL's ?connection_timeout wins */
	int rpc_timeout_ms;        /* one synchronous AMQP method (declare, qos, ...) */
	int reconnect_timeout_ms;  /* how long one reconnect may try before giving up */
	bool connect_once;         /* broker_conn_new tries each URL once, no retry
				    * (Celery's broker_connection_retry_on_startup off) */
	int backoff_initial_ms;    /* first pause after a failed pass over the URLs */
	int backoff_max_ms;        /* the cap on that pause */
	unsigned publish_window;   /* most unconfirmed messages in flight */
	int confirm_timeout_ms;    /* how long publish waits for room in the window */
	const char *connection_name; /* shown in the management UI; may be NULL */
	/* TLS, used for amqps:// URLs only. Peer verification is on unless
	 * switched off; without tls_ca_file the system bundle is used. */
	const char *tls_ca_file;
	const char *tls_cert_file; /* client certificate (PEM), needs tls_key_file */
	const char *tls_key_file;
	bool tls_verify_peer;
	bool tls_verify_hostname;
} broker_conn_opts;

/* Fills *o with defaults: heartbeat 60 s, connect 10 s, rpc 30 s, reconnect
 * 60 s, backoff 100 ms .. 5 s, window 1000, confirm timeout 30 s, TLS verify on. */
void broker_conn_opts_init(broker_conn_opts *o);

/* Validates and copies opts (strings included) and connects to the first
 * URL that answers, in list order, backing off between passes until
 * reconnect_timeout_ms (one pass with connect_once). *out is freed with
 * broker_conn_free. */
int broker_conn_new(const broker_conn_opts *opts, broker_conn **out, warren_error *err);
void broker_conn_free(broker_conn *c);

/* The masked URL of the broker in use (or last tried); lives as long as c. */
const char *broker_conn_url(const broker_conn *c);
/* The connection generation: bumped on every (re)connect, and when the
 * broker closed the consume channel. A broker_message whose generation
 * differs can no longer be settled; the broker redelivers it. */
uint64_t broker_conn_generation(const broker_conn *c);
/* Negotiated heartbeat in seconds (0 = none); 0 when disconnected. */
int broker_conn_heartbeat(const broker_conn *c);
/* The socket to poll for input, -1 when disconnected. Before polling, call
 * broker_receive with timeout 0 while broker_conn_pending says frames are
 * already buffered. */
int broker_conn_fd(const broker_conn *c);
bool broker_conn_pending(const broker_conn *c);
/* Drops the connection now, as a lost socket would (tests; shutdown paths).
 * The next call that needs the broker reconnects. */
void broker_conn_drop(broker_conn *c);

/* ---- topology (topology.c) ---------------------------------------------- */

typedef enum broker_exchange_type {
	BROKER_EXCHANGE_DIRECT = 0,
	BROKER_EXCHANGE_TOPIC,
	BROKER_EXCHANGE_FANOUT,
	BROKER_EXCHANGE_HEADERS,
} broker_exchange_type;

typedef struct broker_exchange {
	const char *name;
	broker_exchange_type type;
	bool durable;
	bool auto_delete;
} broker_exchange;

#define BROKER_UNSET (-1) /* an optional numeric queue argument that is absent */

typedef struct broker_queue {
	const char *name;
	bool durable, exclusive, auto_delete;
	bool quorum;                         /* x-queue-type: quorum (must be durable) */
	int max_priority;                    /* x-max-priority; BROKER_UNSET */
	const char *dead_letter_exchange;    /* x-dead-letter-exchange; NULL = none */
	const char *dead_letter_routing_key; /* x-dead-letter-routing-key; NULL = none */
	int delivery_limit;                  /* x-delivery-limit (quorum); BROKER_UNSET */
	int64_t message_ttl_ms;              /* x-message-ttl; BROKER_UNSET */
	int64_t expires_ms;                  /* x-expires; BROKER_UNSET */
} broker_queue;

/* A durable classic queue with every optional argument unset. */
void broker_queue_init(broker_queue *q, const char *name);

typedef struct broker_binding {
	const char *queue;
	const char *exchange;
	const char *routing_key;
} broker_binding;

typedef struct broker_topology {
	const broker_exchange *exchanges;
	size_t n_exchanges;
	const broker_queue *queues;
	size_t n_queues;
	const broker_binding *bindings;
	size_t n_bindings;
} broker_topology;

/* Declares exchanges, then queues, then bindings. Idempotent. What succeeds is
 * remembered (copied) and declared again after every reconnect. A queue that
 * exists with other arguments fails with WARREN_EBROKER and a message like
 * "queue 'celery': exists with x-max-priority 10, declared with none"; the
 * channel the broker closed for it is reopened, so c stays usable. */
int broker_declare(broker_conn *c, const broker_topology *t, warren_error *err);

/* ---- publish (publish.c) ------------------------------------------------ */

typedef struct broker_props {
	const char *content_type, *content_encoding;
	const char *correlation_id, *reply_to, *expiration, *message_id;
	int delivery_mode;     /* 1 transient, 2 persistent, 0 = unset */
	int priority;          /* 0..255, BROKER_UNSET = unset */
	const void *headers;   /* a packed msgpack map, NULL = none (see headers.c) */
	size_t headers_len;
} broker_props;

typedef enum broker_outcome {
	BROKER_CONFIRMED = 0, /* the broker took responsibility for it */
	BROKER_NACKED,        /* the broker refused it (internal error, queue limit) */
	BROKER_RETURNED,      /* mandatory and no queue bound: nobody will see it */
	BROKER_UNKNOWN,       /* the connection was lost and could not be restored */
} broker_outcome;

/* Called once per published message, from inside broker_publish,
 * broker_publish_flush or broker_receive, on the caller's thread. reason is
 * NULL for BROKER_CONFIRMED, else a message that lives until the callback
 * returns ("unroutable: no queue bound for exchange '' key 'x'"). */
typedef void (*broker_outcome_fn)(void *arg, uint64_t cookie, broker_outcome outcome,
				  const char *reason);
void broker_set_outcome_fn(broker_conn *c, broker_outcome_fn fn, void *arg);

/* Publishes body (copied; kept until confirmed, and republished after a
 * reconnect) with mandatory set. Returns as soon as the frames are written,
 * waiting only while publish_window messages are unconfirmed. The outcome
 * arrives later through the outcome callback with `cookie`. */
int broker_publish(broker_conn *c, const char *exchange, const char *routing_key,
		   const broker_props *props, const void *body, size_t len, uint64_t cookie,
		   warren_error *err);

/* Waits until every published message has an outcome, or timeout_ms passes
 * (WARREN_ETIMEOUT). */
int broker_publish_flush(broker_conn *c, int timeout_ms, warren_error *err);

/* Messages published and still without an outcome. */
size_t broker_publish_unconfirmed(const broker_conn *c);

/* ---- consume (consume.c) ------------------------------------------------ */

/* A delivered message, copied out of rabbitmq-c: owned by the caller, freed
 * with broker_message_free. Unset string properties are NULL. The strings
 * and headers share the message's allocation (never free or replace them);
 * the body is its own and may be taken (keep it, set body NULL). */
typedef struct broker_message {
	uint64_t delivery_tag;
	uint64_t generation;   /* the connection it came on; ack needs the same one */
	bool redelivered;
	char *consumer_tag, *exchange, *routing_key;
	char *content_type, *content_encoding;
	char *correlation_id, *reply_to, *expiration, *message_id;
	int delivery_mode;     /* 0 = unset */
	int priority;          /* BROKER_UNSET = unset */
	void *headers;         /* packed msgpack map; NULL = no headers */
	size_t headers_len;
	bool headers_invalid;  /* headers were present but not convertible (too deep) */
	void *body;
	size_t body_len;
} broker_message;

void broker_message_free(broker_message *m);

typedef enum broker_event_type {
	BROKER_EVENT_MESSAGE = 1, /* ev.msg: a delivery */
	BROKER_EVENT_CANCELLED,   /* ev.consumer_tag, ev.queue: the broker cancelled a consumer
				   * (queue deleted, node down); it is not resumed */
	BROKER_EVENT_RECONNECTED, /* the connection was restored: deliveries not yet
				   * acked are void (the broker redelivers them) */
} broker_event_type;

typedef struct broker_event {
	broker_event_type type;
	broker_message *msg;  /* MESSAGE: owned by the event until taken (set it NULL) */
	char *consumer_tag;   /* CANCELLED */
	char *queue;          /* CANCELLED */
	char *reason;         /* RECONNECTED: why the previous connection ended */
} broker_event;

/* Frees what ev still owns and zeroes it. */
void broker_event_release(broker_event *ev);

/* Starts consuming queue with a per-consumer prefetch (basic.qos global=false;
 * 0 = unlimited). The consumer is resumed after every reconnect. Its tag
 * (copied into tag_out if not NULL, NUL-terminated) is stable across them. */
int broker_consume(broker_conn *c, const char *queue, uint16_t prefetch, bool no_ack,
		   char *tag_out, size_t tag_size, warren_error *err);

/* Stops the consumer with this tag (basic.cancel) and forgets it: it is not
 * resumed after a reconnect. Deliveries already read still come out of
 * broker_receive. WARREN_ENOTFOUND for a tag that is not consuming. */
int broker_cancel(broker_conn *c, const char *tag, warren_error *err);

/* Waits up to timeout_ms (0 = poll) for the next event. Returns 0 with *ev
 * filled, WARREN_ETIMEOUT when nothing came, or WARREN_EBROKER when the
 * connection was lost and could not be restored within reconnect_timeout_ms.
 * Also services heartbeats and publisher confirms. */
int broker_receive(broker_conn *c, int timeout_ms, broker_event *ev, warren_error *err);

/* Settle a delivery. A message from an earlier connection (m->generation)
 * cannot be settled any more: WARREN_EBROKER, and the broker redelivers it. */
int broker_ack(broker_conn *c, const broker_message *m, warren_error *err);
int broker_nack(broker_conn *c, const broker_message *m, bool requeue, warren_error *err);
int broker_reject(broker_conn *c, const broker_message *m, bool requeue, warren_error *err);
/* Acks by tag: with multiple, every delivery on the consume channel with a
 * tag <= delivery_tag that the broker still counts as unacked (AMQP 0-9-1
 * basic.ack multiple=true; deliveries already acked, nacked or rejected, and
 * those of no-ack consumers, are not touched). delivery_tag itself must be
 * unacked, or the broker closes the channel. generation is the one the
 * deliveries came on: another gives WARREN_EBROKER and sends nothing. */
int broker_ack_tag(broker_conn *c, uint64_t generation, uint64_t delivery_tag, bool multiple,
		   warren_error *err);

/* ==== delayed delivery (delay.c) ==== */

/* A message published with a delay waits in the broker, not in any process:
 * in a cascade of TTL queues, one per bit of the delay in seconds (see the top
 * of delay.c). Level k waits 2^k s; levels 0..BROKER_DELAY_LEVELS-1 exist. */
#define BROKER_DELAY_LEVELS 29
/* The longest delay: 2^29 - 1 s, about 17 years. Level 28's TTL (2^28 s,
 * about 8.5 years) is the last power of two under RabbitMQ's cap on
 * x-message-ttl (10 years in 3.10). */
#define BROKER_DELAY_MAX_S ((UINT32_C(1) << BROKER_DELAY_LEVELS) - 1)
/* Longest destination word (escaped routing key and exchange, see
 * broker_delay_key) that still fits a 255-byte routing key after the bits. */
#define BROKER_DELAY_DEST_MAX (255 - 2 * BROKER_DELAY_LEVELS)

/* Publishes like broker_publish, but the message reaches (exchange,
 * routing_key) only once delay_ms has passed: never earlier, and normally
 * within a second after (the delay is rounded up to whole seconds). A delay
 * <= 0 is a plain broker_publish. The exchanges and queues it needs are
 * declared on first use and again after every reconnect. The outcome
 * (cookie) says whether the broker took the message into the cascade.
 * Errors: WARREN_EINVAL for a delay over BROKER_DELAY_MAX_S or a destination
 * too long; WARREN_ENOTFOUND when the destination queue (default exchange)
 * or exchange does not exist, since a parked message would be dropped
 * silently when due.
 * What changes on the way: the per-message `expiration` is dropped (it would
 * expire the message early inside a TTL queue; Celery's `expires` header is
 * the deadline the worker checks), broker dead-letter headers from an earlier
 * trip (x-death, x-first-death-*, x-last-death-*) are dropped so RabbitMQ's
 * cycle detection does not discard a re-parked message, and the broker adds
 * fresh ones on this trip. Everything else, body included, arrives as sent. */
int broker_publish_delayed(broker_conn *c, const char *exchange, const char *routing_key,
			   int64_t delay_ms, const broker_props *props, const void *body,
			   size_t len, uint64_t cookie, warren_error *err);

/* The whole seconds a message waits for delay_ms: rounded up (never early);
 * 0 for delay_ms <= 0. WARREN_EINVAL beyond BROKER_DELAY_MAX_S. */
int broker_delay_seconds(int64_t delay_ms, uint32_t *seconds, warren_error *err);

/* The level a delay of `seconds` enters the cascade at: its highest set bit,
 * -1 for 0 (no wait). */
int broker_delay_level(uint32_t seconds);

/* The routing key a parked message travels with: the delay's bits, most
 * significant first, one word each, then one word naming the destination,
 * e.g. 5 s to queue "celery": "0.0.(...).1.0.1.celery". Writes it to buf
 * (NUL-terminated). WARREN_EINVAL when the destination is too long or buf too
 * small. */
int broker_delay_key(uint32_t seconds, const char *exchange, const char *routing_key,
		     char *buf, size_t size, warren_error *err);

/* The reverse: the delay and the destination of a parked message's routing
 * key, into the caller's buffers. WARREN_EDECODE when key is not one. */
int broker_delay_key_parse(const char *key, uint32_t *seconds, char *exchange, size_t xsize,
			   char *routing_key, size_t rsize, warren_error *err);

/* ==== queue inspection (inspect.c) ==== */

/* Ready messages and consumers of an existing queue, by a passive declare on
 * the topology channel. WARREN_ENOTFOUND when there is no such queue (the
 * channel the broker closed for it is reopened, so c stays usable). */
int broker_queue_inspect(broker_conn *c, const char *queue, uint32_t *messages,
			 uint32_t *consumers, warren_error *err);

/* Deletes the ready messages of queue; *purged (may be NULL) gets their
 * count. WARREN_ENOTFOUND when there is no such queue. */
int broker_queue_purge(broker_conn *c, const char *queue, uint32_t *purged, warren_error *err);

#endif
