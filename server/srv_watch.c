/*
 * srv_watch.c: the Watch stream and the watch thread (see srv_watch.h).
 * Everything that touches the hub holds hub_mu: the watch thread for commands,
 * catch-up rounds, ticks and queued commits; apply (the node thread) for its
 * fast path, only when nothing is queued ahead and hub_mu is free (trylock),
 * so it never waits. Other threads only queue work under sw->mu and signal.
 */
#include "server/srv_watch.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "etcdcompat/ec_errors.h"
#include "etcdcompat/ec_watch.h"
#include "rpc.pb-c.h"
#include "server/srv_app.h"
#include "server/srv_auth.h"
#include "server/srv_handlers.h"
#include "server/srv_log.h"
#include "storage/st_mvcc.h"

#define DEFAULT_PROGRESS_MS ((int64_t)10 * 60 * 1000) /* etcd: 10 min */
#define POLL_MS 100 /* the longest the thread sleeps (leader checks) */
#define NO_LEADER_ELECTIONS 3 /* etcd's maxNoLeaderCnt */

typedef struct wconn wconn;

/* One Watch stream as the watch thread sees it. */
struct wconn {
	srv_watch *sw;
	srv_stream *st;   /* one reference, released when its CLOSE is served */
	ec_wstream *hs;   /* watch thread only */
	bool require_leader;
	bool no_leader_sent;
	wconn *next, *prev; /* open streams (watch thread only) */
};

enum { CMD_OPEN, CMD_MSG, CMD_CLOSE };

typedef struct cmd {
	struct cmd *next;
	int kind;
	wconn *c;
	size_t len;
	uint8_t data[]; /* CMD_MSG: the packed WatchRequest */
} cmd;

typedef struct batch {
	struct batch *next;
	st_events *evs;
} batch;

struct srv_watch {
	srv_watch_config cfg;
	ec_hub *hub;     /* touched only under hub_mu */
	pthread_mutex_t hub_mu; /* the watch thread, or apply's fast path */
	srv_node *node;
	pthread_t thread;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	/* guarded by mu */
	cmd *chead, *ctail;
	batch *bhead, *btail;
	size_t qbytes;
	bool lost; /* events were dropped: the hub must resync */
	bool kick; /* a stream drained: catch-up may go on */
	bool publishing; /* the watch thread holds queued commits not yet published */
	bool stop;
	atomic_uint pending;  /* bumped by every producer (read without mu) */
	atomic_size_t unsynced; /* the hub's unsynced watchers (written under hub_mu) */
	bool events_on;       /* storage stages events (watch thread only) */
	/* watch thread only */
	wconn *conns;
	int64_t no_leader_since; /* ms; 0 while there is a leader */
};

static void wake(srv_watch *sw)
{
	atomic_fetch_add(&sw->pending, 1);
	pthread_cond_signal(&sw->cv);
}

/* ---- producers -------------------------------------------------------------- */

/* storage's events hook, on the node thread: queue, or drop and mark lost. */
static void on_events(void *arg, st_events *evs)
{
	srv_watch *sw = arg;
	size_t sz = evs != NULL ? evs->bytes + evs->n * sizeof(st_kv) : 0;
	pthread_mutex_lock(&sw->mu);
	if (sw->lost) {
		pthread_mutex_unlock(&sw->mu);
		st_events_free(evs);
		return;
	}
	/* The fast path: nothing queued before this commit and the hub free —
	 * publish here, so events leave before the writes' replies (as etcd's
	 * do). Otherwise queue (never wait for the watch thread). */
	if (evs != NULL && sw->bhead == NULL && !sw->publishing &&
	    pthread_mutex_trylock(&sw->hub_mu) == 0) {
		pthread_mutex_unlock(&sw->mu);
		ec_hub_publish(sw->hub, &evs, 1);
		atomic_store(&sw->unsynced, ec_hub_unsynced(sw->hub));
		pthread_mutex_unlock(&sw->hub_mu);
		return;
	}
	batch *b = NULL;
	if (evs != NULL && sw->qbytes + sz <= SRV_WATCH_QUEUE_BYTES)
		b = malloc(sizeof(*b));
	if (b == NULL) {
		sw->lost = true;
		wake(sw);
		pthread_mutex_unlock(&sw->mu);
		st_events_free(evs);
		return;
	}
	b->next = NULL;
	b->evs = evs;
	if (sw->btail != NULL)
		sw->btail->next = b;
	else
		sw->bhead = b;
	sw->btail = b;
	sw->qbytes += sz;
	wake(sw);
	pthread_mutex_unlock(&sw->mu);
}

