/*
 * srv_tlsfront.c: the TLS front of srv_tlsfront.h. One accept thread polls
 * the listening sockets; each accepted connection gets a thread of its own
 * that runs the OpenSSL handshake (non-blocking, under a deadline), the
 * post-handshake checks, hands one end of a socketpair to the core and then
 * relays between the TLS connection and the other end with poll(2) until one
 * side closes. Every poll also watches one eventfd, written once at stop and
 * never read, so every thread sees it and ends.
 *
 * The policy (what is verified, what a refusal says) is srv_tls's; this file
 * owns only sockets, threads and bytes.
 */
#include "server/srv_tlsfront.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "server/srv_listen.h"
#include "server/srv_log.h"

#define MAX_URLS     16
#define RELAY_BUF    (16 * 1024)
#define CONN_STACK   (1024 * 1024) /* DNS lookups in checkSAN want some room */
#define HANDSHAKE_MS 10000

typedef struct fsock {
	int fd;
	int port;
	char *unix_path; /* removed at stop */
	char *url;
} fsock;

typedef struct fconn {
	srv_tlsfront *f;
	int fd; /* the client's TCP / unix socket */
	SSL *ssl;
	char peer[INET6_ADDRSTRLEN + 16]; /* "host:port" as Go prints RemoteAddr */
	char host[INET6_ADDRSTRLEN];
	bool has_host;
	pthread_t thread;
	atomic_bool done; /* the thread has finished: join it */
	struct fconn *next;
} fconn;

struct srv_tlsfront {
	srv_tls *tls;
	SSL_CTX *ctx;
	srv_rpc *rpc;
	int handshake_ms;
	fsock socks[MAX_URLS];
	size_t n_socks;
	int stop_fd; /* eventfd: readable once stop began */
	pthread_t thread;
	bool started;
	pthread_mutex_t mu; /* guards conns, n_conns */
	fconn *conns;
	size_t n_conns;
};

/* ---- binding --------------------------------------------------------------------- */

static void front_free(srv_tlsfront *f)
{
	for (size_t i = 0; i < f->n_socks; i++) {
		if (f->socks[i].fd >= 0)
			close(f->socks[i].fd);
		if (f->socks[i].unix_path != NULL)
			unlink(f->socks[i].unix_path);
		free(f->socks[i].unix_path);
		free(f->socks[i].url);
	}
	if (f->stop_fd >= 0)
		close(f->stop_fd);
	SSL_CTX_free(f->ctx);
	srv_tls_unref(f->tls);
	pthread_mutex_destroy(&f->mu);
	free(f);
}

int srv_tlsfront_bind(const srv_tlsfront_config *cfg, srv_tlsfront **out, char *err, size_t errlen)
{
	*out = NULL;
	if (cfg->n_urls == 0 || cfg->n_urls > MAX_URLS) {
		srv_errf(err, errlen, "cannot listen: %zu URLs (1 to %d)", cfg->n_urls, MAX_URLS);
		return -1;
	}
	srv_tlsfront *f = calloc(1, sizeof *f);
	if (f == NULL) {
		srv_errf(err, errlen, "out of memory");
		return -1;
	}
	pthread_mutex_init(&f->mu, NULL);
	srv_tls_ref(cfg->tls);
	f->tls = cfg->tls;
	f->handshake_ms = cfg->handshake_timeout_ms > 0 ? cfg->handshake_timeout_ms : HANDSHAKE_MS;
	f->stop_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (f->stop_fd < 0) {
		srv_errf(err, errlen, "eventfd: %s", strerror(errno));
		front_free(f);
		return -1;
	}
	if ((f->ctx = srv_tls_front_ctx(f->tls, err, errlen)) == NULL) {
		front_free(f);
		return -1;
	}
	for (size_t i = 0; i < cfg->n_urls; i++) {
		const char *u = cfg->urls[i];
		fsock *s = &f->socks[f->n_socks];
		char why[256];
		bool is_unix = strncmp(u, "unixs://", 8) == 0;
		if (!is_unix && strncmp(u, "https://", 8) != 0) {
			srv_errf(err, errlen,
			         "cannot listen on %s: not an https:// or unixs:// URL", u);
			front_free(f);
			return -1;
		}
		s->fd = srv_listen_socket(u, &s->port, why, sizeof why);
		if (s->fd < 0) {
			srv_errf(err, errlen, "cannot listen on %s", u);
			srv_log_warn("cannot listen", SRV_LF_STR("address", u), SRV_LF_ERR(why));
			front_free(f);
			return -1;
		}
		f->n_socks++;
		s->url = strdup(u);
		s->unix_path = is_unix ? strdup(u + 8) : NULL;
		if (s->url == NULL || (is_unix && s->unix_path == NULL)) {
			srv_errf(err, errlen, "out of memory");
			front_free(f);
			return -1;
		}
	}
	*out = f;
	return 0;
}

