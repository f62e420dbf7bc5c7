#ifndef HOPX_SIM_WS_H
#define HOPX_SIM_WS_H

#include <stddef.h>

#include "sim.h"

/* Sec-WebSocket-Accept for a client's Sec-WebSocket-Key (RFC 6455 §4.2.2):
 * 0 with out filled (NUL-terminated), or -1 for a bad key. */
int sim_ws_accept_key(const char *key, char *out, size_t n);

/*
 * Serves one upgraded connection until either side closes it: fd is the
 * socket (made blocking here), extra the bytes already read past the
 * handshake. /execute/stream runs one {"type":"execute","code":...}
 * message as the SDK's runCodeStream expects (stdout messages, then
 * complete); /terminal sends every message back. Client frames must be
 * masked and at most 1 MB (else close 1002/1009).
 */
void sim_ws_serve(struct sim *s, const char *id, const char *endpoint, int fd,
                  const char *extra, size_t extra_len);

#endif
