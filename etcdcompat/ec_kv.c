/*
 * ec_kv: etcd's KV API (Range, Put, DeleteRange, Txn, Compact) over the MVCC
 * keyspace of storage/st_mvcc.h.
 *
 * The rules follow etcd 3.4: request checks as in etcdserver/api/v3rpc/key.go,
 * apply as in etcdserver/apply.go on top of mvcc/kvstore_txn.go. Every client
 * visible quirk is kept on purpose (count before filters, limit+1 fetches when
 * no sort is asked for, compares evaluated before any op runs, sub-response
 * headers that carry only a revision, ...); the comments say where.
 *
 * Execution: one st_txn per request. Apply uses a write txn whose changes become
 * one revision and are committed with the applied index; Range and read-only
 * Txn use a read txn (a RocksDB snapshot) on the caller's thread.
 */
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "etcdcompat/ec_errors.h"
#include "etcdcompat/ec_kv.h"
#include "storage/st_mvcc.h"

#define EC_DEFAULT_MAX_TXN_OPS 128

struct ec_kv {
	st_db *db;
	ec_kv_config cfg;
	ec_lease_hooks lease;
	bool has_lease_hooks;
	ec_kv_v2_apply_fn v2_apply; /* v2 store writes (ec_kv_set_v2_hook), may be NULL */
	void *v2_arg;
	/* ec_kv_stats_get's counters: applies on the node thread, reads on any */
	atomic_uint_fast64_t n_range, n_put, n_delete, n_txn;
};

/* One request being executed: the txn it runs in and the first storage error
 * met (reported as EC_INTERNAL upward, and as the ST_* code by ec_kv_apply). */
typedef struct exec {
	ec_kv *kv;
	st_txn *t;
	int st_err;
	unsigned ranges, puts, deletes; /* storage calls, as etcd's metricsTxnWrite counts */
} exec;

/* Add @ex's calls to the module's counters (metricsTxnWrite.End: a request that
 * made more than one call is also one txn). */
static void count_calls(const exec *ex)
{
	ec_kv *kv = ex->kv;
	if (ex->ranges)
		atomic_fetch_add_explicit(&kv->n_range, ex->ranges, memory_order_relaxed);
	if (ex->puts)
		atomic_fetch_add_explicit(&kv->n_put, ex->puts, memory_order_relaxed);
	if (ex->deletes)
		atomic_fetch_add_explicit(&kv->n_delete, ex->deletes, memory_order_relaxed);
	if (ex->ranges + ex->puts + ex->deletes > 1)
		atomic_fetch_add_explicit(&kv->n_txn, 1, memory_order_relaxed);
}

static int st_fail(exec *ex, int st)
{
	if (ex->st_err == 0)
		ex->st_err = st;
	return EC_INTERNAL;
}

static int nomem(exec *ex)
{
	return st_fail(ex, ST_ENOMEM);
}

/* ---- building responses ----------------------------------------------- */

void ec_msg_free(void *msg)
{
	if (msg != NULL)
		protobuf_c_message_free_unpacked((ProtobufCMessage *)msg, NULL);
}

static bool bytes_dup(ProtobufCBinaryData *d, const uint8_t *p, size_t n)
{
	d->data = NULL;
	d->len = 0;
	if (n == 0)
		return true;
	d->data = malloc(n);
	if (d->data == NULL)
		return false;
	memcpy(d->data, p, n);
	d->len = n;
	return true;
}

Etcdserverpb__ResponseHeader *ec_hdr_new(int64_t rev, const ec_hdr *h)
{
	Etcdserverpb__ResponseHeader *r = malloc(sizeof(*r));
	if (r == NULL)
		return NULL;
	etcdserverpb__response_header__init(r);
	r->revision = rev;
	if (h != NULL) {
		r->cluster_id = h->cluster_id;
		r->member_id = h->member_id;
		r->raft_term = h->raft_term;
	}
	return r;
}

static Mvccpb__KeyValue *kv_new(const st_kv *kv, bool with_value)
{
	Mvccpb__KeyValue *m = malloc(sizeof(*m));
	if (m == NULL)
		return NULL;
	mvccpb__key_value__init(m);
	m->create_revision = kv->create_rev;
	m->mod_revision = kv->mod_rev;
	m->version = kv->version;
	m->lease = kv->lease;
	if (!bytes_dup(&m->key, kv->key, kv->key_len) ||
	    (with_value && !bytes_dup(&m->value, kv->val, kv->val_len))) {
		ec_msg_free(m);
		return NULL;
	}
	return m;
}

/* ---- Range ------------------------------------------------------------ */

/* Collects a range walk: counts every key, keeps the first @keep. */
struct range_acc {
	Mvccpb__KeyValue **kvs;
	size_t n, cap, keep;
	int64_t count;
	bool values;
	bool oom;
};

static int range_visit(void *arg, const st_kv *kv)
{
	struct range_acc *a = arg;
	a->count++;
	if (a->n >= a->keep)
		return 0;
	if (a->n == a->cap) {
		size_t cap = a->cap ? a->cap * 2 : 16;
		Mvccpb__KeyValue **p = realloc(a->kvs, cap * sizeof(*p));
		if (p == NULL) {
			a->oom = true;
			return ST_ENOMEM;
		}
		a->kvs = p;
		a->cap = cap;
	}
	Mvccpb__KeyValue *m = kv_new(kv, a->values);
	if (m == NULL) {
		a->oom = true;
		return ST_ENOMEM;
	}
	a->kvs[a->n++] = m;
	return 0;
}

static int bytes_cmp(const ProtobufCBinaryData *a, const ProtobufCBinaryData *b)
{
	size_t n = a->len < b->len ? a->len : b->len;
	int c = n ? memcmp(a->data, b->data, n) : 0;
	if (c != 0)
		return c;
	return a->len < b->len ? -1 : a->len > b->len ? 1 : 0;
}

static int i64_cmp(int64_t a, int64_t b)
{
	return a < b ? -1 : a > b ? 1 : 0;
}

/* qsort has no context argument; sorting happens on one thread per call, but
 * ranges run concurrently on many threads, hence thread-local. */
