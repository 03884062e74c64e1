/* tests/unit/test_plugin_loader.c - loading plugins into the registry: the
 * real example plugins, every refusal with its exact message, rollback of a
 * failed plugin's tasks, lookups over thousands of names, freeing.
 *
 * The bad plugins under tests/plugins/ are compiled here with $CC (or cc)
 * into a private temporary directory, so the Makefile needs no rule for
 * them and each can be built with the -D that selects its variant. */
#include <criterion/criterion.h>
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "worker/worker.h"

#define PLUGIN_DIR WARREN_BUILD_DIR "/plugins/"

static char tmpdir[] = "/tmp/warren-plugin-test-XXXXXX";
static registry *reg;

static void setup(void)
{
	cr_assert_not_null(mkdtemp(tmpdir), "mkdtemp");
	warren_error err = {0};
	cr_assert_eq(registry_new(&reg, &err), 0, "%s", err.msg);
}

static void teardown(void)
{
	registry_free(reg);
	char cmd[256];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
	if (system(cmd) != 0)
		fprintf(stderr, "could not remove %s\n", tmpdir); /* cr_log_warn would fail the run */
}

TestSuite(plugin_loader, .init = setup, .fini = teardown);

/* Compiles tests/plugins/<name>.c with extra flags into tmpdir/<out>.so and
 * returns the path (static buffer, one per call site is enough here). */
static const char *build_plugin(const char *name, const char *flags, const char *out)
{
	static char path[4][512];
	static int next;
	char *so = path[next++ % 4];
	snprintf(so, sizeof path[0], "%s/%s.so", tmpdir, out);
	const char *cc = getenv("CC");
	char cmd[2048];
	snprintf(cmd, sizeof cmd,
		 "%s -std=c11 -shared -fPIC -fvisibility=hidden -Wall -Wextra -Werror %s "
		 "-I'%s/include' $(pkg-config --cflags msgpack-c 2>/dev/null || "
		 "pkg-config --cflags msgpack 2>/dev/null) -o '%s' '%s/tests/plugins/%s.c'",
		 cc && *cc ? cc : "cc", flags, WARREN_SOURCE_DIR, so, WARREN_SOURCE_DIR, name);
	cr_assert_eq(system(cmd), 0, "could not build the test plugin: %s", cmd);
	return so;
}

static void load_ok(const char *path)
{
	warren_error err = {0};
	cr_assert_eq(plugin_load(reg, path, &err), 0, "%s", err.msg);
}

/* Loads path, expects it refused with exactly msg and the registry as before. */
static void load_refused(const char *path, const char *msg)
{
	size_t before = registry_count(reg);
	warren_error err = {0};
	int rc = plugin_load(reg, path, &err);
	cr_assert_eq(rc, err.code, "return code and err.code differ");
	cr_assert_lt(rc, 0, "'%s' was loaded", path);
	cr_assert_str_eq(err.msg, msg);
	cr_assert_eq(registry_count(reg), before, "a refused plugin left tasks behind");
}

static int noop_handler(warren_task *t)
{
	(void)t;
	return 0;
}

static const registry_entry *lookup(const char *name)
{
	return registry_lookup(reg, name, strlen(name));
}

Test(plugin_loader, loads_example_plugins_and_finds_their_tasks)
{
	load_ok(PLUGIN_DIR "math.so");
	load_ok(PLUGIN_DIR "text.so");
	load_ok(PLUGIN_DIR "test.so");
	static const char *const names[] = {
		"math.add", "math.mul", "math.sum", "text.upper", "text.wordcount",
		"test.echo", "test.noop", "test.sleep", "test.fail", "test.crash", "test.flaky",
		"test.crash_requeued",
	};
	cr_assert_eq(registry_count(reg), sizeof names / sizeof names[0]);
	for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
		const registry_entry *e = lookup(names[i]);
		cr_assert_not_null(e, "%s not registered", names[i]);
		cr_assert_str_eq(e->name, names[i]);
		cr_assert_eq(registry_at(reg, i), e, "registration order");
		cr_assert_not_null(e->fn);
	}
	cr_assert_str_eq(lookup("math.add")->plugin_path, PLUGIN_DIR "math.so");
	cr_assert_str_eq(lookup("test.flaky")->plugin_path, PLUGIN_DIR "test.so");
	cr_assert_null(registry_at(reg, registry_count(reg)));
}

