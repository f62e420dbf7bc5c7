#ifndef HOPXD_TESTUTIL_H
#define HOPXD_TESTUTIL_H

#include <stddef.h>
#include <sys/types.h>

/* Helpers shared by the C test programs. */

/* Creates a fresh private directory under $TMPDIR (or /tmp) into out. */
int tu_tmpdir(char *out, size_t n);

/* Removes a directory tree made by a test. Returns 0 or -1. */
int tu_rmrf(const char *path);

/* Writes len bytes to a new file. Returns 0 or -1. */
int tu_write_file(const char *path, const void *data, size_t len);

/* Joins dir and name into out; aborts the test program if too long. */
void tu_path(char *out, size_t n, const char *dir, const char *name);

/* fork + execv(argv[0], argv); the child exits 127 if exec fails. */
pid_t tu_spawn(const char *const *argv);

/*
 * Polls ready(ctx) every 10 ms for up to 5 s. Returns 0 once it returns 0,
 * -1 on time-out or when pid exits first (then *pid is set to 0).
 */
int tu_wait_ready(pid_t *pid, int (*ready)(void *ctx), void *ctx);

/* SIGTERM and wait; the exit status, or -1 (signal, error). Sets *pid 0. */
int tu_stop(pid_t *pid);

#endif
