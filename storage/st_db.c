/*
 * st_db: opening the data dir's RocksDB database, its meta records and the
 * durable Raft log + hard state.
 *
 * The database has four column families (default = meta, log, kv, rev; see
 * st_internal.h and docs/disk-format.md). Opening checks the on-disk format
 * version, maps RocksDB's failure texts to ST_* codes with a readable message,
 * and loads the few numbers the rest of the member needs (log bounds, keyspace
 * revision state) without scanning anything. The MVCC keyspace itself is
 * st_mvcc.c.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

#include "internal.pb-c.h"
#include "storage/st_internal.h"

static const char *const st_cf_names[ST_CF__COUNT] = {"default", "log", "kv", "rev", "lease"};

#define ST_MSG_ROW(name, msg) [name] = msg,
static const char *const st_messages[ST__COUNT] = {ST_ERRORS(ST_MSG_ROW)};
#undef ST_MSG_ROW

const char *st_strerror(int err)
{
	if (err < 0 || err >= ST__COUNT)
		return "unknown storage error";
	return st_messages[err];
}

int st__rocks_err(const char *msg)
{
	if (msg == NULL)
		return ST_OK;
	if (strstr(msg, "/LOCK") != NULL || strstr(msg, "lock hold") != NULL)
		return ST_ELOCKED;
	if (strstr(msg, "Permission denied") != NULL || strstr(msg, "Read-only file system") != NULL)
		return ST_EPERM;
	if (strstr(msg, "Corruption") != NULL)
		return ST_ECORRUPT;
	if (strstr(msg, "does not exist") != NULL)
		return ST_ENOTFOUND;
	if (strstr(msg, "Column famil") != NULL || strstr(msg, "Not implemented") != NULL)
		return ST_EFORMAT;
	return ST_EIO;
}

void st__kvstate_encode(const st_kv_state *s, uint8_t out[32])
{
	st_put_be64(out, s->applied);
	st_put_be64(out + 8, (uint64_t)s->rev);
	st_put_be64(out + 16, (uint64_t)s->compact_rev);
	st_put_be64(out + 24, (uint64_t)s->compact_done);
}

int st_buf_reserve(st_buf *b, size_t extra)
{
	if (b->len + extra <= b->cap)
		return ST_OK;
	size_t cap = b->cap ? b->cap : 64;
	while (cap < b->len + extra)
		cap *= 2;
	uint8_t *p = realloc(b->p, cap);
	if (p == NULL)
		return ST_ENOMEM;
	b->p = p;
	b->cap = cap;
	return ST_OK;
}

int st_buf_add(st_buf *b, const void *d, size_t n)
{
	if (st_buf_reserve(b, n) != ST_OK)
		return ST_ENOMEM;
	if (n > 0)
		memcpy(b->p + b->len, d, n);
	b->len += n;
	return ST_OK;
}

void st_errf(char *errbuf, size_t errlen, const char *fmt, ...)
{
	if (errbuf == NULL || errlen == 0)
		return;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(errbuf, errlen, fmt, ap);
	va_end(ap);
}

/* Create @dir and its parents (mode 0700 for the last one). Returns an errno. */
static int mkdir_p(const char *dir)
{
	char *p = strdup(dir);
	if (p == NULL)
		return ENOMEM;
	int rc = 0;
	for (char *s = p + 1; *s != '\0'; s++) {
		if (*s != '/')
			continue;
		*s = '\0';
		if (mkdir(p, 0755) != 0 && errno != EEXIST) {
			rc = errno;
			break;
		}
		*s = '/';
	}
	if (rc == 0 && mkdir(p, 0700) != 0 && errno != EEXIST)
		rc = errno;
	free(p);
	return rc;
}

static int errno_to_st(int e)
{
	switch (e) {
	case EACCES:
	case EPERM:
	case EROFS:
		return ST_EPERM;
	case ENOMEM:
		return ST_ENOMEM;
	case ENOENT:
		return ST_ENOTFOUND;
	case ENOTDIR:
		return ST_EINVAL;
	default:
		return ST_EIO;
	}
}

/* ---- the kv family's key prefix -------------------------------------------- */

/*
 * The prefix of a kv record key is everything but its revision: esc(key) 00 01,
 * shared by every version of one key. RocksDB keeps a bloom filter of these
 * prefixes per table file (and per memtable), so a one-key lookup skips every
 * file that holds no version of the key instead of reading a block of each
 * level. Only keys that end in 00 01 + a revision are in the domain.
 */
static char *kvpfx_transform(void *state, const char *key, size_t len, size_t *plen)
{
	(void)state;
	*plen = len - ST_KV_REV_LEN;
	return (char *)key;
}

static unsigned char kvpfx_in_domain(void *state, const char *key, size_t len)
{
	(void)state;
	return len >= 2 + ST_KV_REV_LEN && key[len - ST_KV_REV_LEN - 2] == 0 &&
	       key[len - ST_KV_REV_LEN - 1] == 1;
}

static unsigned char kvpfx_in_range(void *state, const char *key, size_t len)
{
	(void)state;
	(void)key;
	(void)len;
	return 0;
}

/* RocksDB calls it unconditionally when the extractor goes. */
static void kvpfx_destroy(void *state)
{
	(void)state;
}

static const char *kvpfx_name(void *state)
{
	(void)state;
	return "metastore.kv-key-prefix.1";
}

/* db->kv_opts: the families' options plus the prefix, its table-file blooms
 * and a bloom of whole keys (watch catch-up reads records by their full key). */
