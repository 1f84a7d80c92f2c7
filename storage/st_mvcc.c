/*
 * st_mvcc: etcd's MVCC keyspace over two RocksDB column families (st_mvcc.h has
 * the model, docs/disk-format.md the byte layout).
 *
 *   kv   esc(key) 00 01 | ~main (8, BE) | ~sub (8, BE)  ->  flags | varints | value
 *   rev  main (8, BE) | sub (8, BE)                     ->  flags | key
 *
 * esc() maps byte 00 to 00 FF and leaves every other byte alone, and 00 01 ends
 * the key, so byte order of encoded records is (user key ascending, revision
 * descending): the version of a key visible at revision R is the first record at
 * or after esc(key) 00 01 ~R 0. A range walks the kv family once, skipping older
 * versions with a few next() calls before falling back to a seek.
 *
 * A transaction reads from a RocksDB snapshot. A write transaction keeps its
 * changes in memory (a Txn touches few keys) and merges them into its own reads;
 * commit turns them into one write batch together with the revision state.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "storage/st_internal.h"

#define REVKEY_LEN ST_KV_REV_LEN
#define SKIP_NEXTS 4          /* next() calls tried before a seek */
#define COMPACT_BATCH 4096    /* history records examined per compaction batch */

#define KVF_TOMBSTONE 0x01

struct change {
	uint8_t *key;
	size_t klen;
	uint8_t *val;
	size_t vlen;
	int64_t create;
	int64_t version;
	int64_t lease;
	int64_t prev_lease; /* lease of the key before this change (0: none or new) */
	int64_t sub;
	bool tomb;
};

/* A staged lease record change (st_txn_lease_grant / st_txn_lease_revoke). */
struct lease_op {
	int64_t id;
	int64_t ttl;
	bool revoke;
};

struct st_txn {
	st_db *db;
	bool write;
	bool grp; /* a write txn inside an open apply group */
	const rocksdb_snapshot_t *snap;
	rocksdb_readoptions_t *ro;
	st_kv_state st;
	struct change *ch;
	size_t nch, cap;
	int64_t compact_to;
	struct lease_op *lops;
	size_t nlops, caplops;
	/* lease attachment records to delete at commit (revokes): each is a
	 * size_t length followed by the record key */
	st_buf lease_dels;
	/* st_txn_get's copy of the last result */
	uint8_t *getbuf;
	size_t getcap;
};


/* ---- encodings -------------------------------------------------------- */

/* Append esc(@key) (without terminator). */
static int put_esc(st_buf *b, const uint8_t *key, size_t klen)
{
	if (st_buf_reserve(b, klen * 2 + 2) != ST_OK)
		return ST_ENOMEM;
	for (size_t i = 0; i < klen; i++) {
		b->p[b->len++] = key[i];
		if (key[i] == 0)
			b->p[b->len++] = 0xFF;
	}
	return ST_OK;
}

static void put_inv_rev(uint8_t *p, int64_t main, int64_t sub)
{
	st_put_be64(p, ~(uint64_t)main);
	st_put_be64(p + 8, ~(uint64_t)sub);
}

/* esc(key) 00 01 ~main ~sub */
static int kv_key(st_buf *b, const uint8_t *key, size_t klen, int64_t main, int64_t sub)
{
	b->len = 0;
	if (put_esc(b, key, klen) != ST_OK || st_buf_reserve(b, 2 + REVKEY_LEN) != ST_OK)
		return ST_ENOMEM;
	b->p[b->len++] = 0;
	b->p[b->len++] = 1;
	put_inv_rev(b->p + b->len, main, sub);
	b->len += REVKEY_LEN;
	return ST_OK;
}

/*
 * Split an encoded kv record key: *@plen = length of esc(key) 00 01 (the part
 * shared by every version of the key), revision out. When @ukey is non-NULL the
 * user key is unescaped into it. Returns ST_OK or ST_ECORRUPT.
 */
static int kv_key_parse(const uint8_t *k, size_t kl, size_t *plen, int64_t *main, int64_t *sub,
			st_buf *ukey)
{
	if (ukey != NULL)
		ukey->len = 0;
	size_t i = 0;
	for (;;) {
		if (i >= kl)
			return ST_ECORRUPT;
		if (k[i] != 0) {
			i++;
			continue;
		}
		if (i + 1 >= kl)
			return ST_ECORRUPT;
		if (k[i + 1] == 1)
			break;
		if (k[i + 1] != 0xFF)
			return ST_ECORRUPT;
		i += 2;
	}
	*plen = i + 2;
	if (kl != *plen + REVKEY_LEN)
		return ST_ECORRUPT;
	*main = (int64_t)~st_get_be64(k + *plen);
	*sub = (int64_t)~st_get_be64(k + *plen + 8);
	if (ukey != NULL) {
		if (st_buf_reserve(ukey, i) != ST_OK)
			return ST_ENOMEM;
		for (size_t j = 0; j < i; j++) {
			ukey->p[ukey->len++] = k[j];
			if (k[j] == 0)
				j++;
		}
	}
	return ST_OK;
}

static void put_varint(st_buf *b, uint64_t v)
{
	while (v >= 0x80) {
		b->p[b->len++] = (uint8_t)(v | 0x80);
		v >>= 7;
	}
	b->p[b->len++] = (uint8_t)v;
}

static int get_varint(const uint8_t **p, const uint8_t *end, uint64_t *v)
{
	uint64_t r = 0;
	for (int shift = 0; shift < 64; shift += 7) {
		if (*p >= end)
			return ST_ECORRUPT;
		uint8_t c = *(*p)++;
		r |= (uint64_t)(c & 0x7F) << shift;
		if ((c & 0x80) == 0) {
			*v = r;
			return ST_OK;
		}
	}
	return ST_ECORRUPT;
}

static int kv_val_encode(st_buf *b, const struct change *c)
{
	b->len = 0;
	if (st_buf_reserve(b, 1 + 30 + c->vlen) != ST_OK)
		return ST_ENOMEM;
	if (c->tomb) {
		b->p[b->len++] = KVF_TOMBSTONE;
		return ST_OK;
	}
	b->p[b->len++] = 0;
	put_varint(b, (uint64_t)c->create);
	put_varint(b, (uint64_t)c->version);
	put_varint(b, (uint64_t)c->lease);
	return st_buf_add(b, c->val, c->vlen);
}

/* Decode a kv record value into @kv (value points into @v). */
static int kv_val_decode(const uint8_t *v, size_t vl, st_kv *kv)
{
	if (vl < 1)
		return ST_ECORRUPT;
	const uint8_t *p = v + 1, *end = v + vl;
	kv->tombstone = (v[0] & KVF_TOMBSTONE) != 0;
	if (kv->tombstone) {
		kv->create_rev = kv->version = kv->lease = 0;
		kv->val = NULL;
		kv->val_len = 0;
		return vl == 1 ? ST_OK : ST_ECORRUPT;
	}
	uint64_t c, ver, l;
	if (get_varint(&p, end, &c) || get_varint(&p, end, &ver) || get_varint(&p, end, &l))
		return ST_ECORRUPT;
	kv->create_rev = (int64_t)c;
	kv->version = (int64_t)ver;
	kv->lease = (int64_t)l;
	kv->val = p;
	kv->val_len = (size_t)(end - p);
	return ST_OK;
}

static int rocks_iter_err(rocksdb_iterator_t *it)
{
	char *err = NULL;
	rocksdb_iter_get_error(it, &err);
	if (err == NULL)
		return ST_OK;
	int rc = st__rocks_err(err);
	free(err);
	return rc == ST_ENOTFOUND ? ST_EIO : rc;
}

int st__mvcc_walk_keys(st_db *db, const rocksdb_snapshot_t *snap,
		       bool (*fn)(void *arg, const uint8_t *key, size_t klen), void *arg)
{
	rocksdb_readoptions_t *ro = st__readopts();
	if (ro == NULL)
		return ST_ENOMEM;
	rocksdb_readoptions_set_snapshot(ro, snap);
	rocksdb_readoptions_set_fill_cache(ro, 0);
	rocksdb_iterator_t *it = rocksdb_create_iterator_cf(db->rdb, ro, db->cf[ST_CF_KV]);
	st_buf ukey = {0};
	int rc = it != NULL ? ST_OK : ST_ENOMEM;
	if (it != NULL)
		rocksdb_iter_seek_to_first(it);
	for (; rc == ST_OK && rocksdb_iter_valid(it); rocksdb_iter_next(it)) {
		size_t kl, plen;
		int64_t main, sub;
		const uint8_t *k = (const uint8_t *)rocksdb_iter_key(it, &kl);
		if ((rc = kv_key_parse(k, kl, &plen, &main, &sub, &ukey)) != ST_OK)
			break;
		if (!fn(arg, ukey.p, ukey.len))
			break;
	}
	if (rc == ST_OK && it != NULL)
		rc = rocks_iter_err(it);
	if (it != NULL)
		rocksdb_iter_destroy(it);
	rocksdb_readoptions_destroy(ro);
	free(ukey.p);
	return rc;
}

/* ---- state ------------------------------------------------------------ */

void st_kv_state_get(st_db *db, st_kv_state *out)
{
	pthread_mutex_lock(&db->mu);
	*out = db->kv;
	pthread_mutex_unlock(&db->mu);
}

/* ---- transactions ----------------------------------------------------- */

int st_txn_begin(st_db *db, bool write, st_txn **out)
{
	st_txn *t = calloc(1, sizeof(*t));
	if (t == NULL)
		return ST_ENOMEM;
	t->ro = st__readopts();
	if (t->ro == NULL) {
		free(t);
		return ST_ENOMEM;
	}
	t->db = db;
	t->write = write;
	pthread_mutex_lock(&db->mu);
	t->snap = rocksdb_create_snapshot(db->rdb);
	t->st = db->kv;
	pthread_mutex_unlock(&db->mu);
	if (write && db->grp_open) {
		/* the group is the node thread's own: no lock needed */
		t->grp = true;
		t->st = db->grp_st;
	}
	rocksdb_readoptions_set_snapshot(t->ro, t->snap);
	*out = t;
	return ST_OK;
}

