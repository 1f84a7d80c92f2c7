/*
 * readindex.c - linearizable reads without log entries (thesis §6.4 ReadIndex),
 * batched per heartbeat round.
 *
 * A read request is answered with an index: once the caller's state machine has
 * applied that index, the read sees every write committed before the request
 * arrived. The leader (1) waits until it has committed an entry of its own term
 * (before that, its commit index may lag the true one), (2) takes its commit index
 * as the read index, and (3) confirms it is still leader by a heartbeat round that
 * started after the request arrived and that a quorum acknowledged. Rounds are
 * numbered; a heartbeat carries the latest round number and followers echo it, so
 * each member's progress remembers the highest round it confirmed and the confirmed
 * round is a quorum "commit" over those numbers. Requests that arrive while a round is
 * in flight wait together and share the next round, which starts when the current one
 * completes or at the next heartbeat tick, whichever is first.
 */
#include <string.h>

#include "raft/raft_int.h"

#define MAX_PENDING_READS 65536

void raft_read_reset(raft *r)
{
	r->n_reads = 0;
	r->read_round = 0;
	r->read_confirmed = 0;
}

void raft_add_read_state(raft *r, raft_index index, uint64_t ctx)
{
	rbatch *b = &r->batch[r->cur];
	if (rgrow((void **)&b->rs, &b->cap_rs, b->n_rs + 1, sizeof(raft_read_state)) != 0) {
		r->oom = true;
		return;
	}
	b->rs[b->n_rs++] = (raft_read_state){index, ctx};
}

static void answer(raft *r, const rread_req *q)
{
	if (q->from == 0 || q->from == r->id) {
		raft_add_read_state(r, q->index, q->ctx);
		return;
	}
	raft_message *m = raft_new_msg(r, RAFT_MSG_READ_INDEX_RESP, q->from);
	m->index = q->index;
	m->context = q->ctx;
	raft_send(r, m);
}

static bool has_waiting(raft *r)
{
	for (size_t i = 0; i < r->n_reads; i++)
		if (r->reads[i].index != 0 && r->reads[i].round == 0)
			return true;
	return false;
}

static void release_confirmed(raft *r)
{
	size_t k = 0;
	for (size_t i = 0; i < r->n_reads; i++) {
		rread_req *q = &r->reads[i];
		if (q->round != 0 && q->round <= r->read_confirmed)
			answer(r, q);
		else
			r->reads[k++] = *q;
	}
	r->n_reads = k;
}

static void check_confirmed(raft *r)
{
	uint64_t c = rtracker_read_confirmed(&r->trk);
	if (c > r->read_round)
		c = r->read_round;
	if (c <= r->read_confirmed)
		return;
	r->read_confirmed = c;
	release_confirmed(r);
}

static void start_round(raft *r)
{
	r->read_round++;
	for (size_t i = 0; i < r->n_reads; i++)
		if (r->reads[i].index != 0 && r->reads[i].round == 0)
			r->reads[i].round = r->read_round;
	rprogress *self = rtracker_get(&r->trk, r->id);
	if (self)
		self->read_ack = r->read_round;
	raft_bcast_heartbeat(r, r->read_round);
	check_confirmed(r);
	if (r->read_confirmed == r->read_round && has_waiting(r))
		start_round(r);
}

int raft_read_request(raft *r, raft_id from, uint64_t ctx)
{
	if (r->role != RAFT_LEADER) {
		if (from != 0)
			return 0; /* a forwarded request reached a non-leader: dropped */
		if (r->role != RAFT_FOLLOWER || r->lead == 0)
			return RAFT_ENOLEADER;
		raft_message *m = raft_new_msg(r, RAFT_MSG_READ_INDEX, r->lead);
		m->context = ctx;
		raft_send(r, m);
		return 0;
	}
	if (r->n_reads >= MAX_PENDING_READS)
		return RAFT_ENOMEM;
	if (rgrow((void **)&r->reads, &r->cap_reads, r->n_reads + 1, sizeof(rread_req)) != 0)
		return RAFT_ENOMEM;
	rread_req *q = &r->reads[r->n_reads++];
	q->from = from;
	q->ctx = ctx;
	q->round = 0;
	q->index = raft_committed_in_term(r) ? r->log.committed : 0;
	if (q->index != 0 && r->read_confirmed == r->read_round)
		start_round(r);
	return 0;
}

void raft_read_ack(raft *r, raft_id from, uint64_t round)
{
	if (r->role != RAFT_LEADER || round == 0 || round > r->read_round)
		return;
	rprogress *pr = rtracker_get(&r->trk, from);
	if (pr == NULL)
		return;
	if (pr->read_ack < round)
		pr->read_ack = round;
	check_confirmed(r);
	if (r->read_confirmed == r->read_round && has_waiting(r))
		start_round(r);
}

void raft_read_on_commit(raft *r)
{
	if (r->role != RAFT_LEADER || r->n_reads == 0 || !raft_committed_in_term(r))
		return;
	bool any = false;
	for (size_t i = 0; i < r->n_reads; i++) {
		if (r->reads[i].index == 0) {
			r->reads[i].index = r->log.committed;
			any = true;
		}
	}
	if (any && r->read_confirmed == r->read_round)
		start_round(r);
}

bool raft_read_on_heartbeat(raft *r)
{
	if (!has_waiting(r))
		return false;
	start_round(r);
	return true;
}
