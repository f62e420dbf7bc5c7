/*
 * agent/ipc_server.c and the method table (methods*.c) in one process: an
 * agent struct with a store in a temp dir and no HopX client, its socket
 * served on a libuv loop that the test turns while it talks to it. The
 * table's checks (unknown method, missing and mistyped parameters), local
 * methods' effects on the store, several requests in one write answered
 * in order, an oversize frame refused, and lifecycle methods without an
 * API key.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cmocka.h>
#include <cjson/cJSON.h>
#include <uv.h>

#include "agent.h"
#include "err.h"
#include "ipc_server.h"
#include "log.h"
#include "proto.h"
#include "sessions.h"
#include "store.h"
#include "testutil.h"

struct fx {
	char dir[256];
	uv_loop_t loop;
	struct agent a;
	int fd;
	char line[1 << 16];
};

static void on_loaded(void *ud)
{
	(void)ud;
}

static void seed(struct store *s)
{
	static const char *const ids[] = {"sbx0001", "sbx0002"};
	struct store_sandbox r;
	int i;

	for (i = 0; i < 2; i++) {
		store_sandbox_init(&r);
		r.id = (char *)ids[i];
		r.name = i == 0 ? "web" : NULL;
		r.status = i == 0 ? SBX_RUNNING : SBX_PAUSED;
		assert_int_equal(
		        store_sandbox_put(s, &r, STORE_CAUSE_USER, NULL), 0);
	}
}

static int client(const char *path)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	int fd = socket(AF_UNIX, SOCK_STREAM, 0);

	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	return fd;
}

static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));
	struct agent_config *cfg = &f->a.cfg;
	char *cause = NULL;

	assert_non_null(f);
	assert_int_equal(tu_tmpdir(f->dir, sizeof(f->dir)), 0);
	tu_path(cfg->db, sizeof(cfg->db), f->dir, "h.db");
	tu_path(cfg->socket, sizeof(cfg->socket), f->dir, "run/s.sock");
	cfg->idle_timeout_s = 60;
	cfg->max_connections = 16;
	cfg->max_queue = 1 << 20;
	uv_loop_init(&f->loop);
	f->a.loop = &f->loop;
	f->a.clk = clock_system();
	assert_int_equal(store_open(cfg->db, 0, NULL, &f->a.store, NULL), 0);
	seed(f->a.store);
	assert_int_equal(sessions_create(&f->a, NULL, on_loaded, f, &f->a.sess),
	                 0);
	sessions_load_all(f->a.sess);
	assert_int_equal(ipc_server_start(&f->a, -1, &f->a.ipc, &cause), 0);
	f->fd = client(cfg->socket);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;

	if (f->fd >= 0)
		close(f->fd);
	ipc_server_close(f->a.ipc);
	sessions_destroy(f->a.sess);
	uv_run(&f->loop, UV_RUN_DEFAULT);
	ipc_server_destroy(f->a.ipc);
	assert_int_equal(uv_loop_close(&f->loop), 0);
	assert_int_equal(store_close(f->a.store), 0);
	tu_rmrf(f->dir);
	free(f);
	return 0;
}

/* Turns the loop until n whole lines arrived (or 5 s passed). */
static void read_lines(struct fx *f, int n)
{
	size_t len = 0;
	uint64_t end = uv_hrtime() + 5000000000ULL;
	ssize_t r;
	int got = 0;

	while (got < n && uv_hrtime() < end) {
		uv_run(&f->loop, UV_RUN_NOWAIT);
		r = recv(f->fd, f->line + len, sizeof(f->line) - 1 - len,
		         MSG_DONTWAIT);
		if (r == 0)
			break;
		if (r < 0)
			continue;
		for (ssize_t i = 0; i < r; i++)
			got += f->line[len + (size_t)i] == '\n';
		len += (size_t)r;
	}
	f->line[len] = '\0';
	assert_int_equal(got, n);
}

/* One request; returns the reply parsed (caller deletes). */
static cJSON *rpc(struct fx *f, const char *req)
{
	cJSON *j;

	assert_int_equal(send(f->fd, req, strlen(req), 0),
	                 (ssize_t)strlen(req));
	read_lines(f, 1);
	j = cJSON_Parse(f->line);
	assert_non_null(j);
	return j;
}

