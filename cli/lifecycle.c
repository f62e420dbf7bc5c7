/*
 * hopxctl commands that act on HopX through the agent: attach, create,
 * the lifecycle verbs, timeout, keepalive, token, env, run, reconcile,
 * wait and policy.
 */
#include "commands.h"

#include "err.h"
#include "ipc_client.h"
#include "json.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <signal.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* Waiting for HopX takes longer than a local query. */
#define API_TIMEOUT_MS (5 * 60 * 1000)

/* A whole number of seconds ("90", "15m", "2h", "1d") in lo..hi, or -1. */
static long long seconds_arg(const char *s, long long lo, long long hi)
{
	static const struct {
		char unit;
		long long mul;
	} units[] = {{'\0', 1}, {'s', 1}, {'m', 60}, {'h', 3600}, {'d', 86400}};
	char *end;
	long long v;
	size_t i;

	errno = 0;
	v = strtoll(s, &end, 10);
	if (*s == '\0' || end == s || errno || (*end && end[1] != '\0'))
		return -1;
	for (i = 0; i < sizeof(units) / sizeof(*units); i++)
		if (*end == units[i].unit && v <= hi / units[i].mul)
			return v * units[i].mul >= lo ? v * units[i].mul : -1;
	return -1;
}

/* --on-expiry kill|pause|extend into p; 0 or EXIT_USAGE. */
static int expiry_opt(const char *v, cJSON *p)
{
	if (strcmp(v, "kill") != 0 && strcmp(v, "pause") != 0 &&
	    strcmp(v, "extend") != 0)
		return cli_usage_err("--on-expiry takes kill, pause or extend, "
		                     "not",
		                     v);
	json_add_str(p, "on_expiry", v);
	return 0;
}

/* --idle-pause DURATION|off into p; 0 or EXIT_USAGE. */
static int idle_opt(const char *what, const char *v, cJSON *p)
{
	long long s = strcmp(v, "off") == 0 ? 0 : seconds_arg(v, 2, 2592000);

	if (s < 0)
		return cli_usage_err(what, v);
	json_add_i64(p, "idle_pause_s", s);
	return 0;
}

/* Adds KEY=VALUE to obj; returns 0 or EXIT_USAGE. */
static int add_pair(cJSON *obj, const char *what, char *kv)
{
	char *eq = strchr(kv, '=');

	if (eq == NULL || eq == kv)
		return cli_usage_err(what, kv);
	*eq = '\0';
	json_add_str(obj, kv, eq + 1);
	*eq = '=';
	return 0;
}

static int call_record(struct cli *c, const char *method, cJSON *p)
{
	c->timeout_ms = API_TIMEOUT_MS;
	return cli_call_record(c, method, p);
}

/* ---- attach, create ---- */

/* Options shared by attach and create; 1 when argv[*i] was one. */
static int common_opt(int argc, char **argv, int *i, cJSON *p, int *r)
{
	const char *a = argv[*i];

	*r = 0;
	if (strcmp(a, "--name") == 0 && *i + 1 < argc) {
		json_add_str(p, "name", argv[++*i]);
	} else if (strcmp(a, "--idle-pause") == 0 && *i + 1 < argc) {
		*r = idle_opt("--idle-pause takes a duration (15m) or off, not",
		              argv[++*i], p);
	} else if (strcmp(a, "--on-expiry") == 0 && *i + 1 < argc) {
		*r = expiry_opt(argv[++*i], p);
	} else if (strcmp(a, "--label") == 0 && *i + 1 < argc) {
		cJSON *l = cJSON_GetObjectItem(p, "labels");

		if (l == NULL)
			l = cJSON_AddObjectToObject(p, "labels");
		*r = add_pair(l, "--label takes KEY=VALUE, not", argv[++*i]);
	} else {
		return 0;
	}
	return 1;
}

int run_attach(struct cli *c, int argc, char **argv)
{
	cJSON *p = cJSON_CreateObject();
	int i, r = 0;

	json_add_str(p, "id", argv[0]);
	for (i = 1; i < argc && r == 0; i++) {
		if (common_opt(argc, argv, &i, p, &r))
			continue;
		if (strcmp(argv[i], "--no-resume") == 0)
			cJSON_AddFalseToObject(p, "resume");
		else
			r = cli_usage_err("attach: unexpected argument",
			                  argv[i]);
	}
	if (r != 0) {
		cJSON_Delete(p);
		return r;
	}
	return call_record(c, "attach", p);
}