static void push_cmd(srv_watch *sw, cmd *c)
{
	c->next = NULL;
	pthread_mutex_lock(&sw->mu);
	if (sw->ctail != NULL)
		sw->ctail->next = c;
	else
		sw->chead = c;
	sw->ctail = c;
	wake(sw);
	pthread_mutex_unlock(&sw->mu);
}

/* A command without payload; NULL on out of memory. */
static cmd *new_cmd(int kind, wconn *c, size_t len)
{
	cmd *x = malloc(sizeof(*x) + len);
	if (x == NULL)
		return NULL;
	x->kind = kind;
	x->c = c;
	x->len = len;
	return x;
}

void srv_watch_resync(srv_watch *sw)
{
	if (sw == NULL)
		return;
	pthread_mutex_lock(&sw->mu);
	sw->lost = true;
	wake(sw);
	pthread_mutex_unlock(&sw->mu);
}

/* ---- the stream --------------------------------------------------------------- */

static void conn_recv(srv_stream *st, void *ctx, const ProtobufCMessage *msg)
{
	wconn *c = ctx;
	if (msg == NULL)
		return; /* half-close: the stream stays open, as etcd's does */
	size_t n = protobuf_c_message_get_packed_size(msg);
	cmd *x = new_cmd(CMD_MSG, c, n);
	if (x == NULL) {
		srv_stream_finish(st, EC_INTERNAL);
		return;
	}
	protobuf_c_message_pack(msg, x->data);
	push_cmd(c->sw, x);
}

static void conn_drain(srv_stream *st, void *ctx)
{
	(void)st;
	wconn *c = ctx;
	/* only a stream that held watchers back matters (avoid a wake-up per
	 * response sent) */
	if (atomic_load(&c->sw->unsynced) == 0)
		return;
	pthread_mutex_lock(&c->sw->mu);
	c->sw->kick = true;
	wake(c->sw);
	pthread_mutex_unlock(&c->sw->mu);
}

static void conn_close(srv_stream *st, void *ctx, bool cancelled)
{
	(void)st;
	(void)cancelled;
	wconn *c = ctx;
	cmd *x = new_cmd(CMD_CLOSE, c, 0);
	if (x == NULL) {
		/* cannot tell the thread: keep the stream's memory, lose nothing
		 * else (a reference stays held) */
		srv_log_warn("out of memory closing a watch stream; its memory is kept");
		return;
	}
	push_cmd(c->sw, x);
}

static int sink_send(void *ctx, const uint8_t *p, size_t n)
{
	wconn *c = ctx;
	return srv_stream_send_bytes_held(c->st, p, n);
}

static void sink_flush(void *ctx)
{
	wconn *c = ctx;
	srv_stream_flush(c->st);
}

static size_t sink_queued(void *ctx)
{
	wconn *c = ctx;
	return srv_stream_queued_bytes(c->st);
}

static bool has_leader(srv_watch *sw)
{
	if (sw->node == NULL)
		return false;
	srv_node_status s;
	srv_node_get_status(sw->node, &s);
	return s.lead != 0;
}

void srv_watch_stream(srv_stream *st, const ProtobufCMessage *req)
{
	(void)req;
	srv_app *app = srv_stream_app(st);
	srv_watch *sw = app->watch;
	bool rl = srv_call_require_leader(srv_stream_call(st));
	int refuse = srv_is_learner(app) ? EC_NOT_SUPPORTED_FOR_LEARNER
	             : rl && !has_leader(sw) ? EC_NO_LEADER : EC_OK;
	if (refuse != EC_OK) {
		srv_stream_finish(st, refuse);
		srv_stream_unref(st);
		return;
	}
	wconn *c = calloc(1, sizeof(*c));
	cmd *x = c ? new_cmd(CMD_OPEN, c, 0) : NULL;
	if (x == NULL) {
		free(c);
		srv_stream_finish(st, EC_INTERNAL);
		srv_stream_unref(st);
		return;
	}
	c->sw = sw;
	c->st = st;
	c->require_leader = rl;
	srv_stream_ops ops = {.on_recv = conn_recv, .on_drain = conn_drain, .on_close = conn_close};
	srv_stream_set_ops(st, &ops, c);
	push_cmd(sw, x);
}

