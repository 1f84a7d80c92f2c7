/*
 * Unit tests for storage's bulk load (st_load_*, st_mvcc.h): a history loaded
 * record by record reads back exactly as if it had been written by write
 * transactions (versions, tombstones, history, revision state), leases get
 * their keys attached from the keyspace, an unfinished compaction is finished,
 * and misuse is refused.
 */
#include <criterion/criterion.h>

#include "storage/st_db.h"
#include "storage/st_mvcc.h"
#include "test/storage/st_testutil.h"

static char *dir;
static st_db *db;

static void setup(void)
{
	dir = tu_tmpdir();
	st_options o = {.create_if_missing = true};
	char err[512];
	cr_assert_eq(st_db_open(dir, &o, &db, err, sizeof(err)), ST_OK, "%s", err);
}

static void teardown(void)
{
	st_db_close(db);
	tu_rmrf(dir);
	free(dir);
}

TestSuite(load, .init = setup, .fini = teardown);

static st_kv put(const char *k, const char *v, int64_t main, int64_t sub, int64_t create,
		 int64_t ver, int64_t lease)
{
	return (st_kv){.key = (const uint8_t *)k, .key_len = strlen(k), .val = (const uint8_t *)v,
		       .val_len = strlen(v), .mod_rev = main, .sub = sub, .create_rev = create,
		       .version = ver, .lease = lease};
}

static st_kv tomb(const char *k, int64_t main, int64_t sub)
{
	return (st_kv){.key = (const uint8_t *)k, .key_len = strlen(k), .mod_rev = main, .sub = sub,
		       .tombstone = true};
}

static int hist_text(void *arg, const st_kv *kv)
{
	char *s = arg;
	sprintf(s + strlen(s), "%lld.%lld%s:%.*s=%.*s(c%lld,v%lld,l%lld) ", (long long)kv->mod_rev,
		(long long)kv->sub, kv->tombstone ? "t" : "", (int)kv->key_len, kv->key,
		(int)kv->val_len, kv->val ? (const char *)kv->val : "", (long long)kv->create_rev,
		(long long)kv->version, (long long)kv->lease);
	return 0;
}

static int key_text(void *arg, const uint8_t *k, size_t kl)
{
	char *s = arg;
	sprintf(s + strlen(s), "%.*s ", (int)kl, k);
	return 0;
}

Test(load, history_reads_back)
{
	st_load *l;
	cr_assert_eq(st_load_begin(db, &l), ST_OK);
	st_kv recs[] = {
		put("a", "1", 2, 0, 2, 1, 0), put("b", "2", 3, 0, 3, 1, 7), put("a", "3", 4, 0, 2, 2, 0),
		tomb("b", 5, 0),              put("c", "x", 6, 0, 6, 1, 7), put("d", "y", 6, 1, 6, 1, 9),
	};
	for (size_t i = 0; i < sizeof recs / sizeof *recs; i++)
		cr_assert_eq(st_load_change(l, &recs[i]), ST_OK);
	cr_assert_eq(st_load_lease(l, 7, 60), ST_OK);
	cr_assert_eq(st_load_finish(l, 6, 0, 0), ST_OK);

	st_kv_state s;
	st_kv_state_get(db, &s);
	cr_assert_eq(s.rev, 6);
	st_txn *t;
	cr_assert_eq(st_txn_begin(db, false, &t), ST_OK);
	char h[1024] = "";
	cr_assert_eq(st_txn_history(t, 1, 6, hist_text, h), ST_OK);
	cr_assert_str_eq(h, "2.0:a=1(c2,v1,l0) 3.0:b=2(c3,v1,l7) 4.0:a=3(c2,v2,l0) 5.0t:b=(c0,v0,l0) "
			    "6.0:c=x(c6,v1,l7) 6.1:d=y(c6,v1,l9) ");
	st_kv kv;
	cr_assert_eq(st_txn_get(t, (const uint8_t *)"a", 1, &kv), ST_OK);
	cr_assert_eq(kv.version, 2);
	cr_assert_eq(st_txn_get(t, (const uint8_t *)"b", 1, &kv), ST_ENOTFOUND);
	/* lease 7: only the live key c (b is deleted); lease 9 was not loaded */
	char k[256] = "";
	cr_assert_eq(st_txn_lease_keys(t, 7, key_text, k), ST_OK);
	cr_assert_str_eq(k, "c ");
	k[0] = '\0';
	cr_assert_eq(st_txn_lease_keys(t, 9, key_text, k), ST_OK);
	cr_assert_str_eq(k, "");
	st_txn_abort(t);

	/* the store goes on from there: the next write is revision 7 */
	cr_assert_eq(st_txn_begin(db, true, &t), ST_OK);
	cr_assert_eq(st_txn_put(t, (const uint8_t *)"a", 1, (const uint8_t *)"4", 1, 0), ST_OK);
	cr_assert_eq(st_txn_commit(t, 1), ST_OK);
	cr_assert_eq(st_txn_begin(db, false, &t), ST_OK);
	cr_assert_eq(st_txn_get(t, (const uint8_t *)"a", 1, &kv), ST_OK);
	cr_assert_eq(kv.mod_rev, 7);
	cr_assert_eq(kv.version, 3);
	cr_assert_eq(kv.create_rev, 2);
	st_txn_abort(t);
}