static int create_opt(int argc, char **argv, int *i, cJSON *p)
{
	const char *a = argv[*i];
	long long s;
	int r;

	if (common_opt(argc, argv, i, p, &r))
		return r;
	if (*i + 1 >= argc)
		return cli_usage_err("create: unexpected argument", a);
	if (strcmp(a, "--template") == 0) {
		json_add_str(p, "template", argv[++*i]);
	} else if (strcmp(a, "--region") == 0) {
		json_add_str(p, "region", argv[++*i]);
	} else if (strcmp(a, "--timeout") == 0) {
		if ((s = seconds_arg(argv[++*i], 1, 30LL * 86400)) < 0)
			return cli_usage_err(
			        "create: --timeout takes 1..2592000 "
			        "seconds, not",
			        argv[*i]);
		json_add_i64(p, "timeout_s", s);
	} else if (strcmp(a, "--env") == 0) {
		cJSON *e = cJSON_GetObjectItem(p, "env");

		if (e == NULL)
			e = cJSON_AddObjectToObject(p, "env");
		return add_pair(e, "--env takes NAME=VALUE, not", argv[++*i]);
	} else {
		return cli_usage_err("create: unexpected argument", a);
	}
	return 0;
}

int run_create(struct cli *c, int argc, char **argv)
{
	cJSON *p = cJSON_CreateObject();
	int i, r = 0;

	for (i = 0; i < argc && r == 0; i++)
		r = create_opt(argc, argv, &i, p);
	if (r == 0 && cJSON_GetObjectItem(p, "template") == NULL)
		r = cli_usage_err("create: --template is required", NULL);
	if (r != 0) {
		cJSON_Delete(p);
		return r;
	}
	return call_record(c, "create", p);
}

/* ---- verbs ---- */

int run_pause(struct cli *c, int argc, char **argv)
{
	(void)argc;
	return call_record(c, "pause", cli_ref_params(argv[0]));
}

int run_resume(struct cli *c, int argc, char **argv)
{
	(void)argc;
	return call_record(c, "resume", cli_ref_params(argv[0]));
}

int run_start(struct cli *c, int argc, char **argv)
{
	(void)argc;
	return call_record(c, "start", cli_ref_params(argv[0]));
}

int run_stop(struct cli *c, int argc, char **argv)
{
	(void)argc;
	return call_record(c, "stop", cli_ref_params(argv[0]));
}

int run_kill(struct cli *c, int argc, char **argv)
{
	(void)argc;
	return call_record(c, "kill", cli_ref_params(argv[0]));
}

int run_timeout(struct cli *c, int argc, char **argv)
{
	long long s = seconds_arg(argv[1], 1, 30LL * 86400);
	cJSON *p;

	(void)argc;
	if (s < 0)
		return cli_usage_err("timeout: seconds must be 1..2592000, not",
		                     argv[1]);
	p = cli_ref_params(argv[0]);
	json_add_i64(p, "seconds", s);
	return call_record(c, "timeout", p);
}

int run_keepalive(struct cli *c, int argc, char **argv)
{
	long long s = strcmp(argv[1], "off") == 0
	                      ? 0
	                      : seconds_arg(argv[1], 10, 30LL * 86400);
	cJSON *p;

	(void)argc;
	if (s < 0)
		return cli_usage_err("keepalive: give 10..2592000 seconds or "
		                     "'off', not",
		                     argv[1]);
	p = cli_ref_params(argv[0]);
	json_add_i64(p, "seconds", s);
	return call_record(c, "keepalive", p);
}

/* on|off, or -1. */
static int on_off(const char *s)
{
	if (strcmp(s, "on") == 0)
		return 1;
	return strcmp(s, "off") == 0 ? 0 : -1;
}

/* One policy flag and its value into p; 0 or EXIT_USAGE. */
static int policy_opt(const char *flag, const char *v, cJSON *p)
{
	int on = v ? on_off(v) : -1;

	if (v && strcmp(flag, "--idle-pause") == 0)
		return idle_opt("policy: --idle-pause takes a duration (15m) "
		                "or off, not",
		                v, p);
	if (v && strcmp(flag, "--on-expiry") == 0)
		return expiry_opt(v, p);
	if (on >= 0 && strcmp(flag, "--auto-resume") == 0) {
		cJSON_AddBoolToObject(p, "auto_resume", on);
		return 0;
	}
	if (on >= 0 && strcmp(flag, "--pause-on-shutdown") == 0) {
		cJSON_AddBoolToObject(p, "pause_on_shutdown", on);
		return 0;
	}
	return cli_usage_err("policy: expected --auto-resume on|off, "
	                     "--pause-on-shutdown on|off, --idle-pause "
	                     "DURATION|off or --on-expiry kill|pause|extend at",
	                     flag);
}

