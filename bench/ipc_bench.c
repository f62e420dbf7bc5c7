/*
 * Token broker benchmark: requests/s and p50/p99 latency of `token` (the
 * call other processes make to share a sandbox) over the agent's socket
 * with 1 and 50 clients, one request in flight each. Every answer must
 * carry the stored token (checked). bench/bench.py runs redis-benchmark
 * GET over a Unix socket beside it.
 *
 *   ipc_bench HOPXD [--seconds S]
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "agentproc.h"
#include "log.h"
#include "store.h"

#define LAT_MAX 2000000
#define TOKEN   "eyJhbGciOiJIUzI1NiJ9.e30.sig"

struct client {
	const struct agentproc *p;
	double seconds;
	double *lat; /* ms */
	long cap;    /* room in lat */
	long n;
	long errors;
};

static double now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static void *run_client(void *arg)
{
	struct client *c = arg;
	char line[8192], req[128];
	int fd = agentproc_connect(c->p);
	double end = now_ms() + c->seconds * 1000, t0;

	while (fd >= 0 && (t0 = now_ms()) < end && c->n < c->cap) {
		snprintf(req, sizeof(req),
		         "{\"id\":%ld,\"method\":\"token\",\"params\":{\"ref\":"
		         "\"sbx%04ld\"}}",
		         c->n, c->n % 100);
		if (agentproc_rpc(fd, req, line, sizeof(line)) != 0 ||
		    strstr(line, TOKEN) == NULL) {
			c->errors++;
			break;
		}
		c->lat[c->n++] = now_ms() - t0;
	}
	if (fd >= 0)
		close(fd);
	return NULL;
}

static int cmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

/* Runs k clients; prints one row. */
static void measure(const struct agentproc *p, int k, double seconds)
{
	struct client *cs = calloc((size_t)k, sizeof(*cs));
	pthread_t *t = calloc((size_t)k, sizeof(*t));
	double *all, t0 = now_ms(), elapsed;
	long total = 0, errors = 0, i, j, at = 0;

	for (i = 0; i < k; i++) {
		cs[i] = (struct client){p, seconds, NULL, LAT_MAX / k, 0, 0};
		cs[i].lat = malloc(sizeof(double) * (size_t)cs[i].cap);
		pthread_create(&t[i], NULL, run_client, &cs[i]);
	}
	for (i = 0; i < k; i++) {
		pthread_join(t[i], NULL);
		total += cs[i].n;
		errors += cs[i].errors;
	}
	elapsed = (now_ms() - t0) / 1000;
	all = malloc(sizeof(double) * (size_t)(total ? total : 1));
	for (i = 0; i < k; i++)
		for (j = 0; j < cs[i].n; j++)
			all[at++] = cs[i].lat[j];
	qsort(all, (size_t)total, sizeof(double), cmp);
	printf("%-28s %10.0f %8.3f %8.3f %8ld\n",
	       k == 1 ? "hopxd token, 1 client" : "hopxd token, 50 clients",
	       (double)total / elapsed, total ? all[total / 2] : 0,
	       total ? all[total * 99 / 100] : 0, errors);
	for (i = 0; i < k; i++)
		free(cs[i].lat);
	free(all);
	free(cs);
	free(t);
}

static void seed(const struct agentproc *p)
{
	struct store_sandbox r;
	struct store *s = NULL;
	char id[16];
	int i;

	if (store_open(p->db, 0, NULL, &s, NULL) != 0)
		exit(1);
	store_begin(s);
	for (i = 0; i < 100; i++) {
		store_sandbox_init(&r);
		snprintf(id, sizeof(id), "sbx%04d", i);
		r.id = id;
		r.status = SBX_RUNNING;
		store_sandbox_put(s, &r, STORE_CAUSE_USER, NULL);
		store_token_put(s, id, TOKEN, 1900000000000LL, 0, NULL);
	}
	store_commit(s);
	store_close(s);
}

int main(int argc, char **argv)
{
	/* token needs an API key; tokens valid until 2030 are answered from
	 * the store, so no API call is made (a closed port stands for it). */
	static const char *const args[] = {"--max-connections=1000",
	                                   "--api-base=http://127.0.0.1:9",
	                                   "--sync-interval=86400", NULL};
	struct agentproc p;
	double seconds = 3;

	if (argc < 2) {
		fprintf(stderr, "usage: ipc_bench HOPXD [--seconds S]\n");
		return 2;
	}
	if (argc > 3 && strcmp(argv[2], "--seconds") == 0)
		seconds = atof(argv[3]);
	log_init("ipc_bench", LOG_LVL_WARN);
	setenv("HOPX_API_KEY", "hopx_bench_key", 1);
	if (agentproc_init(&p) != 0)
		return 1;
	seed(&p);
	if (agentproc_start(&p, argv[1], args) != 0) {
		fprintf(stderr, "ipc_bench: hopxd did not start\n");
		return 1;
	}
	printf("%-28s %10s %8s %8s %8s\n", "figure", "req/s", "p50 ms",
	       "p99 ms", "errors");
	measure(&p, 1, seconds);
	measure(&p, 50, seconds);
	agentproc_destroy(&p);
	return 0;
}
