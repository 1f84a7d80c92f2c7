/*
 * st_bolt: a bbolt file writer and reader, written from bbolt's on-disk format
 * (docs/disk-format.md, "bbolt files (etcd snapshots)"; API in st_bolt.h).
 *
 * Writer: keys arrive sorted, so a B+tree can be built bottom-up in one pass.
 * A tree builder keeps one partly filled page per level (level 0 = leaf); when a
 * page is full it is written at the next page id and its first key goes up one
 * level as a branch element. Ending a tree flushes every level upwards; the top
 * one is the root. Each top-level bucket is such a tree, and so is the root
 * bucket whose leaf elements are the bucket headers. Pages go out through one
 * sequential buffer; the two meta pages (ids 0 and 1) are written last.
 *
 * Reader: the file is mapped read-only and every page is bounds-checked when it
 * is reached; all multi-byte fields are loaded byte-wise (little-endian, as bbolt
 * writes them on amd64), so unaligned inline buckets need no copy.
 */
#include "storage/st_bolt.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>

/* ------------------------------------------------------------ the format */

enum {
	BOLT_MAGIC = 0xED0CDAEDu,
	BOLT_VERSION = 2,
	PAGE_HDR = 16,   /* id u64, flags u16, count u16, overflow u32 */
	ELEM_SIZE = 16,  /* leaf: flags,pos,ksize,vsize u32; branch: pos,ksize u32, pgid u64 */
	BUCKET_HDR = 16, /* root pgid u64, sequence u64 */
	META_SIZE = 64,  /* meta struct, checksum last */
	META_SUMMED = 56,
	PF_BRANCH = 0x01,
	PF_LEAF = 0x02,
	PF_META = 0x04,
	PF_FREELIST = 0x10,
	LEAF_BUCKET = 0x01,
	MAX_DEPTH = 64,
	MIN_KEYS_PER_PAGE = 2,
};
#define PGID_NO_FREELIST UINT64_MAX

/* Offsets inside a meta page (page header first). */
enum {
	M_MAGIC = PAGE_HDR + 0,
	M_VERSION = PAGE_HDR + 4,
	M_PAGESIZE = PAGE_HDR + 8,
	M_FLAGS = PAGE_HDR + 12,
	M_ROOT = PAGE_HDR + 16,
	M_SEQ = PAGE_HDR + 24,
	M_FREELIST = PAGE_HDR + 32,
	M_PGID = PAGE_HDR + 40,
	M_TXID = PAGE_HDR + 48,
	M_CHECKSUM = PAGE_HDR + 56,
};

static uint16_t ld16(const uint8_t *p)
{
	return (uint16_t)(p[0] | p[1] << 8);
}
static uint32_t ld32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static uint64_t ld64(const uint8_t *p)
{
	return (uint64_t)ld32(p) | (uint64_t)ld32(p + 4) << 32;
}
static void st16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
}
static void st32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}
static void st64(uint8_t *p, uint64_t v)
{
	st32(p, (uint32_t)v);
	st32(p + 4, (uint32_t)(v >> 32));
}

/* FNV-1a, 64 bit: bbolt's meta checksum. */
static uint64_t fnv1a64(const uint8_t *p, size_t n)
{
	uint64_t h = 14695981039346656037ull;
	for (size_t i = 0; i < n; i++) {
		h ^= p[i];
		h *= 1099511628211ull;
	}
	return h;
}

/* bytewise order, a proper prefix first (Go's bytes.Compare) */
static int keycmp(const uint8_t *a, size_t alen, const uint8_t *b, size_t blen)
{
	size_t n = alen < blen ? alen : blen;
	int c = n ? memcmp(a, b, n) : 0;
	if (c != 0)
		return c;
	return alen < blen ? -1 : alen > blen ? 1 : 0;
}

static void *xrealloc_grow(void *p, size_t *cap, size_t need, size_t elsz)
{
	if (need <= *cap)
		return p;
	size_t nc = *cap ? *cap : 16;
	while (nc < need)
		nc *= 2;
	void *q = realloc(p, nc * elsz);
	if (q != NULL)
		*cap = nc;
	return q;
}

/* ------------------------------------------------------------ the writer */

/* One element of a page under construction; its key (and value) lie in the
 * level's data buffer at @off. */
typedef struct bt_ent {
	uint32_t flags;
	uint32_t klen;
	uint64_t vlen;
	uint64_t pgid;
	size_t off;
} bt_ent;

typedef struct bt_level {
	bt_ent *ents;
	size_t n, ecap;
	uint8_t *data;
	size_t dlen, dcap;
} bt_level;

typedef struct bt_tree {
	bt_level lv[MAX_DEPTH];
	int nlv;
	bool flushed0; /* a leaf page of this tree was written already */
} bt_tree;

struct st_bolt_writer {
	int fd;
	char *path;
	uint32_t ps;
	size_t threshold; /* fill target of a page, bytes */
	uint64_t next_pgid;
	uint8_t *out; /* pages not yet written, starting at page id out_pgid */
	size_t out_len, out_cap;
	uint64_t out_pgid;
	int err; /* poisoned by ST_EIO / ST_ENOMEM */
	bool in_bucket;
	bt_tree bucket, root;
	uint8_t *last_bucket, *last_key;
	size_t last_bucket_len, last_key_len;
	bool have_bucket, have_key;
};

