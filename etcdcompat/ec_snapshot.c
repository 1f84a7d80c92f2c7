/*
 * ec_snapshot: etcd's backend layout over metastore's store, both ways
 * (ec_snapshot.h has the API, docs/disk-format.md the layout). Three parts:
 * the "key" bucket records (each revision record of the MVCC keyspace as
 * etcd's mvcc package writes it: kvstore_txn.go's revToBytes,
 * appendMarkTombstone and a marshalled mvccpb.KeyValue); the export, which
 * streams one read txn's view of the store through storage/st_bolt's writer
 * bucket by bucket; the import, which reads a bbolt file through st_bolt's
 * reader into storage's bulk loader (st_load_*) and the replicated records.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "auth.pb-c.h"
#include "etcdcompat/ec_hash.h"
#include "etcdcompat/ec_snapshot.h"
#include "internal.pb-c.h"
#include "kv.pb-c.h"
#include "lease.pb-c.h"
#include "rpc.pb-c.h"
#include "storage/st_bolt.h"

/* Replicated records (st_rmeta) of the modules that own them: ec_cluster.c,
 * ec_auth.c, ec_alarm.c. */
#define RMETA_MEMBERS "members"
#define RMETA_AUTH "auth"
#define RMETA_ALARMS "alarms"

/* The cluster version a metastore export declares (etcd 3.4's). */
#define EXPORT_CLUSTER_VERSION "3.4.0"

/* ---- the "key" bucket --------------------------------------------------- */

static void put_uvarint(st_buf *b, uint64_t v)
{
	while (v >= 0x80) {
		b->p[b->len++] = (uint8_t)(v | 0x80);
		v >>= 7;
	}
	b->p[b->len++] = (uint8_t)v;
}

/* A varint field (proto3: omitted when zero; negative int64 as 10 bytes). */
static void put_vfield(st_buf *b, unsigned field, int64_t v)
{
	if (v == 0)
		return;
	b->p[b->len++] = (uint8_t)(field << 3);
	put_uvarint(b, (uint64_t)v);
}

/* A bytes field (proto3: omitted when empty). */
static void put_bfield(st_buf *b, unsigned field, const uint8_t *p, size_t n)
{
	if (n == 0)
		return;
	b->p[b->len++] = (uint8_t)(field << 3 | 2);
	put_uvarint(b, n);
	memcpy(b->p + b->len, p, n);
	b->len += n;
}

/* mvccpb.KeyValue of @kv as gogoproto marshals it (fields in number order);
 * a tombstone carries only its key, as etcd's delete writes it. */
static int encode_kv(st_buf *b, const st_kv *kv)
{
	b->len = 0;
	if (st_buf_reserve(b, kv->key_len + kv->val_len + 2 * 10 + 4 * 11) != 0)
		return ST_ENOMEM;
	put_bfield(b, 1, kv->key, kv->key_len);
	if (kv->tombstone)
		return 0;
	put_vfield(b, 2, kv->create_rev);
	put_vfield(b, 3, kv->mod_rev);
	put_vfield(b, 4, kv->version);
	put_bfield(b, 5, kv->val, kv->val_len);
	put_vfield(b, 6, kv->lease);
	return 0;
}

static void put_be64(uint8_t *p, uint64_t v)
{
	for (int i = 7; i >= 0; i--) {
		p[i] = (uint8_t)v;
		v >>= 8;
	}
}

/* etcd's revToBytes (+ appendMarkTombstone): main, '_', sub (+ 't'). */
static size_t encode_revkey(uint8_t out[EC_SNAP_REVKEY_TOMB_LEN], int64_t main, int64_t sub,
			    bool tomb)
{
	put_be64(out, (uint64_t)main);
	out[8] = '_';
	put_be64(out + 9, (uint64_t)sub);
	if (!tomb)
		return EC_SNAP_REVKEY_LEN;
	out[17] = 't';
	return EC_SNAP_REVKEY_TOMB_LEN;
}

struct rec_walk {
	ec_snapshot_record_fn fn;
	void *arg;
	st_buf val;
};

static int rec_visit(void *arg, const st_kv *kv)
{
	struct rec_walk *w = arg;
	uint8_t key[EC_SNAP_REVKEY_TOMB_LEN];
	size_t klen = encode_revkey(key, kv->mod_rev, kv->sub, kv->tombstone);
	int rc = encode_kv(&w->val, kv);
	if (rc != 0)
		return rc;
	ec_snap_record r = {key, klen, w->val.p, w->val.len, kv};
	return w->fn(w->arg, &r);
}

