/*
 * test_http_health.c: /health's quorum read (server/srv_http.c) runs off the
 * HTTP daemon's polling thread. srv_http over socketpairs, no network; the
 * quorum read is a stand-in that waits until the test releases it. While one
 * /health waits, /version and other /health requests are answered; the waiting
 * one answers once released, healthy or not as the read says; stopping the
 * server waits for a running check.
 */
#include <criterion/criterion.h>

#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "server/srv_http.h"

static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t g_cv = PTHREAD_COND_INITIALIZER;
static int g_waiting;   /* quorum reads blocked now */
static int g_release;   /* reads allowed to return */
static bool g_quorum_ok = true;

static bool has_leader(void *ctx)
{
	(void)ctx;
	return true;
}

/* The first read blocks until released; later ones answer at once. */
static bool quorum_read(void *ctx)
{
	(void)ctx;
	pthread_mutex_lock(&g_mu);
	static int calls;
	bool block = calls++ == 0;
	g_waiting++;
	pthread_cond_broadcast(&g_cv);
	while (block && g_release == 0)
		pthread_cond_wait(&g_cv, &g_mu);
	g_waiting--;
	bool ok = g_quorum_ok;
	pthread_mutex_unlock(&g_mu);
	return ok;
}

static srv_http *start(void)
{
	srv_http_config hc = {.kinds = SRV_HTTP_KIND(SRV_HTTP_CLIENT, false),
	                      .has_leader = has_leader,
	                      .quorum_read = quorum_read,
	                      .server_version = "3.4.23",
	                      .cluster_version = "3.4.0"};
	srv_http *h;
	char err[256];
	cr_assert_eq(srv_http_start(&hc, &h, err, sizeof err), 0, "%s", err);
	return h;
}

static int get(srv_http *h, const char *path)
{
	int sv[2];
	cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	cr_assert_eq(srv_http_add(h, sv[0], SRV_HTTP_CLIENT, false), 0);
	char req[256];
	int n = snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", path);
	cr_assert_eq(write(sv[1], req, (size_t)n), n);
	return sv[1];
}

/* The whole answer within @ms (read until the server closes), or NULL when
 * none came in time. */
static char *answer(int fd, int ms)
{
	struct pollfd p = {.fd = fd, .events = POLLIN};
	if (poll(&p, 1, ms) != 1)
		return NULL;
	size_t cap = 8192, len = 0;
	char *out = calloc(1, cap);
	ssize_t r;
	while (len + 1 < cap && (r = read(fd, out + len, cap - 1 - len)) > 0)
		len += (size_t)r;
	close(fd);
	return out;
}

static void wait_blocked(void)
{
	pthread_mutex_lock(&g_mu);
	while (g_waiting == 0)
		pthread_cond_wait(&g_cv, &g_mu);
	pthread_mutex_unlock(&g_mu);
}

static void release(void)
{
	pthread_mutex_lock(&g_mu);
	g_release = 1;
	pthread_cond_broadcast(&g_cv);
	pthread_mutex_unlock(&g_mu);
}

TestSuite(http_health, .timeout = 30);

Test(http_health, a_waiting_quorum_read_blocks_nothing_else)
{
	srv_http *h = start();
	int slow = get(h, "/health");
	wait_blocked();
	/* the daemon still answers while the first check waits */
	char *v = answer(get(h, "/version"), 5000);
	cr_assert_not_null(v, "/version waited for the blocked /health");
	cr_assert(strstr(v, "\"etcdserver\":\"3.4.23\"") != NULL, "%s", v);
	free(v);
	char *quick = answer(get(h, "/health"), 5000);
	cr_assert_not_null(quick, "a second /health waited for the first");
	cr_assert(strstr(quick, "200 OK") != NULL && strstr(quick, "{\"health\":\"true\"}") != NULL,
	          "%s", quick);
	free(quick);
	cr_assert_null(answer(slow, 200), "answered before its quorum read returned");
	release();
	char *s = answer(slow, 5000);
	cr_assert_not_null(s);
	cr_assert(strstr(s, "200 OK") != NULL && strstr(s, "{\"health\":\"true\"}") != NULL, "%s", s);
	cr_assert(strstr(s, "Access-Control-Allow-Origin: *") != NULL, "CORS headers: %s", s);
	free(s);
	srv_http_stop(h);
}

Test(http_health, a_failed_quorum_read_is_unhealthy_and_stop_waits_for_a_check)
{
	g_quorum_ok = false;
	srv_http *h = start();
	int slow = get(h, "/health");
	wait_blocked();
	release(); /* races with the stop below: stop must wait for the worker */
	srv_http_stop(h);
	char *s = answer(slow, 5000);
	/* answered before the stop, or cut by it: never a crash or a hang */
	if (s != NULL && *s != '\0')
		cr_assert(strstr(s, "503 Service Unavailable") != NULL &&
		                  strstr(s, "{\"health\":\"false\"}") != NULL,
		          "%s", s);
	free(s);
}
