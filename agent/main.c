/*
 * hopxd: the agent. This file parses the command line, takes the
 * database lock, and runs the loop; everything else lives in its module.
 */
#include "config.h"

#include "agent.h"
#include "fleetlink.h"
#include "apiep.h"
#include "proxy.h"
#include "httpd.h"
#include "metrics.h"
#include "err.h"
#include "hopx.h"
#include "ipc_server.h"
#include "log.h"
#include "notify.h"
#include "paths.h"
#include "reconcile.h"
#include "sessions.h"
#include "store.h"
#include "timing.h"

#include <curl/curl.h>
#include <sys/stat.h>

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <unistd.h>

/* How often the wall clock is compared with the monotonic one, and the
 * drift that counts as a jump (NTP slews far more slowly). */
#define JUMP_CHECK_MS     1000
#define JUMP_TOLERANCE_MS 2000

struct main_state {
	struct agent a;
	uv_loop_t loop;
	uv_signal_t sigint;
	uv_signal_t sigterm;
	uv_timer_t deadline;  /* shutdown: pauses must answer by then */
	uv_timer_t jumps;     /* watches the wall clock against the monotonic */
	int64_t wall0, mono0; /* the last reading */
	uv_work_t check;      /* quick_check, off the loop */
	int check_err;
	char *check_cause;
	int failed; /* exit 1 once stopped */
	int lock_fd;
};

static void usage(FILE *f)
{
	fprintf(f,
	        "Usage: hopxd [OPTION]...\n"
	        "Keep HopX sandboxes attached to this machine.\n\n"
	        "  --db PATH             database (env HOPXD_DB; default "
	        "$XDG_STATE_HOME/hopxd/hopxd.db;\n"
	        "                        with --store PostgreSQL, its local "
	        "copy, default fleet.db)\n"
	        "  --store STORE         sqlite (the default) or a PostgreSQL "
	        "connection string or\n"
	        "                        URI shared by a fleet of agents "
	        "(env HOPXD_STORE; password\n"
	        "                        in ~/.pgpass or PGPASSFILE)\n"
	        "  --lease S             in a fleet, a sandbox's background "
	        "work moves to another\n"
	        "                        agent S seconds after its agent "
	        "stops (default 15)\n"
	        "  --socket PATH         control socket (env HOPXD_SOCKET; "
	        "default $XDG_RUNTIME_DIR/hopxd/hopxd.sock)\n"
	        "  --idle-timeout S      close clients idle for S seconds "
	        "(default 300)\n"
	        "  --max-connections N   refuse clients beyond N (default "
	        "4096)\n"
	        "  --api-base URL        HopX API (env HOPX_BASE_URL; "
	        "default https://api.hopx.dev)\n"
	        "  --api-key-file PATH   read the API key from PATH (mode "
	        "0600; else env HOPX_API_KEY,\n"
	        "                        else ~/.config/hopxd/api-key)\n"
	        "  --ca-file PATH        trust this CA bundle for HopX (API, "
	        "sandboxes)\n"
	        "  --sync-interval S     reconcile every S seconds "
	        "(default 300)\n"
	        "  --budget N            HopX requests per minute (default "
	        "100)\n"
	        "  --max-inflight N      HTTP transfers at once (default 8)\n"
	        "  --http-timeout S      give up on an HTTP attempt after S "
	        "seconds (default 30)\n"
	        "  --max-queue BYTES     unsent events per subscriber before "
	        "it is dropped\n"
	        "                        (default 4194304)\n"
	        "  --shutdown-timeout S  wait S seconds for pauses at "
	        "shutdown (default 10)\n"
	        "  --confirm-after S     env and run ask HopX first when its "
	        "word on the sandbox\n"
	        "                        is older (default 30)\n"
	        "  --api-listen ADDR     serve a HopX-compatible API for the "
	        "SDKs on ADDR\n"
	        "                        (127.0.0.1:PORT or unix:PATH; off "
	        "by default)\n"
	        "  --local-key-file PATH the key its clients may send instead "
	        "of the API key\n"
	        "                        (default ~/.config/hopxd/local-key, "
	        "made if missing)\n"
	        "  --metrics-listen ADDR serve GET /metrics (Prometheus) on "
	        "ADDR (127.0.0.1:PORT)\n"
	        "  --proxy-port PORT     carry each sandbox's own agent API on "
	        "127.2.X.Y:PORT\n"
	        "                        (0: any free port; off; default: "
	        "0 with --api-listen,\n"
	        "                        else off)\n"
	        "  --log-level LEVEL     error, warn, info (default) or "
	        "debug\n"
	        "  -v, --verbose         same as --log-level debug\n"
	        "  -h, --help            show this help and exit\n"
	        "  -V, --version         show the version and exit\n");
}

