/*
 * srv_methods: etcd's v3 gRPC method table, as srv_rpc rows.
 *
 * SRV_ETCD_METHODS is the one list: X(id, service, method, kind, request,
 * response), where request/response are protobuf-c descriptor stems
 * (etcdserverpb__<stem>__descriptor). It yields the enum of method ids
 * (SRV_M_KV_RANGE, ...) and the table itself. The kind column marks the
 * streaming methods, which protoc-c's service descriptors do not.
 *
 * Plugging handlers in: build a table, set the handlers you have by id, start.
 *
 *     srv_method tab[SRV_M__COUNT];
 *     srv_etcd_methods(tab);                 // every handler NULL
 *     tab[SRV_M_KV_RANGE].unary = kv_range;  // a unary row
 *     tab[SRV_M_WATCH].stream = watch_open;  // a streaming row
 *     srv_rpc_start(&cfg, tab, SRV_M__COUNT, app, &rpc, err, sizeof err);
 *
 * Rows left NULL answer UNIMPLEMENTED at once.
 */
#ifndef METASTORE_SRV_METHODS_H
#define METASTORE_SRV_METHODS_H

#include "server/srv_rpc.h"

#define SRV_ETCD_METHODS(X)                                                                   \
	X(KV_RANGE, KV, Range, SRV_UNARY, range_request, range_response)                      \
	X(KV_PUT, KV, Put, SRV_UNARY, put_request, put_response)                              \
	X(KV_DELETE_RANGE, KV, DeleteRange, SRV_UNARY, delete_range_request,                  \
	  delete_range_response)                                                              \
	X(KV_TXN, KV, Txn, SRV_UNARY, txn_request, txn_response)                              \
	X(KV_COMPACT, KV, Compact, SRV_UNARY, compaction_request, compaction_response)        \
	X(WATCH, Watch, Watch, SRV_BIDI, watch_request, watch_response)                       \
	X(LEASE_GRANT, Lease, LeaseGrant, SRV_UNARY, lease_grant_request, lease_grant_response) \
	X(LEASE_REVOKE, Lease, LeaseRevoke, SRV_UNARY, lease_revoke_request,                  \
	  lease_revoke_response)                                                              \
	X(LEASE_KEEP_ALIVE, Lease, LeaseKeepAlive, SRV_BIDI, lease_keep_alive_request,        \
	  lease_keep_alive_response)                                                          \
	X(LEASE_TIME_TO_LIVE, Lease, LeaseTimeToLive, SRV_UNARY, lease_time_to_live_request,  \
	  lease_time_to_live_response)                                                        \
	X(LEASE_LEASES, Lease, LeaseLeases, SRV_UNARY, lease_leases_request,                  \
	  lease_leases_response)                                                              \
	X(MEMBER_ADD, Cluster, MemberAdd, SRV_UNARY, member_add_request, member_add_response) \
	X(MEMBER_REMOVE, Cluster, MemberRemove, SRV_UNARY, member_remove_request,             \
	  member_remove_response)                                                             \
	X(MEMBER_UPDATE, Cluster, MemberUpdate, SRV_UNARY, member_update_request,             \
	  member_update_response)                                                             \
	X(MEMBER_LIST, Cluster, MemberList, SRV_UNARY, member_list_request,                   \
	  member_list_response)                                                               \
	X(MEMBER_PROMOTE, Cluster, MemberPromote, SRV_UNARY, member_promote_request,          \
	  member_promote_response)                                                            \
	X(ALARM, Maintenance, Alarm, SRV_UNARY, alarm_request, alarm_response)                \
	X(STATUS, Maintenance, Status, SRV_UNARY, status_request, status_response)            \
	X(DEFRAGMENT, Maintenance, Defragment, SRV_UNARY, defragment_request,                 \
	  defragment_response)                                                                \
	X(HASH, Maintenance, Hash, SRV_UNARY, hash_request, hash_response)                    \
	X(HASH_KV, Maintenance, HashKV, SRV_UNARY, hash_kvrequest, hash_kvresponse)           \
	X(SNAPSHOT, Maintenance, Snapshot, SRV_SERVER_STREAM, snapshot_request,               \
	  snapshot_response)                                                                  \
	X(MOVE_LEADER, Maintenance, MoveLeader, SRV_UNARY, move_leader_request,               \
	  move_leader_response)                                                               \
	X(AUTH_ENABLE, Auth, AuthEnable, SRV_UNARY, auth_enable_request, auth_enable_response) \
	X(AUTH_DISABLE, Auth, AuthDisable, SRV_UNARY, auth_disable_request,                   \
	  auth_disable_response)                                                              \
	X(AUTH_STATUS, Auth, AuthStatus, SRV_UNARY, auth_status_request, auth_status_response) \
	X(AUTHENTICATE, Auth, Authenticate, SRV_UNARY, authenticate_request,                  \
	  authenticate_response)                                                              \
	X(USER_ADD, Auth, UserAdd, SRV_UNARY, auth_user_add_request, auth_user_add_response)  \
	X(USER_GET, Auth, UserGet, SRV_UNARY, auth_user_get_request, auth_user_get_response)  \
	X(USER_LIST, Auth, UserList, SRV_UNARY, auth_user_list_request,                       \
	  auth_user_list_response)                                                            \
	X(USER_DELETE, Auth, UserDelete, SRV_UNARY, auth_user_delete_request,                 \
	  auth_user_delete_response)                                                          \
	X(USER_CHANGE_PASSWORD, Auth, UserChangePassword, SRV_UNARY,                          \
	  auth_user_change_password_request, auth_user_change_password_response)              \
	X(USER_GRANT_ROLE, Auth, UserGrantRole, SRV_UNARY, auth_user_grant_role_request,      \
	  auth_user_grant_role_response)                                                      \
	X(USER_REVOKE_ROLE, Auth, UserRevokeRole, SRV_UNARY, auth_user_revoke_role_request,   \
	  auth_user_revoke_role_response)                                                     \
	X(ROLE_ADD, Auth, RoleAdd, SRV_UNARY, auth_role_add_request, auth_role_add_response)  \
	X(ROLE_GET, Auth, RoleGet, SRV_UNARY, auth_role_get_request, auth_role_get_response)  \
	X(ROLE_LIST, Auth, RoleList, SRV_UNARY, auth_role_list_request,                       \
	  auth_role_list_response)                                                            \
	X(ROLE_DELETE, Auth, RoleDelete, SRV_UNARY, auth_role_delete_request,                 \
	  auth_role_delete_response)                                                          \
	X(ROLE_GRANT_PERMISSION, Auth, RoleGrantPermission, SRV_UNARY,                        \
	  auth_role_grant_permission_request, auth_role_grant_permission_response)            \
	X(ROLE_REVOKE_PERMISSION, Auth, RoleRevokePermission, SRV_UNARY,                      \
	  auth_role_revoke_permission_request, auth_role_revoke_permission_response)

