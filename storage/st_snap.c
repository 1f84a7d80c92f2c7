/*
 * st_snap: Raft snapshot images of the replicated state (st_snap.h has the
 * contract, docs/disk-format.md "Raft snapshot image" the bytes).
 *
 *   header   magic "\x89MSSNAP\n" | BE32 version | BE32 flags (0) | BE64 applied
 *   records  family id (1 byte, 1..4) | varint klen | key | varint vlen | value
 *   trailer  00 | BE64 record count | BE64 XXH64(seed 0) of every byte before it
 *
 * Create walks one RocksDB snapshot family by family in key order and appends
 * records to an output that is either one growing buffer or a file flushed in
 * 1 MiB chunks. Install reads the image through an input that is either the
 * caller's buffer or a file read in chunks, builds ONE write batch (range
 * deletes of what the image replaces, then its records, the log base and the
 * hard state) and writes it only once the whole image checked out.
 *
 * XXH64 is written here (the public algorithm, xxhash.com spec) rather than
 * linked: RocksDB carries a copy but does not export it as API.
 */
#include <errno.h>
#include <stdio.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "internal.pb-c.h"
#include "storage/st_internal.h"
#include "storage/st_snap.h"

/* Exclusive end of the ST_META_REPL_PREFIX keys: the prefix with its last byte
 * incremented ('.' + 1 = '/'). */
#define REPL_END "ms.r/"

static const uint8_t snap_magic[8] = {0x89, 'M', 'S', 'S', 'N', 'A', 'P', '\n'};
#define HDR_LEN     24
#define TRAILER_LEN 17 /* end tag, count, checksum */
#define CHUNK       (1u << 20)
/* Longest key or value accepted from an image (far above etcd's request limit;
 * it only bounds what a damaged length field can make us allocate). */
#define MAX_FIELD (256u << 20)

/* Family ids in the image (fixed by the format, independent of ST_CF_*). */
enum { FAM_END = 0, FAM_META = 1, FAM_KV = 2, FAM_REV = 3, FAM_LEASE = 4, FAM__COUNT };
static const int fam_cf[FAM__COUNT] = {-1, ST_CF_DEFAULT, ST_CF_KV, ST_CF_REV, ST_CF_LEASE};

/* ---- XXH64 ------------------------------------------------------------ */

#define XP1 0x9E3779B185EBCA87ULL
#define XP2 0xC2B2AE3D27D4EB4FULL
#define XP3 0x165667B19E3779F9ULL
#define XP4 0x85EBCA77C2B2AE63ULL
#define XP5 0x27D4EB2F165667C5ULL

typedef struct xxh64 {
	uint64_t v[4];
	uint64_t total;
	uint8_t mem[32];
	size_t memsize;
} xxh64;

static uint64_t rotl64(uint64_t x, int r)
{
	return (x << r) | (x >> (64 - r));
}

static uint64_t rd_le64(const uint8_t *p)
{
	uint64_t v = 0;
	for (int i = 7; i >= 0; i--)
		v = (v << 8) | p[i];
	return v;
}

static uint64_t rd_le32(const uint8_t *p)
{
	return (uint64_t)p[0] | (uint64_t)p[1] << 8 | (uint64_t)p[2] << 16 | (uint64_t)p[3] << 24;
}

static uint64_t xround(uint64_t acc, uint64_t in)
{
	acc += in * XP2;
	acc = rotl64(acc, 31);
	return acc * XP1;
}

static uint64_t xmerge(uint64_t h, uint64_t v)
{
	h ^= xround(0, v);
	return h * XP1 + XP4;
}

static void xxh_init(xxh64 *s)
{
	memset(s, 0, sizeof(*s));
	s->v[0] = XP1 + XP2;
	s->v[1] = XP2;
	s->v[2] = 0;
	s->v[3] = 0 - XP1;
}

