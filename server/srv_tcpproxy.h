/*
 * srv_tcpproxy: `metastore gateway start`, etcd's gateway: a plain TCP proxy in
 * front of a cluster's client URLs. Each accepted connection is joined to one
 * endpoint, picked round-robin among the active ones; an endpoint whose connect
 * fails is left out for --retry-delay (etcd's default 1m), then tried again.
 * Bytes pass unchanged both ways (gRPC, HTTP, TLS alike), each direction on a
 * thread of its own; one side's end of stream reaches the other as a
 * half-close, and an error on either side closes both.
 *
 * Flags, as etcd 3.4's `etcd gateway start`: --listen-addr (127.0.0.1:23790),
 * --endpoints (127.0.0.1:2379; a scheme such as http:// is dropped),
 * --retry-delay (1m). DNS discovery (--discovery-srv, --discovery-srv-name) is
 * refused with a message; --insecure-discovery and --trusted-ca-file, which only
 * matter with it, are accepted and have no effect.
 */
#ifndef METASTORE_SRV_TCPPROXY_H
#define METASTORE_SRV_TCPPROXY_H

#include <stddef.h>
#include <stdint.h>

/* A gateway's settings: borrowed strings, read during srv_tp_start only. */
typedef struct srv_tp_config {
	const char *listen_addr; /* host:port (port 0: any free port) */
	const char *endpoints;   /* comma list of host:port, scheme allowed */
	int64_t retry_delay_ms;  /* how long a failed endpoint is left out */
} srv_tp_config;

typedef struct srv_tp srv_tp;

/*
 * srv_tp_start - check @cfg as etcd does, listen, and start accepting on a
 * thread of its own. Errors (0 on success, -1 with @err set, nothing left
 * running): a listen address or endpoint that is not host:port ("failed to
 * validate listen address: A", "error parsing endpoint \"E\""), a host that
 * does not resolve, an endpoint that resolves to the listen address itself
 * ("SRV or endpoint (...) should not resolve to the gateway listen addr (A)"),
 * no endpoints ("no endpoints found"), or the listen socket's error.
 * On success *@out is the gateway, which the caller stops with srv_tp_stop.
 */
int srv_tp_start(const srv_tp_config *cfg, srv_tp **out, char *err, size_t errlen);

/* srv_tp_port - the port the gateway listens on (the chosen one for port 0). */
int srv_tp_port(const srv_tp *tp);

/*
 * srv_tp_stop - stop accepting, cut every open connection (both sides) and
 * wait for its threads, free @tp. NULL is ignored.
 */
void srv_tp_stop(srv_tp *tp);

/*
 * srv_tp_main - the `gateway` subcommand: argv[0] is "gateway", then "start"
 * and the flags in any order (as etcd's cobra command). Runs until SIGTERM or
 * SIGINT; returns the process exit status (0, 1 for a start error as etcd's
 * os.Exit(1), 2 for bad usage).
 */
int srv_tp_main(int argc, char **argv);

#endif
