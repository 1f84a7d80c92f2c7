/*
 * Unit tests for st_snap: Raft snapshot images of the replicated state. A source
 * store with revisions, tombstones, NUL keys, compaction, leases and replicated
 * meta is imaged and installed into a fresh store and into one holding other
 * data; every read must then match the source, the log must restart after the
 * snapshot point, and the target's own identity must survive. Damaged images
 * are refused with nothing changed, an image taken while writes go on holds
 * whole revisions (and whole apply groups), large states round-trip through
 * the buffer and the file forms, and a kill -9 during install leaves the old
 * state or the new one. Real RocksDB in temp dirs.
 */
#include <criterion/criterion.h>
#include <dlfcn.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <sys/wait.h>
#include <time.h>

#include <rocksdb/c.h>

#include "storage/st_db.h"
#include "storage/st_mvcc.h"
#include "storage/st_snap.h"
#include "test/storage/st_testutil.h"

uint64_t st__snap_xxh64(const void *p, size_t n);

static char *dir; /* holds the source "src" and targets "dst", "dst2" */
static char src_path[4200], dst_path[4200], dst2_path[4200];
static st_db *src, *dst;

static st_db *open_at(const char *path)
{
	st_options o = {.create_if_missing = true};
	char err[512];
	st_db *d = NULL;
	int rc = st_db_open(path, &o, &d, err, sizeof(err));
	cr_assert_eq(rc, ST_OK, "open %s: %s (%s)", path, st_strerror(rc), err);
	return d;
}

static void setup(void)
{
	dir = tu_tmpdir();
	cr_assert_not_null(dir);
	snprintf(src_path, sizeof(src_path), "%s/src", dir);
	snprintf(dst_path, sizeof(dst_path), "%s/dst", dir);
	snprintf(dst2_path, sizeof(dst2_path), "%s/dst2", dir);
	src = open_at(src_path);
	dst = open_at(dst_path);
}

static void teardown(void)
{
	st_db_close(src);
	st_db_close(dst);
	tu_rmrf(dir);
	free(dir);
}

TestSuite(snap, .init = setup, .fini = teardown, .timeout = 300);

/* ---- writing ----------------------------------------------------------- */

#define S(x) (const uint8_t *)(x), strlen(x)

static uint64_t next_idx(st_db *d)
{
	st_kv_state s;
	st_apply_state(d, &s);
	return s.applied + 1;
}

static void putn(st_db *d, const void *k, size_t kl, const char *v, int64_t lease)
{
	st_txn *t;
	cr_assert_eq(st_txn_begin(d, true, &t), ST_OK);
	cr_assert_eq(st_txn_put(t, k, kl, S(v), lease), ST_OK);
	cr_assert_eq(st_txn_commit(t, next_idx(d)), ST_OK);
}

static void put(st_db *d, const char *k, const char *v, int64_t lease)
{
	putn(d, k, strlen(k), v, lease);
}

static void del(st_db *d, const char *k, const char *end)
{
	st_txn *t;
	cr_assert_eq(st_txn_begin(d, true, &t), ST_OK);
	cr_assert_eq(
	        st_txn_delete_range(t, S(k), (const uint8_t *)end, end ? strlen(end) : 0, NULL),
	        ST_OK);
	cr_assert_eq(st_txn_commit(t, next_idx(d)), ST_OK);
}

static void grant(st_db *d, int64_t id, int64_t ttl)
{
	st_txn *t;
	cr_assert_eq(st_txn_begin(d, true, &t), ST_OK);
	cr_assert_eq(st_txn_lease_grant(t, id, ttl), ST_OK);
	cr_assert_eq(st_txn_commit(t, next_idx(d)), ST_OK);
}

static int revoke_del(void *arg, const uint8_t *key, size_t klen)
{
	return st_txn_delete_range(arg, key, klen, NULL, 0, NULL);
}

static void lrevoke(st_db *d, int64_t id)
{
	st_txn *t;
	cr_assert_eq(st_txn_begin(d, true, &t), ST_OK);
	cr_assert_eq(st_txn_lease_revoke(t, id, revoke_del, t), ST_OK);
	cr_assert_eq(st_txn_commit(t, next_idx(d)), ST_OK);
}

static void compact(st_db *d, int64_t rev)
{
	st_txn *t;
	cr_assert_eq(st_txn_begin(d, true, &t), ST_OK);
	cr_assert_eq(st_txn_compact(t, rev), ST_OK);
	cr_assert_eq(st_txn_commit(t, next_idx(d)), ST_OK);
}

static void append_log(st_db *d, uint64_t first, size_t n, uint64_t term)
{
	st_entry e[8];
	cr_assert_leq(n, 8);
	for (size_t i = 0; i < n; i++)
		e[i] = (st_entry){.term = term,
		                  .index = first + i,
		                  .type = 0,
		                  .data = (uint8_t *)"entry",
		                  .len = 5};
	st_hardstate hs = {.term = term, .vote = 2, .commit = first};
	cr_assert_eq(st_log_append(d, e, n, &hs, true), ST_OK);
}

/* Close @*d, put meta record @key=@val behind its back, reopen. */
static void poke(st_db **d, const char *path, const char *key, const char *val)
{
	st_db_close(*d);
	char *err = tu_poke_default(path, key, val, strlen(val));
	cr_assert_null(err, "%s", err);
	*d = open_at(path);
}

/* A store with every kind of record: versions, tombstones, a key with NUL
 * bytes, a compaction, leases with attached keys, a revoked lease, replicated
 * meta and a local identity record. */
