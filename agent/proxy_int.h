#ifndef HOPXD_PROXY_INT_H
#define HOPXD_PROXY_INT_H

/*
 * Private to the proxy: proxy.c listens, accepts and closes; proxy_flow.c
 * carries one client connection's requests (pflow_*).
 */

#include <uv.h>

#include "phead.h"
#include "proxy.h"
#include "sbx.h"

#define PX_READ_CHUNK 65536
/* A request's head and the part of its body kept for a replay. */
#define PX_IN_CAP (PHEAD_MAX + PX_READ_CHUNK)
/* A body this small is read whole first, to be sent again after a 401. */
#define PX_REPLAY_MAX (64 * 1024)
/* Reading the other side stops above this much queued output, and
 * resumes below PX_LOW. */
#define PX_HIGH (256 * 1024)
#define PX_LOW  (64 * 1024)
/* After a refusal, the client's unread input is drained this long. */
#define PX_DRAIN_MS 2000
/* Read blocks kept for reuse (proxy_flow.c). */
#define PX_POOL 64
/* Past this many connections at once, the heap is trimmed once three
 * quarters of them have gone. */
#define PX_TRIM_PEAK 256

enum px_req {
	RQ_HEAD, /* reading a request head */
	RQ_WAIT, /* proof, token (a wake), upstream connection */
	RQ_BODY, /* the body streams to the sandbox */
	RQ_DONE  /* sent whole: the answer is awaited */
};

enum px_resp { RS_NONE, RS_HEAD, RS_BODY, RS_DONE };

struct psplice;
struct ptls;
struct ptls_ctx;

/* The connection to the sandbox's agent: its own allocation, so that a
 * replay can drop one and open another while callbacks of the old are
 * still to come. */
struct pup {
	uv_tcp_t tcp;
	struct proxy *px;
	uv_connect_t creq;
	uv_getaddrinfo_t gai;
	struct pconn *c; /* NULL once let go */
	int open;        /* connected */
	int reading;
	int resolving;    /* a name lookup is still to answer */
	int closed;       /* the handle closed: freed once not resolving */
	int used;         /* carried a request before the one now */
	struct ptls *tls; /* an https address: the session (proxy_tls.c) */
	/* Kept between clients (proxy_pool.c): */
	int parked;
	char id[SBX_ID_MAX + 1]; /* the sandbox it leads to */
	char auth[320];          /* ... at this host:port */
	uint64_t idle_at;        /* loop ms */
	struct pup *prev, *next;
	char *rbuf; /* a response head so far */
	size_t rlen;
};

/* A client's connection: TCP, or a Unix socket (hopxctl proxy --unix). */
union pcli {
	uv_handle_t h;
	uv_stream_t s;
	uv_tcp_t tcp;
	uv_pipe_t pipe;
};

struct pconn {
	struct proxy *px;
	union pcli cli;
	uv_timer_t timer;
	int handles; /* open: cli, timer */
	int holds;   /* callbacks still to come (a connect) */
	int closing;
	int finishing; /* closes once the client has its answer */
	int draining;  /* answered: the client's input is read and dropped */
	int trusted;   /* the listener is the proof (hopxctl proxy) */
	char id[SBX_ID_MAX + 1];
	struct pup *up;
	char upauth[320]; /* host:port, for Host */
	char uppath[256]; /* public_host's path, before the request's */
	char *in;         /* client bytes not yet carried */
	size_t in_len, in_cap;
	size_t head_len; /* of the request being carried, at in[0] */
	size_t sent_len; /* in[0..sent_len): that request, kept to replay */
	char *head;      /* its head, rewritten but for Host/Authorization */
	size_t head_n;
	struct pframe reqf, respf;
	enum px_req rq;
	enum px_resp rs;
	int head_req;   /* HEAD: the answer has no body */
	int upgrade;    /* asked for a WebSocket */
	int tunnel;     /* 101: raw bytes both ways */
	int cli_close;  /* the client asked to close after the answer */
	int resp_close; /* the sandbox's connection is not used again */
	int replayable; /* its whole body is in in[] */
	int retried;
	int leased;
	int64_t leased_at; /* wall ms */
	long pid;          /* the peer's when known (a Unix socket), else 0 */
	int cli_reading;
	char *tok;          /* the token the request went with */
	char *proven;       /* the Authorization last accepted here */
	struct psplice *sp; /* a body moving inside the kernel */
	size_t spliced;     /* ... and its bytes waiting for the client */
	uint64_t t0;        /* hrtime the head came in */
	uint64_t progress;  /* hrtime bytes last moved */
	struct pconn *prev, *next;
};

/* A fixed address for one sandbox (hopxctl proxy), held by an owner (the
 * socket connection that asked for it). */
struct plis {
	union pcli h;
	struct proxy *px;
	int is_unix;
	char path[108]; /* a Unix socket's file, removed at the end */
	char id[SBX_ID_MAX + 1];
	const void *owner;
	struct plis *next;
};

struct proxy {
	struct agent *a;
	uv_tcp_t lis;
	int listening;
	struct plis *fixed;
	int port;
	char key[256];
	unsigned max_conns;
	uint64_t head_to_ms, idle_to_ms;
	struct pconn *conns;
	struct proxy_stats st;
	char *pool[PX_POOL];
	size_t npool;
	uv_timer_t trim; /* gives the heap back after a crowd has gone */
	uint64_t peak;   /* most connections since the last trim */
	int handles;     /* open: the listener, the trim and sweep timers */
	struct ptls_ctx *tls; /* trust for https addresses, once needed */
	struct pup *idle;     /* connections kept between clients */
	uv_timer_t sweep;     /* ... dropped once idle too long */
};

