/*
 * Token broker benchmark: requests/s and p50/p99 latency of `token` (the
 * call other processes make to share a sandbox) over the agent's socket
 * with 1 and 50 clients, one request in flight each. Every answer must
 * carry the stored token (checked). bench/bench.py runs redis-benchmark
 * GET over a Unix socket beside it.
 *
 *   ipc_bench HOPXD [--seconds S] [--store CONNINFO]
 *
 * With --store the agent runs in a fleet on that PostgreSQL registry,
 * which the caller has seeded with the same sandboxes and tokens
 * (bench/bench.py); the figures are then those of an agent in fleet mode.
 */
#include <poll.h>
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

static double now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/*
 * The client model of redis-benchmark, its peer: one thread, k
 * connections, each with one request outstanding, driven by poll. A
 * thread per connection measured mostly the threads' switching on two
 * cores, not the agent.
 */
struct conn {
	int fd;
	long n;    /* requests made on it */
	double t0; /* when the outstanding one left */
	char in[8192];
	size_t len;
};

static int send_req(struct conn *c)
{
	char req[128];
	int n = snprintf(req, sizeof(req),
	                 "{\"id\":%ld,\"method\":\"token\",\"params\":"
	                 "{\"ref\":\"sbx%04ld\"}}\n",
	                 c->n, c->n % 100);

	c->t0 = now_ms();
	c->n++;
	return write(c->fd, req, (size_t)n) == n ? 0 : -1;
}

/* Reads what came; 1 when a whole reply is in (checked), -1 on error. */
static int take_reply(struct conn *c, long *errors)
{
	ssize_t got = read(c->fd, c->in + c->len, sizeof(c->in) - 1 - c->len);
	char *nl;

	if (got <= 0)
		return -1;
	c->len += (size_t)got;
	c->in[c->len] = '\0';
	if ((nl = memchr(c->in, '\n', c->len)) == NULL)
		return c->len < sizeof(c->in) - 1 ? 0 : -1;
	*nl = '\0';
	if (strstr(c->in, TOKEN) == NULL)
		(*errors)++;
	c->len = 0; /* one request outstanding: nothing follows the line */
	return 1;
}

static int cmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

static void report(int k, double *lat, long total, double elapsed_s,
                   long errors)
{
	qsort(lat, (size_t)total, sizeof(double), cmp);
	printf("%-28s %10.0f %8.3f %8.3f %8ld\n",
	       k == 1 ? "hopxd token, 1 client" : "hopxd token, 50 clients",
	       (double)total / elapsed_s, total ? lat[total / 2] : 0,
	       total ? lat[total * 99 / 100] : 0, errors);
}

static void measure(const struct agentproc *p, int k, double seconds)
{
	struct conn *cs = calloc((size_t)k, sizeof(*cs));
	struct pollfd *pf = calloc((size_t)k, sizeof(*pf));
	double *lat = malloc(sizeof(double) * LAT_MAX), t0 = now_ms(), end;
	long total = 0, errors = 0;
	int i, live = 0;

	for (i = 0; i < k; i++) {
		cs[i].fd = agentproc_connect(p);
		pf[i] = (struct pollfd){cs[i].fd, POLLIN, 0};
		if (cs[i].fd >= 0 && send_req(&cs[i]) == 0)
			live++;
	}
	end = t0 + seconds * 1000;
	while (live == k && now_ms() < end && total < LAT_MAX) {
		if (poll(pf, (nfds_t)k, 1000) <= 0)
			break;
		for (i = 0; i < k && live == k; i++) {
			int r;

			if (!(pf[i].revents & (POLLIN | POLLHUP | POLLERR)))
				continue;
			if ((r = take_reply(&cs[i], &errors)) < 0) {
				errors++;
				live--;
			} else if (r == 1) {
				lat[total++] = now_ms() - cs[i].t0;
				if (send_req(&cs[i]) != 0)
					live--;
			}
		}
	}
	report(k, lat, total, (now_ms() - t0) / 1000, errors);
	for (i = 0; i < k; i++)
		if (cs[i].fd >= 0)
			close(cs[i].fd);
	free(lat);
	free(pf);
	free(cs);
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

/* Until the last seeded sandbox's token is served (a fleet's copy is read
 * from the registry after the agent answers): 0, or -1 after 30 s. */
static int wait_seeded(const struct agentproc *p)
{
	char out[4096];
	int fd, i, ok = 0;

	for (i = 0; i < 300 && !ok; i++) {
		if ((fd = agentproc_connect(p)) < 0)
			return -1;
		ok = agentproc_rpc(fd,
		                   "{\"id\":1,\"method\":\"token\",\"params\":"
		                   "{\"ref\":\"sbx0099\"}}",
		                   out, sizeof(out)) == 0 &&
		     strstr(out, TOKEN) != NULL;
		close(fd);
		if (!ok)
			poll(NULL, 0, 100);
	}
	return ok ? 0 : -1;
}

static int usage(void)
{
	fprintf(stderr,
	        "usage: ipc_bench HOPXD [--seconds S] [--store CONNINFO]\n");
	return 2;
}

int main(int argc, char **argv)
{
	/* token needs an API key; tokens valid until 2030 are answered from
	 * the store, so no API call is made (a closed port stands for it). */
	const char *args[] = {"--max-connections=1000",
	                      "--api-base=http://127.0.0.1:9",
	                      "--sync-interval=86400",
	                      NULL,
	                      NULL,
	                      NULL};
	struct agentproc p;
	double seconds = 3;
	int i;

	if (argc < 2)
		return usage();
	for (i = 2; i + 1 < argc; i += 2) {
		if (strcmp(argv[i], "--seconds") == 0)
			seconds = atof(argv[i + 1]);
		else if (strcmp(argv[i], "--store") == 0) {
			args[3] = "--store";
			args[4] = argv[i + 1];
		} else
			return usage();
	}
	if (i != argc)
		return usage();
	log_init("ipc_bench", LOG_LVL_WARN);
	setenv("HOPX_API_KEY", "hopx_bench_key", 1);
	if (agentproc_init(&p) != 0)
		return 1;
	if (args[3] == NULL)
		seed(&p);
	if (agentproc_start(&p, argv[1], args) != 0 || wait_seeded(&p) != 0) {
		fprintf(stderr, "ipc_bench: hopxd did not start or did not "
		                "serve the seeded tokens\n");
		agentproc_destroy(&p);
		return 1;
	}
	printf("%-28s %10s %8s %8s %8s\n", "figure", "req/s", "p50 ms",
	       "p99 ms", "errors");
	measure(&p, 1, seconds);
	measure(&p, 50, seconds);
	agentproc_destroy(&p);
	return 0;
}
