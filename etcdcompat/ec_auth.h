/*
 * ec_auth: etcd's auth store — users, roles, key-range permissions, the
 * enabled flag and the auth revision — as etcd 3.4's auth/store.go and
 * etcdserver/apply_auth.go, plus the permission checks every request goes
 * through.
 *
 * What is replicated: the whole store (metastore.AuthState), written by apply
 * under the replicated meta record "auth" (st_rmeta_put, so it is part of raft
 * snapshots) in the apply group of the entry that changed it. Every member that
 * applies the same log holds the same store. Passwords are kept only as bcrypt
 * hashes (libxcrypt's crypt_r, "$2b$"); the hash is made by the member that
 * receives the request (ec_auth_hash_password) and only the hash enters the
 * log.
 *
 * Who a request comes from is an ec_auth_info: the user name and the auth
 * revision the receiving member's token check saw (etcd's AuthInfo). Writes
 * carry it in InternalRequest.auth and are checked again at apply, against the
 * store as of that entry (deterministic on every member); reads are checked on
 * the member that serves them.
 *
 * etcd's check rules (isOpPermitted / IsAdminPermitted), in order:
 *   auth disabled                       -> EC_OK
 *   no user (no token was sent; for key
 *   checks also auth revision 0)        -> EC_USER_EMPTY
 *   info.revision < store revision      -> EC_AUTH_OLD_REVISION (key checks only)
 *   user unknown                        -> EC_PERMISSION_DENIED (admin: EC_USER_NOT_FOUND)
 *   user has role "root"                -> EC_OK
 *   a granted permission covers it      -> EC_OK, else EC_PERMISSION_DENIED
 * A range [key, range_end) is covered only when the union of the user's
 * permission intervals of that type (READWRITE counts for both) contains it;
 * range_end "\0" means from-key (to the end of the keyspace); an empty
 * range_end means the single key. As in etcd's interval tree, an empty key is
 * never covered, and a range whose end is at or before its key is checked as
 * its key alone. The merged intervals of every user are rebuilt on each change
 * (etcd's rangePermCache), so a check is a binary search.
 *
 * Threading: apply and reload run on the node thread; every other function may
 * be called from any thread (a reader-writer lock inside). Password checks
 * never hold the lock while bcrypt runs.
 */
#ifndef METASTORE_EC_AUTH_H
#define METASTORE_EC_AUTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "etcdcompat/ec_kv.h"
#include "internal.pb-c.h"
#include "rpc.pb-c.h"
#include "storage/st_db.h"

/* etcd's bcrypt.DefaultCost, and the range --bcrypt-cost accepts (bcrypt's
 * MinCost..MaxCost). */
#define EC_AUTH_BCRYPT_DEFAULT_COST 10
#define EC_AUTH_BCRYPT_MIN_COST 4
#define EC_AUTH_BCRYPT_MAX_COST 31

/* Longest user name the checks carry (longer names are refused at UserAdd with
 * EC_BAD_REQUEST; etcd has no limit, ours is generous). */
#define EC_AUTH_NAME_MAX 256

typedef struct ec_auth ec_auth;

/* Who sent a request: etcd's AuthInfo. user "" = no token was sent. */
typedef struct ec_auth_info {
	char user[EC_AUTH_NAME_MAX + 1];
	uint64_t revision;
} ec_auth_info;

/* Permission types, etcd's authpb.Permission.Type values. */
enum { EC_PERM_READ = 0, EC_PERM_WRITE = 1, EC_PERM_READWRITE = 2 };

/* Callbacks the store makes when apply changes who may do what (all on the
 * node thread, after the change is staged). Any may be NULL. */
typedef struct ec_auth_hooks {
	/* A user's tokens must stop working: the user was deleted or changed its
	 * password (etcd invalidates that user's simple tokens). */
	void (*user_gone)(void *arg, const char *user);
	/* Auth was disabled: every token stops working. */
	void (*disabled)(void *arg);
	/* Any applied change of the store (also AuthEnable, which does not move
	 * the revision), and a reload that found another revision or enabled
	 * flag: permissions may have been revoked, so watchers may be
	 * re-checked. */
	void (*changed)(void *arg);
	void *arg;
} ec_auth_hooks;