int64_t st_txn_rev(const st_txn *t)
{
	return t->st.rev + (t->nch > 0 ? 1 : 0);
}

int64_t st_txn_base_rev(const st_txn *t)
{
	return t->st.rev;
}

int64_t st_txn_compact_rev(const st_txn *t)
{
	return t->st.compact_rev;
}

uint64_t st_txn_applied(const st_txn *t)
{
	return t->st.applied;
}

size_t st_txn_changes(const st_txn *t)
{
	return t->nch;
}

static void txn_free(st_txn *t)
{
	for (size_t i = 0; i < t->nch; i++) {
		free(t->ch[i].key);
		free(t->ch[i].val);
	}
	free(t->ch);
	free(t->lops);
	free(t->lease_dels.p);
	free(t->getbuf);
	rocksdb_readoptions_destroy(t->ro);
	rocksdb_release_snapshot(t->db->rdb, t->snap);
	free(t);
}

void st_txn_abort(st_txn *t)
{
	if (t != NULL)
		txn_free(t);
}

/* Byte-wise comparison of two user keys (shorter prefix first). */
int st_key_cmp(const uint8_t *a, size_t al, const uint8_t *b, size_t bl)
{
	size_t n = al < bl ? al : bl;
	int c = n ? memcmp(a, b, n) : 0;
	if (c != 0)
		return c;
	return al < bl ? -1 : al > bl ? 1 : 0;
}

enum { RANGE_ONE, RANGE_TO_END, RANGE_BOUNDED };

static int range_kind(const uint8_t *end, size_t elen)
{
	if (elen == 0)
		return RANGE_ONE;
	if (elen == 1 && end[0] == 0)
		return RANGE_TO_END;
	return RANGE_BOUNDED;
}

static bool in_range(const uint8_t *k, size_t kl, const uint8_t *key, size_t klen,
		     const uint8_t *end, size_t elen)
{
	switch (range_kind(end, elen)) {
	case RANGE_ONE:
		return st_key_cmp(k, kl, key, klen) == 0;
	case RANGE_TO_END:
		return st_key_cmp(k, kl, key, klen) >= 0;
	default:
		return st_key_cmp(k, kl, key, klen) >= 0 && st_key_cmp(k, kl, end, elen) < 0;
	}
}

/*
 * An iterator over column family @cf as @t sees it: @ro (its snapshot and
 * bounds) and, for a write txn inside an apply group, every change the group
 * staged before it, laid over the snapshot (t's own changes are merged by the
 * callers). The group's part ignores @ro's upper bound: callers check their
 * bounds themselves. NULL when out of memory.
 */
static rocksdb_iterator_t *txn_iter(st_txn *t, const rocksdb_readoptions_t *ro, int cf)
{
	rocksdb_iterator_t *it = rocksdb_create_iterator_cf(t->db->rdb, ro, t->db->cf[cf]);
	if (it != NULL && t->grp) /* takes over the base iterator */
		it = rocksdb_writebatch_wi_create_iterator_with_base_cf(t->db->grp_wb, it,
									t->db->cf[cf]);
	return it;
}

/* Bytewise order of two encoded keys, as RocksDB's default comparator. */
static int raw_cmp(const uint8_t *a, size_t al, const uint8_t *b, size_t bl)
{
	int c = memcmp(a, b, al < bl ? al : bl);
	if (c != 0)
		return c;
	return al < bl ? -1 : al > bl;
}

/*
 * Walk the data @t reads (its snapshot, plus an apply group's staged changes)
 * over [key, end) at revision @rev. Returns
 * 0 (including when the visitor stopped; *@stopped tells), the visitor's abort
 * value, or a storage error.
 */
static int db_range(st_txn *t, const uint8_t *key, size_t klen, const uint8_t *end, size_t elen,
		    int64_t rev, st_kv_visit fn, void *arg, bool *stopped)
{
	int kind = range_kind(end, elen);
	*stopped = false;
	if (kind == RANGE_BOUNDED && st_key_cmp(end, elen, key, klen) <= 0)
		return ST_OK;

	st_buf start = {0}, upper = {0}, prefix = {0}, ukey = {0}, seek = {0};
	int rc = put_esc(&start, key, klen);
	if (rc == ST_OK && kind == RANGE_ONE) {
		rc = st_buf_add(&upper, start.p, start.len);
		if (rc == ST_OK)
			rc = st_buf_add(&upper, "\x00\x02", 2);
	} else if (rc == ST_OK && kind == RANGE_BOUNDED) {
		rc = put_esc(&upper, end, elen);
	}
	if (rc != ST_OK)
		goto out;

	rocksdb_readoptions_t *ro = st__readopts();
	if (ro == NULL) {
		rc = ST_ENOMEM;
		goto out;
	}
	rocksdb_readoptions_set_snapshot(ro, t->snap);
	if (kind != RANGE_TO_END)
		rocksdb_readoptions_set_iterate_upper_bound(ro, (const char *)upper.p, upper.len);
	if (kind == RANGE_ONE) {
		/* One key: seek to its newest possible record (revision bytes all
		 * zero: ~-1), whose prefix the family's blooms know, so that files
		 * without a version of the key are skipped. */
		rocksdb_readoptions_set_total_order_seek(ro, 0);
		rocksdb_readoptions_set_prefix_same_as_start(ro, 1);
		if ((rc = kv_key(&start, key, klen, -1, -1)) != ST_OK) {
			rocksdb_readoptions_destroy(ro);
			goto out;
		}
	}
	rocksdb_iterator_t *it = txn_iter(t, ro, ST_CF_KV);
	if (it == NULL) {
		rocksdb_readoptions_destroy(ro);
		rc = ST_ENOMEM;
		goto out;
	}
	rocksdb_iter_seek(it, (const char *)start.p, start.len);

	while (rc == ST_OK && rocksdb_iter_valid(it)) {
		size_t kl, plen;
		int64_t main, sub;
		const uint8_t *k = (const uint8_t *)rocksdb_iter_key(it, &kl);
		if (kind != RANGE_TO_END && raw_cmp(k, kl, upper.p, upper.len) >= 0)
			break;
		rc = kv_key_parse(k, kl, &plen, &main, &sub, NULL);
		if (rc != ST_OK)
			break;
		if (main > rev) {
			/* Newer than wanted: step over a few versions, else seek. */
			prefix.len = 0;
			if ((rc = st_buf_add(&prefix, k, plen)) != ST_OK)
				break;
			bool found = false;
			for (int i = 0; i < SKIP_NEXTS; i++) {
				rocksdb_iter_next(it);
				if (!rocksdb_iter_valid(it))
					break;
				k = (const uint8_t *)rocksdb_iter_key(it, &kl);
				if (kl != prefix.len + REVKEY_LEN || memcmp(k, prefix.p, prefix.len) != 0) {
					found = true; /* moved on to the next key */
					break;
				}
				if ((int64_t)~st_get_be64(k + prefix.len) <= rev) {
					found = true;
					break;
				}
			}
			if (!found && rocksdb_iter_valid(it)) {
				seek.len = 0;
				if ((rc = st_buf_add(&seek, prefix.p, prefix.len)) != ST_OK ||
				    (rc = st_buf_reserve(&seek, REVKEY_LEN)) != ST_OK)
					break;
				put_inv_rev(seek.p + seek.len, rev, -1);
				seek.len += REVKEY_LEN;
				rocksdb_iter_seek(it, (const char *)seek.p, seek.len);
			}
			continue;
		}

		/* The version of this key visible at @rev. */
		size_t vl;
		const uint8_t *v = (const uint8_t *)rocksdb_iter_value(it, &vl);
		st_kv kv = {0};
		if ((rc = kv_val_decode(v, vl, &kv)) != ST_OK)
			break;
		prefix.len = 0;
		if ((rc = st_buf_add(&prefix, k, plen)) != ST_OK)
			break;
		if (!kv.tombstone) {
			if ((rc = kv_key_parse(k, kl, &plen, &main, &sub, &ukey)) != ST_OK)
				break;
			kv.key = ukey.p;
			kv.key_len = ukey.len;
			kv.mod_rev = main;
			kv.sub = sub;
			int vr = fn(arg, &kv);
			if (vr == ST_VISIT_STOP) {
				*stopped = true;
				break;
			}
			if (vr != 0) {
				rc = vr;
				break;
			}
		}
		/* Move past the older versions of this key. */
		bool moved = false;
		for (int i = 0; i < SKIP_NEXTS; i++) {
			rocksdb_iter_next(it);
			if (!rocksdb_iter_valid(it)) {
				moved = true;
				break;
			}
			k = (const uint8_t *)rocksdb_iter_key(it, &kl);
			if (kl < prefix.len || memcmp(k, prefix.p, prefix.len) != 0) {
				moved = true;
				break;
			}
		}
		if (!moved) {
			prefix.p[prefix.len - 1] = 2; /* esc(key) 00 02: just past every version */
			rocksdb_iter_seek(it, (const char *)prefix.p, prefix.len);
		}
	}
	if (rc == ST_OK)
		rc = rocks_iter_err(it);
	rocksdb_iter_destroy(it);
	rocksdb_readoptions_destroy(ro);
out:
	free(start.p);
	free(upper.p);
	free(prefix.p);
	free(ukey.p);
	free(seek.p);
	return rc;
}

/* Merge of the write txn's own changes into a committed-data walk. */
struct merge {
	st_txn *t;
	struct change **pend; /* latest change per key, ascending key order */
	size_t n, i;
	st_kv_visit fn;
	void *arg;
	bool stopped;
};

static int emit_change(struct merge *m, const struct change *c)
{
	if (c->tomb)
		return 0;
	st_kv kv = {.key = c->key,
		    .key_len = c->klen,
		    .val = c->val,
		    .val_len = c->vlen,
		    .create_rev = c->create,
		    .mod_rev = m->t->st.rev + 1,
		    .version = c->version,
		    .lease = c->lease,
		    .sub = c->sub};
	int r = m->fn(m->arg, &kv);
	if (r == ST_VISIT_STOP)
		m->stopped = true;
	return r;
}

