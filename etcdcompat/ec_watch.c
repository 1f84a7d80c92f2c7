/*
 * ec_watch: the watch hub (see ec_watch.h for the model). This file holds the
 * watcher index (hash maps over exact keys and prefixes plus a range list),
 * the synced/unsynced bookkeeping, catch-up from storage history, and the
 * hand-written protobuf encoding of WatchResponse so that each event is
 * encoded once and its bytes copied into every response that carries it.
 */
#include "etcdcompat/ec_watch.h"

#include <stdlib.h>
#include <string.h>


#define DEFAULT_MAX_REQUEST ((size_t)1572864)
#define DEFAULT_BUDGET ((size_t)4 << 20)
#define DEFAULT_CATCHUP ((size_t)4 << 20)

/* ---- a growable byte buffer and protobuf wire encoding ------------------- */

typedef struct wbuf {
	uint8_t *p;
	size_t len, cap;
	bool oom;
} wbuf;

static void wb_reserve(wbuf *b, size_t extra)
{
	if (b->oom || b->len + extra <= b->cap)
		return;
	size_t cap = b->cap ? b->cap : 256;
	while (cap < b->len + extra)
		cap *= 2;
	uint8_t *p = realloc(b->p, cap);
	if (p == NULL) {
		b->oom = true;
		return;
	}
	b->p = p;
	b->cap = cap;
}

static void wb_add(wbuf *b, const void *d, size_t n)
{
	wb_reserve(b, n);
	if (b->oom || n == 0)
		return;
	memcpy(b->p + b->len, d, n);
	b->len += n;
}

static void wb_varint(wbuf *b, uint64_t v)
{
	uint8_t t[10];
	size_t n = 0;
	while (v >= 0x80) {
		t[n++] = (uint8_t)(v | 0x80);
		v >>= 7;
	}
	t[n++] = (uint8_t)v;
	wb_add(b, t, n);
}

/* A varint field (proto3: zero is not written). */
static void wb_uint(wbuf *b, unsigned field, uint64_t v)
{
	if (v == 0)
		return;
	wb_varint(b, (uint64_t)field << 3);
	wb_varint(b, v);
}

/* A length-delimited field (bytes, string, message); empty bytes are omitted
 * unless @always (embedded messages are written even when empty). */
static void wb_bytes(wbuf *b, unsigned field, const void *p, size_t n, bool always)
{
	if (n == 0 && !always)
		return;
	wb_varint(b, ((uint64_t)field << 3) | 2);
	wb_varint(b, n);
	wb_add(b, p, n);
}

/* mvccpb.KeyValue of @kv (a tombstone carries only key and mod_revision). */
static void enc_kv(wbuf *b, const st_kv *kv)
{
	wb_bytes(b, 1, kv->key, kv->key_len, false);
	if (!kv->tombstone) {
		wb_uint(b, 2, (uint64_t)kv->create_rev);
		wb_uint(b, 3, (uint64_t)kv->mod_rev);
		wb_uint(b, 4, (uint64_t)kv->version);
		wb_bytes(b, 5, kv->val, kv->val_len, false);
		wb_uint(b, 6, (uint64_t)kv->lease);
	} else {
		wb_uint(b, 3, (uint64_t)kv->mod_rev);
	}
}

/* A nested message field: encode with @fn into a scratch buffer, then frame. */
static void wb_kv_field(wbuf *b, unsigned field, const st_kv *kv)
{
	wbuf t = {0};
	enc_kv(&t, kv);
	if (t.oom)
		b->oom = true;
	wb_bytes(b, field, t.p, t.len, true);
	free(t.p);
}

/* ---- events of one batch -------------------------------------------------- */

/* One event as the hub hands it out, with its encodings built on first use:
 * the whole `events` field (tag, length, mvccpb.Event) without prev_kv, and
 * with it. */
typedef struct hev {
	st_kv kv;
	uint8_t *enc, *encp;
	size_t enc_len, encp_len;
	bool prev_done;
	bool has_prev;
	st_kv prev;        /* valid if has_prev; key/val in prev_data */
	uint8_t *prev_data;
} hev;

static bool is_create(const st_kv *kv)
{
	return !kv->tombstone && kv->create_rev == kv->mod_rev;
}

/* ---- watchers, the index, streams ------------------------------------------ */

enum { W_KEY, W_PREFIX, W_RANGE };

typedef struct watcher watcher;
typedef struct hent hent;

/* A hash map entry: @klen bytes of key; @head the watchers filed under it
 * (index maps) or the one watcher (a stream's id map). */
struct hent {
	hent *next;
	uint64_t hash;
	watcher *head;
	size_t klen;
	uint8_t key[];
};

typedef struct hmap {
	hent **b;
	size_t nb, n;
} hmap;

struct watcher {
	int64_t id;
	ec_wstream *ws;
	uint8_t *key, *end; /* end NULL: one key (W_KEY) or from key on (W_RANGE) */
	size_t klen, elen;
	int kind;
	int64_t next; /* first revision it has not been sent (or its start) */
	bool synced, prev_kv, noput, nodel, progress, fragment;
	bool dead;    /* canceled by compaction: keeps its id until the client
	               * cancels it (as etcd's stream does), receives nothing */
	bool sent;    /* sent something since the last progress tick */
	/* in an index (the synced one, or a catch-up group's): */
	hent *he;                 /* W_KEY/W_PREFIX: its entry */
	watcher *inext, **iprev;  /* chain of the entry, or the range list */
	/* the hub's unsynced list */
	watcher *unext, *uprev;
	/* the stream's watcher list */
	watcher *snext, *sprev;
	/* events matched in the current batch: a chain through the pair array */
	size_t ph, pt;
	bool touched;
	watcher *tnext;
};

