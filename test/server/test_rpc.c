/*
 * test_rpc.c: the gRPC runtime (server/srv_rpc.c) against a real C-core client
 * (tc_client.c) over 127.0.0.1 with port 0.
 *
 * The tests serve their own method table: unary echo methods (replying on the
 * CQ thread, from other threads, failing with etcd errors, reading metadata), a
 * bidi method driven by commands carried in WatchCreateRequest.key ("echo",
 * "burst", "finish", and for held sends "hold", "flush", "hfinish", "mix"),
 * and a server-streaming method paced by on_drain. The real etcd table is
 * checked too. Every test stops the server, threads and channels it started
 * (see teardown()).
 */
#include <criterion/criterion.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <grpc/grpc.h>
#include <grpc/support/time.h>

#include "etcdcompat/ec_errors.h"
#include "rpc.pb-c.h"
#include "v3election.pb-c.h"
#include "v3lock.pb-c.h"
#include "server/srv_methods.h"
#include "server/srv_rpc.h"
#include "tc_client.h"

#define M_INLINE "/test.Echo/Inline"
#define M_DEFERRED "/test.Echo/Deferred"
#define M_FAIL "/test.Echo/Fail"
#define M_META "/test.Echo/Meta"
#define M_SIZE "/test.Echo/Size"
#define M_NULL "/test.Echo/Null"
#define M_BIDI "/test.Stream/Bidi"
#define M_SERVER "/test.Stream/Server"

#define BURST_BASE 1000000

/* ---- app state (one process per test) --------------------------------------- */

static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t g_cv = PTHREAD_COND_INITIALIZER;
static int g_opens, g_closes, g_closes_cancelled, g_deferred_started, g_drains_after_close;
/* bidi commands handled; srv_stream_queued_bytes after the last "hold" */
static int g_cmds;
static size_t g_queued_at_hold;
static bool g_hold;          /* bidi_open keeps an extra reference in g_held */
static srv_stream *g_held;
static pthread_t g_bursts[8];
static int g_nbursts;

static srv_rpc *g_rpc;
static tc_conn *g_conn;
static int g_port;

static int counter(int *p)
{
	pthread_mutex_lock(&g_mu);
	int v = *p;
	pthread_mutex_unlock(&g_mu);
	return v;
}

static void bump(int *p)
{
	pthread_mutex_lock(&g_mu);
	(*p)++;
	pthread_cond_broadcast(&g_cv);
	pthread_mutex_unlock(&g_mu);
}

/* Wait up to @ms for *@p >= @want. */
static bool wait_count(int *p, int want, int ms)
{
	struct timespec d;
	clock_gettime(CLOCK_REALTIME, &d);
	d.tv_sec += ms / 1000;
	d.tv_nsec += (long)(ms % 1000) * 1000000L;
	if (d.tv_nsec >= 1000000000L) {
		d.tv_sec++;
		d.tv_nsec -= 1000000000L;
	}
	pthread_mutex_lock(&g_mu);
	while (*p < want)
		if (pthread_cond_timedwait(&g_cv, &g_mu, &d) != 0)
			break;
	bool ok = *p >= want;
	pthread_mutex_unlock(&g_mu);
	return ok;
}

