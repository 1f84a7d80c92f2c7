/*
 * Unit tests for ec_watch (the watch hub) over a real RocksDB in a temp dir.
 * The hub is fed the way the server's watch thread feeds it, but on one
 * thread: storage's events hook calls ec_hub_publish directly after each
 * commit, catch-up runs when a test calls ec_hub_step. Each stream's sink
 * decodes every packed WatchResponse and keeps it; its queued() answers what
 * the test says, to simulate a slow or stalled client. Writes go straight to
 * storage (st_txn_put / st_txn_delete_range / st_txn_compact), one commit =
 * one revision, and are logged so that a test can say "watcher W must have
 * received exactly the logged events it selects, in order".
 *
 * Expected values are etcd 3.4's: mvcc/watchable_store.go, watcher.go,
 * watcher_group.go and etcdserver/api/v3rpc/watch.go (created responses,
 * watch ids, filters, prev_kv, compaction, fragments, progress).
 */
#include <criterion/criterion.h>

#include "etcdcompat/ec_watch.h"
#include "storage/st_db.h"
#include "storage/st_mvcc.h"
#include "test/storage/st_testutil.h"

/* ---- fixture: a db, a hub fed by the events hook ---------------------------- */

static char *dir;
static st_db *db;
static ec_hub *hub;
static uint64_t applied;
static bool drop_events; /* the hook loses the commits it is handed */
static bool hold_events; /* the hook keeps the commits in held[] */
static st_events *held[16];
static size_t nheld;
static const ec_hdr H = {.cluster_id = 0xc1, .member_id = 0xa1, .raft_term = 7};

static ec_hdr hdr_fn(void *arg)
{
	return *(const ec_hdr *)arg;
}

static void hook(void *arg, st_events *evs)
{
	if (drop_events) {
		st_events_free(evs);
		return;
	}
	if (hold_events && nheld < 16) {
		held[nheld++] = evs;
		return;
	}
	ec_hub_publish(arg, &evs, 1);
}

/* (Re)make the hub with these limits (0: the hub's defaults) and hook it up. */
static void hub_make(size_t max_req, size_t budget, size_t catchup)
{
	if (hub != NULL) {
		st_mvcc_set_events(db, NULL, NULL);
		ec_hub_free(hub);
		hub = NULL;
	}
	ec_hub_config c = {
	        .db = db,
	        .max_request_bytes = max_req,
	        .stream_budget = budget,
	        .catchup_bytes = catchup,
	        .hdr = hdr_fn,
	        .hdr_arg = (void *)&H,
	};
	cr_assert_eq(ec_hub_new(&c, &hub), ST_OK);
	st_mvcc_set_events(db, hook, hub);
}

/* ---- the test sink ------------------------------------------------------------ */

typedef struct tsink {
	Etcdserverpb__WatchResponse **r;
	size_t *size; /* packed size of each response */
	size_t n, cap;
	size_t queued; /* what queued() answers */
	bool gone;     /* send() says the stream is gone */
	/* flush sinks (FSINK) only */
	size_t nflush;              /* flush() calls */
	size_t n_at_flush;          /* n at the last flush */
	ec_wstream *close_on_flush; /* closed by this sink's next flush */
	struct tsink *peer;         /* the sink of close_on_flush */
	size_t pending_at_close;    /* the peer's unflushed sends when closed */
} tsink;

#define MAX_SINKS 32
static tsink sinks[MAX_SINKS];
static size_t nsinks;

static int sink_send(void *ctx, const uint8_t *p, size_t n)
{
	tsink *s = ctx;
	Etcdserverpb__WatchResponse *r = etcdserverpb__watch_response__unpack(NULL, n, p);
	cr_assert_not_null(r, "the hub sent %zu bytes that are not a WatchResponse", n);
	if (s->n == s->cap) {
		s->cap = s->cap ? s->cap * 2 : 64;
		s->r = realloc(s->r, s->cap * sizeof(*s->r));
		s->size = realloc(s->size, s->cap * sizeof(*s->size));
		cr_assert(s->r != NULL && s->size != NULL);
	}
	s->r[s->n] = r;
	s->size[s->n] = n;
	s->n++;
	return s->gone ? -1 : 0;
}

static size_t sink_queued(void *ctx)
{
	return ((tsink *)ctx)->queued;
}

static const ec_wsink SINK = {.send = sink_send, .queued = sink_queued};

/*
 * flush(): every flush must follow a send not yet flushed (the hub flushes
 * only streams it sent to, once a round). With close_on_flush, the flush also
 * closes the peer's stream from inside the callback: the one way a close can
 * find sends of another stream still unflushed.
 */
static void sink_flush(void *ctx)
{
	tsink *s = ctx;
	cr_assert_gt(s->n, s->n_at_flush, "a flush with no send since the last flush");
	s->nflush++;
	s->n_at_flush = s->n;
	ec_wstream *ws = s->close_on_flush;
	if (ws == NULL)
		return;
	tsink *o = s->peer;
	s->close_on_flush = NULL;
	o->close_on_flush = NULL;
	o->pending_at_close = o->n - o->n_at_flush;
	ec_hub_stream_close(hub, ws);
}

static const ec_wsink FSINK = {.send = sink_send, .queued = sink_queued, .flush = sink_flush};

static tsink *sink_new(void)
{
	cr_assert_lt(nsinks, MAX_SINKS);
	tsink *s = &sinks[nsinks++];
	memset(s, 0, sizeof(*s));
	return s;
}

/* A new sink of kind @k and a stream bound to it. */
static ec_wstream *stream_new_on(const ec_wsink *k, tsink **out)
{
	tsink *s = sink_new();
	ec_wstream *ws = ec_hub_stream_open(hub, k, s);
	cr_assert_not_null(ws);
	*out = s;
	return ws;
}

static ec_wstream *stream_new(tsink **out)
{
	return stream_new_on(&SINK, out);
}

static void sinks_free(void)
{
	for (size_t i = 0; i < nsinks; i++) {
		for (size_t j = 0; j < sinks[i].n; j++)
			etcdserverpb__watch_response__free_unpacked(sinks[i].r[j], NULL);
		free(sinks[i].r);
		free(sinks[i].size);
	}
	nsinks = 0;
}

/* ---- the write log (the oracle) and writes --------------------------------------- */

typedef struct wev {
	uint8_t key[160];
	size_t klen;
	uint8_t val[256];
	size_t vlen;
	int64_t rev;
	bool del;
} wev;

#define MAX_LOG 4096
static wev wlog[MAX_LOG];
static size_t nlog;

static void log_add(const void *k, size_t kl, const void *v, size_t vl, int64_t rev, bool del)
{
	cr_assert_lt(nlog, MAX_LOG);
	cr_assert_leq(kl, sizeof(wlog[0].key));
	cr_assert_leq(vl, sizeof(wlog[0].val));
	wev *e = &wlog[nlog++];
	memcpy(e->key, k, kl);
	e->klen = kl;
	if (vl)
		memcpy(e->val, v, vl);
	e->vlen = vl;
	e->rev = rev;
	e->del = del;
}

static st_txn *tx_begin(void)
{
	st_txn *t;
	cr_assert_eq(st_txn_begin(db, true, &t), ST_OK);
	return t;
}

static void tx_putn(st_txn *t, const void *k, size_t kl, const char *v, int64_t lease)
{
	cr_assert_eq(st_txn_put(t, k, kl, (const uint8_t *)v, strlen(v), lease), ST_OK);
	log_add(k, kl, v, strlen(v), st_txn_base_rev(t) + 1, false);
}

static void tx_put(st_txn *t, const char *k, const char *v)
{
	tx_putn(t, k, strlen(k), v, 0);
}

/* Delete exactly @k, which must exist. */
static void tx_del(st_txn *t, const char *k)
{
	int64_t n = 0;
	cr_assert_eq(st_txn_delete_range(t, (const uint8_t *)k, strlen(k), NULL, 0, &n), ST_OK);
	cr_assert_eq(n, 1, "delete of '%s' deleted %lld keys", k, (long long)n);
	log_add(k, strlen(k), NULL, 0, st_txn_base_rev(t) + 1, true);
}

static int64_t tx_commit(st_txn *t)
{
	int64_t rev = st_txn_base_rev(t) + (st_txn_changes(t) > 0 ? 1 : 0);
	cr_assert_eq(st_txn_commit(t, ++applied), ST_OK);
	return rev;
}

static int64_t putn(const void *k, size_t kl, const char *v)
{
	st_txn *t = tx_begin();
	tx_putn(t, k, kl, v, 0);
	return tx_commit(t);
}

static int64_t put(const char *k, const char *v)
{
	return putn(k, strlen(k), v);
}

static int64_t del(const char *k)
{
	st_txn *t = tx_begin();
	tx_del(t, k);
	return tx_commit(t);
}

static void compact(int64_t rev)
{
	st_txn *t = tx_begin();
	cr_assert_eq(st_txn_compact(t, rev), ST_OK);
	cr_assert_eq(st_txn_commit(t, ++applied), ST_OK);
}

static int64_t cur_rev(void)
{
	st_kv_state s;
	st_kv_state_get(db, &s);
	return s.rev;
}

/* Run catch-up until the hub says nothing can progress; the number of rounds. */
static int step_all(void)
{
	int n = 0;
	while (ec_hub_step(hub)) {
		n++;
		cr_assert_lt(n, 100000, "ec_hub_step never settles");
	}
	return n;
}

/* ---- requests ------------------------------------------------------------------------ */

/* A watch create request; lengths 0 mean strlen (key NULL/end NULL: none). */
typedef struct wopt {
	const char *key;
	size_t klen;
	const char *end;
	size_t elen;
	int64_t start, id;
	bool prev_kv, progress, fragment, noput, nodel;
} wopt;

/* The one-byte range end "\0": from the key on. */
#define FROMKEY .end = "", .elen = 1
/* key "\0", end "\0": every key. */
#define ALLKEYS .key = "", .klen = 1, FROMKEY

static wopt wopt_norm(wopt o)
{
	if (o.key != NULL && o.klen == 0)
		o.klen = strlen(o.key);
	if (o.end != NULL && o.elen == 0)
		o.elen = strlen(o.end);
	return o;
}

static void watch_o(ec_wstream *ws, wopt o)
{
	o = wopt_norm(o);
	Etcdserverpb__WatchCreateRequest c = ETCDSERVERPB__WATCH_CREATE_REQUEST__INIT;
	c.key.data = (uint8_t *)o.key;
	c.key.len = o.klen;
	c.range_end.data = (uint8_t *)o.end;
	c.range_end.len = o.elen;
	c.start_revision = o.start;
	c.watch_id = o.id;
	c.prev_kv = o.prev_kv;
	c.progress_notify = o.progress;
	c.fragment = o.fragment;
	Etcdserverpb__WatchCreateRequest__FilterType f[2];
	size_t nf = 0;
	if (o.noput)
		f[nf++] = ETCDSERVERPB__WATCH_CREATE_REQUEST__FILTER_TYPE__NOPUT;
	if (o.nodel)
		f[nf++] = ETCDSERVERPB__WATCH_CREATE_REQUEST__FILTER_TYPE__NODELETE;
	c.n_filters = nf;
	c.filters = nf ? f : NULL;
	Etcdserverpb__WatchRequest r = ETCDSERVERPB__WATCH_REQUEST__INIT;
	r.request_union_case = ETCDSERVERPB__WATCH_REQUEST__REQUEST_UNION_CREATE_REQUEST;
	r.create_request = &c;
	cr_assert_eq(ec_hub_request(hub, ws, &r), ST_OK);
}

