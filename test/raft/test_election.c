/*
 * test_election.c - leader election (Raft §5.2, §5.4.1) and the thesis' PreVote
 * (§9.6) and CheckQuorum (§6.2) rules.
 */
#include "harness.h"

static raft_message vote_msg(raft_msg_type t, raft_id from, raft_id to, raft_term term,
                             raft_index last, raft_term last_term)
{
	raft_message m;
	memset(&m, 0, sizeof(m));
	m.type = t;
	m.from = from;
	m.to = to;
	m.term = term;
	m.index = last;
	m.log_term = last_term;
	return m;
}

Test(election_5_2, follower_times_out_and_becomes_candidate)
{
	raw w;
	raw_new(&w, 1, 3);
	cr_assert_eq(raw_status(&w).role, RAFT_FOLLOWER);
	unsigned t = 0;
	while (raw_status(&w).role == RAFT_FOLLOWER && t < 40) {
		raw_tick(&w, 1);
		t++;
	}
	raft_status st = raw_status(&w);
	cr_assert_eq(st.role, RAFT_CANDIDATE);
	cr_assert(t >= 10 && t < 20, "timeout %u outside [election, 2*election)", t);
	cr_assert_eq(st.term, 2, "a candidate increments its term");
	cr_assert_eq(st.vote, 1, "a candidate votes for itself");
	cr_assert_eq(raw_count(&w, RAFT_MSG_VOTE), 2, "asks every other voter");
	const raft_message *v = raw_find(&w, RAFT_MSG_VOTE, 2);
	cr_assert_eq(v->term, 2);
	cr_assert_eq(v->index, 1);
	cr_assert_eq(v->log_term, 1);
	cr_assert_eq(w.ms.vote, 1, "the vote is in the persisted hard state");
	raw_free(&w);
}

Test(election_5_2, election_timeouts_are_randomized)
{
	unsigned seen[20] = {0};
	size_t distinct = 0;
	for (raft_id id = 1; id <= 8; id++) {
		raw w;
		raw_init_storage(&w, 9);
		raft_config c = raw_config(&w, id);
		raw_start(&w, &c);
		unsigned t = 0;
		while (raw_status(&w).role == RAFT_FOLLOWER)
			raw_tick(&w, 1), t++;
		cr_assert(t >= 10 && t < 20);
		if (!seen[t]++)
			distinct++;
		raw_free(&w);
	}
	cr_assert(distinct >= 3, "8 members drew only %zu distinct timeouts", distinct);
}

Test(election_5_2, candidate_with_majority_becomes_leader)
{
	sim s;
	sim_opts o;
	cluster_opts(&o, 5);
	sim_init(&s, &o, 1);
	cluster_elect(&s, 3);
	for (raft_id id = 1; id <= 5; id++)
		if (id != 3) {
			cr_assert_eq(sim_role(&s, id), RAFT_FOLLOWER);
			cr_assert_eq(sim_term(&s, id), sim_term(&s, 3));
		}
	cluster_assert_ok(&s);
	sim_free(&s);
}

Test(election_5_2, candidate_without_majority_does_not_win)
{
	sim s;
	sim_opts o;
	cluster_opts(&o, 5);
	sim_init(&s, &o, 2);
	sim_isolate(&s, 2);
	sim_isolate(&s, 3);
	sim_campaign(&s, 1); /* 1 can reach 4 and 5 only: with itself that is 3 of 5 */
	sim_stabilize(&s);
	cr_assert_eq(sim_role(&s, 1), RAFT_LEADER);
	sim_heal(&s);
	sim_isolate(&s, 4);
	sim_isolate(&s, 5);
	sim_isolate(&s, 1);
	sim_campaign(&s, 2); /* 2 and 3 only: 2 of 5 */
	sim_stabilize(&s);
	cr_assert_eq(sim_role(&s, 2), RAFT_CANDIDATE);
	cluster_assert_ok(&s);
	sim_free(&s);
}

