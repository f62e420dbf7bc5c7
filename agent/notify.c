#include "notify.h"

#include "err.h"

#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

/* Fills addr from NOTIFY_SOCKET; returns its length, 0 if unset, < 0. */
static int notify_addr(struct sockaddr_un *addr, socklen_t *len)
{
	const char *path = getenv("NOTIFY_SOCKET");
	size_t n;

	if (path == NULL || path[0] == '\0')
		return 0;
	n = strlen(path);
	if ((path[0] != '/' && path[0] != '@') || n >= sizeof(addr->sun_path))
		return ERR_INVAL;
	memset(addr, 0, sizeof(*addr));
	addr->sun_family = AF_UNIX;
	memcpy(addr->sun_path, path, n);
	if (path[0] == '@') /* abstract: a leading NUL, not NUL-terminated */
		addr->sun_path[0] = '\0';
	*len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n +
	                   (path[0] == '/'));
	return 1;
}

int notify_send(const char *state)
{
	struct sockaddr_un addr;
	socklen_t len = 0;
	int fd, r = notify_addr(&addr, &len);

	if (r <= 0)
		return r;
	fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return err_from_errno(errno);
	r = 0;
	if (sendto(fd, state, strlen(state), MSG_NOSIGNAL,
	           (struct sockaddr *)&addr, len) < 0)
		r = err_from_errno(errno);
	close(fd);
	return r;
}
