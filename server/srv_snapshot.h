/*
 * srv_snapshot: the Maintenance.Snapshot server stream, as etcd 3.4's
 * maintenance server sends it: the member's backend as an etcd bbolt file
 * (etcdcompat/ec_snapshot: etcd's bucket layout, one point in time) in
 * chunks of 32 KiB (SnapshotResponse{remaining_bytes, blob}), then one more
 * message whose blob is the sha256 of everything sent before (remaining 0).
 * `etcdctl snapshot save` writes the blobs to a file and checks that its size
 * ends in that trailer.
 *
 * Root only while auth is on (srv_auth_maint_admin, etcd's unconverted
 * "auth: permission denied"); learners are refused as every stream RPC.
 * The work runs on a thread of its own per call: it writes the file under
 * <data-dir> (a "snapshot-<n>.tmp" name; removed when the stream ends,
 * however it ends), then queues chunks through the stream's send queue a
 * window at a time (woken by on_drain), so neither the node thread nor a
 * gRPC thread waits for the export or for a slow client.
 */
#ifndef METASTORE_SRV_SNAPSHOT_H
#define METASTORE_SRV_SNAPSHOT_H

#include <protobuf-c/protobuf-c.h>

#include "server/srv_rpc.h"

/* srv_maint_snapshot - the SRV_M_SNAPSHOT row's handler (srv_stream_fn); its
 * app pointer is the srv_app. */
void srv_maint_snapshot(srv_stream *st, const ProtobufCMessage *req);

#endif
