/*
 * Conformance of hopx-sim with shared/hopx-api.md: every endpoint, status
 * code and error body, pagination, state transitions, token validity,
 * the state file and each fault kind. Each test starts its own simulator.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>
#include <curl/curl.h>

#include "rfc3339.h"
#include "simclient.h"

static const char *sim_bin;

struct fx {
	struct simproc p;
	struct sc_result r;
};

static int start_with(void **state, const char *const *extra)
{
	struct fx *f = calloc(1, sizeof(*f));

	assert_non_null(f);
	if (simproc_start(&f->p, sim_bin, extra) != 0)
		fail_msg("hopx-sim did not start (%s)", sim_bin);
	*state = f;
	return 0;
}

static int setup(void **state)
{
	return start_with(state, NULL);
}

static int teardown(void **state)
{
	struct fx *f = *state;

	sc_free(&f->r);
	assert_int_equal(simproc_destroy(&f->p), 0); /* exit 0 at SIGTERM */
	free(f);
	return 0;
}

/* Calls the control plane; returns the status. */
static long api(struct fx *f, const char *method, const char *path,
                const char *body)
{
	sc_free(&f->r);
	sc_api(&f->r, &f->p, method, path, body);
	return f->r.status;
}

static long admin(struct fx *f, const char *method, const char *path,
                  const char *body)
{
	return api(f, method, path, body);
}

/* Asserts the documented error envelope with this code. */
static void assert_error(struct fx *f, long status, const char *code)
{
	assert_int_equal(f->r.status, status);
	assert_non_null(f->r.json);
	assert_string_equal(sc_str(&f->r, "code"), code);
	assert_true(strlen(sc_str(&f->r, "error")) > 0);
	assert_true(strncmp(sc_str(&f->r, "request_id"), "req_", 4) == 0);
	assert_string_equal(f->r.request_id, sc_str(&f->r, "request_id"));
}

/* Creates a sandbox; copies its id (and token) out. */
static void create(struct fx *f, const char *body, char *id, char *tok)
{
	assert_int_equal(api(f, "POST", "/v1/sandboxes", body), 201);
	snprintf(id, 64, "%s", sc_str(&f->r, "id"));
	if (tok)
		snprintf(tok, 512, "%s", sc_str(&f->r, "auth_token"));
}

static long vm(struct fx *f, const char *id, const char *tok)
{
	char url[300], auth[600];

	snprintf(url, sizeof(url), "%s/sandbox/%s/health", f->p.agent_url, id);
	snprintf(auth, sizeof(auth), "Authorization: Bearer %s", tok);
	sc_free(&f->r);
	sc_call(&f->r, "GET", url, auth, NULL, 0);
	return f->r.status;
}

static void sleep_ms(long ms)
{
	struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};

	nanosleep(&ts, NULL);
}

static void t_health_and_auth(void **state)
{
	struct fx *f = *state;
	char url[200];

	snprintf(url, sizeof(url), "%s/health", f->p.api_url);
	sc_call(&f->r, "GET", url, NULL, NULL, 0);
	assert_int_equal(f->r.status, 200);
	assert_string_equal(sc_str(&f->r, "status"), "ok");
	sc_free(&f->r);
	snprintf(url, sizeof(url), "%s/v1/sandboxes", f->p.api_url);
	sc_call(&f->r, "GET", url, NULL, NULL, 0);
	assert_error(f, 401, "AUTHENTICATION_REQUIRED");
	sc_free(&f->r);
	sc_call(&f->r, "GET", url, "X-API-Key: wrong", NULL, 0);
	assert_error(f, 401, "AUTHENTICATION_REQUIRED");
	sc_free(&f->r);
	/* The documented alternative: Authorization: Bearer <API key>. */
	sc_call(&f->r, "GET", url, "Authorization: Bearer " SIM_TEST_KEY, NULL,
	        0);
	assert_int_equal(f->r.status, 200);
	assert_int_equal(api(f, "GET", "/v1/nothing", NULL), 404);
	assert_error(f, 404, "RESOURCE_NOT_FOUND");
}

