/*
 * test_peer.c: the peer transport (server/srv_peer.c) between real srv_peer
 * instances, each serving srv_peer_methods() with its own srv_rpc server on
 * 127.0.0.1 port 0, in one process.
 *
 * A test node records what its callbacks see (messages, unreachable reports,
 * snapshot statuses) under one global mutex and condition; tests wait on those
 * counts with a generous deadline and never measure time otherwise. Forward
 * handlers: kind 1 echoes the request reversed, kind 2 fails with 42, kind 3
 * sleeps 1 s before answering (for timeouts); kinds 4 and 5 answer later from
 * another thread (SRV_PEER_LATER), once the test opens a gate: 4 as kind 1, 5
 * with error 43.
 */
#include <criterion/criterion.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "server/srv_peer.h"
#include "server/srv_peer_int.h"
#include "server/srv_rpc.h"

#ifdef __SANITIZE_ADDRESS__
#include <sanitizer/lsan_interface.h>
/* Fails the test if LeakSanitizer finds unreachable memory now (Criterion
 * ignores the report LSan prints at exit). */
#define CHECK_NO_LEAKS() cr_assert_eq(__lsan_do_recoverable_leak_check(), 0, "leaks (see stderr)")
#else
#define CHECK_NO_LEAKS() ((void)0)
#endif

#define MAX_NODES 4
#define WAIT_MS   10000

typedef struct tnode {
	uint64_t id, cluster;
	srv_peer *peer;
	srv_rpc *rpc;
	int port;
	bool no_forward; /* serve forwards with on_forward NULL */
	uint64_t removed_id; /* is_removed answers true for this id (0: none) */
	/* recorded, under g_mu */
	raft_message **msgs;
	size_t n_msgs, cap_msgs;
	int unreach[MAX_NODES + 2]; /* by peer id (ids are small) */
	int snap_ok[MAX_NODES + 2], snap_failed[MAX_NODES + 2];
	int removed_by[MAX_NODES + 2]; /* on_removed calls, by refusing peer id */
} tnode;

static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t g_cv = PTHREAD_COND_INITIALIZER;
static tnode g_nodes[MAX_NODES];
static int g_nnodes;

/* ---- helpers ---------------------------------------------------------------- */

static void sleep_ms(int ms)
{
	struct timespec t = {ms / 1000, (long)(ms % 1000) * 1000000L};
	nanosleep(&t, NULL);
}

static struct timespec abs_deadline(int ms)
{
	struct timespec d;
	clock_gettime(CLOCK_REALTIME, &d);
	d.tv_sec += ms / 1000;
	d.tv_nsec += (long)(ms % 1000) * 1000000L;
	if (d.tv_nsec >= 1000000000L) {
		d.tv_sec++;
		d.tv_nsec -= 1000000000L;
	}
	return d;
}

/* Wait up to @ms for *@p >= @want (an int or size_t read under g_mu). */
static bool wait_int(const int *p, int want, int ms)
{
	struct timespec d = abs_deadline(ms);
	pthread_mutex_lock(&g_mu);
	while (*p < want)
		if (pthread_cond_timedwait(&g_cv, &g_mu, &d) != 0)
			break;
	bool ok = *p >= want;
	pthread_mutex_unlock(&g_mu);
	return ok;
}

static bool wait_msgs(tnode *n, size_t want, int ms)
{
	struct timespec d = abs_deadline(ms);
	pthread_mutex_lock(&g_mu);
	while (n->n_msgs < want)
		if (pthread_cond_timedwait(&g_cv, &g_mu, &d) != 0)
			break;
	bool ok = n->n_msgs >= want;
	pthread_mutex_unlock(&g_mu);
	return ok;
}

static size_t n_msgs(tnode *n)
{
	pthread_mutex_lock(&g_mu);
	size_t v = n->n_msgs;
	pthread_mutex_unlock(&g_mu);
	return v;
}

/* A port nothing listens on (bound, then closed). */
static int dead_port(void)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a;
	memset(&a, 0, sizeof a);
	a.sin_family = AF_INET;
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	bind(fd, (struct sockaddr *)&a, sizeof a);
	socklen_t l = sizeof a;
	getsockname(fd, (struct sockaddr *)&a, &l);
	close(fd);
	return ntohs(a.sin_port);
}

static void url_of(int port, char *buf, size_t n)
{
	snprintf(buf, n, "http://127.0.0.1:%d", port);
}

/* ---- callbacks ------------------------------------------------------------------ */

static void cb_message(void *ctx, raft_message *m)
{
	tnode *n = ctx;
	pthread_mutex_lock(&g_mu);
	if (n->n_msgs == n->cap_msgs) {
		n->cap_msgs = n->cap_msgs ? n->cap_msgs * 2 : 64;
		n->msgs = realloc(n->msgs, n->cap_msgs * sizeof *n->msgs);
	}
	n->msgs[n->n_msgs++] = m;
	pthread_cond_broadcast(&g_cv);
	pthread_mutex_unlock(&g_mu);
}

static void cb_unreachable(void *ctx, uint64_t to)
{
	tnode *n = ctx;
	pthread_mutex_lock(&g_mu);
	if (to < MAX_NODES + 2)
		n->unreach[to]++;
	pthread_cond_broadcast(&g_cv);
	pthread_mutex_unlock(&g_mu);
}

static void cb_snapshot(void *ctx, uint64_t to, bool failed)
{
	tnode *n = ctx;
	pthread_mutex_lock(&g_mu);
	if (to < MAX_NODES + 2)
		(failed ? n->snap_failed : n->snap_ok)[to]++;
	pthread_cond_broadcast(&g_cv);
	pthread_mutex_unlock(&g_mu);
}

