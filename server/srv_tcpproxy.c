/*
 * srv_tcpproxy.c: etcd's gateway, a TCP proxy in front of a cluster (see
 * srv_tcpproxy.h). One thread accepts; each connection gets a thread that
 * picks and dials an endpoint and then copies client-to-endpoint bytes, and a
 * second one that copies endpoint-to-client bytes. An end of stream is passed
 * on as a half-close (shutdown for writing) and the other direction goes on;
 * an error on either side shuts both sockets down, so the other copy ends
 * too. The last of the two threads closes the sockets. Endpoints are resolved at each dial, so
 * a name that moves is followed.
 */
#include "server/srv_tcpproxy.h"

#include "server/srv_config.h"
#include "server/srv_log.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define TP_DEFAULT_LISTEN "127.0.0.1:23790"
#define TP_DEFAULT_ENDPOINTS "127.0.0.1:2379"
#define TP_DEFAULT_RETRY "1m"
#define TP_COPY_BYTES (32u << 10)

typedef struct tp_remote {
	char *host;
	char *port;
	char *addr;             /* host:port as given (brackets kept) */
	uint64_t down_until_ms; /* left out of picks until then; 0 = active */
} tp_remote;

typedef struct tp_conn {
	struct srv_tp *tp;
	int in;  /* the client's socket */
	int out; /* the endpoint's socket, -1 until dialled */
	int live; /* copy threads still running (guarded by tp->mu) */
	struct tp_conn *prev, *next;
} tp_conn;

struct srv_tp {
	int lfd;
	int port;
	int wake[2]; /* written by srv_tp_stop to end the accept loop */
	pthread_t acceptor;
	int64_t retry_ms;

	pthread_mutex_t mu; /* guards everything below */
	pthread_cond_t idle; /* signalled when conns becomes empty */
	tp_remote *remotes;
	size_t nremotes;
	size_t next_pick;
	tp_conn *conns;
	bool stopping;
};

/* Go's error texts start in lower case ("connection refused"). */
static void go_strerror(int e, char *buf, size_t len)
{
	snprintf(buf, len, "%s", strerror(e));
	if (buf[0] >= 'A' && buf[0] <= 'Z' && !(buf[1] >= 'A' && buf[1] <= 'Z'))
		buf[0] = (char)(buf[0] - 'A' + 'a');
}

/*
 * Split "host:port" or "[v6]:port" as Go's net.SplitHostPort: malloc'd host
 * (without brackets) and port. -1 when @s has no port or stray brackets.
 */
static int split_host_port(const char *s, char **host, char **port)
{
	const char *colon = strrchr(s, ':');
	if (colon == NULL)
		return -1;
	const char *h = s, *he = colon;
	if (s[0] == '[') {
		const char *close = strchr(s, ']');
		if (close == NULL || close + 1 != colon)
			return -1;
		h = s + 1;
		he = close;
	} else if (memchr(s, ':', (size_t)(colon - s)) != NULL || strchr(s, '[') != NULL ||
	           strchr(s, ']') != NULL) {
		return -1; /* "too many colons" */
	}
	*host = strndup(h, (size_t)(he - h));
	*port = strdup(colon + 1);
	if (*host == NULL || *port == NULL) {
		free(*host);
		free(*port);
		return -1;
	}
	return 0;
}

/* etcd's stripSchema: "http://h:p" → "h:p"; anything else as it is. */
static const char *strip_scheme(const char *ep)
{
	const char *sep = strstr(ep, "://");
	return sep != NULL && sep[3] != '\0' ? sep + 3 : ep;
}

