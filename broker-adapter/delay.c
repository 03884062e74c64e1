/* broker-adapter/delay.c - delayed delivery without holding messages: a
 * countdown, an eta, a retry's backoff park the message in the broker.
 *
 * The design is NServiceBus's delayed delivery without plugins. Levels
 * k = 0..BROKER_DELAY_LEVELS-1 each have
 *   - a topic exchange "warren.delay.k",
 *   - a durable queue "warren.delay.k" with x-message-ttl 2^k s whose
 *     dead-letter exchange is "warren.delay.(k-1)" ("warren.delay.deliver"
 *     for k = 0),
 *   - two bindings on the exchange, testing bit k of the routing key:
 *     "*.*.(...).1.#" to the queue (wait 2^k s here) and "*.(...).0.#" to
 *     exchange k-1 (or "warren.delay.deliver") directly.
 * A parked message's routing key is its delay in seconds as 29 one-word bits,
 * most significant first, then one destination word (see broker_delay_key).
 * It is published to the exchange of its highest set bit, so mandatory still
 * means something (that level's queue takes it), and walks down the levels,
 * waiting only where its bits are set: 5 s = 101b waits 4 s in level 2 and 1 s
 * in level 0. The routing key never changes on the way; the level a message
 * is at says which bit is next.
 *
 * The last hop. warren and Celery publish to the default exchange with the
 * queue name as routing key, and a worker (Celery's Task.retry among them)
 * reads exchange and routing key back from the delivery. So the message must
 * leave the cascade as if published to (exchange, routing_key) directly, not
 * arrive with our bit-laden key. "warren.delay.deliver" binds "#.<dest>" to
 * a per-destination queue "warren.delay.to.<dest>" with x-message-ttl 0,
 * x-dead-letter-exchange = the real exchange and x-dead-letter-routing-key =
 * the real routing key: the message expires on arrival and is dead-lettered
 * with its original address. That works for any exchange type, not only the
 * default exchange, which a plain binding could not deliver to. It costs one
 * queue per destination and one more hop.
 *
 * Why order holds. RabbitMQ expires messages of a classic queue only at its
 * head. Every message in one level queue has the same TTL, so FIFO order is
 * expiry order and no message waits behind one that expires later. That is
 * also why the level queues carry no x-max-priority and why a per-message
 * `expiration` is dropped while parked: either would break FIFO = expiry.
 *
 * Precision. Delays are rounded up to whole seconds; the TTL clock starts
 * when the broker enqueues the message, after the caller's clock read "now",
 * so a message is never early. Each hop adds milliseconds.
 *
 * What can lose a parked message. Dead-lettering from classic queues is
 * at-most-once: a destination deleted while messages are parked, or a broker
 * crash in the middle of a hop, drops them. We check the destination exists
 * on first use. Quorum queues would allow at-least-once dead-lettering
 * (x-dead-letter-strategy, which needs x-overflow reject-publish); we stay
 * with classic queues, which have per-queue TTL everywhere and are cheap to
 * hold a backlog in. A reconnect to a fresh node finds the cascade again:
 * exchanges, queues and queue bindings are in the remembered topology, and
 * broker_delay_redeclare adds the exchange-to-exchange bindings.
 *
 * Dead-lettering adds x-death and x-first-death-* headers. RabbitMQ drops a
 * message as a "dead-letter cycle" when it would re-enter a queue its x-death
 * already lists without a rejection in between: a retried task republished
 * with the headers it arrived with would vanish. So those headers are
 * stripped before parking.
 *
 * Wire format: the routing-key layout (bit count and order, the destination
 * word and its escapes) and the names below. When any of them changes, change
 * PREFIX (e.g. "warren.delay2") so the new cascade never shares an exchange
 * with the old one, whose bindings would misread the new keys; messages
 * already in the old cascade still drain through it.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#define PREFIX "warren.delay"
#define DELIVER_EXCHANGE PREFIX ".deliver"
#define TO_QUEUE_PREFIX PREFIX ".to."
#define NAME_MAX_LEN 255 /* AMQP short string: names and routing keys */