static bool cb_is_removed(void *ctx, uint64_t id)
{
	tnode *n = ctx;
	pthread_mutex_lock(&g_mu);
	bool r = n->removed_id != 0 && n->removed_id == id;
	pthread_mutex_unlock(&g_mu);
	return r;
}

static void cb_removed(void *ctx, uint64_t by)
{
	tnode *n = ctx;
	pthread_mutex_lock(&g_mu);
	if (by < MAX_NODES + 2)
		n->removed_by[by]++;
	pthread_cond_broadcast(&g_cv);
	pthread_mutex_unlock(&g_mu);
}

/* The answer of kind 1 (and 4): @in reversed, then @from. */
static uint8_t *echo_answer(uint64_t from, const uint8_t *in, size_t inlen, size_t *outlen)
{
	uint8_t *out = malloc(inlen + 8);
	for (size_t i = 0; i < inlen; i++)
		out[i] = in[inlen - 1 - i];
	memcpy(out + inlen, &from, 8);
	*outlen = inlen + 8;
	return out;
}

static bool g_gate_open; /* under g_mu: deferred forwards may answer */
static int g_deferred;   /* under g_mu: deferred forwards inside their handler */
static int g_later_done; /* under g_mu: deferred answers sent, jobs freed */

typedef struct later_job {
	srv_peer_reply *reply;
	uint32_t kind;
	uint64_t from;
	uint8_t *in;
	size_t inlen;
} later_job;

static void *later_main(void *arg)
{
	later_job *j = arg;
	pthread_mutex_lock(&g_mu);
	while (!g_gate_open)
		pthread_cond_wait(&g_cv, &g_mu);
	pthread_mutex_unlock(&g_mu);
	size_t outlen = 0;
	if (j->kind == 4) {
		uint8_t *out = echo_answer(j->from, j->in, j->inlen, &outlen);
		srv_peer_forward_reply(j->reply, 0, out, outlen);
	} else
		srv_peer_forward_reply(j->reply, 43, NULL, 0);
	free(j->in);
	free(j);
	pthread_mutex_lock(&g_mu);
	g_later_done++;
	pthread_cond_broadcast(&g_cv);
	pthread_mutex_unlock(&g_mu);
	return NULL;
}

static int cb_forward(void *ctx, uint64_t from, uint32_t kind, const uint8_t *in, size_t inlen,
                      uint8_t **out, size_t *outlen, srv_peer_reply *reply)
{
	switch (kind) {
	case 1:
		*out = echo_answer(from, in, inlen, outlen);
		return 0;
	case 2:
		*out = malloc(3); /* set on error: must be freed, not sent */
		*outlen = 3;
		return 42;
	case 3:
		sleep_ms(1000);
		return 0;
	case 4:
	case 5: {
		later_job *j = malloc(sizeof *j);
		*j = (later_job){reply, kind, from, malloc(inlen ? inlen : 1), inlen};
		memcpy(j->in, in, inlen); /* @in is valid only during this call */
		pthread_t th;
		cr_assert_eq(pthread_create(&th, NULL, later_main, j), 0);
		pthread_detach(th);
		pthread_mutex_lock(&g_mu);
		g_deferred++;
		pthread_cond_broadcast(&g_cv);
		pthread_mutex_unlock(&g_mu);
		return SRV_PEER_LATER;
	}
	default:
		return -5;
	}
}

/* ---- nodes ---------------------------------------------------------------------- */

static void node_serve(tnode *n, int port)
{
	char listen[64];
	snprintf(listen, sizeof listen, "127.0.0.1:%d", port);
	const char *addrs[1] = {listen};
	srv_rpc_config rc;
	memset(&rc, 0, sizeof rc);
	rc.listen = addrs;
	rc.n_listen = 1;
	rc.threads = 2;
	rc.max_request_bytes = SRV_PEER_MAX_REQUEST_BYTES;
	rc.shutdown_grace_ms = 100;
	rc.shutdown_hard_ms = 3000;
	srv_method rows[SRV_PEER_N_METHODS];
	size_t nr = srv_peer_methods(rows, SRV_PEER_N_METHODS);
	cr_assert_eq(nr, SRV_PEER_N_METHODS);
	char err[256] = "";
	cr_assert_eq(srv_rpc_start(&rc, rows, nr, n->peer, &n->rpc, err, sizeof err), 0, "%s", err);
	n->port = srv_rpc_port(n->rpc, 0);
}

static void node_unserve(tnode *n)
{
	if (n->rpc != NULL)
		srv_rpc_shutdown(n->rpc);
	n->rpc = NULL;
}

static tnode *node_new(uint64_t id, uint64_t cluster, bool forward)
{
	cr_assert(g_nnodes < MAX_NODES);
	tnode *n = &g_nodes[g_nnodes++];
	memset(n, 0, sizeof *n);
	n->id = id;
	n->cluster = cluster;
	srv_peer_config cfg = {
	        .self_id = id,
	        .cluster_id = cluster,
	        .on_message = cb_message,
	        .on_unreachable = cb_unreachable,
	        .on_snapshot_status = cb_snapshot,
	        .is_removed = cb_is_removed,
	        .on_removed = cb_removed,
	        .on_forward = forward ? cb_forward : NULL,
	        .ctx = n,
	};
	cr_assert_eq(srv_peer_new(&cfg, &n->peer), 0);
	node_serve(n, 0);
	return n;
}

/* Tell @a where @b is. */
static void link_to(tnode *a, tnode *b)
{
	char url[64];
	url_of(b->port, url, sizeof url);
	const char *urls[1] = {url};
	cr_assert_eq(srv_peer_add(a->peer, b->id, urls, 1), 0);
}

static void node_free(tnode *n)
{
	node_unserve(n);
	srv_peer_stop(n->peer);
	n->peer = NULL;
	for (size_t i = 0; i < n->n_msgs; i++)
		srv_peer_msg_free(n->msgs[i]);
	free(n->msgs);
	n->msgs = NULL;
	n->n_msgs = 0;
}

