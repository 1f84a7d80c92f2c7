/*
 * srv_maint: Status, Defragment, Alarm, Hash, HashKV, the backend quota and the
 * corruption checks (see srv_maint.h).
 *
 * Background proposals (an alarm this member raises, a compaction the
 * auto-compactor asks for) are "bg_prop" objects that own their request: the
 * node loop keeps a pointer to a proposal's request until it is applied, so a
 * waiter that gives up (shutdown) drops its reference and the node's callback
 * frees the object.
 *
 * Peer hashes: one HashKV forward to every other member at once; each member
 * hashes on a detached thread (srv_maint_serve_hashkv), not on the peer port's
 * thread that also receives raft messages, so heartbeats never wait behind a
 * whole-store pass. The caller waits for every callback (the transport runs
 * each exactly once, also on shutdown).
 *
 * Every detached worker (Defragment, Hash, HashKV, a peer's HashKV) is counted
 * in the srv_jobs of srv_maint: srv_maint_stop refuses new ones ("etcdserver:
 * server stopped") and waits for the running ones, so none outlives the node
 * or the store it reads.
 */
#include "server/srv_maint.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "etcdcompat/ec_alarm.h"
#include "etcdcompat/ec_errors.h"
#include "etcdcompat/ec_hash.h"
#include "ms_version.h"
#include "server/srv_auth.h"
#include "server/srv_handlers.h"
#include "server/srv_jobs.h"
#include "server/srv_log.h"
#include "server/srv_peer.h"
#include "storage/st_mvcc.h"

/* The backend size is re-read at most this often on the write path. */
#define SIZE_CACHE_MS 20

struct srv_maint {
	srv_app *app;
	int64_t quota;              /* effective bytes, -1: none */
	atomic_bool raising[3];     /* an ACTIVATE of that type is in flight */
	_Atomic int64_t size;       /* cached st_db_size total */
	_Atomic uint64_t size_at;   /* when it was read (monotonic ms), 0: never */
	pthread_mutex_t mu;         /* guards stop (the check thread's sleep) */
	pthread_cond_t cv;
	atomic_bool stop;
	pthread_t thread;
	bool running;
	srv_jobs jobs;              /* the detached workers */
};

/* go-humanize's Bytes (SI units), as etcd logs quota sizes: "2.1 GB". */
static void humanize_bytes(int64_t v, char *buf, size_t cap)
{
	static const char *const units[] = {"B", "kB", "MB", "GB", "TB", "PB", "EB"};
	if (v < 10) {
		snprintf(buf, cap, "%" PRId64 " B", v);
		return;
	}
	double x = (double)v;
	int u = 0;
	while (x >= 1000 && u < 6) {
		x /= 1000;
		u++;
	}
	if (x < 10)
		snprintf(buf, cap, "%.1f %s", x, units[u]);
	else
		snprintf(buf, cap, "%.0f %s", x, units[u]);
}

int srv_maint_new(srv_app *app)
{
	srv_maint *m = calloc(1, sizeof(*m));
	if (m == NULL)
		return -1;
	m->app = app;
	int64_t flag = app->cfg ? app->cfg->quota_backend_bytes : 0;
	m->quota = ec_quota_bytes(flag);
	for (int i = 0; i < 3; i++)
		atomic_init(&m->raising[i], false);
	atomic_init(&m->size, 0);
	atomic_init(&m->size_at, 0);
	atomic_init(&m->stop, false);
	pthread_mutex_init(&m->mu, NULL);
	pthread_cond_init(&m->cv, NULL);
	srv_jobs_init(&m->jobs, 0);
	app->maint = m;
	char hs[32];
	if (m->quota < 0) {
		srv_log_info("disabled backend quota", SRV_LF_STR("quota-name", "v3-applier"),
			     SRV_LF_INT("quota-size-bytes", flag));
	} else if (flag == 0) {
		humanize_bytes(m->quota, hs, sizeof hs);
		srv_log_info("enabled backend quota with default value",
			     SRV_LF_STR("quota-name", "v3-applier"),
			     SRV_LF_INT("quota-size-bytes", m->quota), SRV_LF_STR("quota-size", hs));
	} else {
		humanize_bytes(m->quota, hs, sizeof hs);
		if (m->quota > EC_QUOTA_MAX_BYTES) {
			char ms[32];
			humanize_bytes(EC_QUOTA_MAX_BYTES, ms, sizeof ms);
			srv_log_warn("quota exceeds the maximum value",
				     SRV_LF_STR("quota-name", "v3-applier"),
				     SRV_LF_INT("quota-size-bytes", m->quota),
				     SRV_LF_STR("quota-size", hs),
				     SRV_LF_INT("quota-maximum-size-bytes", EC_QUOTA_MAX_BYTES),
				     SRV_LF_STR("quota-maximum-size", ms));
		}
		srv_log_info("enabled backend quota", SRV_LF_STR("quota-name", "v3-applier"),
			     SRV_LF_INT("quota-size-bytes", m->quota), SRV_LF_STR("quota-size", hs));
	}
	return 0;
}

