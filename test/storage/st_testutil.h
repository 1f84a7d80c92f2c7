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

#include <rocksdb/c.h>

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

/*
 * tu_poke_default - open the closed data dir @dir with RocksDB directly (every
 * column family it has, whatever st_db's current list is) and put @key=@val
 * into the "default" family: a way for tests to forge meta records behind
 * st_db's back. Returns NULL on success or RocksDB's error text (caller frees).
 */
static inline char *tu_poke_default(const char *dir, const char *key, const void *val,
				    size_t len)
{
	char *err = NULL;
	rocksdb_options_t *o = rocksdb_options_create();
	size_t n = 0;
	char **names = rocksdb_list_column_families(o, dir, &n, &err);
	if (err != NULL) {
		rocksdb_options_destroy(o);
		return err;
	}
	const rocksdb_options_t **cfo = calloc(n, sizeof(*cfo));
	rocksdb_column_family_handle_t **cf = calloc(n, sizeof(*cf));
	size_t def = 0;
	for (size_t i = 0; i < n; i++) {
		cfo[i] = o;
		if (strcmp(names[i], "default") == 0)
			def = i;
	}
	rocksdb_t *r = rocksdb_open_column_families(o, dir, (int)n, (const char *const *)names,
						    cfo, cf, &err);
	if (err == NULL) {
		rocksdb_writeoptions_t *wo = rocksdb_writeoptions_create();
		rocksdb_put_cf(r, wo, cf[def], key, strlen(key), val, len, &err);
		rocksdb_writeoptions_destroy(wo);
		for (size_t i = 0; i < n; i++)
			rocksdb_column_family_handle_destroy(cf[i]);
		rocksdb_close(r);
	}
	rocksdb_list_column_families_destroy(names, n);
	free(cf);
	free(cfo);
	rocksdb_options_destroy(o);
	return err;
}

/* tu_dir_listing - "name size mtime" of every entry of @dir, sorted, one per
 * line, in a malloc'd string (to check that something left a dir unchanged). */
static inline char *tu_dir_listing(const char *dir)
{
	char cmd[4096];
	snprintf(cmd, sizeof(cmd), "cd '%s' && stat -c '%%n %%s %%Y' * | sort", dir);
	FILE *p = popen(cmd, "r");
	if (p == NULL)
		return NULL;
	size_t cap = 4096, n = 0;
	char *out = malloc(cap);
	int c;
	while (out && (c = fgetc(p)) != EOF) {
		if (n + 1 >= cap)
			out = realloc(out, cap *= 2);
		if (out)
			out[n++] = (char)c;
	}
	pclose(p);
	if (out)
		out[n] = '\0';
	return out;
}

#endif