static _Thread_local int sort_target;

static int kv_sort_cmp(const void *pa, const void *pb)
{
	const Mvccpb__KeyValue *a = *(Mvccpb__KeyValue *const *)pa;
	const Mvccpb__KeyValue *b = *(Mvccpb__KeyValue *const *)pb;
	int c = 0;
	switch (sort_target) {
	case ETCDSERVERPB__RANGE_REQUEST__SORT_TARGET__VERSION:
		c = i64_cmp(a->version, b->version);
		break;
	case ETCDSERVERPB__RANGE_REQUEST__SORT_TARGET__CREATE:
		c = i64_cmp(a->create_revision, b->create_revision);
		break;
	case ETCDSERVERPB__RANGE_REQUEST__SORT_TARGET__MOD:
		c = i64_cmp(a->mod_revision, b->mod_revision);
		break;
	case ETCDSERVERPB__RANGE_REQUEST__SORT_TARGET__VALUE:
		c = bytes_cmp(&a->value, &b->value);
		break;
	default:
		break;
	}
	/* Ties (unordered in etcd's unstable sort) fall back to key order. */
	return c != 0 ? c : bytes_cmp(&a->key, &b->key);
}

static bool pruned(const Etcdserverpb__RangeRequest *r, const Mvccpb__KeyValue *m)
{
	return (r->max_mod_revision != 0 && m->mod_revision > r->max_mod_revision) ||
	       (r->min_mod_revision != 0 && m->mod_revision < r->min_mod_revision) ||
	       (r->max_create_revision != 0 && m->create_revision > r->max_create_revision) ||
	       (r->min_create_revision != 0 && m->create_revision < r->min_create_revision);
}

/*
 * Range in @ex->t, as applierV3backend.Range over storeTxnRead.rangeKeys.
 * @h: header identity (NULL inside a Txn: sub-responses carry only a revision).
 */
static int exec_range(exec *ex, const Etcdserverpb__RangeRequest *r, const ec_hdr *h,
		      Etcdserverpb__RangeResponse **out)
{
	*out = NULL;
	ex->ranges++;
	int64_t cur = st_txn_rev(ex->t);
	int64_t rev = r->revision;
	if (rev > cur)
		return EC_FUTURE_REV;
	if (rev <= 0)
		rev = cur;
	if (rev < st_txn_compact_rev(ex->t))
		return EC_COMPACTED;

	/* etcd fetches everything when it must sort or filter, else limit+1 (to
	 * learn "more"). Note it tests the sort order as sent: a target other than
	 * KEY with order NONE still fetches limit+1 in key order, then sorts them. */
	bool fetch_all = r->sort_order != ETCDSERVERPB__RANGE_REQUEST__SORT_ORDER__NONE ||
			 r->min_mod_revision != 0 || r->max_mod_revision != 0 ||
			 r->min_create_revision != 0 || r->max_create_revision != 0;
	struct range_acc a = {0};
	a.keep = SIZE_MAX;
	if (r->count_only)
		a.keep = 0;
	else if (!fetch_all && r->limit > 0)
		a.keep = (uint64_t)r->limit + 1 < SIZE_MAX ? (size_t)r->limit + 1 : SIZE_MAX;
	a.values = !r->keys_only ||
		   r->sort_target == ETCDSERVERPB__RANGE_REQUEST__SORT_TARGET__VALUE;

	int rc = st_txn_range(ex->t, r->key.data, r->key.len, r->range_end.data, r->range_end.len,
			      rev, range_visit, &a);
	int err = EC_OK;
	if (rc != ST_OK) {
		err = st_fail(ex, a.oom ? ST_ENOMEM : rc);
		goto fail;
	}

	/* min/max filters drop keys after counting: count stays the range's size. */
	size_t j = 0;
	for (size_t i = 0; i < a.n; i++) {
		if (pruned(r, a.kvs[i]))
			ec_msg_free(a.kvs[i]);
		else
			a.kvs[j++] = a.kvs[i];
	}
	a.n = j;

	int order = r->sort_order;
	if (r->sort_target != ETCDSERVERPB__RANGE_REQUEST__SORT_TARGET__KEY &&
	    order == ETCDSERVERPB__RANGE_REQUEST__SORT_ORDER__NONE)
		order = ETCDSERVERPB__RANGE_REQUEST__SORT_ORDER__ASCEND;
	if ((order == ETCDSERVERPB__RANGE_REQUEST__SORT_ORDER__ASCEND ||
	     order == ETCDSERVERPB__RANGE_REQUEST__SORT_ORDER__DESCEND) &&
	    a.n > 1) {
		sort_target = r->sort_target;
		if (r->sort_target != ETCDSERVERPB__RANGE_REQUEST__SORT_TARGET__KEY)
			qsort(a.kvs, a.n, sizeof(*a.kvs), kv_sort_cmp);
		if (order == ETCDSERVERPB__RANGE_REQUEST__SORT_ORDER__DESCEND)
			for (size_t i = 0; i < a.n / 2; i++) {
				Mvccpb__KeyValue *tmp = a.kvs[i];
				a.kvs[i] = a.kvs[a.n - 1 - i];
				a.kvs[a.n - 1 - i] = tmp;
			}
	}

	Etcdserverpb__RangeResponse *resp = malloc(sizeof(*resp));
	if (resp == NULL) {
		err = nomem(ex);
		goto fail;
	}
	etcdserverpb__range_response__init(resp);
	if (r->limit > 0 && a.n > (uint64_t)r->limit) {
		for (size_t i = (size_t)r->limit; i < a.n; i++)
			ec_msg_free(a.kvs[i]);
		a.n = (size_t)r->limit;
		resp->more = true;
	}
	if (r->keys_only)
		for (size_t i = 0; i < a.n; i++) {
			free(a.kvs[i]->value.data);
			a.kvs[i]->value.data = NULL;
			a.kvs[i]->value.len = 0;
		}
	resp->count = a.count;
	resp->n_kvs = a.n;
	resp->kvs = a.n ? a.kvs : NULL;
	if (a.n == 0)
		free(a.kvs);
	resp->header = ec_hdr_new(cur, h);
	if (resp->header == NULL) {
		ec_msg_free(resp);
		return nomem(ex);
	}
	*out = resp;
	return EC_OK;
fail:
	for (size_t i = 0; i < a.n; i++)
		ec_msg_free(a.kvs[i]);
	free(a.kvs);
	return err;
}

