/*
 * replication.c - log replication (Raft §5.3) and commitment (§5.4.2).
 *
 * The leader appends proposals to its log and streams APPENDs to each follower
 * according to its progress: one probe at a time until the follower's log end is
 * known, then batches of up to max_msg_bytes with at most max_inflight unacknowledged
 * (flow control). A follower accepts an APPEND only when its log holds the preceding
 * entry with the same term (log matching), truncating any conflicting suffix; on
 * rejection it hints where the logs may agree (the last index whose term is not
 * above the leader's term at the probe), so the leader skips a whole term per round
 * trip instead of one entry (fast back-off). The leader commits an index once a
 * quorum (joint-aware) has it and it belongs to the current term; earlier entries
 * commit with it. Heartbeats carry the commit index, capped at what each follower is
 * known to store.
 */
#include "raft/raft_int.h"

bool raft_committed_in_term(raft *r)
{
	return rlog_term0(&r->log, r->log.committed) == r->term;
}

bool raft_maybe_send_append(raft *r, raft_id to, bool send_if_empty)
{
	rprogress *pr = rtracker_get(&r->trk, to);
	if (pr == NULL || to == r->id || rpr_paused(pr))
		return false;
	raft_index prev = pr->next - 1;
	raft_term prev_term = 0;
	int rc = rlog_term(&r->log, prev, &prev_term);
	raft_entry *ents = NULL;
	size_t n = 0;
	if (rc == 0) {
		raft_index last = rlog_last(&r->log);
		if (pr->next <= last)
			rc = rlog_slice(&r->log, pr->next, last + 1, r->max_msg_bytes,
			                &r->batch[r->cur].arena, &ents, &n);
	}
	if (rc == RAFT_ECOMPACTED)
		return raft_send_snapshot(r, pr);
	if (rc == RAFT_ENOMEM)
		r->oom = true;
	if (rc != 0)
		return false;
	if (n == 0 && !send_if_empty)
		return false;
	raft_message *m = raft_new_msg(r, RAFT_MSG_APPEND, to);
	m->index = prev;
	m->log_term = prev_term;
	m->entries = ents;
	m->n_entries = n;
	m->commit = r->log.committed;
	if (n > 0) {
		if (pr->state == RPR_REPLICATE) {
			raft_index last = ents[n - 1].index;
			pr->next = last + 1;
			rinfl_add(&pr->infl, last);
		} else if (pr->state == RPR_PROBE) {
			pr->probe_sent = true;
		}
	}
	raft_send(r, m);
	return true;
}

void raft_bcast_append(raft *r)
{
	for (size_t i = 0; i < r->trk.n_prs; i++) {
		raft_id id = r->trk.prs[i].id;
		if (id == r->id)
			continue;
		/* in replicate state keep streaming until the window or the log is exhausted */
		if (raft_maybe_send_append(r, id, true))
			while (raft_maybe_send_append(r, id, false)) {
			}
	}
}

void raft_send_heartbeat(raft *r, raft_id to, uint64_t ctx)
{
	rprogress *pr = rtracker_get(&r->trk, to);
	if (pr == NULL)
		return;
	raft_message *m = raft_new_msg(r, RAFT_MSG_HEARTBEAT, to);
	/* never let a follower commit past what it is known to match */
	m->commit = pr->match < r->log.committed ? pr->match : r->log.committed;
	m->context = ctx;
	raft_send(r, m);
}

void raft_bcast_heartbeat(raft *r, uint64_t ctx)
{
	for (size_t i = 0; i < r->trk.n_prs; i++)
		if (r->trk.prs[i].id != r->id)
			raft_send_heartbeat(r, r->trk.prs[i].id, ctx);
}

bool raft_maybe_commit(raft *r)
{
	raft_index c = rtracker_committed(&r->trk);
	if (rlog_maybe_commit(&r->log, c, r->term)) {
		raft_read_on_commit(r);
		return true;
	}
	return false;
}

int raft_append_entries(raft *r, raft_entry *e, size_t n)
{
	raft_index li = rlog_last(&r->log);
	for (size_t i = 0; i < n; i++) {
		e[i].term = r->term;
		e[i].index = li + 1 + i;
	}
	int rc = rlog_append(&r->log, e, n);
	if (rc != 0)
		return rc;
	rprogress *self = rtracker_get(&r->trk, r->id);
	if (self)
		rpr_maybe_update(self, li + n);
	raft_maybe_commit(r);
	return 0;
}

