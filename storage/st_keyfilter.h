/*
 * st_keyfilter: a Bloom filter over every key the keyspace has ever held, so
 * that a write of a new key learns that the key does not exist without
 * reading RocksDB (a Put of a new key otherwise pays an iterator over the
 * memtables, the SST levels and the open apply group to find nothing).
 *
 * "No" is exact, "maybe" is not: a key is added when a write txn stages it and
 * never removed (a deleted key stays "maybe"). The keys already on disk are
 * added by a thread st_db_open starts, which walks the `kv` family at a
 * snapshot taken before any write; until it has finished (or whenever the
 * filter is rebuilt after the keyspace was replaced) every answer is "maybe".
 * Sized at open for twice the keys RocksDB estimates (at least 1M keys at 10
 * bits each, about 1% false "maybe"); past that the false rate grows slowly
 * and a restart sizes it again. Adds are atomic ORs: the walking thread and
 * the node thread add at once. Internal to storage/.
 */
#ifndef METASTORE_ST_KEYFILTER_H
#define METASTORE_ST_KEYFILTER_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct st_db st_db;

typedef struct st_keyfilter {
	_Atomic uint64_t *bits; /* NULL: off (always "maybe") */
	uint64_t mask;          /* bit count - 1 (a power of two) */
	atomic_bool ready;      /* the walk of the keys on disk has finished */
	atomic_bool stop;       /* asks the walk to give up */
	bool walking;           /* a walk thread was started and not joined */
	pthread_t walker;
} st_keyfilter;

/*
 * st__kf_start - size the filter for @db and start the walk of the keys on
 * disk. Returns 0, or -1 when memory or threads are short (the filter is then
 * off: every answer "maybe", which is always correct).
 */
int st__kf_start(st_keyfilter *f, st_db *db);

/* st__kf_stop - stop and join the walk, free the filter (off afterwards). */
void st__kf_stop(st_keyfilter *f);

/*
 * st__kf_restart - the keyspace was replaced (a raft snapshot installed, a
 * bulk load): forget every key and walk again. Node thread, no apply group.
 */
void st__kf_restart(st_keyfilter *f, st_db *db);

/* st__kf_add - @key exists now (any thread). */
void st__kf_add(st_keyfilter *f, const uint8_t *key, size_t klen);

/* st__kf_maybe - false only when @key has certainly never been written. */
bool st__kf_maybe(st_keyfilter *f, const uint8_t *key, size_t klen);

#endif
