#include "adopt.h"

#include "err.h"
#include "log.h"
#include "sbx.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void copy(char *dst, size_t n, const cJSON *o, const char *key)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);

	dst[0] = '\0';
	if (cJSON_IsString(v))
		snprintf(dst, n, "%s", v->valuestring);
}

/* The template an intent asked for, from its parsed request. */
static int intent_read(const cJSON *j, struct adopt_intent *out)
{
	const cJSON *body = cJSON_GetObjectItemCaseSensitive(j, "body");

	if (!cJSON_IsObject(body))
		body = j;
	copy(out->template_id, sizeof(out->template_id), body, "template_id");
	copy(out->template_name, sizeof(out->template_name), body,
	     "template_name");
	return out->template_id[0] || out->template_name[0] ? 0 : ERR_INVAL;
}

int adopt_intent_parse(const char *request, struct adopt_intent *out)
{
	cJSON *j = cJSON_Parse(request);
	int e = intent_read(j, out);

	cJSON_Delete(j);
	return e;
}

static int same_template(const struct adopt_intent *in,
                         const struct hopx_sandbox *h)
{
	if (in->template_id[0])
		return strcmp(in->template_id, h->template_id) == 0;
	return strcmp(in->template_name, h->template_name) == 0;
}

/* The earliest unused candidate that fits, or -1. */
static long best(const struct adopt_intent *in, const struct hopx_sandbox *c,
                 size_t n, const char *used, int64_t until)
{
	long b = -1;
	size_t j;

	for (j = 0; j < n; j++) {
		if (used[j] || !same_template(in, &c[j]) ||
		    c[j].created_at < in->created_at - ADOPT_SKEW_MS ||
		    c[j].created_at > until + ADOPT_SKEW_MS)
			continue;
		if (b < 0 || c[j].created_at < c[b].created_at)
			b = (long)j;
	}
	return b;
}

size_t adopt_match(const struct adopt_intent *in, size_t nin,
                   const struct hopx_sandbox *cand, size_t ncand, int64_t until,
                   long *pick)
{
	char *used = calloc(ncand ? ncand : 1, 1);
	size_t i, matched = 0;

	for (i = 0; i < nin; i++) {
		pick[i] = used ? best(&in[i], cand, ncand, used, until) : -1;
		if (pick[i] >= 0) {
			used[pick[i]] = 1;
			matched++;
		}
	}
	free(used);
	return matched;
}

static void record_from(struct store_sandbox *r, const struct hopx_sandbox *h)
{
	store_sandbox_init(r);
	r->id = strdup(h->id);
	r->status = h->status;
	r->template_id = h->template_id[0] ? strdup(h->template_id) : NULL;
	r->template_name =
	        h->template_name[0] ? strdup(h->template_name) : NULL;
	r->region = h->region[0] ? strdup(h->region) : NULL;
	r->public_host = h->public_host[0] ? strdup(h->public_host) : NULL;
	r->timeout_seconds =
	        h->timeout_seconds >= 0 ? h->timeout_seconds : STORE_NULL;
	r->expires_at = h->expires_at > 0 ? h->expires_at : STORE_NULL;
	r->created_at = h->created_at > 0 ? h->created_at : STORE_NULL;
	r->vcpu = h->vcpu >= 0 ? h->vcpu : STORE_NULL;
	r->memory_mb = h->memory_mb >= 0 ? h->memory_mb : STORE_NULL;
	r->disk_mb = h->disk_mb >= 0 ? h->disk_mb : STORE_NULL;
	r->internet_access =
	        h->internet_access >= 0 ? h->internet_access : STORE_NULL;
}

static int put_labels(struct store *st, const char *id, const cJSON *labels,
                      enum store_cause cause)
{
	const cJSON *v;
	int e = 0;

	cJSON_ArrayForEach(v, labels)
	{
		if (e == 0 && cJSON_IsString(v))
			e = store_label_set(st, id, v->string, v->valuestring,
			                    cause);
	}
	return e;
}

int adopt_put(struct store *st, const struct hopx_sandbox *h, const char *name,
              const cJSON *labels, int auto_resume, int64_t now,
              enum store_cause cause, int64_t intent)
{
	struct store_sandbox r;
	int e;

