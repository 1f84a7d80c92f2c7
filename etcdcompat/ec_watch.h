/*
 * ec_watch: the watch hub — etcd's Watch semantics over the MVCC keyspace,
 * deterministic and network-free (DESIGN.md, Watch).
 *
 * The hub holds every watcher of every Watch stream of the member. It is fed
 * twice: live, by ec_hub_publish() with the change events of each apply commit
 * (storage's st_mvcc_set_events hook, in commit order), and from history, by
 * ec_hub_step(), which reads storage's revision index (st_txn_history) for the
 * watchers that are behind. Watchers are "synced" (they have been sent every
 * event up to the hub's revision, ec_hub_rev(), and are indexed for live
 * matching) or "unsynced" (behind: catch-up reads history for up to
 * EC_HUB_SYNC_BATCH of them at a time, sends it, and moves them into the
 * synced index once they reach the hub's revision — no gap and no duplicate,
 * because one thread does both). A stream whose send queue holds more than its
 * budget never blocks anything: its watchers that have something to receive
 * become unsynced and catch up from history once the queue drains.
 *
 * Live matching does not scan watchers: exact keys and prefixes (a range_end
 * that is the key's prefix end, and "all keys") are hash-indexed, so an event
 * costs one lookup for its key plus one per distinct prefix length in use;
 * other ranges (from-key, arbitrary [key, end)) sit in a list checked per
 * event. Each event is encoded once per batch (with and without prev_kv) and
 * the bytes are shared by every response that carries it.
 *
 * Responses are written by the hub as packed etcdserverpb.WatchResponse bytes
 * and handed to the stream's sink (a sink with flush gets them per round and
 * one flush per stream at the end, so they can leave in one write, with one
 * burst of send completions); all etcd rules live here: watch ids (auto
 * from 0, client-chosen, duplicates rejected), created/canceled responses,
 * filters, prev_kv, start revisions in the past or future, compaction
 * (canceled with compact_revision; the id stays taken until the client cancels
 * it, as etcd's), fragments, progress notifications and
 * progress requests (answered with watch id -1 once every watcher of the
 * stream is synced).
 *
 * Threads: every ec_hub_* function must be called from one thread at a time
 * (the server's watch thread); sinks are called from it.
 */
#ifndef METASTORE_EC_WATCH_H
#define METASTORE_EC_WATCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "etcdcompat/ec_kv.h"
#include "rpc.pb-c.h"
#include "storage/st_db.h"
#include "storage/st_mvcc.h"

/* Unsynced watchers caught up by one ec_hub_step (etcd: maxWatchersPerSync). */
#define EC_HUB_SYNC_BATCH 512

/* etcd's error texts for refused watch creations (cancel_reason). */
#define EC_WATCH_EMPTY_RANGE "mvcc: watcher range is empty"
#define EC_WATCH_DUPLICATE_ID "mvcc: duplicate watch ID provided on the WatchStream"

typedef struct ec_hub ec_hub;
typedef struct ec_wstream ec_wstream;

/* Where a stream's responses go (the server binds it to a gRPC stream). */
typedef struct ec_wsink {
	/* Queue one packed WatchResponse (@p, @n bytes; copied). Returns 0, or -1
	 * if the stream is gone (the hub then drops what it would send; the
	 * server closes the stream with ec_hub_stream_close). */
	int (*send)(void *ctx, const uint8_t *p, size_t n);
	/* Bytes queued on the stream and not yet written to the transport. */
	size_t (*queued)(void *ctx);
	/* Optional. When set, send may hold what it queues until flush: before
	 * any ec_hub_* call returns, the hub flushes every stream it sent to, so a
	 * stream's responses of one round can leave in one transport write. */
	void (*flush)(void *ctx);
} ec_wsink;

