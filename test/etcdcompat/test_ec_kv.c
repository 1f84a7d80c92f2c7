/*
 * Unit tests for ec_kv: etcd's KV semantics through the same calls the node
 * loop and the gRPC handlers make (ec_kv_apply, ec_kv_range, ec_kv_txn_read),
 * over a real RocksDB in a temp dir. Expected values follow etcd 3.4's
 * etcdserver/apply.go and mvcc behaviour.
 */
#include <criterion/criterion.h>
#include <pthread.h>

#include "etcdcompat/ec_errors.h"
#include "etcdcompat/ec_kv.h"
#include "storage/st_db.h"
#include "test/etcdcompat/kv_testutil.h"
#include "test/storage/st_testutil.h"

static char *dir;
static st_db *db;
static ec_kv *kv;
static uint64_t idx;
static const ec_hdr H = {.cluster_id = 0xc1, .member_id = 0xa1, .raft_term = 7};

static void open_all(void)
{
	st_options o = {.create_if_missing = true};
	char err[512];
	cr_assert_eq(st_db_open(dir, &o, &db, err, sizeof(err)), ST_OK, "%s", err);
	cr_assert_eq(ec_kv_open(db, NULL, &kv), ST_OK);
}

static void close_all(void)
{
	ec_kv_close(kv);
	st_db_close(db);
}

static void setup(void)
{
	dir = tu_tmpdir();
	open_all();
	idx = 0;
}

static void teardown(void)
{
	close_all();
	tu_rmrf(dir);
	free(dir);
}

TestSuite(kv, .init = setup, .fini = teardown);

/* Apply @ir at the next index; returns the ec error, *@resp the response. */
static int apply(Metastore__InternalRequest *ir, void **resp)
{
	ProtobufCMessage *r = NULL;
	int err = -1;
	int rc = ec_kv_apply(kv, ++idx, ir, &H, &r, &err);
	ec_msg_free(ir);
	cr_assert_eq(rc, ST_OK, "apply storage error %s", st_strerror(rc));
	cr_assert_eq(ec_kv_applied_index(kv), idx);
	if (err == EC_OK)
		cr_assert_not_null(r);
	else
		cr_assert_null(r);
	if (resp != NULL)
		*resp = r;
	else
		ec_msg_free(r);
	return err;
}

static Etcdserverpb__PutResponse *put(const char *k, const char *v)
{
	void *r;
	cr_assert_eq(apply(tb_ir(METASTORE__INTERNAL_REQUEST__REQUEST_PUT, tb_put(k, v)), &r), EC_OK);
	return r;
}

static void put_(const char *k, const char *v)
{
	ec_msg_free(put(k, v));
}

static int put_req(Etcdserverpb__PutRequest *p, Etcdserverpb__PutResponse **out)
{
	return apply(tb_ir(METASTORE__INTERNAL_REQUEST__REQUEST_PUT, p), (void **)out);
}

static int del(const char *k, const char *end, bool prev, Etcdserverpb__DeleteRangeResponse **out)
{
	Etcdserverpb__DeleteRangeRequest *d = tb_del(k, end);
	d->prev_kv = prev;
	return apply(tb_ir(METASTORE__INTERNAL_REQUEST__REQUEST_DELETE_RANGE, d), (void **)out);
}

static int txn(Etcdserverpb__TxnRequest *t, Etcdserverpb__TxnResponse **out)
{
	return apply(tb_ir(METASTORE__INTERNAL_REQUEST__REQUEST_TXN, t), (void **)out);
}

static int compact(int64_t rev)
{
	void *r = NULL;
	int e = apply(tb_ir(METASTORE__INTERNAL_REQUEST__REQUEST_COMPACTION, tb_compact(rev)), &r);
	if (e == EC_OK) {
		Etcdserverpb__CompactionResponse *c = r;
		cr_assert_eq(c->header->revision, ec_kv_revision(kv));
		cr_assert_eq(c->header->cluster_id, H.cluster_id);
	}
	ec_msg_free(r);
	return e;
}

/* Run a Range; returns the ec error. */
static int range(Etcdserverpb__RangeRequest *r, Etcdserverpb__RangeResponse **out)
{
	int e = ec_kv_range(kv, r, &H, out);
	ec_msg_free(r);
	return e;
}

/* "k=v" pairs of a response, space separated, in response order. */
static const char *keys_of(Mvccpb__KeyValue **kvs, size_t n)
{
	static char s[4096];
	s[0] = '\0';
	for (size_t i = 0; i < n; i++) {
		size_t l = strlen(s);
		snprintf(s + l, sizeof(s) - l, "%s%.*s=%.*s", i ? " " : "", (int)kvs[i]->key.len,
			 (char *)kvs[i]->key.data, (int)kvs[i]->value.len, (char *)kvs[i]->value.data);
	}
	return s;
}

static void check_hdr(const Etcdserverpb__ResponseHeader *h, int64_t rev)
{
	cr_assert_not_null(h);
	cr_assert_eq(h->revision, rev, "header revision %lld want %lld", (long long)h->revision,
		     (long long)rev);
	cr_assert_eq(h->cluster_id, H.cluster_id);
	cr_assert_eq(h->member_id, H.member_id);
	cr_assert_eq(h->raft_term, H.raft_term);
}

/* A sub-response header: revision only, as etcd leaves them. */
static void check_sub_hdr(const Etcdserverpb__ResponseHeader *h, int64_t rev)
{
	cr_assert_not_null(h);
	cr_assert_eq(h->revision, rev, "sub header revision %lld want %lld", (long long)h->revision,
		     (long long)rev);
	cr_assert_eq(h->cluster_id, 0);
	cr_assert_eq(h->member_id, 0);
	cr_assert_eq(h->raft_term, 0);
}

