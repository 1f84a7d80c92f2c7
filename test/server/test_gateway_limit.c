/*
 * test_gateway_limit.c: the JSON gateway's limit of calls in flight
 * (server/srv_gateway.c, --max-concurrent-streams) in one process, with no
 * network. A srv_rpc server with max_concurrent_streams = 1 serves a fake
 * Range (answers at once) and a fake Watch that stays open until its client
 * goes away, behind srv_http; each client is one end of a socketpair handed
 * over with srv_http_add. With the one slot held by a watch, a Range waits;
 * a waiter that hangs up leaves the queue; a Grpc-Timeout ends the wait (504);
 * when the watch's client hangs up, the queued calls run in arrival order.
 */
#include <criterion/criterion.h>

#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "gw_testutil.h"

static srv_rpc *g_rpc;
static srv_http *g_http;

static void fake_range(srv_call *call, const ProtobufCMessage *req)
{
	const Etcdserverpb__RangeRequest *r = (const Etcdserverpb__RangeRequest *)req;
	Etcdserverpb__ResponseHeader h = ETCDSERVERPB__RESPONSE_HEADER__INIT;
	h.revision = 3;
	Etcdserverpb__RangeResponse resp = ETCDSERVERPB__RANGE_RESPONSE__INIT;
	resp.header = &h;
	resp.count = (int64_t)r->key.len; /* tells the requests apart */
	srv_call_reply(call, &resp.base);
}

/* Answers "created" to each request and ignores the half-close: the stream
 * lasts until the gateway cancels it. */
static void watch_recv(srv_stream *st, void *ctx, const ProtobufCMessage *msg)
{
	(void)ctx;
	if (msg != NULL)
		gwt_send_created(st);
}

static void fake_watch(srv_stream *st, const ProtobufCMessage *req)
{
	(void)req;
	srv_stream_ops ops = {.on_recv = watch_recv, .on_close = gwt_stream_close};
	srv_stream_set_ops(st, &ops, NULL);
}

static void setup(void)
{
	static srv_method tab[SRV_M__COUNT];
	srv_etcd_methods(tab);
	tab[SRV_M_KV_RANGE].unary = fake_range;
	tab[SRV_M_WATCH].stream = fake_watch;
	gwt_start(tab, 1, &g_rpc, &g_http);
}

static void teardown(void)
{
	gwt_stop(g_rpc, g_http);
}

TestSuite(gateway_limit, .init = setup, .fini = teardown, .timeout = 30);

static int send_post(const char *path, const char *extra_headers, const char *body)
{
	return gwt_post(g_http, path, extra_headers, body);
}

/* Whether @fd has something to read (or hung up) within @ms. */
static bool readable(int fd, int ms)
{
	struct pollfd p = {.fd = fd, .events = POLLIN};
	return poll(&p, 1, ms) == 1;
}

/* Read from @fd until @needle shows up or 5 s pass; returns what was read
 * (malloc'd; the caller checks for @needle). */
static char *read_until(int fd, const char *needle)
{
	size_t cap = 1 << 16, len = 0;
	char *out = calloc(1, cap);
	for (int i = 0; i < 50 && strstr(out, needle) == NULL && len + 1 < cap; i++) {
		if (!readable(fd, 100))
			continue;
		ssize_t r = read(fd, out + len, cap - 1 - len);
		if (r <= 0)
			break;
		len += (size_t)r;
	}
	return out;
}

/* The whole answer of @fd (read until the server closes), then close @fd. */
static char *read_all(int fd)
{
	char *out = read_until(fd, "\r\n0\r\n\r\n{never}");
	close(fd);
	return out;
}

Test(gateway_limit, queued_until_a_stream_ends)
{
	int w = send_post("/v3/watch", "", "{\"create_request\":{\"key\":\"YQ==\"}}");
	char *r = read_until(w, GWT_CREATED);
	cr_assert(strstr(r, GWT_CREATED) != NULL, "watch: %s", r);
	free(r);

	/* the slot is the watch's: a Range waits, in order */
	int a = send_post("/v3/kv/range", "", "{\"key\":\"YQ==\"}"); /* count 1 */
	cr_assert(!readable(a, 300), "a Range past the limit was answered");
	int gone = send_post("/v3/kv/range", "", "{\"key\":\"YWI=\"}"); /* count 2 */
	int b = send_post("/v3/kv/range", "", "{\"key\":\"YWJj\"}");    /* count 3 */
	cr_assert(!readable(b, 100));
	close(gone); /* a waiter that hangs up leaves the queue */

	/* a waiter whose deadline passes: grpc-go's answer */
	int t = send_post("/v3/kv/range", "Grpc-Timeout: 100m\r\n", "{}");
	r = read_all(t);
	cr_assert(strncmp(r, "HTTP/1.1 504", 12) == 0, "%s", r);
	cr_assert(strstr(r, "\"message\":\"context deadline exceeded\",\"code\":4}") != NULL, "%s",
	          r);
	free(r);
	cr_assert(!readable(a, 0) && !readable(b, 0), "a waiter was answered too early");

	/* the watch's client goes away: the queued Ranges run, oldest first */
	close(w);
	r = read_all(a);
	cr_assert(strncmp(r, "HTTP/1.1 200", 12) == 0, "%s", r);
	cr_assert(strstr(r, "\"count\":\"1\"") != NULL, "%s", r);
	free(r);
	r = read_all(b);
	cr_assert(strncmp(r, "HTTP/1.1 200", 12) == 0, "%s", r);
	cr_assert(strstr(r, "\"count\":\"3\"") != NULL, "%s", r);
	free(r);
}

Test(gateway_limit, unary_calls_free_their_slot)
{
	/* one slot, used by one call after another */
	for (int i = 0; i < 5; i++) {
		char *r = read_all(send_post("/v3/kv/range", "", "{\"key\":\"YQ==\"}"));
		cr_assert(strncmp(r, "HTTP/1.1 200", 12) == 0, "call %d: %s", i, r);
		free(r);
	}
	/* a watch queued behind nothing starts, and a Range waits behind it */
	int w = send_post("/v3/watch", "", "{\"create_request\":{\"key\":\"YQ==\"}}");
	char *r = read_until(w, GWT_CREATED);
	cr_assert(strstr(r, GWT_CREATED) != NULL, "watch: %s", r);
	free(r);
	int a = send_post("/v3/kv/range", "", "{}");
	cr_assert(!readable(a, 300));
	close(w);
	r = read_all(a);
	cr_assert(strncmp(r, "HTTP/1.1 200", 12) == 0, "%s", r);
	free(r);
}

Test(gateway_limit, queued_at_shutdown)
{
	/* a waiter still queued when the server stops: resumed, refused, freed */
	int w = send_post("/v3/watch", "", "{\"create_request\":{\"key\":\"YQ==\"}}");
	char *r = read_until(w, GWT_CREATED);
	cr_assert(strstr(r, GWT_CREATED) != NULL, "watch: %s", r);
	free(r);
	int a = send_post("/v3/kv/range", "", "{}");
	cr_assert(!readable(a, 200));
	srv_http_stop(g_http);
	g_http = NULL;
	close(a);
	close(w);
}
