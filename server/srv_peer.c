/*
 * srv_peer.c: the peer transport behind srv_peer.h.
 *
 * Client shape. One completion queue and one thread per srv_peer drive every
 * outgoing call: each peer's Raft stream, its snapshot stream and forwards.
 * Every call is one heap object (pcall) with {kind, owner} tags (ptag), one per
 * kind of outstanding batch; it counts its outstanding batches and is freed
 * when the count reaches zero after its status came back. One mutex (sp->mu)
 * guards all client state; grpc_call_start_batch is called with it held, so
 * batches on one call are serialised, and no callback is ever called with it
 * held: event handlers fill a report that is fired after unlocking.
 *
 * Raft stream per peer: IDLE (no stream) -> OPEN (stream up, writes go out one
 * at a time, each write takes everything queued up to SRV_PEER_BATCH_BYTES) ->
 * on status (any: the stream is over) BACKOFF until retry_at, then IDLE again;
 * the next queued message reopens it. Messages in flight or queued when a
 * stream dies are dropped and reported unreachable (raft resends). The
 * queued messages are pre-encoded RaftMessage bytes with their RaftBatch field
 * key and length in front, so a write is a header plus concatenation.
 *
 * Reports that arise on the node thread (queue full) are only flagged there;
 * the transport thread's sweep (every TICK_MS) fires them, so srv_peer_send
 * never calls back into the lead.
 *
 * Server side: srv_rpc streams; RaftBatch decoded by srv_rpc, converted by
 * srv_peer_codec.c, handed to on_message. Snapshot streams reassemble into one
 * blob allocated up front from data_len.
 */
#include "server/srv_peer.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <grpc/byte_buffer.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/slice.h>
#include <grpc/support/time.h>

#include "etcdcompat/ec_errors.h"
#include "peer.pb-c.h"
#include "server/srv_log.h"
#include "server/srv_metrics.h"
#include "server/srv_peer_int.h"

#define M_RAFT "/metastore.Peer/Raft"
#define M_SNAP "/metastore.Peer/Snapshot"
#define M_FWD  "/metastore.Peer/Forward"

#define TICK_MS        10 /* sweep period of the transport thread */
#define BACKOFF_MIN_MS 50
#define BACKOFF_MAX_MS 1000
/* Room before an encoded message for its RaftBatch.msgs key and length. */
#define PREFIX_ROOM   11
#define KEY_MSGS      ((4u << 3) | 2u) /* RaftBatch field 4, length-delimited */
#define SWEEP_REPORTS 64

/* ---- types ---------------------------------------------------------------- */

typedef enum { PT_SEND, PT_RECV, PT_STATUS, PT_FINAL } ptag_kind;

struct pcall;
typedef struct ptag {
	ptag_kind kind;
	struct pcall *owner;
} ptag;

typedef enum { PC_RAFT, PC_SNAP, PC_FWD } pcall_kind;

/* One queued message: buf[off .. off+len) is key, length and RaftMessage. */
typedef struct qnode {
	struct qnode *next;
	uint64_t to;
	uint8_t *buf;
	size_t off, len;
	bool snap; /* a snapshot job instead (see snapjob) */
} qnode;

/* One snapshot to send: the encoded message (as a qnode) plus a copy of its data. */
typedef struct snapjob {
	struct snapjob *next;
	uint8_t *meta; /* meta[meta_off .. meta_off+meta_len) as in qnode */
	size_t meta_off, meta_len;
	uint8_t *data;
	size_t data_len;
	size_t sent;     /* data bytes written so far */
	bool first_sent; /* the message itself has been written */
} snapjob;

typedef enum { PS_IDLE, PS_OPEN, PS_BACKOFF } peer_state;

typedef struct peer {
	struct peer *next;
	uint64_t id;
	char **targets;        /* gRPC targets ("127.0.0.1:2380"), n_targets */
	grpc_channel **chans;  /* one per target, created on first use */
	size_t n_targets, cur; /* target in use */
	peer_state state;
	int backoff_ms;
	int64_t retry_at;   /* BACKOFF: when to go IDLE */
	struct pcall *raft; /* the OPEN stream */
	qnode *qh, *qt;
	size_t q_count, q_bytes;
	snapjob *sh, *st; /* snapshots waiting */
	size_t n_snaps;
	struct pcall *snap;         /* the snapshot stream in flight */
	bool unreach_pending;       /* report on_unreachable at the next sweep */
	unsigned snap_fail_pending; /* report this many failed snapshot statuses */
	bool removed;
	size_t live; /* calls still referring to this peer */
	uint64_t hb_sent_ns; /* oldest heartbeat not yet answered (RTT metric), 0: none */
} peer;

typedef struct pcall {
	pcall_kind kind;
	struct srv_peer *sp;
	peer *pe;
	grpc_call *call;
	int outstanding; /* batches not yet returned */
	ptag t_send, t_recv, t_status, t_final;
	grpc_metadata_array md_in, trailers;
	grpc_status_code code;
	grpc_slice details;
	grpc_byte_buffer *send_bb, *recv_bb;
	bool md_sent, send_busy, got_status, close_sent;
	size_t inflight;        /* PC_RAFT: messages in the outstanding write */
	snapjob *job;           /* PC_SNAP */
	srv_peer_forward_cb cb; /* PC_FWD */
	void *cbctx;
	struct pcall *lnext, *lprev; /* sp->calls */
} pcall;

struct srv_peer {
	srv_peer_config cfg;
	pthread_mutex_t mu;
	pthread_cond_t idle_cv; /* the thread waits here while there is no peer */
	grpc_completion_queue *cq;
	pthread_t thread;
	peer *peers;
	pcall *calls;
	size_t n_calls;
	bool stopping, cq_shut;
	int64_t last_sweep;
	atomic_bool logged_cluster, logged_format, logged_decode;
	atomic_uint_fast64_t st_sent, st_dropped, st_batches, st_received, st_rejected, st_opened;
};

/* Callbacks to fire after unlocking. */
typedef struct report {
	bool unreach;
	uint64_t unreach_id;
	bool snap;
	bool snap_failed;
	uint64_t snap_id;
	bool removed; /* a peer refused our Raft stream: we were removed */
	uint64_t removed_by;
	srv_peer_forward_cb cb;
	void *cbctx;
	int err;
	Metastore__PeerForwardResponse *resp;
} report;

/* ---- small helpers -------------------------------------------------------- */

const char *srv_peer_strerror(int err)
{
	switch (err) {
	case 0:
		return "ok";
	case SRV_PEER_EINVAL:
		return "peer transport: invalid argument";
	case SRV_PEER_ENOMEM:
		return "peer transport: out of memory";
	case SRV_PEER_ENOPEER:
		return "peer transport: unknown member";
	case SRV_PEER_EUNAVAILABLE:
		return "peer transport: member unreachable";
	case SRV_PEER_ETIMEDOUT:
		return "peer transport: request timed out";
	case SRV_PEER_ENOHANDLER:
		return "peer transport: member serves no forwards";
	case SRV_PEER_ECLUSTER:
		return "peer transport: request cluster ID mismatch";
	case SRV_PEER_EPROTO:
		return "peer transport: malformed answer";
	case SRV_PEER_ESTOPPED:
		return "peer transport: stopped";
	case SRV_PEER_EREMOTE:
		return "peer transport: remote handler failed";
	default:
		return err > 0 ? "remote handler error" : "peer transport: unknown error";
	}
}

static gpr_timespec deadline_in(int ms)
{
	return gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC), gpr_time_from_millis(ms, GPR_TIMESPAN));
}

/* Log once per srv_peer under @flag: @what with the remote's value @got (under
 * @got_key) and ours @want (under @want_key), as hex ids. */
static void log_once(atomic_bool *flag, const char *what, const char *got_key, uint64_t got,
                     const char *want_key, uint64_t want, uint64_t from)
{
	if (!atomic_exchange(flag, true))
		srv_log_warn(what, SRV_LF_ID("remote-peer-id", from), SRV_LF_ID(got_key, got),
		             SRV_LF_ID(want_key, want),
		             SRV_LF_STR("note", "further ones are not logged"));
}

