/*
 * srv_rpc.c: the gRPC core runtime behind srv_rpc.h.
 *
 * Shape. One grpc_server, N worker threads, each owning one completion queue
 * (CQ) and blocking in grpc_completion_queue_next(). For every table row with a
 * handler, each worker keeps one grpc_server_request_registered_call armed
 * (unary and server-streaming rows have core read the request payload with the
 * call, so a unary call costs two CQ events: arrival and final batch); each
 * worker also keeps one generic grpc_server_request_call armed, which catches
 * every method not in the table and answers UNIMPLEMENTED (core would leave
 * such a call hanging to its deadline). Rows without a handler are not
 * registered, so they take the same generic path.
 *
 * Call objects. Every accepted (or armed) call is one heap object: srv_call for
 * unary and generic calls, srv_stream (which embeds srv_call first) for
 * streams. CQ tags are srv_tag {kind, owner} structs embedded in that object,
 * one per kind of outstanding batch, and the worker loop is one switch on the
 * tag kind. An object is reference counted: each outstanding batch holds one
 * reference, and so does the app while it owns a call (a unary call until it is
 * completed, a stream until srv_stream_unref). It is freed when the count
 * reaches zero, i.e. when its last batch has returned and the app let go.
 * A call is bound to the CQ of the worker that accepted it, so all of its
 * completions, and therefore all stream callbacks, run on one thread in order.
 *
 * Unary: arrival → decode → handler → srv_call_reply/fail (any thread) starts
 * the only batch {SEND_INITIAL_METADATA, SEND_MESSAGE, SEND_STATUS,
 * RECV_CLOSE_ON_SERVER}. The app's reference passes to that batch.
 *
 * Streams: on arrival a {RECV_CLOSE_ON_SERVER} batch stays outstanding for the
 * whole stream (its return is on_close); bidi streams keep one RECV_MESSAGE
 * outstanding, re-armed after on_recv returns; sends go through a FIFO with at
 * most one SEND_MESSAGE outstanding; the status goes out once the queue has
 * drained. The stream mutex serialises grpc_call_start_batch on the call.
 *
 * TLS: https:// and unixs:// listen addresses get credentials from
 * srv_tls_server_creds(cfg.tls); on a side that checks client addresses
 * (peers), each arriving call passes srv_tls_check_client_addr() before its
 * handler runs, or is ended at once (reject_call).
 *
 * Shutdown: see srv_rpc_shutdown() in the header.
 */
#include "server/srv_rpc.h"

#include <dlfcn.h>
#include <errno.h>
#include <limits.h>
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

#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <grpc/grpc_posix.h>

#include "etcdcompat/ec_errors.h"
#include "server/srv_log.h"
#include "server/srv_metrics.h"

/* ---- types ---------------------------------------------------------------- */

typedef enum {
	TAG_NEW,         /* an armed registered-method request got a call */
	TAG_NEW_GENERIC, /* an armed generic request got a call (method not served) */
	TAG_FINAL,       /* the final batch of a unary or generic call returned */
	TAG_RECV,        /* a stream's RECV_MESSAGE returned */
	TAG_SEND,        /* a stream's SEND_MESSAGE returned */
	TAG_STATUS,      /* a stream's SEND_STATUS_FROM_SERVER returned */
	TAG_CLOSE,       /* a stream's RECV_CLOSE_ON_SERVER returned: it is over */
	TAG_SHUTDOWN,    /* grpc_server_shutdown_and_notify finished */
	TAG_RESUME,      /* srv_call_resume's empty batch came back: run its fn */
} tag_kind;

typedef struct srv_tag {
	tag_kind kind;
	void *owner;
} srv_tag;

typedef enum {
	CALL_ARMED,     /* waiting in core for a client */
	CALL_ACTIVE,    /* accepted; the app owns it (unary) or it is open (stream) */
	CALL_FINISHING, /* final batch / status requested */
} call_state;

typedef struct srv_worker {
	struct srv_rpc *rpc;
	grpc_completion_queue *cq;
	pthread_t thread;
	int index;
	bool started;
} srv_worker;

typedef struct srv_row {
	srv_method m;
	void *reg; /* grpc_server_register_method handle; NULL if not served */
} srv_row;

struct srv_rpc {
	grpc_server *rpc_server;
	srv_worker *rpc_workers;
	int rpc_nworkers;
	grpc_completion_queue *rpc_listen_cq; /* no_polling: the threadless polling queue */
	srv_row *rpc_rows;
	size_t rpc_nrows;
	void *rpc_app;
	srv_rpc_config rpc_cfg; /* defaults resolved; listen not kept; tls referenced */
	int *rpc_ports;
	size_t rpc_nports;
	/* Arming a request and starting shutdown exclude each other, so no request
	 * is ever armed on a server that is shutting down or destroyed. */
	pthread_rwlock_t rpc_arm_lock;
	bool rpc_stopping;
	bool rpc_check_addr; /* srv_tls_checks_client_addr(rpc_cfg.tls) */
	srv_metrics_grpc *rpc_metrics; /* cfg.metrics: per-row counters, else NULL */
	/* Shutdown waits on these for the notify tag and for live to reach 0. */
	pthread_mutex_t rpc_mu;
	pthread_cond_t rpc_cv;
	bool rpc_shutdown_done;
	atomic_size_t rpc_live;
	srv_tag rpc_tag_shutdown;
};

struct srv_call {
	srv_tag c_tag_new;
	srv_tag c_tag_final;
	srv_tag c_tag_resume;
	srv_resume_fn c_resume_fn; /* srv_call_resume */
	void *c_resume_arg;
	srv_rpc *c_rpc;
	srv_worker *c_worker;
	int c_row; /* index into rpc_rows; -1 for a generic (unserved) call */
	bool c_is_stream;
	atomic_int c_refs;
	atomic_int c_state; /* call_state */
	grpc_call *c_call;
	gpr_timespec c_deadline;
	grpc_metadata_array c_md;
	grpc_call_details c_details; /* generic calls only */
	grpc_byte_buffer *c_payload; /* request read with the call, if any */
	ProtobufCMessage *c_req;     /* decoded unary request */
	grpc_byte_buffer *c_resp;    /* unary reply in flight */
	grpc_slice c_status_msg;
	int c_cancelled; /* RECV_CLOSE_ON_SERVER output */
};

typedef struct sq_node {
	struct sq_node *next;
	grpc_byte_buffer *bb;
	size_t len;
} sq_node;

struct srv_stream {
	srv_call s_c; /* first: a srv_stream is a srv_call */
	srv_tag s_tag_recv;
	srv_tag s_tag_send;
	srv_tag s_tag_status;
	srv_tag s_tag_close;
	srv_stream_ops s_ops;
	void *s_ctx;
	/* Guarded by s_mu: everything below up to s_closed, and start_batch. */
	pthread_mutex_t s_mu;
	sq_node *s_head, *s_tail;
	grpc_byte_buffer *s_in_flight;
	size_t s_in_flight_len;
	bool s_md_sent;
	bool s_send_busy;
	bool s_finish_req;
	bool s_status_started;
	bool s_closed;
	int s_finish_err;
	/* Only touched on the stream's CQ thread. */
	grpc_byte_buffer *s_recv_bb;
	bool s_close_delivered;
	/* Read from any thread. */
	atomic_size_t s_queued_bytes;
	atomic_bool s_closed_flag;
};

/* ---- small helpers ---------------------------------------------------------- */

