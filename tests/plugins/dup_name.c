/* tests/plugins/dup_name.c - registers dup.first, then math.add, which
 * math.so already has. Built with -DIGNORE it ignores the refusal and
 * reports success: the loader must fail it all the same. */
#include "warren/plugin.h"

WARREN_PLUGIN_DEFINE_ABI();

static int task(warren_task *t)
{
	(void)t;
	return 0;
}

WARREN_PLUGIN_EXPORT int warren_plugin_init(warren_registry *reg)
{
	if (warren_register(reg, "dup.first", task, NULL) != 0)
		return -1;
#ifdef IGNORE
	warren_register(reg, "math.add", task, NULL);
	return 0;
#else
	return warren_register(reg, "math.add", task, NULL);
#endif
}
