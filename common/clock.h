#ifndef HOPXD_CLOCK_H
#define HOPXD_CLOCK_H

#include <stdint.h>

/*
 * Time behind an interface so that logic can be tested with a pretended
 * "now" (curl tests/unit/unit1303.c). Wall time (Unix epoch) is for what is
 * stored and shown; monotonic time is for timers, so that a clock step
 * never makes a valid token look expired. Both in milliseconds.
 */
struct clock {
	int64_t (*wall_ms)(void *ctx);
	int64_t (*mono_ms)(void *ctx);
	void *ctx;
};

/* The process clocks (CLOCK_REALTIME, CLOCK_MONOTONIC). Never NULL. */
const struct clock *clock_system(void);

static inline int64_t clock_wall_ms(const struct clock *c)
{
	return c->wall_ms(c->ctx);
}

static inline int64_t clock_mono_ms(const struct clock *c)
{
	return c->mono_ms(c->ctx);
}

/* A clock that moves only when told to. The caller owns the struct. */
struct clock_fake {
	struct clock clock;
	int64_t wall;
	int64_t mono;
};

void clock_fake_init(struct clock_fake *f, int64_t wall_ms, int64_t mono_ms);

/* Moves both clocks forward by ms. */
void clock_fake_advance(struct clock_fake *f, int64_t ms);

#endif
