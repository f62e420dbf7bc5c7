#ifndef HOPXD_PROTO_H
#define HOPXD_PROTO_H

/*
 * The local protocol between hopxd and its clients (doc/protocol.md):
 * one JSON object per line over a Unix stream socket, at most PROTO_MAX
 * bytes per line including the newline.
 *
 *   request  {"id": 1, "method": "list", "params": {...}}
 *   reply    {"id": 1, "result": {...}}
 *            {"id": 1, "error": {"code": "not_found", "message": "..."}}
 *   event    {"id": 7, "event": {...}}   (after a "subscribe" with id 7)
 *
 * Bump PROTO_VERSION in the same commit that changes the wire format.
 */

#include <stddef.h>

#include <cjson/cJSON.h>

#include "buf.h"

#define PROTO_VERSION 1
#define PROTO_MAX     (1024 * 1024)

/*
 * Framing over a growing input buffer. proto_next_line finds the first
 * complete line in b: on 0 it sets *line and *len (without the newline, valid
 * until b changes) and *consumed (bytes to buf_consume afterwards); when
 * no full line is there yet it returns ERR_NOTFOUND, or ERR_TOOBIG once
 * the pending bytes reach PROTO_MAX without a newline.
 */
int proto_next_line(const struct buf *b, const char **line, size_t *len,
                    size_t *consumed);

/* A parsed request. Members point into the tree in root (owned). */
struct proto_req {
	cJSON *root;
	const cJSON *id; /* number or string; NULL when absent */
	const char *method;
	const cJSON *params; /* always an object (empty when absent) */
	cJSON *empty;        /* owned empty params, when absent */
};

/*
 * Parses one line into a request. Returns 0, or ERR_PARSE (not JSON, or
 * not an object) or ERR_INVAL (missing/mistyped id, method or params) with
 * a message for the client in msg. On error req->id may still be set, so
 * the error reply can echo it. Always call proto_req_finish.
 */
int proto_req_parse(const char *line, size_t len, struct proto_req *req,
                    char *msg, size_t msgn);

void proto_req_finish(struct proto_req *req);

/*
 * Builds a reply line (with the trailing newline) echoing id (which may be
 * NULL: JSON null). result is consumed. Returns malloc'd text or NULL.
 */
char *proto_result(const cJSON *id, cJSON *result, size_t *len);
char *proto_error(const cJSON *id, int code, const char *message, size_t *len);
char *proto_event(const cJSON *id, cJSON *event, size_t *len);

/*
 * The same line around an event already printed as JSON text: one
 * rendering serves every subscriber. NULL when out of memory.
 */
char *proto_event_text(const cJSON *id, const char *event, size_t *len);

/* A result already written as JSON text (n bytes), in its line. */
char *proto_result_text(const cJSON *id, const char *result, size_t n,
                        size_t *len);

/*
 * A parameter rule for the dispatch table: name, JSON type, required.
 * proto_check_params checks every rule and rejects unknown keys, writing
 * the problem into msg. Returns 0 or ERR_INVAL.
 */
enum proto_type {
	PT_STRING,
	PT_INT,
	PT_BOOL,
	PT_OBJECT,
	PT_ARRAY,
	PT_STRING_OR_NULL
};

struct proto_param {
	const char *name;
	enum proto_type type;
	int required;
};

int proto_check_params(const cJSON *params, const struct proto_param *rules,
                       char *msg, size_t msgn);

#endif
