#ifndef HOPX_SIM_VMHTTP_H
#define HOPX_SIM_VMHTTP_H

#include "sim.h"

struct sim_vmhttp;

/*
 * Serves the sandbox agent on "HOST:PORT" (port 0: any, written to *port;
 * reached as /sandbox/{id}/...) and on each sandbox's own host at that
 * port (sim_vmhost.c). 0 or -1 with a message on stderr.
 */
int sim_vmhttp_start(struct sim *s, const char *listen, struct sim_vmhttp **out,
                     int *port);

/* Stops both and frees; accepts NULL. */
void sim_vmhttp_stop(struct sim_vmhttp *h);

#endif
