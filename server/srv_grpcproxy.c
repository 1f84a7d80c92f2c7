/*
 * srv_grpcproxy.c: `metastore grpc-proxy start` (see srv_grpcproxy.h).
 *
 * Flags: one table (name, kind, field); srv_gp_parse walks argv against it.
 *
 * Proxying. One grpc_server and one channel share one completion queue that
 * only srv_gp_main's thread polls, so call objects need no locks. The server
 * keeps one generic grpc_server_request_call armed; each call it yields is a
 * gp_call joined to one upstream call made on the channel with the server call
 * as its parent (deadline and cancellation propagate). CQ tags are gp_tag
 * {kind, owner} structs embedded in the gp_call, one per kind of batch, and
 * the loop is one switch on the kind. Batches of a call:
 *   upstream:   SEND_INITIAL_METADATA + RECV_INITIAL_METADATA  (T_UP_MD)
 *               RECV_STATUS_ON_CLIENT                          (T_UP_STATUS)
 *   downstream: RECV_CLOSE_ON_SERVER                           (T_DOWN_CLOSE)
 *   requests:   downstream RECV_MESSAGE (T_REQ_RECV) → upstream SEND_MESSAGE
 *               (T_REQ_SEND) → the next RECV_MESSAGE; the end of the
 *               requests becomes SEND_CLOSE_FROM_CLIENT (half-close);
 *   responses:  once the upstream's initial metadata is in: downstream
 *               SEND_INITIAL_METADATA (T_DOWN_MD) and upstream RECV_MESSAGE
 *               (T_RESP_RECV) → downstream SEND_MESSAGE (T_RESP_SEND) → ...;
 *   status:     when the upstream status is in and its messages are all
 *               relayed, SEND_STATUS_FROM_SERVER (T_DOWN_STATUS) with the
 *               upstream's trailing metadata, code and details.
 * So each direction has at most one message in flight. A cancelled
 * downstream call (T_DOWN_CLOSE says so) cancels the upstream call. Each
 * outstanding batch holds a reference; the gp_call is freed when the last one
 * returns.
 *
 * MemberList, while --advertise-client-url is set, is answered here in one
 * batch (answer_member_list) instead.
 *
 * Metadata is copied as received except the keys HTTP/2 and gRPC own
 * (":*", "grpc-*", content-type, te, user-agent, host), which the core sets.
 *
 * Shutdown: the signal thread calls grpc_server_shutdown_and_notify and
 * cancels every call; the loop ends once the server is shut down and the last
 * call object is gone.
 */
#include "server/srv_grpcproxy.h"

#include <errno.h>
#include <limits.h>
#include <netdb.h>
#include <arpa/inet.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <grpc/byte_buffer.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/slice.h>
#include <grpc/support/time.h>

#include "rpc.pb-c.h"
#include "server/srv_config.h"
#include "server/srv_log.h"
#include "server/srv_tls.h"

/* ---- flags ------------------------------------------------------------------ */

#define DEF_MAX_SEND (1536 * 1024) /* etcd's defaultGRPCMaxCallSendMsgSize */

typedef enum { F_STR, F_LIST, F_BOOL, F_INT, F_UINT32 } flag_kind;

typedef struct gp_flag {
	const char *name;
	flag_kind kind;
	size_t off;
	const char *help;
} gp_flag;

#define O(f) offsetof(srv_gp_opts, f)
static const gp_flag flags[] = {
	{"listen-addr", F_STR, O(listen_addr), "address to serve gRPC proxy clients on"},
	{"discovery-srv", F_STR, O(discovery_srv), "DNS domain of the cluster's SRV records (refused: give --endpoints)"},
	{"discovery-srv-name", F_STR, O(discovery_srv_name), "service name for DNS discovery (no effect)"},
	{"metrics-addr", F_STR, O(metrics_addr), "extra address for /metrics (no effect)"},
	{"insecure-discovery", F_BOOL, O(insecure_discovery), "accept insecure SRV records (no effect)"},
	{"endpoints", F_LIST, O(endpoints), "comma separated cluster endpoints (host:port)"},
	{"advertise-client-url", F_STR, O(advertise_client_url), "the proxy's address as MemberList reports it (\"\": forward MemberList)"},
	{"resolver-prefix", F_STR, O(resolver_prefix), "prefix for registering the proxy (no effect)"},
	{"resolver-ttl", F_INT, O(resolver_ttl), "TTL in seconds of that registration (no effect)"},
	{"namespace", F_STR, O(namespace_), "key prefix for every request (refused: not supported)"},
	{"enable-pprof", F_BOOL, O(enable_pprof), "profiling over HTTP (no effect)"},
	{"data-dir", F_STR, O(data_dir), "directory for the --auto-tls certificate"},
	{"max-send-bytes", F_INT, O(max_send_bytes), "largest request message sent to the cluster, in bytes"},
	{"max-recv-bytes", F_INT, O(max_recv_bytes), "largest response message received from the cluster, in bytes"},
	{"cert", F_STR, O(cert), "client certificate for the cluster (its Common Name must be empty)"},
	{"key", F_STR, O(key), "key of --cert"},
	{"cacert", F_STR, O(cacert), "CA bundle that verifies the cluster's certificates"},
	{"insecure-skip-tls-verify", F_BOOL, O(insecure_skip_tls_verify), "do not verify the cluster's certificates (testing only)"},
	{"cert-file", F_STR, O(cert_file), "certificate the proxy serves TLS with"},
	{"key-file", F_STR, O(key_file), "key of --cert-file"},
	{"trusted-ca-file", F_STR, O(trusted_ca_file), "CA bundle that client certificates must chain to (requires them)"},
	{"listen-cipher-suites", F_STR, O(listen_cipher_suites), "TLS 1.2 cipher suites (Go names), comma separated"},
	{"auto-tls", F_BOOL, O(auto_tls), "serve TLS with a generated self-signed certificate"},
	{"client-crl-file", F_STR, O(client_crl_file), "revoked client certificates"},
	{"experimental-serializable-ordering", F_BOOL, O(serializable_ordering), "monotonic serializable reads across endpoints (no effect)"},
	{"experimental-leasing-prefix", F_STR, O(leasing_prefix), "leasing metadata prefix (no effect)"},
	{"debug", F_BOOL, O(debug), "debug-level logging"},
	{"max-concurrent-streams", F_UINT32, O(max_concurrent_streams), "streams each client connection may open at a time"},
};
#undef O

