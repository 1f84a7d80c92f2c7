/*
 * srv_rpc: metastore's gRPC runtime, built on the gRPC C core (grpc/grpc.h).
 *
 * It serves one method table (see srv_method; srv_methods.h builds etcd's) on
 * one or more listen addresses with a small pool of completion-queue threads.
 * A unary handler receives the decoded request and completes the call exactly
 * once, from any thread, with srv_call_reply() or srv_call_fail(). A streaming
 * handler (server-streaming or bidi) receives a reference-counted srv_stream:
 * it sends from any thread through a per-stream send queue, receives client
 * messages through a callback, learns of the stream's end through another, and
 * finishes with an etcd status from any thread.
 *
 * Rows whose handler is NULL, and method names that are not in the table, are
 * answered UNIMPLEMENTED at once. Errors reaching clients come from the
 * etcdcompat/ec_errors.h table: gRPC code ec_grpc_code(err), message
 * ec_strerror(err).
 *
 * This header deliberately includes no grpc header: handlers see only
 * protobuf-c messages and the accessors below.
 */
#ifndef METASTORE_SRV_RPC_H
#define METASTORE_SRV_RPC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <protobuf-c/protobuf-c.h>

#include "server/srv_tls.h"

/* etcd's --max-request-bytes default (1.5 MiB). */
#define SRV_DEFAULT_MAX_REQUEST_BYTES ((size_t)1572864)
/* etcd lets gRPC receive max_request_bytes plus this much (v3rpc grpcOverheadBytes). */
#define SRV_GRPC_OVERHEAD_BYTES ((size_t)512 * 1024)

typedef struct srv_rpc srv_rpc;       /* one running server */
typedef struct srv_call srv_call;     /* one unary call */
typedef struct srv_stream srv_stream; /* one server-streaming or bidi call */

/* How a method streams. protoc-c's service descriptors do not say: the table must. */
typedef enum {
	SRV_UNARY = 0,     /* one request, one response */
	SRV_SERVER_STREAM, /* one request, a stream of responses (Maintenance.Snapshot) */
	SRV_BIDI,          /* streams both ways (Watch.Watch, Lease.LeaseKeepAlive) */
} srv_kind;

/*
 * srv_unary_fn - handle one unary call.
 * Runs on a completion-queue thread; must not block for long (hand slow work to
 * another thread and complete from there). @req is the decoded request, owned by
 * the runtime and valid until the call is completed with srv_call_reply() or
 * srv_call_fail(), which the handler (or whoever it hands @call to) must call
 * exactly once.
 */
typedef void (*srv_unary_fn)(srv_call *call, const ProtobufCMessage *req);

/*
 * srv_stream_fn - open one streaming call.
 * Runs on a completion-queue thread. For SRV_SERVER_STREAM @req is the decoded
 * request (valid only during this call: copy what you need); for SRV_BIDI it is
 * NULL and client messages arrive through srv_stream_ops.on_recv.
 * The handler receives one reference to @st and must release it with
 * srv_stream_unref() exactly once (at once if it keeps nothing, or later, e.g.
 * from on_close). Set callbacks with srv_stream_set_ops() before returning.
 */
typedef void (*srv_stream_fn)(srv_stream *st, const ProtobufCMessage *req);

/*
 * One row of a method table (Redis-style command table). The runtime copies the
 * rows it is given; names and descriptors must outlive the server (string
 * literals and generated descriptors do).
 */
typedef struct srv_method {
	const char *name;                          /* "/etcdserverpb.KV/Range" */
	srv_kind kind;
	const ProtobufCMessageDescriptor *req;     /* request message type */
	const ProtobufCMessageDescriptor *resp;    /* response message type */
	srv_unary_fn unary;   /* SRV_UNARY rows; NULL answers UNIMPLEMENTED */
	srv_stream_fn stream; /* streaming rows; NULL answers UNIMPLEMENTED */
} srv_method;

/*
 * Server configuration. Zero in any numeric field means the default given.
 */