static int kv_options(st_db *db)
{
	db->kv_opts = rocksdb_options_create_copy(db->cf_opts);
	db->kv_table_opts = rocksdb_block_based_options_create();
	rocksdb_slicetransform_t *pfx = rocksdb_slicetransform_create(
	        NULL, kvpfx_destroy, kvpfx_transform, kvpfx_in_domain, kvpfx_in_range, kvpfx_name);
	rocksdb_filterpolicy_t *bloom = rocksdb_filterpolicy_create_bloom_full(10);
	if (db->kv_opts == NULL || db->kv_table_opts == NULL || pfx == NULL || bloom == NULL) {
		if (pfx != NULL)
			rocksdb_slicetransform_destroy(pfx);
		if (bloom != NULL)
			rocksdb_filterpolicy_destroy(bloom);
		return ST_ENOMEM;
	}
	rocksdb_block_based_options_set_block_cache(db->kv_table_opts, db->cache);
	/* 4 KiB blocks: a one-key read that misses the cache reads and inflates
	 * one small block, not 16 KiB of other keys */
	rocksdb_block_based_options_set_block_size(db->kv_table_opts, 4 * 1024);
	rocksdb_block_based_options_set_filter_policy(db->kv_table_opts, bloom); /* owns it */
	rocksdb_options_set_block_based_table_factory(db->kv_opts, db->kv_table_opts);
	rocksdb_options_set_prefix_extractor(db->kv_opts, pfx); /* owns it */
	/* No memtable prefix bloom: its bits live in the memtable's arena (2 % of
	 * the write buffer at once), which the backend size and the quota count:
	 * a fresh store would start over a small --quota-backend-bytes. */
	return ST_OK;
}

rocksdb_readoptions_t *st__readopts(void)
{
	rocksdb_readoptions_t *ro = rocksdb_readoptions_create();
	if (ro != NULL)
		rocksdb_readoptions_set_total_order_seek(ro, 1);
	return ro;
}

static void db_free(st_db *db)
{
	for (int i = 0; i < ST_CF__COUNT; i++)
		if (db->cf[i] != NULL)
			rocksdb_column_family_handle_destroy(db->cf[i]);
	if (db->rdb != NULL)
		rocksdb_close(db->rdb);
	if (db->wo != NULL)
		rocksdb_writeoptions_destroy(db->wo);
	if (db->wo_sync != NULL)
		rocksdb_writeoptions_destroy(db->wo_sync);
	if (db->ro != NULL)
		rocksdb_readoptions_destroy(db->ro);
	if (db->cf_opts != NULL)
		rocksdb_options_destroy(db->cf_opts);
	if (db->db_opts != NULL)
		rocksdb_options_destroy(db->db_opts);
	if (db->table_opts != NULL)
		rocksdb_block_based_options_destroy(db->table_opts);
	if (db->kv_opts != NULL)
		rocksdb_options_destroy(db->kv_opts);
	if (db->kv_table_opts != NULL)
		rocksdb_block_based_options_destroy(db->kv_table_opts);
	if (db->cache != NULL)
		rocksdb_cache_destroy(db->cache);
	if (db->grp_wb != NULL)
		rocksdb_writebatch_wi_destroy(db->grp_wb);
	free(db->ev);
	free(db->ev_data);
	st__latest_free(&db->latest);
	pthread_mutex_destroy(&db->mu);
	pthread_mutex_destroy(&db->bg_mu);
	pthread_cond_destroy(&db->bg_cv);
	free(db->dir);
	free(db);
}

/* Read a value of the default column family into a malloc'd buffer. */
int st__meta_get_raw(st_db *db, const char *key, char **val, size_t *len)
{
	char *err = NULL;
	*val = rocksdb_get_cf(db->rdb, db->ro, db->cf[ST_CF_DEFAULT], key, strlen(key), len, &err);
	if (err != NULL) {
		int rc = st__rocks_err(err);
		free(err);
		return rc == ST_ENOTFOUND ? ST_EIO : rc;
	}
	return *val == NULL ? ST_ENOTFOUND : ST_OK;
}

static int write_batch(st_db *db, rocksdb_writebatch_t *b, bool sync)
{
	char *err = NULL;
	rocksdb_write(db->rdb, sync ? db->wo_sync : db->wo, b, &err);
	if (err != NULL) {
		int rc = st__rocks_err(err);
		free(err);
		return rc == ST_ENOTFOUND ? ST_EIO : rc;
	}
	return ST_OK;
}

/* Write the records of a brand-new database: format version, revision state
 * (revision 1, like a fresh etcd) and an empty log base. Synced. */
static int init_fresh(st_db *db)
{
	uint8_t fmt[4] = {0, 0, 0, ST_FORMAT_VERSION};
	st_kv_state s = {.applied = 0, .rev = 1, .compact_rev = 0, .compact_done = 0};
	uint8_t kvs[32], base[16] = {0};
	st__kvstate_encode(&s, kvs);
	rocksdb_writebatch_t *b = rocksdb_writebatch_create();
	rocksdb_column_family_handle_t *cf = db->cf[ST_CF_DEFAULT];
	rocksdb_writebatch_put_cf(b, cf, ST_META_FORMAT, strlen(ST_META_FORMAT), (char *)fmt, 4);
	rocksdb_writebatch_put_cf(b, cf, ST_META_KVSTATE, strlen(ST_META_KVSTATE), (char *)kvs, 32);
	rocksdb_writebatch_put_cf(b, cf, ST_META_LOGBASE, strlen(ST_META_LOGBASE), (char *)base, 16);
	int rc = write_batch(db, b, true);
	rocksdb_writebatch_destroy(b);
	return rc;
}