int raft_propose(raft *r, raft_id from, const raft_entry *in, size_t n)
{
	if (n == 0)
		return RAFT_EINVAL;
	if (rtracker_get(&r->trk, r->id) == NULL || !rtracker_is_voter(&r->trk, r->id))
		return RAFT_ENOTMEMBER;
	if (r->transferee != 0)
		return RAFT_ETRANSFERRING;
	size_t bytes = 0;
	for (size_t i = 0; i < n; i++) {
		size_t sz = raft_entry_size(&in[i]);
		if (r->max_entry && sz > r->max_entry)
			return RAFT_ETOOLARGE;
		bytes += sz;
		if (in[i].type == RAFT_ENTRY_CONF_CHANGE) {
			raft_confchange cc;
			const raft_blob *b = in[i].data;
			if (b == NULL || raft_confchange_decode(b->data, b->len, &cc) != 0)
				return RAFT_ECONFINVALID;
			if (r->pending_conf_index > r->log.applied)
				return RAFT_ECONFPENDING;
			rconfig next;
			if (rconf_compute(&r->trk.cfg, &cc, &next) != 0)
				return RAFT_ECONFINVALID;
			/* leaving a joint state is always allowed (a leader that is only in the
			 * outgoing half hands off once it is applied) */
			if (!rconf_is_leave(&cc) && !rid_in(next.voters, next.n_voters, r->id))
				return RAFT_ECONFLEADER;
			for (size_t j = 0; j < i; j++)
				if (in[j].type == RAFT_ENTRY_CONF_CHANGE)
					return RAFT_ECONFPENDING;
		}
	}
	if (r->max_uncommitted && r->uncommitted > 0 && r->uncommitted + bytes > r->max_uncommitted)
		return RAFT_EUNCOMMITTEDFULL;
	raft_entry *e = rarena_alloc(&r->batch[r->cur].arena, n * sizeof(*e));
	if (e == NULL)
		return RAFT_ENOMEM;
	for (size_t i = 0; i < n; i++)
		e[i] = (raft_entry){0, 0, in[i].type, in[i].data};
	int rc = raft_append_entries(r, e, n);
	if (rc != 0)
		return rc;
	for (size_t i = 0; i < n; i++)
		if (e[i].type == RAFT_ENTRY_CONF_CHANGE)
			r->pending_conf_index = e[i].index;
	r->uncommitted += bytes;
	(void)from;
	raft_bcast_append(r);
	return 0;
}

void raft_handle_append(raft *r, const raft_message *m)
{
	raft_message *resp;
	if (m->index < r->log.committed) {
		resp = raft_new_msg(r, RAFT_MSG_APPEND_RESP, m->from);
		resp->index = r->log.committed;
		raft_send(r, resp);
		return;
	}
	raft_index last_new = 0;
	int rc = rlog_maybe_append(&r->log, m->index, m->log_term, m->commit, m->entries,
	                           m->n_entries, &last_new);
	if (rc == 0) {
		resp = raft_new_msg(r, RAFT_MSG_APPEND_RESP, m->from);
		resp->index = last_new;
		raft_send(r, resp);
		return;
	}
	if (rc == RAFT_ENOMEM) {
		r->oom = true; /* no answer: the leader retries */
		return;
	}
	if (rc == RAFT_ECONFLICT) {
		raft_fatal(r, rc);
		return;
	}
	/* reject, hinting the last index whose term is not above the probe's term */
	raft_index hint = m->index;
	raft_index last = rlog_last(&r->log);
	if (hint > last)
		hint = last;
	hint = rlog_find_conflict_by_term(&r->log, hint, m->log_term);
	resp = raft_new_msg(r, RAFT_MSG_APPEND_RESP, m->from);
	resp->index = m->index;
	resp->reject = true;
	resp->reject_hint = hint;
	resp->log_term = rlog_term0(&r->log, hint);
	raft_send(r, resp);
}

void raft_handle_append_resp(raft *r, const raft_message *m)
{
	rprogress *pr = rtracker_get(&r->trk, m->from);
	if (pr == NULL)
		return;
	pr->recent_active = true;
	if (m->reject) {
		raft_index next_probe = m->reject_hint;
		if (m->log_term > 0)
			next_probe = rlog_find_conflict_by_term(&r->log, m->reject_hint, m->log_term);
		if (rpr_maybe_decr_to(pr, m->index, next_probe)) {
			if (pr->state == RPR_REPLICATE)
				rpr_become_probe(pr);
			raft_maybe_send_append(r, m->from, true);
		}
		return;
	}
	if (m->index > rlog_last(&r->log))
		return; /* claims entries we never had: ignore */
	bool was_paused = rpr_paused(pr);
	if (!rpr_maybe_update(pr, m->index))
		return;
	if (pr->state == RPR_PROBE) {
		rpr_become_replicate(pr);
	} else if (pr->state == RPR_SNAPSHOT && pr->match >= pr->pending_snapshot) {
		rpr_become_probe(pr);
		rpr_become_replicate(pr);
	} else if (pr->state == RPR_REPLICATE) {
		rinfl_free_le(&pr->infl, m->index);
	}
	if (raft_maybe_commit(r))
		raft_bcast_append(r);
	else if (was_paused)
		raft_maybe_send_append(r, m->from, true);
	while (raft_maybe_send_append(r, m->from, false)) {
	}
	if (r->role == RAFT_LEADER && m->from == r->transferee)
		raft_transfer_progress(r, pr);
}

void raft_handle_heartbeat(raft *r, const raft_message *m)
{
	/* a commit beyond our log would mean the leader's view of us is wrong: skip it */
	if (m->commit <= rlog_last(&r->log))
		rlog_commit_to(&r->log, m->commit);
	raft_message *resp = raft_new_msg(r, RAFT_MSG_HEARTBEAT_RESP, m->from);
	resp->context = m->context;
	raft_send(r, resp);
}

void raft_handle_heartbeat_resp(raft *r, const raft_message *m)
{
	rprogress *pr = rtracker_get(&r->trk, m->from);
	if (pr == NULL)
		return;
	pr->recent_active = true;
	pr->probe_sent = false;
	/* a full window with the follower answering heartbeats: free a slot */
	if (pr->state == RPR_REPLICATE && rinfl_full(&pr->infl))
		rinfl_free_le(&pr->infl, pr->infl.buf[pr->infl.start]);
	if (pr->match < rlog_last(&r->log))
		raft_maybe_send_append(r, m->from, true);
	raft_read_ack(r, m->from, m->context);
}