/* A peer URL as kept per target: a copy of "http://h:p", "https://h:p",
 * "unix://x", "unixs://x" or a bare "h:p" (plaintext), trailing slashes
 * dropped; NULL on a bad URL (another scheme, nothing after it) or out of
 * memory. channel_new turns it into a gRPC target and credentials. */
static char *url_target(const char *url)
{
	static const char *const schemes[] = {"http://", "https://", "unix://", "unixs://"};
	if (url == NULL || url[0] == 0)
		return NULL;
	size_t skip = 0;
	for (size_t i = 0; i < sizeof schemes / sizeof schemes[0]; i++)
		if (strncmp(url, schemes[i], strlen(schemes[i])) == 0)
			skip = strlen(schemes[i]);
	if (skip == 0 && strstr(url, "://") != NULL)
		return NULL;
	size_t n = strlen(url);
	while (n > skip && url[n - 1] == '/')
		n--;
	if (n == skip)
		return NULL;
	char *t = malloc(n + 1);
	if (t != NULL) {
		memcpy(t, url, n);
		t[n] = 0;
	}
	return t;
}

static grpc_arg int_arg(const char *key, int value)
{
	grpc_arg a;
	memset(&a, 0, sizeof a);
	a.type = GRPC_ARG_INTEGER;
	a.key = (char *)key;
	a.value.integer = value;
	return a;
}

/* A client channel to the peer URL @url (as url_target keeps it) with the
 * transport's limits: no message size cap, quick reconnects (core's own
 * back-off would wait up to 2 minutes), keepalive. https:// and unixs:// use
 * srv_tls_channel_creds(@tls) (a unix socket's TLS name is the URL's host);
 * NULL only if those cannot be made. */
static grpc_channel *channel_new(const char *url, srv_tls *tls)
{
	bool secure = strncmp(url, "https://", 8) == 0 || strncmp(url, "unixs://", 8) == 0;
	bool unix_sock = strncmp(url, "unix://", 7) == 0 || strncmp(url, "unixs://", 8) == 0;
	const char *rest = strstr(url, "://") != NULL ? strstr(url, "://") + 3 : url;
	char target[1024], host[256];
	snprintf(target, sizeof target, "%s%s", unix_sock ? "unix:" : "", rest);
	const char *colon = strrchr(rest, ':');
	snprintf(host, sizeof host, "%.*s", (int)(colon != NULL ? colon - rest : (long)strlen(rest)),
	         rest);
	grpc_arg args[10] = {
	        int_arg(GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH, -1),
	        int_arg(GRPC_ARG_MAX_SEND_MESSAGE_LENGTH, -1),
	        int_arg(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, BACKOFF_MIN_MS),
	        int_arg(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, BACKOFF_MIN_MS),
	        int_arg(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, BACKOFF_MAX_MS),
	        int_arg(GRPC_ARG_KEEPALIVE_TIME_MS, 10000),
	        int_arg(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 10000),
	        int_arg(GRPC_ARG_HTTP2_MAX_PINGS_WITHOUT_DATA, 0),
	        int_arg(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1),
	};
	size_t nargs = 9;
	if (secure && unix_sock) {
		memset(&args[nargs], 0, sizeof args[nargs]);
		args[nargs].type = GRPC_ARG_STRING;
		args[nargs].key = (char *)GRPC_SSL_TARGET_NAME_OVERRIDE_ARG;
		args[nargs].value.string = host;
		nargs++;
	}
	grpc_channel_args ca = {nargs, args};
	grpc_channel_credentials *cr =
	        secure ? srv_tls_channel_creds(tls) : grpc_insecure_credentials_create();
	if (cr == NULL)
		return NULL;
	grpc_channel *ch = grpc_channel_create(target, cr, &ca);
	grpc_channel_credentials_release(cr);
	return ch;
}

/* Write the RaftBatch.msgs key and varint @len right before buf[PREFIX_ROOM];
 * returns the offset where it starts. */
static size_t put_prefix(uint8_t *buf, size_t len)
{
	uint8_t tmp[PREFIX_ROOM];
	size_t n = 0;
	tmp[n++] = (uint8_t)KEY_MSGS;
	do {
		uint8_t b = len & 0x7f;
		len >>= 7;
		tmp[n++] = (uint8_t)(b | (len ? 0x80 : 0));
	} while (len);
	memcpy(buf + PREFIX_ROOM - n, tmp, n);
	return PREFIX_ROOM - n;
}

/* Bytes for a batch header (format, cluster id, from, optional chunk) followed
 * by @extra bytes the caller fills at *@tail. NULL on failure. */
static size_t batch_slice(const srv_peer *sp, uint64_t snap_off, const uint8_t *chunk,
                          size_t chunk_len, size_t extra, grpc_slice *out)
{
	Metastore__RaftBatch h = METASTORE__RAFT_BATCH__INIT;
	h.format = SRV_PEER_FORMAT;
	h.cluster_id = sp->cfg.cluster_id;
	h.from = sp->cfg.self_id;
	h.snap_offset = snap_off;
	h.snap_chunk.data = (uint8_t *)chunk;
	h.snap_chunk.len = chunk_len;
	size_t hl = protobuf_c_message_get_packed_size(&h.base);
	/* Never an inlined slice: *@tail must point at heap bytes that stay put when
	 * the slice struct is returned by value. */
	*out = grpc_slice_malloc_large(hl + extra);
	protobuf_c_message_pack(&h.base, GRPC_SLICE_START_PTR(*out));
	return hl;
}

static grpc_byte_buffer *slice_bb(grpc_slice s)
{
	grpc_byte_buffer *bb = grpc_raw_byte_buffer_create(&s, 1);
	grpc_slice_unref(s);
	return bb;
}

/* Transport error for a failed call's status. */
static int status_err(grpc_status_code code, bool stopping)
{
	if (stopping)
		return SRV_PEER_ESTOPPED;
	switch (code) {
	case GRPC_STATUS_DEADLINE_EXCEEDED:
		return SRV_PEER_ETIMEDOUT;
	case GRPC_STATUS_UNAVAILABLE:
	case GRPC_STATUS_CANCELLED:
		return SRV_PEER_EUNAVAILABLE;
	default:
		return SRV_PEER_EPROTO;
	}
}

/* ---- queues and peers (sp->mu held) --------------------------------------- */

static void qnode_free(qnode *q)
{
	if (q != NULL) {
		free(q->buf);
		free(q);
	}
}

static void snapjob_free(snapjob *j)
{
	if (j != NULL) {
		free(j->meta);
		free(j->data);
		free(j);
	}
}

/* Drop everything queued for @pe; returns the number of messages dropped. */
static size_t peer_drop_queue_locked(srv_peer *sp, peer *pe)
{
	size_t n = pe->q_count;
	while (pe->qh != NULL) {
		qnode *q = pe->qh;
		pe->qh = q->next;
		qnode_free(q);
	}
	pe->qt = NULL;
	pe->q_count = 0;
	pe->q_bytes = 0;
	atomic_fetch_add(&sp->st_dropped, n);
	return n;
}

/* Drop waiting snapshots; returns how many. */
static size_t peer_drop_snaps_locked(peer *pe)
{
	size_t n = pe->n_snaps;
	while (pe->sh != NULL) {
		snapjob *j = pe->sh;
		pe->sh = j->next;
		snapjob_free(j);
	}
	pe->st = NULL;
	pe->n_snaps = 0;
	return n;
}

static void peer_close_channels(peer *pe)
{
	for (size_t i = 0; i < pe->n_targets; i++) {
		if (pe->chans[i] != NULL)
			grpc_channel_destroy(pe->chans[i]);
		free(pe->targets[i]);
	}
	free(pe->chans);
	free(pe->targets);
	pe->chans = NULL;
	pe->targets = NULL;
	pe->n_targets = 0;
}

static void peer_free(srv_peer *sp, peer *pe)
{
	peer_drop_queue_locked(sp, pe);
	peer_drop_snaps_locked(pe);
	peer_close_channels(pe);
	free(pe);
}

static peer *peer_find_locked(srv_peer *sp, uint64_t id)
{
	for (peer *pe = sp->peers; pe != NULL; pe = pe->next)
		if (pe->id == id)
			return pe;
	return NULL;
}

