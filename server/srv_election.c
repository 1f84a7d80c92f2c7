/*
 * srv_election.c: the Election and Lock services (srv_election.h) as state
 * machines over inner calls to our own KV/Lease/Watch.
 *
 * One client call is an el_op with a state (what its current inner call is
 * for). At most one inner call (el_ic) is current per op: a unary call (Txn,
 * Range, DeleteRange, LeaseGrant) or a Watch stream that waits for a delete
 * or a put. When the current inner call answers, op_step() decides the next
 * one or answers the client. A superseded inner call (a watch no longer
 * needed, or one of a client that went away) is cancelled and marked dead:
 * its completions only release it.
 *
 * Locking: one mutex (el->mu) guards every op and inner call; it is taken by
 * the module's completion-queue thread, by the handlers and by stream
 * callbacks (which srv_rpc runs without its own locks held). Calls into
 * srv_rpc (reply, send, finish) are made with el->mu held: srv_rpc never calls
 * back synchronously.
 *
 * Lifetimes: an op holds one reference for itself (dropped by op_done, once
 * nothing is left to do), one per inner call not yet freed, and, for stream
 * rows, one for srv_rpc's on_close (which may come after op_done). The op
 * holds the srv_stream's reference until it is freed.
 *
 * What etcd does, reproduced (clientv3/concurrency and v3election/v3lock):
 * a lease of 0 is replaced by a fresh 60 s lease that nobody keeps alive; the
 * contender's key is "<name>/<lease in %x>"; Campaign answers the header of
 * its put; Lock answers the header of the put, or of the last scan when it
 * had to wait; Resign and Proclaim compare the key's create revision; Unlock
 * deletes the key unconditionally; Observe ends with status OK when an inner
 * call fails.
 */
#include "server/srv_election.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <grpc/byte_buffer.h>
#include <grpc/grpc.h>
#include <grpc/slice.h>
#include <grpc/support/time.h>

#include "etcdcompat/ec_errors.h"
#include "server/srv_app.h"
#include "server/srv_log.h"

#include "kv.pb-c.h"
#include "rpc.pb-c.h"
#include "v3election.pb-c.h"
#include "v3lock.pb-c.h"

#define EL_SESSION_TTL 60   /* concurrency.NewSession's default TTL (s) */
#define EL_CLEANUP_MS  5000 /* deadline of the delete after a given-up wait */
#define EL_MAX_MD      2    /* forwarded metadata: token, authorization */

/* ---- types ----------------------------------------------------------------------- */

typedef enum {
	OP_CAMPAIGN,
	OP_PROCLAIM,
	OP_LEADER,
	OP_OBSERVE,
	OP_RESIGN,
	OP_LOCK,
	OP_UNLOCK,
} op_kind;

typedef enum {
	ST_NEW,        /* not started yet */
	ST_GRANT,      /* LeaseGrant for a request without a lease */
	ST_ENTER,      /* Campaign/Lock: the txn that puts our key */
	ST_REPROCLAIM, /* Campaign: our key existed with another value */
	ST_SCAN,       /* waitDeletes: the newest older key under the prefix */
	ST_WAIT,       /* waitDelete: a watch on that key */
	ST_PROCLAIM,   /* Proclaim's txn */
	ST_RESIGN,     /* Resign's txn */
	ST_LEADER,     /* Leader's range */
	ST_UNLOCK,     /* Unlock's delete */
	ST_OBS_RANGE,  /* Observe: who leads now */
	ST_OBS_PUT,    /* Observe: no leader; a watch on the prefix for a put */
	ST_OBS_FOLLOW, /* Observe: a watch on the leader key until it is deleted */
	ST_CLEANUP,    /* Campaign/Lock: removing our key (client gone, or a failed wait) */
	ST_DONE,
} op_state;

typedef enum {
	TAG_UNARY,  /* an inner unary call's one batch */
	TAG_START,  /* a watch's metadata and create request went out */
	TAG_RECV,   /* a watch response arrived (or the stream ended) */
	TAG_STATUS, /* a watch's status arrived */
} tag_kind;

typedef struct el_op el_op;
typedef struct el_ic el_ic;

typedef struct el_tag {
	tag_kind kind;
	el_ic *owner;
} el_tag;

/* One inner call. */
struct el_ic {
	el_op *op;
	grpc_call *call;
	const ProtobufCMessageDescriptor *resp; /* what it answers */
	bool watch;
	bool dead;   /* no longer the op's: completions only release it */
	int pending; /* batches outstanding */
	el_tag t_unary, t_start, t_recv, t_status;
	grpc_metadata_array md_in, md_trail;
	grpc_byte_buffer *recv_bb;
	grpc_status_code status;
	grpc_slice details;
	bool recv_done, status_done;
};

typedef struct el_hdr {
	uint64_t cluster_id, member_id, raft_term;
	int64_t revision;
} el_hdr;

/* One client call. */
struct el_op {
	srv_election *el;
	op_kind kind;
	op_state state;
	int refs;
	el_op *prev, *next; /* el->head, until op_done */
	srv_call *call;     /* unary rows */
	srv_stream *st;     /* stream rows (Campaign, Lock, Observe) */
	bool answered;      /* the client has its answer (or is gone) */
	bool gone;          /* stream rows: on_close came */
	grpc_metadata md[EL_MAX_MD];
	size_t n_md;
	gpr_timespec deadline;
	/* the request */
	ProtobufCBinaryData name; /* as given (Campaign's answer) */
	ProtobufCBinaryData pfx;  /* "<name>/" */
	ProtobufCBinaryData value;
	ProtobufCBinaryData key; /* our key, the leader key, or the key to unlock */
	int64_t lease;
	int64_t rev;   /* our key's create revision */
	bool have_key; /* Campaign/Lock put (or found) our key */
	el_hdr hdr;    /* the header to answer */
	int fail_err;  /* ST_CLEANUP: the error to answer after it */
	el_ic *ic;     /* the current inner call */
};

struct srv_election {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	grpc_completion_queue *cq;
	grpc_channel *ch; /* NULL until bound, and again once stopping */
	pthread_t thread;
	bool stopping;
	el_op *head;
	size_t live; /* ops not yet freed */
};