/* ---- background proposals ---------------------------------------------- */

typedef struct bg_prop {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int refs;          /* the waiter (if any) and the node's callback */
	bool done;
	int err;
	void *resp;
	srv_maint *m;      /* for the alarm in-flight flag; NULL for others */
	int alarm_type;
	Metastore__InternalRequest ir;
	union {
		Etcdserverpb__CompactionRequest compact;
		Etcdserverpb__AlarmRequest alarm;
	} u;
} bg_prop;

static bg_prop *bg_new(int refs)
{
	bg_prop *p = calloc(1, sizeof(*p));
	if (p == NULL)
		return NULL;
	pthread_mutex_init(&p->mu, NULL);
	pthread_cond_init(&p->cv, NULL);
	p->refs = refs;
	Metastore__InternalRequest init = METASTORE__INTERNAL_REQUEST__INIT;
	p->ir = init;
	return p;
}

static void bg_unref(bg_prop *p)
{
	pthread_mutex_lock(&p->mu);
	bool last = --p->refs == 0;
	pthread_mutex_unlock(&p->mu);
	if (!last)
		return;
	ec_msg_free(p->resp);
	pthread_mutex_destroy(&p->mu);
	pthread_cond_destroy(&p->cv);
	free(p);
}

static void bg_done(void *ctx, int err, void *resp)
{
	bg_prop *p = ctx;
	if (p->m != NULL) {
		atomic_store(&p->m->raising[p->alarm_type], false);
		if (err != EC_OK)
			srv_log_warn("failed to raise alarm",
				     SRV_LF_STR("alarm", ec_alarm_type_name(p->alarm_type)),
				     SRV_LF_ERR(ec_strerror(err)));
	}
	pthread_mutex_lock(&p->mu);
	p->done = true;
	p->err = err;
	p->resp = resp;
	pthread_cond_broadcast(&p->cv);
	pthread_mutex_unlock(&p->mu);
	bg_unref(p);
}

/* Propose @p's request; with @wait, block until applied or *@stop. */
static int bg_propose(srv_app *app, bg_prop *p, bool wait, const atomic_bool *stop,
		      ProtobufCMessage **resp)
{
	if (app->node == NULL) {
		bg_unref(p);
		if (wait)
			bg_unref(p);
		return EC_STOPPED;
	}
	int err = srv_node_propose(app->node, &p->ir, bg_done, p);
	if (err != EC_OK) {
		if (p->m != NULL)
			atomic_store(&p->m->raising[p->alarm_type], false);
		bg_unref(p); /* the callback's reference: it will not run */
		if (wait)
			bg_unref(p);
		return err;
	}
	if (!wait)
		return EC_OK;
	pthread_mutex_lock(&p->mu);
	while (!p->done && !(stop && atomic_load(stop))) {
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_nsec += 100 * 1000000L;
		if (ts.tv_nsec >= 1000000000L) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000L;
		}
		pthread_cond_timedwait(&p->cv, &p->mu, &ts);
	}
	err = p->done ? p->err : EC_STOPPED;
	if (p->done && resp != NULL) {
		*resp = p->resp;
		p->resp = NULL;
	}
	pthread_mutex_unlock(&p->mu);
	bg_unref(p);
	return err;
}

/* Whether (@member, @type) is in the applied alarm set. */
static bool alarm_is_set(srv_app *app, uint64_t member, int type)
{
	if (!ec_alarms_active(app->alarms, type))
		return false;
	Etcdserverpb__AlarmMember *v = NULL;
	size_t n = 0;
	bool found = false;
	if (ec_alarms_list(app->alarms, type, &v, &n) == 0)
		for (size_t i = 0; i < n; i++)
			found |= v[i].memberid == member;
	free(v);
	return found;
}