/*
 * ec_auth_open - load the store from @db (none recorded: an empty, disabled
 * store at revision 1, as etcd's NewAuthStore makes on a fresh backend; it is
 * first written by the first change). @hooks is copied (NULL: none). @db is
 * borrowed and must outlive the store. Returns 0 and *@out, or ST_ENOMEM /
 * ST_ECORRUPT / ST_EIO / ST_EFORMAT (a record of another format version).
 */
int ec_auth_open(st_db *db, const ec_auth_hooks *hooks, ec_auth **out);

/* ec_auth_close - free @a (NULL ok). */
void ec_auth_close(ec_auth *a);

/* ec_auth_reload - re-read the store after a raft snapshot replaced the
 * replicated state, or after an apply group was aborted or failed to commit
 * (apply changes the in-memory store at once, before the group is written:
 * reload so readers do not see what was never written). Node thread, outside
 * an apply group. Calls the hooks for what differs: user_gone for every user
 * deleted or with another password hash, disabled, changed. Returns 0 or an
 * ST_* code (old store kept). */
int ec_auth_reload(ec_auth *a);

/* ec_auth_enabled / ec_auth_revision - the store's flag and auth revision. */
bool ec_auth_enabled(ec_auth *a);
uint64_t ec_auth_revision(ec_auth *a);

/* ec_auth_is_request - whether @c is one of the Auth service's log cases
 * (auth_enable .. role_revoke_permission), which ec_auth_apply handles. */
bool ec_auth_is_request(Metastore__InternalRequest__RequestCase c);

/*
 * ec_auth_apply - apply one Auth log entry (node thread, inside an open apply
 * group; the store is staged with st_rmeta_put). @req->auth is the sender;
 * every case but authenticate needs admin permission (etcd's
 * needAdminPermission). Builds etcd's response in *@resp (ec_msg_free) with
 * the header from @hdr and revision @kv_rev; an etcd error (EC_ROOT_USER_NOT_EXIST,
 * EC_USER_ALREADY_EXIST, EC_ROLE_NOT_FOUND, ...) goes to *@err, *@resp stays
 * NULL and nothing changes. The admin check gives EC_USER_EMPTY /
 * EC_USER_NOT_FOUND / EC_PERMISSION_DENIED (see ec_auth_check_admin).
 * Per case, as etcd 3.4's auth/store.go:
 *   auth_enable     EC_ROOT_USER_NOT_EXIST, EC_ROOT_ROLE_NOT_EXIST; already
 *                   enabled: success, no change. Does NOT move the revision.
 *   auth_disable    already disabled: success, no change.
 *   authenticate    EC_AUTH_NOT_ENABLED; EC_AUTH_FAILED (user gone or
 *                   --no-password). *@resp is an AuthenticateResponse whose
 *                   token the caller fills (the token provider lives in the
 *                   server). Changes nothing.
 *   user_add        EC_USER_EMPTY, EC_BAD_REQUEST (name over EC_AUTH_NAME_MAX,
 *                   or no hashedPassword without options.no_password: the
 *                   proposer hashes), EC_USER_ALREADY_EXIST.
 *   user_delete     EC_INVALID_AUTH_MGMT (root while enabled), EC_USER_NOT_FOUND.
 *   user_change_password  EC_USER_NOT_FOUND, EC_BAD_REQUEST (no hashedPassword);
 *                   options (no_password) and roles are kept.
 *   user_grant_role EC_USER_NOT_FOUND, EC_ROLE_NOT_FOUND (unless "root", which
 *                   needs no RoleAdd); already granted: success, no change.
 *   user_revoke_role EC_INVALID_AUTH_MGMT (root from root while enabled),
 *                   EC_USER_NOT_FOUND, EC_ROLE_NOT_GRANTED.
 *   role_add        EC_ROLE_EMPTY, EC_ROLE_ALREADY_EXIST ("root" may be added).
 *   role_delete     EC_INVALID_AUTH_MGMT (root while enabled), EC_ROLE_NOT_FOUND;
 *                   the role is also taken from every user.
 *   role_grant_permission EC_ROLE_NOT_FOUND, EC_BAD_REQUEST (no perm). As etcd:
 *                   the first permission with a key >= the new key is updated
 *                   if key and range_end are equal, else the new one is added
 *                   (sorted by key, after equal keys).
 *   role_revoke_permission EC_ROLE_NOT_FOUND, EC_PERMISSION_NOT_GRANTED (no
 *                   permission with exactly that key and range_end); removes
 *                   every such permission.
 * Every other success moves the auth revision by one. Hooks run after the
 * change is made current (user_gone for user_delete / user_change_password,
 * disabled for auth_disable, changed for any change).
 * Returns 0, or an ST_* code when staging failed (fatal for the member).
 */
