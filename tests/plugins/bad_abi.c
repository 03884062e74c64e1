/* tests/plugins/bad_abi.c - a plugin built for a future ABI: must be refused
 * before its init runs (init would abort the test if it did). */
#include <stdlib.h>

#include "warren/plugin.h"

WARREN_PLUGIN_EXPORT const int warren_plugin_abi = WARREN_PLUGIN_ABI + 1;

WARREN_PLUGIN_EXPORT int warren_plugin_init(warren_registry *reg)
{
	(void)reg;
	abort();
}