grpc_byte_buffer *srv_rpc_msg_encode(const ProtobufCMessage *m, size_t *len)
{
	size_t n = protobuf_c_message_get_packed_size(m);
	grpc_slice s = grpc_slice_malloc(n);
	protobuf_c_message_pack(m, GRPC_SLICE_START_PTR(s));
	grpc_byte_buffer *bb = grpc_raw_byte_buffer_create(&s, 1);
	grpc_slice_unref(s);
	if (len != NULL)
		*len = n;
	return bb;
}

ProtobufCMessage *srv_rpc_msg_decode(struct grpc_byte_buffer *bb,
				    const ProtobufCMessageDescriptor *d)
{
	if (bb->type == GRPC_BB_RAW && bb->data.raw.compression == GRPC_COMPRESS_NONE &&
	    bb->data.raw.slice_buffer.count == 1) {
		grpc_slice s = bb->data.raw.slice_buffer.slices[0];
		return protobuf_c_message_unpack(d, NULL, GRPC_SLICE_LENGTH(s),
						 GRPC_SLICE_START_PTR(s));
	}
	grpc_byte_buffer_reader r;
	if (!grpc_byte_buffer_reader_init(&r, bb))
		return NULL;
	grpc_slice s = grpc_byte_buffer_reader_readall(&r);
	grpc_byte_buffer_reader_destroy(&r);
	ProtobufCMessage *m =
		protobuf_c_message_unpack(d, NULL, GRPC_SLICE_LENGTH(s), GRPC_SLICE_START_PTR(s));
	grpc_slice_unref(s);
	return m;
}

static grpc_status_code status_code_of(int err)
{
	return err == EC_OK ? GRPC_STATUS_OK : (grpc_status_code)ec_grpc_code(err);
}

static grpc_slice status_msg_of(int err)
{
	/* ec_strerror returns static strings: no copy. OK carries no message. */
	return err == EC_OK ? grpc_empty_slice() : grpc_slice_from_static_string(ec_strerror(err));
}

static const srv_method *row_method(const srv_call *c)
{
	return c->c_row >= 0 ? &c->c_rpc->rpc_rows[c->c_row].m : NULL;
}

/* ---- call lifetime ---------------------------------------------------------- */

static void call_free(srv_call *c)
{
	srv_rpc *rpc = c->c_rpc;
	if (c->c_call != NULL)
		grpc_call_unref(c->c_call);
	grpc_metadata_array_destroy(&c->c_md);
	grpc_call_details_destroy(&c->c_details);
	if (c->c_payload != NULL)
		grpc_byte_buffer_destroy(c->c_payload);
	if (c->c_req != NULL)
		protobuf_c_message_free_unpacked(c->c_req, NULL);
	if (c->c_resp != NULL)
		grpc_byte_buffer_destroy(c->c_resp);
	grpc_slice_unref(c->c_status_msg);
	if (c->c_is_stream) {
		srv_stream *s = (srv_stream *)c;
		for (sq_node *n = s->s_head, *next; n != NULL; n = next) {
			next = n->next;
			grpc_byte_buffer_destroy(n->bb);
			free(n);
		}
		if (s->s_in_flight != NULL)
			grpc_byte_buffer_destroy(s->s_in_flight);
		if (s->s_recv_bb != NULL)
			grpc_byte_buffer_destroy(s->s_recv_bb);
		pthread_mutex_destroy(&s->s_mu);
	}
	free(c);
	/* Last touch of rpc: shutdown may free it as soon as we unlock. */
	if (atomic_fetch_sub(&rpc->rpc_live, 1) == 1) {
		pthread_mutex_lock(&rpc->rpc_mu);
		pthread_cond_broadcast(&rpc->rpc_cv);
		pthread_mutex_unlock(&rpc->rpc_mu);
	}
}

static void call_ref(srv_call *c)
{
	atomic_fetch_add_explicit(&c->c_refs, 1, memory_order_relaxed);
}

static void call_unref(srv_call *c)
{
	if (atomic_fetch_sub_explicit(&c->c_refs, 1, memory_order_acq_rel) == 1)
		call_free(c);
}

/* Allocate a call (or stream, by the row's kind) holding one reference: the
 * armed request's. */
static srv_call *call_new(srv_worker *w, int row)
{
	srv_rpc *rpc = w->rpc;
	bool stream = row >= 0 && rpc->rpc_rows[row].m.kind != SRV_UNARY;
	srv_call *c = calloc(1, stream ? sizeof(srv_stream) : sizeof(srv_call));
	if (c == NULL)
		return NULL;
	c->c_rpc = rpc;
	c->c_worker = w;
	c->c_row = row;
	c->c_is_stream = stream;
	atomic_init(&c->c_refs, 1);
	atomic_init(&c->c_state, CALL_ARMED);
	c->c_tag_new = (srv_tag){row >= 0 ? TAG_NEW : TAG_NEW_GENERIC, c};
	c->c_tag_final = (srv_tag){TAG_FINAL, c};
	c->c_tag_resume = (srv_tag){TAG_RESUME, c};
	c->c_status_msg = grpc_empty_slice();
	grpc_metadata_array_init(&c->c_md);
	grpc_call_details_init(&c->c_details);
	if (stream) {
		srv_stream *s = (srv_stream *)c;
		s->s_tag_recv = (srv_tag){TAG_RECV, c};
		s->s_tag_send = (srv_tag){TAG_SEND, c};
		s->s_tag_status = (srv_tag){TAG_STATUS, c};
		s->s_tag_close = (srv_tag){TAG_CLOSE, c};
		pthread_mutex_init(&s->s_mu, NULL);
		atomic_init(&s->s_queued_bytes, 0);
		atomic_init(&s->s_closed_flag, false);
	}
	atomic_fetch_add(&rpc->rpc_live, 1);
	return c;
}

/* Arm one request on worker @w for table row @row (-1: the generic request). */
static void arm(srv_worker *w, int row)
{
	srv_rpc *rpc = w->rpc;
	pthread_rwlock_rdlock(&rpc->rpc_arm_lock);
	if (rpc->rpc_stopping) {
		pthread_rwlock_unlock(&rpc->rpc_arm_lock);
		return;
	}
	srv_call *c = call_new(w, row);
	if (c == NULL) {
		pthread_rwlock_unlock(&rpc->rpc_arm_lock);
		srv_log_warn("out of memory arming a request; the method is now served by fewer "
		             "requests", SRV_LF_INT("method-row", row));
		return;
	}
	grpc_call_error e;
	if (row < 0) {
		e = grpc_server_request_call(rpc->rpc_server, &c->c_call, &c->c_details, &c->c_md,
					     w->cq, w->cq, &c->c_tag_new);
	} else {
		const srv_row *r = &rpc->rpc_rows[row];
		e = grpc_server_request_registered_call(
			rpc->rpc_server, r->reg, &c->c_call, &c->c_deadline, &c->c_md,
			r->m.kind == SRV_BIDI ? NULL : &c->c_payload, w->cq, w->cq, &c->c_tag_new);
	}
	pthread_rwlock_unlock(&rpc->rpc_arm_lock);
	if (e != GRPC_CALL_OK) {
		srv_log_warn("grpc request_call failed", SRV_LF_ERR(grpc_call_error_to_string(e)));
		call_unref(c);
	}
}

/* ---- unary calls ------------------------------------------------------------ */

/* Start the one final batch of a unary or generic call; consumes the app's
 * reference (it passes to the batch). @bb (may be NULL) is owned by the call. */
