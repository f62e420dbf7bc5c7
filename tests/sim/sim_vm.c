/*
 * The sandbox VM agent behind public_host: /sandbox/{id}/health and
 * /sandbox/{id}/info. Reachable only while the sandbox runs; answers only
 * a valid, unexpired token of that very sandbox (Authorization: Bearer).
 */
#include "sim.h"

#include <stdio.h>
#include <string.h>

void sim_vm_handle(struct sim *s, const struct sim_req *rq, struct sim_resp *rs)
{
	char buf[512], *seg[4];
	struct sim_sandbox *sb;
	cJSON *o;
	int n = sim_split_path(rq->path, buf, sizeof(buf), seg, 4);

	if (n != 3 || strcmp(seg[0], "sandbox") != 0 ||
	    strcmp(rq->method, "GET") != 0 ||
	    (strcmp(seg[2], "health") != 0 && strcmp(seg[2], "info") != 0)) {
		rs->route = "VM unknown";
		sim_error(rs, 404, "RESOURCE_NOT_FOUND", "Not found");
		return;
	}
	rs->route = strcmp(seg[2], "health") == 0 ? "VM GET /health"
	                                          : "VM GET /info";
	snprintf(rs->sandbox_id, sizeof(rs->sandbox_id), "%s", seg[1]);
	if ((sb = sim_find(s, seg[1])) == NULL) {
		sim_error(rs, 502, "SANDBOX_UNREACHABLE", "Sandbox not found");
		return;
	}
	if (sb->status != SIM_RUNNING) {
		sim_error(rs, 503, "SERVICE_UNAVAILABLE",
		          "Sandbox agent unavailable: sandbox is not running");
		return;
	}
	if (sim_jwt_check(s, rq->bearer, sb->id) != 0) {
		sim_error(rs, 401, "INVALID_TOKEN", "Invalid or expired token");
		return;
	}
	o = cJSON_CreateObject();
	if (strcmp(seg[2], "health") == 0) {
		cJSON_AddStringToObject(o, "status", "healthy");
	} else {
		cJSON_AddStringToObject(o, "id", sb->id);
		cJSON_AddStringToObject(o, "status", "running");
		cJSON_AddStringToObject(o, "template_name", sb->template_name);
	}
	rs->status = 200;
	rs->json = o;
}
