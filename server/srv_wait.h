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

#endif
