/*
 * Unit tests for st_mvcc: revisions, versions, tombstones, history reads,
 * reads of a write txn's own changes, key encoding order (keys with NUL bytes
 * and common prefixes), snapshot isolation, compaction (logical + physical) and
 * restart. Real RocksDB in a temp dir.
 */
#include <criterion/criterion.h>

#include <rocksdb/c.h>

#include "storage/st_db.h"
#include "storage/st_mvcc.h"
#include "test/storage/st_testutil.h"

static char *dir;
static st_db *db;
static uint64_t next_index;

static void open_db(void)
{
	st_options o = {.create_if_missing = true};
	char err[512];
	int rc = st_db_open(dir, &o, &db, err, sizeof(err));
	cr_assert_eq(rc, ST_OK, "%s", err);
}

static void setup(void)
{
	dir = tu_tmpdir();
	open_db();
	next_index = 1;
}

static void teardown(void)
{
	st_db_close(db);
	tu_rmrf(dir);
	free(dir);
}

TestSuite(mvcc, .init = setup, .fini = teardown);

static void poke_kvstate(uint64_t applied, int64_t rev, int64_t compact, int64_t done);

#define S(x) (const uint8_t *)(x), strlen(x)

static void put1(const char *k, const char *v)
{
	st_txn *t;
	cr_assert_eq(st_txn_begin(db, true, &t), ST_OK);
	cr_assert_eq(st_txn_put(t, S(k), S(v), 0), ST_OK);
	cr_assert_eq(st_txn_commit(t, next_index++), ST_OK);
}

static int64_t del1(const char *k, const char *end)
{
	st_txn *t;
	int64_t n;
	cr_assert_eq(st_txn_begin(db, true, &t), ST_OK);
	cr_assert_eq(st_txn_delete_range(t, S(k), (const uint8_t *)end, end ? strlen(end) : 0, &n),
		     ST_OK);
	cr_assert_eq(st_txn_commit(t, next_index++), ST_OK);
	return n;
}

/* Range results flattened to "key=val@mod/create/ver" joined by spaces. */
struct flat {
	char s[8192];
	int n;
};

static int flat_visit(void *arg, const st_kv *kv)
{
	struct flat *f = arg;
	size_t l = strlen(f->s);
	snprintf(f->s + l, sizeof(f->s) - l, "%s%.*s=%.*s@%lld/%lld/%lld", f->n ? " " : "",
		 (int)kv->key_len, (const char *)kv->key, (int)kv->val_len, (const char *)kv->val,
		 (long long)kv->mod_rev, (long long)kv->create_rev, (long long)kv->version);
	f->n++;
	return 0;
}

static const char *range_at(const uint8_t *k, size_t kl, const uint8_t *e, size_t el, int64_t rev,
			    struct flat *f)
{
	st_txn *t;
	memset(f, 0, sizeof(*f));
	cr_assert_eq(st_txn_begin(db, false, &t), ST_OK);
	if (rev == 0)
		rev = st_txn_rev(t);
	int rc = st_txn_range(t, k, kl, e, el, rev, flat_visit, f);
	st_txn_abort(t);
	cr_assert_eq(rc, ST_OK, "range rc %d", rc);
	return f->s;
}

static const char *all_at(int64_t rev, struct flat *f)
{
	return range_at((const uint8_t *)"\0", 1, (const uint8_t *)"\0", 1, rev, f);
}

Test(mvcc, fresh_store_is_at_revision_1)
{
	st_kv_state s;
	st_kv_state_get(db, &s);
	cr_assert_eq(s.rev, 1);
	cr_assert_eq(s.compact_rev, 0);
	cr_assert_eq(s.applied, 0);
	struct flat f;
	cr_assert_str_eq(all_at(0, &f), "");
}

Test(mvcc, revisions_versions_and_tombstones)
{
	struct flat f;
	put1("a", "1"); /* rev 2 */
	put1("b", "1"); /* rev 3 */
	put1("a", "2"); /* rev 4 */
	cr_assert_str_eq(all_at(0, &f), "a=2@4/2/2 b=1@3/3/1");
	cr_assert_eq(del1("a", NULL), 1); /* rev 5 */
	cr_assert_str_eq(all_at(0, &f), "b=1@3/3/1");
	put1("a", "3"); /* rev 6: a new life, version restarts */
	cr_assert_str_eq(all_at(0, &f), "a=3@6/6/1 b=1@3/3/1");

	/* history */
	cr_assert_str_eq(all_at(1, &f), "");
	cr_assert_str_eq(all_at(2, &f), "a=1@2/2/1");
	cr_assert_str_eq(all_at(3, &f), "a=1@2/2/1 b=1@3/3/1");
	cr_assert_str_eq(all_at(4, &f), "a=2@4/2/2 b=1@3/3/1");
	cr_assert_str_eq(all_at(5, &f), "b=1@3/3/1");

	/* deleting nothing changes nothing */
	cr_assert_eq(del1("zzz", NULL), 0);
	st_kv_state s;
	st_kv_state_get(db, &s);
	cr_assert_eq(s.rev, 6);
	cr_assert_eq(s.applied, next_index - 1);
}