static void t_create_shape(void **state)
{
	struct fx *f = *state;
	int64_t created, tok_exp, exp;
	const cJSON *res;

	assert_int_equal(api(f, "POST", "/v1/sandboxes",
	                     "{\"template_name\":\"code-interpreter\","
	                     "\"timeout_seconds\":300}"),
	                 201);
	assert_string_equal(sc_str(&f->r, "object"), "sandbox");
	assert_string_equal(sc_str(&f->r, "status"), "running");
	assert_string_equal(sc_str(&f->r, "template_id"), "73");
	/* Its own host, like HopX's {port}-{id}.{region}.vms.hopx.dev. */
	assert_true(strncmp(sc_str(&f->r, "public_host"), "http://127.1.",
	                    13) == 0);
	assert_true(cJSON_IsNumber(
	        cJSON_GetObjectItem(f->r.json, "organization_id")));
	res = cJSON_GetObjectItem(f->r.json, "resources");
	assert_true(cJSON_IsNumber(cJSON_GetObjectItem(res, "memory_mb")));
	/* Timestamps in HopX's shape, the token for one hour by default. */
	assert_int_equal(rfc3339_parse(sc_str(&f->r, "created_at"), &created),
	                 0);
	assert_int_equal(strlen(sc_str(&f->r, "created_at")), 20);
	assert_int_equal(
	        rfc3339_parse(sc_str(&f->r, "token_expires_at"), &tok_exp), 0);
	assert_true(tok_exp - created >= 3599000 &&
	            tok_exp - created <= 3600000);
	assert_int_equal(rfc3339_parse(sc_str(&f->r, "expires_at"), &exp), 0);
	assert_true(exp - created >= 299000 && exp - created <= 301000);
	assert_true(strncmp(sc_str(&f->r, "auth_token"), "eyJ", 3) == 0);
	assert_non_null(
	        strchr(strchr(sc_str(&f->r, "auth_token"), '.') + 1, '.'));
	/* A numeric template id and template "base" work too. */
	assert_int_equal(
	        api(f, "POST", "/v1/sandboxes", "{\"template_id\":73}"), 201);
	assert_int_equal(api(f, "POST", "/v1/sandboxes",
	                     "{\"template_name\":\"base\",\"region\":\"eu\","
	                     "\"internet_access\":false,\"env_vars\":{\"A\":"
	                     "\"1\"}}"),
	                 201);
	assert_string_equal(sc_str(&f->r, "region"), "eu");
	assert_true(cJSON_IsNull(cJSON_GetObjectItem(f->r.json, "expires_at")));
}

static void t_create_errors(void **state)
{
	struct fx *f = *state;

	/* An empty body labelled JSON is accepted as {} (SDKs send it). */
	api(f, "POST", "/v1/sandboxes", NULL);
	assert_error(f, 400, "INVALID_REQUEST");
	assert_non_null(strstr(sc_str(&f->r, "error"), "template_id"));
	api(f, "POST", "/v1/sandboxes", "{not json");
	assert_error(f, 400, "INVALID_REQUEST");
	api(f, "POST", "/v1/sandboxes", "[1,2]");
	assert_error(f, 400, "INVALID_REQUEST");
	api(f, "POST", "/v1/sandboxes",
	    "{\"template_name\":\"base\",\"timeout_seconds\":0}");
	assert_error(f, 400, "INVALID_REQUEST");
	api(f, "POST", "/v1/sandboxes",
	    "{\"template_name\":\"base\",\"timeout_seconds\":\"5\"}");
	assert_error(f, 400, "INVALID_REQUEST");
	api(f, "POST", "/v1/sandboxes",
	    "{\"template_name\":\"base\",\"internet_access\":\"yes\"}");
	assert_error(f, 400, "INVALID_REQUEST");
	api(f, "POST", "/v1/sandboxes",
	    "{\"template_name\":\"base\",\"env_vars\":{\"A\":1}}");
	assert_error(f, 400, "INVALID_REQUEST");
	api(f, "POST", "/v1/sandboxes", "{\"template_name\":\"nope\"}");
	assert_error(f, 404, "RESOURCE_NOT_FOUND");
	/* Nothing was created by any of these. */
	assert_int_equal(api(f, "GET", "/v1/sandboxes", NULL), 200);
	assert_int_equal(
	        cJSON_GetArraySize(cJSON_GetObjectItem(f->r.json, "data")), 0);
}

