/*
 * Unit tests for ec_json: etcd's messages (proto/) to and from the JSON of
 * etcd 3.4's HTTP gateway (grpc-gateway v1's jsonpb, OrigName on).
 *
 * Expected encodings marked "etcd" are literals captured from Debian's real
 * etcd 3.4.23 with curl on /v3/kv/{put,range,deleterange,txn},
 * /v3/lease/{grant,timetolive,leases}, /v3/auth/{user,role}/get,
 * /v3/auth/user/list, /v3/maintenance/{status,hash}, /v3/cluster/member/list
 * and /v3/watch (the "result" wrapper of streams stripped); the C messages below rebuild the same
 * responses. Those marked "jsonpb" come from golang/protobuf's jsonpb run on
 * etcd's Go structs. Decode inputs marked "e2e" are the bodies etcd's
 * tests/e2e/v3_curl_test.go and v3_curl_lease_test.go send (Go's json.Marshal
 * of etcd's structs, and runtime.JSONPb{}'s camelCase for the txn), printed
 * by running that Go code.
 */
#include <criterion/criterion.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth.pb-c.h"
#include "etcdcompat/ec_errors.h"
#include "etcdcompat/ec_json.h"
#include "kv.pb-c.h"
#include "rpc.pb-c.h"

#define CID 5253559638163113374ULL
#define MID 13328448381644391632ULL

/* ---- expected encodings captured from etcd 3.4.23 ---- */
static const char PUT_RESP[] = "{\"header\":{\"cluster_id\":\"5253559638163113374\","
                               "\"member_id\":\"13328448381644391632\",\"revision\":\"2\","
                               "\"raft_term\":\"2\"}}";
static const char PUT_PREV[] =
        "{\"header\":{\"cluster_id\":\"5253559638163113374\","
        "\"member_id\":\"13328448381644391632\",\"revision\":\"3\","
        "\"raft_term\":\"2\"},\"prev_kv\":{\"key\":\"Zm9v\",\"create_revision\":\"2\","
        "\"mod_revision\":\"2\",\"version\":\"1\",\"value\":\"YmFy\"}}";
static const char RANGE_ONE[] =
        "{\"header\":{\"cluster_id\":\"5253559638163113374\","
        "\"member_id\":\"13328448381644391632\",\"revision\":\"5\","
        "\"raft_term\":\"2\"},\"kvs\":[{\"key\":\"Zm9v\",\"create_revision\":\"2\","
        "\"mod_revision\":\"3\",\"version\":\"2\",\"value\":\"YmFy\"}],"
        "\"count\":\"1\"}";
static const char RANGE_DESC[] =
        "{\"header\":{\"cluster_id\":\"5253559638163113374\","
        "\"member_id\":\"13328448381644391632\",\"revision\":\"5\","
        "\"raft_term\":\"2\"},\"kvs\":[{\"key\":\"YWI=\",\"create_revision\":\"5\","
        "\"mod_revision\":\"5\",\"version\":\"1\",\"value\":\"YWJj\"},"
        "{\"key\":\"YQ==\",\"create_revision\":\"4\",\"mod_revision\":\"4\","
        "\"version\":\"1\"}],\"count\":\"2\"}";
static const char RANGE_MORE[] =
        "{\"header\":{\"cluster_id\":\"5253559638163113374\","
        "\"member_id\":\"13328448381644391632\",\"revision\":\"5\","
        "\"raft_term\":\"2\"},\"kvs\":[{\"key\":\"YQ==\",\"create_revision\":\"4\","
        "\"mod_revision\":\"4\",\"version\":\"1\"}],\"more\":true,"
        "\"count\":\"2\"}";
static const char RANGE_COUNT[] = "{\"header\":{\"cluster_id\":\"5253559638163113374\","
                                  "\"member_id\":\"13328448381644391632\",\"revision\":\"5\","
                                  "\"raft_term\":\"2\"},\"count\":\"2\"}";
static const char RANGE_NONE[] = "{\"header\":{\"cluster_id\":\"5253559638163113374\","
                                 "\"member_id\":\"13328448381644391632\",\"revision\":\"5\","
                                 "\"raft_term\":\"2\"}}";
static const char TXN_FAIL[] =
        "{\"header\":{\"cluster_id\":\"5253559638163113374\","
        "\"member_id\":\"13328448381644391632\",\"revision\":\"6\","
        "\"raft_term\":\"2\"},\"responses\":[{\"response_range\":{\"header\":{\"revision\":\"5\"},"
        "\"kvs\":[{\"key\":\"Zm9v\",\"create_revision\":\"2\","
        "\"mod_revision\":\"3\",\"version\":\"2\",\"value\":\"YmFy\"}],"
        "\"count\":\"1\"}},{\"response_delete_range\":{\"header\":{\"revision\":\"6\"},"
        "\"deleted\":\"1\",\"prev_kvs\":[{\"key\":\"YQ==\",\"create_revision\":\"4\","
        "\"mod_revision\":\"4\",\"version\":\"1\"}]}},"
        "{\"response_put\":{\"header\":{\"revision\":\"6\"}}}]}";
static const char TXN_NESTED[] =
        "{\"header\":{\"cluster_id\":\"5253559638163113374\","
        "\"member_id\":\"13328448381644391632\",\"revision\":\"6\","
        "\"raft_term\":\"2\"},\"succeeded\":true,\"responses\":[{\"response_txn\":{\"header\":{},"
        "\"succeeded\":true,\"responses\":[{\"response_range\":{\"header\":{\"revision\":\"6\"},"
        "\"kvs\":[{\"key\":\"Zm9v\",\"create_revision\":\"2\","
        "\"mod_revision\":\"3\",\"version\":\"2\",\"value\":\"YmFy\"}],"
        "\"count\":\"1\"}}]}}]}";
static const char LEASE_GRANT[] = "{\"header\":{\"cluster_id\":\"5253559638163113374\","
                                  "\"member_id\":\"13328448381644391632\",\"revision\":\"6\","
                                  "\"raft_term\":\"2\"},\"ID\":\"12345\",\"TTL\":\"60\"}";
static const char LEASE_TTL[] =
        "{\"header\":{\"cluster_id\":\"5253559638163113374\","
        "\"member_id\":\"13328448381644391632\",\"revision\":\"7\","
        "\"raft_term\":\"2\"},\"ID\":\"12345\",\"TTL\":\"59\",\"grantedTTL\":\"60\","
        "\"keys\":[\"bA==\"]}";
static const char LEASE_LEASES[] =
        "{\"header\":{\"cluster_id\":\"5253559638163113374\","
        "\"member_id\":\"13328448381644391632\",\"revision\":\"6\","
        "\"raft_term\":\"2\"},\"leases\":[{\"ID\":\"4958641548385737489\"},"
        "{\"ID\":\"12345\"}]}";
static const char ROLE_GET[] = "{\"header\":{\"cluster_id\":\"5253559638163113374\","
                               "\"member_id\":\"13328448381644391632\",\"revision\":\"7\","
                               "\"raft_term\":\"2\"},\"perm\":[{\"permType\":\"READWRITE\","
                               "\"key\":\"YQ==\",\"range_end\":\"Yg==\"}]}";
static const char STATUS[] =
        "{\"header\":{\"cluster_id\":\"5253559638163113374\","
        "\"member_id\":\"13328448381644391632\",\"revision\":\"7\","
        "\"raft_term\":\"2\"},\"version\":\"3.4.23\",\"dbSize\":\"20480\","
        "\"leader\":\"13328448381644391632\",\"raftIndex\":\"19\","
        "\"raftTerm\":\"2\",\"raftAppliedIndex\":\"19\",\"dbSizeInUse\":\"16384\"}";
static const char MEMBERS[] =
        "{\"header\":{\"cluster_id\":\"5253559638163113374\","
        "\"member_id\":\"13328448381644391632\",\"raft_term\":\"2\"},"
        "\"members\":[{\"ID\":\"13328448381644391632\",\"name\":\"default\","
        "\"peerURLs\":[\"http://127.0.0.1:31480\"],\"clientURLs\":[\"http://127.0.0.1:31479\"]}]}";
static const char HASH[] = "{\"header\":{\"cluster_id\":\"5253559638163113374\","
                           "\"member_id\":\"13328448381644391632\",\"revision\":\"8\","
                           "\"raft_term\":\"2\"},\"hash\":1513773580}";
