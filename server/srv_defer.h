/*
 * srv_defer: one worker thread that runs completions handed to it, in the
 * order they were handed over. The node loop uses it to send the replies of
 * applied writes: packing a reply and starting its gRPC batch (which writes to
 * the socket at once when the transport is idle) would otherwise take a fifth
 * of the node thread's time per write, time the next synced log write waits
 * for.
 *
 * Thread-safe: post from any thread. A poster that has several completions
 * at once (the node loop, one per write of an apply group) brackets them with
 * srv_defer_hold/srv_defer_release: a burst of one, with the worker idle, runs
 * on the poster at once, so a lone reply pays no hand-over; a longer burst goes
 * to the worker, woken once. An unbracketed post with the worker idle and
 * nothing queued also runs on its poster.
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

/*
 * srv_defer_hold - begin a burst: until srv_defer_release, posts (from any
 * thread) queue for the worker without waking it and none runs on its poster.
 * Bursts do not nest; one poster brackets its own. NULL is ok.
 */
void srv_defer_hold(srv_defer *d);

/*
 * srv_defer_release - end the burst begun by srv_defer_hold. When it held
 * exactly one completion and the worker is idle with nothing else queued,
 * that completion runs on the calling thread before this returns; otherwise
 * the worker is woken (once) for what is queued. NULL is ok.
 */
void srv_defer_release(srv_defer *d);

/* srv_defer_stop - run everything still queued, join the worker and free @d.
 * Posts racing with it run inline. NULL is ok. */
void srv_defer_stop(srv_defer *d);

#endif