Test(kv, fresh_store_reports_revision_1)
{
	cr_assert_eq(ec_kv_revision(kv), 1);
	cr_assert_eq(ec_kv_compact_revision(kv), 0);
	cr_assert_eq(ec_kv_applied_index(kv), 0);
	Etcdserverpb__RangeResponse *rr;
	cr_assert_eq(range(tb_range("a", NULL), &rr), EC_OK);
	check_hdr(rr->header, 1);
	cr_assert_eq(rr->count, 0);
	cr_assert_eq(rr->n_kvs, 0);
	ec_msg_free(rr);
}

Test(kv, put_versions_prev_kv_and_headers)
{
	Etcdserverpb__PutResponse *pr = put("foo", "bar");
	check_hdr(pr->header, 2);
	cr_assert_null(pr->prev_kv);
	ec_msg_free(pr);

	Etcdserverpb__PutRequest *p = tb_put("foo", "baz");
	p->prev_kv = true;
	cr_assert_eq(put_req(p, &pr), EC_OK);
	check_hdr(pr->header, 3);
	cr_assert_not_null(pr->prev_kv);
	cr_assert_eq(pr->prev_kv->version, 1);
	cr_assert_eq(pr->prev_kv->mod_revision, 2);
	cr_assert_eq(pr->prev_kv->value.len, 3);
	cr_assert_eq(memcmp(pr->prev_kv->value.data, "bar", 3), 0);
	ec_msg_free(pr);

	Etcdserverpb__RangeResponse *rr;
	cr_assert_eq(range(tb_range("foo", NULL), &rr), EC_OK);
	cr_assert_eq(rr->n_kvs, 1);
	cr_assert_eq(rr->kvs[0]->create_revision, 2);
	cr_assert_eq(rr->kvs[0]->mod_revision, 3);
	cr_assert_eq(rr->kvs[0]->version, 2);
	cr_assert_eq(rr->kvs[0]->lease, 0);
	check_hdr(rr->header, 3);
	ec_msg_free(rr);

	/* ignore_value keeps the value, bumps the version */
	p = tb_put("foo", NULL);
	p->ignore_value = true;
	cr_assert_eq(put_req(p, &pr), EC_OK);
	ec_msg_free(pr);
	cr_assert_eq(range(tb_range("foo", NULL), &rr), EC_OK);
	cr_assert_str_eq(keys_of(rr->kvs, rr->n_kvs), "foo=baz");
	cr_assert_eq(rr->kvs[0]->version, 3);
	ec_msg_free(rr);

	/* ignore_value / ignore_lease on a missing key: key not found, no revision */
	p = tb_put("nope", NULL);
	p->ignore_value = true;
	cr_assert_eq(put_req(p, NULL), EC_KEY_NOT_FOUND);
	p = tb_put("nope", "x");
	p->ignore_lease = true;
	cr_assert_eq(put_req(p, NULL), EC_KEY_NOT_FOUND);
	cr_assert_eq(ec_kv_revision(kv), 4);

	/* a lease nobody granted */
	p = tb_put("foo", "x");
	p->lease = 42;
	cr_assert_eq(put_req(p, NULL), EC_LEASE_NOT_FOUND);
	/* lease is checked first, as etcd does outside a txn */
	p = tb_put("nope", NULL);
	p->lease = 42;
	p->ignore_value = true;
	cr_assert_eq(put_req(p, NULL), EC_LEASE_NOT_FOUND);
	cr_assert_eq(ec_kv_revision(kv), 4);

	/* an empty value is a value */
	put_("empty", "");
	cr_assert_eq(range(tb_range("empty", NULL), &rr), EC_OK);
	cr_assert_eq(rr->n_kvs, 1);
	cr_assert_eq(rr->kvs[0]->value.len, 0);
	ec_msg_free(rr);
}

struct lease_log {
	char s[256];
};

static bool lease_exists(void *arg, int64_t id)
{
	(void)arg;
	return id == 7;
}

static void lease_attach(void *arg, int64_t id, const uint8_t *k, size_t kl)
{
	struct lease_log *l = arg;
	size_t n = strlen(l->s);
	snprintf(l->s + n, sizeof(l->s) - n, "+%lld:%.*s ", (long long)id, (int)kl, (const char *)k);
}

static void lease_detach(void *arg, int64_t id, const uint8_t *k, size_t kl)
{
	struct lease_log *l = arg;
	size_t n = strlen(l->s);
	snprintf(l->s + n, sizeof(l->s) - n, "-%lld:%.*s ", (long long)id, (int)kl, (const char *)k);
}

Test(kv, lease_hook)
{
	struct lease_log log = {{0}};
	ec_lease_hooks hooks = {.arg = &log, .exists = lease_exists, .attach = lease_attach,
				.detach = lease_detach};
	ec_kv_set_lease_hooks(kv, &hooks);
	Etcdserverpb__PutRequest *p = tb_put("k", "v");
	p->lease = 8;
	cr_assert_eq(put_req(p, NULL), EC_LEASE_NOT_FOUND);
	p = tb_put("k", "v");
	p->lease = 7;
	cr_assert_eq(put_req(p, NULL), EC_OK);
	p = tb_put("k", "v2");
	p->ignore_lease = true;
	cr_assert_eq(put_req(p, NULL), EC_OK);
	Etcdserverpb__RangeResponse *rr;
	cr_assert_eq(range(tb_range("k", NULL), &rr), EC_OK);
	cr_assert_eq(rr->kvs[0]->lease, 7);
	ec_msg_free(rr);
	put_("k", "v3"); /* drops the lease */
	cr_assert_eq(range(tb_range("k", NULL), &rr), EC_OK);
	cr_assert_eq(rr->kvs[0]->lease, 0);
	ec_msg_free(rr);
	p = tb_put("k", "v");
	p->lease = 7;
	cr_assert_eq(put_req(p, NULL), EC_OK);
	cr_assert_eq(del("k", NULL, false, NULL), EC_OK);
	cr_assert_str_eq(log.s, "+7:k -7:k +7:k -7:k +7:k -7:k ");
	ec_kv_set_lease_hooks(kv, NULL);
}

