#ifndef HOPXD_TIMERQ_H
#define HOPXD_TIMERQ_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "clock.h"

/*
 * Many one-shot deadlines on one libuv timer: a binary min-heap of
 * entries embedded in their owners (16 bytes each where a uv_timer_t
 * takes 152: 100k records would carry 15 MB of timers). Due times are on
 * the given clock's wall time; the loop's timer only wakes the queue, so
 * a timer that fires a hair early re-arms instead of running anything
 * before it is due.
 */
struct timerq;

/* Embedded in the owner, zeroed before first use. */
struct timerq_entry {
	int64_t due;
	uint32_t at; /* heap index + 1; 0: not queued */
};

/* Runs for each entry that came due, after it left the queue (fn may
 * queue it again, or free its owner). */
typedef void (*timerq_fn)(void *ud, struct timerq_entry *e);

/* A queue on loop; ERR_NOMEM. */
int timerq_new(uv_loop_t *loop, const struct clock *clk, timerq_fn fn, void *ud,
               struct timerq **out);

/* Makes room for n queued entries, so that timerq_set of up to n never
 * fails. ERR_NOMEM (the room already made stays). */
int timerq_reserve(struct timerq *q, size_t n);

/* Queues e for due (wall ms), or moves it there. ERR_NOMEM: no room
 * (timerq_reserve), e not queued. */
int timerq_set(struct timerq *q, struct timerq_entry *e, int64_t due);

/* Takes e off the queue (nothing if it is not on it). */
void timerq_cancel(struct timerq *q, struct timerq_entry *e);

/* Entries queued. */
size_t timerq_count(const struct timerq *q);

/* Forgets every entry and frees q once its timer handle has closed. NULL
 * ok. */
void timerq_close(struct timerq *q);

#endif
