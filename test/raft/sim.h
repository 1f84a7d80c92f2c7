/*
 * sim.h - a deterministic in-memory cluster for the raft tests.
 *
 * A sim holds up to SIM_MAX members (ids 1..n_nodes), each a real raft handle over a
 * memstore, a tiny replicated state machine (a hash chain over applied entries), a
 * virtual clock and a network that can drop, delay, duplicate, reorder and partition
 * messages. Members can crash (losing everything not persisted) and restart from
 * their memstore. After every ready a node processes, the sim checks the Raft safety
 * properties (election safety, leader append-only, log matching, leader
 * completeness, state-machine safety, ReadIndex linearizability) and the persist
 * contract (monotonic term/vote/commit, must_sync whenever something must be synced);
 * the first violation is recorded in sim->err and sim->failed is set.
 *
 * Unit tests drive it by hand (sim_stabilize delivers everything until quiet);
 * the random schedule runner (sim_run_random) drives it from a seed.
 */
#ifndef METASTORE_TEST_RAFT_SIM_H
#define METASTORE_TEST_RAFT_SIM_H

#include <stdbool.h>
#include <stdint.h>

#include "memstore.h"
#include "raft/raft.h"

#define SIM_MAX 9

typedef struct sim_opts {
	size_t n_voters;         /* initial voters: ids 1..n_voters */
	size_t n_learners;       /* initial learners: ids after the voters */
	size_t n_nodes;          /* id pool (members may be added up to this id) */
	bool pre_vote;
	bool check_quorum;
	unsigned election_tick;  /* default 10 */
	unsigned heartbeat_tick; /* default 1 */
	size_t max_msg_bytes;
	size_t max_inflight;
	size_t max_uncommitted;
	unsigned drop_pct;       /* per message, percent */
	unsigned dup_pct;
	unsigned max_delay;      /* ticks; 0 = delivered by sim_stabilize/next tick */
	bool trace;
} sim_opts;

typedef struct sim_msg {
	uint64_t at;
	uint64_t key;
	raft_message m;
} sim_msg;

typedef struct sim_readreq {
	uint64_t ctx;
	raft_index min_index; /* highest commit anywhere when the read was issued */
	raft_index got_index;
	raft_id node;
	bool done;
} sim_readreq;

typedef struct sim_node {
	raft_id id;
	bool exists;
	bool up;
	raft *r;
	memstore ms;
	raft_index applied;
	uint64_t chain;
	raft_conf_state conf;
	raft_term lead_term;       /* term in which we saw it lead, for append-only */
	raft_index lead_last;
	raft_term lead_last_term;
	uint64_t n_applied_entries;
	uint64_t last_marker;      /* last marker payload applied */
} sim_node;

typedef struct sim {
	sim_opts o;
	uint64_t seed;
	uint64_t rng;
	uint64_t now;
	sim_node nodes[SIM_MAX + 1];
	bool cut[SIM_MAX + 1][SIM_MAX + 1];
	sim_msg *q;
	size_t qn, qcap;
	uint64_t qkey;
	/* invariant bookkeeping */
	raft_id *leader_of_term;
	size_t n_terms;
	struct sim_commit {
		raft_term term;
		uint64_t hash;
		uint64_t chain;
		bool set;
		bool chain_set;
	} *committed;
	size_t n_committed;
	raft_index max_commit;
	struct sim_ent {
		raft_index index;
		raft_term term;
		uint64_t hash;
		raft_term prev_term; /* UINT64_MAX = unknown */
		bool used;
	} *ents;
	size_t ents_cap;
	size_t ents_n;
	sim_readreq *reads;
	size_t n_reads, cap_reads;
	uint64_t next_payload;
	uint64_t stats_msgs;
	uint64_t stats_committed;
	bool failed;
	char err[1024];
} sim;

void sim_init(sim *s, const sim_opts *o, uint64_t seed);
void sim_free(sim *s);
sim_node *sim_node_get(sim *s, raft_id id);
void sim_start(sim *s, raft_id id);  /* create (empty storage if new) and start */
void sim_crash(sim *s, raft_id id);
void sim_restart(sim *s, raft_id id);
void sim_process(sim *s, raft_id id); /* drain readies of one node */
void sim_tick(sim *s, raft_id id, unsigned n);
void sim_tick_all(sim *s);
int sim_step(sim *s, raft_id id, const raft_event *ev); /* + process */
int sim_propose(sim *s, raft_id id, uint64_t payload);
int sim_propose_bytes(sim *s, raft_id id, size_t len, uint64_t payload);
int sim_campaign(sim *s, raft_id id);
int sim_read(sim *s, raft_id id, uint64_t ctx);
int sim_conf_change(sim *s, raft_id id, const raft_confchange *cc);
/* deliver queued messages with at <= now (by (at,key)), processing recipients */
void sim_deliver_due(sim *s);
/* deliver everything queued (ignoring time) until the network is empty or @max
 * messages were delivered; returns messages delivered. */
size_t sim_stabilize(sim *s);
void sim_isolate(sim *s, raft_id id);
void sim_cut(sim *s, raft_id a, raft_id b);
void sim_heal(sim *s);
/* drop every queued message (e.g. after changing the partition) */
void sim_drop_queue(sim *s);
/* the up member that believes it is leader with the highest term, or 0 */
raft_id sim_leader(sim *s);
raft_role sim_role(sim *s, raft_id id);
raft_term sim_term(sim *s, raft_id id);
raft_index sim_commit(sim *s, raft_id id);
raft_index sim_last(sim *s, raft_id id);
/* compact @id's log: snapshot at its applied index, keep @keep entries. */
void sim_compact(sim *s, raft_id id, raft_index keep);
void sim_fail(sim *s, const char *fmt, ...);
/* read-state results */
const sim_readreq *sim_read_result(sim *s, uint64_t ctx);
uint64_t sim_rand(sim *s);

/* one random schedule; returns true on success, else s->err explains */
bool sim_run_random(uint64_t seed, size_t n_voters, bool membership, unsigned steps,
                    bool trace, char *err, size_t errlen);

#endif
