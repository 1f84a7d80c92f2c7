/*
 * srv_lease: the Lease service handlers and the expiry thread (srv_lease.h).
 *
 * Grant/Revoke: wrap the decoded request in an InternalRequest and propose it;
 * the reply leaves from the node thread with apply's response, exactly as a
 * Put. KeepAlive: one bidi stream per client lease keeper; each request renews
 * in memory and is answered at once with ID + TTL (TTL 0 for an unknown or
 * expired lease, as etcd's v3rpc layer turns ErrLeaseNotFound into TTL 0).
 */
#include "server/srv_lease.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <time.h>

#include "etcdcompat/ec_errors.h"
#include "server/srv_app.h"
#include "server/srv_handlers.h"
#include "server/srv_peer.h"

#define EXPIRY_TICK_MS 100
#define EXPIRY_BATCH   256

int64_t srv_lease_now_ms(void *arg)
{
	(void)arg;
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- Grant / Revoke through the log ------------------------------------- */

void srv_lease_grant(srv_call *call, const ProtobufCMessage *req)
{
	/* etcd checks nothing before proposing; apply answers too-large/exists.
	 * ID 0 is resolved by apply from the entry's request id. */
	srv_propose_write(call, EC_OK, METASTORE__INTERNAL_REQUEST__REQUEST_LEASE_GRANT,
	                  (ProtobufCMessage *)req);
}

void srv_lease_revoke(srv_call *call, const ProtobufCMessage *req)
{
	srv_propose_write(call, EC_OK, METASTORE__INTERNAL_REQUEST__REQUEST_LEASE_REVOKE,
	                  (ProtobufCMessage *)req);
}

/* ---- reads ---------------------------------------------------------------- */

/* A TimeToLive a follower forwarded to the leader (only it renews leases, so
 * only it knows the remaining TTL, as etcd's followers ask theirs). */
static void ttl_forwarded(void *ctx, int err, const uint8_t *out, size_t outlen)
{
	srv_call *call = ctx;
	Metastore__ForwardReply *fr =
		err == 0 ? metastore__forward_reply__unpack(NULL, outlen, out) : NULL;
	Etcdserverpb__LeaseTimeToLiveResponse *resp = NULL;
	if (fr == NULL) {
		srv_call_fail(call, EC_TIMEOUT); /* the leader could not be asked */
	} else if (fr->err != EC_OK) {
		srv_call_fail(call, fr->err);
	} else if ((resp = etcdserverpb__lease_time_to_live_response__unpack(NULL, fr->data.len,
									       fr->data.data)) == NULL) {
		srv_call_fail(call, EC_INTERNAL);
	} else {
		if (resp->header)
			srv_fill_header(srv_call_app(call), resp->header, true);
		srv_call_reply(call, &resp->base);
		etcdserverpb__lease_time_to_live_response__free_unpacked(resp, NULL);
	}
	if (fr)
		metastore__forward_reply__free_unpacked(fr, NULL);
}

/* Forward @req to the leader when this member does not lead; true when the
 * reply will come from there. */
static bool ttl_forward(srv_call *call, const ProtobufCMessage *req)
{
	srv_app *app = srv_call_app(call);
	srv_node_status ns;
	srv_node_get_status(app->node, &ns);
	if (ns.is_leader || ns.lead == 0 || app->peer == NULL)
		return false;
	size_t len = protobuf_c_message_get_packed_size(req);
	uint8_t *buf = malloc(len ? len : 1);
	if (buf == NULL)
		return false;
	protobuf_c_message_pack(req, buf);
	int rc = srv_peer_forward(app->peer, ns.lead, SRV_FWD_TIMETOLIVE, buf, len, 5000,
				  ttl_forwarded, call);
	free(buf);
	return rc == 0;
}

void srv_lease_time_to_live(srv_call *call, const ProtobufCMessage *req)
{
	if (ttl_forward(call, req))
		return;
	srv_app *app = srv_call_app(call);
	ec_hdr hdr = srv_node_hdr(app->node);
	Etcdserverpb__LeaseTimeToLiveResponse *resp = NULL;
	int err = ec_lessor_time_to_live(
	        app->lessor, (const Etcdserverpb__LeaseTimeToLiveRequest *)req, &hdr, &resp);
	srv_finish(call, err, resp);
}

void srv_lease_leases(srv_call *call, const ProtobufCMessage *req)
{
	(void)req;
	srv_app *app = srv_call_app(call);
	ec_hdr hdr = srv_node_hdr(app->node);
	Etcdserverpb__LeaseLeasesResponse *resp = NULL;
	int err = ec_lessor_leases(app->lessor, &hdr, &resp);
	srv_finish(call, err, resp);
}

/* ---- KeepAlive stream ------------------------------------------------------ */

/* Send one keep-alive answer: @ttl 0 for an unknown or expired lease. */
static void ka_answer(srv_stream *st, int64_t id, int64_t ttl)
{
	srv_app *app = srv_stream_app(st);
	Etcdserverpb__ResponseHeader hdr = ETCDSERVERPB__RESPONSE_HEADER__INIT;
	srv_fill_header(app, &hdr, true);
	Etcdserverpb__LeaseKeepAliveResponse resp = ETCDSERVERPB__LEASE_KEEP_ALIVE_RESPONSE__INIT;
	resp.header = &hdr;
	resp.id = id;
	resp.ttl = ttl;
	srv_stream_send(st, &resp.base);
}

/*
 * One keep-alive stream's state. etcd's server loop renews (forwarding to the
 * leader, and waiting) before it reads the next request, so every request
 * sent before a half-close is answered before the stream ends with OK. Here
 * forwards are asynchronous: the half-close finishes the stream only once no
 * forward is outstanding, and otherwise the last forward's answer does.
 * Freed with its last reference (the stream's, dropped in on_close, and one
 * per outstanding forward).
 */
typedef struct ka_state {
	atomic_int refs;
	atomic_int pending;      /* forwards not yet answered */
	atomic_bool half_closed; /* the client sent its last request */
	atomic_bool finished;    /* srv_stream_finish called */
} ka_state;

static void ka_state_unref(ka_state *ks)
{
	if (atomic_fetch_sub(&ks->refs, 1) == 1)
		free(ks);
}

/* Finish with OK once the client half-closed and nothing is outstanding;
 * whichever side sees both first does it, once. */
static void ka_maybe_finish(srv_stream *st, ka_state *ks)
{
	if (atomic_load(&ks->half_closed) && atomic_load(&ks->pending) == 0 &&
	    !atomic_exchange(&ks->finished, true))
		srv_stream_finish(st, EC_OK);
}

/* A keep-alive a follower forwarded to the leader (only the leader renews). */
typedef struct ka_fwd {
	srv_stream *st;
	ka_state *ks;
	int64_t id;
} ka_fwd;

/*
 * The leader's answer: its TTL, or TTL 0 when it does not know the lease. When
 * the leader could not be asked (it died, or leadership moved), nothing is
 * answered: the client sends its next keep-alive within a third of the TTL and
 * that one goes to the new leader, which gave every lease a fresh TTL when it
 * took over; answering TTL 0 would make the client drop a live lease.
 */
static void ka_forwarded(void *ctx, int err, const uint8_t *out, size_t outlen)
{
	ka_fwd *f = ctx;
	Metastore__ForwardReply *fr =
		err == 0 ? metastore__forward_reply__unpack(NULL, outlen, out) : NULL;
	if (fr && fr->err == 0 && fr->data.len == 8) {
		uint64_t v = 0;
		for (int i = 0; i < 8; i++)
			v = v << 8 | fr->data.data[i];
		ka_answer(f->st, f->id, (int64_t)v);
	} else if (fr && fr->err == EC_LEASE_NOT_FOUND) {
		ka_answer(f->st, f->id, 0);
	}
	if (fr)
		metastore__forward_reply__free_unpacked(fr, NULL);
	atomic_fetch_sub(&f->ks->pending, 1);
	ka_maybe_finish(f->st, f->ks);
	ka_state_unref(f->ks);
	srv_stream_unref(f->st);
	free(f);
}

/* Forward a keep-alive to the leader when this member does not lead; returns
 * true when the answer will come from there. */
static bool ka_forward(srv_stream *st, ka_state *ks, int64_t id)
{
	srv_app *app = srv_stream_app(st);
	srv_node_status ns;
	srv_node_get_status(app->node, &ns);
	if (ns.is_leader || ns.lead == 0 || app->peer == NULL)
		return false;
	ka_fwd *f = malloc(sizeof(*f));
	if (f == NULL)
		return false;
	f->st = st;
	f->ks = ks;
	f->id = id;
	uint8_t b[8];
	for (int i = 0; i < 8; i++)
		b[i] = (uint8_t)((uint64_t)id >> (56 - 8 * i));
	srv_stream_ref(st);
	atomic_fetch_add(&ks->refs, 1);
	atomic_fetch_add(&ks->pending, 1);
	if (srv_peer_forward(app->peer, ns.lead, SRV_FWD_KEEPALIVE, b, 8, 5000, ka_forwarded, f) != 0) {
		atomic_fetch_sub(&ks->pending, 1);
		ka_state_unref(ks);
		srv_stream_unref(st);
		free(f);
		return false;
	}
	return true;
}

static void ka_recv(srv_stream *st, void *ctx, const ProtobufCMessage *msg)
{
	ka_state *ks = ctx;
	if (msg == NULL) {
		/* client half-closed: etcd's Recv gets io.EOF and ends with OK,
		 * after the answers to what came before */
		atomic_store(&ks->half_closed, true);
		ka_maybe_finish(st, ks);
		return;
	}
	const Etcdserverpb__LeaseKeepAliveRequest *r =
	        (const Etcdserverpb__LeaseKeepAliveRequest *)msg;
	srv_app *app = srv_stream_app(st);
	if (ka_forward(st, ks, r->id))
		return;
	int64_t ttl = 0;
	if (ec_lessor_renew(app->lessor, r->id, &ttl) != EC_OK)
		ttl = 0;
	ka_answer(st, r->id, ttl);
}

static void ka_close(srv_stream *st, void *ctx, bool cancelled)
{
	(void)cancelled;
	ka_state_unref(ctx);
	srv_stream_unref(st); /* the handler's reference */
}

void srv_lease_keep_alive(srv_stream *st, const ProtobufCMessage *req)
{
	(void)req;
	if (srv_is_learner(srv_stream_app(st))) {
		srv_stream_finish(st, EC_NOT_SUPPORTED_FOR_LEARNER);
		srv_stream_unref(st);
		return;
	}
	ka_state *ks = calloc(1, sizeof(*ks));
	if (ks == NULL) {
		srv_stream_finish(st, EC_NOMEM);
		srv_stream_unref(st);
		return;
	}
	atomic_init(&ks->refs, 1);
	srv_stream_ops ops = {.on_recv = ka_recv, .on_close = ka_close};
	srv_stream_set_ops(st, &ops, ks);
}

/* ---- expiry ---------------------------------------------------------------- */

struct srv_lease {
	ec_lessor *les;
	srv_node *node;
	atomic_bool leader; /* only the leader expires leases */
	pthread_t thread;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	bool stop;
};

typedef struct expiry_revoke {
	Metastore__InternalRequest ir;
	Etcdserverpb__LeaseRevokeRequest rv;
} expiry_revoke;

static void expiry_done(void *ctx, int err, void *resp)
{
	/* EC_LEASE_NOT_FOUND: revoked meanwhile by a client; nothing to do. A lease
	 * still present after a failure is handed out again after the retry time. */
	(void)err;
	ec_msg_free(resp);
	free(ctx);
}

static void propose_expired(srv_lease *sl)
{
	int64_t ids[EXPIRY_BATCH];
	size_t n;
	if (!atomic_load(&sl->leader))
		return;
	do {
		n = ec_lessor_expired(sl->les, ids, EXPIRY_BATCH);
		for (size_t i = 0; i < n; i++) {
			expiry_revoke *e = malloc(sizeof(*e));
			if (e == NULL)
				return; /* retried after EC_LEASE_REVOKE_RETRY_MS */
			Metastore__InternalRequest ir = METASTORE__INTERNAL_REQUEST__INIT;
			Etcdserverpb__LeaseRevokeRequest rv =
			        ETCDSERVERPB__LEASE_REVOKE_REQUEST__INIT;
			e->ir = ir;
			e->rv = rv;
			e->rv.id = ids[i];
			e->ir.request_case = METASTORE__INTERNAL_REQUEST__REQUEST_LEASE_REVOKE;
			e->ir.lease_revoke = &e->rv;
			if (srv_node_propose(sl->node, &e->ir, expiry_done, e) != EC_OK)
				free(e);
		}
	} while (n == EXPIRY_BATCH);
}

static void *expiry_main(void *arg)
{
	pthread_setname_np(pthread_self(), "ms-lease");
	srv_lease *sl = arg;
	pthread_mutex_lock(&sl->mu);
	while (!sl->stop) {
		pthread_mutex_unlock(&sl->mu);
		propose_expired(sl);
		int64_t now = srv_lease_now_ms(NULL);
		int64_t wait = ec_lessor_next_deadline(sl->les) - now;
		if (wait > EXPIRY_TICK_MS)
			wait = EXPIRY_TICK_MS;
		if (wait < 5)
			wait = 5;
		struct timespec ts;
		clock_gettime(CLOCK_MONOTONIC, &ts);
		ts.tv_sec += wait / 1000;
		ts.tv_nsec += (wait % 1000) * 1000000;
		if (ts.tv_nsec >= 1000000000) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000;
		}
		pthread_mutex_lock(&sl->mu);
		if (!sl->stop)
			pthread_cond_timedwait(&sl->cv, &sl->mu, &ts);
	}
	pthread_mutex_unlock(&sl->mu);
	return NULL;
}

