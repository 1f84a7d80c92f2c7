/*
 * srv_node: the node loop on raft/ (see srv_node.h).
 *
 * Input queue: gRPC and transport threads append inputs under one mutex and
 * signal; the node thread swaps the whole queue out, so everything that arrived
 * while the previous fsync ran is stepped before the next ready: one ready, one
 * synced log write, however many proposals.
 *
 * Local proposals wait in one FIFO (proposal order, which is also deadline
 * order): the apply step finds its own entries there by request id (normally at
 * the head) to reuse the decoded request, and the timeout sweep pops expired
 * ones from the head. Proposals raft could not take (no leader yet) wait in the
 * same FIFO, marked unsent, and are stepped again when a leader is known.
 */
#include "server/srv_node.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "etcdcompat/ec_errors.h"
#include "server/srv_log.h"
#include "server/srv_metrics.h"
#include "storage/st_mvcc.h"
#include "storage/st_snap.h"

#define META_SNAPSHOT "snapshot"
#define ECACHE_SLOTS 4096u /* a power of two */
#define RMETA_CONF "conf"

/* ------------------------------------------------------------ inputs -- */

typedef struct srv_prop {
	struct srv_prop *prev, *next; /* FIFO of local proposals */
	uint64_t id;
	uint64_t deadline_ms;
	bool sent;                     /* stepped into raft (else waiting for a leader) */
	bool conf;                     /* a conf change (blob is a raft_confchange encoding) */
	const Metastore__InternalRequest *req; /* the proposer's decoded request, or NULL */
	raft_blob *blob;               /* packed InternalRequest / conf change */
} srv_prop;

typedef struct read_waiter {
	struct read_waiter *next;
	srv_read_fn fn;
	void *ctx;
} read_waiter;

/* A ReadIndex round: reads that share one confirmation. */
typedef struct read_round {
	struct read_round *next;
	uint64_t ctx;           /* raft read ctx */
	uint64_t index;         /* read index once confirmed, 0 before */
	bool confirmed;
	uint64_t deadline_ms;
	uint64_t last_try_ms;
	read_waiter *waiters;
} read_round;

typedef enum {
	IN_PROP,
	IN_MSG,
	IN_READ,
	IN_MEMBER,
	IN_TRANSFER,
	IN_UNREACHABLE,
	IN_SNAPSTATUS,
	IN_REMOVED,
} in_kind;

typedef struct srv_input {
	struct srv_input *next;
	in_kind kind;
	srv_prop *prop;
	raft_message *msg;
	void (*free_msg)(raft_message *);
	read_waiter *read;
	uint64_t id;      /* peer id / transfer target / member op */
	bool failed;
	srv_member_op op;
	Etcdserverpb__Member *member; /* IN_MEMBER: unpacked copy (freed here) */
	srv_wait_fn fn;
	void *ctx;
} srv_input;

struct srv_node {
	srv_node_config cfg;
	raft *r;
	srv_wait wait;
	pthread_t thread;
	pthread_mutex_t mu; /* guards the queue, stopping and st */
	pthread_cond_t cv;
	srv_input *head, *tail;
	int stopping;
	atomic_int failed;
	atomic_int solo;  /* the only voter, and leading: reads need no round */
	atomic_uint_fast64_t next_id;
	srv_node_status st;
	/* the leader's view of its learners, published with st */
	uint64_t self_match;
	size_t n_lprog;
	struct {
		uint64_t id, match;
	} lprog[RAFT_MAX_NODES];

	/* node thread only */
	srv_prop *pfirst, *plast; /* proposal FIFO */
	read_round *rounds;
	read_waiter *pending_reads; /* reads not yet given a round */
	uint64_t next_read_ctx;
	struct {
		uint64_t target;
		uint64_t deadline_ms;
		srv_wait_fn fn;
		void *ctx;
	} transfer;
	uint64_t lead;
	raft_role role;
	uint64_t next_expire_ms; /* next sweep of proposal deadlines */
	/* The newest log entries as persisted (slot = index % ECACHE_SLOTS), so that
	 * raft's term() and entries() calls for replication are answered from
	 * memory instead of a RocksDB read and decode each. A slot is valid when it
	 * holds that index and the index is <= ecache_last (entries past it were
	 * truncated away). */
	struct ecache_slot {
		uint64_t index, term;
		raft_entry_type type;
		raft_blob *data;
	} *ecache;
	uint64_t ecache_last;
	struct phys_wait *phys;  /* Compact(physical) replies waiting for the walk */

	/* Raft snapshot images: serialised by a background thread (st_snap_create
	 * reads a RocksDB snapshot, so apply goes on meanwhile) and cached until
	 * the log is compacted past them. snap_done/snap_ready_* are guarded by mu;
	 * the rest is node thread only. */
	pthread_t snap_thread;
	bool snap_building;
	bool snap_done;
	raft_blob *snap_ready;
	uint64_t snap_ready_applied;
	raft_blob *snap_img;
	uint64_t snap_img_index, snap_img_term;
	raft_conf_state snap_img_conf;
};

static uint64_t wall_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* --------------------------------------------------- conf encodings -- */

static void conf_to_pb(const raft_conf_state *cs, Metastore__ConfState *pb)
{
	metastore__conf_state__init(pb);
	pb->voters = (uint64_t *)cs->voters;
	pb->n_voters = cs->n_voters;
	pb->voters_outgoing = (uint64_t *)cs->voters_outgoing;
	pb->n_voters_outgoing = cs->n_voters_outgoing;
	pb->learners = (uint64_t *)cs->learners;
	pb->n_learners = cs->n_learners;
	pb->learners_next = (uint64_t *)cs->learners_next;
	pb->n_learners_next = cs->n_learners_next;
	pb->auto_leave = cs->auto_leave;
}

static int conf_from_pb(const Metastore__ConfState *pb, raft_conf_state *cs)
{
	memset(cs, 0, sizeof(*cs));
	if (pb->n_voters > RAFT_MAX_NODES || pb->n_voters_outgoing > RAFT_MAX_NODES ||
	    pb->n_learners > RAFT_MAX_NODES || pb->n_learners_next > RAFT_MAX_NODES)
		return ST_ECORRUPT;
	for (size_t i = 0; i < pb->n_voters; i++)
		cs->voters[i] = pb->voters[i];
	for (size_t i = 0; i < pb->n_voters_outgoing; i++)
		cs->voters_outgoing[i] = pb->voters_outgoing[i];
	for (size_t i = 0; i < pb->n_learners; i++)
		cs->learners[i] = pb->learners[i];
	for (size_t i = 0; i < pb->n_learners_next; i++)
		cs->learners_next[i] = pb->learners_next[i];
	cs->n_voters = pb->n_voters;
	cs->n_voters_outgoing = pb->n_voters_outgoing;
	cs->n_learners = pb->n_learners;
	cs->n_learners_next = pb->n_learners_next;
	cs->auto_leave = pb->auto_leave;
	return ST_OK;
}

/* Persist the applied configuration (staged in the open apply group). */
static int conf_store(st_db *db, const raft_conf_state *cs)
{
	Metastore__ConfState pb;
	conf_to_pb(cs, &pb);
	uint8_t buf[4 * RAFT_MAX_NODES * 10 + 16];
	size_t len = metastore__conf_state__pack(&pb, buf);
	return st_rmeta_put(db, RMETA_CONF, buf, len);
}

/* The applied configuration; ST_ENOTFOUND when none is stored. */
static int conf_load(st_db *db, raft_conf_state *cs)
{
	void *v = NULL;
	size_t len = 0;
	int rc = st_rmeta_get(db, RMETA_CONF, &v, &len);
	if (rc != ST_OK)
		return rc;
	Metastore__ConfState *pb = metastore__conf_state__unpack(NULL, len, v);
	free(v);
	if (pb == NULL)
		return ST_ECORRUPT;
	rc = conf_from_pb(pb, cs);
	metastore__conf_state__free_unpacked(pb, NULL);
	return rc;
}

static int snaprec_store(st_db *db, uint64_t index, uint64_t term, const raft_conf_state *cs)
{
	Metastore__SnapshotRecord rec = METASTORE__SNAPSHOT_RECORD__INIT;
	Metastore__ConfState pb;
	conf_to_pb(cs, &pb);
	rec.format = 1;
	rec.index = index;
	rec.term = term;
	rec.conf = &pb;
	uint8_t buf[4 * RAFT_MAX_NODES * 10 + 64];
	size_t len = metastore__snapshot_record__pack(&rec, buf);
	return st_meta_put(db, META_SNAPSHOT, buf, len, true);
}

static int snaprec_load(st_db *db, uint64_t *index, uint64_t *term, raft_conf_state *cs)
{
	void *v = NULL;
	size_t len = 0;
	int rc = st_meta_get(db, META_SNAPSHOT, &v, &len);
	if (rc != ST_OK)
		return rc;
	Metastore__SnapshotRecord *rec = metastore__snapshot_record__unpack(NULL, len, v);
	free(v);
	if (rec == NULL || rec->conf == NULL) {
		if (rec)
			metastore__snapshot_record__free_unpacked(rec, NULL);
		return ST_ECORRUPT;
	}
	*index = rec->index;
	*term = rec->term;
	rc = conf_from_pb(rec->conf, cs);
	metastore__snapshot_record__free_unpacked(rec, NULL);
	return rc;
}

/* ------------------------------------------------------ raft storage -- */

static int map_st(int rc)
{
	switch (rc) {
	case ST_OK:
		return 0;
	case ST_ECOMPACTED:
		return RAFT_ECOMPACTED;
	case ST_EUNAVAILABLE:
		return RAFT_EUNAVAILABLE;
	default:
		return RAFT_ESTORAGE;
	}
}

/* The cached entry at @i, or NULL. */
static const struct ecache_slot *ecache_get(srv_node *n, uint64_t i)
{
	if (n->ecache == NULL || i == 0 || i > n->ecache_last)
		return NULL;
	const struct ecache_slot *sl = &n->ecache[i & (ECACHE_SLOTS - 1)];
	return sl->index == i ? sl : NULL;
}