typedef struct srv_rpc_config {
	/* Listen addresses: etcd URLs ("http://127.0.0.1:2379", "https://h:p",
	 * "unix://name:port", "unixs://name:port": a unix socket at the path
	 * "name:port", relative to the working directory, as etcd's) or gRPC core
	 * addresses ("127.0.0.1:2379", "[::1]:0", "unix:/path"), which are
	 * plaintext, except "unixs-abstract:NAME": TLS on the abstract unix
	 * socket NAME (srv_listen relays TLS gRPC clients there). Port 0 binds a
	 * free port, reported by srv_rpc_port(). At least one, unless adopt_fds. */
	const char *const *listen;
	size_t n_listen;
	/* TLS for the https:// and unixs:// addresses (required if there is one;
	 * see srv_tls.h); NULL when every address is plaintext. The server takes
	 * its own reference. On a side whose srv_tls_checks_client_addr() is true
	 * (peers), every call arriving with a client certificate is checked with
	 * srv_tls_check_client_addr() first and, if refused, ended with
	 * UNAVAILABLE before any handler sees it. */
	srv_tls *tls;
	int threads;              /* completion-queue threads; default 2 */
	size_t max_request_bytes; /* etcd --max-request-bytes; default 1.5 MiB. gRPC
	                           * itself rejects messages over this plus
	                           * SRV_GRPC_OVERHEAD_BYTES with RESOURCE_EXHAUSTED */
	int keepalive_min_time_ms; /* least interval between client pings; default
	                            * 5000 (etcd --grpc-keepalive-min-time) */
	int keepalive_time_ms;     /* server→client ping interval; default 2 h */
	int keepalive_timeout_ms;  /* close after an unanswered ping; default 20 s */
	uint32_t max_concurrent_streams; /* HTTP/2 streams a client connection may
	                                  * have open at once (etcd
	                                  * --max-concurrent-streams); 0 = the
	                                  * core's default (unlimited) */
	int max_ping_strikes;      /* pings faster than keepalive_min_time_ms tolerated
	                            * before GOAWAY; default 0 = unlimited: an etcd
	                            * client's pings are never answered with GOAWAY */
	int shutdown_grace_ms;     /* srv_rpc_shutdown: wait this long for in-flight
	                            * calls before cancelling them; default 2000 */
	int shutdown_hard_ms;      /* then wait this long for the app to release
	                            * cancelled calls and streams; default 5000 */
	bool adopt_fds; /* connections accepted elsewhere arrive through
	                 * srv_rpc_adopt_fd (srv_listen); @listen may then be empty */
	bool metrics;   /* count grpc-prometheus's grpc_server_* per method
	                 * (srv_rpc_metrics) */
	bool no_polling; /* the worker threads wait on non-polling queues
	                  * (srv_rpc_cq_create(false)) and only run this server's
	                  * calls; its sockets are driven by the process's other
	                  * polling threads (another srv_rpc's workers), which must
	                  * run whenever this server has traffic. A polling queue
	                  * without a thread is registered as well: the core needs
	                  * one to take connections. */
} srv_rpc_config;

/*
 * srv_rpc_tune_runtime - turn off the gRPC core's absl::Mutex deadlock
 * detection, which Debian's abseil (built without NDEBUG) leaves on: every
 * lock then updates a global lock graph (GraphCycles), a few per cent of the
 * server's CPU under load. The abseil call is C++ and found by its symbol at
 * run time; when no abseil of a known name is loaded, nothing changes. Call
 * once, before the first grpc_init(). Returns whether detection was turned off.
 */
bool srv_rpc_tune_runtime(void);

/*
 * srv_rpc_cq_create - a completion queue for grpc_completion_queue_next().
 * @polling: false for a queue whose thread need not poll. The gRPC core's
 *           epoll1 engine hands the role of the thread that polls every socket
 *           of the process around among all threads waiting on polling queues,
 *           and each hand-off wakes a thread; a thread waiting on a
 *           non-polling queue is woken only for its own events. Client calls
 *           over sockets need a polling queue (the core asserts it); in-process
 *           client calls (srv_rpc_inproc_channel) and a server's calls (see
 *           srv_rpc_config.no_polling) do not, as long as another thread polls.
 * Returns the queue (the caller shuts it down and destroys it), or NULL.
 */