static void populate(st_db **d, const char *path)
{
	put(*d, "a", "1", 0);
	put(*d, "b", "1", 0);
	put(*d, "a", "2", 0);
	del(*d, "b", NULL);
	putn(*d, "k\0z", 3, "nul", 0);
	grant(*d, 7, 60);
	put(*d, "leased/1", "x", 7);
	put(*d, "leased/2", "y", 7);
	put(*d, "c", "1", 0);
	put(*d, "c", "2", 0);
	del(*d, "c", "d");
	compact(*d, 8);
	put(*d, "a", "3", 0);
	grant(*d, 9, 30);
	put(*d, "short/1", "z", 9);
	lrevoke(*d, 9);
	put(*d, "zz", "last", 0);
	cr_assert_eq(st_meta_put(*d, "member_id", "src-id", 6, true), ST_OK);
	poke(d, path, "ms.r.members", "m1,m2,m3");
	poke(d, path, "ms.r.conf", "voters=1,2,3");
}

/* ---- reading everything back ------------------------------------------ */

static void hex(FILE *f, const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		fprintf(f, "%02x", p[i]);
}

static int dump_kv(void *arg, const st_kv *kv)
{
	FILE *f = arg;
	fputc(' ', f);
	hex(f, kv->key, kv->key_len);
	fputc('=', f);
	hex(f, kv->val, kv->val_len);
	fprintf(f, "@%lld.%lld c%lld v%lld l%lld%s\n", (long long)kv->mod_rev, (long long)kv->sub,
	        (long long)kv->create_rev, (long long)kv->version, (long long)kv->lease,
	        kv->tombstone ? " T" : "");
	return 0;
}

struct ids {
	int64_t id[64], ttl[64];
	int n;
};

static int collect_lease(void *arg, int64_t id, int64_t ttl)
{
	struct ids *x = arg;
	cr_assert_lt(x->n, 64);
	x->id[x->n] = id;
	x->ttl[x->n++] = ttl;
	return 0;
}

static int dump_lease_key(void *arg, const uint8_t *key, size_t klen)
{
	FILE *f = arg;
	fputc(' ', f);
	hex(f, key, klen);
	return 0;
}

/* Everything a client can read, as text: the keyspace state, every key at
 * every readable revision, the whole readable history, leases and their keys. */
static char *dump(st_db *d)
{
	char *s = NULL;
	size_t sl = 0;
	FILE *f = open_memstream(&s, &sl);
	st_kv_state ks;
	st_kv_state_get(d, &ks);
	fprintf(f, "state applied=%llu rev=%lld compact=%lld done=%lld\n",
	        (unsigned long long)ks.applied, (long long)ks.rev, (long long)ks.compact_rev,
	        (long long)ks.compact_done);
	st_txn *t;
	cr_assert_eq(st_txn_begin(d, false, &t), ST_OK);
	for (int64_t r = ks.compact_rev > 1 ? ks.compact_rev : 1; r <= ks.rev; r++) {
		fprintf(f, "range@%lld\n", (long long)r);
		cr_assert_eq(st_txn_range(t, (const uint8_t *)"\0", 1, (const uint8_t *)"\0", 1, r,
		                          dump_kv, f),
		             ST_OK);
	}
	fprintf(f, "history\n");
	cr_assert_eq(st_txn_history(t, ks.compact_rev + 1, ks.rev, dump_kv, f), ST_OK);
	struct ids x = {0};
	cr_assert_eq(st_txn_leases(t, collect_lease, &x), ST_OK);
	for (int i = 0; i < x.n; i++) {
		fprintf(f, "lease %lld ttl %lld:", (long long)x.id[i], (long long)x.ttl[i]);
		cr_assert_eq(st_txn_lease_keys(t, x.id[i], dump_lease_key, f), ST_OK);
		fputc('\n', f);
	}
	st_kv kv;
	int rc = st_txn_get(t, S("a"), &kv);
	cr_assert(rc == ST_OK || rc == ST_ENOTFOUND);
	if (rc == ST_OK)
		fprintf(f, "get a = %.*s\n", (int)kv.val_len, (const char *)kv.val);
	st_txn_abort(t);
	fclose(f);
	return s;
}

static char *meta(st_db *d, const char *name)
{
	void *v;
	size_t n;
	int rc = st_meta_get(d, name, &v, &n);
	if (rc == ST_ENOTFOUND)
		return NULL;
	cr_assert_eq(rc, ST_OK);
	char *s = malloc(n + 1);
	memcpy(s, v, n);
	s[n] = '\0';
	free(v);
	return s;
}

static void image(st_db *d, uint8_t **buf, size_t *len, uint64_t *applied)
{
	int rc = st_snap_create(d, buf, len, applied);
	cr_assert_eq(rc, ST_OK, "create: %s", st_strerror(rc));
}

/* The target's image equals @want byte for byte (same replicated state). */
static void assert_image_eq(st_db *d, const uint8_t *want, size_t wlen)
{
	uint8_t *b;
	size_t l;
	image(d, &b, &l, NULL);
	cr_assert_eq(l, wlen, "image size %zu, want %zu", l, wlen);
	cr_assert(memcmp(b, want, l) == 0, "images differ");
	free(b);
}