static const char DELRANGE[] =
        "{\"header\":{\"cluster_id\":\"5253559638163113374\","
        "\"member_id\":\"13328448381644391632\",\"revision\":\"9\","
        "\"raft_term\":\"2\"},\"deleted\":\"1\",\"prev_kvs\":[{\"key\":\"eA==\","
        "\"create_revision\":\"6\",\"mod_revision\":\"6\",\"version\":\"1\","
        "\"value\":\"eQ==\"}]}";
static const char WATCH_EVENTS[] =
        "{\"header\":{\"cluster_id\":\"5253559638163113374\","
        "\"member_id\":\"13328448381644391632\",\"revision\":\"11\","
        "\"raft_term\":\"2\"},\"events\":[{\"kv\":{\"key\":\"Zm9v\","
        "\"create_revision\":\"2\",\"mod_revision\":\"10\",\"version\":\"3\","
        "\"value\":\"YmF6\"},\"prev_kv\":{\"key\":\"Zm9v\",\"create_revision\":\"2\","
        "\"mod_revision\":\"3\",\"version\":\"2\",\"value\":\"YmFy\"}},"
        "{\"type\":\"DELETE\",\"kv\":{\"key\":\"Zm9v\",\"mod_revision\":\"11\"},"
        "\"prev_kv\":{\"key\":\"Zm9v\",\"create_revision\":\"2\","
        "\"mod_revision\":\"10\",\"version\":\"3\",\"value\":\"YmF6\"}}]}";
static const char WATCH_CANCEL[] = "{\"header\":{\"cluster_id\":\"5253559638163113374\","
                                   "\"member_id\":\"13328448381644391632\",\"raft_term\":\"2\"},"
                                   "\"canceled\":true,\"compact_revision\":\"3\"}";
static const char USER_GET[] = "{\"header\":{\"cluster_id\":\"5253559638163113374\","
                               "\"member_id\":\"13328448381644391632\",\"revision\":\"9\","
                               "\"raft_term\":\"2\"},\"roles\":[\"r1\"]}";

/* ---- helpers ---- */

static ProtobufCBinaryData bin(const char *s)
{
	return (ProtobufCBinaryData){strlen(s), (uint8_t *)s};
}

static Etcdserverpb__ResponseHeader hdr(int64_t rev)
{
	Etcdserverpb__ResponseHeader h = ETCDSERVERPB__RESPONSE_HEADER__INIT;
	h.cluster_id = CID;
	h.member_id = MID;
	h.revision = rev;
	h.raft_term = 2;
	return h;
}

static Mvccpb__KeyValue kv(const char *key, int64_t cre, int64_t mod, int64_t ver, const char *val)
{
	Mvccpb__KeyValue k = MVCCPB__KEY_VALUE__INIT;
	k.key = bin(key);
	k.create_revision = cre;
	k.mod_revision = mod;
	k.version = ver;
	if (val)
		k.value = bin(val);
	return k;
}

/* ec_json_encode(@m) equals @expect, and its length is reported. */
static void enc_eq(const void *m, const char *expect)
{
	size_t n = 0;
	char *s = ec_json_encode(m, &n);
	cr_assert_not_null(s);
	cr_expect_eq(n, strlen(s));
	cr_expect_str_eq(s, expect);
	free(s);
}

static void *dec_ok(const ProtobufCMessageDescriptor *d, const char *text)
{
	char err[256] = "unset";
	ProtobufCMessage *m = NULL;
	int rc = ec_json_decode(d, text, strlen(text), &m, err, sizeof(err));
	cr_assert_eq(rc, EC_OK, "decode %s: rc %d: %s", text, rc, err);
	cr_assert_not_null(m);
	cr_assert_eq(m->descriptor, d);
	return m;
}

/* Decoding @text fails with EC_BAD_REQUEST, *out NULL, and a reason containing @reason. */
static void dec_bad(const ProtobufCMessageDescriptor *d, const char *text, size_t len,
                    const char *reason)
{
	char err[256] = "unset";
	ProtobufCMessage *m = (ProtobufCMessage *)1;
	int rc = ec_json_decode(d, text, len, &m, err, sizeof(err));
	cr_assert_eq(rc, EC_BAD_REQUEST, "decode %.*s: rc %d", (int)len, text, rc);
	cr_assert_null(m);
	cr_expect(strstr(err, reason) != NULL, "decode %.*s: reason \"%s\", want \"%s\"", (int)len,
	          text, err, reason);
}

#define DEC_BAD(d, text, reason) dec_bad(d, text, strlen(text), reason)

static void free_msg(void *m)
{
	protobuf_c_message_free_unpacked(m, NULL);
}

/* decode(encode(@m)) packs to the same protobuf bytes as @m and encodes the same. */
static void round_trip(const void *m)
{
	const ProtobufCMessage *pm = m;
	size_t n;
	char *s = ec_json_encode(pm, &n);
	cr_assert_not_null(s);
	ProtobufCMessage *back = dec_ok(pm->descriptor, s);
	size_t l1 = protobuf_c_message_get_packed_size(pm);
	size_t l2 = protobuf_c_message_get_packed_size(back);
	cr_assert_eq(l1, l2, "packed size %zu vs %zu for %s", l1, l2, s);
	uint8_t *b1 = malloc(l1 + 1), *b2 = malloc(l2 + 1);
	protobuf_c_message_pack(pm, b1);
	protobuf_c_message_pack(back, b2);
	cr_expect(memcmp(b1, b2, l1) == 0, "packed bytes differ for %s", s);
	char *s2 = ec_json_encode(back, NULL);
	cr_expect_str_eq(s2, s);
	free(b1);
	free(b2);
	free(s);
	free(s2);
	free_msg(back);
}

/* ---- encode: responses as etcd writes them ---- */

Test(ec_json_encode, put_response)
{
	Etcdserverpb__ResponseHeader h = hdr(2);
	Etcdserverpb__PutResponse r = ETCDSERVERPB__PUT_RESPONSE__INIT;
	r.header = &h;
	enc_eq(&r, PUT_RESP);

	Etcdserverpb__ResponseHeader h3 = hdr(3);
	Mvccpb__KeyValue prev = kv("foo", 2, 2, 1, "bar");
	r.header = &h3;
	r.prev_kv = &prev;
	enc_eq(&r, PUT_PREV);
}

Test(ec_json_encode, range_response)
{
	Etcdserverpb__ResponseHeader h = hdr(5);
	Mvccpb__KeyValue k1 = kv("foo", 2, 3, 2, "bar");
	Mvccpb__KeyValue *kvs1[] = {&k1};
	Etcdserverpb__RangeResponse r = ETCDSERVERPB__RANGE_RESPONSE__INIT;
	r.header = &h;
	r.n_kvs = 1;
	r.kvs = kvs1;
	r.count = 1;
	enc_eq(&r, RANGE_ONE);

	/* keys of 2 and 1 bytes (padding = and ==), a 3-byte value, an empty value left out */
	Mvccpb__KeyValue ab = kv("ab", 5, 5, 1, "abc"), a = kv("a", 4, 4, 1, NULL);
	Mvccpb__KeyValue *kvs2[] = {&ab, &a};
	r.n_kvs = 2;
	r.kvs = kvs2;
	r.count = 2;
	enc_eq(&r, RANGE_DESC);

	Mvccpb__KeyValue *kvs3[] = {&a};
	r.n_kvs = 1;
	r.kvs = kvs3;
	r.more = 1;
	enc_eq(&r, RANGE_MORE);

	r.n_kvs = 0;
	r.kvs = NULL;
	r.more = 0;
	enc_eq(&r, RANGE_COUNT);

	r.count = 0;
	enc_eq(&r, RANGE_NONE);
}

Test(ec_json_encode, delete_range_response)
{
	Etcdserverpb__ResponseHeader h = hdr(9);
	Mvccpb__KeyValue x = kv("x", 6, 6, 1, "y");
	Mvccpb__KeyValue *prev[] = {&x};
	Etcdserverpb__DeleteRangeResponse r = ETCDSERVERPB__DELETE_RANGE_RESPONSE__INIT;
	r.header = &h;
	r.deleted = 1;
	r.n_prev_kvs = 1;
	r.prev_kvs = prev;
	enc_eq(&r, DELRANGE);
}

