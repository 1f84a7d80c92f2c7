/*
 * srv_grpcproxy: `metastore grpc-proxy start`, etcd 3.4's gRPC proxy
 * subcommand (etcdmain/grpc_proxy.go), as a generic, transparent proxy on the
 * gRPC C core.
 *
 * It listens on --listen-addr (plaintext, or TLS with --cert-file/--key-file
 * [--trusted-ca-file, --client-crl-file] or --auto-tls) and forwards every call
 * it receives, whatever its method, to one channel to --endpoints: request
 * metadata (the auth "token", "hasleader", ...) and message bytes go up
 * unchanged, initial metadata, messages, trailing metadata and status come
 * back unchanged; half-close and cancellation travel both ways. Each call
 * keeps at most one message in flight per direction, so a slow side stalls its
 * peer through HTTP/2 flow control instead of making the proxy buffer.
 *
 * One call is answered by the proxy itself, as etcd's does: with
 * --advertise-client-url set (its default), Cluster.MemberList returns the
 * proxy as the only member (named after the host, that URL as its client URL),
 * so clients syncing endpoints stay on the proxy; --advertise-client-url ""
 * forwards it.
 *
 * Where etcd's proxy differs (it is a clientv3 application with caches and
 * watch coalescing): errors keep their gRPC code (etcd's turn into Unknown
 * with the same message); this one adds no caching and opens one upstream call per
 * client call; it serves no HTTP (/metrics, /health) on the listen port;
 * --namespace and --discovery-srv are refused (they would change what the
 * client reaches); the registration, metrics, pprof and experimental flags are
 * accepted and logged as having no effect.
 *
 * --listen-cipher-suites takes Go's names and limits TLS 1.2 through
 * srv_tls_use_cipher_suites (TLS 1.3 suites are not restricted, as in Go); the
 * core's only knob is process-wide, so the list also applies to TLS towards
 * --endpoints (logged at start).
 *
 * Threads: srv_gp_main runs the proxy on the calling thread (one completion
 * queue, polled by that thread only) plus one thread waiting for SIGINT /
 * SIGTERM, which shut the proxy down cleanly (exit status 0).
 */
#ifndef METASTORE_SRV_GRPCPROXY_H
#define METASTORE_SRV_GRPCPROXY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* The flags of `grpc-proxy start`, etcd 3.4's names and defaults. Strings
 * point into argv (or are static defaults), except endpoints. */
typedef struct srv_gp_opts {
	const char *listen_addr;    /* --listen-addr, "127.0.0.1:23790" */
	char *endpoints;            /* --endpoints, comma list (malloc'd), "127.0.0.1:2379" */
	const char *discovery_srv;  /* --discovery-srv (refused when given) */
	const char *discovery_srv_name;
	bool insecure_discovery;
	const char *metrics_addr;   /* --metrics-addr (no effect) */
	const char *advertise_client_url;
	const char *resolver_prefix;
	int64_t resolver_ttl;
	const char *namespace_;     /* --namespace (refused when given) */
	bool enable_pprof;
	const char *data_dir;       /* --data-dir, "default.proxy" (auto-TLS files) */
	int64_t max_send_bytes;     /* --max-send-bytes, 1.5 MiB */
	int64_t max_recv_bytes;     /* --max-recv-bytes, MaxInt32 */
	const char *cert, *key, *cacert; /* to the endpoints */
	bool insecure_skip_tls_verify;
	const char *cert_file, *key_file, *trusted_ca_file; /* on the listen address */
	const char *listen_cipher_suites;
	bool auto_tls;
	const char *client_crl_file;
	bool serializable_ordering; /* --experimental-serializable-ordering (no effect) */
	const char *leasing_prefix; /* --experimental-leasing-prefix (no effect) */
	bool debug;                 /* --debug: debug-level logs */
	int64_t max_concurrent_streams; /* per client connection, MaxUint32 */
	char *cipher_list_owned;        /* storage behind listen_cipher_suites */
} srv_gp_opts;

/* srv_gp_parse results besides 0 and -1. */
#define SRV_GP_HELP 1 /* -h / --help, or no subcommand: print srv_gp_usage, exit 0 */

/*
 * srv_gp_parse - parse `grpc-proxy` @argv (argv[0] is "grpc-proxy", argv[1]
 * must be "start") into @o, flags as Go's pflag takes them ("-f v", "--f=v",
 * bools as "--f" / "--f=false"; --endpoints and --listen-cipher-suites
 * accumulate over repeats). Then etcd's checkArgs on the resolver flags.
 * Returns 0, SRV_GP_HELP, or -1 with cobra's / etcd's message in @err
 * ("unknown flag: --x", "flag needs an argument: --x", "invalid argument ...",
 * "unknown command \"x\" for \"metastore grpc-proxy\"", "invalid resolver-ttl
 * 0", ...). After any return the caller calls srv_gp_opts_free(@o).
 */
int srv_gp_parse(int argc, char **argv, srv_gp_opts *o, char *err, size_t errlen);

/* srv_gp_opts_free - free what srv_gp_parse allocated in @o. */
void srv_gp_opts_free(srv_gp_opts *o);

/*
 * srv_gp_check_cert - etcd's check on the certificate the proxy presents to the
 * endpoints (TLSInfo.EmptyCN): @cert_file's first certificate must have an
 * empty Common Name. Returns 0, or -1 with @err: etcd's "cert has non empty
 * Common Name (CN)", or why the file cannot be read (naming --cert).
 */
int srv_gp_check_cert(const char *cert_file, char *err, size_t errlen);

/*
 * srv_gp_target - the gRPC channel target and default authority for the
 * endpoint list @endpoints (comma separated "host:port", an http:// or
 * https:// prefix dropped): one endpoint as "dns:///host:port"; several as
 * one "ipv4:" (or "ipv6:") address list, host names resolved now. @authority
 * gets the first endpoint's "host:port" (the name TLS checks). *@tls is set
 * when an endpoint says https://. Returns 0, or -1 with @err (an empty list, a
 * missing port, a name that does not resolve, too long).
 */
int srv_gp_target(const char *endpoints, char *target, size_t tlen, char *authority, size_t alen,
                  bool *tls, char *err, size_t errlen);

/* srv_gp_usage - the subcommand's help text. */
void srv_gp_usage(FILE *out);

/*
 * srv_gp_main - `metastore grpc-proxy ...` (@argv[0] is "grpc-proxy"): parse,
 * check, listen, proxy until SIGINT / SIGTERM. Returns the process exit
 * status: 0 after a signal or for --help, 1 for a bad flag or a start-up
 * failure (message on stderr), as etcd's cobra command exits.
 */
int srv_gp_main(int argc, char **argv);

#endif
