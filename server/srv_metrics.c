/*
 * srv_metrics.c: the metric primitives, the process-wide server metrics, the
 * per-server gRPC tables and their Prometheus text rendering (srv_metrics.h).
 */
#include "server/srv_metrics.h"

#include <dirent.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

/* ---- buffer ---------------------------------------------------------------------- */

void srv_mbuf_printf(srv_mbuf *b, const char *fmt, ...)
{
	if (b->oom)
		return;
	for (;;) {
		size_t room = b->cap - b->len;
		va_list ap;
		va_start(ap, fmt);
		int w = vsnprintf(room ? b->p + b->len : NULL, room, fmt, ap);
		va_end(ap);
		if (w < 0) {
			b->oom = true;
			return;
		}
		if ((size_t)w < room) {
			b->len += (size_t)w;
			return;
		}
		size_t ncap = b->cap ? b->cap * 2 : 4096;
		while (ncap - b->len <= (size_t)w)
			ncap *= 2;
		char *np = realloc(b->p, ncap);
		if (np == NULL) {
			b->oom = true;
			return;
		}
		b->p = np;
		b->cap = ncap;
	}
}

void srv_mbuf_free(srv_mbuf *b)
{
	free(b->p);
	memset(b, 0, sizeof *b);
}

/* ---- histograms -------------------------------------------------------------------- */

void srv_hist_init_exp2(srv_hist *h, uint64_t start, size_t n, double scale)
{
	if (n > SRV_HIST_MAX_BUCKETS)
		n = SRV_HIST_MAX_BUCKETS;
	memset(h, 0, sizeof *h);
	for (size_t i = 0; i < n; i++)
		h->bounds[i] = start << i;
	h->n = n;
	h->scale = scale;
}

void srv_hist_observe(srv_hist *h, uint64_t v)
{
	size_t i = 0;
	while (i < h->n && v > h->bounds[i])
		i++;
	atomic_fetch_add_explicit(&h->counts[i], 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&h->sum, v, memory_order_relaxed);
}

uint64_t srv_hist_count(const srv_hist *h)
{
	uint64_t c = 0;
	for (size_t i = 0; i <= h->n; i++)
		c += atomic_load_explicit(&((srv_hist *)h)->counts[i], memory_order_relaxed);
	return c;
}