static grpc_channel *peer_channel_locked(srv_peer *sp, peer *pe)
{
	if (pe->chans[pe->cur] == NULL)
		pe->chans[pe->cur] = channel_new(pe->targets[pe->cur], sp->cfg.tls);
	return pe->chans[pe->cur];
}

/* ---- call objects (sp->mu held) ------------------------------------------- */

static pcall *pcall_new_locked(srv_peer *sp, peer *pe, pcall_kind kind, const char *method,
                               gpr_timespec deadline)
{
	pcall *c = calloc(1, sizeof *c);
	if (c == NULL)
		return NULL;
	c->kind = kind;
	c->sp = sp;
	c->pe = pe;
	c->t_send = (ptag){PT_SEND, c};
	c->t_recv = (ptag){PT_RECV, c};
	c->t_status = (ptag){PT_STATUS, c};
	c->t_final = (ptag){PT_FINAL, c};
	grpc_metadata_array_init(&c->md_in);
	grpc_metadata_array_init(&c->trailers);
	c->details = grpc_empty_slice();
	c->code = GRPC_STATUS_UNKNOWN;
	grpc_channel *ch = peer_channel_locked(sp, pe);
	c->call = ch == NULL ? NULL
	                     : grpc_channel_create_call(ch, NULL, GRPC_PROPAGATE_DEFAULTS, sp->cq,
	                                                grpc_slice_from_static_string(method), NULL,
	                                                deadline, NULL);
	if (c->call == NULL) {
		grpc_metadata_array_destroy(&c->md_in);
		grpc_metadata_array_destroy(&c->trailers);
		free(c);
		return NULL;
	}
	c->lnext = sp->calls;
	if (sp->calls != NULL)
		sp->calls->lprev = c;
	sp->calls = c;
	sp->n_calls++;
	pe->live++;
	return c;
}

static void pcall_free_locked(pcall *c)
{
	srv_peer *sp = c->sp;
	peer *pe = c->pe;
	if (c->lprev != NULL)
		c->lprev->lnext = c->lnext;
	else
		sp->calls = c->lnext;
	if (c->lnext != NULL)
		c->lnext->lprev = c->lprev;
	sp->n_calls--;
	grpc_call_unref(c->call);
	grpc_metadata_array_destroy(&c->md_in);
	grpc_metadata_array_destroy(&c->trailers);
	grpc_slice_unref(c->details);
	if (c->send_bb != NULL)
		grpc_byte_buffer_destroy(c->send_bb);
	if (c->recv_bb != NULL)
		grpc_byte_buffer_destroy(c->recv_bb);
	snapjob_free(c->job);
	/* A stream whose status never came (core refused the status op). */
	if (pe->raft == c) {
		pe->raft = NULL;
		pe->state = PS_BACKOFF;
		pe->retry_at = srv_mono_ms() + BACKOFF_MIN_MS;
	}
	if (pe->snap == c) {
		pe->snap = NULL;
		if (!pe->removed) {
			pe->snap_fail_pending++;
			pe->unreach_pending = true;
		}
	}
	free(c);
	if (--pe->live == 0 && pe->removed)
		peer_free(sp, pe);
}

/* Start one batch of @n ops on @c under tag @t; false (and the call cancelled)
 * if core refused it. */
static bool pcall_start(pcall *c, const grpc_op *ops, size_t n, ptag *t)
{
	grpc_call_error e = grpc_call_start_batch(c->call, ops, n, t, NULL);
	if (e != GRPC_CALL_OK) {
		srv_log_warn("peer call start batch failed", SRV_LF_ERR(grpc_call_error_to_string(e)));
		grpc_call_cancel(c->call, NULL);
		return false;
	}
	c->outstanding++;
	return true;
}

/* Arm the status and (dropped) receive of a client stream. */
static void pcall_arm_stream(pcall *c)
{
	grpc_op op;
	memset(&op, 0, sizeof op);
	op.op = GRPC_OP_RECV_STATUS_ON_CLIENT;
	op.data.recv_status_on_client.trailing_metadata = &c->trailers;
	op.data.recv_status_on_client.status = &c->code;
	op.data.recv_status_on_client.status_details = &c->details;
	if (!pcall_start(c, &op, 1, &c->t_status)) {
		/* Without a status op the call would never be reaped: core refusing
		 * it means the call is unusable anyway; count it as got. */
		c->got_status = true;
		c->code = GRPC_STATUS_INTERNAL;
	}
	grpc_op ops[2];
	memset(ops, 0, sizeof ops);
	ops[0].op = GRPC_OP_RECV_INITIAL_METADATA;
	ops[0].data.recv_initial_metadata.recv_initial_metadata = &c->md_in;
	ops[1].op = GRPC_OP_RECV_MESSAGE;
	ops[1].data.recv_message.recv_message = &c->recv_bb;
	pcall_start(c, ops, 2, &c->t_recv);
}

/* Write @bb on stream @c (initial metadata first if not yet sent). */
static bool pcall_send(pcall *c, grpc_byte_buffer *bb)
{
	grpc_op ops[2];
	memset(ops, 0, sizeof ops);
	size_t n = 0;
	if (!c->md_sent)
		ops[n++].op = GRPC_OP_SEND_INITIAL_METADATA;
	ops[n].op = GRPC_OP_SEND_MESSAGE;
	ops[n++].data.send_message.send_message = bb;
	c->send_bb = bb;
	if (!pcall_start(c, ops, n, &c->t_send)) {
		c->send_bb = NULL;
		grpc_byte_buffer_destroy(bb);
		return false;
	}
	c->md_sent = true;
	c->send_busy = true;
	return true;
}

/* ---- Raft stream (sp->mu held) -------------------------------------------- */

/* Write the next batch of @pe's queue if its stream is idle. */
static void raft_send_next_locked(srv_peer *sp, peer *pe)
{
	pcall *c = pe->raft;
	if (c == NULL || c->send_busy || c->got_status || pe->qh == NULL)
		return;
	size_t total = 0, k = 0;
	for (qnode *q = pe->qh; q != NULL; q = q->next) {
		if (k > 0 && total + q->len > SRV_PEER_BATCH_BYTES)
			break;
		total += q->len;
		k++;
	}
	grpc_slice s;
	size_t hl = batch_slice(sp, 0, NULL, 0, total, &s);
	uint8_t *tail = GRPC_SLICE_START_PTR(s) + hl;
	for (size_t i = 0; i < k; i++) {
		qnode *q = pe->qh;
		memcpy(tail, q->buf + q->off, q->len);
		tail += q->len;
		pe->qh = q->next;
		pe->q_count--;
		pe->q_bytes -= q->len;
		qnode_free(q);
	}
	if (pe->qh == NULL)
		pe->qt = NULL;
	c->inflight = k;
	if (!pcall_send(c, slice_bb(s))) {
		/* The call is cancelled; its status reports the loss. */
		atomic_fetch_add(&sp->st_dropped, k);
		c->inflight = 0;
		pe->unreach_pending = true;
	}
}

static void raft_open_locked(srv_peer *sp, peer *pe)
{
	pcall *c = pcall_new_locked(sp, pe, PC_RAFT, M_RAFT, gpr_inf_future(GPR_CLOCK_REALTIME));
	if (c == NULL) {
		if (peer_drop_queue_locked(sp, pe) > 0)
			pe->unreach_pending = true;
		pe->state = PS_BACKOFF;
		pe->retry_at = srv_mono_ms() + BACKOFF_MIN_MS;
		return;
	}
	atomic_fetch_add(&sp->st_opened, 1);
	pe->raft = c;
	pe->state = PS_OPEN;
	raft_send_next_locked(sp, pe); /* the first batch carries the initial metadata */
	pcall_arm_stream(c);
}

/* ---- Snapshot stream (sp->mu held) ---------------------------------------- */