struct grpc_completion_queue;
struct grpc_completion_queue *srv_rpc_cq_create(bool polling);

/*
 * srv_rpc_start - bind, start the completion-queue threads and serve @methods.
 * @cfg:     listen addresses and limits (see srv_rpc_config).
 * @methods: @n rows; copied. Names must be unique and start with '/'; each row
 *           needs both descriptors; a row's handler must match its kind.
 * @app:     opaque pointer handed back by srv_call_app()/srv_stream_app().
 * @out:     [out] the running server, to be stopped with srv_rpc_shutdown().
 * @err:     [out] a NUL-terminated reason on failure (@errlen bytes at most).
 * Returns 0 on success; -1 on a bad table or config, an address that cannot be
 * bound (already in use: SO_REUSEPORT is off), an https:// or unixs:// address
 * without cfg.tls, or out of memory. Calls
 * grpc_init(); srv_rpc_shutdown() calls grpc_shutdown().
 */
int srv_rpc_start(const srv_rpc_config *cfg, const srv_method *methods, size_t n, void *app,
		  srv_rpc **out, char *err, size_t errlen);

/*
 * srv_rpc_shutdown - stop gracefully and free @rpc.
 * Stops accepting calls and connections at once; lets in-flight calls and
 * streams finish for up to cfg.shutdown_grace_ms; then cancels what remains
 * (open streams see on_close(cancelled = true); a later srv_call_reply or
 * srv_stream_send is harmless) and waits up to cfg.shutdown_hard_ms for the app
 * to complete every srv_call and release every srv_stream it holds; then joins
 * the threads and frees everything. If the app still holds calls after that,
 * @rpc is leaked (threads keep running, so later completions stay safe) and a
 * line goes to stderr. Must not be called from a handler or callback, nor twice.
 */
void srv_rpc_shutdown(srv_rpc *rpc);

/* srv_rpc_port - the port bound for listen address @i (0 if out of range). */
int srv_rpc_port(const srv_rpc *rpc, size_t i);

/* srv_rpc_max_request_bytes - the configured etcd max request size (for the
 * proposal path's "etcdserver: request is too large" check). */
size_t srv_rpc_max_request_bytes(const srv_rpc *rpc);

/* srv_rpc_max_concurrent_streams - cfg.max_concurrent_streams as configured
 * (0 = no limit), for the JSON gateway's own limit of calls in flight. */
uint32_t srv_rpc_max_concurrent_streams(const srv_rpc *rpc);

/*
 * srv_rpc_msg_decode - decode a received gRPC byte buffer as message type @d
 * (for the runtime and other gRPC code of the server, e.g. the peer
 * transport's client side). Returns the message (free with
 * protobuf_c_message_free_unpacked), or NULL if it does not parse. Avoids a copy
 * when the buffer is one uncompressed slice. @bb is not consumed.
 */
struct grpc_byte_buffer;
ProtobufCMessage *srv_rpc_msg_decode(struct grpc_byte_buffer *bb,
                                     const ProtobufCMessageDescriptor *d);

/* srv_rpc_msg_encode - @m serialised into a new one-slice byte buffer (the
 * caller destroys it, or hands it to a send op); *@len (when not NULL) gets
 * the encoded size. */
struct grpc_byte_buffer *srv_rpc_msg_encode(const ProtobufCMessage *m, size_t *len);

/*
 * srv_rpc_adopt_fd - serve the accepted plaintext connection @fd (a TCP or
 * unix stream socket whose first bytes, the HTTP/2 preface, may have been
 * peeked at but not read) as one more HTTP/2 channel of @rpc
 * (grpc_server_add_channel_from_fd; made non-blocking, TCP_NODELAY). On
 * success the core owns @fd. Returns 0, or -1 (the server was not started
 * with adopt_fds, or is shutting down) leaving @fd to the caller. Any thread.
 */
int srv_rpc_adopt_fd(srv_rpc *rpc, int fd);

