/*
 * sim_random.c - one seeded random schedule over the simulator.
 *
 * Everything about a run is derived from its seed: cluster size (3 or 5 voters,
 * plus spare ids for membership changes), PreVote/CheckQuorum, flow-control limits,
 * the network's drop/duplicate/delay rates, and every action: proposals, reads,
 * crashes, restarts, partitions, compactions, leadership transfers and membership
 * changes (simple and joint). A quarter of the seeds run a "crashy" schedule: members
 * crash and restart four times as often and every APPEND carries one entry, which is
 * what reaches Figure 8 histories (§5.4.2: a new leader replicates an earlier term's
 * entry to a majority and crashes before its own no-op gets there). The sim checks
 * safety after every ready. At the end the network is healed and every member
 * restarted; the cluster must then commit a new entry on every member of the
 * configuration (liveness). It fails when no member applies anything new for
 * LIVENESS_WINDOW election timeouts, or after LIVENESS_MAX ticks in all.
 */
#include <stdio.h>
#include <string.h>

#include "sim.h"

#define MARKER_BASE (1ULL << 62)
#define LIVENESS_WINDOW 60 /* election timeouts without any member applying an entry */
#define LIVENESS_MAX 200000 /* ticks */

/* action weights, per 1000 steps */
typedef struct sched_weights {
	unsigned propose, read, crash, restart, partition, heal, compact, transfer, conf, campaign;
} sched_weights;

static const sched_weights normal_weights = {250, 70, 15, 50, 10, 25, 20, 7, 13, 2};
static const sched_weights crashy_weights = {250, 70, 60, 120, 10, 25, 20, 7, 13, 10};

typedef enum {
	ACT_NONE,
	ACT_PROPOSE,
	ACT_READ,
	ACT_CRASH,
	ACT_RESTART,
	ACT_PARTITION,
	ACT_HEAL,
	ACT_COMPACT,
	ACT_TRANSFER,
	ACT_CONF,
	ACT_CAMPAIGN,
} sched_action;

/* the action that @r (0..999) falls on under weights @w */
static sched_action pick_action(const sched_weights *w, unsigned r)
{
	const unsigned order[] = {w->propose,   w->read,    w->crash,    w->restart,
	                          w->partition, w->heal,    w->compact,  w->transfer,
	                          w->conf,      w->campaign};
	unsigned acc = 0;
	for (size_t i = 0; i < sizeof(order) / sizeof(order[0]); i++) {
		acc += order[i];
		if (r < acc)
			return (sched_action)(ACT_PROPOSE + i);
	}
	return ACT_NONE;
}

/* sum of applied indexes over the members that are up: grows while anyone progresses */
static uint64_t applied_sum(sim *s)
{
	uint64_t sum = 0;
	for (raft_id id = 1; id <= s->o.n_nodes; id++)
		if (s->nodes[id].up)
			sum += s->nodes[id].applied;
	return sum;
}

static unsigned pick(sim *s, unsigned n)
{
	return (unsigned)(sim_rand(s) % n);
}

static void random_partition(sim *s)
{
	sim_heal(s);
	size_t n = s->o.n_nodes;
	switch (pick(s, 3)) {
	case 0: /* isolate one */
		sim_isolate(s, 1 + pick(s, (unsigned)n));
		break;
	case 1: { /* split in two groups */
		bool side[SIM_MAX + 1];
		for (raft_id i = 1; i <= n; i++)
			side[i] = pick(s, 2);
		for (raft_id i = 1; i <= n; i++)
			for (raft_id j = i + 1; j <= n; j++)
				if (side[i] != side[j])
					sim_cut(s, i, j);
		break;
	}
	default: /* a few random broken links (asymmetric reachability) */
		for (int k = 0; k < 3; k++) {
			raft_id a = 1 + pick(s, (unsigned)n), b = 1 + pick(s, (unsigned)n);
			if (a != b)
				s->cut[a][b] = true;
		}
	}
}

