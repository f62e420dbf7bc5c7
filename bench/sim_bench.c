/*
 * hopx-sim benchmark: GET /v1/sandboxes/{id} requests per second over
 * keep-alive connections, beside GET /health on the same server and
 * connections (the floor: HTTP with no state and no lock), and the
 * simulator's RSS with 100,000 sandboxes. Prints figures only.
 *
 *   sim_bench HOPX_SIM [--seconds S] [--conns N] [--sandboxes N]
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <curl/curl.h>

#include "simclient.h"

struct worker {
	const char *url;
	double seconds;
	long done;
	long errors;
};

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static size_t sink(char *p, size_t s, size_t n, void *ud)
{
	(void)p;
	(void)ud;
	return s * n;
}

/* One keep-alive connection issuing requests back to back. */
static void *work(void *arg)
{
	struct worker *w = arg;
	struct curl_slist *h =
	        curl_slist_append(NULL, "X-API-Key: " SIM_TEST_KEY);
	CURL *c = curl_easy_init();
	double end = now_s() + w->seconds;
	long code;

	curl_easy_setopt(c, CURLOPT_URL, w->url);
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, sink);
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	while (now_s() < end) {
		if (curl_easy_perform(c) == CURLE_OK &&
		    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code) ==
		            CURLE_OK &&
		    code == 200)
			w->done++;
		else
			w->errors++;
	}
	curl_easy_cleanup(c);
	curl_slist_free_all(h);
	return NULL;
}

static double rate(const char *url, int conns, double seconds, long *errors)
{
	pthread_t t[64];
	struct worker w[64];
	long total = 0;
	double t0 = now_s();
	int i;

	*errors = 0;
	for (i = 0; i < conns; i++) {
		w[i] = (struct worker){url, seconds, 0, 0};
		pthread_create(&t[i], NULL, work, &w[i]);
	}
	for (i = 0; i < conns; i++) {
		pthread_join(t[i], NULL);
		total += w[i].done;
		*errors += w[i].errors;
	}
	return (double)total / (now_s() - t0);
}

static long rss_kb(pid_t pid)
{
	char path[64], line[256];
	long kb = -1;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%ld/status", (long)pid);
	if ((f = fopen(path, "r")) == NULL)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "VmRSS: %ld kB", &kb) == 1)
			break;
	fclose(f);
	return kb;
}

int main(int argc, char **argv)
{
	double seconds = 3, ours, floor_rate;
	int conns = 8, nsbx = 100000, i;
	struct simproc p;
	struct sc_result r;
	char url[256], url2[256], body[64];
	long errs = 0, errs2 = 0, rss0, rss1;

	for (i = 2; i < argc; i++) {
		if (strcmp(argv[i], "--seconds") == 0 && i + 1 < argc)
			seconds = atof(argv[++i]);
		else if (strcmp(argv[i], "--conns") == 0 && i + 1 < argc)
			conns = atoi(argv[++i]);
		else if (strcmp(argv[i], "--sandboxes") == 0 && i + 1 < argc)
			nsbx = atoi(argv[++i]);
	}
	if (argc < 2 || conns < 1 || conns > 64) {
		fprintf(stderr, "usage: sim_bench HOPX_SIM [--seconds S] "
		                "[--conns 1..64] [--sandboxes N]\n");
		return 2;
	}
	curl_global_init(CURL_GLOBAL_DEFAULT);
	if (simproc_start(&p, argv[1], NULL) != 0) {
		fprintf(stderr, "sim_bench: hopx-sim did not start\n");
		return 1;
	}
	rss0 = rss_kb(p.pid);
	sc_api(&r, &p, "POST", "/v1/sandboxes", "{\"template_name\":\"base\"}");
	snprintf(url, sizeof(url), "%s/v1/sandboxes/%s", p.api_url,
	         sc_str(&r, "id"));
	sc_free(&r);
	snprintf(url2, sizeof(url2), "%s/health", p.api_url);
	snprintf(body, sizeof(body), "{\"count\":%d}", nsbx);
	sc_api(&r, &p, "POST", "/_sim/sandboxes/bulk", body);
	sc_free(&r);
	rss1 = rss_kb(p.pid);
	ours = rate(url, conns, seconds, &errs);
	floor_rate = rate(url2, conns, seconds, &errs2);
	printf("%-38s %12s %12s %8s  %s\n", "figure", "hopx-sim", "floor",
	       "ratio", "target");
	printf("%-38s %12.0f %12.0f %8.2f  %s\n",
	       "GET sandbox req/s, keep-alive", ours, floor_rate,
	       ours / floor_rate, ">= 20000");
	printf("%-38s %12.1f %12.1f %8s  %s\n",
	       "RSS MB, N sandboxes (vs empty)", (double)rss1 / 1024,
	       (double)rss0 / 1024, "-", "<= 100");
	printf("%-38s %12.1f %12s %8s  %s\n", "RSS MB, after the load test",
	       (double)rss_kb(p.pid) / 1024, "-", "-",
	       "(request log ring full)");
	printf("  %d connections, %.0f s each; %d sandboxes; errors %ld/%ld\n",
	       conns, seconds, nsbx, errs, errs2);
	simproc_destroy(&p);
	curl_global_cleanup();
	return 0;
}
