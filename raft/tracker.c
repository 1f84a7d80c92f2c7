/*
 * tracker.c - the leader's view of every member: the configuration (voters, the
 * outgoing half of a joint configuration, learners) and per-member progress.
 *
 * Progress moves between three states. PROBE: the leader does not know where the
 * follower's log ends and sends one APPEND per heartbeat round until an answer comes
 * back. REPLICATE: the leader streams APPENDs optimistically, at most max_inflight
 * unacknowledged at a time (the inflight window, a ring of last indexes). SNAPSHOT:
 * the follower needs entries that were compacted; nothing is sent until the snapshot
 * is reported applied or failed. Inflight buffers come from one pool allocated at
 * creation, so membership changes never allocate.
 */
#include <string.h>

#include "raft/raft_int.h"

bool rid_in(const raft_id *ids, size_t n, raft_id id)
{
	for (size_t i = 0; i < n; i++)
		if (ids[i] == id)
			return true;
	return false;
}

bool rid_add(raft_id *ids, size_t *n, raft_id id)
{
	if (rid_in(ids, *n, id))
		return true;
	if (*n >= RAFT_MAX_NODES)
		return false;
	ids[(*n)++] = id;
	return true;
}

void rid_del(raft_id *ids, size_t *n, raft_id id)
{
	for (size_t i = 0; i < *n; i++) {
		if (ids[i] == id) {
			memmove(&ids[i], &ids[i + 1], (*n - i - 1) * sizeof(*ids));
			(*n)--;
			return;
		}
	}
}

/* ----------------------------------------------------------- inflights -- */

bool rinfl_full(const rinflights *f)
{
	return f->count >= f->cap;
}

void rinfl_add(rinflights *f, raft_index last)
{
	if (rinfl_full(f))
		return; /* callers check paused() first; never overwrite */
	f->buf[(f->start + f->count) % f->cap] = last;
	f->count++;
}

void rinfl_free_le(rinflights *f, raft_index to)
{
	while (f->count > 0 && f->buf[f->start] <= to) {
		f->start = (f->start + 1) % f->cap;
		f->count--;
	}
	if (f->count == 0)
		f->start = 0;
}

void rinfl_reset(rinflights *f)
{
	f->start = 0;
	f->count = 0;
}

/* ------------------------------------------------------------ progress -- */

static void pr_reset_state(rprogress *p, rpr_state s)
{
	p->probe_sent = false;
	p->pending_snapshot = 0;
	p->state = s;
	rinfl_reset(&p->infl);
}

void rpr_become_probe(rprogress *p)
{
	if (p->state == RPR_SNAPSHOT) {
		raft_index pending = p->pending_snapshot;
		pr_reset_state(p, RPR_PROBE);
		p->next = (p->match + 1 > pending + 1) ? p->match + 1 : pending + 1;
	} else {
		pr_reset_state(p, RPR_PROBE);
		p->next = p->match + 1;
	}
}

void rpr_become_replicate(rprogress *p)
{
	pr_reset_state(p, RPR_REPLICATE);
	p->next = p->match + 1;
}

void rpr_become_snapshot(rprogress *p, raft_index snap_index)
{
	pr_reset_state(p, RPR_SNAPSHOT);
	p->pending_snapshot = snap_index;
}

bool rpr_maybe_update(rprogress *p, raft_index n)
{
	bool updated = false;
	if (p->match < n) {
		p->match = n;
		updated = true;
		p->probe_sent = false;
	}
	if (p->next < n + 1)
		p->next = n + 1;
	return updated;
}

bool rpr_maybe_decr_to(rprogress *p, raft_index rejected, raft_index match_hint)
{
	if (p->state == RPR_REPLICATE) {
		/* a rejection of something already matched is stale */
		if (rejected <= p->match)
			return false;
		p->next = p->match + 1;
		return true;
	}
	/* in probe state only a rejection of the latest probe counts */
	if (p->next == 0 || p->next - 1 != rejected)
		return false;
	raft_index n = rejected < match_hint + 1 ? rejected : match_hint + 1;
	if (n <= p->match)
		n = p->match + 1;
	p->next = n < 1 ? 1 : n;
	p->probe_sent = false;
	return true;
}

bool rpr_paused(const rprogress *p)
{
	switch (p->state) {
	case RPR_PROBE:
		return p->probe_sent;
	case RPR_REPLICATE:
		return rinfl_full(&p->infl);
	default:
		return true;
	}
}

/* ------------------------------------------------------------- tracker -- */

int rtracker_init(rtracker *t, size_t max_inflight)
{
	memset(t, 0, sizeof(*t));
	t->max_inflight = max_inflight;
	t->infl_pool = ralloc(sizeof(raft_index) * max_inflight * RAFT_MAX_NODES);
	if (t->infl_pool == NULL)
		return RAFT_ENOMEM;
	for (size_t i = 0; i < RAFT_MAX_NODES; i++) {
		t->prs[i].infl.buf = t->infl_pool + i * max_inflight;
		t->prs[i].infl.cap = max_inflight;
	}
	return 0;
}

void rtracker_free(rtracker *t)
{
	rfree(t->infl_pool);
	t->infl_pool = NULL;
}

rprogress *rtracker_get(rtracker *t, raft_id id)
{
	for (size_t i = 0; i < t->n_prs; i++)
		if (t->prs[i].id == id)
			return &t->prs[i];
	return NULL;
}