static void random_conf_change(sim *s, raft_id lead)
{
	raft_status st;
	sim_node *ln = sim_node_get(s, lead);
	raft_get_status(ln->r, &st);
	raft_confchange cc;
	memset(&cc, 0, sizeof(cc));
	if (st.conf.n_voters_outgoing > 0) {
		sim_conf_change(s, lead, &cc); /* leave joint */
		return;
	}
	size_t k = pick(s, 10) < 6 ? 1 : 2 + pick(s, 2);
	cc.transition = k == 1 ? RAFT_CC_TRANSITION_AUTO : (raft_cc_transition)pick(s, 3);
	for (size_t i = 0; i < k; i++) {
		cc.changes[i].node_id = 1 + pick(s, (unsigned)s->o.n_nodes);
		cc.changes[i].type = (raft_confchange_type)pick(s, 3);
	}
	cc.n_changes = k;
	sim_conf_change(s, lead, &cc);
}

static bool in_conf(const raft_conf_state *c, raft_id id)
{
	for (size_t i = 0; i < c->n_voters; i++)
		if (c->voters[i] == id)
			return true;
	for (size_t i = 0; i < c->n_voters_outgoing; i++)
		if (c->voters_outgoing[i] == id)
			return true;
	for (size_t i = 0; i < c->n_learners; i++)
		if (c->learners[i] == id)
			return true;
	for (size_t i = 0; i < c->n_learners_next; i++)
		if (c->learners_next[i] == id)
			return true;
	return false;
}