/*
 * SRV_CONCURRENCY_METHODS: etcd's v3election and v3lock services (served by
 * srv_election.h on top of KV/Lease/Watch). X(id, package, service, method,
 * kind, request, response): names "/<package>.<Service>/<Method>",
 * descriptors <package>__<stem>__descriptor. Their ids follow etcd's.
 */
#define SRV_CONCURRENCY_METHODS(X)                                                            \
	X(ELECTION_CAMPAIGN, v3electionpb, Election, Campaign, SRV_UNARY, campaign_request,     \
	  campaign_response)                                                                  \
	X(ELECTION_PROCLAIM, v3electionpb, Election, Proclaim, SRV_UNARY, proclaim_request,     \
	  proclaim_response)                                                                  \
	X(ELECTION_LEADER, v3electionpb, Election, Leader, SRV_UNARY, leader_request,           \
	  leader_response)                                                                    \
	X(ELECTION_OBSERVE, v3electionpb, Election, Observe, SRV_SERVER_STREAM, leader_request, \
	  leader_response)                                                                    \
	X(ELECTION_RESIGN, v3electionpb, Election, Resign, SRV_UNARY, resign_request,           \
	  resign_response)                                                                    \
	X(LOCK_LOCK, v3lockpb, Lock, Lock, SRV_UNARY, lock_request, lock_response)              \
	X(LOCK_UNLOCK, v3lockpb, Lock, Unlock, SRV_UNARY, unlock_request, unlock_response)

#define SRV_M_ENUM_ROW(id, svc, meth, kind, req, resp) SRV_M_##id,
#define SRV_M_ENUM_ROW_PKG(id, pkg, svc, meth, kind, req, resp) SRV_M_##id,
typedef enum {
	SRV_ETCD_METHODS(SRV_M_ENUM_ROW) SRV_CONCURRENCY_METHODS(SRV_M_ENUM_ROW_PKG) SRV_M__COUNT
} srv_method_id;
#undef SRV_M_ENUM_ROW
#undef SRV_M_ENUM_ROW_PKG

/*
 * srv_etcd_methods - fill @out (SRV_M__COUNT rows, indexed by srv_method_id)
 * with etcd's table: names "/etcdserverpb.<Service>/<Method>" (and the
 * concurrency services' "/v3electionpb.Election/..", "/v3lockpb.Lock/.."),
 * kinds, descriptors, and every handler NULL.
 */
void srv_etcd_methods(srv_method out[SRV_M__COUNT]);

/* srv_etcd_method_find - the id of full method @name, or -1. */
int srv_etcd_method_find(const char *name);

#endif
