/*
 * srv_listen.c: the client and metrics listeners (srv_listen.h): one epoll
 * thread accepts, sniffs each new connection with MSG_PEEK (edge-triggered, so
 * peeked bytes that stay in the socket do not wake the loop again), hands it to
 * the gRPC core or to srv_http, and relays TLS gRPC connections to the core's
 * internal TLS listener with splice(2).
 *
 * Every fd in the epoll set carries a pointer to an ev_item {kind, owner}, and
 * the loop is one switch on the kind (the srv_rpc tag habit).
 */
#include "server/srv_listen.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "server/srv_log.h"

#define MAX_URLS    16
#define PEEK_MAX    (5 + 16384) /* one TLS record: enough for any ClientHello */
#define RELAY_CHUNK (64 * 1024)

static const char H2_PREFACE[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
#define H2_PREFACE_LEN (sizeof H2_PREFACE - 1)

typedef enum { EV_LISTENER, EV_SNIFF, EV_RELAY, EV_WAKE } ev_kind;

typedef struct ev_item {
	ev_kind kind;
	void *owner;
} ev_item;

typedef struct lsock {
	ev_item ev;
	int fd; /* -1 for the second URL of a shared address */
	bool tls;
	bool both; /* http:// and https:// share it: a TLS record's first byte picks TLS */
	bool is_unix;
	char *unix_path; /* removed at stop */
	int port;
	char *url;
} lsock;

typedef struct sniff_conn {
	ev_item ev;
	int fd;
	bool tls;
	bool both; /* tls not decided yet (a shared address) */
	uint64_t deadline_ms;
	struct sniff_conn *prev, *next;
} sniff_conn;

/* One direction of a relay: bytes from src wait in a pipe until dst takes them. */
typedef struct relay_dir {
	int pipe_r, pipe_w;
	size_t in_pipe;
	bool eof;  /* src said EOF; dst shut for writing once the pipe drained */
	bool done; /* eof and drained */
} relay_dir;

typedef struct relay {
	ev_item ev_a, ev_b; /* a: the client, b: the core's internal socket */
	int fd_a, fd_b;
	uint32_t mask_a, mask_b; /* epoll interest now */
	relay_dir ab, ba;
	bool closed; /* closed this round; freed after it (two fds, two events) */
	struct relay *prev, *next;
} relay;

struct srv_listen {
	srv_listen_config cfg;
	char *tls_grpc_addr;
	lsock socks[MAX_URLS];
	size_t n_socks;
	srv_rpc *rpc;
	srv_http *http;
	int ep;
	int wake_fd;
	ev_item wake_ev;
	pthread_t thread;
	bool started;
	atomic_bool stop;
	sniff_conn *sniffs;
	relay *relays;
	relay *dead; /* closed this round, freed at its end */
};

/* ---- sniffing ---------------------------------------------------------------------- */

srv_sniff srv_listen_sniff_plain(const unsigned char *p, size_t n)
{
	size_t k = n < H2_PREFACE_LEN ? n : H2_PREFACE_LEN;
	if (memcmp(p, H2_PREFACE, k) != 0)
		return SRV_SNIFF_HTTP;
	return k == H2_PREFACE_LEN ? SRV_SNIFF_GRPC : SRV_SNIFF_MORE;
}

static unsigned be16(const unsigned char *p)
{
	return (unsigned)p[0] << 8 | p[1];
}

/* The ALPN verdict on the extensions block [p, end). */
static srv_sniff alpn_verdict(const unsigned char *p, const unsigned char *end)
{
	while (end - p >= 4) {
		unsigned type = be16(p), len = be16(p + 2);
		p += 4;
		if ((size_t)(end - p) < len)
			break;
		if (type == 16 && len >= 2) { /* application_layer_protocol_negotiation */
			const unsigned char *q = p + 2, *qe = p + 2 + be16(p);
			if (qe > p + len)
				qe = p + len;
			bool any = false;
			while (q < qe) {
				unsigned nl = *q++;
				if ((size_t)(qe - q) < nl)
					break;
				if (nl == 8 && memcmp(q, "http/1.1", 8) == 0)
					return SRV_SNIFF_HTTP;
				if (nl == 8 && memcmp(q, "http/1.0", 8) == 0)
					return SRV_SNIFF_HTTP;
				any = true;
				q += nl;
			}
			return any ? SRV_SNIFF_GRPC : SRV_SNIFF_HTTP;
		}
		p += len;
	}
	return SRV_SNIFF_HTTP; /* no ALPN: not a gRPC client */
}

srv_sniff srv_listen_sniff_tls(const unsigned char *p, size_t n)
{
	if (n < 1)
		return SRV_SNIFF_MORE;
	if (p[0] != 0x16) /* not a handshake record */
		return SRV_SNIFF_HTTP;
	if (n < 5)
		return SRV_SNIFF_MORE;
	size_t rl = be16(p + 3);
	if (p[1] != 3 || rl > 16384 + 2048 || rl < 4)
		return SRV_SNIFF_HTTP;
	if (n < 5 + rl)
		return SRV_SNIFF_MORE;
	const unsigned char *h = p + 5, *end = p + 5 + rl;
	if (h[0] != 1) /* not a ClientHello */
		return SRV_SNIFF_HTTP;
	size_t hl = (size_t)h[1] << 16 | (size_t)h[2] << 8 | h[3];
	if (hl + 4 < rl)
		end = h + 4 + hl;
	const unsigned char *q = h + 4 + 2 + 32; /* version, random */
	if (q + 1 > end)
		return SRV_SNIFF_HTTP;
	q += 1 + *q; /* session id */
	if (q + 2 > end)
		return SRV_SNIFF_HTTP;
	q += 2 + be16(q); /* cipher suites */
	if (q + 1 > end)
		return SRV_SNIFF_HTTP;
	q += 1 + *q; /* compression methods */
	if (q + 2 > end)
		return SRV_SNIFF_HTTP;
	const unsigned char *ee = q + 2 + be16(q);
	if (ee > end)
		ee = end;
	return alpn_verdict(q + 2, ee);
}

/* ---- binding ------------------------------------------------------------------------- */

static int set_nonblock(int fd)
{
	int fl = fcntl(fd, F_GETFL);
	return fl < 0 ? -1 : fcntl(fd, F_SETFL, fl | O_NONBLOCK);
}

static int bind_unix(lsock *s, const char *path, char *why, size_t whylen)
{
	struct sockaddr_un sa;
	memset(&sa, 0, sizeof sa);
	sa.sun_family = AF_UNIX;
	if (strlen(path) >= sizeof sa.sun_path) {
		srv_errf(why, whylen, "path too long");
		return -1;
	}
	strcpy(sa.sun_path, path);
	unlink(path); /* a stale socket from an earlier run, as etcd's unix listener */
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof sa) != 0 || listen(fd, 1024) != 0) {
		srv_errf(why, whylen, "%s", strerror(errno));
		if (fd >= 0)
			close(fd);
		return -1;
	}
	s->fd = fd;
	s->is_unix = true;
	s->unix_path = strdup(path);
	return 0;
}