/*
 * srv_rpc_inproc_channel - a new client channel into @rpc on the gRPC core's
 * in-process transport (no socket, no HTTP/2 framing, no TLS), for the /v3
 * JSON gateway (srv_gateway.h). Calls made on it are ordinary calls of the
 * method table: metadata ("token", "authorization"), auth, metrics, leader
 * checks and limits apply as to calls from the network; they carry no client
 * certificate (srv_call_peer_cn answers -1). Bound to the core's
 * grpc_inproc_channel_create, which libgrpc exports without a public header.
 * The caller owns the channel and destroys it (grpc_channel_destroy) before
 * srv_rpc_shutdown. Returns NULL once shutdown has begun. Any thread.
 */
struct grpc_channel;
struct grpc_channel *srv_rpc_inproc_channel(srv_rpc *rpc);

/* srv_rpc_metrics - the server's grpc_server_* counters (cfg.metrics), NULL
 * without; render with srv_metrics_grpc_render while @rpc runs. */
struct srv_metrics_grpc;
const struct srv_metrics_grpc *srv_rpc_metrics(const srv_rpc *rpc);

/* srv_rpc_live_calls - calls and streams currently alive (accepted and not yet
 * freed), for tests and metrics. */
size_t srv_rpc_live_calls(const srv_rpc *rpc);

/* ---- unary calls ---------------------------------------------------------- */

/*
 * srv_call_reply - complete @call with status OK and @resp.
 * Callable from any thread, exactly once per call (a second completion is
 * ignored and logged). @resp is serialised before returning; the caller keeps
 * ownership. @call must not be used afterwards. If the client went away the
 * reply is silently dropped.
 */
void srv_call_reply(srv_call *call, const ProtobufCMessage *resp);

/*
 * srv_call_fail - complete @call with the etcd error @ec_err: gRPC status
 * ec_grpc_code(ec_err) and message ec_strerror(ec_err). Same rules as
 * srv_call_reply. EC_OK is not a failure: it is sent as EC_INTERNAL.
 */
void srv_call_fail(srv_call *call, int ec_err);

/*
 * srv_call_resume - run @fn(@call, @arg) on one of the runtime's
 * completion-queue threads, soon (an empty batch on the call that comes back
 * at once). For work that another thread learned it may do but should not do
 * itself (the node loop hands confirmed linearizable reads back this way).
 * Callable from any thread while @call is not completed, and not while another
 * thread starts a batch on it (reply after @fn ran, or from it). @fn runs
 * exactly once; it must complete @call or hand it on.
 */
typedef void (*srv_resume_fn)(srv_call *call, void *arg);
void srv_call_resume(srv_call *call, srv_resume_fn fn, void *arg);

/* srv_call_app - the app pointer given to srv_rpc_start. */
void *srv_call_app(const srv_call *call);

/* srv_call_method - the table row this call is for. */
const srv_method *srv_call_method(const srv_call *call);

/*
 * srv_call_metadata - the value of request metadata @key (lower case, e.g.
 * "token"), not NUL-terminated, @len set to its length; NULL if absent. Valid
 * until the call completes (for a stream: until it is freed).
 */
const char *srv_call_metadata(const srv_call *call, const char *key, size_t *len);

/*
 * srv_call_peer_cn - the Common Name of the verified client certificate of the
 * connection @call arrived on, copied NUL-terminated into @buf (@cap bytes).
 * Returns its length (0 for a verified certificate that has no CN); -1 when
 * the connection has no verified client certificate (a plaintext port, or a
 * TLS port that requests none: no --trusted-ca-file / --client-cert-auth); -2
 * when the CN does not fit in @cap bytes (it is never truncated; @buf is then
 * ""). A TLS port either requires and verifies client certificates or does not
 * ask for them, so a certificate seen here is always a verified one. etcd
 * uses this CN as the user name when auth is enabled and no token is sent.
 * Any thread, while @call is alive (for a stream: srv_stream_call()).
 */
int srv_call_peer_cn(const srv_call *call, char *buf, size_t cap);

/* srv_call_require_leader - whether the client sent etcd's require-leader
 * metadata ("hasleader" = "true", as etcdctl watch and clientv3.WithRequireLeader). */
bool srv_call_require_leader(const srv_call *call);

/* srv_call_remaining_ms - milliseconds left before the client's deadline
 * (grpc-timeout); 0 if already past; -1 if the client set none. */
