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

static void latency(struct buf *b, const struct hopx_stats *st)
{
	const char *name = "hopxd_hopx_request_duration_seconds";
	char label[48], bucket[80];
	uint64_t sum = 0;
	int i;

	family(b, name, "histogram", "Time HopX took to answer a request.");
	snprintf(bucket, sizeof(bucket), "%s_bucket", name);
	for (i = 0; i <= HOPX_NBUCKETS; i++) {
		sum += st->latency[i];
		if (i < HOPX_NBUCKETS)
			snprintf(label, sizeof(label), "le=\"%g\"",
			         hopx_buckets[i]);
		else
			snprintf(label, sizeof(label), "le=\"+Inf\"");
		sample(b, bucket, label, (double)sum);
	}
	snprintf(bucket, sizeof(bucket), "%s_sum", name);
	sample(b, bucket, NULL, st->latency_sum_s);
	snprintf(bucket, sizeof(bucket), "%s_count", name);
	sample(b, bucket, NULL, (double)st->latency_count);
}

static void hopx_part(struct buf *b, struct agent *a)
{
	struct hopx *hx = a->hopx;
	int known = 0;
	double skew;

	if (hx == NULL)
		return;
	requests(b, hopx_stats(hx));
	latency(b, hopx_stats(hx));
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

char *metrics_text(struct agent *a, size_t *len)
{
	struct buf b;

	buf_init(&b, TEXT_MAX);
	agent_part(&b, a);
	state_part(&b, a);
	hopx_part(&b, a);
	endpoint_part(&b, a);
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
