/*
 * test_replication.c - log replication (Raft §5.3), the commitment rule (§5.4.2),
 * flow control and batching, proposal forwarding and limits.
 */
#include "harness.h"

static raft_message append_msg(raft_id from, raft_id to, raft_term term, raft_index prev,
                               raft_term prev_term, raft_entry *e, size_t n, raft_index commit)
{
	raft_message m;
	memset(&m, 0, sizeof(m));
	m.type = RAFT_MSG_APPEND;
	m.from = from;
	m.to = to;
	m.term = term;
	m.index = prev;
	m.log_term = prev_term;
	m.entries = e;
	m.n_entries = n;
	m.commit = commit;
	return m;
}

Test(replication_5_3, leader_replicates_and_everyone_applies)
{
	sim s;
	sim_opts o;
	cluster_opts(&o, 3);
	sim_init(&s, &o, 1);
	cluster_elect(&s, 1);
	for (uint64_t i = 0; i < 10; i++)
		cr_assert_eq(sim_propose(&s, 1, 100 + i), 0);
	sim_stabilize(&s);
	sim_tick(&s, 1, 1); /* heartbeat carries the final commit index */
	sim_stabilize(&s);
	raft_index c = sim_commit(&s, 1);
	cr_assert_eq(c, sim_last(&s, 1));
	for (raft_id id = 1; id <= 3; id++) {
		cr_assert_eq(sim_commit(&s, id), c, "commit index propagates to %llu",
		             (unsigned long long)id);
		cr_assert_eq(s.nodes[id].applied, c);
		cr_assert_eq(s.nodes[id].last_marker, 109);
		cr_assert_eq(s.nodes[id].chain, s.nodes[1].chain);
	}
	cluster_assert_ok(&s);
	sim_free(&s);
}

Test(replication_5_3, follower_rejects_when_previous_entry_does_not_match)
{
	raw w;
	raw_new(&w, 2, 3);
	raft_entry e = {2, 5, RAFT_ENTRY_NORMAL, NULL};
	raft_message m = append_msg(1, 2, 2, 4, 2, &e, 1, 0);
	raw_recv(&w, &m);
	const raft_message *r = raw_find(&w, RAFT_MSG_APPEND_RESP, 1);
	cr_assert(r->reject);
	cr_assert_eq(r->index, 4);
	cr_assert_eq(r->reject_hint, 1, "hints its last index");
	cr_assert_eq(raw_status(&w).last_index, 1);
	raw_free(&w);
}

Test(replication_5_3, follower_truncates_conflicting_suffix)
{
	raw w;
	raft_entry old[3] = {{2, 2, RAFT_ENTRY_NORMAL, NULL},
	                     {2, 3, RAFT_ENTRY_NORMAL, NULL},
	                     {2, 4, RAFT_ENTRY_NORMAL, NULL}};
	raw_new_with_log(&w, 2, 3, old, 3, 2);
	raft_entry e[2] = {{3, 3, RAFT_ENTRY_NORMAL, NULL}, {3, 4, RAFT_ENTRY_NORMAL, NULL}};
	raft_message m = append_msg(1, 2, 3, 2, 2, e, 2, 3);
	raw_recv(&w, &m);
	const raft_message *r = raw_find(&w, RAFT_MSG_APPEND_RESP, 1);
	cr_assert(!r->reject);
	cr_assert_eq(r->index, 4);
	raft_term t;
	cr_assert_eq(raft_log_term(w.r, 3, &t), 0);
	cr_assert_eq(t, 3);
	cr_assert_eq(raft_log_term(w.r, 2, &t), 0);
	cr_assert_eq(t, 2, "the matching prefix stays");
	cr_assert_eq(w.ms.ents[3].term, 3, "the persisted log was rewritten");
	cr_assert_eq(raw_status(&w).commit, 3, "commit follows the leader, capped at the new entries");
	raw_free(&w);
}

