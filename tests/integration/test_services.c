/* tests/integration/test_services.c - the harness itself: the private RabbitMQ
 * and Redis that scripts/with-services starts are up and speak their protocols.
 * Every other integration test relies on this; when it fails, read this first. */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <hiredis/hiredis.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "support.h"

static int connect_tcp(const char *host, int port)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	cr_assert_geq(fd, 0);
	struct timeval tv = {.tv_sec = 5};
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
	cr_assert_eq(inet_pton(AF_INET, strcmp(host, "localhost") ? host : "127.0.0.1", &sa.sin_addr), 1,
		     "host '%s' is not an IPv4 address", host);
	cr_assert_eq(connect(fd, (struct sockaddr *)&sa, sizeof sa), 0, "connect %s:%d: %m", host, port);
	return fd;
}

Test(integration_services, rabbitmq_answers_the_amqp_091_handshake)
{
	char host[256];
	int port;
	const char *url = support_service_url("WARREN_TEST_BROKER");
	cr_assert_eq(support_url_host_port(url, host, sizeof host, &port), 0, "bad url");
	int fd = connect_tcp(host, port);
	static const unsigned char hello[8] = {'A', 'M', 'Q', 'P', 0, 0, 9, 1};
	cr_assert_eq(write(fd, hello, sizeof hello), (ssize_t)sizeof hello);
	/* The broker's first frame is connection.start: a method frame (type 1)
	 * on channel 0 carrying class 10, method 10. */
	unsigned char frame[11];
	size_t got = 0;
	while (got < sizeof frame) {
		ssize_t n = read(fd, frame + got, sizeof frame - got);
		cr_assert_gt(n, 0, "broker closed or timed out after %zu bytes", got);
		got += (size_t)n;
	}
	close(fd);
	cr_expect_eq(frame[0], 1, "frame type %d", frame[0]);
	cr_expect_eq(frame[1] << 8 | frame[2], 0, "channel");
	cr_expect_eq(frame[7] << 8 | frame[8], 10, "class id");
	cr_expect_eq(frame[9] << 8 | frame[10], 10, "method id");
}

Test(integration_services, redis_answers_ping)
{
	char host[256];
	int port;
	const char *url = support_service_url("WARREN_TEST_REDIS");
	cr_assert_eq(support_url_host_port(url, host, sizeof host, &port), 0, "bad url");
	redisContext *c = redisConnect(host, port);
	cr_assert(c && !c->err, "redis connect: %s", c ? c->errstr : "oom");
	redisReply *r = redisCommand(c, "PING");
	cr_assert(r, "PING: %s", c->errstr);
	cr_expect_eq(r->type, REDIS_REPLY_STATUS);
	cr_expect_str_eq(r->str, "PONG");
	freeReplyObject(r);
	redisFree(c);
}
