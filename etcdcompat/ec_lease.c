/*
 * ec_lease: the lessor (ec_lease.h has the model). The durable part (lease
 * records, attached keys) is storage's "lease" family, changed only by apply in
 * the write txn of ec_kv_apply; the in-memory part is one table of granted
 * leases sorted by id with each lease's TTL and deadline, under one mutex.
 */
#include "etcdcompat/ec_lease.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "etcdcompat/ec_errors.h"

typedef struct lease {
	int64_t id;
	int64_t ttl;       /* granted TTL, seconds (after the minimum is applied) */
	int64_t deadline;  /* ms on the configured clock */
	int64_t handed_at; /* when ec_lessor_expired last handed it out (0: never) */
} lease;

struct ec_lessor {
	st_db *db;
	ec_kv *kv;
	ec_lessor_config cfg;
	pthread_mutex_t mu;
	lease *v; /* sorted by id */
	size_t n, cap;
};

int64_t ec_lease_min_ttl(int64_t heartbeat_ms, int64_t election_ms)
{
	if (heartbeat_ms <= 0 || election_ms <= 0)
		return 1;
	int64_t ticks = election_ms / heartbeat_ms;
	int64_t ms = ((3 * ticks) / 2) * heartbeat_ms;
	int64_t s = (ms + 999) / 1000;
	return s < 1 ? 1 : s;
}

static int64_t now(ec_lessor *l)
{
	return l->cfg.now_ms(l->cfg.clock_arg);
}

static int64_t deadline_for(int64_t t, int64_t ttl)
{
	/* TTLs up to EC_LEASE_MAX_TTL s: 9e12 ms, far from overflowing. */
	return t + ttl * 1000;
}

/* Index of @id, or of where it would go (*@found false). Caller holds mu. */
static size_t find(ec_lessor *l, int64_t id, bool *found)
{
	size_t lo = 0, hi = l->n;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (l->v[mid].id < id)
			lo = mid + 1;
		else
			hi = mid;
	}
	*found = lo < l->n && l->v[lo].id == id;
	return lo;
}

static int insert(ec_lessor *l, int64_t id, int64_t ttl, int64_t deadline)
{
	bool found;
	size_t i = find(l, id, &found);
	if (found) {
		l->v[i].ttl = ttl;
		l->v[i].deadline = deadline;
		l->v[i].handed_at = 0;
		return ST_OK;
	}
	if (l->n == l->cap) {
		size_t cap = l->cap ? l->cap * 2 : 16;
		lease *p = realloc(l->v, cap * sizeof(*p));
		if (p == NULL)
			return ST_ENOMEM;
		l->v = p;
		l->cap = cap;
	}
	memmove(&l->v[i + 1], &l->v[i], (l->n - i) * sizeof(*l->v));
	l->v[i] = (lease){id, ttl, deadline, 0};
	l->n++;
	return ST_OK;
}

static void remove_id(ec_lessor *l, int64_t id)
{
	bool found;
	size_t i = find(l, id, &found);
	if (!found)
		return;
	memmove(&l->v[i], &l->v[i + 1], (l->n - i - 1) * sizeof(*l->v));
	l->n--;
}

bool ec_lessor_exists(ec_lessor *l, int64_t id)
{
	bool found;
	pthread_mutex_lock(&l->mu);
	find(l, id, &found);
	pthread_mutex_unlock(&l->mu);
	return found;
}

static bool hook_exists(void *arg, int64_t id)
{
	return ec_lessor_exists(arg, id);
}

/* ---- apply ------------------------------------------------------------- */