Test(ec_json_encode, txn_response_oneofs)
{
	Etcdserverpb__ResponseHeader h = hdr(6), h5 = ETCDSERVERPB__RESPONSE_HEADER__INIT,
	                             h6 = ETCDSERVERPB__RESPONSE_HEADER__INIT;
	h5.revision = 5;
	h6.revision = 6;
	Mvccpb__KeyValue foo = kv("foo", 2, 3, 2, "bar"), a = kv("a", 4, 4, 1, NULL);
	Mvccpb__KeyValue *kvs[] = {&foo}, *prev[] = {&a};

	Etcdserverpb__RangeResponse rr = ETCDSERVERPB__RANGE_RESPONSE__INIT;
	rr.header = &h5;
	rr.n_kvs = 1;
	rr.kvs = kvs;
	rr.count = 1;
	Etcdserverpb__DeleteRangeResponse dr = ETCDSERVERPB__DELETE_RANGE_RESPONSE__INIT;
	dr.header = &h6;
	dr.deleted = 1;
	dr.n_prev_kvs = 1;
	dr.prev_kvs = prev;
	Etcdserverpb__PutResponse pr = ETCDSERVERPB__PUT_RESPONSE__INIT;
	pr.header = &h6;

	Etcdserverpb__ResponseOp o1 = ETCDSERVERPB__RESPONSE_OP__INIT, o2 = o1, o3 = o1;
	o1.response_case = ETCDSERVERPB__RESPONSE_OP__RESPONSE_RESPONSE_RANGE;
	o1.response_range = &rr;
	o2.response_case = ETCDSERVERPB__RESPONSE_OP__RESPONSE_RESPONSE_DELETE_RANGE;
	o2.response_delete_range = &dr;
	o3.response_case = ETCDSERVERPB__RESPONSE_OP__RESPONSE_RESPONSE_PUT;
	o3.response_put = &pr;
	Etcdserverpb__ResponseOp *ops[] = {&o1, &o2, &o3};
	Etcdserverpb__TxnResponse t = ETCDSERVERPB__TXN_RESPONSE__INIT;
	t.header = &h;
	t.n_responses = 3;
	t.responses = ops;
	enc_eq(&t, TXN_FAIL); /* succeeded false: left out */
	round_trip(&t);
}

Test(ec_json_encode, nested_txn_and_empty_header)
{
	Etcdserverpb__ResponseHeader h = hdr(6), empty = ETCDSERVERPB__RESPONSE_HEADER__INIT,
	                             h6 = ETCDSERVERPB__RESPONSE_HEADER__INIT;
	h6.revision = 6;
	Mvccpb__KeyValue foo = kv("foo", 2, 3, 2, "bar");
	Mvccpb__KeyValue *kvs[] = {&foo};
	Etcdserverpb__RangeResponse rr = ETCDSERVERPB__RANGE_RESPONSE__INIT;
	rr.header = &h6;
	rr.n_kvs = 1;
	rr.kvs = kvs;
	rr.count = 1;
	Etcdserverpb__ResponseOp in = ETCDSERVERPB__RESPONSE_OP__INIT;
	in.response_case = ETCDSERVERPB__RESPONSE_OP__RESPONSE_RESPONSE_RANGE;
	in.response_range = &rr;
	Etcdserverpb__ResponseOp *inner_ops[] = {&in};
	Etcdserverpb__TxnResponse inner = ETCDSERVERPB__TXN_RESPONSE__INIT;
	inner.header = &empty; /* present but all zero: "{}" */
	inner.succeeded = 1;
	inner.n_responses = 1;
	inner.responses = inner_ops;
	Etcdserverpb__ResponseOp out = ETCDSERVERPB__RESPONSE_OP__INIT;
	out.response_case = ETCDSERVERPB__RESPONSE_OP__RESPONSE_RESPONSE_TXN;
	out.response_txn = &inner;
	Etcdserverpb__ResponseOp *ops[] = {&out};
	Etcdserverpb__TxnResponse t = ETCDSERVERPB__TXN_RESPONSE__INIT;
	t.header = &h;
	t.succeeded = 1;
	t.n_responses = 1;
	t.responses = ops;
	enc_eq(&t, TXN_NESTED);
	round_trip(&t);
}

Test(ec_json_encode, leases)
{
	Etcdserverpb__ResponseHeader h6 = hdr(6), h7 = hdr(7);
	Etcdserverpb__LeaseGrantResponse g = ETCDSERVERPB__LEASE_GRANT_RESPONSE__INIT;
	g.header = &h6;
	g.id = 12345;
	g.ttl = 60;
	enc_eq(&g, LEASE_GRANT);

	ProtobufCBinaryData keys[] = {bin("l")};
	Etcdserverpb__LeaseTimeToLiveResponse t = ETCDSERVERPB__LEASE_TIME_TO_LIVE_RESPONSE__INIT;
	t.header = &h7;
	t.id = 12345;
	t.ttl = 59;
	t.grantedttl = 60;
	t.n_keys = 1;
	t.keys = keys;
	enc_eq(&t, LEASE_TTL);

	Etcdserverpb__LeaseStatus l1 = ETCDSERVERPB__LEASE_STATUS__INIT, l2 = l1;
	l1.id = 4958641548385737489;
	l2.id = 12345;
	Etcdserverpb__LeaseStatus *ls[] = {&l1, &l2};
	Etcdserverpb__LeaseLeasesResponse r = ETCDSERVERPB__LEASE_LEASES_RESPONSE__INIT;
	r.header = &h6;
	r.n_leases = 2;
	r.leases = ls;
	enc_eq(&r, LEASE_LEASES);
}

Test(ec_json_encode, auth_enums_and_strings)
{
	Etcdserverpb__ResponseHeader h7 = hdr(7), h9 = hdr(9);
	Authpb__Permission p = AUTHPB__PERMISSION__INIT;
	p.permtype = AUTHPB__PERMISSION__TYPE__READWRITE;
	p.key = bin("a");
	p.range_end = bin("b");
	Authpb__Permission *perms[] = {&p};
	Etcdserverpb__AuthRoleGetResponse r = ETCDSERVERPB__AUTH_ROLE_GET_RESPONSE__INIT;
	r.header = &h7;
	r.n_perm = 1;
	r.perm = perms;
	enc_eq(&r, ROLE_GET);

	char *roles[] = {"r1"};
	Etcdserverpb__AuthUserGetResponse u = ETCDSERVERPB__AUTH_USER_GET_RESPONSE__INIT;
	u.header = &h9;
	u.n_roles = 1;
	u.roles = roles;
	enc_eq(&u, USER_GET);
}

Test(ec_json_encode, go_string_escapes)
{
	/*
	 * etcd: /v3/auth/user/list after adding a user with this name; Go
	 * escapes < > & U+2028 U+2029, writes \b \f as \u0008 \u000c, leaves /
	 * and DEL raw (captured with od -c).
	 */
	char name[] = "a<b>&c\xe2\x80\xa8"
	              "d\xe2\x80\xa9\b\f\x01\x1f/\x7f\xc3\xa9\"\\\n\r\t";
	char *users[] = {name, "u2"};
	Etcdserverpb__ResponseHeader h = hdr(11);
	Etcdserverpb__AuthUserListResponse r = ETCDSERVERPB__AUTH_USER_LIST_RESPONSE__INIT;
	r.header = &h;
	r.n_users = 2;
	r.users = users;
	enc_eq(&r,
	       "{\"header\":{\"cluster_id\":\"5253559638163113374\","
	       "\"member_id\":\"13328448381644391632\",\"revision\":\"11\",\"raft_term\":\"2\"},"
	       "\"users\":[\"a\\u003cb\\u003e\\u0026c\\u2028d\\u2029\\u0008\\u000c\\u0001"
	       "\\u001f/\x7f\xc3\xa9\\\"\\\\\\n\\r\\t\",\"u2\"]}");
	round_trip(&r);

	/* a backslash before b, f or u is text, not an escape to rewrite */
	char *odd[] = {"x\\b\\f\\u0041\\"};
	r.header = NULL;
	r.n_users = 1;
	r.users = odd;
	enc_eq(&r, "{\"users\":[\"x\\\\b\\\\f\\\\u0041\\\\\"]}");
}

