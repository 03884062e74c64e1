/* tests/integration/test_pipeline_cli.c - `warren pipeline list|show|run|
 * status` (producer/cli_pipeline.c, producer/pipeline.c, backends/record.c)
 * as a user runs them: the real `warren` binary on config/examples/
 * pipelines.yaml, its broker and backend URLs replaced through
 * WARREN_BROKER_URL / WARREN_RESULT_BACKEND (as `make demo` does), and two
 * real warren-worker children with the example plugins and Redis. Every
 * run is sent with --queue to this test's own queue, so parallel suites on
 * the same broker never take each other's tasks. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "support.h"
#include "test_worker_support.h"

TestSuite(integration_pipeline_cli, .fini = worker_test_fini, .timeout = 60);

#define CLI_BIN WARREN_BUILD_DIR "/bin/warren"
#define EXAMPLES WARREN_SOURCE_DIR "/config/examples/pipelines.yaml"

static const char *queue;
static char out[16384], errtext[16384];

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* Two workers sharing this test's queue, storing results in Redis. */
static void start_workers(const char *tag)
{
	queue = worker_test_queue(0, tag);
	char args[1024];
	snprintf(args, sizeof args, "%s -P threads -c 4 -Q %s --result-backend %s -l info",
		 WORKER_PLUGINS, queue, support_service_url("WARREN_TEST_REDIS"));
	pid_t a = worker_test_start(args);
	pid_t b = worker_test_start(args);
	cr_assert(worker_test_wait_log(a, " ready:", 15000), "see %s", worker_test_log(a));
	cr_assert(worker_test_wait_log(b, " ready:", 15000), "see %s", worker_test_log(b));
}

/* Runs `warren --config config pipeline ARGS` with the test services in the
 * environment (when with_services); stdout into out, stderr into errtext.
 * Returns the exit status. */
static int cli_run(const char *config, const char *args, bool with_services, const char *wrap)
{
	char errfile[] = "/tmp/warren-pipeline-cli-XXXXXX";
	int fd = mkstemp(errfile);
	cr_assert(fd >= 0);
	close(fd);
	char env[1024] = "";
	if (with_services)
		snprintf(env, sizeof env, "WARREN_BROKER_URL='%s' WARREN_RESULT_BACKEND='%s' ",
			 support_service_url("WARREN_TEST_BROKER"),
			 support_service_url("WARREN_TEST_REDIS"));
	char cmd[8192], inner[4096];
	snprintf(inner, sizeof inner, "%s --config %s pipeline %s", CLI_BIN, config, args);
	if (wrap) /* run under a pseudo-terminal: script -qc "CMD" /dev/null */
		snprintf(cmd, sizeof cmd, "%stimeout 40 script -qec \"%s\" /dev/null 2>%s", env,
			 inner, errfile);
	else
		snprintf(cmd, sizeof cmd, "%stimeout 40 %s 2>%s", env, inner, errfile);
	int status = support_run(cmd, out, sizeof out);
	FILE *f = fopen(errfile, "r");
	size_t n = f ? fread(errtext, 1, sizeof errtext - 1, f) : 0;
	errtext[n] = '\0';
	if (f)
		fclose(f);
	unlink(errfile);
	return status;
}