void srv_gp_usage(FILE *out)
{
	fputs("Usage:\n  metastore grpc-proxy start [flags]\n\n"
	      "start the grpc proxy: every gRPC call received on --listen-addr is forwarded\n"
	      "unchanged to the etcd / metastore cluster at --endpoints.\n\nFlags:\n",
	      out);
	for (size_t i = 0; i < sizeof flags / sizeof flags[0]; i++)
		fprintf(out, "      --%s%s\n          %s\n", flags[i].name,
		        flags[i].kind == F_BOOL ? "" : flags[i].kind == F_STR ? " string"
		                                   : flags[i].kind == F_LIST  ? " strings"
		                                                              : " int",
		        flags[i].help);
	fputs("  -h, --help   help for start\n", out);
}

/* Append comma list @v to *@list (a pflag StringSlice: the first use replaces
 * the default, later ones append). */
static int list_add(char **list, bool *set, const char *v)
{
	size_t old = *set && *list ? strlen(*list) : 0;
	char *n = malloc(old + strlen(v) + 2);
	if (n == NULL)
		return -1;
	if (old > 0)
		snprintf(n, old + strlen(v) + 2, "%s,%s", *list, v);
	else
		strcpy(n, v);
	free(*list);
	*list = n;
	*set = true;
	return 0;
}

static int parse_int(const char *name, const char *v, flag_kind k, int64_t *out, char *err,
                     size_t errlen)
{
	/* Go's int flags here are IntVar (32 bits on the wire of etcd's checks)
	 * and Uint32Var */
	int rc = k == F_UINT32 ? srv_config_parse_num(v, false, UINT32_MAX, out)
	                       : srv_config_parse_num(v, true, INT32_MAX, out);
	if (rc != 0) {
		srv_errf(err, errlen,
		         "invalid argument \"%s\" for \"--%s\" flag: strconv.Parse%s: parsing \"%s\": %s",
		         v, name, k == F_UINT32 ? "Uint" : "Int", v,
		         rc == -2 ? "value out of range" : "invalid syntax");
		return -1;
	}
	return 0;
}

static int parse_bool(const char *name, const char *v, bool *out, char *err, size_t errlen)
{
	if (srv_config_parse_bool(v, out) == 0)
		return 0;
	srv_errf(err, errlen,
	         "invalid argument \"%s\" for \"--%s\" flag: strconv.ParseBool: parsing \"%s\": "
	         "invalid syntax",
	         v, name, v);
	return -1;
}

int srv_gp_parse(int argc, char **argv, srv_gp_opts *o, char *err, size_t errlen)
{
	*o = (srv_gp_opts){
	        .listen_addr = "127.0.0.1:23790",
	        .discovery_srv = "",
	        .discovery_srv_name = "",
	        .metrics_addr = "",
	        .advertise_client_url = "127.0.0.1:23790",
	        .resolver_prefix = "",
	        .namespace_ = "",
	        .data_dir = "default.proxy",
	        .max_send_bytes = DEF_MAX_SEND,
	        .max_recv_bytes = INT32_MAX,
	        .cert = "",
	        .key = "",
	        .cacert = "",
	        .cert_file = "",
	        .key_file = "",
	        .trusted_ca_file = "",
	        .listen_cipher_suites = "",
	        .client_crl_file = "",
	        .leasing_prefix = "",
	        .max_concurrent_streams = UINT32_MAX,
	};
	o->endpoints = strdup("127.0.0.1:2379");
	if (o->endpoints == NULL) {
		srv_errf(err, errlen, "out of memory");
		return -1;
	}
	if (argc < 2)
		return SRV_GP_HELP; /* cobra prints a parent command's help */
	if (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0)
		return SRV_GP_HELP;
	if (strcmp(argv[1], "start") != 0) {
		srv_errf(err, errlen, "unknown command \"%s\" for \"metastore grpc-proxy\"", argv[1]);
		return -1;
	}
	bool eps_set = false, cs_set = false;
	char *cs = NULL; /* --listen-cipher-suites accumulates too */
	int rc = 0;
	for (int i = 2; i < argc && rc == 0; i++) {
		const char *a = argv[i];
		if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
			rc = SRV_GP_HELP;
			break;
		}
		if (a[0] != '-' || strcmp(a, "-") == 0) {
			/* cobra: a command without Args takes arbitrary positional args;
			 * etcd's start ignores them. */
			continue;
		}
		if (strcmp(a, "--") == 0)
			break;
		const char *n = a + 1 + (a[1] == '-');
		const char *eq = strchr(n, '=');
		size_t nlen = eq ? (size_t)(eq - n) : strlen(n);
		const gp_flag *f = NULL;
		for (size_t k = 0; k < sizeof flags / sizeof flags[0]; k++)
			if (strlen(flags[k].name) == nlen && strncmp(flags[k].name, n, nlen) == 0)
				f = &flags[k];
		if (f == NULL) {
			if (a[1] == '-')
				srv_errf(err, errlen, "unknown flag: --%.*s", (int)nlen, n);
			else
				srv_errf(err, errlen, "unknown shorthand flag: '%c' in %s", n[0], a);
			rc = -1;
			break;
		}
		const char *v = eq ? eq + 1 : NULL;
		if (f->kind == F_BOOL) {
			bool b = true;
			if (v != NULL && parse_bool(f->name, v, &b, err, errlen) != 0)
				rc = -1;
			else
				*(bool *)((char *)o + f->off) = b;
			continue;
		}
		if (v == NULL) {
			if (i + 1 >= argc) {
				srv_errf(err, errlen, "flag needs an argument: --%s", f->name);
				rc = -1;
				break;
			}
			v = argv[++i];
		}
		switch (f->kind) {
		case F_STR:
			if (strcmp(f->name, "listen-cipher-suites") == 0) {
				if (*v != '\0' && list_add(&cs, &cs_set, v) != 0)
					rc = -1;
				o->listen_cipher_suites = cs != NULL ? cs : "";
			} else {
				*(const char **)((char *)o + f->off) = v;
			}
			break;
		case F_LIST:
			if (list_add(&o->endpoints, &eps_set, v) != 0)
				rc = -1;
			break;
		case F_INT:
		case F_UINT32:
			rc = parse_int(f->name, v, f->kind, (int64_t *)((char *)o + f->off), err,
			               errlen);
			break;
		case F_BOOL:
			break;
		}
		if (rc == -1 && err[0] == '\0')
			srv_errf(err, errlen, "out of memory");
	}
	o->cipher_list_owned = cs;
	if (rc != 0)
		return rc;
	/* etcd's checkArgs. */
	if (*o->resolver_prefix != '\0' && o->resolver_ttl < 1) {
		srv_errf(err, errlen, "invalid resolver-ttl %lld", (long long)o->resolver_ttl);
		return -1;
	}
	if (*o->resolver_prefix == '\0' && o->resolver_ttl > 0) {
		srv_errf(err, errlen, "invalid resolver-prefix \"%s\"", o->resolver_prefix);
		return -1;
	}
	if (*o->resolver_prefix != '\0' && o->resolver_ttl > 0 && *o->advertise_client_url == '\0') {
		srv_errf(err, errlen, "invalid advertise-client-url \"%s\"", o->advertise_client_url);
		return -1;
	}
	return 0;
}

