/*
 * Unit tests for ec_snapshot: the key-bucket records etcd's backend holds
 * (byte for byte as etcd 3.4's mvcc writes them), export to a bbolt file and
 * import back (every revision, tombstone, version, lease, auth, compaction),
 * and refusal of bad files. Real RocksDB in temp dirs.
 */
#include <criterion/criterion.h>

#include "etcdcompat/ec_snapshot.h"
#include "kv.pb-c.h"
#include "storage/st_db.h"
#include "storage/st_mvcc.h"
#include "test/storage/st_testutil.h"

static char *dir;
static st_db *db;

static st_db *open_db(const char *d)
{
	st_options o = {.create_if_missing = true};
	char err[512];
	st_db *out = NULL;
	cr_assert_eq(st_db_open(d, &o, &out, err, sizeof(err)), ST_OK, "%s", err);
	return out;
}

static void setup(void)
{
	dir = tu_tmpdir();
	db = open_db(dir);
}

static void teardown(void)
{
	st_db_close(db);
	tu_rmrf(dir);
	free(dir);
}

/* One write txn: put @k=@v (lease @lease), or delete @k when @v is NULL. */
static void wr(const char *k, const char *v, int64_t lease)
{
	st_txn *t;
	cr_assert_eq(st_txn_begin(db, true, &t), ST_OK);
	if (v != NULL)
		cr_assert_eq(st_txn_put(t, (const uint8_t *)k, strlen(k), (const uint8_t *)v, strlen(v),
					lease), ST_OK);
	else
		cr_assert_eq(st_txn_delete_range(t, (const uint8_t *)k, strlen(k), NULL, 0, NULL), ST_OK);
	st_kv_state s;
	st_kv_state_get(db, &s);
	cr_assert_eq(st_txn_commit(t, s.applied + 1), ST_OK);
}

static void compact(int64_t rev)
{
	st_txn *t;
	cr_assert_eq(st_txn_begin(db, true, &t), ST_OK);
	cr_assert_eq(st_txn_compact(t, rev), ST_OK);
	st_kv_state s;
	st_kv_state_get(db, &s);
	cr_assert_eq(st_txn_commit(t, s.applied + 1), ST_OK);
}

/* The records as "main/sub[t]:key" joined by spaces, and checks of each
 * record's bytes against etcd's encoding. */
struct recs {
	char text[4096];
	int n;
};

static int rec_collect(void *arg, const ec_snap_record *r)
{
	struct recs *o = arg;
	const st_kv *kv = r->kv;
	cr_assert(r->key_len == (kv->tombstone ? 18u : 17u));
	uint64_t main = 0, sub = 0;
	for (int i = 0; i < 8; i++) {
		main = main << 8 | r->key[i];
		sub = sub << 8 | r->key[9 + i];
	}
	cr_assert_eq(r->key[8], '_');
	cr_assert_eq((int64_t)main, kv->mod_rev);
	cr_assert_eq((int64_t)sub, kv->sub);
	if (kv->tombstone)
		cr_assert_eq(r->key[17], 't');
	Mvccpb__KeyValue *m = mvccpb__key_value__unpack(NULL, r->val_len, r->val);
	cr_assert_not_null(m);
	cr_assert_eq(m->key.len, kv->key_len);
	cr_assert_eq(memcmp(m->key.data, kv->key, kv->key_len), 0);
	if (kv->tombstone) {
		cr_assert_eq(m->create_revision + m->mod_revision + m->version + m->lease, 0);
		cr_assert_eq(m->value.len, 0);
		/* etcd's tombstone: only field 1 */
		cr_assert_eq(r->val_len, 2 + kv->key_len);
	} else {
		cr_assert_eq(m->mod_revision, kv->mod_rev);
		cr_assert_eq(m->create_revision, kv->create_rev);
		cr_assert_eq(m->version, kv->version);
		cr_assert_eq(m->lease, kv->lease);
		cr_assert_eq(m->value.len, kv->val_len);
		/* re-packing gives the same bytes (field order, zero fields omitted) */
		uint8_t buf[512];
		cr_assert_eq(mvccpb__key_value__pack(m, buf), r->val_len);
		cr_assert_eq(memcmp(buf, r->val, r->val_len), 0);
	}
	mvccpb__key_value__free_unpacked(m, NULL);
	char one[128];
	snprintf(one, sizeof one, "%s%lld/%lld%s:%.*s", o->n ? " " : "", (long long)kv->mod_rev,
		 (long long)kv->sub, kv->tombstone ? "t" : "", (int)kv->key_len, kv->key);
	strncat(o->text, one, sizeof(o->text) - strlen(o->text) - 1);
	o->n++;
	return 0;
}

