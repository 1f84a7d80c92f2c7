/*
 * srv_gateway.c: etcd's grpc-gateway (srv_gateway.h) over the gRPC core's
 * in-process channel.
 *
 * Why in-process. etcd's gateway dials its own client URL; a call through
 * grpc_inproc_channel_create reaches the same method table with no socket, no
 * HTTP/2 framing and no TLS, while staying an ordinary call: auth metadata,
 * metrics, leader checks, limits and error mapping are the handlers' own.
 *
 * Why suspend/resume. libmicrohttpd runs each daemon on one polling thread;
 * a handler blocked on a gRPC call would stall every HTTP client of the
 * daemon, and a watch never ends. So nothing here blocks: when a request's
 * body is complete, the access handler decodes it, suspends the connection
 * (MHD_suspend_connection) and starts the call on the gateway's completion
 * queue. The gateway thread, which owns that queue, records the answer and
 * resumes the connection; libmicrohttpd then calls the access handler again,
 * which queues the response. Streams answer through a content-reader
 * callback: it hands out the {"result":...} lines received so far and, when
 * there are none, suspends the connection until the gateway thread has more.
 * Reception is paused above 1 MiB of unsent output (backpressure on the gRPC
 * stream). A suspended connection is not polled by libmicrohttpd, so the
 * gateway thread checks the sockets of suspended requests every 200 ms for a
 * hang-up (POLLRDHUP) and cancels the call of a client that went away (etcd's
 * CloseNotify). Thread-per-connection would also work but costs a thread per
 * client and still needs the hang-up check for idle watches.
 *
 * Calls in flight are limited to --max-concurrent-streams (srv_rpc's
 * max_concurrent_streams, 0: no limit), as etcd's gateway is one gRPC client
 * connection whose HTTP/2 stream quota makes a call past the limit wait until
 * a stream ends. Here a call holds a slot from its start until its status
 * comes back (or its client goes away); a request whose body is decoded when
 * every slot is taken waits, suspended, in a FIFO queue (REQ_WAITING). A
 * slot given up passes straight to the oldest waiter (slot_drop), whose call
 * then starts (slot_grant); a waiter whose client hangs up or whose deadline
 * passes leaves the queue. So the queue is never longer than zero while a
 * slot is free, and a later request never overtakes an earlier one.
 *
 * Locking: gw->mu guards the list of live requests; each request's mu guards
 * its state and every grpc_call_start_batch on its call (the access handler,
 * the content reader and the gateway thread all start batches). Order:
 * gw->mu before a request's mu; gw->slot_mu (the slot count, the queue, each
 * request's slot and queue links) is a leaf taken last. Starting a waiter's
 * call takes its mu, so a slot is given up with no request's mu held. A
 * request is reference counted: one for libmicrohttpd (dropped in
 * srv_gateway_completed, after the request left the queue), one per
 * outstanding batch, one while a slot is being handed to it.
 *
 * What etcd's gateway answers, reproduced: routes from rpc.pb.gw.go (POST
 * only; another method on a known path is 405 "Method Not Allowed", an
 * unknown path 404 "Not Found", both Go's http.Error text); the body decoded
 * by jsonpb with unknown fields ignored (a body that does not parse is 400,
 * code 3; an empty body is an empty request); errors as
 * {"error":M,"message":M,"code":C} with runtime.HTTPStatusFromCode(C) and the
 * Grpc-Trailer-Content-Type trailer; responses with Grpc-Metadata-Content-Type;
 * stream errors as {"error":{"grpc_code","http_code","message","http_status"}};
 * the HTTP Authorization header forwarded as "authorization" metadata,
 * Grpc-Metadata-* headers as metadata, Grpc-Timeout as the deadline.
 */
#include "server/srv_gateway.h"
#include "server/srv_http.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <gnutls/gnutls.h>
#include <gnutls/x509.h>
#include <grpc/byte_buffer.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc.h>
#include <grpc/slice.h>
#include <grpc/support/time.h>
#include <jansson.h>

#include "etcdcompat/ec_errors.h"
#include "etcdcompat/ec_json.h"
#include "server/srv_log.h"
#include "server/srv_methods.h"
#include "server/srv_rpc.h"

#define GW_MAX_BODY   ((size_t)64 << 20) /* request bodies above this: 413 */
#define GW_HIGH_WATER ((size_t)1 << 20)  /* pause reception above this much output */
#define GW_SCAN_MS    200                /* hang-up check of suspended requests */
#define GW_MAX_MD     16                 /* forwarded metadata entries */

/* ---- routes --------------------------------------------------------------------- */

/* etcd 3.4's gateway paths (etcdserverpb/gw/rpc.pb.gw.go, then the concurrency
 * services'). /v3/maintenance/hash
 * is registered for Hash and HashKV; the first (Hash) wins, as in etcd. */
static const struct {
	const char *path;
	srv_method_id id;
} routes[] = {
        {"/v3/kv/range", SRV_M_KV_RANGE},
        {"/v3/kv/put", SRV_M_KV_PUT},
        {"/v3/kv/deleterange", SRV_M_KV_DELETE_RANGE},
        {"/v3/kv/txn", SRV_M_KV_TXN},
        {"/v3/kv/compaction", SRV_M_KV_COMPACT},
        {"/v3/watch", SRV_M_WATCH},
        {"/v3/lease/grant", SRV_M_LEASE_GRANT},
        {"/v3/lease/revoke", SRV_M_LEASE_REVOKE},
        {"/v3/kv/lease/revoke", SRV_M_LEASE_REVOKE},
        {"/v3/lease/keepalive", SRV_M_LEASE_KEEP_ALIVE},
        {"/v3/lease/timetolive", SRV_M_LEASE_TIME_TO_LIVE},
        {"/v3/kv/lease/timetolive", SRV_M_LEASE_TIME_TO_LIVE},
        {"/v3/lease/leases", SRV_M_LEASE_LEASES},
        {"/v3/kv/lease/leases", SRV_M_LEASE_LEASES},
        {"/v3/cluster/member/add", SRV_M_MEMBER_ADD},
        {"/v3/cluster/member/remove", SRV_M_MEMBER_REMOVE},
        {"/v3/cluster/member/update", SRV_M_MEMBER_UPDATE},
        {"/v3/cluster/member/list", SRV_M_MEMBER_LIST},
        {"/v3/cluster/member/promote", SRV_M_MEMBER_PROMOTE},
        {"/v3/maintenance/alarm", SRV_M_ALARM},
        {"/v3/maintenance/status", SRV_M_STATUS},
        {"/v3/maintenance/defragment", SRV_M_DEFRAGMENT},
        {"/v3/maintenance/hash", SRV_M_HASH},
        {"/v3/maintenance/snapshot", SRV_M_SNAPSHOT},
        {"/v3/maintenance/transfer-leadership", SRV_M_MOVE_LEADER},
        {"/v3/auth/enable", SRV_M_AUTH_ENABLE},
        {"/v3/auth/disable", SRV_M_AUTH_DISABLE},
        {"/v3/auth/authenticate", SRV_M_AUTHENTICATE},
        {"/v3/auth/user/add", SRV_M_USER_ADD},
        {"/v3/auth/user/get", SRV_M_USER_GET},
        {"/v3/auth/user/list", SRV_M_USER_LIST},
        {"/v3/auth/user/delete", SRV_M_USER_DELETE},
        {"/v3/auth/user/changepw", SRV_M_USER_CHANGE_PASSWORD},
        {"/v3/auth/user/grant", SRV_M_USER_GRANT_ROLE},
        {"/v3/auth/user/revoke", SRV_M_USER_REVOKE_ROLE},
        {"/v3/auth/role/add", SRV_M_ROLE_ADD},
        {"/v3/auth/role/get", SRV_M_ROLE_GET},
        {"/v3/auth/role/list", SRV_M_ROLE_LIST},
        {"/v3/auth/role/delete", SRV_M_ROLE_DELETE},
        {"/v3/auth/role/grant", SRV_M_ROLE_GRANT_PERMISSION},
        {"/v3/auth/role/revoke", SRV_M_ROLE_REVOKE_PERMISSION},
        /* v3electionpb/gw and v3lockpb/gw */
        {"/v3/election/campaign", SRV_M_ELECTION_CAMPAIGN},
        {"/v3/election/proclaim", SRV_M_ELECTION_PROCLAIM},
        {"/v3/election/leader", SRV_M_ELECTION_LEADER},
        {"/v3/election/observe", SRV_M_ELECTION_OBSERVE},
        {"/v3/election/resign", SRV_M_ELECTION_RESIGN},
        {"/v3/lock/lock", SRV_M_LOCK_LOCK},
        {"/v3/lock/unlock", SRV_M_LOCK_UNLOCK},
};

