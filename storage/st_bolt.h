/*
 * st_bolt: read and write bbolt database files (etcd's backend and snapshot format).
 *
 * etcd keeps its backend in a bbolt file (member/snap/db) and `etcdctl snapshot
 * save` produces one with a 32-byte sha256 trailer appended. This module knows
 * bbolt's on-disk format (docs/disk-format.md, "bbolt files (etcd snapshots)")
 * without linking any of bbolt: a streaming writer that produces a fresh, compact
 * file that bbolt's tx.Check() and etcdctl accept, and a read-only reader that
 * validates every page it touches. It needs libc and libcrypto (SHA-256) only, no
 * RocksDB: the etcdcompat snapshot code builds etcd's bucket layout on top of it.
 *
 * Scope: one level of buckets (the top-level buckets under the root, which is all
 * etcd uses). The reader reports a nested bucket inside a top-level bucket as a
 * key whose value is the raw 16-byte-headed bucket value (it is not descended).
 *
 * Threading: a writer is used by one thread at a time. A reader is immutable
 * after st_bolt_open*; any number of threads may read it concurrently.
 *
 * Errors are the storage room's codes (st_db.h, ST_ERRORS).
 */
#ifndef METASTORE_ST_BOLT_H
#define METASTORE_ST_BOLT_H

#include <stddef.h>
#include <stdint.h>

#include "storage/st_db.h"

/* Size of the sha256 trailer etcd appends to a snapshot file (etcdctl snapshot
 * save, Maintenance.Snapshot): file size % 512 == ST_BOLT_SHA256_TRAILER. */
#define ST_BOLT_SHA256_TRAILER 32

/* Largest key bbolt accepts (bolt.MaxKeySize) and largest value (bolt.MaxValueSize). */
#define ST_BOLT_MAX_KEY   ((size_t)32768)
#define ST_BOLT_MAX_VALUE ((size_t)((1u << 31) - 2))

/* ------------------------------------------------------------------ writer */

typedef struct st_bolt_writer st_bolt_writer;

/*
 * st_bolt_writer_open - create (or truncate) @path and start streaming a new bbolt
 * file into it.
 * @page_size: 0 means 4096 (bbolt's default on amd64; etcd uses the OS page size);
 *             otherwise a power of two in [1024, 65536].
 * Memory: the writer holds only the current leaf page and one partly filled
 * branch page per tree level of the current bucket, plus the branch keys of
 * completed buckets' roots (one per top-level bucket), so files of any size are
 * written in small constant memory.
 * Returns 0 and sets *@out (owned by the caller until st_bolt_writer_finish or
 * st_bolt_writer_abort), ST_EINVAL (bad @page_size, NULL args), ST_EIO (cannot
 * create the file), ST_ENOMEM.
 */
int st_bolt_writer_open(const char *path, uint32_t page_size, st_bolt_writer **out);

/*
 * st_bolt_writer_bucket - end the current top-level bucket (if any) and begin the
 * next one, named @name (@len bytes, 1..ST_BOLT_MAX_KEY, any bytes). Buckets must
 * come in strictly ascending bytewise order (memcmp, shorter prefix first).
 * Returns 0, ST_EINVAL (empty/too long name, not ascending; the writer is left
 * unchanged and usable), ST_EIO, ST_ENOMEM. After ST_EIO or ST_ENOMEM the writer
 * is poisoned: every later call returns that error; only st_bolt_writer_abort
 * (or a finish, which fails and removes the file) remains.
 */
int st_bolt_writer_bucket(st_bolt_writer *w, const void *name, size_t len);

/*
 * st_bolt_writer_put - add key @k (@klen bytes, 1..ST_BOLT_MAX_KEY) with value @v
 * (@vlen bytes, 0..ST_BOLT_MAX_VALUE; @v may be NULL when @vlen is 0) to the
 * current bucket. Keys must be strictly ascending (memcmp order, a prefix sorts
 * first) within a bucket. Both buffers are copied (borrowed for the call).
 * Returns 0, ST_EINVAL (no bucket begun, empty/too long key, too long value, key
 * not ascending; writer unchanged), ST_EIO, ST_ENOMEM (both poison the writer, as
 * for st_bolt_writer_bucket).
 */
int st_bolt_writer_put(st_bolt_writer *w, const void *k, size_t klen, const void *v, size_t vlen);

/*
 * st_bolt_writer_finish - end the last bucket, write the root bucket's tree, an
 * empty freelist page and both meta pages, fsync and close the file. The newer
 * meta carries @txid (>= 1) and sits in page @txid % 2 as bbolt would put it; the
 * other meta page carries @txid - 1 and the same tree (so it is valid too).
 * Always frees @w. On failure the partial file is removed.
 * Returns 0, ST_EINVAL (@txid == 0), the error that poisoned the writer, ST_EIO,
 * ST_ENOMEM.
 */
int st_bolt_writer_finish(st_bolt_writer *w, uint64_t txid);

/* st_bolt_writer_abort - close and remove the partial file and free @w (NULL ok). */
void st_bolt_writer_abort(st_bolt_writer *w);

/*
 * st_bolt_sha256_append - append etcd's snapshot trailer to the bbolt file at
 * @path: the sha256 of the whole current file content, 32 bytes, then fsync.
 * Use it on a finished writer's file to produce what `etcdctl snapshot save`
 * produces (etcdctl snapshot restore verifies it). The hash is libcrypto's
 * SHA-256. Returns 0, ST_EIO (cannot open, read, write or fsync @path),
 * ST_ENOMEM.
 */
