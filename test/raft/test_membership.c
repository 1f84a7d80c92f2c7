/*
 * test_membership.c - membership changes (Raft §6 / thesis ch. 4): quorum counting
 * over majority and joint configurations, the conf-change encoding, single-member
 * changes, joint consensus (enter, auto and explicit leave), learners.
 */
#include "harness.h"
#include "raft/raft_int.h"

static raft_index matches[16];

static bool match_fn(void *ud, raft_id id, raft_index *out)
{
	(void)ud;
	if (id >= 16 || matches[id] == UINT64_MAX)
		return false;
	*out = matches[id];
	return true;
}

static int votes[16];
static int vote_fn(void *ud, raft_id id)
{
	(void)ud;
	return votes[id];
}

Test(quorum, majority_committed_index)
{
	raft_id ids[5] = {1, 2, 3, 4, 5};
	raft_index m[6] = {0, 10, 9, 8, 2, 1};
	memcpy(matches, m, sizeof(m));
	cr_assert_eq(rmajority_committed((rmajority){ids, 5}, match_fn, NULL), 8);
	cr_assert_eq(rmajority_committed((rmajority){ids, 4}, match_fn, NULL), 8, "3 of 4");
	cr_assert_eq(rmajority_committed((rmajority){ids, 2}, match_fn, NULL), 9, "2 of 2");
	cr_assert_eq(rmajority_committed((rmajority){ids, 0}, match_fn, NULL), UINT64_MAX);
	matches[3] = UINT64_MAX; /* unknown member counts as 0 */
	cr_assert_eq(rmajority_committed((rmajority){ids, 3}, match_fn, NULL), 9);
	cr_assert_eq(rmajority_committed((rmajority){ids + 2, 3}, match_fn, NULL), 1);
}

Test(quorum, joint_committed_is_the_minimum_of_both_halves)
{
	raft_id in[3] = {1, 2, 3}, out[3] = {3, 4, 5};
	raft_index m[6] = {0, 10, 10, 7, 3, 3};
	memcpy(matches, m, sizeof(m));
	cr_assert_eq(rjoint_committed((rmajority){in, 3}, (rmajority){out, 3}, match_fn, NULL), 3);
	cr_assert_eq(rjoint_committed((rmajority){in, 3}, (rmajority){out, 0}, match_fn, NULL), 10);
	matches[4] = 9;
	cr_assert_eq(rjoint_committed((rmajority){in, 3}, (rmajority){out, 3}, match_fn, NULL), 7);
}

Test(quorum, vote_results_single_and_joint)
{
	raft_id in[3] = {1, 2, 3}, out[3] = {3, 4, 5};
	int v[6] = {0, 1, -1, -1, -1, -1};
	memcpy(votes, v, sizeof(v));
	cr_assert_eq(rmajority_vote((rmajority){in, 3}, vote_fn, NULL), RVOTE_PENDING);
	votes[2] = 1;
	cr_assert_eq(rmajority_vote((rmajority){in, 3}, vote_fn, NULL), RVOTE_WON);
	cr_assert_eq(rjoint_vote((rmajority){in, 3}, (rmajority){out, 3}, vote_fn, NULL), RVOTE_PENDING);
	votes[4] = 0;
	votes[5] = 0;
	cr_assert_eq(rjoint_vote((rmajority){in, 3}, (rmajority){out, 3}, vote_fn, NULL), RVOTE_LOST,
	             "a lost half loses the joint vote");
	votes[5] = 1;
	votes[3] = 1;
	cr_assert_eq(rjoint_vote((rmajority){in, 3}, (rmajority){out, 3}, vote_fn, NULL), RVOTE_WON);
	cr_assert_eq(rmajority_vote((rmajority){in, 0}, vote_fn, NULL), RVOTE_WON);
}

