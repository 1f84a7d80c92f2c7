/*
 * test_ec_alarm: the replicated alarm set (apply GET/ACTIVATE/DEACTIVATE, the
 * stored record across reopen, a dropped apply group undone by reload), the
 * NOSPACE / CORRUPT apply gate, etcd's text form of an alarm, and the quota
 * math (etcd's costs and the strict "size + cost < quota").
 */
#include <criterion/criterion.h>
#include <string.h>

#include "etcdcompat/ec_alarm.h"
#include "etcdcompat/ec_errors.h"
#include "etcdcompat/ec_kv.h"
#include "storage/st_db.h"
#include "storage/st_mvcc.h"
#include "test/etcdcompat/kv_testutil.h"
#include "test/storage/st_testutil.h"

static char *dir;
static st_db *db;
static ec_alarms *al;

static void open_all(void)
{
	st_options o = {.create_if_missing = true};
	char err[512];
	cr_assert_eq(st_db_open(dir, &o, &db, err, sizeof(err)), ST_OK, "%s", err);
	cr_assert_eq(ec_alarms_open(db, &al), ST_OK);
}

static void close_all(void)
{
	ec_alarms_close(al);
	st_db_close(db);
}

static void setup(void)
{
	dir = tu_tmpdir();
	open_all();
}

static void teardown(void)
{
	close_all();
	tu_rmrf(dir);
	free(dir);
}

TestSuite(alarm, .init = setup, .fini = teardown);

/* Apply one Alarm request in its own apply group; returns the response. */
static Etcdserverpb__AlarmResponse *alarm_do(int action, uint64_t member, int type, bool *raised,
                                             bool *cleared)
{
	Etcdserverpb__AlarmRequest r = ETCDSERVERPB__ALARM_REQUEST__INIT;
	r.action = action;
	r.memberid = member;
	r.alarm = type;
	Etcdserverpb__AlarmResponse *resp = NULL;
	cr_assert_eq(st_apply_begin(db), ST_OK);
	cr_assert_eq(ec_alarms_apply(al, &r, &resp, raised, cleared), 0);
	cr_assert_eq(st_apply_commit(db), ST_OK);
	cr_assert_not_null(resp);
	cr_assert_null(resp->header, "etcd's AlarmResponse carries no header");
	return resp;
}

#define ACT ETCDSERVERPB__ALARM_REQUEST__ALARM_ACTION__ACTIVATE
#define DEACT ETCDSERVERPB__ALARM_REQUEST__ALARM_ACTION__DEACTIVATE
#define GET ETCDSERVERPB__ALARM_REQUEST__ALARM_ACTION__GET
#define NOSPACE ETCDSERVERPB__ALARM_TYPE__NOSPACE
#define CORRUPT ETCDSERVERPB__ALARM_TYPE__CORRUPT
#define NONE ETCDSERVERPB__ALARM_TYPE__NONE

static void expect_resp(Etcdserverpb__AlarmResponse *r, size_t n, const uint64_t *members,
                        const int *types)
{
	cr_assert_eq(r->n_alarms, n);
	for (size_t i = 0; i < n; i++) {
		cr_expect_eq(r->alarms[i]->memberid, members[i], "alarm %zu", i);
		cr_expect_eq((int)r->alarms[i]->alarm, types[i], "alarm %zu", i);
	}
	ec_msg_free(r);
}

