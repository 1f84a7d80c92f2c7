/*
 * msbench: a closed-loop load generator for etcd's v3 KV and Watch APIs, written against
 * the gRPC C core so that it measures metastore and real etcd with the same client.
 *
 * C clients (each one call in flight at a time) are spread over K channels (K HTTP/2
 * connections: every channel gets its own subchannel pool) and over T completion-queue
 * threads. Each thread owns one completion queue and drives its clients with async
 * unary calls: one grpc_call_start_batch per operation carrying all six ops, and the
 * completion of that batch starts the client's next operation. Operations are claimed
 * from one shared counter until --total have been issued (or --duration is up).
 *
 * Every operation is timed with CLOCK_MONOTONIC; latencies of successful operations go
 * into one array that is sorted at the end for p50/p90/p99/max. Every status is checked
 * and every response decoded: failures are counted, the first one is printed with its
 * gRPC code and details, and a run with failures says so on stderr and exits 3.
 * The process's own CPU time (getrusage, all threads including gRPC's) is reported so
 * that the load generator's share of a small machine is visible next to the numbers.
 *
 * --rate R paces the clients: operation i is not started before i/R seconds after the
 * start (a client waiting for its slot is parked by its thread, so the others go on).
 *
 * Watch ops (watch, watch-idle, watch-catchup; see watch_main) add S bidi Watch streams
 * on their own channels and completion-queue threads, carrying N watchers; the put
 * clients above are then the writers, and every put's revision, key and send/response
 * times are kept so that the events the streams receive can be checked against them
 * (each watcher must get every put on its keys, in revision order, nothing else) and
 * timed: an event is matched to the put whose response header carried the event's
 * mod_revision, and commit-to-delivery latency is the event's arrival minus that
 * response's arrival (negative when the event overtook the response). Each stream has
 * at most one send, one receive and the status batch in flight; create requests go
 * out back to back and a stream's Created responses are matched to them in order.
 * A stream the server ends (UNIMPLEMENTED, say) is a failure that stops the run.
 *
 * Output: one human-readable summary and one JSON line (starting with '{').
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>

#include "rpc.pb-c.h"

#define BENCH_MAX_ENDPOINTS 16
#define BENCH_ERR_TEXT 512
#define BENCH_LAT_FAILED UINT64_MAX

/* The operation every client repeats. */
typedef enum {
	BENCH_OP_PUT,          /* Put(key, value) */
	BENCH_OP_RANGE,        /* Range(key), linearizable (etcd's default) */
	BENCH_OP_RANGE_SER,    /* Range(key, serializable=true) */
	BENCH_OP_TXN,          /* Txn(if version(key) > -1 then put(key, value)) */
	BENCH_OP_WATCH,        /* watchers on streams, puts flowing: delivery rate, latency */
	BENCH_OP_WATCH_IDLE,   /* idle watchers: the server's memory per watcher */
	BENCH_OP_WATCH_CATCHUP, /* watchers starting far back in history: catch-up time */
} bench_op;

static const struct {
	const char *name;
	const char *method;
} bench_ops[] = {
	[BENCH_OP_PUT] = {"put", "/etcdserverpb.KV/Put"},
	[BENCH_OP_RANGE] = {"range", "/etcdserverpb.KV/Range"},
	[BENCH_OP_RANGE_SER] = {"range-serializable", "/etcdserverpb.KV/Range"},
	[BENCH_OP_TXN] = {"txn", "/etcdserverpb.KV/Txn"},
	/* the watch ops' clients are writers: they send puts */
	[BENCH_OP_WATCH] = {"watch", "/etcdserverpb.KV/Put"},
	[BENCH_OP_WATCH_IDLE] = {"watch-idle", "/etcdserverpb.KV/Put"},
	[BENCH_OP_WATCH_CATCHUP] = {"watch-catchup", "/etcdserverpb.KV/Put"},
};

#define BENCH_WATCH_METHOD "/etcdserverpb.Watch/Watch"

/* Is op one of the watch ops? */
static bool op_is_watch(bench_op op)
{
	return op == BENCH_OP_WATCH || op == BENCH_OP_WATCH_IDLE || op == BENCH_OP_WATCH_CATCHUP;
}

/* Command-line settings. */
struct bench_opts {
	char *endpoints[BENCH_MAX_ENDPOINTS];
	int n_endpoints;
	int clients;
	int conns;
	int threads;           /* 0: derive from clients */
	uint64_t total;
	int key_size;
	int val_size;
	bench_op op;
	uint64_t key_space;
	bool sequential;       /* key = op index % key space, instead of random */
	int timeout_s;         /* per-call deadline */
	int connect_timeout_s;
	const char *label;     /* free text copied into the JSON line */
	const char *cacert;    /* --cacert: TLS channels verified against this CA */
	const char *cert, *key; /* --cert/--key: the client certificate (mutual TLS) */
	const char *fsync_dir; /* --fsync-probe: measure fdatasync there instead */
	bool rtt_probe;        /* --rtt-probe: measure a loopback TCP round trip instead */
	int fsync_block;
	double rate;           /* ops/s over all clients; 0: as fast as they complete */
	int duration_s;        /* watch: length of the write phase; 0: until --total */
	/* watch ops */
	int streams;           /* bidi Watch streams */
	int stream_conns;      /* channels the streams are spread over */
	int stream_threads;    /* completion-queue threads driving the streams */
	int watchers;
	uint64_t watch_range;  /* key numbers per watcher (1: a single key) */
	uint64_t revisions;    /* watch-catchup: history written before the watchers */
	long server_pid;       /* server process for RSS/CPU readings; 0: none */
	int settle_s;          /* watch-idle: wait before each RSS reading */
};

struct bench;
struct bench_worker;

/* One successful put of a watch run: what the events are checked and timed against. */
struct bench_put {
	int64_t rev;                   /* the PutResponse header's revision */
	uint64_t key;                  /* key number */
	uint64_t t_send_ns;            /* just before the call was created */
	uint64_t t_ack_ns;             /* when its response arrived */
};

/*
 * One client: one call in flight at a time. Its address is the completion-queue tag
 * of that call's only batch, so the worker loop needs no other dispatch.
 */
struct bench_client {
	struct bench_worker *worker;
	grpc_channel *channel;
	grpc_call *call;               /* NULL when idle */
	uint64_t op_index;
	uint64_t t_start_ns;
	uint64_t rng;
	grpc_byte_buffer *send_buf;
	grpc_byte_buffer *recv_buf;
	grpc_metadata_array md_initial;
	grpc_metadata_array md_trailing;
	grpc_status_code status;
	grpc_slice details;
	uint8_t *key;                  /* key_size bytes, rewritten per op */
	uint64_t keyno;                /* the key number in key */
	uint64_t due_ns;               /* --rate: when the claimed op may start */
	int64_t rev;                   /* revision of the last put's response */
	struct bench_put *puts;        /* watch ops: this client's successful puts */
	size_t n_puts, cap_puts;
};

/* One completion-queue thread and the clients it drives. */
struct bench_worker {
	struct bench *bench;
	pthread_t thread;
	grpc_completion_queue *cq;
	struct bench_client *clients;
	int n_clients;
	uint64_t t_end_ns;             /* when its last call completed */
	struct bench_client **parked;  /* --rate: ring of clients waiting for their slot */
	int park_head, n_parked;
};

struct bench_stream;

/* One watcher: the key numbers it covers and what it has received. */
struct bench_watcher {
	uint64_t lo, hi;               /* key numbers [lo, hi) */
	int64_t last_rev;              /* mod_revision of its last event (order check) */
	uint64_t received;             /* events */
	uint64_t expected;             /* events it must get (catch-up: known up front) */
	bool created;
};

/* Completion-queue tag of one of a stream's batches; kind says which. */
enum { WTAG_SEND, WTAG_RECV, WTAG_STATUS };
struct bench_wtag {
	struct bench_stream *s;
	int kind;
};

/*
 * One bidi Watch stream and its watchers. At most one batch of each kind is in flight:
 * a send (initial metadata, then one create request after another), a receive, and
 * the status. Only the stream's thread touches it once that thread runs.
 */
struct bench_stream {
	struct bench_wthread *thread;
	int index;
	grpc_call *call;
	struct bench_watcher *watchers;    /* its share of the run's watchers */
	int n_watchers;
	int n_sent;                        /* create requests sent */
	int n_created;                     /* Created responses received */
	bool sending, ended;
	grpc_byte_buffer *send_buf;
	grpc_byte_buffer *recv_buf;
	grpc_metadata_array md_initial;
	grpc_metadata_array md_trailing;
	grpc_status_code status;
	grpc_slice details;
	struct bench_wtag t_send, t_recv, t_status;
	int64_t *id_keys;                  /* watch_id -> watcher: open addressing */
	int32_t *id_vals;                  /* index into watchers, -1 = empty slot */
	uint32_t id_mask;
};

/* One event's arrival, for the delivery latency (watch op). */
struct bench_sample {
	int64_t rev;
	uint64_t t_ns;
};

/* A completion-queue thread driving some of the streams. */
struct bench_wthread {
	struct bench *bench;
	pthread_t thread;
	grpc_completion_queue *cq;
	struct bench_stream **streams;
	int n_streams;
	int outstanding;                   /* batches in flight on cq */
	struct bench_sample *samples;      /* watch op: every event's revision and arrival */
	size_t n_samples, cap_samples;
	uint64_t n_responses, n_ev_responses, n_events, n_progress, max_events;
	uint64_t n_hdr_ahead, n_hdr_behind; /* header revision vs the last event's */
	uint64_t t_last_event_ns, t_created_ns, t_complete_ns;
};

/* Phases of a watch run, set by the main thread, followed by the stream threads. */
enum { WATCH_OPEN, WATCH_CREATE, WATCH_STOP };

/* The whole run. */
struct bench {
	struct bench_opts o;
	grpc_channel **channels;
	struct bench_worker *workers;
	grpc_slice method;
	uint8_t *value;                /* val_size bytes shared by every put */
	uint64_t *lat_ns;              /* per op index; BENCH_LAT_FAILED if it failed */
	pthread_barrier_t start;

	atomic_uint_fast64_t next_op;
	atomic_uint_fast64_t n_ok;
	atomic_uint_fast64_t n_err;
	atomic_uint_fast64_t n_range_kvs;  /* keys returned by range ops */
	atomic_uint_fast64_t n_txn_failed; /* txns whose compare came out false */

	pthread_mutex_t err_mu;
	bool have_err;
	int first_err_code;
	char first_err[BENCH_ERR_TEXT];

	bench_op client_op;            /* what the clients send: o.op, put for watch ops */
	uint64_t t0_ns;                /* start of the clients' run (--rate's schedule) */
	uint64_t t_stop_ns;            /* --duration: no op starts after this; 0: none */
	bool record_puts;              /* keep every successful put (watch ops) */
	struct bench_put *puts;        /* all clients' puts after clients_run */
	size_t n_puts;

	/* watch ops */
	grpc_channel **stream_channels;
	struct bench_watcher *watchers;
	struct bench_stream *streams;
	struct bench_wthread *wthreads;
	grpc_slice watch_method;
	uint64_t key_cap;              /* 10^key_size, or UINT64_MAX if that overflows */
	int64_t start_rev;             /* every create request's start_revision; 0: now */
	bool track_complete;           /* watchers' expected counts are set before creation */
	bool keep_samples;             /* record each event's arrival (watch op) */
	atomic_int phase;
	atomic_uint_fast64_t n_created;    /* Created responses, all streams */
	atomic_uint_fast64_t n_received;   /* events, all streams */
	atomic_uint_fast64_t n_complete;   /* watchers that have all their expected events */
	atomic_uint_fast64_t n_streams_failed;
	atomic_bool stop_clients;      /* a Watch stream failed: writing on is pointless */
};

static const char *const grpc_code_names[] = {
	"OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED",
	"NOT_FOUND", "ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED",
	"FAILED_PRECONDITION", "ABORTED", "OUT_OF_RANGE", "UNIMPLEMENTED", "INTERNAL",
	"UNAVAILABLE", "DATA_LOSS", "UNAUTHENTICATED",
};

/* Name of a gRPC status code; -1 is our own "not a status" (decode errors etc.). */
static const char *code_name(int code)
{
	if (code >= 0 && code < (int)(sizeof grpc_code_names / sizeof grpc_code_names[0]))
		return grpc_code_names[code];
	return "CLIENT";
}

/* CLOCK_MONOTONIC in nanoseconds: the clock every latency and the wall time use. */
static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* xorshift64*: cheap per-client randomness, never zero-seeded. */
static uint64_t rng_next(uint64_t *s)
{
	uint64_t x = *s;
	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	*s = x;
	return x * 0x2545F4914F6CDD1DULL;
}

/*
 * Record a failed operation. The first failure's code and text are kept for the
 * report; later ones are only counted.
 */
static void bench_fail(struct bench *b, int code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void bench_fail(struct bench *b, int code, const char *fmt, ...)
{
	atomic_fetch_add(&b->n_err, 1);
	pthread_mutex_lock(&b->err_mu);
	if (!b->have_err) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(b->first_err, sizeof b->first_err, fmt, ap);
		va_end(ap);
		b->first_err_code = code;
		b->have_err = true;
	}
	pthread_mutex_unlock(&b->err_mu);
}

/* Write key number n into buf as key_size zero-padded decimal digits. */
static void format_key(uint8_t *buf, int key_size, uint64_t n)
{
	for (int i = key_size - 1; i >= 0; i--) {
		buf[i] = (uint8_t)('0' + n % 10);
		n /= 10;
	}
}

/*
 * Serialize the request for client c's current key into a fresh byte buffer
 * (packed straight into the slice gRPC will send). Returns NULL on allocation failure.
 */
static grpc_byte_buffer *build_request(struct bench *b, struct bench_client *c)
{
	ProtobufCBinaryData key = {(size_t)b->o.key_size, c->key};
	ProtobufCBinaryData val = {(size_t)b->o.val_size, b->value};
	Etcdserverpb__PutRequest put = ETCDSERVERPB__PUT_REQUEST__INIT;
	Etcdserverpb__RangeRequest range = ETCDSERVERPB__RANGE_REQUEST__INIT;
	Etcdserverpb__TxnRequest txn = ETCDSERVERPB__TXN_REQUEST__INIT;
	Etcdserverpb__Compare cmp = ETCDSERVERPB__COMPARE__INIT;
	Etcdserverpb__RequestOp rop = ETCDSERVERPB__REQUEST_OP__INIT;
	Etcdserverpb__Compare *cmps[1] = {&cmp};
	Etcdserverpb__RequestOp *rops[1] = {&rop};
	const ProtobufCMessage *msg;

	switch (b->client_op) {
	case BENCH_OP_PUT:
		put.key = key;
		put.value = val;
		msg = &put.base;
		break;
	case BENCH_OP_RANGE:
	case BENCH_OP_RANGE_SER:
		range.key = key;
		range.serializable = b->client_op == BENCH_OP_RANGE_SER;
		msg = &range.base;
		break;
	case BENCH_OP_TXN:
	default:
		put.key = key;
		put.value = val;
		cmp.result = ETCDSERVERPB__COMPARE__COMPARE_RESULT__GREATER;
		cmp.target = ETCDSERVERPB__COMPARE__COMPARE_TARGET__VERSION;
		cmp.key = key;
		cmp.target_union_case = ETCDSERVERPB__COMPARE__TARGET_UNION_VERSION;
		cmp.version = -1;
		rop.request_case = ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_PUT;
		rop.request_put = &put;
		txn.n_compare = 1;
		txn.compare = cmps;
		txn.n_success = 1;
		txn.success = rops;
		msg = &txn.base;
		break;
	}

	size_t len = protobuf_c_message_get_packed_size(msg);
	grpc_slice s = grpc_slice_malloc(len);
	protobuf_c_message_pack(msg, GRPC_SLICE_START_PTR(s));
	grpc_byte_buffer *bb = grpc_raw_byte_buffer_create(&s, 1);
	grpc_slice_unref(s);
	return bb;
}

