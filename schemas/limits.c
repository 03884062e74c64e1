/* schemas/limits.c - the default hard limits on untrusted wire input.
 *
 * The defaults bound what one delivered message can make a worker allocate
 * (about 24 bytes of msgpack_object per input byte, see decode.c) while
 * leaving room for any message a real Celery client sends.
 */
#include "schemas.h"

void schema_limits_default(schema_limits *lim)
{
	lim->max_body = 16u * 1024 * 1024;
	lim->max_depth = 64;
	lim->max_elems = 1000000;
	lim->max_str = 8u * 1024 * 1024;
}
