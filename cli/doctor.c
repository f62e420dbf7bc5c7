/*
 * hopxctl doctor: checks what a working setup needs, one line per check,
 * without needing the agent (each check says what it could not see). The
 * checks are rows of a table and run in order; later ones use what earlier
 * ones found (the agent's paths and API URL, the API's Date header).
 */
#include "commands.h"

#include "clock.h"
#include "err.h"
#include "fmt.h"
#include "ipc_client.h"
#include "log.h"
#include "paths.h"
#include "store.h"

#include <curl/curl.h>
#include <dlfcn.h>
#include <errno.h>
#include <libgen.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

enum verdict { V_OK, V_WARN, V_FAIL, V_SKIP };

/*
 * libcurl, opened only when doctor runs: linked into hopxctl, its
 * dependencies (TLS, Kerberos, LDAP, ...) made every hopxctl call load
 * them, 5 ms -> 30 ms for `hopxctl version` (measured), which every
 * script, completion and `token` call would pay.
 */
struct curl_api {
	void *lib;
	CURL *(*easy_init)(void);
	CURLcode (*easy_setopt)(CURL *, CURLoption, ...);
	CURLcode (*easy_perform)(CURL *);
	CURLcode (*easy_getinfo)(CURL *, CURLINFO, ...);
	void (*easy_cleanup)(CURL *);
	const char *(*easy_strerror)(CURLcode);
	time_t (*getdate)(const char *, const time_t *);
};

struct doctor {
	struct cli *c;
	cJSON *status;        /* the agent's status result, or NULL */
	const char *key_file; /* --api-key-file, else the default */
	char key_default[4096];
	char api_base[512];
	struct curl_api curl; /* loaded by the api check */
	int64_t api_date_ms;  /* the API's Date header, or 0 */
	int64_t api_local_ms; /* local time at mid-request */
	char detail[1024];    /* the current check's line */
};

#define HEALTH_TIMEOUT_MS 5000L
#define SKEW_OK_MS        5000
#define SKEW_WARN_MS      60000

static enum verdict say(struct doctor *d, enum verdict v, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));

static enum verdict say(struct doctor *d, enum verdict v, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(d->detail, sizeof(d->detail), fmt, ap);
	va_end(ap);
	return v;
}

static const char *status_str(const struct doctor *d, const char *obj,
                              const char *key)
{
	const cJSON *o = obj ? cJSON_GetObjectItem(d->status, obj) : d->status;

	return cJSON_GetStringValue(cJSON_GetObjectItem(o, key));
}

/* A path only its owner (this user) can use: mode & 077 == 0. */
static enum verdict private_path(struct doctor *d, const char *path,
                                 int want_dir)
{
	struct stat sb;

	if (lstat(path, &sb) != 0)
		return say(d, V_FAIL,
		           "%s is missing (%s): hopxd makes it at "
		           "start",
		           path, strerror(errno));
	if (want_dir ? !S_ISDIR(sb.st_mode) : !S_ISSOCK(sb.st_mode))
		return say(d, V_FAIL, "%s is not a %s", path,
		           want_dir ? "directory" : "socket");
	if (sb.st_uid != getuid())
		return say(d, V_FAIL, "%s belongs to uid %lu, not to you", path,
		           (unsigned long)sb.st_uid);
	if (sb.st_mode & 077)
		return say(
		        d, V_FAIL,
		        "%s has mode %04o: others can reach it (chmod %s %s)",
		        path, (unsigned)(sb.st_mode & 07777),
		        want_dir ? "700" : "600", path);
	return say(d, V_OK, "%s is yours, mode %04o", path,
	           (unsigned)(sb.st_mode & 07777));
}

static enum verdict check_socket_dir(struct doctor *d)
{
	char dir[sizeof(d->c->socket)];

	snprintf(dir, sizeof(dir), "%s", d->c->socket);
	return private_path(d, dirname(dir), 1);
}

static enum verdict check_socket(struct doctor *d)
{
	return private_path(d, d->c->socket, 0);
}

static enum verdict check_agent(struct doctor *d)
{
	struct ipc_client *ic = NULL;
	char *msg = NULL, up[24];
	int r = ipc_client_connect(d->c->socket, &ic);