Test(kv, delete_range_counts_prev_kvs_and_revisions)
{
	put_("a", "1");
	put_("b", "2");
	put_("c", "3");
	Etcdserverpb__DeleteRangeResponse *dr;
	cr_assert_eq(del("a", "c", true, &dr), EC_OK);
	cr_assert_eq(dr->deleted, 2);
	check_hdr(dr->header, 5);
	cr_assert_str_eq(keys_of(dr->prev_kvs, dr->n_prev_kvs), "a=1 b=2");
	ec_msg_free(dr);
	/* nothing to delete: no new revision, header shows the current one */
	cr_assert_eq(del("a", "c", true, &dr), EC_OK);
	cr_assert_eq(dr->deleted, 0);
	cr_assert_eq(dr->n_prev_kvs, 0);
	check_hdr(dr->header, 5);
	ec_msg_free(dr);
	cr_assert_eq(ec_kv_revision(kv), 5);
	/* from key to the end */
	put_("d", "4");
	cr_assert_eq(del("b", TB_TO_END, false, &dr), EC_OK);
	cr_assert_eq(dr->deleted, 2);
	cr_assert_eq(dr->n_prev_kvs, 0);
	ec_msg_free(dr);
	/* the version restarts after a delete */
	put_("c", "again");
	Etcdserverpb__RangeResponse *rr;
	cr_assert_eq(range(tb_range("c", NULL), &rr), EC_OK);
	cr_assert_eq(rr->kvs[0]->version, 1);
	cr_assert_eq(rr->kvs[0]->create_revision, 8);
	ec_msg_free(rr);
}

/* Keys: a(v1) b(v1..3) c(v1) d(v1..2) e(v1), with varied revisions. */
static void load_range_data(void)
{
	put_("b", "z");  /* 2 */
	put_("a", "y");  /* 3 */
	put_("b", "x");  /* 4 */
	put_("d", "w");  /* 5 */
	put_("c", "v");  /* 6 */
	put_("b", "u");  /* 7 */
	put_("e", "t");  /* 8 */
	put_("d", "s");  /* 9 */
	put_("f0", "0"); /* 10: outside [a, f) */
}

static Etcdserverpb__RangeResponse *do_range(Etcdserverpb__RangeRequest *r)
{
	Etcdserverpb__RangeResponse *rr;
	cr_assert_eq(range(r, &rr), EC_OK);
	return rr;
}

Test(kv, range_limit_count_more)
{
	load_range_data();
	Etcdserverpb__RangeRequest *r = tb_range("a", "f");
	Etcdserverpb__RangeResponse *rr = do_range(r);
	cr_assert_str_eq(keys_of(rr->kvs, rr->n_kvs), "a=y b=u c=v d=s e=t");
	cr_assert_eq(rr->count, 5);
	cr_assert(!rr->more);
	check_hdr(rr->header, 10);
	ec_msg_free(rr);

	r = tb_range("a", "f");
	r->limit = 2;
	rr = do_range(r);
	cr_assert_str_eq(keys_of(rr->kvs, rr->n_kvs), "a=y b=u");
	cr_assert_eq(rr->count, 5);
	cr_assert(rr->more);
	ec_msg_free(rr);

	r = tb_range("a", "f");
	r->limit = 5;
	rr = do_range(r);
	cr_assert_eq(rr->n_kvs, 5);
	cr_assert(!rr->more);
	ec_msg_free(rr);

	r = tb_range("a", "f");
	r->count_only = true;
	r->limit = 1;
	rr = do_range(r);
	cr_assert_eq(rr->n_kvs, 0);
	cr_assert_eq(rr->count, 5);
	cr_assert(!rr->more);
	ec_msg_free(rr);

	r = tb_range("a", "f");
	r->keys_only = true;
	rr = do_range(r);
	cr_assert_str_eq(keys_of(rr->kvs, rr->n_kvs), "a= b= c= d= e=");
	cr_assert_eq(rr->kvs[1]->version, 3);
	ec_msg_free(rr);

	/* range_end "\0": from the key on; key "\0" + end "\0": everything */
	rr = do_range(tb_range("d", TB_TO_END));
	cr_assert_str_eq(keys_of(rr->kvs, rr->n_kvs), "d=s e=t f0=0");
	ec_msg_free(rr);
	rr = do_range(tb_range(TB_TO_END, TB_TO_END));
	cr_assert_eq(rr->count, 6);
	ec_msg_free(rr);
	/* an end before the key: nothing */
	rr = do_range(tb_range("d", "b"));
	cr_assert_eq(rr->count, 0);
	ec_msg_free(rr);
}

