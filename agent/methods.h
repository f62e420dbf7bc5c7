#ifndef HOPXD_METHODS_H
#define HOPXD_METHODS_H

#include <stddef.h>

struct agent;
struct ipc_conn;

/*
 * Handles one request line from a client: parses it, looks the method up
 * in the table, checks its parameters, runs it and queues the reply on c.
 * Bad input gets an error reply naming the problem; the connection stays.
 */
void methods_dispatch(struct agent *a, struct ipc_conn *c, const char *line,
                      size_t len);

#endif