	if (r == 0) {
		r = ipc_client_call(ic, "status", NULL, 5000, &d->status, &msg);
		ipc_client_close(ic);
	}
	if (r != 0) {
		say(d, V_FAIL,
		    "no agent answers on %s (%s): start it with 'systemctl "
		    "--user start hopxd' or run 'hopxd'",
		    d->c->socket, msg ? msg : err_str(r));
		free(msg);
		return V_FAIL;
	}
	fmt_duration(up, sizeof(up),
	             (int64_t)cli_int(d->status, "uptime_s") * 1000);
	return say(d, V_OK, "hopxd %s, pid %d, up %s, %d sandboxes",
	           cli_str(d->status, "version"), cli_int(d->status, "pid"), up,
	           cli_int(d->status, "sandboxes"));
}

/* The key file, if there is one: 1 usable, 0 absent, -1 unusable (said). */
static int key_file_state(struct doctor *d)
{
	struct stat sb;

	if (d->key_file == NULL || stat(d->key_file, &sb) != 0)
		return 0;
	if (sb.st_mode & 077) {
		say(d, V_FAIL,
		    "%s has mode %04o: hopxd refuses it (chmod 600 %s)",
		    d->key_file, (unsigned)(sb.st_mode & 07777), d->key_file);
		return -1;
	}
	if (sb.st_size == 0) {
		say(d, V_FAIL, "%s is empty", d->key_file);
		return -1;
	}
	return 1;
}

static enum verdict check_key(struct doctor *d)
{
	const char *state = status_str(d, "api", "state");
	const char *env = getenv("HOPX_API_KEY");
	int file = key_file_state(d);

	if (file < 0)
		return V_FAIL;
	if (state && strcmp(state, "auth_error") == 0)
		return say(d, V_FAIL, "HopX refuses the agent's key: %s",
		           status_str(d, "api", "error")
		                   ? status_str(d, "api", "error")
		                   : "401");
	if (state && strcmp(state, "off") != 0)
		return say(d, V_OK, "the agent has one%s%s%s", file ? " (" : "",
		           file ? d->key_file : "", file ? ", mode 0600)" : "");
	if (state) /* an agent without a key */
		return say(d, V_FAIL,
		           "the agent has none: it keeps local records only%s",
		           file || (env && *env) ? "; restart it to read the "
		                                   "key now present"
		                                 : "; put it in a mode 0600 "
		                                   "file (see hopxd(8))");
	if (file)
		return say(d, V_OK, "%s, mode 0600", d->key_file);
	if (env && *env)
		return say(d, V_OK, "HOPX_API_KEY is set");
	return say(d, V_FAIL, "none: set HOPX_API_KEY or write %s (mode 0600)",
	           d->key_file ? d->key_file : "~/.config/hopxd/api-key");
}

/* The Date header of the answer, for the clock check. */
static size_t on_header(char *buf, size_t size, size_t n, void *ud)
{
	struct doctor *d = ud;
	size_t len = size * n;
	char line[128];

	if (len > 5 && len < sizeof(line) &&
	    strncasecmp(buf, "date:", 5) == 0) {
		time_t t;

		memcpy(line, buf + 5, len - 5);
		line[len - 5] = '\0';
		if ((t = d->curl.getdate(line, NULL)) > 0)
			d->api_date_ms = (int64_t)t * 1000;
	}
	return len;
}

static size_t discard(char *buf, size_t size, size_t n, void *ud)
{
	(void)buf;
	(void)ud;
	return size * n;
}

/* memcpy: ISO C has no cast from dlsym's void * to a function pointer. */
#define CURL_SYM(api, field, name)                                             \
	do {                                                                   \
		void *p_ = dlsym((api)->lib, name);                            \
		if (p_ == NULL)                                                \
			return ERR_NOTFOUND;                                   \
		memcpy(&(api)->field, &p_, sizeof(p_));                        \
	} while (0)

static int curl_load(struct curl_api *api)
{
	if ((api->lib = dlopen("libcurl.so.4", RTLD_NOW | RTLD_LOCAL)) == NULL)
		return ERR_NOTFOUND;
	CURL_SYM(api, easy_init, "curl_easy_init");
	CURL_SYM(api, easy_setopt, "curl_easy_setopt");
	CURL_SYM(api, easy_perform, "curl_easy_perform");
	CURL_SYM(api, easy_getinfo, "curl_easy_getinfo");
	CURL_SYM(api, easy_cleanup, "curl_easy_cleanup");
	CURL_SYM(api, easy_strerror, "curl_easy_strerror");
	CURL_SYM(api, getdate, "curl_getdate");
	return 0;
}

static enum verdict check_api(struct doctor *d)
{
	const struct curl_api *api = &d->curl;
	char url[600];
	long code = 0;
	int64_t t0, t1;
	CURLcode cr;
	CURL *h;

