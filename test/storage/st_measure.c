/*
 * st_measure: the two numbers docs/disk-format.md reports, measured on a real
 * data dir.
 *
 *   st_measure bytes   [dir] [nkeys]   nkeys (default 100000) keys of 16 bytes
 *                                      with 100-byte random values, one write
 *                                      request (= one revision) each; prints
 *                                      on-disk bytes per key after a full
 *                                      RocksDB compaction.
 *   st_measure restart [dir] [nrevs]   nrevs (default 1000000) revisions over
 *                                      100000 keys, written by a child process
 *                                      that exits without closing (a crash);
 *                                      then times st_db_open + the first read
 *                                      three ways: after the crash (RocksDB
 *                                      replays its WAL), after a clean close,
 *                                      and after a full compaction.
 *   st_measure reads   [dir] [nkeys]   nkeys (default 1000000) keys of 16 bytes
 *                                      with 256-byte values written in order,
 *                                      then nkeys/2 updates of random keys,
 *                                      closed and opened again; times 200000 one-key
 *                                      reads of random keys at the current
 *                                      revision (each its own read txn, as a
 *                                      Range), CPU time of the reading thread.
 *
 * Without [dir] a temp dir is used and removed. Not a test: run by hand from a
 * release build (see docs/disk-format.md for the exact commands).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/wait.h>
#include <unistd.h>

#include "storage/st_db.h"
#include "storage/st_mvcc.h"
#include "test/storage/st_testutil.h"

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static st_db *must_open(const char *dir)
{
	st_options o = {.create_if_missing = true};
	char err[512];
	st_db *db;
	int rc = st_db_open(dir, &o, &db, err, sizeof(err));
	if (rc != ST_OK) {
		fprintf(stderr, "open %s: %s: %s\n", dir, st_strerror(rc), err);
		exit(1);
	}
	return db;
}

static uint64_t rng = 88172645463325252ULL;

static uint64_t xorshift(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

/* One write request: key number @k (16 bytes) = @val, at log index ++*@index. */
static void put_key(st_db *db, long k, const uint8_t *val, size_t vlen, uint64_t *index)
{
	char key[32];
	snprintf(key, sizeof(key), "key-%012ld", k);
	st_txn *t;
	if (st_txn_begin(db, true, &t) != ST_OK ||
	    st_txn_put(t, (uint8_t *)key, 16, val, vlen, 0) != ST_OK ||
	    st_txn_commit(t, ++*index) != ST_OK) {
		fprintf(stderr, "write of key %ld failed\n", k);
		exit(1);
	}
}

static uint64_t applied_index(st_db *db)
{
	st_kv_state s;
	st_kv_state_get(db, &s);
	return s.applied;
}

/* Write @nrevs single-put revisions cycling over @nkeys keys. */
static void load(st_db *db, long nrevs, long nkeys)
{
	uint8_t val[100];
	uint64_t index = applied_index(db);
	for (long i = 0; i < nrevs; i++) {
		for (size_t j = 0; j < sizeof(val); j += 8) {
			uint64_t r = xorshift();
			memcpy(val + j, &r, sizeof(val) - j < 8 ? sizeof(val) - j : 8);
		}
		put_key(db, i % nkeys, val, sizeof(val), &index);
	}
}

static double cpu_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* @n puts of 256-byte values, in apply groups of @per: of the keys 0..@n-1 in
 * order when @nkeys is 0, else of random keys of [0, @nkeys). */
static void load_groups(st_db *db, long n, long nkeys, long per)
{
	uint8_t val[256];
	uint64_t index = applied_index(db);
	for (long i = 0; i < n; i++) {
		if (i % per == 0 && st_apply_begin(db) != ST_OK)
			exit(1);
		for (size_t j = 0; j < sizeof(val); j += 8) {
			uint64_t r = xorshift() & 0x0f0f0f0f0f0f0f0fULL; /* compressible, as msbench's */
			memcpy(val + j, &r, 8);
		}
		put_key(db, nkeys ? (long)(xorshift() % (uint64_t)nkeys) : i, val, sizeof(val), &index);
		if (((i + 1) % per == 0 || i + 1 == n) && st_apply_commit(db) != ST_OK)
			exit(1);
	}
}