Test(election_5_2, one_vote_per_term)
{
	raw w;
	raw_new(&w, 1, 3);
	raft_message m = vote_msg(RAFT_MSG_VOTE, 2, 1, 5, 1, 1);
	raw_recv(&w, &m);
	const raft_message *resp = raw_find(&w, RAFT_MSG_VOTE_RESP, 2);
	cr_assert_not_null(resp);
	cr_assert(!resp->reject);
	cr_assert_eq(w.ms.vote, 2);
	m = vote_msg(RAFT_MSG_VOTE, 3, 1, 5, 1, 1);
	raw_recv(&w, &m);
	resp = raw_find(&w, RAFT_MSG_VOTE_RESP, 3);
	cr_assert_not_null(resp);
	cr_assert(resp->reject, "a second candidate in the same term is refused");
	/* the same candidate asking again gets the vote again (retransmission) */
	m = vote_msg(RAFT_MSG_VOTE, 2, 1, 5, 1, 1);
	raw_recv(&w, &m);
	cr_assert(!raw_find(&w, RAFT_MSG_VOTE_RESP, 2)->reject);
	raw_free(&w);
}

Test(election_5_2, stale_term_vote_refused_with_current_term)
{
	raw w;
	raw_new(&w, 1, 3);
	raft_message m = vote_msg(RAFT_MSG_VOTE, 2, 1, 7, 1, 1);
	raw_recv(&w, &m);
	m = vote_msg(RAFT_MSG_VOTE, 3, 1, 4, 9, 9);
	raw_recv(&w, &m);
	const raft_message *resp = raw_find(&w, RAFT_MSG_VOTE_RESP, 3);
	cr_assert_not_null(resp);
	cr_assert(resp->reject);
	cr_assert_eq(resp->term, 7, "the refusal tells the candidate the current term");
	raw_free(&w);
}

Test(election_5_4_1, vote_denied_to_less_up_to_date_log)
{
	raw w;
	raft_entry e[2] = {{2, 2, RAFT_ENTRY_NORMAL, NULL}, {3, 3, RAFT_ENTRY_NORMAL, NULL}};
	raw_new_with_log(&w, 1, 3, e, 2, 3);
	/* higher last index but lower last term: refused */
	raft_message m = vote_msg(RAFT_MSG_VOTE, 2, 1, 4, 10, 2);
	raw_recv(&w, &m);
	cr_assert(raw_find(&w, RAFT_MSG_VOTE_RESP, 2)->reject);
	/* same last term, shorter log: refused */
	m = vote_msg(RAFT_MSG_VOTE, 3, 1, 5, 2, 3);
	raw_recv(&w, &m);
	cr_assert(raw_find(&w, RAFT_MSG_VOTE_RESP, 3)->reject);
	/* higher last term, shorter log: granted */
	m = vote_msg(RAFT_MSG_VOTE, 3, 1, 6, 2, 4);
	raw_recv(&w, &m);
	cr_assert(!raw_find(&w, RAFT_MSG_VOTE_RESP, 3)->reject);
	raw_free(&w);
}

Test(election_5_2, candidate_steps_down_on_append_from_leader_of_its_term)
{
	raw w;
	raw_new(&w, 1, 3);
	raw_tick(&w, 25);
	raft_status st = raw_status(&w);
	cr_assert_eq(st.role, RAFT_CANDIDATE);
	raft_message m;
	memset(&m, 0, sizeof(m));
	m.type = RAFT_MSG_APPEND;
	m.from = 2;
	m.to = 1;
	m.term = st.term;
	m.index = 1;
	m.log_term = 1;
	raw_recv(&w, &m);
	st = raw_status(&w);
	cr_assert_eq(st.role, RAFT_FOLLOWER);
	cr_assert_eq(st.lead, 2);
	raw_free(&w);
}

Test(election_5_1, higher_term_deposes_leader)
{
	sim s;
	sim_opts o;
	cluster_opts(&o, 3);
	sim_init(&s, &o, 3);
	cluster_elect(&s, 1);
	sim_isolate(&s, 1);
	cluster_elect(&s, 2);
	cr_assert_eq(sim_role(&s, 1), RAFT_LEADER, "the isolated leader does not know yet");
	sim_heal(&s);
	sim_tick(&s, 2, 1); /* heartbeat reaches 1 */
	sim_stabilize(&s);
	cr_assert_eq(sim_role(&s, 1), RAFT_FOLLOWER);
	cr_assert_eq(sim_term(&s, 1), sim_term(&s, 2));
	cluster_assert_ok(&s);
	sim_free(&s);
}

