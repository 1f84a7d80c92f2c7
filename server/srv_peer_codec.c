/*
 * srv_peer_codec.c: raft_message <-> protobuf RaftMessage (proto/peer.proto),
 * field by field, for the peer transport (srv_peer.c).
 *
 * Encoding runs on the node thread inside srv_peer_send(): it points the
 * protobuf-c structs at the message's own memory (entry payloads, conf arrays)
 * and packs once into a buffer the transport owns, so the ready can be freed
 * right after. Decoding runs on the receiving srv_rpc thread and builds a heap
 * message whose blobs are created there with one reference each.
 */
#include "server/srv_peer_int.h"

#include <stdlib.h>
#include <string.h>

#include "server/srv_peer.h"

/* Stack room for the entries of a typical message; more are heap-allocated. */
#define CODEC_STACK_ENTRIES 32

static int conf_to_pb(const raft_conf_state *c, Metastore__RaftConfState *pc)
{
	if (c->n_voters > RAFT_MAX_NODES || c->n_voters_outgoing > RAFT_MAX_NODES ||
	    c->n_learners > RAFT_MAX_NODES || c->n_learners_next > RAFT_MAX_NODES)
		return SRV_PEER_EINVAL;
	/* protobuf-c only reads through these pointers while packing. */
	pc->n_voters = c->n_voters;
	pc->voters = (uint64_t *)c->voters;
	pc->n_voters_outgoing = c->n_voters_outgoing;
	pc->voters_outgoing = (uint64_t *)c->voters_outgoing;
	pc->n_learners = c->n_learners;
	pc->learners = (uint64_t *)c->learners;
	pc->n_learners_next = c->n_learners_next;
	pc->learners_next = (uint64_t *)c->learners_next;
	pc->auto_leave = c->auto_leave;
	return 0;
}

int srv_peer_codec_encode(const raft_message *m, size_t prefix, uint8_t **buf, size_t *len)
{
	Metastore__RaftMessage pm = METASTORE__RAFT_MESSAGE__INIT;
	Metastore__RaftSnapshotMeta ps = METASTORE__RAFT_SNAPSHOT_META__INIT;
	Metastore__RaftConfState pc = METASTORE__RAFT_CONF_STATE__INIT;
	Metastore__RaftEntry st_ents[CODEC_STACK_ENTRIES];
	Metastore__RaftEntry *st_ptrs[CODEC_STACK_ENTRIES];
	Metastore__RaftEntry *ents = st_ents, **ptrs = st_ptrs;
	int rc = 0;

	*buf = NULL;
	*len = 0;
	pm.type = (uint32_t)m->type;
	pm.from = m->from;
	pm.to = m->to;
	pm.term = m->term;
	pm.log_term = m->log_term;
	pm.index = m->index;
	pm.commit = m->commit;
	pm.reject = m->reject;
	pm.reject_hint = m->reject_hint;
	pm.context = m->context;

	if (m->n_entries > CODEC_STACK_ENTRIES) {
		ents = malloc(m->n_entries * sizeof *ents);
		ptrs = malloc(m->n_entries * sizeof *ptrs);
		if (ents == NULL || ptrs == NULL) {
			rc = SRV_PEER_ENOMEM;
			goto out;
		}
	}
	for (size_t i = 0; i < m->n_entries; i++) {
		const raft_entry *e = &m->entries[i];
		Metastore__RaftEntry init = METASTORE__RAFT_ENTRY__INIT;
		ents[i] = init;
		ents[i].term = e->term;
		ents[i].index = e->index;
		ents[i].type = (uint32_t)e->type;
		if (e->data != NULL) {
			ents[i].has_data = true;
			ents[i].data.len = e->data->len;
			ents[i].data.data = e->data->data;
		}
		ptrs[i] = &ents[i];
	}
	pm.n_entries = m->n_entries;
	pm.entries = ptrs;

	if (m->snapshot != NULL) {
		const raft_snapshot *s = m->snapshot;
		ps.index = s->index;
		ps.term = s->term;
		if ((rc = conf_to_pb(&s->conf, &pc)) != 0)
			goto out;
		ps.conf = &pc;
		ps.has_data = s->data != NULL;
		ps.data_len = s->data != NULL ? s->data->len : 0;
		pm.snapshot = &ps;
	}

	size_t n = protobuf_c_message_get_packed_size(&pm.base);
	uint8_t *b = malloc(prefix + n + 1);
	if (b == NULL) {
		rc = SRV_PEER_ENOMEM;
		goto out;
	}
	protobuf_c_message_pack(&pm.base, b + prefix);
	*buf = b;
	*len = n;
out:
	if (ents != st_ents)
		free(ents);
	if (ptrs != st_ptrs)
		free(ptrs);
	return rc;
}