/* ---- small helpers ---------------------------------------------------------------- */

static bool bin_set(ProtobufCBinaryData *b, const void *p, size_t n, const void *tail, size_t tn)
{
	b->data = malloc(n + tn + 1);
	if (b->data == NULL) {
		b->len = 0;
		return false;
	}
	if (n > 0)
		memcpy(b->data, p, n);
	if (tn > 0)
		memcpy(b->data + n, tail, tn);
	b->len = n + tn;
	return true;
}

static bool bin_eq(ProtobufCBinaryData a, ProtobufCBinaryData b)
{
	return a.len == b.len && (a.len == 0 || memcmp(a.data, b.data, a.len) == 0);
}

static void hdr_save(el_hdr *h, const Etcdserverpb__ResponseHeader *r)
{
	if (r == NULL)
		return;
	h->cluster_id = r->cluster_id;
	h->member_id = r->member_id;
	h->revision = r->revision;
	h->raft_term = r->raft_term;
}

static void hdr_fill(Etcdserverpb__ResponseHeader *r, const el_hdr *h)
{
	r->cluster_id = h->cluster_id;
	r->member_id = h->member_id;
	r->revision = h->revision;
	r->raft_term = h->raft_term;
}

/* clientv3's GetPrefixRangeEnd of @p into @end (@p->len bytes of room, plus one). */
static void prefix_end(ProtobufCBinaryData p, uint8_t *end, ProtobufCBinaryData *out)
{
	memcpy(end, p.data, p.len);
	for (size_t i = p.len; i > 0; i--) {
		if (end[i - 1] < 0xff) {
			end[i - 1]++;
			out->data = end;
			out->len = i;
			return;
		}
	}
	end[0] = 0; /* every byte 0xff: the whole keyspace from the key on */
	out->data = end;
	out->len = 1;
}

static int err_of_status(grpc_status_code code, grpc_slice details)
{
	return ec_err_passed_on((int)code, (const char *)GRPC_SLICE_START_PTR(details),
	                        GRPC_SLICE_LENGTH(details));
}

/* ---- op lifetime ------------------------------------------------------------------ */

static void op_unref(el_op *op)
{
	if (--op->refs > 0)
		return;
	srv_election *el = op->el;
	for (size_t i = 0; i < op->n_md; i++) {
		grpc_slice_unref(op->md[i].key);
		grpc_slice_unref(op->md[i].value);
	}
	free(op->name.data);
	free(op->pfx.data);
	free(op->value.data);
	free(op->key.data);
	if (op->st != NULL)
		srv_stream_unref(op->st);
	free(op);
	el->live--;
	pthread_cond_broadcast(&el->cv);
}

/* Nothing left to do for @op (el->mu held). */
static void op_done(el_op *op)
{
	if (op->state == ST_DONE)
		return;
	op->state = ST_DONE;
	srv_election *el = op->el;
	if (op->prev != NULL)
		op->prev->next = op->next;
	else
		el->head = op->next;
	if (op->next != NULL)
		op->next->prev = op->prev;
	op->prev = op->next = NULL;
	op_unref(op);
}

/* Answer the client with @resp, or fail it with @err (el->mu held). Once. */
static void op_answer(el_op *op, const ProtobufCMessage *resp, int err)
{
	if (op->answered)
		return;
	op->answered = true;
	if (op->st != NULL) {
		if (resp != NULL)
			srv_stream_send(op->st, resp);
		srv_stream_finish(op->st, resp != NULL ? EC_OK : err);
	} else if (resp != NULL) {
		srv_call_reply(op->call, resp);
	} else {
		srv_call_fail(op->call, err == EC_OK ? EC_INTERNAL : err);
	}
}

static void op_fail(el_op *op, int err)
{
	op_answer(op, NULL, err);
	op_done(op);
}

/* ---- inner calls ------------------------------------------------------------------ */

static void ic_free(el_ic *ic)
{
	if (ic->call != NULL)
		grpc_call_unref(ic->call);
	grpc_metadata_array_destroy(&ic->md_in);
	grpc_metadata_array_destroy(&ic->md_trail);
	if (ic->recv_bb != NULL)
		grpc_byte_buffer_destroy(ic->recv_bb);
	grpc_slice_unref(ic->details);
	el_op *op = ic->op;
	free(ic);
	op_unref(op);
}

/* The op no longer wants @ic: cancel it (el->mu held). */
static void ic_kill(el_ic *ic)
{
	if (ic == NULL || ic->dead)
		return;
	ic->dead = true;
	if (ic->op->ic == ic)
		ic->op->ic = NULL;
	grpc_call_cancel(ic->call, NULL);
}

static bool ic_batch(el_ic *ic, const grpc_op *ops, size_t n, el_tag *tag)
{
	grpc_call_error e = grpc_call_start_batch(ic->call, ops, n, tag, NULL);
	if (e != GRPC_CALL_OK) {
		srv_log_warn("election: grpc batch failed",
		             SRV_LF_ERR(grpc_call_error_to_string(e)));
		return false;
	}
	ic->pending++;
	return true;
}

/* A new inner call of @method on @op (el->mu held); NULL if it cannot start. */
static el_ic *ic_new(el_op *op, const char *method, const ProtobufCMessageDescriptor *resp,
                     gpr_timespec deadline)
{
	srv_election *el = op->el;
	if (el->ch == NULL)
		return NULL;
	el_ic *ic = calloc(1, sizeof *ic);
	if (ic == NULL)
		return NULL;
	ic->op = op;
	ic->resp = resp;
	ic->details = grpc_empty_slice();
	ic->t_unary = (el_tag){TAG_UNARY, ic};
	ic->t_start = (el_tag){TAG_START, ic};
	ic->t_recv = (el_tag){TAG_RECV, ic};
	ic->t_status = (el_tag){TAG_STATUS, ic};
	grpc_metadata_array_init(&ic->md_in);
	grpc_metadata_array_init(&ic->md_trail);
	grpc_slice m = grpc_slice_from_static_string(method);
	ic->call = grpc_channel_create_call(el->ch, NULL, GRPC_PROPAGATE_DEFAULTS, el->cq, m, NULL,
	                                    deadline, NULL);
	grpc_slice_unref(m);
	op->refs++;
	if (ic->call == NULL) {
		ic_free(ic);
		return NULL;
	}
	return ic;
}

