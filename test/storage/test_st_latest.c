/*
 * test_st_latest: the newest-version cache on its own (hits, two ways per set,
 * replacement of the less recently used way, long keys, clear), the key
 * filter (its walk of the keys on disk, "never" only for keys never written),
 * and both through
 * st_mvcc: every write txn that finds a key in the cache must compute the same
 * create revision, version and lease as a lookup in RocksDB would, across
 * deletes, re-creates, several changes of one key in a txn, apply groups that
 * commit or are thrown away, and a bulk load behind the cache.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "st_testutil.h"
#include "storage/st_db.h"
#include "storage/st_internal.h"
#include "storage/st_latest.h"
#include "storage/st_mvcc.h"

#define S(x) (const uint8_t *)(x), strlen(x)

static st_latest_rec rec(int64_t create, int64_t mod, int64_t ver, int64_t lease)
{
	return (st_latest_rec){.live = true, .create_rev = create, .mod_rev = mod, .version = ver,
			       .lease = lease};
}

Test(latest, set_get_update_and_clear)
{
	st_latest c;
	cr_assert_eq(st__latest_init(&c, 64), 0);
	st_latest_rec r;
	cr_assert_not(st__latest_get(&c, S("a"), &r));
	st_latest_rec a = rec(2, 5, 3, 7);
	st__latest_set(&c, S("a"), &a);
	cr_assert(st__latest_get(&c, S("a"), &r));
	cr_assert(r.live && r.create_rev == 2 && r.mod_rev == 5 && r.version == 3 && r.lease == 7);
	st_latest_rec gone = {0};
	st__latest_set(&c, S("a"), &gone);
	cr_assert(st__latest_get(&c, S("a"), &r));
	cr_assert_not(r.live, "a deleted key is cached as not live");
	cr_assert_not(st__latest_get(&c, S("ab"), &r), "keys match whole, not by prefix");
	cr_assert_not(st__latest_get(&c, (const uint8_t *)"", 0, &r));
	st__latest_set(&c, (const uint8_t *)"", 0, &a);
	cr_assert(st__latest_get(&c, (const uint8_t *)"", 0, &r), "the empty key is a key");
	cr_assert_eq(c.hits, 3);
	st__latest_clear(&c);
	cr_assert_not(st__latest_get(&c, S("a"), &r));
	cr_assert_not(st__latest_get(&c, (const uint8_t *)"", 0, &r));
	st__latest_free(&c);
}

Test(latest, a_set_holds_two_keys_and_drops_the_less_recently_used)
{
	st_latest c;
	cr_assert_eq(st__latest_init(&c, 1), 0, "one set: every key competes");
	cr_assert_eq(c.sets, 1);
	st_latest_rec r, x = rec(1, 1, 1, 0), y = rec(2, 2, 1, 0), z = rec(3, 3, 1, 0);
	st__latest_set(&c, S("x"), &x);
	st__latest_set(&c, S("y"), &y);
	cr_assert(st__latest_get(&c, S("x"), &r) && r.create_rev == 1, "x used last now");
	st__latest_set(&c, S("z"), &z);
	cr_assert(st__latest_get(&c, S("x"), &r) && r.create_rev == 1);
	cr_assert(st__latest_get(&c, S("z"), &r) && r.create_rev == 3);
	cr_assert_not(st__latest_get(&c, S("y"), &r), "y was the less recently used way");
	st__latest_free(&c);
}

Test(latest, long_keys_and_an_off_cache_never_answer)
{
	st_latest c;
	cr_assert_eq(st__latest_init(&c, 8), 0);
	uint8_t big[ST_LATEST_MAX_KEY + 1];
	memset(big, 'k', sizeof(big));
	st_latest_rec r, a = rec(1, 1, 1, 0);
	st__latest_set(&c, big, sizeof(big), &a);
	cr_assert_not(st__latest_get(&c, big, sizeof(big), &r));
	st__latest_set(&c, big, ST_LATEST_MAX_KEY, &a);
	cr_assert(st__latest_get(&c, big, ST_LATEST_MAX_KEY, &r), "the limit itself is cached");
	st__latest_free(&c);
	cr_assert_eq(st__latest_init(&c, 0), 0);
	st__latest_set(&c, S("a"), &a);
	cr_assert_not(st__latest_get(&c, S("a"), &r), "0 sets: off");
	st__latest_free(&c);
}

Test(latest, many_keys_in_a_small_cache_replace_each_other_safely)
{
	st_latest c;
	cr_assert_eq(st__latest_init(&c, 16), 0);
	char k[32];
	for (int i = 0; i < 1000; i++) {
		snprintf(k, sizeof(k), "key-%d-%s", i, i % 3 ? "long-enough-to-grow" : "");
		st_latest_rec a = rec(i + 1, i + 1, 1, i);
		st__latest_set(&c, S(k), &a);
		st_latest_rec r;
		cr_assert(st__latest_get(&c, S(k), &r) && r.lease == i, "the last set is there");
	}
	int found = 0;
	for (int i = 0; i < 1000; i++) {
		snprintf(k, sizeof(k), "key-%d-%s", i, i % 3 ? "long-enough-to-grow" : "");
		st_latest_rec r;
		if (st__latest_get(&c, S(k), &r)) {
			cr_assert_eq(r.lease, i, "a hit is never another key's record");
			found++;
		}
	}
	cr_assert_leq(found, 32, "at most 2 per set");
	st__latest_free(&c);
}

/* ---- through st_mvcc ---- */

