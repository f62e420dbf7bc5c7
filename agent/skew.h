#ifndef HOPXD_SKEW_H
#define HOPXD_SKEW_H

/*
 * How far HopX's clock is from this machine's: tokens expire by HopX's
 * clock, so every decision about them (still valid, renew at, --min-ttl)
 * is made in HopX's time, this machine's wall clock plus the offset. The
 * offset comes from the Date header of HopX's answers (1 s resolution):
 * the median of the last SKEW_SAMPLES samples, so that a slow answer or
 * the rounding of one header does not move it, and 0 below a second
 * (within what the header can tell). Pure: callers pass the times.
 */

#include <stdint.h>

#define SKEW_SAMPLES     9
#define SKEW_DEADBAND_MS 1000 /* the Date header's resolution */
#define SKEW_WARN_MS     5000 /* beyond this, people are told */

struct skew {
	int64_t sample[SKEW_SAMPLES]; /* HopX minus local, ms, a ring */
	int n;                        /* samples held, <= SKEW_SAMPLES */
	int next;                     /* where the next one goes */
	int64_t offset;               /* the estimate */
	int known;                    /* a sample arrived since init */
};

void skew_init(struct skew *k);

/*
 * Adds what HopX's clock read (hopx_ms, truncated to res_ms as the Date
 * header is) when this machine's read local_ms. Returns 1 when the
 * estimate moved by at least SKEW_DEADBAND_MS (timers planned on it are
 * then re-planned), else 0.
 */
int skew_sample(struct skew *k, int64_t local_ms, int64_t hopx_ms,
                int64_t res_ms);

/*
 * Forgets the samples but keeps the estimate until the next one: after
 * this machine's clock jumped, older samples measure the old clock.
 */
void skew_restart(struct skew *k);

/* HopX's clock minus this machine's, ms (0 until known). */
int64_t skew_offset(const struct skew *k);

#endif