static void unary_finish(srv_call *c, grpc_byte_buffer *bb, grpc_status_code code, grpc_slice msg)
{
	int expect = CALL_ACTIVE;
	if (c->c_is_stream ||
	    !atomic_compare_exchange_strong(&c->c_state, &expect, CALL_FINISHING)) {
		srv_log_warn("call completed twice (or a stream completed as unary): ignored");
		if (bb != NULL)
			grpc_byte_buffer_destroy(bb);
		return;
	}
	if (c->c_row >= 0) {
		srv_metrics_grpc_handled(c->c_rpc->rpc_metrics, (size_t)c->c_row, (int)code);
		if (bb != NULL)
			srv_metrics_grpc_msg_sent(c->c_rpc->rpc_metrics, (size_t)c->c_row);
	}
	grpc_op ops[4];
	memset(ops, 0, sizeof ops);
	size_t n = 0;
	ops[n++].op = GRPC_OP_SEND_INITIAL_METADATA;
	if (bb != NULL) {
		c->c_resp = bb;
		ops[n].op = GRPC_OP_SEND_MESSAGE;
		ops[n++].data.send_message.send_message = bb;
	}
	c->c_status_msg = msg;
	ops[n].op = GRPC_OP_SEND_STATUS_FROM_SERVER;
	ops[n].data.send_status_from_server.status = code;
	ops[n++].data.send_status_from_server.status_details = &c->c_status_msg;
	ops[n].op = GRPC_OP_RECV_CLOSE_ON_SERVER;
	ops[n++].data.recv_close_on_server.cancelled = &c->c_cancelled;
	grpc_call_error e = grpc_call_start_batch(c->c_call, ops, n, &c->c_tag_final, NULL);
	if (e != GRPC_CALL_OK) {
		srv_log_warn("grpc final batch failed", SRV_LF_ERR(grpc_call_error_to_string(e)));
		call_unref(c);
	}
}

/* End a call that just arrived (unary or stream, no batch started on it yet)
 * with @code and the text @msg (copied), without running its handler. The
 * armed request's reference passes to the final batch. */
static void reject_call(srv_call *c, grpc_status_code code, const char *msg)
{
	atomic_store(&c->c_state, CALL_FINISHING);
	grpc_op ops[3];
	memset(ops, 0, sizeof ops);
	ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
	c->c_status_msg = grpc_slice_from_copied_string(msg);
	ops[1].op = GRPC_OP_SEND_STATUS_FROM_SERVER;
	ops[1].data.send_status_from_server.status = code;
	ops[1].data.send_status_from_server.status_details = &c->c_status_msg;
	ops[2].op = GRPC_OP_RECV_CLOSE_ON_SERVER;
	ops[2].data.recv_close_on_server.cancelled = &c->c_cancelled;
	grpc_call_error e = grpc_call_start_batch(c->c_call, ops, 3, &c->c_tag_final, NULL);
	if (e != GRPC_CALL_OK) {
		srv_log_warn("grpc reject batch failed", SRV_LF_ERR(grpc_call_error_to_string(e)));
		call_unref(c);
	}
}

void srv_call_reply(srv_call *call, const ProtobufCMessage *resp)
{
	unary_finish(call, srv_rpc_msg_encode(resp, NULL), GRPC_STATUS_OK, grpc_empty_slice());
}

void srv_call_fail(srv_call *call, int err)
{
	if (err == EC_OK) /* not a failure: keep the status non-OK as asked */
		err = EC_INTERNAL;
	unary_finish(call, NULL, status_code_of(err), status_msg_of(err));
}

void srv_call_resume(srv_call *call, srv_resume_fn fn, void *arg)
{
	call->c_resume_fn = fn;
	call->c_resume_arg = arg;
	call_ref(call);
	/* an empty batch completes at once, on the call's completion queue */
	grpc_call_error e = grpc_call_start_batch(call->c_call, NULL, 0, &call->c_tag_resume, NULL);
	if (e != GRPC_CALL_OK) {
		srv_log_warn("grpc resume batch failed", SRV_LF_ERR(grpc_call_error_to_string(e)));
		call_unref(call);
		fn(call, arg); /* here, then */
	}
}

static void unary_start(srv_call *c)
{
	const srv_method *m = row_method(c);
	atomic_store(&c->c_state, CALL_ACTIVE);
	if (c->c_payload == NULL) { /* no message, or core refused it */
		srv_call_fail(c, EC_BAD_REQUEST);
		return;
	}
	c->c_req = srv_rpc_msg_decode(c->c_payload, m->req);
	grpc_byte_buffer_destroy(c->c_payload);
	c->c_payload = NULL;
	srv_metrics_grpc_msg_received(c->c_rpc->rpc_metrics, (size_t)c->c_row);
	if (c->c_req == NULL) {
		srv_call_fail(c, EC_BAD_REQUEST);
		return;
	}
	m->unary(c, c->c_req);
}

/* ---- streams: batches (callers hold s_mu and a reference) -------------------- */

/* Start sending @bb. @more: other messages wait behind it, so the transport
 * may hold this one and write them together (GRPC_WRITE_BUFFER_HINT): a burst
 * of watch responses on one stream becomes one socket write, not one each. */
static void stream_start_send_locked(srv_stream *s, grpc_byte_buffer *bb, size_t len, bool more)
{
	grpc_op ops[2];
	memset(ops, 0, sizeof ops);
	size_t n = 0;
	if (!s->s_md_sent) {
		ops[n++].op = GRPC_OP_SEND_INITIAL_METADATA;
		s->s_md_sent = true;
	}
	ops[n].op = GRPC_OP_SEND_MESSAGE;
	/* The buffer hint lets held messages leave in one write; never on the
	 * batch that carries the initial metadata: gRPC 1.51 then holds the
	 * metadata too and the batch (so the queue behind it) waits for some
	 * unrelated write on the connection. */
	ops[n].flags = more && n == 0 ? GRPC_WRITE_BUFFER_HINT : 0;
	ops[n++].data.send_message.send_message = bb;
	s->s_in_flight = bb;
	s->s_in_flight_len = len;
	s->s_send_busy = true;
	call_ref(&s->s_c);
	grpc_call_error e = grpc_call_start_batch(s->s_c.c_call, ops, n, &s->s_tag_send, NULL);
	if (e != GRPC_CALL_OK) {
		srv_log_warn("grpc send batch failed", SRV_LF_ERR(grpc_call_error_to_string(e)));
		s->s_in_flight = NULL;
		s->s_send_busy = false;
		atomic_fetch_sub(&s->s_queued_bytes, len);
		grpc_byte_buffer_destroy(bb);
		call_unref(&s->s_c); /* never the last: the caller holds one */
	}
}

static void stream_start_status_locked(srv_stream *s)
{
	grpc_op ops[2];
	memset(ops, 0, sizeof ops);
	size_t n = 0;
	if (!s->s_md_sent) {
		ops[n++].op = GRPC_OP_SEND_INITIAL_METADATA;
		s->s_md_sent = true;
	}
	s->s_c.c_status_msg = status_msg_of(s->s_finish_err);
	ops[n].op = GRPC_OP_SEND_STATUS_FROM_SERVER;
	ops[n].data.send_status_from_server.status = status_code_of(s->s_finish_err);
	ops[n++].data.send_status_from_server.status_details = &s->s_c.c_status_msg;
	s->s_status_started = true;
	call_ref(&s->s_c);
	grpc_call_error e = grpc_call_start_batch(s->s_c.c_call, ops, n, &s->s_tag_status, NULL);
	if (e != GRPC_CALL_OK) {
		srv_log_warn("grpc status batch failed", SRV_LF_ERR(grpc_call_error_to_string(e)));
		call_unref(&s->s_c);
	}
}