/* ---- types ---------------------------------------------------------------------- */

typedef enum {
	TAG_UNARY,  /* the one batch of a unary call */
	TAG_START,  /* a stream's initial metadata went out and came in */
	TAG_SEND,   /* a stream's SEND_MESSAGE (and maybe SEND_CLOSE) returned */
	TAG_RECV,   /* a stream's RECV_MESSAGE returned */
	TAG_STATUS, /* a stream's RECV_STATUS_ON_CLIENT returned */
} tag_kind;

typedef struct gw_req gw_req;

typedef struct gw_tag {
	tag_kind kind;
	gw_req *owner;
} gw_tag;

typedef enum {
	REQ_COLLECT,   /* reading the body */
	REQ_WAITING,   /* body decoded, connection suspended, waiting for a slot */
	REQ_CALLING,   /* call started, connection suspended, no answer yet */
	REQ_READY,     /* unary answer (or a local error) ready to be queued */
	REQ_STREAMING, /* stream response queued (or to be queued on resume) */
	REQ_QUEUED,    /* unary response queued: nothing left to do */
	REQ_GONE,      /* the client went away or the gateway stops */
} req_state;

typedef enum {
	SLOT_NONE,    /* neither holds a slot nor waits for one */
	SLOT_WAITING, /* on the gateway's wait queue */
	SLOT_HELD,    /* counts against the limit */
} slot_state;

typedef struct gw_buf {
	char *p;
	size_t len, cap;
	bool oom;
} gw_buf;

struct srv_gateway {
	srv_rpc *rpc;
	grpc_channel *ch;
	grpc_completion_queue *cq;
	pthread_t thread;
	bool thread_started;
	srv_method methods[SRV_M__COUNT];
	pthread_mutex_t mu; /* guards the list, live, stopping */
	pthread_cond_t cv;
	gw_req *head;         /* requests with a call not yet over */
	size_t live;          /* requests not yet freed */
	atomic_bool stopping; /* read under a request's mu too: no gw->mu needed */

	/* call slots (--max-concurrent-streams) */
	pthread_mutex_t slot_mu;       /* guards the four below and each request's
	                                * slot, wprev, wnext; a leaf lock */
	size_t max_calls;              /* slots; 0: no limit */
	size_t running;                /* requests in SLOT_HELD */
	gw_req *wait_head, *wait_tail; /* SLOT_WAITING requests, oldest first */
};

struct gw_req {
	srv_gateway *gw;
	atomic_int refs;
	pthread_mutex_t mu;
	gw_req *prev, *next; /* gw->head list, while listed */
	bool listed;
	slot_state slot;       /* under gw->slot_mu */
	gw_req *wprev, *wnext; /* the wait queue, under gw->slot_mu */
	req_state state;
	struct MHD_Connection *conn;
	bool suspended;
	const srv_method *m;
	gw_buf body;
	/* forwarded metadata (keys lower case), copies */
	grpc_metadata md[GW_MAX_MD];
	size_t n_md;
	gpr_timespec deadline;
	/* the call */
	grpc_call *call;
	gw_tag t_unary, t_start, t_send, t_recv, t_status;
	grpc_metadata_array md_in, md_trail;
	grpc_byte_buffer *recv_bb;
	grpc_status_code status;
	grpc_slice details;
	grpc_byte_buffer **out_msgs; /* stream: packed requests to send */
	size_t n_out, next_out;
	bool send_busy, send_closed;
	bool recv_busy, recv_paused, recv_eof, status_done, final_done;
	bool any_result;
	/* the answer */
	int http_status;
	bool trailer;         /* error from gRPC: Trailer + Grpc-Trailer-Content-Type */
	bool grpc_md;         /* Grpc-Metadata-Content-Type */
	bool nosniff;         /* X-Content-Type-Options: nosniff (Go's http.Error) */
	const char *location; /* Location (a redirect), static */
	const char *ctype;
	gw_buf out; /* unary body, or stream output not yet handed to MHD */
	size_t out_off;
};

/* ---- small helpers ---------------------------------------------------------------- */

static const char TEXT_PLAIN[] = "text/plain; charset=utf-8";

static void buf_add(gw_buf *b, const void *p, size_t n)
{
	if (b->oom || n == 0)
		return;
	if (b->len + n + 1 > b->cap) {
		size_t cap = b->cap ? b->cap : 256;
		while (cap < b->len + n + 1)
			cap *= 2;
		char *q = realloc(b->p, cap);
		if (q == NULL) {
			b->oom = true;
			return;
		}
		b->p = q;
		b->cap = cap;
	}
	memcpy(b->p + b->len, p, n);
	b->len += n;
	b->p[b->len] = '\0';
}

static void buf_str(gw_buf *b, const char *s)
{
	buf_add(b, s, strlen(s));
}

static void buf_free(gw_buf *b)
{
	free(b->p);
	memset(b, 0, sizeof *b);
}

/* @s as a JSON string, escaped as Go's encoding/json does (HTML characters too). */
static void buf_json_str(gw_buf *b, const char *s, size_t n)
{
	static const char hex[] = "0123456789abcdef";
	buf_add(b, "\"", 1);
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		char e[7];
		if (c == '"' || c == '\\') {
			e[0] = '\\', e[1] = (char)c;
			buf_add(b, e, 2);
		} else if (c == '\n') {
			buf_add(b, "\\n", 2);
		} else if (c == '\r') {
			buf_add(b, "\\r", 2);
		} else if (c == '\t') {
			buf_add(b, "\\t", 2);
		} else if (c < 0x20 || c == '<' || c == '>' || c == '&') {
			memcpy(e, "\\u00", 4);
			e[4] = hex[c >> 4], e[5] = hex[c & 15];
			buf_add(b, e, 6);
		} else {
			buf_add(b, &s[i], 1);
		}
	}
	buf_add(b, "\"", 1);
}

