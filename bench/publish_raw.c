/* bench/publish_raw.c - the baseline for bench/publish.sh: plain rabbitmq-c
 * publishing N Celery-shaped task messages (the headers and the 41-byte
 * msgpack body of `math.add(2, 3)` as warren sends them) to a durable queue
 * through the default exchange, persistent, mandatory, with publisher
 * confirms and at most WINDOW unconfirmed, as `warren send --from` does.
 * Each message gets its own task id (id, root_id, correlation_id), as
 * warren's do, so the broker sees the same bytes per message on both sides.
 * Prints "raw N tasks in S s: R tasks/s" (publishing only; publish.sh times
 * both peers' whole processes from outside as well).
 *
 *   publish_raw HOST PORT QUEUE N WINDOW
 * Built by bench/publish.sh with plain `cc ... -lrabbitmq`; not a test.
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
#include <time.h>

static void die_on(int bad, const char *what)
{
	if (bad) {
		fprintf(stderr, "publish_raw: %s failed\n", what);
		exit(1);
	}
}

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* Reads frames until at least one ack arrived; returns how many it settled. */
static unsigned long wait_acks(amqp_connection_state_t c, unsigned long next_unacked)
{
	for (;;) {
		amqp_frame_t f;
		die_on(amqp_simple_wait_frame(c, &f) != AMQP_STATUS_OK, "wait frame");
		if (f.frame_type != AMQP_FRAME_METHOD)
			continue;
		if (f.payload.method.id == AMQP_BASIC_ACK_METHOD) {
			amqp_basic_ack_t *a = f.payload.method.decoded;
			unsigned long upto = a->multiple ? a->delivery_tag : next_unacked;
			return upto >= next_unacked ? upto - next_unacked + 1 : 0;
		}
		die_on(f.payload.method.id == AMQP_BASIC_NACK_METHOD, "a nack");
		/* basic.return: unroutable; count on its ack */
	}
}

#define STR(k, v) {amqp_cstring_bytes(k), {.kind = AMQP_FIELD_KIND_UTF8, .value.bytes = amqp_cstring_bytes(v)}}
#define VOID(k) {amqp_cstring_bytes(k), {.kind = AMQP_FIELD_KIND_VOID}}

int main(int argc, char **argv)
{
	if (argc != 6) {
		fprintf(stderr, "usage: publish_raw HOST PORT QUEUE N WINDOW\n");
		return 64;
	}
	const char *host = argv[1], *queue = argv[3];
	int port = atoi(argv[2]);
	unsigned long n = strtoul(argv[4], NULL, 10), window = strtoul(argv[5], NULL, 10);
	amqp_connection_state_t c = amqp_new_connection();
	amqp_socket_t *s = amqp_tcp_socket_new(c);
	die_on(amqp_socket_open(s, host, port) != AMQP_STATUS_OK, "connect");
	die_on(amqp_login(c, "/", 0, 131072, 60, AMQP_SASL_METHOD_PLAIN, "guest", "guest").reply_type !=
		       AMQP_RESPONSE_NORMAL, "login");
	amqp_channel_open(c, 1);
	die_on(amqp_get_rpc_reply(c).reply_type != AMQP_RESPONSE_NORMAL, "channel open");
	amqp_confirm_select(c, 1);
	die_on(amqp_get_rpc_reply(c).reply_type != AMQP_RESPONSE_NORMAL, "confirm select");
	amqp_queue_declare(c, 1, amqp_cstring_bytes(queue), 0, 1, 0, 0, amqp_empty_table);
	die_on(amqp_get_rpc_reply(c).reply_type != AMQP_RESPONSE_NORMAL, "queue declare");

	/* The headers warren sends for math.add(2, 3) (see schemas/task.c). */
	char id[] = "d5a8e3c2-1b4f-4a9e-9c3e-000000000001";
	amqp_field_value_t tlv[2] = {{.kind = AMQP_FIELD_KIND_VOID}, {.kind = AMQP_FIELD_KIND_VOID}};
	amqp_table_entry_t h[] = {
		STR("lang", "c"), STR("task", "math.add"), STR("id", id), VOID("shadow"), VOID("eta"),
		VOID("expires"), VOID("group"), VOID("group_index"),
		{amqp_cstring_bytes("retries"), {.kind = AMQP_FIELD_KIND_I32, .value.i32 = 0}},
		{amqp_cstring_bytes("timelimit"),
		 {.kind = AMQP_FIELD_KIND_ARRAY, .value.array = {2, tlv}}},
		STR("root_id", id), VOID("parent_id"), STR("argsrepr", "(2, 3)"),
		STR("kwargsrepr", "{}"), STR("origin", "gen1234@bench"),
		{amqp_cstring_bytes("ignore_result"),
		 {.kind = AMQP_FIELD_KIND_BOOLEAN, .value.boolean = 0}},
	};
	static const unsigned char body[] = {0x93, 0x92, 0x02, 0x03, 0x80, 0x84, 0xa9, 'c', 'a', 'l', 'l',
					     'b', 'a', 'c', 'k', 's', 0xc0, 0xa8, 'e', 'r', 'r', 'b',
					     'a', 'c', 'k', 's', 0xc0, 0xa5, 'c', 'h', 'a', 'i', 'n',
					     0xc0, 0xa5, 'c', 'h', 'o', 'r', 'd', 0xc0};
	amqp_basic_properties_t p = {
		._flags = AMQP_BASIC_CONTENT_TYPE_FLAG | AMQP_BASIC_CONTENT_ENCODING_FLAG |
			  AMQP_BASIC_DELIVERY_MODE_FLAG | AMQP_BASIC_PRIORITY_FLAG |
			  AMQP_BASIC_CORRELATION_ID_FLAG | AMQP_BASIC_REPLY_TO_FLAG |
			  AMQP_BASIC_HEADERS_FLAG,
		.content_type = amqp_cstring_bytes("application/x-msgpack"),
		.content_encoding = amqp_cstring_bytes("binary"),
		.delivery_mode = 2, .priority = 0,
		.correlation_id = amqp_cstring_bytes(id),
		.reply_to = amqp_cstring_bytes("75a4b1d9-4266-471d-971d-6d42030b84dc"),
		.headers = {sizeof h / sizeof *h, h},
	};
	amqp_bytes_t b = {sizeof body, (void *)body};
	double t0 = now_s();
	unsigned long published = 0, acked = 0;
	while (acked < n) {
		while (published < n && published - acked < window) {
			/* A fresh id: the last 12 hex digits count the messages
			 * (the three headers/properties point at this buffer). */
			static const char hex[] = "0123456789abcdef";
			unsigned long long k = published + 1;
			for (int d = 35; d >= 24; d--, k >>= 4)
				id[d] = hex[k & 15];
			die_on(amqp_basic_publish(c, 1, amqp_cstring_bytes(""),
						  amqp_cstring_bytes(queue), 1, 0, &p, b) !=
				       AMQP_STATUS_OK, "publish");
			published++;
		}
		acked += wait_acks(c, acked + 1);
	}
	double secs = now_s() - t0;
	printf("raw %lu tasks in %.3f s: %.0f tasks/s\n", n, secs, n / secs);
	amqp_channel_close(c, 1, AMQP_REPLY_SUCCESS);
	amqp_connection_close(c, AMQP_REPLY_SUCCESS);
	amqp_destroy_connection(c);
	return 0;
}