/* Write the next piece of @c's snapshot: message + first chunk, chunks, close. */
static void snap_send_next_locked(srv_peer *sp, pcall *c)
{
	snapjob *j = c->job;
	if (c->send_busy || c->got_status)
		return;
	if (!j->first_sent || j->sent < j->data_len) {
		size_t n = j->data_len - j->sent;
		if (n > SRV_PEER_SNAP_CHUNK)
			n = SRV_PEER_SNAP_CHUNK;
		size_t extra = j->first_sent ? 0 : j->meta_len;
		grpc_slice s;
		size_t hl = batch_slice(sp, j->sent, j->data + j->sent, n, extra, &s);
		uint8_t *tail = GRPC_SLICE_START_PTR(s) + hl;
		if (!j->first_sent)
			memcpy(tail, j->meta + j->meta_off, j->meta_len);
		if (pcall_send(c, slice_bb(s))) {
			j->first_sent = true;
			j->sent += n;
		}
		return;
	}
	if (!c->close_sent) {
		grpc_op op;
		memset(&op, 0, sizeof op);
		op.op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
		if (pcall_start(c, &op, 1, &c->t_send)) {
			c->send_busy = true;
			c->close_sent = true;
		}
	}
}

static void snap_start_locked(srv_peer *sp, peer *pe)
{
	snapjob *j = pe->sh;
	pe->sh = j->next;
	if (pe->sh == NULL)
		pe->st = NULL;
	pe->n_snaps--;
	j->next = NULL;
	pcall *c = pcall_new_locked(sp, pe, PC_SNAP, M_SNAP, gpr_inf_future(GPR_CLOCK_REALTIME));
	if (c == NULL) {
		snapjob_free(j);
		pe->snap_fail_pending++;
		pe->unreach_pending = true;
		return;
	}
	c->job = j;
	pe->snap = c;
	snap_send_next_locked(sp, c);
	pcall_arm_stream(c);
}

/* Start whatever @pe can start now. */
static void peer_kick_locked(srv_peer *sp, peer *pe)
{
	if (sp->stopping || pe->removed)
		return;
	if (pe->state == PS_IDLE && pe->qh != NULL)
		raft_open_locked(sp, pe);
	else if (pe->state == PS_OPEN)
		raft_send_next_locked(sp, pe);
	if (pe->snap == NULL && pe->sh != NULL)
		snap_start_locked(sp, pe);
}

/* ---- completion handling (transport thread) ------------------------------- */

static void raft_event_locked(srv_peer *sp, pcall *c, ptag_kind k, bool ok, report *r)
{
	peer *pe = c->pe;
	switch (k) {
	case PT_SEND:
		c->send_busy = false;
		grpc_byte_buffer_destroy(c->send_bb);
		c->send_bb = NULL;
		if (ok) {
			atomic_fetch_add(&sp->st_sent, c->inflight);
			atomic_fetch_add(&sp->st_batches, 1);
			pe->backoff_ms = 0;
		} else {
			atomic_fetch_add(&sp->st_dropped, c->inflight);
			if (c->inflight > 0)
				pe->unreach_pending = true;
			grpc_call_cancel(c->call, NULL);
		}
		c->inflight = 0;
		if (ok && pe->raft == c)
			raft_send_next_locked(sp, pe);
		break;
	case PT_RECV:
		if (c->recv_bb != NULL) { /* the server never sends: drop, read on */
			grpc_byte_buffer_destroy(c->recv_bb);
			c->recv_bb = NULL;
			if (ok && !c->got_status) {
				grpc_op op;
				memset(&op, 0, sizeof op);
				op.op = GRPC_OP_RECV_MESSAGE;
				op.data.recv_message.recv_message = &c->recv_bb;
				pcall_start(c, &op, 1, &c->t_recv);
			}
		}
		break;
	case PT_STATUS:
		c->got_status = true;
		if (c->code == (grpc_status_code)ec_grpc_code(EC_MEMBER_REMOVED) &&
		    grpc_slice_str_cmp(c->details, ec_strerror(EC_MEMBER_REMOVED)) == 0) {
			r->removed = true;
			r->removed_by = pe->id;
		}
		if (pe->raft != c)
			break; /* replaced or removed meanwhile */
		pe->raft = NULL;
		if (peer_drop_queue_locked(sp, pe) > 0 || c->inflight > 0)
			pe->unreach_pending = true;
		pe->state = PS_BACKOFF;
		pe->backoff_ms *= 2;
		if (pe->backoff_ms < BACKOFF_MIN_MS)
			pe->backoff_ms = BACKOFF_MIN_MS;
		if (pe->backoff_ms > BACKOFF_MAX_MS)
			pe->backoff_ms = BACKOFF_MAX_MS;
		pe->retry_at = srv_mono_ms() + pe->backoff_ms;
		if (pe->n_targets > 1)
			pe->cur = (pe->cur + 1) % pe->n_targets;
		break;
	default:
		break;
	}
}

static void snap_event_locked(srv_peer *sp, pcall *c, ptag_kind k, bool ok, report *r)
{
	peer *pe = c->pe;
	switch (k) {
	case PT_SEND:
		c->send_busy = false;
		if (c->send_bb != NULL) {
			grpc_byte_buffer_destroy(c->send_bb);
			c->send_bb = NULL;
		}
		if (ok)
			snap_send_next_locked(sp, c);
		else
			grpc_call_cancel(c->call, NULL);
		break;
	case PT_RECV:
		if (c->recv_bb != NULL) {
			grpc_byte_buffer_destroy(c->recv_bb);
			c->recv_bb = NULL;
		}
		break;
	case PT_STATUS: {
		c->got_status = true;
		snapjob *j = c->job;
		bool done = c->code == GRPC_STATUS_OK && j->first_sent && j->sent == j->data_len;
		if (!done && c->code != GRPC_STATUS_OK && !sp->stopping && !pe->removed)
			srv_logf(SRV_LOG_WARN, "failed to send database snapshot to %" PRIx64
			         " (status %d: %.*s)", pe->id, (int)c->code,
			         (int)GRPC_SLICE_LENGTH(c->details),
			         (const char *)GRPC_SLICE_START_PTR(c->details));
		if (pe->snap == c)
			pe->snap = NULL;
		if (!sp->stopping) {
			r->snap = true;
			r->snap_failed = !done;
			r->snap_id = pe->id;
			r->unreach = !done;
			r->unreach_id = pe->id;
		}
		peer_kick_locked(sp, pe); /* the next snapshot, if any */
		break;
	}
	default:
		break;
	}
}

static void fwd_event_locked(srv_peer *sp, pcall *c, bool ok, report *r)
{
	r->cb = c->cb;
	r->cbctx = c->cbctx;
	if (!ok) {
		r->err = sp->stopping ? SRV_PEER_ESTOPPED : SRV_PEER_EUNAVAILABLE;
	} else if (c->code != GRPC_STATUS_OK) {
		r->err = status_err(c->code, sp->stopping);
	} else if (c->recv_bb == NULL) {
		r->err = SRV_PEER_EPROTO;
	} else {
		r->resp = (Metastore__PeerForwardResponse *)srv_rpc_msg_decode(
		        c->recv_bb, &metastore__peer_forward_response__descriptor);
		r->err = r->resp == NULL ? SRV_PEER_EPROTO : r->resp->err;
	}
}

static void fire(srv_peer *sp, report *r)
{
	const srv_peer_config *cfg = &sp->cfg;
	if (r->snap && cfg->on_snapshot_status != NULL)
		cfg->on_snapshot_status(cfg->ctx, r->snap_id, r->snap_failed);
	if (r->unreach && cfg->on_unreachable != NULL)
		cfg->on_unreachable(cfg->ctx, r->unreach_id);
	if (r->removed && cfg->on_removed != NULL)
		cfg->on_removed(cfg->ctx, r->removed_by);
	if (r->cb != NULL) {
		const uint8_t *d = NULL;
		size_t n = 0;
		if (r->err == 0 && r->resp != NULL) {
			d = r->resp->data.data;
			n = r->resp->data.len;
		}
		r->cb(r->cbctx, r->err, d, n);
	}
	if (r->resp != NULL)
		metastore__peer_forward_response__free_unpacked(r->resp, NULL);
}

static void on_event(srv_peer *sp, ptag *t, bool ok)
{
	pcall *c = t->owner;
	report r;
	memset(&r, 0, sizeof r);
	pthread_mutex_lock(&sp->mu);
	switch (c->kind) {
	case PC_RAFT:
		raft_event_locked(sp, c, t->kind, ok, &r);
		break;
	case PC_SNAP:
		snap_event_locked(sp, c, t->kind, ok, &r);
		break;
	case PC_FWD:
		fwd_event_locked(sp, c, ok, &r);
		break;
	}
	if (--c->outstanding == 0)
		pcall_free_locked(c);
	pthread_mutex_unlock(&sp->mu);
	fire(sp, &r);
}

