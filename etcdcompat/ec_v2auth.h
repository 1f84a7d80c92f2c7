/*
 * ec_v2auth: etcd 3.4's v2 auth (etcdserver/api/v2auth) as pure logic — users,
 * roles, the enabled flag, grant/revoke merges and the key permission checks
 * that /v2/keys applies when v2 auth is on.
 *
 * The data lives where etcd keeps it, in the v2 store: "/2/users/NAME" and
 * "/2/roles/NAME" hold JSON documents ({"user","password","roles"} and
 * {"role","permissions":{"kv":{"read","write"}}}), "/2/enabled" holds "true" or
 * "false". This module never touches a store itself: the caller hands it an
 * ec_v2a_store (four callbacks over the replicated v2 store, or an in-memory
 * map in tests), so the same code runs in the server and in unit tests.
 *
 * Rules reproduced from etcd 3.4: the "root" role is built in (it reads and
 * writes every key; never stored, not creatable or deletable); a user named
 * "root" always holds it; enabling needs a root user and creates the "guest"
 * role (every key, read and write) when missing; a pattern ending in '*'
 * matches a key prefix, any other pattern only the key itself; recursive
 * requests need a '*' pattern.
 * Errors carry etcd's HTTP status and text ("auth: ..."). Passwords are stored
 * only as bcrypt hashes (ec_auth_hash_password, libxcrypt).
 */
#ifndef METASTORE_EC_V2AUTH_H
#define METASTORE_EC_V2AUTH_H

#include <stdbool.h>
#include <stddef.h>

/* The v2 store error codes this module looks at (etcd's v2error). */
#define EC_V2A_KEY_NOT_FOUND 100
#define EC_V2A_NODE_EXIST    105

/*
 * The v2 store, seen through callbacks. Each returns 0, a v2 error code
 * (EC_V2A_KEY_NOT_FOUND, EC_V2A_NODE_EXIST, another etcd errorCode), or -1 for a
 * failure of its own (timeout, no leader, out of memory; then *msg may name it,
 * a static string). Paths are store paths ("/2/users/alice").
 *   get   - the value of leaf @path into *@value (malloc'd, caller frees);
 *           @quorum: a linearizable read (etcd's QGET), else local.
 *   list  - the base names of the children of directory @path into *@names
 *           (malloc'd vector of malloc'd strings, *@n entries).
 *   set   - write leaf @path = @value, @prev_exist: -1 either way, 0 must not
 *           exist (105 if it does), 1 must exist (100 if not). Replicated.
 *   mkdir - create directory @path (105 if it exists). Replicated.
 *   del   - delete leaf @path (100 if missing). Replicated.
 */
typedef struct ec_v2a_store {
	int (*get)(void *ctx, const char *path, bool quorum, char **value, const char **msg);
	int (*list)(void *ctx, const char *path, char ***names, size_t *n, const char **msg);
	int (*set)(void *ctx, const char *path, const char *value, int prev_exist,
	           const char **msg);
	int (*mkdir)(void *ctx, const char *path, const char **msg);
	int (*del)(void *ctx, const char *path, const char **msg);
	void *ctx;
} ec_v2a_store;

/* An error for the client: HTTP status and etcd's message. status 0: none. */
typedef struct ec_v2a_err {
	int status;
	char msg[256];
} ec_v2a_err;

/* A string vector. */
typedef struct ec_v2a_strv {
	char **v;
	size_t n;
} ec_v2a_strv;

typedef struct ec_v2a_user {
	char *name;
	char *password; /* bcrypt hash when stored; clear text in a request */
	ec_v2a_strv roles;
	ec_v2a_strv grant;  /* request only */
	ec_v2a_strv revoke; /* request only */
} ec_v2a_user;

typedef struct ec_v2a_perms {
	ec_v2a_strv read, write;
} ec_v2a_perms;

typedef struct ec_v2a_role {
	char *name;
	ec_v2a_perms perms;
	bool has_grant, has_revoke; /* request only: "grant"/"revoke" present */
	ec_v2a_perms grant, revoke;
} ec_v2a_role;

void ec_v2a_strv_free(ec_v2a_strv *s);
void ec_v2a_user_free(ec_v2a_user *u);
void ec_v2a_role_free(ec_v2a_role *r);

/* ---- JSON ------------------------------------------------------------------- */

/*
 * ec_v2a_user_parse / ec_v2a_role_parse - decode a user or role document
 * (stored or from a request body, @len bytes) into *@out (zeroed first; free
 * with ec_v2a_*_free). Unknown fields are ignored, as Go's decoder does.
 * Returns 0, or -1 when @text is not a JSON object of that shape.
 */
int ec_v2a_user_parse(const char *text, size_t len, ec_v2a_user *out);
int ec_v2a_role_parse(const char *text, size_t len, ec_v2a_role *out);

/*
 * ec_v2a_user_json - @u as etcd encodes a v2auth.User: {"user","password"
 * (only when @with_password and set),"roles":[...] or null}. malloc'd, NULL
 * when out of memory.
 */
char *ec_v2a_user_json(const ec_v2a_user *u, bool with_password);

