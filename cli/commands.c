/*
 * hopxctl commands: each parses its own arguments, makes one request (or
 * a few, for paging) and prints. Returns an exit code.
 */
#include "commands.h"

#include "err.h"
#include "fmt.h"
#include "ipc_client.h"
#include "json.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int cli_usage_err(const char *msg, const char *arg)
{
	fprintf(stderr, "hopxctl: %s%s%s\n", msg, arg ? " " : "",
	        arg ? arg : "");
	return EXIT_USAGE;
}

cJSON *cli_ref_params(const char *ref)
{
	cJSON *p = cJSON_CreateObject();

	json_add_str(p, "ref", ref);
	return p;
}

int cli_call_record(struct cli *c, const char *method, cJSON *params)
{
	cJSON *res = NULL;
	int r = cli_call(c, method, params, &res);

	if (r == EXIT_OK)
		c->json ? cli_print_json(c, res) : cli_print_sandbox(c, res);
	cJSON_Delete(res);
	return r;
}

/* A time for a person: relative on a terminal, as sent otherwise. */
static const char *when(const struct cli *c, const char *t, char *buf, size_t n)
{
	if (!c->tty)
		return t;
	fmt_relative(buf, n, t, c->now_ms);
	return buf;
}

/* HopX's clock against this machine's, as the agent measured it. */
static void print_skew(const cJSON *skew)
{
	char d[24];
	double ms = cJSON_IsNumber(skew) ? skew->valuedouble : 0;

	if (!cJSON_IsNumber(skew)) {
		printf("clock     not measured yet (no answer from HopX)\n");
		return;
	}
	if (ms == 0) {
		printf("clock     agrees with HopX's (within a second)\n");
		return;
	}
	fmt_duration(d, sizeof(d), (int64_t)(ms < 0 ? -ms : ms));
	printf("clock     %s %s HopX's; token times follow HopX's clock%s\n", d,
	       ms > 0 ? "behind" : "ahead of",
	       ms >= 5000 || ms <= -5000 ? " (fix: timedatectl set-ntp true)"
	                                 : "");
}

/* A fleet's registry: its state and who else shares it. */
static void print_store(const cJSON *st)
{
	const cJSON *m;

	if (strcmp(cli_str(st, "kind"), "postgresql") != 0)
		return;
	printf("store     PostgreSQL, %s%s%s; %d change(s) to store\n",
	       cli_str(st, "state"),
	       cJSON_GetObjectItem(st, "error") ? ": " : "",
	       cJSON_GetObjectItem(st, "error") ? cli_str(st, "error") : "",
	       cli_int(st, "pending"));
	cJSON_ArrayForEach(m, cJSON_GetObjectItem(st, "members"))
	{
		printf("fleet     %s pid %d, last seen %s%s\n",
		       cli_str(m, "hostname"), cli_int(m, "pid"),
		       cli_str(m, "last_seen"),
		       strcmp(cli_str(m, "host_id"), cli_str(st, "host_id"))
		               ? ""
		               : " (this agent)");
	}
}

static void print_status(const struct cli *c, const cJSON *res)
{
	const cJSON *by = cJSON_GetObjectItem(res, "by_status");
	const cJSON *api = cJSON_GetObjectItem(res, "api");
	const char *err =
	        cJSON_GetStringValue(cJSON_GetObjectItem(api, "error"));
	char up[24], t[32];

	fmt_duration(up, sizeof(up), (int64_t)cli_int(res, "uptime_s") * 1000);
	printf("hopxd %s (pid %d), up %s\n", cli_str(res, "version"),
	       cli_int(res, "pid"), up);
	printf("database  %s\nsocket    %s\n", cli_str(res, "db"),
	       cli_str(res, "socket"));
	print_store(cJSON_GetObjectItem(res, "store"));
	printf("sandboxes %d:", cli_int(res, "sandboxes"));
	for (cJSON *s = by ? by->child : NULL; s; s = s->next)
		if (s->valuedouble > 0)
			printf(" %s %d", s->string, (int)s->valuedouble);
	printf("\nclients   %d connected, %d subscribed\n",
	       cli_int(res, "connections"), cli_int(res, "subscribers"));
	printf("api       %s at %s%s%s\n", cli_str(api, "state"),
	       cli_str(api, "base_url"), err ? ": " : "", err ? err : "");
	if (cJSON_GetObjectItem(api, "budget_per_min"))
		printf("budget    %d of %d requests in the last minute, %d "
		       "queued\n",
		       cli_int(api, "used_last_min"),
		       cli_int(api, "budget_per_min"), cli_int(api, "queued"));
	print_skew(cJSON_GetObjectItem(api, "clock_skew_ms"));
	if (cJSON_GetStringValue(cJSON_GetObjectItem(res, "next_renewal")))
		printf("renewal   next %s\n",
		       when(c, cli_str(res, "next_renewal"), t, sizeof(t)));
	else
		printf("renewal   none due\n");
	printf("reconcile %s\n",
	       cJSON_IsTrue(cJSON_GetObjectItem(res, "reconciling"))
	               ? "running now"
	               : when(c, cli_str(res, "next_reconcile"), t, sizeof(t)));
}

