/*
 * srv_tls: TLS on the client and peer ports, with etcd 3.4's flags and checks
 * (its pkg/transport: TLSInfo, SelfCert, the TLS listener's CRL and SAN
 * checks), built on the gRPC C core's TLS credentials
 * (grpc_tls_credentials_options) and OpenSSL.
 *
 * One srv_tls is the TLS identity and policy of one side: "client" (--cert-file,
 * --key-file, --trusted-ca-file, --client-cert-auth, --client-crl-file,
 * --client-cert-allowed-hostname, --auto-tls) or "peer" (the --peer-* set,
 * --peer-cert-allowed-cn, --experimental-peer-skip-client-san-verification).
 * srv_tls_setup() builds it once at start: it generates the auto-TLS
 * certificate if asked, reads every file and checks it (PEM, key matching the
 * certificate, validity dates), so a bad file stops the process before anything
 * listens. Afterwards it is immutable, except for the CRL, which is read again
 * when the file changes (etcd reads it for every connection). Credentials made
 * from it keep a reference (srv_tls_ref / srv_tls_unref).
 *
 * What a server port built with srv_tls_server_creds() checks, as etcd:
 *   - client certificates are required and verified against --trusted-ca-file
 *     when that file is given or --client-cert-auth is set (etcd's
 *     RequireAndVerifyClientCert; with no CA file, against the system's CA
 *     bundle), else not requested;
 *   - a presented certificate (the leaf or any certificate the client sent)
 *     whose serial is listed in the CRL file is refused ("transport:
 *     certificate serial %x revoked"); like etcd, the CRL's signature and dates
 *     are not checked;
 *   - --peer-cert-allowed-cn: the leaf's Common Name must equal it;
 *     --peer-cert-allowed-hostname / --client-cert-allowed-hostname: the leaf's
 *     SANs must match it (DNS names with wildcards, or IP addresses; the CN is
 *     not used, as Go's VerifyHostname); a failure is etcd's "client
 *     certificate authentication failed";
 *   - peer port only, unless skip_client_san: the client certificate's SANs must
 *     match the address the connection comes from (etcd's checkSAN, with
 *     forward and reverse DNS for DNS SANs). The core gives a certificate
 *     verifier no address, so this check runs on each call
 *     (srv_tls_check_client_addr, called by srv_rpc) instead of at the
 *     handshake; a refused call ends with UNAVAILABLE.
 * The first three happen in the core's TLS handshake (a custom verifier that
 * runs once the core's handshake is done), so a refused client never gets a
 * connection, but no TLS alert either. Refusals are logged ("rejected
 * connection ...").
 *
 * A peer side with --peer-cert-allowed-cn / -hostname (srv_tls_wants_front)
 * is served by metastore's own TLS server (srv_tlsfront.h) on an OpenSSL
 * context from srv_tls_front_ctx: the same checks, the allowed CN / hostname
 * inside the handshake (alert bad_certificate, as etcd), the CRL and checkSAN
 * once after it (srv_tls_front_check), as etcd's TLS listener.
 *
 * Peer channels (srv_tls_channel_creds) present the peer certificate, verify
 * the member's certificate against --peer-trusted-ca-file (or the system
 * bundle) and its host name against the URL's host, apply the allowed CN /
 * hostname to it as etcd's client side does, and verify nothing when the
 * certificate is auto-TLS's own (etcd's InsecureSkipVerify for self certs).
 *
 * Versions and ciphers: the core negotiates TLS 1.2 or 1.3 (etcd: at least
 * 1.2). --cipher-suites takes Go's names (tlsutil.GetCipherSuite);
 * srv_tls_use_cipher_suites() maps them to OpenSSL's and hands them to the core
 * (its only knob, the process-wide GRPC_SSL_CIPHER_SUITES), where they limit
 * TLS 1.2; TLS 1.3 suites are not restricted (Go does not restrict them
 * either).
 *
 * Threads: setup and the cipher call at start, from one thread; everything
 * else is thread-safe.
 *
 * Errors: functions returning int give 0 or -1 with a one-line reason in @err
 * that names the flag and the file (e.g. "--key-file=/x/k.pem: the private key
 * does not match the certificate in --cert-file=/x/c.pem").
 */
#ifndef METASTORE_SRV_TLS_H
#define METASTORE_SRV_TLS_H

#include <stdbool.h>
#include <stddef.h>

struct grpc_call;
struct grpc_server_credentials;
struct grpc_channel_credentials;

typedef struct srv_tls srv_tls;

/* Where srv_tls writes its log lines: @level is "info" or "warn", @line has no
 * newline. NULL drops them. */
typedef void (*srv_tls_log_fn)(void *ctx, const char *level, const char *line);

