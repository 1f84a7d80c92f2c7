/*
 * raft_int.h - private structures shared by the raft/ source files.
 *
 * One file per protocol concern: alloc.c (hooks, blobs, arenas), quorum.c (majority
 * and joint counting), tracker.c (per-member progress and the inflight window),
 * confchange.c (configuration transitions and their encoding), log.c (the log view
 * over storage + unstable entries), election.c, replication.c, readindex.c,
 * snapshot.c, transfer.c, and raft.c (the handle, the step dispatcher, ready/advance).
 * Nothing here is visible outside the library.
 */
#ifndef METASTORE_RAFT_INT_H
#define METASTORE_RAFT_INT_H

#include "raft/raft.h"

/* ------------------------------------------------------------- alloc.c -- */

void *ralloc(size_t n);
void *rrealloc(void *p, size_t n);
void rfree(void *p);

/* grow *@arr (element size @esz) so it holds at least @need elements. */
int rgrow(void **arr, size_t *cap, size_t need, size_t esz);

/* A bump allocator for per-ready scratch; chunks are kept across resets. */
typedef struct rarena_chunk {
	struct rarena_chunk *next;
	size_t cap;
	size_t used;
	_Alignas(16) unsigned char mem[];
} rarena_chunk;

typedef struct rarena {
	rarena_chunk *first;
	rarena_chunk *cur;
} rarena;

void *rarena_alloc(rarena *a, size_t n);
void rarena_reset(rarena *a);
void rarena_free(rarena *a);

/* ------------------------------------------------------------ quorum.c -- */

typedef enum { RVOTE_PENDING, RVOTE_LOST, RVOTE_WON } rvote_result;

typedef struct rmajority {
	const raft_id *ids;
	size_t n;
} rmajority;

/* Lookup of a per-member index (match, read ack); false when unknown (counts 0). */
typedef bool (*rindex_fn)(void *ud, raft_id id, raft_index *out);
/* Lookup of a vote: returns 1 yes, 0 no, -1 missing. */
typedef int (*rvote_fn)(void *ud, raft_id id);

raft_index rmajority_committed(rmajority c, rindex_fn fn, void *ud);
raft_index rjoint_committed(rmajority in, rmajority out, rindex_fn fn, void *ud);
rvote_result rmajority_vote(rmajority c, rvote_fn fn, void *ud);
rvote_result rjoint_vote(rmajority in, rmajority out, rvote_fn fn, void *ud);

/* ----------------------------------------------------------- tracker.c -- */

typedef enum { RPR_PROBE, RPR_REPLICATE, RPR_SNAPSHOT } rpr_state;

typedef struct rinflights {
	raft_index *buf;
	size_t cap;
	size_t start;
	size_t count;
} rinflights;

typedef struct rprogress {
	raft_id id;
	raft_index match;
	raft_index next;
	rpr_state state;
	raft_index pending_snapshot;
	bool recent_active;
	bool probe_sent;
	bool is_learner;
	uint64_t read_ack; /* highest read round this member confirmed */
	rinflights infl;
} rprogress;

typedef struct rconfig {
	raft_id voters[RAFT_MAX_NODES];
	size_t n_voters;
	raft_id outgoing[RAFT_MAX_NODES];
	size_t n_outgoing;
	raft_id learners[RAFT_MAX_NODES];
	size_t n_learners;
	raft_id learners_next[RAFT_MAX_NODES];
	size_t n_learners_next;
	bool auto_leave;
} rconfig;

typedef struct rtracker {
	rconfig cfg;
	rprogress prs[RAFT_MAX_NODES];
	size_t n_prs;
	raft_index *infl_pool;
	size_t max_inflight;
	raft_id vote_ids[RAFT_MAX_NODES];
	bool vote_granted[RAFT_MAX_NODES];
	size_t n_votes;
} rtracker;

int rtracker_init(rtracker *t, size_t max_inflight);
void rtracker_free(rtracker *t);
rprogress *rtracker_get(rtracker *t, raft_id id);
rprogress *rtracker_add(rtracker *t, raft_id id, raft_index match, raft_index next, bool learner);
void rtracker_remove(rtracker *t, raft_id id);
bool rtracker_is_joint(const rtracker *t);
bool rtracker_is_voter(const rtracker *t, raft_id id);
raft_index rtracker_committed(rtracker *t);
uint64_t rtracker_read_confirmed(rtracker *t);
void rtracker_reset_votes(rtracker *t);
void rtracker_record_vote(rtracker *t, raft_id id, bool granted);
rvote_result rtracker_tally(rtracker *t);
bool rtracker_quorum_active(rtracker *t, raft_id self);
void rtracker_conf_state(const rtracker *t, raft_conf_state *cs);
/* visit every id of the voters (both halves, each once) */
size_t rtracker_voter_ids(const rtracker *t, raft_id *out);