Test(ec_json_encode, invalid_utf8_like_go)
{
	/*
	 * jsonpb: each byte that is not UTF-8 is the escape \ufffd, a real U+FFFD
	 * stays raw: {"users":["\ufffd\ufffd\ufffdx\xef\xbf\xbd"]}.
	 */
	char *users[] = {"\xff\xe2\x80x\xef\xbf\xbd", NULL};
	Etcdserverpb__AuthUserListResponse r = ETCDSERVERPB__AUTH_USER_LIST_RESPONSE__INIT;
	r.n_users = 1;
	r.users = users;
	enc_eq(&r, "{\"users\":[\"\\ufffd\\ufffd\\ufffdx\xef\xbf\xbd\"]}");

	/* the noncharacter ec_json marks such bytes with is taken: another one is used */
	users[1] = "\xef\xb7\x90\xef\xb7\x91|\xc3";
	r.n_users = 2;
	enc_eq(&r, "{\"users\":[\"\\ufffd\\ufffd\\ufffdx\xef\xbf\xbd\","
	           "\"\xef\xb7\x90\xef\xb7\x91|\\ufffd\"]}");
}

Test(ec_json_encode, status_and_members_camel_proto_names)
{
	Etcdserverpb__ResponseHeader h = hdr(7);
	Etcdserverpb__StatusResponse s = ETCDSERVERPB__STATUS_RESPONSE__INIT;
	s.header = &h;
	s.version = "3.4.23";
	s.dbsize = 20480;
	s.leader = MID;
	s.raftindex = 19;
	s.raftterm = 2;
	s.raftappliedindex = 19;
	s.dbsizeinuse = 16384;
	enc_eq(&s, STATUS);

	Etcdserverpb__ResponseHeader mh = hdr(0);
	char *peers[] = {"http://127.0.0.1:31480"}, *clients[] = {"http://127.0.0.1:31479"};
	Etcdserverpb__Member m = ETCDSERVERPB__MEMBER__INIT;
	m.id = MID;
	m.name = "default";
	m.n_peerurls = 1;
	m.peerurls = peers;
	m.n_clienturls = 1;
	m.clienturls = clients;
	Etcdserverpb__Member *ms[] = {&m};
	Etcdserverpb__MemberListResponse l = ETCDSERVERPB__MEMBER_LIST_RESPONSE__INIT;
	l.header = &mh;
	l.n_members = 1;
	l.members = ms;
	enc_eq(&l, MEMBERS);
	round_trip(&l);
}

Test(ec_json_encode, uint32_is_a_number)
{
	Etcdserverpb__ResponseHeader h = hdr(8);
	Etcdserverpb__HashResponse r = ETCDSERVERPB__HASH_RESPONSE__INIT;
	r.header = &h;
	r.hash = 1513773580;
	enc_eq(&r, HASH);
	r.hash = UINT32_MAX;
	r.header = NULL;
	enc_eq(&r, "{\"hash\":4294967295}");
}

Test(ec_json_encode, watch_events)
{
	Etcdserverpb__ResponseHeader h = hdr(11);
	Mvccpb__KeyValue k1 = kv("foo", 2, 10, 3, "baz"), p1 = kv("foo", 2, 3, 2, "bar");
	Mvccpb__KeyValue k2 = MVCCPB__KEY_VALUE__INIT, p2 = kv("foo", 2, 10, 3, "baz");
	k2.key = bin("foo");
	k2.mod_revision = 11;
	Mvccpb__Event e1 = MVCCPB__EVENT__INIT, e2 = MVCCPB__EVENT__INIT;
	e1.kv = &k1; /* PUT is enum 0: left out */
	e1.prev_kv = &p1;
	e2.type = MVCCPB__EVENT__EVENT_TYPE__DELETE;
	e2.kv = &k2;
	e2.prev_kv = &p2;
	Mvccpb__Event *evs[] = {&e1, &e2};
	Etcdserverpb__WatchResponse w = ETCDSERVERPB__WATCH_RESPONSE__INIT;
	w.header = &h;
	w.n_events = 2;
	w.events = evs;
	enc_eq(&w, WATCH_EVENTS);
	round_trip(&w);

	Etcdserverpb__ResponseHeader hc = hdr(0);
	Etcdserverpb__WatchResponse c = ETCDSERVERPB__WATCH_RESPONSE__INIT;
	c.header = &hc;
	c.canceled = 1;
	c.compact_revision = 3;
	enc_eq(&c, WATCH_CANCEL);
}

Test(ec_json_encode, txn_request_like_jsonpb)
{
	/* jsonpb (OrigName) of e2e's TxnRequest: a set oneof is written at its zero value */
	Etcdserverpb__Compare cmp = ETCDSERVERPB__COMPARE__INIT;
	cmp.result = ETCDSERVERPB__COMPARE__COMPARE_RESULT__EQUAL;
	cmp.target = ETCDSERVERPB__COMPARE__COMPARE_TARGET__CREATE;
	cmp.key = bin("foo");
	cmp.target_union_case = ETCDSERVERPB__COMPARE__TARGET_UNION_CREATE_REVISION;
	cmp.create_revision = 0;
	Etcdserverpb__PutRequest put = ETCDSERVERPB__PUT_REQUEST__INIT;
	put.key = bin("foo");
	put.value = bin("bar");
	Etcdserverpb__RequestOp op = ETCDSERVERPB__REQUEST_OP__INIT;
	op.request_case = ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_PUT;
	op.request_put = &put;
	Etcdserverpb__Compare *cmps[] = {&cmp};
	Etcdserverpb__RequestOp *ops[] = {&op};
	Etcdserverpb__TxnRequest t = ETCDSERVERPB__TXN_REQUEST__INIT;
	t.n_compare = 1;
	t.compare = cmps;
	t.n_success = 1;
	t.success = ops;
	enc_eq(&t,
	       "{\"compare\":[{\"target\":\"CREATE\",\"key\":\"Zm9v\",\"create_revision\":\"0\"}],"
	       "\"success\":[{\"request_put\":{\"key\":\"Zm9v\",\"value\":\"YmFy\"}}]}");
	round_trip(&t);

	/* jsonpb: an empty bytes member of a oneof is "" (range_end, number 64, comes last) */
	Etcdserverpb__Compare v = ETCDSERVERPB__COMPARE__INIT;
	v.target = ETCDSERVERPB__COMPARE__COMPARE_TARGET__VALUE;
	v.target_union_case = ETCDSERVERPB__COMPARE__TARGET_UNION_VALUE;
	enc_eq(&v, "{\"target\":\"VALUE\",\"value\":\"\"}");
	v.range_end = bin("z");
	v.key = bin("a");
	enc_eq(&v, "{\"target\":\"VALUE\",\"key\":\"YQ==\",\"value\":\"\",\"range_end\":\"eg==\"}");

	/* jsonpb: a set oneof message member that is nil is null */
	Etcdserverpb__RequestOp n = ETCDSERVERPB__REQUEST_OP__INIT;
	n.request_case = ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_RANGE;
	enc_eq(&n, "{\"request_range\":null}");
}

Test(ec_json_encode, enums_and_zero_values)
{
	Etcdserverpb__RangeRequest r = ETCDSERVERPB__RANGE_REQUEST__INIT;
	enc_eq(&r, "{}");
	r.key = bin("a");
	r.sort_order = 7; /* jsonpb: an unknown enum value is a bare number */
	enc_eq(&r, "{\"key\":\"YQ==\",\"sort_order\":7}");
	r.sort_order = ETCDSERVERPB__RANGE_REQUEST__SORT_ORDER__DESCEND;
	r.sort_target = ETCDSERVERPB__RANGE_REQUEST__SORT_TARGET__MOD;
	r.limit = -1;
	r.serializable = 1;
	r.max_create_revision = INT64_MIN;
	enc_eq(&r, "{\"key\":\"YQ==\",\"limit\":\"-1\",\"sort_order\":\"DESCEND\","
	           "\"sort_target\":\"MOD\",\"serializable\":true,"
	           "\"max_create_revision\":\"-9223372036854775808\"}");

	Etcdserverpb__ResponseHeader h = ETCDSERVERPB__RESPONSE_HEADER__INIT;
	h.cluster_id = UINT64_MAX;
	enc_eq(&h, "{\"cluster_id\":\"18446744073709551615\"}");

	Etcdserverpb__WatchCreateRequest w = ETCDSERVERPB__WATCH_CREATE_REQUEST__INIT;
	Etcdserverpb__WatchCreateRequest__FilterType f[] = {
	        ETCDSERVERPB__WATCH_CREATE_REQUEST__FILTER_TYPE__NOPUT,
	        ETCDSERVERPB__WATCH_CREATE_REQUEST__FILTER_TYPE__NODELETE};
	w.n_filters = 2;
	w.filters = f;
	enc_eq(&w, "{\"filters\":[\"NOPUT\",\"NODELETE\"]}");
	round_trip(&w);
}