/* Bytes that are special in a topic word or in our destination word. */
#define ESCAPED ".%@*#"

/* What was declared on this connection, so each publish does not ask again. */
struct broker_delay {
	int levels;      /* levels 0..levels-1 are declared */
	char **dests;    /* destination words declared, each malloc'd */
	size_t n_dests;
};

void broker_delay_free(struct broker_delay *d)
{
	if (!d)
		return;
	for (size_t i = 0; i < d->n_dests; i++)
		free(d->dests[i]);
	free(d->dests);
	free(d);
}

/* ---- the pure part: seconds, levels, routing keys ------------------------ */

int broker_delay_seconds(int64_t delay_ms, uint32_t *seconds, warren_error *err)
{
	*seconds = 0;
	if (delay_ms <= 0)
		return 0;
	int64_t s = delay_ms / 1000 + (delay_ms % 1000 != 0);
	if (s > (int64_t)BROKER_DELAY_MAX_S)
		return warren_error_set(err, WARREN_EINVAL,
					"delay of %lld ms: longer than the longest delay, %lu s "
					"(about 17 years)", (long long)delay_ms,
					(unsigned long)BROKER_DELAY_MAX_S);
	*seconds = (uint32_t)s;
	return 0;
}

int broker_delay_level(uint32_t seconds)
{
	int k = -1;
	while (seconds) {
		seconds >>= 1;
		k++;
	}
	return k;
}

/* Appends s to out with the bytes of ESCAPED as %XX. Returns the length
 * written (or that would be), so an over-long result is seen, not cut. */
static size_t escape(const char *s, char *out, size_t size, size_t at)
{
	static const char hex[] = "0123456789ABCDEF";
	for (; *s; s++) {
		unsigned char ch = (unsigned char)*s;
		if (strchr(ESCAPED, ch)) {
			if (at + 3 < size) {
				out[at] = '%';
				out[at + 1] = hex[ch >> 4];
				out[at + 2] = hex[ch & 15];
			}
			at += 3;
		} else {
			if (at + 1 < size)
				out[at] = (char)ch;
			at++;
		}
	}
	if (at < size)
		out[at] = '\0';
	return at;
}

/* The destination word: the escaped routing key, and "@" and the escaped
 * exchange unless it is the default one ("celery", "k%2E1@tasks"). It has no
 * '.', '*' or '#', so it is one literal topic word, and distinct destinations
 * give distinct words. */
static int dest_word(const char *exchange, const char *routing_key, char *out, size_t size,
		     warren_error *err)
{
	if (!*exchange && !*routing_key)
		return warren_error_set(err, WARREN_EINVAL,
					"delayed publish: the default exchange needs a queue name "
					"as routing key");
	char buf[BROKER_DELAY_DEST_MAX + 1];
	size_t n = escape(routing_key, buf, sizeof buf, 0);
	if (*exchange && n < sizeof buf) {
		buf[n++] = '@';
		n = escape(exchange, buf, sizeof buf, n);
	}
	if (n > BROKER_DELAY_DEST_MAX)
		return warren_error_set(err, WARREN_EINVAL,
					"delayed publish to exchange '%.60s' key '%.60s': the "
					"destination is too long for delayed delivery (%zu bytes "
					"escaped, at most %d)", exchange, routing_key, n,
					BROKER_DELAY_DEST_MAX);
	if (n + 1 > size)
		return warren_error_set(err, WARREN_EINVAL, "delayed publish: buffer too small");
	memcpy(out, buf, n + 1);
	return 0;
}