/* Remember @cnt entries just persisted; the log now ends at the last of them. */
static void ecache_put(srv_node *n, const raft_entry *ents, size_t cnt)
{
	if (n->ecache == NULL || cnt == 0)
		return;
	for (size_t i = 0; i < cnt; i++) {
		struct ecache_slot *sl = &n->ecache[ents[i].index & (ECACHE_SLOTS - 1)];
		raft_blob_unref(sl->data);
		sl->index = ents[i].index;
		sl->term = ents[i].term;
		sl->type = ents[i].type;
		sl->data = raft_blob_ref(ents[i].data);
	}
	n->ecache_last = ents[cnt - 1].index;
}

static void ecache_free(srv_node *n)
{
	if (n->ecache == NULL)
		return;
	for (size_t i = 0; i < ECACHE_SLOTS; i++)
		raft_blob_unref(n->ecache[i].data);
	free(n->ecache);
	n->ecache = NULL;
}

static int rs_initial_state(void *ud, raft_term *term, raft_id *vote, raft_index *commit,
			    raft_conf_state *conf)
{
	srv_node *n = ud;
	st_hardstate hs;
	if (st_hardstate_load(n->cfg.db, &hs) != ST_OK)
		return -1;
	*term = hs.term;
	*vote = hs.vote;
	*commit = hs.commit;
	int rc = conf_load(n->cfg.db, conf);
	if (rc == ST_ENOTFOUND) {
		memset(conf, 0, sizeof(*conf)); /* a joining member: learns it from a snapshot */
		rc = ST_OK;
	}
	return rc == ST_OK ? 0 : -1;
}

static int rs_first_index(void *ud, raft_index *out)
{
	srv_node *n = ud;
	*out = st_log_first_index(n->cfg.db);
	return 0;
}

static int rs_last_index(void *ud, raft_index *out)
{
	srv_node *n = ud;
	*out = st_log_last_index(n->cfg.db);
	return 0;
}

static int rs_term(void *ud, raft_index i, raft_term *out)
{
	srv_node *n = ud;
	const struct ecache_slot *sl = ecache_get(n, i);
	if (sl && i + 1 >= st_log_first_index(n->cfg.db)) {
		*out = sl->term;
		return 0;
	}
	return map_st(st_log_term(n->cfg.db, i, out));
}

static int rs_entries(void *ud, raft_index lo, raft_index hi, size_t max_bytes, raft_entry *out,
		      size_t cap, size_t *nout)
{
	srv_node *n = ud;
	st_entry *ents = NULL;
	size_t cnt = 0;
	*nout = 0;
	if (hi - lo > cap)
		hi = lo + cap;
	/* From memory when the whole run is cached (the usual case for a leader
	 * replicating what it just wrote). */
	if (lo >= st_log_first_index(n->cfg.db) && ecache_get(n, lo) && ecache_get(n, hi - 1)) {
		size_t k = 0, bytes = 0;
		for (uint64_t i = lo; i < hi; i++, k++) {
			const struct ecache_slot *sl = ecache_get(n, i);
			if (sl == NULL)
				break;
			size_t sz = sl->data ? sl->data->len : 0;
			if (k > 0 && bytes + sz > max_bytes)
				break;
			out[k].term = sl->term;
			out[k].index = sl->index;
			out[k].type = sl->type;
			out[k].data = raft_blob_ref(sl->data);
			bytes += sz;
		}
		if (k == hi - lo || (k > 0 && k < hi - lo && ecache_get(n, lo + k))) {
			*nout = k;
			return 0;
		}
		for (size_t j = 0; j < k; j++)
			raft_blob_unref(out[j].data); /* a hole: read the log instead */
	}
	int rc = st_log_entries(n->cfg.db, lo, hi, max_bytes, &ents, &cnt);
	if (rc != ST_OK)
		return map_st(rc);
	for (size_t i = 0; i < cnt; i++) {
		out[i].term = ents[i].term;
		out[i].index = ents[i].index;
		out[i].type = ents[i].type == METASTORE__ENTRY_TYPE__ENTRY_CONF_CHANGE
				      ? RAFT_ENTRY_CONF_CHANGE
				      : RAFT_ENTRY_NORMAL;
		out[i].data = NULL;
		if (ents[i].len > 0 &&
		    (out[i].data = raft_blob_copy(ents[i].data, ents[i].len)) == NULL) {
			for (size_t k = 0; k < i; k++)
				raft_blob_unref(out[k].data);
			st_entries_free(ents, cnt);
			return RAFT_ENOMEM;
		}
	}
	*nout = cnt;
	st_entries_free(ents, cnt);
	return 0;
}

/* Serialise an image of the replicated state (background thread). */
static void *snap_main(void *arg)
{
	srv_node *n = arg;
	uint8_t *buf = NULL;
	size_t len = 0;
	uint64_t applied = 0;
	raft_blob *b = NULL;
	if (st_snap_create(n->cfg.db, &buf, &len, &applied) == ST_OK)
		b = raft_blob_copy(buf, len);
	free(buf);
	pthread_mutex_lock(&n->mu);
	n->snap_ready = b;
	n->snap_ready_applied = applied;
	n->snap_done = true;
	pthread_cond_signal(&n->cv);
	pthread_mutex_unlock(&n->mu);
	return NULL;
}

/* Take a finished image from the background thread into the cache. */
static void snap_collect(srv_node *n)
{
	if (!n->snap_building)
		return;
	pthread_mutex_lock(&n->mu);
	bool done = n->snap_done;
	raft_blob *b = n->snap_ready;
	uint64_t applied = n->snap_ready_applied;
	n->snap_done = false;
	n->snap_ready = NULL;
	pthread_mutex_unlock(&n->mu);
	if (!done)
		return;
	pthread_join(n->snap_thread, NULL);
	n->snap_building = false;
	if (b == NULL) {
		srv_log_error("failed to create snapshot");
		return;
	}
	const uint8_t *cv = NULL;
	size_t cl = 0;
	uint64_t term = 0;
	raft_conf_state cs;
	Metastore__ConfState *pb = NULL;
	if (st_log_term(n->cfg.db, applied, &term) != ST_OK ||
	    st_snap_find_rmeta(b->data, b->len, RMETA_CONF, &cv, &cl) != ST_OK ||
	    (pb = metastore__conf_state__unpack(NULL, cl, cv)) == NULL || conf_from_pb(pb, &cs) != ST_OK) {
		if (pb)
			metastore__conf_state__free_unpacked(pb, NULL);
		raft_blob_unref(b);
		return; /* stale (compacted meanwhile) or unreadable: made again on demand */
	}
	metastore__conf_state__free_unpacked(pb, NULL);
	raft_blob_unref(n->snap_img);
	n->snap_img = b;
	n->snap_img_index = applied;
	n->snap_img_term = term;
	n->snap_img_conf = cs;
	srv_log_info("saved snapshot", SRV_LF_UINT("snapshot-index", applied),
	             SRV_LF_UINT("snapshot-size-bytes", b->len));
}

static int rs_snapshot(void *ud, raft_snapshot *out)
{
	srv_node *n = ud;
	memset(out, 0, sizeof(*out));
	uint64_t first = st_log_first_index(n->cfg.db);
	uint64_t index = 0, term = 0;
	raft_conf_state cs;
	/* The bootstrap snapshot (index 1: an empty keyspace) needs no image as long
	 * as the log still follows it. */
	if (snaprec_load(n->cfg.db, &index, &term, &cs) == ST_OK && index <= 1 && index + 1 >= first) {
		out->index = index;
		out->term = term;
		out->conf = cs;
		return 0;
	}
	snap_collect(n);
	if (n->snap_img && n->snap_img_index + 1 >= first) {
		out->index = n->snap_img_index;
		out->term = n->snap_img_term;
		out->conf = n->snap_img_conf;
		out->data = raft_blob_ref(n->snap_img);
		return 0;
	}
	if (!n->snap_building) {
		n->snap_done = false;
		if (pthread_create(&n->snap_thread, NULL, snap_main, n) == 0)
			n->snap_building = true;
	}
	return RAFT_ESNAPTEMPUNAVAILABLE;
}

/* Compact the log once snapshot_count entries are applied beyond what the log
 * must keep: a follower further behind gets a snapshot instead. */
static void maybe_compact(srv_node *n)
{
	uint64_t keep = n->cfg.snapshot_count < 5000 ? n->cfg.snapshot_count : 5000;
	uint64_t applied = ec_kv_applied_index(n->cfg.kv);
	uint64_t first = st_log_first_index(n->cfg.db);
	if (applied < first + n->cfg.snapshot_count + keep)
		return;
	int rc = st_log_compact(n->cfg.db, applied - keep);
	if (rc != ST_OK)
		srv_log_error("failed to compact Raft logs", SRV_LF_UINT("compact-index", applied - keep),
		              SRV_LF_ERR(st_strerror(rc)));
}

/* ------------------------------------------------------------ status -- */

/* Set by node_main for its own thread. */
static _Thread_local srv_node *tl_node;

bool srv_node_is_node_thread(srv_node *n)
{
	return tl_node == n;
}

ec_hdr srv_node_hdr(srv_node *n)
{
	ec_hdr h = {n->cfg.cluster_id, n->cfg.member_id, 0};
	pthread_mutex_lock(&n->mu);
	h.raft_term = n->st.term;
	pthread_mutex_unlock(&n->mu);
	return h;
}

void srv_node_get_status(srv_node *n, srv_node_status *st)
{
	pthread_mutex_lock(&n->mu);
	*st = n->st;
	pthread_mutex_unlock(&n->mu);
	st->applied_index = ec_kv_applied_index(n->cfg.kv);
}

int srv_node_failed(srv_node *n)
{
	return atomic_load(&n->failed);
}

