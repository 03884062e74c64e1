/* tests/plugins/init_fails.c - registers a task, then fails its init: with a
 * message, or (built with -DSILENT) without one. The task must not stay
 * registered. */
#include "warren/plugin.h"

WARREN_PLUGIN_DEFINE_ABI();

static int task(warren_task *t)
{
	(void)t;
	return 0;
}

WARREN_PLUGIN_EXPORT int warren_plugin_init(warren_registry *reg)
{
	if (warren_register(reg, "initfail.task", task, NULL) != 0)
		return -1;
#ifdef SILENT
	return -3;
#else
	return warren_plugin_error(reg, "cannot reach %s", "the license server");
#endif
}
