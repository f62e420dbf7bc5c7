#ifndef HOPXD_METRICS_H
#define HOPXD_METRICS_H

/*
 * The agent's metrics in Prometheus's text exposition format (0.0.4):
 * tokens served, renewals, HopX requests by route and status class with
 * a latency histogram, the budget, sandboxes by status, leases,
 * connections, subscribers, the endpoint's requests. Served by the
 * "metrics" method and, with --metrics-listen, at GET /metrics.
 */

#include <stddef.h>

struct agent;

/* The exposition (caller frees), or NULL when out of memory. */
char *metrics_text(struct agent *a, size_t *len);

/*
 * Serves GET /metrics on addr (see httpd_opts.listen) into a->metrics.
 * On failure why (n bytes) says why. Returns 0 or an ERR_* code.
 */
int metrics_listen(struct agent *a, const char *addr, char *why, size_t n);

#endif
