/* tests/fuzz/fuzz_config_load.c - libFuzzer target: arbitrary bytes as a config file.
 *
 * fuzz-modules: common config
 *
 * Whatever the input, config_load_string() must return 0 or an error with a
 * message, within the node and depth limits, and never crash or leak. A
 * config that loads is also routed and described, to walk every struct the
 * loader filled.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/config.h"

static char *fuzz_env(const char *name)
{
	if (!strcmp(name, "WARREN_BROKER_URL"))
		return "amqp://fuzz//;amqps://fuzz2//";
	if (!strcmp(name, "WARREN_RESULT_BACKEND"))
		return "rpc://";
	return NULL;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static FILE *sink;
	if (!sink)
		sink = fopen("/dev/null", "w");

	warren_config *cfg = NULL;
	warren_error err = { 0 };
	int rc = config_load_string((const char *)data, size, "fuzz.yaml", &cfg, &err);
	if (rc != 0) {
		if (cfg || err.code != rc || err.msg[0] == '\0')
			abort(); /* a failure must leave *out alone and say why */
		return 0;
	}
	const config_route *r = config_route_task(cfg, "feeds.fetch");
	if (!r || !r->exchange || !r->routing_key)
		abort();
	if (sink)
		config_describe(cfg, sink);
	if (config_apply_env(cfg, fuzz_env, &err) != 0 || cfg->broker.n_urls != 2)
		abort();
	config_free(cfg);
	return 0;
}