int64_t srv_call_remaining_ms(const srv_call *call);

/* ---- streams -------------------------------------------------------------- */

/*
 * Stream callbacks, all run on the stream's completion-queue thread, one at a
 * time, never after on_close. Any may be NULL. From inside them the app may
 * send, finish, ref and unref.
 */
typedef struct srv_stream_ops {
	/* A client message (bidi only), decoded; valid only during the callback.
	 * @msg NULL: the client half-closed (sent its last message); the stream stays
	 * open until the app finishes it or the client cancels. The next message is
	 * read only after this returns (backpressure). */
	void (*on_recv)(srv_stream *st, void *ctx, const ProtobufCMessage *msg);
	/* The send queue just became empty (all queued messages written to the
	 * transport): a place to send the next chunk of a large stream. */
	void (*on_drain)(srv_stream *st, void *ctx);
	/* The stream is over: finished by the app and the status sent
	 * (@cancelled false), or cancelled: the client cancelled, disconnected, hit
	 * its deadline, or the server is shutting down (@cancelled true). Called
	 * exactly once. Sends after this are dropped. The app should now release the
	 * references it holds. */
	void (*on_close)(srv_stream *st, void *ctx, bool cancelled);
} srv_stream_ops;

/* srv_stream_set_ops - install @ops (copied) and @ctx. Only from the open handler. */
void srv_stream_set_ops(srv_stream *st, const srv_stream_ops *ops, void *ctx);

/*
 * srv_stream_send - queue @msg (serialised now; caller keeps ownership) for
 * sending. Any thread. Messages leave in the order queued; at most one
 * SEND_MESSAGE is outstanding on the call. Returns 0 if queued; -1 if the
 * stream is closed or already finishing (dropped), or on out of memory.
 */
int srv_stream_send(srv_stream *st, const ProtobufCMessage *msg);

/*
 * srv_stream_send_bytes - queue @n bytes at @p, already a packed message of
 * the method's response type (copied now), as srv_stream_send. For producers
 * that encode once and send to many streams (the watch hub).
 */
int srv_stream_send_bytes(srv_stream *st, const void *p, size_t n);

/*
 * srv_stream_send_bytes_held / srv_stream_flush - as srv_stream_send_bytes,
 * but an idle stream does not start sending until srv_stream_flush (or
 * srv_stream_finish): a producer that queues several messages on a stream in
 * one round (the watch hub) gets them written together (each but the last
 * with GRPC_WRITE_BUFFER_HINT). The caller must flush every stream it held a
 * message on, from the same thread, before it waits for anything.
 */
int srv_stream_send_bytes_held(srv_stream *st, const void *p, size_t n);
void srv_stream_flush(srv_stream *st);

/*
 * srv_stream_finish - end the stream with @ec_err (EC_OK for status OK; else
 * ec_grpc_code/ec_strerror) after every message already queued has been sent.
 * Any thread. Only the first finish counts; ignored once the stream is closed.
 * Does not release the caller's reference.
 */
void srv_stream_finish(srv_stream *st, int ec_err);

/* srv_stream_ref / srv_stream_unref - take / release a reference. Any thread.
 * The stream is freed when the last reference goes and no operation is
 * outstanding; it stays safe to call every srv_stream_* on a held reference
 * after the client has gone away. */
void srv_stream_ref(srv_stream *st);
void srv_stream_unref(srv_stream *st);

/* srv_stream_app - the app pointer given to srv_rpc_start. */
void *srv_stream_app(const srv_stream *st);

/* srv_stream_call - the call behind @st, for srv_call_metadata,
 * srv_call_require_leader, srv_call_remaining_ms, srv_call_peer_cn and
 * srv_call_method only
 * (never srv_call_reply/srv_call_fail). Valid while a reference is held. */
const srv_call *srv_stream_call(const srv_stream *st);

/* srv_stream_queued_bytes - bytes queued or in flight, not yet written; lets a
 * producer (the watch hub) notice a slow client. */
size_t srv_stream_queued_bytes(const srv_stream *st);

/* srv_stream_closed - whether on_close has happened (or is about to). */
bool srv_stream_closed(const srv_stream *st);

#endif
