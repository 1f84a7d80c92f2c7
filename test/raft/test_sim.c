/*
 * test_sim.c - thousands of seeded random schedules through the simulator (raft-sim).
 *
 * Each seed fixes the whole run (see sim_random.c): cluster size and membership
 * churn come from the seed too, so a failure is replayed with the seed alone:
 *
 *     RAFT_SEED=1234 ./test/raft/raft-sim            (from the build dir)
 *     RAFT_SEED=1234 RAFT_TRACE=1 ./test/raft/raft-sim   (with a message trace)
 *
 * RAFT_SOAK_SEEDS=N adds a soak test running N more seeds after the normal ones.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>

#include "sim.h"

#define STEPS 1200
static unsigned steps(void)
{
	const char *e = getenv("RAFT_SIM_STEPS");
	return e ? (unsigned)strtoul(e, NULL, 10) : STEPS;
}

static void params(uint64_t seed, size_t *voters, bool *membership)
{
	*voters = (seed % 2) ? 5 : 3;
	*membership = (seed % 3) == 0;
}

static bool run_seed(uint64_t seed, bool trace)
{
	size_t voters;
	bool membership;
	params(seed, &voters, &membership);
	char err[1100];
	if (sim_run_random(seed, voters, membership, steps(), trace, err, sizeof(err)))
		return true;
	cr_log_error("seed %llu (%zu voters%s) failed: %s\n  replay: RAFT_SEED=%llu "
	             "./test/raft/raft-sim  (add RAFT_TRACE=1 for a trace)",
	             (unsigned long long)seed, voters, membership ? ", membership changes" : "", err,
	             (unsigned long long)seed);
	return false;
}

static void run_range(uint64_t from, uint64_t count)
{
	const char *one = getenv("RAFT_SEED");
	if (one != NULL) {
		uint64_t seed = strtoull(one, NULL, 10);
		if (seed < from || seed >= from + count)
			cr_skip_test("RAFT_SEED=%llu is not in this test's range", (unsigned long long)seed);
		cr_assert(run_seed(seed, getenv("RAFT_TRACE") != NULL));
		return;
	}
	uint64_t failures = 0;
	for (uint64_t seed = from; seed < from + count && failures < 3; seed++)
		if (!run_seed(seed, false))
			failures++;
	cr_assert_eq(failures, 0, "%llu seed(s) failed, see above", (unsigned long long)failures);
}

/* the normal suite: 3000 schedules of 1200 ticks in four tests (run in parallel by Criterion) */
Test(sim, seeds_0_to_749, .timeout = 280) { run_range(0, 750); }
Test(sim, seeds_750_to_1499, .timeout = 280) { run_range(750, 750); }
Test(sim, seeds_1500_to_2249, .timeout = 280) { run_range(1500, 750); }
Test(sim, seeds_2250_to_2999, .timeout = 280) { run_range(2250, 750); }

Test(sim, soak)
{
	const char *n = getenv("RAFT_SOAK_SEEDS");
	if (n == NULL)
		cr_skip_test("set RAFT_SOAK_SEEDS=N to run N more seeds");
	run_range(100000, strtoull(n, NULL, 10));
}
