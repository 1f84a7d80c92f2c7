/*
 * srv_cluster: etcd's Cluster service methods that change membership
 * (MemberAdd, MemberRemove, MemberUpdate, MemberPromote) and
 * Maintenance.MoveLeader, bound to rows of the etcd method table. MemberList
 * and Status live in srv_handlers.
 */
#ifndef METASTORE_SRV_CLUSTER_H
#define METASTORE_SRV_CLUSTER_H

#include "rpc.pb-c.h"
#include "server/srv_app.h"
#include "server/srv_rpc.h"

void srv_cluster_member_add(srv_call *call, const ProtobufCMessage *req);
void srv_cluster_member_remove(srv_call *call, const ProtobufCMessage *req);
void srv_cluster_member_update(srv_call *call, const ProtobufCMessage *req);
void srv_cluster_member_promote(srv_call *call, const ProtobufCMessage *req);
void srv_maint_move_leader(srv_call *call, const ProtobufCMessage *req);

/*
 * srv_cluster_forward_promote - a follower cannot judge whether a learner is
 * caught up: send the promote of @id to the leader through the peer transport
 * and complete @call with the leader's answer. Returns 0 (the call will be
 * completed) or -1 (no leader known or no transport: the caller fails @call).
 */
int srv_cluster_forward_promote(srv_call *call, uint64_t id);

#endif