static int merge_visit(void *arg, const st_kv *kv)
{
	struct merge *m = arg;
	while (m->i < m->n) {
		const struct change *c = m->pend[m->i];
		int cmp = st_key_cmp(c->key, c->klen, kv->key, kv->key_len);
		if (cmp > 0)
			break;
		m->i++;
		int r = emit_change(m, c);
		if (r != 0)
			return r;
		if (cmp == 0)
			return 0; /* the txn's change replaces the committed version */
	}
	int r = m->fn(m->arg, kv);
	if (r == ST_VISIT_STOP)
		m->stopped = true;
	return r;
}

static int cmp_change_ptr(const void *a, const void *b)
{
	const struct change *x = *(const struct change *const *)a;
	const struct change *y = *(const struct change *const *)b;
	int c = st_key_cmp(x->key, x->klen, y->key, y->klen);
	if (c != 0)
		return c;
	return x->sub > y->sub ? -1 : x->sub < y->sub ? 1 : 0; /* newest first */
}

int st_txn_range(st_txn *t, const uint8_t *key, size_t klen, const uint8_t *end, size_t elen,
		 int64_t rev, st_kv_visit fn, void *arg)
{
	if (rev < t->st.compact_rev)
		return ST_ECOMPACTED;
	if (rev > st_txn_rev(t))
		return ST_EINVAL;
	bool stopped;
	if (t->nch == 0 || rev != st_txn_rev(t))
		return db_range(t, key, klen, end, elen, rev, fn, arg, &stopped);

	struct merge m = {.t = t, .fn = fn, .arg = arg};
	m.pend = malloc(t->nch * sizeof(*m.pend));
	if (m.pend == NULL)
		return ST_ENOMEM;
	size_t n = 0;
	for (size_t i = 0; i < t->nch; i++)
		if (in_range(t->ch[i].key, t->ch[i].klen, key, klen, end, elen))
			m.pend[n++] = &t->ch[i];
	qsort(m.pend, n, sizeof(*m.pend), cmp_change_ptr);
	for (size_t i = 0; i < n; i++) /* keep the newest change of each key */
		if (m.n == 0 || st_key_cmp(m.pend[m.n - 1]->key, m.pend[m.n - 1]->klen, m.pend[i]->key,
					m.pend[i]->klen) != 0)
			m.pend[m.n++] = m.pend[i];

	int rc = db_range(t, key, klen, end, elen, t->st.rev, merge_visit, &m, &stopped);
	while (rc == ST_OK && !m.stopped && m.i < m.n) {
		int r = emit_change(&m, m.pend[m.i++]);
		if (r != 0 && r != ST_VISIT_STOP)
			rc = r;
	}
	free(m.pend);
	return rc;
}

struct get_ctx {
	st_txn *t;
	st_kv *out;
	int rc;
	bool found;
};

static int get_visit(void *arg, const st_kv *kv)
{
	struct get_ctx *g = arg;
	size_t need = kv->key_len + kv->val_len;
	if (need > g->t->getcap) {
		uint8_t *p = realloc(g->t->getbuf, need);
		if (p == NULL)
			return ST_ENOMEM;
		g->t->getbuf = p;
		g->t->getcap = need;
	}
	*g->out = *kv;
	if (kv->key_len)
		memcpy(g->t->getbuf, kv->key, kv->key_len);
	if (kv->val_len)
		memcpy(g->t->getbuf + kv->key_len, kv->val, kv->val_len);
	g->out->key = g->t->getbuf;
	g->out->val = g->t->getbuf + kv->key_len;
	g->found = true;
	return ST_VISIT_STOP;
}

int st_txn_get(st_txn *t, const uint8_t *key, size_t klen, st_kv *kv)
{
	struct get_ctx g = {.t = t, .out = kv};
	int rc = st_txn_range(t, key, klen, NULL, 0, st_txn_rev(t), get_visit, &g);
	if (rc != ST_OK)
		return rc;
	return g.found ? ST_OK : ST_ENOTFOUND;
}

static int meta_visit(void *arg, const st_kv *kv)
{
	st_latest_rec *r = arg;
	r->live = true;
	r->create_rev = kv->create_rev;
	r->mod_rev = kv->mod_rev;
	r->version = kv->version;
	r->lease = kv->lease;
	return ST_VISIT_STOP;
}

/* Whether write txn @t may use (and fill) the newest-version cache: it reads
 * what the cache holds, the committed state plus the open group's changes. */
static bool latest_usable(const st_txn *t)
{
	return t->write && (t->grp || !t->db->grp_open);
}

/*
 * The newest version of @key as write txn @t sees it: its own changes first,
 * then the cache, then storage (recorded in the cache). Returns 0 or a storage
 * error; out->live tells whether the key exists.
 */
static int txn_latest(st_txn *t, const uint8_t *key, size_t klen, st_latest_rec *out)
{
	for (size_t i = t->nch; i-- > 0;) {
		const struct change *c = &t->ch[i];
		if (c->klen == klen && (klen == 0 || memcmp(c->key, key, klen) == 0)) {
			*out = (st_latest_rec){.live = !c->tomb, .create_rev = c->create,
					       .mod_rev = t->st.rev + 1, .version = c->version,
					       .lease = c->lease};
			return ST_OK;
		}
	}
	bool use = latest_usable(t);
	if (use && st__latest_get(&t->db->latest, key, klen, out))
		return ST_OK;
	*out = (st_latest_rec){0};
	int rc = ST_OK;
	bool stopped;
	if (!use || st__kf_maybe(&t->db->kf, key, klen)) /* else: never written */
		rc = db_range(t, key, klen, NULL, 0, t->st.rev, meta_visit, out, &stopped);
	if (rc == ST_OK && use)
		st__latest_set(&t->db->latest, key, klen, out);
	return rc;
}

/* Record write txn @t's changes (in order: the last change of a key wins) as
 * the newest versions, once they are staged or written. */
static void latest_note(st_txn *t)
{
	for (size_t i = 0; i < t->nch; i++) {
		const struct change *c = &t->ch[i];
		st_latest_rec r = {.live = !c->tomb, .create_rev = c->create,
				   .mod_rev = t->st.rev + 1, .version = c->version,
				   .lease = c->lease};
		if (c->tomb)
			r = (st_latest_rec){0};
		else
			st__kf_add(&t->db->kf, c->key, c->klen);
		st__latest_set(&t->db->latest, c->key, c->klen, &r);
	}
}

int st_txn_get_meta(st_txn *t, const uint8_t *key, size_t klen, st_kv *kv)
{
	if (!t->write) {
		int rc = st_txn_get(t, key, klen, kv);
		if (rc == ST_OK) {
			kv->key = key;
			kv->val = NULL;
			kv->val_len = 0;
		}
		return rc;
	}
	st_latest_rec r;
	int rc = txn_latest(t, key, klen, &r);
	if (rc != ST_OK)
		return rc;
	if (!r.live)
		return ST_ENOTFOUND;
	*kv = (st_kv){.key = key, .key_len = klen, .create_rev = r.create_rev,
		      .mod_rev = r.mod_rev, .version = r.version, .lease = r.lease};
	return ST_OK;
}

static int add_change(st_txn *t, const uint8_t *key, size_t klen, const uint8_t *val, size_t vlen,
		      int64_t create, int64_t version, int64_t lease, int64_t prev_lease, bool tomb)
{
	if (t->nch == t->cap) {
		size_t cap = t->cap ? t->cap * 2 : 8;
		struct change *ch = realloc(t->ch, cap * sizeof(*ch));
		if (ch == NULL)
			return ST_ENOMEM;
		t->ch = ch;
		t->cap = cap;
	}
	struct change *c = &t->ch[t->nch];
	memset(c, 0, sizeof(*c));
	c->key = malloc(klen ? klen : 1);
	c->val = vlen ? malloc(vlen) : NULL;
	if (c->key == NULL || (vlen && c->val == NULL)) {
		free(c->key);
		free(c->val);
		return ST_ENOMEM;
	}
	memcpy(c->key, key, klen);
	if (vlen)
		memcpy(c->val, val, vlen);
	c->klen = klen;
	c->vlen = vlen;
	c->create = create;
	c->version = version;
	c->lease = lease;
	c->prev_lease = prev_lease;
	c->sub = (int64_t)t->nch;
	c->tomb = tomb;
	t->nch++;
	return ST_OK;
}

int st_txn_put(st_txn *t, const uint8_t *key, size_t klen, const uint8_t *val, size_t vlen,
	       int64_t lease)
{
	if (!t->write)
		return ST_EINVAL;
	st_latest_rec prev;
	int rc = txn_latest(t, key, klen, &prev);
	if (rc != ST_OK)
		return rc;
	if (!prev.live)
		return add_change(t, key, klen, val, vlen, t->st.rev + 1, 1, lease, 0, false);
	return add_change(t, key, klen, val, vlen, prev.create_rev, prev.version + 1, lease, prev.lease,
			  false);
}

struct collect {
	st_buf keys;  /* concatenated keys */
	st_buf lens;  /* size_t per key */
	st_buf leases; /* int64_t per key */
};

static int collect_visit(void *arg, const st_kv *kv)
{
	struct collect *c = arg;
	if (st_buf_add(&c->keys, kv->key, kv->key_len) != ST_OK ||
	    st_buf_add(&c->lens, &kv->key_len, sizeof(size_t)) != ST_OK ||
	    st_buf_add(&c->leases, &kv->lease, sizeof(int64_t)) != ST_OK)
		return ST_ENOMEM;
	return 0;
}