void srv_gp_opts_free(srv_gp_opts *o)
{
	free(o->endpoints);
	free(o->cipher_list_owned);
	o->endpoints = NULL;
	o->cipher_list_owned = NULL;
}

int srv_gp_check_cert(const char *cert_file, char *err, size_t errlen)
{
	char cn[256];
	if (srv_tls_file_cn("--cert", cert_file, cn, sizeof cn, err, errlen) != 0)
		return -1;
	if (cn[0] != '\0') {
		srv_errf(err, errlen, "cert has non empty Common Name (%s)", cn);
		return -1;
	}
	return 0;
}

/* ---- endpoints -------------------------------------------------------------------- */

/* Split "host:port" / "[v6]:port" at @ep (length @len) into @host and @port. */
static int split_hostport(const char *ep, size_t len, char *host, size_t hlen, char *port,
                          size_t plen)
{
	const char *colon = NULL;
	if (len > 0 && ep[0] == '[') {
		const char *rb = memchr(ep, ']', len);
		if (rb == NULL || (size_t)(rb - ep) + 1 >= len || rb[1] != ':')
			return -1;
		colon = rb + 1;
		if ((size_t)(rb - ep - 1) >= hlen)
			return -1;
		snprintf(host, hlen, "%.*s", (int)(rb - ep - 1), ep + 1);
	} else {
		for (size_t i = 0; i < len; i++)
			if (ep[i] == ':')
				colon = ep + i;
		if (colon == NULL || (size_t)(colon - ep) >= hlen)
			return -1;
		snprintf(host, hlen, "%.*s", (int)(colon - ep), ep);
	}
	size_t pl = len - (size_t)(colon + 1 - ep);
	if (pl == 0 || pl >= plen)
		return -1;
	snprintf(port, plen, "%.*s", (int)pl, colon + 1);
	return 0;
}

/* Append @s to @buf (capacity @cap, used *@off). -1 when it does not fit. */
static int put(char *buf, size_t cap, size_t *off, const char *s)
{
	size_t n = strlen(s);
	if (*off + n + 1 > cap)
		return -1;
	memcpy(buf + *off, s, n + 1);
	*off += n;
	return 0;
}

int srv_gp_target(const char *endpoints, char *target, size_t tlen, char *authority, size_t alen,
                  bool *tls, char *err, size_t errlen)
{
	*tls = false;
	authority[0] = '\0';
	size_t off = 0, count = 0;
	int family = 0; /* AF_INET / AF_INET6 of the list so far */
	char one[300] = "";
	const char *p = endpoints;
	target[0] = '\0';
	while (p != NULL && *p != '\0') {
		const char *e = strchr(p, ',');
		size_t len = e ? (size_t)(e - p) : strlen(p);
		const char *ep = p;
		p = e ? e + 1 : NULL;
		if (len == 0)
			continue;
		if (len > 8 && strncmp(ep, "https://", 8) == 0) {
			*tls = true;
			ep += 8, len -= 8;
		} else if (len > 7 && strncmp(ep, "http://", 7) == 0) {
			ep += 7, len -= 7;
		}
		while (len > 0 && ep[len - 1] == '/')
			len--;
		char host[256], port[16];
		if (split_hostport(ep, len, host, sizeof host, port, sizeof port) != 0) {
			srv_errf(err, errlen, "--endpoints: \"%.*s\" is not host:port", (int)len, ep);
			return -1;
		}
		if (count == 0) {
			snprintf(authority, alen, "%.*s", (int)len, ep);
			snprintf(one, sizeof one, "dns:///%.*s", (int)len, ep);
		}
		struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *res = NULL;
		int g = getaddrinfo(host, port, &hints, &res);
		if (g != 0 || res == NULL) {
			srv_errf(err, errlen, "--endpoints: cannot resolve \"%s\": %s", host,
			         g != 0 ? gai_strerror(g) : "no address");
			return -1;
		}
		/* The first address of the name (Go's dialer tries them in order too). */
		char ip[INET6_ADDRSTRLEN] = "", item[INET6_ADDRSTRLEN + 24];
		int fam = res->ai_family;
		if (fam == AF_INET)
			inet_ntop(AF_INET, &((struct sockaddr_in *)res->ai_addr)->sin_addr, ip, sizeof ip);
		else if (fam == AF_INET6)
			inet_ntop(AF_INET6, &((struct sockaddr_in6 *)res->ai_addr)->sin6_addr, ip,
			          sizeof ip);
		freeaddrinfo(res);
		if (ip[0] == '\0' || (family != 0 && fam != family)) {
			srv_errf(err, errlen,
			         "--endpoints: \"%s\": every endpoint must be IPv4, or every one IPv6",
			         host);
			return -1;
		}
		family = fam;
		snprintf(item, sizeof item, fam == AF_INET6 ? "[%s]:%s" : "%s:%s", ip, port);
		if (put(target, tlen, &off, count == 0 ? (fam == AF_INET6 ? "ipv6:" : "ipv4:") : ",") !=
		            0 ||
		    put(target, tlen, &off, item) != 0) {
			srv_errf(err, errlen, "--endpoints: too long");
			return -1;
		}
		count++;
	}
	if (count == 0) {
		srv_errf(err, errlen, "--endpoints: no endpoint given");
		return -1;
	}
	if (count == 1)
		snprintf(target, tlen, "%s", one);
	return 0;
}