static const char *records(int64_t to)
{
	static struct recs o;
	memset(&o, 0, sizeof o);
	st_txn *t;
	cr_assert_eq(st_txn_begin(db, false, &t), ST_OK);
	cr_assert_eq(ec_snapshot_key_records(t, to, rec_collect, &o), ST_OK);
	st_txn_abort(t);
	return o.text;
}

TestSuite(records, .init = setup, .fini = teardown);

Test(records, every_change_in_revision_order)
{
	cr_assert_str_eq(records(100), "");
	wr("a", "1", 0);
	wr("b", "2", 7);
	wr("a", "3", 0);
	wr("b", NULL, 0);
	cr_assert_str_eq(records(100), "2/0:a 3/0:b 4/0:a 5/0t:b");
	cr_assert_str_eq(records(3), "2/0:a 3/0:b");
	cr_assert_str_eq(records(0), "");
}

Test(records, compaction_keeps_what_etcd_keeps)
{
	wr("a", "1", 0);
	wr("b", "2", 0);
	wr("a", "3", 0);
	wr("b", NULL, 0);
	wr("c", "", 0); /* empty value: field 5 omitted */
	compact(3);
	cr_assert_str_eq(records(100), "2/0:a 3/0:b 4/0:a 5/0t:b 6/0:c");
	compact(4);
	cr_assert_str_eq(records(100), "3/0:b 4/0:a 5/0t:b 6/0:c");
	compact(5);
	cr_assert_str_eq(records(100), "4/0:a 6/0:c");
}

Test(records, unfinished_physical_compaction_is_hidden)
{
	wr("a", "1", 0);
	wr("a", "2", 0);
	wr("b", "1", 0);
	wr("b", NULL, 0);
	wr("a", "3", 0);
	/* the state a crash during compaction leaves: compaction at 5 recorded,
	 * nothing deleted yet (compact_done 0) */
	st_kv_state s;
	st_kv_state_get(db, &s);
	st_db_close(db);
	uint8_t v[32];
	uint64_t f[4] = {s.applied, (uint64_t)s.rev, 5, 0};
	for (int i = 0; i < 4; i++)
		for (int j = 0; j < 8; j++)
			v[i * 8 + j] = (uint8_t)(f[i] >> (56 - 8 * j));
	char *e = tu_poke_default(dir, "ms.kvstate", v, 32);
	cr_assert_null(e, "%s", e);
	db = open_db(dir);
	st_kv_state_get(db, &s);
	cr_assert_eq(s.compact_done, 0);
	cr_assert_eq(s.compact_rev, 5);
	cr_assert_str_eq(records(100), "3/0:a 6/0:a");
	cr_assert_eq(st_mvcc_finish_compaction(db), ST_OK);
	cr_assert_str_eq(records(100), "3/0:a 6/0:a");
}

/* ---- export -> import ---------------------------------------------------- */

#include "auth.pb-c.h"
#include "internal.pb-c.h"
#include "storage/st_bolt.h"

/* Every record's key and value bytes, concatenated (what etcd would hash). */
struct raw {
	uint8_t *p;
	size_t len;
};