Test(plugin_loader, keeps_plugin_options)
{
	load_ok(PLUGIN_DIR "math.so");
	load_ok(PLUGIN_DIR "test.so");
	const warren_task_schema *s = lookup("math.add")->opts.schema;
	cr_assert_not_null(s);
	cr_assert_eq(s->n_params, 2);
	cr_assert_str_eq(s->params[0].name, "a");
	cr_assert_eq(s->params[1].type, WARREN_TYPE_FLOAT);
	const warren_task_schema *flaky = lookup("test.flaky")->opts.schema;
	cr_assert_eq(flaky->n_params, 3);
	cr_assert_str_eq(flaky->params[1].name, "n");
	cr_assert_eq(flaky->params[1].type, WARREN_TYPE_INT);
	cr_assert_eq(lookup("test.noop")->opts.acks_late, WARREN_UNSET);
	/* warren_register_ext's options, and every other task's left unset */
	cr_assert_eq(lookup("test.crash_requeued")->ext.reject_on_worker_lost, WARREN_ON);
	cr_assert_eq(lookup("test.crash")->ext.reject_on_worker_lost, WARREN_UNSET);
	cr_assert_eq(lookup("math.add")->ext.reject_on_worker_lost, WARREN_UNSET);
}

/* ---- warren_register_ext: options past ABI 1's struct ----------------------- */

static const registry_entry *load_ext_case(int n)
{
	char flags[32], out[32];
	snprintf(flags, sizeof flags, "-DCASE=%d", n);
	snprintf(out, sizeof out, "ext%d", n);
	load_ok(build_plugin("ext_options", flags, out));
	const registry_entry *e = lookup("ext.task");
	cr_assert_not_null(e);
	cr_assert_eq(e->opts.max_retries, 5, "the ABI-1 options came along");
	return e;
}

Test(plugin_loader, register_ext_keeps_reject_on_worker_lost)
{
	cr_assert_eq(load_ext_case(0)->ext.reject_on_worker_lost, WARREN_ON);
}

Test(plugin_loader, register_ext_keeps_an_explicit_off)
{
	cr_assert_eq(load_ext_case(7)->ext.reject_on_worker_lost, WARREN_OFF);
}

Test(plugin_loader, register_ext_without_ext_is_register)
{
	cr_assert_eq(load_ext_case(1)->ext.reject_on_worker_lost, WARREN_UNSET);
}

Test(plugin_loader, register_ext_from_an_older_header_leaves_newer_options_unset)
{
	cr_assert_eq(load_ext_case(2)->ext.reject_on_worker_lost, WARREN_UNSET);
}

Test(plugin_loader, register_ext_from_a_newer_header_loads_when_it_sets_nothing_new)
{
	const registry_entry *e = load_ext_case(3);
	cr_assert_eq(e->ext.reject_on_worker_lost, WARREN_ON);
	cr_assert_eq(e->ext.size, sizeof(warren_task_options_ext), "kept as this worker's size");
}

Test(plugin_loader, register_ext_refuses_a_size_it_cannot_read)
{
	const char *so = build_plugin("ext_options", "-DCASE=4", "ext4");
	char msg[512];
	snprintf(msg, sizeof msg,
		 "plugin '%s': task 'ext.task': warren_task_options_ext.size is 0; set it to "
		 "sizeof(warren_task_options_ext)", so);
	load_refused(so, msg);
}