/* ---- calls ------------------------------------------------------------------------- */

typedef enum {
	T_NEW,         /* the armed request got a call (or failed: shutdown) */
	T_UP_MD,       /* upstream: initial metadata sent and the server's received */
	T_UP_STATUS,   /* upstream: status received */
	T_DOWN_CLOSE,  /* downstream: the call is over (cancelled or not) */
	T_REQ_RECV,    /* downstream: a request message (or the half-close) */
	T_REQ_SEND,    /* upstream: a request message (or the half-close) sent */
	T_DOWN_MD,     /* downstream: initial metadata sent */
	T_RESP_RECV,   /* upstream: a response message (or the end) */
	T_RESP_SEND,   /* downstream: a response message sent */
	T_DOWN_STATUS, /* downstream: status sent */
	T_SHUTDOWN,    /* the server is shut down */
	T_KINDS
} tag_kind;

typedef struct gp_call gp_call;

typedef struct gp_tag {
	tag_kind kind;
	gp_call *owner;
} gp_tag;

typedef struct gp_proxy gp_proxy;

struct gp_call {
	gp_proxy *px;
	gp_tag tags[T_KINDS];
	int refs; /* outstanding batches; the loop thread only */
	grpc_call *down, *up;
	grpc_call_details details;
	grpc_metadata_array req_md;  /* the client's initial metadata */
	grpc_metadata_array resp_md; /* the upstream's initial metadata */
	grpc_metadata_array trail_md;
	grpc_metadata *fwd_req, *fwd_resp, *fwd_trail; /* filtered copies (slices borrowed) */
	size_t n_req, n_resp, n_trail;
	grpc_status_code status;
	grpc_slice status_details;
	grpc_byte_buffer *req, *resp; /* the message in flight, each way */
	int cancelled;                /* RECV_CLOSE_ON_SERVER's answer */
	bool status_in, resp_done, status_sent, req_closing;
};

struct gp_proxy {
	const char *advertise; /* --advertise-client-url: MemberList answers it ("": forwarded) */
	grpc_server *server;
	grpc_channel *channel;
	grpc_completion_queue *cq;
	gp_tag shutdown_tag;
	long live;      /* gp_call objects */
	bool stopping;  /* no more arming */
	bool shut_down; /* T_SHUTDOWN seen */
};

/* Keys the transport and the core own: never copied from one call to another. */
static bool reserved_key(grpc_slice k)
{
	size_t n = GRPC_SLICE_LENGTH(k);
	const char *s = (const char *)GRPC_SLICE_START_PTR(k);
	static const char *const names[] = {"content-type", "te", "user-agent", "host"};
	if (n == 0 || s[0] == ':' || (n >= 5 && memcmp(s, "grpc-", 5) == 0))
		return true;
	for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
		if (strlen(names[i]) == n && memcmp(names[i], s, n) == 0)
			return true;
	return false;
}

/* The forwardable entries of @a (borrowing its slices) into a new array. */
static grpc_metadata *filter_md(const grpc_metadata_array *a, size_t *n)
{
	*n = 0;
	if (a->count == 0)
		return NULL;
	grpc_metadata *out = calloc(a->count, sizeof *out);
	if (out == NULL)
		return NULL;
	for (size_t i = 0; i < a->count; i++)
		if (!reserved_key(a->metadata[i].key))
			out[(*n)++] = a->metadata[i];
	return out;
}

static void call_unref(gp_call *c)
{
	if (--c->refs > 0)
		return;
	if (c->up != NULL)
		grpc_call_unref(c->up);
	if (c->down != NULL)
		grpc_call_unref(c->down);
	grpc_call_details_destroy(&c->details);
	grpc_metadata_array_destroy(&c->req_md);
	grpc_metadata_array_destroy(&c->resp_md);
	grpc_metadata_array_destroy(&c->trail_md);
	grpc_slice_unref(c->status_details);
	free(c->fwd_req);
	free(c->fwd_resp);
	free(c->fwd_trail);
	if (c->req != NULL)
		grpc_byte_buffer_destroy(c->req);
	if (c->resp != NULL)
		grpc_byte_buffer_destroy(c->resp);
	c->px->live--;
	free(c);
}

/* Start @n @ops on @call with @c's tag @k (the batch holds a reference).
 * Returns whether the batch was started. */
static bool start(gp_call *c, grpc_call *call, const grpc_op *ops, size_t n, tag_kind k)
{
	c->refs++;
	grpc_call_error e = grpc_call_start_batch(call, ops, n, &c->tags[k], NULL);
	if (e == GRPC_CALL_OK)
		return true;
	srv_log_debug("grpc-proxy: batch not started", SRV_LF_INT("kind", k),
	              SRV_LF_STR("error", grpc_call_error_to_string(e)));
	c->refs--;
	return false;
}

static gp_call *call_new(gp_proxy *px)
{
	gp_call *c = calloc(1, sizeof *c);
	if (c == NULL)
		return NULL;
	c->px = px;
	for (int k = 0; k < T_KINDS; k++)
		c->tags[k] = (gp_tag){(tag_kind)k, c};
	grpc_call_details_init(&c->details);
	grpc_metadata_array_init(&c->req_md);
	grpc_metadata_array_init(&c->resp_md);
	grpc_metadata_array_init(&c->trail_md);
	c->status_details = grpc_empty_slice();
	px->live++;
	return c;
}