#define OUT_FLUSH_BYTES ((size_t)1 << 20)
#define FILL_PERCENT    90 /* etcd fills 90% (its defrag and sequential puts) */

static size_t lv_bytes(const bt_level *l)
{
	return PAGE_HDR + l->n * ELEM_SIZE + l->dlen;
}

static int out_flush(st_bolt_writer *w)
{
	size_t done = 0;
	off_t off = (off_t)(w->out_pgid * w->ps);
	while (done < w->out_len) {
		ssize_t r = pwrite(w->fd, w->out + done, w->out_len - done, off + (off_t)done);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return ST_EIO;
		done += (size_t)r;
	}
	w->out_pgid += w->out_len / w->ps;
	w->out_len = 0;
	return 0;
}

/* Lay out level @l as a page (header + elements + data) at the next page id;
 * @flags is PF_LEAF or PF_BRANCH. Sets *@pgid. */
static int write_page(st_bolt_writer *w, const bt_level *l, uint16_t flags, uint64_t *pgid)
{
	size_t bytes = lv_bytes(l);
	size_t npages = (bytes + w->ps - 1) / w->ps;
	size_t len = npages * w->ps;
	void *nb = xrealloc_grow(w->out, &w->out_cap, w->out_len + len, 1);
	if (nb == NULL)
		return ST_ENOMEM;
	w->out = nb;
	uint8_t *p = w->out + w->out_len;
	memset(p, 0, len);
	*pgid = w->next_pgid;
	st64(p, *pgid);
	st16(p + 8, flags);
	st16(p + 10, (uint16_t)l->n);
	st32(p + 12, (uint32_t)(npages - 1));
	size_t dbase = PAGE_HDR + l->n * ELEM_SIZE;
	for (size_t i = 0; i < l->n; i++) {
		const bt_ent *e = &l->ents[i];
		uint8_t *el = p + PAGE_HDR + i * ELEM_SIZE;
		uint32_t pos = (uint32_t)(dbase + e->off - (PAGE_HDR + i * ELEM_SIZE));
		if (flags == PF_LEAF) {
			st32(el, e->flags);
			st32(el + 4, pos);
			st32(el + 8, e->klen);
			st32(el + 12, (uint32_t)e->vlen);
		} else {
			st32(el, pos);
			st32(el + 4, e->klen);
			st64(el + 8, e->pgid);
		}
	}
	if (l->dlen)
		memcpy(p + dbase, l->data, l->dlen);
	w->out_len += len;
	w->next_pgid += npages;
	if (w->out_len >= OUT_FLUSH_BYTES)
		return out_flush(w);
	return 0;
}

static int tree_add(st_bolt_writer *w, bt_tree *t, int level, uint32_t flags, const void *k,
                    size_t klen, const void *v, size_t vlen, uint64_t pgid);

/* Write level @i of @t as a page and hand its first key up to level i+1. */
static int flush_level(st_bolt_writer *w, bt_tree *t, int i)
{
	bt_level *l = &t->lv[i];
	uint64_t pgid;
	int rc = write_page(w, l, i == 0 ? PF_LEAF : PF_BRANCH, &pgid);
	if (rc != 0)
		return rc;
	if (i == 0)
		t->flushed0 = true;
	if (i + 1 == t->nlv) {
		if (t->nlv == MAX_DEPTH)
			return ST_EINVAL; /* unreachable: each level at least halves */
		t->nlv++;
	}
	rc = tree_add(w, t, i + 1, 0, l->data + l->ents[0].off, l->ents[0].klen, NULL, 0, pgid);
	l->n = 0;
	l->dlen = 0;
	return rc;
}

/* Append one element to level @level, writing the level's page first when the
 * element would take it past the fill target (keeping >= 2 elements a page). */
static int tree_add(st_bolt_writer *w, bt_tree *t, int level, uint32_t flags, const void *k,
                    size_t klen, const void *v, size_t vlen, uint64_t pgid)
{
	bt_level *l = &t->lv[level];
	size_t esz = ELEM_SIZE + klen + vlen;
	if (l->n > 0) {
		size_t after = lv_bytes(l) + esz;
		bool full = l->n >= MIN_KEYS_PER_PAGE && after > w->threshold;
		if (full || l->n >= 0xFFF0 || after > 0x7FFF0000u) {
			int rc = flush_level(w, t, level);
			if (rc != 0)
				return rc;
		}
	}
	void *ne = xrealloc_grow(l->ents, &l->ecap, l->n + 1, sizeof(bt_ent));
	if (ne == NULL)
		return ST_ENOMEM;
	l->ents = ne;
	void *nd = xrealloc_grow(l->data, &l->dcap, l->dlen + klen + vlen, 1);
	if (nd == NULL)
		return ST_ENOMEM;
	l->data = nd;
	bt_ent *e = &l->ents[l->n++];
	e->flags = flags;
	e->klen = (uint32_t)klen;
	e->vlen = vlen;
	e->pgid = pgid;
	e->off = l->dlen;
	memcpy(l->data + l->dlen, k, klen);
	if (vlen)
		memcpy(l->data + l->dlen + klen, v, vlen);
	l->dlen += klen + vlen;
	return 0;
}