static void xxh_stripe(xxh64 *s, const uint8_t *p)
{
	for (int i = 0; i < 4; i++)
		s->v[i] = xround(s->v[i], rd_le64(p + 8 * i));
}

static void xxh_update(xxh64 *s, const uint8_t *p, size_t n)
{
	s->total += n;
	if (s->memsize + n < 32) {
		memcpy(s->mem + s->memsize, p, n);
		s->memsize += n;
		return;
	}
	if (s->memsize > 0) {
		size_t fill = 32 - s->memsize;
		memcpy(s->mem + s->memsize, p, fill);
		xxh_stripe(s, s->mem);
		p += fill;
		n -= fill;
		s->memsize = 0;
	}
	for (; n >= 32; p += 32, n -= 32)
		xxh_stripe(s, p);
	memcpy(s->mem, p, n);
	s->memsize = n;
}

static uint64_t xxh_digest(const xxh64 *s)
{
	uint64_t h;
	if (s->total >= 32) {
		h = rotl64(s->v[0], 1) + rotl64(s->v[1], 7) + rotl64(s->v[2], 12) +
		    rotl64(s->v[3], 18);
		for (int i = 0; i < 4; i++)
			h = xmerge(h, s->v[i]);
	} else {
		h = s->v[2] + XP5; /* v[2] is the seed until a stripe is consumed */
	}
	h += s->total;
	const uint8_t *p = s->mem;
	size_t n = s->memsize;
	for (; n >= 8; p += 8, n -= 8) {
		h ^= xround(0, rd_le64(p));
		h = rotl64(h, 27) * XP1 + XP4;
	}
	if (n >= 4) {
		h ^= rd_le32(p) * XP1;
		h = rotl64(h, 23) * XP2 + XP3;
		p += 4;
		n -= 4;
	}
	for (; n > 0; p++, n--) {
		h ^= (uint64_t)*p * XP5;
		h = rotl64(h, 11) * XP1;
	}
	h ^= h >> 33;
	h *= XP2;
	h ^= h >> 29;
	h *= XP3;
	h ^= h >> 32;
	return h;
}

/* st__snap_xxh64 - XXH64 (seed 0) of @p/@n; exported for the unit tests only. */
uint64_t st__snap_xxh64(const void *p, size_t n);
uint64_t st__snap_xxh64(const void *p, size_t n)
{
	xxh64 s;
	xxh_init(&s);
	xxh_update(&s, p, n);
	return xxh_digest(&s);
}

/* ---- output: one buffer, or a file written in chunks ------------------- */

typedef struct snap_out {
	uint8_t *p;
	size_t len, cap;
	int fd;         /* -1: the whole image stays in p */
	uint64_t total; /* bytes emitted so far */
	xxh64 h;        /* file mode: hash of what was flushed */
	int err;
} snap_out;

static int write_all(int fd, const uint8_t *p, size_t n)
{
	while (n > 0) {
		ssize_t w = write(fd, p, n);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			return ST_EIO;
		}
		p += (size_t)w;
		n -= (size_t)w;
	}
	return ST_OK;
}

static void out_flush(snap_out *o)
{
	if (o->err != ST_OK || o->fd < 0 || o->len == 0)
		return;
	xxh_update(&o->h, o->p, o->len);
	o->err = write_all(o->fd, o->p, o->len);
	o->len = 0;
}

static void out_add(snap_out *o, const void *d, size_t n)
{
	if (o->err != ST_OK)
		return;
	if (o->len + n > o->cap) {
		size_t cap = o->cap ? o->cap : o->fd >= 0 ? CHUNK : 64 * 1024;
		while (cap < o->len + n)
			cap = cap / 2 * 3;
		uint8_t *np = realloc(o->p, cap);
		if (np == NULL) {
			o->err = ST_ENOMEM;
			return;
		}
		o->p = np;
		o->cap = cap;
	}
	memcpy(o->p + o->len, d, n);
	o->len += n;
	o->total += n;
	if (o->fd >= 0 && o->len >= CHUNK)
		out_flush(o);
}