Test(confchange, encode_decode_roundtrip)
{
	raft_confchange cc;
	memset(&cc, 0, sizeof(cc));
	cc.transition = RAFT_CC_TRANSITION_JOINT_EXPLICIT;
	cc.n_changes = 3;
	cc.changes[0] = (raft_confchange_single){RAFT_CC_ADD_NODE, 0x1122334455667788ULL};
	cc.changes[1] = (raft_confchange_single){RAFT_CC_REMOVE_NODE, 2};
	cc.changes[2] = (raft_confchange_single){RAFT_CC_ADD_LEARNER, 3};
	cc.context = "http://10.0.0.1:2380";
	cc.context_len = strlen(cc.context);
	size_t len = 0;
	cr_assert_eq(raft_confchange_encode(&cc, NULL, 0, &len), RAFT_ENOMEM);
	cr_assert_eq(len, 3 + 27 + 4 + cc.context_len);
	unsigned char buf[128];
	cr_assert_eq(raft_confchange_encode(&cc, buf, sizeof(buf), &len), 0);
	cr_assert_eq(buf[0], 1, "version byte");
	raft_confchange d;
	cr_assert_eq(raft_confchange_decode(buf, len, &d), 0);
	cr_assert_eq(d.transition, cc.transition);
	cr_assert_eq(d.n_changes, 3);
	for (int i = 0; i < 3; i++) {
		cr_assert_eq(d.changes[i].type, cc.changes[i].type);
		cr_assert_eq(d.changes[i].node_id, cc.changes[i].node_id);
	}
	cr_assert_eq(d.context_len, cc.context_len);
	cr_assert_eq(memcmp(d.context, cc.context, cc.context_len), 0);
	/* every truncation is refused, as are trailing bytes */
	for (size_t k = 0; k < len; k++)
		cr_assert_neq(raft_confchange_decode(buf, k, &d), 0, "truncated at %zu", k);
	cr_assert_eq(raft_confchange_decode(buf, len + 1, &d), RAFT_ECORRUPT);
	buf[0] = 2;
	cr_assert_eq(raft_confchange_decode(buf, len, &d), RAFT_EFORMAT);
	buf[0] = 1;
	buf[3] = 9; /* unknown change type */
	cr_assert_eq(raft_confchange_decode(buf, len, &d), RAFT_ECORRUPT);
	cc.changes[0].node_id = 0;
	cr_assert_eq(raft_confchange_encode(&cc, buf, sizeof(buf), &len), RAFT_EINVAL);
}

static void add(sim *s, raft_id lead, raft_confchange_type t, raft_id id, int expect)
{
	raft_confchange cc;
	memset(&cc, 0, sizeof(cc));
	cc.n_changes = 1;
	cc.changes[0] = (raft_confchange_single){t, id};
	cr_assert_eq(sim_conf_change(s, lead, &cc), expect);
	sim_stabilize(s);
	sim_tick(s, lead, 1);
	sim_stabilize(s);
}

static bool has(const raft_id *ids, size_t n, raft_id id)
{
	for (size_t i = 0; i < n; i++)
		if (ids[i] == id)
			return true;
	return false;
}

Test(membership_6, learner_receives_log_but_does_not_vote_or_count)
{
	sim s;
	sim_opts o;
	cluster_opts(&o, 3);
	o.n_nodes = 4;
	sim_init(&s, &o, 1);
	cluster_elect(&s, 1);
	add(&s, 1, RAFT_CC_ADD_LEARNER, 4, 0);
	sim_propose(&s, 1, 55);
	sim_stabilize(&s);
	sim_tick(&s, 1, 1);
	sim_stabilize(&s);
	cr_assert_eq(s.nodes[4].last_marker, 55, "the learner applies the log");
	cr_assert(has(s.nodes[1].conf.learners, s.nodes[1].conf.n_learners, 4));
	/* learner never campaigns */
	sim_tick(&s, 4, 100);
	cr_assert_eq(sim_role(&s, 4), RAFT_FOLLOWER);
	/* with two voters down, leader + learner are not a quorum */
	sim_crash(&s, 2);
	sim_crash(&s, 3);
	raft_index c = sim_commit(&s, 1);
	sim_propose(&s, 1, 56);
	sim_stabilize(&s);
	cr_assert_eq(sim_commit(&s, 1), c, "a learner's ack does not commit");
	cluster_assert_ok(&s);
	sim_free(&s);
}

Test(membership_6, add_voter_then_it_counts)
{
	sim s;
	sim_opts o;
	cluster_opts(&o, 3);
	o.n_nodes = 4;
	sim_init(&s, &o, 2);
	cluster_elect(&s, 1);
	add(&s, 1, RAFT_CC_ADD_NODE, 4, 0);
	cr_assert(has(s.nodes[3].conf.voters, s.nodes[3].conf.n_voters, 4));
	cr_assert_eq(s.nodes[3].conf.n_voters, 4);
	/* 4 voters: 1 + 4 is not a majority, 1 + 3 + 4 is */
	sim_crash(&s, 2);
	sim_crash(&s, 3);
	raft_index c = sim_commit(&s, 1);
	sim_propose(&s, 1, 9);
	sim_stabilize(&s);
	cr_assert_eq(sim_commit(&s, 1), c);
	sim_restart(&s, 3);
	sim_tick(&s, 1, 1);
	sim_stabilize(&s);
	cr_assert_gt(sim_commit(&s, 1), c);
	cluster_assert_ok(&s);
	sim_free(&s);
}

