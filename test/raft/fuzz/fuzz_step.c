/*
 * fuzz_step.c - libFuzzer target: arbitrary events and messages into one member.
 *
 * The input is read as a little program: each op byte picks an event (a message
 * with fuzzer-chosen fields, ticks, proposals, reads, conf changes, transfers,
 * campaigns, caller compaction); after each op the member's ready is processed the
 * way the node loop does (persist into a memstore, send, apply, advance) and
 * invariants are checked; any violation aborts, which libFuzzer reports as a crash:
 *   - the ready: in-order apply, committed entries are the stored ones, must_sync
 *     whenever a term, vote, entries or a snapshot must be persisted, outgoing
 *     messages come from this member, go to another one and carry a term;
 *   - the persisted hard state: term never goes back, a vote never changes within a
 *     term, commit never goes back;
 *   - the log: commit within the log, applied <= commit, a committed (index, term)
 *     never changes while the entry is still in the log, a leader's log is append-only
 *     within its term;
 *   - only the documented errors come back from raft_step.
 * Memory is bounded by libFuzzer's -rss_limit_mb / -malloc_limit_mb, and ASan (when
 * the build uses it) reports leaks at the end of each run.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../memstore.h"
#include "raft/raft.h"

typedef struct rd {
	const uint8_t *p;
	size_t n;
} rd;

static uint64_t take(rd *r, int bytes)
{
	uint64_t v = 0;
	for (int i = 0; i < bytes && r->n > 0; i++) {
		v |= (uint64_t)r->p[0] << (8 * i);
		r->p++;
		r->n--;
	}
	return v;
}

static raft_index applied;
static raft_conf_state conf;

/* what was observed committed: term of each committed index (0 = not known) */
static raft_term *cterm;
static size_t ccap;
/* the leader's log end in its term, for the append-only check */
static raft_term lead_term;
static raft_index lead_last;
static raft_term lead_last_term;

static void fail(void)
{
	abort();
}

static void note_committed(raft_index i, raft_term t)
{
	if (i >= ccap) {
		size_t n = ccap ? ccap : 64;
		while (n <= i)
			n *= 2;
		raft_term *p = realloc(cterm, n * sizeof(*p));
		if (p == NULL)
			fail();
		memset(p + ccap, 0, (n - ccap) * sizeof(*p));
		cterm = p;
		ccap = n;
	}
	if (cterm[i] != 0 && t != 0 && cterm[i] != t)
		fail(); /* a committed index changed its entry */
	if (t != 0)
		cterm[i] = t;
}

static void check_ready(const raft_ready *rdy, const memstore *ms)
{
	bool vote_changed = rdy->has_hard_state &&
	                    (rdy->hard.term != ms->term || rdy->hard.vote != ms->vote);
	if ((vote_changed || rdy->n_entries > 0 || rdy->snapshot) && !rdy->must_sync)
		fail();
	if (rdy->has_hard_state) {
		if (rdy->hard.term < ms->term || rdy->hard.commit < ms->commit)
			fail();
		if (rdy->hard.term == ms->term && ms->vote != 0 && rdy->hard.vote != ms->vote)
			fail();
	}
	for (size_t i = 1; i < rdy->n_entries; i++)
		if (rdy->entries[i].index != rdy->entries[i - 1].index + 1)
			fail();
	for (size_t i = 0; i < rdy->n_messages; i++) {
		const raft_message *m = &rdy->messages[i];
		if (m->from != 1 || m->to == 0 || m->to == 1)
			fail();
		if (m->term == 0 && m->type != RAFT_MSG_PROPOSE && m->type != RAFT_MSG_READ_INDEX)
			fail();
		if (m->n_entries > 0 && m->entries == NULL)
			fail();
	}
}