Test(mvcc, txn_reads_its_own_writes_with_sub_revisions)
{
	st_txn *t;
	put1("k1", "old");
	cr_assert_eq(st_txn_begin(db, true, &t), ST_OK);
	cr_assert_eq(st_txn_rev(t), 2);
	cr_assert_eq(st_txn_put(t, S("k2"), S("x"), 5), ST_OK);
	cr_assert_eq(st_txn_rev(t), 3);
	cr_assert_eq(st_txn_put(t, S("k1"), S("new"), 0), ST_OK);
	st_kv kv;
	cr_assert_eq(st_txn_get(t, S("k1"), &kv), ST_OK);
	cr_assert_eq(kv.version, 2);
	cr_assert_eq(kv.mod_rev, 3);
	cr_assert_eq(kv.create_rev, 2);
	cr_assert_eq(kv.sub, 1);
	cr_assert_eq(kv.val_len, 3);
	/* reading the older revision inside the txn shows committed data only */
	struct flat f = {0};
	cr_assert_eq(st_txn_range(t, S("k"), S("l"), 2, flat_visit, &f), ST_OK);
	cr_assert_str_eq(f.s, "k1=old@2/2/1");
	memset(&f, 0, sizeof(f));
	cr_assert_eq(st_txn_range(t, S("k"), S("l"), 3, flat_visit, &f), ST_OK);
	cr_assert_str_eq(f.s, "k1=new@3/2/2 k2=x@3/3/1");
	int64_t n;
	cr_assert_eq(st_txn_delete_range(t, S("k"), S("l"), &n), ST_OK);
	cr_assert_eq(n, 2);
	cr_assert_eq(st_txn_get(t, S("k2"), &kv), ST_ENOTFOUND);
	cr_assert_eq(st_txn_put(t, S("k2"), S("again"), 0), ST_OK);
	cr_assert_eq(st_txn_get(t, S("k2"), &kv), ST_OK);
	cr_assert_eq(kv.version, 1); /* deleted earlier in this txn: new life */
	cr_assert_eq(kv.create_rev, 3);
	cr_assert_eq(st_txn_changes(t), 5);

	/* a concurrent reader sees none of it before commit */
	struct flat g;
	cr_assert_str_eq(all_at(0, &g), "k1=old@2/2/1");
	cr_assert_eq(st_txn_commit(t, next_index++), ST_OK);
	cr_assert_str_eq(all_at(0, &g), "k2=again@3/3/1");

	/* history holds every change in order */
	cr_assert_eq(st_txn_begin(db, false, &t), ST_OK);
	memset(&f, 0, sizeof(f));
	cr_assert_eq(st_txn_history(t, 3, 3, flat_visit, &f), ST_OK);
	cr_assert_str_eq(f.s, "k2=x@3/3/1 k1=new@3/2/2 k1=@3/0/0 k2=@3/0/0 k2=again@3/3/1");
	st_txn_abort(t);
}

Test(mvcc, read_txn_is_a_snapshot)
{
	put1("a", "1");
	st_txn *r;
	cr_assert_eq(st_txn_begin(db, false, &r), ST_OK);
	put1("a", "2");
	put1("b", "1");
	struct flat f = {0};
	cr_assert_eq(st_txn_rev(r), 2);
	cr_assert_eq(st_txn_range(r, (const uint8_t *)"\0", 1, (const uint8_t *)"\0", 1, 2, flat_visit, &f),
		     ST_OK);
	cr_assert_str_eq(f.s, "a=1@2/2/1");
	cr_assert_eq(st_txn_range(r, S("a"), NULL, 0, 3, flat_visit, &f), ST_EINVAL);
	cr_assert_eq(st_txn_put(r, S("x"), S("y"), 0), ST_EINVAL);
	st_txn_abort(r);
}

