/* schemas/schemas.h - private header of the wire module: Celery protocol v2 +
 * msgpack task messages, rpc/redis result messages, hard limits on untrusted
 * input, and task argument schemas. Depends on msgpack-c and the public
 * warren/error.h and warren/params.h only; knows nothing of AMQP or rabbitmq-c.
 *
 * AMQP headers cross into and out of this module as a msgpack map (packed
 * bytes); broker-adapter/ converts that map to and from an AMQP table.
 *
 * Sections are owned by different files; keep each section's declarations
 * together under its banner.
 */
#ifndef WARREN_SCHEMAS_H
#define WARREN_SCHEMAS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <msgpack.h>

#include "warren/error.h"
#include "warren/params.h"

/* ==== limits and checked decoding (schemas/limits.c, schemas/decode.c) ==== */

/* Hard limits on untrusted input. Every decoder of bytes that came over the
 * network takes one; schema_limits_default() gives the safe defaults. */
typedef struct schema_limits {
	size_t max_body;    /* bytes in one message body (default 16 MiB) */
	unsigned max_depth; /* nesting of arrays/maps (default 64) */
	size_t max_elems;   /* elements in one array or pairs in one map (default 1,000,000) */
	size_t max_str;     /* bytes in one str/bin/ext (default 8 MiB) */
} schema_limits;

void schema_limits_default(schema_limits *lim);

/* Decodes exactly one msgpack value filling all of data[0..len) into objects
 * allocated from zone (owned by the caller, who frees it with
 * msgpack_zone_free / msgpack_zone_destroy). `what` names the input in error
 * messages ("body"), and a violation names the path:
 * "body: nesting deeper than 64 at [0][3]". Never allocates more than a small
 * multiple of len, whatever the input claims. Returns 0, WARREN_EDECODE,
 * WARREN_ELIMIT or WARREN_ENOMEM. */
int schema_unpack(const void *data, size_t len, const schema_limits *lim,
		  const char *what, msgpack_zone *zone, msgpack_object *out,
		  warren_error *err);

/* ==== task messages (schemas/task.c, schemas/signature.c) ==== */

/* ==== result messages (schemas/result.c) ==== */

/* ==== task argument schemas (schemas/args.c) ==== */

#endif
