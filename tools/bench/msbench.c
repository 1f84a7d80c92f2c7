/*
 * msbench: a closed-loop load generator for etcd's v3 KV API, written against the
 * gRPC C core so that it measures metastore and real etcd with the same client.
 *
 * C clients (each one call in flight at a time) are spread over K channels (K HTTP/2
 * connections: every channel gets its own subchannel pool) and over T completion-queue
 * threads. Each thread owns one completion queue and drives its clients with async
 * unary calls: one grpc_call_start_batch per operation carrying all six ops, and the
 * completion of that batch starts the client's next operation. Operations are claimed
 * from one shared counter until --total have been issued.
 *
 * Every operation is timed with CLOCK_MONOTONIC; latencies of successful operations go
 * into one array that is sorted at the end for p50/p90/p99/max. Every status is checked
 * and every response decoded: failures are counted, the first one is printed with its
 * gRPC code and details, and a run with failures says so on stderr and exits 3.
 * The process's own CPU time (getrusage, all threads including gRPC's) is reported so
 * that the load generator's share of a small machine is visible next to the numbers.
 *
 * Output: one human-readable summary and one JSON line (starting with '{').
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
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
} bench_op;

static const struct {
	const char *name;
	const char *method;
} bench_ops[] = {
	[BENCH_OP_PUT] = {"put", "/etcdserverpb.KV/Put"},
	[BENCH_OP_RANGE] = {"range", "/etcdserverpb.KV/Range"},
	[BENCH_OP_RANGE_SER] = {"range-serializable", "/etcdserverpb.KV/Range"},
	[BENCH_OP_TXN] = {"txn", "/etcdserverpb.KV/Txn"},
};

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
	const char *fsync_dir; /* --fsync-probe: measure fdatasync there instead */
	int fsync_block;
};

struct bench;
struct bench_worker;

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
};