#define WATCH(ws, ...) watch_o((ws), (wopt){__VA_ARGS__})

static void cancel(ec_wstream *ws, int64_t id)
{
	Etcdserverpb__WatchCancelRequest c = ETCDSERVERPB__WATCH_CANCEL_REQUEST__INIT;
	c.watch_id = id;
	Etcdserverpb__WatchRequest r = ETCDSERVERPB__WATCH_REQUEST__INIT;
	r.request_union_case = ETCDSERVERPB__WATCH_REQUEST__REQUEST_UNION_CANCEL_REQUEST;
	r.cancel_request = &c;
	cr_assert_eq(ec_hub_request(hub, ws, &r), ST_OK);
}

static void progress_req(ec_wstream *ws)
{
	Etcdserverpb__WatchProgressRequest p = ETCDSERVERPB__WATCH_PROGRESS_REQUEST__INIT;
	Etcdserverpb__WatchRequest r = ETCDSERVERPB__WATCH_REQUEST__INIT;
	r.request_union_case = ETCDSERVERPB__WATCH_REQUEST__REQUEST_UNION_PROGRESS_REQUEST;
	r.progress_request = &p;
	cr_assert_eq(ec_hub_request(hub, ws, &r), ST_OK);
}

/* ---- checks ---------------------------------------------------------------------------- */

static bool bin_eq(ProtobufCBinaryData b, const void *p, size_t n)
{
	return b.len == n && (n == 0 || memcmp(b.data, p, n) == 0);
}

static bool bin_is(ProtobufCBinaryData b, const char *s)
{
	return bin_eq(b, s, strlen(s));
}

static void check_header(const Etcdserverpb__WatchResponse *r, int64_t rev)
{
	cr_assert_not_null(r->header);
	cr_assert_eq(r->header->cluster_id, H.cluster_id);
	cr_assert_eq(r->header->member_id, H.member_id);
	cr_assert_eq(r->header->raft_term, H.raft_term);
	cr_assert_eq(r->header->revision, rev, "header revision %lld, want %lld",
	             (long long)r->header->revision, (long long)rev);
}

/* Response @i of @s is "created" for watch @id at header revision @rev. */
static void check_created(const tsink *s, size_t i, int64_t id, int64_t rev)
{
	cr_assert_lt(i, s->n, "response %zu missing (have %zu)", i, s->n);
	const Etcdserverpb__WatchResponse *r = s->r[i];
	cr_assert(r->created, "response %zu is not a created response", i);
	cr_assert_not(r->canceled);
	cr_assert_eq(r->watch_id, id, "created watch id %lld, want %lld", (long long)r->watch_id,
	             (long long)id);
	cr_assert_eq(r->n_events, 0);
	cr_assert_eq(r->compact_revision, 0);
	cr_assert_str_empty(r->cancel_reason);
	check_header(r, rev);
}

/* Response @i of @s: created+canceled (watch id -1) with @reason at @rev. */
static void check_refused(const tsink *s, size_t i, const char *reason, int64_t rev)
{
	cr_assert_lt(i, s->n);
	const Etcdserverpb__WatchResponse *r = s->r[i];
	cr_assert(r->created);
	cr_assert(r->canceled);
	cr_assert_eq(r->watch_id, -1);
	cr_assert_str_eq(r->cancel_reason, reason);
	cr_assert_eq(r->n_events, 0);
	check_header(r, rev);
}

/* Response @i of @s is an empty (progress) response for watch @id at @rev. */
static void check_progress(const tsink *s, size_t i, int64_t id, int64_t rev)
{
	cr_assert_lt(i, s->n, "progress response %zu missing (have %zu)", i, s->n);
	const Etcdserverpb__WatchResponse *r = s->r[i];
	cr_assert_eq(r->watch_id, id, "progress watch id %lld, want %lld", (long long)r->watch_id,
	             (long long)id);
	cr_assert_not(r->created);
	cr_assert_not(r->canceled);
	cr_assert_eq(r->n_events, 0);
	cr_assert_not(r->fragment);
	check_header(r, rev);
}

static int keycmp(const uint8_t *a, size_t al, const uint8_t *b, size_t bl)
{
	int c = memcmp(a, b, al < bl ? al : bl);
	if (c != 0)
		return c;
	return al < bl ? -1 : al > bl;
}

/* The test's own reading of etcd's key selection: "" is "\0"; no end: that key;
 * end "\0": from the key on; else [key, end). */
static bool sel_has(const wopt *o, const uint8_t *k, size_t kl)
{
	const uint8_t *key = (const uint8_t *)o->key;
	size_t klen = o->klen;
	static const uint8_t zero = 0;
	if (klen == 0) {
		key = &zero;
		klen = 1;
	}
	if (o->elen == 0)
		return keycmp(k, kl, key, klen) == 0;
	if (keycmp(k, kl, key, klen) < 0)
		return false;
	if (o->elen == 1 && o->end[0] == 0)
		return true;
	return keycmp(k, kl, (const uint8_t *)o->end, o->elen) < 0;
}

static bool wants(const wopt *o, const wev *e)
{
	if (!sel_has(o, e->key, e->klen))
		return false;
	return e->del ? !o->nodel : !o->noput;
}

/* The events of watch @id in @s (responses from index @first), in order,
 * flattened, as pointers into the responses; sets *@nresp to the number of
 * responses carrying events. Every such response is checked for sanity. */
static Mvccpb__Event **events_of(const tsink *s, size_t first, int64_t id, size_t *n, size_t *nresp)
{
	size_t cnt = 0, nr = 0;
	for (size_t i = first; i < s->n; i++)
		if (s->r[i]->watch_id == id)
			cnt += s->r[i]->n_events;
	Mvccpb__Event **out = malloc((cnt ? cnt : 1) * sizeof(*out));
	cnt = 0;
	for (size_t i = first; i < s->n; i++) {
		const Etcdserverpb__WatchResponse *r = s->r[i];
		if (r->watch_id != id || r->n_events == 0)
			continue;
		nr++;
		cr_assert_not(r->created);
		cr_assert_not(r->canceled);
		for (size_t j = 0; j < r->n_events; j++) {
			cr_assert_not_null(r->events[j]->kv);
			cr_assert_leq(r->events[j]->kv->mod_revision, r->header->revision,
			              "an event newer than its response's header");
			out[cnt++] = r->events[j];
		}
	}
	*n = cnt;
	if (nresp != NULL)
		*nresp = nr;
	return out;
}

/* Watch @id on @s has received exactly the logged events that @o selects with
 * revision in [@from, @to], each once, in order (prev_kv is not checked). */
static void check_events(const tsink *s, int64_t id, wopt o, int64_t from, int64_t to)
{
	o = wopt_norm(o);
	size_t n;
	Mvccpb__Event **ev = events_of(s, 0, id, &n, NULL);
	size_t k = 0;
	for (size_t i = 0; i < nlog; i++) {
		const wev *e = &wlog[i];
		if (e->rev < from || e->rev > to || !wants(&o, e))
			continue;
		cr_assert_lt(k, n, "watch %lld: %zu events received, more expected (next rev %lld)",
		             (long long)id, n, (long long)e->rev);
		const Mvccpb__Event *g = ev[k++];
		cr_assert(bin_eq(g->kv->key, e->key, e->klen),
		          "watch %lld: event %zu has the wrong key (rev %lld, want rev %lld)",
		          (long long)id, k - 1, (long long)g->kv->mod_revision, (long long)e->rev);
		cr_assert_eq(g->kv->mod_revision, e->rev,
		             "watch %lld: event %zu mod_revision %lld want %lld", (long long)id,
		             k - 1, (long long)g->kv->mod_revision, (long long)e->rev);
		cr_assert_eq(g->type, e->del ? MVCCPB__EVENT__EVENT_TYPE__DELETE
		                             : MVCCPB__EVENT__EVENT_TYPE__PUT);
		if (!e->del)
			cr_assert(bin_eq(g->kv->value, e->val, e->vlen));
	}
	cr_assert_eq(k, n, "watch %lld: %zu events received, %zu expected", (long long)id, n, k);
	free(ev);
}

/* Responses of @s for watch @id (any kind). */
static size_t count_for(const tsink *s, int64_t id)
{
	size_t c = 0;
	for (size_t i = 0; i < s->n; i++)
		if (s->r[i]->watch_id == id)
			c++;
	return c;
}

/* ---- suite -------------------------------------------------------------------------------- */

static void setup(void)
{
	dir = tu_tmpdir();
	cr_assert_not_null(dir);
	st_options o = {.create_if_missing = true};
	char err[512];
	cr_assert_eq(st_db_open(dir, &o, &db, err, sizeof(err)), ST_OK, "%s", err);
	applied = 0;
	nlog = 0;
	nsinks = 0;
	drop_events = false;
	hub = NULL;
	hub_make(0, 0, 0);
}

static void teardown(void)
{
	st_mvcc_set_events(db, NULL, NULL);
	ec_hub_free(hub);
	hub = NULL;
	sinks_free();
	st_db_close(db);
	tu_rmrf(dir);
	free(dir);
}

TestSuite(watch, .init = setup, .fini = teardown);

/* ---- created, ids, headers ------------------------------------------------------------------ */

Test(watch, config_needs_a_db)
{
	ec_hub_config c = {0};
	ec_hub *h2 = NULL;
	cr_assert_eq(ec_hub_new(&c, &h2), ST_EINVAL);
	cr_assert_eq(ec_hub_new(NULL, &h2), ST_EINVAL);
}

Test(watch, created_first_with_ids_from_zero_and_store_revision)
{
	tsink *s;
	ec_wstream *ws = stream_new(&s);
	cr_assert_eq(ec_hub_rev(hub), 1); /* a fresh store is at revision 1 */
	WATCH(ws, .key = "a");
	cr_assert_eq(s->n, 1);
	check_created(s, 0, 0, 1);
	cr_assert_eq(ec_hub_watchers(hub), 1);
	cr_assert_eq(ec_hub_stream_watchers(ws), 1);
	cr_assert_eq(ec_hub_unsynced(hub), 0);

	st_txn *t = tx_begin();
	tx_putn(t, "a", 1, "v1", 0x55);
	cr_assert_eq(tx_commit(t), 2);
	cr_assert_eq(s->n, 2);
	const Etcdserverpb__WatchResponse *r = s->r[1];
	cr_assert_eq(r->watch_id, 0);
	cr_assert_not(r->created);
	cr_assert_not(r->canceled);
	cr_assert_not(r->fragment);
	check_header(r, 2);
	cr_assert_eq(r->n_events, 1);
	const Mvccpb__Event *e = r->events[0];
	cr_assert_eq(e->type, MVCCPB__EVENT__EVENT_TYPE__PUT);
	cr_assert(bin_is(e->kv->key, "a"));
	cr_assert(bin_is(e->kv->value, "v1"));
	cr_assert_eq(e->kv->create_revision, 2);
	cr_assert_eq(e->kv->mod_revision, 2);
	cr_assert_eq(e->kv->version, 1);
	cr_assert_eq(e->kv->lease, 0x55);
	cr_assert_null(e->prev_kv);

	put("x", "nobody watches x"); /* rev 3 */
	cr_assert_eq(s->n, 2);
	cr_assert_eq(ec_hub_rev(hub), 3);

	WATCH(ws, .key = "b");
	check_created(s, 2, 1, 3);
	WATCH(ws, .key = "c", .start = 2); /* a past start: created still comes first */
	check_created(s, 3, 2, 3);
	cr_assert_eq(s->n, 4);

	/* ids are per stream */
	tsink *s2;
	ec_wstream *ws2 = stream_new(&s2);
	WATCH(ws2, .key = "a");
	check_created(s2, 0, 0, 3);
	cr_assert_eq(ec_hub_watchers(hub), 4);
	cr_assert_eq(ec_hub_stream_watchers(ws), 3);
	cr_assert_eq(ec_hub_stream_watchers(ws2), 1);

	put("a", "v2"); /* rev 4: both streams' watchers on "a" */
	cr_assert_eq(s->n, 5);
	cr_assert_eq(s2->n, 2);
	cr_assert_eq(s->r[4]->watch_id, 0);
	cr_assert_eq(s2->r[1]->watch_id, 0);
	cr_assert_eq(s2->r[1]->events[0]->kv->version, 2);
	cr_assert_eq(s2->r[1]->events[0]->kv->create_revision, 2);
}