int st_txn_delete_range(st_txn *t, const uint8_t *key, size_t klen, const uint8_t *end,
			size_t elen, int64_t *deleted)
{
	if (deleted != NULL)
		*deleted = 0;
	if (!t->write)
		return ST_EINVAL;
	struct collect c = {0};
	int rc = st_txn_range(t, key, klen, end, elen, st_txn_rev(t), collect_visit, &c);
	size_t n = c.lens.len / sizeof(size_t), off = 0;
	for (size_t i = 0; rc == ST_OK && i < n; i++) {
		size_t kl;
		int64_t pl;
		memcpy(&kl, c.lens.p + i * sizeof(size_t), sizeof(size_t));
		memcpy(&pl, c.leases.p + i * sizeof(int64_t), sizeof(int64_t));
		rc = add_change(t, c.keys.p + off, kl, NULL, 0, 0, 0, 0, pl, true);
		off += kl;
	}
	if (rc == ST_OK && deleted != NULL)
		*deleted = (int64_t)n;
	free(c.keys.p);
	free(c.lens.p);
	free(c.leases.p);
	return rc;
}

int st_txn_compact(st_txn *t, int64_t rev)
{
	if (!t->write || rev <= t->st.compact_rev || rev > t->st.rev)
		return ST_EINVAL;
	t->compact_to = rev;
	return ST_OK;
}

/* ---- leases ------------------------------------------------------------
 *
 * The "lease" family: 'L' BE64(id) -> format byte (1) + BE64 granted TTL, and
 * 'K' BE64(id) raw-key -> "" for every live key attached to lease id. The 'K'
 * records are maintained by commit from each change's old and new lease, so
 * they always match the kv family's current revision. */

#define LEASE_TAG_LEASE 'L'
#define LEASE_TAG_KEY 'K'
#define LEASE_FORMAT 1

static int lease_key(st_buf *b, uint8_t tag, int64_t id, const uint8_t *key, size_t klen)
{
	uint8_t h[9];
	h[0] = tag;
	st_put_be64(h + 1, (uint64_t)id);
	b->len = 0;
	int rc = st_buf_add(b, h, 9);
	if (rc == ST_OK && klen > 0)
		rc = st_buf_add(b, key, klen);
	return rc;
}

static int add_lease_op(st_txn *t, int64_t id, int64_t ttl, bool revoke)
{
	if (!t->write)
		return ST_EINVAL;
	if (id == 0)
		return ST_EINVAL;
	if (t->nlops == t->caplops) {
		size_t cap = t->caplops ? t->caplops * 2 : 4;
		struct lease_op *p = realloc(t->lops, cap * sizeof(*p));
		if (p == NULL)
			return ST_ENOMEM;
		t->lops = p;
		t->caplops = cap;
	}
	t->lops[t->nlops++] = (struct lease_op){id, ttl, revoke};
	return ST_OK;
}

int st_txn_lease_grant(st_txn *t, int64_t id, int64_t ttl)
{
	return add_lease_op(t, id, ttl, false);
}

static int lease_walk(st_txn *t, uint8_t tag, bool one, int64_t id, st_lease_visit lfn,
		      st_lease_key_visit kfn, void *arg);

/* A revoke's walk over its lease's attachments (st_txn_lease_revoke). */
struct revoke_walk {
	st_txn *t;
	int64_t id;
	st_lease_key_visit fn;
	void *arg;
};

/* Remember attachment record @key for deletion at commit (lease_dels), then
 * hand the key to the caller's visitor. */
static int revoke_visit(void *arg, const uint8_t *key, size_t klen)
{
	struct revoke_walk *w = arg;
	uint8_t h[9];
	h[0] = LEASE_TAG_KEY;
	st_put_be64(h + 1, (uint64_t)w->id);
	size_t len = 9 + klen;
	if (st_buf_add(&w->t->lease_dels, &len, sizeof(len)) != ST_OK ||
	    st_buf_add(&w->t->lease_dels, h, 9) != ST_OK ||
	    st_buf_add(&w->t->lease_dels, key, klen) != ST_OK)
		return ST_ENOMEM;
	return w->fn != NULL ? w->fn(w->arg, key, klen) : 0;
}

int st_txn_lease_revoke(st_txn *t, int64_t id, st_lease_key_visit fn, void *arg)
{
	int rc = add_lease_op(t, id, 0, true);
	if (rc != ST_OK)
		return rc;
	/* One walk serves both: every attachment record goes at commit, whether
	 * or not the caller deletes its key (the index never outlives the lease). */
	struct revoke_walk w = {t, id, fn, arg};
	rc = lease_walk(t, LEASE_TAG_KEY, true, id, NULL, revoke_visit, &w);
	if (rc != ST_OK)
		t->nlops--;
	return rc;
}

/* Walk the 'tag' records (of lease @id when @one) that @t reads: its snapshot
 * plus an apply group's staged changes, not @t's own. */
static int lease_walk(st_txn *t, uint8_t tag, bool one, int64_t id, st_lease_visit lfn,
		      st_lease_key_visit kfn, void *arg)
{
	uint8_t lo[9];
	size_t n = one ? 9 : 1;
	lo[0] = tag;
	if (one)
		st_put_be64(lo + 1, (uint64_t)id);
	rocksdb_iterator_t *it = txn_iter(t, t->ro, ST_CF_LEASE);
	if (it == NULL)
		return ST_ENOMEM;
	int rc = ST_OK;
	for (rocksdb_iter_seek(it, (const char *)lo, n); rocksdb_iter_valid(it); rocksdb_iter_next(it)) {
		size_t kl, vl;
		const uint8_t *k = (const uint8_t *)rocksdb_iter_key(it, &kl);
		const uint8_t *v = (const uint8_t *)rocksdb_iter_value(it, &vl);
		if (kl < 9 || k[0] != tag)
			break;
		int64_t rid = (int64_t)st_get_be64(k + 1);
		if (one && rid != id)
			break;
		int r;
		if (tag == LEASE_TAG_LEASE) {
			if (vl != 9 || v[0] != LEASE_FORMAT) {
				rc = ST_ECORRUPT;
				break;
			}
			r = lfn(arg, rid, (int64_t)st_get_be64(v + 1));
		} else {
			r = kfn(arg, k + 9, kl - 9);
		}
		if (r == ST_VISIT_STOP)
			break;
		if (r != 0) {
			rc = r;
			break;
		}
	}
	if (rc == ST_OK)
		rc = rocks_iter_err(it);
	rocksdb_iter_destroy(it);
	return rc;
}

int st_txn_leases(st_txn *t, st_lease_visit fn, void *arg)
{
	return lease_walk(t, LEASE_TAG_LEASE, false, 0, fn, NULL, arg);
}

int st_txn_lease_keys(st_txn *t, int64_t id, st_lease_key_visit fn, void *arg)
{
	return lease_walk(t, LEASE_TAG_KEY, true, id, NULL, fn, arg);
}

/* ---- commit and compaction -------------------------------------------- */

/*
 * Where a commit's writes go: a plain write batch, or the open apply group's
 * indexed batch (exactly one of the two is set).
 */
typedef struct sink {
	rocksdb_writebatch_t *b;
	rocksdb_writebatch_wi_t *wi;
} sink;

static void sink_put(sink *o, rocksdb_column_family_handle_t *cf, const void *k, size_t kl,
		     const void *v, size_t vl)
{
	if (o->wi != NULL)
		rocksdb_writebatch_wi_put_cf(o->wi, cf, k, kl, v, vl);
	else
		rocksdb_writebatch_put_cf(o->b, cf, k, kl, v, vl);
}

static void sink_del(sink *o, rocksdb_column_family_handle_t *cf, const void *k, size_t kl)
{
	if (o->wi != NULL)
		rocksdb_writebatch_wi_delete_cf(o->wi, cf, k, kl);
	else
		rocksdb_writebatch_delete_cf(o->b, cf, k, kl);
}

static void sink_kvstate(sink *o, st_db *db, const st_kv_state *s)
{
	uint8_t v[32];
	st__kvstate_encode(s, v);
	sink_put(o, db->cf[ST_CF_DEFAULT], ST_META_KVSTATE, strlen(ST_META_KVSTATE), v, 32);
}

static void batch_kvstate(rocksdb_writebatch_t *b, st_db *db, const st_kv_state *s)
{
	sink o = {.b = b};
	sink_kvstate(&o, db, s);
}

static int write_batch(st_db *db, rocksdb_writebatch_t *b)
{
	char *err = NULL;
	rocksdb_write(db->rdb, db->wo, b, &err);
	if (err == NULL)
		return ST_OK;
	int rc = st__rocks_err(err);
	free(err);
	return rc == ST_ENOTFOUND ? ST_EIO : rc;
}

/*
 * Physically remove what compaction at @to hides, walking the history in
 * (@from, @to]. For each change (K, r) the next older version of K (now never
 * visible again) is deleted, and a tombstone is deleted itself (its older
 * versions are gone by then, in this batch or an earlier one). Batches are
 * written in revision order, so a reader's snapshot never sees a tombstone
 * missing while an older version of its key remains. The last batch records
 * compact_done = @to.
 */