static void fill_md(el_op *op, grpc_op *o)
{
	o->op = GRPC_OP_SEND_INITIAL_METADATA;
	o->data.send_initial_metadata.count = op->n_md;
	o->data.send_initial_metadata.metadata = op->n_md ? op->md : NULL;
}

/* Start a unary call of @method with @req; its answer comes to op_step.
 * Returns false (nothing started) on failure (el->mu held). */
static bool call_unary(el_op *op, const char *method, const ProtobufCMessage *req,
                       const ProtobufCMessageDescriptor *resp, gpr_timespec deadline)
{
	el_ic *ic = ic_new(op, method, resp, deadline);
	if (ic == NULL)
		return false;
	grpc_byte_buffer *bb = srv_rpc_msg_encode(req, NULL);
	grpc_op ops[6];
	memset(ops, 0, sizeof ops);
	fill_md(op, &ops[0]);
	ops[1].op = GRPC_OP_SEND_MESSAGE;
	ops[1].data.send_message.send_message = bb;
	ops[2].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
	ops[3].op = GRPC_OP_RECV_INITIAL_METADATA;
	ops[3].data.recv_initial_metadata.recv_initial_metadata = &ic->md_in;
	ops[4].op = GRPC_OP_RECV_MESSAGE;
	ops[4].data.recv_message.recv_message = &ic->recv_bb;
	ops[5].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
	ops[5].data.recv_status_on_client.trailing_metadata = &ic->md_trail;
	ops[5].data.recv_status_on_client.status = &ic->status;
	ops[5].data.recv_status_on_client.status_details = &ic->details;
	bool ok = ic_batch(ic, ops, 6, &ic->t_unary);
	grpc_byte_buffer_destroy(bb);
	if (!ok) {
		ic_free(ic);
		return false;
	}
	op->ic = ic;
	return true;
}

static void arm_recv(el_ic *ic)
{
	grpc_op o;
	memset(&o, 0, sizeof o);
	o.op = GRPC_OP_RECV_MESSAGE;
	o.data.recv_message.recv_message = &ic->recv_bb;
	if (!ic_batch(ic, &o, 1, &ic->t_recv))
		ic->recv_done = true;
}

/* Open a watch on [@key, @end) (@end.len 0: the key alone) from @rev; its
 * responses come to op_watch (el->mu held). */
static bool call_watch(el_op *op, ProtobufCBinaryData key, ProtobufCBinaryData end, int64_t rev)
{
	el_ic *ic = ic_new(op, "/etcdserverpb.Watch/Watch",
	                   &etcdserverpb__watch_response__descriptor, op->deadline);
	if (ic == NULL)
		return false;
	ic->watch = true;
	Etcdserverpb__WatchCreateRequest cr = ETCDSERVERPB__WATCH_CREATE_REQUEST__INIT;
	cr.key = key;
	cr.range_end = end;
	cr.start_revision = rev;
	Etcdserverpb__WatchRequest wr = ETCDSERVERPB__WATCH_REQUEST__INIT;
	wr.request_union_case = ETCDSERVERPB__WATCH_REQUEST__REQUEST_UNION_CREATE_REQUEST;
	wr.create_request = &cr;
	grpc_byte_buffer *bb = srv_rpc_msg_encode(&wr.base, NULL);
	grpc_op ops[3];
	memset(ops, 0, sizeof ops);
	fill_md(op, &ops[0]);
	ops[1].op = GRPC_OP_SEND_MESSAGE;
	ops[1].data.send_message.send_message = bb;
	ops[2].op = GRPC_OP_RECV_INITIAL_METADATA;
	ops[2].data.recv_initial_metadata.recv_initial_metadata = &ic->md_in;
	bool ok = ic_batch(ic, ops, 3, &ic->t_start);
	grpc_byte_buffer_destroy(bb);
	if (!ok) {
		ic_free(ic);
		return false;
	}
	grpc_op st;
	memset(&st, 0, sizeof st);
	st.op = GRPC_OP_RECV_STATUS_ON_CLIENT;
	st.data.recv_status_on_client.trailing_metadata = &ic->md_trail;
	st.data.recv_status_on_client.status = &ic->status;
	st.data.recv_status_on_client.status_details = &ic->details;
	if (!ic_batch(ic, &st, 1, &ic->t_status)) {
		ic->status_done = true;
		ic->status = GRPC_STATUS_INTERNAL;
		grpc_call_cancel(ic->call, NULL);
	}
	op->ic = ic;
	return true;
}

/* ---- request builders -------------------------------------------------------------- */

/* A range over @op's prefix, oldest (or newest) creation first, one key. */
static void range_first(const el_op *op, Etcdserverpb__RangeRequest *rr, uint8_t *endbuf,
                        bool newest, int64_t max_create_rev)
{
	etcdserverpb__range_request__init(rr);
	rr->key = op->pfx;
	prefix_end(op->pfx, endbuf, &rr->range_end);
	rr->sort_target = ETCDSERVERPB__RANGE_REQUEST__SORT_TARGET__CREATE;
	rr->sort_order = newest ? ETCDSERVERPB__RANGE_REQUEST__SORT_ORDER__DESCEND
	                        : ETCDSERVERPB__RANGE_REQUEST__SORT_ORDER__ASCEND;
	rr->limit = 1;
	rr->max_create_revision = max_create_rev;
}

static bool do_range(el_op *op, bool newest, int64_t max_create_rev)
{
	Etcdserverpb__RangeRequest rr;
	uint8_t *end = malloc(op->pfx.len + 1);
	if (end == NULL)
		return false;
	range_first(op, &rr, end, newest, max_create_rev);
	bool ok = call_unary(op, "/etcdserverpb.KV/Range", &rr.base,
	                     &etcdserverpb__range_response__descriptor, op->deadline);
	free(end);
	return ok;
}

