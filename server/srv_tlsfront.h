/*
 * srv_tlsfront: metastore's own TLS server in front of a srv_rpc server, for
 * the ports where the gRPC core's TLS cannot behave as etcd's does.
 *
 * The core judges a client certificate in an external verifier that runs
 * after its TLS handshake has finished, so a client it refuses sees its
 * connection closed, never a TLS alert. etcd refuses a peer certificate with
 * the wrong CN (--peer-cert-allowed-cn) or host name
 * (--peer-cert-allowed-hostname) inside the handshake, and the refused member
 * logs Go's "remote error: tls: bad certificate". When the peer side has one
 * of those flags (srv_tls_wants_front), main puts this front on the peer
 * port's https:// and unixs:// URLs instead of letting the core listen there:
 *   - it accepts each connection and runs the TLS handshake with OpenSSL
 *     (srv_tls_front_ctx: TLS 1.2, client certificates required, the allowed
 *     CN / hostname checked in the handshake, a refusal sent as alert
 *     bad_certificate);
 *   - after the handshake, the CRL and etcd's checkSAN of the connection's
 *     address (srv_tls_front_check), as etcd's TLS listener does them; a
 *     refused connection is closed and logged as etcd logs it ("rejected
 *     connection from ...");
 *   - an accepted connection gets a socketpair whose other end goes to the
 *     core as a plaintext HTTP/2 connection (srv_rpc_adopt_fd), and a thread
 *     that relays plaintext between it and the TLS connection until either
 *     side closes. The core sees no client certificate on these connections,
 *     so srv_rpc's per-call checkSAN does not apply to them (it already
 *     happened here).
 * Peers are few: one thread accepts, one thread per connection does its
 * handshake and relay (at most SRV_TLSFRONT_MAX_CONNS at once; more are
 * closed at once).
 */
#ifndef METASTORE_SRV_TLSFRONT_H
#define METASTORE_SRV_TLSFRONT_H

#include <stddef.h>

#include "server/srv_rpc.h"
#include "server/srv_tls.h"

#define SRV_TLSFRONT_MAX_CONNS 256

typedef struct srv_tlsfront srv_tlsfront;

typedef struct srv_tlsfront_config {
	const char *const *urls; /* https:// and unixs:// URLs (at most 16, at least 1) */
	size_t n_urls;
	srv_tls *tls;             /* the side's TLS; srv_tls_wants_front(tls) must hold */
	int handshake_timeout_ms; /* a client that has not finished its handshake by
	                           * then is closed; default 10000 */
} srv_tlsfront_config;

/*
 * srv_tlsfront_bind - build the TLS server context (srv_tls_front_ctx) and
 * bind every URL of @cfg, without accepting yet, so a port in use fails the
 * start before anything serves. The front takes its own reference to
 * cfg.tls. Returns 0 and *@out, or -1 with the reason in @err: "cannot listen
 * on URL" (the reason is logged, as srv_listen's), a URL that is not https://
 * or unixs://, the context's errors, out of memory.
 */
int srv_tlsfront_bind(const srv_tlsfront_config *cfg, srv_tlsfront **out, char *err, size_t errlen);

/* srv_tlsfront_port - the TCP port bound for URL @i (0 for unix sockets or out
 * of range). */
int srv_tlsfront_port(const srv_tlsfront *f, size_t i);

/*
 * srv_tlsfront_start - start accepting; accepted connections go to @rpc,
 * which must have been started with adopt_fds and outlive srv_tlsfront_stop.
 * Returns 0, or -1 (no thread).
 */
int srv_tlsfront_start(srv_tlsfront *f, srv_rpc *rpc);

/*
 * srv_tlsfront_stop - stop accepting, close the listening sockets (removing
 * unix socket files), end every connection (handshakes and relays: the core
 * sees its end of each closed), join every thread and free @f. NULL ok.
 */
void srv_tlsfront_stop(srv_tlsfront *f);

#endif