/* End tree @t: either an inline bucket value (when @inline_ok and the tree is a
 * single leaf of at most pageSize/4 bytes, as bbolt inlines) written into
 * *@inl (malloc'd, *@inl_len bytes), or the pages flushed upwards and the root's
 * page id in *@root. The tree is left empty for reuse. */
static int tree_finish(st_bolt_writer *w, bt_tree *t, bool inline_ok, uint64_t *root, uint8_t **inl,
                       size_t *inl_len)
{
	*inl = NULL;
	*root = 0;
	bt_level *l0 = &t->lv[0];
	if (inline_ok && t->nlv == 1 && !t->flushed0 && lv_bytes(l0) <= w->ps / 4) {
		size_t len = BUCKET_HDR + lv_bytes(l0);
		uint8_t *v = calloc(1, len);
		if (v == NULL)
			return ST_ENOMEM;
		uint8_t *p = v + BUCKET_HDR;
		st16(p + 8, PF_LEAF);
		st16(p + 10, (uint16_t)l0->n);
		size_t dbase = PAGE_HDR + l0->n * ELEM_SIZE;
		for (size_t i = 0; i < l0->n; i++) {
			uint8_t *el = p + PAGE_HDR + i * ELEM_SIZE;
			st32(el, l0->ents[i].flags);
			st32(el + 4,
			     (uint32_t)(dbase + l0->ents[i].off - (PAGE_HDR + i * ELEM_SIZE)));
			st32(el + 8, l0->ents[i].klen);
			st32(el + 12, (uint32_t)l0->ents[i].vlen);
		}
		if (l0->dlen)
			memcpy(p + dbase, l0->data, l0->dlen);
		*inl = v;
		*inl_len = len;
		l0->n = 0;
		l0->dlen = 0;
		return 0;
	}
	for (int i = 0; i < t->nlv; i++) {
		int rc;
		if (i == t->nlv - 1) {
			rc = write_page(w, &t->lv[i], i == 0 ? PF_LEAF : PF_BRANCH, root);
			t->lv[i].n = 0;
			t->lv[i].dlen = 0;
		} else {
			rc = flush_level(w, t, i);
		}
		if (rc != 0)
			return rc;
	}
	t->nlv = 1;
	t->flushed0 = false;
	return 0;
}

static void tree_free(bt_tree *t)
{
	for (int i = 0; i < MAX_DEPTH; i++) {
		free(t->lv[i].ents);
		free(t->lv[i].data);
	}
}

int st_bolt_writer_open(const char *path, uint32_t page_size, st_bolt_writer **out)
{
	if (path == NULL || out == NULL)
		return ST_EINVAL;
	if (page_size == 0)
		page_size = 4096;
	if (page_size < 1024 || page_size > 65536 || (page_size & (page_size - 1)) != 0)
		return ST_EINVAL;
	st_bolt_writer *w = calloc(1, sizeof(*w));
	if (w == NULL)
		return ST_ENOMEM;
	w->path = strdup(path);
	if (w->path == NULL) {
		free(w);
		return ST_ENOMEM;
	}
	w->fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (w->fd < 0) {
		free(w->path);
		free(w);
		return ST_EIO;
	}
	w->ps = page_size;
	w->threshold = (size_t)page_size * FILL_PERCENT / 100;
	w->next_pgid = 2; /* 0 and 1 are the meta pages, written by finish */
	w->out_pgid = 2;
	w->bucket.nlv = 1;
	w->root.nlv = 1;
	*out = w;
	return 0;
}

static int copy_key(uint8_t **dst, size_t *dlen, const void *src, size_t len)
{
	void *n = realloc(*dst, len ? len : 1);
	if (n == NULL)
		return ST_ENOMEM;
	*dst = n;
	memcpy(*dst, src, len);
	*dlen = len;
	return 0;
}

/* End the current bucket: its tree becomes a leaf element of the root tree. */
static int end_bucket(st_bolt_writer *w)
{
	uint64_t root;
	uint8_t *inl;
	size_t inl_len = 0;
	int rc = tree_finish(w, &w->bucket, true, &root, &inl, &inl_len);
	if (rc != 0)
		return rc;
	uint8_t hdr[BUCKET_HDR] = {0};
	st64(hdr, root); /* sequence stays 0 */
	rc = tree_add(w, &w->root, 0, LEAF_BUCKET, w->last_bucket, w->last_bucket_len,
	              inl != NULL ? inl : hdr, inl != NULL ? inl_len : sizeof(hdr), 0);
	free(inl);
	w->in_bucket = false;
	return rc;
}

int st_bolt_writer_bucket(st_bolt_writer *w, const void *name, size_t len)
{
	if (w == NULL)
		return ST_EINVAL;
	if (w->err != 0)
		return w->err;
	if (name == NULL || len == 0 || len > ST_BOLT_MAX_KEY)
		return ST_EINVAL;
	if (w->have_bucket && keycmp(name, len, w->last_bucket, w->last_bucket_len) <= 0)
		return ST_EINVAL;
	int rc = w->in_bucket ? end_bucket(w) : 0;
	if (rc == 0)
		rc = copy_key(&w->last_bucket, &w->last_bucket_len, name, len);
	if (rc != 0)
		return w->err = rc;
	w->have_bucket = true;
	w->in_bucket = true;
	w->have_key = false;
	return 0;
}

