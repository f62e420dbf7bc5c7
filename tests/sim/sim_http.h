#ifndef HOPX_SIM_HTTP_H
#define HOPX_SIM_HTTP_H

#include "sim.h"

struct sim_http;

/*
 * Listens on "HOST:PORT" (port 0: any free port, written to *port) and
 * serves the control plane (vm 0) or the sandbox agent (vm 1).
 * Returns 0 or -1 with a message on stderr.
 */
int sim_http_start(struct sim *s, const char *listen, int vm,
                   struct sim_http **out, int *port);

/* Stops listening and frees; accepts NULL. */
void sim_http_stop(struct sim_http *h);

#endif