/* One side's flags, as given (strings may be NULL or "" for "not given"). */
typedef struct srv_tls_side {
	const char *side;             /* "client" or "peer" (names flags in messages);
	                                 "proxy": a client side whose auto-TLS files go to
	                                 fixtures/proxy (etcd's grpc-proxy) */
	const char *cert_file;        /* --cert-file / --peer-cert-file */
	const char *key_file;         /* --key-file / --peer-key-file */
	const char *trusted_ca_file;  /* --trusted-ca-file / --peer-trusted-ca-file */
	const char *crl_file;         /* --client-crl-file / --peer-crl-file */
	bool client_cert_auth;        /* --client-cert-auth / --peer-client-cert-auth */
	const char *allowed_cn;       /* --peer-cert-allowed-cn (peer only) */
	const char *allowed_hostname; /* --client-cert-allowed-hostname /
	                                 --peer-cert-allowed-hostname */
	bool skip_client_san;         /* --experimental-peer-skip-client-san-verification */
	bool auto_tls;                /* --auto-tls / --peer-auto-tls */
	const char *data_dir; /* auto-TLS writes <data_dir>/fixtures/<side>/{cert,key}.pem */
	const char *const *listen_urls; /* this side's listen URLs: auto-TLS hosts, warnings */
	size_t n_listen;
	srv_tls_log_fn log;
	void *log_ctx;
} srv_tls_side;

/*
 * srv_tls_setup - settle one side's TLS as etcd's embed does at start:
 *   - auto_tls with no cert/key given: use (or first create, as srv_tls_self_cert)
 *     <data_dir>/fixtures/<side>/cert.pem and key.pem; every other setting of
 *     the side is dropped, as etcd replaces the whole TLSInfo (no client
 *     certificates requested, no CRL, no allowed CN/hostname); auto_tls with a
 *     cert/key: logs "ignoring client auto TLS since certs given";
 *   - logs etcd's warnings for http:// (client: also unix://) listen URLs while
 *     certificates or client-cert-auth are set, and the "ClientTLS: cert = ..."
 *     / "peerTLS: ..." line;
 *   - reads and checks the certificate, key, CA and CRL files.
 * *@out is the side's srv_tls (one reference, the caller's), or NULL when the
 * side has no certificate (plaintext only). Returns 0, or -1 with @err set:
 * a file that cannot be read, holds no PEM certificate / key, a key that does
 * not match the certificate, a certificate not valid now (expired or not yet
 * valid), a CA file with no certificate, a CRL that does not parse, only one of
 * cert/key, the auto-TLS directory or files that cannot be written, out of
 * memory.
 */
int srv_tls_setup(const srv_tls_side *s, srv_tls **out, char *err, size_t errlen);

/* srv_tls_ref / srv_tls_unref - take / drop a reference; the last frees. NULL ok. */
void srv_tls_ref(srv_tls *t);
void srv_tls_unref(srv_tls *t);

/* srv_tls_describe - etcd's TLSInfo.String(): "cert = %s, key = %s, trusted-ca
 * = %s, client-cert-auth = %v, crl-file = %s" into @buf. */
void srv_tls_describe(const srv_tls *t, char *buf, size_t len);

/*
 * srv_tls_server_creds - new server credentials for a port of @t's side (the
 * caller releases them with grpc_server_credentials_release after
 * grpc_server_add_http2_port). They hold a reference to @t. NULL on out of
 * memory.
 */
struct grpc_server_credentials *srv_tls_server_creds(srv_tls *t);

/*
 * srv_tls_channel_creds - new channel credentials for dialing a member's
 * https:// (or unixs://) peer URL with @t's identity and checks; @t NULL: no
 * client certificate, the system's CA bundle, host name checked (a Go client
 * with an empty TLSInfo). Release with grpc_channel_credentials_release. NULL
 * on out of memory.
 */
struct grpc_channel_credentials *srv_tls_channel_creds(srv_tls *t);

/* The flags of a client dialing etcd servers (grpc-proxy's --cert, --key,
 * --cacert, --insecure-skip-tls-verify): the *_flag names are used in
 * messages; files may be NULL or "". */
typedef struct srv_tls_dial {
	const char *cert_flag, *cert_file; /* client certificate (with key_file) */
	const char *key_flag, *key_file;
	const char *ca_flag, *ca_file; /* roots for the servers; none: the system bundle */
	bool skip_verify;              /* the servers' certificates are not checked */
} srv_tls_dial;

