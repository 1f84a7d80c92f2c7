/*
 * srv_peer: the peer transport between cluster members, on the gRPC C core.
 *
 * Sending side (client): one srv_peer per member keeps, for every known peer, a
 * channel and one long-lived client stream ("/metastore.Peer/Raft") opened on
 * demand. srv_peer_send() encodes the messages of a raft ready at once into a
 * bounded per-peer FIFO and never blocks on the network; one transport thread
 * (its own completion queue) writes everything queued as one RaftBatch per write,
 * with at most one write outstanding per stream. A broken stream is reopened with
 * back-off (50 ms doubling to 1 s); messages lost with it, or refused by a full
 * queue, are reported through on_unreachable so that raft probes again. A
 * RAFT_MSG_SNAPSHOT goes on a stream of its own ("/metastore.Peer/Snapshot") in
 * chunks of at most SRV_PEER_SNAP_CHUNK bytes and its outcome is reported with
 * on_snapshot_status. Forward is a unary request/response for the server's own
 * uses (lease keep-alives to the leader, cluster fetch).
 *
 * Receiving side (server): srv_peer_methods() gives the rows to serve on the peer
 * port with srv_rpc (the app pointer must be the srv_peer). Batches are checked
 * (format, cluster id), decoded into heap raft_messages, and handed to
 * on_message one by one in the order sent; snapshots are reassembled first.
 *
 * Threads: callbacks run on transport threads (the srv_peer's own thread for
 * on_unreachable, on_snapshot_status and forward completions; srv_rpc's threads
 * for on_message and on_forward), never inside an srv_peer_* call, never with an
 * internal lock held: they may call srv_peer_send/forward/add/remove.
 *
 * TLS: peer URLs may be https:// (or unixs://): those channels use the
 * transport's srv_tls (srv_peer_config.tls; srv_tls_channel_creds), http://
 * and unix:// ones are plaintext. The receiving side's TLS is srv_rpc's
 * (serve srv_peer_methods() with srv_rpc_config.tls).
 *
 * Wire format: proto/peer.proto (format 1).
 *
 * Errors: 0 is success; the transport's own failures are the negative
 * SRV_PEER_E* codes below. Forward results may also carry the remote handler's
 * own positive error (e.g. an ec_err), passed through unchanged.
 */
#ifndef METASTORE_SRV_PEER_H
#define METASTORE_SRV_PEER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "raft/raft.h"
#include "server/srv_rpc.h"
#include "server/srv_tls.h"

/* Transport errors (negative; a remote handler's own errors are positive). */
#define SRV_PEER_EINVAL       (-1)  /* bad argument (NULL, no URL, bad URL scheme) */
#define SRV_PEER_ENOMEM       (-2)  /* out of memory */
#define SRV_PEER_ENOPEER      (-3)  /* no such member id */
#define SRV_PEER_EUNAVAILABLE (-4)  /* could not reach the member / connection broke */
#define SRV_PEER_ETIMEDOUT    (-5)  /* no answer before the deadline */
#define SRV_PEER_ENOHANDLER   (-6)  /* the remote serves no forwards (on_forward NULL) */
#define SRV_PEER_ECLUSTER     (-7)  /* the remote belongs to another cluster */
#define SRV_PEER_EPROTO       (-8)  /* undecodable or unexpected answer */
#define SRV_PEER_ESTOPPED     (-9)  /* srv_peer_stop() is under way */
#define SRV_PEER_EREMOTE      (-10) /* the remote handler failed without a usable code */
/* Not an error: on_forward's "the answer comes later" (srv_peer_forward_reply). */
#define SRV_PEER_LATER        (-100)

/* srv_peer_strerror - static text for an SRV_PEER_E* code ("ok" for 0; positive
 * codes: "remote handler error"). Never NULL. */
const char *srv_peer_strerror(int err);