rprogress *rtracker_add(rtracker *t, raft_id id, raft_index match, raft_index next, bool learner)
{
	rprogress *p = rtracker_get(t, id);
	if (p == NULL) {
		if (t->n_prs >= RAFT_MAX_NODES)
			return NULL;
		p = &t->prs[t->n_prs++];
	}
	raft_index *buf = p->infl.buf;
	memset(p, 0, sizeof(*p));
	p->infl.buf = buf;
	p->infl.cap = t->max_inflight;
	p->id = id;
	p->match = match;
	p->next = next ? next : 1;
	p->state = RPR_PROBE;
	p->is_learner = learner;
	p->recent_active = true;
	return p;
}

void rtracker_remove(rtracker *t, raft_id id)
{
	for (size_t i = 0; i < t->n_prs; i++) {
		if (t->prs[i].id != id)
			continue;
		rprogress tmp = t->prs[i];
		t->prs[i] = t->prs[t->n_prs - 1];
		t->prs[t->n_prs - 1] = tmp;
		t->n_prs--;
		return;
	}
}

bool rtracker_is_joint(const rtracker *t)
{
	return t->cfg.n_outgoing > 0;
}

bool rtracker_is_voter(const rtracker *t, raft_id id)
{
	return rid_in(t->cfg.voters, t->cfg.n_voters, id) ||
	       rid_in(t->cfg.outgoing, t->cfg.n_outgoing, id);
}

static bool match_of(void *ud, raft_id id, raft_index *out)
{
	rprogress *p = rtracker_get(ud, id);
	if (p == NULL)
		return false;
	*out = p->match;
	return true;
}

static rmajority in_half(const rtracker *t)
{
	return (rmajority){t->cfg.voters, t->cfg.n_voters};
}

static rmajority out_half(const rtracker *t)
{
	return (rmajority){t->cfg.outgoing, t->cfg.n_outgoing};
}

raft_index rtracker_committed(rtracker *t)
{
	raft_index c = rjoint_committed(in_half(t), out_half(t), match_of, t);
	return c == UINT64_MAX ? 0 : c;
}

static bool read_ack_of(void *ud, raft_id id, raft_index *out)
{
	rprogress *p = rtracker_get(ud, id);
	if (p == NULL)
		return false;
	*out = p->read_ack;
	return true;
}

uint64_t rtracker_read_confirmed(rtracker *t)
{
	raft_index c = rjoint_committed(in_half(t), out_half(t), read_ack_of, t);
	return c == UINT64_MAX ? 0 : c;
}

void rtracker_reset_votes(rtracker *t)
{
	t->n_votes = 0;
}

void rtracker_record_vote(rtracker *t, raft_id id, bool granted)
{
	for (size_t i = 0; i < t->n_votes; i++)
		if (t->vote_ids[i] == id)
			return; /* the first answer counts */
	if (t->n_votes >= RAFT_MAX_NODES)
		return;
	t->vote_ids[t->n_votes] = id;
	t->vote_granted[t->n_votes] = granted;
	t->n_votes++;
}

static int vote_of(void *ud, raft_id id)
{
	rtracker *t = ud;
	for (size_t i = 0; i < t->n_votes; i++)
		if (t->vote_ids[i] == id)
			return t->vote_granted[i] ? 1 : 0;
	return -1;
}

rvote_result rtracker_tally(rtracker *t)
{
	return rjoint_vote(in_half(t), out_half(t), vote_of, t);
}

typedef struct {
	rtracker *t;
	raft_id self;
} active_ctx;

static int active_of(void *ud, raft_id id)
{
	active_ctx *c = ud;
	if (id == c->self)
		return 1;
	rprogress *p = rtracker_get(c->t, id);
	return (p != NULL && p->recent_active) ? 1 : 0;
}

bool rtracker_quorum_active(rtracker *t, raft_id self)
{
	active_ctx c = {t, self};
	bool ok = rjoint_vote(in_half(t), out_half(t), active_of, &c) == RVOTE_WON;
	for (size_t i = 0; i < t->n_prs; i++)
		if (t->prs[i].id != self)
			t->prs[i].recent_active = false;
	return ok;
}

void rtracker_conf_state(const rtracker *t, raft_conf_state *cs)
{
	memset(cs, 0, sizeof(*cs));
	memcpy(cs->voters, t->cfg.voters, t->cfg.n_voters * sizeof(raft_id));
	cs->n_voters = t->cfg.n_voters;
	memcpy(cs->voters_outgoing, t->cfg.outgoing, t->cfg.n_outgoing * sizeof(raft_id));
	cs->n_voters_outgoing = t->cfg.n_outgoing;
	memcpy(cs->learners, t->cfg.learners, t->cfg.n_learners * sizeof(raft_id));
	cs->n_learners = t->cfg.n_learners;
	memcpy(cs->learners_next, t->cfg.learners_next, t->cfg.n_learners_next * sizeof(raft_id));
	cs->n_learners_next = t->cfg.n_learners_next;
	cs->auto_leave = t->cfg.auto_leave;
}

size_t rtracker_voter_ids(const rtracker *t, raft_id *out)
{
	size_t n = 0;
	for (size_t i = 0; i < t->cfg.n_voters; i++)
		out[n++] = t->cfg.voters[i];
	for (size_t i = 0; i < t->cfg.n_outgoing; i++)
		if (!rid_in(out, n, t->cfg.outgoing[i]))
			out[n++] = t->cfg.outgoing[i];
	return n;
}