int srv_tlsfront_port(const srv_tlsfront *f, size_t i)
{
	return f != NULL && i < f->n_socks ? f->socks[i].port : 0;
}

/* ---- one connection ------------------------------------------------------------------- */

static bool stopping(const srv_tlsfront *f)
{
	struct pollfd p = {.fd = f->stop_fd, .events = POLLIN};
	return poll(&p, 1, 0) > 0;
}

/* Wait until @fd is ready for @events, the stop fd fires or @deadline passes.
 * Returns 0 (ready), -1 (stop or timeout). */
static int wait_fd(srv_tlsfront *f, int fd, short events, int64_t deadline)
{
	for (;;) {
		int64_t left = deadline - srv_mono_ms();
		if (left <= 0)
			return -1;
		struct pollfd p[2] = {{.fd = fd, .events = events},
		                      {.fd = f->stop_fd, .events = POLLIN}};
		int n = poll(p, 2, (int)left);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 || p[1].revents != 0)
			return -1;
		if (n > 0)
			return 0;
	}
}

/* Which way the last SSL call wants the socket; 0 if it failed for good. */
static short ssl_wants(SSL *ssl, int ret)
{
	int se = SSL_get_error(ssl, ret);
	return se == SSL_ERROR_WANT_READ ? POLLIN : se == SSL_ERROR_WANT_WRITE ? POLLOUT : 0;
}

/* Go's words for a failed handshake into @why; false when there is nothing
 * worth a line (the client closed before saying anything TLS). */
static bool handshake_why(SSL *ssl, char *why, size_t len)
{
	unsigned long e = ERR_peek_last_error();
	bool say = true;
	if (e != 0 && srv_tls_remote_alert_text(e, why, len) == 0) {
		/* the client refused us */
	} else if (e != 0 && ERR_GET_LIB(e) == ERR_LIB_SSL &&
	           ERR_GET_REASON(e) == SSL_R_CERTIFICATE_VERIFY_FAILED) {
		long v = SSL_get_verify_result(ssl);
		if (v == X509_V_ERR_CERT_REJECTED)
			snprintf(why, len, "client certificate authentication failed");
		else
			snprintf(why, len, "tls: failed to verify client's certificate: x509: %s",
			         X509_verify_cert_error_string(v));
	} else if (e != 0 && ERR_GET_LIB(e) == ERR_LIB_SSL &&
	           ERR_GET_REASON(e) == SSL_R_PEER_DID_NOT_RETURN_A_CERTIFICATE) {
		snprintf(why, len, "tls: client didn't provide a certificate");
	} else if (e != 0) {
		const char *r = ERR_reason_error_string(e);
		snprintf(why, len, "tls: %s", r != NULL ? r : "handshake failure");
	} else {
		say = false; /* EOF or a reset before any TLS */
	}
	ERR_clear_error();
	return say;
}

/* The TLS handshake, non-blocking under the deadline. 0 or -1 (logged). */
static int conn_handshake(fconn *c)
{
	srv_tlsfront *f = c->f;
	int64_t deadline = srv_mono_ms() + f->handshake_ms;
	for (;;) {
		ERR_clear_error();
		int r = SSL_accept(c->ssl);
		if (r == 1)
			return 0;
		short ev = ssl_wants(c->ssl, r);
		if (ev == 0) {
			char why[512];
			if (handshake_why(c->ssl, why, sizeof why))
				srv_tls_front_refused(f->tls, c->peer, why);
			return -1;
		}
		if (wait_fd(f, c->fd, ev, deadline) != 0) {
			if (!stopping(f))
				srv_tls_front_refused(f->tls, c->peer, "tls: handshake timeout");
			return -1;
		}
	}
}

/*
 * Relay between the TLS connection and @plain (the core's socketpair end)
 * until either side is done or stop. `up` holds decrypted bytes on their way
 * to the core, `down` the core's bytes on their way to be encrypted; each is
 * refilled only once empty (backpressure both ways).
 */