Test(mvcc, key_order_with_nul_bytes_and_prefixes)
{
	static const struct {
		const char *k;
		size_t n;
	} keys[] = {{"a", 1}, {"a\0", 2}, {"a\0\0", 3}, {"a\0b", 3}, {"a\x01", 2},
		    {"ab", 2}, {"\0", 1}, {"\xff", 1}, {"\xff\xff", 2}, {"b", 1}};
	size_t nk = sizeof(keys) / sizeof(keys[0]);
	for (int round = 0; round < 3; round++) /* several versions of each */
		for (size_t i = 0; i < nk; i++) {
			st_txn *t;
			cr_assert_eq(st_txn_begin(db, true, &t), ST_OK);
			cr_assert_eq(st_txn_put(t, (const uint8_t *)keys[i].k, keys[i].n, S("v"), 0), ST_OK);
			cr_assert_eq(st_txn_commit(t, next_index++), ST_OK);
		}
	/* full scan is sorted byte-wise, every key once, at version 3 */
	struct flat f;
	all_at(0, &f);
	cr_assert_eq(f.n, (int)nk);
	/* single-key gets do not leak into keys sharing the prefix */
	for (size_t i = 0; i < nk; i++) {
		st_txn *t;
		st_kv kv;
		cr_assert_eq(st_txn_begin(db, false, &t), ST_OK);
		cr_assert_eq(st_txn_get(t, (const uint8_t *)keys[i].k, keys[i].n, &kv), ST_OK);
		cr_assert_eq(kv.key_len, keys[i].n);
		cr_assert_eq(memcmp(kv.key, keys[i].k, kv.key_len), 0);
		cr_assert_eq(kv.version, 3);
		st_txn_abort(t);
	}
	/* [a, a\0\0) holds a and a\0 only; [a\0, b) holds 5 keys */
	range_at(S("a"), (const uint8_t *)"a\0\0", 3, 0, &f);
	cr_assert_eq(f.n, 2, "%s", f.s);
	range_at((const uint8_t *)"a\0", 2, S("b"), 0, &f);
	cr_assert_eq(f.n, 5, "%s", f.s);
	range_at(S("\xff"), (const uint8_t *)"\0", 1, 0, &f);
	cr_assert_eq(f.n, 2, "%s", f.s);
	/* an end before the start is empty */
	range_at(S("b"), S("a"), 0, &f);
	cr_assert_eq(f.n, 0);
	/* a history read in the middle of the versions */
	range_at(S("a"), NULL, 0, 2 + (int64_t)nk, &f);
	cr_assert_str_eq(f.s, "a=v@12/2/2");
}

Test(mvcc, many_versions_use_the_seek_path)
{
	for (int i = 0; i < 50; i++) {
		char v[16];
		snprintf(v, sizeof(v), "%d", i);
		put1("hot", v); /* revs 2..51 */
		if (i % 10 == 0)
			put1("cold", v);
	}
	struct flat f;
	cr_assert_str_eq(range_at(S("hot"), NULL, 0, 10, &f), "hot=7@10/2/8");
	cr_assert_str_eq(range_at(S("a"), S("z"), 0, &f), "cold=40@47/3/5 hot=49@56/2/50");
	cr_assert_str_eq(range_at(S("a"), S("z"), 3, &f), "cold=0@3/3/1 hot=0@2/2/1");
}

static int count_history(int64_t from, int64_t to)
{
	st_txn *t;
	struct flat f = {0};
	cr_assert_eq(st_txn_begin(db, false, &t), ST_OK);
	int rc = st_txn_history(t, from, to, flat_visit, &f);
	st_txn_abort(t);
	cr_assert_eq(rc, ST_OK);
	return f.n;
}

static void compact(int64_t rev)
{
	st_txn *t;
	cr_assert_eq(st_txn_begin(db, true, &t), ST_OK);
	cr_assert_eq(st_txn_compact(t, rev), ST_OK);
	cr_assert_eq(st_txn_commit(t, next_index++), ST_OK);
}