static int copy_path(char *dst, size_t n, const char *src, const char *what)
{
	if (strlen(src) >= n || *src == '\0') {
		fprintf(stderr, "hopxd: %s path is empty or too long\n", what);
		return 2;
	}
	memcpy(dst, src, strlen(src) + 1);
	return 0;
}

static int int_opt(const char *arg, const char *what, long lo, long hi,
                   int *out)
{
	char *end;
	long v = strtol(arg, &end, 10);

	if (*arg == '\0' || *end != '\0' || v < lo || v > hi) {
		fprintf(stderr, "hopxd: %s must be %ld..%ld\n", what, lo, hi);
		return 2;
	}
	*out = (int)v;
	return 0;
}

enum {
	O_DB = 256,
	O_SOCKET,
	O_LEVEL,
	O_IDLE,
	O_MAXCONN,
	O_MAXQUEUE,
	O_API_BASE,
	O_KEY_FILE,
	O_CA_FILE,
	O_SYNC_IVL,
	O_BUDGET,
	O_INFLIGHT,
	O_SHUTDOWN,
	O_CONFIRM,
	O_HTTP_TIMEOUT,
	O_API_LISTEN,
	O_LOCAL_KEY,
	O_METRICS,
	O_STORE,
	O_LEASE,
	O_PROXY_PORT
};

/*
 * The key file must be ours alone (like ssh's private keys): a key others
 * can read is refused rather than used. The first line is the key.
 */
static int read_key_file(struct agent_config *cfg, const char *path)
{
	struct stat sb;
	FILE *f;
	size_t n;

	if (stat(path, &sb) != 0 || (f = fopen(path, "re")) == NULL) {
		fprintf(stderr, "hopxd: cannot read %s: %s\n", path,
		        strerror(errno));
		return 2;
	}
	if (sb.st_mode & 077) {
		fprintf(stderr,
		        "hopxd: refusing API key file %s: group or others "
		        "can read it (chmod 600 %s)\n",
		        path, path);
		fclose(f);
		return 2;
	}
	if (fgets(cfg->api_key, sizeof(cfg->api_key), f) == NULL)
		cfg->api_key[0] = '\0';
	fclose(f);
	n = strcspn(cfg->api_key, " \t\r\n");
	cfg->api_key[n] = '\0';
	if (n == 0) {
		fprintf(stderr, "hopxd: API key file %s is empty\n", path);
		return 2;
	}
	return 0;
}

static int set_base(struct agent_config *cfg, const char *url)
{
	if ((strncmp(url, "https://", 8) != 0 &&
	     strncmp(url, "http://", 7) != 0) ||
	    strlen(url) >= sizeof(cfg->api_base)) {
		fprintf(stderr, "hopxd: the API base must be an http(s) URL\n");
		return 2;
	}
	snprintf(cfg->api_base, sizeof(cfg->api_base), "%s", url);
	return 0;
}

/* A password given here would show in ps and in logs: refused. */
static int set_store(struct agent_config *cfg, const char *v)
{
	char why[256];

	if (fleetlink_is_pg(v) && fleetlink_check(v, why, sizeof(why)) != 0) {
		fprintf(stderr, "hopxd: %s\n", why);
		return 2;
	}
	return copy_path(cfg->store, sizeof(cfg->store), v, "--store");
}

