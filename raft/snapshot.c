/*
 * snapshot.c - log compaction and snapshot installation (Raft §7).
 *
 * The caller compacts its log behind a snapshot it made. When a follower needs an
 * entry the leader no longer has, the leader sends the storage's latest snapshot and
 * holds the follower in SNAPSHOT state until it answers (or the caller reports the
 * send failed). A follower installs a snapshot only when it is ahead of its commit
 * index (a member that joined after the snapshot was taken installs it too and
 * learns of its own membership from the entries that follow); if its log already holds the
 * snapshot's last entry it just fast-forwards its commit index. Installing replaces
 * the whole log and rebuilds the configuration from the snapshot.
 */
#include <string.h>

#include "raft/raft_int.h"

void raft_tracker_from_conf(raft *r, const raft_conf_state *cs)
{
	rtracker *t = &r->trk;
	rconfig *c = &t->cfg;
	memset(c, 0, sizeof(*c));
	for (size_t i = 0; i < cs->n_voters && i < RAFT_MAX_NODES; i++)
		rid_add(c->voters, &c->n_voters, cs->voters[i]);
	for (size_t i = 0; i < cs->n_voters_outgoing && i < RAFT_MAX_NODES; i++)
		rid_add(c->outgoing, &c->n_outgoing, cs->voters_outgoing[i]);
	for (size_t i = 0; i < cs->n_learners && i < RAFT_MAX_NODES; i++)
		rid_add(c->learners, &c->n_learners, cs->learners[i]);
	for (size_t i = 0; i < cs->n_learners_next && i < RAFT_MAX_NODES; i++)
		rid_add(c->learners_next, &c->n_learners_next, cs->learners_next[i]);
	c->auto_leave = cs->auto_leave && c->n_outgoing > 0;
	t->n_prs = 0;
	raft_index last = rlog_last(&r->log);
	const raft_id *sets[4] = {c->voters, c->outgoing, c->learners, c->learners_next};
	size_t lens[4] = {c->n_voters, c->n_outgoing, c->n_learners, c->n_learners_next};
	for (int s = 0; s < 4; s++) {
		for (size_t i = 0; i < lens[s]; i++) {
			raft_id id = sets[s][i];
			if (id == 0 || rtracker_get(t, id) != NULL)
				continue;
			bool learner = rid_in(c->learners, c->n_learners, id);
			if (rtracker_add(t, id, id == r->id ? last : 0, last + 1, learner) == NULL)
				break;
		}
	}
	rprogress *self = rtracker_get(t, r->id);
	r->is_learner = self != NULL && self->is_learner;
}

bool raft_send_snapshot(raft *r, rprogress *pr)
{
	if (!pr->recent_active)
		return false;
	raft_snapshot *s = rarena_alloc(&r->batch[r->cur].arena, sizeof(*s));
	if (s == NULL) {
		r->oom = true;
		return false;
	}
	int rc = rlog_snapshot(&r->log, s);
	if (rc != 0)
		return false;
	if (s->index == 0) {
		raft_blob_unref(s->data);
		return false;
	}
	raft_message *m = raft_new_msg(r, RAFT_MSG_SNAPSHOT, pr->id);
	m->snapshot = s;
	m->index = s->index;
	m->log_term = s->term;
	rpr_become_snapshot(pr, s->index);
	raft_send(r, m);
	return true;
}

static bool restore(raft *r, const raft_snapshot *s)
{
	if (s->index <= r->log.committed)
		return false;
	if (s->conf.n_voters == 0)
		return false; /* no configuration: not a snapshot any cluster could make */
	if (rlog_match_term(&r->log, s->index, s->term)) {
		/* our log already has it: just learn that it is committed */
		rlog_commit_to(&r->log, s->index);
		return false;
	}
	if (rlog_restore(&r->log, s) != 0) {
		r->oom = true;
		return false;
	}
	raft_tracker_from_conf(r, &s->conf);
	return true;
}

void raft_handle_snapshot(raft *r, const raft_message *m)
{
	raft_message *resp;
	if (restore(r, m->snapshot)) {
		resp = raft_new_msg(r, RAFT_MSG_APPEND_RESP, m->from);
		resp->index = rlog_last(&r->log);
	} else {
		resp = raft_new_msg(r, RAFT_MSG_APPEND_RESP, m->from);
		resp->index = r->log.committed;
	}
	raft_send(r, resp);
}

void raft_snapshot_status(raft *r, raft_id id, bool failed)
{
	if (r->role != RAFT_LEADER)
		return;
	rprogress *pr = rtracker_get(&r->trk, id);
	if (pr == NULL || pr->state != RPR_SNAPSHOT)
		return;
	if (failed)
		pr->pending_snapshot = 0;
	rpr_become_probe(pr);
	/* wait for the next heartbeat answer before probing again */
	pr->probe_sent = true;
}
