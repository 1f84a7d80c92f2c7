/*
 * Unit tests for ec_lease (the lessor): LeaseGrant / LeaseRevoke applied through
 * ec_kv_apply as the node loop does, Put/Txn with leases, the attached-key index,
 * restart recovery, keep-alive, time-to-live and expiry under a fake clock, over
 * a real RocksDB in a temp dir. Expected values follow etcd 3.4 (lease/lessor.go,
 * etcdserver/apply.go, v3rpc/lease.go).
 */
#include <criterion/criterion.h>

#include "etcdcompat/ec_errors.h"
#include "etcdcompat/ec_kv.h"
#include "etcdcompat/ec_lease.h"
#include "storage/st_db.h"
#include "test/etcdcompat/kv_testutil.h"
#include "test/storage/st_testutil.h"

static char *dir;
static st_db *db;
static ec_kv *kv;
static ec_lessor *les;
static uint64_t idx;
static int64_t clock_ms;
static const ec_hdr H = {.cluster_id = 0xc1, .member_id = 0xa1, .raft_term = 3};

static int64_t fake_now(void *arg)
{
	(void)arg;
	return clock_ms;
}

static void open_all(void)
{
	st_options o = {.create_if_missing = true};
	char err[512];
	cr_assert_eq(st_db_open(dir, &o, &db, err, sizeof(err)), ST_OK, "%s", err);
	cr_assert_eq(ec_kv_open(db, NULL, &kv), ST_OK);
	ec_lessor_config c = {.min_ttl = 2, .now_ms = fake_now};
	cr_assert_eq(ec_lessor_open(db, kv, &c, &les), ST_OK);
}

static void close_all(void)
{
	ec_lessor_close(les);
	ec_kv_close(kv);
	st_db_close(db);
}

static void setup(void)
{
	dir = tu_tmpdir();
	clock_ms = 1000000;
	idx = 0;
	open_all();
}

static void teardown(void)
{
	close_all();
	tu_rmrf(dir);
	free(dir);
}

TestSuite(lease, .init = setup, .fini = teardown);

static int apply(Metastore__InternalRequest *ir, void **resp)
{
	ProtobufCMessage *r = NULL;
	int err = -1;
	int rc = ec_kv_apply(kv, ++idx, ir, &H, &r, &err);
	ec_msg_free(ir);
	cr_assert_eq(rc, ST_OK, "apply storage error %s", st_strerror(rc));
	cr_assert_eq(ec_kv_applied_index(kv), idx);
	if (resp != NULL)
		*resp = r;
	else
		ec_msg_free(r);
	if (err != EC_OK)
		cr_assert_null(r);
	return err;
}

static int grant_req(int64_t id, int64_t ttl, uint64_t req_id, Etcdserverpb__LeaseGrantResponse **out)
{
	Etcdserverpb__LeaseGrantRequest *g = malloc(sizeof(*g));
	etcdserverpb__lease_grant_request__init(g);
	g->id = id;
	g->ttl = ttl;
	Metastore__InternalRequest *ir = malloc(sizeof(*ir));
	metastore__internal_request__init(ir);
	ir->id = req_id;
	ir->request_case = METASTORE__INTERNAL_REQUEST__REQUEST_LEASE_GRANT;
	ir->lease_grant = g;
	void *r = NULL;
	int e = apply(ir, &r);
	if (out != NULL)
		*out = r;
	else
		ec_msg_free(r);
	return e;
}

static int grant(int64_t id, int64_t ttl)
{
	return grant_req(id, ttl, 77, NULL);
}

static int lrevoke(int64_t id, Etcdserverpb__LeaseRevokeResponse **out)
{
	Etcdserverpb__LeaseRevokeRequest *rv = malloc(sizeof(*rv));
	etcdserverpb__lease_revoke_request__init(rv);
	rv->id = id;
	Metastore__InternalRequest *ir = malloc(sizeof(*ir));
	metastore__internal_request__init(ir);
	ir->request_case = METASTORE__INTERNAL_REQUEST__REQUEST_LEASE_REVOKE;
	ir->lease_revoke = rv;
	void *r = NULL;
	int e = apply(ir, &r);
	if (out != NULL)
		*out = r;
	else
		ec_msg_free(r);
	return e;
}

static int put_lease(const char *k, const char *v, int64_t lease)
{
	Etcdserverpb__PutRequest *p = tb_put(k, v);
	p->lease = lease;
	return apply(tb_ir(METASTORE__INTERNAL_REQUEST__REQUEST_PUT, p), NULL);
}