int ec_snapshot_key_records(st_txn *t, int64_t to_rev, ec_snapshot_record_fn fn, void *arg)
{
	if (to_rev < 1)
		return 0;
	struct rec_walk w = {fn, arg, {0}};
	int rc = st_txn_records(t, to_rev, rec_visit, &w);
	free(w.val.p);
	return rc;
}

/* ---- export ------------------------------------------------------------- */

struct exp {
	st_bolt_writer *w;
	ec_snapshot_info info;
	st_buf tmp;
};

static int exp_record(void *arg, const ec_snap_record *r)
{
	struct exp *e = arg;
	e->info.records++;
	return st_bolt_writer_put(e->w, r->key, r->key_len, r->val, r->val_len);
}

static int exp_lease(void *arg, int64_t id, int64_t ttl)
{
	struct exp *e = arg;
	Leasepb__Lease l = LEASEPB__LEASE__INIT;
	l.id = id;
	l.ttl = ttl;
	uint8_t key[8], val[32];
	put_be64(key, (uint64_t)id);
	size_t n = leasepb__lease__pack(&l, val);
	e->info.leases++;
	return st_bolt_writer_put(e->w, key, 8, val, n);
}

/* Append @s as a JSON string the way Go's encoding/json writes it (HTML-safe:
 * <, > and & escaped; invalid UTF-8 is passed through). */
static int json_str(st_buf *b, const char *s)
{
	size_t n = strlen(s);
	if (st_buf_reserve(b, n * 6 + 2) != 0)
		return ST_ENOMEM;
	b->p[b->len++] = '"';
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;
		if (c == '"' || c == '\\') {
			b->p[b->len++] = '\\';
			b->p[b->len++] = c;
		} else if (c == '\n' || c == '\r' || c == '\t') {
			b->p[b->len++] = '\\';
			b->p[b->len++] = c == '\n' ? 'n' : c == '\r' ? 'r' : 't';
		} else if (c < 0x20 || c == '<' || c == '>' || c == '&') {
			b->len += (size_t)sprintf((char *)b->p + b->len, "\\u%04x", c);
		} else {
			b->p[b->len++] = c;
		}
	}
	b->p[b->len++] = '"';
	return 0;
}

static int json_raw(st_buf *b, const char *s)
{
	return st_buf_add(b, s, strlen(s));
}

static int json_strv(st_buf *b, char *const *v, size_t n)
{
	int rc = json_raw(b, "[");
	for (size_t i = 0; i < n && rc == 0; i++)
		if ((rc = i ? json_raw(b, ",") : 0) == 0)
			rc = json_str(b, v[i]);
	return rc ? rc : json_raw(b, "]");
}

/* etcd's membership JSON of @m (json.Marshal of membership.Member: id,
 * peerURLs, isLearner omitted when false, name and clientURLs when set). */
static int member_json(st_buf *b, const Etcdserverpb__Member *m)
{
	char num[64];
	b->len = 0;
	snprintf(num, sizeof num, "{\"id\":%" PRIu64 ",\"peerURLs\":", m->id);
	int rc = json_raw(b, num);
	if (rc == 0)
		rc = m->n_peerurls ? json_strv(b, m->peerurls, m->n_peerurls) : json_raw(b, "null");
	if (rc == 0 && m->islearner)
		rc = json_raw(b, ",\"isLearner\":true");
	if (rc == 0 && m->name != NULL && m->name[0]) {
		if ((rc = json_raw(b, ",\"name\":")) == 0)
			rc = json_str(b, m->name);
	}
	if (rc == 0 && m->n_clienturls) {
		if ((rc = json_raw(b, ",\"clientURLs\":")) == 0)
			rc = json_strv(b, m->clienturls, m->n_clienturls);
	}
	return rc ? rc : json_raw(b, "}");
}

/* A key and value to sort before writing a bucket (member ids as hex strings
 * and packed alarm members do not sort like the store holds them). */
struct kvpair {
	char key[40];
	size_t klen;
	uint8_t *val;
	size_t vlen;
};

static int kvpair_cmp(const void *a, const void *b)
{
	const struct kvpair *x = a, *y = b;
	size_t n = x->klen < y->klen ? x->klen : y->klen;
	int c = memcmp(x->key, y->key, n);
	return c ? c : (x->klen > y->klen) - (x->klen < y->klen);
}

static int put_sorted(st_bolt_writer *w, struct kvpair *p, size_t n)
{
	qsort(p, n, sizeof(*p), kvpair_cmp);
	int rc = 0;
	for (size_t i = 0; i < n && rc == 0; i++)
		if (i == 0 || kvpair_cmp(&p[i - 1], &p[i]) != 0)
			rc = st_bolt_writer_put(w, p[i].key, p[i].klen, p[i].val, p[i].vlen);
	return rc;
}

