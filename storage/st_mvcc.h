/*
 * st_mvcc: the MVCC keyspace on RocksDB — etcd's revision model without etcd's
 * in-memory index.
 *
 * Every write request is one main revision; its individual changes are
 * sub-revisions 0, 1, 2, ... Each change is one record in the "kv" column family
 * keyed by (escaped user key, inverted revision) so that the newest version of a
 * key sorts first and "the version of K visible at revision R" is one seek, and
 * one record in the "rev" column family keyed by revision (for compaction and
 * watch history). The current revision, the compacted revision and the last
 * applied log index live in one meta record written in the same batch as the
 * changes, so opening is O(1). Layout: docs/disk-format.md.
 *
 * This layer knows revisions, versions, tombstones and compaction; it does not
 * know etcd requests (etcdcompat/ec_kv.c builds those on top).
 *
 * Reading and writing both go through an st_txn:
 *   - st_txn_begin(db, false, &t) opens a read transaction: a RocksDB snapshot
 *     plus the revision state taken atomically with it. Any thread, any number.
 *   - st_txn_begin(db, true, &t) opens the write transaction of one apply step.
 *     Node thread only, one at a time. Its reads see its own earlier writes (at
 *     revision st_txn_rev()), as etcd's write transactions do.
 * User keys and range ends follow etcd's wire convention throughout: a range end
 * of length 0 means "just @key", the one-byte end "\0" means "to the end of the
 * keyspace", any other end is exclusive.
 */
#ifndef METASTORE_ST_MVCC_H
#define METASTORE_ST_MVCC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "storage/st_db.h"

/* st_key_cmp - etcd's key order (bytewise, a prefix sorts first): <0, 0, >0. */
int st_key_cmp(const uint8_t *a, size_t al, const uint8_t *b, size_t bl);

/* The durable state of the keyspace, all read from one meta record. */
typedef struct st_kv_state {
	uint64_t applied;     /* last log index applied (0 = none) */
	int64_t rev;          /* current revision (1 on a fresh store) */
	int64_t compact_rev;  /* compacted revision (0 = never) */
	int64_t compact_done; /* physical compaction finished up to here */
} st_kv_state;

/* st_kv_state_get - the current state (consistent, under the db mutex). */
void st_kv_state_get(st_db *db, st_kv_state *out);

/* One version of one key as handed to a visitor. Pointers are valid only during
 * the callback. */
typedef struct st_kv {
	const uint8_t *key;
	size_t key_len;
	const uint8_t *val;
	size_t val_len;
	int64_t create_rev;
	int64_t mod_rev;
	int64_t version; /* 0 for a tombstone (history only) */
	int64_t lease;
	int64_t sub;     /* sub-revision of mod_rev */
	bool tombstone;  /* history only: this change deleted the key */
} st_kv;

/* A visitor returns 0 to continue, ST_VISIT_STOP to stop early (the walk then
 * returns 0), or any other value, which aborts the walk and is returned. */
#define ST_VISIT_STOP (-1)
typedef int (*st_kv_visit)(void *arg, const st_kv *kv);

typedef struct st_txn st_txn;

/*
 * st_txn_begin - open a read (@write false) or write transaction.
 * Returns 0 and *@out, or ST_ENOMEM. Free with st_txn_commit/st_txn_abort.
 */
int st_txn_begin(st_db *db, bool write, st_txn **out);

/* Revision the transaction reads at by default: the snapshot's revision, plus
 * one once a write transaction has made a change (etcd's storeTxnWrite.Range). */
int64_t st_txn_rev(const st_txn *t);
/* Revision at begin (for a write: the revision the new one follows). */
int64_t st_txn_base_rev(const st_txn *t);
/* Compacted revision at begin. */
int64_t st_txn_compact_rev(const st_txn *t);
/* Applied log index at begin (the index the snapshot of a read txn is at). */
uint64_t st_txn_applied(const st_txn *t);
/* Number of changes (puts + deletes) made so far. */
size_t st_txn_changes(const st_txn *t);

/*
 * st_txn_range - visit the live keys in [@key, @end) at revision @rev in
 * ascending key order. @rev must be in [st_txn_compact_rev, st_txn_rev]; (the
 * caller checks: reads outside return ST_ECOMPACTED / ST_EINVAL). Returns 0, the
 * visitor's abort value, ST_ECORRUPT or ST_EIO.
 */
int st_txn_range(st_txn *t, const uint8_t *key, size_t klen, const uint8_t *end, size_t elen,
		 int64_t rev, st_kv_visit fn, void *arg);

/*
 * st_txn_get - the live version of exactly @key at st_txn_rev(). Returns 0 and
 * fills *@kv (pointers valid until the next call on @t), ST_ENOTFOUND, or an
 * error as st_txn_range.
 */
