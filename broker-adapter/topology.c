/* broker-adapter/topology.c - declaring exchanges, queues and bindings, and
 * remembering them so a reconnect (possibly to a fresh node) declares them again.
 *
 * Declares run on their own channel: when the broker refuses one (406
 * PRECONDITION_FAILED for a queue that exists with other arguments) it closes
 * that channel, and only that one. We reopen it and restate the broker's
 * reply in plain words: RabbitMQ says
 *   "inequivalent arg 'x-max-priority' for queue 'celery' in vhost '/':
 *    received none but current is the value '10' of type 'signedint'"
 * and we say "queue 'celery': exists with x-max-priority 10, declared with none".
 *
 * Integer arguments go out as 'I' (int32) like py-amqp sends them, or 'l'
 * beyond int32, so a queue declared by Celery and by us compares equal.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

void broker_queue_init(broker_queue *q, const char *name)
{
	*q = (broker_queue){
		.name = name,
		.durable = true,
		.max_priority = BROKER_UNSET,
		.delivery_limit = BROKER_UNSET,
		.message_ttl_ms = BROKER_UNSET,
		.expires_ms = BROKER_UNSET,
	};
}

static const char *exchange_type_name(broker_exchange_type t)
{
	switch (t) {
	case BROKER_EXCHANGE_DIRECT: return "direct";
	case BROKER_EXCHANGE_TOPIC: return "topic";
	case BROKER_EXCHANGE_FANOUT: return "fanout";
	case BROKER_EXCHANGE_HEADERS: return "headers";
	}
	return NULL;
}

/* "the value '10' of type 'signedint'" -> "10"; "'true'" -> "true"; "none" stays. */
static void plain_value(const char *s, size_t len, char *out, size_t size)
{
	const char *v = s;
	if (len > 10 && !strncmp(s, "the value ", 10))
		v = s + 10, len -= 10;
	if (len && *v == '\'') {
		const char *end = memchr(v + 1, '\'', len - 1);
		if (end)
			len = (size_t)(end - v - 1), v++;
	}
	snprintf(out, size, "%.*s", (int)len, v);
}

/* Restates RabbitMQ's "inequivalent arg" reply; 0 if text is one. */
static int restate_mismatch(const char *kind, const char *name, const char *text,
			    warren_error *err)
{
	const char *a = strstr(text, "inequivalent arg '");
	if (!a)
		return 0;
	a += strlen("inequivalent arg '");
	const char *a_end = strchr(a, '\'');
	const char *recv = strstr(text, ": received ");
	const char *cur = recv ? strstr(recv, " but current is ") : NULL;
	if (!a_end || !recv || !cur)
		return 0;
	recv += strlen(": received ");
	char declared[64], current[64];
	plain_value(recv, (size_t)(cur - recv), declared, sizeof declared);
	cur += strlen(" but current is ");
	plain_value(cur, strlen(cur), current, sizeof current);
	return warren_error_set(err, WARREN_EBROKER, "%s '%s': exists with %.*s %s, declared with %s",
				kind, name, (int)(a_end - a), a, current, declared);
}

/* A failed declare: restate it, reopen the channel the broker closed. A
 * 404 comes back as WARREN_ENOTFOUND: in a cluster that lost a node,
 * RabbitMQ answers a declare of a durable classic queue homed there with
 * "404 NOT_FOUND - home node ... is down or inaccessible". */
