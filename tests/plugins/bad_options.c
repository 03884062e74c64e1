/* tests/plugins/bad_options.c - registers one task with the invalid option
 * that -DCASE=n selects; the loader must refuse each with its reason. */
#include <stddef.h>

#include "warren/plugin.h"

WARREN_PLUGIN_DEFINE_ABI();

static int task(warren_task *t)
{
	(void)t;
	return 0;
}

static const warren_param twice[] = {
	{.name = "x", .type = WARREN_TYPE_INT},
	{.name = "x", .type = WARREN_TYPE_STR},
};
static const warren_param unnamed[] = {{.type = WARREN_TYPE_INT}};
static const warren_param bad_default[] = {
	{.name = "x", .type = WARREN_TYPE_INT, .default_mp = "\x92\x01", .default_len = 2},
};
static const warren_task_schema schema_twice = {.params = twice, .n_params = 2};
static const warren_task_schema schema_unnamed = {.params = unnamed, .n_params = 1};
static const warren_task_schema schema_bad_default = {.params = bad_default, .n_params = 1};

static const warren_task_options cases[] = {
	[0] = {.rate_limit = "10/d"},
	[1] = {.soft_time_limit = 10, .time_limit = 5},
	[2] = {.time_limit = -1},
	[3] = {.schema = &schema_twice},
	[4] = {.schema = &schema_unnamed},
	[5] = {.schema = &schema_bad_default},
	[6] = {.acks_late = (warren_switch)7},
	[7] = {.max_retries = -3},
	[8] = {0}, /* fine options, but no handler */
	[9] = {0}, /* fine options, but no name */
};

WARREN_PLUGIN_EXPORT int warren_plugin_init(warren_registry *reg)
{
	const char *name = CASE == 9 ? "" : "bad.options";
	return warren_register(reg, name, CASE == 8 ? NULL : task, &cases[CASE]);
}
