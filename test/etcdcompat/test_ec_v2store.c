/*
 * test_ec_v2store: etcd 3.4's v2 store — every action (set, create, POST
 * in-order keys, update, compareAndSwap, delete, compareAndDelete, expire
 * through SYNC) with etcd's JSON bodies, status codes and v2 errors; gets of
 * keys and directories (one level, recursive, hidden keys); the event
 * history and watchers (waitIndex, recursive, hidden, a deleted parent,
 * cleared history); and the "ms.r.v2store" record across a reopen.
 */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "etcdcompat/ec_errors.h"
#include "etcdcompat/ec_kv.h"
#include "etcdcompat/ec_v2store.h"
#include "storage/st_db.h"
#include "storage/st_mvcc.h"
#include "test/storage/st_testutil.h"

static ec_v2_store *s;

static void setup(void)
{
	cr_assert_eq(ec_v2_new(NULL, &s), EC_OK);
}

static void teardown(void)
{
	ec_v2_free(s);
}

/* Options of one request. */
typedef struct opt {
	const char *prev_value;
	uint64_t prev_index;
	int prev_exist; /* -1 unset */
	bool dir, recursive, refresh;
	int64_t expiration, time;
} opt;

#define NOOPT ((opt){.prev_exist = -1})

static Metastore__V2Response *run(const char *method, const char *path, const char *val, opt o)
{
	Metastore__V2Request r = METASTORE__V2_REQUEST__INIT;
	r.method = (char *)method;
	r.path = (char *)path;
	r.val = (char *)(val ? val : "");
	r.prev_value = (char *)(o.prev_value ? o.prev_value : "");
	r.prev_index = o.prev_index;
	if (o.prev_exist >= 0) {
		r.prev_exist_set_case = METASTORE__V2_REQUEST__PREV_EXIST_SET_PREV_EXIST;
		r.prev_exist = o.prev_exist != 0;
	}
	if (o.refresh) {
		r.refresh_set_case = METASTORE__V2_REQUEST__REFRESH_SET_REFRESH;
		r.refresh = true;
	}
	r.dir = o.dir;
	r.recursive = o.recursive;
	r.expiration = o.expiration;
	r.time = o.time;
	Metastore__V2Response *out = NULL;
	cr_assert_eq(ec_v2_apply(s, &r, &out), 0);
	cr_assert_not_null(out);
	return out;
}

/* Run and check the body and status, then free. */
static void expect(const char *method, const char *path, const char *val, opt o, int status,
                   const char *body)
{
	Metastore__V2Response *r = run(method, path, val, o);
	cr_expect_str_eq(r->body, body);
	cr_expect_eq(r->http_status, (uint32_t)status, "%s %s: status %u", method, path,
	             r->http_status);
	ec_msg_free(r);
}

static void expect_get(const char *path, bool recursive, const char *body)
{
	Metastore__V2Response *r = NULL;
	cr_assert_eq(ec_v2_get(s, path, recursive, true, 0, &r), EC_OK);
	cr_expect_str_eq(r->body, body);
	ec_msg_free(r);
}

/* A watcher's callback: keep the event in *@ctx. */
static void cb(void *ctx, Metastore__V2Response *ev)
{
	*(Metastore__V2Response **)ctx = ev;
}

TestSuite(v2store, .init = setup, .fini = teardown);