uint64_t srv_now_ns(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

/* ---- rendering ---------------------------------------------------------------------- */

/* A float as Go's strconv 'g' with the shortest precision that reads back the
 * same (what Prometheus' Go client writes). */
static void fmt_value(char *out, size_t cap, double v)
{
	if (isnan(v)) {
		snprintf(out, cap, "NaN");
		return;
	}
	if (isinf(v)) {
		snprintf(out, cap, v > 0 ? "+Inf" : "-Inf");
		return;
	}
	if (v == floor(v) && fabs(v) < 1e15) {
		snprintf(out, cap, "%.0f", v);
		return;
	}
	for (int prec = 1; prec <= 17; prec++) {
		snprintf(out, cap, "%.*g", prec, v);
		if (strtod(out, NULL) == v)
			return;
	}
}

void srv_metrics_family(srv_mbuf *b, const char *name, const char *help, const char *type)
{
	srv_mbuf_printf(b, "# HELP %s ", name);
	for (const char *p = help; *p; p++) {
		if (*p == '\\')
			srv_mbuf_printf(b, "\\\\");
		else if (*p == '\n')
			srv_mbuf_printf(b, "\\n");
		else
			srv_mbuf_printf(b, "%c", *p);
	}
	srv_mbuf_printf(b, "\n# TYPE %s %s\n", name, type);
}

void srv_metrics_sample(srv_mbuf *b, const char *name, const char *labels, double v)
{
	char val[64];
	fmt_value(val, sizeof val, v);
	if (labels != NULL && *labels)
		srv_mbuf_printf(b, "%s{%s} %s\n", name, labels, val);
	else
		srv_mbuf_printf(b, "%s %s\n", name, val);
}

void srv_metrics_hist(srv_mbuf *b, const char *name, const char *labels, const srv_hist *h)
{
	srv_hist *m = (srv_hist *)h;
	const char *sep = labels != NULL && *labels ? "," : "";
	const char *lab = labels != NULL ? labels : "";
	uint64_t cum = 0;
	char le[64];
	for (size_t i = 0; i <= h->n; i++) {
		cum += atomic_load_explicit(&m->counts[i], memory_order_relaxed);
		if (i < h->n)
			fmt_value(le, sizeof le, (double)h->bounds[i] / h->scale);
		else
			snprintf(le, sizeof le, "+Inf");
		srv_mbuf_printf(b, "%s_bucket{%s%sle=\"%s\"} %llu\n", name, lab, sep, le,
		                (unsigned long long)cum);
	}
	char val[64];
	fmt_value(val, sizeof val,
	          (double)atomic_load_explicit(&m->sum, memory_order_relaxed) / h->scale);
	if (*lab) {
		srv_mbuf_printf(b, "%s_sum{%s} %s\n", name, lab, val);
		srv_mbuf_printf(b, "%s_count{%s} %llu\n", name, lab, (unsigned long long)cum);
	} else {
		srv_mbuf_printf(b, "%s_sum %s\n", name, val);
		srv_mbuf_printf(b, "%s_count %llu\n", name, (unsigned long long)cum);
	}
}

int srv_metrics_label(char *out, size_t cap, const char *name, const char *value)
{
	size_t o = strlen(out), start = o;
	int w = snprintf(out + o, cap - o, "%s%s=\"", o ? "," : "", name);
	if (w < 0 || (size_t)w >= cap - o)
		goto full;
	o += (size_t)w;
	for (const char *p = value; *p; p++) {
		const char *esc = *p == '\\'   ? "\\\\"
		                  : *p == '"'  ? "\\\""
		                  : *p == '\n' ? "\\n"
		                               : NULL;
		size_t need = esc ? 2 : 1;
		if (o + need + 2 > cap)
			goto full;
		if (esc) {
			memcpy(out + o, esc, 2);
		} else {
			out[o] = *p;
		}
		o += need;
	}
	if (o + 2 > cap)
		goto full;
	out[o++] = '"';
	out[o] = '\0';
	return 0;
full:
	out[start] = '\0';
	return -1;
}

/* ---- process_* -------------------------------------------------------------------------- */

static int count_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	if (d == NULL)
		return -1;
	int n = 0;
	struct dirent *e;
	while ((e = readdir(d)) != NULL)
		if (e->d_name[0] != '.')
			n++;
	closedir(d);
	return n - 1; /* not the directory's own descriptor */
}

static double boot_time(void)
{
	FILE *f = fopen("/proc/stat", "r");
	if (f == NULL)
		return -1;
	char line[256];
	double bt = -1;
	while (fgets(line, sizeof line, f)) {
		unsigned long long v;
		if (sscanf(line, "btime %llu", &v) == 1) {
			bt = (double)v;
			break;
		}
	}
	fclose(f);
	return bt;
}