/* Keep one generic request armed (not while stopping). */
static void arm(gp_proxy *px)
{
	if (px->stopping)
		return;
	gp_call *c = call_new(px);
	if (c == NULL) {
		srv_log_error("grpc-proxy: out of memory; no longer accepting calls");
		return;
	}
	c->refs = 1;
	grpc_call_error e = grpc_server_request_call(px->server, &c->down, &c->details, &c->req_md,
	                                             px->cq, px->cq, &c->tags[T_NEW]);
	if (e != GRPC_CALL_OK) {
		srv_log_error("grpc-proxy: cannot request a call",
		              SRV_LF_STR("error", grpc_call_error_to_string(e)));
		call_unref(c);
	}
}

static void recv_request(gp_call *c)
{
	grpc_op op = {.op = GRPC_OP_RECV_MESSAGE};
	op.data.recv_message.recv_message = &c->req;
	start(c, c->down, &op, 1, T_REQ_RECV);
}

static void recv_response(gp_call *c)
{
	grpc_op op = {.op = GRPC_OP_RECV_MESSAGE};
	op.data.recv_message.recv_message = &c->resp;
	if (!start(c, c->up, &op, 1, T_RESP_RECV))
		c->resp_done = true;
}

/* The status goes down once it is in and every response before it went down. */
static void maybe_send_status(gp_call *c)
{
	if (!c->status_in || !c->resp_done || c->status_sent)
		return;
	c->status_sent = true;
	c->fwd_trail = filter_md(&c->trail_md, &c->n_trail);
	grpc_op op = {.op = GRPC_OP_SEND_STATUS_FROM_SERVER};
	op.data.send_status_from_server.trailing_metadata_count = c->n_trail;
	op.data.send_status_from_server.trailing_metadata = c->fwd_trail;
	op.data.send_status_from_server.status = c->status;
	op.data.send_status_from_server.status_details = &c->status_details;
	start(c, c->down, &op, 1, T_DOWN_STATUS);
}

/* End a call that could not be forwarded with @code (the proxy's own status). */
static void fail_call(gp_call *c, grpc_status_code code, const char *msg)
{
	grpc_slice d = grpc_slice_from_copied_string(msg);
	grpc_op ops[3] = {{.op = GRPC_OP_SEND_INITIAL_METADATA},
	                  {.op = GRPC_OP_SEND_STATUS_FROM_SERVER},
	                  {.op = GRPC_OP_RECV_CLOSE_ON_SERVER}};
	ops[1].data.send_status_from_server.status = code;
	ops[1].data.send_status_from_server.status_details = &d;
	ops[2].data.recv_close_on_server.cancelled = &c->cancelled;
	c->status_sent = true;
	start(c, c->down, ops, 3, T_DOWN_STATUS);
	grpc_slice_unref(d);
}

/*
 * etcd's cluster proxy with an advertise URL (the default) answers MemberList
 * itself: one member named after the host, with the advertise URL as its
 * client URL, no id and no header, so clients that sync their endpoints from
 * the member list keep talking to the proxy. The request is read and ignored.
 */
static bool answer_member_list(gp_call *c)
{
	static const char method[] = "/etcdserverpb.Cluster/MemberList";
	if (*c->px->advertise == '\0' || grpc_slice_str_cmp(c->details.method, method) != 0)
		return false;
	char host[256] = "";
	if (gethostname(host, sizeof host - 1) != 0)
		host[0] = '\0';
	char *urls[1] = {(char *)c->px->advertise};
	Etcdserverpb__Member m = ETCDSERVERPB__MEMBER__INIT;
	m.name = host;
	m.n_clienturls = 1;
	m.clienturls = urls;
	Etcdserverpb__Member *ms[1] = {&m};
	Etcdserverpb__MemberListResponse r = ETCDSERVERPB__MEMBER_LIST_RESPONSE__INIT;
	r.n_members = 1;
	r.members = ms;
	uint8_t buf[1024];
	if (etcdserverpb__member_list_response__get_packed_size(&r) > sizeof buf)
		return false; /* a very long URL: let the cluster answer */
	size_t n = etcdserverpb__member_list_response__pack(&r, buf);
	grpc_slice sl = grpc_slice_from_copied_buffer((const char *)buf, n);
	c->resp = grpc_raw_byte_buffer_create(&sl, 1);
	grpc_slice_unref(sl);
	grpc_slice ok = grpc_empty_slice();
	grpc_op ops[5] = {{.op = GRPC_OP_SEND_INITIAL_METADATA},
	                  {.op = GRPC_OP_RECV_MESSAGE},
	                  {.op = GRPC_OP_SEND_MESSAGE},
	                  {.op = GRPC_OP_SEND_STATUS_FROM_SERVER},
	                  {.op = GRPC_OP_RECV_CLOSE_ON_SERVER}};
	ops[1].data.recv_message.recv_message = &c->req;
	ops[2].data.send_message.send_message = c->resp;
	ops[3].data.send_status_from_server.status = GRPC_STATUS_OK;
	ops[3].data.send_status_from_server.status_details = &ok;
	ops[4].data.recv_close_on_server.cancelled = &c->cancelled;
	c->status_sent = true;
	start(c, c->down, ops, 5, T_DOWN_STATUS);
	return true;
}

