#include "skew.h"

#include <stdlib.h>
#include <string.h>

void skew_init(struct skew *k)
{
	memset(k, 0, sizeof(*k));
}

static int cmp(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;

	return x < y ? -1 : x > y;
}

static int64_t median(const struct skew *k)
{
	int64_t v[SKEW_SAMPLES];

	memcpy(v, k->sample, sizeof(v[0]) * (size_t)k->n);
	qsort(v, (size_t)k->n, sizeof(v[0]), cmp);
	return k->n % 2 ? v[k->n / 2] : (v[k->n / 2 - 1] + v[k->n / 2]) / 2;
}

int skew_sample(struct skew *k, int64_t local_ms, int64_t hopx_ms,
                int64_t res_ms)
{
	int64_t before = k->offset, m;

	/* HopX's time lies somewhere in [hopx_ms, hopx_ms + res_ms). */
	k->sample[k->next] = hopx_ms + res_ms / 2 - local_ms;
	k->next = (k->next + 1) % SKEW_SAMPLES;
	if (k->n < SKEW_SAMPLES)
		k->n++;
	k->known = 1;
	m = median(k);
	k->offset = llabs(m) < SKEW_DEADBAND_MS ? 0 : m;
	return llabs(k->offset - before) >= SKEW_DEADBAND_MS;
}

void skew_restart(struct skew *k)
{
	k->n = 0;
	k->next = 0;
}

int64_t skew_offset(const struct skew *k)
{
	return k->offset;
}