static size_t varint_put(uint8_t *p, uint64_t v)
{
	size_t n = 0;
	while (v >= 0x80) {
		p[n++] = (uint8_t)(v | 0x80);
		v >>= 7;
	}
	p[n++] = (uint8_t)v;
	return n;
}

static void out_record(snap_out *o, uint8_t fam, const void *k, size_t kl, const void *v, size_t vl)
{
	uint8_t h[1 + 10];
	h[0] = fam;
	size_t n = 1 + varint_put(h + 1, kl);
	out_add(o, h, n);
	out_add(o, k, kl);
	n = varint_put(h, vl);
	out_add(o, h, n);
	out_add(o, v, vl);
}

/* ---- create ----------------------------------------------------------- */

static int iter_err(rocksdb_iterator_t *it)
{
	char *err = NULL;
	rocksdb_iter_get_error(it, &err);
	if (err == NULL)
		return ST_OK;
	int rc = st__rocks_err(err);
	free(err);
	return rc == ST_ENOTFOUND ? ST_EIO : rc;
}

/* Emit the records of family @fam from @ro's snapshot: all of it, or only the
 * keys in [@lo, @hi) when @lo is non-NULL. */
static int emit_family(st_db *db, const rocksdb_readoptions_t *ro, uint8_t fam, const char *lo,
                       const char *hi, snap_out *o, uint64_t *count)
{
	rocksdb_iterator_t *it = rocksdb_create_iterator_cf(db->rdb, ro, db->cf[fam_cf[fam]]);
	if (it == NULL)
		return ST_ENOMEM;
	size_t hl = hi != NULL ? strlen(hi) : 0;
	if (lo != NULL)
		rocksdb_iter_seek(it, lo, strlen(lo));
	else
		rocksdb_iter_seek_to_first(it);
	for (; rocksdb_iter_valid(it) && o->err == ST_OK; rocksdb_iter_next(it)) {
		size_t kl, vl;
		const char *k = rocksdb_iter_key(it, &kl);
		if (hi != NULL) {
			size_t m = kl < hl ? kl : hl;
			int c = memcmp(k, hi, m);
			if (c > 0 || (c == 0 && kl >= hl))
				break;
		}
		const char *v = rocksdb_iter_value(it, &vl);
		out_record(o, fam, k, kl, v, vl);
		(*count)++;
	}
	int rc = o->err != ST_OK ? o->err : iter_err(it);
	rocksdb_iter_destroy(it);
	return rc;
}

/* Serialise the replicated state into @o (up to, not including, the checksum). */
static int snap_write(st_db *db, snap_out *o, uint64_t *applied)
{
	rocksdb_readoptions_t *ro = st__readopts();
	if (ro == NULL)
		return ST_ENOMEM;
	/* A full scan must not evict the working set from the block cache. */
	rocksdb_readoptions_set_fill_cache(ro, 0);
	pthread_mutex_lock(&db->mu);
	const rocksdb_snapshot_t *snap = rocksdb_create_snapshot(db->rdb);
	pthread_mutex_unlock(&db->mu);
	rocksdb_readoptions_set_snapshot(ro, snap);

	int rc = ST_OK;
	char *err = NULL;
	size_t kvl = 0;
	char *kvs = rocksdb_get_cf(db->rdb, ro, db->cf[ST_CF_DEFAULT], ST_META_KVSTATE,
	                           strlen(ST_META_KVSTATE), &kvl, &err);
	if (err != NULL) {
		rc = st__rocks_err(err);
		if (rc == ST_ENOTFOUND)
			rc = ST_EIO;
		free(err);
	} else if (kvs == NULL || kvl != 32) {
		rc = ST_ECORRUPT;
	}
	uint64_t count = 0;
	if (rc == ST_OK) {
		uint8_t hdr[HDR_LEN];
		memcpy(hdr, snap_magic, 8);
		st_put_be64(hdr + 8, (uint64_t)ST_SNAP_VERSION << 32); /* version, flags 0 */
		*applied = st_get_be64((const uint8_t *)kvs);
		st_put_be64(hdr + 16, *applied);
		out_add(o, hdr, HDR_LEN);
		out_record(o, FAM_META, ST_META_KVSTATE, strlen(ST_META_KVSTATE), kvs, kvl);
		count++;
		rc = o->err;
	}
	free(kvs);
	if (rc == ST_OK)
		rc = emit_family(db, ro, FAM_META, ST_META_REPL_PREFIX, REPL_END, o, &count);
	for (uint8_t fam = FAM_KV; fam < FAM__COUNT && rc == ST_OK; fam++)
		rc = emit_family(db, ro, fam, NULL, NULL, o, &count);
	if (rc == ST_OK) {
		uint8_t t[9];
		t[0] = FAM_END;
		st_put_be64(t + 1, count);
		out_add(o, t, 9);
		rc = o->err;
	}
	rocksdb_readoptions_destroy(ro);
	rocksdb_release_snapshot(db->rdb, snap);
	return rc;
}

