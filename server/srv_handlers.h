/*
 * srv_handlers: the etcd service methods metastore implements, each bound to a
 * row of the etcd method table (srv_methods.c). Every handler has the runtime's
 * unary signature and completes its call exactly once, on this thread or later
 * from the node thread.
 */
#ifndef METASTORE_SRV_HANDLERS_H
#define METASTORE_SRV_HANDLERS_H

#include <stdbool.h>

#include "internal.pb-c.h"
#include "rpc.pb-c.h"
#include "server/srv_app.h"
#include "server/srv_rpc.h"

/*
 * srv_propose_write - propose one client write after its check: @err is the
 * ec_check_* result (EC_OK to go on), @which the InternalRequest case (Put,
 * DeleteRange, Txn, Compaction, LeaseGrant, LeaseRevoke) and @msg the decoded
 * request it carries, borrowed from @call until it completes. Completes @call
 * with an error at once, or later from the node thread with apply's response.
 */
void srv_propose_write(srv_call *call, int err, Metastore__InternalRequest__RequestCase which,
                       ProtobufCMessage *msg);

/* srv_finish - complete @call with @resp when @err is EC_OK, else fail it with
 * @err; @resp (NULL ok) is freed with ec_msg_free either way. */
void srv_finish(srv_call *call, int err, void *resp);

/* srv_is_learner - whether this member is a learner: etcd refuses it writes,
 * linearizable reads and every stream RPC (Watch, LeaseKeepAlive) with
 * "etcdserver: rpc not supported for learner". */
bool srv_is_learner(srv_app *app);

/* srv_fill_header - fill @h with this member's cluster/member id and term, and
 * with the current revision when @with_rev (etcd's Cluster service sends none). */
void srv_fill_header(srv_app *app, Etcdserverpb__ResponseHeader *h, bool with_rev);

void srv_kv_range(srv_call *call, const ProtobufCMessage *req);
void srv_kv_put(srv_call *call, const ProtobufCMessage *req);
void srv_kv_delete_range(srv_call *call, const ProtobufCMessage *req);
void srv_kv_txn(srv_call *call, const ProtobufCMessage *req);
void srv_kv_compact(srv_call *call, const ProtobufCMessage *req);
void srv_maint_status(srv_call *call, const ProtobufCMessage *req);
void srv_cluster_member_list(srv_call *call, const ProtobufCMessage *req);

#endif
