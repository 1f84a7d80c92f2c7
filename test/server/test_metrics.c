/*
 * test_metrics: server/srv_metrics's Prometheus text (families, samples, label
 * escaping, histograms with etcd's buckets, the grpc-prometheus table), the
 * pure HTTP routing of srv_http (etcd's bodies and codes), and srv_listen's
 * first-bytes decisions (HTTP/2 preface, TLS ClientHello ALPN).
 */
#include <criterion/criterion.h>
#include <string.h>

#include "server/srv_http.h"
#include "server/srv_listen.h"
#include "server/srv_metrics.h"

static const char *text(srv_mbuf *b)
{
	return b->len ? b->p : "";
}

Test(metrics, counter_and_gauge_lines)
{
	srv_mbuf b = {0};
	srv_metrics_family(&b, "x_total", "Help with \\ and\nnewline.", "counter");
	srv_metrics_sample(&b, "x_total", NULL, 3);
	srv_metrics_sample(&b, "y", "a=\"1\"", 0.25);
	srv_metrics_sample(&b, "z", "", 24649728.0);
	srv_metrics_sample(&b, "w", NULL, 18446744073709551615.0);
	cr_assert_str_eq(text(&b), "# HELP x_total Help with \\\\ and\\nnewline.\n"
	                           "# TYPE x_total counter\n"
	                           "x_total 3\n"
	                           "y{a=\"1\"} 0.25\n"
	                           "z 24649728\n"
	                           "w 1.8446744073709552e+19\n");
	srv_mbuf_free(&b);
}

Test(metrics, label_escaping_and_overflow)
{
	char lab[64] = "";
	cr_assert_eq(srv_metrics_label(lab, sizeof lab, "a", "q\"b\\n\nx"), 0);
	cr_assert_eq(srv_metrics_label(lab, sizeof lab, "b", "2"), 0);
	cr_assert_str_eq(lab, "a=\"q\\\"b\\\\n\\nx\",b=\"2\"");
	char small[8] = "";
	cr_assert_eq(srv_metrics_label(small, sizeof small, "name", "value"), -1);
	cr_assert_str_eq(small, "");
}

Test(metrics, histogram_buckets_are_cumulative_with_etcds_bounds)
{
	srv_hist *h = &srv_mserver.wal_fsync; /* etcd's: 0.001 * 2^n, 14 buckets */
	cr_assert_eq(h->n, 14);
	uint64_t before = srv_hist_count(h);
	cr_assert_eq(before, 0);
	srv_hist_observe(h, 500000);      /* 0.5 ms: first bucket */
	srv_hist_observe(h, 1000000);     /* exactly 1 ms: still the first (le) */
	srv_hist_observe(h, 3000000);     /* 3 ms: le 0.004 */
	srv_hist_observe(h, 20000000000); /* 20 s: only +Inf */
	cr_assert_eq(srv_hist_count(h), 4);
	srv_mbuf b = {0};
	srv_metrics_hist(&b, "h", NULL, h);
	const char *t = text(&b);
	cr_assert(strstr(t, "h_bucket{le=\"0.001\"} 2\n"), "%s", t);
	cr_assert(strstr(t, "h_bucket{le=\"0.002\"} 2\n"), "%s", t);
	cr_assert(strstr(t, "h_bucket{le=\"0.004\"} 3\n"), "%s", t);
	cr_assert(strstr(t, "h_bucket{le=\"8.192\"} 3\n"), "%s", t);
	cr_assert(strstr(t, "h_bucket{le=\"+Inf\"} 4\n"), "%s", t);
	cr_assert(strstr(t, "h_sum 20.0045\n"), "%s", t);
	cr_assert(strstr(t, "h_count 4\n"), "%s", t);
	srv_mbuf_free(&b);

	srv_metrics_hist(&b, "h", "To=\"a\"", h);
	cr_assert(strstr(text(&b), "h_bucket{To=\"a\",le=\"0.001\"} 2\n"));
	cr_assert(strstr(text(&b), "h_count{To=\"a\"} 4\n"));
	srv_mbuf_free(&b);
}

