#ifndef HOPXD_EVENTS_H
#define HOPXD_EVENTS_H

/*
 * The event log as clients see it: one event as JSON, and the fan-out of
 * new events to every subscriber. Whoever appends events (sessions,
 * reconcile, the methods) calls events_publish afterwards.
 */

#include <cjson/cJSON.h>

#include "store.h"

struct agent;

/* {"seq", "at", "sandbox_id", "type", "cause", "detail"}; caller owns. */
cJSON *events_json(const struct store_event *e);

/* Sends every event not yet sent to each subscriber. */
void events_publish(struct agent *a);

#endif