static void conn_relay(fconn *c, int plain)
{
	unsigned char up[RELAY_BUF], down[RELAY_BUF];
	size_t up_len = 0, up_off = 0, down_len = 0, down_off = 0;
	bool tls_eof = false, plain_eof = false;
	bool tls_hup = false, plain_hup = false; /* poll reported a hang-up or error */
	for (;;) {
		short tls_ev, plain_ev, want;
		bool moved;
		do {
			moved = false;
			tls_ev = plain_ev = 0;
			if (!tls_eof && up_len == 0) {
				ERR_clear_error();
				int n = SSL_read(c->ssl, up, sizeof up);
				if (n > 0) {
					up_len = (size_t)n;
					up_off = 0;
					moved = true;
				} else if (SSL_get_error(c->ssl, n) == SSL_ERROR_ZERO_RETURN) {
					tls_eof = true; /* close_notify: the core reads EOF */
					shutdown(plain, SHUT_WR);
					moved = true;
				} else if ((want = ssl_wants(c->ssl, n)) != 0) {
					tls_ev |= want;
				} else {
					return; /* the connection broke */
				}
			}
			if (up_off < up_len) {
				ssize_t w = write(plain, up + up_off, up_len - up_off);
				if (w > 0) {
					up_off += (size_t)w;
					if (up_off == up_len)
						up_len = up_off = 0;
					moved = true;
				} else if (errno == EAGAIN || errno == EINTR) {
					plain_ev |= POLLOUT;
				} else {
					return;
				}
			}
			if (!plain_eof && down_len == 0) {
				ssize_t r = read(plain, down, sizeof down);
				if (r > 0) {
					down_len = (size_t)r;
					down_off = 0;
					moved = true;
				} else if (r == 0) {
					plain_eof = true;
					moved = true;
				} else if (errno == EAGAIN || errno == EINTR) {
					plain_ev |= POLLIN;
				} else {
					return;
				}
			}
			if (down_off < down_len) {
				ERR_clear_error();
				int n = SSL_write(c->ssl, down + down_off,
				                  (int)(down_len - down_off));
				if (n > 0) {
					down_off += (size_t)n;
					if (down_off == down_len)
						down_len = down_off = 0;
					moved = true;
				} else if ((want = ssl_wants(c->ssl, n)) != 0) {
					tls_ev |= want;
				} else {
					return;
				}
			}
			if (plain_eof && down_len == 0) {
				SSL_shutdown(c->ssl); /* the core closed: say close_notify */
				return;
			}
			if (tls_eof && up_len == 0 && plain_eof)
				return;
		} while (moved);
		/* A hung-up fd is reported whatever is asked: leave it out while
		 * nothing is wanted of it, or the loop would spin. */
		struct pollfd p[3] = {
		        {.fd = tls_ev == 0 && tls_hup ? -1 : c->fd, .events = tls_ev},
		        {.fd = plain_ev == 0 && plain_hup ? -1 : plain, .events = plain_ev},
		        {.fd = c->f->stop_fd, .events = POLLIN}};
		if (poll(p, 3, -1) < 0 && errno != EINTR)
			return;
		if (p[2].revents != 0)
			return;
		tls_hup |= (p[0].revents & (POLLHUP | POLLERR)) != 0;
		plain_hup |= (p[1].revents & (POLLHUP | POLLERR)) != 0;
	}
}

static void *conn_main(void *arg)
{
	fconn *c = arg;
	srv_tlsfront *f = c->f;
	pthread_setname_np(pthread_self(), "ms-tlsfront");
	/* A write to a client that went away is EPIPE here, not the process's
	 * SIGPIPE (OpenSSL writes to the socket with write(2)). */
	sigset_t pipe_set;
	sigemptyset(&pipe_set);
	sigaddset(&pipe_set, SIGPIPE);
	pthread_sigmask(SIG_BLOCK, &pipe_set, NULL);
	int sp[2] = {-1, -1};
	char why[512];
	if (conn_handshake(c) != 0 ||
	    srv_tls_front_check(f->tls, c->ssl, c->has_host ? c->host : NULL, c->peer, why,
	                        sizeof why) != 0)
		goto out;
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sp) != 0) {
		srv_log_warn("cannot relay a peer TLS connection", SRV_LF_ERR(strerror(errno)));
		goto out;
	}
	if (srv_rpc_adopt_fd(f->rpc, sp[1]) != 0)
		close(sp[1]); /* shutting down */
	else
		conn_relay(c, sp[0]);
	close(sp[0]);
out:
	SSL_free(c->ssl);
	c->ssl = NULL;
	close(c->fd);
	c->fd = -1;
	ERR_clear_error();
	atomic_store(&c->done, true);
	return NULL;
}

/* ---- accepting ------------------------------------------------------------------------ */

/* Go's RemoteAddr text of @sa ("1.2.3.4:5", "[::1]:5"; "@" for unix sockets)
 * into c->peer, and its host into c->host. */
static void conn_name(fconn *c, const struct sockaddr_storage *sa)
{
	const void *a = NULL;
	int port = 0;
	if (sa->ss_family == AF_INET) {
		a = &((const struct sockaddr_in *)sa)->sin_addr;
		port = ntohs(((const struct sockaddr_in *)sa)->sin_port);
	} else if (sa->ss_family == AF_INET6) {
		a = &((const struct sockaddr_in6 *)sa)->sin6_addr;
		port = ntohs(((const struct sockaddr_in6 *)sa)->sin6_port);
	}
	if (a != NULL && inet_ntop(sa->ss_family, a, c->host, sizeof c->host) != NULL) {
		c->has_host = true;
		snprintf(c->peer, sizeof c->peer, sa->ss_family == AF_INET6 ? "[%s]:%d" : "%s:%d",
		         c->host, port);
	} else {
		snprintf(c->peer, sizeof c->peer, "@");
	}
}