int st_snap_create(st_db *db, uint8_t **buf, size_t *len, uint64_t *applied)
{
	snap_out o = {.fd = -1};
	uint64_t a = 0;
	*buf = NULL;
	*len = 0;
	int rc = snap_write(db, &o, &a);
	if (rc == ST_OK) {
		uint8_t h[8];
		st_put_be64(h, st__snap_xxh64(o.p, o.len));
		out_add(&o, h, 8);
		rc = o.err;
	}
	if (rc != ST_OK) {
		free(o.p);
		return rc;
	}
	uint8_t *fit = realloc(o.p, o.len); /* give back the growth slack */
	*buf = fit != NULL ? fit : o.p;
	*len = o.len;
	if (applied != NULL)
		*applied = a;
	return ST_OK;
}

static int errno_st(int e)
{
	switch (e) {
	case EACCES:
	case EPERM:
	case EROFS:
		return ST_EPERM;
	case ENOENT:
	case ENOTDIR:
		return ST_ENOTFOUND;
	case ENOMEM:
		return ST_ENOMEM;
	default:
		return ST_EIO;
	}
}

int st_snap_create_to_file(st_db *db, const char *path, uint64_t *len, uint64_t *applied)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		return errno_st(errno);
	snap_out o = {.fd = fd};
	xxh_init(&o.h);
	uint64_t a = 0;
	int rc = snap_write(db, &o, &a);
	out_flush(&o);
	if (rc == ST_OK)
		rc = o.err;
	if (rc == ST_OK) {
		uint8_t h[8];
		st_put_be64(h, xxh_digest(&o.h));
		rc = write_all(fd, h, 8);
		o.total += 8;
	}
	if (rc == ST_OK && fsync(fd) != 0)
		rc = ST_EIO;
	if (close(fd) != 0 && rc == ST_OK)
		rc = ST_EIO;
	free(o.p);
	if (rc != ST_OK) {
		unlink(path);
		return rc;
	}
	if (len != NULL)
		*len = o.total;
	if (applied != NULL)
		*applied = a;
	return ST_OK;
}

/* ---- input: the caller's buffer, or a file read in chunks -------------- */

typedef struct snap_in {
	const uint8_t *p; /* buffer mode: the image */
	uint64_t body;    /* bytes before the checksum */
	uint64_t off;     /* body bytes consumed */
	int fd;           /* -1: buffer mode */
	uint64_t fpos;    /* file mode: body bytes read from the file */
	uint8_t *fb;      /* file mode: window [fs, fe) of unconsumed bytes */
	size_t fcap, fs, fe;
	xxh64 h;     /* file mode: hash of the body bytes read */
	uint8_t *kb; /* file mode: copy of the current record's key */
	size_t kcap;
} snap_in;

