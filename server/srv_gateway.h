/*
 * srv_gateway: etcd's JSON gateway (/v3/... and /v3beta/...) on the client
 * URLs' HTTP/1.1 side.
 *
 * etcd 3.4 serves its gRPC API as JSON over HTTP through grpc-gateway v1: a
 * POST to /v3/kv/range with a JSON RangeRequest answers a JSON RangeResponse;
 * /v3/watch and /v3/lease/keepalive take one or more JSON requests in the body
 * and answer {"result":{...}} lines; /v3/maintenance/snapshot streams the same
 * way. srv_gateway does that for every route of KV, Watch, Lease, Cluster,
 * Maintenance and Auth, calling metastore's own gRPC server over the gRPC
 * core's in-process channel (srv_rpc_inproc_channel), so every call is an
 * ordinary call of the method table. Lock and Election (v3lock, v3election)
 * are not served by metastore: their paths answer 404 like any unknown path.
 *
 * srv_http owns the libmicrohttpd daemons and hands this module the requests
 * whose path srv_gateway_path accepts, on client URLs only. The daemons must
 * be started with MHD_ALLOW_SUSPEND_RESUME and report finished requests
 * through srv_gateway_completed (MHD_OPTION_NOTIFY_COMPLETED).
 *
 * Threads: srv_gateway_serve and the response callbacks run on the daemons'
 * polling threads and never block; one gateway thread owns the completion
 * queue of the gRPC calls. See srv_gateway.c for the design.
 */
#ifndef METASTORE_SRV_GATEWAY_H
#define METASTORE_SRV_GATEWAY_H

#include <stdbool.h>
#include <stddef.h>

#include <microhttpd.h>

#include "server/srv_rpc.h"

typedef struct srv_gateway srv_gateway;

/*
 * srv_gateway_start - open an in-process channel to @rpc and start the
 * gateway thread. At most srv_rpc_max_concurrent_streams(@rpc) calls run at
 * once (0: no limit), as on etcd's one gateway connection; requests past it
 * wait, in arrival order, until a call ends. Returns 0 and *@out, or -1 with
 * a reason in @err (@errlen bytes): the server is shutting down, no thread,
 * out of memory.
 */
int srv_gateway_start(srv_rpc *rpc, srv_gateway **out, char *err, size_t errlen);

/*
 * srv_gateway_quiesce - refuse new requests, cancel every call in flight and
 * resume every suspended connection (libmicrohttpd refuses to stop a daemon
 * that holds suspended connections). Call before stopping the daemons. NULL ok.
 */
void srv_gateway_quiesce(srv_gateway *gw);

/*
 * srv_gateway_free - after the daemons stopped: wait (bounded, 5 s) for the
 * cancelled calls to return, stop the thread, destroy the channel, free @gw.
 * Must precede srv_rpc_shutdown of the server it calls. NULL ok.
 */
void srv_gateway_free(srv_gateway *gw);

/* srv_gateway_path - whether @url (no query string) belongs to the gateway:
 * it starts with "/v3/" or "/v3beta/", or is "/v3" (redirected to "/v3/"). */
bool srv_gateway_path(const char *url);

/*
 * srv_gateway_serve - libmicrohttpd's access handler for a gateway path, with
 * its arguments as libmicrohttpd passes them (@con_cls is the request's slot;
 * the gateway keeps its state there). @cn_refused: the connection is TLS, the
 * server authenticates users by certificate CN and auth is enabled — etcd
 * then refuses a client certificate that has a CN (its gateway would not pass
 * that CN on), with 400. Returns what the access handler must return.
 */
enum MHD_Result srv_gateway_serve(srv_gateway *gw, struct MHD_Connection *c, const char *url,
                                  const char *method, const char *upload_data,
                                  size_t *upload_data_size, void **con_cls, bool cn_refused);

/* srv_gateway_completed - libmicrohttpd finished the request whose slot is
 * @con_cls (answered, failed or the client went away): the gateway drops its
 * part and cancels the call if it still runs. A slot the gateway never used
 * (*con_cls NULL) is ignored. */
void srv_gateway_completed(void **con_cls);

#endif