static void stream_start_recv_locked(srv_stream *s)
{
	grpc_op op;
	memset(&op, 0, sizeof op);
	op.op = GRPC_OP_RECV_MESSAGE;
	op.data.recv_message.recv_message = &s->s_recv_bb;
	call_ref(&s->s_c);
	grpc_call_error e = grpc_call_start_batch(s->s_c.c_call, &op, 1, &s->s_tag_recv, NULL);
	if (e != GRPC_CALL_OK) {
		srv_log_warn("grpc recv batch failed", SRV_LF_ERR(grpc_call_error_to_string(e)));
		call_unref(&s->s_c);
	}
}

static void stream_drop_queue_locked(srv_stream *s)
{
	for (sq_node *n = s->s_head, *next; n != NULL; n = next) {
		next = n->next;
		atomic_fetch_sub(&s->s_queued_bytes, n->len);
		grpc_byte_buffer_destroy(n->bb);
		free(n);
	}
	s->s_head = s->s_tail = NULL;
}

/* ---- streams: public API ---------------------------------------------------- */

/* Start the head of the queue (idle stream): with the buffer hint when more
 * wait behind it, so held messages leave in one write. */
static void stream_start_next_locked(srv_stream *s)
{
	sq_node *n = s->s_head;
	s->s_head = n->next;
	if (s->s_head == NULL)
		s->s_tail = NULL;
	grpc_byte_buffer *bb = n->bb;
	size_t len = n->len;
	free(n);
	stream_start_send_locked(s, bb, len, s->s_head != NULL);
}

/* Queue @bb (@len bytes; consumed) on @st: the one send path of streams. An
 * idle stream starts sending at once unless @hold (srv_stream_flush starts
 * it); the queue is non-empty while idle only with held messages. */
static int stream_queue(srv_stream *st, grpc_byte_buffer *bb, size_t len, bool hold)
{
	pthread_mutex_lock(&st->s_mu);
	if (st->s_closed || st->s_finish_req) {
		pthread_mutex_unlock(&st->s_mu);
		grpc_byte_buffer_destroy(bb);
		return -1;
	}
	atomic_fetch_add(&st->s_queued_bytes, len);
	if (!st->s_send_busy && !hold && st->s_head == NULL) {
		stream_start_send_locked(st, bb, len, false);
	} else {
		sq_node *n = malloc(sizeof *n);
		if (n == NULL) {
			atomic_fetch_sub(&st->s_queued_bytes, len);
			pthread_mutex_unlock(&st->s_mu);
			grpc_byte_buffer_destroy(bb);
			return -1;
		}
		n->next = NULL;
		n->bb = bb;
		n->len = len;
		if (st->s_tail != NULL)
			st->s_tail->next = n;
		else
			st->s_head = n;
		st->s_tail = n;
		if (!st->s_send_busy && !hold)
			stream_start_next_locked(st);
	}
	pthread_mutex_unlock(&st->s_mu);
	return 0;
}

int srv_stream_send(srv_stream *st, const ProtobufCMessage *msg)
{
	size_t len;
	grpc_byte_buffer *bb = srv_rpc_msg_encode(msg, &len);
	return stream_queue(st, bb, len, false);
}

/* A byte buffer holding a copy of @p, @n. */
static grpc_byte_buffer *bytes_bb(const void *p, size_t n)
{
	grpc_slice s = grpc_slice_malloc(n);
	if (n)
		memcpy(GRPC_SLICE_START_PTR(s), p, n);
	grpc_byte_buffer *bb = grpc_raw_byte_buffer_create(&s, 1);
	grpc_slice_unref(s);
	return bb;
}

int srv_stream_send_bytes(srv_stream *st, const void *p, size_t n)
{
	return stream_queue(st, bytes_bb(p, n), n, false);
}

int srv_stream_send_bytes_held(srv_stream *st, const void *p, size_t n)
{
	return stream_queue(st, bytes_bb(p, n), n, true);
}

void srv_stream_flush(srv_stream *st)
{
	pthread_mutex_lock(&st->s_mu);
	if (!st->s_send_busy && !st->s_closed && st->s_head != NULL)
		stream_start_next_locked(st);
	pthread_mutex_unlock(&st->s_mu);
}

void srv_stream_finish(srv_stream *st, int err)
{
	pthread_mutex_lock(&st->s_mu);
	if (!st->s_finish_req && !st->s_closed) {
		st->s_finish_req = true;
		st->s_finish_err = err;
		atomic_store(&st->s_c.c_state, CALL_FINISHING);
		if (st->s_send_busy) {
			/* the last send completion starts it */
		} else if (st->s_head != NULL) {
			stream_start_next_locked(st); /* held messages go first */
		} else {
			stream_start_status_locked(st);
		}
	}
	pthread_mutex_unlock(&st->s_mu);
}

void srv_stream_set_ops(srv_stream *st, const srv_stream_ops *ops, void *ctx)
{
	if (ops != NULL)
		st->s_ops = *ops;
	else
		memset(&st->s_ops, 0, sizeof st->s_ops);
	st->s_ctx = ctx;
}

void srv_stream_ref(srv_stream *st)
{
	call_ref(&st->s_c);
}

void srv_stream_unref(srv_stream *st)
{
	call_unref(&st->s_c);
}

void *srv_stream_app(const srv_stream *st)
{
	return st->s_c.c_rpc->rpc_app;
}

const srv_call *srv_stream_call(const srv_stream *st)
{
	return &st->s_c;
}

size_t srv_stream_queued_bytes(const srv_stream *st)
{
	return atomic_load(&((srv_stream *)st)->s_queued_bytes);
}

bool srv_stream_closed(const srv_stream *st)
{
	return atomic_load(&((srv_stream *)st)->s_closed_flag);
}

/* ---- streams: completions (on the stream's CQ thread) ------------------------ */

static void stream_open(srv_stream *s)
{
	srv_call *c = &s->s_c;
	const srv_method *m = row_method(c);
	atomic_store(&c->c_state, CALL_ACTIVE);
	call_ref(c); /* ours until the end of this function */

	/* Watch for the end of the stream from the start. */
	grpc_op op;
	memset(&op, 0, sizeof op);
	op.op = GRPC_OP_RECV_CLOSE_ON_SERVER;
	op.data.recv_close_on_server.cancelled = &c->c_cancelled;
	call_ref(c);
	pthread_mutex_lock(&s->s_mu);
	grpc_call_error e = grpc_call_start_batch(c->c_call, &op, 1, &s->s_tag_close, NULL);
	pthread_mutex_unlock(&s->s_mu);
	if (e != GRPC_CALL_OK) {
		srv_log_warn("grpc close batch failed", SRV_LF_ERR(grpc_call_error_to_string(e)));
		call_unref(c);
	}

	ProtobufCMessage *req = NULL;
	if (m->kind == SRV_SERVER_STREAM) {
		if (c->c_payload != NULL) {
			req = srv_rpc_msg_decode(c->c_payload, m->req);
			grpc_byte_buffer_destroy(c->c_payload);
			c->c_payload = NULL;
			srv_metrics_grpc_msg_received(c->c_rpc->rpc_metrics, (size_t)c->c_row);
		}
		if (req == NULL) {
			srv_stream_finish(s, EC_BAD_REQUEST);
			call_unref(c); /* the app's reference, never handed out */
			call_unref(c);
			return;
		}
	}
	m->stream(s, req); /* the armed request's reference passes to the app */
	if (req != NULL)
		protobuf_c_message_free_unpacked(req, NULL);
	if (m->kind == SRV_BIDI) {
		pthread_mutex_lock(&s->s_mu);
		if (!s->s_closed && !s->s_finish_req)
			stream_start_recv_locked(s);
		pthread_mutex_unlock(&s->s_mu);
	}
	call_unref(c);
}