/* Refresh the status copy readers see from raft (node thread). */
static void publish_status(srv_node *n)
{
	raft_status rs;
	raft_get_status(n->r, &rs);
	bool learner = false;
	for (size_t i = 0; i < rs.conf.n_learners; i++)
		learner |= rs.conf.learners[i] == n->cfg.member_id;
	pthread_mutex_lock(&n->mu);
	n->st.term = rs.term;
	n->st.lead = rs.lead;
	n->st.is_leader = rs.role == RAFT_LEADER;
	n->st.is_learner = learner;
	n->st.last_index = rs.last_index;
	n->st.commit_index = rs.commit;
	n->n_lprog = 0;
	if (rs.role == RAFT_LEADER) {
		raft_progress(n->r, n->cfg.member_id, &n->self_match, NULL);
		for (size_t i = 0; i < rs.conf.n_learners; i++) {
			raft_index m = 0;
			raft_progress(n->r, rs.conf.learners[i], &m, NULL);
			n->lprog[n->n_lprog].id = rs.conf.learners[i];
			n->lprog[n->n_lprog++].match = m;
		}
	}
	pthread_mutex_unlock(&n->mu);
	atomic_store(&n->solo, rs.role == RAFT_LEADER && rs.conf.n_voters == 1 &&
				       rs.conf.n_voters_outgoing == 0);
}

/* ------------------------------------------------------------ queue -- */

static int enqueue(srv_node *n, srv_input *in)
{
	in->next = NULL;
	pthread_mutex_lock(&n->mu);
	if (n->stopping) {
		pthread_mutex_unlock(&n->mu);
		return EC_STOPPED;
	}
	if (n->tail)
		n->tail->next = in;
	else
		n->head = in;
	n->tail = in;
	pthread_cond_signal(&n->cv);
	pthread_mutex_unlock(&n->mu);
	return EC_OK;
}

static void prop_unlink(srv_node *n, srv_prop *p)
{
	if (p->prev)
		p->prev->next = p->next;
	else
		n->pfirst = p->next;
	if (p->next)
		p->next->prev = p->prev;
	else
		n->plast = p->prev;
	p->prev = p->next = NULL;
}

static void prop_free(srv_prop *p)
{
	if (p == NULL)
		return;
	if (p->req != NULL) /* a client proposal (srv_node_propose_within) */
		srv_gauge_add(&srv_mserver.proposals_pending, -1);
	raft_blob_unref(p->blob);
	free(p);
}

/* Complete waiter @id (if still registered) with @err / @resp. */
static void complete(srv_node *n, uint64_t id, int err, void *resp)
{
	srv_waiter *w = srv_wait_take(&n->wait, id);
	if (w) {
		w->fn(w->ctx, err, err == EC_OK ? resp : NULL);
		if (err != EC_OK)
			ec_msg_free(resp);
		free(w);
	} else {
		ec_msg_free(resp);
	}
}

/* Whether @cc removes the current leader. */
static bool removes_leader(srv_node *n, const raft_confchange *cc)
{
	for (size_t i = 0; i < cc->n_changes; i++)
		if (cc->changes[i].type == RAFT_CC_REMOVE_NODE && n->lead != 0 &&
		    cc->changes[i].node_id == n->lead)
			return true;
	return false;
}

/* A voter other than @not (this member when it votes), or 0. */
static raft_id other_voter(srv_node *n, raft_id not)
{
	raft_status rs;
	raft_get_status(n->r, &rs);
	raft_id pick = 0;
	for (size_t i = 0; i < rs.conf.n_voters; i++) {
		raft_id v = rs.conf.voters[i];
		if (v == not)
			continue;
		if (v == n->cfg.member_id)
			return v;
		if (pick == 0)
			pick = v;
	}
	return pick;
}

/* Step @p into raft; on "no leader" it stays unsent for a later try. */
static void prop_step(srv_node *n, srv_prop *p)
{
	int rc;
	if (p->conf) {
		raft_confchange cc;
		if (raft_confchange_decode(p->blob->data, p->blob->len, &cc) != 0) {
			rc = RAFT_EINVAL;
		} else if (removes_leader(n, &cc)) {
			/* Raft refuses a change that leaves the leader out: move leadership
			 * to another voter first (etcd does the same); the change is
			 * stepped again when the new leader is known. */
			rc = RAFT_ECONFLEADER;
			raft_id to = other_voter(n, n->lead);
			if (to != 0) {
				raft_event ev = {.type = RAFT_EV_TRANSFER};
				ev.transfer.target = to;
				raft_step(n->r, &ev);
				p->sent = false;
				return;
			}
		} else {
			raft_event ev = {.type = RAFT_EV_PROPOSE_CONF_CHANGE};
			ev.conf_change.cc = &cc;
			rc = raft_step(n->r, &ev);
		}
	} else {
		raft_event ev = {.type = RAFT_EV_PROPOSE};
		ev.propose.data = &p->blob;
		ev.propose.n = 1;
		rc = raft_step(n->r, &ev);
	}
	switch (rc) {
	case 0:
		p->sent = true;
		break;
	case RAFT_ENOLEADER:
	case RAFT_ETRANSFERRING:
	case RAFT_EUNCOMMITTEDFULL:
		p->sent = false; /* retried when a leader is known, until the deadline */
		break;
	default: {
		int err = rc == RAFT_ETOOLARGE ? EC_REQUEST_TOO_LARGE
			  : rc == RAFT_ECONFLEADER ? EC_MEMBER_NOT_ENOUGH_STARTED
			  : rc == RAFT_ECONFPENDING ? EC_TIMEOUT
			  : rc == RAFT_ENOTMEMBER ? EC_STOPPED
						  : EC_INTERNAL;
		prop_unlink(n, p);
		complete(n, p->id, err, NULL);
		prop_free(p);
		if (rc == RAFT_EPOISONED || rc == RAFT_ESTORAGE || rc == RAFT_ECONFLICT)
			atomic_store(&n->failed, 1);
		break;
	}
	}
}

/* Step a run of consecutive normal proposals in one event (one ready entry batch). */
static void props_step_batch(srv_node *n, srv_prop **ps, size_t cnt)
{
	if (cnt == 0)
		return;
	raft_blob **blobs = malloc(cnt * sizeof(*blobs));
	if (blobs == NULL) {
		for (size_t i = 0; i < cnt; i++)
			prop_step(n, ps[i]);
		return;
	}
	for (size_t i = 0; i < cnt; i++)
		blobs[i] = ps[i]->blob;
	raft_event ev = {.type = RAFT_EV_PROPOSE};
	ev.propose.data = blobs;
	ev.propose.n = cnt;
	int rc = raft_step(n->r, &ev);
	free(blobs);
	if (rc == 0) {
		for (size_t i = 0; i < cnt; i++)
			ps[i]->sent = true;
		return;
	}
	/* fall back to one by one: each gets its own outcome */
	for (size_t i = 0; i < cnt; i++)
		prop_step(n, ps[i]);
}

/* Re-step every unsent proposal (a leader may be known now). */
static void props_retry(srv_node *n)
{
	srv_prop *batch[256];
	size_t cnt = 0;
	for (srv_prop *p = n->pfirst, *next; p; p = next) {
		next = p->next;
		if (p->sent)
			continue;
		if (p->conf) {
			props_step_batch(n, batch, cnt);
			cnt = 0;
			prop_step(n, p);
			continue;
		}
		batch[cnt++] = p;
		if (cnt == 256) {
			props_step_batch(n, batch, cnt);
			cnt = 0;
		}
	}
	props_step_batch(n, batch, cnt);
}

/* ---------------------------------------------------------- reads -- */

static void read_complete_all(read_waiter *w, int err)
{
	while (w) {
		read_waiter *next = w->next;
		w->fn(w->ctx, err);
		free(w);
		w = next;
	}
}

/*
 * Give every pending read a new round and ask raft to confirm it — once the
 * round in flight, if any, has been confirmed: as etcd's linearizable read
 * loop, one confirmation (a heartbeat round on the leader, a ReadIndex round
 * trip on a follower) is outstanding at a time, and every read that arrives
 * meanwhile shares the next one. Starting a round per loop turn instead cost
 * each member a heartbeat exchange per handful of reads.
 */
static void reads_start_round(srv_node *n, uint64_t now)
{
	if (!n->pending_reads)
		return;
	for (const read_round *rr = n->rounds; rr; rr = rr->next)
		if (!rr->confirmed)
			return;
	read_round *rr = calloc(1, sizeof(*rr));
	if (rr == NULL) {
		read_complete_all(n->pending_reads, EC_NOMEM);
		n->pending_reads = NULL;
		return;
	}
	rr->ctx = ++n->next_read_ctx;
	rr->waiters = n->pending_reads;
	rr->deadline_ms = now + n->cfg.request_timeout_ms;
	n->pending_reads = NULL;
	rr->next = n->rounds;
	n->rounds = rr;
	rr->last_try_ms = now;
	raft_event ev = {.type = RAFT_EV_READ_INDEX};
	ev.read_index.ctx = rr->ctx;
	raft_step(n->r, &ev); /* no leader: retried by reads_sweep */
}

static void reads_on_state(srv_node *n, const raft_read_state *rs)
{
	for (read_round *rr = n->rounds; rr; rr = rr->next) {
		if (rr->ctx == rs->ctx && !rr->confirmed) {
			rr->confirmed = true;
			rr->index = rs->index;
		}
	}
}

/*
 * Serve confirmed rounds whose index is applied, fail expired ones, and ask
 * again for rounds that got no answer within an election timeout (raft drops
 * read requests on leader change).
 */