/* ---- key selection ----------------------------------------------------------------------------
 */

Test(watch, key_prefix_range_fromkey_allkeys_match_and_neighbours_do_not)
{
	/* the keys written, one commit each, in this order */
	static const struct {
		const char *k;
		size_t kl;
	} keys[] = {
	        {"", 1},          /* 0: "\0" */
	        {"a", 1},         /* 1 */
	        {"ab", 2},        /* 2 */
	        {"abc", 3},       /* 3 */
	        {"a\xfe", 2},     /* 4 */
	        {"a\xff", 2},     /* 5 */
	        {"a\xff\x01", 3}, /* 6 */
	        {"b", 1},         /* 7 */
	        {"ba", 2},        /* 8 */
	        {"c", 1},         /* 9 */
	        {"cz", 2},        /* 10 */
	        {"d", 1},         /* 11 */
	        {"e", 1},         /* 12 */
	};
	enum { NKEYS = sizeof(keys) / sizeof(keys[0]), DEL_ABC = NKEYS };
#define B(i) (1u << (i))
	static const struct {
		wopt o;
		uint32_t want; /* bit i: write i; bit DEL_ABC: the delete of "abc" */
	} w[] = {
	        {{.key = "ab"}, B(2)},
	        {{.key = "a", .end = "b"}, B(1) | B(2) | B(3) | B(4) | B(5) | B(6) | B(DEL_ABC)},
	        {{.key = "ab", .end = "ac"}, B(2) | B(3) | B(DEL_ABC)},
	        {{.key = "a", .end = "ab"}, B(1)},
	        {{.key = "b", .end = "d"}, B(7) | B(8) | B(9) | B(10)},
	        {{.key = "c", FROMKEY}, B(9) | B(10) | B(11) | B(12)},
	        {{ALLKEYS}, 0x3fffu},
	        {{.key = "", FROMKEY}, 0x3fffu}, /* empty key = "\0" */
	        {{.key = ""}, B(0)},             /* just "\0" */
	        {{.key = "a\xff", .end = "b"}, B(5) | B(6)},
	        {{.key = "abc"}, B(3) | B(DEL_ABC)},
	        {{.key = "ab", .end = "b"}, B(2) | B(3) | B(4) | B(5) | B(6) | B(DEL_ABC)},
	        {{.key = "a\xff", FROMKEY},
	         B(5) | B(6) | B(7) | B(8) | B(9) | B(10) | B(11) | B(12)},
	        {{.key = "b", .end = "c"}, B(7) | B(8)},
	        {{.key = "b"}, B(7)},
	        {{.key = "a", .end = "a\xff"}, B(1) | B(2) | B(3) | B(4) | B(DEL_ABC)},
	};
	enum { NW = sizeof(w) / sizeof(w[0]) };
	tsink *s;
	ec_wstream *ws = stream_new(&s);
	for (int i = 0; i < NW; i++) {
		watch_o(ws, w[i].o);
		check_created(s, (size_t)i, i, 1);
	}
	int64_t rev[NKEYS + 1];
	for (int i = 0; i < NKEYS; i++)
		rev[i] = putn(keys[i].k, keys[i].kl, "v");
	rev[DEL_ABC] = del("abc");
	for (int i = 0; i < NW; i++) {
		size_t n, nr;
		Mvccpb__Event **ev = events_of(s, 0, i, &n, &nr);
		size_t k = 0;
		for (int j = 0; j <= NKEYS; j++) {
			if (!(w[i].want & B(j)))
				continue;
			cr_assert_lt(k, n, "watcher %d missed write %d", i, j);
			const Mvccpb__Event *e = ev[k++];
			if (j == DEL_ABC) {
				cr_assert_eq(e->type, MVCCPB__EVENT__EVENT_TYPE__DELETE);
				cr_assert(bin_is(e->kv->key, "abc"));
			} else {
				cr_assert_eq(e->type, MVCCPB__EVENT__EVENT_TYPE__PUT);
				cr_assert(bin_eq(e->kv->key, keys[j].k, keys[j].kl),
				          "watcher %d: event %zu is not write %d", i, k - 1, j);
			}
			cr_assert_eq(e->kv->mod_revision, rev[j]);
		}
		cr_assert_eq(k, n, "watcher %d got %zu events, want %zu", i, n, k);
		cr_assert_eq(nr, n, "one commit, one response");
		/* and the oracle agrees with the table */
		check_events(s, i, w[i].o, 1, cur_rev());
		free(ev);
	}
#undef B
}

Test(watch, long_prefixes_and_binary_keys)
{
	char p[101], k1[103], k2[100];
	memset(p, 'p', 100);
	p[100] = 0;
	memcpy(k1, p, 100);
	k1[100] = 'x';
	k1[101] = 0;
	memcpy(k2, p, 99); /* one byte short of the prefix */
	k2[99] = 0;
	char pend[101];
	memcpy(pend, p, 101);
	pend[99] = 'q';
	tsink *s;
	ec_wstream *ws = stream_new(&s);
	WATCH(ws, .key = p, .end = pend);    /* a prefix longer than 64 bytes */
	WATCH(ws, .key = "z\0y", .klen = 3); /* an exact key with a NUL inside */
	WATCH(ws, .key = "z", .end = "{");   /* prefix "z" */
	put(k1, "in");
	put(k2, "out");
	put(p, "in");
	putn("z\0y", 3, "bin");
	putn("z\0", 2, "not the exact key");
	check_events(s, 0, (wopt){.key = p, .end = pend}, 1, cur_rev());
	check_events(s, 1, (wopt){.key = "z\0y", .klen = 3}, 1, cur_rev());
	check_events(s, 2, (wopt){.key = "z", .end = "{"}, 1, cur_rev());
	size_t n;
	Mvccpb__Event **ev = events_of(s, 0, 0, &n, NULL);
	cr_assert_eq(n, 2);
	free(ev);
	ev = events_of(s, 0, 1, &n, NULL);
	cr_assert_eq(n, 1);
	free(ev);
	ev = events_of(s, 0, 2, &n, NULL);
	cr_assert_eq(n, 2);
	free(ev);
}

Test(watch, watchers_sharing_a_key_survive_a_middle_cancel)
{
	tsink *s;
	ec_wstream *ws = stream_new(&s);
	for (int i = 0; i < 3; i++)
		WATCH(ws, .key = "k");
	for (int i = 0; i < 3; i++)
		WATCH(ws, .key = "p", .end = "q");
	cancel(ws, 1);
	cancel(ws, 4);
	put("k", "1");
	put("pp", "2");
	cr_assert_eq(ec_hub_watchers(hub), 4);
	for (int i = 0; i < 6; i++) {
		bool gone = i == 1 || i == 4;
		size_t n;
		Mvccpb__Event **ev = events_of(s, 0, i, &n, NULL);
		cr_assert_eq(n, gone ? 0u : 1u, "watcher %d got %zu events", i, n);
		free(ev);
	}
	cancel(ws, 0);
	cancel(ws, 2);
	cancel(ws, 3);
	cancel(ws, 5);
	cr_assert_eq(ec_hub_watchers(hub), 0);
	size_t before = s->n;
	put("k", "3");
	put("pp", "4");
	cr_assert_eq(s->n, before);
}

/* ---- prev_kv, filters, one txn ----------------------------------------------------------------
 */

static void check_kv(const Mvccpb__KeyValue *kv, const char *k, const char *v, int64_t create,
                     int64_t mod, int64_t ver)
{
	cr_assert_not_null(kv);
	cr_assert(bin_is(kv->key, k));
	cr_assert(bin_is(kv->value, v), "value '%.*s', want '%s'", (int)kv->value.len,
	          (const char *)kv->value.data, v);
	cr_assert_eq(kv->create_revision, create);
	cr_assert_eq(kv->mod_revision, mod);
	cr_assert_eq(kv->version, ver);
}

/* The put-put-delete-put history of "k" at revisions 2..5 as watch @id saw it. */
static void check_prev_history(const tsink *s, int64_t id, bool prev)
{
	size_t n;
	Mvccpb__Event **ev = events_of(s, 0, id, &n, NULL);
	cr_assert_eq(n, 4, "watch %lld got %zu events", (long long)id, n);
	/* a create: no prev_kv */
	check_kv(ev[0]->kv, "k", "v1", 2, 2, 1);
	cr_assert_null(ev[0]->prev_kv);
	check_kv(ev[1]->kv, "k", "v2", 2, 3, 2);
	if (prev)
		check_kv(ev[1]->prev_kv, "k", "v1", 2, 2, 1);
	else
		cr_assert_null(ev[1]->prev_kv);
	/* a delete: the kv holds only the key and the deleting revision */
	cr_assert_eq(ev[2]->type, MVCCPB__EVENT__EVENT_TYPE__DELETE);
	check_kv(ev[2]->kv, "k", "", 0, 4, 0);
	cr_assert_eq(ev[2]->kv->lease, 0);
	if (prev)
		check_kv(ev[2]->prev_kv, "k", "v2", 2, 3, 2);
	else
		cr_assert_null(ev[2]->prev_kv);
	/* re-created after the delete: a create again */
	check_kv(ev[3]->kv, "k", "v3", 5, 5, 1);
	cr_assert_null(ev[3]->prev_kv);
	free(ev);
}

Test(watch, prev_kv_on_put_and_delete_live_and_from_history)
{
	tsink *s;
	ec_wstream *ws = stream_new(&s);
	WATCH(ws, .key = "k", .prev_kv = true);
	WATCH(ws, .key = "k");
	cr_assert_eq(put("k", "v1"), 2);
	cr_assert_eq(put("k", "v2"), 3);
	cr_assert_eq(del("k"), 4);
	cr_assert_eq(put("k", "v3"), 5);
	check_prev_history(s, 0, true);
	check_prev_history(s, 1, false);
	/* the same events read from history */
	tsink *s2;
	ec_wstream *ws2 = stream_new(&s2);
	WATCH(ws2, .key = "k", .prev_kv = true, .start = 2);
	WATCH(ws2, .key = "k", .start = 2);
	cr_assert_eq(ec_hub_unsynced(hub), 2);
	step_all();
	cr_assert_eq(ec_hub_unsynced(hub), 0);
	check_prev_history(s2, 0, true);
	check_prev_history(s2, 1, false);
}

