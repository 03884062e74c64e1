/* tests/fuzz/fuzz_task_decode.c - libFuzzer target for schema_task_decode.
 *
 * Input layout: two bytes big-endian N, then N bytes of headers (a msgpack
 * map), then the body. The seed corpus (tests/fuzz/corpus/task_decode/) holds
 * the Celery golden messages in this layout. Decoding runs with the default
 * limits, as a worker would; success or error, nothing may crash or leak, and
 * a decoded message must re-encode.
 *
 * fuzz-modules: common schemas
 */
#include <stddef.h>
#include <stdint.h>

#include "schemas/schemas.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 2)
		return 0;
	size_t headers_len = ((size_t)data[0] << 8) | data[1];
	if (headers_len > size - 2)
		headers_len = size - 2;
	const uint8_t *headers = data + 2;
	const uint8_t *body = headers + headers_len;
	size_t body_len = size - 2 - headers_len;

	schema_limits lim;
	schema_limits_default(&lim);
	schema_task_props props = { .content_type = SCHEMA_CONTENT_TYPE,
				    .content_encoding = SCHEMA_CONTENT_ENCODING };
	schema_task_msg *msg = NULL;
	warren_error err = { 0 };
	if (schema_task_decode(&props, headers, headers_len, body, body_len, &lim, &msg, &err) != 0)
		return 0;
	msgpack_sbuffer h, b;
	msgpack_sbuffer_init(&h);
	msgpack_sbuffer_init(&b);
	schema_task_props out;
	warren_error_clear(&err);
	if (schema_task_encode(msg, &h, &b, &out, &err) != 0 && err.code != WARREN_EINVAL)
		__builtin_trap(); /* a decoded message must re-encode */
	msgpack_sbuffer_destroy(&h);
	msgpack_sbuffer_destroy(&b);
	schema_task_msg_free(msg);
	return 0;
}
