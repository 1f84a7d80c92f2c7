/*
 * st_latest: a bounded cache of the newest version of recently written or read
 * keys (create/mod revision, version, lease; whether the key is live), so that
 * a Put finds what it needs without an iterator over RocksDB and the open
 * apply group.
 *
 * A cache, never the truth: a miss costs one storage lookup, which the caller
 * then records. Two-way set associative over a hash of the key; a new key
 * replaces the way of its set used less recently. Not thread-safe: only the
 * thread that runs write txns (the node loop) touches it. Internal to
 * storage/; st_mvcc.c keeps it in step with every write of the keyspace and
 * clears it when the keyspace is replaced or a staged group is thrown away.
 */
#ifndef METASTORE_ST_LATEST_H
#define METASTORE_ST_LATEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* st__key_hash - the 64-bit hash of a user key that the cache and the key
 * filter (st_keyfilter) share. */
uint64_t st__key_hash(const uint8_t *key, size_t klen);

/* Keys longer than this are never cached (they are looked up each time). */
#define ST_LATEST_MAX_KEY 512u

/* The newest version of one key. */
typedef struct st_latest_rec {
	bool live;          /* false: no version, or the newest is a tombstone */
	int64_t create_rev; /* the fields below only when live */
	int64_t mod_rev;
	int64_t version;
	int64_t lease;
} st_latest_rec;

typedef struct st_latest_slot st_latest_slot;

typedef struct st_latest {
	st_latest_slot *slots; /* 2 per set; NULL: the cache is off */
	uint8_t *mru;          /* per set: the way used last */
	size_t sets;           /* a power of two */
	uint64_t hits, misses;
} st_latest;

/*
 * st__latest_init - an empty cache of 2 * @sets entries (@sets is rounded up
 * to a power of two; 0 turns the cache off). Returns 0, or -1 when memory is
 * short, leaving the cache off (every lookup misses).
 */
int st__latest_init(st_latest *c, size_t sets);

/* st__latest_free - release everything; the cache is off afterwards. */
void st__latest_free(st_latest *c);

/* st__latest_clear - forget every entry (keeps the memory). */
void st__latest_clear(st_latest *c);

/* st__latest_get - true and *@out when @key is cached. */
bool st__latest_get(st_latest *c, const uint8_t *key, size_t klen, st_latest_rec *out);

/*
 * st__latest_set - record @rec as @key's newest version. Best effort: a key
 * longer than ST_LATEST_MAX_KEY, or no memory for its copy, leaves no entry
 * for it (so a stale one can never stay behind).
 */
void st__latest_set(st_latest *c, const uint8_t *key, size_t klen, const st_latest_rec *rec);

#endif