int st_txn_get(st_txn *t, const uint8_t *key, size_t klen, st_kv *kv);

/*
 * st_txn_get_meta - st_txn_get without the value (kv->val NULL, val_len 0,
 * kv->key is @key): what a write needs of the key's newest version. In a write
 * txn it is usually served from memory (a cache of recently written keys).
 * Same returns as st_txn_get.
 */
int st_txn_get_meta(st_txn *t, const uint8_t *key, size_t klen, st_kv *kv);

/*
 * st_txn_put - write @key = @val with @lease at revision base+1 (write txns only).
 * create_rev and version follow etcd: a new key (or one deleted earlier) starts
 * at version 1 with create_rev = this revision. Returns 0, ST_EINVAL (read txn),
 * ST_ENOMEM or a read error.
 */
int st_txn_put(st_txn *t, const uint8_t *key, size_t klen, const uint8_t *val, size_t vlen,
	       int64_t lease);

/*
 * st_txn_delete_range - write a tombstone for every live key in the range;
 * *@deleted (may be NULL) receives how many. Returns as st_txn_put.
 */
int st_txn_delete_range(st_txn *t, const uint8_t *key, size_t klen, const uint8_t *end,
			size_t elen, int64_t *deleted);

/*
 * st_txn_compact - record a compaction at @rev, to be committed with the txn.
 * The caller has checked compact_rev < @rev <= rev (else ST_EINVAL). Readers see
 * the new compacted revision as soon as the commit returns; versions it hides are
 * deleted by st_txn_commit right after the atomic write, in bounded batches.
 */
int st_txn_compact(st_txn *t, int64_t rev);

/*
 * st_txn_commit - write every change, the new revision (if anything changed),
 * the compaction (if any) and applied index = @applied in ONE RocksDB write
 * batch (not synced: the log is durable and replay is idempotent), then free
 * @t. A read txn is just freed. Returns 0, ST_EIO or ST_ENOMEM; on error nothing
 * was written and @t is freed anyway.
 */
int st_txn_commit(st_txn *t, uint64_t applied);

/*
 * Leases (the "lease" column family, docs/disk-format.md). A lease record is
 * (id, granted TTL); the keys attached to a lease are indexed by commit itself
 * from each put/delete's old and new lease, so the index always matches the
 * current revision of the keyspace.
 *
 * st_txn_lease_grant - stage the record of lease @id (non-zero) with @ttl, written by
 *   st_txn_commit (overwrites a record of the same id).
 * st_txn_lease_revoke - stage the removal of lease @id's record and of every
 *   attachment recorded for it (as @t reads them: snapshot plus an open apply
 *   group), handing each attached key to @fn (NULL: none) so that the caller can
 *   delete the keys in the same txn. Returns as below, or @fn's abort value.
 * Neither changes the revision. Return 0, ST_EINVAL (read txn, @id 0) or
 * ST_ENOMEM.
 */

/* Visitors: return 0 to go on, ST_VISIT_STOP to stop (the walk returns 0), any
 * other value aborts the walk and is returned. Pointers live for the call. */
typedef int (*st_lease_visit)(void *arg, int64_t id, int64_t ttl);
typedef int (*st_lease_key_visit)(void *arg, const uint8_t *key, size_t klen);

int st_txn_lease_grant(st_txn *t, int64_t id, int64_t ttl);
int st_txn_lease_revoke(st_txn *t, int64_t id, st_lease_key_visit fn, void *arg);

/* st_txn_leases - visit every committed lease record in id order, as of @t's
 * snapshot (staged changes of @t are not seen). Returns 0, the visitor's
 * value, ST_ECORRUPT, ST_EIO or ST_ENOMEM. */
int st_txn_leases(st_txn *t, st_lease_visit fn, void *arg);

/* st_txn_lease_keys - visit the keys attached to lease @id in key order, as of
 * @t's snapshot. Returns as st_txn_leases. */
int st_txn_lease_keys(st_txn *t, int64_t id, st_lease_key_visit fn, void *arg);

/* st_txn_abort - drop the changes and free @t (NULL is ok). */
void st_txn_abort(st_txn *t);

/*
 * st_txn_history - visit every change with main revision in [@from, @to] in
 * revision order (the material for watch catch-up). Tombstones have
 * kv->tombstone set, version 0, no value. @from must be >= st_txn_compact_rev
 * (else ST_ECOMPACTED: compacted history is gone); at the compacted revision
 * itself only its puts remain (compaction drops the tombstones there, as
 * etcd's does). Reads committed data only.
 */
int st_txn_history(st_txn *t, int64_t from, int64_t to, st_kv_visit fn, void *arg);