static int bind_tcp(lsock *s, const char *hostport, char *why, size_t whylen)
{
	char host[256];
	const char *colon = strrchr(hostport, ':');
	if (colon == NULL) {
		srv_errf(why, whylen, "missing port");
		return -1;
	}
	size_t hl = (size_t)(colon - hostport);
	const char *hp = hostport;
	if (hl >= 2 && hp[0] == '[' && hp[hl - 1] == ']') {
		hp++;
		hl -= 2;
	}
	if (hl >= sizeof host) {
		srv_errf(why, whylen, "host too long");
		return -1;
	}
	memcpy(host, hp, hl);
	host[hl] = '\0';
	const char *port = colon + 1;
	/* the port may be followed by a path ("http://h:p/") */
	char portbuf[16];
	size_t pl = strcspn(port, "/");
	if (pl == 0 || pl >= sizeof portbuf) {
		srv_errf(why, whylen, "bad port");
		return -1;
	}
	memcpy(portbuf, port, pl);
	portbuf[pl] = '\0';
	struct addrinfo hints, *res = NULL;
	memset(&hints, 0, sizeof hints);
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
	int gr = getaddrinfo(hl ? host : NULL, portbuf, &hints, &res);
	if (gr != 0) {
		srv_errf(why, whylen, "%s", gai_strerror(gr));
		return -1;
	}
	int fd = -1, e = 0;
	for (struct addrinfo *ai = res; ai != NULL; ai = ai->ai_next) {
		fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		if (fd < 0) {
			e = errno;
			continue;
		}
		int one = 1;
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
		if (bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 && listen(fd, 1024) == 0)
			break;
		e = errno;
		close(fd);
		fd = -1;
	}
	freeaddrinfo(res);
	if (fd < 0) {
		srv_errf(why, whylen, "%s", strerror(e ? e : EADDRNOTAVAIL));
		return -1;
	}
	struct sockaddr_storage ss;
	socklen_t len = sizeof ss;
	if (getsockname(fd, (struct sockaddr *)&ss, &len) == 0)
		s->port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
		                                         : ((struct sockaddr_in *)&ss)->sin_port);
	s->fd = fd;
	return 0;
}