static void assert_log_reset(st_db *d, uint64_t index, uint64_t term)
{
	cr_assert_eq(st_log_first_index(d), index + 1);
	cr_assert_eq(st_log_last_index(d), index);
	uint64_t tm = 0;
	cr_assert_eq(st_log_term(d, index, &tm), ST_OK);
	cr_assert_eq(tm, term);
	cr_assert_eq(st_log_term(d, index - 1, &tm), ST_ECOMPACTED);
	cr_assert_eq(st_log_term(d, index + 1, &tm), ST_EUNAVAILABLE);
	st_entry *e;
	size_t n;
	cr_assert_eq(st_log_entries(d, index + 1, index + 2, 1 << 20, &e, &n), ST_EUNAVAILABLE);
	cr_assert_eq(st_log_entries(d, index, index + 1, 1 << 20, &e, &n), ST_ECOMPACTED);
	/* the log goes on from there */
	append_log(d, index + 1, 2, term);
	cr_assert_eq(st_log_last_index(d), index + 2);
	cr_assert_eq(st_log_entries(d, index + 1, index + 3, 1 << 20, &e, &n), ST_OK);
	cr_assert_eq(n, 2);
	st_entries_free(e, n);
}

/* ---- tests ------------------------------------------------------------- */

Test(snap, xxh64_matches_reference)
{
	cr_assert_eq(st__snap_xxh64("", 0), 0xEF46DB3751D8E999ULL);
	/* RocksDB carries the reference implementation; compare when it is visible */
	typedef uint64_t (*xxh_fn)(const void *, size_t, uint64_t);
	xxh_fn ref = (xxh_fn)dlsym(RTLD_DEFAULT, "ROCKSDB_XXH64");
	if (ref == NULL)
		return;
	uint8_t *b = malloc(70000);
	for (size_t i = 0; i < 70000; i++)
		b[i] = (uint8_t)(i * 2654435761u >> 13);
	for (size_t n = 0; n < 300; n++)
		cr_assert_eq(st__snap_xxh64(b + n % 7, n), ref(b + n % 7, n, 0), "len %zu", n);
	cr_assert_eq(st__snap_xxh64(b, 70000), ref(b, 70000, 0));
	free(b);
}

Test(snap, image_of_fresh_store_installs)
{
	uint8_t *b;
	size_t l;
	uint64_t a = 99;
	image(src, &b, &l, &a);
	cr_assert_eq(a, 0);
	cr_assert_eq(st_snap_verify(b, l, &a), ST_OK);
	put(dst, "gone", "soon", 0);
	cr_assert_eq(st_snap_install(dst, b, l, 0, 0), ST_OK);
	char *x = dump(dst), *y = dump(src);
	cr_assert_str_eq(x, y);
	assert_image_eq(dst, b, l);
	free(x);
	free(y);
	free(b);
}

Test(snap, install_into_fresh_store)
{
	populate(&src, src_path);
	uint8_t *b;
	size_t l;
	uint64_t a = 0;
	image(src, &b, &l, &a);
	st_kv_state ss, ds;
	st_kv_state_get(src, &ss);
	cr_assert_eq(a, ss.applied);
	cr_assert_gt(a, 10);
	cr_assert_eq(st_snap_verify(b, l, NULL), ST_OK);

	cr_assert_eq(st_snap_install(dst, b, l, a, 4), ST_OK);
	st_kv_state_get(dst, &ds);
	cr_assert(memcmp(&ss, &ds, sizeof(ss)) == 0);
	char *want = dump(src), *got = dump(dst);
	cr_assert_str_eq(got, want);
	cr_assert_not_null(strstr(want, "lease 7 ttl 60:"), "%s", want);
	assert_image_eq(dst, b, l);
	cr_assert_null(meta(dst, "member_id"), "identity is not replicated");
	st_hardstate hs;
	cr_assert_eq(st_hardstate_load(dst, &hs), ST_OK);
	cr_assert_eq(hs.commit, a, "commit raised to the snapshot index");
	assert_log_reset(dst, a, 4);

	/* all of it is durable */
	st_db_close(dst);
	dst = open_at(dst_path);
	free(got);
	got = dump(dst);
	cr_assert_str_eq(got, want);
	cr_assert_eq(st_log_first_index(dst), a + 1);
	/* and the store goes on from there: the next revision follows the image's */
	put(dst, "after", "1", 0);
	st_kv_state_get(dst, &ds);
	cr_assert_eq(ds.rev, ss.rev + 1);
	cr_assert_eq(ds.applied, a + 1);
	free(want);
	free(got);
	free(b);
}

Test(snap, install_over_other_data_keeps_identity)
{
	populate(&src, src_path);
	/* the target: its own history, leases, log, hard state and meta */
	for (int i = 0; i < 30; i++) {
		char k[32];
		snprintf(k, sizeof(k), "other/%02d", i);
		put(dst, k, "v", 0);
	}
	grant(dst, 7, 5);
	grant(dst, 11, 5);
	put(dst, "a", "dst", 11);
	put(dst, "leased/3", "dst", 7);
	compact(dst, 20);
	cr_assert_eq(st_meta_put(dst, "member_id", "dst-id", 6, true), ST_OK);
	poke(&dst, dst_path, "ms.r.stale", "old-conf");
	append_log(dst, 1, 8, 9);
	st_hardstate hs = {.term = 12, .vote = 3, .commit = 5};
	cr_assert_eq(st_log_append(dst, NULL, 0, &hs, true), ST_OK);

	uint8_t *b;
	size_t l;
	uint64_t a;
	image(src, &b, &l, &a);
	cr_assert_eq(st_snap_install(dst, b, l, a, 7), ST_OK);
	char *want = dump(src), *got = dump(dst);
	cr_assert_str_eq(got, want);
	assert_image_eq(dst, b, l); /* ms.r.stale is gone, the source's ms.r.* are there */
	char *id = meta(dst, "member_id");
	cr_assert_str_eq(id, "dst-id");
	free(id);
	cr_assert_eq(st_hardstate_load(dst, &hs), ST_OK);
	cr_assert_eq(hs.term, 12);
	cr_assert_eq(hs.vote, 3);
	cr_assert_eq(hs.commit, a);
	assert_log_reset(dst, a, 7);

	st_db_close(dst);
	dst = open_at(dst_path);
	free(got);
	got = dump(dst);
	cr_assert_str_eq(got, want);
	id = meta(dst, "member_id");
	cr_assert_str_eq(id, "dst-id");
	free(id);
	assert_image_eq(dst, b, l);
	free(want);
	free(got);
	free(b);
}