/* A new connection for px (its client handle still to be initialised),
 * or NULL. */
struct pconn *pconn_new(struct proxy *px);

/* ---- proxy_flow.c: bytes, leases, ends ---- */

/* A read block (PX_READ_CHUNK bytes) from the pool, or NULL; and back
 * to the pool (or freed). */
char *px_blk_get(struct proxy *px);
void px_blk_free(struct proxy *px, char *p);

/* Starts or stops reading each side as its phase and the other side's
 * queue say. */
void px_reads(struct pconn *c);

/* Writes len bytes of base (malloc'd, now the write's) to the client, or
 * to the sandbox when u is not NULL. */
void px_send(struct pconn *c, struct pup *u, char *base, size_t len);
void px_send_copy(struct pconn *c, struct pup *u, const char *p, size_t n);

/* px_send's bytes as they go on the wire (ciphertext, to a TLS upstream). */
void px_write(struct pconn *c, struct pup *u, char *base, size_t len);

/* Client bytes kept (ERR_TOOBIG past PX_IN_CAP), and the first n let go. */
int px_keep_in(struct pconn *c, const char *p, size_t n);
void px_drop_in(struct pconn *c, size_t n);

/* A request in flight holds the sandbox in use; its end lets go. */
void px_lease(struct pconn *c);
void px_unlease(struct pconn *c);

/* Lets go of the connection to the sandbox. */
void px_drop_up(struct pconn *c);

/* Closes u (not a client's any more); freed once closed. */
void px_up_close(struct pup *u);

/* Read blocks for the sandbox's side (none for a parked connection). */
void px_up_alloc(uv_handle_t *h, size_t hint, uv_buf_t *b);

/* Closes once what is queued for the client has gone. */
void px_finish(struct pconn *c);

/* ---- proxy_req.c: the request ---- */

/* Parses what the client sent; begins the request once its head (and a
 * small body) is in. */
void px_try_head(struct pconn *c);

/* A token for the request (rejected: the one the sandbox refused). */
void px_get_token(struct pconn *c, const char *rejected);

/* Connects to the sandbox's agent, then sends the request. */
void px_up_connect(struct pconn *c);

/* Sends the request (head with the token, the body kept) upstream. */
void px_send_request(struct pconn *c);

void px_cli_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b);

/* ---- proxy_resp.c: the answer ---- */

void px_up_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b);

/* Bytes of the sandbox's answer (base malloc'd, now taken). */
void px_up_data(struct pconn *c, struct pup *u, char *base, size_t n);

/* The sandbox's side closed (or failed). */
void px_up_eof(struct pconn *c);

/* The answer ended: the next request, or the end of the connection. */
void px_response_done(struct pconn *c);

/* ---- proxy_splice.c: long bodies moved inside the kernel ---- */

/* Moves the rest of the answer's body by splice(2) when it is long, of
 * known length, and nothing is queued for the client; else nothing. */
void px_splice_try(struct pconn *c);
void px_splice_stop(struct pconn *c);

/* ---- proxy_pool.c: connections kept between clients ---- */

/* The client is done with its connection to the sandbox: kept for the
 * next client when nothing of an exchange is left on it, else closed. */
void px_pool_put(struct pconn *c);

/* A kept connection to c's sandbox at c->upauth, now c's; or NULL. */
struct pup *px_pool_take(struct pconn *c);

/* Drops a kept connection. */
void px_pool_evict(struct pup *u);

/* Drops them all (the proxy stops). */
void px_pool_close_all(struct proxy *px);

/* ---- proxy_tls.c: sandbox agents at https addresses ---- */

/* A TLS session for u (its pconn set) to host, checked against the
 * system's CAs and --ca-file. 0, or an error with why (n bytes). */
int px_tls_new(struct pup *u, const char *host, char *why, size_t n);

/* u connected: the handshake, then the request. */
void px_tls_handshake(struct pconn *c, struct pup *u);

/* Encrypts base[0..len) (taken) and writes it to u. */
void px_tls_send(struct pconn *c, struct pup *u, char *base, size_t len);

/* Ciphertext read from u (base taken): the handshake's, or records whose
 * content goes to px_up_data. */
void px_tls_read(struct pconn *c, struct pup *u, char *base, size_t n);

/* u's session, freed with u. */
void px_tls_free(struct pup *u);

/* The trust loaded, freed with the proxy. */
void px_tls_ctx_free(struct ptls_ctx *t);

/* u can carry a request: connected, and its handshake over. */
int px_up_ready(const struct pup *u);

/* Starts carrying a new connection's first request. */
void pflow_start(struct pconn *c);

/* Answers with an error of the proxy's own (HopX's envelope) and closes. */
void pflow_fail(struct pconn *c, int status, const char *code, const char *msg);

/* The connection is closing: lets go of its lease, its upstream and its
 * buffers. */
void pflow_release(struct pconn *c);

/* The timer's deadline passed in the current phase. */
void pflow_timeout(struct pconn *c);

/* Closes the client and the upstream; frees once the callbacks ran. */
void pconn_close(struct pconn *c);

/* A callback the connection waited for came: frees it if it closed. */
void pconn_unhold(struct pconn *c);

/* Closes every fixed address. */
void proxy_unbind_all(struct proxy *px);

/* (Re)arms the timer for the phase the connection is in. */
void pconn_arm(struct pconn *c);

#endif
