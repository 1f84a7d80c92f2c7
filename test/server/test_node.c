/*
 * Unit tests for srv_node, the node loop on raft/ as a one-member cluster, on a real RocksDB in a
 * temp dir: concurrent proposals are all persisted, applied and completed once
 * with their own response; concurrent proposers share fsyncs (group commit);
 * puts of one key batched together chain their versions through the batch's
 * apply group and are answered only once readers can see them;
 * oversized proposals are refused without a log entry; stop finishes queued
 * work; and a member killed after the log write but before apply replays the
 * entry on the next start (state equals what the acknowledged writes promised).
 */
#include <criterion/criterion.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../storage/st_testutil.h"
#include "etcdcompat/ec_errors.h"
#include "etcdcompat/ec_kv.h"
#include "server/srv_node.h"

typedef struct env {
	char *dir;
	st_db *db;
	ec_kv *kv;
	ec_cluster *cluster;
	srv_node *node;
} env;

#define SELF_ID 0x8e9e05c52164694dULL

/* Open the data dir; a fresh one becomes a one-member cluster of SELF_ID, one
 * holding a log from before the cluster work is upgraded in place. */
static void env_open(env *e)
{
	char err[256];
	st_options o = {.create_if_missing = true};
	cr_assert_eq(st_db_open(e->dir, &o, &e->db, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(ec_cluster_open(e->db, &e->cluster), 0);
	if (ec_cluster_count(e->cluster) == 0 && st_log_last_index(e->db) > 0) {
		cr_assert_eq(srv_node_bootstrap(e->db, e->cluster, SRV_BOOT_RESTART, SELF_ID, NULL,
						err, sizeof(err)),
			     0, "%s", err);
	} else if (ec_cluster_count(e->cluster) == 0) {
		Etcdserverpb__Member m = ETCDSERVERPB__MEMBER__INIT, *mp = &m;
		char *urls[] = {"http://localhost:2380"};
		m.id = SELF_ID;
		m.name = "default";
		m.peerurls = urls;
		m.n_peerurls = 1;
		Metastore__MemberSet set = METASTORE__MEMBER_SET__INIT;
		set.format = 1;
		set.members = &mp;
		set.n_members = 1;
		cr_assert_eq(srv_node_bootstrap(e->db, e->cluster, SRV_BOOT_NEW, SELF_ID, &set, err,
						sizeof(err)),
			     0, "%s", err);
	}
	ec_kv_config kc = {.max_txn_ops = 128};
	cr_assert_eq(ec_kv_open(e->db, &kc, &e->kv), 0);
	srv_node_config nc = {.db = e->db, .kv = e->kv, .cluster = e->cluster, .member_id = SELF_ID,
			      .cluster_id = 0xcdf818194e3a8c32ULL, .max_request_bytes = 1572864};
	cr_assert_eq(srv_node_start(&nc, &e->node, err, sizeof(err)), 0, "%s", err);
}

static void env_close(env *e)
{
	srv_node_stop(e->node);
	ec_kv_close(e->kv);
	ec_cluster_close(e->cluster);
	st_db_close(e->db);
	e->node = NULL;
	e->kv = NULL;
	e->cluster = NULL;
	e->db = NULL;
}

/* One proposer's put and its completion. */
typedef struct put_op {
	char key[32];
	char val[32];
	Etcdserverpb__PutRequest put;
	Metastore__InternalRequest ir;
	atomic_int done;
	int err;
	int64_t rev;
} put_op;

static void put_done(void *ctx, int err, void *resp)
{
	put_op *op = ctx;
	op->err = err;
	if (resp) {
		Etcdserverpb__PutResponse *r = resp;
		op->rev = r->header ? r->header->revision : -1;
		ec_msg_free(resp);
	}
	atomic_fetch_add(&op->done, 1);
}

static void put_init(put_op *op, int i)
{
	Etcdserverpb__PutRequest p = ETCDSERVERPB__PUT_REQUEST__INIT;
	Metastore__InternalRequest ir = METASTORE__INTERNAL_REQUEST__INIT;
	snprintf(op->key, sizeof(op->key), "key-%05d", i);
	snprintf(op->val, sizeof(op->val), "val-%d", i);
	op->put = p;
	op->put.key.data = (uint8_t *)op->key;
	op->put.key.len = strlen(op->key);
	op->put.value.data = (uint8_t *)op->val;
	op->put.value.len = strlen(op->val);
	op->ir = ir;
	op->ir.request_case = METASTORE__INTERNAL_REQUEST__REQUEST_PUT;
	op->ir.put = &op->put;
	atomic_init(&op->done, 0);
	op->err = -1;
	op->rev = 0;
}

static void wait_done(put_op *op)
{
	for (int spin = 0; atomic_load(&op->done) == 0; spin++) {
		cr_assert_lt(spin, 100000, "proposal never completed");
		usleep(100);
	}
}

#define NTHREADS 8
#define PER_THREAD 250
static put_op ops[NTHREADS * PER_THREAD];
static srv_node *shared_node;

static void *proposer(void *arg)
{
	int t = (int)(intptr_t)arg;
	/* Keep a window of outstanding proposals per thread, like concurrent clients. */
	for (int i = 0; i < PER_THREAD; i++) {
		put_op *op = &ops[t * PER_THREAD + i];
		put_init(op, t * PER_THREAD + i);
		if (srv_node_propose(shared_node, &op->ir, put_done, op) != EC_OK)
			return (void *)1;
	}
	return NULL;
}

Test(node, concurrent_proposals_group_commit_and_apply)
{
	env e = {.dir = tu_tmpdir()};
	env_open(&e);
	srv_node_status before;
	srv_node_get_status(e.node, &before);
	cr_assert_eq(ec_kv_revision(e.kv), 1, "fresh keyspace starts at revision 1");

	shared_node = e.node;
	pthread_t th[NTHREADS];
	for (intptr_t t = 0; t < NTHREADS; t++)
		pthread_create(&th[t], NULL, proposer, (void *)t);
	for (int t = 0; t < NTHREADS; t++) {
		void *r;
		pthread_join(th[t], &r);
		cr_assert_null(r, "propose refused");
	}
	int n = NTHREADS * PER_THREAD;
	static char seen[NTHREADS * PER_THREAD + 2];
	memset(seen, 0, sizeof(seen));
	for (int i = 0; i < n; i++) {
		wait_done(&ops[i]);
		cr_assert_eq(atomic_load(&ops[i].done), 1, "completed more than once");
		cr_assert_eq(ops[i].err, EC_OK);
		cr_assert(ops[i].rev >= 2 && ops[i].rev <= n + 1, "rev %lld", (long long)ops[i].rev);
		cr_assert_eq(seen[ops[i].rev], 0, "two puts got revision %lld", (long long)ops[i].rev);
		seen[ops[i].rev] = 1;
	}
	cr_assert_eq(ec_kv_revision(e.kv), n + 1);
	srv_node_status after;
	srv_node_get_status(e.node, &after);
	cr_assert_eq(after.entries - before.entries, (uint64_t)n, "%llu entries for %d puts", (unsigned long long)(after.entries - before.entries), n);
	cr_assert_eq(after.last_index, before.last_index + (uint64_t)n, "last %llu -> %llu", (unsigned long long)before.last_index, (unsigned long long)after.last_index);
	cr_assert_eq(after.applied_index, after.last_index);
	/* Group commit: concurrent proposers must have shared syncs. */
	cr_assert_lt(after.batches - before.batches, (uint64_t)n,
		     "%llu batches for %d entries: no group commit",
		     (unsigned long long)(after.batches - before.batches), n);

	/* Restart: same state, a new term, revisions continue. */
	uint64_t term = after.term;
	env_close(&e);
	env_open(&e);
	srv_node_get_status(e.node, &after);
	cr_assert_eq(after.term, term + 1);
	cr_assert_eq(ec_kv_revision(e.kv), n + 1);
	put_op one;
	put_init(&one, 99999);
	cr_assert_eq(srv_node_propose(e.node, &one.ir, put_done, &one), EC_OK);
	wait_done(&one);
	cr_assert_eq(one.rev, n + 2);
	env_close(&e);
	tu_rmrf(e.dir);
	free(e.dir);
}

/* Same-key puts: each proposer's reply with its prev_kv and what a reader saw. */
typedef struct chain_op {
	put_op op;
	int64_t prev_mod, prev_ver, seen_rev;
} chain_op;

static ec_kv *chain_kv;

static void chain_done(void *ctx, int err, void *resp)
{
	chain_op *c = ctx;
	c->op.err = err;
	if (resp) {
		Etcdserverpb__PutResponse *r = resp;
		c->op.rev = r->header ? r->header->revision : -1;
		c->prev_mod = r->prev_kv ? r->prev_kv->mod_revision : 0;
		c->prev_ver = r->prev_kv ? r->prev_kv->version : 0;
		ec_msg_free(resp);
	}
	/* what any reader sees at the moment the reply leaves */
	c->seen_rev = ec_kv_revision(chain_kv);
	atomic_fetch_add(&c->op.done, 1);
}

#define CHAIN 600
static chain_op chain[CHAIN];

static void *chain_proposer(void *arg)
{
	int t = (int)(intptr_t)arg;
	for (int i = t; i < CHAIN; i += NTHREADS) {
		chain_op *c = &chain[i];
		put_init(&c->op, 0); /* every one writes key-00000 */
		c->op.put.prev_kv = 1;
		if (srv_node_propose(shared_node, &c->op.ir, chain_done, c) != EC_OK)
			return (void *)1;
	}
	return NULL;
}

/* Puts of one key batched together: each reads the one before it in the same
 * batch (versions chain without a gap), and no reply leaves before a reader can
 * see its revision (replies wait for the batch's one apply write). */
Test(node, same_key_puts_in_one_batch_chain_and_reply_after_the_write)
{
	env e = {.dir = tu_tmpdir()};
	env_open(&e);
	shared_node = e.node;
	chain_kv = e.kv;
	srv_node_status before, after;
	srv_node_get_status(e.node, &before);
	pthread_t th[NTHREADS];
	for (intptr_t t = 0; t < NTHREADS; t++)
		pthread_create(&th[t], NULL, chain_proposer, (void *)t);
	for (int t = 0; t < NTHREADS; t++) {
		void *r;
		pthread_join(th[t], &r);
		cr_assert_null(r, "propose refused");
	}
	static chain_op *by_rev[CHAIN + 2];
	memset(by_rev, 0, sizeof(by_rev));
	for (int i = 0; i < CHAIN; i++) {
		wait_done(&chain[i].op);
		cr_assert_eq(chain[i].op.err, EC_OK);
		int64_t r = chain[i].op.rev;
		cr_assert(r >= 2 && r <= CHAIN + 1, "rev %lld", (long long)r);
		cr_assert_null(by_rev[r], "two puts got revision %lld", (long long)r);
		by_rev[r] = &chain[i];
		cr_assert_geq(chain[i].seen_rev, r, "reply for rev %lld left while readers saw %lld",
			      (long long)r, (long long)chain[i].seen_rev);
	}
	for (int64_t r = 2; r <= CHAIN + 1; r++) {
		cr_assert_eq(by_rev[r]->prev_mod, r == 2 ? 0 : r - 1, "rev %lld", (long long)r);
		cr_assert_eq(by_rev[r]->prev_ver, r == 2 ? 0 : r - 2, "rev %lld", (long long)r);
	}
	srv_node_get_status(e.node, &after);
	cr_assert_lt(after.batches - before.batches, (uint64_t)CHAIN, "no batching happened");
	Etcdserverpb__RangeRequest rq = ETCDSERVERPB__RANGE_REQUEST__INIT;
	rq.key.data = (uint8_t *)"key-00000";
	rq.key.len = 9;
	ec_hdr h = {1, 2, 3};
	Etcdserverpb__RangeResponse *rr = NULL;
	cr_assert_eq(ec_kv_range(e.kv, &rq, &h, &rr), EC_OK);
	cr_assert_eq(rr->n_kvs, 1);
	cr_assert_eq(rr->kvs[0]->version, CHAIN);
	cr_assert_eq(rr->kvs[0]->create_revision, 2);
	cr_assert_eq(rr->kvs[0]->mod_revision, CHAIN + 1);
	ec_msg_free(rr);
	env_close(&e);
	tu_rmrf(e.dir);
	free(e.dir);
}

Test(node, oversized_proposal_is_refused_and_changes_nothing)
{
	env e = {.dir = tu_tmpdir()};
	env_open(&e);
	srv_node_status before, after;
	srv_node_get_status(e.node, &before);
	put_op op;
	put_init(&op, 1);
	static uint8_t big[1572864 + 1];
	op.put.value.data = big;
	op.put.value.len = sizeof(big);
	cr_assert_eq(srv_node_propose(e.node, &op.ir, put_done, &op), EC_REQUEST_TOO_LARGE);
	cr_assert_eq(atomic_load(&op.done), 0, "callback must not run on refusal");
	srv_node_get_status(e.node, &after);
	cr_assert_eq(after.last_index, before.last_index);
	cr_assert_eq(ec_kv_revision(e.kv), 1);
	env_close(&e);
	tu_rmrf(e.dir);
	free(e.dir);
}

Test(node, stop_finishes_queued_proposals)
{
	env e = {.dir = tu_tmpdir()};
	env_open(&e);
	static put_op q[200];
	for (int i = 0; i < 200; i++) {
		put_init(&q[i], i);
		cr_assert_eq(srv_node_propose(e.node, &q[i].ir, put_done, &q[i]), EC_OK);
	}
	env_close(&e); /* returns only after every queued proposal completed */
	for (int i = 0; i < 200; i++) {
		cr_assert_eq(atomic_load(&q[i].done), 1, "proposal %d not completed by stop", i);
		cr_assert_eq(q[i].err, EC_OK);
	}
	env_open(&e);
	cr_assert_eq(ec_kv_revision(e.kv), 201, "every acknowledged put survives a clean stop");
	env_close(&e);
	tu_rmrf(e.dir);
	free(e.dir);
}

Test(node, replays_logged_but_unapplied_entries)
{
	env e = {.dir = tu_tmpdir()};
	char err[256];
	st_options o = {.create_if_missing = true};
	/* Write two entries straight into the log, as a crash between the log sync and
	 * apply leaves them: the next start must apply them. */
	cr_assert_eq(st_db_open(e.dir, &o, &e.db, err, sizeof(err)), 0, "%s", err);
	put_op a, b;
	put_init(&a, 1);
	put_init(&b, 2);
	uint8_t ba[256], bb[256];
	size_t la = metastore__internal_request__pack(&a.ir, ba);
	size_t lb = metastore__internal_request__pack(&b.ir, bb);
	st_entry ents[2] = {{.term = 1, .index = 1, .type = 0, .data = ba, .len = la},
			    {.term = 1, .index = 2, .type = 0, .data = bb, .len = lb}};
	st_hardstate hs = {1, 0, 2};
	cr_assert_eq(st_log_append(e.db, ents, 2, &hs, true), 0);
	st_db_close(e.db);

	env_open(&e);
	cr_assert_eq(ec_kv_revision(e.kv), 3, "both logged puts applied on start");
	Etcdserverpb__RangeRequest rr = ETCDSERVERPB__RANGE_REQUEST__INIT;
	rr.key.data = (uint8_t *)"key-00002";
	rr.key.len = 9;
	ec_hdr h = srv_node_hdr(e.node);
	Etcdserverpb__RangeResponse *resp = NULL;
	cr_assert_eq(ec_kv_range(e.kv, &rr, &h, &resp), EC_OK);
	cr_assert_eq(resp->n_kvs, 1);
	cr_assert_eq(resp->kvs[0]->mod_revision, 3);
	cr_assert_eq(resp->kvs[0]->value.len, 5);
	cr_assert_eq(memcmp(resp->kvs[0]->value.data, "val-2", 5), 0);
	ec_msg_free(resp);
	srv_node_status st;
	srv_node_get_status(e.node, &st);
	cr_assert_eq(st.term, 2, "new term after the logged term 1");
	cr_assert_eq(st.applied_index, 3, "two replayed entries + this term's no-op");
	env_close(&e);
	tu_rmrf(e.dir);
	free(e.dir);
}
