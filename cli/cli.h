#ifndef HOPXD_CLI_H
#define HOPXD_CLI_H

/* Shared by hopxctl's files: global options, exit codes, helpers. */

#include <cjson/cJSON.h>
#include <stdint.h>

/* Exit codes (README "Exit codes"; stable for scripts). */
enum exit_code {
	EXIT_OK = 0,
	EXIT_ERROR = 1,
	EXIT_USAGE = 2,
	EXIT_AUTH = 3,
	EXIT_NOTFOUND = 4,
	EXIT_TIMEOUT = 5,
	EXIT_NETWORK = 6,
	EXIT_RATE = 7,
	EXIT_NOAGENT = 8,
	EXIT_STATE = 9,
};

struct cli {
	char socket[108];
	int json;
	int tty;        /* stdout is a terminal: aligned table with a header */
	int colour;     /* a terminal and no NO_COLOR */
	int width;      /* columns to fit (terminal) */
	int64_t now_ms; /* relative times are relative to this */
	int timeout_ms;
};

/*
 * Sends one request to the agent and returns the exit code; on success
 * *result is the reply's result (caller deletes). Errors are printed.
 */
int cli_call(struct cli *c, const char *method, cJSON *params, cJSON **result);

struct ipc_client;

/* Connects to the agent; EXIT_OK, or the exit code (said on stderr). */
int cli_connect(const struct cli *c, struct ipc_client **ic);

/* cli_call on a connection the caller keeps (a lease lives with it). */
int cli_call_on(struct cli *c, struct ipc_client *ic, const char *method,
                cJSON *params, cJSON **result);

/* A string member of o, or "-" when absent or not a string. */
const char *cli_str(const cJSON *o, const char *key);

/* A number member of o as an int, 0 when absent. */
int cli_int(const cJSON *o, const char *key);

/* Exit code for an ERR_* code from the agent. */
int cli_exit_code(int err);

/* Prints JSON on stdout (pretty on a terminal, one line otherwise). */
void cli_print_json(const struct cli *c, const cJSON *j);

/* Prints sandboxes as a table (terminal) or tab-separated columns. */
void cli_print_sandboxes(const struct cli *c, const cJSON *arr, int quiet);

/* Prints one sandbox as "key value" lines (times also relative on a
 * terminal). */
void cli_print_sandbox(const struct cli *c, const cJSON *sb);

/* Prints "hopxctl: MSG ARG" on stderr and returns EXIT_USAGE. */
int cli_usage_err(const char *msg, const char *arg);

/* {"ref": ref}: the parameters of most per-sandbox methods. */
cJSON *cli_ref_params(const char *ref);

/* Calls a method whose result is one record and prints it. */
int cli_call_record(struct cli *c, const char *method, cJSON *params);

/* Prints one event as one line. */
void cli_print_event(const struct cli *c, const cJSON *ev);

#endif