Test(v2store, set_get_and_replace)
{
	expect("PUT", "/1/foo", "bar", NOOPT, 201,
	       "{\"action\":\"set\",\"node\":{\"key\":\"/foo\",\"value\":\"bar\",\"modifiedIndex\":1,"
	       "\"createdIndex\":1}}");
	expect("PUT", "/1/foo", "baz", NOOPT, 200,
	       "{\"action\":\"set\",\"node\":{\"key\":\"/foo\",\"value\":\"baz\",\"modifiedIndex\":2,"
	       "\"createdIndex\":2},\"prevNode\":{\"key\":\"/foo\",\"value\":\"bar\",\"modifiedIndex\":1,"
	       "\"createdIndex\":1}}");
	expect_get("/1/foo", false,
	           "{\"action\":\"get\",\"node\":{\"key\":\"/foo\",\"value\":\"baz\",\"modifiedIndex\":2,"
	           "\"createdIndex\":2}}");
	cr_expect_eq(ec_v2_index(s), 2);
	/* empty values are shown, JSON escaping as Go's */
	expect("PUT", "/1/e", "", NOOPT, 201,
	       "{\"action\":\"set\",\"node\":{\"key\":\"/e\",\"value\":\"\",\"modifiedIndex\":3,"
	       "\"createdIndex\":3}}");
	expect("PUT", "/1/q", "a\"<&>\n", NOOPT, 201,
	       "{\"action\":\"set\",\"node\":{\"key\":\"/q\",\"value\":\"a\\\"\\u003c\\u0026\\u003e\\n\","
	       "\"modifiedIndex\":4,\"createdIndex\":4}}");
}

Test(v2store, errors)
{
	expect_get("/1/nope", false,
	           "{\"errorCode\":100,\"message\":\"Key not found\",\"cause\":\"/nope\",\"index\":0}");
	expect("PUT", "/1/d/k", "v", NOOPT, 201,
	       "{\"action\":\"set\",\"node\":{\"key\":\"/d/k\",\"value\":\"v\",\"modifiedIndex\":1,"
	       "\"createdIndex\":1}}");
	expect("PUT", "/1/d", "x", NOOPT, 403,
	       "{\"errorCode\":102,\"message\":\"Not a file\",\"cause\":\"/d\",\"index\":1}");
	expect("PUT", "/1/d/k/sub", "x", NOOPT, 400,
	       "{\"errorCode\":104,\"message\":\"Not a directory\",\"cause\":\"/d/k\",\"index\":1}");
	expect("PUT", "/1", "x", NOOPT, 400,
	       "{\"errorCode\":107,\"message\":\"Root is read only\",\"cause\":\"/\",\"index\":1}");
	expect("DELETE", "/1/d", NULL, NOOPT, 403,
	       "{\"errorCode\":102,\"message\":\"Not a file\",\"cause\":\"/d\",\"index\":1}");
	opt o = NOOPT;
	o.dir = true;
	expect("DELETE", "/1/d", NULL, o, 403,
	       "{\"errorCode\":108,\"message\":\"Directory not empty\",\"cause\":\"/d\",\"index\":1}");
	expect("DELETE", "/1/none", NULL, NOOPT, 404,
	       "{\"errorCode\":100,\"message\":\"Key not found\",\"cause\":\"/none\",\"index\":1}");
	cr_expect_eq(ec_v2_index(s), 1, "errors do not move the index");
	char *j = ec_v2_error_json(EC_V2_UNAUTHORIZED, "Insufficient credentials", 0);
	cr_expect_str_eq(j, "{\"errorCode\":110,\"message\":\"The request requires user "
	                    "authentication\",\"cause\":\"Insufficient credentials\",\"index\":0}");
	free(j);
	cr_expect_eq(ec_v2_error_status(EC_V2_UNAUTHORIZED), 401);
	cr_expect_eq(ec_v2_error_status(EC_V2_TEST_FAILED), 412);
	cr_expect_eq(ec_v2_error_status(EC_V2_INVALID_FIELD), 400);
}

Test(v2store, create_and_update)
{
	opt create = NOOPT;
	create.prev_exist = 0;
	expect("PUT", "/1/k", "a", create, 201,
	       "{\"action\":\"create\",\"node\":{\"key\":\"/k\",\"value\":\"a\",\"modifiedIndex\":1,"
	       "\"createdIndex\":1}}");
	expect("PUT", "/1/k", "a", create, 412,
	       "{\"errorCode\":105,\"message\":\"Key already exists\",\"cause\":\"/k\",\"index\":1}");
	opt update = NOOPT;
	update.prev_exist = 1;
	expect("PUT", "/1/k", "b", update, 200,
	       "{\"action\":\"update\",\"node\":{\"key\":\"/k\",\"value\":\"b\",\"modifiedIndex\":2,"
	       "\"createdIndex\":1},\"prevNode\":{\"key\":\"/k\",\"value\":\"a\",\"modifiedIndex\":1,"
	       "\"createdIndex\":1}}");
	expect("PUT", "/1/missing", "b", update, 404,
	       "{\"errorCode\":100,\"message\":\"Key not found\",\"cause\":\"/missing\",\"index\":2}");
	/* a directory made with dir=true */
	opt dir = NOOPT;
	dir.dir = true;
	expect("PUT", "/1/dd", NULL, dir, 201,
	       "{\"action\":\"set\",\"node\":{\"key\":\"/dd\",\"dir\":true,\"modifiedIndex\":3,"
	       "\"createdIndex\":3}}");
}