/*
 * Decode and check a successful call's response. Returns 0, or -1 after recording
 * the failure (undecodable response, missing header).
 */
static int check_response(struct bench *b, struct bench_client *c)
{
	if (c->recv_buf == NULL) {
		bench_fail(b, -1, "status OK but no response message");
		return -1;
	}
	grpc_byte_buffer_reader rd;
	if (!grpc_byte_buffer_reader_init(&rd, c->recv_buf)) {
		bench_fail(b, -1, "cannot read response byte buffer");
		return -1;
	}
	grpc_slice s = grpc_byte_buffer_reader_readall(&rd);
	grpc_byte_buffer_reader_destroy(&rd);
	size_t len = GRPC_SLICE_LENGTH(s);
	const uint8_t *p = GRPC_SLICE_START_PTR(s);
	int rc = 0;

	switch (b->client_op) {
	case BENCH_OP_PUT: {
		Etcdserverpb__PutResponse *r = etcdserverpb__put_response__unpack(NULL, len, p);
		if (r == NULL || r->header == NULL) {
			bench_fail(b, -1, "bad PutResponse (%zu bytes)", len);
			rc = -1;
		} else {
			c->rev = r->header->revision;
		}
		if (r != NULL)
			etcdserverpb__put_response__free_unpacked(r, NULL);
		break;
	}
	case BENCH_OP_RANGE:
	case BENCH_OP_RANGE_SER: {
		Etcdserverpb__RangeResponse *r = etcdserverpb__range_response__unpack(NULL, len, p);
		if (r == NULL || r->header == NULL) {
			bench_fail(b, -1, "bad RangeResponse (%zu bytes)", len);
			rc = -1;
		} else {
			atomic_fetch_add(&b->n_range_kvs, r->n_kvs);
		}
		if (r != NULL)
			etcdserverpb__range_response__free_unpacked(r, NULL);
		break;
	}
	case BENCH_OP_TXN:
	default: {
		Etcdserverpb__TxnResponse *r = etcdserverpb__txn_response__unpack(NULL, len, p);
		if (r == NULL || r->header == NULL) {
			bench_fail(b, -1, "bad TxnResponse (%zu bytes)", len);
			rc = -1;
		} else if (!r->succeeded) {
			atomic_fetch_add(&b->n_txn_failed, 1);
		}
		if (r != NULL)
			etcdserverpb__txn_response__free_unpacked(r, NULL);
		break;
	}
	}
	grpc_slice_unref(s);
	return rc;
}

/*
 * Claim the next operation for client c (and under --rate its start time). Returns
 * false if the run is over for this client: all ops claimed, or --duration is up.
 */
static bool client_claim(struct bench_client *c)
{
	struct bench *b = c->worker->bench;
	uint64_t idx = atomic_fetch_add(&b->next_op, 1);
	if (idx >= b->o.total || atomic_load(&b->stop_clients))
		return false;
	c->due_ns = 0;
	if (b->o.rate > 0)
		c->due_ns = b->t0_ns + (uint64_t)((double)idx * 1e9 / b->o.rate);
	if (b->t_stop_ns != 0 && (now_ns() >= b->t_stop_ns || c->due_ns >= b->t_stop_ns))
		return false;
	c->op_index = idx;
	return true;
}

/*
 * Start client c's claimed operation. Returns true if a call is now in flight, false
 * if it could not be started (recorded as a failure of that op; the client then retires).
 */
static bool client_issue(struct bench_client *c)
{
	struct bench *b = c->worker->bench;
	uint64_t idx = c->op_index;
	uint64_t keyno = b->o.sequential ? idx % b->o.key_space
					 : rng_next(&c->rng) % b->o.key_space;
	format_key(c->key, b->o.key_size, keyno);
	c->keyno = keyno;
	c->send_buf = build_request(b, c);
	c->recv_buf = NULL;
	grpc_metadata_array_init(&c->md_initial);
	grpc_metadata_array_init(&c->md_trailing);
	c->details = grpc_empty_slice();

	gpr_timespec deadline = gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC),
			gpr_time_from_seconds(b->o.timeout_s, GPR_TIMESPAN));
	c->t_start_ns = now_ns();
	c->call = grpc_channel_create_call(c->channel, NULL, GRPC_PROPAGATE_DEFAULTS,
			c->worker->cq, b->method, NULL, deadline, NULL);

	grpc_op ops[6];
	memset(ops, 0, sizeof ops);
	ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
	ops[1].op = GRPC_OP_SEND_MESSAGE;
	ops[1].data.send_message.send_message = c->send_buf;
	ops[2].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
	ops[3].op = GRPC_OP_RECV_INITIAL_METADATA;
	ops[3].data.recv_initial_metadata.recv_initial_metadata = &c->md_initial;
	ops[4].op = GRPC_OP_RECV_MESSAGE;
	ops[4].data.recv_message.recv_message = &c->recv_buf;
	ops[5].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
	ops[5].data.recv_status_on_client.trailing_metadata = &c->md_trailing;
	ops[5].data.recv_status_on_client.status = &c->status;
	ops[5].data.recv_status_on_client.status_details = &c->details;

	grpc_call_error err = grpc_call_start_batch(c->call, ops, 6, c, NULL);
	if (err != GRPC_CALL_OK) {
		bench_fail(b, -1, "grpc_call_start_batch: call error %d", (int)err);
		if (b->lat_ns != NULL)
			b->lat_ns[idx] = BENCH_LAT_FAILED;
		grpc_call_unref(c->call);
		c->call = NULL;
		grpc_byte_buffer_destroy(c->send_buf);
		grpc_metadata_array_destroy(&c->md_initial);
		grpc_metadata_array_destroy(&c->md_trailing);
		return false;
	}
	return true;
}

/*
 * Claim client c's next operation and start it, or under --rate park it on its
 * thread until its time has come. Returns false if the client retires.
 */
static bool client_next(struct bench_client *c)
{
	struct bench_worker *w = c->worker;
	if (!client_claim(c))
		return false;
	if (c->due_ns > now_ns()) {
		w->parked[(w->park_head + w->n_parked) % w->n_clients] = c;
		w->n_parked++;
		return true;
	}
	return client_issue(c);
}

/* Keep client c's successful put (watch ops). */
static void client_record_put(struct bench_client *c, uint64_t t_ack)
{
	if (c->n_puts == c->cap_puts) {
		size_t cap = c->cap_puts ? 2 * c->cap_puts : 1024;
		struct bench_put *p = realloc(c->puts, cap * sizeof *p);
		if (p == NULL) {
			fprintf(stderr, "msbench: out of memory\n");
			abort();
		}
		c->puts = p;
		c->cap_puts = cap;
	}
	c->puts[c->n_puts++] = (struct bench_put){c->rev, c->keyno, c->t_start_ns, t_ack};
}

/* Client c's batch completed: time it, check it, release the call's resources. */
static void client_finish(struct bench_client *c, bool batch_ok)
{
	struct bench *b = c->worker->bench;
	uint64_t t_done = now_ns();
	uint64_t lat = t_done - c->t_start_ns;
	bool ok = false;

	if (!batch_ok) {
		bench_fail(b, -1, "completion queue reported a failed batch");
	} else if (c->status != GRPC_STATUS_OK) {
		bench_fail(b, (int)c->status, "status %d (%s): %.*s", (int)c->status,
			   code_name((int)c->status), (int)GRPC_SLICE_LENGTH(c->details),
			   (const char *)GRPC_SLICE_START_PTR(c->details));
	} else if (check_response(b, c) == 0) {
		ok = true;
	}
	if (ok) {
		atomic_fetch_add(&b->n_ok, 1);
		if (b->record_puts)
			client_record_put(c, t_done);
	}
	if (b->lat_ns != NULL)
		b->lat_ns[c->op_index] = ok ? lat : BENCH_LAT_FAILED;

	grpc_byte_buffer_destroy(c->send_buf);
	c->send_buf = NULL;
	if (c->recv_buf != NULL)
		grpc_byte_buffer_destroy(c->recv_buf);
	c->recv_buf = NULL;
	grpc_metadata_array_destroy(&c->md_initial);
	grpc_metadata_array_destroy(&c->md_trailing);
	grpc_slice_unref(c->details);
	grpc_call_unref(c->call);
	c->call = NULL;
}

/*
 * Worker thread: start every client, then one switch over completions until done.
 * Under --rate the wait for a completion ends when the first parked client is due.
 */
static void *worker_main(void *arg)
{
	struct bench_worker *w = arg;
	int active = 0;

	pthread_barrier_wait(&w->bench->start);
	for (int i = 0; i < w->n_clients; i++)
		if (client_next(&w->clients[i]))
			active++;

	while (active > 0) {
		gpr_timespec deadline = gpr_inf_future(GPR_CLOCK_REALTIME);
		if (w->n_parked > 0) {
			uint64_t due = w->parked[w->park_head]->due_ns, now = now_ns();
			deadline = gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC),
					gpr_time_from_nanos(due > now ? (int64_t)(due - now) : 0,
							    GPR_TIMESPAN));
		}
		grpc_event ev = grpc_completion_queue_next(w->cq, deadline, NULL);
		switch (ev.type) {
		case GRPC_OP_COMPLETE: {
			struct bench_client *c = ev.tag;
			client_finish(c, ev.success != 0);
			if (!client_next(c))
				active--;
			break;
		}
		case GRPC_QUEUE_TIMEOUT:
			break;
		case GRPC_QUEUE_SHUTDOWN:
		default:
			fprintf(stderr, "msbench: completion queue shut down unexpectedly\n");
			abort();
		}
		/* Clients are parked in claim order, which is their schedule's order. */
		while (w->n_parked > 0 && w->parked[w->park_head]->due_ns <= now_ns()) {
			struct bench_client *c = w->parked[w->park_head];
			w->park_head = (w->park_head + 1) % w->n_clients;
			w->n_parked--;
			if (!client_issue(c))
				active--;
		}
	}
	w->t_end_ns = now_ns();

	grpc_completion_queue_shutdown(w->cq);
	for (;;) {
		grpc_event ev = grpc_completion_queue_next(w->cq,
				gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
		if (ev.type == GRPC_QUEUE_SHUTDOWN)
			break;
	}
	return NULL;
}

/*
 * Open n channels round-robin over the endpoints into *out and wait until each is READY,
 * so connection setup is not part of the measurement. Returns 0 or -1 (message
 * printed); *out is set either way (NULL if it could not be allocated).
 */

/* A whole file as a NUL-terminated string (malloc'd), or NULL. */
static char *slurp(const char *path)
{
	FILE *f = fopen(path, "rb");
	if (f == NULL) {
		fprintf(stderr, "msbench: %s: %s\n", path, strerror(errno));
		return NULL;
	}
	size_t cap = 4096, len = 0;
	char *buf = malloc(cap);
	size_t r;
	while (buf != NULL && (r = fread(buf + len, 1, cap - len - 1, f)) > 0) {
		len += r;
		if (cap - len - 1 == 0) {
			char *nb = realloc(buf, cap * 2);
			if (nb == NULL) {
				free(buf);
				buf = NULL;
				break;
			}
			buf = nb;
			cap *= 2;
		}
	}
	fclose(f);
	if (buf != NULL)
		buf[len] = '\0';
	return buf;
}

/* Insecure credentials, or TLS ones with --cacert (and --cert/--key). */
static grpc_channel_credentials *channel_creds(const struct bench_opts *o)
{
	if (o->cacert == NULL)
		return grpc_insecure_credentials_create();
	char *ca = slurp(o->cacert);
	char *cert = o->cert ? slurp(o->cert) : NULL;
	char *key = o->key ? slurp(o->key) : NULL;
	grpc_channel_credentials *c = NULL;
	if (ca != NULL && (o->cert == NULL || (cert != NULL && key != NULL))) {
		grpc_ssl_pem_key_cert_pair pair = {key, cert};
		c = grpc_ssl_credentials_create(ca, cert ? &pair : NULL, NULL, NULL);
	}
	free(ca);
	free(cert);
	free(key);
	return c;
}

static int open_channels(struct bench *b, int n, grpc_channel ***out)
{
	grpc_arg args[3];
	memset(args, 0, sizeof args);
	/* Own subchannel pool per channel: K channels really are K TCP connections. */
	args[0].type = GRPC_ARG_INTEGER;
	args[0].key = (char *)GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL;
	args[0].value.integer = 1;
	/* No retry machinery (it buffers every message) on a benchmark's hot path. */
	args[1].type = GRPC_ARG_INTEGER;
	args[1].key = (char *)GRPC_ARG_ENABLE_RETRIES;
	args[1].value.integer = 0;
	args[2].type = GRPC_ARG_INTEGER;
	args[2].key = (char *)GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH;
	args[2].value.integer = -1;
	grpc_channel_args chargs = {3, args};

	grpc_channel **chans = calloc((size_t)n, sizeof *chans);
	*out = chans;
	if (chans == NULL)
		return -1;
	grpc_channel_credentials *creds = channel_creds(&b->o);
	if (creds == NULL)
		return -1;
	for (int i = 0; i < n; i++)
		chans[i] = grpc_channel_create(b->o.endpoints[i % b->o.n_endpoints],
					       creds, &chargs);
	grpc_channel_credentials_release(creds);

	grpc_completion_queue *cq = grpc_completion_queue_create_for_next(NULL);
	gpr_timespec deadline = gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC),
			gpr_time_from_seconds(b->o.connect_timeout_s, GPR_TIMESPAN));
	int rc = 0;
	for (int i = 0; i < n && rc == 0; i++) {
		grpc_connectivity_state st =
			grpc_channel_check_connectivity_state(chans[i], 1);
		while (st != GRPC_CHANNEL_READY) {
			if (st == GRPC_CHANNEL_SHUTDOWN) {
				rc = -1;
				break;
			}
			grpc_channel_watch_connectivity_state(chans[i], st, deadline, cq, NULL);
			grpc_event ev = grpc_completion_queue_next(cq,
					gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
			if (ev.type != GRPC_OP_COMPLETE || !ev.success) {
				rc = -1;
				break;
			}
			st = grpc_channel_check_connectivity_state(chans[i], 1);
		}
		if (rc != 0)
			fprintf(stderr, "msbench: ERROR: cannot connect to %s within %d s\n",
				b->o.endpoints[i % b->o.n_endpoints], b->o.connect_timeout_s);
	}
	grpc_completion_queue_shutdown(cq);
	while (grpc_completion_queue_next(cq, gpr_inf_future(GPR_CLOCK_REALTIME),
					  NULL).type != GRPC_QUEUE_SHUTDOWN)
		;
	grpc_completion_queue_destroy(cq);
	return rc;
}