Test(snap, install_with_higher_commit_keeps_it)
{
	populate(&src, src_path);
	uint8_t *b;
	size_t l;
	uint64_t a;
	image(src, &b, &l, &a);
	st_hardstate hs = {.term = 3, .vote = 1, .commit = a + 50};
	cr_assert_eq(st_log_append(dst, NULL, 0, &hs, true), ST_OK);
	cr_assert_eq(st_snap_install(dst, b, l, a, 3), ST_OK);
	cr_assert_eq(st_hardstate_load(dst, &hs), ST_OK);
	cr_assert_eq(hs.commit, a + 50);
	free(b);
}

/* ---- refusals ---------------------------------------------------------- */

/* Build an image by hand from the documented format (docs/disk-format.md). */
struct img {
	uint8_t *p;
	size_t len;
	uint64_t count;
};

static void img_add(struct img *m, const void *d, size_t n)
{
	m->p = realloc(m->p, m->len + n + 1);
	memcpy(m->p + m->len, d, n);
	m->len += n;
}

static void img_be64(struct img *m, uint64_t v)
{
	uint8_t b[8];
	for (int i = 7; i >= 0; i--, v >>= 8)
		b[i] = (uint8_t)v;
	img_add(m, b, 8);
}

static void img_varint(struct img *m, uint64_t v)
{
	for (; v >= 0x80; v >>= 7) {
		uint8_t c = (uint8_t)(v | 0x80);
		img_add(m, &c, 1);
	}
	uint8_t c = (uint8_t)v;
	img_add(m, &c, 1);
}

static void img_begin(struct img *m, uint32_t version, uint64_t applied)
{
	memset(m, 0, sizeof(*m));
	img_add(m, "\x89MSSNAP\n", 8);
	img_be64(m, (uint64_t)version << 32);
	img_be64(m, applied);
}

static void img_rec(struct img *m, uint8_t fam, const void *k, size_t kl, const void *v, size_t vl)
{
	img_add(m, &fam, 1);
	img_varint(m, kl);
	img_add(m, k, kl);
	img_varint(m, vl);
	img_add(m, v, vl);
	m->count++;
}

static void img_kvstate(struct img *m, uint64_t applied, int64_t rev)
{
	struct img v = {0};
	img_be64(&v, applied);
	img_be64(&v, (uint64_t)rev);
	img_be64(&v, 0);
	img_be64(&v, 0);
	img_rec(m, 1, "ms.kvstate", 10, v.p, v.len);
	free(v.p);
}

static void img_end(struct img *m)
{
	uint8_t z = 0;
	img_add(m, &z, 1);
	img_be64(m, m->count);
	img_be64(m, st__snap_xxh64(m->p, m->len));
}

Test(snap, hand_built_image_installs)
{
	struct img m;
	img_begin(&m, 1, 5);
	img_kvstate(&m, 5, 1);
	img_rec(&m, 1, "ms.r.x", 6, "y", 1);
	img_rec(&m, 4, "L\0\0\0\0\0\0\0\x03", 9, "\x01\0\0\0\0\0\0\0\x0a", 9);
	img_end(&m);
	cr_assert_eq(st_snap_install(dst, m.p, m.len, 5, 2), ST_OK);
	char *d = dump(dst);
	cr_assert_not_null(strstr(d, "lease 3 ttl 10:"), "%s", d);
	cr_assert_not_null(strstr(d, "applied=5 rev=1"), "%s", d);
	free(d);
	free(m.p);
}

/* Nothing changed in @d: same reads, same image, same log, same identity. */
struct before {
	char *dump;
	uint8_t *img;
	size_t len;
	uint64_t first, last;
};

static void snap_before(st_db *d, struct before *b)
{
	b->dump = dump(d);
	image(d, &b->img, &b->len, NULL);
	b->first = st_log_first_index(d);
	b->last = st_log_last_index(d);
}

static void assert_unchanged(st_db *d, struct before *b)
{
	char *now = dump(d);
	cr_assert_str_eq(now, b->dump);
	free(now);
	assert_image_eq(d, b->img, b->len);
	cr_assert_eq(st_log_first_index(d), b->first);
	cr_assert_eq(st_log_last_index(d), b->last);
	char *id = meta(d, "member_id");
	cr_assert_str_eq(id, "dst-id");
	free(id);
}

static void dst_with_data(void)
{
	put(dst, "mine", "1", 0);
	put(dst, "mine", "2", 0);
	grant(dst, 5, 50);
	cr_assert_eq(st_meta_put(dst, "member_id", "dst-id", 6, true), ST_OK);
	append_log(dst, 1, 3, 2);
}