void srv_maint_raise(srv_app *app, uint64_t member, int type)
{
	srv_maint *m = app->maint;
	if (m == NULL || type <= 0 || type > 2 || alarm_is_set(app, member, type))
		return;
	bool expect = false;
	if (!atomic_compare_exchange_strong(&m->raising[type], &expect, true))
		return;
	bg_prop *p = bg_new(1);
	if (p == NULL) {
		atomic_store(&m->raising[type], false);
		return;
	}
	p->m = m;
	p->alarm_type = type;
	etcdserverpb__alarm_request__init(&p->u.alarm);
	p->u.alarm.action = ETCDSERVERPB__ALARM_REQUEST__ALARM_ACTION__ACTIVATE;
	p->u.alarm.memberid = member;
	p->u.alarm.alarm = (Etcdserverpb__AlarmType)type;
	p->ir.request_case = METASTORE__INTERNAL_REQUEST__REQUEST_ALARM;
	p->ir.alarm = &p->u.alarm;
	bg_propose(app, p, false, NULL, NULL);
}

int srv_maint_compact(srv_app *app, int64_t rev, const atomic_bool *stop)
{
	bg_prop *p = bg_new(2);
	if (p == NULL)
		return EC_NOMEM;
	etcdserverpb__compaction_request__init(&p->u.compact);
	p->u.compact.revision = rev;
	p->ir.request_case = METASTORE__INTERNAL_REQUEST__REQUEST_COMPACTION;
	p->ir.compaction = &p->u.compact;
	ProtobufCMessage *resp = NULL;
	int err = bg_propose(app, p, true, stop, &resp);
	ec_msg_free(resp);
	return err;
}

/* ---- quota -------------------------------------------------------------- */

/* The backend size, re-read when the cached value is older than SIZE_CACHE_MS. */
static int64_t backend_size(srv_maint *m)
{
	uint64_t now = (uint64_t)srv_mono_ms();
	uint64_t at = atomic_load(&m->size_at);
	if (at != 0 && now - at < SIZE_CACHE_MS)
		return atomic_load(&m->size);
	int64_t total = 0;
	st_db_size(m->app->db, &total, NULL);
	atomic_store(&m->size, total);
	atomic_store(&m->size_at, now);
	return total;
}

int srv_maint_quota_check(srv_app *app, const Metastore__InternalRequest *ir)
{
	srv_maint *m = app->maint;
	if (m == NULL || m->quota < 0)
		return EC_OK;
	int64_t cost = ec_quota_cost(ir);
	if (cost == 0 || ec_quota_fits(m->quota, backend_size(m), cost))
		return EC_OK;
	srv_maint_raise(app, app->member_id, ETCDSERVERPB__ALARM_TYPE__NOSPACE);
	return EC_NO_SPACE;
}

bool srv_maint_over_quota(void *ctx, const Metastore__InternalRequest *req)
{
	srv_app *app = ctx;
	srv_maint *m = app->maint;
	if (m == NULL || m->quota < 0)
		return false;
	int64_t cost = ec_quota_cost(req);
	if (cost == 0 || ec_quota_fits(m->quota, backend_size(m), cost))
		return false;
	if (!ec_alarms_active(app->alarms, ETCDSERVERPB__ALARM_TYPE__NOSPACE)) {
		char hs[32];
		humanize_bytes(m->quota, hs, sizeof hs);
		srv_log_warn("message exceeded backend quota; raising alarm",
			     SRV_LF_INT("quota-size-bytes", m->quota), SRV_LF_STR("quota-size", hs),
			     SRV_LF_ERR("etcdserver: no space"));
		srv_maint_raise(app, app->member_id, ETCDSERVERPB__ALARM_TYPE__NOSPACE);
	}
	return true;
}

/* ---- handlers ------------------------------------------------------------ */

/* Run @fn(@arg) on a counted detached worker of @app's srv_maint. Returns
 * EC_OK, or EC_STOPPED (srv_maint_stop has begun) or EC_NOMEM with nothing
 * started. */
static int run_detached(srv_app *app, void (*fn)(void *), void *arg)
{
	if (app->maint == NULL)
		return EC_STOPPED;
	int rc = srv_jobs_start(&app->maint->jobs, fn, arg);
	if (rc == SRV_JOBS_OK)
		return EC_OK;
	return rc == SRV_JOBS_ESTOPPED ? EC_STOPPED : EC_NOMEM;
}

void srv_maint_status(srv_call *call, const ProtobufCMessage *req)
{
	(void)req;
	srv_app *app = srv_call_app(call);
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

	/* etcd: "no leader" first, then every alarm as its String() */
	Etcdserverpb__AlarmMember *alarms = NULL;
	size_t na = 0;
	if (app->alarms != NULL)
		ec_alarms_list(app->alarms, ETCDSERVERPB__ALARM_TYPE__NONE, &alarms, &na);
	char *errs[1 + 64];
	char bufs[64][64];
	size_t ne = 0;
	if (st.lead == 0)
		errs[ne++] = (char *)ec_strerror(EC_NO_LEADER);
	for (size_t i = 0; i < na && i < 64; i++)
		errs[ne++] = ec_alarm_string(&alarms[i], bufs[i], sizeof bufs[i]);
	resp.errors = errs;
	resp.n_errors = ne;
	srv_call_reply(call, &resp.base);
	free(alarms);
}