static void t_get_delete(void **state)
{
	struct fx *f = *state;
	char id[64], path[128];

	create(f, "{\"template_name\":\"base\"}", id, NULL);
	snprintf(path, sizeof(path), "/v1/sandboxes/%s", id);
	assert_int_equal(api(f, "GET", path, NULL), 200);
	assert_string_equal(sc_str(&f->r, "id"), id);
	/* GET does not carry a token unless configured to. */
	assert_null(cJSON_GetObjectItem(f->r.json, "auth_token"));
	assert_int_equal(api(f, "DELETE", path, NULL), 200);
	assert_string_equal(sc_str(&f->r, "status"), "deleted");
	assert_string_equal(sc_str(&f->r, "id"), id);
	api(f, "GET", path, NULL);
	assert_error(f, 404, "RESOURCE_NOT_FOUND");
	assert_string_equal(sc_str(&f->r, "error"), "Sandbox not found");
	api(f, "DELETE", path, NULL);
	assert_error(f, 404, "RESOURCE_NOT_FOUND");
}

static long act(struct fx *f, const char *id, const char *action)
{
	char path[160];

	snprintf(path, sizeof(path), "/v1/sandboxes/%s/%s", id, action);
	return api(f, "POST", path, NULL);
}

static void t_transitions(void **state)
{
	struct fx *f = *state;
	char id[64];

	create(f, "{\"template_name\":\"base\"}", id, NULL);
	assert_int_equal(act(f, id, "resume"), 409);
	assert_error(f, 409, "CONFLICT");
	assert_int_equal(act(f, id, "pause"), 200);
	assert_string_equal(sc_str(&f->r, "status"), "paused");
	assert_int_equal(act(f, id, "pause"), 409);
	assert_int_equal(act(f, id, "start"), 409);
	assert_int_equal(act(f, id, "resume"), 200);
	assert_string_equal(sc_str(&f->r, "status"), "running");
	assert_int_equal(act(f, id, "stop"), 200);
	assert_string_equal(sc_str(&f->r, "status"), "stopped");
	assert_int_equal(act(f, id, "pause"), 409);
	assert_int_equal(act(f, id, "resume"), 409);
	assert_int_equal(act(f, id, "start"), 200);
	assert_int_equal(act(f, id, "pause"), 200);
	assert_int_equal(act(f, id, "stop"), 200); /* stop from paused */
	assert_int_equal(act(f, "nosuchid", "pause"), 404);
	assert_error(f, 404, "RESOURCE_NOT_FOUND");
}

static void t_conflict_status_and_no_start_stop(void **state)
{
	static const char *const args[] = {"--conflict-status=403",
	                                   "--no-start-stop", NULL};
	struct fx *f;
	char id[64];

	teardown(state);
	start_with(state, args);
	f = *state;
	create(f, "{\"template_name\":\"base\"}", id, NULL);
	act(f, id, "resume");
	assert_error(f, 403, "FORBIDDEN");
	/* Removed routes answer 404 like an unknown path. */
	act(f, id, "stop");
	assert_error(f, 404, "RESOURCE_NOT_FOUND");
	act(f, id, "start");
	assert_error(f, 404, "RESOURCE_NOT_FOUND");
}