/* A txn "if create_revision(key) == @rev then @then else @otherwise". */
static bool do_txn(el_op *op, int64_t rev, Etcdserverpb__RequestOp **then, size_t n_then,
                   Etcdserverpb__RequestOp **otherwise, size_t n_else, gpr_timespec deadline)
{
	Etcdserverpb__Compare cmp = ETCDSERVERPB__COMPARE__INIT;
	cmp.result = ETCDSERVERPB__COMPARE__COMPARE_RESULT__EQUAL;
	cmp.target = ETCDSERVERPB__COMPARE__COMPARE_TARGET__CREATE;
	cmp.key = op->key;
	cmp.target_union_case = ETCDSERVERPB__COMPARE__TARGET_UNION_CREATE_REVISION;
	cmp.create_revision = rev;
	Etcdserverpb__Compare *cmps[] = {&cmp};
	Etcdserverpb__TxnRequest tr = ETCDSERVERPB__TXN_REQUEST__INIT;
	tr.n_compare = 1;
	tr.compare = cmps;
	tr.n_success = n_then;
	tr.success = then;
	tr.n_failure = n_else;
	tr.failure = otherwise;
	return call_unary(op, "/etcdserverpb.KV/Txn", &tr.base,
	                  &etcdserverpb__txn_response__descriptor, deadline);
}

/* if create_revision(key) == @rev then put(key, @value, lease) [else range(key)]
 * [plus, on both sides, the oldest key under the prefix (Lock)]. */
static bool do_put_txn(el_op *op, int64_t rev, ProtobufCBinaryData value, bool get_key,
                       bool get_owner)
{
	Etcdserverpb__PutRequest put = ETCDSERVERPB__PUT_REQUEST__INIT;
	put.key = op->key;
	put.value = value;
	put.lease = op->lease;
	Etcdserverpb__RangeRequest get = ETCDSERVERPB__RANGE_REQUEST__INIT;
	get.key = op->key;
	Etcdserverpb__RangeRequest owner;
	uint8_t *end = malloc(op->pfx.len + 1);
	if (end == NULL)
		return false;
	range_first(op, &owner, end, false, 0);
	Etcdserverpb__RequestOp o_put = ETCDSERVERPB__REQUEST_OP__INIT;
	o_put.request_case = ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_PUT;
	o_put.request_put = &put;
	Etcdserverpb__RequestOp o_get = ETCDSERVERPB__REQUEST_OP__INIT;
	o_get.request_case = ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_RANGE;
	o_get.request_range = &get;
	Etcdserverpb__RequestOp o_owner = ETCDSERVERPB__REQUEST_OP__INIT;
	o_owner.request_case = ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_RANGE;
	o_owner.request_range = &owner;
	Etcdserverpb__RequestOp *then[] = {&o_put, &o_owner};
	Etcdserverpb__RequestOp *otherwise[] = {&o_get, &o_owner};
	size_t n = get_owner ? 2 : 1;
	bool ok = do_txn(op, rev, then, n, otherwise, get_key ? n : 0, op->deadline);
	free(end);
	return ok;
}

/* Delete our key: if create_revision(key) == op->rev (@guarded, Resign) or
 * unconditionally (Unlock). */
static bool do_delete(el_op *op, bool guarded, gpr_timespec deadline)
{
	Etcdserverpb__DeleteRangeRequest del = ETCDSERVERPB__DELETE_RANGE_REQUEST__INIT;
	del.key = op->key;
	if (!guarded)
		return call_unary(op, "/etcdserverpb.KV/DeleteRange", &del.base,
		                  &etcdserverpb__delete_range_response__descriptor, deadline);
	Etcdserverpb__RequestOp o_del = ETCDSERVERPB__REQUEST_OP__INIT;
	o_del.request_case = ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_DELETE_RANGE;
	o_del.request_delete_range = &del;
	Etcdserverpb__RequestOp *then[] = {&o_del};
	return do_txn(op, op->rev, then, 1, NULL, 0, deadline);
}

/* ---- the steps --------------------------------------------------------------------- */

/* Go to @state with the inner call @started; fail the op if it did not start. */
static void next(el_op *op, op_state state, bool started)
{
	op->state = state;
	if (!started)
		op_fail(op, op->el->ch == NULL ? EC_STOPPED : EC_NOMEM);
}

/* A fresh lease for a request with lease 0 (etcd's session: TTL 60 s). */
static bool do_grant(el_op *op)
{
	Etcdserverpb__LeaseGrantRequest g = ETCDSERVERPB__LEASE_GRANT_REQUEST__INIT;
	g.ttl = EL_SESSION_TTL;
	return call_unary(op, "/etcdserverpb.Lease/LeaseGrant", &g.base,
	                  &etcdserverpb__lease_grant_response__descriptor, op->deadline);
}

/* Campaign/Lock: our key is known; remove it after a failure (el->mu held). */
static void cleanup_then_fail(el_op *op, int err)
{
	op->fail_err = err;
	op->state = ST_CLEANUP;
	gpr_timespec dl = gpr_time_add(gpr_now(GPR_CLOCK_REALTIME),
	                               gpr_time_from_millis(EL_CLEANUP_MS, GPR_TIMESPAN));
	if (!do_delete(op, op->kind == OP_CAMPAIGN, dl))
		op_fail(op, err);
}

/* Campaign/Lock: we are the oldest key under the prefix; answer. */
static void answer_won(el_op *op)
{
	Etcdserverpb__ResponseHeader h = ETCDSERVERPB__RESPONSE_HEADER__INIT;
	hdr_fill(&h, &op->hdr);
	if (op->kind == OP_CAMPAIGN) {
		V3electionpb__LeaderKey lk = V3ELECTIONPB__LEADER_KEY__INIT;
		lk.name = op->name;
		lk.key = op->key;
		lk.rev = op->rev;
		lk.lease = op->lease;
		V3electionpb__CampaignResponse r = V3ELECTIONPB__CAMPAIGN_RESPONSE__INIT;
		r.header = &h;
		r.leader = &lk;
		op_answer(op, &r.base, EC_OK);
	} else {
		V3lockpb__LockResponse r = V3LOCKPB__LOCK_RESPONSE__INIT;
		r.header = &h;
		r.key = op->key;
		op_answer(op, &r.base, EC_OK);
	}
	op_done(op);
}

