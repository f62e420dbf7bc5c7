/*
 * The sandboxes' file systems, reduced to what the agent API needs: a file
 * per (sandbox, absolute path), named by a hash of the path so a path can
 * never leave the directory.
 */
#define _GNU_SOURCE
#include "sim_files.h"

#include <dirent.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int files_tmp; /* the directory is ours to remove */

int sim_files_init(struct sim *s)
{
	char tmpl[1024];
	const char *t = getenv("TMPDIR");

	if (s->cfg.files_dir[0])
		return 0;
	snprintf(tmpl, sizeof(tmpl), "%s/hopx-sim-files.XXXXXX",
	         t && *t ? t : "/tmp");
	if (mkdtemp(tmpl) == NULL) {
		perror("hopx-sim: cannot make a directory for files");
		return -1;
	}
	snprintf(s->cfg.files_dir, sizeof(s->cfg.files_dir), "%s", tmpl);
	files_tmp = 1;
	return 0;
}

static void remove_matching(const char *dir, const char *prefix)
{
	size_t plen = prefix ? strlen(prefix) : 0;
	char path[2048];
	struct dirent *e;
	DIR *d = opendir(dir);

	if (d == NULL)
		return;
	while ((e = readdir(d)) != NULL) {
		if (e->d_name[0] == '.' ||
		    (prefix && strncmp(e->d_name, prefix, plen) != 0))
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
		unlink(path);
	}
	closedir(d);
}

void sim_files_finish(struct sim *s)
{
	if (!files_tmp)
		return;
	remove_matching(s->cfg.files_dir, NULL);
	rmdir(s->cfg.files_dir);
}

static uint64_t fnv1a(const char *p)
{
	uint64_t h = 14695981039346656037ULL;

	for (; *p; p++)
		h = (h ^ (unsigned char)*p) * 1099511628211ULL;
	return h;
}

int sim_files_path(const struct sim *s, const char *id, const char *path,
                   char *out, size_t n)
{
	int w;

	if (path == NULL || path[0] != '/' || strlen(path) > 1024)
		return -1;
	w = snprintf(out, n, "%s/%s.%016llx", s->cfg.files_dir, id,
	             (unsigned long long)fnv1a(path));
	return w > 0 && (size_t)w < n ? 0 : -1;
}

int sim_files_temp(const struct sim *s, char *out, size_t n)
{
	int w = snprintf(out, n, "%s/.upload.XXXXXX", s->cfg.files_dir);

	if (w <= 0 || (size_t)w >= n)
		return -1;
	return mkostemp(out, O_CLOEXEC);
}

void sim_files_drop(struct sim *s, const char *id)
{
	char prefix[SIM_ID_MAX + 2];

	if (s->cfg.files_dir[0] == '\0')
		return;
	snprintf(prefix, sizeof(prefix), "%s.", id);
	remove_matching(s->cfg.files_dir, prefix);
}