static int store_down(const cJSON *res)
{
	const cJSON *st = cJSON_GetObjectItem(res, "store");

	return strcmp(cli_str(st, "kind"), "postgresql") == 0 &&
	       strcmp(cli_str(st, "state"), "up") != 0;
}

/*
 * status exits 3 when HopX refuses the key, 6 when it or the fleet's
 * database cannot be reached.
 */
int run_status(struct cli *c, int argc, char **argv)
{
	cJSON *res = NULL;
	int r = cli_call(c, "status", NULL, &res);
	const char *api;

	(void)argc;
	(void)argv;
	if (r != EXIT_OK)
		return r;
	if (c->json)
		cli_print_json(c, res);
	else
		print_status(c, res);
	api = cJSON_GetStringValue(
	        cJSON_GetObjectItem(cJSON_GetObjectItem(res, "api"), "state"));
	if (api && strcmp(api, "auth_error") == 0)
		r = EXIT_AUTH;
	else if (api && strcmp(api, "unreachable") == 0)
		r = EXIT_NETWORK;
	else if (store_down(res))
		r = EXIT_NETWORK;
	cJSON_Delete(res);
	return r;
}

/* The exposition as the agent wrote it (--json: the method's answer). */
int run_metrics(struct cli *c, int argc, char **argv)
{
	cJSON *res = NULL;
	int r = cli_call(c, "metrics", NULL, &res);

	(void)argc;
	(void)argv;
	if (r != EXIT_OK)
		return r;
	if (c->json)
		cli_print_json(c, res);
	else
		fputs(cli_str(res, "text") ? cli_str(res, "text") : "", stdout);
	cJSON_Delete(res);
	return EXIT_OK;
}

struct ls_opts {
	const char *status;
	const char *label;
	int quiet;
};

static int ls_args(int argc, char **argv, struct ls_opts *o)
{
	int i;

	memset(o, 0, sizeof(*o));
	for (i = 0; i < argc; i++) {
		if (strcmp(argv[i], "-q") == 0 ||
		    strcmp(argv[i], "--quiet") == 0)
			o->quiet = 1;
		else if (strcmp(argv[i], "--status") == 0 && i + 1 < argc)
			o->status = argv[++i];
		else if (strcmp(argv[i], "--label") == 0 && i + 1 < argc)
			o->label = argv[++i];
		else
			return cli_usage_err("ls: unexpected argument",
			                     argv[i]);
	}
	return 0;
}

static cJSON *ls_params(const struct ls_opts *o, const char *after)
{
	cJSON *p = cJSON_CreateObject();

	json_add_i64(p, "limit", 1000);
	if (o->status)
		json_add_str(p, "status", o->status);
	if (o->label)
		json_add_str(p, "label", o->label);
	if (after[0])
		json_add_str(p, "after", after);
	return p;
}

/* What ls does with each record as its page arrives (takes it). */
typedef void (*ls_item_fn)(cJSON *item, void *ud);

/* Fetches every page, handing each record to fn. */
static int ls_fetch(struct cli *c, const struct ls_opts *o, ls_item_fn fn,
                    void *ud)
{
	char after[256] = "";
	cJSON *res, *arr, *p, *sb;
	const char *next;
	int r;

	do {
		p = ls_params(o, after);
		if ((r = cli_call(c, "list", p, &res)) != EXIT_OK)
			return r;
		arr = cJSON_GetObjectItem(res, "sandboxes");
		while ((sb = cJSON_DetachItemFromArray(arr, 0)) != NULL)
			fn(sb, ud);
		next = cJSON_GetStringValue(
		        cJSON_GetObjectItem(res, "next_after"));
		snprintf(after, sizeof(after), "%s", next ? next : "");
		cJSON_Delete(res);
	} while (after[0]);
	return EXIT_OK;
}