static void kvpairs_free(struct kvpair *p, size_t n)
{
	for (size_t i = 0; p != NULL && i < n; i++)
		free(p[i].val);
	free(p);
}

/* A replicated record as of @t, unpacked with @desc; NULL when absent. */
static int rmeta_unpack(st_txn *t, const char *name, const ProtobufCMessageDescriptor *desc,
			ProtobufCMessage **out)
{
	void *v = NULL;
	size_t len = 0;
	*out = NULL;
	int rc = st_txn_rmeta_get(t, name, &v, &len);
	if (rc == ST_ENOTFOUND)
		return 0;
	if (rc != 0)
		return rc;
	*out = protobuf_c_message_unpack(desc, NULL, len, v);
	free(v);
	return *out != NULL ? 0 : ST_ECORRUPT;
}

static int exp_members(struct exp *e, st_txn *t)
{
	ProtobufCMessage *m = NULL;
	int rc = rmeta_unpack(t, RMETA_MEMBERS, &metastore__member_set__descriptor, &m);
	Metastore__MemberSet *set = (Metastore__MemberSet *)m;
	size_t n = set ? set->n_members : 0, nr = set ? set->n_removed : 0;
	struct kvpair *p = calloc(n + nr + 1, sizeof(*p));
	if (rc == 0 && p == NULL)
		rc = ST_ENOMEM;
	st_buf js = {0};
	for (size_t i = 0; rc == 0 && i < n; i++) {
		p[i].klen = (size_t)snprintf(p[i].key, sizeof p[i].key, "%" PRIx64, set->members[i]->id);
		if ((rc = member_json(&js, set->members[i])) == 0) {
			if ((p[i].val = malloc(js.len)) == NULL)
				rc = ST_ENOMEM;
			else
				memcpy(p[i].val, js.p, p[i].vlen = js.len);
		}
	}
	if (rc == 0 && (rc = st_bolt_writer_bucket(e->w, "members", 7)) == 0)
		rc = put_sorted(e->w, p, n);
	for (size_t i = 0; rc == 0 && i < nr; i++) {
		struct kvpair *q = &p[n + i];
		q->klen = (size_t)snprintf(q->key, sizeof q->key, "%" PRIx64, set->removed[i]);
		if ((q->val = malloc(7)) == NULL)
			rc = ST_ENOMEM;
		else
			memcpy(q->val, "removed", q->vlen = 7);
	}
	if (rc == 0 && (rc = st_bolt_writer_bucket(e->w, "members_removed", 15)) == 0)
		rc = put_sorted(e->w, p + n, nr);
	e->info.members = n;
	kvpairs_free(p, n + nr);
	free(js.p);
	if (m != NULL)
		protobuf_c_message_free_unpacked(m, NULL);
	return rc;
}

static int exp_alarms(struct exp *e, st_txn *t)
{
	ProtobufCMessage *m = NULL;
	int rc = rmeta_unpack(t, RMETA_ALARMS, &metastore__alarm_set__descriptor, &m);
	Metastore__AlarmSet *set = (Metastore__AlarmSet *)m;
	size_t n = set ? set->n_alarms : 0;
	struct kvpair *p = calloc(n + 1, sizeof(*p));
	if (rc == 0 && p == NULL)
		rc = ST_ENOMEM;
	for (size_t i = 0; rc == 0 && i < n; i++)
		p[i].klen = etcdserverpb__alarm_member__pack(set->alarms[i], (uint8_t *)p[i].key);
	if (rc == 0 && (rc = st_bolt_writer_bucket(e->w, "alarm", 5)) == 0)
		rc = put_sorted(e->w, p, n);
	e->info.alarms = n;
	kvpairs_free(p, n);
	if (m != NULL)
		protobuf_c_message_free_unpacked(m, NULL);
	return rc;
}

/* Put packed @msg under @name (@nl bytes) into the current bucket. */
static int put_msg(struct exp *e, const void *name, size_t nl, const ProtobufCMessage *msg)
{
	size_t n = protobuf_c_message_get_packed_size(msg);
	e->tmp.len = 0;
	if (st_buf_reserve(&e->tmp, n + 1) != 0)
		return ST_ENOMEM;
	protobuf_c_message_pack(msg, e->tmp.p);
	return st_bolt_writer_put(e->w, name, nl, e->tmp.p, n);
}

