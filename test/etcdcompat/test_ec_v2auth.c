/*
 * Unit tests for ec_v2auth: etcd 3.4's v2 auth rules (etcdserver/api/v2auth)
 * over a small in-memory v2 store — pattern matching, the user and role
 * documents, grant/revoke merges and their errors, the root and guest rules,
 * enable/disable, and the list bodies of /v2/auth/users and /v2/auth/roles.
 * Expected texts and shapes are etcd 3.4's (v2auth/auth.go, v2http's
 * client_auth.go); bcrypt runs at the minimum cost to keep the tests fast.
 */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "etcdcompat/ec_v2auth.h"

/* ---- a map-backed store: leaves and directories by full path ---- */

#define MAXN 64

typedef struct fake {
	char *path[MAXN];
	char *value[MAXN]; /* NULL: directory */
	int n;
	int writes;
} fake;

static char *norm(const char *p)
{
	char *s = strdup(p);
	size_t n = strlen(s);
	while (n > 1 && s[n - 1] == '/')
		s[--n] = '\0';
	return s;
}

static int find(fake *f, const char *p)
{
	for (int i = 0; i < f->n; i++)
		if (strcmp(f->path[i], p) == 0)
			return i;
	return -1;
}

static int f_get(void *ctx, const char *path, bool quorum, char **value, const char **msg)
{
	fake *f = ctx;
	(void)quorum, (void)msg;
	char *p = norm(path);
	int i = find(f, p);
	free(p);
	if (i < 0 || f->value[i] == NULL)
		return EC_V2A_KEY_NOT_FOUND;
	*value = strdup(f->value[i]);
	return 0;
}

static int f_list(void *ctx, const char *path, char ***names, size_t *n, const char **msg)
{
	fake *f = ctx;
	(void)msg;
	char *p = norm(path);
	size_t pl = strlen(p);
	if (find(f, p) < 0) {
		free(p);
		return EC_V2A_KEY_NOT_FOUND;
	}
	*names = calloc(MAXN, sizeof(char *));
	*n = 0;
	for (int i = 0; i < f->n; i++)
		if (strncmp(f->path[i], p, pl) == 0 && f->path[i][pl] == '/' &&
		    strchr(f->path[i] + pl + 1, '/') == NULL)
			(*names)[(*n)++] = strdup(f->path[i] + pl + 1);
	free(p);
	return 0;
}

static int put(fake *f, const char *path, const char *value, int prev_exist)
{
	char *p = norm(path);
	int i = find(f, p);
	if (i >= 0 && prev_exist == 0) {
		free(p);
		return EC_V2A_NODE_EXIST;
	}
	if (i < 0 && prev_exist == 1) {
		free(p);
		return EC_V2A_KEY_NOT_FOUND;
	}
	f->writes++;
	if (i >= 0) {
		free(p);
		free(f->value[i]);
		f->value[i] = value ? strdup(value) : NULL;
		return 0;
	}
	cr_assert_lt(f->n, MAXN);
	f->path[f->n] = p;
	f->value[f->n] = value ? strdup(value) : NULL;
	f->n++;
	return 0;
}

static int f_set(void *ctx, const char *path, const char *value, int prev_exist, const char **msg)
{
	(void)msg;
	return put(ctx, path, value, prev_exist);
}

static int f_mkdir(void *ctx, const char *path, const char **msg)
{
	(void)msg;
	return put(ctx, path, NULL, 0);
}

static int f_del(void *ctx, const char *path, const char **msg)
{
	fake *f = ctx;
	(void)msg;
	char *p = norm(path);
	int i = find(f, p);
	free(p);
	if (i < 0)
		return EC_V2A_KEY_NOT_FOUND;
	free(f->path[i]);
	free(f->value[i]);
	f->path[i] = f->path[f->n - 1];
	f->value[i] = f->value[f->n - 1];
	f->n--;
	return 0;
}

static fake F;
static ec_v2a_store ST;
static ec_v2a A;