static int declare_failed(broker_conn *c, const char *kind, const char *name,
			  const char *what, warren_error *err)
{
	amqp_rpc_reply_t r = amqp_get_rpc_reply(c->amqp);
	bool not_found = r.reply_type == AMQP_RESPONSE_SERVER_EXCEPTION &&
			 r.reply.id == AMQP_CHANNEL_CLOSE_METHOD &&
			 ((amqp_channel_close_t *)r.reply.decoded)->reply_code == AMQP_NOT_FOUND;
	warren_error e = {0};
	int rc = broker_rpc_check(c, BROKER_CH_TOPOLOGY, &e, what);
	if (rc == WARREN_EBROKER && not_found)
		rc = e.code = WARREN_ENOTFOUND;
	if (!restate_mismatch(kind, name, e.msg, err))
		warren_error_set(err, rc, "%s", e.msg);
	warren_error repair = {0};
	if (c->amqp && broker_channels_repair(c, &repair))
		broker_conn_lost(c, repair.msg);
	return rc;
}

static int declare_exchange(broker_conn *c, const broker_exchange *e, warren_error *err)
{
	const char *type = exchange_type_name(e->type);
	if (!e->name || !type)
		return warren_error_set(err, WARREN_EINVAL, "exchange '%s': %s",
					e->name ? e->name : "(null)",
					type ? "no name" : "unknown type");
	if (!*e->name)
		return 0; /* the default exchange exists and cannot be declared */
	amqp_exchange_declare(c->amqp, BROKER_CH_TOPOLOGY, amqp_cstring_bytes(e->name),
			      amqp_cstring_bytes(type), 0, e->durable, e->auto_delete, 0,
			      amqp_empty_table);
	if (amqp_get_rpc_reply(c->amqp).reply_type == AMQP_RESPONSE_NORMAL)
		return 0;
	char what[160];
	snprintf(what, sizeof what, "declare exchange '%s'", e->name);
	return declare_failed(c, "exchange", e->name, what, err);
}

static void arg_int(amqp_table_entry_t *e, const char *key, int64_t v)
{
	e->key = amqp_cstring_bytes(key);
	if (v >= INT32_MIN && v <= INT32_MAX) {
		e->value.kind = AMQP_FIELD_KIND_I32;
		e->value.value.i32 = (int32_t)v;
	} else {
		e->value.kind = AMQP_FIELD_KIND_I64;
		e->value.value.i64 = v;
	}
}

static void arg_str(amqp_table_entry_t *e, const char *key, const char *v)
{
	e->key = amqp_cstring_bytes(key);
	e->value.kind = AMQP_FIELD_KIND_UTF8;
	e->value.value.bytes = amqp_cstring_bytes(v);
}

/* The x-arguments of q into args; entries point into q and args_buf. */
static void queue_args(const broker_queue *q, amqp_table_entry_t *buf, amqp_table_t *args)
{
	int n = 0;
	if (q->quorum)
		arg_str(&buf[n++], "x-queue-type", "quorum");
	if (q->max_priority != BROKER_UNSET)
		arg_int(&buf[n++], "x-max-priority", q->max_priority);
	if (q->dead_letter_exchange)
		arg_str(&buf[n++], "x-dead-letter-exchange", q->dead_letter_exchange);
	if (q->dead_letter_routing_key)
		arg_str(&buf[n++], "x-dead-letter-routing-key", q->dead_letter_routing_key);
	if (q->delivery_limit != BROKER_UNSET)
		arg_int(&buf[n++], "x-delivery-limit", q->delivery_limit);
	if (q->message_ttl_ms != BROKER_UNSET)
		arg_int(&buf[n++], "x-message-ttl", q->message_ttl_ms);
	if (q->expires_ms != BROKER_UNSET)
		arg_int(&buf[n++], "x-expires", q->expires_ms);
	args->num_entries = n;
	args->entries = n ? buf : NULL;
}