/* ---- writes ----------------------------------------------------------- */

static bool lease_exists(ec_kv *kv, int64_t id)
{
	/* LEASE HOOK: without a lessor no lease exists. */
	return kv->has_lease_hooks && kv->lease.exists != NULL && kv->lease.exists(kv->lease.arg, id);
}

/* Put in @ex->t (applierV3backend.Put with a txn: the lease was checked by the
 * caller). */
static int exec_put(exec *ex, const Etcdserverpb__PutRequest *p, const ec_hdr *h,
		    Etcdserverpb__PutResponse **out)
{
	*out = NULL;
	st_kv prev;
	bool have_prev = false;
	const uint8_t *val = p->value.data;
	size_t vlen = p->value.len;
	int64_t lease = p->lease;
	Etcdserverpb__PutResponse *resp = malloc(sizeof(*resp));
	if (resp == NULL)
		return nomem(ex);
	etcdserverpb__put_response__init(resp);
	ex->puts++;
	if (p->ignore_value || p->ignore_lease || p->prev_kv)
		ex->ranges++; /* etcd reads the previous version for these */

	if (p->ignore_value || p->ignore_lease || p->prev_kv || ex->kv->has_lease_hooks) {
		/* Only the value needs a read of the data; the lease and revisions
		 * usually come from memory. */
		int rc = p->ignore_value || p->prev_kv
				 ? st_txn_get(ex->t, p->key.data, p->key.len, &prev)
				 : st_txn_get_meta(ex->t, p->key.data, p->key.len, &prev);
		if (rc != ST_OK && rc != ST_ENOTFOUND) {
			ec_msg_free(resp);
			return st_fail(ex, rc);
		}
		have_prev = rc == ST_OK;
	}
	if ((p->ignore_value || p->ignore_lease) && !have_prev) {
		ec_msg_free(resp);
		return EC_KEY_NOT_FOUND;
	}
	if (p->prev_kv && have_prev && (resp->prev_kv = kv_new(&prev, true)) == NULL) {
		ec_msg_free(resp);
		return nomem(ex);
	}
	uint8_t *vcopy = NULL;
	if (p->ignore_value) {
		/* prev points into the txn's scratch, which the put below reuses. */
		if (prev.val_len > 0) {
			vcopy = malloc(prev.val_len);
			if (vcopy == NULL) {
				ec_msg_free(resp);
				return nomem(ex);
			}
			memcpy(vcopy, prev.val, prev.val_len);
		}
		val = vcopy;
		vlen = prev.val_len;
	}
	if (p->ignore_lease)
		lease = prev.lease;
	int64_t old_lease = have_prev ? prev.lease : 0;

	int rc = st_txn_put(ex->t, p->key.data, p->key.len, val, vlen, lease);
	free(vcopy);
	if (rc != ST_OK) {
		ec_msg_free(resp);
		return st_fail(ex, rc);
	}
	if (ex->kv->has_lease_hooks) {
		if (old_lease != 0 && ex->kv->lease.detach != NULL)
			ex->kv->lease.detach(ex->kv->lease.arg, old_lease, p->key.data, p->key.len);
		if (lease != 0 && ex->kv->lease.attach != NULL)
			ex->kv->lease.attach(ex->kv->lease.arg, lease, p->key.data, p->key.len);
	}
	resp->header = ec_hdr_new(st_txn_base_rev(ex->t) + 1, h);
	if (resp->header == NULL) {
		ec_msg_free(resp);
		return nomem(ex);
	}
	*out = resp;
	return EC_OK;
}

static int exec_delete(exec *ex, const Etcdserverpb__DeleteRangeRequest *d, const ec_hdr *h,
		       Etcdserverpb__DeleteRangeResponse **out)
{
	*out = NULL;
	Etcdserverpb__DeleteRangeResponse *resp = malloc(sizeof(*resp));
	if (resp == NULL)
		return nomem(ex);
	etcdserverpb__delete_range_response__init(resp);
	ex->deletes++;
	if (d->prev_kv)
		ex->ranges++;
	bool need_leases = ex->kv->has_lease_hooks && ex->kv->lease.detach != NULL;

	struct range_acc a = {0};
	if (d->prev_kv || need_leases) {
		a.keep = SIZE_MAX;
		a.values = d->prev_kv;
		int rc = st_txn_range(ex->t, d->key.data, d->key.len, d->range_end.data, d->range_end.len,
				      st_txn_rev(ex->t), range_visit, &a);
		if (rc != ST_OK) {
			for (size_t i = 0; i < a.n; i++)
				ec_msg_free(a.kvs[i]);
			free(a.kvs);
			ec_msg_free(resp);
			return st_fail(ex, a.oom ? ST_ENOMEM : rc);
		}
		if (need_leases)
			for (size_t i = 0; i < a.n; i++)
				if (a.kvs[i]->lease != 0)
					ex->kv->lease.detach(ex->kv->lease.arg, a.kvs[i]->lease,
							     a.kvs[i]->key.data, a.kvs[i]->key.len);
		if (d->prev_kv) {
			resp->n_prev_kvs = a.n;
			resp->prev_kvs = a.kvs;
		} else {
			for (size_t i = 0; i < a.n; i++)
				ec_msg_free(a.kvs[i]);
			free(a.kvs);
		}
	}

	int64_t deleted = 0;
	int rc = st_txn_delete_range(ex->t, d->key.data, d->key.len, d->range_end.data,
				     d->range_end.len, &deleted);
	if (rc != ST_OK) {
		ec_msg_free(resp);
		return st_fail(ex, rc);
	}
	resp->deleted = deleted;
	/* storeTxnWrite.DeleteRange: the next revision once anything changed. */
	int64_t rev = st_txn_base_rev(ex->t) + (st_txn_changes(ex->t) > 0 ? 1 : 0);
	resp->header = ec_hdr_new(rev, h);
	if (resp->header == NULL) {
		ec_msg_free(resp);
		return nomem(ex);
	}
	*out = resp;
	return EC_OK;
}