/* A new downstream call: open its upstream twin and start both pumps. */
static void on_new(gp_call *c)
{
	gp_proxy *px = c->px;
	if (answer_member_list(c))
		return;
	c->up = grpc_channel_create_call(px->channel, c->down, GRPC_PROPAGATE_DEFAULTS, px->cq,
	                                 c->details.method, NULL, c->details.deadline, NULL);
	c->fwd_req = filter_md(&c->req_md, &c->n_req);
	if (c->up == NULL || (c->req_md.count > 0 && c->fwd_req == NULL)) {
		fail_call(c, GRPC_STATUS_INTERNAL, "grpc-proxy: cannot create the upstream call");
		return;
	}
	grpc_op up[2] = {{.op = GRPC_OP_SEND_INITIAL_METADATA},
	                 {.op = GRPC_OP_RECV_INITIAL_METADATA}};
	up[0].data.send_initial_metadata.count = c->n_req;
	up[0].data.send_initial_metadata.metadata = c->fwd_req;
	/* clientv3 waits for a ready connection (WaitForReady(true)); the call's
	 * deadline still bounds the wait. */
	up[0].flags = GRPC_INITIAL_METADATA_WAIT_FOR_READY;
	up[1].data.recv_initial_metadata.recv_initial_metadata = &c->resp_md;
	if (!start(c, c->up, up, 2, T_UP_MD))
		c->resp_done = true; /* nothing will come down but the status */

	grpc_op st = {.op = GRPC_OP_RECV_STATUS_ON_CLIENT};
	st.data.recv_status_on_client.trailing_metadata = &c->trail_md;
	st.data.recv_status_on_client.status = &c->status;
	st.data.recv_status_on_client.status_details = &c->status_details;
	if (!start(c, c->up, &st, 1, T_UP_STATUS)) {
		c->status = GRPC_STATUS_INTERNAL;
		c->status_in = true;
	}

	grpc_op cl = {.op = GRPC_OP_RECV_CLOSE_ON_SERVER};
	cl.data.recv_close_on_server.cancelled = &c->cancelled;
	start(c, c->down, &cl, 1, T_DOWN_CLOSE);
	recv_request(c);
}

static void on_up_md(gp_call *c)
{
	c->fwd_resp = filter_md(&c->resp_md, &c->n_resp);
	grpc_op op = {.op = GRPC_OP_SEND_INITIAL_METADATA};
	op.data.send_initial_metadata.count = c->n_resp;
	op.data.send_initial_metadata.metadata = c->fwd_resp;
	start(c, c->down, &op, 1, T_DOWN_MD);
	recv_response(c);
	maybe_send_status(c);
}

static void on_req_recv(gp_call *c)
{
	if (c->req != NULL) {
		grpc_op op = {.op = GRPC_OP_SEND_MESSAGE};
		op.data.send_message.send_message = c->req;
		if (!start(c, c->up, &op, 1, T_REQ_SEND)) {
			grpc_byte_buffer_destroy(c->req);
			c->req = NULL;
		}
		return;
	}
	/* The client half-closed (or its call ended): half-close upstream. */
	grpc_op op = {.op = GRPC_OP_SEND_CLOSE_FROM_CLIENT};
	c->req_closing = true;
	start(c, c->up, &op, 1, T_REQ_SEND);
}

static void on_req_send(gp_call *c, bool ok)
{
	if (c->req != NULL) {
		grpc_byte_buffer_destroy(c->req);
		c->req = NULL;
	}
	if (ok && !c->req_closing)
		recv_request(c);
	/* !ok: the upstream call is over; its status will end the downstream one. */
}

static void on_resp_recv(gp_call *c)
{
	if (c->resp == NULL) {
		c->resp_done = true;
		maybe_send_status(c);
		return;
	}
	grpc_op op = {.op = GRPC_OP_SEND_MESSAGE};
	op.data.send_message.send_message = c->resp;
	if (!start(c, c->down, &op, 1, T_RESP_SEND)) {
		grpc_byte_buffer_destroy(c->resp);
		c->resp = NULL;
		c->resp_done = true;
		maybe_send_status(c);
	}
}

static void on_resp_send(gp_call *c, bool ok)
{
	grpc_byte_buffer_destroy(c->resp);
	c->resp = NULL;
	if (ok) {
		recv_response(c);
		if (!c->resp_done)
			return;
	} else {
		/* The client is gone: nothing more goes down. */
		c->resp_done = true;
		grpc_call_cancel(c->up, NULL);
	}
	maybe_send_status(c);
}

static void dispatch(gp_proxy *px, gp_tag *t, bool ok)
{
	gp_call *c = t->owner;
	switch (t->kind) {
	case T_SHUTDOWN:
		px->shut_down = true;
		return;
	case T_NEW:
		if (!ok) { /* the server is shutting down */
			call_unref(c);
			return;
		}
		arm(px);
		on_new(c);
		break;
	case T_UP_MD:
		on_up_md(c);
		break;
	case T_UP_STATUS:
		c->status_in = true;
		maybe_send_status(c);
		break;
	case T_DOWN_CLOSE:
		if (c->cancelled && c->up != NULL)
			grpc_call_cancel(c->up, NULL);
		break;
	case T_REQ_RECV:
		on_req_recv(c);
		break;
	case T_REQ_SEND:
		on_req_send(c, ok);
		break;
	case T_DOWN_MD:
	case T_DOWN_STATUS:
		break;
	case T_RESP_RECV:
		on_resp_recv(c);
		break;
	case T_RESP_SEND:
		on_resp_send(c, ok);
		break;
	case T_KINDS:
		break;
	}
	call_unref(c);
}

/* ---- start-up --------------------------------------------------------------------- */

static void tls_log(void *ctx, const char *level, const char *line)
{
	(void)ctx;
	srv_log_level lvl = SRV_LOG_INFO;
	(void)srv_log_level_parse(level, &lvl);
	srv_log(lvl, line);
}

/* Flags accepted for compatibility that change nothing here: one line each. */
static void log_no_effect(const srv_gp_opts *o)
{
	struct {
		const char *name;
		bool given;
	} ne[] = {
	        {"--metrics-addr", *o->metrics_addr != '\0'},
	        {"--enable-pprof", o->enable_pprof},
	        {"--resolver-prefix", *o->resolver_prefix != '\0'},
	        {"--resolver-ttl", o->resolver_ttl != 0},
	        {"--discovery-srv-name", *o->discovery_srv_name != '\0'},
	        {"--insecure-discovery", o->insecure_discovery},
	        {"--experimental-serializable-ordering", o->serializable_ordering},
	        {"--experimental-leasing-prefix", *o->leasing_prefix != '\0'},
	};
	for (size_t i = 0; i < sizeof ne / sizeof ne[0]; i++)
		if (ne[i].given)
			srv_log_warn("flag has no effect in metastore's grpc-proxy (calls are "
			             "forwarded unchanged)",
			             SRV_LF_STR("flag", ne[i].name));
}