static void stream_on_recv(srv_stream *s, bool ok)
{
	grpc_byte_buffer *bb = s->s_recv_bb;
	s->s_recv_bb = NULL;
	if (ok && bb != NULL) {
		ProtobufCMessage *msg = srv_rpc_msg_decode(bb, row_method(&s->s_c)->req);
		grpc_byte_buffer_destroy(bb);
		srv_metrics_grpc_msg_received(s->s_c.c_rpc->rpc_metrics, (size_t)s->s_c.c_row);
		if (msg == NULL) {
			srv_stream_finish(s, EC_BAD_REQUEST);
		} else {
			if (!s->s_close_delivered && s->s_ops.on_recv != NULL)
				s->s_ops.on_recv(s, s->s_ctx, msg);
			protobuf_c_message_free_unpacked(msg, NULL);
			pthread_mutex_lock(&s->s_mu);
			if (!s->s_closed && !s->s_finish_req)
				stream_start_recv_locked(s);
			pthread_mutex_unlock(&s->s_mu);
		}
	} else if (ok) { /* half-close: the client will send no more */
		if (!s->s_close_delivered && s->s_ops.on_recv != NULL)
			s->s_ops.on_recv(s, s->s_ctx, NULL);
	} else if (bb != NULL) {
		grpc_byte_buffer_destroy(bb);
	}
	call_unref(&s->s_c);
}

static void stream_on_send(srv_stream *s, bool ok)
{
	bool drained = false;
	if (ok)
		srv_metrics_grpc_msg_sent(s->s_c.c_rpc->rpc_metrics, (size_t)s->s_c.c_row);
	pthread_mutex_lock(&s->s_mu);
	grpc_byte_buffer_destroy(s->s_in_flight);
	s->s_in_flight = NULL;
	atomic_fetch_sub(&s->s_queued_bytes, s->s_in_flight_len);
	s->s_send_busy = false;
	if (!ok || s->s_closed) {
		stream_drop_queue_locked(s);
	} else if (s->s_head != NULL) {
		stream_start_next_locked(s);
	} else if (s->s_finish_req && !s->s_status_started) {
		stream_start_status_locked(s);
	} else {
		drained = true;
	}
	pthread_mutex_unlock(&s->s_mu);
	if (drained && !s->s_close_delivered && s->s_ops.on_drain != NULL)
		s->s_ops.on_drain(s, s->s_ctx);
	call_unref(&s->s_c);
}

static void stream_on_close(srv_stream *s, bool ok)
{
	pthread_mutex_lock(&s->s_mu);
	s->s_closed = true;
	stream_drop_queue_locked(s);
	/* grpc-prometheus counts the handler's status; a stream the client ended
	 * first is Canceled */
	int code = s->s_status_started ? (int)status_code_of(s->s_finish_err) : GRPC_STATUS_CANCELLED;
	pthread_mutex_unlock(&s->s_mu);
	srv_metrics_grpc_handled(s->s_c.c_rpc->rpc_metrics, (size_t)s->s_c.c_row, code);
	atomic_store(&s->s_closed_flag, true);
	bool cancelled = !ok || s->s_c.c_cancelled;
	s->s_close_delivered = true;
	if (s->s_ops.on_close != NULL)
		s->s_ops.on_close(s, s->s_ctx, cancelled);
	call_unref(&s->s_c);
}

/* ---- the worker loop ------------------------------------------------------- */

static void dispatch(srv_worker *w, srv_tag *tag, bool ok)
{
	srv_call *c = tag->owner;
	switch (tag->kind) {
	case TAG_NEW:
		if (!ok) { /* server shutting down: the request was never matched */
			call_unref(c);
			break;
		}
		arm(w, c->c_row); /* keep one request armed for this method */
		if (w->rpc->rpc_check_addr) {
			char why[512] = "";
			if (srv_tls_check_client_addr(w->rpc->rpc_cfg.tls, c->c_call, why, sizeof why) !=
			    0) {
				reject_call(c, GRPC_STATUS_UNAVAILABLE, why);
				break;
			}
		}
		srv_metrics_grpc_started(w->rpc->rpc_metrics, (size_t)c->c_row);
		if (c->c_is_stream)
			stream_open((srv_stream *)c);
		else
			unary_start(c);
		break;
	case TAG_NEW_GENERIC:
		if (!ok) {
			call_unref(c);
			break;
		}
		arm(w, -1);
		atomic_store(&c->c_state, CALL_ACTIVE);
		unary_finish(c, NULL, GRPC_STATUS_UNIMPLEMENTED, status_msg_of(EC_UNIMPLEMENTED));
		break;
	case TAG_FINAL:
		call_unref(c);
		break;
	case TAG_RESUME:
		c->c_resume_fn(c, c->c_resume_arg);
		call_unref(c);
		break;
	case TAG_RECV:
		stream_on_recv((srv_stream *)c, ok);
		break;
	case TAG_SEND:
		stream_on_send((srv_stream *)c, ok);
		break;
	case TAG_STATUS:
		call_unref(c);
		break;
	case TAG_CLOSE:
		stream_on_close((srv_stream *)c, ok);
		break;
	case TAG_SHUTDOWN: {
		srv_rpc *rpc = w->rpc;
		pthread_mutex_lock(&rpc->rpc_mu);
		rpc->rpc_shutdown_done = true;
		pthread_cond_broadcast(&rpc->rpc_cv);
		pthread_mutex_unlock(&rpc->rpc_mu);
		break;
	}
	}
}

