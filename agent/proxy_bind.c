/*
 * Fixed local addresses for one sandbox each (hopxctl proxy), for tools
 * that carry no token: the address is the proof, for whom it admits. A
 * Unix socket admits the agent's own user (and root) only, by the peer's
 * credentials, like the agent's socket; a loopback TCP port admits its
 * own user without proof (the peer's uid read from /proc/net/tcp*) and
 * anyone else only with proof, as the per-sandbox addresses do.
 */
/* SO_PEERCRED and struct ucred are Linux extensions. */
#define _GNU_SOURCE
#include "proxy_int.h"

#include "agent.h"
#include "err.h"
#include "log.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- who is on the other end ---- */

static int peer_uid_unix(uv_pipe_t *p, uid_t *uid, long *pid)
{
	struct ucred cred;
	socklen_t len = sizeof(cred);
	uv_os_fd_t fd;

	if (uv_fileno((uv_handle_t *)p, &fd) != 0 ||
	    getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0)
		return ERR_SYS;
	*uid = cred.uid;
	*pid = (long)cred.pid;
	return 0;
}

/* "0100007F:1F90" as /proc/net/tcp writes an IPv4 address and port. */
static void proc_addr(const struct sockaddr_in *sa, char *out, size_t n)
{
	snprintf(out, n, "%08X:%04X", (unsigned)sa->sin_addr.s_addr,
	         (unsigned)ntohs(sa->sin_port));
}

/*
 * The uid owning the client's end of an IPv4 loopback connection: the
 * socket whose local address is our peer's and whose remote is ours.
 */
static int peer_uid_tcp(uv_tcp_t *t, uid_t *uid)
{
	struct sockaddr_in me, peer;
	int ml = sizeof(me), pl = sizeof(peer), r = ERR_NOTFOUND;
	char want_l[32], want_r[32], line[512], l[64], rm[64];
	unsigned long u;
	FILE *f;

	if (uv_tcp_getsockname(t, (struct sockaddr *)&me, &ml) != 0 ||
	    uv_tcp_getpeername(t, (struct sockaddr *)&peer, &pl) != 0 ||
	    me.sin_family != AF_INET ||
	    (f = fopen("/proc/net/tcp", "r")) == NULL)
		return ERR_SYS;
	proc_addr(&peer, want_l, sizeof(want_l));
	proc_addr(&me, want_r, sizeof(want_r));
	while (r != 0 && fgets(line, sizeof(line), f)) {
		if (sscanf(line, "%*d: %63s %63s %*x %*s %*s %*s %lu", l, rm,
		           &u) == 3 &&
		    strcmp(l, want_l) == 0 && strcmp(rm, want_r) == 0) {
			*uid = (uid_t)u;
			r = 0;
		}
	}
	fclose(f);
	return r;
}

static int own_user(uid_t uid)
{
	return uid == geteuid() || uid == 0;
}

/* ---- accepting ---- */

static void on_fixed_accept(uv_stream_t *s, int status)
{
	struct plis *l = s->data;
	struct pconn *c;
	uid_t uid = (uid_t)-1;
	int e;

	if (status != 0 || (c = pconn_new(l->px)) == NULL)
		return;
	if (l->is_unix)
		uv_pipe_init(l->px->a->loop, &c->cli.pipe, 0);
	else
		uv_tcp_init(l->px->a->loop, &c->cli.tcp);
	c->cli.h.data = c;
	if (uv_accept(s, &c->cli.s) != 0) {
		pconn_close(c);
		return;
	}
	snprintf(c->id, sizeof(c->id), "%s", l->id);
	e = l->is_unix ? peer_uid_unix(&c->cli.pipe, &uid, &c->pid)
	               : peer_uid_tcp(&c->cli.tcp, &uid);
	c->trusted = e == 0 && own_user(uid);
	if (l->is_unix && !c->trusted) {
		log_warn("proxy: refused a connection from uid %ld on %s",
		         (long)uid, l->path);
		pflow_fail(c, 403, "FORBIDDEN",
		           "this proxy serves only the agent's own user");
		return;
	}
	if (!l->is_unix) {
		uv_tcp_nodelay(&c->cli.tcp, 1);
		uv_tcp_keepalive(&c->cli.tcp, 1, 60);
	}
	pflow_start(c);
}

/* ---- listening ---- */

/* 127.0.0.0/8 or ::1 with a port: anything wider would let others in. */
static int loopback(const char *addr, struct sockaddr_storage *ss)
{
	char host[64];
	const char *colon = strrchr(addr, ':');
	size_t n = colon ? (size_t)(colon - addr) : 0;
	int port = colon ? atoi(colon + 1) : -1;

	if (colon == NULL || n == 0 || n >= sizeof(host) || port < 0 ||
	    port > 65535)
		return ERR_INVAL;
	memcpy(host, addr, n);
	host[n] = '\0';
	if (strcmp(host, "localhost") == 0)
		snprintf(host, sizeof(host), "127.0.0.1");
	if (uv_ip4_addr(host, port, (struct sockaddr_in *)ss) == 0)
		return (ntohl(((struct sockaddr_in *)ss)->sin_addr.s_addr) >>
		        24) == 127
		               ? 0
		               : ERR_PERM;
	if (host[0] == '[' && host[n - 1] == ']') {
		host[n - 1] = '\0';
		if (uv_ip6_addr(host + 1, port, (struct sockaddr_in6 *)ss) == 0)
			return IN6_IS_ADDR_LOOPBACK(
			               &((struct sockaddr_in6 *)ss)->sin6_addr)
			               ? 0
			               : ERR_PERM;
	}
	return ERR_INVAL;
}

