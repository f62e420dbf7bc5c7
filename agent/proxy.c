/* SO_BINDTODEVICE is a Linux extension. */
#define _GNU_SOURCE
/*
 * The proxy's listener and connections: one socket on a port of every
 * loopback address, a sandbox named by the address a client dialled, a
 * cap on connections, and one timer per connection for its deadlines.
 */
#include "proxy_int.h"

#include "agent.h"
#include "err.h"
#include "heap.h"
#include "json.h"
#include "log.h"
#include "store.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <utlist.h>

/* Numbers past this would leave 127/8. */
#define NUM_MAX (0x00ffffffu - (PROXY_NET & 0x00ffffffu) - 1)

const double proxy_lat_bounds[8] = {0.0005, 0.001, 0.0025, 0.005,
                                    0.01,   0.05,  0.25,   0};

/* ---- connections ---- */

static void maybe_free(struct pconn *c)
{
	if (c->handles > 0 || c->holds > 0)
		return;
	free(c);
}

static void on_handle_closed(uv_handle_t *h)
{
	struct pconn *c = h->data;

	c->handles--;
	maybe_free(c);
}

void pconn_unhold(struct pconn *c)
{
	c->holds--;
	maybe_free(c);
}

static void on_trim(uv_timer_t *t)
{
	struct proxy *px = t->data;

	while (px->npool)
		free(px->pool[--px->npool]);
	heap_trim();
	px->peak = px->st.connections;
}

void pconn_close(struct pconn *c)
{
	struct proxy *px = c->px;

	if (c->closing)
		return;
	c->closing = 1;
	DL_DELETE(px->conns, c);
	px->st.connections--;
	/* Once their close callbacks have freed them: the next loop turn. */
	if (px->peak >= PX_TRIM_PEAK && px->st.connections <= px->peak / 4 &&
	    !uv_is_active((uv_handle_t *)&px->trim))
		uv_timer_start(&px->trim, on_trim, 0, 0);
	pflow_release(c);
	uv_close((uv_handle_t *)&c->cli, on_handle_closed);
	uv_close((uv_handle_t *)&c->timer, on_handle_closed);
}

static void on_timer(uv_timer_t *t)
{
	pflow_timeout(t->data);
}

void pconn_arm(struct pconn *c)
{
	struct proxy *px = c->px;
	uint64_t ms;

	if (c->closing)
		return;
	if (c->draining)
		ms = PX_DRAIN_MS;
	else if (c->rq == RQ_HEAD)
		ms = c->in_len ? px->head_to_ms : px->idle_to_ms;
	else
		ms = 5000; /* streaming or waiting: checked for stalls */
	uv_timer_start(&c->timer, on_timer, ms, 0);
}

/* ---- accepting ---- */

/* The sandbox a client reached, by the address it dialled. */
static int sandbox_of(struct proxy *px, uv_tcp_t *t, char *id, size_t n)
{
	struct sockaddr_storage ss;
	int len = sizeof(ss);
	uint32_t addr;

	if (uv_tcp_getsockname(t, (struct sockaddr *)&ss, &len) != 0 ||
	    ss.ss_family != AF_INET)
		return ERR_NOTFOUND;
	addr = ntohl(((struct sockaddr_in *)&ss)->sin_addr.s_addr);
	if (addr <= PROXY_NET || addr - PROXY_NET > NUM_MAX)
		return ERR_NOTFOUND;
	return store_proxy_host_id(px->a->store, addr - PROXY_NET, id, n);
}

struct pconn *pconn_new(struct proxy *px)
{
	struct pconn *c = calloc(1, sizeof(*c));

	if (c == NULL)
		return NULL;
	c->px = px;
	uv_timer_init(px->a->loop, &c->timer);
	c->timer.data = c;
	c->handles = 2;
	DL_APPEND(px->conns, c);
	if (++px->st.connections > px->peak)
		px->peak = px->st.connections;
	return c;
}

static void on_accept(uv_stream_t *lis, int status)
{
	struct proxy *px = lis->data;
	struct pconn *c;

	if (status != 0 || (c = pconn_new(px)) == NULL)
		return;
	uv_tcp_init(px->a->loop, &c->cli.tcp);
	c->cli.h.data = c;
	if (uv_accept(lis, (uv_stream_t *)&c->cli) != 0) {
		pconn_close(c);
		return;
	}
	if (px->st.connections > px->max_conns) {
		pflow_fail(c, 503, "SERVICE_UNAVAILABLE",
		           "the agent's proxy has too many connections; "
		           "try again");
		return;
	}
	if (sandbox_of(px, &c->cli.tcp, c->id, sizeof(c->id)) != 0) {
		pflow_fail(c, 404, "SANDBOX_NOT_FOUND",
		           "no sandbox tracked by this agent has this "
		           "address: 'hopxctl ls' lists them");
		return;
	}
	uv_tcp_nodelay(&c->cli.tcp, 1);
	uv_tcp_keepalive(&c->cli.tcp, 1, 60);
	pflow_start(c);
}

/* ---- the listener ---- */

/*
 * One socket for every loopback address: bound to the loopback device,
 * so that whatever address it names, only this machine reaches it.
 */
