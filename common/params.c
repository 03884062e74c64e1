/* common/params.c - names of the argument types, shared by config/ and schemas/. */
#include <string.h>

#include "warren/params.h"

static const char *const type_names[] = {
	[WARREN_TYPE_ANY] = "any",     [WARREN_TYPE_INT] = "int",
	[WARREN_TYPE_FLOAT] = "float", [WARREN_TYPE_STR] = "str",
	[WARREN_TYPE_BYTES] = "bytes", [WARREN_TYPE_BOOL] = "bool",
	[WARREN_TYPE_LIST] = "list",   [WARREN_TYPE_MAP] = "map",
	[WARREN_TYPE_NULL] = "null",
};

const char *warren_type_name(warren_type t)
{
	if ((unsigned)t >= sizeof type_names / sizeof type_names[0])
		return "?";
	return type_names[t];
}

int warren_type_parse(const char *name, warren_type *out)
{
	for (size_t i = 0; i < sizeof type_names / sizeof type_names[0]; i++) {
		if (strcmp(name, type_names[i]) == 0) {
			*out = (warren_type)i;
			return 0;
		}
	}
	return WARREN_EINVAL;
}