Test(watch, filters_noput_nodelete)
{
	tsink *s;
	ec_wstream *ws = stream_new(&s);
	WATCH(ws, .key = "f", .end = "g", .noput = true);                  /* 0 */
	WATCH(ws, .key = "f", .end = "g", .nodel = true);                  /* 1 */
	WATCH(ws, .key = "f", .end = "g", .noput = true, .nodel = true);   /* 2 */
	WATCH(ws, .key = "f", .end = "g", .noput = true, .prev_kv = true); /* 3 */
	put("f", "1");
	put("f", "2");
	int64_t d = del("f");
	put("f", "3");
	st_txn *t = tx_begin(); /* a put and a delete in one revision */
	tx_put(t, "f1", "x");
	tx_del(t, "f");
	int64_t mixed = tx_commit(t);
	cr_assert_eq(count_for(s, 0), 3); /* created + 2 deletes */
	cr_assert_eq(count_for(s, 1), 5); /* created + 4 puts */
	cr_assert_eq(count_for(s, 2), 1); /* only created: nothing left to send */
	check_events(s, 0, (wopt){.key = "f", .end = "g", .noput = true}, 1, mixed);
	check_events(s, 1, (wopt){.key = "f", .end = "g", .nodel = true}, 1, mixed);
	check_events(s, 2, (wopt){.key = "f", .end = "g", .noput = true, .nodel = true}, 1, mixed);
	size_t n;
	Mvccpb__Event **ev = events_of(s, 0, 3, &n, NULL);
	cr_assert_eq(n, 2);
	cr_assert_eq(ev[0]->kv->mod_revision, d);
	check_kv(ev[0]->prev_kv, "f", "2", 2, 3, 2);
	cr_assert_eq(ev[1]->kv->mod_revision, mixed);
	check_kv(ev[1]->prev_kv, "f", "3", d + 1, d + 1, 1);
	free(ev);
	/* filters hold in catch-up too */
	tsink *s2;
	ec_wstream *ws2 = stream_new(&s2);
	WATCH(ws2, .key = "f", .end = "g", .noput = true, .start = 1);
	WATCH(ws2, .key = "f", .end = "g", .nodel = true, .start = 1);
	step_all();
	check_events(s2, 0, (wopt){.key = "f", .end = "g", .noput = true}, 1, mixed);
	check_events(s2, 1, (wopt){.key = "f", .end = "g", .nodel = true}, 1, mixed);
}

Test(watch, a_txn_of_several_changes_is_one_response)
{
	put("c", "old"); /* rev 2 */
	tsink *s;
	ec_wstream *ws = stream_new(&s);
	WATCH(ws, ALLKEYS);                /* 0 */
	WATCH(ws, .key = "a", .end = "c"); /* 1 */
	WATCH(ws, .key = "c");             /* 2 */
	st_txn *t = tx_begin();
	tx_put(t, "a", "1");
	tx_put(t, "b", "2");
	tx_del(t, "c");
	cr_assert_eq(tx_commit(t), 3);
	WATCH(ws, ALLKEYS, .start = 3); /* 3: the same from history */
	cr_assert_eq(ec_hub_unsynced(hub), 1);
	step_all();
	static const int64_t want[] = {0, 1, 2, 3};
	static const size_t nev[] = {3, 2, 1, 3};
	for (int i = 0; i < 4; i++) {
		cr_assert_eq(count_for(s, want[i]), 2, "watch %d: one created, one response", i);
		const Etcdserverpb__WatchResponse *r = NULL;
		for (size_t j = 0; j < s->n; j++)
			if (s->r[j]->watch_id == want[i] && !s->r[j]->created)
				r = s->r[j];
		cr_assert_not_null(r);
		check_header(r, 3);
		cr_assert_eq(r->n_events, nev[i]);
		for (size_t j = 0; j < r->n_events; j++)
			cr_assert_eq(r->events[j]->kv->mod_revision, 3);
	}
	check_events(s, 0, (wopt){ALLKEYS}, 3, 3);
	check_events(s, 1, (wopt){.key = "a", .end = "c"}, 3, 3);
	check_events(s, 2, (wopt){.key = "c"}, 3, 3);
	check_events(s, 3, (wopt){ALLKEYS}, 3, 3);
}

Test(watch, an_apply_group_of_several_revisions_in_one_publish)
{
	tsink *s;
	ec_wstream *ws = stream_new(&s);
	WATCH(ws, .key = "g", .end = "h", .prev_kv = true); /* 0 */
	WATCH(ws, .key = "g2");                             /* 1 */
	WATCH(ws, .key = "g", .end = "h", .start = 3);      /* 2: future, inside the group */
	cr_assert_eq(st_apply_begin(db), ST_OK);
	put("g1", "a"); /* 2 */
	put("g2", "b"); /* 3 */
	st_txn *t = tx_begin();
	tx_put(t, "g1", "c");
	tx_put(t, "g3", "d");
	tx_commit(t); /* 4 */
	cr_assert_eq(s->n, 3, "nothing before the group is written");
	cr_assert_eq(st_apply_commit(db), ST_OK);
	cr_assert_eq(ec_hub_rev(hub), 4);
	check_events(s, 0, (wopt){.key = "g", .end = "h"}, 2, 4);
	check_events(s, 1, (wopt){.key = "g2"}, 2, 4);
	check_events(s, 2, (wopt){.key = "g", .end = "h"}, 3, 4);
	size_t n;
	Mvccpb__Event **ev = events_of(s, 0, 0, &n, NULL);
	cr_assert_eq(n, 4);
	cr_assert_null(ev[0]->prev_kv);
	check_kv(ev[2]->prev_kv, "g1", "a", 2, 2, 1); /* the group's own earlier version */
	cr_assert_null(ev[3]->prev_kv);
	free(ev);
	cr_assert_eq(ec_hub_unsynced(hub), 0);
}

/* ---- start revisions: past, future, compacted
 * ----------------------------------------------------- */

Test(watch, past_start_replays_history_then_goes_live_exactly_once)
{
	for (int i = 0; i < 5; i++) {
		char k[16];
		snprintf(k, sizeof(k), "h%d", i);
		put(k, "old"); /* revs 2..6 */
	}
	put("other", "x"); /* rev 7 */
	tsink *s;
	ec_wstream *ws = stream_new(&s);
	WATCH(ws, .key = "h", .end = "i", .start = 3); /* 0: behind */
	WATCH(ws, .key = "h", .end = "i");             /* 1: live */
	check_created(s, 0, 0, 7);
	check_created(s, 1, 1, 7);
	cr_assert_eq(ec_hub_unsynced(hub), 1);
	cr_assert_eq(ec_hub_watchers(hub), 2);
	/* written between the create and catch-up */
	put("h9", "new"); /* rev 8 */
	del("h0");        /* rev 9 */
	cr_assert_eq(count_for(s, 0), 1, "an unsynced watcher gets nothing live");
	cr_assert_eq(count_for(s, 1), 3);
	cr_assert_gt(step_all(), 0);
	cr_assert_eq(ec_hub_unsynced(hub), 0);
	check_events(s, 0, (wopt){.key = "h", .end = "i"}, 3, 9);
	check_events(s, 1, (wopt){.key = "h", .end = "i"}, 8, 9);
	/* a catch-up response's header is the hub's revision */
	for (size_t i = 0; i < s->n; i++)
		if (s->r[i]->watch_id == 0 && s->r[i]->n_events > 0)
			check_header(s->r[i], 9);
	put("h5", "live"); /* rev 10: now synced, exactly once */
	check_events(s, 0, (wopt){.key = "h", .end = "i"}, 3, 10);
	check_events(s, 1, (wopt){.key = "h", .end = "i"}, 8, 10);
	cr_assert_not(ec_hub_step(hub));
	check_events(s, 0, (wopt){.key = "h", .end = "i"}, 3, 10);
}

/* Every revision of watch @id's events sits in one response. */
static void check_whole_revisions(const tsink *s, int64_t id)
{
	int64_t last_rev = 0;
	size_t last_resp = SIZE_MAX;
	for (size_t i = 0; i < s->n; i++) {
		const Etcdserverpb__WatchResponse *r = s->r[i];
		if (r->watch_id != id)
			continue;
		for (size_t j = 0; j < r->n_events; j++) {
			int64_t rv = r->events[j]->kv->mod_revision;
			if (rv == last_rev)
				cr_assert_eq(i, last_resp,
				             "watch %lld: revision %lld split across responses",
				             (long long)id, (long long)rv);
			last_rev = rv;
			last_resp = i;
		}
	}
}

Test(watch, tiny_catchup_takes_many_rounds_never_splits_a_revision)
{
	hub_make(0, 0, 1); /* catch-up stops after every revision */
	for (int i = 0; i < 10; i++) {
		st_txn *t = tx_begin();
		for (int j = 0; j < 3; j++) {
			char k[16];
			snprintf(k, sizeof(k), "t%d%d", i, j);
			tx_put(t, k, "v");
		}
		tx_commit(t); /* revs 2..11, three changes each */
	}
	tsink *s;
	ec_wstream *ws = stream_new(&s);
	WATCH(ws, .key = "t", .end = "u", .start = 2);                  /* 0 */
	WATCH(ws, .key = "t", .end = "u", .start = 6, .prev_kv = true); /* 1 */
	WATCH(ws, .key = "t5", .end = "t6", .start = 1);                /* 2 */
	int rounds = 0;
	int w = 0;
	while (ec_hub_step(hub)) {
		rounds++;
		cr_assert_lt(rounds, 1000);
		if (w < 5) { /* live writes between the rounds */
			st_txn *t = tx_begin();
			char k[16];
			snprintf(k, sizeof(k), "t5%d", w);
			tx_put(t, k, "late");
			tx_put(t, "t00", "over");
			tx_commit(t);
			w++;
		}
	}
	cr_assert_geq(rounds, 10, "catch-up took %d rounds", rounds);
	cr_assert_eq(ec_hub_unsynced(hub), 0);
	put("t99", "live");
	int64_t to = cur_rev();
	check_events(s, 0, (wopt){.key = "t", .end = "u"}, 2, to);
	check_events(s, 1, (wopt){.key = "t", .end = "u"}, 6, to);
	check_events(s, 2, (wopt){.key = "t5", .end = "t6"}, 1, to);
	check_whole_revisions(s, 0);
	check_whole_revisions(s, 1);
	check_whole_revisions(s, 2);
	size_t nr;
	size_t n;
	Mvccpb__Event **ev = events_of(s, 0, 0, &n, &nr);
	cr_assert_gt(nr, 5, "catch-up in %zu responses", nr);
	free(ev);
}

Test(watch, future_start_waits)
{
	tsink *s;
	ec_wstream *ws = stream_new(&s);
	WATCH(ws, .key = "f", .start = 5);
	check_created(s, 0, 0, 1);
	cr_assert_eq(ec_hub_unsynced(hub), 0);
	put("f", "2");
	put("f", "3");
	put("f", "4");
	cr_assert_not(ec_hub_step(hub));
	cr_assert_eq(s->n, 1);
	cr_assert_eq(put("f", "5"), 5);
	put("f", "6");
	check_events(s, 0, (wopt){.key = "f"}, 5, 6);
	cr_assert_eq(count_for(s, 0), 3);
}