static int compact_physical(st_db *db, int64_t from, int64_t to)
{
	uint8_t lo[REVKEY_LEN], hi[REVKEY_LEN];
	st_put_be64(lo, (uint64_t)from + 1);
	st_put_be64(lo + 8, 0);
	st_put_be64(hi, (uint64_t)to + 1);
	st_put_be64(hi + 8, 0);
	st_buf kk = {0}, ukey = {0};
	int rc = ST_OK;
	bool done = false;

	while (rc == ST_OK && !done) {
		rocksdb_readoptions_t *ro = st__readopts();
		rocksdb_readoptions_set_iterate_upper_bound(ro, (char *)hi, REVKEY_LEN);
		rocksdb_iterator_t *rit = rocksdb_create_iterator_cf(db->rdb, ro, db->cf[ST_CF_REV]);
		rocksdb_iterator_t *kit = rocksdb_create_iterator_cf(db->rdb, db->ro, db->cf[ST_CF_KV]);
		rocksdb_writebatch_t *b = rocksdb_writebatch_create();
		int n = 0;
		rocksdb_iter_seek(rit, (char *)lo, REVKEY_LEN);
		for (; rocksdb_iter_valid(rit) && n < COMPACT_BATCH; rocksdb_iter_next(rit), n++) {
			size_t rkl, rvl;
			const uint8_t *rk = (const uint8_t *)rocksdb_iter_key(rit, &rkl);
			const uint8_t *rv = (const uint8_t *)rocksdb_iter_value(rit, &rvl);
			if (rkl != REVKEY_LEN || rvl < 1) {
				rc = ST_ECORRUPT;
				break;
			}
			int64_t main = (int64_t)st_get_be64(rk), sub = (int64_t)st_get_be64(rk + 8);
			memcpy(lo, rk, REVKEY_LEN);
			if ((rc = kv_key(&kk, rv + 1, rvl - 1, main, sub)) != ST_OK)
				break;
			rocksdb_iter_seek(kit, (const char *)kk.p, kk.len);
			size_t kl;
			const uint8_t *k;
			if (rocksdb_iter_valid(kit) &&
			    (k = (const uint8_t *)rocksdb_iter_key(kit, &kl), kl == kk.len) &&
			    memcmp(k, kk.p, kl) == 0) {
				rocksdb_iter_next(kit);
				size_t plen = kk.len - REVKEY_LEN;
				if (rocksdb_iter_valid(kit)) {
					k = (const uint8_t *)rocksdb_iter_key(kit, &kl);
					if (kl == kk.len && memcmp(k, kk.p, plen) == 0) {
						int64_t pm, ps;
						size_t pl;
						if ((rc = kv_key_parse(k, kl, &pl, &pm, &ps, NULL)) != ST_OK)
							break;
						uint8_t prk[REVKEY_LEN];
						st_put_be64(prk, (uint64_t)pm);
						st_put_be64(prk + 8, (uint64_t)ps);
						rocksdb_writebatch_delete_cf(b, db->cf[ST_CF_KV], (const char *)k, kl);
						rocksdb_writebatch_delete_cf(b, db->cf[ST_CF_REV], (char *)prk,
									     REVKEY_LEN);
					}
				}
			}
			if (rv[0] & KVF_TOMBSTONE) {
				rocksdb_writebatch_delete_cf(b, db->cf[ST_CF_KV], (const char *)kk.p, kk.len);
				rocksdb_writebatch_delete_cf(b, db->cf[ST_CF_REV], (const char *)rk, rkl);
			}
		}
		if (rc == ST_OK)
			rc = rocks_iter_err(rit);
		if (rc == ST_OK)
			rc = rocks_iter_err(kit);
		if (rc == ST_OK && n < COMPACT_BATCH) {
			done = true;
			pthread_mutex_lock(&db->mu);
			st_kv_state s = db->kv;
			s.compact_done = to;
			batch_kvstate(b, db, &s);
			rc = write_batch(db, b);
			if (rc == ST_OK)
				db->kv.compact_done = to;
			pthread_mutex_unlock(&db->mu);
		} else if (rc == ST_OK) {
			rc = write_batch(db, b);
			/* resume just after the last record examined */
			uint64_t s = st_get_be64(lo + 8) + 1;
			st_put_be64(lo + 8, s);
		}
		rocksdb_writebatch_destroy(b);
		rocksdb_iter_destroy(kit);
		rocksdb_iter_destroy(rit);
		rocksdb_readoptions_destroy(ro);
	}
	free(kk.p);
	free(ukey.p);
	return rc;
}

/* ---- change events (st_mvcc_set_events) ------------------------------ */

void st_mvcc_set_events(st_db *db, st_events_fn fn, void *arg)
{
	st__events_discard(db);
	db->ev_fn = fn;
	db->ev_arg = arg;
	atomic_store(&db->ev_on, true);
}

void st_mvcc_events_enable(st_db *db, bool on)
{
	atomic_store(&db->ev_on, on);
}

void st__events_discard(st_db *db)
{
	db->ev_n = 0;
	db->ev_len = 0;
	db->ev_broken = false;
}

void st_events_free(st_events *evs)
{
	if (evs == NULL)
		return;
	free(evs->ev);
	free(evs->data_);
	free(evs);
}

/* Copy bytes into the staged events' data area; *@off gets their offset. */
static int ev_data_add(st_db *db, const uint8_t *p, size_t n, size_t *off)
{
	if (db->ev_len + n > db->ev_dcap) {
		size_t cap = db->ev_dcap ? db->ev_dcap : 4096;
		while (cap < db->ev_len + n)
			cap *= 2;
		uint8_t *d = realloc(db->ev_data, cap);
		if (d == NULL)
			return ST_ENOMEM;
		db->ev_data = d;
		db->ev_dcap = cap;
	}
	if (n)
		memcpy(db->ev_data + db->ev_len, p, n);
	*off = db->ev_len;
	db->ev_len += n;
	return ST_OK;
}

/* Stage change @c of main revision @main for the events hook. */
static int ev_stage(st_db *db, int64_t main, const struct change *c)
{
	if (db->ev_n == db->ev_cap) {
		size_t cap = db->ev_cap ? db->ev_cap * 2 : 64;
		st_kv *ev = realloc(db->ev, cap * sizeof(*ev));
		if (ev == NULL)
			return ST_ENOMEM;
		db->ev = ev;
		db->ev_cap = cap;
	}
	size_t koff, voff = 0;
	if (ev_data_add(db, c->key, c->klen, &koff) != ST_OK ||
	    (!c->tomb && ev_data_add(db, c->val, c->vlen, &voff) != ST_OK))
		return ST_ENOMEM;
	st_kv *e = &db->ev[db->ev_n++];
	memset(e, 0, sizeof(*e));
	e->key = (const uint8_t *)(uintptr_t)koff; /* offsets until the hand-over */
	e->key_len = c->klen;
	e->val = (const uint8_t *)(uintptr_t)voff;
	e->val_len = c->tomb ? 0 : c->vlen;
	e->mod_rev = main;
	e->sub = c->sub;
	e->tombstone = c->tomb;
	if (!c->tomb) {
		e->create_rev = c->create;
		e->version = c->version;
		e->lease = c->lease;
	}
	return ST_OK;
}

/* Hand the staged changes to the hook (after a successful commit). The staged
 * arrays move into the st_events; the next stage allocates anew. */
static void ev_handover(st_db *db)
{
	if (db->ev_fn != NULL && db->ev_broken && atomic_load(&db->ev_on)) {
		st__events_discard(db);
		db->ev_fn(db->ev_arg, NULL);
		return;
	}
	if (db->ev_fn == NULL || db->ev_n == 0 || db->ev_broken) {
		st__events_discard(db);
		return;
	}
	st_events *evs = malloc(sizeof(*evs));
	if (evs == NULL) {
		/* The watch hub learns of the gap from the revision it did not see
		 * and reads it from history. */
		st__events_discard(db);
		return;
	}
	evs->n = db->ev_n;
	evs->ev = db->ev;
	evs->data_ = db->ev_data;
	evs->bytes = db->ev_len;
	for (size_t i = 0; i < evs->n; i++) {
		st_kv *e = &evs->ev[i];
		e->key = evs->data_ + (uintptr_t)e->key;
		e->val = evs->data_ + (uintptr_t)e->val;
	}
	evs->first_rev = evs->ev[0].mod_rev;
	evs->last_rev = evs->ev[evs->n - 1].mod_rev;
	db->ev = NULL;
	db->ev_data = NULL;
	db->ev_n = db->ev_cap = db->ev_len = db->ev_dcap = 0;
	db->ev_fn(db->ev_arg, evs);
}

/* Stage every change of write txn @t into @o (and for the events hook, if
 * one is set). Returns 0 or ST_ENOMEM. */
static int stage_changes(st_txn *t, sink *o)
{
	st_db *db = t->db;
	st_buf k = {0}, v = {0};
	int rc = ST_OK;
	int64_t main = t->st.rev + 1;
	bool events = false;
	if (db->ev_fn != NULL && t->nch > 0) {
		events = atomic_load(&db->ev_on);
		if (!events)
			db->ev_broken = true;
	}
	for (size_t i = 0; i < t->nch && rc == ST_OK; i++) {
		const struct change *c = &t->ch[i];
		if ((rc = kv_key(&k, c->key, c->klen, main, c->sub)) != ST_OK ||
		    (rc = kv_val_encode(&v, c)) != ST_OK)
			break;
		sink_put(o, db->cf[ST_CF_KV], k.p, k.len, v.p, v.len);
		if (events && (rc = ev_stage(db, main, c)) != ST_OK)
			break;
		uint8_t rk[REVKEY_LEN];
		st_put_be64(rk, (uint64_t)main);
		st_put_be64(rk + 8, (uint64_t)c->sub);
		v.len = 0;
		uint8_t flag = c->tomb ? KVF_TOMBSTONE : 0;
		if ((rc = st_buf_add(&v, &flag, 1)) != ST_OK || (rc = st_buf_add(&v, c->key, c->klen)) != ST_OK)
			break;
		sink_put(o, db->cf[ST_CF_REV], rk, REVKEY_LEN, v.p, v.len);
		/* The lease index follows the key: detach from the old lease, attach to
		 * the new one (an unchanged lease writes nothing). */
		int64_t now_lease = c->tomb ? 0 : c->lease;
		if (c->prev_lease != now_lease) {
			if (c->prev_lease != 0) {
				if ((rc = lease_key(&k, LEASE_TAG_KEY, c->prev_lease, c->key, c->klen)) != ST_OK)
					break;
				sink_del(o, db->cf[ST_CF_LEASE], k.p, k.len);
			}
			if (now_lease != 0) {
				if ((rc = lease_key(&k, LEASE_TAG_KEY, now_lease, c->key, c->klen)) != ST_OK)
					break;
				sink_put(o, db->cf[ST_CF_LEASE], k.p, k.len, "", 0);
			}
		}
	}
	for (size_t i = 0; i < t->nlops && rc == ST_OK; i++) {
		const struct lease_op *op = &t->lops[i];
		if ((rc = lease_key(&k, LEASE_TAG_LEASE, op->id, NULL, 0)) != ST_OK)
			break;
		if (op->revoke) {
			sink_del(o, db->cf[ST_CF_LEASE], k.p, k.len);
		} else {
			uint8_t val[9];
			val[0] = LEASE_FORMAT;
			st_put_be64(val + 1, (uint64_t)op->ttl);
			sink_put(o, db->cf[ST_CF_LEASE], k.p, k.len, val, 9);
		}
	}
	/* attachment records of revoked leases (st_txn_lease_revoke) */
	for (size_t off = 0; rc == ST_OK && off < t->lease_dels.len;) {
		size_t len;
		memcpy(&len, t->lease_dels.p + off, sizeof(len));
		off += sizeof(len);
		sink_del(o, db->cf[ST_CF_LEASE], t->lease_dels.p + off, len);
		off += len;
	}
	free(k.p);
	free(v.p);
	return rc;
}