static int apply_api_opt(struct agent_config *cfg, int c)
{
	switch (c) {
	case O_API_BASE:
		return set_base(cfg, optarg);
	case O_KEY_FILE:
		return read_key_file(cfg, optarg);
	case O_CA_FILE:
		return copy_path(cfg->ca_file, sizeof(cfg->ca_file), optarg,
		                 "CA file");
	case O_SYNC_IVL:
		return int_opt(optarg, "--sync-interval", 5, 86400,
		               &cfg->sync_interval_s);
	case O_BUDGET:
		return int_opt(optarg, "--budget", 1, 1000000, &cfg->budget);
	case O_INFLIGHT:
		return int_opt(optarg, "--max-inflight", 1, 256,
		               &cfg->max_inflight);
	case O_SHUTDOWN:
		return int_opt(optarg, "--shutdown-timeout", 0, 600,
		               &cfg->shutdown_timeout_s);
	case O_CONFIRM:
		return int_opt(optarg, "--confirm-after", 0, 86400,
		               &cfg->confirm_after_s);
	case O_HTTP_TIMEOUT:
		return int_opt(optarg, "--http-timeout", 1, 600,
		               &cfg->http_timeout_s);
	case O_API_LISTEN:
		return copy_path(cfg->api_listen, sizeof(cfg->api_listen),
		                 optarg, "--api-listen");
	case O_METRICS:
		return copy_path(cfg->metrics_listen,
		                 sizeof(cfg->metrics_listen), optarg,
		                 "--metrics-listen");
	case O_PROXY_PORT:
		if (strcmp(optarg, "off") == 0) {
			cfg->proxy_port = PROXY_PORT_OFF;
			return 0;
		}
		return int_opt(optarg, "--proxy-port", 0, 65535,
		               &cfg->proxy_port);
	case O_LOCAL_KEY:
		return copy_path(cfg->local_key_file,
		                 sizeof(cfg->local_key_file), optarg,
		                 "local key");
	default:
		return -1;
	}
}

