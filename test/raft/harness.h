/*
 * harness.h - helpers shared by the raft unit tests: a single member driven by hand
 * ("raw": step handcrafted messages, inspect what it sends) and a small cluster
 * built on the simulator with a perfect, zero-delay network.
 */
#ifndef METASTORE_TEST_RAFT_HARNESS_H
#define METASTORE_TEST_RAFT_HARNESS_H

#include <criterion/criterion.h>
#include <string.h>

#include "memstore.h"
#include "sim.h"

#define RAW_MAX_MSGS 256

typedef struct raw {
	memstore ms;
	raft *r;
	raft_message msgs[RAW_MAX_MSGS]; /* shallow copies: entry arrays are not kept */
	size_t n_msgs;
	raft_read_state rs[64];
	size_t n_rs;
	raft_index applied;
	raft_conf_state conf;
	bool has_soft;
	raft_soft_state soft;
} raw;

static inline raft_config raw_config(raw *w, raft_id id)
{
	raft_config c;
	memset(&c, 0, sizeof(c));
	c.id = id;
	c.election_tick = 10;
	c.heartbeat_tick = 1;
	c.storage = ms_storage(&w->ms);
	c.seed = 42;
	return c;
}

/* a member of a bootstrapped cluster of voters 1..n (not started) */
static inline void raw_init_storage(raw *w, size_t n)
{
	memset(w, 0, sizeof(*w));
	ms_init(&w->ms);
	raft_id v[SIM_MAX];
	for (size_t i = 0; i < n; i++)
		v[i] = i + 1;
	ms_bootstrap(&w->ms, v, n);
}

static inline void raw_start(raw *w, const raft_config *c)
{
	int rc = raft_create(c, &w->r);
	cr_assert_eq(rc, 0, "raft_create: %s", raft_strerror(rc));
	w->applied = w->ms.snap.index;
}

/* member @id of voters 1..@n whose stored log already holds @ents[0..@k) and whose
 * stored term is @term, started with raw_config's settings */
static inline void raw_new_with_log(raw *w, raft_id id, size_t n, const raft_entry *ents, size_t k,
				    raft_term term)
{
	raw_init_storage(w, n);
	ms_append(&w->ms, ents, k);
	w->ms.term = term;
	raft_config c = raw_config(w, id);
	raw_start(w, &c);
}

static inline void raw_new(raw *w, raft_id id, size_t n)
{
	raw_init_storage(w, n);
	raft_config c = raw_config(w, id);
	raw_start(w, &c);
}

static inline void raw_free(raw *w)
{
	raft_destroy(w->r);
	ms_free(&w->ms);
}

/* process every ready: persist, keep messages, apply; returns messages collected */
static inline size_t raw_process(raw *w)
{
	w->n_msgs = 0;
	w->n_rs = 0;
	w->has_soft = false;
	while (raft_has_ready(w->r)) {
		raft_ready rd;
		cr_assert_eq(raft_get_ready(w->r, &rd), 0);
		if (rd.snapshot)
			ms_apply_snapshot(&w->ms, rd.snapshot);
		ms_append(&w->ms, rd.entries, rd.n_entries);
		if (rd.has_hard_state)
			ms_set_hard_state(&w->ms, &rd.hard);
		if (rd.has_soft_state) {
			w->has_soft = true;
			w->soft = rd.soft;
		}
		for (size_t i = 0; i < rd.n_messages && w->n_msgs < RAW_MAX_MSGS; i++) {
			w->msgs[w->n_msgs] = rd.messages[i];
			w->msgs[w->n_msgs].entries = NULL;
			w->msgs[w->n_msgs].snapshot = NULL;
			w->n_msgs++;
		}
		for (size_t i = 0; i < rd.n_read_states && w->n_rs < 64; i++)
			w->rs[w->n_rs++] = rd.read_states[i];
		if (rd.snapshot)
			w->applied = rd.snapshot->index;
		for (size_t i = 0; i < rd.n_committed; i++) {
			const raft_entry *e = &rd.committed[i];
			if (e->type == RAFT_ENTRY_CONF_CHANGE) {
				raft_confchange cc;
				cr_assert_eq(raft_confchange_decode(e->data->data, e->data->len, &cc), 0);
				raft_apply_conf_change(w->r, &cc, &w->conf);
			}
			w->applied = e->index;
		}
		cr_assert_eq(raft_advance(w->r, &rd), 0);
	}
	return w->n_msgs;
}

static inline int raw_recv(raw *w, const raft_message *m)
{
	raft_event ev = {.type = RAFT_EV_RECEIVE, .receive.msg = m};
	int rc = raft_step(w->r, &ev);
	raw_process(w);
	return rc;
}

static inline void raw_tick(raw *w, unsigned n)
{
	raft_event ev = {.type = RAFT_EV_TICK, .tick.n = n};
	cr_assert_eq(raft_step(w->r, &ev), 0);
	raw_process(w);
}

static inline size_t raw_count(const raw *w, raft_msg_type t)
{
	size_t k = 0;
	for (size_t i = 0; i < w->n_msgs; i++)
		if (w->msgs[i].type == t)
			k++;
	return k;
}

static inline const raft_message *raw_find(const raw *w, raft_msg_type t, raft_id to)
{
	for (size_t i = 0; i < w->n_msgs; i++)
		if (w->msgs[i].type == t && (to == 0 || w->msgs[i].to == to))
			return &w->msgs[i];
	return NULL;
}

static inline raft_status raw_status(const raw *w)
{
	raft_status st;
	raft_get_status(w->r, &st);
	return st;
}

/* ----------------------------------------------------------- cluster -- */

static inline void cluster_opts(sim_opts *o, size_t voters)
{
	memset(o, 0, sizeof(*o));
	o->n_voters = voters;
	o->n_nodes = voters;
}

static inline void cluster_elect(sim *s, raft_id id)
{
	sim_campaign(s, id);
	sim_stabilize(s);
	cr_assert_eq(sim_role(s, id), RAFT_LEADER, "node %llu did not win: %s",
	             (unsigned long long)id, s->err);
}

static inline void cluster_assert_ok(sim *s)
{
	cr_assert(!s->failed, "safety check failed: %s", s->err);
}

#endif