/* ---- Txn -------------------------------------------------------------- */

struct cmp_ctx {
	const Etcdserverpb__Compare *c;
	bool ok;
	bool any;
};

/* compareKV: the union member is used only when it matches the target. */
static bool compare_kv(const Etcdserverpb__Compare *c, const st_kv *kv)
{
	int result = 0;
	int64_t want = 0;
	switch (c->target) {
	case ETCDSERVERPB__COMPARE__COMPARE_TARGET__VALUE: {
		ProtobufCBinaryData v = {0, NULL};
		ProtobufCBinaryData have = {kv->val_len, (uint8_t *)kv->val};
		if (c->target_union_case == ETCDSERVERPB__COMPARE__TARGET_UNION_VALUE)
			v = c->value;
		result = bytes_cmp(&have, &v);
		break;
	}
	case ETCDSERVERPB__COMPARE__COMPARE_TARGET__CREATE:
		if (c->target_union_case == ETCDSERVERPB__COMPARE__TARGET_UNION_CREATE_REVISION)
			want = c->create_revision;
		result = i64_cmp(kv->create_rev, want);
		break;
	case ETCDSERVERPB__COMPARE__COMPARE_TARGET__MOD:
		if (c->target_union_case == ETCDSERVERPB__COMPARE__TARGET_UNION_MOD_REVISION)
			want = c->mod_revision;
		result = i64_cmp(kv->mod_rev, want);
		break;
	case ETCDSERVERPB__COMPARE__COMPARE_TARGET__VERSION:
		if (c->target_union_case == ETCDSERVERPB__COMPARE__TARGET_UNION_VERSION)
			want = c->version;
		result = i64_cmp(kv->version, want);
		break;
	case ETCDSERVERPB__COMPARE__COMPARE_TARGET__LEASE:
		if (c->target_union_case == ETCDSERVERPB__COMPARE__TARGET_UNION_LEASE)
			want = c->lease;
		result = i64_cmp(kv->lease, want);
		break;
	default:
		break;
	}
	switch (c->result) {
	case ETCDSERVERPB__COMPARE__COMPARE_RESULT__EQUAL:
		return result == 0;
	case ETCDSERVERPB__COMPARE__COMPARE_RESULT__NOT_EQUAL:
		return result != 0;
	case ETCDSERVERPB__COMPARE__COMPARE_RESULT__GREATER:
		return result > 0;
	case ETCDSERVERPB__COMPARE__COMPARE_RESULT__LESS:
		return result < 0;
	default:
		return true;
	}
}

static int cmp_visit(void *arg, const st_kv *kv)
{
	struct cmp_ctx *cc = arg;
	cc->any = true;
	if (!compare_kv(cc->c, kv)) {
		cc->ok = false;
		return ST_VISIT_STOP;
	}
	return 0;
}

/* applyCompare: holds only if it holds for every key in the range; over no key
 * a VALUE compare fails and the others compare against a zero KeyValue. */
static int eval_compare(exec *ex, const Etcdserverpb__Compare *c, bool *ok)
{
	struct cmp_ctx cc = {.c = c, .ok = true};
	ex->ranges++;
	int rc = st_txn_range(ex->t, c->key.data, c->key.len, c->range_end.data, c->range_end.len,
			      st_txn_rev(ex->t), cmp_visit, &cc);
	if (rc != ST_OK)
		return st_fail(ex, rc);
	if (!cc.any) {
		st_kv zero = {0};
		cc.ok = c->target != ETCDSERVERPB__COMPARE__COMPARE_TARGET__VALUE && compare_kv(c, &zero);
	}
	*ok = cc.ok;
	return EC_OK;
}

/* The branch taken by every txn on the path, in etcd's order (compareToPath):
 * this txn, then the nested txns of its chosen branch, depth first. Every
 * compare is evaluated before any op runs. */
typedef struct path {
	bool *v;
	size_t n, cap;
} path;

static int path_build(exec *ex, const Etcdserverpb__TxnRequest *r, path *p)
{
	bool ok = true;
	for (size_t i = 0; i < r->n_compare && ok; i++) {
		int e = eval_compare(ex, r->compare[i], &ok);
		if (e != EC_OK)
			return e;
	}
	if (p->n == p->cap) {
		size_t cap = p->cap ? p->cap * 2 : 8;
		bool *v = realloc(p->v, cap * sizeof(*v));
		if (v == NULL)
			return nomem(ex);
		p->v = v;
		p->cap = cap;
	}
	p->v[p->n++] = ok;
	size_t nops = ok ? r->n_success : r->n_failure;
	Etcdserverpb__RequestOp **ops = ok ? r->success : r->failure;
	for (size_t i = 0; i < nops; i++)
		if (ops[i]->request_case == ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_TXN &&
		    ops[i]->request_txn != NULL) {
			int e = path_build(ex, ops[i]->request_txn, p);
			if (e != EC_OK)
				return e;
		}
	return EC_OK;
}

enum { CHECK_PUT, CHECK_RANGE };

/* checkRequests with checkRequestPut / checkRequestRange, against the state
 * before the txn. *@pi walks the path like the execution will. */
static int check_path(exec *ex, const Etcdserverpb__TxnRequest *r, const path *p, size_t *pi,
		      int what)
{
	bool ok = p->v[(*pi)++];
	size_t nops = ok ? r->n_success : r->n_failure;
	Etcdserverpb__RequestOp **ops = ok ? r->success : r->failure;
	for (size_t i = 0; i < nops; i++) {
		const Etcdserverpb__RequestOp *op = ops[i];
		if (op->request_case == ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_TXN &&
		    op->request_txn != NULL) {
			int e = check_path(ex, op->request_txn, p, pi, what);
			if (e != EC_OK)
				return e;
			continue;
		}
		if (what == CHECK_PUT &&
		    op->request_case == ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_PUT &&
		    op->request_put != NULL) {
			const Etcdserverpb__PutRequest *put = op->request_put;
			if (put->ignore_value || put->ignore_lease) {
				st_kv kv;
				int rc = st_txn_get(ex->t, put->key.data, put->key.len, &kv);
				if (rc == ST_ENOTFOUND)
					return EC_KEY_NOT_FOUND;
				if (rc != ST_OK)
					return st_fail(ex, rc);
			}
			if (put->lease != 0 && !lease_exists(ex->kv, put->lease))
				return EC_LEASE_NOT_FOUND;
		}
		if (what == CHECK_RANGE &&
		    op->request_case == ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_RANGE &&
		    op->request_range != NULL) {
			int64_t rev = op->request_range->revision;
			if (rev == 0)
				continue;
			if (rev > st_txn_rev(ex->t))
				return EC_FUTURE_REV;
			if (rev < st_txn_compact_rev(ex->t))
				return EC_COMPACTED;
		}
	}
	return EC_OK;
}

