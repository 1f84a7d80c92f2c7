/*
 * srv_v2: etcd 3.4's /v2/keys on the client URLs (with --enable-v2), and the
 * server side of the v2 store (etcdcompat/ec_v2store.h) for everyone else.
 *
 * Writes (PUT, POST, DELETE) become an InternalRequest.v2 proposal stamped
 * with the proposer's clock (Time, and Expiration from ttl), applied on every
 * member by ec_v2_apply; the HTTP answer is the V2Response apply built. GET
 * is served from the local store at once, after a ReadIndex round with
 * quorum=true, and wait=true registers a store watcher (from the history when
 * waitIndex names a past event). A connection that waits is suspended in
 * libmicrohttpd and resumed from the node thread. The leader proposes a SYNC
 * entry (etcd's expiry clock) every 500 ms while a node has a TTL, so every
 * member expires keys at the same log position.
 */
#ifndef METASTORE_SRV_V2_H
#define METASTORE_SRV_V2_H

#include <stdbool.h>

#include "etcdcompat/ec_v2store.h"
#include "server/srv_app.h"
#include "server/srv_http.h"

typedef struct srv_v2 srv_v2;

/*
 * srv_v2_new - the v2 side of member @app, whose app->v2store must be set (it
 * is created before the node starts, so that replay applies v2 entries).
 * Starts the SYNC timer thread. Returns 0 and *@out, or -1 (out of memory or
 * threads).
 */
int srv_v2_new(srv_app *app, srv_v2 **out);

/* srv_v2_free - stop the timer and free @v (after the HTTP daemons stopped and
 * before the node stops). NULL ok. */
void srv_v2_free(srv_v2 *v);

/* srv_v2_http_ext - fill @out so that srv_http routes /v2/keys to @v. */
void srv_v2_http_ext(srv_v2 *v, srv_http_ext *out);

/*
 * srv_v2_set_key_check - the v2 auth check run before each /v2/keys request
 * (@fn(@ctx, connection, method, key after /v2/keys, recursive) → allowed);
 * refused requests get etcd's 401 errorCode 110. NULL: none. Call before
 * serving.
 */
void srv_v2_set_key_check(srv_v2 *v,
                          bool (*fn)(void *ctx, struct MHD_Connection *c, const char *method,
                                     const char *key, bool recursive),
                          void *ctx);

/*
 * srv_v2_do - propose the v2 write @req (method PUT, POST, DELETE, QGET or
 * SYNC; path internal, e.g. "/2/users/alice") through the log of @app's node.
 * Its id is set by the node and its time stamped here when 0; @req must stay
 * valid until @fn runs. @fn(@ctx, err, resp) runs once, on the node thread:
 * err an ec_err (EC_OK, EC_TIMEOUT, EC_STOPPED, ...), resp the V2Response
 * apply built (owned by @fn, free with ec_msg_free; NULL unless EC_OK).
 * Returns EC_OK (fn will run) or an ec_err without calling @fn.
 */
typedef void (*srv_v2_done_fn)(void *ctx, int err, Metastore__V2Response *resp);
int srv_v2_do(srv_app *app, Metastore__V2Request *req, srv_v2_done_fn fn, void *ctx);

/*
 * srv_v2_sync_members - record @app's member set in the v2 store as etcd 3.4
 * does (/0/members/<hex id>/raftAttributes {"peerURLs":[...]} and, once
 * published, /attributes {"name":...,"clientURLs":[...]}), writing only what
 * changed. Called on the node thread whenever the applied member set changed,
 * so every member writes the same records at the same log position (and the
 * v2 index moves past them as etcd's does: clients count on that, e.g.
 * etcdctl watch --after-index=1). Harmless without --enable-v2.
 */
void srv_v2_sync_members(srv_app *app);

#endif
