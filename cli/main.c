/*
 * hopxctl: a thin, blocking client of hopxd. It parses arguments, sends a
 * request over the agent's socket and prints the answer. Commands are rows
 * of cmd_table; generic code checks argument counts before a handler runs.
 */
#include "config.h"

#include "cli.h"
#include "clock.h"
#include "commands.h"
#include "fmt.h"
#include "err.h"
#include "ipc_client.h"
#include "paths.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct cmd {
	const char *name;
	const char *args;
	const char *summary;
	int min_args;
	int max_args;
	int (*run)(struct cli *c, int argc, char **argv);
};

static int run_help(struct cli *c, int argc, char **argv);
static int run_version(struct cli *c, int argc, char **argv);

/* Keep sorted by name: looked up with bsearch. */
static const struct cmd cmd_table[] = {
        {"attach", "ID [--name N] [--label K=V]... [--no-resume]",
         "track a HopX sandbox (resumed unless --no-resume)", 1, 64,
         run_attach},
        {"create",
         "--template T [--name N] [--label K=V]... [--timeout S] "
         "[--region R] [--env K=V]...",
         "create a sandbox and track it (an existing name returns it)", 2, 128,
         run_create},
        {"detach", "REF", "forget a sandbox locally (HopX is untouched)", 1, 1,
         run_detach},
        {"doctor", "[--api-key-file PATH]",
         "check the setup: socket, agent, API key, API, clock, database", 0, 2,
         run_doctor},
        {"env", "REF", "print shell exports: id, URL, token, socket", 1, 1,
         run_env},
        {"events", "[--since SEQ] [-f]", "show the event log; -f follows it", 0,
         3, run_events},
        {"export", "[--with-tokens] [-o FILE]",
         "write the registry as JSON (tokens only to a 0600 file or a pipe)", 0,
         3, run_export},
        {"help", "[COMMAND]", "show help for hopxctl or a command", 0, 1,
         run_help},
        {"import", "FILE",
         "attach every sandbox of an export (names kept where free)", 1, 1,
         run_import},
        {"keepalive", "REF SECONDS|off",
         "keep the sandbox alive: re-arm its timeout before it runs out", 2, 2,
         run_keepalive},
        {"kill", "REF", "delete the sandbox at HopX (the record stays, gone)",
         1, 1, run_kill},
        {"label", "REF KEY=VALUE... [--rm KEY]...", "set or remove labels", 2,
         64, run_label},
        {"list", "[--status S] [--label K[=V]] [-q]", "same as ls", 0, 5,
         run_ls},
        {"ls", "[--status S] [--label K[=V]] [-q]",
         "list tracked sandboxes (-q: ids only)", 0, 5, run_ls},
        {"metrics", "", "print the agent's metrics (Prometheus text format)", 0,
         0, run_metrics},
        {"pause", "REF", "pause the sandbox", 1, 1, run_pause},
        {"policy", "REF [--auto-resume on|off] [--pause-on-shutdown on|off]",
         "show or change the sandbox's policies", 1, 5, run_policy},
        {"proxy", "REF --listen 127.0.0.1:PORT | --unix PATH",
         "serve the sandbox's own agent API on a local address (the agent "
         "puts in the token) until interrupted",
         3, 3, run_proxy},
        {"reconcile", "[--last]",
         "check every sandbox with HopX now and print the report", 0, 1,
         run_reconcile},
        {"rename", "REF NAME|--clear", "set or clear a local name", 2, 2,
         run_rename},
        {"resume", "REF", "resume the sandbox and renew its token", 1, 1,
         run_resume},
        {"run", "REF [--min-ttl S] [--token-file] -- CMD [ARG]...",
         "run CMD with the sandbox's variables (see env)", 3, 4096, run_run},
        {"show", "REF", "show one sandbox", 1, 1, run_show},
        {"start", "REF", "start a stopped sandbox", 1, 1, run_start},
        {"status", "", "show the agent's state", 0, 0, run_status},
        {"stop", "REF", "stop the sandbox (if HopX still offers it)", 1, 1,
         run_stop},
        {"timeout", "REF SECONDS", "set HopX's kill deadline to now + SECONDS",
         2, 2, run_timeout},
        {"token", "REF [--min-ttl S] [--rejected TOKEN]",
         "print a token valid for at least S seconds", 1, 5, run_token},
        {"version", "", "show the version of hopxctl", 0, 0, run_version},
        {"wait", "REF --for STATUS [--timeout S]",
         "wait until the sandbox has STATUS", 3, 5, run_wait},
};