static bool cf_is_empty(st_db *db, int cf)
{
	rocksdb_iterator_t *it = rocksdb_create_iterator_cf(db->rdb, db->ro, db->cf[cf]);
	rocksdb_iter_seek_to_first(it);
	bool empty = !rocksdb_iter_valid(it);
	rocksdb_iter_destroy(it);
	return empty;
}

/* Load format, revision state and log bounds from an opened database. */
static int load_meta(st_db *db, char *errbuf, size_t errlen)
{
	char *v = NULL;
	size_t len = 0;
	int rc = st__meta_get_raw(db, ST_META_FORMAT, &v, &len);
	if (rc == ST_ENOTFOUND) {
		/* A creation that crashed before its first write leaves empty families. */
		if (cf_is_empty(db, ST_CF_DEFAULT) && cf_is_empty(db, ST_CF_LOG) &&
		    cf_is_empty(db, ST_CF_KV) && cf_is_empty(db, ST_CF_REV)) {
			rc = init_fresh(db);
			if (rc != ST_OK) {
				st_errf(errbuf, errlen, "%s: cannot initialise data dir: %s", db->dir,
					st_strerror(rc));
				return rc;
			}
			return load_meta(db, errbuf, errlen);
		}
		st_errf(errbuf, errlen, "%s: no format version record: not a metastore data dir",
			db->dir);
		return ST_EFORMAT;
	}
	if (rc != ST_OK) {
		st_errf(errbuf, errlen, "%s: cannot read format version: %s", db->dir, st_strerror(rc));
		return rc;
	}
	if (len != 4) {
		free(v);
		st_errf(errbuf, errlen, "%s: format version record has %zu bytes, want 4", db->dir, len);
		return ST_ECORRUPT;
	}
	uint32_t fmt = ((uint32_t)(uint8_t)v[0] << 24) | ((uint32_t)(uint8_t)v[1] << 16) |
		       ((uint32_t)(uint8_t)v[2] << 8) | (uint8_t)v[3];
	free(v);
	if (fmt < ST_FORMAT_OLDEST || fmt > ST_FORMAT_VERSION) {
		st_errf(errbuf, errlen,
			"%s: on-disk format version %u, this build reads versions %u to %u", db->dir,
			fmt, ST_FORMAT_OLDEST, ST_FORMAT_VERSION);
		return ST_EFORMAT;
	}
	db->format = fmt;

	rc = st__meta_get_raw(db, ST_META_KVSTATE, &v, &len);
	if (rc != ST_OK || len != 32) {
		if (rc == ST_OK)
			free(v);
		st_errf(errbuf, errlen, "%s: keyspace state record missing or malformed", db->dir);
		return rc == ST_OK || rc == ST_ENOTFOUND ? ST_ECORRUPT : rc;
	}
	const uint8_t *u = (const uint8_t *)v;
	db->kv.applied = st_get_be64(u);
	db->kv.rev = (int64_t)st_get_be64(u + 8);
	db->kv.compact_rev = (int64_t)st_get_be64(u + 16);
	db->kv.compact_done = (int64_t)st_get_be64(u + 24);
	free(v);
	if (db->kv.rev < 1 || db->kv.compact_rev < 0 || db->kv.compact_rev > db->kv.rev ||
	    db->kv.compact_done > db->kv.compact_rev) {
		st_errf(errbuf, errlen, "%s: keyspace state record is inconsistent", db->dir);
		return ST_ECORRUPT;
	}

	rc = st__meta_get_raw(db, ST_META_LOGBASE, &v, &len);
	if (rc != ST_OK || len != 16) {
		if (rc == ST_OK)
			free(v);
		st_errf(errbuf, errlen, "%s: log base record missing or malformed", db->dir);
		return rc == ST_OK || rc == ST_ENOTFOUND ? ST_ECORRUPT : rc;
	}
	db->log_base_index = st_get_be64((const uint8_t *)v);
	db->log_base_term = st_get_be64((const uint8_t *)v + 8);
	free(v);

	db->log_last_index = db->log_base_index;
	rocksdb_iterator_t *it = rocksdb_create_iterator_cf(db->rdb, db->ro, db->cf[ST_CF_LOG]);
	rocksdb_iter_seek_to_last(it);
	if (rocksdb_iter_valid(it)) {
		size_t kl;
		const char *k = rocksdb_iter_key(it, &kl);
		if (kl != 8) {
			rocksdb_iter_destroy(it);
			st_errf(errbuf, errlen, "%s: malformed log key", db->dir);
			return ST_ECORRUPT;
		}
		uint64_t last = st_get_be64((const uint8_t *)k);
		if (last > db->log_last_index)
			db->log_last_index = last;
	}
	rocksdb_iter_destroy(it);
	return ST_OK;
}

