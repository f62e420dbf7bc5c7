/* hopxctl output: JSON for tools, tables for people, plain when piped. */
#include "cli.h"
#include "fmt.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void cli_print_json(const struct cli *c, const cJSON *j)
{
	char *text = c->tty ? cJSON_Print(j) : cJSON_PrintUnformatted(j);

	if (text) {
		puts(text);
		free(text);
	}
}

const char *cli_str(const cJSON *o, const char *key)
{
	const char *v =
	        cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(o, key));

	return v ? v : "-";
}

int cli_int(const cJSON *o, const char *key)
{
	return (int)cJSON_GetNumberValue(
	        cJSON_GetObjectItemCaseSensitive(o, key));
}

/* "k=v,k2=v2" of the labels object into out. */
static void labels_text(const cJSON *sb, char *out, size_t n)
{
	const cJSON *l;
	size_t used = 0;

	out[0] = '\0';
	cJSON_ArrayForEach(l, cJSON_GetObjectItem(sb, "labels"))
	{
		int w = snprintf(out + used, n - used, "%s%s=%s",
		                 used ? "," : "", l->string,
		                 cJSON_GetStringValue(l));

		if (w < 0 || (size_t)w >= n - used)
			break;
		used += (size_t)w;
	}
	if (used == 0)
		snprintf(out, n, "-");
}

static void status_text(const cJSON *sb, char *out, size_t n)
{
	snprintf(out, n, "%s%s", cli_str(sb, "status"),
	         cJSON_IsTrue(cJSON_GetObjectItem(sb, "stale")) ? " (stale)"
	                                                        : "");
}

/* For people: a paused sandbox that the next token resumes says so. */
static const char *wake_note(const cJSON *sb)
{
	const cJSON *pol = cJSON_GetObjectItem(sb, "policy");

	return strcmp(cli_str(sb, "status"), "paused") == 0 &&
	                       cJSON_IsTrue(
	                               cJSON_GetObjectItem(pol, "auto_resume"))
	               ? " (wakes on use)"
	               : "";
}

/* One table row for a person: relative times, labels cut to fit. */
struct row {
	const char *id, *name;
	char status[32], since[24], expires[24], token[24], labels[512];
};

static void row_fill(const struct cli *c, const cJSON *sb, struct row *r)
{
	r->id = cli_str(sb, "id");
	r->name = cli_str(sb, "name");
	status_text(sb, r->status, sizeof(r->status));
	if (*wake_note(sb))
		snprintf(r->status + strlen(r->status),
		         sizeof(r->status) - strlen(r->status), ", wakes");
	fmt_relative(r->since, sizeof(r->since), cli_str(sb, "status_since"),
	             c->now_ms);
	fmt_relative(r->expires, sizeof(r->expires), cli_str(sb, "expires_at"),
	             c->now_ms);
	fmt_relative(r->token, sizeof(r->token),
	             cli_str(sb, "token_expires_at"), c->now_ms);
	labels_text(sb, r->labels, sizeof(r->labels));
}

/* Column widths of the text columns; times are at most 12 ("in 999d"). */
struct widths {
	int id, name, status;
};

#define NAME_MAX_W 24
#define TIME_W     9

static void widths_of(const cJSON *arr, struct widths *w)
{
	const cJSON *sb;

	*w = (struct widths){2, 4, 6};
	cJSON_ArrayForEach(sb, arr)
	{
		int id = (int)strlen(cli_str(sb, "id"));
		int name = (int)strlen(cli_str(sb, "name"));
		char st[32];

		status_text(sb, st, sizeof(st));
		w->id = id > w->id ? id : w->id;
		w->name = name > w->name ? name : w->name;
		if ((int)strlen(st) > w->status)
			w->status = (int)strlen(st);
	}
	if (w->name > NAME_MAX_W)
		w->name = NAME_MAX_W;
}

static void print_row(const struct cli *c, const struct widths *w,
                      struct row *r, const char *colour)
{
	int used = w->id + w->name + w->status + 3 * TIME_W + 5;
	char name[NAME_MAX_W + 1];

	snprintf(name, sizeof(name), "%s", r->name);
	fmt_fit(name, (size_t)w->name);
	fmt_fit(r->labels, (size_t)(c->width - used > 6 ? c->width - used : 6));
	printf("%-*s %-*s %s%-*s%s %-*s %-*s %-*s %s\n", w->id, r->id, w->name,
	       name, c->colour ? colour : "", w->status, r->status,
	       c->colour && *colour ? FMT_RESET : "", TIME_W - 1, r->since,
	       TIME_W - 1, r->expires, TIME_W - 1, r->token, r->labels);
}

static void print_table(const struct cli *c, const cJSON *arr)
{
	struct widths w;
	struct row r = {.id = "ID", .name = "NAME"};
	const cJSON *sb;

	widths_of(arr, &w);
	snprintf(r.status, sizeof(r.status), "STATUS");
	snprintf(r.since, sizeof(r.since), "SINCE");
	snprintf(r.expires, sizeof(r.expires), "EXPIRES");
	snprintf(r.token, sizeof(r.token), "TOKEN");
	snprintf(r.labels, sizeof(r.labels), "LABELS");
	print_row(c, &w, &r, "");
	cJSON_ArrayForEach(sb, arr)
	{
		row_fill(c, sb, &r);
		print_row(c, &w, &r, fmt_status_colour(cli_str(sb, "status")));
	}
}