/* grpc-gateway's runtime.HTTPStatusFromCode. */
static int http_status_of(grpc_status_code code)
{
	switch (code) {
	case GRPC_STATUS_OK:
		return 200;
	case GRPC_STATUS_CANCELLED:
		return 408;
	case GRPC_STATUS_UNKNOWN:
		return 500;
	case GRPC_STATUS_INVALID_ARGUMENT:
		return 400;
	case GRPC_STATUS_DEADLINE_EXCEEDED:
		return 504;
	case GRPC_STATUS_NOT_FOUND:
		return 404;
	case GRPC_STATUS_ALREADY_EXISTS:
		return 409;
	case GRPC_STATUS_PERMISSION_DENIED:
		return 403;
	case GRPC_STATUS_UNAUTHENTICATED:
		return 401;
	case GRPC_STATUS_RESOURCE_EXHAUSTED:
		return 429;
	case GRPC_STATUS_FAILED_PRECONDITION:
		return 412;
	case GRPC_STATUS_ABORTED:
		return 409;
	case GRPC_STATUS_OUT_OF_RANGE:
		return 400;
	case GRPC_STATUS_UNIMPLEMENTED:
		return 501;
	case GRPC_STATUS_INTERNAL:
		return 500;
	case GRPC_STATUS_UNAVAILABLE:
		return 503;
	case GRPC_STATUS_DATA_LOSS:
		return 500;
	default:
		return 500;
	}
}

/* Go's http.StatusText for the statuses above. */
static const char *status_text(int st)
{
	switch (st) {
	case 200:
		return "OK";
	case 400:
		return "Bad Request";
	case 401:
		return "Unauthorized";
	case 403:
		return "Forbidden";
	case 404:
		return "Not Found";
	case 408:
		return "Request Timeout";
	case 409:
		return "Conflict";
	case 412:
		return "Precondition Failed";
	case 429:
		return "Too Many Requests";
	case 501:
		return "Not Implemented";
	case 503:
		return "Service Unavailable";
	case 504:
		return "Gateway Timeout";
	default:
		return "Internal Server Error";
	}
}

/* runtime.DefaultHTTPError's body: {"error":M,"message":M,"code":C}. */
static void error_body(gw_buf *b, int code, const char *msg, size_t n)
{
	buf_str(b, "{\"error\":");
	buf_json_str(b, msg, n);
	buf_str(b, ",\"message\":");
	buf_json_str(b, msg, n);
	char c[32];
	snprintf(c, sizeof c, ",\"code\":%d}", code);
	buf_str(b, c);
}

/* The request answers the local error @code/@msg (decoding, bad timeout). */
static void set_local_error(gw_req *r, grpc_status_code code, const char *msg)
{
	buf_free(&r->out);
	r->http_status = http_status_of(code);
	r->ctype = "application/json";
	error_body(&r->out, (int)code, msg, strlen(msg));
	r->state = REQ_READY;
}

/* The request answers @text (Go's http.Error; NULL: no body, no type). */
static void local_text(gw_req *r, int status, const char *text)
{
	buf_free(&r->out);
	r->http_status = status;
	r->ctype = text != NULL ? TEXT_PLAIN : NULL;
	r->nosniff = text != NULL;
	if (text != NULL)
		buf_str(&r->out, text);
	r->state = REQ_READY;
}

/* ---- JSON in --------------------------------------------------------------------- */

static size_t skip_space(const char *p, size_t n, size_t i)
{
	while (i < n && (p[i] == ' ' || p[i] == '\t' || p[i] == '\n' || p[i] == '\r'))
		i++;
	return i;
}

/*
 * Decode the next JSON value of @text[*pos..n) as a @d message, as Go's
 * json.Decoder + jsonpb would. Returns 1 and *out; 0 with *out NULL at the
 * end of the text; -1 with @err on a decoding error. *pos moves past the
 * value.
 */
static int decode_next(const ProtobufCMessageDescriptor *d, const char *text, size_t n, size_t *pos,
                       ProtobufCMessage **out, char *err, size_t errlen)
{
	*out = NULL;
	size_t i = skip_space(text, n, *pos);
	if (i >= n) {
		*pos = n;
		return 0;
	}
	json_error_t je;
	json_t *v = json_loadb(text + i, n - i,
	                       JSON_DISABLE_EOF_CHECK | JSON_DECODE_ANY | JSON_ALLOW_NUL, &je);
	int rc;
	if (v == NULL) {
		/* Not something jansson reads (or a huge integer it refuses):
		 * ec_json has the last word, on the rest of the text. */
		rc = ec_json_decode(d, text + i, n - i, out, err, errlen);
		*pos = n;
		return rc == EC_OK ? 1 : -1;
	}
	/* jansson found where the value ends; ec_json decodes exactly that text
	 * (unknown fields skipped, as the gateway's jsonpb). */
	size_t used = (size_t)je.position;
	json_decref(v);
	if (used == 0 || used > n - i)
		used = n - i;
	rc = ec_json_decode(d, text + i, used, out, err, errlen);
	*pos = i + used;
	return rc == EC_OK ? 1 : -1;
}

static ProtobufCMessage *empty_message(const ProtobufCMessageDescriptor *d)
{
	ProtobufCMessage *m = calloc(1, d->sizeof_message);
	if (m != NULL)
		d->message_init(m);
	return m;
}

static void message_free(ProtobufCMessage *m)
{
	if (m != NULL)
		protobuf_c_message_free_unpacked(m, NULL);
}

/* ---- request lifetime ------------------------------------------------------------- */

static void list_add(srv_gateway *gw, gw_req *r);
static void list_del(srv_gateway *gw, gw_req *r);

static void req_free(gw_req *r)
{
	srv_gateway *gw = r->gw;
	/* unlinked first: while gw->mu is held, a listed request stays valid */
	pthread_mutex_lock(&gw->mu);
	list_del(gw, r);
	gw->live--;
	pthread_cond_broadcast(&gw->cv);
	pthread_mutex_unlock(&gw->mu);
	if (r->call != NULL)
		grpc_call_unref(r->call);
	grpc_metadata_array_destroy(&r->md_in);
	grpc_metadata_array_destroy(&r->md_trail);
	if (r->recv_bb != NULL)
		grpc_byte_buffer_destroy(r->recv_bb);
	grpc_slice_unref(r->details);
	for (size_t i = 0; i < r->n_out; i++)
		if (r->out_msgs[i] != NULL)
			grpc_byte_buffer_destroy(r->out_msgs[i]);
	free(r->out_msgs);
	for (size_t i = 0; i < r->n_md; i++) {
		grpc_slice_unref(r->md[i].key);
		grpc_slice_unref(r->md[i].value);
	}
	buf_free(&r->body);
	buf_free(&r->out);
	pthread_mutex_destroy(&r->mu);
	free(r);
}

static void req_unref(gw_req *r)
{
	if (atomic_fetch_sub(&r->refs, 1) == 1)
		req_free(r);
}

static gw_req *req_new(srv_gateway *gw, struct MHD_Connection *c)
{
	gw_req *r = calloc(1, sizeof *r);
	if (r == NULL)
		return NULL;
	r->gw = gw;
	atomic_init(&r->refs, 1); /* libmicrohttpd's */
	pthread_mutex_init(&r->mu, NULL);
	r->conn = c;
	r->state = REQ_COLLECT;
	r->deadline = gpr_inf_future(GPR_CLOCK_REALTIME);
	r->details = grpc_empty_slice();
	r->t_unary = (gw_tag){TAG_UNARY, r};
	r->t_start = (gw_tag){TAG_START, r};
	r->t_send = (gw_tag){TAG_SEND, r};
	r->t_recv = (gw_tag){TAG_RECV, r};
	r->t_status = (gw_tag){TAG_STATUS, r};
	grpc_metadata_array_init(&r->md_in);
	grpc_metadata_array_init(&r->md_trail);
	pthread_mutex_lock(&gw->mu);
	gw->live++;
	list_add(gw, r);
	pthread_mutex_unlock(&gw->mu);
	return r;
}

