/*
 * gw_testutil: the set-up the JSON gateway tests share (test_gateway.c,
 * test_gateway_limit.c). A srv_rpc server that adopts the connections the
 * gateway hands it, srv_http in front of it, and clients that are one end of a
 * socketpair given to srv_http_add: no network. The fake Watch streams of both
 * answer each request with the same Created response.
 */
#ifndef METASTORE_GW_TESTUTIL_H
#define METASTORE_GW_TESTUTIL_H

#include <criterion/criterion.h>

#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "rpc.pb-c.h"
#include "server/srv_http.h"
#include "server/srv_methods.h"
#include "server/srv_rpc.h"

/* The JSON the gateway makes of gwt_send_created's response. */
static const char GWT_CREATED[] = "{\"result\":{\"header\":{\"revision\":\"9\"},\"created\":true}}";

/* A Watch response: created, header revision 9. */
static inline void gwt_send_created(srv_stream *st)
{
	Etcdserverpb__ResponseHeader h = ETCDSERVERPB__RESPONSE_HEADER__INIT;
	h.revision = 9;
	Etcdserverpb__WatchResponse w = ETCDSERVERPB__WATCH_RESPONSE__INIT;
	w.header = &h;
	w.created = 1;
	srv_stream_send(st, &w.base);
}

/* on_close of the fake streams: drop the table's reference. */
static inline void gwt_stream_close(srv_stream *st, void *ctx, bool cancelled)
{
	(void)ctx, (void)cancelled;
	srv_stream_unref(st);
}

/* Start srv_rpc with @tab (SRV_M__COUNT rows; a limit of @max_streams calls
 * per connection, 0 for none) and srv_http on it. */
static inline void gwt_start(const srv_method *tab, uint32_t max_streams, srv_rpc **rpc,
                             srv_http **http)
{
	srv_rpc_config rc = {.adopt_fds = true, .max_concurrent_streams = max_streams};
	char err[256];
	cr_assert_eq(srv_rpc_start(&rc, tab, SRV_M__COUNT, NULL, rpc, err, sizeof err), 0, "%s", err);
	srv_http_config hc = {.kinds = SRV_HTTP_KIND(SRV_HTTP_CLIENT, false), .rpc = *rpc};
	cr_assert_eq(srv_http_start(&hc, http, err, sizeof err), 0, "%s", err);
}

static inline void gwt_stop(srv_rpc *rpc, srv_http *http)
{
	srv_http_stop(http);
	srv_rpc_shutdown(rpc);
}

/* A new client of @http that has sent @req (a whole HTTP/1.1 request);
 * returns the client's end. */
static inline int gwt_send(srv_http *http, const char *req)
{
	int sv[2];
	cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	cr_assert_eq(srv_http_add(http, sv[0], SRV_HTTP_CLIENT, false), 0);
	size_t n = strlen(req);
	cr_assert_eq(write(sv[1], req, n), (ssize_t)n);
	return sv[1];
}

/* gwt_send of a POST of @body to @path with @extra_headers ("Name: v\r\n"
 * lines) and "Connection: close". */
static inline int gwt_post(srv_http *http, const char *path, const char *extra_headers,
                           const char *body)
{
	char req[4096];
	int n = snprintf(req, sizeof req,
	                 "POST %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n%sContent-Length: "
	                 "%zu\r\n\r\n%s",
	                 path, extra_headers, strlen(body), body);
	cr_assert(n > 0 && (size_t)n < sizeof req);
	return gwt_send(http, req);
}

#endif