struct ec_wstream {
	ec_hub *hub;
	ec_wsink sink;
	void *ctx;
	hmap ids; /* 8-byte big-endian watch id -> watcher */
	int64_t next_id;
	watcher *wl;
	size_t nwatch, nunsynced;
	bool progress_wanted;
	bool held; /* on the hub's held list: sent to, not flushed */
	ec_wstream *hnext;
	ec_wstream *next, *prev;
};

/* An index over watchers: exact keys, prefixes (with a count per prefix
 * length, so a lookup tries only lengths in use), other ranges. */
typedef struct widx {
	hmap keys, prefixes;
	size_t *plen_cnt; /* plen_cnt[L]: prefix watchers of length L */
	size_t plen_cap;
	size_t nprefix;
	watcher *ranges; /* every range watcher (membership) */
	size_t nranges;
	/* the ranges sorted by start key, with the largest end among each prefix
	 * of that order (NULL end = unbounded), rebuilt on the first match after a
	 * change: a key is in no range of sorted[0..i] once maxend[i] <= key */
	watcher **sorted;
	const watcher **maxend;
	size_t scap;
	bool sdirty;
} widx;

/* Ranges below this many are simply checked one by one. */
#define RANGE_SORT_MIN 8

/* (watcher, event) pairs of a batch, chained per watcher. */
typedef struct pair {
	size_t ev;
	size_t next; /* SIZE_MAX: end */
} pair;

struct ec_hub {
	ec_hub_config cfg;
	int64_t rev;
	widx synced;
	watcher *uhead, *utail;
	size_t nwatch, nunsynced;
	ec_wstream *streams;
	ec_wstream *held; /* streams to flush before returning (sink.flush) */
	size_t progress_waiting;
	/* per-batch scratch */
	pair *pairs;
	size_t npairs, cappairs;
	watcher *touched;
	bool oom;
	st_txn *rtxn; /* read txn for prev_kv lookups of the current batch */
	wbuf scratch; /* the response being built (send_events) */
};

static uint64_t hash_bytes(const uint8_t *p, size_t n)
{
	uint64_t h = 1469598103934665603ULL; /* FNV-1a */
	for (size_t i = 0; i < n; i++) {
		h ^= p[i];
		h *= 1099511628211ULL;
	}
	return h ^ (h >> 29);
}

static hent *hmap_find(const hmap *m, const uint8_t *k, size_t kl, uint64_t h)
{
	if (m->nb == 0)
		return NULL;
	for (hent *e = m->b[h & (m->nb - 1)]; e != NULL; e = e->next)
		if (e->hash == h && e->klen == kl && memcmp(e->key, k, kl) == 0)
			return e;
	return NULL;
}

static hent *hmap_get(const hmap *m, const uint8_t *k, size_t kl)
{
	return hmap_find(m, k, kl, hash_bytes(k, kl));
}

/* The entry for @k, created if absent (NULL on out of memory). */
static hent *hmap_put(hmap *m, const uint8_t *k, size_t kl)
{
	uint64_t h = hash_bytes(k, kl);
	hent *e = hmap_find(m, k, kl, h);
	if (e != NULL)
		return e;
	if (m->n >= m->nb) {
		size_t nb = m->nb ? m->nb * 2 : 16;
		hent **b = calloc(nb, sizeof(*b));
		if (b == NULL)
			return NULL;
		for (size_t i = 0; i < m->nb; i++) {
			for (hent *x = m->b[i], *nx; x != NULL; x = nx) {
				nx = x->next;
				x->next = b[x->hash & (nb - 1)];
				b[x->hash & (nb - 1)] = x;
			}
		}
		free(m->b);
		m->b = b;
		m->nb = nb;
	}
	e = malloc(sizeof(*e) + kl);
	if (e == NULL)
		return NULL;
	e->hash = h;
	e->head = NULL;
	e->klen = kl;
	memcpy(e->key, k, kl);
	e->next = m->b[h & (m->nb - 1)];
	m->b[h & (m->nb - 1)] = e;
	m->n++;
	return e;
}

static void hmap_del(hmap *m, hent *e)
{
	hent **pp = &m->b[e->hash & (m->nb - 1)];
	while (*pp != e)
		pp = &(*pp)->next;
	*pp = e->next;
	free(e);
	m->n--;
}

static void hmap_free(hmap *m)
{
	for (size_t i = 0; i < m->nb; i++)
		for (hent *e = m->b[i], *n; e != NULL; e = n) {
			n = e->next;
			free(e);
		}
	free(m->b);
	memset(m, 0, sizeof(*m));
}

static int widx_add(widx *x, watcher *w)
{
	if (w->kind == W_RANGE) {
		w->he = NULL;
		w->inext = x->ranges;
		if (x->ranges != NULL)
			x->ranges->iprev = &w->inext;
		x->ranges = w;
		w->iprev = &x->ranges;
		x->nranges++;
		x->sdirty = true;
		return ST_OK;
	}
	if (w->kind == W_PREFIX && w->klen >= x->plen_cap) {
		size_t cap = x->plen_cap ? x->plen_cap : 64;
		while (cap <= w->klen)
			cap *= 2;
		size_t *c = realloc(x->plen_cnt, cap * sizeof(*c));
		if (c == NULL)
			return ST_ENOMEM;
		memset(c + x->plen_cap, 0, (cap - x->plen_cap) * sizeof(*c));
		x->plen_cnt = c;
		x->plen_cap = cap;
	}
	hent *e = hmap_put(w->kind == W_KEY ? &x->keys : &x->prefixes, w->key, w->klen);
	if (e == NULL)
		return ST_ENOMEM;
	w->he = e;
	w->inext = e->head;
	if (e->head != NULL)
		e->head->iprev = &w->inext;
	e->head = w;
	w->iprev = &e->head;
	if (w->kind == W_PREFIX) {
		x->plen_cnt[w->klen]++;
		x->nprefix++;
	}
	return ST_OK;
}