Test(snap, damaged_images_change_nothing)
{
	put(src, "k", "v", 0);
	grant(src, 3, 10);
	put(src, "l", "w", 3);
	dst_with_data();
	uint8_t *b;
	size_t l;
	uint64_t a;
	image(src, &b, &l, &a);
	struct before bf;
	snap_before(dst, &bf);

	/* every single flipped byte is caught: version/flags as EFORMAT, the rest
	 * as ECORRUPT */
	for (size_t i = 0; i < l; i++) {
		for (int bit = 0; bit < 8; bit += 3) {
			b[i] ^= (uint8_t)(1u << bit);
			int rc = st_snap_install(dst, b, l, a, 1);
			int vrc = st_snap_verify(b, l, NULL);
			b[i] ^= (uint8_t)(1u << bit);
			int want = i >= 8 && i < 16 ? ST_EFORMAT : ST_ECORRUPT;
			cr_assert_eq(rc, want, "flip at %zu bit %d: %s", i, bit, st_strerror(rc));
			cr_assert_eq(vrc, want);
		}
	}
	/* every truncation */
	for (size_t n = 0; n < l; n++)
		cr_assert_eq(st_snap_install(dst, b, n, a, 1), ST_ECORRUPT, "truncated to %zu", n);
	cr_assert_eq(st_snap_install(dst, NULL, 0, a, 1), ST_ECORRUPT);
	/* trailing garbage */
	uint8_t *g = malloc(l + 1);
	memcpy(g, b, l);
	g[l] = 0;
	cr_assert_eq(st_snap_install(dst, g, l + 1, a, 1), ST_ECORRUPT);
	free(g);
	assert_unchanged(dst, &bf);

	/* well-formed images that must still be refused */
	struct img m;
	img_begin(&m, 2, 1); /* a future version */
	img_kvstate(&m, 1, 2);
	img_end(&m);
	cr_assert_eq(st_snap_install(dst, m.p, m.len, 1, 1), ST_EFORMAT);
	free(m.p);
	img_begin(&m, 1, 1); /* a local identity record */
	img_kvstate(&m, 1, 2);
	img_rec(&m, 1, "m.member_id", 11, "evil", 4);
	img_end(&m);
	cr_assert_eq(st_snap_install(dst, m.p, m.len, 1, 1), ST_ECORRUPT);
	free(m.p);
	img_begin(&m, 1, 1); /* the log base */
	img_kvstate(&m, 1, 2);
	img_rec(&m, 1, "ms.logbase", 10, "0123456789abcdef", 16);
	img_end(&m);
	cr_assert_eq(st_snap_install(dst, m.p, m.len, 1, 1), ST_ECORRUPT);
	free(m.p);
	img_begin(&m, 1, 1); /* no keyspace state */
	img_rec(&m, 2, "x", 1, "y", 1);
	img_end(&m);
	cr_assert_eq(st_snap_install(dst, m.p, m.len, 1, 1), ST_ECORRUPT);
	free(m.p);
	img_begin(&m, 1, 1); /* two keyspace states */
	img_kvstate(&m, 1, 2);
	img_kvstate(&m, 1, 3);
	img_end(&m);
	cr_assert_eq(st_snap_install(dst, m.p, m.len, 1, 1), ST_ECORRUPT);
	free(m.p);
	img_begin(&m, 1, 2); /* header and record disagree on the applied index */
	img_kvstate(&m, 1, 2);
	img_end(&m);
	cr_assert_eq(st_snap_install(dst, m.p, m.len, 1, 1), ST_ECORRUPT);
	free(m.p);
	img_begin(&m, 1, 1); /* unknown family */
	img_kvstate(&m, 1, 2);
	img_rec(&m, 9, "x", 1, "y", 1);
	img_end(&m);
	cr_assert_eq(st_snap_install(dst, m.p, m.len, 1, 1), ST_ECORRUPT);
	free(m.p);
	img_begin(&m, 1, 1); /* wrong record count */
	img_kvstate(&m, 1, 2);
	m.count++;
	img_end(&m);
	cr_assert_eq(st_snap_install(dst, m.p, m.len, 1, 1), ST_ECORRUPT);
	free(m.p);
	assert_unchanged(dst, &bf);

	/* misuse */
	cr_assert_eq(st_snap_install(dst, b, l, a + 1, 1), ST_EINVAL, "index is not the image's");
	cr_assert_eq(st_apply_begin(dst), ST_OK);
	cr_assert_eq(st_snap_install(dst, b, l, a, 1), ST_EINVAL, "apply group open");
	st_apply_abort(dst);
	assert_unchanged(dst, &bf);

	/* and the good image still installs */
	cr_assert_eq(st_snap_install(dst, b, l, a, 1), ST_OK);
	assert_image_eq(dst, b, l);
	free(bf.dump);
	free(bf.img);
	free(b);
}