static void reads_sweep(srv_node *n, uint64_t now, bool force_retry)
{
	uint64_t applied = ec_kv_applied_index(n->cfg.kv);
	uint64_t retry_ms = (uint64_t)n->cfg.election_ticks * n->cfg.tick_ms;
	read_round **pp = &n->rounds;
	while (*pp) {
		read_round *rr = *pp;
		int err = -1;
		if (rr->confirmed && rr->index <= applied)
			err = EC_OK;
		else if (now >= rr->deadline_ms)
			err = EC_TIMEOUT;
		if (err >= 0) {
			*pp = rr->next;
			read_complete_all(rr->waiters, err);
			free(rr);
			continue;
		}
		if (!rr->confirmed && (force_retry || now - rr->last_try_ms >= retry_ms)) {
			rr->last_try_ms = now;
			raft_event ev = {.type = RAFT_EV_READ_INDEX};
			ev.read_index.ctx = rr->ctx;
			raft_step(n->r, &ev);
		}
		pp = &rr->next;
	}
}

int srv_node_read(srv_node *n, srv_read_fn fn, void *ctx)
{
	if (atomic_load(&n->solo)) {
		fn(ctx, EC_OK);
		return EC_OK;
	}
	srv_input *in = calloc(1, sizeof(*in));
	read_waiter *w = calloc(1, sizeof(*w));
	if (in == NULL || w == NULL) {
		free(in);
		free(w);
		return EC_NOMEM;
	}
	w->fn = fn;
	w->ctx = ctx;
	in->kind = IN_READ;
	in->read = w;
	int err = enqueue(n, in);
	if (err != EC_OK) {
		free(in);
		free(w);
	}
	return err;
}

/* ------------------------------------------------------------- apply -- */

/*
 * An applied entry whose reply waits for its apply group to be written: the
 * response (or error) apply built and the request id of its waiter.
 */
typedef struct applied {
	uint64_t id;
	int err;
	ProtobufCMessage *resp;
	int64_t wait_compact; /* Compact(physical): answer once compacted this far */
} applied;

/* A physical compaction's reply, held until the background walk reached it. */
typedef struct phys_wait {
	struct phys_wait *next;
	applied a;
} phys_wait;

/* The request id of a packed InternalRequest (field 1, varint), or 0. */
static uint64_t peek_id(const uint8_t *p, size_t len)
{
	if (len < 2 || p[0] != 0x08)
		return 0;
	uint64_t v = 0;
	for (size_t i = 1, shift = 0; i < len && shift < 64; i++, shift += 7) {
		v |= (uint64_t)(p[i] & 0x7f) << shift;
		if (!(p[i] & 0x80))
			return v;
	}
	return 0;
}

/* Take the local proposal with request id @id out of the FIFO, or NULL. */
static srv_prop *prop_take(srv_node *n, uint64_t id)
{
	for (srv_prop *p = n->pfirst; p; p = p->next) {
		if (p->id == id) {
			prop_unlink(n, p);
			return p;
		}
	}
	return NULL;
}

/* A MemberSet response for a membership waiter (the set as applied here). */
static ProtobufCMessage *members_resp(srv_node *n)
{
	return (ProtobufCMessage *)ec_cluster_copy(n->cfg.cluster);
}

/* Apply a member request carried by a normal entry (publish, update). */
static int apply_member_req(srv_node *n, uint64_t index, const Metastore__InternalRequest *req,
			    applied *out)
{
	int e;
	if (req->request_case == METASTORE__INTERNAL_REQUEST__REQUEST_MEMBER_ATTR)
		e = ec_cluster_apply_attr(n->cfg.cluster, req->member_attr);
	else
		e = ec_cluster_apply_update(n->cfg.cluster, req->member_update->member_id,
					    req->member_update->peer_urls,
					    req->member_update->n_peer_urls);
	if (e < 0)
		return -1;
	out->err = e;
	if (e == EC_OK) {
		out->resp = members_resp(n);
		if (n->cfg.on_members)
			n->cfg.on_members(n->cfg.ctx);
	}
	return ec_kv_set_applied(n->cfg.kv, index) == ST_OK ? 0 : -1;
}

/* The keys attached to lease @id as of the entry being applied (an apply-time
 * permission check of LeaseRevoke: write on every attached key). */
static int lease_keys(void *arg, int64_t id, ec_auth_key_visit fn, void *fn_arg)
{
	srv_node *n = arg;
	st_txn *t = NULL;
	int rc = st_txn_begin(n->cfg.db, true, &t); /* sees the open group's writes */
	if (rc != ST_OK)
		return rc;
	rc = st_txn_lease_keys(t, id, fn, fn_arg);
	st_txn_abort(t);
	return rc;
}

/* Apply an Auth entry: the store changes (or etcd's error), and an applied
 * authenticate gets its token here, on every member. */
static int apply_auth_req(srv_node *n, uint64_t index, const Metastore__InternalRequest *req,
			  const ec_hdr *hdr, applied *out)
{
	ProtobufCMessage *resp = NULL;
	int err = EC_INTERNAL;
	if (n->cfg.auth != NULL) {
		st_kv_state ks;
		st_apply_state(n->cfg.db, &ks);
		int src = ec_auth_apply(n->cfg.auth, req, hdr, ks.rev, &resp, &err);
		if (src != 0) {
			srv_log_error("failed to apply request", SRV_LF_UINT("index", index),
			              SRV_LF_ERR(st_strerror(src)));
			return -1;
		}
	}
	if (err == EC_OK &&
	    req->request_case == METASTORE__INTERNAL_REQUEST__REQUEST_AUTHENTICATE) {
		Etcdserverpb__AuthenticateResponse *ar = (Etcdserverpb__AuthenticateResponse *)resp;
		const Metastore__InternalAuthenticate *au = req->authenticate;
		char *tok = n->cfg.on_authenticate
		            ? n->cfg.on_authenticate(n->cfg.ctx, au->name,
		                                     ec_auth_revision(n->cfg.auth),
		                                     au->simple_token, index)
		            : NULL;
		if (tok == NULL || ar == NULL) {
			free(tok);
			err = EC_INTERNAL;
		} else {
			if (ar->token != NULL && ar->token != (char *)protobuf_c_empty_string)
				free(ar->token);
			ar->token = tok;
		}
	}
	out->err = err;
	if (err == EC_OK)
		out->resp = resp;
	else
		ec_msg_free(resp);
	return ec_kv_set_applied(n->cfg.kv, index) == ST_OK ? 0 : -1;
}

/* Apply an Alarm entry (etcd applies it whatever the sender's permissions). */
static int apply_alarm_req(srv_node *n, uint64_t index, const Metastore__InternalRequest *req,
			   applied *out)
{
	Etcdserverpb__AlarmResponse *resp = NULL;
	bool raised = false, disarmed = false;
	if (n->cfg.alarms == NULL) {
		out->err = EC_INTERNAL;
	} else {
		int e = ec_alarms_apply(n->cfg.alarms, req->alarm, &resp, &raised, &disarmed);
		if (e < 0) {
			srv_log_error("failed to apply request", SRV_LF_UINT("index", index),
			              SRV_LF_ERR(st_strerror(-e)));
			return -1;
		}
		const char *type = ec_alarm_type_name((int)req->alarm->alarm);
		if (raised)
			srv_log_warn("alarm raised", SRV_LF_STR("alarm", type),
			             SRV_LF_ID("from", req->alarm->memberid));
		if (disarmed)
			srv_log_warn("alarm disarmed", SRV_LF_STR("alarm", type),
			             SRV_LF_ID("from", req->alarm->memberid));
		out->err = EC_OK;
		out->resp = (ProtobufCMessage *)resp;
	}
	return ec_kv_set_applied(n->cfg.kv, index) == ST_OK ? 0 : -1;
}

static int apply_normal(srv_node *n, const raft_entry *e, applied *out)
{
	ec_hdr hdr = srv_node_hdr(n);
	if (e->data == NULL || e->data->len == 0)
		return ec_kv_set_applied(n->cfg.kv, e->index) == ST_OK ? 0 : -1;
	uint64_t id = peek_id(e->data->data, e->data->len);
	srv_prop *p = id ? prop_take(n, id) : NULL;
	Metastore__InternalRequest *own = NULL;
	const Metastore__InternalRequest *req = p ? p->req : NULL;
	if (req == NULL) {
		own = metastore__internal_request__unpack(NULL, e->data->len, e->data->data);
		if (own == NULL) {
			srv_log_error("failed to unmarshal raft entry; the log is corrupt",
			              SRV_LF_UINT("index", e->index));
			prop_free(p);
			return -1;
		}
		req = own;
	}
	out->id = req->id;
	int rc = 0;
	int perm = EC_OK;
	if (req->request_case == METASTORE__INTERNAL_REQUEST__REQUEST_MEMBER_ATTR ||
	    req->request_case == METASTORE__INTERNAL_REQUEST__REQUEST_MEMBER_UPDATE) {
		rc = apply_member_req(n, e->index, req, out);
	} else if (ec_auth_is_request(req->request_case)) {
		rc = apply_auth_req(n, e->index, req, &hdr, out);
	} else if (req->request_case == METASTORE__INTERNAL_REQUEST__REQUEST_ALARM) {
		rc = apply_alarm_req(n, e->index, req, out);
	} else if (n->cfg.alarms != NULL && (perm = ec_alarms_gate(n->cfg.alarms, req)) != EC_OK) {
		/* etcd's capped / corrupt appliers: refused alike on every member */
		out->err = perm;
		rc = ec_kv_set_applied(n->cfg.kv, e->index) == ST_OK ? 0 : -1;
	} else if (n->cfg.auth != NULL && req->auth != NULL &&
		   (perm = ec_auth_check_write(n->cfg.auth, req, lease_keys, n)) != EC_OK) {
		/* refused as of this entry, the same on every member */
		out->err = perm;
		rc = ec_kv_set_applied(n->cfg.kv, e->index) == ST_OK ? 0 : -1;
	} else {
		int src = ec_kv_apply(n->cfg.kv, e->index, req, &hdr, &out->resp, &out->err);
		if (src != 0) {
			srv_log_error("failed to apply request", SRV_LF_UINT("index", e->index),
			              SRV_LF_ERR(st_strerror(src)));
			rc = -1;
		}
		if (req->request_case == METASTORE__INTERNAL_REQUEST__REQUEST_COMPACTION &&
		    req->compaction->physical && out->err == EC_OK)
			out->wait_compact = req->compaction->revision;
		/* etcd's quotaApplierV3: applied, but its caller hears "no space" */
		if (rc == 0 && out->err == EC_OK && n->cfg.over_quota != NULL &&
		    n->cfg.over_quota(n->cfg.quota_ctx, req)) {
			ec_msg_free(out->resp);
			out->resp = NULL;
			out->err = EC_NO_SPACE;
		}
	}
	if (own)
		metastore__internal_request__free_unpacked(own, NULL);
	prop_free(p);
	return rc;
}

