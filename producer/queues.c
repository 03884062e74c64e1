/* producer/queues.c - queue depth, consumers and purge through the client's
 * broker connection (broker-adapter/inspect.c does the AMQP part), for
 * `warren queues`, `warren purge` and programs that watch a backlog.
 */
#include "producer.h"

int warren_queue_stats(warren_client *c, const char *name, uint32_t *messages,
		       uint32_t *consumers, warren_error *err)
{
	if (!c || !name)
		return warren_error_set(err, WARREN_EINVAL, "queue stats: NULL client or name");
	int rc = producer_broker(c, err);
	return rc ? rc : broker_queue_inspect(c->conn, name, messages, consumers, err);
}

int warren_queue_purge(warren_client *c, const char *name, uint32_t *purged, warren_error *err)
{
	if (!c || !name)
		return warren_error_set(err, WARREN_EINVAL, "purge: NULL client or name");
	int rc = producer_broker(c, err);
	return rc ? rc : broker_queue_purge(c->conn, name, purged, err);
}
