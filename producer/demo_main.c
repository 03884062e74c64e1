/* producer/demo_main.c - warren-demo: walks through the foundation a newcomer
 * can see working before the broker, producer and worker exist: the YAML
 * config, the task-argument schema check, and a Celery protocol v2 message
 * encoded, written out for real Celery to read (scripts/demo does that), and
 * decoded back under the hard limits.
 *
 *   warren-demo [--config FILE] [--out DIR]
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "config/config.h"
#include "schemas/schemas.h"

#define DEFAULT_CONFIG "config/examples/warren.yaml"

static void usage(FILE *out)
{
	fprintf(out, "usage: warren-demo [--config FILE] [--out DIR]\n"
		     "\n"
		     "Shows warren's config loader, argument schemas and Celery wire format.\n"
		     "  --config FILE  the YAML config to load (default %s)\n"
		     "  --out DIR      also write the encoded message there (headers.msgpack,\n"
		     "                 body.msgpack) for Celery's own code to read\n",
		     DEFAULT_CONFIG);
}

static void section(const char *title)
{
	printf("\n== %s\n", title);
}

static void print_hex(const char *label, const char *data, size_t len)
{
	printf("%s (%zu bytes): ", label, len);
	for (size_t i = 0; i < len; i++)
		printf("%02x", (unsigned char)data[i]);
	printf("\n");
}

static int write_file(const char *dir, const char *name, const char *data, size_t len)
{
	char path[4096];
	snprintf(path, sizeof path, "%s/%s", dir, name);
	FILE *f = fopen(path, "wb");
	if (!f) {
		fprintf(stderr, "warren-demo: open '%s': %s\n", path, strerror(errno));
		return -1;
	}
	size_t n = fwrite(data, 1, len, f);
	int rc = fclose(f);
	if (n != len || rc != 0) {
		fprintf(stderr, "warren-demo: write '%s': %s\n", path, strerror(errno));
		return -1;
	}
	return 0;
}

/* Shows a config mistake the way a user meets it: file:line:column and a hint. */
static void show_config_error(void)
{
	static const char bad[] = "worker:\n  concurency: 4\n";
	warren_config *cfg = NULL;
	warren_error err = {0};
	if (config_load_string(bad, sizeof bad - 1, "typo.yaml", &cfg, &err) == 0) {
		config_free(cfg);
		return;
	}
	printf("a typo in a config is caught:\n  %s", bad);
	printf("  -> %s\n", err.msg);
}

/* Packs [a, b] where b is either an int or a string, for the schema check. */
static void pack_pair(msgpack_sbuffer *buf, long long a, const char *b_str, long long b)
{
	msgpack_packer pk;
	msgpack_packer_init(&pk, buf, msgpack_sbuffer_write);
	msgpack_pack_array(&pk, 2);
	msgpack_pack_long_long(&pk, a);
	if (b_str)
		msgpack_pack_str_with_body(&pk, b_str, strlen(b_str));
	else
		msgpack_pack_long_long(&pk, b);
}

static void check_args(const config_task *task, const char *b_str, long long b)
{
	msgpack_sbuffer buf;
	msgpack_sbuffer_init(&buf);
	pack_pair(&buf, 2, b_str, b);
	msgpack_zone zone;
	msgpack_zone_init(&zone, 1024);
	msgpack_object args, kwargs = {.type = MSGPACK_OBJECT_MAP};
	msgpack_unpack(buf.data, buf.size, NULL, &zone, &args);
	warren_error err = {0};
	char preview[128];
	schema_repr(&args, true, preview, sizeof preview);
	if (schema_args_validate(task->name, &task->schema, &args, &kwargs, &err) == 0)
		printf("  %s%s -> ok\n", task->name, preview);
	else
		printf("  %s%s -> %s\n", task->name, preview, err.msg);
	msgpack_zone_destroy(&zone);
	msgpack_sbuffer_destroy(&buf);
}

