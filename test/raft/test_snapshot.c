/*
 * test_snapshot.c - log compaction and snapshots (Raft §7) and restart from
 * persisted state.
 */
#include "harness.h"

static void commit_some(sim *s, raft_id lead, uint64_t from, int n)
{
	for (int i = 0; i < n; i++)
		sim_propose(s, lead, from + (uint64_t)i);
	sim_stabilize(s);
	sim_tick(s, lead, 1);
	sim_stabilize(s);
}

Test(compaction_7, lagging_follower_gets_snapshot)
{
	sim s;
	sim_opts o;
	cluster_opts(&o, 3);
	sim_init(&s, &o, 1);
	cluster_elect(&s, 1);
	sim_isolate(&s, 3);
	commit_some(&s, 1, 100, 20);
	sim_compact(&s, 1, 0);
	cr_assert_gt(ms_first(&s.nodes[1].ms), 5, "leader compacted its log");
	sim_heal(&s);
	sim_tick(&s, 1, 1);
	bool sent_snapshot = false;
	for (size_t i = 0; i < s.qn; i++)
		if (s.q[i].m.type == RAFT_MSG_SNAPSHOT && s.q[i].m.to == 3)
			sent_snapshot = true;
	cr_assert(sent_snapshot || sim_stabilize(&s) > 0);
	sim_stabilize(&s);
	sim_tick(&s, 1, 1);
	sim_stabilize(&s);
	cr_assert_eq(s.nodes[3].ms.snap.index, s.nodes[1].ms.snap.index, "3 installed the snapshot");
	cr_assert_eq(s.nodes[3].last_marker, 119);
	cr_assert_eq(s.nodes[3].chain, s.nodes[1].chain);
	commit_some(&s, 1, 500, 3);
	cr_assert_eq(s.nodes[3].last_marker, 502, "and replicates normally afterwards");
	cluster_assert_ok(&s);
	sim_free(&s);
}

Test(compaction_7, snapshot_carries_configuration_to_new_member)
{
	sim s;
	sim_opts o;
	cluster_opts(&o, 3);
	o.n_nodes = 4;
	sim_init(&s, &o, 2);
	cluster_elect(&s, 1);
	commit_some(&s, 1, 1, 10);
	sim_compact(&s, 1, 0);
	raft_confchange cc;
	memset(&cc, 0, sizeof(cc));
	cc.n_changes = 1;
	cc.changes[0] = (raft_confchange_single){RAFT_CC_ADD_LEARNER, 4};
	cr_assert_eq(sim_conf_change(&s, 1, &cc), 0);
	sim_stabilize(&s);
	commit_some(&s, 1, 20, 2);
	sim_compact(&s, 1, 0); /* the snapshot now includes learner 4 */
	sim_tick(&s, 1, 1);
	sim_stabilize(&s);
	cr_assert(s.nodes[4].exists);
	cr_assert_eq(s.nodes[4].last_marker, 21);
	cr_assert_eq(s.nodes[4].conf.n_learners, 1);
	cr_assert_eq(s.nodes[4].conf.n_voters, 3);
	cluster_assert_ok(&s);
	sim_free(&s);
}

Test(compaction_7, follower_ignores_stale_snapshot)
{
	raw w;
	raw_new(&w, 2, 3);
	raft_entry e[3] = {{2, 2, RAFT_ENTRY_NORMAL, NULL},
	                   {2, 3, RAFT_ENTRY_NORMAL, NULL},
	                   {2, 4, RAFT_ENTRY_NORMAL, NULL}};
	raft_message m;
	memset(&m, 0, sizeof(m));
	m.type = RAFT_MSG_APPEND;
	m.from = 1;
	m.to = 2;
	m.term = 2;
	m.index = 1;
	m.log_term = 1;
	m.entries = e;
	m.n_entries = 3;
	m.commit = 3;
	raw_recv(&w, &m);
	cr_assert_eq(raw_status(&w).commit, 3);
	raft_snapshot snap;
	memset(&snap, 0, sizeof(snap));
	snap.index = 2;
	snap.term = 2;
	snap.conf.voters[0] = 1;
	snap.conf.voters[1] = 2;
	snap.conf.voters[2] = 3;
	snap.conf.n_voters = 3;
	memset(&m, 0, sizeof(m));
	m.type = RAFT_MSG_SNAPSHOT;
	m.from = 1;
	m.to = 2;
	m.term = 2;
	m.snapshot = &snap;
	raw_recv(&w, &m);
	cr_assert_eq(raw_status(&w).last_index, 4, "an older snapshot changes nothing");
	cr_assert_eq(raw_find(&w, RAFT_MSG_APPEND_RESP, 1)->index, 3);
	/* a snapshot matching our log fast-forwards the commit index only */
	snap.index = 4;
	raw_recv(&w, &m);
	cr_assert_eq(raw_status(&w).commit, 4);
	cr_assert_eq(raw_status(&w).last_index, 4);
	cr_assert_eq(w.ms.snap.index, 1, "nothing to install");
	raw_free(&w);
}

Test(restart, state_is_rebuilt_from_storage)
{
	sim s;
	sim_opts o;
	cluster_opts(&o, 3);
	sim_init(&s, &o, 3);
	cluster_elect(&s, 1);
	commit_some(&s, 1, 1, 10);
	sim_compact(&s, 2, 3);
	raft_term term = sim_term(&s, 1);
	raft_index commit = sim_commit(&s, 1);
	for (raft_id id = 1; id <= 3; id++)
		sim_crash(&s, id);
	for (raft_id id = 1; id <= 3; id++) {
		sim_restart(&s, id);
		raft_status st;
		raft_get_status(s.nodes[id].r, &st);
		cr_assert_eq(st.term, term);
		cr_assert_eq(st.commit, commit, "commit index comes back from the hard state");
		cr_assert_eq(st.role, RAFT_FOLLOWER);
	}
	cr_assert_eq(s.nodes[1].ms.vote, 1);
	/* committed entries after the snapshot are applied again */
	sim_process(&s, 2);
	cr_assert_eq(s.nodes[2].applied, commit);
	cr_assert_eq(s.nodes[2].last_marker, 10);
	cluster_elect(&s, 2);
	commit_some(&s, 2, 50, 1);
	cr_assert_eq(s.nodes[1].last_marker, 50);
	cluster_assert_ok(&s);
	sim_free(&s);
}