/*
 * srv_tls_dial_creds - new channel credentials for @d (as a Go client with
 * that TLSInfo): the client certificate if given, the servers' certificates
 * verified against the CA file (or the system's bundle) and their host names
 * against the target's, or nothing verified with skip_verify. Release with
 * grpc_channel_credentials_release. NULL with @err set: only one of cert/key,
 * a file that cannot be read or holds no PEM certificate / key, a key that does
 * not match the certificate, out of memory.
 */
struct grpc_channel_credentials *srv_tls_dial_creds(const srv_tls_dial *d, char *err,
                                                    size_t errlen);

/*
 * srv_tls_file_cn - the Common Name (the last CN attribute of the subject, ""
 * when it has none) of the first certificate in PEM file @path into @cn
 * (truncated to @cnlen). Returns 0, or -1 with @err naming @flag: the file
 * cannot be read or holds no PEM certificate.
 */
int srv_tls_file_cn(const char *flag, const char *path, char *cn, size_t cnlen, char *err,
                    size_t errlen);

/*
 * srv_tls_pems - the PEM texts a TLS server of @t's side outside the gRPC core
 * needs (srv_http's libmicrohttpd daemon): *@cert the certificate and its
 * chain, *@key the private key (PKCS#8), *@ca the roots client certificates
 * must chain to when the side requires client certificates (the same rule as
 * srv_tls_server_creds), else NULL. Owned by @t, valid while it is.
 */
void srv_tls_pems(const srv_tls *t, const char **cert, const char **key, const char **ca);

/*
 * srv_tls_check_client_pem - the checks srv_tls_server_creds' verifier adds to
 * the chain verification, for a client certificate chain @pem (PEM, leaf
 * first) that another TLS stack has verified against *@ca of srv_tls_pems:
 * --client-cert-allowed-hostname and the CRL. Returns 0 (allowed) or -1 with
 * etcd's reason in @why, and logs the refusal as the verifier does.
 */
int srv_tls_check_client_pem(srv_tls *t, const char *pem, char *why, size_t whylen);

/* srv_tls_checks_client_addr - whether calls on @t's server ports must pass
 * srv_tls_check_client_addr (the peer side unless skip_client_san). */
bool srv_tls_checks_client_addr(const srv_tls *t);

/*
 * srv_tls_check_client_addr - etcd's checkSAN for one call that arrived on a
 * TLS port: the client certificate's IP SANs must include the address the call
 * comes from, or one of its DNS SANs must resolve to it (or the address's
 * reverse lookup match one). A certificate without IP or DNS SANs, a call
 * without a client certificate or on a plaintext port passes. Verdicts on DNS
 * lookups are cached for a few seconds. Returns 0 (allowed) or -1 with the
 * reason in @why (Go's words, e.g. "tls: \"127.0.0.2\" does not match any of
 * DNSNames [\"localhost\"]"), and logs the refusal.
 */
int srv_tls_check_client_addr(srv_tls *t, struct grpc_call *call, char *why, size_t whylen);

/*
 * srv_tls_call_cn - the Common Name of the verified client certificate of
 * @call's connection, copied NUL-terminated into @buf. Returns its length (0
 * for a certificate without a CN), -1 when the connection has no client
 * certificate (plaintext, or none requested), -2 when it does not fit in @cap
 * bytes (never truncated). Server ports only request certificates they
 * verify, so any certificate seen here was verified.
 */
int srv_tls_call_cn(struct grpc_call *call, char *buf, size_t cap);

/* ---- metastore's own TLS server (srv_tlsfront.h) ---------------------------------- */

struct ssl_ctx_st; /* OpenSSL's SSL_CTX */
struct ssl_st;     /* OpenSSL's SSL */

/*
 * srv_tls_wants_front - whether @t's server ports must terminate TLS in
 * metastore (srv_tlsfront) rather than in the gRPC core: the peer side with
 * required client certificates and --peer-cert-allowed-cn or
 * --peer-cert-allowed-hostname. The core judges a client certificate only
 * after its handshake, so a member it refuses never gets the TLS alert etcd
 * sends (and logs Go's "remote error: tls: bad certificate" for). false for
 * NULL and every other configuration.
 */
bool srv_tls_wants_front(const srv_tls *t);

/*
 * srv_tls_front_ctx - a new OpenSSL server context for @t's side (the caller
 * frees it with SSL_CTX_free, before dropping its reference to @t, which the
 * context points to): @t's certificate chain and key, TLS 1.2 only (so the
 * client's certificate is judged inside the handshake and a refusal reaches
 * the client as a handshake failure), --cipher-suites as the core has them,
 * no session resumption, ALPN "grpc-exp" / "h2", client certificates
 * required and verified against @t's CA, and the allowed CN / hostname
 * applied to the leaf in the handshake: a refused certificate fails it with
 * X509_V_ERR_CERT_REJECTED, sent as alert bad_certificate (42). The CRL and
 * checkSAN are left to srv_tls_front_check, after the handshake, as etcd's
 * TLS listener does. Returns NULL with @err set: @t requires no client
 * certificates, or OpenSSL refuses the files or the cipher list.
 */