static int apply_opt(struct agent_config *cfg, enum log_level *lvl, int c)
{
	int r = apply_api_opt(cfg, c);

	if (r >= 0)
		return r;
	switch (c) {
	case O_DB:
		return copy_path(cfg->db, sizeof(cfg->db), optarg, "database");
	case O_STORE:
		return set_store(cfg, optarg);
	case O_LEASE:
		return int_opt(optarg, "--lease", 3, 3600, &cfg->lease_s);
	case O_SOCKET:
		return copy_path(cfg->socket, sizeof(cfg->socket), optarg,
		                 "socket");
	case O_IDLE:
		return int_opt(optarg, "--idle-timeout", 1, 86400,
		               &cfg->idle_timeout_s);
	case O_MAXCONN:
		return int_opt(optarg, "--max-connections", 1, 1000000,
		               &cfg->max_connections);
	case O_MAXQUEUE:
		return int_opt(optarg, "--max-queue", 4096, 1 << 30,
		               &cfg->max_queue);
	case O_LEVEL:
		if (log_level_parse(optarg, lvl) == 0)
			return 0;
		fprintf(stderr,
		        "hopxd: unknown log level '%s' (use error, "
		        "warn, info or debug)\n",
		        optarg);
		return 2;
	case 'v':
		*lvl = LOG_LVL_DEBUG;
		return 0;
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

/* Returns -1 to go on, or an exit code. */
static int parse_args(int argc, char **argv, struct agent_config *cfg,
                      enum log_level *lvl)
{
	static const struct option longopts[] = {
	        {"db", required_argument, NULL, O_DB},
	        {"socket", required_argument, NULL, O_SOCKET},
	        {"log-level", required_argument, NULL, O_LEVEL},
	        {"idle-timeout", required_argument, NULL, O_IDLE},
	        {"max-connections", required_argument, NULL, O_MAXCONN},
	        {"max-queue", required_argument, NULL, O_MAXQUEUE},
	        {"api-base", required_argument, NULL, O_API_BASE},
	        {"api-key-file", required_argument, NULL, O_KEY_FILE},
	        {"ca-file", required_argument, NULL, O_CA_FILE},
	        {"sync-interval", required_argument, NULL, O_SYNC_IVL},
	        {"budget", required_argument, NULL, O_BUDGET},
	        {"max-inflight", required_argument, NULL, O_INFLIGHT},
	        {"shutdown-timeout", required_argument, NULL, O_SHUTDOWN},
	        {"confirm-after", required_argument, NULL, O_CONFIRM},
	        {"http-timeout", required_argument, NULL, O_HTTP_TIMEOUT},
	        {"api-listen", required_argument, NULL, O_API_LISTEN},
	        {"local-key-file", required_argument, NULL, O_LOCAL_KEY},
	        {"metrics-listen", required_argument, NULL, O_METRICS},
	        {"store", required_argument, NULL, O_STORE},
	        {"lease", required_argument, NULL, O_LEASE},
	        {"proxy-port", required_argument, NULL, O_PROXY_PORT},
	        {"verbose", no_argument, NULL, 'v'},
	        {"help", no_argument, NULL, 'h'},
	        {"version", no_argument, NULL, 'V'},
	        {NULL, 0, NULL, 0}};
	int c, r;

	while ((c = getopt_long(argc, argv, "vhV", longopts, NULL)) != -1) {
		if ((r = apply_opt(cfg, lvl, c)) != 0)
			return r;
		if (c == 'h' || c == 'V')
			return 0;
	}
	if (optind < argc) {
		fprintf(stderr, "hopxd: unexpected argument '%s'\n",
		        argv[optind]);
		return 2;
	}
	return -1;
}

/* The default key file, when there is one (a missing file is no error). */
static int default_key_file(struct agent_config *cfg)
{
	char path[4096];

	if (paths_key_file(path, sizeof(path)) != 0 || access(path, F_OK) != 0)
		return 0;
	return read_key_file(cfg, path);
}

/* Flags win over the environment, which wins over the defaults. */
static int default_api(struct agent_config *cfg)
{
	const char *key = getenv("HOPX_API_KEY");
	const char *base = getenv("HOPX_BASE_URL");
	int r;

	if (cfg->api_key[0] == '\0' && key && *key)
		snprintf(cfg->api_key, sizeof(cfg->api_key), "%s", key);
	if (cfg->api_key[0] == '\0' && (r = default_key_file(cfg)) != 0)
		return r;
	if (cfg->api_base[0] == '\0' && base && *base)
		return set_base(cfg, base);
	if (cfg->api_base[0] == '\0')
		snprintf(cfg->api_base, sizeof(cfg->api_base),
		         "https://api.hopx.dev");
	return 0;
}

/*
 * A fleet's local copy is made the same as the registry, records it does
 * not have forgotten: never the database of an agent on its own.
 */
static int default_store(struct agent_config *cfg)
{
	const char *env = getenv("HOPXD_STORE");
	char why[256], *slash;

	if (cfg->store[0] == '\0' && env && *env) {
		if (fleetlink_is_pg(env) &&
		    fleetlink_check(env, why, sizeof(why)) != 0 &&
		    strstr(why, "password") == NULL) {
			fprintf(stderr, "hopxd: HOPXD_STORE%s\n", why + 7);
			return 2;
		}
		snprintf(cfg->store, sizeof(cfg->store), "%s", env);
	}
	if (!fleetlink_is_pg(cfg->store) || cfg->db[0] || getenv("HOPXD_DB"))
		return 0;
	if (paths_db(cfg->db, sizeof(cfg->db)) == 0 &&
	    (slash = strrchr(cfg->db, '/')) != NULL)
		snprintf(slash + 1,
		         sizeof(cfg->db) - (size_t)(slash + 1 - cfg->db),
		         "fleet.db");
	return 0;
}

static int default_paths(struct agent_config *cfg)
{
	if (default_store(cfg) != 0)
		return 2;
	if (cfg->db[0] == '\0' && paths_db(cfg->db, sizeof(cfg->db)) != 0) {
		fprintf(stderr, "hopxd: cannot choose a database path: set "
		                "--db, HOPXD_DB, XDG_STATE_HOME or HOME\n");
		return 2;
	}
	if (cfg->socket[0] == '\0' &&
	    paths_socket(cfg->socket, sizeof(cfg->socket)) != 0) {
		fprintf(stderr, "hopxd: the socket path is longer than a Unix "
		                "socket allows; use --socket\n");
		return 2;
	}
	return 0;
}

/*
 * One agent per database: an exclusive flock on DB.lock, taken before
 * anything else is touched and released by the kernel when we die.
 */
static int take_lock(struct main_state *m)
{
	char path[4200], failed[256];
	int fd, r;

	snprintf(path, sizeof(path), "%s.lock", m->a.cfg.db);
	if ((r = paths_make_parents(path, failed, sizeof(failed))) != 0) {
		log_error("cannot create %s: %s", failed, err_str(r));
		return r;
	}
	fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0) {
		log_error("cannot open lock file %s: %s", path,
		          strerror(errno));
		return err_from_errno(errno);
	}
	if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
		log_error("another hopxd is already running with database %s",
		          m->a.cfg.db);
		close(fd);
		return ERR_BUSY;
	}
	m->lock_fd = fd;
	return 0;
}