Test(mvcc, compaction_keeps_latest_at_or_below_and_drops_tombstones)
{
	put1("a", "1"); /* 2 */
	put1("a", "2"); /* 3 */
	put1("b", "1"); /* 4 */
	del1("b", NULL); /* 5 */
	put1("c", "1"); /* 6 */
	put1("a", "3"); /* 7 */
	put1("c", "2"); /* 8 */
	compact(6);
	st_kv_state s;
	st_kv_state_get(db, &s);
	cr_assert_eq(s.compact_rev, 6);
	cr_assert_eq(s.compact_done, 6);
	cr_assert_eq(s.rev, 8);

	struct flat f;
	cr_assert_str_eq(all_at(6, &f), "a=2@3/2/2 c=1@6/6/1");
	cr_assert_str_eq(all_at(7, &f), "a=3@7/2/3 c=1@6/6/1");
	cr_assert_str_eq(all_at(0, &f), "a=3@7/2/3 c=2@8/6/2");
	st_txn *t;
	cr_assert_eq(st_txn_begin(db, false, &t), ST_OK);
	cr_assert_eq(st_txn_range(t, S("a"), NULL, 0, 5, flat_visit, &f), ST_ECOMPACTED);
	cr_assert_eq(st_txn_history(t, 5, 8, flat_visit, &f), ST_ECOMPACTED);
	/* at the compacted revision itself its puts remain (etcd's watch from
	 * the compact revision replays them) */
	f.n = 0;
	cr_assert_eq(st_txn_history(t, 6, 6, flat_visit, &f), ST_OK);
	cr_assert_eq(f.n, 1);
	st_txn_abort(t);
	/* physically: kept a@3 and c@6 (rev ≤ 6), a@7 and c@8 after */
	cr_assert_eq(count_history(7, 8), 2);

	/* a second compaction removes the older kept versions */
	compact(8);
	cr_assert_str_eq(all_at(8, &f), "a=3@7/2/3 c=2@8/6/2");

	/* compaction state survives a restart, and reads keep working */
	st_db_close(db);
	open_db();
	st_kv_state_get(db, &s);
	cr_assert_eq(s.compact_rev, 8);
	cr_assert_eq(s.rev, 8);
	cr_assert_eq(s.applied, next_index - 1);
	cr_assert_str_eq(all_at(0, &f), "a=3@7/2/3 c=2@8/6/2");
	cr_assert_eq(st_txn_begin(db, true, &t), ST_OK);
	cr_assert_eq(st_txn_compact(t, 8), ST_EINVAL);
	cr_assert_eq(st_txn_compact(t, 9), ST_EINVAL);
	st_txn_abort(t);
	cr_assert_eq(st_mvcc_finish_compaction(db), ST_OK);
}

/* Revisions 2..501: ten keys put each revision, k5 deleted when i % 7 == 3. */
static void ten_keys_500_revs(void)
{
	for (int i = 0; i < 500; i++) {
		st_txn *t;
		cr_assert_eq(st_txn_begin(db, true, &t), ST_OK);
		for (int k = 0; k < 10; k++) {
			char key[8], v[16];
			snprintf(key, sizeof(key), "k%d", k);
			snprintf(v, sizeof(v), "%d", i);
			if (i % 7 == 3 && k == 5)
				cr_assert_eq(st_txn_delete_range(t, S(key), NULL, 0, NULL), ST_OK);
			else
				cr_assert_eq(st_txn_put(t, S(key), S(v), 0), ST_OK);
		}
		cr_assert_eq(st_txn_commit(t, next_index++), ST_OK);
	}
}

Test(mvcc, compaction_of_a_large_history_spans_batches)
{
	/* 500 revisions of 10 changes = 5000 history records: more than one
	 * compaction batch (4096) */
	ten_keys_500_revs();
	/* revs 2..501; i=449 is rev 451 and 449 % 7 = 1; i=444 (rev 446) deleted k5 */
	struct flat at450, cur, f;
	all_at(450, &at450);
	all_at(0, &cur);
	int later = count_history(451, 501);
	cr_assert_eq(later, 510);
	compact(450);
	cr_assert_str_eq(all_at(450, &f), at450.s);
	cr_assert_str_eq(all_at(0, &f), cur.s);
	cr_assert_str_eq(all_at(450, &f), "k0=448@450/2/449 k1=448@450/2/449 k2=448@450/2/449 "
					 "k3=448@450/2/449 k4=448@450/2/449 k5=448@450/447/4 "
					 "k6=448@450/2/449 k7=448@450/2/449 k8=448@450/2/449 "
					 "k9=448@450/2/449");
	cr_assert_eq(count_history(451, 501), later);
	st_kv_state s;
	st_kv_state_get(db, &s);
	cr_assert_eq(s.compact_done, 450);
	/* on disk, at or below 450 only the 10 kept versions remain */
	st_db_close(db);
	poke_kvstate(next_index - 1, 501, 1, 1);
	open_db();
	cr_assert_eq(count_history(2, 450), 10);
}