static grpc_arg int_arg(const char *key, int v)
{
	grpc_arg a = {.type = GRPC_ARG_INTEGER, .key = (char *)key};
	a.value.integer = v;
	return a;
}

static grpc_arg str_arg(const char *key, const char *v)
{
	grpc_arg a = {.type = GRPC_ARG_STRING, .key = (char *)key};
	a.value.string = (char *)v;
	return a;
}

static int clamp_int(int64_t v)
{
	return v <= 0 || v > INT_MAX ? -1 : (int)v;
}

/* The signal thread: waits for SIGINT / SIGTERM, then shuts the server down. */
typedef struct sig_ctx {
	gp_proxy *px;
	sigset_t set;
} sig_ctx;

static void *sig_main(void *arg)
{
	sig_ctx *s = arg;
	int sig = 0;
	if (sigwait(&s->set, &sig) != 0)
		return NULL;
	if (sig == SIGUSR1) /* srv_gp_main's own wake-up at the end */
		return NULL;
	srv_log_info("received signal; shutting down", SRV_LF_STR("signal", strsignal(sig)));
	grpc_server_shutdown_and_notify(s->px->server, s->px->cq, &s->px->shutdown_tag);
	grpc_server_cancel_all_calls(s->px->server);
	return NULL;
}

/* Fatal start-up error: etcd prints it and exits 1. */
static int die(const char *what, const char *err)
{
	fprintf(stderr, "%s%s%s\n", what ? what : "", what ? ": " : "", err);
	return 1;
}

