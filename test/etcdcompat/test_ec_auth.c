/*
 * Unit tests for ec_auth (etcd's auth store): every Auth log case's success
 * and errors, the auth revision, the admin rule at apply, permission checks
 * (union of intervals, from-key, single keys, READ/WRITE/READWRITE, root,
 * old revision, no user), the apply-time checks of KV and lease writes, the
 * local reads, bcrypt, persistence through a real RocksDB in a temp dir
 * (reopen, apply groups, reload) and readers racing the node thread.
 * Expected values follow etcd 3.4's auth/store.go, auth/range_perm_cache.go
 * and etcdserver/apply_auth.go.
 */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include "etcdcompat/ec_auth.h"
#include "etcdcompat/ec_errors.h"
#include "storage/st_db.h"
#include "storage/st_mvcc.h"
#include "test/storage/st_testutil.h"

static char *dir;
static st_db *db;
static ec_auth *au;
static ProtobufCMessage *last; /* the last successful apply's response */

/* What the hooks saw. */
static int n_gone, n_disabled, n_changed;
static char last_gone[64];

static const ec_hdr HDR = {.cluster_id = 0x1111, .member_id = 0x2222, .raft_term = 7};
#define KVREV 42

/* bcrypt of "pw" at cost 4, made once per test (about a millisecond). */
static char hash_pw[128];

static void on_gone(void *arg, const char *user)
{
	(void)arg;
	n_gone++;
	snprintf(last_gone, sizeof(last_gone), "%s", user);
}

static void on_disabled(void *arg)
{
	(void)arg;
	n_disabled++;
}

static void on_changed(void *arg)
{
	(void)arg;
	n_changed++;
}

static const ec_auth_hooks HOOKS = {on_gone, on_disabled, on_changed, NULL};

static void open_db(void)
{
	st_options o = {.create_if_missing = true};
	char err[512];
	cr_assert_eq(st_db_open(dir, &o, &db, err, sizeof(err)), ST_OK, "%s", err);
	cr_assert_eq(ec_auth_open(db, &HOOKS, &au), ST_OK);
}

static void close_db(void)
{
	ec_auth_close(au);
	au = NULL;
	st_db_close(db);
	db = NULL;
}

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
	cr_assert_eq(ec_auth_hash_password("pw", 4, hash_pw, sizeof(hash_pw)), EC_OK);
	n_gone = n_disabled = n_changed = 0;
	last_gone[0] = '\0';
}

static void teardown(void)
{
	ec_msg_free(last);
	last = NULL;
	if (db != NULL)
		close_db();
	tu_rmrf(dir);
	free(dir);
}

TestSuite(auth, .init = setup, .fini = teardown);

/* ---- building and applying requests --------------------------------------- */

/* The sender of an entry: user (NULL: no auth field) at auth revision rev (0:
 * the store's current one). */
typedef struct who {
	const char *user;
	uint64_t rev;
} who;

#define NOBODY ((who){NULL, 0})
#define AS(u)  ((who){(u), 0})

static void set_case(Metastore__InternalRequest *r, int kase, void *msg)
{
	r->request_case = kase;
	switch (kase) {
	case METASTORE__INTERNAL_REQUEST__REQUEST_AUTH_ENABLE:
		r->auth_enable = msg;
		break;
	case METASTORE__INTERNAL_REQUEST__REQUEST_AUTH_DISABLE:
		r->auth_disable = msg;
		break;
	case METASTORE__INTERNAL_REQUEST__REQUEST_AUTHENTICATE:
		r->authenticate = msg;
		break;
	case METASTORE__INTERNAL_REQUEST__REQUEST_USER_ADD:
		r->user_add = msg;
		break;
	case METASTORE__INTERNAL_REQUEST__REQUEST_USER_DELETE:
		r->user_delete = msg;
		break;
	case METASTORE__INTERNAL_REQUEST__REQUEST_USER_CHANGE_PASSWORD:
		r->user_change_password = msg;
		break;
	case METASTORE__INTERNAL_REQUEST__REQUEST_USER_GRANT_ROLE:
		r->user_grant_role = msg;
		break;
	case METASTORE__INTERNAL_REQUEST__REQUEST_USER_REVOKE_ROLE:
		r->user_revoke_role = msg;
		break;
	case METASTORE__INTERNAL_REQUEST__REQUEST_ROLE_ADD:
		r->role_add = msg;
		break;
	case METASTORE__INTERNAL_REQUEST__REQUEST_ROLE_DELETE:
		r->role_delete = msg;
		break;
	case METASTORE__INTERNAL_REQUEST__REQUEST_ROLE_GRANT_PERMISSION:
		r->role_grant_permission = msg;
		break;
	case METASTORE__INTERNAL_REQUEST__REQUEST_ROLE_REVOKE_PERMISSION:
		r->role_revoke_permission = msg;
		break;
	case METASTORE__INTERNAL_REQUEST__REQUEST_PUT:
		r->put = msg;
		break;
	case METASTORE__INTERNAL_REQUEST__REQUEST_DELETE_RANGE:
		r->delete_range = msg;
		break;
	case METASTORE__INTERNAL_REQUEST__REQUEST_TXN:
		r->txn = msg;
		break;
	case METASTORE__INTERNAL_REQUEST__REQUEST_COMPACTION:
		r->compaction = msg;
		break;
	case METASTORE__INTERNAL_REQUEST__REQUEST_LEASE_REVOKE:
		r->lease_revoke = msg;
		break;
	case METASTORE__INTERNAL_REQUEST__REQUEST_LEASE_GRANT:
		r->lease_grant = msg;
		break;
	default:
		cr_assert_fail("case %d not handled by the test", kase);
	}
}

/*
 * Apply one Auth entry in its own apply group. Returns the etcd error; a
 * success must carry a response with etcd's header (kept in `last`), an error
 * none.
 */
static int apply(who w, int kase, void *msg)
{
	Metastore__InternalRequest r = METASTORE__INTERNAL_REQUEST__INIT;
	Metastore__RequestAuth ra = METASTORE__REQUEST_AUTH__INIT;
	if (w.user != NULL) {
		ra.username = (char *)w.user;
		ra.auth_revision = w.rev ? w.rev : ec_auth_revision(au);
		r.auth = &ra;
	}
	set_case(&r, kase, msg);
	cr_assert_eq(st_apply_begin(db), ST_OK);
	ProtobufCMessage *resp = NULL;
	int err = -1;
	cr_assert_eq(ec_auth_apply(au, &r, &HDR, KVREV, &resp, &err), ST_OK);
	cr_assert_eq(st_apply_commit(db), ST_OK);
	if (err != EC_OK) {
		cr_assert_null(resp, "an error (%s) with a response", ec_strerror(err));
		return err;
	}
	cr_assert_not_null(resp);
	const ProtobufCFieldDescriptor *f =
	        protobuf_c_message_descriptor_get_field_by_name(resp->descriptor, "header");
	cr_assert_not_null(f);
	Etcdserverpb__ResponseHeader *h =
	        *(Etcdserverpb__ResponseHeader **)((char *)resp + f->offset);
	cr_assert_not_null(h, "response without a header");
	cr_assert_eq(h->cluster_id, HDR.cluster_id);
	cr_assert_eq(h->member_id, HDR.member_id);
	cr_assert_eq(h->raft_term, HDR.raft_term);
	cr_assert_eq(h->revision, KVREV);
	ec_msg_free(last);
	last = resp;
	return err;
}

#define C(x) METASTORE__INTERNAL_REQUEST__REQUEST_##x

static int enable(who w)
{
	Etcdserverpb__AuthEnableRequest r = ETCDSERVERPB__AUTH_ENABLE_REQUEST__INIT;
	return apply(w, C(AUTH_ENABLE), &r);
}

static int disable(who w)
{
	Etcdserverpb__AuthDisableRequest r = ETCDSERVERPB__AUTH_DISABLE_REQUEST__INIT;
	return apply(w, C(AUTH_DISABLE), &r);
}

static int user_add(who w, const char *name, bool nopw)
{
	Etcdserverpb__AuthUserAddRequest r = ETCDSERVERPB__AUTH_USER_ADD_REQUEST__INIT;
	Authpb__UserAddOptions o = AUTHPB__USER_ADD_OPTIONS__INIT;
	o.no_password = nopw;
	r.name = (char *)name;
	r.options = &o;
	r.hashedpassword = nopw ? (char *)"" : hash_pw;
	return apply(w, C(USER_ADD), &r);
}

static int user_del(who w, const char *name)
{
	Etcdserverpb__AuthUserDeleteRequest r = ETCDSERVERPB__AUTH_USER_DELETE_REQUEST__INIT;
	r.name = (char *)name;
	return apply(w, C(USER_DELETE), &r);
}

static int user_passwd(who w, const char *name, const char *hash)
{
	Etcdserverpb__AuthUserChangePasswordRequest r =
	        ETCDSERVERPB__AUTH_USER_CHANGE_PASSWORD_REQUEST__INIT;
	r.name = (char *)name;
	r.hashedpassword = (char *)hash;
	return apply(w, C(USER_CHANGE_PASSWORD), &r);
}

static int grant_role(who w, const char *user, const char *role)
{
	Etcdserverpb__AuthUserGrantRoleRequest r = ETCDSERVERPB__AUTH_USER_GRANT_ROLE_REQUEST__INIT;
	r.user = (char *)user;
	r.role = (char *)role;
	return apply(w, C(USER_GRANT_ROLE), &r);
}

static int revoke_role(who w, const char *user, const char *role)
{
	Etcdserverpb__AuthUserRevokeRoleRequest r =
	        ETCDSERVERPB__AUTH_USER_REVOKE_ROLE_REQUEST__INIT;
	r.name = (char *)user;
	r.role = (char *)role;
	return apply(w, C(USER_REVOKE_ROLE), &r);
}

static int role_add(who w, const char *name)
{
	Etcdserverpb__AuthRoleAddRequest r = ETCDSERVERPB__AUTH_ROLE_ADD_REQUEST__INIT;
	r.name = (char *)name;
	return apply(w, C(ROLE_ADD), &r);
}

static int role_del(who w, const char *name)
{
	Etcdserverpb__AuthRoleDeleteRequest r = ETCDSERVERPB__AUTH_ROLE_DELETE_REQUEST__INIT;
	r.role = (char *)name;
	return apply(w, C(ROLE_DELETE), &r);
}

/* The one-byte range end "\0" (from key). */
#define FROMKEY ((const char *)-1)

static ProtobufCBinaryData bin(const char *s)
{
	ProtobufCBinaryData b = {0, NULL};
	if (s == FROMKEY) {
		b.data = (uint8_t *)"";
		b.len = 1;
	} else if (s != NULL) {
		b.data = (uint8_t *)s;
		b.len = strlen(s);
	}
	return b;
}

static int grant_perm(who w, const char *role, int type, const char *key, const char *end)
{
	Etcdserverpb__AuthRoleGrantPermissionRequest r =
	        ETCDSERVERPB__AUTH_ROLE_GRANT_PERMISSION_REQUEST__INIT;
	Authpb__Permission p = AUTHPB__PERMISSION__INIT;
	p.permtype = type;
	p.key = bin(key);
	p.range_end = bin(end);
	r.name = (char *)role;
	r.perm = &p;
	return apply(w, C(ROLE_GRANT_PERMISSION), &r);
}

