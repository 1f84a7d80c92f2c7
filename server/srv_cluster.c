/*
 * srv_cluster: etcd's Cluster service (MemberAdd, MemberRemove, MemberUpdate,
 * MemberPromote) and Maintenance.MoveLeader.
 *
 * Add, remove and promote are raft conf changes run by the node thread
 * (srv_node_member: etcd's checks, then the change); update is an ordinary
 * proposal (etcd does not change raft's configuration for it). Every reply is
 * built from the member set as applied on this member once the change is
 * applied here, as etcd answers. A promote needs the leader's view of the
 * learner's progress: a follower forwards it to the leader (srv_cluster_forward)
 * and relays the answer.
 */
#include "server/srv_cluster.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "etcdcompat/ec_errors.h"
#include "etcdcompat/ec_member.h"
#include "server/srv_auth.h"
#include "server/srv_handlers.h"
#include "server/srv_peer.h"

/* A membership call in flight. */
typedef struct pending_member {
	srv_call *call;
	srv_member_op op;
	Etcdserverpb__Member m; /* the member the change is about (strings borrowed) */
} pending_member;

/* Reply to a membership call from the member set @set after the change. */
static void reply_members(srv_call *call, srv_member_op op, const Etcdserverpb__Member *m,
			  Metastore__MemberSet *set)
{
	srv_app *app = srv_call_app(call);
	Etcdserverpb__ResponseHeader hdr = ETCDSERVERPB__RESPONSE_HEADER__INIT;
	srv_fill_header(app, &hdr, false);
	switch (op) {
	case SRV_MEMBER_ADD: {
		Etcdserverpb__MemberAddResponse r = ETCDSERVERPB__MEMBER_ADD_RESPONSE__INIT;
		Etcdserverpb__Member added = *m;
		r.header = &hdr;
		r.member = &added;
		r.n_members = set->n_members;
		r.members = set->members;
		srv_call_reply(call, &r.base);
		break;
	}
	case SRV_MEMBER_REMOVE: {
		Etcdserverpb__MemberRemoveResponse r = ETCDSERVERPB__MEMBER_REMOVE_RESPONSE__INIT;
		r.header = &hdr;
		r.n_members = set->n_members;
		r.members = set->members;
		srv_call_reply(call, &r.base);
		break;
	}
	case SRV_MEMBER_PROMOTE:
	case SRV_MEMBER_PROMOTE_CHECKED: {
		Etcdserverpb__MemberPromoteResponse r = ETCDSERVERPB__MEMBER_PROMOTE_RESPONSE__INIT;
		r.header = &hdr;
		r.n_members = set->n_members;
		r.members = set->members;
		srv_call_reply(call, &r.base);
		break;
	}
	}
}

static void member_done(void *ctx, int err, void *resp)
{
	pending_member *pm = ctx;
	Metastore__MemberSet *set = resp;
	if (err == EC_NOT_LEADER && pm->op == SRV_MEMBER_PROMOTE &&
	    srv_cluster_forward_promote(pm->call, pm->m.id) == 0) {
		free(pm);
		return; /* the leader answers */
	}
	if (err != EC_OK)
		srv_call_fail(pm->call, err);
	else if (set == NULL)
		srv_call_fail(pm->call, EC_NOMEM);
	else
		reply_members(pm->call, pm->op, &pm->m, set);
	if (set)
		metastore__member_set__free_unpacked(set, NULL);
	free(pm);
}

static void member_start(srv_call *call, srv_member_op op, const Etcdserverpb__Member *m)
{
	srv_app *app = srv_call_app(call);
	int aerr = srv_auth_admin(call); /* etcd's checkMembershipOperationPermission */
	if (aerr != EC_OK) {
		srv_call_fail(call, aerr);
		return;
	}
	pending_member *pm = malloc(sizeof(*pm));
	if (pm == NULL) {
		srv_call_fail(call, EC_NOMEM);
		return;
	}
	pm->call = call;
	pm->op = op;
	pm->m = *m;
	int err = srv_node_member(app->node, op, m, member_done, pm);
	if (err != EC_OK) {
		free(pm);
		srv_call_fail(call, err);
	}
}

void srv_cluster_member_add(srv_call *call, const ProtobufCMessage *req)
{
	const Etcdserverpb__MemberAddRequest *r = (const Etcdserverpb__MemberAddRequest *)req;
	srv_app *app = srv_call_app(call);
	if (!ec_peer_urls_valid(r->peerurls, r->n_peerurls)) {
		srv_call_fail(call, EC_MEMBER_BAD_URLS);
		return;
	}
	Etcdserverpb__Member m = ETCDSERVERPB__MEMBER__INIT;
	/* etcd: a member added at runtime hashes its URLs, the token and the time. */
	m.id = ec_member_id((const char *const *)r->peerurls, r->n_peerurls, app->token,
			    (int64_t)time(NULL));
	m.peerurls = r->peerurls;
	m.n_peerurls = r->n_peerurls;
	m.islearner = r->islearner;
	member_start(call, SRV_MEMBER_ADD, &m);
}

void srv_cluster_member_remove(srv_call *call, const ProtobufCMessage *req)
{
	const Etcdserverpb__MemberRemoveRequest *r = (const Etcdserverpb__MemberRemoveRequest *)req;
	Etcdserverpb__Member m = ETCDSERVERPB__MEMBER__INIT;
	m.id = r->id;
	member_start(call, SRV_MEMBER_REMOVE, &m);
}

