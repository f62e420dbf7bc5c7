/*
 * A SQLite VFS shim for storage fault tests (RELIABILITY.md 1.6.3), linked
 * into hopxd-faultfs, a test-only build of hopxd. It wraps the default
 * VFS and becomes the default itself; every write, sync and truncate
 * first reads the file named by $HOPXD_FAULTFS:
 *
 *   "readonly"  the call fails as on a file system remounted read-only
 *               (EROFS: SQLITE_IOERR_WRITE / _FSYNC / _TRUNCATE)
 *   "full"      the call fails with SQLITE_FULL (ENOSPC)
 *   anything else, or no file: the call goes through
 *
 * A file system cannot be remounted read-only while a process holds files
 * open for writing (EBUSY), so a running agent can meet EROFS only this
 * way. Reads always go through: the agent must keep answering them.
 */
#include "store.h"

#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct ffile {
	sqlite3_file base; /* our methods */
	sqlite3_file *real;
};

static sqlite3_vfs *real_vfs;
static sqlite3_vfs shim;

/* 0, or the error the current fault turns op into. */
static int fault(int ioerr)
{
	const char *path = getenv("HOPXD_FAULTFS");
	char mode[16] = "";
	FILE *f;

	if (path == NULL || (f = fopen(path, "r")) == NULL)
		return 0;
	if (fgets(mode, sizeof(mode), f) == NULL)
		mode[0] = '\0';
	fclose(f);
	if (strncmp(mode, "readonly", 8) == 0)
		return ioerr;
	if (strncmp(mode, "full", 4) == 0)
		return SQLITE_FULL;
	return 0;
}

#define REAL(f) (((struct ffile *)(f))->real)

static int f_close(sqlite3_file *f)
{
	int rc = REAL(f)->pMethods ? REAL(f)->pMethods->xClose(REAL(f)) : 0;

	sqlite3_free(REAL(f));
	return rc;
}

static int f_read(sqlite3_file *f, void *buf, int n, sqlite3_int64 off)
{
	return REAL(f)->pMethods->xRead(REAL(f), buf, n, off);
}

static int f_write(sqlite3_file *f, const void *buf, int n, sqlite3_int64 off)
{
	int rc = fault(SQLITE_IOERR_WRITE);

	return rc ? rc : REAL(f)->pMethods->xWrite(REAL(f), buf, n, off);
}

static int f_truncate(sqlite3_file *f, sqlite3_int64 size)
{
	int rc = fault(SQLITE_IOERR_TRUNCATE);

	return rc ? rc : REAL(f)->pMethods->xTruncate(REAL(f), size);
}

static int f_sync(sqlite3_file *f, int flags)
{
	int rc = fault(SQLITE_IOERR_FSYNC);

	return rc ? rc : REAL(f)->pMethods->xSync(REAL(f), flags);
}

static int f_size(sqlite3_file *f, sqlite3_int64 *size)
{
	return REAL(f)->pMethods->xFileSize(REAL(f), size);
}

static int f_lock(sqlite3_file *f, int l)
{
	return REAL(f)->pMethods->xLock(REAL(f), l);
}

static int f_unlock(sqlite3_file *f, int l)
{
	return REAL(f)->pMethods->xUnlock(REAL(f), l);
}

static int f_check(sqlite3_file *f, int *out)
{
	return REAL(f)->pMethods->xCheckReservedLock(REAL(f), out);
}

static int f_control(sqlite3_file *f, int op, void *arg)
{
	return REAL(f)->pMethods->xFileControl(REAL(f), op, arg);
}

static int f_sector(sqlite3_file *f)
{
	return REAL(f)->pMethods->xSectorSize(REAL(f));
}

static int f_device(sqlite3_file *f)
{
	return REAL(f)->pMethods->xDeviceCharacteristics(REAL(f));
}

static int f_shm_map(sqlite3_file *f, int pg, int sz, int ext,
                     void volatile **p)
{
	return REAL(f)->pMethods->xShmMap(REAL(f), pg, sz, ext, p);
}

static int f_shm_lock(sqlite3_file *f, int off, int n, int flags)
{
	return REAL(f)->pMethods->xShmLock(REAL(f), off, n, flags);
}

static void f_shm_barrier(sqlite3_file *f)
{
	REAL(f)->pMethods->xShmBarrier(REAL(f));
}

static int f_shm_unmap(sqlite3_file *f, int del)
{
	return REAL(f)->pMethods->xShmUnmap(REAL(f), del);
}

static int f_fetch(sqlite3_file *f, sqlite3_int64 off, int n, void **p)
{
	return REAL(f)->pMethods->xFetch(REAL(f), off, n, p);
}

static int f_unfetch(sqlite3_file *f, sqlite3_int64 off, void *p)
{
	return REAL(f)->pMethods->xUnfetch(REAL(f), off, p);
}

static const sqlite3_io_methods methods = {
        3,         f_close,   f_read,     f_write,       f_truncate,  f_sync,
        f_size,    f_lock,    f_unlock,   f_check,       f_control,   f_sector,
        f_device,  f_shm_map, f_shm_lock, f_shm_barrier, f_shm_unmap, f_fetch,
        f_unfetch,
};

static int v_open(sqlite3_vfs *v, const char *name, sqlite3_file *f, int flags,
                  int *out)
{
	struct ffile *ff = (struct ffile *)f;
	int rc;

	(void)v;
	ff->base.pMethods = NULL;
	ff->real = sqlite3_malloc(real_vfs->szOsFile);
	if (ff->real == NULL)
		return SQLITE_NOMEM;
	memset(ff->real, 0, (size_t)real_vfs->szOsFile);
	rc = real_vfs->xOpen(real_vfs, name, ff->real, flags, out);
	if (rc != SQLITE_OK || ff->real->pMethods == NULL) {
		sqlite3_free(ff->real);
		return rc;
	}
	/* Forward only what the real file offers (version 1-3). */
	ff->base.pMethods = &methods;
	return SQLITE_OK;
}

static int v_delete(sqlite3_vfs *v, const char *name, int sync)
{
	(void)v;
	return real_vfs->xDelete(real_vfs, name, sync);
}

static int v_access(sqlite3_vfs *v, const char *name, int flags, int *out)
{
	(void)v;
	return real_vfs->xAccess(real_vfs, name, flags, out);
}

static int v_full(sqlite3_vfs *v, const char *name, int n, char *out)
{
	(void)v;
	return real_vfs->xFullPathname(real_vfs, name, n, out);
}

__attribute__((constructor)) static void faultfs_register(void)
{
	/* The log hook must be set before the first SQLite call below. */
	store_global_init();
	real_vfs = sqlite3_vfs_find(NULL);
	shim = *real_vfs;
	shim.zName = "faultfs";
	shim.szOsFile = (int)sizeof(struct ffile);
	shim.xOpen = v_open;
	shim.xDelete = v_delete;
	shim.xAccess = v_access;
	shim.xFullPathname = v_full;
	shim.pAppData = NULL;
	shim.pNext = NULL;
	sqlite3_vfs_register(&shim, 1);
}
