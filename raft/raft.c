/*
 * raft.c - the handle: creation from persisted state, the event dispatcher
 * (raft_step), the term rules every message passes through, and the ready/advance
 * cycle that hands work to the caller.
 *
 * Output goes into one of two batches (messages + read states, with an arena for the
 * arrays they point to). raft_get_ready() hands the filling batch out and starts filling
 * the other; raft_advance() releases the handed-out batch for reuse. So steps may
 * continue while a ready is being processed, and in steady state nothing is
 * allocated: arenas and arrays keep their capacity across rounds.
 */
#include <string.h>

#include "raft/raft_int.h"

void raft_fatal(raft *r, int err)
{
	if (r->fatal == 0)
		r->fatal = err;
}

static void msg_release(raft_message *m)
{
	for (size_t i = 0; i < m->n_entries; i++)
		raft_blob_unref(m->entries[i].data);
	if (m->snapshot)
		raft_blob_unref(m->snapshot->data);
}

void raft_send(raft *r, raft_message *m)
{
	rbatch *b = &r->batch[r->cur];
	m->from = r->id;
	if (m->term == 0 && m->type != RAFT_MSG_PROPOSE && m->type != RAFT_MSG_READ_INDEX)
		m->term = r->term;
	if (rgrow((void **)&b->msgs, &b->cap_msgs, b->n_msgs + 1, sizeof(raft_message)) != 0) {
		/* dropping a message is always safe: the network may do it too */
		msg_release(m);
		r->oom = true;
		return;
	}
	b->msgs[b->n_msgs++] = *m;
}

raft_message *raft_new_msg(raft *r, raft_msg_type type, raft_id to)
{
	/* a scratch message; raft_send copies it into the batch */
	memset(&r->scratch, 0, sizeof(r->scratch));
	r->scratch.type = type;
	r->scratch.to = to;
	return &r->scratch;
}