static void ls_collect(cJSON *item, void *ud)
{
	cJSON_AddItemToArray(ud, item);
}

/*
 * One page's records as the agent wrote them: the text between
 * {"id":N,"result":{"sandboxes":[ and ],"next_after":X}}, and X. 0, or
 * -1 when the line is not laid out that way.
 */
static int page_parts(const char *line, size_t len, const char **items,
                      size_t *n, char *next, size_t nn)
{
	static const char head[] = "{\"sandboxes\":[";
	static const char mid[] = "],\"next_after\":";
	const char *p = memchr(line, ':', len), *end = line + len, *m;
	size_t hl = sizeof(head) - 1, ml = sizeof(mid) - 1;

	/* past "id":N, to "result": */
	p = p ? memchr(p + 1, ':', (size_t)(end - p - 1)) : NULL;
	if (p == NULL || (size_t)(end - p - 1) < hl + ml + 2 ||
	    memcmp(p + 1, head, hl) != 0 || end[-1] != '}' || end[-2] != '}')
		return -1;
	for (m = end - 2; m > p && memcmp(m, mid, ml) != 0; m--)
		;
	if (m <= p)
		return -1;
	*items = p + 1 + hl;
	*n = (size_t)(m - *items);
	m += ml;
	if (*m == '"' && end - m - 3 > 0 && (size_t)(end - m - 3) < nn) {
		memcpy(next, m + 1, (size_t)(end - m - 4));
		next[end - m - 4] = '\0';
	} else if (strncmp(m, "null}}", 6) == 0) {
		next[0] = '\0';
	} else {
		return -1;
	}
	return 0;
}

/*
 * --json into a pipe: the records go out as the agent wrote them, page
 * by page over one connection, never parsed (parsing and printing every
 * record made ls several times slower than sqlite3 -json).
 */
static int ls_pipe(struct cli *c, const struct ls_opts *o)
{
	struct ipc_client *ic = NULL;
	char after[256] = "", *msg = NULL;
	const char *line, *items;
	size_t len, n;
	int r, printed = 0;

	if ((r = cli_connect(c, &ic)) != EXIT_OK)
		return r;
	do {
		r = ipc_client_call_text(ic, "list", ls_params(o, after),
		                         c->timeout_ms, &line, &len, &msg);
		if (r == 0 && page_parts(line, len, &items, &n, after,
		                         sizeof(after)) != 0)
			r = ERR_PROTO;
		if (r != 0)
			break;
		if (n)
			fputs(printed++ ? "," : "[", stdout);
		fwrite(items, 1, n, stdout);
	} while (after[0]);
	/* What came stays valid JSON; the exit code says if it is cut. */
	puts(printed ? "]" : "[]");
	ipc_client_close(ic);
	if (r != 0)
		fprintf(stderr, "hopxctl: %s\n", msg ? msg : err_str(r));
	free(msg);
	return r == 0 ? EXIT_OK : cli_exit_code(r);
}

int run_ls(struct cli *c, int argc, char **argv)
{
	struct ls_opts o;
	cJSON *all;
	int r;

	if ((r = ls_args(argc, argv, &o)) != 0)
		return r;
	if (c->json && !o.quiet && !c->tty)
		return ls_pipe(c, &o);
	all = cJSON_CreateArray();
	if ((r = ls_fetch(c, &o, ls_collect, all)) == EXIT_OK) {
		if (c->json && !o.quiet)
			cli_print_json(c, all);
		else
			cli_print_sandboxes(c, all, o.quiet);
	}
	cJSON_Delete(all);
	return r;
}

int run_show(struct cli *c, int argc, char **argv)
{
	(void)argc;
	return cli_call_record(c, "show", cli_ref_params(argv[0]));
}

/* label REF k=v... [--rm k]... */
static int label_params(int argc, char **argv, cJSON *set, cJSON *unset)
{
	int i;

	for (i = 1; i < argc; i++) {
		char *eq = strchr(argv[i], '=');

		if (strcmp(argv[i], "--rm") == 0 && i + 1 < argc) {
			cJSON_AddItemToArray(unset,
			                     cJSON_CreateString(argv[++i]));
		} else if (eq && eq != argv[i]) {
			*eq = '\0';
			json_add_str(set, argv[i], eq + 1);
			*eq = '=';
		} else {
			return cli_usage_err(
			        "label: expected KEY=VALUE or --rm "
			        "KEY, got",
			        argv[i]);
		}
	}
	if (cJSON_GetArraySize(set) + cJSON_GetArraySize(unset) == 0)
		return cli_usage_err("label: nothing to change", NULL);
	return 0;
}

