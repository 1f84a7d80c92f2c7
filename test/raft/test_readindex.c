/*
 * test_readindex.c - linearizable reads by ReadIndex (thesis §6.4), batched per
 * heartbeat round, and leadership transfer (thesis §3.10).
 */
#include "harness.h"

static size_t queued(sim *s, raft_msg_type t)
{
	size_t k = 0;
	for (size_t i = 0; i < s->qn; i++)
		if (s->q[i].m.type == t)
			k++;
	return k;
}

static void settle(sim *s, raft_id lead)
{
	sim_propose(s, lead, 1);
	sim_stabilize(s);
	sim_tick(s, lead, 1);
	sim_stabilize(s);
}

Test(readindex, answered_after_a_quorum_confirms_leadership)
{
	sim s;
	sim_opts o;
	cluster_opts(&o, 3);
	sim_init(&s, &o, 1);
	cluster_elect(&s, 1);
	settle(&s, 1);
	raft_index commit = sim_commit(&s, 1);
	cr_assert_eq(sim_read(&s, 1, 7), 0);
	cr_assert(!sim_read_result(&s, 7)->done, "no answer before the heartbeat round");
	cr_assert_eq(queued(&s, RAFT_MSG_HEARTBEAT), 2);
	sim_stabilize(&s);
	const sim_readreq *r = sim_read_result(&s, 7);
	cr_assert(r->done);
	cr_assert_eq(r->got_index, commit);
	cluster_assert_ok(&s);
	sim_free(&s);
}

Test(readindex, isolated_leader_never_answers)
{
	sim s;
	sim_opts o;
	cluster_opts(&o, 3);
	sim_init(&s, &o, 2);
	cluster_elect(&s, 1);
	settle(&s, 1);
	sim_isolate(&s, 1);
	sim_read(&s, 1, 9);
	for (int i = 0; i < 5; i++) {
		sim_tick(&s, 1, 1);
		sim_stabilize(&s);
	}
	cr_assert(!sim_read_result(&s, 9)->done);
	cluster_assert_ok(&s);
	sim_free(&s);
}

Test(readindex, requests_during_a_round_share_the_next_round)
{
	sim s;
	sim_opts o;
	cluster_opts(&o, 3);
	sim_init(&s, &o, 3);
	cluster_elect(&s, 1);
	settle(&s, 1);
	sim_read(&s, 1, 1);
	size_t hb = queued(&s, RAFT_MSG_HEARTBEAT);
	cr_assert_eq(hb, 2, "the first read starts a round at once");
	for (uint64_t ctx = 2; ctx <= 50; ctx++)
		sim_read(&s, 1, ctx);
	cr_assert_eq(queued(&s, RAFT_MSG_HEARTBEAT), hb, "later reads wait for the round");
	sim_stabilize(&s); /* round 1 completes, round 2 carries reads 2..50 */
	for (uint64_t ctx = 1; ctx <= 50; ctx++)
		cr_assert(sim_read_result(&s, ctx)->done, "read %llu", (unsigned long long)ctx);
	cr_assert_lt(s.stats_msgs, 60, "49 reads cost one extra heartbeat round");
	cluster_assert_ok(&s);
	sim_free(&s);
}

