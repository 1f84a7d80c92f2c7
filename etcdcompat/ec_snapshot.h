/*
 * ec_snapshot: etcd's backend layout (the bbolt file `etcdctl snapshot save`
 * writes and etcd serves from member/snap/db), in both directions.
 *
 * etcd 3.4 keeps its whole state in bbolt buckets: "key" (every revision record
 * of the keyspace, keyed by revision), "meta" (consistent index, compaction
 * marks), "lease", "members", "members_removed", "cluster", "alarm", "auth",
 * "authUsers", "authRoles". This module maps metastore's store (storage/) onto
 * that layout and back, on top of storage/st_bolt (the bbolt file format):
 *   - ec_snapshot_key_records: the records of the "key" bucket, produced from
 *     the MVCC keyspace (also the material of Maintenance.HashKV);
 *   - ec_snapshot_export: a point-in-time bbolt file of the whole store;
 *   - ec_snapshot_import: such a file (from metastore or a real etcd) into a
 *     fresh metastore data dir;
 *   - ec_snapshot_status: what `etcdctl snapshot status` prints about a file.
 * Byte layouts: docs/disk-format.md, "etcd's backend layout".
 */
#ifndef METASTORE_EC_SNAPSHOT_H
#define METASTORE_EC_SNAPSHOT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "storage/st_db.h"
#include "storage/st_mvcc.h"

/* Length of a "key" bucket key: BE64 main, '_', BE64 sub (+ 't' for a tombstone). */
#define EC_SNAP_REVKEY_LEN 17
#define EC_SNAP_REVKEY_TOMB_LEN 18

/*
 * One record of etcd's "key" bucket, as handed to an ec_snapshot_record_fn.
 * @key/@key_len: 17 bytes (BE64 main rev, '_', BE64 sub rev) or 18 for a
 *   tombstone (the same + 't'), exactly etcd's revToBytes + appendMarkTombstone.
 * @val/@val_len: the packed mvccpb.KeyValue, byte for byte what etcd writes:
 *   key, create_revision, mod_revision, version, value, lease (zero fields
 *   omitted); a tombstone has only the key set.
 * @kv: the same record decoded (mod_rev = main, sub, create_rev, version,
 *   lease, tombstone; version 0 for a tombstone), for callers that filter.
 * Every pointer is valid only during the callback.
 */
typedef struct ec_snap_record {
	const uint8_t *key;
	size_t key_len;
	const uint8_t *val;
	size_t val_len;
	const st_kv *kv;
} ec_snap_record;

/* Return 0 to go on, ST_VISIT_STOP to stop (the walk then returns 0), any other
 * value to abort the walk (it is returned). */
typedef int (*ec_snapshot_record_fn)(void *arg, const ec_snap_record *rec);

/*
 * ec_snapshot_key_records - visit, in revision order (= etcd's key-bucket byte
 * order), every revision record the store still holds with main revision <=
 * @to_rev, as of read txn @t's snapshot: what etcd's "key" bucket holds once its
 * compaction has finished — above the compacted revision every change; at or
 * below it only the latest version of each key that is not a tombstone (records
 * a background physical compaction has not deleted yet are skipped, so the
 * result does not depend on its progress). @to_rev above st_txn_rev(@t) means
 * st_txn_rev(@t); @to_rev < 1 visits nothing.
 * Maintenance.HashKV hashes these records (etcd's hashKV writes "key" then each
 * record's key and value into crc32-Castagnoli, applying its own keep rule for
 * records at or below the compacted revision, which the caller does from
 * rec->kv); the export writes them into the "key" bucket.
 * @t: a read txn (st_txn_begin(db, false, ...)); stays owned by the caller.
 * Returns 0, the visitor's abort value, ST_ECORRUPT, ST_EIO or ST_ENOMEM.
 */
int ec_snapshot_key_records(st_txn *t, int64_t to_rev, ec_snapshot_record_fn fn, void *arg);

/* What an export wrote or an import read. */
typedef struct ec_snapshot_info {
	uint64_t applied;    /* export: the applied index written as consistent_index;
			      * import: the file's consistent_index (0 if absent) */
	int64_t rev;         /* current revision */
	int64_t compact_rev; /* compacted revision (0: never) */
	uint64_t records;    /* records of the "key" bucket */
	uint64_t leases;
	uint64_t users, roles;
	bool auth_enabled;
	uint64_t alarms;
	uint64_t members; /* export: members written (import ignores the file's) */
	uint64_t bytes;   /* export: size of the file written, trailer included */
} ec_snapshot_info;

