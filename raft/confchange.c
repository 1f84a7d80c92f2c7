/*
 * confchange.c - membership transitions and the conf-change entry encoding.
 *
 * A change is either simple (at most one voter added or removed: old and new
 * majorities always overlap, so it applies directly), enters a joint configuration
 * (the current voters become the outgoing half, the changes make the incoming half;
 * decisions need both majorities), or leaves one (the outgoing half is dropped and
 * demoted voters parked in learners_next become learners). rconf_apply() validates on
 * a copy first, so a refused change leaves the tracker untouched, then adds progress
 * for new members and drops it for departed ones.
 *
 * Encoding (version 1, little-endian): u8 version=1, u8 transition, u8 n_changes,
 * n_changes × (u8 type, u64 node_id), u32 context_len, context bytes.
 */
#include <string.h>

#include "raft/raft_int.h"

bool rconf_is_leave(const raft_confchange *cc)
{
	return cc->n_changes == 0;
}

bool rconf_enters_joint(const raft_confchange *cc, bool *auto_leave)
{
	if (cc->n_changes == 0)
		return false;
	bool joint = cc->transition != RAFT_CC_TRANSITION_AUTO || cc->n_changes > 1;
	if (auto_leave)
		*auto_leave = joint && cc->transition != RAFT_CC_TRANSITION_JOINT_EXPLICIT;
	return joint;
}

static bool apply_changes(rconfig *c, const raft_confchange *cc)
{
	for (size_t i = 0; i < cc->n_changes; i++) {
		raft_id id = cc->changes[i].node_id;
		if (id == 0)
			continue;
		switch (cc->changes[i].type) {
		case RAFT_CC_ADD_NODE:
			rid_del(c->learners, &c->n_learners, id);
			rid_del(c->learners_next, &c->n_learners_next, id);
			if (!rid_add(c->voters, &c->n_voters, id))
				return false;
			break;
		case RAFT_CC_ADD_LEARNER:
			if (rid_in(c->learners, c->n_learners, id))
				break;
			rid_del(c->voters, &c->n_voters, id);
			rid_del(c->learners_next, &c->n_learners_next, id);
			if (rid_in(c->outgoing, c->n_outgoing, id)) {
				if (!rid_add(c->learners_next, &c->n_learners_next, id))
					return false;
			} else if (!rid_add(c->learners, &c->n_learners, id)) {
				return false;
			}
			break;
		case RAFT_CC_REMOVE_NODE:
			rid_del(c->voters, &c->n_voters, id);
			rid_del(c->learners, &c->n_learners, id);
			rid_del(c->learners_next, &c->n_learners_next, id);
			break;
		default:
			return false;
		}
	}
	return true;
}

static size_t sym_diff(const raft_id *a, size_t na, const raft_id *b, size_t nb)
{
	size_t d = 0;
	for (size_t i = 0; i < na; i++)
		if (!rid_in(b, nb, a[i]))
			d++;
	for (size_t i = 0; i < nb; i++)
		if (!rid_in(a, na, b[i]))
			d++;
	return d;
}

static bool config_valid(const rconfig *c)
{
	if (c->n_voters == 0)
		return false;
	for (size_t i = 0; i < c->n_learners; i++)
		if (rid_in(c->voters, c->n_voters, c->learners[i]) ||
		    rid_in(c->outgoing, c->n_outgoing, c->learners[i]))
			return false;
	for (size_t i = 0; i < c->n_learners_next; i++)
		if (!rid_in(c->outgoing, c->n_outgoing, c->learners_next[i]) ||
		    rid_in(c->voters, c->n_voters, c->learners_next[i]))
			return false;
	if (c->n_outgoing == 0 && (c->n_learners_next > 0 || c->auto_leave))
		return false;
	/* every member needs a progress slot */
	raft_id all[RAFT_MAX_NODES * 4];
	size_t n = 0;
	const raft_id *sets[4] = {c->voters, c->outgoing, c->learners, c->learners_next};
	size_t lens[4] = {c->n_voters, c->n_outgoing, c->n_learners, c->n_learners_next};
	for (int s = 0; s < 4; s++)
		for (size_t i = 0; i < lens[s]; i++)
			if (!rid_in(all, n, sets[s][i]))
				all[n++] = sets[s][i];
	return n <= RAFT_MAX_NODES;
}

static bool member_of(const rconfig *c, raft_id id)
{
	return rid_in(c->voters, c->n_voters, id) || rid_in(c->outgoing, c->n_outgoing, id) ||
	       rid_in(c->learners, c->n_learners, id) ||
	       rid_in(c->learners_next, c->n_learners_next, id);
}

static void sync_progress(rtracker *t, raft_index last_index)
{
	rconfig *c = &t->cfg;
	/* drop progress of departed members */
	for (size_t i = 0; i < t->n_prs;) {
		if (!member_of(c, t->prs[i].id))
			rtracker_remove(t, t->prs[i].id);
		else
			i++;
	}
	const raft_id *sets[4] = {c->voters, c->outgoing, c->learners, c->learners_next};
	size_t lens[4] = {c->n_voters, c->n_outgoing, c->n_learners, c->n_learners_next};
	for (int s = 0; s < 4; s++) {
		for (size_t i = 0; i < lens[s]; i++) {
			raft_id id = sets[s][i];
			rprogress *p = rtracker_get(t, id);
			if (p == NULL)
				p = rtracker_add(t, id, 0, last_index + 1, false);
			p->is_learner = rid_in(c->learners, c->n_learners, id);
		}
	}
}