static void lsock_close(lsock *s)
{
	if (s->fd >= 0)
		close(s->fd);
	s->fd = -1;
	if (s->unix_path != NULL)
		unlink(s->unix_path);
	free(s->unix_path);
	free(s->url);
	s->unix_path = NULL;
	s->url = NULL;
}

static void listen_free(srv_listen *l)
{
	for (size_t i = 0; i < l->n_socks; i++)
		lsock_close(&l->socks[i]);
	if (l->ep >= 0)
		close(l->ep);
	if (l->wake_fd >= 0)
		close(l->wake_fd);
	free(l->tls_grpc_addr);
	free(l);
}

/* The earlier http:// or https:// URL of the other scheme and the same
 * host:port as @u (an http:// or https:// URL), or NULL. */
static lsock *find_twin(srv_listen *l, const char *u)
{
	bool tls = u[4] == 's';
	const char *addr = u + (tls ? 8 : 7);
	for (size_t i = 0; i < l->n_socks; i++) {
		lsock *t = &l->socks[i];
		if (t->fd < 0 || t->is_unix || t->tls == tls || t->url == NULL)
			continue;
		if (strcmp(t->url + (t->tls ? 8 : 7), addr) == 0)
			return t;
	}
	return NULL;
}

int srv_listen_bind(const srv_listen_config *cfg, srv_listen **out, char *err, size_t errlen)
{
	*out = NULL;
	if (cfg->n_urls == 0 || cfg->n_urls > MAX_URLS) {
		srv_errf(err, errlen, "cannot listen: %zu URLs (1 to %d)", cfg->n_urls, MAX_URLS);
		return -1;
	}
	srv_listen *l = calloc(1, sizeof *l);
	if (l == NULL) {
		srv_errf(err, errlen, "out of memory");
		return -1;
	}
	l->cfg = *cfg;
	l->cfg.urls = NULL;
	if (l->cfg.sniff_timeout_ms <= 0)
		l->cfg.sniff_timeout_ms = 10000;
	l->ep = -1;
	l->wake_fd = -1;
	atomic_init(&l->stop, false);
	if (cfg->tls_grpc_addr != NULL && (l->tls_grpc_addr = strdup(cfg->tls_grpc_addr)) == NULL) {
		free(l);
		srv_errf(err, errlen, "out of memory");
		return -1;
	}
	for (size_t i = 0; i < cfg->n_urls; i++) {
		const char *u = cfg->urls[i];
		lsock *s = &l->socks[l->n_socks];
		memset(s, 0, sizeof *s);
		s->fd = -1;
		s->ev = (ev_item){EV_LISTENER, s};
		char why[256] = "not a URL";
		int rc = -1;
		lsock *twin = NULL;
		if (strncmp(u, "http://", 7) == 0 || strncmp(u, "https://", 8) == 0) {
			s->tls = u[4] == 's';
			twin = find_twin(l, u);
		}
		if (twin != NULL) {
			/* as etcd: one socket serves both schemes */
			twin->both = true;
			s->tls = !twin->tls;
			s->port = twin->port;
			rc = 0;
		} else if (strncmp(u, "http://", 7) == 0) {
			rc = bind_tcp(s, u + 7, why, sizeof why);
		} else if (strncmp(u, "https://", 8) == 0) {
			rc = bind_tcp(s, u + 8, why, sizeof why);
		} else if (strncmp(u, "unix://", 7) == 0) {
			rc = bind_unix(s, u + 7, why, sizeof why);
		} else if (strncmp(u, "unixs://", 8) == 0) {
			s->tls = true;
			rc = bind_unix(s, u + 8, why, sizeof why);
		}
		if (rc == 0 && s->tls && cfg->mux == SRV_HTTP_CLIENT && l->tls_grpc_addr == NULL) {
			srv_errf(why, sizeof why, "no TLS gRPC address");
			if (s->fd >= 0)
				close(s->fd);
			s->fd = -1;
			rc = -1;
		}
		if (rc != 0) {
			/* srv_rpc's words for a port the core could not bind, so the
			 * start-up error reads as before; the reason is logged */
			srv_errf(err, errlen, "cannot listen on %s", u);
			srv_log_warn("cannot listen", SRV_LF_STR("address", u), SRV_LF_ERR(why));
			listen_free(l);
			return -1;
		}
		s->url = strdup(u);
		l->n_socks++;
	}
	*out = l;
	return 0;
}