/* ec_v2a_role_json - @r as etcd encodes a v2auth.Role:
 * {"role","permissions":{"kv":{"read":[...]|null,"write":[...]|null}}}. */
char *ec_v2a_role_json(const ec_v2a_role *r);

/* ---- permission checks -------------------------------------------------------- */

/*
 * ec_v2a_match - etcd's simpleMatch: @pattern ending in '*' matches every key
 * with the prefix before it; any other pattern matches only the same key.
 * ec_v2a_prefix_match - etcd's prefixMatch (recursive requests): only a
 * pattern ending in '*' matches, by prefix. An empty pattern matches nothing.
 */
bool ec_v2a_match(const char *pattern, const char *key);
bool ec_v2a_prefix_match(const char *pattern, const char *key);

/* ec_v2a_role_allows - whether role @r lets a request read (or @write) @key,
 * @recursive as etcd's HasRecursiveAccess. The root role allows everything. */
bool ec_v2a_role_allows(const ec_v2a_role *r, const char *key, bool write, bool recursive);

/* ---- the store's operations (etcd's v2auth.Store) ---------------------------- */

typedef struct ec_v2a {
	const ec_v2a_store *st;
	int bcrypt_cost; /* 0: etcd's bcrypt.DefaultCost (10) */
} ec_v2a;

/* Every operation below fills *@err (status 0 on success) and returns 0 or -1. */

/* The names of all users (sorted) / all roles (sorted, "root" included). */
int ec_v2a_all_users(ec_v2a *a, ec_v2a_strv *out, ec_v2a_err *err);
int ec_v2a_all_roles(ec_v2a *a, ec_v2a_strv *out, ec_v2a_err *err);

/* ec_v2a_get_user - user @name (root gains the root role); 404 "User %s does not exist." */
int ec_v2a_get_user(ec_v2a *a, const char *name, bool quorum, ec_v2a_user *out, ec_v2a_err *err);
/* ec_v2a_get_role - role @name (root is built in); 404 "Role %s does not exist." */
int ec_v2a_get_role(ec_v2a *a, const char *name, bool quorum, ec_v2a_role *out, ec_v2a_err *err);

/*
 * ec_v2a_put_user - the PUT /v2/auth/users/NAME logic of etcd's forUser: @in
 * is the request (clear password). Without grant/revoke: create (with roles),
 * or create-or-update; with them: update. *@out is the resulting user (the
 * password cleared), *@created whether it was new (201).
 */
int ec_v2a_put_user(ec_v2a *a, const ec_v2a_user *in, ec_v2a_user *out, bool *created,
                    ec_v2a_err *err);
/* ec_v2a_put_role - PUT /v2/auth/roles/NAME: create when neither grant nor
 * revoke is given (201), else merge (200). */
int ec_v2a_put_role(ec_v2a *a, const ec_v2a_role *in, ec_v2a_role *out, bool *created,
                    ec_v2a_err *err);
int ec_v2a_delete_user(ec_v2a *a, const char *name, ec_v2a_err *err);
int ec_v2a_delete_role(ec_v2a *a, const char *name, ec_v2a_err *err);

/* Whether v2 auth is on ("/2/enabled" is true; a local read). */
bool ec_v2a_enabled(ec_v2a *a);
/* 409 "auth: already enabled" / "auth: No root user available, please create one". */
int ec_v2a_enable(ec_v2a *a, ec_v2a_err *err);
/* 409 "auth: already disabled". */
int ec_v2a_disable(ec_v2a *a, ec_v2a_err *err);

/*
 * ec_v2a_check_password - whether @password matches user @u's bcrypt hash
 * (constant-time compare; ec_auth_hash_matches).
 */
bool ec_v2a_check_password(const ec_v2a_user *u, const char *password);

/*
 * ec_v2a_user_allows - etcd's hasKeyPrefixAccess for a known user: any of
 * @u's roles (missing roles skipped) lets the request at @key through.
 * ec_v2a_guest_allows - the same for a request without credentials: the guest
 * role, if it exists (non-recursive match, as etcd).
 */
bool ec_v2a_user_allows(ec_v2a *a, const ec_v2a_user *u, const char *key, bool write,
                        bool recursive);
bool ec_v2a_guest_allows(ec_v2a *a, const char *key, bool write);

/*
 * Response bodies of the GET endpoints, malloc'd (NULL with *@err set):
 * ec_v2a_users_list_json - {"users":[{"user","roles":[role objects]}]} (null
 *     when there are none; a user's missing roles skipped, "roles" omitted when
 *     empty), as etcd 3.4's GET /v2/auth/users;
 * ec_v2a_user_get_json - one such object for user @name (a missing role is an
 *     error, as etcd's GET /v2/auth/users/NAME);
 * ec_v2a_roles_list_json - {"roles":[role objects]} including root.
 */
char *ec_v2a_users_list_json(ec_v2a *a, ec_v2a_err *err);
char *ec_v2a_user_get_json(ec_v2a *a, const char *name, ec_v2a_err *err);
char *ec_v2a_roles_list_json(ec_v2a *a, ec_v2a_err *err);

/* ec_v2a_has_root - whether @u holds the root role. */
bool ec_v2a_has_root(const ec_v2a_user *u);

#endif