static void process(raft *r, memstore *ms)
{
	while (raft_has_ready(r)) {
		raft_ready rdy;
		int rc = raft_get_ready(r, &rdy);
		if (rc != 0)
			return;
		check_ready(&rdy, ms);
		if (rdy.snapshot)
			ms_apply_snapshot(ms, rdy.snapshot);
		ms_append(ms, rdy.entries, rdy.n_entries);
		if (rdy.has_hard_state)
			ms_set_hard_state(ms, &rdy.hard);
		if (rdy.snapshot) {
			applied = rdy.snapshot->index;
			note_committed(rdy.snapshot->index, rdy.snapshot->term);
		}
		for (size_t i = 0; i < rdy.n_committed; i++) {
			const raft_entry *e = &rdy.committed[i];
			if (e->index != applied + 1)
				fail(); /* committed entries must come in order */
			note_committed(e->index, e->term);
			applied = e->index;
			if (e->type == RAFT_ENTRY_CONF_CHANGE && e->data) {
				raft_confchange cc;
				if (raft_confchange_decode(e->data->data, e->data->len, &cc) == 0)
					raft_apply_conf_change(r, &cc, &conf);
			}
		}
		if (raft_advance(r, &rdy) != 0)
			return;
	}
}

static void check(raft *r, raft_status *prev)
{
	raft_status st;
	raft_get_status(r, &st);
	if (st.commit > st.last_index || st.commit < prev->commit || st.term < prev->term ||
	    st.applied > st.commit)
		fail();
	if (st.role == RAFT_LEADER && st.lead != st.id)
		fail();
	/* every committed entry still in the log is the one that was committed */
	for (raft_index i = st.first_index; i <= st.commit; i++) {
		raft_term t = 0;
		if (raft_log_term(r, i, &t) == 0)
			note_committed(i, t);
	}
	if (st.role == RAFT_LEADER) {
		if (lead_term == st.term) {
			raft_term t = 0;
			if (st.last_index < lead_last ||
			    (raft_log_term(r, lead_last, &t) == 0 && t != lead_last_term))
				fail(); /* a leader never overwrites or drops its own entries */
		}
		lead_term = st.term;
		lead_last = st.last_index;
		raft_log_term(r, lead_last, &lead_last_term);
	} else {
		lead_term = 0;
	}
	*prev = st;
}