bool rid_in(const raft_id *ids, size_t n, raft_id id);
bool rid_add(raft_id *ids, size_t *n, raft_id id);
void rid_del(raft_id *ids, size_t *n, raft_id id);

void rpr_become_probe(rprogress *p);
void rpr_become_replicate(rprogress *p);
void rpr_become_snapshot(rprogress *p, raft_index snap_index);
bool rpr_maybe_update(rprogress *p, raft_index n);
bool rpr_maybe_decr_to(rprogress *p, raft_index rejected, raft_index match_hint);
bool rpr_paused(const rprogress *p);
void rinfl_add(rinflights *f, raft_index last);
void rinfl_free_le(rinflights *f, raft_index to);
void rinfl_reset(rinflights *f);
bool rinfl_full(const rinflights *f);

/* -------------------------------------------------------------- log.c -- */

typedef struct rlog {
	raft_storage st;
	raft_snapshot *usnap;   /* snapshot not yet persisted (owned) */
	raft_entry *ents;       /* unstable entries, ents[i].index == offset + i */
	size_t n;
	size_t cap;
	raft_index offset;
	raft_index committed;
	raft_index applied;
	int err;                /* sticky storage failure */
} rlog;

int rlog_init(rlog *l, const raft_storage *st);
void rlog_free(rlog *l);
raft_index rlog_first(rlog *l);
raft_index rlog_last(rlog *l);
int rlog_term(rlog *l, raft_index i, raft_term *out);
raft_term rlog_term0(rlog *l, raft_index i); /* 0 on any error */
raft_term rlog_last_term(rlog *l);
bool rlog_match_term(rlog *l, raft_index i, raft_term t);
bool rlog_up_to_date(rlog *l, raft_index last, raft_term term);
/* Append @n entries (already numbered) after truncating conflicts; takes refs. */
int rlog_append(rlog *l, const raft_entry *e, size_t n);
/* Follower append: returns 0 and *@last_new, or RAFT_EINVAL when the previous entry
 * does not match, RAFT_ECONFLICT when a committed entry would be overwritten. */
int rlog_maybe_append(rlog *l, raft_index index, raft_term log_term, raft_index commit,
                      const raft_entry *e, size_t n, raft_index *last_new);
void rlog_commit_to(rlog *l, raft_index c);
bool rlog_maybe_commit(rlog *l, raft_index c, raft_term term);
raft_index rlog_find_conflict_by_term(rlog *l, raft_index i, raft_term t);
/* Copy entries [lo, hi) under @max_bytes (≥ 1 entry) into @arena, with references. */
int rlog_slice(rlog *l, raft_index lo, raft_index hi, size_t max_bytes, rarena *arena,
               raft_entry **out, size_t *n);
int rlog_snapshot(rlog *l, raft_snapshot *out); /* out->data gets a reference */
int rlog_restore(rlog *l, const raft_snapshot *s);
void rlog_stable_to(rlog *l, raft_index i, raft_term t);
void rlog_stable_snap_to(rlog *l, raft_index i);
/* whether entries [lo, hi] hold a conf change (storage errors count as yes) */
bool rlog_has_conf(rlog *l, raft_index lo, raft_index hi);

/* ------------------------------------------------------------- raft.c -- */

typedef struct rbatch {
	rarena arena;
	raft_message *msgs;
	size_t n_msgs;
	size_t cap_msgs;
	raft_read_state *rs;
	size_t n_rs;
	size_t cap_rs;
} rbatch;

typedef struct rread_req {
	raft_id from; /* 0 = local */
	uint64_t ctx;
	uint64_t round; /* read round assigned, 0 = waiting for one */
	raft_index index;
} rread_req;

struct raft {
	raft_id id;
	raft_term term;
	raft_id vote;
	raft_role role;
	raft_id lead;
	raft_id transferee;
	bool is_learner;
	rlog log;
	rtracker trk;

	unsigned election_tick;
	unsigned heartbeat_tick;
	unsigned election_elapsed;
	unsigned heartbeat_elapsed;
	unsigned rand_timeout;
	uint64_t rng;

