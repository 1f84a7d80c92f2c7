/*
 * st_snap: Raft snapshots of a member's replicated state, in metastore's native
 * image format (DESIGN.md: "Raft snapshots between members may use a faster
 * native format"; the client-facing Maintenance.Snapshot is etcd's bbolt file
 * and lives elsewhere).
 *
 * The replicated state is everything every member holds identically once it has
 * applied the same log prefix:
 *   - the "kv", "rev" and "lease" column families, completely;
 *   - from the "default" family, the keyspace state record ms.kvstate (applied
 *     index, revision, compaction) and every key starting with "ms.r."
 *     (replicated meta: membership, conf state).
 * It is NOT the Raft log, ms.hardstate, ms.logbase, ms.format, nor the local
 * identity records "m.*" (st_meta_put): those stay the target member's own.
 *
 * An image is a byte string (format: docs/disk-format.md, "Raft snapshot image"):
 * a header with magic and version, one record per RocksDB key (family id, key,
 * value), and a trailer with the record count and an XXH64 checksum of all that
 * precedes it. The image is deterministic: the same state always serialises to
 * the same bytes.
 *
 * Memory: the buffer forms hold the whole image in memory (about the size of the
 * live data, uncompressed), and install additionally builds one RocksDB write
 * batch of the same size: fine up to a few hundred MB. The file forms stream the
 * image through a small buffer (create needs O(1) memory; install still builds
 * the one write batch, because that batch is what makes it atomic).
 *
 * Threading: st_snap_create* may run on any thread, concurrently with apply
 * (it reads one RocksDB snapshot and takes the db mutex only to open it).
 * st_snap_install* is node thread only, like every other writer.
 */
#ifndef METASTORE_ST_SNAP_H
#define METASTORE_ST_SNAP_H

#include <stddef.h>
#include <stdint.h>

#include "storage/st_db.h"

/* Current image format version (the header's BE32 version field). */
#define ST_SNAP_VERSION 1u

/*
 * st_snap_create - take a consistent image of @db's replicated state: one
 * RocksDB snapshot, so the image holds whole revisions only and its ms.kvstate
 * matches its data exactly.
 * @buf, @len: out; receive a malloc'd image the caller frees with free().
 * @applied:   out (may be NULL); the applied log index recorded in the image's
 *             ms.kvstate: the Raft snapshot's index (its term is the caller's
 *             st_log_term(@applied), asked before the log is compacted past it).
 * Returns 0, ST_ENOMEM, ST_EIO, or ST_ECORRUPT (no or malformed ms.kvstate);
 * on error *@buf is NULL and *@len 0.
 */
int st_snap_create(st_db *db, uint8_t **buf, size_t *len, uint64_t *applied);

/*
 * st_snap_verify - check that @buf/@len is a complete image this build can
 * install (magic, version, checksum, record structure, the ms.kvstate record),
 * without touching any database. @applied (may be NULL) receives its applied
 * index. Returns 0, ST_ECORRUPT (not an image, truncated, damaged, or holding a
 * default-family key outside the replicated state), ST_EFORMAT (another image
 * version, or unknown header flags) or ST_ENOMEM.
 */
int st_snap_verify(const uint8_t *buf, size_t len, uint64_t *applied);

/*
 * st_snap_find_rmeta - the replicated meta record @name (as st_rmeta_put names
 * it, e.g. "conf") inside the image @buf: *@val points into @buf (valid as long
 * as @buf), *@vlen its length. Checks the header and checksum first. Returns 0,
 * ST_ENOTFOUND, ST_ECORRUPT / ST_EFORMAT (a bad image), ST_EINVAL (name too long).
 */
int st_snap_find_rmeta(const uint8_t *buf, size_t len, const char *name, const uint8_t **val,
                       size_t *vlen);

/*
 * st_snap_install - replace @db's replicated state with the image @buf/@len and
 * restart the log after (@index, @term), as st_log_reset does.
 *
 * The image is verified first (as st_snap_verify); on any error nothing is
 * changed. Then ONE RocksDB write batch range-deletes the kv, rev and lease
 * families, the "ms.r." keys and the whole log, puts every record of the image,
 * sets ms.logbase = (@index, @term) and raises the hard state's commit to
 * @index if it was lower (a commit below the new log start would make the
 * member unrestartable; term and vote are kept). The batch is written under the
 * db mutex, together with the in-memory copies (keyspace state, log base and
 * last index), so that readers see the old state or the new one, never a mix;
 * the WAL is then synced outside the mutex. A crash (kill -9) at any point
 * leaves either the old state or the new one: RocksDB recovers a write batch
 * wholly or not at all. An image carrying an unfinished physical compaction
 * (compact_done < compact_rev) has it finished before returning.
 *
 * Afterwards st_kv_state_get() is the image's state (applied = @index),
 * st_log_first_index() = @index + 1, st_log_last_index() = @index,
 * st_log_term(@index) = @term, and the target's "m.*" records are untouched.
 *
 * Node thread only. Read transactions opened before keep reading the old state.
 * Returns 0, ST_EINVAL (an apply group is open, or the image's applied index
 * is not @index), ST_ECORRUPT / ST_EFORMAT (bad image, as st_snap_verify),
 * ST_ENOMEM, or ST_EIO. ST_EIO after the write (the WAL sync failed) means the
 * new state is in place but its durability is unknown: treat the member as
 * failed, as after any failed fsync.
 */
int st_snap_install(st_db *db, const uint8_t *buf, size_t len, uint64_t index, uint64_t term);

/*
 * st_snap_create_to_file - as st_snap_create, streaming the image into a new
 * file @path (created 0600, replaced if it exists, fsync'd before returning)
 * through a 1 MiB buffer. @len (may be NULL) receives the image size. On error
 * the file is removed. Returns as st_snap_create, or ST_EPERM / ST_EIO for the
 * file.
 */
int st_snap_create_to_file(st_db *db, const char *path, uint64_t *len, uint64_t *applied);

/*
 * st_snap_install_from_file - as st_snap_install, reading the image from @path
 * (the whole image need not fit in memory; the write batch still does).
 * Returns as st_snap_install, or ST_ENOTFOUND / ST_EPERM / ST_EIO for the file.
 */
int st_snap_install_from_file(st_db *db, const char *path, uint64_t index, uint64_t term);

#endif