/* Put @r on the list of live requests (gw->mu held by the caller). */
static void list_add(srv_gateway *gw, gw_req *r)
{
	r->prev = NULL;
	r->next = gw->head;
	if (gw->head != NULL)
		gw->head->prev = r;
	gw->head = r;
	r->listed = true;
}

static void list_del(srv_gateway *gw, gw_req *r)
{
	if (!r->listed)
		return;
	if (r->prev != NULL)
		r->prev->next = r->next;
	else
		gw->head = r->next;
	if (r->next != NULL)
		r->next->prev = r->prev;
	r->listed = false;
}

/* Resume @r's connection if it is suspended (r->mu held). */
static void wake(gw_req *r)
{
	if (r->suspended) {
		r->suspended = false;
		MHD_resume_connection(r->conn);
	}
}

/* Start a batch on @r's call, holding a reference for it (r->mu held). */
static bool start(gw_req *r, const grpc_op *ops, size_t n, gw_tag *tag)
{
	atomic_fetch_add(&r->refs, 1);
	grpc_call_error e = grpc_call_start_batch(r->call, ops, n, tag, NULL);
	if (e != GRPC_CALL_OK) {
		srv_log_warn("gateway: grpc batch failed",
		             SRV_LF_ERR(grpc_call_error_to_string(e)));
		atomic_fetch_sub(&r->refs, 1); /* never the last: the caller holds one */
		return false;
	}
	return true;
}

/* ---- call slots ------------------------------------------------------------------- */

static void launch(gw_req *r);

/* Unlink waiting @r from the queue (gw->slot_mu held). */
static void queue_del(srv_gateway *gw, gw_req *r)
{
	if (r->wprev != NULL)
		r->wprev->wnext = r->wnext;
	else
		gw->wait_head = r->wnext;
	if (r->wnext != NULL)
		r->wnext->wprev = r->wprev;
	else
		gw->wait_tail = r->wprev;
	r->wprev = r->wnext = NULL;
}

/* Take a slot for @r if one is free, else queue it last (r->mu may be held).
 * Returns whether @r holds a slot. */
static bool slot_take(gw_req *r)
{
	srv_gateway *gw = r->gw;
	pthread_mutex_lock(&gw->slot_mu);
	bool got = gw->max_calls == 0 || gw->running < gw->max_calls;
	if (got) {
		gw->running++;
		r->slot = SLOT_HELD;
	} else {
		r->wprev = gw->wait_tail;
		r->wnext = NULL;
		if (gw->wait_tail != NULL)
			gw->wait_tail->wnext = r;
		else
			gw->wait_head = r;
		gw->wait_tail = r;
		r->slot = SLOT_WAITING;
	}
	pthread_mutex_unlock(&gw->slot_mu);
	return got;
}

/*
 * @r gives up its slot, or its place in the queue; nothing if it has neither
 * (r->mu may be held). A slot given up goes to the oldest waiter, which is
 * returned with a reference taken for slot_grant; otherwise NULL.
 */
static gw_req *slot_drop(gw_req *r)
{
	srv_gateway *gw = r->gw;
	gw_req *w = NULL;
	pthread_mutex_lock(&gw->slot_mu);
	if (r->slot == SLOT_WAITING) {
		queue_del(gw, r);
	} else if (r->slot == SLOT_HELD) {
		w = gw->wait_head;
		if (w != NULL) {
			/* alive: a request leaves the queue before its last reference goes */
			queue_del(gw, w);
			w->slot = SLOT_HELD;
			atomic_fetch_add(&w->refs, 1);
		} else {
			gw->running--;
		}
	}
	r->slot = SLOT_NONE;
	pthread_mutex_unlock(&gw->slot_mu);
	return w;
}

/*
 * Start the call of @w, handed a slot by slot_drop (no request's mu held).
 * A waiter whose client went away, or whose call fails at once (answered
 * with that error), passes the slot on: returns the next waiter (as
 * slot_drop), else NULL. Drops slot_drop's reference.
 */
static gw_req *slot_grant(gw_req *w)
{
	pthread_mutex_lock(&w->mu);
	if (w->state == REQ_WAITING) {
		launch(w);
		if (w->state != REQ_CALLING)
			wake(w); /* a local error to answer */
	}
	bool started = w->state == REQ_CALLING;
	pthread_mutex_unlock(&w->mu);
	gw_req *next = started ? NULL : slot_drop(w);
	req_unref(w);
	return next;
}

/* @r no longer needs its slot or its place in the queue: give it up and start
 * the calls it lets through (no request's mu held). */
static void slot_release(gw_req *r)
{
	for (gw_req *w = slot_drop(r); w != NULL; w = slot_grant(w))
		;
}

/* ---- the calls ------------------------------------------------------------------- */

static bool create_call(gw_req *r)
{
	srv_gateway *gw = r->gw;
	grpc_slice method = grpc_slice_from_static_string(r->m->name);
	r->call = grpc_channel_create_call(gw->ch, NULL, GRPC_PROPAGATE_DEFAULTS, gw->cq, method,
	                                   NULL, r->deadline, NULL);
	grpc_slice_unref(method);
	return r->call != NULL;
}

static void fill_send_md(gw_req *r, grpc_op *op)
{
	op->op = GRPC_OP_SEND_INITIAL_METADATA;
	op->data.send_initial_metadata.count = r->n_md;
	op->data.send_initial_metadata.metadata = r->n_md ? r->md : NULL;
}

/* Start the one batch of a unary call with its packed request (r->mu held). */
static bool start_unary(gw_req *r)
{
	if (r->n_out != 1 || r->out_msgs[0] == NULL || !create_call(r))
		return false;
	grpc_op ops[6];
	memset(ops, 0, sizeof ops);
	fill_send_md(r, &ops[0]);
	ops[1].op = GRPC_OP_SEND_MESSAGE;
	ops[1].data.send_message.send_message = r->out_msgs[0];
	ops[2].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
	ops[3].op = GRPC_OP_RECV_INITIAL_METADATA;
	ops[3].data.recv_initial_metadata.recv_initial_metadata = &r->md_in;
	ops[4].op = GRPC_OP_RECV_MESSAGE;
	ops[4].data.recv_message.recv_message = &r->recv_bb;
	ops[5].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
	ops[5].data.recv_status_on_client.trailing_metadata = &r->md_trail;
	ops[5].data.recv_status_on_client.status = &r->status;
	ops[5].data.recv_status_on_client.status_details = &r->details;
	return start(r, ops, 6, &r->t_unary); /* (the core takes the slices) */
}

/* Send the next queued stream request, or the half-close (r->mu held). */
static void pump_send(gw_req *r)
{
	if (r->send_busy || r->send_closed || r->call == NULL)
		return;
	grpc_op ops[2];
	memset(ops, 0, sizeof ops);
	size_t n = 0;
	if (r->next_out < r->n_out) {
		ops[n].op = GRPC_OP_SEND_MESSAGE;
		ops[n++].data.send_message.send_message = r->out_msgs[r->next_out++];
	}
	/* (LeaseKeepAlive answers every request before it honours the
	 * half-close, on a follower too: srv_lease.c) */
	if (r->next_out == r->n_out) {
		ops[n++].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
		r->send_closed = true;
	}
	if (n == 0)
		return;
	if (start(r, ops, n, &r->t_send))
		r->send_busy = true;
	else
		r->send_closed = true;
}

