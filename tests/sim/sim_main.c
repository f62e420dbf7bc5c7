/*
 * hopx-sim: command line, ready file, signals and the housekeeping loop
 * (expire sandboxes, save the state file once a second when it changed).
 */
#include "config.h"
#include "sim.h"
#include "sim_files.h"
#include "sim_http.h"
#include "sim_vmhttp.h"

#include <getopt.h>
#include <stddef.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

static void usage(FILE *f)
{
	fprintf(f,
	        "Usage: hopx-sim [OPTION]...\n"
	        "A local HopX control plane and sandbox agent with fault "
	        "injection.\n\n"
	        "  --listen HOST:PORT        control plane (default "
	        "127.0.0.1:18080; port 0 = any)\n"
	        "  --agent-listen HOST:PORT  sandbox agents (default "
	        "127.0.0.1:18081)\n"
	        "  --api-key KEY             accepted key (default "
	        "$HOPX_SIM_API_KEY or hopx_test_simulator.key)\n"
	        "  --ready-file PATH         write {api_url, agent_url, pid} "
	        "once listening\n"
	        "  --state-file PATH         keep sandboxes across restarts\n"
	        "  --token-lifetime S        token lifetime in seconds "
	        "(default 3600)\n"
	        "  --list-default-limit N    page size without limit "
	        "(default 100)\n"
	        "  --list-max-limit N        largest page (default 100)\n"
	        "  --conflict-status N       status of a refused transition "
	        "(default 409)\n"
	        "  --no-start-stop           start/stop answer 404 (removed "
	        "routes)\n"
	        "  --create-creating MS      create answers \"creating\" for "
	        "MS "
	        "ms\n"
	        "  --clock-stops-paused      the kill clock stops while "
	        "paused\n"
	        "  --tokens-in-get           GET includes auth_token\n"
	        "  --tls-cert PEM, --tls-key PEM\n"
	        "                            sandbox hosts serve TLS with this "
	        "certificate\n"
	        "                            and public_host says https:// (as "
	        "HopX's do)\n"
	        "  --tokens-in-list          list items include auth_token\n"
	        "  --unknown-template-500    unknown template answers 500\n"
	        "  --vm-hosts N              sandboxes with their own agent "
	        "host 127.1.x.y (default 1024;\n"
	        "                            the rest /sandbox/ID on "
	        "--agent-listen)\n"
	        "  --files-dir DIR           sandboxes' files (default: a "
	        "temp dir, removed at exit)\n"
	        "  --faults JSON             initial faults (as PUT "
	        "/_sim/faults)\n"
	        "  -q, --quiet               no startup line\n"
	        "  -h, --help, -V, --version\n");
}

static int parse_int(const char *arg, const char *what, long lo, long hi,
                     long *out)
{
	char *end;
	long v = strtol(arg, &end, 10);

	if (*arg == '\0' || *end != '\0' || v < lo || v > hi) {
		fprintf(stderr, "hopx-sim: %s must be %ld..%ld\n", what, lo,
		        hi);
		return -1;
	}
	*out = v;
	return 0;
}

static void defaults(struct sim_config *c)
{
	const char *key = getenv("HOPX_SIM_API_KEY");

	memset(c, 0, sizeof(*c));
	snprintf(c->listen, sizeof(c->listen), "127.0.0.1:18080");
	snprintf(c->agent_listen, sizeof(c->agent_listen), "127.0.0.1:18081");
	snprintf(c->api_key, sizeof(c->api_key), "%s",
	         key && *key ? key : "hopx_test_simulator.key");
	c->token_lifetime_ms = 3600 * 1000;
	c->list_default_limit = 100;
	c->list_max_limit = 100;
	c->conflict_status = 409;
	c->start_stop = 1;
	c->clock_runs_paused = 1;
	c->vm_hosts = 1024;
}

enum {
	O_LISTEN = 256,
	O_AGENT,
	O_KEY,
	O_READY,
	O_STATE,
	O_LIFE,
	O_LDEF,
	O_LMAX,
	O_CONFLICT,
	O_NOSS,
	O_CREATING,
	O_CLOCK,
	O_TGET,
	O_TLSCERT,
	O_TLSKEY,
	O_TLIST,
	O_T500,
	O_FAULTS,
	O_VMHOSTS,
	O_FILES
};

