/*
 * test_defer: the completion worker (server/srv_defer). Completions run in the
 * order posted, exactly once; the first of a burst runs on the posting thread,
 * the rest on the worker; stop runs what is queued; posts after stop or to no
 * worker run on the caller. Real threads, no mocks.
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