int st_db_open(const char *dir, const st_options *opts, st_db **out, char *errbuf, size_t errlen)
{
	bool create = opts != NULL && opts->create_if_missing;
	struct stat st;
	*out = NULL;
	st_errf(errbuf, errlen, "ok");

	if (stat(dir, &st) != 0) {
		if (errno != ENOENT) {
			int e = errno;
			st_errf(errbuf, errlen, "data dir %s: %s", dir, strerror(e));
			return errno_to_st(e);
		}
		if (!create) {
			st_errf(errbuf, errlen, "data dir %s does not exist", dir);
			return ST_ENOTFOUND;
		}
		int e = mkdir_p(dir);
		if (e != 0) {
			st_errf(errbuf, errlen, "cannot create data dir %s: %s", dir, strerror(e));
			return errno_to_st(e);
		}
	} else if (!S_ISDIR(st.st_mode)) {
		st_errf(errbuf, errlen, "data dir %s is not a directory", dir);
		return ST_EINVAL;
	}
	if (access(dir, R_OK | W_OK | X_OK) != 0) {
		int e = errno;
		st_errf(errbuf, errlen, "data dir %s: %s", dir, strerror(e));
		return errno_to_st(e);
	}

	size_t dlen = strlen(dir);
	char *current = malloc(dlen + 16);
	if (current == NULL)
		return ST_ENOMEM;
	snprintf(current, dlen + 16, "%s/CURRENT", dir);
	bool exists = stat(current, &st) == 0;
	free(current);
	if (!exists && !create) {
		st_errf(errbuf, errlen, "data dir %s holds no database", dir);
		return ST_ENOTFOUND;
	}

	st_db *db = calloc(1, sizeof(*db));
	if (db == NULL)
		return ST_ENOMEM;
	pthread_mutex_init(&db->mu, NULL);
	pthread_mutex_init(&db->bg_mu, NULL);
	(void)st__latest_init(&db->latest, ST_LATEST_SETS); /* off when memory is short */
	pthread_cond_init(&db->bg_cv, NULL);
	db->dir = strdup(dir);
	db->db_opts = rocksdb_options_create();
	db->cf_opts = rocksdb_options_create();
	db->table_opts = rocksdb_block_based_options_create();
	db->cache = rocksdb_cache_create_lru(64u << 20);
	db->wo = rocksdb_writeoptions_create();
	db->wo_sync = rocksdb_writeoptions_create();
	db->ro = st__readopts();
	if (db->dir == NULL || db->db_opts == NULL || db->cf_opts == NULL || db->table_opts == NULL ||
	    db->cache == NULL || db->wo == NULL || db->wo_sync == NULL || db->ro == NULL) {
		db_free(db);
		return ST_ENOMEM;
	}
	rocksdb_writeoptions_set_sync(db->wo_sync, 1);

	rocksdb_options_set_create_if_missing(db->db_opts, !exists);
	rocksdb_options_set_create_missing_column_families(db->db_opts, !exists);
	rocksdb_options_set_keep_log_file_num(db->db_opts, 4);
	rocksdb_options_set_max_log_file_size(db->db_opts, 8u << 20);
	rocksdb_options_increase_parallelism(db->db_opts, 2);
	/* Bound what a crash leaves to replay: past 32 MiB of WAL the oldest
	 * memtables are flushed (docs/disk-format.md, restart time). */
	rocksdb_options_set_max_total_wal_size(db->db_opts, 32u << 20);

	rocksdb_block_based_options_set_block_cache(db->table_opts, db->cache);
	rocksdb_block_based_options_set_block_size(db->table_opts, 16 * 1024);
	rocksdb_options_set_block_based_table_factory(db->cf_opts, db->table_opts);
	/* LZ4 on every level: ZSTD on the bottommost one (where most data sits)
	 * saved a third to half of the disk but cost 1.5 times the CPU of a
	 * one-key read that misses the block cache (docs/benchmarks.md,
	 * 2026-12-04). */
	rocksdb_options_set_compression(db->cf_opts, rocksdb_lz4_compression);
	rocksdb_options_set_level_compaction_dynamic_level_bytes(db->cf_opts, 1);
	/* Small arena blocks: a memtable's accounted size (st_db_size, the quota)
	 * then follows the data it holds, not 1 MiB allocation steps. */
	rocksdb_options_set_arena_block_size(db->cf_opts, 16u << 10);
	if (kv_options(db) != ST_OK) {
		db_free(db);
		return ST_ENOMEM;
	}

	if (exists) {
		/* Refuse a RocksDB database that is not ours before touching it. */
		char *err = NULL;
		size_t ncf = 0;
		char **names = rocksdb_list_column_families(db->db_opts, dir, &ncf, &err);
		if (err != NULL) {
			free(names); /* RocksDB allocates the (empty) array even on error */
			int rc = st__rocks_err(err);
			if (rc == ST_ENOTFOUND)
				rc = ST_ECORRUPT;
			st_errf(errbuf, errlen, "cannot read data dir %s: %s", dir, err);
			free(err);
			db_free(db);
			return rc;
		}
		int found = 0;
		for (int i = 0; i < ST_CF__REQUIRED; i++)
			for (size_t j = 0; j < ncf; j++)
				if (strcmp(names[j], st_cf_names[i]) == 0) {
					found++;
					break;
				}
		rocksdb_list_column_families_destroy(names, ncf);
		if (found != ST_CF__REQUIRED) {
			st_errf(errbuf, errlen,
				"data dir %s holds a RocksDB database without metastore's column "
				"families (log, kv, rev): not a metastore data dir",
				dir);
			db_free(db);
			return ST_EFORMAT;
		}
	}

	/* A format-1 dir from before leases lacks only the "lease" family. */
	rocksdb_options_set_create_missing_column_families(db->db_opts, 1);
	const rocksdb_options_t *cfo[ST_CF__COUNT];
	for (int i = 0; i < ST_CF__COUNT; i++)
		cfo[i] = i == ST_CF_KV ? db->kv_opts : db->cf_opts;
	char *err = NULL;
	db->rdb = rocksdb_open_column_families(db->db_opts, dir, ST_CF__COUNT, st_cf_names, cfo,
					       db->cf, &err);
	if (err != NULL) {
		int rc = st__rocks_err(err);
		if (rc == ST_ELOCKED)
			st_errf(errbuf, errlen,
				"data dir %s is locked by another process (is another metastore "
				"running on it?): %s",
				dir, err);
		else
			st_errf(errbuf, errlen, "cannot open data dir %s: %s", dir, err);
		free(err);
		db->rdb = NULL;
		for (int i = 0; i < ST_CF__COUNT; i++)
			db->cf[i] = NULL;
		db_free(db);
		return rc == ST_ENOTFOUND ? ST_ECORRUPT : rc;
	}

	int rc = exists ? ST_OK : init_fresh(db);
	if (rc != ST_OK) {
		st_errf(errbuf, errlen, "cannot initialise data dir %s: %s", dir, st_strerror(rc));
		db_free(db);
		return rc;
	}
	rc = load_meta(db, errbuf, errlen);
	if (rc != ST_OK) {
		db_free(db);
		return rc;
	}
	(void)st__kf_start(&db->kf, db); /* off (always "maybe") when it cannot start */
	*out = db;
	return ST_OK;
}