/* The lease of @k now (0: none), or -1 when @k does not exist. */
static int64_t key_lease(const char *k)
{
	Etcdserverpb__RangeRequest *r = tb_range(k, NULL);
	Etcdserverpb__RangeResponse *resp = NULL;
	cr_assert_eq(ec_kv_range(kv, r, &H, &resp), EC_OK);
	ec_msg_free(r);
	int64_t l = resp->n_kvs == 0 ? -1 : resp->kvs[0]->lease;
	ec_msg_free(resp);
	return l;
}

static Etcdserverpb__LeaseTimeToLiveResponse *ttl_of(int64_t id, bool keys)
{
	Etcdserverpb__LeaseTimeToLiveRequest r = ETCDSERVERPB__LEASE_TIME_TO_LIVE_REQUEST__INIT;
	r.id = id;
	r.keys = keys;
	Etcdserverpb__LeaseTimeToLiveResponse *resp = NULL;
	cr_assert_eq(ec_lessor_time_to_live(les, &r, &H, &resp), EC_OK);
	return resp;
}

/* The keys attached to @id joined with ",". */
static void keys_of(int64_t id, char *out, size_t cap)
{
	Etcdserverpb__LeaseTimeToLiveResponse *r = ttl_of(id, true);
	out[0] = 0;
	for (size_t i = 0; i < r->n_keys; i++) {
		size_t n = strlen(out);
		snprintf(out + n, cap - n, "%s%.*s", i ? "," : "", (int)r->keys[i].len,
			 (const char *)r->keys[i].data);
	}
	ec_msg_free(r);
}

Test(lease, grant_explicit_id_no_revision)
{
	Etcdserverpb__LeaseGrantResponse *r;
	cr_assert_eq(grant_req(100, 60, 5, &r), EC_OK);
	cr_assert_eq(r->id, 100);
	cr_assert_eq(r->ttl, 60);
	cr_assert_eq(r->header->revision, 1);
	cr_assert_eq(r->header->cluster_id, 0xc1);
	cr_assert_eq(r->header->member_id, 0xa1);
	cr_assert_eq(r->header->raft_term, 3);
	ec_msg_free(r);
	cr_assert_eq(ec_kv_revision(kv), 1, "a grant adds no revision");
	cr_assert(ec_lessor_exists(les, 100));
	cr_assert_not(ec_lessor_exists(les, 101));
}

Test(lease, grant_zero_id_from_request_id)
{
	Etcdserverpb__LeaseGrantResponse *r;
	uint64_t rid = 0x8123456789abcdefULL;
	cr_assert_eq(grant_req(0, 10, rid, &r), EC_OK);
	cr_assert_eq(r->id, (int64_t)(rid & INT64_MAX));
	ec_msg_free(r);
	/* the same request id again: the next free id, deterministically */
	cr_assert_eq(grant_req(0, 10, rid, &r), EC_OK);
	cr_assert_eq(r->id, (int64_t)(rid & INT64_MAX) + 1);
	ec_msg_free(r);
	cr_assert_eq(ec_lessor_count(les), 2);
}

Test(lease, grant_errors)
{
	cr_assert_eq(grant(5, 60), EC_OK);
	cr_assert_eq(grant(5, 60), EC_LEASE_EXIST);
	cr_assert_str_eq(ec_strerror(EC_LEASE_EXIST), "etcdserver: lease already exists");
	cr_assert_eq(grant(6, EC_LEASE_MAX_TTL + 1), EC_LEASE_TTL_TOO_LARGE);
	cr_assert_str_eq(ec_strerror(EC_LEASE_TTL_TOO_LARGE), "etcdserver: too large lease TTL");
	/* too large is checked before exists, as lessor.Grant */
	cr_assert_eq(grant(5, EC_LEASE_MAX_TTL + 1), EC_LEASE_TTL_TOO_LARGE);
	cr_assert_not(ec_lessor_exists(les, 6));
	cr_assert_eq(grant(6, EC_LEASE_MAX_TTL), EC_OK);
	cr_assert_eq(ec_kv_revision(kv), 1);
}