static void teardown(void)
{
	/* Servers first (srv_peer_stop must follow its server's shutdown). */
	for (int i = 0; i < g_nnodes; i++)
		node_unserve(&g_nodes[i]);
	for (int i = 0; i < g_nnodes; i++)
		if (g_nodes[i].peer != NULL)
			node_free(&g_nodes[i]);
	g_nnodes = 0;
}

TestSuite(server_peer, .fini = teardown, .timeout = 90);

/* ---- message builders and checks -------------------------------------------- */

static raft_blob *blob_str(const char *s)
{
	return raft_blob_copy(s, strlen(s));
}

/* A message of @type with every scalar field set from @seed. */
static raft_message msg_make(raft_msg_type type, uint64_t from, uint64_t to, uint64_t seed)
{
	raft_message m;
	memset(&m, 0, sizeof m);
	m.type = type;
	m.from = from;
	m.to = to;
	m.term = seed * 10 + 1;
	m.log_term = seed * 10 + 2;
	m.index = seed * 10 + 3;
	m.commit = seed * 10 + 4;
	m.reject = seed % 2 == 1;
	m.reject_hint = seed * 10 + 5;
	m.context = UINT64_MAX - seed;
	return m;
}

static void msg_release(raft_message *m)
{
	for (size_t i = 0; i < m->n_entries; i++)
		raft_blob_unref(m->entries[i].data);
	free(m->entries);
	if (m->snapshot != NULL) {
		raft_blob_unref(m->snapshot->data);
		free(m->snapshot);
	}
}

static void blob_eq(const raft_blob *a, const raft_blob *b)
{
	if (a == NULL || b == NULL) {
		cr_assert_eq(a == NULL, b == NULL, "blob presence differs");
		return;
	}
	cr_assert_eq(a->len, b->len);
	cr_assert_eq(memcmp(a->data, b->data, a->len), 0);
	cr_assert_eq(b->refs, 1, "a received blob has exactly one reference");
}

static void ids_eq(const raft_id *a, size_t na, const raft_id *b, size_t nb)
{
	cr_assert_eq(na, nb);
	for (size_t i = 0; i < na; i++)
		cr_assert_eq(a[i], b[i]);
}

static void msg_eq(const raft_message *a, const raft_message *b)
{
	cr_assert_eq(a->type, b->type);
	cr_assert_eq(a->from, b->from);
	cr_assert_eq(a->to, b->to);
	cr_assert_eq(a->term, b->term);
	cr_assert_eq(a->log_term, b->log_term);
	cr_assert_eq(a->index, b->index);
	cr_assert_eq(a->commit, b->commit);
	cr_assert_eq(a->reject, b->reject);
	cr_assert_eq(a->reject_hint, b->reject_hint);
	cr_assert_eq(a->context, b->context);
	cr_assert_eq(a->n_entries, b->n_entries);
	cr_assert_eq(a->n_entries == 0, b->entries == NULL);
	for (size_t i = 0; i < a->n_entries; i++) {
		cr_assert_eq(a->entries[i].term, b->entries[i].term);
		cr_assert_eq(a->entries[i].index, b->entries[i].index);
		cr_assert_eq(a->entries[i].type, b->entries[i].type);
		blob_eq(a->entries[i].data, b->entries[i].data);
	}
	cr_assert_eq(a->snapshot == NULL, b->snapshot == NULL);
	if (a->snapshot != NULL) {
		const raft_snapshot *x = a->snapshot, *y = b->snapshot;
		cr_assert_eq(x->index, y->index);
		cr_assert_eq(x->term, y->term);
		ids_eq(x->conf.voters, x->conf.n_voters, y->conf.voters, y->conf.n_voters);
		ids_eq(x->conf.voters_outgoing, x->conf.n_voters_outgoing, y->conf.voters_outgoing,
		       y->conf.n_voters_outgoing);
		ids_eq(x->conf.learners, x->conf.n_learners, y->conf.learners, y->conf.n_learners);
		ids_eq(x->conf.learners_next, x->conf.n_learners_next, y->conf.learners_next,
		       y->conf.n_learners_next);
		cr_assert_eq(x->conf.auto_leave, y->conf.auto_leave);
		blob_eq(x->data, y->data);
	}
}

static raft_snapshot *snap_make(size_t data_len, bool with_data)
{
	raft_snapshot *s = calloc(1, sizeof *s);
	s->index = 777;
	s->term = 9;
	s->conf.n_voters = 3;
	s->conf.voters[0] = 1;
	s->conf.voters[1] = 2;
	s->conf.voters[2] = 3;
	s->conf.n_voters_outgoing = 2;
	s->conf.voters_outgoing[0] = 1;
	s->conf.voters_outgoing[1] = 4;
	s->conf.n_learners = 1;
	s->conf.learners[0] = 5;
	s->conf.n_learners_next = RAFT_MAX_NODES;
	for (size_t i = 0; i < RAFT_MAX_NODES; i++)
		s->conf.learners_next[i] = 1000 + i;
	s->conf.auto_leave = true;
	if (with_data) {
		s->data = raft_blob_new(data_len);
		for (size_t i = 0; i < data_len; i++)
			s->data->data[i] = (unsigned char)(i * 131 + (i >> 16));
	}
	return s;
}

/* Find the message of @type among @n's received (NULL if none). */
static raft_message *find_type(tnode *n, raft_msg_type type, size_t skip)
{
	pthread_mutex_lock(&g_mu);
	raft_message *r = NULL;
	for (size_t i = 0; i < n->n_msgs && r == NULL; i++)
		if (n->msgs[i]->type == type && skip-- == 0)
			r = n->msgs[i];
	pthread_mutex_unlock(&g_mu);
	return r;
}

