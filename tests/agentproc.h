#ifndef HOPXD_AGENTPROC_H
#define HOPXD_AGENTPROC_H

/* Test helpers: a private hopxd on a temp socket and database. */

#include <stddef.h>
#include <sys/types.h>

struct agentproc {
	pid_t pid;
	char dir[256];
	char db[300];
	char sock[108];
};

/* Makes the directory and paths; the agent is not started. */
int agentproc_init(struct agentproc *p);

/*
 * Starts hopxd with --db and --socket and the NULL-terminated extra
 * arguments; waits until the socket answers. 0 or -1.
 */
int agentproc_start(struct agentproc *p, const char *bin,
                    const char *const *extra);

/* SIGTERM and wait: the exit status, or -1. */
int agentproc_stop(struct agentproc *p);

/* Stops if running and removes the directory. */
void agentproc_destroy(struct agentproc *p);

/* A raw connection to the agent's socket, or -1. */
int agentproc_connect(const struct agentproc *p);

/*
 * Sends one line (newline added) and reads one line back into out
 * (without the newline). 0, or -1 on EOF, timeout (5 s) or overflow.
 */
int agentproc_rpc(int fd, const char *line, char *out, size_t n);

/* Reads one line within timeout_ms: 0, -1 on EOF/error, -2 timeout. */
int agentproc_read_line(int fd, char *out, size_t n, int timeout_ms);

#endif