static int apply_grant(ec_lessor *l, st_txn *t, uint64_t req_id, const Etcdserverpb__LeaseGrantRequest *g,
		       const ec_hdr *hdr, ProtobufCMessage **resp, int *st_err)
{
	int64_t id = g->id;
	pthread_mutex_lock(&l->mu);
	bool found = false;
	if (id == 0) {
		/* etcd picks the id from its request id generator before proposing;
		 * here apply picks it from the entry's request id: the same for every
		 * member that applies this entry. */
		id = (int64_t)(req_id & (uint64_t)INT64_MAX);
		if (id == 0)
			id = 1;
		for (find(l, id, &found); found; find(l, id, &found))
			id = id == INT64_MAX ? 1 : id + 1;
	} else {
		find(l, id, &found);
	}
	pthread_mutex_unlock(&l->mu);
	/* lessor.Grant's order: too large first, then exists. */
	if (g->ttl > EC_LEASE_MAX_TTL)
		return EC_LEASE_TTL_TOO_LARGE;
	if (found)
		return EC_LEASE_EXIST;
	int64_t ttl = g->ttl;
	int64_t min = l->cfg.min_ttl < 1 ? 1 : l->cfg.min_ttl;
	if (ttl < min)
		ttl = min;

	Etcdserverpb__LeaseGrantResponse *r = malloc(sizeof(*r));
	if (r == NULL) {
		*st_err = ST_ENOMEM;
		return EC_NOMEM;
	}
	etcdserverpb__lease_grant_response__init(r);
	r->error = NULL; /* proto3 "" default: NULL packs the same and frees safely */
	r->id = id;
	r->ttl = ttl;
	if ((r->header = ec_hdr_new(st_txn_base_rev(t), hdr)) == NULL) {
		ec_msg_free(r);
		*st_err = ST_ENOMEM;
		return EC_NOMEM;
	}
	int rc = st_txn_lease_grant(t, id, ttl);
	if (rc == ST_OK) {
		pthread_mutex_lock(&l->mu);
		rc = insert(l, id, ttl, deadline_for(now(l), ttl));
		pthread_mutex_unlock(&l->mu);
	}
	if (rc != ST_OK) {
		ec_msg_free(r);
		*st_err = rc;
		return EC_INTERNAL;
	}
	*resp = (ProtobufCMessage *)r;
	return EC_OK;
}

/* Attached keys gathered from the lease index. */
typedef struct keylist {
	ProtobufCBinaryData *v;
	size_t n, cap;
} keylist;

static int keylist_add(void *arg, const uint8_t *key, size_t klen)
{
	keylist *kl = arg;
	if (kl->n == kl->cap) {
		size_t cap = kl->cap ? kl->cap * 2 : 8;
		ProtobufCBinaryData *p = realloc(kl->v, cap * sizeof(*p));
		if (p == NULL)
			return ST_ENOMEM;
		kl->v = p;
		kl->cap = cap;
	}
	uint8_t *d = malloc(klen ? klen : 1);
	if (d == NULL)
		return ST_ENOMEM;
	memcpy(d, key, klen);
	kl->v[kl->n++] = (ProtobufCBinaryData){klen, d};
	return 0;
}

static void keylist_free(keylist *kl)
{
	for (size_t i = 0; i < kl->n; i++)
		free(kl->v[i].data);
	free(kl->v);
	memset(kl, 0, sizeof(*kl));
}

static int apply_revoke(ec_lessor *l, st_txn *t, const Etcdserverpb__LeaseRevokeRequest *rv,
			const ec_hdr *hdr, ProtobufCMessage **resp, int *st_err)
{
	if (!ec_lessor_exists(l, rv->id))
		return EC_LEASE_NOT_FOUND;
	/* lessor.Revoke: all attached keys go in one write txn = one revision. */
	keylist kl = {0};
	int rc = st_txn_lease_revoke(t, rv->id, keylist_add, &kl);
	for (size_t i = 0; rc == ST_OK && i < kl.n; i++)
		rc = st_txn_delete_range(t, kl.v[i].data, kl.v[i].len, NULL, 0, NULL);
	keylist_free(&kl);
	Etcdserverpb__LeaseRevokeResponse *r = NULL;
	if (rc == ST_OK) {
		r = malloc(sizeof(*r));
		if (r == NULL)
			rc = ST_ENOMEM;
	}
	if (rc == ST_OK) {
		etcdserverpb__lease_revoke_response__init(r);
		if ((r->header = ec_hdr_new(st_txn_rev(t), hdr)) == NULL)
			rc = ST_ENOMEM;
	}
	if (rc != ST_OK) {
		ec_msg_free(r);
		*st_err = rc;
		return EC_INTERNAL;
	}
	pthread_mutex_lock(&l->mu);
	remove_id(l, rv->id);
	pthread_mutex_unlock(&l->mu);
	*resp = (ProtobufCMessage *)r;
	return EC_OK;
}

int ec_lessor_apply(ec_lessor *l, st_txn *t, const Metastore__InternalRequest *req,
		    const ec_hdr *hdr, ProtobufCMessage **resp, int *st_err)
{
	*resp = NULL;
	switch (req->request_case) {
	case METASTORE__INTERNAL_REQUEST__REQUEST_LEASE_GRANT:
		if (req->lease_grant == NULL)
			return EC_BAD_REQUEST;
		return apply_grant(l, t, req->id, req->lease_grant, hdr, resp, st_err);
	case METASTORE__INTERNAL_REQUEST__REQUEST_LEASE_REVOKE:
		if (req->lease_revoke == NULL)
			return EC_BAD_REQUEST;
		return apply_revoke(l, t, req->lease_revoke, hdr, resp, st_err);
	default:
		return EC_UNIMPLEMENTED;
	}
}