Test(kv, range_sort)
{
	load_range_data();
	struct {
		int order, target;
		int64_t limit;
		const char *want;
		bool more;
	} cases[] = {
		{ETCDSERVERPB__RANGE_REQUEST__SORT_ORDER__NONE, ETCDSERVERPB__RANGE_REQUEST__SORT_TARGET__KEY,
		 0, "a=y b=u c=v d=s e=t", false},
		{ETCDSERVERPB__RANGE_REQUEST__SORT_ORDER__DESCEND, ETCDSERVERPB__RANGE_REQUEST__SORT_TARGET__KEY,
		 0, "e=t d=s c=v b=u a=y", false},
		{ETCDSERVERPB__RANGE_REQUEST__SORT_ORDER__DESCEND, ETCDSERVERPB__RANGE_REQUEST__SORT_TARGET__KEY,
		 2, "e=t d=s", true},
		{ETCDSERVERPB__RANGE_REQUEST__SORT_ORDER__ASCEND, ETCDSERVERPB__RANGE_REQUEST__SORT_TARGET__VALUE,
		 0, "d=s e=t b=u c=v a=y", false},
		{ETCDSERVERPB__RANGE_REQUEST__SORT_ORDER__DESCEND, ETCDSERVERPB__RANGE_REQUEST__SORT_TARGET__VALUE,
		 0, "a=y c=v b=u e=t d=s", false},
		{ETCDSERVERPB__RANGE_REQUEST__SORT_ORDER__DESCEND,
		 ETCDSERVERPB__RANGE_REQUEST__SORT_TARGET__VERSION, 0, "b=u d=s e=t c=v a=y", false},
		{ETCDSERVERPB__RANGE_REQUEST__SORT_ORDER__ASCEND, ETCDSERVERPB__RANGE_REQUEST__SORT_TARGET__CREATE,
		 0, "b=u a=y d=s c=v e=t", false},
		{ETCDSERVERPB__RANGE_REQUEST__SORT_ORDER__DESCEND, ETCDSERVERPB__RANGE_REQUEST__SORT_TARGET__MOD,
		 0, "d=s e=t b=u c=v a=y", false},
		/* limit applies after sorting everything */
		{ETCDSERVERPB__RANGE_REQUEST__SORT_ORDER__DESCEND, ETCDSERVERPB__RANGE_REQUEST__SORT_TARGET__MOD,
		 2, "d=s e=t", true},
		/* target set, order NONE: ascending; etcd fetches limit+1 by key first */
		{ETCDSERVERPB__RANGE_REQUEST__SORT_ORDER__NONE, ETCDSERVERPB__RANGE_REQUEST__SORT_TARGET__MOD, 0,
		 "a=y c=v b=u e=t d=s", false},
		{ETCDSERVERPB__RANGE_REQUEST__SORT_ORDER__NONE, ETCDSERVERPB__RANGE_REQUEST__SORT_TARGET__MOD, 2,
		 "a=y c=v", true},
		{ETCDSERVERPB__RANGE_REQUEST__SORT_ORDER__ASCEND, ETCDSERVERPB__RANGE_REQUEST__SORT_TARGET__MOD, 2,
		 "a=y c=v", true},
		{ETCDSERVERPB__RANGE_REQUEST__SORT_ORDER__NONE, ETCDSERVERPB__RANGE_REQUEST__SORT_TARGET__VALUE, 1,
		 "b=u", true},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		Etcdserverpb__RangeRequest *r = tb_range("a", "f");
		r->sort_order = cases[i].order;
		r->sort_target = cases[i].target;
		r->limit = cases[i].limit;
		Etcdserverpb__RangeResponse *rr = do_range(r);
		cr_assert_str_eq(keys_of(rr->kvs, rr->n_kvs), cases[i].want, "case %zu", i);
		cr_assert_eq(rr->more, cases[i].more, "case %zu", i);
		cr_assert_eq(rr->count, 5, "case %zu", i);
		ec_msg_free(rr);
	}
}

Test(kv, range_filters_keep_count_and_compute_more_after_pruning)
{
	load_range_data();
	/* mod revisions: a3 b7 c6 d9 e8 ; create: a3 b2 c6 d5 e8 */
	Etcdserverpb__RangeRequest *r = tb_range("a", "f");
	r->min_mod_revision = 6;
	r->max_mod_revision = 8;
	Etcdserverpb__RangeResponse *rr = do_range(r);
	cr_assert_str_eq(keys_of(rr->kvs, rr->n_kvs), "b=u c=v e=t");
	cr_assert_eq(rr->count, 5); /* count is taken before the filters */
	cr_assert(!rr->more);
	ec_msg_free(rr);

	r = tb_range("a", "f");
	r->min_create_revision = 3;
	r->max_create_revision = 6;
	r->limit = 1;
	rr = do_range(r);
	cr_assert_str_eq(keys_of(rr->kvs, rr->n_kvs), "a=y");
	cr_assert(rr->more); /* c and d also pass */
	cr_assert_eq(rr->count, 5);
	ec_msg_free(rr);

	r = tb_range("a", "f");
	r->max_create_revision = 2;
	r->limit = 1;
	rr = do_range(r);
	cr_assert_str_eq(keys_of(rr->kvs, rr->n_kvs), "b=u");
	cr_assert(!rr->more); /* only one passes: no more */
	ec_msg_free(rr);
}

Test(kv, range_revisions_future_and_compacted)
{
	load_range_data();
	Etcdserverpb__RangeRequest *r = tb_range("a", "f");
	r->revision = 4;
	Etcdserverpb__RangeResponse *rr = do_range(r);
	cr_assert_str_eq(keys_of(rr->kvs, rr->n_kvs), "a=y b=x");
	check_hdr(rr->header, 10); /* header carries the current revision */
	ec_msg_free(rr);

	r = tb_range("a", NULL);
	r->revision = 11;
	cr_assert_eq(range(r, &rr), EC_FUTURE_REV);
	cr_assert_null(rr);

	cr_assert_eq(compact(5), EC_OK);
	cr_assert_eq(ec_kv_compact_revision(kv), 5);
	r = tb_range("a", "f");
	r->revision = 4;
	cr_assert_eq(range(r, &rr), EC_COMPACTED);
	r = tb_range("a", "f");
	r->revision = 5; /* the compaction revision itself is still readable */
	rr = do_range(r);
	cr_assert_str_eq(keys_of(rr->kvs, rr->n_kvs), "a=y b=x d=w");
	ec_msg_free(rr);
	r = tb_range("a", "f");
	r->revision = 7;
	rr = do_range(r);
	cr_assert_str_eq(keys_of(rr->kvs, rr->n_kvs), "a=y b=u c=v d=w");
	ec_msg_free(rr);
}

