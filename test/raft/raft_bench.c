/*
 * raft_bench.c - micro-benchmark (not a test): entries committed per second through
 * the simulator for a 3-member group with batching, and allocations per committed
 * entry counted through the allocation hooks. Each round the leader gets one propose
 * event carrying BATCH entries (the node loop's group commit), the network delivers
 * everything, and every member persists and applies. Usage:
 *     ./test/raft/raft-bench [entries] [batch] [entry_bytes]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "sim.h"

static long allocs;

static void *count_realloc(void *ud, void *p, size_t n)
{
	(void)ud;
	allocs++;
	return realloc(p, n);
}

static void count_free(void *ud, void *p)
{
	(void)ud;
	free(p);
}

static double now_sec(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static void round_trip(sim *s, raft_blob **b, size_t batch, size_t bytes, uint64_t *seq)
{
	for (size_t i = 0; i < batch; i++) {
		b[i] = raft_blob_new(bytes);
		memset(b[i]->data, 0, bytes);
		memcpy(b[i]->data, seq, sizeof(*seq));
		(*seq)++;
	}
	raft_event ev = {.type = RAFT_EV_PROPOSE, .propose = {b, batch}};
	if (raft_step(s->nodes[1].r, &ev) != 0)
		abort();
	for (size_t i = 0; i < batch; i++)
		raft_blob_unref(b[i]);
	sim_process(s, 1);
	sim_stabilize(s);
}

int main(int argc, char **argv)
{
	long total = argc > 1 ? atol(argv[1]) : 1000000;
	size_t batch = argc > 2 ? (size_t)atol(argv[2]) : 64;
	size_t bytes = argc > 3 ? (size_t)atol(argv[3]) : 128;
	if (batch < 1 || bytes < 8)
		return 2;
	raft_allocator a = {count_realloc, count_free, NULL};
	raft_set_allocator(&a);
	sim s;
	sim_opts o;
	memset(&o, 0, sizeof(o));
	o.n_voters = 3;
	o.n_nodes = 3;
	o.max_msg_bytes = 1 << 20;
	sim_init(&s, &o, 1);
	sim_campaign(&s, 1);
	sim_stabilize(&s);
	raft_blob **b = calloc(batch, sizeof(*b));
	uint64_t seq = 1;
	for (int i = 0; i < 50; i++) /* warm up: arenas and arrays reach their size */
		round_trip(&s, b, batch, bytes, &seq);
	uint64_t applied0 = s.nodes[3].n_applied_entries;
	long allocs0 = allocs;
	double t0 = now_sec();
	long rounds = total / (long)batch;
	for (long r = 0; r < rounds; r++) {
		round_trip(&s, b, batch, bytes, &seq);
		/* the caller compacts behind snapshots, as the server will */
		if (r % 64 == 63) {
			long before = allocs;
			for (raft_id id = 1; id <= 3; id++)
				sim_compact(&s, id, 16);
			allocs = before; /* snapshot blobs are the benchmark's, not raft's */
		}
	}
	double dt = now_sec() - t0;
	uint64_t committed = s.nodes[3].n_applied_entries - applied0;
	long a_all = allocs - allocs0;
	printf("entries committed and applied on all 3 members: %llu in %.3f s\n",
	       (unsigned long long)committed, dt);
	printf("throughput: %.0f entries/s (batch %zu, %zu-byte entries)\n", committed / dt, batch,
	       bytes);
	printf("allocations through the hooks per committed entry: %.4f total, %.4f beyond the "
	       "entry's own buffer (%ld allocations in all beyond the entries' buffers)\n",
	       (double)a_all / committed, (double)(a_all - (long)committed) / committed,
	       a_all - (long)committed);
	free(b);
	sim_free(&s);
	raft_set_allocator(NULL);
	return s.failed ? 1 : 0;
}