/* The listening fd systemd passed (LISTEN_FDS/LISTEN_PID), or -1. */
static int activation_fd(void)
{
	const char *pid = getenv("LISTEN_PID"), *fds = getenv("LISTEN_FDS");

	if (pid == NULL || fds == NULL || atol(pid) != (long)getpid() ||
	    atoi(fds) < 1)
		return -1;
	unsetenv("LISTEN_PID");
	unsetenv("LISTEN_FDS");
	unsetenv("LISTEN_FDNAMES");
	fcntl(3, F_SETFD, FD_CLOEXEC);
	return 3;
}

/*
 * Tokens live in this process's memory: a crash must not write them to
 * a core file, and nothing it creates is for other users (RELIABILITY.md
 * 1.7). RLIMIT_CORE rather than PR_SET_DUMPABLE keeps /proc/PID readable
 * by its own user.
 */
static void harden(void)
{
	struct rlimit none = {0, 0};

	umask(077);
	setrlimit(RLIMIT_CORE, &none);
}

/* Many idle clients are allowed: lift the soft fd limit to the hard. */
static void raise_nofile(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
}

/* Tears down in dependency order; the loop then ends as handles close. */
static void stop_all(struct main_state *m)
{
	struct agent *a = &m->a;

	if (!uv_is_closing((uv_handle_t *)&m->deadline))
		uv_close((uv_handle_t *)&m->deadline, NULL);
	if (!uv_is_closing((uv_handle_t *)&m->jumps))
		uv_close((uv_handle_t *)&m->jumps, NULL);
	ipc_server_close(a->ipc);
	proxy_stop(a->proxy); /* its leases end while sessions live */
	a->proxy = NULL;
	hopx_destroy(a->hopx); /* no answer comes after this */
	a->hopx = NULL;
	reconcile_destroy(a->rec);
	a->rec = NULL;
	sessions_destroy(a->sess);
	a->sess = NULL;
	fleetlink_stop(a); /* pushes in flight fail: their callers are gone */
	apiep_stop(a->apiep); /* after what could still answer its clients */
	a->apiep = NULL;
	httpd_destroy(a->metrics);
	a->metrics = NULL;
}

/*
 * A suspend (timers run on the monotonic clock, which stood still) or a
 * clock step: tokens may have expired and deadlines passed meanwhile, so
 * everything is planned anew and HopX asked at once.
 */
static void on_clock_tick(uv_timer_t *t)
{
	struct main_state *m = t->data;
	struct agent *a = &m->a;
	int64_t wall = clock_wall_ms(a->clk), mono = clock_mono_ms(a->clk);
	int64_t jump = timing_clock_jump(m->wall0, m->mono0, wall, mono,
	                                 JUMP_TOLERANCE_MS);

	m->wall0 = wall;
	m->mono0 = mono;
	if (jump == 0 || a->stopping || a->hopx == NULL)
		return;
	log_warn("the wall clock jumped %+lld s (a suspend or a clock set): "
	         "re-planning renewals and reconciling now",
	         (long long)(jump / 1000));
	hopx_skew_restart(a->hopx);
	sessions_replan(a->sess);
	reconcile_run(a->rec, "periodic", NULL, NULL);
}

static int watch_clock(struct main_state *m)
{
	m->jumps.data = m;
	m->wall0 = clock_wall_ms(m->a.clk);
	m->mono0 = clock_mono_ms(m->a.clk);
	if (uv_timer_start(&m->jumps, on_clock_tick, JUMP_CHECK_MS,
	                   JUMP_CHECK_MS) != 0)
		return ERR_SYS;
	uv_unref((uv_handle_t *)&m->jumps);
	return 0;
}