static void measure_reads(const char *dir, long nkeys)
{
	st_db *db = must_open(dir);
	double t0 = now();
	/* every key once in order (a bulk load), then random updates of half as many */
	load_groups(db, nkeys, 0, 100);
	load_groups(db, nkeys / 2, nkeys, 100);
	double dt = now() - t0;
	st_db_close(db);
	db = must_open(dir);
	const long nreads = 200000;
	long found = 0;
	char key[32];
	double c0 = cpu_now(), w0 = now();
	for (long i = 0; i < nreads; i++) {
		snprintf(key, sizeof(key), "key-%012ld", (long)(xorshift() % (uint64_t)nkeys));
		st_txn *t;
		st_kv kv;
		if (st_txn_begin(db, false, &t) != ST_OK)
			exit(1);
		if (st_txn_get(t, (const uint8_t *)key, 16, &kv) == ST_OK)
			found++;
		st_txn_abort(t);
	}
	double cpu = cpu_now() - c0, wall = now() - w0;
	int64_t bytes;
	st_db_size(db, &bytes, NULL);
	printf("keys=%ld load+updates=%.1fs dir=%lld bytes reads=%ld found=%ld: %.2f us CPU/read, "
	       "%.0f reads/s\n",
	       nkeys, dt, (long long)bytes, nreads, found, cpu * 1e6 / (double)nreads,
	       (double)nreads / wall);
	st_db_close(db);
}

static double timed_open(const char *dir, int64_t *rev)
{
	double t0 = now();
	st_db *db = must_open(dir);
	st_txn *t;
	st_kv kv;
	st_txn_begin(db, false, &t);
	int rc = st_txn_get(t, (const uint8_t *)"key-000000000007", 16, &kv);
	st_txn_abort(t);
	double dt = now() - t0;
	if (rc != ST_OK) {
		fprintf(stderr, "first read failed: %s\n", st_strerror(rc));
		exit(1);
	}
	st_kv_state s;
	st_kv_state_get(db, &s);
	*rev = s.rev;
	st_db_close(db);
	return dt;
}

int main(int argc, char **argv)
{
	if (argc < 2 || (strcmp(argv[1], "bytes") != 0 && strcmp(argv[1], "restart") != 0 &&
	                 strcmp(argv[1], "reads") != 0)) {
		fprintf(stderr, "usage: %s bytes|restart|reads [dir] [count]\n", argv[0]);
		return 2;
	}
	bool tmp = argc < 3 || strcmp(argv[2], "-") == 0;
	char *dir = tmp ? tu_tmpdir() : strdup(argv[2]);
	long n = argc > 3 ? atol(argv[3]) : 0;

	if (strcmp(argv[1], "reads") == 0) {
		measure_reads(dir, n > 0 ? n : 1000000);
	} else if (strcmp(argv[1], "bytes") == 0) {
		if (n <= 0)
			n = 100000;
		st_db *db = must_open(dir);
		double t0 = now();
		load(db, n, n);
		double dt = now() - t0;
		int64_t before, after, live;
		st_db_size(db, &before, NULL);
		st_db_compact_files(db);
		st_db_size(db, &after, &live);
		printf("keys=%ld key=16B value=100B (random) writes=%.0f/s\n", n, (double)n / dt);
		printf("dir bytes before compaction: %lld (%.1f B/key, includes WAL)\n", (long long)before,
		       (double)before / (double)n);
		printf("dir bytes after flush+compaction: %lld (%.1f B/key)\n", (long long)after,
		       (double)after / (double)n);
		printf("live-data estimate: %lld (%.1f B/key)\n", (long long)live, (double)live / (double)n);
		st_db_close(db);
	} else {
		if (n <= 0)
			n = 1000000;
		/* A child writes and then dies without closing: a crash. */
		double t0 = now();
		pid_t pid = fork();
		if (pid == 0) {
			st_db *cdb = must_open(dir);
			load(cdb, n, 100000);
			_exit(0);
		}
		int status;
		waitpid(pid, &status, 0);
		double dt = now() - t0;
		if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
			fprintf(stderr, "loader failed\n");
			return 1;
		}
		int64_t rev;
		double o1 = timed_open(dir, &rev);
		double o2 = timed_open(dir, &rev);
		st_db *db = must_open(dir);
		st_db_compact_files(db);
		int64_t bytes;
		st_db_size(db, &bytes, NULL);
		st_db_close(db);
		double o3 = timed_open(dir, &rev);
		printf("revisions=%ld keys=100000 load=%.1fs (%.0f rev/s) current revision=%lld "
		       "dir=%lld bytes\n",
		       n, dt, (double)n / dt, (long long)rev, (long long)bytes);
		printf("open+first read: after a crash (WAL replay) %.1f ms; after a clean close %.1f ms; "
		       "after full compaction %.1f ms\n",
		       o1 * 1e3, o2 * 1e3, o3 * 1e3);
	}
	if (tmp)
		tu_rmrf(dir);
	free(dir);
	return 0;
}
