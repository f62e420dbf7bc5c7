#include "ipc_client.h"

#include "buf.h"
#include "err.h"
#include "json.h"
#include "proto.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

struct ipc_client {
	int fd;
	struct buf in;
	long next_id;
	long sub_id;   /* id of the subscribe call, 0 when none */
	size_t handed; /* bytes of a line handed out as text, to drop */
};

int ipc_client_connect(const char *path, struct ipc_client **out)
{
	struct sockaddr_un sa;
	struct ipc_client *c;
	int fd, e;

	*out = NULL;
	memset(&sa, 0, sizeof(sa));
	sa.sun_family = AF_UNIX;
	if (strlen(path) >= sizeof(sa.sun_path))
		return ERR_TOOBIG;
	memcpy(sa.sun_path, path, strlen(path) + 1);
	if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0)
		return ERR_SYS;
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
		e = errno;
		close(fd);
		if (e == ENOENT || e == ECONNREFUSED || e == ENOTDIR)
			return ERR_UNAVAIL;
		return e == EACCES || e == EPERM ? ERR_PERM : ERR_SYS;
	}
	if ((c = calloc(1, sizeof(*c))) == NULL) {
		close(fd);
		return ERR_NOMEM;
	}
	c->fd = fd;
	buf_init(&c->in, PROTO_MAX);
	*out = c;
	return 0;
}