/* Apply a conf-change entry: raft's configuration, the member set, the waiter. */
static int apply_conf(srv_node *n, const raft_entry *e, applied *out)
{
	raft_confchange cc;
	if (e->data == NULL || raft_confchange_decode(e->data->data, e->data->len, &cc) != 0) {
		srv_log_error("failed to unmarshal conf-change entry; the log is corrupt",
		              SRV_LF_UINT("index", e->index));
		return -1;
	}
	Metastore__ConfContext *ctx = NULL;
	if (cc.context_len > 0)
		ctx = metastore__conf_context__unpack(NULL, cc.context_len, cc.context);
	if (ctx) {
		out->id = ctx->request_id;
		srv_prop *p = prop_take(n, ctx->request_id);
		prop_free(p);
	}
	raft_conf_state cs;
	int rc = raft_apply_conf_change(n->r, &cc, &cs);
	int e_err = EC_OK;
	if (rc == RAFT_ECONFINVALID) {
		e_err = EC_UNHEALTHY; /* refused the same way by every member */
	} else if (rc != 0) {
		if (ctx)
			metastore__conf_context__free_unpacked(ctx, NULL);
		return -1;
	} else {
		for (size_t i = 0; i < cc.n_changes && e_err >= 0; i++) {
			const raft_confchange_single *c = &cc.changes[i];
			bool known = ec_cluster_get(n->cfg.cluster, c->node_id, NULL, NULL);
			switch (c->type) {
			case RAFT_CC_ADD_NODE:
				if (known)
					e_err = ec_cluster_apply_promote(n->cfg.cluster, c->node_id);
				else if (ctx && ctx->member)
					e_err = ec_cluster_apply_add(n->cfg.cluster, ctx->member);
				break;
			case RAFT_CC_ADD_LEARNER:
				if (!known && ctx && ctx->member)
					e_err = ec_cluster_apply_add(n->cfg.cluster, ctx->member);
				break;
			case RAFT_CC_REMOVE_NODE:
				e_err = ec_cluster_apply_remove(n->cfg.cluster, c->node_id);
				if (c->node_id == n->cfg.member_id) {
					pthread_mutex_lock(&n->mu);
					n->st.removed = true;
					pthread_mutex_unlock(&n->mu);
				}
				break;
			}
		}
		if (e_err < 0 || conf_store(n->cfg.db, &cs) != ST_OK) {
			if (ctx)
				metastore__conf_context__free_unpacked(ctx, NULL);
			return -1;
		}
		/* Replaying a change whose member is already there is not an error. */
		if (e_err == EC_MEMBER_EXIST || e_err == EC_MEMBER_NOT_FOUND)
			e_err = EC_OK;
		if (n->cfg.on_members)
			n->cfg.on_members(n->cfg.ctx);
	}
	out->err = e_err;
	if (e_err == EC_OK)
		out->resp = members_resp(n);
	if (ctx)
		metastore__conf_context__free_unpacked(ctx, NULL);
	return ec_kv_set_applied(n->cfg.kv, e->index) == ST_OK ? 0 : -1;
}

/*
 * Apply @cnt committed entries in one apply group; replies leave once it is
 * written. Returns 0, or -1 on a storage failure (the node is poisoned).
 */
static int apply_committed(srv_node *n, const raft_entry *ents, size_t cnt)
{
	if (cnt == 0)
		return 0;
	applied *res = calloc(cnt, sizeof(*res));
	if (!res || st_apply_begin(n->cfg.db) != 0) {
		free(res);
		return -1;
	}
	size_t done = 0;
	int rc = 0;
	uint64_t applied_before = ec_kv_applied_index(n->cfg.kv);
	for (; done < cnt && rc == 0; done++) {
		const raft_entry *e = &ents[done];
		if (e->index <= applied_before)
			continue; /* already applied before a restart */
		if (e->type == RAFT_ENTRY_CONF_CHANGE)
			rc = apply_conf(n, e, &res[done]);
		else
			rc = apply_normal(n, e, &res[done]);
	}
	if (rc == 0) {
		uint64_t t0 = srv_now_ns();
		int src = st_apply_commit(n->cfg.db);
		srv_hist_observe(&srv_mserver.backend_commit, srv_now_ns() - t0);
		if (src != 0) {
			srv_log_error("failed to commit applied entries", SRV_LF_ERR(st_strerror(src)));
			rc = -1;
		}
	} else {
		st_apply_abort(n->cfg.db);
	}
	/* The member set changed in memory as it was applied: what was not written
	 * must not stay visible. */
	if (rc != 0)
		ec_cluster_reload(n->cfg.cluster);
	if (rc != 0 && n->cfg.alarms != NULL)
		ec_alarms_reload(n->cfg.alarms);
	srv_defer_hold(n->cfg.replies);
	for (size_t i = 0; i < done; i++) {
		phys_wait *pw;
		if (rc == 0 && res[i].id && res[i].wait_compact && (pw = malloc(sizeof(*pw)))) {
			pw->a = res[i];
			pw->next = n->phys;
			n->phys = pw;
		} else if (res[i].id) {
			complete(n, res[i].id, rc == 0 ? res[i].err : EC_INTERNAL, res[i].resp);
		} else {
			ec_msg_free(res[i].resp);
		}
	}
	srv_defer_release(n->cfg.replies);
	free(res);
	return rc;
}

/* Answer physical compactions the background walk has finished (etcd: such a
 * Compact returns once the compaction is physically applied); @err fails all. */
static void phys_sweep(srv_node *n, int err)
{
	if (n->phys == NULL)
		return;
	st_kv_state ks;
	st_kv_state_get(n->cfg.db, &ks);
	for (phys_wait **pp = &n->phys; *pp;) {
		phys_wait *pw = *pp;
		if (err == EC_OK && ks.compact_done < pw->a.wait_compact) {
			pp = &pw->next;
			continue;
		}
		*pp = pw->next;
		complete(n, pw->a.id, err == EC_OK ? pw->a.err : err, pw->a.resp);
		free(pw);
	}
}

/* -------------------------------------------------------------- ready -- */

/* Install a snapshot raft handed out: the state and the log restart from it. */
static int install_snapshot(srv_node *n, const raft_snapshot *s)
{
	int rc;
	if (s->data != NULL && s->data->len > 0)
		rc = st_snap_install(n->cfg.db, s->data->data, s->data->len, s->index, s->term);
	else if ((rc = st_log_reset(n->cfg.db, s->index, s->term)) == ST_OK &&
		 (rc = conf_store(n->cfg.db, &s->conf)) == ST_OK)
		rc = ec_kv_set_applied(n->cfg.kv, s->index); /* the bootstrap image: empty */
	if (rc == ST_OK)
		rc = snaprec_store(n->cfg.db, s->index, s->term, &s->conf);
	if (rc == ST_OK)
		rc = ec_cluster_reload(n->cfg.cluster);
	if (rc == ST_OK && n->cfg.alarms != NULL)
		rc = ec_alarms_reload(n->cfg.alarms);
	if (rc != ST_OK) {
		srv_log_error("failed to apply snapshot", SRV_LF_UINT("snapshot-index", s->index),
		              SRV_LF_ERR(st_strerror(rc)));
		return -1;
	}
	n->ecache_last = s->index; /* cached entries past it belong to the old log */
	srv_log_info("applied incoming Raft snapshot", SRV_LF_UINT("snapshot-index", s->index),
	             SRV_LF_UINT("snapshot-term", s->term));
	if (n->cfg.on_restore)
		n->cfg.on_restore(n->cfg.ctx);
	return 0;
}

static int persist(srv_node *n, const raft_ready *rd)
{
	if (rd->n_entries == 0 && !rd->has_hard_state)
		return 0;
	st_entry stack[64];
	st_entry *ents = rd->n_entries <= 64 ? stack : calloc(rd->n_entries, sizeof(*ents));
	if (ents == NULL)
		return -1;
	for (size_t i = 0; i < rd->n_entries; i++) {
		const raft_entry *e = &rd->entries[i];
		ents[i].term = e->term;
		ents[i].index = e->index;
		ents[i].type = e->type == RAFT_ENTRY_CONF_CHANGE ? METASTORE__ENTRY_TYPE__ENTRY_CONF_CHANGE
								 : METASTORE__ENTRY_TYPE__ENTRY_NORMAL;
		ents[i].data = e->data ? e->data->data : NULL;
		ents[i].len = e->data ? e->data->len : 0;
	}
	st_hardstate hs = {rd->hard.term, rd->hard.vote, rd->hard.commit};
	uint64_t t0 = rd->must_sync ? srv_now_ns() : 0;
	int rc = st_log_append(n->cfg.db, ents, rd->n_entries, rd->has_hard_state ? &hs : NULL,
			       rd->must_sync);
	if (rd->must_sync) /* etcd_disk_wal_fsync_duration_seconds: the synced write */
		srv_hist_observe(&srv_mserver.wal_fsync, srv_now_ns() - t0);
	if (ents != stack)
		free(ents);
	if (rc != ST_OK) {
		srv_log_error("failed to save Raft hard state and entries", SRV_LF_ERR(st_strerror(rc)));
		return -1;
	}
	ecache_put(n, rd->entries, rd->n_entries);
	/* Readers see the new log bounds before any reply of this ready leaves. */
	pthread_mutex_lock(&n->mu);
	if (rd->must_sync)
		n->st.batches++;
	n->st.entries += rd->n_entries;
	if (rd->n_entries)
		n->st.last_index = rd->entries[rd->n_entries - 1].index;
	if (rd->has_hard_state && rd->hard.commit > n->st.commit_index)
		n->st.commit_index = rd->hard.commit;
	if (rd->has_hard_state)
		n->st.term = rd->hard.term;
	pthread_mutex_unlock(&n->mu);
	return 0;
}