int st_bolt_writer_put(st_bolt_writer *w, const void *k, size_t klen, const void *v, size_t vlen)
{
	if (w == NULL)
		return ST_EINVAL;
	if (w->err != 0)
		return w->err;
	if (!w->in_bucket || k == NULL || klen == 0 || klen > ST_BOLT_MAX_KEY ||
	    vlen > ST_BOLT_MAX_VALUE || (v == NULL && vlen != 0))
		return ST_EINVAL;
	if (w->have_key && keycmp(k, klen, w->last_key, w->last_key_len) <= 0)
		return ST_EINVAL;
	int rc = tree_add(w, &w->bucket, 0, 0, k, klen, v, vlen, 0);
	if (rc == 0)
		rc = copy_key(&w->last_key, &w->last_key_len, k, klen);
	if (rc != 0)
		return w->err = rc;
	w->have_key = true;
	return 0;
}

static void writer_free(st_bolt_writer *w)
{
	tree_free(&w->bucket);
	tree_free(&w->root);
	free(w->out);
	free(w->last_bucket);
	free(w->last_key);
	free(w->path);
	free(w);
}

static void meta_page(uint8_t *p, uint32_t ps, uint64_t id, uint64_t root, uint64_t freelist,
                      uint64_t hw, uint64_t txid)
{
	memset(p, 0, ps);
	st64(p, id);
	st16(p + 8, PF_META);
	st32(p + M_MAGIC, BOLT_MAGIC);
	st32(p + M_VERSION, BOLT_VERSION);
	st32(p + M_PAGESIZE, ps);
	st32(p + M_FLAGS, 0);
	st64(p + M_ROOT, root);
	st64(p + M_SEQ, 0);
	st64(p + M_FREELIST, freelist);
	st64(p + M_PGID, hw);
	st64(p + M_TXID, txid);
	st64(p + M_CHECKSUM, fnv1a64(p + M_MAGIC, META_SUMMED));
}

static int pwrite_all(int fd, const uint8_t *p, size_t n, off_t off)
{
	while (n > 0) {
		ssize_t r = pwrite(fd, p, n, off);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return ST_EIO;
		p += r;
		n -= (size_t)r;
		off += r;
	}
	return 0;
}

int st_bolt_writer_finish(st_bolt_writer *w, uint64_t txid)
{
	if (w == NULL)
		return ST_EINVAL;
	int rc = w->err;
	if (rc == 0 && txid == 0)
		rc = ST_EINVAL;
	if (rc == 0 && w->in_bucket)
		rc = end_bucket(w);
	uint64_t root = 0, freelist = 0;
	uint8_t *inl = NULL;
	size_t inl_len;
	if (rc == 0)
		rc = tree_finish(w, &w->root, false, &root, &inl, &inl_len);
	if (rc == 0) {
		bt_level empty = {0};
		rc = write_page(w, &empty, PF_FREELIST, &freelist);
	}
	if (rc == 0)
		rc = out_flush(w);
	uint8_t *m = rc == 0 ? malloc(w->ps) : NULL;
	if (rc == 0 && m == NULL)
		rc = ST_ENOMEM;
	for (uint64_t t = txid - 1; rc == 0 && t <= txid; t++) {
		meta_page(m, w->ps, t % 2, root, freelist, w->next_pgid, t);
		rc = pwrite_all(w->fd, m, w->ps, (off_t)((t % 2) * w->ps));
	}
	free(m);
	if (rc == 0 && fsync(w->fd) != 0)
		rc = ST_EIO;
	if (close(w->fd) != 0 && rc == 0)
		rc = ST_EIO;
	if (rc != 0)
		unlink(w->path);
	writer_free(w);
	return rc;
}

void st_bolt_writer_abort(st_bolt_writer *w)
{
	if (w == NULL)
		return;
	close(w->fd);
	unlink(w->path);
	writer_free(w);
}

int st_bolt_sha256_append(const char *path)
{
	int fd = open(path, O_RDWR | O_CLOEXEC);
	if (fd < 0)
		return ST_EIO;
	int rc = 0;
	size_t bufsz = (size_t)1 << 20;
	uint8_t *buf = malloc(bufsz);
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	if (buf == NULL || ctx == NULL)
		rc = ST_ENOMEM;
	if (rc == 0 && EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) != 1)
		rc = ST_ENOMEM;
	off_t off = 0;
	while (rc == 0) {
		ssize_t r = pread(fd, buf, bufsz, off);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			rc = ST_EIO;
		if (r <= 0)
			break;
		EVP_DigestUpdate(ctx, buf, (size_t)r);
		off += r;
	}
	uint8_t md[32];
	unsigned mdlen = 0;
	if (rc == 0 && (EVP_DigestFinal_ex(ctx, md, &mdlen) != 1 || mdlen != 32))
		rc = ST_EIO;
	if (rc == 0)
		rc = pwrite_all(fd, md, sizeof(md), off);
	if (rc == 0 && fsync(fd) != 0)
		rc = ST_EIO;
	EVP_MD_CTX_free(ctx);
	free(buf);
	if (close(fd) != 0 && rc == 0)
		rc = ST_EIO;
	return rc;
}

/* ------------------------------------------------------------ the reader */

struct st_bolt {
	const uint8_t *data;
	size_t size; /* bbolt bytes (without a trailer) */
	void *map;
	size_t maplen;
	uint32_t ps;
	uint64_t txid, root, freelist, hw;
	char errmsg[256];
};