/* qsort comparator for uint64_t latencies. */
static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

/* The nearest rank (1..n) of percentile @p among @n > 0 sorted values. */
static size_t pct_rank(size_t n, double p)
{
	size_t rank = (size_t)ceil(p * (double)n);
	if (rank < 1)
		rank = 1;
	if (rank > n)
		rank = n;
	return rank;
}

/* Nearest-rank percentile of n sorted values, in milliseconds. */
static double pct_ms(const uint64_t *sorted, size_t n, double p)
{
	return n == 0 ? 0.0 : (double)sorted[pct_rank(n, p) - 1] / 1e6;
}

/* A getrusage timeval as seconds. */
static double tv_sec(struct timeval tv)
{
	return (double)tv.tv_sec + (double)tv.tv_usec / 1e6;
}

/* Print s as a JSON string literal (escapes quotes, backslashes, control bytes). */
static void json_str(FILE *f, const char *s)
{
	fputc('"', f);
	for (; *s; s++) {
		unsigned char ch = (unsigned char)*s;
		if (ch == '"' || ch == '\\')
			fprintf(f, "\\%c", ch);
		else if (ch < 0x20)
			fprintf(f, "\\u%04x", ch);
		else
			fputc(ch, f);
	}
	fputc('"', f);
}

/* The VmRSS of process pid in KiB (/proc/PID/status), or -1 if it cannot be read. */
static long proc_rss_kb(long pid)
{
	char path[64], line[256];
	snprintf(path, sizeof path, "/proc/%ld/status", pid);
	FILE *f = fopen(path, "r");
	if (f == NULL)
		return -1;
	long kb = -1;
	while (fgets(line, sizeof line, f) != NULL)
		if (strncmp(line, "VmRSS:", 6) == 0) {
			kb = strtol(line + 6, NULL, 10);
			break;
		}
	fclose(f);
	return kb;
}

/* CPU seconds (user + system) process pid has used (/proc/PID/stat), or -1. */
static double proc_cpu_s(long pid)
{
	char path[64], buf[1024];
	snprintf(path, sizeof path, "/proc/%ld/stat", pid);
	FILE *f = fopen(path, "r");
	if (f == NULL)
		return -1;
	size_t n = fread(buf, 1, sizeof buf - 1, f);
	fclose(f);
	buf[n] = '\0';
	/* the command name may hold spaces and parentheses: fields restart after the last ')' */
	const char *p = strrchr(buf, ')');
	unsigned long long ut, st;
	if (p == NULL || sscanf(p + 1, " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu",
				&ut, &st) != 2)
		return -1;
	return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

/* Busy CPU seconds of the whole machine so far (user+nice+system+irq+softirq), or -1. */
static double machine_busy_s(void)
{
	unsigned long long v[7];
	FILE *f = fopen("/proc/stat", "r");
	if (f == NULL)
		return -1;
	int n = fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2], &v[3],
		       &v[4], &v[5], &v[6]);
	fclose(f);
	if (n != 7)
		return -1;
	return (double)(v[0] + v[1] + v[2] + v[5] + v[6]) / (double)sysconf(_SC_CLK_TCK);
}

/*
 * --fsync-probe DIR: the disk cost a durable write pays, measured the way etcd's WAL
 * pays it: a 64 MiB preallocated file, sequential block writes, fdatasync after each.
 * Prints a summary and a JSON line. Returns 0, or 1 if the file cannot be written.
 */
static int fsync_probe(const struct bench_opts *o)
{
	char path[4096];
	snprintf(path, sizeof path, "%s/msbench-fsync-probe.%ld", o->fsync_dir, (long)getpid());
	const off_t file_size = 64 << 20;
	uint64_t count = o->total;
	if ((uint64_t)o->fsync_block * count > (uint64_t)file_size)
		count = (uint64_t)file_size / (uint64_t)o->fsync_block;
	uint64_t *lat = malloc(count * sizeof *lat);
	char *block = malloc((size_t)o->fsync_block);
	if (lat == NULL || block == NULL) {
		fprintf(stderr, "msbench: out of memory\n");
		abort();
	}
	memset(block, 'f', (size_t)o->fsync_block);

	int fd = open(path, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0600);
	if (fd < 0) {
		fprintf(stderr, "msbench: open %s: %s\n", path, strerror(errno));
		free(lat);
		free(block);
		return 1;
	}
	int rc = posix_fallocate(fd, 0, file_size);
	if (rc == 0 && fdatasync(fd) != 0)
		rc = errno;
	uint64_t t0 = now_ns();
	for (uint64_t i = 0; rc == 0 && i < count; i++) {
		uint64_t t = now_ns();
		if (pwrite(fd, block, (size_t)o->fsync_block,
			   (off_t)(i * (uint64_t)o->fsync_block)) != o->fsync_block)
			rc = errno ? errno : EIO;
		else if (fdatasync(fd) != 0)
			rc = errno;
		lat[i] = now_ns() - t;
	}
	double wall = (double)(now_ns() - t0) / 1e9;
	close(fd);
	unlink(path);
	if (rc != 0) {
		fprintf(stderr, "msbench: fsync probe on %s: %s\n", path, strerror(rc));
		free(lat);
		free(block);
		return 1;
	}
	qsort(lat, count, sizeof *lat, cmp_u64);
	double mean = wall * 1e3 / (double)count;
	printf("msbench: fsync-probe dir=%s block=%d writes=%" PRIu64 ": pwrite+fdatasync ms "
	       "p50 %.3f p90 %.3f p99 %.3f max %.3f mean %.3f (%.0f syncs/s)\n",
	       o->fsync_dir, o->fsync_block, count, pct_ms(lat, count, 0.5),
	       pct_ms(lat, count, 0.9), pct_ms(lat, count, 0.99), pct_ms(lat, count, 1.0),
	       mean, (double)count / wall);
	printf("{\"tool\":\"msbench\",\"label\":");
	json_str(stdout, o->label);
	printf(",\"op\":\"fsync-probe\",\"dir\":");
	json_str(stdout, o->fsync_dir);
	printf(",\"block\":%d,\"writes\":%" PRIu64 ",\"p50_ms\":%.3f,\"p90_ms\":%.3f"
	       ",\"p99_ms\":%.3f,\"max_ms\":%.3f,\"mean_ms\":%.3f,\"syncs_per_s\":%.1f}\n",
	       o->fsync_block, count, pct_ms(lat, count, 0.5), pct_ms(lat, count, 0.9),
	       pct_ms(lat, count, 0.99), pct_ms(lat, count, 1.0), mean,
	       (double)count / wall);
	free(lat);
	free(block);
	return 0;
}

/* Pin the calling thread to CPU @cpu, when the machine has it (best effort). */
static void pin_to_cpu(int cpu)
{
	if (sysconf(_SC_NPROCESSORS_ONLN) <= cpu)
		return;
	cpu_set_t set;
	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	pthread_setaffinity_np(pthread_self(), sizeof set, &set);
}

/* The echo side of --rtt-probe: accept one connection, send back every byte. */
static void *rtt_echo(void *arg)
{
	int lfd = *(int *)arg;
	pin_to_cpu(1);
	int fd = accept(lfd, NULL, NULL);
	if (fd < 0)
		return NULL;
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	char c;
	while (read(fd, &c, 1) == 1 && write(fd, &c, 1) == 1)
		;
	close(fd);
	return NULL;
}

/*
 * --rtt-probe: the network part of a request's latency, without any RPC stack: --total
 * one-byte ping-pongs over one TCP connection on 127.0.0.1 (TCP_NODELAY) between this
 * thread and an echo thread, each round trip timed. The two are pinned to CPUs 0 and 1
 * (when there are two): a client and a server on different CPUs, as in every run here;
 * unpinned, the median jumps between ~0.015 ms (both on one CPU, no wake-up of the
 * other) and ~0.055 ms (across CPUs) from one probe to the next on a 2-CPU VM.
 * Prints a summary and a JSON line.
 * Returns 0, or 1 if the sockets cannot be set up.
 */
static int rtt_probe(const struct bench_opts *o)
{
	uint64_t count = o->total;
	uint64_t *lat = malloc(count * sizeof *lat);
	if (lat == NULL) {
		fprintf(stderr, "msbench: out of memory\n");
		abort();
	}
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t salen = sizeof sa;
	int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	int cfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	pthread_t th;
	int rc = (lfd < 0 || cfd < 0 || bind(lfd, (struct sockaddr *)&sa, sizeof sa) != 0 ||
		  listen(lfd, 1) != 0 || getsockname(lfd, (struct sockaddr *)&sa, &salen) != 0)
			 ? errno
			 : 0;
	pin_to_cpu(0);
	if (rc == 0)
		rc = pthread_create(&th, NULL, rtt_echo, &lfd);
	bool started = rc == 0;
	if (rc == 0 && connect(cfd, (struct sockaddr *)&sa, sizeof sa) != 0)
		rc = errno;
	int one = 1;
	if (rc == 0)
		setsockopt(cfd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	uint64_t t0 = now_ns();
	for (uint64_t i = 0; rc == 0 && i < count; i++) {
		char c = 'p';
		uint64_t t = now_ns();
		if (write(cfd, &c, 1) != 1 || read(cfd, &c, 1) != 1)
			rc = errno ? errno : EIO;
		lat[i] = now_ns() - t;
	}
	double wall = (double)(now_ns() - t0) / 1e9;
	if (cfd >= 0)
		shutdown(cfd, SHUT_RDWR); /* the echo thread reads EOF and ends */
	if (started && rc != 0 && lfd >= 0)
		shutdown(lfd, SHUT_RDWR); /* never connected: wake its accept */
	if (started)
		pthread_join(th, NULL);
	if (cfd >= 0)
		close(cfd);
	if (lfd >= 0)
		close(lfd);
	cpu_set_t all; /* unpin: nothing else runs after a probe, but be tidy */
	CPU_ZERO(&all);
	for (long c = 0; c < sysconf(_SC_NPROCESSORS_ONLN) && c < CPU_SETSIZE; c++)
		CPU_SET((int)c, &all);
	pthread_setaffinity_np(pthread_self(), sizeof all, &all);
	if (rc != 0) {
		fprintf(stderr, "msbench: rtt probe: %s\n", strerror(rc));
		free(lat);
		return 1;
	}
	qsort(lat, count, sizeof *lat, cmp_u64);
	printf("msbench: rtt-probe writes=%" PRIu64 ": loopback TCP round trip ms "
	       "p50 %.3f p90 %.3f p99 %.3f max %.3f mean %.3f\n",
	       count, pct_ms(lat, count, 0.5), pct_ms(lat, count, 0.9), pct_ms(lat, count, 0.99),
	       pct_ms(lat, count, 1.0), wall * 1e3 / (double)count);
	printf("{\"tool\":\"msbench\",\"label\":");
	json_str(stdout, o->label);
	printf(",\"op\":\"rtt-probe\",\"round_trips\":%" PRIu64 ",\"p50_ms\":%.3f,\"p90_ms\":%.3f"
	       ",\"p99_ms\":%.3f,\"max_ms\":%.3f,\"mean_ms\":%.3f}\n",
	       count, pct_ms(lat, count, 0.5), pct_ms(lat, count, 0.9), pct_ms(lat, count, 0.99),
	       pct_ms(lat, count, 1.0), wall * 1e3 / (double)count);
	free(lat);
	return 0;
}

/* The option summary, to f. */
static void usage(FILE *f)
{
	fprintf(f,
"usage: msbench [OP] [options]   (OP: same as --op OP)\n"
"  --endpoints H:P[,H:P...]  etcd v3 gRPC endpoints (http:// prefix allowed)  [127.0.0.1:2379]\n"
"  --clients C               concurrent clients = calls in flight            [1]\n"
"  --conns K                 gRPC channels (TCP connections), clients spread  [1]\n"
"  --threads T               completion-queue threads  [ceil(C/256), at most nproc]\n"
"  --total N                 operations to run                               [10000]\n"
"  --op OP                   put | range | range-serializable | txn |\n"
"                            watch | watch-idle | watch-catchup (see below)  [put]\n"
"  --key-size B              key length, zero-padded decimal key numbers     [8]\n"
"  --val-size B              value length for put/txn                        [256]\n"
"  --key-space S             keys are numbers in [0,S)                       [100000]\n"
"  --sequential              key = op index mod S (default: uniform random)\n"
"  --timeout SEC             per-call deadline                               [30]\n"
"  --connect-timeout SEC     wait for every channel to be READY              [10]\n"
"  --label TEXT              copied into the JSON line\n"
"  --cacert FILE             TLS: verify the server against this CA (https:// endpoints)\n"
"  --cert FILE, --key FILE   TLS: present this client certificate and key\n"
"  --fsync-probe DIR         no gRPC: time --total pwrite+fdatasync of --fsync-block\n"
"                            bytes in a preallocated 64 MiB file in DIR (like etcd's WAL)\n"
"  --fsync-block B           block size for --fsync-probe                    [4096]\n"
"  --rtt-probe               no gRPC: time --total one-byte TCP ping-pongs on 127.0.0.1\n"
"                            (the network part of one request's round trip)\n"
"  --rate R                  start at most R ops/s over all clients (op i not before\n"
"                            i/R s after the start)            [0: as fast as they complete]\n"
"Watch ops: watchers on bidi Watch streams; --clients (alias --writers) put clients write.\n"
"Watcher i watches the R key numbers [g*R, g*R+R) of group g = i mod (S/R), so each\n"
"put is delivered to watchers*R/S of them (S = --key-space, R = --watch-range).\n"
"  watch          create the watchers, write for --duration, count and time every event\n"
"  watch-idle     server RSS before/after opening the streams and creating idle watchers\n"
"  watch-catchup  write --revisions puts, then watchers from that far back: catch-up time\n"
"  --streams N               bidi Watch streams                              [100]\n"
"  --stream-conns K          channels the streams are spread over            [= streams]\n"
"  --stream-threads T        completion-queue threads for the streams  [min(streams, nproc)]\n"
"  --watchers N              watchers, consecutive ones share a stream [10000; catchup 1000]\n"
"  --watch-range R           key numbers per watcher (a range watch if > 1) [1]\n"
"  --key-space S             (watch ops)                                     [1000]\n"
"  --clients C, --writers C  (watch ops)                                     [10]\n"
"  --duration SEC            watch: length of the write phase                [10]\n"
"  --total N                 watch: also stop after N puts                   [no limit]\n"
"  --revisions N             watch-catchup: puts written before the watchers [100000]\n"
"  --server-pid PID          server process: RSS (watch-idle, required) and CPU readings\n"
"  --settle SEC              watch-idle: wait before each RSS reading        [2]\n"
"  --timeout SEC             watch ops: also the longest wait without progress for\n"
"                            Created responses and outstanding events        [30]\n"
"Prints a summary and a JSON line. Exit 0 ok, 1 usage/setup, 3 if any op failed (watch:\n"
"also any event missing, extra, duplicated or out of order, or a stream the server ended).\n");
}

/* Parse a positive integer option or exit with a usage error. */
static uint64_t parse_u64(const char *name, const char *s, uint64_t min)
{
	char *end;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 10);
	if (errno != 0 || end == s || *end != '\0' || s[0] == '-' || v < min) {
		fprintf(stderr, "msbench: bad value for --%s: '%s' (need integer >= %" PRIu64
			")\n", name, s, min);
		exit(1);
	}
	return (uint64_t)v;
}

