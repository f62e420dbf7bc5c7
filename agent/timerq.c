#include "timerq.h"

#include "err.h"

#include <stdlib.h>

struct timerq {
	uv_timer_t timer;
	const struct clock *clk;
	timerq_fn fn;
	void *ud;
	struct timerq_entry **heap;
	size_t n, cap;
	int firing; /* arm once, after the due entries ran */
};

int timerq_new(uv_loop_t *loop, const struct clock *clk, timerq_fn fn, void *ud,
               struct timerq **out)
{
	struct timerq *q = calloc(1, sizeof(*q));

	if (q == NULL)
		return ERR_NOMEM;
	q->clk = clk;
	q->fn = fn;
	q->ud = ud;
	uv_timer_init(loop, &q->timer);
	q->timer.data = q;
	*out = q;
	return 0;
}

int timerq_reserve(struct timerq *q, size_t n)
{
	struct timerq_entry **h;
	size_t cap = q->cap ? q->cap : 64;

	if (n <= q->cap)
		return 0;
	while (cap < n)
		cap *= 2;
	if ((h = realloc(q->heap, cap * sizeof(*h))) == NULL)
		return ERR_NOMEM;
	q->heap = h;
	q->cap = cap;
	return 0;
}

size_t timerq_count(const struct timerq *q)
{
	return q->n;
}

/* ---- the heap ---- */

static void place(struct timerq *q, size_t i, struct timerq_entry *e)
{
	q->heap[i] = e;
	e->at = (uint32_t)(i + 1);
}

static void sift_up(struct timerq *q, size_t i)
{
	struct timerq_entry *e = q->heap[i];

	while (i > 0 && q->heap[(i - 1) / 2]->due > e->due) {
		place(q, i, q->heap[(i - 1) / 2]);
		i = (i - 1) / 2;
	}
	place(q, i, e);
}

static void sift_down(struct timerq *q, size_t i)
{
	struct timerq_entry *e = q->heap[i];
	size_t c;

	while ((c = 2 * i + 1) < q->n) {
		if (c + 1 < q->n && q->heap[c + 1]->due < q->heap[c]->due)
			c++;
		if (q->heap[c]->due >= e->due)
			break;
		place(q, i, q->heap[c]);
		i = c;
	}
	place(q, i, e);
}

/* Takes the entry at index i out, the last one filling its place. */
static void take_out(struct timerq *q, size_t i)
{
	struct timerq_entry *last = q->heap[--q->n];

	q->heap[i]->at = 0;
	if (i == q->n)
		return;
	place(q, i, last);
	sift_down(q, i);
	sift_up(q, last->at - 1);
}

/* ---- the loop's timer ---- */

static void on_fire(uv_timer_t *t);

static void arm(struct timerq *q)
{
	int64_t d;

	if (q->firing)
		return;
	if (q->n == 0) {
		uv_timer_stop(&q->timer);
		return;
	}
	d = q->heap[0]->due - clock_wall_ms(q->clk);
	uv_timer_start(&q->timer, on_fire, d > 0 ? (uint64_t)d : 0, 0);
}

/* Runs what is due by the clock (none if the loop woke a hair early). */
static void on_fire(uv_timer_t *t)
{
	struct timerq *q = t->data;
	int64_t now = clock_wall_ms(q->clk);
	struct timerq_entry *e;

	q->firing = 1;
	while (q->n > 0 && (e = q->heap[0])->due <= now) {
		take_out(q, 0);
		q->fn(q->ud, e);
	}
	q->firing = 0;
	arm(q);
}

int timerq_set(struct timerq *q, struct timerq_entry *e, int64_t due)
{
	struct timerq_entry *top = q->n ? q->heap[0] : NULL;

	if (e->at == 0 && q->n == q->cap)
		return ERR_NOMEM;
	e->due = due;
	if (e->at == 0) {
		place(q, q->n++, e);
		sift_up(q, e->at - 1);
	} else {
		sift_down(q, e->at - 1);
		sift_up(q, e->at - 1);
	}
	if (q->heap[0] != top || top == e)
		arm(q);
	return 0;
}

void timerq_cancel(struct timerq *q, struct timerq_entry *e)
{
	int top = e->at == 1;

	if (e->at == 0)
		return;
	take_out(q, e->at - 1);
	if (top)
		arm(q);
}

static void closed(uv_handle_t *h)
{
	struct timerq *q = h->data;

	free(q->heap);
	free(q);
}

void timerq_close(struct timerq *q)
{
	size_t i;

	if (q == NULL)
		return;
	for (i = 0; i < q->n; i++)
		q->heap[i]->at = 0;
	q->n = 0;
	uv_close((uv_handle_t *)&q->timer, closed);
}