Test(alarm, activate_get_deactivate)
{
	cr_assert_not(ec_alarms_any(al));
	bool raised = false, cleared = false;
	expect_resp(alarm_do(ACT, 7, NOSPACE, &raised, &cleared), 1, (uint64_t[]){7}, (int[]){NOSPACE});
	cr_expect(raised);
	cr_expect(ec_alarms_any(al));
	cr_expect(ec_alarms_active(al, NOSPACE));
	cr_expect_not(ec_alarms_active(al, CORRUPT));
	/* the same alarm again: listed, nothing raised */
	expect_resp(alarm_do(ACT, 7, NOSPACE, &raised, &cleared), 1, (uint64_t[]){7}, (int[]){NOSPACE});
	cr_expect_not(raised);
	/* a second member's NOSPACE is not "the first of its type" */
	expect_resp(alarm_do(ACT, 3, NOSPACE, &raised, &cleared), 1, (uint64_t[]){3}, (int[]){NOSPACE});
	cr_expect_not(raised);
	expect_resp(alarm_do(ACT, 0, CORRUPT, &raised, &cleared), 1, (uint64_t[]){0}, (int[]){CORRUPT});
	cr_expect(raised);
	/* GET NONE: all, sorted by (type, member); GET NOSPACE: those only */
	expect_resp(alarm_do(GET, 0, NONE, NULL, NULL), 3, (uint64_t[]){3, 7, 0},
	            (int[]){NOSPACE, NOSPACE, CORRUPT});
	expect_resp(alarm_do(GET, 0, NOSPACE, NULL, NULL), 2, (uint64_t[]){3, 7},
	            (int[]){NOSPACE, NOSPACE});
	/* deactivate: the last one of a type clears it */
	expect_resp(alarm_do(DEACT, 7, NOSPACE, &raised, &cleared), 1, (uint64_t[]){7}, (int[]){NOSPACE});
	cr_expect_not(cleared);
	cr_expect(ec_alarms_active(al, NOSPACE));
	expect_resp(alarm_do(DEACT, 3, NOSPACE, &raised, &cleared), 1, (uint64_t[]){3}, (int[]){NOSPACE});
	cr_expect(cleared);
	cr_expect_not(ec_alarms_active(al, NOSPACE));
	/* one that is not active: empty answer */
	expect_resp(alarm_do(DEACT, 3, NOSPACE, &raised, &cleared), 0, NULL, NULL);
	cr_expect_not(cleared);
	/* NONE is not an alarm */
	expect_resp(alarm_do(ACT, 9, NONE, &raised, NULL), 0, NULL, NULL);
	cr_expect_not(raised);
	expect_resp(alarm_do(GET, 0, NONE, NULL, NULL), 1, (uint64_t[]){0}, (int[]){CORRUPT});
}

Test(alarm, stored_across_reopen_and_reload)
{
	ec_msg_free(alarm_do(ACT, 42, NOSPACE, NULL, NULL));
	close_all();
	open_all();
	cr_expect(ec_alarms_active(al, NOSPACE));
	Etcdserverpb__AlarmMember *v = NULL;
	size_t n = 0;
	cr_assert_eq(ec_alarms_list(al, NONE, &v, &n), ST_OK);
	cr_assert_eq(n, 1);
	cr_expect_eq(v[0].memberid, 42);
	free(v);

	/* a change in a group that is dropped: reload brings back the stored set */
	Etcdserverpb__AlarmRequest r = ETCDSERVERPB__ALARM_REQUEST__INIT;
	r.action = DEACT;
	r.memberid = 42;
	r.alarm = NOSPACE;
	Etcdserverpb__AlarmResponse *resp = NULL;
	cr_assert_eq(st_apply_begin(db), ST_OK);
	cr_assert_eq(ec_alarms_apply(al, &r, &resp, NULL, NULL), 0);
	ec_msg_free(resp);
	cr_expect_not(ec_alarms_active(al, NOSPACE), "in memory at once");
	st_apply_abort(db);
	cr_assert_eq(ec_alarms_reload(al), ST_OK);
	cr_expect(ec_alarms_active(al, NOSPACE), "the dropped change is gone");
}

/* tb_ir for any case (the oneof members share one slot; tb_ir sets the KV ones). */
static Metastore__InternalRequest *ir_of(int kind, void *msg)
{
	Metastore__InternalRequest *r = tb_ir(kind, msg);
	r->put = msg;
	return r;
}