int run_policy(struct cli *c, int argc, char **argv)
{
	cJSON *p = cli_ref_params(argv[0]);
	int i, r = 0;

	for (i = 1; i < argc && r == 0; i += 2)
		r = policy_opt(argv[i], i + 1 < argc ? argv[i + 1] : NULL, p);
	if (r != 0) {
		cJSON_Delete(p);
		return r;
	}
	return call_record(c, "policy", p);
}

/* ---- token, env, run ---- */

/*
 * Asks for a token; *res holds id, token, expires_at, public_host (and
 * resumed when the agent had to resume it). confirm: the agent asks HopX
 * first unless it did lately (env, run: a pause behind its back is seen);
 * rejected (or NULL): a token the sandbox refused.
 */
static cJSON *token_params(const char *ref, long long min_ttl, int confirm,
                           const char *rejected)
{
	cJSON *p = cli_ref_params(ref);

	if (min_ttl > 0)
		json_add_i64(p, "min_ttl_s", min_ttl);
	if (confirm)
		cJSON_AddBoolToObject(p, "confirm", 1);
	if (rejected)
		json_add_str(p, "rejected", rejected);
	return p;
}

static int get_token(struct cli *c, const char *ref, long long min_ttl,
                     int confirm, const char *rejected, cJSON **res)
{
	c->timeout_ms = API_TIMEOUT_MS;
	return cli_call(c, "token",
	                token_params(ref, min_ttl, confirm, rejected), res);
}

/* token REF [--min-ttl S] [--rejected TOKEN], flags in any order. */
static int token_args(int argc, char **argv, const char **ref, long long *ttl,
                      const char **rejected)
{
	int i;

	*ref = NULL;
	for (i = 0; i < argc; i++) {
		if (strcmp(argv[i], "--min-ttl") == 0 && i + 1 < argc) {
			*ttl = seconds_arg(argv[++i], 0, 86400);
			if (*ttl < 0)
				return cli_usage_err("token: --min-ttl takes "
				                     "0..86400 seconds, not",
				                     argv[i]);
		} else if (strcmp(argv[i], "--rejected") == 0 && i + 1 < argc) {
			*rejected = argv[++i];
		} else if (*ref == NULL && argv[i][0] != '-') {
			*ref = argv[i];
		} else {
			return cli_usage_err(
			        "token: expected REF [--min-ttl S] "
			        "[--rejected TOKEN], not",
			        argv[i]);
		}
	}
	return *ref ? EXIT_OK
	            : cli_usage_err("token: expected REF [--min-ttl S] "
	                            "[--rejected TOKEN]",
	                            NULL);
}

int run_token(struct cli *c, int argc, char **argv)
{
	const char *ref, *rejected = NULL;
	long long ttl = 0;
	cJSON *res = NULL;
	int r;

	if ((r = token_args(argc, argv, &ref, &ttl, &rejected)) != EXIT_OK)
		return r;
	if ((r = get_token(c, ref, ttl, 0, rejected, &res)) == EXIT_OK) {
		if (c->json)
			cli_print_json(c, res);
		else
			printf("%s\n", cJSON_GetStringValue(cJSON_GetObjectItem(
			                       res, "token")));
	}
	cJSON_Delete(res);
	return r;
}

/* The sandbox agent's URL: public_host, with https:// if it has none. */
static void agent_url(const cJSON *res, char *out, size_t n)
{
	const char *h =
	        cJSON_GetStringValue(cJSON_GetObjectItem(res, "public_host"));

	if (h == NULL)
		h = "";
	snprintf(out, n, "%s%s",
	         *h && strstr(h, "://") == NULL ? "https://" : "", h);
}

/* The variables env prints and run sets, in order. */
static const char *const env_names[] = {
        "HOPX_SANDBOX_ID", "HOPX_SANDBOX_URL", "HOPX_SANDBOX_TOKEN",
        "HOPX_TOKEN_EXPIRES_AT", "HOPXD_SOCKET"};