/* Split the comma-separated endpoint list; strips http:// and trailing '/'. */
static void parse_endpoints(struct bench_opts *o, char *list)
{
	o->n_endpoints = 0;
	for (char *save = NULL, *tok = strtok_r(list, ",", &save); tok != NULL;
	     tok = strtok_r(NULL, ",", &save)) {
		if (strncmp(tok, "http://", 7) == 0)
			tok += 7;
		else if (strncmp(tok, "https://", 8) == 0)
			tok += 8;
		size_t n = strlen(tok);
		while (n > 0 && tok[n - 1] == '/')
			tok[--n] = '\0';
		if (n == 0)
			continue;
		if (o->n_endpoints == BENCH_MAX_ENDPOINTS) {
			fprintf(stderr, "msbench: at most %d endpoints\n", BENCH_MAX_ENDPOINTS);
			exit(1);
		}
		o->endpoints[o->n_endpoints++] = tok;
	}
	if (o->n_endpoints == 0) {
		fprintf(stderr, "msbench: --endpoints is empty\n");
		exit(1);
	}
}

/* Long-only options. */
enum {
	OPT_RATE = 256, OPT_DURATION, OPT_STREAMS, OPT_STREAM_CONNS, OPT_STREAM_THREADS,
	OPT_WATCHERS, OPT_WATCH_RANGE, OPT_REVISIONS, OPT_SERVER_PID, OPT_SETTLE, OPT_RTT_PROBE,
	OPT_CACERT, OPT_CERT, OPT_KEY,
};

/*
 * The watch ops' defaults and checks (the *_set flags say what the command line gave):
 * 1000 keys and 10 writers; watch writes for --duration s, capped by --total if given;
 * watch-catchup writes exactly --revisions puts and defaults to 1000 watchers;
 * watch-idle needs --server-pid. Exits 1 on bad input.
 */
static void parse_watch_args(struct bench_opts *o, bool clients_set, bool total_set,
			     bool key_space_set, bool watchers_set, bool duration_set)
{
	if (!key_space_set)
		o->key_space = 1000;
	if (!clients_set)
		o->clients = 10;
	if (o->op == BENCH_OP_WATCH_CATCHUP) {
		if (total_set) {
			fprintf(stderr, "msbench: watch-catchup writes --revisions puts; no --total\n");
			exit(1);
		}
		o->total = o->revisions;
		if (!watchers_set)
			o->watchers = 1000;
	} else if (o->op == BENCH_OP_WATCH) {
		if (!total_set)
			o->total = UINT64_MAX;
		if (!duration_set)
			o->duration_s = 10;
		if (o->duration_s == 0 && !total_set) {
			fprintf(stderr, "msbench: watch needs --duration > 0 or --total\n");
			exit(1);
		}
	} else if (o->server_pid == 0) {
		fprintf(stderr, "msbench: watch-idle measures the server's memory: give --server-pid\n");
		exit(1);
	}
	if (o->op != BENCH_OP_WATCH && duration_set) {
		fprintf(stderr, "msbench: --duration is for --op watch\n");
		exit(1);
	}
	if (o->key_space % o->watch_range != 0) {
		fprintf(stderr, "msbench: --key-space %" PRIu64 " is not a multiple of --watch-range %"
			PRIu64 "\n", o->key_space, o->watch_range);
		exit(1);
	}
	if (o->key_space > 100000000) {
		fprintf(stderr, "msbench: watch ops take at most 100000000 keys\n");
		exit(1);
	}
	if (o->streams > o->watchers)
		o->streams = o->watchers;
	if (o->stream_conns == 0 || o->stream_conns > o->streams)
		o->stream_conns = o->streams;
	long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	if (o->stream_threads == 0)
		o->stream_threads = ncpu > 0 && ncpu < o->streams ? (int)ncpu : o->streams;
	if (o->stream_threads > o->streams)
		o->stream_threads = o->streams;
	if (o->server_pid > 0 && proc_rss_kb(o->server_pid) < 0) {
		fprintf(stderr, "msbench: --server-pid %ld: no such process readable in /proc\n",
			o->server_pid);
		exit(1);
	}
}

/*
 * Fill o from the command line; exits 1 with a message on bad input. Derives the
 * thread count and clamps conns <= clients <= total.
 */