/* Defragment: a full RocksDB compaction (st_db_compact_files), which can take
 * seconds, on a detached thread of its own. etcd answers with no header. */
static void defrag_main(void *arg)
{
	srv_call *call = arg;
	srv_app *app = srv_call_app(call);
	srv_log_info("starting defragment");
	if (st_db_compact_files(app->db) != 0) {
		srv_log_warn("failed to defragment", SRV_LF_ERR("I/O error"));
		srv_call_fail(call, EC_INTERNAL);
		return;
	}
	srv_log_info("finished defragment");
	if (app->maint)
		atomic_store(&app->maint->size_at, 0); /* the size moved: read it again */
	Etcdserverpb__DefragmentResponse resp = ETCDSERVERPB__DEFRAGMENT_RESPONSE__INIT;
	srv_call_reply(call, &resp.base);
}

/* The admin check of etcd's authMaintenanceServer, then @fn on a worker. */
static void maint_admin_detached(srv_call *call, void (*fn)(void *))
{
	int err = srv_auth_maint_admin(call);
	if (err == EC_OK)
		err = run_detached(srv_call_app(call), fn, call);
	if (err != EC_OK)
		srv_call_fail(call, err);
}

void srv_maint_defragment(srv_call *call, const ProtobufCMessage *req)
{
	(void)req;
	maint_admin_detached(call, defrag_main);
}

void srv_maint_alarm(srv_call *call, const ProtobufCMessage *req)
{
	/* etcd proposes every action, GET included (raftRequestOnce), and checks
	 * no permission for it beyond a valid token */
	srv_propose_write(call, EC_OK, METASTORE__INTERNAL_REQUEST__REQUEST_ALARM,
	                  (ProtobufCMessage *)req);
}

static void hash_main(void *arg)
{
	srv_call *call = arg;
	srv_app *app = srv_call_app(call);
	uint32_t h = 0;
	int64_t rev = 0;
	int err = ec_hash_all(app->db, &h, &rev);
	if (err != EC_OK) {
		srv_call_fail(call, err);
		return;
	}
	Etcdserverpb__ResponseHeader hdr = ETCDSERVERPB__RESPONSE_HEADER__INIT;
	srv_fill_header(app, &hdr, false);
	hdr.revision = rev;
	Etcdserverpb__HashResponse resp = ETCDSERVERPB__HASH_RESPONSE__INIT;
	resp.header = &hdr;
	resp.hash = h;
	srv_call_reply(call, &resp.base);
}

void srv_maint_hash(srv_call *call, const ProtobufCMessage *req)
{
	(void)req;
	maint_admin_detached(call, hash_main);
}

/* HashKV of @app at @rev into @resp/@hdr (header identity filled here). */
static int hash_kv(srv_app *app, int64_t rev, Etcdserverpb__HashKVResponse *resp,
		   Etcdserverpb__ResponseHeader *hdr)
{
	uint32_t h = 0;
	int64_t cur = 0, crev = 0;
	int err = ec_hash_kv(app->db, rev, &h, &cur, &crev);
	if (err != EC_OK)
		return err;
	Etcdserverpb__ResponseHeader hi = ETCDSERVERPB__RESPONSE_HEADER__INIT;
	*hdr = hi;
	if (app->node != NULL) {
		srv_fill_header(app, hdr, false);
	} else {
		hdr->cluster_id = app->cluster_id;
		hdr->member_id = app->member_id;
	}
	hdr->revision = cur;
	Etcdserverpb__HashKVResponse ri = ETCDSERVERPB__HASH_KVRESPONSE__INIT;
	*resp = ri;
	resp->header = hdr;
	resp->hash = h;
	resp->compact_revision = crev;
	return EC_OK;
}

typedef struct hash_job {
	srv_call *call;
	int64_t rev;
} hash_job;

static void hash_job_main(void *arg)
{
	hash_job *j = arg;
	srv_app *app = srv_call_app(j->call);
	Etcdserverpb__HashKVResponse resp;
	Etcdserverpb__ResponseHeader hdr;
	int err = hash_kv(app, j->rev, &resp, &hdr);
	if (err != EC_OK)
		srv_call_fail(j->call, err);
	else
		srv_call_reply(j->call, &resp.base);
	free(j);
}

