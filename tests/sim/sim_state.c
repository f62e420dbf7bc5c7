/* Simulator state: sandboxes, time, the request log, persistence. */
#include "sim.h"
#include "sim_files.h"
#include "sim_vmhost.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define SIM_LOG_MAX 200000

static const char *const status_names[] = {"creating", "running", "paused",
                                           "stopped"};

const char *sim_status_str(enum sim_status st)
{
	return status_names[st];
}

int sim_status_parse(const char *str, enum sim_status *out)
{
	int i;

	for (i = 0; str && i < 4; i++) {
		if (strcmp(str, status_names[i]) == 0) {
			*out = (enum sim_status)i;
			return 0;
		}
	}
	return -1;
}

int sim_init(struct sim *s, const struct sim_config *cfg)
{
	memset(s, 0, sizeof(*s));
	s->cfg = *cfg;
	s->log_cap = SIM_LOG_MAX;
	s->log = calloc(s->log_cap, sizeof(*s->log));
	if (s->log == NULL)
		return -1;
	s->rng = (unsigned)time(NULL) ^ (unsigned)getpid();
	for (int i = 0; i < 32; i++)
		s->secret[i] = "0123456789abcdef"[sim_rand(s) % 16];
	return pthread_mutex_init(&s->lock, NULL) == 0 ? 0 : -1;
}

void sim_finish(struct sim *s)
{
	struct sim_sandbox *sb, *tmp;
	struct sim_counter *c, *ctmp;

	HASH_ITER(hh, s->sandboxes, sb, tmp)
	{
		sim_vmhost_release(s, sb);
		HASH_DEL(s->sandboxes, sb);
		free(sb);
	}
	HASH_ITER(hh, s->counters, c, ctmp)
	{
		HASH_DEL(s->counters, c);
		free(c);
	}
	sim_faults_clear(&s->faults);
	free(s->log);
	for (size_t i = 0; i < SIM_ISSUED_MAX; i++)
		free(s->issued[i]);
	pthread_mutex_destroy(&s->lock);
}

int64_t sim_now(struct sim *s)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000 +
	       s->clock_offset_ms;
}

/* xorshift32: fast, good enough for fault rates, under the lock. */
unsigned sim_rand(struct sim *s)
{
	unsigned x = s->rng ? s->rng : 2463534242u;

	x ^= x << 13;
	x ^= x >> 17;
	x ^= x << 5;
	s->rng = x;
	return x;
}

double sim_rand01(struct sim *s)
{
	return (double)(sim_rand(s) % 1000000) / 1000000.0;
}

void sim_settle(struct sim *s, struct sim_sandbox *sb)
{
	if (sb->status == SIM_CREATING && sim_now(s) >= sb->ready_at) {
		sb->status = SIM_RUNNING;
		s->dirty = 1;
	}
}

struct sim_sandbox *sim_find(struct sim *s, const char *id)
{
	struct sim_sandbox *sb = NULL;

	HASH_FIND_STR(s->sandboxes, id, sb);
	if (sb == NULL)
		return NULL;
	/* HopX destroys a sandbox at expires_at. */
	if (sb->expires_at > 0 && sim_now(s) >= sb->expires_at &&
	    (sb->status != SIM_PAUSED || s->cfg.clock_runs_paused)) {
		sim_delete(s, sb);
		return NULL;
	}
	sim_settle(s, sb);
	return sb;
}

static void make_id(struct sim *s, char *out, size_t n)
{
	static const char alnum[] = "abcdefghijklmnopqrstuvwxyz0123456789";
	char rnd[9];
	int i;

	do {
		for (i = 0; i < 8; i++)
			rnd[i] = alnum[sim_rand(s) % 36];
		rnd[8] = '\0';
		snprintf(out, n, "%lld%s", (long long)(sim_now(s) / 1000), rnd);
	} while (sim_find(s, out) != NULL);
}