static int raw_add(void *arg, const ec_snap_record *r)
{
	struct raw *o = arg;
	o->p = realloc(o->p, o->len + r->key_len + r->val_len);
	memcpy(o->p + o->len, r->key, r->key_len);
	memcpy(o->p + o->len + r->key_len, r->val, r->val_len);
	o->len += r->key_len + r->val_len;
	return 0;
}

static struct raw raw_records(st_db *d)
{
	struct raw o = {0};
	st_txn *t;
	cr_assert_eq(st_txn_begin(d, false, &t), ST_OK);
	cr_assert_eq(ec_snapshot_key_records(t, INT64_MAX, raw_add, &o), ST_OK);
	st_txn_abort(t);
	return o;
}

static int lease_text(void *arg, int64_t id, int64_t ttl)
{
	char *s = arg;
	sprintf(s + strlen(s), "%lld:%lld ", (long long)id, (long long)ttl);
	return 0;
}

static int key_text(void *arg, const uint8_t *k, size_t kl)
{
	char *s = arg;
	sprintf(s + strlen(s), "%.*s ", (int)kl, k);
	return 0;
}

/* "id:ttl ..." of the leases of @d and "key ..." of the keys attached to @id. */
static void leases_of(st_db *d, int64_t id, char *out, char *keys)
{
	out[0] = keys[0] = '\0';
	st_txn *t;
	cr_assert_eq(st_txn_begin(d, false, &t), ST_OK);
	cr_assert_eq(st_txn_leases(t, lease_text, out), ST_OK);
	cr_assert_eq(st_txn_lease_keys(t, id, key_text, keys), ST_OK);
	st_txn_abort(t);
}

static void put_rmeta(const char *name, const ProtobufCMessage *m)
{
	size_t n = protobuf_c_message_get_packed_size(m);
	uint8_t *b = malloc(n + 1);
	protobuf_c_message_pack(m, b);
	cr_assert_eq(st_rmeta_put(db, name, b, n), ST_OK);
	free(b);
}

/* The replicated record @name of @d as bytes ("" when absent). */
static size_t rmeta_of(st_db *d, const char *name, uint8_t *out, size_t cap)
{
	void *v = NULL;
	size_t len = 0;
	int rc = st_rmeta_get(d, name, &v, &len);
	if (rc == ST_ENOTFOUND)
		return 0;
	cr_assert_eq(rc, ST_OK);
	cr_assert_leq(len, cap);
	memcpy(out, v, len);
	free(v);
	return len;
}