static void env_values(const struct cli *c, const cJSON *res, char *url,
                       size_t n, const char *v[5])
{
	agent_url(res, url, n);
	v[0] = cJSON_GetStringValue(cJSON_GetObjectItem(res, "id"));
	v[1] = url;
	v[2] = cJSON_GetStringValue(cJSON_GetObjectItem(res, "token"));
	v[3] = cJSON_GetStringValue(cJSON_GetObjectItem(res, "expires_at"));
	v[4] = c->socket;
}

/* Prints a value in single quotes, safe for any POSIX shell. */
static void shell_quote(const char *s)
{
	putchar('\'');
	for (; *s; s++) {
		if (*s == '\'')
			fputs("'\\''", stdout);
		else
			putchar(*s);
	}
	putchar('\'');
}

int run_env(struct cli *c, int argc, char **argv)
{
	const char *v[5];
	char url[1024];
	cJSON *res = NULL;
	int r, i;

	(void)argc;
	if ((r = get_token(c, argv[0], 0, 1, NULL, &res)) == EXIT_OK) {
		env_values(c, res, url, sizeof(url), v);
		for (i = 0; i < 5; i++) {
			printf("export %s=", env_names[i]);
			shell_quote(v[i] ? v[i] : "");
			putchar('\n');
		}
	}
	cJSON_Delete(res);
	return r;
}

static volatile sig_atomic_t child_pid;

static void forward(int sig)
{
	if (child_pid > 0)
		kill((pid_t)child_pid, sig);
}

/* Starts argv as a child that gets SIGINT, SIGTERM and SIGHUP passed on. */
static pid_t spawn(char **argv)
{
	static const int sigs[] = {SIGINT, SIGTERM, SIGHUP};
	struct sigaction sa = {.sa_handler = forward};
	size_t i;
	pid_t pid;

	fflush(stdout);
	if ((pid = fork()) != 0) {
		child_pid = pid;
		for (i = 0; pid > 0 && i < sizeof(sigs) / sizeof(*sigs); i++)
			sigaction(sigs[i], &sa, NULL);
		return pid;
	}
	execvp(argv[0], argv);
	fprintf(stderr, "hopxctl: cannot run %s: %s\n", argv[0],
	        strerror(errno));
	_exit(errno == ENOENT ? 127 : 126);
}

/* The child's exit code, 128+N when signal N ended it (as shells do). */
static int exit_code(int status)
{
	if (WIFSIGNALED(status))
		return 128 + WTERMSIG(status);
	return WIFEXITED(status) ? WEXITSTATUS(status) : 126;
}

/* ---- run --token-file: the token kept in a file while the child runs ---- */

struct token_file {
	char dir[512];
	char path[600];
};

/* A private directory (0700) for the file, under XDG_RUNTIME_DIR. */
static int token_file_open(struct token_file *tf)
{
	const char *base = getenv("XDG_RUNTIME_DIR");

	if (base == NULL || *base == '\0')
		base = getenv("TMPDIR");
	snprintf(tf->dir, sizeof(tf->dir), "%s/hopxctl-token.XXXXXX",
	         base && *base ? base : "/tmp");
	if (mkdtemp(tf->dir) == NULL) {
		fprintf(stderr, "hopxctl: cannot make %s: %s\n", tf->dir,
		        strerror(errno));
		tf->dir[0] = '\0';
		return EXIT_ERROR;
	}
	snprintf(tf->path, sizeof(tf->path), "%s/token", tf->dir);
	return EXIT_OK;
}

/* Replaces the file's content at once (write + rename): a reader sees
 * the old token or the new one, never half of one. */
static int token_file_write(const struct token_file *tf, const char *token)
{
	char tmp[620];
	int fd, ok;
	size_t n = strlen(token);

	snprintf(tmp, sizeof(tmp), "%s/.token.new", tf->dir);
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		return EXIT_ERROR;
	ok = write(fd, token, n) == (ssize_t)n && write(fd, "\n", 1) == 1;
	ok = close(fd) == 0 && ok;
	if (!ok || rename(tmp, tf->path) != 0) {
		unlink(tmp);
		return EXIT_ERROR;
	}
	return EXIT_OK;
}

static void token_file_remove(const struct token_file *tf)
{
	if (tf->dir[0] == '\0')
		return;
	unlink(tf->path);
	rmdir(tf->dir);
}

/* A "token" event of sandbox id: the token was renewed. */
static int renewed(const cJSON *ev, const char *id)
{
	return strcmp(cli_str(ev, "type"), "token") == 0 &&
	       strcmp(cli_str(ev, "sandbox_id"), id) == 0;
}