/* One completion-queue thread and the clients it drives. */
struct bench_worker {
	struct bench *bench;
	pthread_t thread;
	grpc_completion_queue *cq;
	struct bench_client *clients;
	int n_clients;
	uint64_t t_end_ns;             /* when its last call completed */
};

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

	switch (b->o.op) {
	case BENCH_OP_PUT:
		put.key = key;
		put.value = val;
		msg = &put.base;
		break;
	case BENCH_OP_RANGE:
	case BENCH_OP_RANGE_SER:
		range.key = key;
		range.serializable = b->o.op == BENCH_OP_RANGE_SER;
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

	switch (b->o.op) {
	case BENCH_OP_PUT: {
		Etcdserverpb__PutResponse *r = etcdserverpb__put_response__unpack(NULL, len, p);
		if (r == NULL || r->header == NULL) {
			bench_fail(b, -1, "bad PutResponse (%zu bytes)", len);
			rc = -1;
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
 * Claim the next operation and start it on client c. Returns true if a call is now in
 * flight, false if the run is over for this client (all ops claimed) or the call could
 * not be started (recorded as a failure of that op; the client then retires).
 */
static bool client_start(struct bench_client *c)
{
	struct bench *b = c->worker->bench;
	uint64_t idx = atomic_fetch_add(&b->next_op, 1);
	if (idx >= b->o.total)
		return false;

	uint64_t keyno = b->o.sequential ? idx % b->o.key_space
					 : rng_next(&c->rng) % b->o.key_space;
	format_key(c->key, b->o.key_size, keyno);
	c->op_index = idx;
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

/* Client c's batch completed: time it, check it, release the call's resources. */
static void client_finish(struct bench_client *c, bool batch_ok)
{
	struct bench *b = c->worker->bench;
	uint64_t lat = now_ns() - c->t_start_ns;
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
		b->lat_ns[c->op_index] = lat;
	} else {
		b->lat_ns[c->op_index] = BENCH_LAT_FAILED;
	}

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

/* Worker thread: start every client, then one switch over completions until done. */
static void *worker_main(void *arg)
{
	struct bench_worker *w = arg;
	int active = 0;

	pthread_barrier_wait(&w->bench->start);
	for (int i = 0; i < w->n_clients; i++)
		if (client_start(&w->clients[i]))
			active++;

	while (active > 0) {
		grpc_event ev = grpc_completion_queue_next(w->cq,
				gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
		switch (ev.type) {
		case GRPC_OP_COMPLETE: {
			struct bench_client *c = ev.tag;
			client_finish(c, ev.success != 0);
			if (!client_start(c))
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
 * Open K channels round-robin over the endpoints and wait until each is READY, so
 * connection setup is not part of the measurement. Returns 0 or -1 (message printed).
 */
static int open_channels(struct bench *b)
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

	b->channels = calloc((size_t)b->o.conns, sizeof *b->channels);
	if (b->channels == NULL)
		return -1;
	grpc_channel_credentials *creds = grpc_insecure_credentials_create();
	for (int i = 0; i < b->o.conns; i++)
		b->channels[i] = grpc_channel_create(b->o.endpoints[i % b->o.n_endpoints],
						     creds, &chargs);
	grpc_channel_credentials_release(creds);

	grpc_completion_queue *cq = grpc_completion_queue_create_for_next(NULL);
	gpr_timespec deadline = gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC),
			gpr_time_from_seconds(b->o.connect_timeout_s, GPR_TIMESPAN));
	int rc = 0;
	for (int i = 0; i < b->o.conns && rc == 0; i++) {
		grpc_connectivity_state st =
			grpc_channel_check_connectivity_state(b->channels[i], 1);
		while (st != GRPC_CHANNEL_READY) {
			if (st == GRPC_CHANNEL_SHUTDOWN) {
				rc = -1;
				break;
			}
			grpc_channel_watch_connectivity_state(b->channels[i], st, deadline,
							      cq, NULL);
			grpc_event ev = grpc_completion_queue_next(cq,
					gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
			if (ev.type != GRPC_OP_COMPLETE || !ev.success) {
				rc = -1;
				break;
			}
			st = grpc_channel_check_connectivity_state(b->channels[i], 1);
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

/* Nearest-rank percentile of n sorted values, in milliseconds. */
static double pct_ms(const uint64_t *sorted, size_t n, double p)
{
	if (n == 0)
		return 0.0;
	size_t rank = (size_t)ceil(p * (double)n);
	if (rank < 1)
		rank = 1;
	if (rank > n)
		rank = n;
	return (double)sorted[rank - 1] / 1e6;
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

/* The option summary, to f. */
static void usage(FILE *f)
{
	fprintf(f,
"usage: msbench [options]\n"
"  --endpoints H:P[,H:P...]  etcd v3 gRPC endpoints (http:// prefix allowed)  [127.0.0.1:2379]\n"
"  --clients C               concurrent clients = calls in flight            [1]\n"
"  --conns K                 gRPC channels (TCP connections), clients spread  [1]\n"
"  --threads T               completion-queue threads  [ceil(C/256), at most nproc]\n"
"  --total N                 operations to run                               [10000]\n"
"  --op OP                   put | range | range-serializable | txn          [put]\n"
"  --key-size B              key length, zero-padded decimal key numbers     [8]\n"
"  --val-size B              value length for put/txn                        [256]\n"
"  --key-space S             keys are numbers in [0,S)                       [100000]\n"
"  --sequential              key = op index mod S (default: uniform random)\n"
"  --timeout SEC             per-call deadline                               [30]\n"
"  --connect-timeout SEC     wait for every channel to be READY              [10]\n"
"  --label TEXT              copied into the JSON line\n"
"  --fsync-probe DIR         no gRPC: time --total pwrite+fdatasync of --fsync-block\n"
"                            bytes in a preallocated 64 MiB file in DIR (like etcd's WAL)\n"
"  --fsync-block B           block size for --fsync-probe                    [4096]\n"
"Prints a summary line and a JSON line. Exit 0 ok, 1 usage/setup, 3 if any op failed.\n");
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
		{"fsync-probe", required_argument, NULL, 'F'},
		{"fsync-block", required_argument, NULL, 'B'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	static char default_ep[] = "127.0.0.1:2379";
	char *eps = default_ep;

	*o = (struct bench_opts){
		.clients = 1, .conns = 1, .total = 10000, .key_size = 8, .val_size = 256,
		.op = BENCH_OP_PUT, .key_space = 100000, .timeout_s = 30,
		.connect_timeout_s = 10, .label = "", .fsync_block = 4096,
	};
	int ch;
	while ((ch = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
		switch (ch) {
		case 'e': eps = optarg; break;
		case 'c': o->clients = (int)parse_u64("clients", optarg, 1); break;
		case 'k': o->conns = (int)parse_u64("conns", optarg, 1); break;
		case 'T': o->threads = (int)parse_u64("threads", optarg, 1); break;
		case 'n': o->total = parse_u64("total", optarg, 1); break;
		case 'K': o->key_size = (int)parse_u64("key-size", optarg, 1); break;
		case 'V': o->val_size = (int)parse_u64("val-size", optarg, 0); break;
		case 'S': o->key_space = parse_u64("key-space", optarg, 1); break;
		case 'q': o->sequential = true; break;
		case 't': o->timeout_s = (int)parse_u64("timeout", optarg, 1); break;
		case 'C': o->connect_timeout_s = (int)parse_u64("connect-timeout", optarg, 1); break;
		case 'l': o->label = optarg; break;
		case 'F': o->fsync_dir = optarg; break;
		case 'B': o->fsync_block = (int)parse_u64("fsync-block", optarg, 1); break;
		case 'o': {
			bool found = false;
			for (size_t i = 0; i < sizeof bench_ops / sizeof bench_ops[0]; i++) {
				if (strcmp(optarg, bench_ops[i].name) == 0) {
					o->op = (bench_op)i;
					found = true;
				}
			}
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
	if (optind < argc) {
		fprintf(stderr, "msbench: unexpected argument '%s'\n", argv[optind]);
		usage(stderr);
		exit(1);
	}
	parse_endpoints(o, eps);
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
	if (o->fsync_dir != NULL) {
		int rc = fsync_probe(o);
		free(b);
		return rc;
	}
	long ncpu = sysconf(_SC_NPROCESSORS_ONLN);

	b->value = malloc((size_t)o->val_size + 1);
	b->lat_ns = malloc(o->total * sizeof *b->lat_ns);
	b->workers = calloc((size_t)o->threads, sizeof *b->workers);
	struct bench_client *clients = calloc((size_t)o->clients, sizeof *clients);
	uint8_t *keys = malloc((size_t)o->clients * (size_t)o->key_size);
	if (!b->value || !b->lat_ns || !b->workers || !clients || !keys) {
		fprintf(stderr, "msbench: out of memory\n");
		abort();
	}
	uint64_t seed = 0x9E3779B97F4A7C15ULL ^ (uint64_t)getpid();
	for (int i = 0; i < o->val_size; i++)
		b->value[i] = (uint8_t)('a' + rng_next(&seed) % 26);
	for (uint64_t i = 0; i < o->total; i++)
		b->lat_ns[i] = BENCH_LAT_FAILED;
	pthread_mutex_init(&b->err_mu, NULL);

	grpc_init();
	b->method = grpc_slice_from_static_string(bench_ops[o->op].method);
	if (open_channels(b) != 0) {
		for (int i = 0; b->channels != NULL && i < o->conns; i++)
			grpc_channel_destroy(b->channels[i]);
		grpc_shutdown();
		free(b->channels);
		free(b->workers);
		free(clients);
		free(keys);
		free(b->lat_ns);
		free(b->value);
		pthread_mutex_destroy(&b->err_mu);
		free(b);
		return 1;
	}

	/* Client i: channel i % K, worker i % T. */
	int per_worker_max = (o->clients + o->threads - 1) / o->threads;
	for (int t = 0; t < o->threads; t++) {
		struct bench_worker *w = &b->workers[t];
		w->bench = b;
		w->cq = grpc_completion_queue_create_for_next(NULL);
		w->clients = calloc((size_t)per_worker_max, sizeof *w->clients);
		if (w->clients == NULL)
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
	free(clients);

	pthread_barrier_init(&b->start, NULL, (unsigned)o->threads + 1);
	for (int t = 0; t < o->threads; t++)
		if (pthread_create(&b->workers[t].thread, NULL, worker_main, &b->workers[t]) != 0) {
			fprintf(stderr, "msbench: pthread_create failed\n");
			abort();
		}

	struct rusage ru0, ru1;
	getrusage(RUSAGE_SELF, &ru0);
	uint64_t t0 = now_ns();
	pthread_barrier_wait(&b->start);
	uint64_t t_end = t0;
	for (int t = 0; t < o->threads; t++) {
		pthread_join(b->workers[t].thread, NULL);
		if (b->workers[t].t_end_ns > t_end)
			t_end = b->workers[t].t_end_ns;
	}
	getrusage(RUSAGE_SELF, &ru1);

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
	       " key-size=%d val-size=%d key-space=%" PRIu64 "%s\n",
	       bench_ops[o->op].name, o->endpoints[0], o->clients, o->conns, o->threads,
	       o->total, o->key_size, o->val_size, o->key_space,
	       o->sequential ? " sequential" : "");
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
	       ",\"first_error_code\":%d,\"first_error\":",
	       o->clients, o->conns, o->threads, o->total, o->key_size, o->val_size,
	       o->key_space, o->sequential ? "true" : "false", n_ok, n_err, wall, ops,
	       p50, p90, p99, pmax, mean_ms, cpu, cores, share, ncpu, range_kvs, txn_failed,
	       b->have_err ? b->first_err_code : 0);
	json_str(stdout, b->have_err ? b->first_err : "");
	printf("}\n");
	fflush(stdout);

	if (n_err > 0)
		fprintf(stderr, "\nmsbench: !!! %" PRIu64 " of %" PRIu64 " OPERATIONS FAILED — "
			"these numbers are NOT a valid benchmark !!!\nmsbench: first error: "
			"code %d (%s): %s\n\n", n_err, o->total, b->first_err_code,
			code_name(b->first_err_code), b->first_err);

	for (int t = 0; t < o->threads; t++) {
		grpc_completion_queue_destroy(b->workers[t].cq);
		free(b->workers[t].clients);
	}
	for (int i = 0; i < o->conns; i++)
		grpc_channel_destroy(b->channels[i]);
	grpc_shutdown();
	free(b->channels);
	free(b->workers);
	free(keys);
	free(b->lat_ns);
	free(b->value);
	pthread_mutex_destroy(&b->err_mu);
	pthread_barrier_destroy(&b->start);
	free(b);
	return n_err > 0 ? 3 : 0;
}