Test(replication_5_3, duplicate_append_is_idempotent)
{
	raw w;
	raw_new(&w, 2, 3);
	raft_entry e[2] = {{2, 2, RAFT_ENTRY_NORMAL, NULL}, {2, 3, RAFT_ENTRY_NORMAL, NULL}};
	raft_message m = append_msg(1, 2, 2, 1, 1, e, 2, 1);
	raw_recv(&w, &m);
	raft_message late = append_msg(1, 2, 2, 1, 1, e, 1, 1); /* an older, shorter copy */
	raw_recv(&w, &late);
	cr_assert_eq(raw_status(&w).last_index, 3, "a stale append does not truncate");
	raw_free(&w);
}

/* a follower with a long divergent tail is repaired in a few round trips: the new
 * leader probes it at its own log end, and the reject hints let it skip whole terms */
Test(replication_5_3, fast_backoff_skips_whole_terms)
{
	sim s;
	sim_opts o;
	cluster_opts(&o, 3);
	sim_init(&s, &o, 2);
	cluster_elect(&s, 1);
	sim_isolate(&s, 1);
	for (uint64_t i = 0; i < 60; i++)
		sim_propose(&s, 1, 1000 + i); /* stuck on 1, never committed */
	sim_drop_queue(&s);
	sim_heal(&s);
	sim_isolate(&s, 1);
	cluster_elect(&s, 2);
	for (uint64_t i = 0; i < 60; i++)
		sim_propose(&s, 2, 2000 + i);
	sim_stabilize(&s);
	/* a leader elected after that starts with every follower's next at its log end */
	cluster_elect(&s, 3);
	sim_drop_queue(&s);
	sim_heal(&s);
	uint64_t before = s.stats_msgs;
	for (int i = 0; i < 4; i++) {
		sim_tick(&s, 3, 1);
		sim_stabilize(&s);
	}
	cr_assert_eq(sim_role(&s, 1), RAFT_FOLLOWER);
	cr_assert_eq(s.nodes[1].last_marker, 2059, "1's divergent entries were replaced");
	cr_assert_lt(s.stats_msgs - before, 40, "repair took %llu messages",
	             (unsigned long long)(s.stats_msgs - before));
	cluster_assert_ok(&s);
	sim_free(&s);
}

/* the reject hint names the last index whose term is at most the probe's term */
Test(replication_5_3, reject_hint_skips_the_conflicting_term)
{
	raw w;
	raft_entry old[5] = {{2, 2, RAFT_ENTRY_NORMAL, NULL}, {2, 3, RAFT_ENTRY_NORMAL, NULL},
	                     {4, 4, RAFT_ENTRY_NORMAL, NULL}, {4, 5, RAFT_ENTRY_NORMAL, NULL},
	                     {4, 6, RAFT_ENTRY_NORMAL, NULL}};
	raw_new_with_log(&w, 2, 3, old, 5, 4);
	/* the leader of term 5 probes after index 9 (term 3): we have nothing there */
	raft_message m = append_msg(1, 2, 5, 9, 3, NULL, 0, 0);
	raw_recv(&w, &m);
	const raft_message *r = raw_find(&w, RAFT_MSG_APPEND_RESP, 1);
	cr_assert(r->reject);
	cr_assert_eq(r->index, 9, "the rejected probe is named");
	cr_assert_eq(r->reject_hint, 3, "entries 4..6 have term 4 > 3: skip them all");
	cr_assert_eq(r->log_term, 2);
	raw_free(&w);
}

/* Figure 8: an entry from an earlier term is not committed by counting replicas */
Test(safety_5_4_2, no_commit_of_previous_term_entry_by_counting)
{
	raw w;
	raft_entry e = {2, 2, RAFT_ENTRY_NORMAL, NULL};
	raw_new_with_log(&w, 1, 3, &e, 1, 2);
	raft_event camp = {.type = RAFT_EV_CAMPAIGN};
	cr_assert_eq(raft_step(w.r, &camp), 0);
	raw_process(&w);
	raft_message v;
	memset(&v, 0, sizeof(v));
	v.type = RAFT_MSG_VOTE_RESP;
	v.from = 2;
	v.to = 1;
	v.term = 3;
	raw_recv(&w, &v);
	cr_assert_eq(raw_status(&w).role, RAFT_LEADER);
	cr_assert_eq(raw_status(&w).last_index, 3, "the leader appended its no-op at 3");
	raft_message ack;
	memset(&ack, 0, sizeof(ack));
	ack.type = RAFT_MSG_APPEND_RESP;
	ack.from = 2;
	ack.to = 1;
	ack.term = 3;
	ack.index = 2; /* a majority now stores the term-2 entry */
	raw_recv(&w, &ack);
	cr_assert_eq(raw_status(&w).commit, 1, "term-2 entry must not commit by counting");
	ack.index = 3;
	raw_recv(&w, &ack);
	cr_assert_eq(raw_status(&w).commit, 3, "committing the term-3 entry commits both");
	raw_free(&w);
}