void st_db_close(st_db *db)
{
	if (db == NULL)
		return;
	st__mvcc_stop_background(db);
	st__kf_stop(&db->kf);
	/* A graceful close flushes the memtables so that the next open has no WAL
	 * to replay (after a crash RocksDB replays it: docs/disk-format.md). */
	rocksdb_flushoptions_t *fo = rocksdb_flushoptions_create();
	if (fo != NULL) {
		rocksdb_flushoptions_set_wait(fo, 1);
		for (int i = 0; i < ST_CF__COUNT; i++) {
			char *err = NULL;
			rocksdb_flush_cf(db->rdb, fo, db->cf[i], &err);
			free(err);
		}
		rocksdb_flushoptions_destroy(fo);
	}
	db_free(db);
}

void st_db_size(st_db *db, int64_t *total_bytes, int64_t *in_use_bytes)
{
	/* etcd's backend holds the keyspace and meta, not the raft log (its WAL
	 * lives apart): the log family is left out, like RocksDB's own WAL, info
	 * LOG, MANIFEST and OPTIONS files. SST bytes still referenced count as
	 * etcd counts free pages; live data + memtables is "in use". */
	int64_t total = 0, in_use = 0;
	for (int i = 0; i < ST_CF__COUNT; i++) {
		if (i == ST_CF_LOG)
			continue;
		uint64_t sst = 0, live = 0, mem = 0;
		rocksdb_property_int_cf(db->rdb, db->cf[i], "rocksdb.total-sst-files-size", &sst);
		rocksdb_property_int_cf(db->rdb, db->cf[i], "rocksdb.estimate-live-data-size", &live);
		rocksdb_property_int_cf(db->rdb, db->cf[i], "rocksdb.cur-size-all-mem-tables", &mem);
		if (live > sst)
			live = sst;
		total += (int64_t)(sst + mem);
		in_use += (int64_t)(live + mem);
	}
	if (total_bytes != NULL)
		*total_bytes = total;
	if (in_use_bytes != NULL)
		*in_use_bytes = in_use;
}

int st_db_compact_files(st_db *db)
{
	rocksdb_flushoptions_t *fo = rocksdb_flushoptions_create();
	rocksdb_flushoptions_set_wait(fo, 1);
	char *err = NULL;
	for (int i = 0; i < ST_CF__COUNT && err == NULL; i++)
		rocksdb_flush_cf(db->rdb, fo, db->cf[i], &err);
	rocksdb_flushoptions_destroy(fo);
	if (err != NULL) {
		free(err);
		return ST_EIO;
	}
	for (int i = 0; i < ST_CF__COUNT; i++)
		rocksdb_compact_range_cf(db->rdb, db->cf[i], NULL, 0, NULL, 0);
	return ST_OK;
}

uint32_t st_db_format(st_db *db)
{
	return db->format;
}

int st_db_set_format(st_db *db, uint32_t version)
{
	if (version < ST_FORMAT_OLDEST || version > ST_FORMAT_VERSION)
		return ST_EINVAL;
	uint8_t fmt[4] = {(uint8_t)(version >> 24), (uint8_t)(version >> 16), (uint8_t)(version >> 8),
			  (uint8_t)version};
	rocksdb_writebatch_t *b = rocksdb_writebatch_create();
	if (b == NULL)
		return ST_ENOMEM;
	rocksdb_writebatch_put_cf(b, db->cf[ST_CF_DEFAULT], ST_META_FORMAT, strlen(ST_META_FORMAT),
				  (char *)fmt, 4);
	int rc = write_batch(db, b, true);
	rocksdb_writebatch_destroy(b);
	if (rc == ST_OK)
		db->format = version;
	return rc;
}

/* ---- the log ---------------------------------------------------------- */