static const char *error_code(const cJSON *reply)
{
	const cJSON *e = cJSON_GetObjectItemCaseSensitive(reply, "error");
	const cJSON *c = cJSON_GetObjectItemCaseSensitive(e, "code");

	return cJSON_IsString(c) ? c->valuestring : "";
}

static void expect_error(struct fx *f, const char *req, const char *code,
                         const char *in_message)
{
	cJSON *j = rpc(f, req);
	const cJSON *e = cJSON_GetObjectItemCaseSensitive(j, "error");
	const cJSON *m = cJSON_GetObjectItemCaseSensitive(e, "message");

	assert_string_equal(error_code(j), code);
	if (in_message &&
	    !(cJSON_IsString(m) && strstr(m->valuestring, in_message) != NULL))
		fail_msg("%s: message lacks '%s': %s", req, in_message,
		         f->line);
	cJSON_Delete(j);
}

/* What the table refuses before any handler runs. */
static void t_table_checks(void **state)
{
	struct fx *f = *state;

	expect_error(f, "{\"id\":1,\"method\":\"nosuch\"}\n", "invalid",
	             "nosuch");
	expect_error(f, "{\"id\":2,\"method\":\"show\",\"params\":{}}\n",
	             "invalid", "ref");
	expect_error(f,
	             "{\"id\":3,\"method\":\"show\",\"params\":{\"ref\":7}}\n",
	             "invalid", "ref");
	expect_error(f,
	             "{\"id\":4,\"method\":\"show\",\"params\":"
	             "{\"ref\":\"web\",\"bogus\":1}}\n",
	             "invalid", "bogus");
	expect_error(f, "not json\n", "parse", NULL);
}

/* Local methods change the store and answer with the record. */
static void t_local_methods(void **state)
{
	struct fx *f = *state;
	struct store_sandbox r;
	cJSON *j;

	j = rpc(f, "{\"id\":1,\"method\":\"label\",\"params\":{\"ref\":\"web\","
	           "\"set\":{\"team\":\"core\"}}}\n");
	assert_non_null(cJSON_GetObjectItemCaseSensitive(j, "result"));
	cJSON_Delete(j);
	j = rpc(f, "{\"id\":2,\"method\":\"rename\",\"params\":{\"ref\":"
	           "\"sbx0002\",\"name\":\"db\"}}\n");
	assert_non_null(cJSON_GetObjectItemCaseSensitive(j, "result"));
	cJSON_Delete(j);
	expect_error(f,
	             "{\"id\":3,\"method\":\"rename\",\"params\":{\"ref\":"
	             "\"db\",\"name\":\"web\"}}\n",
	             "exists", NULL);
	store_sandbox_init(&r);
	assert_int_equal(store_sandbox_get(f->a.store, "db", &r), 0);
	assert_string_equal(r.id, "sbx0002");
	store_sandbox_finish(&r);
	assert_int_equal(store_sandbox_get(f->a.store, "web", &r), 0);
	assert_int_equal(r.nlabels, 1);
	assert_string_equal(r.labels[0].key, "team");
	store_sandbox_finish(&r);
	expect_error(f,
	             "{\"id\":4,\"method\":\"show\",\"params\":{\"ref\":"
	             "\"nope\"}}\n",
	             "not_found", NULL);
}

/* Three requests in one write: three replies, in order, ids echoed. */
static void t_pipelined(void **state)
{
	struct fx *f = *state;
	static const char req[] = "{\"id\":1,\"method\":\"hello\"}\n"
	                          "{\"id\":2,\"method\":\"status\"}\n"
	                          "{\"id\":3,\"method\":\"list\"}\n";
	char *line, *save = NULL;
	int want = 1;

	assert_int_equal(send(f->fd, req, sizeof(req) - 1, 0),
	                 (ssize_t)sizeof(req) - 1);
	read_lines(f, 3);
	for (line = strtok_r(f->line, "\n", &save); line;
	     line = strtok_r(NULL, "\n", &save)) {
		cJSON *j = cJSON_Parse(line);
		const cJSON *id = cJSON_GetObjectItemCaseSensitive(j, "id");
		const cJSON *res =
		        cJSON_GetObjectItemCaseSensitive(j, "result");

		assert_true(cJSON_IsNumber(id));
		assert_int_equal((int)id->valuedouble, want++);
		assert_non_null(res);
		if (want == 3) /* status: both records, loaded */
			assert_true(
			        cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(
			                res, "loaded")));
		cJSON_Delete(j);
	}
	assert_int_equal(want, 4);
}