Test(alarm, gate)
{
	Metastore__InternalRequest *put = ir_of(METASTORE__INTERNAL_REQUEST__REQUEST_PUT, tb_put("k", "v"));
	Metastore__InternalRequest *del = ir_of(METASTORE__INTERNAL_REQUEST__REQUEST_DELETE_RANGE,
	                                        tb_del("k", NULL));
	Metastore__InternalRequest *cmp = ir_of(METASTORE__INTERNAL_REQUEST__REQUEST_COMPACTION,
	                                        tb_compact(1));
	Metastore__InternalRequest *txn_put = ir_of(METASTORE__INTERNAL_REQUEST__REQUEST_TXN,
	                                            tb_txn(0, 0, 1, tb_op_put(tb_put("k", "v"))));
	Metastore__InternalRequest *txn_get = ir_of(METASTORE__INTERNAL_REQUEST__REQUEST_TXN,
	                                            tb_txn(0, 1, 0, tb_op_range(tb_range("k", NULL))));
	Etcdserverpb__LeaseGrantRequest *lg = malloc(sizeof(*lg));
	etcdserverpb__lease_grant_request__init(lg);
	Metastore__InternalRequest *grant = ir_of(METASTORE__INTERNAL_REQUEST__REQUEST_LEASE_GRANT, lg);
	Etcdserverpb__LeaseRevokeRequest *lr = malloc(sizeof(*lr));
	etcdserverpb__lease_revoke_request__init(lr);
	Metastore__InternalRequest *revoke = ir_of(METASTORE__INTERNAL_REQUEST__REQUEST_LEASE_REVOKE, lr);
	Metastore__InternalRequest *all[] = {put, del, cmp, txn_put, txn_get, grant, revoke};

	for (size_t i = 0; i < 7; i++)
		cr_expect_eq(ec_alarms_gate(al, all[i]), EC_OK, "no alarm: request %zu", i);
	ec_msg_free(alarm_do(ACT, 1, NOSPACE, NULL, NULL));
	/* applierV3Capped */
	int capped[] = {EC_NO_SPACE, EC_OK, EC_OK, EC_NO_SPACE, EC_OK, EC_NO_SPACE, EC_OK};
	for (size_t i = 0; i < 7; i++)
		cr_expect_eq(ec_alarms_gate(al, all[i]), capped[i], "NOSPACE: request %zu", i);
	ec_msg_free(alarm_do(ACT, 0, CORRUPT, NULL, NULL));
	/* applierV3Corrupt refuses every one of these */
	for (size_t i = 0; i < 7; i++)
		cr_expect_eq(ec_alarms_gate(al, all[i]), EC_CORRUPT, "CORRUPT: request %zu", i);
	ec_msg_free(alarm_do(DEACT, 1, NOSPACE, NULL, NULL));
	ec_msg_free(alarm_do(DEACT, 0, CORRUPT, NULL, NULL));
	for (size_t i = 0; i < 7; i++) {
		cr_expect_eq(ec_alarms_gate(al, all[i]), EC_OK, "disarmed: request %zu", i);
		ec_msg_free(all[i]);
	}
}

Test(alarm, strings)
{
	char buf[64];
	Etcdserverpb__AlarmMember m = ETCDSERVERPB__ALARM_MEMBER__INIT;
	m.memberid = 13668033151171901709u;
	m.alarm = NOSPACE;
	cr_expect_str_eq(ec_alarm_string(&m, buf, sizeof buf), "memberID:13668033151171901709 alarm:NOSPACE ");
	m.memberid = 0;
	m.alarm = CORRUPT;
	cr_expect_str_eq(ec_alarm_string(&m, buf, sizeof buf), "alarm:CORRUPT ");
	cr_expect_str_eq(ec_alarm_type_name(NONE), "NONE");
	cr_expect_null(ec_alarm_type_name(7));
}

Test(alarm, quota)
{
	cr_expect_eq(ec_quota_bytes(0), INT64_C(2147483648));
	cr_expect_eq(ec_quota_bytes(-5), -1);
	cr_expect_eq(ec_quota_bytes(53248), 53248);

	Metastore__InternalRequest *put = tb_ir(METASTORE__INTERNAL_REQUEST__REQUEST_PUT,
	                                        tb_put("key", "value12"));
	cr_expect_eq(ec_quota_cost(put), 256 + 3 + 7);
	/* a txn costs its larger branch's puts */
	Metastore__InternalRequest *txn = tb_ir(METASTORE__INTERNAL_REQUEST__REQUEST_TXN,
	        tb_txn(0, 2, 1, tb_op_put(tb_put("a", "1")), tb_op_range(tb_range("a", NULL)),
	               tb_op_put(tb_put("bb", "2222"))));
	cr_expect_eq(ec_quota_cost(txn), 256 + 2 + 4);
	Etcdserverpb__LeaseGrantRequest *lg = malloc(sizeof(*lg));
	etcdserverpb__lease_grant_request__init(lg);
	Metastore__InternalRequest *grant = ir_of(METASTORE__INTERNAL_REQUEST__REQUEST_LEASE_GRANT, lg);
	cr_expect_eq(ec_quota_cost(grant), 64);
	Metastore__InternalRequest *del = tb_ir(METASTORE__INTERNAL_REQUEST__REQUEST_DELETE_RANGE,
	                                        tb_del("a", NULL));
	cr_expect_eq(ec_quota_cost(del), 0);

	cr_expect(ec_quota_fits(1000, 700, 299));
	cr_expect_not(ec_quota_fits(1000, 700, 300), "etcd: size + cost < quota, strictly");
	cr_expect(ec_quota_fits(1000, 5000, 0), "a request that costs nothing always fits");
	cr_expect(ec_quota_fits(-1, INT64_C(1) << 50, 300), "no quota");
	ec_msg_free(put);
	ec_msg_free(txn);
	ec_msg_free(grant);
	ec_msg_free(del);
}