void srv_metrics_process(srv_mbuf *b)
{
	char buf[1024];
	FILE *f = fopen("/proc/self/stat", "r");
	size_t n = f ? fread(buf, 1, sizeof buf - 1, f) : 0;
	if (f)
		fclose(f);
	buf[n] = '\0';
	const char *rp = strrchr(buf, ')');
	unsigned long long utime = 0, stime = 0, start = 0, vsize = 0;
	long long rss = 0;
	bool stat_ok = rp != NULL &&
	               sscanf(rp + 2,
	                      "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu %*d %*d %*d "
	                      "%*d %*d %*d %llu %llu %lld",
	                      &utime, &stime, &start, &vsize, &rss) == 5;
	double tck = (double)sysconf(_SC_CLK_TCK);
	if (stat_ok && tck > 0) {
		srv_metrics_family(b, "process_cpu_seconds_total",
		                   "Total user and system CPU time spent in seconds.", "counter");
		srv_metrics_sample(b, "process_cpu_seconds_total", NULL,
		                   (double)(utime + stime) / tck);
	}
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
		srv_metrics_family(b, "process_max_fds", "Maximum number of open file descriptors.",
		                   "gauge");
		srv_metrics_sample(b, "process_max_fds", NULL, (double)rl.rlim_cur);
	}
	int fds = count_fds();
	if (fds >= 0) {
		srv_metrics_family(b, "process_open_fds", "Number of open file descriptors.",
		                   "gauge");
		srv_metrics_sample(b, "process_open_fds", NULL, fds);
	}
	if (stat_ok) {
		srv_metrics_family(b, "process_resident_memory_bytes",
		                   "Resident memory size in bytes.", "gauge");
		srv_metrics_sample(b, "process_resident_memory_bytes", NULL,
		                   (double)rss * (double)sysconf(_SC_PAGESIZE));
		double bt = boot_time();
		if (bt >= 0 && tck > 0) {
			srv_metrics_family(b, "process_start_time_seconds",
			                   "Start time of the process since unix epoch in seconds.",
			                   "gauge");
			srv_metrics_sample(b, "process_start_time_seconds", NULL,
			                   bt + (double)start / tck);
		}
		srv_metrics_family(b, "process_virtual_memory_bytes",
		                   "Virtual memory size in bytes.", "gauge");
		srv_metrics_sample(b, "process_virtual_memory_bytes", NULL, (double)vsize);
	}
	if (getrlimit(RLIMIT_AS, &rl) == 0) {
		srv_metrics_family(b, "process_virtual_memory_max_bytes",
		                   "Maximum amount of virtual memory available in bytes.", "gauge");
		srv_metrics_sample(b, "process_virtual_memory_max_bytes", NULL,
		                   rl.rlim_cur == RLIM_INFINITY ? 18446744073709551615.0
		                                                : (double)rl.rlim_cur);
	}
}

/* ---- the server's metrics ----------------------------------------------------------------- */

/* etcd's disk histograms: ExponentialBuckets(0.001, 2, 14), in nanoseconds. */
#define DISK_BUCKETS                                                                          \
	{                                                                                     \
		1000000ull, 2000000ull, 4000000ull, 8000000ull, 16000000ull, 32000000ull,     \
		        64000000ull, 128000000ull, 256000000ull, 512000000ull, 1024000000ull, \
		        2048000000ull, 4096000000ull, 8192000000ull                           \
	}
/* rafthttp's RTT: ExponentialBuckets(0.0001, 2, 16). */
#define RTT_START_NS 100000ull
#define RTT_BUCKETS  16

srv_metrics_server srv_mserver = {
        .wal_fsync = {.bounds = DISK_BUCKETS, .n = 14, .scale = 1e9},
        .backend_commit = {.bounds = DISK_BUCKETS, .n = 14, .scale = 1e9},
};

/* Every RTT slot's buckets, set once before the first slot is claimed. */
static pthread_once_t rtt_once = PTHREAD_ONCE_INIT;

static void rtt_init(void)
{
	for (size_t i = 0; i < SRV_METRICS_MAX_PEERS; i++)
		srv_hist_init_exp2(&srv_mserver.peer[i].rtt, RTT_START_NS, RTT_BUCKETS, 1e9);
}

void srv_metrics_peer_rtt(uint64_t to, uint64_t ns)
{
	if (to == 0)
		return;
	pthread_once(&rtt_once, rtt_init);
	for (size_t i = 0; i < SRV_METRICS_MAX_PEERS; i++) {
		uint_fast64_t id =
		        atomic_load_explicit(&srv_mserver.peer[i].id, memory_order_acquire);
		/* A free slot is claimed once and never given back. */
		if (id == 0 && atomic_compare_exchange_strong(&srv_mserver.peer[i].id, &id, to))
			id = to;
		if (id == to) {
			srv_hist_observe(&srv_mserver.peer[i].rtt, ns);
			return;
		}
	}
}

static void sample_counter(srv_mbuf *b, const char *name, const char *help, const srv_counter *c)
{
	srv_metrics_family(b, name, help, "counter");
	srv_metrics_sample(b, name, NULL, (double)srv_counter_get(c));
}