int srv_lease_start(ec_lessor *les, srv_node *node, srv_lease **out)
{
	*out = NULL;
	srv_lease *sl = calloc(1, sizeof(*sl));
	if (sl == NULL)
		return -1;
	sl->les = les;
	sl->node = node;
	atomic_init(&sl->leader, false);
	pthread_mutex_init(&sl->mu, NULL);
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&sl->cv, &ca);
	pthread_condattr_destroy(&ca);
	if (pthread_create(&sl->thread, NULL, expiry_main, sl) != 0) {
		pthread_cond_destroy(&sl->cv);
		pthread_mutex_destroy(&sl->mu);
		free(sl);
		return -1;
	}
	*out = sl;
	return 0;
}

void srv_lease_set_leader(srv_lease *sl, bool leader)
{
	if (sl == NULL)
		return;
	if (leader && !atomic_load(&sl->leader))
		ec_lessor_promote(sl->les);
	atomic_store(&sl->leader, leader);
	pthread_mutex_lock(&sl->mu);
	pthread_cond_signal(&sl->cv);
	pthread_mutex_unlock(&sl->mu);
}

void srv_lease_stop(srv_lease *sl)
{
	if (sl == NULL)
		return;
	pthread_mutex_lock(&sl->mu);
	sl->stop = true;
	pthread_cond_signal(&sl->cv);
	pthread_mutex_unlock(&sl->mu);
	pthread_join(sl->thread, NULL);
	pthread_cond_destroy(&sl->cv);
	pthread_mutex_destroy(&sl->mu);
	free(sl);
}
