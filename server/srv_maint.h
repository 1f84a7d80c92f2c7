/*
 * srv_maint: the Maintenance service's local side — Status, Defragment, Alarm,
 * Hash, HashKV — and what etcd does around them: the backend quota that
 * raises NOSPACE, and the corruption checks that raise CORRUPT (etcd's
 * --experimental-initial-corrupt-check and --experimental-corrupt-check-time).
 * MoveLeader lives with the cluster handlers (srv_cluster.c), Snapshot with the
 * snapshot service.
 *
 * The alarm set itself is etcdcompat/ec_alarm (replicated, applied by the node
 * loop); this module proposes changes to it (the Alarm RPC, quota and checks)
 * and reads it (Status.errors, /health through ec_alarms_any).
 *
 * Members ask each other for HashKV over the peer transport's Forward call
 * (SRV_FWD_HASHKV, served by srv_maint_serve_hashkv).
 *
 * Threading: handlers run on gRPC threads and hand anything slow (Defragment,
 * Hash, HashKV: whole-store passes) to a detached worker thread, counted so
 * that srv_maint_stop can wait for it; the periodic corruption check has a
 * thread of its own (srv_maint_start/stop).
 */
#ifndef METASTORE_SRV_MAINT_H
#define METASTORE_SRV_MAINT_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "internal.pb-c.h"
#include "server/srv_app.h"
#include "server/srv_peer.h"
#include "server/srv_rpc.h"

typedef struct srv_maint srv_maint;

/*
 * srv_maint_new - the module's state for @app (which must hold db, alarms and
 * cfg; node and peer may come later): the effective quota from
 * --quota-backend-bytes (etcd's messages are logged: "enabled backend quota",
 * the 8 GiB warning). Sets app->maint. Returns 0 or -1 (out of memory).
 */
int srv_maint_new(srv_app *app);

/*
 * srv_maint_initial_check - etcd's CheckInitialHashKV, when
 * --experimental-initial-corrupt-check is set and the member restarts (it has
 * applied entries before; a new member is not checked, as etcd): compare this
 * member's HashKV
 * with every peer's at this member's revision, before the node starts (the
 * peer transport must be up). A peer with another hash at the same compacted
 * revision is a mismatch; peers that cannot answer, lag or have compacted
 * further are logged and skipped. Returns 0 (passed or disabled), or -1 after
 * logging etcd's error ("<id> found data inconsistency with peers"): the
 * member must not start.
 */
int srv_maint_initial_check(srv_app *app);

/*
 * srv_maint_start - start the periodic corruption check (every
 * --experimental-corrupt-check-time, on the leader only; nothing when 0).
 * Needs app->node and app->peer. Returns 0 or -1 (no thread).
 * srv_maint_stop - stop it and wait for its thread, then refuse new workers
 * (their calls fail with EC_STOPPED) and wait for the running ones (a hash or
 * defragment in flight ends first); call before the node stops.
 * srv_maint_free - free app->maint (stopping as above if need be); call after
 * the node and the peer port stopped (the node's last callbacks and a peer's
 * HashKV may still reach the module). Both accept an app without the module.
 */
int srv_maint_start(srv_app *app);
void srv_maint_stop(srv_app *app);
void srv_maint_free(srv_app *app);

/*
 * srv_maint_quota_check - etcd's quotaAlarmer.check for a write about to be
 * proposed (@ir: Put, Txn, LeaseGrant; other cases cost nothing): EC_OK when
 * it fits the quota; else this member proposes ACTIVATE NOSPACE for itself
 * (once at a time) and the answer is EC_NO_SPACE. Any thread.
 */
int srv_maint_quota_check(srv_app *app, const Metastore__InternalRequest *ir);

/*
 * srv_maint_over_quota - etcd's quotaApplierV3, for the node loop after @req
 * was applied successfully: true when the backend is over the quota now (the
 * write stays applied; its caller is told EC_NO_SPACE) — and then, unless a
 * NOSPACE alarm is already active, this member raises one. @ctx is the
 * srv_app. Node thread.
 */
bool srv_maint_over_quota(void *ctx, const Metastore__InternalRequest *req);

/*
 * srv_maint_raise - propose ACTIVATE of alarm @type for member @member,
 * asynchronously (the outcome is logged when it fails). At most one proposal
 * per type is in flight. Any thread.
 */
void srv_maint_raise(srv_app *app, uint64_t member, int type);

/*
 * srv_maint_compact - propose a Compaction at @rev as this member's own
 * request (the auto-compactor's) and wait until it is applied: the ec_err
 * (EC_COMPACTED, EC_FUTURE_REV, EC_TIMEOUT, ...). Gives up with EC_STOPPED
 * once *@stop is true (may be NULL). Never on the node thread.
 */
int srv_maint_compact(srv_app *app, int64_t rev, const atomic_bool *stop);

/*
 * srv_maint_serve_hashkv - answer a peer's SRV_FWD_HASHKV (an on_forward of
 * srv_peer): @in is a packed HashKVRequest, decoded here. The answer is a
 * packed ForwardReply (err = the ec_err, data = the packed HashKVResponse).
 * The hash, a whole-store pass, runs on a detached thread that answers @reply
 * with srv_peer_forward_reply: returns SRV_PEER_LATER. When no thread can
 * start (or @reply is NULL) it runs here and *@out receives the answer,
 * malloc'd: returns 0. EC_BAD_REQUEST / EC_NOMEM: no answer; EC_STOPPED
 * after srv_maint_stop began (nothing hashed). Any thread; works before the
 * node has started.
 */
int srv_maint_serve_hashkv(srv_app *app, const uint8_t *in, size_t inlen, uint8_t **out,
                           size_t *outlen, srv_peer_reply *reply);

/* The service's handlers (srv_rpc unary signature). */
void srv_maint_status(srv_call *call, const ProtobufCMessage *req);
void srv_maint_defragment(srv_call *call, const ProtobufCMessage *req);
void srv_maint_alarm(srv_call *call, const ProtobufCMessage *req);
void srv_maint_hash(srv_call *call, const ProtobufCMessage *req);
void srv_maint_hash_kv(srv_call *call, const ProtobufCMessage *req);

#endif