Test(flow_control, inflight_window_limits_unacknowledged_appends)
{
	sim s;
	sim_opts o;
	cluster_opts(&o, 2);
	o.max_inflight = 3;
	o.max_msg_bytes = 1;
	sim_init(&s, &o, 3);
	cluster_elect(&s, 1);
	sim_propose(&s, 1, 1);
	sim_stabilize(&s); /* follower now in replicate state */
	sim_drop_queue(&s);
	size_t before = s.qn;
	for (uint64_t i = 0; i < 20; i++)
		sim_propose(&s, 1, 10 + i);
	size_t appends = 0;
	for (size_t i = 0; i < s.qn; i++)
		if (s.q[i].m.type == RAFT_MSG_APPEND && s.q[i].m.n_entries > 0)
			appends++;
	cr_assert_eq(before, 0);
	cr_assert_eq(appends, 3, "max_inflight bounds the stream (%zu)", appends);
	sim_stabilize(&s);
	sim_tick(&s, 1, 1);
	sim_stabilize(&s);
	cr_assert_eq(s.nodes[2].last_marker, 29, "acks reopen the window until all is sent");
	cluster_assert_ok(&s);
	sim_free(&s);
}

Test(flow_control, max_msg_bytes_splits_and_batches)
{
	sim s;
	sim_opts o;
	cluster_opts(&o, 2);
	o.max_msg_bytes = 100;
	sim_init(&s, &o, 4);
	cluster_elect(&s, 1);
	sim_propose(&s, 1, 1);
	sim_stabilize(&s);
	/* 10 entries of 40 bytes in one propose event: one message would be 400 bytes */
	raft_blob *b[10];
	for (int i = 0; i < 10; i++) {
		b[i] = raft_blob_new(40);
		memset(b[i]->data, i, 40);
	}
	raft_event ev = {.type = RAFT_EV_PROPOSE, .propose = {b, 10}};
	cr_assert_eq(raft_step(s.nodes[1].r, &ev), 0);
	sim_process(&s, 1);
	for (int i = 0; i < 10; i++)
		raft_blob_unref(b[i]);
	size_t total = 0;
	for (size_t i = 0; i < s.qn; i++) {
		if (s.q[i].m.type != RAFT_MSG_APPEND)
			continue;
		size_t bytes = 0;
		for (size_t k = 0; k < s.q[i].m.n_entries; k++)
			bytes += raft_entry_size(&s.q[i].m.entries[k]);
		cr_assert_leq(bytes, 100);
		cr_assert_geq(s.q[i].m.n_entries, 2, "entries are batched up to the byte budget");
		total += s.q[i].m.n_entries;
	}
	cr_assert_eq(total, 10);
	sim_stabilize(&s);
	cluster_assert_ok(&s);
	sim_free(&s);
}

Test(flow_control, many_proposals_share_one_append)
{
	sim s;
	sim_opts o;
	cluster_opts(&o, 3);
	sim_init(&s, &o, 5);
	cluster_elect(&s, 1);
	sim_propose(&s, 1, 1);
	sim_stabilize(&s);
	raft_blob *b[64];
	for (int i = 0; i < 64; i++)
		b[i] = raft_blob_copy(&i, sizeof(i));
	raft_event ev = {.type = RAFT_EV_PROPOSE, .propose = {b, 64}};
	cr_assert_eq(raft_step(s.nodes[1].r, &ev), 0);
	sim_process(&s, 1);
	for (int i = 0; i < 64; i++)
		raft_blob_unref(b[i]);
	cr_assert_eq(s.qn, 2, "one append per follower");
	cr_assert_eq(s.q[0].m.n_entries, 64);
	sim_stabilize(&s);
	cluster_assert_ok(&s);
	sim_free(&s);
}