/* Join and free the connections whose threads have finished (all with @all,
 * after stop). */
static void reap(srv_tlsfront *f, bool all)
{
	pthread_mutex_lock(&f->mu);
	for (fconn **pp = &f->conns; *pp != NULL;) {
		fconn *c = *pp;
		if (!all && !atomic_load(&c->done)) {
			pp = &c->next;
			continue;
		}
		*pp = c->next;
		f->n_conns--;
		pthread_mutex_unlock(&f->mu);
		pthread_join(c->thread, NULL);
		free(c);
		pthread_mutex_lock(&f->mu);
	}
	pthread_mutex_unlock(&f->mu);
}

static void accept_one(srv_tlsfront *f, fsock *s)
{
	struct sockaddr_storage sa;
	socklen_t salen = sizeof sa;
	int fd = accept4(s->fd, (struct sockaddr *)&sa, &salen, SOCK_NONBLOCK | SOCK_CLOEXEC);
	if (fd < 0) {
		if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED)
			srv_log_warn("accept failed", SRV_LF_STR("address", s->url),
			             SRV_LF_ERR(strerror(errno)));
		return;
	}
	if (s->unix_path == NULL) {
		int one = 1;
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	} else {
		sa.ss_family = AF_UNIX;
	}
	fconn *c = NULL;
	pthread_mutex_lock(&f->mu);
	bool full = f->n_conns >= SRV_TLSFRONT_MAX_CONNS;
	pthread_mutex_unlock(&f->mu);
	if (full || (c = calloc(1, sizeof *c)) == NULL || (c->ssl = SSL_new(f->ctx)) == NULL ||
	    SSL_set_fd(c->ssl, fd) != 1) {
		srv_log_warn("refused a peer connection", SRV_LF_STR("address", s->url),
		             SRV_LF_ERR(full ? "too many connections" : "out of memory"));
		if (c != NULL)
			SSL_free(c->ssl);
		free(c);
		close(fd);
		ERR_clear_error();
		return;
	}
	c->f = f;
	c->fd = fd;
	conn_name(c, &sa);
	atomic_init(&c->done, false);
	pthread_attr_t attr;
	pthread_attr_init(&attr);
	pthread_attr_setstacksize(&attr, CONN_STACK);
	pthread_mutex_lock(&f->mu);
	int rc = pthread_create(&c->thread, &attr, conn_main, c);
	if (rc == 0) {
		c->next = f->conns;
		f->conns = c;
		f->n_conns++;
	}
	pthread_mutex_unlock(&f->mu);
	pthread_attr_destroy(&attr);
	if (rc != 0) {
		srv_log_warn("refused a peer connection", SRV_LF_STR("address", s->url),
		             SRV_LF_ERR(strerror(rc)));
		SSL_free(c->ssl);
		close(fd);
		free(c);
	}
}

static void *accept_main(void *arg)
{
	srv_tlsfront *f = arg;
	pthread_setname_np(pthread_self(), "ms-tlsaccept");
	struct pollfd p[MAX_URLS + 1];
	for (size_t i = 0; i < f->n_socks; i++)
		p[i] = (struct pollfd){.fd = f->socks[i].fd, .events = POLLIN};
	p[f->n_socks] = (struct pollfd){.fd = f->stop_fd, .events = POLLIN};
	for (;;) {
		int n = poll(p, f->n_socks + 1, 1000);
		if (n < 0 && errno != EINTR)
			break;
		if (p[f->n_socks].revents != 0)
			break;
		for (size_t i = 0; n > 0 && i < f->n_socks; i++)
			if (p[i].revents & POLLIN)
				accept_one(f, &f->socks[i]);
		reap(f, false);
	}
	return NULL;
}

int srv_tlsfront_start(srv_tlsfront *f, srv_rpc *rpc)
{
	f->rpc = rpc;
	if (pthread_create(&f->thread, NULL, accept_main, f) != 0)
		return -1;
	f->started = true;
	return 0;
}

void srv_tlsfront_stop(srv_tlsfront *f)
{
	if (f == NULL)
		return;
	uint64_t one = 1;
	if (write(f->stop_fd, &one, sizeof one) < 0)
		srv_log_warn("cannot wake the TLS front", SRV_LF_ERR(strerror(errno)));
	if (f->started)
		pthread_join(f->thread, NULL);
	reap(f, true);
	front_free(f);
}