int ec_auth_apply(ec_auth *a, const Metastore__InternalRequest *req, const ec_hdr *hdr,
		  int64_t kv_rev, ProtobufCMessage **resp, int *err);

/*
 * ec_auth_check_write - the apply-time check of a KV or lease write, as etcd's
 * authApplierV3, with @req->auth as the sender: Put (write on key; with a lease,
 * write on every key already attached to it, etcd's checkLeasePuts; read too
 * with prev_kv), DeleteRange (write on the range; read too with prev_kv), Txn
 * (read on every compare, then per op of both branches: range read, put write,
 * delete write (+ read with prev_kv), nested txns recursively: etcd 3.4 skips
 * them, 3.5 checks them), Compaction (nothing, as etcd: Kubernetes' API server
 * compacts as an ordinary user), LeaseRevoke (write on every key attached). Cases it
 * does not know pass (EC_OK). Returns EC_OK, the rule's error (see the header
 * comment), or EC_INTERNAL when @lease_keys failed.
 *
 * @lease_keys (NULL: no keys known) calls @fn for each key attached to lease
 * @lease_id (none when the lease is unknown), stops as soon as @fn returns
 * non-zero and returns that value; it returns 0 after the last key, or an
 * error of its own. It is not called while auth is disabled.
 */
typedef int (*ec_auth_key_visit)(void *arg, const uint8_t *key, size_t klen);
typedef int (*ec_auth_lease_keys_fn)(void *arg, int64_t lease_id, ec_auth_key_visit fn,
				     void *fn_arg);
int ec_auth_check_write(ec_auth *a, const Metastore__InternalRequest *req,
			ec_auth_lease_keys_fn lease_keys, void *lease_arg);

/* ec_auth_check_range - may @ai read [@key, @end) (@elen 0: the key alone;
 * "\0": from-key)? EC_OK or the rule's error. */
int ec_auth_check_range(ec_auth *a, const ec_auth_info *ai, const uint8_t *key, size_t klen,
			const uint8_t *end, size_t elen);

/* ec_auth_check_put - may @ai write @key? */
int ec_auth_check_put(ec_auth *a, const ec_auth_info *ai, const uint8_t *key, size_t klen);

/* ec_auth_check_txn - the server-side check of a read-only Txn before it is
 * served: etcd's checkTxnAuth (every compare, every op of both branches,
 * nested), the same rules as ec_auth_check_write's Txn. */
int ec_auth_check_txn(ec_auth *a, const ec_auth_info *ai, const Etcdserverpb__TxnRequest *r);

/* ec_auth_check_admin - IsAdminPermitted: EC_OK when disabled or @ai holds
 * role root; EC_USER_EMPTY without a user; EC_USER_NOT_FOUND for an unknown
 * user; else EC_PERMISSION_DENIED. */
int ec_auth_check_admin(ec_auth *a, const ec_auth_info *ai);

/* ec_auth_has_role - whether user @user holds role @role (RoleGet by a
 * non-root user is allowed for its own roles). */
bool ec_auth_has_role(ec_auth *a, const char *user, const char *role);

