/*
 * Metrics, written out from the counters where they are kept (hopx.c's
 * request stats, the agent's, the endpoint's) and from the state as it
 * is (the store's status counts, leases, connections). Families are
 * tables of {name, type, help}, written in one order so that a scrape
 * is stable.
 */
#include "metrics.h"

#include "agent.h"
#include "apiep.h"
#include "buf.h"
#include "config.h"
#include "err.h"
#include "hopx.h"
#include "httpd.h"
#include "ipc_server.h"
#include "leases.h"
#include "proxy.h"
#include "sbx.h"
#include "sessions.h"
#include "store.h"

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TEXT_MAX (1u << 20)

static void family(struct buf *b, const char *name, const char *type,
                   const char *help)
{
	buf_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void sample(struct buf *b, const char *name, const char *labels,
                   double v)
{
	buf_printf(b, "%s%s%s%s %.15g\n", name, labels ? "{" : "",
	           labels ? labels : "", labels ? "}" : "", v);
}

static void agent_part(struct buf *b, struct agent *a)
{
	const struct agent_stats *st = &a->stats;

	family(b, "hopxd_build_info", "gauge", "hopxd's version.");
	sample(b, "hopxd_build_info", "version=\"" HOPXD_VERSION "\"", 1);
	family(b, "hopxd_uptime_seconds", "gauge",
	       "Seconds since the agent started.");
	sample(b, "hopxd_uptime_seconds", NULL,
	       (double)(clock_mono_ms(a->clk) - a->started_mono) / 1000.0);
	family(b, "hopxd_tokens_served_total", "counter",
	       "Sandbox tokens handed to clients, by how they asked.");
	sample(b, "hopxd_tokens_served_total", "via=\"socket\"",
	       (double)st->tokens_socket);
	sample(b, "hopxd_tokens_served_total", "via=\"endpoint\"",
	       (double)st->tokens_endpoint);
	family(b, "hopxd_token_renewals_total", "counter",
	       "Background token refreshes that HopX answered with a token.");
	sample(b, "hopxd_token_renewals_total", NULL, (double)st->renewals);
	family(b, "hopxd_token_renewal_failures_total", "counter",
	       "Background token refreshes that failed (each is retried).");
	sample(b, "hopxd_token_renewal_failures_total", NULL,
	       (double)st->renewal_failures);
}

static void state_part(struct buf *b, struct agent *a)
{
	size_t counts[SBX_STATUS_COUNT] = {0};
	char label[48];
	int i;

	if (store_sandbox_count(a->store, counts) == 0) {
		family(b, "hopxd_sandboxes", "gauge",
		       "Tracked sandboxes by status.");
		for (i = 0; i < SBX_STATUS_COUNT; i++) {
			snprintf(label, sizeof(label), "status=\"%s\"",
			         sbx_status_str((enum sbx_status)i));
			sample(b, "hopxd_sandboxes", label, (double)counts[i]);
		}
	}
	family(b, "hopxd_leases", "gauge",
	       "Sandboxes held in use by clients (hopxctl run, lease).");
	sample(b, "hopxd_leases", NULL, (double)leases_count(a));
	family(b, "hopxd_connections", "gauge", "Clients on the socket.");
	sample(b, "hopxd_connections", NULL,
	       (double)(a->ipc ? ipc_server_connections(a->ipc) : 0));
	family(b, "hopxd_subscribers", "gauge",
	       "Clients subscribed to events.");
	sample(b, "hopxd_subscribers", NULL,
	       (double)(a->ipc ? ipc_server_subscribers(a->ipc) : 0));
}

static void requests(struct buf *b, const struct hopx_stats *st)
{
	static const char *const cls[HOPX_NCLASS] = {[HOPX_2XX] = "2xx",
	                                             [HOPX_4XX] = "4xx",
	                                             [HOPX_5XX] = "5xx",
	                                             [HOPX_NOANSWER] = "none"};
	char label[80];
	int op, c;

	family(b, "hopxd_hopx_requests_total", "counter",
	       "Requests made to HopX (each attempt), by route and status "
	       "class (none: no answer).");
	for (op = 0; op < HOPX_NOPS; op++)
		for (c = 0; c < HOPX_NCLASS; c++) {
			if (st->answers[op][c] == 0 && c != HOPX_2XX)
				continue;
			snprintf(label, sizeof(label),
			         "route=\"%s\",class=\"%s\"",
			         hopx_op_str((enum hopx_op)op), cls[c]);
			sample(b, "hopxd_hopx_requests_total", label,
			       (double)st->answers[op][c]);
		}
}

/* A histogram: counts[i] fell in bucket i (le bounds[i]; the last,
 * counts[nb], above them all). */
static void histogram(struct buf *b, const char *name, const char *help,
                      const double *bounds, int nb, const uint64_t *counts,
                      double sum_s)
{
	char label[48], series[96];
	uint64_t sum = 0;
	int i;

	family(b, name, "histogram", help);
	snprintf(series, sizeof(series), "%s_bucket", name);
	for (i = 0; i <= nb; i++) {
		sum += counts[i];
		if (i < nb)
			snprintf(label, sizeof(label), "le=\"%g\"", bounds[i]);
		else
			snprintf(label, sizeof(label), "le=\"+Inf\"");
		sample(b, series, label, (double)sum);
	}
	snprintf(series, sizeof(series), "%s_sum", name);
	sample(b, series, NULL, sum_s);
	snprintf(series, sizeof(series), "%s_count", name);
	sample(b, series, NULL, (double)sum);
}

static void hopx_part(struct buf *b, struct agent *a)
{
	struct hopx *hx = a->hopx;
	int known = 0;
	double skew;

	if (hx == NULL)
		return;
	requests(b, hopx_stats(hx));
	histogram(b, "hopxd_hopx_request_duration_seconds",
	          "Time HopX took to answer a request.", hopx_buckets,
	          HOPX_NBUCKETS, hopx_stats(hx)->latency,
	          hopx_stats(hx)->latency_sum_s);
	family(b, "hopxd_hopx_budget_per_minute", "gauge",
	       "Requests per minute the agent allows itself at HopX.");
	sample(b, "hopxd_hopx_budget_per_minute", NULL, hopx_budget(hx));
	family(b, "hopxd_hopx_budget_used", "gauge",
	       "Requests made to HopX in the last minute.");
	sample(b, "hopxd_hopx_budget_used", NULL, hopx_spent_last_minute(hx));
	family(b, "hopxd_hopx_requests_queued", "gauge",
	       "Calls waiting for budget or a retry.");
	sample(b, "hopxd_hopx_requests_queued", NULL, hopx_pending(hx));
	skew = (double)hopx_skew_ms(hx, &known) / 1000.0;
	if (known) {
		family(b, "hopxd_hopx_clock_skew_seconds", "gauge",
		       "HopX's clock minus this machine's, from its answers.");
		sample(b, "hopxd_hopx_clock_skew_seconds", NULL, skew);
	}
}

static void endpoint_part(struct buf *b, struct agent *a)
{
	static const struct {
		const char *how;
		size_t off;
	} hows[] = {
	        {"local", offsetof(struct apiep_stats, local)},
	        {"carried", offsetof(struct apiep_stats, carried)},
	        {"forwarded", offsetof(struct apiep_stats, forwarded)},
	        {"refused", offsetof(struct apiep_stats, refused)},
	};
	const struct apiep_stats *st;
	char label[32];
	size_t i;

	if (a->apiep == NULL)
		return;
	st = apiep_stats(a->apiep);
	family(b, "hopxd_endpoint_requests_total", "counter",
	       "Requests to the HopX-compatible endpoint, by how they were "
	       "answered.");
	for (i = 0; i < sizeof(hows) / sizeof(*hows); i++) {
		uint64_t v;

		memcpy(&v, (const char *)st + hows[i].off, sizeof(v));
		snprintf(label, sizeof(label), "how=\"%s\"", hows[i].how);
		sample(b, "hopxd_endpoint_requests_total", label, (double)v);
	}
}

/* A counter family of one sample per entry: {label or NULL, value}. */
struct counter {
	const char *name, *help, *label;
	uint64_t v;
};

static void counters(struct buf *b, const struct counter *c, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++) {
		if (i == 0 || strcmp(c[i].name, c[i - 1].name) != 0)
			family(b, c[i].name, "counter", c[i].help);
		sample(b, c[i].name, c[i].label, (double)c[i].v);
	}
}