Test(kv, compaction_errors_and_tombstones)
{
	cr_assert_eq(compact(0), EC_COMPACTED); /* <= compacted (0) */
	put_("a", "1"); /* 2 */
	cr_assert_eq(compact(3), EC_FUTURE_REV);
	put_("b", "1"); /* 3 */
	cr_assert_eq(del("a", NULL, false, NULL), EC_OK); /* 4 */
	cr_assert_eq(compact(4), EC_OK);
	cr_assert_eq(compact(4), EC_COMPACTED);
	cr_assert_eq(compact(3), EC_COMPACTED);
	cr_assert_eq(ec_kv_revision(kv), 4); /* compaction takes no revision */
	Etcdserverpb__RangeResponse *rr = do_range(tb_range(TB_TO_END, TB_TO_END));
	cr_assert_str_eq(keys_of(rr->kvs, rr->n_kvs), "b=1");
	ec_msg_free(rr);
	/* txn range ops below the compaction fail the whole txn */
	Etcdserverpb__RangeRequest *r = tb_range("b", NULL);
	r->revision = 3;
	cr_assert_eq(txn(tb_txn(0, 2, 0, tb_op_put(tb_put("x", "1")), tb_op_range(r)), NULL),
		     EC_COMPACTED);
	cr_assert_eq(ec_kv_revision(kv), 4);
}

Test(kv, txn_compares)
{
	put_("k", "v1"); /* 2 */
	put_("k", "v2"); /* 3, version 2, create 2 */
	put_("p/1", "x"); /* 4 */
	put_("p/2", "y"); /* 5 */
	struct {
		Etcdserverpb__Compare *c;
		bool want;
	} cases[] = {
		{tb_cmp(TB_VERSION, TB_EQ, "k", NULL, 2), true},
		{tb_cmp(TB_VERSION, TB_GT, "k", NULL, 1), true},
		{tb_cmp(TB_VERSION, TB_LT, "k", NULL, 2), false},
		{tb_cmp(TB_VERSION, TB_NE, "k", NULL, 2), false},
		{tb_cmp(TB_CREATE, TB_EQ, "k", NULL, 2), true},
		{tb_cmp(TB_MOD, TB_EQ, "k", NULL, 3), true},
		{tb_cmp(TB_MOD, TB_LT, "k", NULL, 3), false},
		{tb_cmp(TB_LEASE, TB_EQ, "k", NULL, 0), true},
		{tb_cmp_val(TB_EQ, "k", NULL, "v2"), true},
		{tb_cmp_val(TB_GT, "k", NULL, "v1"), true},
		{tb_cmp_val(TB_LT, "k", NULL, "v3"), true},
		{tb_cmp_val(TB_NE, "k", NULL, "v2"), false},
		/* missing key: compared against a zero KeyValue, except VALUE which fails */
		{tb_cmp(TB_VERSION, TB_EQ, "missing", NULL, 0), true},
		{tb_cmp(TB_CREATE, TB_EQ, "missing", NULL, 0), true},
		{tb_cmp(TB_MOD, TB_LT, "missing", NULL, 1), true},
		{tb_cmp_val(TB_EQ, "missing", NULL, ""), false},
		{tb_cmp_val(TB_NE, "missing", NULL, "x"), false},
		/* over a range every key must satisfy it */
		{tb_cmp(TB_MOD, TB_GT, "p/", "p0", 3), true},
		{tb_cmp(TB_MOD, TB_GT, "p/", "p0", 4), false},
		{tb_cmp(TB_VERSION, TB_EQ, "p/", "p0", 1), true},
		{tb_cmp_val(TB_GT, "p/", "p0", "w"), true},
		{tb_cmp_val(TB_EQ, "p/", "p0", "x"), false},
		{tb_cmp(TB_VERSION, TB_EQ, "q/", "q0", 0), true}, /* empty range */
		{tb_cmp(TB_CREATE, TB_GT, "a", TB_TO_END, 1), true},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		Etcdserverpb__TxnResponse *tr;
		cr_assert_eq(txn(tb_txn(1, 0, 0, cases[i].c), &tr), EC_OK);
		cr_assert_eq(tr->succeeded, cases[i].want, "case %zu", i);
		check_hdr(tr->header, 5);
		ec_msg_free(tr);
	}
	/* several compares: all must hold */
	Etcdserverpb__TxnResponse *tr;
	cr_assert_eq(txn(tb_txn(2, 0, 0, tb_cmp(TB_VERSION, TB_EQ, "k", NULL, 2),
				tb_cmp(TB_VERSION, TB_EQ, "p/1", NULL, 2)),
			 &tr),
		     EC_OK);
	cr_assert(!tr->succeeded);
	ec_msg_free(tr);
	/* a compare whose value field does not match its target uses zero */
	Etcdserverpb__Compare *odd = tb_cmp(TB_VERSION, TB_GT, "k", NULL, 99);
	odd->target = ETCDSERVERPB__COMPARE__COMPARE_TARGET__MOD; /* union still says version */
	cr_assert_eq(txn(tb_txn(1, 0, 0, odd), &tr), EC_OK);
	cr_assert(tr->succeeded); /* mod 3 > 0 */
	ec_msg_free(tr);
	cr_assert_eq(ec_kv_revision(kv), 5); /* read-only txns take no revision */
}

