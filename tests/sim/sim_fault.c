/*
 * Fault injection: what to do to one control-plane request. Decided under
 * the simulator lock from the configured rates, the per-key rate limit and
 * the scripted one-shot faults; carried out by the HTTP layer.
 */
#include "sim.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const action_names[] = {
        "none", "status", "reset", "stall", "malformed", "truncated", "slow",
};

const char *sim_action_str(enum sim_action a)
{
	return action_names[a];
}

static int action_parse(const char *str, enum sim_action *out)
{
	size_t i;

	for (i = 1; str && i < sizeof(action_names) / sizeof(action_names[0]);
	     i++) {
		if (strcmp(str, action_names[i]) == 0) {
			*out = (enum sim_action)i;
			return 0;
		}
	}
	return -1;
}

/* Fixed one-minute windows per key (one key per simulator). */
int sim_fault_rate_limit(struct sim *s, int *retry_after)
{
	int64_t now = sim_now(s), window = now / 60000;

	if (s->faults.rate_limit_rpm <= 0)
		return 0;
	if (window != s->rl_window) {
		s->rl_window = window;
		s->rl_count = 0;
	}
	if (++s->rl_count <= s->faults.rate_limit_rpm)
		return 0;
	*retry_after = (int)((window + 1) * 60000 - now + 999) / 1000;
	return 1;
}

static int script_matches(const struct sim_script *sc,
                          const struct sim_resp *rs)
{
	return sc->count > 0 &&
	       (sc->route[0] == '\0' ||
	        (rs->route && strcmp(sc->route, rs->route) == 0)) &&
	       (sc->sandbox_id[0] == '\0' ||
	        strcmp(sc->sandbox_id, rs->sandbox_id) == 0);
}

static int take_script(struct sim *s, const struct sim_resp *rs,
                       struct sim_fault_decision *d)
{
	struct sim_script *sc;

	for (sc = s->faults.scripts; sc; sc = sc->next) {
		if (!script_matches(sc, rs))
			continue;
		sc->count--;
		d->action = sc->action;
		d->status = sc->status;
		d->retry_after = sc->retry_after;
		return 1;
	}
	return 0;
}

/* Draws the random faults in a fixed order; at most one applies. */
static void random_fault(struct sim *s, struct sim_fault_decision *d)
{
	static const int five[] = {500, 502, 503};
	const struct sim_faults *f = &s->faults;
	double r = sim_rand01(s);

	if ((r -= f->rate_reset) < 0)
		d->action = SIM_ACT_RESET;
	else if ((r -= f->rate_stall) < 0)
		d->action = SIM_ACT_STALL;
	else if ((r -= f->rate_5xx) < 0) {
		d->action = SIM_ACT_STATUS;
		d->status = five[sim_rand(s) % 3];
		d->retry_after = d->status == 503 ? f->retry_after : 0;
	} else if ((r -= f->rate_429) < 0) {
		d->action = SIM_ACT_STATUS;
		d->status = 429;
		d->retry_after = f->retry_after;
	} else if ((r -= f->rate_malformed) < 0)
		d->action = SIM_ACT_MALFORMED;
	else if ((r -= f->rate_truncated) < 0)
		d->action = SIM_ACT_TRUNCATED;
	else if ((r -= f->rate_slow) < 0)
		d->action = SIM_ACT_SLOW;
}

static void latency(struct sim *s, const struct sim_resp *rs,
                    struct sim_fault_decision *d)
{
	const struct sim_faults *f = &s->faults;
	int64_t base = f->latency_ms, jitter = f->jitter_ms;
	int i;

	for (i = 0; i < f->nroute_latency; i++) {
		if (rs->route &&
		    strcmp(f->route_latency[i].route, rs->route) == 0) {
			base = f->route_latency[i].latency_ms;
			jitter = f->route_latency[i].jitter_ms;
		}
	}
	d->delay_ms =
	        base +
	        (jitter > 0 ? (int64_t)(sim_rand(s) % (unsigned)(jitter + 1))
	                    : 0);
}

