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
 * DeleteRange, Txn, Compaction, LeaseGrant, LeaseRevoke, Alarm, or an Auth
 * case) and @msg the decoded request it carries, borrowed from @call until it
 * completes. The sender (srv_auth_info) is stamped on the proposal for apply's
 * permission checks; an unusable token fails @call with EC_INVALID_AUTH_TOKEN;
 * a Put, Txn or LeaseGrant past the backend quota fails with EC_NO_SPACE
 * (srv_maint_quota_check). Completes @call with an error at once, or later
 * from the node thread with apply's response.
 */
void srv_propose_write(srv_call *call, int err, Metastore__InternalRequest__RequestCase which,
                       ProtobufCMessage *msg);

/*
 * srv_read_barrier - run @fn(@call, @arg, EC_OK) once a ReadIndex round has
 * confirmed that this member's applied state is current (etcd's
 * linearizableReadNotify), on a gRPC thread; or @fn(@call, @arg, err) with the
 * reason it cannot be (a learner: EC_NOT_SUPPORTED_FOR_LEARNER; EC_TIMEOUT,
 * EC_STOPPED, EC_NOMEM), possibly at once. @fn runs exactly once and must
 * complete @call.
 */
typedef void (*srv_linear_fn)(srv_call *call, void *arg, int err);
void srv_read_barrier(srv_call *call, srv_linear_fn fn, void *arg);

/* srv_propose_owned - srv_propose_write for a request the caller built
 * (@msg inside @owned, a malloc'd block freed with free() once the call is
 * completed, on every path). */
void srv_propose_owned(srv_call *call, int err, Metastore__InternalRequest__RequestCase which,
                       ProtobufCMessage *msg, void *owned);

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
void srv_cluster_member_list(srv_call *call, const ProtobufCMessage *req);

#endif