Test(kv, txn_one_revision_reads_own_writes_and_sub_headers)
{
	put_("a", "1"); /* 2 */
	Etcdserverpb__RangeRequest *r1 = tb_range("a", "z");
	Etcdserverpb__PutRequest *pb = tb_put("b", "2");
	pb->prev_kv = true;
	Etcdserverpb__RangeRequest *r2 = tb_range("a", "z");
	Etcdserverpb__DeleteRangeRequest *d = tb_del("a", NULL);
	d->prev_kv = true;
	Etcdserverpb__RangeRequest *r3 = tb_range("a", "z");
	Etcdserverpb__RangeRequest *r4 = tb_range("a", "z");
	r4->revision = 2; /* an explicit older revision does not see the txn */
	Etcdserverpb__TxnResponse *tr;
	cr_assert_eq(txn(tb_txn(1, 6, 0, tb_cmp(TB_VERSION, TB_EQ, "a", NULL, 1), tb_op_range(r1),
				tb_op_put(pb), tb_op_range(r2), tb_op_del(d), tb_op_range(r3),
				tb_op_range(r4)),
			 &tr),
		     EC_OK);
	cr_assert(tr->succeeded);
	check_hdr(tr->header, 3);
	cr_assert_eq(tr->n_responses, 6);
	Etcdserverpb__RangeResponse *rr = tr->responses[0]->response_range;
	cr_assert_eq(tr->responses[0]->response_case, ETCDSERVERPB__RESPONSE_OP__RESPONSE_RESPONSE_RANGE);
	cr_assert_str_eq(keys_of(rr->kvs, rr->n_kvs), "a=1");
	check_sub_hdr(rr->header, 2); /* nothing written yet: the current revision */
	Etcdserverpb__PutResponse *pr = tr->responses[1]->response_put;
	check_sub_hdr(pr->header, 3);
	cr_assert_null(pr->prev_kv);
	rr = tr->responses[2]->response_range;
	cr_assert_str_eq(keys_of(rr->kvs, rr->n_kvs), "a=1 b=2");
	cr_assert_eq(rr->kvs[1]->mod_revision, 3);
	check_sub_hdr(rr->header, 3);
	Etcdserverpb__DeleteRangeResponse *dr = tr->responses[3]->response_delete_range;
	cr_assert_eq(dr->deleted, 1);
	cr_assert_str_eq(keys_of(dr->prev_kvs, dr->n_prev_kvs), "a=1");
	check_sub_hdr(dr->header, 3);
	rr = tr->responses[4]->response_range;
	cr_assert_str_eq(keys_of(rr->kvs, rr->n_kvs), "b=2");
	rr = tr->responses[5]->response_range;
	cr_assert_str_eq(keys_of(rr->kvs, rr->n_kvs), "a=1");
	ec_msg_free(tr);
	cr_assert_eq(ec_kv_revision(kv), 3);

	/* a txn whose delete finds nothing and writes nothing takes no revision */
	cr_assert_eq(txn(tb_txn(0, 1, 0, tb_op_del(tb_del("nothing", NULL))), &tr), EC_OK);
	dr = tr->responses[0]->response_delete_range;
	check_sub_hdr(dr->header, 3);
	check_hdr(tr->header, 3);
	ec_msg_free(tr);
	cr_assert_eq(ec_kv_revision(kv), 3);

	/* failure branch */
	cr_assert_eq(txn(tb_txn(1, 1, 1, tb_cmp_val(TB_EQ, "b", NULL, "nope"), tb_op_put(tb_put("s", "1")),
				tb_op_put(tb_put("f", "1"))),
			 &tr),
		     EC_OK);
	cr_assert(!tr->succeeded);
	check_hdr(tr->header, 4);
	cr_assert_eq(tr->n_responses, 1);
	cr_assert_eq(tr->responses[0]->response_case, ETCDSERVERPB__RESPONSE_OP__RESPONSE_RESPONSE_PUT);
	ec_msg_free(tr);
	rr = do_range(tb_range("f", NULL));
	cr_assert_eq(rr->n_kvs, 1);
	ec_msg_free(rr);
	rr = do_range(tb_range("s", NULL));
	cr_assert_eq(rr->n_kvs, 0);
	ec_msg_free(rr);
}

Test(kv, txn_nested)
{
	put_("x", "1"); /* 2 */
	/* outer: success puts x=2 and runs a nested txn whose compare looks at
	 * x == "1": compares are evaluated before any op, so it still holds */
	Etcdserverpb__TxnRequest *inner = tb_txn(1, 2, 1, tb_cmp_val(TB_EQ, "x", NULL, "1"),
						 tb_op_put(tb_put("y", "in")), tb_op_range(tb_range("x", NULL)),
						 tb_op_put(tb_put("n", "no")));
	Etcdserverpb__TxnRequest *inner2 = tb_txn(1, 0, 1, tb_cmp(TB_VERSION, TB_EQ, "zz", NULL, 5),
						  tb_op_put(tb_put("z", "else")));
	Etcdserverpb__TxnResponse *tr;
	cr_assert_eq(txn(tb_txn(0, 3, 0, tb_op_put(tb_put("x", "2")), tb_op_txn(inner), tb_op_txn(inner2)),
			 &tr),
		     EC_OK);
	cr_assert(tr->succeeded);
	check_hdr(tr->header, 3);
	cr_assert_eq(tr->n_responses, 3);
	check_sub_hdr(tr->responses[0]->response_put->header, 3);
	Etcdserverpb__TxnResponse *n1 = tr->responses[1]->response_txn;
	cr_assert_eq(tr->responses[1]->response_case, ETCDSERVERPB__RESPONSE_OP__RESPONSE_RESPONSE_TXN);
	cr_assert(n1->succeeded);
	check_sub_hdr(n1->header, 0); /* etcd leaves nested txn headers empty */
	cr_assert_eq(n1->n_responses, 2);
	check_sub_hdr(n1->responses[0]->response_put->header, 3);
	Etcdserverpb__RangeResponse *rr = n1->responses[1]->response_range;
	cr_assert_str_eq(keys_of(rr->kvs, rr->n_kvs), "x=2"); /* ops do see earlier writes */
	Etcdserverpb__TxnResponse *n2 = tr->responses[2]->response_txn;
	cr_assert(!n2->succeeded);
	cr_assert_eq(n2->n_responses, 1);
	ec_msg_free(tr);

	rr = do_range(tb_range(TB_TO_END, TB_TO_END));
	cr_assert_str_eq(keys_of(rr->kvs, rr->n_kvs), "x=2 y=in z=else");
	for (size_t i = 0; i < rr->n_kvs; i++)
		cr_assert_eq(rr->kvs[i]->mod_revision, 3); /* one revision for all */
	ec_msg_free(rr);
}