Test(load, unfinished_compaction_is_finished)
{
	st_load *l;
	cr_assert_eq(st_load_begin(db, &l), ST_OK);
	st_kv recs[] = {put("a", "1", 2, 0, 2, 1, 0), put("a", "2", 3, 0, 2, 2, 0), tomb("a", 4, 0),
			put("b", "1", 5, 0, 5, 1, 0)};
	for (size_t i = 0; i < 4; i++)
		cr_assert_eq(st_load_change(l, &recs[i]), ST_OK);
	/* scheduled at 4, finished at 0: as etcd resumes it */
	cr_assert_eq(st_load_finish(l, 5, 4, 0), ST_OK);
	st_kv_state s;
	st_kv_state_get(db, &s);
	cr_assert_eq(s.compact_rev, 4);
	cr_assert_eq(s.compact_done, 4);
	st_txn *t;
	cr_assert_eq(st_txn_begin(db, false, &t), ST_OK);
	char h[512] = "";
	cr_assert_eq(st_txn_records(t, 10, hist_text, h), ST_OK);
	cr_assert_str_eq(h, "5.0:b=1(c5,v1,l0) ");
	st_txn_abort(t);
}

Test(load, misuse_is_refused)
{
	st_load *l;
	cr_assert_eq(st_load_begin(db, &l), ST_OK);
	st_kv a = put("a", "1", 3, 0, 3, 1, 0), early = put("b", "1", 2, 0, 2, 1, 0);
	st_kv bad = put("c", "1", 4, 0, 5, 1, 0); /* created after its own revision */
	st_kv empty = put("", "1", 5, 0, 5, 1, 0);
	cr_assert_eq(st_load_change(l, &a), ST_OK);
	cr_assert_eq(st_load_change(l, &a), ST_EINVAL);
	cr_assert_eq(st_load_change(l, &early), ST_EINVAL);
	cr_assert_eq(st_load_change(l, &bad), ST_EINVAL);
	cr_assert_eq(st_load_change(l, &empty), ST_EINVAL);
	cr_assert_eq(st_load_lease(l, 5, 1), ST_OK);
	cr_assert_eq(st_load_lease(l, 5, 1), ST_EINVAL);
	cr_assert_eq(st_load_lease(l, 0, 1), ST_EINVAL);
	cr_assert_eq(st_load_finish(l, 2, 0, 0), ST_EINVAL); /* below a loaded revision */
	/* nothing was written: still fresh; once loaded, it is not any more */
	cr_assert_eq(st_load_begin(db, &l), ST_OK);
	cr_assert_eq(st_load_change(l, &a), ST_OK);
	cr_assert_eq(st_load_finish(l, 3, 0, 0), ST_OK);
	cr_assert_eq(st_load_begin(db, &l), ST_EINVAL);
}
