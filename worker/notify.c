/* worker/notify.c - tells systemd the worker is ready (Type=notify), with
 * the sd_notify protocol spoken directly: one datagram of "KEY=VALUE" lines
 * to the unix socket named by $NOTIFY_SOCKET ('@' at the start names an
 * abstract socket). The protocol is a stable interface systemd documents
 * (sd_notify(3), "Notes"), so libsystemd would add a build and a run-time
 * dependency for these few lines and nothing else: warren builds and runs
 * the same with or without systemd, and without $NOTIFY_SOCKET it is a no-op.
 */
#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "worker.h"

int worker_notify(const char *state, warren_error *err)
{
	const char *path = getenv("NOTIFY_SOCKET");
	if (!path || !*path)
		return 0;
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	size_t len = strlen(path);
	if ((path[0] != '/' && path[0] != '@') || len >= sizeof sa.sun_path)
		return warren_error_set(err, WARREN_EINVAL,
					"notify '%s': NOTIFY_SOCKET is not a socket path", state);
	memcpy(sa.sun_path, path, len);
	if (sa.sun_path[0] == '@')
		sa.sun_path[0] = '\0';
	int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return warren_error_set(err, WARREN_EIO, "notify '%s': socket: %s", state,
					strerror(errno));
	socklen_t salen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len);
	ssize_t n = sendto(fd, state, strlen(state), MSG_NOSIGNAL, (struct sockaddr *)&sa, salen);
	int e = errno;
	close(fd);
	if (n < 0)
		return warren_error_set(err, WARREN_EIO, "notify '%s' to '%s': %s", state, path,
					strerror(e));
	return 0;
}