static uint64_t splitmix(uint64_t *s)
{
	uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

void raft_reset(raft *r, raft_term term)
{
	if (term != r->term) {
		r->term = term;
		r->vote = 0;
	}
	r->lead = 0;
	r->election_elapsed = 0;
	r->heartbeat_elapsed = 0;
	r->rand_timeout = r->election_tick + (unsigned)(splitmix(&r->rng) % r->election_tick);
	r->transferee = 0;
	rtracker_reset_votes(&r->trk);
	raft_index last = rlog_last(&r->log);
	for (size_t i = 0; i < r->trk.n_prs; i++) {
		rprogress *p = &r->trk.prs[i];
		bool learner = p->is_learner;
		rtracker_add(&r->trk, p->id, p->id == r->id ? last : 0, last + 1, learner);
		p->recent_active = p->id == r->id;
	}
	r->pending_conf_index = 0;
	r->uncommitted = 0;
	raft_read_reset(r);
}

int raft_create(const raft_config *cfg, raft **out)
{
	*out = NULL;
	if (cfg == NULL || cfg->id == 0 || cfg->storage.first_index == NULL ||
	    cfg->storage.last_index == NULL || cfg->storage.term == NULL ||
	    cfg->storage.entries == NULL || cfg->storage.snapshot == NULL ||
	    cfg->storage.initial_state == NULL)
		return RAFT_EINVAL;
	unsigned et = cfg->election_tick ? cfg->election_tick : 10;
	unsigned ht = cfg->heartbeat_tick ? cfg->heartbeat_tick : 1;
	if (ht >= et)
		return RAFT_EINVAL;
	raft *r = ralloc(sizeof(*r));
	if (r == NULL)
		return RAFT_ENOMEM;
	memset(r, 0, sizeof(*r));
	int rc = rtracker_init(&r->trk, cfg->max_inflight ? cfg->max_inflight : 256);
	if (rc != 0) {
		rfree(r);
		return rc;
	}
	rc = rlog_init(&r->log, &cfg->storage);
	if (rc != 0)
		goto fail;
	r->id = cfg->id;
	r->election_tick = et;
	r->heartbeat_tick = ht;
	r->max_msg_bytes = cfg->max_msg_bytes ? cfg->max_msg_bytes : (1u << 20);
	r->max_uncommitted = cfg->max_uncommitted_bytes;
	r->max_entry = cfg->max_entry_bytes;
	r->max_committed = cfg->max_committed_bytes ? cfg->max_committed_bytes : (64u << 20);
	r->pre_vote = cfg->pre_vote;
	r->check_quorum = cfg->check_quorum;
	r->disable_forwarding = cfg->disable_forwarding;
	r->rng = cfg->seed ^ (cfg->id * 0x2545f4914f6cdd1dULL);

	raft_term term = 0;
	raft_id vote = 0;
	raft_index commit = 0;
	raft_conf_state *cs = ralloc(sizeof(*cs));
	if (cs == NULL) {
		rc = RAFT_ENOMEM;
		goto fail;
	}
	memset(cs, 0, sizeof(*cs));
	if (cfg->storage.initial_state(cfg->storage.ud, &term, &vote, &commit, cs) != 0) {
		rfree(cs);
		rc = RAFT_ESTORAGE;
		goto fail;
	}
	raft_tracker_from_conf(r, cs);
	rfree(cs);
	raft_index last = rlog_last(&r->log);
	if (commit > last || r->log.err) {
		rc = r->log.err ? r->log.err : RAFT_EINVAL;
		goto fail;
	}
	if (commit > r->log.committed)
		r->log.committed = commit;
	raft_index applied = cfg->applied;
	if (applied < r->log.applied)
		applied = r->log.applied;
	if (applied > r->log.committed) {
		rc = RAFT_EINVAL;
		goto fail;
	}
	r->log.applied = applied;
	r->term = term;
	r->vote = vote;
	raft_become_follower(r, term, 0);
	r->prev_hs = (raft_hard_state){r->term, r->vote, r->log.committed};
	r->prev_ss = (raft_soft_state){0, RAFT_FOLLOWER};
	*out = r;
	return 0;
fail:
	rlog_free(&r->log);
	rtracker_free(&r->trk);
	rfree(r);
	return rc;
}

static void batch_release(rbatch *b)
{
	for (size_t i = 0; i < b->n_msgs; i++)
		msg_release(&b->msgs[i]);
	b->n_msgs = 0;
	b->n_rs = 0;
	rarena_reset(&b->arena);
}

static void ready_release(raft_ready *rd)
{
	for (size_t i = 0; i < rd->n_entries; i++)
		raft_blob_unref(rd->entries[i].data);
	for (size_t i = 0; i < rd->n_committed; i++)
		raft_blob_unref(rd->committed[i].data);
	if (rd->snapshot)
		raft_blob_unref(rd->snapshot->data);
	rd->n_entries = rd->n_committed = 0;
	rd->snapshot = NULL;
}

void raft_destroy(raft *r)
{
	if (r == NULL)
		return;
	if (r->ready_out)
		ready_release(&r->out_rd);
	for (int i = 0; i < 2; i++) {
		batch_release(&r->batch[i]);
		rarena_free(&r->batch[i].arena);
		rfree(r->batch[i].msgs);
		rfree(r->batch[i].rs);
	}
	rfree(r->reads);
	rlog_free(&r->log);
	rtracker_free(&r->trk);
	rfree(r);
}

/* ----------------------------------------------------------- dispatch -- */

static bool msg_well_formed(const raft *r, const raft_message *m)
{
	if (m == NULL || (unsigned)m->type >= RAFT__MSG_COUNT || m->from == 0 || m->to != r->id ||
	    m->from == r->id)
		return false;
	if (m->n_entries > 0 && m->entries == NULL)
		return false;
	for (size_t i = 0; i < m->n_entries; i++)
		if ((unsigned)m->entries[i].type > RAFT_ENTRY_CONF_CHANGE)
			return false;
	if (m->type == RAFT_MSG_SNAPSHOT) {
		const raft_snapshot *s = m->snapshot;
		if (s == NULL || s->conf.n_voters > RAFT_MAX_NODES ||
		    s->conf.n_voters_outgoing > RAFT_MAX_NODES || s->conf.n_learners > RAFT_MAX_NODES ||
		    s->conf.n_learners_next > RAFT_MAX_NODES)
			return false;
	}
	return true;
}

static void step_leader(raft *r, const raft_message *m)
{
	switch (m->type) {
	case RAFT_MSG_APPEND_RESP:
		raft_handle_append_resp(r, m);
		break;
	case RAFT_MSG_HEARTBEAT_RESP:
		raft_handle_heartbeat_resp(r, m);
		break;
	case RAFT_MSG_PROPOSE:
		raft_propose(r, m->from, m->entries, m->n_entries);
		break;
	case RAFT_MSG_READ_INDEX:
		raft_read_request(r, m->from, m->context);
		break;
	case RAFT_MSG_TRANSFER_LEADER:
		raft_handle_transfer(r, m->context);
		break;
	default:
		break;
	}
}

static void step_candidate(raft *r, const raft_message *m)
{
	switch (m->type) {
	case RAFT_MSG_APPEND:
		raft_become_follower(r, m->term, m->from);
		raft_handle_append(r, m);
		break;
	case RAFT_MSG_HEARTBEAT:
		raft_become_follower(r, m->term, m->from);
		raft_handle_heartbeat(r, m);
		break;
	case RAFT_MSG_SNAPSHOT:
		raft_become_follower(r, m->term, m->from);
		raft_handle_snapshot(r, m);
		break;
	case RAFT_MSG_VOTE_RESP:
	case RAFT_MSG_PREVOTE_RESP:
		raft_handle_vote_resp(r, m);
		break;
	default:
		break;
	}
}

static void forward(raft *r, const raft_message *m)
{
	raft_message *f = raft_new_msg(r, m->type, r->lead);
	f->context = m->context;
	if (m->n_entries > 0) {
		raft_entry *e = rarena_alloc(&r->batch[r->cur].arena, m->n_entries * sizeof(*e));
		if (e == NULL) {
			r->oom = true;
			return;
		}
		for (size_t i = 0; i < m->n_entries; i++) {
			e[i] = m->entries[i];
			raft_blob_ref(e[i].data);
		}
		f->entries = e;
		f->n_entries = m->n_entries;
	}
	raft_send(r, f);
}

static void step_follower(raft *r, const raft_message *m)
{
	switch (m->type) {
	case RAFT_MSG_PROPOSE:
	case RAFT_MSG_READ_INDEX:
	case RAFT_MSG_TRANSFER_LEADER:
		if (r->lead != 0 && r->lead != m->from && !(m->type == RAFT_MSG_PROPOSE && r->disable_forwarding))
			forward(r, m);
		break;
	case RAFT_MSG_APPEND:
		r->election_elapsed = 0;
		r->lead = m->from;
		raft_handle_append(r, m);
		break;
	case RAFT_MSG_HEARTBEAT:
		r->election_elapsed = 0;
		r->lead = m->from;
		raft_handle_heartbeat(r, m);
		break;
	case RAFT_MSG_SNAPSHOT:
		r->election_elapsed = 0;
		r->lead = m->from;
		raft_handle_snapshot(r, m);
		break;
	case RAFT_MSG_TIMEOUT_NOW:
		raft_hup(r, true);
		break;
	case RAFT_MSG_READ_INDEX_RESP:
		raft_add_read_state(r, m->index, m->context);
		break;
	default:
		break;
	}
}

int raft_step_msg(raft *r, const raft_message *m)
{
	if (!msg_well_formed(r, m))
		return 0;
	bool local_kind = m->type == RAFT_MSG_PROPOSE || m->type == RAFT_MSG_READ_INDEX;
	if (!local_kind) {
		if (m->term == 0)
			return 0;
		if (m->term > r->term) {
			if (m->type == RAFT_MSG_VOTE || m->type == RAFT_MSG_PREVOTE) {
				bool force = m->context == 1;
				bool in_lease = r->check_quorum && r->lead != 0 &&
				                r->election_elapsed < r->election_tick;
				if (!force && in_lease)
					return 0;
			}
			if (m->type == RAFT_MSG_PREVOTE) {
				/* answering a pre-vote never changes our term */
			} else if (m->type == RAFT_MSG_PREVOTE_RESP && !m->reject) {
				/* a granted pre-vote carries the future term; it is counted below */
			} else if (m->type == RAFT_MSG_APPEND || m->type == RAFT_MSG_HEARTBEAT ||
			           m->type == RAFT_MSG_SNAPSHOT) {
				raft_become_follower(r, m->term, m->from);
			} else {
				raft_become_follower(r, m->term, 0);
			}
		} else if (m->term < r->term) {
			if (m->type == RAFT_MSG_HEARTBEAT || m->type == RAFT_MSG_APPEND) {
				/* tell a stale leader about the new term so it steps down; unlike
				 * etcd we always answer, because a learner that advanced its term
				 * cannot campaign to make the leader notice */
				raft_send(r, raft_new_msg(r, RAFT_MSG_APPEND_RESP, m->from));
			} else if (m->type == RAFT_MSG_PREVOTE || m->type == RAFT_MSG_VOTE) {
				/* refuse with our term (§5.1): a candidate stuck in an old term learns
				 * the current one instead of campaigning unheard forever */
				raft_message *resp = raft_new_msg(r, m->type == RAFT_MSG_VOTE ? RAFT_MSG_VOTE_RESP
				                                                          : RAFT_MSG_PREVOTE_RESP,
				                                  m->from);
				resp->reject = true;
				raft_voter_commit_hint(r, resp);
				raft_send(r, resp);
			}
			return 0;
		}
	}
	if ((m->type == RAFT_MSG_VOTE_RESP || m->type == RAFT_MSG_PREVOTE_RESP) && m->reject)
		raft_learn_commit(r, m);
	if (m->type == RAFT_MSG_VOTE || m->type == RAFT_MSG_PREVOTE) {
		raft_handle_vote(r, m);
		return 0;
	}
	switch (r->role) {
	case RAFT_LEADER:
		step_leader(r, m);
		break;
	case RAFT_FOLLOWER:
		step_follower(r, m);
		break;
	default:
		step_candidate(r, m);
		break;
	}
	return 0;
}

static int propose_local(raft *r, raft_entry *e, size_t n)
{
	if (n == 0)
		return RAFT_EINVAL;
	if (r->role == RAFT_LEADER)
		return raft_propose(r, r->id, e, n);
	if (r->role != RAFT_FOLLOWER || r->lead == 0)
		return RAFT_ENOLEADER;
	if (r->disable_forwarding)
		return RAFT_ENOLEADER;
	if (r->max_entry)
		for (size_t i = 0; i < n; i++)
			if (raft_entry_size(&e[i]) > r->max_entry)
				return RAFT_ETOOLARGE;
	raft_message m = {.type = RAFT_MSG_PROPOSE, .entries = e, .n_entries = n};
	forward(r, &m);
	return 0;
}

int raft_step(raft *r, const raft_event *ev)
{
	if (r->fatal)
		return RAFT_EPOISONED;
	if (ev == NULL)
		return RAFT_EINVAL;
	r->oom = false;
	int rc = 0;
	switch (ev->type) {
	case RAFT_EV_RECEIVE:
		rc = raft_step_msg(r, ev->receive.msg);
		break;
	case RAFT_EV_TICK:
		for (unsigned i = 0; i < ev->tick.n && !r->fatal; i++)
			raft_tick(r);
		break;
	case RAFT_EV_PROPOSE: {
		size_t n = ev->propose.n;
		if (n == 0 || ev->propose.data == NULL) {
			rc = RAFT_EINVAL;
			break;
		}
		raft_entry *e = rarena_alloc(&r->batch[r->cur].arena, n * sizeof(*e));
		if (e == NULL) {
			rc = RAFT_ENOMEM;
			break;
		}
		for (size_t i = 0; i < n; i++)
			e[i] = (raft_entry){0, 0, RAFT_ENTRY_NORMAL, ev->propose.data[i]};
		rc = propose_local(r, e, n);
		break;
	}
	case RAFT_EV_PROPOSE_CONF_CHANGE: {
		if (ev->conf_change.cc == NULL) {
			rc = RAFT_EINVAL;
			break;
		}
		size_t len = 0;
		rc = raft_confchange_encode(ev->conf_change.cc, NULL, 0, &len);
		if (rc == RAFT_EINVAL)
			break;
		raft_blob *b = raft_blob_new(len);
		if (b == NULL) {
			rc = RAFT_ENOMEM;
			break;
		}
		raft_confchange_encode(ev->conf_change.cc, b->data, len, &len);
		raft_entry e = {0, 0, RAFT_ENTRY_CONF_CHANGE, b};
		rc = propose_local(r, &e, 1);
		raft_blob_unref(b);
		break;
	}
	case RAFT_EV_READ_INDEX:
		rc = raft_read_request(r, 0, ev->read_index.ctx);
		break;
	case RAFT_EV_TRANSFER:
		if (r->role == RAFT_LEADER) {
			raft_handle_transfer(r, ev->transfer.target);
		} else if (r->lead != 0) {
			raft_message m = {.type = RAFT_MSG_TRANSFER_LEADER, .context = ev->transfer.target};
			forward(r, &m);
		} else {
			rc = RAFT_ENOLEADER;
		}
		break;
	case RAFT_EV_CAMPAIGN:
		raft_hup(r, false);
		break;
	case RAFT_EV_UNREACHABLE:
		if (r->role == RAFT_LEADER) {
			rprogress *p = rtracker_get(&r->trk, ev->peer.id);
			if (p != NULL && p->state == RPR_REPLICATE)
				rpr_become_probe(p);
		}
		break;
	case RAFT_EV_SNAPSHOT_STATUS:
		raft_snapshot_status(r, ev->peer.id, ev->peer.failed);
		break;
	default:
		rc = RAFT_EINVAL;
	}
	if (r->log.err)
		raft_fatal(r, r->log.err);
	if (r->fatal)
		return r->fatal;
	if (rc == 0 && r->oom)
		rc = RAFT_ENOMEM;
	return rc;
}

/* -------------------------------------------------------------- ready -- */

static bool has_committed(raft *r)
{
	raft_index lo = r->log.applied + 1;
	raft_index first = rlog_first(&r->log);
	if (lo < first)
		lo = first;
	return r->log.committed >= lo;
}

bool raft_has_ready(const raft *cr)
{
	raft *r = (raft *)cr;
	if (r->fatal || r->ready_out)
		return false;
	const rbatch *b = &r->batch[r->cur];
	if (b->n_msgs > 0 || b->n_rs > 0 || r->log.n > 0 || r->log.usnap != NULL)
		return true;
	if (r->term != r->prev_hs.term || r->vote != r->prev_hs.vote ||
	    r->log.committed != r->prev_hs.commit)
		return true;
	if (r->lead != r->prev_ss.lead || r->role != r->prev_ss.role)
		return true;
	return has_committed(r);
}

int raft_get_ready(raft *r, raft_ready *rd)
{
	if (r->fatal)
		return RAFT_EPOISONED;
	if (r->ready_out)
		return RAFT_EBUSY;
	memset(rd, 0, sizeof(*rd));
	rbatch *b = &r->batch[r->cur];
	rlog *l = &r->log;
	if (l->n > 0) {
		rd->entries = rarena_alloc(&b->arena, l->n * sizeof(raft_entry));
		if (rd->entries == NULL)
			return RAFT_ENOMEM;
		for (size_t i = 0; i < l->n; i++) {
			rd->entries[i] = l->ents[i];
			raft_blob_ref(l->ents[i].data);
		}
		rd->n_entries = l->n;
	}
	if (l->usnap) {
		rd->snapshot = rarena_alloc(&b->arena, sizeof(raft_snapshot));
		if (rd->snapshot == NULL) {
			ready_release(rd);
			return RAFT_ENOMEM;
		}
		*rd->snapshot = *l->usnap;
		raft_blob_ref(rd->snapshot->data);
	}
	if (has_committed(r)) {
		raft_index lo = l->applied + 1;
		raft_index first = rlog_first(l);
		if (lo < first)
			lo = first;
		int rc = rlog_slice(l, lo, l->committed + 1, r->max_committed, &b->arena,
		                    &rd->committed, &rd->n_committed);
		if (rc != 0) {
			ready_release(rd);
			if (l->err)
				raft_fatal(r, l->err);
			return r->fatal ? r->fatal : rc;
		}
	}
	raft_hard_state hs = {r->term, r->vote, l->committed};
	if (hs.term != r->prev_hs.term || hs.vote != r->prev_hs.vote || hs.commit != r->prev_hs.commit) {
		rd->has_hard_state = true;
		rd->hard = hs;
		rd->must_sync = hs.term != r->prev_hs.term || hs.vote != r->prev_hs.vote;
		r->prev_hs = hs;
	}
	if (rd->n_entries > 0 || rd->snapshot)
		rd->must_sync = true;
	raft_soft_state ss = {r->lead, r->role};
	if (ss.lead != r->prev_ss.lead || ss.role != r->prev_ss.role) {
		rd->has_soft_state = true;
		rd->soft = ss;
		r->prev_ss = ss;
	}
	rd->messages = b->msgs;
	rd->n_messages = b->n_msgs;
	rd->read_states = b->rs;
	rd->n_read_states = b->n_rs;

	/* committed bytes no longer count against the uncommitted budget */
	if (r->role == RAFT_LEADER) {
		for (size_t i = 0; i < rd->n_committed; i++) {
			size_t sz = raft_entry_size(&rd->committed[i]);
			r->uncommitted = sz > r->uncommitted ? 0 : r->uncommitted - sz;
		}
	}
	r->ready_stable_index = rd->n_entries ? rd->entries[rd->n_entries - 1].index : 0;
	r->ready_stable_term = rd->n_entries ? rd->entries[rd->n_entries - 1].term : 0;
	r->ready_snap_index = rd->snapshot ? rd->snapshot->index : 0;
	r->ready_applied_to = rd->n_committed ? rd->committed[rd->n_committed - 1].index : 0;
	r->ready_out = true;
	r->cur = !r->cur;
	r->out_rd = *rd;
	return 0;
}

int raft_advance(raft *r, raft_ready *rd)
{
	if (r->fatal)
		return RAFT_EPOISONED;
	if (!r->ready_out || rd == NULL)
		return RAFT_EINVAL;
	ready_release(&r->out_rd);
	memset(rd, 0, sizeof(*rd));
	batch_release(&r->batch[!r->cur]);
	r->ready_out = false;
	if (r->ready_snap_index) {
		rlog_stable_snap_to(&r->log, r->ready_snap_index);
		if (r->log.applied < r->ready_snap_index)
			r->log.applied = r->ready_snap_index;
	}
	if (r->ready_stable_index)
		rlog_stable_to(&r->log, r->ready_stable_index, r->ready_stable_term);
	if (r->ready_applied_to > r->log.applied)
		r->log.applied = r->ready_applied_to;
	if (r->role == RAFT_LEADER && r->trk.cfg.auto_leave && rtracker_is_joint(&r->trk) &&
	    r->log.applied >= r->pending_conf_index) {
		raft_confchange leave = {.transition = RAFT_CC_TRANSITION_AUTO};
		raft_event ev = {.type = RAFT_EV_PROPOSE_CONF_CHANGE, .conf_change.cc = &leave};
		int rc = raft_step(r, &ev);
		if (rc == RAFT_ESTORAGE || rc == RAFT_ECONFLICT)
			return rc;
	}
	if (r->log.err)
		raft_fatal(r, r->log.err);
	return r->fatal;
}

int raft_apply_conf_change(raft *r, const raft_confchange *cc, raft_conf_state *out)
{
	if (r->fatal)
		return RAFT_EPOISONED;
	if (cc == NULL)
		return RAFT_EINVAL;
	int rc = rconf_apply(&r->trk, cc, rlog_last(&r->log));
	if (rc == 0) {
		rprogress *self = rtracker_get(&r->trk, r->id);
		r->is_learner = self != NULL && self->is_learner;
		if (r->role == RAFT_LEADER) {
			if (r->transferee != 0 && !rtracker_is_voter(&r->trk, r->transferee))
				raft_abort_transfer(r);
			if (raft_maybe_commit(r)) {
				raft_bcast_append(r);
			} else {
				for (size_t i = 0; i < r->trk.n_prs; i++)
					if (r->trk.prs[i].id != r->id)
						raft_maybe_send_append(r, r->trk.prs[i].id, false);
			}
			/* removed or demoted: keep replicating, hand leadership over */
			if (!rtracker_is_voter(&r->trk, r->id) && r->transferee == 0)
				raft_handoff(r);
		}
	}
	if (out)
		rtracker_conf_state(&r->trk, out);
	if (r->log.err)
		raft_fatal(r, r->log.err);
	return r->fatal ? r->fatal : rc;
}

void raft_get_status(const raft *cr, raft_status *st)
{
	raft *r = (raft *)cr;
	memset(st, 0, sizeof(*st));
	st->id = r->id;
	st->role = r->role;
	st->lead = r->lead;
	st->term = r->term;
	st->vote = r->vote;
	st->commit = r->log.committed;
	st->applied = r->log.applied;
	st->first_index = rlog_first(&r->log);
	st->last_index = rlog_last(&r->log);
	st->lead_transferee = r->transferee;
	rtracker_conf_state(&r->trk, &st->conf);
}

int raft_log_term(raft *r, raft_index i, raft_term *out)
{
	return rlog_term(&r->log, i, out);
}

int raft_progress(const raft *cr, raft_id id, raft_index *match, bool *active)
{
	raft *r = (raft *)cr;
	if (r->role != RAFT_LEADER)
		return RAFT_ENOTLEADER;
	rprogress *p = rtracker_get(&r->trk, id);
	if (p == NULL)
		return RAFT_ENOTMEMBER;
	if (match)
		*match = p->match;
	if (active)
		*active = id == r->id || p->recent_active;
	return 0;
}