static int declare_queue(broker_conn *c, const broker_queue *q, warren_error *err)
{
	if (!q->name || !*q->name)
		return warren_error_set(err, WARREN_EINVAL,
					"queue: a name is required (server-named queues are not supported)");
	if (q->quorum && (!q->durable || q->exclusive || q->auto_delete))
		return warren_error_set(err, WARREN_EINVAL,
					"queue '%s': a quorum queue must be durable, not exclusive, "
					"not auto-delete", q->name);
	amqp_table_entry_t buf[8];
	amqp_table_t args;
	queue_args(q, buf, &args);
	amqp_queue_declare(c->amqp, BROKER_CH_TOPOLOGY, amqp_cstring_bytes(q->name), 0, q->durable,
			   q->exclusive, q->auto_delete, args);
	if (amqp_get_rpc_reply(c->amqp).reply_type == AMQP_RESPONSE_NORMAL)
		return 0;
	char what[160];
	snprintf(what, sizeof what, "declare queue '%s'", q->name);
	return declare_failed(c, "queue", q->name, what, err);
}

static int declare_binding(broker_conn *c, const broker_binding *b, warren_error *err)
{
	if (!b->queue || !b->exchange || !*b->exchange)
		return warren_error_set(err, WARREN_EINVAL,
					"binding: queue and a non-default exchange are required");
	const char *key = b->routing_key ? b->routing_key : "";
	amqp_queue_bind(c->amqp, BROKER_CH_TOPOLOGY, amqp_cstring_bytes(b->queue),
			amqp_cstring_bytes(b->exchange), amqp_cstring_bytes(key), amqp_empty_table);
	if (amqp_get_rpc_reply(c->amqp).reply_type == AMQP_RESPONSE_NORMAL)
		return 0;
	char what[200];
	snprintf(what, sizeof what, "bind queue '%s' to exchange '%s' key '%s'", b->queue,
		 b->exchange, key);
	return declare_failed(c, "binding", b->queue, what, err);
}

/* ---- the record of what was declared ------------------------------------ */

static char *dup_or_null(const char *s, bool *oom)
{
	if (!s)
		return NULL;
	char *d = strdup(s);
	if (!d)
		*oom = true;
	return d;
}

static void free_exchange(broker_exchange *e) { free((char *)e->name); }

static void free_queue(broker_queue *q)
{
	free((char *)q->name);
	free((char *)q->dead_letter_exchange);
	free((char *)q->dead_letter_routing_key);
}

static void free_binding(broker_binding *b)
{
	free((char *)b->queue);
	free((char *)b->exchange);
	free((char *)b->routing_key);
}

void broker_topology_rec_free(broker_topology_rec *t)
{
	for (size_t i = 0; i < t->n_exchanges; i++)
		free_exchange(&t->exchanges[i]);
	for (size_t i = 0; i < t->n_queues; i++)
		free_queue(&t->queues[i]);
	for (size_t i = 0; i < t->n_bindings; i++)
		free_binding(&t->bindings[i]);
	free(t->exchanges);
	free(t->queues);
	free(t->bindings);
	memset(t, 0, sizeof *t);
}

/* Grows *arr by one slot of size `size`; the new slot is at index *n. */
static void *grow(void *arr, size_t n, size_t size)
{
	return realloc(arr, (n + 1) * size);
}

static int remember_exchange(broker_topology_rec *t, const broker_exchange *e)
{
	bool oom = false;
	broker_exchange copy = *e;
	copy.name = dup_or_null(e->name, &oom);
	size_t i = 0;
	while (i < t->n_exchanges && strcmp(t->exchanges[i].name, e->name))
		i++;
	if (!oom && i == t->n_exchanges) {
		broker_exchange *a = grow(t->exchanges, t->n_exchanges, sizeof *a);
		if (a) {
			t->exchanges = a;
			t->n_exchanges++;
		} else {
			oom = true;
		}
	} else if (!oom) {
		free_exchange(&t->exchanges[i]);
	}
	if (oom) {
		free_exchange(&copy);
		return WARREN_ENOMEM;
	}
	t->exchanges[i] = copy;
	return 0;
}