bool sim_run_random(uint64_t seed, size_t n_voters, bool membership, unsigned steps, bool trace,
                    char *err, size_t errlen)
{
	sim s;
	sim_opts o;
	memset(&o, 0, sizeof(o));
	o.n_voters = n_voters;
	o.n_nodes = membership ? n_voters + 2 : n_voters;
	o.trace = trace;
	sim_init(&s, &o, seed);
	/* the rest of the parameters come from the seed's stream */
	s.o.pre_vote = pick(&s, 2);
	s.o.check_quorum = pick(&s, 2);
	s.o.drop_pct = pick(&s, 4) * 5;
	s.o.dup_pct = pick(&s, 3) * 5;
	s.o.max_delay = 1 + pick(&s, 4);
	s.o.max_msg_bytes = 8 + pick(&s, 64);
	s.o.max_inflight = 1 + pick(&s, 8);
	bool crashy = pick(&s, 4) == 0;
	if (crashy)
		s.o.max_msg_bytes = 8; /* one 8-byte entry per APPEND */
	const sched_weights *w = crashy ? &crashy_weights : &normal_weights;
	/* handles created by sim_init used defaults for those: recreate with them */
	for (raft_id id = 1; id <= s.o.n_nodes; id++)
		if (s.nodes[id].up) {
			sim_crash(&s, id);
			sim_restart(&s, id);
		}
	uint64_t payload = 1;
	uint64_t read_ctx = 1;
	for (unsigned step = 0; step < steps && !s.failed; step++) {
		s.now++;
		sim_deliver_due(&s);
		sim_tick_all(&s);
		raft_id any = 1 + pick(&s, (unsigned)s.o.n_nodes);
		switch (pick_action(w, pick(&s, 1000))) {
		case ACT_PROPOSE: {
			unsigned burst = 1 + pick(&s, 4);
			for (unsigned b = 0; b < burst; b++)
				sim_propose(&s, any, payload++);
			break;
		}
		case ACT_READ:
			sim_read(&s, any, read_ctx++);
			break;
		case ACT_CRASH:
			sim_crash(&s, any);
			break;
		case ACT_RESTART:
			sim_restart(&s, any);
			break;
		case ACT_PARTITION:
			random_partition(&s);
			break;
		case ACT_HEAL:
			sim_heal(&s);
			break;
		case ACT_COMPACT:
			sim_compact(&s, any, pick(&s, 5));
			break;
		case ACT_TRANSFER: {
			raft_id lead = sim_leader(&s);
			if (lead) {
				raft_event ev = {.type = RAFT_EV_TRANSFER, .transfer.target = any};
				sim_step(&s, lead, &ev);
			}
			break;
		}
		case ACT_CONF:
			if (membership) {
				raft_id lead = sim_leader(&s);
				if (lead)
					random_conf_change(&s, lead);
			}
			break;
		case ACT_CAMPAIGN:
			sim_campaign(&s, any);
			break;
		case ACT_NONE:
			break;
		}
	}
	/* liveness: heal everything, the cluster must make progress */
	if (!s.failed) {
		sim_heal(&s);
		s.o.drop_pct = 0;
		s.o.dup_pct = 0;
		s.o.max_delay = 1;
		for (raft_id id = 1; id <= s.o.n_nodes; id++)
			sim_restart(&s, id);
		uint64_t marker = MARKER_BASE;
		bool ok = false;
		unsigned window = LIVENESS_WINDOW * s.o.election_tick;
		uint64_t progress = applied_sum(&s);
		unsigned idle = 0, t = 0;
		for (; t < LIVENESS_MAX && idle < window && !s.failed && !ok; t++) {
			uint64_t now_sum = applied_sum(&s);
			idle = now_sum > progress ? 0 : idle + 1;
			progress = now_sum;
			s.now++;
			sim_deliver_due(&s);
			sim_tick_all(&s);
			raft_id lead = sim_leader(&s);
			if (lead == 0)
				continue;
			raft_status st;
			raft_get_status(s.nodes[lead].r, &st);
			/* propose until one marker is applied by the leader, then let the rest
			 * of the configuration catch up */
			if (t % 5 == 0 && s.nodes[lead].last_marker <= MARKER_BASE) {
				sim_propose(&s, lead, ++marker);
			}
			if (t % 5 == 0) {
				if (st.conf.n_voters_outgoing > 0 && !st.conf.auto_leave) {
					raft_confchange leave;
					memset(&leave, 0, sizeof(leave));
					sim_conf_change(&s, lead, &leave); /* explicit joint: we leave */
				}
			}
			if (s.nodes[lead].up == false)
				continue;
			uint64_t v = s.nodes[lead].last_marker;
			if (v <= MARKER_BASE || st.conf.n_voters_outgoing > 0)
				continue;
			ok = true;
			for (raft_id id = 1; id <= s.o.n_nodes; id++) {
				if (!in_conf(&st.conf, id))
					continue;
				sim_node *n = &s.nodes[id];
				if (!n->up || n->last_marker != v)
					ok = false;
			}
		}
		if (!ok && !s.failed) {
			if (idle >= window)
				sim_fail(&s, "liveness: healed cluster idle for %u ticks", window);
			else
				sim_fail(&s, "liveness: healed cluster not done after %u ticks", t);
			for (raft_id id = 1; trace && id <= s.o.n_nodes; id++) {
				sim_node *n = &s.nodes[id];
				if (!n->up)
					continue;
				raft_status st;
				raft_get_status(n->r, &st);
				fprintf(stderr, "node %llu role=%d term=%llu lead=%llu commit=%llu applied=%llu "
				                "last=%llu marker=%llu voters=[",
				        (unsigned long long)id, st.role, (unsigned long long)st.term,
				        (unsigned long long)st.lead, (unsigned long long)st.commit,
				        (unsigned long long)st.applied, (unsigned long long)st.last_index,
				        (unsigned long long)n->last_marker);
				for (size_t i = 0; i < st.conf.n_voters; i++)
					fprintf(stderr, " %llu", (unsigned long long)st.conf.voters[i]);
				fprintf(stderr, " ] out=[");
				for (size_t i = 0; i < st.conf.n_voters_outgoing; i++)
					fprintf(stderr, " %llu", (unsigned long long)st.conf.voters_outgoing[i]);
				fprintf(stderr, " ] learners=[");
				for (size_t i = 0; i < st.conf.n_learners; i++)
					fprintf(stderr, " %llu", (unsigned long long)st.conf.learners[i]);
				fprintf(stderr, " ]\n");
			}
		}
	}
	bool good = !s.failed;
	if (!good)
		snprintf(err, errlen, "%s", s.err);
	sim_free(&s);
	return good;
}