static void *worker_main(void *arg)
{
	srv_worker *w = arg;
	char name[16];
	snprintf(name, sizeof name, "ms-rpc-%d", w->index);
	pthread_setname_np(pthread_self(), name);
	for (;;) {
		grpc_event ev =
			grpc_completion_queue_next(w->cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
		if (ev.type == GRPC_QUEUE_SHUTDOWN)
			break;
		if (ev.type == GRPC_OP_COMPLETE)
			dispatch(w, ev.tag, ev.success != 0);
	}
	return NULL;
}

/* ---- start and shutdown ------------------------------------------------------ */

static int check_table(const srv_method *methods, size_t n, char *err, size_t errlen)
{
	for (size_t i = 0; i < n; i++) {
		const srv_method *m = &methods[i];
		if (m->name == NULL || m->name[0] != '/') {
			srv_errf(err, errlen, "method row %zu: name must start with '/'", i);
			return -1;
		}
		if (m->req == NULL || m->resp == NULL) {
			srv_errf(err, errlen, "method %s: request and response descriptors needed",
				m->name);
			return -1;
		}
		if (m->kind != SRV_UNARY && m->kind != SRV_SERVER_STREAM && m->kind != SRV_BIDI) {
			srv_errf(err, errlen, "method %s: bad kind %d", m->name, (int)m->kind);
			return -1;
		}
		if ((m->kind == SRV_UNARY && m->stream != NULL) ||
		    (m->kind != SRV_UNARY && m->unary != NULL)) {
			srv_errf(err, errlen, "method %s: handler does not match its kind", m->name);
			return -1;
		}
		for (size_t j = 0; j < i; j++) {
			if (strcmp(methods[j].name, m->name) == 0) {
				srv_errf(err, errlen, "method %s listed twice", m->name);
				return -1;
			}
		}
	}
	return 0;
}

static void resolve_defaults(srv_rpc_config *c)
{
	if (c->threads <= 0)
		c->threads = 2;
	if (c->max_request_bytes == 0)
		c->max_request_bytes = SRV_DEFAULT_MAX_REQUEST_BYTES;
	if (c->keepalive_min_time_ms <= 0)
		c->keepalive_min_time_ms = 5000;
	if (c->keepalive_time_ms <= 0)
		c->keepalive_time_ms = 2 * 60 * 60 * 1000;
	if (c->keepalive_timeout_ms <= 0)
		c->keepalive_timeout_ms = 20 * 1000;
	if (c->max_ping_strikes < 0)
		c->max_ping_strikes = 0;
	if (c->shutdown_grace_ms <= 0)
		c->shutdown_grace_ms = 2000;
	if (c->shutdown_hard_ms <= 0)
		c->shutdown_hard_ms = 5000;
}

/*
 * The gRPC core address for listen address @in, and whether it is TLS:
 * "http://h:p" -> "h:p"; "https://h:p" -> "h:p" (TLS); "unix://x" -> "unix:x";
 * "unixs://x" -> "unix:x" (TLS); anything else is passed on as it is
 * (plaintext). -1 if it does not fit.
 */
static int listen_addr(const char *in, char *out, size_t len, bool *tls)
{
	static const struct {
		const char *scheme, *prefix;
		bool tls;
	} map[] = {{"http://", "", false},
		   {"https://", "", true},
		   {"unix://", "unix:", false},
		   {"unixs://", "unix:", true},
		   {"unixs-abstract:", "unix-abstract:", true}};
	*tls = false;
	for (size_t i = 0; i < sizeof map / sizeof map[0]; i++) {
		size_t n = strlen(map[i].scheme);
		if (strncmp(in, map[i].scheme, n) == 0) {
			*tls = map[i].tls;
			int w = snprintf(out, len, "%s%s", map[i].prefix, in + n);
			return w >= 0 && (size_t)w < len ? 0 : -1;
		}
	}
	int w = snprintf(out, len, "%s", in);
	return w >= 0 && (size_t)w < len ? 0 : -1;
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

/* Wait on rpc_cv until shutdown finished and no call is alive, or @deadline. */
static bool wait_quiet(srv_rpc *rpc, const struct timespec *deadline)
{
	pthread_mutex_lock(&rpc->rpc_mu);
	while (!(rpc->rpc_shutdown_done && atomic_load(&rpc->rpc_live) == 0)) {
		if (pthread_cond_timedwait(&rpc->rpc_cv, &rpc->rpc_mu, deadline) == ETIMEDOUT)
			break;
	}
	bool quiet = rpc->rpc_shutdown_done && atomic_load(&rpc->rpc_live) == 0;
	pthread_mutex_unlock(&rpc->rpc_mu);
	return quiet;
}

static struct timespec deadline_in(int ms)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	t.tv_sec += ms / 1000;
	t.tv_nsec += (long)(ms % 1000) * 1000000L;
	if (t.tv_nsec >= 1000000000L) {
		t.tv_sec++;
		t.tv_nsec -= 1000000000L;
	}
	return t;
}

/* Shut @cq down, take what is left on it and destroy it (no thread waits on it). */
static void cq_drain_destroy(grpc_completion_queue *cq)
{
	grpc_completion_queue_shutdown(cq);
	while (grpc_completion_queue_next(cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL).type !=
	       GRPC_QUEUE_SHUTDOWN)
		;
	grpc_completion_queue_destroy(cq);
}

/* Free everything; the server must be shut down (or never started) and the
 * worker threads joined (or never started). */
static void rpc_free(srv_rpc *rpc)
{
	if (rpc->rpc_server != NULL)
		grpc_server_destroy(rpc->rpc_server);
	for (int i = 0; i < rpc->rpc_nworkers; i++) {
		srv_worker *w = &rpc->rpc_workers[i];
		if (w->cq == NULL)
			continue;
		if (w->started) { /* the thread takes the rest and exits */
			grpc_completion_queue_shutdown(w->cq);
			pthread_join(w->thread, NULL);
			grpc_completion_queue_destroy(w->cq);
		} else {
			cq_drain_destroy(w->cq);
		}
	}
	if (rpc->rpc_listen_cq != NULL)
		cq_drain_destroy(rpc->rpc_listen_cq);
	free(rpc->rpc_workers);
	free(rpc->rpc_rows);
	free(rpc->rpc_ports);
	srv_metrics_grpc_free(rpc->rpc_metrics);
	srv_tls_unref(rpc->rpc_cfg.tls);
	pthread_rwlock_destroy(&rpc->rpc_arm_lock);
	pthread_mutex_destroy(&rpc->rpc_mu);
	pthread_cond_destroy(&rpc->rpc_cv);
	free(rpc);
	grpc_shutdown();
}

/* Tear down a server whose start failed after grpc_server_create: nothing is
 * armed; some worker threads may be running (worker 0 first, if any). */
static void rpc_abort_start(srv_rpc *rpc)
{
	pthread_rwlock_wrlock(&rpc->rpc_arm_lock);
	rpc->rpc_stopping = true;
	pthread_rwlock_unlock(&rpc->rpc_arm_lock);
	srv_worker *w0 = &rpc->rpc_workers[0];
	/* Core refuses to destroy a server with listeners unless shut down, even
	 * one never started. */
	grpc_server_shutdown_and_notify(rpc->rpc_server, w0->cq, &rpc->rpc_tag_shutdown);
	if (w0->started) {
		struct timespec d = deadline_in(rpc->rpc_cfg.shutdown_hard_ms);
		wait_quiet(rpc, &d);
	} else {
		for (;;) { /* no thread: wait for the notify tag by hand */
			grpc_event ev = grpc_completion_queue_next(
				w0->cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
			if (ev.type != GRPC_OP_COMPLETE)
				break;
			dispatch(w0, ev.tag, ev.success != 0);
			if (ev.tag == &rpc->rpc_tag_shutdown)
				break;
		}
	}
	rpc_free(rpc);
}

grpc_completion_queue *srv_rpc_cq_create(bool polling)
{
	grpc_completion_queue_attributes a = {
	        .version = 1,
	        .cq_completion_type = GRPC_CQ_NEXT,
	        .cq_polling_type = polling ? GRPC_CQ_DEFAULT_POLLING : GRPC_CQ_NON_POLLING,
	};
	const grpc_completion_queue_factory *f = grpc_completion_queue_factory_lookup(&a);
	return f == NULL ? NULL : grpc_completion_queue_create(f, &a, NULL);
}

bool srv_rpc_tune_runtime(void)
{
	/* absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore), under
	 * Debian's inline namespace and abseil's plain one (kIgnore is 0) */
	static const char *const names[] = {
	        "_ZN4absl7debian329SetMutexDeadlockDetectionModeENS0_15OnDeadlockCycleE",
	        "_ZN4absl29SetMutexDeadlockDetectionModeENS_15OnDeadlockCycleE",
	};
	for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
		void *sym = dlsym(RTLD_DEFAULT, names[i]);
		if (sym != NULL) {
			void (*set_mode)(int);
			memcpy(&set_mode, &sym, sizeof set_mode);
			set_mode(0);
			return true;
		}
	}
	return false;
}

int srv_rpc_start(const srv_rpc_config *cfg, const srv_method *methods, size_t n, void *app,
		  srv_rpc **out, char *err, size_t errlen)
{
	*out = NULL;
	if (cfg == NULL || (!cfg->adopt_fds && (cfg->n_listen == 0 || cfg->listen == NULL))) {
		srv_errf(err, errlen, "no listen address");
		return -1;
	}
	if (n > 0 && methods == NULL) {
		srv_errf(err, errlen, "no method table");
		return -1;
	}
	if (check_table(methods, n, err, errlen) != 0)
		return -1;

	grpc_init();
	srv_rpc *rpc = calloc(1, sizeof *rpc);
	if (rpc == NULL) {
		grpc_shutdown();
		srv_errf(err, errlen, "out of memory");
		return -1;
	}
	rpc->rpc_cfg = *cfg;
	rpc->rpc_cfg.listen = NULL;
	resolve_defaults(&rpc->rpc_cfg);
	srv_tls_ref(rpc->rpc_cfg.tls);
	rpc->rpc_check_addr = srv_tls_checks_client_addr(rpc->rpc_cfg.tls);
	rpc->rpc_app = app;
	rpc->rpc_tag_shutdown = (srv_tag){TAG_SHUTDOWN, rpc};
	atomic_init(&rpc->rpc_live, 0);
	pthread_rwlock_init(&rpc->rpc_arm_lock, NULL);
	pthread_mutex_init(&rpc->rpc_mu, NULL);
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&rpc->rpc_cv, &ca);
	pthread_condattr_destroy(&ca);

	rpc->rpc_nrows = n;
	rpc->rpc_rows = calloc(n > 0 ? n : 1, sizeof *rpc->rpc_rows);
	rpc->rpc_nports = cfg->n_listen;
	rpc->rpc_ports = calloc(cfg->n_listen ? cfg->n_listen : 1, sizeof *rpc->rpc_ports);
	rpc->rpc_nworkers = rpc->rpc_cfg.threads;
	rpc->rpc_workers = calloc((size_t)rpc->rpc_nworkers, sizeof *rpc->rpc_workers);
	if (rpc->rpc_rows == NULL || rpc->rpc_ports == NULL || rpc->rpc_workers == NULL) {
		rpc->rpc_nworkers = 0;
		rpc_free(rpc);
		srv_errf(err, errlen, "out of memory");
		return -1;
	}
	for (size_t i = 0; i < n; i++)
		rpc->rpc_rows[i].m = methods[i];
	if (cfg->metrics) {
		const char **names = calloc(n ? n : 1, sizeof *names);
		srv_grpc_type *types = calloc(n ? n : 1, sizeof *types);
		for (size_t i = 0; names && types && i < n; i++) {
			names[i] = methods[i].name;
			types[i] = methods[i].kind == SRV_UNARY      ? SRV_GRPC_UNARY
			           : methods[i].kind == SRV_BIDI     ? SRV_GRPC_BIDI_STREAM
			                                             : SRV_GRPC_SERVER_STREAM;
		}
		if (names && types)
			rpc->rpc_metrics = srv_metrics_grpc_new(names, types, n);
		free(names);
		free(types);
		if (rpc->rpc_metrics == NULL) {
			rpc->rpc_nworkers = 0;
			rpc_free(rpc);
			srv_errf(err, errlen, "out of memory");
			return -1;
		}
	}

	/* Channel args: etcd's limits and keepalive policy (embed/etcd.go,
	 * etcdserver/api/v3rpc/grpc.go). */
	const srv_rpc_config *rc = &rpc->rpc_cfg;
	size_t max_recv = rc->max_request_bytes + SRV_GRPC_OVERHEAD_BYTES;
	grpc_arg args[] = {
		int_arg(GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH,
			max_recv > INT_MAX ? INT_MAX : (int)max_recv),
		int_arg(GRPC_ARG_MAX_SEND_MESSAGE_LENGTH, -1),
		int_arg(GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS,
			rc->keepalive_min_time_ms),
		int_arg(GRPC_ARG_HTTP2_MAX_PING_STRIKES, rc->max_ping_strikes),
		int_arg(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1),
		int_arg(GRPC_ARG_KEEPALIVE_TIME_MS, rc->keepalive_time_ms),
		int_arg(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, rc->keepalive_timeout_ms),
		/* Fail on a port already in use instead of sharing it. */
		int_arg(GRPC_ARG_ALLOW_REUSEPORT, 0),
		/* last: left out when unset (0) */
		int_arg(GRPC_ARG_MAX_CONCURRENT_STREAMS,
			rc->max_concurrent_streams > INT_MAX ? INT_MAX
			                                     : (int)rc->max_concurrent_streams),
	};
	size_t nargs = sizeof args / sizeof args[0];
	if (rc->max_concurrent_streams == 0)
		nargs--;
	grpc_channel_args cargs = {nargs, args};
	rpc->rpc_server = grpc_server_create(&cargs, NULL);

	for (int i = 0; i < rpc->rpc_nworkers; i++) {
		srv_worker *w = &rpc->rpc_workers[i];
		w->rpc = rpc;
		w->index = i;
		w->cq = srv_rpc_cq_create(!rpc->rpc_cfg.no_polling);
		grpc_server_register_completion_queue(rpc->rpc_server, w->cq, NULL);
	}
	if (rpc->rpc_cfg.no_polling) {
		/* Nothing is ever requested on it, so it never gets an event. */
		rpc->rpc_listen_cq = srv_rpc_cq_create(true);
		grpc_server_register_completion_queue(rpc->rpc_server, rpc->rpc_listen_cq, NULL);
	}
	for (size_t i = 0; i < n; i++) {
		srv_row *r = &rpc->rpc_rows[i];
		bool served = r->m.kind == SRV_UNARY ? r->m.unary != NULL : r->m.stream != NULL;
		if (!served)
			continue;
		r->reg = grpc_server_register_method(
			rpc->rpc_server, r->m.name, NULL,
			r->m.kind == SRV_BIDI ? GRPC_SRM_PAYLOAD_NONE
					      : GRPC_SRM_PAYLOAD_READ_INITIAL_BYTE_BUFFER,
			0);
		if (r->reg == NULL) {
			srv_errf(err, errlen, "cannot register method %s", r->m.name);
			rpc_abort_start(rpc);
			return -1;
		}
	}
	for (size_t i = 0; i < cfg->n_listen; i++) {
		char addr[1024];
		bool tls = false;
		if (cfg->listen[i] == NULL || listen_addr(cfg->listen[i], addr, sizeof addr, &tls) != 0) {
			srv_errf(err, errlen, "cannot listen on %s: not an address",
				cfg->listen[i] != NULL ? cfg->listen[i] : "(null)");
			rpc_abort_start(rpc);
			return -1;
		}
		if (tls && cfg->tls == NULL) {
			srv_errf(err, errlen, "cannot listen on %s: no TLS certificate and key",
				cfg->listen[i]);
			rpc_abort_start(rpc);
			return -1;
		}
		grpc_server_credentials *creds = tls ? srv_tls_server_creds(cfg->tls)
						     : grpc_insecure_server_credentials_create();
		int port = creds != NULL ? grpc_server_add_http2_port(rpc->rpc_server, addr, creds) : 0;
		if (creds != NULL)
			grpc_server_credentials_release(creds);
		if (port <= 0) {
			srv_errf(err, errlen, "cannot listen on %s", cfg->listen[i]);
			rpc_abort_start(rpc);
			return -1;
		}
		rpc->rpc_ports[i] = port;
	}
	grpc_server_start(rpc->rpc_server);

	/* Threads first, requests after: a failure here has nothing armed yet. */
	for (int i = 0; i < rpc->rpc_nworkers; i++) {
		srv_worker *w = &rpc->rpc_workers[i];
		int e = pthread_create(&w->thread, NULL, worker_main, w);
		if (e != 0) {
			srv_errf(err, errlen, "cannot start thread: %s", strerror(e));
			rpc_abort_start(rpc);
			return -1;
		}
		w->started = true;
	}
	for (int i = 0; i < rpc->rpc_nworkers; i++) {
		srv_worker *w = &rpc->rpc_workers[i];
		for (size_t j = 0; j < n; j++)
			if (rpc->rpc_rows[j].reg != NULL)
				arm(w, (int)j);
		arm(w, -1);
	}
	*out = rpc;
	return 0;
}