/* The three auth buckets ("auth" < "authRoles" < "authUsers"). A store that
 * never recorded auth is etcd's fresh one: disabled, revision 1. */
static int exp_auth(struct exp *e, st_txn *t)
{
	ProtobufCMessage *m = NULL;
	int rc = rmeta_unpack(t, RMETA_AUTH, &metastore__auth_state__descriptor, &m);
	Metastore__AuthState *as = (Metastore__AuthState *)m;
	uint8_t rev[8], en = as && as->enabled ? 1 : 0;
	put_be64(rev, as ? as->revision : 1);
	if (rc == 0 && (rc = st_bolt_writer_bucket(e->w, "auth", 4)) == 0 &&
	    (rc = st_bolt_writer_put(e->w, "authEnabled", 11, &en, 1)) == 0)
		rc = st_bolt_writer_put(e->w, "authRevision", 12, rev, 8);
	if (rc == 0)
		rc = st_bolt_writer_bucket(e->w, "authRoles", 9);
	for (size_t i = 0; rc == 0 && as && i < as->n_roles; i++)
		rc = put_msg(e, as->roles[i]->name.data, as->roles[i]->name.len,
			     &as->roles[i]->base);
	if (rc == 0)
		rc = st_bolt_writer_bucket(e->w, "authUsers", 9);
	for (size_t i = 0; rc == 0 && as && i < as->n_users; i++)
		rc = put_msg(e, as->users[i]->name.data, as->users[i]->name.len,
			     &as->users[i]->base);
	e->info.auth_enabled = en;
	e->info.users = as ? as->n_users : 0;
	e->info.roles = as ? as->n_roles : 0;
	if (m != NULL)
		protobuf_c_message_free_unpacked(m, NULL);
	return rc;
}

static int exp_meta(struct exp *e)
{
	uint8_t ci[8], crev[EC_SNAP_REVKEY_TOMB_LEN];
	put_be64(ci, e->info.applied);
	int rc = st_bolt_writer_bucket(e->w, "meta", 4);
	if (rc == 0)
		rc = st_bolt_writer_put(e->w, "consistent_index", 16, ci, 8);
	if (rc == 0 && e->info.compact_rev > 0) {
		/* "finishedCompactRev" < "scheduledCompactRev": the walk is done */
		size_t n = encode_revkey(crev, e->info.compact_rev, 0, false);
		if ((rc = st_bolt_writer_put(e->w, "finishedCompactRev", 18, crev, n)) == 0)
			rc = st_bolt_writer_put(e->w, "scheduledCompactRev", 19, crev, n);
	}
	return rc;
}

int ec_snapshot_export(st_db *db, const char *path, bool trailer, ec_snapshot_info *info,
		       char *err, size_t errlen)
{
	struct exp e = {0};
	st_txn *t = NULL;
	int rc = st_txn_begin(db, false, &t);
	if (rc != 0) {
		st_errf(err, errlen, "snapshot: %s", st_strerror(rc));
		return rc;
	}
	/* one snapshot: what every bucket shows is the state at one applied index */
	e.info.rev = st_txn_rev(t);
	e.info.compact_rev = st_txn_compact_rev(t);
	e.info.applied = st_txn_applied(t);
	if ((rc = st_bolt_writer_open(path, 4096, &e.w)) != 0) {
		st_errf(err, errlen, "snapshot: cannot create %s: %s", path, strerror(errno));
		st_txn_abort(t);
		return rc;
	}
	/* buckets in byte order: alarm auth authRoles authUsers cluster key
	 * lease members members_removed meta */
	if ((rc = exp_alarms(&e, t)) == 0 && (rc = exp_auth(&e, t)) == 0 &&
	    (rc = st_bolt_writer_bucket(e.w, "cluster", 7)) == 0 &&
	    (rc = st_bolt_writer_put(e.w, "clusterVersion", 14, EXPORT_CLUSTER_VERSION,
				     strlen(EXPORT_CLUSTER_VERSION))) == 0 &&
	    (rc = st_bolt_writer_bucket(e.w, "key", 3)) == 0 &&
	    (rc = ec_snapshot_key_records(t, e.info.rev, exp_record, &e)) == 0 &&
	    (rc = st_bolt_writer_bucket(e.w, "lease", 5)) == 0 &&
	    (rc = st_txn_leases(t, exp_lease, &e)) == 0 && (rc = exp_members(&e, t)) == 0 &&
	    (rc = exp_meta(&e)) == 0) {
		rc = st_bolt_writer_finish(e.w, 2 + e.info.applied);
		e.w = NULL;
		if (rc == 0 && trailer && (rc = st_bolt_sha256_append(path)) != 0)
			unlink(path);
	}
	if (e.w != NULL)
		st_bolt_writer_abort(e.w);
	st_txn_abort(t);
	free(e.tmp.p);
	if (rc != 0) {
		st_errf(err, errlen, "snapshot: writing %s: %s", path, st_strerror(rc));
		return rc;
	}
	struct stat sb;
	e.info.bytes = stat(path, &sb) == 0 ? (uint64_t)sb.st_size : 0;
	if (info != NULL)
		*info = e.info;
	return 0;
}