#define CMD_COUNT (sizeof(cmd_table) / sizeof(cmd_table[0]))

static int cmd_compare(const void *key, const void *elem)
{
	return strcmp(key, ((const struct cmd *)elem)->name);
}

static const struct cmd *cmd_find(const char *name)
{
	return bsearch(name, cmd_table, CMD_COUNT, sizeof(cmd_table[0]),
	               cmd_compare);
}

static void usage(FILE *f)
{
	size_t i;

	fprintf(f, "Usage: hopxctl [--socket PATH] [--json] COMMAND [ARG]...\n"
	           "Query and drive the hopxd agent. REF is a sandbox id or "
	           "local name.\n\nCommands:\n");
	for (i = 0; i < CMD_COUNT; i++)
		fprintf(f, "  %-8s %s\n", cmd_table[i].name,
		        cmd_table[i].summary);
	fprintf(f,
	        "\nOptions:\n"
	        "  --socket PATH  agent socket (env HOPXD_SOCKET; default as "
	        "hopxd)\n"
	        "  --json         print JSON for tools\n"
	        "  -h, --help     show this help (COMMAND --help: its own)\n"
	        "  -V, --version  show the version\n"
	        "\nExit codes: 0 ok, 1 error, 2 usage, 3 auth, 4 not found, "
	        "5 timeout,\n6 network/API unavailable, 7 rate limited, "
	        "8 agent not running, 9 wrong state.\n");
}

static int run_help(struct cli *c, int argc, char **argv)
{
	const struct cmd *cmd;

	(void)c;
	if (argc == 0) {
		usage(stdout);
		return EXIT_OK;
	}
	if ((cmd = cmd_find(argv[0])) == NULL) {
		fprintf(stderr, "hopxctl: unknown command '%s'\n", argv[0]);
		return EXIT_USAGE;
	}
	printf("Usage: hopxctl %s %s\n%s\n", cmd->name, cmd->args,
	       cmd->summary);
	return EXIT_OK;
}

static int run_version(struct cli *c, int argc, char **argv)
{
	(void)c;
	(void)argc;
	(void)argv;
	printf("hopxctl %s\n", HOPXD_VERSION);
	return EXIT_OK;
}

int cli_exit_code(int err)
{
	switch (err) {
	case 0:
		return EXIT_OK;
	case ERR_INVAL:
	case ERR_PARSE:
	case ERR_TYPE:
		return EXIT_USAGE;
	case ERR_AUTH:
		return EXIT_AUTH;
	case ERR_NOTFOUND:
		return EXIT_NOTFOUND;
	case ERR_TIMEOUT:
		return EXIT_TIMEOUT;
	case ERR_NET:
	case ERR_UNAVAIL:
	case ERR_BADRESP:
		return EXIT_NETWORK;
	case ERR_RATE:
		return EXIT_RATE;
	case ERR_STATE:
	case ERR_CONFLICT:
		return EXIT_STATE;
	default:
		return EXIT_ERROR;
	}
}

static int not_running(const struct cli *c, int r)
{
	if (r == ERR_PERM)
		fprintf(stderr, "hopxctl: permission denied on %s\n",
		        c->socket);
	else
		fprintf(stderr,
		        "hopxctl: hopxd is not running (no agent at %s)\n"
		        "Start it with 'systemctl --user start hopxd' or run "
		        "'hopxd' in a terminal.\n",
		        c->socket);
	return EXIT_NOAGENT;
}

int cli_connect(const struct cli *c, struct ipc_client **ic)
{
	int r = ipc_client_connect(c->socket, ic);

	return r == 0 ? EXIT_OK : not_running(c, r);
}

