/*
 * srv_handlers: KV and Cluster.MemberList, and the write/read plumbing every
 * service shares (see srv_handlers.h).
 *
 * Writes: validate (ec_check_*), wrap in an InternalRequest, propose to the node
 * loop; the reply is sent from the node thread once the entry is durable and
 * applied. Reads: serializable ones are served on the gRPC thread from a
 * consistent snapshot at once; linearizable ones (the default) first wait for a
 * ReadIndex round (srv_node_read) and are then served the same way, on a gRPC
 * thread: the node thread only confirms them and hands each back
 * (srv_call_resume); a sole voter serves at once. Learners refuse both
 * writes and linearizable reads, as etcd's do.
 */
#include "server/srv_handlers.h"

#include <stdlib.h>
#include <string.h>

#include "etcdcompat/ec_errors.h"
#include "server/srv_app.h"
#include "server/srv_auth.h"
#include "server/srv_maint.h"

static srv_app *app_of(srv_call *call)
{
	return srv_call_app(call);
}

/* A proposal in flight: the internal request borrows the call's decoded request,
 * which stays valid until the call completes in write_done. */
bool srv_is_learner(srv_app *app)
{
	srv_node_status st;
	srv_node_get_status(app->node, &st);
	return st.is_learner;
}

typedef struct pending_write {
	srv_call *call;
	Metastore__InternalRequest ir;
	Metastore__RequestAuth ra;
	ec_auth_info ai;
	void *owned; /* freed with the proposal (srv_propose_owned) */
} pending_write;

void srv_finish(srv_call *call, int err, void *resp)
{
	if (err != EC_OK)
		srv_call_fail(call, err);
	else
		srv_call_reply(call, resp);
	ec_msg_free(resp);
}

/* Answer @pw's call and free @pw (on the reply thread). */
static void write_answer(void *ctx, int err, void *resp)
{
	pending_write *pw = ctx;
	srv_finish(pw->call, err, resp);
	free(pw->owned);
	free(pw);
}

/* The node loop applied (or failed) @pw's proposal: the answer leaves from the
 * reply thread, so the node goes on to its next log write at once. */
static void write_done(void *ctx, int err, void *resp)
{
	pending_write *pw = ctx;
	srv_defer_post(app_of(pw->call)->replies, write_answer, pw, err, resp);
}

/* Point @ir's oneof at @msg for case @which; false for a case proposals do not
 * carry. (The oneof members are all message pointers sharing one slot.) */
static bool set_request(Metastore__InternalRequest *ir, Metastore__InternalRequest__RequestCase which,
			ProtobufCMessage *msg)
{
	switch (which) {
	case METASTORE__INTERNAL_REQUEST__REQUEST_PUT:
	case METASTORE__INTERNAL_REQUEST__REQUEST_DELETE_RANGE:
	case METASTORE__INTERNAL_REQUEST__REQUEST_TXN:
	case METASTORE__INTERNAL_REQUEST__REQUEST_COMPACTION:
	case METASTORE__INTERNAL_REQUEST__REQUEST_LEASE_GRANT:
	case METASTORE__INTERNAL_REQUEST__REQUEST_LEASE_REVOKE:
	case METASTORE__INTERNAL_REQUEST__REQUEST_ALARM:
		break;
	default:
		if (!ec_auth_is_request(which))
			return false;
	}
	ir->request_case = which;
	ir->put = (Etcdserverpb__PutRequest *)msg; /* the shared oneof slot */
	return true;
}

void srv_propose_write(srv_call *call, int err, Metastore__InternalRequest__RequestCase which,
                       ProtobufCMessage *msg)
{
	srv_propose_owned(call, err, which, msg, NULL);
}

/* Free @pw and what it owns, failing its call with @err. */
static void write_fail(pending_write *pw, int err)
{
	srv_call *call = pw->call;
	free(pw->owned);
	free(pw);
	srv_call_fail(call, err);
}

/* Stamp @pw's sender and propose it. */
static void write_submit(pending_write *pw)
{
	/* etcd's RequestHeader: apply checks the request against it. Every client
	 * write carries one (user "" without a token); only the member's own
	 * proposals (lease expiry, publish) carry none and are not checked. */
	pw->ra.username = pw->ai.user;
	pw->ra.auth_revision = pw->ai.revision;
	pw->ir.auth = &pw->ra;
	int err = srv_node_propose_within(app_of(pw->call)->node, &pw->ir,
					  srv_call_remaining_ms(pw->call), write_done, pw);
	if (err != EC_OK)
		write_fail(pw, err);
}

/* The token was unknown here; this member has now applied what the cluster
 * had committed (a simple token made on another member included): look again. */
static void write_token_retry(srv_call *call, void *arg, int err)
{
	pending_write *pw = arg;
	if (err == EC_OK)
		err = srv_auth_info(call, &pw->ai);
	if (err != EC_OK)
		write_fail(pw, err);
	else
		write_submit(pw);
}

