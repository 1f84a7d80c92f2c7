/*
 * srv_wait: a chained hash table of pending proposals keyed by request id
 * (see srv_wait.h). Request ids are already well mixed in their low bits (a
 * per-member counter), so the bucket is the id masked; the table doubles when the
 * load passes one waiter per bucket.
 */
#include "server/srv_wait.h"

#include <errno.h>
#include <stdlib.h>
#include <time.h>

#define SRV_WAIT_MIN_BUCKETS 1024

static size_t bucket_of(const srv_wait *w, uint64_t id)
{
	/* Fold the high half in: ids carry the member prefix in their top bits. */
	return (size_t)((id ^ (id >> 32)) & (w->nbuckets - 1));
}

int srv_wait_init(srv_wait *w)
{
	w->nbuckets = SRV_WAIT_MIN_BUCKETS;
	w->count = 0;
	w->buckets = calloc(w->nbuckets, sizeof(*w->buckets));
	if (!w->buckets)
		return -1;
	pthread_mutex_init(&w->mu, NULL);
	return 0;
}

/* Double the bucket array; on allocation failure keep the old one (still correct,
 * only slower). Called with the lock held. */
static void grow(srv_wait *w)
{
	size_t n = w->nbuckets * 2;
	srv_waiter **nb = calloc(n, sizeof(*nb));
	if (!nb)
		return;
	srv_waiter **old = w->buckets;
	size_t oldn = w->nbuckets;
	w->buckets = nb;
	w->nbuckets = n;
	for (size_t i = 0; i < oldn; i++) {
		srv_waiter *e = old[i];
		while (e) {
			srv_waiter *next = e->next;
			size_t b = bucket_of(w, e->id);
			e->next = nb[b];
			nb[b] = e;
			e = next;
		}
	}
	free(old);
}

int srv_wait_add(srv_wait *w, uint64_t id, srv_wait_fn fn, void *ctx)
{
	srv_waiter *e = malloc(sizeof(*e));
	if (!e)
		return -1;
	e->id = id;
	e->fn = fn;
	e->ctx = ctx;
	pthread_mutex_lock(&w->mu);
	size_t b = bucket_of(w, id);
	for (srv_waiter *x = w->buckets[b]; x; x = x->next) {
		if (x->id == id) {
			pthread_mutex_unlock(&w->mu);
			free(e);
			return -1;
		}
	}
	e->next = w->buckets[b];
	w->buckets[b] = e;
	if (++w->count > w->nbuckets)
		grow(w);
	pthread_mutex_unlock(&w->mu);
	return 0;
}

srv_waiter *srv_wait_take(srv_wait *w, uint64_t id)
{
	pthread_mutex_lock(&w->mu);
	srv_waiter **pp = &w->buckets[bucket_of(w, id)];
	srv_waiter *e = NULL;
	for (; *pp; pp = &(*pp)->next) {
		if ((*pp)->id == id) {
			e = *pp;
			*pp = e->next;
			w->count--;
			break;
		}
	}
	pthread_mutex_unlock(&w->mu);
	return e;
}

void srv_wait_fail_all(srv_wait *w, int err)
{
	/* Detach everything under the lock, complete outside it: a callback may
	 * reply to a gRPC call and must not run with our lock held. */
	srv_waiter *list = NULL;
	pthread_mutex_lock(&w->mu);
	for (size_t i = 0; i < w->nbuckets; i++) {
		while (w->buckets[i]) {
			srv_waiter *e = w->buckets[i];
			w->buckets[i] = e->next;
			e->next = list;
			list = e;
		}
	}
	w->count = 0;
	pthread_mutex_unlock(&w->mu);
	while (list) {
		srv_waiter *e = list;
		list = e->next;
		e->fn(e->ctx, err, NULL);
		free(e);
	}
}

void srv_wait_destroy(srv_wait *w, int err)
{
	if (!w->buckets)
		return;
	srv_wait_fail_all(w, err);
	free(w->buckets);
	w->buckets = NULL;
	pthread_mutex_destroy(&w->mu);
}

/* ---- srv_waitone ---------------------------------------------------------- */

void srv_waitone_init(srv_waitone *w, void (*release)(srv_waitone *w))
{
	pthread_mutex_init(&w->mu, NULL);
	pthread_cond_init(&w->cv, NULL);
	w->refs = 2;
	w->done = 0;
	w->err = 0;
	w->release = release;
}

void srv_waitone_post(srv_waitone *w, int err)
{
	pthread_mutex_lock(&w->mu);
	w->done = 1;
	w->err = err;
	pthread_cond_signal(&w->cv);
	pthread_mutex_unlock(&w->mu);
	srv_waitone_unref(w);
}

int srv_waitone_wait(srv_waitone *w, int64_t ms, int timeout_err)
{
	struct timespec until;
	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += ms / 1000;
	until.tv_nsec += (long)(ms % 1000) * 1000000L;
	if (until.tv_nsec >= 1000000000L) {
		until.tv_sec++;
		until.tv_nsec -= 1000000000L;
	}
	pthread_mutex_lock(&w->mu);
	while (!w->done)
		if (pthread_cond_timedwait(&w->cv, &w->mu, &until) == ETIMEDOUT)
			break;
	int err = w->done ? w->err : timeout_err;
	pthread_mutex_unlock(&w->mu);
	return err;
}

void srv_waitone_unref(srv_waitone *w)
{
	pthread_mutex_lock(&w->mu);
	int left = --w->refs;
	pthread_mutex_unlock(&w->mu);
	if (left > 0)
		return;
	pthread_cond_destroy(&w->cv);
	pthread_mutex_destroy(&w->mu);
	w->release(w);
}

void srv_waitone_abandon(srv_waitone *w)
{
	srv_waitone_unref(w);
	srv_waitone_unref(w);
}