int broker_delay_key(uint32_t seconds, const char *exchange, const char *routing_key,
		     char *buf, size_t size, warren_error *err)
{
	if (seconds > BROKER_DELAY_MAX_S)
		return warren_error_set(err, WARREN_EINVAL, "delay of %lu s: longer than %lu s",
					(unsigned long)seconds, (unsigned long)BROKER_DELAY_MAX_S);
	char bits[2 * BROKER_DELAY_LEVELS + 1];
	for (int k = BROKER_DELAY_LEVELS - 1, i = 0; k >= 0; k--, i += 2) {
		bits[i] = (seconds >> k) & 1 ? '1' : '0';
		bits[i + 1] = '.';
	}
	bits[sizeof bits - 1] = '\0';
	if (size < sizeof bits)
		return warren_error_set(err, WARREN_EINVAL, "delayed publish: buffer too small");
	memcpy(buf, bits, sizeof bits);
	return dest_word(exchange, routing_key, buf + sizeof bits - 1, size - (sizeof bits - 1),
			 err);
}

static int hex_value(char ch)
{
	if (ch >= '0' && ch <= '9')
		return ch - '0';
	if (ch >= 'A' && ch <= 'F')
		return ch - 'A' + 10;
	return -1;
}

/* Undoes escape() for s[0..n) into out; -1 on a bad escape or no room. */
static int unescape(const char *s, size_t n, char *out, size_t size)
{
	size_t at = 0;
	for (size_t i = 0; i < n; i++, at++) {
		char ch = s[i];
		if (ch == '%') {
			int hi = i + 2 < n ? hex_value(s[i + 1]) : -1;
			int lo = i + 2 < n ? hex_value(s[i + 2]) : -1;
			if (hi < 0 || lo < 0)
				return -1;
			ch = (char)(hi << 4 | lo);
			i += 2;
		}
		if (at + 1 >= size)
			return -1;
		out[at] = ch;
	}
	if (!size)
		return -1;
	out[at] = '\0';
	return 0;
}

int broker_delay_key_parse(const char *key, uint32_t *seconds, char *exchange, size_t xsize,
			   char *routing_key, size_t rsize, warren_error *err)
{
	uint32_t s = 0;
	const char *p = key;
	for (int k = 0; k < BROKER_DELAY_LEVELS; k++, p += 2) {
		if ((p[0] != '0' && p[0] != '1') || p[1] != '.')
			return warren_error_set(err, WARREN_EDECODE,
						"delay routing key '%.80s': bit %d is not '0.' or '1.'",
						key, BROKER_DELAY_LEVELS - 1 - k);
		s = s << 1 | (uint32_t)(p[0] - '0');
	}
	const char *at = strchr(p, '@');
	size_t klen = at ? (size_t)(at - p) : strlen(p);
	if (strchr(p, '.') || (!at && !klen) || (at && strchr(at + 1, '@')) ||
	    unescape(p, klen, routing_key, rsize) ||
	    unescape(at ? at + 1 : "", at ? strlen(at + 1) : 0, exchange, xsize))
		return warren_error_set(err, WARREN_EDECODE,
					"delay routing key '%.80s': bad destination word '%.60s'",
					key, p);
	*seconds = s;
	return 0;
}

/* ---- names and binding keys ----------------------------------------------- */

static void level_name(int k, char *buf, size_t size)
{
	if (k < 0)
		snprintf(buf, size, "%s", DELIVER_EXCHANGE);
	else
		snprintf(buf, size, PREFIX ".%d", k);
}

/* "*.*.(...).<bit>.#": matches keys whose bit k is `bit`. */
static void bit_pattern(int k, char bit, char *buf, size_t size)
{
	size_t at = 0;
	for (int i = BROKER_DELAY_LEVELS - 1; i > k && at + 2 < size; i--) {
		buf[at++] = '*';
		buf[at++] = '.';
	}
	snprintf(buf + at, size - at, "%c.#", bit);
}

/* ---- declaring ------------------------------------------------------------ */

/* Binds exchange `src` to `dst` with key; the one declaration
 * broker_declare has no struct for. */
