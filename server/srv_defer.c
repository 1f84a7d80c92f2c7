/*
 * srv_defer: the completion worker (see srv_defer.h).
 *
 * A singly linked FIFO under one mutex; the worker swaps the whole list out
 * and runs it without the lock, so posting never waits behind a completion.
 * Without srv_defer_hold, a poster that posts one completion after another
 * (the node loop) would find the worker asleep and the queue empty each time
 * and run every one itself: the worker would never be used.
 */
#include "server/srv_defer.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>

typedef struct defer_item {
	struct defer_item *next;
	srv_defer_fn fn;
	void *ctx;
	int err;
	void *resp;
} defer_item;

struct srv_defer {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	defer_item *head, *tail;
	bool sleeping; /* the worker waits on cv */
	bool inline_run; /* a post runs its completion on its own thread now */
	bool stopping;
	bool held;       /* a burst is open (srv_defer_hold): queue, do not wake */
	size_t n_held;   /* completions posted during the open burst */
	pthread_t thread;
};

static void run_list(defer_item *it)
{
	while (it != NULL) {
		defer_item *next = it->next;
		it->fn(it->ctx, it->err, it->resp);
		free(it);
		it = next;
	}
}

/* Run @fn on this thread; @d->mu is held on entry and released. */
static void run_here_unlock(srv_defer *d, srv_defer_fn fn, void *ctx, int err, void *resp)
{
	d->inline_run = true;
	pthread_mutex_unlock(&d->mu);
	fn(ctx, err, resp);
	pthread_mutex_lock(&d->mu);
	d->inline_run = false;
	pthread_mutex_unlock(&d->mu);
}

/* Wake the worker if it sleeps and work is queued; @d->mu is held on entry
 * and released. One wake-up is enough until it sleeps again. */
static void wake_unlock(srv_defer *d)
{
	bool wake = d->sleeping && d->head != NULL;
	if (wake)
		d->sleeping = false;
	pthread_mutex_unlock(&d->mu);
	if (wake)
		pthread_cond_signal(&d->cv);
}

static void *defer_main(void *arg)
{
	srv_defer *d = arg;
	pthread_mutex_lock(&d->mu);
	for (;;) {
		while (d->head == NULL && !d->stopping) {
			d->sleeping = true;
			pthread_cond_wait(&d->cv, &d->mu);
			d->sleeping = false;
		}
		defer_item *list = d->head;
		d->head = d->tail = NULL;
		if (list == NULL) /* stopping, nothing left */
			break;
		pthread_mutex_unlock(&d->mu);
		run_list(list);
		pthread_mutex_lock(&d->mu);
	}
	pthread_mutex_unlock(&d->mu);
	return NULL;
}

int srv_defer_start(const char *name, srv_defer **out)
{
	srv_defer *d = calloc(1, sizeof(*d));
	if (d == NULL)
		return -1;
	pthread_mutex_init(&d->mu, NULL);
	pthread_cond_init(&d->cv, NULL);
	if (pthread_create(&d->thread, NULL, defer_main, d) != 0) {
		pthread_cond_destroy(&d->cv);
		pthread_mutex_destroy(&d->mu);
		free(d);
		return -1;
	}
	pthread_setname_np(d->thread, name);
	*out = d;
	return 0;
}

void srv_defer_post(srv_defer *d, srv_defer_fn fn, void *ctx, int err, void *resp)
{
	if (d == NULL) {
		fn(ctx, err, resp);
		return;
	}
	pthread_mutex_lock(&d->mu);
	/* Outside a burst, the first post (the worker sleeps with nothing queued
	 * and no other post runs one here, so nothing posted earlier can be
	 * overtaken) runs on this thread: a lone answer pays no hand-over. */
	if (!d->held && d->sleeping && d->head == NULL && !d->inline_run && !d->stopping) {
		run_here_unlock(d, fn, ctx, err, resp);
		return;
	}
	defer_item *it = d->stopping ? NULL : malloc(sizeof(*it));
	if (it == NULL) { /* stopping, or no memory: never lose it */
		pthread_mutex_unlock(&d->mu);
		fn(ctx, err, resp);
		return;
	}
	*it = (defer_item){.fn = fn, .ctx = ctx, .err = err, .resp = resp};
	if (d->tail != NULL)
		d->tail->next = it;
	else
		d->head = it;
	d->tail = it;
	if (d->held) { /* srv_defer_release decides who runs it */
		d->n_held++;
		pthread_mutex_unlock(&d->mu);
		return;
	}
	wake_unlock(d);
}

void srv_defer_hold(srv_defer *d)
{
	if (d == NULL)
		return;
	pthread_mutex_lock(&d->mu);
	d->held = true;
	d->n_held = 0;
	pthread_mutex_unlock(&d->mu);
}

void srv_defer_release(srv_defer *d)
{
	if (d == NULL)
		return;
	pthread_mutex_lock(&d->mu);
	d->held = false;
	/* A burst of one, the worker asleep and nothing queued before it: the
	 * queue is that one item, and nothing can overtake it here. */
	if (d->n_held == 1 && d->sleeping && d->head != NULL && d->head == d->tail &&
	    !d->inline_run && !d->stopping) {
		defer_item it = *d->head;
		free(d->head);
		d->head = d->tail = NULL;
		run_here_unlock(d, it.fn, it.ctx, it.err, it.resp);
		return;
	}
	wake_unlock(d);
}

void srv_defer_stop(srv_defer *d)
{
	if (d == NULL)
		return;
	pthread_mutex_lock(&d->mu);
	d->stopping = true;
	pthread_cond_signal(&d->cv);
	pthread_mutex_unlock(&d->mu);
	pthread_join(d->thread, NULL);
	pthread_cond_destroy(&d->cv);
	pthread_mutex_destroy(&d->mu);
	free(d);
}