static void on_soft_state(srv_node *n, const raft_soft_state *ss, uint64_t now)
{
	bool was_leader = n->role == RAFT_LEADER;
	bool leader = ss->role == RAFT_LEADER;
	uint64_t old_lead = n->lead;
	n->lead = ss->lead;
	n->role = ss->role;
	/* etcd's raft texts (ids as %x, unpadded). */
	uint64_t term = srv_node_hdr(n).raft_term;
	if (leader && !was_leader)
		srv_logf(SRV_LOG_INFO, "%" PRIx64 " became leader at term %" PRIu64, n->cfg.member_id,
		         term);
	if (ss->lead != old_lead && ss->lead != 0)
		srv_counter_add(&srv_mserver.leader_changes, 1);
	if (ss->lead != old_lead) {
		if (ss->lead)
			srv_logf(SRV_LOG_INFO, "raft.node: %" PRIx64 " elected leader %" PRIx64
			         " at term %" PRIu64, n->cfg.member_id, ss->lead, term);
		else
			srv_logf(SRV_LOG_INFO, "raft.node: %" PRIx64 " lost leader %" PRIx64
			         " at term %" PRIu64, n->cfg.member_id, old_lead, term);
	}
	if (was_leader != leader && n->cfg.on_leader)
		n->cfg.on_leader(n->cfg.ctx, leader);
	if (ss->lead != old_lead) {
		props_retry(n);
		reads_sweep(n, now, true);
	}
}

/* Process every ready raft has. Returns 0, or -1 on a fatal storage error. */
static int drive(srv_node *n, uint64_t now)
{
	while (raft_has_ready(n->r)) {
		raft_ready rd;
		int rc = raft_get_ready(n->r, &rd);
		if (rc != 0)
			return rc == RAFT_ENOMEM ? 0 : -1;
		if (rd.snapshot && install_snapshot(n, rd.snapshot) != 0)
			return -1;
		if (persist(n, &rd) != 0)
			return -1;
		if (rd.n_messages && n->cfg.send)
			n->cfg.send(n->cfg.ctx, rd.messages, rd.n_messages);
		if (rd.snapshot && n->cfg.on_members)
			n->cfg.on_members(n->cfg.ctx);
		if (apply_committed(n, rd.committed, rd.n_committed) != 0)
			return -1;
		for (size_t i = 0; i < rd.n_read_states; i++)
			reads_on_state(n, &rd.read_states[i]);
		bool confirmed = rd.n_read_states > 0;
		bool soft = rd.has_soft_state;
		raft_soft_state ss = rd.soft;
		if (raft_advance(n->r, &rd) != 0)
			return -1;
		if (confirmed) /* the reads that waited for it get the next round */
			reads_start_round(n, now);
		publish_status(n);
		if (soft)
			on_soft_state(n, &ss, now);
	}
	maybe_compact(n);
	return 0;
}

/* ---------------------------------------------------- member changes -- */

static void member_fail(srv_input *in, int err)
{
	in->fn(in->ctx, err, NULL);
}

/* Whether the leader may remove voter @id and keep a quorum of active voters
 * (etcd's --strict-reconfig-check: "not enough started members"). */
static bool removal_keeps_quorum(srv_node *n, uint64_t id)
{
	raft_status rs;
	raft_get_status(n->r, &rs);
	size_t voters = 0, active = 0;
	for (size_t i = 0; i < rs.conf.n_voters; i++) {
		uint64_t v = rs.conf.voters[i];
		if (v == id)
			continue;
		voters++;
		bool act = false;
		if (raft_progress(n->r, v, NULL, &act) == 0 && act)
			active++;
	}
	return voters == 0 || active >= voters / 2 + 1;
}

int srv_node_learner_ready(srv_node *n, uint64_t id)
{
	int err = EC_MEMBER_NOT_FOUND;
	pthread_mutex_lock(&n->mu);
	if (!n->st.is_leader)
		err = EC_NOT_LEADER;
	for (size_t i = 0; i < n->n_lprog && err == EC_MEMBER_NOT_FOUND; i++)
		if (n->lprog[i].id == id)
			err = (double)n->lprog[i].match >= (double)n->self_match * 0.9
				      ? EC_OK
				      : EC_LEARNER_NOT_READY;
	pthread_mutex_unlock(&n->mu);
	return err;
}

static void member_run(srv_node *n, srv_input *in, uint64_t now)
{
	ec_cluster *c = n->cfg.cluster;
	Etcdserverpb__Member *m = in->member;
	int err = EC_OK;
	raft_confchange cc = {.transition = RAFT_CC_TRANSITION_AUTO, .n_changes = 1};
	cc.changes[0].node_id = m->id;
	switch (in->op) {
	case SRV_MEMBER_ADD:
		err = ec_cluster_check_add(c, m->peerurls, m->n_peerurls, m->islearner);
		if (err == EC_OK && (ec_cluster_get(c, m->id, NULL, NULL) || ec_cluster_is_removed(c, m->id)))
			err = EC_MEMBER_EXIST;
		cc.changes[0].type = m->islearner ? RAFT_CC_ADD_LEARNER : RAFT_CC_ADD_NODE;
		break;
	case SRV_MEMBER_REMOVE: {
		bool learner = false;
		err = ec_cluster_get(c, m->id, &learner, NULL) ? EC_OK : EC_MEMBER_NOT_FOUND;
		if (err == EC_OK && !learner && n->cfg.strict_reconfig_check && n->role == RAFT_LEADER &&
		    !removal_keeps_quorum(n, m->id))
			err = EC_MEMBER_NOT_ENOUGH_STARTED;
		cc.changes[0].type = RAFT_CC_REMOVE_NODE;
		break;
	}
	case SRV_MEMBER_PROMOTE:
	case SRV_MEMBER_PROMOTE_CHECKED:
		err = ec_cluster_check_promote(c, m->id);
		if (err == EC_OK && in->op == SRV_MEMBER_PROMOTE) {
			publish_status(n);
			err = srv_node_learner_ready(n, m->id);
		}
		cc.changes[0].type = RAFT_CC_ADD_NODE;
		break;
	}
	if (err != EC_OK) {
		member_fail(in, err);
		return;
	}
	Metastore__ConfContext cx = METASTORE__CONF_CONTEXT__INIT;
	cx.format = 1;
	cx.request_id = atomic_fetch_add(&n->next_id, 1);
	cx.member = m;
	size_t clen = metastore__conf_context__get_packed_size(&cx);
	uint8_t *cbuf = malloc(clen);
	srv_prop *p = calloc(1, sizeof(*p));
	size_t elen = 0;
	if (cbuf == NULL || p == NULL) {
		free(cbuf);
		free(p);
		member_fail(in, EC_NOMEM);
		return;
	}
	metastore__conf_context__pack(&cx, cbuf);
	cc.context = cbuf;
	cc.context_len = clen;
	raft_confchange_encode(&cc, NULL, 0, &elen);
	p->blob = raft_blob_new(elen);
	if (p->blob == NULL || raft_confchange_encode(&cc, p->blob->data, elen, &elen) != 0 ||
	    srv_wait_add(&n->wait, cx.request_id, in->fn, in->ctx) != 0) {
		free(cbuf);
		prop_free(p);
		member_fail(in, EC_NOMEM);
		return;
	}
	free(cbuf);
	p->id = cx.request_id;
	p->conf = true;
	p->deadline_ms = now + n->cfg.request_timeout_ms;
	p->prev = n->plast;
	if (n->plast)
		n->plast->next = p;
	else
		n->pfirst = p;
	n->plast = p;
	prop_step(n, p);
}

int srv_node_member(srv_node *n, srv_member_op op, const Etcdserverpb__Member *m, srv_wait_fn fn,
		    void *ctx)
{
	srv_input *in = calloc(1, sizeof(*in));
	if (in == NULL)
		return EC_NOMEM;
	size_t len = etcdserverpb__member__get_packed_size(m);
	uint8_t *buf = malloc(len ? len : 1);
	if (buf == NULL) {
		free(in);
		return EC_NOMEM;
	}
	etcdserverpb__member__pack(m, buf);
	in->member = etcdserverpb__member__unpack(NULL, len, buf);
	free(buf);
	if (in->member == NULL) {
		free(in);
		return EC_NOMEM;
	}
	in->kind = IN_MEMBER;
	in->op = op;
	in->fn = fn;
	in->ctx = ctx;
	int err = enqueue(n, in);
	if (err != EC_OK) {
		etcdserverpb__member__free_unpacked(in->member, NULL);
		free(in);
	}
	return err;
}

/* ----------------------------------------------------------- transfer -- */

static void transfer_finish(srv_node *n, int err)
{
	if (n->transfer.fn) {
		srv_wait_fn fn = n->transfer.fn;
		n->transfer.fn = NULL;
		fn(n->transfer.ctx, err, NULL);
	}
}

