/*
 * srv_listen: metastore's own listeners for client and metrics URLs — one
 * socket per URL that serves gRPC and HTTP/1.1 side by side, as etcd's cmux.
 *
 * One thread runs an epoll loop over the listening sockets, the connections
 * still being looked at, and the TLS relays. Each accepted connection is
 * looked at without being read (MSG_PEEK) until its first bytes decide:
 *   - http:// and unix:// URLs: the HTTP/2 client preface ("PRI * HTTP/2.0
 *     \r\n\r\nSM\r\n\r\n") is gRPC: the socket is handed to the gRPC core as a
 *     plaintext channel (srv_rpc_adopt_fd); anything else is HTTP and goes to
 *     srv_http_add;
 *   - https:// and unixs:// URLs: the TLS ClientHello is parsed for its ALPN
 *     list. A client that offers "http/1.1", or no ALPN at all (curl, browsers,
 *     Prometheus, openssl s_client), is HTTP: srv_http terminates its TLS. One
 *     that offers only HTTP/2 protocols ("h2", "grpc-exp": grpc-go, etcdctl,
 *     gRPC core clients) is gRPC: its still-encrypted bytes are relayed by
 *     splice(2) through a pipe per direction to the gRPC core's own TLS
 *     listener on an abstract unix socket (@tls_grpc_addr), so the core does
 *     the handshake, client certificate checks and srv_call_peer_cn exactly as
 *     when it owned the port.
 *   - an address given both as http:// and https:// (etcd serves both on one
 *     port) is one socket: a connection whose first byte starts a TLS record
 *     (0x16) is taken as https://, any other as http:// (etcd's cmux);
 * The metrics mux never serves gRPC: every connection goes to srv_http.
 * A connection that sends nothing decisive within sniff_timeout_ms, or closes
 * first, is closed.
 *
 * Unix socket URLs ("unix://name:port", the path "name:port" relative to the
 * working directory, as etcd) replace a stale socket file at bind and remove
 * it at stop.
 */
#ifndef METASTORE_SRV_LISTEN_H
#define METASTORE_SRV_LISTEN_H

#include <stddef.h>

#include "server/srv_http.h"
#include "server/srv_rpc.h"

typedef struct srv_listen srv_listen;

typedef struct srv_listen_config {
	const char *const *urls; /* http://, https://, unix://, unixs:// URLs; at least one */
	size_t n_urls;
	srv_http_mux mux; /* SRV_HTTP_CLIENT (gRPC and HTTP) or SRV_HTTP_METRICS (HTTP only) */
	/* Client mux with TLS URLs: the abstract unix socket name (without the
	 * leading NUL) of the core's TLS listener (srv_rpc address
	 * "unixs-abstract:NAME"). */
	const char *tls_grpc_addr;
	int sniff_timeout_ms; /* default 10000 */
} srv_listen_config;

/*
 * srv_listen_bind - bind and listen on every URL of @cfg (copied), without
 * accepting yet, so a port in use fails the start before anything serves.
 * Returns 0 and *@out, or -1 with "cannot listen on URL" in @err (srv_rpc's
 * words; the reason — not a URL, a host that does not resolve, the address in
 * use, no permission — is logged), or "out of memory".
 */
int srv_listen_bind(const srv_listen_config *cfg, srv_listen **out, char *err, size_t errlen);

/* srv_listen_port - the TCP port bound for URL @i (0 for unix sockets or out of
 * range). */
int srv_listen_port(const srv_listen *l, size_t i);

/*
 * srv_listen_socket - a listening socket (non-blocking, close-on-exec) for one
 * http://, https://, unix:// or unixs:// URL, bound as srv_listen_bind binds
 * it (a stale unix socket file replaced), for another listener
 * (srv_tlsfront). The caller closes it and removes a unix socket's file (the
 * URL's path). Returns the fd and *@port (the TCP port bound; 0 for unix
 * sockets), or -1 with the reason in @why (not such a URL, a host that does
 * not resolve, the address in use, no permission).
 */
int srv_listen_socket(const char *url, int *port, char *why, size_t whylen);

/*
 * srv_listen_start - start accepting: gRPC connections go to @rpc (client mux:
 * required; it must have been started with adopt_fds and, for TLS URLs, the
 * listen address "unixs-abstract:<tls_grpc_addr>"), HTTP ones to @http. Both
 * must outlive srv_listen_stop. Returns 0, or -1 (no thread, out of memory).
 */
int srv_listen_start(srv_listen *l, srv_rpc *rpc, srv_http *http);

/*
 * srv_listen_stop - stop accepting, close the listening sockets (removing unix
 * socket files), every connection not yet handed over and every TLS relay,
 * join the thread and free @l. Connections already handed to the core or to
 * srv_http are theirs to close. NULL ok.
 */
void srv_listen_stop(srv_listen *l);

/* ---- the decisions, without sockets (unit tests) ------------------------------------ */

typedef enum {
	SRV_SNIFF_MORE = 0, /* not enough bytes yet */
	SRV_SNIFF_GRPC,     /* the HTTP/2 preface / a TLS client offering only h2 protocols */
	SRV_SNIFF_HTTP,     /* anything else */
} srv_sniff;

/* srv_listen_sniff_plain - decide on the first @n bytes of a plaintext
 * connection. */
srv_sniff srv_listen_sniff_plain(const unsigned char *p, size_t n);

/* srv_listen_sniff_tls - decide on the first @n bytes of a TLS connection (its
 * ClientHello record). Bytes that are not a TLS handshake record are HTTP. */
srv_sniff srv_listen_sniff_tls(const unsigned char *p, size_t n);

#endif
