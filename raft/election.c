/*
 * election.c - roles and leader election (Raft §5.2, thesis §9.6 PreVote, §6.2
 * CheckQuorum): role transitions, the election timer, campaigning, and the vote
 * rules.
 *
 * A follower (or candidate) that hears nothing for its randomized timeout campaigns.
 * With PreVote it first asks, without changing its term, whether a quorum would vote
 * for it; only then does it bump the term, so a partitioned member rejoining cannot
 * depose a healthy leader. A voter grants at most one vote per term, and only to a
 * candidate whose log is at least as up to date as its own (§5.4.1). With
 * CheckQuorum, a leader that did not hear from a quorum during an election timeout
 * steps down, and members that heard from a leader recently ignore vote requests
 * (the leader lease) unless the request comes from a leadership transfer.
 */
#include "raft/raft_int.h"

void raft_become_follower(raft *r, raft_term term, raft_id lead)
{
	raft_reset(r, term);
	r->lead = lead;
	r->role = RAFT_FOLLOWER;
}

void raft_become_precandidate(raft *r)
{
	/* no term change, no vote: only a poll of the voters */
	rtracker_reset_votes(&r->trk);
	r->role = RAFT_PRECANDIDATE;
	r->lead = 0;
}

void raft_become_candidate(raft *r)
{
	raft_reset(r, r->term + 1);
	r->vote = r->id;
	r->role = RAFT_CANDIDATE;
}

int raft_become_leader(raft *r)
{
	raft_reset(r, r->term);
	r->lead = r->id;
	r->role = RAFT_LEADER;
	rprogress *self = rtracker_get(&r->trk, r->id);
	if (self)
		rpr_become_replicate(self);
	r->pending_conf_index = rlog_last(&r->log);
	/* an empty entry of the new term lets earlier entries commit (§5.4.2) */
	raft_entry noop = {0, 0, RAFT_ENTRY_NORMAL, NULL};
	int rc = raft_append_entries(r, &noop, 1);
	if (rc != 0) {
		/* cannot lead without the no-op: stepping down is always safe */
		raft_become_follower(r, r->term, 0);
		r->oom = true;
		return rc;
	}
	return 0;
}

bool raft_promotable(raft *r)
{
	rprogress *p = rtracker_get(&r->trk, r->id);
	return p != NULL && !p->is_learner && r->log.usnap == NULL &&
	       rtracker_is_voter(&r->trk, r->id);
}

static void win(raft *r)
{
	if (raft_become_leader(r) == 0)
		raft_bcast_append(r);
}

void raft_campaign(raft *r, bool pre, bool transfer)
{
	raft_term vote_term;
	raft_msg_type type;
	if (pre) {
		raft_become_precandidate(r);
		vote_term = r->term + 1;
		type = RAFT_MSG_PREVOTE;
	} else {
		raft_become_candidate(r);
		vote_term = r->term;
		type = RAFT_MSG_VOTE;
	}
	rtracker_record_vote(&r->trk, r->id, true);
	if (rtracker_tally(&r->trk) == RVOTE_WON) {
		/* a single voter wins at once */
		if (pre)
			raft_campaign(r, false, transfer);
		else
			win(r);
		return;
	}
	raft_id ids[RAFT_MAX_NODES * 2];
	size_t n = rtracker_voter_ids(&r->trk, ids);
	raft_index last = rlog_last(&r->log);
	raft_term last_term = rlog_last_term(&r->log);
	for (size_t i = 0; i < n; i++) {
		if (ids[i] == r->id)
			continue;
		raft_message *m = raft_new_msg(r, type, ids[i]);
		m->term = vote_term;
		m->index = last;
		m->log_term = last_term;
		m->context = transfer ? 1 : 0;
		raft_send(r, m);
	}
}

void raft_hup(raft *r, bool transfer)
{
	if (r->role == RAFT_LEADER || !raft_promotable(r))
		return;
	/* a configuration committed but not applied may change who votes: wait */
	if (r->log.committed > r->log.applied &&
	    rlog_has_conf(&r->log, r->log.applied + 1, r->log.committed))
		return;
	raft_campaign(r, r->pre_vote && !transfer, transfer);
}

void raft_handle_vote(raft *r, const raft_message *m)
{
	bool pre = m->type == RAFT_MSG_PREVOTE;
	bool can_vote = r->vote == m->from || (r->vote == 0 && r->lead == 0) ||
	                (pre && m->term > r->term);
	raft_message *resp = raft_new_msg(r, pre ? RAFT_MSG_PREVOTE_RESP : RAFT_MSG_VOTE_RESP, m->from);
	if (can_vote && rlog_up_to_date(&r->log, m->index, m->log_term)) {
		/* a granted (pre-)vote answers in the requested term */
		resp->term = m->term;
		raft_send(r, resp);
		if (!pre) {
			r->election_elapsed = 0;
			r->vote = m->from;
		}
	} else {
		resp->term = r->term;
		resp->reject = true;
		raft_voter_commit_hint(r, resp);
		raft_send(r, resp);
	}
}

void raft_voter_commit_hint(raft *r, raft_message *resp)
{
	/* tell the candidate what we know is committed, named by (index, term) */
	resp->commit = r->log.committed;
	resp->log_term = rlog_term0(&r->log, r->log.committed);
}

void raft_learn_commit(raft *r, const raft_message *m)
{
	/* An entry known committed is committed wherever the same (index, term) is
	 * stored (log matching), so a candidate may adopt a voter's commit index when its
	 * log holds that entry. This lets voters learn that a configuration change was
	 * committed after the leader that committed it stepped down or left. */
	if (m->commit > r->log.committed && m->commit <= rlog_last(&r->log) &&
	    rlog_match_term(&r->log, m->commit, m->log_term))
		rlog_commit_to(&r->log, m->commit);
}

void raft_handle_vote_resp(raft *r, const raft_message *m)
{
	if ((r->role == RAFT_CANDIDATE && m->type != RAFT_MSG_VOTE_RESP) ||
	    (r->role == RAFT_PRECANDIDATE && m->type != RAFT_MSG_PREVOTE_RESP))
		return;
	rtracker_record_vote(&r->trk, m->from, !m->reject);
	switch (rtracker_tally(&r->trk)) {
	case RVOTE_WON:
		if (r->role == RAFT_PRECANDIDATE)
			raft_campaign(r, false, false);
		else
			win(r);
		break;
	case RVOTE_LOST:
		raft_become_follower(r, r->term, 0);
		break;
	default:
		break;
	}
}

static void tick_leader(raft *r)
{
	r->heartbeat_elapsed++;
	r->election_elapsed++;
	if (r->election_elapsed >= r->election_tick) {
		r->election_elapsed = 0;
		if (r->check_quorum && !rtracker_quorum_active(&r->trk, r->id)) {
			raft_become_follower(r, r->term, 0);
			return;
		}
		if (r->transferee != 0)
			raft_abort_transfer(r);
		if (!rtracker_is_voter(&r->trk, r->id))
			raft_handoff(r);
	}
	if (r->heartbeat_elapsed >= r->heartbeat_tick) {
		r->heartbeat_elapsed = 0;
		if (!raft_read_on_heartbeat(r))
			raft_bcast_heartbeat(r, r->read_round);
	}
}

void raft_tick(raft *r)
{
	if (r->role == RAFT_LEADER) {
		tick_leader(r);
		return;
	}
	if (r->election_elapsed < RAFT_MAX_ELAPSED)
		r->election_elapsed++;
	if (r->election_elapsed >= r->rand_timeout && raft_promotable(r)) {
		r->election_elapsed = 0;
		raft_hup(r, false);
	}
}