static int revoke_perm(who w, const char *role, const char *key, const char *end)
{
	Etcdserverpb__AuthRoleRevokePermissionRequest r =
	        ETCDSERVERPB__AUTH_ROLE_REVOKE_PERMISSION_REQUEST__INIT;
	r.role = (char *)role;
	r.key = bin(key);
	r.range_end = bin(end);
	return apply(w, C(ROLE_REVOKE_PERMISSION), &r);
}

static int authenticate(const char *name)
{
	Metastore__InternalAuthenticate r = METASTORE__INTERNAL_AUTHENTICATE__INIT;
	r.name = (char *)name;
	r.simple_token = (char *)"abcdefghijklmnop";
	return apply(NOBODY, C(AUTHENTICATE), &r);
}

/* root with role root, auth enabled; revision afterwards: 1 + 2 = 3. */
static void root_enabled(void)
{
	cr_assert_eq(user_add(NOBODY, "root", false), EC_OK);
	cr_assert_eq(grant_role(NOBODY, "root", "root"), EC_OK);
	cr_assert_eq(enable(NOBODY), EC_OK);
	cr_assert(ec_auth_enabled(au));
	cr_assert_eq(ec_auth_revision(au), 3);
}

static ec_auth_info info(const char *user, uint64_t rev)
{
	ec_auth_info ai;
	memset(&ai, 0, sizeof(ai));
	snprintf(ai.user, sizeof(ai.user), "%s", user);
	ai.revision = rev ? rev : ec_auth_revision(au);
	return ai;
}

/* Read check of [key, end) for user (current revision). */
static int can_read(const char *user, const char *key, const char *end)
{
	ec_auth_info ai = info(user, 0);
	ProtobufCBinaryData k = bin(key), e = bin(end);
	return ec_auth_check_range(au, &ai, k.data, k.len, e.data, e.len);
}

static int can_put(const char *user, const char *key)
{
	ec_auth_info ai = info(user, 0);
	return ec_auth_check_put(au, &ai, (const uint8_t *)key, strlen(key));
}

/* Write check of [key, end) through the apply-time DeleteRange check. */
static int can_delete(const char *user, const char *key, const char *end)
{
	Etcdserverpb__DeleteRangeRequest d = ETCDSERVERPB__DELETE_RANGE_REQUEST__INIT;
	d.key = bin(key);
	d.range_end = bin(end);
	Metastore__InternalRequest r = METASTORE__INTERNAL_REQUEST__INIT;
	Metastore__RequestAuth ra = METASTORE__REQUEST_AUTH__INIT;
	ra.username = (char *)user;
	ra.auth_revision = ec_auth_revision(au);
	r.auth = &ra;
	set_case(&r, C(DELETE_RANGE), &d);
	return ec_auth_check_write(au, &r, NULL, NULL);
}

/* A user "u" holding role "r" (created here), auth enabled. */
static void user_u_role_r(void)
{
	root_enabled();
	cr_assert_eq(user_add(AS("root"), "u", false), EC_OK);
	cr_assert_eq(role_add(AS("root"), "r"), EC_OK);
	cr_assert_eq(grant_role(AS("root"), "u", "r"), EC_OK);
}

/* UserGet of @name as root: its roles joined with ',' into @out. */
static int roles_of(const char *name, char *out, size_t cap)
{
	ec_auth_info ai = info("root", 0);
	Etcdserverpb__AuthUserGetRequest r = ETCDSERVERPB__AUTH_USER_GET_REQUEST__INIT;
	r.name = (char *)name;
	Etcdserverpb__AuthUserGetResponse *g = NULL;
	int e = ec_auth_user_get(au, &ai, &r, &HDR, KVREV, &g);
	out[0] = '\0';
	if (e != EC_OK) {
		cr_assert_null(g);
		return e;
	}
	size_t o = 0;
	for (size_t i = 0; i < g->n_roles; i++)
		o += (size_t)snprintf(out + o, cap - o, "%s%s", i ? "," : "", g->roles[i]);
	cr_assert_eq(g->header->revision, KVREV);
	ec_msg_free(g);
	return EC_OK;
}

/* RoleGet of @role as root: "TYPE:key-end" entries joined with ' '. */
static int perms_of(const char *role, char *out, size_t cap)
{
	ec_auth_info ai = info("root", 0);
	Etcdserverpb__AuthRoleGetRequest r = ETCDSERVERPB__AUTH_ROLE_GET_REQUEST__INIT;
	r.role = (char *)role;
	Etcdserverpb__AuthRoleGetResponse *g = NULL;
	int e = ec_auth_role_get(au, &ai, &r, &HDR, KVREV, &g);
	out[0] = '\0';
	if (e != EC_OK) {
		cr_assert_null(g);
		return e;
	}
	size_t o = 0;
	for (size_t i = 0; i < g->n_perm; i++) {
		const Authpb__Permission *p = g->perm[i];
		const char *t = p->permtype == 0 ? "R" : p->permtype == 1 ? "W" : "RW";
		char end[32] = "";
		if (p->range_end.len == 1 && p->range_end.data[0] == 0)
			snprintf(end, sizeof(end), "\\0");
		else
			snprintf(end, sizeof(end), "%.*s", (int)p->range_end.len,
			         p->range_end.data);
		o += (size_t)snprintf(out + o, cap - o, "%s%s:%.*s-%s", i ? " " : "", t,
		                      (int)p->key.len, p->key.data, end);
	}
	ec_msg_free(g);
	return EC_OK;
}

/* ---- a fresh store ------------------------------------------------------------ */

Test(auth, fresh_store_is_disabled_at_revision_1)
{
	cr_assert_not(ec_auth_enabled(au));
	cr_assert_eq(ec_auth_revision(au), 1, "etcd's NewAuthStore starts at revision 1");
	Etcdserverpb__AuthStatusResponse *s = NULL;
	cr_assert_eq(ec_auth_status(au, &HDR, KVREV, &s), EC_OK);
	cr_assert_not(s->enabled);
	cr_assert_eq(s->authrevision, 1);
	cr_assert_eq(s->header->revision, KVREV);
	cr_assert_eq(s->header->member_id, HDR.member_id);
	ec_msg_free(s);
	/* Disabled: everything passes, whoever asks. */
	cr_assert_eq(can_read("", "a", NULL), EC_OK);
	cr_assert_eq(can_put("nobody", "a"), EC_OK);
	ec_auth_info none = info("", 0);
	cr_assert_eq(ec_auth_check_admin(au, &none), EC_OK);
	cr_assert_eq(ec_auth_check_admin(au, NULL), EC_OK);
}

Test(auth, is_request)
{
	cr_assert(ec_auth_is_request(C(AUTH_ENABLE)));
	cr_assert(ec_auth_is_request(C(AUTHENTICATE)));
	cr_assert(ec_auth_is_request(C(ROLE_REVOKE_PERMISSION)));
	cr_assert_not(ec_auth_is_request(C(PUT)));
	cr_assert_not(ec_auth_is_request(C(MEMBER_UPDATE)));
	cr_assert_not(ec_auth_is_request(METASTORE__INTERNAL_REQUEST__REQUEST__NOT_SET));
}

/* ---- AuthEnable / AuthDisable --------------------------------------------------- */

Test(auth, enable_needs_root_user_with_root_role)
{
	cr_assert_eq(enable(NOBODY), EC_ROOT_USER_NOT_EXIST);
	cr_assert_eq(user_add(NOBODY, "root", false), EC_OK);
	cr_assert_eq(enable(NOBODY), EC_ROOT_ROLE_NOT_EXIST);
	cr_assert_not(ec_auth_enabled(au));
	cr_assert_eq(ec_auth_revision(au), 2);
	/* Role root is implicit: granting it needs no RoleAdd. */
	cr_assert_eq(grant_role(NOBODY, "root", "root"), EC_OK);
	cr_assert_eq(ec_auth_revision(au), 3);
	n_changed = 0;
	cr_assert_eq(enable(NOBODY), EC_OK);
	cr_assert(ec_auth_enabled(au));
	cr_assert_eq(ec_auth_revision(au), 3, "etcd's AuthEnable commits no revision");
	cr_assert_eq(n_changed, 1);
	cr_assert_eq(last->descriptor, &etcdserverpb__auth_enable_response__descriptor);
	/* Enabling again: success, nothing changes. */
	cr_assert_eq(enable(AS("root")), EC_OK);
	cr_assert_eq(ec_auth_revision(au), 3);
	cr_assert_eq(n_changed, 1);
}

Test(auth, disable_bumps_revision_and_calls_hooks)
{
	root_enabled();
	n_changed = 0;
	cr_assert_eq(disable(NOBODY), EC_USER_EMPTY, "admin needed while enabled");
	cr_assert_eq(disable(AS("root")), EC_OK);
	cr_assert_not(ec_auth_enabled(au));
	cr_assert_eq(ec_auth_revision(au), 4);
	cr_assert_eq(n_disabled, 1);
	cr_assert_eq(n_changed, 1);
	cr_assert_eq(last->descriptor, &etcdserverpb__auth_disable_response__descriptor);
	/* Disabled already: success, no change, no hook. */
	cr_assert_eq(disable(NOBODY), EC_OK);
	cr_assert_eq(ec_auth_revision(au), 4);
	cr_assert_eq(n_disabled, 1);
}

/* ---- the admin rule at apply ---------------------------------------------------- */

Test(auth, apply_needs_admin_while_enabled)
{
	user_u_role_r();
	uint64_t rev = ec_auth_revision(au);
	cr_assert_eq(user_add(NOBODY, "x", false), EC_USER_EMPTY);
	cr_assert_eq(user_add(AS("ghost"), "x", false), EC_USER_NOT_FOUND);
	cr_assert_eq(user_add(AS("u"), "x", false), EC_PERMISSION_DENIED);
	cr_assert_eq(role_add(AS("u"), "x"), EC_PERMISSION_DENIED);
	cr_assert_eq(grant_role(AS("u"), "u", "root"), EC_PERMISSION_DENIED);
	cr_assert_eq(disable(AS("u")), EC_PERMISSION_DENIED);
	cr_assert_eq(grant_perm(AS("u"), "r", EC_PERM_READ, "a", NULL), EC_PERMISSION_DENIED);
	cr_assert_eq(ec_auth_revision(au), rev, "refused entries change nothing");
	/* The admin check ignores the sender's auth revision (etcd's
	 * IsAdminPermitted does not look at it). */
	cr_assert_eq(user_add((who){"root", 1}, "x", false), EC_OK);
	/* Authenticate needs no admin. */
	cr_assert_eq(authenticate("u"), EC_OK);
}

/* ---- users ------------------------------------------------------------------------ */