/*
 * Change events: the material of live watches (DESIGN.md, Watch: a hub fed by
 * apply). When a hook is set, every commit that changed the keyspace (an apply
 * group's st_apply_commit, or a lone st_txn_commit) hands the hook, after the
 * write is published to readers, one st_events holding that commit's changes in
 * revision order, exactly as st_txn_history would visit them afterwards
 * (mod_rev, sub, create_rev, version, lease, tombstone; a tombstone has no
 * value and version 0). Commits that fail or are aborted hand nothing.
 * The hook runs on the committing thread (the node loop): it must be quick
 * (queue and return). It owns @evs and frees it with st_events_free, from any
 * thread.
 */
typedef struct st_events {
	int64_t first_rev, last_rev; /* revisions covered (each has >= 1 change) */
	size_t n;                    /* changes */
	st_kv *ev;                   /* n changes; pointers into this object */
	size_t bytes;                /* key + value bytes held, for memory bounds */
	uint8_t *data_;              /* private */
} st_events;

/* The hook. @evs NULL: a commit changed the keyspace but its changes were not
 * all staged (events were turned on or off during it): the owner must catch up
 * from history (the store is already at or past those revisions). */
typedef void (*st_events_fn)(void *arg, st_events *evs);

/* st_mvcc_set_events - install (@fn non-NULL) or remove the events hook.
 * Node thread only (or before it starts). Events start enabled. */
void st_mvcc_set_events(st_db *db, st_events_fn fn, void *arg);

/* st_mvcc_events_enable - turn staging on or off (any thread): while off,
 * commits cost nothing extra and hand nothing; whoever turns it on again must
 * catch up from history for what it missed. Each txn is staged whole or not. */
void st_mvcc_events_enable(st_db *db, bool on);

/* st_events_free - free @evs (NULL ok). */
void st_events_free(st_events *evs);

/*
 * st_mvcc_finish_compaction - finish a physical compaction interrupted by a
 * crash (compact_done < compact_rev). Idempotent; a no-op when there is none.
 * Node thread only. Returns 0, ST_EIO, ST_ECORRUPT, ST_ENOMEM.
 */
int st_mvcc_finish_compaction(st_db *db);

/*
 * st_mvcc_set_background - with @on, the physical part of a compaction (deleting
 * the versions it hides, in bounded batches) runs on a storage thread after the
 * commit that recorded it, instead of inside that commit: the caller's thread (the
 * node loop) never waits for it. Readers are unaffected either way (the compacted
 * revision is published by the commit). Progress: st_kv_state.compact_done. The
 * thread is joined by st_db_close. Default off (the commit does the walk).
 */
void st_mvcc_set_background(st_db *db, bool on);

/*
 * st_mvcc_compact_report_fn - how a background physical compaction up to @rev
 * ended: @rc ST_OK after @took_ns nanoseconds, or the error (the compaction is
 * then finished by st_mvcc_finish_compaction at the next open). Called on the
 * storage thread; must not call into @db. Storage itself never logs: the server
 * turns this into a log line.
 */
typedef void (*st_mvcc_compact_report_fn)(void *ctx, int64_t rev, int rc, int64_t took_ns);

/* st_mvcc_set_compact_report - where background compactions report (NULL: not
 * reported). Call before the first compaction, from one thread. */
void st_mvcc_set_compact_report(st_db *db, st_mvcc_compact_report_fn fn, void *ctx);

/*
 * st_mvcc_set_applied - record applied index @index with no change to the
 * keyspace (entries that are not KV requests: no-ops, conf changes). Inside an
 * apply group it is staged with the group.
 */
int st_mvcc_set_applied(st_db *db, uint64_t index);

/*
 * Replicated metadata: small records every member holds identically because the
 * log wrote them (the member set and the raft configuration), stored as
 * "ms.r.<name>" in the default family and carried by raft snapshots.
 * st_rmeta_put - inside an apply group, stage @val under @name with the group
 *   (so it is written with the applied index of the entry that produced it);
 *   without a group, write it at once, synced (bootstrap and upgrade). Node
 *   thread only. Returns 0, ST_EINVAL (empty or over-long name), ST_EIO, ST_ENOMEM.
 * st_rmeta_get - the committed value of @name in a malloc'd *@val (the caller
 *   frees it; never NULL on success, even for an empty value). Any thread.
 *   Returns 0, ST_ENOTFOUND, ST_EINVAL, ST_EIO, ST_ENOMEM.
 */
int st_rmeta_put(st_db *db, const char *name, const void *val, size_t len);
int st_rmeta_get(st_db *db, const char *name, void **val, size_t *len);