Test(mvcc, background_compaction_returns_at_once_and_finishes_while_writes_go_on)
{
	st_mvcc_set_background(db, true);
	ten_keys_500_revs();
	struct flat at450, f;
	all_at(450, &at450);
	compact(450); /* logical now; the walk runs on the storage thread */
	cr_assert_str_eq(all_at(450, &f), at450.s, "readers see the compacted view at once");
	/* writes (apply groups included) go on while the walk runs */
	for (int i = 0; i < 100; i++) {
		cr_assert_eq(st_apply_begin(db), ST_OK);
		put1("k1", "late");
		cr_assert_eq(st_apply_commit(db), ST_OK);
	}
	st_kv_state s;
	for (int spin = 0;; spin++) {
		st_kv_state_get(db, &s);
		if (s.compact_done == 450)
			break;
		cr_assert_lt(spin, 20000, "background compaction never finished");
		usleep(1000);
	}
	cr_assert_eq(s.rev, 601, "later writes all kept: %lld", (long long)s.rev);
	cr_assert_str_eq(all_at(450, &f), at450.s);
	/* the state record written by later groups kept the walk's progress */
	st_db_close(db);
	db = NULL;
	open_db();
	st_kv_state_get(db, &s);
	cr_assert_eq(s.compact_done, 450, "compaction-done survives reopen");
	st_db_close(db);
	poke_kvstate(next_index - 1, 601, 1, 1);
	open_db();
	cr_assert_eq(count_history(2, 450), 10, "only the kept versions remain on disk");
}

Test(mvcc, set_applied_and_restart_are_o1_state)
{
	put1("x", "1");
	cr_assert_eq(st_mvcc_set_applied(db, 42), ST_OK);
	st_db_close(db);
	open_db();
	st_kv_state s;
	st_kv_state_get(db, &s);
	cr_assert_eq(s.applied, 42);
	cr_assert_eq(s.rev, 2);
}

/* Overwrite the keyspace state record behind st_db's back (db must be closed). */
static void poke_kvstate(uint64_t applied, int64_t rev, int64_t compact, int64_t done)
{
	uint8_t v[32];
	uint64_t f[4] = {applied, (uint64_t)rev, (uint64_t)compact, (uint64_t)done};
	for (int i = 0; i < 4; i++)
		for (int j = 0; j < 8; j++)
			v[i * 8 + j] = (uint8_t)(f[i] >> (56 - 8 * j));
	db = NULL;
	char *err = tu_poke_default(dir, "ms.kvstate", v, sizeof(v));
	cr_assert_null(err, "%s", err);
}

Test(mvcc, compaction_interrupted_by_a_crash_is_finished_on_open)
{
	for (int i = 0; i < 20; i++) {
		char v[8];
		snprintf(v, sizeof(v), "%d", i);
		put1("a", v); /* revs 2..21 */
	}
	del1("a", NULL); /* 22 */
	put1("b", "1");  /* 23 */
	cr_assert_eq(count_history(2, 23), 22);
	/* the logical compaction at 22 committed, the physical part never ran */
	st_db_close(db);
	poke_kvstate(next_index - 1, 23, 22, 0);
	open_db();
	st_kv_state s;
	st_kv_state_get(db, &s);
	cr_assert_eq(s.compact_rev, 22);
	cr_assert_eq(s.compact_done, 0);
	struct flat f;
	cr_assert_str_eq(all_at(22, &f), ""); /* already correct logically */
	cr_assert_eq(st_mvcc_finish_compaction(db), ST_OK);
	st_kv_state_get(db, &s);
	cr_assert_eq(s.compact_done, 22);
	cr_assert_str_eq(all_at(0, &f), "b=1@23/23/1");
	cr_assert_eq(count_history(23, 23), 1);
	/* every version of a, and its tombstone, are gone from disk */
	st_db_close(db);
	poke_kvstate(next_index - 1, 23, 22, 0); /* and running it again is harmless */
	open_db();
	cr_assert_eq(st_mvcc_finish_compaction(db), ST_OK);
	cr_assert_str_eq(all_at(22, &f), "");
	cr_assert_str_eq(all_at(0, &f), "b=1@23/23/1");
	st_db_close(db);
	poke_kvstate(next_index - 1, 23, 1, 0);
	open_db();
	cr_assert_eq(count_history(2, 23), 1, "only b@23 is left in history");
}