static char *dir;
static st_db *db;
static uint64_t next_index;

static void setup(void)
{
	dir = tu_tmpdir();
	st_options o = {.create_if_missing = true};
	char err[512];
	cr_assert_eq(st_db_open(dir, &o, &db, err, sizeof(err)), ST_OK, "%s", err);
	next_index = 1;
}

static void teardown(void)
{
	st_db_close(db);
	tu_rmrf(dir);
	free(dir);
}

static void put1(const char *k, const char *v, int64_t lease)
{
	st_txn *t;
	cr_assert_eq(st_txn_begin(db, true, &t), ST_OK);
	cr_assert_eq(st_txn_put(t, S(k), S(v), lease), ST_OK);
	cr_assert_eq(st_txn_commit(t, next_index++), ST_OK);
}

static void del1(const char *k)
{
	st_txn *t;
	int64_t n;
	cr_assert_eq(st_txn_begin(db, true, &t), ST_OK);
	cr_assert_eq(st_txn_delete_range(t, S(k), NULL, 0, &n), ST_OK);
	cr_assert_eq(st_txn_commit(t, next_index++), ST_OK);
}

/* "create/mod/version/lease" of @k as stored (a read txn: never the cache),
 * and what a write txn's st_txn_get_meta says; they must agree. */
static void expect(const char *k, const char *want)
{
	char got[64] = "absent", meta[64] = "absent";
	st_txn *t;
	st_kv kv;
	cr_assert_eq(st_txn_begin(db, false, &t), ST_OK);
	if (st_txn_get(t, S(k), &kv) == ST_OK)
		snprintf(got, sizeof(got), "%lld/%lld/%lld/%lld", (long long)kv.create_rev,
			 (long long)kv.mod_rev, (long long)kv.version, (long long)kv.lease);
	st_txn_abort(t);
	cr_assert_eq(st_txn_begin(db, true, &t), ST_OK);
	int rc = st_txn_get_meta(t, S(k), &kv);
	cr_assert(rc == ST_OK || rc == ST_ENOTFOUND);
	if (rc == ST_OK) {
		cr_assert_null(kv.val);
		snprintf(meta, sizeof(meta), "%lld/%lld/%lld/%lld", (long long)kv.create_rev,
			 (long long)kv.mod_rev, (long long)kv.version, (long long)kv.lease);
	}
	st_txn_abort(t);
	cr_assert_str_eq(got, want, "stored %s", k);
	cr_assert_str_eq(meta, want, "meta %s", k);
}

TestSuite(latest_mvcc, .init = setup, .fini = teardown);

Test(latest_mvcc, versions_follow_puts_deletes_and_recreates)
{
	expect("a", "absent");
	put1("a", "1", 0);             /* rev 2 */
	expect("a", "2/2/1/0");
	put1("a", "2", 5);             /* rev 3 */
	put1("a", "3", 0);             /* rev 4 */
	expect("a", "2/4/3/0");
	del1("a");                     /* rev 5 */
	expect("a", "absent");
	put1("a", "4", 0);             /* rev 6: a new life */
	expect("a", "6/6/1/0");
}

Test(latest_mvcc, several_changes_of_one_key_in_a_txn)
{
	put1("k", "0", 0); /* rev 2 */
	st_txn *t;
	int64_t n;
	cr_assert_eq(st_txn_begin(db, true, &t), ST_OK);
	cr_assert_eq(st_txn_put(t, S("k"), S("1"), 0), ST_OK);
	cr_assert_eq(st_txn_put(t, S("k"), S("2"), 9), ST_OK);
	cr_assert_eq(st_txn_delete_range(t, S("k"), NULL, 0, &n), ST_OK);
	cr_assert_eq(n, 1);
	cr_assert_eq(st_txn_put(t, S("k"), S("3"), 0), ST_OK);
	cr_assert_eq(st_txn_put(t, S("k"), S("4"), 4), ST_OK);
	cr_assert_eq(st_txn_commit(t, next_index++), ST_OK); /* rev 3 */
	expect("k", "3/3/2/4");
	put1("k", "5", 0);
	expect("k", "3/4/3/0");
}

