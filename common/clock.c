#include "clock.h"

#include <time.h>

static int64_t ts_ms(clockid_t id)
{
	struct timespec ts;

	clock_gettime(id, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int64_t sys_wall(void *ctx)
{
	(void)ctx;
	return ts_ms(CLOCK_REALTIME);
}

static int64_t sys_mono(void *ctx)
{
	(void)ctx;
	return ts_ms(CLOCK_MONOTONIC);
}

static const struct clock system_clock = {sys_wall, sys_mono, NULL};

const struct clock *clock_system(void)
{
	return &system_clock;
}

static int64_t fake_wall(void *ctx)
{
	return ((struct clock_fake *)ctx)->wall;
}

static int64_t fake_mono(void *ctx)
{
	return ((struct clock_fake *)ctx)->mono;
}

void clock_fake_init(struct clock_fake *f, int64_t wall_ms, int64_t mono_ms)
{
	f->clock.wall_ms = fake_wall;
	f->clock.mono_ms = fake_mono;
	f->clock.ctx = f;
	f->wall = wall_ms;
	f->mono = mono_ms;
}

void clock_fake_advance(struct clock_fake *f, int64_t ms)
{
	f->wall += ms;
	f->mono += ms;
}