static void arm_recv(gw_req *r)
{
	if (r->recv_busy || r->recv_eof)
		return;
	grpc_op op;
	memset(&op, 0, sizeof op);
	op.op = GRPC_OP_RECV_MESSAGE;
	op.data.recv_message.recv_message = &r->recv_bb;
	if (start(r, &op, 1, &r->t_recv)) {
		r->recv_busy = true;
		r->recv_paused = false;
	} else {
		r->recv_eof = true;
	}
}

/* Open a stream and queue its requests (r->mu held). */
static bool start_stream(gw_req *r)
{
	if (!create_call(r))
		return false;
	grpc_op ops[2];
	memset(ops, 0, sizeof ops);
	fill_send_md(r, &ops[0]);
	ops[1].op = GRPC_OP_RECV_INITIAL_METADATA;
	ops[1].data.recv_initial_metadata.recv_initial_metadata = &r->md_in;
	if (!start(r, ops, 2, &r->t_start))
		return false;
	grpc_op st;
	memset(&st, 0, sizeof st);
	st.op = GRPC_OP_RECV_STATUS_ON_CLIENT;
	st.data.recv_status_on_client.trailing_metadata = &r->md_trail;
	st.data.recv_status_on_client.status = &r->status;
	st.data.recv_status_on_client.status_details = &r->details;
	if (!start(r, &st, 1, &r->t_status)) {
		grpc_call_cancel(r->call, NULL);
		r->status_done = true;
		r->status = GRPC_STATUS_INTERNAL;
	}
	pump_send(r);
	return true;
}

/* The deadline the core enforced itself reads as Go's context error, as
 * etcd's gateway (a grpc-go client) reports it (r->mu held). */
static void go_deadline_text(gw_req *r)
{
	static const char core[] = "Deadline Exceeded";
	if (r->status == GRPC_STATUS_DEADLINE_EXCEEDED &&
	    GRPC_SLICE_LENGTH(r->details) == sizeof core - 1 &&
	    memcmp(GRPC_SLICE_START_PTR(r->details), core, sizeof core - 1) == 0) {
		grpc_slice_unref(r->details);
		r->details = grpc_slice_from_static_string("context deadline exceeded");
	}
}

/* A unary call's batch returned: build the HTTP answer (r->mu held). */
static void unary_done(gw_req *r, bool ok)
{
	if (r->state == REQ_GONE)
		return;
	buf_free(&r->out);
	r->ctype = "application/json";
	ProtobufCMessage *resp = NULL;
	if (ok && r->status == GRPC_STATUS_OK && r->recv_bb != NULL)
		resp = srv_rpc_msg_decode(r->recv_bb, r->m->resp);
	if (resp != NULL) {
		size_t len = 0;
		char *json = ec_json_encode(resp, &len);
		message_free(resp);
		if (json != NULL) {
			buf_add(&r->out, json, len);
			free(json);
			r->http_status = 200;
			r->grpc_md = true;
			r->state = REQ_READY;
			return;
		}
		r->status = GRPC_STATUS_RESOURCE_EXHAUSTED;
		grpc_slice_unref(r->details);
		r->details = grpc_slice_from_static_string("etcdserver: out of memory");
	} else if (r->status == GRPC_STATUS_OK) {
		r->status = GRPC_STATUS_INTERNAL;
		grpc_slice_unref(r->details);
		r->details = grpc_slice_from_static_string("gateway: no response message");
	}
	go_deadline_text(r);
	error_body(&r->out, (int)r->status, (const char *)GRPC_SLICE_START_PTR(r->details),
	           GRPC_SLICE_LENGTH(r->details));
	r->http_status = http_status_of(r->status);
	r->trailer = true;
	r->state = REQ_READY;
}

/* A stream result: one {"result":...} line (r->mu held). */
static void stream_result(gw_req *r, grpc_byte_buffer *bb)
{
	ProtobufCMessage *m = srv_rpc_msg_decode(bb, r->m->resp);
	char *json = m != NULL ? ec_json_encode(m, NULL) : NULL;
	message_free(m);
	if (json == NULL) {
		grpc_call_cancel(r->call, NULL);
		return;
	}
	buf_str(&r->out, "{\"result\":");
	buf_str(&r->out, json);
	buf_str(&r->out, "}\n");
	free(json);
	r->any_result = true;
}

/* The stream is over (status and end of messages): the error chunk if any. */
static void stream_final(gw_req *r)
{
	r->final_done = true;
	if (r->status != GRPC_STATUS_OK) {
		go_deadline_text(r);
		int hc = http_status_of(r->status);
		char head[96];
		snprintf(head, sizeof head,
		         "{\"error\":{\"grpc_code\":%d,\"http_code\":%d,\"message\":",
		         (int)r->status, hc);
		buf_str(&r->out, head);
		buf_json_str(&r->out, (const char *)GRPC_SLICE_START_PTR(r->details),
		             GRPC_SLICE_LENGTH(r->details));
		buf_str(&r->out, ",\"http_status\":");
		buf_json_str(&r->out, status_text(hc), strlen(status_text(hc)));
		buf_str(&r->out, "}}");
		if (!r->any_result)
			r->http_status = hc;
	}
}

/* One completion of the gateway's queue. */
static void dispatch(gw_tag *t, bool ok)
{
	gw_req *r = t->owner;
	pthread_mutex_lock(&r->mu);
	switch (t->kind) {
	case TAG_UNARY:
		unary_done(r, ok);
		break;
	case TAG_START:
		if (ok)
			arm_recv(r);
		else
			r->recv_eof = true;
		break;
	case TAG_SEND:
		r->send_busy = false;
		if (ok)
			pump_send(r);
		else
			r->send_closed = true;
		break;
	case TAG_RECV:
		r->recv_busy = false;
		if (!ok || r->recv_bb == NULL) {
			r->recv_eof = true;
		} else {
			if (r->state != REQ_GONE)
				stream_result(r, r->recv_bb);
			grpc_byte_buffer_destroy(r->recv_bb);
			r->recv_bb = NULL;
			if (r->out.len - r->out_off < GW_HIGH_WATER)
				arm_recv(r);
			else
				r->recv_paused = true;
		}
		break;
	case TAG_STATUS:
		r->status_done = true;
		if (!ok)
			r->status = GRPC_STATUS_INTERNAL;
		break;
	}
	if (t->kind != TAG_UNARY && r->status_done && r->recv_eof && !r->final_done)
		stream_final(r);
	if (r->state == REQ_CALLING && t->kind != TAG_UNARY && (r->any_result || r->final_done)) {
		if (r->http_status == 0)
			r->http_status = 200;
		r->state = REQ_STREAMING;
	}
	if (r->state != REQ_CALLING)
		wake(r);
	pthread_mutex_unlock(&r->mu);
	/* the call is over once its status is in: its slot is free */
	if (t->kind == TAG_UNARY || t->kind == TAG_STATUS)
		slot_release(r);
	req_unref(r);
}

