/*
 * test_defer: the completion worker (server/srv_defer). Completions run in the
 * order posted, exactly once; the first of a burst runs on the posting thread,
 * the rest on the worker; a held burst (srv_defer_hold/release, as the node
 * loop posts an apply group's replies) of several goes to the worker, a held
 * burst of one runs on the releasing thread; stop runs what is queued; posts
 * after stop or to no worker run on the caller. Real threads, no mocks.
 */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <unistd.h>

#include "server/srv_defer.h"

#define N 2000

static int order[N];
static pthread_t ran_on[N];
static atomic_int ran;
static atomic_int entered; /* completions that started (before the gate) */
static pthread_mutex_t gate = PTHREAD_MUTEX_INITIALIZER;

static void record(void *ctx, int err, void *resp)
{
	int i = (int)(intptr_t)ctx;
	cr_assert_eq(err, i % 7, "err passed through");
	cr_assert_eq(resp, (void *)(intptr_t)(i * 3), "resp passed through");
	atomic_fetch_add(&entered, 1);
	pthread_mutex_lock(&gate); /* lets a test hold the worker inside a completion */
	int at = atomic_fetch_add(&ran, 1);
	order[at] = i;
	ran_on[i] = pthread_self();
	pthread_mutex_unlock(&gate);
}

static void post(srv_defer *d, int i)
{
	srv_defer_post(d, record, (void *)(intptr_t)i, i % 7, (void *)(intptr_t)(i * 3));
}

static void wait_ran(int n)
{
	for (int t = 0; t < 5000 && atomic_load(&ran) < n; t++)
		usleep(1000);
	cr_assert_eq(atomic_load(&ran), n, "every completion ran once");
}

static void reset(void)
{
	atomic_store(&ran, 0);
	atomic_store(&entered, 0);
	memset(order, 0, sizeof(order));
}

Test(defer, completions_run_once_in_order)
{
	reset();
	srv_defer *d;
	cr_assert_eq(srv_defer_start("t-defer", &d), 0);
	usleep(20000); /* the worker is asleep */
	for (int i = 0; i < N; i++)
		post(d, i);
	wait_ran(N);
	for (int i = 0; i < N; i++)
		cr_assert_eq(order[i], i, "position %d", i);
	srv_defer_stop(d);
	cr_assert_eq(atomic_load(&ran), N, "nothing ran twice");
}

Test(defer, a_lone_completion_runs_on_the_posting_thread)
{
	reset();
	srv_defer *d;
	cr_assert_eq(srv_defer_start("t-defer", &d), 0);
	usleep(20000); /* the worker is asleep */
	for (int i = 0; i < 3; i++) {
		post(d, i);
		cr_assert_eq(atomic_load(&ran), i + 1, "ran before post returned");
		cr_assert(pthread_equal(ran_on[i], pthread_self()));
	}
	srv_defer_stop(d);
}

/* Wait until @n completions have started. */
static void wait_entered(int n)
{
	for (int t = 0; t < 5000 && atomic_load(&entered) < n; t++)
		usleep(1000);
	cr_assert_geq(atomic_load(&entered), n);
}

static void *poster(void *arg)
{
	srv_defer *d = arg;
	post(d, 1);
	return NULL;
}

Test(defer, a_burst_queues_behind_a_running_completion)
{
	reset();
	srv_defer *d;
	cr_assert_eq(srv_defer_start("t-defer", &d), 0);
	usleep(20000);
	pthread_t me = pthread_self();
	/* 0 runs inline on another thread and blocks on the gate; meanwhile the
	 * posts from here must go to the worker, in order, and not overtake. */
	pthread_mutex_lock(&gate);
	pthread_t th;
	pthread_create(&th, NULL, poster, d);
	wait_entered(1); /* the poster is inside completion 1, waiting for the gate */
	for (int i = 2; i < 50; i++)
		post(d, i);
	pthread_mutex_unlock(&gate);
	pthread_join(th, NULL);
	wait_ran(49);
	int prev = 1;
	for (int i = 0; i < 49; i++) {
		if (order[i] == 1)
			continue;
		cr_assert_gt(order[i], prev, "the queued ones keep their order");
		prev = order[i];
		cr_assert_not(pthread_equal(ran_on[order[i]], me), "%d ran on the worker", order[i]);
	}
	srv_defer_stop(d);
}