/* ---- import ------------------------------------------------------------- */

static uint64_t get_be64(const uint8_t *p)
{
	uint64_t v = 0;
	for (int i = 0; i < 8; i++)
		v = v << 8 | p[i];
	return v;
}

/* Go's fmt %v of a byte slice: "[1 2 3]". */
static void go_bytes(char *out, size_t cap, const uint8_t *b, size_t n)
{
	size_t o = 0;
	o += (size_t)snprintf(out + o, cap - o, "[");
	for (size_t i = 0; i < n && o < cap; i++)
		o += (size_t)snprintf(out + o, cap - o, i ? " %u" : "%u", b[i]);
	if (o < cap)
		snprintf(out + o, cap - o, "]");
}

/* etcdctl's saveDB check of the sha256 trailer (see ec_snapshot_import). */
static int check_hash(const char *path, bool skip, char *err, size_t errlen)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		st_errf(err, errlen, "open %s: %s", path, strerror(errno));
		return ST_EIO;
	}
	struct stat sb;
	if (fstat(fd, &sb) != 0) {
		st_errf(err, errlen, "stat %s: %s", path, strerror(errno));
		close(fd);
		return ST_EIO;
	}
	bool has = sb.st_size % 512 == ST_BOLT_SHA256_TRAILER;
	if (skip || !has) {
		close(fd);
		if (!has && !skip) {
			st_errf(err, errlen, "snapshot missing hash but --skip-hash-check=false");
			return ST_ECORRUPT;
		}
		return 0;
	}
	off_t data = sb.st_size - ST_BOLT_SHA256_TRAILER, done = 0;
	EVP_MD_CTX *c = EVP_MD_CTX_new();
	size_t cap = 1u << 20;
	uint8_t *buf = malloc(cap), want[32], got[32];
	int rc = buf != NULL && c != NULL && EVP_DigestInit_ex(c, EVP_sha256(), NULL) == 1 ? 0
											: ST_ENOMEM;
	while (rc == 0 && done < data) {
		size_t n = (size_t)(data - done) < cap ? (size_t)(data - done) : cap;
		ssize_t r = pread(fd, buf, n, done);
		if (r <= 0) {
			st_errf(err, errlen, "read %s: %s", path, r < 0 ? strerror(errno) : "short file");
			rc = ST_EIO;
			break;
		}
		EVP_DigestUpdate(c, buf, (size_t)r);
		done += r;
	}
	if (rc == 0 && pread(fd, want, 32, data) != 32) {
		st_errf(err, errlen, "read %s: %s", path, strerror(errno));
		rc = ST_EIO;
	}
	unsigned gl = 0;
	if (rc == 0 && EVP_DigestFinal_ex(c, got, &gl) != 1)
		rc = ST_ENOMEM;
	EVP_MD_CTX_free(c);
	free(buf);
	close(fd);
	if (rc != 0)
		return rc;
	if (memcmp(want, got, 32) != 0) {
		char a[160], b[160];
		go_bytes(a, sizeof a, want, 32);
		go_bytes(b, sizeof b, got, 32);
		st_errf(err, errlen, "expected sha256 %s, got %s", a, b);
		return ST_ECORRUPT;
	}
	return 0;
}

/* Open @path as an etcd backend file, with the messages etcdctl would give. */
static int open_backend(const char *path, st_bolt **out, char *err, size_t errlen)
{
	char why[512] = "";
	int rc = st_bolt_open(path, out, why, sizeof why);
	if (rc != 0) {
		st_errf(err, errlen, "%s is not a bbolt database (an etcd snapshot): %s", path,
			why[0] ? why : st_strerror(rc));
		return rc;
	}
	return 0;
}

struct imp {
	st_load *ld;
	ec_snapshot_info info;
	char *err;
	size_t errlen;
	int64_t last_main;
	/* auth */
	Authpb__User **users;
	size_t nusers;
	Authpb__Role **roles;
	size_t nroles;
	Etcdserverpb__AlarmMember **alarms;
	size_t nalarms;
};

