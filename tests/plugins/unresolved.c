/* tests/plugins/unresolved.c - calls a function nothing defines: RTLD_NOW
 * must refuse it at load time, not crash when the task runs. */
#include "warren/plugin.h"

WARREN_PLUGIN_DEFINE_ABI();

int warren_test_no_such_function(void);

static int call_missing(warren_task *t)
{
	(void)t;
	return warren_test_no_such_function();
}

WARREN_PLUGIN_EXPORT int warren_plugin_init(warren_registry *reg)
{
	return warren_register(reg, "unresolved.call", call_missing, NULL);
}