/* ---- apply groups ------------------------------------------------------ */

/* A write txn's view, flattened as range_at (reads what an apply group staged). */
static const char *wrange_at(const char *k, const char *e, int64_t rev, struct flat *f)
{
	st_txn *t;
	memset(f, 0, sizeof(*f));
	cr_assert_eq(st_txn_begin(db, true, &t), ST_OK);
	if (rev == 0)
		rev = st_txn_rev(t);
	/* "\0" as either bound is etcd's one-byte NUL ("from the start", "to the end") */
	size_t kl = k[0] ? strlen(k) : 1, el = e == NULL ? 0 : e[0] ? strlen(e) : 1;
	int rc = st_txn_range(t, (const uint8_t *)k, kl, (const uint8_t *)e, el, rev, flat_visit, f);
	st_txn_abort(t);
	cr_assert_eq(rc, ST_OK, "range rc %d", rc);
	return f->s;
}

Test(mvcc, apply_group_stages_revisions_that_later_txns_read)
{
	struct flat f;
	put1("a", "0"); /* rev 2, committed before the group */
	cr_assert_eq(st_apply_begin(db), ST_OK);
	cr_assert(st_apply_open(db));
	cr_assert_eq(st_apply_begin(db), ST_EINVAL, "one group at a time");
	put1("a", "1"); /* rev 3: sees a@2, so version 2, create 2 */
	put1("b", "1"); /* rev 4 */
	put1("a", "2"); /* rev 5: sees a@3 staged in the group */
	cr_assert_eq(del1("b", NULL), 1); /* rev 6: finds the staged b */
	put1("d", "1"); /* rev 7 */
	st_kv_state s;
	st_apply_state(db, &s);
	cr_assert_eq(s.rev, 7);
	cr_assert_eq(s.applied, next_index - 1);

	/* readers see nothing of the group yet, writers see all of it */
	cr_assert_str_eq(all_at(0, &f), "a=0@2/2/1");
	st_kv_state_get(db, &s);
	cr_assert_eq(s.rev, 2);
	cr_assert_str_eq(wrange_at("\0", "\0", 0, &f), "a=2@5/2/3 d=1@7/7/1");
	cr_assert_str_eq(wrange_at("\0", "\0", 4, &f), "a=1@3/2/2 b=1@4/4/1",
			 "history inside the group");
	/* the staged d is past the end of [a, c): bounds hold over staged data */
	cr_assert_str_eq(wrange_at("a", "c", 0, &f), "a=2@5/2/3");
	cr_assert_str_eq(wrange_at("c", "e", 0, &f), "d=1@7/7/1");
	cr_assert_str_eq(wrange_at("b", NULL, 0, &f), "");

	cr_assert_eq(st_apply_commit(db), ST_OK);
	cr_assert_not(st_apply_open(db));
	st_kv_state_get(db, &s);
	cr_assert_eq(s.rev, 7);
	cr_assert_eq(s.applied, next_index - 1);
	cr_assert_str_eq(all_at(0, &f), "a=2@5/2/3 d=1@7/7/1");
	cr_assert_str_eq(all_at(4, &f), "a=1@3/2/2 b=1@4/4/1");
	cr_assert_eq(count_history(2, 7), 6);

	/* durable as one write: a clean restart sees exactly the same */
	st_db_close(db);
	open_db();
	st_kv_state_get(db, &s);
	cr_assert_eq(s.rev, 7);
	cr_assert_str_eq(all_at(0, &f), "a=2@5/2/3 d=1@7/7/1");
	put1("a", "3");
	cr_assert_str_eq(all_at(0, &f), "a=3@8/2/4 d=1@7/7/1");
}

Test(mvcc, apply_group_abort_writes_nothing)
{
	struct flat f;
	put1("a", "0");
	uint64_t applied = next_index - 1;
	cr_assert_eq(st_apply_begin(db), ST_OK);
	put1("a", "1");
	put1("b", "1");
	cr_assert_eq(st_mvcc_set_applied(db, 99), ST_OK);
	st_apply_abort(db);
	cr_assert_not(st_apply_open(db));
	st_kv_state s;
	st_kv_state_get(db, &s);
	cr_assert_eq(s.rev, 2);
	cr_assert_eq(s.applied, applied);
	st_apply_state(db, &s);
	cr_assert_eq(s.rev, 2, "without a group the writer's state is the committed one");
	cr_assert_str_eq(all_at(0, &f), "a=0@2/2/1");
	cr_assert_eq(st_apply_commit(db), ST_EINVAL, "no group to commit");
	/* and the next group starts from the committed state */
	cr_assert_eq(st_apply_begin(db), ST_OK);
	put1("c", "1");
	cr_assert_eq(st_apply_commit(db), ST_OK);
	cr_assert_str_eq(all_at(0, &f), "a=0@2/2/1 c=1@3/3/1");
}