static int imp_key(void *arg, const uint8_t *k, size_t klen, const uint8_t *v, size_t vlen)
{
	struct imp *im = arg;
	bool tomb = klen == EC_SNAP_REVKEY_TOMB_LEN && k[17] == 't';
	if ((klen != EC_SNAP_REVKEY_LEN && !tomb) || k[8] != '_') {
		st_errf(im->err, im->errlen, "key bucket: a key of %zu bytes is not a revision", klen);
		return ST_ECORRUPT;
	}
	int64_t main = (int64_t)get_be64(k), sub = (int64_t)get_be64(k + 9);
	Mvccpb__KeyValue *m = mvccpb__key_value__unpack(NULL, vlen, v);
	if (m == NULL || m->key.len == 0 || (!tomb && m->mod_revision != main)) {
		st_errf(im->err, im->errlen, "key bucket: record %" PRId64 "_%" PRId64 " %s", main, sub,
			m == NULL ? "is not a mvccpb.KeyValue" : "does not match its revision");
		if (m != NULL)
			mvccpb__key_value__free_unpacked(m, NULL);
		return ST_ECORRUPT;
	}
	st_kv kv = {
		.key = m->key.data, .key_len = m->key.len,
		.val = m->value.data, .val_len = m->value.len,
		.create_rev = m->create_revision, .mod_rev = main, .version = m->version,
		.lease = m->lease, .sub = sub, .tombstone = tomb,
	};
	int rc = st_load_change(im->ld, &kv);
	mvccpb__key_value__free_unpacked(m, NULL);
	if (rc == ST_EINVAL) {
		st_errf(im->err, im->errlen, "key bucket: record %" PRId64 "_%" PRId64
			" is invalid (revisions or version out of order)", main, sub);
		return ST_ECORRUPT;
	}
	if (rc != 0) {
		st_errf(im->err, im->errlen, "loading revision %" PRId64 ": %s", main, st_strerror(rc));
		return rc;
	}
	im->info.records++;
	im->last_main = main;
	return 0;
}

static int imp_lease(void *arg, const uint8_t *k, size_t klen, const uint8_t *v, size_t vlen)
{
	struct imp *im = arg;
	Leasepb__Lease *l = leasepb__lease__unpack(NULL, vlen, v);
	int rc = 0;
	if (l == NULL || klen != 8 || (int64_t)get_be64(k) != l->id || l->id <= 0) {
		st_errf(im->err, im->errlen, "lease bucket: a record is not a leasepb.Lease of its id");
		rc = ST_ECORRUPT;
	} else if ((rc = st_load_lease(im->ld, l->id, l->ttl)) != 0) {
		st_errf(im->err, im->errlen, "loading lease %" PRIx64 ": %s", (uint64_t)l->id,
			st_strerror(rc));
	} else {
		im->info.leases++;
	}
	if (l != NULL)
		leasepb__lease__free_unpacked(l, NULL);
	return rc;
}

/* Unpack one value of a bucket into a growing array of messages. */
static int imp_msg(struct imp *im, const ProtobufCMessageDescriptor *d, const char *bucket,
		   const uint8_t *v, size_t vlen, void ***arr, size_t *n)
{
	ProtobufCMessage *m = protobuf_c_message_unpack(d, NULL, vlen, v);
	void **p = m ? realloc(*arr, (*n + 1) * sizeof(*p)) : NULL;
	if (p == NULL) {
		if (m != NULL)
			protobuf_c_message_free_unpacked(m, NULL);
		st_errf(im->err, im->errlen, "%s bucket: %s", bucket,
			m ? "out of memory" : "a record does not decode");
		return m ? ST_ENOMEM : ST_ECORRUPT;
	}
	p[(*n)++] = m;
	*arr = p;
	return 0;
}

static int imp_user(void *arg, const uint8_t *k, size_t klen, const uint8_t *v, size_t vlen)
{
	(void)k;
	(void)klen;
	struct imp *im = arg;
	return imp_msg(im, &authpb__user__descriptor, "authUsers", v, vlen, (void ***)&im->users,
		       &im->nusers);
}

static int imp_role(void *arg, const uint8_t *k, size_t klen, const uint8_t *v, size_t vlen)
{
	(void)k;
	(void)klen;
	struct imp *im = arg;
	return imp_msg(im, &authpb__role__descriptor, "authRoles", v, vlen, (void ***)&im->roles,
		       &im->nroles);
}