/* ---- tests ------------------------------------------------------------------ */

Test(server_peer, every_field_of_every_type_round_trips)
{
	tnode *a = node_new(1, 7, true), *b = node_new(2, 7, true);
	link_to(a, b);

	raft_message ms[RAFT__MSG_COUNT + 1];
	for (int t = 0; t < RAFT__MSG_COUNT; t++) {
		ms[t] = msg_make((raft_msg_type)t, 1, 2, (uint64_t)t + 1);
		if (t == RAFT_MSG_APPEND || t == RAFT_MSG_PROPOSE) {
			ms[t].n_entries = 4;
			ms[t].entries = calloc(4, sizeof(raft_entry));
			for (int i = 0; i < 4; i++) {
				ms[t].entries[i].term = 100 + (uint64_t)i;
				ms[t].entries[i].index = 200 + (uint64_t)i;
			}
			ms[t].entries[0].data = blob_str("put k v");
			ms[t].entries[1].data = NULL;             /* a leader's no-op */
			ms[t].entries[2].data = raft_blob_new(0); /* empty but present */
			ms[t].entries[3].type = RAFT_ENTRY_CONF_CHANGE;
			ms[t].entries[3].data = blob_str("\x01\x02\x00\x03");
		}
		if (t == RAFT_MSG_SNAPSHOT)
			ms[t].snapshot = snap_make(4096, true);
	}
	/* and a snapshot with no data at all */
	ms[RAFT__MSG_COUNT] = msg_make(RAFT_MSG_SNAPSHOT, 1, 2, 99);
	ms[RAFT__MSG_COUNT].snapshot = snap_make(0, false);

	srv_peer_send(a->peer, ms, RAFT__MSG_COUNT + 1);
	cr_assert(wait_msgs(b, RAFT__MSG_COUNT + 1, WAIT_MS), "got %zu", n_msgs(b));
	for (int t = 0; t < RAFT__MSG_COUNT; t++) {
		raft_message *got = find_type(b, (raft_msg_type)t, 0);
		cr_assert_not_null(got, "type %s missing", raft_msg_type_name(t));
		if (t == RAFT_MSG_SNAPSHOT && got->snapshot->data == NULL)
			got = find_type(b, (raft_msg_type)t, 1);
		msg_eq(&ms[t], got);
	}
	raft_message *nodata = find_type(b, RAFT_MSG_SNAPSHOT, 0);
	if (nodata->snapshot->data != NULL)
		nodata = find_type(b, RAFT_MSG_SNAPSHOT, 1);
	msg_eq(&ms[RAFT__MSG_COUNT], nodata);
	cr_assert(wait_int(&a->snap_ok[2], 2, WAIT_MS));
	cr_assert_eq(a->snap_failed[2], 0);
	for (int t = 0; t <= RAFT__MSG_COUNT; t++)
		msg_release(&ms[t]);
	teardown();
	CHECK_NO_LEAKS();
}

Test(server_peer, many_messages_arrive_in_order_in_few_batches)
{
	tnode *a = node_new(1, 7, true), *b = node_new(2, 7, true), *c = node_new(3, 7, true);
	link_to(a, b);
	link_to(a, c);
	enum { TOTAL = 6000, PER_CALL = 100 };
	raft_message ms[2 * PER_CALL];
	raft_blob *payload = raft_blob_new(300);
	memset(payload->data, 'x', 300);
	for (int k = 0; k < TOTAL; k += PER_CALL) {
		for (int i = 0; i < PER_CALL; i++) {
			raft_message *m = &ms[2 * i];
			*m = msg_make(RAFT_MSG_APPEND, 1, 2, 0);
			m->index = (uint64_t)(k + i);
			m->n_entries = 1;
			m->entries = calloc(1, sizeof(raft_entry));
			m->entries[0].index = (uint64_t)(k + i) + 1;
			m->entries[0].data = raft_blob_ref(payload);
			ms[2 * i + 1] = msg_make(RAFT_MSG_HEARTBEAT, 1, 3, 0);
			ms[2 * i + 1].commit = (uint64_t)(k + i);
		}
		srv_peer_send(a->peer, ms, 2 * PER_CALL);
		for (int i = 0; i < 2 * PER_CALL; i++)
			msg_release(&ms[i]);
		if (k % 1000 == 0) /* let the queue drain now and then: it holds 4096 */
			wait_msgs(b, (size_t)k / 2, WAIT_MS);
	}
	cr_assert_eq(payload->refs, 1, "the transport took no blob references");
	raft_blob_unref(payload);
	cr_assert(wait_msgs(b, TOTAL, WAIT_MS), "b got %zu", n_msgs(b));
	cr_assert(wait_msgs(c, TOTAL, WAIT_MS), "c got %zu", n_msgs(c));
	for (size_t i = 0; i < TOTAL; i++) {
		cr_assert_eq(b->msgs[i]->index, i);
		cr_assert_eq(b->msgs[i]->entries[0].data->len, 300);
		cr_assert_eq(c->msgs[i]->commit, i);
	}
	/* Write completions may trail delivery a little. */
	srv_peer_stats st;
	for (int i = 0; i < 500; i++) {
		srv_peer_get_stats(a->peer, &st);
		if (st.msgs_sent == 2 * TOTAL)
			break;
		sleep_ms(10);
	}
	cr_assert_eq(st.msgs_sent, 2 * TOTAL);
	cr_assert_eq(st.msgs_dropped, 0);
	cr_assert_lt(st.batches_sent, st.msgs_sent, "messages were batched");
	cr_assert_eq(st.streams_opened, 2, "one stream per peer");
	cr_assert_eq(a->unreach[2] + a->unreach[3], 0);
	teardown();
	CHECK_NO_LEAKS();
}