static void transfer_run(srv_node *n, srv_input *in, uint64_t now)
{
	if (n->role != RAFT_LEADER) {
		in->fn(in->ctx, EC_NOT_LEADER, NULL);
		return;
	}
	raft_status rs;
	raft_get_status(n->r, &rs);
	bool voter = false;
	for (size_t i = 0; i < rs.conf.n_voters; i++)
		voter |= rs.conf.voters[i] == in->id;
	if (!voter) {
		in->fn(in->ctx, EC_BAD_LEADER_TRANSFEREE, NULL);
		return;
	}
	if (in->id == n->cfg.member_id) {
		in->fn(in->ctx, EC_OK, NULL);
		return;
	}
	transfer_finish(n, EC_TIMEOUT_LEADER_TRANSFER); /* a newer request wins */
	n->transfer.target = in->id;
	n->transfer.fn = in->fn;
	n->transfer.ctx = in->ctx;
	n->transfer.deadline_ms = now + n->cfg.request_timeout_ms;
	raft_event ev = {.type = RAFT_EV_TRANSFER};
	ev.transfer.target = in->id;
	raft_step(n->r, &ev);
}

int srv_node_transfer(srv_node *n, uint64_t target, srv_wait_fn fn, void *ctx)
{
	srv_input *in = calloc(1, sizeof(*in));
	if (in == NULL)
		return EC_NOMEM;
	in->kind = IN_TRANSFER;
	in->id = target;
	in->fn = fn;
	in->ctx = ctx;
	int err = enqueue(n, in);
	if (err != EC_OK)
		free(in);
	return err;
}

/* ------------------------------------------------------ peer inputs -- */

void srv_node_step_message(srv_node *n, raft_message *msg, void (*free_msg)(raft_message *))
{
	srv_input *in = calloc(1, sizeof(*in));
	if (in == NULL) {
		free_msg(msg);
		return;
	}
	in->kind = IN_MSG;
	in->msg = msg;
	in->free_msg = free_msg;
	if (enqueue(n, in) != EC_OK) {
		free_msg(msg);
		free(in);
	}
}

static void report(srv_node *n, in_kind kind, uint64_t id, bool failed)
{
	srv_input *in = calloc(1, sizeof(*in));
	if (in == NULL)
		return;
	in->kind = kind;
	in->id = id;
	in->failed = failed;
	if (enqueue(n, in) != EC_OK)
		free(in);
}

void srv_node_report_unreachable(srv_node *n, uint64_t id)
{
	report(n, IN_UNREACHABLE, id, false);
}

void srv_node_report_snapshot(srv_node *n, uint64_t id, bool failed)
{
	report(n, IN_SNAPSTATUS, id, failed);
}

void srv_node_report_removed(srv_node *n, uint64_t by)
{
	report(n, IN_REMOVED, by, false);
}

/* -------------------------------------------------------------- loop -- */

/* Step one drained input; frees it. Normal proposals are batched by the caller. */
static void step_input(srv_node *n, srv_input *in, uint64_t now)
{
	switch (in->kind) {
	case IN_PROP:
		break; /* handled in batches by step_inputs */
	case IN_MSG: {
		raft_event ev = {.type = RAFT_EV_RECEIVE};
		ev.receive.msg = in->msg;
		int rc = raft_step(n->r, &ev);
		if (rc == RAFT_EPOISONED || rc == RAFT_ESTORAGE || rc == RAFT_ECONFLICT) {
			srv_log_error("raft failed on a message", SRV_LF_ERR(raft_strerror(rc)));
			atomic_store(&n->failed, 1);
		}
		in->free_msg(in->msg);
		break;
	}
	case IN_READ:
		in->read->next = n->pending_reads;
		n->pending_reads = in->read;
		break;
	case IN_MEMBER:
		member_run(n, in, now);
		etcdserverpb__member__free_unpacked(in->member, NULL);
		break;
	case IN_TRANSFER:
		transfer_run(n, in, now);
		break;
	case IN_UNREACHABLE: {
		raft_event ev = {.type = RAFT_EV_UNREACHABLE};
		ev.peer.id = in->id;
		raft_step(n->r, &ev);
		break;
	}
	case IN_SNAPSTATUS: {
		raft_event ev = {.type = RAFT_EV_SNAPSHOT_STATUS};
		ev.peer.id = in->id;
		ev.peer.failed = in->failed;
		raft_step(n->r, &ev);
		break;
	}
	case IN_REMOVED:
		if (!n->st.removed)
			srv_log_warn("a peer refused this member's messages: it has been removed "
			             "from the cluster", SRV_LF_ID("remote-peer-id", in->id));
		pthread_mutex_lock(&n->mu);
		n->st.removed = true;
		pthread_mutex_unlock(&n->mu);
		break;
	}
	free(in);
}

static void step_inputs(srv_node *n, srv_input *in, uint64_t now)
{
	srv_prop *batch[256];
	size_t cnt = 0;
	while (in) {
		srv_input *next = in->next;
		if (in->kind == IN_PROP) {
			srv_prop *p = in->prop;
			uint64_t limit = now + n->cfg.request_timeout_ms;
			if (p->deadline_ms == 0 || p->deadline_ms > limit)
				p->deadline_ms = limit;
			p->prev = n->plast;
			if (n->plast)
				n->plast->next = p;
			else
				n->pfirst = p;
			n->plast = p;
			batch[cnt++] = p;
			if (cnt == 256) {
				props_step_batch(n, batch, cnt);
				cnt = 0;
			}
			free(in);
		} else {
			props_step_batch(n, batch, cnt);
			cnt = 0;
			step_input(n, in, now);
		}
		in = next;
	}
	props_step_batch(n, batch, cnt);
	reads_start_round(n, now);
}

/* Fail proposals whose deadline passed. Deadlines differ by client, so the
 * whole FIFO is looked at (it holds only what is in flight). */
static void props_expire(srv_node *n, uint64_t now)
{
	for (srv_prop *p = n->pfirst, *next; p; p = next) {
		next = p->next;
		if (p->deadline_ms > now)
			continue;
		prop_unlink(n, p);
		if (p->req != NULL)
			srv_counter_add(&srv_mserver.proposals_failed, 1);
		complete(n, p->id, n->lead ? EC_TIMEOUT : EC_TIMEOUT_LEADER_FAIL, NULL);
		prop_free(p);
	}
	if (n->transfer.fn) {
		if (n->lead == n->transfer.target)
			transfer_finish(n, EC_OK);
		else if (now >= n->transfer.deadline_ms)
			transfer_finish(n, EC_TIMEOUT_LEADER_TRANSFER);
	}
}

/* Fail everything still waiting (shutdown or a fatal error). */
static void fail_everything(srv_node *n, int err)
{
	while (n->pfirst) {
		srv_prop *p = n->pfirst;
		prop_unlink(n, p);
		if (p->req != NULL)
			srv_counter_add(&srv_mserver.proposals_failed, 1);
		complete(n, p->id, err, NULL);
		prop_free(p);
	}
	read_complete_all(n->pending_reads, err);
	n->pending_reads = NULL;
	while (n->rounds) {
		read_round *rr = n->rounds;
		n->rounds = rr->next;
		read_complete_all(rr->waiters, err);
		free(rr);
	}
	transfer_finish(n, err);
	phys_sweep(n, err);
}

static void fail_inputs(srv_node *n, srv_input *in, int err)
{
	while (in) {
		srv_input *next = in->next;
		switch (in->kind) {
		case IN_PROP:
			if (in->prop->req != NULL)
				srv_counter_add(&srv_mserver.proposals_failed, 1);
			complete(n, in->prop->id, err, NULL);
			prop_free(in->prop);
			break;
		case IN_MSG:
			in->free_msg(in->msg);
			break;
		case IN_READ:
			read_complete_all(in->read, err);
			break;
		case IN_MEMBER:
			in->fn(in->ctx, err, NULL);
			etcdserverpb__member__free_unpacked(in->member, NULL);
			break;
		case IN_TRANSFER:
			in->fn(in->ctx, err, NULL);
			break;
		default:
			break;
		}
		free(in);
		in = next;
	}
}

static void *node_main(void *arg)
{
	pthread_setname_np(pthread_self(), "ms-node");
	tl_node = arg;
	srv_node *n = arg;
	uint64_t next_tick = (uint64_t)srv_mono_ms() + n->cfg.tick_ms;
	int stopping_rounds = 0;
	for (;;) {
		pthread_mutex_lock(&n->mu);
		while (!n->head && !n->stopping) {
			uint64_t now = (uint64_t)srv_mono_ms();
			if (now >= next_tick)
				break;
			uint64_t wait = next_tick - now;
			struct timespec ts;
			clock_gettime(CLOCK_MONOTONIC, &ts);
			ts.tv_sec += (time_t)(wait / 1000);
			ts.tv_nsec += (long)(wait % 1000) * 1000000L;
			if (ts.tv_nsec >= 1000000000L) {
				ts.tv_sec++;
				ts.tv_nsec -= 1000000000L;
			}
			pthread_cond_timedwait(&n->cv, &n->mu, &ts);
		}
		srv_input *batch = n->head;
		n->head = n->tail = NULL;
		int stop = n->stopping;
		pthread_mutex_unlock(&n->mu);

		uint64_t now = (uint64_t)srv_mono_ms();
		if (atomic_load(&n->failed)) {
			fail_inputs(n, batch, EC_STOPPED);
			fail_everything(n, EC_STOPPED);
			if (stop)
				break;
			continue;
		}
		step_inputs(n, batch, now);
		if (now >= next_tick) {
			unsigned ticks = (unsigned)((now - next_tick) / n->cfg.tick_ms) + 1;
			raft_event ev = {.type = RAFT_EV_TICK};
			ev.tick.n = ticks;
			raft_step(n->r, &ev);
			next_tick += (uint64_t)ticks * n->cfg.tick_ms;
		}
		if (drive(n, now) != 0) {
			atomic_store(&n->failed, 1);
			fail_everything(n, EC_INTERNAL);
			continue;
		}
		reads_sweep(n, now, false);
		phys_sweep(n, EC_OK);
		if (now >= n->next_expire_ms) {
			props_expire(n, now);
			/* Proposals raft refused for now (too many uncommitted bytes, a
			 * transfer in progress) are tried again once a tick. */
			if (n->lead != 0)
				props_retry(n);
			n->next_expire_ms = now + n->cfg.tick_ms;
		}
		if (n->st.removed)
			atomic_store(&n->failed, 1);
		/* Stopping: give queued proposals a few rounds to commit (a single member
		 * commits them in the first), then fail the rest. */
		if (stop && (n->pfirst == NULL || ++stopping_rounds > 50)) {
			fail_everything(n, EC_STOPPED);
			break;
		}
	}
	return NULL;
}