static int listen_tcp(struct plis *l, const char *addr, char *where, size_t wn,
                      char *why, size_t n)
{
	struct sockaddr_storage ss;
	int len = sizeof(ss), e = loopback(addr, &ss);
	char host[64];

	if (e != 0) {
		snprintf(why, n,
		         e == ERR_PERM
		                 ? "%s is not a loopback address: the proxy "
		                   "admits anyone who reaches it (use "
		                   "127.0.0.1:PORT)"
		                 : "--listen takes 127.0.0.1:PORT or "
		                   "[::1]:PORT, "
		                   "not '%s'",
		         addr);
		return e;
	}
	uv_tcp_init(l->px->a->loop, &l->h.tcp);
	l->h.h.data = l;
	if ((e = uv_tcp_bind(&l->h.tcp, (struct sockaddr *)&ss, 0)) != 0 ||
	    (e = uv_listen(&l->h.s, 128, on_fixed_accept)) != 0 ||
	    (e = uv_tcp_getsockname(&l->h.tcp, (struct sockaddr *)&ss, &len)) !=
	            0) {
		snprintf(why, n, "cannot listen on %s: %s", addr,
		         uv_strerror(e));
		return ERR_SYS;
	}
	if (ss.ss_family == AF_INET) {
		uv_ip4_name((struct sockaddr_in *)&ss, host, sizeof(host));
		snprintf(where, wn, "http://%s:%d", host,
		         ntohs(((struct sockaddr_in *)&ss)->sin_port));
	} else {
		uv_ip6_name((struct sockaddr_in6 *)&ss, host, sizeof(host));
		snprintf(where, wn, "http://[%s]:%d", host,
		         ntohs(((struct sockaddr_in6 *)&ss)->sin6_port));
	}
	return 0;
}

static int listen_unix(struct plis *l, const char *path, char *where, size_t wn,
                       char *why, size_t n)
{
	struct stat st;
	mode_t old;
	int e;

	if (strlen(path) >= sizeof(l->path)) {
		snprintf(why, n, "the socket path %s is too long", path);
		return ERR_INVAL;
	}
	/* A socket file left by an earlier proxy is replaced; anything
	 * else at that path is not. */
	if (lstat(path, &st) == 0 && !S_ISSOCK(st.st_mode)) {
		snprintf(why, n, "%s exists and is not a socket", path);
		return ERR_EXISTS;
	}
	unlink(path);
	uv_pipe_init(l->px->a->loop, &l->h.pipe, 0);
	l->h.h.data = l;
	old = umask(0177);
	e = uv_pipe_bind(&l->h.pipe, path);
	umask(old);
	if (e != 0 || (e = uv_listen(&l->h.s, 128, on_fixed_accept)) != 0) {
		snprintf(why, n, "cannot listen on %s: %s", path,
		         uv_strerror(e));
		return ERR_SYS;
	}
	snprintf(l->path, sizeof(l->path), "%s", path);
	snprintf(where, wn, "unix:%s", path);
	return 0;
}

static void on_fixed_closed(uv_handle_t *h)
{
	free(h->data);
}

static void fixed_close(struct plis *l)
{
	if (l->path[0])
		unlink(l->path);
	uv_close(&l->h.h, on_fixed_closed);
}

int proxy_bind(struct proxy *px, const char *id, const char *listen,
               const void *owner, char *where, size_t wn, char *why, size_t n)
{
	struct plis *l = calloc(1, sizeof(*l));
	int e, is_unix = strncmp(listen, "unix:", 5) == 0 || listen[0] == '/';

	if (l == NULL)
		return ERR_NOMEM;
	l->px = px;
	l->is_unix = is_unix;
	l->owner = owner;
	snprintf(l->id, sizeof(l->id), "%s", id);
	e = is_unix ? listen_unix(l, listen + (listen[0] == '/' ? 0 : 5), where,
	                          wn, why, n)
	            : listen_tcp(l, listen, where, wn, why, n);
	if (e != 0) {
		if (l->h.h.loop)
			fixed_close(l);
		else
			free(l);
		return e;
	}
	l->next = px->fixed;
	px->fixed = l;
	log_info("proxy: sandbox %s on %s", id, where);
	return 0;
}

void proxy_owner_gone(struct proxy *px, const void *owner)
{
	struct plis **pp = &px->fixed, *l;

	while ((l = *pp) != NULL) {
		if (l->owner == owner) {
			*pp = l->next;
			log_info("proxy: sandbox %s on %s%s ended", l->id,
			         l->path[0] ? "unix:" : "a local port",
			         l->path);
			fixed_close(l);
		} else {
			pp = &l->next;
		}
	}
}

void proxy_unbind_all(struct proxy *px)
{
	while (px->fixed)
		proxy_owner_gone(px, px->fixed->owner);
}