Test(membership_6, remove_voter_and_leader_cannot_remove_itself)
{
	sim s;
	sim_opts o;
	cluster_opts(&o, 3);
	sim_init(&s, &o, 3);
	cluster_elect(&s, 1);
	add(&s, 1, RAFT_CC_REMOVE_NODE, 1, RAFT_ECONFLEADER);
	add(&s, 1, RAFT_CC_REMOVE_NODE, 3, 0);
	cr_assert_eq(s.nodes[1].conf.n_voters, 2);
	cr_assert(!has(s.nodes[1].conf.voters, 2, 3));
	/* two voters left: both are needed */
	sim_crash(&s, 3);
	sim_propose(&s, 1, 5);
	sim_stabilize(&s);
	sim_tick(&s, 1, 1);
	sim_stabilize(&s);
	cr_assert_eq(s.nodes[2].last_marker, 5);
	cluster_assert_ok(&s);
	sim_free(&s);
}

Test(membership_6, one_change_at_a_time)
{
	sim s;
	sim_opts o;
	cluster_opts(&o, 3);
	o.n_nodes = 5;
	sim_init(&s, &o, 4);
	cluster_elect(&s, 1);
	sim_isolate(&s, 2);
	sim_isolate(&s, 3); /* the first change cannot commit */
	raft_confchange cc;
	memset(&cc, 0, sizeof(cc));
	cc.n_changes = 1;
	cc.changes[0] = (raft_confchange_single){RAFT_CC_ADD_LEARNER, 4};
	cr_assert_eq(sim_conf_change(&s, 1, &cc), 0);
	cc.changes[0].node_id = 5;
	cr_assert_eq(sim_conf_change(&s, 1, &cc), RAFT_ECONFPENDING);
	/* two voters changed at once without joint consensus is refused at apply time */
	sim_heal(&s);
	sim_tick(&s, 1, 1);
	sim_stabilize(&s);
	cc.transition = RAFT_CC_TRANSITION_AUTO;
	cc.n_changes = 1;
	cr_assert_eq(sim_conf_change(&s, 1, &cc), 0);
	cluster_assert_ok(&s);
	sim_free(&s);
}

Test(membership_6, joint_consensus_enter_and_auto_leave)
{
	sim s;
	sim_opts o;
	cluster_opts(&o, 3);
	o.n_nodes = 5;
	sim_init(&s, &o, 5);
	cluster_elect(&s, 1);
	raft_confchange cc;
	memset(&cc, 0, sizeof(cc));
	cc.n_changes = 3; /* replace 2 and 3 by 4 and 5 at once */
	cc.changes[0] = (raft_confchange_single){RAFT_CC_ADD_NODE, 4};
	cc.changes[1] = (raft_confchange_single){RAFT_CC_ADD_NODE, 5};
	cc.changes[2] = (raft_confchange_single){RAFT_CC_REMOVE_NODE, 2};
	cr_assert_eq(sim_conf_change(&s, 1, &cc), 0);
	bool saw_joint = false;
	while (s.qn > 0) { /* deliver one by one, watching for the joint state */
		size_t before = s.qn;
		sim_deliver_due(&s);
		if (s.nodes[1].conf.n_voters_outgoing == 3)
			saw_joint = true;
		if (s.qn >= before && s.q[0].at > s.now)
			break;
	}
	cr_assert(saw_joint || s.nodes[1].conf.n_voters == 4);
	sim_tick(&s, 1, 1);
	sim_stabilize(&s);
	sim_tick(&s, 1, 1);
	sim_stabilize(&s);
	raft_conf_state *c = &s.nodes[1].conf;
	cr_assert_eq(c->n_voters_outgoing, 0, "the leader left the joint state by itself");
	cr_assert_eq(c->n_voters, 4);
	cr_assert(has(c->voters, 4, 4) && has(c->voters, 4, 5) && !has(c->voters, 4, 2));
	for (raft_id id = 3; id <= 5; id++)
		cr_assert_eq(s.nodes[id].conf.n_voters, 4, "node %llu", (unsigned long long)id);
	cluster_assert_ok(&s);
	sim_free(&s);
}