void sim_fault_decide(struct sim *s, const struct sim_req *rq,
                      const struct sim_resp *rs, struct sim_fault_decision *d)
{
	memset(d, 0, sizeof(*d));
	/* Only the control plane misbehaves; /health and admin never do. */
	if (strncmp(rq->path, "/v1/", 4) != 0)
		return;
	latency(s, rs, d);
	if (sim_fault_rate_limit(s, &d->retry_after)) {
		d->action = SIM_ACT_STATUS;
		d->status = 429;
		return;
	}
	if (!take_script(s, rs, d))
		random_fault(s, d);
}

/* ---- configuration as JSON ---- */

static double num_or(const cJSON *j, const char *k, double dflt)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, k);

	return cJSON_IsNumber(v) ? v->valuedouble : dflt;
}

static const char *str_or(const cJSON *j, const char *k)
{
	const char *v =
	        cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(j, k));

	return v ? v : "";
}

static int check_rates(const struct sim_faults *f, char *err, size_t n)
{
	const double rates[] = {f->rate_5xx,       f->rate_429,
	                        f->rate_reset,     f->rate_stall,
	                        f->rate_malformed, f->rate_truncated,
	                        f->rate_slow};
	double sum = 0;
	size_t i;

	for (i = 0; i < sizeof(rates) / sizeof(rates[0]); i++) {
		if (rates[i] < 0 || rates[i] > 1) {
			snprintf(err, n, "rates must be between 0 and 1");
			return -1;
		}
		sum += rates[i];
	}
	if (sum > 1) {
		snprintf(err, n, "fault rates add up to more than 1");
		return -1;
	}
	if (f->latency_ms < 0 || f->jitter_ms < 0 || f->rate_limit_rpm < 0 ||
	    f->retry_after < 0) {
		snprintf(err, n,
		         "latency, jitter, retry_after and "
		         "rate_limit_rpm must not be negative");
		return -1;
	}
	return 0;
}

static void route_latency_from_json(struct sim_faults *f, const cJSON *j)
{
	const cJSON *rl = cJSON_GetObjectItemCaseSensitive(j, "route_latency");
	const cJSON *e;

	f->nroute_latency = 0;
	cJSON_ArrayForEach(e, rl)
	{
		struct sim_route_latency *r;

		if (f->nroute_latency >= 16 || e->string == NULL)
			break;
		r = &f->route_latency[f->nroute_latency++];
		snprintf(r->route, sizeof(r->route), "%s", e->string);
		r->latency_ms = (int64_t)num_or(e, "latency_ms", 0);
		r->jitter_ms = (int64_t)num_or(e, "jitter_ms", 0);
	}
}

int sim_faults_from_json(struct sim_faults *f, const cJSON *j, char *err,
                         size_t errn)
{
	struct sim_faults nf;

	if (!cJSON_IsObject(j)) {
		snprintf(err, errn, "faults must be a JSON object");
		return -1;
	}
	memset(&nf, 0, sizeof(nf));
	nf.latency_ms = (int64_t)num_or(j, "latency_ms", 0);
	nf.jitter_ms = (int64_t)num_or(j, "jitter_ms", 0);
	nf.rate_5xx = num_or(j, "rate_5xx", 0);
	nf.rate_429 = num_or(j, "rate_429", 0);
	nf.retry_after = (int)num_or(j, "retry_after", 1);
	nf.rate_reset = num_or(j, "rate_reset", 0);
	nf.rate_stall = num_or(j, "rate_stall", 0);
	nf.rate_malformed = num_or(j, "rate_malformed", 0);
	nf.rate_truncated = num_or(j, "rate_truncated", 0);
	nf.rate_slow = num_or(j, "rate_slow", 0);
	nf.rate_limit_rpm = (int)num_or(j, "rate_limit_rpm", 0);
	route_latency_from_json(&nf, j);
	if (check_rates(&nf, err, errn) != 0)
		return -1;
	nf.scripts = f->scripts; /* scripts are managed on their own */
	*f = nf;
	return 0;
}