/* Rewrites the file from the agent's current token. */
static void refresh_file(struct cli *c, struct ipc_client *ic,
                         const struct token_file *tf, const char *id)
{
	cJSON *res = NULL;

	if (cli_call_on(c, ic, "token", token_params(id, 0, 0, NULL), &res) ==
	            EXIT_OK &&
	    token_file_write(tf, cli_str(res, "token")) != EXIT_OK)
		fprintf(stderr, "hopxctl: cannot rewrite %s\n", tf->path);
	cJSON_Delete(res);
}

/*
 * Waits for the child; with a token file, rewrites it at every renewal
 * the agent announces on a subscription (sub), until the child ends.
 */
static int wait_child(struct cli *c, pid_t pid, struct ipc_client *ic,
                      struct ipc_client *sub, const struct token_file *tf,
                      const char *id)
{
	struct timespec pause = {0, 200 * 1000000L};
	cJSON *ev = NULL;
	char *msg = NULL;
	int status = 0, r;
	pid_t w;

	for (;;) {
		w = waitpid(pid, &status, sub ? WNOHANG : 0);
		if (w == pid)
			return exit_code(status);
		if (w < 0 && errno != EINTR)
			return 126;
		if (sub == NULL)
			continue;
		r = ipc_client_next_event(sub, 200, &ev, &msg);
		if (r == 0 && renewed(ev, id))
			refresh_file(c, ic, tf, id);
		else if (r != 0 && r != ERR_TIMEOUT)
			nanosleep(&pause, NULL); /* dropped: poll the child */
		cJSON_Delete(ev);
		free(msg);
		ev = NULL;
		msg = NULL;
	}
}

/* A subscription for the token file, from the events after now. */
static struct ipc_client *subscribe_tokens(struct cli *c)
{
	struct ipc_client *sub = NULL;
	cJSON *res = NULL;
	char *msg = NULL;

	if (ipc_client_connect(c->socket, &sub) != 0 ||
	    ipc_client_call(sub, "subscribe", NULL, c->timeout_ms, &res,
	                    &msg) != 0) {
		ipc_client_close(sub);
		sub = NULL;
	}
	cJSON_Delete(res);
	free(msg);
	return sub;
}

struct run_opts {
	long long ttl;
	int token_file;
	char **argv; /* the command */
};

/* REF [--min-ttl S] [--token-file] -- CMD [ARG]... */
static int run_args(int argc, char **argv, struct run_opts *o)
{
	int i = 1;

	o->ttl = 60;
	o->token_file = 0;
	while (i < argc && strcmp(argv[i], "--") != 0) {
		if (strcmp(argv[i], "--token-file") == 0) {
			o->token_file = 1;
			i++;
		} else if (strcmp(argv[i], "--min-ttl") == 0 && i + 1 < argc &&
		           (o->ttl = seconds_arg(argv[i + 1], 0, 86400)) >= 0) {
			i += 2;
		} else {
			break;
		}
	}
	if (i >= argc || strcmp(argv[i], "--") != 0 || i + 1 >= argc)
		return cli_usage_err("run: expected REF [--min-ttl S] "
		                     "[--token-file] -- CMD [ARG]...",
		                     NULL);
	o->argv = argv + i + 1;
	return EXIT_OK;
}

/* The child's environment; with a token file, the file and its path. */
static int child_env(struct cli *c, const cJSON *res, const struct run_opts *o,
                     struct token_file *tf)
{
	const char *v[5];
	char url[1024];
	int k;

	env_values(c, res, url, sizeof(url), v);
	for (k = 0; k < 5; k++)
		setenv(env_names[k], v[k] ? v[k] : "", 1);
	if (!o->token_file)
		return EXIT_OK;
	if (token_file_open(tf) != EXIT_OK ||
	    token_file_write(tf, v[2] ? v[2] : "") != EXIT_OK)
		return EXIT_ERROR;
	setenv("HOPX_SANDBOX_TOKEN_FILE", tf->path, 1);
	return EXIT_OK;
}

/*
 * run REF [--min-ttl S] [--token-file] -- CMD...: runs CMD with the
 * sandbox's variables while holding a lease on it (never paused for
 * idleness, its deadline re-armed), and exits with CMD's code. With
 * --token-file the token is also in a 0600 file that is rewritten at
 * every renewal while CMD runs (for processes that outlive a token).
 */