Test(snap, damaged_files_change_nothing)
{
	put(src, "k", "v", 0);
	dst_with_data();
	char path[4300];
	snprintf(path, sizeof(path), "%s/img", dir);
	uint64_t fl = 0, a = 0;
	cr_assert_eq(st_snap_create_to_file(src, path, &fl, &a), ST_OK);
	uint8_t *b;
	size_t l;
	image(src, &b, &l, NULL);
	cr_assert_eq(fl, l);
	struct before bf;
	snap_before(dst, &bf);
	char bad[4400];
	snprintf(bad, sizeof(bad), "%s/bad", dir);
	for (size_t i = 0; i < l; i += 3) {
		FILE *f = fopen(bad, "wb");
		b[i] ^= 0x10;
		fwrite(b, 1, l, f);
		b[i] ^= 0x10;
		fclose(f);
		int rc = st_snap_install_from_file(dst, bad, a, 1);
		cr_assert_eq(rc, i >= 8 && i < 16 ? ST_EFORMAT : ST_ECORRUPT, "flip at %zu: %s", i,
		             st_strerror(rc));
	}
	for (size_t n = 0; n < l; n += 5) {
		FILE *f = fopen(bad, "wb");
		fwrite(b, 1, n, f);
		fclose(f);
		cr_assert_eq(st_snap_install_from_file(dst, bad, a, 1), ST_ECORRUPT,
		             "truncated %zu", n);
	}
	char none[4400];
	snprintf(none, sizeof(none), "%s/none", dir);
	cr_assert_eq(st_snap_install_from_file(dst, none, a, 1), ST_ENOTFOUND);
	cr_assert_eq(st_snap_install_from_file(dst, dir, a, 1), ST_ECORRUPT, "a directory");
	snprintf(none, sizeof(none), "%s/no/such/dir/img", dir);
	cr_assert_eq(st_snap_create_to_file(src, none, NULL, NULL), ST_ENOTFOUND);
	assert_unchanged(dst, &bf);
	cr_assert_eq(st_snap_install_from_file(dst, path, a, 1), ST_OK);
	assert_image_eq(dst, b, l);
	free(bf.dump);
	free(bf.img);
	free(b);
}

/* ---- consistency under concurrent writes ------------------------------- */

#define N_IMAGES 12

struct taker {
	st_db *db;
	volatile int stop;
	uint8_t *img[N_IMAGES];
	size_t len[N_IMAGES];
	uint64_t applied[N_IMAGES];
	int n, rc;
};

static void *take_images(void *arg)
{
	struct taker *tk = arg;
	while (tk->n < N_IMAGES && !tk->stop) {
		int rc = st_snap_create(tk->db, &tk->img[tk->n], &tk->len[tk->n],
		                        &tk->applied[tk->n]);
		if (rc != ST_OK) {
			tk->rc = rc;
			break;
		}
		tk->n++;
		struct timespec ts = {0, 10 * 1000 * 1000};
		nanosleep(&ts, NULL);
	}
	return NULL;
}

static int64_t get_int(st_db *d, const char *k, int64_t *mod)
{
	st_txn *t;
	st_kv kv;
	cr_assert_eq(st_txn_begin(d, false, &t), ST_OK);
	int rc = st_txn_get(t, S(k), &kv);
	cr_assert_eq(rc, ST_OK, "get %s: %s", k, st_strerror(rc));
	char s[32];
	snprintf(s, sizeof(s), "%.*s", (int)kv.val_len, (const char *)kv.val);
	if (mod != NULL)
		*mod = kv.mod_rev;
	st_txn_abort(t);
	return atoll(s);
}

Test(snap, image_taken_during_writes_holds_whole_revisions)
{
	/* Every entry writes x = y = i and a rotating key; entries are applied in
	 * groups of 3, every 10th group also compacts. An image must show x == y,
	 * both modified at the image's revision, and end on a group boundary. */
	st_txn *t0;
	cr_assert_eq(st_txn_begin(src, true, &t0), ST_OK);
	cr_assert_eq(st_txn_put(t0, S("x"), S("0"), 0), ST_OK);
	cr_assert_eq(st_txn_put(t0, S("y"), S("0"), 0), ST_OK);
	cr_assert_eq(st_txn_commit(t0, next_idx(src)), ST_OK);
	static bool group_end[1 << 20];
	memset(group_end, 0, sizeof(group_end));
	group_end[next_idx(src) - 1] = true;
	struct taker tk = {.db = src};
	pthread_t th;
	cr_assert_eq(pthread_create(&th, NULL, take_images, &tk), 0);
	int i = 1;
	for (int grp = 1; tk.n < N_IMAGES && tk.rc == ST_OK && next_idx(src) < (1 << 20) - 8;
	     grp++) {
		cr_assert_eq(st_apply_begin(src), ST_OK);
		for (int g = 0; g < 3; g++, i++) {
			char v[32], k[32];
			snprintf(v, sizeof(v), "%d", i);
			snprintf(k, sizeof(k), "rot/%d", i % 50);
			st_txn *t;
			cr_assert_eq(st_txn_begin(src, true, &t), ST_OK);
			cr_assert_eq(st_txn_put(t, S("x"), S(v), 0), ST_OK);
			cr_assert_eq(st_txn_put(t, S(k), S(v), 0), ST_OK);
			cr_assert_eq(st_txn_put(t, S("y"), S(v), 0), ST_OK);
			cr_assert_eq(st_txn_commit(t, next_idx(src)), ST_OK);
		}
		if (grp % 10 == 0) {
			st_kv_state s;
			st_apply_state(src, &s);
			st_txn *t;
			cr_assert_eq(st_txn_begin(src, true, &t), ST_OK);
			cr_assert_eq(st_txn_compact(t, s.rev - 20), ST_OK);
			cr_assert_eq(st_txn_commit(t, next_idx(src)), ST_OK);
		}
		group_end[next_idx(src) - 1] = true;
		cr_assert_eq(st_apply_commit(src), ST_OK);
	}
	tk.stop = 1;
	pthread_join(th, NULL);
	cr_assert_eq(tk.rc, ST_OK, "create: %s", st_strerror(tk.rc));
	cr_assert_eq(tk.n, N_IMAGES, "writer outran the taker (%d images)", tk.n);
	uint64_t prev = 0;
	int distinct = 0;
	for (int n = 0; n < N_IMAGES; n++) {
		cr_assert_eq(st_snap_verify(tk.img[n], tk.len[n], NULL), ST_OK);
		/* each install lands over the previous one */
		cr_assert_eq(st_snap_install(dst, tk.img[n], tk.len[n], tk.applied[n], 1), ST_OK);
		st_kv_state s;
		st_kv_state_get(dst, &s);
		cr_assert_eq(s.applied, tk.applied[n]);
		cr_assert(group_end[s.applied], "image %d ends inside a group (applied %llu)", n,
		          (unsigned long long)s.applied);
		cr_assert_eq(s.compact_done, s.compact_rev, "install finishes a compaction");
		int64_t mx, my;
		int64_t x = get_int(dst, "x", &mx), y = get_int(dst, "y", &my);
		cr_assert_eq(x, y, "image %d: x=%lld y=%lld", n, (long long)x, (long long)y);
		cr_assert_eq(mx, s.rev, "image %d: x modified at %lld, image at %lld", n,
		             (long long)mx, (long long)s.rev);
		cr_assert_eq(my, s.rev);
		if (tk.applied[n] != prev)
			distinct++;
		prev = tk.applied[n];
		free(tk.img[n]);
	}
	cr_assert_gt(distinct, 3, "images taken at different points");
	cr_log_info("%d images over %d entries", N_IMAGES, (int)next_idx(src) - 1);
}

