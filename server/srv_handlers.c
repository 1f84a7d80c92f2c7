/*
 * srv_handlers: KV, Maintenance.Status and Cluster.MemberList for a single
 * member (see srv_handlers.h).
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
#include "ms_version.h"
#include "server/srv_app.h"

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
} pending_write;

void srv_finish(srv_call *call, int err, void *resp)
{
	if (err != EC_OK)
		srv_call_fail(call, err);
	else
		srv_call_reply(call, resp);
	ec_msg_free(resp);
}

static void write_done(void *ctx, int err, void *resp)
{
	pending_write *pw = ctx;
	srv_finish(pw->call, err, resp);
	free(pw);
}

void srv_propose_write(srv_call *call, int err, Metastore__InternalRequest__RequestCase which,
                       ProtobufCMessage *msg)
{
	if (err == EC_OK && srv_is_learner(app_of(call)))
		err = EC_NOT_SUPPORTED_FOR_LEARNER;
	if (err != EC_OK) {
		srv_call_fail(call, err);
		return;
	}
	pending_write *pw = malloc(sizeof(*pw));
	if (!pw) {
		srv_call_fail(call, EC_NOMEM);
		return;
	}
	Metastore__InternalRequest init = METASTORE__INTERNAL_REQUEST__INIT;
	pw->ir = init;
	pw->ir.request_case = which;
	switch (which) {
	case METASTORE__INTERNAL_REQUEST__REQUEST_PUT:
		pw->ir.put = (Etcdserverpb__PutRequest *)msg;
		break;
	case METASTORE__INTERNAL_REQUEST__REQUEST_DELETE_RANGE:
		pw->ir.delete_range = (Etcdserverpb__DeleteRangeRequest *)msg;
		break;
	case METASTORE__INTERNAL_REQUEST__REQUEST_TXN:
		pw->ir.txn = (Etcdserverpb__TxnRequest *)msg;
		break;
	case METASTORE__INTERNAL_REQUEST__REQUEST_COMPACTION:
		pw->ir.compaction = (Etcdserverpb__CompactionRequest *)msg;
		break;
	case METASTORE__INTERNAL_REQUEST__REQUEST_LEASE_GRANT:
		pw->ir.lease_grant = (Etcdserverpb__LeaseGrantRequest *)msg;
		break;
	case METASTORE__INTERNAL_REQUEST__REQUEST_LEASE_REVOKE:
		pw->ir.lease_revoke = (Etcdserverpb__LeaseRevokeRequest *)msg;
		break;
	default:
		free(pw);
		srv_call_fail(call, EC_INTERNAL);
		return;
	}
	pw->call = call;
	err = srv_node_propose_within(app_of(call)->node, &pw->ir, srv_call_remaining_ms(call),
				      write_done, pw);
	if (err != EC_OK) {
		free(pw);
		srv_call_fail(call, err);
	}
}

/* A linearizable read waiting for its ReadIndex round: the call and which read. */
typedef struct pending_read {
	srv_call *call;
	const ProtobufCMessage *req; /* the call's request, valid until it completes */
	bool txn;
} pending_read;

static void serve_read(srv_call *call, const ProtobufCMessage *req, bool txn)
{
	srv_app *app = app_of(call);
	ec_hdr hdr = srv_node_hdr(app->node);
	if (txn) {
		Etcdserverpb__TxnResponse *resp = NULL;
		int err = ec_kv_txn_read(app->kv, (const Etcdserverpb__TxnRequest *)req, &hdr, &resp);
		srv_finish(call, err, resp);
	} else {
		Etcdserverpb__RangeResponse *resp = NULL;
		int err = ec_kv_range(app->kv, (const Etcdserverpb__RangeRequest *)req, &hdr, &resp);
		srv_finish(call, err, resp);
	}
}

/* A confirmed read handed back to a gRPC thread (srv_call_resume). */
static void read_resumed(srv_call *call, void *arg)
{
	pending_read *pr = arg;
	serve_read(call, pr->req, pr->txn);
	free(pr);
}

static void read_ready(void *ctx, int err)
{
	pending_read *pr = ctx;
	if (err != EC_OK) {
		srv_call_fail(pr->call, err);
		free(pr);
	} else if (srv_node_is_node_thread(app_of(pr->call)->node)) {
		/* reading, packing and replying are not the node thread's job */
		srv_call_resume(pr->call, read_resumed, pr);
	} else {
		/* a sole voter's read, still on the gRPC thread: serve here */
		serve_read(pr->call, pr->req, pr->txn);
		free(pr);
	}
}

/* Serve a read now (@serializable) or once a ReadIndex round confirms it. */
static void read_linearizable(srv_call *call, const ProtobufCMessage *req, bool serializable,
			      bool txn)
{
	srv_app *app = app_of(call);
	if (serializable) {
		serve_read(call, req, txn);
		return;
	}
	if (srv_is_learner(app)) {
		srv_call_fail(call, EC_NOT_SUPPORTED_FOR_LEARNER);
		return;
	}
	pending_read *pr = malloc(sizeof(*pr));
	if (pr == NULL) {
		srv_call_fail(call, EC_NOMEM);
		return;
	}
	pr->call = call;
	pr->req = req;
	pr->txn = txn;
	int err = srv_node_read(app->node, read_ready, pr);
	if (err != EC_OK) {
		free(pr);
		srv_call_fail(call, err);
	}
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

void srv_maint_status(srv_call *call, const ProtobufCMessage *req)
{
	(void)req;
	srv_app *app = app_of(call);
	Etcdserverpb__ResponseHeader hdr = ETCDSERVERPB__RESPONSE_HEADER__INIT;
	srv_fill_header(app, &hdr, true);
	srv_node_status st;
	srv_node_get_status(app->node, &st);
	int64_t total = 0, in_use = 0;
	st_db_size(app->db, &total, &in_use);

	Etcdserverpb__StatusResponse resp = ETCDSERVERPB__STATUS_RESPONSE__INIT;
	resp.header = &hdr;
	resp.version = (char *)MS_ETCD_VERSION;
	resp.dbsize = total;
	resp.dbsizeinuse = in_use;
	resp.leader = st.lead;
	resp.raftindex = st.commit_index;
	resp.raftterm = st.term;
	resp.raftappliedindex = st.applied_index;
	resp.islearner = st.is_learner;
	srv_call_reply(call, &resp.base);
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