/*
 * ec_auth_check_password - etcd's CheckPassword: EC_OK when @user exists, has a
 * password and @password matches its bcrypt hash; EC_AUTH_NOT_ENABLED when auth
 * is off; EC_AUTH_FAILED otherwise (unknown user, wrong password, a
 * --no-password user: etcd sends its own unmapped "auth: authentication
 * failed, password was given for no password user" there). Copies the hash
 * under the lock and runs bcrypt outside it. Any "$2a$"/"$2b$"/"$2x$"/"$2y$"
 * hash is checked as Go's bcrypt does (the minor letter ignored), so hashes
 * made by etcd verify; the result is compared in constant time. *@rev (may be
 * NULL) receives the store revision the check saw (set only on EC_OK).
 */
int ec_auth_check_password(ec_auth *a, const char *user, const char *password, uint64_t *rev);

/*
 * ec_auth_user_exists - whether @user is in the store (a client certificate's
 * CN names a user only when it exists... etcd takes the CN as is; the permission
 * checks then decide). */
bool ec_auth_user_exists(ec_auth *a, const char *user);

/*
 * ec_auth_hash_password - bcrypt @password at @cost (EC_AUTH_BCRYPT_*_COST
 * range) with a fresh random salt (16 bytes from OpenSSL's RAND_bytes) into
 * @out (@cap >= 64 bytes: a 60-byte "$2b$..." hash string, NUL-terminated). Like
 * every bcrypt, only the first 72 bytes of @password count. Any thread.
 * Returns EC_OK, EC_BAD_REQUEST for a cost out of range or @cap < 64,
 * EC_NOMEM, EC_INTERNAL if crypt_r or the random source fails.
 */
int ec_auth_hash_password(const char *password, int cost, char *out, size_t cap);

/*
 * ec_auth_hash_matches - whether @password matches the bcrypt hash @hash (any
 * "$2?$" minor letter, checked as Go's bcrypt does; constant-time compare).
 * For hashes kept outside this store (the v2 auth users, ec_v2auth.h). Any
 * thread. False for a malformed hash or when out of memory.
 */
bool ec_auth_hash_matches(const char *hash, const char *password);

/*
 * Reads the Auth service serves locally (etcd 3.4 puts them through raft; they
 * change nothing, so serving them from the applied store after the caller's
 * linearizable barrier is equivalent). Each checks admin permission itself
 * (UserGet of one's own user and RoleGet of one's own role are allowed, as
 * etcd's authApplierV3) and builds etcd's response (ec_msg_free) with the
 * header from @hdr and revision @kv_rev.
 * UserGet: EC_USER_NOT_FOUND (roles sorted); RoleGet: EC_ROLE_NOT_FOUND
 * (permissions sorted by key as etcd returns them); UserList/RoleList: names
 * sorted bytewise (RoleList leaves out names beginning with byte 0xff, as
 * etcd's bucket range ["\x00", "\xff") does). Each returns EC_OK and *@out,
 * the permission error, or EC_NOMEM; *@out is NULL on error.
 */
int ec_auth_user_get(ec_auth *a, const ec_auth_info *ai, const Etcdserverpb__AuthUserGetRequest *r,
		     const ec_hdr *hdr, int64_t kv_rev, Etcdserverpb__AuthUserGetResponse **out);
int ec_auth_user_list(ec_auth *a, const ec_auth_info *ai, const ec_hdr *hdr, int64_t kv_rev,
		      Etcdserverpb__AuthUserListResponse **out);
int ec_auth_role_get(ec_auth *a, const ec_auth_info *ai, const Etcdserverpb__AuthRoleGetRequest *r,
		     const ec_hdr *hdr, int64_t kv_rev, Etcdserverpb__AuthRoleGetResponse **out);
int ec_auth_role_list(ec_auth *a, const ec_auth_info *ai, const ec_hdr *hdr, int64_t kv_rev,
		      Etcdserverpb__AuthRoleListResponse **out);
/* AuthStatus (etcd 3.5): enabled + auth revision; no permission needed.
 * Returns EC_OK or EC_NOMEM. */
int ec_auth_status(ec_auth *a, const ec_hdr *hdr, int64_t kv_rev,
		   Etcdserverpb__AuthStatusResponse **out);

#endif
