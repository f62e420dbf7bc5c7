/*
 * hopxctl: a thin, blocking client of hopxd. It parses arguments, sends
 * one request over the agent's socket and prints the answer. Commands are
 * rows of cmd_table; generic code checks argument counts before a handler
 * runs.
 */
#include "config.h"

#include "paths.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Exit codes (documented in README and hopxctl --help). */
enum exit_code {
	EXIT_OK = 0,
	EXIT_ERROR = 1,
	EXIT_USAGE = 2,
};

struct cli {
	const char *socket;
	int json;
};

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
        {"help", "[COMMAND]", "show help for hopxctl or a command", 0, 1,
         run_help},
        {"version", "", "show the version of hopxctl", 0, 0, run_version},
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
	           "Query and drive the hopxd agent.\n\nCommands:\n");
	for (i = 0; i < CMD_COUNT; i++)
		fprintf(f, "  %-10s %-12s %s\n", cmd_table[i].name,
		        cmd_table[i].args, cmd_table[i].summary);
	fprintf(f, "\nOptions:\n"
	           "  --socket PATH  agent socket (env HOPXD_SOCKET)\n"
	           "  --json         print JSON for tools\n"
	           "  -h, --help     show this help\n"
	           "  -V, --version  show the version\n"
	           "\nExit codes: 0 ok, 1 error, 2 usage.\n");
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

/* Consumes global options; returns the index of the command or -exit. */
static int parse_globals(struct cli *c, int argc, char **argv)
{
	int i;

	for (i = 1; i < argc && argv[i][0] == '-'; i++) {
		if (strcmp(argv[i], "--json") == 0) {
			c->json = 1;
		} else if (strcmp(argv[i], "--socket") == 0 && i + 1 < argc) {
			c->socket = argv[++i];
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

int main(int argc, char **argv)
{
	struct cli c = {NULL, 0};
	const struct cmd *cmd;
	int i, nargs;

	if ((i = parse_globals(&c, argc, argv)) < 0)
		return -(i + 100);
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
	if (nargs < cmd->min_args || nargs > cmd->max_args) {
		fprintf(stderr, "Usage: hopxctl %s %s\n", cmd->name, cmd->args);
		return EXIT_USAGE;
	}
	return cmd->run(&c, nargs, argv + i + 1);
}