static void proxy_part(struct buf *b, struct agent *a)
{
	static const char *const cls[6] = {"none", "1xx", "2xx",
	                                   "3xx",  "4xx", "5xx"};
	const struct proxy_stats *st;
	char labels[6][24];
	struct counter c[20];
	size_t n = 0, i;

	if (a->proxy == NULL)
		return;
	st = proxy_stats(a->proxy);
#define C(nm, help, lb, val) c[n++] = (struct counter){nm, help, lb, val}
	C("hopxd_proxy_requests_total",
	  "Requests through the proxy, by what became of them.",
	  "result=\"carried\"", st->requests - st->refused - st->errors);
	C("hopxd_proxy_requests_total", NULL, "result=\"refused\"",
	  st->refused);
	C("hopxd_proxy_requests_total", NULL, "result=\"error\"", st->errors);
	C("hopxd_proxy_bytes_total",
	  "Bytes through the proxy, to the sandbox (up) and back (down).",
	  "direction=\"up\"", st->bytes_up);
	C("hopxd_proxy_bytes_total", NULL, "direction=\"down\"",
	  st->bytes_down);
	C("hopxd_proxy_wakes_total", "Requests that resumed a paused sandbox.",
	  NULL, st->wakes);
	C("hopxd_proxy_retries_total",
	  "Requests replayed after the sandbox refused a token.", NULL,
	  st->retries);
	C("hopxd_proxy_websockets_total",
	  "WebSockets opened through the proxy.", NULL, st->websockets);
	C("hopxd_proxy_upstream_connections_total",
	  "Connections to sandboxes' agents a request went on: opened for "
	  "it, or kept from an earlier client.",
	  "how=\"new\"", st->up_new);
	C("hopxd_proxy_upstream_connections_total", NULL, "how=\"reused\"",
	  st->up_reused);
	for (i = 0; i < 6; i++) {
		snprintf(labels[i], sizeof(labels[i]), "class=\"%s\"", cls[i]);
		C("hopxd_proxy_upstream_responses_total",
		  "Answers of sandboxes' agents by status class.", labels[i],
		  st->status[i]);
	}
#undef C
	counters(b, c, n);
	family(b, "hopxd_proxy_connections", "gauge",
	       "Client connections open on the proxy.");
	sample(b, "hopxd_proxy_connections", NULL, (double)st->connections);
	family(b, "hopxd_proxy_upstream_idle", "gauge",
	       "Connections to sandboxes' agents kept for the next client.");
	sample(b, "hopxd_proxy_upstream_idle", NULL, (double)st->up_idle);
	histogram(b, "hopxd_proxy_request_duration_seconds",
	          "From a request's head in to its answer's head out.",
	          proxy_lat_bounds, 7, st->lat_count, st->lat_sum_s);
}