	record_from(&r, h);
	r.name = name ? strdup(name) : NULL;
	r.auto_resume = auto_resume;
	r.confirmed_at = now;
	if ((e = store_begin(st)) != 0)
		goto out;
	e = store_sandbox_put(st, &r, cause, NULL);
	if (e == 0)
		e = put_labels(st, h->id, labels, cause);
	if (e == 0 && h->token[0])
		e = store_token_put(st, h->id, h->token, h->token_expires_at,
		                    now, NULL);
	if (e == 0 && intent > 0)
		e = store_intent_resolve(st, intent, h->id);
	e = e == 0 ? store_commit(st) : (store_rollback(st), e);
out:
	store_sandbox_finish(&r);
	return e;
}

/* ---- one reconcile's adoption ---- */

#define CAND_MAX 1000 /* untracked sandboxes kept per run */

struct adopt_run {
	struct adopt_intent *in; /* oldest first */
	char (*name)[SBX_NAME_MAX + 1];
	cJSON **labels;
	size_t n, cap;
	int64_t oldest;
	int64_t skew;    /* HopX's clock minus ours: intents are in ours */
	int64_t *unsent; /* intents whose POST never left: made nothing */
	char (*unsent_name)[SBX_NAME_MAX + 1];
	size_t nunsent;
	struct hopx_sandbox *cand;
	size_t ncand;
	int64_t made_before; /* 0: no bound */
};

static int grow(struct adopt_run *ar)
{
	size_t cap = ar->cap ? ar->cap * 2 : 8;
	void *a = realloc(ar->in, cap * sizeof(*ar->in));

	if (a)
		ar->in = a;
	a = a ? realloc(ar->name, cap * sizeof(*ar->name)) : NULL;
	if (a)
		ar->name = a;
	a = a ? realloc(ar->labels, cap * sizeof(*ar->labels)) : NULL;
	if (a == NULL)
		return ERR_NOMEM;
	ar->labels = a;
	ar->cap = cap;
	return 0;
}

static int load_one(void *ud, const struct store_intent *si)
{
	struct adopt_run *ar = ud;
	cJSON *j;
	int64_t *u;
	void *n;

	if (strcmp(si->kind, "create") != 0)
		return 0;
	if (si->sent_at == 0) {
		u = realloc(ar->unsent, (ar->nunsent + 1) * sizeof(*u));
		if (u == NULL)
			return ERR_NOMEM;
		ar->unsent = u;
		n = realloc(ar->unsent_name,
		            (ar->nunsent + 1) * sizeof(*ar->unsent_name));
		if (n == NULL)
			return ERR_NOMEM;
		ar->unsent_name = n;
		snprintf(ar->unsent_name[ar->nunsent], sizeof(*ar->unsent_name),
		         "%s", si->name ? si->name : "");
		ar->unsent[ar->nunsent++] = si->id;
		return 0;
	}
	if (ar->n == ar->cap && grow(ar) != 0)
		return ERR_NOMEM;
	j = cJSON_Parse(si->request);
	if (intent_read(j, &ar->in[ar->n]) != 0) {
		cJSON_Delete(j);
		return 0;
	}
	ar->in[ar->n].id = si->id;
	ar->in[ar->n].created_at = si->created_at + ar->skew;
	snprintf(ar->name[ar->n], sizeof(ar->name[0]), "%s",
	         si->name ? si->name : "");
	ar->labels[ar->n] =
	        cJSON_DetachItemFromObjectCaseSensitive(j, "labels");
	cJSON_Delete(j);
	if (ar->n == 0 || ar->in[ar->n].created_at < ar->oldest)
		ar->oldest = ar->in[ar->n].created_at;
	ar->n++;
	return 0;
}

int adopt_run_open(struct store *st, int64_t skew, struct adopt_run **out)
{
	struct adopt_run *ar = calloc(1, sizeof(*ar));
	int e;

	*out = NULL;
	if (ar == NULL)
		return ERR_NOMEM;
	ar->skew = skew;
	e = store_intent_list_open(st, load_one, ar);
	if (e != 0 || ar->n + ar->nunsent == 0) {
		adopt_run_free(ar);
		return e;
	}
	*out = ar;
	return 0;
}

