/*
 * srv_watch: etcd's Watch service — the bidi Watch stream bound to the watch
 * hub (etcdcompat/ec_watch.h) and the one thread that drives the hub.
 *
 * Three producers feed the hub, and none of them ever waits for the watch
 * thread:
 *   - the node loop, through storage's events hook (st_mvcc_set_events): when
 *     nothing is queued and the hub is free (a trylock), apply publishes its
 *     commit to the hub itself, so events leave before the writes' replies
 *     (as etcd's do); otherwise the commit is queued; past
 *     SRV_WATCH_QUEUE_BYTES the queue is dropped and the hub resynchronises
 *     from history (so apply never blocks and memory stays bounded); while no
 *     watcher exists storage stages no events at all;
 *   - gRPC completion-queue threads: stream open, each client message (packed,
 *     decoded again on the watch thread), stream close, send-queue drained;
 *   - the node loop again after a raft snapshot (srv_watch_resync).
 * The watch thread publishes queued events, serves the client messages in
 * order, runs catch-up rounds while there is work, sends progress
 * notifications every --experimental-watch-progress-notify-interval, and
 * cancels require-leader streams ("etcdserver: no leader") once the member has
 * had no leader for three election timeouts (etcd's monitorLeader).
 */
#ifndef METASTORE_SRV_WATCH_H
#define METASTORE_SRV_WATCH_H

#include <stddef.h>
#include <stdint.h>

#include "server/srv_node.h"
#include "server/srv_rpc.h"
#include "storage/st_db.h"

/* Event bytes queued for the watch thread before the queue is dropped and the
 * hub resynchronises from history. */
#define SRV_WATCH_QUEUE_BYTES ((size_t)64 << 20)

typedef struct srv_watch srv_watch;

typedef struct srv_watch_config {
	st_db *db;                /* borrowed */
	size_t max_request_bytes; /* --max-request-bytes (fragments split at it plus
	                           * SRV_GRPC_OVERHEAD_BYTES, as etcd's) */
	int64_t progress_ms;      /* progress notification interval; 0 = 10 min */
	int64_t election_ms;      /* --election-timeout (no-leader detection) */
} srv_watch_config;

/*
 * srv_watch_start - create the hub at the store's current revision, install
 * the events hook on @cfg->db and start the watch thread. Call before
 * srv_node_start (the hook must be in place before anything is applied).
 * Returns 0 and *@out, or -1 (no memory or thread).
 */
int srv_watch_start(const srv_watch_config *cfg, srv_watch **out);

/* srv_watch_set_node - the node whose leader and header fields streams use;
 * set once srv_node_start returned, before clients are served. */
void srv_watch_set_node(srv_watch *w, srv_node *node);

/* srv_watch_resync - the keyspace was replaced (raft snapshot): every watcher
 * catches up from history. Any thread. */
void srv_watch_resync(srv_watch *w);

/* srv_watch_stop - remove the hook, stop the thread, free the hub. After
 * srv_rpc_shutdown (no stream is alive) and srv_node_stop. NULL is ok. */
void srv_watch_stop(srv_watch *w);

/* The Watch.Watch handler; the app pointer is a srv_app whose watch field is
 * set. */
void srv_watch_stream(srv_stream *st, const ProtobufCMessage *req);

#endif