static const struct option longopts[] = {
        {"listen", required_argument, NULL, O_LISTEN},
        {"agent-listen", required_argument, NULL, O_AGENT},
        {"api-key", required_argument, NULL, O_KEY},
        {"ready-file", required_argument, NULL, O_READY},
        {"state-file", required_argument, NULL, O_STATE},
        {"token-lifetime", required_argument, NULL, O_LIFE},
        {"list-default-limit", required_argument, NULL, O_LDEF},
        {"list-max-limit", required_argument, NULL, O_LMAX},
        {"conflict-status", required_argument, NULL, O_CONFLICT},
        {"no-start-stop", no_argument, NULL, O_NOSS},
        {"create-creating", required_argument, NULL, O_CREATING},
        {"clock-stops-paused", no_argument, NULL, O_CLOCK},
        {"tokens-in-get", no_argument, NULL, O_TGET},
        {"tls-cert", required_argument, NULL, O_TLSCERT},
        {"tls-key", required_argument, NULL, O_TLSKEY},
        {"tokens-in-list", no_argument, NULL, O_TLIST},
        {"unknown-template-500", no_argument, NULL, O_T500},
        {"faults", required_argument, NULL, O_FAULTS},
        {"vm-hosts", required_argument, NULL, O_VMHOSTS},
        {"files-dir", required_argument, NULL, O_FILES},
        {"quiet", no_argument, NULL, 'q'},
        {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, 'V'},
        {NULL, 0, NULL, 0}};

/* Copies a string option; -1 when it does not fit. */
static int copy_opt(char *dst, size_t n, const char *v, const char *what)
{
	if (strlen(v) >= n || *v == '\0') {
		fprintf(stderr, "hopx-sim: %s is empty or too long\n", what);
		return -1;
	}
	memcpy(dst, v, strlen(v) + 1);
	return 0;
}

static int apply_int_opt(struct sim_config *c, int opt, const char *arg)
{
	long v = 0;
	int r = 0;

	if (opt == O_LIFE &&
	    (r = parse_int(arg, "--token-lifetime", 1, 86400 * 30, &v)) == 0)
		c->token_lifetime_ms = v * 1000;
	else if (opt == O_LDEF && (r = parse_int(arg, "--list-default-limit", 1,
	                                         100000, &v)) == 0)
		c->list_default_limit = (int)v;
	else if (opt == O_LMAX &&
	         (r = parse_int(arg, "--list-max-limit", 1, 100000, &v)) == 0)
		c->list_max_limit = (int)v;
	else if (opt == O_CONFLICT &&
	         (r = parse_int(arg, "--conflict-status", 400, 499, &v)) == 0)
		c->conflict_status = (int)v;
	else if (opt == O_CREATING && (r = parse_int(arg, "--create-creating",
	                                             0, 3600000, &v)) == 0) {
		c->create_status_creating = 1;
		c->creating_ms = v;
	} else if (opt == O_VMHOSTS &&
	           (r = parse_int(arg, "--vm-hosts", 0, 1000000, &v)) == 0) {
		c->vm_hosts = (int)v;
	}
	return r;
}

/* Options whose argument is a string copied into the config. */
static const struct str_opt {
	int id;
	size_t off;
	size_t size;
	const char *name;
} str_opts[] = {
#define STR_OPT(id, field, name)                                               \
	{                                                                      \
		id, offsetof(struct sim_config, field),                        \
		        sizeof(((struct sim_config *)0)->field), name          \
	}
        STR_OPT(O_LISTEN, listen, "--listen"),
        STR_OPT(O_AGENT, agent_listen, "--agent-listen"),
        STR_OPT(O_KEY, api_key, "--api-key"),
        STR_OPT(O_READY, ready_file, "--ready-file"),
        STR_OPT(O_STATE, state_file, "--state-file"),
        STR_OPT(O_FILES, files_dir, "--files-dir"),
        STR_OPT(O_TLSCERT, tls_cert, "--tls-cert"),
        STR_OPT(O_TLSKEY, tls_key, "--tls-key"),
#undef STR_OPT
};

/* Switches without an argument; 0 when o is one of them. */
static int apply_flag(struct sim_config *c, int o)
{
	switch (o) {
	case O_NOSS:
		c->start_stop = 0;
		return 0;
	case O_CLOCK:
		c->clock_runs_paused = 0;
		return 0;
	case O_TGET:
		c->tokens_in_get = 1;
		return 0;
	case O_TLIST:
		c->tokens_in_list = 1;
		return 0;
	case O_T500:
		c->unknown_template_500 = 1;
		return 0;
	case 'q':
		c->quiet = 1;
		return 0;
	default:
		return -1;
	}
}

/* One option: 0 to go on, 1 when done (help, version), 2 on error. */
static int apply_opt(struct sim_config *c, int o, const char **faults)
{
	size_t i;

	for (i = 0; i < sizeof(str_opts) / sizeof(str_opts[0]); i++)
		if (str_opts[i].id == o)
			return copy_opt((char *)c + str_opts[i].off,
			                str_opts[i].size, optarg,
			                str_opts[i].name)
			               ? 2
			               : 0;
	if (o == O_LIFE || o == O_LDEF || o == O_LMAX || o == O_CONFLICT ||
	    o == O_CREATING || o == O_VMHOSTS)
		return apply_int_opt(c, o, optarg) ? 2 : 0;
	if (o == O_FAULTS) {
		*faults = optarg;
		return 0;
	}
	if (apply_flag(c, o) == 0)
		return 0;
	if (o == 'h')
		usage(stdout);
	else if (o == 'V')
		printf("hopx-sim %s\n", HOPXD_VERSION);
	else
		fprintf(stderr, "Try 'hopx-sim --help'.\n");
	return o == 'h' || o == 'V' ? 1 : 2;
}