void ipc_client_close(struct ipc_client *c)
{
	if (c == NULL)
		return;
	close(c->fd);
	buf_finish(&c->in);
	free(c);
}

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int send_all(int fd, const char *p, size_t n)
{
	while (n > 0) {
		ssize_t w = send(fd, p, n, MSG_NOSIGNAL);

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return ERR_NET;
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

/* Reads more bytes, waiting until deadline (< 0: forever). */
static int fill(struct ipc_client *c, int64_t deadline)
{
	struct pollfd pfd = {c->fd, POLLIN, 0};
	char chunk[16384];
	int wait, r;
	ssize_t n;

	wait = deadline < 0 ? -1 : (int)(deadline - now_ms());
	if (deadline >= 0 && wait <= 0)
		return ERR_TIMEOUT;
	r = poll(&pfd, 1, wait);
	if (r == 0)
		return ERR_TIMEOUT;
	if (r < 0)
		return errno == EINTR ? 0 : ERR_SYS;
	n = recv(c->fd, chunk, sizeof(chunk), 0);
	if (n < 0 && errno == EINTR)
		return 0;
	if (n <= 0) /* EOF is an error: the reply never came */
		return ERR_NET;
	return buf_append(&c->in, chunk, (size_t)n);
}

/* The next complete line's text; waits for it until deadline. */
static int next_text(struct ipc_client *c, int64_t deadline, const char **line,
                     size_t *len, size_t *used)
{
	int r;

	buf_consume(&c->in, c->handed);
	c->handed = 0;
	for (;;) {
		r = proto_next_line(&c->in, line, len, used);
		if (r != ERR_NOTFOUND)
			return r;
		if ((r = fill(c, deadline)) != 0)
			return r;
	}
}

/* Takes the next complete line as JSON; waits for it until deadline. */
static int next_line(struct ipc_client *c, int64_t deadline, cJSON **out)
{
	const char *line;
	size_t len, used;
	int r = next_text(c, deadline, &line, &len, &used);

	if (r != 0)
		return r;
	r = json_parse(line, len, out);
	buf_consume(&c->in, used);
	return r == 0 && cJSON_IsObject(*out) ? 0 : ERR_PROTO;
}

/* Turns an error member into its code and message. */
static int take_error(const cJSON *err, char **message)
{
	const char *code = "protocol", *msg = "malformed error reply";

	json_get_str(err, "code", &code);
	json_get_str(err, "message", &msg);
	if (message)
		*message = strdup(msg);
	return err_from_name(code) == 0 ? ERR_PROTO : err_from_name(code);
}

static int send_request(struct ipc_client *c, const char *method, cJSON *params)
{
	cJSON *o = cJSON_CreateObject();
	char *text;
	int r;

	if (o == NULL) {
		cJSON_Delete(params);
		return ERR_NOMEM;
	}
	json_add_i64(o, "id", ++c->next_id);
	json_add_str(o, "method", method);
	cJSON_AddItemToObject(o, "params",
	                      params ? params : cJSON_CreateObject());
	text = cJSON_PrintUnformatted(o);
	cJSON_Delete(o);
	if (text == NULL)
		return ERR_NOMEM;
	r = send_all(c->fd, text, strlen(text));
	if (r == 0)
		r = send_all(c->fd, "\n", 1);
	free(text);
	return r;
}

int ipc_client_call(struct ipc_client *c, const char *method, cJSON *params,
                    int timeout_ms, cJSON **result, char **message)
{
	int64_t deadline = now_ms() + timeout_ms, id = 0;
	cJSON *line = NULL, *v;
	int r;

	*result = NULL;
	if ((r = send_request(c, method, params)) != 0)
		return r;
	for (;;) {
		if ((r = next_line(c, deadline, &line)) != 0)
			return r;
		if (json_get_i64(line, "id", &id) == 0 && id == c->next_id &&
		    !cJSON_GetObjectItem(line, "event"))
			break;
		/* An error with a null id is about the connection itself
		 * (refused, busy, too big): it answers us too. */
		if (cJSON_IsNull(cJSON_GetObjectItem(line, "id")) &&
		    cJSON_GetObjectItem(line, "error"))
			break;
		cJSON_Delete(line); /* an event of an older subscription */
	}
	if ((v = cJSON_DetachItemFromObject(line, "result")) != NULL) {
		*result = v;
		if (strcmp(method, "subscribe") == 0)
			c->sub_id = c->next_id;
	} else if ((v = cJSON_GetObjectItem(line, "error")) != NULL) {
		r = take_error(v, message);
	} else {
		r = ERR_PROTO;
	}
	cJSON_Delete(line);
	return r;
}

/* Whether line is the result of request id, as the agent writes it. */
static int is_result(const char *line, size_t len, long id)
{
	char head[64];
	int n = snprintf(head, sizeof(head), "{\"id\":%ld,\"result\":", id);

	return (size_t)n < len && memcmp(line, head, (size_t)n) == 0;
}

int ipc_client_call_text(struct ipc_client *c, const char *method,
                         cJSON *params, int timeout_ms, const char **text,
                         size_t *len, char **message)
{
	int64_t deadline = now_ms() + timeout_ms;
	const char *line;
	size_t n, used;
	cJSON *j = NULL, *v;
	int r;

	*text = NULL;
	if ((r = send_request(c, method, params)) != 0)
		return r;
	for (;;) {
		if ((r = next_text(c, deadline, &line, &n, &used)) != 0)
			return r;
		if (is_result(line, n, c->next_id)) {
			*text = line;
			*len = n;
			c->handed = used;
			return 0;
		}
		if (json_parse(line, n, &j) != 0)
			return ERR_PROTO;
		buf_consume(&c->in, used);
		/* An error for this request, or about the connection. */
		if ((v = cJSON_GetObjectItem(j, "error")) != NULL)
			break;
		cJSON_Delete(j); /* an event of an older subscription */
	}
	r = take_error(v, message);
	cJSON_Delete(j);
	return r;
}

int ipc_client_next_event(struct ipc_client *c, int timeout_ms, cJSON **event,
                          char **message)
{
	int64_t deadline = timeout_ms < 0 ? -1 : now_ms() + timeout_ms;
	cJSON *line = NULL, *v;
	int r;

	*event = NULL;
	if ((r = next_line(c, deadline, &line)) != 0)
		return r;
	if ((v = cJSON_DetachItemFromObject(line, "event")) != NULL)
		*event = v;
	else if ((v = cJSON_GetObjectItem(line, "error")) != NULL)
		r = take_error(v, message);
	else
		r = ERR_PROTO;
	cJSON_Delete(line);
	return r;
}