Test(ec_json_encode, base64_padding)
{
	Etcdserverpb__PutRequest p = ETCDSERVERPB__PUT_REQUEST__INIT;
	p.key = bin("a");
	p.value = bin("ab");
	enc_eq(&p, "{\"key\":\"YQ==\",\"value\":\"YWI=\"}");
	p.key = bin("abc");
	p.value = bin("abcd");
	enc_eq(&p, "{\"key\":\"YWJj\",\"value\":\"YWJjZA==\"}");
	uint8_t hi[] = {0xfb, 0xff, 0xbf};
	p.key = (ProtobufCBinaryData){3, hi};
	p.value = (ProtobufCBinaryData){0, NULL};
	enc_eq(&p, "{\"key\":\"+/+/\"}"); /* standard alphabet, empty value left out */
	round_trip(&p);
}

/* ---- decode: what etcd's clients and e2e tests send ---- */

Test(ec_json_decode, e2e_put_range_watch)
{
	Etcdserverpb__PutRequest *p = dec_ok(&etcdserverpb__put_request__descriptor,
	                                     "{\"key\":\"Zm9v\",\"value\":\"YmFy\"}");
	cr_expect_eq(p->key.len, 3);
	cr_expect(memcmp(p->key.data, "foo", 3) == 0);
	cr_expect_eq(p->value.len, 3);
	cr_expect(memcmp(p->value.data, "bar", 3) == 0);
	free_msg(p);

	Etcdserverpb__RangeRequest *r =
	        dec_ok(&etcdserverpb__range_request__descriptor, "{\"key\":\"Zm9v\"}");
	cr_expect_eq(r->key.len, 3);
	cr_expect_eq(r->range_end.len, 0);
	free_msg(r);

	/* e2e testV3CurlWatch: `{"create_request" : ` + json.Marshal(WatchCreateRequest) + "}" */
	Etcdserverpb__WatchRequest *w =
	        dec_ok(&etcdserverpb__watch_request__descriptor,
	               "{\"create_request\" : {\"key\":\"Zm9v\",\"start_revision\":1}}");
	cr_assert_eq(w->request_union_case,
	             ETCDSERVERPB__WATCH_REQUEST__REQUEST_UNION_CREATE_REQUEST);
	cr_assert_not_null(w->create_request);
	cr_expect_eq(w->create_request->start_revision, 1);
	cr_expect_eq(w->create_request->key.len, 3);
	free_msg(w);

	/* v3_curl_maxstream_test: a RangeRequest with a range_end */
	r = dec_ok(&etcdserverpb__range_request__descriptor,
	           "{\"key\":\"Zm9v\",\"range_end\":\"Zm9w\",\"limit\":3,\"sort_order\":2,"
	           "\"sort_target\":3}");
	cr_expect_eq(r->range_end.len, 3);
	cr_expect_eq(r->limit, 3);
	cr_expect_eq(r->sort_order, ETCDSERVERPB__RANGE_REQUEST__SORT_ORDER__DESCEND);
	cr_expect_eq(r->sort_target, ETCDSERVERPB__RANGE_REQUEST__SORT_TARGET__MOD);
	free_msg(r);
}

Test(ec_json_decode, e2e_txn_camel_case)
{
	/* e2e testV3CurlTxn: runtime.JSONPb{}.Marshal (OrigName off: lowerCamel names) */
	Etcdserverpb__TxnRequest *t = dec_ok(
	        &etcdserverpb__txn_request__descriptor,
	        "{\"compare\":[{\"target\":\"CREATE\",\"key\":\"Zm9v\",\"createRevision\":\"0\"}],"
	        "\"success\":[{\"requestPut\":{\"key\":\"Zm9v\",\"value\":\"YmFy\"}}]}");
	cr_assert_eq(t->n_compare, 1);
	cr_expect_eq(t->compare[0]->result, ETCDSERVERPB__COMPARE__COMPARE_RESULT__EQUAL);
	cr_expect_eq(t->compare[0]->target, ETCDSERVERPB__COMPARE__COMPARE_TARGET__CREATE);
	cr_expect_eq(t->compare[0]->target_union_case,
	             ETCDSERVERPB__COMPARE__TARGET_UNION_CREATE_REVISION);
	cr_expect_eq(t->compare[0]->create_revision, 0);
	cr_assert_eq(t->n_success, 1);
	cr_assert_eq(t->success[0]->request_case, ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_PUT);
	cr_expect_eq(t->success[0]->request_put->value.len, 3);
	cr_expect_eq(t->n_failure, 0);
	free_msg(t);

	/*
	 * e2e's "malformed" body (Go field names): etcd's gateway skips unknown
	 * fields, so it decodes to a compare with no target value and a success
	 * op with no request, which the server then refuses.
	 */
	t = dec_ok(&etcdserverpb__txn_request__descriptor,
	           "{\"compare\":[{\"result\":0,\"target\":1,\"key\":\"Zm9v\",\"TargetUnion\":null}],"
	           "\"success\":[{\"Request\":{\"RequestPut\":{\"key\":\"Zm9v\",\"value\":\"YmFy\"}}}]"
	           "}");
	cr_assert_eq(t->n_compare, 1);
	cr_expect_eq(t->compare[0]->target_union_case, ETCDSERVERPB__COMPARE__TARGET_UNION__NOT_SET);
	cr_assert_eq(t->n_success, 1);
	cr_expect_eq(t->success[0]->request_case, ETCDSERVERPB__REQUEST_OP__REQUEST__NOT_SET);
	free_msg(t);
}

Test(ec_json_decode, e2e_auth)
{
	Etcdserverpb__AuthUserAddRequest *u =
	        dec_ok(&etcdserverpb__auth_user_add_request__descriptor,
	               "{\"name\":\"root\",\"password\":\"toor\",\"options\":{}}");
	cr_expect_str_eq(u->name, "root");
	cr_expect_str_eq(u->password, "toor");
	cr_assert_not_null(u->options);
	cr_expect_eq(u->options->no_password, 0);
	free_msg(u);
	u = dec_ok(&etcdserverpb__auth_user_add_request__descriptor,
	           "{\"name\":\"nooption\",\"password\":\"pass\"}");
	cr_expect_null(u->options);
	cr_expect_str_eq(u->hashedpassword, "");
	free_msg(u);

	Etcdserverpb__AuthRoleAddRequest *r =
	        dec_ok(&etcdserverpb__auth_role_add_request__descriptor, "{\"name\":\"root\"}");
	cr_expect_str_eq(r->name, "root");
	free_msg(r);
	Etcdserverpb__AuthUserGrantRoleRequest *g =
	        dec_ok(&etcdserverpb__auth_user_grant_role_request__descriptor,
	               "{\"user\":\"root\",\"role\":\"root\"}");
	cr_expect_str_eq(g->user, "root");
	cr_expect_str_eq(g->role, "root");
	free_msg(g);
	free_msg(dec_ok(&etcdserverpb__auth_enable_request__descriptor, "{}"));
	Etcdserverpb__AuthenticateRequest *a =
	        dec_ok(&etcdserverpb__authenticate_request__descriptor,
	               "{\"name\":\"root\",\"password\":\"toor\"}");
	cr_expect_str_eq(a->password, "toor");
	free_msg(a);
}

