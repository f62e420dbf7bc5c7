/*
 * The sandbox agent's routes and its JSON calls: plain functions over a
 * struct sim_req, like the control plane's (sim_api.c). Streamed bodies
 * and WebSockets are carried by the HTTP glue (sim_vmhttp.c, sim_ws.c).
 */
#include "sim_vm.h"

#include <fcntl.h>
#include <gnutls/gnutls.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "sim_files.h"
#include "sim_shell.h"

/* files/read answers text files up to this size (download streams). */
#define READ_MAX (16 << 20)

int sim_vm_admit(struct sim *s, const char *id, const char *bearer,
                 struct sim_resp *rs)
{
	struct sim_sandbox *sb = sim_find(s, id);

	snprintf(rs->sandbox_id, sizeof(rs->sandbox_id), "%s", id);
	if (sb == NULL) {
		sim_error(rs, 502, "SANDBOX_UNREACHABLE", "Sandbox not found");
		return -1;
	}
	if (sb->status != SIM_RUNNING) {
		sim_error(rs, 503, "SERVICE_UNAVAILABLE",
		          "Sandbox agent unavailable: sandbox is not running");
		return -1;
	}
	if (sim_jwt_check(s, bearer, sb->id) != 0) {
		sim_error(rs, 401, "INVALID_TOKEN", "Invalid or expired token");
		return -1;
	}
	return 0;
}

static void ok_json(struct sim_resp *rs, cJSON *o)
{
	rs->status = 200;
	rs->json = o;
}

static void vm_health(struct sim *s, const char *id, const struct sim_req *rq,
                      struct sim_resp *rs)
{
	cJSON *o = cJSON_CreateObject();

	(void)s;
	(void)id;
	(void)rq;
	cJSON_AddStringToObject(o, "status", "healthy");
	ok_json(rs, o);
}

static void vm_info(struct sim *s, const char *id, const struct sim_req *rq,
                    struct sim_resp *rs)
{
	cJSON *o = cJSON_CreateObject();
	struct sim_sandbox *sb;

	(void)rq;
	pthread_mutex_lock(&s->lock);
	sb = sim_find(s, id);
	cJSON_AddStringToObject(o, "id", id);
	cJSON_AddStringToObject(o, "status", "running");
	cJSON_AddStringToObject(o, "template_name",
	                        sb ? sb->template_name : "");
	pthread_mutex_unlock(&s->lock);
	ok_json(rs, o);
}

static cJSON *body_json(const struct sim_req *rq, struct sim_resp *rs)
{
	cJSON *j =
	        rq->body ? cJSON_ParseWithLength(rq->body, rq->body_len) : NULL;

	if (!cJSON_IsObject(j)) {
		cJSON_Delete(j);
		sim_error(rs, 400, "INVALID_REQUEST", "Invalid JSON body");
		return NULL;
	}
	return j;
}

static void run_json(struct sim_resp *rs, const struct sim_run *r, double secs)
{
	cJSON *o = cJSON_CreateObject();

	cJSON_AddStringToObject(o, "stdout", r->out);
	cJSON_AddStringToObject(o, "stderr", r->err);
	cJSON_AddNumberToObject(o, "exit_code", r->exit_code);
	cJSON_AddNumberToObject(o, "execution_time", secs);
	cJSON_AddBoolToObject(o, "success", r->exit_code == 0);
	ok_json(rs, o);
}

