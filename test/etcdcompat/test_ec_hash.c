/*
 * test_ec_hash: CRC-32C against its check value, HashKV over a known history
 * (the expected values are what Debian's etcd 3.4.23 reported for the same
 * requests; test/integration/scenarios/maint-hashkv.sh makes both servers
 * agree on them through etcdctl), the compacted / future errors, stability
 * across reopen, and Hash equal for equal stores and different otherwise.
 */
#include <criterion/criterion.h>

#include "etcdcompat/ec_errors.h"
#include "etcdcompat/ec_hash.h"
#include "etcdcompat/ec_kv.h"
#include "storage/st_db.h"
#include "test/etcdcompat/kv_testutil.h"
#include "test/storage/st_testutil.h"

static const ec_hdr H = {.cluster_id = 1, .member_id = 2, .raft_term = 3};

typedef struct store {
	char *dir;
	st_db *db;
	ec_kv *kv;
	uint64_t idx;
} store;

static void store_open(store *s)
{
	st_options o = {.create_if_missing = true};
	char err[512];
	cr_assert_eq(st_db_open(s->dir, &o, &s->db, err, sizeof(err)), ST_OK, "%s", err);
	cr_assert_eq(ec_kv_open(s->db, NULL, &s->kv), ST_OK);
}

static void store_close(store *s)
{
	ec_kv_close(s->kv);
	st_db_close(s->db);
}

static void store_new(store *s)
{
	s->dir = tu_tmpdir();
	s->idx = 0;
	store_open(s);
}

static void store_free(store *s)
{
	store_close(s);
	tu_rmrf(s->dir);
	free(s->dir);
}

static void apply(store *s, Metastore__InternalRequest *ir)
{
	ProtobufCMessage *r = NULL;
	int err = -1;
	cr_assert_eq(ec_kv_apply(s->kv, ++s->idx, ir, &H, &r, &err), ST_OK);
	cr_assert_eq(err, EC_OK);
	ec_msg_free(r);
	ec_msg_free(ir);
}

static void put(store *s, const char *k, const char *v)
{
	apply(s, tb_ir(METASTORE__INTERNAL_REQUEST__REQUEST_PUT, tb_put(k, v)));
}

static void del(store *s, const char *k, const char *end)
{
	apply(s, tb_ir(METASTORE__INTERNAL_REQUEST__REQUEST_DELETE_RANGE, tb_del(k, end)));
}

static void compact(store *s, int64_t rev)
{
	apply(s, tb_ir(METASTORE__INTERNAL_REQUEST__REQUEST_COMPACTION, tb_compact(rev)));
}

/* HashKV(@rev) must be (@cur, @hash, @crev). */
static void expect_hkv(store *s, int64_t rev, int64_t cur, uint32_t hash, int64_t crev)
{
	uint32_t h = 0;
	int64_t c = 0, cr = 0;
	cr_assert_eq(ec_hash_kv(s->db, rev, &h, &c, &cr), EC_OK, "HashKV(%lld)", (long long)rev);
	cr_expect_eq(c, cur, "HashKV(%lld) revision", (long long)rev);
	cr_expect_eq(h, hash, "HashKV(%lld) hash %u, etcd's %u", (long long)rev, h, hash);
	cr_expect_eq(cr, crev, "HashKV(%lld) compact revision", (long long)rev);
}

Test(hash, crc32c_check_value)
{
	cr_expect_eq(ec_crc32c(0, "123456789", 9), 0xE3069283u);
	/* in pieces, across the 8-byte stride */
	uint32_t c = ec_crc32c(0, "1234", 4);
	cr_expect_eq(ec_crc32c(c, "56789", 5), 0xE3069283u);
	cr_expect_eq(ec_crc32c(0, "", 0), 0u);
}

Test(hash, hashkv_matches_etcd)
{
	store s;
	store_new(&s);
	expect_hkv(&s, 0, 1, 1084519789u, -1);
	put(&s, "a", "1");
	put(&s, "b", "2");
	put(&s, "a", "3");
	del(&s, "b", NULL);
	put(&s, "c", "4");
	expect_hkv(&s, 0, 6, 2750537463u, -1);
	expect_hkv(&s, 3, 6, 1827592406u, -1);
	expect_hkv(&s, 2, 6, 2587454935u, -1);
	put(&s, "lk", "v");
	compact(&s, 4);
	expect_hkv(&s, 0, 7, 626074390u, 4);
	expect_hkv(&s, 5, 7, 1468967122u, 4);
	uint32_t h;
	int64_t c, cr;
	cr_expect_eq(ec_hash_kv(s.db, 4, &h, &c, &cr), EC_COMPACTED);
	cr_expect_eq(ec_hash_kv(s.db, 3, &h, &c, &cr), EC_COMPACTED);
	put(&s, "d", "5");
	put(&s, "a", "6");
	expect_hkv(&s, 0, 9, 513957599u, 4);
	compact(&s, 7);
	expect_hkv(&s, 0, 9, 3251037376u, 7);
	/* every key ("\0" to the end, as `etcdctl del "" --prefix`): etcd's
	 * "no live key" case */
	Etcdserverpb__DeleteRangeRequest *all = tb_del(NULL, TB_TO_END);
	all->key = tb_binn("", 1);
	apply(&s, tb_ir(METASTORE__INTERNAL_REQUEST__REQUEST_DELETE_RANGE, all));
	expect_hkv(&s, 0, 10, 3552795875u, 7);
	compact(&s, 9);
	expect_hkv(&s, 0, 10, 1855171817u, 9);
	put(&s, "z", "1");
	expect_hkv(&s, 0, 11, 1900039198u, 9);
	cr_expect_eq(ec_hash_kv(s.db, 100, &h, &c, &cr), EC_FUTURE_REV);
	cr_expect_eq(c, 11);
	/* the same after reopening */
	store_close(&s);
	store_open(&s);
	expect_hkv(&s, 0, 11, 1900039198u, 9);
	expect_hkv(&s, 10, 11, 1855171817u, 9);
	store_free(&s);
}

static void history(store *s, const char *last)
{
	put(s, "k1", "v1");
	put(s, "k2", "v2");
	del(s, "k1", NULL);
	put(s, "k3", last);
}

Test(hash, hash_equal_for_equal_stores)
{
	store a, b, c;
	store_new(&a);
	store_new(&b);
	store_new(&c);
	history(&a, "same");
	history(&b, "same");
	history(&c, "other");
	uint32_t ha, hb, hc;
	int64_t ra, rb, rc;
	cr_assert_eq(ec_hash_all(a.db, &ha, &ra), EC_OK);
	cr_assert_eq(ec_hash_all(b.db, &hb, &rb), EC_OK);
	cr_assert_eq(ec_hash_all(c.db, &hc, &rc), EC_OK);
	cr_expect_eq(ra, 5);
	cr_expect_eq(ha, hb);
	cr_expect_eq(ra, rc);
	cr_expect_neq(ha, hc);
	store_free(&a);
	store_free(&b);
	store_free(&c);
}
