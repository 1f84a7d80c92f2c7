/*
 * srv_node: single-member node loop with group commit (see srv_node.h).
 *
 * Proposal queue: gRPC threads append packed proposals under one mutex and
 * signal; the node thread swaps the whole queue out, so everything that arrived
 * while the previous fsync ran becomes one batch. One batch = one st_log_append
 * with sync = one fdatasync.
 */
#include "server/srv_node.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "etcdcompat/ec_errors.h"

typedef struct srv_prop {
	struct srv_prop *next;
	uint64_t id;
	const Metastore__InternalRequest *req; /* the proposer's decoded request */
	size_t len;
	uint8_t data[]; /* packed InternalRequest as it goes to the log */
} srv_prop;

struct srv_node {
	srv_node_config cfg;
	srv_wait wait;
	pthread_t thread;
	pthread_mutex_t mu; /* guards head/tail/stopping and the status fields */
	pthread_cond_t cv;
	srv_prop *head, *tail;
	int stopping;
	atomic_int failed;
	atomic_uint_fast64_t next_id;
	srv_node_status st;
};

static uint64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

ec_hdr srv_node_hdr(srv_node *n)
{
	ec_hdr h = {n->cfg.cluster_id, n->cfg.member_id, 0};
	pthread_mutex_lock(&n->mu);
	h.raft_term = n->st.term;
	pthread_mutex_unlock(&n->mu);
	return h;
}

void srv_node_get_status(srv_node *n, srv_node_status *st)
{
	pthread_mutex_lock(&n->mu);
	*st = n->st;
	pthread_mutex_unlock(&n->mu);
	st->applied_index = ec_kv_applied_index(n->cfg.kv);
}

int srv_node_failed(srv_node *n)
{
	return atomic_load(&n->failed);
}

/*
 * An applied entry whose reply waits for its apply group to be written: the
 * response (or error) apply built and the request id of its waiter.
 */
typedef struct applied {
	uint64_t id;
	int err;
	ProtobufCMessage *resp;
} applied;

/*
 * Apply one log entry's request at @index inside the open apply group and
 * record its result in *@out (completed later by complete_applied). @req is the
 * decoded request (the proposer's own, or unpacked from the log). Returns 0 or
 * -1 on a storage failure.
 */
static int apply_one(srv_node *n, uint64_t index, const Metastore__InternalRequest *req,
		     applied *out)
{
	ec_hdr hdr = srv_node_hdr(n);
	out->id = req->id;
	out->resp = NULL;
	out->err = EC_OK;
	int rc = ec_kv_apply(n->cfg.kv, index, req, &hdr, &out->resp, &out->err);
	if (rc != 0) {
		fprintf(stderr, "metastore: apply of index %llu failed: %s\n",
			(unsigned long long)index, st_strerror(rc));
		return -1;
	}
	return 0;
}

/*
 * Hand each of @n results to its waiter (if it still has one) once their group
 * is written: with @fail non-zero every waiter gets @fail instead (the group was
 * not written). Frees the responses.
 */
static void complete_applied(srv_node *n, applied *res, size_t cnt, int fail)
{
	for (size_t i = 0; i < cnt; i++) {
		int err = fail ? fail : res[i].err;
		srv_waiter *w = srv_wait_take(&n->wait, res[i].id);
		if (w) {
			w->fn(w->ctx, err, err == EC_OK ? res[i].resp : NULL);
			if (err != EC_OK)
				ec_msg_free(res[i].resp);
			free(w);
		} else {
			ec_msg_free(res[i].resp);
		}
	}
}

/*
 * End the open apply group holding @done results in @res: commit it when every
 * apply succeeded (@rc 0), else drop it; then complete the waiters (with
 * EC_INTERNAL if nothing was written) and free @res. Returns 0 or -1.
 */
static int group_finish(srv_node *n, int rc, applied *res, size_t done)
{
	if (rc == 0) {
		int src = st_apply_commit(n->cfg.db);
		if (src != 0) {
			fprintf(stderr, "metastore: writing applied entries failed: %s\n",
				st_strerror(src));
			rc = -1;
		}
	} else {
		st_apply_abort(n->cfg.db);
	}
	complete_applied(n, res, done, rc == 0 ? 0 : EC_INTERNAL);
	free(res);
	return rc;
}

