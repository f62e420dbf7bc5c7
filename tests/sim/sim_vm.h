#ifndef HOPX_SIM_VM_H
#define HOPX_SIM_VM_H

#include "sim.h"

/*
 * The sandbox's own agent API (public_host), as the SDKs call it: health
 * and info, commands and code, files (JSON for small ones, streamed bodies
 * for any size) and WebSockets. Every call needs the sandbox running and a
 * token of that sandbox, like HopX's agent.
 */

enum sim_vm_kind {
	SIM_VM_JSON,     /* JSON in (bounded), JSON out: fn */
	SIM_VM_UPLOAD,   /* body streamed to a file (raw or multipart) */
	SIM_VM_DOWNLOAD, /* a file streamed out */
	SIM_VM_WS,       /* a WebSocket (sim_ws.c) */
};

struct sim_vm_route {
	const char *method;
	const char *path;
	const char *name; /* for the request log */
	enum sim_vm_kind kind;
	/* SIM_VM_JSON: fills rs; runs without the lock. */
	void (*fn)(struct sim *s, const char *id, const struct sim_req *rq,
	           struct sim_resp *rs);
};

/* The route of method and path, or NULL (404). */
const struct sim_vm_route *sim_vm_route(const char *method, const char *path);

/* Under the lock: 0 when sandbox id may be used with this bearer token;
 * otherwise rs holds the agent's error (404/503/401). */
int sim_vm_admit(struct sim *s, const char *id, const char *bearer,
                 struct sim_resp *rs);

#endif