void srv_maint_hash_kv(srv_call *call, const ProtobufCMessage *req)
{
	const Etcdserverpb__HashKVRequest *r = (const Etcdserverpb__HashKVRequest *)req;
	int err = srv_auth_maint_admin(call);
	hash_job *j = NULL;
	if (err == EC_OK && (j = malloc(sizeof(*j))) == NULL)
		err = EC_NOMEM;
	if (err == EC_OK) {
		j->call = call;
		j->rev = r->revision;
		if ((err = run_detached(srv_call_app(call), hash_job_main, j)) != EC_OK)
			free(j);
	}
	if (err != EC_OK)
		srv_call_fail(call, err);
}

/* ---- peers' hashes -------------------------------------------------------- */

/* HashKV of @app at @rev as a packed ForwardReply in *@out (malloc'd): 0 or
 * EC_NOMEM. */
static int hashkv_reply(srv_app *app, int64_t rev, uint8_t **out, size_t *outlen)
{
	Etcdserverpb__HashKVResponse resp;
	Etcdserverpb__ResponseHeader hdr;
	int err = hash_kv(app, rev, &resp, &hdr);
	uint8_t *data = NULL;
	size_t dlen = 0;
	if (err == EC_OK) {
		dlen = etcdserverpb__hash_kvresponse__get_packed_size(&resp);
		if ((data = malloc(dlen ? dlen : 1)) == NULL)
			return EC_NOMEM;
		etcdserverpb__hash_kvresponse__pack(&resp, data);
	}
	Metastore__ForwardReply fr = METASTORE__FORWARD_REPLY__INIT;
	fr.err = err;
	fr.data.data = data;
	fr.data.len = dlen;
	fr.cluster_id = app->cluster_id;
	*outlen = metastore__forward_reply__get_packed_size(&fr);
	*out = malloc(*outlen ? *outlen : 1);
	if (*out != NULL)
		metastore__forward_reply__pack(&fr, *out);
	free(data);
	return *out ? 0 : EC_NOMEM;
}

/* A peer's HashKV, hashed away from the peer port's threads. */
typedef struct peer_hash_job {
	srv_app *app;
	int64_t rev;
	srv_peer_reply *reply;
} peer_hash_job;

static void peer_hash_main(void *arg)
{
	peer_hash_job *j = arg;
	uint8_t *out = NULL;
	size_t outlen = 0;
	int rc = hashkv_reply(j->app, j->rev, &out, &outlen);
	srv_peer_forward_reply(j->reply, rc, out, outlen);
	free(j);
}

int srv_maint_serve_hashkv(srv_app *app, const uint8_t *in, size_t inlen, uint8_t **out,
                           size_t *outlen, srv_peer_reply *reply)
{
	Etcdserverpb__HashKVRequest *r = etcdserverpb__hash_kvrequest__unpack(NULL, inlen, in);
	if (r == NULL)
		return EC_BAD_REQUEST;
	int64_t rev = r->revision;
	etcdserverpb__hash_kvrequest__free_unpacked(r, NULL);
	peer_hash_job *j = reply != NULL ? malloc(sizeof(*j)) : NULL;
	if (j != NULL) {
		*j = (peer_hash_job){app, rev, reply};
		int err = run_detached(app, peer_hash_main, j);
		if (err == EC_OK)
			return SRV_PEER_LATER;
		free(j);
		if (err == EC_STOPPED)
			return err;
	}
	/* no thread: here, then, counted all the same */
	if (app->maint == NULL || srv_jobs_enter(&app->maint->jobs) != SRV_JOBS_OK)
		return EC_STOPPED;
	int rc = hashkv_reply(app, rev, out, outlen);
	srv_jobs_leave(&app->maint->jobs);
	return rc;
}

/* One peer's answer to a HashKV forward. */
typedef struct peer_hash {
	uint64_t id;
	char **urls;          /* its peer URLs (ec_cluster_get), for the log */
	size_t n_urls;
	int err;              /* an ec_err, or a negative SRV_PEER_E* */
	Etcdserverpb__HashKVResponse *resp;
	struct peer_round *round;
} peer_hash;

typedef struct peer_round {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	size_t pending;
} peer_round;

static void peer_hash_done(void *ctx, int err, const uint8_t *out, size_t outlen)
{
	peer_hash *ph = ctx;
	if (err == 0) {
		Metastore__ForwardReply *fr = metastore__forward_reply__unpack(NULL, outlen, out);
		if (fr == NULL) {
			err = EC_BAD_REQUEST;
		} else {
			err = fr->err;
			if (err == EC_OK) {
				ph->resp = etcdserverpb__hash_kvresponse__unpack(NULL, fr->data.len,
				                                                 fr->data.data);
				if (ph->resp == NULL)
					err = EC_BAD_REQUEST;
			}
			metastore__forward_reply__free_unpacked(fr, NULL);
		}
	}
	ph->err = err;
	peer_round *r = ph->round;
	pthread_mutex_lock(&r->mu);
	r->pending--;
	pthread_cond_broadcast(&r->cv);
	pthread_mutex_unlock(&r->mu);
}