/* Point *@out at the next @n body bytes (valid until the next call). Returns 0,
 * ST_ECORRUPT (past the end of the body), ST_EIO or ST_ENOMEM. */
static int in_take(snap_in *in, size_t n, const uint8_t **out)
{
	if (n > in->body - in->off)
		return ST_ECORRUPT;
	if (in->fd < 0) {
		*out = in->p + in->off;
		in->off += n;
		return ST_OK;
	}
	while (in->fe - in->fs < n) {
		if (in->fs > 0)
			memmove(in->fb, in->fb + in->fs, in->fe - in->fs);
		in->fe -= in->fs;
		in->fs = 0;
		if (in->fcap < n || in->fcap == 0) {
			size_t cap = n > CHUNK ? n : CHUNK;
			uint8_t *nb = realloc(in->fb, cap);
			if (nb == NULL)
				return ST_ENOMEM;
			in->fb = nb;
			in->fcap = cap;
		}
		size_t want = in->fcap - in->fe;
		if (want > in->body - in->fpos)
			want = (size_t)(in->body - in->fpos);
		ssize_t r = read(in->fd, in->fb + in->fe, want);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return ST_EIO;
		if (r == 0)
			return ST_ECORRUPT; /* the file shrank under us */
		xxh_update(&in->h, in->fb + in->fe, (size_t)r);
		in->fe += (size_t)r;
		in->fpos += (uint64_t)r;
	}
	*out = in->fb + in->fs;
	in->fs += n;
	in->off += n;
	return ST_OK;
}

static int in_varint(snap_in *in, uint64_t *v)
{
	*v = 0;
	for (int shift = 0; shift < 64; shift += 7) {
		const uint8_t *b;
		int rc = in_take(in, 1, &b);
		if (rc != ST_OK)
			return rc;
		*v |= (uint64_t)(*b & 0x7f) << shift;
		if (!(*b & 0x80))
			return ST_OK;
	}
	return ST_ECORRUPT;
}

/* Check magic, version and flags; *@applied = the header's applied index. */
static int in_header(snap_in *in, uint64_t *applied)
{
	if (in->body < HDR_LEN + TRAILER_LEN - 8)
		return ST_ECORRUPT;
	const uint8_t *h;
	int rc = in_take(in, HDR_LEN, &h);
	if (rc != ST_OK)
		return rc;
	if (memcmp(h, snap_magic, 8) != 0)
		return ST_ECORRUPT;
	uint64_t vf = st_get_be64(h + 8);
	if (vf >> 32 != ST_SNAP_VERSION || (uint32_t)vf != 0)
		return ST_EFORMAT;
	*applied = st_get_be64(h + 16);
	return ST_OK;
}

static bool has_prefix(const uint8_t *k, size_t kl, const char *pfx)
{
	size_t pl = strlen(pfx);
	return kl >= pl && memcmp(k, pfx, pl) == 0;
}

static bool key_is(const uint8_t *k, size_t kl, const char *name)
{
	return kl == strlen(name) && memcmp(k, name, kl) == 0;
}

/*
 * Read every record after the header up to and including the record count,
 * checking structure; when @db is set, put each record into @b. *@kv receives
 * the image's keyspace state. Returns 0 or ST_ECORRUPT / ST_EIO / ST_ENOMEM.
 */
