#ifndef HOPXD_RECONCILE_H
#define HOPXD_RECONCILE_H

/*
 * Reconcile: makes every tracked record agree with HopX (DESIGN.md
 * "Agent behaviour" 2). A run reads the list endpoint page by page while
 * that is cheaper than a GET per record, GETs what the list did not
 * mention, then acts per status: running keeps a still-valid token or
 * refreshes; paused is resumed (policy) and refreshed; stopped is only
 * marked; creating is polled; 404 is gone. A refused API key changes
 * nothing; transient errors leave records stale and the run is retried
 * with backoff. Every run stores a report (store_report_add) and appends
 * a "reconciled" event. Runs happen at start, every interval, and on
 * demand; asking while one runs joins it. Open create intents whose
 * answer was lost make the run list everything and adopt what they made
 * (adopt.h).
 */

#include <cjson/cJSON.h>
#include <stdint.h>

struct agent;
struct hopx;
struct reconcile;
struct sessions;

int reconcile_create(struct agent *a, struct sessions *ss, struct hopx *hx,
                     int64_t interval_ms, struct reconcile **out);

/* Fails waiting callers (shutting down) and frees; needs a loop run. */
void reconcile_destroy(struct reconcile *rc);

/*
 * Called with the report once the run ends (report valid only during the
 * call); err is 0, or ERR_AUTH / ERR_NET ... when the run could not
 * learn HopX's state (the report then says why).
 */
typedef void (*reconcile_fn)(void *ud, int err, const cJSON *report);

/*
 * Starts a run ("start", "periodic" or "user") or joins the one running.
 * fn may be NULL. Returns 0 or ERR_NOMEM / ERR_AUTH (no API client).
 */
int reconcile_run(struct reconcile *rc, const char *trigger, reconcile_fn fn,
                  void *ud);

/*
 * Marks a create intent as in flight in this process (on) or answered:
 * runs adopt only intents whose answer will never come.
 */
void reconcile_hold(struct reconcile *rc, int64_t intent, int on);

/*
 * A create's outcome is unknown (its intent stays open): in a fleet its
 * name stays claimed until this agent settles it, so a run that may
 * adopt comes soon rather than at the next interval.
 */
void reconcile_settle_soon(struct reconcile *rc);

/* Whether a run is going on, and when the next periodic one starts. */
int reconcile_running(const struct reconcile *rc);

/*
 * In a fleet the registry's copy is already HopX's word as the fleet
 * knows it and one agent (the leader) reconciles for all: at start,
 * background work begins without a run, the first periodic one comes
 * soon, and a periodic run on any other agent only re-arms the timer.
 * An agent with creates it was cut off in (open intents) runs its own
 * first, to adopt what they made.
 */
void reconcile_fleet_start(struct reconcile *rc);
int64_t reconcile_next_at(const struct reconcile *rc);

#endif