Test(watch, compacted_start_is_canceled_and_the_stream_goes_on)
{
	for (int i = 0; i < 5; i++)
		put("k", "v"); /* revs 2..6 */
	compact(5);
	tsink *s;
	ec_wstream *ws = stream_new(&s);
	WATCH(ws, .key = "k", .start = 3);
	check_created(s, 0, 0, 6);
	step_all();
	cr_assert_eq(s->n, 2);
	const Etcdserverpb__WatchResponse *r = s->r[1];
	cr_assert_eq(r->watch_id, 0);
	cr_assert(r->canceled);
	cr_assert_not(r->created);
	cr_assert_eq(r->compact_revision, 5);
	cr_assert_eq(r->n_events, 0);
	/* etcd sends this one with header revision 0 (WatchResponse.Revision is
	 * left unset by watcher_group.go chooseAll) */
	check_header(r, 0);
	/* as etcd's stream, the id stays taken until the client cancels it */
	cr_assert_eq(ec_hub_watchers(hub), 1);
	cr_assert_eq(ec_hub_unsynced(hub), 0);
	put("k", "after");
	cr_assert_eq(s->n, 2, "a canceled watcher gets nothing");
	/* the stream still works for another watch */
	WATCH(ws, .key = "k");
	check_created(s, 2, 1, 7);
	put("k", "again");
	check_events(s, 1, (wopt){.key = "k"}, 8, 8);
	/* and for one that starts just after the compaction */
	WATCH(ws, .key = "k", .start = 6);
	step_all();
	check_events(s, 2, (wopt){.key = "k"}, 6, 8);
	/* the client's cancel of the compacted watch is answered and frees it */
	size_t before = s->n;
	cancel(ws, 0);
	cr_assert_eq(s->n, before + 1);
	cr_assert_eq(s->r[before]->watch_id, 0);
	cr_assert(s->r[before]->canceled);
	cr_assert_eq(s->r[before]->compact_revision, 0);
	cr_assert_eq(ec_hub_watchers(hub), 2);
}

/*
 * etcd cancels a watcher only when its start is below the compacted revision
 * (watcher_group.go chooseAll: w.minRev < compactRev); a watch from exactly the
 * compacted revision is served (and so is the usual resume from last+1 after
 * a compaction at last+1).
 */
Test(watch, start_at_the_compacted_revision_is_not_canceled)
{
	put("k", "1");          /* 2 */
	put("other", "x");      /* 3 */
	put("k", "at compact"); /* 4: the latest version of k at the compaction */
	compact(4);
	tsink *s;
	ec_wstream *ws = stream_new(&s);
	WATCH(ws, .key = "k", .start = 4);
	check_created(s, 0, 0, 4);
	step_all();
	for (size_t i = 0; i < s->n; i++)
		cr_assert_not(
		        s->r[i]->canceled,
		        "watch from the compacted revision %d was canceled (compact_revision %lld)",
		        4, (long long)s->r[i]->compact_revision);
	cr_assert_eq(ec_hub_watchers(hub), 1);
	cr_assert_eq(ec_hub_unsynced(hub), 0);
	put("k", "2"); /* 5 */
	/* etcd keeps the put at the compacted revision (it is k's version
	 * there) and replays it */
	check_events(s, 0, (wopt){.key = "k"}, 4, 5);
}

/* ---- ids, refused creations, cancel
 * ---------------------------------------------------------------- */

Test(watch, duplicate_client_id_is_refused)
{
	tsink *s;
	ec_wstream *ws = stream_new(&s);
	WATCH(ws, .key = "a", .id = 5);
	check_created(s, 0, 5, 1);
	put("x", "y"); /* rev 2: the refusal carries the store revision */
	WATCH(ws, .key = "b", .id = 5);
	check_refused(s, 1, EC_WATCH_DUPLICATE_ID, 2);
	cr_assert_eq(ec_hub_watchers(hub), 1);
	put("b", "1");
	cr_assert_eq(s->n, 2);
	put("a", "1");
	check_events(s, 5, (wopt){.key = "a"}, 1, cur_rev());
	/* the same id on another stream is fine */
	tsink *s2;
	ec_wstream *ws2 = stream_new(&s2);
	WATCH(ws2, .key = "b", .id = 5);
	check_created(s2, 0, 5, 4);
}

Test(watch, empty_range_is_refused)
{
	tsink *s;
	ec_wstream *ws = stream_new(&s);
	WATCH(ws, .key = "b", .end = "a");
	check_refused(s, 0, EC_WATCH_EMPTY_RANGE, 1);
	WATCH(ws, .key = "a", .end = "a");
	check_refused(s, 1, EC_WATCH_EMPTY_RANGE, 1);
	WATCH(ws, .key = "a", .end = "a", .id = 3);
	check_refused(s, 2, EC_WATCH_EMPTY_RANGE, 1);
	cr_assert_eq(ec_hub_watchers(hub), 0);
	/* nothing was allocated an id */
	WATCH(ws, .key = "a");
	check_created(s, 3, 0, 1);
	put("a", "1");
	put("b", "1");
	cr_assert_eq(s->n, 5);
}

Test(watch, auto_ids_skip_client_ids)
{
	tsink *s;
	ec_wstream *ws = stream_new(&s);
	WATCH(ws, .key = "a", .id = 1);
	WATCH(ws, .key = "a");
	WATCH(ws, .key = "a");
	WATCH(ws, .key = "a", .id = 3);
	WATCH(ws, .key = "a");
	WATCH(ws, .key = "a", .id = 4); /* taken by the auto id before */
	check_created(s, 0, 1, 1);
	check_created(s, 1, 0, 1);
	check_created(s, 2, 2, 1);
	check_created(s, 3, 3, 1);
	check_created(s, 4, 4, 1);
	check_refused(s, 5, EC_WATCH_DUPLICATE_ID, 1);
	cr_assert_eq(ec_hub_watchers(hub), 5);
	put("a", "1");
	for (int64_t id = 0; id <= 4; id++)
		check_events(s, id, (wopt){.key = "a"}, 2, 2);
}

Test(watch, cancel_stops_events_and_unknown_ids_are_ignored)
{
	put("a", "0"); /* 2 */
	tsink *s;
	ec_wstream *ws = stream_new(&s);
	WATCH(ws, .key = "a");             /* 0 */
	WATCH(ws, .key = "a", .start = 2); /* 1: unsynced */
	put("a", "1");                     /* 3 */
	cancel(ws, 0);
	cr_assert_eq(s->n, 4);
	const Etcdserverpb__WatchResponse *r = s->r[3];
	cr_assert_eq(r->watch_id, 0);
	cr_assert(r->canceled);
	cr_assert_not(r->created);
	cr_assert_eq(r->compact_revision, 0);
	cr_assert_str_empty(r->cancel_reason);
	check_header(r, 3);
	cancel(ws, 1);
	cr_assert_eq(s->n, 5);
	cr_assert(s->r[4]->canceled);
	cr_assert_eq(s->r[4]->watch_id, 1);
	cr_assert_eq(ec_hub_unsynced(hub), 0);
	cr_assert_eq(ec_hub_watchers(hub), 0);
	cancel(ws, 42);
	cancel(ws, 0); /* already gone */
	cr_assert_eq(s->n, 5);
	put("a", "2");
	step_all();
	cr_assert_eq(s->n, 5);
	size_t n;
	Mvccpb__Event **ev = events_of(s, 0, 0, &n, NULL);
	cr_assert_eq(n, 1);
	free(ev);
	ev = events_of(s, 0, 1, &n, NULL);
	cr_assert_eq(n, 0, "the canceled unsynced watcher got %zu events", n);
	free(ev);
	/* an empty request is ignored */
	Etcdserverpb__WatchRequest e = ETCDSERVERPB__WATCH_REQUEST__INIT;
	cr_assert_eq(ec_hub_request(hub, ws, &e), ST_OK);
	cr_assert_eq(s->n, 5);
}

/* ---- progress
 * ---------------------------------------------------------------------------------------- */

Test(watch, progress_request_answered_at_once_when_synced)
{
	tsink *s;
	ec_wstream *ws = stream_new(&s);
	progress_req(ws); /* no watchers at all */
	check_progress(s, 0, -1, 1);
	WATCH(ws, .key = "a");
	put("a", "1");
	put("b", "1");
	progress_req(ws);
	cr_assert_eq(s->n, 4);
	check_progress(s, 3, -1, ec_hub_rev(hub));
	cr_assert_eq(ec_hub_rev(hub), 3);
}

Test(watch, progress_request_waits_for_catch_up)
{
	for (int i = 0; i < 4; i++)
		put("p", "v"); /* 2..5 */
	tsink *s, *o;
	ec_wstream *ws = stream_new(&s);
	ec_wstream *other = stream_new(&o);
	WATCH(ws, .key = "p", .start = 2);
	WATCH(other, .key = "p");
	progress_req(ws);
	cr_assert_eq(s->n, 1, "a progress request must wait while a watcher is behind");
	progress_req(other); /* another stream is not held up */
	cr_assert_eq(o->n, 2);
	check_progress(o, 1, -1, 5);
	put("p", "6"); /* 6 */
	cr_assert_eq(s->n, 1);
	step_all();
	cr_assert_eq(ec_hub_unsynced(hub), 0);
	check_events(s, 0, (wopt){.key = "p"}, 2, 6);
	/* answered after the events it vouches for, once */
	cr_assert_eq(s->n, 3);
	cr_assert_gt(s->r[1]->n_events, 0);
	check_progress(s, 2, -1, ec_hub_rev(hub));
	cr_assert_eq(ec_hub_rev(hub), 6);
	put("p", "7");
	step_all();
	cr_assert_eq(s->n, 4);
	cr_assert_eq(s->r[3]->n_events, 1);
}

/*
 * A progress request that waits for an unsynced watcher: once that watcher
 * is gone (canceled), every watcher of the stream is synced, and the answer
 * must come without waiting for some unrelated later write.
 */
Test(watch, progress_request_answered_when_the_unsynced_watcher_is_canceled)
{
	for (int i = 0; i < 3; i++)
		put("p", "v"); /* 2..4 */
	tsink *s;
	ec_wstream *ws = stream_new(&s);
	WATCH(ws, .key = "p", .start = 2); /* 0: behind */
	WATCH(ws, .key = "q");             /* 1: synced */
	progress_req(ws);
	cr_assert_eq(s->n, 2);
	cancel(ws, 0);
	cr_assert_geq(s->n, 3);
	cr_assert(s->r[2]->canceled);
	cr_assert_eq(s->r[2]->watch_id, 0);
	/* the watch thread steps until nothing can progress, then sleeps */
	step_all();
	cr_assert_eq(s->n, 4, "the progress request is still unanswered (%zu responses)", s->n);
	check_progress(s, 3, -1, ec_hub_rev(hub));
}

Test(watch, progress_tick_only_to_idle_progress_watchers)
{
	put("u", "0"); /* 2 */
	tsink *s;
	ec_wstream *ws = stream_new(&s);
	WATCH(ws, .key = "a", .progress = true);             /* 0 */
	WATCH(ws, .key = "b", .progress = true);             /* 1 */
	WATCH(ws, .key = "c");                               /* 2: no progress_notify */
	WATCH(ws, .key = "u", .progress = true, .start = 2); /* 3: unsynced */
	cr_assert_eq(ec_hub_unsynced(hub), 1);
	size_t base = s->n;
	ec_hub_progress_tick(hub);
	cr_assert_eq(s->n, base + 2, "first tick: the two synced progress watchers");
	check_progress(s, base, s->r[base]->watch_id, 2);
	check_progress(s, base + 1, s->r[base + 1]->watch_id, 2);
	cr_assert(s->r[base]->watch_id + s->r[base + 1]->watch_id == 1);
	put("a", "1"); /* 3 */
	base = s->n;
	ec_hub_progress_tick(hub);
	cr_assert_eq(s->n, base + 1, "watcher 0 was sent an event since the last tick");
	check_progress(s, base, 1, 3);
	base = s->n;
	ec_hub_progress_tick(hub);
	cr_assert_eq(s->n, base + 2);
	step_all(); /* watcher 3 catches up (one event) */
	cr_assert_eq(ec_hub_unsynced(hub), 0);
	base = s->n;
	ec_hub_progress_tick(hub);
	cr_assert_eq(s->n, base + 2, "watcher 3 was sent its catch-up since the last tick");
	base = s->n;
	ec_hub_progress_tick(hub);
	cr_assert_eq(s->n, base + 3);
	for (size_t i = base; i < s->n; i++) {
		cr_assert_neq(s->r[i]->watch_id, 2);
		check_progress(s, i, s->r[i]->watch_id, 3);
	}
}