Test(v2store, compare_and_swap_and_delete)
{
	expect("PUT", "/1/k", "one", NOOPT, 201,
	       "{\"action\":\"set\",\"node\":{\"key\":\"/k\",\"value\":\"one\",\"modifiedIndex\":1,"
	       "\"createdIndex\":1}}");
	opt o = NOOPT;
	o.prev_value = "two";
	expect("PUT", "/1/k", "three", o, 412,
	       "{\"errorCode\":101,\"message\":\"Compare failed\",\"cause\":\"[two != one]\",\"index\":1}");
	o = NOOPT;
	o.prev_index = 7;
	expect("PUT", "/1/k", "three", o, 412,
	       "{\"errorCode\":101,\"message\":\"Compare failed\",\"cause\":\"[7 != 1]\",\"index\":1}");
	o.prev_value = "x";
	expect("PUT", "/1/k", "three", o, 412,
	       "{\"errorCode\":101,\"message\":\"Compare failed\",\"cause\":\"[x != one] [7 != 1]\","
	       "\"index\":1}");
	o = NOOPT;
	o.prev_value = "one";
	expect("PUT", "/1/k", "two", o, 200,
	       "{\"action\":\"compareAndSwap\",\"node\":{\"key\":\"/k\",\"value\":\"two\","
	       "\"modifiedIndex\":2,\"createdIndex\":1},\"prevNode\":{\"key\":\"/k\",\"value\":\"one\","
	       "\"modifiedIndex\":1,\"createdIndex\":1}}");
	o = NOOPT;
	o.prev_index = 1;
	expect("DELETE", "/1/k", NULL, o, 412,
	       "{\"errorCode\":101,\"message\":\"Compare failed\",\"cause\":\"[1 != 2]\",\"index\":2}");
	o.prev_index = 2;
	expect("DELETE", "/1/k", NULL, o, 200,
	       "{\"action\":\"compareAndDelete\",\"node\":{\"key\":\"/k\",\"modifiedIndex\":3,"
	       "\"createdIndex\":1},\"prevNode\":{\"key\":\"/k\",\"value\":\"two\",\"modifiedIndex\":2,"
	       "\"createdIndex\":1}}");
}

Test(v2store, in_order_keys_and_listing)
{
	expect("POST", "/1/queue", "a", NOOPT, 201,
	       "{\"action\":\"create\",\"node\":{\"key\":\"/queue/00000000000000000001\",\"value\":\"a\","
	       "\"modifiedIndex\":1,\"createdIndex\":1}}");
	expect("POST", "/1/queue", "b", NOOPT, 201,
	       "{\"action\":\"create\",\"node\":{\"key\":\"/queue/00000000000000000002\",\"value\":\"b\","
	       "\"modifiedIndex\":2,\"createdIndex\":2}}");
	expect("PUT", "/1/queue/_hidden", "h", NOOPT, 201,
	       "{\"action\":\"set\",\"node\":{\"key\":\"/queue/_hidden\",\"value\":\"h\","
	       "\"modifiedIndex\":3,\"createdIndex\":3}}");
	expect_get("/1/queue", false,
	           "{\"action\":\"get\",\"node\":{\"key\":\"/queue\",\"dir\":true,\"nodes\":["
	           "{\"key\":\"/queue/00000000000000000001\",\"value\":\"a\",\"modifiedIndex\":1,"
	           "\"createdIndex\":1},{\"key\":\"/queue/00000000000000000002\",\"value\":\"b\","
	           "\"modifiedIndex\":2,\"createdIndex\":2}],\"modifiedIndex\":1,\"createdIndex\":1}}");
	/* the hidden key is still readable by name */
	expect_get("/1/queue/_hidden", false,
	           "{\"action\":\"get\",\"node\":{\"key\":\"/queue/_hidden\",\"value\":\"h\","
	           "\"modifiedIndex\":3,\"createdIndex\":3}}");
	char **names;
	size_t n;
	cr_assert_eq(ec_v2_list(s, "/1/queue", &names, &n), EC_OK);
	cr_assert_eq(n, 3);
	cr_expect_str_eq(names[0], "00000000000000000001");
	cr_expect_str_eq(names[2], "_hidden");
	for (size_t i = 0; i < n; i++)
		free(names[i]);
	free(names);
	cr_expect_eq(ec_v2_list(s, "/1/queue/_hidden", &names, &n), EC_V2_NOT_DIR);
	cr_expect_eq(ec_v2_list(s, "/1/none", &names, &n), EC_V2_KEY_NOT_FOUND);
}