Test(plugin_loader, register_ext_refuses_a_bad_switch)
{
	const char *so = build_plugin("ext_options", "-DCASE=5", "ext5");
	char msg[512];
	snprintf(msg, sizeof msg,
		 "plugin '%s': task 'ext.task': reject_on_worker_lost is not WARREN_UNSET, "
		 "WARREN_ON or WARREN_OFF", so);
	load_refused(so, msg);
}

Test(plugin_loader, register_ext_refuses_an_option_it_does_not_know)
{
	const char *so = build_plugin("ext_options", "-DCASE=6", "ext6");
	char msg[512];
	snprintf(msg, sizeof msg,
		 "plugin '%s': task 'ext.task': warren_task_options_ext sets an option this "
		 "worker does not know (byte %zu of %zu); it needs a newer warren-worker",
		 so, sizeof(warren_task_options_ext) + 8 + 6, sizeof(warren_task_options_ext) + 16);
	load_refused(so, msg);
}

/* A plugin built with warren_register_ext, run by a worker whose host table
 * ends before register_task_ext (one built before it was appended): the
 * inline wrapper says so through plugin_error instead of calling past the
 * table's end. */
static char old_host_msg[256];

static void capture_error(warren_registry *r, const char *fmt, va_list ap)
{
	(void)r;
	vsnprintf(old_host_msg, sizeof old_host_msg, fmt, ap);
}

Test(plugin_loader, register_ext_on_an_older_worker_fails_with_a_message)
{
	warren_host old = task_host;
	old.size = offsetof(warren_host, register_task_ext);
	old.register_task_ext = NULL;
	old.plugin_error = capture_error;
	warren_registry fake = {.host = &old};
	static const warren_task_options_ext ext = WARREN_TASK_OPTIONS_EXT_INIT;
	cr_assert_not(WARREN_HOST_HAS(&old, register_task_ext));
	cr_assert(WARREN_HOST_HAS(&task_host, register_task_ext));
	cr_assert_eq(warren_register_ext(&fake, "x.y", noop_handler, NULL, &ext), -1);
	cr_assert_str_eq(old_host_msg, "task 'x.y': warren_register_ext needs a newer "
				       "warren-worker (no register_task_ext in its host table)");
}

Test(plugin_loader, looks_up_names_that_are_not_nul_terminated)
{
	load_ok(PLUGIN_DIR "math.so");
	const char header[] = "math.addXYZ";
	const registry_entry *e = registry_lookup(reg, header, 8);
	cr_assert_not_null(e);
	cr_assert_str_eq(e->name, "math.add");
	cr_assert_null(registry_lookup(reg, header, 7), "prefix 'math.ad' matched");
	cr_assert_null(registry_lookup(reg, header, 9), "'math.addX' matched");
	cr_assert_null(lookup("math.div"));
	cr_assert_null(lookup(""));
}

Test(plugin_loader, a_bare_file_name_means_the_current_directory)
{
	cr_assert_eq(chdir(PLUGIN_DIR), 0);
	load_ok("math.so");
	cr_assert_str_eq(lookup("math.add")->plugin_path, "math.so");
	cr_assert_eq(chdir(tmpdir), 0); /* no math.so here: never searched for elsewhere */
	load_refused("text.so", "plugin 'text.so': cannot open: No such file or directory");
}

Test(plugin_loader, refuses_missing_file)
{
	char path[600];
	snprintf(path, sizeof path, "%s/nope.so", tmpdir);
	char msg[700];
	snprintf(msg, sizeof msg, "plugin '%s': cannot open: No such file or directory", path);
	load_refused(path, msg);
}

Test(plugin_loader, refuses_a_directory)
{
	char msg[700];
	snprintf(msg, sizeof msg, "plugin '%s': not a regular file", tmpdir);
	load_refused(tmpdir, msg);
}

