#include "proto.h"

#include "err.h"
#include "json.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int proto_next_line(const struct buf *b, const char **line, size_t *len,
                    size_t *consumed)
{
	const char *s = buf_str(b);
	size_t n = buf_len(b);
	const char *nl = memchr(s, '\n', n);

	if (nl == NULL)
		return n >= PROTO_MAX ? ERR_TOOBIG : ERR_NOTFOUND;
	if ((size_t)(nl - s) + 1 > PROTO_MAX)
		return ERR_TOOBIG;
	*line = s;
	*len = (size_t)(nl - s);
	if (*len > 0 && s[*len - 1] == '\r')
		(*len)--;
	*consumed = (size_t)(nl - s) + 1;
	return 0;
}

static int bad(char *msg, size_t n, int code, const char *text)
{
	snprintf(msg, n, "%s", text);
	return code;
}

int proto_req_parse(const char *line, size_t len, struct proto_req *req,
                    char *msg, size_t msgn)
{
	const cJSON *m;

	memset(req, 0, sizeof(*req));
	if (json_parse(line, len, &req->root) != 0 ||
	    !cJSON_IsObject(req->root))
		return bad(msg, msgn, ERR_PARSE,
		           "request is not a JSON object");
	req->id = cJSON_GetObjectItemCaseSensitive(req->root, "id");
	if (req->id && !cJSON_IsNumber(req->id) && !cJSON_IsString(req->id)) {
		req->id = NULL;
		return bad(msg, msgn, ERR_INVAL,
		           "\"id\" must be a number or a string");
	}
	if (req->id == NULL)
		return bad(msg, msgn, ERR_INVAL, "missing \"id\"");
	m = cJSON_GetObjectItemCaseSensitive(req->root, "method");
	if (!cJSON_IsString(m) || m->valuestring[0] == '\0')
		return bad(msg, msgn, ERR_INVAL,
		           "missing or non-string \"method\"");
	req->method = m->valuestring;
	req->params = cJSON_GetObjectItemCaseSensitive(req->root, "params");
	if (req->params == NULL || cJSON_IsNull(req->params)) {
		req->params = req->empty = cJSON_CreateObject();
		if (req->empty == NULL)
			return bad(msg, msgn, ERR_NOMEM, "out of memory");
	} else if (!cJSON_IsObject(req->params)) {
		return bad(msg, msgn, ERR_INVAL,
		           "\"params\" must be an object");
	}
	return 0;
}

void proto_req_finish(struct proto_req *req)
{
	cJSON_Delete(req->root);
	cJSON_Delete(req->empty);
	memset(req, 0, sizeof(*req));
}

/* Serialises {"id": id, key: value} plus a newline; consumes value. */
static char *line_with(const cJSON *id, const char *key, cJSON *value,
                       size_t *len)
{
	cJSON *o = cJSON_CreateObject();
	cJSON *idc = id ? cJSON_Duplicate(id, 1) : cJSON_CreateNull();
	char *text = NULL, *out = NULL;
	size_t n;

	if (o == NULL || idc == NULL || value == NULL) {
		cJSON_Delete(idc);
		cJSON_Delete(value);
		goto out;
	}
	cJSON_AddItemToObject(o, "id", idc);
	cJSON_AddItemToObject(o, key, value);
	if ((text = cJSON_PrintUnformatted(o)) == NULL)
		goto out;
	n = strlen(text);
	if ((out = malloc(n + 2)) == NULL)
		goto out;
	memcpy(out, text, n);
	out[n] = '\n';
	out[n + 1] = '\0';
	*len = n + 1;
out:
	free(text);
	cJSON_Delete(o);
	return out;
}

char *proto_result(const cJSON *id, cJSON *result, size_t *len)
{
	return line_with(id, "result", result, len);
}

char *proto_event(const cJSON *id, cJSON *event, size_t *len)
{
	return line_with(id, "event", event, len);
}

