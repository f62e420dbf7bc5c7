/*
 * Crash test: a child process writes status changes, token updates and
 * events in a loop, reporting each commit on a pipe; the parent kills it
 * with SIGKILL at a random moment, KILLS times. After each kill the parent
 * checks that the database passes integrity_check, that every commit the
 * child reported is there, that no token went backwards, and that status
 * and token (written in one transaction) agree.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "err.h"
#include "log.h"
#include "store.h"
#include "testutil.h"

#define NSBX 20
#define MAXK (1 << 22)

static int kills = 100;

static enum sbx_status status_for(int64_t k)
{
	return (k / NSBX) % 2 ? SBX_PAUSED : SBX_RUNNING;
}

static void sbx_id(char *out, size_t n, int64_t k)
{
	snprintf(out, n, "c%02d", (int)(k % NSBX));
}

static int max_token_cb(void *ud, const struct store_sandbox *r)
{
	int64_t *max = ud;

	if (r->token_expires_at != STORE_NULL && r->token_expires_at > *max)
		*max = r->token_expires_at;
	return 0;
}

/* The writes of one step; the old token must be refused. */
static int child_writes(struct store *s, const char *id, int64_t k,
                        const char *detail)
{
	int r, rep = 0;

	r = store_sandbox_set_status(s, id, status_for(k), STORE_CAUSE_AGENT,
	                             NULL);
	if (r == 0)
		r = store_token_put(s, id, "tok", k, k, &rep);
	if (r == 0 && rep != 1)
		r = ERR_STATE;
	if (r == 0 && k > 7) {
		r = store_token_put(s, id, "old", k - 7, k, &rep);
		if (r == 0 && rep != 0)
			r = ERR_STATE;
	}
	if (r == 0)
		r = store_event_append(s, id, "crash", STORE_CAUSE_AGENT,
		                       detail, NULL);
	return r;
}

/* One committed step; returns 0 or an error code. */
static int child_step(struct store *s, int64_t k)
{
	char id[16], detail[32];
	int r;

	sbx_id(id, sizeof(id), k);
	snprintf(detail, sizeof(detail), "{\"k\":%lld}", (long long)k);
	if ((r = store_begin(s)) != 0)
		return r;
	if ((r = child_writes(s, id, k, detail)) != 0) {
		store_rollback(s);
		return r;
	}
	return store_commit(s);
}

/* Writes forever (until killed), one line per commit on fd. */
static void child(const char *path, int fd)
{
	struct store *s = NULL;
	int64_t k = 0;

	if (store_open(path, 0, NULL, &s, NULL) != 0)
		_exit(3);
	if (store_sandbox_list(s, NULL, max_token_cb, &k) != 0)
		_exit(4);
	/* Ready: the kill window starts now, however slow the open was
	 * (under valgrind it could take the whole window). */
	if (write(fd, &(int64_t){0}, sizeof(int64_t)) != sizeof(int64_t))
		_exit(6);
	for (k = k + 1;; k++) {
		if (child_step(s, k) != 0)
			_exit(5);
		if (write(fd, &k, sizeof(k)) != sizeof(k))
			_exit(6);
	}
}

struct round {
	unsigned char *seen; /* bitmap of k found in the event log */
	int64_t token[NSBX]; /* last token expiry seen per sandbox */
	int64_t after_seq;   /* events before this were checked already */
};

static int event_cb(void *ud, const struct store_event *e)
{
	struct round *rd = ud;
	long long k;

	if (e->detail && sscanf(e->detail, "{\"k\":%lld}", &k) == 1 && k > 0 &&
	    k < MAXK)
		rd->seen[k / 8] |= (unsigned char)(1u << (k % 8));
	rd->after_seq = e->seq;
	return 0;
}

static int state_cb(void *ud, const struct store_sandbox *r)
{
	struct round *rd = ud;
	int i = atoi(r->id + 1);

	if (r->token_expires_at == STORE_NULL)
		return 0;
	/* Tokens never move backwards ... */
	if (r->token_expires_at < rd->token[i])
		fail_msg("token of %s went back: %lld < %lld", r->id,
		         (long long)r->token_expires_at,
		         (long long)rd->token[i]);
	rd->token[i] = r->token_expires_at;
	/* ... and the status was written with the token, atomically. */
	if (r->status != status_for(r->token_expires_at))
		fail_msg("%s: status %s does not match token %lld", r->id,
		         sbx_status_str(r->status),
		         (long long)r->token_expires_at);
	return 0;
}

