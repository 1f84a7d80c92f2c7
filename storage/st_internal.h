/*
 * st_internal: what st_db.c and st_mvcc.c share and nobody outside storage/ sees.
 *
 * The struct behind the opaque st_db handle, the column family numbering, the
 * meta key names and the big-endian helpers used by every on-disk encoding
 * (docs/disk-format.md is the prose version of this file).
 */
#ifndef METASTORE_ST_INTERNAL_H
#define METASTORE_ST_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include <rocksdb/c.h>

#include "storage/st_db.h"
#include "storage/st_keyfilter.h"
#include "storage/st_latest.h"
#include "storage/st_mvcc.h"

/* On-disk format version written under ST_META_FORMAT at creation. Version 2
 * adds the cluster records (ms.r.members, ms.r.conf, m.snapshot); a version 1
 * dir (a single member from before clustering) still opens, and the server
 * upgrades it in place (st_db_set_format). */
#define ST_FORMAT_VERSION 2u
#define ST_FORMAT_OLDEST 1u

/* Column families, in the order they are opened. "lease" (leases and their
 * attached keys, st_mvcc.c) came after the first format-1 data dirs: it is
 * created on open when missing, which is exact because such a dir can hold no
 * lease (ST_CF__REQUIRED: the families every format-1 dir has). */
enum { ST_CF_DEFAULT, ST_CF_LOG, ST_CF_KV, ST_CF_REV, ST_CF_LEASE, ST_CF__COUNT };
#define ST_CF__REQUIRED ST_CF_LEASE

/* Keys in the default column family. Internal names start with "ms."; names
 * given to st_meta_put are stored under "m." + name so they can never collide. */
#define ST_META_FORMAT "ms.format"
#define ST_META_KVSTATE "ms.kvstate"
#define ST_META_HARDSTATE "ms.hardstate"
#define ST_META_LOGBASE "ms.logbase"
#define ST_META_USER_PREFIX "m."
/* Replicated records (membership, configuration: st_rmeta_*), part of the
 * replicated state that raft snapshots carry. */
#define ST_META_REPL_PREFIX "ms.r."

/* Sets of the newest-version cache (st_latest: two keys per set; about 64
 * bytes plus the key per entry, touched only as keys arrive). */
#define ST_LATEST_SETS (1u << 17)

/* A kv record key ends in BE64(~main) BE64(~sub) after esc(key) 00 01. */
#define ST_KV_REV_LEN 16

/*
 * st__readopts - read options for an iterator or a lookup that may cross
 * keys: total order, whatever prefix the family knows (the kv family has a
 * prefix extractor; only a one-key lookup may use it, see db_range). NULL when
 * memory is short. Every read options object of storage/ comes from here.
 */
rocksdb_readoptions_t *st__readopts(void);

struct st_db {
	rocksdb_t *rdb;
	rocksdb_options_t *db_opts;
	rocksdb_options_t *cf_opts;
	rocksdb_block_based_table_options_t *table_opts;
	rocksdb_options_t *kv_opts; /* the kv family's: cf_opts + its key prefix */
	rocksdb_block_based_table_options_t *kv_table_opts; /* + prefix blooms */
	rocksdb_cache_t *cache;
	rocksdb_column_family_handle_t *cf[ST_CF__COUNT];
	rocksdb_writeoptions_t *wo;      /* no sync */
	rocksdb_writeoptions_t *wo_sync; /* fsync'd */
	rocksdb_readoptions_t *ro;       /* plain reads of the latest state */
	char *dir;
	uint32_t format; /* the data dir's format version (ST_FORMAT_OLDEST..VERSION) */

	/* Guards everything below; held only for short in-memory updates and around
	 * the apply batch write so that readers see state and data change together. */
	pthread_mutex_t mu;
	uint64_t log_base_index; /* last compacted entry (0 on a fresh log) */
	uint64_t log_base_term;
	uint64_t log_last_index; /* = log_base_index when the log is empty */
	st_kv_state kv;

	/* The open apply group (st_apply_begin; node thread only, never under mu):
	 * changes staged by the group's write txns, indexed so that later txns of
	 * the group read them, and the keyspace state after them. grp_wb is kept
	 * (cleared) between groups so its buffers are reused. */
	rocksdb_writebatch_wi_t *grp_wb;
	bool grp_open;
	st_kv_state grp_st;
	/* The newest version of recently written or read keys as the node
	 * thread's write txns see them (the open group's staged changes
	 * included); node thread only, like the group. */
	st_latest latest;
	/* Every key ever written (st_keyfilter): "never" answers a new key's
	 * lookup without reading. */
	st_keyfilter kf;

	/* Background physical compaction (st_mvcc_set_background): a storage thread
	 * walks what a committed compaction hides, so the committing thread (the
	 * node loop) never waits for it. Guarded by bg_mu. */
	pthread_mutex_t bg_mu;
	pthread_cond_t bg_cv;
	pthread_t bg_thread;
	bool bg_on, bg_started, bg_stop;
	int64_t bg_target; /* compact physically up to here */
	st_mvcc_compact_report_fn bg_report; /* st_mvcc_set_compact_report */
	void *bg_report_ctx;

	/* Change events (st_mvcc_set_events): the changes staged since the last
	 * hand-over, node thread only. Keys and values live in ev_data; each
	 * ev[i].key / .val holds an offset into it until the hand-over turns the
	 * offsets into pointers. */
	st_events_fn ev_fn;
	void *ev_arg;
	atomic_bool ev_on;  /* st_mvcc_events_enable (any thread) */
	bool ev_broken;     /* a txn of this commit was not staged (events off) */
	st_kv *ev;
	size_t ev_n, ev_cap;
	uint8_t *ev_data;
	size_t ev_len, ev_dcap;
};

/* st__events_discard - drop the changes staged for the events hook (a failed
 * or aborted commit). */
void st__events_discard(st_db *db);

/*
 * st__mvcc_walk_keys - call @fn(@arg, key) for every user key of the `kv`
 * family at @snap (once per version: callers must not mind repeats) until it
 * returns false. Returns 0, ST_ECORRUPT or ST_EIO.
 */
int st__mvcc_walk_keys(st_db *db, const rocksdb_snapshot_t *snap,
		       bool (*fn)(void *arg, const uint8_t *key, size_t klen), void *arg);

/* st__mvcc_stop_background - join the background compaction thread, if any
 * (st_db_close, before the database closes). */
void st__mvcc_stop_background(st_db *db);

static inline void st_put_be64(uint8_t *p, uint64_t v)
{
	for (int i = 7; i >= 0; i--) {
		p[i] = (uint8_t)v;
		v >>= 8;
	}
}

static inline uint64_t st_get_be64(const uint8_t *p)
{
	uint64_t v = 0;
	for (int i = 0; i < 8; i++)
		v = (v << 8) | p[i];
	return v;
}

/* st__rocks_err - classify a RocksDB error string into an ST_* code. */
int st__rocks_err(const char *msg);

/* st__meta_get_raw - the value of default-family key @key (NUL-terminated) in
 * a malloc'd *@val; ST_ENOTFOUND when absent, ST_EIO on a read error. */
int st__meta_get_raw(st_db *db, const char *key, char **val, size_t *len);

/* st__kvstate_encode - the 32-byte value stored under ST_META_KVSTATE. */
void st__kvstate_encode(const st_kv_state *s, uint8_t out[32]);

#endif
