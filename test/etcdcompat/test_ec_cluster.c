/*
 * Unit tests for ec_cluster (the replicated member set): persistence of the
 * "members" record across reopen, etcd's pre-proposal checks (check_add /
 * remove / update / promote), the apply functions, apply groups (commit and
 * abort), lookups, pack/reload, and readers racing the node thread. Real
 * RocksDB in a temp dir, no mocks. Expected values follow etcd 3.4
 * (etcdserver/api/membership/cluster.go, types.NewURLs, v3rpc/member.go).
 *
 * One test in the suite "cluster_finding" asserts behaviour that the current
 * ec_cluster.c does NOT have (see the comment there): it fails on purpose.
 */
#include <criterion/criterion.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include "etcdcompat/ec_cluster.h"
#include "etcdcompat/ec_errors.h"
#include "storage/st_db.h"
#include "storage/st_mvcc.h"
#include "test/storage/st_testutil.h"

static char *dir;
static st_db *db;
static ec_cluster *cl;

/* ---- fixtures ---------------------------------------------------------- */

static void open_db(void)
{
	st_options o = {.create_if_missing = true};
	char err[512];
	cr_assert_eq(st_db_open(dir, &o, &db, err, sizeof(err)), ST_OK, "%s", err);
	cr_assert_eq(ec_cluster_open(db, &cl), ST_OK);
}

static void close_db(void)
{
	ec_cluster_close(cl);
	cl = NULL;
	st_db_close(db);
	db = NULL;
}

/* Close the db and the cluster and open both again: only what was written
 * durably to RocksDB survives. */
static void reopen(void)
{
	close_db();
	open_db();
}

static void setup(void)
{
	dir = tu_tmpdir();
	cr_assert_not_null(dir);
	open_db();
}

static void teardown(void)
{
	if (db != NULL)
		close_db();
	tu_rmrf(dir);
	free(dir);
}

TestSuite(cluster, .init = setup, .fini = teardown);
TestSuite(cluster_finding, .init = setup, .fini = teardown);

/* ---- expected members -------------------------------------------------- */

typedef struct exp_member {
	uint64_t id;
	const char *name;
	const char *peers[4];
	size_t np;
	const char *clients[4];
	size_t nc;
	bool learner;
} exp_member;

/* The three-member set most tests start from, sorted by id. 0x20 is the
 * learner and has two peer URLs. */
static const exp_member M10 = {0x10, "a", {"http://10.0.0.1:2380"}, 1,
			       {"http://10.0.0.1:2379"}, 1, false};
static const exp_member M20 = {0x20, "b", {"http://10.0.0.2:2380", "https://10.0.0.2:2381"}, 2,
			       {"http://10.0.0.2:2379", "https://10.0.0.2:2378"}, 2, true};
static const exp_member M30 = {0x30, "c", {"http://10.0.0.3:2380"}, 1,
			       {"http://10.0.0.3:2379"}, 1, false};

/* A protobuf Member pointing into @e (no copies: ec_cluster copies what it keeps). */
static Etcdserverpb__Member to_pb(const exp_member *e)
{
	Etcdserverpb__Member m = ETCDSERVERPB__MEMBER__INIT;
	m.id = e->id;
	m.name = (char *)e->name;
	m.peerurls = (char **)e->peers;
	m.n_peerurls = e->np;
	m.clienturls = (char **)e->clients;
	m.n_clienturls = e->nc;
	m.islearner = e->learner;
	return m;
}

static void assert_member(const Etcdserverpb__Member *got, const exp_member *e, const char *where)
{
	cr_assert_eq(got->id, e->id, "%s: id %#llx, want %#llx", where,
		     (unsigned long long)got->id, (unsigned long long)e->id);
	cr_assert_str_eq(got->name, e->name, "%s: member %#llx name", where,
			 (unsigned long long)e->id);
	cr_assert_eq(got->n_peerurls, e->np, "%s: member %#llx peer URL count", where,
		     (unsigned long long)e->id);
	for (size_t i = 0; i < e->np; i++)
		cr_assert_str_eq(got->peerurls[i], e->peers[i], "%s: member %#llx peer URL %zu",
				 where, (unsigned long long)e->id, i);
	cr_assert_eq(got->n_clienturls, e->nc, "%s: member %#llx client URL count", where,
		     (unsigned long long)e->id);
	for (size_t i = 0; i < e->nc; i++)
		cr_assert_str_eq(got->clienturls[i], e->clients[i],
				 "%s: member %#llx client URL %zu", where,
				 (unsigned long long)e->id, i);
	cr_assert_eq(!!got->islearner, e->learner, "%s: member %#llx learner flag", where,
		     (unsigned long long)e->id);
}

/* @s equals {@want (sorted by id), @removed}. */
static void assert_set_eq(const Metastore__MemberSet *s, const exp_member *const *want, size_t n,
			  const uint64_t *removed, size_t nr, const char *where)
{
	cr_assert_not_null(s, "%s: no set", where);
	cr_assert_eq(s->format, 1, "%s: format", where);
	cr_assert_eq(s->n_members, n, "%s: %zu members, want %zu", where, s->n_members, n);
	for (size_t i = 0; i < n; i++)
		assert_member(s->members[i], want[i], where);
	cr_assert_eq(s->n_removed, nr, "%s: %zu removed ids, want %zu", where, s->n_removed, nr);
	for (size_t i = 0; i < nr; i++)
		cr_assert_eq(s->removed[i], removed[i], "%s: removed[%zu]", where, i);
}

/* The in-memory set (ec_cluster_copy, ec_cluster_count) is exactly this. */
static void assert_mem(const exp_member *const *want, size_t n, const uint64_t *removed, size_t nr,
		       const char *where)
{
	cr_assert_eq(ec_cluster_count(cl), n, "%s: count", where);
	Metastore__MemberSet *s = ec_cluster_copy(cl);
	assert_set_eq(s, want, n, removed, nr, where);
	metastore__member_set__free_unpacked(s, NULL);
}

/* The committed "members" record is exactly this. */
static void assert_stored(const exp_member *const *want, size_t n, const uint64_t *removed,
			  size_t nr, const char *where)
{
	void *v = NULL;
	size_t len = 0;
	cr_assert_eq(st_rmeta_get(db, "members", &v, &len), ST_OK, "%s: no stored record", where);
	Metastore__MemberSet *s = metastore__member_set__unpack(NULL, len, v);
	free(v);
	assert_set_eq(s, want, n, removed, nr, where);
	metastore__member_set__free_unpacked(s, NULL);
}