void srv_rpc_shutdown(srv_rpc *rpc)
{
	if (rpc == NULL)
		return;
	pthread_rwlock_wrlock(&rpc->rpc_arm_lock);
	rpc->rpc_stopping = true;
	pthread_rwlock_unlock(&rpc->rpc_arm_lock);
	/* Stop accepting; armed requests fail and are freed by their workers. */
	grpc_server_shutdown_and_notify(rpc->rpc_server, rpc->rpc_workers[0].cq,
					&rpc->rpc_tag_shutdown);
	struct timespec grace = deadline_in(rpc->rpc_cfg.shutdown_grace_ms);
	if (!wait_quiet(rpc, &grace)) {
		grpc_server_cancel_all_calls(rpc->rpc_server);
		struct timespec hard = deadline_in(rpc->rpc_cfg.shutdown_hard_ms);
		if (!wait_quiet(rpc, &hard)) {
			srv_log_warn("calls still held by the application at shutdown; leaking the "
			             "server so they stay safe",
			             SRV_LF_UINT("calls", atomic_load(&rpc->rpc_live)),
			             SRV_LF_DUR_MS("waited", rpc->rpc_cfg.shutdown_grace_ms +
			                                         rpc->rpc_cfg.shutdown_hard_ms));
			return;
		}
	}
	rpc_free(rpc);
}