Test(lease, grant_min_ttl)
{
	Etcdserverpb__LeaseGrantResponse *r;
	cr_assert_eq(grant_req(7, 1, 1, &r), EC_OK);
	cr_assert_eq(r->ttl, 2, "raised to the minimum TTL");
	ec_msg_free(r);
	cr_assert_eq(grant_req(8, -5, 1, &r), EC_OK);
	cr_assert_eq(r->ttl, 2);
	ec_msg_free(r);
	cr_assert_eq(ec_lease_min_ttl(100, 1000), 2, "etcd defaults: 15 ticks of 100 ms -> 2 s");
	cr_assert_eq(ec_lease_min_ttl(100, 2000), 3);
	cr_assert_eq(ec_lease_min_ttl(50, 500), 1);
}

Test(lease, put_unknown_lease)
{
	cr_assert_eq(put_lease("k", "v", 1234), EC_LEASE_NOT_FOUND);
	cr_assert_eq(key_lease("k"), -1);
	cr_assert_eq(ec_kv_revision(kv), 1);
	/* inside a txn the whole txn fails */
	Etcdserverpb__PutRequest *p = tb_put("y", "2");
	p->lease = 1234;
	Etcdserverpb__TxnRequest *t = tb_txn(0, 2, 0, tb_op_put(tb_put("x", "1")), tb_op_put(p));
	cr_assert_eq(apply(tb_ir(METASTORE__INTERNAL_REQUEST__REQUEST_TXN, t), NULL), EC_LEASE_NOT_FOUND);
	cr_assert_eq(key_lease("x"), -1);
}

Test(lease, attach_detach)
{
	char keys[256];
	cr_assert_eq(grant(1, 60), EC_OK);
	cr_assert_eq(grant(2, 60), EC_OK);
	cr_assert_eq(put_lease("a", "1", 1), EC_OK);
	cr_assert_eq(put_lease("b", "1", 1), EC_OK);
	cr_assert_eq(put_lease("c", "1", 2), EC_OK);
	keys_of(1, keys, sizeof(keys));
	cr_assert_str_eq(keys, "a,b");
	/* put with another lease moves the key */
	cr_assert_eq(put_lease("b", "2", 2), EC_OK);
	keys_of(1, keys, sizeof(keys));
	cr_assert_str_eq(keys, "a");
	keys_of(2, keys, sizeof(keys));
	cr_assert_str_eq(keys, "b,c");
	/* ignore_lease keeps it */
	Etcdserverpb__PutRequest *p = tb_put("b", "3");
	p->ignore_lease = true;
	cr_assert_eq(apply(tb_ir(METASTORE__INTERNAL_REQUEST__REQUEST_PUT, p), NULL), EC_OK);
	cr_assert_eq(key_lease("b"), 2);
	keys_of(2, keys, sizeof(keys));
	cr_assert_str_eq(keys, "b,c");
	/* put without a lease detaches */
	cr_assert_eq(put_lease("c", "2", 0), EC_OK);
	keys_of(2, keys, sizeof(keys));
	cr_assert_str_eq(keys, "b");
	/* delete detaches */
	cr_assert_eq(apply(tb_ir(METASTORE__INTERNAL_REQUEST__REQUEST_DELETE_RANGE, tb_del("a", "z")), NULL),
		     EC_OK);
	keys_of(1, keys, sizeof(keys));
	cr_assert_str_eq(keys, "");
	keys_of(2, keys, sizeof(keys));
	cr_assert_str_eq(keys, "");
	/* a txn put attaches */
	Etcdserverpb__PutRequest *tp = tb_put("t", "1");
	tp->lease = 1;
	Etcdserverpb__TxnRequest *t = tb_txn(0, 1, 0, tb_op_put(tp));
	cr_assert_eq(apply(tb_ir(METASTORE__INTERNAL_REQUEST__REQUEST_TXN, t), NULL), EC_OK);
	keys_of(1, keys, sizeof(keys));
	cr_assert_str_eq(keys, "t");
	cr_assert_eq(key_lease("t"), 1);
}

