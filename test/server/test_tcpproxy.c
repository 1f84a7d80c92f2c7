/*
 * test_tcpproxy.c: the gateway (server/srv_tcpproxy) between real sockets on
 * 127.0.0.1: an echo server stands in for an etcd member. Bytes pass both ways
 * unchanged and in order, a refused endpoint is left out and the next one
 * used, no endpoint at all closes the client's connection, half-closes pass
 * through, and the start-up checks refuse what etcd's gateway refuses.
 */
#include "server/srv_tcpproxy.h"

#include <criterion/criterion.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* ---- an echo server: every connection gets its bytes back, then EOF ---- */

typedef struct echo {
	int lfd;
	int port;
	int accepted;
	pthread_t th;
} echo;

static int listen_any(int *port)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	cr_assert(fd >= 0);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	cr_assert_eq(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
	cr_assert_eq(listen(fd, 16), 0);
	socklen_t l = sizeof a;
	cr_assert_eq(getsockname(fd, (struct sockaddr *)&a, &l), 0);
	*port = ntohs(a.sin_port);
	return fd;
}

static void *echo_conn(void *arg)
{
	int fd = (int)(intptr_t)arg;
	char buf[8192];
	ssize_t n;
	while ((n = recv(fd, buf, sizeof buf, 0)) > 0)
		for (ssize_t off = 0; off < n;) {
			ssize_t w = send(fd, buf + off, (size_t)(n - off), MSG_NOSIGNAL);
			if (w <= 0)
				goto out;
			off += w;
		}
out:
	close(fd); /* after the peer's EOF: ours follows */
	return NULL;
}

static void *echo_main(void *arg)
{
	echo *e = arg;
	for (;;) {
		int fd = accept(e->lfd, NULL, NULL);
		if (fd < 0)
			return NULL; /* the listener was shut down */
		__atomic_add_fetch(&e->accepted, 1, __ATOMIC_SEQ_CST);
		pthread_t th;
		cr_assert_eq(pthread_create(&th, NULL, echo_conn, (void *)(intptr_t)fd), 0);
		pthread_detach(th);
	}
}

static void echo_start(echo *e)
{
	memset(e, 0, sizeof *e);
	e->lfd = listen_any(&e->port);
	cr_assert_eq(pthread_create(&e->th, NULL, echo_main, e), 0);
}

static void echo_stop(echo *e)
{
	shutdown(e->lfd, SHUT_RDWR);
	pthread_join(e->th, NULL);
	close(e->lfd);
}

/* A port on 127.0.0.1 where nothing listens (bound, then released). */
static int dead_port(void)
{
	int port;
	int fd = listen_any(&port);
	close(fd);
	return port;
}

static int dial_port(int port)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	cr_assert(fd >= 0);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
	                        .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	cr_assert_eq(connect(fd, (struct sockaddr *)&a, sizeof a), 0, "connect: %s", strerror(errno));
	struct timeval tv = {.tv_sec = 10};
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
	return fd;
}

static srv_tp *start_gateway(const char *endpoints, int64_t retry_ms)
{
	srv_tp_config cfg = {.listen_addr = "127.0.0.1:0", .endpoints = endpoints,
	                     .retry_delay_ms = retry_ms};
	char err[256];
	srv_tp *tp = NULL;
	cr_assert_eq(srv_tp_start(&cfg, &tp, err, sizeof err), 0, "start: %s", err);
	cr_assert(srv_tp_port(tp) > 0);
	return tp;
}

/* ---- a writer thread so that big transfers cannot deadlock on buffers ---- */

typedef struct writer {
	int fd;
	const unsigned char *p;
	size_t n;
	pthread_t th;
} writer;

static void *writer_main(void *arg)
{
	writer *w = arg;
	for (size_t off = 0; off < w->n;) {
		ssize_t k = send(w->fd, w->p + off, w->n - off > 65536 ? 65536 : w->n - off, MSG_NOSIGNAL);
		if (k <= 0)
			return NULL;
		off += (size_t)k;
	}
	shutdown(w->fd, SHUT_WR);
	return NULL;
}

