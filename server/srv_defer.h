/*
 * srv_defer: one worker thread that runs completions handed to it, in the
 * order they were handed over. The node loop uses it to send the replies of
 * applied writes: packing a reply and starting its gRPC batch (which writes to
 * the socket at once when the transport is idle) would otherwise take a fifth
 * of the node thread's time per write, time the next synced log write waits
 * for.
 *
 * Thread-safe: post from any thread. The first completion of a burst (the
 * worker asleep, nothing queued) runs on the posting thread at once, so a lone
 * reply pays no hand-over; later ones go to the worker, woken once per burst.
 */
#ifndef METASTORE_SRV_DEFER_H
#define METASTORE_SRV_DEFER_H

/* A completion: the srv_wait_fn shape (@resp's ownership passes to it). */
typedef void (*srv_defer_fn)(void *ctx, int err, void *resp);

typedef struct srv_defer srv_defer;

/*
 * srv_defer_start - start the worker, named @name (at most 15 characters).
 * Returns 0 and *@out, or -1 (out of memory, or the thread could not start).
 */
int srv_defer_start(const char *name, srv_defer **out);

/*
 * srv_defer_post - run @fn(@ctx, @err, @resp) on the worker, after everything
 * posted before. Runs it on the calling thread instead when it is the first of
 * a burst, when memory is short, after srv_defer_stop has begun, or when @d is
 * NULL: a completion is never lost.
 */
void srv_defer_post(srv_defer *d, srv_defer_fn fn, void *ctx, int err, void *resp);

/* srv_defer_stop - run everything still queued, join the worker and free @d.
 * Posts racing with it run inline. NULL is ok. */
void srv_defer_stop(srv_defer *d);

#endif