static void widx_del(widx *x, watcher *w)
{
	*w->iprev = w->inext;
	if (w->inext != NULL)
		w->inext->iprev = w->iprev;
	w->inext = NULL;
	w->iprev = NULL;
	if (w->kind == W_RANGE) {
		x->nranges--;
		x->sdirty = true;
	}
	if (w->he != NULL) {
		if (w->he->head == NULL)
			hmap_del(w->kind == W_KEY ? &x->keys : &x->prefixes, w->he);
		if (w->kind == W_PREFIX) {
			x->plen_cnt[w->klen]--;
			x->nprefix--;
		}
		w->he = NULL;
	}
}

static void widx_free(widx *x)
{
	hmap_free(&x->keys);
	hmap_free(&x->prefixes);
	free(x->plen_cnt);
	free(x->sorted);
	free(x->maxend);
	memset(x, 0, sizeof(*x));
}

static bool range_has(const watcher *w, const uint8_t *k, size_t kl)
{
	if (st_key_cmp(k, kl, w->key, w->klen) < 0)
		return false;
	return w->end == NULL || st_key_cmp(k, kl, w->end, w->elen) < 0;
}

static int range_start_cmp(const void *a, const void *b)
{
	const watcher *x = *(watcher *const *)a, *y = *(watcher *const *)b;
	return st_key_cmp(x->key, x->klen, y->key, y->klen);
}

/* Whether end @a (NULL: unbounded) is above end @b. */
static bool end_above(const watcher *a, const watcher *b)
{
	if (b->end == NULL)
		return false;
	return a->end == NULL || st_key_cmp(a->end, a->elen, b->end, b->elen) > 0;
}

/* Rebuild the sorted view of @x's ranges; false on out of memory (the caller
 * then checks them one by one). */
static bool ranges_sort(widx *x)
{
	if (!x->sdirty)
		return true;
	if (x->nranges > x->scap) {
		size_t cap = x->nranges * 2;
		watcher **s = realloc(x->sorted, cap * sizeof(*s));
		if (s != NULL)
			x->sorted = s;
		const watcher **m = realloc(x->maxend, cap * sizeof(*m));
		if (m != NULL)
			x->maxend = m;
		if (s == NULL || m == NULL)
			return false;
		x->scap = cap;
	}
	size_t n = 0;
	for (watcher *w = x->ranges; w != NULL; w = w->inext)
		x->sorted[n++] = w;
	qsort(x->sorted, n, sizeof(*x->sorted), range_start_cmp);
	for (size_t i = 0; i < n; i++)
		x->maxend[i] = (i == 0 || end_above(x->sorted[i], x->maxend[i - 1])) ? x->sorted[i]
		                                                                        : x->maxend[i - 1];
	x->sdirty = false;
	return true;
}

typedef void (*match_fn)(void *arg, watcher *w);

