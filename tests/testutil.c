#include "testutil.h"

#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

int tu_tmpdir(char *out, size_t n)
{
	const char *base = getenv("TMPDIR");
	int len;

	len = snprintf(out, n, "%s/hopxd-test-XXXXXX",
	               base && *base ? base : "/tmp");
	if (len < 0 || (size_t)len >= n)
		return -1;
	return mkdtemp(out) ? 0 : -1;
}

void tu_path(char *out, size_t n, const char *dir, const char *name)
{
	int len = snprintf(out, n, "%s/%s", dir, name);

	if (len < 0 || (size_t)len >= n)
		abort();
}

int tu_rmrf(const char *path)
{
	struct stat sb;
	struct dirent *de;
	char sub[4096];
	DIR *d;

	if (lstat(path, &sb) != 0)
		return -1;
	if (!S_ISDIR(sb.st_mode))
		return unlink(path);
	chmod(path, 0700);
	if ((d = opendir(path)) == NULL)
		return -1;
	while ((de = readdir(d)) != NULL) {
		if (strcmp(de->d_name, ".") == 0 ||
		    strcmp(de->d_name, "..") == 0)
			continue;
		tu_path(sub, sizeof(sub), path, de->d_name);
		tu_rmrf(sub);
	}
	closedir(d);
	return rmdir(path);
}

int tu_write_file(const char *path, const void *data, size_t len)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	ssize_t w;

	if (fd < 0)
		return -1;
	w = write(fd, data, len);
	close(fd);
	return w == (ssize_t)len ? 0 : -1;
}

pid_t tu_spawn(const char *const *argv)
{
	pid_t pid = fork();

	if (pid == 0) {
		execv(argv[0], (char *const *)argv);
		_exit(127);
	}
	return pid;
}

int tu_wait_ready(pid_t *pid, int (*ready)(void *ctx), void *ctx)
{
	struct timespec ts = {0, 10 * 1000000L};
	int i, status;

	for (i = 0; i < 500; i++) {
		if (ready(ctx) == 0)
			return 0;
		if (waitpid(*pid, &status, WNOHANG) == *pid) {
			*pid = 0;
			return -1;
		}
		nanosleep(&ts, NULL);
	}
	return -1;
}

int tu_stop(pid_t *pid)
{
	int status;

	if (*pid <= 0)
		return -1;
	kill(*pid, SIGTERM);
	if (waitpid(*pid, &status, 0) != *pid)
		return -1;
	*pid = 0;
	return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}
