/* worker/deadletter.c - messages the worker will not run go to `warren.dead`
 * with the reason in an `x-warren-reason` header, and their callers get a
 * FAILURE instead of waiting forever.
 *
 * Why a copy plus an ack rather than basic.reject into a dead-letter
 * exchange: Celery declares its queues without x-dead-letter-exchange, and
 * declaring them with one would clash with every Celery client's declaration
 * (PRECONDITION_FAILED). A rejected message would also carry only the
 * broker's "rejected", not why. So the loop publishes the original bytes and
 * properties, plus the reason, to warren.dead with a publisher confirm, and
 * acks the original only once the copy is confirmed. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "worker.h"

/* The original headers plus x-warren-reason, packed into sb. Headers that
 * cannot be read are left out: the reason says why. */
static void pack_headers(const broker_message *msg, const char *reason, msgpack_sbuffer *sb)
{
	msgpack_packer pk;
	msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
	msgpack_zone zone;
	msgpack_zone_init(&zone, 1024);
	msgpack_object map = {.type = MSGPACK_OBJECT_NIL};
	schema_limits lim;
	schema_limits_default(&lim);
	if (msg->headers && !msg->headers_invalid &&
	    schema_unpack(msg->headers, msg->headers_len, &lim, "headers", &zone, &map, NULL) != 0)
		map.type = MSGPACK_OBJECT_NIL;
	uint32_t keep = 0;
	if (map.type == MSGPACK_OBJECT_MAP)
		for (uint32_t i = 0; i < map.via.map.size; i++) {
			const msgpack_object *k = &map.via.map.ptr[i].key;
			if (!(k->type == MSGPACK_OBJECT_STR &&
			      k->via.str.size == strlen(LOOP_REASON_HEADER) &&
			      memcmp(k->via.str.ptr, LOOP_REASON_HEADER, k->via.str.size) == 0))
				keep++;
		}
	msgpack_pack_map(&pk, keep + 1);
	for (uint32_t i = 0; map.type == MSGPACK_OBJECT_MAP && i < map.via.map.size; i++) {
		const msgpack_object_kv *kv = &map.via.map.ptr[i];
		if (kv->key.type == MSGPACK_OBJECT_STR &&
		    kv->key.via.str.size == strlen(LOOP_REASON_HEADER) &&
		    memcmp(kv->key.via.str.ptr, LOOP_REASON_HEADER, kv->key.via.str.size) == 0)
			continue;
		msgpack_pack_object(&pk, kv->key);
		msgpack_pack_object(&pk, kv->val);
	}
	size_t rlen = strlen(reason);
	msgpack_pack_str(&pk, strlen(LOOP_REASON_HEADER));
	msgpack_pack_str_body(&pk, LOOP_REASON_HEADER, strlen(LOOP_REASON_HEADER));
	msgpack_pack_str(&pk, rlen);
	msgpack_pack_str_body(&pk, reason, rlen);
	msgpack_zone_destroy(&zone);
}

/* The task id of a message we could not decode: its `id` header if the
 * headers unpack, else its correlation_id. Copied into buf; NULL if none. */
static const char *guess_task_id(const broker_message *msg, char *buf, size_t cap)
{
	if (msg->headers && !msg->headers_invalid) {
		msgpack_zone zone;
		msgpack_zone_init(&zone, 1024);
		msgpack_object map;
		schema_limits lim;
		schema_limits_default(&lim);
		const msgpack_object *id = NULL;
		if (schema_unpack(msg->headers, msg->headers_len, &lim, "headers", &zone, &map,
				  NULL) == 0)
			id = schema_map_get(&map, "id");
		bool found = id && id->type == MSGPACK_OBJECT_STR && id->via.str.size > 0 &&
			     id->via.str.size < cap;
		if (found) {
			memcpy(buf, id->via.str.ptr, id->via.str.size);
			buf[id->via.str.size] = '\0';
		}
		msgpack_zone_destroy(&zone);
		if (found)
			return buf;
	}
	if (msg->correlation_id && *msg->correlation_id) {
		snprintf(buf, cap, "%s", msg->correlation_id);
		return buf;
	}
	return NULL;
}

static void store_failure(loop *l, const broker_message *msg, const schema_task_msg *tm,
			  const char *exc_type, const char *exc_module, const char *message)
{
	char idbuf[256];
	const char *id = tm ? tm->id : guess_task_id(msg, idbuf, sizeof idbuf);
	if (!id || (tm && tm->ignore_result))
		return;
	schema_result r;
	schema_result_init(&r);
	if (schema_result_set_exception(&r, SCHEMA_STATE_FAILURE, exc_type, exc_module, message,
					NULL) == 0)
		loop_store(l, id, tm, msg, &r);
	schema_result_release(&r);
}

static int publish_copy(loop *l, const broker_message *msg, const char *reason, uint64_t cookie,
			warren_error *err)
{
	msgpack_sbuffer hb;
	msgpack_sbuffer_init(&hb);
	pack_headers(msg, reason, &hb);
	broker_props p = {
		.content_type = msg->content_type,
		.content_encoding = msg->content_encoding,
		.correlation_id = msg->correlation_id,
		.reply_to = msg->reply_to,
		.message_id = msg->message_id,
		.delivery_mode = 2,
		.priority = msg->priority,
		.headers = hb.data,
		.headers_len = hb.size,
	};
	int rc = broker_publish(l->conn, LOOP_DEAD_LETTER, msg->routing_key ? msg->routing_key : "",
				&p, msg->body, msg->body_len, cookie, err);
	msgpack_sbuffer_destroy(&hb);
	return rc;
}

void loop_dead_letter(loop *l, broker_message *msg, const schema_task_msg *tm,
		      const char *exc_type, const char *exc_module, const char *message)
{
	char reason[512];
	snprintf(reason, sizeof reason, "%s: %s", exc_type, message);
	log_fields f = {tm ? tm->id : msg->correlation_id, tm ? tm->task : NULL, "REJECTED", -1};
	log_at(CONFIG_LOG_ERROR, &f, "Rejected delivery %llu from '%s' into %s: %s",
	       (unsigned long long)msg->delivery_tag, loop_queue_of(l, msg), LOOP_DEAD_LETTER,
	       reason);
	store_failure(l, msg, tm, exc_type, exc_module, message);
	metrics_dead_lettered(l->metrics);
	if (tm && strcmp(exc_type, "NotRegistered") != 0)
		events_task_rejected(l, tm, false); /* consume.c sent NotRegistered's task-failed */
	loop_after *a = calloc(1, sizeof *a);
	warren_error err = {0};
	if (a) {
		a->cookie = ++l->next_cookie;
		a->kind = LOOP_AFTER_DEADLETTER;
		a->msg = msg;
		schema_result_init(&a->result);
		loop_after_add(l, a);
		if (publish_copy(l, msg, reason, a->cookie, &err) == 0)
			return; /* acked when confirmed (results.c) */
		loop_after_take(l, a->cookie);
		free(a);
	}
	log_at(CONFIG_LOG_ERROR, &f, "dead-letter copy failed (%s): message dropped",
	       err.msg[0] ? err.msg : "out of memory");
	loop_reject(l, msg);
	broker_message_free(msg);
}