int srv_node_propose(srv_node *n, Metastore__InternalRequest *req, srv_wait_fn fn, void *ctx)
{
	return srv_node_propose_within(n, req, -1, fn, ctx);
}

int srv_node_propose_within(srv_node *n, Metastore__InternalRequest *req, int64_t timeout_ms,
			    srv_wait_fn fn, void *ctx)
{
	if (atomic_load(&n->failed))
		return EC_STOPPED;
	req->id = atomic_fetch_add(&n->next_id, 1);
	size_t len = metastore__internal_request__get_packed_size(req);
	if (len > n->cfg.max_request_bytes)
		return EC_REQUEST_TOO_LARGE;
	srv_prop *p = calloc(1, sizeof(*p));
	srv_input *in = calloc(1, sizeof(*in));
	if (p == NULL || in == NULL || (p->blob = raft_blob_new(len)) == NULL) {
		free(p);
		free(in);
		return EC_NOMEM;
	}
	p->id = req->id;
	p->req = req;
	srv_gauge_add(&srv_mserver.proposals_pending, 1); /* until prop_free */
	/* 0 = the request timeout, set when the node thread queues it */
	p->deadline_ms = timeout_ms >= 0 ? (uint64_t)srv_mono_ms() + (uint64_t)timeout_ms : 0;
	metastore__internal_request__pack(req, p->blob->data);
	if (srv_wait_add(&n->wait, p->id, fn, ctx) != 0) {
		prop_free(p);
		free(in);
		return EC_NOMEM;
	}
	in->kind = IN_PROP;
	in->prop = p;
	int err = enqueue(n, in);
	if (err != EC_OK) {
		free(srv_wait_take(&n->wait, p->id));
		prop_free(p);
		free(in);
	}
	return err;
}

/* ---------------------------------------------------------- bootstrap -- */

int srv_node_bootstrap(st_db *db, ec_cluster *cluster, srv_boot_mode mode, uint64_t self,
		       const Metastore__MemberSet *initial, char *errbuf, size_t errlen)
{
	raft_conf_state cs;
	memset(&cs, 0, sizeof(cs));
	int rc = ST_OK;
	switch (mode) {
	case SRV_BOOT_NEW:
		for (size_t i = 0; i < initial->n_members && cs.n_voters < RAFT_MAX_NODES; i++)
			cs.voters[cs.n_voters++] = initial->members[i]->id;
		/* The log starts after the bootstrap snapshot (1, 1); its image is the
		 * empty keyspace, so the applied index is 1 too. */
		if ((rc = ec_cluster_replace(cluster, initial)) == ST_OK &&
		    (rc = conf_store(db, &cs)) == ST_OK &&
		    (rc = snaprec_store(db, 1, 1, &cs)) == ST_OK &&
		    (rc = st_log_reset(db, 1, 1)) == ST_OK &&
		    (rc = st_mvcc_set_applied(db, 1)) == ST_OK) {
			st_hardstate hs = {1, 0, 1};
			rc = st_log_append(db, NULL, 0, &hs, true);
		}
		break;
	case SRV_BOOT_JOIN:
		rc = ec_cluster_replace(cluster, initial);
		break;
	case SRV_BOOT_RESTART:
		if ((rc = conf_load(db, &cs)) == ST_ENOTFOUND) {
			/* A data dir from before the cluster work: a one-voter cluster of
			 * @self whose log starts at 1 (nothing compacted). */
			uint64_t idx = 0, term = 0;
			if (snaprec_load(db, &idx, &term, &cs) == ST_OK) {
				rc = conf_store(db, &cs); /* interrupted bootstrap */
				break;
			}
			memset(&cs, 0, sizeof(cs));
			cs.voters[cs.n_voters++] = self;
			if ((rc = conf_store(db, &cs)) == ST_OK)
				rc = snaprec_store(db, 0, 0, &cs);
			/* Its log holds no configuration entries: compact what is applied,
			 * so that a member added later is sent a snapshot (which carries
			 * the configuration) instead of that log. */
			st_kv_state ks;
			st_kv_state_get(db, &ks);
			if (rc == ST_OK && ks.applied > 0)
				rc = st_log_compact(db, ks.applied);
		}
		/* Format 2: the cluster records are there now. */
		if (rc == ST_OK && st_db_format(db) < 2)
			rc = st_db_set_format(db, 2);
		break;
	}
	if (rc != ST_OK) {
		snprintf(errbuf, errlen, "preparing the raft state: %s", st_strerror(rc));
		return -1;
	}
	return 0;
}

/* --------------------------------------------------------- start/stop -- */

int srv_node_start(const srv_node_config *cfg, srv_node **out, char *errbuf, size_t errlen)
{
	srv_node *n = calloc(1, sizeof(*n));
	if (!n) {
		snprintf(errbuf, errlen, "out of memory");
		return -1;
	}
	n->cfg = *cfg;
	if (!n->cfg.tick_ms)
		n->cfg.tick_ms = 10;
	if (!n->cfg.heartbeat_ticks)
		n->cfg.heartbeat_ticks = 10;
	if (!n->cfg.election_ticks)
		n->cfg.election_ticks = 100;
	if (n->cfg.election_ticks <= n->cfg.heartbeat_ticks)
		n->cfg.election_ticks = n->cfg.heartbeat_ticks + 1;
	if (!n->cfg.snapshot_count)
		n->cfg.snapshot_count = 10000;
	if (!n->cfg.request_timeout_ms)
		n->cfg.request_timeout_ms = 5000 + 2 * n->cfg.election_ticks * n->cfg.tick_ms;
	n->ecache = calloc(ECACHE_SLOTS, sizeof(*n->ecache)); /* NULL: every read goes to the log */
	n->ecache_last = st_log_last_index(cfg->db);
	if (srv_wait_init(&n->wait) != 0) {
		free(n->ecache);
		free(n);
		snprintf(errbuf, errlen, "out of memory");
		return -1;
	}
	pthread_mutex_init(&n->mu, NULL);
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&n->cv, &ca);
	pthread_condattr_destroy(&ca);
	/* Request ids as etcd builds them: member prefix, start time, counter. */
	atomic_init(&n->next_id,
		    ((cfg->member_id & 0xffff) << 48) | ((wall_ms() & 0xffffffffffULL) << 8));
	atomic_init(&n->failed, 0);
	atomic_init(&n->solo, 0);

	raft_config rc = {
		.id = cfg->member_id,
		.election_tick = n->cfg.election_ticks,
		.heartbeat_tick = n->cfg.heartbeat_ticks,
		.applied = ec_kv_applied_index(cfg->kv),
		.max_msg_bytes = 1u << 20,
		.max_inflight = 256,
		.max_uncommitted_bytes = 256u << 20,
		.pre_vote = cfg->pre_vote,
		.check_quorum = true,
		.seed = wall_ms() ^ cfg->member_id,
		.storage =
			{
				.initial_state = rs_initial_state,
				.first_index = rs_first_index,
				.last_index = rs_last_index,
				.term = rs_term,
				.entries = rs_entries,
				.snapshot = rs_snapshot,
				.ud = n,
			},
	};
	/* raft refuses an applied index past the stored commit: a data dir whose
	 * hard state lags (never: apply follows commit) is corrupt. */
	int r = raft_create(&rc, &n->r);
	if (r != 0) {
		snprintf(errbuf, errlen, "starting raft: %s", raft_strerror(r));
		goto fail;
	}
	raft_status rs;
	raft_get_status(n->r, &rs);
	/* A cluster of one voter need not wait an election timeout: campaign now. */
	if (rs.conf.n_voters == 1 && rs.conf.voters[0] == cfg->member_id) {
		raft_event ev = {.type = RAFT_EV_CAMPAIGN};
		raft_step(n->r, &ev);
	}
	n->role = RAFT_FOLLOWER;
	/* Re-apply committed entries past the applied index before serving. */
	if (drive(n, (uint64_t)srv_mono_ms()) != 0) {
		snprintf(errbuf, errlen, "replaying the log failed");
		goto fail;
	}
	publish_status(n);
	if (pthread_create(&n->thread, NULL, node_main, n) != 0) {
		snprintf(errbuf, errlen, "cannot start node thread: %s", strerror(errno));
		goto fail;
	}
	*out = n;
	return 0;
fail:
	fail_everything(n, EC_STOPPED);
	raft_destroy(n->r);
	ecache_free(n);
	srv_wait_destroy(&n->wait, EC_STOPPED);
	pthread_mutex_destroy(&n->mu);
	pthread_cond_destroy(&n->cv);
	free(n);
	return -1;
}

void srv_node_stop(srv_node *n)
{
	if (!n)
		return;
	pthread_mutex_lock(&n->mu);
	n->stopping = 1;
	pthread_cond_signal(&n->cv);
	pthread_mutex_unlock(&n->mu);
	pthread_join(n->thread, NULL);
	/* Inputs queued after the last drain. */
	pthread_mutex_lock(&n->mu);
	srv_input *rest = n->head;
	n->head = n->tail = NULL;
	pthread_mutex_unlock(&n->mu);
	fail_inputs(n, rest, EC_STOPPED);
	fail_everything(n, EC_STOPPED);
	if (n->snap_building) {
		pthread_join(n->snap_thread, NULL);
		raft_blob_unref(n->snap_ready);
	}
	raft_blob_unref(n->snap_img);
	raft_destroy(n->r);
	ecache_free(n);
	srv_wait_destroy(&n->wait, EC_STOPPED);
	pthread_mutex_destroy(&n->mu);
	pthread_cond_destroy(&n->cv);
	free(n);
}