/* Packed bytes of the in-memory set / of the stored record (to prove "unchanged"). */
static void mem_bytes(uint8_t **buf, size_t *len)
{
	cr_assert_eq(ec_cluster_pack(cl, buf, len), ST_OK);
}

static void stored_bytes(uint8_t **buf, size_t *len)
{
	void *v = NULL;
	cr_assert_eq(st_rmeta_get(db, "members", &v, len), ST_OK);
	*buf = v;
}

static void assert_bytes_eq(const uint8_t *a, size_t na, const uint8_t *b, size_t nb,
			    const char *where)
{
	cr_assert_eq(na, nb, "%s: length %zu vs %zu", where, na, nb);
	cr_assert(memcmp(a, b, na) == 0, "%s: bytes differ", where);
}

/* Snapshot of both copies, to compare after an apply that must change nothing. */
typedef struct both {
	uint8_t *mem, *disk;
	size_t nmem, ndisk;
} both;

static both snap(void)
{
	both b;
	mem_bytes(&b.mem, &b.nmem);
	stored_bytes(&b.disk, &b.ndisk);
	return b;
}

static void assert_unchanged(both *before, const char *where)
{
	both now = snap();
	assert_bytes_eq(now.mem, now.nmem, before->mem, before->nmem, where);
	assert_bytes_eq(now.disk, now.ndisk, before->disk, before->ndisk, where);
	free(now.mem);
	free(now.disk);
}

static void free_snap(both *b)
{
	free(b->mem);
	free(b->disk);
}

/* Bootstrap the standard three members (given out of order, with removed ids). */
static void bootstrap3(const uint64_t *removed, size_t nr)
{
	Etcdserverpb__Member a = to_pb(&M30), b = to_pb(&M10), c = to_pb(&M20);
	Etcdserverpb__Member *ms[] = {&a, &b, &c};
	Metastore__MemberSet set = METASTORE__MEMBER_SET__INIT;
	set.format = 1;
	set.members = ms;
	set.n_members = 3;
	set.removed = (uint64_t *)removed;
	set.n_removed = nr;
	cr_assert_eq(ec_cluster_replace(cl, &set), ST_OK);
	cr_assert_eq(ms[0]->id, 0x30, "replace must not reorder the caller's set");
	cr_assert_eq(ms[1]->id, 0x10);
	cr_assert_eq(ms[2]->id, 0x20);
}

static const exp_member *const STD3[] = {&M10, &M20, &M30};

/* ---- open / replace ---------------------------------------------------- */

Test(cluster, fresh_db_is_empty)
{
	cr_assert_eq(ec_cluster_count(cl), 0);
	Metastore__MemberSet *s = ec_cluster_copy(cl);
	assert_set_eq(s, NULL, 0, NULL, 0, "fresh");
	metastore__member_set__free_unpacked(s, NULL);
	void *v = NULL;
	size_t len = 0;
	cr_assert_eq(st_rmeta_get(db, "members", &v, &len), ST_ENOTFOUND,
		     "opening must not write a record");
	cr_assert_not(ec_cluster_get(cl, 0x10, NULL, NULL));
	cr_assert_not(ec_cluster_is_removed(cl, 0x10));
	const char *u[] = {"http://10.0.0.1:2380"};
	cr_assert_eq(ec_cluster_find_by_peer_urls(cl, u, 1), 0);
	cr_assert_eq(ec_cluster_check_remove(cl, 0x10), EC_MEMBER_NOT_FOUND);
	cr_assert_eq(ec_cluster_check_add(cl, (char *const *)u, 1, false), EC_OK);
	cr_assert_eq(ec_cluster_check_add(cl, (char *const *)u, 1, true), EC_OK,
		     "one learner is allowed in an empty cluster");
	reopen();
	cr_assert_eq(ec_cluster_count(cl), 0);
}

Test(cluster, replace_persists_across_reopen)
{
	const uint64_t rm[] = {0x5, 0x7};
	bootstrap3(rm, 2);
	assert_mem(STD3, 3, rm, 2, "after replace (memory)");
	assert_stored(STD3, 3, rm, 2, "after replace (stored, written synced outside a group)");
	reopen();
	assert_mem(STD3, 3, rm, 2, "after reopen");
	cr_assert(ec_cluster_is_removed(cl, 0x5));
	cr_assert(ec_cluster_is_removed(cl, 0x7));
	cr_assert_not(ec_cluster_is_removed(cl, 0x10));
	bool l = false;
	cr_assert(ec_cluster_get(cl, 0x20, &l, NULL));
	cr_assert(l);
	cr_assert(ec_cluster_get(cl, 0x30, &l, NULL));
	cr_assert_not(l);

	/* A second replace overwrites the whole set (a joining member's fetch). */
	Etcdserverpb__Member x = to_pb(&M20);
	Etcdserverpb__Member *ms[] = {&x};
	Metastore__MemberSet set = METASTORE__MEMBER_SET__INIT;
	set.format = 1;
	set.members = ms;
	set.n_members = 1;
	cr_assert_eq(ec_cluster_replace(cl, &set), ST_OK);
	const exp_member *const one[] = {&M20};
	assert_mem(one, 1, NULL, 0, "second replace");
	reopen();
	assert_mem(one, 1, NULL, 0, "second replace, reopened");
	cr_assert_not(ec_cluster_is_removed(cl, 0x5));
}

/* ---- checks ------------------------------------------------------------ */

#define CHECK_ADD(err, learner, ...)                                                        \
	do {                                                                                \
		const char *u_[] = {__VA_ARGS__};                                           \
		size_t n_ = sizeof(u_) / sizeof(u_[0]);                                     \
		int got_ = ec_cluster_check_add(cl, (char *const *)u_, n_, (learner));      \
		cr_assert_eq(got_, (err), "check_add(%s%s, learner=%d) = %d, want %d",       \
			     u_[0], n_ > 1 ? ", ..." : "", (int)(learner), got_, (err));    \
	} while (0)