/* Into a pipe: tab-separated, absolute times (scripts parse this). */
void cli_print_sandboxes(const struct cli *c, const cJSON *arr, int quiet)
{
	const cJSON *sb;
	char labels[512], status[32];

	if (c->tty && !quiet) {
		print_table(c, arr);
		return;
	}
	cJSON_ArrayForEach(sb, arr)
	{
		if (quiet) {
			puts(cli_str(sb, "id"));
			continue;
		}
		labels_text(sb, labels, sizeof(labels));
		status_text(sb, status, sizeof(status));
		printf("%s\t%s\t%s\t%s\t%s\n", cli_str(sb, "id"),
		       cli_str(sb, "name"), status, cli_str(sb, "expires_at"),
		       labels);
	}
}

/* "key value", and on a terminal a time also says how far it is. */
static void print_field(const struct cli *c, const char *key, const char *v,
                        int is_time)
{
	char rel[32];

	if (!c->tty || !is_time || strcmp(v, "-") == 0) {
		printf("%-17s %s\n", key, v);
		return;
	}
	fmt_relative(rel, sizeof(rel), v, c->now_ms);
	printf("%-17s %s (%s)\n", key, v, rel);
}

/* Who holds the sandbox in use (show only), one line each. */
static void print_leases(const struct cli *c, const cJSON *leases)
{
	const cJSON *l;

	cJSON_ArrayForEach(l, leases)
	{
		char rel[32] = "";
		const char *since = cli_str(l, "since");

		if (c->tty)
			fmt_relative(rel, sizeof(rel), since, c->now_ms);
		if (cli_int(l, "pid") > 0)
			printf("%-17s pid %d (%s) since %s\n", "lease",
			       cli_int(l, "pid"), cli_str(l, "command"),
			       c->tty ? rel : since);
		else
			printf("%-17s %s since %s\n", "lease",
			       cli_str(l, "command"), c->tty ? rel : since);
	}
}

static const char *on_off(const cJSON *pol, const char *key)
{
	return cJSON_IsTrue(cJSON_GetObjectItem(pol, key)) ? "on" : "off";
}

static void print_policy(const cJSON *pol)
{
	char idle[24] = "off";
	int s = cli_int(pol, "idle_pause_s");

	if (s > 0)
		fmt_duration(idle, sizeof(idle), (int64_t)s * 1000);
	printf("%-17s auto_resume=%s keepalive=%ds pause_on_shutdown=%s "
	       "idle_pause=%s on_expiry=%s\n",
	       "policy", on_off(pol, "auto_resume"),
	       cli_int(pol, "keepalive_s"), on_off(pol, "pause_on_shutdown"),
	       idle, cli_str(pol, "on_expiry"));
}

void cli_print_sandbox(const struct cli *c, const cJSON *sb)
{
	static const struct {
		const char *key;
		int is_time;
	} keys[] = {
	        {"id", 0},
	        {"name", 0},
	        {"status", 0},
	        {"status_since", 1},
	        {"last_error", 0},
	        {"template_name", 0},
	        {"region", 0},
	        {"public_host", 0},
	        {"expires_at", 1},
	        {"created_at", 1},
	        {"tracked_at", 1},
	        {"confirmed_at", 1},
	        {"token_expires_at", 1},
	};
	const cJSON *pol = cJSON_GetObjectItem(sb, "policy");
	const char *st = cli_str(sb, "status");
	char labels[512];
	size_t i;

	for (i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
		if (i == 2) {
			printf("%-17s %s%s%s%s\n", "status",
			       c->colour ? fmt_status_colour(st) : "", st,
			       c->colour ? FMT_RESET : "", wake_note(sb));
			continue;
		}
		print_field(c, keys[i].key, cli_str(sb, keys[i].key),
		            keys[i].is_time);
	}
	labels_text(sb, labels, sizeof(labels));
	printf("%-17s %s\n", "labels", labels);
	print_policy(pol);
	print_leases(c, cJSON_GetObjectItem(sb, "leases"));
}

void cli_print_event(const struct cli *c, const cJSON *ev)
{
	char *detail;

	if (c->json) {
		char *text = cJSON_PrintUnformatted(ev);

		if (text)
			puts(text);
		free(text);
		return;
	}
	detail = cJSON_PrintUnformatted(cJSON_GetObjectItem(ev, "detail"));
	printf("%-6d %s %-7s %-20s %-10s %s\n", cli_int(ev, "seq"),
	       cli_str(ev, "at"), cli_str(ev, "cause"),
	       cli_str(ev, "sandbox_id"), cli_str(ev, "type"),
	       detail ? detail : "null");
	free(detail);
	fflush(stdout);
}