/* Every address @host resolves to (numeric strings), for the self-check. */
static int lookup_host(const char *host, char ***addrs, size_t *n)
{
	struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *res = NULL;
	*addrs = NULL;
	*n = 0;
	if (getaddrinfo(host[0] ? host : NULL, "0", &hints, &res) != 0)
		return -1;
	for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
		char buf[NI_MAXHOST];
		if (getnameinfo(ai->ai_addr, ai->ai_addrlen, buf, sizeof buf, NULL, 0,
		                NI_NUMERICHOST) != 0)
			continue;
		char **grown = realloc(*addrs, (*n + 1) * sizeof(*grown));
		if (grown == NULL)
			break;
		*addrs = grown;
		if (((*addrs)[*n] = strdup(buf)) != NULL)
			(*n)++;
	}
	freeaddrinfo(res);
	return 0;
}

static void free_strs(char **v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(v[i]);
	free(v);
}

static void free_remotes(srv_tp *tp)
{
	for (size_t i = 0; i < tp->nremotes; i++) {
		free(tp->remotes[i].host);
		free(tp->remotes[i].port);
		free(tp->remotes[i].addr);
	}
	free(tp->remotes);
	tp->remotes = NULL;
	tp->nremotes = 0;
}

/* Parse the endpoint list into tp->remotes, with etcd's checks against the
 * listen address (@lport, resolving to @laddrs). */
static int parse_endpoints(srv_tp *tp, const char *list, const char *lport, char **laddrs,
                           size_t nladdrs, const char *listen_addr, char *err, size_t errlen)
{
	char *copy = strdup(list);
	if (copy == NULL) {
		srv_errf(err, errlen, "out of memory");
		return -1;
	}
	int rc = 0;
	char *save = NULL;
	for (char *tok = strtok_r(copy, ",", &save); tok && rc == 0; tok = strtok_r(NULL, ",", &save)) {
		const char *ep = strip_scheme(tok);
		tp_remote r = {0};
		if (split_host_port(ep, &r.host, &r.port) != 0) {
			srv_errf(err, errlen, "error parsing endpoint \"%s\"", ep);
			rc = -1;
			break;
		}
		char **eaddrs;
		size_t ne;
		if (lookup_host(r.host, &eaddrs, &ne) != 0 || ne == 0) {
			srv_errf(err, errlen, "failed to resolve endpoint host: %s", r.host);
			free(r.host);
			free(r.port);
			rc = -1;
			break;
		}
		if (strtol(r.port, NULL, 10) == strtol(lport, NULL, 10))
			for (size_t i = 0; i < ne && rc == 0; i++)
				for (size_t j = 0; j < nladdrs && rc == 0; j++)
					if (strcmp(eaddrs[i], laddrs[j]) == 0) {
						srv_errf(err, errlen,
						         "SRV or endpoint (%s:%s->%s:%s) should not "
						         "resolve to the gateway listen addr (%s)",
						         r.host, r.port, eaddrs[i], r.port, listen_addr);
						rc = -1;
					}
		free_strs(eaddrs, ne);
		r.addr = strdup(ep);
		tp_remote *grown = realloc(tp->remotes, (tp->nremotes + 1) * sizeof(*grown));
		if (rc != 0 || r.addr == NULL || grown == NULL) {
			if (rc == 0)
				srv_errf(err, errlen, "out of memory");
			free(r.host);
			free(r.port);
			free(r.addr);
			if (grown != NULL)
				tp->remotes = grown;
			rc = -1;
			break;
		}
		tp->remotes = grown;
		tp->remotes[tp->nremotes++] = r;
	}
	free(copy);
	if (rc == 0 && tp->nremotes == 0) {
		srv_errf(err, errlen, "no endpoints found");
		rc = -1;
	}
	return rc;
}

