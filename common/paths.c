#include "paths.h"

#include "err.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int fit(int len, size_t n)
{
	return len < 0 || (size_t)len >= n ? ERR_TOOBIG : 0;
}

/* An environment variable, but only an absolute path counts (XDG spec). */
static const char *abs_env(const char *name)
{
	const char *v = getenv(name);

	return v && v[0] == '/' ? v : NULL;
}

int paths_socket(char *out, size_t n)
{
	const char *v = getenv("HOPXD_SOCKET");

	if (v && *v)
		return fit(snprintf(out, n, "%s", v), n);
	if ((v = abs_env("XDG_RUNTIME_DIR")) != NULL)
		return fit(snprintf(out, n, "%s/hopxd/hopxd.sock", v), n);
	return fit(snprintf(out, n, "/tmp/hopxd-%lu/hopxd.sock",
	                    (unsigned long)getuid()),
	           n);
}

int paths_db(char *out, size_t n)
{
	const char *v = getenv("HOPXD_DB");

	if (v && *v)
		return fit(snprintf(out, n, "%s", v), n);
	if ((v = abs_env("XDG_STATE_HOME")) != NULL)
		return fit(snprintf(out, n, "%s/hopxd/hopxd.db", v), n);
	if ((v = abs_env("HOME")) != NULL)
		return fit(
		        snprintf(out, n, "%s/.local/state/hopxd/hopxd.db", v),
		        n);
	return ERR_NOTFOUND;
}

static int config_file(char *out, size_t n, const char *name)
{
	const char *v;

	if ((v = abs_env("XDG_CONFIG_HOME")) != NULL)
		return fit(snprintf(out, n, "%s/hopxd/%s", v, name), n);
	if ((v = abs_env("HOME")) != NULL)
		return fit(snprintf(out, n, "%s/.config/hopxd/%s", v, name), n);
	return ERR_NOTFOUND;
}

int paths_key_file(char *out, size_t n)
{
	return config_file(out, n, "api-key");
}

int paths_local_key_file(char *out, size_t n)
{
	return config_file(out, n, "local-key");
}

int paths_make_parents(const char *path, char *failed, size_t n)
{
	char dir[4096];
	size_t i, len = strlen(path);

	if (len >= sizeof(dir))
		return ERR_TOOBIG;
	memcpy(dir, path, len + 1);
	for (i = 1; i < len; i++) {
		if (dir[i] != '/')
			continue;
		dir[i] = '\0';
		if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
			int e = errno;

			if (failed)
				snprintf(failed, n, "%s", dir);
			return err_from_errno(e);
		}
		dir[i] = '/';
	}
	return 0;
}