/* Wire format number carried by every batch and forward (proto/peer.proto). */
#define SRV_PEER_FORMAT 1u
/* Snapshot data travels in chunks of at most this many bytes. */
#define SRV_PEER_SNAP_CHUNK ((size_t)1 << 20)
/* A RaftBatch write closes once it holds this many bytes (at least one message). */
#define SRV_PEER_BATCH_BYTES ((size_t)4 << 20)
/* The peer server's srv_rpc_config.max_request_bytes: main() must set it (gRPC
 * then accepts messages up to this plus SRV_GRPC_OVERHEAD_BYTES). One encoded
 * message larger than this is never sent: it is dropped and reported unreachable. */
#define SRV_PEER_MAX_REQUEST_BYTES ((size_t)8 << 20)
/* Per-peer send queue bound: beyond either, new messages are dropped and the peer
 * is reported unreachable. */
#define SRV_PEER_QUEUE_MSGS  4096
#define SRV_PEER_QUEUE_BYTES ((size_t)64 << 20)
/* Snapshot sends waiting per peer (besides the one in flight) before new ones fail. */
#define SRV_PEER_QUEUE_SNAPS 2
/* Rows returned by srv_peer_methods(). */
#define SRV_PEER_N_METHODS 3

typedef struct srv_peer srv_peer;
/* A forward being served: what on_forward hands on when it answers later. */
typedef struct srv_peer_reply srv_peer_reply;

typedef struct srv_peer_config {
	uint64_t self_id;    /* this member's raft id (non-zero) */
	uint64_t cluster_id; /* batches carrying another cluster id are dropped, and
	                      * forwards answered SRV_PEER_ECLUSTER; logged once to
	                      * stderr: "request cluster ID mismatch" */
	/*
	 * A message arrived (an srv_rpc thread). @msg is heap-allocated by the
	 * transport with its entries array and snapshot; every raft_blob in it was
	 * created on this thread with one reference, which now belongs to the callee
	 * together with the whole message: free it with srv_peer_msg_free(), from any
	 * one thread (the node thread steps it into raft, then frees it). Messages of
	 * one stream arrive in the order sent. Required.
	 */
	void (*on_message)(void *ctx, raft_message *msg);
	/* Messages to @to were lost (connection refused or broken, queue full, message
	 * too large): step RAFT_EV_UNREACHABLE. Coalesced: one call may stand for many
	 * lost messages. May be NULL. */
	void (*on_unreachable)(void *ctx, uint64_t to);
	/* A RAFT_MSG_SNAPSHOT to @to was delivered whole to the remote's on_message
	 * (@failed false) or failed (@failed true; on_unreachable follows): step
	 * RAFT_EV_SNAPSHOT_STATUS. Exactly once per snapshot passed to
	 * srv_peer_send() for a known peer, except that snapshots still waiting
	 * when srv_peer_remove(@to) or srv_peer_stop() runs are dropped without a
	 * report (one in flight at srv_peer_remove reports failed). May be NULL. */
	void (*on_snapshot_status)(void *ctx, uint64_t to, bool failed);
	/* Whether member @id has been removed from the cluster (an srv_rpc thread;
	 * must not block). A Raft stream from a removed member is ended with
	 * EC_MEMBER_REMOVED, as etcd's rafthttp answers such a peer "410 Gone", so
	 * that a member that missed its own removal learns of it. May be NULL. */
	bool (*is_removed)(void *ctx, uint64_t id);
	/* A peer ended our Raft stream with EC_MEMBER_REMOVED: this member has been
	 * removed from the cluster and should stop (a transport thread). May be
	 * called more than once. May be NULL. */
	void (*on_removed)(void *ctx, uint64_t by);
	/*
	 * Serve a peer's srv_peer_forward/srv_peer_fetch (an srv_rpc thread of the
	 * peer port, the one that also receives raft messages: must not block
	 * long). @from is the caller's member id (0 from srv_peer_fetch). On
	 * success return 0 and optionally set *@out to malloc'd bytes (*@outlen
	 * long; the transport frees them); or return a positive error that travels
	 * back unchanged (*@out is then ignored but still freed if set). A negative
	 * return reaches the caller as SRV_PEER_EREMOTE. Work that takes long (a
	 * scan) returns SRV_PEER_LATER instead, after handing @reply to another
	 * thread that answers with srv_peer_forward_reply (exactly once; @in is
	 * valid only during this call). May be NULL: every forward is then
	 * answered SRV_PEER_ENOHANDLER.
	 */
	int (*on_forward)(void *ctx, uint64_t from, uint32_t kind, const uint8_t *in, size_t inlen,
	                  uint8_t **out, size_t *outlen, srv_peer_reply *reply);
	void *ctx; /* passed to every callback */
	/* The identity and checks for dialing https:// / unixs:// peer URLs (the
	 * peer side's srv_tls; the transport takes its own reference). NULL: such
	 * URLs are dialed without a client certificate, verifying the member
	 * against the system's CA bundle (a Go client with an empty TLSInfo). */
	srv_tls *tls;
} srv_peer_config;