/*
 * ec_snapshot_export - write the whole store of @db as of one point in time
 * (one read txn: keyspace, leases, auth, members, alarms and the applied index
 * all agree) to a new bbolt file at @path in etcd 3.4's backend layout:
 *   key      the records of ec_snapshot_key_records up to the current revision
 *   meta     consistent_index = BE64 applied index; when compacted,
 *            scheduledCompactRev = finishedCompactRev = revToBytes(compact_rev)
 *   lease    BE64 id -> leasepb.Lease{ID, TTL}
 *   members  hex id -> etcd's member JSON; members_removed  hex id -> "removed"
 *   cluster  clusterVersion -> "3.4.0"
 *   alarm    packed etcdserverpb.AlarmMember -> ""
 *   auth     authEnabled -> 01/00, authRevision -> BE64
 *   authUsers / authRoles  name -> packed authpb.User / authpb.Role
 * With @trailer, etcd's 32-byte sha256 of the file is appended (what etcd's
 * Maintenance.Snapshot streams and `etcdctl snapshot save` stores). The file
 * is fsync'd; on failure it is removed. Any thread; the store keeps serving.
 * @info (may be NULL) receives what was written; @err (may be NULL) a reason.
 * Returns 0, ST_EIO (cannot write @path), ST_ECORRUPT (a stored record does
 * not decode), ST_ENOMEM.
 */
int ec_snapshot_export(st_db *db, const char *path, bool trailer, ec_snapshot_info *info,
		       char *err, size_t errlen);

/*
 * ec_snapshot_import - load the etcd backend file at @path (a snapshot saved
 * from metastore or etcd, or an etcd member/snap/db) into @db, whose keyspace
 * must be fresh (st_load_begin): every record of "key" with its revisions,
 * version and lease; the current revision (the highest main revision of
 * "key", or the compacted one if higher, as etcd's restore computes it); the
 * compacted revision (meta scheduledCompactRev / finishedCompactRev: a
 * compaction scheduled but unfinished is finished here, as etcd resumes it);
 * the leases with their TTLs (keys attached from the keyspace, as etcd's
 * restore does); auth (enabled flag, revision, users, roles) and alarms as
 * replicated records. Membership and the applied index are not taken from the
 * file (the caller bootstraps them, as `etcdctl snapshot restore` does).
 * Hash check as etcdctl's restore: a file whose size % 512 == 32 ends in a
 * sha256 trailer, verified unless @skip_hash_check; a file without one is
 * refused unless @skip_hash_check ("snapshot missing hash but
 * --skip-hash-check=false").
 * Not atomic: on failure @db holds part of the file; build into a data dir
 * nobody serves and remove it then (server/srv_restore.c does).
 * Returns 0, ST_ECORRUPT (hash mismatch, not a bbolt file, missing "key" or
 * "meta" bucket, a record that does not decode; @err says which, in etcdctl's
 * words where it has them), ST_EFORMAT (another bbolt version), ST_EIO,
 * ST_EINVAL (@db not fresh), ST_ENOMEM.
 */
int ec_snapshot_import(st_db *db, const char *path, bool skip_hash_check, ec_snapshot_info *info,
		       char *err, size_t errlen);

/* `etcdctl snapshot status` of a file. */
typedef struct ec_snapshot_status {
	uint32_t hash;       /* crc32c over every bucket name, key and value, in order */
	int64_t revision;    /* main revision of the last "key" record (0: none) */
	uint64_t total_keys; /* keys of all buckets */
	uint64_t total_size; /* bbolt data size (etcd's tx.Size()) */
} ec_snapshot_status;

/*
 * ec_snapshot_file_status - what `etcdctl snapshot status @path` reports.
 * The file is opened read-only and never changed. Returns 0, ST_ECORRUPT,
 * ST_EFORMAT, ST_EIO, ST_ENOMEM (with @err).
 */
int ec_snapshot_file_status(const char *path, ec_snapshot_status *st, char *err, size_t errlen);

#endif
