#ifndef HOPXD_TESTUTIL_H
#define HOPXD_TESTUTIL_H

#include <stddef.h>

/* Helpers shared by the C test programs. */

/* Creates a fresh private directory under $TMPDIR (or /tmp) into out. */
int tu_tmpdir(char *out, size_t n);

/* Removes a directory tree made by a test. Returns 0 or -1. */
int tu_rmrf(const char *path);

/* Writes len bytes to a new file. Returns 0 or -1. */
int tu_write_file(const char *path, const void *data, size_t len);

/* Joins dir and name into out; aborts the test program if too long. */
void tu_path(char *out, size_t n, const char *dir, const char *name);

#endif