static void setup(void)
{
	memset(&F, 0, sizeof F);
	ST = (ec_v2a_store){f_get, f_list, f_set, f_mkdir, f_del, &F};
	A = (ec_v2a){.st = &ST, .bcrypt_cost = 4};
}

static void teardown(void)
{
	for (int i = 0; i < F.n; i++) {
		free(F.path[i]);
		free(F.value[i]);
	}
}

static const char *stored(const char *path)
{
	int i = find(&F, path);
	return i >= 0 ? F.value[i] : NULL;
}

/* PUT /v2/auth/users/NAME with @json; returns the status (200/201 or the error). */
static int put_user(const char *json, ec_v2a_err *e)
{
	ec_v2a_user in, out;
	cr_assert_eq(ec_v2a_user_parse(json, strlen(json), &in), 0);
	bool created = false;
	int rc = ec_v2a_put_user(&A, &in, &out, &created, e);
	ec_v2a_user_free(&in);
	if (rc != 0)
		return e->status;
	cr_assert_null(out.password, "a response never carries a password");
	ec_v2a_user_free(&out);
	return created ? 201 : 200;
}

static int put_role(const char *json, ec_v2a_err *e)
{
	ec_v2a_role in, out;
	cr_assert_eq(ec_v2a_role_parse(json, strlen(json), &in), 0);
	bool created = false;
	int rc = ec_v2a_put_role(&A, &in, &out, &created, e);
	ec_v2a_role_free(&in);
	if (rc != 0)
		return e->status;
	ec_v2a_role_free(&out);
	return created ? 201 : 200;
}

TestSuite(ec_v2auth, .init = setup, .fini = teardown);

Test(ec_v2auth, simple_match_as_etcd)
{
	cr_assert(ec_v2a_match("/foo", "/foo"));
	cr_assert_not(ec_v2a_match("/foo", "/foo/bar"));
	cr_assert_not(ec_v2a_match("/foo", "/fo"));
	cr_assert(ec_v2a_match("/foo*", "/foobar"));
	cr_assert(ec_v2a_match("/foo/*", "/foo/bar/baz"));
	cr_assert_not(ec_v2a_match("/foo/*", "/foo"));
	cr_assert(ec_v2a_match("/*", "/anything"));
	cr_assert(ec_v2a_match("*", ""));
	cr_assert_not(ec_v2a_match("", "/foo"));
}

Test(ec_v2auth, prefix_match_needs_a_star)
{
	cr_assert_not(ec_v2a_prefix_match("/foo", "/foo"));
	cr_assert(ec_v2a_prefix_match("/foo*", "/foo"));
	cr_assert(ec_v2a_prefix_match("/foo/*", "/foo/x"));
	cr_assert_not(ec_v2a_prefix_match("/bar/*", "/foo/x"));
}

Test(ec_v2auth, role_allows_read_write_recursive)
{
	const char *doc = "{\"role\":\"r\",\"permissions\":{\"kv\":{\"read\":[\"/pub/*\",\"/one\"],"
	                  "\"write\":[\"/one\"]}}}";
	ec_v2a_role r;
	cr_assert_eq(ec_v2a_role_parse(doc, strlen(doc), &r), 0);
	cr_assert(ec_v2a_role_allows(&r, "/pub/x", false, false));
	cr_assert(ec_v2a_role_allows(&r, "/pub/x", false, true));
	cr_assert_not(ec_v2a_role_allows(&r, "/pub/x", true, false));
	cr_assert(ec_v2a_role_allows(&r, "/one", true, false));
	cr_assert_not(ec_v2a_role_allows(&r, "/one", true, true), "recursive needs a '*'");
	ec_v2a_role_free(&r);
	ec_v2a_role root = {.name = "root"};
	cr_assert(ec_v2a_role_allows(&root, "/any", true, true));
}

Test(ec_v2auth, user_json_shapes)
{
	ec_v2a_user u = {0};
	u.name = "alice";
	char *s = ec_v2a_user_json(&u, false);
	cr_assert_str_eq(s, "{\"user\":\"alice\",\"roles\":null}");
	free(s);
	ec_v2a_role r = {0};
	r.name = "foo";
	s = ec_v2a_role_json(&r);
	cr_assert_str_eq(
	        s, "{\"role\":\"foo\",\"permissions\":{\"kv\":{\"read\":null,\"write\":null}}}");
	free(s);
}

