#include "leases.h"

#include "agent.h"
#include "err.h"
#include "ipc_server.h"
#include "json.h"
#include "sbx.h"
#include "sessions.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <utlist.h>

struct lease {
	struct ipc_conn *conn;
	char id[SBX_ID_MAX + 1];
	long pid;
	char command[64]; /* the holder's /proc/PID/comm, or "" */
	int64_t since;
	struct lease *prev, *next;
};

static struct lease *find(struct lease *list, const struct ipc_conn *c,
                          const char *id)
{
	struct lease *l;

	DL_FOREACH(list, l)
	{
		if (l->conn == c && strcmp(l->id, id) == 0)
			return l;
	}
	return NULL;
}

/* What the holder runs, as ps shows it (Linux); "" when unknown. */
static void command_of(long pid, char *out, size_t n)
{
	char path[64];
	FILE *f;

	out[0] = '\0';
	snprintf(path, sizeof(path), "/proc/%ld/comm", pid);
	if (pid <= 0 || (f = fopen(path, "r")) == NULL)
		return;
	if (fgets(out, (int)n, f) == NULL)
		out[0] = '\0';
	out[strcspn(out, "\n")] = '\0';
	fclose(f);
}

int leases_take(struct agent *a, struct ipc_conn *c, const char *id,
                int64_t now)
{
	struct lease *l;
	int e;

	if (find(a->leases, c, id))
		return 0;
	if ((e = sessions_lease(a->sess, id, +1)) != 0)
		return e;
	if ((l = calloc(1, sizeof(*l))) == NULL) {
		sessions_lease(a->sess, id, -1);
		return ERR_NOMEM;
	}
	l->conn = c;
	snprintf(l->id, sizeof(l->id), "%s", id);
	l->pid = ipc_conn_pid(c);
	command_of(l->pid, l->command, sizeof(l->command));
	l->since = now;
	DL_APPEND(a->leases, l);
	ipc_conn_keep(c);
	return 0;
}

static void end(struct agent *a, struct lease *l)
{
	DL_DELETE(a->leases, l);
	if (a->sess)
		sessions_lease(a->sess, l->id, -1);
	free(l);
}

int leases_release(struct agent *a, struct ipc_conn *c, const char *id)
{
	struct lease *l = find(a->leases, c, id);

	if (l == NULL)
		return ERR_NOTFOUND;
	end(a, l);
	return 0;
}

void leases_conn_closed(struct agent *a, struct ipc_conn *c)
{
	struct lease *l, *tmp;

	DL_FOREACH_SAFE(a->leases, l, tmp)
	{
		if (l->conn == c)
			end(a, l);
	}
}

cJSON *leases_json(const struct agent *a, const char *id)
{
	cJSON *arr = cJSON_CreateArray(), *o;
	const struct lease *l;

	DL_FOREACH(a->leases, l)
	{
		if (arr == NULL || strcmp(l->id, id) != 0)
			continue;
		if ((o = cJSON_CreateObject()) == NULL) {
			cJSON_Delete(arr);
			return NULL;
		}
		json_add_i64(o, "pid", l->pid);
		json_add_str(o, "command", l->command);
		json_add_time(o, "since", l->since);
		cJSON_AddItemToArray(arr, o);
	}
	return arr;
}

size_t leases_count(const struct agent *a)
{
	const struct lease *l;
	size_t n = 0;

	DL_FOREACH(a->leases, l)
	n++;
	return n;
}
