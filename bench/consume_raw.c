/* bench/consume_raw.c - the baseline for bench/worker.sh: plain rabbitmq-c
 * draining a queue of N task messages the way a worker must at the least:
 * basic.qos(PREFETCH, per consumer), basic.consume with acks, and one
 * basic.ack per delivery. It neither decodes nor runs anything, so it is the
 * ceiling a worker is measured against. Exits after acking N messages.
 *
 *   consume_raw HOST PORT QUEUE N PREFETCH
 * Built by bench/worker.sh with plain `cc ... -lrabbitmq`; not a test.
 */
#if __has_include(<rabbitmq-c/amqp.h>)
#include <rabbitmq-c/amqp.h>
#include <rabbitmq-c/tcp.h>
#else
#include <amqp.h>
#include <amqp_tcp_socket.h>
#endif
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void die_on(int bad, const char *what)
{
	if (bad) {
		fprintf(stderr, "consume_raw: %s failed\n", what);
		exit(1);
	}
}

int main(int argc, char **argv)
{
	if (argc != 6) {
		fprintf(stderr, "usage: consume_raw HOST PORT QUEUE N PREFETCH\n");
		return 64;
	}
	const char *host = argv[1], *queue = argv[3];
	int port = atoi(argv[2]);
	unsigned long n = strtoul(argv[4], NULL, 10);
	uint16_t prefetch = (uint16_t)atoi(argv[5]);
	amqp_connection_state_t c = amqp_new_connection();
	amqp_socket_t *s = amqp_tcp_socket_new(c);
	die_on(amqp_socket_open(s, host, port) != AMQP_STATUS_OK, "connect");
	die_on(amqp_login(c, "/", 0, 131072, 60, AMQP_SASL_METHOD_PLAIN, "guest", "guest").reply_type !=
		       AMQP_RESPONSE_NORMAL, "login");
	amqp_channel_open(c, 1);
	die_on(amqp_get_rpc_reply(c).reply_type != AMQP_RESPONSE_NORMAL, "channel open");
	amqp_basic_qos(c, 1, 0, prefetch, 0);
	die_on(amqp_get_rpc_reply(c).reply_type != AMQP_RESPONSE_NORMAL, "basic.qos");
	amqp_basic_consume(c, 1, amqp_cstring_bytes(queue), amqp_empty_bytes, 0, 0, 0,
			   amqp_empty_table);
	die_on(amqp_get_rpc_reply(c).reply_type != AMQP_RESPONSE_NORMAL, "basic.consume");
	for (unsigned long got = 0; got < n; got++) {
		amqp_envelope_t e;
		amqp_maybe_release_buffers(c);
		die_on(amqp_consume_message(c, &e, NULL, 0).reply_type != AMQP_RESPONSE_NORMAL,
		       "consume");
		die_on(amqp_basic_ack(c, 1, e.delivery_tag, 0) != 0, "ack");
		amqp_destroy_envelope(&e);
	}
	amqp_channel_close(c, 1, AMQP_REPLY_SUCCESS);
	amqp_connection_close(c, AMQP_REPLY_SUCCESS);
	amqp_destroy_connection(c);
	return 0;
}