static int conf_from_pb(const Metastore__RaftConfState *pc, raft_conf_state *c)
{
	memset(c, 0, sizeof *c);
	if (pc == NULL)
		return 0;
	if (pc->n_voters > RAFT_MAX_NODES || pc->n_voters_outgoing > RAFT_MAX_NODES ||
	    pc->n_learners > RAFT_MAX_NODES || pc->n_learners_next > RAFT_MAX_NODES)
		return SRV_PEER_EPROTO;
	c->n_voters = pc->n_voters;
	if (pc->n_voters)
		memcpy(c->voters, pc->voters, pc->n_voters * sizeof(raft_id));
	c->n_voters_outgoing = pc->n_voters_outgoing;
	if (pc->n_voters_outgoing)
		memcpy(c->voters_outgoing, pc->voters_outgoing,
		       pc->n_voters_outgoing * sizeof(raft_id));
	c->n_learners = pc->n_learners;
	if (pc->n_learners)
		memcpy(c->learners, pc->learners, pc->n_learners * sizeof(raft_id));
	c->n_learners_next = pc->n_learners_next;
	if (pc->n_learners_next)
		memcpy(c->learners_next, pc->learners_next, pc->n_learners_next * sizeof(raft_id));
	c->auto_leave = pc->auto_leave;
	return 0;
}

int srv_peer_codec_decode(const Metastore__RaftMessage *pm, raft_blob *snapdata, raft_message **out)
{
	*out = NULL;
	if (pm->type >= RAFT__MSG_COUNT)
		return SRV_PEER_EPROTO;
	for (size_t i = 0; i < pm->n_entries; i++)
		if (pm->entries[i]->type > RAFT_ENTRY_CONF_CHANGE)
			return SRV_PEER_EPROTO;
	if (pm->snapshot != NULL && !pm->snapshot->has_data && snapdata != NULL)
		return SRV_PEER_EPROTO;

	raft_message *m = calloc(1, sizeof *m);
	if (m == NULL)
		return SRV_PEER_ENOMEM;
	m->type = (raft_msg_type)pm->type;
	m->from = pm->from;
	m->to = pm->to;
	m->term = pm->term;
	m->log_term = pm->log_term;
	m->index = pm->index;
	m->commit = pm->commit;
	m->reject = pm->reject;
	m->reject_hint = pm->reject_hint;
	m->context = pm->context;

	if (pm->n_entries > 0) {
		m->entries = calloc(pm->n_entries, sizeof *m->entries);
		if (m->entries == NULL)
			goto nomem;
		for (size_t i = 0; i < pm->n_entries; i++) {
			const Metastore__RaftEntry *pe = pm->entries[i];
			raft_entry *e = &m->entries[i];
			e->term = pe->term;
			e->index = pe->index;
			e->type = (raft_entry_type)pe->type;
			if (pe->has_data) {
				e->data = raft_blob_copy(pe->data.data, pe->data.len);
				if (e->data == NULL)
					goto nomem;
			}
			m->n_entries = i + 1; /* srv_peer_msg_free frees what is built */
		}
	}

	if (pm->snapshot != NULL) {
		const Metastore__RaftSnapshotMeta *ps = pm->snapshot;
		m->snapshot = calloc(1, sizeof *m->snapshot);
		if (m->snapshot == NULL)
			goto nomem;
		m->snapshot->index = ps->index;
		m->snapshot->term = ps->term;
		if (conf_from_pb(ps->conf, &m->snapshot->conf) != 0) {
			srv_peer_msg_free(m);
			return SRV_PEER_EPROTO;
		}
		if (ps->has_data && snapdata == NULL) {
			/* Has data but none handed over: it was empty. */
			m->snapshot->data = raft_blob_new(0);
			if (m->snapshot->data == NULL)
				goto nomem;
		} else {
			m->snapshot->data = snapdata;
		}
	}
	*out = m;
	return 0;
nomem:
	srv_peer_msg_free(m);
	return SRV_PEER_ENOMEM;
}

void srv_peer_msg_free(raft_message *m)
{
	if (m == NULL)
		return;
	for (size_t i = 0; i < m->n_entries; i++)
		raft_blob_unref(m->entries[i].data);
	free(m->entries);
	if (m->snapshot != NULL) {
		raft_blob_unref(m->snapshot->data);
		free(m->snapshot);
	}
	free(m);
}
