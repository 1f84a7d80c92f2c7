/*
 * st_keyfilter: the Bloom filter of keys ever written (see st_keyfilter.h).
 *
 * Seven probes per key by double hashing of st__key_hash (Kirsch and
 * Mitzenmacher: h1 + i*h2 loses nothing against seven independent hashes),
 * over a power-of-two array of 64-bit words.
 */
#include "storage/st_keyfilter.h"

#include <stdlib.h>

#include "storage/st_internal.h"

#define KF_PROBES 7
#define KF_BITS_PER_KEY 10u
#define KF_MIN_KEYS (1u << 20)

static void kf_add_hash(st_keyfilter *f, uint64_t h)
{
	uint64_t h1 = h, h2 = (h >> 32) | 1;
	for (int i = 0; i < KF_PROBES; i++) {
		uint64_t b = (h1 + (uint64_t)i * h2) & f->mask;
		atomic_fetch_or_explicit(&f->bits[b >> 6], 1ull << (b & 63), memory_order_relaxed);
	}
}

void st__kf_add(st_keyfilter *f, const uint8_t *key, size_t klen)
{
	if (f->bits != NULL)
		kf_add_hash(f, st__key_hash(key, klen));
}

bool st__kf_maybe(st_keyfilter *f, const uint8_t *key, size_t klen)
{
	if (f->bits == NULL || !atomic_load_explicit(&f->ready, memory_order_acquire))
		return true;
	uint64_t h = st__key_hash(key, klen), h1 = h, h2 = (h >> 32) | 1;
	for (int i = 0; i < KF_PROBES; i++) {
		uint64_t b = (h1 + (uint64_t)i * h2) & f->mask;
		if (!(atomic_load_explicit(&f->bits[b >> 6], memory_order_relaxed) & (1ull << (b & 63))))
			return false;
	}
	return true;
}

struct kf_walk {
	st_keyfilter *f;
	st_db *db;
	const rocksdb_snapshot_t *snap;
};

static bool kf_visit(void *arg, const uint8_t *key, size_t klen)
{
	st_keyfilter *f = arg;
	st__kf_add(f, key, klen);
	return !atomic_load_explicit(&f->stop, memory_order_relaxed);
}

static void *kf_main(void *arg)
{
	struct kf_walk *w = arg;
	int rc = st__mvcc_walk_keys(w->db, w->snap, kf_visit, w->f);
	rocksdb_release_snapshot(w->db->rdb, w->snap);
	/* Release: every key the walk added is visible to a reader that sees ready. */
	if (rc == ST_OK && !atomic_load(&w->f->stop))
		atomic_store_explicit(&w->f->ready, true, memory_order_release);
	free(w);
	return NULL;
}

/* Start a walk of @db's keys at a snapshot taken now. */
static int kf_walk_start(st_keyfilter *f, st_db *db)
{
	struct kf_walk *w = malloc(sizeof(*w));
	if (w == NULL)
		return -1;
	w->f = f;
	w->db = db;
	w->snap = rocksdb_create_snapshot(db->rdb);
	atomic_store(&f->stop, false);
	if (pthread_create(&f->walker, NULL, kf_main, w) != 0) {
		rocksdb_release_snapshot(db->rdb, w->snap);
		free(w);
		return -1;
	}
	pthread_setname_np(f->walker, "ms-keyfilter");
	f->walking = true;
	return 0;
}

static void kf_walk_join(st_keyfilter *f)
{
	if (!f->walking)
		return;
	atomic_store(&f->stop, true);
	pthread_join(f->walker, NULL);
	f->walking = false;
}

int st__kf_start(st_keyfilter *f, st_db *db)
{
	f->bits = NULL;
	f->walking = false;
	atomic_init(&f->ready, false);
	atomic_init(&f->stop, false);
	uint64_t est = 0;
	char *p = rocksdb_property_value_cf(db->rdb, db->cf[ST_CF_KV], "rocksdb.estimate-num-keys");
	if (p != NULL) {
		est = strtoull(p, NULL, 10);
		free(p);
	}
	uint64_t keys = est * 2 > KF_MIN_KEYS ? est * 2 : KF_MIN_KEYS;
	uint64_t nbits = 64;
	while (nbits < keys * KF_BITS_PER_KEY && nbits < (1ull << 40))
		nbits <<= 1;
	f->bits = calloc(nbits / 64, sizeof(*f->bits));
	if (f->bits == NULL)
		return -1;
	f->mask = nbits - 1;
	if (kf_walk_start(f, db) != 0) {
		free((void *)f->bits);
		f->bits = NULL;
		return -1;
	}
	return 0;
}

void st__kf_stop(st_keyfilter *f)
{
	kf_walk_join(f);
	free((void *)f->bits);
	f->bits = NULL;
	atomic_store(&f->ready, false);
}

void st__kf_restart(st_keyfilter *f, st_db *db)
{
	if (f->bits == NULL)
		return;
	kf_walk_join(f);
	atomic_store(&f->ready, false);
	for (uint64_t i = 0; i <= f->mask >> 6; i++)
		atomic_store_explicit(&f->bits[i], 0, memory_order_relaxed);
	if (kf_walk_start(f, db) != 0) {
		/* No thread: stay "maybe" for everything. */
		free((void *)f->bits);
		f->bits = NULL;
	}
}