/* A store with everything an export carries. */
static void fill_store(void)
{
	st_txn *t;
	cr_assert_eq(st_txn_begin(db, true, &t), ST_OK);
	cr_assert_eq(st_txn_lease_grant(t, 0x1234, 600), ST_OK);
	cr_assert_eq(st_txn_lease_grant(t, 0x99, 5), ST_OK);
	cr_assert_eq(st_txn_commit(t, 1), ST_OK);
	wr("a", "1", 0);
	wr("b", "2", 0x1234);
	wr("a", "3", 0);
	/* one revision, two changes (sub-revisions 0 and 1) */
	cr_assert_eq(st_txn_begin(db, true, &t), ST_OK);
	cr_assert_eq(st_txn_put(t, (const uint8_t *)"c", 1, (const uint8_t *)"x", 1, 0), ST_OK);
	cr_assert_eq(st_txn_put(t, (const uint8_t *)"d\0e", 3, (const uint8_t *)"", 0, 0x1234),
		     ST_OK);
	cr_assert_eq(st_txn_commit(t, 6), ST_OK);
	wr("a", NULL, 0);
	wr("a", "again", 0);
	compact(4);
	wr("e", "late", 0x99);

	Authpb__User u = AUTHPB__USER__INIT, *up = &u;
	u.name.data = (uint8_t *)"root";
	u.name.len = 4;
	u.password.data = (uint8_t *)"$2a$10$abcdefghijklmnopqrstuv";
	u.password.len = strlen((char *)u.password.data);
	char *roles[] = {"root"};
	u.roles = roles;
	u.n_roles = 1;
	Authpb__Permission perm = AUTHPB__PERMISSION__INIT, *pp = &perm;
	perm.permtype = AUTHPB__PERMISSION__TYPE__READWRITE;
	perm.key.data = (uint8_t *)"k";
	perm.key.len = 1;
	Authpb__Role r = AUTHPB__ROLE__INIT, *rp = &r;
	r.name.data = (uint8_t *)"root";
	r.name.len = 4;
	r.keypermission = &pp;
	r.n_keypermission = 1;
	Metastore__AuthState as = METASTORE__AUTH_STATE__INIT;
	as.format = 1;
	as.enabled = 1;
	as.revision = 7;
	as.users = &up;
	as.n_users = 1;
	as.roles = &rp;
	as.n_roles = 1;
	put_rmeta("auth", &as.base);

	Etcdserverpb__AlarmMember al = ETCDSERVERPB__ALARM_MEMBER__INIT, *ap = &al;
	al.memberid = 0xabc;
	al.alarm = ETCDSERVERPB__ALARM_TYPE__NOSPACE;
	Metastore__AlarmSet set = METASTORE__ALARM_SET__INIT;
	set.format = 1;
	set.alarms = &ap;
	set.n_alarms = 1;
	put_rmeta("alarms", &set.base);

	Etcdserverpb__Member m = ETCDSERVERPB__MEMBER__INIT, *mp = &m;
	m.id = 0x8e9e05c52164694d;
	m.name = "m<1>";
	char *purls[] = {"http://127.0.0.1:2380"};
	m.peerurls = purls;
	m.n_peerurls = 1;
	Metastore__MemberSet ms = METASTORE__MEMBER_SET__INIT;
	ms.format = 1;
	ms.members = &mp;
	ms.n_members = 1;
	uint64_t removed[] = {0x10};
	ms.removed = removed;
	ms.n_removed = 1;
	put_rmeta("members", &ms.base);
}

TestSuite(snapshot, .init = setup, .fini = teardown);

