/* broker-adapter/inspect.c - queue depth, consumers and purge, for the
 * `warren queues` and `warren purge` commands and for tests that count what a
 * queue holds.
 *
 * Both run on the topology channel. A missing queue makes the broker close
 * that channel with 404; we report WARREN_ENOTFOUND and reopen it, so the
 * connection stays usable for the next call.
 */
#include <stdio.h>
#include <string.h>

#include "internal.h"

/* Is the last RPC reply a channel.close with code 404 (NOT_FOUND)? */
static bool reply_is_not_found(amqp_rpc_reply_t r)
{
	if (r.reply_type != AMQP_RESPONSE_SERVER_EXCEPTION || r.reply.id != AMQP_CHANNEL_CLOSE_METHOD)
		return false;
	const amqp_channel_close_t *m = r.reply.decoded;
	return m->reply_code == AMQP_NOT_FOUND;
}

/* A failed call: say why, then reopen the channel the broker closed. */
static int call_failed(broker_conn *c, const char *queue, const char *what, warren_error *err)
{
	amqp_rpc_reply_t r = amqp_get_rpc_reply(c->amqp);
	bool missing = reply_is_not_found(r);
	warren_error e = {0};
	int rc = broker_rpc_error(c, BROKER_CH_TOPOLOGY, r, &e, what);
	if (missing)
		rc = warren_error_set(err, WARREN_ENOTFOUND, "queue '%s': no such queue on '%s'",
				      queue, broker_conn_url(c));
	else
		warren_error_set(err, rc, "%s", e.msg);
	warren_error repair = {0};
	if (c->amqp && broker_channels_repair(c, &repair))
		broker_conn_lost(c, repair.msg);
	return rc;
}

int broker_queue_inspect(broker_conn *c, const char *queue, uint32_t *messages,
			 uint32_t *consumers, warren_error *err)
{
	if (!queue || !*queue)
		return warren_error_set(err, WARREN_EINVAL, "inspect queue: a name is required");
	int rc = broker_conn_ensure(c, err);
	if (rc)
		return rc;
	amqp_queue_declare_ok_t *ok =
		amqp_queue_declare(c->amqp, BROKER_CH_TOPOLOGY, amqp_cstring_bytes(queue), 1, 0, 0,
				   0, amqp_empty_table);
	if (!ok) {
		char what[300];
		snprintf(what, sizeof what, "inspect queue '%s'", queue);
		return call_failed(c, queue, what, err);
	}
	if (messages)
		*messages = ok->message_count;
	if (consumers)
		*consumers = ok->consumer_count;
	return 0;
}

int broker_queue_purge(broker_conn *c, const char *queue, uint32_t *purged, warren_error *err)
{
	if (!queue || !*queue)
		return warren_error_set(err, WARREN_EINVAL, "purge queue: a name is required");
	int rc = broker_conn_ensure(c, err);
	if (rc)
		return rc;
	amqp_queue_purge_ok_t *ok =
		amqp_queue_purge(c->amqp, BROKER_CH_TOPOLOGY, amqp_cstring_bytes(queue));
	if (!ok) {
		char what[300];
		snprintf(what, sizeof what, "purge queue '%s'", queue);
		return call_failed(c, queue, what, err);
	}
	if (purged)
		*purged = ok->message_count;
	return 0;
}