/* ---- the watch thread --------------------------------------------------------- */

/* etcd's isWatchPermitted: read on the watched range for the stream's
 * sender (the token it was opened with), checked at each create. Returns
 * false when the watch may be created, else true with etcd's cancel reason
 * (the gRPC status text of the error) in @why. */
static bool watch_refused(wconn *c, const Etcdserverpb__WatchCreateRequest *cr, char *why,
			  size_t cap)
{
	srv_app *app = srv_stream_app(c->st);
	if (app->auth == NULL || !ec_auth_enabled(app->auth))
		return false;
	static const uint8_t zero = 0;
	ec_auth_info ai;
	int err = srv_auth_info(srv_stream_call(c->st), &ai);
	if (err == EC_OK) {
		const uint8_t *key = cr->key.len ? cr->key.data : &zero;
		size_t klen = cr->key.len ? cr->key.len : 1;
		err = ec_auth_check_range(app->auth, &ai, key, klen, cr->range_end.data,
		                          cr->range_end.len);
	}
	if (err == EC_OK)
		return false;
	if (err != EC_INVALID_AUTH_TOKEN && err != EC_AUTH_OLD_REVISION && err != EC_USER_EMPTY)
		err = EC_PERMISSION_DENIED;
	ec_status_string(err, why, cap);
	return true;
}

static void serve_cmd(srv_watch *sw, cmd *x)
{
	wconn *c = x->c;
	switch (x->kind) {
	case CMD_OPEN: {
		ec_wsink sink = {.send = sink_send, .queued = sink_queued, .flush = sink_flush};
		c->hs = ec_hub_stream_open(sw->hub, &sink, c);
		if (c->hs == NULL) {
			srv_stream_finish(c->st, EC_INTERNAL);
			break; /* its CLOSE frees it */
		}
		c->next = sw->conns;
		if (sw->conns != NULL)
			sw->conns->prev = c;
		sw->conns = c;
		break;
	}
	case CMD_MSG: {
		if (c->hs == NULL)
			break;
		Etcdserverpb__WatchRequest *r =
		        etcdserverpb__watch_request__unpack(NULL, x->len, x->data);
		if (r == NULL) {
			srv_stream_finish(c->st, EC_INTERNAL);
			break;
		}
		char why[160];
		if (r->request_union_case == ETCDSERVERPB__WATCH_REQUEST__REQUEST_UNION_CREATE_REQUEST &&
		    watch_refused(c, r->create_request, why, sizeof why))
			ec_hub_refuse(sw->hub, c->hs, why);
		else if (ec_hub_request(sw->hub, c->hs, r) != 0)
			srv_stream_finish(c->st, EC_INTERNAL);
		etcdserverpb__watch_request__free_unpacked(r, NULL);
		break;
	}
	case CMD_CLOSE:
		if (c->hs != NULL) {
			ec_hub_stream_close(sw->hub, c->hs);
			if (c->prev != NULL)
				c->prev->next = c->next;
			else
				sw->conns = c->next;
			if (c->next != NULL)
				c->next->prev = c->prev;
		}
		srv_stream_unref(c->st);
		free(c);
		break;
	}
	free(x);
}

/* etcd's monitorLeader: without a leader for NO_LEADER_ELECTIONS election
 * timeouts, require-leader streams end with "etcdserver: no leader". */