Test(readindex, new_leader_waits_for_commit_in_its_term)
{
	raw w;
	raw_init_storage(&w, 3);
	raft_entry e = {1, 2, RAFT_ENTRY_NORMAL, NULL};
	ms_append(&w.ms, &e, 1);
	raft_config c = raw_config(&w, 1);
	raw_start(&w, &c);
	raft_event camp = {.type = RAFT_EV_CAMPAIGN};
	raft_step(w.r, &camp);
	raw_process(&w);
	raft_message v;
	memset(&v, 0, sizeof(v));
	v.type = RAFT_MSG_VOTE_RESP;
	v.from = 2;
	v.to = 1;
	v.term = 2;
	raw_recv(&w, &v);
	cr_assert_eq(raw_status(&w).role, RAFT_LEADER);
	raft_event rd = {.type = RAFT_EV_READ_INDEX, .read_index.ctx = 5};
	cr_assert_eq(raft_step(w.r, &rd), 0);
	raw_process(&w);
	cr_assert_eq(raw_count(&w, RAFT_MSG_HEARTBEAT), 0, "no round before the no-op commits");
	raft_message ack;
	memset(&ack, 0, sizeof(ack));
	ack.type = RAFT_MSG_APPEND_RESP;
	ack.from = 2;
	ack.to = 1;
	ack.term = 2;
	ack.index = 3;
	raw_recv(&w, &ack);
	cr_assert_eq(raw_status(&w).commit, 3);
	const raft_message *hb = raw_find(&w, RAFT_MSG_HEARTBEAT, 2);
	cr_assert_not_null(hb, "the commit starts the round");
	raft_message resp;
	memset(&resp, 0, sizeof(resp));
	resp.type = RAFT_MSG_HEARTBEAT_RESP;
	resp.from = 2;
	resp.to = 1;
	resp.term = 2;
	resp.context = hb->context;
	raw_recv(&w, &resp);
	cr_assert_eq(w.n_rs, 1);
	cr_assert_eq(w.rs[0].ctx, 5);
	cr_assert_eq(w.rs[0].index, 3);
	raw_free(&w);
}

Test(readindex, follower_read_is_forwarded)
{
	sim s;
	sim_opts o;
	cluster_opts(&o, 3);
	sim_init(&s, &o, 4);
	cluster_elect(&s, 1);
	settle(&s, 1);
	cr_assert_eq(sim_read(&s, 3, 11), 0);
	cr_assert_eq(queued(&s, RAFT_MSG_READ_INDEX), 1);
	sim_stabilize(&s);
	const sim_readreq *r = sim_read_result(&s, 11);
	cr_assert(r->done);
	cr_assert_eq(r->got_index, sim_commit(&s, 1));
	cluster_assert_ok(&s);
	sim_free(&s);
}

Test(readindex, no_leader_is_an_error)
{
	raw w;
	raw_new(&w, 2, 3);
	raft_event rd = {.type = RAFT_EV_READ_INDEX, .read_index.ctx = 1};
	cr_assert_eq(raft_step(w.r, &rd), RAFT_ENOLEADER);
	raw_free(&w);
}

Test(transfer, up_to_date_target_takes_over)
{
	sim s;
	sim_opts o;
	cluster_opts(&o, 3);
	o.check_quorum = true;
	sim_init(&s, &o, 5);
	cluster_elect(&s, 1);
	settle(&s, 1);
	raft_event ev = {.type = RAFT_EV_TRANSFER, .transfer.target = 3};
	sim_step(&s, 1, &ev);
	cr_assert_eq(queued(&s, RAFT_MSG_TIMEOUT_NOW), 1);
	sim_stabilize(&s);
	cr_assert_eq(sim_role(&s, 3), RAFT_LEADER);
	cr_assert_eq(sim_role(&s, 1), RAFT_FOLLOWER);
	cluster_assert_ok(&s);
	sim_free(&s);
}

Test(transfer, lagging_target_is_caught_up_first)
{
	sim s;
	sim_opts o;
	cluster_opts(&o, 3);
	sim_init(&s, &o, 6);
	cluster_elect(&s, 1);
	sim_isolate(&s, 3);
	for (uint64_t i = 0; i < 10; i++)
		sim_propose(&s, 1, 10 + i);
	sim_stabilize(&s);
	sim_heal(&s);
	raft_event ev = {.type = RAFT_EV_TRANSFER, .transfer.target = 3};
	sim_step(&s, 1, &ev);
	cr_assert_eq(queued(&s, RAFT_MSG_TIMEOUT_NOW), 0, "not before 3 has the log");
	raft_blob *b = raft_blob_copy("12345678", 8);
	raft_event p = {.type = RAFT_EV_PROPOSE, .propose = {&b, 1}};
	cr_assert_eq(raft_step(s.nodes[1].r, &p), RAFT_ETRANSFERRING);
	raft_blob_unref(b);
	sim_stabilize(&s);
	cr_assert_eq(sim_role(&s, 3), RAFT_LEADER);
	cr_assert_eq(s.nodes[3].last_marker, 19);
	cluster_assert_ok(&s);
	sim_free(&s);
}

