#include "simclient.h"

#include "testutil.h"

#include <curl/curl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static int read_ready(struct simproc *p)
{
	char buf[512] = "";
	cJSON *j;
	FILE *f = fopen(p->ready, "r");
	size_t n;

	if (f == NULL)
		return -1;
	n = fread(buf, 1, sizeof(buf) - 1, f);
	buf[n] = '\0';
	fclose(f);
	if ((j = cJSON_Parse(buf)) == NULL)
		return -1;
	snprintf(p->api_url, sizeof(p->api_url), "%s",
	         cJSON_GetStringValue(cJSON_GetObjectItem(j, "api_url")));
	snprintf(p->agent_url, sizeof(p->agent_url), "%s",
	         cJSON_GetStringValue(cJSON_GetObjectItem(j, "agent_url")));
	cJSON_Delete(j);
	return 0;
}

static int sim_ready(void *ctx)
{
	return read_ready(ctx);
}

int simproc_restart(struct simproc *p, const char *bin,
                    const char *const *extra)
{
	const char *argv[64];
	int n = 0;

	if (getenv("HOPX_SIM"))
		bin = getenv("HOPX_SIM");
	unlink(p->ready);
	argv[n++] = bin;
	argv[n++] = "--listen=127.0.0.1:0";
	argv[n++] = "--agent-listen=127.0.0.1:0";
	argv[n++] = "--api-key=" SIM_TEST_KEY;
	argv[n++] = "--quiet";
	argv[n++] = "--ready-file";
	argv[n++] = p->ready;
	argv[n++] = "--state-file";
	argv[n++] = p->state;
	argv[n++] = "--files-dir"; /* removed with the rest */
	argv[n++] = p->dir;
	while (extra && *extra && n < 62)
		argv[n++] = *extra++;
	argv[n] = NULL;
	if ((p->pid = tu_spawn(argv)) < 0)
		return -1;
	return tu_wait_ready(&p->pid, sim_ready, p);
}

int simproc_start(struct simproc *p, const char *bin, const char *const *extra)
{
	memset(p, 0, sizeof(*p));
	if (tu_tmpdir(p->dir, sizeof(p->dir)) != 0)
		return -1;
	tu_path(p->ready, sizeof(p->ready), p->dir, "ready.json");
	tu_path(p->state, sizeof(p->state), p->dir, "state.json");
	return simproc_restart(p, bin, extra);
}

int simproc_stop(struct simproc *p)
{
	return tu_stop(&p->pid);
}

int simproc_destroy(struct simproc *p)
{
	int rc = 0;

	if (p->pid > 0)
		rc = simproc_stop(p);
	if (p->dir[0])
		tu_rmrf(p->dir);
	p->dir[0] = '\0';
	return rc;
}

struct grow {
	char *data;
	size_t len;
};

static size_t on_body(char *ptr, size_t size, size_t n, void *ud)
{
	struct grow *g = ud;
	char *p = realloc(g->data, g->len + size * n + 1);

	if (p == NULL)
		return 0;
	memcpy(p + g->len, ptr, size * n);
	g->data = p;
	g->len += size * n;
	p[g->len] = '\0';
	return size * n;
}

static size_t on_header(char *ptr, size_t size, size_t n, void *ud)
{
	struct sc_result *r = ud;
	size_t len = size * n;

	if (len > 13 && strncasecmp(ptr, "Retry-After: ", 13) == 0)
		snprintf(r->retry_after, sizeof(r->retry_after), "%.*s",
		         (int)strcspn(ptr + 13, "\r\n"), ptr + 13);
	if (len > 14 && strncasecmp(ptr, "X-Request-ID: ", 14) == 0)
		snprintf(r->request_id, sizeof(r->request_id), "%.*s",
		         (int)strcspn(ptr + 14, "\r\n"), ptr + 14);
	return len;
}

int sc_call(struct sc_result *r, const char *method, const char *url,
            const char *auth, const char *body, long timeout_ms)
{
	struct curl_slist *h = NULL;
	struct grow g = {NULL, 0};
	CURL *c = curl_easy_init();

	memset(r, 0, sizeof(*r));
	if (c == NULL)
		return -1;
	h = curl_slist_append(h, "Content-Type: application/json");
	if (auth)
		h = curl_slist_append(h, auth);
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(c, CURLOPT_TIMEOUT_MS,
	                 timeout_ms ? timeout_ms : 10000);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, &g);
	curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(c, CURLOPT_HEADERDATA, r);
	if (body)
		curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
	else if (strcmp(method, "POST") == 0 || strcmp(method, "PUT") == 0)
		curl_easy_setopt(c, CURLOPT_POSTFIELDS, "");
	r->curl_code = (int)curl_easy_perform(c);
	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r->status);
	curl_easy_getinfo(c, CURLINFO_TOTAL_TIME, &r->seconds);
	r->body = g.data ? g.data : calloc(1, 1);
	r->json = cJSON_Parse(r->body);
	curl_slist_free_all(h);
	curl_easy_cleanup(c);
	return r->curl_code == 0 ? 0 : -1;
}

int sc_api(struct sc_result *r, const struct simproc *p, const char *method,
           const char *path, const char *body)
{
	char url[512];

	snprintf(url, sizeof(url), "%s%s", p->api_url, path);
	return sc_call(r, method, url, "X-API-Key: " SIM_TEST_KEY, body, 0);
}

void sc_free(struct sc_result *r)
{
	free(r->body);
	cJSON_Delete(r->json);
	memset(r, 0, sizeof(*r));
}

const char *sc_str(const struct sc_result *r, const char *key)
{
	const char *v = cJSON_GetStringValue(
	        cJSON_GetObjectItemCaseSensitive(r->json, key));

	return v ? v : "";
}