typedef struct ec_hub_config {
	st_db *db;                /* borrowed; must outlive the hub */
	size_t max_request_bytes; /* fragment threshold (etcd --max-request-bytes);
	                           * 0 = 1.5 MiB */
	size_t stream_budget;     /* queued bytes above which a stream's watchers
	                           * fall behind; 0 = 4 MiB */
	size_t catchup_bytes;     /* history key+value bytes read per step before it
	                           * stops at a revision boundary; 0 = 4 MiB */
	ec_hdr (*hdr)(void *arg); /* cluster/member id and raft term for headers */
	void *hdr_arg;
} ec_hub_config;

/*
 * ec_hub_new - a hub at the store's current revision (every later commit must
 * reach it through ec_hub_publish, or ec_hub_resync must be called).
 * Returns 0 and *@out, ST_ENOMEM, or ST_EINVAL for a bad config (no db).
 */
int ec_hub_new(const ec_hub_config *cfg, ec_hub **out);

/* ec_hub_free - free the hub and every stream and watcher still in it. */
void ec_hub_free(ec_hub *h);

/* ec_hub_rev - every synced watcher has been sent all events up to here. */
int64_t ec_hub_rev(const ec_hub *h);

/* ec_hub_watchers - watchers alive (all streams); ec_hub_unsynced - of them,
 * how many are behind. */
size_t ec_hub_watchers(const ec_hub *h);
size_t ec_hub_unsynced(const ec_hub *h);

/*
 * ec_hub_stream_open - a new Watch stream whose responses go to @sink/@ctx
 * (copied / borrowed until ec_hub_stream_close). Returns NULL on out of memory.
 */
ec_wstream *ec_hub_stream_open(ec_hub *h, const ec_wsink *sink, void *ctx);

/* ec_hub_stream_close - remove the stream's watchers and free it. Nothing is
 * sent to its sink afterwards. */
void ec_hub_stream_close(ec_hub *h, ec_wstream *ws);

/* ec_hub_stream_watchers - watchers alive on @ws. */
size_t ec_hub_stream_watchers(const ec_wstream *ws);

/*
 * ec_hub_request - one client message of a stream: create (answers created, or
 * created+canceled with etcd's cancel_reason), cancel (answers canceled; an
 * unknown id is ignored, as etcd does), or progress (answered once every
 * watcher of the stream is synced). An empty request is ignored.
 * Returns 0, or ST_ENOMEM (nothing changed).
 */
int ec_hub_request(ec_hub *h, ec_wstream *ws, const Etcdserverpb__WatchRequest *req);

/* ec_hub_refuse - answer a create request of @ws that the server refused
 * before the hub saw it (auth: etcd's isWatchPermitted) as etcd does: created
 * and canceled, watch id -1, @reason as cancel_reason, header at the store's
 * current revision. */
void ec_hub_refuse(ec_hub *h, ec_wstream *ws, const char *reason);

/*
 * ec_hub_publish - the events of @nb commits, in commit order; takes ownership
 * of every @evs[i] (NULL entries are ignored: storage's "changes not staged"
 * signal is the caller's to turn into ec_hub_resync). Revisions the hub
 * already has are skipped; a gap (a commit that was never published) makes
 * every synced watcher catch up from history. Sends to synced watchers at
 * once: each gets ONE response for all of its events in the @nb commits, so
 * a hub that falls behind under load sends fewer, larger responses.
 */
void ec_hub_publish(ec_hub *h, st_events **evs, size_t nb);

/*
 * ec_hub_resync - the store moved without events (a raft snapshot installed,
 * or published events were lost): the hub jumps to the store's current
 * revision and every synced watcher catches up from history (a compacted gap
 * cancels it with compact_revision, as etcd does).
 */
void ec_hub_resync(ec_hub *h);

/*
 * ec_hub_step - one round of catch-up for up to EC_HUB_SYNC_BATCH unsynced
 * watchers whose streams are under budget. Returns true if it did something
 * (call again), false if nothing can progress now (no unsynced watcher, or all
 * of them wait for their streams to drain).
 */
bool ec_hub_step(ec_hub *h);

/*
 * ec_hub_progress_tick - etcd's periodic progress notification: every synced
 * watcher created with progress_notify that was sent nothing since the
 * previous tick gets an empty response at the hub's revision.
 */
void ec_hub_progress_tick(ec_hub *h);

#endif