int st_log_append(st_db *db, const st_entry *ents, size_t n, const st_hardstate *hs, bool sync)
{
	if (n == 0 && hs == NULL)
		return ST_OK;
	for (size_t i = 1; i < n; i++)
		if (ents[i].index != ents[i - 1].index + 1)
			return ST_EINVAL;

	rocksdb_writebatch_t *b = rocksdb_writebatch_create();
	if (b == NULL)
		return ST_ENOMEM;
	/* Appends come from the node thread only, so the bounds cannot move under us:
	 * read them under the mutex, but never hold it across the (synced) write,
	 * which readers of the log bounds would otherwise wait behind. */
	pthread_mutex_lock(&db->mu);
	uint64_t base = db->log_base_index, last = db->log_last_index;
	pthread_mutex_unlock(&db->mu);
	int rc = ST_OK;
	uint8_t *buf = NULL;
	size_t cap = 0;
	if (n > 0) {
		uint64_t first = ents[0].index;
		if (first <= base || first > last + 1) {
			rc = ST_EINVAL; /* overwrites compacted entries, or leaves a gap */
			goto out;
		}
		if (first <= last) {
			uint8_t lo[8], hi[8];
			st_put_be64(lo, first);
			st_put_be64(hi, last + 1);
			rocksdb_writebatch_delete_range_cf(b, db->cf[ST_CF_LOG], (char *)lo, 8, (char *)hi, 8);
		}
		for (size_t i = 0; i < n; i++) {
			Metastore__LogEntry le = METASTORE__LOG_ENTRY__INIT;
			le.format = 1;
			le.term = ents[i].term;
			le.index = ents[i].index;
			le.type = (Metastore__EntryType)ents[i].type;
			le.data.data = ents[i].data;
			le.data.len = ents[i].len;
			size_t sz = metastore__log_entry__get_packed_size(&le);
			if (sz > cap) {
				uint8_t *nb = realloc(buf, sz);
				if (nb == NULL) {
					rc = ST_ENOMEM;
					goto out;
				}
				buf = nb;
				cap = sz;
			}
			metastore__log_entry__pack(&le, buf);
			uint8_t key[8];
			st_put_be64(key, ents[i].index);
			rocksdb_writebatch_put_cf(b, db->cf[ST_CF_LOG], (char *)key, 8, (char *)buf, sz);
		}
	}
	if (hs != NULL) {
		Metastore__HardState h = METASTORE__HARD_STATE__INIT;
		uint8_t hb[64];
		h.format = 1;
		h.term = hs->term;
		h.vote = hs->vote;
		h.commit = hs->commit;
		size_t sz = metastore__hard_state__pack(&h, hb);
		rocksdb_writebatch_put_cf(b, db->cf[ST_CF_DEFAULT], ST_META_HARDSTATE,
					  strlen(ST_META_HARDSTATE), (char *)hb, sz);
	}
	rc = write_batch(db, b, sync);
	if (rc == ST_OK && n > 0) {
		pthread_mutex_lock(&db->mu);
		db->log_last_index = ents[n - 1].index;
		pthread_mutex_unlock(&db->mu);
	}
out:
	free(buf);
	rocksdb_writebatch_destroy(b);
	return rc;
}

/* Decode one stored log record, checking it sits at @index. */
static int decode_entry(const char *v, size_t vl, uint64_t index, st_entry *e, bool want_data)
{
	Metastore__LogEntry *le = metastore__log_entry__unpack(NULL, vl, (const uint8_t *)v);
	if (le == NULL)
		return ST_ECORRUPT;
	if (le->format != 1 || le->index != index) {
		metastore__log_entry__free_unpacked(le, NULL);
		return le->format != 1 ? ST_EFORMAT : ST_ECORRUPT;
	}
	e->term = le->term;
	e->index = le->index;
	e->type = (uint32_t)le->type;
	e->data = NULL;
	e->len = 0;
	if (want_data && le->data.len > 0) {
		e->data = malloc(le->data.len);
		if (e->data == NULL) {
			metastore__log_entry__free_unpacked(le, NULL);
			return ST_ENOMEM;
		}
		memcpy(e->data, le->data.data, le->data.len);
		e->len = le->data.len;
	}
	metastore__log_entry__free_unpacked(le, NULL);
	return ST_OK;
}

int st_log_entries(st_db *db, uint64_t lo, uint64_t hi, uint64_t max_bytes, st_entry **out, size_t *n)
{
	*out = NULL;
	*n = 0;
	pthread_mutex_lock(&db->mu);
	uint64_t base = db->log_base_index, last = db->log_last_index;
	pthread_mutex_unlock(&db->mu);
	if (lo <= base)
		return ST_ECOMPACTED;
	if (hi > last + 1)
		return ST_EUNAVAILABLE;
	if (lo >= hi)
		return ST_OK;

	size_t cap = (size_t)(hi - lo) < 64 ? (size_t)(hi - lo) : 64;
	st_entry *ents = malloc(cap * sizeof(*ents));
	if (ents == NULL)
		return ST_ENOMEM;
	uint8_t lok[8], hik[8];
	st_put_be64(lok, lo);
	st_put_be64(hik, hi);
	rocksdb_readoptions_t *ro = st__readopts();
	rocksdb_readoptions_set_iterate_lower_bound(ro, (char *)lok, 8);
	rocksdb_readoptions_set_iterate_upper_bound(ro, (char *)hik, 8);
	rocksdb_iterator_t *it = rocksdb_create_iterator_cf(db->rdb, ro, db->cf[ST_CF_LOG]);
	int rc = ST_OK;
	size_t cnt = 0;
	uint64_t bytes = 0, want = lo;
	for (rocksdb_iter_seek(it, (char *)lok, 8); rocksdb_iter_valid(it); rocksdb_iter_next(it)) {
		size_t kl, vl;
		const char *k = rocksdb_iter_key(it, &kl);
		const char *v = rocksdb_iter_value(it, &vl);
		if (kl != 8 || st_get_be64((const uint8_t *)k) != want) {
			rc = ST_ECORRUPT; /* a hole in the log */
			break;
		}
		st_entry e;
		rc = decode_entry(v, vl, want, &e, true);
		if (rc != ST_OK)
			break;
		if (cnt > 0 && bytes + e.len > max_bytes) {
			free(e.data);
			break;
		}
		if (cnt == cap) {
			st_entry *ne = realloc(ents, cap * 2 * sizeof(*ents));
			if (ne == NULL) {
				free(e.data);
				rc = ST_ENOMEM;
				break;
			}
			ents = ne;
			cap *= 2;
		}
		ents[cnt++] = e;
		bytes += e.len;
		want++;
	}
	if (rc == ST_OK) {
		char *err = NULL;
		rocksdb_iter_get_error(it, &err);
		if (err != NULL) {
			free(err);
			rc = ST_EIO;
		} else if (cnt == 0) {
			rc = ST_ECORRUPT; /* bounds said the entries exist */
		}
	}
	rocksdb_iter_destroy(it);
	rocksdb_readoptions_destroy(ro);
	if (rc != ST_OK) {
		st_entries_free(ents, cnt);
		return rc;
	}
	*out = ents;
	*n = cnt;
	return ST_OK;
}