static raft_term partitioned_term_growth(bool pre_vote)
{
	sim s;
	sim_opts o;
	cluster_opts(&o, 3);
	o.pre_vote = pre_vote;
	sim_init(&s, &o, 4);
	cluster_elect(&s, 1);
	raft_term before = sim_term(&s, 1);
	sim_isolate(&s, 3);
	for (int i = 0; i < 100; i++) {
		sim_tick_all(&s);
		sim_stabilize(&s);
	}
	raft_term t3 = sim_term(&s, 3);
	sim_heal(&s);
	for (int i = 0; i < 30; i++) {
		sim_tick_all(&s);
		sim_stabilize(&s);
	}
	raft_term growth = t3 - before;
	if (pre_vote) {
		cr_assert_eq(sim_role(&s, 1), RAFT_LEADER, "PreVote: the leader is not disturbed");
		cr_assert_eq(sim_term(&s, 1), before);
	} else {
		cr_assert_neq(sim_term(&s, 1), before, "without PreVote the rejoining member "
		                                       "forces a new term");
	}
	cluster_assert_ok(&s);
	sim_free(&s);
	return growth;
}

Test(prevote, partitioned_member_does_not_disrupt_on_rejoin)
{
	cr_assert_eq(partitioned_term_growth(true), 0, "pre-candidates never bump their term");
	cr_assert_gt(partitioned_term_growth(false), 3);
}

Test(prevote, prevote_grants_do_not_change_voter_state)
{
	raw w;
	raw_new(&w, 1, 3);
	raft_message m = vote_msg(RAFT_MSG_PREVOTE, 2, 1, 2, 1, 1);
	raw_recv(&w, &m);
	const raft_message *resp = raw_find(&w, RAFT_MSG_PREVOTE_RESP, 2);
	cr_assert(!resp->reject);
	cr_assert_eq(resp->term, 2, "a granted pre-vote answers in the proposed term");
	raft_status st = raw_status(&w);
	cr_assert_eq(st.term, 1);
	cr_assert_eq(st.vote, 0);
	raw_free(&w);
}

Test(check_quorum, leader_without_quorum_steps_down)
{
	sim s;
	sim_opts o;
	cluster_opts(&o, 3);
	o.check_quorum = true;
	sim_init(&s, &o, 5);
	cluster_elect(&s, 1);
	sim_isolate(&s, 1);
	for (int i = 0; i < 25 && sim_role(&s, 1) == RAFT_LEADER; i++) {
		sim_tick(&s, 1, 1);
		sim_stabilize(&s);
	}
	cr_assert_eq(sim_role(&s, 1), RAFT_FOLLOWER);
	cluster_assert_ok(&s);
	sim_free(&s);
}

Test(check_quorum, leader_with_quorum_stays)
{
	sim s;
	sim_opts o;
	cluster_opts(&o, 3);
	o.check_quorum = true;
	sim_init(&s, &o, 6);
	cluster_elect(&s, 1);
	sim_isolate(&s, 3);
	for (int i = 0; i < 60; i++) {
		sim_tick(&s, 1, 1);
		sim_tick(&s, 2, 1);
		sim_stabilize(&s);
	}
	cr_assert_eq(sim_role(&s, 1), RAFT_LEADER);
	cluster_assert_ok(&s);
	sim_free(&s);
}

Test(check_quorum, member_in_lease_ignores_vote_requests)
{
	raw w;
	raw_init_storage(&w, 3);
	raft_config c = raw_config(&w, 1);
	c.check_quorum = true;
	raw_start(&w, &c);
	raft_message hb;
	memset(&hb, 0, sizeof(hb));
	hb.type = RAFT_MSG_HEARTBEAT;
	hb.from = 2;
	hb.to = 1;
	hb.term = 2;
	raw_recv(&w, &hb);
	cr_assert_eq(raw_status(&w).lead, 2);
	raft_message m = vote_msg(RAFT_MSG_VOTE, 3, 1, 3, 5, 2);
	raw_recv(&w, &m);
	cr_assert_eq(w.n_msgs, 0, "no answer inside the lease");
	cr_assert_eq(raw_status(&w).term, 2);
	/* a transfer's vote request overrides the lease */
	m.context = 1;
	raw_recv(&w, &m);
	cr_assert_eq(raw_status(&w).term, 3);
	cr_assert_not_null(raw_find(&w, RAFT_MSG_VOTE_RESP, 3));
	raw_free(&w);
}

