/*
 * srv_handlers: KV, Maintenance.Status and Cluster.MemberList for a single
 * member (see srv_handlers.h).
 *
 * Writes: validate (ec_check_*), wrap in an InternalRequest, propose to the node
 * loop; the reply is sent from the node thread once the entry is durable and
 * applied. Reads: served on the gRPC thread from a consistent snapshot. With a
 * single member every acknowledged write is applied before its reply leaves, so a
 * local read started after that reply sees it: local reads are linearizable here.
 * (The cluster issue adds ReadIndex for linearizable reads on followers/leaders.)
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
	err = srv_node_propose(app_of(call)->node, &pw->ir, write_done, pw);
	if (err != EC_OK) {
		free(pw);
		srv_call_fail(call, err);
	}
}

void srv_kv_range(srv_call *call, const ProtobufCMessage *req)
{
	const Etcdserverpb__RangeRequest *r = (const Etcdserverpb__RangeRequest *)req;
	srv_app *app = app_of(call);
	int err = ec_check_range(r);
	if (err != EC_OK) {
		srv_call_fail(call, err);
		return;
	}
	ec_hdr hdr = srv_node_hdr(app->node);
	Etcdserverpb__RangeResponse *resp = NULL;
	err = ec_kv_range(app->kv, r, &hdr, &resp);
	srv_finish(call, err, resp);
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

void srv_kv_txn(srv_call *call, const ProtobufCMessage *req)
{
	const Etcdserverpb__TxnRequest *r = (const Etcdserverpb__TxnRequest *)req;
	srv_app *app = app_of(call);
	int err = ec_check_txn(r, &app->kv_cfg);
	if (err == EC_OK && ec_txn_is_readonly(r)) {
		/* As etcd: a txn of reads only needs no log entry. */
		ec_hdr hdr = srv_node_hdr(app->node);
		Etcdserverpb__TxnResponse *resp = NULL;
		err = ec_kv_txn_read(app->kv, r, &hdr, &resp);
		srv_finish(call, err, resp);
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
	resp.leader = app->member_id;
	resp.raftindex = st.commit_index;
	resp.raftterm = st.term;
	resp.raftappliedindex = st.applied_index;
	resp.islearner = 0;
	srv_call_reply(call, &resp.base);
}

void srv_cluster_member_list(srv_call *call, const ProtobufCMessage *req)
{
	(void)req;
	srv_app *app = app_of(call);
	Etcdserverpb__ResponseHeader hdr = ETCDSERVERPB__RESPONSE_HEADER__INIT;
	srv_fill_header(app, &hdr, false);
	Etcdserverpb__Member self = ETCDSERVERPB__MEMBER__INIT;
	self.id = app->member_id;
	self.name = (char *)app->name;
	self.n_peerurls = app->peer_urls.n;
	self.peerurls = app->peer_urls.url;
	self.n_clienturls = app->client_urls->n;
	self.clienturls = (char **)app->client_urls->url;
	Etcdserverpb__Member *members[1] = {&self};
	Etcdserverpb__MemberListResponse resp = ETCDSERVERPB__MEMBER_LIST_RESPONSE__INIT;
	resp.header = &hdr;
	resp.n_members = 1;
	resp.members = members;
	srv_call_reply(call, &resp.base);
}