int srv_rpc_port(const srv_rpc *rpc, size_t i)
{
	return i < rpc->rpc_nports ? rpc->rpc_ports[i] : 0;
}

size_t srv_rpc_max_request_bytes(const srv_rpc *rpc)
{
	return rpc->rpc_cfg.max_request_bytes;
}

uint32_t srv_rpc_max_concurrent_streams(const srv_rpc *rpc)
{
	return rpc->rpc_cfg.max_concurrent_streams;
}

int srv_rpc_adopt_fd(srv_rpc *rpc, int fd)
{
	if (!rpc->rpc_cfg.adopt_fds)
		return -1;
	int fl = fcntl(fd, F_GETFL);
	if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) != 0)
		return -1;
	struct sockaddr_storage ss;
	socklen_t len = sizeof ss;
	if (getsockname(fd, (struct sockaddr *)&ss, &len) == 0 &&
	    (ss.ss_family == AF_INET || ss.ss_family == AF_INET6)) {
		int one = 1; /* as core sets on the sockets it accepts */
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	}
	/* Not once shutdown has begun: core would set up a channel on a server
	 * that is going away. */
	pthread_rwlock_rdlock(&rpc->rpc_arm_lock);
	if (rpc->rpc_stopping) {
		pthread_rwlock_unlock(&rpc->rpc_arm_lock);
		return -1;
	}
	grpc_server_credentials *creds = grpc_insecure_server_credentials_create();
	grpc_server_add_channel_from_fd(rpc->rpc_server, fd, creds);
	grpc_server_credentials_release(creds);
	pthread_rwlock_unlock(&rpc->rpc_arm_lock);
	return 0;
}

/* The core's in-process transport (src/core/ext/transport/inproc in gRPC
 * 1.51): exported by libgrpc, declared in no installed header, C++ linkage;
 * bound here by its mangled name (same C ABI on every Linux target). */
extern grpc_channel *srv_grpc_inproc_channel_create(grpc_server *server,
                                                    const grpc_channel_args *args, void *reserved)
        __asm__("_Z26grpc_inproc_channel_createP11grpc_serverPK17grpc_channel_argsPv");

grpc_channel *srv_rpc_inproc_channel(srv_rpc *rpc)
{
	/* The gateway forwards whatever the server accepts (etcd's gateway dials
	 * with MaxCallRecvMsgSize(MaxInt32)). */
	grpc_arg args[] = {int_arg(GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH, -1),
	                   int_arg(GRPC_ARG_MAX_SEND_MESSAGE_LENGTH, -1)};
	grpc_channel_args cargs = {sizeof args / sizeof args[0], args};
	pthread_rwlock_rdlock(&rpc->rpc_arm_lock);
	grpc_channel *ch = rpc->rpc_stopping ? NULL
	                                     : srv_grpc_inproc_channel_create(rpc->rpc_server, &cargs, NULL);
	pthread_rwlock_unlock(&rpc->rpc_arm_lock);
	return ch;
}

const srv_metrics_grpc *srv_rpc_metrics(const srv_rpc *rpc)
{
	return rpc != NULL ? rpc->rpc_metrics : NULL;
}

size_t srv_rpc_live_calls(const srv_rpc *rpc)
{
	return atomic_load(&((srv_rpc *)rpc)->rpc_live);
}

/* ---- call accessors ------------------------------------------------------- */

void *srv_call_app(const srv_call *call)
{
	return call->c_rpc->rpc_app;
}

const srv_method *srv_call_method(const srv_call *call)
{
	return row_method(call);
}

const char *srv_call_metadata(const srv_call *call, const char *key, size_t *len)
{
	size_t klen = strlen(key);
	for (size_t i = 0; i < call->c_md.count; i++) {
		const grpc_metadata *md = &call->c_md.metadata[i];
		if (GRPC_SLICE_LENGTH(md->key) == klen &&
		    memcmp(GRPC_SLICE_START_PTR(md->key), key, klen) == 0) {
			if (len != NULL)
				*len = GRPC_SLICE_LENGTH(md->value);
			return (const char *)GRPC_SLICE_START_PTR(md->value);
		}
	}
	return NULL;
}

int srv_call_peer_cn(const srv_call *call, char *buf, size_t cap)
{
	return srv_tls_call_cn(call->c_call, buf, cap);
}

bool srv_call_require_leader(const srv_call *call)
{
	size_t len;
	const char *v = srv_call_metadata(call, "hasleader", &len);
	return v != NULL && len == 4 && memcmp(v, "true", 4) == 0;
}

int64_t srv_call_remaining_ms(const srv_call *call)
{
	gpr_timespec d = call->c_deadline;
	if (gpr_time_cmp(d, gpr_inf_future(d.clock_type)) == 0)
		return -1;
	gpr_timespec left = gpr_time_sub(d, gpr_now(d.clock_type));
	if (left.tv_sec < 0)
		return 0;
	return (int64_t)left.tv_sec * 1000 + left.tv_nsec / 1000000;
}
