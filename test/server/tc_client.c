/*
 * tc_client.c: see tc_client.h.
 */
#include "tc_client.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <grpc/byte_buffer.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc_security.h>
#include <grpc/slice.h>
#include <grpc/support/time.h>

struct tc_conn {
	grpc_channel *ch;
};

enum { T_START, T_SEND, T_RECV, T_STATUS, T__N };

struct tc_stream {
	grpc_call *call;
	grpc_completion_queue *cq;
	char tags[T__N];      /* addresses are the tags */
	bool outstanding[T__N];
	bool got_md;
	grpc_metadata_array md_in, trailers;
	grpc_byte_buffer *recv_bb;
	grpc_byte_buffer *send_bb;
	grpc_status_code code;
	grpc_slice details;
	bool have_status;
	bool recv_eof;
};

static gpr_timespec deadline_ms(int ms)
{
	if (ms <= 0)
		return gpr_inf_future(GPR_CLOCK_REALTIME);
	return gpr_time_add(gpr_now(GPR_CLOCK_REALTIME), gpr_time_from_millis(ms, GPR_TIMESPAN));
}

tc_conn *tc_connect(int port, const grpc_channel_args *args)
{
	grpc_init();
	char target[64];
	snprintf(target, sizeof target, "127.0.0.1:%d", port);
	tc_conn *c = calloc(1, sizeof *c);
	grpc_channel_credentials *cr = grpc_insecure_credentials_create();
	c->ch = grpc_channel_create(target, cr, args);
	grpc_channel_credentials_release(cr);
	return c;
}

tc_conn *tc_connect_creds(const char *target, grpc_channel_credentials *cr,
			  const grpc_channel_args *args)
{
	grpc_init();
	tc_conn *c = calloc(1, sizeof *c);
	c->ch = grpc_channel_create(target, cr, args);
	return c;
}

void tc_close(tc_conn *c)
{
	if (c == NULL)
		return;
	grpc_channel_destroy(c->ch);
	free(c);
	grpc_shutdown();
}

static grpc_byte_buffer *encode(const ProtobufCMessage *m, const void *raw, size_t rawlen)
{
	grpc_slice s;
	if (m != NULL) {
		size_t n = protobuf_c_message_get_packed_size(m);
		s = grpc_slice_malloc(n);
		protobuf_c_message_pack(m, GRPC_SLICE_START_PTR(s));
	} else {
		s = grpc_slice_from_copied_buffer(raw, rawlen);
	}
	grpc_byte_buffer *bb = grpc_raw_byte_buffer_create(&s, 1);
	grpc_slice_unref(s);
	return bb;
}

static ProtobufCMessage *decode(grpc_byte_buffer *bb, const ProtobufCMessageDescriptor *d)
{
	grpc_byte_buffer_reader r;
	grpc_byte_buffer_reader_init(&r, bb);
	grpc_slice s = grpc_byte_buffer_reader_readall(&r);
	grpc_byte_buffer_reader_destroy(&r);
	ProtobufCMessage *m =
		protobuf_c_message_unpack(d, NULL, GRPC_SLICE_LENGTH(s), GRPC_SLICE_START_PTR(s));
	grpc_slice_unref(s);
	return m;
}

static void copy_details(tc_status *st, grpc_status_code code, grpc_slice details)
{
	if (st == NULL)
		return;
	st->code = code;
	size_t n = GRPC_SLICE_LENGTH(details);
	if (n >= sizeof st->msg)
		n = sizeof st->msg - 1;
	memcpy(st->msg, GRPC_SLICE_START_PTR(details), n);
	st->msg[n] = 0;
}

int tc_unary(tc_conn *c, const char *method, const ProtobufCMessage *req, const void *raw,
	     size_t rawlen, const ProtobufCMessageDescriptor *resp_desc, ProtobufCMessage **resp,
	     tc_status *st, int timeout_ms, const grpc_metadata *md, size_t nmd)
{
	return tc_unary_via(c->ch, NULL, method, req, raw, rawlen, resp_desc, resp, st, timeout_ms,
			    md, nmd);
}

