/*
 * tc_client: a small blocking gRPC client on the C core, for the server tests.
 *
 * Unary calls run on their own pluck CQ. A stream owns one pluck CQ with a
 * distinct tag per kind of operation, so one thread may send while another
 * receives (at most one send and one receive outstanding, as core requires).
 */
#ifndef METASTORE_TC_CLIENT_H
#define METASTORE_TC_CLIENT_H

#include <stdbool.h>
#include <stddef.h>

#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <protobuf-c/protobuf-c.h>

typedef struct tc_conn tc_conn;
typedef struct tc_stream tc_stream;

typedef struct tc_status {
	grpc_status_code code;
	char msg[512];
} tc_status;

/* tc_connect - a channel to 127.0.0.1:@port; @args may be NULL. */
tc_conn *tc_connect(int port, const grpc_channel_args *args);
/* tc_connect_creds - a channel to @target ("host:port") with credentials @cr
 * (not consumed: the caller releases them); @args may be NULL. */
tc_conn *tc_connect_creds(const char *target, grpc_channel_credentials *cr,
			  const grpc_channel_args *args);
void tc_close(tc_conn *c);

/*
 * tc_unary - call @method with @req (or the raw bytes @raw/@rawlen when @req
 * is NULL), decode the reply as @resp_desc into *@resp (caller frees with
 * protobuf_c_message_free_unpacked; NULL on error), fill @st. @timeout_ms <= 0:
 * no deadline. @md/@nmd: request metadata. Returns 0 if the status is OK.
 */
int tc_unary(tc_conn *c, const char *method, const ProtobufCMessage *req, const void *raw,
	     size_t rawlen, const ProtobufCMessageDescriptor *resp_desc, ProtobufCMessage **resp,
	     tc_status *st, int timeout_ms, const grpc_metadata *md, size_t nmd);

/*
 * tc_unary_via - tc_unary on channel @ch (any, e.g. srv_rpc_inproc_channel),
 * its completion awaited with grpc_completion_queue_next() on @cq (a queue for
 * next, owned by the caller and left with no event of this call), or on a
 * queue of its own when @cq is NULL. Same arguments and result otherwise.
 */
int tc_unary_via(grpc_channel *ch, grpc_completion_queue *cq, const char *method,
		 const ProtobufCMessage *req, const void *raw, size_t rawlen,
		 const ProtobufCMessageDescriptor *resp_desc, ProtobufCMessage **resp,
		 tc_status *st, int timeout_ms, const grpc_metadata *md, size_t nmd);

/* tc_stream_open - start a streaming call (initial metadata sent). */
tc_stream *tc_stream_open(tc_conn *c, const char *method, int timeout_ms,
			  const grpc_metadata *md, size_t nmd);
/* tc_stream_send - send one message; blocks until written. 0 on success. */
int tc_stream_send(tc_stream *s, const ProtobufCMessage *msg);
/* tc_stream_send_raw - send raw bytes as one message. */
int tc_stream_send_raw(tc_stream *s, const void *buf, size_t len);
/* tc_stream_close_send - half-close. */
int tc_stream_close_send(tc_stream *s);
/*
 * tc_stream_recv - the next message decoded as @d, waiting up to @timeout_ms.
 * Returns NULL at end of stream (*@eof true) or on timeout/failure (*@eof
 * false). A timed-out receive stays outstanding; the next call waits for it.
 */
ProtobufCMessage *tc_stream_recv(tc_stream *s, const ProtobufCMessageDescriptor *d,
				 int timeout_ms, bool *eof);
/* tc_stream_status - wait up to @timeout_ms for the final status. 0 if got. */
int tc_stream_status(tc_stream *s, tc_status *st, int timeout_ms);
/* tc_stream_cancel - cancel the call (client side). */
void tc_stream_cancel(tc_stream *s);
/* tc_stream_free - cancel if needed, reap every outstanding op, free. */
void tc_stream_free(tc_stream *s);

#endif