static size_t strv_len(char **v)
{
	size_t n = 0;
	while (v && v[n])
		n++;
	return n;
}

static const char *peer_err_text(int err)
{
	return err >= 0 ? ec_strerror(err) : srv_peer_strerror(err);
}

/* Ask every other member for HashKV(@rev), all at once, and wait for every
 * answer (bounded by the request timeout). *@out: a malloc'd array of *@n
 * answers; free with peer_hashes_free. */
static int peer_hashes(srv_app *app, int64_t rev, peer_hash **out, size_t *n)
{
	*out = NULL;
	*n = 0;
	Metastore__MemberSet *set = ec_cluster_copy(app->cluster);
	if (set == NULL)
		return EC_NOMEM;
	peer_hash *v = calloc(set->n_members ? set->n_members : 1, sizeof(*v));
	if (v == NULL) {
		metastore__member_set__free_unpacked(set, NULL);
		return EC_NOMEM;
	}
	Etcdserverpb__HashKVRequest req = ETCDSERVERPB__HASH_KVREQUEST__INIT;
	req.revision = rev;
	uint8_t buf[16];
	size_t blen = etcdserverpb__hash_kvrequest__pack(&req, buf);
	peer_round round = {.pending = 0};
	pthread_mutex_init(&round.mu, NULL);
	pthread_cond_init(&round.cv, NULL);
	int timeout = (int)(5000 + 2 * (app->cfg ? app->cfg->election_timeout_ms : 1000));
	size_t k = 0;
	for (size_t i = 0; i < set->n_members; i++) {
		const Etcdserverpb__Member *mb = set->members[i];
		if (mb->id == app->member_id || mb->n_peerurls == 0)
			continue;
		peer_hash *ph = &v[k++];
		ph->id = mb->id;
		ph->round = &round;
		ec_cluster_get(app->cluster, mb->id, NULL, &ph->urls);
		ph->n_urls = strv_len(ph->urls);
		pthread_mutex_lock(&round.mu);
		round.pending++;
		pthread_mutex_unlock(&round.mu);
		int rc = app->peer ? srv_peer_forward(app->peer, mb->id, SRV_FWD_HASHKV, buf, blen,
		                                      timeout, peer_hash_done, ph)
		                   : SRV_PEER_ESTOPPED;
		if (rc != 0) {
			ph->err = rc;
			pthread_mutex_lock(&round.mu);
			round.pending--;
			pthread_mutex_unlock(&round.mu);
		}
	}
	pthread_mutex_lock(&round.mu);
	while (round.pending > 0)
		pthread_cond_wait(&round.cv, &round.mu);
	pthread_mutex_unlock(&round.mu);
	pthread_mutex_destroy(&round.mu);
	pthread_cond_destroy(&round.cv);
	metastore__member_set__free_unpacked(set, NULL);
	for (size_t i = 0; i < k; i++) {
		v[i].round = NULL;
		if (v[i].err != EC_OK)
			srv_log_warn("failed hash kv request", SRV_LF_ID("local-member-id", app->member_id),
				     SRV_LF_INT("requested-revision", rev),
				     SRV_LF_STR("remote-peer-endpoint", v[i].n_urls ? v[i].urls[0] : ""),
				     SRV_LF_ERR(peer_err_text(v[i].err)));
	}
	*out = v;
	*n = k;
	return EC_OK;
}

static void peer_hashes_free(peer_hash *v, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		ec_cluster_strv_free(v[i].urls);
		if (v[i].resp)
			etcdserverpb__hash_kvresponse__free_unpacked(v[i].resp, NULL);
	}
	free(v);
}

