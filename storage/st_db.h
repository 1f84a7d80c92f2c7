/*
 * st_db: the one RocksDB instance behind a metastore member, and the durable log.
 *
 * A data dir holds one RocksDB database with column families for the replicated
 * log ("log"), the MVCC keyspace (see st_mvcc.h) and small metadata ("default").
 * This header covers opening/closing that database and the log + hard state the
 * node loop persists (DESIGN.md, node loop step 3: entries + hard state in ONE
 * synced write batch = group commit). Only storage/ includes rocksdb/c.h.
 *
 * Threading: st_db is safe to use from several threads for reads; writes to the
 * log come from the node thread only.
 */
#ifndef METASTORE_ST_DB_H
#define METASTORE_ST_DB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Storage error codes: 0 is success; st_strerror() names them. */
#define ST_ERRORS(X)                                                       \
	X(ST_OK, "ok")                                                         \
	X(ST_ENOMEM, "out of memory")                                          \
	X(ST_EIO, "I/O error")                                                 \
	X(ST_ECORRUPT, "data is corrupt")                                      \
	X(ST_ELOCKED, "data dir is locked by another process")                 \
	X(ST_EPERM, "permission denied on data dir")                           \
	X(ST_ENOTFOUND, "not found")                                           \
	X(ST_ECOMPACTED, "index is compacted away")                            \
	X(ST_EUNAVAILABLE, "index is not yet available")                       \
	X(ST_EFORMAT, "unsupported on-disk format version")                    \
	X(ST_EINVAL, "invalid argument")

#define ST_ENUM_ROW(name, msg) name,
enum { ST_ERRORS(ST_ENUM_ROW) ST__COUNT };
#undef ST_ENUM_ROW

/* st_strerror - static name of a storage error code. */
const char *st_strerror(int err);

/*
 * st_errf - format an error reason into @err (@errlen bytes, always
 * terminated); does nothing when @err is NULL or @errlen is 0. The one helper
 * storage and etcdcompat use to fill their callers' err buffers (server/ has
 * srv_errf, which does not pull storage into its logger).
 */