void srv_metrics_server_render(srv_mbuf *b)
{
	srv_metrics_server *m = &srv_mserver;
	srv_metrics_family(b, "etcd_disk_backend_commit_duration_seconds",
	                   "The latency distributions of commit called by backend.", "histogram");
	srv_metrics_hist(b, "etcd_disk_backend_commit_duration_seconds", NULL, &m->backend_commit);
	srv_metrics_family(b, "etcd_disk_wal_fsync_duration_seconds",
	                   "The latency distributions of fsync called by WAL.", "histogram");
	srv_metrics_hist(b, "etcd_disk_wal_fsync_duration_seconds", NULL, &m->wal_fsync);
	bool any_peer = false;
	for (size_t i = 0; i < SRV_METRICS_MAX_PEERS; i++) {
		uint64_t id = atomic_load_explicit(&m->peer[i].id, memory_order_acquire);
		if (id == 0)
			continue;
		if (!any_peer)
			srv_metrics_family(b, "etcd_network_peer_round_trip_time_seconds",
			                   "Round-Trip-Time histogram between peers", "histogram");
		any_peer = true;
		char hex[20], lab[64] = "";
		snprintf(hex, sizeof hex, "%llx", (unsigned long long)id);
		srv_metrics_label(lab, sizeof lab, "To", hex);
		srv_metrics_hist(b, "etcd_network_peer_round_trip_time_seconds", lab,
		                 &m->peer[i].rtt);
	}
	sample_counter(b, "etcd_server_health_failures", "The total number of failed health checks",
	               &m->health_failures);
	sample_counter(b, "etcd_server_health_success",
	               "The total number of successful health checks", &m->health_success);
	sample_counter(b, "etcd_server_leader_changes_seen_total",
	               "The number of leader changes seen.", &m->leader_changes);
	sample_counter(b, "etcd_server_proposals_failed_total",
	               "The total number of failed proposals seen.", &m->proposals_failed);
	srv_metrics_family(b, "etcd_server_proposals_pending",
	                   "The current number of pending proposals to commit.", "gauge");
	srv_metrics_sample(b, "etcd_server_proposals_pending", NULL,
	                   (double)srv_gauge_get(&m->proposals_pending));
}

/* ---- gRPC tables ----------------------------------------------------------------------------- */

typedef struct grpc_row {
	char *service; /* "etcdserverpb.KV" */
	char *method;  /* "Range" */
	srv_grpc_type type;
	srv_counter started, received, sent;
	srv_counter handled[SRV_GRPC_N_CODES];
} grpc_row;

struct srv_metrics_grpc {
	size_t n;
	grpc_row *rows;
};

static const char *const code_names[SRV_GRPC_N_CODES] = {
        "OK",
        "Canceled",
        "Unknown",
        "InvalidArgument",
        "DeadlineExceeded",
        "NotFound",
        "AlreadyExists",
        "PermissionDenied",
        "ResourceExhausted",
        "FailedPrecondition",
        "Aborted",
        "OutOfRange",
        "Unimplemented",
        "Internal",
        "Unavailable",
        "DataLoss",
        "Unauthenticated",
};

static const char *const type_names[] = {"unary", "client_stream", "server_stream", "bidi_stream"};

const char *srv_metrics_grpc_code_name(int code)
{
	return code >= 0 && code < SRV_GRPC_N_CODES ? code_names[code] : "Unknown";
}

void srv_metrics_grpc_free(srv_metrics_grpc *g)
{
	if (g == NULL)
		return;
	for (size_t i = 0; i < g->n; i++) {
		free(g->rows[i].service);
		free(g->rows[i].method);
	}
	free(g->rows);
	free(g);
}

