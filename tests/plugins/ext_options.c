/* tests/plugins/ext_options.c - registers task "ext.task" with
 * warren_register_ext and the warren_task_options_ext that -DCASE=n selects:
 * as this header builds it, absent, as an older or a newer header would
 * build it, and wrong. The loader keeps or refuses each as plugin.h says. */
#include <stddef.h>
#include <stdint.h>

#include "warren/plugin.h"

WARREN_PLUGIN_DEFINE_ABI();

static int task(warren_task *t)
{
	(void)t;
	return 0;
}

/* What a newer header's struct could look like: our fields, then more. */
typedef struct newer_ext {
	warren_task_options_ext known;
	uint32_t later_switch;
	double later_seconds;
} newer_ext;

static const warren_task_options_ext on = {.size = sizeof on,
					   .reject_on_worker_lost = WARREN_ON};
static const warren_task_options_ext off = {.size = sizeof off,
					    .reject_on_worker_lost = WARREN_OFF};
/* An older header's struct: the size field only (the option is past it). */
static const warren_task_options_ext older = {.size = sizeof(uint32_t),
					      .reject_on_worker_lost = WARREN_ON};
static const warren_task_options_ext no_size = {.reject_on_worker_lost = WARREN_ON};
static const warren_task_options_ext bad_switch = {.size = sizeof bad_switch,
						   .reject_on_worker_lost = (warren_switch)9};
static const newer_ext newer_unset = {
	.known = {.size = sizeof newer_unset, .reject_on_worker_lost = WARREN_ON}};
static const newer_ext newer_set = {
	.known = {.size = sizeof newer_set, .reject_on_worker_lost = WARREN_ON},
	.later_seconds = 2.5};

static const warren_task_options_ext *const cases[] = {
	[0] = &on,
	[1] = NULL,
	[2] = &older,
	[3] = &newer_unset.known,
	[4] = &no_size,
	[5] = &bad_switch,
	[6] = &newer_set.known,
	[7] = &off,
};

WARREN_PLUGIN_EXPORT int warren_plugin_init(warren_registry *reg)
{
	static const warren_task_options opts = {.max_retries = 5};
	return warren_register_ext(reg, "ext.task", task, &opts, cases[CASE]);
}