int srv_gp_main(int argc, char **argv)
{
	srv_gp_opts o;
	char err[1024] = "";
	int rc = srv_gp_parse(argc, argv, &o, err, sizeof err);
	if (rc == SRV_GP_HELP) {
		srv_gp_usage(stdout);
		srv_gp_opts_free(&o);
		return 0;
	}
	if (rc != 0) {
		/* cobra's "Error: ..." and etcd's exit status 1. */
		fprintf(stderr, "Error: %s\n", err);
		if (strstr(err, "flag") != NULL)
			srv_gp_usage(stderr);
		srv_gp_opts_free(&o);
		return 1;
	}
	/* Signals: every thread (the core's too, so before grpc_init) blocks them;
	 * one thread waits for them. */
	sig_ctx sc = {0};
	sigemptyset(&sc.set);
	sigaddset(&sc.set, SIGINT);
	sigaddset(&sc.set, SIGTERM);
	sigaddset(&sc.set, SIGUSR1);
	pthread_sigmask(SIG_BLOCK, &sc.set, NULL);
	gp_proxy px = {0};
	bool drained = false;
	rc = 1;
	if (srv_log_setup("zap", o.debug ? "debug" : "info", "default", err, sizeof err) != 0) {
		rc = die(NULL, err);
		goto out_opts;
	}
	if (*o.namespace_ != '\0') {
		rc = die("--namespace",
		         "not supported by metastore's grpc-proxy (it forwards calls unchanged "
		         "and cannot rewrite keys); give the prefix to the clients instead");
		goto out_opts;
	}
	if (*o.discovery_srv != '\0') {
		rc = die("--discovery-srv",
		         "DNS SRV discovery is not supported by metastore's grpc-proxy; give "
		         "--endpoints");
		goto out_opts;
	}
	log_no_effect(&o);

	/* The endpoints and the TLS to them (etcd's newClientCfg). */
	char target[4096], authority[300];
	bool up_https = false;
	if (srv_gp_target(o.endpoints, target, sizeof target, authority, sizeof authority,
	                  &up_https, err, sizeof err) != 0) {
		rc = die(NULL, err);
		goto out_opts;
	}
	bool up_tls = *o.cert != '\0' || *o.key != '\0' || *o.cacert != '\0' ||
	              o.insecure_skip_tls_verify || up_https;
	if (*o.cert != '\0' && srv_gp_check_cert(o.cert, err, sizeof err) != 0) {
		rc = die(NULL, err);
		goto out_opts;
	}

	/* The listen side's TLS (etcd: cipher suites, then auto-TLS). */
	if (*o.listen_cipher_suites != '\0' &&
	    srv_tls_use_cipher_suites(o.listen_cipher_suites, tls_log, NULL, err, sizeof err) != 0) {
		rc = die("--listen-cipher-suites", err);
		goto out_opts;
	}
	if (*o.listen_cipher_suites != '\0' && up_tls)
		srv_log_warn("--listen-cipher-suites also applies to TLS towards --endpoints "
		             "(the gRPC core's cipher list is process-wide)");
	char listen_url[512];
	snprintf(listen_url, sizeof listen_url, "https://%s", o.listen_addr);
	const char *urls[1] = {listen_url};
	char proxy_dir[PATH_MAX];
	snprintf(proxy_dir, sizeof proxy_dir, "%s", o.data_dir);
	srv_tls_side side = {
	        .side = "proxy", /* auto-TLS: <data-dir>/fixtures/proxy, as etcd */
	        .cert_file = o.cert_file,
	        .key_file = o.key_file,
	        .trusted_ca_file = o.trusted_ca_file,
	        .crl_file = o.client_crl_file,
	        .auto_tls = o.auto_tls,
	        .data_dir = proxy_dir,
	        .listen_urls = urls,
	        .n_listen = *o.cert_file || *o.key_file || o.auto_tls ? 1 : 0,
	        .log = tls_log,
	};
	srv_tls *ltls = NULL;
	if (srv_tls_setup(&side, &ltls, err, sizeof err) != 0) {
		rc = die(NULL, err);
		goto out_opts;
	}
	if (ltls != NULL) {
		char desc[1024];
		srv_tls_describe(ltls, desc, sizeof desc);
		srv_log_info("gRPC proxy server TLS", SRV_LF_STR("tls-info", desc));
	}

	grpc_init();
	px.shutdown_tag = (gp_tag){T_SHUTDOWN, NULL};
	px.advertise = o.advertise_client_url;
	px.cq = grpc_completion_queue_create_for_next(NULL);

	/* The channel to the endpoints. */
	grpc_channel_credentials *ccreds = NULL;
	if (up_tls) {
		srv_tls_dial d = {.cert_flag = "--cert",
		                  .cert_file = o.cert,
		                  .key_flag = "--key",
		                  .key_file = o.key,
		                  .ca_flag = "--cacert",
		                  .ca_file = o.cacert,
		                  .skip_verify = o.insecure_skip_tls_verify};
		ccreds = srv_tls_dial_creds(&d, err, sizeof err);
		if (ccreds == NULL) {
			rc = die(NULL, err);
			goto out_grpc;
		}
		if (o.insecure_skip_tls_verify)
			srv_log_warn("--insecure-skip-tls-verify was given, this grpc proxy process "
			             "skips authentication of etcd server TLS certificates. This "
			             "option should be enabled only for testing purposes.");
		char desc[1024];
		snprintf(desc, sizeof desc, "cert = %s, key = %s, trusted-ca = %s", o.cert, o.key,
		         o.cacert);
		srv_log_info("gRPC proxy client TLS", SRV_LF_STR("tls-info", desc));
	} else {
		ccreds = grpc_insecure_credentials_create();
	}
	grpc_arg cargs[8];
	size_t nc = 0;
	cargs[nc++] = int_arg(GRPC_ARG_MAX_SEND_MESSAGE_LENGTH, clamp_int(o.max_send_bytes));
	cargs[nc++] = int_arg(GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH, clamp_int(o.max_recv_bytes));
	/* Retries would buffer messages; the client retries, as with etcd's proxy. */
	cargs[nc++] = int_arg(GRPC_ARG_ENABLE_RETRIES, 0);
	cargs[nc++] = str_arg(GRPC_ARG_LB_POLICY_NAME, "round_robin");
	cargs[nc++] = str_arg(GRPC_ARG_DEFAULT_AUTHORITY, authority);
	if (up_tls)
		cargs[nc++] = str_arg(GRPC_SSL_TARGET_NAME_OVERRIDE_ARG, authority);
	grpc_channel_args cch = {.num_args = nc, .args = cargs};
	px.channel = grpc_channel_create(target, ccreds, &cch);
	grpc_channel_credentials_release(ccreds);

	/* The server. */
	grpc_arg sargs[4];
	size_t ns = 0;
	sargs[ns++] = int_arg(GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH, -1);
	sargs[ns++] = int_arg(GRPC_ARG_MAX_SEND_MESSAGE_LENGTH, -1);
	if (o.max_concurrent_streams < INT_MAX)
		sargs[ns++] = int_arg(GRPC_ARG_MAX_CONCURRENT_STREAMS,
		                      (int)o.max_concurrent_streams);
	grpc_channel_args sch = {.num_args = ns, .args = sargs};
	px.server = grpc_server_create(&sch, NULL);
	grpc_server_register_completion_queue(px.server, px.cq, NULL);
	grpc_server_credentials *screds =
	        ltls != NULL ? srv_tls_server_creds(ltls) : grpc_insecure_server_credentials_create();
	int port = screds != NULL ? grpc_server_add_http2_port(px.server, o.listen_addr, screds) : 0;
	if (screds != NULL)
		grpc_server_credentials_release(screds);
	if (port == 0) {
		rc = 1;
		fprintf(stderr, "listen tcp %s: cannot listen (address in use or invalid)\n",
		        o.listen_addr);
		grpc_server_destroy(px.server);
		grpc_channel_destroy(px.channel);
		goto out_grpc;
	}
	srv_log_info("listening for gRPC proxy client requests",
	             SRV_LF_STR("address", o.listen_addr));

	sc.px = &px;
	pthread_t sig_thread;
	bool have_sig = pthread_create(&sig_thread, NULL, sig_main, &sc) == 0;

	grpc_server_start(px.server);
	arm(&px);
	srv_log_info("started gRPC proxy", SRV_LF_STR("address", o.listen_addr));
	char eps_field[4096];
	snprintf(eps_field, sizeof eps_field, "%s", o.endpoints);
	srv_log_info("gRPC proxy endpoints", SRV_LF_STR("endpoints", eps_field),
	             SRV_LF_STR("target", target));

	bool cq_shut = false;
	for (;;) {
		grpc_event ev = grpc_completion_queue_next(px.cq, gpr_inf_future(GPR_CLOCK_REALTIME),
		                                           NULL);
		if (ev.type == GRPC_QUEUE_SHUTDOWN) {
			drained = true;
			break;
		}
		if (ev.type != GRPC_OP_COMPLETE)
			continue;
		gp_tag *t = ev.tag;
		if (t->kind == T_SHUTDOWN)
			px.stopping = true;
		dispatch(&px, t, ev.success != 0);
		if (px.shut_down && px.live == 0 && !cq_shut) {
			grpc_channel_destroy(px.channel);
			px.channel = NULL;
			grpc_completion_queue_shutdown(px.cq);
			cq_shut = true;
		}
	}
	grpc_server_destroy(px.server);
	if (px.channel != NULL)
		grpc_channel_destroy(px.channel);
	if (have_sig) {
		pthread_kill(sig_thread, SIGUSR1);
		pthread_join(sig_thread, NULL);
	}
	srv_log_info("stop listening gRPC proxy client requests",
	             SRV_LF_STR("address", o.listen_addr));
	rc = 0;
out_grpc:
	if (!drained) {
		grpc_completion_queue_shutdown(px.cq);
		while (grpc_completion_queue_next(px.cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL)
		               .type != GRPC_QUEUE_SHUTDOWN)
			;
	}
	grpc_completion_queue_destroy(px.cq);
	grpc_shutdown();
	srv_tls_unref(ltls);
out_opts:
	srv_gp_opts_free(&o);
	return rc;
}
