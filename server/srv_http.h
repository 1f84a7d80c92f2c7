/*
 * srv_http: the HTTP/1.1 side of metastore's ports — etcd's /health,
 * /version, /metrics (and 3.6's /livez, /readyz) — on libmicrohttpd.
 *
 * srv_http listens on nothing itself: srv_listen accepts, decides a connection
 * is not gRPC, and hands it over with srv_http_add. Behind it run up to four
 * libmicrohttpd daemons (MHD_USE_NO_LISTEN_SOCKET, one internal polling
 * thread each): the client mux and the metrics mux, each plaintext and TLS.
 * The client mux is etcd 3.4's client URL handler (/health, /version,
 * /metrics, the /v3 JSON gateway handed to srv_gateway when cfg.rpc is set,
 * 404 for the rest, etcd's CORS headers); the metrics mux is the
 * --listen-metrics-urls one (/metrics and /health only). Both serve /livez and
 * /readyz as etcd 3.6 does.
 *
 * TLS connections are terminated by libmicrohttpd's GnuTLS with the client
 * side's certificate and key (srv_tls_pems). When the side requires client
 * certificates, each request's connection must present a chain that GnuTLS
 * verifies against the same CA and that passes srv_tls_check_client_pem (CRL,
 * allowed hostname); otherwise the connection is closed without a reply (etcd
 * refuses such a client in the handshake).
 *
 * What the endpoints report comes from the hooks in srv_http_config, so this
 * module knows nothing of the node: the caller wires them.
 */
#ifndef METASTORE_SRV_HTTP_H
#define METASTORE_SRV_HTTP_H

#include <stdbool.h>
#include <stddef.h>

#include <microhttpd.h>

#include "server/srv_metrics.h"
#include "server/srv_tls.h"

typedef struct srv_http srv_http;

/*
 * More handlers on client URLs (the v2 API with --enable-v2: srv_v2admin.h,
 * srv_v2.h), tried in order before the /v3 gateway. A handler whose match
 * accepts a path (no query string) gets libmicrohttpd's access-handler
 * arguments in serve (@tls: a TLS connection whose client certificate, if the
 * side requires one, was already checked) and returns what the access handler
 * returns. It may keep state in *@con_cls but must set it back to NULL when
 * done, in serve or in completed (called for every finished request, before
 * the gateway's; a handler ignores a *@con_cls it does not own). quiesce (may
 * be NULL) runs before the daemons stop: it must resume every connection it
 * suspended.
 */
typedef struct srv_http_ext {
	bool (*match)(const char *url);
	enum MHD_Result (*serve)(void *ctx, struct MHD_Connection *c, const char *url,
	                         const char *method, const char *upload_data,
	                         size_t *upload_data_size, void **con_cls, bool tls);
	void (*completed)(void *ctx, void **con_cls);
	void (*quiesce)(void *ctx);
	void *ctx;
} srv_http_ext;

#define SRV_HTTP_MAX_EXT 4

/* Which handler set a connection gets. */
typedef enum {
	SRV_HTTP_CLIENT = 0,  /* a client URL */
	SRV_HTTP_METRICS = 1, /* a --listen-metrics-urls URL */
} srv_http_mux;

#define SRV_HTTP_MAX_ALARMS 8

typedef struct srv_http_config {
	/* TLS for connections added with @tls true (the client side's srv_tls; a
	 * reference is taken); NULL when no https:// or unixs:// URL is served. */
	srv_tls *tls;
	/* Which daemons to run: bit (mux * 2 + tls), e.g. 1 << (SRV_HTTP_CLIENT *
	 * 2 + 1) for https client URLs. Connections of a kind not started are
	 * refused by srv_http_add. */
	unsigned kinds;
	/* Hooks, called on libmicrohttpd threads, any may be NULL:
	 * has_leader - whether the member knows a leader (NULL: never);
	 * alarms     - the names of active alarms ("NOSPACE", "CORRUPT") into
	 *              @names (at most @cap), returning how many;
	 * metrics    - append every metric family to @out (Prometheus text). */
	bool (*has_leader)(void *ctx);
	/* quorum_read - etcd 3.4's /health QGET: whether a linearizable read
	 * completes within a second (may block that long; NULL: not checked). */
	bool (*quorum_read)(void *ctx);
	size_t (*alarms)(void *ctx, const char **names, size_t cap);
	void (*metrics)(void *ctx, srv_mbuf *out);
	void *ctx;
	/* The /v3 JSON gateway (srv_gateway.h) on client URLs: the client gRPC
	 * server it calls in-process (NULL: /v3 paths answer 404), and whether a
	 * client certificate's CN would name the user (--client-cert-auth and auth
	 * enabled: etcd then refuses a CN on /v3 requests; NULL: never). */
	struct srv_rpc *rpc;
	bool (*auth_by_cn)(void *ctx);
	/* Handlers for more client-URL paths (match NULL: unused slot). */
	srv_http_ext ext[SRV_HTTP_MAX_EXT];
	const char *server_version;  /* /version "etcdserver", e.g. "3.4.23" */
	const char *cluster_version; /* /version "etcdcluster", e.g. "3.4.0" */
} srv_http_config;

#define SRV_HTTP_KIND(mux, tls) (1u << ((unsigned)(mux)*2u + ((tls) ? 1u : 0u)))

/*
 * srv_http_start - start the daemons @cfg->kinds asks for. @cfg is copied (its
 * strings must outlive the server). Returns 0 and *@out, or -1 with a reason in
 * @err: TLS asked without cfg->tls, libmicrohttpd refusing the certificate or
 * key, no threads, out of memory.
 */
int srv_http_start(const srv_http_config *cfg, srv_http **out, char *err, size_t errlen);

/*
 * srv_http_add - serve the accepted connection @fd (nothing read from it yet;
 * bytes only peeked at are fine) with @mux's handlers, over TLS when @tls.
 * Ownership of @fd passes to srv_http in every case (closed on failure).
 * Any thread. Returns 0, or -1 (kind not started, stopping, libmicrohttpd
 * refusing the connection).
 */
int srv_http_add(srv_http *h, int fd, srv_http_mux mux, bool tls);

/* srv_http_stop - close every connection, stop the daemons, free @h. NULL ok. */
void srv_http_stop(srv_http *h);

/* ---- the handlers, without sockets (unit tests) ------------------------------------ */

typedef struct srv_http_query {
	bool verbose;                             /* ?verbose present */
	const char *exclude[SRV_HTTP_MAX_ALARMS]; /* ?exclude= values */
	size_t n_exclude;
} srv_http_query;

typedef struct srv_http_reply {
	int status;               /* 200, 404, 405, 503 */
	const char *content_type; /* static */
	const char *allow;        /* "GET" on a 405, else NULL */
	bool nosniff;             /* X-Content-Type-Options: nosniff */
	srv_mbuf body;            /* the caller frees it (srv_mbuf_free) */
} srv_http_reply;

/*
 * srv_http_route - answer @method @path (no query string) with @q as etcd
 * does on @mux, into *@out (zero it first). Counts /health outcomes in
 * srv_mserver (etcd_server_health_success / _failures).
 */
void srv_http_route(const srv_http_config *cfg, srv_http_mux mux, const char *method,
                    const char *path, const srv_http_query *q, srv_http_reply *out);

/* srv_http_cors - etcd's CORS wrapper of client URLs: the three
 * Access-Control-Allow-* headers every answer there carries. */
void srv_http_cors(struct MHD_Response *resp);

#endif