/*
 * srv_peer_new - create a transport and start its thread (calls grpc_init()).
 * @cfg: copied. @out: [out] the transport, to be freed with srv_peer_stop().
 * Returns 0, SRV_PEER_EINVAL (NULL argument, self_id 0, on_message NULL) or
 * SRV_PEER_ENOMEM (also when the thread cannot start).
 */
int srv_peer_new(const srv_peer_config *cfg, srv_peer **out);

/*
 * srv_peer_methods - fill @rows (capacity @cap) with the peer port's method table
 * (Raft and Snapshot bidi streams, Forward unary). Returns the number of rows the
 * table has (SRV_PEER_N_METHODS); only min(@cap, that) are written. Serve them
 * with srv_rpc_start(&cfg, rows, n, peer, ...) where the app pointer is the
 * srv_peer and cfg.max_request_bytes = SRV_PEER_MAX_REQUEST_BYTES.
 */
size_t srv_peer_methods(srv_method *rows, size_t cap);

/*
 * srv_peer_add - add member @id, or replace its URLs. Thread-safe.
 * @urls: @n >= 1 peer URLs ("http://127.0.0.1:2380", "https://...", "unix://...",
 * "unixs://...", or a plaintext "host:port"); copied.
 * The first is tried first; after a failed connection the next one is tried.
 * Replacing URLs closes the member's open streams (messages in flight are
 * reported unreachable; a snapshot in flight fails). Adding self_id is allowed
 * (e.g. for forward tests) but raft never sends to itself.
 * Returns 0, SRV_PEER_EINVAL (@id 0, @n 0, NULL or empty URL, another scheme),
 * SRV_PEER_ENOMEM, SRV_PEER_ESTOPPED.
 */
int srv_peer_add(srv_peer *p, uint64_t id, const char *const *urls, size_t n);

/*
 * srv_peer_remove - forget member @id: queued messages are dropped silently, its
 * streams are cancelled, a snapshot in flight reports failed, pending forwards
 * complete with an error. Unknown ids are ignored. Thread-safe.
 */
void srv_peer_remove(srv_peer *p, uint64_t id);

/*
 * srv_peer_send - queue @n messages (e.g. a raft ready's) for sending.
 * Call from one thread at a time (the node thread): blob data is read here, so
 * no other thread may change the blobs' reference counts meanwhile. Everything
 * needed is copied before returning (@msgs and their blobs stay the caller's);
 * never blocks on the network. Messages to unknown ids (and to self_id) are
 * dropped silently; a full queue or an oversized message drops the message and
 * reports on_unreachable later, from the transport thread. Messages to one peer
 * are written in the order queued; a RAFT_MSG_SNAPSHOT may overtake or lag them
 * (its own stream).
 */
void srv_peer_send(srv_peer *p, const raft_message *msgs, size_t n);

/*
 * srv_peer_forward_cb - a forward's completion, called exactly once on the
 * transport thread. @err: 0, the remote handler's positive error, or a
 * negative SRV_PEER_E* (ETIMEDOUT, EUNAVAILABLE, ENOPEER, ENOHANDLER, ECLUSTER,
 * EPROTO, EREMOTE, ESTOPPED). @out/@outlen: the answer bytes when @err is 0
 * (possibly NULL/0); valid only during the call.
 */