static int listen_on(srv_tp *tp, const char *host, const char *port, const char *addr, char *err,
                     size_t errlen)
{
	struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE}, *res = NULL;
	int gai = getaddrinfo(host[0] ? host : NULL, port, &hints, &res);
	if (gai != 0) {
		srv_errf(err, errlen, "listen tcp %s: %s", addr, gai_strerror(gai));
		return -1;
	}
	int e = 0;
	const char *what = "socket";
	for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
		int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
		if (fd < 0) {
			e = errno;
			continue;
		}
		int one = 1;
		(void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
		if (bind(fd, ai->ai_addr, ai->ai_addrlen) != 0) {
			e = errno;
			what = "bind";
			close(fd);
			continue;
		}
		if (listen(fd, 128) != 0) {
			e = errno;
			what = "listen";
			close(fd);
			continue;
		}
		struct sockaddr_storage ss;
		socklen_t sl = sizeof ss;
		if (getsockname(fd, (struct sockaddr *)&ss, &sl) == 0)
			tp->port = ntohs(ss.ss_family == AF_INET6
			                         ? ((struct sockaddr_in6 *)&ss)->sin6_port
			                         : ((struct sockaddr_in *)&ss)->sin_port);
		tp->lfd = fd;
		freeaddrinfo(res);
		return 0;
	}
	freeaddrinfo(res);
	char es[128];
	go_strerror(e, es, sizeof es);
	srv_errf(err, errlen, "listen tcp %s: %s: %s", addr, what, es);
	return -1;
}

/* ---- connections ----------------------------------------------------- */

/* The next active endpoint, round-robin (etcd's pick without SRV weights);
 * NULL when every one is left out. An endpoint whose delay has passed is
 * active again. Under tp->mu. */
static tp_remote *pick_locked(srv_tp *tp, uint64_t now)
{
	for (size_t i = 0; i < tp->nremotes; i++) {
		tp_remote *r = &tp->remotes[tp->next_pick++ % tp->nremotes];
		if (r->down_until_ms <= now)
			return r;
	}
	return NULL;
}

static int dial(const tp_remote *r, int *err)
{
	struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *res = NULL;
	int gai = getaddrinfo(r->host, r->port, &hints, &res);
	if (gai != 0) {
		*err = gai == EAI_SYSTEM ? errno : EHOSTUNREACH;
		return -1;
	}
	int fd = -1;
	*err = ECONNREFUSED;
	for (struct addrinfo *ai = res; ai && fd < 0; ai = ai->ai_next) {
		fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
		if (fd < 0) {
			*err = errno;
			continue;
		}
		if (connect(fd, ai->ai_addr, ai->ai_addrlen) != 0) {
			*err = errno;
			close(fd);
			fd = -1;
		}
	}
	freeaddrinfo(res);
	return fd;
}

/* Dial endpoints until one answers; -1 when none does. */
static int connect_some(srv_tp *tp)
{
	for (;;) {
		uint64_t now = (uint64_t)srv_mono_ms();
		pthread_mutex_lock(&tp->mu);
		tp_remote *r = tp->stopping ? NULL : pick_locked(tp, now);
		bool was_down = r != NULL && r->down_until_ms != 0;
		pthread_mutex_unlock(&tp->mu);
		if (r == NULL)
			return -1;
		int e;
		int fd = dial(r, &e);
		pthread_mutex_lock(&tp->mu);
		r->down_until_ms = fd >= 0 ? 0 : (uint64_t)srv_mono_ms() + (uint64_t)tp->retry_ms;
		pthread_mutex_unlock(&tp->mu);
		if (fd >= 0) {
			if (was_down)
				srv_log_info("activated", SRV_LF_STR("address", r->addr));
			return fd;
		}
		char es[160], full[256];
		go_strerror(e, es, sizeof es);
		snprintf(full, sizeof full, "dial tcp %s: connect: %s", r->addr, es);
		srv_log_warn("deactivated endpoint", SRV_LF_STR("address", r->addr),
		             SRV_LF_DUR_MS("interval", tp->retry_ms), SRV_LF_ERR(full));
	}
}

/* Shut both sockets down so that a copy blocked on either returns. */
static void conn_cut(tp_conn *c)
{
	shutdown(c->in, SHUT_RDWR);
	if (c->out >= 0)
		shutdown(c->out, SHUT_RDWR);
}