Test(transfer, abandoned_after_an_election_timeout)
{
	sim s;
	sim_opts o;
	cluster_opts(&o, 3);
	sim_init(&s, &o, 7);
	cluster_elect(&s, 1);
	settle(&s, 1);
	sim_crash(&s, 3);
	raft_event ev = {.type = RAFT_EV_TRANSFER, .transfer.target = 3};
	sim_step(&s, 1, &ev);
	sim_drop_queue(&s);
	cr_assert_eq(sim_propose(&s, 1, 5), RAFT_ETRANSFERRING);
	sim_tick(&s, 1, 10);
	sim_stabilize(&s);
	cr_assert_eq(sim_role(&s, 1), RAFT_LEADER);
	cr_assert_eq(sim_propose(&s, 1, 5), 0, "proposals resume");
	cluster_assert_ok(&s);
	sim_free(&s);
}

static void hb_resp(raw *w, raft_id from, raft_term term, uint64_t round)
{
	raft_message m;
	memset(&m, 0, sizeof(m));
	m.type = RAFT_MSG_HEARTBEAT_RESP;
	m.from = from;
	m.to = 1;
	m.term = term;
	m.context = round;
	raw_recv(w, &m);
}

static bool has_read_state(const raw *w, uint64_t ctx)
{
	for (size_t i = 0; i < w->n_rs; i++)
		if (w->rs[i].ctx == ctx)
			return true;
	return false;
}

/* thesis §6.4 step 3: the heartbeat round that confirms a read must start after the
 * read arrived. An acknowledgement of an earlier round may have been sent before a
 * newer leader existed, so it proves nothing about the read. */
Test(readindex, a_read_is_not_confirmed_by_a_round_started_before_it)
{
	raw w;
	raw_new(&w, 1, 3);
	raft_step(w.r, &(raft_event){.type = RAFT_EV_CAMPAIGN});
	raw_process(&w);
	raft_message m;
	memset(&m, 0, sizeof(m));
	m.type = RAFT_MSG_VOTE_RESP;
	m.from = 2;
	m.to = 1;
	m.term = 2;
	raw_recv(&w, &m);
	memset(&m, 0, sizeof(m));
	m.type = RAFT_MSG_APPEND_RESP;
	m.from = 2;
	m.to = 1;
	m.term = 2;
	m.index = 2;
	raw_recv(&w, &m);
	cr_assert_eq(raw_status(&w).commit, 2, "the no-op of term 2 is committed");
	raft_event rd = {.type = RAFT_EV_READ_INDEX, .read_index.ctx = 1};
	cr_assert_eq(raft_step(w.r, &rd), 0);
	raw_process(&w);
	const raft_message *hb = raw_find(&w, RAFT_MSG_HEARTBEAT, 2);
	cr_assert_not_null(hb, "read 1 starts a round");
	uint64_t round1 = hb->context;
	rd.read_index.ctx = 2;
	cr_assert_eq(raft_step(w.r, &rd), 0);
	raw_process(&w);
	cr_assert_null(raw_find(&w, RAFT_MSG_HEARTBEAT, 0), "read 2 waits: a round is in flight");
	hb_resp(&w, 2, 2, round1);
	cr_assert(has_read_state(&w, 1), "round 1 confirms read 1");
	cr_assert(!has_read_state(&w, 2), "round 1 started before read 2: it cannot confirm it");
	hb = raw_find(&w, RAFT_MSG_HEARTBEAT, 3);
	cr_assert_not_null(hb, "the next round starts at once for the waiting read");
	uint64_t round2 = hb->context;
	cr_assert_gt(round2, round1);
	hb_resp(&w, 3, 2, round1); /* a late answer to the old round changes nothing */
	cr_assert(!has_read_state(&w, 2));
	hb_resp(&w, 3, 2, round2);
	cr_assert(has_read_state(&w, 2));
	cr_assert_eq(w.rs[0].index, 2);
	raw_free(&w);
}
