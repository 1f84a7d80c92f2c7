/*
 * ec_hash: the Maintenance service's consistency hashes, Hash and HashKV, and
 * the CRC-32C (Castagnoli) they are made of.
 *
 * HashKV(rev) is etcd's HashByRev, reproduced value for value: CRC-32C over the
 * bucket name "key", then the key and value bytes of every record of etcd's
 * "key" bucket (ec_snapshot_key_records: 17/18-byte revision key + packed
 * mvccpb.KeyValue) with main revision <= rev, in revision order; a record at or
 * below the compacted revision counts only when it is still the live version
 * of its key at rev (etcd's kvindex.Keep(rev)) — or, as etcd, when no key at
 * all is live at rev. Members with the same history therefore agree with each
 * other, across restarts, and with a real etcd that saw the same requests.
 *
 * Hash is etcd's whole-backend hash in spirit only: etcd hashes every bucket
 * of its bbolt file; metastore hashes what its store holds that every member
 * shares — the "key" records up to the current revision (as a finished
 * compaction leaves them) and the leases (id, TTL) — so the value is equal
 * across members at the same revision, but never equal to etcd's.
 *
 * Threading: both read one consistent snapshot (a read txn); any thread,
 * concurrently with apply.
 */
#ifndef METASTORE_EC_HASH_H
#define METASTORE_EC_HASH_H

#include <stddef.h>
#include <stdint.h>

#include "storage/st_db.h"

/* ec_crc32c - continue CRC-32C @crc (0 to start) over @len bytes at @p. */
uint32_t ec_crc32c(uint32_t crc, const void *p, size_t len);

/*
 * ec_hash_kv - etcd's HashByRev(@rev) of @db (@rev 0: the current revision).
 * *@hash: the hash; *@cur_rev: the current revision (etcd's header.revision);
 * *@compact_rev: the compacted revision, -1 when the store was never
 * compacted (etcd's compactMainRev starts at -1).
 * Returns EC_OK; EC_COMPACTED when 0 < @rev <= the compacted revision;
 * EC_FUTURE_REV when @rev > the current revision (with *@cur_rev set);
 * EC_NOMEM; EC_INTERNAL (a storage error).
 */
int ec_hash_kv(st_db *db, int64_t rev, uint32_t *hash, int64_t *cur_rev, int64_t *compact_rev);

/*
 * ec_hash_all - metastore's Maintenance.Hash of @db (see the top of this file)
 * and the revision it was taken at. Returns EC_OK, EC_NOMEM or EC_INTERNAL.
 */
int ec_hash_all(st_db *db, uint32_t *hash, int64_t *rev);

#endif
