/* tests/plugins/no_init.c - states the right ABI but has no init. */
#include "warren/plugin.h"

WARREN_PLUGIN_DEFINE_ABI();