static int compact_run(st_db *db, int64_t from, int64_t to);

/* The keyspace state once write txn @t is committed with @applied. */
static st_kv_state state_after(const st_txn *t, uint64_t applied)
{
	st_kv_state s = t->st;
	s.applied = applied;
	s.rev = st_txn_rev(t);
	if (t->compact_to > 0)
		s.compact_rev = t->compact_to;
	return s;
}

int st_txn_commit(st_txn *t, uint64_t applied)
{
	if (!t->write) {
		txn_free(t);
		return ST_OK;
	}
	st_db *db = t->db;
	int rc = ST_OK;
	if (t->grp) {
		/* Inside an apply group: stage; st_apply_commit writes. */
		sink o = {.wi = db->grp_wb};
		if (!db->grp_open || db->grp_st.rev != t->st.rev ||
		    db->grp_st.compact_rev != t->st.compact_rev)
			rc = ST_EINVAL; /* a second writer, or the group is gone */
		if (rc == ST_OK)
			rc = stage_changes(t, &o);
		if (rc == ST_OK) {
			db->grp_st = state_after(t, applied);
			latest_note(t);
		} else {
			/* part of it may be staged: the node aborts the group */
			st__latest_clear(&db->latest);
		}
		txn_free(t);
		return rc;
	}
	rocksdb_writebatch_t *b = rocksdb_writebatch_create();
	if (b == NULL) {
		txn_free(t);
		return ST_ENOMEM;
	}
	sink o = {.b = b};
	rc = stage_changes(t, &o);
	int64_t cfrom = 0, cto = 0;
	if (rc == ST_OK) {
		pthread_mutex_lock(&db->mu);
		if (db->grp_open || db->kv.rev != t->st.rev || db->kv.compact_rev != t->st.compact_rev) {
			rc = ST_EINVAL; /* a second writer: not allowed */
		} else {
			st_kv_state s = state_after(t, applied);
			s.compact_done = db->kv.compact_done;
			batch_kvstate(b, db, &s);
			rc = write_batch(db, b);
			if (rc == ST_OK)
				db->kv = s;
			if (rc == ST_OK)
				latest_note(t);
			cfrom = s.compact_done;
			cto = s.compact_rev;
		}
		pthread_mutex_unlock(&db->mu);
	}
	rocksdb_writebatch_destroy(b);
	txn_free(t);
	if (rc == ST_OK)
		ev_handover(db);
	else
		st__events_discard(db);
	if (rc == ST_OK && cto > cfrom)
		rc = compact_run(db, cfrom, cto);
	return rc;
}

/* ---- apply groups ----------------------------------------------------- */

int st_apply_begin(st_db *db)
{
	if (db->grp_open)
		return ST_EINVAL;
	if (db->grp_wb == NULL && (db->grp_wb = rocksdb_writebatch_wi_create(0, 1)) == NULL)
		return ST_ENOMEM;
	pthread_mutex_lock(&db->mu);
	db->grp_st = db->kv;
	pthread_mutex_unlock(&db->mu);
	db->grp_open = true;
	return ST_OK;
}

bool st_apply_open(const st_db *db)
{
	return db->grp_open;
}

void st_apply_state(st_db *db, st_kv_state *out)
{
	if (db->grp_open)
		*out = db->grp_st;
	else
		st_kv_state_get(db, out);
}

void st_apply_abort(st_db *db)
{
	if (!db->grp_open)
		return;
	rocksdb_writebatch_wi_clear(db->grp_wb);
	db->grp_open = false;
	st__latest_clear(&db->latest); /* it holds the thrown-away changes */
	st__events_discard(db);
}

int st_apply_commit(st_db *db)
{
	if (!db->grp_open)
		return ST_EINVAL;
	sink o = {.wi = db->grp_wb};
	char *err = NULL;
	pthread_mutex_lock(&db->mu);
	/* A background compaction may have moved compaction-done meanwhile. */
	db->grp_st.compact_done = db->kv.compact_done;
	sink_kvstate(&o, db, &db->grp_st);
	rocksdb_write_writebatch_wi(db->rdb, db->wo, db->grp_wb, &err);
	int rc = ST_OK;
	if (err != NULL) {
		rc = st__rocks_err(err);
		if (rc == ST_ENOTFOUND)
			rc = ST_EIO;
		free(err);
	} else {
		db->kv = db->grp_st;
	}
	int64_t cfrom = db->kv.compact_done, cto = db->kv.compact_rev;
	pthread_mutex_unlock(&db->mu);
	rocksdb_writebatch_wi_clear(db->grp_wb);
	db->grp_open = false;
	if (rc != ST_OK)
		st__latest_clear(&db->latest);
	if (rc == ST_OK)
		ev_handover(db);
	else
		st__events_discard(db);
	if (rc == ST_OK && cto > cfrom)
		rc = compact_run(db, cfrom, cto);
	return rc;
}

/* ---- background physical compaction ------------------------------------ */

static void *bg_main(void *arg)
{
	st_db *db = arg;
	pthread_mutex_lock(&db->bg_mu);
	for (;;) {
		pthread_mutex_lock(&db->mu);
		int64_t from = db->kv.compact_done;
		pthread_mutex_unlock(&db->mu);
		if (db->bg_stop)
			break;
		if (db->bg_target <= from) {
			pthread_cond_wait(&db->bg_cv, &db->bg_mu);
			continue;
		}
		int64_t to = db->bg_target;
		st_mvcc_compact_report_fn report = db->bg_report;
		void *report_ctx = db->bg_report_ctx;
		pthread_mutex_unlock(&db->bg_mu);
		struct timespec t0, t1;
		clock_gettime(CLOCK_MONOTONIC, &t0);
		int rc = compact_physical(db, from, to);
		clock_gettime(CLOCK_MONOTONIC, &t1);
		if (report)
			report(report_ctx, to, rc,
				      (int64_t)(t1.tv_sec - t0.tv_sec) * 1000000000 +
					      (t1.tv_nsec - t0.tv_nsec));
		pthread_mutex_lock(&db->bg_mu);
		if (rc != ST_OK) {
			/* Left for st_mvcc_finish_compaction at the next open. */
			db->bg_target = 0;
		}
	}
	pthread_mutex_unlock(&db->bg_mu);
	return NULL;
}

/* The physical part of a compaction just committed: here and now, or handed to
 * the background thread. */
static int compact_run(st_db *db, int64_t from, int64_t to)
{
	pthread_mutex_lock(&db->bg_mu);
	bool bg = db->bg_on;
	if (bg && !db->bg_started) {
		if (pthread_create(&db->bg_thread, NULL, bg_main, db) == 0)
			db->bg_started = true;
		else
			bg = false;
	}
	if (bg) {
		if (to > db->bg_target)
			db->bg_target = to;
		pthread_cond_signal(&db->bg_cv);
	}
	pthread_mutex_unlock(&db->bg_mu);
	return bg ? ST_OK : compact_physical(db, from, to);
}

void st_mvcc_set_background(st_db *db, bool on)
{
	pthread_mutex_lock(&db->bg_mu);
	db->bg_on = on;
	pthread_mutex_unlock(&db->bg_mu);
}

void st_mvcc_set_compact_report(st_db *db, st_mvcc_compact_report_fn fn, void *ctx)
{
	pthread_mutex_lock(&db->bg_mu);
	db->bg_report = fn;
	db->bg_report_ctx = ctx;
	pthread_mutex_unlock(&db->bg_mu);
}

void st__mvcc_stop_background(st_db *db)
{
	pthread_mutex_lock(&db->bg_mu);
	bool started = db->bg_started;
	db->bg_stop = true;
	pthread_cond_signal(&db->bg_cv);
	pthread_mutex_unlock(&db->bg_mu);
	if (started)
		pthread_join(db->bg_thread, NULL);
	db->bg_started = false;
}

int st_mvcc_finish_compaction(st_db *db)
{
	st_kv_state s;
	st_kv_state_get(db, &s);
	if (s.compact_done >= s.compact_rev)
		return ST_OK;
	return compact_physical(db, s.compact_done, s.compact_rev);
}

int st_mvcc_set_applied(st_db *db, uint64_t index)
{
	if (db->grp_open) {
		db->grp_st.applied = index;
		return ST_OK;
	}
	rocksdb_writebatch_t *b = rocksdb_writebatch_create();
	if (b == NULL)
		return ST_ENOMEM;
	pthread_mutex_lock(&db->mu);
	st_kv_state s = db->kv;
	s.applied = index;
	batch_kvstate(b, db, &s);
	int rc = write_batch(db, b);
	if (rc == ST_OK)
		db->kv.applied = index;
	pthread_mutex_unlock(&db->mu);
	rocksdb_writebatch_destroy(b);
	return rc;
}

/* "ms.r." + name in @out, or NULL when it does not fit or @name is empty. */
static char *rmeta_key(const char *name, char *out, size_t cap, size_t *len)
{
	size_t nl = strlen(name), pl = strlen(ST_META_REPL_PREFIX);
	if (nl == 0 || pl + nl + 1 > cap)
		return NULL;
	memcpy(out, ST_META_REPL_PREFIX, pl);
	memcpy(out + pl, name, nl + 1);
	*len = pl + nl;
	return out;
}