int cli_call(struct cli *c, const char *method, cJSON *params, cJSON **result)
{
	struct ipc_client *ic = NULL;
	int r = cli_connect(c, &ic);

	*result = NULL;
	if (r != EXIT_OK) {
		cJSON_Delete(params);
		return r;
	}
	r = cli_call_on(c, ic, method, params, result);
	ipc_client_close(ic);
	return r;
}

int cli_call_on(struct cli *c, struct ipc_client *ic, const char *method,
                cJSON *params, cJSON **result)
{
	char *msg = NULL;
	int r, lost;

	*result = NULL;
	r = ipc_client_call(ic, method, params, c->timeout_ms, result, &msg);

	/* With a message, the agent said it (HopX unreachable is "network"):
	 * without, the connection to the agent itself failed. */
	lost = (r == ERR_NET || r == ERR_PROTO) && msg == NULL;
	if (lost)
		fprintf(stderr, "hopxctl: lost the connection to hopxd\n");
	else if (r != 0)
		fprintf(stderr, "hopxctl: %s\n", msg ? msg : err_str(r));
	free(msg);
	return lost ? EXIT_NOAGENT : cli_exit_code(r);
}

/* Consumes global options; returns the index of the command or -exit. */
static int parse_globals(struct cli *c, int argc, char **argv)
{
	int i;

	for (i = 1; i < argc && argv[i][0] == '-'; i++) {
		if (strcmp(argv[i], "--json") == 0) {
			c->json = 1;
		} else if (strcmp(argv[i], "--socket") == 0 && i + 1 < argc) {
			if (strlen(argv[++i]) >= sizeof(c->socket)) {
				fprintf(stderr, "hopxctl: socket path too "
				                "long\n");
				return -EXIT_USAGE - 100;
			}
			snprintf(c->socket, sizeof(c->socket), "%s", argv[i]);
		} else if (strcmp(argv[i], "-h") == 0 ||
		           strcmp(argv[i], "--help") == 0) {
			usage(stdout);
			return -EXIT_OK - 100;
		} else if (strcmp(argv[i], "-V") == 0 ||
		           strcmp(argv[i], "--version") == 0) {
			return -run_version(c, 0, NULL) - 100;
		} else {
			fprintf(stderr, "hopxctl: unknown option '%s'\n",
			        argv[i]);
			return -EXIT_USAGE - 100;
		}
	}
	return i;
}

/* --help anywhere before "--" (after it, the words are run's command). */
static int has_help(int argc, char **argv)
{
	int i;

	for (i = 0; i < argc && strcmp(argv[i], "--") != 0; i++)
		if (strcmp(argv[i], "--help") == 0 ||
		    strcmp(argv[i], "-h") == 0)
			return 1;
	return 0;
}

int main(int argc, char **argv)
{
	struct cli c;
	const struct cmd *cmd;
	int i, nargs;

	memset(&c, 0, sizeof(c));
	c.timeout_ms = 30000;
	c.tty = isatty(STDOUT_FILENO);
	c.colour = fmt_colour_on(c.tty, getenv("NO_COLOR"));
	c.width = fmt_width(STDOUT_FILENO, getenv("COLUMNS"));
	c.now_ms = clock_wall_ms(clock_system());
	if ((i = parse_globals(&c, argc, argv)) < 0)
		return -(i + 100);
	if (c.socket[0] == '\0' && paths_socket(c.socket, sizeof(c.socket))) {
		fprintf(stderr,
		        "hopxctl: socket path too long; use --socket\n");
		return EXIT_USAGE;
	}
	if (i >= argc) {
		usage(stderr);
		return EXIT_USAGE;
	}
	if ((cmd = cmd_find(argv[i])) == NULL) {
		fprintf(stderr,
		        "hopxctl: unknown command '%s'\nTry 'hopxctl help'.\n",
		        argv[i]);
		return EXIT_USAGE;
	}
	nargs = argc - i - 1;
	if (has_help(nargs, argv + i + 1))
		return run_help(&c, 1, argv + i);
	if (nargs < cmd->min_args || nargs > cmd->max_args) {
		fprintf(stderr, "Usage: hopxctl %s %s\n", cmd->name, cmd->args);
		return EXIT_USAGE;
	}
	return cmd->run(&c, nargs, argv + i + 1);
}
