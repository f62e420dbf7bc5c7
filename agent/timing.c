#include "timing.h"

/*
 * 83-90%: a token costs about 1/0.865 = 1.16 refreshes per life, which
 * with the periodic list (0.12 per sandbox per hour) keeps the steady
 * state under 1.3 requests per sandbox per hour (bench: 70-90% cost 1.37,
 * 80-90% 1.31). A tenth of the life (at most 5 min) stays for retries,
 * and 7% of it spreads tokens issued together (peak/mean < 2).
 */
#define RENEW_MIN_FRACTION 83 /* percent of the life */
#define RENEW_SPREAD       7  /* percent of the life, jittered */
#define RENEW_MARGIN_MAX   (5 * 60 * 1000)
#define POLL_FIRST_MS      1000
#define POLL_MAX_MS        30000

uint32_t timing_rand(uint32_t *state)
{
	uint32_t x = *state;

	x ^= x << 13;
	x ^= x >> 17;
	x ^= x << 5;
	return *state = x;
}

int64_t timing_backoff(int attempt, int64_t base, int64_t cap, uint32_t r,
                       int64_t not_before)
{
	int64_t ceil = base, d;
	int i;

	for (i = 1; i < attempt && ceil < cap; i++)
		ceil *= 2;
	if (ceil > cap)
		ceil = cap;
	d = ceil > 0 ? (int64_t)(r % (uint64_t)(ceil + 1)) : 0;
	return not_before > d ? not_before : d;
}

int64_t timing_renew_at(int64_t issued, int64_t expires, uint32_t r)
{
	int64_t life = expires - issued, at, margin;

	if (life <= 0)
		return issued;
	at = issued + life * RENEW_MIN_FRACTION / 100 +
	     (int64_t)((double)life * RENEW_SPREAD / 100 *
	               ((double)r / 4294967296.0));
	margin = life / 10 < RENEW_MARGIN_MAX ? life / 10 : RENEW_MARGIN_MAX;
	return at > expires - margin ? expires - margin : at;
}

int64_t timing_keepalive_at(int64_t expires_at, int64_t keepalive_s,
                            int64_t now)
{
	if (expires_at <= 0)
		return now;
	return expires_at - keepalive_s * 1000 / 3;
}

int64_t timing_poll_delay(int polls)
{
	int64_t d = POLL_FIRST_MS;

	while (polls-- > 0 && d < POLL_MAX_MS)
		d *= 2;
	return d < POLL_MAX_MS ? d : POLL_MAX_MS;
}

int64_t timing_clock_jump(int64_t wall0, int64_t mono0, int64_t wall1,
                          int64_t mono1, int64_t tolerance)
{
	int64_t jump = (wall1 - wall0) - (mono1 - mono0);

	return jump > tolerance || jump < -tolerance ? jump : 0;
}
