/*
 * srv_lease: etcd's Lease service for one member — LeaseGrant and LeaseRevoke
 * go through the log like Put (applied by the lessor, etcdcompat/ec_lease.h);
 * LeaseTimeToLive, LeaseLeases and the LeaseKeepAlive stream are served on the
 * gRPC thread from the lessor's memory, as etcd's leader serves them; and an
 * expiry thread proposes a LeaseRevoke for every lease whose deadline passed
 * (DESIGN.md, Leases: only the leader expires leases).
 *
 * Order in main(): ec_lessor_open before srv_node_start (log replay applies
 * lease entries), srv_lease_start after it; srv_lease_stop before
 * srv_node_stop, ec_lessor_close after it.
 */
#ifndef METASTORE_SRV_LEASE_H
#define METASTORE_SRV_LEASE_H

#include <stdbool.h>
#include <stdint.h>

#include "etcdcompat/ec_lease.h"
#include "server/srv_node.h"
#include "server/srv_rpc.h"

typedef struct srv_lease srv_lease;

/* srv_lease_now_ms - the monotonic clock (ms) the lessor runs on; pass it as
 * ec_lessor_config.now_ms. */
int64_t srv_lease_now_ms(void *arg);

/*
 * srv_lease_start - start the expiry thread: every 100 ms (sooner when a
 * deadline is nearer) it asks @les for expired leases and proposes a
 * LeaseRevoke for each through @node. @les and @node are borrowed and must
 * outlive the srv_lease. Returns 0 and *@out, or -1 (no memory or no thread).
 */
int srv_lease_start(ec_lessor *les, srv_node *node, srv_lease **out);

/* srv_lease_set_leader - whether this member leads now: only the leader
 * proposes revokes of expired leases, and becoming leader first gives every
 * lease a fresh TTL (ec_lessor_promote). Any thread; NULL @sl is ignored. */
void srv_lease_set_leader(srv_lease *sl, bool leader);

/* srv_lease_stop - stop and join the expiry thread and free @sl (NULL ok).
 * Revokes already proposed complete in srv_node_stop. */
void srv_lease_stop(srv_lease *sl);

/* Handlers (the app pointer is a srv_app whose lessor field is set). */
void srv_lease_grant(srv_call *call, const ProtobufCMessage *req);
void srv_lease_revoke(srv_call *call, const ProtobufCMessage *req);
void srv_lease_time_to_live(srv_call *call, const ProtobufCMessage *req);
void srv_lease_leases(srv_call *call, const ProtobufCMessage *req);
void srv_lease_keep_alive(srv_stream *st, const ProtobufCMessage *req);

#endif