Test(metrics, server_families_and_peer_rtt)
{
	srv_counter_add(&srv_mserver.leader_changes, 2);
	srv_metrics_peer_rtt(0xabc, 150000); /* 0.15 ms */
	srv_metrics_peer_rtt(0xabc, 150000);
	srv_mbuf b = {0};
	srv_metrics_server_render(&b);
	const char *t = text(&b);
	cr_assert(strstr(t, "# TYPE etcd_server_leader_changes_seen_total counter\n"
	                    "etcd_server_leader_changes_seen_total 2\n"),
	          "%s", t);
	cr_assert(strstr(t, "# TYPE etcd_disk_wal_fsync_duration_seconds histogram\n"));
	cr_assert(strstr(t, "# TYPE etcd_disk_backend_commit_duration_seconds histogram\n"));
	cr_assert(strstr(t, "# TYPE etcd_network_peer_round_trip_time_seconds histogram\n"));
	cr_assert(strstr(t, "etcd_network_peer_round_trip_time_seconds_bucket{To=\"abc\",le=\"0."
	                    "0001\"} 0\n"),
	          "%s", t);
	cr_assert(strstr(
	        t,
	        "etcd_network_peer_round_trip_time_seconds_bucket{To=\"abc\",le=\"0.0002\"} 2\n"));
	cr_assert(strstr(
	        t,
	        "etcd_network_peer_round_trip_time_seconds_bucket{To=\"abc\",le=\"3.2768\"} 2\n"));
	cr_assert(strstr(t, "# TYPE etcd_server_proposals_pending gauge\n"));
	srv_mbuf_free(&b);
}

Test(metrics, grpc_table_preregisters_every_method_and_code)
{
	const char *names[] = {"/etcdserverpb.KV/Put", "/etcdserverpb.Watch/Watch"};
	srv_grpc_type types[] = {SRV_GRPC_UNARY, SRV_GRPC_BIDI_STREAM};
	srv_metrics_grpc *g = srv_metrics_grpc_new(names, types, 2);
	cr_assert_not_null(g);
	srv_metrics_grpc_started(g, 0);
	srv_metrics_grpc_handled(g, 0, 0);
	srv_metrics_grpc_handled(g, 0, 99); /* out of range: Unknown */
	srv_metrics_grpc_msg_sent(g, 1);
	srv_metrics_grpc_started(g, 7); /* out of range: ignored */
	srv_mbuf b = {0};
	srv_metrics_grpc_render(g, &b);
	const char *t = text(&b);
	cr_assert(strstr(t, "grpc_server_handled_total{grpc_code=\"OK\",grpc_method=\"Put\","
	                    "grpc_service=\"etcdserverpb.KV\",grpc_type=\"unary\"} 1\n"),
	          "%s", t);
	cr_assert(strstr(t, "grpc_server_handled_total{grpc_code=\"Unknown\",grpc_method=\"Put\","
	                    "grpc_service=\"etcdserverpb.KV\",grpc_type=\"unary\"} 1\n"));
	cr_assert(strstr(t, "grpc_server_handled_total{grpc_code=\"Unauthenticated\","
	                    "grpc_method=\"Watch\",grpc_service=\"etcdserverpb.Watch\","
	                    "grpc_type=\"bidi_stream\"} 0\n"));
	cr_assert(strstr(t, "grpc_server_started_total{grpc_method=\"Put\",grpc_service="
	                    "\"etcdserverpb.KV\",grpc_type=\"unary\"} 1\n"));
	cr_assert(strstr(t, "grpc_server_msg_sent_total{grpc_method=\"Watch\",grpc_service="
	                    "\"etcdserverpb.Watch\",grpc_type=\"bidi_stream\"} 1\n"));
	size_t lines = 0;
	for (const char *p = t; (p = strstr(p, "grpc_server_handled_total{")) != NULL; p++)
		lines++;
	cr_assert_eq(lines, 2 * SRV_GRPC_N_CODES);
	srv_mbuf_free(&b);
	srv_metrics_grpc_free(g);

	const char *bad[] = {"/nomethod"};
	cr_assert_null(srv_metrics_grpc_new(bad, types, 1));
}

Test(metrics, process_families)
{
	srv_mbuf b = {0};
	srv_metrics_process(&b);
	const char *t = text(&b);
	cr_assert(strstr(t, "# TYPE process_cpu_seconds_total counter\n"), "%s", t);
	cr_assert(strstr(t, "# TYPE process_open_fds gauge\n"));
	cr_assert(strstr(t, "# TYPE process_max_fds gauge\n"));
	cr_assert(strstr(t, "# TYPE process_resident_memory_bytes gauge\n"));
	cr_assert(strstr(t, "# TYPE process_start_time_seconds gauge\n"));
	cr_assert(strstr(t, "# TYPE process_virtual_memory_bytes gauge\n"));
	srv_mbuf_free(&b);
}

/* ---- srv_http_route ------------------------------------------------------------------ */

static bool g_leader;
static const char *g_alarm;

static bool hook_leader(void *ctx)
{
	(void)ctx;
	return g_leader;
}

static size_t hook_alarms(void *ctx, const char **names, size_t cap)
{
	(void)ctx;
	if (g_alarm == NULL || cap == 0)
		return 0;
	names[0] = g_alarm;
	return 1;
}