Test(mvcc, apply_group_set_applied_is_staged)
{
	put1("a", "0");
	cr_assert_eq(st_apply_begin(db), ST_OK);
	cr_assert_eq(st_mvcc_set_applied(db, 77), ST_OK);
	st_kv_state s;
	st_kv_state_get(db, &s);
	cr_assert_neq(s.applied, 77);
	st_apply_state(db, &s);
	cr_assert_eq(s.applied, 77);
	cr_assert_eq(st_apply_commit(db), ST_OK);
	st_kv_state_get(db, &s);
	cr_assert_eq(s.applied, 77);
	cr_assert_eq(s.rev, 2);
}

Test(mvcc, apply_group_compaction_is_logical_at_once_physical_at_commit)
{
	struct flat f;
	for (int i = 0; i < 5; i++) {
		char v[8];
		snprintf(v, sizeof(v), "%d", i);
		put1("a", v); /* revs 2..6 */
	}
	cr_assert_eq(st_apply_begin(db), ST_OK);
	put1("a", "5"); /* 7 */
	st_txn *t;
	cr_assert_eq(st_txn_begin(db, true, &t), ST_OK);
	cr_assert_eq(st_txn_compact(t, 6), ST_OK);
	cr_assert_eq(st_txn_commit(t, next_index++), ST_OK);
	put1("a", "6"); /* 8 */
	st_kv_state s;
	st_apply_state(db, &s);
	cr_assert_eq(s.compact_rev, 6);
	cr_assert_eq(s.rev, 8);
	/* a later txn of the group cannot compact at or below 6 again */
	cr_assert_eq(st_txn_begin(db, true, &t), ST_OK);
	cr_assert_eq(st_txn_compact(t, 6), ST_EINVAL);
	st_txn_abort(t);
	st_kv_state_get(db, &s);
	cr_assert_eq(s.compact_rev, 0, "readers: not compacted before the commit");
	cr_assert_eq(count_history(2, 8), 5, "nothing removed before the commit");
	cr_assert_eq(st_apply_commit(db), ST_OK);
	st_kv_state_get(db, &s);
	cr_assert_eq(s.compact_rev, 6);
	cr_assert_eq(s.compact_done, 6);
	cr_assert_str_eq(all_at(6, &f), "a=4@6/2/5");
	cr_assert_str_eq(all_at(0, &f), "a=6@8/2/7");
	/* only a@6 is left at or below the compaction (on disk: unhide it) */
	st_db_close(db);
	poke_kvstate(next_index - 1, 8, 1, 1);
	open_db();
	cr_assert_eq(count_history(2, 6), 1);
}

/* Lease attachment keys of @id as a write txn sees them, joined by spaces. */
static int lk_visit(void *arg, const uint8_t *key, size_t klen)
{
	struct flat *f = arg;
	size_t l = strlen(f->s);
	snprintf(f->s + l, sizeof(f->s) - l, "%s%.*s", f->n++ ? " " : "", (int)klen, (const char *)key);
	return 0;
}

static const char *lease_keys(int64_t id, bool write, struct flat *f)
{
	st_txn *t;
	memset(f, 0, sizeof(*f));
	cr_assert_eq(st_txn_begin(db, write, &t), ST_OK);
	cr_assert_eq(st_txn_lease_keys(t, id, lk_visit, f), ST_OK);
	st_txn_abort(t);
	return f->s;
}