/* Campaign/Lock: our key is in: the lease id names it. */
static void enter(el_op *op)
{
	char hex[24];
	int n = snprintf(hex, sizeof hex, "%" PRIx64, (uint64_t)op->lease);
	free(op->key.data);
	if (!bin_set(&op->key, op->pfx.data, op->pfx.len, hex, (size_t)n)) {
		op_fail(op, EC_NOMEM);
		return;
	}
	ProtobufCBinaryData empty = {0, NULL};
	bool lock = op->kind == OP_LOCK;
	next(op, ST_ENTER, do_put_txn(op, 0, lock ? empty : op->value, true, lock));
}

/* Observe: send one LeaderResponse (el->mu held). */
static void observe_send(el_op *op, const Etcdserverpb__ResponseHeader *h, Mvccpb__KeyValue *kv)
{
	V3electionpb__LeaderResponse r = V3ELECTIONPB__LEADER_RESPONSE__INIT;
	r.header = (Etcdserverpb__ResponseHeader *)h;
	r.kv = kv;
	srv_stream_send(op->st, &r.base);
}

/* Observe: follow @kv (the leader key) from @rev on. */
static void observe_follow(el_op *op, ProtobufCBinaryData key, int64_t rev)
{
	ProtobufCBinaryData none = {0, NULL};
	next(op, ST_OBS_FOLLOW, call_watch(op, key, none, rev));
}

/* The range response at @i of a txn response, NULL if it is something else. */
static const Etcdserverpb__RangeResponse *range_of(const Etcdserverpb__TxnResponse *t, size_t i)
{
	if (i >= t->n_responses ||
	    t->responses[i]->response_case != ETCDSERVERPB__RESPONSE_OP__RESPONSE_RESPONSE_RANGE)
		return NULL;
	return t->responses[i]->response_range;
}

/* The current unary inner call answered @resp (NULL: failed with @err). */
static void op_step(el_op *op, const ProtobufCMessage *resp, int err)
{
	if (resp == NULL) {
		if (op->state == ST_CLEANUP)
			op_fail(op, op->fail_err);
		else if (op->kind == OP_OBSERVE)
			op_fail(op, EC_OK); /* etcd: the observe channel closes; status OK */
		else if ((op->kind == OP_LOCK && op->have_key && op->state != ST_ENTER) ||
		         op->state == ST_REPROCLAIM)
			cleanup_then_fail(op, err); /* etcd: Unlock; Campaign: Resign */
		else
			op_fail(op, err);
		return;
	}
	switch (op->state) {
	case ST_GRANT: {
		const Etcdserverpb__LeaseGrantResponse *g = (const void *)resp;
		op->lease = g->id;
		if (op->kind == OP_PROCLAIM)
			next(op, ST_PROCLAIM, do_put_txn(op, op->rev, op->value, false, false));
		else
			enter(op);
		break;
	}
	case ST_ENTER: {
		const Etcdserverpb__TxnResponse *t = (const void *)resp;
		hdr_save(&op->hdr, t->header);
		op->rev = t->header != NULL ? t->header->revision : 0;
		op->have_key = true;
		const Etcdserverpb__RangeResponse *mine = range_of(t, 0), *owner = range_of(t, 1);
		if (!t->succeeded && mine != NULL && mine->n_kvs > 0)
			op->rev = mine->kvs[0]->create_revision;
		if (op->kind == OP_LOCK) {
			if (owner == NULL || owner->n_kvs == 0 ||
			    owner->kvs[0]->create_revision == op->rev)
				answer_won(op);
			else
				next(op, ST_SCAN, do_range(op, true, op->rev - 1));
			break;
		}
		if (!t->succeeded && mine != NULL && mine->n_kvs > 0 &&
		    !bin_eq(mine->kvs[0]->value, op->value)) {
			next(op, ST_REPROCLAIM, do_put_txn(op, op->rev, op->value, false, false));
			break;
		}
		next(op, ST_SCAN, do_range(op, true, op->rev - 1));
		break;
	}
	case ST_REPROCLAIM: {
		const Etcdserverpb__TxnResponse *t = (const void *)resp;
		/* (etcd's Resign after this failure compares an emptied key: a no-op) */
		if (!t->succeeded)
			op_fail(op, EC_ELECTION_NOT_LEADER);
		else
			next(op, ST_SCAN, do_range(op, true, op->rev - 1));
		break;
	}
	case ST_SCAN: {
		const Etcdserverpb__RangeResponse *r = (const void *)resp;
		if (r->n_kvs == 0) {
			if (op->kind == OP_LOCK)
				hdr_save(&op->hdr, r->header);
			answer_won(op);
			break;
		}
		ProtobufCBinaryData none = {0, NULL};
		next(op, ST_WAIT,
		     call_watch(op, r->kvs[0]->key, none,
		                r->header != NULL ? r->header->revision : 0));
		break;
	}
	case ST_PROCLAIM: {
		const Etcdserverpb__TxnResponse *t = (const void *)resp;
		if (!t->succeeded) {
			op_fail(op, EC_ELECTION_NOT_LEADER);
			break;
		}
		V3electionpb__ProclaimResponse r = V3ELECTIONPB__PROCLAIM_RESPONSE__INIT;
		r.header = t->header;
		op_answer(op, &r.base, EC_OK);
		op_done(op);
		break;
	}
	case ST_RESIGN: {
		const Etcdserverpb__TxnResponse *t = (const void *)resp;
		V3electionpb__ResignResponse r = V3ELECTIONPB__RESIGN_RESPONSE__INIT;
		r.header = t->header;
		op_answer(op, &r.base, EC_OK);
		op_done(op);
		break;
	}
	case ST_UNLOCK: {
		const Etcdserverpb__DeleteRangeResponse *d = (const void *)resp;
		V3lockpb__UnlockResponse r = V3LOCKPB__UNLOCK_RESPONSE__INIT;
		r.header = d->header;
		op_answer(op, &r.base, EC_OK);
		op_done(op);
		break;
	}
	case ST_LEADER: {
		const Etcdserverpb__RangeResponse *g = (const void *)resp;
		if (g->n_kvs == 0) {
			op_fail(op, EC_ELECTION_NO_LEADER);
			break;
		}
		V3electionpb__LeaderResponse r = V3ELECTIONPB__LEADER_RESPONSE__INIT;
		r.header = g->header;
		r.kv = g->kvs[0];
		op_answer(op, &r.base, EC_OK);
		op_done(op);
		break;
	}
	case ST_OBS_RANGE: {
		const Etcdserverpb__RangeResponse *g = (const void *)resp;
		int64_t rev = g->header != NULL ? g->header->revision : 0;
		if (g->n_kvs == 0) {
			uint8_t *end = malloc(op->pfx.len + 1);
			ProtobufCBinaryData e = {0, NULL};
			if (end != NULL)
				prefix_end(op->pfx, end, &e);
			next(op, ST_OBS_PUT, end != NULL && call_watch(op, op->pfx, e, rev));
			free(end);
			break;
		}
		observe_send(op, g->header, g->kvs[0]);
		observe_follow(op, g->kvs[0]->key, rev + 1);
		break;
	}
	case ST_CLEANUP:
		if (op->fail_err != EC_OK)
			op_fail(op, op->fail_err);
		else
			op_done(op);
		break;
	default:
		op_fail(op, EC_INTERNAL);
		break;
	}
}

