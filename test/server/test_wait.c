/*
 * Unit tests for srv_wait, the pending-proposal wait table: add/take by id,
 * duplicates refused, growth past the initial bucket count, fail-all completes
 * every waiter once, and concurrent add/take from several threads. And
 * srv_waitone: a post before or during the wait, a post after the waiter gave
 * up (the result is freed by the last reference, exactly once), an abandoned
 * call.
 */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdlib.h>
#include <unistd.h>

#include "etcdcompat/ec_errors.h"
#include "server/srv_wait.h"

static int completed[5000];
static int last_err[5000];

static void done(void *ctx, int err, void *resp)
{
	(void)resp;
	size_t i = (size_t)(uintptr_t)ctx;
	completed[i]++;
	last_err[i] = err;
}

Test(wait, add_take_and_duplicates)
{
	srv_wait w;
	cr_assert_eq(srv_wait_init(&w), 0);
	cr_assert_eq(srv_wait_add(&w, 42, done, (void *)1), 0);
	cr_assert_eq(srv_wait_add(&w, 42, done, (void *)2), -1, "duplicate id must be refused");
	cr_assert_null(srv_wait_take(&w, 43));
	srv_waiter *e = srv_wait_take(&w, 42);
	cr_assert_not_null(e);
	cr_assert_eq(e->ctx, (void *)1);
	free(e);
	cr_assert_null(srv_wait_take(&w, 42), "taken twice");
	srv_wait_destroy(&w, EC_STOPPED);
}

Test(wait, grows_and_fail_all_completes_each_once)
{
	srv_wait w;
	cr_assert_eq(srv_wait_init(&w), 0);
	for (size_t i = 0; i < 5000; i++) {
		completed[i] = 0;
		/* ids with a member prefix in the high bits, as srv_node builds them */
		cr_assert_eq(srv_wait_add(&w, (0xabcdULL << 48) | i, done, (void *)(uintptr_t)i), 0);
	}
	cr_assert_eq(w.count, 5000);
	cr_assert_gt(w.nbuckets, 1024, "table should have grown");
	for (size_t i = 0; i < 5000; i += 2)
		free(srv_wait_take(&w, (0xabcdULL << 48) | i));
	srv_wait_fail_all(&w, EC_STOPPED);
	for (size_t i = 0; i < 5000; i++) {
		cr_assert_eq(completed[i], i % 2 ? 1 : 0, "waiter %zu", i);
		if (i % 2)
			cr_assert_eq(last_err[i], EC_STOPPED);
	}
	cr_assert_eq(w.count, 0);
	srv_wait_destroy(&w, EC_STOPPED);
}

static srv_wait shared;

static void *adder(void *arg)
{
	uint64_t base = (uint64_t)(uintptr_t)arg * 100000;
	for (uint64_t i = 0; i < 20000; i++) {
		if (srv_wait_add(&shared, base + i, done, NULL) != 0)
			return (void *)1;
		srv_waiter *e = srv_wait_take(&shared, base + i);
		if (!e || e->id != base + i)
			return (void *)1;
		free(e);
	}
	return NULL;
}

Test(wait, concurrent_add_take)
{
	cr_assert_eq(srv_wait_init(&shared), 0);
	pthread_t t[4];
	for (uintptr_t i = 0; i < 4; i++)
		pthread_create(&t[i], NULL, adder, (void *)i);
	for (int i = 0; i < 4; i++) {
		void *r;
		pthread_join(t[i], &r);
		cr_assert_null(r);
	}
	cr_assert_eq(shared.count, 0);
	srv_wait_destroy(&shared, EC_STOPPED);
}

typedef struct one {
	srv_waitone base;
	int *result; /* owned: freed by release */
	int *released;
} one;

static void one_release(srv_waitone *b)
{
	one *o = (one *)b;
	free(o->result);
	(*o->released)++;
	free(o);
}

static one *one_new(int *released)
{
	one *o = calloc(1, sizeof(*o));
	cr_assert_not_null(o);
	o->released = released;
	srv_waitone_init(&o->base, one_release);
	return o;
}

static void *late_post(void *arg)
{
	one *o = arg;
	usleep(50 * 1000);
	o->result = malloc(sizeof(int));
	*o->result = 7;
	srv_waitone_post(&o->base, EC_OK);
	return NULL;
}

Test(waitone, post_before_and_during_the_wait)
{
	int released = 0;
	one *o = one_new(&released);
	o->result = malloc(sizeof(int));
	*o->result = 3;
	srv_waitone_post(&o->base, EC_COMPACTED);
	cr_assert_eq(srv_waitone_wait(&o->base, 1000, EC_TIMEOUT), EC_COMPACTED);
	cr_assert_eq(*o->result, 3);
	cr_assert_eq(released, 0);
	srv_waitone_unref(&o->base);
	cr_assert_eq(released, 1);

	o = one_new(&released);
	pthread_t th;
	cr_assert_eq(pthread_create(&th, NULL, late_post, o), 0);
	cr_assert_eq(srv_waitone_wait(&o->base, 5000, EC_TIMEOUT), EC_OK);
	cr_assert_eq(*o->result, 7);
	pthread_join(th, NULL);
	srv_waitone_unref(&o->base);
	cr_assert_eq(released, 2);
}

Test(waitone, a_post_after_the_timeout_frees_once)
{
	int released = 0;
	one *o = one_new(&released);
	pthread_t th;
	cr_assert_eq(pthread_create(&th, NULL, late_post, o), 0);
	cr_assert_eq(srv_waitone_wait(&o->base, 10, EC_TIMEOUT), EC_TIMEOUT);
	srv_waitone_unref(&o->base); /* the waiter leaves first */
	cr_assert_eq(released, 0, "freed while the callback still holds it");
	pthread_join(th, NULL);
	cr_assert_eq(released, 1);

	o = one_new(&released);
	srv_waitone_abandon(&o->base); /* no callback will come */
	cr_assert_eq(released, 2);
}
