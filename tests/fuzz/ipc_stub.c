/*
 * The socket layer as methods.c sees it, without sockets: replies are
 * counted and dropped, so the fuzzer reaches dispatch and the store
 * without an event loop.
 */
#include "ipc_server.h"

#include <stdlib.h>

struct ipc_conn {
	int subscribed;
};

size_t fuzz_replies;

int ipc_conn_send(struct ipc_conn *c, char *text, size_t len)
{
	(void)c;
	(void)len;
	if (text == NULL)
		abort(); /* every reply must be built */
	free(text);
	fuzz_replies++;
	return 0;
}

void ipc_conn_hold(struct ipc_conn *c)
{
	(void)c;
}

long ipc_conn_pid(const struct ipc_conn *c)
{
	(void)c;
	return 0;
}

void ipc_conn_keep(struct ipc_conn *c)
{
	(void)c;
}

void ipc_conn_release(struct ipc_conn *c)
{
	(void)c;
}

void ipc_conn_subscribe(struct ipc_conn *c, const cJSON *id, int64_t seq)
{
	(void)id;
	(void)seq;
	c->subscribed = 1;
}

size_t ipc_server_connections(const struct ipc_server *s)
{
	(void)s;
	return 1;
}

size_t ipc_server_subscribers(const struct ipc_server *s)
{
	(void)s;
	return 0;
}

/* Replies go out as they are made: nothing here is written to a socket. */
void ipc_server_cork(struct ipc_server *s, int on)
{
	(void)s;
	(void)on;
}

void ipc_server_each_subscriber(struct ipc_server *s, ipc_sub_fn fn, void *ud)
{
	(void)s;
	(void)fn;
	(void)ud;
}

struct ipc_conn *fuzz_conn(void);

struct ipc_conn *fuzz_conn(void)
{
	static struct ipc_conn c;

	return &c;
}