struct sim_sandbox *sim_create(struct sim *s, const char *template_id,
                               const char *template_name, const char *region,
                               int64_t timeout_s, int internet)
{
	struct sim_sandbox *sb = calloc(1, sizeof(*sb));

	if (sb == NULL)
		return NULL;
	make_id(s, sb->id, sizeof(sb->id));
	snprintf(sb->template_id, sizeof(sb->template_id), "%s", template_id);
	snprintf(sb->template_name, sizeof(sb->template_name), "%s",
	         template_name);
	snprintf(sb->region, sizeof(sb->region), "%s",
	         region ? region : "us-east");
	sb->internet_access = internet;
	sb->created_at = sim_now(s);
	sb->status = s->cfg.create_status_creating ? SIM_CREATING : SIM_RUNNING;
	sb->ready_at = sb->created_at + s->cfg.creating_ms;
	sb->timeout_seconds = -1;
	sb->next_jti = 1;
	sb->seq = ++s->next_seq;
	if (timeout_s > 0)
		sim_set_timeout(s, sb, timeout_s);
	HASH_ADD_STR(s->sandboxes, id, sb);
	sim_vmhost_assign(s, sb);
	s->nsandboxes++;
	s->dirty = 1;
	return sb;
}

void sim_delete(struct sim *s, struct sim_sandbox *sb)
{
	sim_vmhost_release(s, sb);
	sim_files_drop(s, sb->id);
	HASH_DEL(s->sandboxes, sb);
	free(sb);
	s->nsandboxes--;
	s->dirty = 1;
}

void sim_set_timeout(struct sim *s, struct sim_sandbox *sb, int64_t secs)
{
	sb->timeout_seconds = secs;
	sb->expires_at = sim_now(s) + secs * 1000;
	sb->paused_left = secs * 1000;
	s->dirty = 1;
}

/* Changes status; a paused clock stops or restarts when configured so. */
void sim_set_status(struct sim *s, struct sim_sandbox *sb, enum sim_status st)
{
	int64_t now = sim_now(s);

	if (!s->cfg.clock_runs_paused && sb->expires_at > 0) {
		if (st == SIM_PAUSED && sb->status != SIM_PAUSED)
			sb->paused_left = sb->expires_at - now;
		else if (st != SIM_PAUSED && sb->status == SIM_PAUSED)
			sb->expires_at = now + sb->paused_left;
	}
	sb->status = st;
	s->dirty = 1;
}

/* Deletes every sandbox whose time ran out (HASH_ITER is delete-safe). */
void sim_sweep(struct sim *s)
{
	struct sim_sandbox *sb, *tmp;

	HASH_ITER(hh, s->sandboxes, sb, tmp)
	{
		sim_find(s, sb->id);
	}
}

void sim_log_add(struct sim *s, const struct sim_req *rq,
                 const struct sim_resp *rs, const char *fault)
{
	struct sim_log_entry *e = &s->log[s->log_seq % (int64_t)s->log_cap];
	struct sim_counter *c = NULL;

	memset(e, 0, sizeof(*e));
	e->seq = ++s->log_seq;
	e->at = sim_now(s);
	snprintf(e->method, sizeof(e->method), "%s", rq->method);
	snprintf(e->path, sizeof(e->path), "%s", rq->path);
	e->route = rs->route ? rs->route : "unknown";
	snprintf(e->sandbox_id, sizeof(e->sandbox_id), "%s", rs->sandbox_id);
	e->status = fault && (strcmp(fault, "reset") == 0 ||
	                      strcmp(fault, "stall") == 0)
	                    ? 0
	                    : rs->status;
	e->fault = fault;
	HASH_FIND_STR(s->counters, e->route, c);
	if (c == NULL && (c = calloc(1, sizeof(*c))) != NULL) {
		snprintf(c->route, sizeof(c->route), "%s", e->route);
		HASH_ADD_STR(s->counters, route, c);
	}
	if (c) {
		c->count++;
		c->by_class[e->status / 100 <= 5 ? e->status / 100 : 0]++;
	}
}

/* ---- persistence: the whole state as one JSON file ---- */

static cJSON *state_json(struct sim *s)
{
	cJSON *root = cJSON_CreateObject(), *arr = cJSON_CreateArray();
	struct sim_sandbox *sb, *tmp;

	cJSON_AddNumberToObject(root, "clock_offset_ms",
	                        (double)s->clock_offset_ms);
	cJSON_AddStringToObject(root, "secret", s->secret);
	cJSON_AddItemToObject(root, "sandboxes", arr);
	HASH_ITER(hh, s->sandboxes, sb, tmp)
	{
		cJSON *o = cJSON_CreateObject();

		cJSON_AddStringToObject(o, "id", sb->id);
		cJSON_AddStringToObject(o, "status",
		                        sim_status_str(sb->status));
		cJSON_AddStringToObject(o, "template_id", sb->template_id);
		cJSON_AddStringToObject(o, "template_name", sb->template_name);
		cJSON_AddStringToObject(o, "region", sb->region);
		cJSON_AddBoolToObject(o, "internet_access",
		                      sb->internet_access);
		cJSON_AddNumberToObject(o, "timeout_seconds",
		                        (double)sb->timeout_seconds);
		cJSON_AddNumberToObject(o, "host", sb->host_n);
		cJSON_AddNumberToObject(o, "expires_at",
		                        (double)sb->expires_at);
		cJSON_AddNumberToObject(o, "paused_left",
		                        (double)sb->paused_left);
		cJSON_AddNumberToObject(o, "created_at",
		                        (double)sb->created_at);
		cJSON_AddNumberToObject(o, "ready_at", (double)sb->ready_at);
		cJSON_AddNumberToObject(o, "min_jti", (double)sb->min_jti);
		cJSON_AddNumberToObject(o, "next_jti", (double)sb->next_jti);
		cJSON_AddItemToArray(arr, o);
	}
	return root;
}