void st_entries_free(st_entry *ents, size_t n)
{
	if (ents == NULL)
		return;
	for (size_t i = 0; i < n; i++)
		free(ents[i].data);
	free(ents);
}

int st_log_term(st_db *db, uint64_t index, uint64_t *term)
{
	pthread_mutex_lock(&db->mu);
	uint64_t base = db->log_base_index, bterm = db->log_base_term, last = db->log_last_index;
	pthread_mutex_unlock(&db->mu);
	if (index == base) {
		*term = bterm;
		return ST_OK;
	}
	if (index < base)
		return ST_ECOMPACTED;
	if (index > last)
		return ST_EUNAVAILABLE;
	uint8_t key[8];
	st_put_be64(key, index);
	char *err = NULL;
	size_t vl;
	char *v = rocksdb_get_cf(db->rdb, db->ro, db->cf[ST_CF_LOG], (char *)key, 8, &vl, &err);
	if (err != NULL) {
		free(err);
		return ST_EIO;
	}
	if (v == NULL)
		return ST_ECORRUPT;
	st_entry e;
	int rc = decode_entry(v, vl, index, &e, false);
	free(v);
	if (rc == ST_OK)
		*term = e.term;
	return rc;
}

uint64_t st_log_first_index(st_db *db)
{
	pthread_mutex_lock(&db->mu);
	uint64_t v = db->log_base_index + 1;
	pthread_mutex_unlock(&db->mu);
	return v;
}

uint64_t st_log_last_index(st_db *db)
{
	pthread_mutex_lock(&db->mu);
	uint64_t v = db->log_last_index;
	pthread_mutex_unlock(&db->mu);
	return v;
}

/* Batch: drop log keys in [from, to) and set the base to (@index, @term). */
static int write_log_base(st_db *db, uint64_t from, uint64_t to, uint64_t index, uint64_t term,
			  bool sync)
{
	rocksdb_writebatch_t *b = rocksdb_writebatch_create();
	if (b == NULL)
		return ST_ENOMEM;
	if (from < to) {
		uint8_t lo[8], hi[8];
		st_put_be64(lo, from);
		st_put_be64(hi, to);
		rocksdb_writebatch_delete_range_cf(b, db->cf[ST_CF_LOG], (char *)lo, 8, (char *)hi, 8);
	}
	uint8_t base[16];
	st_put_be64(base, index);
	st_put_be64(base + 8, term);
	rocksdb_writebatch_put_cf(b, db->cf[ST_CF_DEFAULT], ST_META_LOGBASE, strlen(ST_META_LOGBASE),
				  (char *)base, 16);
	int rc = write_batch(db, b, sync);
	rocksdb_writebatch_destroy(b);
	return rc;
}

int st_log_compact(st_db *db, uint64_t index)
{
	uint64_t term;
	pthread_mutex_lock(&db->mu);
	uint64_t base = db->log_base_index, last = db->log_last_index;
	pthread_mutex_unlock(&db->mu);
	if (index <= base)
		return ST_OK;
	if (index > last)
		return ST_EUNAVAILABLE;
	int rc = st_log_term(db, index, &term);
	if (rc != ST_OK)
		return rc;
	rc = write_log_base(db, base + 1, index + 1, index, term, false);
	if (rc != ST_OK)
		return rc;
	pthread_mutex_lock(&db->mu);
	db->log_base_index = index;
	db->log_base_term = term;
	pthread_mutex_unlock(&db->mu);
	return ST_OK;
}

int st_log_reset(st_db *db, uint64_t index, uint64_t term)
{
	pthread_mutex_lock(&db->mu);
	uint64_t base = db->log_base_index, last = db->log_last_index;
	pthread_mutex_unlock(&db->mu);
	uint64_t hi = (last > index ? last : index) + 1;
	int rc = write_log_base(db, base < 1 ? 1 : base, hi, index, term, true);
	if (rc != ST_OK)
		return rc;
	pthread_mutex_lock(&db->mu);
	db->log_base_index = index;
	db->log_base_term = term;
	db->log_last_index = index;
	pthread_mutex_unlock(&db->mu);
	return ST_OK;
}

int st_hardstate_load(st_db *db, st_hardstate *hs)
{
	memset(hs, 0, sizeof(*hs));
	char *v = NULL;
	size_t len = 0;
	int rc = st__meta_get_raw(db, ST_META_HARDSTATE, &v, &len);
	if (rc == ST_ENOTFOUND)
		return ST_OK;
	if (rc != ST_OK)
		return rc;
	Metastore__HardState *h = metastore__hard_state__unpack(NULL, len, (const uint8_t *)v);
	free(v);
	if (h == NULL)
		return ST_ECORRUPT;
	if (h->format != 1) {
		metastore__hard_state__free_unpacked(h, NULL);
		return ST_EFORMAT;
	}
	hs->term = h->term;
	hs->vote = h->vote;
	hs->commit = h->commit;
	metastore__hard_state__free_unpacked(h, NULL);
	return ST_OK;
}

