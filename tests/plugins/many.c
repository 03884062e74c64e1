/* tests/plugins/many.c - registers COUNT tasks named many.0 .. many.<COUNT-1>
 * from a reused stack buffer (the registry must copy names). Each returns
 * its own task name, so a lookup that found the wrong entry shows. */
#include <stdio.h>

#include "warren/plugin.h"

WARREN_PLUGIN_DEFINE_ABI();

static int own_name(warren_task *t)
{
	const char *name = warren_task_name(t);
	size_t len = 0;
	while (name[len])
		len++;
	msgpack_pack_str_with_body(warren_task_result(t), name, len);
	return 0;
}

WARREN_PLUGIN_EXPORT int warren_plugin_init(warren_registry *reg)
{
	char name[32];
	for (int i = 0; i < COUNT; i++) {
		snprintf(name, sizeof name, "many.%d", i);
		if (warren_register(reg, name, own_name, NULL) != 0)
			return -1;
	}
	return 0;
}