/* ---- size ---------------------------------------------------------------- */

/* @n keys "key/%07d" with 100-byte values, 1000 per revision. */
static void fill(st_db *d, int n)
{
	char k[32], v[128];
	for (int i = 0; i < n;) {
		st_txn *t;
		cr_assert_eq(st_txn_begin(d, true, &t), ST_OK);
		for (int j = 0; j < 1000 && i < n; j++, i++) {
			snprintf(k, sizeof(k), "key/%07d", i);
			snprintf(v, sizeof(v), "%0100d", i * 7919);
			cr_assert_eq(st_txn_put(t, S(k), S(v), 0), ST_OK);
		}
		cr_assert_eq(st_txn_commit(t, next_idx(d)), ST_OK);
	}
}

static int count_visit(void *arg, const st_kv *kv)
{
	(void)kv;
	(*(int *)arg)++;
	return 0;
}

static int count_keys(st_db *d)
{
	st_txn *t;
	int n = 0;
	cr_assert_eq(st_txn_begin(d, false, &t), ST_OK);
	cr_assert_eq(st_txn_range(t, (const uint8_t *)"\0", 1, (const uint8_t *)"\0", 1,
	                          st_txn_rev(t), count_visit, &n),
	             ST_OK);
	st_txn_abort(t);
	return n;
}

Test(snap, large_state_round_trips_by_buffer_and_file)
{
	const int n = 200000;
	fill(src, n);
	put(src, "key/0000042", "changed", 0);
	uint8_t *b;
	size_t l;
	uint64_t a;
	struct timespec t0, t1, t2;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	image(src, &b, &l, &a);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	cr_assert_gt(l, (size_t)n * 100);
	dst_with_data();
	cr_assert_eq(st_snap_install(dst, b, l, a, 3), ST_OK);
	clock_gettime(CLOCK_MONOTONIC, &t2);
	cr_log_info("%d keys, %zu-byte image: create %.0f ms, install %.0f ms", n, l,
	            (t1.tv_sec - t0.tv_sec) * 1e3 + (t1.tv_nsec - t0.tv_nsec) / 1e6,
	            (t2.tv_sec - t1.tv_sec) * 1e3 + (t2.tv_nsec - t1.tv_nsec) / 1e6);
	cr_assert_eq(count_keys(dst), n);
	int64_t mod;
	cr_assert_eq(get_int(dst, "key/0000042", &mod), 0, "the value \"changed\" reads as 0");
	st_kv_state s;
	st_kv_state_get(dst, &s);
	cr_assert_eq(mod, s.rev);
	st_txn *t;
	st_kv kv;
	cr_assert_eq(st_txn_begin(dst, false, &t), ST_OK);
	cr_assert_eq(st_txn_get(t, S("key/0199999"), &kv), ST_OK);
	char want[128];
	snprintf(want, sizeof(want), "%0100d", 199999 * 7919);
	cr_assert_eq(kv.val_len, 100);
	cr_assert(memcmp(kv.val, want, 100) == 0);
	st_txn_abort(t);
	assert_image_eq(dst, b, l);
	assert_log_reset(dst, a, 3);

	char path[4300];
	snprintf(path, sizeof(path), "%s/img", dir);
	uint64_t fl = 0, fa = 0;
	cr_assert_eq(st_snap_create_to_file(src, path, &fl, &fa), ST_OK);
	cr_assert_eq(fl, l);
	cr_assert_eq(fa, a);
	st_db *d2 = open_at(dst2_path);
	put(d2, "key/0000001", "other", 0);
	cr_assert_eq(st_snap_install_from_file(d2, path, a, 3), ST_OK);
	assert_image_eq(d2, b, l);
	cr_assert_eq(count_keys(d2), n);
	st_db_close(d2);
	d2 = open_at(dst2_path);
	assert_image_eq(d2, b, l);
	st_db_close(d2);
	free(b);
}

/* ---- crash --------------------------------------------------------------- */

