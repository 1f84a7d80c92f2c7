/*
 * srv_wait: the pending-proposal wait table. A handler that proposes a write
 * registers (request id → completion); the node loop, after applying the entry
 * that carries that id, takes the waiter out and completes it with the response
 * built by apply. Entries applied from other members' proposals (cluster mode)
 * or during replay find no waiter and are simply dropped.
 *
 * Thread-safe: register/cancel from gRPC threads, take from the node thread.
 */
#ifndef METASTORE_SRV_WAIT_H
#define METASTORE_SRV_WAIT_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

/*
 * Completion callback: @err is an ec_err (EC_OK on success); @resp is the response
 * message built by apply (NULL on error), ownership passes to the callback.
 */
typedef void (*srv_wait_fn)(void *ctx, int err, void *resp);

typedef struct srv_waiter {
	uint64_t id;
	srv_wait_fn fn;
	void *ctx;
	struct srv_waiter *next; /* hash chain */
} srv_waiter;

typedef struct srv_wait {
	pthread_mutex_t mu;
	srv_waiter **buckets;
	size_t nbuckets; /* power of two */
	size_t count;
} srv_wait;

/* srv_wait_init - returns 0 or -1 (out of memory). */
int srv_wait_init(srv_wait *w);
/* srv_wait_destroy - frees the table; waiters still in it are completed with @err. */
void srv_wait_destroy(srv_wait *w, int err);

/* srv_wait_add - register @id; returns 0, or -1 if @id is already present or
 * memory is short. */
int srv_wait_add(srv_wait *w, uint64_t id, srv_wait_fn fn, void *ctx);

/* srv_wait_take - remove @id and return its waiter (caller frees it with free()),
 * or NULL if nobody waits for it. */
srv_waiter *srv_wait_take(srv_wait *w, uint64_t id);

/* srv_wait_fail_all - complete every waiter with @err and empty the table. */
void srv_wait_fail_all(srv_wait *w, int err);

/*
 * srv_waitone: one thread blocks, with a time limit, for the single callback
 * of an asynchronous call (a ReadIndex round, a proposal) that another thread
 * makes, possibly after the waiter gave up. Embed it as the first member of a
 * struct holding the call's request and result; the struct has two
 * references, the waiter's and the callback's, and the last one dropped calls
 * @release (which frees the struct and whatever the result owns).
 *
 *   srv_waitone_init(&w->base, release);    two references
 *   if (start_call(..., cb, w) fails) { srv_waitone_abandon(&w->base); ... }
 *   cb: store the result in *w, then srv_waitone_post(&w->base, err);
 *   err = srv_waitone_wait(&w->base, ms, EC_TIMEOUT); read the result;
 *   srv_waitone_unref(&w->base);
 */
typedef struct srv_waitone {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int refs;
	int done; /* 0 until posted */
	int err;
	void (*release)(struct srv_waitone *w);
} srv_waitone;

void srv_waitone_init(srv_waitone *w, void (*release)(srv_waitone *w));
/* The callback's side: record @err (its result is in the embedding struct,
 * written before this call) and drop the callback's reference. */
void srv_waitone_post(srv_waitone *w, int err);
/* Wait at most @ms for the post: its err, or @timeout_err. The caller still
 * holds its reference (and may read the result when the post came). */
int srv_waitone_wait(srv_waitone *w, int64_t ms, int timeout_err);
/* Drop the waiter's reference; the last one calls release. */
void srv_waitone_unref(srv_waitone *w);
/* The call could not be made (no callback will come): drop both references. */
void srv_waitone_abandon(srv_waitone *w);

#endif