int srv_listen_port(const srv_listen *l, size_t i)
{
	return i < l->n_socks ? l->socks[i].port : 0;
}

int srv_listen_socket(const char *url, int *port, char *why, size_t whylen)
{
	lsock s;
	memset(&s, 0, sizeof s);
	s.fd = -1;
	int rc = -1;
	if (strncmp(url, "http://", 7) == 0 || strncmp(url, "unix://", 7) == 0)
		rc = url[1] == 't' ? bind_tcp(&s, url + 7, why, whylen)
		                   : bind_unix(&s, url + 7, why, whylen);
	else if (strncmp(url, "https://", 8) == 0 || strncmp(url, "unixs://", 8) == 0)
		rc = url[1] == 't' ? bind_tcp(&s, url + 8, why, whylen)
		                   : bind_unix(&s, url + 8, why, whylen);
	else
		srv_errf(why, whylen, "not a URL");
	free(s.unix_path); /* the caller removes the socket file: the URL's path */
	*port = s.port;
	return rc == 0 ? s.fd : -1;
}

/* ---- connections ------------------------------------------------------------------------ */

static void sniff_unlink(srv_listen *l, sniff_conn *c)
{
	if (c->prev)
		c->prev->next = c->next;
	else
		l->sniffs = c->next;
	if (c->next)
		c->next->prev = c->prev;
}

/* Take @c out of the loop; its fd stays open (for the new owner). */
static int sniff_take(srv_listen *l, sniff_conn *c)
{
	int fd = c->fd;
	epoll_ctl(l->ep, EPOLL_CTL_DEL, fd, NULL);
	sniff_unlink(l, c);
	free(c);
	return fd;
}

/* Close @r's descriptors (which takes them out of the epoll set) and queue it
 * for relay_free_dead: a second event of this round may still name it. */