Test(ec_json_decode, e2e_lease)
{
	/* v3_curl_lease_test: Go's json.Marshal writes int64 as a JSON number */
	Etcdserverpb__LeaseGrantRequest *g = dec_ok(&etcdserverpb__lease_grant_request__descriptor,
	                                            "{\"ID\":7587869238575836297}");
	cr_expect_eq(g->id, 7587869238575836297LL); /* above 2^53: no double on the way */
	cr_expect_eq(g->ttl, 0);
	free_msg(g);
	g = dec_ok(&etcdserverpb__lease_grant_request__descriptor, "{\"TTL\":20}");
	cr_expect_eq(g->ttl, 20);
	free_msg(g);
	Etcdserverpb__PutRequest *p =
	        dec_ok(&etcdserverpb__put_request__descriptor,
	               "{\"key\":\"Zm9v\",\"value\":\"YmFy\",\"lease\":7587869238575836297}");
	cr_expect_eq(p->lease, 7587869238575836297LL);
	free_msg(p);
	Etcdserverpb__LeaseTimeToLiveRequest *t =
	        dec_ok(&etcdserverpb__lease_time_to_live_request__descriptor,
	               "{\"ID\":7587869238575836297,\"keys\":true}");
	cr_expect_eq(t->id, 7587869238575836297LL);
	cr_expect_eq(t->keys, 1);
	free_msg(t);
	Etcdserverpb__LeaseRevokeRequest *r = dec_ok(
	        &etcdserverpb__lease_revoke_request__descriptor, "{\"ID\":7587869238575836297}");
	cr_expect_eq(r->id, 7587869238575836297LL);
	free_msg(r);
	Etcdserverpb__LeaseKeepAliveRequest *k =
	        dec_ok(&etcdserverpb__lease_keep_alive_request__descriptor,
	               "{\"ID\":7587869238575836297}");
	cr_expect_eq(k->id, 7587869238575836297LL);
	free_msg(k);
	free_msg(dec_ok(&etcdserverpb__lease_leases_request__descriptor, "{}"));
}

Test(ec_json_decode, names_proto_and_camel)
{
	Etcdserverpb__RangeRequest *r =
	        dec_ok(&etcdserverpb__range_request__descriptor,
	               "{\"key\":\"YQ==\",\"rangeEnd\":\"Yg==\",\"sortOrder\":\"DESCEND\","
	               "\"sortTarget\":\"VALUE\",\"keysOnly\":true,\"minModRevision\":\"4\","
	               "\"max_create_revision\":9}");
	cr_expect_eq(r->range_end.len, 1);
	cr_expect_eq(r->sort_order, 2);
	cr_expect_eq(r->sort_target, 4);
	cr_expect_eq(r->keys_only, 1);
	cr_expect_eq(r->min_mod_revision, 4);
	cr_expect_eq(r->max_create_revision, 9);
	free_msg(r);

	/* both spellings: jsonpb takes the camelCase one, whatever the order */
	r = dec_ok(&etcdserverpb__range_request__descriptor,
	           "{\"sortOrder\":\"ASCEND\",\"sort_order\":\"DESCEND\"}");
	cr_expect_eq(r->sort_order, 1);
	free_msg(r);
	r = dec_ok(&etcdserverpb__range_request__descriptor,
	           "{\"sort_order\":\"DESCEND\",\"sortOrder\":\"ASCEND\"}");
	cr_expect_eq(r->sort_order, 1);
	free_msg(r);

	/* .proto names that are not snake_case: StatusResponse's dbSize, Member's ID */
	Etcdserverpb__StatusResponse *s =
	        dec_ok(&etcdserverpb__status_response__descriptor,
	               "{\"dbSize\":\"20480\",\"raftIndex\":19,\"isLearner\":true}");
	cr_expect_eq(s->dbsize, 20480);
	cr_expect_eq(s->raftindex, 19);
	cr_expect_eq(s->islearner, 1);
	free_msg(s);

	/* names are case-sensitive: another case is an unknown field, skipped */
	Etcdserverpb__RangeRequest *rc =
	        dec_ok(&etcdserverpb__range_request__descriptor, "{\"Key\":\"YQ==\",\"sortorder\":1}");
	cr_expect_eq(rc->key.len, 0);
	cr_expect_eq(rc->sort_order, 0);
	free_msg(rc);
}

Test(ec_json_decode, sixty_four_bit)
{
	Etcdserverpb__ResponseHeader *h =
	        dec_ok(&etcdserverpb__response_header__descriptor,
	               "{\"cluster_id\":\"5253559638163113374\",\"member_id\":13328448381644391632,"
	               "\"revision\":-0,\"raft_term\":\"18446744073709551615\"}");
	cr_expect_eq(h->cluster_id, CID);
	cr_expect_eq(h->member_id, MID); /* above INT64_MAX as a bare number */
	cr_expect_eq(h->revision, 0);
	cr_expect_eq(h->raft_term, UINT64_MAX);
	free_msg(h);

	Etcdserverpb__MemberRemoveRequest *m = dec_ok(
	        &etcdserverpb__member_remove_request__descriptor, "{\"ID\":13328448381644391632}");
	cr_expect_eq(m->id, MID);
	free_msg(m);

	Etcdserverpb__RangeRequest *r =
	        dec_ok(&etcdserverpb__range_request__descriptor,
	               "{\"limit\":\"-9223372036854775808\",\"revision\":9223372036854775807}");
	cr_expect_eq(r->limit, INT64_MIN);
	cr_expect_eq(r->revision, INT64_MAX);
	free_msg(r);

	DEC_BAD(&etcdserverpb__range_request__descriptor, "{\"limit\":9223372036854775808}",
	        "json: cannot unmarshal number 9223372036854775808 into Go value of type int64");
	DEC_BAD(&etcdserverpb__range_request__descriptor, "{\"limit\":\"9223372036854775808\"}",
	        "into Go value of type int64");
	DEC_BAD(&etcdserverpb__response_header__descriptor, "{\"member_id\":18446744073709551616}",
	        "cannot unmarshal number 18446744073709551616 into Go value of type uint64");
	DEC_BAD(&etcdserverpb__response_header__descriptor, "{\"member_id\":-1}",
	        "cannot unmarshal number -1 into Go value of type uint64");
	/* etcd: these three reasons are the gateway's, word for word */
	DEC_BAD(&etcdserverpb__range_request__descriptor, "{\"key\":\"Zm9v\",\"limit\":1.5}",
	        "json: cannot unmarshal number 1.5 into Go value of type int64");
	DEC_BAD(&etcdserverpb__range_request__descriptor, "{\"key\":\"Zm9v\",\"limit\":\"abc\"}",
	        "invalid character 'a' looking for beginning of value");
	DEC_BAD(&etcdserverpb__range_request__descriptor, "{\"limit\":1e3}", "number");
	DEC_BAD(&etcdserverpb__range_request__descriptor, "{\"limit\":\"01\"}", "int64");
	DEC_BAD(&etcdserverpb__range_request__descriptor, "{\"limit\":true}",
	        "json: cannot unmarshal bool into Go value of type int64");
	/* a big literal is a number, not a string, for a string field */
	DEC_BAD(&etcdserverpb__auth_role_add_request__descriptor, "{\"name\":18446744073709551615}",
	        "json: cannot unmarshal number into Go value of type string");
}

Test(ec_json_decode, thirty_two_bit)
{
	Etcdserverpb__HashResponse *h =
	        dec_ok(&etcdserverpb__hash_response__descriptor, "{\"hash\":4294967295}");
	cr_expect_eq(h->hash, UINT32_MAX);
	free_msg(h);
	h = dec_ok(&etcdserverpb__hash_response__descriptor, "{\"hash\":\"7\"}");
	cr_expect_eq(h->hash, 7);
	free_msg(h);
	DEC_BAD(&etcdserverpb__hash_response__descriptor, "{\"hash\":4294967296}",
	        "cannot unmarshal number 4294967296 into Go value of type uint32");
	DEC_BAD(&etcdserverpb__hash_response__descriptor, "{\"hash\":-1}", "uint32");
}