Test(proposals, follower_forwards_to_leader)
{
	sim s;
	sim_opts o;
	cluster_opts(&o, 3);
	sim_init(&s, &o, 6);
	cluster_elect(&s, 1);
	cr_assert_eq(sim_propose(&s, 3, 77), 0);
	cr_assert_eq(s.q[0].m.type, RAFT_MSG_PROPOSE);
	cr_assert_eq(s.q[0].m.to, 1);
	sim_stabilize(&s);
	sim_tick(&s, 1, 1);
	sim_stabilize(&s);
	for (raft_id id = 1; id <= 3; id++)
		cr_assert_eq(s.nodes[id].last_marker, 77);
	cluster_assert_ok(&s);
	sim_free(&s);
}

Test(proposals, rejected_without_leader)
{
	raw w;
	raw_new(&w, 1, 3);
	raft_blob *b = raft_blob_copy("x", 1);
	raft_event ev = {.type = RAFT_EV_PROPOSE, .propose = {&b, 1}};
	cr_assert_eq(raft_step(w.r, &ev), RAFT_ENOLEADER);
	raw_tick(&w, 25); /* candidate */
	cr_assert_eq(raft_step(w.r, &ev), RAFT_ENOLEADER);
	cr_assert_str_eq(raft_strerror(RAFT_ENOLEADER), "no leader: proposal or request cannot be forwarded");
	raft_blob_unref(b);
	raw_free(&w);
}

Test(proposals, entry_size_and_uncommitted_limits)
{
	raw w;
	raw_init_storage(&w, 3);
	raft_config c = raw_config(&w, 1);
	c.max_entry_bytes = 100;
	c.max_uncommitted_bytes = 250;
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
	raft_blob *big = raft_blob_new(101);
	raft_blob *ok = raft_blob_new(100);
	raft_event ev = {.type = RAFT_EV_PROPOSE, .propose = {&big, 1}};
	cr_assert_eq(raft_step(w.r, &ev), RAFT_ETOOLARGE);
	ev.propose.data = &ok;
	cr_assert_eq(raft_step(w.r, &ev), 0);
	cr_assert_eq(raft_step(w.r, &ev), 0);
	cr_assert_eq(raft_step(w.r, &ev), RAFT_EUNCOMMITTEDFULL, "300 > 250 uncommitted bytes");
	raw_process(&w);
	/* the follower acknowledges everything: the budget is freed once committed */
	raft_message ack;
	memset(&ack, 0, sizeof(ack));
	ack.type = RAFT_MSG_APPEND_RESP;
	ack.from = 2;
	ack.to = 1;
	ack.term = 2;
	ack.index = raw_status(&w).last_index;
	raw_recv(&w, &ack);
	cr_assert_eq(raw_status(&w).commit, ack.index);
	cr_assert_eq(raft_step(w.r, &ev), 0);
	raft_blob_unref(big);
	raft_blob_unref(ok);
	raw_free(&w);
}

/* §5.3: same index, different term at the previous entry → reject, log untouched */
Test(replication_5_3, follower_rejects_when_previous_term_differs)
{
	raw w;
	raft_entry old[2] = {{2, 2, RAFT_ENTRY_NORMAL, NULL}, {2, 3, RAFT_ENTRY_NORMAL, NULL}};
	raw_new_with_log(&w, 2, 3, old, 2, 2);
	raft_entry e = {4, 4, RAFT_ENTRY_NORMAL, NULL};
	raft_message m = append_msg(1, 2, 4, 3, 3, &e, 1, 4);
	raw_recv(&w, &m);
	const raft_message *r = raw_find(&w, RAFT_MSG_APPEND_RESP, 1);
	cr_assert(r->reject, "entry 3 has term 2, the leader's has term 3");
	raft_status st = raw_status(&w);
	cr_assert_eq(st.last_index, 3);
	cr_assert_eq(st.commit, 1);
	raft_term t;
	cr_assert_eq(raft_log_term(w.r, 3, &t), 0);
	cr_assert_eq(t, 2);
	raw_free(&w);
}

