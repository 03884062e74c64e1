/* tests/interop/test_kombu_decode.c - reverse interop: task messages warren
 * encodes, read back by Celery 5.2's own code (kombu's msgpack loader, py-amqp's
 * field tables, celery.worker.request.Request, Signature.from_dict) through
 * tests/interop/kombu_check.py. Needs /usr/bin/python3 with python3-celery. */
#include <criterion/criterion.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "schemas/schemas.h"

#define CHECK_SCRIPT WARREN_SOURCE_DIR "/tests/interop/kombu_check.py"

static void write_file(const char *dir, const char *name, const char *ext,
		       const void *data, size_t len)
{
	char path[512];
	snprintf(path, sizeof path, "%s/%s.%s", dir, name, ext);
	FILE *f = fopen(path, "wb");
	cr_assert_not_null(f, "%s", path);
	cr_assert_eq(fwrite(data, 1, len, f), len);
	fclose(f);
}

/* Encodes msg and writes <name>.headers, .body and .json (properties and
 * what the checker must read back) to dir. */
static void write_message(const char *dir, const char *name, const schema_task_msg *m,
			  json_t *expect_args, json_t *expect_kwargs, json_t *timelimit)
{
	msgpack_sbuffer headers, body;
	msgpack_sbuffer_init(&headers);
	msgpack_sbuffer_init(&body);
	schema_task_props props;
	warren_error err = { 0 };
	cr_assert_eq(schema_task_encode(m, &headers, &body, &props, &err), 0, "%s", err.msg);
	write_file(dir, name, "headers", headers.data, headers.size);
	write_file(dir, name, "body", body.data, body.size);
	json_t *meta = json_pack("{s:{s:s,s:s,s:s,s:s,s:i,s:i},s:{s:s,s:s,s:o,s:o,s:o,s:i}}",
				 "properties", "content_type", props.content_type,
				 "content_encoding", props.content_encoding,
				 "correlation_id", props.correlation_id, "reply_to", props.reply_to,
				 "delivery_mode", props.delivery_mode, "priority", props.priority,
				 "expect", "id", m->id, "task", m->task, "args", expect_args,
				 "kwargs", expect_kwargs, "timelimit", timelimit,
				 "n_chain", (int)m->n_chain);
	cr_assert_not_null(meta);
	char *text = json_dumps(meta, 0);
	write_file(dir, name, "json", text, strlen(text));
	free(text);
	json_decref(meta);
	msgpack_sbuffer_destroy(&headers);
	msgpack_sbuffer_destroy(&body);
}

static schema_task_msg *new_msg(const char *task, const char *args, size_t args_len,
				const char *kwargs, size_t kwargs_len)
{
	schema_task_msg *m = NULL;
	warren_error err = { 0 };
	cr_assert_eq(schema_task_msg_new(task, &m, &err), 0, "%s", err.msg);
	cr_assert_eq(schema_task_msg_set_args(m, args, args_len, &err), 0, "%s", err.msg);
	if (kwargs)
		cr_assert_eq(schema_task_msg_set_kwargs(m, kwargs, kwargs_len, &err), 0, "%s", err.msg);
	return m;
}

/* Runs the checker and returns its whole output (caller frees). */
static char *run_checker(const char *dir)
{
	char cmd[1024];
	snprintf(cmd, sizeof cmd, "/usr/bin/python3 %s %s 2>&1", CHECK_SCRIPT, dir);
	FILE *p = popen(cmd, "r");
	cr_assert_not_null(p);
	size_t cap = 1 << 16, len = 0;
	char *out = calloc(1, cap);
	cr_assert_not_null(out);
	size_t n;
	while ((n = fread(out + len, 1, cap - 1 - len, p)) > 0)
		len += n;
	int status = pclose(p);
	cr_assert_eq(status, 0, "checker exited with %d: %s", status, out);
	return out;
}

static void remove_dir(const char *dir, const char *const *names, size_t n)
{
	static const char *const exts[] = { "headers", "body", "json" };
	for (size_t i = 0; i < n; i++)
		for (size_t e = 0; e < 3; e++) {
			char path[512];
			snprintf(path, sizeof path, "%s/%s.%s", dir, names[i], exts[e]);
			unlink(path);
		}
	rmdir(dir);
}

Test(interop_kombu, celery_reads_what_warren_encodes)
{
	char dir[] = "/tmp/warren-kombu-XXXXXX";
	cr_assert_not_null(mkdtemp(dir));

	/* plain add(2, 3) with both time limits, one fractional */
	schema_task_msg *plain = new_msg("tasks.add", "\x92\x02\x03", 3, NULL, 0);
	plain->has_time_limit = true;
	plain->time_limit = 30;
	plain->has_soft_time_limit = true;
	plain->soft_time_limit = 2.5;
	write_message(dir, "plain", plain, json_pack("[i,i]", 2, 3), json_object(),
		      json_pack("[i,f]", 30, 2.5));

	/* kwargs of every JSON-able type, nested, unicode, and 2**53 + 1, which
	 * a detour through a double would change */
	const char kw[] = "\x84\xa1n\x93\x01\x92\xcb\x3f\xf8\x00\x00\x00\x00\x00\x00\xc0\x81\xa1k\xc3"
			  "\xa1u\xa6h\xc3\xa9\xe2\x98\x83"
			  "\xa1" "b\xcf\x00\x20\x00\x00\x00\x00\x00\x01"
			  "\xa1" "f\xc2";
	schema_task_msg *rich = new_msg("tasks.echo", "\x91\xa1x", 3, kw, sizeof kw - 1);
	json_t *rich_kwargs = json_loads("{\"n\": [1, [1.5, null], {\"k\": true}], \"u\": \"h\\u00e9\\u2603\","
					 " \"b\": 9007199254740993, \"f\": false}", 0, NULL);
	cr_assert_not_null(rich_kwargs);
	write_message(dir, "rich", rich, json_pack("[s]", "x"), rich_kwargs, json_pack("[n,n]"));

	/* canvas: link, link_error, a chain whose next step is a group, a chord body */
	schema_task_msg *canvas = new_msg("tasks.add", "\x92\x01\x02", 3, NULL, 0);
	schema_signature mul[2] = { { .task = "tasks.mul" }, { .task = "tasks.mul", .immutable = true } };
	schema_signature steps[2] = {
		{ .task = "tasks.tsum" },
		{ .task = "celery.group", .subtask_type = "group", .tasks = mul, .n_tasks = 2 },
	};
	schema_signature on_err = { .task = "tasks.on_err" };
	schema_signature body = { .task = "tasks.tsum" };
	canvas->callbacks = &mul[0];
	canvas->n_callbacks = 1;
	canvas->errbacks = &on_err;
	canvas->n_errbacks = 1;
	canvas->chain = steps;
	canvas->n_chain = 2;
	canvas->chord = &body;
	write_message(dir, "canvas", canvas, json_pack("[i,i]", 1, 2), json_object(), json_pack("[n,n]"));

	char *out = run_checker(dir);
	cr_expect(strstr(out, "OK plain\n") != NULL, "%s", out);
	cr_expect(strstr(out, "OK canvas\n") != NULL, "%s", out);
	cr_expect(strstr(out, "OK rich\n") != NULL, "%s", out);
	cr_expect(strstr(out, "FAIL") == NULL, "%s", out);
	free(out);

	static const char *const names[] = { "plain", "rich", "canvas" };
	remove_dir(dir, names, 3);
	schema_task_msg_free(plain);
	schema_task_msg_free(rich);
	schema_task_msg_free(canvas);
}