/* ---- fragments
 * ---------------------------------------------------------------------------------------- */

static size_t varint_len(uint64_t v)
{
	size_t n = 1;
	while (v >= 0x80) {
		v >>= 7;
		n++;
	}
	return n;
}

/* Bytes an event adds to a WatchResponse (field 11, length-delimited). */
static size_t event_field_size(const Mvccpb__Event *e)
{
	size_t n = mvccpb__event__get_packed_size(e);
	return 1 + varint_len(n) + n;
}

/* Watch @id's responses on @s from index @first split one logical response of
 * @nev events exactly as etcd's sendFragments does with limit @lim. */
static void check_fragments(const tsink *s, size_t first, int64_t id, size_t nev, size_t lim)
{
	size_t got = 0, nfrag = 0;
	for (size_t i = first; i < s->n; i++) {
		const Etcdserverpb__WatchResponse *r = s->r[i];
		if (r->watch_id != id)
			continue;
		nfrag++;
		got += r->n_events;
		bool last = got == nev;
		cr_assert_eq(r->fragment, !last, "response %zu: fragment=%d, %zu of %zu events", i,
		             r->fragment, got, nev);
		if (r->n_events > 1)
			cr_assert_lt(s->size[i], lim, "a fragment of %zu events is %zu bytes",
			             r->n_events, s->size[i]);
		if (!last) {
			/* the next event would have reached the limit */
			size_t j = i + 1;
			while (s->r[j]->watch_id != id)
				j++;
			cr_assert_geq(s->size[i] + event_field_size(s->r[j]->events[0]), lim);
		}
		if (last)
			break;
	}
	cr_assert_eq(got, nev);
	cr_assert_geq(nfrag, 2);
}

Test(watch, fragments_split_a_big_txn_for_fragment_watchers_only)
{
	const size_t lim = 300;
	hub_make(lim, 0, 0);
	tsink *s;
	ec_wstream *ws = stream_new(&s);
	WATCH(ws, .key = "f", .end = "g", .fragment = true);                  /* 0 */
	WATCH(ws, .key = "f", .end = "g");                                    /* 1 */
	WATCH(ws, .key = "f", .end = "g", .fragment = true, .prev_kv = true); /* 2 */
	char v[41];
	memset(v, 'v', 40);
	v[40] = 0;
	st_txn *t = tx_begin();
	for (int i = 0; i < 20; i++) {
		char k[16];
		snprintf(k, sizeof(k), "f%02d", i);
		tx_put(t, k, v);
	}
	int64_t r1 = tx_commit(t);
	size_t base = 3;
	check_fragments(s, base, 0, 20, lim);
	check_events(s, 0, (wopt){.key = "f", .end = "g"}, 1, r1);
	cr_assert_eq(count_for(s, 1), 2, "a non-fragment watcher gets one response");
	for (size_t i = base; i < s->n; i++)
		if (s->r[i]->watch_id == 1) {
			cr_assert_eq(s->r[i]->n_events, 20);
			cr_assert_not(s->r[i]->fragment);
			cr_assert_geq(s->size[i], lim);
		}
	/* fragments keep the header of the whole response */
	for (size_t i = base; i < s->n; i++)
		check_header(s->r[i], r1);
	/* overwrite them all: now with prev_kv the events are bigger */
	size_t before = s->n;
	t = tx_begin();
	for (int i = 0; i < 20; i++) {
		char k[16];
		snprintf(k, sizeof(k), "f%02d", i);
		tx_put(t, k, v);
	}
	int64_t r2 = tx_commit(t);
	check_fragments(s, before, 0, 20, lim);
	check_fragments(s, before, 2, 20, lim);
	size_t n;
	Mvccpb__Event **ev = events_of(s, before, 2, &n, NULL);
	cr_assert_eq(n, 20);
	for (size_t i = 0; i < n; i++) {
		cr_assert_eq(ev[i]->kv->mod_revision, r2);
		cr_assert_not_null(ev[i]->prev_kv);
		cr_assert(bin_eq(ev[i]->prev_kv->key, ev[i]->kv->key.data, ev[i]->kv->key.len));
		cr_assert(bin_is(ev[i]->prev_kv->value, v));
		cr_assert_eq(ev[i]->prev_kv->mod_revision, r1);
	}
	free(ev);
	cr_assert_eq(count_for(s, 1), 3);
	/* under the limit: one response, no fragment flag */
	before = s->n;
	t = tx_begin();
	tx_put(t, "f00", "small");
	tx_put(t, "f01", "small");
	tx_commit(t);
	cr_assert_eq(s->n, before + 3);
	for (size_t i = before; i < s->n; i++) {
		cr_assert_eq(s->r[i]->n_events, 2);
		cr_assert_not(s->r[i]->fragment);
	}
	/* one event over the limit is never split (and never flagged) */
	char big[250];
	memset(big, 'b', sizeof(big) - 1);
	big[sizeof(big) - 1] = 0;
	before = s->n;
	put("f05", big);
	cr_assert_eq(s->n, before + 3);
	for (size_t i = before; i < s->n; i++) {
		cr_assert_eq(s->r[i]->n_events, 1);
		cr_assert_not(s->r[i]->fragment);
	}
	check_events(s, 0, (wopt){.key = "f", .end = "g"}, 1, cur_rev());
	check_events(s, 1, (wopt){.key = "f", .end = "g"}, 1, cur_rev());
	check_events(s, 2, (wopt){.key = "f", .end = "g"}, 1, cur_rev());
}

Test(watch, fragments_in_catch_up)
{
	const size_t lim = 300;
	hub_make(lim, 0, 0);
	char v[41];
	memset(v, 'v', 40);
	v[40] = 0;
	st_txn *t = tx_begin();
	for (int i = 0; i < 20; i++) {
		char k[16];
		snprintf(k, sizeof(k), "f%02d", i);
		tx_put(t, k, v);
	}
	int64_t r1 = tx_commit(t);
	put("f00", "one more");
	tsink *s;
	ec_wstream *ws = stream_new(&s);
	WATCH(ws, .key = "f", .end = "g", .fragment = true, .start = r1); /* 0 */
	WATCH(ws, .key = "f", .end = "g", .start = r1);                   /* 1 */
	step_all();
	/* one logical response of 21 events (two revisions) */
	check_fragments(s, 2, 0, 21, lim);
	check_events(s, 0, (wopt){.key = "f", .end = "g"}, r1, cur_rev());
	check_events(s, 1, (wopt){.key = "f", .end = "g"}, r1, cur_rev());
	cr_assert_eq(count_for(s, 1), 2);
}

/* Four puts of f0..f3 in one txn, for watcher 0 (fragment) of a fresh stream
 * under a hub with limit @lim; returns the sink. */
static tsink *fragment_round(size_t lim)
{
	hub_make(lim, 0, 0);
	tsink *s;
	ec_wstream *ws = stream_new(&s);
	WATCH(ws, .key = "f", .end = "g", .fragment = true);
	st_txn *t = tx_begin();
	for (int i = 0; i < 4; i++) {
		char k[4] = {'f', (char)('0' + i), 0, 0};
		tx_put(t, k, "0123456789");
	}
	tx_commit(t);
	return s;
}

/* etcd's sendFragments: no split while the whole response is under the limit
 * (Size() < max); a fragment takes one more event unless that makes it reach
 * the limit (>= max). Sizes are measured on a first round and the limit is
 * set to hit each boundary exactly (the later rounds encode to the same
 * sizes: same keys and values, revision numbers of the same length). */
Test(watch, fragment_limits_are_exact)
{
	tsink *m = fragment_round(1 << 20);
	cr_assert_eq(m->n, 2);
	const Etcdserverpb__WatchResponse *r = m->r[1];
	cr_assert_eq(r->n_events, 4);
	size_t whole = m->size[1], ev[4], evsum = 0;
	for (int i = 0; i < 4; i++)
		evsum += ev[i] = event_field_size(r->events[i]);
	size_t head = whole - evsum;
	/* one byte over the whole response: not split */
	tsink *s = fragment_round(whole + 1);
	cr_assert_eq(s->n, 2);
	cr_assert_not(s->r[1]->fragment);
	cr_assert_eq(s->size[1], whole);
	/* exactly the whole response: split */
	s = fragment_round(whole);
	cr_assert_gt(s->n, 2);
	check_fragments(s, 1, 0, 4, whole);
	/* two events + the flag exactly at the limit: the first fragment has one */
	size_t lim = head + 2 + ev[0] + ev[1];
	s = fragment_round(lim);
	cr_assert_eq(s->r[1]->n_events, 1, "a fragment reached the limit (%zu events, %zu bytes)",
	             s->r[1]->n_events, s->size[1]);
	check_fragments(s, 1, 0, 4, lim);
	/* one byte more: the first fragment takes two */
	s = fragment_round(lim + 1);
	cr_assert_eq(s->r[1]->n_events, 2);
	check_fragments(s, 1, 0, 4, lim + 1);
}

/* ---- publish: batches the hub partly has
 * -------------------------------------------------------------- */

/* A one-put st_events laid out as storage hands it over (freed by
 * st_events_free: the struct, ev and data_). */
static st_events *fake_put(int64_t rev, const char *k, const char *v)
{
	size_t kl = strlen(k), vl = strlen(v);
	st_events *e = calloc(1, sizeof(*e));
	e->data_ = malloc(kl + vl);
	memcpy(e->data_, k, kl);
	memcpy(e->data_ + kl, v, vl);
	e->ev = calloc(1, sizeof(*e->ev));
	e->ev[0] = (st_kv){.key = e->data_,
	                   .key_len = kl,
	                   .val = e->data_ + kl,
	                   .val_len = vl,
	                   .create_rev = rev,
	                   .mod_rev = rev,
	                   .version = 1};
	e->n = 1;
	e->first_rev = e->last_rev = rev;
	e->bytes = kl + vl;
	return e;
}

Test(watch, a_publish_overlapping_the_hub_revision_sends_only_the_new_part)
{
	tsink *s;
	ec_wstream *ws = stream_new(&s);
	WATCH(ws, .key = "o", .end = "p");
	put("o1", "a"); /* 2 */
	cr_assert_eq(ec_hub_rev(hub), 2);
	st_mvcc_set_events(db, NULL, NULL);
	put("o2", "b"); /* 3: the store moves, the hub learns below */
	st_mvcc_set_events(db, hook, hub);
	/* a batch of revisions 2 and 3 (as after a lost hand-over re-sent) */
	st_events *e = fake_put(2, "o1", "a");
	st_events *e3 = fake_put(3, "o2", "b");
	size_t k1 = e->ev[0].key_len + e->ev[0].val_len, k3 = e3->ev[0].key_len + e3->ev[0].val_len;
	uint8_t *d = malloc(k1 + k3);
	memcpy(d, e->data_, k1);
	memcpy(d + k1, e3->data_, k3);
	st_kv *ev = calloc(2, sizeof(*ev));
	ev[0] = e->ev[0];
	ev[1] = e3->ev[0];
	ev[0].key = d;
	ev[0].val = d + ev[0].key_len;
	ev[1].key = d + k1;
	ev[1].val = d + k1 + ev[1].key_len;
	st_events_free(e3);
	free(e->ev);
	free(e->data_);
	e->ev = ev;
	e->data_ = d;
	e->n = 2;
	e->last_rev = 3;
	e->bytes = k1 + k3;
	ec_hub_publish(hub, &e, 1);
	cr_assert_eq(ec_hub_rev(hub), 3);
	check_events(s, 0, (wopt){.key = "o", .end = "p"}, 2, 3);
	cr_assert_eq(count_for(s, 0), 3);
}