static int bind_exchange(broker_conn *c, const char *dst, const char *src, const char *key,
			 warren_error *err)
{
	amqp_exchange_bind(c->amqp, BROKER_CH_TOPOLOGY, amqp_cstring_bytes(dst),
			   amqp_cstring_bytes(src), amqp_cstring_bytes(key), amqp_empty_table);
	if (amqp_get_rpc_reply(c->amqp).reply_type == AMQP_RESPONSE_NORMAL)
		return 0;
	char what[160];
	snprintf(what, sizeof what, "bind exchange '%s' to exchange '%s'", src, dst);
	int rc = broker_rpc_check(c, BROKER_CH_TOPOLOGY, err, what);
	/* A refused bind closed the topology channel; reopen it for the next one. */
	warren_error repair = {0};
	if (c->amqp && broker_channels_repair(c, &repair))
		broker_conn_lost(c, repair.msg);
	return rc;
}

/* Level k's bit-0 path: exchange k -> exchange k-1 (or the deliver one). */
static int bind_level_down(broker_conn *c, int k, warren_error *err)
{
	char name[32], lower[32], zero[2 * BROKER_DELAY_LEVELS + 4];
	level_name(k, name, sizeof name);
	level_name(k - 1, lower, sizeof lower);
	bit_pattern(k, '0', zero, sizeof zero);
	return bind_exchange(c, lower, name, zero, err);
}

/* Level k: exchange, queue, bit-1 binding (through broker_declare, so they
 * are remembered and declared again after a reconnect), then the bit-0
 * exchange binding. Level 0 also brings the deliver exchange. */
static int declare_level(broker_conn *c, int k, warren_error *err)
{
	char name[32], lower[32], one[2 * BROKER_DELAY_LEVELS + 4];
	level_name(k, name, sizeof name);
	level_name(k - 1, lower, sizeof lower);
	bit_pattern(k, '1', one, sizeof one);
	broker_exchange x[2] = {
		{.name = name, .type = BROKER_EXCHANGE_TOPIC, .durable = true},
		{.name = DELIVER_EXCHANGE, .type = BROKER_EXCHANGE_TOPIC, .durable = true},
	};
	broker_queue q;
	broker_queue_init(&q, name);
	q.message_ttl_ms = (int64_t)1000 << k;
	q.dead_letter_exchange = lower;
	broker_binding b = {.queue = name, .exchange = name, .routing_key = one};
	broker_topology t = {.exchanges = x, .n_exchanges = k == 0 ? 2 : 1,
			     .queues = &q, .n_queues = 1, .bindings = &b, .n_bindings = 1};
	int rc = broker_declare(c, &t, err);
	return rc ? rc : bind_level_down(c, k, err);
}

static struct broker_delay *delay_state(broker_conn *c, warren_error *err)
{
	if (!c->delay && !(c->delay = calloc(1, sizeof *c->delay)))
		warren_error_set(err, WARREN_ENOMEM, "delayed publish: out of memory");
	return c->delay;
}

/* Declares levels up to `top`, bottom up, so no message is ever routed to a
 * level that does not exist yet. */
static int ensure_levels(broker_conn *c, int top, warren_error *err)
{
	struct broker_delay *d = delay_state(c, err);
	if (!d)
		return WARREN_ENOMEM;
	while (d->levels <= top) {
		int rc = declare_level(c, d->levels, err);
		if (rc)
			return rc;
		d->levels++;
	}
	return 0;
}

/* Fails when the destination is missing: a message dead-lettered to it when
 * due would be dropped without a word, so say it now. A passive declare the
 * broker refuses closes the topology channel; it is reopened. */