Test(defer, stop_runs_what_is_queued_and_later_posts_run_here)
{
	reset();
	srv_defer *d;
	cr_assert_eq(srv_defer_start("t-defer", &d), 0);
	usleep(20000);
	pthread_mutex_lock(&gate);
	pthread_t th;
	pthread_create(&th, NULL, poster, d); /* blocks inline in completion 1 */
	wait_entered(1);
	for (int i = 2; i < 100; i++)
		post(d, i);
	pthread_mutex_unlock(&gate);
	pthread_join(th, NULL);
	srv_defer_stop(d);
	cr_assert_eq(atomic_load(&ran), 99, "stop ran everything queued");
	srv_defer_post(NULL, record, (void *)(intptr_t)100, 100 % 7, (void *)(intptr_t)300);
	cr_assert_eq(atomic_load(&ran), 100, "no worker: runs on the caller");
	cr_assert(pthread_equal(ran_on[100], pthread_self()));
}

Test(defer, a_held_burst_goes_to_the_worker_in_order)
{
	reset();
	srv_defer *d;
	cr_assert_eq(srv_defer_start("t-defer", &d), 0);
	usleep(20000); /* the worker is asleep */
	pthread_t me = pthread_self();
	for (int round = 0; round < 3; round++) {
		int base = round * 20;
		srv_defer_hold(d);
		for (int i = base; i < base + 20; i++)
			post(d, i); /* a held post never runs on its poster (checked below) */
		srv_defer_release(d);
		wait_ran(base + 20);
	}
	for (int i = 0; i < 60; i++) {
		cr_assert_eq(order[i], i, "position %d", i);
		cr_assert_not(pthread_equal(ran_on[i], me), "%d ran on the worker", i);
	}
	srv_defer_stop(d);
	cr_assert_eq(atomic_load(&ran), 60, "nothing ran twice");
}

Test(defer, a_held_burst_of_one_runs_on_the_releasing_thread)
{
	reset();
	srv_defer *d;
	cr_assert_eq(srv_defer_start("t-defer", &d), 0);
	usleep(20000);
	for (int i = 0; i < 3; i++) {
		srv_defer_hold(d);
		post(d, i);
		cr_assert_eq(atomic_load(&ran), i, "held until the release");
		srv_defer_release(d);
		cr_assert_eq(atomic_load(&ran), i + 1, "ran before release returned");
		cr_assert(pthread_equal(ran_on[i], pthread_self()));
	}
	srv_defer_hold(d); /* an empty burst wakes nobody and runs nothing */
	srv_defer_release(d);
	usleep(20000);
	cr_assert_eq(atomic_load(&ran), 3);
	srv_defer_hold(NULL); /* no worker: harmless */
	srv_defer_release(NULL);
	srv_defer_stop(d);
}

Test(defer, a_held_burst_of_one_behind_a_busy_worker_stays_in_order)
{
	reset();
	srv_defer *d;
	cr_assert_eq(srv_defer_start("t-defer", &d), 0);
	usleep(20000);
	/* A burst of five holds the worker inside completion 0 (the gate); a
	 * burst of one released meanwhile must queue behind the rest, not run
	 * on the releasing thread ahead of them. */
	pthread_mutex_lock(&gate);
	srv_defer_hold(d);
	for (int i = 0; i < 5; i++)
		post(d, i);
	srv_defer_release(d);
	wait_entered(1);
	srv_defer_hold(d);
	post(d, 5);
	srv_defer_release(d);
	cr_assert_eq(atomic_load(&ran), 0, "nothing overtook the gated completion");
	pthread_mutex_unlock(&gate);
	wait_ran(6);
	for (int i = 0; i < 6; i++)
		cr_assert_eq(order[i], i, "position %d", i);
	cr_assert_not(pthread_equal(ran_on[5], pthread_self()), "5 ran on the worker");
	srv_defer_stop(d);
}