cJSON *sim_faults_to_json(const struct sim_faults *f)
{
	cJSON *o = cJSON_CreateObject(), *rl, *scripts;
	const struct sim_script *sc;
	int i;

	cJSON_AddNumberToObject(o, "latency_ms", (double)f->latency_ms);
	cJSON_AddNumberToObject(o, "jitter_ms", (double)f->jitter_ms);
	cJSON_AddNumberToObject(o, "rate_5xx", f->rate_5xx);
	cJSON_AddNumberToObject(o, "rate_429", f->rate_429);
	cJSON_AddNumberToObject(o, "retry_after", f->retry_after);
	cJSON_AddNumberToObject(o, "rate_reset", f->rate_reset);
	cJSON_AddNumberToObject(o, "rate_stall", f->rate_stall);
	cJSON_AddNumberToObject(o, "rate_malformed", f->rate_malformed);
	cJSON_AddNumberToObject(o, "rate_truncated", f->rate_truncated);
	cJSON_AddNumberToObject(o, "rate_slow", f->rate_slow);
	cJSON_AddNumberToObject(o, "rate_limit_rpm", f->rate_limit_rpm);
	rl = cJSON_AddObjectToObject(o, "route_latency");
	for (i = 0; i < f->nroute_latency; i++) {
		cJSON *r =
		        cJSON_AddObjectToObject(rl, f->route_latency[i].route);

		cJSON_AddNumberToObject(r, "latency_ms",
		                        (double)f->route_latency[i].latency_ms);
		cJSON_AddNumberToObject(r, "jitter_ms",
		                        (double)f->route_latency[i].jitter_ms);
	}
	scripts = cJSON_AddArrayToObject(o, "scripts");
	for (sc = f->scripts; sc; sc = sc->next) {
		cJSON *e = cJSON_CreateObject();

		cJSON_AddStringToObject(e, "route", sc->route);
		cJSON_AddStringToObject(e, "sandbox_id", sc->sandbox_id);
		cJSON_AddNumberToObject(e, "count", sc->count);
		cJSON_AddStringToObject(e, "action",
		                        sim_action_str(sc->action));
		cJSON_AddNumberToObject(e, "status", sc->status);
		cJSON_AddItemToArray(scripts, e);
	}
	return o;
}

void sim_faults_clear(struct sim_faults *f)
{
	struct sim_script *sc = f->scripts, *next;

	for (; sc; sc = next) {
		next = sc->next;
		free(sc);
	}
	memset(f, 0, sizeof(*f));
}

int sim_script_add(struct sim_faults *f, const cJSON *j, char *err, size_t errn)
{
	const char *act = cJSON_GetStringValue(
	        cJSON_GetObjectItemCaseSensitive(j, "action"));
	struct sim_script sc, *p, **tail;

	memset(&sc, 0, sizeof(sc));
	snprintf(sc.route, sizeof(sc.route), "%s", str_or(j, "route"));
	snprintf(sc.sandbox_id, sizeof(sc.sandbox_id), "%s",
	         str_or(j, "sandbox_id"));
	sc.count = (int)num_or(j, "count", 1);
	sc.status = (int)num_or(j, "status", 500);
	sc.retry_after = (int)num_or(j, "retry_after", 0);
	if (action_parse(act ? act : "status", &sc.action) != 0 ||
	    sc.count < 1 || sc.status < 100 || sc.status > 599) {
		snprintf(err, errn,
		         "script needs action (status, reset, "
		         "stall, malformed, truncated, slow), "
		         "count >= 1 and a status 100..599");
		return -1;
	}
	if ((p = malloc(sizeof(*p))) == NULL)
		return -1;
	*p = sc;
	for (tail = &f->scripts; *tail; tail = &(*tail)->next)
		;
	*tail = p;
	return 0;
}