int tc_unary_via(grpc_channel *ch, grpc_completion_queue *next_cq, const char *method,
		 const ProtobufCMessage *req, const void *raw, size_t rawlen,
		 const ProtobufCMessageDescriptor *resp_desc, ProtobufCMessage **resp,
		 tc_status *st, int timeout_ms, const grpc_metadata *md, size_t nmd)
{
	if (resp != NULL)
		*resp = NULL;
	grpc_completion_queue *cq =
		next_cq != NULL ? next_cq : grpc_completion_queue_create_for_pluck(NULL);
	grpc_slice m = grpc_slice_from_static_string(method);
	grpc_call *call = grpc_channel_create_call(ch, NULL, GRPC_PROPAGATE_DEFAULTS, cq, m,
						   NULL, deadline_ms(timeout_ms), NULL);
	grpc_byte_buffer *out = encode(req, raw, rawlen), *in = NULL;
	grpc_metadata_array md_in, trailers;
	grpc_metadata_array_init(&md_in);
	grpc_metadata_array_init(&trailers);
	grpc_status_code code = GRPC_STATUS_UNKNOWN;
	grpc_slice details = grpc_empty_slice();
	grpc_op ops[6];
	memset(ops, 0, sizeof ops);
	ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
	ops[0].data.send_initial_metadata.count = nmd;
	ops[0].data.send_initial_metadata.metadata = (grpc_metadata *)md;
	ops[1].op = GRPC_OP_SEND_MESSAGE;
	ops[1].data.send_message.send_message = out;
	ops[2].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
	ops[3].op = GRPC_OP_RECV_INITIAL_METADATA;
	ops[3].data.recv_initial_metadata.recv_initial_metadata = &md_in;
	ops[4].op = GRPC_OP_RECV_MESSAGE;
	ops[4].data.recv_message.recv_message = &in;
	ops[5].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
	ops[5].data.recv_status_on_client.trailing_metadata = &trailers;
	ops[5].data.recv_status_on_client.status = &code;
	ops[5].data.recv_status_on_client.status_details = &details;
	char tag;
	grpc_call_error e = grpc_call_start_batch(call, ops, 6, &tag, NULL);
	if (e == GRPC_CALL_OK && next_cq == NULL)
		grpc_completion_queue_pluck(cq, &tag, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
	else if (e == GRPC_CALL_OK) /* the only batch on it: the next event is ours */
		while (grpc_completion_queue_next(cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL).tag !=
		       &tag)
			;
	copy_details(st, code, details);
	if (code == GRPC_STATUS_OK && in != NULL && resp != NULL && resp_desc != NULL)
		*resp = decode(in, resp_desc);
	if (in != NULL)
		grpc_byte_buffer_destroy(in);
	grpc_byte_buffer_destroy(out);
	grpc_slice_unref(details);
	grpc_metadata_array_destroy(&md_in);
	grpc_metadata_array_destroy(&trailers);
	grpc_call_unref(call);
	if (next_cq == NULL) {
		grpc_completion_queue_shutdown(cq);
		while (grpc_completion_queue_pluck(cq, NULL, gpr_inf_future(GPR_CLOCK_REALTIME),
						   NULL)
			       .type != GRPC_QUEUE_SHUTDOWN)
			;
		grpc_completion_queue_destroy(cq);
	}
	return e == GRPC_CALL_OK && code == GRPC_STATUS_OK ? 0 : -1;
}

/* Wait for op @t; true if it completed (ok or not) within @ms. */
static bool wait_op(tc_stream *s, int t, int ms, bool *ok)
{
	grpc_event ev = grpc_completion_queue_pluck(s->cq, &s->tags[t], deadline_ms(ms), NULL);
	if (ev.type != GRPC_OP_COMPLETE)
		return false;
	s->outstanding[t] = false;
	if (ok != NULL)
		*ok = ev.success != 0;
	return true;
}

tc_stream *tc_stream_open(tc_conn *c, const char *method, int timeout_ms,
			  const grpc_metadata *md, size_t nmd)
{
	tc_stream *s = calloc(1, sizeof *s);
	s->cq = grpc_completion_queue_create_for_pluck(NULL);
	grpc_slice m = grpc_slice_from_static_string(method);
	s->call = grpc_channel_create_call(c->ch, NULL, GRPC_PROPAGATE_DEFAULTS, s->cq, m, NULL,
					   deadline_ms(timeout_ms), NULL);
	grpc_metadata_array_init(&s->md_in);
	grpc_metadata_array_init(&s->trailers);
	s->details = grpc_empty_slice();
	grpc_op ops[1];
	memset(ops, 0, sizeof ops);
	ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
	ops[0].data.send_initial_metadata.count = nmd;
	ops[0].data.send_initial_metadata.metadata = (grpc_metadata *)md;
	s->outstanding[T_START] = true;
	grpc_call_start_batch(s->call, ops, 1, &s->tags[T_START], NULL);
	wait_op(s, T_START, 0, NULL);
	/* The status op stays outstanding for the whole call. */
	memset(ops, 0, sizeof ops);
	ops[0].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
	ops[0].data.recv_status_on_client.trailing_metadata = &s->trailers;
	ops[0].data.recv_status_on_client.status = &s->code;
	ops[0].data.recv_status_on_client.status_details = &s->details;
	s->outstanding[T_STATUS] = true;
	grpc_call_start_batch(s->call, ops, 1, &s->tags[T_STATUS], NULL);
	return s;
}

static int send_bb(tc_stream *s, grpc_byte_buffer *bb)
{
	grpc_op op;
	memset(&op, 0, sizeof op);
	op.op = GRPC_OP_SEND_MESSAGE;
	op.data.send_message.send_message = bb;
	s->outstanding[T_SEND] = true;
	bool ok = false;
	if (grpc_call_start_batch(s->call, &op, 1, &s->tags[T_SEND], NULL) != GRPC_CALL_OK)
		s->outstanding[T_SEND] = false;
	else
		wait_op(s, T_SEND, 0, &ok);
	grpc_byte_buffer_destroy(bb);
	return ok ? 0 : -1;
}

int tc_stream_send(tc_stream *s, const ProtobufCMessage *msg)
{
	return send_bb(s, encode(msg, NULL, 0));
}

int tc_stream_send_raw(tc_stream *s, const void *buf, size_t len)
{
	return send_bb(s, encode(NULL, buf, len));
}

int tc_stream_close_send(tc_stream *s)
{
	grpc_op op;
	memset(&op, 0, sizeof op);
	op.op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
	s->outstanding[T_SEND] = true;
	bool ok = false;
	if (grpc_call_start_batch(s->call, &op, 1, &s->tags[T_SEND], NULL) != GRPC_CALL_OK)
		s->outstanding[T_SEND] = false;
	else
		wait_op(s, T_SEND, 0, &ok);
	return ok ? 0 : -1;
}

/* Receive the next message as a byte buffer (caller destroys); NULL at end
 * (*eof true) or on timeout/failure. */
static grpc_byte_buffer *recv_raw(tc_stream *s, int timeout_ms, bool *eof)
{
	*eof = false;
	if (!s->outstanding[T_RECV]) {
		grpc_op ops[2];
		memset(ops, 0, sizeof ops);
		size_t n = 0;
		if (!s->got_md) {
			ops[n].op = GRPC_OP_RECV_INITIAL_METADATA;
			ops[n++].data.recv_initial_metadata.recv_initial_metadata = &s->md_in;
			s->got_md = true;
		}
		ops[n].op = GRPC_OP_RECV_MESSAGE;
		ops[n++].data.recv_message.recv_message = &s->recv_bb;
		s->outstanding[T_RECV] = true;
		if (grpc_call_start_batch(s->call, ops, n, &s->tags[T_RECV], NULL) != GRPC_CALL_OK) {
			s->outstanding[T_RECV] = false;
			return NULL;
		}
	}
	if (!wait_op(s, T_RECV, timeout_ms, NULL))
		return NULL; /* timed out; still outstanding */
	grpc_byte_buffer *bb = s->recv_bb;
	s->recv_bb = NULL;
	if (bb == NULL)
		*eof = true;
	return bb;
}

ProtobufCMessage *tc_stream_recv(tc_stream *s, const ProtobufCMessageDescriptor *d,
				 int timeout_ms, bool *eof)
{
	bool end;
	grpc_byte_buffer *bb = recv_raw(s, timeout_ms, &end);
	if (eof != NULL)
		*eof = end;
	if (bb == NULL)
		return NULL;
	ProtobufCMessage *m = decode(bb, d);
	grpc_byte_buffer_destroy(bb);
	return m;
}

int tc_stream_status(tc_stream *s, tc_status *st, int timeout_ms)
{
	/* Core hands the client its status only once initial metadata and the
	 * messages before it have been received: read (and drop) to the end. */
	gpr_timespec end = deadline_ms(timeout_ms);
	while (!s->have_status && !s->recv_eof) {
		gpr_timespec left = gpr_time_sub(end, gpr_now(GPR_CLOCK_REALTIME));
		int ms = (int)gpr_time_to_millis(left);
		if (ms <= 0)
			return -1;
		bool eof;
		grpc_byte_buffer *bb = recv_raw(s, ms, &eof);
		if (bb != NULL)
			grpc_byte_buffer_destroy(bb);
		else if (eof)
			s->recv_eof = true;
		else if (s->outstanding[T_RECV])
			return -1; /* timed out */
		else
			break; /* the call failed */
	}
	if (!s->have_status) {
		if (!wait_op(s, T_STATUS, timeout_ms, NULL))
			return -1;
		s->have_status = true;
	}
	copy_details(st, s->code, s->details);
	return 0;
}

void tc_stream_cancel(tc_stream *s)
{
	grpc_call_cancel(s->call, NULL);
}

void tc_stream_free(tc_stream *s)
{
	if (s == NULL)
		return;
	grpc_call_cancel(s->call, NULL);
	for (int t = 0; t < T__N; t++)
		if (s->outstanding[t])
			wait_op(s, t, 0, NULL);
	if (s->recv_bb != NULL)
		grpc_byte_buffer_destroy(s->recv_bb);
	grpc_metadata_array_destroy(&s->md_in);
	grpc_metadata_array_destroy(&s->trailers);
	grpc_slice_unref(s->details);
	grpc_call_unref(s->call);
	grpc_completion_queue_shutdown(s->cq);
	while (grpc_completion_queue_pluck(s->cq, NULL, gpr_inf_future(GPR_CLOCK_REALTIME), NULL)
		       .type != GRPC_QUEUE_SHUTDOWN)
		;
	grpc_completion_queue_destroy(s->cq);
	free(s);
}