void srv_cluster_member_promote(srv_call *call, const ProtobufCMessage *req)
{
	const Etcdserverpb__MemberPromoteRequest *r = (const Etcdserverpb__MemberPromoteRequest *)req;
	Etcdserverpb__Member m = ETCDSERVERPB__MEMBER__INIT;
	m.id = r->id;
	member_start(call, SRV_MEMBER_PROMOTE, &m);
}

/* A promote forwarded to the leader for its readiness check. */
typedef struct pending_promote {
	srv_call *call;
	uint64_t id;
} pending_promote;

static void promote_checked(void *ctx, int err, const uint8_t *out, size_t outlen)
{
	pending_promote *pp = ctx;
	if (err == 0) {
		Metastore__ForwardReply *fr = metastore__forward_reply__unpack(NULL, outlen, out);
		err = fr ? fr->err : EC_INTERNAL;
		if (fr)
			metastore__forward_reply__free_unpacked(fr, NULL);
	} else {
		err = err > 0 ? err : EC_NO_LEADER;
	}
	if (err == EC_OK) {
		Etcdserverpb__Member m = ETCDSERVERPB__MEMBER__INIT;
		m.id = pp->id;
		member_start(pp->call, SRV_MEMBER_PROMOTE_CHECKED, &m);
	} else {
		srv_call_fail(pp->call, err);
	}
	free(pp);
}

int srv_cluster_forward_promote(srv_call *call, uint64_t id)
{
	srv_app *app = srv_call_app(call);
	srv_node_status st;
	srv_node_get_status(app->node, &st);
	if (app->peer == NULL || st.lead == 0 || st.lead == app->member_id)
		return -1;
	pending_promote *pp = malloc(sizeof(*pp));
	if (pp == NULL)
		return -1;
	pp->call = call;
	pp->id = id;
	uint8_t b[8];
	for (int i = 0; i < 8; i++)
		b[i] = (uint8_t)(id >> (56 - 8 * i));
	if (srv_peer_forward(app->peer, st.lead, SRV_FWD_PROMOTE, b, 8, 5000, promote_checked, pp) != 0) {
		free(pp);
		return -1;
	}
	return 0;
}

/* MemberUpdate: an ordinary proposal; the reply lists the members after it. */
typedef struct pending_update {
	srv_call *call;
	Metastore__InternalRequest ir;
	Metastore__MemberUpdate mu;
} pending_update;

static void update_done(void *ctx, int err, void *resp)
{
	pending_update *pu = ctx;
	Metastore__MemberSet *set = resp;
	if (err != EC_OK || set == NULL) {
		srv_call_fail(pu->call, err != EC_OK ? err : EC_NOMEM);
	} else {
		srv_app *app = srv_call_app(pu->call);
		Etcdserverpb__ResponseHeader hdr = ETCDSERVERPB__RESPONSE_HEADER__INIT;
		srv_fill_header(app, &hdr, false);
		Etcdserverpb__MemberUpdateResponse r = ETCDSERVERPB__MEMBER_UPDATE_RESPONSE__INIT;
		r.header = &hdr;
		r.n_members = set->n_members;
		r.members = set->members;
		srv_call_reply(pu->call, &r.base);
	}
	if (set)
		metastore__member_set__free_unpacked(set, NULL);
	free(pu);
}

void srv_cluster_member_update(srv_call *call, const ProtobufCMessage *req)
{
	const Etcdserverpb__MemberUpdateRequest *r = (const Etcdserverpb__MemberUpdateRequest *)req;
	srv_app *app = srv_call_app(call);
	int err = srv_auth_admin(call);
	if (err == EC_OK)
		err = ec_cluster_check_update(app->cluster, r->id, r->peerurls, r->n_peerurls);
	if (err != EC_OK) {
		srv_call_fail(call, err);
		return;
	}
	pending_update *pu = malloc(sizeof(*pu));
	if (pu == NULL) {
		srv_call_fail(call, EC_NOMEM);
		return;
	}
	Metastore__InternalRequest ir = METASTORE__INTERNAL_REQUEST__INIT;
	Metastore__MemberUpdate mu = METASTORE__MEMBER_UPDATE__INIT;
	pu->call = call;
	pu->ir = ir;
	pu->mu = mu;
	pu->mu.member_id = r->id;
	pu->mu.peer_urls = r->peerurls;
	pu->mu.n_peer_urls = r->n_peerurls;
	pu->ir.request_case = METASTORE__INTERNAL_REQUEST__REQUEST_MEMBER_UPDATE;
	pu->ir.member_update = &pu->mu;
	err = srv_node_propose(app->node, &pu->ir, update_done, pu);
	if (err != EC_OK) {
		free(pu);
		srv_call_fail(call, err);
	}
}

/* MoveLeader */
static void transfer_done(void *ctx, int err, void *resp)
{
	srv_call *call = ctx;
	(void)resp;
	if (err != EC_OK) {
		srv_call_fail(call, err);
		return;
	}
	Etcdserverpb__ResponseHeader hdr = ETCDSERVERPB__RESPONSE_HEADER__INIT;
	srv_fill_header(srv_call_app(call), &hdr, true);
	Etcdserverpb__MoveLeaderResponse r = ETCDSERVERPB__MOVE_LEADER_RESPONSE__INIT;
	r.header = &hdr;
	srv_call_reply(call, &r.base);
}

void srv_maint_move_leader(srv_call *call, const ProtobufCMessage *req)
{
	const Etcdserverpb__MoveLeaderRequest *r = (const Etcdserverpb__MoveLeaderRequest *)req;
	srv_app *app = srv_call_app(call);
	int err = srv_node_transfer(app->node, r->targetid, transfer_done, call);
	if (err != EC_OK)
		srv_call_fail(call, err);
}
