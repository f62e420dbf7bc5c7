/*
 * Per-sandbox hosts for the sandbox agent, like HopX's
 * https://{port}-{id}.{region}.vms.hopx.dev: each sandbox gets its own
 * loopback address (127.1.0.1, 127.1.0.2, ...; all of 127/8 is local on
 * Linux, so no name service is needed) on the agent port. A client that
 * drops the path of public_host (the SDKs' WebSocket URLs) still reaches
 * the right sandbox. One thread accepts on every such listener and hands
 * the connection to the agent's HTTP daemon.
 */
#define _GNU_SOURCE
#include "sim_vmhost.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

struct sim_vmhost {
	int port;
	int ep;
	sim_vmhost_add_fn add;
	void *ud;
	pthread_t thread;
	volatile int stop;
};

/* n (1..) to 127.(1+a).b.c, with b and c in 1..254. */
static uint32_t host_addr(int n)
{
	uint32_t i = (uint32_t)n - 1;

	return (127u << 24) | ((1u + i / (254u * 254u)) << 16) |
	       ((i / 254u % 254u + 1u) << 8) | (i % 254u + 1u);
}

static int addr_host(uint32_t a)
{
	uint32_t hi = (a >> 16) & 255u, b = (a >> 8) & 255u, c = a & 255u;

	if ((a >> 24) != 127u || hi < 1u || b < 1u || b > 254u || c < 1u ||
	    c > 254u)
		return 0;
	return (int)((hi - 1u) * 254u * 254u + (b - 1u) * 254u + (c - 1u) + 1u);
}

static int listen_on(int n, int port)
{
	struct sockaddr_in sa = {.sin_family = AF_INET,
	                         .sin_port = htons((uint16_t)port)};
	int fd, one = 1;

	sa.sin_addr.s_addr = htonl(host_addr(n));
	fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 ||
	    listen(fd, 128) != 0) {
		close(fd);
		return -1;
	}
	return fd;
}

static void accept_all(struct sim_vmhost *h, int lfd)
{
	struct sockaddr_in peer;
	socklen_t len = sizeof(peer);
	int fd;

	while ((fd = accept4(lfd, (struct sockaddr *)&peer, &len,
	                     SOCK_CLOEXEC)) >= 0) {
		h->add(h->ud, fd, (struct sockaddr *)&peer, len);
		len = sizeof(peer);
	}
}

static void *accept_loop(void *arg)
{
	struct sim_vmhost *h = arg;
	struct epoll_event ev[64];

	while (!h->stop) {
		int n = epoll_wait(h->ep, ev, 64, 100);

		for (int i = 0; i < n; i++)
			accept_all(h, ev[i].data.fd);
	}
	return NULL;
}

static void open_one(struct sim_vmhost *h, struct sim_sandbox *sb)
{
	struct epoll_event ev = {.events = EPOLLIN};

	sb->host_fd = listen_on(sb->host_n, h->port);
	if (sb->host_fd < 0) {
		fprintf(stderr, "hopx-sim: cannot listen for %s: %s\n", sb->id,
		        strerror(errno));
		return;
	}
	ev.data.fd = sb->host_fd;
	if (epoll_ctl(h->ep, EPOLL_CTL_ADD, sb->host_fd, &ev) != 0) {
		close(sb->host_fd);
		sb->host_fd = -1;
	}
}

int sim_vmhost_start(struct sim *s, int port, sim_vmhost_add_fn add, void *ud)
{
	struct sim_vmhost *h = calloc(1, sizeof(*h));
	struct sim_sandbox *sb, *tmp;

	if (h == NULL || (h->ep = epoll_create1(EPOLL_CLOEXEC)) < 0) {
		free(h);
		return -1;
	}
	h->port = port;
	h->add = add;
	h->ud = ud;
	if (pthread_create(&h->thread, NULL, accept_loop, h) != 0) {
		close(h->ep);
		free(h);
		return -1;
	}
	pthread_mutex_lock(&s->lock);
	s->vmhost = h;
	HASH_ITER(hh, s->sandboxes, sb, tmp)
	{
		if (sb->host_n > 0)
			open_one(h, sb);
	}
	pthread_mutex_unlock(&s->lock);
	return 0;
}

void sim_vmhost_stop(struct sim *s)
{
	struct sim_vmhost *h = s->vmhost;
	struct sim_sandbox *sb, *tmp;

	if (h == NULL)
		return;
	h->stop = 1;
	pthread_join(h->thread, NULL);
	pthread_mutex_lock(&s->lock);
	HASH_ITER(hh, s->sandboxes, sb, tmp)
	{
		if (sb->host_fd >= 0)
			close(sb->host_fd);
		sb->host_fd = -1;
	}
	s->vmhost = NULL;
	pthread_mutex_unlock(&s->lock);
	close(h->ep);
	free(h);
}

void sim_vmhost_assign(struct sim *s, struct sim_sandbox *sb)
{
	sb->host_fd = -1;
	if (sb->host_n == 0 && s->nhosts < s->cfg.vm_hosts)
		sb->host_n = ++s->next_host;
	if (sb->host_n == 0)
		return;
	s->nhosts++;
	HASH_ADD(hh_host, s->by_host, host_n, sizeof(int), sb);
	if (sb->host_n > s->next_host)
		s->next_host = sb->host_n;
	if (s->vmhost)
		open_one(s->vmhost, sb);
}

void sim_vmhost_release(struct sim *s, struct sim_sandbox *sb)
{
	if (sb->host_n == 0)
		return;
	HASH_DELETE(hh_host, s->by_host, sb);
	s->nhosts--;
	if (sb->host_fd >= 0) {
		if (s->vmhost)
			epoll_ctl(s->vmhost->ep, EPOLL_CTL_DEL, sb->host_fd,
			          NULL);
		close(sb->host_fd);
	}
	sb->host_fd = -1;
}

void sim_vmhost_url(struct sim *s, const struct sim_sandbox *sb, char *buf,
                    size_t n)
{
	struct in_addr a;
	char ip[INET_ADDRSTRLEN];

	if (sb->host_n == 0 || s->vmhost == NULL) {
		snprintf(buf, n, "%s/sandbox/%s", s->agent_url, sb->id);
		return;
	}
	a.s_addr = htonl(host_addr(sb->host_n));
	inet_ntop(AF_INET, &a, ip, sizeof(ip));
	snprintf(buf, n, "%s://%s:%d", s->cfg.tls_cert[0] ? "https" : "http",
	         ip, s->vmhost->port);
}

int sim_vmhost_of(int fd)
{
	struct sockaddr_in sa;
	socklen_t len = sizeof(sa);

	if (getsockname(fd, (struct sockaddr *)&sa, &len) != 0 ||
	    sa.sin_family != AF_INET)
		return 0;
	return addr_host(ntohl(sa.sin_addr.s_addr));
}

struct sim_sandbox *sim_vmhost_sandbox(struct sim *s, int n)
{
	struct sim_sandbox *sb = NULL;

	HASH_FIND(hh_host, s->by_host, &n, sizeof(int), sb);
	return sb ? sim_find(s, sb->id) : NULL;
}
