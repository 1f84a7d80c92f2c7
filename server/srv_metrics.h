/*
 * srv_metrics: the counters, gauges and histograms metastore exports on
 * /metrics, and their rendering in Prometheus' text format (version 0.0.4).
 *
 * Instrumented code updates plain structs with relaxed atomic adds: no lock, no
 * allocation, no call per event beyond the add (srv_counter_add,
 * srv_hist_observe). Names, help texts, types and label sets are etcd 3.4's
 * (etcdserver/metrics.go, wal, mvcc/backend, rafthttp) and grpc-prometheus's,
 * so dashboards and alerts written for etcd read metastore unchanged.
 *
 * Three kinds of state:
 *   - srv_mserver, one process-wide struct for what happens in the node loop
 *     and the peer transport (leader changes, proposals, fsync and apply-batch
 *     durations, peer round trips), as etcd's package-level collectors;
 *   - srv_metrics_grpc, one table per gRPC server (srv_rpc creates it when
 *     asked): started / handled by code / messages, per method;
 *   - values read only when scraped (leader, raft indexes, database size,
 *     process_*): the scrape's collector asks the node and /proc then
 *     (srv_metrics_process renders the process_* family).
 *
 * Rendering goes into a growable buffer (srv_mbuf) through the helpers below,
 * one family at a time: srv_metrics_family writes the HELP and TYPE lines,
 * then samples follow. Floating values print as Go's client does for
 * integers-valued samples ("1", "0") and with 17 significant digits otherwise.
 *
 * Threads: every update and every render is safe from any thread. A render
 * reads each atomic once, relaxed: a scrape racing an update may see a
 * histogram's sum a step behind its count (Prometheus tolerates this; its Go
 * client has the same window), never a count below a bucket.
 */
#ifndef METASTORE_SRV_METRICS_H
#define METASTORE_SRV_METRICS_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- output buffer ----------------------------------------------------------- */

/* A growable text buffer. Zero-initialise; free with srv_mbuf_free. Out of
 * memory sets .oom and drops later output (the text so far stays valid). */
typedef struct srv_mbuf {
	char *p; /* NUL-terminated when len > 0 */
	size_t len, cap;
	bool oom;
} srv_mbuf;