/* Back-off expiry, deferred reports, stop. */
static void sweep(srv_peer *sp)
{
	uint64_t unreach[SWEEP_REPORTS], snapfail[SWEEP_REPORTS];
	size_t nu, ns;
	do {
		nu = ns = 0;
		int64_t now = srv_mono_ms();
		pthread_mutex_lock(&sp->mu);
		if (sp->stopping) {
			if (sp->n_calls == 0 && !sp->cq_shut) {
				sp->cq_shut = true;
				grpc_completion_queue_shutdown(sp->cq);
			}
			pthread_mutex_unlock(&sp->mu);
			return;
		}
		for (peer *pe = sp->peers; pe != NULL; pe = pe->next) {
			if (pe->state == PS_BACKOFF && now >= pe->retry_at)
				pe->state = PS_IDLE;
			peer_kick_locked(sp, pe);
			while (pe->snap_fail_pending > 0 && ns < SWEEP_REPORTS) {
				snapfail[ns++] = pe->id;
				pe->snap_fail_pending--;
			}
			if (pe->unreach_pending && nu < SWEEP_REPORTS) {
				unreach[nu++] = pe->id;
				pe->unreach_pending = false;
			}
		}
		pthread_mutex_unlock(&sp->mu);
		for (size_t i = 0; i < ns; i++)
			if (sp->cfg.on_snapshot_status != NULL)
				sp->cfg.on_snapshot_status(sp->cfg.ctx, snapfail[i], true);
		for (size_t i = 0; i < nu; i++)
			if (sp->cfg.on_unreachable != NULL)
				sp->cfg.on_unreachable(sp->cfg.ctx, unreach[i]);
	} while (nu == SWEEP_REPORTS || ns == SWEEP_REPORTS);
}

static void *transport_main(void *arg)
{
	pthread_setname_np(pthread_self(), "ms-peer");
	srv_peer *sp = arg;
	for (;;) {
		/* Without peers and calls there is nothing to poll or sweep. A thread
		 * waiting on the queue would still take its turns as the process's
		 * poller (srv_rpc_cq_create), a wake-up per turn: a lone member's
		 * transport slept through ~0.25 of them per put. */
		pthread_mutex_lock(&sp->mu);
		while (sp->peers == NULL && sp->n_calls == 0 && !sp->stopping)
			pthread_cond_wait(&sp->idle_cv, &sp->mu);
		pthread_mutex_unlock(&sp->mu);
		grpc_event ev = grpc_completion_queue_next(sp->cq, deadline_in(TICK_MS), NULL);
		if (ev.type == GRPC_QUEUE_SHUTDOWN)
			break;
		if (ev.type == GRPC_OP_COMPLETE)
			on_event(sp, ev.tag, ev.success != 0);
		int64_t now = srv_mono_ms();
		if (ev.type == GRPC_QUEUE_TIMEOUT || now - sp->last_sweep >= TICK_MS) {
			sp->last_sweep = now;
			sweep(sp);
		}
	}
	return NULL;
}

/* ---- public: lifecycle ---------------------------------------------------- */

int srv_peer_new(const srv_peer_config *cfg, srv_peer **out)
{
	if (out != NULL)
		*out = NULL;
	if (cfg == NULL || out == NULL || cfg->self_id == 0 || cfg->on_message == NULL)
		return SRV_PEER_EINVAL;
	srv_peer *sp = calloc(1, sizeof *sp);
	if (sp == NULL)
		return SRV_PEER_ENOMEM;
	sp->cfg = *cfg;
	srv_tls_ref(sp->cfg.tls);
	pthread_mutex_init(&sp->mu, NULL);
	pthread_cond_init(&sp->idle_cv, NULL);
	grpc_init();
	sp->cq = grpc_completion_queue_create_for_next(NULL);
	sp->last_sweep = srv_mono_ms();
	if (pthread_create(&sp->thread, NULL, transport_main, sp) != 0) {
		grpc_completion_queue_shutdown(sp->cq);
		while (grpc_completion_queue_next(sp->cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL)
		               .type != GRPC_QUEUE_SHUTDOWN)
			;
		grpc_completion_queue_destroy(sp->cq);
		grpc_shutdown();
		pthread_cond_destroy(&sp->idle_cv);
		pthread_mutex_destroy(&sp->mu);
		srv_tls_unref(sp->cfg.tls);
		free(sp);
		return SRV_PEER_ENOMEM;
	}
	*out = sp;
	return 0;
}

void srv_peer_stop(srv_peer *sp)
{
	if (sp == NULL)
		return;
	pthread_mutex_lock(&sp->mu);
	sp->stopping = true;
	pthread_cond_signal(&sp->idle_cv);
	for (pcall *c = sp->calls; c != NULL; c = c->lnext)
		grpc_call_cancel(c->call, NULL);
	for (peer *pe = sp->peers; pe != NULL; pe = pe->next) {
		peer_drop_queue_locked(sp, pe);
		peer_drop_snaps_locked(pe);
	}
	pthread_mutex_unlock(&sp->mu);
	pthread_join(sp->thread, NULL);
	/* Every call is freed (the thread shut the queue only then). */
	while (sp->peers != NULL) {
		peer *pe = sp->peers;
		sp->peers = pe->next;
		peer_free(sp, pe);
	}
	grpc_completion_queue_destroy(sp->cq);
	pthread_cond_destroy(&sp->idle_cv);
	pthread_mutex_destroy(&sp->mu);
	srv_tls_unref(sp->cfg.tls);
	free(sp);
	grpc_shutdown();
}

void srv_peer_get_stats(srv_peer *sp, srv_peer_stats *st)
{
	st->msgs_sent = atomic_load(&sp->st_sent);
	st->msgs_dropped = atomic_load(&sp->st_dropped);
	st->batches_sent = atomic_load(&sp->st_batches);
	st->msgs_received = atomic_load(&sp->st_received);
	st->batches_rejected = atomic_load(&sp->st_rejected);
	st->streams_opened = atomic_load(&sp->st_opened);
}

/* ---- public: membership --------------------------------------------------- */

int srv_peer_add(srv_peer *sp, uint64_t id, const char *const *urls, size_t n)
{
	if (sp == NULL || id == 0 || urls == NULL || n == 0)
		return SRV_PEER_EINVAL;
	char **targets = calloc(n, sizeof *targets);
	grpc_channel **chans = calloc(n, sizeof *chans);
	if (targets == NULL || chans == NULL) {
		free(targets);
		free(chans);
		return SRV_PEER_ENOMEM;
	}
	int rc = 0;
	for (size_t i = 0; i < n && rc == 0; i++)
		if ((targets[i] = url_target(urls[i])) == NULL)
			rc = SRV_PEER_EINVAL;
	pthread_mutex_lock(&sp->mu);
	if (rc == 0 && sp->stopping)
		rc = SRV_PEER_ESTOPPED;
	peer *pe = rc == 0 ? peer_find_locked(sp, id) : NULL;
	if (rc == 0 && pe == NULL) {
		pe = calloc(1, sizeof *pe);
		if (pe == NULL) {
			rc = SRV_PEER_ENOMEM;
		} else {
			pe->id = id;
			pe->next = sp->peers;
			sp->peers = pe;
		}
	} else if (rc == 0) {
		/* Replace: close what runs on the old channels. */
		if (pe->raft != NULL) {
			if (pe->raft->inflight > 0 || pe->q_count > 0)
				pe->unreach_pending = true;
			grpc_call_cancel(pe->raft->call, NULL);
			pe->raft = NULL;
		}
		if (pe->snap != NULL) {
			grpc_call_cancel(pe->snap->call, NULL);
			/* its status reports the failure */
		}
		peer_close_channels(pe);
	}
	if (rc == 0) {
		pe->targets = targets;
		pe->chans = chans;
		pe->n_targets = n;
		pe->cur = 0;
		pe->state = PS_IDLE;
		pe->backoff_ms = 0;
		targets = NULL;
		chans = NULL;
		peer_kick_locked(sp, pe);
		pthread_cond_signal(&sp->idle_cv);
	}
	pthread_mutex_unlock(&sp->mu);
	if (targets != NULL)
		for (size_t i = 0; i < n; i++)
			free(targets[i]);
	free(targets);
	free(chans);
	return rc;
}