static int show_message(const warren_config *cfg, const char *out_dir)
{
	int rc = -1;
	warren_error err = {0};
	schema_task_msg *msg = NULL, *back = NULL;
	msgpack_sbuffer headers, body, args;
	msgpack_sbuffer_init(&headers);
	msgpack_sbuffer_init(&body);
	msgpack_sbuffer_init(&args);

	if (schema_task_msg_new("math.add", &msg, &err) != 0)
		goto out;
	pack_pair(&args, 2, NULL, 3);
	if (schema_task_msg_set_args(msg, args.data, args.size, &err) != 0)
		goto out;
	schema_task_props props;
	if (schema_task_encode(msg, &headers, &body, &props, &err) != 0)
		goto out;

	const config_route *route = config_route_task(cfg, "math.add");
	printf("math.add(2, 3) routes to queue '%s'\n", route->queue ? route->queue : "(exchange only)");
	printf("task id %s, content_type %s\n", msg->id, props.content_type);
	print_hex("headers as a msgpack map", headers.data, headers.size);
	print_hex("body [args, kwargs, embed]", body.data, body.size);

	schema_limits lim;
	schema_limits_default(&lim);
	if (schema_task_decode(&props, headers.data, headers.size, body.data, body.size, &lim, &back,
			       &err) != 0)
		goto out;
	char repr[256];
	schema_repr(&back->args, true, repr, sizeof repr);
	printf("decoded back: task %s, id %s, args %s, retries %lld\n", back->task, back->id, repr,
	       (long long)back->retries);

	if (out_dir && (write_file(out_dir, "headers.msgpack", headers.data, headers.size) != 0 ||
			write_file(out_dir, "body.msgpack", body.data, body.size) != 0))
		goto out_quiet;
	rc = 0;
	goto out_quiet;
out:
	fprintf(stderr, "warren-demo: %s\n", err.msg);
out_quiet:
	schema_task_msg_free(back);
	schema_task_msg_free(msg);
	msgpack_sbuffer_destroy(&args);
	msgpack_sbuffer_destroy(&body);
	msgpack_sbuffer_destroy(&headers);
	return rc;
}

/* A hostile body: 100 nested arrays. The decoder refuses it by name and path. */
static void show_limits(void)
{
	char deep[104];
	deep[0] = (char)0x93; /* [args, kwargs, embed] with args nested 100 deep */
	memset(deep + 1, 0x91, 100);
	deep[101] = (char)0xc0;
	deep[102] = (char)0x80;
	deep[103] = (char)0xc0;
	schema_limits lim;
	schema_limits_default(&lim);
	msgpack_zone zone;
	msgpack_zone_init(&zone, 1024);
	msgpack_object obj;
	warren_error err = {0};
	if (schema_unpack(deep, sizeof deep, &lim, "body", &zone, &obj, &err) != 0)
		printf("a body nested 100 deep is refused:\n  -> %s\n", err.msg);
	msgpack_zone_destroy(&zone);
}

int main(int argc, char **argv)
{
	const char *config_path = DEFAULT_CONFIG, *out_dir = NULL;
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
			usage(stdout);
			return 0;
		} else if (strcmp(argv[i], "--config") == 0 && i + 1 < argc) {
			config_path = argv[++i];
		} else if (strcmp(argv[i], "--out") == 0 && i + 1 < argc) {
			out_dir = argv[++i];
		} else {
			fprintf(stderr, "warren-demo: unknown argument '%s'\n", argv[i]);
			usage(stderr);
			return 64;
		}
	}

	warren_config *cfg = NULL;
	warren_error err = {0};
	if (config_load(config_path, &cfg, &err) != 0) {
		fprintf(stderr, "warren-demo: %s\n", err.msg);
		return 78;
	}
	section("config");
	printf("loaded %s:\n", config_path);
	config_describe(cfg, stdout);
	show_config_error();

	section("argument schemas");
	const config_task *add = config_task_find(cfg, "math.add");
	if (add && add->has_schema) {
		check_args(add, NULL, 3);
		check_args(add, "x", 0);
	} else {
		printf("  (the config declares no schema for math.add)\n");
	}

	section("a Celery protocol v2 task message");
	int rc = show_message(cfg, out_dir);
	section("hard limits on untrusted input");
	show_limits();
	config_free(cfg);
	fflush(stdout);
	return rc == 0 ? 0 : 1;
}
