/*
 * srv_handlers: the etcd service methods metastore implements, each bound to a
 * row of the etcd method table (srv_methods.c). Every handler has the runtime's
 * unary signature and completes its call exactly once, on this thread or later
 * from the node thread.
 */
#ifndef METASTORE_SRV_HANDLERS_H
#define METASTORE_SRV_HANDLERS_H

#include "server/srv_rpc.h"

void srv_kv_range(srv_call *call, const ProtobufCMessage *req);
void srv_kv_put(srv_call *call, const ProtobufCMessage *req);
void srv_kv_delete_range(srv_call *call, const ProtobufCMessage *req);
void srv_kv_txn(srv_call *call, const ProtobufCMessage *req);
void srv_kv_compact(srv_call *call, const ProtobufCMessage *req);
void srv_maint_status(srv_call *call, const ProtobufCMessage *req);
void srv_cluster_member_list(srv_call *call, const ProtobufCMessage *req);

#endif