Test(cluster, check_add)
{
	bootstrap3(NULL, 0);
	/* Not http(s)://host:port (etcd's types.NewURLs). */
	CHECK_ADD(EC_MEMBER_BAD_URLS, false, "10.0.0.9:2380");
	CHECK_ADD(EC_MEMBER_BAD_URLS, false, "ftp://10.0.0.9:2380");
	CHECK_ADD(EC_MEMBER_BAD_URLS, false, "unix://10.0.0.9:2380");
	CHECK_ADD(EC_MEMBER_BAD_URLS, false, "http://10.0.0.9");
	CHECK_ADD(EC_MEMBER_BAD_URLS, false, "http://10.0.0.9:");
	CHECK_ADD(EC_MEMBER_BAD_URLS, false, "http://:2380");
	CHECK_ADD(EC_MEMBER_BAD_URLS, false, "http://10.0.0.9:23x0");
	CHECK_ADD(EC_MEMBER_BAD_URLS, false, "http://10.0.0.9:2380/peer");
	CHECK_ADD(EC_MEMBER_BAD_URLS, false, "http://10.0.0.9:2380/");
	CHECK_ADD(EC_MEMBER_BAD_URLS, false, "http://10.0.0.9/peer:2380");
	CHECK_ADD(EC_MEMBER_BAD_URLS, false, "");
	CHECK_ADD(EC_MEMBER_BAD_URLS, false, "http://10.0.0.9:2380", "ftp://10.0.0.9:2381");
	CHECK_ADD(EC_MEMBER_BAD_URLS, true, "http://10.0.0.9");
	/* A bad URL is reported before a taken one. */
	CHECK_ADD(EC_MEMBER_BAD_URLS, false, "http://10.0.0.1:2380", "http://10.0.0.9");
	cr_assert_eq(ec_cluster_check_add(cl, NULL, 0, false), EC_MEMBER_BAD_URLS, "empty list");
	cr_assert_eq(ec_cluster_check_add(cl, NULL, 0, true), EC_MEMBER_BAD_URLS, "empty list");

	/* A peer URL some member already uses (any of its URLs). */
	CHECK_ADD(EC_PEER_URL_EXIST, false, "http://10.0.0.1:2380");
	CHECK_ADD(EC_PEER_URL_EXIST, false, "https://10.0.0.2:2381");
	CHECK_ADD(EC_PEER_URL_EXIST, false, "http://10.0.0.9:2380", "http://10.0.0.3:2380");
	CHECK_ADD(EC_PEER_URL_EXIST, true, "http://10.0.0.2:2380");
	/* A client URL is not a peer URL: no conflict. */
	CHECK_ADD(EC_OK, false, "http://10.0.0.1:2379");

	/* 0x20 is already a learner: etcd 3.4 allows one. */
	CHECK_ADD(EC_TOO_MANY_LEARNERS, true, "http://10.0.0.9:2380");
	CHECK_ADD(EC_TOO_MANY_LEARNERS, true, "https://[fd00::9]:2380", "http://10.0.0.9:2380");

	/* Fine. */
	CHECK_ADD(EC_OK, false, "http://10.0.0.9:2380");
	CHECK_ADD(EC_OK, false, "https://10.0.0.9:2380", "http://10.0.0.9:2381");
	CHECK_ADD(EC_OK, false, "https://[fd00::9]:2380");
	CHECK_ADD(EC_OK, false, "http://node9.example:12380");

	/* Checks change nothing. */
	assert_mem(STD3, 3, NULL, 0, "after checks");

	/* Once the learner is promoted, a learner may be added again. */
	cr_assert_eq(ec_cluster_apply_promote(cl, 0x20), EC_OK);
	CHECK_ADD(EC_OK, true, "http://10.0.0.9:2380");
	CHECK_ADD(EC_PEER_URL_EXIST, true, "http://10.0.0.3:2380");
}