Test(ec_v2auth, parse_rejects_non_objects)
{
	ec_v2a_user u;
	ec_v2a_role r;
	cr_assert_eq(ec_v2a_user_parse("[1]", 3, &u), -1);
	cr_assert_eq(ec_v2a_user_parse("{\"user\":5}", 10, &u), -1);
	cr_assert_eq(ec_v2a_role_parse("nope", 4, &r), -1);
	cr_assert_eq(ec_v2a_role_parse("{\"role\":\"x\",\"permissions\":{\"kv\":{\"read\":[1]}}}",
	                               45, &r),
	             -1);
}

Test(ec_v2auth, create_user_stores_a_bcrypt_hash_only)
{
	ec_v2a_err e;
	cr_assert_eq(put_user("{\"user\":\"alice\",\"password\":\"s3cret\"}", &e), 201);
	const char *doc = stored("/2/users/alice");
	cr_assert_not_null(doc);
	cr_assert_null(strstr(doc, "s3cret"), "no clear password in the store");
	cr_assert_not_null(strstr(doc, "\"password\":\"$2b$04$"));
	cr_assert_str_eq(stored("/2/enabled"), "false", "the auth directories were made");
	ec_v2a_user u;
	cr_assert_eq(ec_v2a_get_user(&A, "alice", false, &u, &e), 0);
	cr_assert(ec_v2a_check_password(&u, "s3cret"));
	cr_assert_not(ec_v2a_check_password(&u, "wrong"));
	ec_v2a_user_free(&u);
}

Test(ec_v2auth, create_errors)
{
	ec_v2a_err e;
	cr_assert_eq(put_user("{\"user\":\"bob\"}", &e), 400);
	cr_assert_str_eq(e.msg, "auth: Cannot create user bob with an empty password");
	cr_assert_eq(put_user("{\"user\":\"bob\",\"password\":\"p\",\"roles\":[\"x\"]}", &e), 200);
	cr_assert_eq(put_user("{\"user\":\"bob\",\"password\":\"p\",\"roles\":[\"x\"]}", &e), 409);
	cr_assert_str_eq(e.msg, "auth: User bob already exists.");
}

Test(ec_v2auth, grant_duplicate_and_revoke_ungranted)
{
	ec_v2a_err e;
	cr_assert_eq(put_role("{\"role\":\"foo\"}", &e), 201);
	cr_assert_eq(put_user("{\"user\":\"username\",\"password\":\"password\"}", &e), 201);
	cr_assert_eq(put_user("{\"user\":\"username\",\"grant\":[\"foo\"]}", &e), 200);
	cr_assert_eq(put_user("{\"user\":\"username\",\"grant\":[\"foo\"]}", &e), 409);
	cr_assert_str_eq(e.msg, "auth: Granting duplicate role foo for user username");
	cr_assert_eq(put_user("{\"user\":\"username\",\"revoke\":[\"bar\"]}", &e), 409);
	cr_assert_str_eq(e.msg, "auth: Revoking ungranted role bar for user username");
	cr_assert_eq(put_user("{\"user\":\"username\",\"roles\":[\"a\"],\"grant\":[\"b\"]}", &e),
	             400);
	cr_assert_str_eq(e.msg, "User JSON contains both roles and grant/revoke");
	cr_assert_eq(put_user("{\"user\":\"nobody\",\"grant\":[\"foo\"]}", &e), 404);
	cr_assert_str_eq(e.msg, "auth: User nobody does not exist.");
	cr_assert_eq(put_user("{\"user\":\"username\"}", &e), 400);
	cr_assert_str_eq(e.msg,
	                 "auth: User not updated. Use grant/revoke/password to update the user.");
	cr_assert_eq(put_user("{\"user\":\"username\",\"revoke\":[\"foo\"]}", &e), 200);
}