/* Cancel the calls of suspended requests whose client hung up. */
static void scan_hangups(srv_gateway *gw)
{
	enum { MAX = 256 };
	gw_req *rs[MAX];
	struct pollfd pf[MAX];
	size_t n = 0;
	pthread_mutex_lock(&gw->mu);
	for (gw_req *r = gw->head; r != NULL && n < MAX; r = r->next) {
		int refs = atomic_load(&r->refs);
		do {
			if (refs == 0) /* being freed, waiting for gw->mu */
				break;
		} while (!atomic_compare_exchange_weak(&r->refs, &refs, refs + 1));
		if (refs == 0)
			continue;
		pthread_mutex_lock(&r->mu);
		bool taken = false;
		if (r->suspended) {
			const union MHD_ConnectionInfo *ci =
			        MHD_get_connection_info(r->conn, MHD_CONNECTION_INFO_CONNECTION_FD);
			if (ci != NULL) {
				taken = true;
				rs[n] = r;
				pf[n].fd = ci->connect_fd;
				pf[n].events = POLLRDHUP;
				pf[n].revents = 0;
				n++;
			}
		}
		pthread_mutex_unlock(&r->mu);
		if (!taken) /* never the last reference: the request is listed and alive */
			atomic_fetch_sub(&r->refs, 1);
	}
	pthread_mutex_unlock(&gw->mu);
	if (n > 0 && poll(pf, n, 0) < 0)
		for (size_t i = 0; i < n; i++)
			pf[i].revents = 0;
	gpr_timespec now = gpr_now(GPR_CLOCK_REALTIME);
	for (size_t i = 0; i < n; i++) {
		gw_req *r = rs[i];
		bool leave = false;
		pthread_mutex_lock(&r->mu);
		if (r->suspended && (pf[i].revents & (POLLRDHUP | POLLHUP | POLLERR))) {
			r->state = REQ_GONE;
			if (r->call != NULL)
				grpc_call_cancel(r->call, NULL);
			wake(r);
			leave = true;
		} else if (r->state == REQ_WAITING && gpr_time_cmp(r->deadline, now) <= 0) {
			/* grpc-go gives up waiting for a stream when the context ends */
			set_local_error(r, GRPC_STATUS_DEADLINE_EXCEEDED,
			                "context deadline exceeded");
			wake(r);
			leave = true;
		}
		pthread_mutex_unlock(&r->mu);
		if (leave)
			slot_release(r);
		req_unref(r);
	}
}

static void *gw_main(void *arg)
{
	srv_gateway *gw = arg;
	int64_t last = srv_mono_ms();
	for (;;) {
		gpr_timespec dl = gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC),
		                               gpr_time_from_millis(GW_SCAN_MS, GPR_TIMESPAN));
		grpc_event ev = grpc_completion_queue_next(gw->cq, dl, NULL);
		if (ev.type == GRPC_QUEUE_SHUTDOWN)
			break;
		if (ev.type == GRPC_OP_COMPLETE)
			dispatch(ev.tag, ev.success != 0);
		int64_t now = srv_mono_ms();
		if (now - last >= GW_SCAN_MS) {
			last = now;
			scan_hangups(gw);
		}
	}
	return NULL;
}

/* ---- HTTP side -------------------------------------------------------------------- */

static void cors(struct MHD_Response *resp)
{
	srv_http_cors(resp);
}

/* libmicrohttpd's content reader of a stream (and of a trailer-carrying error). */
static ssize_t read_out(void *cls, uint64_t pos, char *buf, size_t max)
{
	gw_req *r = cls;
	(void)pos;
	pthread_mutex_lock(&r->mu);
	if (r->state == REQ_GONE) {
		pthread_mutex_unlock(&r->mu);
		return MHD_CONTENT_READER_END_WITH_ERROR;
	}
	size_t avail = r->out.len - r->out_off;
	if (avail > 0) {
		size_t n = avail < max ? avail : max;
		memcpy(buf, r->out.p + r->out_off, n);
		r->out_off += n;
		if (r->out_off == r->out.len) {
			r->out.len = 0;
			r->out_off = 0;
		}
		if (r->recv_paused && r->out.len - r->out_off < GW_HIGH_WATER / 2)
			arm_recv(r);
		pthread_mutex_unlock(&r->mu);
		return (ssize_t)n;
	}
	if (r->final_done || r->call == NULL) {
		pthread_mutex_unlock(&r->mu);
		return MHD_CONTENT_READER_END_OF_STREAM;
	}
	if (atomic_load(&r->gw->stopping)) {
		pthread_mutex_unlock(&r->mu);
		return MHD_CONTENT_READER_END_WITH_ERROR;
	}
	r->suspended = true;
	MHD_suspend_connection(r->conn);
	pthread_mutex_unlock(&r->mu);
	return 0;
}

/* Queue @r's answer (r->mu held): unary READY or a STREAMING response. */
static enum MHD_Result queue_answer(gw_req *r)
{
	struct MHD_Response *resp;
	bool stream = r->state == REQ_STREAMING || r->trailer;
	if (stream)
		resp = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 32 * 1024, read_out, r,
		                                         NULL);
	else
		resp = MHD_create_response_from_buffer(
		        r->out.len, r->out.len ? r->out.p : (void *)"", MHD_RESPMEM_MUST_COPY);
	if (resp == NULL)
		return MHD_NO;
	if (r->ctype != NULL)
		MHD_add_response_header(resp, "Content-Type", r->ctype);
	if (r->nosniff)
		MHD_add_response_header(resp, "X-Content-Type-Options", "nosniff");
	if (r->location != NULL)
		MHD_add_response_header(resp, "Location", r->location);
	if (r->grpc_md || r->state == REQ_STREAMING)
		MHD_add_response_header(resp, "Grpc-Metadata-Content-Type", "application/grpc");
	if (r->trailer) {
		MHD_add_response_header(resp, "Trailer", "Grpc-Trailer-Content-Type");
		MHD_add_response_footer(resp, "Grpc-Trailer-Content-Type", "application/grpc");
		/* the body is complete: the reader hands it out and ends */
		r->final_done = true;
	}
	cors(resp);
	unsigned st = (unsigned)(r->http_status ? r->http_status : 200);
	if (!stream)
		r->state = REQ_QUEUED;
	enum MHD_Result ret = MHD_queue_response(r->conn, st, resp);
	MHD_destroy_response(resp);
	return ret;
}

/* grpc-gateway's timeoutDecode: <digits><H|M|S|m|u|n>. */
static bool parse_timeout(const char *v, gpr_timespec *out)
{
	size_t n = strlen(v);
	if (n < 2 || n > 10)
		return false;
	int64_t x = 0;
	for (size_t i = 0; i + 1 < n; i++) {
		if (v[i] < '0' || v[i] > '9')
			return false;
		x = x * 10 + (v[i] - '0');
	}
	int64_t ns;
	switch (v[n - 1]) {
	case 'H':
		ns = x * 3600 * 1000000000LL;
		break;
	case 'M':
		ns = x * 60 * 1000000000LL;
		break;
	case 'S':
		ns = x * 1000000000LL;
		break;
	case 'm':
		ns = x * 1000000LL;
		break;
	case 'u':
		ns = x * 1000LL;
		break;
	case 'n':
		ns = x;
		break;
	default:
		return false;
	}
	*out = gpr_time_add(gpr_now(GPR_CLOCK_REALTIME), gpr_time_from_nanos(ns, GPR_TIMESPAN));
	return true;
}

typedef struct hdr_ctx {
	gw_req *r;
	const char *timeout;
} hdr_ctx;