/* A page (or an inline bucket's page) whose extent is known to be in bounds. */
typedef struct rd_node {
	const uint8_t *p;
	size_t extent;
	uint16_t flags, count;
	uint64_t id; /* 0 for an inline page */
} rd_node;

#define CORRUPT(b, ...) (st_errf((b)->errmsg, sizeof((b)->errmsg), __VA_ARGS__), ST_ECORRUPT)

/* Page @id as a node: in the file, past the metas, below the high-water mark,
 * its header id matching, branch or leaf, elements inside its extent. */
static int rd_page(st_bolt *b, uint64_t id, rd_node *n)
{
	uint64_t npages = b->size / b->ps;
	if (id < 2 || id >= npages || id >= b->hw)
		return CORRUPT(b, "page %llu out of bounds (file has %llu pages, high water %llu)",
		               (unsigned long long)id, (unsigned long long)npages,
		               (unsigned long long)b->hw);
	const uint8_t *p = b->data + id * b->ps;
	uint64_t ovf = ld32(p + 12);
	if (id + ovf >= npages || id + ovf >= b->hw)
		return CORRUPT(b, "page %llu: overflow %llu runs past the end of the file",
		               (unsigned long long)id, (unsigned long long)ovf);
	if (ld64(p) != id)
		return CORRUPT(b, "page %llu: header says page %llu", (unsigned long long)id,
		               (unsigned long long)ld64(p));
	n->p = p;
	n->extent = (size_t)((ovf + 1) * b->ps);
	n->flags = ld16(p + 8);
	n->count = ld16(p + 10);
	n->id = id;
	if (n->flags != PF_BRANCH && n->flags != PF_LEAF)
		return CORRUPT(b, "page %llu: not a branch or leaf page (flags 0x%x)",
		               (unsigned long long)id, n->flags);
	if (PAGE_HDR + (size_t)n->count * ELEM_SIZE > n->extent)
		return CORRUPT(b, "page %llu: %u elements do not fit", (unsigned long long)id,
		               n->count);
	return 0;
}

/* Element @i of node @n: key (and, for a leaf, value and flags; for a branch,
 * the child page id), bounds-checked. */
static int rd_elem(st_bolt *b, const rd_node *n, size_t i, const uint8_t **k, size_t *klen,
                   const uint8_t **v, size_t *vlen, uint32_t *flags, uint64_t *child)
{
	const uint8_t *e = n->p + PAGE_HDR + i * ELEM_SIZE;
	uint64_t off = (uint64_t)(PAGE_HDR + i * ELEM_SIZE);
	uint64_t pos, ks, vs = 0;
	if (n->flags == PF_LEAF) {
		*flags = ld32(e);
		pos = ld32(e + 4);
		ks = ld32(e + 8);
		vs = ld32(e + 12);
	} else {
		pos = ld32(e);
		ks = ld32(e + 4);
		*child = ld64(e + 8);
	}
	if (off + pos + ks + vs > n->extent)
		return CORRUPT(b, "page %llu: element %zu points outside the page",
		               (unsigned long long)n->id, i);
	*k = n->p + off + pos;
	*klen = (size_t)ks;
	if (v != NULL) {
		*v = *k + ks;
		*vlen = (size_t)vs;
	}
	return 0;
}

/* The node a bucket value refers to: its root page, or the inline page in it. */
static int rd_bucket_root(st_bolt *b, const uint8_t *v, size_t vlen, rd_node *n)
{
	if (vlen < BUCKET_HDR)
		return CORRUPT(b, "bucket value of %zu bytes is shorter than its header", vlen);
	uint64_t root = ld64(v);
	if (root != 0)
		return rd_page(b, root, n);
	if (vlen < BUCKET_HDR + PAGE_HDR)
		return CORRUPT(b, "inline bucket value of %zu bytes holds no page", vlen);
	n->p = v + BUCKET_HDR;
	n->extent = vlen - BUCKET_HDR;
	n->flags = ld16(n->p + 8);
	n->count = ld16(n->p + 10);
	n->id = 0;
	if (n->flags != PF_LEAF)
		return CORRUPT(b, "inline bucket page is not a leaf (flags 0x%x)", n->flags);
	if (PAGE_HDR + (size_t)n->count * ELEM_SIZE > n->extent)
		return CORRUPT(b, "inline bucket: %u elements do not fit", n->count);
	return 0;
}

/* Walk state of an in-order traversal. */
typedef struct rd_walk {
	st_bolt_visit fn;
	void *arg;
	uint8_t *seen; /* one bit per page: a page reached twice is a cycle/shared page */
	const uint8_t *last;
	size_t last_len;
	bool have_last;
	bool with_flags_bucket_only; /* visiting the root: report bucket elements only */
} rd_walk;