/* Send @n bytes through @fd and half-close it, read until EOF (which must
 * come); the bytes read back. */
static unsigned char *round_trip(int fd, const unsigned char *p, size_t n, size_t *got)
{
	writer w = {.fd = fd, .p = p, .n = n};
	cr_assert_eq(pthread_create(&w.th, NULL, writer_main, &w), 0);
	unsigned char *back = malloc(n + 1);
	cr_assert_not_null(back);
	*got = 0;
	ssize_t k;
	for (;;) {
		k = recv(fd, back + *got, n + 1 - *got, 0);
		if (k <= 0)
			break;
		*got += (size_t)k;
		if (*got > n)
			break;
	}
	pthread_join(w.th, NULL);
	/* the echo server closes only after our half-close reached it */
	cr_assert_eq(k, 0, "no end of stream came back (recv: %zd, %s)", k, k < 0 ? strerror(errno) : "");
	return back;
}

static void init(void)
{
	signal(SIGPIPE, SIG_IGN);
}

TestSuite(tcpproxy, .init = init, .timeout = 60);

Test(tcpproxy, relays_bytes_both_ways_in_order_and_passes_the_half_close)
{
	echo e;
	echo_start(&e);
	char eps[64];
	snprintf(eps, sizeof eps, "http://127.0.0.1:%d", e.port); /* the scheme is dropped */
	srv_tp *tp = start_gateway(eps, 60000);

	size_t n = 3u << 20;
	unsigned char *p = malloc(n);
	cr_assert_not_null(p);
	for (size_t i = 0; i < n; i++)
		p[i] = (unsigned char)(i * 131 + (i >> 9));
	int fd = dial_port(srv_tp_port(tp));
	size_t got;
	unsigned char *back = round_trip(fd, p, n, &got);
	/* the echo server saw our half-close (it ends only then) and its EOF came back */
	cr_assert_eq(got, n, "got %zu of %zu bytes", got, n);
	cr_assert_eq(memcmp(back, p, n), 0, "bytes changed or reordered");
	close(fd);
	free(back);
	free(p);
	srv_tp_stop(tp);
	echo_stop(&e);
}

Test(tcpproxy, skips_a_refused_endpoint_and_spreads_connections)
{
	echo e1, e2;
	echo_start(&e1);
	echo_start(&e2);
	char eps[128];
	snprintf(eps, sizeof eps, "127.0.0.1:%d,127.0.0.1:%d,127.0.0.1:%d", dead_port(), e1.port,
	         e2.port);
	srv_tp *tp = start_gateway(eps, 60000);
	for (int i = 0; i < 6; i++) {
		int fd = dial_port(srv_tp_port(tp));
		char msg[32], back[33];
		int len = snprintf(msg, sizeof msg, "hello %d", i);
		size_t got;
		unsigned char *b = round_trip(fd, (unsigned char *)msg, (size_t)len, &got);
		cr_assert_eq(got, (size_t)len, "connection %d: got %zu bytes", i, got);
		memcpy(back, b, got);
		back[got] = 0;
		cr_assert_str_eq(back, msg);
		free(b);
		close(fd);
	}
	/* round-robin over the two live ones (the dead one stays out) */
	cr_assert_eq(__atomic_load_n(&e1.accepted, __ATOMIC_SEQ_CST) +
	                     __atomic_load_n(&e2.accepted, __ATOMIC_SEQ_CST),
	             6);
	cr_assert_geq(__atomic_load_n(&e1.accepted, __ATOMIC_SEQ_CST), 2);
	cr_assert_geq(__atomic_load_n(&e2.accepted, __ATOMIC_SEQ_CST), 2);
	srv_tp_stop(tp);
	echo_stop(&e1);
	echo_stop(&e2);
}