static void t_set_timeout(void **state)
{
	struct fx *f = *state;
	char id[64], path[160];
	int64_t exp, now = (int64_t)time(NULL) * 1000;

	create(f, "{\"template_name\":\"base\",\"timeout_seconds\":60}", id,
	       NULL);
	snprintf(path, sizeof(path), "/v1/sandboxes/%s/timeout", id);
	assert_int_equal(api(f, "PUT", path, "{\"timeout_seconds\":3600}"),
	                 200);
	assert_string_equal(sc_str(&f->r, "id"), id);
	assert_int_equal(
	        cJSON_GetObjectItem(f->r.json, "timeout_seconds")->valueint,
	        3600);
	/* The new deadline is now + N, not the old one extended. */
	assert_int_equal(rfc3339_parse(sc_str(&f->r, "expires_at"), &exp), 0);
	assert_true(exp >= now + 3598000 && exp <= now + 3602000);
	api(f, "PUT", path, "{\"timeout_seconds\":0}");
	assert_error(f, 400, "INVALID_REQUEST");
	api(f, "PUT", path, "{\"timeout_seconds\":-5}");
	assert_error(f, 400, "INVALID_REQUEST");
	api(f, "PUT", path, NULL);
	assert_error(f, 400, "INVALID_REQUEST");
}

static void t_refresh_and_vm_tokens(void **state)
{
	struct fx *f = *state;
	char id[64], id2[64], tok1[512], tok2[512], path[160];

	create(f, "{\"template_name\":\"base\"}", id, tok1);
	create(f, "{\"template_name\":\"base\"}", id2, NULL);
	snprintf(path, sizeof(path), "/v1/sandboxes/%s/token/refresh", id);
	assert_int_equal(api(f, "POST", path, NULL), 200);
	assert_string_equal(sc_str(&f->r, "id"), id);
	snprintf(tok2, sizeof(tok2), "%s", sc_str(&f->r, "auth_token"));
	assert_true(strlen(sc_str(&f->r, "token_expires_at")) == 20);
	assert_string_not_equal(tok1, tok2);
	/* Refresh revokes nothing: both tokens work. */
	assert_int_equal(vm(f, id, tok1), 200);
	assert_string_equal(sc_str(&f->r, "status"), "healthy");
	assert_int_equal(vm(f, id, tok2), 200);
	/* A token of one sandbox does not open another. */
	assert_int_equal(vm(f, id2, tok1), 401);
	assert_error(f, 401, "INVALID_TOKEN");
	assert_int_equal(vm(f, id, "eyJhbGciOiJIUzI1NiJ9.e30.forged"), 401);
	tok1[strlen(tok1) - 2] ^= 1; /* tampered signature */
	assert_int_equal(vm(f, id, tok1), 401);
	/* Paused: refresh refused with 409, the agent unavailable. */
	assert_int_equal(act(f, id, "pause"), 200);
	assert_int_equal(api(f, "POST", path, NULL), 409);
	assert_error(f, 409, "CONFLICT");
	assert_int_equal(vm(f, id, tok2), 503);
	assert_int_equal(act(f, id, "resume"), 200);
	assert_int_equal(vm(f, id, tok2), 200);
	/* Admin revokes every token of the sandbox. */
	snprintf(path, sizeof(path), "/_sim/sandboxes/%s/expire-tokens", id);
	assert_int_equal(admin(f, "POST", path, NULL), 200);
	assert_int_equal(vm(f, id, tok2), 401);
	/* Deleted: unreachable. */
	snprintf(path, sizeof(path), "/v1/sandboxes/%s", id);
	assert_int_equal(api(f, "DELETE", path, NULL), 200);
	assert_int_equal(vm(f, id, tok2), 502);
}

static void t_token_lifetime(void **state)
{
	static const char *const args[] = {"--token-lifetime=1", NULL};
	struct fx *f;
	char id[64], tok[512];
	int64_t c, e;

	teardown(state);
	start_with(state, args);
	f = *state;
	create(f, "{\"template_name\":\"base\"}", id, tok);
	rfc3339_parse(sc_str(&f->r, "created_at"), &c);
	rfc3339_parse(sc_str(&f->r, "token_expires_at"), &e);
	assert_true(e - c <= 1000);
	sleep_ms(1100);
	assert_int_equal(vm(f, id, tok), 401);
	assert_string_equal(sc_str(&f->r, "error"), "Invalid or expired token");
}

static int data_count(struct fx *f)
{
	return cJSON_GetArraySize(cJSON_GetObjectItem(f->r.json, "data"));
}