Test(lease, revoke_deletes_keys_in_one_revision)
{
	cr_assert_eq(grant(9, 60), EC_OK);
	cr_assert_eq(put_lease("k1", "v", 9), EC_OK); /* rev 2 */
	cr_assert_eq(put_lease("k2", "v", 9), EC_OK); /* rev 3 */
	cr_assert_eq(put_lease("k3", "v", 0), EC_OK); /* rev 4 */
	Etcdserverpb__LeaseRevokeResponse *r;
	cr_assert_eq(lrevoke(9, &r), EC_OK);
	cr_assert_eq(r->header->revision, 5);
	cr_assert_eq(r->header->member_id, 0xa1);
	ec_msg_free(r);
	cr_assert_eq(ec_kv_revision(kv), 5, "both deletes in one revision");
	cr_assert_eq(key_lease("k1"), -1);
	cr_assert_eq(key_lease("k2"), -1);
	cr_assert_eq(key_lease("k3"), 0);
	cr_assert_not(ec_lessor_exists(les, 9));
	cr_assert_eq(lrevoke(9, NULL), EC_LEASE_NOT_FOUND);
	cr_assert_str_eq(ec_strerror(EC_LEASE_NOT_FOUND), "etcdserver: requested lease not found");
	cr_assert_eq(put_lease("k1", "v", 9), EC_LEASE_NOT_FOUND);
	Etcdserverpb__LeaseTimeToLiveResponse *t = ttl_of(9, true);
	cr_assert_eq(t->ttl, -1);
	cr_assert_eq(t->n_keys, 0);
	ec_msg_free(t);
}

Test(lease, revoke_without_keys_keeps_revision)
{
	cr_assert_eq(grant(3, 60), EC_OK);
	Etcdserverpb__LeaseRevokeResponse *r;
	cr_assert_eq(lrevoke(3, &r), EC_OK);
	cr_assert_eq(r->header->revision, 1);
	ec_msg_free(r);
	cr_assert_eq(ec_kv_revision(kv), 1);
	cr_assert_eq(lrevoke(1234, NULL), EC_LEASE_NOT_FOUND);
	cr_assert_eq(ec_kv_revision(kv), 1);
}

Test(lease, restart_recovers_leases_and_keys)
{
	cr_assert_eq(grant(11, 30), EC_OK);
	cr_assert_eq(grant(12, 40), EC_OK);
	cr_assert_eq(put_lease("x", "1", 11), EC_OK);
	cr_assert_eq(put_lease("y", "1", 11), EC_OK);
	cr_assert_eq(lrevoke(12, NULL), EC_OK);
	clock_ms += 25000; /* 5 s left on lease 11 */
	Etcdserverpb__LeaseTimeToLiveResponse *t = ttl_of(11, false);
	cr_assert_eq(t->ttl, 5);
	ec_msg_free(t);

	close_all();
	clock_ms += 100000; /* down for longer than the TTL */
	open_all();
	cr_assert_eq(ec_lessor_count(les), 1);
	cr_assert(ec_lessor_exists(les, 11));
	cr_assert_not(ec_lessor_exists(les, 12));
	t = ttl_of(11, true);
	cr_assert_eq(t->ttl, 30, "promote: a restart restarts the full TTL");
	cr_assert_eq(t->grantedttl, 30);
	cr_assert_eq(t->n_keys, 2);
	ec_msg_free(t);
	/* revoke after restart still finds the keys */
	cr_assert_eq(lrevoke(11, NULL), EC_OK);
	cr_assert_eq(key_lease("x"), -1);
	cr_assert_eq(key_lease("y"), -1);
	close_all();
	open_all();
	cr_assert_eq(ec_lessor_count(les), 0);
}

Test(lease, replayed_grant_is_skipped)
{
	cr_assert_eq(grant(21, 30), EC_OK);
	/* the same log index again (crash replay): nothing happens, no error */
	Etcdserverpb__LeaseGrantRequest *g = malloc(sizeof(*g));
	etcdserverpb__lease_grant_request__init(g);
	g->id = 21;
	g->ttl = 30;
	Metastore__InternalRequest *ir = malloc(sizeof(*ir));
	metastore__internal_request__init(ir);
	ir->request_case = METASTORE__INTERNAL_REQUEST__REQUEST_LEASE_GRANT;
	ir->lease_grant = g;
	ProtobufCMessage *r = NULL;
	int err = -1;
	cr_assert_eq(ec_kv_apply(kv, idx, ir, &H, &r, &err), ST_OK);
	cr_assert_eq(err, EC_OK);
	cr_assert_null(r);
	ec_msg_free(ir);
}

