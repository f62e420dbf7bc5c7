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

struct apiep;
struct fleet;
struct httpd;
struct hopx;
struct ipc_server;
struct methods_flight;
struct lease;
struct proxy;
struct reconcile;
struct sessions;

struct agent_config {
	char db[4096];
	char socket[108];
	int idle_timeout_s;  /* close idle clients after this */
	int max_connections; /* refuse more than this */
	int max_queue; /* a subscriber this many bytes behind is dropped */
	char api_base[512];
	char api_key[256]; /* "" when none: local records only */
	char ca_file[4096];
	int sync_interval_s;
	int budget;       /* HopX requests per minute */
	int max_inflight; /* HTTP transfers at once */
	int shutdown_timeout_s;
	int confirm_after_s;  /* env/run ask HopX when its word is older */
	int http_timeout_s;   /* one HTTP attempt */
	char api_listen[512]; /* the HopX-compatible endpoint; "" off */
	char local_key_file[4096];
	char metrics_listen[512]; /* GET /metrics; "" off */
	char store[4096];         /* "" or "sqlite": alone; else PostgreSQL's */
	int lease_s;              /* a fleet's leases on background work */
	int proxy_port;           /* PROXY_PORT_*, 0 (any free) or the port */
};

#define PROXY_PORT_OFF  (-1)
#define PROXY_PORT_AUTO (-2) /* on (any free port) with the endpoint */

/* Counters for metrics (metrics.c), moved where things happen. */
struct agent_stats {
	uint64_t tokens_socket;   /* tokens handed out over the socket */
	uint64_t tokens_endpoint; /* ... and by the HopX-compatible endpoint */
	uint64_t renewals;        /* background token refreshes that worked */
	uint64_t renewal_failures;
};

struct agent {
	uv_loop_t *loop;
	struct store *store;
	const struct clock *clk;
	struct agent_config cfg;
	struct ipc_server *ipc;
	struct hopx *hopx;     /* NULL without an API key */
	struct sessions *sess; /* every tracked sandbox, in memory */
	struct reconcile *rec;
	/* creates of a name in flight: another create of it joins (methods) */
	struct methods_flight *creating;
	struct lease *leases;  /* held by clients (leases.c) */
	struct apiep *apiep;   /* NULL unless --api-listen */
	struct proxy *proxy;   /* NULL when off */
	struct httpd *metrics; /* NULL unless --metrics-listen */
	struct fleet *fleet;   /* NULL unless --store names PostgreSQL */
	struct agent_stats stats;
	int stopping;         /* shutting down: refuse new lifecycle work */
	int64_t started_mono; /* ms, for uptime */
};

#endif