Test(ec_v2auth, root_user_and_role)
{
	ec_v2a_err e;
	cr_assert_eq(put_user("{\"user\":\"root\",\"password\":\"123\"}", &e), 201);
	ec_v2a_user u;
	cr_assert_eq(ec_v2a_get_user(&A, "root", false, &u, &e), 0);
	cr_assert(ec_v2a_has_root(&u));
	ec_v2a_user_free(&u);
	cr_assert_eq(put_role("{\"role\":\"root\"}", &e), 403);
	cr_assert_str_eq(e.msg, "auth: Cannot modify role root: is root role.");
	cr_assert_eq(ec_v2a_delete_role(&A, "root", &e), -1);
	cr_assert_eq(e.status, 403);
	ec_v2a_role r;
	cr_assert_eq(ec_v2a_get_role(&A, "root", false, &r, &e), 0);
	cr_assert_eq(r.perms.read.n, 1);
	cr_assert_str_eq(r.perms.read.v[0], "/*");
	ec_v2a_role_free(&r);
	ec_v2a_strv names;
	cr_assert_eq(ec_v2a_all_roles(&A, &names, &e), 0);
	cr_assert_eq(names.n, 1);
	cr_assert_str_eq(names.v[0], "root");
	ec_v2a_strv_free(&names);
}

Test(ec_v2auth, role_grant_revoke)
{
	ec_v2a_err e;
	cr_assert_eq(put_role("{\"role\":\"rw\"}", &e), 201);
	cr_assert_eq(put_role("{\"role\":\"rw\"}", &e), 409);
	cr_assert_str_eq(e.msg, "auth: Role rw already exists.");
	const char *g =
	        "{\"role\":\"rw\",\"grant\":{\"kv\":{\"read\":[\"/foo\"],\"write\":[\"/foo\"]}}}";
	cr_assert_eq(put_role(g, &e), 200);
	cr_assert_str_eq(stored("/2/roles/rw"),
	                 "{\"role\":\"rw\",\"permissions\":{\"kv\":{\"read\":[\"/foo\"],"
	                 "\"write\":[\"/foo\"]}}}");
	cr_assert_eq(put_role(g, &e), 409);
	cr_assert_str_eq(e.msg, "auth: Granting duplicate read permission /foo");
	const char *rv = "{\"role\":\"rw\",\"revoke\":{\"kv\":{\"read\":[\"/nope\"]}}}";
	cr_assert_eq(put_role(rv, &e), 400);
	cr_assert_str_eq(e.msg, "auth: Role not updated. Use grant/revoke to update the role.");
	cr_assert_eq(put_role("{\"role\":\"rw\",\"permissions\":{\"kv\":{\"read\":[\"/x\"]}},"
	                      "\"grant\":{\"kv\":{\"read\":[\"/y\"]}}}",
	                      &e),
	             400);
	cr_assert_str_eq(e.msg, "Role JSON contains both permissions and grant/revoke");
	cr_assert_eq(put_role("{\"role\":\"gone\",\"grant\":{\"kv\":{\"read\":[\"/y\"]}}}", &e),
	             404);
	cr_assert_str_eq(e.msg, "auth: Role gone does not exist.");
	cr_assert_eq(ec_v2a_delete_role(&A, "rw", &e), 0);
	cr_assert_eq(ec_v2a_delete_role(&A, "rw", &e), -1);
	cr_assert_str_eq(e.msg, "auth: Role rw doesn't exist.");
}