int run_run(struct cli *c, int argc, char **argv)
{
	struct ipc_client *ic = NULL, *sub = NULL;
	struct token_file tf = {"", ""};
	struct run_opts o = {60, 0, NULL};
	cJSON *res = NULL;
	pid_t pid;
	int r;

	if ((r = run_args(argc, argv, &o)) != EXIT_OK ||
	    (r = cli_connect(c, &ic)) != EXIT_OK)
		return r;
	c->timeout_ms = API_TIMEOUT_MS;
	r = cli_call_on(c, ic, "lease", cli_ref_params(argv[0]), &res);
	cJSON_Delete(res);
	if (r == EXIT_OK && o.token_file)
		sub = subscribe_tokens(c); /* before the token: none missed */
	if (r == EXIT_OK)
		r = cli_call_on(c, ic, "token",
		                token_params(argv[0], o.ttl, 1, NULL), &res);
	if (r == EXIT_OK)
		r = child_env(c, res, &o, &tf);
	if (r == EXIT_OK) {
		pid = spawn(o.argv);
		r = pid < 0 ? 126
		            : wait_child(c, pid, ic, sub, &tf,
		                         cli_str(res, "id"));
	}
	token_file_remove(&tf);
	cJSON_Delete(res);
	ipc_client_close(sub);
	ipc_client_close(ic); /* the lease ends with the connection */
	return r;
}

/* ---- reconcile, wait ---- */

static void print_report(const cJSON *rep)
{
	const cJSON *sum = cJSON_GetObjectItem(rep, "summary"), *e;

	printf("reconcile (%s): %d checked, %d unchanged, %d errors, %d "
	       "requests in %d ms\n",
	       cJSON_GetStringValue(cJSON_GetObjectItem(rep, "trigger")),
	       cli_int(sum, "checked"), cli_int(sum, "unchanged"),
	       cli_int(sum, "errors"), cli_int(rep, "requests"),
	       cli_int(rep, "duration_ms"));
	cJSON_ArrayForEach(e, cJSON_GetObjectItem(rep, "sandboxes"))
	{
		const char *err =
		        cJSON_GetStringValue(cJSON_GetObjectItem(e, "message"));

		printf("%s\t%s -> %s\t%s%s%s\n",
		       cJSON_GetStringValue(cJSON_GetObjectItem(e, "id")),
		       cJSON_GetStringValue(cJSON_GetObjectItem(e, "before")),
		       cJSON_GetStringValue(cJSON_GetObjectItem(e, "after")),
		       cJSON_GetStringValue(cJSON_GetObjectItem(e, "action")),
		       err ? "\t" : "", err ? err : "");
	}
}

int run_reconcile(struct cli *c, int argc, char **argv)
{
	cJSON *p = cJSON_CreateObject(), *res = NULL;
	int r;

	if (argc == 1 && strcmp(argv[0], "--last") == 0) {
		cJSON_AddTrueToObject(p, "last");
	} else if (argc > 0) {
		cJSON_Delete(p);
		return cli_usage_err("reconcile: unexpected argument", argv[0]);
	}
	c->timeout_ms = 30 * 60 * 1000;
	if ((r = cli_call(c, "reconcile", p, &res)) == EXIT_OK)
		c->json ? cli_print_json(c, res) : print_report(res);
	cJSON_Delete(res);
	return r;
}

int run_wait(struct cli *c, int argc, char **argv)
{
	cJSON *p = cli_ref_params(argv[0]);
	long long t = 300;
	int i, r = 0;

	for (i = 1; i < argc && r == 0; i++) {
		if (strcmp(argv[i], "--for") == 0 && i + 1 < argc)
			json_add_str(p, "status", argv[++i]);
		else if (strcmp(argv[i], "--timeout") == 0 && i + 1 < argc &&
		         (t = seconds_arg(argv[++i], 0, 86400)) >= 0)
			continue;
		else
			r = cli_usage_err("wait: expected --for STATUS "
			                  "[--timeout S] at",
			                  argv[i]);
	}
	if (r == 0 && cJSON_GetObjectItem(p, "status") == NULL)
		r = cli_usage_err("wait: --for STATUS is required", NULL);
	if (r != 0) {
		cJSON_Delete(p);
		return r;
	}
	json_add_i64(p, "timeout_s", t);
	c->timeout_ms = (int)(t + 30) * 1000;
	return cli_call_record(c, "wait", p);
}