/*
 * An id as JSON text: whole numbers (what clients send) without cJSON's
 * printer, which prints and reads back every number; idt (freed by the
 * caller) holds anything else.
 */
static const char *id_text(const cJSON *id, char *num, size_t n, char **idt)
{
	double v = id ? id->valuedouble : 0;

	*idt = NULL;
	if (cJSON_IsNumber(id) && v >= -9007199254740991.0 &&
	    v <= 9007199254740991.0 && v == (double)(long long)v) {
		snprintf(num, n, "%lld", (long long)v);
		return num;
	}
	*idt = id ? cJSON_PrintUnformatted(id) : NULL;
	return *idt ? *idt : "null";
}

/* {"id":ID,"KEY":TEXT}\n around text already printed. */
static char *line_text(const cJSON *id, const char *key, const char *text,
                       size_t tn, size_t *len)
{
	char num[32], *idt;
	const char *ids = id_text(id, num, sizeof(num), &idt);
	size_t head = strlen(ids) + strlen(key) + sizeof("{\"id\":,\"\":");
	char *out = malloc(head + tn + 3);
	int k;

	if (out) {
		k = snprintf(out, head, "{\"id\":%s,\"%s\":", ids, key);
		memcpy(out + k, text, tn);
		memcpy(out + k + tn, "}\n", 3);
		*len = (size_t)k + tn + 2;
	}
	free(idt);
	return out;
}

char *proto_event_text(const cJSON *id, const char *event, size_t *len)
{
	return line_text(id, "event", event, strlen(event), len);
}

char *proto_result_text(const cJSON *id, const char *result, size_t n,
                        size_t *len)
{
	return line_text(id, "result", result, n, len);
}

char *proto_error(const cJSON *id, int code, const char *message, size_t *len)
{
	cJSON *e = cJSON_CreateObject();

	if (e) {
		json_add_str(e, "code", err_name(code));
		json_add_str(e, "message", message ? message : err_str(code));
	}
	return line_with(id, "error", e, len);
}

static int type_ok(const cJSON *v, enum proto_type t)
{
	switch (t) {
	case PT_STRING:
		return cJSON_IsString(v);
	case PT_STRING_OR_NULL:
		return cJSON_IsString(v) || cJSON_IsNull(v);
	case PT_INT:
		return cJSON_IsNumber(v) &&
		       v->valuedouble == (double)(long long)v->valuedouble;
	case PT_BOOL:
		return cJSON_IsBool(v);
	case PT_OBJECT:
		return cJSON_IsObject(v);
	default:
		return cJSON_IsArray(v);
	}
}

static const char *type_name(enum proto_type t)
{
	static const char *const names[] = {"a string",  "an integer",
	                                    "a boolean", "an object",
	                                    "an array",  "a string or null"};

	return names[t];
}

static const struct proto_param *rule_for(const struct proto_param *rules,
                                          const char *name)
{
	for (; rules && rules->name; rules++)
		if (strcmp(rules->name, name) == 0)
			return rules;
	return NULL;
}

int proto_check_params(const cJSON *params, const struct proto_param *rules,
                       char *msg, size_t msgn)
{
	const struct proto_param *r;
	const cJSON *v;

	cJSON_ArrayForEach(v, params)
	{
		if ((r = rule_for(rules, v->string)) == NULL) {
			snprintf(msg, msgn, "unknown parameter \"%.64s\"",
			         v->string);
			return ERR_INVAL;
		}
		if (!type_ok(v, r->type)) {
			snprintf(msg, msgn, "parameter \"%s\" must be %s",
			         r->name, type_name(r->type));
			return ERR_INVAL;
		}
	}
	for (r = rules; r && r->name; r++) {
		if (r->required &&
		    !cJSON_GetObjectItemCaseSensitive(params, r->name)) {
			snprintf(msg, msgn, "missing parameter \"%s\"",
			         r->name);
			return ERR_INVAL;
		}
	}
	return 0;
}