/* One copy thread is done: the last one frees the connection. */
static void conn_release(tp_conn *c)
{
	srv_tp *tp = c->tp;
	pthread_mutex_lock(&tp->mu);
	bool last = --c->live == 0;
	if (last) {
		if (c->prev)
			c->prev->next = c->next;
		else
			tp->conns = c->next;
		if (c->next)
			c->next->prev = c->prev;
		if (tp->conns == NULL)
			pthread_cond_broadcast(&tp->idle);
	}
	pthread_mutex_unlock(&tp->mu);
	if (last) {
		close(c->in);
		if (c->out >= 0)
			close(c->out);
		free(c);
	}
}

/*
 * Copy @src to @dst until @src's end of stream, then half-close @dst; on an
 * error on either side (or no memory), shut down both of @c's sockets.
 */
static void copy_bytes(tp_conn *c, int src, int dst)
{
	char *buf = malloc(TP_COPY_BYTES);
	bool eof = false;
	while (buf != NULL) {
		ssize_t n = recv(src, buf, TP_COPY_BYTES, 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			eof = n == 0;
			break;
		}
		ssize_t off = 0;
		while (off < n) {
			ssize_t w = send(dst, buf + off, (size_t)(n - off), MSG_NOSIGNAL);
			if (w < 0 && errno == EINTR)
				continue;
			if (w <= 0)
				break;
			off += w;
		}
		if (off < n)
			break;
	}
	free(buf);
	if (eof) {
		shutdown(dst, SHUT_WR);
		return;
	}
	pthread_mutex_lock(&c->tp->mu); /* srv_tp_stop cuts under it too */
	conn_cut(c);
	pthread_mutex_unlock(&c->tp->mu);
}

static void *copy_back_main(void *arg)
{
	tp_conn *c = arg;
	copy_bytes(c, c->out, c->in);
	conn_release(c);
	return NULL;
}

static void *conn_main(void *arg)
{
	tp_conn *c = arg;
	int out = connect_some(c->tp);
	pthread_mutex_lock(&c->tp->mu);
	c->out = out;
	bool go = out >= 0 && !c->tp->stopping;
	if (go)
		c->live++;
	pthread_mutex_unlock(&c->tp->mu);
	pthread_t th;
	pthread_attr_t attr;
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	if (go && pthread_create(&th, &attr, copy_back_main, c) != 0) {
		pthread_mutex_lock(&c->tp->mu);
		c->live--;
		pthread_mutex_unlock(&c->tp->mu);
		go = false;
	}
	pthread_attr_destroy(&attr);
	if (go)
		copy_bytes(c, c->in, c->out);
	conn_release(c);
	return NULL;
}

static void start_conn(srv_tp *tp, int fd)
{
	tp_conn *c = calloc(1, sizeof(*c));
	if (c == NULL) {
		close(fd);
		return;
	}
	c->tp = tp;
	c->in = fd;
	c->out = -1;
	c->live = 1;
	pthread_mutex_lock(&tp->mu);
	c->next = tp->conns;
	if (tp->conns)
		tp->conns->prev = c;
	tp->conns = c;
	pthread_mutex_unlock(&tp->mu);
	pthread_t th;
	pthread_attr_t attr;
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	if (pthread_create(&th, &attr, conn_main, c) != 0)
		conn_release(c);
	pthread_attr_destroy(&attr);
}