Test(v2store, recursive_get_and_delete)
{
	ec_msg_free(run("PUT", "/1/a/b/c", "1", NOOPT));
	ec_msg_free(run("PUT", "/1/a/d", "2", NOOPT));
	expect_get("/1/a", false,
	           "{\"action\":\"get\",\"node\":{\"key\":\"/a\",\"dir\":true,\"nodes\":["
	           "{\"key\":\"/a/b\",\"dir\":true,\"modifiedIndex\":1,\"createdIndex\":1},"
	           "{\"key\":\"/a/d\",\"value\":\"2\",\"modifiedIndex\":2,\"createdIndex\":2}],"
	           "\"modifiedIndex\":1,\"createdIndex\":1}}");
	expect_get("/1/a", true,
	           "{\"action\":\"get\",\"node\":{\"key\":\"/a\",\"dir\":true,\"nodes\":["
	           "{\"key\":\"/a/b\",\"dir\":true,\"nodes\":[{\"key\":\"/a/b/c\",\"value\":\"1\","
	           "\"modifiedIndex\":1,\"createdIndex\":1}],\"modifiedIndex\":1,\"createdIndex\":1},"
	           "{\"key\":\"/a/d\",\"value\":\"2\",\"modifiedIndex\":2,\"createdIndex\":2}],"
	           "\"modifiedIndex\":1,\"createdIndex\":1}}");
	/* the root: no key, no indexes, as etcd's */
	expect_get("/1", false,
	           "{\"action\":\"get\",\"node\":{\"dir\":true,\"nodes\":[{\"key\":\"/a\",\"dir\":true,"
	           "\"modifiedIndex\":1,\"createdIndex\":1}]}}");
	opt o = NOOPT;
	o.recursive = true;
	expect("DELETE", "/1/a", NULL, o, 200,
	       "{\"action\":\"delete\",\"node\":{\"key\":\"/a\",\"dir\":true,\"modifiedIndex\":3,"
	       "\"createdIndex\":1},\"prevNode\":{\"key\":\"/a\",\"dir\":true,\"modifiedIndex\":1,"
	       "\"createdIndex\":1}}");
	expect_get("/1/a/b/c", false,
	           "{\"errorCode\":100,\"message\":\"Key not found\",\"cause\":\"/a\",\"index\":3}");
}