static void t_list_paging(void **state)
{
	struct fx *f = *state;
	char path[160], cursor[64];
	int pages = 0, total = 0;

	assert_int_equal(admin(f, "POST", "/_sim/sandboxes/bulk",
	                       "{\"count\":250,\"mix\":{\"running\":0.5,"
	                       "\"paused\":0.5}}"),
	                 200);
	assert_int_equal(cJSON_GetObjectItem(f->r.json, "count")->valueint,
	                 250);
	snprintf(path, sizeof(path), "/v1/sandboxes");
	for (;;) {
		assert_int_equal(api(f, "GET", path, NULL), 200);
		assert_string_equal(sc_str(&f->r, "object"), "list");
		total += data_count(f);
		pages++;
		if (!cJSON_IsTrue(cJSON_GetObjectItem(f->r.json, "has_more")))
			break;
		snprintf(cursor, sizeof(cursor), "%s",
		         sc_str(&f->r, "next_cursor"));
		snprintf(path, sizeof(path), "/v1/sandboxes?cursor=%s", cursor);
	}
	/* Default page size 100: 100, 100, 50. */
	assert_int_equal(pages, 3);
	assert_int_equal(total, 250);
	assert_true(
	        cJSON_IsNull(cJSON_GetObjectItem(f->r.json, "next_cursor")));
	assert_int_equal(api(f, "GET", "/v1/sandboxes?limit=1000", NULL), 200);
	assert_int_equal(data_count(f), 100); /* clamped to the maximum */
	assert_int_equal(api(f, "GET", "/v1/sandboxes?limit=7", NULL), 200);
	assert_int_equal(data_count(f), 7);
	assert_int_equal(
	        api(f, "GET", "/v1/sandboxes?status=paused&limit=100", NULL),
	        200);
	total = data_count(f);
	assert_true(total > 60 && total < 190);
	api(f, "GET", "/v1/sandboxes?limit=0", NULL);
	assert_error(f, 400, "INVALID_REQUEST");
	api(f, "GET", "/v1/sandboxes?status=deleted", NULL);
	assert_error(f, 400, "INVALID_REQUEST");
	api(f, "GET", "/v1/sandboxes?cursor=zzz", NULL);
	assert_error(f, 400, "INVALID_REQUEST");
}

static void t_list_limits_configurable(void **state)
{
	static const char *const args[] = {"--list-default-limit=20",
	                                   "--list-max-limit=50",
	                                   "--tokens-in-list", NULL};
	struct fx *f;

	teardown(state);
	start_with(state, args);
	f = *state;
	admin(f, "POST", "/_sim/sandboxes/bulk", "{\"count\":60}");
	assert_int_equal(api(f, "GET", "/v1/sandboxes", NULL), 200);
	assert_int_equal(data_count(f), 20);
	assert_int_equal(api(f, "GET", "/v1/sandboxes?limit=100", NULL), 200);
	assert_int_equal(data_count(f), 50);
	assert_non_null(cJSON_GetObjectItem(
	        cJSON_GetArrayItem(cJSON_GetObjectItem(f->r.json, "data"), 0),
	        "auth_token"));
}

static void t_killed_at_expiry(void **state)
{
	struct fx *f = *state;
	char id[64], id2[64], path[160];

	create(f, "{\"template_name\":\"base\",\"timeout_seconds\":1}", id,
	       NULL);
	create(f, "{\"template_name\":\"base\",\"timeout_seconds\":120}", id2,
	       NULL);
	sleep_ms(1100);
	snprintf(path, sizeof(path), "/v1/sandboxes/%s", id);
	api(f, "GET", path, NULL);
	assert_error(f, 404, "RESOURCE_NOT_FOUND");
	/* Time travel through the admin API. */
	assert_int_equal(
	        admin(f, "POST", "/_sim/time", "{\"advance_ms\":121000}"), 200);
	snprintf(path, sizeof(path), "/v1/sandboxes/%s", id2);
	api(f, "GET", path, NULL);
	assert_error(f, 404, "RESOURCE_NOT_FOUND");
}