static void relay_close(srv_listen *l, relay *r)
{
	if (r->prev)
		r->prev->next = r->next;
	else
		l->relays = r->next;
	if (r->next)
		r->next->prev = r->prev;
	close(r->fd_a);
	close(r->fd_b);
	close(r->ab.pipe_r);
	close(r->ab.pipe_w);
	close(r->ba.pipe_r);
	close(r->ba.pipe_w);
	r->closed = true;
	r->next = l->dead;
	l->dead = r;
}

static void relay_free_dead(srv_listen *l)
{
	for (relay *r = l->dead, *nx; r != NULL; r = nx) {
		nx = r->next;
		free(r);
	}
	l->dead = NULL;
}

/* Move what can move from @src to @dst through @d; *@moved is set when a
 * byte moved or EOF was seen. Returns 0, or -1 when the relay must close. */
static int relay_pump(relay_dir *d, int src, int dst, bool *moved)
{
	for (;;) {
		if (d->in_pipe > 0) {
			ssize_t n = splice(d->pipe_r, NULL, dst, NULL, d->in_pipe,
			                   SPLICE_F_NONBLOCK | SPLICE_F_MOVE);
			if (n > 0) {
				d->in_pipe -= (size_t)n;
				*moved = true;
				continue;
			}
			if (n < 0 && (errno == EAGAIN || errno == EINTR))
				return 0;
			return -1;
		}
		if (d->eof) {
			if (!d->done) {
				d->done = true;
				shutdown(dst, SHUT_WR);
			}
			return 0;
		}
		ssize_t n = splice(src, NULL, d->pipe_w, NULL, RELAY_CHUNK,
		                   SPLICE_F_NONBLOCK | SPLICE_F_MOVE);
		if (n > 0) {
			d->in_pipe += (size_t)n;
			*moved = true;
			continue;
		}
		if (n == 0) {
			d->eof = true;
			*moved = true;
			continue;
		}
		if (errno == EAGAIN || errno == EINTR)
			return 0;
		return -1;
	}
}

static void relay_rearm(srv_listen *l, relay *r)
{
	/* Read a side only while its pipe is empty (backpressure); wait to write a
	 * side while bytes for it wait in the pipe. */
	uint32_t ma = (!r->ab.eof && r->ab.in_pipe == 0 ? EPOLLIN : 0) |
	              (r->ba.in_pipe > 0 ? EPOLLOUT : 0);
	uint32_t mb = (!r->ba.eof && r->ba.in_pipe == 0 ? EPOLLIN : 0) |
	              (r->ab.in_pipe > 0 ? EPOLLOUT : 0);
	struct epoll_event ev;
	if (ma != r->mask_a) {
		ev.events = ma;
		ev.data.ptr = &r->ev_a;
		epoll_ctl(l->ep, EPOLL_CTL_MOD, r->fd_a, &ev);
		r->mask_a = ma;
	}
	if (mb != r->mask_b) {
		ev.events = mb;
		ev.data.ptr = &r->ev_b;
		epoll_ctl(l->ep, EPOLL_CTL_MOD, r->fd_b, &ev);
		r->mask_b = mb;
	}
}

static void relay_run(srv_listen *l, relay *r, uint32_t events)
{
	bool moved = false;
	/* A hang-up that lets nothing move any more would be reported again and
	 * again (epoll always reports it): close then. */
	if (relay_pump(&r->ab, r->fd_a, r->fd_b, &moved) != 0 ||
	    relay_pump(&r->ba, r->fd_b, r->fd_a, &moved) != 0 || (r->ab.done && r->ba.done) ||
	    (events & EPOLLERR) || ((events & EPOLLHUP) && !moved)) {
		relay_close(l, r);
		return;
	}
	relay_rearm(l, r);
}