Test(restart, crash_before_persist_loses_unpersisted_entries)
{
	raw w;
	raw_new(&w, 1, 1);
	raft_event camp = {.type = RAFT_EV_CAMPAIGN};
	raft_step(w.r, &camp);
	raw_process(&w);
	cr_assert_eq(raw_status(&w).role, RAFT_LEADER);
	raft_index last = raw_status(&w).last_index;
	raft_blob *b = raft_blob_copy("lost", 4);
	raft_event ev = {.type = RAFT_EV_PROPOSE, .propose = {&b, 1}};
	cr_assert_eq(raft_step(w.r, &ev), 0);
	raft_blob_unref(b);
	cr_assert_eq(raw_status(&w).last_index, last + 1);
	raft_destroy(w.r); /* crash without processing the ready */
	raft_config c = raw_config(&w, 1);
	raw_start(&w, &c);
	cr_assert_eq(raw_status(&w).last_index, last);
	raw_free(&w);
}

Test(restart, storage_failure_poisons_the_handle)
{
	raw w;
	raw_new(&w, 1, 3);
	w.ms.fail_next = 99;
	raft_event ev = {.type = RAFT_EV_TICK, .tick.n = 30};
	int rc = raft_step(w.r, &ev);
	cr_assert_eq(rc, RAFT_ESTORAGE);
	cr_assert_eq(raft_step(w.r, &ev), RAFT_EPOISONED);
	raft_ready rd;
	cr_assert_eq(raft_get_ready(w.r, &rd), RAFT_EPOISONED);
	raw_free(&w);
}

/* while a snapshot is in flight the follower gets nothing else; a failed send puts it
 * back in probe state and the snapshot is sent again */
Test(compaction_7, snapshot_in_flight_pauses_the_follower_until_reported)
{
	raw w;
	raw_init_storage(&w, 3);
	raft_entry e[9];
	for (int i = 0; i < 9; i++)
		e[i] = (raft_entry){1, 2 + (raft_index)i, RAFT_ENTRY_NORMAL, NULL};
	ms_append(&w.ms, e, 9);
	w.ms.commit = 10;
	ms_snapshot_and_compact(&w.ms, 8, &w.ms.conf, NULL, 9);
	raft_config c = raw_config(&w, 1);
	c.applied = 8;
	raw_start(&w, &c);
	raft_step(w.r, &(raft_event){.type = RAFT_EV_CAMPAIGN});
	raw_process(&w);
	raft_message m;
	memset(&m, 0, sizeof(m));
	m.type = RAFT_MSG_VOTE_RESP;
	m.from = 2;
	m.to = 1;
	m.term = 2;
	raw_recv(&w, &m);
	cr_assert_eq(raw_status(&w).role, RAFT_LEADER);
	memset(&m, 0, sizeof(m));
	m.type = RAFT_MSG_APPEND_RESP;
	m.from = 2;
	m.to = 1;
	m.term = 2;
	m.index = 11; /* 2 has everything up to the leader's no-op: replicate state */
	raw_recv(&w, &m);
	/* 3 has nothing past index 1: the entries it needs are compacted */
	memset(&m, 0, sizeof(m));
	m.type = RAFT_MSG_APPEND_RESP;
	m.from = 3;
	m.to = 1;
	m.term = 2;
	m.index = 10;
	m.reject = true;
	m.reject_hint = 1;
	m.log_term = 1;
	raw_recv(&w, &m);
	const raft_message *sm = raw_find(&w, RAFT_MSG_SNAPSHOT, 3);
	cr_assert_not_null(sm, "a follower needing compacted entries gets a snapshot");
	cr_assert_eq(sm->index, 8);
	raft_blob *b = raft_blob_copy("12345678", 8);
	raft_event ev = {.type = RAFT_EV_PROPOSE, .propose = {&b, 1}};
	for (int i = 0; i < 3; i++) {
		cr_assert_eq(raft_step(w.r, &ev), 0);
		raw_process(&w);
		cr_assert_null(raw_find(&w, RAFT_MSG_APPEND, 3), "paused: a snapshot is out");
		cr_assert_not_null(raw_find(&w, RAFT_MSG_APPEND, 2));
	}
	raft_blob_unref(b);
	raft_message hr;
	memset(&hr, 0, sizeof(hr));
	hr.type = RAFT_MSG_HEARTBEAT_RESP;
	hr.from = 3;
	hr.to = 1;
	hr.term = 2;
	raw_recv(&w, &hr);
	cr_assert_null(raw_find(&w, RAFT_MSG_APPEND, 3));
	cr_assert_null(raw_find(&w, RAFT_MSG_SNAPSHOT, 3));
	/* the transport reports the send failed: probe again after the next heartbeat */
	raft_event rep = {.type = RAFT_EV_SNAPSHOT_STATUS, .peer = {3, true}};
	cr_assert_eq(raft_step(w.r, &rep), 0);
	raw_process(&w);
	raw_recv(&w, &hr);
	cr_assert_not_null(raw_find(&w, RAFT_MSG_SNAPSHOT, 3), "the snapshot is sent again");
	raw_free(&w);
}