int sim_save(struct sim *s)
{
	char tmp[1100];
	char *text;
	cJSON *j;
	FILE *f;
	int ok;

	if (s->cfg.state_file[0] == '\0')
		return 0;
	j = state_json(s);
	text = cJSON_PrintUnformatted(j);
	cJSON_Delete(j);
	if (text == NULL)
		return -1;
	snprintf(tmp, sizeof(tmp), "%s.tmp", s->cfg.state_file);
	f = fopen(tmp, "w");
	ok = f && fputs(text, f) >= 0 && fflush(f) == 0 &&
	     fsync(fileno(f)) == 0;
	if (f)
		fclose(f);
	free(text);
	if (!ok || rename(tmp, s->cfg.state_file) != 0)
		return -1;
	s->dirty = 0;
	return 0;
}

static int64_t num(const cJSON *o, const char *k)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);

	return cJSON_IsNumber(v) ? (int64_t)v->valuedouble : 0;
}

static const char *str(const cJSON *o, const char *k)
{
	const char *v =
	        cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(o, k));

	return v ? v : "";
}

static void load_one(struct sim *s, const cJSON *o)
{
	struct sim_sandbox *sb = calloc(1, sizeof(*sb));

	if (sb == NULL || strlen(str(o, "id")) == 0 ||
	    sim_status_parse(str(o, "status"), &sb->status) != 0) {
		free(sb);
		return;
	}
	snprintf(sb->id, sizeof(sb->id), "%s", str(o, "id"));
	snprintf(sb->template_id, sizeof(sb->template_id), "%s",
	         str(o, "template_id"));
	snprintf(sb->template_name, sizeof(sb->template_name), "%s",
	         str(o, "template_name"));
	snprintf(sb->region, sizeof(sb->region), "%s", str(o, "region"));
	sb->internet_access = cJSON_IsTrue(
	        cJSON_GetObjectItemCaseSensitive(o, "internet_access"));
	sb->timeout_seconds = num(o, "timeout_seconds");
	sb->expires_at = num(o, "expires_at");
	sb->paused_left = num(o, "paused_left");
	sb->created_at = num(o, "created_at");
	sb->ready_at = num(o, "ready_at");
	sb->min_jti = num(o, "min_jti");
	sb->next_jti = num(o, "next_jti");
	sb->seq = ++s->next_seq;
	sb->host_n = (int)num(o, "host");
	HASH_ADD_STR(s->sandboxes, id, sb);
	sim_vmhost_assign(s, sb);
	s->nsandboxes++;
}

int sim_load(struct sim *s)
{
	const cJSON *o;
	char *text = NULL;
	long len;
	cJSON *j;
	FILE *f;

	if (s->cfg.state_file[0] == '\0')
		return 0;
	if ((f = fopen(s->cfg.state_file, "r")) == NULL)
		return errno == ENOENT ? 0 : -1;
	if (fseek(f, 0, SEEK_END) == 0 && (len = ftell(f)) >= 0 &&
	    fseek(f, 0, SEEK_SET) == 0 && (text = malloc((size_t)len + 1)))
		text[fread(text, 1, (size_t)len, f)] = '\0';
	fclose(f);
	j = text ? cJSON_Parse(text) : NULL;
	free(text);
	if (j == NULL)
		return -1;
	s->clock_offset_ms = num(j, "clock_offset_ms");
	if (strlen(str(j, "secret")) == 32)
		memcpy(s->secret, str(j, "secret"), 33);
	cJSON_ArrayForEach(o, cJSON_GetObjectItemCaseSensitive(j, "sandboxes"))
	        load_one(s, o);
	cJSON_Delete(j);
	return 0;
}