Test(lease, time_to_live_and_renew)
{
	cr_assert_eq(grant(31, 10), EC_OK);
	Etcdserverpb__LeaseTimeToLiveResponse *t = ttl_of(31, false);
	cr_assert_eq(t->id, 31);
	cr_assert_eq(t->ttl, 10);
	cr_assert_eq(t->grantedttl, 10);
	cr_assert_eq(t->header->revision, 1);
	cr_assert_eq(t->header->cluster_id, 0xc1);
	ec_msg_free(t);
	clock_ms += 3500;
	t = ttl_of(31, false);
	cr_assert_eq(t->ttl, 6, "6.5 s left truncates to 6");
	ec_msg_free(t);
	int64_t ttl = 0;
	cr_assert_eq(ec_lessor_renew(les, 31, &ttl), EC_OK);
	cr_assert_eq(ttl, 10);
	t = ttl_of(31, false);
	cr_assert_eq(t->ttl, 10);
	ec_msg_free(t);
	cr_assert_eq(ec_lessor_renew(les, 999, &ttl), EC_LEASE_NOT_FOUND);
	t = ttl_of(999, true);
	cr_assert_eq(t->id, 999);
	cr_assert_eq(t->ttl, -1);
	cr_assert_eq(t->grantedttl, 0);
	ec_msg_free(t);
}

Test(lease, expiry)
{
	cr_assert_eq(grant(41, 5), EC_OK);
	cr_assert_eq(grant(42, 10), EC_OK);
	cr_assert_eq(put_lease("e", "1", 41), EC_OK);
	int64_t ids[8];
	cr_assert_eq(ec_lessor_expired(les, ids, 8), 0);
	cr_assert_eq(ec_lessor_next_deadline(les), clock_ms + 5000);
	clock_ms += 4999;
	cr_assert_eq(ec_lessor_expired(les, ids, 8), 0);
	clock_ms += 1;
	cr_assert_eq(ec_lessor_expired(les, ids, 8), 1);
	cr_assert_eq(ids[0], 41);
	/* handed out: not again until the retry interval has passed */
	cr_assert_eq(ec_lessor_expired(les, ids, 8), 0);
	/* expired but not yet revoked: still exists, TTL 0, keep-alive refused */
	cr_assert(ec_lessor_exists(les, 41));
	Etcdserverpb__LeaseTimeToLiveResponse *t = ttl_of(41, true);
	cr_assert_eq(t->ttl, 0);
	cr_assert_eq(t->grantedttl, 5);
	cr_assert_eq(t->n_keys, 1);
	ec_msg_free(t);
	int64_t ttl;
	cr_assert_eq(ec_lessor_renew(les, 41, &ttl), EC_LEASE_NOT_FOUND);
	clock_ms += EC_LEASE_REVOKE_RETRY_MS;
	cr_assert_eq(ec_lessor_expired(les, ids, 8), 1, "retried");
	/* lease 42 kept alive does not expire */
	cr_assert_eq(ec_lessor_renew(les, 42, &ttl), EC_OK);
	cr_assert_eq(lrevoke(41, NULL), EC_OK);
	cr_assert_eq(key_lease("e"), -1);
	clock_ms += 9000;
	cr_assert_eq(ec_lessor_expired(les, ids, 8), 0);
	clock_ms += 1000;
	cr_assert_eq(ec_lessor_expired(les, ids, 8), 1);
	cr_assert_eq(ids[0], 42);
}

Test(lease, leases_sorted_by_deadline)
{
	cr_assert_eq(grant(51, 60), EC_OK);
	cr_assert_eq(grant(52, 10), EC_OK);
	cr_assert_eq(grant(53, 30), EC_OK);
	Etcdserverpb__LeaseLeasesResponse *r = NULL;
	cr_assert_eq(ec_lessor_leases(les, &H, &r), EC_OK);
	cr_assert_eq(r->n_leases, 3);
	cr_assert_eq(r->leases[0]->id, 52);
	cr_assert_eq(r->leases[1]->id, 53);
	cr_assert_eq(r->leases[2]->id, 51);
	cr_assert_eq(r->header->revision, 1);
	ec_msg_free(r);
	cr_assert_eq(lrevoke(51, NULL), EC_OK);
	cr_assert_eq(lrevoke(52, NULL), EC_OK);
	cr_assert_eq(lrevoke(53, NULL), EC_OK);
	cr_assert_eq(ec_lessor_leases(les, &H, &r), EC_OK);
	cr_assert_eq(r->n_leases, 0);
	ec_msg_free(r);
}

Test(lease, without_lessor_unimplemented)
{
	ec_lessor_close(les);
	les = NULL;
	cr_assert_eq(grant(1, 60), EC_UNIMPLEMENTED);
	cr_assert_eq(put_lease("k", "v", 1), EC_LEASE_NOT_FOUND);
	ec_lessor_config c = {.min_ttl = 2, .now_ms = fake_now};
	cr_assert_eq(ec_lessor_open(db, kv, &c, &les), ST_OK);
}