Test(ec_v2auth, enable_needs_root_and_creates_guest)
{
	ec_v2a_err e;
	cr_assert_not(ec_v2a_enabled(&A));
	cr_assert_eq(ec_v2a_enable(&A, &e), -1);
	cr_assert_eq(e.status, 409);
	cr_assert_str_eq(e.msg, "auth: No root user available, please create one");
	cr_assert_eq(put_user("{\"user\":\"root\",\"password\":\"123\"}", &e), 201);
	cr_assert_eq(ec_v2a_enable(&A, &e), 0);
	cr_assert(ec_v2a_enabled(&A));
	cr_assert_str_eq(stored("/2/roles/guest"),
	                 "{\"role\":\"guest\",\"permissions\":{\"kv\":{\"read\":[\"/*\"],"
	                 "\"write\":[\"/*\"]}}}");
	cr_assert(ec_v2a_guest_allows(&A, "/foo", true));
	cr_assert_eq(ec_v2a_enable(&A, &e), -1);
	cr_assert_str_eq(e.msg, "auth: already enabled");
	cr_assert_eq(ec_v2a_delete_user(&A, "root", &e), -1);
	cr_assert_eq(e.status, 403);
	cr_assert_str_eq(e.msg, "auth: Cannot delete root user while auth is enabled.");
	cr_assert_eq(ec_v2a_disable(&A, &e), 0);
	cr_assert_eq(ec_v2a_disable(&A, &e), -1);
	cr_assert_str_eq(e.msg, "auth: already disabled");
	cr_assert_eq(ec_v2a_delete_user(&A, "root", &e), 0);
	cr_assert_eq(ec_v2a_delete_user(&A, "root", &e), -1);
	cr_assert_str_eq(e.msg, "auth: User root does not exist");
}

Test(ec_v2auth, user_allows_through_its_roles)
{
	ec_v2a_err e;
	cr_assert_eq(put_role("{\"role\":\"testrole\",\"permissions\":{\"kv\":{\"read\":[\"/foo\"],"
	                      "\"write\":[\"/foo\"]}}}",
	                      &e),
	             201);
	cr_assert_eq(
	        put_user("{\"user\":\"u\",\"password\":\"p\",\"roles\":[\"missing\",\"testrole\"]}",
	                 &e),
	        200);
	ec_v2a_user u;
	cr_assert_eq(ec_v2a_get_user(&A, "u", false, &u, &e), 0);
	cr_assert(ec_v2a_user_allows(&A, &u, "/foo", true, false));
	cr_assert_not(ec_v2a_user_allows(&A, &u, "/bar", false, false));
	ec_v2a_user_free(&u);
	cr_assert_not(ec_v2a_guest_allows(&A, "/foo", false), "no guest role yet");
}

Test(ec_v2auth, list_bodies)
{
	ec_v2a_err e;
	char *s = ec_v2a_users_list_json(&A, &e);
	cr_assert_str_eq(s, "{\"users\":null}");
	free(s);
	cr_assert_eq(put_role("{\"role\":\"foo\"}", &e), 201);
	cr_assert_eq(put_user("{\"user\":\"username\",\"password\":\"password\"}", &e), 201);
	cr_assert_eq(put_user("{\"user\":\"username\",\"grant\":[\"foo\",\"gone\"]}", &e), 200);
	s = ec_v2a_users_list_json(&A, &e);
	cr_assert_str_eq(s, "{\"users\":[{\"user\":\"username\",\"roles\":[{\"role\":\"foo\","
	                    "\"permissions\":{\"kv\":{\"read\":null,\"write\":null}}}]}]}");
	free(s);
	cr_assert_null(ec_v2a_user_get_json(&A, "username", &e), "a missing role fails a get");
	cr_assert_eq(e.status, 404);
	s = ec_v2a_roles_list_json(&A, &e);
	cr_assert_str_eq(s,
	                 "{\"roles\":[{\"role\":\"foo\",\"permissions\":{\"kv\":{\"read\":null,"
	                 "\"write\":null}}},{\"role\":\"root\",\"permissions\":{\"kv\":{\"read\":"
	                 "[\"/*\"],\"write\":[\"/*\"]}}}]}");
	free(s);
}

Test(ec_v2auth, names_that_are_not_one_path_element)
{
	ec_v2a_err e;
	ec_v2a_user u;
	cr_assert_eq(ec_v2a_get_user(&A, "../x", false, &u, &e), -1);
	cr_assert_eq(e.status, 404);
	cr_assert_eq(put_user("{\"user\":\"a/b\",\"password\":\"p\"}", &e), 400);
}