Test(kv, txn_check_failures_change_nothing)
{
	put_("a", "1"); /* 2 */
	Etcdserverpb__PutRequest *p = tb_put("missing", NULL);
	p->ignore_value = true;
	cr_assert_eq(txn(tb_txn(0, 2, 0, tb_op_put(tb_put("b", "1")), tb_op_put(p)), NULL),
		     EC_KEY_NOT_FOUND);
	p = tb_put("c", "1");
	p->lease = 3;
	cr_assert_eq(txn(tb_txn(0, 2, 0, tb_op_put(tb_put("b", "1")), tb_op_put(p)), NULL),
		     EC_LEASE_NOT_FOUND);
	Etcdserverpb__RangeRequest *r = tb_range("a", NULL);
	r->revision = 3;
	cr_assert_eq(txn(tb_txn(0, 2, 0, tb_op_put(tb_put("b", "1")), tb_op_range(r)), NULL),
		     EC_FUTURE_REV);
	/* a failing op in a branch not taken does not matter */
	p = tb_put("missing", NULL);
	p->ignore_value = true;
	cr_assert_eq(txn(tb_txn(1, 1, 1, tb_cmp(TB_VERSION, TB_EQ, "a", NULL, 1), tb_op_put(tb_put("b", "1")),
				tb_op_put(p)),
			 NULL),
		     EC_OK);
	cr_assert_eq(ec_kv_revision(kv), 3);
	Etcdserverpb__RangeResponse *rr = do_range(tb_range("c", NULL));
	cr_assert_eq(rr->n_kvs, 0);
	ec_msg_free(rr);
}

Test(kv, txn_read_served_from_a_snapshot)
{
	put_("a", "1");
	Etcdserverpb__TxnRequest *t =
		tb_txn(1, 1, 1, tb_cmp(TB_VERSION, TB_EQ, "a", NULL, 1), tb_op_range(tb_range("a", NULL)),
		       tb_op_range(tb_range("b", NULL)));
	cr_assert(ec_txn_is_readonly(t));
	Etcdserverpb__TxnResponse *tr;
	cr_assert_eq(ec_kv_txn_read(kv, t, &H, &tr), EC_OK);
	cr_assert(tr->succeeded);
	check_hdr(tr->header, 2);
	Etcdserverpb__RangeResponse *rr = tr->responses[0]->response_range;
	cr_assert_str_eq(keys_of(rr->kvs, rr->n_kvs), "a=1");
	check_sub_hdr(rr->header, 2);
	ec_msg_free(tr);
	ec_msg_free(t);
	t = tb_txn(0, 1, 0, tb_op_txn(tb_txn(0, 0, 0)));
	cr_assert(!ec_txn_is_readonly(t)); /* a nested txn counts as a write */
	cr_assert_eq(ec_kv_txn_read(kv, t, &H, &tr), EC_BAD_REQUEST);
	ec_msg_free(t);
}

Test(kv, replay_is_skipped)
{
	put_("a", "1");
	put_("a", "2");
	cr_assert_eq(ec_kv_applied_index(kv), 2);
	ProtobufCMessage *r = (void *)1;
	int err = -1;
	Metastore__InternalRequest *ir = tb_ir(METASTORE__INTERNAL_REQUEST__REQUEST_PUT, tb_put("a", "old"));
	cr_assert_eq(ec_kv_apply(kv, 2, ir, &H, &r, &err), ST_OK);
	cr_assert_null(r);
	cr_assert_eq(err, EC_OK);
	cr_assert_eq(ec_kv_apply(kv, 1, ir, &H, &r, &err), ST_OK);
	cr_assert_null(r);
	ec_msg_free(ir);
	cr_assert_eq(ec_kv_revision(kv), 3);
	Etcdserverpb__RangeResponse *rr = do_range(tb_range("a", NULL));
	cr_assert_str_eq(keys_of(rr->kvs, rr->n_kvs), "a=2");
	ec_msg_free(rr);
	/* failed requests and empty entries still move the applied index */
	Etcdserverpb__PutRequest *p = tb_put("zz", NULL);
	p->ignore_value = true;
	cr_assert_eq(put_req(p, NULL), EC_KEY_NOT_FOUND);
	cr_assert_eq(ec_kv_applied_index(kv), 3);
	Metastore__InternalRequest empty = METASTORE__INTERNAL_REQUEST__INIT;
	cr_assert_eq(ec_kv_apply(kv, 4, &empty, &H, &r, &err), ST_OK);
	cr_assert_eq(err, EC_OK);
	cr_assert_null(r);
	cr_assert_eq(ec_kv_applied_index(kv), 4);
	cr_assert_eq(ec_kv_set_applied(kv, 9), ST_OK);
	cr_assert_eq(ec_kv_set_applied(kv, 5), ST_OK); /* behind: ignored */
	cr_assert_eq(ec_kv_applied_index(kv), 9);
	cr_assert_eq(ec_kv_revision(kv), 3);
}