	if (curl_load(&d->curl) != 0 || (h = api->easy_init()) == NULL)
		return say(d, V_FAIL,
		           "cannot load libcurl.so.4 (apt-get install "
		           "libcurl4)");
	snprintf(url, sizeof(url), "%s/health", d->api_base);
	api->easy_setopt(h, CURLOPT_URL, url);
	api->easy_setopt(h, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
	api->easy_setopt(h, CURLOPT_TIMEOUT_MS, HEALTH_TIMEOUT_MS);
	api->easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	api->easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
	api->easy_setopt(h, CURLOPT_HEADERDATA, d);
	api->easy_setopt(h, CURLOPT_WRITEFUNCTION, discard);
	t0 = clock_wall_ms(clock_system());
	cr = api->easy_perform(h);
	t1 = clock_wall_ms(clock_system());
	api->easy_getinfo(h, CURLINFO_RESPONSE_CODE, &code);
	api->easy_cleanup(h);
	d->api_local_ms = t0 + (t1 - t0) / 2;
	if (cr != CURLE_OK)
		return say(d, V_FAIL, "%s: %s", url, api->easy_strerror(cr));
	if (code != 200)
		return say(d, V_FAIL, "%s answered HTTP %ld", url, code);
	return say(d, V_OK, "%s answered 200 in %lld ms", url,
	           (long long)(t1 - t0));
}

/*
 * This machine's clock minus HopX's: the running agent's measure (the
 * median over its recent answers) when it has one, else this check's own
 * from the API's Date header. 0 in *have: neither.
 */
static int64_t clock_ahead_ms(struct doctor *d, int *have, const char **by)
{
	const cJSON *api =
	        d->status ? cJSON_GetObjectItem(d->status, "api") : NULL;
	const cJSON *skew = cJSON_GetObjectItem(api, "clock_skew_ms");

	*have = 1;
	if (cJSON_IsNumber(skew)) {
		*by = "hopxd measures it ";
		return -(int64_t)skew->valuedouble;
	}
	*by = "";
	*have = d->api_date_ms != 0;
	return d->api_local_ms - d->api_date_ms;
}

static enum verdict check_clock(struct doctor *d)
{
	const char *by;
	int have;
	int64_t skew = clock_ahead_ms(d, &have, &by);
	char dur[24];

	if (!have)
		return say(d, V_SKIP, "no Date header from the API to compare");
	fmt_duration(dur, sizeof(dur), skew);
	/* Date has a resolution of one second: under 5 s is no skew. */
	if (llabs(skew) < SKEW_OK_MS)
		return say(d, V_OK, "%swithin %d s of the API's clock", by,
		           SKEW_OK_MS / 1000);
	return say(d, llabs(skew) < SKEW_WARN_MS ? V_WARN : V_FAIL,
	           "%s%s %s the API's clock; hopxd times tokens by HopX's, "
	           "but fix it (timedatectl set-ntp true)",
	           by, dur, skew > 0 ? "ahead of" : "behind");
}

static enum verdict check_database(struct doctor *d)
{
	const char *agent_db = status_str(d, NULL, "db");
	char path[4096], *cause = NULL;
	struct store *s = NULL;
	struct stat sb;
	int r;

	if (agent_db)
		snprintf(path, sizeof(path), "%s", agent_db);
	else if (paths_db(path, sizeof(path)) != 0)
		return say(d, V_FAIL, "no database path: set HOPXD_DB or HOME");
	if (stat(path, &sb) != 0)
		return say(d, V_WARN, "%s does not exist yet (hopxd makes it)",
		           path);
	if (sb.st_mode & 077)
		return say(d, V_FAIL,
		           "%s has mode %04o: it holds tokens "
		           "(chmod 600)",
		           path, (unsigned)(sb.st_mode & 07777));
	r = store_open(path, STORE_OPEN_READONLY | STORE_OPEN_CHECK, NULL, &s,
	               &cause);
	store_close(s);
	if (r != 0) {
		say(d, V_FAIL, "%s: %s", path, cause ? cause : err_str(r));
		free(cause);
		return V_FAIL;
	}
	return say(d, V_OK, "%s: quick_check ok, mode 0600", path);
}

/* The members of a fleet as "host (pid N), ...", bounded. */
static void members_text(const cJSON *members, char *out, size_t n)
{
	const cJSON *m;
	size_t len = 0;

	out[0] = '\0';
	cJSON_ArrayForEach(m, members)
	{
		if (len + 1 >= n)
			break;
		len += (size_t)snprintf(out + len, n - len, "%s%s (pid %d)",
		                        len ? ", " : "", cli_str(m, "hostname"),
		                        cli_int(m, "pid"));
	}
}

static enum verdict check_store(struct doctor *d)
{
	const cJSON *st =
	        d->status ? cJSON_GetObjectItem(d->status, "store") : NULL;
	const char *kind =
	        cJSON_GetStringValue(cJSON_GetObjectItem(st, "kind"));
	const char *state = cli_str(st, "state");
	char who[512];