static void parse_args(struct bench_opts *o, int argc, char **argv)
{
	static const struct option longopts[] = {
		{"endpoints", required_argument, NULL, 'e'},
		{"clients", required_argument, NULL, 'c'},
		{"conns", required_argument, NULL, 'k'},
		{"threads", required_argument, NULL, 'T'},
		{"total", required_argument, NULL, 'n'},
		{"op", required_argument, NULL, 'o'},
		{"key-size", required_argument, NULL, 'K'},
		{"val-size", required_argument, NULL, 'V'},
		{"key-space", required_argument, NULL, 'S'},
		{"sequential", no_argument, NULL, 'q'},
		{"timeout", required_argument, NULL, 't'},
		{"connect-timeout", required_argument, NULL, 'C'},
		{"label", required_argument, NULL, 'l'},
		{"cacert", required_argument, NULL, OPT_CACERT},
		{"cert", required_argument, NULL, OPT_CERT},
		{"key", required_argument, NULL, OPT_KEY},
		{"fsync-probe", required_argument, NULL, 'F'},
		{"fsync-block", required_argument, NULL, 'B'},
		{"rtt-probe", no_argument, NULL, OPT_RTT_PROBE},
		{"rate", required_argument, NULL, OPT_RATE},
		{"writers", required_argument, NULL, 'c'},
		{"duration", required_argument, NULL, OPT_DURATION},
		{"streams", required_argument, NULL, OPT_STREAMS},
		{"stream-conns", required_argument, NULL, OPT_STREAM_CONNS},
		{"stream-threads", required_argument, NULL, OPT_STREAM_THREADS},
		{"watchers", required_argument, NULL, OPT_WATCHERS},
		{"watch-range", required_argument, NULL, OPT_WATCH_RANGE},
		{"revisions", required_argument, NULL, OPT_REVISIONS},
		{"server-pid", required_argument, NULL, OPT_SERVER_PID},
		{"settle", required_argument, NULL, OPT_SETTLE},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	static char default_ep[] = "127.0.0.1:2379";
	char *eps = default_ep;

	*o = (struct bench_opts){
		.clients = 1, .conns = 1, .total = 10000, .key_size = 8, .val_size = 256,
		.op = BENCH_OP_PUT, .key_space = 100000, .timeout_s = 30,
		.connect_timeout_s = 10, .label = "", .fsync_block = 4096,
		.streams = 100, .watchers = 10000, .watch_range = 1,
		.revisions = 100000, .settle_s = 2,
	};
	bool op_set = false, clients_set = false, total_set = false, key_space_set = false;
	bool watchers_set = false, duration_set = false;
	const char *watch_opt = NULL;  /* a watch-only option given, for the error message */
	int ch;
	while ((ch = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
		switch (ch) {
		case 'e': eps = optarg; break;
		case 'c': o->clients = (int)parse_u64("clients", optarg, 1); clients_set = true; break;
		case 'k': o->conns = (int)parse_u64("conns", optarg, 1); break;
		case 'T': o->threads = (int)parse_u64("threads", optarg, 1); break;
		case 'n': o->total = parse_u64("total", optarg, 1); total_set = true; break;
		case 'K': o->key_size = (int)parse_u64("key-size", optarg, 1); break;
		case 'V': o->val_size = (int)parse_u64("val-size", optarg, 0); break;
		case 'S': o->key_space = parse_u64("key-space", optarg, 1); key_space_set = true; break;
		case OPT_RATE: {
			char *end;
			errno = 0;
			o->rate = strtod(optarg, &end);
			if (errno != 0 || end == optarg || *end != '\0' || !(o->rate >= 0)) {
				fprintf(stderr, "msbench: bad value for --rate: '%s'\n", optarg);
				exit(1);
			}
			break;
		}
		case OPT_DURATION:
			o->duration_s = (int)parse_u64("duration", optarg, 0);
			duration_set = true;
			watch_opt = "--duration";
			break;
		case OPT_STREAMS:
			o->streams = (int)parse_u64("streams", optarg, 1);
			watch_opt = "--streams";
			break;
		case OPT_STREAM_CONNS:
			o->stream_conns = (int)parse_u64("stream-conns", optarg, 1);
			watch_opt = "--stream-conns";
			break;
		case OPT_STREAM_THREADS:
			o->stream_threads = (int)parse_u64("stream-threads", optarg, 1);
			watch_opt = "--stream-threads";
			break;
		case OPT_WATCHERS:
			o->watchers = (int)parse_u64("watchers", optarg, 1);
			watchers_set = true;
			watch_opt = "--watchers";
			break;
		case OPT_WATCH_RANGE:
			o->watch_range = parse_u64("watch-range", optarg, 1);
			watch_opt = "--watch-range";
			break;
		case OPT_REVISIONS:
			o->revisions = parse_u64("revisions", optarg, 1);
			watch_opt = "--revisions";
			break;
		case OPT_SERVER_PID:
			o->server_pid = (long)parse_u64("server-pid", optarg, 1);
			watch_opt = "--server-pid";
			break;
		case OPT_SETTLE:
			o->settle_s = (int)parse_u64("settle", optarg, 0);
			watch_opt = "--settle";
			break;
		case 'q': o->sequential = true; break;
		case 't': o->timeout_s = (int)parse_u64("timeout", optarg, 1); break;
		case 'C': o->connect_timeout_s = (int)parse_u64("connect-timeout", optarg, 1); break;
		case 'l': o->label = optarg; break;
		case OPT_CACERT: o->cacert = optarg; break;
		case OPT_CERT: o->cert = optarg; break;
		case OPT_KEY: o->key = optarg; break;
		case 'F': o->fsync_dir = optarg; break;
		case OPT_RTT_PROBE: o->rtt_probe = true; break;
		case 'B': o->fsync_block = (int)parse_u64("fsync-block", optarg, 1); break;
		case 'o': {
			bool found = false;
			for (size_t i = 0; i < sizeof bench_ops / sizeof bench_ops[0]; i++) {
				if (strcmp(optarg, bench_ops[i].name) == 0) {
					o->op = (bench_op)i;
					found = true;
				}
			}
			op_set = true;
			if (!found) {
				fprintf(stderr, "msbench: unknown --op '%s'\n", optarg);
				usage(stderr);
				exit(1);
			}
			break;
		}
		case 'h': usage(stdout); exit(0);
		default: usage(stderr); exit(1);
		}
	}
	/* One operand may name the op ("msbench watch --streams ..."). */
	if (optind < argc && !op_set) {
		for (size_t i = 0; i < sizeof bench_ops / sizeof bench_ops[0]; i++)
			if (strcmp(argv[optind], bench_ops[i].name) == 0) {
				o->op = (bench_op)i;
				optind++;
				break;
			}
	}
	if (optind < argc) {
		fprintf(stderr, "msbench: unexpected argument '%s'\n", argv[optind]);
		usage(stderr);
		exit(1);
	}
	parse_endpoints(o, eps);
	if (op_is_watch(o->op)) {
		parse_watch_args(o, clients_set, total_set, key_space_set, watchers_set,
				 duration_set);
	} else if (watch_opt != NULL) {
		fprintf(stderr, "msbench: %s is for the watch ops only\n", watch_opt);
		exit(1);
	}
	/* Every key number below key_space must fit in key_size decimal digits. */
	uint64_t cap = 1;
	for (int i = 0; i < o->key_size && cap <= o->key_space; i++)
		cap *= 10;
	if (cap < o->key_space) {
		fprintf(stderr, "msbench: --key-space %" PRIu64 " needs more than --key-size %d "
			"decimal digits\n", o->key_space, o->key_size);
		exit(1);
	}
	if ((uint64_t)o->clients > o->total)
		o->clients = (int)o->total;
	if (o->conns > o->clients)
		o->conns = o->clients;
	if (o->threads == 0) {
		long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
		o->threads = (o->clients + 255) / 256;
		if (ncpu > 0 && o->threads > ncpu)
			o->threads = (int)ncpu;
	}
	if (o->threads > o->clients)
		o->threads = o->clients;
}

/*
 * Run o.clients clients over the o.conns channels in b->channels (client i: channel
 * i % K, worker i % T) from the start barrier until the last one retires; b->value and
 * b->lat_ns (or NULL) must be ready. Sets b->t0_ns and, under --duration, b->t_stop_ns;
 * returns when the last call completed, with the process's rusage before and after in
 * *ru0 and *ru1. Under b->record_puts every client's puts end up in b->puts. The
 * workers and their completion queues are gone on return.
 */
static uint64_t clients_run(struct bench *b, uint64_t seed, struct rusage *ru0,
			    struct rusage *ru1)
{
	const struct bench_opts *o = &b->o;
	b->workers = calloc((size_t)o->threads, sizeof *b->workers);
	uint8_t *keys = malloc((size_t)o->clients * (size_t)o->key_size);
	if (b->workers == NULL || keys == NULL) {
		fprintf(stderr, "msbench: out of memory\n");
		abort();
	}
	int per_worker_max = (o->clients + o->threads - 1) / o->threads;
	for (int t = 0; t < o->threads; t++) {
		struct bench_worker *w = &b->workers[t];
		w->bench = b;
		w->cq = grpc_completion_queue_create_for_next(NULL);
		w->clients = calloc((size_t)per_worker_max, sizeof *w->clients);
		w->parked = calloc((size_t)per_worker_max, sizeof *w->parked);
		if (w->clients == NULL || w->parked == NULL)
			abort();
	}
	for (int i = 0; i < o->clients; i++) {
		struct bench_worker *w = &b->workers[i % o->threads];
		struct bench_client *c = &w->clients[w->n_clients++];
		c->worker = w;
		c->channel = b->channels[i % o->conns];
		c->key = keys + (size_t)i * (size_t)o->key_size;
		c->rng = seed ^ ((uint64_t)(i + 1) * 0xD1B54A32D192ED03ULL);
		if (c->rng == 0)
			c->rng = 1;
	}

	pthread_barrier_init(&b->start, NULL, (unsigned)o->threads + 1);
	for (int t = 0; t < o->threads; t++)
		if (pthread_create(&b->workers[t].thread, NULL, worker_main, &b->workers[t]) != 0) {
			fprintf(stderr, "msbench: pthread_create failed\n");
			abort();
		}

	getrusage(RUSAGE_SELF, ru0);
	b->t0_ns = now_ns();
	if (o->duration_s > 0)
		b->t_stop_ns = b->t0_ns + (uint64_t)o->duration_s * 1000000000u;
	pthread_barrier_wait(&b->start);
	uint64_t t_end = b->t0_ns;
	for (int t = 0; t < o->threads; t++) {
		pthread_join(b->workers[t].thread, NULL);
		if (b->workers[t].t_end_ns > t_end)
			t_end = b->workers[t].t_end_ns;
	}
	getrusage(RUSAGE_SELF, ru1);
	pthread_barrier_destroy(&b->start);

	if (b->record_puts) {
		size_t n = 0;
		for (int t = 0; t < o->threads; t++)
			for (int i = 0; i < b->workers[t].n_clients; i++)
				n += b->workers[t].clients[i].n_puts;
		b->puts = malloc((n ? n : 1) * sizeof *b->puts);
		if (b->puts == NULL) {
			fprintf(stderr, "msbench: out of memory\n");
			abort();
		}
		b->n_puts = 0;
		for (int t = 0; t < o->threads; t++)
			for (int i = 0; i < b->workers[t].n_clients; i++) {
				struct bench_client *c = &b->workers[t].clients[i];
				memcpy(b->puts + b->n_puts, c->puts, c->n_puts * sizeof *c->puts);
				b->n_puts += c->n_puts;
			}
	}
	for (int t = 0; t < o->threads; t++) {
		for (int i = 0; i < b->workers[t].n_clients; i++)
			free(b->workers[t].clients[i].puts);
		grpc_completion_queue_destroy(b->workers[t].cq);
		free(b->workers[t].clients);
		free(b->workers[t].parked);
	}
	free(b->workers);
	b->workers = NULL;
	free(keys);
	return t_end;
}

/* ---- watch ops ------------------------------------------------------------------ */

/* CPU counters at one moment: this process, the server (-1 without --server-pid), the machine. */
struct bench_cpu_mark {
	uint64_t t_ns;
	double client_s, server_s, machine_s;
};

static void cpu_mark(const struct bench *b, struct bench_cpu_mark *m)
{
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	m->t_ns = now_ns();
	m->client_s = tv_sec(ru.ru_utime) + tv_sec(ru.ru_stime);
	m->server_s = b->o.server_pid > 0 ? proc_cpu_s(b->o.server_pid) : -1;
	m->machine_s = machine_busy_s();
}

/* Sleep for ns nanoseconds. */
static void sleep_ns(uint64_t ns)
{
	struct timespec ts = {(time_t)(ns / 1000000000u), (long)(ns % 1000000000u)};
	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

/* The key number of key k (key_size decimal digits), or UINT64_MAX if k is none of ours. */
static uint64_t parse_key(const ProtobufCBinaryData *k, int key_size)
{
	if (k->len != (size_t)key_size)
		return UINT64_MAX;
	uint64_t n = 0;
	for (size_t i = 0; i < k->len; i++) {
		if (k->data[i] < '0' || k->data[i] > '9')
			return UINT64_MAX;
		n = n * 10 + (uint64_t)(k->data[i] - '0');
	}
	return n;
}

/* Remember that watch_id id is watcher idx of stream s. Returns false if id is taken. */
static bool stream_map_put(struct bench_stream *s, int64_t id, int32_t idx)
{
	uint32_t h = (uint32_t)(((uint64_t)id * 0x9E3779B97F4A7C15ULL) >> 32) & s->id_mask;
	while (s->id_vals[h] >= 0) {
		if (s->id_keys[h] == id)
			return false;
		h = (h + 1) & s->id_mask;
	}
	s->id_keys[h] = id;
	s->id_vals[h] = idx;
	return true;
}

/* The watcher index stream s gave watch_id id, or -1. */
static int32_t stream_map_get(const struct bench_stream *s, int64_t id)
{
	uint32_t h = (uint32_t)(((uint64_t)id * 0x9E3779B97F4A7C15ULL) >> 32) & s->id_mask;
	while (s->id_vals[h] >= 0) {
		if (s->id_keys[h] == id)
			return s->id_vals[h];
		h = (h + 1) & s->id_mask;
	}
	return -1;
}

/* Start one batch on stream s; a refusal is a bug in msbench, not the server's doing. */
static void stream_batch(struct bench_stream *s, const grpc_op *ops, size_t n,
			 struct bench_wtag *tag)
{
	grpc_call_error err = grpc_call_start_batch(s->call, ops, n, tag, NULL);
	if (err != GRPC_CALL_OK) {
		fprintf(stderr, "msbench: stream %d: grpc_call_start_batch: call error %d\n",
			s->index, (int)err);
		abort();
	}
	s->thread->outstanding++;
}

/* Post stream s's next receive. */
static void stream_recv_next(struct bench_stream *s)
{
	grpc_op op;
	memset(&op, 0, sizeof op);
	op.op = GRPC_OP_RECV_MESSAGE;
	op.data.recv_message.recv_message = &s->recv_buf;
	s->recv_buf = NULL;
	stream_batch(s, &op, 1, &s->t_recv);
}

/*
 * Create stream s's call on its thread's completion queue and start its first
 * batches: the status, the first message with the initial metadata, and our initial
 * metadata. Runs on the main thread before the stream's thread starts.
 */
static void stream_start(struct bench *b, struct bench_stream *s, grpc_channel *ch)
{
	s->call = grpc_channel_create_call(ch, NULL, GRPC_PROPAGATE_DEFAULTS, s->thread->cq,
			b->watch_method, NULL, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
	grpc_metadata_array_init(&s->md_initial);
	grpc_metadata_array_init(&s->md_trailing);
	s->details = grpc_empty_slice();
	s->t_send = (struct bench_wtag){s, WTAG_SEND};
	s->t_recv = (struct bench_wtag){s, WTAG_RECV};
	s->t_status = (struct bench_wtag){s, WTAG_STATUS};

	grpc_op ops[2];
	memset(ops, 0, sizeof ops);
	ops[0].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
	ops[0].data.recv_status_on_client.trailing_metadata = &s->md_trailing;
	ops[0].data.recv_status_on_client.status = &s->status;
	ops[0].data.recv_status_on_client.status_details = &s->details;
	stream_batch(s, ops, 1, &s->t_status);

	memset(ops, 0, sizeof ops);
	ops[0].op = GRPC_OP_RECV_INITIAL_METADATA;
	ops[0].data.recv_initial_metadata.recv_initial_metadata = &s->md_initial;
	ops[1].op = GRPC_OP_RECV_MESSAGE;
	ops[1].data.recv_message.recv_message = &s->recv_buf;
	stream_batch(s, ops, 2, &s->t_recv);

	memset(ops, 0, sizeof ops);
	ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
	stream_batch(s, ops, 1, &s->t_send);
	s->sending = true;
}

/*
 * Send stream s's next create request, unless one is in flight, all are sent, the
 * stream is over or creating has not begun. Watcher k of the stream gets create
 * request k: key = its first key, range_end = the key after its last (none for one
 * key), start_revision = b->start_rev (0: from the next revision on), watch_id 0 (the
 * server assigns it).
 */
static void stream_send_next(struct bench_stream *s)
{
	struct bench *b = s->thread->bench;
	if (s->sending || s->ended || s->n_sent >= s->n_watchers ||
	    atomic_load(&b->phase) != WATCH_CREATE)
		return;
	const struct bench_watcher *w = &s->watchers[s->n_sent];
	size_t ks = (size_t)b->o.key_size;
	uint8_t *kbuf = malloc(2 * ks);
	if (kbuf == NULL)
		abort();
	Etcdserverpb__WatchCreateRequest cr = ETCDSERVERPB__WATCH_CREATE_REQUEST__INIT;
	Etcdserverpb__WatchRequest req = ETCDSERVERPB__WATCH_REQUEST__INIT;
	format_key(kbuf, b->o.key_size, w->lo);
	cr.key = (ProtobufCBinaryData){ks, kbuf};
	if (w->hi - w->lo > 1) {
		if (w->hi < b->key_cap) {
			format_key(kbuf + ks, b->o.key_size, w->hi);
			cr.range_end = (ProtobufCBinaryData){ks, kbuf + ks};
		} else {
			/* hi has more digits than a key: ':' sorts just above '9', above every key */
			static uint8_t above_all[1] = {':'};
			cr.range_end = (ProtobufCBinaryData){1, above_all};
		}
	}
	cr.start_revision = b->start_rev;
	req.request_union_case = ETCDSERVERPB__WATCH_REQUEST__REQUEST_UNION_CREATE_REQUEST;
	req.create_request = &cr;

	size_t len = protobuf_c_message_get_packed_size(&req.base);
	grpc_slice sl = grpc_slice_malloc(len);
	protobuf_c_message_pack(&req.base, GRPC_SLICE_START_PTR(sl));
	free(kbuf);
	s->send_buf = grpc_raw_byte_buffer_create(&sl, 1);
	grpc_slice_unref(sl);

	grpc_op op;
	memset(&op, 0, sizeof op);
	op.op = GRPC_OP_SEND_MESSAGE;
	op.data.send_message.send_message = s->send_buf;
	stream_batch(s, &op, 1, &s->t_send);
	s->sending = true;
	s->n_sent++;
}

/* Append one event arrival to thread t's samples. */
static void wthread_sample(struct bench_wthread *t, int64_t rev, uint64_t t_arr)
{
	if (t->n_samples == t->cap_samples) {
		size_t cap = t->cap_samples ? 2 * t->cap_samples : 65536;
		struct bench_sample *p = realloc(t->samples, cap * sizeof *p);
		if (p == NULL) {
			fprintf(stderr, "msbench: out of memory\n");
			abort();
		}
		t->samples = p;
		t->cap_samples = cap;
	}
	t->samples[t->n_samples++] = (struct bench_sample){rev, t_arr};
}

/*
 * The events of response r, for the watcher of stream s that r->watch_id names: each
 * must be a put on one of the watcher's keys, with a mod_revision above the watcher's
 * previous event's (no duplicates, revision order) and not before the start revision.
 * Good events are counted (and under keep_samples timed); bad ones are failures.
 */
static void watch_events(struct bench_stream *s, const Etcdserverpb__WatchResponse *r,
			 uint64_t t_arr)
{
	struct bench_wthread *t = s->thread;
	struct bench *b = t->bench;
	int32_t idx = stream_map_get(s, r->watch_id);
	if (idx < 0) {
		bench_fail(b, -1, "stream %d: %zu events for watch_id %" PRId64 ", which no "
			   "Created response on this stream named", s->index, r->n_events,
			   r->watch_id);
		return;
	}
	struct bench_watcher *w = &s->watchers[idx];
	size_t wno = (size_t)(w - b->watchers);
	uint64_t before = w->received;
	for (size_t i = 0; i < r->n_events; i++) {
		const Mvccpb__Event *ev = r->events[i];
		const Mvccpb__KeyValue *kv = ev->kv;
		if (kv == NULL) {
			bench_fail(b, -1, "watcher %zu: event without a kv", wno);
			continue;
		}
		uint64_t key = parse_key(&kv->key, b->o.key_size);
		if (ev->type != MVCCPB__EVENT__EVENT_TYPE__PUT || key < w->lo || key >= w->hi) {
			bench_fail(b, -1, "watcher %zu (key numbers [%" PRIu64 ",%" PRIu64 ")) got a "
				   "%s event for key '%.*s' at revision %" PRId64, wno, w->lo, w->hi,
				   ev->type == MVCCPB__EVENT__EVENT_TYPE__PUT ? "put" : "delete",
				   (int)kv->key.len, (const char *)kv->key.data, kv->mod_revision);
			continue;
		}
		if (kv->mod_revision <= w->last_rev || kv->mod_revision < b->start_rev) {
			bench_fail(b, -1, "watcher %zu: event at revision %" PRId64 " after one at %"
				   PRId64 " (start revision %" PRId64 "): duplicate or out of order",
				   wno, kv->mod_revision, w->last_rev, b->start_rev);
			continue;
		}
		w->last_rev = kv->mod_revision;
		w->received++;
		if (b->keep_samples)
			wthread_sample(t, kv->mod_revision, t_arr);
	}
	uint64_t got = w->received - before;
	t->n_events += got;
	t->n_ev_responses++;
	if (r->n_events > t->max_events)
		t->max_events = r->n_events;
	const Mvccpb__KeyValue *last = r->events[r->n_events - 1]->kv;
	if (r->header != NULL && last != NULL) {
		if (r->header->revision > last->mod_revision)
			t->n_hdr_ahead++;
		else if (r->header->revision < last->mod_revision)
			t->n_hdr_behind++;
	}
	t->t_last_event_ns = t_arr;
	if (b->track_complete && before < w->expected && w->received >= w->expected) {
		t->t_complete_ns = t_arr;
		atomic_fetch_add(&b->n_complete, 1);
	}
	atomic_fetch_add(&b->n_received, got);
}

/*
 * One WatchResponse that arrived on stream s at t_arr. A Created response belongs to
 * the stream's oldest unanswered create request (a server answers a stream's creates
 * in order; etcd does); its watch_id then names that watcher. Canceled responses are
 * failures; responses with neither events nor Created are progress notifications.
 */
static void watch_response(struct bench_stream *s, const uint8_t *p, size_t len,
			   uint64_t t_arr)
{
	struct bench_wthread *t = s->thread;
	struct bench *b = t->bench;
	Etcdserverpb__WatchResponse *r = etcdserverpb__watch_response__unpack(NULL, len, p);
	if (r == NULL) {
		bench_fail(b, -1, "stream %d: undecodable WatchResponse (%zu bytes)", s->index, len);
		return;
	}
	t->n_responses++;
	if (r->header == NULL)
		bench_fail(b, -1, "stream %d: WatchResponse without a header", s->index);
	if (r->created) {
		if (s->n_created >= s->n_sent) {
			bench_fail(b, -1, "stream %d: Created response (watch_id %" PRId64 ") with "
				   "no create request outstanding", s->index, r->watch_id);
		} else {
			int idx = s->n_created++;
			struct bench_watcher *w = &s->watchers[idx];
			if (r->canceled)
				bench_fail(b, -1, "stream %d: the server refused watcher %zu: '%s'",
					   s->index, (size_t)(w - b->watchers), r->cancel_reason);
			else if (!stream_map_put(s, r->watch_id, idx))
				bench_fail(b, -1, "stream %d: watch_id %" PRId64 " given twice",
					   s->index, r->watch_id);
			else
				w->created = true;
			t->t_created_ns = t_arr;
			atomic_fetch_add(&b->n_created, 1);
		}
	} else if (r->canceled) {
		bench_fail(b, -1, "stream %d: watch_id %" PRId64 " canceled by the server "
			   "(compact_revision %" PRId64 "): '%s'", s->index, r->watch_id,
			   r->compact_revision, r->cancel_reason);
	} else if (r->n_events == 0) {
		t->n_progress++;
	}
	if (r->n_events > 0)
		watch_events(s, r, t_arr);
	etcdserverpb__watch_response__free_unpacked(r, NULL);
}

/* Stream s's receive completed: handle the message and post the next receive. */
static void stream_received(struct bench_stream *s, bool ok)
{
	uint64_t t_arr = now_ns();
	struct bench *b = s->thread->bench;
	if (!ok || s->recv_buf == NULL)
		return;    /* the stream is over; its status says why */
	grpc_byte_buffer_reader rd;
	if (!grpc_byte_buffer_reader_init(&rd, s->recv_buf)) {
		bench_fail(b, -1, "stream %d: cannot read a received byte buffer", s->index);
	} else {
		grpc_slice sl = grpc_byte_buffer_reader_readall(&rd);
		grpc_byte_buffer_reader_destroy(&rd);
		watch_response(s, GRPC_SLICE_START_PTR(sl), GRPC_SLICE_LENGTH(sl), t_arr);
		grpc_slice_unref(sl);
	}
	grpc_byte_buffer_destroy(s->recv_buf);
	s->recv_buf = NULL;
	if (atomic_load(&b->phase) != WATCH_STOP)
		stream_recv_next(s);
}

/* Stream s's status arrived: before the run's end that is the server ending it, a failure. */
static void stream_ended(struct bench_stream *s)
{
	struct bench *b = s->thread->bench;
	s->ended = true;
	if (atomic_load(&b->phase) == WATCH_STOP)
		return;
	atomic_fetch_add(&b->n_streams_failed, 1);
	atomic_store(&b->stop_clients, true);
	bench_fail(b, (int)s->status, "Watch stream %d ended by the server: status %d (%s): %.*s",
		   s->index, (int)s->status, code_name((int)s->status),
		   (int)GRPC_SLICE_LENGTH(s->details), (const char *)GRPC_SLICE_START_PTR(s->details));
}

/*
 * Stream thread: follows b->phase (OPEN: only receive; CREATE: send every stream's
 * create requests, one after another; STOP: cancel the calls) and handles completions
 * until every batch of its streams is done. Polls the phase every 10 ms when idle.
 */
static void *wthread_main(void *arg)
{
	struct bench_wthread *t = arg;
	struct bench *b = t->bench;
	int seen = WATCH_OPEN;
	for (;;) {
		int phase = atomic_load(&b->phase);
		if (phase != seen) {
			for (int i = 0; i < t->n_streams; i++) {
				if (phase == WATCH_CREATE)
					stream_send_next(t->streams[i]);
				else if (phase == WATCH_STOP)
					grpc_call_cancel(t->streams[i]->call, NULL);
			}
			seen = phase;
		}
		if (seen == WATCH_STOP && t->outstanding == 0)
			break;
		grpc_event ev = grpc_completion_queue_next(t->cq,
				gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC),
					     gpr_time_from_millis(10, GPR_TIMESPAN)), NULL);
		if (ev.type == GRPC_QUEUE_TIMEOUT)
			continue;
		if (ev.type != GRPC_OP_COMPLETE) {
			fprintf(stderr, "msbench: completion queue shut down unexpectedly\n");
			abort();
		}
		struct bench_wtag *tag = ev.tag;
		struct bench_stream *s = tag->s;
		t->outstanding--;
		switch (tag->kind) {
		case WTAG_SEND:
			s->sending = false;
			if (s->send_buf != NULL)
				grpc_byte_buffer_destroy(s->send_buf);
			s->send_buf = NULL;
			if (ev.success)
				stream_send_next(s);
			break;
		case WTAG_RECV:
			stream_received(s, ev.success != 0);
			break;
		case WTAG_STATUS:
		default:
			stream_ended(s);
			break;
		}
	}
	grpc_completion_queue_shutdown(t->cq);
	while (grpc_completion_queue_next(t->cq, gpr_inf_future(GPR_CLOCK_REALTIME),
					  NULL).type != GRPC_QUEUE_SHUTDOWN)
		;
	return NULL;
}

/*
 * Set up the watch side and start it in phase OPEN: N watchers, watcher i on the R
 * key numbers of group i mod (K/R), i.e. [g·R, g·R+R); S streams of consecutive
 * watchers (stream j: watchers [j·N/S, (j+1)·N/S)), so the watchers of one key sit on
 * different streams; stream j on channel j mod stream_conns and thread j mod
 * stream_threads. Returns 0, or -1 if the channels did not connect (printed).
 */
static int watch_open(struct bench *b)
{
	const struct bench_opts *o = &b->o;
	uint64_t groups = o->key_space / o->watch_range;
	b->watchers = calloc((size_t)o->watchers, sizeof *b->watchers);
	b->streams = calloc((size_t)o->streams, sizeof *b->streams);
	b->wthreads = calloc((size_t)o->stream_threads, sizeof *b->wthreads);
	if (b->watchers == NULL || b->streams == NULL || b->wthreads == NULL) {
		fprintf(stderr, "msbench: out of memory\n");
		abort();
	}
	for (int i = 0; i < o->watchers; i++) {
		struct bench_watcher *w = &b->watchers[i];
		w->lo = ((uint64_t)i % groups) * o->watch_range;
		w->hi = w->lo + o->watch_range;
		w->last_rev = 0;
	}
	if (open_channels(b, o->stream_conns, &b->stream_channels) != 0)
		return -1;
	b->watch_method = grpc_slice_from_static_string(BENCH_WATCH_METHOD);

	int per_thread_max = (o->streams + o->stream_threads - 1) / o->stream_threads;
	for (int t = 0; t < o->stream_threads; t++) {
		struct bench_wthread *wt = &b->wthreads[t];
		wt->bench = b;
		wt->cq = grpc_completion_queue_create_for_next(NULL);
		wt->streams = calloc((size_t)per_thread_max, sizeof *wt->streams);
		if (wt->streams == NULL)
			abort();
	}
	for (int j = 0; j < o->streams; j++) {
		struct bench_stream *s = &b->streams[j];
		int first = (int)((int64_t)j * o->watchers / o->streams);
		int end = (int)((int64_t)(j + 1) * o->watchers / o->streams);
		s->index = j;
		s->watchers = b->watchers + first;
		s->n_watchers = end - first;
		uint32_t cap = 2;
		while (cap < 2 * (uint32_t)s->n_watchers)
			cap *= 2;
		s->id_keys = calloc(cap, sizeof *s->id_keys);
		s->id_vals = malloc(cap * sizeof *s->id_vals);
		if (s->id_keys == NULL || s->id_vals == NULL)
			abort();
		for (uint32_t k = 0; k < cap; k++)
			s->id_vals[k] = -1;
		s->id_mask = cap - 1;
		struct bench_wthread *wt = &b->wthreads[j % o->stream_threads];
		s->thread = wt;
		wt->streams[wt->n_streams++] = s;
		stream_start(b, s, b->stream_channels[j % o->stream_conns]);
	}
	atomic_store(&b->phase, WATCH_OPEN);
	for (int t = 0; t < o->stream_threads; t++)
		if (pthread_create(&b->wthreads[t].thread, NULL, wthread_main, &b->wthreads[t]) != 0) {
			fprintf(stderr, "msbench: pthread_create failed\n");
			abort();
		}
	return 0;
}

/*
 * End the watch side: phase STOP (the threads cancel every stream and drain), join
 * the threads, release the calls and the stream channels. The threads' counters and
 * samples and the watchers stay for the report; watch_free releases them.
 */
static void watch_close(struct bench *b)
{
	const struct bench_opts *o = &b->o;
	atomic_store(&b->phase, WATCH_STOP);
	if (b->wthreads != NULL && b->wthreads[0].cq != NULL)
		for (int t = 0; t < o->stream_threads; t++) {
			pthread_join(b->wthreads[t].thread, NULL);
			grpc_completion_queue_destroy(b->wthreads[t].cq);
			b->wthreads[t].cq = NULL;
		}
	for (int j = 0; b->streams != NULL && j < o->streams; j++) {
		struct bench_stream *s = &b->streams[j];
		if (s->call == NULL)
			continue;
		grpc_call_unref(s->call);
		s->call = NULL;
		grpc_metadata_array_destroy(&s->md_initial);
		grpc_metadata_array_destroy(&s->md_trailing);
		grpc_slice_unref(s->details);
	}
	for (int i = 0; b->stream_channels != NULL && i < o->stream_conns; i++)
		grpc_channel_destroy(b->stream_channels[i]);
	free(b->stream_channels);
	b->stream_channels = NULL;
}

/* Release what watch_open, watch_close and the writers left. */
static void watch_free(struct bench *b)
{
	for (int t = 0; b->wthreads != NULL && t < b->o.stream_threads; t++) {
		free(b->wthreads[t].streams);
		free(b->wthreads[t].samples);
	}
	for (int j = 0; b->streams != NULL && j < b->o.streams; j++) {
		free(b->streams[j].id_keys);
		free(b->streams[j].id_vals);
	}
	free(b->wthreads);
	free(b->streams);
	free(b->watchers);
	free(b->puts);
	for (int i = 0; b->channels != NULL && i < b->o.conns; i++)
		grpc_channel_destroy(b->channels[i]);
	free(b->channels);
}

/*
 * Wait until *ctr reaches target. Gives up (false, message printed) when a stream has
 * ended or *ctr has not moved for --timeout seconds; what names the wait.
 */
static bool watch_wait(struct bench *b, atomic_uint_fast64_t *ctr, uint64_t target,
		       const char *what)
{
	uint64_t last = atomic_load(ctr), t_last = now_ns();
	while (last < target) {
		if (atomic_load(&b->n_streams_failed) > 0) {
			fprintf(stderr, "msbench: ERROR: gave up waiting for %s (%" PRIu64 " of %"
				PRIu64 "): a Watch stream ended\n", what, last, target);
			return false;
		}
		sleep_ns(1000000);
		uint64_t v = atomic_load(ctr);
		if (v != last) {
			last = v;
			t_last = now_ns();
		} else if (now_ns() - t_last > (uint64_t)b->o.timeout_s * 1000000000u) {
			fprintf(stderr, "msbench: ERROR: nothing arrived for %d s while waiting for "
				"%s (%" PRIu64 " of %" PRIu64 ")\n", b->o.timeout_s, what, last, target);
			return false;
		}
	}
	return true;
}

/*
 * Set every watcher's expected event count: the recorded puts on its keys with a
 * revision >= min_rev. Returns their sum, the events the streams must deliver.
 */
static uint64_t watch_expect(struct bench *b, int64_t min_rev)
{
	uint64_t k = b->o.key_space;
	uint64_t *cum = calloc((size_t)k + 1, sizeof *cum);
	if (cum == NULL) {
		fprintf(stderr, "msbench: out of memory\n");
		abort();
	}
	for (size_t i = 0; i < b->n_puts; i++)
		if (b->puts[i].rev >= min_rev)
			cum[b->puts[i].key + 1]++;
	for (uint64_t i = 1; i <= k; i++)
		cum[i] += cum[i - 1];
	uint64_t total = 0;
	for (int i = 0; i < b->o.watchers; i++) {
		struct bench_watcher *w = &b->watchers[i];
		w->expected = cum[w->hi] - cum[w->lo];
		total += w->expected;
	}
	free(cum);
	return total;
}

/*
 * Compare what every watcher got with what it should have. On any difference: records
 * a failure, prints a loud banner on stderr, leaves the description in text (else
 * empty) and returns true.
 */
static bool watch_check(struct bench *b, uint64_t expected, uint64_t received,
			char text[BENCH_ERR_TEXT])
{
	uint64_t shortw = 0, overw = 0, uncreated = 0;
	long first = -1;
	for (int i = 0; i < b->o.watchers; i++) {
		const struct bench_watcher *w = &b->watchers[i];
		if (!w->created)
			uncreated++;
		if (w->received != w->expected) {
			if (w->received < w->expected)
				shortw++;
			else
				overw++;
			if (first < 0)
				first = i;
		}
	}
	text[0] = '\0';
	if (shortw + overw == 0 && uncreated == 0 && expected == received)
		return false;
	int n = snprintf(text, BENCH_ERR_TEXT, "events expected %" PRIu64 ", received %" PRIu64
			 "; %" PRIu64 " watchers got too few, %" PRIu64 " too many, %" PRIu64
			 " were never created", expected, received, shortw, overw, uncreated);
	if (first >= 0 && n > 0 && n < BENCH_ERR_TEXT)
		snprintf(text + n, BENCH_ERR_TEXT - (size_t)n, " (first: watcher %ld, keys [%" PRIu64
			 ",%" PRIu64 "), expected %" PRIu64 ", got %" PRIu64 ")", first,
			 b->watchers[first].lo, b->watchers[first].hi, b->watchers[first].expected,
			 b->watchers[first].received);
	bench_fail(b, -1, "%s", text);
	fprintf(stderr, "\nmsbench: !!! EVENT MISMATCH: %s !!!\n\n", text);
	return true;
}

/* qsort comparator for int64_t. */
static int cmp_i64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
	return x < y ? -1 : x > y;
}

/* Nearest-rank percentile of n sorted signed nanosecond values, in milliseconds. */
static double pct_ms_i64(const int64_t *sorted, size_t n, double p)
{
	return n == 0 ? 0.0 : (double)sorted[pct_rank(n, p) - 1] / 1e6;
}

/* Totals of the stream threads' counters (read after watch_close). */
struct bench_wtotals {
	uint64_t responses, ev_responses, events, progress, max_events, hdr_ahead, hdr_behind;
	uint64_t t_last_event_ns, t_created_ns, t_complete_ns;
};

static struct bench_wtotals watch_totals(const struct bench *b)
{
	struct bench_wtotals s = {0};
	for (int t = 0; t < b->o.stream_threads; t++) {
		const struct bench_wthread *w = &b->wthreads[t];
		s.responses += w->n_responses;
		s.ev_responses += w->n_ev_responses;
		s.events += w->n_events;
		s.progress += w->n_progress;
		s.hdr_ahead += w->n_hdr_ahead;
		s.hdr_behind += w->n_hdr_behind;
		if (w->max_events > s.max_events)
			s.max_events = w->max_events;
		if (w->t_last_event_ns > s.t_last_event_ns)
			s.t_last_event_ns = w->t_last_event_ns;
		if (w->t_created_ns > s.t_created_ns)
			s.t_created_ns = w->t_created_ns;
		if (w->t_complete_ns > s.t_complete_ns)
			s.t_complete_ns = w->t_complete_ns;
	}
	return s;
}

/* The settings line and the start of the JSON line every watch op prints. */
static void watch_print_head(const struct bench *b)
{
	const struct bench_opts *o = &b->o;
	double fanout = (double)o->watchers * (double)o->watch_range / (double)o->key_space;
	printf("msbench: op=%s endpoints=%s streams=%d stream-conns=%d stream-threads=%d "
	       "watchers=%d key-space=%" PRIu64 " watch-range=%" PRIu64 " (%.2f watchers per "
	       "put)", bench_ops[o->op].name, o->endpoints[0], o->streams, o->stream_conns,
	       o->stream_threads, o->watchers, o->key_space, o->watch_range, fanout);
	if (o->op != BENCH_OP_WATCH_IDLE)
		printf(" writers=%d conns=%d threads=%d val-size=%d", o->clients, o->conns,
		       o->threads, o->val_size);
	if (o->op == BENCH_OP_WATCH)
		printf(" duration=%d", o->duration_s);
	if (o->op == BENCH_OP_WATCH_CATCHUP)
		printf(" revisions=%" PRIu64, o->revisions);
	if (o->rate > 0 && o->op != BENCH_OP_WATCH_IDLE)
		printf(" rate=%.0f", o->rate);
	printf("\n");
}

static void watch_json_head(const struct bench *b)
{
	const struct bench_opts *o = &b->o;
	printf("{\"tool\":\"msbench\",\"label\":");
	json_str(stdout, o->label);
	printf(",\"op\":\"%s\",\"endpoint\":", bench_ops[o->op].name);
	json_str(stdout, o->endpoints[0]);
	printf(",\"streams\":%d,\"stream_conns\":%d,\"stream_threads\":%d,\"watchers\":%d"
	       ",\"key_space\":%" PRIu64 ",\"watch_range\":%" PRIu64 ",\"fanout\":%.3f"
	       ",\"clients\":%d,\"conns\":%d,\"threads\":%d,\"key_size\":%d,\"val_size\":%d"
	       ",\"duration_s\":%d,\"rate\":%.1f,\"revisions\":%" PRIu64 ",\"server_pid\":%ld",
	       o->streams, o->stream_conns, o->stream_threads, o->watchers, o->key_space,
	       o->watch_range, (double)o->watchers * (double)o->watch_range /
	       (double)o->key_space, o->op == BENCH_OP_WATCH_IDLE ? 0 : o->clients, o->conns,
	       o->threads, o->key_size, o->val_size, o->op == BENCH_OP_WATCH ? o->duration_s : 0,
	       o->rate, o->op == BENCH_OP_WATCH_CATCHUP ? o->revisions : 0, o->server_pid);
}

/* CPU between two marks, as summary text and JSON fields. */
static void watch_print_cpu(const struct bench *b, const struct bench_cpu_mark *m0,
			    const struct bench_cpu_mark *m1, bool json)
{
	double wall = (double)(m1->t_ns - m0->t_ns) / 1e9;
	double cl = m1->client_s - m0->client_s;
	double sv = m0->server_s >= 0 && m1->server_s >= 0 ? m1->server_s - m0->server_s : -1;
	double mc = m0->machine_s >= 0 && m1->machine_s >= 0 ? m1->machine_s - m0->machine_s : -1;
	long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	if (wall <= 0)
		wall = 1e-9;
	if (json) {
		printf(",\"window_s\":%.6f,\"client_cpu_s\":%.3f,\"client_cores\":%.3f"
		       ",\"server_cpu_s\":%.3f,\"server_cores\":%.3f,\"machine_cores\":%.3f"
		       ",\"ncpu\":%ld", wall, cl, cl / wall, sv, sv >= 0 ? sv / wall : -1.0,
		       mc >= 0 ? mc / wall : -1.0, ncpu);
		return;
	}
	printf("msbench: cpu over %.3f s: client %.2f cores", wall, cl / wall);
	if (sv >= 0)
		printf(", server (pid %ld) %.2f cores", b->o.server_pid, sv / wall);
	if (mc >= 0)
		printf(", whole machine %.2f of %ld cores busy", mc / wall, ncpu);
	printf("\n");
}

/* The end of a watch op's JSON line, the failure banner; returns the exit status. */
static int watch_finish(struct bench *b)
{
	uint64_t n_err = atomic_load(&b->n_err);
	printf(",\"errors\":%" PRIu64 ",\"first_error_code\":%d,\"first_error\":", n_err,
	       b->have_err ? b->first_err_code : 0);
	json_str(stdout, b->have_err ? b->first_err : "");
	printf("}\n");
	fflush(stdout);
	if (n_err == 0)
		return 0;
	fprintf(stderr, "\nmsbench: !!! %" PRIu64 " FAILURES IN THE WATCH RUN — these numbers "
		"are NOT a valid benchmark !!!\nmsbench: first error: code %d (%s): %s\n",
		n_err, b->first_err_code, code_name(b->first_err_code), b->first_err);
	if (b->first_err_code == GRPC_STATUS_UNIMPLEMENTED)
		fprintf(stderr, "msbench: the server answered " BENCH_WATCH_METHOD " with "
			"UNIMPLEMENTED: it does not serve the Watch API\n");
	fprintf(stderr, "\n");
	return 3;
}

/* Print the report of a watch run that could not get going and return its status. */
static int watch_abort(struct bench *b, const char *stage)
{
	if (atomic_load(&b->n_streams_failed) > 0)
		stage = "a Watch stream ended (see the first error)";
	fprintf(stderr, "msbench: watch run stopped: %s\n", stage);
	watch_print_head(b);
	printf("msbench: FAILED: %s\n", stage);
	watch_json_head(b);
	printf(",\"failed_stage\":");
	json_str(stdout, stage);
	if (atomic_load(&b->n_err) == 0)
		bench_fail(b, -1, "%s", stage);
	return watch_finish(b);
}

/*
 * Create the watchers (phase CREATE) and wait for all their Created responses.
 * Returns false if that failed (failure recorded).
 */
static bool watch_create_all(struct bench *b)
{
	atomic_store(&b->phase, WATCH_CREATE);
	if (!watch_wait(b, &b->n_created, (uint64_t)b->o.watchers, "Created responses"))
		return false;
	return atomic_load(&b->n_err) == 0;
}

/*
 * --op watch: create the watchers, run the writers for --duration, wait until every
 * event has arrived (or nothing arrives for --timeout s), then report delivery rate
 * and latency. An event is timed against the put whose response header carried the
 * event's mod_revision: commit-to-delivery = event arrival - that put's response
 * arrival (negative when the event overtook the response), send-to-delivery = event
 * arrival - the put's send.
 */
static int watch_delivery(struct bench *b, uint64_t seed)
{
	const struct bench_opts *o = &b->o;
	b->keep_samples = true;
	b->record_puts = true;
	if (watch_open(b) != 0) {
		watch_close(b);
		return 1;
	}
	if (open_channels(b, o->conns, &b->channels) != 0) {
		watch_close(b);
		return 1;
	}
	uint64_t t_c0 = now_ns();
	if (!watch_create_all(b)) {
		watch_close(b);
		return watch_abort(b, "creating the watchers");
	}
	struct bench_cpu_mark m0, m1;
	struct rusage ru0, ru1;
	cpu_mark(b, &m0);
	uint64_t t_w_end = clients_run(b, seed, &ru0, &ru1);
	uint64_t expected = watch_expect(b, 0);
	watch_wait(b, &b->n_received, expected, "the events");
	cpu_mark(b, &m1);
	watch_close(b);

	struct bench_wtotals tot = watch_totals(b);
	uint64_t received = atomic_load(&b->n_received);
	char mismatch[BENCH_ERR_TEXT];
	watch_check(b, expected, received, mismatch);

	/* Join events to puts by revision. */
	int64_t rmin = INT64_MAX, rmax = INT64_MIN;
	for (size_t i = 0; i < b->n_puts; i++) {
		if (b->puts[i].rev < rmin)
			rmin = b->puts[i].rev;
		if (b->puts[i].rev > rmax)
			rmax = b->puts[i].rev;
	}
	size_t span = b->n_puts ? (size_t)(rmax - rmin + 1) : 0;
	uint64_t *ack = calloc(span ? span : 1, sizeof *ack);
	uint64_t *snd = calloc(span ? span : 1, sizeof *snd);
	uint64_t *put_lat = malloc((b->n_puts ? b->n_puts : 1) * sizeof *put_lat);
	int64_t *d_commit = malloc((tot.events ? tot.events : 1) * sizeof *d_commit);
	int64_t *d_send = malloc((tot.events ? tot.events : 1) * sizeof *d_send);
	if (!ack || !snd || !put_lat || !d_commit || !d_send) {
		fprintf(stderr, "msbench: out of memory\n");
		abort();
	}
	for (size_t i = 0; i < b->n_puts; i++) {
		ack[b->puts[i].rev - rmin] = b->puts[i].t_ack_ns;
		snd[b->puts[i].rev - rmin] = b->puts[i].t_send_ns;
		put_lat[i] = b->puts[i].t_ack_ns - b->puts[i].t_send_ns;
	}
	size_t n = 0;
	uint64_t early = 0, foreign = 0;
	for (int t = 0; t < o->stream_threads; t++) {
		const struct bench_wthread *w = &b->wthreads[t];
		for (size_t i = 0; i < w->n_samples; i++) {
			int64_t rev = w->samples[i].rev;
			if (span == 0 || rev < rmin || rev > rmax || ack[rev - rmin] == 0) {
				foreign++;
				continue;
			}
			d_commit[n] = (int64_t)(w->samples[i].t_ns - ack[rev - rmin]);
			d_send[n] = (int64_t)(w->samples[i].t_ns - snd[rev - rmin]);
			if (d_commit[n] < 0)
				early++;
			n++;
		}
	}
	if (foreign > 0)
		bench_fail(b, -1, "%" PRIu64 " events carry a revision no put of this run got",
			   foreign);
	qsort(d_commit, n, sizeof *d_commit, cmp_i64);
	qsort(d_send, n, sizeof *d_send, cmp_i64);
	qsort(put_lat, b->n_puts, sizeof *put_lat, cmp_u64);

	double w_wall = (double)(t_w_end - b->t0_ns) / 1e9;
	uint64_t t_last = tot.t_last_event_ns > t_w_end ? tot.t_last_event_ns : t_w_end;
	double ev_wall = (double)(t_last - b->t0_ns) / 1e9;
	double ev_rate = ev_wall > 0 ? (double)received / ev_wall : 0.0;
	double put_rate = w_wall > 0 ? (double)b->n_puts / w_wall : 0.0;
	double create_s = tot.t_created_ns > t_c0 ? (double)(tot.t_created_ns - t_c0) / 1e9 : 0.0;
	double per_resp = tot.ev_responses ? (double)tot.events / (double)tot.ev_responses : 0.0;
	double early_pct = n ? 100.0 * (double)early / (double)n : 0.0;
	double c50 = pct_ms_i64(d_commit, n, 0.5), c90 = pct_ms_i64(d_commit, n, 0.9);
	double c99 = pct_ms_i64(d_commit, n, 0.99), cmax = pct_ms_i64(d_commit, n, 1.0);
	double s50 = pct_ms_i64(d_send, n, 0.5), s99 = pct_ms_i64(d_send, n, 0.99);
	double p50 = pct_ms(put_lat, b->n_puts, 0.5), p99 = pct_ms(put_lat, b->n_puts, 0.99);

	watch_print_head(b);
	printf("msbench: %d watchers created in %.3f s\n", o->watchers, create_s);
	printf("msbench: writes: %zu puts in %.3f s: %.1f puts/s; put latency ms p50 %.3f "
	       "p99 %.3f\n", b->n_puts, w_wall, put_rate, p50, p99);
	printf("msbench: events: expected %" PRIu64 ", received %" PRIu64 "%s in %.3f s: %.1f "
	       "events/s delivered; %" PRIu64 " event responses (%.2f events each, max %"
	       PRIu64 "), %" PRIu64 " progress\n", expected, received,
	       expected == received ? " (match)" : " (MISMATCH)", ev_wall, ev_rate,
	       tot.ev_responses, per_resp, tot.max_events, tot.progress);
	if (mismatch[0] != '\0')
		printf("msbench: EVENT MISMATCH: %s\n", mismatch);
	printf("msbench: commit-to-delivery ms (event arrival - its put's response arrival) "
	       "p50 %.3f p90 %.3f p99 %.3f max %.3f; %.1f%% of events arrived before their "
	       "put's response; send-to-delivery ms p50 %.3f p99 %.3f\n", c50, c90, c99, cmax,
	       early_pct, s50, s99);
	if (tot.hdr_behind > 0)
		printf("msbench: WARNING: %" PRIu64 " responses had a header revision below "
		       "their last event's\n", tot.hdr_behind);
	watch_print_cpu(b, &m0, &m1, false);

	watch_json_head(b);
	printf(",\"create_s\":%.6f,\"puts\":%zu,\"ok\":%zu,\"puts_per_s\":%.1f,\"put_p50_ms\":%.3f"
	       ",\"put_p99_ms\":%.3f,\"expected\":%" PRIu64 ",\"received\":%" PRIu64
	       ",\"match\":%s,\"wall_s\":%.6f,\"events_per_s\":%.1f,\"p50_ms\":%.3f"
	       ",\"p90_ms\":%.3f,\"p99_ms\":%.3f,\"max_ms\":%.3f,\"before_ack_pct\":%.2f"
	       ",\"send_p50_ms\":%.3f,\"send_p99_ms\":%.3f,\"event_responses\":%" PRIu64
	       ",\"events_per_response\":%.3f,\"max_events_per_response\":%" PRIu64
	       ",\"progress_responses\":%" PRIu64 ",\"hdr_rev_ahead\":%" PRIu64
	       ",\"hdr_rev_behind\":%" PRIu64, create_s, b->n_puts, b->n_puts, put_rate, p50,
	       p99, expected, received, expected == received ? "true" : "false", ev_wall,
	       ev_rate, c50, c90, c99, cmax, early_pct, s50, s99, tot.ev_responses, per_resp,
	       tot.max_events, tot.progress, tot.hdr_ahead, tot.hdr_behind);
	watch_print_cpu(b, &m0, &m1, true);
	free(ack);
	free(snd);
	free(put_lat);
	free(d_commit);
	free(d_send);
	return watch_finish(b);
}

/*
 * --op watch-idle: the server's RSS before the streams, after they are open, and after
 * N idle watchers (nothing is written), each after --settle seconds. Per stream =
 * (after streams - before) / S, per watcher = (after watchers - after streams) / N.
 */
static int watch_idle(struct bench *b)
{
	const struct bench_opts *o = &b->o;
	uint64_t settle = (uint64_t)o->settle_s * 1000000000u;
	long rss0 = proc_rss_kb(o->server_pid);
	if (rss0 < 0) {
		fprintf(stderr, "msbench: ERROR: cannot read VmRSS of --server-pid %ld\n",
			o->server_pid);
		return 1;
	}
	if (watch_open(b) != 0) {
		watch_close(b);
		return 1;
	}
	sleep_ns(settle);
	long rss1 = proc_rss_kb(o->server_pid);
	uint64_t t_c0 = now_ns();
	bool ok = watch_create_all(b);
	uint64_t t_c1 = now_ns();
	if (!ok) {
		watch_close(b);
		return watch_abort(b, "creating the watchers");
	}
	sleep_ns(settle);
	long rss2 = proc_rss_kb(o->server_pid);
	watch_close(b);
	struct bench_wtotals tot = watch_totals(b);
	if (rss1 < 0 || rss2 < 0)
		bench_fail(b, -1, "the server (pid %ld) went away during the run", o->server_pid);
	if (tot.events > 0)
		bench_fail(b, -1, "%" PRIu64 " events arrived although nothing was written "
			   "(another client writes to these keys?)", tot.events);

	double per_stream = (double)(rss1 - rss0) * 1024.0 / (double)o->streams;
	double per_watcher = (double)(rss2 - rss1) * 1024.0 / (double)o->watchers;
	double create_s = (double)(t_c1 - t_c0) / 1e9;
	watch_print_head(b);
	printf("msbench: server pid %ld VmRSS: %ld KiB before, %ld KiB with %d open streams, "
	       "%ld KiB with %d idle watchers (each after %d s settle); watchers created in "
	       "%.3f s\n", o->server_pid, rss0, rss1, o->streams, rss2, o->watchers, o->settle_s,
	       create_s);
	printf("msbench: %.0f bytes per stream (incl. its connection share), %.0f bytes per "
	       "idle watcher\n", per_stream, per_watcher);
	if (rss1 < rss0 || rss2 < rss1)
		printf("msbench: WARNING: the server's RSS shrank during the measurement (it is "
		       "returning memory freed before); measure on a freshly started server\n");
	watch_json_head(b);
	printf(",\"settle_s\":%d,\"create_s\":%.6f,\"rss_before_kb\":%ld,\"rss_streams_kb\":%ld"
	       ",\"rss_watchers_kb\":%ld,\"bytes_per_stream\":%.1f,\"bytes_per_watcher\":%.1f"
	       ",\"events_received\":%" PRIu64, o->settle_s, create_s, rss0, rss1, rss2,
	       per_stream, per_watcher, tot.events);
	return watch_finish(b);
}

/*
 * --op watch-catchup: with the streams open, write --revisions puts, then create the
 * watchers with start_revision = last put's revision - revisions + 1 and time from the
 * first create request until every watcher has every event of those revisions on its
 * keys (counts known up front from the recorded puts).
 */
static int watch_catchup(struct bench *b, uint64_t seed)
{
	const struct bench_opts *o = &b->o;
	b->record_puts = true;
	if (watch_open(b) != 0) {
		watch_close(b);
		return 1;
	}
	if (open_channels(b, o->conns, &b->channels) != 0) {
		watch_close(b);
		return 1;
	}
	struct rusage ru0, ru1;
	uint64_t t_w_end = clients_run(b, seed, &ru0, &ru1);
	double w_wall = (double)(t_w_end - b->t0_ns) / 1e9;
	if (atomic_load(&b->n_err) > 0 || b->n_puts == 0) {
		watch_close(b);
		return watch_abort(b, "writing the history");
	}
	int64_t rmax = 0;
	for (size_t i = 0; i < b->n_puts; i++)
		if (b->puts[i].rev > rmax)
			rmax = b->puts[i].rev;
	int64_t start = rmax - (int64_t)o->revisions + 1;
	if (start < 1)
		start = 1;
	uint64_t expected = watch_expect(b, start);
	uint64_t none = 0;
	for (int i = 0; i < o->watchers; i++)
		if (b->watchers[i].expected == 0)
			none++;
	atomic_store(&b->n_complete, none);
	b->start_rev = start;
	b->track_complete = true;

	struct bench_cpu_mark m0, m1;
	cpu_mark(b, &m0);
	bool ok = watch_create_all(b);
	if (ok)
		ok = watch_wait(b, &b->n_complete, (uint64_t)o->watchers,
				"every watcher to catch up");
	cpu_mark(b, &m1);
	watch_close(b);
	if (!ok && atomic_load(&b->n_created) < (uint64_t)o->watchers)
		return watch_abort(b, "creating the watchers");

	struct bench_wtotals tot = watch_totals(b);
	uint64_t received = atomic_load(&b->n_received);
	char mismatch[BENCH_ERR_TEXT];
	watch_check(b, expected, received, mismatch);
	uint64_t complete = atomic_load(&b->n_complete);
	double create_s = tot.t_created_ns > m0.t_ns ? (double)(tot.t_created_ns - m0.t_ns) / 1e9 : 0;
	double catchup_s = complete == (uint64_t)o->watchers && tot.t_complete_ns > m0.t_ns
			   ? (double)(tot.t_complete_ns - m0.t_ns) / 1e9 : -1.0;
	uint64_t ev_resp = tot.ev_responses;
	double per_resp = ev_resp ? (double)tot.events / (double)ev_resp : 0.0;
	double ev_rate = catchup_s > 0 ? (double)received / catchup_s : 0.0;

	watch_print_head(b);
	printf("msbench: history: %zu puts in %.3f s (%.1f puts/s), revisions %" PRId64 "..%"
	       PRId64 "\n", b->n_puts, w_wall, w_wall > 0 ? (double)b->n_puts / w_wall : 0.0,
	       start, rmax);
	printf("msbench: %d watchers from start_revision %" PRId64 ": all created after %.3f s, "
	       "all caught up after ", o->watchers, start, create_s);
	if (catchup_s >= 0)
		printf("%.3f s", catchup_s);
	else
		printf("NEVER (%" PRIu64 " of %d complete)", complete, o->watchers);
	printf("; events expected %" PRIu64 ", received %" PRIu64 "%s (%.1f events/s); %" PRIu64
	       " event responses (%.2f events each, max %" PRIu64 "), %" PRIu64 " with a header "
	       "revision above their last event's\n", expected, received,
	       expected == received ? " (match)" : " (MISMATCH)", ev_rate, ev_resp, per_resp,
	       tot.max_events, tot.hdr_ahead);
	if (mismatch[0] != '\0')
		printf("msbench: EVENT MISMATCH: %s\n", mismatch);
	watch_print_cpu(b, &m0, &m1, false);
	watch_json_head(b);
	printf(",\"puts\":%zu,\"ok\":%zu,\"history_s\":%.6f,\"start_revision\":%" PRId64
	       ",\"current_revision\":%" PRId64 ",\"create_s\":%.6f,\"catchup_s\":%.6f"
	       ",\"expected\":%" PRIu64 ",\"received\":%" PRIu64 ",\"match\":%s"
	       ",\"events_per_s\":%.1f,\"event_responses\":%" PRIu64 ",\"events_per_response\":%.3f"
	       ",\"max_events_per_response\":%" PRIu64 ",\"progress_responses\":%" PRIu64
	       ",\"hdr_rev_ahead\":%" PRIu64 ",\"hdr_rev_behind\":%" PRIu64, b->n_puts,
	       b->n_puts, w_wall, start, rmax, create_s, catchup_s, expected, received,
	       expected == received ? "true" : "false", ev_rate, tot.ev_responses, per_resp,
	       tot.max_events, tot.progress, tot.hdr_ahead, tot.hdr_behind);
	watch_print_cpu(b, &m0, &m1, true);
	return watch_finish(b);
}

/* Run the watch op o.op; returns msbench's exit status. */
static int watch_main(struct bench *b, uint64_t seed)
{
	b->key_cap = UINT64_MAX;
	uint64_t cap = 1;
	int digits = 0;
	while (digits < b->o.key_size && cap <= UINT64_MAX / 10) {
		cap *= 10;
		digits++;
	}
	if (digits == b->o.key_size)
		b->key_cap = cap;
	int rc;
	switch (b->o.op) {
	case BENCH_OP_WATCH_IDLE:
		rc = watch_idle(b);
		break;
	case BENCH_OP_WATCH_CATCHUP:
		rc = watch_catchup(b, seed);
		break;
	case BENCH_OP_WATCH:
	default:
		rc = watch_delivery(b, seed);
		break;
	}
	watch_free(b);
	return rc;
}

/*
 * Parse, connect, run the clients on their worker threads, then report. Exit status:
 * 0 clean, 1 usage or connection failure, 3 if any operation failed.
 */
int main(int argc, char **argv)
{
	struct bench *b = calloc(1, sizeof *b);
	if (b == NULL)
		abort();
	parse_args(&b->o, argc, argv);
	const struct bench_opts *o = &b->o;
	if (o->fsync_dir != NULL || o->rtt_probe) {
		int rc = o->fsync_dir != NULL ? fsync_probe(o) : rtt_probe(o);
		free(b);
		return rc;
	}
	long ncpu = sysconf(_SC_NPROCESSORS_ONLN);

	b->value = malloc((size_t)o->val_size + 1);
	if (b->value == NULL) {
		fprintf(stderr, "msbench: out of memory\n");
		abort();
	}
	uint64_t seed = 0x9E3779B97F4A7C15ULL ^ (uint64_t)getpid();
	for (int i = 0; i < o->val_size; i++)
		b->value[i] = (uint8_t)('a' + rng_next(&seed) % 26);
	pthread_mutex_init(&b->err_mu, NULL);
	b->client_op = op_is_watch(o->op) ? BENCH_OP_PUT : o->op;

	grpc_init();
	b->method = grpc_slice_from_static_string(bench_ops[o->op].method);
	if (op_is_watch(o->op)) {
		int rc = watch_main(b, seed);
		grpc_shutdown();
		free(b->value);
		pthread_mutex_destroy(&b->err_mu);
		free(b);
		return rc;
	}

	b->lat_ns = malloc(o->total * sizeof *b->lat_ns);
	if (b->lat_ns == NULL) {
		fprintf(stderr, "msbench: out of memory\n");
		abort();
	}
	for (uint64_t i = 0; i < o->total; i++)
		b->lat_ns[i] = BENCH_LAT_FAILED;
	if (open_channels(b, o->conns, &b->channels) != 0) {
		for (int i = 0; b->channels != NULL && i < o->conns; i++)
			grpc_channel_destroy(b->channels[i]);
		grpc_shutdown();
		free(b->channels);
		free(b->lat_ns);
		free(b->value);
		pthread_mutex_destroy(&b->err_mu);
		free(b);
		return 1;
	}

	struct rusage ru0, ru1;
	uint64_t t_end = clients_run(b, seed, &ru0, &ru1);
	uint64_t t0 = b->t0_ns;

	/* Results. */
	double wall = (double)(t_end - t0) / 1e9;
	double cpu = tv_sec(ru1.ru_utime) - tv_sec(ru0.ru_utime) +
		     tv_sec(ru1.ru_stime) - tv_sec(ru0.ru_stime);
	uint64_t n_ok = atomic_load(&b->n_ok), n_err = atomic_load(&b->n_err);
	size_t n = 0;
	for (uint64_t i = 0; i < o->total; i++)
		if (b->lat_ns[i] != BENCH_LAT_FAILED)
			b->lat_ns[n++] = b->lat_ns[i];
	qsort(b->lat_ns, n, sizeof *b->lat_ns, cmp_u64);
	double sum = 0;
	for (size_t i = 0; i < n; i++)
		sum += (double)b->lat_ns[i];
	double mean_ms = n ? sum / (double)n / 1e6 : 0.0;
	double p50 = pct_ms(b->lat_ns, n, 0.50), p90 = pct_ms(b->lat_ns, n, 0.90);
	double p99 = pct_ms(b->lat_ns, n, 0.99), pmax = pct_ms(b->lat_ns, n, 1.0);
	double ops = wall > 0 ? (double)n_ok / wall : 0.0;
	double cores = wall > 0 ? cpu / wall : 0.0;
	double share = ncpu > 0 ? 100.0 * cores / (double)ncpu : 0.0;
	uint64_t range_kvs = atomic_load(&b->n_range_kvs);
	uint64_t txn_failed = atomic_load(&b->n_txn_failed);

	printf("msbench: op=%s endpoints=%s clients=%d conns=%d threads=%d total=%" PRIu64
	       " key-size=%d val-size=%d key-space=%" PRIu64 "%s",
	       bench_ops[o->op].name, o->endpoints[0], o->clients, o->conns, o->threads,
	       o->total, o->key_size, o->val_size, o->key_space,
	       o->sequential ? " sequential" : "");
	if (o->rate > 0)
		printf(" rate=%.0f", o->rate);
	printf("\n");
	printf("msbench: %" PRIu64 " ok, %" PRIu64 " failed in %.3f s: %.1f ops/s; latency ms "
	       "p50 %.3f p90 %.3f p99 %.3f max %.3f mean %.3f; client cpu %.2f s = %.2f cores "
	       "(%.0f%% of %ld CPUs)\n",
	       n_ok, n_err, wall, ops, p50, p90, p99, pmax, mean_ms, cpu, cores, share, ncpu);
	if (o->op == BENCH_OP_RANGE || o->op == BENCH_OP_RANGE_SER)
		printf("msbench: range returned %" PRIu64 " kvs for %" PRIu64 " ops (%.1f%% hit)\n",
		       range_kvs, n_ok, n_ok ? 100.0 * (double)range_kvs / (double)n_ok : 0.0);
	if (o->op == BENCH_OP_TXN && txn_failed > 0)
		printf("msbench: WARNING: %" PRIu64 " txns took the failure branch "
		       "(compare version > -1 must always hold)\n", txn_failed);

	printf("{\"tool\":\"msbench\",\"label\":");
	json_str(stdout, o->label);
	printf(",\"op\":\"%s\",\"endpoint\":", bench_ops[o->op].name);
	json_str(stdout, o->endpoints[0]);
	printf(",\"clients\":%d,\"conns\":%d,\"threads\":%d,\"total\":%" PRIu64
	       ",\"key_size\":%d,\"val_size\":%d,\"key_space\":%" PRIu64 ",\"sequential\":%s"
	       ",\"ok\":%" PRIu64 ",\"errors\":%" PRIu64 ",\"wall_s\":%.6f,\"ops_per_s\":%.1f"
	       ",\"p50_ms\":%.3f,\"p90_ms\":%.3f,\"p99_ms\":%.3f,\"max_ms\":%.3f,\"mean_ms\":%.3f"
	       ",\"client_cpu_s\":%.3f,\"client_cores\":%.3f,\"client_cpu_share_pct\":%.1f"
	       ",\"ncpu\":%ld,\"range_kvs\":%" PRIu64 ",\"txn_failed\":%" PRIu64
	       ",\"rate\":%.1f,\"first_error_code\":%d,\"first_error\":",
	       o->clients, o->conns, o->threads, o->total, o->key_size, o->val_size,
	       o->key_space, o->sequential ? "true" : "false", n_ok, n_err, wall, ops,
	       p50, p90, p99, pmax, mean_ms, cpu, cores, share, ncpu, range_kvs, txn_failed,
	       o->rate, b->have_err ? b->first_err_code : 0);
	json_str(stdout, b->have_err ? b->first_err : "");
	printf("}\n");
	fflush(stdout);

	if (n_err > 0)
		fprintf(stderr, "\nmsbench: !!! %" PRIu64 " of %" PRIu64 " OPERATIONS FAILED — "
			"these numbers are NOT a valid benchmark !!!\nmsbench: first error: "
			"code %d (%s): %s\n\n", n_err, o->total, b->first_err_code,
			code_name(b->first_err_code), b->first_err);

	for (int i = 0; i < o->conns; i++)
		grpc_channel_destroy(b->channels[i]);
	grpc_shutdown();
	free(b->channels);
	free(b->lat_ns);
	free(b->value);
	pthread_mutex_destroy(&b->err_mu);
	free(b);
	return n_err > 0 ? 3 : 0;
}
