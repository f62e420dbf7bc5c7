/*
 * hopxd: the agent. This file parses the command line and runs the loop;
 * everything else lives in its own module.
 */
#include "config.h"

#include "err.h"
#include "log.h"
#include "paths.h"
#include "store.h"

#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#define PATH_MAX_LEN 4096

struct opts {
	char db[PATH_MAX_LEN];
	char socket[PATH_MAX_LEN];
	enum log_level level;
};

struct agent {
	uv_loop_t loop;
	uv_signal_t sigint;
	uv_signal_t sigterm;
	struct store *store;
};

static void usage(FILE *f)
{
	fprintf(f, "Usage: hopxd [OPTION]...\n"
	           "Keep HopX sandboxes attached to this machine.\n\n"
	           "  --db PATH          database (env HOPXD_DB; default "
	           "$XDG_STATE_HOME/hopxd/hopxd.db)\n"
	           "  --socket PATH      control socket (env HOPXD_SOCKET; "
	           "default "
	           "$XDG_RUNTIME_DIR/hopxd/hopxd.sock)\n"
	           "  --log-level LEVEL  error, warn, info (default) or debug\n"
	           "  -v, --verbose      same as --log-level debug\n"
	           "  -h, --help         show this help and exit\n"
	           "  -V, --version      show the version and exit\n");
}

static int copy_path(char *dst, const char *src, const char *what)
{
	if (strlen(src) >= PATH_MAX_LEN || *src == '\0') {
		fprintf(stderr, "hopxd: %s path is empty or too long\n", what);
		return 2;
	}
	memcpy(dst, src, strlen(src) + 1);
	return 0;
}

/* Returns -1 to go on, or an exit code. */
static int parse_args(int argc, char **argv, struct opts *o)
{
	static const struct option longopts[] = {
	        {"db", required_argument, NULL, 'd'},
	        {"socket", required_argument, NULL, 's'},
	        {"log-level", required_argument, NULL, 'l'},
	        {"verbose", no_argument, NULL, 'v'},
	        {"help", no_argument, NULL, 'h'},
	        {"version", no_argument, NULL, 'V'},
	        {NULL, 0, NULL, 0}};
	int c;

	while ((c = getopt_long(argc, argv, "vhV", longopts, NULL)) != -1) {
		switch (c) {
		case 'd':
			if (copy_path(o->db, optarg, "database"))
				return 2;
			break;
		case 's':
			if (copy_path(o->socket, optarg, "socket"))
				return 2;
			break;
		case 'l':
			if (log_level_parse(optarg, &o->level) != 0) {
				fprintf(stderr,
				        "hopxd: unknown log level '%s' (use "
				        "error, warn, info or debug)\n",
				        optarg);
				return 2;
			}
			break;
		case 'v':
			o->level = LOG_LVL_DEBUG;
			break;
		case 'h':
			usage(stdout);
			return 0;
		case 'V':
			printf("hopxd %s\n", HOPXD_VERSION);
			return 0;
		default:
			fprintf(stderr, "Try 'hopxd --help'.\n");
			return 2;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "hopxd: unexpected argument '%s'\n",
		        argv[optind]);
		return 2;
	}
	return -1;
}

static int default_paths(struct opts *o)
{
	if (o->db[0] == '\0' && paths_db(o->db, sizeof(o->db)) != 0) {
		fprintf(stderr, "hopxd: cannot choose a database path: set "
		                "--db, HOPXD_DB, XDG_STATE_HOME or HOME\n");
		return 2;
	}
	if (o->socket[0] == '\0' &&
	    paths_socket(o->socket, sizeof(o->socket)) != 0) {
		fprintf(stderr, "hopxd: socket path too long\n");
		return 2;
	}
	return 0;
}

static void on_signal(uv_signal_t *h, int signum)
{
	struct agent *a = h->data;

	log_info("received signal %d, shutting down", signum);
	uv_close((uv_handle_t *)&a->sigint, NULL);
	uv_close((uv_handle_t *)&a->sigterm, NULL);
}

static int watch_signals(struct agent *a)
{
	int r;

	a->sigint.data = a;
	a->sigterm.data = a;
	if ((r = uv_signal_init(&a->loop, &a->sigint)) != 0 ||
	    (r = uv_signal_init(&a->loop, &a->sigterm)) != 0 ||
	    (r = uv_signal_start(&a->sigint, on_signal, SIGINT)) != 0 ||
	    (r = uv_signal_start(&a->sigterm, on_signal, SIGTERM)) != 0) {
		log_error("cannot watch signals: %s", uv_strerror(r));
		return ERR_SYS;
	}
	return 0;
}

static int open_store(struct agent *a, const struct opts *o)
{
	size_t counts[SBX_STATUS_COUNT], total = 0;
	char *cause = NULL;
	int r, i;

	r = store_open(o->db, STORE_OPEN_CHECK, NULL, &a->store, &cause);
	if (r != 0) {
		log_error("%s", cause ? cause : err_str(r));
		free(cause);
		return r;
	}
	if ((r = store_sandbox_count(a->store, counts)) != 0)
		return r;
	for (i = 0; i < SBX_STATUS_COUNT; i++)
		total += counts[i];
	log_info("database %s: schema %d, %zu sandboxes tracked", o->db,
	         store_schema_version(a->store), total);
	return 0;
}

static void close_handle(uv_handle_t *h, void *arg)
{
	(void)arg;
	if (!uv_is_closing(h))
		uv_close(h, NULL);
}

static int run(const struct opts *o)
{
	struct agent a;
	int r;

	memset(&a, 0, sizeof(a));
	if (uv_loop_init(&a.loop) != 0)
		return 1;
	r = open_store(&a, o);
	if (r == 0)
		r = watch_signals(&a);
	if (r == 0)
		uv_run(&a.loop, UV_RUN_DEFAULT);
	uv_walk(&a.loop, close_handle, NULL);
	uv_run(&a.loop, UV_RUN_DEFAULT);
	if (store_close(a.store) != 0)
		log_error("database did not close cleanly");
	if (uv_loop_close(&a.loop) != 0)
		log_error("event loop still had open handles");
	return r == 0 ? 0 : 1;
}

int main(int argc, char **argv)
{
	struct opts o;
	int r;

	memset(&o, 0, sizeof(o));
	o.level = LOG_LVL_INFO;
	if ((r = parse_args(argc, argv, &o)) >= 0)
		return r;
	if ((r = default_paths(&o)) != 0)
		return r;
	signal(SIGPIPE, SIG_IGN);
	log_init("hopxd", o.level);
	return run(&o);
}