struct ssl_ctx_st *srv_tls_front_ctx(srv_tls *t, char *err, size_t errlen);

/*
 * srv_tls_front_check - the checks etcd's TLS listener makes after a
 * successful handshake on an SSL of srv_tls_front_ctx(@t): no certificate the
 * client sent is in the CRL, and (peer side, unless skip_client_san) the
 * leaf's SANs match @host, the address the connection comes from (NULL: not
 * known), as srv_tls_check_client_addr. @peer ("host:port") names the client
 * in the log. Returns 0, or -1 with etcd's reason in @why after logging
 * "rejected connection from ...". May block on DNS lookups.
 */
int srv_tls_front_check(srv_tls *t, struct ssl_st *ssl, const char *host, const char *peer,
                        char *why, size_t whylen);

/* srv_tls_front_refused - log etcd's "rejected connection from \"@peer\"
 * (error \"@why\", ServerName \"\")" for a failed handshake (repeats within a
 * few seconds are dropped). */
void srv_tls_front_refused(srv_tls *t, const char *peer, const char *why);

/*
 * srv_tls_remote_alert_text - Go's text for an OpenSSL error that reports a
 * TLS alert received from the other end (ERR_LIB_SSL, reason
 * SSL_AD_REASON_OFFSET + alert): "remote error: tls: bad certificate", ...,
 * "remote error: tls: alert(N)" for alerts Go has no name for. Returns 0, or
 * -1 (not a received alert; @buf untouched).
 */
int srv_tls_remote_alert_text(unsigned long ossl_err, char *buf, size_t len);

/*
 * srv_tls_watch_core_log - take over the gRPC core's log lines (gpr_log): a
 * TLS handshake that failed because the other end sent an alert (gRPC 1.51
 * logs it at ERROR, "Handshake failed with fatal error SSL_ERROR_SSL: ...
 * sslv3 alert bad certificate.", at every reconnect; later cores at INFO) is
 * logged through @log as a warning in Go's words instead, "TLS handshake
 * failed: remote error: tls: bad certificate", the same alert at most once
 * per 5 s. Every other line the core printed before (GRPC_VERBOSITY, default
 * ERROR) still goes to stderr in about its format; the rest is dropped.
 * Process-wide; call once at start, before the first channel is made.
 */
void srv_tls_watch_core_log(srv_tls_log_fn log, void *log_ctx);

/*
 * srv_tls_self_cert - etcd's transport.SelfCert: in @dir (created 0700 with its
 * parents) keep cert.pem and key.pem if both exist, else write a new pair: an
 * ECDSA P-521 key (etcd 3.4's curve; "EC PRIVATE KEY", mode 0600) and a
 * self-signed certificate for it (a random 128-bit serial, O=etcd, valid for
 * 365 days from now, key usage digitalSignature + keyEncipherment, extended
 * key usage serverAuth, CA:FALSE), whose SANs are the hosts of @hosts
 * ("host:port" each; an IP address becomes an IP SAN, anything else a DNS
 * SAN). Returns 0 or -1 with @err.
 */
int srv_tls_self_cert(const char *dir, const char *const *hosts, size_t n, char *err,
                      size_t errlen);

/*
 * srv_tls_cipher_list - map --cipher-suites (@go_names: Go's names, comma
 * separated, as etcd's tlsutil.GetCipherSuites accepts them) to an OpenSSL
 * cipher list ("A:B:...") for TLS 1.2 in @out. TLS 1.3 names are accepted and
 * left out (TLS 1.3 suites are not restricted). "" or NULL gives "". Returns
 * the number of TLS 1.2 ciphers written, or -1 with etcd's message
 * ("unexpected TLS cipher suite \"X\"") or "too long" in @err.
 */
int srv_tls_cipher_list(const char *go_names, char *out, size_t outlen, char *err, size_t errlen);

/*
 * srv_tls_use_cipher_suites - apply --cipher-suites to every TLS connection of
 * the process: sets GRPC_SSL_CIPHER_SUITES, which the core reads once, so call
 * it before any credentials are made (first thing in main). "" or NULL keeps
 * the core's defaults. A list with only TLS 1.3 names keeps the defaults too,
 * with a warning through @log. Returns 0 or -1 (as srv_tls_cipher_list, or
 * setenv failing).
 */
int srv_tls_use_cipher_suites(const char *go_names, srv_tls_log_fn log, void *log_ctx, char *err,
                              size_t errlen);

#endif