Test(server_peer, snapshot_of_20_mib_arrives_whole)
{
	tnode *a = node_new(1, 7, true), *b = node_new(2, 7, true);
	link_to(a, b);
	raft_message m = msg_make(RAFT_MSG_SNAPSHOT, 1, 2, 3);
	m.snapshot = snap_make((size_t)20 << 20, true);
	raft_message hb = msg_make(RAFT_MSG_HEARTBEAT, 1, 2, 4);
	raft_message two[2] = {m, hb};
	srv_peer_send(a->peer, two, 2);
	cr_assert_eq(m.snapshot->data->refs, 1);
	cr_assert(wait_int(&a->snap_ok[2], 1, 30000));
	cr_assert_eq(a->snap_failed[2], 0);
	cr_assert(wait_msgs(b, 2, WAIT_MS));
	raft_message *got = find_type(b, RAFT_MSG_SNAPSHOT, 0);
	cr_assert_not_null(got);
	msg_eq(&m, got);
	cr_assert_not_null(find_type(b, RAFT_MSG_HEARTBEAT, 0));
	msg_release(&m);
	teardown();
	CHECK_NO_LEAKS();
}

Test(server_peer, down_peer_reports_unreachable_and_send_returns)
{
	tnode *a = node_new(1, 7, true);
	char url[64];
	url_of(dead_port(), url, sizeof url);
	const char *urls[1] = {url};
	cr_assert_eq(srv_peer_add(a->peer, 2, urls, 1), 0);
	raft_message m = msg_make(RAFT_MSG_APPEND, 1, 2, 1);
	srv_peer_send(a->peer, &m, 1);
	cr_assert(wait_int(&a->unreach[2], 1, WAIT_MS));

	/* Far more than the queue holds, in one call: returns, drops, reports. */
	enum { N = SRV_PEER_QUEUE_MSGS + 500 };
	raft_message *many = calloc(N, sizeof *many);
	for (int i = 0; i < N; i++)
		many[i] = msg_make(RAFT_MSG_HEARTBEAT, 1, 2, (uint64_t)i);
	int before = a->unreach[2];
	srv_peer_send(a->peer, many, N);
	free(many);
	cr_assert(wait_int(&a->unreach[2], before + 1, WAIT_MS));

	/* A snapshot to a down peer fails and says so. */
	raft_message s = msg_make(RAFT_MSG_SNAPSHOT, 1, 2, 5);
	s.snapshot = snap_make(100, true);
	srv_peer_send(a->peer, &s, 1);
	msg_release(&s);
	cr_assert(wait_int(&a->snap_failed[2], 1, WAIT_MS));
	cr_assert_eq(a->snap_ok[2], 0);

	/* Unknown ids and self are dropped silently. */
	raft_message u = msg_make(RAFT_MSG_APPEND, 1, 3, 1),
	             self = msg_make(RAFT_MSG_APPEND, 1, 1, 1);
	srv_peer_send(a->peer, &u, 1);
	srv_peer_send(a->peer, &self, 1);
	cr_assert_eq(a->unreach[3] + a->unreach[1], 0);
	teardown();
	CHECK_NO_LEAKS();
}

Test(server_peer, reconnects_after_the_receiver_restarts_on_the_same_port)
{
	tnode *a = node_new(1, 7, true), *b = node_new(2, 7, true);
	link_to(a, b);
	raft_message m = msg_make(RAFT_MSG_HEARTBEAT, 1, 2, 1);
	m.context = 1;
	srv_peer_send(a->peer, &m, 1);
	cr_assert(wait_msgs(b, 1, WAIT_MS));

	int port = b->port;
	node_unserve(b);
	node_serve(b, port);
	cr_assert_eq(b->port, port);

	/* Keep sending until one arrives after the restart. */
	size_t before = n_msgs(b);
	bool arrived = false;
	for (int i = 0; i < 400 && !arrived; i++) {
		m.context = 1000 + (uint64_t)i;
		srv_peer_send(a->peer, &m, 1);
		arrived = wait_msgs(b, before + 1, 50);
	}
	cr_assert(arrived, "no message after the restart");
	pthread_mutex_lock(&g_mu);
	uint64_t ctx = b->msgs[before]->context;
	pthread_mutex_unlock(&g_mu);
	cr_assert_geq(ctx, 1000);
	srv_peer_stats st;
	srv_peer_get_stats(a->peer, &st);
	cr_assert_geq(st.streams_opened, 2, "a new stream was opened");
	teardown();
	CHECK_NO_LEAKS();
}

Test(server_peer, second_url_is_used_when_the_first_is_dead)
{
	tnode *a = node_new(1, 7, true), *b = node_new(2, 7, true);
	char dead[64], live[64];
	url_of(dead_port(), dead, sizeof dead);
	url_of(b->port, live, sizeof live);
	const char *urls[2] = {dead, live};
	cr_assert_eq(srv_peer_add(a->peer, 2, urls, 2), 0);
	raft_message m = msg_make(RAFT_MSG_HEARTBEAT, 1, 2, 1);
	bool arrived = false;
	for (int i = 0; i < 200 && !arrived; i++) {
		srv_peer_send(a->peer, &m, 1);
		arrived = wait_msgs(b, 1, 50);
	}
	cr_assert(arrived);
	teardown();
	CHECK_NO_LEAKS();
}

Test(server_peer, cluster_id_mismatch_is_dropped)
{
	tnode *a = node_new(1, 7, true), *c = node_new(3, 8, true);
	link_to(a, c);
	raft_message m = msg_make(RAFT_MSG_APPEND, 1, 3, 1);
	srv_peer_send(a->peer, &m, 1);
	srv_peer_stats st;
	for (int i = 0; i < 200; i++) {
		srv_peer_get_stats(c->peer, &st);
		if (st.batches_rejected > 0)
			break;
		sleep_ms(20);
	}
	cr_assert_geq(st.batches_rejected, 1);
	cr_assert_eq(n_msgs(c), 0);
	cr_assert_eq(st.msgs_received, 0);
	teardown();
	CHECK_NO_LEAKS();
}