void adopt_run_offer(struct adopt_run *ar, const struct hopx_sandbox *h)
{
	void *a;

	if (ar == NULL || ar->ncand >= CAND_MAX ||
	    h->created_at < ar->oldest - ADOPT_SKEW_MS ||
	    (ar->made_before && h->created_at > ar->made_before))
		return;
	a = realloc(ar->cand, (ar->ncand + 1) * sizeof(*ar->cand));
	if (a == NULL)
		return;
	ar->cand = a;
	ar->cand[ar->ncand++] = *h;
}

/*
 * A create that started after the list was asked for and was answered
 * before settling made a sandbox the list may show untracked: it is its
 * own create's, never a lost one's.
 */
static void drop_known(struct adopt_run *ar, const struct adopt_hooks *hk)
{
	size_t i, k = 0;

	for (i = 0; i < ar->ncand; i++)
		if (!hk->known(hk->ud, ar->cand[i].id))
			ar->cand[k++] = ar->cand[i];
	ar->ncand = k;
}

size_t adopt_run_settle(struct adopt_run *ar, struct store *st, int64_t until,
                        const struct adopt_hooks *hk)
{
	long *pick = calloc(ar->n ? ar->n : 1, sizeof(*pick));
	size_t i, done = 0;

	if (pick == NULL)
		return 0;
	drop_known(ar, hk);
	for (i = 0; i < ar->nunsent; i++) {
		store_intent_resolve(st, ar->unsent[i], NULL);
		log_info("create #%lld never left: it made nothing",
		         (long long)ar->unsent[i]);
		if (ar->unsent_name[i][0] && hk->nothing)
			hk->nothing(hk->ud, ar->unsent_name[i]);
	}
	adopt_match(ar->in, ar->n, ar->cand, ar->ncand, until, pick);
	for (i = 0; i < ar->n; i++) {
		const struct hopx_sandbox *h =
		        pick[i] >= 0 ? &ar->cand[pick[i]] : NULL;
		const char *name = ar->name[i][0] ? ar->name[i] : NULL;
		int e = h ? adopt_put(st, h, name, ar->labels[i], 1, until,
		                      STORE_CAUSE_AGENT, ar->in[i].id)
		          : 0;

		if (e == ERR_EXISTS) /* the name went to another meanwhile */
			e = adopt_put(st, h, NULL, ar->labels[i], 1, until,
			              STORE_CAUSE_AGENT, ar->in[i].id);
		if (e != 0) {
			log_warn("cannot adopt %s for create #%lld: %s", h->id,
			         (long long)ar->in[i].id, err_str(e));
			continue;
		}
		/* A POST sent just before a crash may still be on its way
		 * to HopX: only an older intent can be said to have made
		 * nothing. A later run settles this one. */
		if (h == NULL && ar->in[i].created_at > until - ADOPT_SKEW_MS)
			continue;
		if (h == NULL) {
			store_intent_resolve(st, ar->in[i].id, NULL);
			log_info("create #%lld made no sandbox at HopX",
			         (long long)ar->in[i].id);
			if (name && hk->nothing)
				hk->nothing(hk->ud, name);
			continue;
		}
		log_info("adopted %s, made by create #%lld whose answer was "
		         "lost",
		         h->id, (long long)ar->in[i].id);
		hk->tracked(hk->ud, h->id);
		done++;
	}
	free(pick);
	return done;
}

void adopt_run_cap(struct adopt_run *ar, int64_t cap)
{
	if (ar)
		ar->made_before = cap;
}

void adopt_run_free(struct adopt_run *ar)
{
	size_t i;

	if (ar == NULL)
		return;
	for (i = 0; i < ar->n; i++)
		cJSON_Delete(ar->labels[i]);
	free(ar->in);
	free(ar->name);
	free(ar->labels);
	free(ar->cand);
	free(ar->unsent);
	free(ar->unsent_name);
	free(ar);
}