/* "m." + name in a caller buffer, or NULL when it does not fit. */
static char *user_meta_key(const char *name, char *buf, size_t cap, size_t *len)
{
	size_t nl = strlen(name);
	size_t pl = strlen(ST_META_USER_PREFIX);
	if (nl == 0 || pl + nl + 1 > cap)
		return NULL;
	memcpy(buf, ST_META_USER_PREFIX, pl);
	memcpy(buf + pl, name, nl + 1);
	*len = pl + nl;
	return buf;
}

int st_meta_put(st_db *db, const char *name, const void *val, size_t len, bool sync)
{
	char kb[256];
	size_t kl;
	if (user_meta_key(name, kb, sizeof(kb), &kl) == NULL)
		return ST_EINVAL;
	rocksdb_writebatch_t *b = rocksdb_writebatch_create();
	if (b == NULL)
		return ST_ENOMEM;
	rocksdb_writebatch_put_cf(b, db->cf[ST_CF_DEFAULT], kb, kl, (const char *)val, len);
	int rc = write_batch(db, b, sync);
	rocksdb_writebatch_destroy(b);
	return rc;
}

int st_db_peek_meta(const char *dir, const char *name, void **val, size_t *len)
{
	char kb[256];
	size_t kl;
	*val = NULL;
	*len = 0;
	if (user_meta_key(name, kb, sizeof(kb), &kl) == NULL)
		return ST_EINVAL;
	size_t dlen = strlen(dir);
	char *current = malloc(dlen + 16);
	if (current == NULL)
		return ST_ENOMEM;
	snprintf(current, dlen + 16, "%s/CURRENT", dir);
	struct stat sb;
	bool exists = stat(current, &sb) == 0;
	free(current);
	if (!exists)
		return ST_ENOTFOUND;
	/* A dir another process holds (RocksDB's fcntl lock on LOCK) is left to
	 * st_db_open to report. */
	char *lockf = malloc(dlen + 16);
	if (lockf == NULL)
		return ST_ENOMEM;
	snprintf(lockf, dlen + 16, "%s/LOCK", dir);
	int lfd = open(lockf, O_RDONLY);
	free(lockf);
	if (lfd >= 0) {
		struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET};
		bool held = fcntl(lfd, F_GETLK, &fl) == 0 && fl.l_type != F_UNLCK;
		close(lfd);
		if (held)
			return ST_ELOCKED;
	}
	rocksdb_options_t *opts = rocksdb_options_create();
	if (opts == NULL)
		return ST_ENOMEM;
	char *err = NULL;
	size_t ncf = 0;
	char **names = rocksdb_list_column_families(opts, dir, &ncf, &err);
	int rc = ST_OK;
	rocksdb_column_family_handle_t **cfs = NULL;
	const rocksdb_options_t **cfo = NULL;
	rocksdb_t *rdb = NULL;
	if (err != NULL) {
		rc = ST_ECORRUPT;
		goto out;
	}
	cfs = calloc(ncf ? ncf : 1, sizeof(*cfs));
	cfo = calloc(ncf ? ncf : 1, sizeof(*cfo));
	if (cfs == NULL || cfo == NULL) {
		rc = ST_ENOMEM;
		goto out;
	}
	for (size_t i = 0; i < ncf; i++)
		cfo[i] = opts;
	/* Read-only: no lock, no new WAL or manifest; the dir is left as it is. */
	rdb = rocksdb_open_for_read_only_column_families(opts, dir, (int)ncf,
							 (const char *const *)names, cfo, cfs, 0, &err);
	if (err != NULL) {
		rc = st__rocks_err(err);
		rdb = NULL;
		goto out;
	}
	size_t di = 0;
	while (di < ncf && strcmp(names[di], "default") != 0)
		di++;
	if (di == ncf) {
		rc = ST_EFORMAT;
		goto out;
	}
	rocksdb_readoptions_t *ro = st__readopts();
	char *v = rocksdb_get_cf(rdb, ro, cfs[di], kb, kl, len, &err);
	rocksdb_readoptions_destroy(ro);
	if (err != NULL) {
		rc = ST_EIO;
	} else if (v == NULL) {
		rc = ST_ENOTFOUND;
	} else {
		*val = malloc(*len ? *len : 1);
		if (*val == NULL)
			rc = ST_ENOMEM;
		else
			memcpy(*val, v, *len);
		free(v);
	}
out:
	free(err);
	for (size_t i = 0; rdb && i < ncf; i++)
		rocksdb_column_family_handle_destroy(cfs[i]);
	if (rdb)
		rocksdb_close(rdb);
	free(cfs);
	free(cfo);
	if (names)
		rocksdb_list_column_families_destroy(names, ncf);
	rocksdb_options_destroy(opts);
	return rc;
}

int st_meta_get(st_db *db, const char *name, void **val, size_t *len)
{
	char kb[256];
	size_t kl;
	*val = NULL;
	*len = 0;
	if (user_meta_key(name, kb, sizeof(kb), &kl) == NULL)
		return ST_EINVAL;
	char *v;
	int rc = st__meta_get_raw(db, kb, &v, len);
	if (rc != ST_OK)
		return rc;
	if (*len == 0) {
		/* RocksDB hands back a non-NULL pointer for empty values; keep the
		 * contract simple: the caller may always free() *val. */
		free(v);
		v = malloc(1);
		if (v == NULL)
			return ST_ENOMEM;
	}
	*val = v;
	return ST_OK;
}