static void on_stop_now(uv_timer_t *t)
{
	stop_all(t->data);
}

/*
 * Runs inside a HopX answer: the client cannot be destroyed from its own
 * callback, so the teardown runs on the next loop iteration.
 */
static void on_paused_all(void *ud)
{
	struct main_state *m = ud;

	uv_timer_start(&m->deadline, on_stop_now, 0, 0);
}

static void on_deadline(uv_timer_t *t)
{
	log_warn("shutdown deadline reached: cancelling what is in flight");
	stop_all(t->data);
}

/* Type=notify: systemd hears when hopxd is ready and when it stops. */
static void tell_systemd(const char *state)
{
	int r = notify_send(state);

	if (r != 0)
		log_warn("cannot notify systemd: %s", err_str(r));
}

static void on_signal(uv_signal_t *h, int signum)
{
	struct main_state *m = h->data;

	log_info("received signal %d, shutting down", signum);
	tell_systemd("STOPPING=1");
	uv_close((uv_handle_t *)&m->sigint, NULL);
	uv_close((uv_handle_t *)&m->sigterm, NULL);
	m->a.stopping = 1;
	m->deadline.data = m;
	uv_timer_start(&m->deadline, on_deadline,
	               (uint64_t)m->a.cfg.shutdown_timeout_s * 1000, 0);
	/* Pauses (policy pause-on-shutdown) first, then everything stops. */
	if (m->a.sess)
		sessions_shutdown(m->a.sess, on_paused_all, m);
	else
		stop_all(m);
}

/* ---- the database check, on libuv's thread pool ---- */

static void check_work(uv_work_t *w)
{
	struct main_state *m = w->data;
	struct store *s = NULL;

	/* Its own read-only connection: the loop's is not shared. */
	m->check_err =
	        store_open(m->a.cfg.db, STORE_OPEN_READONLY | STORE_OPEN_CHECK,
	                   NULL, &s, &m->check_cause);
	if (s)
		store_close(s);
}

static void check_done(uv_work_t *w, int status)
{
	struct main_state *m = w->data;

	if (status == 0 && m->check_err == 0) {
		log_debug("database check: ok");
		return;
	}
	log_error("database check failed: %s; stopping",
	          m->check_cause ? m->check_cause : err_str(m->check_err));
	free(m->check_cause);
	m->check_cause = NULL;
	m->failed = 1;
	if (!m->a.stopping)
		uv_kill(getpid(), SIGTERM);
}

static int check_start(struct main_state *m)
{
	m->check.data = m;
	return uv_queue_work(&m->loop, &m->check, check_work, check_done) == 0
	               ? 0
	               : ERR_SYS;
}

static int watch_signals(struct main_state *m)
{
	int r;

	m->sigint.data = m;
	m->sigterm.data = m;
	if ((r = uv_signal_init(&m->loop, &m->sigint)) != 0 ||
	    (r = uv_signal_init(&m->loop, &m->sigterm)) != 0 ||
	    (r = uv_signal_start(&m->sigint, on_signal, SIGINT)) != 0 ||
	    (r = uv_signal_start(&m->sigterm, on_signal, SIGTERM)) != 0) {
		log_error("cannot watch signals: %s", uv_strerror(r));
		return ERR_SYS;
	}
	return 0;
}

static int open_store(struct agent *a)
{
	char *cause = NULL;
	int r;

	/* Checked in the background (check_start): the check reads the
	 * whole file, which should not delay the socket. */
	r = store_open(a->cfg.db, 0, a->clk, &a->store, &cause);
	if (r != 0) {
		log_error("%s", cause ? cause : err_str(r));
		free(cause);
		return r;
	}
	log_info("database %s: schema %d", a->cfg.db,
	         store_schema_version(a->store));
	return 0;
}