static int64_t now_ms(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

static void sleep_ms(int ms)
{
	struct timespec t = {ms / 1000, (long)(ms % 1000) * 1000000L};
	nanosleep(&t, NULL);
}

/* ---- deferred replies: a small pool that completes calls off the CQ thread -- */

typedef struct job {
	struct job *next;
	srv_call *call;
	int64_t id, delay_ms;
} job;

#define POOL_THREADS 8
static pthread_t g_pool[POOL_THREADS];
static bool g_pool_started, g_pool_stop;
static job *g_jobs;

static void *pool_main(void *arg)
{
	(void)arg;
	for (;;) {
		pthread_mutex_lock(&g_mu);
		while (g_jobs == NULL && !g_pool_stop)
			pthread_cond_wait(&g_cv, &g_mu);
		job *j = g_jobs;
		if (j != NULL)
			g_jobs = j->next;
		pthread_mutex_unlock(&g_mu);
		if (j == NULL)
			return NULL;
		if (j->delay_ms > 0)
			sleep_ms((int)j->delay_ms);
		Etcdserverpb__LeaseGrantResponse resp = ETCDSERVERPB__LEASE_GRANT_RESPONSE__INIT;
		resp.id = j->id;
		resp.ttl = j->delay_ms;
		srv_call_reply(j->call, &resp.base);
		free(j);
	}
}

static void pool_start(void)
{
	g_pool_stop = false;
	for (int i = 0; i < POOL_THREADS; i++)
		pthread_create(&g_pool[i], NULL, pool_main, NULL);
	g_pool_started = true;
}

static void pool_stop(void)
{
	if (!g_pool_started)
		return;
	pthread_mutex_lock(&g_mu);
	g_pool_stop = true;
	pthread_cond_broadcast(&g_cv);
	pthread_mutex_unlock(&g_mu);
	for (int i = 0; i < POOL_THREADS; i++)
		pthread_join(g_pool[i], NULL);
	g_pool_started = false;
}

/* ---- unary handlers --------------------------------------------------------- */

static void h_inline(srv_call *call, const ProtobufCMessage *req)
{
	const Etcdserverpb__LeaseGrantRequest *r = (const void *)req;
	Etcdserverpb__LeaseGrantResponse resp = ETCDSERVERPB__LEASE_GRANT_RESPONSE__INIT;
	resp.id = r->id;
	resp.ttl = r->ttl;
	cr_assert_eq(srv_call_app(call), (void *)&g_rpc);
	srv_call_reply(call, &resp.base);
}

static void h_deferred(srv_call *call, const ProtobufCMessage *req)
{
	const Etcdserverpb__LeaseGrantRequest *r = (const void *)req;
	job *j = calloc(1, sizeof *j);
	j->call = call;
	j->id = r->id;
	j->delay_ms = r->ttl;
	pthread_mutex_lock(&g_mu);
	j->next = g_jobs;
	g_jobs = j;
	g_deferred_started++;
	pthread_cond_broadcast(&g_cv);
	pthread_mutex_unlock(&g_mu);
}

static void h_fail(srv_call *call, const ProtobufCMessage *req)
{
	srv_call_fail(call, (int)((const Etcdserverpb__LeaseGrantRequest *)req)->id);
}

static void h_meta(srv_call *call, const ProtobufCMessage *req)
{
	Etcdserverpb__LeaseGrantResponse resp = ETCDSERVERPB__LEASE_GRANT_RESPONSE__INIT;
	char tok[64] = "";
	size_t len = 0;
	const char *v = srv_call_metadata(call, "token", &len);
	if (v != NULL && len < sizeof tok)
		memcpy(tok, v, len);
	resp.id = srv_call_require_leader(call) ? 1 : 0;
	resp.ttl = srv_call_remaining_ms(call);
	resp.error = tok;
	cr_assert_str_eq(srv_call_method(call)->name, M_META);
	srv_call_reply(call, &resp.base);
}

static void h_size(srv_call *call, const ProtobufCMessage *req)
{
	const Etcdserverpb__PutRequest *r = (const void *)req;
	Etcdserverpb__ResponseHeader hdr = ETCDSERVERPB__RESPONSE_HEADER__INIT;
	Etcdserverpb__PutResponse resp = ETCDSERVERPB__PUT_RESPONSE__INIT;
	hdr.revision = (int64_t)r->value.len;
	resp.header = &hdr;
	srv_call_reply(call, &resp.base);
}

/* ---- bidi handler: commands in WatchCreateRequest.key ----------------------- */

typedef struct burst {
	srv_stream *st;
	int64_t n;
} burst;

static void *burst_main(void *arg)
{
	burst *b = arg;
	Etcdserverpb__WatchResponse resp = ETCDSERVERPB__WATCH_RESPONSE__INIT;
	for (int64_t i = 0; i < b->n; i++) {
		resp.watch_id = BURST_BASE + i;
		if (srv_stream_send(b->st, &resp.base) != 0)
			break;
		while (srv_stream_queued_bytes(b->st) > 64 * 1024 && !srv_stream_closed(b->st))
			sleep_ms(1); /* a producer noticing a slow client */
	}
	srv_stream_unref(b->st);
	free(b);
	return NULL;
}

/* Queue a WatchResponse with @id as held bytes on @st; the send's result. */
static int send_held_id(srv_stream *st, int64_t id)
{
	Etcdserverpb__WatchResponse resp = ETCDSERVERPB__WATCH_RESPONSE__INIT;
	resp.watch_id = id;
	uint8_t buf[32];
	size_t n = protobuf_c_message_get_packed_size(&resp.base);
	cr_assert_leq(n, sizeof buf);
	protobuf_c_message_pack(&resp.base, buf);
	return srv_stream_send_bytes_held(st, buf, n);
}

static void bidi_recv(srv_stream *st, void *ctx, const ProtobufCMessage *msg)
{
	(void)ctx;
	if (msg == NULL) { /* client half-closed: end the stream OK */
		srv_stream_finish(st, EC_OK);
		return;
	}
	const Etcdserverpb__WatchRequest *w = (const void *)msg;
	if (w->request_union_case != ETCDSERVERPB__WATCH_REQUEST__REQUEST_UNION_CREATE_REQUEST)
		return;
	const Etcdserverpb__WatchCreateRequest *c = w->create_request;
	char cmd[16] = "";
	if (c->key.len < sizeof cmd)
		memcpy(cmd, c->key.data, c->key.len);
	Etcdserverpb__WatchResponse resp = ETCDSERVERPB__WATCH_RESPONSE__INIT;
	if (strcmp(cmd, "echo") == 0) {
		resp.watch_id = c->start_revision;
		cr_assert_eq(srv_stream_send(st, &resp.base), 0);
	} else if (strcmp(cmd, "burst") == 0) {
		burst *b = malloc(sizeof *b);
		b->st = st;
		b->n = c->start_revision;
		srv_stream_ref(st);
		pthread_mutex_lock(&g_mu);
		cr_assert_lt(g_nbursts, 8);
		pthread_create(&g_bursts[g_nbursts++], NULL, burst_main, b);
		pthread_mutex_unlock(&g_mu);
	} else if (strcmp(cmd, "finish") == 0) {
		for (int i = 0; i < 50; i++) {
			resp.watch_id = i;
			srv_stream_send(st, &resp.base);
		}
		srv_stream_finish(st, (int)c->start_revision);
		/* Already finishing: later sends are refused. */
		cr_assert_eq(srv_stream_send(st, &resp.base), -1);
	} else if (strcmp(cmd, "hold") == 0) { /* one held message, id = arg */
		cr_assert_eq(send_held_id(st, c->start_revision), 0);
		pthread_mutex_lock(&g_mu);
		g_queued_at_hold = srv_stream_queued_bytes(st);
		pthread_mutex_unlock(&g_mu);
	} else if (strcmp(cmd, "flush") == 0) {
		srv_stream_flush(st);
	} else if (strcmp(cmd, "hfinish") == 0) { /* finish with error arg, no flush */
		srv_stream_finish(st, (int)c->start_revision);
		cr_assert_eq(send_held_id(st, 1), -1);
	} else if (strcmp(cmd, "mix") == 0) { /* ids 1..arg, every third not held */
		for (int64_t i = 1; i <= c->start_revision; i++) {
			if (i % 3 == 0) {
				resp.watch_id = i;
				cr_assert_eq(srv_stream_send(st, &resp.base), 0);
			} else {
				cr_assert_eq(send_held_id(st, i), 0);
			}
		}
		srv_stream_flush(st);
	}
	bump(&g_cmds);
}

static void bidi_close(srv_stream *st, void *ctx, bool cancelled)
{
	(void)ctx;
	pthread_mutex_lock(&g_mu);
	if (cancelled)
		g_closes_cancelled++;
	pthread_mutex_unlock(&g_mu);
	bump(&g_closes);
	srv_stream_unref(st); /* the open handler's reference */
}

static void bidi_open(srv_stream *st, const ProtobufCMessage *req)
{
	static const srv_stream_ops ops = {.on_recv = bidi_recv, .on_close = bidi_close};
	cr_assert_null(req);
	cr_assert_eq(srv_stream_app(st), (void *)&g_rpc);
	srv_stream_set_ops(st, &ops, NULL);
	pthread_mutex_lock(&g_mu);
	if (g_hold && g_held == NULL) {
		srv_stream_ref(st);
		g_held = st;
	}
	pthread_mutex_unlock(&g_mu);
	bump(&g_opens);
}

/* ---- server-streaming handler: request id = chunks, ttl = chunk bytes -------- */

typedef struct chunker {
	int64_t total, next;
	size_t size;
	uint8_t *buf;
	bool closed;
} chunker;

static void ss_next(srv_stream *st, chunker *ck)
{
	if (ck->next == ck->total) {
		srv_stream_finish(st, EC_OK);
		return;
	}
	Etcdserverpb__SnapshotResponse resp = ETCDSERVERPB__SNAPSHOT_RESPONSE__INIT;
	memset(ck->buf, (int)(ck->next & 0xff), ck->size);
	resp.remaining_bytes = (uint64_t)(ck->total - ck->next - 1);
	resp.blob.data = ck->buf;
	resp.blob.len = ck->size;
	ck->next++;
	srv_stream_send(st, &resp.base);
}

static void ss_drain(srv_stream *st, void *ctx)
{
	chunker *ck = ctx;
	if (ck->closed)
		bump(&g_drains_after_close);
	ss_next(st, ck);
}

static void ss_close(srv_stream *st, void *ctx, bool cancelled)
{
	chunker *ck = ctx;
	ck->closed = true;
	free(ck->buf);
	free(ck);
	pthread_mutex_lock(&g_mu);
	if (cancelled)
		g_closes_cancelled++;
	pthread_mutex_unlock(&g_mu);
	bump(&g_closes);
	srv_stream_unref(st);
}

static void ss_open(srv_stream *st, const ProtobufCMessage *req)
{
	static const srv_stream_ops ops = {.on_drain = ss_drain, .on_close = ss_close};
	const Etcdserverpb__LeaseGrantRequest *r = (const void *)req;
	chunker *ck = calloc(1, sizeof *ck);
	ck->total = r->id;
	ck->size = (size_t)r->ttl;
	ck->buf = malloc(ck->size > 0 ? ck->size : 1);
	srv_stream_set_ops(st, &ops, ck);
	bump(&g_opens);
	ss_next(st, ck);
}

/* ---- the test table ------------------------------------------------------- */

#define LG_REQ &etcdserverpb__lease_grant_request__descriptor
#define LG_RESP &etcdserverpb__lease_grant_response__descriptor
static const srv_method test_table[] = {
	{M_INLINE, SRV_UNARY, LG_REQ, LG_RESP, h_inline, NULL},
	{M_DEFERRED, SRV_UNARY, LG_REQ, LG_RESP, h_deferred, NULL},
	{M_FAIL, SRV_UNARY, LG_REQ, LG_RESP, h_fail, NULL},
	{M_META, SRV_UNARY, LG_REQ, LG_RESP, h_meta, NULL},
	{M_SIZE, SRV_UNARY, &etcdserverpb__put_request__descriptor,
	 &etcdserverpb__put_response__descriptor, h_size, NULL},
	{M_NULL, SRV_UNARY, LG_REQ, LG_RESP, NULL, NULL},
	{M_BIDI, SRV_BIDI, &etcdserverpb__watch_request__descriptor,
	 &etcdserverpb__watch_response__descriptor, NULL, bidi_open},
	{M_SERVER, SRV_SERVER_STREAM, LG_REQ, &etcdserverpb__snapshot_response__descriptor, NULL,
	 ss_open},
};
#define TEST_TABLE_N (sizeof test_table / sizeof test_table[0])
/* Requests armed per worker: served rows plus the generic one. */
#define ARMED_PER_WORKER (TEST_TABLE_N - 1 + 1)

static void start_with(srv_rpc_config *cfg, const srv_method *tab, size_t n)
{
	static const char *const addrs[] = {"127.0.0.1:0"};
	srv_rpc_config dflt = {0};
	if (cfg == NULL)
		cfg = &dflt;
	if (cfg->listen == NULL) {
		cfg->listen = addrs;
		cfg->n_listen = 1;
	}
	char err[256] = "";
	int rc = srv_rpc_start(cfg, tab, n, &g_rpc, &g_rpc, err, sizeof err);
	cr_assert_eq(rc, 0, "srv_rpc_start: %s", err);
	g_port = srv_rpc_port(g_rpc, 0);
	cr_assert_gt(g_port, 0);
	g_conn = tc_connect(g_port, NULL);
	pool_start();
}

static void start(srv_rpc_config *cfg)
{
	start_with(cfg, test_table, TEST_TABLE_N);
}

static void teardown(void)
{
	tc_close(g_conn);
	g_conn = NULL;
	if (g_rpc != NULL)
		srv_rpc_shutdown(g_rpc);
	g_rpc = NULL;
	pool_stop();
	for (int i = 0; i < g_nbursts; i++)
		pthread_join(g_bursts[i], NULL);
	g_nbursts = 0;
}

TestSuite(server_rpc, .fini = teardown, .timeout = 60);

/* ---- client helpers ------------------------------------------------------- */

static int lease_call(tc_conn *c, const char *method, int64_t id, int64_t ttl,
		      Etcdserverpb__LeaseGrantResponse **out, tc_status *st, int timeout_ms,
		      const grpc_metadata *md, size_t nmd)
{
	Etcdserverpb__LeaseGrantRequest req = ETCDSERVERPB__LEASE_GRANT_REQUEST__INIT;
	req.id = id;
	req.ttl = ttl;
	ProtobufCMessage *resp = NULL;
	int rc = tc_unary(c, method, &req.base, NULL, 0, LG_RESP, &resp, st, timeout_ms, md, nmd);
	*out = (Etcdserverpb__LeaseGrantResponse *)resp;
	return rc;
}

static void watch_cmd(tc_stream *s, const char *cmd, int64_t arg)
{
	Etcdserverpb__WatchCreateRequest c = ETCDSERVERPB__WATCH_CREATE_REQUEST__INIT;
	c.key.data = (uint8_t *)cmd;
	c.key.len = strlen(cmd);
	c.start_revision = arg;
	Etcdserverpb__WatchRequest w = ETCDSERVERPB__WATCH_REQUEST__INIT;
	w.request_union_case = ETCDSERVERPB__WATCH_REQUEST__REQUEST_UNION_CREATE_REQUEST;
	w.create_request = &c;
	cr_assert_eq(tc_stream_send(s, &w.base), 0, "send %s", cmd);
}

/* The watch_id of the next message within @ms; -1 at the end or on timeout. */
static int64_t recv_watch_id_within(tc_stream *s, int ms, bool *eof)
{
	ProtobufCMessage *m = tc_stream_recv(s, &etcdserverpb__watch_response__descriptor, ms, eof);
	if (m == NULL)
		return -1;
	int64_t id = ((Etcdserverpb__WatchResponse *)m)->watch_id;
	protobuf_c_message_free_unpacked(m, NULL);
	return id;
}

static int64_t recv_watch_id(tc_stream *s, bool *eof)
{
	return recv_watch_id_within(s, 10000, eof);
}

/* ---- unary ---------------------------------------------------------------- */

Test(server_rpc, unary_reply_on_cq_thread)
{
	start(NULL);
	for (int i = 0; i < 200; i++) {
		Etcdserverpb__LeaseGrantResponse *r;
		tc_status st;
		cr_assert_eq(lease_call(g_conn, M_INLINE, i, 1000 + i, &r, &st, 5000, NULL, 0), 0,
			     "call %d: %d %s", i, st.code, st.msg);
		cr_assert_eq(r->id, i);
		cr_assert_eq(r->ttl, 1000 + i);
		protobuf_c_message_free_unpacked(&r->base, NULL);
	}
}

Test(server_rpc, unary_reply_from_other_thread)
{
	start(NULL);
	for (int i = 0; i < 50; i++) {
		Etcdserverpb__LeaseGrantResponse *r;
		tc_status st;
		cr_assert_eq(lease_call(g_conn, M_DEFERRED, i, i % 3, &r, &st, 5000, NULL, 0), 0,
			     "call %d: %d %s", i, st.code, st.msg);
		cr_assert_eq(r->id, i);
		protobuf_c_message_free_unpacked(&r->base, NULL);
	}
}

#define STRESS_THREADS 4
#define STRESS_CALLS 300
static atomic_int g_stress_bad;

static void *stress_main(void *arg)
{
	int t = (int)(intptr_t)arg;
	tc_conn *c = tc_connect(g_port, NULL);
	for (int i = 0; i < STRESS_CALLS; i++) {
		Etcdserverpb__LeaseGrantResponse *r;
		tc_status st;
		int64_t id = t * 100000 + i;
		const char *m = (i % 2) ? M_DEFERRED : M_INLINE;
		if (lease_call(c, m, id, 0, &r, &st, 10000, NULL, 0) != 0 || r->id != id)
			atomic_fetch_add(&g_stress_bad, 1);
		if (r != NULL)
			protobuf_c_message_free_unpacked(&r->base, NULL);
	}
	tc_close(c);
	return NULL;
}

Test(server_rpc, inproc_calls_complete_on_a_non_polling_queue)
{
	start(NULL);
	grpc_completion_queue *cqs[2] = {srv_rpc_cq_create(false), srv_rpc_cq_create(true)};
	for (int k = 0; k < 2; k++) {
		cr_assert_not_null(cqs[k]);
		grpc_channel *ch = srv_rpc_inproc_channel(g_rpc);
		cr_assert_not_null(ch);
		for (int i = 0; i < 20; i++) {
			Etcdserverpb__LeaseGrantRequest req = ETCDSERVERPB__LEASE_GRANT_REQUEST__INIT;
			req.id = 100 * k + i;
			req.ttl = 7;
			ProtobufCMessage *resp = NULL;
			tc_status st;
			cr_assert_eq(tc_unary_via(ch, cqs[k], M_INLINE, &req.base, NULL, 0, LG_RESP,
						  &resp, &st, 5000, NULL, 0),
				     0, "queue %d call %d: %d %s", k, i, st.code, st.msg);
			cr_assert_eq(((Etcdserverpb__LeaseGrantResponse *)resp)->id, req.id);
			protobuf_c_message_free_unpacked(resp, NULL);
		}
		grpc_channel_destroy(ch);
		grpc_completion_queue_shutdown(cqs[k]);
		gpr_timespec dl = gpr_inf_future(GPR_CLOCK_REALTIME);
		cr_assert_eq(grpc_completion_queue_next(cqs[k], dl, NULL).type, GRPC_QUEUE_SHUTDOWN);
		grpc_completion_queue_destroy(cqs[k]);
	}
}

Test(server_rpc, no_polling_server_is_driven_by_another_servers_threads)
{
	/* g_rpc (polling workers) is the process's poller; a second server whose
	 * workers do not poll still takes connections and serves calls. */
	start(NULL);
	static const char *const addrs[] = {"127.0.0.1:0"};
	srv_rpc_config cfg = {0};
	cfg.listen = addrs;
	cfg.n_listen = 1;
	cfg.no_polling = true;
	srv_rpc *quiet = NULL;
	char err[256] = "";
	cr_assert_eq(srv_rpc_start(&cfg, test_table, TEST_TABLE_N, &g_rpc, &quiet, err, sizeof err),
		     0, "srv_rpc_start: %s", err);
	tc_conn *c = tc_connect(srv_rpc_port(quiet, 0), NULL);
	for (int i = 0; i < 50; i++) {
		Etcdserverpb__LeaseGrantResponse *r;
		tc_status st;
		const char *m = (i % 2) ? M_DEFERRED : M_INLINE;
		cr_assert_eq(lease_call(c, m, i, 3, &r, &st, 5000, NULL, 0), 0, "call %d: %d %s", i,
			     st.code, st.msg);
		cr_assert_eq(r->id, i);
		protobuf_c_message_free_unpacked(&r->base, NULL);
	}
	tc_stream *s = tc_stream_open(c, M_BIDI, 10000, NULL, 0);
	watch_cmd(s, "echo", 41);
	bool eof = false;
	cr_assert_eq(recv_watch_id(s, &eof), 41, "a stream on it works both ways");
	tc_stream_cancel(s);
	tc_stream_free(s);
	tc_close(c);
	srv_rpc_shutdown(quiet);
}

Test(server_rpc, unary_concurrent_clients_mixed_threads)
{
	start(NULL);
	pthread_t th[STRESS_THREADS];
	for (int i = 0; i < STRESS_THREADS; i++)
		pthread_create(&th[i], NULL, stress_main, (void *)(intptr_t)i);
	for (int i = 0; i < STRESS_THREADS; i++)
		pthread_join(th[i], NULL);
	cr_assert_eq(atomic_load(&g_stress_bad), 0);
}

Test(server_rpc, fail_gives_exact_etcd_code_and_message)
{
	start(NULL);
	const int errs[] = {EC_COMPACTED, EC_LEASE_NOT_FOUND, EC_NO_LEADER, EC_REQUEST_TOO_LARGE,
			    EC_INVALID_AUTH_TOKEN, EC_PERMISSION_DENIED, EC_CORRUPT};
	for (size_t i = 0; i < sizeof errs / sizeof errs[0]; i++) {
		Etcdserverpb__LeaseGrantResponse *r;
		tc_status st;
		cr_assert_neq(lease_call(g_conn, M_FAIL, errs[i], 0, &r, &st, 5000, NULL, 0), 0);
		cr_assert_null(r);
		cr_assert_eq((int)st.code, ec_grpc_code(errs[i]), "err %d", errs[i]);
		cr_assert_str_eq(st.msg, ec_strerror(errs[i]));
	}
	/* Spot-check against etcd's own table. */
	tc_status st;
	Etcdserverpb__LeaseGrantResponse *r;
	lease_call(g_conn, M_FAIL, EC_COMPACTED, 0, &r, &st, 5000, NULL, 0);
	cr_assert_eq(st.code, GRPC_STATUS_OUT_OF_RANGE);
	cr_assert_str_eq(st.msg, "etcdserver: mvcc: required revision has been compacted");
}

Test(server_rpc, malformed_request_is_invalid_argument)
{
	start(NULL);
	static const uint8_t junk[] = {0xff, 0xff, 0xff, 0xff};
	tc_status st;
	ProtobufCMessage *r;
	cr_assert_neq(tc_unary(g_conn, M_INLINE, NULL, junk, sizeof junk, LG_RESP, &r, &st, 5000,
			       NULL, 0),
		      0);
	cr_assert_eq(st.code, GRPC_STATUS_INVALID_ARGUMENT);
	cr_assert_str_eq(st.msg, ec_strerror(EC_BAD_REQUEST));
}

Test(server_rpc, metadata_and_deadline)
{
	start(NULL);
	grpc_metadata md[2];
	memset(md, 0, sizeof md);
	md[0].key = grpc_slice_from_static_string("hasleader");
	md[0].value = grpc_slice_from_static_string("true");
	md[1].key = grpc_slice_from_static_string("token");
	md[1].value = grpc_slice_from_static_string("tok.abc");
	Etcdserverpb__LeaseGrantResponse *r;
	tc_status st;
	cr_assert_eq(lease_call(g_conn, M_META, 0, 0, &r, &st, 5000, md, 2), 0, "%s", st.msg);
	cr_assert_eq(r->id, 1);
	cr_assert_str_eq(r->error, "tok.abc");
	cr_assert(r->ttl > 3000 && r->ttl <= 5000, "remaining %lld", (long long)r->ttl);
	protobuf_c_message_free_unpacked(&r->base, NULL);

	cr_assert_eq(lease_call(g_conn, M_META, 0, 0, &r, &st, 0, NULL, 0), 0, "%s", st.msg);
	cr_assert_eq(r->id, 0);
	cr_assert_str_eq(r->error, "");
	cr_assert_eq(r->ttl, -1);
	protobuf_c_message_free_unpacked(&r->base, NULL);
}

/* ---- UNIMPLEMENTED ------------------------------------------------------------ */

Test(server_rpc, null_handler_row_is_unimplemented_at_once)
{
	start(NULL);
	Etcdserverpb__LeaseGrantResponse *r;
	tc_status st;
	int64_t t0 = now_ms();
	cr_assert_neq(lease_call(g_conn, M_NULL, 1, 1, &r, &st, 10000, NULL, 0), 0);
	cr_assert_eq(st.code, GRPC_STATUS_UNIMPLEMENTED);
	cr_assert_str_eq(st.msg, ec_strerror(EC_UNIMPLEMENTED));
	cr_assert_lt(now_ms() - t0, 2000);
}

Test(server_rpc, unknown_method_is_unimplemented_at_once)
{
	start(NULL);
	Etcdserverpb__LeaseGrantResponse *r;
	tc_status st;
	int64_t t0 = now_ms();
	for (int i = 0; i < 20; i++) { /* more than one armed generic request's worth */
		cr_assert_neq(lease_call(g_conn, "/etcdserverpb.Nope/Nope", 1, 1, &r, &st, 10000,
					 NULL, 0),
			      0);
		cr_assert_eq(st.code, GRPC_STATUS_UNIMPLEMENTED);
	}
	cr_assert_lt(now_ms() - t0, 3000);
	/* A stream on an unknown method too. */
	tc_stream *s = tc_stream_open(g_conn, "/test.Stream/Missing", 10000, NULL, 0);
	tc_status fin;
	cr_assert_eq(tc_stream_status(s, &fin, 5000), 0);
	cr_assert_eq(fin.code, GRPC_STATUS_UNIMPLEMENTED);
	tc_stream_free(s);
}

Test(server_rpc, etcd_table_shape_and_plugging)
{
	srv_method tab[SRV_M__COUNT];
	srv_etcd_methods(tab);
	/* etcd 3.4's 39 and 3.5's AuthStatus; v3election's 5 and v3lock's 2 */
	cr_assert_eq(SRV_M__COUNT, 47);
	int streams = 0;
	for (int i = 0; i < SRV_M__COUNT; i++) {
		cr_assert_null(tab[i].unary);
		cr_assert_null(tab[i].stream);
		cr_assert_not_null(tab[i].req);
		cr_assert_not_null(tab[i].resp);
		cr_assert_eq(srv_etcd_method_find(tab[i].name), i);
		if (tab[i].kind != SRV_UNARY)
			streams++;
	}
	cr_assert_eq(streams, 4);
	cr_assert_str_eq(tab[SRV_M_ELECTION_OBSERVE].name, "/v3electionpb.Election/Observe");
	cr_assert_eq(tab[SRV_M_ELECTION_OBSERVE].kind, SRV_SERVER_STREAM);
	cr_assert_str_eq(tab[SRV_M_LOCK_UNLOCK].name, "/v3lockpb.Lock/Unlock");
	cr_assert_eq(tab[SRV_M_LOCK_UNLOCK].req, &v3lockpb__unlock_request__descriptor);
	cr_assert_str_eq(tab[SRV_M_KV_RANGE].name, "/etcdserverpb.KV/Range");
	cr_assert_eq(tab[SRV_M_KV_RANGE].req, &etcdserverpb__range_request__descriptor);
	cr_assert_eq(tab[SRV_M_WATCH].kind, SRV_BIDI);
	cr_assert_eq(tab[SRV_M_LEASE_KEEP_ALIVE].kind, SRV_BIDI);
	cr_assert_eq(tab[SRV_M_SNAPSHOT].kind, SRV_SERVER_STREAM);
	cr_assert_str_eq(tab[SRV_M_HASH_KV].name, "/etcdserverpb.Maintenance/HashKV");
	cr_assert_str_eq(tab[SRV_M_ROLE_REVOKE_PERMISSION].name,
			 "/etcdserverpb.Auth/RoleRevokePermission");
	cr_assert_eq(srv_etcd_method_find("/etcdserverpb.KV/Nope"), -1);
	/* The proto's service descriptors list the same methods. */
	const ProtobufCServiceDescriptor *svcs[] = {
		&etcdserverpb__kv__descriptor,          &etcdserverpb__watch__descriptor,
		&etcdserverpb__lease__descriptor,       &etcdserverpb__cluster__descriptor,
		&etcdserverpb__maintenance__descriptor, &etcdserverpb__auth__descriptor,
		&v3electionpb__election__descriptor,    &v3lockpb__lock__descriptor};
	unsigned total = 0;
	for (size_t i = 0; i < sizeof svcs / sizeof svcs[0]; i++) {
		for (unsigned j = 0; j < svcs[i]->n_methods; j++) {
			char name[128];
			snprintf(name, sizeof name, "/%s/%s", svcs[i]->name, svcs[i]->methods[j].name);
			int id = srv_etcd_method_find(name);
			cr_assert_geq(id, 0, "%s missing", name);
			cr_assert_eq(tab[id].req, svcs[i]->methods[j].input, "%s", name);
			cr_assert_eq(tab[id].resp, svcs[i]->methods[j].output, "%s", name);
			total++;
		}
	}
	cr_assert_eq(total, SRV_M__COUNT);

	/* Plug one handler in: Range served (by an echo), Put and Watch unimplemented. */
	tab[SRV_M_KV_RANGE].unary = h_size; /* any handler: replies a PutResponse-shaped header */
	tab[SRV_M_KV_RANGE].resp = &etcdserverpb__put_response__descriptor;
	tab[SRV_M_KV_RANGE].req = &etcdserverpb__put_request__descriptor;
	start_with(NULL, tab, SRV_M__COUNT);
	Etcdserverpb__PutRequest put = ETCDSERVERPB__PUT_REQUEST__INIT;
	tc_status st;
	ProtobufCMessage *r = NULL;
	cr_assert_eq(tc_unary(g_conn, "/etcdserverpb.KV/Range", &put.base, NULL, 0,
			      &etcdserverpb__put_response__descriptor, &r, &st, 5000, NULL, 0),
		     0, "%d %s", st.code, st.msg);
	protobuf_c_message_free_unpacked(r, NULL);
	cr_assert_neq(tc_unary(g_conn, "/etcdserverpb.KV/Put", &put.base, NULL, 0,
			       &etcdserverpb__put_response__descriptor, &r, &st, 5000, NULL, 0),
		      0);
	cr_assert_eq(st.code, GRPC_STATUS_UNIMPLEMENTED);
	tc_stream *s = tc_stream_open(g_conn, "/etcdserverpb.Watch/Watch", 10000, NULL, 0);
	tc_status fin;
	cr_assert_eq(tc_stream_status(s, &fin, 5000), 0);
	cr_assert_eq(fin.code, GRPC_STATUS_UNIMPLEMENTED);
	tc_stream_free(s);
}

Test(server_rpc, bad_tables_and_addresses_are_refused)
{
	static const char *const addrs[] = {"127.0.0.1:0"};
	srv_rpc_config cfg = {.listen = addrs, .n_listen = 1};
	srv_rpc *rpc = NULL;
	char err[256];
	srv_method dup[2] = {test_table[0], test_table[0]};
	cr_assert_eq(srv_rpc_start(&cfg, dup, 2, NULL, &rpc, err, sizeof err), -1);
	cr_assert(strstr(err, "twice") != NULL, "%s", err);
	srv_method mismatch = test_table[0];
	mismatch.kind = SRV_BIDI;
	cr_assert_eq(srv_rpc_start(&cfg, &mismatch, 1, NULL, &rpc, err, sizeof err), -1);
	cr_assert(strstr(err, "kind") != NULL, "%s", err);
	srv_method noname = test_table[0];
	noname.name = "test.Echo/Inline";
	cr_assert_eq(srv_rpc_start(&cfg, &noname, 1, NULL, &rpc, err, sizeof err), -1);
	cr_assert_null(rpc);

	/* Two addresses, one with etcd's URL form; then a port already in use. */
	static const char *const two[] = {"127.0.0.1:0", "http://127.0.0.1:0"};
	srv_rpc_config c2 = {.listen = two, .n_listen = 2};
	start_with(&c2, test_table, TEST_TABLE_N);
	int p2 = srv_rpc_port(g_rpc, 1);
	cr_assert_gt(p2, 0);
	cr_assert_neq(p2, g_port);
	cr_assert_eq(srv_rpc_port(g_rpc, 2), 0);
	tc_conn *c = tc_connect(p2, NULL);
	Etcdserverpb__LeaseGrantResponse *r;
	tc_status st;
	cr_assert_eq(lease_call(c, M_INLINE, 7, 7, &r, &st, 5000, NULL, 0), 0, "%s", st.msg);
	protobuf_c_message_free_unpacked(&r->base, NULL);
	tc_close(c);

	char busy[64];
	snprintf(busy, sizeof busy, "127.0.0.1:%d", g_port);
	const char *const clash[] = {"127.0.0.1:0", busy};
	srv_rpc_config c3 = {.listen = clash, .n_listen = 2};
	cr_assert_eq(srv_rpc_start(&c3, test_table, TEST_TABLE_N, NULL, &rpc, err, sizeof err), -1);
	cr_assert(strstr(err, "cannot listen on") != NULL, "%s", err);
	cr_assert_null(rpc);
}

/* ---- size limits ---------------------------------------------------------- */

static int put_of_size(tc_conn *c, size_t n, tc_status *st, int64_t *echoed)
{
	uint8_t *v = calloc(1, n);
	Etcdserverpb__PutRequest put = ETCDSERVERPB__PUT_REQUEST__INIT;
	put.key.data = (uint8_t *)"k";
	put.key.len = 1;
	put.value.data = v;
	put.value.len = n;
	ProtobufCMessage *r = NULL;
	int rc = tc_unary(c, M_SIZE, &put.base, NULL, 0, &etcdserverpb__put_response__descriptor,
			  &r, st, 10000, NULL, 0);
	if (r != NULL) {
		*echoed = ((Etcdserverpb__PutResponse *)r)->header->revision;
		protobuf_c_message_free_unpacked(r, NULL);
	}
	free(v);
	return rc;
}

Test(server_rpc, default_max_request_is_etcds)
{
	start(NULL);
	cr_assert_eq(srv_rpc_max_request_bytes(g_rpc), (size_t)1572864);
	/* 2 MiB: over 1.5 MiB but under 1.5 MiB + 512 KiB overhead → gRPC accepts;
	 * the app's proposal check would reject it with "request is too large". */
	tc_status st;
	int64_t n = 0;
	cr_assert_eq(put_of_size(g_conn, 1572864 + 400 * 1024, &st, &n), 0, "%d %s", st.code,
		     st.msg);
	cr_assert_eq(n, 1572864 + 400 * 1024);
	cr_assert_neq(put_of_size(g_conn, 1572864 + 512 * 1024 + 10, &st, &n), 0);
	cr_assert_eq(st.code, GRPC_STATUS_RESOURCE_EXHAUSTED, "%d %s", st.code, st.msg);
}

Test(server_rpc, oversized_message_rejected_by_grpc)
{
	srv_rpc_config cfg = {.max_request_bytes = 1024};
	start(&cfg);
	cr_assert_eq(srv_rpc_max_request_bytes(g_rpc), (size_t)1024);
	tc_status st;
	int64_t n = 0;
	cr_assert_eq(put_of_size(g_conn, 1024 + 500 * 1024, &st, &n), 0, "%d %s", st.code, st.msg);
	cr_assert_neq(put_of_size(g_conn, 1024 + 512 * 1024 + 100, &st, &n), 0);
	cr_assert_eq(st.code, GRPC_STATUS_RESOURCE_EXHAUSTED, "%d %s", st.code, st.msg);
	/* The server is still fine afterwards. */
	cr_assert_eq(put_of_size(g_conn, 10, &st, &n), 0, "%d %s", st.code, st.msg);
	cr_assert_eq(n, 10);

	/* On a stream too. */
	tc_stream *s = tc_stream_open(g_conn, M_BIDI, 10000, NULL, 0);
	size_t big = 1024 + 512 * 1024 + 100;
	uint8_t *junk = calloc(1, big);
	tc_stream_send_raw(s, junk, big);
	free(junk);
	tc_status fin;
	cr_assert_eq(tc_stream_status(s, &fin, 5000), 0);
	cr_assert_eq(fin.code, GRPC_STATUS_RESOURCE_EXHAUSTED, "%d %s", fin.code, fin.msg);
	tc_stream_free(s);
}

/* ---- streams -------------------------------------------------------------- */

#define ECHOES 1000
#define BURSTS 2000

static void *echo_sender(void *arg)
{
	tc_stream *s = arg;
	for (int i = 0; i < ECHOES; i++)
		watch_cmd(s, "echo", i);
	return NULL;
}

Test(server_rpc, bidi_many_messages_both_ways_with_sends_from_another_thread)
{
	start(NULL);
	tc_stream *s = tc_stream_open(g_conn, M_BIDI, 30000, NULL, 0);
	watch_cmd(s, "burst", BURSTS);
	pthread_t th;
	pthread_create(&th, NULL, echo_sender, s); /* client sends while it receives */
	int64_t next_echo = 0, next_burst = BURST_BASE;
	for (int i = 0; i < ECHOES + BURSTS; i++) {
		bool eof;
		int64_t id = recv_watch_id(s, &eof);
		cr_assert_neq(id, -1, "message %d missing (eof %d)", i, eof);
		if (id >= BURST_BASE) {
			cr_assert_eq(id, next_burst, "burst out of order");
			next_burst++;
		} else {
			cr_assert_eq(id, next_echo, "echo out of order");
			next_echo++;
		}
	}
	pthread_join(th, NULL);
	cr_assert_eq(next_echo, ECHOES);
	cr_assert_eq(next_burst, BURST_BASE + BURSTS);
	/* Half-close: the app finishes OK. */
	cr_assert_eq(tc_stream_close_send(s), 0);
	bool eof = false;
	cr_assert_eq(recv_watch_id(s, &eof), -1);
	cr_assert(eof);
	tc_status fin;
	cr_assert_eq(tc_stream_status(s, &fin, 5000), 0);
	cr_assert_eq(fin.code, GRPC_STATUS_OK, "%d %s", fin.code, fin.msg);
	cr_assert(wait_count(&g_closes, 1, 5000));
	cr_assert_eq(counter(&g_closes_cancelled), 0);
	tc_stream_free(s);
}

Test(server_rpc, bidi_client_cancel_mid_stream_app_holds_stream)
{
	g_hold = true;
	start(NULL);
	size_t idle = srv_rpc_live_calls(g_rpc);
	cr_assert_eq(idle, 2 * ARMED_PER_WORKER);
	tc_stream *s = tc_stream_open(g_conn, M_BIDI, 30000, NULL, 0);
	for (int i = 0; i < 10; i++) {
		watch_cmd(s, "echo", i);
		cr_assert_eq(recv_watch_id(s, NULL), i);
	}
	watch_cmd(s, "burst", 1000000); /* a server thread is sending when we cancel */
	for (int i = 0; i < 5; i++)
		cr_assert_geq(recv_watch_id(s, NULL), BURST_BASE);
	tc_stream_cancel(s);
	cr_assert(wait_count(&g_closes, 1, 5000), "on_close not called");
	cr_assert_eq(counter(&g_closes_cancelled), 1);
	/* The app still holds the stream: every call on it is safe and refused. */
	pthread_mutex_lock(&g_mu);
	srv_stream *held = g_held;
	g_held = NULL;
	pthread_mutex_unlock(&g_mu);
	cr_assert_not_null(held);
	cr_assert(srv_stream_closed(held));
	Etcdserverpb__WatchResponse resp = ETCDSERVERPB__WATCH_RESPONSE__INIT;
	cr_assert_eq(srv_stream_send(held, &resp.base), -1);
	srv_stream_finish(held, EC_OK); /* ignored */
	for (int i = 0; i < 200 && srv_stream_queued_bytes(held) != 0; i++)
		sleep_ms(5); /* the send in flight at close returns soon */
	cr_assert_eq(srv_stream_queued_bytes(held), 0);
	cr_assert_str_eq(srv_call_method(srv_stream_call(held))->name, M_BIDI);
	srv_stream_unref(held);
	tc_stream_free(s);
	/* Once the burst thread lets go, the stream is freed. */
	pthread_join(g_bursts[0], NULL);
	g_nbursts = 0;
	int64_t t0 = now_ms();
	while (srv_rpc_live_calls(g_rpc) != idle && now_ms() - t0 < 5000)
		sleep_ms(5);
	/* The stream is gone; its replacement request is armed in its place. */
	cr_assert_eq(srv_rpc_live_calls(g_rpc), idle);
}

Test(server_rpc, bidi_server_finishes_with_error_after_queued_messages)
{
	start(NULL);
	tc_stream *s = tc_stream_open(g_conn, M_BIDI, 30000, NULL, 0);
	watch_cmd(s, "finish", EC_COMPACTED);
	for (int i = 0; i < 50; i++)
		cr_assert_eq(recv_watch_id(s, NULL), i);
	bool eof = false;
	cr_assert_eq(recv_watch_id(s, &eof), -1);
	cr_assert(eof);
	tc_status fin;
	cr_assert_eq(tc_stream_status(s, &fin, 5000), 0);
	cr_assert_eq(fin.code, GRPC_STATUS_OUT_OF_RANGE);
	cr_assert_str_eq(fin.msg, "etcdserver: mvcc: required revision has been compacted");
	cr_assert(wait_count(&g_closes, 1, 5000));
	cr_assert_eq(counter(&g_closes_cancelled), 0);
	tc_stream_free(s);
}

/* ---- held sends ------------------------------------------------------------ */

/* How long a held message is given to (wrongly) reach the client. */
#define HELD_WAIT_MS 300

/* Wait until the server has handled @n bidi commands in all. */
static void wait_cmds(int n)
{
	cr_assert(wait_count(&g_cmds, n, 5000), "server handled %d of %d commands",
		  counter(&g_cmds), n);
}

/* Nothing reaches the client within HELD_WAIT_MS (the receive stays
 * outstanding: the next receive gets the next message). */
static void expect_nothing(tc_stream *s, const char *what)
{
	bool eof = false;
	int64_t id = recv_watch_id_within(s, HELD_WAIT_MS, &eof);
	cr_assert_eq(id, -1, "%s: message %lld arrived", what, (long long)id);
	cr_assert_not(eof, "%s: the stream ended", what);
}

/* The next messages are @from..@to in order, each within @ms. */
static void expect_ids_within(tc_stream *s, int64_t from, int64_t to, int ms)
{
	for (int64_t i = from; i <= to; i++) {
		bool eof = false;
		int64_t id = recv_watch_id_within(s, ms, &eof);
		cr_assert_eq(id, i, "got message %lld (eof %d), want %lld", (long long)id, eof,
			     (long long)i);
	}
}

static void expect_ids(tc_stream *s, int64_t from, int64_t to)
{
	expect_ids_within(s, from, to, 10000);
}

/*
 * Wait until the server has seen every send of the g_held stream complete,
 * not only the client its messages: a busy stream starts held messages as
 * soon as its send in flight completes, an idle one only when flushed.
 */
static void wait_idle(void)
{
	pthread_mutex_lock(&g_mu);
	srv_stream *st = g_held;
	pthread_mutex_unlock(&g_mu);
	cr_assert_not_null(st, "g_hold not set");
	int64_t t0 = now_ms();
	while (srv_stream_queued_bytes(st) != 0 && now_ms() - t0 < 5000)
		sleep_ms(1);
	cr_assert_eq(srv_stream_queued_bytes(st), 0, "a send never completed");
}

/* A bidi stream that has sent its initial metadata (with an echo of 100: one
 * command handled) and is idle again. Needs g_hold set before start();
 * release_started() drops the reference. */
static tc_stream *open_started(void)
{
	tc_stream *s = tc_stream_open(g_conn, M_BIDI, 30000, NULL, 0);
	watch_cmd(s, "echo", 100);
	expect_ids(s, 100, 100);
	wait_idle();
	return s;
}

static void release_started(void)
{
	pthread_mutex_lock(&g_mu);
	srv_stream *st = g_held;
	g_held = NULL;
	pthread_mutex_unlock(&g_mu);
	srv_stream_unref(st);
}

/* The next thing after the messages so far is end of stream with @code (and
 * @msg unless NULL); then the app's on_close is the @closes-th, not cancelled. */
static void expect_end(tc_stream *s, grpc_status_code code, const char *msg, int closes)
{
	bool eof = false;
	cr_assert_eq(recv_watch_id(s, &eof), -1);
	cr_assert(eof);
	tc_status fin;
	cr_assert_eq(tc_stream_status(s, &fin, 5000), 0);
	cr_assert_eq(fin.code, code, "%d %s", fin.code, fin.msg);
	if (msg != NULL)
		cr_assert_str_eq(fin.msg, msg);
	cr_assert(wait_count(&g_closes, closes, 5000));
	cr_assert_eq(counter(&g_closes_cancelled), 0);
}

Test(server_rpc, held_messages_wait_for_flush_then_arrive_in_order)
{
	g_hold = true;
	start(NULL);
	tc_stream *s = open_started();
	for (int i = 1; i <= 5; i++)
		watch_cmd(s, "hold", i);
	wait_cmds(1 + 5);
	expect_nothing(s, "held, not flushed");
	pthread_mutex_lock(&g_mu);
	size_t q = g_queued_at_hold;
	pthread_mutex_unlock(&g_mu);
	cr_assert_geq(q, 5 * 2, "held bytes not counted as queued (%zu)", q);
	watch_cmd(s, "flush", 0);
	expect_ids(s, 1, 5);
	/* a flush with nothing held is harmless, and the stream goes on */
	watch_cmd(s, "flush", 0);
	watch_cmd(s, "echo", 6);
	expect_ids(s, 6, 6);
	wait_idle();
	watch_cmd(s, "hold", 7);
	wait_cmds(1 + 9);
	expect_nothing(s, "held again after a flush");
	watch_cmd(s, "flush", 0);
	expect_ids(s, 7, 7);
	cr_assert_eq(tc_stream_close_send(s), 0);
	expect_end(s, GRPC_STATUS_OK, NULL, 1);
	release_started();
	tc_stream_free(s);
}

Test(server_rpc, held_messages_go_before_the_status_of_finish)
{
	g_hold = true;
	start(NULL);
	tc_stream *s = open_started();
	for (int i = 1; i <= 5; i++)
		watch_cmd(s, "hold", i);
	wait_cmds(1 + 5);
	expect_nothing(s, "held, not finished");
	watch_cmd(s, "hfinish", EC_COMPACTED);
	expect_ids(s, 1, 5);
	expect_end(s, GRPC_STATUS_OUT_OF_RANGE,
		   "etcdserver: mvcc: required revision has been compacted", 1);
	release_started();
	tc_stream_free(s);
}

Test(server_rpc, a_send_behind_held_messages_keeps_their_order)
{
	g_hold = true;
	start(NULL);
	tc_stream *s = open_started();
	watch_cmd(s, "hold", 1);
	watch_cmd(s, "hold", 2);
	wait_cmds(1 + 2);
	expect_nothing(s, "two held");
	watch_cmd(s, "echo", 3); /* not held: starts the held ones first */
	expect_ids(s, 1, 3);
	wait_idle();
	watch_cmd(s, "hold", 4);
	wait_cmds(1 + 4);
	expect_nothing(s, "one held");
	watch_cmd(s, "echo", 5);
	expect_ids(s, 4, 5);
	/* held and not held on a busy stream, one flush at the end */
	watch_cmd(s, "mix", 300);
	expect_ids(s, 1, 300);
	cr_assert_eq(tc_stream_close_send(s), 0);
	expect_end(s, GRPC_STATUS_OK, NULL, 1);
	release_started();
	tc_stream_free(s);
}

/*
 * The same three ways of starting held messages (flush, a send behind them,
 * finish), each on a stream that has sent nothing yet, so that the first held
 * message goes in the batch with the initial metadata. Four times each: a
 * stall there depends on whether some other write of the connection happens
 * to carry the metadata out.
 */
Test(server_rpc, held_messages_first_on_a_fresh_stream_are_not_stalled)
{
	start(NULL);
	int cmds = 0, closes = 0;
	for (int round = 0; round < 4; round++) {
		for (int how = 0; how < 3; how++) {
			tc_stream *s = tc_stream_open(g_conn, M_BIDI, 30000, NULL, 0);
			watch_cmd(s, "hold", 1);
			watch_cmd(s, "hold", 2);
			cmds += 2;
			wait_cmds(cmds);
			expect_nothing(s, "held on a fresh stream");
			if (how == 0)
				watch_cmd(s, "flush", 0);
			else if (how == 1)
				watch_cmd(s, "echo", 3);
			else
				watch_cmd(s, "hfinish", EC_OK);
			cmds++;
			expect_ids_within(s, 1, how == 1 ? 3 : 2, 3000);
			if (how != 2)
				cr_assert_eq(tc_stream_close_send(s), 0);
			expect_end(s, GRPC_STATUS_OK, NULL, ++closes);
			tc_stream_free(s);
		}
	}
}

static tc_stream *open_server_stream(int64_t chunks, int64_t size)
{
	Etcdserverpb__LeaseGrantRequest req = ETCDSERVERPB__LEASE_GRANT_REQUEST__INIT;
	req.id = chunks;
	req.ttl = size;
	tc_stream *s = tc_stream_open(g_conn, M_SERVER, 30000, NULL, 0);
	cr_assert_eq(tc_stream_send(s, &req.base), 0);
	cr_assert_eq(tc_stream_close_send(s), 0);
	return s;
}

Test(server_rpc, server_stream_paced_by_drain)
{
	start(NULL);
	const int64_t chunks = 200, size = 64 * 1024;
	tc_stream *s = open_server_stream(chunks, size);
	for (int64_t i = 0; i < chunks; i++) {
		ProtobufCMessage *m =
			tc_stream_recv(s, &etcdserverpb__snapshot_response__descriptor, 10000, NULL);
		cr_assert_not_null(m, "chunk %lld", (long long)i);
		Etcdserverpb__SnapshotResponse *r = (void *)m;
		cr_assert_eq(r->remaining_bytes, (uint64_t)(chunks - i - 1));
		cr_assert_eq(r->blob.len, (size_t)size);
		cr_assert_eq(r->blob.data[0], (uint8_t)(i & 0xff));
		cr_assert_eq(r->blob.data[size - 1], (uint8_t)(i & 0xff));
		protobuf_c_message_free_unpacked(m, NULL);
	}
	bool eof = false;
	cr_assert_null(tc_stream_recv(s, &etcdserverpb__snapshot_response__descriptor, 5000, &eof));
	cr_assert(eof);
	tc_status fin;
	cr_assert_eq(tc_stream_status(s, &fin, 5000), 0);
	cr_assert_eq(fin.code, GRPC_STATUS_OK, "%d %s", fin.code, fin.msg);
	cr_assert(wait_count(&g_closes, 1, 5000));
	cr_assert_eq(counter(&g_closes_cancelled), 0);
	tc_stream_free(s);
}

Test(server_rpc, server_stream_client_cancel)
{
	start(NULL);
	tc_stream *s = open_server_stream(1000000, 16 * 1024);
	for (int i = 0; i < 10; i++) {
		ProtobufCMessage *m =
			tc_stream_recv(s, &etcdserverpb__snapshot_response__descriptor, 10000, NULL);
		cr_assert_not_null(m);
		protobuf_c_message_free_unpacked(m, NULL);
	}
	tc_stream_cancel(s);
	cr_assert(wait_count(&g_closes, 1, 5000), "on_close not called");
	cr_assert_eq(counter(&g_closes_cancelled), 1);
	tc_stream_free(s);
	sleep_ms(100);
	cr_assert_eq(counter(&g_drains_after_close), 0);
}

/* ---- keepalive ------------------------------------------------------------ */

/* A client pinging far more often than etcd's 5 s minimum, on an idle stream,
 * must not be sent GOAWAY. */
static bool idle_stream_survives_pings(int idle_ms)
{
	grpc_arg a[4];
	memset(a, 0, sizeof a);
	const char *keys[] = {GRPC_ARG_KEEPALIVE_TIME_MS, GRPC_ARG_KEEPALIVE_TIMEOUT_MS,
			      GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS,
			      GRPC_ARG_HTTP2_MAX_PINGS_WITHOUT_DATA};
	int vals[] = {100, 5000, 1, 0};
	for (int i = 0; i < 4; i++) {
		a[i].type = GRPC_ARG_INTEGER;
		a[i].key = (char *)keys[i];
		a[i].value.integer = vals[i];
	}
	grpc_channel_args args = {4, a};
	tc_conn *c = tc_connect(g_port, &args);
	tc_stream *s = tc_stream_open(c, M_BIDI, 30000, NULL, 0);
	watch_cmd(s, "echo", 1);
	cr_assert_eq(recv_watch_id(s, NULL), 1);
	sleep_ms(idle_ms); /* core clients ping at most once a second: no data meanwhile */
	bool alive = true;
	Etcdserverpb__WatchCreateRequest cr = ETCDSERVERPB__WATCH_CREATE_REQUEST__INIT;
	cr.key.data = (uint8_t *)"echo";
	cr.key.len = 4;
	cr.start_revision = 2;
	Etcdserverpb__WatchRequest w = ETCDSERVERPB__WATCH_REQUEST__INIT;
	w.request_union_case = ETCDSERVERPB__WATCH_REQUEST__REQUEST_UNION_CREATE_REQUEST;
	w.create_request = &cr;
	alive = alive && tc_stream_send(s, &w.base) == 0;
	alive = alive && recv_watch_id(s, NULL) == 2;
	tc_stream_free(s);
	tc_close(c);
	return alive;
}

Test(server_rpc, keepalive_pings_never_goaway)
{
	start(NULL);
	cr_assert(idle_stream_survives_pings(4000), "idle stream killed by the ping policy");
}

/* The same client against a strict policy is cut off: this is what the test
 * above guards against, and shows that it can fail. (Core's default is 2
 * strikes; the first ping after data never counts, so 2 strikes would need a
 * 4th ping right at the end of the idle period: 1 keeps the control stable,
 * and twice the idle time leaves room for pings delayed on a loaded machine.) */
Test(server_rpc, keepalive_strict_policy_would_goaway)
{
	srv_rpc_config cfg = {.max_ping_strikes = 1};
	start(&cfg);
	cr_assert_not(idle_stream_survives_pings(8000), "expected GOAWAY with 1 ping strike");
}

/* ---- shutdown ------------------------------------------------------------- */

#define INFLIGHT 8
static atomic_int g_inflight_ok, g_inflight_bad;

static void *inflight_main(void *arg)
{
	int64_t delay = (int64_t)(intptr_t)arg;
	tc_conn *c = tc_connect(g_port, NULL);
	Etcdserverpb__LeaseGrantResponse *r;
	tc_status st;
	if (lease_call(c, M_DEFERRED, 42, delay, &r, &st, 20000, NULL, 0) == 0 && r->id == 42)
		atomic_fetch_add(&g_inflight_ok, 1);
	else
		atomic_fetch_add(&g_inflight_bad, 1);
	if (r != NULL)
		protobuf_c_message_free_unpacked(&r->base, NULL);
	tc_close(c);
	return NULL;
}

Test(server_rpc, shutdown_lets_inflight_calls_finish)
{
	srv_rpc_config cfg = {.shutdown_grace_ms = 5000};
	start(&cfg);
	pthread_t th[INFLIGHT];
	for (int i = 0; i < INFLIGHT; i++)
		pthread_create(&th[i], NULL, inflight_main, (void *)(intptr_t)400);
	cr_assert(wait_count(&g_deferred_started, INFLIGHT, 5000));
	int64_t t0 = now_ms();
	srv_rpc_shutdown(g_rpc);
	g_rpc = NULL;
	int64_t took = now_ms() - t0;
	for (int i = 0; i < INFLIGHT; i++)
		pthread_join(th[i], NULL);
	cr_assert_eq(atomic_load(&g_inflight_ok), INFLIGHT);
	cr_assert_lt(took, 3000, "shutdown took %lld ms", (long long)took);
	/* New calls are refused once the server is gone. */
	Etcdserverpb__LeaseGrantResponse *r;
	tc_status st;
	cr_assert_neq(lease_call(g_conn, M_INLINE, 1, 1, &r, &st, 2000, NULL, 0), 0);
}

Test(server_rpc, shutdown_cancels_streams_and_waits_for_late_app)
{
	srv_rpc_config cfg = {.shutdown_grace_ms = 200, .shutdown_hard_ms = 5000};
	start(&cfg);
	tc_stream *s[3];
	for (int i = 0; i < 3; i++) {
		s[i] = tc_stream_open(g_conn, M_BIDI, 30000, NULL, 0);
		watch_cmd(s[i], "echo", i);
		cr_assert_eq(recv_watch_id(s[i], NULL), i);
	}
	/* A unary call the app completes only after the grace period. */
	pthread_t th;
	pthread_create(&th, NULL, inflight_main, (void *)(intptr_t)1000);
	cr_assert(wait_count(&g_deferred_started, 1, 5000));
	int64_t t0 = now_ms();
	srv_rpc_shutdown(g_rpc);
	g_rpc = NULL;
	int64_t took = now_ms() - t0;
	pthread_join(th, NULL);
	cr_assert_eq(counter(&g_closes), 3);
	cr_assert_eq(counter(&g_closes_cancelled), 3);
	cr_assert_geq(took, 700, "shutdown returned before the app completed its call");
	cr_assert_lt(took, 4000, "shutdown took %lld ms", (long long)took);
	cr_assert_eq(atomic_load(&g_inflight_ok) + atomic_load(&g_inflight_bad), 1);
	for (int i = 0; i < 3; i++) {
		tc_status fin;
		cr_assert_eq(tc_stream_status(s[i], &fin, 5000), 0);
		cr_assert_neq(fin.code, GRPC_STATUS_OK);
		tc_stream_free(s[i]);
	}
}

Test(server_rpc, shutdown_idle_is_quick)
{
	start(NULL);
	int64_t t0 = now_ms();
	srv_rpc_shutdown(g_rpc);
	g_rpc = NULL;
	cr_assert_lt(now_ms() - t0, 1000);
}

/* Clients that never read, never half-close and never cancel must not keep
 * the server from shutting down (nor make it leak). */
Test(server_rpc, shutdown_with_stuck_clients)
{
	srv_rpc_config cfg = {.shutdown_grace_ms = 200, .shutdown_hard_ms = 3000};
	start(&cfg);
	tc_stream *unknown = tc_stream_open(g_conn, "/test.Stream/Missing", 0, NULL, 0);
	tc_stream *bidi = tc_stream_open(g_conn, M_BIDI, 0, NULL, 0);
	tc_stream *ss = open_server_stream(1000000, 16 * 1024); /* never read */
	cr_assert(wait_count(&g_opens, 2, 5000));
	sleep_ms(200);
	int64_t t0 = now_ms();
	srv_rpc_shutdown(g_rpc);
	g_rpc = NULL;
	int64_t took = now_ms() - t0;
	cr_assert_lt(took, 2500, "shutdown took %lld ms (leaked?)", (long long)took);
	cr_assert_eq(counter(&g_closes), 2);
	tc_stream_free(unknown);
	tc_stream_free(bidi);
	tc_stream_free(ss);
}

/* ---- a real etcd client ---------------------------------------------------- */

extern char **environ;

/* Run etcdctl with @args against g_port; its output into @out. Returns the
 * exit status, or -1 if it ran past 10 s (then it is killed). */
static int run_etcdctl(const char *const *args, size_t nargs, char *out, size_t outlen,
		       int64_t *took_ms)
{
	char ep[64];
	snprintf(ep, sizeof ep, "--endpoints=127.0.0.1:%d", g_port);
	const char *argv[16] = {"etcdctl", ep, "--command-timeout=10s"};
	size_t n = 3;
	for (size_t i = 0; i < nargs && n < 15; i++)
		argv[n++] = args[i];
	argv[n] = NULL;
	int fds[2];
	cr_assert_eq(pipe(fds), 0);
	posix_spawn_file_actions_t fa;
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_adddup2(&fa, fds[1], 1);
	posix_spawn_file_actions_adddup2(&fa, fds[1], 2);
	posix_spawn_file_actions_addclose(&fa, fds[0]);
	pid_t pid;
	int64_t t0 = now_ms();
	int rc = posix_spawnp(&pid, "etcdctl", &fa, NULL, (char *const *)argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	close(fds[1]);
	cr_assert_eq(rc, 0, "spawn etcdctl");
	fcntl(fds[0], F_SETFL, O_NONBLOCK);
	size_t got = 0;
	int status = 0;
	bool done = false;
	while (!done && now_ms() - t0 < 10000) {
		ssize_t r = read(fds[0], out + got, outlen - 1 - got);
		if (r > 0)
			got += (size_t)r;
		if (waitpid(pid, &status, WNOHANG) == pid)
			done = true;
		else
			sleep_ms(10);
	}
	ssize_t r;
	while ((r = read(fds[0], out + got, outlen - 1 - got)) > 0)
		got += (size_t)r;
	out[got] = 0;
	close(fds[0]);
	*took_ms = now_ms() - t0;
	if (!done) {
		kill(pid, SIGKILL);
		waitpid(pid, &status, 0);
		return -1;
	}
	return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

Test(server_rpc, etcdctl_gets_unimplemented_promptly)
{
	if (access("/usr/bin/etcdctl", X_OK) != 0)
		cr_skip_test("etcdctl not installed (Debian package etcd-client)");
	srv_method tab[SRV_M__COUNT];
	srv_etcd_methods(tab);
	start_with(NULL, tab, SRV_M__COUNT);
	static const char *const get[] = {"get", "foo"};
	static const char *const watch[] = {"watch", "foo"};
	static const char *const snap[] = {"snapshot", "save", "/dev/null"};
	struct {
		const char *const *a;
		size_t n;
	} cmds[] = {{get, 2}, {watch, 2}, {snap, 3}};
	for (size_t i = 0; i < 3; i++) {
		char out[8192];
		int64_t took;
		int rc = run_etcdctl(cmds[i].a, cmds[i].n, out, sizeof out, &took);
		cr_assert_neq(rc, 0, "%s", out);
		cr_assert_neq(rc, -1, "etcdctl %s hung: %s", cmds[i].a[0], out);
		cr_assert(strstr(out, "code = Unimplemented") != NULL, "%s", out);
		cr_assert_lt(took, 5000, "etcdctl %s took %lld ms", cmds[i].a[0], (long long)took);
	}
}

/* --max-concurrent-streams: a connection's next stream waits for a free slot.
 * (Limit 2: with a limit of 1, gRPC 1.51's client transport does not start
 * even the first stream of the connection; etcd's e2e suite uses 3.) */
typedef struct opener {
	tc_conn *conn;
	tc_stream *s;
} opener;

static void *open_main(void *arg)
{
	opener *o = arg;
	o->s = tc_stream_open(o->conn, M_BIDI, 30000, NULL, 0);
	watch_cmd(o->s, "echo", 9); /* returns once the stream has started */
	return NULL;
}

Test(server_rpc, max_concurrent_streams_per_connection)
{
	srv_rpc_config cfg = {.max_concurrent_streams = 2};
	start(&cfg);
	tc_stream *s1 = tc_stream_open(g_conn, M_BIDI, 30000, NULL, 0);
	tc_stream *s2 = tc_stream_open(g_conn, M_BIDI, 30000, NULL, 0);
	watch_cmd(s1, "echo", 7);
	watch_cmd(s2, "echo", 8);
	cr_assert_eq(recv_watch_id(s1, NULL), 7);
	cr_assert_eq(recv_watch_id(s2, NULL), 8);
	cr_assert_eq(counter(&g_opens), 2);
	opener o = {.conn = g_conn};
	pthread_t th;
	cr_assert_eq(pthread_create(&th, NULL, open_main, &o), 0);
	/* the third stream of the connection is held back by the client's
	 * transport while two are open (the server's SETTINGS) */
	cr_assert_not(wait_count(&g_opens, 3, 500), "a third stream opened past the limit");
	tc_stream_free(s1); /* frees a slot: the waiting stream starts */
	cr_assert(wait_count(&g_opens, 3, 5000), "the waiting stream did not open");
	pthread_join(th, NULL);
	cr_assert_eq(recv_watch_id(o.s, NULL), 9);
	tc_stream_free(o.s);
	tc_stream_free(s2);
}