static int check_destination(broker_conn *c, const char *exchange, const char *routing_key,
			     warren_error *err)
{
	int rc = broker_conn_ensure(c, err);
	if (rc)
		return rc;
	if (*exchange)
		amqp_exchange_declare(c->amqp, BROKER_CH_TOPOLOGY, amqp_cstring_bytes(exchange),
				      amqp_cstring_bytes("direct"), 1, 0, 0, 0, amqp_empty_table);
	else
		amqp_queue_declare(c->amqp, BROKER_CH_TOPOLOGY, amqp_cstring_bytes(routing_key), 1,
				   0, 0, 0, amqp_empty_table);
	amqp_rpc_reply_t r = amqp_get_rpc_reply(c->amqp);
	if (r.reply_type == AMQP_RESPONSE_NORMAL)
		return 0;
	bool missing = r.reply_type == AMQP_RESPONSE_SERVER_EXCEPTION &&
		       r.reply.id == AMQP_CHANNEL_CLOSE_METHOD &&
		       ((amqp_channel_close_t *)r.reply.decoded)->reply_code == AMQP_NOT_FOUND;
	warren_error e = {0};
	rc = broker_rpc_error(c, BROKER_CH_TOPOLOGY, r, &e, "passive declare");
	warren_error repair = {0};
	if (c->amqp && broker_channels_repair(c, &repair))
		broker_conn_lost(c, repair.msg);
	if (!missing)
		return warren_error_set(err, rc, "delayed publish to %s '%s': %s",
					*exchange ? "exchange" : "queue",
					*exchange ? exchange : routing_key, e.msg);
	return warren_error_set(err, WARREN_ENOTFOUND,
				"delayed publish to %s '%s': it does not exist, and a parked "
				"message would be dropped when due", *exchange ? "exchange" : "queue",
				*exchange ? exchange : routing_key);
}

static bool dest_known(const struct broker_delay *d, const char *word)
{
	for (size_t i = 0; i < d->n_dests; i++)
		if (!strcmp(d->dests[i], word))
			return true;
	return false;
}

static int remember_dest(struct broker_delay *d, const char *word, warren_error *err)
{
	char **a = realloc(d->dests, (d->n_dests + 1) * sizeof *a);
	if (!a)
		goto out_oom;
	d->dests = a;
	if (!(d->dests[d->n_dests] = strdup(word)))
		goto out_oom;
	d->n_dests++;
	return 0;
out_oom:
	return warren_error_set(err, WARREN_ENOMEM, "delayed publish: out of memory");
}

/* The last hop for one destination (see the top of the file): a queue that
 * expires messages on arrival into the real exchange with the real key. */
static int ensure_destination(broker_conn *c, const char *exchange, const char *routing_key,
			      const char *word, warren_error *err)
{
	struct broker_delay *d = c->delay;
	if (dest_known(d, word))
		return 0;
	int rc = check_destination(c, exchange, routing_key, err);
	if (rc)
		return rc;
	char qname[NAME_MAX_LEN + 1], key[NAME_MAX_LEN + 1];
	snprintf(qname, sizeof qname, TO_QUEUE_PREFIX "%s", word);
	snprintf(key, sizeof key, "#.%s", word);
	broker_queue q;
	broker_queue_init(&q, qname);
	q.message_ttl_ms = 0;
	q.dead_letter_exchange = exchange;
	q.dead_letter_routing_key = routing_key;
	broker_binding b = {.queue = qname, .exchange = DELIVER_EXCHANGE, .routing_key = key};
	broker_topology t = {.queues = &q, .n_queues = 1, .bindings = &b, .n_bindings = 1};
	if ((rc = broker_declare(c, &t, err)))
		return rc;
	return remember_dest(d, word, err);
}

int broker_delay_redeclare(broker_conn *c, warren_error *err)
{
	for (int k = 0; c->delay && k < c->delay->levels; k++) {
		int rc = bind_level_down(c, k, err);
		if (rc)
			return rc;
	}
	return 0;
}

/* ---- publishing ----------------------------------------------------------- */