/*
 * The installing child is this binary re-executed (fork alone would inherit
 * RocksDB's background threads' locks, held at the time of the fork, and
 * deadlock): with ST_SNAP_CHILD="fd dir image index term mode" set, a constructor
 * runs before Criterion's main, opens dir, writes one byte to fd, installs
 * the image file (mode 0: buffer form, 1: file form) and
 * exits without closing the db, as good as a crash.
 */
__attribute__((constructor)) static void install_child(void)
{
	const char *spec = getenv("ST_SNAP_CHILD");
	if (spec == NULL)
		return;
	int fd;
	char d[4200], img[4200];
	unsigned long long index, term;
	int mode;
	if (sscanf(spec, "%d %4199s %4199s %llu %llu %d", &fd, d, img, &index, &term, &mode) != 6)
		_exit(80);
	st_options o = {.create_if_missing = false};
	char err[512];
	st_db *db = NULL;
	if (st_db_open(d, &o, &db, err, sizeof(err)) != ST_OK)
		_exit(81);
	uint8_t *b = NULL;
	size_t l = 0;
	if (mode == 0) {
		FILE *f = fopen(img, "rb");
		if (f == NULL)
			_exit(82);
		fseek(f, 0, SEEK_END);
		l = (size_t)ftell(f);
		fseek(f, 0, SEEK_SET);
		b = malloc(l);
		if (b == NULL || fread(b, 1, l, f) != l)
			_exit(83);
		fclose(f);
	}
	if (write(fd, "g", 1) != 1)
		_exit(84);
	int rc = b != NULL ? st_snap_install(db, b, l, index, term)
	                   : st_snap_install_from_file(db, img, index, term);
	_exit(rc == ST_OK ? 0 : 100 + rc);
}

Test(snap, kill_during_install_leaves_old_or_new)
{
	fill(src, 60000);
	uint8_t *nb;
	size_t nl;
	uint64_t na;
	image(src, &nb, &nl, &na);
	dst_with_data();
	uint8_t *ob;
	size_t ol;
	uint64_t oa;
	image(dst, &ob, &ol, &oa);
	uint64_t ofirst = st_log_first_index(dst), olast = st_log_last_index(dst);
	st_db_close(dst);
	dst = NULL;

	char img_path[4300];
	snprintf(img_path, sizeof(img_path), "%s/img", dir);
	FILE *f = fopen(img_path, "wb");
	cr_assert_eq(fwrite(nb, 1, nl, f), nl);
	fclose(f);
	const int delays_us[] = {0,      5000,   50000,  80000,   110000, 150000,
	                         300000, 500000, 800000, 1200000, -1};
	int saw_old = 0, saw_new = 0;
	for (size_t trial = 0; trial < sizeof(delays_us) / sizeof(delays_us[0]); trial++) {
		int pfd[2];
		cr_assert_eq(pipe(pfd), 0);
		char spec[9000];
		snprintf(spec, sizeof(spec), "%d %s %s %llu %llu %d", pfd[1], dst_path, img_path,
		         (unsigned long long)na, 2ULL, (int)(trial % 2));
		pid_t pid = fork();
		cr_assert_geq(pid, 0);
		if (pid == 0) {
			close(pfd[0]);
			setenv("ST_SNAP_CHILD", spec, 1);
			char *argv[] = {(char *)"test_st_snap", NULL};
			execv("/proc/self/exe", argv);
			_exit(79);
		}
		close(pfd[1]);
		char c;
		cr_assert_eq(read(pfd[0], &c, 1), 1, "the child died before installing");
		close(pfd[0]);
		int status;
		if (delays_us[trial] >= 0) {
			struct timespec ts = {delays_us[trial] / 1000000,
			                      (long)(delays_us[trial] % 1000000) * 1000};
			nanosleep(&ts, NULL);
			kill(pid, SIGKILL);
			waitpid(pid, &status, 0);
		} else {
			struct timespec t0, t1;
			clock_gettime(CLOCK_MONOTONIC, &t0);
			waitpid(pid, &status, 0); /* the last one runs to its end */
			clock_gettime(CLOCK_MONOTONIC, &t1);
			cr_log_info("uninterrupted install of %zu bytes: %.0f ms", nl,
			            (t1.tv_sec - t0.tv_sec) * 1e3 +
			                    (t1.tv_nsec - t0.tv_nsec) / 1e6);
			cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child status %d",
			          status);
		}
		st_db *d = open_at(dst_path);
		uint8_t *b;
		size_t l;
		image(d, &b, &l, NULL);
		if (l == nl && memcmp(b, nb, l) == 0) {
			saw_new++;
			cr_assert_eq(st_log_first_index(d), na + 1);
			cr_assert_eq(st_log_last_index(d), na);
			/* back to the old state for the next trial */
			cr_assert_eq(st_snap_install(d, ob, ol, oa, 1), ST_OK);
			ofirst = st_log_first_index(d);
			olast = st_log_last_index(d);
		} else {
			cr_assert(l == ol && memcmp(b, ob, l) == 0,
			          "trial %zu: neither old nor new", trial);
			saw_old++;
			cr_assert_eq(st_log_first_index(d), ofirst);
			cr_assert_eq(st_log_last_index(d), olast);
		}
		char *id = meta(d, "member_id");
		cr_assert_str_eq(id, "dst-id");
		free(id);
		free(b);
		st_db_close(d);
	}
	cr_assert_gt(saw_new, 0);
	cr_log_info("kill during install: %d old, %d new", saw_old, saw_new);
	dst = open_at(dst_path);
	free(nb);
	free(ob);
}