static void hook_metrics(void *ctx, srv_mbuf *out)
{
	(void)ctx;
	srv_mbuf_printf(out, "m 1\n");
}

static const srv_http_config hcfg = {
        .has_leader = hook_leader,
        .alarms = hook_alarms,
        .metrics = hook_metrics,
        .server_version = "3.4.23",
        .cluster_version = "3.4.0",
};

static srv_http_reply route(srv_http_mux mux, const char *method, const char *path,
                            const srv_http_query *q)
{
	srv_http_reply r = {0};
	srv_http_route(&hcfg, mux, method, path, q, &r);
	return r;
}

Test(http, health_follows_leader_and_alarms)
{
	g_leader = true;
	g_alarm = NULL;
	srv_http_reply r = route(SRV_HTTP_CLIENT, "GET", "/health", NULL);
	cr_assert_eq(r.status, 200);
	cr_assert_str_eq(text(&r.body), "{\"health\":\"true\"}");
	srv_mbuf_free(&r.body);

	g_leader = false;
	r = route(SRV_HTTP_METRICS, "GET", "/health", NULL);
	cr_assert_eq(r.status, 503);
	cr_assert_str_eq(text(&r.body), "{\"health\":\"false\"}\n");
	srv_mbuf_free(&r.body);

	g_leader = true;
	g_alarm = "NOSPACE";
	r = route(SRV_HTTP_CLIENT, "GET", "/health", NULL);
	cr_assert_eq(r.status, 503);
	srv_mbuf_free(&r.body);
	srv_http_query q = {.exclude = {"NOSPACE"}, .n_exclude = 1};
	r = route(SRV_HTTP_CLIENT, "GET", "/health", &q);
	cr_assert_eq(r.status, 200);
	srv_mbuf_free(&r.body);

	r = route(SRV_HTTP_CLIENT, "POST", "/health", NULL);
	cr_assert_eq(r.status, 405);
	cr_assert_str_eq(r.allow, "GET");
	cr_assert_str_eq(text(&r.body), "Method Not Allowed\n");
	srv_mbuf_free(&r.body);
	g_alarm = NULL;
}

Test(http, version_metrics_and_not_found)
{
	srv_http_reply r = route(SRV_HTTP_CLIENT, "GET", "/version", NULL);
	cr_assert_eq(r.status, 200);
	cr_assert_str_eq(r.content_type, "application/json");
	cr_assert_str_eq(text(&r.body), "{\"etcdserver\":\"3.4.23\",\"etcdcluster\":\"3.4.0\"}");
	srv_mbuf_free(&r.body);

	r = route(SRV_HTTP_METRICS, "GET", "/version", NULL); /* not on the metrics mux */
	cr_assert_eq(r.status, 404);
	cr_assert_str_eq(text(&r.body), "404 page not found\n");
	srv_mbuf_free(&r.body);

	r = route(SRV_HTTP_CLIENT, "POST", "/metrics", NULL);
	cr_assert_eq(r.status, 200);
	cr_assert_str_eq(r.content_type, "text/plain; version=0.0.4; charset=utf-8");
	cr_assert_str_eq(text(&r.body), "m 1\n");
	srv_mbuf_free(&r.body);

	r = route(SRV_HTTP_CLIENT, "GET", "/healthz", NULL);
	cr_assert_eq(r.status, 404);
	cr_assert(r.nosniff);
	srv_mbuf_free(&r.body);
}

Test(http, livez_readyz_as_etcd_36)
{
	g_leader = true;
	g_alarm = NULL;
	srv_http_reply r = route(SRV_HTTP_CLIENT, "GET", "/livez", NULL);
	cr_assert_eq(r.status, 200);
	cr_assert_str_eq(text(&r.body), "ok\n");
	srv_mbuf_free(&r.body);

	srv_http_query v = {.verbose = true};
	r = route(SRV_HTTP_CLIENT, "GET", "/readyz", &v);
	cr_assert_str_eq(text(&r.body), "[+]data_corruption ok\n[+]serializable_read ok\n"
	                                "[+]linearizable_read ok\nok\n");
	srv_mbuf_free(&r.body);

	g_leader = false;
	r = route(SRV_HTTP_METRICS, "GET", "/readyz", NULL);
	cr_assert_eq(r.status, 503);
	cr_assert(strstr(text(&r.body), "[-]linearizable_read failed: etcdserver: no leader\n"));
	srv_mbuf_free(&r.body);
	srv_http_query ex = {.exclude = {"linearizable_read"}, .n_exclude = 1};
	r = route(SRV_HTTP_METRICS, "GET", "/readyz", &ex);
	cr_assert_eq(r.status, 200);
	srv_mbuf_free(&r.body);
	r = route(SRV_HTTP_CLIENT, "GET", "/readyz/serializable_read", NULL);
	cr_assert_eq(r.status, 200);
	srv_mbuf_free(&r.body);
	r = route(SRV_HTTP_CLIENT, "GET", "/readyz/nope", NULL);
	cr_assert_eq(r.status, 404);
	srv_mbuf_free(&r.body);
	g_alarm = "CORRUPT";
	g_leader = true;
	r = route(SRV_HTTP_CLIENT, "GET", "/readyz", NULL);
	cr_assert_eq(r.status, 503);
	srv_mbuf_free(&r.body);
	r = route(SRV_HTTP_CLIENT, "GET", "/livez", NULL);
	cr_assert_eq(r.status, 200);
	srv_mbuf_free(&r.body);
	g_alarm = NULL;
}

