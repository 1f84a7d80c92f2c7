/*
 * ec_hash: Maintenance.Hash and HashKV over one read snapshot (see ec_hash.h).
 *
 * HashKV needs etcd's "keep" set: for every key live at the hashed revision,
 * the revision of its live version. Only entries at or below the compacted
 * revision are ever looked up, so only those are kept: one pass over the live
 * keys (st_txn_range) collects them, sorted; the pass over the records, which
 * goes in revision order too, then walks that array alongside.
 */
#include "etcdcompat/ec_hash.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "etcdcompat/ec_errors.h"
#include "etcdcompat/ec_snapshot.h"
#include "storage/st_mvcc.h"

/* ---- CRC-32C (reflected polynomial 0x82F63B78), slicing by 8 ------------ */

static uint32_t crc_tab[8][256];
static pthread_once_t crc_once = PTHREAD_ONCE_INIT;

static void crc_init(void)
{
	for (uint32_t i = 0; i < 256; i++) {
		uint32_t c = i;
		for (int k = 0; k < 8; k++)
			c = c & 1 ? (c >> 1) ^ 0x82F63B78u : c >> 1;
		crc_tab[0][i] = c;
	}
	for (uint32_t i = 0; i < 256; i++)
		for (int s = 1; s < 8; s++)
			crc_tab[s][i] = (crc_tab[s - 1][i] >> 8) ^ crc_tab[0][crc_tab[s - 1][i] & 0xff];
}

uint32_t ec_crc32c(uint32_t crc, const void *p, size_t len)
{
	pthread_once(&crc_once, crc_init);
	const uint8_t *b = p;
	uint32_t c = ~crc;
	while (len >= 8) {
		uint32_t lo = c ^ ((uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 |
				   (uint32_t)b[3] << 24);
		c = crc_tab[7][lo & 0xff] ^ crc_tab[6][(lo >> 8) & 0xff] ^
		    crc_tab[5][(lo >> 16) & 0xff] ^ crc_tab[4][lo >> 24] ^ crc_tab[3][b[4]] ^
		    crc_tab[2][b[5]] ^ crc_tab[1][b[6]] ^ crc_tab[0][b[7]];
		b += 8;
		len -= 8;
	}
	while (len--)
		c = (c >> 8) ^ crc_tab[0][(c ^ *b++) & 0xff];
	return ~c;
}

/* ---- HashKV ------------------------------------------------------------- */

typedef struct revpair {
	int64_t main, sub;
} revpair;

typedef struct keep_set {
	revpair *v;
	size_t n, cap;
	bool any_live;   /* some key is live at the hashed revision */
	int64_t below;   /* collect only versions with main <= this */
} keep_set;

static int keep_visit(void *arg, const st_kv *kv)
{
	keep_set *k = arg;
	k->any_live = true;
	if (kv->mod_rev > k->below)
		return 0;
	if (k->n == k->cap) {
		size_t cap = k->cap ? k->cap * 2 : 256;
		revpair *v = realloc(k->v, cap * sizeof(*v));
		if (v == NULL)
			return ST_ENOMEM;
		k->v = v;
		k->cap = cap;
	}
	k->v[k->n++] = (revpair){kv->mod_rev, kv->sub};
	return 0;
}

static int cmp_rev(const void *x, const void *y)
{
	const revpair *a = x, *b = y;
	if (a->main != b->main)
		return a->main < b->main ? -1 : 1;
	return a->sub < b->sub ? -1 : a->sub > b->sub;
}

typedef struct hkv {
	uint32_t crc;
	int64_t compact;  /* records with main <= this are filtered (0: none) */
	keep_set keep;
	size_t at;        /* next keep entry to compare with */
} hkv;

static int hkv_visit(void *arg, const ec_snap_record *rec)
{
	hkv *h = arg;
	if (h->compact > 0 && rec->kv->mod_rev <= h->compact && h->keep.any_live) {
		revpair r = {rec->kv->mod_rev, rec->kv->sub};
		while (h->at < h->keep.n && cmp_rev(&h->keep.v[h->at], &r) < 0)
			h->at++;
		if (h->at == h->keep.n || cmp_rev(&h->keep.v[h->at], &r) != 0)
			return 0; /* compaction at the hashed revision would drop it */
	}
	h->crc = ec_crc32c(h->crc, rec->key, rec->key_len);
	h->crc = ec_crc32c(h->crc, rec->val, rec->val_len);
	return 0;
}

static int from_st(int rc)
{
	return rc == ST_ENOMEM ? EC_NOMEM : EC_INTERNAL;
}

int ec_hash_kv(st_db *db, int64_t rev, uint32_t *hash, int64_t *cur_rev, int64_t *compact_rev)
{
	st_txn *t = NULL;
	int rc = st_txn_begin(db, false, &t);
	if (rc != ST_OK)
		return from_st(rc);
	int64_t cur = st_txn_rev(t), crev = st_txn_compact_rev(t);
	*cur_rev = cur;
	*compact_rev = crev > 0 ? crev : -1;
	*hash = 0;
	if (rev > 0 && crev > 0 && rev <= crev) {
		st_txn_abort(t);
		return EC_COMPACTED;
	}
	if (rev > cur) {
		st_txn_abort(t);
		return EC_FUTURE_REV;
	}
	if (rev <= 0)
		rev = cur;
	hkv h = {.compact = crev > 0 ? crev : 0};
	h.keep.below = h.compact;
	static const uint8_t all = 0;
	rc = st_txn_range(t, &all, 1, &all, 1, rev, keep_visit, &h.keep);
	if (rc == ST_OK) {
		if (h.keep.n > 1)
			qsort(h.keep.v, h.keep.n, sizeof(*h.keep.v), cmp_rev);
		h.crc = ec_crc32c(0, "key", 3);
		rc = ec_snapshot_key_records(t, rev, hkv_visit, &h);
	}
	st_txn_abort(t);
	free(h.keep.v);
	if (rc != ST_OK)
		return from_st(rc);
	*hash = h.crc;
	return EC_OK;
}

/* ---- Hash --------------------------------------------------------------- */

static int all_visit(void *arg, const ec_snap_record *rec)
{
	uint32_t *crc = arg;
	*crc = ec_crc32c(*crc, rec->key, rec->key_len);
	*crc = ec_crc32c(*crc, rec->val, rec->val_len);
	return 0;
}

static int lease_visit(void *arg, int64_t id, int64_t ttl)
{
	uint32_t *crc = arg;
	uint8_t b[16];
	for (int i = 0; i < 8; i++) {
		b[i] = (uint8_t)((uint64_t)id >> (56 - 8 * i));
		b[8 + i] = (uint8_t)((uint64_t)ttl >> (56 - 8 * i));
	}
	*crc = ec_crc32c(*crc, b, sizeof b);
	return 0;
}

int ec_hash_all(st_db *db, uint32_t *hash, int64_t *rev)
{
	st_txn *t = NULL;
	int rc = st_txn_begin(db, false, &t);
	if (rc != ST_OK)
		return from_st(rc);
	*rev = st_txn_rev(t);
	uint32_t crc = ec_crc32c(0, "key", 3);
	rc = ec_snapshot_key_records(t, *rev, all_visit, &crc);
	if (rc == ST_OK) {
		crc = ec_crc32c(crc, "lease", 5);
		rc = st_txn_leases(t, lease_visit, &crc);
	}
	st_txn_abort(t);
	if (rc != ST_OK)
		return from_st(rc);
	*hash = crc;
	return EC_OK;
}
