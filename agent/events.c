#include "events.h"

#include "agent.h"
#include "ipc_server.h"
#include "json.h"
#include "proto.h"

#include <stdlib.h>

cJSON *events_json(const struct store_event *e)
{
	cJSON *o = cJSON_CreateObject(), *d = NULL;

	json_add_i64(o, "seq", e->seq);
	json_add_time(o, "at", e->at);
	json_add_str(o, "sandbox_id", e->sandbox_id);
	json_add_str(o, "type", e->type);
	json_add_str(o, "cause", store_cause_str(e->cause));
	if (e->host)
		json_add_str(o, "host", e->host);
	if (e->detail)
		d = cJSON_Parse(e->detail);
	cJSON_AddItemToObject(o, "detail", d ? d : cJSON_CreateNull());
	return o;
}

struct pub {
	struct ipc_conn *conn;
	const cJSON *id;
	int64_t seq;
};

static int send_event(void *ud, const struct store_event *ev)
{
	struct pub *p = ud;
	size_t len = 0;
	char *text = proto_event(p->id, events_json(ev), &len);

	p->seq = ev->seq;
	return ipc_conn_send(p->conn, text, len) == 0 ? 0 : 1;
}

/*
 * New events are read and printed once per publish; every subscriber at
 * the same point gets them from here, so a thousand subscribers cost one
 * query, not a thousand. Those behind (or joined since) read their own.
 */
#define PUB_BATCH 256

struct batch {
	int64_t from; /* the events after this seq */
	size_t n;
	int64_t seq[PUB_BATCH];
	char *text[PUB_BATCH];
};

static int batch_add(void *ud, const struct store_event *ev)
{
	struct batch *b = ud;
	cJSON *o = events_json(ev);

	b->text[b->n] = json_print(o);
	cJSON_Delete(o);
	if (b->text[b->n] == NULL)
		return 1;
	b->seq[b->n++] = ev->seq;
	return 0;
}

static int64_t newest(void *ud, struct agent *a, struct ipc_conn *conn,
                      const cJSON *id, int64_t seq)
{
	int64_t *max = ud;

	(void)a;
	(void)conn;
	(void)id;
	*max = seq > *max ? seq : *max;
	return seq;
}

static int64_t publish_one(void *ud, struct agent *a, struct ipc_conn *conn,
                           const cJSON *id, int64_t seq)
{
	const struct batch *b = ud;
	struct pub p = {conn, id, seq};
	size_t i, len = 0;
	char *text;

	if (seq != b->from) {
		store_event_since(a->store, seq, 0, send_event, &p);
		return p.seq;
	}
	for (i = 0; i < b->n; i++) {
		text = proto_event_text(id, b->text[i], &len);
		if (text == NULL || ipc_conn_send(conn, text, len) != 0)
			break;
		seq = b->seq[i];
	}
	return seq;
}

void events_publish(struct agent *a)
{
	struct batch b = {.from = -1};
	size_t i;

	if (a->ipc == NULL || ipc_server_subscribers(a->ipc) == 0)
		return;
	ipc_server_each_subscriber(a->ipc, newest, &b.from);
	do {
		b.n = 0;
		store_event_since(a->store, b.from, PUB_BATCH, batch_add, &b);
		ipc_server_each_subscriber(a->ipc, publish_one, &b);
		for (i = 0; i < b.n; i++)
			free(b.text[i]);
		if (b.n > 0)
			b.from = b.seq[b.n - 1];
	} while (b.n == PUB_BATCH);
}