Test(plugin_loader, refuses_a_file_that_is_not_a_shared_object)
{
	char path[600];
	snprintf(path, sizeof path, "%s/text.so", tmpdir);
	FILE *f = fopen(path, "w");
	cr_assert_not_null(f);
	for (int i = 0; i < 20; i++) /* long enough for dlopen to read a header */
		fputs("not an ELF file\n", f);
	fclose(f);
	/* The cause is dlopen's own text: ask dlopen for it. */
	cr_assert_null(dlopen(path, RTLD_NOW | RTLD_LOCAL));
	const char *why = dlerror();
	cr_assert_not_null(strstr(why, "invalid ELF header"), "dlerror: %s", why);
	char msg[1200];
	snprintf(msg, sizeof msg, "plugin '%s': not a loadable shared object: %s", path, why);
	load_refused(path, msg);
}

Test(plugin_loader, refuses_unresolved_symbols_at_load_time)
{
	const char *so = build_plugin("unresolved", "", "unresolved");
	cr_assert_null(dlopen(so, RTLD_NOW | RTLD_LOCAL));
	const char *why = dlerror();
	cr_assert_not_null(strstr(why, "warren_test_no_such_function"), "dlerror: %s", why);
	char msg[1200];
	snprintf(msg, sizeof msg, "plugin '%s': not a loadable shared object: %s", so, why);
	load_refused(so, msg);
}

Test(plugin_loader, refuses_missing_abi_symbol)
{
	const char *so = build_plugin("no_abi", "", "no_abi");
	char msg[700];
	snprintf(msg, sizeof msg,
		 "plugin '%s': no 'warren_plugin_abi' symbol: not a warren plugin", so);
	load_refused(so, msg);
}

Test(plugin_loader, refuses_missing_init_symbol)
{
	const char *so = build_plugin("no_init", "", "no_init");
	char msg[700];
	snprintf(msg, sizeof msg, "plugin '%s': no 'warren_plugin_init' symbol", so);
	load_refused(so, msg);
}

Test(plugin_loader, refuses_abi_mismatch)
{
	const char *so = build_plugin("bad_abi", "", "bad_abi");
	char msg[700];
	snprintf(msg, sizeof msg, "plugin '%s': plugin ABI %d, this worker speaks %d", so,
		 WARREN_PLUGIN_ABI + 1, WARREN_PLUGIN_ABI);
	load_refused(so, msg);
}

Test(plugin_loader, reports_init_failure_with_the_plugins_message)
{
	const char *so = build_plugin("init_fails", "", "init_fails");
	char msg[700];
	snprintf(msg, sizeof msg, "plugin '%s': init failed: cannot reach the license server", so);
	load_refused(so, msg);
	cr_assert_null(lookup("initfail.task"), "a failed plugin's task stayed registered");
}

Test(plugin_loader, reports_init_failure_without_a_message)
{
	const char *so = build_plugin("init_fails", "-DSILENT", "init_silent");
	char msg[700];
	snprintf(msg, sizeof msg, "plugin '%s': init failed (returned -3) without saying why", so);
	load_refused(so, msg);
}

Test(plugin_loader, refuses_duplicate_task_name_naming_both_plugins)
{
	load_ok(PLUGIN_DIR "math.so");
	const char *so = build_plugin("dup_name", "", "dup_name");
	char msg[700];
	snprintf(msg, sizeof msg,
		 "plugin '%s': task 'math.add' is already registered by plugin '%s'", so,
		 PLUGIN_DIR "math.so");
	load_refused(so, msg);
	cr_assert_null(lookup("dup.first"), "the refused plugin's first task stayed");
	const registry_entry *add = lookup("math.add");
	cr_assert_not_null(add);
	cr_assert_str_eq(add->plugin_path, PLUGIN_DIR "math.so", "math.add changed owner");
	cr_assert_not_null(lookup("math.sum"), "rollback removed an earlier plugin's task");
}

Test(plugin_loader, refuses_duplicate_even_if_the_plugin_ignores_it)
{
	load_ok(PLUGIN_DIR "math.so");
	const char *so = build_plugin("dup_name", "-DIGNORE", "dup_ignore");
	char msg[700];
	snprintf(msg, sizeof msg,
		 "plugin '%s': task 'math.add' is already registered by plugin '%s'", so,
		 PLUGIN_DIR "math.so");
	load_refused(so, msg);
}

