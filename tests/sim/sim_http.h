#ifndef HOPX_SIM_HTTP_H
#define HOPX_SIM_HTTP_H

#include <microhttpd.h>
#include <netinet/in.h>

#include "sim.h"

struct sim_http;

/*
 * Listens on "HOST:PORT" (port 0: any free port, written to *port) and
 * serves the control plane. Returns 0 or -1 with a message on stderr.
 */
int sim_http_start(struct sim *s, const char *listen, struct sim_http **out,
                   int *port);

/* A daemon on sa, one thread per connection, with the simulator's limits
 * (4096 connections, 120 s idle, backlog 1024); NULL when it cannot
 * listen. */
struct MHD_Daemon *sim_http_daemon(struct sim *s, const struct sockaddr_in *sa,
                                   unsigned flags, MHD_AccessHandlerCallback fn,
                                   void *cls,
                                   MHD_RequestCompletedCallback done);

/* "HOST:PORT" (IPv4 or localhost) to an address; 0 or -1. */
int sim_http_parse_listen(const char *listen, struct sockaddr_in *sa);

/* Stops listening and frees; accepts NULL. */
void sim_http_stop(struct sim_http *h);

#endif