static int remember_queue(broker_topology_rec *t, const broker_queue *q)
{
	bool oom = false;
	broker_queue copy = *q;
	copy.name = dup_or_null(q->name, &oom);
	copy.dead_letter_exchange = dup_or_null(q->dead_letter_exchange, &oom);
	copy.dead_letter_routing_key = dup_or_null(q->dead_letter_routing_key, &oom);
	size_t i = 0;
	while (i < t->n_queues && strcmp(t->queues[i].name, q->name))
		i++;
	if (!oom && i == t->n_queues) {
		broker_queue *a = grow(t->queues, t->n_queues, sizeof *a);
		if (a) {
			t->queues = a;
			t->n_queues++;
		} else {
			oom = true;
		}
	} else if (!oom) {
		free_queue(&t->queues[i]);
	}
	if (oom) {
		free_queue(&copy);
		return WARREN_ENOMEM;
	}
	t->queues[i] = copy;
	return 0;
}

static bool same_binding(const broker_binding *a, const broker_binding *b)
{
	return !strcmp(a->queue, b->queue) && !strcmp(a->exchange, b->exchange) &&
	       !strcmp(a->routing_key ? a->routing_key : "", b->routing_key ? b->routing_key : "");
}

static int remember_binding(broker_topology_rec *t, const broker_binding *b)
{
	for (size_t i = 0; i < t->n_bindings; i++)
		if (same_binding(&t->bindings[i], b))
			return 0;
	bool oom = false;
	broker_binding copy = {dup_or_null(b->queue, &oom), dup_or_null(b->exchange, &oom),
			       dup_or_null(b->routing_key ? b->routing_key : "", &oom)};
	broker_binding *a = oom ? NULL : grow(t->bindings, t->n_bindings, sizeof *a);
	if (!a) {
		free_binding(&copy);
		return WARREN_ENOMEM;
	}
	t->bindings = a;
	t->bindings[t->n_bindings++] = copy;
	return 0;
}

/* ---- declaring ---------------------------------------------------------- */

static int declare_all(broker_conn *c, const broker_topology *t, bool remember,
		       warren_error *err)
{
	int rc;
	for (size_t i = 0; i < t->n_exchanges; i++) {
		if ((rc = declare_exchange(c, &t->exchanges[i], err)))
			return rc;
		if (remember && remember_exchange(&c->topo, &t->exchanges[i]))
			goto out_oom;
	}
	/* After a reconnect, a queue the broker cannot find (its home node is
	 * down) is left out, and so is a binding to it, rather than refusing
	 * every node of the cluster; the next reconnect declares it again. */
	for (size_t i = 0; i < t->n_queues; i++) {
		if ((rc = declare_queue(c, &t->queues[i], err))) {
			if (rc == WARREN_ENOTFOUND && !remember && c->amqp) {
				warren_error_clear(err);
				continue;
			}
			return rc;
		}
		if (remember && remember_queue(&c->topo, &t->queues[i]))
			goto out_oom;
	}
	for (size_t i = 0; i < t->n_bindings; i++) {
		if ((rc = declare_binding(c, &t->bindings[i], err))) {
			if (rc == WARREN_ENOTFOUND && !remember && c->amqp) {
				warren_error_clear(err);
				continue;
			}
			return rc;
		}
		if (remember && remember_binding(&c->topo, &t->bindings[i]))
			goto out_oom;
	}
	return 0;
out_oom:
	return warren_error_set(err, WARREN_ENOMEM, "declare: out of memory");
}

int broker_declare(broker_conn *c, const broker_topology *t, warren_error *err)
{
	int rc = broker_conn_ensure(c, err);
	if (rc)
		return rc;
	return declare_all(c, t, true, err);
}

int broker_topology_redeclare(broker_conn *c, warren_error *err)
{
	broker_topology t = {
		.exchanges = c->topo.exchanges, .n_exchanges = c->topo.n_exchanges,
		.queues = c->topo.queues, .n_queues = c->topo.n_queues,
		.bindings = c->topo.bindings, .n_bindings = c->topo.n_bindings,
	};
	return declare_all(c, &t, false, err);
}
