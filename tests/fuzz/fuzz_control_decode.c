/* tests/fuzz/fuzz_control_decode.c - libFuzzer target for the remote-control
 * and event decoders (schemas/control.c, schemas/event.c): what a worker's
 * pidbox consumer, the CLI's reply collector and `warren events` take from
 * the network.
 *
 * Input layout: one byte selecting the decoder and format (bit 0: JSON
 * instead of msgpack; bits 1-2: request, reply, event), two bytes big-endian
 * N, N bytes of headers (a msgpack map), then the body. The seed corpus
 * (tests/fuzz/corpus/control_decode/) holds the Celery golden messages of
 * tests/fixtures/control/ in this layout. Decoding runs with the default
 * limits; success or error, nothing may crash or leak, and a decoded request
 * must be answerable (its fields read, a reply encoded in its format).
 *
 * fuzz-modules: common schemas
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "schemas/schemas.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char PONG[] = "\x81\xa2ok\xa4pong"; /* {"ok": "pong"} */

static void exercise_request(const schema_control_request *req)
{
	msgpack_sbuffer sb;
	msgpack_sbuffer_init(&sb);
	(void)schema_control_request_is_for(req, "w1@host");
	(void)schema_control_request_expired(req, 1e9);
	(void)schema_control_arg(req, "task_id");
	if (schema_control_reply_encode("w1@host", PONG, sizeof PONG - 1, req->format, &sb,
					NULL) != 0)
		__builtin_trap(); /* a pong must always encode */
	msgpack_sbuffer_clear(&sb);
	(void)schema_control_reply_headers(req->ticket, req->clock, &sb, NULL);
	msgpack_sbuffer_destroy(&sb);
}

static void exercise_reply(const schema_control_reply *r)
{
	for (size_t i = 0; i < r->n_nodes; i++) {
		msgpack_sbuffer sb;
		msgpack_sbuffer_init(&sb);
		msgpack_packer pk;
		msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
		msgpack_pack_object(&pk, r->nodes[i].value);
		/* re-encoding may fail for JSON (bin values), never crash */
		msgpack_sbuffer tmp;
		msgpack_sbuffer_init(&tmp);
		(void)schema_control_reply_encode(r->nodes[i].nodename, sb.data, sb.size,
						  SCHEMA_CONTROL_JSON, &tmp, NULL);
		msgpack_sbuffer_destroy(&tmp);
		msgpack_sbuffer_destroy(&sb);
	}
}

static void exercise_events(const schema_event_list *l)
{
	for (size_t i = 0; i < l->n; i++) {
		char *out = NULL;
		size_t len = 0;
		(void)schema_event_get_str(&l->events[i], "name");
		if (schema_event_encode(l->events[i].object, &out, &len, NULL) != 0)
			__builtin_trap(); /* a decoded event must re-encode */
		free(out);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 3)
		return 0;
	unsigned sel = data[0];
	size_t headers_len = ((size_t)data[1] << 8) | data[2];
	if (headers_len > size - 3)
		headers_len = size - 3;
	const uint8_t *headers = data + 3;
	const uint8_t *body = headers + headers_len;
	size_t body_len = size - 3 - headers_len;
	const char *ct = (sel & 1) ? "application/json" : "application/x-msgpack";

	switch ((sel >> 1) & 3) {
	case 0: {
		schema_control_request *req = NULL;
		if (schema_control_request_decode(ct, headers, headers_len, body, body_len, NULL,
						  &req, NULL) == 0)
			exercise_request(req);
		schema_control_request_free(req);
		break;
	}
	case 1: {
		schema_control_reply *r = NULL;
		if (schema_control_reply_decode(ct, headers, headers_len, body, body_len, NULL, &r,
						NULL) == 0)
			exercise_reply(r);
		schema_control_reply_free(r);
		break;
	}
	default: {
		schema_event_list l;
		if (schema_event_decode(NULL, body, body_len, NULL, &l, NULL) == 0)
			exercise_events(&l);
		schema_event_list_release(&l);
		break;
	}
	}
	return 0;
}