void st_errf(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* A growable byte buffer (zero-initialise; free(.p) when done), shared by the
 * storage and etcdcompat encoders. */
typedef struct st_buf {
	uint8_t *p;
	size_t len, cap;
} st_buf;

/* st_buf_reserve - room for @extra more bytes after .len (capacity doubles from
 * 64). Returns ST_OK or ST_ENOMEM (@b unchanged). */
int st_buf_reserve(st_buf *b, size_t extra);

/* st_buf_add - append @n bytes of @d. Returns ST_OK or ST_ENOMEM. */
int st_buf_add(st_buf *b, const void *d, size_t n);

typedef struct st_db st_db;

typedef struct st_options {
	/* Create the data dir and a fresh database when it does not exist. */
	bool create_if_missing;
} st_options;

/*
 * st_db_open - open (or create) the database in @dir.
 * @errbuf: on failure, receives a one-line human description including the path
 *          and the underlying cause (e.g. RocksDB's lock error text).
 * Returns 0 and sets *@out, or ST_ELOCKED (another process holds the dir),
 * ST_EPERM, ST_ECORRUPT (unreadable/corrupt database or meta), ST_EFORMAT
 * (a RocksDB database that is not metastore's, or another format version),
 * ST_ENOTFOUND (no database and !create_if_missing; @opts NULL means that),
 * ST_EINVAL (@dir is not a directory), ST_EIO, ST_ENOMEM. The caller owns *@out and frees it with st_db_close().
 */
int st_db_open(const char *dir, const st_options *opts, st_db **out, char *errbuf, size_t errlen);

/* st_db_close - flush the memtables (so the next open replays no WAL), release
 * the lock and free @db. NULL is ok. */
void st_db_close(st_db *db);

/*
 * st_db_format - the on-disk format version of the open data dir (1: a single
 * member from before clustering; 2: current, docs/disk-format.md).
 * st_db_set_format - record that the dir now holds format @version (after the
 * caller upgraded it); synced. Returns 0, ST_EINVAL (a version this build does
 * not know) or ST_EIO.
 */
uint32_t st_db_format(st_db *db);
int st_db_set_format(st_db *db, uint32_t version);

/* st_db_size - the backend's size as etcd reports it (Status dbSize, the
 * quota): SST files + memtables of every family but the raft log (etcd keeps
 * its WAL outside the backend); and the part holding live data (RocksDB's
 * live-data estimate + memtables; never above the total). Either pointer may
 * be NULL. Cheap (a few in-memory properties); any thread. */
void st_db_size(st_db *db, int64_t *total_bytes, int64_t *in_use_bytes);

/* st_db_compact_files - flush memtables and run a full RocksDB compaction of
 * every column family (etcd's "defragment"); blocks until done. Returns 0 or
 * ST_EIO. */
int st_db_compact_files(st_db *db);

/* One log entry as persisted. @data is borrowed by st_log_append and owned (malloc)
 * by the caller of st_log_entries, freed with st_entries_free(). */
typedef struct st_entry {
	uint64_t term;
	uint64_t index;
	uint32_t type; /* METASTORE__ENTRY_TYPE__* from internal.proto */
	uint8_t *data;
	size_t len;
} st_entry;

typedef struct st_hardstate {
	uint64_t term;
	uint64_t vote;
	uint64_t commit;
} st_hardstate;

/*
 * st_log_append - persist @n entries (indexes must be consecutive; an entry whose
 * index is already in the log replaces it and every later entry is removed) and,
 * when @hs is non-NULL, the hard state, in ONE RocksDB write batch; fsync'd when
 * @sync. Returns 0, ST_EINVAL (indexes not consecutive, a gap after the last
 * index, or an index at/below the compaction point), ST_EIO or ST_ENOMEM. On
 * error nothing is written.
 */
int st_log_append(st_db *db, const st_entry *ents, size_t n, const st_hardstate *hs, bool sync);

/*
 * st_log_entries - read entries [lo, hi) into a malloc'd array *@out of *@n
 * entries, stopping early once @max_bytes of data are gathered (at least one
 * entry is always returned when lo < hi). Returns 0, ST_ECOMPACTED when lo is
 * behind the first index, ST_EUNAVAILABLE when hi-1 is past the last index,
 * ST_ECORRUPT, ST_ENOMEM.
 */
int st_log_entries(st_db *db, uint64_t lo, uint64_t hi, uint64_t max_bytes, st_entry **out, size_t *n);

/* st_entries_free - free what st_log_entries returned. */
void st_entries_free(st_entry *ents, size_t n);

/* st_log_term - term of entry @index; ST_ECOMPACTED / ST_EUNAVAILABLE as above
 * (the term of the compaction point itself is still answered). */
int st_log_term(st_db *db, uint64_t index, uint64_t *term);

/* First and last index present (first = last + 1 when the log is empty). */
uint64_t st_log_first_index(st_db *db);
uint64_t st_log_last_index(st_db *db);

/* st_log_compact - drop entries up to and including @index (keeping its term as
 * the compaction point). An @index at/below the current point is a no-op.
 * Returns 0, ST_EUNAVAILABLE (@index past the last entry) or ST_EIO. */
int st_log_compact(st_db *db, uint64_t index);

/* st_log_reset - discard the whole log and restart it after (@index, @term), as
 * after installing a snapshot: first index becomes @index + 1, st_log_term(@index)
 * answers @term. One synced batch. Returns 0, ST_EIO or ST_ENOMEM. */
int st_log_reset(st_db *db, uint64_t index, uint64_t term);

/* st_hardstate_load - the last persisted hard state (all zero on a fresh db). */
int st_hardstate_load(st_db *db, st_hardstate *hs);

/* Small durable metadata (member/cluster ids, ...) in the default column family,
 * keyed by a short name. st_meta_get returns ST_ENOTFOUND when absent; *@val is
 * malloc'd and owned by the caller. */
int st_meta_put(st_db *db, const char *name, const void *val, size_t len, bool sync);

/* st_db_peek_meta - st_meta_get on the database in @dir opened read-only for the
 * call: no lock taken, no file written (to decide whether to open it at all).
 * Returns as st_meta_get, ST_ENOTFOUND also when @dir holds no database,
 * ST_ELOCKED when another process has it open, and any error of opening it
 * (the caller's real st_db_open then reports it). */
int st_db_peek_meta(const char *dir, const char *name, void **val, size_t *len);
int st_meta_get(st_db *db, const char *name, void **val, size_t *len);

#endif