/* A member that applied 1's removal refuses 1's Raft stream; 1 is told, by whom,
 * and nothing 1 sent is delivered. Other senders are unaffected. */
Test(server_peer, removed_sender_is_refused_and_told)
{
	tnode *a = node_new(1, 7, true), *b = node_new(2, 7, true), *c = node_new(3, 7, true);
	link_to(a, b);
	link_to(c, b);
	pthread_mutex_lock(&g_mu);
	b->removed_id = 1;
	pthread_mutex_unlock(&g_mu);
	raft_message m = msg_make(RAFT_MSG_VOTE, 1, 2, 1);
	srv_peer_send(a->peer, &m, 1);
	cr_assert(wait_int(&a->removed_by[2], 1, WAIT_MS), "sender was not told it is removed");
	cr_assert_eq(n_msgs(b), 0, "a removed member's message was delivered");
	raft_message m3 = msg_make(RAFT_MSG_VOTE, 3, 2, 2);
	srv_peer_send(c->peer, &m3, 1);
	cr_assert(wait_msgs(b, 1, WAIT_MS));
	cr_assert_eq(b->msgs[0]->from, 3);
	pthread_mutex_lock(&g_mu);
	cr_assert_eq(c->removed_by[2], 0);
	pthread_mutex_unlock(&g_mu);
	teardown();
	CHECK_NO_LEAKS();
}

/* ---- forwards --------------------------------------------------------------- */

typedef struct fwd_result {
	int done;
	int err;
	uint8_t data[64];
	size_t len;
} fwd_result;

static void fwd_cb(void *cbctx, int err, const uint8_t *out, size_t outlen)
{
	fwd_result *r = cbctx;
	pthread_mutex_lock(&g_mu);
	r->err = err;
	r->len = outlen < sizeof r->data ? outlen : sizeof r->data;
	if (out != NULL)
		memcpy(r->data, out, r->len);
	r->done++;
	pthread_cond_broadcast(&g_cv);
	pthread_mutex_unlock(&g_mu);
}

static int forward_wait(tnode *a, uint64_t to, uint32_t kind, const char *in, int timeout_ms,
                        fwd_result *r)
{
	memset(r, 0, sizeof *r);
	int rc = srv_peer_forward(a->peer, to, kind, (const uint8_t *)in, strlen(in), timeout_ms,
	                          fwd_cb, r);
	if (rc != 0)
		return rc;
	cr_assert(wait_int(&r->done, 1, WAIT_MS));
	return 0;
}

/* @r is kind 1's (or 4's) answer to @in from member @from: @in reversed, then
 * the caller's id as the handler saw it. */
static void check_echo(const fwd_result *r, const char *in, uint64_t from)
{
	size_t n = strlen(in);
	cr_assert_eq(r->err, 0);
	cr_assert_eq(r->len, n + 8);
	for (size_t i = 0; i < n; i++)
		cr_assert_eq(r->data[i], (uint8_t)in[n - 1 - i]);
	uint64_t seen;
	memcpy(&seen, r->data + n, 8);
	cr_assert_eq(seen, from, "the handler sees the caller's id");
}

Test(server_peer, forward_round_trips)
{
	tnode *a = node_new(1, 7, true), *b = node_new(2, 7, true), *c = node_new(3, 8, true);
	tnode *d = node_new(4, 7, false);
	link_to(a, b);
	link_to(a, c);
	link_to(a, d);
	fwd_result r;

	cr_assert_eq(forward_wait(a, 2, 1, "abc", 5000, &r), 0);
	check_echo(&r, "abc", 1);

	cr_assert_eq(forward_wait(a, 2, 2, "x", 5000, &r), 0);
	cr_assert_eq(r.err, 42, "the handler's error travels back");
	cr_assert_eq(r.len, 0);

	cr_assert_eq(forward_wait(a, 2, 9, "x", 5000, &r), 0);
	cr_assert_eq(r.err, SRV_PEER_EREMOTE);

	cr_assert_eq(forward_wait(a, 2, 3, "slow", 200, &r), 0);
	cr_assert_eq(r.err, SRV_PEER_ETIMEDOUT);

	cr_assert_eq(forward_wait(a, 3, 1, "x", 5000, &r), 0);
	cr_assert_eq(r.err, SRV_PEER_ECLUSTER);

	cr_assert_eq(forward_wait(a, 4, 1, "x", 5000, &r), 0);
	cr_assert_eq(r.err, SRV_PEER_ENOHANDLER);

	cr_assert_eq(srv_peer_forward(a->peer, 9, 1, NULL, 0, 1000, fwd_cb, &r), SRV_PEER_ENOPEER);
	cr_assert_eq(srv_peer_forward(a->peer, 2, 1, NULL, 0, 0, fwd_cb, &r), SRV_PEER_EINVAL);

	char url[64];
	url_of(dead_port(), url, sizeof url);
	const char *urls[1] = {url};
	cr_assert_eq(srv_peer_add(a->peer, 5, urls, 1), 0);
	cr_assert_eq(forward_wait(a, 5, 1, "x", 5000, &r), 0);
	cr_assert_eq(r.err, SRV_PEER_EUNAVAILABLE);
	teardown();
	CHECK_NO_LEAKS();
}

/* Start a forward without waiting for it. */
static void forward_start(tnode *a, uint64_t to, uint32_t kind, const char *in, fwd_result *r)
{
	memset(r, 0, sizeof *r);
	cr_assert_eq(srv_peer_forward(a->peer, to, kind, (const uint8_t *)in, strlen(in), 20000,
	                              fwd_cb, r),
	             0);
}

