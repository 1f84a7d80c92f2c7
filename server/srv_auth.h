/*
 * srv_auth: etcd's Auth service and the one place a call's sender is worked
 * out (srv_auth_info), for every handler's permission check.
 *
 * Writes to the auth store (enable, disable, users, roles, permissions) are
 * proposals like any write: apply (etcdcompat/ec_auth.c) checks admin
 * permission and etcd's rules on every member. Passwords are hashed with
 * bcrypt here, on a short-lived worker thread (bcrypt at etcd's cost takes tens
 * of milliseconds, too long for a completion-queue thread), and only the hash
 * is proposed. Authenticate checks the password the same way after a ReadIndex
 * barrier, then proposes the token's random part so that every member learns
 * a simple token. The reads (UserGet, UserList, RoleGet, RoleList,
 * AuthStatus) are served from the applied store after a ReadIndex barrier:
 * etcd 3.4 puts them through its log, which orders them the same way.
 */
#ifndef METASTORE_SRV_AUTH_H
#define METASTORE_SRV_AUTH_H

#include <stdbool.h>

#include "etcdcompat/ec_auth.h"
#include "server/srv_rpc.h"

/*
 * srv_auth_info - who @call comes from, as etcd's AuthInfoFromCtx: with auth
 * disabled, nobody (user ""); else the user of the "token" metadata, or when
 * there is none of the "authorization" metadata (the JSON gateway's
 * Authorization header), checked by the token provider (a simple token's
 * life is renewed); else, with
 * --client-cert-auth, the verified client certificate's Common Name at the
 * current auth revision; else nobody. Returns EC_OK, or EC_INVALID_AUTH_TOKEN
 * for a token the provider does not accept (unknown, expired, badly signed).
 */
int srv_auth_info(const srv_call *call, ec_auth_info *ai);

/* srv_auth_token_may_lag - whether @err from srv_auth_info may only mean that
 * this member has not yet applied the Authenticate that made the token (a
 * simple token issued through another member a moment ago): the caller then
 * looks again after a ReadIndex barrier (srv_read_barrier). */
bool srv_auth_token_may_lag(const srv_call *call, int err);

/* srv_auth_admin - srv_auth_info, then etcd's IsAdminPermitted (root role
 * needed while auth is on): EC_OK or the error to fail @call with. For the
 * member and maintenance calls etcd checks in its API layer. */
int srv_auth_admin(const srv_call *call);

/* srv_auth_maint_admin - srv_auth_admin for the Maintenance calls etcd guards
 * (Defragment, Hash, HashKV, Snapshot): etcd sends the auth store's errors
 * there unconverted ("auth: permission denied", code Unknown; ec_auth_raw). */
int srv_auth_maint_admin(const srv_call *call);

/* The Auth service's handlers (srv_rpc unary signature). */
void srv_auth_enable(srv_call *call, const ProtobufCMessage *req);
void srv_auth_disable(srv_call *call, const ProtobufCMessage *req);
void srv_auth_status(srv_call *call, const ProtobufCMessage *req);
void srv_auth_authenticate(srv_call *call, const ProtobufCMessage *req);
void srv_auth_user_add(srv_call *call, const ProtobufCMessage *req);
void srv_auth_user_get(srv_call *call, const ProtobufCMessage *req);
void srv_auth_user_list(srv_call *call, const ProtobufCMessage *req);
void srv_auth_user_delete(srv_call *call, const ProtobufCMessage *req);
void srv_auth_user_change_password(srv_call *call, const ProtobufCMessage *req);
void srv_auth_user_grant_role(srv_call *call, const ProtobufCMessage *req);
void srv_auth_user_revoke_role(srv_call *call, const ProtobufCMessage *req);
void srv_auth_role_add(srv_call *call, const ProtobufCMessage *req);
void srv_auth_role_get(srv_call *call, const ProtobufCMessage *req);
void srv_auth_role_list(srv_call *call, const ProtobufCMessage *req);
void srv_auth_role_delete(srv_call *call, const ProtobufCMessage *req);
void srv_auth_role_grant_permission(srv_call *call, const ProtobufCMessage *req);
void srv_auth_role_revoke_permission(srv_call *call, const ProtobufCMessage *req);

/*
 * srv_auth_token_for - make the token of an applied authenticate entry (the
 * node loop's on_authenticate hook): @user at auth revision @rev, entry @index,
 * @simple the proposer's random part. Returns a malloc'd token, or NULL.
 */
char *srv_auth_token_for(void *app, const char *user, uint64_t rev, const char *simple,
			 uint64_t index);

#endif
