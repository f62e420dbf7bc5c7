/*
 * A long response body moved from the sandbox's socket to the client's
 * inside the kernel (splice(2) through a pipe), never through the loop's
 * buffers: a download costs no copy in and out of the agent. Only for a
 * body of known length, once nothing is queued for the client and the
 * request has been sent whole; the streams' own reading stays stopped
 * meanwhile, and the sockets are watched through duplicates of their
 * descriptors (libuv keeps one watcher per descriptor).
 */
/* splice(2) and F_SETPIPE_SZ are Linux extensions. */
#define _GNU_SOURCE
#include "proxy_int.h"

#include "agent.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

/* Bodies shorter than this go the usual way. */
#define SPLICE_MIN (1024 * 1024)
#define PIPE_SIZE  (1024 * 1024)

struct psplice {
	uv_poll_t in, out; /* the sandbox's socket readable, the client's
	                    * writable */
	int ufd, cfd;      /* duplicates watched by in and out */
	int pipe[2];
	size_t in_pipe; /* bytes in the pipe */
	size_t cap;     /* the pipe's size */
	int open;       /* poll handles not yet closed */
	struct pconn *c;
};

static void sp_free(struct psplice *sp)
{
	if (sp->ufd >= 0)
		close(sp->ufd);
	if (sp->cfd >= 0)
		close(sp->cfd);
	if (sp->pipe[0] >= 0)
		close(sp->pipe[0]);
	if (sp->pipe[1] >= 0)
		close(sp->pipe[1]);
	free(sp);
}

static void on_poll_closed(uv_handle_t *h)
{
	struct psplice *sp = h->data;

	if (--sp->open == 0)
		sp_free(sp);
}

void px_splice_stop(struct pconn *c)
{
	struct psplice *sp = c->sp;
	int n;

	if (sp == NULL)
		return;
	n = sp->open;

	c->sp = NULL;
	c->spliced = 0;
	sp->c = NULL;
	if (n == 0) {
		sp_free(sp);
		return;
	}
	uv_close((uv_handle_t *)&sp->in, on_poll_closed);
	if (n == 2)
		uv_close((uv_handle_t *)&sp->out, on_poll_closed);
}

/* The pipe to the client: 0, or -1 when the client is gone. */
static int drain(struct pconn *c, struct psplice *sp)
{
	ssize_t m;

	while (sp->in_pipe > 0) {
		m = splice(sp->pipe[0], NULL, sp->cfd, NULL, sp->in_pipe,
		           SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
		if (m < 0)
			return errno == EAGAIN ? 0 : -1;
		sp->in_pipe -= (size_t)m;
		c->px->st.bytes_down += (uint64_t)m;
		c->progress = uv_hrtime();
	}
	return 0;
}

/* The sandbox's socket into the pipe: 0, or -1 at its end or error. */
static int fill(struct pconn *c, struct psplice *sp)
{
	size_t want;
	ssize_t n;

	while (c->respf.left > 0 && sp->in_pipe < sp->cap) {
		want = sp->cap - sp->in_pipe;
		if (want > c->respf.left)
			want = (size_t)c->respf.left;
		n = splice(sp->ufd, NULL, sp->pipe[1], NULL, want,
		           SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
		if (n == 0 || (n < 0 && errno != EAGAIN))
			return -1;
		if (n < 0)
			return 0;
		sp->in_pipe += (size_t)n;
		c->respf.left -= (uint64_t)n;
		c->progress = uv_hrtime();
	}
	return 0;
}

static void on_in(uv_poll_t *p, int status, int events);
static void on_out(uv_poll_t *p, int status, int events);

/* Moves what can move; watches whichever side it waits for. */
static void pump(struct pconn *c, struct psplice *sp)
{
	if ((drain(c, sp) != 0) || fill(c, sp) != 0 || drain(c, sp) != 0) {
		pconn_close(c); /* a body cut short, or the client gone */
		return;
	}
	c->spliced = sp->in_pipe;
	if (c->respf.left == 0 && sp->in_pipe == 0) {
		px_splice_stop(c);
		px_response_done(c);
		return;
	}
	if (sp->in_pipe > 0) {
		uv_poll_stop(&sp->in);
		uv_poll_start(&sp->out, UV_WRITABLE, on_out);
	} else {
		uv_poll_stop(&sp->out);
		uv_poll_start(&sp->in, UV_READABLE, on_in);
	}
}

static void on_in(uv_poll_t *p, int status, int events)
{
	struct psplice *sp = p->data;

	(void)events;
	if (sp->c == NULL)
		return;
	if (status < 0)
		pconn_close(sp->c);
	else
		pump(sp->c, sp);
}

static void on_out(uv_poll_t *p, int status, int events)
{
	on_in(p, status, events);
}

static int sp_open(struct pconn *c, struct psplice *sp)
{
	uv_os_fd_t ufd, cfd;
	int size;

	sp->ufd = sp->cfd = sp->pipe[0] = sp->pipe[1] = -1;
	if (uv_fileno((uv_handle_t *)&c->up->tcp, &ufd) != 0 ||
	    uv_fileno(&c->cli.h, &cfd) != 0 ||
	    (sp->ufd = fcntl(ufd, F_DUPFD_CLOEXEC, 0)) < 0 ||
	    (sp->cfd = fcntl(cfd, F_DUPFD_CLOEXEC, 0)) < 0 ||
	    pipe2(sp->pipe, O_NONBLOCK | O_CLOEXEC) != 0)
		return -1;
	size = fcntl(sp->pipe[1], F_SETPIPE_SZ, PIPE_SIZE);
	sp->cap = size > 0 ? (size_t)size : 65536;
	if (uv_poll_init(c->px->a->loop, &sp->in, sp->ufd) != 0)
		return -1;
	sp->open = 1;
	if (uv_poll_init(c->px->a->loop, &sp->out, sp->cfd) != 0)
		return -1;
	sp->open = 2;
	sp->in.data = sp->out.data = sp;
	return 0;
}

void px_splice_try(struct pconn *c)
{
	struct psplice *sp;

	if (c->sp || c->tunnel || c->closing || c->finishing ||
	    c->rq != RQ_DONE || c->respf.kind != PFRAME_LENGTH ||
	    c->respf.left < SPLICE_MIN || c->up == NULL || !c->up->open ||
	    c->up->tls || c->cli.s.write_queue_size > 0 ||
	    (sp = calloc(1, sizeof(*sp))) == NULL)
		return;
	sp->c = c;
	c->sp = sp;
	if (sp_open(c, sp) != 0) {
		px_splice_stop(c); /* the usual way goes on */
		return;
	}
	px_reads(c); /* stops reading the sandbox's stream */
	pump(c, sp);
}