/* A heartbeat from @a to @b, sent and waited for (the @nth message @b gets). */
static void heartbeat_arrives(tnode *a, tnode *b, size_t nth)
{
	raft_message m = msg_make(RAFT_MSG_HEARTBEAT, a->id, b->id, nth);
	srv_peer_send(a->peer, &m, 1);
	cr_assert(wait_msgs(b, nth, WAIT_MS), "heartbeat %zu arrived", nth);
}

/*
 * Forwards answered later (a HashKV's whole-store pass) leave the peer port's
 * threads, which also receive raft messages, free: with three of them held
 * (more than the port's two threads), a heartbeat still arrives; then each
 * answer, success or error, reaches its caller.
 */
Test(server_peer, a_deferred_forward_leaves_the_port_free_for_raft)
{
	tnode *a = node_new(1, 7, true), *b = node_new(2, 7, true);
	link_to(a, b);
	link_to(b, a);
	heartbeat_arrives(a, b, 1); /* the raft stream is up */
	pthread_mutex_lock(&g_mu);
	g_gate_open = false;
	g_deferred = 0;
	g_later_done = 0;
	pthread_mutex_unlock(&g_mu);
	fwd_result r1, r2, r3;
	forward_start(a, 2, 4, "abc", &r1);
	forward_start(a, 2, 4, "xy", &r2);
	forward_start(a, 2, 5, "e", &r3);
	cr_assert(wait_int(&g_deferred, 3, WAIT_MS), "all three handlers deferred");
	heartbeat_arrives(a, b, 2);
	pthread_mutex_lock(&g_mu);
	cr_assert_eq(r1.done + r2.done + r3.done, 0, "no answer before the gate opens");
	g_gate_open = true;
	pthread_cond_broadcast(&g_cv);
	pthread_mutex_unlock(&g_mu);
	cr_assert(wait_int(&r1.done, 1, WAIT_MS));
	cr_assert(wait_int(&r2.done, 1, WAIT_MS));
	cr_assert(wait_int(&r3.done, 1, WAIT_MS));
	check_echo(&r1, "abc", 1);
	check_echo(&r2, "xy", 1);
	cr_assert_eq(r3.err, 43, "a deferred error travels back");
	cr_assert_eq(r3.len, 0);
	cr_assert(wait_int(&g_later_done, 3, WAIT_MS)); /* the jobs freed what they held */
	teardown();
	CHECK_NO_LEAKS();
}

Test(server_peer, fetch_skips_a_dead_first_url)
{
	tnode *b = node_new(2, 7, true);
	char dead[64], live[64];
	url_of(dead_port(), dead, sizeof dead);
	url_of(b->port, live, sizeof live);
	const char *urls[2] = {dead, live};
	uint8_t *out = NULL;
	size_t outlen = 0;
	cr_assert_eq(srv_peer_fetch(urls, 2, NULL, 1, (const uint8_t *)"hello", 5, 5000, &out, &outlen),
	             0);
	cr_assert_eq(outlen, 13);
	cr_assert_eq(memcmp(out, "olleh", 5), 0);
	uint64_t from;
	memcpy(&from, out + 5, 8);
	cr_assert_eq(from, 0);
	free(out);

	cr_assert_eq(srv_peer_fetch(urls, 1, NULL, 1, NULL, 0, 2000, &out, &outlen),
	             SRV_PEER_EUNAVAILABLE);
	cr_assert_null(out);
	cr_assert_eq(srv_peer_fetch(&urls[1], 1, NULL, 2, NULL, 0, 2000, &out, &outlen), 42);
	const char *bad[1] = {"ftp://127.0.0.1:1"};
	cr_assert_eq(srv_peer_fetch(bad, 1, NULL, 1, NULL, 0, 2000, &out, &outlen), SRV_PEER_EINVAL);
	teardown();
	CHECK_NO_LEAKS();
}

Test(server_peer, idle_transport_wakes_for_a_new_peer_and_stops_at_once)
{
	/* Without peers the transport thread sleeps on its condition variable
	 * (it takes no turn as the process's poller); a peer added later must
	 * wake it, and stop must too. */
	tnode *a = node_new(1, 7, true), *b = node_new(2, 7, true);
	sleep_ms(100); /* well past the transport's 10 ms sweep */
	link_to(a, b);
	raft_message m = msg_make(RAFT_MSG_HEARTBEAT, 1, 2, 1);
	srv_peer_send(a->peer, &m, 1);
	cr_assert(wait_msgs(b, 1, WAIT_MS), "the first message after an idle start arrives");
	/* The next write starts only once the transport thread has taken the first
	 * one's completion from its queue: it is awake. */
	srv_peer_send(a->peer, &m, 1);
	cr_assert(wait_msgs(b, 2, WAIT_MS), "a second write after an idle start arrives");
	/* Removed again: idle once its stream has ended; re-added: it wakes. */
	srv_peer_remove(a->peer, 2);
	sleep_ms(100);
	link_to(a, b);
	bool arrived = false;
	for (int i = 0; i < 200 && !arrived; i++) {
		srv_peer_send(a->peer, &m, 1);
		arrived = wait_msgs(b, 3, 50);
	}
	cr_assert(arrived, "a peer re-added to an idle transport is served");
	size_t have = n_msgs(b);
	srv_peer_send(a->peer, &m, 1);
	cr_assert(wait_msgs(b, have + 1, WAIT_MS), "and its next write too");
	srv_peer_remove(a->peer, 2);
	sleep_ms(100);
	/* Stop of an idle transport must wake its thread: if it did not, this
	 * would hang and the suite's timeout fail the test. */
	node_unserve(a);
	srv_peer_stop(a->peer);
	a->peer = NULL;
	teardown();
	CHECK_NO_LEAKS();
}