void srv_propose_owned(srv_call *call, int err, Metastore__InternalRequest__RequestCase which,
                       ProtobufCMessage *msg, void *owned)
{
	if (err == EC_OK && srv_is_learner(app_of(call)))
		err = EC_NOT_SUPPORTED_FOR_LEARNER;
	pending_write *pw = NULL;
	if (err == EC_OK) {
		pw = malloc(sizeof(*pw));
		if (!pw)
			err = EC_NOMEM;
	}
	if (err != EC_OK) {
		free(owned);
		srv_call_fail(call, err);
		return;
	}
	Metastore__InternalRequest init = METASTORE__INTERNAL_REQUEST__INIT;
	Metastore__RequestAuth rinit = METASTORE__REQUEST_AUTH__INIT;
	pw->ir = init;
	pw->ra = rinit;
	pw->call = call;
	pw->owned = owned;
	if (!set_request(&pw->ir, which, msg)) {
		write_fail(pw, EC_INTERNAL);
		return;
	}
	/* etcd's quotaKVServer / quotaLeaseServer, before anything is proposed */
	if ((err = srv_maint_quota_check(app_of(call), &pw->ir)) != EC_OK) {
		write_fail(pw, err);
		return;
	}
	err = srv_auth_info(call, &pw->ai);
	if (err == EC_OK)
		write_submit(pw);
	else if (srv_auth_token_may_lag(call, err))
		srv_read_barrier(call, write_token_retry, pw);
	else
		write_fail(pw, err);
}

/* A call waiting for its ReadIndex round, and what to do then. */
typedef struct pending_read {
	srv_call *call;
	srv_linear_fn fn;
	void *arg;
} pending_read;

/* A confirmed read handed back to a gRPC thread (srv_call_resume). */
static void read_resumed(srv_call *call, void *arg)
{
	pending_read *pr = arg;
	pr->fn(call, pr->arg, EC_OK);
	free(pr);
}

static void read_ready(void *ctx, int err)
{
	pending_read *pr = ctx;
	if (err != EC_OK) {
		pr->fn(pr->call, pr->arg, err);
		free(pr);
	} else if (srv_node_is_node_thread(app_of(pr->call)->node)) {
		/* reading, packing and replying are not the node thread's job */
		srv_call_resume(pr->call, read_resumed, pr);
	} else {
		/* a sole voter's read, still on the gRPC thread: serve here */
		pr->fn(pr->call, pr->arg, EC_OK);
		free(pr);
	}
}

void srv_read_barrier(srv_call *call, srv_linear_fn fn, void *arg)
{
	srv_app *app = app_of(call);
	int err = EC_OK;
	pending_read *pr = NULL;
	if (srv_is_learner(app))
		err = EC_NOT_SUPPORTED_FOR_LEARNER;
	else if ((pr = malloc(sizeof(*pr))) == NULL)
		err = EC_NOMEM;
	if (err == EC_OK) {
		pr->call = call;
		pr->fn = fn;
		pr->arg = arg;
		err = srv_node_read(app->node, read_ready, pr);
	}
	if (err != EC_OK) {
		free(pr);
		fn(call, arg, err);
	}
}

/* A KV read: Range or a read-only Txn, and who asked. */
typedef struct kv_read {
	const ProtobufCMessage *req; /* the call's request, valid until it completes */
	bool txn;
	ec_auth_info ai;
} kv_read;

/* Check @kr's permissions (etcd checks reads where they are served) and serve it. */
static void serve_read(srv_call *call, const kv_read *kr)
{
	srv_app *app = app_of(call);
	ec_hdr hdr = srv_node_hdr(app->node);
	if (kr->txn) {
		const Etcdserverpb__TxnRequest *r = (const Etcdserverpb__TxnRequest *)kr->req;
		Etcdserverpb__TxnResponse *resp = NULL;
		int err = ec_auth_check_txn(app->auth, &kr->ai, r);
		if (err == EC_OK)
			err = ec_kv_txn_read(app->kv, r, &hdr, &resp);
		srv_finish(call, err, resp);
	} else {
		const Etcdserverpb__RangeRequest *r = (const Etcdserverpb__RangeRequest *)kr->req;
		Etcdserverpb__RangeResponse *resp = NULL;
		int err = ec_auth_check_range(app->auth, &kr->ai, r->key.data, r->key.len,
					      r->range_end.data, r->range_end.len);
		if (err == EC_OK)
			err = ec_kv_range(app->kv, r, &hdr, &resp);
		srv_finish(call, err, resp);
	}
}

static void kv_read_ready(srv_call *call, void *arg, int err)
{
	kv_read *kr = arg;
	/* as etcd's doSerialize: who asks is looked up once the state is current
	 * (a simple token made through another member is known by then) */
	if (err == EC_OK)
		err = srv_auth_info(call, &kr->ai);
	if (err != EC_OK)
		srv_call_fail(call, err);
	else
		serve_read(call, kr);
	free(kr);
}

