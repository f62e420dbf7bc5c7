/*
 * An agent-like process for the harness self-test: it takes hopxd's
 * --db/--socket flags, answers every request line on the socket with an
 * empty result, and misbehaves as FAKE_AGENT says, so that the test
 * harness can be shown to catch it:
 *   (unset)   ends at SIGTERM with exit 0, like hopxd
 *   leak      the same, leaving a block unreferenced (LeakSanitizer)
 *   badexit   exits 3 at SIGTERM
 *   die       aborts by itself 50 ms after its 13th answer: the chaos
 *             suite's setup (hello and 12 attaches) done, however slow
 *             the machine, and before the chaos loop's first kill
 */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define MAX_CONN 64

static volatile sig_atomic_t stop;
static void *volatile kept;

static void on_term(int sig)
{
	(void)sig;
	stop = 1;
}

static int listen_on(const char *path)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	int fd = socket(AF_UNIX, SOCK_STREAM, 0);

	if (fd < 0 || strlen(path) >= sizeof(sa.sun_path))
		return -1;
	memcpy(sa.sun_path, path, strlen(path) + 1);
	/* hopxd makes its socket's directory; so does this */
	char dir[sizeof(sa.sun_path)];
	memcpy(dir, path, strlen(path) + 1);
	char *slash = strrchr(dir, '/');
	if (slash && slash != dir) {
		*slash = '\0';
		mkdir(dir, 0700);
	}
	unlink(path);
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 ||
	    listen(fd, 128) != 0) {
		close(fd);
		return -1;
	}
	return fd;
}

static long now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000L + ts.tv_nsec / 1000000L;
}

/* Answers each whole line read from fd; returns -1 when it hung up. */
static int serve(int fd)
{
	static const char reply[] = "{\"id\":1,\"result\":{}}\n";
	char buf[65536];
	ssize_t n = read(fd, buf, sizeof(buf));

	if (n <= 0)
		return -1;
	for (ssize_t i = 0; i < n; i++)
		if (buf[i] == '\n' && write(fd, reply, sizeof(reply) - 1) < 0)
			return -1;
	return 0;
}

static const char *flag(int argc, char **argv, const char *name)
{
	for (int i = 1; i + 1 < argc; i++)
		if (strcmp(argv[i], name) == 0)
			return argv[i + 1];
	return NULL;
}

static int finish(const char *mode)
{
	if (strcmp(mode, "leak") == 0) {
		kept = malloc(4096);
		memset(kept, 1, 4096);
		kept = NULL;
	}
	return strcmp(mode, "badexit") == 0 ? 3 : 0;
}

int main(int argc, char **argv)
{
	const char *sock = flag(argc, argv, "--socket");
	const char *mode = getenv("FAKE_AGENT") ? getenv("FAKE_AGENT") : "";
	struct pollfd p[MAX_CONN + 1];
	int n = 1;
	long die_at = 0, answered = 0;
	struct sigaction sa = {.sa_handler = on_term};

	sigaction(SIGTERM, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
	p[0].fd = sock ? listen_on(sock) : -1;
	p[0].events = POLLIN;
	if (p[0].fd < 0) {
		fprintf(stderr, "fake_agent: cannot listen on %s\n",
		        sock ? sock : "(no --socket)");
		return 1;
	}
	while (!stop) {
		if (die_at && now_ms() >= die_at)
			abort();
		if (poll(p, (nfds_t)n, 20) < 0 && errno != EINTR)
			return 1;
		if ((p[0].revents & POLLIN) && n <= MAX_CONN) {
			p[n].fd = accept(p[0].fd, NULL, NULL);
			p[n].events = POLLIN;
			n += p[n].fd >= 0;
		}
		for (int i = 1; i < n; i++) {
			if (!(p[i].revents & (POLLIN | POLLHUP)))
				continue;
			if (serve(p[i].fd) != 0) {
				close(p[i].fd);
				p[i--] = p[--n];
			} else if (strcmp(mode, "die") == 0 &&
			           ++answered == 13) {
				die_at = now_ms() + 50;
			}
		}
	}
	unlink(sock);
	return finish(mode);
}
