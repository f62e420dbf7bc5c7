#ifndef HOPXD_TIMING_H
#define HOPXD_TIMING_H

/*
 * When the agent acts: pure functions of times and a random number, so
 * that the rules (renew at ~80% of a token's life, re-arm a keep-alive
 * before its deadline, back off with full jitter) are unit-tested without
 * a loop or a clock. Times are milliseconds.
 */

#include <stdint.h>

/* A xorshift32 step; *state must not be 0. */
uint32_t timing_rand(uint32_t *state);

/*
 * Delay before retry number attempt (1 = the first retry): uniform in
 * [0, min(cap, base * 2^(attempt-1))] ("full jitter"), never below
 * not_before (a server's Retry-After, 0 for none).
 */
int64_t timing_backoff(int attempt, int64_t base, int64_t cap, uint32_t r,
                       int64_t not_before);

/*
 * When to renew a token issued at issued and expiring at expires (wall
 * ms): 83-90% into its life (r picks where), so that tokens issued
 * together do not renew together, and always at least a tenth of its
 * life (at most 5 minutes) before it expires.
 */
int64_t timing_renew_at(int64_t issued, int64_t expires, uint32_t r);

/*
 * When to re-arm a keep-alive of keepalive_s seconds for a sandbox that
 * HopX kills at expires_at (wall ms; 0: no deadline, re-arm now): once a
 * third of the period is left, so that one failed attempt still leaves
 * time for retries.
 */
int64_t timing_keepalive_at(int64_t expires_at, int64_t keepalive_s,
                            int64_t now);

/* Delay between polls of a creating sandbox: 1 s doubling to 30 s. */
int64_t timing_poll_delay(int polls);

/*
 * How far the wall clock moved against the monotonic one between two
 * readings (ms), or 0 within tolerance. The monotonic clock stops while
 * the machine sleeps and never steps; the wall clock does both: a jump
 * is a suspend and resume, or a clock set (NTP, by hand).
 */
int64_t timing_clock_jump(int64_t wall0, int64_t mono0, int64_t wall1,
                          int64_t mono1, int64_t tolerance);

#endif