Test(server_peer, remove_and_readd)
{
	tnode *a = node_new(1, 7, true), *b = node_new(2, 7, true);
	link_to(a, b);
	raft_message m = msg_make(RAFT_MSG_HEARTBEAT, 1, 2, 1);
	srv_peer_send(a->peer, &m, 1);
	cr_assert(wait_msgs(b, 1, WAIT_MS));
	srv_peer_remove(a->peer, 2);
	srv_peer_remove(a->peer, 2);
	srv_peer_send(a->peer, &m, 1); /* dropped silently */
	link_to(a, b);
	link_to(a, b); /* replace with the same URL */
	bool arrived = false;
	for (int i = 0; i < 200 && !arrived; i++) {
		srv_peer_send(a->peer, &m, 1);
		arrived = wait_msgs(b, 2, 50);
	}
	cr_assert(arrived);
	const char *none[1] = {""};
	cr_assert_eq(srv_peer_add(a->peer, 2, none, 1), SRV_PEER_EINVAL);
	cr_assert_eq(srv_peer_add(a->peer, 0, none, 0), SRV_PEER_EINVAL);
	teardown();
	CHECK_NO_LEAKS();
}

static void fwd_count_cb(void *cbctx, int err, const uint8_t *out, size_t outlen)
{
	int *n = cbctx;
	pthread_mutex_lock(&g_mu);
	(*n)++;
	pthread_cond_broadcast(&g_cv);
	pthread_mutex_unlock(&g_mu);
}

Test(server_peer, stop_with_traffic_in_flight_leaks_nothing)
{
	tnode *a = node_new(1, 7, true), *b = node_new(2, 7, true);
	link_to(a, b);
	char url[64];
	url_of(dead_port(), url, sizeof url);
	const char *urls[1] = {url};
	cr_assert_eq(srv_peer_add(a->peer, 3, urls, 1), 0);

	raft_message s = msg_make(RAFT_MSG_SNAPSHOT, 1, 2, 1);
	s.snapshot = snap_make((size_t)8 << 20, true);
	srv_peer_send(a->peer, &s, 1);
	msg_release(&s);
	static int fwd_done;
	fwd_done = 0;
	for (int i = 0; i < 4; i++)
		cr_assert_eq(
		        srv_peer_forward(a->peer, 2, 3, NULL, 0, 5000, fwd_count_cb, &fwd_done), 0);
	cr_assert_eq(srv_peer_forward(a->peer, 3, 1, NULL, 0, 5000, fwd_count_cb, &fwd_done), 0);
	raft_message ms[200];
	for (int k = 0; k < 10; k++) {
		for (int i = 0; i < 200; i++) {
			ms[i] = msg_make(RAFT_MSG_APPEND, 1, (uint64_t)(2 + i % 2), (uint64_t)i);
			ms[i].n_entries = 1;
			ms[i].entries = calloc(1, sizeof(raft_entry));
			ms[i].entries[0].data = raft_blob_new(1000);
			memset(ms[i].entries[0].data->data, 'y', 1000);
		}
		srv_peer_send(a->peer, ms, 200);
		for (int i = 0; i < 200; i++)
			msg_release(&ms[i]);
	}
	node_unserve(a);
	srv_peer_stop(a->peer);
	a->peer = NULL;
	cr_assert_eq(fwd_done, 5, "every forward callback ran exactly once");
	teardown();
	CHECK_NO_LEAKS();
	/* b's server is still up; teardown stops it while its streams are open. */
	teardown();
	CHECK_NO_LEAKS();
}

Test(server_peer, codec_refuses_what_raft_cannot_take)
{
	Metastore__RaftMessage pm = METASTORE__RAFT_MESSAGE__INIT;
	raft_message *m = NULL;
	pm.type = RAFT__MSG_COUNT;
	cr_assert_eq(srv_peer_codec_decode(&pm, NULL, &m), SRV_PEER_EPROTO);
	cr_assert_null(m);

	pm.type = RAFT_MSG_APPEND;
	Metastore__RaftEntry e = METASTORE__RAFT_ENTRY__INIT, *ep = &e;
	e.type = 7;
	pm.n_entries = 1;
	pm.entries = &ep;
	cr_assert_eq(srv_peer_codec_decode(&pm, NULL, &m), SRV_PEER_EPROTO);

	e.type = RAFT_ENTRY_NORMAL;
	Metastore__RaftSnapshotMeta sm = METASTORE__RAFT_SNAPSHOT_META__INIT;
	Metastore__RaftConfState cs = METASTORE__RAFT_CONF_STATE__INIT;
	uint64_t ids[RAFT_MAX_NODES + 1] = {0};
	cs.n_voters = RAFT_MAX_NODES + 1;
	cs.voters = ids;
	sm.conf = &cs;
	pm.snapshot = &sm;
	cr_assert_eq(srv_peer_codec_decode(&pm, NULL, &m), SRV_PEER_EPROTO);
	cs.n_voters = RAFT_MAX_NODES;
	cr_assert_eq(srv_peer_codec_decode(&pm, NULL, &m), 0);
	cr_assert_eq(m->n_entries, 1);
	cr_assert_null(m->entries[0].data);
	cr_assert_null(m->snapshot->data);
	cr_assert_eq(m->snapshot->conf.n_voters, RAFT_MAX_NODES);
	srv_peer_msg_free(m);

	raft_message big = msg_make(RAFT_MSG_SNAPSHOT, 1, 2, 1);
	big.snapshot = snap_make(0, false);
	big.snapshot->conf.n_learners = RAFT_MAX_NODES + 1;
	uint8_t *buf = NULL;
	size_t len;
	cr_assert_eq(srv_peer_codec_encode(&big, 0, &buf, &len), SRV_PEER_EINVAL);
	cr_assert_null(buf);
	msg_release(&big);
	CHECK_NO_LEAKS();
}