Test(snapshot, export_import_round_trip)
{
	fill_store();
	char path[4200];
	snprintf(path, sizeof path, "%s/out.snap", dir);
	ec_snapshot_info xi;
	char err[512] = "";
	cr_assert_eq(ec_snapshot_export(db, path, true, &xi, err, sizeof err), ST_OK, "%s", err);
	cr_assert_eq(xi.rev, 8);
	cr_assert_eq(xi.compact_rev, 4);
	cr_assert_eq(xi.leases, 2);
	cr_assert_eq(xi.members, 1);
	cr_assert_eq(xi.bytes % 512, 32);

	char *dir2 = tu_tmpdir();
	st_db *db2 = open_db(dir2);
	ec_snapshot_info ii;
	cr_assert_eq(ec_snapshot_import(db2, path, false, &ii, err, sizeof err), ST_OK, "%s", err);
	cr_assert_eq(ii.rev, 8);
	cr_assert_eq(ii.compact_rev, 4);
	cr_assert_eq(ii.records, xi.records);
	cr_assert_eq(ii.applied, xi.applied);
	st_kv_state a, b;
	st_kv_state_get(db, &a);
	st_kv_state_get(db2, &b);
	cr_assert_eq(b.rev, a.rev);
	cr_assert_eq(b.compact_rev, a.compact_rev);
	cr_assert_eq(b.compact_done, a.compact_done);

	/* every record, byte for byte: revisions, tombstones, versions, leases */
	struct raw ra = raw_records(db), rb = raw_records(db2);
	cr_assert_gt(ra.len, 0);
	cr_assert_eq(ra.len, rb.len);
	cr_assert_eq(memcmp(ra.p, rb.p, ra.len), 0);
	free(ra.p);
	free(rb.p);
	cr_assert_str_eq(records(100), "3/0:b 4/0:a 5/0:c 5/1:d 6/0t:a 7/0:a 8/0:e");

	/* leases with their TTLs, keys attached from the keyspace */
	char l1[256], k1[256], l2[256], k2[256];
	leases_of(db, 0x1234, l1, k1);
	leases_of(db2, 0x1234, l2, k2);
	cr_assert_str_eq(l2, "153:5 4660:600 ");
	cr_assert_str_eq(l2, l1);
	cr_assert_eq(strcmp(k2, k1), 0);
	cr_assert_eq(strncmp(k2, "b d", 3), 0);
	leases_of(db2, 0x99, l2, k2);
	cr_assert_str_eq(k2, "e ");

	/* auth and alarms as the same replicated records; members are not imported */
	uint8_t x[1024], y[1024];
	size_t nx = rmeta_of(db, "auth", x, sizeof x), ny = rmeta_of(db2, "auth", y, sizeof y);
	cr_assert_gt(nx, 0);
	cr_assert_eq(nx, ny);
	cr_assert_eq(memcmp(x, y, nx), 0);
	nx = rmeta_of(db, "alarms", x, sizeof x);
	ny = rmeta_of(db2, "alarms", y, sizeof y);
	cr_assert_gt(nx, 0);
	cr_assert_eq(nx, ny);
	cr_assert_eq(memcmp(x, y, nx), 0);
	cr_assert_eq(rmeta_of(db2, "members", y, sizeof y), 0);

	/* the file in etcd's words */
	st_bolt *bf;
	cr_assert_eq(st_bolt_open(path, &bf, err, sizeof err), ST_OK, "%s", err);
	const uint8_t *v;
	size_t vl;
	cr_assert_eq(st_bolt_get(bf, "members", 7, "8e9e05c52164694d", 16, &v, &vl), ST_OK);
	const char *js = "{\"id\":10276657743932975437,\"peerURLs\":[\"http://127.0.0.1:2380\"],"
			 "\"name\":\"m\\u003c1\\u003e\"}";
	cr_assert(vl == strlen(js) && memcmp(v, js, vl) == 0, "%.*s", (int)vl, v);
	cr_assert_eq(st_bolt_get(bf, "members_removed", 15, "10", 2, &v, &vl), ST_OK);
	cr_assert_eq(vl, 7);
	cr_assert_eq(st_bolt_get(bf, "cluster", 7, "clusterVersion", 14, &v, &vl), ST_OK);
	cr_assert_eq(memcmp(v, "3.4.0", 5), 0);
	cr_assert_eq(st_bolt_get(bf, "meta", 4, "finishedCompactRev", 18, &v, &vl), ST_OK);
	cr_assert_eq(vl, 17);
	cr_assert_eq(v[7], 4);
	cr_assert_eq(st_bolt_get(bf, "auth", 4, "authRevision", 12, &v, &vl), ST_OK);
	cr_assert_eq(vl, 8);
	cr_assert_eq(v[7], 7);
	cr_assert_eq(st_bolt_get(bf, "auth", 4, "authEnabled", 11, &v, &vl), ST_OK);
	cr_assert_eq(v[0], 1);
	st_bolt_close(bf);

	st_db_close(db2);
	tu_rmrf(dir2);
	free(dir2);
}

Test(snapshot, import_needs_a_fresh_store)
{
	char path[4200], err[512] = "";
	snprintf(path, sizeof path, "%s/out.snap", dir);
	cr_assert_eq(ec_snapshot_export(db, path, true, NULL, err, sizeof err), ST_OK, "%s", err);
	wr("x", "1", 0);
	cr_assert_eq(ec_snapshot_import(db, path, false, NULL, err, sizeof err), ST_EINVAL);
	/* an empty store exports an empty key bucket and imports to revision 1 */
	char *dir2 = tu_tmpdir();
	st_db *db2 = open_db(dir2);
	ec_snapshot_info ii;
	cr_assert_eq(ec_snapshot_import(db2, path, false, &ii, err, sizeof err), ST_OK, "%s", err);
	cr_assert_eq(ii.rev, 1);
	cr_assert_eq(ii.records, 0);
	st_db_close(db2);
	tu_rmrf(dir2);
	free(dir2);
}