Test(tcpproxy, no_live_endpoint_closes_the_client_and_a_retried_one_comes_back)
{
	/* an endpoint that refuses, left out for 300 ms, then listening */
	int port;
	int lfd = listen_any(&port);
	close(lfd);
	char eps[64];
	snprintf(eps, sizeof eps, "127.0.0.1:%d", port);
	srv_tp *tp = start_gateway(eps, 300);
	int fd = dial_port(srv_tp_port(tp));
	char c;
	cr_assert_eq(recv(fd, &c, 1, 0), 0, "the client's connection is closed");
	close(fd);

	/* within the delay the endpoint is not even tried */
	echo e = {0};
	e.lfd = socket(AF_INET, SOCK_STREAM, 0);
	int one = 1;
	setsockopt(e.lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
	                        .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	cr_assert_eq(bind(e.lfd, (struct sockaddr *)&a, sizeof a), 0, "rebind: %s", strerror(errno));
	cr_assert_eq(listen(e.lfd, 16), 0);
	e.port = port;
	cr_assert_eq(pthread_create(&e.th, NULL, echo_main, &e), 0);
	fd = dial_port(srv_tp_port(tp));
	cr_assert_eq(recv(fd, &c, 1, 0), 0, "still left out within --retry-delay");
	close(fd);
	cr_assert_eq(__atomic_load_n(&e.accepted, __ATOMIC_SEQ_CST), 0);

	usleep(400 * 1000);
	fd = dial_port(srv_tp_port(tp));
	size_t got;
	unsigned char *b = round_trip(fd, (const unsigned char *)"back", 4, &got);
	cr_assert_eq(got, 4);
	cr_assert_eq(memcmp(b, "back", 4), 0);
	free(b);
	close(fd);
	srv_tp_stop(tp);
	echo_stop(&e);
}

Test(tcpproxy, stop_cuts_open_connections)
{
	echo e;
	echo_start(&e);
	char eps[64];
	snprintf(eps, sizeof eps, "127.0.0.1:%d", e.port);
	srv_tp *tp = start_gateway(eps, 60000);
	int fds[4];
	for (int i = 0; i < 4; i++) {
		fds[i] = dial_port(srv_tp_port(tp));
		char c = 'x';
		cr_assert_eq(send(fds[i], &c, 1, 0), 1);
		cr_assert_eq(recv(fds[i], &c, 1, 0), 1);
	}
	srv_tp_stop(tp); /* returns only once every connection's threads are done */
	for (int i = 0; i < 4; i++) {
		char c;
		cr_assert_leq(recv(fds[i], &c, 1, 0), 0, "connection %d still open", i);
		close(fds[i]);
	}
	echo_stop(&e);
}

static void expect_refused(const char *listen, const char *eps, const char *want)
{
	srv_tp_config cfg = {.listen_addr = listen, .endpoints = eps, .retry_delay_ms = 1000};
	char err[256] = "";
	srv_tp *tp = NULL;
	cr_assert_eq(srv_tp_start(&cfg, &tp, err, sizeof err), -1, "%s / %s started", listen, eps);
	cr_assert_null(tp);
	cr_assert_str_eq(err, want);
}

Test(tcpproxy, start_checks_as_etcd)
{
	expect_refused("nope", "127.0.0.1:2379", "failed to validate listen address: nope");
	expect_refused("127.0.0.1:0", "127.0.0.1", "error parsing endpoint \"127.0.0.1\"");
	expect_refused("127.0.0.1:0", "http://a:b:1", "error parsing endpoint \"a:b:1\"");
	expect_refused("127.0.0.1:0", ",", "no endpoints found");
	expect_refused("127.0.0.1:23790", "127.0.0.1:2379,localhost:23790",
	               "SRV or endpoint (localhost:23790->127.0.0.1:23790) should not resolve to "
	               "the gateway listen addr (127.0.0.1:23790)");
	/* a port in use */
	int port;
	int fd = listen_any(&port);
	char addr[64], want[128];
	snprintf(addr, sizeof addr, "127.0.0.1:%d", port);
	snprintf(want, sizeof want, "listen tcp %s: bind: address already in use", addr);
	expect_refused(addr, "127.0.0.1:2379", want);
	close(fd);
}