Test(plugin_loader, refuses_the_same_plugin_twice)
{
	load_ok(PLUGIN_DIR "text.so");
	load_refused(PLUGIN_DIR "text.so",
		     "plugin '" PLUGIN_DIR "text.so': task 'text.upper' is already registered "
		     "by plugin '" PLUGIN_DIR "text.so'");
	cr_assert_not_null(lookup("text.wordcount"), "the first load's tasks went missing");
}

Test(plugin_loader, refuses_a_plugin_that_duplicates_a_builtin)
{
	warren_error err = {0};
	cr_assert_eq(registry_add(reg, "math.add", noop_handler, NULL, &err), 0, "%s",
		     err.msg);
	load_refused(PLUGIN_DIR "math.so", "plugin '" PLUGIN_DIR "math.so': task 'math.add' is "
					   "already registered by the worker");
}

static void refuses_option(int which, const char *why)
{
	char flag[32], out[32], msg[900];
	snprintf(flag, sizeof flag, "-DCASE=%d", which);
	snprintf(out, sizeof out, "bad_options_%d", which);
	const char *so = build_plugin("bad_options", flag, out);
	snprintf(msg, sizeof msg, "plugin '%s': %s", so, why);
	load_refused(so, msg);
}

Test(plugin_loader, refuses_bad_rate_limit)
{
	refuses_option(0, "task 'bad.options': rate limit '10/d': expected N/s, N/m, N/h or N");
}

Test(plugin_loader, refuses_soft_limit_longer_than_hard)
{
	refuses_option(1, "task 'bad.options': soft time limit 10 s is longer than the hard one 5 s");
}

Test(plugin_loader, refuses_negative_time_limit)
{
	refuses_option(2, "task 'bad.options': negative time limit");
}

Test(plugin_loader, refuses_schema_param_declared_twice)
{
	refuses_option(3, "task 'bad.options': param 'x' declared twice");
}

Test(plugin_loader, refuses_schema_param_without_name)
{
	refuses_option(4, "task 'bad.options': schema param 0 has no name");
}

Test(plugin_loader, refuses_malformed_default)
{
	refuses_option(5, "task 'bad.options': param 'x': default is not one msgpack object");
}

Test(plugin_loader, refuses_bad_switch)
{
	refuses_option(6, "task 'bad.options': a switch option is not WARREN_UNSET, WARREN_ON "
			  "or WARREN_OFF");
}

Test(plugin_loader, refuses_bad_max_retries)
{
	refuses_option(7, "task 'bad.options': bad max_retries -3");
}

Test(plugin_loader, refuses_missing_handler)
{
	refuses_option(8, "task 'bad.options': no handler function");
}

Test(plugin_loader, refuses_empty_task_name)
{
	refuses_option(9, "task name is empty");
}

Test(plugin_loader, loads_again_after_a_refusal)
{
	load_refused(PLUGIN_DIR "missing.so", "plugin '" PLUGIN_DIR "missing.so': cannot open: "
					      "No such file or directory");
	load_ok(PLUGIN_DIR "math.so");
	cr_assert_not_null(lookup("math.mul"));
}

/* Thousands of names: every one found, each the right entry (the handler
 * packs the name it runs under), and the table grew many times on the way. */