/* ---- real etcd files ----------------------------------------------------- */

#define FIXTURE(name) EC_TEST_FIXTURES "/" name

/* Every key/value of bucket @bucket of bbolt file @path, concatenated. */
static int cat_kv(void *arg, const uint8_t *k, size_t kl, const uint8_t *v, size_t vl)
{
	struct raw *o = arg;
	o->p = realloc(o->p, o->len + kl + vl);
	memcpy(o->p + o->len, k, kl);
	memcpy(o->p + o->len + kl, v, vl);
	o->len += kl + vl;
	return 0;
}

static struct raw bucket_of(const char *path, const char *bucket)
{
	st_bolt *b;
	char err[512] = "";
	cr_assert_eq(st_bolt_open(path, &b, err, sizeof err), ST_OK, "%s", err);
	struct raw o = {0};
	cr_assert_eq(st_bolt_foreach(b, bucket, strlen(bucket), cat_kv, &o), ST_OK);
	st_bolt_close(b);
	return o;
}

Test(snapshot, etcd_file_imports_and_exports_byte_for_byte)
{
	ec_snapshot_info ii;
	char err[512] = "";
	cr_assert_eq(ec_snapshot_import(db, FIXTURE("etcd-snapshot.db"), false, &ii, err, sizeof err),
		     ST_OK, "%s", err);
	/* test/storage/fixtures/etcd-expected.txt: revision 309, 308 key records */
	cr_assert_eq(ii.rev, 309);
	cr_assert_eq(ii.records, 308);
	cr_assert_eq(ii.leases, 1);
	cr_assert_eq(ii.compact_rev, 0);
	cr_assert_gt(ii.applied, 0);
	char l[256], k[256];
	st_txn *t;
	cr_assert_eq(st_txn_begin(db, false, &t), ST_OK);
	l[0] = '\0';
	cr_assert_eq(st_txn_leases(t, lease_text, l), ST_OK);
	st_txn_abort(t);
	int64_t id = strtoll(l, NULL, 10);
	cr_assert_gt(id, 0);
	leases_of(db, id, l, k);
	cr_assert(strstr(l, ":600 ") != NULL, "%s", l);
	cr_assert_str_eq(k, "leased ");

	/* exported again, the key and lease buckets are etcd's bytes exactly */
	char path[4200];
	snprintf(path, sizeof path, "%s/again.snap", dir);
	cr_assert_eq(ec_snapshot_export(db, path, true, NULL, err, sizeof err), ST_OK, "%s", err);
	const char *buckets[] = {"key", "lease", "authUsers", "authRoles"};
	for (size_t i = 0; i < 4; i++) {
		struct raw a = bucket_of(FIXTURE("etcd-snapshot.db"), buckets[i]);
		struct raw b = bucket_of(path, buckets[i]);
		cr_assert_eq(a.len, b.len, "%s", buckets[i]);
		cr_assert(a.len == 0 || memcmp(a.p, b.p, a.len) == 0, "%s", buckets[i]);
		free(a.p);
		free(b.p);
	}
	/* the key bucket's records are also what the iterator yields */
	struct raw a = bucket_of(FIXTURE("etcd-snapshot.db"), "key"), r = raw_records(db);
	cr_assert_eq(a.len, r.len);
	cr_assert_eq(memcmp(a.p, r.p, a.len), 0);
	free(a.p);
	free(r.p);
}

Test(snapshot, restored_backend_without_trailer_needs_skip_hash_check)
{
	char err[512] = "";
	cr_assert_eq(ec_snapshot_import(db, FIXTURE("etcd-restored.db"), false, NULL, err, sizeof err),
		     ST_ECORRUPT);
	cr_assert_str_eq(err, "snapshot missing hash but --skip-hash-check=false");
	ec_snapshot_info ii;
	cr_assert_eq(ec_snapshot_import(db, FIXTURE("etcd-restored.db"), true, &ii, err, sizeof err),
		     ST_OK, "%s", err);
	cr_assert_eq(ii.rev, 309);
}