static int start_ipc(struct agent *a)
{
	char *cause = NULL;
	int fd = activation_fd();
	int r = ipc_server_start(a, fd, &a->ipc, &cause);

	if (r != 0) {
		log_error("%s", cause ? cause : err_str(r));
		free(cause);
		return r;
	}
	if (fd >= 0)
		log_info("listening on the socket systemd passed (fd 3)");
	else
		log_info("listening on %s", a->cfg.socket);
	return 0;
}

/*
 * Every record is in memory: the first reconcile can see them all. The
 * database check starts now too: it reads the whole file on a second
 * core, and before the load it doubled the time to the first answer.
 */
static void on_loaded(void *ud)
{
	struct agent *a = ud;
	struct main_state *m = (struct main_state *)(void *)a; /* its first */

	if (a->stopping)
		return;
	if (a->hopx && a->fleet)
		reconcile_fleet_start(a->rec);
	else if (a->hopx)
		reconcile_run(a->rec, "start", NULL, NULL);
	if (check_start(m) != 0)
		log_error("cannot start the database check");
}

/* HopX's answers of one loop turn: one transaction (sessions_batch). */
static void on_batch(void *ud, int end)
{
	struct agent *a = ud;

	sessions_batch(a->sess, end);
}

/* The HopX side: client, sessions, reconcile; the first run starts once
 * the records are loaded. */

static int start_hopx(struct agent *a)
{
	struct hopx_opts o = {.base_url = a->cfg.api_base,
	                      .api_key = a->cfg.api_key,
	                      .ca_file =
	                              a->cfg.ca_file[0] ? a->cfg.ca_file : NULL,
	                      .budget_per_min = a->cfg.budget,
	                      .max_inflight = a->cfg.max_inflight,
	                      .timeout_ms = a->cfg.http_timeout_s * 1000L,
	                      .clk = a->clk};
	int r;

	if (a->cfg.api_key[0] &&
	    (r = hopx_create(a->loop, &o, &a->hopx)) != 0) {
		log_error("cannot set up the HopX client: %s", err_str(r));
		return r;
	}
	if (a->hopx == NULL)
		log_warn("no HopX API key (HOPX_API_KEY, --api-key-file or "
		         "~/.config/hopxd/api-key): "
		         "serving local records only");
	else
		log_info("HopX API at %s, budget %d requests/min",
		         a->cfg.api_base, a->cfg.budget);
	if ((r = sessions_create(a, a->hopx, on_loaded, a, &a->sess)) != 0 ||
	    (r = reconcile_create(a, a->sess, a->hopx,
	                          (int64_t)a->cfg.sync_interval_s * 1000,
	                          &a->rec)) != 0) {
		log_error("cannot load the sessions: %s", err_str(r));
		return r;
	}
	if (a->hopx)
		hopx_on_batch(a->hopx, on_batch, a);
	return 0;
}

/* The data-plane proxy: on with the endpoint unless turned off. */
static int start_proxy(struct agent *a, const char *local_key)
{
	struct proxy_opts o = {
	        .port = a->cfg.proxy_port,
	        .local_key = local_key,
	        .max_connections = (unsigned)a->cfg.max_connections,
	        .idle_timeout_s = (unsigned)a->cfg.idle_timeout_s};
	char why[512];
	int r;

	/* Without its shared port, it still serves hopxctl proxy. */
	if (a->cfg.proxy_port == PROXY_PORT_OFF ||
	    (a->cfg.proxy_port == PROXY_PORT_AUTO && local_key == NULL))
		o.port = -1;
	else if (o.port < 0)
		o.port = 0;
	if ((r = proxy_start(a, &o, &a->proxy, why, sizeof(why))) != 0) {
		log_error("%s", why);
		return r;
	}
	if (o.port >= 0)
		log_info("proxy to each sandbox's agent on 127.2.X.Y:%d",
		         proxy_port(a->proxy));
	return 0;
}