static double mono(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static const char *item_str(const cJSON *a, int i)
{
	const char *v = cJSON_GetStringValue(cJSON_GetArrayItem(a, i));

	return v ? v : "";
}

/* {command, args} to one script: "bash" "-c" SCRIPT as the SDKs send it,
 * or a command and its words. */
static void script_of(const char *cmd, const cJSON *a, char *out, size_t n)
{
	const cJSON *w;

	if (strcmp(cmd, "bash") == 0 && cJSON_GetArraySize(a) == 2 &&
	    strcmp(item_str(a, 0), "-c") == 0) {
		snprintf(out, n, "%s", item_str(a, 1));
		return;
	}
	snprintf(out, n, "%s", cmd);
	cJSON_ArrayForEach(w, a)
	{
		size_t len = strlen(out);

		if (cJSON_IsString(w))
			snprintf(out + len, n - len, " '%s'", w->valuestring);
	}
}

static void vm_command(struct sim *s, const char *id, const struct sim_req *rq,
                       struct sim_resp *rs)
{
	cJSON *j = body_json(rq, rs);
	struct sim_run *r = NULL;
	char script[8192];
	const char *cmd;
	double t0 = mono();

	if (j == NULL)
		return;
	cmd = cJSON_GetStringValue(cJSON_GetObjectItem(j, "command"));
	if (cmd == NULL)
		sim_error(rs, 400, "INVALID_REQUEST", "command is required");
	else if ((r = malloc(sizeof(*r))) == NULL)
		sim_error(rs, 500, "INTERNAL_ERROR", "out of memory");
	if (r) {
		script_of(cmd, cJSON_GetObjectItem(j, "args"), script,
		          sizeof(script));
		sim_shell_run(s, id, script, 0, r);
		run_json(rs, r, mono() - t0);
	}
	free(r);
	cJSON_Delete(j);
}

static void vm_execute(struct sim *s, const char *id, const struct sim_req *rq,
                       struct sim_resp *rs)
{
	cJSON *j = body_json(rq, rs);
	const char *code, *lang;
	struct sim_run *r;
	double t0 = mono();

	if (j == NULL)
		return;
	code = cJSON_GetStringValue(cJSON_GetObjectItem(j, "code"));
	lang = cJSON_GetStringValue(cJSON_GetObjectItem(j, "language"));
	if (code == NULL || (r = malloc(sizeof(*r))) == NULL) {
		sim_error(rs, 400, "INVALID_REQUEST", "code is required");
		cJSON_Delete(j);
		return;
	}
	sim_shell_run(s, id, code, lang == NULL || strcmp(lang, "python") == 0,
	              r);
	cJSON_Delete(j);
	run_json(rs, r, mono() - t0);
	free(r);
}

static int write_all(const char *name, const void *p, size_t n)
{
	int fd = open(name, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	ssize_t w = fd >= 0 ? write(fd, p, n) : -1;

	if (fd >= 0)
		close(fd);
	return w == (ssize_t)n ? 0 : -1;
}

static void vm_write(struct sim *s, const char *id, const struct sim_req *rq,
                     struct sim_resp *rs)
{
	cJSON *j = body_json(rq, rs), *o;
	const char *path, *content, *enc;
	gnutls_datum_t in, raw = {0};
	char name[2048];
	int r;

	if (j == NULL)
		return;
	path = cJSON_GetStringValue(cJSON_GetObjectItem(j, "path"));
	content = cJSON_GetStringValue(cJSON_GetObjectItem(j, "content"));
	enc = cJSON_GetStringValue(cJSON_GetObjectItem(j, "encoding"));
	if (content == NULL ||
	    sim_files_path(s, id, path, name, sizeof(name)) != 0) {
		sim_error(rs, 400, "INVALID_REQUEST",
		          "path (absolute) and content are required");
	} else if (enc && strcmp(enc, "base64") == 0) {
		in.data = (unsigned char *)(uintptr_t)content;
		in.size = (unsigned)strlen(content);
		r = gnutls_base64_decode2(&in, &raw) < 0
		            ? -2
		            : write_all(name, raw.data, raw.size);
		gnutls_free(raw.data);
		if (r == -2)
			sim_error(rs, 400, "INVALID_REQUEST",
			          "content: bad base64");
		else if (r != 0)
			sim_error(rs, 500, "INTERNAL_ERROR", "cannot write");
	} else if (write_all(name, content, strlen(content)) != 0) {
		sim_error(rs, 500, "INTERNAL_ERROR", "cannot write");
	}
	if (rs->status == 0) {
		o = cJSON_CreateObject();
		cJSON_AddStringToObject(o, "path", path);
		cJSON_AddBoolToObject(o, "success", 1);
		ok_json(rs, o);
	}
	cJSON_Delete(j);
}

static void vm_read(struct sim *s, const char *id, const struct sim_req *rq,
                    struct sim_resp *rs)
{
	char name[2048], *text = NULL;
	struct stat st;
	cJSON *o;
	int fd = -1;

	if (sim_files_path(s, id, rq->file_path, name, sizeof(name)) != 0) {
		sim_error(rs, 400, "INVALID_REQUEST", "path must be absolute");
		return;
	}
	if ((fd = open(name, O_RDONLY | O_CLOEXEC)) < 0 ||
	    fstat(fd, &st) != 0) {
		sim_error(rs, 404, "FILE_NOT_FOUND", "File not found");
	} else if (st.st_size > READ_MAX) {
		sim_error(rs, 413, "FILE_TOO_LARGE",
		          "File too large to read as text: download it");
	} else if ((text = malloc((size_t)st.st_size + 1)) == NULL ||
	           read(fd, text, (size_t)st.st_size) != st.st_size) {
		sim_error(rs, 500, "INTERNAL_ERROR", "cannot read");
	} else {
		text[st.st_size] = '\0';
		o = cJSON_CreateObject();
		cJSON_AddStringToObject(o, "content", text);
		cJSON_AddStringToObject(o, "path", rq->file_path);
		cJSON_AddNumberToObject(o, "size", (double)st.st_size);
		ok_json(rs, o);
	}
	free(text);
	if (fd >= 0)
		close(fd);
}

static const struct sim_vm_route routes[] = {
        {"GET", "/health", "VM GET /health", SIM_VM_JSON, vm_health},
        {"GET", "/info", "VM GET /info", SIM_VM_JSON, vm_info},
        {"POST", "/commands/run", "VM POST /commands/run", SIM_VM_JSON,
         vm_command},
        {"POST", "/execute", "VM POST /execute", SIM_VM_JSON, vm_execute},
        {"POST", "/files/write", "VM POST /files/write", SIM_VM_JSON, vm_write},
        {"GET", "/files/read", "VM GET /files/read", SIM_VM_JSON, vm_read},
        {"POST", "/files/upload", "VM POST /files/upload", SIM_VM_UPLOAD, NULL},
        {"GET", "/files/download", "VM GET /files/download", SIM_VM_DOWNLOAD,
         NULL},
        {"GET", "/execute/stream", "VM WS /execute/stream", SIM_VM_WS, NULL},
        {"GET", "/terminal", "VM WS /terminal", SIM_VM_WS, NULL},
};

const struct sim_vm_route *sim_vm_route(const char *method, const char *path)
{
	for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]); i++)
		if (strcmp(routes[i].method, method) == 0 &&
		    strcmp(routes[i].path, path) == 0)
			return &routes[i];
	return NULL;
}