int rconf_compute(const rconfig *cur, const raft_confchange *cc, rconfig *out)
{
	rconfig c = *cur;
	if (cc->n_changes > RAFT_MAX_CONF_CHANGES)
		return RAFT_ECONFINVALID;
	bool auto_leave = false;
	if (rconf_is_leave(cc)) {
		if (c.n_outgoing == 0)
			return RAFT_ECONFINVALID;
		for (size_t i = 0; i < c.n_learners_next; i++)
			rid_add(c.learners, &c.n_learners, c.learners_next[i]);
		c.n_learners_next = 0;
		c.n_outgoing = 0;
		c.auto_leave = false;
	} else if (rconf_enters_joint(cc, &auto_leave)) {
		if (c.n_outgoing > 0 || c.n_voters == 0)
			return RAFT_ECONFINVALID;
		memcpy(c.outgoing, c.voters, c.n_voters * sizeof(raft_id));
		c.n_outgoing = c.n_voters;
		if (!apply_changes(&c, cc))
			return RAFT_ECONFINVALID;
		c.auto_leave = auto_leave;
	} else {
		if (c.n_outgoing > 0)
			return RAFT_ECONFINVALID;
		if (!apply_changes(&c, cc))
			return RAFT_ECONFINVALID;
		if (sym_diff(cur->voters, cur->n_voters, c.voters, c.n_voters) > 1)
			return RAFT_ECONFINVALID;
	}
	if (!config_valid(&c))
		return RAFT_ECONFINVALID;
	*out = c;
	return 0;
}

int rconf_apply(rtracker *t, const raft_confchange *cc, raft_index last_index)
{
	rconfig c;
	int rc = rconf_compute(&t->cfg, cc, &c);
	if (rc != 0)
		return rc;
	t->cfg = c;
	sync_progress(t, last_index);
	return 0;
}

/* ------------------------------------------------------------ encoding -- */

#define CC_VERSION 1

int raft_confchange_encode(const raft_confchange *cc, void *buf, size_t cap, size_t *len)
{
	if (cc == NULL || len == NULL || cc->n_changes > RAFT_MAX_CONF_CHANGES ||
	    (unsigned)cc->transition > RAFT_CC_TRANSITION_JOINT_EXPLICIT ||
	    (cc->context_len > 0 && cc->context == NULL) || cc->context_len > UINT32_MAX)
		return RAFT_EINVAL;
	for (size_t i = 0; i < cc->n_changes; i++)
		if ((unsigned)cc->changes[i].type > RAFT_CC_ADD_LEARNER || cc->changes[i].node_id == 0)
			return RAFT_EINVAL;
	size_t need = 3 + cc->n_changes * 9 + 4 + cc->context_len;
	*len = need;
	if (cap < need || buf == NULL)
		return RAFT_ENOMEM;
	unsigned char *p = buf;
	*p++ = CC_VERSION;
	*p++ = (unsigned char)cc->transition;
	*p++ = (unsigned char)cc->n_changes;
	for (size_t i = 0; i < cc->n_changes; i++) {
		*p++ = (unsigned char)cc->changes[i].type;
		uint64_t id = cc->changes[i].node_id;
		for (int b = 0; b < 8; b++)
			*p++ = (unsigned char)(id >> (8 * b));
	}
	uint32_t cl = (uint32_t)cc->context_len;
	for (int b = 0; b < 4; b++)
		*p++ = (unsigned char)(cl >> (8 * b));
	if (cl > 0)
		memcpy(p, cc->context, cl);
	return 0;
}

int raft_confchange_decode(const void *buf, size_t len, raft_confchange *out)
{
	const unsigned char *p = buf;
	if (buf == NULL || out == NULL || len < 1)
		return RAFT_ECORRUPT;
	if (p[0] != CC_VERSION)
		return RAFT_EFORMAT;
	if (len < 3)
		return RAFT_ECORRUPT;
	memset(out, 0, sizeof(*out));
	if (p[1] > RAFT_CC_TRANSITION_JOINT_EXPLICIT || p[2] > RAFT_MAX_CONF_CHANGES)
		return RAFT_ECORRUPT;
	out->transition = p[1];
	out->n_changes = p[2];
	size_t off = 3;
	if (len - off < out->n_changes * 9 + 4)
		return RAFT_ECORRUPT;
	for (size_t i = 0; i < out->n_changes; i++) {
		if (p[off] > RAFT_CC_ADD_LEARNER)
			return RAFT_ECORRUPT;
		out->changes[i].type = p[off];
		uint64_t id = 0;
		for (int b = 0; b < 8; b++)
			id |= (uint64_t)p[off + 1 + b] << (8 * b);
		if (id == 0)
			return RAFT_ECORRUPT;
		out->changes[i].node_id = id;
		off += 9;
	}
	uint32_t cl = 0;
	for (int b = 0; b < 4; b++)
		cl |= (uint32_t)p[off + b] << (8 * b);
	off += 4;
	if (len - off != cl)
		return RAFT_ECORRUPT;
	out->context = cl ? p + off : NULL;
	out->context_len = cl;
	return 0;
}
