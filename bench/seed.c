/*
 * Fills a hopxd database for the benchmarks through the store's own API
 * (so the rows are exactly what the agent writes): COUNT running records,
 * ids from FILE (one per line, e.g. the simulator's bulk ids) or made up,
 * each with a JWT-sized token expiring TTL ms from now, or none.
 *
 *   seed DB COUNT [--ids FILE] [--token-ttl-ms TTL]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "log.h"
#include "store.h"

#define BATCH 5000

struct opts {
	const char *db, *ids;
	long count;
	long long ttl; /* < 0: no token */
};

/* A token of the size HopX's JWTs have (~330 bytes). */
static void fake_token(char *out, size_t n, long i)
{
	static const char pad[] = "eyJzdWIiOiJzYW5kYm94In0eyJzdWIiOiJzYW5kYm94";
	int k = snprintf(out, n, "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.%08ld.",
	                 i);

	while (k > 0 && (size_t)k + sizeof(pad) < n && k < 300)
		k += snprintf(out + k, n - (size_t)k, "%s", pad);
}

static int next_id(FILE *f, char *id, size_t n, long i)
{
	size_t len;

	if (f == NULL) {
		snprintf(id, n, "17630000%010ld", i);
		return 0;
	}
	if (fgets(id, (int)n, f) == NULL)
		return -1;
	len = strcspn(id, "\r\n");
	id[len] = '\0';
	return len ? 0 : -1;
}

static int put_one(struct store *s, const struct opts *o, const char *id,
                   long i, int64_t now)
{
	struct store_sandbox r;
	char tok[400];
	int e;

	store_sandbox_init(&r);
	r.id = (char *)id;
	r.status = SBX_RUNNING;
	r.template_name = "code-interpreter";
	r.region = "us-east";
	r.confirmed_at = now;
	e = store_sandbox_put(s, &r, STORE_CAUSE_USER, NULL);
	if (e == 0 && o->ttl >= 0) {
		fake_token(tok, sizeof(tok), i);
		e = store_token_put(s, id, tok, now + o->ttl, now, NULL);
	}
	return e;
}

static int fill(struct store *s, const struct opts *o)
{
	FILE *f = o->ids ? fopen(o->ids, "r") : NULL;
	int64_t now = clock_wall_ms(clock_system());
	char id[128];
	long i;
	int e = o->ids && f == NULL ? -1 : 0;

	for (i = 0; e == 0 && i < o->count; i++) {
		if (i % BATCH == 0 && (e = store_begin(s)) != 0)
			break;
		if ((e = next_id(f, id, sizeof(id), i)) == 0)
			e = put_one(s, o, id, i, now);
		if (e == 0 && (i % BATCH == BATCH - 1 || i == o->count - 1))
			e = store_commit(s);
	}
	if (f)
		fclose(f);
	return e;
}

int main(int argc, char **argv)
{
	struct opts o = {NULL, NULL, 0, -1};
	struct store *s = NULL;
	int i, e;

	for (i = 3; i + 1 < argc; i += 2) {
		if (strcmp(argv[i], "--ids") == 0)
			o.ids = argv[i + 1];
		else if (strcmp(argv[i], "--token-ttl-ms") == 0)
			o.ttl = atoll(argv[i + 1]);
		else
			break;
	}
	if (argc < 3 || i != argc || (o.count = atol(argv[2])) < 0) {
		fprintf(stderr, "usage: seed DB COUNT [--ids FILE] "
		                "[--token-ttl-ms TTL]\n");
		return 2;
	}
	o.db = argv[1];
	log_init("seed", LOG_LVL_WARN);
	if ((e = store_open(o.db, 0, NULL, &s, NULL)) == 0)
		e = fill(s, &o);
	if (s)
		store_close(s);
	if (e != 0)
		fprintf(stderr, "seed: %s: cannot fill (%d)\n", o.db, e);
	return e != 0;
}