int st_bolt_sha256_append(const char *path);

/* ------------------------------------------------------------------ reader */

typedef struct st_bolt st_bolt;

/* Flags for st_bolt_open_flags / st_bolt_open_mem. */
enum {
	/* The file may end in etcd's 32-byte sha256 trailer (a snapshot file): when
	 * size % 512 == 32, the last 32 bytes are verified to be the sha256 of the
	 * rest (mismatch: ST_ECORRUPT "sha256 trailer mismatch") and then ignored.
	 * Without this flag a trailer-sized tail is ignored unverified. */
	ST_BOLT_SNAPSHOT = 1u << 0,
};

/*
 * st_bolt_open - map the bbolt file @path read-only (mmap; the file must not be
 * modified while open) and validate it: magic 0xED0CDAED, version 2, page size,
 * FNV-1a checksum of each meta page; the valid meta with the higher txid wins
 * (bbolt's rule), and its root/freelist page ids must lie inside the file.
 * Every page reached later is bounds-checked (id within the file and below the
 * high-water mark, header id, overflow, element offsets, page type); a walk
 * fails on a page reached twice (cycles, shared children) and on keys that are
 * not strictly ascending, a lookup on a path deeper than 64 levels.
 * A file whose size % 512 == 32 is read with the trailer ignored (see
 * ST_BOLT_SNAPSHOT to verify it). Equivalent to st_bolt_open_flags(path, 0, ...).
 * @err: on failure, a one-line reason with the path (may be NULL).
 * Returns 0 and sets *@out (free with st_bolt_close), ST_ENOTFOUND (no such
 * file), ST_EIO (cannot open/stat/map),
 * ST_ECORRUPT (not a bbolt file, both metas invalid, truncated, ...), ST_EFORMAT
 * (a valid meta with a version other than 2), ST_ENOMEM, ST_EINVAL (NULL args).
 */
int st_bolt_open(const char *path, st_bolt **out, char *err, size_t errlen);
int st_bolt_open_flags(const char *path, unsigned flags, st_bolt **out, char *err, size_t errlen);

/*
 * st_bolt_open_mem - as st_bolt_open over @len bytes at @buf, which the caller
 * keeps valid and unchanged until st_bolt_close (not copied). @flags as above.
 */
int st_bolt_open_mem(const void *buf, size_t len, unsigned flags, st_bolt **out, char *err,
                     size_t errlen);

/*
 * st_bolt_visit - callback for st_bolt_foreach / st_bolt_buckets. @k/@v point
 * into the mapped file (valid until st_bolt_close); for st_bolt_buckets @v is
 * NULL and @vlen 0. Return 0 to continue; anything else stops the walk and is
 * returned by the caller (use a value outside ST_ERRORS to tell it apart).
 */
typedef int (*st_bolt_visit)(void *arg, const uint8_t *k, size_t klen, const uint8_t *v,
                             size_t vlen);

/*
 * st_bolt_foreach - call @fn for every key of top-level bucket @bucket (@blen
 * bytes) in ascending key order. Returns 0, ST_ENOTFOUND (no such bucket, or the
 * name is a plain key of the root), ST_ECORRUPT (a malformed page on the way,
 * after the keys before it were visited), ST_ENOMEM (the walk keeps one bit per
 * page of the file), or @fn's nonzero return. Nested buckets inside @bucket
 * are visited as keys whose value is the raw bucket value.
 */
int st_bolt_foreach(st_bolt *b, const void *bucket, size_t blen, st_bolt_visit fn, void *arg);

/*
 * st_bolt_get - look up @k in top-level bucket @bucket: sets *@v / *@vlen to the
 * value inside the mapping (valid until st_bolt_close). Returns 0,
 * ST_ENOTFOUND (no such bucket or key; a nested bucket under @k also counts as
 * not found), ST_ECORRUPT.
 */
int st_bolt_get(st_bolt *b, const void *bucket, size_t blen, const void *k, size_t klen,
                const uint8_t **v, size_t *vlen);

/*
 * st_bolt_buckets - call @fn with the name of every top-level bucket, ascending.
 * Returns 0, ST_ECORRUPT, ST_ENOMEM, or @fn's nonzero return.
 */
int st_bolt_buckets(st_bolt *b, st_bolt_visit fn, void *arg);

/*
 * st_bolt_count - number of keys in top-level bucket @bucket into *@n.
 * Returns 0, ST_ENOTFOUND, ST_ECORRUPT, ST_ENOMEM.
 */
int st_bolt_count(st_bolt *b, const void *bucket, size_t blen, uint64_t *n);

/* st_bolt_errmsg - the reason of the last ST_ECORRUPT from foreach/get/buckets/
 * count on @b ("" if none); storage inside @b. The only mutable state of a
 * reader: when two threads fail at once the text may mix their reasons. */
const char *st_bolt_errmsg(const st_bolt *b);

/* The chosen meta page's txid, the size of the bbolt data (without a trailer),
 * and the page size. */
uint64_t st_bolt_txid(const st_bolt *b);
size_t st_bolt_size(const st_bolt *b);
uint32_t st_bolt_page_size(const st_bolt *b);

/* st_bolt_close - unmap/free @b (NULL ok). Pointers handed out become invalid. */
void st_bolt_close(st_bolt *b);

#endif