static int hook_apply(void *arg, st_txn *t, const Metastore__InternalRequest *req, const ec_hdr *hdr,
		      ProtobufCMessage **resp, int *st_err)
{
	return ec_lessor_apply(arg, t, req, hdr, resp, st_err);
}

/* ---- lifecycle --------------------------------------------------------- */

struct load_ctx {
	ec_lessor *l;
	int64_t now;
};

static int load_visit(void *arg, int64_t id, int64_t ttl)
{
	struct load_ctx *c = arg;
	/* Promote: every lease restarts its full TTL. Records are in id order, so
	 * this appends. */
	return insert(c->l, id, ttl, deadline_for(c->now, ttl));
}

int ec_lessor_open(st_db *db, ec_kv *kv, const ec_lessor_config *cfg, ec_lessor **out)
{
	*out = NULL;
	if (cfg == NULL || cfg->now_ms == NULL)
		return ST_EINVAL;
	ec_lessor *l = calloc(1, sizeof(*l));
	if (l == NULL)
		return ST_ENOMEM;
	l->db = db;
	l->kv = kv;
	l->cfg = *cfg;
	pthread_mutex_init(&l->mu, NULL);
	st_txn *t;
	int rc = st_txn_begin(db, false, &t);
	if (rc == ST_OK) {
		struct load_ctx c = {l, now(l)};
		rc = st_txn_leases(t, load_visit, &c);
		st_txn_abort(t);
	}
	if (rc != ST_OK) {
		pthread_mutex_destroy(&l->mu);
		free(l->v);
		free(l);
		return rc;
	}
	ec_lease_hooks h = {.arg = l, .exists = hook_exists, .apply = hook_apply};
	ec_kv_set_lease_hooks(kv, &h);
	*out = l;
	return ST_OK;
}

int ec_lessor_reload(ec_lessor *l)
{
	ec_lessor fresh;
	memset(&fresh, 0, sizeof(fresh));
	fresh.cfg = l->cfg;
	st_txn *t;
	int rc = st_txn_begin(l->db, false, &t);
	if (rc == ST_OK) {
		struct load_ctx c = {&fresh, now(l)};
		rc = st_txn_leases(t, load_visit, &c);
		st_txn_abort(t);
	}
	if (rc != ST_OK) {
		free(fresh.v);
		return rc;
	}
	pthread_mutex_lock(&l->mu);
	free(l->v);
	l->v = fresh.v;
	l->n = fresh.n;
	l->cap = fresh.cap;
	pthread_mutex_unlock(&l->mu);
	return ST_OK;
}

void ec_lessor_close(ec_lessor *l)
{
	if (l == NULL)
		return;
	ec_kv_set_lease_hooks(l->kv, NULL);
	pthread_mutex_destroy(&l->mu);
	free(l->v);
	free(l);
}

/* ---- reads and keep-alive ---------------------------------------------- */

int ec_lessor_renew(ec_lessor *l, int64_t id, int64_t *ttl)
{
	*ttl = -1;
	int e = EC_LEASE_NOT_FOUND;
	pthread_mutex_lock(&l->mu);
	bool found;
	size_t i = find(l, id, &found);
	int64_t t = now(l);
	if (found && l->v[i].deadline > t) {
		l->v[i].deadline = deadline_for(t, l->v[i].ttl);
		*ttl = l->v[i].ttl;
		e = EC_OK;
	}
	pthread_mutex_unlock(&l->mu);
	return e;
}

int ec_lessor_time_to_live(ec_lessor *l, const Etcdserverpb__LeaseTimeToLiveRequest *r,
			   const ec_hdr *hdr, Etcdserverpb__LeaseTimeToLiveResponse **out)
{
	*out = NULL;
	Etcdserverpb__LeaseTimeToLiveResponse *resp = malloc(sizeof(*resp));
	if (resp == NULL)
		return EC_NOMEM;
	etcdserverpb__lease_time_to_live_response__init(resp);
	resp->id = r->id;

	/* Keys first, from a snapshot; then the in-memory state. A revoke applied
	 * in between makes the lease unknown below, and the keys are dropped. */
	keylist kl = {0};
	st_txn *t = NULL;
	int rc = st_txn_begin(l->db, false, &t);
	int64_t rev = 0;
	if (rc == ST_OK) {
		rev = st_txn_base_rev(t);
		if (r->keys)
			rc = st_txn_lease_keys(t, r->id, keylist_add, &kl);
		st_txn_abort(t);
	}
	if (rc != ST_OK) {
		keylist_free(&kl);
		ec_msg_free(resp);
		return rc == ST_ENOMEM ? EC_NOMEM : EC_INTERNAL;
	}

	pthread_mutex_lock(&l->mu);
	bool found;
	size_t i = find(l, r->id, &found);
	if (found) {
		int64_t left = l->v[i].deadline - now(l);
		resp->ttl = left > 0 ? left / 1000 : 0;
		resp->grantedttl = l->v[i].ttl;
	} else {
		resp->ttl = -1; /* v3rpc's answer for ErrLeaseNotFound */
	}
	pthread_mutex_unlock(&l->mu);

	if (found && kl.n > 0) {
		resp->keys = kl.v;
		resp->n_keys = kl.n;
	} else {
		keylist_free(&kl);
	}
	if ((resp->header = ec_hdr_new(rev, hdr)) == NULL) {
		ec_msg_free(resp);
		return EC_NOMEM;
	}
	*out = resp;
	return EC_OK;
}