static void *accept_main(void *arg)
{
	srv_tp *tp = arg;
	for (;;) {
		struct pollfd pf[2] = {{.fd = tp->lfd, .events = POLLIN}, {.fd = tp->wake[0], .events = POLLIN}};
		if (poll(pf, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		if (pf[1].revents)
			break;
		if (!pf[0].revents)
			continue;
		int fd = accept4(tp->lfd, NULL, NULL, SOCK_CLOEXEC);
		if (fd < 0) {
			if (errno == EMFILE || errno == ENFILE || errno == ENOMEM || errno == ENOBUFS)
				usleep(10000); /* out of descriptors: let connections finish */
			continue;
		}
		start_conn(tp, fd);
	}
	return NULL;
}

/* ---- the gateway ----------------------------------------------------- */

int srv_tp_start(const srv_tp_config *cfg, srv_tp **out, char *err, size_t errlen)
{
	*out = NULL;
	srv_tp *tp = calloc(1, sizeof(*tp));
	if (tp == NULL) {
		srv_errf(err, errlen, "out of memory");
		return -1;
	}
	tp->lfd = -1;
	tp->wake[0] = tp->wake[1] = -1;
	tp->retry_ms = cfg->retry_delay_ms;
	pthread_mutex_init(&tp->mu, NULL);
	pthread_cond_init(&tp->idle, NULL);

	char *lhost = NULL, *lport = NULL, **laddrs = NULL;
	size_t nl = 0;
	int rc = -1;
	if (split_host_port(cfg->listen_addr, &lhost, &lport) != 0) {
		srv_errf(err, errlen, "failed to validate listen address: %s", cfg->listen_addr);
	} else if (lookup_host(lhost, &laddrs, &nl) != 0) {
		srv_errf(err, errlen, "failed to resolve listen host: %s", lhost);
	} else if (parse_endpoints(tp, cfg->endpoints, lport, laddrs, nl, cfg->listen_addr, err,
	                           errlen) == 0 &&
	           listen_on(tp, lhost, lport, cfg->listen_addr, err, errlen) == 0) {
		rc = 0;
	}
	free(lhost);
	free(lport);
	free_strs(laddrs, nl);
	if (rc == 0 && pipe2(tp->wake, O_CLOEXEC) != 0) {
		srv_errf(err, errlen, "pipe: %s", strerror(errno));
		rc = -1;
	}
	if (rc == 0 && pthread_create(&tp->acceptor, NULL, accept_main, tp) != 0) {
		srv_errf(err, errlen, "cannot start the accept thread");
		rc = -1;
	}
	if (rc != 0) {
		if (tp->lfd >= 0)
			close(tp->lfd);
		for (int i = 0; i < 2; i++)
			if (tp->wake[i] >= 0)
				close(tp->wake[i]);
		free_remotes(tp);
		pthread_mutex_destroy(&tp->mu);
		pthread_cond_destroy(&tp->idle);
		free(tp);
		return -1;
	}
	const char **eps = calloc(tp->nremotes, sizeof(*eps));
	for (size_t i = 0; eps != NULL && i < tp->nremotes; i++)
		eps[i] = tp->remotes[i].addr;
	srv_log_info("ready to proxy client requests", SRV_LF_STRS("endpoints", eps, eps ? tp->nremotes : 0));
	free(eps);
	*out = tp;
	return 0;
}

int srv_tp_port(const srv_tp *tp)
{
	return tp->port;
}

void srv_tp_stop(srv_tp *tp)
{
	if (tp == NULL)
		return;
	ssize_t w;
	do
		w = write(tp->wake[1], "x", 1);
	while (w < 0 && errno == EINTR);
	pthread_join(tp->acceptor, NULL);
	close(tp->lfd);
	pthread_mutex_lock(&tp->mu);
	tp->stopping = true;
	for (tp_conn *c = tp->conns; c; c = c->next)
		conn_cut(c);
	while (tp->conns != NULL)
		pthread_cond_wait(&tp->idle, &tp->mu);
	pthread_mutex_unlock(&tp->mu);
	close(tp->wake[0]);
	close(tp->wake[1]);
	free_remotes(tp);
	pthread_mutex_destroy(&tp->mu);
	pthread_cond_destroy(&tp->idle);
	free(tp);
}

static void usage(FILE *f)
{
	fputs("Usage:\n"
	      "  metastore gateway start [flags]\n\n"
	      "start the gateway: a TCP proxy to the endpoints (as etcd's)\n\n"
	      "Flags:\n"
	      "      --discovery-srv string        not supported by metastore (give --endpoints)\n"
	      "      --discovery-srv-name string   not supported by metastore\n"
	      "      --endpoints strings           comma separated etcd cluster endpoints "
	      "(default [127.0.0.1:2379])\n"
	      "      --insecure-discovery          no effect (DNS discovery only)\n"
	      "      --listen-addr string          listen address (default \"127.0.0.1:23790\")\n"
	      "      --retry-delay duration        duration of delay before retrying failed "
	      "endpoints (default 1m0s)\n"
	      "      --trusted-ca-file string      no effect (DNS discovery only)\n",
	      f);
}

int srv_tp_main(int argc, char **argv)
{
	const char *listen_addr = TP_DEFAULT_LISTEN, *endpoints = TP_DEFAULT_ENDPOINTS;
	const char *retry = TP_DEFAULT_RETRY, *srv_dom = NULL, *srv_name = NULL, *ca = NULL;
	const char *cmd = NULL;
	bool insecure = false, help = false;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		if (srv_flag_value(argc, argv, &i, "listen-addr", &listen_addr) ||
		    srv_flag_value(argc, argv, &i, "endpoints", &endpoints) ||
		    srv_flag_value(argc, argv, &i, "retry-delay", &retry) ||
		    srv_flag_value(argc, argv, &i, "discovery-srv-name", &srv_name) ||
		    srv_flag_value(argc, argv, &i, "discovery-srv", &srv_dom) ||
		    srv_flag_value(argc, argv, &i, "trusted-ca-file", &ca) ||
		    srv_flag_bool(a, "insecure-discovery", &insecure) || srv_flag_bool(a, "help", &help) ||
		    srv_flag_bool(a, "h", &help))
			continue;
		if (a[0] == '-') {
			fprintf(stderr, "Error: unknown flag: %s\n", a);
			usage(stderr);
			return 2;
		}
		if (cmd != NULL) {
			fprintf(stderr, "Error: unexpected argument \"%s\"\n", a);
			return 2;
		}
		cmd = a;
	}
	if (help || cmd == NULL) {
		usage(stdout);
		return 0;
	}
	if (strcmp(cmd, "start") != 0) {
		fprintf(stderr, "Error: unknown command \"%s\" for \"metastore gateway\"\n", cmd);
		usage(stderr);
		return 2;
	}
	int64_t retry_ms;
	if (srv_config_parse_duration_ms(retry, &retry_ms) != 0) {
		fprintf(stderr, "Error: invalid argument \"%s\" for \"--retry-delay\" flag: time: "
		                "invalid duration \"%s\"\n",
		        retry, retry);
		return 2;
	}
	if ((srv_dom != NULL && *srv_dom) || (srv_name != NULL && *srv_name)) {
		fprintf(stderr, "--discovery-srv: DNS discovery is not supported by metastore; give the "
		                "cluster's client URLs with --endpoints\n");
		return 1;
	}
	if (insecure || (ca != NULL && *ca))
		srv_log_info("flag has no effect without --discovery-srv",
		             SRV_LF_STR("flag", insecure ? "insecure-discovery" : "trusted-ca-file"));

	/* SIGTERM / SIGINT are taken by sigwait below, in every thread. */
	sigset_t sigs;
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGINT);
	pthread_sigmask(SIG_BLOCK, &sigs, NULL);
	signal(SIGPIPE, SIG_IGN);

	srv_tp_config cfg = {.listen_addr = listen_addr, .endpoints = endpoints,
	                     .retry_delay_ms = retry_ms};
	char err[512];
	srv_tp *tp;
	if (srv_tp_start(&cfg, &tp, err, sizeof err) != 0) {
		fprintf(stderr, "%s\n", err);
		return 1;
	}
	int sig = 0;
	sigwait(&sigs, &sig);
	srv_log_info("received signal; shutting down", SRV_LF_STR("signal", sig == SIGINT ? "SIGINT" : "SIGTERM"));
	srv_tp_stop(tp);
	return 0;
}