srv_metrics_grpc *srv_metrics_grpc_new(const char *const *names, const srv_grpc_type *types,
                                       size_t n)
{
	srv_metrics_grpc *g = calloc(1, sizeof *g);
	if (g == NULL || (g->rows = calloc(n ? n : 1, sizeof *g->rows)) == NULL) {
		free(g);
		return NULL;
	}
	for (size_t i = 0; i < n; i++, g->n++) {
		const char *full = names[i];
		const char *slash = full && full[0] == '/' ? strchr(full + 1, '/') : NULL;
		if (slash == NULL || slash == full + 1 || slash[1] == '\0' ||
		    (unsigned)types[i] > SRV_GRPC_BIDI_STREAM) {
			srv_metrics_grpc_free(g);
			return NULL;
		}
		grpc_row *r = &g->rows[i];
		r->service = strndup(full + 1, (size_t)(slash - full - 1));
		r->method = strdup(slash + 1);
		r->type = types[i];
		if (r->service == NULL || r->method == NULL) {
			g->n++;
			srv_metrics_grpc_free(g);
			return NULL;
		}
	}
	return g;
}

void srv_metrics_grpc_started(srv_metrics_grpc *g, size_t i)
{
	if (g != NULL && i < g->n)
		srv_counter_add(&g->rows[i].started, 1);
}

void srv_metrics_grpc_handled(srv_metrics_grpc *g, size_t i, int code)
{
	if (g == NULL || i >= g->n)
		return;
	if (code < 0 || code >= SRV_GRPC_N_CODES)
		code = 2; /* Unknown */
	srv_counter_add(&g->rows[i].handled[code], 1);
}

void srv_metrics_grpc_msg_received(srv_metrics_grpc *g, size_t i)
{
	if (g != NULL && i < g->n)
		srv_counter_add(&g->rows[i].received, 1);
}

void srv_metrics_grpc_msg_sent(srv_metrics_grpc *g, size_t i)
{
	if (g != NULL && i < g->n)
		srv_counter_add(&g->rows[i].sent, 1);
}

/* The labels of row @r (and code @code when >= 0), grpc-prometheus's order. */
static void grpc_labels(const grpc_row *r, int code, char *out, size_t cap)
{
	out[0] = '\0';
	if (code >= 0)
		srv_metrics_label(out, cap, "grpc_code", code_names[code]);
	srv_metrics_label(out, cap, "grpc_method", r->method);
	srv_metrics_label(out, cap, "grpc_service", r->service);
	srv_metrics_label(out, cap, "grpc_type", type_names[r->type]);
}

static void grpc_family(const srv_metrics_grpc *g, srv_mbuf *b, const char *name, const char *help,
                        size_t counter_offset)
{
	char lab[512];
	srv_metrics_family(b, name, help, "counter");
	for (size_t i = 0; i < g->n; i++) {
		const grpc_row *r = &g->rows[i];
		grpc_labels(r, -1, lab, sizeof lab);
		const srv_counter *c = (const srv_counter *)((const char *)r + counter_offset);
		srv_metrics_sample(b, name, lab, (double)srv_counter_get(c));
	}
}

void srv_metrics_grpc_render(const srv_metrics_grpc *g, srv_mbuf *b)
{
	if (g == NULL)
		return;
	char lab[512];
	srv_metrics_family(b, "grpc_server_handled_total",
	                   "Total number of RPCs completed on the server, regardless of success or "
	                   "failure.",
	                   "counter");
	for (size_t i = 0; i < g->n; i++) {
		const grpc_row *r = &g->rows[i];
		for (int c = 0; c < SRV_GRPC_N_CODES; c++) {
			grpc_labels(r, c, lab, sizeof lab);
			srv_metrics_sample(b, "grpc_server_handled_total", lab,
			                   (double)srv_counter_get(&r->handled[c]));
		}
	}
	grpc_family(g, b, "grpc_server_msg_received_total",
	            "Total number of RPC stream messages received on the server.",
	            offsetof(grpc_row, received));
	grpc_family(g, b, "grpc_server_msg_sent_total",
	            "Total number of gRPC stream messages sent by the server.",
	            offsetof(grpc_row, sent));
	grpc_family(g, b, "grpc_server_started_total",
	            "Total number of RPCs started on the server.", offsetof(grpc_row, started));
}
