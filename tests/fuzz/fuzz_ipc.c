/*
 * libFuzzer target: bytes from a client, framed into lines (1 MiB cap),
 * parsed and dispatched to the agent's methods against a real store.
 * Every complete line must get exactly one reply, whatever it holds.
 *
 *   build-fuzz/tests/fuzz/fuzz_ipc -max_total_time=600 tests/fuzz/corpus
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "agent.h"
#include "buf.h"
#include "log.h"
#include "methods.h"
#include "proto.h"
#include "reconcile.h"
#include "sessions.h"
#include "store.h"

extern size_t fuzz_replies;
struct ipc_conn *fuzz_conn(void);
int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct agent agent;
static uv_loop_t loop;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	static const char *const ids[] = {"sbx1", "sbx2", "sbx3"};
	char dir[] = "/tmp/hopxd-fuzz-XXXXXX", path[64];
	struct store_sandbox r;
	int i;

	(void)argc;
	(void)argv;
	log_init("fuzz", LOG_LVL_ERROR);
	if (mkdtemp(dir) == NULL)
		abort();
	snprintf(path, sizeof(path), "%s/h.db", dir);
	agent.clk = clock_system();
	agent.loop = &loop;
	if (uv_loop_init(&loop) != 0)
		abort();
	if (store_open(path, 0, NULL, &agent.store, NULL) != 0)
		abort();
	for (i = 0; i < 3; i++) {
		store_sandbox_init(&r);
		r.id = (char *)ids[i];
		r.name = i == 0 ? "web" : NULL;
		store_sandbox_put(agent.store, &r, STORE_CAUSE_USER, NULL);
	}
	/* Files go when the process ends; the store is reused by runs. */
	snprintf(agent.cfg.db, sizeof(agent.cfg.db), "%s", path);
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *line;
	size_t len, used, lines = 0, before = fuzz_replies;
	struct buf b;

	buf_init(&b, PROTO_MAX);
	if (buf_append(&b, data, size) != 0) {
		buf_finish(&b);
		return 0;
	}
	/* No API key: what needs HopX is refused, the rest is served. */
	if (agent.sess == NULL &&
	    (sessions_create(&agent, NULL, NULL, NULL, &agent.sess) != 0 ||
	     reconcile_create(&agent, agent.sess, NULL, 60000, &agent.rec) !=
	             0))
		abort();
	while (proto_next_line(&b, &line, &len, &used) == 0) {
		if (len > 0) {
			methods_dispatch(&agent, fuzz_conn(), line, len);
			lines++;
		}
		buf_consume(&b, used);
	}
	/* A waiting call (wait) is answered when the sessions go. */
	if (fuzz_replies - before != lines) {
		reconcile_destroy(agent.rec);
		sessions_destroy(agent.sess);
		agent.sess = NULL;
		uv_run(&loop, UV_RUN_NOWAIT);
	}
	if (fuzz_replies - before != lines)
		abort(); /* a request went unanswered */
	buf_finish(&b);
	return 0;
}
