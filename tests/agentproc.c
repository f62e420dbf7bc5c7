#include "agentproc.h"

#include "testutil.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

int agentproc_init(struct agentproc *p)
{
	memset(p, 0, sizeof(*p));
	if (tu_tmpdir(p->dir, sizeof(p->dir)) != 0)
		return -1;
	tu_path(p->db, sizeof(p->db), p->dir, "state/hopxd.db");
	tu_path(p->sock, sizeof(p->sock), p->dir, "run/hopxd.sock");
	return 0;
}

int agentproc_connect(const struct agentproc *p)
{
	struct sockaddr_un sa;
	int fd = socket(AF_UNIX, SOCK_STREAM, 0);

	memset(&sa, 0, sizeof(sa));
	sa.sun_family = AF_UNIX;
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", p->sock);
	if (fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0)
		return fd;
	if (fd >= 0)
		close(fd);
	return -1;
}

static int agent_ready(void *ctx)
{
	int fd = agentproc_connect(ctx);

	if (fd < 0)
		return -1;
	close(fd);
	return 0;
}

int agentproc_start(struct agentproc *p, const char *bin,
                    const char *const *extra)
{
	const char *argv[32];
	int n = 0;

	argv[n++] = bin;
	argv[n++] = "--db";
	argv[n++] = p->db;
	argv[n++] = "--socket";
	argv[n++] = p->sock;
	argv[n++] = "--log-level=warn";
	while (extra && *extra && n < 30)
		argv[n++] = *extra++;
	argv[n] = NULL;
	if ((p->pid = tu_spawn(argv)) < 0)
		return -1;
	return tu_wait_ready(&p->pid, agent_ready, p);
}

int agentproc_stop(struct agentproc *p)
{
	return tu_stop(&p->pid);
}

void agentproc_destroy(struct agentproc *p)
{
	if (p->pid > 0)
		agentproc_stop(p);
	if (p->dir[0])
		tu_rmrf(p->dir);
	p->dir[0] = '\0';
}

int agentproc_read_line(int fd, char *out, size_t n, int timeout_ms)
{
	struct pollfd pfd = {fd, POLLIN, 0};
	size_t used = 0;

	/* Peek at what is there, then take exactly up to the newline. */
	while (used + 1 < n) {
		ssize_t got, take;
		char *nl;

		if (poll(&pfd, 1, timeout_ms) <= 0)
			return -2;
		got = recv(fd, out + used, n - 1 - used, MSG_PEEK);
		if (got <= 0)
			return -1;
		nl = memchr(out + used, '\n', (size_t)got);
		take = nl ? nl - (out + used) + 1 : got;
		if (recv(fd, out + used, (size_t)take, 0) != take)
			return -1;
		used += (size_t)take;
		if (nl) {
			out[used - 1] = '\0';
			return 0;
		}
	}
	return -1;
}

int agentproc_rpc(int fd, const char *line, char *out, size_t n)
{
	size_t len = strlen(line);

	if (write(fd, line, len) != (ssize_t)len || write(fd, "\n", 1) != 1)
		return -1;
	return agentproc_read_line(fd, out, n, 5000);
}