/* the persist step must make a granted vote durable before the answer leaves */
Test(election_5_2, granted_vote_is_in_a_synced_hard_state_of_the_same_ready)
{
	raw w;
	raw_new(&w, 1, 3);
	raw_process(&w);
	raft_message m = vote_msg(RAFT_MSG_VOTE, 2, 1, 4, 1, 1);
	raft_event ev = {.type = RAFT_EV_RECEIVE, .receive.msg = &m};
	cr_assert_eq(raft_step(w.r, &ev), 0);
	raft_ready rd;
	cr_assert_eq(raft_get_ready(w.r, &rd), 0);
	bool granted = false;
	for (size_t i = 0; i < rd.n_messages; i++)
		if (rd.messages[i].type == RAFT_MSG_VOTE_RESP && !rd.messages[i].reject)
			granted = true;
	cr_assert(granted);
	cr_assert(rd.has_hard_state, "the vote travels with its hard state");
	cr_assert_eq(rd.hard.term, 4);
	cr_assert_eq(rd.hard.vote, 2);
	cr_assert(rd.must_sync, "a term or vote change must be fsynced before sending");
	cr_assert_eq(raft_advance(w.r, &rd), 0);
	/* new entries must sync too; a change of the commit index alone need not */
	raft_entry e = {4, 2, RAFT_ENTRY_NORMAL, NULL};
	raft_message ap;
	memset(&ap, 0, sizeof(ap));
	ap.type = RAFT_MSG_APPEND;
	ap.from = 2;
	ap.to = 1;
	ap.term = 4;
	ap.index = 1;
	ap.log_term = 1;
	ap.entries = &e;
	ap.n_entries = 1;
	ap.commit = 1;
	cr_assert_eq(raft_step(w.r, &(raft_event){.type = RAFT_EV_RECEIVE, .receive.msg = &ap}), 0);
	cr_assert_eq(raft_get_ready(w.r, &rd), 0);
	cr_assert_eq(rd.n_entries, 1);
	cr_assert(rd.must_sync);
	ms_append(&w.ms, rd.entries, rd.n_entries);
	cr_assert_eq(raft_advance(w.r, &rd), 0);
	raft_message hb;
	memset(&hb, 0, sizeof(hb));
	hb.type = RAFT_MSG_HEARTBEAT;
	hb.from = 2;
	hb.to = 1;
	hb.term = 4;
	hb.commit = 2;
	cr_assert_eq(raft_step(w.r, &(raft_event){.type = RAFT_EV_RECEIVE, .receive.msg = &hb}), 0);
	cr_assert_eq(raft_get_ready(w.r, &rd), 0);
	cr_assert(rd.has_hard_state);
	cr_assert_eq(rd.hard.commit, 2);
	cr_assert(!rd.must_sync, "a commit index can be recovered: no fsync needed");
	cr_assert_eq(raft_advance(w.r, &rd), 0);
	raw_free(&w);
}

/* §5.1: a request from a stale term is refused, and the refusal names the current term */
Test(election_5_1, stale_term_append_is_refused_with_current_term)
{
	raw w;
	raw_new(&w, 2, 3);
	raft_message v = vote_msg(RAFT_MSG_VOTE, 3, 2, 6, 1, 1);
	raw_recv(&w, &v); /* now in term 6 */
	raft_entry e = {3, 2, RAFT_ENTRY_NORMAL, NULL};
	raft_message m;
	memset(&m, 0, sizeof(m));
	m.type = RAFT_MSG_APPEND;
	m.from = 1;
	m.to = 2;
	m.term = 3;
	m.index = 1;
	m.log_term = 1;
	m.entries = &e;
	m.n_entries = 1;
	m.commit = 2;
	raw_recv(&w, &m);
	const raft_message *r = raw_find(&w, RAFT_MSG_APPEND_RESP, 1);
	cr_assert_not_null(r, "the stale leader is told");
	cr_assert_eq(r->term, 6);
	raft_status st = raw_status(&w);
	cr_assert_eq(st.last_index, 1, "nothing from a stale leader is appended");
	cr_assert_eq(st.commit, 1);
	cr_assert_eq(st.term, 6);
	cr_assert_neq(st.lead, 1);
	raw_free(&w);
}