Test(latest_mvcc, a_thrown_away_group_leaves_no_trace)
{
	put1("g", "0", 0); /* rev 2 */
	expect("g", "2/2/1/0");
	cr_assert_eq(st_apply_begin(db), ST_OK);
	put1("g", "1", 0);
	put1("h", "1", 0);
	del1("g");
	put1("g", "2", 0);
	st_apply_abort(db);
	expect("g", "2/2/1/0");
	expect("h", "absent");
	cr_assert_eq(st_apply_begin(db), ST_OK);
	put1("g", "3", 0); /* rev 3 */
	put1("h", "3", 0); /* rev 4 */
	put1("g", "4", 0); /* rev 5: reads the group's own staged version */
	cr_assert_eq(st_apply_commit(db), ST_OK);
	expect("g", "2/5/3/0");
	expect("h", "4/4/1/0");
}

Test(latest_mvcc, a_bulk_load_replaces_what_the_cache_knew)
{
	expect("y", "absent"); /* a write txn's lookup: cached as absent */
	st_load *l;
	cr_assert_eq(st_load_begin(db, &l), ST_OK);
	st_kv kv = {.key = (const uint8_t *)"y", .key_len = 1, .val = (const uint8_t *)"v",
		    .val_len = 1, .create_rev = 7, .mod_rev = 9, .version = 2};
	cr_assert_eq(st_load_change(l, &kv), ST_OK);
	cr_assert_eq(st_load_finish(l, 9, 0, 0), ST_OK);
	expect("y", "7/9/2/0");
	put1("y", "w", 0); /* rev 10 */
	expect("y", "7/10/3/0");
}

/* Wait (up to 10 s) for the key filter's walk of the keys on disk. */
static void wait_filter(void)
{
	for (int i = 0; i < 1000 && !atomic_load(&db->kf.ready); i++)
		usleep(10000);
	cr_assert(atomic_load(&db->kf.ready), "the key filter walk finished");
}

static void reopen(void)
{
	st_db_close(db);
	st_options o = {.create_if_missing = true};
	char err[512];
	cr_assert_eq(st_db_open(dir, &o, &db, err, sizeof(err)), ST_OK, "%s", err);
}

Test(latest_mvcc, the_key_filter_knows_the_keys_on_disk_after_a_restart)
{
	char k[32];
	for (int i = 0; i < 300; i++) {
		snprintf(k, sizeof(k), "disk-%d", i);
		put1(k, "v", 0);
	}
	del1("disk-7");
	reopen();
	/* Before and after the walk, a write over a key on disk sees its history. */
	put1("disk-1", "w", 0);
	wait_filter();
	for (int i = 0; i < 300; i++) {
		snprintf(k, sizeof(k), "disk-%d", i);
		cr_assert(st__kf_maybe(&db->kf, S(k)), "%s was written: never a no", k);
	}
	int no = 0;
	for (int i = 0; i < 1000; i++) {
		snprintf(k, sizeof(k), "never-%d", i);
		no += !st__kf_maybe(&db->kf, S(k));
	}
	cr_assert_geq(no, 950, "keys never written are mostly a certain no (%d of 1000)", no);
	put1("disk-2", "w", 0);
	expect("disk-1", "3/303/2/0");
	expect("disk-2", "4/304/2/0");
	expect("disk-7", "absent");
	put1("disk-7", "again", 0);
	expect("disk-7", "305/305/1/0");
	put1("new-key", "v", 0);
	cr_assert(st__kf_maybe(&db->kf, S("new-key")), "a staged key is added at once");
	expect("new-key", "306/306/1/0");
}

Test(latest_mvcc, the_key_filter_is_walked_again_after_a_bulk_load)
{
	reopen();
	wait_filter();
	cr_assert_not(st__kf_maybe(&db->kf, S("loaded")));
	st_load *l;
	cr_assert_eq(st_load_begin(db, &l), ST_OK);
	st_kv kv = {.key = (const uint8_t *)"loaded", .key_len = 6, .val = (const uint8_t *)"v",
		    .val_len = 1, .create_rev = 3, .mod_rev = 4, .version = 2};
	cr_assert_eq(st_load_change(l, &kv), ST_OK);
	cr_assert_eq(st_load_finish(l, 4, 0, 0), ST_OK);
	expect("loaded", "3/4/2/0");
	wait_filter();
	cr_assert(st__kf_maybe(&db->kf, S("loaded")));
	put1("loaded", "w", 0);
	expect("loaded", "3/5/3/0");
}