Test(membership_6, joint_needs_both_majorities)
{
	sim s;
	sim_opts o;
	cluster_opts(&o, 3);
	o.n_nodes = 6;
	sim_init(&s, &o, 6);
	cluster_elect(&s, 1);
	raft_confchange cc;
	memset(&cc, 0, sizeof(cc));
	cc.transition = RAFT_CC_TRANSITION_JOINT_EXPLICIT; /* stay joint until we leave */
	cc.n_changes = 3;
	cc.changes[0] = (raft_confchange_single){RAFT_CC_ADD_NODE, 4};
	cc.changes[1] = (raft_confchange_single){RAFT_CC_ADD_NODE, 5};
	cc.changes[2] = (raft_confchange_single){RAFT_CC_ADD_NODE, 6};
	cr_assert_eq(sim_conf_change(&s, 1, &cc), 0);
	sim_stabilize(&s);
	sim_tick(&s, 1, 1);
	sim_stabilize(&s);
	cr_assert_eq(s.nodes[1].conf.n_voters_outgoing, 3, "explicit: still joint");
	cr_assert_eq(s.nodes[1].conf.n_voters, 6);
	/* incoming {1..6} has a majority in 1,4,5,6 but outgoing {1,2,3} only has 1 */
	sim_crash(&s, 2);
	sim_crash(&s, 3);
	raft_index c = sim_commit(&s, 1);
	sim_propose(&s, 1, 1);
	sim_stabilize(&s);
	cr_assert_eq(sim_commit(&s, 1), c, "the outgoing majority is missing");
	sim_restart(&s, 2);
	sim_tick(&s, 1, 1);
	sim_stabilize(&s);
	cr_assert_gt(sim_commit(&s, 1), c);
	memset(&cc, 0, sizeof(cc)); /* leave */
	cr_assert_eq(sim_conf_change(&s, 1, &cc), 0);
	sim_stabilize(&s);
	sim_tick(&s, 1, 1);
	sim_stabilize(&s);
	cr_assert_eq(s.nodes[1].conf.n_voters_outgoing, 0);
	cluster_assert_ok(&s);
	sim_free(&s);
}

static void raw_joint(raw *w, raft_id id)
{
	/* incoming {1,2,3}, outgoing {1,4,5}, learner 6 */
	raw_init_storage(w, 3);
	raft_conf_state *cs = &w->ms.conf;
	cs->voters_outgoing[0] = 1;
	cs->voters_outgoing[1] = 4;
	cs->voters_outgoing[2] = 5;
	cs->n_voters_outgoing = 3;
	cs->learners[0] = 6;
	cs->n_learners = 1;
	w->ms.snap.conf = *cs;
	raft_config c = raw_config(w, id);
	raw_start(w, &c);
}

static void grant(raw *w, raft_id from, raft_term term)
{
	raft_message v;
	memset(&v, 0, sizeof(v));
	v.type = RAFT_MSG_VOTE_RESP;
	v.from = from;
	v.to = w->r ? raw_status(w).id : 0;
	v.term = term;
	raw_recv(w, &v);
}

Test(membership_6, joint_election_needs_both_majorities)
{
	raw w;
	raw_joint(&w, 1);
	raft_step(w.r, &(raft_event){.type = RAFT_EV_CAMPAIGN});
	raw_process(&w);
	cr_assert_eq(raw_count(&w, RAFT_MSG_VOTE), 4, "asks 2, 3, 4 and 5, not the learner");
	cr_assert_null(raw_find(&w, RAFT_MSG_VOTE, 6));
	grant(&w, 2, 2);
	grant(&w, 3, 2);
	grant(&w, 6, 2); /* a learner's vote counts for nothing */
	cr_assert_eq(raw_status(&w).role, RAFT_CANDIDATE, "incoming majority only");
	grant(&w, 4, 2);
	cr_assert_eq(raw_status(&w).role, RAFT_LEADER);
	raw_free(&w);
}

Test(membership_6, joint_commit_needs_both_majorities)
{
	raw w;
	raw_joint(&w, 1);
	raft_step(w.r, &(raft_event){.type = RAFT_EV_CAMPAIGN});
	raw_process(&w);
	grant(&w, 2, 2);
	grant(&w, 4, 2);
	cr_assert_eq(raw_status(&w).role, RAFT_LEADER);
	raft_message ack;
	memset(&ack, 0, sizeof(ack));
	ack.type = RAFT_MSG_APPEND_RESP;
	ack.to = 1;
	ack.term = 2;
	ack.index = 2;
	ack.from = 2;
	raw_recv(&w, &ack);
	ack.from = 3;
	raw_recv(&w, &ack);
	ack.from = 6;
	raw_recv(&w, &ack);
	cr_assert_eq(raw_status(&w).commit, 1, "the outgoing half {1,4,5} has only the leader");
	ack.from = 5;
	raw_recv(&w, &ack);
	cr_assert_eq(raw_status(&w).commit, 2);
	raw_free(&w);
}