Test(ec_json_decode, enums)
{
	Etcdserverpb__RangeRequest *r = dec_ok(&etcdserverpb__range_request__descriptor,
	                                       "{\"sort_order\":1,\"sortTarget\":\"MOD\"}");
	cr_expect_eq(r->sort_order, 1);
	cr_expect_eq(r->sort_target, 3);
	free_msg(r);
	/* an unknown number is kept, as Go's int32 enum keeps it */
	r = dec_ok(&etcdserverpb__range_request__descriptor, "{\"sort_order\":7}");
	cr_expect_eq(r->sort_order, 7);
	free_msg(r);
	/* etcd: both reasons are the gateway's; a quoted number is not an enum name */
	DEC_BAD(&etcdserverpb__range_request__descriptor, "{\"key\":\"Zm9v\",\"sort_order\":\"1\"}",
	        "unknown value \"1\" for enum etcdserverpb.RangeRequest_SortOrder");
	DEC_BAD(&etcdserverpb__range_request__descriptor,
	        "{\"key\":\"Zm9v\",\"sort_order\":\"BOGUS\"}",
	        "unknown value \"BOGUS\" for enum etcdserverpb.RangeRequest_SortOrder");
	DEC_BAD(&etcdserverpb__range_request__descriptor, "{\"sort_order\":2147483648}",
	        "cannot unmarshal number 2147483648 into Go value of type "
	        "etcdserverpb.RangeRequest_SortOrder");
	DEC_BAD(&etcdserverpb__compare__descriptor, "{\"target\":[]}",
	        "json: cannot unmarshal array into Go value of type "
	        "etcdserverpb.Compare_CompareTarget");

	Etcdserverpb__WatchCreateRequest *w =
	        dec_ok(&etcdserverpb__watch_create_request__descriptor,
	               "{\"filters\":[\"NODELETE\",0,null]}");
	cr_assert_eq(w->n_filters, 3);
	cr_expect_eq(w->filters[0], ETCDSERVERPB__WATCH_CREATE_REQUEST__FILTER_TYPE__NODELETE);
	cr_expect_eq(w->filters[1], ETCDSERVERPB__WATCH_CREATE_REQUEST__FILTER_TYPE__NOPUT);
	cr_expect_eq(w->filters[2], 0);
	free_msg(w);

	Authpb__Permission *p = dec_ok(&authpb__permission__descriptor,
	                               "{\"permType\":\"WRITE\",\"key\":\"YQ==\"}");
	cr_expect_eq(p->permtype, AUTHPB__PERMISSION__TYPE__WRITE);
	free_msg(p);
}

Test(ec_json_decode, null_means_not_set)
{
	/* etcd: {"key":null,"limit":null} and a body of null reach the server as empty requests */
	Etcdserverpb__RangeRequest *r = dec_ok(&etcdserverpb__range_request__descriptor,
	                                       "{\"key\":null,\"limit\":null,\"sort_order\":null,"
	                                       "\"serializable\":null}");
	cr_expect_eq(r->key.len, 0);
	cr_expect_eq(r->limit, 0);
	free_msg(r);
	r = dec_ok(&etcdserverpb__range_request__descriptor, " null ");
	cr_expect_eq(r->key.len, 0);
	free_msg(r);

	Etcdserverpb__PutResponse *p = dec_ok(&etcdserverpb__put_response__descriptor,
	                                      "{\"header\":null,\"prev_kv\":null}");
	cr_expect_null(p->header);
	cr_expect_null(p->prev_kv);
	free_msg(p);

	Etcdserverpb__TxnRequest *t = dec_ok(&etcdserverpb__txn_request__descriptor,
	                                     "{\"compare\":null,\"success\":[{\"request_put\":null,"
	                                     "\"request_range\":{\"key\":\"YQ==\"}},null]}");
	cr_expect_eq(t->n_compare, 0);
	cr_assert_eq(t->n_success, 2);
	cr_expect_eq(t->success[0]->request_case, ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_RANGE);
	cr_expect_eq(t->success[1]->request_case, ETCDSERVERPB__REQUEST_OP__REQUEST__NOT_SET);
	free_msg(t);

	Etcdserverpb__AuthUserAddRequest *u =
	        dec_ok(&etcdserverpb__auth_user_add_request__descriptor,
	               "{\"name\":null,\"options\":null}");
	cr_expect_str_eq(u->name, "");
	free_msg(u);
}

Test(ec_json_decode, bytes_forms)
{
	static const struct {
		const char *b64, *raw;
		size_t len;
	} cases[] = {
	        {"", "", 0},
	        {"YQ==", "a", 1},
	        {"YWI=", "ab", 2},
	        {"YWJj", "abc", 3},
	        {"YQ", "a", 1},
	        {"YWI", "ab", 2},
	        {"+/+/", "\xfb\xff\xbf", 3},
	        {"-_-_", "\xfb\xff\xbf", 3},
	        {"YW\nJj\r\n", "abc", 3},
	        {"YWJjZA==", "abcd", 4},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char text[64];
		snprintf(text, sizeof(text), "{\"key\":\"%s\"}", cases[i].b64);
		for (char *c = text; *c; c++) {
			if (*c == '\n' || *c == '\r') { /* JSON escapes for the CR/LF case */
				memmove(c + 2, c + 1, strlen(c + 1) + 1);
				c[1] = *c == '\n' ? 'n' : 'r';
				*c++ = '\\';
			}
		}
		Etcdserverpb__PutRequest *p = dec_ok(&etcdserverpb__put_request__descriptor, text);
		cr_expect_eq(p->key.len, cases[i].len, "%s", text);
		if (cases[i].len)
			cr_expect(memcmp(p->key.data, cases[i].raw, cases[i].len) == 0, "%s", text);
		else
			cr_expect_null(p->key.data);
		free_msg(p);
	}
	/* etcd: the reason text is Go's */
	DEC_BAD(&etcdserverpb__put_request__descriptor, "{\"key\":\"Zm9v!\"}",
	        "illegal base64 data at input byte 4");
	DEC_BAD(&etcdserverpb__put_request__descriptor, "{\"key\":\"Z\"}",
	        "illegal base64 data at input byte 0");
	DEC_BAD(&etcdserverpb__put_request__descriptor, "{\"key\":\"Zm9vZ\"}",
	        "illegal base64 data at input byte 4");
	DEC_BAD(&etcdserverpb__put_request__descriptor, "{\"key\":\"Zg=\"}", "illegal base64");
	DEC_BAD(&etcdserverpb__put_request__descriptor, "{\"key\":\"Zg===\"}", "illegal base64");
	DEC_BAD(&etcdserverpb__put_request__descriptor, "{\"key\":\"Zg==Zg==\"}",
	        "illegal base64 data at input byte 4");
	/* etcd: the gateway's reason, word for word */
	DEC_BAD(&etcdserverpb__put_request__descriptor, "{\"key\":5}",
	        "json: cannot unmarshal number into Go value of type []uint8");
}

Test(ec_json_decode, strings_and_escapes)
{
	Etcdserverpb__AuthUserAddRequest *u = dec_ok(
	        &etcdserverpb__auth_user_add_request__descriptor,
	        "{\"name\":\"a\\u003cb\\u2028\\u00e9\\ud83d\\ude00\\\"\\n\",\"password\":\"\"}");
	cr_expect_str_eq(u->name, "a<b\xe2\x80\xa8\xc3\xa9\xf0\x9f\x98\x80\"\n");
	cr_expect_str_eq(u->password, "");
	free_msg(u);
	/* without big integers in the text, a string starting with U+0001 is a string */
	u = dec_ok(&etcdserverpb__auth_user_add_request__descriptor, "{\"name\":\"\\u000112\"}");
	cr_expect_str_eq(u->name, "\x01"
	                          "12");
	free_msg(u);
	/* etcd: the gateway's reason, word for word */
	DEC_BAD(&etcdserverpb__range_request__descriptor,
	        "{\"key\":\"Zm9v\",\"serializable\":\"true\"}",
	        "json: cannot unmarshal string into Go value of type bool");
	DEC_BAD(&etcdserverpb__range_request__descriptor, "{\"key\":\"Zm9v\",\"serializable\":1}",
	        "json: cannot unmarshal number into Go value of type bool");
	DEC_BAD(&etcdserverpb__auth_role_add_request__descriptor, "{\"name\":{}}",
	        "json: cannot unmarshal object into Go value of type string");
	/* U+0000 cannot live in a C string */
	DEC_BAD(&etcdserverpb__auth_role_add_request__descriptor, "{\"name\":\"a\\u0000b\"}",
	        "invalid JSON");
}