/* A config file in /tmp holding text; returns its path (static buffer). */
static const char *temp_config(const char *text)
{
	static char path[64];
	snprintf(path, sizeof path, "/tmp/warren-pipeline-cfg-XXXXXX");
	int fd = mkstemp(path);
	cr_assert(fd >= 0);
	cr_assert_eq(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	close(fd);
	return path;
}

/* Runs an example pipeline with --wait --json and checks its result. */
static void expect_run(const char *name, const char *sets, const char *want_result)
{
	char args[2048];
	snprintf(args, sizeof args, "run %s %s --queue %s --wait --timeout 20 --json", name, sets,
		 queue);
	int rc = cli_run(EXAMPLES, args, true, NULL);
	cr_assert_eq(rc, 0, "%s: exit %d\nstdout: %s\nstderr: %s", name, rc, out, errtext);
	char want[1024];
	snprintf(want, sizeof want, "\"state\":\"SUCCESS\"");
	cr_expect(strstr(out, want), "%s: %s", name, out);
	snprintf(want, sizeof want, "\"result\":%s}", want_result);
	cr_expect(strstr(out, want), "%s: want %s in %s", name, want, out);
	/* Not a terminal: stdout holds the one JSON line, stderr no progress. */
	cr_expect(strchr(out, '\n') == out + strlen(out) - 1, "%s: %s", name, out);
	/* Results are written as `warren call` writes them (", " and ": "). */
	cr_expect(!strchr(errtext, '\r') && !strstr(errtext, "running"), "%s: %s", name, errtext);
}

Test(integration_pipeline_cli, every_example_pipeline_runs_to_its_result)
{
	start_workers("pipeexamples");
	expect_run("arithmetic", "", "51.0");
	expect_run("arithmetic", "--set x=1 --set y=1 --set factor=3 --set offset=0.5", "6.5");
	expect_run("wordcount", "--set 'texts=[\"the quick brown fox\", \"jumps\", \"\"]'", "5");
	expect_run("wordcount_fixed", "", "9");
	expect_run("shout", "", "[\"WARREN\", \"SPEAKS\", \"CELERY\"]");
	expect_run("shout", "--set 'words=[\"a\"]'", "[\"A\"]");
	expect_run("report", "--set who=warren --set pause=0",
		   "[[0.0], {\"greeting\": \"hello warren, this cost $0\"}]");
	/* Without --json: the result alone, as `warren call` prints it. */
	char args[512];
	snprintf(args, sizeof args, "run arithmetic --queue %s --wait --timeout 20", queue);
	cr_assert_eq(cli_run(EXAMPLES, args, true, NULL), 0, "%s", errtext);
	cr_expect_str_eq(out, "51.0\n");
}

Test(integration_pipeline_cli, list_and_show_print_the_pipelines)
{
	cr_assert_eq(cli_run(EXAMPLES, "list", false, NULL), 0, "%s", errtext);
	const char *names[] = {"arithmetic", "wordcount", "wordcount_fixed", "shout", "report"};
	for (size_t i = 0; i < sizeof names / sizeof *names; i++)
		cr_expect(strstr(out, names[i]), "%s missing from:\n%s", names[i], out);
	cr_expect(strstr(out, "add, multiply, add again"), "%s", out);

	cr_assert_eq(cli_run(EXAMPLES, "show report", false, NULL), 0, "%s", errtext);
	cr_expect(strstr(out, "chain of 5"), "%s", out);
	cr_expect(strstr(out, "who: str = \"world\""), "%s", out);
	cr_expect(strstr(out, "test.echo"), "%s", out);

	cr_expect_eq(cli_run(EXAMPLES, "show nope", false, NULL), 66);
	cr_expect(strstr(errtext, "no such pipeline") && strstr(errtext, "arithmetic"), "%s",
		  errtext);
}

Test(integration_pipeline_cli, bad_inputs_exit_65_with_the_reason)
{
	/* No services: inputs are refused before anything connects. */
	cr_expect_eq(cli_run(EXAMPLES, "run arithmetic --set z=1", false, NULL), 65);
	cr_expect(strstr(errtext, "no input 'z'"), "%s", errtext);
	cr_expect_eq(cli_run(EXAMPLES, "run arithmetic --set x=abc", false, NULL), 65);
	cr_expect(strstr(errtext, "input 'x': expected float"), "%s", errtext);
	cr_expect_eq(cli_run(EXAMPLES, "run wordcount", false, NULL), 65);
	cr_expect(strstr(errtext, "missing required input 'texts'"), "%s", errtext);
	cr_expect_eq(cli_run(EXAMPLES, "run wordcount --set 'texts=[1'", false, NULL), 65);
	cr_expect(strstr(errtext, "input 'texts'"), "%s", errtext);
	cr_expect_eq(cli_run(EXAMPLES, "run arithmetic --set x", false, NULL), 64);
	cr_expect_eq(out[0], '\0', "nothing on stdout: %s", out);
}

static const char failing_yaml[] =
	"result_backend: redis://localhost:6379/0\n"
	"pipelines:\n"
	"  failing:\n"
	"    description: a chain whose second step fails\n"
	"    run:\n"
	"      chain:\n"
	"        - {task: math.add, args: [1, 2]}\n"
	"        - {task: test.fail, args: [boom], immutable: true}\n"
	"        - {task: math.add, args: [1]}\n"
	"  chordfail:\n"
	"    run:\n"
	"      chord:\n"
	"        header:\n"
	"          - {task: math.add, args: [1, 2]}\n"
	"          - {task: test.fail, args: [kaboom]}\n"
	"        body: math.sum\n";

Test(integration_pipeline_cli, a_failing_step_exits_1_naming_the_task)
{
	start_workers("pipefail");
	const char *cfg = temp_config(failing_yaml);
	char args[512];
	snprintf(args, sizeof args, "run failing --queue %s --wait --timeout 20", queue);
	int rc = cli_run(cfg, args, true, NULL);
	cr_expect_eq(rc, 1, "exit %d: %s", rc, errtext);
	cr_expect(strstr(errtext, "failed at step run.chain[1]: task test.fail"), "%s", errtext);
	cr_expect(strstr(errtext, "ValueError: boom"), "%s", errtext);
	cr_expect_eq(out[0], '\0', "%s", out);

	snprintf(args, sizeof args, "run chordfail --queue %s --wait --timeout 20 --json", queue);
	rc = cli_run(cfg, args, true, NULL);
	cr_expect_eq(rc, 1, "exit %d: %s", rc, errtext);
	cr_expect(strstr(out, "\"state\":\"FAILURE\""), "%s", out);
	cr_expect(strstr(out, "\"node\":\"run.chord.header[1]\",\"task\":\"test.fail\""), "%s",
		  out);
	cr_expect(strstr(out, "\"exc_type\":\"ValueError\",\"exc_message\":\"kaboom\""), "%s",
		  out);
	unlink(cfg);
}

Test(integration_pipeline_cli, status_shows_a_run_from_another_process)
{
	start_workers("pipestatus");
	char args[512];
	snprintf(args, sizeof args, "run report --set pause=0.3 --queue %s", queue);
	cr_assert_eq(cli_run(EXAMPLES, args, true, NULL), 0, "%s", errtext);
	char id[128];
	cr_assert_eq(sscanf(out, "%127s", id), 1, "%s", out);
	cr_assert_eq(strlen(id), 36, "run id: %s", out);

	/* Until it is done: exit 2 (not finished) or 0. */
	snprintf(args, sizeof args, "status %s", id);
	int rc = 2;
	struct timespec tick = {.tv_nsec = 100 * 1000 * 1000};
	for (double end = now_s() + 20; rc == 2 && now_s() < end; nanosleep(&tick, NULL))
		rc = cli_run(EXAMPLES, args, true, NULL);
	cr_assert_eq(rc, 0, "exit %d\n%s%s", rc, out, errtext);
	cr_expect(strstr(out, "pipeline report"), "%s", out);
	cr_expect(strstr(out, "done     6/6"), "%s", out);
	cr_expect(strstr(out, "SUCCESS  run.chain[1].group[1]  math.mul"), "%s", out);
	cr_expect(strstr(out, "result   [[0.3], {\"greeting\": \"hello world, this cost $0\"}]"),
		  "%s", out);

	snprintf(args, sizeof args, "status %s --json", id);
	cr_assert_eq(cli_run(EXAMPLES, args, true, NULL), 0, "%s", errtext);
	cr_expect(strstr(out, "\"state\":\"SUCCESS\",\"done\":6,\"total\":6"), "%s", out);
	cr_expect(strstr(out, "\"inputs\":{\"who\": \"world\", \"pause\": 0.3}"), "%s", out);

	cr_expect_eq(cli_run(EXAMPLES, "status 00000000-0000-0000-0000-000000000000", true, NULL),
		     66, "%s", errtext);
	cr_expect(strstr(errtext, "no record"), "%s", errtext);
}

Test(integration_pipeline_cli, a_terminal_sees_progress_and_stdout_the_result)
{
	start_workers("pipetty");
	char args[512];
	snprintf(args, sizeof args, "run report --set pause=0.5 --queue %s --wait --timeout 20",
		 queue);
	int rc = cli_run(EXAMPLES, args, true, "script");
	cr_assert_eq(rc, 0, "exit %d\n%s%s", rc, out, errtext);
	/* script(1) puts the terminal's output (stdout and stderr) on stdout. */
	cr_expect(strstr(out, "running test.sleep (run.chain[3])"), "%s", out);
	cr_expect(strstr(out, "[6/6] finished in"), "%s", out);
	cr_expect(strstr(out, "[[0.5], {\"greeting\": \"hello world, this cost $0\"}]"), "%s", out);
}