static int in_records(snap_in *in, st_db *db, rocksdb_writebatch_t *b, uint64_t hdr_applied,
                      st_kv_state *kv)
{
	uint64_t count = 0;
	bool have_kv = false;
	for (;;) {
		const uint8_t *fam, *k, *v;
		uint64_t kl, vl;
		int rc = in_take(in, 1, &fam);
		if (rc != ST_OK)
			return rc;
		if (*fam == FAM_END)
			break;
		if (*fam >= FAM__COUNT)
			return ST_ECORRUPT;
		uint8_t f = *fam;
		if ((rc = in_varint(in, &kl)) != ST_OK)
			return rc;
		if (kl > MAX_FIELD)
			return ST_ECORRUPT;
		if ((rc = in_take(in, (size_t)kl, &k)) != ST_OK)
			return rc;
		/* file mode: the key must survive the value's take (the window may move) */
		if (in->fd >= 0 && kl > 0) {
			if (in->kcap < kl) {
				uint8_t *nk = realloc(in->kb, (size_t)kl);
				if (nk == NULL)
					return ST_ENOMEM;
				in->kb = nk;
				in->kcap = (size_t)kl;
			}
			memcpy(in->kb, k, (size_t)kl);
			k = in->kb;
		}
		if ((rc = in_varint(in, &vl)) == ST_OK && vl > MAX_FIELD)
			rc = ST_ECORRUPT;
		if (rc == ST_OK)
			rc = in_take(in, (size_t)vl, &v);
		if (rc == ST_OK && f == FAM_META) {
			/* Only the replicated meta may come from another member. */
			if (key_is(k, (size_t)kl, ST_META_KVSTATE)) {
				if (have_kv || vl != 32) {
					rc = ST_ECORRUPT;
				} else {
					have_kv = true;
					kv->applied = st_get_be64(v);
					kv->rev = (int64_t)st_get_be64(v + 8);
					kv->compact_rev = (int64_t)st_get_be64(v + 16);
					kv->compact_done = (int64_t)st_get_be64(v + 24);
				}
			} else if (!has_prefix(k, (size_t)kl, ST_META_REPL_PREFIX)) {
				rc = ST_ECORRUPT;
			}
		}
		if (rc == ST_OK && db != NULL)
			rocksdb_writebatch_put_cf(b, db->cf[fam_cf[f]], (const char *)k, (size_t)kl,
			                          (const char *)v, (size_t)vl);
		if (rc != ST_OK)
			return rc;
		count++;
	}
	const uint8_t *c;
	int rc = in_take(in, 8, &c);
	if (rc != ST_OK)
		return rc;
	if (st_get_be64(c) != count || in->off != in->body)
		return ST_ECORRUPT;
	if (!have_kv || kv->applied != hdr_applied || kv->rev < 1 || kv->compact_rev < 0 ||
	    kv->compact_rev > kv->rev || kv->compact_done < 0 || kv->compact_done > kv->compact_rev)
		return ST_ECORRUPT;
	return ST_OK;
}

/* Buffer mode, up front: header, then the checksum of the whole body. */
static int in_buffer_open(snap_in *in, const uint8_t *buf, size_t len, uint64_t *applied)
{
	memset(in, 0, sizeof(*in));
	in->fd = -1;
	in->p = buf;
	if (buf == NULL || len < HDR_LEN + TRAILER_LEN)
		return ST_ECORRUPT;
	in->body = len - 8;
	int rc = in_header(in, applied);
	if (rc != ST_OK)
		return rc;
	if (st__snap_xxh64(buf, len - 8) != st_get_be64(buf + len - 8))
		return ST_ECORRUPT;
	return ST_OK;
}

int st_snap_find_rmeta(const uint8_t *buf, size_t len, const char *name, const uint8_t **val,
                       size_t *vlen)
{
	snap_in in;
	uint64_t a = 0;
	char key[128];
	int kn = snprintf(key, sizeof(key), "%s%s", ST_META_REPL_PREFIX, name);
	if (kn <= 0 || (size_t)kn >= sizeof(key))
		return ST_EINVAL;
	int rc = in_buffer_open(&in, buf, len, &a);
	while (rc == ST_OK) {
		const uint8_t *fam, *k, *v;
		uint64_t kl, vl;
		if ((rc = in_take(&in, 1, &fam)) != ST_OK)
			break;
		if (*fam == FAM_END || *fam >= FAM__COUNT)
			return ST_ENOTFOUND;
		if ((rc = in_varint(&in, &kl)) != ST_OK || kl > MAX_FIELD ||
		    (rc = in_take(&in, (size_t)kl, &k)) != ST_OK ||
		    (rc = in_varint(&in, &vl)) != ST_OK || vl > MAX_FIELD ||
		    (rc = in_take(&in, (size_t)vl, &v)) != ST_OK)
			return rc != ST_OK ? rc : ST_ECORRUPT;
		if (*fam == FAM_META && key_is(k, (size_t)kl, key)) {
			*val = v;
			*vlen = (size_t)vl;
			return ST_OK;
		}
	}
	return rc;
}

