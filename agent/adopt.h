#ifndef HOPXD_ADOPT_H
#define HOPXD_ADOPT_H

/*
 * Adopting what a lost create made (adopt_*). A create writes an intent
 * before its POST (RELIABILITY.md 1.1). When the answer never arrives (the
 * agent was killed, the response was lost), HopX may hold a sandbox that
 * nobody tracks. HopX has neither an idempotency key nor a name field, so
 * a complete list is the only evidence: an open intent takes the oldest
 * untracked sandbox of its template created inside its window; an intent
 * nothing matches made nothing. The new-record writer lives here too, so
 * attach, create and adoption store a HopX sandbox one way.
 */

#include "hopx.h"
#include "store.h"

#include <cjson/cJSON.h>
#include <stddef.h>
#include <stdint.h>

/* How far HopX's clock (created_at, whole seconds) may be from ours. */
#define ADOPT_SKEW_MS 10000

/* An open create intent, as matching needs it. */
struct adopt_intent {
	int64_t id;
	int64_t created_at; /* ms, our clock */
	char template_id[32];
	char template_name[64];
};

/*
 * Reads the template an intent's request asked for (its "body" object,
 * or the whole request as stored before labels were kept). Returns 0 or
 * ERR_INVAL when the text names no template.
 */
int adopt_intent_parse(const char *request, struct adopt_intent *out);

/*
 * Matches intents (oldest first) to candidates, each used at most once:
 * same template, created_at within [intent - skew, until + skew], the
 * earliest such candidate. pick[i] gets a candidate index or -1. Returns
 * how many intents matched.
 */
size_t adopt_match(const struct adopt_intent *in, size_t nin,
                   const struct hopx_sandbox *cand, size_t ncand, int64_t until,
                   long *pick);

/*
 * Writes a new record for h with its name (or NULL), labels (an object of
 * strings, or NULL) and token, and closes the create intent that made it
 * (0: none), in one transaction: a crash never leaves a tracked sandbox
 * with its intent open. ERR_EXISTS: the name belongs to another sandbox
 * (nothing written).
 */
int adopt_put(struct store *st, const struct hopx_sandbox *h, const char *name,
              const cJSON *labels, int auto_resume, int64_t now,
              enum store_cause cause, int64_t intent);

/*
 * One reconcile's adoption: the open intents, the untracked sandboxes a
 * complete list showed, and the settling. Loaded at the start of a run
 * with no create in flight; NULL *out: nothing open. The intents' times
 * (this machine's clock) are moved by skew (HopX's minus ours, hopx.h) to
 * be matched against the sandboxes' created_at, which is HopX's; until
 * and now given to settle are in HopX's time too.
 */
struct adopt_run;

int adopt_run_open(struct store *st, int64_t skew, struct adopt_run **out);

/* An untracked sandbox from the list; kept if some intent's window fits. */
void adopt_run_offer(struct adopt_run *ar, const struct hopx_sandbox *h);

/* What settling asks of the agent's memory. */
struct adopt_hooks {
	/* 1 when id is tracked now (a create answered during the run). */
	int (*known)(void *ud, const char *id);
	/* Called per adopted record. */
	void (*tracked)(void *ud, const char *id);
	void *ud;
	/* Called per named create found to have made nothing (may be
	 * NULL). */
	void (*nothing)(void *ud, const char *name);
};

/*
 * After a complete list, with no create in flight: drops candidates
 * tracked since they were offered, adopts the matches (named and
 * labelled as their create asked, cause "agent"), closes intents nothing
 * matched as failed once they are older than the skew (a younger one is
 * left open). until: when the run started. Returns how many were adopted.
 */
size_t adopt_run_settle(struct adopt_run *ar, struct store *st, int64_t until,
                        const struct adopt_hooks *hk);

/*
 * Only sandboxes HopX made before cap (its clock, ms) may be adopted: in
 * a fleet, anything later may be another agent's create.
 */
void adopt_run_cap(struct adopt_run *ar, int64_t cap);

void adopt_run_free(struct adopt_run *ar);

#endif