/* a follower commits min(leader commit, last entry of this append): entries past
 * the append may still be a stale tail the leader has not replaced yet */
Test(replication_5_3, follower_commit_is_capped_at_the_last_new_entry)
{
	raw w;
	raft_entry old[3] = {{2, 2, RAFT_ENTRY_NORMAL, NULL},
	                     {2, 3, RAFT_ENTRY_NORMAL, NULL},
	                     {2, 4, RAFT_ENTRY_NORMAL, NULL}};
	raw_new_with_log(&w, 2, 3, old, 3, 2);
	/* the term-3 leader committed its own entries 3 and 4; this append carries 2 only */
	raft_entry e = {2, 2, RAFT_ENTRY_NORMAL, NULL};
	raft_message m = append_msg(1, 2, 3, 1, 1, &e, 1, 4);
	raw_recv(&w, &m);
	const raft_message *r = raw_find(&w, RAFT_MSG_APPEND_RESP, 1);
	cr_assert(!r->reject);
	cr_assert_eq(r->index, 2);
	cr_assert_eq(raw_status(&w).commit, 2, "stale entries 3 and 4 must not be committed");
	raw_free(&w);
}

/* heartbeats never carry a commit index beyond what the follower is known to store */
Test(replication_5_3, heartbeat_commit_is_capped_at_the_follower_match)
{
	raw w;
	raw_new(&w, 1, 3);
	raft_step(w.r, &(raft_event){.type = RAFT_EV_CAMPAIGN});
	raw_process(&w);
	raft_message v;
	memset(&v, 0, sizeof(v));
	v.type = RAFT_MSG_VOTE_RESP;
	v.from = 2;
	v.to = 1;
	v.term = 2;
	raw_recv(&w, &v);
	cr_assert_eq(raw_status(&w).role, RAFT_LEADER);
	raft_message ack;
	memset(&ack, 0, sizeof(ack));
	ack.type = RAFT_MSG_APPEND_RESP;
	ack.from = 2;
	ack.to = 1;
	ack.term = 2;
	ack.index = 2;
	raw_recv(&w, &ack);
	cr_assert_eq(raw_status(&w).commit, 2);
	raw_tick(&w, 1);
	const raft_message *h2 = raw_find(&w, RAFT_MSG_HEARTBEAT, 2);
	const raft_message *h3 = raw_find(&w, RAFT_MSG_HEARTBEAT, 3);
	cr_assert_not_null(h2);
	cr_assert_not_null(h3);
	cr_assert_eq(h2->commit, 2);
	cr_assert_eq(h3->commit, 0, "3 has not acknowledged anything in this term");
	raw_free(&w);
}

/* a follower never commits past its log on a heartbeat */
Test(replication_5_3, heartbeat_commit_beyond_the_log_is_ignored)
{
	raw w;
	raw_new(&w, 2, 3);
	raft_message hb;
	memset(&hb, 0, sizeof(hb));
	hb.type = RAFT_MSG_HEARTBEAT;
	hb.from = 1;
	hb.to = 2;
	hb.term = 2;
	hb.commit = 7;
	cr_assert_eq(raw_recv(&w, &hb), 0);
	cr_assert_eq(raw_status(&w).commit, 1);
	cr_assert_not_null(raw_find(&w, RAFT_MSG_HEARTBEAT_RESP, 1));
	raw_free(&w);
}

/* §5.3 with the leader's no-op: a candidate adopts a voter's commit index only when
 * its own log holds that very entry (same index and term) */