Test(ec_json_decode, errors)
{
	const ProtobufCMessageDescriptor *rr = &etcdserverpb__range_request__descriptor;
	/* unknown fields are skipped, whatever their value */
	Etcdserverpb__RangeRequest *ok =
	        dec_ok(rr, "{\"key\":\"Zm9v\",\"nope\":1,\"deep\":{\"a\":[1,{}]}}");
	cr_expect_eq(ok->key.len, 3);
	free_msg(ok);
	/* etcd: the gateway's reason for a truncated body */
	DEC_BAD(rr, "{\"key\":\"Zm9v\"", "unexpected EOF");
	DEC_BAD(rr, "{\"key\":", "unexpected EOF");
	DEC_BAD(rr, "", "EOF");
	DEC_BAD(rr, " \n", "EOF");
	DEC_BAD(rr, "[]",
	        "json: cannot unmarshal array into Go value of type etcdserverpb.RangeRequest");
	DEC_BAD(rr, "\"x\"",
	        "cannot unmarshal string into Go value of type etcdserverpb.RangeRequest");
	DEC_BAD(rr, "5", "cannot unmarshal number");
	DEC_BAD(rr, "{\"key\":\"Zm9v\"} xyz", "invalid JSON");
	DEC_BAD(rr, "{'key':1}", "invalid JSON");
	DEC_BAD(rr, "{\"key\":\"\xff\"}", "invalid JSON");
	DEC_BAD(&etcdserverpb__put_response__descriptor, "{\"header\":\"x\"}",
	        "cannot unmarshal string into Go value of type etcdserverpb.ResponseHeader");
	DEC_BAD(&etcdserverpb__put_response__descriptor, "{\"header\":{\"revision\":\"x\"}}",
	        "invalid character 'x'");
	DEC_BAD(&etcdserverpb__txn_request__descriptor, "{\"compare\":{}}",
	        "json: cannot unmarshal object into Go value of type []etcdserverpb.Compare");
	DEC_BAD(&etcdserverpb__txn_request__descriptor, "{\"success\":[{\"request_put\":[]}]}",
	        "cannot unmarshal array into Go value of type etcdserverpb.PutRequest");
	DEC_BAD(&etcdserverpb__txn_request__descriptor,
	        "{\"success\":[{\"request_put\":{},\"request_range\":{}}]}",
	        "of etcdserverpb.RequestOp are members of one oneof");
	DEC_BAD(&etcdserverpb__compare__descriptor, "{\"version\":1,\"lease\":\"2\"}",
	        "\"version\" and \"lease\"");
	/* a bad element after good ones: nothing leaks (ASan run) */
	DEC_BAD(&etcdserverpb__txn_request__descriptor,
	        "{\"compare\":[{\"key\":\"YQ==\"},{\"key\":\"YQ==\",\"result\":\"NOPE\"}]}",
	        "NOPE");
	DEC_BAD(&etcdserverpb__member__descriptor, "{\"name\":\"n\",\"peerURLs\":[\"a\",\"b\",3]}",
	        "cannot unmarshal number into Go value of type string");
	DEC_BAD(&etcdserverpb__lease_time_to_live_response__descriptor,
	        "{\"keys\":[\"YQ==\",\"!\"]}", "illegal base64");

	/* text is read to len only; err may be NULL; a short err is terminated */
	const char text[] = "{\"key\":\"YQ==\"}garbage";
	ProtobufCMessage *m = NULL;
	cr_assert_eq(ec_json_decode(rr, text, 14, &m, NULL, 0), EC_OK);
	free_msg(m);
	char small[8];
	memset(small, 'x', sizeof(small));
	cr_assert_eq(ec_json_decode(rr, "[", 1, &m, small, sizeof(small)), EC_BAD_REQUEST);
	cr_expect_null(m);
	cr_expect_eq(strlen(small), sizeof(small) - 1);
}

Test(ec_json_decode, duplicates_last_wins_and_deep_txn)
{
	Etcdserverpb__PutRequest *p = dec_ok(&etcdserverpb__put_request__descriptor,
	                                     "{\"key\":\"YQ==\",\"key\":\"Yg==\"}");
	cr_expect_eq(p->key.data[0], 'b');
	free_msg(p);

	Etcdserverpb__TxnRequest *t =
	        dec_ok(&etcdserverpb__txn_request__descriptor,
	               "{\"success\":[{\"request_txn\":{\"failure\":[{\"requestTxn\":{\"success\":"
	               "[{\"request_delete_range\":{\"key\":\"YQ==\",\"prevKv\":true}}]}}]}}]}");
	Etcdserverpb__TxnRequest *in = t->success[0]->request_txn->failure[0]->request_txn;
	cr_assert_eq(in->n_success, 1);
	cr_expect_eq(in->success[0]->request_delete_range->prev_kv, 1);
	free_msg(t);
}

Test(ec_json, round_trips)
{
	/* everything decode() produced in the tests above encodes back to itself */
	static const struct {
		const ProtobufCMessageDescriptor *d;
		const char *text;
	} cases[] = {
	        {&etcdserverpb__range_response__descriptor, RANGE_DESC},
	        {&etcdserverpb__range_response__descriptor, RANGE_MORE},
	        {&etcdserverpb__txn_response__descriptor, TXN_FAIL},
	        {&etcdserverpb__txn_response__descriptor, TXN_NESTED},
	        {&etcdserverpb__lease_time_to_live_response__descriptor, LEASE_TTL},
	        {&etcdserverpb__lease_leases_response__descriptor, LEASE_LEASES},
	        {&etcdserverpb__auth_role_get_response__descriptor, ROLE_GET},
	        {&etcdserverpb__status_response__descriptor, STATUS},
	        {&etcdserverpb__member_list_response__descriptor, MEMBERS},
	        {&etcdserverpb__hash_response__descriptor, HASH},
	        {&etcdserverpb__delete_range_response__descriptor, DELRANGE},
	        {&etcdserverpb__watch_response__descriptor, WATCH_EVENTS},
	        {&etcdserverpb__watch_response__descriptor, WATCH_CANCEL},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		ProtobufCMessage *m = dec_ok(cases[i].d, cases[i].text);
		char *s = ec_json_encode(m, NULL);
		cr_expect_str_eq(s, cases[i].text);
		free(s);
		round_trip(m);
		free_msg(m);
	}
}

Test(ec_json, jsonpb_corpus)
{
	/*
	 * jsonpb: golang/protobuf's jsonpb (runtime.JSONPb{OrigName: true}) of
	 * random etcd messages after a trip through the wire, as the gateway
	 * writes them: Go's escapes, set oneofs at zero ("value":"", "create_
	 * revision":"0"), an unknown enum value (5), an empty RequestOp. Picked
	 * from 4000 such lines, all of which decode and encode back byte for byte
	 * (4000 more, with bytes that are not UTF-8, encode from their protobuf
	 * bytes exactly as jsonpb did).
	 */
	static const struct {
		const ProtobufCMessageDescriptor *d;
		const char *text;
	} cases[] = {
	        {&etcdserverpb__member_list_response__descriptor,
	         "{\"members\":[{\"ID\":\"3838932217870796034\",\"name\":"
	         "\"\\n\\u0008\360\237\230\200a\","
	         "\"clientURLs\":[\"\\u0026\303\251\",\"\\\\\\u2029\\u2029\"],"
	         "\"isLearner\":true}]}"},
	        {&etcdserverpb__status_response__descriptor,
	         "{\"version\":\"\\u000c\346\274\242/\\n\",\"dbSize\":\"7256072151910564161\","
	         "\"leader\":\"16581025100250270635\",\"raftIndex\":\"4406675865699403751\","
	         "\"raftAppliedIndex\":\"15500042156569947761\","
	         "\"errors\":[\"/\\u2028\357\277\275\"],\"dbSizeInUse\":\"8453136424342241329\"}"},
	        {&etcdserverpb__txn_request__descriptor,
	         "{\"failure\":[{\"request_txn\":{\"compare\":[{\"result\":\"GREATER\","
	         "\"target\":\"MOD\",\"value\":\"\"},{\"target\":5,\"key\":\"15933Z0=\","
	         "\"value\":\"iw==\",\"range_end\":\"8H0PXK0=\"}],"
	         "\"success\":[{\"request_delete_range\":{\"range_end\":\"hk5F\","
	         "\"prev_kv\":true}}],\"failure\":[{}]}}]}"},
	        {&etcdserverpb__txn_request__descriptor,
	         "{\"compare\":[{\"result\":\"LESS\",\"target\":\"CREATE\","
	         "\"key\":\"8ws=\",\"create_revision\":\"0\"}],"
	         "\"failure\":[{\"request_put\":{\"key\":\"Teq64g==\","
	         "\"value\":\"wHlNxP0=\",\"lease\":\"62\",\"prev_kv\":true,"
	         "\"ignore_value\":true}},{\"request_txn\":{\"compare\":[{\"target\":\"LEASE\","
	         "\"value\":\"\"}],\"failure\":[{\"request_delete_range\":{\"prev_kv\":true}}]}}]"
	         "}"},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		ProtobufCMessage *m = dec_ok(cases[i].d, cases[i].text);
		char *s = ec_json_encode(m, NULL);
		cr_expect_str_eq(s, cases[i].text);
		free(s);
		round_trip(m);
		free_msg(m);
	}
}