Test(snapshot, status_as_etcdctl)
{
	ec_snapshot_status st;
	char err[512] = "";
	cr_assert_eq(ec_snapshot_file_status(FIXTURE("etcd-snapshot.db"), &st, err, sizeof err), ST_OK,
		     "%s", err);
	cr_assert_eq(st.hash, 2703681534u);
	cr_assert_eq(st.revision, 309);
	cr_assert_eq(st.total_keys, 313);
	cr_assert_eq(st.total_size, 114688);
}

/* ---- bad files ----------------------------------------------------------- */

static void copy_file(const char *from, const char *to, long cut, long flip)
{
	FILE *f = fopen(from, "rb");
	cr_assert_not_null(f);
	static uint8_t buf[1 << 20];
	size_t n = fread(buf, 1, sizeof buf, f);
	fclose(f);
	if (cut >= 0 && (size_t)cut < n)
		n = (size_t)cut;
	if (flip >= 0)
		buf[flip] ^= 0x55;
	f = fopen(to, "wb");
	cr_assert_eq(fwrite(buf, 1, n, f), n);
	fclose(f);
}

/* The import of @path fails with @want and leaves the store as fresh as before. */
static void refused(const char *path, bool skip, int want, const char *msg)
{
	char err[512] = "";
	cr_assert_eq(ec_snapshot_import(db, path, skip, NULL, err, sizeof err), want, "%s", err);
	cr_assert(strstr(err, msg) != NULL, "\"%s\" lacks \"%s\"", err, msg);
	st_kv_state s;
	st_kv_state_get(db, &s);
	cr_assert_eq(s.rev, 1);
}

Test(snapshot, bad_files)
{
	char p[4200];
	snprintf(p, sizeof p, "%s/bad", dir);
	/* one flipped byte: etcdctl's words */
	copy_file(FIXTURE("etcd-snapshot.db"), p, -1, 5000);
	refused(p, false, ST_ECORRUPT, "expected sha256 [");
	/* truncated at a sector + 32: the "trailer" does not match */
	copy_file(FIXTURE("etcd-snapshot.db"), p, 8192 + 32, -1);
	refused(p, false, ST_ECORRUPT, "expected sha256");
	/* truncated mid-page, no trailer */
	copy_file(FIXTURE("etcd-snapshot.db"), p, 50000, -1);
	refused(p, false, ST_ECORRUPT, "snapshot missing hash");
	refused(p, true, ST_ECORRUPT, "is not a bbolt database");
	/* not bbolt at all */
	FILE *f = fopen(p, "wb");
	for (int i = 0; i < 512 + 32; i++)
		fputc('x', f);
	fclose(f);
	refused(p, true, ST_ECORRUPT, "is not a bbolt database");
	/* a bbolt file without etcd's buckets */
	st_bolt_writer *w;
	cr_assert_eq(st_bolt_writer_open(p, 4096, &w), ST_OK);
	cr_assert_eq(st_bolt_writer_bucket(w, "meta", 4), ST_OK);
	cr_assert_eq(st_bolt_writer_finish(w, 2), ST_OK);
	refused(p, true, ST_ECORRUPT, "has no \"key\" bucket");
	cr_assert_eq(st_bolt_writer_open(p, 4096, &w), ST_OK);
	cr_assert_eq(st_bolt_writer_bucket(w, "key", 3), ST_OK);
	cr_assert_eq(st_bolt_writer_put(w, "short", 5, "x", 1), ST_OK);
	cr_assert_eq(st_bolt_writer_bucket(w, "meta", 4), ST_OK);
	cr_assert_eq(st_bolt_writer_finish(w, 2), ST_OK);
	refused(p, true, ST_ECORRUPT, "is not a revision");
	/* missing file */
	snprintf(p, sizeof p, "%s/none", dir);
	refused(p, false, ST_EIO, "No such file");
}
