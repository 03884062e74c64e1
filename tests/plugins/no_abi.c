/* tests/plugins/no_abi.c - a shared object without warren_plugin_abi: not a
 * warren plugin, so its init must never run. */
#include <stdlib.h>

#include "warren/plugin.h"

WARREN_PLUGIN_EXPORT int warren_plugin_init(warren_registry *reg)
{
	(void)reg;
	abort();
}