char *metrics_text(struct agent *a, size_t *len)
{
	struct buf b;

	buf_init(&b, TEXT_MAX);
	agent_part(&b, a);
	state_part(&b, a);
	hopx_part(&b, a);
	endpoint_part(&b, a);
	proxy_part(&b, a);
	if (b.data == NULL) {
		buf_finish(&b);
		return NULL;
	}
	*len = b.len;
	return b.data;
}

static void on_scrape(void *ud, struct httpd_req *rq)
{
	static const char ctype[] = "text/plain; version=0.0.4; charset=utf-8";
	struct agent *a = ud;
	char *text;
	size_t len = 0;

	if (strcmp(httpd_path(rq), "/metrics") != 0) {
		httpd_respond(rq, 404, "text/plain",
		              "not found: GET /metrics\n", 24, NULL);
		return;
	}
	if ((text = metrics_text(a, &len)) == NULL) {
		httpd_respond(rq, 503, "text/plain", "out of memory\n", 14,
		              NULL);
		return;
	}
	httpd_respond(rq, 200, ctype, text, len, NULL);
	free(text);
}

int metrics_listen(struct agent *a, const char *addr, char *why, size_t n)
{
	struct httpd_opts o = {.listen = addr,
	                       .max_connections = 64,
	                       .timeout_s = 30,
	                       .max_body = 4096};
	const char *cause = NULL;
	int e = httpd_create(a->loop, &o, on_scrape, a, &a->metrics, &cause);

	if (e != 0)
		snprintf(why, n, "--metrics-listen %s: %s", addr, cause);
	return e;
}