int st_rmeta_put(st_db *db, const char *name, const void *val, size_t len)
{
	char kb[128];
	size_t kl;
	if (rmeta_key(name, kb, sizeof(kb), &kl) == NULL)
		return ST_EINVAL;
	if (db->grp_open) {
		sink o = {.wi = db->grp_wb};
		sink_put(&o, db->cf[ST_CF_DEFAULT], kb, kl, val, len);
		return ST_OK;
	}
	rocksdb_writebatch_t *b = rocksdb_writebatch_create();
	if (b == NULL)
		return ST_ENOMEM;
	rocksdb_writebatch_put_cf(b, db->cf[ST_CF_DEFAULT], kb, kl, (const char *)val, len);
	char *err = NULL;
	rocksdb_write(db->rdb, db->wo_sync, b, &err);
	rocksdb_writebatch_destroy(b);
	if (err != NULL) {
		int rc = st__rocks_err(err);
		free(err);
		return rc == ST_ENOTFOUND ? ST_EIO : rc;
	}
	return ST_OK;
}

int st_rmeta_get(st_db *db, const char *name, void **val, size_t *len)
{
	char kb[128];
	size_t kl;
	*val = NULL;
	*len = 0;
	if (rmeta_key(name, kb, sizeof(kb), &kl) == NULL)
		return ST_EINVAL;
	char *v = NULL;
	int rc = st__meta_get_raw(db, kb, &v, len);
	if (rc != ST_OK)
		return rc;
	if (*len == 0) {
		free(v);
		if ((v = malloc(1)) == NULL)
			return ST_ENOMEM;
	}
	*val = v;
	return ST_OK;
}

/* ---- history ---------------------------------------------------------- */

/* Records of the revision index read per batch by st_txn_history: their values
 * come from the kv family in one batched MultiGet instead of a Get each. */
#define HIST_BATCH 256

/* One revision-index record of a history batch; offsets into the batch's bufs. */
struct hrec {
	int64_t main, sub;
	bool tomb;
	size_t koff, klen;  /* user key in keys */
	size_t kvoff, kvlen; /* kv-family record key in kvkeys (puts only) */
	size_t get;          /* index into the MultiGet (puts only) */
};

/* Visit the @n records of @r in order, their values fetched in one MultiGet.
 * Returns 0, ST_VISIT_STOP (the visitor stopped), or an error. */
static int hist_flush(st_txn *t, const rocksdb_readoptions_t *ro, struct hrec *r, size_t n,
		      const st_buf *keys, const st_buf *kvkeys, st_kv_visit fn, void *arg)
{
	const char *klist[HIST_BATCH];
	size_t ksz[HIST_BATCH];
	rocksdb_pinnableslice_t *vals[HIST_BATCH];
	char *errs[HIST_BATCH];
	size_t ng = 0;
	for (size_t i = 0; i < n; i++) {
		if (r[i].tomb)
			continue;
		r[i].get = ng;
		klist[ng] = (const char *)kvkeys->p + r[i].kvoff;
		ksz[ng] = r[i].kvlen;
		ng++;
	}
	memset(vals, 0, ng * sizeof(*vals));
	memset(errs, 0, ng * sizeof(*errs));
	if (ng > 0)
		rocksdb_batched_multi_get_cf(t->db->rdb, ro, t->db->cf[ST_CF_KV], ng, klist, ksz, vals,
					     errs, false);
	int rc = ST_OK;
	for (size_t i = 0; i < n && rc == ST_OK; i++) {
		st_kv kv = {0};
		if (r[i].tomb) {
			kv.tombstone = true;
		} else {
			size_t g = r[i].get, vl = 0;
			const char *v = vals[g] ? rocksdb_pinnableslice_value(vals[g], &vl) : NULL;
			if (errs[g] != NULL)
				rc = ST_EIO;
			else if (v == NULL || kv_val_decode((const uint8_t *)v, vl, &kv) != ST_OK)
				rc = ST_ECORRUPT;
			if (rc != ST_OK)
				break;
		}
		kv.key = keys->p + r[i].koff;
		kv.key_len = r[i].klen;
		kv.mod_rev = r[i].main;
		kv.sub = r[i].sub;
		int x = fn(arg, &kv);
		if (x == ST_VISIT_STOP)
			rc = ST_VISIT_STOP;
		else if (x != 0)
			rc = x;
	}
	for (size_t g = 0; g < ng; g++) {
		if (vals[g] != NULL)
			rocksdb_pinnableslice_destroy(vals[g]);
		free(errs[g]);
	}
	return rc;
}

/*
 * Whether put (@key, @main, @sub) is the version of @key visible at revision
 * @at (one seek of @kit over the kv family): the test of "kept by a compaction
 * at @at" for a record at or below @at. *@keep out; returns 0 or ST_ENOMEM.
 */
static int visible_at(rocksdb_iterator_t *kit, const uint8_t *key, size_t klen, int64_t main,
		      int64_t sub, int64_t at, st_buf *kk, bool *keep)
{
	/* ~INT64_MAX sorts before the ~sub of every sub-revision of @at */
	int rc = kv_key(kk, key, klen, at, INT64_MAX);
	if (rc != ST_OK)
		return rc;
	rocksdb_iter_seek(kit, (const char *)kk->p, kk->len);
	if ((rc = kv_key(kk, key, klen, main, sub)) != ST_OK)
		return rc;
	size_t kl = 0;
	const char *k = rocksdb_iter_valid(kit) ? rocksdb_iter_key(kit, &kl) : NULL;
	*keep = k != NULL && kl == kk->len && memcmp(k, kk->p, kl) == 0;
	return ST_OK;
}

/*
 * The walk behind st_txn_history and st_txn_records: changes with main
 * revision in [@from, @to] in revision order. With @settled, records at or
 * below the compacted revision are those a finished compaction keeps (no
 * tombstones; while a physical compaction is unfinished, only the version
 * visible at the compacted revision). Without it, only the compacted
 * revision's own tombstones are hidden (the caller starts at or above it).
 */
static int hist_walk(st_txn *t, int64_t from, int64_t to, bool settled, st_kv_visit fn, void *arg)
{
	if (to > t->st.rev)
		to = t->st.rev;
	if (from > to)
		return ST_OK;
	const int64_t crev = t->st.compact_rev;
	const bool unfinished = settled && t->st.compact_done < crev;
	uint8_t lo[REVKEY_LEN] = {0}, hi[REVKEY_LEN] = {0};
	st_put_be64(lo, (uint64_t)from);
	st_put_be64(hi, (uint64_t)to + 1);
	rocksdb_readoptions_t *ro = st__readopts();
	rocksdb_readoptions_set_snapshot(ro, t->snap);
	rocksdb_readoptions_set_iterate_upper_bound(ro, (char *)hi, REVKEY_LEN);
	rocksdb_iterator_t *it = rocksdb_create_iterator_cf(t->db->rdb, ro, t->db->cf[ST_CF_REV]);
	rocksdb_iterator_t *kit =
		unfinished ? rocksdb_create_iterator_cf(t->db->rdb, t->ro, t->db->cf[ST_CF_KV]) : NULL;
	struct hrec *r = malloc(HIST_BATCH * sizeof(*r));
	st_buf keys = {0}, kvkeys = {0}, kk = {0};
	size_t n = 0;
	int rc = r != NULL ? ST_OK : ST_ENOMEM;
	for (rocksdb_iter_seek(it, (char *)lo, REVKEY_LEN); rc == ST_OK && rocksdb_iter_valid(it);
	     rocksdb_iter_next(it)) {
		size_t rkl, rvl;
		const uint8_t *rk = (const uint8_t *)rocksdb_iter_key(it, &rkl);
		const uint8_t *rv = (const uint8_t *)rocksdb_iter_value(it, &rvl);
		if (rkl != REVKEY_LEN || rvl < 1) {
			rc = ST_ECORRUPT;
			break;
		}
		struct hrec *h = &r[n];
		h->main = (int64_t)st_get_be64(rk);
		h->sub = (int64_t)st_get_be64(rk + 8);
		h->tomb = (rv[0] & KVF_TOMBSTONE) != 0;
		/* compaction removes tombstones at the compacted revision (as
		 * etcd's does), maybe not yet: never show them */
		if (h->tomb && h->main <= crev)
			continue;
		if (unfinished && h->main <= crev) {
			bool keep = false;
			if ((rc = visible_at(kit, rv + 1, rvl - 1, h->main, h->sub, crev, &kk, &keep)) !=
			    ST_OK)
				break;
			if (!keep)
				continue;
		}
		h->koff = keys.len;
		h->klen = rvl - 1;
		if ((rc = st_buf_add(&keys, rv + 1, rvl - 1)) != ST_OK)
			break;
		if (!h->tomb) {
			if ((rc = kv_key(&kk, rv + 1, rvl - 1, h->main, h->sub)) != ST_OK)
				break;
			h->kvoff = kvkeys.len;
			h->kvlen = kk.len;
			if ((rc = st_buf_add(&kvkeys, kk.p, kk.len)) != ST_OK)
				break;
		}
		if (++n == HIST_BATCH) {
			rc = hist_flush(t, ro, r, n, &keys, &kvkeys, fn, arg);
			n = 0;
			keys.len = kvkeys.len = 0;
		}
	}
	if (rc == ST_OK && n > 0)
		rc = hist_flush(t, ro, r, n, &keys, &kvkeys, fn, arg);
	if (rc == ST_VISIT_STOP)
		rc = ST_OK;
	else if (rc == ST_OK)
		rc = rocks_iter_err(it);
	if (rc == ST_OK && kit != NULL)
		rc = rocks_iter_err(kit);
	if (kit != NULL)
		rocksdb_iter_destroy(kit);
	rocksdb_iter_destroy(it);
	rocksdb_readoptions_destroy(ro);
	free(r);
	free(keys.p);
	free(kvkeys.p);
	free(kk.p);
	return rc;
}

