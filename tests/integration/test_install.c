/* tests/integration/test_install.c - `make install` into a temporary prefix,
 * then use what it installed as a user would: the binaries' --help, the unit
 * files and man pages in their places, pkg-config, and a small C program
 * built and linked against the installed headers and library.
 *
 * The install reuses the test's own build tree (BUILD=WARREN_BUILD_DIR) and
 * `make -o all` so nothing is rebuilt: `all` counts as up to date and the
 * install recipe copies what is there. The parent make's jobserver
 * variables are dropped so a `make test` run does not lend its jobs. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "support.h"

static char prefix[128];

static void install_fini(void)
{
	if (!prefix[0] || getenv("WARREN_TEST_KEEP_LOGS"))
		return;
	char cmd[256], out[64];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", prefix);
	support_run(cmd, out, sizeof out);
}

TestSuite(integration_install, .fini = install_fini, .timeout = 120);

static char out[1 << 16];

/* Runs cmd (stderr too), asserting exit status 0; returns its output. */
static const char *run_ok(const char *cmd)
{
	char full[4096];
	snprintf(full, sizeof full, "%s 2>&1", cmd);
	int rc = support_run(full, out, sizeof out);
	cr_assert_eq(rc, 0, "%s: exit %d:\n%s", cmd, rc, out);
	return out;
}

static void assert_file(const char *rel)
{
	char path[512];
	snprintf(path, sizeof path, "%s/%s", prefix, rel);
	cr_assert_eq(access(path, R_OK), 0, "not installed: %s", path);
}

static const char program[] =
	"#include <stdio.h>\n"
	"#include <string.h>\n"
	"#include <warren/warren.h>\n"
	"int main(void)\n"
	"{\n"
	"\twarren_error err = {0};\n"
	"\twarren_error_set(&err, WARREN_EINVAL, \"queue '%s': %s\", \"celery\", \"no\");\n"
	"\tprintf(\"%s|%s|%s\\n\", err.msg, warren_strerror(err.code),\n"
	"\t       warren_state_name(WARREN_STATE_SUCCESS));\n"
	"\treturn err.code == WARREN_EINVAL ? 0 : 1;\n"
	"}\n";

Test(integration_install, make_install_into_a_prefix_is_usable)
{
	snprintf(prefix, sizeof prefix, "/tmp/warren-test-install.XXXXXX");
	cr_assert_not_null(mkdtemp(prefix));
	char cmd[2048];
	snprintf(cmd, sizeof cmd,
		 "cd '%s' && env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL make --no-print-directory "
		 "-o all install PREFIX='%s' BUILD='%s'",
		 WARREN_SOURCE_DIR, prefix, WARREN_BUILD_DIR);
	run_ok(cmd);

	snprintf(cmd, sizeof cmd, "'%s/bin/warren-worker' --help", prefix);
	cr_expect(strstr(run_ok(cmd), "usage: warren-worker"), "%s", out);
	snprintf(cmd, sizeof cmd, "'%s/bin/warren' --help", prefix);
	cr_expect(strstr(run_ok(cmd), "usage: warren "), "%s", out);

	assert_file("include/warren/warren.h");
	assert_file("lib/libwarren.so.0");
	assert_file("lib/warren/plugins/math.so");
	assert_file("share/man/man1/warren.1");
	assert_file("share/man/man1/warren-worker.1");
	assert_file("lib/systemd/system/warren-worker@.service");
	/* The units run the installed binary, not /usr/local's. */
	snprintf(cmd, sizeof cmd, "grep '^ExecStart=' '%s/lib/systemd/system/warren-worker.service'",
		 prefix);
	char want[256];
	snprintf(want, sizeof want, "ExecStart=%s/bin/warren-worker ", prefix);
	cr_expect(strstr(run_ok(cmd), want), "%s", out);

	snprintf(cmd, sizeof cmd, "PKG_CONFIG_PATH='%s/lib/pkgconfig' pkg-config --cflags --libs warren",
		 prefix);
	char flags[1024];
	snprintf(flags, sizeof flags, "%s", run_ok(cmd));
	flags[strcspn(flags, "\n")] = '\0';
	char inc[256], lib[256];
	snprintf(inc, sizeof inc, "-I%s/include", prefix);
	snprintf(lib, sizeof lib, "-L%s/lib", prefix);
	cr_expect(strstr(flags, inc) && strstr(flags, lib) && strstr(flags, "-lwarren"),
		  "pkg-config says: %s", flags);

	char src[256];
	snprintf(src, sizeof src, "%s/hello.c", prefix);
	FILE *f = fopen(src, "w");
	cr_assert_not_null(f);
	fputs(program, f);
	fclose(f);
	/* Under make asan the installed library carries the sanitizer runtime,
	 * so the program that links it must be built with it too. */
#if defined(__SANITIZE_ADDRESS__)
	const char *san = " -fsanitize=address,undefined";
#else
	const char *san = "";
#endif
	snprintf(cmd, sizeof cmd, "cc -std=c11 -Wall -Werror%s -o '%s/hello' '%s' %s", san, prefix, src,
		 flags);
	run_ok(cmd);
	snprintf(cmd, sizeof cmd, "LD_LIBRARY_PATH='%s/lib' '%s/hello'", prefix, prefix);
	cr_expect(strstr(run_ok(cmd), "queue 'celery': no|"), "%s", out);
	cr_expect(strstr(out, "|SUCCESS"), "%s", out);
	/* Linked against the installed shared library, not a static copy. */
	snprintf(cmd, sizeof cmd, "LD_LIBRARY_PATH='%s/lib' ldd '%s/hello'", prefix, prefix);
	cr_expect(strstr(run_ok(cmd), prefix), "ldd: %s", out);
}