static int imp_alarm(void *arg, const uint8_t *k, size_t klen, const uint8_t *v, size_t vlen)
{
	(void)v;
	(void)vlen;
	struct imp *im = arg;
	return imp_msg(im, &etcdserverpb__alarm_member__descriptor, "alarm", k, klen,
		       (void ***)&im->alarms, &im->nalarms);
}

static int alarm_cmp(const void *a, const void *b)
{
	const Etcdserverpb__AlarmMember *x = *(const Etcdserverpb__AlarmMember *const *)a;
	const Etcdserverpb__AlarmMember *y = *(const Etcdserverpb__AlarmMember *const *)b;
	if (x->alarm != y->alarm)
		return x->alarm < y->alarm ? -1 : 1;
	return (x->memberid > y->memberid) - (x->memberid < y->memberid);
}

/* The value of @key in bucket @bucket (NULL when absent). */
static const uint8_t *bget(st_bolt *b, const char *bucket, const char *key, size_t *len)
{
	const uint8_t *v = NULL;
	*len = 0;
	if (st_bolt_get(b, bucket, strlen(bucket), key, strlen(key), &v, len) != 0)
		return NULL;
	return v;
}

static int put_rmeta_msg(st_db *db, const char *name, const ProtobufCMessage *m)
{
	size_t n = protobuf_c_message_get_packed_size(m);
	uint8_t *buf = malloc(n ? n : 1);
	if (buf == NULL)
		return ST_ENOMEM;
	protobuf_c_message_pack(m, buf);
	int rc = st_rmeta_put(db, name, buf, n);
	free(buf);
	return rc;
}

/* Auth and alarms: replicated records, written only when the file has them. */
static int imp_replicated(st_db *db, st_bolt *b, struct imp *im)
{
	size_t len;
	const uint8_t *en = bget(b, "auth", "authEnabled", &len);
	bool enabled = en != NULL && len == 1 && en[0] == 1;
	const uint8_t *rv = bget(b, "auth", "authRevision", &len);
	uint64_t arev = rv != NULL && len == 8 ? get_be64(rv) : 0;
	int rc = st_bolt_foreach(b, "authUsers", 9, imp_user, im);
	if (rc == ST_ENOTFOUND)
		rc = 0;
	if (rc == 0 && (rc = st_bolt_foreach(b, "authRoles", 9, imp_role, im)) == ST_ENOTFOUND)
		rc = 0;
	if (rc == 0 && (enabled || arev > 1 || im->nusers || im->nroles)) {
		Metastore__AuthState as = METASTORE__AUTH_STATE__INIT;
		as.format = 1;
		as.enabled = enabled;
		as.revision = arev ? arev : 1;
		as.users = im->users;
		as.n_users = im->nusers;
		as.roles = im->roles;
		as.n_roles = im->nroles;
		if ((rc = put_rmeta_msg(db, RMETA_AUTH, &as.base)) != 0)
			st_errf(im->err, im->errlen, "writing the auth store: %s", st_strerror(rc));
	}
	im->info.auth_enabled = enabled;
	im->info.users = im->nusers;
	im->info.roles = im->nroles;
	if (rc == 0 && (rc = st_bolt_foreach(b, "alarm", 5, imp_alarm, im)) == ST_ENOTFOUND)
		rc = 0;
	if (rc == 0 && im->nalarms > 0) {
		qsort(im->alarms, im->nalarms, sizeof(*im->alarms), alarm_cmp);
		Metastore__AlarmSet set = METASTORE__ALARM_SET__INIT;
		set.format = 1;
		set.alarms = im->alarms;
		set.n_alarms = im->nalarms;
		if ((rc = put_rmeta_msg(db, RMETA_ALARMS, &set.base)) != 0)
			st_errf(im->err, im->errlen, "writing the alarms: %s", st_strerror(rc));
	}
	im->info.alarms = im->nalarms;
	return rc;
}

static int64_t meta_rev(st_bolt *b, const char *key)
{
	size_t len;
	const uint8_t *v = bget(b, "meta", key, &len);
	return v != NULL && len >= 8 ? (int64_t)get_be64(v) : 0;
}