static int connect_abstract(const char *name)
{
	struct sockaddr_un sa;
	memset(&sa, 0, sizeof sa);
	sa.sun_family = AF_UNIX;
	size_t n = strlen(name);
	if (n + 1 > sizeof sa.sun_path)
		return -1;
	memcpy(sa.sun_path + 1, name, n);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	socklen_t len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + n);
	if (connect(fd, (struct sockaddr *)&sa, len) != 0 || set_nonblock(fd) != 0) {
		close(fd);
		return -1;
	}
	return fd;
}

/* Relay the TLS client @fd to the core's internal TLS listener. */
static void relay_start(srv_listen *l, int fd)
{
	relay *r = calloc(1, sizeof *r);
	int pab[2] = {-1, -1}, pba[2] = {-1, -1};
	int b = r ? connect_abstract(l->tls_grpc_addr) : -1;
	if (r == NULL || b < 0 || pipe2(pab, O_NONBLOCK | O_CLOEXEC) != 0 ||
	    pipe2(pba, O_NONBLOCK | O_CLOEXEC) != 0) {
		srv_log_warn("cannot relay a TLS gRPC connection", SRV_LF_ERR(strerror(errno)));
		close(fd);
		if (b >= 0)
			close(b);
		for (int i = 0; i < 2; i++) {
			if (pab[i] >= 0)
				close(pab[i]);
			if (pba[i] >= 0)
				close(pba[i]);
		}
		free(r);
		return;
	}
	r->fd_a = fd;
	r->fd_b = b;
	r->ab.pipe_r = pab[0];
	r->ab.pipe_w = pab[1];
	r->ba.pipe_r = pba[0];
	r->ba.pipe_w = pba[1];
	r->ev_a = (ev_item){EV_RELAY, r};
	r->ev_b = (ev_item){EV_RELAY, r};
	r->mask_a = r->mask_b = EPOLLIN;
	struct epoll_event ev = {.events = r->mask_a, .data.ptr = &r->ev_a};
	epoll_ctl(l->ep, EPOLL_CTL_ADD, fd, &ev);
	ev.data.ptr = &r->ev_b;
	epoll_ctl(l->ep, EPOLL_CTL_ADD, b, &ev);
	r->next = l->relays;
	if (l->relays)
		l->relays->prev = r;
	l->relays = r;
	relay_run(l, r, 0);
}

/* Look at @c's first bytes; hand it over once they decide. */
static void sniff_run(srv_listen *l, sniff_conn *c)
{
	static unsigned char buf[PEEK_MAX]; /* the loop's thread only */
	ssize_t n = recv(c->fd, buf, c->tls || c->both ? sizeof buf : H2_PREFACE_LEN, MSG_PEEK);
	if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
		close(sniff_take(l, c));
		return;
	}
	if (n < 0)
		return;
	if (c->both) {
		/* etcd's cmux: a TLS handshake record starts with 0x16 */
		c->both = false;
		c->tls = buf[0] == 0x16;
		if (!c->tls && n > (ssize_t)H2_PREFACE_LEN)
			n = H2_PREFACE_LEN;
	}
	srv_sniff v = c->tls ? srv_listen_sniff_tls(buf, (size_t)n)
	                     : srv_listen_sniff_plain(buf, (size_t)n);
	if (v == SRV_SNIFF_MORE)
		return;
	bool tls = c->tls;
	int fd = sniff_take(l, c);
	if (l->cfg.mux == SRV_HTTP_METRICS || v == SRV_SNIFF_HTTP) {
		srv_http_add(l->http, fd, l->cfg.mux, tls);
	} else if (tls) {
		relay_start(l, fd);
	} else if (srv_rpc_adopt_fd(l->rpc, fd) != 0) {
		close(fd);
	}
}

