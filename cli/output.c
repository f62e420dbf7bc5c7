/* hopxctl output: JSON for tools, tables for people, plain when piped. */
#include "cli.h"

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

static const char *str(const cJSON *o, const char *key)
{
	const char *v =
	        cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(o, key));

	return v ? v : "-";
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
	snprintf(out, n, "%s%s", str(sb, "status"),
	         cJSON_IsTrue(cJSON_GetObjectItem(sb, "stale")) ? " (stale)"
	                                                        : "");
}

void cli_print_sandboxes(const struct cli *c, const cJSON *arr, int quiet)
{
	const cJSON *sb;
	char labels[512], status[32];

	if (c->tty && !quiet)
		printf("%-20s %-16s %-17s %-20s %s\n", "ID", "NAME", "STATUS",
		       "EXPIRES", "LABELS");
	cJSON_ArrayForEach(sb, arr)
	{
		if (quiet) {
			puts(str(sb, "id"));
			continue;
		}
		labels_text(sb, labels, sizeof(labels));
		status_text(sb, status, sizeof(status));
		printf(c->tty ? "%-20s %-16s %-17s %-20s %s\n"
		              : "%s\t%s\t%s\t%s\t%s\n",
		       str(sb, "id"), str(sb, "name"), status,
		       str(sb, "expires_at"), labels);
	}
}

void cli_print_sandbox(const cJSON *sb)
{
	static const char *const keys[] = {
	        "id",          "name",          "status",
	        "last_error",  "template_name", "region",
	        "public_host", "expires_at",    "created_at",
	        "tracked_at",  "confirmed_at",  "token_expires_at",
	};
	const cJSON *pol = cJSON_GetObjectItem(sb, "policy");
	char labels[512];
	size_t i;

	for (i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
		printf("%-17s %s\n", keys[i], str(sb, keys[i]));
	labels_text(sb, labels, sizeof(labels));
	printf("%-17s %s\n", "labels", labels);
	printf("%-17s auto_resume=%s keepalive=%ds pause_on_shutdown=%s\n",
	       "policy",
	       cJSON_IsTrue(cJSON_GetObjectItem(pol, "auto_resume")) ? "on"
	                                                             : "off",
	       (int)cJSON_GetNumberValue(
	               cJSON_GetObjectItem(pol, "keepalive_s")),
	       cJSON_IsTrue(cJSON_GetObjectItem(pol, "pause_on_shutdown"))
	               ? "on"
	               : "off");
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
	printf("%-6d %s %-7s %-20s %-10s %s\n",
	       (int)cJSON_GetNumberValue(cJSON_GetObjectItem(ev, "seq")),
	       str(ev, "at"), str(ev, "cause"), str(ev, "sandbox_id"),
	       str(ev, "type"), detail ? detail : "null");
	free(detail);
	fflush(stdout);
}