int st_snap_verify(const uint8_t *buf, size_t len, uint64_t *applied)
{
	snap_in in;
	uint64_t a = 0;
	st_kv_state kv;
	int rc = in_buffer_open(&in, buf, len, &a);
	if (rc == ST_OK)
		rc = in_records(&in, NULL, NULL, a, &kv);
	if (rc == ST_OK && applied != NULL)
		*applied = a;
	return rc;
}

/* ---- install ---------------------------------------------------------- */

/* Stage a range delete of every key family @cf holds now: [first, last 00).
 * Exact because only the node thread writes (and it is the caller). */
static int delete_family(st_db *db, rocksdb_writebatch_t *b, int cf)
{
	rocksdb_iterator_t *it = rocksdb_create_iterator_cf(db->rdb, db->ro, db->cf[cf]);
	if (it == NULL)
		return ST_ENOMEM;
	int rc = ST_OK;
	char *first = NULL, *last = NULL;
	rocksdb_iter_seek_to_first(it);
	if (rocksdb_iter_valid(it)) {
		size_t fl, ll;
		const char *k = rocksdb_iter_key(it, &fl);
		first = malloc(fl + 1);
		if (first != NULL)
			memcpy(first, k, fl);
		rocksdb_iter_seek_to_last(it);
		if (first == NULL) {
			rc = ST_ENOMEM;
		} else if (rocksdb_iter_valid(it)) {
			k = rocksdb_iter_key(it, &ll);
			last = malloc(ll + 1);
			if (last == NULL) {
				rc = ST_ENOMEM;
			} else {
				memcpy(last, k, ll);
				last[ll] = '\0';
				rocksdb_writebatch_delete_range_cf(b, db->cf[cf], first, fl, last,
				                                   ll + 1);
			}
		}
	}
	if (rc == ST_OK)
		rc = iter_err(it);
	free(first);
	free(last);
	rocksdb_iter_destroy(it);
	return rc;
}

/* Everything of an install except reading the image: stage the deletes, let
 * @in's records in, add the log base and hard state, write, publish. */