static int rd_walk_node(st_bolt *b, const rd_node *n, rd_walk *wk, int depth)
{
	if (n->id != 0) {
		uint64_t id = n->id;
		if (wk->seen[id / 8] & (1u << (id % 8)))
			return CORRUPT(b, "page %llu is reached twice (cyclic or shared pointer)",
			               (unsigned long long)id);
		wk->seen[id / 8] |= (uint8_t)(1u << (id % 8));
	}
	for (size_t i = 0; i < n->count; i++) {
		const uint8_t *k, *v = NULL;
		size_t klen, vlen = 0;
		uint32_t flags = 0;
		uint64_t child = 0;
		int rc = rd_elem(b, n, i, &k, &klen, n->flags == PF_LEAF ? &v : NULL, &vlen, &flags,
		                 &child);
		if (rc != 0)
			return rc;
		if (n->flags == PF_BRANCH) {
			if (depth + 1 >= MAX_DEPTH)
				return CORRUPT(b, "tree deeper than %d levels", MAX_DEPTH);
			rd_node c;
			rc = rd_page(b, child, &c);
			if (rc == 0)
				rc = rd_walk_node(b, &c, wk, depth + 1);
			if (rc != 0)
				return rc;
			continue;
		}
		if (wk->have_last && keycmp(k, klen, wk->last, wk->last_len) <= 0)
			return CORRUPT(b, "page %llu: keys out of order",
			               (unsigned long long)n->id);
		wk->last = k;
		wk->last_len = klen;
		wk->have_last = true;
		if (wk->with_flags_bucket_only && !(flags & LEAF_BUCKET))
			continue;
		rc = wk->fn(wk->arg, k, klen, wk->with_flags_bucket_only ? NULL : v,
		            wk->with_flags_bucket_only ? 0 : vlen);
		if (rc != 0)
			return rc;
	}
	return 0;
}

static int rd_walk_tree(st_bolt *b, const rd_node *root, bool buckets_only, st_bolt_visit fn,
                        void *arg)
{
	rd_walk wk = {.fn = fn, .arg = arg, .with_flags_bucket_only = buckets_only};
	wk.seen = calloc(1, (size_t)(b->size / b->ps / 8 + 1));
	if (wk.seen == NULL)
		return ST_ENOMEM;
	int rc = rd_walk_node(b, root, &wk, 0);
	free(wk.seen);
	return rc;
}

/* Find @k in the tree under @n: ST_ENOTFOUND or 0 with the leaf element. */
static int rd_search(st_bolt *b, rd_node n, const void *k, size_t klen, const uint8_t **v,
                     size_t *vlen, uint32_t *flags)
{
	for (int depth = 0;; depth++) {
		if (depth >= MAX_DEPTH)
			return CORRUPT(b, "tree deeper than %d levels", MAX_DEPTH);
		/* binary search: first element with key >= k */
		size_t lo = 0, hi = n.count;
		const uint8_t *ek, *ev;
		size_t eklen, evlen;
		uint32_t ef = 0;
		uint64_t child = 0;
		int rc;
		while (lo < hi) {
			size_t mid = lo + (hi - lo) / 2;
			rc = rd_elem(b, &n, mid, &ek, &eklen, NULL, NULL, &ef, &child);
			if (rc != 0)
				return rc;
			if (keycmp(ek, eklen, k, klen) < 0)
				lo = mid + 1;
			else
				hi = mid;
		}
		if (n.flags == PF_LEAF) {
			if (lo == n.count)
				return ST_ENOTFOUND;
			rc = rd_elem(b, &n, lo, &ek, &eklen, &ev, &evlen, &ef, &child);
			if (rc != 0)
				return rc;
			if (keycmp(ek, eklen, k, klen) != 0)
				return ST_ENOTFOUND;
			*v = ev;
			*vlen = evlen;
			*flags = ef;
			return 0;
		}
		if (n.count == 0)
			return CORRUPT(b, "page %llu: empty branch page", (unsigned long long)n.id);
		/* the child whose first key is <= k (the first child when none is) */
		size_t idx = lo;
		if (idx < n.count) {
			rc = rd_elem(b, &n, idx, &ek, &eklen, NULL, NULL, &ef, &child);
			if (rc != 0)
				return rc;
			if (keycmp(ek, eklen, k, klen) != 0 && idx > 0)
				idx--;
		} else {
			idx--;
		}
		rc = rd_elem(b, &n, idx, &ek, &eklen, NULL, NULL, &ef, &child);
		if (rc == 0)
			rc = rd_page(b, child, &n);
		if (rc != 0)
			return rc;
	}
}

/* Top-level bucket @name's root node. */
static int rd_bucket(st_bolt *b, const void *name, size_t len, rd_node *n)
{
	rd_node root;
	const uint8_t *v;
	size_t vlen;
	uint32_t flags;
	int rc = rd_page(b, b->root, &root);
	if (rc == 0)
		rc = rd_search(b, root, name, len, &v, &vlen, &flags);
	if (rc == 0 && !(flags & LEAF_BUCKET))
		rc = ST_ENOTFOUND;
	if (rc == 0)
		rc = rd_bucket_root(b, v, vlen, n);
	return rc;
}

int st_bolt_foreach(st_bolt *b, const void *bucket, size_t blen, st_bolt_visit fn, void *arg)
{
	if (b == NULL || fn == NULL || (bucket == NULL && blen != 0))
		return ST_EINVAL;
	rd_node n;
	int rc = rd_bucket(b, bucket, blen, &n);
	if (rc == 0)
		rc = rd_walk_tree(b, &n, false, fn, arg);
	return rc;
}

int st_bolt_buckets(st_bolt *b, st_bolt_visit fn, void *arg)
{
	if (b == NULL || fn == NULL)
		return ST_EINVAL;
	rd_node n;
	int rc = rd_page(b, b->root, &n);
	if (rc == 0)
		rc = rd_walk_tree(b, &n, true, fn, arg);
	return rc;
}