	if (kind == NULL)
		return say(d, V_SKIP, "no agent to ask");
	if (strcmp(kind, "sqlite") == 0)
		return say(d, V_OK, "SQLite, this machine's own");
	members_text(cJSON_GetObjectItem(st, "members"), who, sizeof(who));
	if (strcmp(state, "up") == 0)
		return say(
		        d, V_OK, "PostgreSQL, up; %d in the fleet: %s",
		        cJSON_GetArraySize(cJSON_GetObjectItem(st, "members")),
		        who);
	if (strcmp(state, "refused") == 0)
		return say(d, V_FAIL, "PostgreSQL refuses this hopxd: %s",
		           cli_str(st, "error"));
	return say(d, V_FAIL,
	           "PostgreSQL is %s: %s; tokens in memory are still served, "
	           "changes refused (try: psql \"$HOPXD_STORE\")",
	           state, cli_str(st, "error"));
}

static const struct {
	const char *name;
	enum verdict (*run)(struct doctor *d);
} checks[] = {
        {"socket dir", check_socket_dir},
        {"socket", check_socket},
        {"agent", check_agent},
        {"api key", check_key},
        {"api", check_api},
        {"clock", check_clock},
        {"database", check_database},
        {"store", check_store},
};

static const char *const verdict_names[] = {"ok", "warn", "FAIL", "skip"};
static const char *const verdict_colours[] = {FMT_GREEN, FMT_YELLOW, FMT_RED,
                                              FMT_DIM};

static void report(struct doctor *d, cJSON *out, const char *name,
                   enum verdict v)
{
	if (out) {
		cJSON *o = cJSON_CreateObject();

		cJSON_AddStringToObject(o, "check", name);
		cJSON_AddStringToObject(o, "result", verdict_names[v]);
		cJSON_AddStringToObject(o, "detail", d->detail);
		cJSON_AddItemToArray(out, o);
		return;
	}
	printf("%s%-4s%s  %-10s  %s\n", d->c->colour ? verdict_colours[v] : "",
	       verdict_names[v], d->c->colour ? FMT_RESET : "", name,
	       d->detail);
}

/* The API and key file to check: the agent's, else the defaults. */
static void locate(struct doctor *d)
{
	const char *v = status_str(d, "api", "base_url");

	if (v == NULL && (v = getenv("HOPX_BASE_URL")) == NULL)
		v = "https://api.hopx.dev";
	snprintf(d->api_base, sizeof(d->api_base), "%s", v);
	if (d->key_file == NULL &&
	    paths_key_file(d->key_default, sizeof(d->key_default)) == 0)
		d->key_file = d->key_default;
}

int run_doctor(struct cli *c, int argc, char **argv)
{
	struct doctor d = {.c = c};
	cJSON *out = c->json ? cJSON_CreateArray() : NULL;
	int failed = 0;
	size_t i;

	if (argc == 2 && strcmp(argv[0], "--api-key-file") == 0)
		d.key_file = argv[1];
	else if (argc != 0)
		return cli_usage_err("doctor takes only --api-key-file PATH",
		                     NULL);
	/* A corrupt file makes SQLite log; the check's line says it once. */
	log_init("hopxctl", LOG_LVL_ERROR);
	for (i = 0; i < sizeof(checks) / sizeof(checks[0]); i++) {
		enum verdict v;

		d.detail[0] = '\0';
		v = checks[i].run(&d);
		if (checks[i].run == check_agent) /* it knows the API's URL */
			locate(&d);
		failed |= v == V_FAIL;
		report(&d, out, checks[i].name, v);
	}
	if (out) {
		cJSON *o = cJSON_CreateObject();

		cJSON_AddItemToObject(o, "checks", out);
		cJSON_AddBoolToObject(o, "passed", !failed);
		cli_print_json(c, o);
		cJSON_Delete(o);
	}
	cJSON_Delete(d.status);
	/* libcurl stays loaded until exit: unloading it took its TLS
	 * library's exit handlers' code with it (LeakSanitizer's exit check
	 * crashed on them). */
	return failed ? EXIT_ERROR : EXIT_OK;
}