/* Apply stored entries @ents[0..cnt) (replay: decode from the log) in one group. */
static int apply_stored(srv_node *n, const st_entry *ents, size_t cnt)
{
	applied *res = calloc(cnt, sizeof(*res));
	if (!res || st_apply_begin(n->cfg.db) != 0) {
		free(res);
		return -1;
	}
	size_t done = 0;
	int rc = 0;
	for (; done < cnt && rc == 0; done++) {
		const st_entry *e = &ents[done];
		if (e->type != METASTORE__ENTRY_TYPE__ENTRY_NORMAL || e->len == 0) {
			/* No-op entries only advance the applied index. */
			Metastore__InternalRequest noop = METASTORE__INTERNAL_REQUEST__INIT;
			rc = apply_one(n, e->index, &noop, &res[done]);
			continue;
		}
		Metastore__InternalRequest *req =
			metastore__internal_request__unpack(NULL, e->len, e->data);
		if (!req) {
			fprintf(stderr, "metastore: log entry %llu does not decode: log is corrupt\n",
				(unsigned long long)e->index);
			rc = -1;
			break;
		}
		rc = apply_one(n, e->index, req, &res[done]);
		metastore__internal_request__free_unpacked(req, NULL);
	}
	/* Replayed entries have no waiters (ids are new each run): this only frees. */
	return group_finish(n, rc, res, done);
}

/* Replay entries (applied, last] that a crash left unapplied. */
static int replay(srv_node *n, char *errbuf, size_t errlen)
{
	uint64_t last = st_log_last_index(n->cfg.db);
	uint64_t next = ec_kv_applied_index(n->cfg.kv) + 1;
	while (next <= last) {
		st_entry *ents = NULL;
		size_t cnt = 0;
		int rc = st_log_entries(n->cfg.db, next, last + 1, 64u << 20, &ents, &cnt);
		if (rc != 0) {
			snprintf(errbuf, errlen, "reading log entries from %llu: %s",
				 (unsigned long long)next, st_strerror(rc));
			return -1;
		}
		if (apply_stored(n, ents, cnt) != 0) {
			snprintf(errbuf, errlen, "replaying log entries %llu..%llu failed",
				 (unsigned long long)ents[0].index,
				 (unsigned long long)ents[cnt - 1].index);
			st_entries_free(ents, cnt);
			return -1;
		}
		next = ents[cnt - 1].index + 1;
		st_entries_free(ents, cnt);
	}
	return 0;
}

/* Complete every proposal in @props with @err, without writing anything. */
static void fail_props(srv_node *n, srv_prop *props, int err)
{
	while (props) {
		srv_prop *p = props;
		props = p->next;
		srv_waiter *w = srv_wait_take(&n->wait, p->id);
		if (w) {
			w->fn(w->ctx, err, NULL);
			free(w);
		}
		free(p);
	}
}

/*
 * Persist a batch of proposals (plus an optional no-op when @props is NULL) at the
 * current term in one synced write, then apply them in order. On a storage
 * failure every proposal's waiter is failed, the node is poisoned and -1 returned.
 */
static int commit_batch(srv_node *n, srv_prop *props)
{
	size_t cnt = 0;
	for (srv_prop *p = props; p; p = p->next)
		cnt++;
	size_t nents = cnt ? cnt : 1;
	st_entry *ents = calloc(nents, sizeof(*ents));
	if (!ents)
		goto fail;

	pthread_mutex_lock(&n->mu);
	uint64_t term = n->st.term;
	uint64_t first = n->st.last_index + 1;
	pthread_mutex_unlock(&n->mu);

	size_t i = 0;
	for (srv_prop *p = props; p; p = p->next, i++) {
		ents[i].term = term;
		ents[i].index = first + i;
		ents[i].type = METASTORE__ENTRY_TYPE__ENTRY_NORMAL;
		ents[i].data = p->data;
		ents[i].len = p->len;
	}
	if (!cnt) {
		ents[0].term = term;
		ents[0].index = first;
		ents[0].type = METASTORE__ENTRY_TYPE__ENTRY_NORMAL;
	}
	uint64_t last = first + nents - 1;
	/* A single member is its own quorum: durable means committed. */
	st_hardstate hs = {term, n->cfg.member_id, last};
	int rc = st_log_append(n->cfg.db, ents, nents, &hs, true);
	free(ents);
	if (rc != 0) {
		fprintf(stderr, "metastore: log append failed: %s\n", st_strerror(rc));
		goto fail;
	}
	pthread_mutex_lock(&n->mu);
	n->st.last_index = last;
	n->st.commit_index = last;
	n->st.batches++;
	n->st.entries += nents;
	pthread_mutex_unlock(&n->mu);

	/* Apply the whole batch in one group; replies leave once it is written. */
	applied *res = calloc(nents, sizeof(*res));
	if (!res || st_apply_begin(n->cfg.db) != 0) {
		free(res);
		goto fail;
	}
	size_t done = 0;
	rc = 0;
	if (!cnt) {
		Metastore__InternalRequest noop = METASTORE__INTERNAL_REQUEST__INIT;
		rc = apply_one(n, first, &noop, &res[0]);
		done = 1;
	}
	for (srv_prop *p = props; p && rc == 0; p = p->next, done++)
		rc = apply_one(n, first + done, p->req, &res[done]);
	rc = group_finish(n, rc, res, done);
	/* every proposal of the batch has been completed above or fails below */
	for (size_t k = 0; k < done && props; k++) {
		srv_prop *p = props;
		props = p->next;
		free(p);
	}
	if (rc != 0)
		goto fail;
	return 0;

fail:
	atomic_store(&n->failed, 1);
	fail_props(n, props, EC_INTERNAL);
	return -1;
}