static void check_leader(srv_watch *sw, int64_t now)
{
	if (has_leader(sw)) {
		sw->no_leader_since = 0;
		return;
	}
	if (sw->no_leader_since == 0) {
		sw->no_leader_since = now;
		return;
	}
	if (now - sw->no_leader_since < NO_LEADER_ELECTIONS * sw->cfg.election_ms)
		return;
	for (wconn *c = sw->conns; c != NULL; c = c->next)
		if (c->require_leader && !c->no_leader_sent) {
			c->no_leader_sent = true;
			srv_stream_finish(c->st, EC_NO_LEADER);
		}
}

/* Hand every queued commit to the hub in one publish (one response per
 * watcher for all of them), then free the queue. */
static void publish(srv_watch *sw, batch *bs)
{
	size_t n = 0;
	for (batch *b = bs; b != NULL; b = b->next)
		n++;
	if (n == 0)
		return;
	st_events **evs = malloc(n * sizeof(*evs));
	size_t i = 0;
	for (batch *b = bs, *nb; b != NULL; b = nb) {
		nb = b->next;
		if (evs != NULL)
			evs[i++] = b->evs;
		else
			st_events_free(b->evs);
		free(b);
	}
	if (evs == NULL) {
		ec_hub_resync(sw->hub); /* they are in history */
		return;
	}
	ec_hub_publish(sw->hub, evs, n);
	free(evs);
}

static void *watch_main(void *arg)
{
	pthread_setname_np(pthread_self(), "ms-watch");
	srv_watch *sw = arg;
	int64_t next_progress = srv_mono_ms() + sw->cfg.progress_ms;
	for (;;) {
		pthread_mutex_lock(&sw->mu);
		while (!sw->stop && sw->chead == NULL && sw->bhead == NULL && !sw->kick &&
		       !(sw->lost && ec_hub_watchers(sw->hub) > 0)) {
			int64_t now = srv_mono_ms();
			if (now >= next_progress)
				break;
			int64_t wait = next_progress - now;
			if (wait > POLL_MS)
				wait = POLL_MS;
			struct timespec ts;
			clock_gettime(CLOCK_REALTIME, &ts);
			ts.tv_nsec += (long)(wait % 1000) * 1000000L;
			ts.tv_sec += (time_t)(wait / 1000) + ts.tv_nsec / 1000000000L;
			ts.tv_nsec %= 1000000000L;
			if (pthread_cond_timedwait(&sw->cv, &sw->mu, &ts) == ETIMEDOUT)
				break;
		}
		if (sw->stop) {
			pthread_mutex_unlock(&sw->mu);
			break;
		}
		cmd *cmds = sw->chead;
		batch *bs = sw->bhead;
		sw->chead = sw->ctail = NULL;
		sw->bhead = sw->btail = NULL;
		sw->qbytes = 0;
		sw->kick = false;
		bool resync = false;
		if (sw->lost && (ec_hub_watchers(sw->hub) > 0 || cmds != NULL)) {
			sw->lost = false;
			resync = true;
		}
		/* until these are published the node thread must queue too */
		sw->publishing = bs != NULL;
		pthread_mutex_unlock(&sw->mu);

		pthread_mutex_lock(&sw->hub_mu);
		publish(sw, bs);
		if (bs != NULL) {
			pthread_mutex_lock(&sw->mu);
			sw->publishing = false;
			pthread_mutex_unlock(&sw->mu);
		}
		if (resync)
			ec_hub_resync(sw->hub);
		for (cmd *x = cmds, *nx; x != NULL; x = nx) {
			nx = x->next;
			serve_cmd(sw, x);
		}
		/* events cost the write path nothing while nobody watches; turned
		 * back on, the hub first catches up with what it did not see */
		bool want = ec_hub_watchers(sw->hub) > 0;
		if (want != sw->events_on) {
			st_mvcc_events_enable(sw->cfg.db, want);
			sw->events_on = want;
			if (want)
				ec_hub_resync(sw->hub);
		}
		pthread_mutex_unlock(&sw->hub_mu);
		/* catch up while nothing new is waiting, one round at a time so
		 * that apply can publish between rounds */
		unsigned seen = atomic_load(&sw->pending);
		for (bool more = true; more && atomic_load(&sw->pending) == seen;) {
			pthread_mutex_lock(&sw->hub_mu);
			more = ec_hub_step(sw->hub);
			pthread_mutex_unlock(&sw->hub_mu);
		}
		int64_t now = srv_mono_ms();
		pthread_mutex_lock(&sw->hub_mu);
		atomic_store(&sw->unsynced, ec_hub_unsynced(sw->hub));
		if (now >= next_progress) {
			ec_hub_progress_tick(sw->hub);
			next_progress = now + sw->cfg.progress_ms;
		}
		pthread_mutex_unlock(&sw->hub_mu);
		check_leader(sw, now);
	}
	return NULL;
}