static void add_md(gw_req *r, const char *key, size_t klen, const char *val)
{
	if (r->n_md >= GW_MAX_MD)
		return;
	char k[128];
	if (klen == 0 || klen >= sizeof k)
		return;
	for (size_t i = 0; i < klen; i++)
		k[i] = (char)((key[i] >= 'A' && key[i] <= 'Z') ? key[i] - 'A' + 'a' : key[i]);
	k[klen] = '\0';
	/* reserved or binary keys are not forwarded */
	if (strncmp(k, "grpc-", 5) == 0 || strcmp(k, "content-type") == 0 || strcmp(k, "te") == 0 ||
	    strcmp(k, "user-agent") == 0 || (klen > 4 && strcmp(k + klen - 4, "-bin") == 0))
		return;
	grpc_slice ks = grpc_slice_from_copied_buffer(k, klen);
	grpc_slice vs = grpc_slice_from_copied_string(val);
	if (!grpc_header_key_is_legal(ks) || !grpc_header_nonbin_value_is_legal(vs)) {
		grpc_slice_unref(ks);
		grpc_slice_unref(vs);
		return;
	}
	r->md[r->n_md].key = ks;
	r->md[r->n_md].value = vs;
	r->n_md++;
}

static enum MHD_Result collect_header(void *cls, enum MHD_ValueKind kind, const char *key,
                                      const char *value)
{
	hdr_ctx *h = cls;
	(void)kind;
	if (value == NULL)
		return MHD_YES;
	static const char pfx[] = "Grpc-Metadata-";
	if (strcasecmp(key, "Authorization") == 0)
		add_md(h->r, "authorization", 13, value);
	else if (strncasecmp(key, pfx, sizeof pfx - 1) == 0)
		add_md(h->r, key + sizeof pfx - 1, strlen(key) - (sizeof pfx - 1), value);
	else if (strcasecmp(key, "Grpc-Timeout") == 0)
		h->timeout = value;
	return MHD_YES;
}

/* Whether the TLS client certificate of @c carries a Common Name. */
static bool client_has_cn(struct MHD_Connection *c)
{
	const union MHD_ConnectionInfo *ci =
	        MHD_get_connection_info(c, MHD_CONNECTION_INFO_GNUTLS_SESSION);
	if (ci == NULL || ci->tls_session == NULL)
		return false;
	unsigned n = 0;
	const gnutls_datum_t *der =
	        gnutls_certificate_get_peers((gnutls_session_t)ci->tls_session, &n);
	if (der == NULL || n == 0)
		return false;
	gnutls_x509_crt_t crt;
	if (gnutls_x509_crt_init(&crt) != 0)
		return false;
	bool has = false;
	if (gnutls_x509_crt_import(crt, &der[0], GNUTLS_X509_FMT_DER) == 0) {
		char cn[256];
		size_t len = sizeof cn;
		int rc = gnutls_x509_crt_get_dn_by_oid(crt, GNUTLS_OID_X520_COMMON_NAME, 0, 0, cn,
		                                       &len);
		has = (rc == 0 && len > 0) || rc == GNUTLS_E_SHORT_MEMORY_BUFFER;
	}
	gnutls_x509_crt_deinit(crt);
	return has;
}

static const srv_method *route_of(srv_gateway *gw, const char *path)
{
	for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++)
		if (strcmp(routes[i].path, path) == 0)
			return &gw->methods[routes[i].id];
	return NULL;
}

/* The call runs: suspend the connection (if not yet) until it answers (r->mu
 * held). */
static void suspend_calling(gw_req *r)
{
	if (!r->suspended) {
		r->suspended = true;
		MHD_suspend_connection(r->conn);
	}
	r->state = REQ_CALLING;
}

/* Pack @m (not consumed) as @r's next request to send (r->mu held). */
static bool keep_request(gw_req *r, const ProtobufCMessage *m)
{
	grpc_byte_buffer **q = realloc(r->out_msgs, (r->n_out + 1) * sizeof *q);
	if (q == NULL)
		return false;
	r->out_msgs = q;
	r->out_msgs[r->n_out] = srv_rpc_msg_encode(m, NULL);
	return r->out_msgs[r->n_out++] != NULL;
}

/* Start @r's call on its packed requests (r->mu held, a slot held). Leaves
 * the state REQ_CALLING (connection suspended) or REQ_READY (local error). */
static void launch(gw_req *r)
{
	if (gpr_time_cmp(r->deadline, gpr_now(GPR_CLOCK_REALTIME)) <= 0) {
		/* grpc-go fails a call whose context is already done, sending nothing */
		set_local_error(r, GRPC_STATUS_DEADLINE_EXCEEDED, "context deadline exceeded");
		return;
	}
	bool ok = r->m->kind == SRV_UNARY ? start_unary(r) : start_stream(r);
	if (!ok) {
		if (r->call != NULL)
			grpc_call_cancel(r->call, NULL);
		set_local_error(r, GRPC_STATUS_UNAVAILABLE, "gateway: cannot start the call");
		return;
	}
	suspend_calling(r);
}

/* The body is complete: decode it, then start the call or wait for a slot
 * (r->mu held). Leaves the state REQ_CALLING or REQ_WAITING (connection
 * suspended), or REQ_READY (local error; no slot kept: see the caller). */
static void begin_call(gw_req *r)
{
	char err[512] = "";
	const char *text = r->body.p != NULL ? r->body.p : "";
	size_t pos = 0;
	if (r->m->kind == SRV_BIDI) {
		/* etcd: the first request must decode (else the call fails, Unknown);
		 * later ones are sent until one does not, then the half-close. */
		for (;;) {
			ProtobufCMessage *m = NULL;
			int rc = decode_next(r->m->req, text, r->body.len, &pos, &m, err,
			                     sizeof err);
			if (rc < 0 && r->n_out == 0) {
				set_local_error(r, GRPC_STATUS_UNKNOWN, err);
				return;
			}
			if (rc <= 0)
				break;
			bool kept = keep_request(r, m);
			message_free(m);
			if (!kept) {
				set_local_error(r, GRPC_STATUS_RESOURCE_EXHAUSTED,
				                "etcdserver: out of memory");
				return;
			}
		}
	} else {
		/* unary calls and server streams: one request (server streams then
		 * half-close) */
		ProtobufCMessage *m = NULL;
		int rc = decode_next(r->m->req, text, r->body.len, &pos, &m, err, sizeof err);
		if (rc < 0) {
			set_local_error(r, GRPC_STATUS_INVALID_ARGUMENT, err);
			return;
		}
		if (m == NULL)
			m = empty_message(r->m->req);
		bool kept = m != NULL && keep_request(r, m);
		message_free(m);
		if (!kept) {
			set_local_error(r, GRPC_STATUS_RESOURCE_EXHAUSTED,
			                "etcdserver: out of memory");
			return;
		}
	}
	if (slot_take(r)) {
		/* r->mu is held: no completion runs before the suspend */
		launch(r);
		return;
	}
	r->suspended = true;
	MHD_suspend_connection(r->conn);
	r->state = REQ_WAITING;
}

bool srv_gateway_path(const char *url)
{
	return strncmp(url, "/v3/", 4) == 0 || strncmp(url, "/v3beta/", 8) == 0 ||
	       strcmp(url, "/v3") == 0;
}