/* A response of the current watch (el->mu held). */
static void op_watch(el_op *op, const Etcdserverpb__WatchResponse *wr)
{
	if (wr->canceled) {
		ic_kill(op->ic);
		int err = (wr->compact_revision > 0 ? EC_COMPACTED : EC_WATCH_CANCELED) |
		          EC_AS_UNKNOWN;
		op_step(op, NULL, err);
		return;
	}
	for (size_t i = 0; i < wr->n_events; i++) {
		const Mvccpb__Event *ev = wr->events[i];
		bool del = ev->type == MVCCPB__EVENT__EVENT_TYPE__DELETE;
		switch (op->state) {
		case ST_WAIT:
			if (del) {
				ic_kill(op->ic);
				next(op, ST_SCAN, do_range(op, true, op->rev - 1));
				return;
			}
			break;
		case ST_OBS_PUT:
			if (!del && ev->kv != NULL) {
				Etcdserverpb__ResponseHeader h =
				        ETCDSERVERPB__RESPONSE_HEADER__INIT;
				if (wr->header != NULL)
					h = *wr->header;
				h.revision = ev->kv->mod_revision;
				observe_send(op, &h, ev->kv);
				ic_kill(op->ic);
				observe_follow(op, ev->kv->key, h.revision + 1);
				return;
			}
			break;
		case ST_OBS_FOLLOW:
			if (del) {
				ic_kill(op->ic);
				next(op, ST_OBS_RANGE, do_range(op, false, 0));
				return;
			}
			observe_send(op, wr->header, ev->kv);
			break;
		default:
			break;
		}
	}
}

/* The first inner call of a new op (el->mu held). */
static void step_start(el_op *op)
{
	switch (op->kind) {
	case OP_CAMPAIGN:
	case OP_LOCK:
		if (op->lease == 0)
			next(op, ST_GRANT, do_grant(op));
		else
			enter(op);
		break;
	case OP_PROCLAIM:
		if (op->lease == 0)
			next(op, ST_GRANT, do_grant(op));
		else
			next(op, ST_PROCLAIM, do_put_txn(op, op->rev, op->value, false, false));
		break;
	case OP_RESIGN:
		next(op, ST_RESIGN, do_delete(op, true, op->deadline));
		break;
	case OP_UNLOCK:
		next(op, ST_UNLOCK, do_delete(op, false, op->deadline));
		break;
	case OP_LEADER:
		next(op, ST_LEADER, do_range(op, false, 0));
		break;
	case OP_OBSERVE:
		next(op, ST_OBS_RANGE, do_range(op, false, 0));
		break;
	}
}

/* ---- completions ------------------------------------------------------------------ */

static void ic_unary_done(el_ic *ic, bool ok)
{
	el_op *op = ic->op;
	if (ic->dead)
		return;
	if (op->ic == ic)
		op->ic = NULL;
	ProtobufCMessage *resp = NULL;
	int err = EC_INTERNAL;
	if (ok && ic->status == GRPC_STATUS_OK && ic->recv_bb != NULL) {
		resp = srv_rpc_msg_decode(ic->recv_bb, ic->resp);
		if (resp == NULL)
			err = EC_INTERNAL;
	} else if (ok) {
		err = err_of_status(ic->status, ic->details);
	}
	op_step(op, resp, err);
	if (resp != NULL)
		protobuf_c_message_free_unpacked(resp, NULL);
}

static void ic_watch_event(el_ic *ic, tag_kind kind, bool ok)
{
	switch (kind) {
	case TAG_START:
		if (ok && !ic->dead)
			arm_recv(ic);
		else
			ic->recv_done = true;
		break;
	case TAG_RECV:
		if (!ok || ic->recv_bb == NULL) {
			ic->recv_done = true;
			break;
		}
		if (!ic->dead) {
			ProtobufCMessage *m = srv_rpc_msg_decode(ic->recv_bb, ic->resp);
			if (m != NULL) {
				op_watch(ic->op, (const Etcdserverpb__WatchResponse *)m);
				protobuf_c_message_free_unpacked(m, NULL);
			}
		}
		grpc_byte_buffer_destroy(ic->recv_bb);
		ic->recv_bb = NULL;
		if (!ic->dead)
			arm_recv(ic);
		else
			ic->recv_done = true;
		break;
	case TAG_STATUS:
		ic->status_done = true;
		if (!ok)
			ic->status = GRPC_STATUS_INTERNAL;
		break;
	default:
		break;
	}
	if (!ic->dead && ic->recv_done && ic->status_done) {
		/* the watch ended by itself: etcd's "lost watcher" (or the call's error) */
		el_op *op = ic->op;
		ic->dead = true;
		if (op->ic == ic)
			op->ic = NULL;
		int err = ic->status == GRPC_STATUS_OK ? EC_LOST_WATCHER
		                                       : err_of_status(ic->status, ic->details);
		op_step(op, NULL, err);
	} else if (!ic->dead && ic->recv_done && !ic->status_done) {
		grpc_call_cancel(ic->call, NULL); /* no more messages: end it */
	}
}