static ec_hdr hub_hdr(void *arg)
{
	srv_watch *sw = arg;
	ec_hdr h = {0};
	if (sw->node != NULL)
		h = srv_node_hdr(sw->node);
	return h;
}

int srv_watch_start(const srv_watch_config *cfg, srv_watch **out)
{
	srv_watch *sw = calloc(1, sizeof(*sw));
	if (sw == NULL)
		return -1;
	sw->cfg = *cfg;
	if (sw->cfg.progress_ms <= 0)
		sw->cfg.progress_ms = DEFAULT_PROGRESS_MS;
	if (sw->cfg.election_ms <= 0)
		sw->cfg.election_ms = 1000;
	ec_hub_config hc = {
	        .db = cfg->db,
	        /* etcd fragments at max-request-bytes plus gRPC's overhead
	         * allowance (v3rpc: maxRequestBytes + grpcOverheadBytes) */
	        .max_request_bytes = (cfg->max_request_bytes ? cfg->max_request_bytes
	                                                     : SRV_DEFAULT_MAX_REQUEST_BYTES) +
	                             SRV_GRPC_OVERHEAD_BYTES,
	        .hdr = hub_hdr,
	        .hdr_arg = sw,
	};
	if (ec_hub_new(&hc, &sw->hub) != 0) {
		free(sw);
		return -1;
	}
	pthread_mutex_init(&sw->mu, NULL);
	pthread_mutex_init(&sw->hub_mu, NULL);
	pthread_cond_init(&sw->cv, NULL);
	atomic_init(&sw->pending, 0);
	atomic_init(&sw->unsynced, 0);
	if (pthread_create(&sw->thread, NULL, watch_main, sw) != 0) {
		ec_hub_free(sw->hub);
		pthread_mutex_destroy(&sw->mu);
		pthread_mutex_destroy(&sw->hub_mu);
		pthread_cond_destroy(&sw->cv);
		free(sw);
		return -1;
	}
	st_mvcc_set_events(cfg->db, on_events, sw);
	st_mvcc_events_enable(cfg->db, false); /* until the first watcher */
	*out = sw;
	return 0;
}

void srv_watch_set_node(srv_watch *sw, srv_node *node)
{
	pthread_mutex_lock(&sw->mu);
	sw->node = node;
	pthread_mutex_unlock(&sw->mu);
}

void srv_watch_stop(srv_watch *sw)
{
	if (sw == NULL)
		return;
	st_mvcc_set_events(sw->cfg.db, NULL, NULL);
	pthread_mutex_lock(&sw->mu);
	sw->stop = true;
	pthread_cond_signal(&sw->cv);
	pthread_mutex_unlock(&sw->mu);
	pthread_join(sw->thread, NULL);
	for (batch *b = sw->bhead, *nb; b != NULL; b = nb) {
		nb = b->next;
		st_events_free(b->evs);
		free(b);
	}
	for (cmd *x = sw->chead, *nx; x != NULL; x = nx) {
		nx = x->next;
		if (x->kind == CMD_CLOSE || x->kind == CMD_OPEN) {
			/* a stream whose close was not served: release it now */
			if (x->kind == CMD_CLOSE) {
				if (x->c->hs != NULL)
					ec_hub_stream_close(sw->hub, x->c->hs);
				srv_stream_unref(x->c->st);
				free(x->c);
			}
		}
		free(x);
	}
	ec_hub_free(sw->hub);
	pthread_mutex_destroy(&sw->mu);
	pthread_mutex_destroy(&sw->hub_mu);
	pthread_cond_destroy(&sw->cv);
	free(sw);
}
