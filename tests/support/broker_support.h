/* tests/support/broker_support.h - helpers for the broker adapter's
 * integration tests: a connection to the test broker, unique names, and an
 * outcome recorder for publisher confirms. */
#ifndef WARREN_TEST_BROKER_SUPPORT_H
#define WARREN_TEST_BROKER_SUPPORT_H

#include <stddef.h>
#include <stdint.h>

#include "broker-adapter/broker.h"

/* Options for the test broker (WARREN_TEST_BROKER; the test fails if unset)
 * with timeouts short enough for tests. */
void broker_test_opts(broker_conn_opts *o);

/* Connects with broker_test_opts, failing the test on error. */
broker_conn *broker_test_connect(void);

/* "warren.test.<what>.<pid>" in a static buffer per slot (0..3). */
const char *broker_test_name(int slot, const char *what);

/* Counts outcomes by kind; remembers the last reason and each cookie's outcome
 * (cookies below BROKER_TEST_MAX_COOKIES). */
#define BROKER_TEST_MAX_COOKIES 20000
typedef struct broker_test_outcomes {
	size_t n[4];
	char last_reason[256];
	signed char by_cookie[BROKER_TEST_MAX_COOKIES]; /* -1 = none yet */
} broker_test_outcomes;

void broker_test_outcomes_init(broker_test_outcomes *r);
void broker_test_record(void *arg, uint64_t cookie, broker_outcome o, const char *reason);

/* Waits for a MESSAGE event (skipping RECONNECTED) and returns the message,
 * which the caller frees. Fails the test on timeout or error. */
broker_message *broker_test_receive(broker_conn *c, int timeout_ms);

/* Deletes queue `name` over a separate raw rabbitmq-c connection, as another
 * client (or an operator) would. */
void broker_test_delete_queue(const char *name);

/* The port of the WARREN_TEST_BROKER URL. */
int broker_test_port(void);

#endif