void srv_mbuf_printf(srv_mbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void srv_mbuf_free(srv_mbuf *b);

/* ---- primitives ----------------------------------------------------------------- */

typedef struct srv_counter {
	atomic_uint_fast64_t v;
} srv_counter;

typedef struct srv_gauge {
	atomic_int_fast64_t v;
} srv_gauge;

static inline void srv_counter_add(srv_counter *c, uint64_t d)
{
	atomic_fetch_add_explicit(&c->v, d, memory_order_relaxed);
}

static inline uint64_t srv_counter_get(const srv_counter *c)
{
	return atomic_load_explicit(&((srv_counter *)c)->v, memory_order_relaxed);
}

static inline void srv_gauge_add(srv_gauge *g, int64_t d)
{
	atomic_fetch_add_explicit(&g->v, d, memory_order_relaxed);
}

static inline void srv_gauge_set(srv_gauge *g, int64_t v)
{
	atomic_store_explicit(&g->v, v, memory_order_relaxed);
}

static inline int64_t srv_gauge_get(const srv_gauge *g)
{
	return atomic_load_explicit(&((srv_gauge *)g)->v, memory_order_relaxed);
}

#define SRV_HIST_MAX_BUCKETS 16

/*
 * A histogram over integer observations (nanoseconds for every histogram here).
 * bounds[0..n) are the inclusive upper bounds of the buckets, increasing, in
 * the unit of observations; rendering divides bounds and sum by .scale (1e9:
 * seconds). counts[n] is the +Inf bucket. Fill bounds/n/scale once (e.g. with
 * SRV_HIST_EXP2 or srv_hist_init_exp2) before the first observation.
 */
typedef struct srv_hist {
	uint64_t bounds[SRV_HIST_MAX_BUCKETS];
	size_t n;
	double scale;
	atomic_uint_fast64_t counts[SRV_HIST_MAX_BUCKETS + 1]; /* not cumulative */
	atomic_uint_fast64_t sum;
} srv_hist;

/* srv_hist_init_exp2 - @n buckets (at most SRV_HIST_MAX_BUCKETS) with bounds
 * @start, 2*@start, 4*@start, ... (Prometheus' ExponentialBuckets(start, 2, n)),
 * rendered divided by @scale; counts zeroed. Not thread-safe (set up once). */
void srv_hist_init_exp2(srv_hist *h, uint64_t start, size_t n, double scale);

/* srv_hist_observe - count one observation @v (same unit as the bounds). */
void srv_hist_observe(srv_hist *h, uint64_t v);

/* srv_hist_count - observations so far (the sum of every bucket). */
uint64_t srv_hist_count(const srv_hist *h);

/* srv_now_ns - a monotonic clock in nanoseconds, for timing observations. */
uint64_t srv_now_ns(void);

/* ---- rendering ------------------------------------------------------------------ */

/* srv_metrics_family - "# HELP name help" and "# TYPE name type" (@type is
 * "counter", "gauge" or "histogram"); @help is escaped as the format asks. */
void srv_metrics_family(srv_mbuf *b, const char *name, const char *help, const char *type);

/* srv_metrics_sample - one sample line: "name{labels} value". @labels is the
 * text between the braces, already escaped (see srv_metrics_label), or NULL /
 * "" for none. */
void srv_metrics_sample(srv_mbuf *b, const char *name, const char *labels, double v);

/* srv_metrics_hist - the _bucket (cumulative, with le), _sum and _count lines of
 * @h, with @labels (as srv_metrics_sample) before "le". */
void srv_metrics_hist(srv_mbuf *b, const char *name, const char *labels, const srv_hist *h);

/* srv_metrics_label - append name="value" to @out (@cap bytes, NUL-terminated,
 * a comma first when @out is not empty), escaping \, " and newline in @value.
 * Returns 0, or -1 when it does not fit (@out unchanged). */
int srv_metrics_label(char *out, size_t cap, const char *name, const char *value);

/* srv_metrics_process - the process_* family as Prometheus' process collector
 * (cpu seconds, open and max fds, resident and virtual memory, start time),
 * read from /proc/self now. Families it cannot read are left out. */
void srv_metrics_process(srv_mbuf *b);

/* ---- the node loop and the transport -------------------------------------------- */

#define SRV_METRICS_MAX_PEERS 64

typedef struct srv_metrics_server {
	srv_counter leader_changes;   /* etcd_server_leader_changes_seen_total */
	srv_gauge proposals_pending;  /* etcd_server_proposals_pending */
	srv_counter proposals_failed; /* etcd_server_proposals_failed_total */
	srv_counter health_success;   /* etcd_server_health_success */
	srv_counter health_failures;  /* etcd_server_health_failures */
	srv_hist wal_fsync;           /* etcd_disk_wal_fsync_duration_seconds (ns) */
	srv_hist backend_commit;      /* etcd_disk_backend_commit_duration_seconds (ns) */
	/* etcd_network_peer_round_trip_time_seconds{To}: one slot per peer,
	 * claimed by its first observation (id 0 = free). */
	struct {
		atomic_uint_fast64_t id;
		srv_hist rtt;
	} peer[SRV_METRICS_MAX_PEERS];
} srv_metrics_server;

/* The process's one instance, its histograms' buckets already etcd's. */
extern srv_metrics_server srv_mserver;

/* srv_metrics_peer_rtt - count one round trip of @ns to peer @to (non-zero).
 * Peers past SRV_METRICS_MAX_PEERS distinct ids are not counted. */
void srv_metrics_peer_rtt(uint64_t to, uint64_t ns);

/* srv_metrics_server_render - every family of srv_mserver, etcd's names. */
void srv_metrics_server_render(srv_mbuf *b);

/* ---- gRPC servers (grpc-prometheus) ----------------------------------------------- */

typedef struct srv_metrics_grpc srv_metrics_grpc;

/* grpc_type label values, as grpc-prometheus names them. */
typedef enum {
	SRV_GRPC_UNARY = 0,
	SRV_GRPC_CLIENT_STREAM,
	SRV_GRPC_SERVER_STREAM,
	SRV_GRPC_BIDI_STREAM,
} srv_grpc_type;

#define SRV_GRPC_N_CODES 17 /* OK .. Unauthenticated */

/*
 * srv_metrics_grpc_new - a table for @n methods: @names[i] is the full method
 * name ("/etcdserverpb.KV/Range", copied), @types[i] its grpc_type. Every
 * method is rendered from the start with zero values, as grpc-prometheus
 * pre-registers a server's methods. Returns NULL on out of memory or a name
 * that is not "/service/method".
 */
srv_metrics_grpc *srv_metrics_grpc_new(const char *const *names, const srv_grpc_type *types,
                                       size_t n);
void srv_metrics_grpc_free(srv_metrics_grpc *g);

/* Events of method @i (ignored when @g is NULL or @i out of range): a call
 * started; it ended with gRPC status @code (0..16; others count as Unknown); a
 * message received from the client / sent to it. */
void srv_metrics_grpc_started(srv_metrics_grpc *g, size_t i);
void srv_metrics_grpc_handled(srv_metrics_grpc *g, size_t i, int code);
void srv_metrics_grpc_msg_received(srv_metrics_grpc *g, size_t i);
void srv_metrics_grpc_msg_sent(srv_metrics_grpc *g, size_t i);

/* srv_metrics_grpc_code_name - grpc-go's name of status @code ("OK",
 * "Canceled", ... "Unauthenticated"; "Unknown" out of range). */
const char *srv_metrics_grpc_code_name(int code);

/* srv_metrics_grpc_render - the four grpc_server_* families of @g. NULL renders
 * nothing. */
void srv_metrics_grpc_render(const srv_metrics_grpc *g, srv_mbuf *b);

#endif