static int by_deadline(const void *pa, const void *pb)
{
	const lease *a = pa, *b = pb;
	if (a->deadline != b->deadline)
		return a->deadline < b->deadline ? -1 : 1;
	return a->id < b->id ? -1 : a->id > b->id ? 1 : 0;
}

int ec_lessor_leases(ec_lessor *l, const ec_hdr *hdr, Etcdserverpb__LeaseLeasesResponse **out)
{
	*out = NULL;
	Etcdserverpb__LeaseLeasesResponse *resp = malloc(sizeof(*resp));
	if (resp == NULL)
		return EC_NOMEM;
	etcdserverpb__lease_leases_response__init(resp);
	lease *copy = NULL;
	size_t n = 0;
	pthread_mutex_lock(&l->mu);
	if (l->n > 0 && (copy = malloc(l->n * sizeof(*copy))) != NULL) {
		memcpy(copy, l->v, l->n * sizeof(*copy));
		n = l->n;
	}
	bool oom = l->n > 0 && copy == NULL;
	pthread_mutex_unlock(&l->mu);
	if (oom) {
		ec_msg_free(resp);
		return EC_NOMEM;
	}
	if (n > 0) {
		qsort(copy, n, sizeof(*copy), by_deadline);
		resp->leases = calloc(n, sizeof(*resp->leases));
		if (resp->leases == NULL) {
			free(copy);
			ec_msg_free(resp);
			return EC_NOMEM;
		}
		for (size_t i = 0; i < n; i++) {
			Etcdserverpb__LeaseStatus *s = malloc(sizeof(*s));
			if (s == NULL) {
				free(copy);
				ec_msg_free(resp);
				return EC_NOMEM;
			}
			etcdserverpb__lease_status__init(s);
			s->id = copy[i].id;
			resp->leases[resp->n_leases++] = s;
		}
	}
	free(copy);
	resp->header = ec_hdr_new(ec_kv_revision(l->kv), hdr);
	if (resp->header == NULL) {
		ec_msg_free(resp);
		return EC_NOMEM;
	}
	*out = resp;
	return EC_OK;
}

size_t ec_lessor_expired(ec_lessor *l, int64_t *ids, size_t max)
{
	size_t k = 0;
	pthread_mutex_lock(&l->mu);
	int64_t t = now(l);
	for (size_t i = 0; i < l->n && k < max; i++) {
		lease *e = &l->v[i];
		if (e->deadline > t)
			continue;
		if (e->handed_at != 0 && t - e->handed_at < EC_LEASE_REVOKE_RETRY_MS)
			continue;
		e->handed_at = t == 0 ? 1 : t;
		ids[k++] = e->id;
	}
	pthread_mutex_unlock(&l->mu);
	return k;
}

void ec_lessor_promote(ec_lessor *l)
{
	pthread_mutex_lock(&l->mu);
	int64_t t = now(l);
	for (size_t i = 0; i < l->n; i++) {
		l->v[i].deadline = deadline_for(t, l->v[i].ttl);
		l->v[i].handed_at = 0;
	}
	pthread_mutex_unlock(&l->mu);
}

int64_t ec_lessor_next_deadline(ec_lessor *l)
{
	int64_t best = INT64_MAX;
	pthread_mutex_lock(&l->mu);
	for (size_t i = 0; i < l->n; i++) {
		const lease *e = &l->v[i];
		int64_t d = e->handed_at != 0 ? e->handed_at + EC_LEASE_REVOKE_RETRY_MS : e->deadline;
		if (d < best)
			best = d;
	}
	pthread_mutex_unlock(&l->mu);
	return best;
}

size_t ec_lessor_count(ec_lessor *l)
{
	pthread_mutex_lock(&l->mu);
	size_t n = l->n;
	pthread_mutex_unlock(&l->mu);
	return n;
}