/* The HTTP servers, when asked for: metrics and the HopX endpoint. */
static int start_apiep(struct agent *a)
{
	struct apiep_opts o = {
	        .listen = a->cfg.api_listen,
	        .local_key_file =
	                a->cfg.local_key_file[0] ? a->cfg.local_key_file : NULL,
	        /* Bounded like the socket. */
	        .max_connections = (unsigned)a->cfg.max_connections,
	        .timeout_s = (unsigned)a->cfg.idle_timeout_s};
	char why[4400];
	int r;

	if (a->cfg.metrics_listen[0] &&
	    (r = metrics_listen(a, a->cfg.metrics_listen, why, sizeof(why)))) {
		log_error("%s", why);
		return r;
	}
	if (a->metrics)
		log_info("metrics on http://%s/metrics", a->cfg.metrics_listen);
	if (a->cfg.api_listen[0] == '\0')
		return start_proxy(a, NULL);
	if ((r = apiep_start(a, &o, &a->apiep, why, sizeof(why))) != 0) {
		log_error("%s", why);
		return r;
	}
	if ((r = start_proxy(a, apiep_local_key(a->apiep))) != 0)
		return r;
	log_info("HopX-compatible API on %s (SDKs: HOPX_BASE_URL=%s, key: "
	         "the API key or %s)",
	         apiep_url(a->apiep), apiep_url(a->apiep),
	         apiep_key_file(a->apiep));
	return 0;
}

static void close_handle(uv_handle_t *h, void *arg)
{
	(void)arg;
	if (!uv_is_closing(h))
		uv_close(h, NULL);
}

static int run(struct main_state *m)
{
	int r;

	m->a.loop = &m->loop;
	m->a.clk = clock_system();
	m->a.started_mono = clock_mono_ms(m->a.clk);
	if (uv_loop_init(&m->loop) != 0 ||
	    uv_timer_init(&m->loop, &m->deadline) != 0 ||
	    uv_timer_init(&m->loop, &m->jumps) != 0)
		return 1;
	r = take_lock(m);
	if (r == 0)
		r = open_store(&m->a);
	if (r == 0)
		r = watch_signals(m);
	/* The socket first: it answers whatever the network is doing. */
	if (r == 0)
		r = start_ipc(&m->a);
	if (r == 0)
		r = fleetlink_start(&m->a);
	if (r == 0)
		r = start_hopx(&m->a);
	if (r == 0)
		r = start_apiep(&m->a);
	if (r == 0)
		r = watch_clock(m);
	if (r == 0) {
		tell_systemd("READY=1\nSTATUS=serving on the control socket");
		uv_run(&m->loop, UV_RUN_DEFAULT);
	}
	stop_all(m);
	uv_walk(&m->loop, close_handle, NULL);
	uv_run(&m->loop, UV_RUN_DEFAULT);
	ipc_server_destroy(m->a.ipc);
	/* A leaked statement or handle is a bug: say so in the exit code. */
	if (store_close(m->a.store) != 0) {
		log_error("database did not close cleanly");
		r = r ? r : ERR_BUSY;
	}
	if (uv_loop_close(&m->loop) != 0) {
		log_error("event loop still had open handles");
		r = r ? r : ERR_BUSY;
	}
	if (m->lock_fd > 0)
		close(m->lock_fd);
	return r == 0 && !m->failed ? 0 : 1;
}

int main(int argc, char **argv)
{
	static struct main_state m;
	enum log_level lvl = LOG_LVL_INFO;
	int r;

	m.a.cfg.idle_timeout_s = 300;
	m.a.cfg.max_connections = 4096;
	m.a.cfg.max_queue = 4 * 1024 * 1024;
	m.a.cfg.sync_interval_s = 300;
	m.a.cfg.budget = 100;
	m.a.cfg.max_inflight = 8;
	m.a.cfg.shutdown_timeout_s = 10;
	m.a.cfg.confirm_after_s = 30;
	m.a.cfg.http_timeout_s = 30;
	m.a.cfg.lease_s = 15;
	m.a.cfg.proxy_port = PROXY_PORT_AUTO;
	if ((r = parse_args(argc, argv, &m.a.cfg, &lvl)) >= 0)
		return r;
	if ((r = default_paths(&m.a.cfg)) != 0 ||
	    (r = default_api(&m.a.cfg)) != 0)
		return r;
	signal(SIGPIPE, SIG_IGN);
	harden();
	raise_nofile();
	log_init("hopxd", lvl);
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != 0) {
		log_error("cannot initialise libcurl");
		return 1;
	}
	r = run(&m);
	curl_global_cleanup();
	return r;
}