static void *node_main(void *arg)
{
	srv_node *n = arg;
	for (;;) {
		pthread_mutex_lock(&n->mu);
		while (!n->head && !n->stopping)
			pthread_cond_wait(&n->cv, &n->mu);
		srv_prop *batch = n->head;
		n->head = n->tail = NULL;
		int stop = n->stopping;
		pthread_mutex_unlock(&n->mu);

		if (batch && !atomic_load(&n->failed))
			commit_batch(n, batch);
		else if (batch)
			fail_props(n, batch, EC_STOPPED);
		if (stop && !batch)
			break;
	}
	return NULL;
}

int srv_node_propose(srv_node *n, Metastore__InternalRequest *req, srv_wait_fn fn, void *ctx)
{
	if (atomic_load(&n->failed))
		return EC_STOPPED;
	req->id = atomic_fetch_add(&n->next_id, 1);
	size_t len = metastore__internal_request__get_packed_size(req);
	if (len > n->cfg.max_request_bytes)
		return EC_REQUEST_TOO_LARGE;
	srv_prop *p = malloc(sizeof(*p) + len);
	if (!p)
		return EC_NOMEM;
	p->next = NULL;
	p->id = req->id;
	p->req = req;
	p->len = metastore__internal_request__pack(req, p->data);
	if (srv_wait_add(&n->wait, p->id, fn, ctx) != 0) {
		free(p);
		return EC_NOMEM;
	}
	pthread_mutex_lock(&n->mu);
	if (n->stopping) {
		pthread_mutex_unlock(&n->mu);
		free(srv_wait_take(&n->wait, p->id));
		free(p);
		return EC_STOPPED;
	}
	if (n->tail)
		n->tail->next = p;
	else
		n->head = p;
	n->tail = p;
	pthread_cond_signal(&n->cv);
	pthread_mutex_unlock(&n->mu);
	return EC_OK;
}

int srv_node_start(const srv_node_config *cfg, srv_node **out, char *errbuf, size_t errlen)
{
	srv_node *n = calloc(1, sizeof(*n));
	if (!n) {
		snprintf(errbuf, errlen, "out of memory");
		return -1;
	}
	n->cfg = *cfg;
	if (srv_wait_init(&n->wait) != 0) {
		free(n);
		snprintf(errbuf, errlen, "out of memory");
		return -1;
	}
	pthread_mutex_init(&n->mu, NULL);
	pthread_cond_init(&n->cv, NULL);
	/* Request ids as etcd builds them: member prefix, start time, counter. */
	atomic_init(&n->next_id, ((cfg->member_id & 0xffff) << 48) | ((now_ms() & 0xffffffffffULL) << 8));
	atomic_init(&n->failed, 0);

	st_hardstate hs;
	int rc = st_hardstate_load(cfg->db, &hs);
	if (rc != 0) {
		snprintf(errbuf, errlen, "loading hard state: %s", st_strerror(rc));
		goto fail;
	}
	n->st.last_index = st_log_last_index(cfg->db);
	n->st.commit_index = n->st.last_index;
	n->st.term = hs.term;
	if (replay(n, errbuf, errlen) != 0)
		goto fail;
	/* A new term for this run, opened by a no-op entry (Raft §8: a leader commits an
	 * entry of its own term before serving). */
	n->st.term = hs.term + 1;
	if (commit_batch(n, NULL) != 0) {
		snprintf(errbuf, errlen, "writing the term-start entry failed");
		goto fail;
	}
	if (pthread_create(&n->thread, NULL, node_main, n) != 0) {
		snprintf(errbuf, errlen, "cannot start node thread: %s", strerror(errno));
		goto fail;
	}
	*out = n;
	return 0;
fail:
	srv_wait_destroy(&n->wait, EC_STOPPED);
	pthread_mutex_destroy(&n->mu);
	pthread_cond_destroy(&n->cv);
	free(n);
	return -1;
}

void srv_node_stop(srv_node *n)
{
	if (!n)
		return;
	pthread_mutex_lock(&n->mu);
	n->stopping = 1;
	pthread_cond_signal(&n->cv);
	pthread_mutex_unlock(&n->mu);
	pthread_join(n->thread, NULL);
	srv_wait_destroy(&n->wait, EC_STOPPED);
	pthread_mutex_destroy(&n->mu);
	pthread_cond_destroy(&n->cv);
	free(n);
}