/* ---- slow streams
 * -------------------------------------------------------------------------------------- */

Test(watch, stalled_stream_falls_behind_alone_and_catches_up_exactly_once)
{
	hub_make(0, 1000, 0);
	tsink *a, *b;
	ec_wstream *wa = stream_new(&a);
	ec_wstream *wb = stream_new(&b);
	WATCH(wa, .key = "k", .end = "l"); /* A0 */
	WATCH(wa, .key = "z");             /* A1: nothing to receive yet */
	WATCH(wb, .key = "k", .end = "l"); /* B0 */
	a->queued = 5000;                  /* A's client stopped reading */
	put("k1", "1");
	put("k2", "2");
	put("k3", "3");
	cr_assert_eq(a->n, 2, "a stalled stream is sent nothing");
	check_events(b, 0, (wopt){.key = "k", .end = "l"}, 1, cur_rev());
	cr_assert_eq(count_for(b, 0), 4);
	cr_assert_eq(ec_hub_unsynced(hub), 1, "only the watcher that had something falls behind");
	cr_assert_not(ec_hub_step(hub), "nothing can progress while A is over budget");
	progress_req(wa); /* waits: A has a watcher behind */
	progress_req(wb);
	cr_assert_eq(a->n, 2);
	check_progress(b, 4, -1, 4);
	put("z", "z"); /* A1 has something now: behind as well */
	cr_assert_eq(ec_hub_unsynced(hub), 2);
	cr_assert_eq(a->n, 2);
	put("k4", "4");
	cr_assert_eq(count_for(b, 0), 5);
	/* A's client reads again */
	a->queued = 0;
	step_all();
	cr_assert_eq(ec_hub_unsynced(hub), 0);
	check_events(a, 0, (wopt){.key = "k", .end = "l"}, 1, cur_rev());
	check_events(a, 1, (wopt){.key = "z"}, 1, cur_rev());
	/* the progress answer comes after the catch-up */
	cr_assert_eq(a->n, 5);
	check_progress(a, 4, -1, ec_hub_rev(hub));
	put("k5", "5");
	check_events(a, 0, (wopt){.key = "k", .end = "l"}, 1, cur_rev());
	check_events(b, 0, (wopt){.key = "k", .end = "l"}, 1, cur_rev());
}

Test(watch, stall_during_catch_up_with_live_writes_between_rounds)
{
	hub_make(0, 1000, 1); /* one revision per round */
	for (int i = 0; i < 6; i++)
		put("k", "old"); /* 2..7 */
	tsink *a;
	ec_wstream *wa = stream_new(&a);
	WATCH(wa, .key = "k", .start = 2);
	cr_assert(ec_hub_step(hub)); /* revision 2 */
	put("k", "w1");              /* 8 */
	a->queued = 2000;            /* stalls mid catch-up */
	cr_assert_not(ec_hub_step(hub));
	put("k", "w2"); /* 9 */
	size_t n;
	Mvccpb__Event **ev = events_of(a, 0, 0, &n, NULL);
	cr_assert_eq(n, 1);
	free(ev);
	a->queued = 0;
	cr_assert(ec_hub_step(hub)); /* 3 */
	put("k", "w3");              /* 10 */
	cr_assert(ec_hub_step(hub)); /* 4 */
	a->queued = 2000;
	put("k", "w4"); /* 11 */
	cr_assert_not(ec_hub_step(hub));
	a->queued = 0;
	cr_assert_gt(step_all(), 0);
	cr_assert_eq(ec_hub_unsynced(hub), 0);
	put("k", "live"); /* 12 */
	check_events(a, 0, (wopt){.key = "k"}, 2, cur_rev());
	check_whole_revisions(a, 0);
}

/* ---- lost events: resync, gaps
 * ---------------------------------------------------------------------- */

Test(watch, resync_after_unpublished_commits)
{
	tsink *s;
	ec_wstream *ws = stream_new(&s);
	WATCH(ws, .key = "r", .end = "s");             /* 0 */
	WATCH(ws, .key = "r", .end = "s", .start = 6); /* 1: future */
	WATCH(ws, .key = "x");                         /* 2: untouched */
	st_mvcc_set_events(db, NULL, NULL);
	put("r1", "1"); /* 2 */
	put("r2", "2"); /* 3 */
	del("r1");      /* 4 */
	st_mvcc_set_events(db, hook, hub);
	cr_assert_eq(s->n, 3);
	cr_assert_eq(ec_hub_rev(hub), 1);
	ec_hub_resync(hub);
	cr_assert_eq(ec_hub_rev(hub), 4);
	step_all();
	cr_assert_eq(ec_hub_unsynced(hub), 0);
	check_events(s, 0, (wopt){.key = "r", .end = "s"}, 2, 4);
	cr_assert_eq(count_for(s, 1), 1);
	cr_assert_eq(count_for(s, 2), 1);
	put("r3", "3"); /* 5 */
	put("r4", "4"); /* 6 */
	check_events(s, 0, (wopt){.key = "r", .end = "s"}, 2, 6);
	check_events(s, 1, (wopt){.key = "r", .end = "s"}, 6, 6);
	cr_assert_eq(count_for(s, 2), 1);
}

Test(watch, a_gap_in_published_commits_resyncs)
{
	tsink *s;
	ec_wstream *ws = stream_new(&s);
	WATCH(ws, .key = "g", .end = "h", .prev_kv = true); /* 0 */
	WATCH(ws, .key = "x");                              /* 1 */
	put("g1", "0");                                     /* 2, published */
	drop_events = true;
	put("g1", "1"); /* 3: never reaches the hub */
	put("g2", "2"); /* 4: neither */
	drop_events = false;
	cr_assert_eq(ec_hub_rev(hub), 2);
	put("g3", "3"); /* 5: the hub sees 5 after 2 */
	cr_assert_eq(ec_hub_rev(hub), 5);
	step_all();
	cr_assert_eq(ec_hub_unsynced(hub), 0);
	check_events(s, 0, (wopt){.key = "g", .end = "h"}, 2, 5);
	size_t n;
	Mvccpb__Event **ev = events_of(s, 0, 0, &n, NULL);
	cr_assert_eq(n, 4);
	check_kv(ev[1]->prev_kv, "g1", "0", 2, 2, 1); /* from history, prev_kv too */
	free(ev);
	put("g4", "4");
	check_events(s, 0, (wopt){.key = "g", .end = "h"}, 2, 6);
	cr_assert_eq(count_for(s, 1), 1);
	/* a commit the hub already has, published again, is skipped */
	size_t before = s->n;
	st_events *a = fake_put(3, "g1", "again"), *b = fake_put(6, "g4", "again");
	ec_hub_publish(hub, &a, 1);
	ec_hub_publish(hub, &b, 1);
	cr_assert_eq(s->n, before);
	cr_assert_eq(ec_hub_rev(hub), 6);
	cr_assert_not(ec_hub_step(hub));
}

/* Many range watchers (the sorted, max-end view of the index): nested,
 * overlapping and disjoint ranges plus from-key ones; every event reaches
 * exactly the ranges that hold its key, live and in catch-up. */
Test(watch, many_ranges_match_exactly)
{
	enum { NR = 40 };
	static char keys[NR][8], ends[NR][8];
	tsink *s;
	ec_wstream *ws = stream_new(&s);
	wopt o[NR + 2];
	for (int i = 0; i < NR; i++) {
		snprintf(keys[i], sizeof(keys[i]), "r%02d", i);
		snprintf(ends[i], sizeof(ends[i]), "r%02d", i + 1 + (i * 7) % 13);
		o[i] = (wopt){.key = keys[i], .end = ends[i]};
	}
	o[NR] = (wopt){.key = "r25", FROMKEY};
	o[NR + 1] = (wopt){.key = "r", .end = "r05x"};
	for (int i = 0; i < NR + 2; i++)
		watch_o(ws, o[i]);
	int64_t first = put("a", "x") ;
	for (int i = 0; i < 60; i++) {
		char k[8];
		snprintf(k, sizeof(k), "r%02d", (i * 17) % 55);
		put(k, "v");
		if (i % 9 == 0)
			put("r05", "edge"); /* inside r05x's range, the end of r04's */
	}
	int64_t last = put("s", "after");
	for (int i = 0; i < NR + 2; i++)
		check_events(s, i, o[i], first, last);
	/* the same ranges caught up from history on a second stream */
	tsink *s2;
	ec_wstream *ws2 = stream_new(&s2);
	for (int i = 0; i < NR + 2; i++) {
		wopt h = o[i];
		h.start = first;
		watch_o(ws2, h);
	}
	step_all();
	for (int i = 0; i < NR + 2; i++)
		check_events(s2, i, o[i], first, last);
}

/* Commits published together (a watch thread that fell behind) reach each
 * watcher as ONE response holding all of its events, in order, with the header
 * at the last revision; a NULL entry is skipped. */
Test(watch, commits_published_together_make_one_response_per_watcher)
{
	tsink *s;
	ec_wstream *ws = stream_new(&s);
	WATCH(ws, .key = "m", .end = "n");
	WATCH(ws, .key = "m2");
	hold_events = true;
	put("m1", "a"); /* 2 */
	put("x", "b");  /* 3 */
	put("m2", "c"); /* 4 */
	put("m1", "d"); /* 5 */
	hold_events = false;
	cr_assert_eq(nheld, 4);
	st_events *all[5] = {held[0], held[1], NULL, held[2], held[3]};
	size_t before = s->n;
	ec_hub_publish(hub, all, 5);
	nheld = 0;
	cr_assert_eq(ec_hub_rev(hub), 5);
	cr_assert_eq(s->n, before + 2, "one response per watcher");
	check_events(s, 0, (wopt){.key = "m", .end = "n"}, 2, 5);
	check_events(s, 1, (wopt){.key = "m2"}, 2, 5);
	for (size_t i = before; i < s->n; i++)
		check_header(s->r[i], 5);
}

/* ---- scale, close
 * --------------------------------------------------------------------------------------- */