void srv_peer_remove(srv_peer *sp, uint64_t id)
{
	if (sp == NULL)
		return;
	pthread_mutex_lock(&sp->mu);
	peer **pp = &sp->peers;
	while (*pp != NULL && (*pp)->id != id)
		pp = &(*pp)->next;
	peer *pe = *pp;
	if (pe != NULL) {
		*pp = pe->next;
		pe->removed = true;
		pe->raft = NULL;
		peer_drop_queue_locked(sp, pe);
		peer_drop_snaps_locked(pe);
		pe->snap_fail_pending = 0;
		pe->unreach_pending = false;
		for (pcall *c = sp->calls; c != NULL; c = c->lnext)
			if (c->pe == pe)
				grpc_call_cancel(c->call, NULL);
		if (pe->live == 0)
			peer_free(sp, pe);
	}
	pthread_mutex_unlock(&sp->mu);
}

/* ---- public: sending ------------------------------------------------------ */

/* Encode @m into a queue node or snapshot job; NULL on failure (logged). */
static qnode *encode_one(const raft_message *m, snapjob **job)
{
	*job = NULL;
	uint8_t *buf;
	size_t len;
	int rc = srv_peer_codec_encode(m, PREFIX_ROOM, &buf, &len);
	if (rc != 0) {
		srv_log_warn("failed to marshal raft message", SRV_LF_STR("message-type",
		             raft_msg_type_name(m->type)), SRV_LF_ID("remote-peer-id", m->to),
		             SRV_LF_ERR(srv_peer_strerror(rc)));
		return NULL;
	}
	size_t off = put_prefix(buf, len);
	qnode *q = calloc(1, sizeof *q);
	if (q == NULL) {
		free(buf);
		return NULL;
	}
	q->to = m->to;
	q->buf = buf;
	q->off = off;
	q->len = PREFIX_ROOM - off + len;
	if (m->type == RAFT_MSG_SNAPSHOT && m->snapshot != NULL) {
		snapjob *j = calloc(1, sizeof *j);
		const raft_blob *d = m->snapshot->data;
		if (j != NULL && d != NULL && d->len > 0) {
			j->data = malloc(d->len);
			if (j->data == NULL) {
				free(j);
				j = NULL;
			} else {
				memcpy(j->data, d->data, d->len);
				j->data_len = d->len;
			}
		}
		if (j == NULL) {
			qnode_free(q);
			return NULL;
		}
		j->meta = buf;
		j->meta_off = off;
		j->meta_len = q->len;
		q->buf = NULL;
		q->snap = true;
		*job = j;
	}
	return q;
}

void srv_peer_send(srv_peer *sp, const raft_message *msgs, size_t n)
{
	if (sp == NULL || n == 0)
		return;
	qnode *st_nodes[64];
	snapjob *st_jobs[64];
	qnode **nodes = st_nodes;
	snapjob **jobs = st_jobs;
	if (n > 64) {
		nodes = malloc(n * sizeof *nodes);
		jobs = malloc(n * sizeof *jobs);
		if (nodes == NULL || jobs == NULL) {
			free(nodes);
			free(jobs);
			nodes = st_nodes; /* fall back: send the first 64 only */
			jobs = st_jobs;
			n = 64;
		}
	}
	for (size_t i = 0; i < n; i++) {
		nodes[i] = NULL;
		jobs[i] = NULL;
		if (msgs[i].to == 0 || msgs[i].to == sp->cfg.self_id)
			continue;
		nodes[i] = encode_one(&msgs[i], &jobs[i]);
	}

	pthread_mutex_lock(&sp->mu);
	for (size_t i = 0; i < n; i++) {
		if (msgs[i].to == 0 || msgs[i].to == sp->cfg.self_id)
			continue;
		peer *pe = sp->stopping ? NULL : peer_find_locked(sp, msgs[i].to);
		qnode *q = nodes[i];
		if (pe == NULL) {
			qnode_free(q);
			snapjob_free(jobs[i]);
			continue;
		}
		if (msgs[i].type == RAFT_MSG_HEARTBEAT && pe->hb_sent_ns == 0)
			pe->hb_sent_ns = srv_now_ns();
		if (q == NULL) { /* could not encode */
			atomic_fetch_add(&sp->st_dropped, 1);
			pe->unreach_pending = true;
			if (msgs[i].type == RAFT_MSG_SNAPSHOT && msgs[i].snapshot != NULL)
				pe->snap_fail_pending++;
			continue;
		}
		if (q->snap) {
			qnode_free(q);
			snapjob *j = jobs[i];
			if (pe->n_snaps >= SRV_PEER_QUEUE_SNAPS) {
				snapjob_free(j);
				pe->snap_fail_pending++;
				pe->unreach_pending = true;
				continue;
			}
			if (pe->st != NULL)
				pe->st->next = j;
			else
				pe->sh = j;
			pe->st = j;
			pe->n_snaps++;
			continue;
		}
		if (q->len > SRV_PEER_MAX_REQUEST_BYTES || pe->q_count >= SRV_PEER_QUEUE_MSGS ||
		    pe->q_bytes + q->len > SRV_PEER_QUEUE_BYTES) {
			qnode_free(q);
			atomic_fetch_add(&sp->st_dropped, 1);
			pe->unreach_pending = true;
			continue;
		}
		if (pe->qt != NULL)
			pe->qt->next = q;
		else
			pe->qh = q;
		pe->qt = q;
		pe->q_count++;
		pe->q_bytes += q->len;
	}
	for (peer *pe = sp->peers; pe != NULL; pe = pe->next)
		peer_kick_locked(sp, pe);
	pthread_mutex_unlock(&sp->mu);
	if (nodes != st_nodes) {
		free(nodes);
		free(jobs);
	}
}

/* ---- public: forwards ----------------------------------------------------- */

static grpc_slice fwd_request_slice(uint64_t cluster, uint64_t from, uint32_t kind,
                                    const uint8_t *in, size_t len)
{
	Metastore__PeerForwardRequest rq = METASTORE__PEER_FORWARD_REQUEST__INIT;
	rq.format = SRV_PEER_FORMAT;
	rq.cluster_id = cluster;
	rq.from = from;
	rq.kind = kind;
	rq.data.data = (uint8_t *)in;
	rq.data.len = len;
	size_t n = protobuf_c_message_get_packed_size(&rq.base);
	grpc_slice s = grpc_slice_malloc(n);
	protobuf_c_message_pack(&rq.base, GRPC_SLICE_START_PTR(s));
	return s;
}

/* The six ops of a unary client call on @c (or a fetch's fields). */
static void unary_ops(grpc_op ops[6], grpc_byte_buffer *send, grpc_byte_buffer **recv,
                      grpc_metadata_array *md_in, grpc_metadata_array *trailers,
                      grpc_status_code *code, grpc_slice *details)
{
	memset(ops, 0, 6 * sizeof *ops);
	ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
	ops[1].op = GRPC_OP_SEND_MESSAGE;
	ops[1].data.send_message.send_message = send;
	ops[2].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
	ops[3].op = GRPC_OP_RECV_INITIAL_METADATA;
	ops[3].data.recv_initial_metadata.recv_initial_metadata = md_in;
	ops[4].op = GRPC_OP_RECV_MESSAGE;
	ops[4].data.recv_message.recv_message = recv;
	ops[5].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
	ops[5].data.recv_status_on_client.trailing_metadata = trailers;
	ops[5].data.recv_status_on_client.status = code;
	ops[5].data.recv_status_on_client.status_details = details;
}