/* Verifies the database after a kill; acked = ks reported this round. */
static void verify(const char *path, struct round *rd, int64_t lo, int64_t hi)
{
	struct store *s = NULL;
	char *cause = NULL;
	int64_t k;

	if (store_open(path, STORE_OPEN_CHECK, NULL, &s, &cause) != 0)
		fail_msg("reopen failed: %s", cause ? cause : "?");
	if (store_check(s, 1, &cause) != 0)
		fail_msg("integrity_check: %s", cause ? cause : "?");
	assert_int_equal(store_event_since(s, rd->after_seq, 0, event_cb, rd),
	                 0);
	for (k = lo; k <= hi; k++)
		if (!(rd->seen[k / 8] & (1u << (k % 8))))
			fail_msg("commit %lld was acknowledged but is lost",
			         (long long)k);
	assert_int_equal(store_sandbox_list(s, NULL, state_cb, rd), 0);
	assert_int_equal(store_close(s), 0);
}

static void make_sandboxes(const char *path)
{
	struct store *s = NULL;
	struct store_sandbox r;
	char id[16];
	int i;

	assert_int_equal(store_open(path, 0, NULL, &s, NULL), 0);
	store_sandbox_init(&r);
	r.id = id;
	for (i = 0; i < NSBX; i++) {
		sbx_id(id, sizeof(id), i);
		assert_int_equal(
		        store_sandbox_put(s, &r, STORE_CAUSE_USER, NULL), 0);
	}
	assert_int_equal(store_close(s), 0);
}

/* Runs the child for a random 10..90 ms once it is ready, kills it;
 * returns acked range. */
static void one_kill(const char *path, int64_t *lo, int64_t *hi)
{
	struct timespec ts = {0, (10 + rand() % 81) * 1000000L};
	int fds[2], status;
	int64_t k;
	pid_t pid;

	assert_int_equal(pipe(fds), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		close(fds[0]);
		child(path, fds[1]);
	}
	close(fds[1]);
	if (read(fds[0], &k, sizeof(k)) == sizeof(k)) /* the ready mark */
		nanosleep(&ts, NULL);
	kill(pid, SIGKILL);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	if (!WIFSIGNALED(status))
		fail_msg("child exited early with %d", WEXITSTATUS(status));
	*lo = *hi = 0;
	while (read(fds[0], &k, sizeof(k)) == sizeof(k)) {
		if (*lo == 0)
			*lo = k;
		*hi = k;
	}
	close(fds[0]);
}

static void t_crash_loop(void **state)
{
	char dir[256], path[300];
	struct round rd;
	int64_t lo, hi, acked = 0;
	int i;

	(void)state;
	memset(&rd, 0, sizeof(rd));
	rd.seen = calloc(MAXK / 8, 1);
	assert_non_null(rd.seen);
	assert_int_equal(tu_tmpdir(dir, sizeof(dir)), 0);
	tu_path(path, sizeof(path), dir, "crash.db");
	make_sandboxes(path);
	srand((unsigned)time(NULL));
	for (i = 0; i < kills; i++) {
		one_kill(path, &lo, &hi);
		if (hi > 0)
			acked += hi - lo + 1;
		verify(path, &rd, lo ? lo : 1, hi);
	}
	fprintf(stderr,
	        "# %d kills survived, %lld commits acknowledged, "
	        "0 lost\n",
	        kills, (long long)acked);
	assert_true(acked > 0);
	free(rd.seen);
	tu_rmrf(dir);
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(t_crash_loop),
	};

	if (argc > 1)
		kills = atoi(argv[1]) > 0 ? atoi(argv[1]) : kills;
	log_init("test", LOG_LVL_WARN);
	return cmocka_run_group_tests_name("store_crash", tests, NULL, NULL);
}