/* applyTxn: run the ops of the chosen branch in order. Nested TxnResponses keep
 * an empty header, as etcd leaves them. */
static int exec_ops(exec *ex, const Etcdserverpb__TxnRequest *r, const path *p, size_t *pi,
		    Etcdserverpb__TxnResponse *resp)
{
	bool ok = p->v[(*pi)++];
	size_t nops = ok ? r->n_success : r->n_failure;
	Etcdserverpb__RequestOp **ops = ok ? r->success : r->failure;
	resp->succeeded = ok;
	if (nops == 0)
		return EC_OK;
	resp->responses = calloc(nops, sizeof(*resp->responses));
	if (resp->responses == NULL)
		return nomem(ex);
	for (size_t i = 0; i < nops; i++) {
		const Etcdserverpb__RequestOp *op = ops[i];
		Etcdserverpb__ResponseOp *ro = malloc(sizeof(*ro));
		if (ro == NULL)
			return nomem(ex);
		etcdserverpb__response_op__init(ro);
		resp->responses[resp->n_responses++] = ro;
		int e = EC_OK;
		switch (op->request_case) {
		case ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_RANGE:
			ro->response_case = ETCDSERVERPB__RESPONSE_OP__RESPONSE_RESPONSE_RANGE;
			e = exec_range(ex, op->request_range, NULL, &ro->response_range);
			break;
		case ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_PUT:
			ro->response_case = ETCDSERVERPB__RESPONSE_OP__RESPONSE_RESPONSE_PUT;
			e = exec_put(ex, op->request_put, NULL, &ro->response_put);
			break;
		case ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_DELETE_RANGE:
			ro->response_case = ETCDSERVERPB__RESPONSE_OP__RESPONSE_RESPONSE_DELETE_RANGE;
			e = exec_delete(ex, op->request_delete_range, NULL, &ro->response_delete_range);
			break;
		case ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_TXN: {
			Etcdserverpb__TxnResponse *sub = malloc(sizeof(*sub));
			if (sub == NULL)
				return nomem(ex);
			etcdserverpb__txn_response__init(sub);
			ro->response_case = ETCDSERVERPB__RESPONSE_OP__RESPONSE_RESPONSE_TXN;
			ro->response_txn = sub;
			if ((sub->header = ec_hdr_new(0, NULL)) == NULL)
				return nomem(ex);
			e = exec_ops(ex, op->request_txn, p, pi, sub);
			break;
		}
		default:
			break; /* an empty op (rejected by ec_check_txn) gets an empty response */
		}
		if (e != EC_OK)
			return e; /* checked beforehand (etcd panics here); nothing is committed */
	}
	return EC_OK;
}

/* A whole Txn in @ex->t (applierV3backend.Txn). */
static int exec_txn(exec *ex, const Etcdserverpb__TxnRequest *r, const ec_hdr *h,
		    Etcdserverpb__TxnResponse **out)
{
	*out = NULL;
	path p = {0};
	int e = path_build(ex, r, &p);
	size_t pi = 0;
	if (e == EC_OK && !ec_txn_is_readonly(r))
		e = check_path(ex, r, &p, &pi, CHECK_PUT);
	pi = 0;
	if (e == EC_OK)
		e = check_path(ex, r, &p, &pi, CHECK_RANGE);
	if (e != EC_OK) {
		free(p.v);
		return e;
	}
	Etcdserverpb__TxnResponse *resp = malloc(sizeof(*resp));
	if (resp == NULL) {
		free(p.v);
		return nomem(ex);
	}
	etcdserverpb__txn_response__init(resp);
	pi = 0;
	e = exec_ops(ex, r, &p, &pi, resp);
	free(p.v);
	if (e == EC_OK && (resp->header = ec_hdr_new(st_txn_rev(ex->t), h)) == NULL)
		e = nomem(ex);
	if (e != EC_OK) {
		ec_msg_free(resp);
		return e;
	}
	*out = resp;
	return EC_OK;
}

bool ec_txn_is_readonly(const Etcdserverpb__TxnRequest *r)
{
	for (size_t i = 0; i < r->n_success; i++)
		if (r->success[i]->request_case != ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_RANGE)
			return false;
	for (size_t i = 0; i < r->n_failure; i++)
		if (r->failure[i]->request_case != ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_RANGE)
			return false;
	return true;
}

/* ---- checks (v3rpc/key.go) -------------------------------------------- */

int ec_check_range(const Etcdserverpb__RangeRequest *r)
{
	if (r == NULL)
		return EC_BAD_REQUEST;
	if (r->key.len == 0)
		return EC_EMPTY_KEY;
	/* etcd 3.4 crashes on sort values it does not know; refuse them instead. */
	if ((unsigned)r->sort_order > ETCDSERVERPB__RANGE_REQUEST__SORT_ORDER__DESCEND ||
	    (unsigned)r->sort_target > ETCDSERVERPB__RANGE_REQUEST__SORT_TARGET__VALUE)
		return EC_BAD_REQUEST;
	return EC_OK;
}

int ec_check_put(const Etcdserverpb__PutRequest *r)
{
	if (r == NULL)
		return EC_BAD_REQUEST;
	if (r->key.len == 0)
		return EC_EMPTY_KEY;
	if (r->ignore_value && r->value.len != 0)
		return EC_VALUE_PROVIDED;
	if (r->ignore_lease && r->lease != 0)
		return EC_LEASE_PROVIDED;
	return EC_OK;
}