Test(replication_5_3, candidate_learns_commit_only_for_a_matching_entry)
{
	raw w;
	raft_entry old[2] = {{2, 2, RAFT_ENTRY_NORMAL, NULL}, {2, 3, RAFT_ENTRY_NORMAL, NULL}};
	raw_new_with_log(&w, 1, 3, old, 2, 2);
	raft_step(w.r, &(raft_event){.type = RAFT_EV_CAMPAIGN});
	raw_process(&w);
	raft_message v;
	memset(&v, 0, sizeof(v));
	v.type = RAFT_MSG_VOTE_RESP;
	v.from = 2;
	v.to = 1;
	v.term = 3;
	v.reject = true;
	v.commit = 3;
	v.log_term = 3; /* 2's entry 3 has term 3: not ours */
	raw_recv(&w, &v);
	cr_assert_eq(raw_status(&w).commit, 1, "a different entry at 3 proves nothing");
	v.from = 3;
	v.log_term = 2; /* the same entry as ours */
	raw_recv(&w, &v);
	cr_assert_eq(raw_status(&w).commit, 3);
	raw_free(&w);
}

/* a follower in probe state gets one APPEND per heartbeat round, not a stream */
Test(flow_control, probe_state_sends_one_append_until_answered)
{
	raw w;
	raw_new(&w, 1, 3);
	raft_step(w.r, &(raft_event){.type = RAFT_EV_CAMPAIGN});
	raw_process(&w);
	raft_message v;
	memset(&v, 0, sizeof(v));
	v.type = RAFT_MSG_VOTE_RESP;
	v.from = 2;
	v.to = 1;
	v.term = 2;
	raw_recv(&w, &v); /* leader: probes 2 and 3 with the no-op */
	cr_assert_eq(raw_count(&w, RAFT_MSG_APPEND), 2);
	raft_blob *b = raft_blob_copy("12345678", 8);
	raft_event ev = {.type = RAFT_EV_PROPOSE, .propose = {&b, 1}};
	for (int i = 0; i < 5; i++) {
		cr_assert_eq(raft_step(w.r, &ev), 0);
		raw_process(&w);
		cr_assert_eq(raw_count(&w, RAFT_MSG_APPEND), 0, "probe outstanding: paused");
	}
	raft_blob_unref(b);
	raft_message hr;
	memset(&hr, 0, sizeof(hr));
	hr.type = RAFT_MSG_HEARTBEAT_RESP;
	hr.from = 3;
	hr.to = 1;
	hr.term = 2;
	raw_recv(&w, &hr);
	cr_assert_eq(raw_count(&w, RAFT_MSG_APPEND), 1, "a heartbeat answer allows one probe");
	const raft_message *p = raw_find(&w, RAFT_MSG_APPEND, 3);
	cr_assert_eq(p->index, 1);
	cr_assert_eq(p->n_entries, 6, "the probe batches everything from the guessed next");
	raw_free(&w);
}

Test(proposals, disable_forwarding_refuses_on_followers)
{
	sim s;
	sim_opts o;
	cluster_opts(&o, 3);
	sim_init(&s, &o, 8);
	cluster_elect(&s, 1);
	sim_crash(&s, 3);
	memstore *ms = &s.nodes[3].ms;
	raft_config c;
	memset(&c, 0, sizeof(c));
	c.id = 3;
	c.disable_forwarding = true;
	c.storage = ms_storage(ms);
	raft *r;
	cr_assert_eq(raft_create(&c, &r), 0);
	raft_message hb;
	memset(&hb, 0, sizeof(hb));
	hb.type = RAFT_MSG_HEARTBEAT;
	hb.from = 1;
	hb.to = 3;
	hb.term = sim_term(&s, 1);
	raft_step(r, &(raft_event){.type = RAFT_EV_RECEIVE, .receive.msg = &hb});
	raft_status st;
	raft_get_status(r, &st);
	cr_assert_eq(st.lead, 1);
	raft_blob *b = raft_blob_copy("x", 1);
	raft_event ev = {.type = RAFT_EV_PROPOSE, .propose = {&b, 1}};
	cr_assert_eq(raft_step(r, &ev), RAFT_ENOLEADER);
	raft_blob_unref(b);
	raft_destroy(r);
	sim_free(&s);
}