int srv_maint_initial_check(srv_app *app)
{
	if (app->cfg == NULL || !app->cfg->experimental_initial_corrupt_check)
		return 0;
	/* etcd checks a member that restarts only: one that never applied an entry
	 * of its own (a new or joining member) has nothing to compare yet */
	st_kv_state ks;
	st_kv_state_get(app->db, &ks);
	if (ks.applied <= 1)
		return 0;
	int64_t timeout = 5000 + 2 * app->cfg->election_timeout_ms;
	srv_log_info("starting initial corruption check", SRV_LF_ID("local-member-id", app->member_id),
		     SRV_LF_DUR_MS("timeout", timeout));
	uint32_t h = 0;
	int64_t rev = 0, crev = 0;
	int err = ec_hash_kv(app->db, 0, &h, &rev, &crev);
	if (err != EC_OK) {
		srv_logf(SRV_LOG_FATAL, "%" PRIx64 " failed to fetch hash (%s)", app->member_id,
			 ec_strerror(err));
		return -1;
	}
	peer_hash *v = NULL;
	size_t n = 0;
	if (peer_hashes(app, rev, &v, &n) != EC_OK)
		return -1;
	int mismatch = 0;
	for (size_t i = 0; i < n; i++) {
		peer_hash *p = &v[i];
		if (p->resp != NULL) {
			const Etcdserverpb__HashKVResponse *r = p->resp;
			if (r->hash == h)
				continue;
			const char *msg = crev == r->compact_revision
			                  ? "found different hash values from remote peer"
			                  : "found different compact revision values from remote peer";
			mismatch += crev == r->compact_revision;
			srv_log_warn(msg, SRV_LF_ID("local-member-id", app->member_id),
				     SRV_LF_INT("local-member-revision", rev),
				     SRV_LF_INT("local-member-compact-revision", crev),
				     SRV_LF_UINT("local-member-hash", h),
				     SRV_LF_ID("remote-peer-id", r->header ? r->header->member_id : p->id),
				     SRV_LF_STRS("remote-peer-endpoints", p->urls, p->n_urls),
				     SRV_LF_INT("remote-peer-revision", r->header ? r->header->revision : 0),
				     SRV_LF_INT("remote-peer-compact-revision", r->compact_revision),
				     SRV_LF_UINT("remote-peer-hash", r->hash));
		} else if (p->err == EC_FUTURE_REV || p->err == EC_COMPACTED) {
			srv_log_warn(p->err == EC_FUTURE_REV
			             ? "cannot fetch hash from slow remote peer"
			             : "cannot fetch hash from remote peer; local member is behind",
				     SRV_LF_ID("local-member-id", app->member_id),
				     SRV_LF_INT("local-member-revision", rev),
				     SRV_LF_INT("local-member-compact-revision", crev),
				     SRV_LF_UINT("local-member-hash", h),
				     SRV_LF_ID("remote-peer-id", p->id),
				     SRV_LF_STRS("remote-peer-endpoints", p->urls, p->n_urls),
				     SRV_LF_ERR(ec_strerror(p->err)));
		}
	}
	peer_hashes_free(v, n);
	if (mismatch > 0) {
		char msg[128];
		snprintf(msg, sizeof msg, "%" PRIx64 " found data inconsistency with peers",
			 app->member_id);
		srv_log_fatal("discovery failed", SRV_LF_ERR(msg));
		return -1;
	}
	srv_log_info("initial corruption checking passed; no corruption",
		     SRV_LF_ID("local-member-id", app->member_id));
	return 0;
}

/* ---- the periodic check (etcd's monitorKVHash / checkHashKV) ------------ */

typedef struct read_wait {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	bool done;
	int err;
} read_wait;

static void read_done(void *ctx, int err)
{
	read_wait *w = ctx;
	pthread_mutex_lock(&w->mu);
	w->done = true;
	w->err = err;
	pthread_cond_broadcast(&w->cv);
	pthread_mutex_unlock(&w->mu);
}

/* etcd's linearizableReadNotify: wait until this member's state is current. */
static int read_barrier(srv_app *app)
{
	read_wait w = {.done = false};
	pthread_mutex_init(&w.mu, NULL);
	pthread_cond_init(&w.cv, NULL);
	int err = srv_node_read(app->node, read_done, &w);
	if (err == EC_OK) {
		pthread_mutex_lock(&w.mu);
		while (!w.done)
			pthread_cond_wait(&w.cv, &w.mu);
		err = w.err;
		pthread_mutex_unlock(&w.mu);
	}
	pthread_mutex_destroy(&w.mu);
	pthread_cond_destroy(&w.cv);
	return err;
}