typedef void (*srv_peer_forward_cb)(void *cbctx, int err, const uint8_t *out, size_t outlen);

/*
 * srv_peer_forward - send a request of @kind with @len bytes at @in (copied) to
 * member @to's on_forward, asynchronously. @timeout_ms > 0 bounds the whole call.
 * Returns 0 when started (@cb then runs exactly once, never inside this call),
 * or SRV_PEER_EINVAL (NULL @cb, @timeout_ms <= 0), SRV_PEER_ENOPEER (@to unknown),
 * SRV_PEER_ENOMEM, SRV_PEER_ESTOPPED: then @cb is not called.
 */
int srv_peer_forward(srv_peer *p, uint64_t to, uint32_t kind, const uint8_t *in, size_t len,
                     int timeout_ms, srv_peer_forward_cb cb, void *cbctx);

/*
 * srv_peer_fetch - blocking forward to whichever of @n @urls answers first, for
 * start-up before any srv_peer exists (a joining member asks existing members
 * for the cluster). Requests go to all URLs at once with cluster id 0 and from 0;
 * the first answer with err 0 wins. https:// URLs are dialed with @tls (may be
 * NULL; see srv_peer_config.tls). @timeout_ms > 0 bounds the whole call.
 * On 0, *@out is malloc'd (caller frees; NULL when *@outlen is 0).
 * Returns 0; the first remote error (positive, or SRV_PEER_ENOHANDLER/EREMOTE)
 * when no URL answered 0 but one answered; else SRV_PEER_ETIMEDOUT or
 * SRV_PEER_EUNAVAILABLE; SRV_PEER_EINVAL (no URL, a bad URL, NULL out), or
 * SRV_PEER_ENOMEM. Thread-safe; calls grpc_init()/grpc_shutdown().
 */
int srv_peer_fetch(const char *const *urls, size_t n, srv_tls *tls, uint32_t kind,
                   const uint8_t *in, size_t len, int timeout_ms, uint8_t **out, size_t *outlen);

/*
 * srv_peer_forward_reply - answer the forward @reply that on_forward deferred
 * (it returned SRV_PEER_LATER), from any thread, exactly once. @rc and @out /
 * @outlen as on_forward's return and outputs: 0 with optional malloc'd bytes
 * (taken over and freed here), a positive error that travels back, or a
 * negative one (SRV_PEER_EREMOTE there). If the peer server is shutting down
 * the answer is dropped; the call still ends.
 */
void srv_peer_forward_reply(srv_peer_reply *reply, int rc, uint8_t *out, size_t outlen);

/* srv_peer_msg_free - free a message handed to on_message: its blobs (one
 * reference each), entries array, snapshot and itself. NULL is ok. */
void srv_peer_msg_free(raft_message *msg);

/*
 * srv_peer_stop - cancel every stream and forward (forward callbacks run with
 * SRV_PEER_ESTOPPED; no on_unreachable/on_snapshot_status is reported any more),
 * drop the queues, join the thread and free @p (calls grpc_shutdown()). Call it
 * after srv_rpc_shutdown() of the server that serves srv_peer_methods() with @p,
 * never from a callback, and not concurrently with other srv_peer_* calls on @p.
 * NULL is ok.
 */
void srv_peer_stop(srv_peer *p);

/* srv_peer_stats - counters for tests and metrics (all since srv_peer_new). */
typedef struct srv_peer_stats {
	uint64_t msgs_sent;        /* messages written to a stream */
	uint64_t msgs_dropped;     /* lost: stream failure, full queue, oversize */
	uint64_t batches_sent;     /* RaftBatch writes */
	uint64_t msgs_received;    /* handed to on_message */
	uint64_t batches_rejected; /* dropped: cluster id or format mismatch */
	uint64_t streams_opened;   /* Raft streams opened (reconnects included) */
} srv_peer_stats;

/* srv_peer_get_stats - fill *@st. Thread-safe. */
void srv_peer_get_stats(srv_peer *p, srv_peer_stats *st);

#endif