/* Headers RabbitMQ writes when it dead-letters (see the top of the file). */
static bool is_death_key(const msgpack_object *k)
{
	if (k->type != MSGPACK_OBJECT_STR && k->type != MSGPACK_OBJECT_BIN)
		return false;
	const char *s = k->type == MSGPACK_OBJECT_STR ? k->via.str.ptr : k->via.bin.ptr;
	size_t n = k->type == MSGPACK_OBJECT_STR ? k->via.str.size : k->via.bin.size;
	static const char *const names[] = {"x-death", "x-first-death-", "x-last-death-"};
	if (n == 7 && !memcmp(s, names[0], 7))
		return true;
	for (int i = 1; i < 3; i++)
		if (n > strlen(names[i]) && !memcmp(s, names[i], strlen(names[i])))
			return true;
	return false;
}

/* Writes the headers map without dead-letter keys to sb; *stripped says
 * whether there were any (if not, sb is left empty and the original is
 * used). Headers that do not decode are left for broker_publish to refuse. */
static int strip_death_headers(const void *h, size_t len, msgpack_sbuffer *sb, bool *stripped,
			       warren_error *err)
{
	int rc = 0;
	*stripped = false;
	msgpack_unpacked u;
	msgpack_unpacked_init(&u);
	if (msgpack_unpack_next(&u, h, len, NULL) != MSGPACK_UNPACK_SUCCESS ||
	    u.data.type != MSGPACK_OBJECT_MAP)
		goto out_unpacked;
	const msgpack_object_map *m = &u.data.via.map;
	uint32_t keep = 0;
	for (uint32_t i = 0; i < m->size; i++)
		keep += !is_death_key(&m->ptr[i].key);
	if (keep == m->size)
		goto out_unpacked;
	msgpack_packer pk;
	msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
	int bad = msgpack_pack_map(&pk, keep);
	for (uint32_t i = 0; i < m->size && !bad; i++) {
		if (!is_death_key(&m->ptr[i].key))
			bad = msgpack_pack_object(&pk, m->ptr[i].key) ||
			      msgpack_pack_object(&pk, m->ptr[i].val);
	}
	if (bad)
		rc = warren_error_set(err, WARREN_ENOMEM, "delayed publish: out of memory");
	*stripped = !bad;
out_unpacked:
	msgpack_unpacked_destroy(&u);
	return rc;
}

int broker_publish_delayed(broker_conn *c, const char *exchange, const char *routing_key,
			   int64_t delay_ms, const broker_props *props, const void *body,
			   size_t len, uint64_t cookie, warren_error *err)
{
	static const broker_props none = {.priority = BROKER_UNSET};
	if (!props)
		props = &none;
	if (!exchange || !routing_key)
		return warren_error_set(err, WARREN_EINVAL,
					"delayed publish: exchange and routing key are required");
	uint32_t seconds;
	int rc = broker_delay_seconds(delay_ms, &seconds, err);
	if (rc)
		return rc;
	if (!seconds)
		return broker_publish(c, exchange, routing_key, props, body, len, cookie, err);

	char key[NAME_MAX_LEN + 1], word[BROKER_DELAY_DEST_MAX + 1], level[32];
	int top = broker_delay_level(seconds);
	if ((rc = broker_delay_key(seconds, exchange, routing_key, key, sizeof key, err)) ||
	    (rc = dest_word(exchange, routing_key, word, sizeof word, err)) ||
	    (rc = ensure_levels(c, top, err)) ||
	    (rc = ensure_destination(c, exchange, routing_key, word, err)))
		return rc;
	level_name(top, level, sizeof level);

	broker_props parked = *props;
	parked.expiration = NULL;
	msgpack_sbuffer sb;
	msgpack_sbuffer_init(&sb);
	bool stripped = false;
	if (props->headers &&
	    (rc = strip_death_headers(props->headers, props->headers_len, &sb, &stripped, err)))
		goto out_sbuffer;
	if (stripped) {
		parked.headers = sb.data;
		parked.headers_len = sb.size;
	}
	rc = broker_publish(c, level, key, &parked, body, len, cookie, err);
out_sbuffer:
	msgpack_sbuffer_destroy(&sb);
	return rc;
}