Test(mvcc, apply_group_lease_attachments_and_revoke)
{
	struct flat f;
	st_txn *t;
	cr_assert_eq(st_apply_begin(db), ST_OK);
	cr_assert_eq(st_txn_begin(db, true, &t), ST_OK);
	cr_assert_eq(st_txn_lease_grant(t, 7, 60), ST_OK);
	cr_assert_eq(st_txn_commit(t, next_index++), ST_OK);
	cr_assert_eq(st_txn_begin(db, true, &t), ST_OK);
	cr_assert_eq(st_txn_put(t, S("k1"), S("v"), 7), ST_OK);
	cr_assert_eq(st_txn_put(t, S("k2"), S("v"), 7), ST_OK);
	cr_assert_eq(st_txn_commit(t, next_index++), ST_OK);
	cr_assert_str_eq(lease_keys(7, true, &f), "k1 k2", "the group's attachments are read");
	cr_assert_str_eq(lease_keys(7, false, &f), "", "readers see none before the commit");
	/* revoke in the same group without deleting k2 first: its record goes too */
	cr_assert_eq(st_txn_begin(db, true, &t), ST_OK);
	cr_assert_eq(st_txn_delete_range(t, S("k1"), NULL, 0, NULL), ST_OK);
	cr_assert_eq(st_txn_lease_revoke(t, 7, NULL, NULL), ST_OK);
	cr_assert_eq(st_txn_commit(t, next_index++), ST_OK);
	cr_assert_str_eq(lease_keys(7, true, &f), "");
	cr_assert_eq(st_apply_commit(db), ST_OK);
	cr_assert_str_eq(lease_keys(7, false, &f), "");
	cr_assert_str_eq(all_at(0, &f), "k2=v@2/2/1", "a grant moves no revision");
}

Test(mvcc, commit_outside_a_group_is_refused_while_one_is_open)
{
	st_txn *r, *w;
	cr_assert_eq(st_txn_begin(db, true, &w), ST_OK); /* begun before the group */
	cr_assert_eq(st_txn_put(w, S("x"), S("1"), 0), ST_OK);
	cr_assert_eq(st_apply_begin(db), ST_OK);
	cr_assert_eq(st_txn_commit(w, next_index++), ST_EINVAL, "a second writer");
	cr_assert_eq(st_txn_begin(db, false, &r), ST_OK);
	cr_assert_eq(st_txn_commit(r, 0), ST_OK, "a read txn just ends");
	cr_assert_eq(st_apply_commit(db), ST_OK);
	struct flat f;
	cr_assert_str_eq(all_at(0, &f), "");
}

/* What a whole-keyspace walk (total order) shows of @key at @rev, as
 * "key=val@mod/create/ver" or "". */
static void from_walk(const char *walk, const char *key, char *out, size_t cap)
{
	out[0] = '\0';
	size_t kl = strlen(key);
	for (const char *p = walk; *p != '\0';) {
		const char *e = strchr(p, ' ');
		size_t n = e ? (size_t)(e - p) : strlen(p);
		if (n > kl && strncmp(p, key, kl) == 0 && p[kl] == '=') {
			snprintf(out, cap, "%.*s", (int)n, p);
			return;
		}
		p += n + (e ? 1 : 0);
	}
}

/*
 * A one-key read seeks in prefix mode (the kv family's blooms of esc(key) 00 01)
 * while ranges walk in total order: with versions spread over the bottom level,
 * a level-0 file and the memtable, and keys that are prefixes of each other,
 * every one-key read at every revision must show what the walk shows.
 */
Test(mvcc, one_key_reads_agree_with_the_walk_across_files_and_memtable)
{
	const char *keys[] = {"a", "aa", "ab", "b", "ba", "aaa", "c", "a\x01"};
	size_t nk = sizeof(keys) / sizeof(keys[0]);
	put1("a", "1");
	put1("ab", "1");
	put1("ba", "1");
	cr_assert_eq(st_db_compact_files(db), ST_OK); /* to the bottom level */
	put1("a", "2");
	put1("aa", "1");
	del1("ab", NULL);
	st_db_close(db); /* a graceful close flushes: a level-0 file */
	open_db();
	put1("b", "1");
	put1("ab", "2");
	put1("a", "3");
	del1("ba", NULL);
	put1("a\x01", "1");

	st_kv_state s;
	st_kv_state_get(db, &s);
	struct flat w, one;
	char want[256];
	for (int64_t rev = 1; rev <= s.rev; rev++) {
		all_at(rev, &w);
		for (size_t i = 0; i < nk; i++) {
			range_at(S(keys[i]), NULL, 0, rev, &one);
			from_walk(w.s, keys[i], want, sizeof want);
			cr_assert_str_eq(one.s, want, "key %s at revision %lld", keys[i],
			                 (long long)rev);
		}
	}
	/* and a write's lookup of a key (st_txn_get_meta misses the cache after
	 * the reopen for "aa"): its version goes on */
	put1("aa", "2");
	cr_assert_str_eq(range_at(S("aa"), NULL, 0, 0, &one), "aa=2@13/6/2");
}
