/* tests/support/support.c - service URLs, fixture paths and child programs for tests. */
#include "support.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

const char *support_service_url(const char *var)
{
	const char *url = getenv(var);
	if (!url || !*url)
		cr_assert_fail("%s is not set: run the tests with 'make test' "
			       "(scripts/with-services starts the services)", var);
	return url;
}

const char *support_source_path(const char *rel)
{
	static char path[4096];
	snprintf(path, sizeof path, "%s/%s", WARREN_SOURCE_DIR, rel);
	return path;
}

int support_url_host_port(const char *url, char *host, size_t hostlen, int *port)
{
	const char *p = strstr(url, "://");
	if (!p)
		return -1;
	p += 3;
	const char *at = strchr(p, '@');
	const char *slash = strchr(p, '/');
	if (at && (!slash || at < slash))
		p = at + 1;
	const char *colon = strchr(p, ':');
	if (!colon || (size_t)(colon - p) >= hostlen)
		return -1;
	memcpy(host, p, (size_t)(colon - p));
	host[colon - p] = '\0';
	*port = atoi(colon + 1);
	return *port > 0 ? 0 : -1;
}

int support_run(const char *cmd, char *out, size_t cap)
{
	FILE *f = popen(cmd, "r");
	if (!f)
		return -1;
	size_t n = 0;
	if (out && cap > 0) {
		n = fread(out, 1, cap - 1, f);
		out[n] = '\0';
	}
	char sink[4096];
	while (fread(sink, 1, sizeof sink, f) > 0)
		; /* drain so the child never blocks on a full pipe */
	int status = pclose(f);
	return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

int support_free_port(void)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof a;
	cr_assert(fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof a) == 0 &&
		  getsockname(fd, (struct sockaddr *)&a, &len) == 0);
	close(fd);
	return ntohs(a.sin_port);
}

pid_t support_start_celery(const char *queue, const char *backend, const char *log)
{
	/* Before the fork: an assertion in the child would hang Criterion. */
	const char *broker = support_service_url("WARREN_TEST_BROKER");
	const char *dir = support_source_path("tests/interop");
	pid_t pid = fork();
	cr_assert_neq(pid, -1, "fork: %s", strerror(errno));
	if (pid == 0) {
		FILE *f = freopen(log, "w", stdout);
		if (f)
			dup2(fileno(f), 2);
		setenv("WARREN_TEST_BROKER", broker, 1);
		setenv("CELERY_RESULT_BACKEND", backend, 1);
		if (chdir(dir) != 0)
			_exit(127);
		execl("/usr/bin/python3", "python3", "-m", "celery", "-A", "celery_app", "worker",
		      "-P", "solo", "-c", "1", "-Q", queue, "--without-gossip", "--without-mingle",
		      "--without-heartbeat", "-l", "warning", (char *)NULL);
		_exit(127);
	}
	return pid;
}