Test(v2store, ttl_and_expiry)
{
	const int64_t t0 = 1700000000LL * 1000000000LL;
	opt o = NOOPT;
	o.time = t0;
	o.expiration = t0 + 5 * 1000000000LL + 500;
	expect("PUT", "/1/t", "v", o, 201,
	       "{\"action\":\"set\",\"node\":{\"key\":\"/t\",\"value\":\"v\",\"expiration\":"
	       "\"2023-11-14T22:13:25.0000005Z\",\"ttl\":6,\"modifiedIndex\":1,\"createdIndex\":1}}");
	cr_expect_eq(ec_v2_next_expiry(s), o.expiration);
	/* a SYNC before the expiration changes nothing */
	opt sy = NOOPT;
	sy.time = t0 + 1000000000LL;
	Metastore__V2Response *r = run("SYNC", "/", NULL, sy);
	cr_expect_eq(r->etcd_index, 1);
	ec_msg_free(r);
	/* a watcher sees the expire event */
	Metastore__V2Response *now = NULL;
	uint64_t wid;
	Metastore__V2Response *fired = NULL;
	cr_assert_eq(ec_v2_watch(s, "/1/t", false, 0, cb, &fired, &now, &wid), EC_OK);
	cr_assert_null(now);
	sy.time = t0 + 6 * 1000000000LL;
	ec_msg_free(run("SYNC", "/", NULL, sy));
	cr_assert_not_null(fired);
	cr_expect_str_eq(fired->body,
	                 "{\"action\":\"expire\",\"node\":{\"key\":\"/t\",\"modifiedIndex\":2,"
	                 "\"createdIndex\":1},\"prevNode\":{\"key\":\"/t\",\"value\":\"v\",\"expiration\":"
	                 "\"2023-11-14T22:13:25.0000005Z\",\"modifiedIndex\":1,\"createdIndex\":1}}");
	ec_msg_free(fired);
	cr_expect_eq(ec_v2_next_expiry(s), 0);
	cr_expect_eq(ec_v2_unwatch(s, wid), false);
	/* refresh: the TTL moves, the value stays, no event */
	o.expiration = t0 + 100 * 1000000000LL;
	ec_msg_free(run("PUT", "/1/r", "keep", o));
	opt rf = NOOPT;
	rf.prev_exist = 1;
	rf.refresh = true;
	rf.time = t0;
	rf.expiration = t0 + 200 * 1000000000LL;
	r = run("PUT", "/1/r", NULL, rf);
	cr_expect_str_eq(r->value, "keep");
	cr_expect(strstr(r->body, "\"refresh\":true") != NULL, "%s", r->body);
	ec_msg_free(r);
	cr_expect_eq(ec_v2_next_expiry(s), t0 + 200 * 1000000000LL);
}

Test(v2store, history_and_watchers)
{
	ec_msg_free(run("PUT", "/1/w/a", "1", NOOPT)); /* 1 */
	ec_msg_free(run("PUT", "/1/w/b", "2", NOOPT)); /* 2 */
	ec_msg_free(run("PUT", "/1/other", "3", NOOPT)); /* 3 */
	Metastore__V2Response *now = NULL, *fired = NULL;
	uint64_t wid;
	/* from history: the first event at or after waitIndex on the key */
	cr_assert_eq(ec_v2_watch(s, "/1/w/b", false, 1, cb, &fired, &now, &wid), EC_OK);
	cr_assert_not_null(now);
	cr_expect(strstr(now->body, "\"modifiedIndex\":2") != NULL, "%s", now->body);
	ec_msg_free(now);
	/* recursive from history */
	cr_assert_eq(ec_v2_watch(s, "/1/w", true, 2, cb, &fired, &now, &wid), EC_OK);
	cr_assert_not_null(now);
	cr_expect(strstr(now->body, "\"key\":\"/w/b\"") != NULL, "%s", now->body);
	ec_msg_free(now);
	/* not recursive: a child's event does not count */
	cr_assert_eq(ec_v2_watch(s, "/1/w", false, 1, cb, &fired, &now, &wid), EC_OK);
	cr_assert_null(now);
	cr_expect(ec_v2_unwatch(s, wid));
	/* a live recursive watcher skips hidden keys, fires on the next visible one */
	cr_assert_eq(ec_v2_watch(s, "/1/w", true, 0, cb, &fired, &now, &wid), EC_OK);
	cr_assert_null(now);
	ec_msg_free(run("PUT", "/1/w/_h", "x", NOOPT)); /* 4 */
	cr_expect_null(fired);
	ec_msg_free(run("PUT", "/1/w/c", "y", NOOPT)); /* 5 */
	cr_assert_not_null(fired);
	cr_expect(strstr(fired->body, "\"key\":\"/w/c\"") != NULL, "%s", fired->body);
	ec_msg_free(fired);
	fired = NULL;
	/* a watcher on a key fires when its parent directory goes */
	cr_assert_eq(ec_v2_watch(s, "/1/w/a", false, 0, cb, &fired, &now, &wid), EC_OK);
	opt o = NOOPT;
	o.recursive = true;
	ec_msg_free(run("DELETE", "/1/w", NULL, o)); /* 6 */
	cr_assert_not_null(fired);
	cr_expect(strstr(fired->body, "\"action\":\"delete\"") != NULL, "%s", fired->body);
	ec_msg_free(fired);
}