static int listen_fd(int port, int *fd_out, char *why, size_t n)
{
	struct sockaddr_in sa = {.sin_family = AF_INET,
	                         .sin_port = htons((uint16_t)port)};
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1;

	if (fd < 0 ||
	    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
	    setsockopt(fd, SOL_SOCKET, SO_BINDTODEVICE, "lo", 3) != 0) {
		snprintf(why, n,
		         "cannot bind the proxy to the loopback device: %s "
		         "(Linux 5.7 or later allows it; --proxy-port off "
		         "turns the proxy off)",
		         strerror(errno));
		goto fail;
	}
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
		snprintf(why, n,
		         "cannot listen on port %d for the proxy: %s (choose "
		         "another with --proxy-port)",
		         port, strerror(errno));
		goto fail;
	}
	*fd_out = fd;
	return 0;
fail:
	if (fd >= 0)
		close(fd);
	return ERR_SYS;
}

static int open_listener(struct proxy *px, int port, char *why, size_t n)
{
	struct sockaddr_in sa;
	int fd = -1, len = sizeof(sa), e;

	if ((e = listen_fd(port, &fd, why, n)) != 0)
		return e;
	uv_tcp_init(px->a->loop, &px->lis);
	px->lis.data = px;
	px->listening = 1;
	px->handles++;
	if (uv_tcp_open(&px->lis, fd) != 0) {
		close(fd);
		snprintf(why, n, "cannot listen for the proxy");
		return ERR_SYS;
	}
	if ((e = uv_listen((uv_stream_t *)&px->lis, 1024, on_accept)) != 0 ||
	    uv_tcp_getsockname(&px->lis, (struct sockaddr *)&sa, &len) != 0) {
		snprintf(why, n, "cannot listen on port %d for the proxy: %s",
		         port, uv_strerror(e));
		return ERR_SYS;
	}
	px->port = ntohs(sa.sin_port);
	return 0;
}

int proxy_start(struct agent *a, const struct proxy_opts *o, struct proxy **out,
                char *why, size_t n)
{
	struct proxy *px = calloc(1, sizeof(*px));
	int e;

	if (px == NULL)
		return ERR_NOMEM;
	px->a = a;
	uv_timer_init(a->loop, &px->trim);
	px->trim.data = px;
	uv_timer_init(a->loop, &px->sweep);
	px->sweep.data = px;
	px->handles = 2;
	snprintf(px->key, sizeof(px->key), "%s",
	         o->local_key ? o->local_key : "");
	px->max_conns = o->max_connections ? o->max_connections : 1024;
	px->head_to_ms = 1000ull * (o->head_timeout_s ? o->head_timeout_s : 10);
	px->idle_to_ms = 1000ull * (o->idle_timeout_s ? o->idle_timeout_s : 60);
	if (o->port >= 0 && (e = open_listener(px, o->port, why, n)) != 0) {
		proxy_stop(px);
		return e;
	}
	*out = px;
	return 0;
}

int proxy_port(const struct proxy *px)
{
	return px->port;
}

int proxy_url(struct proxy *px, const char *id, char *buf, size_t n)
{
	int64_t num;
	uint32_t addr;
	int e;

	if (!px->listening)
		return ERR_STATE;
	if ((e = store_proxy_host(px->a->store, id, &num)) != 0)
		return e;
	if (num <= 0 || num > NUM_MAX)
		return ERR_RANGE;
	addr = PROXY_NET + (uint32_t)num;
	snprintf(buf, n, "http://%u.%u.%u.%u:%d", addr >> 24,
	         (addr >> 16) & 255, (addr >> 8) & 255, addr & 255, px->port);
	return 0;
}

const struct proxy_stats *proxy_stats(const struct proxy *px)
{
	return &px->st;
}

int proxy_holders_json(const struct proxy *px, const char *id, cJSON *arr)
{
	const struct pconn *c;
	cJSON *o;

	DL_FOREACH(px->conns, c)
	{
		if (!c->leased || strcmp(c->id, id) != 0)
			continue;
		if ((o = cJSON_CreateObject()) == NULL)
			return ERR_NOMEM;
		json_add_i64(o, "pid", c->pid);
		json_add_str(o, "command",
		             c->tunnel ? "proxy: a WebSocket"
		                       : "proxy: a request");
		json_add_time(o, "since", c->leased_at);
		cJSON_AddItemToArray(arr, o);
	}
	return 0;
}

static void proxy_free(struct proxy *px)
{
	while (px->npool)
		free(px->pool[--px->npool]);
	px_tls_ctx_free(px->tls);
	free(px);
}

static void on_closed(uv_handle_t *h)
{
	struct proxy *px = h->data;

	if (--px->handles == 0)
		proxy_free(px);
}

void proxy_stop(struct proxy *px)
{
	struct pconn *c, *tmp;

	if (px == NULL)
		return;
	DL_FOREACH_SAFE(px->conns, c, tmp)
	pconn_close(c);
	px_pool_close_all(px);
	proxy_unbind_all(px);
	if (px->listening)
		uv_close((uv_handle_t *)&px->lis, on_closed);
	uv_close((uv_handle_t *)&px->trim, on_closed);
	uv_close((uv_handle_t *)&px->sweep, on_closed);
}