/* Serve a read now (@serializable) or once a ReadIndex round confirms it. */
static void read_linearizable(srv_call *call, const ProtobufCMessage *req, bool serializable,
			      bool txn)
{
	if (serializable) {
		kv_read now = {.req = req, .txn = txn};
		int err = srv_auth_info(call, &now.ai);
		if (err != EC_OK)
			srv_call_fail(call, err);
		else
			serve_read(call, &now);
		return;
	}
	kv_read *kr = malloc(sizeof(*kr));
	if (kr == NULL) {
		srv_call_fail(call, EC_NOMEM);
		return;
	}
	kr->req = req;
	kr->txn = txn;
	srv_read_barrier(call, kv_read_ready, kr);
}

void srv_kv_range(srv_call *call, const ProtobufCMessage *req)
{
	const Etcdserverpb__RangeRequest *r = (const Etcdserverpb__RangeRequest *)req;
	int err = ec_check_range(r);
	if (err != EC_OK) {
		srv_call_fail(call, err);
		return;
	}
	read_linearizable(call, req, r->serializable, false);
}

void srv_kv_put(srv_call *call, const ProtobufCMessage *req)
{
	const Etcdserverpb__PutRequest *r = (const Etcdserverpb__PutRequest *)req;
	srv_propose_write(call, ec_check_put(r), METASTORE__INTERNAL_REQUEST__REQUEST_PUT,
	                  (ProtobufCMessage *)req);
}

void srv_kv_delete_range(srv_call *call, const ProtobufCMessage *req)
{
	const Etcdserverpb__DeleteRangeRequest *r = (const Etcdserverpb__DeleteRangeRequest *)req;
	srv_propose_write(call, ec_check_delete(r),
	                  METASTORE__INTERNAL_REQUEST__REQUEST_DELETE_RANGE,
	                  (ProtobufCMessage *)req);
}

/* etcd's isTxnSerializable: every op of both branches is a serializable Range. */
static bool txn_serializable(const Etcdserverpb__TxnRequest *r)
{
	for (size_t i = 0; i < r->n_success; i++)
		if (r->success[i]->request_case != ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_RANGE ||
		    !r->success[i]->request_range->serializable)
			return false;
	for (size_t i = 0; i < r->n_failure; i++)
		if (r->failure[i]->request_case != ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_RANGE ||
		    !r->failure[i]->request_range->serializable)
			return false;
	return true;
}

void srv_kv_txn(srv_call *call, const ProtobufCMessage *req)
{
	const Etcdserverpb__TxnRequest *r = (const Etcdserverpb__TxnRequest *)req;
	srv_app *app = app_of(call);
	int err = ec_check_txn(r, &app->kv_cfg);
	if (err == EC_OK && ec_txn_is_readonly(r)) {
		/* As etcd: a txn of reads only needs no log entry. */
		read_linearizable(call, req, txn_serializable(r), true);
		return;
	}
	srv_propose_write(call, err, METASTORE__INTERNAL_REQUEST__REQUEST_TXN,
	                  (ProtobufCMessage *)req);
}

void srv_kv_compact(srv_call *call, const ProtobufCMessage *req)
{
	const Etcdserverpb__CompactionRequest *r = (const Etcdserverpb__CompactionRequest *)req;
	srv_propose_write(call, ec_check_compact(r),
	                  METASTORE__INTERNAL_REQUEST__REQUEST_COMPACTION, (ProtobufCMessage *)req);
}

void srv_fill_header(srv_app *app, Etcdserverpb__ResponseHeader *h, bool with_rev)
{
	ec_hdr hdr = srv_node_hdr(app->node);
	h->cluster_id = hdr.cluster_id;
	h->member_id = hdr.member_id;
	h->raft_term = hdr.raft_term;
	h->revision = with_rev ? ec_kv_revision(app->kv) : 0;
}

void srv_cluster_member_list(srv_call *call, const ProtobufCMessage *req)
{
	(void)req;
	srv_app *app = app_of(call);
	Metastore__MemberSet *set = ec_cluster_copy(app->cluster);
	if (set == NULL) {
		srv_call_fail(call, EC_NOMEM);
		return;
	}
	Etcdserverpb__ResponseHeader hdr = ETCDSERVERPB__RESPONSE_HEADER__INIT;
	srv_fill_header(app, &hdr, false);
	Etcdserverpb__MemberListResponse resp = ETCDSERVERPB__MEMBER_LIST_RESPONSE__INIT;
	resp.header = &hdr;
	resp.n_members = set->n_members;
	resp.members = set->members;
	srv_call_reply(call, &resp.base);
	metastore__member_set__free_unpacked(set, NULL);
}