static bool ok_rc(int rc)
{
	switch (rc) {
	case RAFT_OK:
	case RAFT_ENOLEADER:
	case RAFT_ENOTLEADER:
	case RAFT_EPROPOSALDROPPED:
	case RAFT_ETOOLARGE:
	case RAFT_EUNCOMMITTEDFULL:
	case RAFT_ETRANSFERRING:
	case RAFT_ECONFPENDING:
	case RAFT_ECONFINVALID:
	case RAFT_ECONFLEADER:
	case RAFT_ENOTMEMBER:
	case RAFT_EINVAL:
	case RAFT_ECONFLICT:  /* a forged leader overwriting committed entries */
	case RAFT_EPOISONED:
		return true;
	default:
		return false;
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	rd in = {data, size};
	memstore ms;
	ms_init(&ms);
	raft_id voters[3] = {1, 2, 3};
	ms_bootstrap(&ms, voters, 3);
	uint8_t flags = (uint8_t)take(&in, 1);
	raft_config c;
	memset(&c, 0, sizeof(c));
	c.id = 1;
	c.election_tick = 5;
	c.heartbeat_tick = 1;
	c.pre_vote = flags & 1;
	c.check_quorum = flags & 2;
	c.max_inflight = 1 + (flags >> 4);
	c.max_msg_bytes = 64;
	c.max_uncommitted_bytes = (flags & 4) ? 256 : 0;
	c.storage = ms_storage(&ms);
	raft *r = NULL;
	if (raft_create(&c, &r) != 0)
		fail();
	applied = 1;
	lead_term = 0;
	if (ccap > 0)
		memset(cterm, 0, ccap * sizeof(*cterm));
	raft_status prev;
	raft_get_status(r, &prev);
	raft_entry ents[8];
	raft_blob *blobs[8];
	while (in.n > 0) {
		uint8_t op = (uint8_t)take(&in, 1);
		int rc = 0;
		raft_status st;
		raft_get_status(r, &st);
		switch (op % 8) {
		case 0:
		case 1:
		case 2: { /* a message */
			raft_message m;
			raft_snapshot snap;
			memset(&m, 0, sizeof(m));
			m.type = (raft_msg_type)(take(&in, 1) % (RAFT__MSG_COUNT + 1));
			m.from = take(&in, 1) % 6;
			m.to = (take(&in, 1) & 7) ? 1 : 9;
			m.term = st.term + take(&in, 1) % 4 - (st.term > 1 ? 1 : 0);
			uint64_t last = st.last_index;
			m.index = last + take(&in, 1) % 8 - (last > 4 ? 4 : last);
			m.log_term = take(&in, 1) % (st.term + 2);
			m.commit = take(&in, 1) % (last + 6);
			m.reject = take(&in, 1) & 1;
			m.reject_hint = take(&in, 1) % (last + 3);
			m.context = take(&in, 1) % 4;
			size_t n = take(&in, 1) % 9;
			for (size_t i = 0; i < n; i++) {
				ents[i].index = m.index + 1 + i;
				ents[i].term = take(&in, 1) % (st.term + 2);
				ents[i].type = (raft_entry_type)(take(&in, 1) % 3 == 2);
				size_t len = take(&in, 1) % 24;
				blobs[i] = raft_blob_new(len);
				for (size_t k = 0; k < len; k++)
					blobs[i]->data[k] = (uint8_t)take(&in, 1);
				ents[i].data = blobs[i];
			}
			m.entries = n ? ents : NULL;
			m.n_entries = n;
			if (m.type == RAFT_MSG_SNAPSHOT) {
				memset(&snap, 0, sizeof(snap));
				snap.index = m.index;
				snap.term = m.log_term;
				snap.conf.n_voters = take(&in, 1) % 4;
				for (size_t i = 0; i < snap.conf.n_voters; i++)
					snap.conf.voters[i] = 1 + take(&in, 1) % 5;
				m.snapshot = &snap;
			}
			raft_event ev = {.type = RAFT_EV_RECEIVE, .receive.msg = &m};
			rc = raft_step(r, &ev);
			for (size_t i = 0; i < n; i++)
				raft_blob_unref(blobs[i]);
			break;
		}
		case 3: {
			raft_event ev = {.type = RAFT_EV_TICK, .tick.n = 1 + (unsigned)take(&in, 1) % 12};
			rc = raft_step(r, &ev);
			break;
		}
		case 4: {
			raft_blob *b = raft_blob_new(take(&in, 1) % 40);
			raft_event ev = {.type = RAFT_EV_PROPOSE, .propose = {&b, 1}};
			rc = raft_step(r, &ev);
			raft_blob_unref(b);
			break;
		}
		case 5: {
			raft_event ev = {.type = RAFT_EV_READ_INDEX, .read_index.ctx = take(&in, 1)};
			rc = raft_step(r, &ev);
			break;
		}
		case 6: {
			raft_confchange cc;
			memset(&cc, 0, sizeof(cc));
			cc.transition = (raft_cc_transition)(take(&in, 1) % 3);
			cc.n_changes = take(&in, 1) % 3;
			for (size_t i = 0; i < cc.n_changes; i++) {
				cc.changes[i].type = (raft_confchange_type)(take(&in, 1) % 3);
				cc.changes[i].node_id = 1 + take(&in, 1) % 5;
			}
			raft_event ev = {.type = RAFT_EV_PROPOSE_CONF_CHANGE, .conf_change.cc = &cc};
			rc = raft_step(r, &ev);
			break;
		}
		default: {
			uint8_t k = (uint8_t)take(&in, 1);
			raft_event ev;
			memset(&ev, 0, sizeof(ev));
			if (k % 4 == 0) {
				ev.type = RAFT_EV_CAMPAIGN;
			} else if (k % 4 == 1) {
				ev.type = RAFT_EV_TRANSFER;
				ev.transfer.target = k % 5;
			} else if (k % 4 == 2) {
				ev.type = RAFT_EV_SNAPSHOT_STATUS;
				ev.peer.id = 1 + k % 3;
				ev.peer.failed = k & 8;
			} else {
				/* the caller compacts behind a snapshot of what it applied */
				if (applied > ms.snap.index && applied <= ms_last(&ms))
					ms_snapshot_and_compact(&ms, applied, &ms.conf, NULL, applied);
				ev.type = RAFT_EV_UNREACHABLE;
				ev.peer.id = 2;
			}
			rc = raft_step(r, &ev);
		}
		}
		if (!ok_rc(rc))
			fail();
		process(r, &ms);
		check(r, &prev);
	}
	raft_destroy(r);
	ms_free(&ms);
	return 0;
}