/* the vote is part of the persisted hard state: a restarted voter does not vote twice */
Test(election_5_2, vote_survives_a_restart)
{
	raw w;
	raw_new(&w, 1, 3);
	raft_message m = vote_msg(RAFT_MSG_VOTE, 2, 1, 5, 1, 1);
	raw_recv(&w, &m);
	cr_assert(!raw_find(&w, RAFT_MSG_VOTE_RESP, 2)->reject);
	raft_destroy(w.r); /* crash after the ready was persisted */
	raft_config c = raw_config(&w, 1);
	raw_start(&w, &c);
	raft_status st = raw_status(&w);
	cr_assert_eq(st.term, 5);
	cr_assert_eq(st.vote, 2);
	m = vote_msg(RAFT_MSG_VOTE, 3, 1, 5, 1, 1);
	raw_recv(&w, &m);
	cr_assert(raw_find(&w, RAFT_MSG_VOTE_RESP, 3)->reject, "second vote in term 5 refused");
	raw_free(&w);
}

/* PreVote keeps §5.4.1: a pre-candidate with a stale log is refused */
Test(prevote, prevote_denied_to_less_up_to_date_log)
{
	raw w;
	raft_entry e = {2, 2, RAFT_ENTRY_NORMAL, NULL};
	raw_new_with_log(&w, 1, 3, &e, 1, 2);
	raft_message m = vote_msg(RAFT_MSG_PREVOTE, 2, 1, 3, 1, 1);
	raw_recv(&w, &m);
	cr_assert(raw_find(&w, RAFT_MSG_PREVOTE_RESP, 2)->reject);
	cr_assert_eq(raw_status(&w).term, 2, "answering a pre-vote never changes the term");
	raw_free(&w);
}

/* without CheckQuorum an isolated leader keeps believing it leads (control case) */
Test(check_quorum, without_check_quorum_isolated_leader_stays)
{
	sim s;
	sim_opts o;
	cluster_opts(&o, 3);
	sim_init(&s, &o, 7);
	cluster_elect(&s, 1);
	sim_isolate(&s, 1);
	sim_tick(&s, 1, 50);
	sim_stabilize(&s);
	cr_assert_eq(sim_role(&s, 1), RAFT_LEADER);
	cluster_assert_ok(&s);
	sim_free(&s);
}

/* CheckQuorum in a joint configuration: both halves must have been heard from */
Test(check_quorum, joint_leader_needs_both_halves_active)
{
	raw w;
	raw_init_storage(&w, 3);
	raft_conf_state *cs = &w.ms.conf;
	cs->voters_outgoing[0] = 1;
	cs->voters_outgoing[1] = 4;
	cs->voters_outgoing[2] = 5;
	cs->n_voters_outgoing = 3;
	w.ms.snap.conf = *cs;
	raft_config c = raw_config(&w, 1);
	c.check_quorum = true;
	raw_start(&w, &c);
	raft_step(w.r, &(raft_event){.type = RAFT_EV_CAMPAIGN});
	raw_process(&w);
	raft_message v = vote_msg(RAFT_MSG_VOTE_RESP, 2, 1, 2, 0, 0);
	raw_recv(&w, &v);
	v.from = 4;
	raw_recv(&w, &v);
	cr_assert_eq(raw_status(&w).role, RAFT_LEADER);
	/* 2 and 3 (incoming) answer heartbeats, 4 and 5 (outgoing) stay silent */
	for (int t = 0; t < 25 && raw_status(&w).role == RAFT_LEADER; t++) {
		raw_tick(&w, 1);
		raft_message hr;
		memset(&hr, 0, sizeof(hr));
		hr.type = RAFT_MSG_HEARTBEAT_RESP;
		hr.to = 1;
		hr.term = 2;
		hr.from = 2;
		raw_recv(&w, &hr);
		hr.from = 3;
		raw_recv(&w, &hr);
	}
	cr_assert_eq(raw_status(&w).role, RAFT_FOLLOWER, "the outgoing majority is silent");
	raw_free(&w);
}