/* ---- srv_listen sniffing --------------------------------------------------------------- */

Test(sniff, plain_preface)
{
	const unsigned char *pre = (const unsigned char *)"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
	cr_assert_eq(srv_listen_sniff_plain(pre, 3), SRV_SNIFF_MORE);
	cr_assert_eq(srv_listen_sniff_plain(pre, 24), SRV_SNIFF_GRPC);
	cr_assert_eq(srv_listen_sniff_plain((const unsigned char *)"GET / HTTP/1.1", 14),
	             SRV_SNIFF_HTTP);
	cr_assert_eq(srv_listen_sniff_plain((const unsigned char *)"PRX", 3), SRV_SNIFF_HTTP);
}

/* A minimal ClientHello record offering @alpn (wire format, may be NULL). */
static size_t hello(unsigned char *out, const unsigned char *alpn, size_t alpn_len)
{
	unsigned char body[512];
	size_t n = 0;
	body[n++] = 3, body[n++] = 3; /* TLS 1.2 */
	memset(body + n, 0xaa, 32), n += 32;
	body[n++] = 0;                                                    /* no session id */
	body[n++] = 0, body[n++] = 2, body[n++] = 0x13, body[n++] = 0x01; /* one suite */
	body[n++] = 1, body[n++] = 0;                                     /* null compression */
	size_t ext_at = n;
	n += 2;
	/* server_name first, to be skipped */
	body[n++] = 0, body[n++] = 0, body[n++] = 0, body[n++] = 4;
	memcpy(body + n, "\x00\x02\x00\x00", 4), n += 4;
	if (alpn != NULL) {
		body[n++] = 0, body[n++] = 16;
		body[n++] = (unsigned char)((alpn_len + 2) >> 8),
		body[n++] = (unsigned char)(alpn_len + 2);
		body[n++] = (unsigned char)(alpn_len >> 8), body[n++] = (unsigned char)alpn_len;
		memcpy(body + n, alpn, alpn_len), n += alpn_len;
	}
	size_t el = n - ext_at - 2;
	body[ext_at] = (unsigned char)(el >> 8), body[ext_at + 1] = (unsigned char)el;
	size_t o = 0;
	out[o++] = 0x16, out[o++] = 3, out[o++] = 1;
	out[o++] = (unsigned char)((n + 4) >> 8), out[o++] = (unsigned char)(n + 4);
	out[o++] = 1, out[o++] = 0, out[o++] = (unsigned char)(n >> 8), out[o++] = (unsigned char)n;
	memcpy(out + o, body, n);
	return o + n;
}

Test(sniff, tls_alpn)
{
	unsigned char rec[600];
	size_t n = hello(rec, (const unsigned char *)"\x02h2", 3);
	cr_assert_eq(srv_listen_sniff_tls(rec, n), SRV_SNIFF_GRPC);
	cr_assert_eq(srv_listen_sniff_tls(rec, n - 1), SRV_SNIFF_MORE);
	cr_assert_eq(srv_listen_sniff_tls(rec, 3), SRV_SNIFF_MORE);
	n = hello(rec, (const unsigned char *)"\x08grpc-exp\x02h2", 12);
	cr_assert_eq(srv_listen_sniff_tls(rec, n), SRV_SNIFF_GRPC);
	n = hello(rec, (const unsigned char *)"\x02h2\x08http/1.1", 12);
	cr_assert_eq(srv_listen_sniff_tls(rec, n), SRV_SNIFF_HTTP);
	n = hello(rec, NULL, 0);
	cr_assert_eq(srv_listen_sniff_tls(rec, n), SRV_SNIFF_HTTP);
	cr_assert_eq(srv_listen_sniff_tls((const unsigned char *)"GET /", 5), SRV_SNIFF_HTTP);
}