static int check_hash_kv(srv_app *app)
{
	uint32_t h = 0, h2 = 0;
	int64_t rev = 0, crev = 0, rev2 = 0, crev2 = 0;
	int err = ec_hash_kv(app->db, 0, &h, &rev, &crev);
	if (err != EC_OK)
		return err;
	peer_hash *v = NULL;
	size_t n = 0;
	if ((err = peer_hashes(app, rev, &v, &n)) != EC_OK)
		return err;
	if ((err = read_barrier(app)) != EC_OK ||
	    (err = ec_hash_kv(app->db, 0, &h2, &rev2, &crev2)) != EC_OK) {
		peer_hashes_free(v, n);
		return err;
	}
	bool mismatch = false;
	if (h2 != h && rev2 == rev && crev == crev2) {
		srv_log_warn("found hash mismatch", SRV_LF_INT("revision-1", rev),
			     SRV_LF_INT("compact-revision-1", crev), SRV_LF_UINT("hash-1", h),
			     SRV_LF_INT("revision-2", rev2), SRV_LF_INT("compact-revision-2", crev2),
			     SRV_LF_UINT("hash-2", h2));
		mismatch = true;
	}
	size_t checked = 0;
	for (size_t i = 0; i < n; i++) {
		const Etcdserverpb__HashKVResponse *r = v[i].resp;
		if (r == NULL)
			continue;
		checked++;
		int64_t prev = r->header ? r->header->revision : 0;
		if (prev > rev2) {
			srv_log_warn("revision from follower must be less than or equal to leader's",
				     SRV_LF_INT("leader-revision", rev2),
				     SRV_LF_INT("follower-revision", prev),
				     SRV_LF_ID("follower-peer-id", v[i].id));
			mismatch = true;
		}
		if (r->compact_revision > crev2) {
			srv_log_warn("compact revision from follower must be less than or equal to "
				     "leader's",
				     SRV_LF_INT("leader-compact-revision", crev2),
				     SRV_LF_INT("follower-compact-revision", r->compact_revision),
				     SRV_LF_ID("follower-peer-id", v[i].id));
			mismatch = true;
		}
		if (r->compact_revision == crev && r->hash != h) {
			srv_log_warn("same compact revision then hashes must match",
				     SRV_LF_INT("leader-compact-revision", crev2),
				     SRV_LF_UINT("leader-hash", h),
				     SRV_LF_INT("follower-compact-revision", r->compact_revision),
				     SRV_LF_UINT("follower-hash", r->hash),
				     SRV_LF_ID("follower-peer-id", v[i].id));
			mismatch = true;
		}
	}
	peer_hashes_free(v, n);
	/* etcd 3.4.23 raises CORRUPT for member 0: which member is damaged is
	 * not known from two hashes */
	if (mismatch)
		srv_maint_raise(app, 0, ETCDSERVERPB__ALARM_TYPE__CORRUPT);
	srv_log_info("finished peer corruption check", SRV_LF_INT("number-of-peers-checked", checked));
	return EC_OK;
}

static void *check_main(void *arg)
{
	srv_app *app = arg;
	srv_maint *m = app->maint;
	int64_t every = app->cfg->experimental_corrupt_check_time_ms;
	srv_log_info("enabled corruption checking", SRV_LF_ID("local-member-id", app->member_id),
		     SRV_LF_DUR_MS("interval", every));
	for (;;) {
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_sec += every / 1000;
		ts.tv_nsec += (long)(every % 1000) * 1000000L;
		if (ts.tv_nsec >= 1000000000L) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000L;
		}
		pthread_mutex_lock(&m->mu);
		while (!atomic_load(&m->stop) &&
		       pthread_cond_timedwait(&m->cv, &m->mu, &ts) == 0)
			;
		pthread_mutex_unlock(&m->mu);
		if (atomic_load(&m->stop))
			return NULL;
		srv_node_status st;
		srv_node_get_status(app->node, &st);
		if (!st.is_leader)
			continue;
		int err = check_hash_kv(app);
		if (err != EC_OK)
			srv_log_warn("failed to check hash KV", SRV_LF_ERR(ec_strerror(err)));
	}
}

int srv_maint_start(srv_app *app)
{
	srv_maint *m = app->maint;
	if (m == NULL || app->cfg == NULL || app->cfg->experimental_corrupt_check_time_ms <= 0)
		return 0;
	if (pthread_create(&m->thread, NULL, check_main, app) != 0)
		return -1;
	m->running = true;
	return 0;
}

void srv_maint_stop(srv_app *app)
{
	srv_maint *m = app->maint;
	if (m == NULL)
		return;
	pthread_mutex_lock(&m->mu);
	atomic_store(&m->stop, true);
	pthread_cond_broadcast(&m->cv);
	pthread_mutex_unlock(&m->mu);
	if (m->running)
		pthread_join(m->thread, NULL);
	m->running = false;
	srv_jobs_stop(&m->jobs, -1); /* a hash in flight ends before the node does */
}

void srv_maint_free(srv_app *app)
{
	srv_maint *m = app->maint;
	if (m == NULL)
		return;
	srv_maint_stop(app);
	pthread_mutex_destroy(&m->mu);
	pthread_cond_destroy(&m->cv);
	srv_jobs_destroy(&m->jobs);
	app->maint = NULL;
	free(m);
}