static int install(st_db *db, snap_in *in, uint64_t hdr_applied, uint64_t index, uint64_t term,
                   bool file_mode)
{
	rocksdb_writebatch_t *b = rocksdb_writebatch_create();
	if (b == NULL)
		return ST_ENOMEM;
	/* The range deletes go first: the image's puts come later in the batch
	 * (higher sequence numbers) and so survive them. */
	int rc = ST_OK;
	static const int wipe[] = {ST_CF_KV, ST_CF_REV, ST_CF_LEASE, ST_CF_LOG};
	for (size_t i = 0; i < sizeof(wipe) / sizeof(wipe[0]) && rc == ST_OK; i++)
		rc = delete_family(db, b, wipe[i]);
	if (rc == ST_OK)
		rocksdb_writebatch_delete_range_cf(b, db->cf[ST_CF_DEFAULT], ST_META_REPL_PREFIX,
		                                   strlen(ST_META_REPL_PREFIX), REPL_END,
		                                   strlen(REPL_END));
	st_kv_state kv = {0};
	if (rc == ST_OK)
		rc = in_records(in, db, b, hdr_applied, &kv);
	if (rc == ST_OK && file_mode) {
		uint8_t h[8];
		ssize_t r = pread(in->fd, h, 8, (off_t)in->body);
		if (r != 8)
			rc = r < 0 ? ST_EIO : ST_ECORRUPT;
		else if (xxh_digest(&in->h) != st_get_be64(h))
			rc = ST_ECORRUPT;
	}
	if (rc == ST_OK && kv.applied != index)
		rc = ST_EINVAL;

	st_hardstate hs;
	if (rc == ST_OK)
		rc = st_hardstate_load(db, &hs);
	if (rc == ST_OK) {
		uint8_t base[16];
		st_put_be64(base, index);
		st_put_be64(base + 8, term);
		rocksdb_writebatch_put_cf(b, db->cf[ST_CF_DEFAULT], ST_META_LOGBASE,
		                          strlen(ST_META_LOGBASE), (char *)base, 16);
		if (hs.commit < index) {
			Metastore__HardState h = METASTORE__HARD_STATE__INIT;
			uint8_t hb[64];
			h.format = 1;
			h.term = hs.term;
			h.vote = hs.vote;
			h.commit = index;
			size_t sz = metastore__hard_state__pack(&h, hb);
			rocksdb_writebatch_put_cf(b, db->cf[ST_CF_DEFAULT], ST_META_HARDSTATE,
			                          strlen(ST_META_HARDSTATE), (char *)hb, sz);
		}
	}
	if (rc == ST_OK) {
		/* Under the mutex like an apply batch: a reader's snapshot and its copy
		 * of the keyspace state change together. Not synced here: the fsync
		 * comes after, outside the mutex. */
		char *err = NULL;
		pthread_mutex_lock(&db->mu);
		rocksdb_write(db->rdb, db->wo, b, &err);
		if (err == NULL) {
			db->kv = kv;
			db->log_base_index = index;
			db->log_base_term = term;
			db->log_last_index = index;
		}
		pthread_mutex_unlock(&db->mu);
		if (err != NULL) {
			rc = st__rocks_err(err);
			if (rc == ST_ENOTFOUND)
				rc = ST_EIO;
			free(err);
		}
	}
	rocksdb_writebatch_destroy(b);
	if (rc == ST_OK) {
		char *err = NULL;
		rocksdb_flush_wal(db->rdb, 1, &err);
		if (err != NULL) {
			free(err);
			rc = ST_EIO;
		}
	}
	st__latest_clear(&db->latest); /* the keyspace was replaced (or partly) */
	st__kf_restart(&db->kf, db);
	if (rc == ST_OK && kv.compact_done < kv.compact_rev)
		rc = st_mvcc_finish_compaction(db);
	return rc;
}

int st_snap_install(st_db *db, const uint8_t *buf, size_t len, uint64_t index, uint64_t term)
{
	if (db->grp_open)
		return ST_EINVAL;
	snap_in in;
	uint64_t a = 0;
	int rc = in_buffer_open(&in, buf, len, &a);
	if (rc != ST_OK)
		return rc;
	return install(db, &in, a, index, term, false);
}

int st_snap_install_from_file(st_db *db, const char *path, uint64_t index, uint64_t term)
{
	if (db->grp_open)
		return ST_EINVAL;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return errno_st(errno);
	struct stat st;
	if (fstat(fd, &st) != 0) {
		int rc = errno_st(errno);
		close(fd);
		return rc;
	}
	snap_in in;
	memset(&in, 0, sizeof(in));
	in.fd = fd;
	xxh_init(&in.h);
	uint64_t a = 0;
	int rc = ST_OK;
	if (!S_ISREG(st.st_mode) || st.st_size < HDR_LEN + TRAILER_LEN)
		rc = ST_ECORRUPT;
	else
		in.body = (uint64_t)st.st_size - 8;
	if (rc == ST_OK)
		rc = in_header(&in, &a);
	if (rc == ST_OK)
		rc = install(db, &in, a, index, term, true);
	free(in.fb);
	free(in.kb);
	close(fd);
	return rc;
}