/*
 * Apply groups: many applied log entries, one RocksDB write (DESIGN.md: apply
 * the committed entries of one round in one write batch that also records the
 * applied index). Node thread only; at most one group is open.
 *
 * st_apply_begin - open a group. Until it is committed or aborted, every write
 *   txn (st_txn_begin(db, true)) reads the committed data plus everything the
 *   group staged before it, and st_txn_commit stages its changes, revision,
 *   compaction and applied index into the group instead of writing them;
 *   st_mvcc_set_applied likewise. Read txns (any thread) see none of it: they
 *   see the state as of the last commit. Returns 0, ST_EINVAL (a group is
 *   already open) or ST_ENOMEM.
 * st_apply_commit - write everything staged, with the new keyspace state, in
 *   ONE RocksDB write batch (not synced: the log is durable and replay is
 *   idempotent) and publish it to readers atomically; then run the physical
 *   part of any compaction staged. Returns 0, ST_EINVAL (no group), ST_EIO or
 *   ST_ENOMEM; on error nothing was written and the group is closed.
 * st_apply_abort - drop what the group staged and close it (no-op without one).
 *   Writes already committed before st_apply_begin are not touched.
 * st_apply_open - whether a group is open.
 * st_apply_state - the state the next write txn starts from: the open group's,
 *   else the committed one (node thread only).
 */
int st_apply_begin(st_db *db);
int st_apply_commit(st_db *db);
void st_apply_abort(st_db *db);
bool st_apply_open(const st_db *db);
void st_apply_state(st_db *db, st_kv_state *out);

/*
 * st_txn_records - visit every change the keyspace holds with main revision
 * <= @to (capped at st_txn_rev), from the oldest, in revision order, as a
 * finished compaction leaves them: above the compacted revision every change;
 * at or below it only the version of each key visible at the compacted
 * revision, and no tombstones (while a physical compaction is unfinished the
 * versions it will delete are skipped, so the result does not depend on its
 * progress). The material of etcd's "key" bucket (etcdcompat/ec_snapshot).
 * Reads @t's snapshot only (committed data). Returns as st_txn_history, never
 * ST_ECOMPACTED.
 */
int st_txn_records(st_txn *t, int64_t to, st_kv_visit fn, void *arg);

/* st_txn_rmeta_get - st_rmeta_get as of @t's snapshot (so that it agrees with
 * everything else @t reads). Returns as st_rmeta_get. */
int st_txn_rmeta_get(st_txn *t, const char *name, void **val, size_t *len);

/*
 * Bulk load: fill an empty keyspace with a history made elsewhere (an etcd
 * snapshot being imported, etcdcompat/ec_snapshot), record by record, without
 * one write transaction per revision. Not atomic: the loader writes unsynced
 * batches as it goes, and the caller builds into a data dir nobody serves yet
 * (a temp dir renamed at the end). Node thread, or before any node runs; no
 * apply group open.
 * st_load_begin - start loading into @db, whose keyspace must be fresh
 *   (revision 1, never compacted, no record, no lease). Returns 0 and *@out,
 *   ST_EINVAL (not fresh, a group open), ST_ENOMEM.
 * st_load_change - add one change (@kv: key, mod_rev = main, sub, tombstone;
 *   for a put also value, create_rev, version, lease), in strictly ascending
 *   (main, sub) order. Returns 0, ST_EINVAL (out of order, empty key, a put
 *   with version < 1 or create_rev outside [1, mod_rev]), ST_EIO, ST_ENOMEM.
 * st_load_lease - add lease @id (> 0, ascending ids) with granted @ttl.
 *   Returns 0, ST_EINVAL, ST_EIO, ST_ENOMEM.
 * st_load_finish - write what is pending and the keyspace state (current
 *   revision @rev, compacted revision @compact_rev, physical compaction done up
 *   to @compact_done; the applied index is left as it is), attach every live
 *   key whose lease was loaded to it (keys naming a lease not loaded stay
 *   unattached, as etcd's restore leaves them), finish the physical compaction
 *   of (@compact_done, @compact_rev] (so an etcd file saved mid-compaction
 *   ends up as etcd would leave it), and sync. Always frees @l. Returns 0,
 *   ST_EINVAL (@rev below a loaded change or < 1, compaction marks out of
 *   order), an error of an earlier call, ST_EIO, ST_ECORRUPT, ST_ENOMEM.
 * st_load_abort - free @l (NULL ok); what was written stays written.
 */
typedef struct st_load st_load;
int st_load_begin(st_db *db, st_load **out);
int st_load_change(st_load *l, const st_kv *kv);
int st_load_lease(st_load *l, int64_t id, int64_t ttl);
int st_load_finish(st_load *l, int64_t rev, int64_t compact_rev, int64_t compact_done);
void st_load_abort(st_load *l);

#endif
