/*
 * st_testutil: temp data dirs for storage and etcdcompat tests. Every test gets
 * a fresh mkdtemp directory with a real RocksDB in it, removed afterwards.
 */
#ifndef METASTORE_ST_TESTUTIL_H
#define METASTORE_ST_TESTUTIL_H

#define _XOPEN_SOURCE 700
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static inline int tu_rm_one(const char *p, const struct stat *sb, int flag, struct FTW *f)
{
	(void)sb;
	(void)flag;
	(void)f;
	return remove(p);
}

/* tu_rmrf - remove @dir and everything under it. */
static inline void tu_rmrf(const char *dir)
{
	nftw(dir, tu_rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

/* tu_tmpdir - a new empty directory under $TMPDIR (or /tmp); caller frees. */
static inline char *tu_tmpdir(void)
{
	const char *base = getenv("TMPDIR");
	char *p = malloc(4096);
	snprintf(p, 4096, "%s/ms-test-XXXXXX", base != NULL ? base : "/tmp");
	if (mkdtemp(p) == NULL) {
		free(p);
		return NULL;
	}
	return p;
}

#endif