int run_label(struct cli *c, int argc, char **argv)
{
	cJSON *p = cli_ref_params(argv[0]);
	cJSON *set = cJSON_AddObjectToObject(p, "set");
	cJSON *unset = cJSON_AddArrayToObject(p, "unset");
	int r = label_params(argc, argv, set, unset);

	if (r != 0) {
		cJSON_Delete(p);
		return r;
	}
	return cli_call_record(c, "label", p);
}

int run_rename(struct cli *c, int argc, char **argv)
{
	cJSON *p = cli_ref_params(argv[0]);

	(void)argc;
	if (strcmp(argv[1], "--clear") == 0)
		cJSON_AddNullToObject(p, "name");
	else
		json_add_str(p, "name", argv[1]);
	return cli_call_record(c, "rename", p);
}

int run_detach(struct cli *c, int argc, char **argv)
{
	cJSON *res = NULL;
	int r = cli_call(c, "detach", cli_ref_params(argv[0]), &res);

	(void)argc;
	if (r == EXIT_OK && c->json)
		cli_print_json(c, res);
	else if (r == EXIT_OK)
		printf("detached %s (the sandbox itself is untouched)\n",
		       cJSON_GetStringValue(cJSON_GetObjectItem(res, "id")));
	cJSON_Delete(res);
	return r;
}

static int events_args(int argc, char **argv, long long *since, int *follow)
{
	char *end;
	int i;

	*since = -1;
	*follow = 0;
	for (i = 0; i < argc; i++) {
		if (strcmp(argv[i], "-f") == 0 ||
		    strcmp(argv[i], "--follow") == 0) {
			*follow = 1;
		} else if (strcmp(argv[i], "--since") == 0 && i + 1 < argc) {
			*since = strtoll(argv[++i], &end, 10);
			if (*end != '\0' || *since < 0)
				return cli_usage_err("events: --since takes a "
				                     "sequence number, not",
				                     argv[i]);
		} else {
			return cli_usage_err("events: unexpected argument",
			                     argv[i]);
		}
	}
	return 0;
}

/* Prints stored events after since, page by page. */
static int events_list(struct cli *c, long long since)
{
	cJSON *p, *res, *ev, *arr;
	int r, n;

	do {
		p = cJSON_CreateObject();
		json_add_i64(p, "since", since < 0 ? 0 : since);
		json_add_i64(p, "limit", 1000);
		if ((r = cli_call(c, "events", p, &res)) != EXIT_OK)
			return r;
		arr = cJSON_GetObjectItem(res, "events");
		n = cJSON_GetArraySize(arr);
		cJSON_ArrayForEach(ev, arr)
		{
			cli_print_event(c, ev);
			since = (long long)cJSON_GetNumberValue(
			        cJSON_GetObjectItem(ev, "seq"));
		}
		cJSON_Delete(res);
	} while (n == 1000);
	return EXIT_OK;
}

/* Subscribes and prints events as they come, until the agent goes. */
static int events_follow(struct cli *c, long long since)
{
	struct ipc_client *ic = NULL;
	cJSON *p = cJSON_CreateObject(), *res = NULL, *ev = NULL;
	char *msg = NULL;
	int r;

	if (since >= 0)
		json_add_i64(p, "since", since);
	if ((r = ipc_client_connect(c->socket, &ic)) != 0) {
		cJSON_Delete(p);
		return cli_call(c, "hello", NULL, &res); /* prints why */
	}
	r = ipc_client_call(ic, "subscribe", p, c->timeout_ms, &res, &msg);
	cJSON_Delete(res);
	while (r == 0 && (r = ipc_client_next_event(ic, -1, &ev, &msg)) == 0) {
		cli_print_event(c, ev);
		cJSON_Delete(ev);
	}
	if (r != 0)
		fprintf(stderr, "hopxctl: %s\n", msg ? msg : err_str(r));
	ipc_client_close(ic);
	r = r == ERR_NET && msg == NULL ? -1 : r;
	free(msg);
	return r == -1 ? EXIT_NOAGENT : cli_exit_code(r);
}

int run_events(struct cli *c, int argc, char **argv)
{
	long long since;
	int follow, r;

	if ((r = events_args(argc, argv, &since, &follow)) != 0)
		return r;
	return follow ? events_follow(c, since) : events_list(c, since);
}
