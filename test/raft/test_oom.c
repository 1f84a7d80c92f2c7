/*
 * test_oom.c - out-of-memory injection through the allocation hooks. For every
 * allocation a reference scenario makes, one run fails exactly that allocation: the
 * library must return RAFT_ENOMEM (or drop a message, which the protocol tolerates),
 * never crash, leak (ASan checks at exit) or break a safety property, and the
 * cluster must make progress once memory is back. The scenario covers elections,
 * proposals, reads, a snapshot sent to a lagging follower, a learner joining through
 * a conf change and a leadership transfer.
 */
#include <stdio.h>
#include <stdlib.h>

#include "harness.h"

static long alloc_count;
static long fail_at; /* 0 = never */

static void *oom_realloc(void *ud, void *p, size_t n)
{
	(void)ud;
	alloc_count++;
	if (fail_at != 0 && alloc_count == fail_at)
		return NULL;
	return realloc(p, n);
}

static void oom_free(void *ud, void *p)
{
	(void)ud;
	free(p);
}

static bool scenario(long fail, char *why, size_t whylen)
{
	raft_allocator a = {oom_realloc, oom_free, NULL};
	raft_set_allocator(&a);
	alloc_count = 0;
	fail_at = 0;
	sim s;
	sim_opts o;
	cluster_opts(&o, 3);
	o.n_nodes = 4;
	o.max_msg_bytes = 64;
	sim_init(&s, &o, 7);
	alloc_count = 0;
	fail_at = fail;
	sim_campaign(&s, 1);
	sim_stabilize(&s);
	for (uint64_t i = 0; i < 20; i++)
		sim_propose(&s, 1, 10 + i);
	for (uint64_t i = 0; i < 5; i++)
		sim_read(&s, 1 + i % 3, 100 + i);
	/* a lagging follower that needs a snapshot, a learner added, a transfer */
	sim_isolate(&s, 3);
	for (uint64_t i = 0; i < 10; i++)
		sim_propose(&s, 1, 40 + i);
	sim_stabilize(&s);
	sim_tick(&s, 1, 1);
	sim_stabilize(&s);
	sim_compact(&s, 1, 0);
	sim_heal(&s);
	raft_confchange cc;
	memset(&cc, 0, sizeof(cc));
	cc.n_changes = 1;
	cc.changes[0] = (raft_confchange_single){RAFT_CC_ADD_LEARNER, 4};
	sim_conf_change(&s, 1, &cc);
	for (int t = 0; t < 10; t++) {
		sim_tick_all(&s);
		sim_stabilize(&s);
	}
	raft_event tr = {.type = RAFT_EV_TRANSFER, .transfer.target = 2};
	sim_step(&s, 1, &tr);
	for (int t = 0; t < 20; t++) {
		sim_tick_all(&s);
		sim_stabilize(&s);
	}
	fail_at = 0; /* memory is back: the cluster must recover */
	bool ok = false;
	for (int t = 0; t < 200 && !s.failed && !ok; t++) {
		sim_tick_all(&s);
		sim_stabilize(&s);
		raft_id lead = sim_leader(&s);
		if (lead && t % 10 == 0)
			sim_propose(&s, lead, 999);
		ok = s.nodes[1].last_marker == 999 && s.nodes[2].last_marker == 999 &&
		     s.nodes[3].last_marker == 999;
	}
	if (s.failed)
		snprintf(why, whylen, "%s", s.err);
	else if (!ok)
		snprintf(why, whylen, "no progress after the failure");
	bool good = ok && !s.failed;
	sim_free(&s);
	raft_set_allocator(NULL);
	return good;
}

Test(oom, every_allocation_failure_is_survivable, .timeout = 200)
{
	char why[1100] = "";
	cr_assert(scenario(0, why, sizeof(why)), "reference run: %s", why);
	long total = alloc_count;
	cr_assert_gt(total, 10);
	long step = total > 2000 ? total / 2000 : 1;
	for (long k = 1; k <= total; k += step) {
		why[0] = 0;
		cr_assert(scenario(k, why, sizeof(why)), "failing allocation %ld of %ld: %s", k, total,
		          why);
	}
}

Test(oom, create_fails_cleanly)
{
	memstore ms;
	ms_init(&ms);
	raft_id v = 1;
	ms_bootstrap(&ms, &v, 1);
	raft_allocator a = {oom_realloc, oom_free, NULL};
	raft_set_allocator(&a);
	for (long k = 1; k < 10; k++) {
		alloc_count = 0;
		fail_at = k;
		raft_config c;
		memset(&c, 0, sizeof(c));
		c.id = 1;
		c.storage = ms_storage(&ms);
		raft *r = NULL;
		int rc = raft_create(&c, &r);
		cr_assert(rc == 0 || rc == RAFT_ENOMEM, "rc %d", rc);
		cr_assert((rc == 0) == (r != NULL));
		raft_destroy(r);
	}
	fail_at = 0;
	raft_set_allocator(NULL);
	ms_free(&ms);
}