enum MHD_Result srv_gateway_serve(srv_gateway *gw, struct MHD_Connection *c, const char *url,
                                  const char *method, const char *upload_data,
                                  size_t *upload_data_size, void **con_cls, bool cn_refused)
{
	gw_req *r = *con_cls;
	if (r == NULL) {
		/* first call: headers only */
		char path[256];
		if (strncmp(url, "/v3beta/", 8) == 0)
			snprintf(path, sizeof path, "/v3/%s", url + 8);
		else
			snprintf(path, sizeof path, "%s", url);
		if (atomic_load(&gw->stopping))
			return MHD_NO;
		r = req_new(gw, c);
		if (r == NULL)
			return MHD_NO;
		*con_cls = r;
		pthread_mutex_lock(&r->mu); /* listed already: quiesce may look at it */
		/* etcd's accessController, then grpc-gateway's mux; answers that need
		 * no call are queued once the body has been read (no Connection: close) */
		const srv_method *m = route_of(gw, path);
		if (strcmp(url, "/v3") == 0) {
			/* Go's ServeMux: "/v3/" is registered, so "/v3" redirects */
			bool get = strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0;
			local_text(r, 301,
			           get ? "<a href=\"/v3/\">Moved Permanently</a>.\n\n" : NULL);
			if (get)
				r->ctype = "text/html; charset=utf-8";
			r->nosniff = false;
			r->location = "/v3/";
		} else if (cn_refused && client_has_cn(c))
			local_text(r, 400,
			           "CommonName of client sending a request against gateway "
			           "will be ignored and not used as expected\n");
		else if (strcmp(method, "OPTIONS") == 0) /* CORS preflight */
			local_text(r, 200, NULL);
		else if (m == NULL)
			local_text(r, 404, "Not Found\n");
		else if (strcmp(method, "POST") != 0)
			local_text(r, 405, "Method Not Allowed\n");
		if (r->state != REQ_COLLECT) {
			pthread_mutex_unlock(&r->mu);
			return MHD_YES;
		}
		r->m = m;
		hdr_ctx h = {r, NULL};
		MHD_get_connection_values(c, MHD_HEADER_KIND, collect_header, &h);
		if (h.timeout != NULL && !parse_timeout(h.timeout, &r->deadline)) {
			char msg[128];
			snprintf(msg, sizeof msg, "invalid grpc-timeout: %.60s", h.timeout);
			set_local_error(r, GRPC_STATUS_INVALID_ARGUMENT, msg);
		}
		pthread_mutex_unlock(&r->mu);
		return MHD_YES;
	}
	pthread_mutex_lock(&r->mu);
	enum MHD_Result ret = MHD_YES;
	bool release = false;
	if (*upload_data_size != 0) {
		if (r->state == REQ_COLLECT) {
			if (r->body.len + *upload_data_size > GW_MAX_BODY)
				r->body.oom = true;
			buf_add(&r->body, upload_data, *upload_data_size);
		}
		*upload_data_size = 0;
		pthread_mutex_unlock(&r->mu);
		return MHD_YES;
	}
	switch (r->state) {
	case REQ_COLLECT:
		if (r->body.oom)
			local_text(r, 413, "request body too large\n");
		else
			begin_call(r);
		if (r->state == REQ_READY) {
			release = true; /* a slot taken for a call that failed to start */
			if (!r->suspended)
				ret = queue_answer(r);
		}
		break;
	case REQ_READY:
	case REQ_STREAMING:
		if (r->suspended) /* a call while still suspended: wait for the resume */
			break;
		ret = queue_answer(r);
		break;
	case REQ_WAITING: /* spurious calls while suspended */
	case REQ_CALLING:
	case REQ_QUEUED:
		break;
	case REQ_GONE:
		ret = MHD_NO;
		break;
	}
	pthread_mutex_unlock(&r->mu);
	if (release)
		slot_release(r);
	return ret;
}

void srv_gateway_completed(void **con_cls)
{
	gw_req *r = con_cls != NULL ? *con_cls : NULL;
	if (r == NULL)
		return;
	*con_cls = NULL;
	pthread_mutex_lock(&r->mu);
	if (r->state != REQ_QUEUED)
		r->state = REQ_GONE;
	r->suspended = false;
	if (r->call != NULL && !(r->final_done || r->state == REQ_QUEUED))
		grpc_call_cancel(r->call, NULL);
	pthread_mutex_unlock(&r->mu);
	slot_release(r); /* out of the queue before libmicrohttpd's reference goes */
	req_unref(r);
}

/* ---- start and stop --------------------------------------------------------------- */

int srv_gateway_start(srv_rpc *rpc, srv_gateway **out, char *err, size_t errlen)
{
	*out = NULL;
	srv_gateway *gw = calloc(1, sizeof *gw);
	if (gw == NULL) {
		srv_errf(err, errlen, "out of memory");
		return -1;
	}
	gw->rpc = rpc;
	srv_etcd_methods(gw->methods);
	pthread_mutex_init(&gw->mu, NULL);
	pthread_cond_init(&gw->cv, NULL);
	pthread_mutex_init(&gw->slot_mu, NULL);
	gw->max_calls = srv_rpc_max_concurrent_streams(rpc);
	grpc_init();
	gw->ch = srv_rpc_inproc_channel(rpc);
	gw->cq = srv_rpc_cq_create(false); /* in-process calls only */
	if (gw->ch == NULL) {
		srv_errf(err, errlen, "gateway: no in-process channel (server stopping)");
		srv_gateway_free(gw);
		return -1;
	}
	int e = pthread_create(&gw->thread, NULL, gw_main, gw);
	if (e != 0) {
		srv_errf(err, errlen, "gateway: cannot start thread: %s", strerror(e));
		srv_gateway_free(gw);
		return -1;
	}
	gw->thread_started = true;
	*out = gw;
	return 0;
}

void srv_gateway_quiesce(srv_gateway *gw)
{
	if (gw == NULL)
		return;
	pthread_mutex_lock(&gw->mu);
	atomic_store(&gw->stopping, true);
	for (gw_req *r = gw->head; r != NULL; r = r->next) {
		pthread_mutex_lock(&r->mu);
		r->state = REQ_GONE;
		if (r->call != NULL)
			grpc_call_cancel(r->call, NULL);
		wake(r);
		pthread_mutex_unlock(&r->mu);
	}
	pthread_mutex_unlock(&gw->mu);
}

void srv_gateway_free(srv_gateway *gw)
{
	if (gw == NULL)
		return;
	srv_gateway_quiesce(gw);
	struct timespec dl;
	clock_gettime(CLOCK_REALTIME, &dl);
	dl.tv_sec += 5;
	pthread_mutex_lock(&gw->mu);
	while (gw->live > 0)
		if (pthread_cond_timedwait(&gw->cv, &gw->mu, &dl) == ETIMEDOUT)
			break;
	size_t left = gw->live;
	pthread_mutex_unlock(&gw->mu);
	if (left > 0) {
		/* calls still out: keep everything (leak) so their completions stay safe */
		srv_log_warn("gateway: requests still alive at shutdown; leaking the gateway",
		             SRV_LF_UINT("requests", left));
		return;
	}
	if (gw->cq != NULL) {
		grpc_completion_queue_shutdown(gw->cq);
		if (gw->thread_started)
			pthread_join(gw->thread, NULL);
		else
			while (grpc_completion_queue_next(gw->cq,
			                                  gpr_inf_future(GPR_CLOCK_REALTIME), NULL)
			               .type != GRPC_QUEUE_SHUTDOWN)
				;
		grpc_completion_queue_destroy(gw->cq);
	}
	if (gw->ch != NULL)
		grpc_channel_destroy(gw->ch);
	pthread_mutex_destroy(&gw->mu);
	pthread_cond_destroy(&gw->cv);
	pthread_mutex_destroy(&gw->slot_mu);
	free(gw);
	grpc_shutdown();
}
