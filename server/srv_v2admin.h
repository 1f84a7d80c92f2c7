/*
 * srv_v2admin: the parts of etcd 3.4's v2 HTTP API (--enable-v2) other than
 * /v2/keys — /v2/members (list, add, remove, update peer URLs, leader),
 * /v2/machines, /v2/stats/{self,leader,store} and v2 auth (/v2/auth/enable,
 * /v2/auth/users[/NAME], /v2/auth/roles[/NAME]) — plus the v2 auth check that
 * the /v2/keys handler makes before serving a request.
 *
 * Membership goes through the same node calls as the v3 Cluster service
 * (srv_node_member for add/remove, a MemberUpdate proposal for update, the
 * applied member set for lists). v2 auth's users, roles and enabled flag live
 * in the v2 store under "/2/..." as etcd keeps them; the rules are
 * etcdcompat/ec_v2auth.c, fed through the store callbacks given at creation.
 *
 * Threads. srv_http hands requests over on libmicrohttpd's polling threads.
 * Nothing there blocks: when a request's body is in, the connection is
 * suspended and a worker thread (one per request, at most
 * SRV_V2A_MAX_WORKERS at once, 503 beyond) computes the answer — a membership
 * change or a replicated write waits there — then resumes the connection,
 * whose next access-handler call queues the response.
 */
#ifndef METASTORE_SRV_V2ADMIN_H
#define METASTORE_SRV_V2ADMIN_H

#include <stdbool.h>
#include <stddef.h>

#include <microhttpd.h>

#include "etcdcompat/ec_v2auth.h"
#include "server/srv_app.h"
#include "server/srv_http.h"

#define SRV_V2A_MAX_WORKERS 64

typedef struct srv_v2a srv_v2a;

/*
 * srv_v2a_new - the v2 admin handlers of member @app. @store: the v2 store's
 * callbacks for v2 auth data (copied; its ctx must outlive the handle); NULL:
 * @app's replicated v2 store (app->v2store for reads, srv_v2_do for writes and
 * quorum reads, each waited for at most 10 s). Returns 0 and *@out, or -1
 * when out of memory or when @store is NULL and @app has no v2 store.
 */
int srv_v2a_new(srv_app *app, const ec_v2a_store *store, srv_v2a **out);

/* srv_v2a_quiesce - refuse new requests and wait (at most 10 s) until every
 * worker has resumed its connection. Before stopping the HTTP daemons. NULL ok. */
void srv_v2a_quiesce(srv_v2a *a);

/* srv_v2a_free - after the daemons stopped. NULL ok. */
void srv_v2a_free(srv_v2a *a);

/* srv_v2a_path - whether @url (no query string) is one of this module's paths:
 * /v2/members[/...], /v2/machines, /v2/stats/..., /v2/auth/.... */
bool srv_v2a_path(const char *url);

/*
 * srv_v2a_serve - libmicrohttpd's access handler for a path srv_v2a_path
 * accepts, with libmicrohttpd's arguments; @tls: the connection is TLS (its
 * client certificate names a user under --client-cert-auth). The request
 * keeps its state in *@con_cls until its response is queued, then sets it
 * back to NULL. Returns what the access handler must return.
 */
enum MHD_Result srv_v2a_serve(srv_v2a *a, struct MHD_Connection *c, const char *url,
                              const char *method, const char *upload_data, size_t *upload_data_size,
                              void **con_cls, bool tls);

/* srv_v2a_completed - libmicrohttpd finished a request: when *@con_cls is one
 * of this module's requests, free it and set *@con_cls to NULL (a request
 * whose client went away). Else nothing. */
void srv_v2a_completed(srv_v2a *a, void **con_cls);

/*
 * srv_v2a_key_allowed - etcd's hasKeyPrefixAccess for a /v2/keys request:
 * true when v2 auth is off; else the HTTP basic-auth user (wrong password:
 * false), or with --client-cert-auth and no Authorization header the user
 * named by a client certificate's CN, or else the guest role, must have read
 * (GET/HEAD) or write access to @key (the key path after /v2/keys, e.g.
 * "/foo"), @recursive as etcd. On false the caller answers etcd's error 110
 * "Insufficient credentials" (401). Runs bcrypt for basic auth (tens of ms):
 * call it from a thread that may block, or accept the stall.
 */
bool srv_v2a_key_allowed(srv_v2a *a, struct MHD_Connection *c, const char *method, const char *key,
                         bool recursive);

/* srv_v2a_http_ext - fill @out so that srv_http routes this module's paths to
 * @a (one srv_http_config.ext slot). */
void srv_v2a_http_ext(srv_v2a *a, srv_http_ext *out);

/* srv_v2a_key_check - srv_v2a_key_allowed with @ctx the srv_v2a, the shape of
 * the /v2/keys handler's hook (srv_v2_set_key_check). */
bool srv_v2a_key_check(void *ctx, struct MHD_Connection *c, const char *method, const char *key,
                       bool recursive);

#endif