int srv_peer_forward(srv_peer *sp, uint64_t to, uint32_t kind, const uint8_t *in, size_t len,
                     int timeout_ms, srv_peer_forward_cb cb, void *cbctx)
{
	if (sp == NULL || cb == NULL || timeout_ms <= 0 || (in == NULL && len > 0))
		return SRV_PEER_EINVAL;
	grpc_slice s = fwd_request_slice(sp->cfg.cluster_id, sp->cfg.self_id, kind, in, len);
	int rc = 0;
	pthread_mutex_lock(&sp->mu);
	peer *pe = sp->stopping ? NULL : peer_find_locked(sp, to);
	pcall *c = NULL;
	if (sp->stopping)
		rc = SRV_PEER_ESTOPPED;
	else if (pe == NULL)
		rc = SRV_PEER_ENOPEER;
	else if ((c = pcall_new_locked(sp, pe, PC_FWD, M_FWD, deadline_in(timeout_ms))) == NULL)
		rc = SRV_PEER_ENOMEM;
	if (rc == 0) {
		c->cb = cb;
		c->cbctx = cbctx;
		c->send_bb = slice_bb(s);
		grpc_op ops[6];
		unary_ops(ops, c->send_bb, &c->recv_bb, &c->md_in, &c->trailers, &c->code,
		          &c->details);
		if (!pcall_start(c, ops, 6, &c->t_final)) {
			pcall_free_locked(c);
			rc = SRV_PEER_ENOMEM;
		}
	} else {
		grpc_slice_unref(s);
	}
	pthread_mutex_unlock(&sp->mu);
	return rc;
}

typedef struct fetch_call {
	grpc_channel *ch;
	grpc_call *call;
	grpc_byte_buffer *send, *recv;
	grpc_metadata_array md_in, trailers;
	grpc_status_code code;
	grpc_slice details;
	bool started;
} fetch_call;

