/*
 * sim.c - the deterministic cluster simulator and its safety checker (see sim.h).
 *
 * The node loop here is the one docs/raft.md prescribes and the server implements:
 * persist (snapshot, entries, hard state) → send → apply → advance. Messages leave
 * through a network queue ordered by (delivery time, random key): random keys give
 * reordering, random delays give latency, and drop/duplicate/partition are decided
 * when a message is sent.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sim.h"

/* ------------------------------------------------------------ helpers -- */

uint64_t sim_rand(sim *s)
{
	uint64_t z = (s->rng += 0x9e3779b97f4a7c15ULL);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

static unsigned rnd(sim *s, unsigned n)
{
	return n ? (unsigned)(sim_rand(s) % n) : 0;
}

static uint64_t hash_bytes(const void *p, size_t n, uint64_t h)
{
	const unsigned char *b = p;
	for (size_t i = 0; i < n; i++) {
		h ^= b[i];
		h *= 0x100000001b3ULL;
	}
	return h;
}

static uint64_t entry_hash(const raft_entry *e)
{
	uint64_t h = 0xcbf29ce484222325ULL;
	h = hash_bytes(&e->type, sizeof(e->type), h);
	if (e->data)
		h = hash_bytes(e->data->data, e->data->len, h);
	return h;
}

static uint64_t chain_next(uint64_t chain, const raft_entry *e)
{
	uint64_t h = hash_bytes(&chain, sizeof(chain), 0xcbf29ce484222325ULL);
	h = hash_bytes(&e->index, sizeof(e->index), h);
	h = hash_bytes(&e->term, sizeof(e->term), h);
	uint64_t eh = entry_hash(e);
	return hash_bytes(&eh, sizeof(eh), h);
}

void sim_fail(sim *s, const char *fmt, ...)
{
	if (s->failed)
		return;
	s->failed = true;
	va_list ap;
	va_start(ap, fmt);
	int k = snprintf(s->err, sizeof(s->err), "t=%llu: ", (unsigned long long)s->now);
	vsnprintf(s->err + k, sizeof(s->err) - (size_t)k, fmt, ap);
	va_end(ap);
}

#define TRACE(s, ...)                                                                  \
	do {                                                                               \
		if ((s)->o.trace) {                                                            \
			fprintf(stderr, "[t=%llu] ", (unsigned long long)(s)->now);              \
			fprintf(stderr, __VA_ARGS__);                                              \
			fputc('\n', stderr);                                                       \
		}                                                                              \
	} while (0)

sim_node *sim_node_get(sim *s, raft_id id)
{
	if (id == 0 || id > s->o.n_nodes)
		return NULL;
	return &s->nodes[id];
}

/* ------------------------------------------------------- bookkeeping -- */

static struct sim_commit *commit_slot(sim *s, raft_index i)
{
	if (i >= s->n_committed) {
		size_t n = s->n_committed ? s->n_committed : 256;
		while (n <= i)
			n *= 2;
		s->committed = realloc(s->committed, n * sizeof(*s->committed));
		memset(s->committed + s->n_committed, 0, (n - s->n_committed) * sizeof(*s->committed));
		s->n_committed = n;
	}
	return &s->committed[i];
}

static void note_leader(sim *s, raft_id id, raft_term term)
{
	if (term >= s->n_terms) {
		size_t n = s->n_terms ? s->n_terms : 64;
		while (n <= term)
			n *= 2;
		s->leader_of_term = realloc(s->leader_of_term, n * sizeof(raft_id));
		memset(s->leader_of_term + s->n_terms, 0, (n - s->n_terms) * sizeof(raft_id));
		s->n_terms = n;
	}
	if (s->leader_of_term[term] != 0 && s->leader_of_term[term] != id)
		sim_fail(s, "election safety: %llu and %llu both lead term %llu",
		         (unsigned long long)s->leader_of_term[term], (unsigned long long)id,
		         (unsigned long long)term);
	s->leader_of_term[term] = id;
}

static size_t ent_hash_slot(raft_index i, raft_term t, size_t cap)
{
	uint64_t h = i * 0x9e3779b97f4a7c15ULL ^ t * 0xc2b2ae3d27d4eb4fULL;
	return (size_t)(h ^ (h >> 29)) & (cap - 1);
}

static struct sim_ent *ent_lookup(sim *s, raft_index i, raft_term t, bool insert)
{
	if (insert && (s->ents_n + 1) * 2 > s->ents_cap) {
		size_t ncap = s->ents_cap ? s->ents_cap * 2 : 1024;
		struct sim_ent *ne = calloc(ncap, sizeof(*ne));
		for (size_t k = 0; k < s->ents_cap; k++) {
			if (!s->ents[k].used)
				continue;
			size_t j = ent_hash_slot(s->ents[k].index, s->ents[k].term, ncap);
			while (ne[j].used)
				j = (j + 1) & (ncap - 1);
			ne[j] = s->ents[k];
		}
		free(s->ents);
		s->ents = ne;
		s->ents_cap = ncap;
	}
	if (s->ents_cap == 0)
		return NULL;
	size_t j = ent_hash_slot(i, t, s->ents_cap);
	while (s->ents[j].used) {
		if (s->ents[j].index == i && s->ents[j].term == t)
			return &s->ents[j];
		j = (j + 1) & (s->ents_cap - 1);
	}
	if (!insert)
		return NULL;
	s->ents[j] = (struct sim_ent){i, t, 0, UINT64_MAX, true};
	s->ents_n++;
	return &s->ents[j];
}

/* log matching: (index, term) names one entry, with one predecessor term */
static void check_entry(sim *s, sim_node *n, const raft_entry *e)
{
	raft_term prev = UINT64_MAX;
	raft_term t = 0;
	if (e->index > 1 && raft_log_term(n->r, e->index - 1, &t) == 0)
		prev = t;
	uint64_t h = entry_hash(e);
	struct sim_ent *x = ent_lookup(s, e->index, e->term, false);
	if (x == NULL) {
		x = ent_lookup(s, e->index, e->term, true);
		x->hash = h;
		x->prev_term = prev;
		return;
	}
	if (x->hash != h)
		sim_fail(s, "log matching: node %llu has a different entry at (%llu,%llu)",
		         (unsigned long long)n->id, (unsigned long long)e->index,
		         (unsigned long long)e->term);
	if (prev != UINT64_MAX && x->prev_term != UINT64_MAX && x->prev_term != prev)
		sim_fail(s, "log matching: node %llu entry (%llu,%llu) follows term %llu, others %llu",
		         (unsigned long long)n->id, (unsigned long long)e->index,
		         (unsigned long long)e->term, (unsigned long long)prev,
		         (unsigned long long)x->prev_term);
	if (x->prev_term == UINT64_MAX)
		x->prev_term = prev;
}

/* leader completeness: a new leader's log holds every committed entry */
static void check_leader_complete(sim *s, sim_node *n)
{
	raft_status st;
	raft_get_status(n->r, &st);
	for (raft_index i = st.first_index; i <= s->max_commit && i < s->n_committed; i++) {
		struct sim_commit *c = &s->committed[i];
		if (!c->set)
			continue;
		raft_term t = 0;
		if (raft_log_term(n->r, i, &t) != 0 || t != c->term) {
			sim_fail(s, "leader completeness: leader %llu (term %llu) lacks committed entry "
			            "%llu (term %llu, has %llu)",
			         (unsigned long long)n->id, (unsigned long long)st.term,
			         (unsigned long long)i, (unsigned long long)c->term, (unsigned long long)t);
			return;
		}
	}
}

/* leader completeness, the other way round: when an entry is first seen committed
 * (first applied anywhere), every leader of a later term than the applier's must hold
 * it. (The entry was committed in a term no later than the applier's.) */
static void check_leaders_hold(sim *s, sim_node *applier, const raft_entry *e)
{
	raft_status as;
	raft_get_status(applier->r, &as);
	for (raft_id j = 1; j <= s->o.n_nodes; j++) {
		sim_node *l = &s->nodes[j];
		if (!l->up || l == applier)
			continue;
		raft_status st;
		raft_get_status(l->r, &st);
		if (st.role != RAFT_LEADER || st.term <= as.term || e->index < st.first_index)
			continue;
		raft_term t = 0;
		if (raft_log_term(l->r, e->index, &t) != 0 || t != e->term)
			sim_fail(s,
			         "leader completeness: leader %llu (term %llu) lacks entry %llu "
			         "(term %llu) that node %llu (term %llu) applies",
			         (unsigned long long)j, (unsigned long long)st.term,
			         (unsigned long long)e->index, (unsigned long long)e->term,
			         (unsigned long long)applier->id, (unsigned long long)as.term);
	}
}

static void check_leader_append_only(sim *s, sim_node *n)
{
	raft_status st;
	raft_get_status(n->r, &st);
	if (st.role != RAFT_LEADER) {
		n->lead_term = 0;
		return;
	}
	note_leader(s, n->id, st.term);
	if (n->lead_term != st.term) {
		n->lead_term = st.term;
		n->lead_last = st.last_index;
		raft_log_term(n->r, st.last_index, &n->lead_last_term);
		check_leader_complete(s, n);
		return;
	}
	if (st.last_index < n->lead_last) {
		sim_fail(s, "leader append-only: leader %llu log shrank from %llu to %llu",
		         (unsigned long long)n->id, (unsigned long long)n->lead_last,
		         (unsigned long long)st.last_index);
		return;
	}
	raft_term t = 0;
	if (raft_log_term(n->r, n->lead_last, &t) == 0 && t != n->lead_last_term)
		sim_fail(s, "leader append-only: leader %llu rewrote entry %llu",
		         (unsigned long long)n->id, (unsigned long long)n->lead_last);
	n->lead_last = st.last_index;
	raft_log_term(n->r, st.last_index, &n->lead_last_term);
}

/* ---------------------------------------------------------- network -- */

static void msg_free(raft_message *m)
{
	for (size_t i = 0; i < m->n_entries; i++)
		raft_blob_unref(m->entries[i].data);
	free(m->entries);
	if (m->snapshot) {
		raft_blob_unref(m->snapshot->data);
		free(m->snapshot);
	}
}

static void msg_copy(raft_message *dst, const raft_message *src)
{
	*dst = *src;
	if (src->n_entries) {
		dst->entries = malloc(src->n_entries * sizeof(raft_entry));
		for (size_t i = 0; i < src->n_entries; i++) {
			dst->entries[i] = src->entries[i];
			raft_blob_ref(dst->entries[i].data);
		}
	} else {
		dst->entries = NULL;
	}
	if (src->snapshot) {
		dst->snapshot = malloc(sizeof(raft_snapshot));
		*dst->snapshot = *src->snapshot;
		raft_blob_ref(dst->snapshot->data);
	}
}

static bool q_less(const sim_msg *a, const sim_msg *b)
{
	return a->at < b->at || (a->at == b->at && a->key < b->key);
}

static void q_push(sim *s, const raft_message *m, uint64_t at)
{
	if (s->qn == s->qcap) {
		s->qcap = s->qcap ? s->qcap * 2 : 256;
		s->q = realloc(s->q, s->qcap * sizeof(sim_msg));
	}
	size_t i = s->qn++;
	sim_msg x;
	x.at = at;
	/* with no delay configured keep FIFO order; otherwise reorder randomly */
	x.key = s->o.max_delay ? sim_rand(s) : s->qkey++;
	msg_copy(&x.m, m);
	while (i > 0) {
		size_t p = (i - 1) / 2;
		if (!q_less(&x, &s->q[p]))
			break;
		s->q[i] = s->q[p];
		i = p;
	}
	s->q[i] = x;
}

static sim_msg q_pop(sim *s)
{
	sim_msg top = s->q[0];
	sim_msg last = s->q[--s->qn];
	size_t i = 0;
	for (;;) {
		size_t l = 2 * i + 1, r = l + 1, m = i;
		const sim_msg *cand = &last;
		if (l < s->qn && q_less(&s->q[l], cand)) {
			m = l;
			cand = &s->q[l];
		}
		if (r < s->qn && q_less(&s->q[r], cand))
			m = r;
		if (m == i)
			break;
		s->q[i] = s->q[m];
		i = m;
	}
	if (s->qn > 0)
		s->q[i] = last;
	return top;
}

/* the transport's report on a snapshot send, as a real transport would give it */
static void report_snapshot(sim *s, raft_id from, raft_id to, bool failed)
{
	sim_node *n = sim_node_get(s, from);
	if (n == NULL || !n->up)
		return;
	raft_event ev = {.type = RAFT_EV_SNAPSHOT_STATUS, .peer = {to, failed}};
	raft_step(n->r, &ev);
}

static void net_send(sim *s, const raft_message *m)
{
	s->stats_msgs++;
	bool snap = m->type == RAFT_MSG_SNAPSHOT;
	if (m->to == 0 || m->to > s->o.n_nodes || s->cut[m->from][m->to] ||
	    (s->o.drop_pct && rnd(s, 100) < s->o.drop_pct)) {
		if (snap)
			report_snapshot(s, m->from, m->to, true);
		return;
	}
	uint64_t at = s->now + (s->o.max_delay ? 1 + rnd(s, s->o.max_delay) : 0);
	q_push(s, m, at);
	if (s->o.dup_pct && rnd(s, 100) < s->o.dup_pct)
		q_push(s, m, s->now + (s->o.max_delay ? 1 + rnd(s, s->o.max_delay) : 0));
}

void sim_drop_queue(sim *s)
{
	for (size_t i = 0; i < s->qn; i++)
		msg_free(&s->q[i].m);
	s->qn = 0;
}

static void deliver(sim *s, sim_msg *x)
{
	sim_node *n = sim_node_get(s, x->m.to);
	if (n != NULL && !n->exists)
		sim_start(s, n->id); /* a member added by a conf change comes up empty */
	if (n != NULL && n->up && !s->cut[x->m.from][x->m.to]) {
		TRACE(s, "deliver %s %llu->%llu term=%llu idx=%llu lt=%llu n=%zu commit=%llu rej=%d hint=%llu ctx=%llu",
		      raft_msg_type_name(x->m.type), (unsigned long long)x->m.from,
		      (unsigned long long)x->m.to, (unsigned long long)x->m.term,
		      (unsigned long long)x->m.index, (unsigned long long)x->m.log_term, x->m.n_entries,
		      (unsigned long long)x->m.commit, x->m.reject, (unsigned long long)x->m.reject_hint,
		      (unsigned long long)x->m.context);
		raft_event ev = {.type = RAFT_EV_RECEIVE, .receive.msg = &x->m};
		int rc = raft_step(n->r, &ev);
		if (rc != 0 && rc != RAFT_ENOMEM)
			sim_fail(s, "node %llu: step(%s) failed: %s", (unsigned long long)n->id,
			         raft_msg_type_name(x->m.type), raft_strerror(rc));
		sim_process(s, n->id);
		if (x->m.type == RAFT_MSG_SNAPSHOT) {
			report_snapshot(s, x->m.from, x->m.to, false);
			sim_process(s, x->m.from);
		}
	} else if (x->m.type == RAFT_MSG_SNAPSHOT) {
		report_snapshot(s, x->m.from, x->m.to, true);
		sim_process(s, x->m.from);
	}
	msg_free(&x->m);
}

void sim_deliver_due(sim *s)
{
	while (s->qn > 0 && s->q[0].at <= s->now && !s->failed) {
		sim_msg x = q_pop(s);
		deliver(s, &x);
	}
}

size_t sim_stabilize(sim *s)
{
	size_t k = 0;
	while (s->qn > 0 && !s->failed && k < 1000000) {
		sim_msg x = q_pop(s);
		deliver(s, &x);
		k++;
	}
	return k;
}

void sim_isolate(sim *s, raft_id id)
{
	for (raft_id j = 1; j <= SIM_MAX; j++) {
		if (j == id)
			continue;
		s->cut[id][j] = s->cut[j][id] = true;
	}
}

void sim_cut(sim *s, raft_id a, raft_id b)
{
	s->cut[a][b] = s->cut[b][a] = true;
}

void sim_heal(sim *s)
{
	memset(s->cut, 0, sizeof(s->cut));
}

/* ------------------------------------------------------------ nodes -- */

static raft_config node_config(sim *s, sim_node *n)
{
	raft_config c;
	memset(&c, 0, sizeof(c));
	c.id = n->id;
	c.election_tick = s->o.election_tick;
	c.heartbeat_tick = s->o.heartbeat_tick;
	c.applied = n->applied;
	c.max_msg_bytes = s->o.max_msg_bytes;
	c.max_inflight = s->o.max_inflight;
	c.max_uncommitted_bytes = s->o.max_uncommitted;
	c.pre_vote = s->o.pre_vote;
	c.check_quorum = s->o.check_quorum;
	c.seed = s->seed * 31 + n->id;
	c.storage = ms_storage(&n->ms);
	return c;
}

static void sm_from_snapshot(sim *s, sim_node *n, const raft_snapshot *snap)
{
	n->applied = snap->index;
	n->chain = 0;
	n->last_marker = 0;
	if (snap->data && snap->data->len >= 2 * sizeof(uint64_t)) {
		memcpy(&n->chain, snap->data->data, sizeof(uint64_t));
		memcpy(&n->last_marker, snap->data->data + 8, sizeof(uint64_t));
	}
	n->conf = snap->conf;
	struct sim_commit *c = commit_slot(s, snap->index);
	if (c->chain_set && c->chain != n->chain)
		sim_fail(s, "state machine safety: node %llu snapshot at %llu disagrees",
		         (unsigned long long)n->id, (unsigned long long)snap->index);
}

static void boot(sim *s, sim_node *n)
{
	n->applied = n->ms.snap.index;
	sm_from_snapshot(s, n, &n->ms.snap);
	n->conf = n->ms.conf;
	raft_config c = node_config(s, n);
	int rc = raft_create(&c, &n->r);
	if (rc != 0) {
		/* out of memory (test_oom) leaves the member down until restarted */
		if (rc != RAFT_ENOMEM)
			sim_fail(s, "node %llu: raft_create: %s", (unsigned long long)n->id,
			         raft_strerror(rc));
		n->r = NULL;
		n->up = false;
		return;
	}
	n->up = true;
	n->lead_term = 0;
}

void sim_start(sim *s, raft_id id)
{
	sim_node *n = sim_node_get(s, id);
	if (n == NULL || n->exists)
		return;
	n->exists = true;
	n->id = id;
	TRACE(s, "start node %llu (empty)", (unsigned long long)id);
	boot(s, n);
}

void sim_crash(sim *s, raft_id id)
{
	sim_node *n = sim_node_get(s, id);
	if (n == NULL || !n->up)
		return;
	TRACE(s, "crash node %llu", (unsigned long long)id);
	raft_destroy(n->r);
	n->r = NULL;
	n->up = false;
}

void sim_restart(sim *s, raft_id id)
{
	sim_node *n = sim_node_get(s, id);
	if (n == NULL || n->up || !n->exists)
		return;
	TRACE(s, "restart node %llu", (unsigned long long)id);
	boot(s, n);
}

static void apply_entry(sim *s, sim_node *n, const raft_entry *e)
{
	if (e->index != n->applied + 1) {
		sim_fail(s, "node %llu applies %llu after %llu", (unsigned long long)n->id,
		         (unsigned long long)e->index, (unsigned long long)n->applied);
		return;
	}
	n->chain = chain_next(n->chain, e);
	n->applied = e->index;
	n->n_applied_entries++;
	struct sim_commit *c = commit_slot(s, e->index);
	if (!c->set)
		check_leaders_hold(s, n, e);
	if (c->set && c->term != e->term)
		sim_fail(s, "state machine safety: node %llu applies (%llu,%llu), committed term %llu",
		         (unsigned long long)n->id, (unsigned long long)e->index,
		         (unsigned long long)e->term, (unsigned long long)c->term);
	if (c->chain_set && c->chain != n->chain)
		sim_fail(s, "state machine safety: node %llu state differs at %llu",
		         (unsigned long long)n->id, (unsigned long long)e->index);
	c->set = true;
	c->term = e->term;
	c->chain = n->chain;
	c->chain_set = true;
	if (e->type == RAFT_ENTRY_CONF_CHANGE) {
		raft_confchange cc;
		if (raft_confchange_decode(e->data->data, e->data->len, &cc) != 0) {
			sim_fail(s, "node %llu: undecodable conf change at %llu", (unsigned long long)n->id,
			         (unsigned long long)e->index);
			return;
		}
		int rc = raft_apply_conf_change(n->r, &cc, &n->conf);
		TRACE(s, "node %llu applies conf change at %llu: %s (voters %zu outgoing %zu learners %zu)",
		      (unsigned long long)n->id, (unsigned long long)e->index, raft_strerror(rc),
		      n->conf.n_voters, n->conf.n_voters_outgoing, n->conf.n_learners);
		if (rc != 0 && rc != RAFT_ECONFINVALID)
			sim_fail(s, "node %llu: apply conf change: %s", (unsigned long long)n->id,
			         raft_strerror(rc));
	} else if (e->data && e->data->len >= 8) {
		uint64_t v;
		memcpy(&v, e->data->data, 8);
		n->last_marker = v;
	}
}

static sim_readreq *find_read(sim *s, uint64_t ctx)
{
	for (size_t i = 0; i < s->n_reads; i++)
		if (s->reads[i].ctx == ctx)
			return &s->reads[i];
	return NULL;
}

void sim_process(sim *s, raft_id id)
{
	sim_node *n = sim_node_get(s, id);
	if (n == NULL || !n->up)
		return;
	while (!s->failed && raft_has_ready(n->r)) {
		raft_ready rd;
		int rc = raft_get_ready(n->r, &rd);
		if (rc == RAFT_ENOMEM)
			return;
		if (rc != 0) {
			sim_fail(s, "node %llu: ready: %s", (unsigned long long)id, raft_strerror(rc));
			return;
		}
		/* 1. persist (synced when a term, vote, entries or a snapshot are in it) */
		bool vote_changed = rd.has_hard_state &&
		                    (rd.hard.term != n->ms.term || rd.hard.vote != n->ms.vote);
		if ((vote_changed || rd.n_entries > 0 || rd.snapshot) && !rd.must_sync)
			sim_fail(s, "node %llu: a ready with a term, vote or entries is not synced",
			         (unsigned long long)id);
		if (rd.snapshot)
			ms_apply_snapshot(&n->ms, rd.snapshot);
		for (size_t i = 0; i < rd.n_entries; i++)
			check_entry(s, n, &rd.entries[i]);
		ms_append(&n->ms, rd.entries, rd.n_entries);
		if (rd.has_hard_state) {
			if (rd.hard.term < n->ms.term)
				sim_fail(s, "node %llu: term went back %llu -> %llu", (unsigned long long)id,
				         (unsigned long long)n->ms.term, (unsigned long long)rd.hard.term);
			if (rd.hard.term == n->ms.term && n->ms.vote != 0 && rd.hard.vote != n->ms.vote)
				sim_fail(s, "node %llu: changed its vote in term %llu", (unsigned long long)id,
				         (unsigned long long)rd.hard.term);
			if (rd.hard.commit < n->ms.commit)
				sim_fail(s, "node %llu: commit went back", (unsigned long long)id);
			ms_set_hard_state(&n->ms, &rd.hard);
			if (rd.hard.commit > s->max_commit)
				s->max_commit = rd.hard.commit;
		}
		if (rd.has_soft_state && rd.soft.role == RAFT_LEADER)
			TRACE(s, "node %llu becomes leader in term %llu", (unsigned long long)id,
			      (unsigned long long)n->ms.term);
		/* 2. send */
		for (size_t i = 0; i < rd.n_messages; i++)
			net_send(s, &rd.messages[i]);
		/* 3. apply */
		if (rd.snapshot)
			sm_from_snapshot(s, n, rd.snapshot);
		for (size_t i = 0; i < rd.n_committed && !s->failed; i++)
			apply_entry(s, n, &rd.committed[i]);
		for (size_t i = 0; i < rd.n_read_states; i++) {
			sim_readreq *r = find_read(s, rd.read_states[i].ctx);
			if (r == NULL)
				continue;
			if (rd.read_states[i].index < r->min_index)
				sim_fail(s, "read index: read %llu answered at %llu by node %llu, but %llu "
				            "was committed before it was issued",
				         (unsigned long long)r->ctx, (unsigned long long)rd.read_states[i].index,
				         (unsigned long long)id, (unsigned long long)r->min_index);
			r->done = true;
			r->got_index = rd.read_states[i].index;
		}
		/* 4. advance */
		rc = raft_advance(n->r, &rd);
		if (rc != 0)
			sim_fail(s, "node %llu: advance: %s", (unsigned long long)id, raft_strerror(rc));
		check_leader_append_only(s, n);
	}
	if (n->up && !s->failed)
		check_leader_append_only(s, n);
}

void sim_tick(sim *s, raft_id id, unsigned k)
{
	sim_node *n = sim_node_get(s, id);
	if (n == NULL || !n->up)
		return;
	raft_event ev = {.type = RAFT_EV_TICK, .tick.n = 1};
	for (unsigned i = 0; i < k && !s->failed; i++) {
		int rc = raft_step(n->r, &ev);
		if (rc != 0 && rc != RAFT_ENOMEM)
			sim_fail(s, "node %llu: tick: %s", (unsigned long long)id, raft_strerror(rc));
		sim_process(s, id);
	}
}

void sim_tick_all(sim *s)
{
	for (raft_id id = 1; id <= s->o.n_nodes; id++)
		sim_tick(s, id, 1);
}

int sim_step(sim *s, raft_id id, const raft_event *ev)
{
	sim_node *n = sim_node_get(s, id);
	if (n == NULL || !n->up)
		return RAFT_EINVAL;
	int rc = raft_step(n->r, ev);
	sim_process(s, id);
	return rc;
}

int sim_propose_bytes(sim *s, raft_id id, size_t len, uint64_t payload)
{
	if (len < 8)
		len = 8;
	raft_blob *b = raft_blob_new(len);
	if (b == NULL)
		return RAFT_ENOMEM;
	memset(b->data, 0, len);
	memcpy(b->data, &payload, 8);
	raft_event ev = {.type = RAFT_EV_PROPOSE, .propose = {&b, 1}};
	int rc = sim_step(s, id, &ev);
	raft_blob_unref(b);
	return rc;
}

int sim_propose(sim *s, raft_id id, uint64_t payload)
{
	return sim_propose_bytes(s, id, 8, payload);
}

int sim_campaign(sim *s, raft_id id)
{
	raft_event ev = {.type = RAFT_EV_CAMPAIGN};
	return sim_step(s, id, &ev);
}

int sim_read(sim *s, raft_id id, uint64_t ctx)
{
	if (s->n_reads == s->cap_reads) {
		s->cap_reads = s->cap_reads ? s->cap_reads * 2 : 64;
		s->reads = realloc(s->reads, s->cap_reads * sizeof(sim_readreq));
	}
	sim_readreq *r = &s->reads[s->n_reads++];
	memset(r, 0, sizeof(*r));
	r->ctx = ctx;
	r->node = id;
	/* anything already committed anywhere must be visible to this read */
	for (raft_id j = 1; j <= s->o.n_nodes; j++) {
		sim_node *n = &s->nodes[j];
		if (n->up) {
			raft_status st;
			raft_get_status(n->r, &st);
			if (st.commit > r->min_index)
				r->min_index = st.commit;
		}
	}
	if (s->max_commit > r->min_index)
		r->min_index = s->max_commit;
	raft_event ev = {.type = RAFT_EV_READ_INDEX, .read_index.ctx = ctx};
	return sim_step(s, id, &ev);
}

const sim_readreq *sim_read_result(sim *s, uint64_t ctx)
{
	return find_read(s, ctx);
}

int sim_conf_change(sim *s, raft_id id, const raft_confchange *cc)
{
	raft_event ev = {.type = RAFT_EV_PROPOSE_CONF_CHANGE, .conf_change.cc = cc};
	return sim_step(s, id, &ev);
}

raft_id sim_leader(sim *s)
{
	raft_id best = 0;
	raft_term bt = 0;
	for (raft_id j = 1; j <= s->o.n_nodes; j++) {
		sim_node *n = &s->nodes[j];
		if (!n->up)
			continue;
		raft_status st;
		raft_get_status(n->r, &st);
		if (st.role == RAFT_LEADER && st.term >= bt) {
			best = j;
			bt = st.term;
		}
	}
	return best;
}

#define STATUS_GETTER(name, type, field)                                               \
	type name(sim *s, raft_id id)                                                      \
	{                                                                                  \
		sim_node *n = sim_node_get(s, id);                                             \
		if (n == NULL || !n->up)                                                       \
			return 0;                                                                  \
		raft_status st;                                                                \
		raft_get_status(n->r, &st);                                                    \
		return st.field;                                                               \
	}
STATUS_GETTER(sim_role, raft_role, role)
STATUS_GETTER(sim_term, raft_term, term)
STATUS_GETTER(sim_commit, raft_index, commit)
STATUS_GETTER(sim_last, raft_index, last_index)

void sim_compact(sim *s, raft_id id, raft_index keep)
{
	sim_node *n = sim_node_get(s, id);
	if (n == NULL || !n->up || n->applied <= n->ms.snap.index)
		return;
	raft_blob *data = raft_blob_new(2 * sizeof(uint64_t));
	if (data == NULL)
		return; /* out of memory (test_oom): no snapshot this time */
	memcpy(data->data, &n->chain, sizeof(uint64_t));
	memcpy(data->data + 8, &n->last_marker, sizeof(uint64_t));
	raft_index keep_from = n->applied + 1 > keep ? n->applied + 1 - keep : 1;
	ms_snapshot_and_compact(&n->ms, n->applied, &n->conf, data, keep_from);
	raft_blob_unref(data);
	TRACE(s, "node %llu compacts at %llu", (unsigned long long)id, (unsigned long long)n->applied);
}

void sim_init(sim *s, const sim_opts *o, uint64_t seed)
{
	memset(s, 0, sizeof(*s));
	s->o = *o;
	if (s->o.election_tick == 0)
		s->o.election_tick = 10;
	if (s->o.heartbeat_tick == 0)
		s->o.heartbeat_tick = 1;
	if (s->o.n_nodes < s->o.n_voters + s->o.n_learners)
		s->o.n_nodes = s->o.n_voters + s->o.n_learners;
	if (s->o.n_nodes > SIM_MAX)
		s->o.n_nodes = SIM_MAX;
	s->seed = seed;
	s->rng = seed * 0x2545f4914f6cdd1dULL + 1;
	raft_id voters[SIM_MAX];
	for (size_t i = 0; i < s->o.n_voters; i++)
		voters[i] = i + 1;
	for (size_t i = 0; i < s->o.n_voters + s->o.n_learners; i++) {
		sim_node *n = &s->nodes[i + 1];
		n->id = i + 1;
		n->exists = true;
		ms_init(&n->ms);
		ms_bootstrap(&n->ms, voters, s->o.n_voters);
		for (size_t l = 0; l < s->o.n_learners; l++)
			n->ms.snap.conf.learners[n->ms.snap.conf.n_learners++] = s->o.n_voters + 1 + l;
		n->ms.conf = n->ms.snap.conf;
	}
	for (size_t i = s->o.n_voters + s->o.n_learners; i < s->o.n_nodes; i++) {
		sim_node *n = &s->nodes[i + 1];
		n->id = i + 1;
		ms_init(&n->ms);
	}
	struct sim_commit *c = commit_slot(s, 1);
	c->set = true;
	c->term = 1;
	c->chain = 0;
	c->chain_set = true;
	s->max_commit = 1;
	for (size_t i = 0; i < s->o.n_voters + s->o.n_learners; i++)
		boot(s, &s->nodes[i + 1]);
}

void sim_free(sim *s)
{
	for (raft_id j = 1; j <= SIM_MAX; j++) {
		sim_node *n = &s->nodes[j];
		if (n->r)
			raft_destroy(n->r);
		if (n->ms.ents)
			ms_free(&n->ms);
	}
	sim_drop_queue(s);
	free(s->q);
	free(s->leader_of_term);
	free(s->committed);
	free(s->ents);
	free(s->reads);
	memset(s, 0, sizeof(*s));
}