int ec_check_delete(const Etcdserverpb__DeleteRangeRequest *r)
{
	if (r == NULL)
		return EC_BAD_REQUEST;
	if (r->key.len == 0)
		return EC_EMPTY_KEY;
	return EC_OK;
}

int ec_check_compact(const Etcdserverpb__CompactionRequest *r)
{
	/* etcd's v3rpc layer checks nothing; apply answers compacted/future. */
	return r == NULL ? EC_BAD_REQUEST : EC_OK;
}

static int check_txn_ops(const Etcdserverpb__TxnRequest *r, int64_t max_ops);

static int check_op(const Etcdserverpb__RequestOp *u, int64_t max_ops)
{
	if (u == NULL)
		return EC_KEY_NOT_FOUND;
	switch (u->request_case) {
	case ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_RANGE:
		return ec_check_range(u->request_range);
	case ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_PUT:
		return ec_check_put(u->request_put);
	case ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_DELETE_RANGE:
		return ec_check_delete(u->request_delete_range);
	case ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_TXN:
		return u->request_txn == NULL ? EC_BAD_REQUEST : check_txn_ops(u->request_txn, max_ops);
	default:
		return EC_KEY_NOT_FOUND; /* empty op: etcd's answer */
	}
}

/* checkTxnRequest: the op budget shrinks by this level's size for nested txns. */
static int check_txn_ops(const Etcdserverpb__TxnRequest *r, int64_t max_ops)
{
	int64_t opc = (int64_t)r->n_compare;
	if ((int64_t)r->n_success > opc)
		opc = (int64_t)r->n_success;
	if ((int64_t)r->n_failure > opc)
		opc = (int64_t)r->n_failure;
	if (opc > max_ops)
		return EC_TOO_MANY_OPS;
	for (size_t i = 0; i < r->n_compare; i++) {
		if (r->compare[i] == NULL)
			return EC_BAD_REQUEST;
		if (r->compare[i]->key.len == 0)
			return EC_EMPTY_KEY;
	}
	for (size_t i = 0; i < r->n_success; i++) {
		int e = check_op(r->success[i], max_ops - opc);
		if (e != EC_OK)
			return e;
	}
	for (size_t i = 0; i < r->n_failure; i++) {
		int e = check_op(r->failure[i], max_ops - opc);
		if (e != EC_OK)
			return e;
	}
	return EC_OK;
}

/*
 * checkIntervals. Strings compare as etcd's StringAffineComparable (the empty
 * string is +infinity); @nul marks a string with an implicit trailing "\0",
 * which is how a single key k becomes the interval [k, k"\0").
 */
typedef struct bstr {
	const uint8_t *p;
	size_t n;
	bool nul;
} bstr;

typedef struct ivl {
	bstr b, e;
} ivl;

typedef struct ivset {
	bstr *puts;
	size_t np, cp;
	ivl *dels;
	size_t nd, cd;
} ivset;

static int affine_cmp(bstr a, bstr b)
{
	size_t la = a.n + a.nul, lb = b.n + b.nul;
	if (la == 0)
		return lb == 0 ? 0 : 1;
	if (lb == 0)
		return -1;
	size_t m = la < lb ? la : lb;
	for (size_t i = 0; i < m; i++) {
		uint8_t ca = i < a.n ? a.p[i] : 0, cb = i < b.n ? b.p[i] : 0;
		if (ca != cb)
			return ca < cb ? -1 : 1;
	}
	return la < lb ? -1 : la > lb ? 1 : 0;
}

/* Interval.Compare(point k, node) == 0, i.e. the tree says they intersect. */
static bool point_hits(const uint8_t *k, size_t kl, const ivl *node)
{
	bstr pb = {k, kl, false}, pe = {k, kl, true};
	if (affine_cmp(pb, node->b) < 0 && affine_cmp(pe, node->b) <= 0)
		return false;
	if (affine_cmp(pb, node->e) >= 0)
		return false;
	return true;
}

static bool dels_hit(const ivset *s, const uint8_t *k, size_t kl)
{
	for (size_t i = 0; i < s->nd; i++)
		if (point_hits(k, kl, &s->dels[i]))
			return true;
	return false;
}

static bool puts_has(const bstr *puts, size_t np, const uint8_t *k, size_t kl)
{
	for (size_t i = 0; i < np; i++)
		if (puts[i].n == kl && (kl == 0 || memcmp(puts[i].p, k, kl) == 0))
			return true;
	return false;
}

static int add_put(ivset *s, const uint8_t *k, size_t kl)
{
	if (s->np == s->cp) {
		size_t cap = s->cp ? s->cp * 2 : 8;
		bstr *p = realloc(s->puts, cap * sizeof(*p));
		if (p == NULL)
			return EC_NOMEM;
		s->puts = p;
		s->cp = cap;
	}
	s->puts[s->np++] = (bstr){k, kl, false};
	return EC_OK;
}

static int add_del(ivset *s, ivl iv)
{
	if (s->nd == s->cd) {
		size_t cap = s->cd ? s->cd * 2 : 8;
		ivl *p = realloc(s->dels, cap * sizeof(*p));
		if (p == NULL)
			return EC_NOMEM;
		s->dels = p;
		s->cd = cap;
	}
	s->dels[s->nd++] = iv;
	return EC_OK;
}

static void ivset_free(ivset *s)
{
	free(s->puts);
	free(s->dels);
	memset(s, 0, sizeof(*s));
}