static void t_clock_stops_while_paused(void **state)
{
	static const char *const args[] = {"--clock-stops-paused", NULL};
	struct fx *f;
	char id[64], path[160];

	teardown(state);
	start_with(state, args);
	f = *state;
	create(f, "{\"template_name\":\"base\",\"timeout_seconds\":60}", id,
	       NULL);
	assert_int_equal(act(f, id, "pause"), 200);
	admin(f, "POST", "/_sim/time", "{\"advance_ms\":600000}");
	snprintf(path, sizeof(path), "/v1/sandboxes/%s", id);
	assert_int_equal(api(f, "GET", path, NULL), 200);
	assert_string_equal(sc_str(&f->r, "status"), "paused");
	assert_int_equal(act(f, id, "resume"), 200);
	admin(f, "POST", "/_sim/time", "{\"advance_ms\":61000}");
	assert_int_equal(api(f, "GET", path, NULL), 404);
}

static void t_creating_variant(void **state)
{
	static const char *const args[] = {"--create-creating=300", NULL};
	struct fx *f;
	char id[64], path[160];

	teardown(state);
	start_with(state, args);
	f = *state;
	create(f, "{\"template_name\":\"base\"}", id, NULL);
	assert_string_equal(sc_str(&f->r, "status"), "creating");
	snprintf(path, sizeof(path), "/v1/sandboxes/%s/token/refresh", id);
	assert_int_equal(api(f, "POST", path, NULL), 409);
	assert_int_equal(act(f, id, "pause"), 409);
	sleep_ms(350);
	snprintf(path, sizeof(path), "/v1/sandboxes/%s", id);
	assert_int_equal(api(f, "GET", path, NULL), 200);
	assert_string_equal(sc_str(&f->r, "status"), "running");
}

static void t_templates(void **state)
{
	struct fx *f = *state;

	assert_int_equal(api(f, "GET", "/v1/templates", NULL), 200);
	assert_int_equal(data_count(f), 2);
	assert_int_equal(api(f, "GET", "/v1/templates/base", NULL), 200);
	assert_string_equal(sc_str(&f->r, "display_name"), "Base");
	api(f, "GET", "/v1/templates/gpu", NULL);
	assert_error(f, 404, "RESOURCE_NOT_FOUND");
}

static void t_state_file_survives_restart(void **state)
{
	struct fx *f = *state;
	char id[64], tok[512], path[160];

	create(f, "{\"template_name\":\"base\",\"timeout_seconds\":600}", id,
	       tok);
	assert_int_equal(act(f, id, "pause"), 200);
	assert_int_equal(simproc_stop(&f->p), 0);
	assert_int_equal(simproc_restart(&f->p, sim_bin, NULL), 0);
	snprintf(path, sizeof(path), "/v1/sandboxes/%s", id);
	assert_int_equal(api(f, "GET", path, NULL), 200);
	assert_string_equal(sc_str(&f->r, "status"), "paused");
	assert_int_equal(act(f, id, "resume"), 200);
	/* A token issued before the restart is still valid. */
	assert_int_equal(vm(f, id, tok), 200);
}

int main(int argc, char **argv)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
	const struct CMUnitTest tests[] = {
	        T(t_health_and_auth),
	        T(t_create_shape),
	        T(t_create_errors),
	        T(t_get_delete),
	        T(t_transitions),
	        T(t_conflict_status_and_no_start_stop),
	        T(t_set_timeout),
	        T(t_refresh_and_vm_tokens),
	        T(t_token_lifetime),
	        T(t_list_paging),
	        T(t_list_limits_configurable),
	        T(t_killed_at_expiry),
	        T(t_clock_stops_while_paused),
	        T(t_creating_variant),
	        T(t_templates),
	        T(t_state_file_survives_restart),
	};
#undef T
	int r;

	sim_bin = argc > 1 ? argv[1] : "hopx-sim";
	curl_global_init(CURL_GLOBAL_DEFAULT);
	r = cmocka_run_group_tests_name("sim_conformance", tests, NULL, NULL);
	curl_global_cleanup();
	return r;
}