int ec_snapshot_import(st_db *db, const char *path, bool skip_hash_check, ec_snapshot_info *info,
		       char *err, size_t errlen)
{
	int rc = check_hash(path, skip_hash_check, err, errlen);
	if (rc != 0)
		return rc;
	st_bolt *b = NULL;
	if ((rc = open_backend(path, &b, err, errlen)) != 0)
		return rc;
	struct imp im = {.err = err, .errlen = errlen};
	uint64_t n;
	const char *missing = st_bolt_count(b, "key", 3, &n) != 0    ? "key"
			      : st_bolt_count(b, "meta", 4, &n) != 0 ? "meta"
								     : NULL;
	if (missing != NULL) {
		st_errf(err, errlen, "%s has no \"%s\" bucket: not an etcd v3 backend", path, missing);
		st_bolt_close(b);
		return ST_ECORRUPT;
	}
	size_t len;
	const uint8_t *ci = bget(b, "meta", "consistent_index", &len);
	im.info.applied = ci != NULL && len == 8 ? get_be64(ci) : 0;
	/* etcd's restore: compacted = finished; a scheduled one above it resumes */
	int64_t finished = meta_rev(b, "finishedCompactRev");
	int64_t scheduled = meta_rev(b, "scheduledCompactRev");
	int64_t crev = scheduled > finished ? scheduled : finished;
	if (finished < 0 || crev < 0) {
		st_errf(err, errlen, "meta bucket: negative compaction revision");
		st_bolt_close(b);
		return ST_ECORRUPT;
	}
	if ((rc = st_load_begin(db, &im.ld)) != 0) {
		st_errf(err, errlen, "the target store is not empty");
		st_bolt_close(b);
		return rc;
	}
	rc = st_bolt_foreach(b, "key", 3, imp_key, &im);
	if (rc == 0 && (rc = st_bolt_foreach(b, "lease", 5, imp_lease, &im)) == ST_ENOTFOUND)
		rc = 0;
	if (rc == ST_ECORRUPT && err != NULL && err[0] == '\0')
		st_errf(err, errlen, "%s: %s", path, st_bolt_errmsg(b));
	/* the current revision as etcd's restore computes it */
	int64_t rev = im.last_main > crev ? im.last_main : crev;
	if (rev < 1)
		rev = 1;
	if (rc == 0) {
		rc = st_load_finish(im.ld, rev, crev, finished);
		if (rc != 0)
			st_errf(err, errlen, "loading the keyspace: %s", st_strerror(rc));
	} else {
		st_load_abort(im.ld);
	}
	if (rc == 0)
		rc = imp_replicated(db, b, &im);
	if (rc == ST_ECORRUPT && err != NULL && err[0] == '\0')
		st_errf(err, errlen, "%s: %s", path, st_bolt_errmsg(b));
	im.info.rev = rev;
	im.info.compact_rev = crev;
	for (size_t i = 0; i < im.nusers; i++)
		protobuf_c_message_free_unpacked(&im.users[i]->base, NULL);
	for (size_t i = 0; i < im.nroles; i++)
		protobuf_c_message_free_unpacked(&im.roles[i]->base, NULL);
	for (size_t i = 0; i < im.nalarms; i++)
		protobuf_c_message_free_unpacked(&im.alarms[i]->base, NULL);
	free(im.users);
	free(im.roles);
	free(im.alarms);
	st_bolt_close(b);
	if (rc == 0 && info != NULL)
		*info = im.info;
	return rc;
}

/* ---- status ------------------------------------------------------------- */

struct stat_walk {
	st_bolt *b;
	ec_snapshot_status *st;
	bool iskey;
	int err;
};

static int stat_kv(void *arg, const uint8_t *k, size_t klen, const uint8_t *v, size_t vlen)
{
	struct stat_walk *w = arg;
	w->st->hash = ec_crc32c(w->st->hash, k, klen);
	w->st->hash = ec_crc32c(w->st->hash, v, vlen);
	if (w->iskey && klen >= 8)
		w->st->revision = (int64_t)get_be64(k);
	w->st->total_keys++;
	return 0;
}

static int stat_bucket(void *arg, const uint8_t *name, size_t nl, const uint8_t *v, size_t vl)
{
	(void)v;
	(void)vl;
	struct stat_walk *w = arg;
	w->st->hash = ec_crc32c(w->st->hash, name, nl);
	w->iskey = nl == 3 && memcmp(name, "key", 3) == 0;
	return st_bolt_foreach(w->b, name, nl, stat_kv, w);
}

int ec_snapshot_file_status(const char *path, ec_snapshot_status *st, char *err, size_t errlen)
{
	memset(st, 0, sizeof(*st));
	st_bolt *b = NULL;
	int rc = open_backend(path, &b, err, errlen);
	if (rc != 0)
		return rc;
	struct stat_walk w = {.b = b, .st = st};
	rc = st_bolt_buckets(b, stat_bucket, &w);
	if (rc != 0)
		st_errf(err, errlen, "snapshot file integrity check failed: %s", st_bolt_errmsg(b));
	st->total_size = st_bolt_size(b);
	st_bolt_close(b);
	return rc;
}