Test(cluster, peer_urls_valid)
{
	const char *good[] = {"http://a:1", "https://10.0.0.1:2380", "https://[::1]:2380"};
	cr_assert(ec_peer_urls_valid((char *const *)good, 3));
	const char *bad[] = {"http://a", "https:/a:1", "HTTP://a:1x", "http://a:1/x", "a:1", "http://"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		cr_assert_not(ec_peer_urls_valid((char *const *)&bad[i], 1), "%s accepted", bad[i]);
	cr_assert_not(ec_peer_urls_valid(NULL, 0));
}

Test(cluster, check_remove_update_promote)
{
	bootstrap3(NULL, 0);
	/* remove */
	cr_assert_eq(ec_cluster_check_remove(cl, 0x77), EC_MEMBER_NOT_FOUND);
	cr_assert_eq(ec_cluster_check_remove(cl, 0), EC_MEMBER_NOT_FOUND);
	cr_assert_eq(ec_cluster_check_remove(cl, 0x10), EC_OK);
	cr_assert_eq(ec_cluster_check_remove(cl, 0x20), EC_OK, "a learner can be removed");

	/* update */
	const char *fresh[] = {"http://10.0.0.9:2380"};
	const char *bad[] = {"http://10.0.0.9"};
	const char *of30[] = {"http://10.0.0.3:2380"};
	const char *of20b[] = {"http://10.0.0.9:2380", "https://10.0.0.2:2381"};
	const char *own10[] = {"http://10.0.0.1:2380"};
	const char *own10plus[] = {"http://10.0.0.9:2380", "http://10.0.0.1:2380"};
	const char *own20rev[] = {"https://10.0.0.2:2381", "http://10.0.0.2:2380"};
	cr_assert_eq(ec_cluster_check_update(cl, 0x77, (char *const *)fresh, 1), EC_MEMBER_NOT_FOUND);
	cr_assert_eq(ec_cluster_check_update(cl, 0x10, (char *const *)bad, 1), EC_MEMBER_BAD_URLS);
	cr_assert_eq(ec_cluster_check_update(cl, 0x10, NULL, 0), EC_MEMBER_BAD_URLS);
	cr_assert_eq(ec_cluster_check_update(cl, 0x10, (char *const *)of30, 1), EC_PEER_URL_EXIST);
	cr_assert_eq(ec_cluster_check_update(cl, 0x10, (char *const *)of20b, 2), EC_PEER_URL_EXIST);
	cr_assert_eq(ec_cluster_check_update(cl, 0x30, (char *const *)own10, 1), EC_PEER_URL_EXIST);
	cr_assert_eq(ec_cluster_check_update(cl, 0x10, (char *const *)own10, 1), EC_OK,
		     "a member's own current URL is not a conflict");
	cr_assert_eq(ec_cluster_check_update(cl, 0x10, (char *const *)own10plus, 2), EC_OK);
	cr_assert_eq(ec_cluster_check_update(cl, 0x20, (char *const *)own20rev, 2), EC_OK);
	cr_assert_eq(ec_cluster_check_update(cl, 0x10, (char *const *)fresh, 1), EC_OK);

	/* promote */
	cr_assert_eq(ec_cluster_check_promote(cl, 0x77), EC_MEMBER_NOT_FOUND);
	cr_assert_eq(ec_cluster_check_promote(cl, 0x10), EC_MEMBER_NOT_LEARNER);
	cr_assert_eq(ec_cluster_check_promote(cl, 0x30), EC_MEMBER_NOT_LEARNER);
	cr_assert_eq(ec_cluster_check_promote(cl, 0x20), EC_OK);

	assert_mem(STD3, 3, NULL, 0, "checks change nothing");

	/* After the changes are applied the answers follow. */
	cr_assert_eq(ec_cluster_apply_promote(cl, 0x20), EC_OK);
	cr_assert_eq(ec_cluster_check_promote(cl, 0x20), EC_MEMBER_NOT_LEARNER);
	cr_assert_eq(ec_cluster_apply_remove(cl, 0x30), EC_OK);
	cr_assert_eq(ec_cluster_check_remove(cl, 0x30), EC_MEMBER_NOT_FOUND);
	cr_assert_eq(ec_cluster_check_promote(cl, 0x30), EC_MEMBER_NOT_FOUND);
	cr_assert_eq(ec_cluster_check_update(cl, 0x30, (char *const *)fresh, 1), EC_MEMBER_NOT_FOUND);
	cr_assert_eq(ec_cluster_check_update(cl, 0x10, (char *const *)of30, 1), EC_OK,
		     "a removed member's URL is free again");
}

/* ---- apply ------------------------------------------------------------- */

static const exp_member M40 = {0x40, "", {"http://10.0.0.4:2380"}, 1, {NULL}, 0, false};
static const exp_member M05 = {0x05, "", {"http://10.0.0.5:2380"}, 1, {NULL}, 0, true};

Test(cluster, apply_add)
{
	const uint64_t rm[] = {0x7};
	bootstrap3(rm, 1);
	/* etcd adds a member without name and client URLs (published later). */
	Etcdserverpb__Member m = to_pb(&M40);
	cr_assert_eq(ec_cluster_apply_add(cl, &m), EC_OK);
	const exp_member *const four[] = {&M10, &M20, &M30, &M40};
	assert_mem(four, 4, rm, 1, "add 0x40");
	assert_stored(four, 4, rm, 1, "add 0x40 (stored)");
	cr_assert_eq(ec_cluster_check_add(cl, (char *const *)M40.peers, 1, false), EC_PEER_URL_EXIST);

	/* A smaller id sorts first; a learner stays a learner. */
	Etcdserverpb__Member l = to_pb(&M05);
	cr_assert_eq(ec_cluster_apply_add(cl, &l), EC_OK);
	const exp_member *const five[] = {&M05, &M10, &M20, &M30, &M40};
	assert_mem(five, 5, rm, 1, "add 0x05");
	bool learner = false;
	cr_assert(ec_cluster_get(cl, 0x05, &learner, NULL));
	cr_assert(learner);

	/* A duplicate id (with other fields) changes nothing. */
	both before = snap();
	exp_member dup = M10;
	dup.name = "impostor";
	dup.peers[0] = "http://10.0.0.99:2380";
	dup.learner = true;
	Etcdserverpb__Member d = to_pb(&dup);
	cr_assert_eq(ec_cluster_apply_add(cl, &d), EC_MEMBER_EXIST);
	assert_unchanged(&before, "duplicate add");
	/* A removed id can never come back. */
	exp_member back = M40;
	back.id = 0x7;
	back.peers[0] = "http://10.0.0.7:2380";
	Etcdserverpb__Member b = to_pb(&back);
	cr_assert_eq(ec_cluster_apply_add(cl, &b), EC_MEMBER_EXIST);
	assert_unchanged(&before, "add of a removed id");
	free_snap(&before);

	reopen();
	assert_mem(five, 5, rm, 1, "adds, reopened");
}

Test(cluster, apply_remove)
{
	const uint64_t rm0[] = {0x7};
	bootstrap3(rm0, 1);
	cr_assert_eq(ec_cluster_apply_remove(cl, 0x20), EC_OK);
	const exp_member *const two[] = {&M10, &M30};
	const uint64_t rm1[] = {0x7, 0x20};
	assert_mem(two, 2, rm1, 2, "remove 0x20");
	assert_stored(two, 2, rm1, 2, "remove 0x20 (stored)");
	cr_assert(ec_cluster_is_removed(cl, 0x20));
	cr_assert_not(ec_cluster_get(cl, 0x20, NULL, NULL));
	const char *u[] = {"http://10.0.0.2:2380", "https://10.0.0.2:2381"};
	cr_assert_eq(ec_cluster_find_by_peer_urls(cl, u, 2), 0);
	cr_assert_eq(ec_cluster_check_add(cl, (char *const *)u, 2, true), EC_OK,
		     "the removed learner's URLs and learner slot are free");

	both before = snap();
	/* Re-adding the removed id (etcd: never reused). */
	Etcdserverpb__Member again = to_pb(&M20);
	cr_assert_eq(ec_cluster_apply_add(cl, &again), EC_MEMBER_EXIST);
	assert_unchanged(&before, "re-add of removed id");
	/* Removing it (or any unknown id) again. */
	cr_assert_eq(ec_cluster_apply_remove(cl, 0x20), EC_MEMBER_NOT_FOUND);
	assert_unchanged(&before, "second remove");
	cr_assert_eq(ec_cluster_apply_remove(cl, 0x77), EC_MEMBER_NOT_FOUND);
	assert_unchanged(&before, "remove of unknown id");
	cr_assert_not(ec_cluster_is_removed(cl, 0x77), "a failed remove must not record the id");
	free_snap(&before);

	reopen();
	assert_mem(two, 2, rm1, 2, "remove, reopened");
	cr_assert(ec_cluster_is_removed(cl, 0x20));
	Etcdserverpb__Member again2 = to_pb(&M20);
	cr_assert_eq(ec_cluster_apply_add(cl, &again2), EC_MEMBER_EXIST, "still removed after reopen");

	/* Remove everyone: an empty member list, all ids removed. */
	cr_assert_eq(ec_cluster_apply_remove(cl, 0x10), EC_OK);
	cr_assert_eq(ec_cluster_apply_remove(cl, 0x30), EC_OK);
	const uint64_t rm3[] = {0x7, 0x20, 0x10, 0x30};
	assert_mem(NULL, 0, rm3, 4, "all removed");
	reopen();
	assert_mem(NULL, 0, rm3, 4, "all removed, reopened");
}

Test(cluster, apply_promote)
{
	bootstrap3(NULL, 0);
	cr_assert_eq(ec_cluster_apply_promote(cl, 0x20), EC_OK);
	exp_member p20 = M20;
	p20.learner = false;
	const exp_member *const want[] = {&M10, &p20, &M30};
	assert_mem(want, 3, NULL, 0, "promote 0x20");
	assert_stored(want, 3, NULL, 0, "promote 0x20 (stored)");

	both before = snap();
	cr_assert_eq(ec_cluster_apply_promote(cl, 0x77), EC_MEMBER_NOT_FOUND);
	assert_unchanged(&before, "promote unknown");
	cr_assert_eq(ec_cluster_apply_promote(cl, 0x20), EC_OK,
		     "a replayed promote leaves a voter a voter");
	assert_mem(want, 3, NULL, 0, "replayed promote");
	free_snap(&before);

	reopen();
	assert_mem(want, 3, NULL, 0, "promote, reopened");
}

Test(cluster, apply_update)
{
	bootstrap3(NULL, 0);
	const char *nu[] = {"http://10.1.0.1:2380", "https://10.1.0.1:2390"};
	cr_assert_eq(ec_cluster_apply_update(cl, 0x10, (char *const *)nu, 2), EC_OK);
	exp_member u10 = M10;
	u10.peers[0] = nu[0];
	u10.peers[1] = nu[1];
	u10.np = 2;
	const exp_member *const want[] = {&u10, &M20, &M30};
	assert_mem(want, 3, NULL, 0, "update 0x10");
	assert_stored(want, 3, NULL, 0, "update 0x10 (stored)");
	cr_assert_eq(ec_cluster_find_by_peer_urls(cl, M10.peers, 1), 0, "old URL is gone");
	const char *nurev[] = {nu[1], nu[0]};
	cr_assert_eq(ec_cluster_find_by_peer_urls(cl, nurev, 2), 0x10);
	cr_assert_eq(ec_cluster_check_add(cl, (char *const *)M10.peers, 1, false), EC_OK,
		     "the old URL is free");

	/* Updating a learner keeps it a learner. */
	const char *nl[] = {"http://10.1.0.2:2380"};
	cr_assert_eq(ec_cluster_apply_update(cl, 0x20, (char *const *)nl, 1), EC_OK);
	bool learner = false;
	char **got = NULL;
	cr_assert(ec_cluster_get(cl, 0x20, &learner, &got));
	cr_assert(learner);
	cr_assert_str_eq(got[0], nl[0]);
	cr_assert_null(got[1]);
	ec_cluster_strv_free(got);

	exp_member u20 = M20;
	u20.peers[0] = nl[0];
	u20.peers[1] = NULL;
	u20.np = 1;
	const exp_member *const want2[] = {&u10, &u20, &M30};
	both before = snap();
	cr_assert_eq(ec_cluster_apply_update(cl, 0x77, (char *const *)nl, 1), EC_MEMBER_NOT_FOUND);
	assert_unchanged(&before, "update unknown");
	free_snap(&before);

	reopen();
	assert_mem(want2, 3, NULL, 0, "updates, reopened");
}

Test(cluster, apply_attr)
{
	bootstrap3(NULL, 0);
	Etcdserverpb__Member m = to_pb(&M40);
	cr_assert_eq(ec_cluster_apply_add(cl, &m), EC_OK);

	/* The new member publishes its name and client URLs (etcd's publish). */
	const char *cu[] = {"http://10.0.0.4:2379", "https://10.0.0.4:2378"};
	Metastore__MemberAttr a = METASTORE__MEMBER_ATTR__INIT;
	a.member_id = 0x40;
	a.name = "d";
	a.client_urls = (char **)cu;
	a.n_client_urls = 2;
	cr_assert_eq(ec_cluster_apply_attr(cl, &a), EC_OK);
	exp_member p40 = M40;
	p40.name = "d";
	p40.clients[0] = cu[0];
	p40.clients[1] = cu[1];
	p40.nc = 2;
	const exp_member *const want[] = {&M10, &M20, &M30, &p40};
	assert_mem(want, 4, NULL, 0, "attr 0x40");
	assert_stored(want, 4, NULL, 0, "attr 0x40 (stored)");

	/* A learner publishing stays a learner; peer URLs untouched. */
	Metastore__MemberAttr b = METASTORE__MEMBER_ATTR__INIT;
	b.member_id = 0x20;
	b.name = "b2";
	cr_assert_eq(ec_cluster_apply_attr(cl, &b), EC_OK);
	exp_member p20 = M20;
	p20.name = "b2";
	p20.nc = 0;
	const exp_member *const want2[] = {&M10, &p20, &M30, &p40};
	assert_mem(want2, 4, NULL, 0, "attr 0x20 (no client URLs)");

	both before = snap();
	Metastore__MemberAttr x = METASTORE__MEMBER_ATTR__INIT;
	x.member_id = 0x77;
	x.name = "ghost";
	cr_assert_eq(ec_cluster_apply_attr(cl, &x), EC_MEMBER_NOT_FOUND);
	assert_unchanged(&before, "attr unknown");
	free_snap(&before);

	reopen();
	assert_mem(want2, 4, NULL, 0, "attrs, reopened");
}

/* ---- apply groups ------------------------------------------------------ */

Test(cluster, apply_group_commit)
{
	bootstrap3(NULL, 0);
	cr_assert_eq(st_apply_begin(db), ST_OK);
	Etcdserverpb__Member m = to_pb(&M40);
	cr_assert_eq(ec_cluster_apply_add(cl, &m), EC_OK);
	/* Visible in memory at once (later entries of the same round see it)... */
	const exp_member *const four[] = {&M10, &M20, &M30, &M40};
	assert_mem(four, 4, NULL, 0, "in group, memory");
	cr_assert(ec_cluster_get(cl, 0x40, NULL, NULL));
	cr_assert_eq(ec_cluster_check_add(cl, (char *const *)M40.peers, 1, false), EC_PEER_URL_EXIST);
	/* ...but only staged: the committed record is still the old one. */
	assert_stored(STD3, 3, NULL, 0, "in group, committed record");

	/* More changes in the same group build on the staged set. */
	cr_assert_eq(ec_cluster_apply_promote(cl, 0x20), EC_OK);
	cr_assert_eq(ec_cluster_apply_remove(cl, 0x30), EC_OK);
	cr_assert_eq(st_apply_commit(db), ST_OK);

	exp_member p20 = M20;
	p20.learner = false;
	const exp_member *const want[] = {&M10, &p20, &M40};
	const uint64_t rm[] = {0x30};
	assert_mem(want, 3, rm, 1, "after commit, memory");
	assert_stored(want, 3, rm, 1, "after commit, stored");
	reopen();
	assert_mem(want, 3, rm, 1, "after commit, reopened");
	cr_assert(ec_cluster_is_removed(cl, 0x30));
}

/*
 * Abort: the staged record is dropped, so the stored set (and a reopen) is the
 * old one. The in-memory copy, however, was swapped by each apply and
 * st_apply_abort knows nothing about ec_cluster: right after the abort,
 * ec_cluster_copy/count/get still show the aborted changes (0x40 present, 0x10
 * present-but-removed as applied). Only ec_cluster_reload brings memory back in
 * line with the store. This test checks the store side and the reload; the
 * divergence itself is asserted (as a failing finding) in
 * cluster_finding/abort_rolls_back_memory.
 */
Test(cluster, apply_group_abort_store_and_reload)
{
	bootstrap3(NULL, 0);
	cr_assert_eq(st_apply_begin(db), ST_OK);
	Etcdserverpb__Member m = to_pb(&M40);
	cr_assert_eq(ec_cluster_apply_add(cl, &m), EC_OK);
	cr_assert_eq(ec_cluster_apply_remove(cl, 0x10), EC_OK);
	const exp_member *const staged[] = {&M20, &M30, &M40};
	const uint64_t rm[] = {0x10};
	assert_mem(staged, 3, rm, 1, "in group, memory");
	st_apply_abort(db);
	cr_assert_not(st_apply_open(db));

	assert_stored(STD3, 3, NULL, 0, "after abort, stored");
	cr_assert_eq(ec_cluster_reload(cl), ST_OK);
	assert_mem(STD3, 3, NULL, 0, "after abort + reload");
	cr_assert_not(ec_cluster_is_removed(cl, 0x10));
	reopen();
	assert_mem(STD3, 3, NULL, 0, "after abort, reopened");

	/* The aborted changes can be applied again afterwards. */
	Etcdserverpb__Member m2 = to_pb(&M40);
	cr_assert_eq(ec_cluster_apply_add(cl, &m2), EC_OK);
	cr_assert_eq(ec_cluster_count(cl), 4);
}

/*
 * The contract for a dropped group (ec_cluster.h): applies change the in-memory
 * set at once, and the caller that aborts the group (the node loop, also when
 * the group's write fails) reloads; memory then equals the store again and
 * readers never keep seeing what was not written.
 */
Test(cluster, abort_then_reload_rolls_back_memory)
{
	bootstrap3(NULL, 0);
	cr_assert_eq(st_apply_begin(db), ST_OK);
	Etcdserverpb__Member m = to_pb(&M40);
	cr_assert_eq(ec_cluster_apply_add(cl, &m), EC_OK);
	cr_assert_eq(ec_cluster_apply_remove(cl, 0x10), EC_OK);
	st_apply_abort(db);
	cr_assert_eq(ec_cluster_reload(cl), ST_OK);
	assert_stored(STD3, 3, NULL, 0, "after abort, stored");
	cr_expect_not(ec_cluster_is_removed(cl, 0x10), "aborted remove of 0x10 still visible");
	cr_expect_not(ec_cluster_get(cl, 0x40, NULL, NULL), "aborted add of 0x40 still visible");
	/* Non-fatal checks only, so nothing leaks when they fail. */
	both now = snap();
	cr_expect(now.nmem == now.ndisk && memcmp(now.mem, now.disk, now.nmem) == 0,
		  "memory after abort + reload (%zu bytes packed) differs from the store (%zu)",
		  now.nmem, now.ndisk);
	free_snap(&now);
}

/* ---- lookups, pack, reload --------------------------------------------- */

Test(cluster, find_by_peer_urls)
{
	bootstrap3(NULL, 0);
	const char *fwd[] = {"http://10.0.0.2:2380", "https://10.0.0.2:2381"};
	const char *rev[] = {"https://10.0.0.2:2381", "http://10.0.0.2:2380"};
	const char *sub[] = {"http://10.0.0.2:2380"};
	const char *sup[] = {"http://10.0.0.2:2380", "https://10.0.0.2:2381", "http://10.0.0.9:2380"};
	const char *mix[] = {"http://10.0.0.2:2380", "http://10.0.0.3:2380"};
	const char *other[] = {"http://10.0.0.9:2380"};
	const char *client[] = {"http://10.0.0.1:2379"};
	cr_assert_eq(ec_cluster_find_by_peer_urls(cl, fwd, 2), 0x20);
	cr_assert_eq(ec_cluster_find_by_peer_urls(cl, rev, 2), 0x20, "order must not matter");
	cr_assert_eq(ec_cluster_find_by_peer_urls(cl, sub, 1), 0, "a subset is not equal");
	cr_assert_eq(ec_cluster_find_by_peer_urls(cl, sup, 3), 0, "a superset is not equal");
	cr_assert_eq(ec_cluster_find_by_peer_urls(cl, mix, 2), 0);
	cr_assert_eq(ec_cluster_find_by_peer_urls(cl, other, 1), 0);
	cr_assert_eq(ec_cluster_find_by_peer_urls(cl, client, 1), 0, "client URLs do not count");
	cr_assert_eq(ec_cluster_find_by_peer_urls(cl, NULL, 0), 0);
	cr_assert_eq(ec_cluster_find_by_peer_urls(cl, M10.peers, 1), 0x10);
	cr_assert_eq(ec_cluster_find_by_peer_urls(cl, M30.peers, 1), 0x30);
}

Test(cluster, get)
{
	bootstrap3(NULL, 0);
	bool learner = false;
	char **urls = NULL;
	cr_assert(ec_cluster_get(cl, 0x20, &learner, &urls));
	cr_assert(learner);
	cr_assert_not_null(urls);
	cr_assert_str_eq(urls[0], "http://10.0.0.2:2380");
	cr_assert_str_eq(urls[1], "https://10.0.0.2:2381");
	cr_assert_null(urls[2], "NULL-terminated");
	/* A copy: scribbling on it does not touch the set. */
	urls[0][0] = 'X';
	ec_cluster_strv_free(urls);
	urls = NULL;
	cr_assert(ec_cluster_get(cl, 0x20, NULL, &urls));
	cr_assert_str_eq(urls[0], "http://10.0.0.2:2380");
	ec_cluster_strv_free(urls);

	learner = true;
	urls = NULL;
	cr_assert(ec_cluster_get(cl, 0x10, &learner, &urls));
	cr_assert_not(learner);
	cr_assert_str_eq(urls[0], "http://10.0.0.1:2380");
	cr_assert_null(urls[1]);
	ec_cluster_strv_free(urls);

	cr_assert(ec_cluster_get(cl, 0x30, NULL, NULL));
	urls = NULL;
	cr_assert_not(ec_cluster_get(cl, 0x77, &learner, &urls));
	cr_assert_null(urls, "nothing to free for an unknown id");
	ec_cluster_strv_free(NULL);
}

Test(cluster, pack_roundtrip)
{
	const uint64_t rm[] = {0x7};
	bootstrap3(rm, 1);
	uint8_t *buf = NULL;
	size_t len = 0;
	cr_assert_eq(ec_cluster_pack(cl, &buf, &len), ST_OK);
	cr_assert_gt(len, 0);
	Metastore__MemberSet *s = metastore__member_set__unpack(NULL, len, buf);
	assert_set_eq(s, STD3, 3, rm, 1, "unpacked");
	metastore__member_set__free_unpacked(s, NULL);
	/* The packed set is byte for byte the stored record. */
	uint8_t *disk = NULL;
	size_t dlen = 0;
	stored_bytes(&disk, &dlen);
	assert_bytes_eq(buf, len, disk, dlen, "pack vs stored");
	free(disk);
	/* Feeding the packed set to another cluster's replace reproduces it. */
	Metastore__MemberSet *again = metastore__member_set__unpack(NULL, len, buf);
	free(buf);
	cr_assert_eq(ec_cluster_apply_remove(cl, 0x10), EC_OK);
	cr_assert_eq(ec_cluster_replace(cl, again), ST_OK);
	metastore__member_set__free_unpacked(again, NULL);
	assert_mem(STD3, 3, rm, 1, "replace from packed");

	/* An empty set packs too. */
	reopen();
	Metastore__MemberSet empty = METASTORE__MEMBER_SET__INIT;
	empty.format = 1;
	cr_assert_eq(ec_cluster_replace(cl, &empty), ST_OK);
	cr_assert_eq(ec_cluster_pack(cl, &buf, &len), ST_OK);
	s = metastore__member_set__unpack(NULL, len, buf);
	free(buf);
	assert_set_eq(s, NULL, 0, NULL, 0, "empty unpacked");
	metastore__member_set__free_unpacked(s, NULL);
}

/* Store @set as the "members" record behind ec_cluster's back (a snapshot). */
static void put_record(const Metastore__MemberSet *set)
{
	size_t len = metastore__member_set__get_packed_size(set);
	uint8_t *buf = malloc(len ? len : 1);
	metastore__member_set__pack(set, buf);
	cr_assert_eq(st_rmeta_put(db, "members", buf, len), ST_OK);
	free(buf);
}

Test(cluster, reload_after_rmeta_put)
{
	bootstrap3(NULL, 0);
	/* Another member's set, as installed by a raft snapshot. */
	Etcdserverpb__Member a = to_pb(&M30), b = to_pb(&M40);
	Etcdserverpb__Member *ms[] = {&a, &b};
	const uint64_t rm[] = {0x10, 0x20};
	Metastore__MemberSet set = METASTORE__MEMBER_SET__INIT;
	set.format = 1;
	set.members = ms;
	set.n_members = 2;
	set.removed = (uint64_t *)rm;
	set.n_removed = 2;
	put_record(&set);
	assert_mem(STD3, 3, NULL, 0, "before reload: memory is the old set");
	cr_assert_eq(ec_cluster_reload(cl), ST_OK);
	const exp_member *const want[] = {&M30, &M40};
	assert_mem(want, 2, rm, 2, "after reload");
	cr_assert(ec_cluster_is_removed(cl, 0x10));
	cr_assert_not(ec_cluster_get(cl, 0x10, NULL, NULL));
	cr_assert_eq(ec_cluster_find_by_peer_urls(cl, M40.peers, 1), 0x40);
	/* Applies continue from the reloaded set. */
	Etcdserverpb__Member c = to_pb(&M10);
	cr_assert_eq(ec_cluster_apply_add(cl, &c), EC_MEMBER_EXIST, "0x10 is removed there");
	cr_assert_eq(ec_cluster_apply_remove(cl, 0x40), EC_OK);
	const exp_member *const one[] = {&M30};
	const uint64_t rm2[] = {0x10, 0x20, 0x40};
	assert_stored(one, 1, rm2, 3, "apply after reload");

	/* A corrupt record: reload fails and keeps the set it had. */
	both before = snap();
	const uint8_t junk[] = {0xff, 0xff, 0xff, 0xff};
	cr_assert_eq(st_rmeta_put(db, "members", junk, sizeof(junk)), ST_OK);
	cr_assert_eq(ec_cluster_reload(cl), ST_ECORRUPT);
	uint8_t *mb = NULL;
	size_t ml = 0;
	mem_bytes(&mb, &ml);
	assert_bytes_eq(mb, ml, before.mem, before.nmem, "failed reload keeps memory");
	free(mb);
	free_snap(&before);
	close_db();
	st_options o = {.create_if_missing = true};
	char err[512];
	cr_assert_eq(st_db_open(dir, &o, &db, err, sizeof(err)), ST_OK, "%s", err);
	ec_cluster *c2 = NULL;
	cr_assert_eq(ec_cluster_open(db, &c2), ST_ECORRUPT);

	/* A record from a newer format is refused, not misread. */
	Metastore__MemberSet v2 = METASTORE__MEMBER_SET__INIT;
	v2.format = 2;
	put_record(&v2);
	cr_assert_neq(ec_cluster_open(db, &c2), ST_OK);
	/* Restore a good record so teardown has a cluster to close. */
	put_record(&set);
	cr_assert_eq(ec_cluster_open(db, &cl), ST_OK);
	assert_mem(want, 2, rm, 2, "good record again");
}

/* ---- concurrency ------------------------------------------------------- */

/*
 * The node thread applies 200 changes: adds of ids 1000..1099 (each with its own
 * peer URL), then removes of the same ids in the same order; groups of ten share
 * an apply group. After any step the set is {0x10, 0x20, 0x30} plus the ids
 * 1000+lo .. 1000+hi-1, with removed = 1000 .. 1000+lo-1 and either lo == 0 or
 * hi == 100. Readers check every copy against that and that steps never go back.
 */
#define NADD 100
#define NSTEP (2 * NADD)

typedef struct reader {
	ec_cluster *c;
	atomic_bool *stop;
	atomic_int *ready;
	long copies;
	long bad;
	char why[256];
} reader;

static void member_url(uint64_t id, char *buf, size_t cap)
{
	snprintf(buf, cap, "http://10.9.%u.%u:2380", (unsigned)(id / 256), (unsigned)(id % 256));
}

/* "" when @s is a state some step produced, else why not; *@step receives it. */
static const char *check_state(const Metastore__MemberSet *s, long *step)
{
	static _Thread_local char why[200];
	if (s == NULL)
		return "copy returned NULL";
	if (s->format != 1)
		return "format";
	if (s->n_members < 3)
		return "base members missing";
	size_t lo = s->n_removed, hi = lo + (s->n_members - 3);
	if (hi > NADD || (lo != 0 && hi != NADD)) {
		snprintf(why, sizeof(why), "impossible state: %zu members, %zu removed", s->n_members,
			 s->n_removed);
		return why;
	}
	if (s->members[0]->id != 0x10 || s->members[1]->id != 0x20 || s->members[2]->id != 0x30)
		return "base members wrong or unsorted";
	for (size_t i = 0; i < lo; i++)
		if (s->removed[i] != 1000 + i)
			return "removed list wrong";
	char url[64];
	for (size_t j = 0; j < hi - lo; j++) {
		const Etcdserverpb__Member *m = s->members[3 + j];
		if (m->id != 1000 + lo + j) {
			snprintf(why, sizeof(why), "member %zu is %#llx, want %zu", 3 + j,
				 (unsigned long long)m->id, 1000 + lo + j);
			return why;
		}
		member_url(m->id, url, sizeof(url));
		if (m->n_peerurls != 1 || strcmp(m->peerurls[0], url) != 0)
			return "peer URL wrong";
		if (m->islearner)
			return "learner flag wrong";
	}
	*step = (long)(hi + lo);
	return "";
}

static void *reader_main(void *arg)
{
	reader *r = arg;
	long last = -1;
	atomic_fetch_add(r->ready, 1);
	while (!atomic_load(r->stop)) {
		Metastore__MemberSet *s = ec_cluster_copy(r->c);
		long step = -1;
		const char *why = check_state(s, &step);
		if (why[0] == '\0' && step < last)
			why = "state went backwards";
		if (why[0] != '\0' && r->bad++ == 0)
			snprintf(r->why, sizeof(r->why), "copy %ld: %s", r->copies, why);
		if (step > last)
			last = step;
		if (s != NULL)
			metastore__member_set__free_unpacked(s, NULL);
		/* Exercise the other readers too (no consistency across calls). */
		(void)ec_cluster_count(r->c);
		(void)ec_cluster_is_removed(r->c, 1000);
		char **u = NULL;
		if (ec_cluster_get(r->c, 0x20, NULL, &u))
			ec_cluster_strv_free(u);
		r->copies++;
	}
	return NULL;
}

Test(cluster, readers_while_applying)
{
	bootstrap3(NULL, 0);
	atomic_bool stop = false;
	atomic_int ready = 0;
	reader rs[2];
	pthread_t th[2];
	for (int i = 0; i < 2; i++) {
		rs[i] = (reader){.c = cl, .stop = &stop, .ready = &ready};
		cr_assert_eq(pthread_create(&th[i], NULL, reader_main, &rs[i]), 0);
	}
	while (atomic_load(&ready) < 2)
		sched_yield();

	char url[64];
	for (int step = 0; step < NSTEP; step++) {
		if (step % 10 == 0)
			cr_assert_eq(st_apply_begin(db), ST_OK);
		int rc;
		if (step < NADD) {
			Etcdserverpb__Member m = ETCDSERVERPB__MEMBER__INIT;
			m.id = 1000 + (uint64_t)step;
			member_url(m.id, url, sizeof(url));
			char *u = url;
			m.peerurls = &u;
			m.n_peerurls = 1;
			rc = ec_cluster_apply_add(cl, &m);
		} else {
			rc = ec_cluster_apply_remove(cl, 1000 + (uint64_t)(step - NADD));
		}
		cr_assert_eq(rc, EC_OK, "step %d", step);
		cr_assert_eq(ec_cluster_count(cl), step < NADD ? 3 + step + 1 : 3 + NSTEP - step - 1);
		if (step % 10 == 9)
			cr_assert_eq(st_apply_commit(db), ST_OK);
	}
	atomic_store(&stop, true);
	for (int i = 0; i < 2; i++) {
		pthread_join(th[i], NULL);
		cr_assert_gt(rs[i].copies, 0, "reader %d never ran", i);
		cr_assert_eq(rs[i].bad, 0, "reader %d: %ld bad copies of %ld; first: %s", i, rs[i].bad,
			     rs[i].copies, rs[i].why);
	}

	uint64_t rm[NADD];
	for (int i = 0; i < NADD; i++)
		rm[i] = 1000 + (uint64_t)i;
	assert_mem(STD3, 3, rm, NADD, "after 200 steps");
	reopen();
	assert_mem(STD3, 3, rm, NADD, "after 200 steps, reopened");
}