static int check_intervals(Etcdserverpb__RequestOp **ops, size_t n, ivset *out)
{
	ivset s = {0};
	int e = EC_OK;
	/* this level's deletes first, to check puts of nested txns against them */
	for (size_t i = 0; i < n && e == EC_OK; i++) {
		if (ops[i]->request_case != ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_DELETE_RANGE ||
		    ops[i]->request_delete_range == NULL)
			continue;
		const Etcdserverpb__DeleteRangeRequest *d = ops[i]->request_delete_range;
		ivl iv = {{d->key.data, d->key.len, false}, {d->key.data, d->key.len, true}};
		if (d->range_end.len != 0)
			iv.e = (bstr){d->range_end.data, d->range_end.len, false};
		e = add_del(&s, iv);
	}
	for (size_t i = 0; i < n && e == EC_OK; i++) {
		if (ops[i]->request_case != ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_TXN ||
		    ops[i]->request_txn == NULL)
			continue;
		const Etcdserverpb__TxnRequest *t = ops[i]->request_txn;
		ivset then = {0}, els = {0};
		e = check_intervals(t->success, t->n_success, &then);
		if (e == EC_OK)
			e = check_intervals(t->failure, t->n_failure, &els);
		for (size_t j = 0; j < then.np && e == EC_OK; j++) {
			bstr k = then.puts[j];
			if (puts_has(s.puts, s.np, k.p, k.n) || dels_hit(&s, k.p, k.n))
				e = EC_DUPLICATE_KEY;
			else
				e = add_put(&s, k.p, k.n);
		}
		for (size_t j = 0; j < els.np && e == EC_OK; j++) {
			bstr k = els.puts[j];
			bool dup = puts_has(s.puts, s.np, k.p, k.n);
			/* then and else exclude each other: the same key in both is fine */
			if ((dup && !puts_has(then.puts, then.np, k.p, k.n)) || dels_hit(&s, k.p, k.n))
				e = EC_DUPLICATE_KEY;
			else if (!dup)
				e = add_put(&s, k.p, k.n);
		}
		for (size_t j = 0; j < then.nd && e == EC_OK; j++)
			e = add_del(&s, then.dels[j]);
		for (size_t j = 0; j < els.nd && e == EC_OK; j++)
			e = add_del(&s, els.dels[j]);
		ivset_free(&then);
		ivset_free(&els);
	}
	for (size_t i = 0; i < n && e == EC_OK; i++) {
		if (ops[i]->request_case != ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_PUT ||
		    ops[i]->request_put == NULL)
			continue;
		const ProtobufCBinaryData *k = &ops[i]->request_put->key;
		if (puts_has(s.puts, s.np, k->data, k->len) || dels_hit(&s, k->data, k->len))
			e = EC_DUPLICATE_KEY;
		else
			e = add_put(&s, k->data, k->len);
	}
	if (e != EC_OK) {
		ivset_free(&s);
		return e;
	}
	*out = s;
	return EC_OK;
}

int ec_check_txn(const Etcdserverpb__TxnRequest *r, const ec_kv_config *cfg)
{
	if (r == NULL)
		return EC_BAD_REQUEST;
	int64_t max_ops = cfg != NULL && cfg->max_txn_ops > 0 ? cfg->max_txn_ops : EC_DEFAULT_MAX_TXN_OPS;
	int e = check_txn_ops(r, max_ops);
	if (e != EC_OK)
		return e;
	/* After the op checks, like etcd, so a huge txn is refused before the
	 * quadratic overlap check. */
	ivset s = {0};
	e = check_intervals(r->success, r->n_success, &s);
	ivset_free(&s);
	if (e == EC_OK)
		e = check_intervals(r->failure, r->n_failure, &s);
	ivset_free(&s);
	return e;
}

/* ---- lifecycle and entry points --------------------------------------- */

int ec_kv_open(st_db *db, const ec_kv_config *cfg, ec_kv **out)
{
	*out = NULL;
	ec_kv *kv = calloc(1, sizeof(*kv));
	if (kv == NULL)
		return ST_ENOMEM;
	kv->db = db;
	kv->cfg.max_txn_ops = EC_DEFAULT_MAX_TXN_OPS;
	if (cfg != NULL && cfg->max_txn_ops > 0)
		kv->cfg = *cfg;
	/* Only after a crash in the middle of a compaction is there work here. */
	int rc = st_mvcc_finish_compaction(db);
	if (rc != ST_OK) {
		free(kv);
		return rc;
	}
	*out = kv;
	return ST_OK;
}

void ec_kv_close(ec_kv *kv)
{
	free(kv);
}

void ec_kv_set_lease_hooks(ec_kv *kv, const ec_lease_hooks *hooks)
{
	kv->has_lease_hooks = hooks != NULL;
	if (hooks != NULL)
		kv->lease = *hooks;
	else
		memset(&kv->lease, 0, sizeof(kv->lease));
}

void ec_kv_set_v2_hook(ec_kv *kv, ec_kv_v2_apply_fn fn, void *arg)
{
	kv->v2_apply = fn;
	kv->v2_arg = arg;
}

uint64_t ec_kv_applied_index(ec_kv *kv)
{
	st_kv_state s;
	st_kv_state_get(kv->db, &s);
	return s.applied;
}

int64_t ec_kv_revision(ec_kv *kv)
{
	st_kv_state s;
	st_kv_state_get(kv->db, &s);
	return s.rev;
}

int64_t ec_kv_compact_revision(ec_kv *kv)
{
	st_kv_state s;
	st_kv_state_get(kv->db, &s);
	return s.compact_rev;
}

/* The applied index as the applier sees it (an open apply group included). */
static uint64_t applier_index(ec_kv *kv)
{
	st_kv_state s;
	st_apply_state(kv->db, &s);
	return s.applied;
}

int ec_kv_set_applied(ec_kv *kv, uint64_t index)
{
	if (index <= applier_index(kv))
		return ST_OK;
	return st_mvcc_set_applied(kv->db, index);
}

static int apply_put(exec *ex, const Etcdserverpb__PutRequest *p, const ec_hdr *h,
		     ProtobufCMessage **resp)
{
	/* Outside a txn etcd checks the lease before anything else. */
	if (p->lease != 0 && !lease_exists(ex->kv, p->lease))
		return EC_LEASE_NOT_FOUND;
	Etcdserverpb__PutResponse *r;
	int e = exec_put(ex, p, h, &r);
	*resp = (ProtobufCMessage *)r;
	return e;
}