Test(plugin_loader, finds_each_of_thousands_of_tasks)
{
	enum { COUNT = 5000 };
	load_ok(PLUGIN_DIR "math.so");
	load_ok(build_plugin("many", "-DCOUNT=5000", "many"));
	cr_assert_eq(registry_count(reg), COUNT + 3);
	for (int i = 0; i < COUNT; i++) {
		char name[32];
		snprintf(name, sizeof name, "many.%d", i);
		const registry_entry *e = lookup(name);
		cr_assert_not_null(e, "%s not found", name);
		cr_assert_str_eq(e->name, name);
	}
	cr_assert_null(lookup("many.5000"));
	cr_assert_null(lookup("many."));
	cr_assert_not_null(lookup("math.add"));

	task_ctx ctx;
	task_ctx_init(&ctx);
	cr_assert_eq(task_run(&ctx, lookup("many.4321")), TASK_SUCCESS);
	size_t len;
	const char *bytes = task_result_bytes(&ctx, &len);
	cr_assert_eq(len, 1 + 9);
	cr_assert_eq(memcmp(bytes, "\xa9many.4321", len), 0);
	task_ctx_release(&ctx);
}

Test(plugin_loader, rolls_back_thousands_of_tasks_of_a_failed_plugin)
{
	load_ok(PLUGIN_DIR "math.so");
	load_ok(build_plugin("many", "-DCOUNT=10", "many10"));
	/* The same names again: the second load fails on its first task. */
	const char *again = build_plugin("many", "-DCOUNT=10", "many10again");
	char msg[900];
	snprintf(msg, sizeof msg, "plugin '%s': task 'many.0' is already registered by plugin "
				  "'%s/many10.so'", again, tmpdir);
	load_refused(again, msg);
	for (int i = 0; i < 10; i++) {
		char name[32];
		snprintf(name, sizeof name, "many.%d", i);
		cr_assert_not_null(lookup(name), "%s lost by the rollback", name);
	}
}

Test(plugin_loader, parses_rate_limits)
{
	static const struct {
		const char *text;
		double per_second;
	} ok[] = {
		{"10/s", 10}, {"600/m", 10}, {"3600/h", 1}, {"5", 5}, {"0", 0}, {"0.5/s", 0.5},
	};
	for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
		double r = -1;
		warren_error err = {0};
		cr_assert_eq(registry_parse_rate(ok[i].text, &r, &err), 0, "%s", err.msg);
		cr_assert_float_eq(r, ok[i].per_second, 1e-9, "%s", ok[i].text);
	}
	static const char *const bad[] = {"", "/s", "10/", "10/d", "-1/s", "ten", "10 /s", "nan"};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		double r = 0;
		warren_error err = {0};
		cr_assert_eq(registry_parse_rate(bad[i], &r, &err), WARREN_EINVAL, "'%s' accepted",
			     bad[i]);
	}
}

Test(plugin_loader, refuses_bad_builtin_registrations)
{
	warren_error err = {0};
	warren_task_options opts = {.soft_time_limit = 2, .time_limit = 1};
	cr_assert_eq(registry_add(reg, "x.y", noop_handler, &opts, &err), WARREN_EINVAL);
	cr_assert_str_eq(err.msg, "task 'x.y': soft time limit 2 s is longer than the hard one 1 s");
	warren_error_clear(&err);
	cr_assert_eq(registry_add(reg, NULL, noop_handler, NULL, &err), WARREN_EINVAL);
	cr_assert_str_eq(err.msg, "task name is empty");
	cr_assert_eq(registry_count(reg), 0);
}

Test(plugin_loader, host_table_states_its_abi_and_size)
{
	cr_assert_eq(task_host.abi, WARREN_PLUGIN_ABI);
	cr_assert_eq(task_host.size, sizeof(warren_host));
	/* Every entry is filled: a NULL would crash a plugin, not the test. */
	const char *p = (const char *)&task_host.register_task;
	const char *end = (const char *)&task_host + sizeof task_host;
	for (; p < end; p += sizeof(void (*)(void))) {
		void (*fn)(void);
		memcpy(&fn, p, sizeof fn);
		cr_assert_not_null(fn, "host table entry at offset %td is NULL",
				   p - (const char *)&task_host);
	}
}

Test(plugin_loader, frees_null_registry)
{
	registry_free(NULL); /* must not crash; the fixture's registry is freed by fini */
	cr_assert_not_null(reg);
}
