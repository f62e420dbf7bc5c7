#ifndef HOPXD_AGENT_H
#define HOPXD_AGENT_H

/*
 * The agent's shared state: the loop, the store and the IPC server. One
 * per process, owned by main.c.
 */

#include <stdint.h>
#include <uv.h>

#include "clock.h"
#include "store.h"

struct ipc_server;

struct agent_config {
	char db[4096];
	char socket[108];
	int idle_timeout_s;  /* close idle clients after this */
	int max_connections; /* refuse more than this */
	int max_queue; /* a subscriber this many bytes behind is dropped */
};

struct agent {
	uv_loop_t *loop;
	struct store *store;
	const struct clock *clk;
	struct agent_config cfg;
	struct ipc_server *ipc;
	int64_t started_mono; /* ms, for uptime */
};

/* Sends every event not yet sent to each subscriber. */
void agent_publish(struct agent *a);

#endif