int srv_peer_fetch(const char *const *urls, size_t n, srv_tls *tls, uint32_t kind,
                   const uint8_t *in, size_t len, int timeout_ms, uint8_t **out, size_t *outlen)
{
	if (out != NULL)
		*out = NULL;
	if (outlen != NULL)
		*outlen = 0;
	if (urls == NULL || n == 0 || out == NULL || outlen == NULL || timeout_ms <= 0 ||
	    (in == NULL && len > 0))
		return SRV_PEER_EINVAL;
	char **targets = calloc(n, sizeof *targets);
	fetch_call *fc = calloc(n, sizeof *fc);
	if (targets == NULL || fc == NULL) {
		free(targets);
		free(fc);
		return SRV_PEER_ENOMEM;
	}
	int rc = 0;
	for (size_t i = 0; i < n && rc == 0; i++)
		if ((targets[i] = url_target(urls[i])) == NULL)
			rc = SRV_PEER_EINVAL;
	if (rc != 0)
		goto free_targets;

	grpc_init();
	grpc_completion_queue *cq = grpc_completion_queue_create_for_next(NULL);
	gpr_timespec deadline = deadline_in(timeout_ms);
	grpc_slice req = fwd_request_slice(0, 0, kind, in, len);
	size_t pending = 0;
	for (size_t i = 0; i < n; i++) {
		fetch_call *f = &fc[i];
		grpc_metadata_array_init(&f->md_in);
		grpc_metadata_array_init(&f->trailers);
		f->details = grpc_empty_slice();
		f->code = GRPC_STATUS_UNKNOWN;
		f->ch = channel_new(targets[i], tls);
		f->call = f->ch == NULL ? NULL
		                        : grpc_channel_create_call(f->ch, NULL, GRPC_PROPAGATE_DEFAULTS,
		                                                   cq, grpc_slice_from_static_string(M_FWD),
		                                                   NULL, deadline, NULL);
		if (f->call == NULL)
			continue;
		f->send = grpc_raw_byte_buffer_create(&req, 1);
		grpc_op ops[6];
		unary_ops(ops, f->send, &f->recv, &f->md_in, &f->trailers, &f->code, &f->details);
		if (grpc_call_start_batch(f->call, ops, 6, f, NULL) == GRPC_CALL_OK) {
			f->started = true;
			pending++;
		}
	}
	grpc_slice_unref(req);

	bool won = false, saw_timeout = false, have_remote = false;
	int remote_err = 0;
	while (pending > 0) {
		grpc_event ev =
		        grpc_completion_queue_next(cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
		if (ev.type != GRPC_OP_COMPLETE)
			break;
		pending--;
		fetch_call *f = ev.tag;
		if (won)
			continue;
		if (ev.success && f->code == GRPC_STATUS_OK && f->recv != NULL) {
			Metastore__PeerForwardResponse *r =
			        (Metastore__PeerForwardResponse *)srv_rpc_msg_decode(
			                f->recv, &metastore__peer_forward_response__descriptor);
			if (r != NULL && r->err == 0) {
				won = true;
				if (r->data.len > 0) {
					*out = malloc(r->data.len);
					if (*out == NULL) {
						rc = SRV_PEER_ENOMEM;
					} else {
						memcpy(*out, r->data.data, r->data.len);
						*outlen = r->data.len;
					}
				}
				for (size_t i = 0; i < n; i++)
					if (fc[i].started && &fc[i] != f)
						grpc_call_cancel(fc[i].call, NULL);
			} else if (!have_remote) {
				have_remote = true;
				remote_err = r != NULL ? r->err : SRV_PEER_EPROTO;
			}
			if (r != NULL)
				metastore__peer_forward_response__free_unpacked(r, NULL);
		} else if (f->code == GRPC_STATUS_DEADLINE_EXCEEDED) {
			saw_timeout = true;
		}
	}
	if (rc == 0 && !won)
		rc = have_remote   ? remote_err
		     : saw_timeout ? SRV_PEER_ETIMEDOUT
		                   : SRV_PEER_EUNAVAILABLE;

	for (size_t i = 0; i < n; i++) {
		fetch_call *f = &fc[i];
		if (f->call != NULL)
			grpc_call_unref(f->call);
		if (f->send != NULL)
			grpc_byte_buffer_destroy(f->send);
		if (f->recv != NULL)
			grpc_byte_buffer_destroy(f->recv);
		grpc_metadata_array_destroy(&f->md_in);
		grpc_metadata_array_destroy(&f->trailers);
		grpc_slice_unref(f->details);
		if (f->ch != NULL)
			grpc_channel_destroy(f->ch);
	}
	grpc_completion_queue_shutdown(cq);
	while (grpc_completion_queue_next(cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL).type !=
	       GRPC_QUEUE_SHUTDOWN)
		;
	grpc_completion_queue_destroy(cq);
	grpc_shutdown();
free_targets:
	for (size_t i = 0; i < n; i++)
		free(targets[i]);
	free(targets);
	free(fc);
	return rc;
}

/* ---- server side ---------------------------------------------------------- */

/* Whether batch @b may be delivered (format and cluster id); logs once if not. */
static bool batch_ok(srv_peer *sp, const Metastore__RaftBatch *b)
{
	if (b->format != SRV_PEER_FORMAT) {
		atomic_fetch_add(&sp->st_rejected, 1);
		log_once(&sp->logged_format, "request version incompatibility",
		         "remote-peer-format", b->format, "local-member-format", SRV_PEER_FORMAT,
		         b->from);
		return false;
	}
	if (b->cluster_id != sp->cfg.cluster_id) {
		atomic_fetch_add(&sp->st_rejected, 1);
		log_once(&sp->logged_cluster, "request cluster ID mismatch", "remote-peer-cluster-id",
		         b->cluster_id, "local-member-cluster-id", sp->cfg.cluster_id, b->from);
		return false;
	}
	return true;
}

static void deliver(srv_peer *sp, raft_message *m)
{
	atomic_fetch_add(&sp->st_received, 1);
	if (m->type == RAFT_MSG_HEARTBEAT_RESP) {
		/* etcd_network_peer_round_trip_time_seconds: heartbeat to its answer
		 * (etcd times a prober instead; here only the leader measures) */
		uint64_t sent = 0;
		pthread_mutex_lock(&sp->mu);
		peer *pe = peer_find_locked(sp, m->from);
		if (pe != NULL) {
			sent = pe->hb_sent_ns;
			pe->hb_sent_ns = 0;
		}
		pthread_mutex_unlock(&sp->mu);
		if (sent != 0)
			srv_metrics_peer_rtt(m->from, srv_now_ns() - sent);
	}
	sp->cfg.on_message(sp->cfg.ctx, m);
}

static void raft_rx_recv(srv_stream *st, void *ctx, const ProtobufCMessage *msg)
{
	srv_peer *sp = ctx;
	if (msg == NULL) { /* the sender closed its side: so do we */
		srv_stream_finish(st, EC_OK);
		return;
	}
	const Metastore__RaftBatch *b = (const Metastore__RaftBatch *)msg;
	if (!batch_ok(sp, b))
		return;
	if (sp->cfg.is_removed != NULL && sp->cfg.is_removed(sp->cfg.ctx, b->from)) {
		atomic_fetch_add(&sp->st_rejected, 1);
		srv_log_warn("rejected stream from remote peer because it was removed",
		             SRV_LF_ID("remote-peer-id", b->from));
		srv_stream_finish(st, EC_MEMBER_REMOVED);
		return;
	}
	for (size_t i = 0; i < b->n_msgs; i++) {
		raft_message *m;
		int rc = srv_peer_codec_decode(b->msgs[i], NULL, &m);
		if (rc != 0) {
			if (!atomic_exchange(&sp->logged_decode, true))
				srv_log_warn("failed to unmarshal raft message; dropped (further ones "
				             "are not logged)", SRV_LF_ID("remote-peer-id", b->from),
				             SRV_LF_ERR(srv_peer_strerror(rc)));
			continue;
		}
		deliver(sp, m);
	}
}

static void rx_close(srv_stream *st, void *ctx, bool cancelled)
{
	srv_stream_unref(st);
}

static const srv_stream_ops raft_rx_ops = {
        .on_recv = raft_rx_recv,
        .on_close = rx_close,
};

static void raft_rx_open(srv_stream *st, const ProtobufCMessage *req)
{
	srv_stream_set_ops(st, &raft_rx_ops, srv_stream_app(st));
}

/* One incoming snapshot being reassembled. */
typedef struct snap_rx {
	srv_peer *sp;
	raft_message *m; /* decoded; m->snapshot->data filled as chunks arrive */
	size_t total, got;
	bool done;
} snap_rx;

/* Copy @b's chunk into @rx; -1 if it is out of order or too long. */
static int snap_rx_chunk(snap_rx *rx, const Metastore__RaftBatch *b)
{
	if (b->snap_chunk.len == 0)
		return 0;
	if (b->snap_offset != rx->got || b->snap_chunk.len > rx->total - rx->got)
		return -1;
	memcpy(rx->m->snapshot->data->data + rx->got, b->snap_chunk.data, b->snap_chunk.len);
	rx->got += b->snap_chunk.len;
	return 0;
}

static void snap_rx_recv(srv_stream *st, void *ctx, const ProtobufCMessage *msg)
{
	snap_rx *rx = ctx;
	srv_peer *sp = rx->sp;
	if (rx->done)
		return;
	if (msg == NULL) { /* closed before the data was complete */
		srv_stream_finish(st, EC_BAD_REQUEST);
		return;
	}
	const Metastore__RaftBatch *b = (const Metastore__RaftBatch *)msg;
	if (!batch_ok(sp, b)) {
		srv_stream_finish(st, EC_BAD_REQUEST);
		return;
	}
	if (rx->m == NULL) { /* the first batch: the message itself */
		if (b->n_msgs != 1 || b->msgs[0]->snapshot == NULL) {
			srv_stream_finish(st, EC_BAD_REQUEST);
			return;
		}
		const Metastore__RaftSnapshotMeta *meta = b->msgs[0]->snapshot;
		raft_blob *data = NULL;
		if (meta->has_data && meta->data_len > 0) {
			if (meta->data_len > SIZE_MAX / 2 ||
			    (data = raft_blob_new((size_t)meta->data_len)) == NULL) {
				srv_log_warn("cannot receive a database snapshot: out of memory",
				             SRV_LF_UINT("size-bytes", meta->data_len));
				srv_stream_finish(st, EC_INTERNAL);
				return;
			}
		}
		int rc = srv_peer_codec_decode(b->msgs[0], data, &rx->m);
		if (rc != 0) {
			raft_blob_unref(data);
			srv_stream_finish(st, EC_BAD_REQUEST);
			return;
		}
		rx->total = data != NULL ? data->len : 0;
	} else if (b->n_msgs != 0) {
		srv_stream_finish(st, EC_BAD_REQUEST);
		return;
	}
	if (snap_rx_chunk(rx, b) != 0) {
		srv_stream_finish(st, EC_BAD_REQUEST);
		return;
	}
	if (rx->got == rx->total) {
		raft_message *m = rx->m;
		rx->m = NULL;
		rx->done = true;
		deliver(sp, m);
		srv_stream_finish(st, EC_OK);
	}
}

static void snap_rx_close(srv_stream *st, void *ctx, bool cancelled)
{
	snap_rx *rx = ctx;
	srv_peer_msg_free(rx->m);
	free(rx);
	srv_stream_unref(st);
}

static const srv_stream_ops snap_rx_ops = {
        .on_recv = snap_rx_recv,
        .on_close = snap_rx_close,
};

static void snap_rx_open(srv_stream *st, const ProtobufCMessage *req)
{
	snap_rx *rx = calloc(1, sizeof *rx);
	if (rx == NULL) {
		srv_stream_finish(st, EC_INTERNAL);
		srv_stream_unref(st);
		return;
	}
	rx->sp = srv_stream_app(st);
	srv_stream_set_ops(st, &snap_rx_ops, rx);
}

/* End forward @call with @err as it goes on the wire (0, a handler's positive
 * error, or a transport code) and the answer bytes (freed here). */
static void fwd_answer(srv_call *call, int err, uint8_t *out, size_t outlen)
{
	Metastore__PeerForwardResponse rs = METASTORE__PEER_FORWARD_RESPONSE__INIT;
	rs.err = err;
	if (err == 0 && out != NULL) {
		rs.data.data = out;
		rs.data.len = outlen;
	}
	srv_call_reply(call, &rs.base);
	free(out);
}

/* A srv_peer_reply is the forward's srv_call under another name; the one
 * place a handler's answer (now or later) is put on the wire. */
void srv_peer_forward_reply(srv_peer_reply *reply, int rc, uint8_t *out, size_t outlen)
{
	fwd_answer((srv_call *)reply, rc < 0 ? SRV_PEER_EREMOTE : rc, out, outlen);
}

static void fwd_rx(srv_call *call, const ProtobufCMessage *req)
{
	srv_peer *sp = srv_call_app(call);
	const Metastore__PeerForwardRequest *rq = (const Metastore__PeerForwardRequest *)req;
	uint8_t *out = NULL;
	size_t outlen = 0;
	int rc;
	if (rq->format != SRV_PEER_FORMAT) {
		rc = SRV_PEER_EPROTO;
	} else if (rq->cluster_id != 0 && rq->cluster_id != sp->cfg.cluster_id) {
		log_once(&sp->logged_cluster, "request cluster ID mismatch", "remote-peer-cluster-id",
		         rq->cluster_id, "local-member-cluster-id", sp->cfg.cluster_id, rq->from);
		rc = SRV_PEER_ECLUSTER;
	} else if (sp->cfg.on_forward == NULL) {
		rc = SRV_PEER_ENOHANDLER;
	} else {
		rc = sp->cfg.on_forward(sp->cfg.ctx, rq->from, rq->kind, rq->data.data, rq->data.len,
		                        &out, &outlen, (srv_peer_reply *)call);
		if (rc != SRV_PEER_LATER) /* else the handler's thread answers */
			srv_peer_forward_reply((srv_peer_reply *)call, rc, out, outlen);
		return;
	}
	fwd_answer(call, rc, out, outlen);
}

size_t srv_peer_methods(srv_method *rows, size_t cap)
{
	const srv_method table[SRV_PEER_N_METHODS] = {
	        {M_RAFT, SRV_BIDI, &metastore__raft_batch__descriptor,
	         &metastore__raft_ack__descriptor, NULL, raft_rx_open},
	        {M_SNAP, SRV_BIDI, &metastore__raft_batch__descriptor,
	         &metastore__raft_ack__descriptor, NULL, snap_rx_open},
	        {M_FWD, SRV_UNARY, &metastore__peer_forward_request__descriptor,
	         &metastore__peer_forward_response__descriptor, fwd_rx, NULL},
	};
	for (size_t i = 0; i < cap && i < SRV_PEER_N_METHODS; i++)
		rows[i] = table[i];
	return SRV_PEER_N_METHODS;
}