Test(watch, a_thousand_watchers_over_ten_streams_get_only_their_own, .timeout = 120)
{
	enum { NS = 10, NW = 1000 };
	tsink *s[NS];
	ec_wstream *ws[NS];
	for (int i = 0; i < NS; i++)
		ws[i] = stream_new(&s[i]);
	/* watcher i: key w%04d on stream i % NS, auto id i / NS; every tenth a prefix */
	for (int i = 0; i < NW; i++) {
		char k[16], e[16];
		snprintf(k, sizeof(k), "w%04d", i);
		if (i % 10 == 3) {
			snprintf(e, sizeof(e), "w%04d", i);
			e[4]++; /* prefix end of "w%04d" */
			WATCH(ws[i % NS], .key = k, .end = e);
		} else {
			WATCH(ws[i % NS], .key = k);
		}
	}
	cr_assert_eq(ec_hub_watchers(hub), NW);
	st_txn *t = tx_begin();
	for (int i = 0; i < NW; i++) {
		char k[16];
		snprintf(k, sizeof(k), "w%04d", i);
		tx_put(t, k, "txn");
	}
	tx_commit(t);
	for (int i = 0; i < 50; i++) {
		char k[16];
		snprintf(k, sizeof(k), "w%04d", (i * 37) % NW);
		put(k, "single");
	}
	put("w0003x", "prefix only"); /* only watcher 3's prefix */
	put("nobody", "x");
	/* the hook is lost for a while: resync catches 1000 watchers up (2 rounds) */
	st_mvcc_set_events(db, NULL, NULL);
	put("w0999", "lost");
	put("w0000", "lost");
	put("w0003", "lost");
	st_mvcc_set_events(db, hook, hub);
	ec_hub_resync(hub);
	cr_assert_eq(ec_hub_unsynced(hub), NW);
	cr_assert_geq(step_all(), 2);
	cr_assert_eq(ec_hub_unsynced(hub), 0);
	for (int i = 0; i < NW; i++) {
		char k[16], e[16];
		snprintf(k, sizeof(k), "w%04d", i);
		wopt o = {.key = k};
		if (i % 10 == 3) {
			memcpy(e, k, sizeof(e));
			e[4]++;
			o.end = e;
		}
		check_events(s[i % NS], i / NS, o, 1, cur_rev());
	}
	size_t total = 0;
	for (int i = 0; i < NS; i++)
		total += s[i]->n;
	/* 1000 created + 1000 for the txn + 50 + 1 + 3 */
	cr_assert_eq(total, 1000 + 1000 + 50 + 1 + 3);
}

Test(watch, stream_close_frees_its_watchers)
{
	put("k", "0"); /* 2 */
	tsink *a, *b;
	ec_wstream *wa = stream_new(&a);
	ec_wstream *wb = stream_new(&b);
	WATCH(wa, .key = "k");
	WATCH(wa, .key = "k", .end = "l");
	WATCH(wa, .key = "k", .start = 2); /* unsynced */
	WATCH(wa, .key = "a", FROMKEY);
	WATCH(wb, .key = "k");
	WATCH(wb, .key = "k", .start = 2); /* unsynced */
	progress_req(wa);                  /* pending when it closes */
	cr_assert_eq(ec_hub_watchers(hub), 6);
	cr_assert_eq(ec_hub_unsynced(hub), 2);
	ec_hub_stream_close(hub, wa);
	cr_assert_eq(ec_hub_watchers(hub), 2);
	cr_assert_eq(ec_hub_unsynced(hub), 1);
	size_t an = a->n;
	put("k", "1");
	step_all();
	cr_assert_eq(a->n, an, "nothing goes to a closed stream's sink");
	check_events(b, 0, (wopt){.key = "k"}, 3, 3);
	check_events(b, 1, (wopt){.key = "k"}, 2, 3);
	ec_hub_progress_tick(hub);
	progress_req(wb);
	cr_assert_eq(a->n, an);
	ec_hub_stream_close(hub, wb);
	cr_assert_eq(ec_hub_watchers(hub), 0);
	cr_assert_eq(ec_hub_unsynced(hub), 0);
	put("k", "2");
	cr_assert_not(ec_hub_step(hub));
}

Test(watch, a_gone_stream_is_harmless_until_closed)
{
	tsink *s;
	ec_wstream *ws = stream_new(&s);
	WATCH(ws, .key = "k");
	s->gone = true;
	put("k", "1");
	put("k", "2");
	WATCH(ws, .key = "k", .start = 2);
	step_all();
	ec_hub_stream_close(hub, ws);
	cr_assert_eq(ec_hub_watchers(hub), 0);
}

/* ---- sinks with flush
 * ----------------------------------------------------------------------------------- */

/* What a flush sink had before a hub call. */
typedef struct fmark {
	size_t n, nflush;
} fmark;

static fmark fmark_of(const tsink *s)
{
	return (fmark){.n = s->n, .nflush = s->nflush};
}

/* After one hub call from @m: a sink sent to got exactly one flush, after the
 * last of those sends; a sink sent nothing got none. */
static void check_round(const tsink *s, fmark m, const char *what)
{
	if (s->n == m.n) {
		cr_assert_eq(s->nflush, m.nflush,
		             "%s: flushed a stream it sent nothing (%zu flushes)", what,
		             s->nflush - m.nflush);
		return;
	}
	cr_assert_eq(s->nflush, m.nflush + 1, "%s: %zu sends, %zu flushes, want 1", what,
	             s->n - m.n, s->nflush - m.nflush);
	cr_assert_eq(s->n_at_flush, s->n, "%s: %zu sends after the flush", what,
	             s->n - s->n_at_flush);
}

Test(watch, publish_flushes_each_stream_sent_to_once_after_its_sends)
{
	tsink *a, *b, *c, *p;
	ec_wstream *wa = stream_new_on(&FSINK, &a);
	ec_wstream *wb = stream_new_on(&FSINK, &b);
	ec_wstream *wc = stream_new_on(&FSINK, &c);
	ec_wstream *wp = stream_new(&p); /* no flush: still served */
	fmark ma = fmark_of(a);
	WATCH(wa, .key = "k");
	check_round(a, ma, "create");
	cr_assert_eq(a->nflush, 1);
	WATCH(wa, .key = "k", .end = "l");
	WATCH(wb, .key = "k");
	WATCH(wc, .key = "z");
	WATCH(wp, .key = "k");
	cr_assert_eq(a->nflush, 2);
	cr_assert_eq(b->nflush, 1);
	cr_assert_eq(c->nflush, 1);

	/* two revisions in one publish: a gets two responses, b one, c none */
	hold_events = true;
	put("k", "1");  /* 2 */
	put("k2", "1"); /* 3 */
	hold_events = false;
	cr_assert_eq(nheld, 2);
	cr_assert_eq(a->nflush + b->nflush + c->nflush, 4, "a commit the hook kept was flushed");
	ma = fmark_of(a);
	fmark mb = fmark_of(b), mc = fmark_of(c);
	size_t pn = p->n;
	ec_hub_publish(hub, held, nheld);
	nheld = 0;
	cr_assert_eq(a->n, ma.n + 2);
	cr_assert_eq(b->n, mb.n + 1);
	cr_assert_eq(c->n, mc.n);
	cr_assert_eq(p->n, pn + 1);
	check_round(a, ma, "publish a");
	check_round(b, mb, "publish b");
	check_round(c, mc, "publish c");
	check_events(a, 0, (wopt){.key = "k"}, 2, 3);
	check_events(a, 1, (wopt){.key = "k", .end = "l"}, 2, 3);
	check_events(b, 0, (wopt){.key = "k"}, 2, 3);

	/* through the hook: a publish per commit, a flush per commit */
	ma = fmark_of(a);
	mb = fmark_of(b);
	mc = fmark_of(c);
	put("z", "1"); /* 4: c only */
	check_round(a, ma, "put z a");
	check_round(b, mb, "put z b");
	check_round(c, mc, "put z c");
	cr_assert_eq(c->nflush, mc.nflush + 1);
	cr_assert_eq(a->nflush, ma.nflush);
}

Test(watch, every_hub_call_flushes_what_it_sent)
{
	hub_make(0, 0, 1); /* catch-up in one-revision rounds */
	for (int i = 0; i < 5; i++)
		put("p", "v"); /* 2..6 */
	tsink *a, *b;
	ec_wstream *wa = stream_new_on(&FSINK, &a);
	ec_wstream *wb = stream_new_on(&FSINK, &b);
	fmark ma = fmark_of(a), mb = fmark_of(b);
	WATCH(wa, .key = "p", .progress = true); /* 0 */
	check_round(a, ma, "create");
	check_round(b, mb, "create, other stream");
	WATCH(wa, .key = "p", .start = 2);       /* 1: unsynced */
	WATCH(wb, .key = "q", .progress = true); /* 0 */
	cr_assert_eq(ec_hub_unsynced(hub), 1);
	ma = fmark_of(a);
	progress_req(wa); /* waits for watcher 1: sends nothing */
	check_round(a, ma, "waiting progress request");
	cr_assert_eq(a->n, ma.n);

	ma = fmark_of(a);
	mb = fmark_of(b);
	ec_hub_progress_tick(hub); /* a's watcher 0 and b's watcher 0 */
	cr_assert_gt(a->n, ma.n);
	cr_assert_gt(b->n, mb.n);
	check_round(a, ma, "progress tick a");
	check_round(b, mb, "progress tick b");

	int rounds = 0;
	for (;;) {
		ma = fmark_of(a);
		mb = fmark_of(b);
		bool more = ec_hub_step(hub);
		check_round(a, ma, "step a");
		check_round(b, mb, "step b");
		if (!more)
			break;
		cr_assert_lt(++rounds, 100);
	}
	cr_assert_gt(rounds, 1, "catch-up took a single round");
	cr_assert_eq(ec_hub_unsynced(hub), 0);
	check_events(a, 1, (wopt){.key = "p"}, 2, 6);
	check_progress(a, a->n - 1, -1, 6); /* answered at the end of catch-up */

	ma = fmark_of(a);
	cancel(wa, 1);
	check_round(a, ma, "cancel");
	cr_assert_eq(a->n, ma.n + 1);
	ma = fmark_of(a);
	cancel(wa, 42); /* unknown: nothing sent */
	check_round(a, ma, "cancel of an unknown id");

	mb = fmark_of(b);
	ec_hub_refuse(hub, wb, "too many watch streams");
	check_round(b, mb, "refuse");
	check_refused(b, b->n - 1, "too many watch streams", 6);
}

/*
 * A close finds sends pending only when a sink callback closes another
 * stream in the middle of a round's flushes: the hub must flush that stream's
 * pending sends first and must not touch it afterwards (ASan sees a stream
 * left on the hub's held list as a use after free).
 */
Test(watch, stream_close_flushes_pending_sends_first)
{
	tsink *a, *b, *c;
	ec_wstream *wa = stream_new_on(&FSINK, &a);
	ec_wstream *wb = stream_new_on(&FSINK, &b);
	ec_wstream *wc = stream_new_on(&FSINK, &c);
	WATCH(wa, .key = "k");
	WATCH(wb, .key = "k");
	WATCH(wc, .key = "k");
	/* whichever of a and b the hub flushes first closes the other one */
	a->close_on_flush = wb;
	a->peer = b;
	b->close_on_flush = wa;
	b->peer = a;
	fmark ma = fmark_of(a), mb = fmark_of(b), mc = fmark_of(c);
	put("k", "1"); /* 2: all three */
	cr_assert(a->close_on_flush == NULL && b->close_on_flush == NULL, "no flush closed a peer");
	tsink *closed = a->pending_at_close != 0 ? a : b;
	tsink *open = closed == a ? b : a;
	cr_assert_gt(closed->pending_at_close, 0, "the peer was closed with nothing pending");
	cr_assert_eq(closed->nflush, (closed == a ? ma : mb).nflush + 1,
	             "the closed stream's pending sends were not flushed");
	cr_assert_eq(closed->n_at_flush, closed->n);
	check_round(open, closed == a ? mb : ma, "the closing stream");
	check_round(c, mc, "a third stream");
	cr_assert_eq(ec_hub_watchers(hub), 2);

	/* a plain close (nothing pending) flushes nothing */
	mc = fmark_of(c);
	fmark mo = fmark_of(open);
	ec_hub_stream_close(hub, wc);
	cr_assert_eq(c->nflush, mc.nflush);
	cr_assert_eq(open->nflush, mo.nflush);
	put("k", "2");
	cr_assert_eq(c->n, mc.n);
	check_round(open, mo, "after the closes");
	cr_assert_eq(open->n, mo.n + 1);
}