/* Call @fn for every watcher of @x whose range holds key @k. */
static void widx_match(widx *x, const uint8_t *k, size_t kl, match_fn fn, void *arg)
{
	hent *e = hmap_get(&x->keys, k, kl);
	for (watcher *w = e ? e->head : NULL; w != NULL; w = w->inext)
		fn(arg, w);
	if (x->nprefix > 0) {
		size_t lim = kl < x->plen_cap ? kl : x->plen_cap - 1;
		for (size_t l = 0; l <= lim; l++) {
			if (x->plen_cnt[l] == 0)
				continue;
			hent *p = hmap_get(&x->prefixes, k, l);
			for (watcher *w = p ? p->head : NULL; w != NULL; w = w->inext)
				fn(arg, w);
		}
	}
	if (x->nranges < RANGE_SORT_MIN || !ranges_sort(x)) {
		for (watcher *w = x->ranges; w != NULL; w = w->inext)
			if (range_has(w, k, kl))
				fn(arg, w);
		return;
	}
	/* ranges starting at or below @k: sorted[0..p) */
	size_t lo = 0, hi = x->nranges;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		const watcher *w = x->sorted[mid];
		if (st_key_cmp(w->key, w->klen, k, kl) <= 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	for (size_t i = lo; i-- > 0;) {
		const watcher *m = x->maxend[i];
		if (m->end != NULL && st_key_cmp(k, kl, m->end, m->elen) >= 0)
			break; /* no range of sorted[0..i] reaches past @k */
		if (range_has(x->sorted[i], k, kl))
			fn(arg, x->sorted[i]);
	}
}

/* ---- responses -------------------------------------------------------------- */

static void enc_header(const ec_hub *h, wbuf *b, int64_t rev)
{
	ec_hdr hd = {0};
	if (h->cfg.hdr != NULL)
		hd = h->cfg.hdr(h->cfg.hdr_arg);
	wbuf t = {0};
	wb_uint(&t, 1, hd.cluster_id);
	wb_uint(&t, 2, hd.member_id);
	wb_uint(&t, 3, (uint64_t)rev);
	wb_uint(&t, 4, hd.raft_term);
	if (t.oom)
		b->oom = true;
	wb_bytes(b, 1, t.p, t.len, true);
	free(t.p);
}

/* A response without events. */
typedef struct ctl {
	int64_t id;
	bool created, canceled;
	int64_t compact_rev;
	const char *reason;
} ctl;

static void stream_send(ec_wstream *ws, const wbuf *b)
{
	if (b->oom)
		return;
	(void)ws->sink.send(ws->ctx, b->p, b->len);
	if (ws->sink.flush != NULL && !ws->held) {
		ws->held = true;
		ws->hnext = ws->hub->held;
		ws->hub->held = ws;
	}
}

/* End of a round: let every stream sent to write what it holds. */
static void flush_streams(ec_hub *h)
{
	while (h->held != NULL) {
		ec_wstream *ws = h->held;
		h->held = ws->hnext;
		ws->held = false;
		ws->hnext = NULL;
		ws->sink.flush(ws->ctx);
	}
}

static void send_ctl(ec_hub *h, ec_wstream *ws, int64_t rev, const ctl *c)
{
	wbuf b = {0};
	enc_header(h, &b, rev);
	wb_uint(&b, 2, (uint64_t)c->id);
	wb_uint(&b, 3, c->created);
	wb_uint(&b, 4, c->canceled);
	wb_uint(&b, 5, (uint64_t)c->compact_rev);
	if (c->reason != NULL)
		wb_bytes(&b, 6, c->reason, strlen(c->reason), false);
	stream_send(ws, &b);
	free(b.p);
}

/* The store's current revision (created/canceled headers carry it, as etcd's). */
static int64_t store_rev(const ec_hub *h)
{
	st_kv_state s;
	st_kv_state_get(h->cfg.db, &s);
	return s.rev;
}

/* Fill @e's prev_kv (once): the version of its key at mod_rev - 1, or none if
 * that is compacted or absent (etcd omits it then). */
static int prev_visit(void *arg, const st_kv *kv)
{
	hev *e = arg;
	size_t n = kv->key_len + kv->val_len;
	e->prev_data = malloc(n ? n : 1);
	if (e->prev_data == NULL)
		return ST_ENOMEM;
	memcpy(e->prev_data, kv->key, kv->key_len);
	memcpy(e->prev_data + kv->key_len, kv->val, kv->val_len);
	e->prev = *kv;
	e->prev.key = e->prev_data;
	e->prev.val = e->prev_data + kv->key_len;
	e->has_prev = true;
	return ST_VISIT_STOP;
}

static void load_prev(ec_hub *h, hev *e, st_txn *t)
{
	if (e->prev_done)
		return;
	e->prev_done = true;
	if (is_create(&e->kv))
		return;
	if (t == NULL) {
		if (h->rtxn == NULL && st_txn_begin(h->cfg.db, false, &h->rtxn) != ST_OK)
			return;
		t = h->rtxn;
	}
	int64_t at = e->kv.mod_rev - 1;
	if (at < st_txn_compact_rev(t) || at > st_txn_rev(t))
		return;
	(void)st_txn_range(t, e->kv.key, e->kv.key_len, NULL, 0, at, prev_visit, e);
}

/* The encoded `events` field of @e, with or without prev_kv; NULL on OOM. */
static const uint8_t *ev_bytes(ec_hub *h, hev *e, bool prev, st_txn *t, size_t *len)
{
	if (prev)
		load_prev(h, e, t);
	bool with = prev && e->has_prev;
	uint8_t **slot = with ? &e->encp : &e->enc;
	size_t *slen = with ? &e->encp_len : &e->enc_len;
	if (*slot == NULL) {
		wbuf in = {0}, out = {0};
		wb_uint(&in, 1, e->kv.tombstone ? 1 : 0); /* type: PUT 0, DELETE 1 */
		wb_kv_field(&in, 2, &e->kv);
		if (with)
			wb_kv_field(&in, 3, &e->prev);
		wb_bytes(&out, 11, in.p, in.len, true);
		free(in.p);
		if (in.oom || out.oom) {
			free(out.p);
			*len = 0;
			return NULL;
		}
		*slot = out.p;
		*slen = out.len;
	}
	*len = *slen;
	return *slot;
}

static void hev_clear(hev *e)
{
	free(e->enc);
	free(e->encp);
	free(e->prev_data);
}

/*
 * Send watcher @w the events @idx[0..n) of @evs in one response whose header
 * field is @hdr (encoded once per batch by the caller) — or, for a fragment
 * watcher whose response would reach the request limit, in fragments as
 * etcd's sendFragments splits them: each fragment takes events until adding
 * one more would reach the limit (but at least one), every fragment but the
 * last has fragment=true. The response is built in the hub's scratch buffer.
 */
static void send_events(ec_hub *h, watcher *w, hev *evs, const size_t *idx, size_t n,
			const wbuf *hdr, st_txn *t)
{
	wbuf *b = &h->scratch;
	b->len = 0;
	b->oom = hdr->oom;
	wb_add(b, hdr->p, hdr->len);
	wb_uint(b, 2, (uint64_t)w->id);
	size_t head = b->len, total = head;
	for (size_t i = 0; i < n; i++) {
		size_t l;
		if (ev_bytes(h, &evs[idx[i]], w->prev_kv, t, &l) == NULL)
			h->oom = true;
		total += l;
	}
	size_t lim = h->cfg.max_request_bytes;
	bool frag = w->fragment && n >= 2 && total >= lim;
	size_t i = 0;
	do {
		b->len = head; /* header and watch id stay */
		size_t cnt = 0, size = head + 2; /* + the fragment flag */
		while (i < n) {
			size_t l;
			const uint8_t *p = ev_bytes(h, &evs[idx[i]], w->prev_kv, t, &l);
			if (frag && cnt >= 1 && size + l >= lim)
				break;
			if (p != NULL)
				wb_add(b, p, l);
			size += l;
			cnt++;
			i++;
		}
		if (frag && i < n)
			wb_uint(b, 7, 1);
		stream_send(w->ws, b);
	} while (i < n);
	if (b->cap > ((size_t)4 << 20)) { /* do not keep a huge one around */
		free(b->p);
		memset(b, 0, sizeof(*b));
	}
	w->sent = true;
}

/* ---- synced / unsynced ---------------------------------------------------- */

static void unsynced_push(ec_hub *h, watcher *w)
{
	w->unext = NULL;
	w->uprev = h->utail;
	if (h->utail != NULL)
		h->utail->unext = w;
	else
		h->uhead = w;
	h->utail = w;
	h->nunsynced++;
	w->ws->nunsynced++;
}

static void unsynced_del(ec_hub *h, watcher *w)
{
	if (w->uprev != NULL)
		w->uprev->unext = w->unext;
	else
		h->uhead = w->unext;
	if (w->unext != NULL)
		w->unext->uprev = w->uprev;
	else
		h->utail = w->uprev;
	w->unext = w->uprev = NULL;
	h->nunsynced--;
	w->ws->nunsynced--;
}

/* Make @w synced (it has everything up to h->rev). On out of memory it stays
 * unsynced and is retried. */
static void make_synced(ec_hub *h, watcher *w)
{
	if (widx_add(&h->synced, w) != ST_OK) {
		unsynced_push(h, w);
		return;
	}
	w->synced = true;
}

/* Synced @w falls behind: it has everything before @from. */
static void make_unsynced(ec_hub *h, watcher *w, int64_t from)
{
	widx_del(&h->synced, w);
	w->synced = false;
	if (w->next < from)
		w->next = from;
	unsynced_push(h, w);
}

static void answer_progress(ec_hub *h)
{
	if (h->progress_waiting == 0)
		return;
	for (ec_wstream *ws = h->streams; ws != NULL; ws = ws->next) {
		if (!ws->progress_wanted || ws->nunsynced > 0)
			continue;
		ws->progress_wanted = false;
		h->progress_waiting--;
		ctl c = {.id = -1};
		send_ctl(h, ws, h->rev, &c);
	}
}

/* ---- the hub --------------------------------------------------------------- */

int ec_hub_new(const ec_hub_config *cfg, ec_hub **out)
{
	if (cfg == NULL || cfg->db == NULL)
		return ST_EINVAL;
	ec_hub *h = calloc(1, sizeof(*h));
	if (h == NULL)
		return ST_ENOMEM;
	h->cfg = *cfg;
	if (h->cfg.max_request_bytes == 0)
		h->cfg.max_request_bytes = DEFAULT_MAX_REQUEST;
	if (h->cfg.stream_budget == 0)
		h->cfg.stream_budget = DEFAULT_BUDGET;
	if (h->cfg.catchup_bytes == 0)
		h->cfg.catchup_bytes = DEFAULT_CATCHUP;
	h->rev = store_rev(h);
	*out = h;
	return ST_OK;
}

static void watcher_free(watcher *w)
{
	free(w->key);
	free(w->end);
	free(w);
}

/* The key of watch id @id in a stream's id map. */
static void id_key(int64_t id, uint8_t k[8])
{
	for (int i = 0; i < 8; i++)
		k[i] = (uint8_t)((uint64_t)id >> (56 - 8 * i));
}

/* Remove @w from wherever it is (index or unsynced list, stream) and free it. */
static void watcher_remove(ec_hub *h, watcher *w)
{
	ec_wstream *ws = w->ws;
	if (w->synced)
		widx_del(&h->synced, w);
	else if (!w->dead)
		unsynced_del(h, w);
	uint8_t k[8];
	id_key(w->id, k);
	hent *e = hmap_get(&ws->ids, k, 8);
	if (e != NULL)
		hmap_del(&ws->ids, e);
	if (w->sprev != NULL)
		w->sprev->snext = w->snext;
	else
		ws->wl = w->snext;
	if (w->snext != NULL)
		w->snext->sprev = w->sprev;
	ws->nwatch--;
	h->nwatch--;
	watcher_free(w);
}

void ec_hub_free(ec_hub *h)
{
	if (h == NULL)
		return;
	while (h->streams != NULL)
		ec_hub_stream_close(h, h->streams);
	widx_free(&h->synced);
	free(h->pairs);
	free(h->scratch.p);
	st_txn_abort(h->rtxn);
	free(h);
}

int64_t ec_hub_rev(const ec_hub *h)
{
	return h->rev;
}

size_t ec_hub_watchers(const ec_hub *h)
{
	return h->nwatch;
}

size_t ec_hub_unsynced(const ec_hub *h)
{
	return h->nunsynced;
}

ec_wstream *ec_hub_stream_open(ec_hub *h, const ec_wsink *sink, void *ctx)
{
	ec_wstream *ws = calloc(1, sizeof(*ws));
	if (ws == NULL)
		return NULL;
	ws->hub = h;
	ws->sink = *sink;
	ws->ctx = ctx;
	ws->next = h->streams;
	if (h->streams != NULL)
		h->streams->prev = ws;
	h->streams = ws;
	return ws;
}

void ec_hub_stream_close(ec_hub *h, ec_wstream *ws)
{
	if (ws == NULL)
		return;
	flush_streams(h); /* keeps the held list free of @ws */
	while (ws->wl != NULL)
		watcher_remove(h, ws->wl);
	if (ws->progress_wanted)
		h->progress_waiting--;
	if (ws->prev != NULL)
		ws->prev->next = ws->next;
	else
		h->streams = ws->next;
	if (ws->next != NULL)
		ws->next->prev = ws->prev;
	hmap_free(&ws->ids);
	free(ws);
}

size_t ec_hub_stream_watchers(const ec_wstream *ws)
{
	return ws->nwatch;
}

static bool id_taken(const ec_wstream *ws, int64_t id)
{
	uint8_t k[8];
	id_key(id, k);
	return hmap_get(&ws->ids, k, 8) != NULL;
}

/* The prefix end of @k (etcd's GetPrefixRangeEnd): the key with its last byte
 * below 0xff incremented and what follows dropped; "" when there is none. */
static size_t prefix_end(const uint8_t *k, size_t kl, uint8_t *out)
{
	size_t n = kl;
	while (n > 0 && k[n - 1] == 0xff)
		n--;
	if (n == 0)
		return 0;
	memcpy(out, k, n);
	out[n - 1]++;
	return n;
}

void ec_hub_refuse(ec_hub *h, ec_wstream *ws, const char *reason)
{
	ctl c = {.id = -1, .created = true, .canceled = true, .reason = reason};
	send_ctl(h, ws, store_rev(h), &c);
	flush_streams(h);
}

static int watch_create(ec_hub *h, ec_wstream *ws, const Etcdserverpb__WatchCreateRequest *r)
{
	static const uint8_t zero = 0;
	const uint8_t *key = r->key.data, *end = r->range_end.data;
	size_t klen = r->key.len, elen = r->range_end.len;
	if (klen == 0) { /* "\0" is the smallest key */
		key = &zero;
		klen = 1;
	}
	bool fromkey = elen == 1 && end[0] == 0;
	int64_t srev = store_rev(h);
	if (elen > 0 && !fromkey && st_key_cmp(key, klen, end, elen) >= 0) {
		ctl c = {.id = -1, .created = true, .canceled = true, .reason = EC_WATCH_EMPTY_RANGE};
		send_ctl(h, ws, srev, &c);
		return ST_OK;
	}
	int64_t id = r->watch_id;
	if (id != 0 && id_taken(ws, id)) {
		ctl c = {.id = -1, .created = true, .canceled = true, .reason = EC_WATCH_DUPLICATE_ID};
		send_ctl(h, ws, srev, &c);
		return ST_OK;
	}
	if (id == 0) {
		while (id_taken(ws, ws->next_id))
			ws->next_id++;
		id = ws->next_id++;
	}
	watcher *w = calloc(1, sizeof(*w));
	if (w == NULL)
		return ST_ENOMEM;
	w->id = id;
	w->ws = ws;
	w->key = malloc(klen);
	if (w->key == NULL) {
		free(w);
		return ST_ENOMEM;
	}
	memcpy(w->key, key, klen);
	w->klen = klen;
	if (elen == 0) {
		w->kind = W_KEY;
	} else if (fromkey) {
		/* from @key on; from the smallest key on is every key: prefix "" */
		w->kind = (klen == 1 && key[0] == 0) ? W_PREFIX : W_RANGE;
		if (w->kind == W_PREFIX)
			w->klen = 0;
	} else {
		uint8_t *pe = malloc(klen);
		size_t pl = pe ? prefix_end(key, klen, pe) : 0;
		if (pe != NULL && pl == elen && memcmp(pe, end, elen) == 0) {
			w->kind = W_PREFIX;
		} else {
			w->kind = W_RANGE;
			w->end = malloc(elen);
			if (w->end == NULL) {
				free(pe);
				watcher_free(w);
				return ST_ENOMEM;
			}
			memcpy(w->end, end, elen);
			w->elen = elen;
		}
		free(pe);
	}
	w->prev_kv = r->prev_kv;
	w->progress = r->progress_notify;
	w->fragment = r->fragment;
	for (size_t i = 0; i < r->n_filters; i++) {
		if (r->filters[i] == ETCDSERVERPB__WATCH_CREATE_REQUEST__FILTER_TYPE__NOPUT)
			w->noput = true;
		else if (r->filters[i] == ETCDSERVERPB__WATCH_CREATE_REQUEST__FILTER_TYPE__NODELETE)
			w->nodel = true;
	}
	w->next = r->start_revision != 0 ? r->start_revision : srev + 1;
	uint8_t k[8];
	id_key(id, k);
	hent *e = hmap_put(&ws->ids, k, 8);
	if (e == NULL) {
		watcher_free(w);
		return ST_ENOMEM;
	}
	e->head = w;
	/* created first: the hub sends nothing for @w before this */
	ctl c = {.id = id, .created = true};
	send_ctl(h, ws, srev, &c);
	w->snext = ws->wl;
	if (ws->wl != NULL)
		ws->wl->sprev = w;
	ws->wl = w;
	ws->nwatch++;
	h->nwatch++;
	if (w->next > h->rev)
		make_synced(h, w);
	else
		unsynced_push(h, w);
	return ST_OK;
}

static void watch_cancel(ec_hub *h, ec_wstream *ws, int64_t id)
{
	uint8_t k[8];
	id_key(id, k);
	hent *e = hmap_get(&ws->ids, k, 8);
	if (e == NULL)
		return;
	watcher_remove(h, e->head);
	ctl c = {.id = id, .canceled = true};
	send_ctl(h, ws, store_rev(h), &c);
	answer_progress(h); /* it may have been the one a progress request waited on */
}

static int hub_request(ec_hub *h, ec_wstream *ws, const Etcdserverpb__WatchRequest *req)
{
	switch (req->request_union_case) {
	case ETCDSERVERPB__WATCH_REQUEST__REQUEST_UNION_CREATE_REQUEST:
		if (req->create_request == NULL)
			return ST_OK;
		return watch_create(h, ws, req->create_request);
	case ETCDSERVERPB__WATCH_REQUEST__REQUEST_UNION_CANCEL_REQUEST:
		if (req->cancel_request != NULL)
			watch_cancel(h, ws, req->cancel_request->watch_id);
		return ST_OK;
	case ETCDSERVERPB__WATCH_REQUEST__REQUEST_UNION_PROGRESS_REQUEST:
		if (!ws->progress_wanted) {
			ws->progress_wanted = true;
			h->progress_waiting++;
		}
		answer_progress(h);
		return ST_OK;
	default:
		return ST_OK;
	}
}

/* ---- matching a batch -------------------------------------------------------- */

typedef struct matchctx {
	ec_hub *h;
	const st_kv *kv;
	size_t ev;
} matchctx;

static bool wants(const watcher *w, const st_kv *kv)
{
	if (kv->mod_rev < w->next)
		return false;
	return kv->tombstone ? !w->nodel : !w->noput;
}

static void add_pair(void *arg, watcher *w)
{
	matchctx *m = arg;
	ec_hub *h = m->h;
	if (!wants(w, m->kv))
		return;
	if (h->npairs == h->cappairs) {
		size_t cap = h->cappairs ? h->cappairs * 2 : 256;
		pair *p = realloc(h->pairs, cap * sizeof(*p));
		if (p == NULL) {
			h->oom = true;
			return;
		}
		h->pairs = p;
		h->cappairs = cap;
	}
	size_t i = h->npairs++;
	h->pairs[i].ev = m->ev;
	h->pairs[i].next = SIZE_MAX;
	if (!w->touched) {
		w->touched = true;
		w->ph = i;
		w->tnext = h->touched;
		h->touched = w;
	} else {
		h->pairs[w->pt].next = i;
	}
	w->pt = i;
}

/* The event indexes matched to @w in this batch, in order (malloc'd). */
static size_t *pairs_of(ec_hub *h, watcher *w, size_t *n)
{
	size_t c = 0;
	for (size_t i = w->ph; i != SIZE_MAX; i = h->pairs[i].next)
		c++;
	size_t *idx = malloc(c * sizeof(*idx));
	if (idx == NULL) {
		h->oom = true;
		*n = 0;
		return NULL;
	}
	c = 0;
	for (size_t i = w->ph; i != SIZE_MAX; i = h->pairs[i].next)
		idx[c++] = h->pairs[i].ev;
	*n = c;
	return idx;
}

static bool over_budget(const ec_hub *h, const ec_wstream *ws)
{
	return ws->sink.queued(ws->ctx) > h->cfg.stream_budget;
}

/* Send every touched watcher the events matched to it in @ev (the hub's
 * revision is already past them; they were matched from revision @from on),
 * then free the batch's encodings. */
static void deliver(ec_hub *h, hev *ev, size_t n, int64_t from)
{
	wbuf hdr = {0};
	if (h->touched != NULL)
		enc_header(h, &hdr, h->rev);
	for (watcher *w = h->touched, *nx; w != NULL; w = nx) {
		nx = w->tnext;
		w->touched = false;
		if (h->oom || over_budget(h, w->ws)) {
			make_unsynced(h, w, from);
			continue;
		}
		size_t cnt;
		size_t *idx = pairs_of(h, w, &cnt);
		if (idx == NULL) {
			make_unsynced(h, w, from);
			continue;
		}
		send_events(h, w, ev, idx, cnt, &hdr, NULL);
		free(idx);
	}
	free(hdr.p);
	h->touched = NULL;
	h->npairs = 0;
	h->oom = false;
	for (size_t i = 0; i < n; i++)
		hev_clear(&ev[i]);
	if (h->rtxn != NULL) {
		st_txn_abort(h->rtxn);
		h->rtxn = NULL;
	}
}

int ec_hub_request(ec_hub *h, ec_wstream *ws, const Etcdserverpb__WatchRequest *req)
{
	int rc = hub_request(h, ws, req);
	flush_streams(h);
	return rc;
}

static void hub_publish(ec_hub *h, st_events **evs, size_t nb)
{
	size_t total = 0;
	for (size_t b = 0; b < nb; b++)
		total += evs[b] != NULL ? evs[b]->n : 0;
	hev *ev = calloc(total ? total : 1, sizeof(*ev));
	if (ev == NULL) {
		for (size_t b = 0; b < nb; b++)
			st_events_free(evs[b]);
		ec_hub_resync(h);
		return;
	}
	size_t n = 0;
	int64_t from = h->rev + 1;
	h->npairs = 0;
	h->touched = NULL;
	h->oom = false;
	for (size_t b = 0; b < nb; b++) {
		const st_events *e = evs[b];
		if (e == NULL || e->last_rev <= h->rev)
			continue;
		if (e->first_rev > h->rev + 1) {
			/* a commit never reached the hub: send what came before it,
			 * then everyone reads the rest from history */
			deliver(h, ev, n, from);
			n = 0;
			ec_hub_resync(h);
			from = h->rev + 1;
			continue;
		}
		for (size_t i = 0; i < e->n; i++) {
			if (e->ev[i].mod_rev <= h->rev)
				continue;
			memset(&ev[n], 0, sizeof(ev[n]));
			ev[n].kv = e->ev[i];
			matchctx m = {.h = h, .kv = &ev[n].kv, .ev = n};
			widx_match(&h->synced, ev[n].kv.key, ev[n].kv.key_len, add_pair, &m);
			n++;
		}
		h->rev = e->last_rev;
	}
	deliver(h, ev, n, from);
	free(ev);
	for (size_t b = 0; b < nb; b++)
		st_events_free(evs[b]);
	answer_progress(h);
}

void ec_hub_publish(ec_hub *h, st_events **evs, size_t nb)
{
	hub_publish(h, evs, nb);
	flush_streams(h);
}

void ec_hub_resync(ec_hub *h)
{
	int64_t from = h->rev + 1;
	/* every synced watcher: walk the streams (the index has no list) */
	for (ec_wstream *ws = h->streams; ws != NULL; ws = ws->next)
		for (watcher *w = ws->wl; w != NULL; w = w->snext)
			if (w->synced)
				make_unsynced(h, w, from);
	int64_t r = store_rev(h);
	if (r > h->rev)
		h->rev = r;
}

/* ---- catch-up ------------------------------------------------------------------ */

typedef struct hist {
	ec_hub *h;
	widx *grp;
	hev *ev;
	size_t n, cap;
	uint8_t *data;
	size_t dlen, dcap;
	size_t bytes;
	int64_t cur;     /* revision being read */
	int64_t done;    /* last revision read completely */
	bool stopped;
	bool oom;
} hist;

static int hist_visit(void *arg, const st_kv *kv)
{
	hist *s = arg;
	if (kv->mod_rev != s->cur) {
		if (s->cur != 0)
			s->done = s->cur;
		if (s->bytes >= s->h->cfg.catchup_bytes) {
			s->stopped = true;
			return ST_VISIT_STOP;
		}
		s->cur = kv->mod_rev;
	}
	if (s->n == s->cap) {
		size_t cap = s->cap ? s->cap * 2 : 256;
		hev *e = realloc(s->ev, cap * sizeof(*e));
		if (e == NULL)
			return ST_ENOMEM;
		s->ev = e;
		s->cap = cap;
	}
	size_t need = kv->key_len + kv->val_len;
	if (s->dlen + need > s->dcap) {
		size_t cap = s->dcap ? s->dcap : 65536;
		while (cap < s->dlen + need)
			cap *= 2;
		uint8_t *d = realloc(s->data, cap);
		if (d == NULL)
			return ST_ENOMEM;
		s->data = d;
		s->dcap = cap;
	}
	hev *e = &s->ev[s->n];
	memset(e, 0, sizeof(*e));
	e->kv = *kv;
	/* offsets until the walk ends (the data area may move) */
	e->kv.key = (const uint8_t *)(uintptr_t)s->dlen;
	memcpy(s->data + s->dlen, kv->key, kv->key_len);
	s->dlen += kv->key_len;
	e->kv.val = (const uint8_t *)(uintptr_t)s->dlen;
	if (kv->val_len)
		memcpy(s->data + s->dlen, kv->val, kv->val_len);
	s->dlen += kv->val_len;
	s->bytes += need;
	matchctx m = {.h = s->h, .kv = kv, .ev = s->n};
	s->n++;
	widx_match(s->grp, kv->key, kv->key_len, add_pair, &m);
	return 0;
}

/* Up to EC_HUB_SYNC_BATCH unsynced watchers whose streams can take more. */
static size_t pick_group(ec_hub *h, watcher **g)
{
	size_t n = 0;
	for (watcher *w = h->uhead; w != NULL && n < EC_HUB_SYNC_BATCH; w = w->unext)
		if (!over_budget(h, w->ws))
			g[n++] = w;
	return n;
}

static bool hub_step(ec_hub *h)
{
	if (h->nunsynced == 0)
		return false;
	watcher *g[EC_HUB_SYNC_BATCH];
	size_t n = pick_group(h, g);
	if (n == 0)
		return false;
	st_txn *t;
	if (st_txn_begin(h->cfg.db, false, &t) != ST_OK)
		return false;
	int64_t compact = st_txn_compact_rev(t);
	/* the read sees at least h->rev: events reach the hub after their commit */
	int64_t to = h->rev;
	widx grp = {0};
	size_t m = 0;
	int64_t min = INT64_MAX;
	for (size_t i = 0; i < n; i++) {
		watcher *w = g[i];
		if (w->next < compact) {
			/* etcd: header revision 0 on this one */
			ctl c = {.id = w->id, .canceled = true, .compact_rev = compact};
			send_ctl(h, w->ws, 0, &c);
			unsynced_del(h, w);
			w->dead = true;
			continue;
		}
		if (w->next < 1)
			w->next = 1;
		if (w->next > to) {
			unsynced_del(h, w);
			make_synced(h, w);
			continue;
		}
		if (widx_add(&grp, w) != ST_OK)
			continue; /* retried next round */
		g[m++] = w;
		if (w->next < min)
			min = w->next;
	}
	if (m == 0) {
		widx_free(&grp);
		st_txn_abort(t);
		answer_progress(h);
		return true;
	}
	hist s = {.h = h, .grp = &grp};
	h->npairs = 0;
	h->touched = NULL;
	h->oom = false;
	int rc = st_txn_history(t, min, to, hist_visit, &s);
	int64_t upto = s.stopped ? s.done : to;
	wbuf hdr = {0};
	if (rc == ST_OK && !h->oom) {
		enc_header(h, &hdr, to);
		for (size_t i = 0; i < s.n; i++) {
			s.ev[i].kv.key = s.data + (uintptr_t)s.ev[i].kv.key;
			s.ev[i].kv.val = s.data + (uintptr_t)s.ev[i].kv.val;
		}
		for (watcher *w = h->touched; w != NULL; w = w->tnext) {
			size_t cnt;
			size_t *idx = pairs_of(h, w, &cnt);
			if (idx == NULL)
				continue;
			/* only whole revisions up to @upto count as sent */
			while (cnt > 0 && s.ev[idx[cnt - 1]].kv.mod_rev > upto)
				cnt--;
			if (cnt > 0)
				send_events(h, w, s.ev, idx, cnt, &hdr, t);
			free(idx);
		}
	}
	free(hdr.p);
	for (watcher *w = h->touched; w != NULL; w = w->tnext)
		w->touched = false;
	h->touched = NULL;
	for (size_t i = 0; i < m; i++) {
		watcher *w = g[i];
		widx_del(&grp, w);
		if (rc != ST_OK || h->oom)
			continue; /* the round is repeated */
		if (w->next <= upto)
			w->next = upto + 1;
		if (w->next > h->rev) {
			unsynced_del(h, w);
			make_synced(h, w);
		} else if (w->unext != NULL) {
			/* to the back: others get their turn */
			unsynced_del(h, w);
			unsynced_push(h, w);
		}
	}
	for (size_t i = 0; i < s.n; i++)
		hev_clear(&s.ev[i]);
	free(s.ev);
	free(s.data);
	widx_free(&grp);
	st_txn_abort(t);
	answer_progress(h);
	return rc == ST_OK;
}

bool ec_hub_step(ec_hub *h)
{
	bool more = hub_step(h);
	flush_streams(h);
	return more;
}

void ec_hub_progress_tick(ec_hub *h)
{
	for (ec_wstream *ws = h->streams; ws != NULL; ws = ws->next)
		for (watcher *w = ws->wl; w != NULL; w = w->snext) {
			if (w->progress && !w->sent && w->synced) {
				ctl c = {.id = w->id};
				send_ctl(h, ws, h->rev, &c);
			}
			w->sent = false;
		}
	flush_streams(h);
}