Test(auth, user_add_errors_and_revision)
{
	cr_assert_eq(user_add(NOBODY, "", false), EC_USER_EMPTY);
	char big[EC_AUTH_NAME_MAX + 2];
	memset(big, 'n', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	cr_assert_eq(user_add(NOBODY, big, false), EC_BAD_REQUEST);
	big[EC_AUTH_NAME_MAX] = '\0'; /* exactly the limit: fine */
	cr_assert_eq(user_add(NOBODY, big, false), EC_OK);
	cr_assert_eq(ec_auth_revision(au), 2);
	cr_assert_eq(user_add(NOBODY, "alice", false), EC_OK);
	cr_assert_eq(ec_auth_revision(au), 3);
	cr_assert_eq(last->descriptor, &etcdserverpb__auth_user_add_response__descriptor);
	cr_assert_eq(user_add(NOBODY, "alice", false), EC_USER_ALREADY_EXIST);
	cr_assert_eq(user_add(NOBODY, "alice", true), EC_USER_ALREADY_EXIST);
	cr_assert_eq(ec_auth_revision(au), 3);
	/* Without the hash the proposer forgot to hash: refused, not stored. */
	Etcdserverpb__AuthUserAddRequest r = ETCDSERVERPB__AUTH_USER_ADD_REQUEST__INIT;
	r.name = (char *)"bob";
	r.password = (char *)"clear";
	cr_assert_eq(apply(NOBODY, C(USER_ADD), &r), EC_BAD_REQUEST);
	cr_assert_not(ec_auth_user_exists(au, "bob"));
	cr_assert(ec_auth_user_exists(au, "alice"));
	cr_assert_not(ec_auth_user_exists(au, "alic"));
	cr_assert_not(ec_auth_user_exists(au, "alicee"));
}

Test(auth, no_password_user_cannot_authenticate)
{
	root_enabled();
	cr_assert_eq(user_add(AS("root"), "cn-user", true), EC_OK);
	cr_assert(ec_auth_user_exists(au, "cn-user"));
	cr_assert_eq(ec_auth_check_password(au, "cn-user", "", NULL), EC_NO_PASSWORD_USER);
	cr_assert_eq(ec_auth_check_password(au, "cn-user", "pw", NULL), EC_NO_PASSWORD_USER);
	cr_assert_eq(authenticate("cn-user"), EC_AUTH_FAILED);
	/* A password set later does not lift no-password (etcd keeps the
	 * options). */
	cr_assert_eq(user_passwd(AS("root"), "cn-user", hash_pw), EC_OK);
	cr_assert_eq(ec_auth_check_password(au, "cn-user", "pw", NULL), EC_NO_PASSWORD_USER);
}

Test(auth, user_delete)
{
	root_enabled();
	cr_assert_eq(user_add(AS("root"), "u", false), EC_OK);
	cr_assert_eq(user_del(AS("root"), "nope"), EC_USER_NOT_FOUND);
	cr_assert_eq(user_del(AS("root"), "root"), EC_INVALID_AUTH_MGMT);
	uint64_t rev = ec_auth_revision(au);
	n_gone = n_changed = 0;
	cr_assert_eq(user_del(AS("root"), "u"), EC_OK);
	cr_assert_eq(ec_auth_revision(au), rev + 1);
	cr_assert_not(ec_auth_user_exists(au, "u"));
	cr_assert_eq(n_gone, 1);
	cr_assert_str_eq(last_gone, "u");
	cr_assert_eq(n_changed, 1);
	cr_assert_eq(last->descriptor, &etcdserverpb__auth_user_delete_response__descriptor);
	/* With auth disabled root may go. */
	cr_assert_eq(disable(AS("root")), EC_OK);
	cr_assert_eq(user_del(NOBODY, "root"), EC_OK);
	cr_assert_not(ec_auth_user_exists(au, "root"));
}

Test(auth, change_password)
{
	root_enabled();
	cr_assert_eq(user_add(AS("root"), "u", false), EC_OK);
	cr_assert_eq(user_passwd(AS("root"), "nope", hash_pw), EC_USER_NOT_FOUND);
	cr_assert_eq(user_passwd(AS("root"), "u", ""), EC_BAD_REQUEST);
	cr_assert_eq(ec_auth_check_password(au, "u", "pw", NULL), EC_OK);
	char h2[128];
	cr_assert_eq(ec_auth_hash_password("new", 4, h2, sizeof(h2)), EC_OK);
	uint64_t rev = ec_auth_revision(au);
	n_gone = 0;
	cr_assert_eq(user_passwd(AS("root"), "u", h2), EC_OK);
	cr_assert_eq(ec_auth_revision(au), rev + 1);
	cr_assert_eq(n_gone, 1, "tokens of the user stop working");
	cr_assert_str_eq(last_gone, "u");
	cr_assert_eq(ec_auth_check_password(au, "u", "pw", NULL), EC_AUTH_FAILED);
	uint64_t seen = 0;
	cr_assert_eq(ec_auth_check_password(au, "u", "new", &seen), EC_OK);
	cr_assert_eq(seen, rev + 1);
	/* Roles survive a password change. */
	cr_assert_eq(role_add(AS("root"), "r"), EC_OK);
	cr_assert_eq(grant_role(AS("root"), "u", "r"), EC_OK);
	cr_assert_eq(user_passwd(AS("root"), "u", hash_pw), EC_OK);
	char roles[64];
	cr_assert_eq(roles_of("u", roles, sizeof(roles)), EC_OK);
	cr_assert_str_eq(roles, "r");
}

Test(auth, grant_role)
{
	cr_assert_eq(user_add(NOBODY, "u", false), EC_OK);
	cr_assert_eq(grant_role(NOBODY, "ghost", "root"), EC_USER_NOT_FOUND);
	cr_assert_eq(grant_role(NOBODY, "u", "r"), EC_ROLE_NOT_FOUND);
	cr_assert_eq(grant_role(NOBODY, "u", ""), EC_ROLE_NOT_FOUND);
	/* The user is looked up before the role. */
	cr_assert_eq(grant_role(NOBODY, "ghost", "nope"), EC_USER_NOT_FOUND);
	cr_assert_eq(role_add(NOBODY, "zeta"), EC_OK);
	cr_assert_eq(role_add(NOBODY, "alpha"), EC_OK);
	cr_assert_eq(role_add(NOBODY, "mid"), EC_OK);
	uint64_t rev = ec_auth_revision(au);
	cr_assert_eq(grant_role(NOBODY, "u", "zeta"), EC_OK);
	cr_assert_eq(grant_role(NOBODY, "u", "alpha"), EC_OK);
	cr_assert_eq(grant_role(NOBODY, "u", "mid"), EC_OK);
	cr_assert_eq(grant_role(NOBODY, "u", "root"), EC_OK);
	cr_assert_eq(ec_auth_revision(au), rev + 4);
	cr_assert_eq(last->descriptor, &etcdserverpb__auth_user_grant_role_response__descriptor);
	/* Granting it again: success without a change. */
	n_changed = 0;
	cr_assert_eq(grant_role(NOBODY, "u", "mid"), EC_OK);
	cr_assert_eq(ec_auth_revision(au), rev + 4);
	cr_assert_eq(n_changed, 0);
	char roles[128];
	cr_assert_eq(roles_of("u", roles, sizeof(roles)), EC_OK);
	cr_assert_str_eq(roles, "alpha,mid,root,zeta", "roles are sorted");
	cr_assert(ec_auth_has_role(au, "u", "mid"));
	cr_assert(ec_auth_has_role(au, "u", "root"));
	cr_assert_not(ec_auth_has_role(au, "u", "mi"));
	cr_assert_not(ec_auth_has_role(au, "nobody", "mid"));
}

Test(auth, revoke_role)
{
	root_enabled();
	cr_assert_eq(user_add(AS("root"), "u", false), EC_OK);
	cr_assert_eq(role_add(AS("root"), "a"), EC_OK);
	cr_assert_eq(role_add(AS("root"), "b"), EC_OK);
	cr_assert_eq(grant_role(AS("root"), "u", "a"), EC_OK);
	cr_assert_eq(grant_role(AS("root"), "u", "b"), EC_OK);
	cr_assert_eq(revoke_role(AS("root"), "ghost", "a"), EC_USER_NOT_FOUND);
	cr_assert_eq(revoke_role(AS("root"), "u", "c"), EC_ROLE_NOT_GRANTED);
	cr_assert_eq(revoke_role(AS("root"), "root", "root"), EC_INVALID_AUTH_MGMT);
	uint64_t rev = ec_auth_revision(au);
	cr_assert_eq(revoke_role(AS("root"), "u", "a"), EC_OK);
	cr_assert_eq(ec_auth_revision(au), rev + 1);
	cr_assert_eq(last->descriptor, &etcdserverpb__auth_user_revoke_role_response__descriptor);
	char roles[64];
	cr_assert_eq(roles_of("u", roles, sizeof(roles)), EC_OK);
	cr_assert_str_eq(roles, "b");
	cr_assert_eq(revoke_role(AS("root"), "u", "a"), EC_ROLE_NOT_GRANTED);
	/* With auth disabled root may lose role root. */
	cr_assert_eq(disable(AS("root")), EC_OK);
	cr_assert_eq(revoke_role(NOBODY, "root", "root"), EC_OK);
	cr_assert_eq(enable(NOBODY), EC_ROOT_ROLE_NOT_EXIST);
}

/* ---- roles ---------------------------------------------------------------------- */

Test(auth, role_add)
{
	cr_assert_eq(role_add(NOBODY, ""), EC_ROLE_EMPTY);
	cr_assert_eq(role_add(NOBODY, "r"), EC_OK);
	cr_assert_eq(ec_auth_revision(au), 2);
	cr_assert_eq(last->descriptor, &etcdserverpb__auth_role_add_response__descriptor);
	cr_assert_eq(role_add(NOBODY, "r"), EC_ROLE_ALREADY_EXIST);
	cr_assert_eq(role_add(NOBODY, "root"), EC_OK, "root may be added explicitly");
	cr_assert_eq(ec_auth_revision(au), 3);
	char perms[8];
	cr_assert_eq(perms_of("r", perms, sizeof(perms)), EC_OK);
	cr_assert_str_eq(perms, "");
	cr_assert_eq(perms_of("nope", perms, sizeof(perms)), EC_ROLE_NOT_FOUND);
}

Test(auth, role_delete_takes_role_from_users)
{
	root_enabled();
	cr_assert_eq(role_add(AS("root"), "r"), EC_OK);
	cr_assert_eq(role_add(AS("root"), "s"), EC_OK);
	cr_assert_eq(grant_perm(AS("root"), "r", EC_PERM_READ, "k", NULL), EC_OK);
	cr_assert_eq(user_add(AS("root"), "u1", false), EC_OK);
	cr_assert_eq(user_add(AS("root"), "u2", false), EC_OK);
	cr_assert_eq(user_add(AS("root"), "u3", false), EC_OK);
	cr_assert_eq(grant_role(AS("root"), "u1", "r"), EC_OK);
	cr_assert_eq(grant_role(AS("root"), "u1", "s"), EC_OK);
	cr_assert_eq(grant_role(AS("root"), "u2", "r"), EC_OK);
	cr_assert_eq(grant_role(AS("root"), "u3", "s"), EC_OK);
	cr_assert_eq(can_read("u2", "k", NULL), EC_OK);
	cr_assert_eq(role_del(AS("root"), "nope"), EC_ROLE_NOT_FOUND);
	cr_assert_eq(role_del(AS("root"), "root"), EC_INVALID_AUTH_MGMT);
	uint64_t rev = ec_auth_revision(au);
	cr_assert_eq(role_del(AS("root"), "r"), EC_OK);
	cr_assert_eq(ec_auth_revision(au), rev + 1);
	cr_assert_eq(last->descriptor, &etcdserverpb__auth_role_delete_response__descriptor);
	char roles[64];
	cr_assert_eq(roles_of("u1", roles, sizeof(roles)), EC_OK);
	cr_assert_str_eq(roles, "s");
	cr_assert_eq(roles_of("u2", roles, sizeof(roles)), EC_OK);
	cr_assert_str_eq(roles, "");
	cr_assert_eq(roles_of("u3", roles, sizeof(roles)), EC_OK);
	cr_assert_str_eq(roles, "s");
	cr_assert_eq(roles_of("root", roles, sizeof(roles)), EC_OK);
	cr_assert_str_eq(roles, "root");
	cr_assert_eq(can_read("u2", "k", NULL), EC_PERMISSION_DENIED, "permission went with it");
	/* A role of the same name added later is a new, empty role. */
	cr_assert_eq(role_add(AS("root"), "r"), EC_OK);
	cr_assert_eq(grant_role(AS("root"), "u2", "r"), EC_OK);
	cr_assert_eq(can_read("u2", "k", NULL), EC_PERMISSION_DENIED);
	/* Role root can go while auth is disabled. */
	cr_assert_eq(role_add(AS("root"), "root"), EC_OK);
	cr_assert_eq(disable(AS("root")), EC_OK);
	cr_assert_eq(role_del(NOBODY, "root"), EC_OK);
}

Test(auth, grant_permission_merges_like_etcd)
{
	cr_assert_eq(grant_perm(NOBODY, "r", EC_PERM_READ, "a", NULL), EC_ROLE_NOT_FOUND);
	cr_assert_eq(role_add(NOBODY, "r"), EC_OK);
	Etcdserverpb__AuthRoleGrantPermissionRequest nop =
	        ETCDSERVERPB__AUTH_ROLE_GRANT_PERMISSION_REQUEST__INIT;
	nop.name = (char *)"r";
	cr_assert_eq(apply(NOBODY, C(ROLE_GRANT_PERMISSION), &nop), EC_BAD_REQUEST);
	uint64_t rev = ec_auth_revision(au);
	cr_assert_eq(grant_perm(NOBODY, "r", EC_PERM_READ, "m", "n"), EC_OK);
	cr_assert_eq(grant_perm(NOBODY, "r", EC_PERM_WRITE, "c", NULL), EC_OK);
	cr_assert_eq(grant_perm(NOBODY, "r", EC_PERM_READ, "x", FROMKEY), EC_OK);
	cr_assert_eq(grant_perm(NOBODY, "r", EC_PERM_READ, "a", "b"), EC_OK);
	cr_assert_eq(ec_auth_revision(au), rev + 4);
	cr_assert_eq(last->descriptor,
	             &etcdserverpb__auth_role_grant_permission_response__descriptor);
	char p[256];
	cr_assert_eq(perms_of("r", p, sizeof(p)), EC_OK);
	cr_assert_str_eq(p, "R:a-b W:c- R:m-n R:x-\\0", "sorted by key");
	/* Same key and range end: the type is replaced (and the revision still
	 * moves, as etcd commits it). */
	cr_assert_eq(grant_perm(NOBODY, "r", EC_PERM_READWRITE, "m", "n"), EC_OK);
	cr_assert_eq(ec_auth_revision(au), rev + 5);
	cr_assert_eq(perms_of("r", p, sizeof(p)), EC_OK);
	cr_assert_str_eq(p, "R:a-b W:c- RW:m-n R:x-\\0");
	/* Same key, another end: a second permission, after the first. */
	cr_assert_eq(grant_perm(NOBODY, "r", EC_PERM_WRITE, "m", "z"), EC_OK);
	cr_assert_eq(perms_of("r", p, sizeof(p)), EC_OK);
	cr_assert_str_eq(p, "R:a-b W:c- RW:m-n W:m-z R:x-\\0");
	/* etcd compares only with the first permission of that key: re-granting
	 * the second one appends a duplicate. */
	cr_assert_eq(grant_perm(NOBODY, "r", EC_PERM_READ, "m", "z"), EC_OK);
	cr_assert_eq(perms_of("r", p, sizeof(p)), EC_OK);
	cr_assert_str_eq(p, "R:a-b W:c- RW:m-n W:m-z R:m-z R:x-\\0");
	/* Revoking by key and end removes every such permission. */
	cr_assert_eq(revoke_perm(NOBODY, "r", "m", "z"), EC_OK);
	cr_assert_eq(perms_of("r", p, sizeof(p)), EC_OK);
	cr_assert_str_eq(p, "R:a-b W:c- RW:m-n R:x-\\0");
}

Test(auth, revoke_permission)
{
	cr_assert_eq(revoke_perm(NOBODY, "r", "a", NULL), EC_ROLE_NOT_FOUND);
	cr_assert_eq(role_add(NOBODY, "r"), EC_OK);
	cr_assert_eq(grant_perm(NOBODY, "r", EC_PERM_READ, "a", "c"), EC_OK);
	cr_assert_eq(grant_perm(NOBODY, "r", EC_PERM_READ, "k", NULL), EC_OK);
	uint64_t rev = ec_auth_revision(au);
	cr_assert_eq(revoke_perm(NOBODY, "r", "a", NULL), EC_PERMISSION_NOT_GRANTED);
	cr_assert_eq(revoke_perm(NOBODY, "r", "a", "b"), EC_PERMISSION_NOT_GRANTED);
	cr_assert_eq(revoke_perm(NOBODY, "r", "k", "l"), EC_PERMISSION_NOT_GRANTED);
	cr_assert_eq(revoke_perm(NOBODY, "r", "b", "c"), EC_PERMISSION_NOT_GRANTED);
	cr_assert_eq(ec_auth_revision(au), rev);
	cr_assert_eq(revoke_perm(NOBODY, "r", "a", "c"), EC_OK);
	cr_assert_eq(ec_auth_revision(au), rev + 1);
	cr_assert_eq(last->descriptor,
	             &etcdserverpb__auth_role_revoke_permission_response__descriptor);
	char p[64];
	cr_assert_eq(perms_of("r", p, sizeof(p)), EC_OK);
	cr_assert_str_eq(p, "R:k-");
	cr_assert_eq(revoke_perm(NOBODY, "r", "k", NULL), EC_OK);
	cr_assert_eq(perms_of("r", p, sizeof(p)), EC_OK);
	cr_assert_str_eq(p, "");
}

/* ---- Authenticate at apply -------------------------------------------------------- */

Test(auth, authenticate_apply)
{
	cr_assert_eq(user_add(NOBODY, "root", false), EC_OK);
	cr_assert_eq(authenticate("root"), EC_AUTH_NOT_ENABLED);
	cr_assert_eq(grant_role(NOBODY, "root", "root"), EC_OK);
	cr_assert_eq(enable(NOBODY), EC_OK);
	uint64_t rev = ec_auth_revision(au);
	cr_assert_eq(authenticate("ghost"), EC_AUTH_FAILED);
	cr_assert_eq(authenticate("root"), EC_OK);
	cr_assert_eq(last->descriptor, &etcdserverpb__authenticate_response__descriptor);
	Etcdserverpb__AuthenticateResponse *r = (Etcdserverpb__AuthenticateResponse *)last;
	cr_assert_str_eq(r->token, "", "the caller fills the token");
	cr_assert_eq(ec_auth_revision(au), rev, "authenticate changes nothing");
}

/* ---- permission checks -------------------------------------------------------------- */

Test(auth, check_rules_in_order)
{
	user_u_role_r();
	cr_assert_eq(grant_perm(AS("root"), "r", EC_PERM_READ, "k", NULL), EC_OK);
	uint64_t rev = ec_auth_revision(au);
	ec_auth_info ai = info("", 0);
	cr_assert_eq(ec_auth_check_range(au, &ai, (const uint8_t *)"k", 1, NULL, 0), EC_USER_EMPTY);
	cr_assert_eq(ec_auth_check_range(au, NULL, (const uint8_t *)"k", 1, NULL, 0),
	             EC_USER_EMPTY);
	ai = info("u", 0);
	ai.revision = 0; /* etcd: revision 0 means no user */
	cr_assert_eq(ec_auth_check_range(au, &ai, (const uint8_t *)"k", 1, NULL, 0), EC_USER_EMPTY);
	ai = info("u", rev - 1);
	cr_assert_eq(ec_auth_check_range(au, &ai, (const uint8_t *)"k", 1, NULL, 0),
	             EC_AUTH_OLD_REVISION);
	ai = info("root", rev - 1);
	cr_assert_eq(ec_auth_check_put(au, &ai, (const uint8_t *)"k", 1), EC_AUTH_OLD_REVISION,
	             "the revision check comes before the root bypass");
	ai = info("ghost", 0);
	cr_assert_eq(ec_auth_check_range(au, &ai, (const uint8_t *)"k", 1, NULL, 0),
	             EC_PERMISSION_DENIED);
	ai = info("u", rev + 5); /* a newer revision is fine */
	cr_assert_eq(ec_auth_check_range(au, &ai, (const uint8_t *)"k", 1, NULL, 0), EC_OK);
	cr_assert_eq(can_read("u", "k", NULL), EC_OK);
	cr_assert_eq(can_read("u", "j", NULL), EC_PERMISSION_DENIED);
	cr_assert_eq(can_read("root", "anything", FROMKEY), EC_OK, "root passes everything");
	cr_assert_eq(can_put("root", "x"), EC_OK);
	/* Admin */
	ai = info("u", 0);
	cr_assert_eq(ec_auth_check_admin(au, &ai), EC_PERMISSION_DENIED);
	ai = info("ghost", 0);
	cr_assert_eq(ec_auth_check_admin(au, &ai), EC_USER_NOT_FOUND);
	ai = info("", 0);
	cr_assert_eq(ec_auth_check_admin(au, &ai), EC_USER_EMPTY);
	cr_assert_eq(ec_auth_check_admin(au, NULL), EC_USER_EMPTY);
	ai = info("root", 1);
	cr_assert_eq(ec_auth_check_admin(au, &ai), EC_OK);
}

Test(auth, single_key_permission)
{
	user_u_role_r();
	cr_assert_eq(grant_perm(AS("root"), "r", EC_PERM_READ, "key", NULL), EC_OK);
	cr_assert_eq(can_read("u", "key", NULL), EC_OK);
	cr_assert_eq(can_read("u", "key", "key\x01"), EC_PERMISSION_DENIED);
	cr_assert_eq(can_read("u", "ke", NULL), EC_PERMISSION_DENIED);
	cr_assert_eq(can_read("u", "key0", NULL), EC_PERMISSION_DENIED);
	cr_assert_eq(can_read("u", "key", "kez"), EC_PERMISSION_DENIED, "a range beyond the key");
	cr_assert_eq(can_read("u", "key", FROMKEY), EC_PERMISSION_DENIED);
	cr_assert_eq(can_put("u", "key"), EC_PERMISSION_DENIED, "READ does not grant WRITE");
}

Test(auth, prefix_permission)
{
	user_u_role_r();
	/* etcdctl role grant-permission r readwrite foo --prefix: [foo, fop). */
	cr_assert_eq(grant_perm(AS("root"), "r", EC_PERM_READWRITE, "foo", "fop"), EC_OK);
	cr_assert_eq(can_read("u", "foo", "fop"), EC_OK);
	cr_assert_eq(can_read("u", "foo", NULL), EC_OK);
	cr_assert_eq(can_read("u", "foo/bar", NULL), EC_OK);
	cr_assert_eq(can_read("u", "foo/a", "foo/b"), EC_OK);
	cr_assert_eq(can_read("u", "foo\xff", NULL), EC_OK);
	cr_assert_eq(can_read("u", "fop", NULL), EC_PERMISSION_DENIED, "the end is excluded");
	cr_assert_eq(can_read("u", "fo", NULL), EC_PERMISSION_DENIED);
	cr_assert_eq(can_read("u", "foo", "foq"), EC_PERMISSION_DENIED);
	cr_assert_eq(can_read("u", "fon", "foo"), EC_PERMISSION_DENIED);
	cr_assert_eq(can_read("u", "foo", FROMKEY), EC_PERMISSION_DENIED);
	cr_assert_eq(can_put("u", "foo1"), EC_OK);
	cr_assert_eq(can_delete("u", "foo", "fop"), EC_OK);
	cr_assert_eq(can_delete("u", "foo", "fp"), EC_PERMISSION_DENIED);
}

Test(auth, from_key_permission)
{
	user_u_role_r();
	cr_assert_eq(grant_perm(AS("root"), "r", EC_PERM_READ, "m", FROMKEY), EC_OK);
	cr_assert_eq(can_read("u", "m", FROMKEY), EC_OK);
	cr_assert_eq(can_read("u", "zzz", FROMKEY), EC_OK);
	cr_assert_eq(can_read("u", "m", "\xff\xff"), EC_OK);
	cr_assert_eq(can_read("u", "\xff\xff\xff", NULL), EC_OK);
	cr_assert_eq(can_read("u", "l", FROMKEY), EC_PERMISSION_DENIED);
	cr_assert_eq(can_read("u", "l", "n"), EC_PERMISSION_DENIED);
	cr_assert_eq(can_read("u", "a", NULL), EC_PERMISSION_DENIED);
	/* All keys ("\0" to "\0") needs a permission from "\0". */
	ProtobufCBinaryData z = {1, (uint8_t *)""};
	ec_auth_info ai = info("u", 0);
	cr_assert_eq(ec_auth_check_range(au, &ai, z.data, 1, z.data, 1), EC_PERMISSION_DENIED);
	Etcdserverpb__AuthRoleGrantPermissionRequest r =
	        ETCDSERVERPB__AUTH_ROLE_GRANT_PERMISSION_REQUEST__INIT;
	Authpb__Permission p = AUTHPB__PERMISSION__INIT;
	p.permtype = AUTHPB__PERMISSION__TYPE__READ;
	p.key = z;
	p.range_end = z;
	r.name = (char *)"r";
	r.perm = &p;
	cr_assert_eq(apply(AS("root"), C(ROLE_GRANT_PERMISSION), &r), EC_OK);
	ai = info("u", 0);
	cr_assert_eq(ec_auth_check_range(au, &ai, z.data, 1, z.data, 1), EC_OK);
	cr_assert_eq(ec_auth_check_range(au, &ai, (const uint8_t *)"a", 1, NULL, 0), EC_OK);
}

Test(auth, union_of_intervals)
{
	user_u_role_r();
	cr_assert_eq(role_add(AS("root"), "r2"), EC_OK);
	cr_assert_eq(grant_role(AS("root"), "u", "r2"), EC_OK);
	/* Overlapping [a, c) + [b, e) (two roles) = [a, e). */
	cr_assert_eq(grant_perm(AS("root"), "r", EC_PERM_READ, "a", "c"), EC_OK);
	cr_assert_eq(grant_perm(AS("root"), "r2", EC_PERM_READ, "b", "e"), EC_OK);
	cr_assert_eq(can_read("u", "a", "e"), EC_OK);
	cr_assert_eq(can_read("u", "a", "e\x01"), EC_PERMISSION_DENIED);
	/* Adjacent [g, i) + [i, k) = [g, k). */
	cr_assert_eq(grant_perm(AS("root"), "r", EC_PERM_READ, "g", "i"), EC_OK);
	cr_assert_eq(grant_perm(AS("root"), "r2", EC_PERM_READ, "i", "k"), EC_OK);
	cr_assert_eq(can_read("u", "g", "k"), EC_OK);
	cr_assert_eq(can_read("u", "h", "j"), EC_OK);
	/* A gap: [a, e) and [g, k) do not cover [d, h). */
	cr_assert_eq(can_read("u", "d", "h"), EC_PERMISSION_DENIED);
	cr_assert_eq(can_read("u", "f", NULL), EC_PERMISSION_DENIED);
	/* Filling the gap with single keys does not (e\0.. still missing)... */
	cr_assert_eq(grant_perm(AS("root"), "r", EC_PERM_READ, "e", NULL), EC_OK);
	ec_auth_info ai = info("u", 0);
	cr_assert_eq(
	        ec_auth_check_range(au, &ai, (const uint8_t *)"d", 1, (const uint8_t *)"e\0", 2),
	        EC_OK, "[a,e) + [e,e\\0) = [a,e\\0)");
	cr_assert_eq(can_read("u", "e", NULL), EC_OK);
	cr_assert_eq(can_read("u", "d", "e\x01"), EC_PERMISSION_DENIED);
	cr_assert_eq(can_read("u", "d", "h"), EC_PERMISSION_DENIED);
	/* ...a range does. */
	cr_assert_eq(grant_perm(AS("root"), "r2", EC_PERM_READ, "e", "g"), EC_OK);
	cr_assert_eq(can_read("u", "a", "k"), EC_OK);
	cr_assert_eq(can_read("u", "a", FROMKEY), EC_PERMISSION_DENIED);
	/* A contained interval changes nothing. */
	cr_assert_eq(grant_perm(AS("root"), "r", EC_PERM_READ, "b", "c"), EC_OK);
	cr_assert_eq(can_read("u", "a", "k"), EC_OK);
	/* None of it is WRITE. */
	cr_assert_eq(can_put("u", "b"), EC_PERMISSION_DENIED);
	cr_assert_eq(can_delete("u", "a", "b"), EC_PERMISSION_DENIED);
}

Test(auth, read_write_readwrite)
{
	user_u_role_r();
	cr_assert_eq(grant_perm(AS("root"), "r", EC_PERM_READ, "r", NULL), EC_OK);
	cr_assert_eq(grant_perm(AS("root"), "r", EC_PERM_WRITE, "w", NULL), EC_OK);
	cr_assert_eq(grant_perm(AS("root"), "r", EC_PERM_READWRITE, "rw", NULL), EC_OK);
	cr_assert_eq(can_read("u", "r", NULL), EC_OK);
	cr_assert_eq(can_put("u", "r"), EC_PERMISSION_DENIED);
	cr_assert_eq(can_read("u", "w", NULL), EC_PERMISSION_DENIED);
	cr_assert_eq(can_put("u", "w"), EC_OK);
	cr_assert_eq(can_delete("u", "w", NULL), EC_OK);
	cr_assert_eq(can_read("u", "rw", NULL), EC_OK);
	cr_assert_eq(can_put("u", "rw"), EC_OK);
	/* READ + WRITE on the same key in two grants: both work. */
	cr_assert_eq(grant_perm(AS("root"), "r", EC_PERM_WRITE, "r", "r\x01"), EC_OK);
	cr_assert_eq(can_put("u", "r"), EC_OK);
	/* Replacing READWRITE by READ takes WRITE away. */
	cr_assert_eq(grant_perm(AS("root"), "r", EC_PERM_READ, "rw", NULL), EC_OK);
	cr_assert_eq(can_put("u", "rw"), EC_PERMISSION_DENIED);
	cr_assert_eq(can_read("u", "rw", NULL), EC_OK);
}

Test(auth, odd_ranges)
{
	user_u_role_r();
	cr_assert_eq(grant_perm(AS("root"), "r", EC_PERM_READ, "b", "d"), EC_OK);
	/* An empty key is +infinity for etcd's intervals: never covered. */
	ec_auth_info ai = info("u", 0);
	cr_assert_eq(ec_auth_check_range(au, &ai, (const uint8_t *)"", 0, NULL, 0),
	             EC_PERMISSION_DENIED);
	/* A range ending at or before its key is checked as its key. */
	cr_assert_eq(can_read("u", "c", "a"), EC_OK);
	cr_assert_eq(can_read("u", "c", "c"), EC_OK);
	cr_assert_eq(can_read("u", "e", "a"), EC_PERMISSION_DENIED);
	/* A permission with an empty key or an inverted range covers nothing. */
	cr_assert_eq(grant_perm(AS("root"), "r", EC_PERM_READ, "y", "x"), EC_OK);
	cr_assert_eq(can_read("u", "x", NULL), EC_PERMISSION_DENIED);
	cr_assert_eq(can_read("u", "y", NULL), EC_PERMISSION_DENIED);
	/* An unknown permission type grants nothing. */
	cr_assert_eq(grant_perm(AS("root"), "r", 7, "q", NULL), EC_OK);
	cr_assert_eq(can_read("u", "q", NULL), EC_PERMISSION_DENIED);
	cr_assert_eq(can_put("u", "q"), EC_PERMISSION_DENIED);
}

Test(auth, revoked_permission_stops_working)
{
	user_u_role_r();
	cr_assert_eq(grant_perm(AS("root"), "r", EC_PERM_READWRITE, "a", "z"), EC_OK);
	cr_assert_eq(can_put("u", "m"), EC_OK);
	cr_assert_eq(revoke_perm(AS("root"), "r", "a", "z"), EC_OK);
	cr_assert_eq(can_put("u", "m"), EC_PERMISSION_DENIED);
	cr_assert_eq(grant_perm(AS("root"), "r", EC_PERM_READWRITE, "a", "z"), EC_OK);
	cr_assert_eq(can_put("u", "m"), EC_OK);
	cr_assert_eq(revoke_role(AS("root"), "u", "r"), EC_OK);
	cr_assert_eq(can_put("u", "m"), EC_PERMISSION_DENIED);
	cr_assert_eq(grant_role(AS("root"), "u", "root"), EC_OK);
	cr_assert_eq(can_put("u", "m"), EC_OK, "root role now");
}

/* ---- apply-time checks of KV and lease writes --------------------------------------- */

static int check_write(const char *user, int kase, void *msg, ec_auth_lease_keys_fn fn, void *arg)
{
	Metastore__InternalRequest r = METASTORE__INTERNAL_REQUEST__INIT;
	Metastore__RequestAuth ra = METASTORE__REQUEST_AUTH__INIT;
	if (user != NULL) {
		ra.username = (char *)user;
		ra.auth_revision = ec_auth_revision(au);
		r.auth = &ra;
	}
	set_case(&r, kase, msg);
	return ec_auth_check_write(au, &r, fn, arg);
}

/* A fake lessor: lease 5 holds keys "w1" and "w2", lease 6 "w1" and "secret";
 * lease 99 fails like a storage error. */
static int lease_calls;
static int fake_lease_keys(void *arg, int64_t id, ec_auth_key_visit fn, void *fn_arg)
{
	(void)arg;
	lease_calls++;
	static const char *const k5[] = {"w1", "w2"}, *const k6[] = {"w1", "secret"};
	const char *const *keys = id == 5 ? k5 : id == 6 ? k6 : NULL;
	if (id == 99)
		return ST_EIO;
	for (size_t i = 0; keys && i < 2; i++) {
		int rc = fn(fn_arg, (const uint8_t *)keys[i], strlen(keys[i]));
		if (rc != 0)
			return rc;
	}
	return 0;
}

Test(auth, check_write_put_and_delete)
{
	user_u_role_r();
	cr_assert_eq(grant_perm(AS("root"), "r", EC_PERM_WRITE, "w", "x"), EC_OK);
	cr_assert_eq(grant_perm(AS("root"), "r", EC_PERM_READWRITE, "rw", "rx"), EC_OK);
	Etcdserverpb__PutRequest p = ETCDSERVERPB__PUT_REQUEST__INIT;
	p.key = bin("w1");
	cr_assert_eq(check_write("u", C(PUT), &p, NULL, NULL), EC_OK);
	cr_assert_eq(check_write(NULL, C(PUT), &p, NULL, NULL), EC_USER_EMPTY);
	p.prev_kv = true;
	cr_assert_eq(check_write("u", C(PUT), &p, NULL, NULL), EC_PERMISSION_DENIED,
	             "prev_kv needs read");
	p.key = bin("rw1");
	cr_assert_eq(check_write("u", C(PUT), &p, NULL, NULL), EC_OK);
	p.key = bin("a");
	p.prev_kv = false;
	cr_assert_eq(check_write("u", C(PUT), &p, NULL, NULL), EC_PERMISSION_DENIED);

	Etcdserverpb__DeleteRangeRequest d = ETCDSERVERPB__DELETE_RANGE_REQUEST__INIT;
	d.key = bin("w");
	d.range_end = bin("x");
	cr_assert_eq(check_write("u", C(DELETE_RANGE), &d, NULL, NULL), EC_OK);
	d.prev_kv = true;
	cr_assert_eq(check_write("u", C(DELETE_RANGE), &d, NULL, NULL), EC_PERMISSION_DENIED);
	d.key = bin("rw");
	d.range_end = bin("rx");
	cr_assert_eq(check_write("u", C(DELETE_RANGE), &d, NULL, NULL), EC_OK);
	d.range_end = bin(FROMKEY);
	cr_assert_eq(check_write("u", C(DELETE_RANGE), &d, NULL, NULL), EC_PERMISSION_DENIED);
}

Test(auth, check_write_leases)
{
	user_u_role_r();
	cr_assert_eq(grant_perm(AS("root"), "r", EC_PERM_WRITE, "w", "x"), EC_OK);
	Etcdserverpb__LeaseRevokeRequest lr = ETCDSERVERPB__LEASE_REVOKE_REQUEST__INIT;
	lr.id = 5;
	lease_calls = 0;
	cr_assert_eq(check_write("u", C(LEASE_REVOKE), &lr, fake_lease_keys, NULL), EC_OK);
	cr_assert_eq(lease_calls, 1);
	lr.id = 6;
	cr_assert_eq(check_write("u", C(LEASE_REVOKE), &lr, fake_lease_keys, NULL),
	             EC_PERMISSION_DENIED, "\"secret\" is not writable");
	cr_assert_eq(check_write("root", C(LEASE_REVOKE), &lr, fake_lease_keys, NULL), EC_OK);
	lr.id = 7; /* no keys */
	cr_assert_eq(check_write("u", C(LEASE_REVOKE), &lr, fake_lease_keys, NULL), EC_OK);
	lr.id = 99;
	cr_assert_eq(check_write("u", C(LEASE_REVOKE), &lr, fake_lease_keys, NULL), EC_INTERNAL);
	lr.id = 6;
	cr_assert_eq(check_write("u", C(LEASE_REVOKE), &lr, NULL, NULL), EC_OK, "no keys known");
	/* A put attaching lease 6 needs write on its keys too (checkLeasePuts). */
	Etcdserverpb__PutRequest p = ETCDSERVERPB__PUT_REQUEST__INIT;
	p.key = bin("w9");
	p.lease = 6;
	cr_assert_eq(check_write("u", C(PUT), &p, fake_lease_keys, NULL), EC_PERMISSION_DENIED);
	p.lease = 5;
	cr_assert_eq(check_write("u", C(PUT), &p, fake_lease_keys, NULL), EC_OK);
	/* Lease grants and unknown cases pass. */
	Etcdserverpb__LeaseGrantRequest lg = ETCDSERVERPB__LEASE_GRANT_REQUEST__INIT;
	cr_assert_eq(check_write("u", C(LEASE_GRANT), &lg, fake_lease_keys, NULL), EC_OK);
	/* Disabled: the lessor is not even asked. */
	cr_assert_eq(disable(AS("root")), EC_OK);
	lease_calls = 0;
	cr_assert_eq(check_write("u", C(LEASE_REVOKE), &lr, fake_lease_keys, NULL), EC_OK);
	cr_assert_eq(lease_calls, 0);
}

Test(auth, check_write_compaction_needs_nothing)
{
	/* etcd's authApplierV3 does not check Compaction: any sender may. */
	user_u_role_r();
	Etcdserverpb__CompactionRequest c = ETCDSERVERPB__COMPACTION_REQUEST__INIT;
	c.revision = 3;
	cr_assert_eq(check_write("u", C(COMPACTION), &c, NULL, NULL), EC_OK);
	cr_assert_eq(check_write(NULL, C(COMPACTION), &c, NULL, NULL), EC_OK);
	cr_assert_eq(check_write("ghost", C(COMPACTION), &c, NULL, NULL), EC_OK);
	cr_assert_eq(check_write("root", C(COMPACTION), &c, NULL, NULL), EC_OK);
}

static Etcdserverpb__RequestOp op_range(Etcdserverpb__RangeRequest *q)
{
	Etcdserverpb__RequestOp o = ETCDSERVERPB__REQUEST_OP__INIT;
	o.request_case = ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_RANGE;
	o.request_range = q;
	return o;
}

static Etcdserverpb__RequestOp op_put(Etcdserverpb__PutRequest *p)
{
	Etcdserverpb__RequestOp o = ETCDSERVERPB__REQUEST_OP__INIT;
	o.request_case = ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_PUT;
	o.request_put = p;
	return o;
}

static Etcdserverpb__RequestOp op_del(Etcdserverpb__DeleteRangeRequest *d)
{
	Etcdserverpb__RequestOp o = ETCDSERVERPB__REQUEST_OP__INIT;
	o.request_case = ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_DELETE_RANGE;
	o.request_delete_range = d;
	return o;
}

static Etcdserverpb__RequestOp op_txn(Etcdserverpb__TxnRequest *t)
{
	Etcdserverpb__RequestOp o = ETCDSERVERPB__REQUEST_OP__INIT;
	o.request_case = ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_TXN;
	o.request_txn = t;
	return o;
}

Test(auth, check_txn_compares_branches_and_nesting)
{
	user_u_role_r();
	cr_assert_eq(grant_perm(AS("root"), "r", EC_PERM_READ, "r", "s"), EC_OK);
	cr_assert_eq(grant_perm(AS("root"), "r", EC_PERM_WRITE, "w", "x"), EC_OK);
	ec_auth_info ai = info("u", 0);

	Etcdserverpb__Compare cmp = ETCDSERVERPB__COMPARE__INIT;
	cmp.key = bin("r1");
	Etcdserverpb__Compare *cmps[] = {&cmp};
	Etcdserverpb__RangeRequest q = ETCDSERVERPB__RANGE_REQUEST__INIT;
	q.key = bin("r2");
	Etcdserverpb__PutRequest p = ETCDSERVERPB__PUT_REQUEST__INIT;
	p.key = bin("w1");
	Etcdserverpb__DeleteRangeRequest d = ETCDSERVERPB__DELETE_RANGE_REQUEST__INIT;
	d.key = bin("w2");
	Etcdserverpb__RequestOp o_q = op_range(&q), o_p = op_put(&p), o_d = op_del(&d);
	Etcdserverpb__RequestOp *succ[] = {&o_q, &o_p};
	Etcdserverpb__RequestOp *fail[] = {&o_d};
	Etcdserverpb__TxnRequest t = ETCDSERVERPB__TXN_REQUEST__INIT;
	t.compare = cmps;
	t.n_compare = 1;
	t.success = succ;
	t.n_success = 2;
	t.failure = fail;
	t.n_failure = 1;
	cr_assert_eq(ec_auth_check_txn(au, &ai, &t), EC_OK);
	cr_assert_eq(check_write("u", C(TXN), &t, NULL, NULL), EC_OK);

	cmp.key = bin("w1"); /* compares read */
	cr_assert_eq(ec_auth_check_txn(au, &ai, &t), EC_PERMISSION_DENIED);
	cmp.key = bin("r1");
	cmp.range_end = bin("s");
	cr_assert_eq(ec_auth_check_txn(au, &ai, &t), EC_OK, "compare over [r1, s)");
	cmp.range_end = bin("t");
	cr_assert_eq(ec_auth_check_txn(au, &ai, &t), EC_PERMISSION_DENIED);
	cmp.range_end = bin(NULL);

	q.key = bin("w3"); /* a range op needs read */
	cr_assert_eq(check_write("u", C(TXN), &t, NULL, NULL), EC_PERMISSION_DENIED);
	q.key = bin("r2");

	p.key = bin("r3"); /* a put needs write */
	cr_assert_eq(check_write("u", C(TXN), &t, NULL, NULL), EC_PERMISSION_DENIED);
	p.key = bin("w1");

	d.prev_kv = true; /* failure branch, delete with prev_kv needs read too */
	cr_assert_eq(check_write("u", C(TXN), &t, NULL, NULL), EC_PERMISSION_DENIED);
	d.prev_kv = false;
	d.key = bin("r9");
	cr_assert_eq(check_write("u", C(TXN), &t, NULL, NULL), EC_PERMISSION_DENIED);
	d.key = bin("w2");
	cr_assert_eq(check_write("u", C(TXN), &t, NULL, NULL), EC_OK);

	/* A nested txn is checked too (etcd 3.4 skips it; 3.5 does not). */
	Etcdserverpb__PutRequest p2 = ETCDSERVERPB__PUT_REQUEST__INIT;
	p2.key = bin("secret");
	Etcdserverpb__RequestOp o_p2 = op_put(&p2);
	Etcdserverpb__RequestOp *inner_ops[] = {&o_p2};
	Etcdserverpb__TxnRequest inner = ETCDSERVERPB__TXN_REQUEST__INIT;
	inner.failure = inner_ops;
	inner.n_failure = 1;
	Etcdserverpb__RequestOp o_in = op_txn(&inner);
	Etcdserverpb__RequestOp *fail2[] = {&o_d, &o_in};
	t.failure = fail2;
	t.n_failure = 2;
	cr_assert_eq(check_write("u", C(TXN), &t, NULL, NULL), EC_PERMISSION_DENIED);
	cr_assert_eq(ec_auth_check_txn(au, &ai, &t), EC_PERMISSION_DENIED);
	p2.key = bin("w5");
	cr_assert_eq(check_write("u", C(TXN), &t, NULL, NULL), EC_OK);
	/* An empty op is skipped. */
	Etcdserverpb__RequestOp empty = ETCDSERVERPB__REQUEST_OP__INIT;
	Etcdserverpb__RequestOp *fail3[] = {&empty};
	t.failure = fail3;
	t.n_failure = 1;
	cr_assert_eq(check_write("u", C(TXN), &t, NULL, NULL), EC_OK);
	cr_assert_eq(check_write("root", C(TXN), &t, NULL, NULL), EC_OK);
	cr_assert_eq(check_write(NULL, C(TXN), &t, NULL, NULL), EC_USER_EMPTY);
}

/* ---- local reads -------------------------------------------------------------------- */

Test(auth, reads_and_their_permissions)
{
	user_u_role_r();
	cr_assert_eq(user_add(AS("root"), "bob", false), EC_OK);
	cr_assert_eq(user_add(AS("root"), "alice", false), EC_OK);
	cr_assert_eq(role_add(AS("root"), "other"), EC_OK);
	cr_assert_eq(role_add(AS("root"), "a-role"), EC_OK);
	ec_auth_info u = info("u", 0), root = info("root", 0), none = info("", 0);

	Etcdserverpb__AuthUserListResponse *ul = NULL;
	cr_assert_eq(ec_auth_user_list(au, &u, &HDR, KVREV, &ul), EC_PERMISSION_DENIED);
	cr_assert_null(ul);
	cr_assert_eq(ec_auth_user_list(au, &none, &HDR, KVREV, &ul), EC_USER_EMPTY);
	cr_assert_eq(ec_auth_user_list(au, &root, &HDR, KVREV, &ul), EC_OK);
	cr_assert_eq(ul->n_users, 4);
	cr_assert_str_eq(ul->users[0], "alice");
	cr_assert_str_eq(ul->users[1], "bob");
	cr_assert_str_eq(ul->users[2], "root");
	cr_assert_str_eq(ul->users[3], "u");
	cr_assert_eq(ul->header->revision, KVREV);
	cr_assert_eq(ul->header->cluster_id, HDR.cluster_id);
	ec_msg_free(ul);

	Etcdserverpb__AuthRoleListResponse *rl = NULL;
	cr_assert_eq(ec_auth_role_list(au, &u, &HDR, KVREV, &rl), EC_PERMISSION_DENIED);
	cr_assert_eq(ec_auth_role_list(au, &root, &HDR, KVREV, &rl), EC_OK);
	cr_assert_eq(rl->n_roles, 3, "role root was never added");
	cr_assert_str_eq(rl->roles[0], "a-role");
	cr_assert_str_eq(rl->roles[1], "other");
	cr_assert_str_eq(rl->roles[2], "r");
	ec_msg_free(rl);

	/* UserGet: own user allowed, another refused with the admin error. */
	Etcdserverpb__AuthUserGetRequest ug = ETCDSERVERPB__AUTH_USER_GET_REQUEST__INIT;
	Etcdserverpb__AuthUserGetResponse *g = NULL;
	ug.name = (char *)"u";
	cr_assert_eq(ec_auth_user_get(au, &u, &ug, &HDR, KVREV, &g), EC_OK);
	cr_assert_eq(g->n_roles, 1);
	cr_assert_str_eq(g->roles[0], "r");
	ec_msg_free(g);
	ug.name = (char *)"bob";
	cr_assert_eq(ec_auth_user_get(au, &u, &ug, &HDR, KVREV, &g), EC_PERMISSION_DENIED);
	cr_assert_null(g);
	cr_assert_eq(ec_auth_user_get(au, &root, &ug, &HDR, KVREV, &g), EC_OK);
	cr_assert_eq(g->n_roles, 0);
	ec_msg_free(g);
	ug.name = (char *)"nobody";
	cr_assert_eq(ec_auth_user_get(au, &root, &ug, &HDR, KVREV, &g), EC_USER_NOT_FOUND);
	cr_assert_null(g);

	/* RoleGet: a role the caller holds is allowed. */
	Etcdserverpb__AuthRoleGetRequest rg = ETCDSERVERPB__AUTH_ROLE_GET_REQUEST__INIT;
	Etcdserverpb__AuthRoleGetResponse *rr = NULL;
	cr_assert_eq(grant_perm(AS("root"), "r", EC_PERM_READWRITE, "k", "l"), EC_OK);
	u = info("u", 0);
	rg.role = (char *)"r";
	cr_assert_eq(ec_auth_role_get(au, &u, &rg, &HDR, KVREV, &rr), EC_OK);
	cr_assert_eq(rr->n_perm, 1);
	cr_assert_eq(rr->perm[0]->permtype, EC_PERM_READWRITE);
	cr_assert_eq(rr->perm[0]->key.len, 1);
	cr_assert_eq(rr->perm[0]->key.data[0], 'k');
	cr_assert_eq(rr->perm[0]->range_end.data[0], 'l');
	ec_msg_free(rr);
	rg.role = (char *)"other";
	cr_assert_eq(ec_auth_role_get(au, &u, &rg, &HDR, KVREV, &rr), EC_PERMISSION_DENIED);
	cr_assert_null(rr);
	rg.role = (char *)"nope";
	cr_assert_eq(ec_auth_role_get(au, &root, &rg, &HDR, KVREV, &rr), EC_ROLE_NOT_FOUND);
	/* Disabled: nobody needs anything. */
	cr_assert_eq(disable(AS("root")), EC_OK);
	cr_assert_eq(ec_auth_user_list(au, &none, &HDR, KVREV, &ul), EC_OK);
	ec_msg_free(ul);
	rg.role = (char *)"other";
	cr_assert_eq(ec_auth_role_get(au, NULL, &rg, &HDR, KVREV, &rr), EC_OK);
	ec_msg_free(rr);
	Etcdserverpb__AuthStatusResponse *s = NULL;
	cr_assert_eq(ec_auth_status(au, &HDR, KVREV, &s), EC_OK);
	cr_assert_eq(s->authrevision, ec_auth_revision(au));
	cr_assert_not(s->enabled);
	ec_msg_free(s);
}

/* ---- passwords ------------------------------------------------------------------------ */

Test(auth, bcrypt_hash_and_check)
{
	char h[128];
	cr_assert_eq(ec_auth_hash_password("secret", 4, h, sizeof(h)), EC_OK);
	cr_assert_eq(strlen(h), 60);
	cr_assert_eq(strncmp(h, "$2b$04$", 7), 0, "%s", h);
	char h2[128];
	cr_assert_eq(ec_auth_hash_password("secret", 4, h2, sizeof(h2)), EC_OK);
	cr_assert_str_neq(h, h2, "a fresh salt every time");
	cr_assert_eq(ec_auth_hash_password("secret", 3, h, sizeof(h)), EC_BAD_REQUEST);
	cr_assert_eq(ec_auth_hash_password("secret", 32, h, sizeof(h)), EC_BAD_REQUEST);
	cr_assert_eq(ec_auth_hash_password("secret", 4, h, 63), EC_BAD_REQUEST);

	/* Through the store: add root with that hash, enable, check. */
	char hs[128];
	cr_assert_eq(ec_auth_hash_password("s3cr3t", 4, hs, sizeof(hs)), EC_OK);
	Etcdserverpb__AuthUserAddRequest r = ETCDSERVERPB__AUTH_USER_ADD_REQUEST__INIT;
	r.name = (char *)"root";
	r.hashedpassword = hs;
	cr_assert_eq(apply(NOBODY, C(USER_ADD), &r), EC_OK);
	cr_assert_eq(ec_auth_check_password(au, "root", "s3cr3t", NULL), EC_AUTH_NOT_ENABLED);
	cr_assert_eq(grant_role(NOBODY, "root", "root"), EC_OK);
	cr_assert_eq(enable(NOBODY), EC_OK);
	uint64_t rev = 0;
	cr_assert_eq(ec_auth_check_password(au, "root", "s3cr3t", &rev), EC_OK);
	cr_assert_eq(rev, 3);
	cr_assert_eq(ec_auth_check_password(au, "root", "s3cr3T", NULL), EC_AUTH_FAILED);
	cr_assert_eq(ec_auth_check_password(au, "root", "", NULL), EC_AUTH_FAILED);
	cr_assert_eq(ec_auth_check_password(au, "root", NULL, NULL), EC_AUTH_FAILED);
	cr_assert_eq(ec_auth_check_password(au, "ghost", "s3cr3t", NULL), EC_AUTH_FAILED);
	cr_assert_eq(ec_auth_check_password(au, NULL, "s3cr3t", NULL), EC_AUTH_FAILED);
}

/* Add @name with stored hash @hash (bypassing ec_auth_hash_password). */
static void add_with_hash(const char *name, const char *hash)
{
	Etcdserverpb__AuthUserAddRequest r = ETCDSERVERPB__AUTH_USER_ADD_REQUEST__INIT;
	r.name = (char *)name;
	r.hashedpassword = (char *)hash;
	cr_assert_eq(apply(AS("root"), C(USER_ADD), &r), EC_OK);
}

Test(auth, bcrypt_accepts_go_hashes)
{
	root_enabled();
	/* golang.org/x/crypto/bcrypt's own test vector (cost 10, $2a$). */
	add_with_hash("go10", "$2a$10$XajjQvNhvvRt5GSeFk1xFeyqRrsxkhBkUiQeg0dt.wU1qD4aFDcga");
	cr_assert_eq(ec_auth_check_password(au, "go10", "allmine", NULL), EC_OK);
	cr_assert_eq(ec_auth_check_password(au, "go10", "allmine!", NULL), EC_AUTH_FAILED);
	/* Hashes made by Go's GenerateFromPassword at cost 4 for 8-bit passwords. */
	add_with_hash("g1", "$2a$04$1Q963NJWzjoVMUCl7mcddurh9crPXuJKw4MgC0N9Rgzfs7Mkl3GS.");
	cr_assert_eq(ec_auth_check_password(au, "g1",
	                                    "\xff\xa3"
	                                    "345",
	                                    NULL),
	             EC_OK);
	add_with_hash("g2", "$2a$04$9Ccny4TNGal9G/IxY.c5fe3XcWfTn3vxmJW3vOVgtXw7RXRjDcuaO");
	cr_assert_eq(ec_auth_check_password(au, "g2", "\xa3", NULL), EC_OK);
	add_with_hash("g3", "$2a$04$Dz78/HjEuaUAY4IVbHfNoebqudI/9j4tT1p/9anz/eoSC6JWdAX4i");
	cr_assert_eq(
	        ec_auth_check_password(au, "g3", "p\xc3\xa4ssw\xc3\xb6rd\xff\xff\xff\xff", NULL),
	        EC_OK);
	cr_assert_eq(ec_auth_check_password(au, "g3", "p\xc3\xa4ssw\xc3\xb6rd", NULL),
	             EC_AUTH_FAILED);
	/* A password for which libxcrypt's own $2a$ (with crypt_blowfish's
	 * countermeasure) differs from Go's: it must still be accepted. */
	add_with_hash("g4", "$2a$04$2WbYt7fcj8dvgMKOIX0NYONfD6igMWGDJSZ6Ia4EdNHGEmzAQW9Le");
	cr_assert_eq(ec_auth_check_password(au, "g4", "\xff\xff\xa3", NULL), EC_OK);
	/* $2y$ and $2b$ spellings of one hash are all accepted. */
	char h[128];
	cr_assert_eq(ec_auth_hash_password("x", 4, h, sizeof(h)), EC_OK);
	h[2] = 'y';
	add_with_hash("y", h);
	cr_assert_eq(ec_auth_check_password(au, "y", "x", NULL), EC_OK);
	h[2] = 'a';
	add_with_hash("a", h);
	cr_assert_eq(ec_auth_check_password(au, "a", "x", NULL), EC_OK);
	/* Garbage hashes never match. */
	add_with_hash("bad1", "not a hash");
	cr_assert_eq(ec_auth_check_password(au, "bad1", "not a hash", NULL), EC_AUTH_FAILED);
	add_with_hash("bad2", "$1$abcdefgh$abcdefghijklmnopqrstuv");
	cr_assert_eq(ec_auth_check_password(au, "bad2", "", NULL), EC_AUTH_FAILED);
	h[2] = 'q';
	add_with_hash("bad3", h);
	cr_assert_eq(ec_auth_check_password(au, "bad3", "x", NULL), EC_AUTH_FAILED);
}

Test(auth, bcrypt_cost_10)
{
	char h[128];
	cr_assert_eq(ec_auth_hash_password("ten", EC_AUTH_BCRYPT_DEFAULT_COST, h, sizeof(h)),
	             EC_OK);
	cr_assert_eq(strncmp(h, "$2b$10$", 7), 0, "%s", h);
	root_enabled();
	add_with_hash("t", h);
	cr_assert_eq(ec_auth_check_password(au, "t", "ten", NULL), EC_OK);
}

/* ---- persistence ------------------------------------------------------------------------ */

/* A store with some of everything. */
static void populate(void)
{
	user_u_role_r();
	cr_assert_eq(user_add(AS("root"), "np", true), EC_OK);
	cr_assert_eq(role_add(AS("root"), "s"), EC_OK);
	cr_assert_eq(grant_role(AS("root"), "u", "s"), EC_OK);
	cr_assert_eq(grant_perm(AS("root"), "r", EC_PERM_READ, "a", "c"), EC_OK);
	cr_assert_eq(grant_perm(AS("root"), "s", EC_PERM_WRITE, "w", FROMKEY), EC_OK);
}

static void assert_populated(void)
{
	cr_assert(ec_auth_enabled(au));
	cr_assert_eq(ec_auth_revision(au), 11);
	cr_assert(ec_auth_user_exists(au, "u"));
	cr_assert(ec_auth_user_exists(au, "np"));
	char roles[64], perms[64];
	cr_assert_eq(roles_of("u", roles, sizeof(roles)), EC_OK);
	cr_assert_str_eq(roles, "r,s");
	cr_assert_eq(perms_of("r", perms, sizeof(perms)), EC_OK);
	cr_assert_str_eq(perms, "R:a-c");
	cr_assert_eq(perms_of("s", perms, sizeof(perms)), EC_OK);
	cr_assert_str_eq(perms, "W:w-\\0");
	cr_assert_eq(can_read("u", "b", NULL), EC_OK);
	cr_assert_eq(can_put("u", "zz"), EC_OK);
	cr_assert_eq(can_put("u", "b"), EC_PERMISSION_DENIED);
	cr_assert_eq(ec_auth_check_password(au, "u", "pw", NULL), EC_OK);
	cr_assert_eq(ec_auth_check_password(au, "np", "", NULL), EC_NO_PASSWORD_USER);
}

Test(auth, persists_across_reopen)
{
	populate();
	assert_populated();
	reopen();
	assert_populated();
	/* And keeps working after more changes. */
	cr_assert_eq(disable(AS("root")), EC_OK);
	reopen();
	cr_assert_not(ec_auth_enabled(au));
	cr_assert_eq(ec_auth_revision(au), 12);
}

Test(auth, stored_record_is_an_auth_state)
{
	populate();
	void *v = NULL;
	size_t len = 0;
	cr_assert_eq(st_rmeta_get(db, "auth", &v, &len), ST_OK);
	Metastore__AuthState *s = metastore__auth_state__unpack(NULL, len, v);
	free(v);
	cr_assert_not_null(s);
	cr_assert_eq(s->format, 1);
	cr_assert(s->enabled);
	cr_assert_eq(s->revision, 11);
	cr_assert_eq(s->n_users, 3);
	const char *want[] = {"np", "root", "u"};
	for (size_t i = 0; i < 3; i++) {
		cr_assert_eq(s->users[i]->name.len, strlen(want[i]));
		cr_assert_eq(memcmp(s->users[i]->name.data, want[i], strlen(want[i])), 0);
	}
	cr_assert_eq(s->users[0]->password.len, 0, "no-password user has no hash");
	cr_assert_eq(s->users[2]->password.len, 60);
	cr_assert_eq(memcmp(s->users[2]->password.data, hash_pw, 60), 0, "the hash, never \"pw\"");
	cr_assert(s->users[0]->options && s->users[0]->options->no_password);
	cr_assert_eq(s->n_roles, 2);
	metastore__auth_state__free_unpacked(s, NULL);
}

Test(auth, aborted_group_then_reload)
{
	populate();
	cr_assert_eq(st_apply_begin(db), ST_OK);
	Etcdserverpb__AuthUserDeleteRequest d = ETCDSERVERPB__AUTH_USER_DELETE_REQUEST__INIT;
	d.name = (char *)"u";
	Metastore__InternalRequest r = METASTORE__INTERNAL_REQUEST__INIT;
	Metastore__RequestAuth ra = METASTORE__REQUEST_AUTH__INIT;
	ra.username = (char *)"root";
	r.auth = &ra;
	set_case(&r, C(USER_DELETE), &d);
	ProtobufCMessage *resp = NULL;
	int err = -1;
	cr_assert_eq(ec_auth_apply(au, &r, &HDR, KVREV, &resp, &err), ST_OK);
	cr_assert_eq(err, EC_OK);
	ec_msg_free(resp);
	/* Later entries of the same group see the change at once. */
	cr_assert_not(ec_auth_user_exists(au, "u"));
	cr_assert_eq(ec_auth_revision(au), 12);
	st_apply_abort(db);
	n_gone = n_changed = 0;
	cr_assert_eq(ec_auth_reload(au), ST_OK);
	assert_populated();
	cr_assert_eq(n_changed, 1, "reload noticed the revision moving back");
	reopen();
	assert_populated();
}

Test(auth, reload_sees_another_writer_and_calls_hooks)
{
	populate();
	/* A second handle on the same db plays the part of a snapshot install. */
	ec_auth *other = NULL;
	cr_assert_eq(ec_auth_open(db, NULL, &other), ST_OK);
	ec_auth *mine = au;
	au = other;
	cr_assert_eq(user_del(AS("root"), "u"), EC_OK);
	cr_assert_eq(user_passwd(AS("root"), "np", hash_pw), EC_OK);
	cr_assert_eq(disable(AS("root")), EC_OK);
	au = mine;
	cr_assert(ec_auth_user_exists(au, "u"), "not reloaded yet");
	n_gone = n_disabled = n_changed = 0;
	cr_assert_eq(ec_auth_reload(au), ST_OK);
	cr_assert_not(ec_auth_user_exists(au, "u"));
	cr_assert_not(ec_auth_enabled(au));
	cr_assert_eq(ec_auth_revision(au), 14);
	cr_assert_eq(n_gone, 2, "u deleted, np's password changed");
	cr_assert_eq(n_disabled, 1);
	cr_assert_eq(n_changed, 1);
	/* Nothing changed: a reload calls no hook. */
	n_gone = n_disabled = n_changed = 0;
	cr_assert_eq(ec_auth_reload(au), ST_OK);
	cr_assert_eq(n_gone + n_disabled + n_changed, 0);
	ec_auth_close(other);
}

Test(auth, open_refuses_bad_records)
{
	close_db();
	st_options o = {.create_if_missing = true};
	char err[256];
	cr_assert_eq(st_db_open(dir, &o, &db, err, sizeof(err)), ST_OK, "%s", err);
	Metastore__AuthState s = METASTORE__AUTH_STATE__INIT;
	s.format = 2;
	uint8_t buf[16];
	size_t n = metastore__auth_state__pack(&s, buf);
	cr_assert_eq(st_rmeta_put(db, "auth", buf, n), ST_OK);
	cr_assert_eq(ec_auth_open(db, NULL, &au), ST_EFORMAT);
	cr_assert_eq(st_rmeta_put(db, "auth", "\xff\xff\xff", 3), ST_OK);
	cr_assert_eq(ec_auth_open(db, NULL, &au), ST_ECORRUPT);
	au = NULL;
	/* A good record again: it opens. */
	s.format = 1;
	s.revision = 9;
	n = metastore__auth_state__pack(&s, buf);
	cr_assert_eq(st_rmeta_put(db, "auth", buf, n), ST_OK);
	cr_assert_eq(ec_auth_open(db, NULL, &au), ST_OK);
	cr_assert_eq(ec_auth_revision(au), 9);
}

/* ---- readers racing the node thread ------------------------------------------------- */

static atomic_bool stop;
static atomic_long reads;

static void *reader(void *arg)
{
	(void)arg;
	while (!atomic_load(&stop)) {
		ec_auth_info ai;
		memset(&ai, 0, sizeof(ai));
		strcpy(ai.user, "u");
		ai.revision = UINT64_MAX;
		int e = ec_auth_check_range(au, &ai, (const uint8_t *)"k", 1, NULL, 0);
		if (e != EC_OK && e != EC_PERMISSION_DENIED)
			return (void *)1;
		(void)ec_auth_check_password(au, "u", "wrong", NULL);
		atomic_fetch_add(&reads, 1);
	}
	return NULL;
}

Test(auth, readers_race_applies)
{
	user_u_role_r();
	atomic_store(&stop, false);
	atomic_store(&reads, 0);
	pthread_t th[2];
	for (int i = 0; i < 2; i++)
		cr_assert_eq(pthread_create(&th[i], NULL, reader, NULL), 0);
	for (int i = 0; i < 40 || (atomic_load(&reads) < 20 && i < 100000); i++) {
		cr_assert_eq(grant_perm(AS("root"), "r", EC_PERM_READ, "k", NULL), EC_OK);
		cr_assert_eq(revoke_perm(AS("root"), "r", "k", NULL), EC_OK);
	}
	atomic_store(&stop, true);
	for (int i = 0; i < 2; i++) {
		void *rv = NULL;
		pthread_join(th[i], &rv);
		cr_assert_null(rv, "a reader saw an impossible answer");
	}
	cr_assert_gt(atomic_load(&reads), 0);
	cr_assert_eq(can_read("u", "k", NULL), EC_PERMISSION_DENIED);
}