Test(kv, restart_keeps_everything)
{
	put_("a", "1"); /* 2 */
	put_("b", "1"); /* 3 */
	put_("a", "2"); /* 4 */
	cr_assert_eq(del("b", NULL, false, NULL), EC_OK); /* 5 */
	cr_assert_eq(compact(3), EC_OK);
	close_all();
	open_all();
	cr_assert_eq(ec_kv_revision(kv), 5);
	cr_assert_eq(ec_kv_compact_revision(kv), 3);
	cr_assert_eq(ec_kv_applied_index(kv), idx);
	Etcdserverpb__RangeRequest *r = tb_range("a", "z");
	r->revision = 3;
	Etcdserverpb__RangeResponse *rr = do_range(r);
	cr_assert_str_eq(keys_of(rr->kvs, rr->n_kvs), "a=1 b=1");
	ec_msg_free(rr);
	r = tb_range("a", "z");
	r->revision = 2;
	cr_assert_eq(range(r, &rr), EC_COMPACTED);
	rr = do_range(tb_range("a", "z"));
	cr_assert_str_eq(keys_of(rr->kvs, rr->n_kvs), "a=2");
	cr_assert_eq(rr->kvs[0]->version, 2);
	ec_msg_free(rr);
	put_("b", "2");
	cr_assert_eq(ec_kv_revision(kv), 6);
}

/* Readers on other threads never see half a txn nor a revision going back. */
struct reader {
	volatile int *stop;
	int bad;
	int reads;
};

static void *reader_main(void *arg)
{
	struct reader *rd = arg;
	int64_t last = 0;
	while (!*rd->stop) {
		Etcdserverpb__RangeRequest *r = tb_range("p/", "p0");
		Etcdserverpb__RangeResponse *rr = NULL;
		int e = ec_kv_range(kv, r, &H, &rr);
		ec_msg_free(r);
		if (e != EC_OK) {
			rd->bad++;
			continue;
		}
		if (rr->header->revision < last)
			rd->bad++;
		last = rr->header->revision;
		if (rr->n_kvs == 2 && (rr->kvs[0]->value.len != rr->kvs[1]->value.len ||
				       memcmp(rr->kvs[0]->value.data, rr->kvs[1]->value.data,
					      rr->kvs[0]->value.len) != 0 ||
				       rr->kvs[0]->mod_revision != rr->header->revision))
			rd->bad++;
		if (rr->n_kvs != 2 && rr->header->revision > 1)
			rd->bad++;
		rd->reads++;
		ec_msg_free(rr);
	}
	return NULL;
}

Test(kv, concurrent_ranges_see_whole_txns)
{
	volatile int stop = 0;
	struct reader rd[3];
	pthread_t th[3];
	for (int i = 0; i < 3; i++) {
		rd[i] = (struct reader){.stop = &stop};
		pthread_create(&th[i], NULL, reader_main, &rd[i]);
	}
	for (int i = 0; i < 300; i++) {
		char v[16];
		snprintf(v, sizeof(v), "%d", i);
		cr_assert_eq(txn(tb_txn(0, 2, 0, tb_op_put(tb_put("p/a", v)), tb_op_put(tb_put("p/b", v))), NULL),
			     EC_OK);
		if (i % 50 == 49)
			cr_assert_eq(compact(ec_kv_revision(kv) - 1), EC_OK);
	}
	stop = 1;
	int reads = 0;
	for (int i = 0; i < 3; i++) {
		pthread_join(th[i], NULL);
		cr_assert_eq(rd[i].bad, 0, "reader %d saw %d bad results", i, rd[i].bad);
		reads += rd[i].reads;
	}
	cr_assert_gt(reads, 0);
}

/* etcd_mvcc_*_total: each storage call counts, as etcd's metricsTxnWrite
 * counts them; a request of more than one call is also one txn. */
Test(kv, stats_count_calls_as_etcd)
{
	ec_kv_stats s;
	ec_kv_stats_get(kv, &s);
	cr_assert_eq(s.ranges + s.puts + s.deletes + s.txns, 0);
	put_("a", "1");
	put_("b", "2");
	Etcdserverpb__PutRequest *p = tb_put("a", "3");
	p->prev_kv = true; /* a put that reads the previous version: one txn */
	Etcdserverpb__PutResponse *pr;
	cr_assert_eq(put_req(p, &pr), EC_OK);
	ec_msg_free(pr);
	cr_assert_eq(del("b", NULL, false, NULL), EC_OK);
	cr_assert_eq(del("zz", NULL, true, NULL), EC_OK); /* deletes nothing: still counted */
	Etcdserverpb__RangeResponse *rr;
	cr_assert_eq(range(tb_range("a", NULL), &rr), EC_OK);
	ec_msg_free(rr);
	ec_kv_stats_get(kv, &s);
	cr_assert_eq(s.puts, 3);
	cr_assert_eq(s.deletes, 2);
	cr_assert_eq(s.ranges, 3, "prev_kv put, prev_kv delete, range: %ju", (uintmax_t)s.ranges);
	cr_assert_eq(s.txns, 2);

	/* compare + put + range: three calls, one txn; a failed compare's branch
	 * with no ops: one range, no txn */
	Etcdserverpb__TxnResponse *tr;
	cr_assert_eq(txn(tb_txn(1, 2, 0, tb_cmp(TB_VERSION, TB_EQ, "a", NULL, 2),
				tb_op_put(tb_put("c", "1")), tb_op_range(tb_range("a", NULL))),
			 &tr),
		     EC_OK);
	cr_assert(tr->succeeded);
	ec_msg_free(tr);
	cr_assert_eq(txn(tb_txn(1, 1, 0, tb_cmp(TB_VERSION, TB_EQ, "a", NULL, 9),
				tb_op_put(tb_put("d", "1"))),
			 &tr),
		     EC_OK);
	cr_assert(!tr->succeeded);
	ec_msg_free(tr);
	ec_kv_stats_get(kv, &s);
	cr_assert_eq(s.puts, 4);
	cr_assert_eq(s.ranges, 6);
	cr_assert_eq(s.txns, 3);

	/* the keys_total gauge's count is not a range */
	int64_t n = -1;
	cr_assert_eq(ec_kv_count_keys(kv, &n), EC_OK);
	cr_assert_eq(n, 2, "a and c live: %jd", (intmax_t)n);
	ec_kv_stats_get(kv, &s);
	cr_assert_eq(s.ranges, 6);
}