static void dispatch(srv_election *el, el_tag *t, bool ok)
{
	el_ic *ic = t->owner;
	pthread_mutex_lock(&el->mu);
	if (t->kind == TAG_UNARY)
		ic_unary_done(ic, ok);
	else
		ic_watch_event(ic, t->kind, ok);
	if (--ic->pending == 0)
		ic_free(ic);
	pthread_mutex_unlock(&el->mu);
}

static void *el_main(void *arg)
{
	srv_election *el = arg;
	for (;;) {
		grpc_event ev = grpc_completion_queue_next(
		        el->cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
		if (ev.type == GRPC_QUEUE_SHUTDOWN)
			break;
		if (ev.type == GRPC_OP_COMPLETE)
			dispatch(el, ev.tag, ev.success != 0);
	}
	return NULL;
}

/* ---- handlers ---------------------------------------------------------------------- */

static void copy_md(el_op *op, const srv_call *call, const char *key)
{
	size_t len = 0;
	const char *v = srv_call_metadata(call, key, &len);
	if (v == NULL || op->n_md >= EL_MAX_MD)
		return;
	op->md[op->n_md].key = grpc_slice_from_static_string(key);
	op->md[op->n_md].value = grpc_slice_from_copied_buffer(v, len);
	op->n_md++;
}

/* A new op for the client call @call (and @st for stream rows); its request
 * fields are filled by the caller, then op_begin runs it. NULL: out of memory. */
static el_op *op_new(srv_election *el, op_kind kind, const srv_call *call, srv_stream *st)
{
	el_op *op = calloc(1, sizeof *op);
	if (op == NULL)
		return NULL;
	op->el = el;
	op->kind = kind;
	op->refs = 1;
	op->st = st;
	copy_md(op, call, "token");
	copy_md(op, call, "authorization");
	/* Stream rows learn of the client's deadline through on_close, which
	 * cleans up: their inner calls get none (an inner call ending first
	 * would fail the op without the cleanup). */
	int64_t ms = st != NULL ? -1 : srv_call_remaining_ms(call);
	op->deadline = ms < 0 ? gpr_inf_future(GPR_CLOCK_REALTIME)
	                      : gpr_time_add(gpr_now(GPR_CLOCK_REALTIME),
	                                     gpr_time_from_millis(ms, GPR_TIMESPAN));
	return op;
}

static void on_close(srv_stream *st, void *ctx, bool cancelled)
{
	el_op *op = ctx;
	srv_election *el = op->el;
	(void)st;
	pthread_mutex_lock(&el->mu);
	op->gone = true;
	if (cancelled && !op->answered) {
		op->answered = true; /* nobody to answer */
		ic_kill(op->ic);
		/* a contender that gives up takes its key back (etcd: Resign, Unlock) */
		if (op->state != ST_DONE && op->have_key && !el->stopping &&
		    (op->kind == OP_CAMPAIGN || op->kind == OP_LOCK))
			cleanup_then_fail(op, EC_OK);
		else
			op_done(op);
	}
	op_unref(op); /* on_close's reference */
	pthread_mutex_unlock(&el->mu);
}

/* Run @op: list it and start its first step, or fail it (stopping, not yet
 * bound). @bad: the request was refused before any call (EC_OK if not). */
static void op_begin(srv_election *el, el_op *op, bool ok, int bad)
{
	pthread_mutex_lock(&el->mu);
	el->live++;
	op->state = ST_NEW;
	op->next = el->head;
	if (el->head != NULL)
		el->head->prev = op;
	el->head = op;
	if (op->st != NULL) {
		op->refs++; /* on_close's */
		srv_stream_ops ops = {.on_close = on_close};
		srv_stream_set_ops(op->st, &ops, op);
	}
	if (!ok)
		op_fail(op, EC_NOMEM);
	else if (bad != EC_OK)
		op_fail(op, bad);
	else if (el->stopping || el->ch == NULL)
		op_fail(op, EC_STOPPED);
	else
		step_start(op);
	pthread_mutex_unlock(&el->mu);
}

static srv_election *election_of(void *app)
{
	return ((srv_app *)app)->election;
}

/* The op could not even be allocated: answer at once. */
static void refuse_call(srv_call *call)
{
	srv_call_fail(call, EC_NOMEM);
}

static void refuse_stream(srv_stream *st)
{
	srv_stream_finish(st, EC_NOMEM);
	srv_stream_unref(st);
}

static void h_campaign(srv_stream *st, const ProtobufCMessage *m)
{
	const V3electionpb__CampaignRequest *req = (const void *)m;
	el_op *op = op_new(election_of(srv_stream_app(st)), OP_CAMPAIGN, srv_stream_call(st), st);
	if (op == NULL) {
		refuse_stream(st);
		return;
	}
	op->lease = req->lease;
	bool ok = bin_set(&op->name, req->name.data, req->name.len, NULL, 0) &&
	          bin_set(&op->pfx, req->name.data, req->name.len, "/", 1) &&
	          bin_set(&op->value, req->value.data, req->value.len, NULL, 0);
	op_begin(op->el, op, ok, EC_OK);
}

static void h_lock(srv_stream *st, const ProtobufCMessage *m)
{
	const V3lockpb__LockRequest *req = (const void *)m;
	el_op *op = op_new(election_of(srv_stream_app(st)), OP_LOCK, srv_stream_call(st), st);
	if (op == NULL) {
		refuse_stream(st);
		return;
	}
	op->lease = req->lease;
	bool ok = bin_set(&op->pfx, req->name.data, req->name.len, "/", 1);
	op_begin(op->el, op, ok, EC_OK);
}

static void h_observe(srv_stream *st, const ProtobufCMessage *m)
{
	const V3electionpb__LeaderRequest *req = (const void *)m;
	el_op *op = op_new(election_of(srv_stream_app(st)), OP_OBSERVE, srv_stream_call(st), st);
	if (op == NULL) {
		refuse_stream(st);
		return;
	}
	bool ok = bin_set(&op->pfx, req->name.data, req->name.len, "/", 1);
	op_begin(op->el, op, ok, EC_OK);
}

static void h_leader(srv_call *call, const ProtobufCMessage *m)
{
	const V3electionpb__LeaderRequest *req = (const void *)m;
	el_op *op = op_new(election_of(srv_call_app(call)), OP_LEADER, call, NULL);
	if (op == NULL) {
		refuse_call(call);
		return;
	}
	op->call = call;
	bool ok = bin_set(&op->pfx, req->name.data, req->name.len, "/", 1);
	op_begin(op->el, op, ok, EC_OK);
}

/* Proclaim and Resign: the leader key of the request. */
static bool take_leader(el_op *op, const V3electionpb__LeaderKey *lk)
{
	if (lk == NULL)
		return true;
	op->rev = lk->rev;
	op->lease = lk->lease;
	return bin_set(&op->key, lk->key.data, lk->key.len, NULL, 0);
}

static void h_proclaim(srv_call *call, const ProtobufCMessage *m)
{
	const V3electionpb__ProclaimRequest *req = (const void *)m;
	el_op *op = op_new(election_of(srv_call_app(call)), OP_PROCLAIM, call, NULL);
	if (op == NULL) {
		refuse_call(call);
		return;
	}
	op->call = call;
	bool ok = take_leader(op, req->leader) &&
	          bin_set(&op->value, req->value.data, req->value.len, NULL, 0);
	op_begin(op->el, op, ok, req->leader == NULL ? EC_ELECTION_NO_LEADER_KEY : EC_OK);
}

static void h_resign(srv_call *call, const ProtobufCMessage *m)
{
	const V3electionpb__ResignRequest *req = (const void *)m;
	el_op *op = op_new(election_of(srv_call_app(call)), OP_RESIGN, call, NULL);
	if (op == NULL) {
		refuse_call(call);
		return;
	}
	op->call = call;
	bool ok = take_leader(op, req->leader);
	op_begin(op->el, op, ok, req->leader == NULL ? EC_ELECTION_NO_LEADER_KEY : EC_OK);
}

static void h_unlock(srv_call *call, const ProtobufCMessage *m)
{
	const V3lockpb__UnlockRequest *req = (const void *)m;
	el_op *op = op_new(election_of(srv_call_app(call)), OP_UNLOCK, call, NULL);
	if (op == NULL) {
		refuse_call(call);
		return;
	}
	op->call = call;
	bool ok = bin_set(&op->key, req->key.data, req->key.len, NULL, 0);
	op_begin(op->el, op, ok, EC_OK);
}

/* ---- start and stop ---------------------------------------------------------------- */

void srv_election_register(srv_method tab[SRV_M__COUNT])
{
	tab[SRV_M_ELECTION_CAMPAIGN].kind = SRV_SERVER_STREAM;
	tab[SRV_M_ELECTION_CAMPAIGN].stream = h_campaign;
	tab[SRV_M_ELECTION_PROCLAIM].unary = h_proclaim;
	tab[SRV_M_ELECTION_LEADER].unary = h_leader;
	tab[SRV_M_ELECTION_OBSERVE].stream = h_observe;
	tab[SRV_M_ELECTION_RESIGN].unary = h_resign;
	tab[SRV_M_LOCK_LOCK].kind = SRV_SERVER_STREAM;
	tab[SRV_M_LOCK_LOCK].stream = h_lock;
	tab[SRV_M_LOCK_UNLOCK].unary = h_unlock;
}

int srv_election_new(srv_election **out, char *err, size_t errlen)
{
	*out = NULL;
	srv_election *el = calloc(1, sizeof *el);
	if (el == NULL) {
		srv_errf(err, errlen, "election: out of memory");
		return -1;
	}
	pthread_mutex_init(&el->mu, NULL);
	pthread_cond_init(&el->cv, NULL);
	grpc_init();
	el->cq = srv_rpc_cq_create(false); /* in-process calls only */
	int e = pthread_create(&el->thread, NULL, el_main, el);
	if (e != 0) {
		srv_errf(err, errlen, "election: cannot start thread: %s", strerror(e));
		grpc_completion_queue_shutdown(el->cq);
		while (grpc_completion_queue_next(el->cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL)
		               .type != GRPC_QUEUE_SHUTDOWN)
			;
		grpc_completion_queue_destroy(el->cq);
		pthread_mutex_destroy(&el->mu);
		pthread_cond_destroy(&el->cv);
		free(el);
		grpc_shutdown();
		return -1;
	}
	*out = el;
	return 0;
}

int srv_election_bind(srv_election *el, srv_rpc *rpc)
{
	grpc_channel *ch = srv_rpc_inproc_channel(rpc);
	if (ch == NULL)
		return -1;
	pthread_mutex_lock(&el->mu);
	el->ch = ch;
	pthread_mutex_unlock(&el->mu);
	return 0;
}

void srv_election_stop(srv_election *el)
{
	if (el == NULL)
		return;
	pthread_mutex_lock(&el->mu);
	el->stopping = true;
	while (el->head != NULL) {
		el_op *op = el->head;
		ic_kill(op->ic);
		op_fail(op, EC_STOPPED); /* unlists it */
	}
	struct timespec dl;
	clock_gettime(CLOCK_REALTIME, &dl);
	dl.tv_sec += 5;
	while (el->live > 0)
		if (pthread_cond_timedwait(&el->cv, &el->mu, &dl) != 0)
			break;
	size_t left = el->live;
	grpc_channel *ch = el->ch;
	el->ch = NULL;
	pthread_mutex_unlock(&el->mu);
	if (left > 0) {
		srv_log_warn("election: calls still alive at shutdown; leaking the module",
		             SRV_LF_UINT("calls", left));
		return;
	}
	grpc_completion_queue_shutdown(el->cq);
	pthread_join(el->thread, NULL);
	grpc_completion_queue_destroy(el->cq);
	if (ch != NULL)
		grpc_channel_destroy(ch);
	pthread_mutex_destroy(&el->mu);
	pthread_cond_destroy(&el->cv);
	free(el);
	grpc_shutdown();
}