/* A line longer than PROTO_MAX: an error, then the connection closes. */
static void t_oversize_frame(void **state)
{
	struct fx *f = *state;
	size_t n = PROTO_MAX + 16;
	char *big = malloc(n);
	uint64_t end = uv_hrtime() + 5000000000ULL;
	ssize_t sent = 0, r;

	memset(big, 'x', n);
	while ((size_t)sent < n && uv_hrtime() < end) {
		r = send(f->fd, big + sent, n - (size_t)sent, MSG_DONTWAIT);
		if (r > 0)
			sent += r;
		uv_run(&f->loop, UV_RUN_NOWAIT);
	}
	free(big);
	read_lines(f, 1);
	assert_non_null(strstr(f->line, "too_big"));
	for (r = 1; r != 0 && uv_hrtime() < end;) {
		uv_run(&f->loop, UV_RUN_NOWAIT);
		r = recv(f->fd, f->line, sizeof(f->line), MSG_DONTWAIT);
	}
	assert_int_equal(r, 0);
	close(f->fd); /* the agent forgets the connection once both sides end */
	f->fd = -1;
	while (ipc_server_connections(f->a.ipc) > 0 && uv_hrtime() < end)
		uv_run(&f->loop, UV_RUN_NOWAIT);
	assert_int_equal(ipc_server_connections(f->a.ipc), 0);
}

/* Without an API key, what needs HopX says so; local methods still work. */
static void t_no_api(void **state)
{
	struct fx *f = *state;
	cJSON *j;

	expect_error(f,
	             "{\"id\":1,\"method\":\"pause\",\"params\":{\"ref\":"
	             "\"web\"}}\n",
	             "auth", "API key");
	j = rpc(f, "{\"id\":2,\"method\":\"show\",\"params\":{\"ref\":"
	           "\"web\"}}\n");
	assert_non_null(cJSON_GetObjectItemCaseSensitive(j, "result"));
	cJSON_Delete(j);
}

/*
 * list writes its records as text straight from SQLite's rows; show
 * builds them as trees: the two must say the same, escapes included.
 */
static void t_list_as_show(void **state)
{
	struct fx *f = *state;
	struct store_sandbox r;
	cJSON *list, *show, *item, *want;
	static const struct store_label labels[] = {{"k", "q\"uote\\d"},
	                                            {"z", "caf\xc3\xa9"}};

	store_sandbox_init(&r);
	r.id = "sbx0003";
	r.name = "odd";
	r.status = SBX_STOPPED;
	r.last_error = "HopX said \"no\"\n\tthen \x01\\ and caf\xc3\xa9";
	r.template_id = "73";
	r.timeout_seconds = 600;
	r.expires_at = 1796238311123;
	r.created_at = 0;
	r.keepalive_s = 30;
	r.labels = (struct store_label *)labels;
	r.nlabels = 2;
	assert_int_equal(
	        store_sandbox_put(f->a.store, &r, STORE_CAUSE_USER, NULL), 0);
	assert_int_equal(sessions_track(f->a.sess, "sbx0003"), 0);
	list = rpc(f, "{\"id\":1,\"method\":\"list\",\"params\":{}}\n");
	show = rpc(f, "{\"id\":2,\"method\":\"show\",\"params\":{\"ref\":"
	              "\"odd\"}}\n");
	want = cJSON_GetObjectItem(show, "result");
	cJSON_DeleteItemFromObject(want, "leases");
	item = cJSON_GetArrayItem(
	        cJSON_GetObjectItem(cJSON_GetObjectItem(list, "result"),
	                            "sandboxes"),
	        2);
	assert_non_null(item);
	if (!cJSON_Compare(item, want, 1))
		fail_msg("list: %s\nshow: %s", cJSON_PrintUnformatted(item),
		         cJSON_PrintUnformatted(want));
	cJSON_Delete(list);
	cJSON_Delete(show);
}

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
	const struct CMUnitTest tests[] = {
	        T(t_table_checks),   T(t_local_methods), T(t_pipelined),
	        T(t_oversize_frame), T(t_no_api),        T(t_list_as_show),
	};
#undef T

	log_init("test", LOG_LVL_ERROR);
	store_global_init();
	return cmocka_run_group_tests_name("methods", tests, NULL, NULL);
}