Test(v2store, history_cleared)
{
	for (int i = 0; i < EC_V2_HISTORY + 5; i++)
		ec_msg_free(run("PUT", "/1/k", "v", NOOPT));
	Metastore__V2Response *now = NULL, *fired = NULL;
	uint64_t wid;
	cr_assert_eq(ec_v2_watch(s, "/1/k", false, 2, cb, &fired, &now, &wid), EC_OK);
	cr_assert_not_null(now);
	cr_expect_eq(now->code, EC_V2_EVENT_INDEX_CLEARED);
	cr_expect_str_eq(now->body, "{\"errorCode\":401,\"message\":\"The event in requested index is "
	                            "outdated and cleared\",\"cause\":\"the requested history has "
	                            "been cleared [6/2]\",\"index\":1005}");
	ec_msg_free(now);
}

Test(v2store_disk, persists_in_the_apply_group)
{
	char *dir = tu_tmpdir();
	st_options so = {.create_if_missing = true};
	char err[512];
	st_db *db;
	cr_assert_eq(st_db_open(dir, &so, &db, err, sizeof err), ST_OK, "%s", err);
	ec_v2_store *d;
	cr_assert_eq(ec_v2_new(db, &d), EC_OK);
	cr_assert_eq(st_apply_begin(db), ST_OK);
	Metastore__V2Request r = METASTORE__V2_REQUEST__INIT;
	r.method = (char *)"PUT";
	r.path = (char *)"/1/dir/key";
	r.val = (char *)"value";
	r.expiration = 4000000000LL * 1000000000LL;
	ProtobufCMessage *out = NULL;
	cr_assert_eq(ec_v2_apply_hook(d, &r, &out), 0);
	ec_msg_free(out);
	r.path = (char *)"/2/users/alice";
	r.expiration = 0;
	cr_assert_eq(ec_v2_apply_hook(d, &r, &out), 0);
	ec_msg_free(out);
	cr_assert_eq(st_mvcc_set_applied(db, 5), ST_OK);
	cr_assert_eq(st_apply_commit(db), ST_OK);
	ec_v2_free(d);
	st_db_close(db);

	cr_assert_eq(st_db_open(dir, &so, &db, err, sizeof err), ST_OK, "%s", err);
	cr_assert_eq(ec_v2_new(db, &d), EC_OK);
	cr_expect_eq(ec_v2_index(d), 2);
	Metastore__V2Response *g = NULL;
	cr_assert_eq(ec_v2_get(d, "/1/dir/key", false, false, 0, &g), EC_OK);
	cr_expect_str_eq(g->value, "value");
	cr_expect_eq(g->modified_index, 1);
	ec_msg_free(g);
	cr_assert_eq(ec_v2_get(d, "/2/users/alice", false, false, 0, &g), EC_OK);
	cr_expect_str_eq(g->value, "value");
	cr_expect(strstr(g->body, "\"key\":\"/2/users/alice\"") != NULL, "/2 is not trimmed: %s",
	          g->body);
	ec_msg_free(g);
	cr_expect_eq(ec_v2_next_expiry(d), 4000000000LL * 1000000000LL);
	cr_expect_eq(ec_v2_reload(d), EC_OK);
	cr_expect_eq(ec_v2_index(d), 2);
	ec_v2_free(d);
	st_db_close(db);
	tu_rmrf(dir);
	free(dir);
}