int st_txn_history(st_txn *t, int64_t from, int64_t to, st_kv_visit fn, void *arg)
{
	if (from < t->st.compact_rev)
		return ST_ECOMPACTED;
	return hist_walk(t, from, to, false, fn, arg);
}

int st_txn_records(st_txn *t, int64_t to, st_kv_visit fn, void *arg)
{
	return hist_walk(t, 0, to, true, fn, arg);
}

int st_txn_rmeta_get(st_txn *t, const char *name, void **val, size_t *len)
{
	char kb[128];
	size_t kl;
	*val = NULL;
	*len = 0;
	if (rmeta_key(name, kb, sizeof(kb), &kl) == NULL)
		return ST_EINVAL;
	char *err = NULL;
	char *v = rocksdb_get_cf(t->db->rdb, t->ro, t->db->cf[ST_CF_DEFAULT], kb, kl, len, &err);
	if (err != NULL) {
		int rc = st__rocks_err(err);
		free(err);
		return rc == ST_ENOTFOUND ? ST_EIO : rc;
	}
	if (v == NULL)
		return ST_ENOTFOUND;
	if (*len == 0) {
		free(v);
		if ((v = malloc(1)) == NULL)
			return ST_ENOMEM;
	}
	*val = v;
	return ST_OK;
}

/* ---- bulk load (st_load_*) -------------------------------------------- */

#define LOAD_BATCH 4096 /* records per write batch */

struct st_load {
	st_db *db;
	rocksdb_writebatch_t *b;
	size_t inbatch;
	int64_t last_main, last_sub; /* the last change loaded (0, -1: none) */
	int64_t *leases;             /* ids loaded, ascending */
	size_t nleases, capleases;
	st_buf kk, vv;
	int err; /* poisoned: every later call returns it */
};

static bool cf_empty(st_db *db, int cf)
{
	rocksdb_iterator_t *it = rocksdb_create_iterator_cf(db->rdb, db->ro, db->cf[cf]);
	rocksdb_iter_seek_to_first(it);
	bool empty = !rocksdb_iter_valid(it);
	rocksdb_iter_destroy(it);
	return empty;
}

int st_load_begin(st_db *db, st_load **out)
{
	*out = NULL;
	st_kv_state s;
	st_kv_state_get(db, &s);
	if (db->grp_open || s.rev != 1 || s.compact_rev != 0 || !cf_empty(db, ST_CF_KV) ||
	    !cf_empty(db, ST_CF_REV) || !cf_empty(db, ST_CF_LEASE))
		return ST_EINVAL;
	st_load *l = calloc(1, sizeof(*l));
	if (l == NULL || (l->b = rocksdb_writebatch_create()) == NULL) {
		free(l);
		return ST_ENOMEM;
	}
	l->db = db;
	l->last_sub = -1;
	*out = l;
	return ST_OK;
}

/* Write the pending batch (unsynced; st_load_finish syncs). */
static int load_flush(st_load *l)
{
	if (l->inbatch == 0)
		return ST_OK;
	int rc = write_batch(l->db, l->b);
	rocksdb_writebatch_clear(l->b);
	l->inbatch = 0;
	return rc;
}

static int load_count(st_load *l)
{
	if (++l->inbatch < LOAD_BATCH)
		return ST_OK;
	return load_flush(l);
}

int st_load_change(st_load *l, const st_kv *kv)
{
	if (l->err != ST_OK)
		return l->err;
	if (kv->key_len == 0 || kv->mod_rev < 1 || kv->sub < 0 ||
	    kv->mod_rev < l->last_main || (kv->mod_rev == l->last_main && kv->sub <= l->last_sub) ||
	    (!kv->tombstone && (kv->version < 1 || kv->create_rev < 1 || kv->create_rev > kv->mod_rev ||
				kv->lease < 0)))
		return ST_EINVAL;
	struct change c = {
		.key = (uint8_t *)kv->key, .klen = kv->key_len,
		.val = (uint8_t *)kv->val, .vlen = kv->val_len,
		.create = kv->create_rev, .version = kv->version, .lease = kv->lease,
		.sub = kv->sub, .tomb = kv->tombstone,
	};
	int rc = kv_key(&l->kk, kv->key, kv->key_len, kv->mod_rev, kv->sub);
	if (rc == ST_OK)
		rc = kv_val_encode(&l->vv, &c);
	if (rc != ST_OK)
		return l->err = rc;
	rocksdb_writebatch_put_cf(l->b, l->db->cf[ST_CF_KV], (const char *)l->kk.p, l->kk.len,
				  (const char *)l->vv.p, l->vv.len);
	uint8_t rk[REVKEY_LEN];
	st_put_be64(rk, (uint64_t)kv->mod_rev);
	st_put_be64(rk + 8, (uint64_t)kv->sub);
	l->vv.len = 0;
	uint8_t flag = kv->tombstone ? KVF_TOMBSTONE : 0;
	if ((rc = st_buf_add(&l->vv, &flag, 1)) != ST_OK || (rc = st_buf_add(&l->vv, kv->key, kv->key_len)) != ST_OK)
		return l->err = rc;
	rocksdb_writebatch_put_cf(l->b, l->db->cf[ST_CF_REV], (const char *)rk, REVKEY_LEN,
				  (const char *)l->vv.p, l->vv.len);
	l->last_main = kv->mod_rev;
	l->last_sub = kv->sub;
	if ((rc = load_count(l)) != ST_OK)
		l->err = rc;
	return rc;
}

int st_load_lease(st_load *l, int64_t id, int64_t ttl)
{
	if (l->err != ST_OK)
		return l->err;
	if (id <= 0 || (l->nleases > 0 && id <= l->leases[l->nleases - 1]))
		return ST_EINVAL;
	if (l->nleases == l->capleases) {
		size_t cap = l->capleases ? l->capleases * 2 : 16;
		int64_t *p = realloc(l->leases, cap * sizeof(*p));
		if (p == NULL)
			return l->err = ST_ENOMEM;
		l->leases = p;
		l->capleases = cap;
	}
	l->leases[l->nleases++] = id;
	int rc = lease_key(&l->kk, LEASE_TAG_LEASE, id, NULL, 0);
	if (rc != ST_OK)
		return l->err = rc;
	uint8_t v[9];
	v[0] = LEASE_FORMAT;
	st_put_be64(v + 1, (uint64_t)ttl);
	rocksdb_writebatch_put_cf(l->b, l->db->cf[ST_CF_LEASE], (const char *)l->kk.p, l->kk.len,
				  (const char *)v, sizeof(v));
	if ((rc = load_count(l)) != ST_OK)
		l->err = rc;
	return rc;
}

static int cmp_i64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
	return x < y ? -1 : x > y;
}

/* Attach every live key with a loaded lease to it (the 'K' records commit
 * would have written). */
static int load_attach(void *arg, const st_kv *kv)
{
	st_load *l = arg;
	if (kv->lease == 0 ||
	    bsearch(&kv->lease, l->leases, l->nleases, sizeof(int64_t), cmp_i64) == NULL)
		return 0;
	int rc = lease_key(&l->kk, LEASE_TAG_KEY, kv->lease, kv->key, kv->key_len);
	if (rc != ST_OK)
		return rc;
	rocksdb_writebatch_put_cf(l->b, l->db->cf[ST_CF_LEASE], (const char *)l->kk.p, l->kk.len,
				  "", 0);
	return load_count(l);
}

int st_load_finish(st_load *l, int64_t rev, int64_t compact_rev, int64_t compact_done)
{
	st_db *db = l->db;
	int rc = l->err;
	if (rc == ST_OK && (rev < 1 || rev < l->last_main || compact_rev < 0 || compact_rev > rev ||
			    compact_done < 0 || compact_done > compact_rev))
		rc = ST_EINVAL;
	if (rc == ST_OK)
		rc = load_flush(l);
	if (rc == ST_OK) {
		/* publish the revision state, so that a read txn sees the keyspace */
		pthread_mutex_lock(&db->mu);
		st_kv_state s = db->kv;
		s.rev = rev;
		s.compact_rev = compact_rev;
		s.compact_done = compact_done;
		batch_kvstate(l->b, db, &s);
		rc = write_batch(db, l->b);
		if (rc == ST_OK)
			db->kv = s;
		pthread_mutex_unlock(&db->mu);
		rocksdb_writebatch_clear(l->b);
	}
	if (rc == ST_OK && l->nleases > 0) {
		st_txn *t = NULL;
		if ((rc = st_txn_begin(db, false, &t)) == ST_OK) {
			rc = st_txn_range(t, (const uint8_t *)"", 0, (const uint8_t *)"", 1, rev,
					  load_attach, l);
			st_txn_abort(t);
		}
		if (rc == ST_OK)
			rc = load_flush(l);
	}
	if (rc == ST_OK && compact_done < compact_rev)
		rc = st_mvcc_finish_compaction(db);
	if (rc == ST_OK) {
		/* one synced write makes every earlier unsynced one durable */
		st_kv_state s;
		st_kv_state_get(db, &s);
		uint8_t v[32];
		st__kvstate_encode(&s, v);
		rocksdb_writebatch_put_cf(l->b, db->cf[ST_CF_DEFAULT], ST_META_KVSTATE,
					  strlen(ST_META_KVSTATE), (const char *)v, 32);
		char *err = NULL;
		rocksdb_write(db->rdb, db->wo_sync, l->b, &err);
		if (err != NULL) {
			rc = st__rocks_err(err);
			free(err);
			if (rc == ST_ENOTFOUND)
				rc = ST_EIO;
		}
	}
	/* The keyspace was written behind the cache and the key filter. */
	st__latest_clear(&db->latest);
	st__kf_restart(&db->kf, db);
	st_load_abort(l);
	return rc;
}

void st_load_abort(st_load *l)
{
	if (l == NULL)
		return;
	rocksdb_writebatch_destroy(l->b);
	free(l->leases);
	free(l->kk.p);
	free(l->vv.p);
	free(l);
}