int st_bolt_get(st_bolt *b, const void *bucket, size_t blen, const void *k, size_t klen,
                const uint8_t **v, size_t *vlen)
{
	if (b == NULL || v == NULL || vlen == NULL || (bucket == NULL && blen != 0) ||
	    (k == NULL && klen != 0))
		return ST_EINVAL;
	rd_node n;
	uint32_t flags;
	int rc = rd_bucket(b, bucket, blen, &n);
	if (rc == 0)
		rc = rd_search(b, n, k, klen, v, vlen, &flags);
	if (rc == 0 && (flags & LEAF_BUCKET))
		rc = ST_ENOTFOUND;
	return rc;
}

static int count_one(void *arg, const uint8_t *k, size_t klen, const uint8_t *v, size_t vlen)
{
	(void)k, (void)klen, (void)v, (void)vlen;
	(*(uint64_t *)arg)++;
	return 0;
}

int st_bolt_count(st_bolt *b, const void *bucket, size_t blen, uint64_t *n)
{
	if (n == NULL)
		return ST_EINVAL;
	*n = 0;
	return st_bolt_foreach(b, bucket, blen, count_one, n);
}

/* Meta page at @off checked as bbolt does (magic, version, checksum; a zero
 * checksum is accepted like bbolt); 0, ST_ECORRUPT or ST_EFORMAT with @why. */
static int check_meta(const uint8_t *data, size_t size, size_t off, char *why, size_t whylen)
{
	if (off + PAGE_HDR + META_SIZE > size) {
		st_errf(why, whylen, "beyond the end of the file");
		return ST_ECORRUPT;
	}
	const uint8_t *p = data + off;
	if (ld32(p + M_MAGIC) != BOLT_MAGIC) {
		st_errf(why, whylen, "bad magic 0x%08x", ld32(p + M_MAGIC));
		return ST_ECORRUPT;
	}
	if (ld32(p + M_VERSION) != BOLT_VERSION) {
		st_errf(why, whylen, "version %u, want %d", ld32(p + M_VERSION), BOLT_VERSION);
		return ST_EFORMAT;
	}
	uint64_t sum = ld64(p + M_CHECKSUM);
	if (sum != 0 && sum != fnv1a64(p + M_MAGIC, META_SUMMED)) {
		st_errf(why, whylen, "checksum mismatch");
		return ST_ECORRUPT;
	}
	return 0;
}

static bool page_size_ok(uint32_t ps)
{
	return ps >= 512 && ps <= (1u << 20) && (ps & (ps - 1)) == 0;
}

/* Pick the meta page as bbolt does and check what it points at. */
static int rd_init(st_bolt *b, unsigned flags, const char *what, char *err, size_t errlen)
{
	size_t size = b->size;
	if (size % 512 == ST_BOLT_SHA256_TRAILER && size > ST_BOLT_SHA256_TRAILER) {
		size -= ST_BOLT_SHA256_TRAILER;
		if (flags & ST_BOLT_SNAPSHOT) {
			uint8_t md[32];
			unsigned mdlen = 0;
			if (EVP_Digest(b->data, size, md, &mdlen, EVP_sha256(), NULL) != 1)
				return ST_ENOMEM;
			if (memcmp(md, b->data + size, sizeof(md)) != 0) {
				st_errf(err, errlen, "%s: sha256 trailer mismatch", what);
				return ST_ECORRUPT;
			}
		}
		b->size = size;
	}
	char why0[96] = "", why1[96] = "";
	int rc0 = check_meta(b->data, size, 0, why0, sizeof(why0));
	uint32_t ps = rc0 == 0 ? ld32(b->data + M_PAGESIZE) : 0;
	if (rc0 == 0 && !page_size_ok(ps)) {
		st_errf(why0, sizeof(why0), "page size %u unsupported", ps);
		rc0 = ST_ECORRUPT;
	}
	int rc1 = ST_ECORRUPT;
	if (rc0 == 0) {
		rc1 = check_meta(b->data, size, ps, why1, sizeof(why1));
		if (rc1 == 0 && ld32(b->data + ps + M_PAGESIZE) != ps) {
			st_errf(why1, sizeof(why1), "page size differs from meta 0");
			rc1 = ST_ECORRUPT;
		}
	} else {
		/* meta 0 is unreadable: look for meta 1 at each plausible page size */
		st_errf(why1, sizeof(why1), "not found at any page size");
		for (uint32_t cand = 512; cand <= (1u << 16); cand *= 2) {
			char w[96];
			int rc = check_meta(b->data, size, cand, w, sizeof(w));
			if (rc == 0 && ld32(b->data + cand + M_PAGESIZE) == cand) {
				ps = cand;
				rc1 = 0;
				break;
			}
			if (rc == ST_EFORMAT)
				rc1 = rc, snprintf(why1, sizeof(why1), "%s", w);
		}
	}
	if (rc0 != 0 && rc1 != 0) {
		int rc = (rc0 == ST_EFORMAT || rc1 == ST_EFORMAT) ? ST_EFORMAT : ST_ECORRUPT;
		if (strncmp(why0, "bad magic", 9) == 0 && rc1 == ST_ECORRUPT)
			st_errf(err, errlen,
			        "%s: not a bbolt file (meta page 0: %s; meta page 1: %s)", what,
			        why0, why1);
		else
			st_errf(err, errlen,
			        "%s: no valid meta page (meta page 0: %s; meta page 1: %s)", what,
			        why0, why1);
		return rc;
	}
	const uint8_t *m0 = b->data, *m1 = b->data + ps, *m;
	if (rc0 == 0 && rc1 == 0)
		m = ld64(m1 + M_TXID) > ld64(m0 + M_TXID) ? m1 : m0;
	else
		m = rc0 == 0 ? m0 : m1;
	b->ps = ps;
	b->txid = ld64(m + M_TXID);
	b->root = ld64(m + M_ROOT);
	b->freelist = ld64(m + M_FREELIST);
	b->hw = ld64(m + M_PGID);
	if (size < 2 * (size_t)ps) {
		st_errf(err, errlen, "%s: file of %zu bytes is smaller than two pages", what, size);
		return ST_ECORRUPT;
	}
	if (b->hw > size / ps) {
		st_errf(err, errlen,
		        "%s: truncated: the meta page's high water mark is page %llu, the file "
		        "holds %zu pages of %u bytes",
		        what, (unsigned long long)b->hw, size / ps, ps);
		return ST_ECORRUPT;
	}
	rd_node n;
	int rc = rd_page(b, b->root, &n);
	if (rc == 0 && b->freelist != PGID_NO_FREELIST) {
		uint64_t fl = b->freelist;
		const uint8_t *p = b->data + fl * ps;
		if (fl < 2 || fl >= b->hw || fl + ld32(p + 12) >= b->hw)
			rc = CORRUPT(b, "freelist page %llu out of bounds", (unsigned long long)fl);
		else if (ld16(p + 8) != PF_FREELIST)
			rc = CORRUPT(b, "page %llu is not a freelist page", (unsigned long long)fl);
		else {
			uint64_t cnt = ld16(p + 10), extra = 0;
			if (cnt == 0xFFFF) {
				cnt = ld64(p + PAGE_HDR);
				extra = 1;
			}
			if (cnt > (uint64_t)(ld32(p + 12) + 1) * ps / 8 ||
			    PAGE_HDR + (cnt + extra) * 8 > (uint64_t)(ld32(p + 12) + 1) * ps)
				rc = CORRUPT(b, "freelist page %llu: %llu ids do not fit",
				             (unsigned long long)fl, (unsigned long long)cnt);
		}
	}
	if (rc != 0) {
		st_errf(err, errlen, "%s: %s", what, b->errmsg);
		return rc;
	}
	b->errmsg[0] = '\0';
	return 0;
}

