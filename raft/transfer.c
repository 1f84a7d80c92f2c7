/*
 * transfer.c - leadership transfer (thesis §3.10, etcd's MoveLeader).
 *
 * The leader stops accepting proposals, brings the target's log up to date, then
 * sends it TIMEOUT_NOW; the target campaigns at once (skipping PreVote, and its vote
 * requests override the other members' leader lease). If the target has not taken
 * over within an election timeout the transfer is abandoned and proposals resume.
 * A leader whose own removal was committed (possible when it inherited the entry
 * from a previous leader) keeps leading without counting itself and hands off to
 * the most caught-up voter the same way, so the remaining voters learn the commit.
 */
#include "raft/raft_int.h"

void raft_abort_transfer(raft *r)
{
	r->transferee = 0;
}

static void send_timeout_now(raft *r, raft_id to)
{
	raft_send(r, raft_new_msg(r, RAFT_MSG_TIMEOUT_NOW, to));
}

void raft_transfer_progress(raft *r, rprogress *pr)
{
	if (pr->match == rlog_last(&r->log))
		send_timeout_now(r, pr->id);
}

void raft_handle_transfer(raft *r, raft_id target)
{
	rprogress *pr = rtracker_get(&r->trk, target);
	if (pr == NULL || pr->is_learner || !rtracker_is_voter(&r->trk, target))
		return;
	if (r->transferee != 0) {
		if (r->transferee == target)
			return;
		raft_abort_transfer(r);
	}
	if (target == r->id)
		return;
	r->election_elapsed = 0;
	r->transferee = target;
	if (pr->match == rlog_last(&r->log))
		send_timeout_now(r, target);
	else
		raft_maybe_send_append(r, target, true);
}

void raft_handoff(raft *r)
{
	/* a leader that is no longer a voter hands over to the most caught-up voter */
	rprogress *best = NULL;
	for (size_t i = 0; i < r->trk.n_prs; i++) {
		rprogress *p = &r->trk.prs[i];
		if (p->id == r->id || !rtracker_is_voter(&r->trk, p->id))
			continue;
		if (best == NULL || p->match > best->match)
			best = p;
	}
	if (best != NULL)
		raft_handle_transfer(r, best->id);
}