static void accept_all(srv_listen *l, lsock *s)
{
	for (;;) {
		int fd = accept4(s->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			if (errno != EAGAIN)
				srv_log_warn("accept failed", SRV_LF_STR("address", s->url),
				             SRV_LF_ERR(strerror(errno)));
			return;
		}
		if (!s->is_unix) {
			int one = 1;
			setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
		}
		sniff_conn *c = calloc(1, sizeof *c);
		if (c == NULL) {
			close(fd);
			continue;
		}
		c->ev = (ev_item){EV_SNIFF, c};
		c->fd = fd;
		c->tls = s->tls;
		c->both = s->both;
		c->deadline_ms = (uint64_t)srv_mono_ms() + (uint64_t)l->cfg.sniff_timeout_ms;
		c->next = l->sniffs;
		if (l->sniffs)
			l->sniffs->prev = c;
		l->sniffs = c;
		/* edge-triggered: peeked bytes stay readable, only new ones wake us */
		struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP | EPOLLET,
		                         .data.ptr = &c->ev};
		epoll_ctl(l->ep, EPOLL_CTL_ADD, fd, &ev);
		sniff_run(l, c);
	}
}

/* Close sniffing connections past their deadline; the next deadline's wait. */
static int sweep_sniffs(srv_listen *l)
{
	uint64_t now = (uint64_t)srv_mono_ms(), next = UINT64_MAX;
	for (sniff_conn *c = l->sniffs, *nx; c != NULL; c = nx) {
		nx = c->next;
		if (c->deadline_ms <= now)
			close(sniff_take(l, c));
		else if (c->deadline_ms < next)
			next = c->deadline_ms;
	}
	return next == UINT64_MAX ? -1 : (int)(next - now);
}

static void *listen_main(void *arg)
{
	srv_listen *l = arg;
	pthread_setname_np(pthread_self(), "ms-listen");
	struct epoll_event evs[64];
	while (!atomic_load(&l->stop)) {
		int timeout = sweep_sniffs(l);
		int n = epoll_wait(l->ep, evs, 64, timeout);
		for (int i = 0; i < n; i++) {
			ev_item *it = evs[i].data.ptr;
			switch (it->kind) {
			case EV_LISTENER:
				accept_all(l, it->owner);
				break;
			case EV_SNIFF:
				sniff_run(l, it->owner);
				break;
			case EV_RELAY: {
				relay *r = it->owner;
				if (!r->closed)
					relay_run(l, r, evs[i].events);
				break;
			}
			case EV_WAKE:
				break;
			}
		}
		relay_free_dead(l);
	}
	return NULL;
}

int srv_listen_start(srv_listen *l, srv_rpc *rpc, srv_http *http)
{
	l->rpc = rpc;
	l->http = http;
	l->ep = epoll_create1(EPOLL_CLOEXEC);
	l->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (l->ep < 0 || l->wake_fd < 0)
		return -1;
	l->wake_ev = (ev_item){EV_WAKE, l};
	struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &l->wake_ev};
	epoll_ctl(l->ep, EPOLL_CTL_ADD, l->wake_fd, &ev);
	for (size_t i = 0; i < l->n_socks; i++) {
		if (l->socks[i].fd < 0)
			continue; /* the twin of an earlier URL */
		ev.events = EPOLLIN;
		ev.data.ptr = &l->socks[i].ev;
		epoll_ctl(l->ep, EPOLL_CTL_ADD, l->socks[i].fd, &ev);
	}
	if (pthread_create(&l->thread, NULL, listen_main, l) != 0)
		return -1;
	l->started = true;
	return 0;
}

void srv_listen_stop(srv_listen *l)
{
	if (l == NULL)
		return;
	if (l->started) {
		atomic_store(&l->stop, true);
		uint64_t one = 1;
		if (write(l->wake_fd, &one, sizeof one) < 0)
			srv_log_warn("cannot wake the listener thread",
			             SRV_LF_ERR(strerror(errno)));
		pthread_join(l->thread, NULL);
	}
	while (l->sniffs != NULL)
		close(sniff_take(l, l->sniffs));
	while (l->relays != NULL)
		relay_close(l, l->relays);
	relay_free_dead(l);
	listen_free(l);
}