static int apply_compact(exec *ex, const Etcdserverpb__CompactionRequest *c, const ec_hdr *h,
			 ProtobufCMessage **resp)
{
	if (c->revision <= st_txn_compact_rev(ex->t))
		return EC_COMPACTED;
	if (c->revision > st_txn_base_rev(ex->t))
		return EC_FUTURE_REV;
	int rc = st_txn_compact(ex->t, c->revision);
	if (rc != ST_OK)
		return st_fail(ex, rc);
	Etcdserverpb__CompactionResponse *r = malloc(sizeof(*r));
	if (r == NULL)
		return nomem(ex);
	etcdserverpb__compaction_response__init(r);
	if ((r->header = ec_hdr_new(st_txn_base_rev(ex->t), h)) == NULL) {
		ec_msg_free(r);
		return nomem(ex);
	}
	*resp = (ProtobufCMessage *)r;
	return EC_OK;
}

int ec_kv_apply(ec_kv *kv, uint64_t index, const Metastore__InternalRequest *req, const ec_hdr *hdr,
		ProtobufCMessage **resp, int *err)
{
	*resp = NULL;
	*err = EC_OK;
	if (index <= applier_index(kv))
		return ST_OK; /* replay of an entry already applied */
	if (req != NULL && req->request_case == METASTORE__INTERNAL_REQUEST__REQUEST_V2) {
		/* the v2 store is not the MVCC keyspace: no revision, its own record */
		int src = ST_OK;
		if (kv->v2_apply != NULL)
			src = kv->v2_apply(kv->v2_arg, req->v2, resp);
		else
			*err = EC_UNIMPLEMENTED;
		if (src != ST_OK)
			return src;
		return st_mvcc_set_applied(kv->db, index);
	}

	exec ex = {.kv = kv};
	int rc = st_txn_begin(kv->db, true, &ex.t);
	if (rc != ST_OK)
		return rc;
	ProtobufCMessage *out = NULL;
	int e = EC_OK;
	switch (req == NULL ? METASTORE__INTERNAL_REQUEST__REQUEST__NOT_SET : req->request_case) {
	case METASTORE__INTERNAL_REQUEST__REQUEST_PUT:
		e = apply_put(&ex, req->put, hdr, &out);
		break;
	case METASTORE__INTERNAL_REQUEST__REQUEST_DELETE_RANGE: {
		Etcdserverpb__DeleteRangeResponse *r;
		e = exec_delete(&ex, req->delete_range, hdr, &r);
		out = (ProtobufCMessage *)r;
		break;
	}
	case METASTORE__INTERNAL_REQUEST__REQUEST_TXN: {
		Etcdserverpb__TxnResponse *r;
		e = exec_txn(&ex, req->txn, hdr, &r);
		out = (ProtobufCMessage *)r;
		break;
	}
	case METASTORE__INTERNAL_REQUEST__REQUEST_COMPACTION:
		e = apply_compact(&ex, req->compaction, hdr, &out);
		break;
	case METASTORE__INTERNAL_REQUEST__REQUEST__NOT_SET:
		break; /* an empty proposal: only the applied index moves */
	case METASTORE__INTERNAL_REQUEST__REQUEST_LEASE_GRANT:
	case METASTORE__INTERNAL_REQUEST__REQUEST_LEASE_REVOKE:
		/* LEASE HOOK: lease requests belong to the lessor (ec_lease.c). */
		if (kv->has_lease_hooks && kv->lease.apply != NULL)
			e = kv->lease.apply(kv->lease.arg, ex.t, req, hdr, &out, &ex.st_err);
		else
			e = EC_UNIMPLEMENTED;
		break;
	default:
		e = EC_UNIMPLEMENTED;
		break;
	}
	count_calls(&ex);

	if (ex.st_err != 0) {
		ec_msg_free(out);
		st_txn_abort(ex.t);
		return ex.st_err;
	}
	if (e != EC_OK) {
		ec_msg_free(out);
		st_txn_abort(ex.t);
		*err = e;
		return st_mvcc_set_applied(kv->db, index);
	}
	rc = st_txn_commit(ex.t, index);
	if (rc != ST_OK) {
		ec_msg_free(out);
		return rc;
	}
	*resp = out;
	return ST_OK;
}

int ec_kv_range(ec_kv *kv, const Etcdserverpb__RangeRequest *r, const ec_hdr *hdr,
		Etcdserverpb__RangeResponse **out)
{
	*out = NULL;
	exec ex = {.kv = kv};
	if (st_txn_begin(kv->db, false, &ex.t) != ST_OK)
		return EC_NOMEM;
	int e = exec_range(&ex, r, hdr, out);
	st_txn_abort(ex.t);
	count_calls(&ex);
	return e;
}

int ec_kv_txn_read(ec_kv *kv, const Etcdserverpb__TxnRequest *r, const ec_hdr *hdr,
		   Etcdserverpb__TxnResponse **out)
{
	*out = NULL;
	if (!ec_txn_is_readonly(r))
		return EC_BAD_REQUEST;
	exec ex = {.kv = kv};
	if (st_txn_begin(kv->db, false, &ex.t) != ST_OK)
		return EC_NOMEM;
	int e = exec_txn(&ex, r, hdr, out);
	st_txn_abort(ex.t);
	count_calls(&ex);
	return e;
}

void ec_kv_stats_get(ec_kv *kv, ec_kv_stats *out)
{
	out->ranges = atomic_load_explicit(&kv->n_range, memory_order_relaxed);
	out->puts = atomic_load_explicit(&kv->n_put, memory_order_relaxed);
	out->deletes = atomic_load_explicit(&kv->n_delete, memory_order_relaxed);
	out->txns = atomic_load_explicit(&kv->n_txn, memory_order_relaxed);
}

static int count_visit(void *arg, const st_kv *kv)
{
	(void)kv;
	(*(int64_t *)arg)++;
	return 0;
}

int ec_kv_count_keys(ec_kv *kv, int64_t *n)
{
	*n = 0;
	st_txn *t;
	int rc = st_txn_begin(kv->db, false, &t);
	if (rc != ST_OK)
		return EC_NOMEM;
	static const uint8_t all = 0;
	rc = st_txn_range(t, &all, 1, &all, 1, st_txn_rev(t), count_visit, n);
	st_txn_abort(t);
	return rc == ST_OK ? EC_OK : EC_INTERNAL;
}
