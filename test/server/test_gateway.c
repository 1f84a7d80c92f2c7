/*
 * test_gateway.c: the /v3 JSON gateway (server/srv_gateway.c) end to end in one
 * process, with no network: a srv_rpc server with a small fake etcd table
 * (Range answers, Put fails with an etcd error, Watch echoes one response per
 * request and ends on the half-close, LeaseKeepAlive answers TTL 5, Range
 * records the "authorization" metadata) behind srv_http, whose connections are
 * one end of a socketpair handed over with srv_http_add. Each test writes raw
 * HTTP/1.1 requests and reads the raw answer.
 */
#include <criterion/criterion.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "etcdcompat/ec_errors.h"
#include "gw_testutil.h"

static srv_rpc *g_rpc;
static srv_http *g_http;
static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static char g_auth[128]; /* the last Range's "authorization" metadata */

static void fake_range(srv_call *call, const ProtobufCMessage *req)
{
	const Etcdserverpb__RangeRequest *r = (const Etcdserverpb__RangeRequest *)req;
	size_t len = 0;
	const char *a = srv_call_metadata(call, "authorization", &len);
	pthread_mutex_lock(&g_mu);
	snprintf(g_auth, sizeof g_auth, "%.*s", a != NULL ? (int)len : 0, a != NULL ? a : "");
	pthread_mutex_unlock(&g_mu);
	Etcdserverpb__ResponseHeader h = ETCDSERVERPB__RESPONSE_HEADER__INIT;
	h.revision = 3;
	Etcdserverpb__RangeResponse resp = ETCDSERVERPB__RANGE_RESPONSE__INIT;
	resp.header = &h;
	resp.count = (int64_t)r->key.len; /* echoes the decoded key's length */
	srv_call_reply(call, &resp.base);
}

static void fake_put(srv_call *call, const ProtobufCMessage *req)
{
	(void)req;
	srv_call_fail(call, EC_COMPACTED);
}

static void watch_recv(srv_stream *st, void *ctx, const ProtobufCMessage *msg)
{
	(void)ctx;
	if (msg == NULL) {
		srv_stream_finish(st, EC_OK);
		return;
	}
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
	tab[SRV_M_KV_PUT].unary = fake_put;
	tab[SRV_M_WATCH].stream = fake_watch;
	gwt_start(tab, 0, &g_rpc, &g_http);
}

static void teardown(void)
{
	gwt_stop(g_rpc, g_http);
}

TestSuite(gateway, .init = setup, .fini = teardown, .timeout = 30);

/* The whole answer on @fd (read until the server closes), then close @fd
 * (malloc'd). exchange: of @req (a whole HTTP/1.1 request, "Connection:
 * close"); post: of gwt_post's request. */
static char *read_all(int fd)
{
	size_t cap = 1 << 16, len = 0;
	char *out = calloc(1, cap);
	ssize_t r;
	while (len + 1 < cap && (r = read(fd, out + len, cap - 1 - len)) > 0)
		len += (size_t)r;
	close(fd);
	return out;
}

static char *exchange(const char *req)
{
	return read_all(gwt_send(g_http, req));
}

static char *post(const char *path, const char *extra_headers, const char *body)
{
	return read_all(gwt_post(g_http, path, extra_headers, body));
}

/* The body of an answer (after the blank line). */
static const char *body_of(const char *resp)
{
	const char *b = strstr(resp, "\r\n\r\n");
	return b != NULL ? b + 4 : "";
}

Test(gateway, unary_range)
{
	char *r = post("/v3/kv/range", "Authorization: tok123\r\n",
	               "{\"key\":\"Zm9v\",\"no_such_field\":[1,{\"a\":2}]}");
	cr_assert(strncmp(r, "HTTP/1.1 200", 12) == 0, "%s", r);
	cr_assert(strstr(r, "Grpc-Metadata-Content-Type: application/grpc") != NULL, "%s", r);
	cr_assert_str_eq(body_of(r), "{\"header\":{\"revision\":\"3\"},\"count\":\"3\"}");
	free(r);
	pthread_mutex_lock(&g_mu);
	cr_assert_str_eq(g_auth, "tok123");
	pthread_mutex_unlock(&g_mu);
}

Test(gateway, v3beta_and_empty_body)
{
	char *r = post("/v3beta/kv/range", "", "");
	cr_assert(strncmp(r, "HTTP/1.1 200", 12) == 0, "%s", r);
	cr_assert_str_eq(body_of(r), "{\"header\":{\"revision\":\"3\"}}");
	free(r);
}

Test(gateway, grpc_error_body)
{
	char *r = post("/v3/kv/put", "", "{\"key\":\"Zm9v\"}");
	cr_assert(strncmp(r, "HTTP/1.1 400", 12) == 0, "%s", r);
	cr_assert(strstr(r, "Trailer: Grpc-Trailer-Content-Type") != NULL, "%s", r);
	char want[512];
	snprintf(want, sizeof want, "{\"error\":\"%s\",\"message\":\"%s\",\"code\":11}",
	         ec_strerror(EC_COMPACTED), ec_strerror(EC_COMPACTED));
	cr_assert(strstr(r, want) != NULL, "%s", r);
	free(r);
}

Test(gateway, bad_json)
{
	char *r = post("/v3/kv/range", "", "{\"key\":");
	cr_assert(strncmp(r, "HTTP/1.1 400", 12) == 0, "%s", r);
	cr_assert(strstr(body_of(r), "\"code\":3}") != NULL, "%s", r);
	free(r);
}

Test(gateway, routes)
{
	char *r = exchange("GET /v3/kv/range HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
	cr_assert(strncmp(r, "HTTP/1.1 405", 12) == 0, "%s", r);
	cr_assert_str_eq(body_of(r), "Method Not Allowed\n");
	free(r);
	r = post("/v3/lock/nope", "", "{}");
	cr_assert(strncmp(r, "HTTP/1.1 404", 12) == 0, "%s", r);
	cr_assert_str_eq(body_of(r), "Not Found\n");
	free(r);
	/* a route whose method has no handler here (srv_election serves it in main) */
	r = post("/v3/lock/lock", "", "{}");
	cr_assert(strncmp(r, "HTTP/1.1 501", 12) == 0, "%s", r);
	free(r);
	r = post("/v3/kv/range", "Grpc-Timeout: bad\r\n", "{}");
	cr_assert(strncmp(r, "HTTP/1.1 400", 12) == 0, "%s", r);
	free(r);
	/* not the gateway's: srv_http's own answers are unchanged */
	r = exchange("GET /nope HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
	cr_assert_str_eq(body_of(r), "404 page not found\n");
	free(r);
}

Test(gateway, watch_stream)
{
	/* two requests: two lines; the half-close ends the fake stream */
	char *r = post(
	        "/v3/watch", "",
	        "{\"create_request\":{\"key\":\"YQ==\"}} {\"create_request\":{\"key\":\"Yg==\"}}");
	cr_assert(strncmp(r, "HTTP/1.1 200", 12) == 0, "%s", r);
	const char *line = "{\"result\":{\"header\":{\"revision\":\"9\"},\"created\":true}}\n";
	const char *p = strstr(r, line);
	cr_assert(p != NULL, "%s", r);
	cr_assert(strstr(p + strlen(line), line) != NULL, "%s", r);
	free(r);
}
