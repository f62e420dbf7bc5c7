/*
 * A sandbox's shell, simulated: enough of bash (and of python's print) for
 * the SDKs' command and code calls to have real output, files they wrote
 * to read back, and a checksum to compare a large upload with.
 */
#include "sim_shell.h"

#include <errno.h>
#include <fcntl.h>
#include <gnutls/crypto.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "sim_files.h"

#define ARGS_MAX 32

struct sh {
	struct sim *s;
	const char *id;
	struct sim_run *r;
	int exited;
};

static void out_add(struct sim_run *r, const char *p, size_t n)
{
	size_t room = SIM_OUT_MAX - 1 - r->out_len;

	n = n < room ? n : room;
	memcpy(r->out + r->out_len, p, n);
	r->out_len += n;
	r->out[r->out_len] = '\0';
}

static void err_add(struct sim_run *r, const char *fmt, ...)
{
	size_t len = strlen(r->err);
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(r->err + len, sizeof(r->err) - len, fmt, ap);
	va_end(ap);
}

/* Splits line into words in place ('...' and "..." quote; no escapes). */
static int words(char *line, char **argv)
{
	int n = 0;
	char *p = line, *w;

	while (*p && n < ARGS_MAX) {
		while (*p == ' ' || *p == '\t')
			p++;
		if (*p == '\0')
			break;
		w = argv[n++] = p;
		while (*p && *p != ' ' && *p != '\t') {
			if (*p == '\'' || *p == '"') {
				char q = *p++;

				while (*p && *p != q)
					*w++ = *p++;
				if (*p)
					p++;
			} else {
				*w++ = *p++;
			}
		}
		if (*p)
			p++;
		*w = '\0';
	}
	return n;
}

static int open_file(struct sh *h, const char *cmd, const char *path)
{
	char name[2048];
	int fd = -1;

	if (sim_files_path(h->s, h->id, path, name, sizeof(name)) == 0)
		fd = open(name, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		err_add(h->r, "%s: %s: No such file or directory\n", cmd,
		        path ? path : "");
	return fd;
}

static int c_echo(struct sh *h, int argc, char **argv)
{
	int i = 1, nl = 1;

	if (argc > 1 && strcmp(argv[1], "-n") == 0) {
		nl = 0;
		i = 2;
	}
	for (int first = i; i < argc; i++) {
		if (i > first)
			out_add(h->r, " ", 1);
		out_add(h->r, argv[i], strlen(argv[i]));
	}
	if (nl && strcmp(argv[0], "echo") == 0)
		out_add(h->r, "\n", 1);
	return 0;
}

static int c_cat(struct sh *h, int argc, char **argv)
{
	char buf[8192];
	ssize_t n;
	int fd;

	for (int i = 1; i < argc; i++) {
		if ((fd = open_file(h, "cat", argv[i])) < 0)
			return 1;
		while ((n = read(fd, buf, sizeof(buf))) > 0)
			out_add(h->r, buf, (size_t)n);
		close(fd);
	}
	return 0;
}

static int c_wc(struct sh *h, int argc, char **argv)
{
	const char *path = argc == 3 ? argv[2] : NULL;
	char line[1100];
	struct stat st;
	int fd;

	if (argc != 3 || strcmp(argv[1], "-c") != 0) {
		err_add(h->r, "wc: only 'wc -c FILE' here\n");
		return 1;
	}
	if ((fd = open_file(h, "wc", path)) < 0)
		return 1;
	fstat(fd, &st);
	close(fd);
	snprintf(line, sizeof(line), "%lld %s\n", (long long)st.st_size, path);
	out_add(h->r, line, strlen(line));
	return 0;
}

static int c_sha256(struct sh *h, int argc, char **argv)
{
	unsigned char d[32], buf[65536];
	gnutls_hash_hd_t hd;
	char line[1200];
	ssize_t n;
	int fd;

	if (argc != 2 || (fd = open_file(h, "sha256sum", argv[1])) < 0)
		return 1;
	if (gnutls_hash_init(&hd, GNUTLS_DIG_SHA256) < 0) {
		close(fd);
		return 1;
	}
	while ((n = read(fd, buf, sizeof(buf))) > 0)
		gnutls_hash(hd, buf, (size_t)n);
	close(fd);
	gnutls_hash_deinit(hd, d);
	for (int i = 0; i < 32; i++)
		snprintf(line + 2 * i, 3, "%02x", d[i]);
	snprintf(line + 64, sizeof(line) - 64, "  %s\n", argv[1]);
	out_add(h->r, line, strlen(line));
	return 0;
}

static int c_sleep(struct sh *h, int argc, char **argv)
{
	double secs = argc == 2 ? atof(argv[1]) : 0;
	struct timespec ts;

	(void)h;
	if (secs > 10)
		secs = 10;
	ts.tv_sec = (time_t)secs;
	ts.tv_nsec = (long)((secs - (double)ts.tv_sec) * 1e9);
	while (secs > 0 && nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
	return 0;
}

static int c_true(struct sh *h, int argc, char **argv)
{
	(void)h;
	(void)argc;
	return strcmp(argv[0], "false") == 0 ? 1 : 0;
}

static int c_exit(struct sh *h, int argc, char **argv)
{
	h->exited = 1;
	return argc > 1 ? atoi(argv[1]) & 255 : h->r->exit_code;
}

static const struct {
	const char *name;
	int (*fn)(struct sh *h, int argc, char **argv);
} commands[] = {
        {"echo", c_echo}, {"printf", c_echo},      {"cat", c_cat},
        {"wc", c_wc},     {"sha256sum", c_sha256}, {"sleep", c_sleep},
        {"true", c_true}, {"false", c_true},       {"exit", c_exit},
};

/* python's print("text") or print('text'): the text and a newline. */
static int py_print(struct sh *h, char *stmt)
{
	char *p = stmt + 6, *end = strrchr(stmt, ')');
	char q = *p;

	if ((q != '"' && q != '\'') || end == NULL || end - p < 2 ||
	    end[-1] != q) {
		err_add(h->r, "SyntaxError: only print(\"...\") here\n");
		return 1;
	}
	out_add(h->r, p + 1, (size_t)(end - p - 2));
	out_add(h->r, "\n", 1);
	return 0;
}

static int one(struct sh *h, char *stmt, int python)
{
	char *argv[ARGS_MAX + 1];
	int argc;

	while (*stmt == ' ' || *stmt == '\t')
		stmt++;
	if (python && strncmp(stmt, "print(", 6) == 0)
		return py_print(h, stmt);
	if ((argc = words(stmt, argv)) == 0)
		return h->r->exit_code;
	argv[argc] = NULL;
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		if (strcmp(argv[0], commands[i].name) == 0)
			return commands[i].fn(h, argc, argv);
	err_add(h->r, "bash: %s: command not found\n", argv[0]);
	return 127;
}

void sim_shell_run(struct sim *s, const char *id, const char *script,
                   int python, struct sim_run *r)
{
	struct sh h = {.s = s, .id = id, .r = r};
	char *copy = strdup(script ? script : ""), *save = NULL, *stmt;

	memset(r, 0, sizeof(*r));
	if (copy == NULL) {
		r->exit_code = 1;
		return;
	}
	for (stmt = strtok_r(copy, python ? "\n" : "\n;", &save);
	     stmt && !h.exited;
	     stmt = strtok_r(NULL, python ? "\n" : "\n;", &save))
		r->exit_code = one(&h, stmt, python);
	free(copy);
}