/* Returns -1 to go on, or an exit code. */
static int parse_args(int argc, char **argv, struct sim_config *c,
                      const char **faults)
{
	int o, r;

	while ((o = getopt_long(argc, argv, "qhV", longopts, NULL)) != -1) {
		if ((r = apply_opt(c, o, faults)) != 0)
			return r == 1 ? 0 : 2;
	}
	if (optind < argc) {
		fprintf(stderr, "hopx-sim: unexpected argument '%s'\n",
		        argv[optind]);
		return 2;
	}
	if (!c->tls_cert[0] != !c->tls_key[0]) {
		fprintf(stderr, "hopx-sim: --tls-cert and --tls-key go "
		                "together\n");
		return 2;
	}
	return -1;
}

static int set_faults(struct sim *s, const char *text)
{
	char err[160];
	cJSON *j;
	int r;

	if (text == NULL)
		return 0;
	j = cJSON_Parse(text);
	r = sim_faults_from_json(&s->faults, j, err, sizeof(err));
	cJSON_Delete(j);
	if (r != 0)
		fprintf(stderr, "hopx-sim: --faults: %s\n", err);
	return r;
}

static int write_ready(const struct sim *s)
{
	char tmp[1100];
	FILE *f;

	if (s->cfg.ready_file[0] == '\0')
		return 0;
	snprintf(tmp, sizeof(tmp), "%s.tmp", s->cfg.ready_file);
	if ((f = fopen(tmp, "w")) == NULL)
		return -1;
	fprintf(f, "{\"api_url\":\"%s\",\"agent_url\":\"%s\",\"pid\":%ld}\n",
	        s->api_url, s->agent_url, (long)getpid());
	if (fclose(f) != 0 || rename(tmp, s->cfg.ready_file) != 0)
		return -1;
	return 0;
}

/* Waits for SIGINT/SIGTERM, doing housekeeping once a second. */
static void housekeeping(struct sim *s, const sigset_t *set)
{
	struct timespec one = {1, 0};

	while (sigtimedwait(set, NULL, &one) < 0) {
		pthread_mutex_lock(&s->lock);
		sim_sweep(s);
		if (s->dirty && sim_save(s) != 0)
			fprintf(stderr, "hopx-sim: cannot save %s\n",
			        s->cfg.state_file);
		pthread_mutex_unlock(&s->lock);
	}
}

static int serve(struct sim *s)
{
	struct sim_http *api = NULL;
	struct sim_vmhttp *vm = NULL;
	int api_port = 0, vm_port = 0, r = 1;
	sigset_t set;

	sigemptyset(&set);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	/* Block before any thread starts, so only sigtimedwait sees them. */
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	if (sim_http_start(s, s->cfg.listen, &api, &api_port) == 0 &&
	    sim_vmhttp_start(s, s->cfg.agent_listen, &vm, &vm_port) == 0) {
		snprintf(s->api_url, sizeof(s->api_url), "http://127.0.0.1:%d",
		         api_port);
		snprintf(s->agent_url, sizeof(s->agent_url),
		         "http://127.0.0.1:%d", vm_port);
		if (write_ready(s) != 0)
			fprintf(stderr, "hopx-sim: cannot write ready file\n");
		else if (!s->cfg.quiet)
			fprintf(stderr,
			        "hopx-sim: control plane %s, sandbox "
			        "agents %s\n",
			        s->api_url, s->agent_url);
		housekeeping(s, &set);
		r = 0;
	}
	s->stopping = 1;
	sim_http_stop(api);
	sim_vmhttp_stop(vm);
	if (sim_save(s) != 0)
		fprintf(stderr, "hopx-sim: cannot save state file\n");
	return r;
}

/* Every sandbox host is a listening socket. */
static void raise_nofile(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
}

int main(int argc, char **argv)
{
	const char *faults = NULL;
	struct sim_config cfg;
	struct sim s;
	int r;

	defaults(&cfg);
	if ((r = parse_args(argc, argv, &cfg, &faults)) >= 0)
		return r;
	signal(SIGPIPE, SIG_IGN);
	raise_nofile();
	if (sim_init(&s, &cfg) != 0)
		return 1;
	if (set_faults(&s, faults) != 0 || sim_load(&s) != 0) {
		if (faults == NULL)
			fprintf(stderr, "hopx-sim: cannot read state file %s\n",
			        cfg.state_file);
		sim_finish(&s);
		return faults ? 2 : 1;
	}
	r = sim_files_init(&s) == 0 ? serve(&s) : 1;
	sim_files_finish(&s);
	sim_finish(&s);
	return r;
}