int st_bolt_open_mem(const void *buf, size_t len, unsigned flags, st_bolt **out, char *err,
                     size_t errlen)
{
	if (out == NULL || (buf == NULL && len != 0))
		return ST_EINVAL;
	st_bolt *b = calloc(1, sizeof(*b));
	if (b == NULL)
		return ST_ENOMEM;
	b->data = buf;
	b->size = len;
	int rc = rd_init(b, flags, "bbolt image", err, errlen);
	if (rc != 0) {
		free(b);
		return rc;
	}
	*out = b;
	return 0;
}

int st_bolt_open(const char *path, st_bolt **out, char *err, size_t errlen)
{
	return st_bolt_open_flags(path, 0, out, err, errlen);
}

int st_bolt_open_flags(const char *path, unsigned flags, st_bolt **out, char *err, size_t errlen)
{
	if (path == NULL || out == NULL)
		return ST_EINVAL;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		st_errf(err, errlen, "%s: %s", path, strerror(errno));
		return errno == ENOENT ? ST_ENOTFOUND : ST_EIO;
	}
	struct stat st;
	if (fstat(fd, &st) != 0) {
		st_errf(err, errlen, "%s: %s", path, strerror(errno));
		close(fd);
		return ST_EIO;
	}
	if (st.st_size == 0) {
		st_errf(err, errlen, "%s: empty file, not a bbolt file", path);
		close(fd);
		return ST_ECORRUPT;
	}
	void *map = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
	close(fd);
	if (map == MAP_FAILED) {
		st_errf(err, errlen, "%s: mmap: %s", path, strerror(errno));
		return ST_EIO;
	}
	st_bolt *b = calloc(1, sizeof(*b));
	if (b == NULL) {
		munmap(map, (size_t)st.st_size);
		return ST_ENOMEM;
	}
	b->data = map;
	b->size = (size_t)st.st_size;
	b->map = map;
	b->maplen = (size_t)st.st_size;
	int rc = rd_init(b, flags, path, err, errlen);
	if (rc != 0) {
		st_bolt_close(b);
		return rc;
	}
	*out = b;
	return 0;
}

const char *st_bolt_errmsg(const st_bolt *b)
{
	return b != NULL ? b->errmsg : "";
}
uint64_t st_bolt_txid(const st_bolt *b)
{
	return b->txid;
}
size_t st_bolt_size(const st_bolt *b)
{
	return b->size;
}
uint32_t st_bolt_page_size(const st_bolt *b)
{
	return b->ps;
}

void st_bolt_close(st_bolt *b)
{
	if (b == NULL)
		return;
	if (b->map != NULL)
		munmap(b->map, b->maplen);
	free(b);
}