	size_t max_msg_bytes;
	size_t max_uncommitted;
	size_t max_entry;
	size_t max_committed;
	bool pre_vote;
	bool check_quorum;
	bool disable_forwarding;

	raft_index pending_conf_index;
	size_t uncommitted;

	/* read index state (leader) */
	rread_req *reads;
	size_t n_reads;
	size_t cap_reads;
	uint64_t read_round;     /* last round started */
	uint64_t read_confirmed; /* last round confirmed by a quorum */

	/* outputs */
	raft_message scratch; /* raft_new_msg() result, copied by raft_send() */
	raft_ready out_rd;    /* the outstanding ready, released by advance/destroy */
	rbatch batch[2];
	int cur;           /* batch being filled */
	bool ready_out;    /* batch[!cur] handed out */
	raft_index ready_applied_to;
	raft_index ready_stable_index;
	raft_term ready_stable_term;
	raft_index ready_snap_index;
	raft_hard_state prev_hs;
	raft_soft_state prev_ss;
	bool oom;          /* a non-fatal allocation failure happened during the step */
	int fatal;         /* poison code */
};

void raft_send(raft *r, raft_message *m);
raft_message *raft_new_msg(raft *r, raft_msg_type type, raft_id to);
int raft_step_msg(raft *r, const raft_message *m);
void raft_fatal(raft *r, int err);

/* ---------------------------------------------------------- election.c -- */
/* a non-leader's election_elapsed stops counting here (no wrap-around) */
#define RAFT_MAX_ELAPSED 1000000000u
void raft_become_follower(raft *r, raft_term term, raft_id lead);
void raft_become_precandidate(raft *r);
void raft_become_candidate(raft *r);
int raft_become_leader(raft *r);
void raft_reset(raft *r, raft_term term);
bool raft_promotable(raft *r);
void raft_campaign(raft *r, bool pre, bool transfer);
void raft_hup(raft *r, bool transfer);
void raft_handle_vote(raft *r, const raft_message *m);
void raft_handle_vote_resp(raft *r, const raft_message *m);
void raft_tick(raft *r);
void raft_voter_commit_hint(raft *r, raft_message *resp);
void raft_learn_commit(raft *r, const raft_message *m);

/* ------------------------------------------------------- replication.c -- */
bool raft_maybe_send_append(raft *r, raft_id to, bool send_if_empty);
void raft_bcast_append(raft *r);
void raft_bcast_heartbeat(raft *r, uint64_t ctx);
void raft_send_heartbeat(raft *r, raft_id to, uint64_t ctx);
bool raft_maybe_commit(raft *r);
int raft_append_entries(raft *r, raft_entry *e, size_t n);
void raft_handle_append(raft *r, const raft_message *m);
void raft_handle_append_resp(raft *r, const raft_message *m);
void raft_handle_heartbeat(raft *r, const raft_message *m);
void raft_handle_heartbeat_resp(raft *r, const raft_message *m);
int raft_propose(raft *r, raft_id from, const raft_entry *e, size_t n);
bool raft_committed_in_term(raft *r);

/* --------------------------------------------------------- readindex.c -- */
int raft_read_request(raft *r, raft_id from, uint64_t ctx);
void raft_read_ack(raft *r, raft_id from, uint64_t round);
void raft_read_on_commit(raft *r);
bool raft_read_on_heartbeat(raft *r);
void raft_read_reset(raft *r);
void raft_add_read_state(raft *r, raft_index index, uint64_t ctx);

/* ---------------------------------------------------------- snapshot.c -- */
bool raft_send_snapshot(raft *r, rprogress *pr);
void raft_handle_snapshot(raft *r, const raft_message *m);
void raft_snapshot_status(raft *r, raft_id id, bool failed);
void raft_tracker_from_conf(raft *r, const raft_conf_state *cs);

/* ---------------------------------------------------------- transfer.c -- */
void raft_handle_transfer(raft *r, raft_id target);
void raft_abort_transfer(raft *r);
void raft_transfer_progress(raft *r, rprogress *pr);
void raft_handoff(raft *r);

/* -------------------------------------------------------- confchange.c -- */
int rconf_apply(rtracker *t, const raft_confchange *cc, raft_index last_index);
int rconf_compute(const rconfig *cur, const raft_confchange *cc, rconfig *out);
bool rconf_is_leave(const raft_confchange *cc);
bool rconf_enters_joint(const raft_confchange *cc, bool *auto_leave);

#endif
