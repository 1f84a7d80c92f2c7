/*
 * srv_http.c: etcd's HTTP endpoints on libmicrohttpd daemons that own no
 * listening socket (srv_http.h). srv_http_route is the whole behaviour, pure;
 * the rest adapts it to libmicrohttpd and checks client certificates on TLS.
 * A /health with a quorum read (which may wait up to a second) is routed on a
 * worker thread of its own while its connection is suspended, so the daemon's
 * one polling thread never waits for raft.
 */
#include "server/srv_log.h"
#include "server/srv_http.h"
#include "server/srv_gateway.h"
#include "server/srv_jobs.h"

#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gnutls/gnutls.h>
#include <microhttpd.h>

#define N_KINDS 4

typedef struct daemon_ctx {
	srv_http *http;
	srv_http_mux mux;
	bool tls;
	struct MHD_Daemon *d;
} daemon_ctx;

/* At most this many /health checks wait on workers; more are routed inline. */
#define MAX_HEALTH_WORKERS 16

struct srv_http {
	srv_http_config cfg;
	daemon_ctx dm[N_KINDS];
	srv_gateway *gw; /* /v3 on client URLs, when cfg.rpc is set */
	atomic_bool stopping;
	pthread_mutex_t mu; /* guards the jobs' done flags */
	srv_jobs jobs;      /* /health checks running on worker threads */
};

/* A /health request routed on a worker (its con_cls). */
typedef struct health_job {
	const void *tag; /* &health_tag: tells it from the extensions' con_cls */
	srv_http *h;
	daemon_ctx *dc;
	struct MHD_Connection *c;
	srv_http_query q; /* its strings are the connection's, alive while suspended */
	char method[16];
	srv_http_reply r;
	bool done; /* guarded by h->mu */
} health_job;

static const char health_tag = 0;

/* ---- the handlers ------------------------------------------------------------------- */

static const char TEXT_PLAIN[] = "text/plain; charset=utf-8";

static void reply_text(srv_http_reply *out, int status, bool nosniff, const char *text)
{
	out->status = status;
	out->content_type = TEXT_PLAIN;
	out->nosniff = nosniff;
	srv_mbuf_printf(&out->body, "%s", text);
}

/* Go's http.Error for 405 with Allow: GET. */
static void method_not_allowed(srv_http_reply *out)
{
	reply_text(out, 405, true, "Method Not Allowed\n");
	out->allow = "GET";
}

static bool excluded(const srv_http_query *q, const char *name)
{
	for (size_t i = 0; q != NULL && i < q->n_exclude; i++)
		if (strcmp(q->exclude[i], name) == 0)
			return true;
	return false;
}

static bool has_leader(const srv_http_config *cfg)
{
	return cfg->has_leader != NULL && cfg->has_leader(cfg->ctx);
}

static size_t active_alarms(const srv_http_config *cfg, const char **names)
{
	size_t n = cfg->alarms != NULL ? cfg->alarms(cfg->ctx, names, SRV_HTTP_MAX_ALARMS) : 0;
	return n > SRV_HTTP_MAX_ALARMS ? SRV_HTTP_MAX_ALARMS : n;
}

/* etcd 3.4's /health: an alarm not excluded, or no leader, is unhealthy. */
static void route_health(const srv_http_config *cfg, const srv_http_query *q, srv_http_reply *out)
{
	const char *names[SRV_HTTP_MAX_ALARMS];
	size_t na = active_alarms(cfg, names);
	bool ok = true;
	for (size_t i = 0; i < na && ok; i++)
		ok = excluded(q, names[i]);
	if (ok)
		ok = has_leader(cfg);
	if (ok && cfg->quorum_read != NULL) /* etcd 3.4: a QGET through raft, 1 s */
		ok = cfg->quorum_read(cfg->ctx);
	if (ok) {
		srv_counter_add(&srv_mserver.health_success, 1);
		reply_text(out, 200, false, "{\"health\":\"true\"}");
	} else {
		srv_counter_add(&srv_mserver.health_failures, 1);
		reply_text(out, 503, true, "{\"health\":\"false\"}\n");
	}
}

/* One check of etcd 3.6's /livez or /readyz: NULL when it passes, else why. */
typedef const char *(*check_fn)(const srv_http_config *cfg);

static const char *check_serializable(const srv_http_config *cfg)
{
	(void)cfg; /* a local read needs nothing but a running process */
	return NULL;
}

static const char *check_corruption(const srv_http_config *cfg)
{
	const char *names[SRV_HTTP_MAX_ALARMS];
	size_t na = active_alarms(cfg, names);
	for (size_t i = 0; i < na; i++)
		if (strcmp(names[i], "CORRUPT") == 0)
			return "alarm activated: CORRUPT";
	return NULL;
}

static const char *check_linearizable(const srv_http_config *cfg)
{
	return has_leader(cfg) ? NULL : "etcdserver: no leader";
}

typedef struct health_check {
	const char *name;
	check_fn fn;
} health_check;

static const health_check livez_checks[] = {{"serializable_read", check_serializable}};
static const health_check readyz_checks[] = {{"data_corruption", check_corruption},
                                             {"serializable_read", check_serializable},
                                             {"linearizable_read", check_linearizable}};

/* etcd 3.6's health handler over @n checks (@only: one check's own path). */
static void route_checks(const srv_http_config *cfg, const health_check *checks, size_t n,
                         const char *only, const srv_http_query *q, srv_http_reply *out)
{
	srv_mbuf reason = {0};
	bool ok = true;
	for (size_t i = 0; i < n; i++) {
		if (only != NULL && strcmp(only, checks[i].name) != 0)
			continue;
		if (only == NULL && excluded(q, checks[i].name)) {
			srv_mbuf_printf(&reason, "[+]%s excluded: ok\n", checks[i].name);
			continue;
		}
		const char *why = checks[i].fn(cfg);
		if (why == NULL) {
			srv_mbuf_printf(&reason, "[+]%s ok\n", checks[i].name);
		} else {
			ok = false;
			srv_mbuf_printf(&reason, "[-]%s failed: %s\n", checks[i].name, why);
		}
	}
	const char *r = reason.len ? reason.p : "";
	if (!ok) {
		out->status = 503;
		out->content_type = TEXT_PLAIN;
		out->nosniff = true;
		srv_mbuf_printf(&out->body, "%s\n", r);
	} else {
		out->status = 200;
		out->content_type = TEXT_PLAIN;
		out->nosniff = true;
		if (q != NULL && q->verbose)
			srv_mbuf_printf(&out->body, "%s", r);
		srv_mbuf_printf(&out->body, "ok\n");
	}
	srv_mbuf_free(&reason);
}

/* /livez, /readyz and their per-check paths; false when @path is neither. */
static bool route_probe(const srv_http_config *cfg, const char *method, const char *path,
                        const srv_http_query *q, srv_http_reply *out)
{
	static const struct {
		const char *root;
		const health_check *checks;
		size_t n;
	} probes[] = {{"/livez", livez_checks, sizeof livez_checks / sizeof livez_checks[0]},
	              {"/readyz", readyz_checks, sizeof readyz_checks / sizeof readyz_checks[0]}};
	for (size_t p = 0; p < 2; p++) {
		size_t rl = strlen(probes[p].root);
		if (strncmp(path, probes[p].root, rl) != 0)
			continue;
		const char *only = NULL;
		if (path[rl] == '/') {
			only = path + rl + 1;
			bool known = false;
			for (size_t i = 0; i < probes[p].n; i++)
				known |= strcmp(only, probes[p].checks[i].name) == 0;
			if (!known)
				return false;
		} else if (path[rl] != '\0') {
			return false;
		}
		if (strcmp(method, "GET") != 0)
			method_not_allowed(out);
		else
			route_checks(cfg, probes[p].checks, probes[p].n, only, q, out);
		return true;
	}
	return false;
}

void srv_http_route(const srv_http_config *cfg, srv_http_mux mux, const char *method,
                    const char *path, const srv_http_query *q, srv_http_reply *out)
{
	if (strcmp(path, "/metrics") == 0) {
		/* promhttp serves any method */
		out->status = 200;
		out->content_type = "text/plain; version=0.0.4; charset=utf-8";
		if (cfg->metrics != NULL)
			cfg->metrics(cfg->ctx, &out->body);
		if (out->body.oom) {
			srv_mbuf_free(&out->body);
			reply_text(out, 500, true, "out of memory\n");
		}
		return;
	}
	if (strcmp(path, "/health") == 0) {
		if (strcmp(method, "GET") != 0)
			method_not_allowed(out);
		else
			route_health(cfg, q, out);
		return;
	}
	if (mux == SRV_HTTP_CLIENT && strcmp(path, "/version") == 0) {
		if (strcmp(method, "GET") != 0) {
			method_not_allowed(out);
			return;
		}
		out->status = 200;
		out->content_type = "application/json";
		srv_mbuf_printf(&out->body, "{\"etcdserver\":\"%s\",\"etcdcluster\":\"%s\"}",
		                cfg->server_version ? cfg->server_version : "",
		                cfg->cluster_version ? cfg->cluster_version : "not_decided");
		return;
	}
	if (route_probe(cfg, method, path, q, out))
		return;
	reply_text(out, 404, true, "404 page not found\n");
}

/* ---- libmicrohttpd ---------------------------------------------------------------- */

/* The chain the client presented, PEM, leaf first (malloc'd), or NULL. */
static char *peer_chain_pem(gnutls_session_t s)
{
	unsigned n = 0;
	const gnutls_datum_t *der = gnutls_certificate_get_peers(s, &n);
	if (der == NULL || n == 0)
		return NULL;
	srv_mbuf pem = {0};
	for (unsigned i = 0; i < n; i++) {
		gnutls_datum_t out = {NULL, 0};
		if (gnutls_pem_base64_encode2("CERTIFICATE", &der[i], &out) != 0)
			continue;
		srv_mbuf_printf(&pem, "%.*s", (int)out.size, (const char *)out.data);
		gnutls_free(out.data);
	}
	if (pem.oom || pem.len == 0) {
		srv_mbuf_free(&pem);
		return NULL;
	}
	return pem.p;
}

/* Whether the TLS connection @c may be served: a client certificate that
 * GnuTLS verified against the side's CA and that srv_tls's checks accept,
 * when the side requires one. */
static bool client_cert_ok(srv_http *h, struct MHD_Connection *c)
{
	const char *cert, *key, *ca;
	srv_tls_pems(h->cfg.tls, &cert, &key, &ca);
	if (ca == NULL)
		return true; /* no client certificates asked for */
	const union MHD_ConnectionInfo *ci =
	        MHD_get_connection_info(c, MHD_CONNECTION_INFO_GNUTLS_SESSION);
	if (ci == NULL || ci->tls_session == NULL)
		return false;
	gnutls_session_t s = (gnutls_session_t)ci->tls_session;
	unsigned status = 0;
	if (gnutls_certificate_verify_peers2(s, &status) != GNUTLS_E_SUCCESS || status != 0)
		return false;
	char *pem = peer_chain_pem(s);
	if (pem == NULL)
		return false;
	char why[256];
	int rc = srv_tls_check_client_pem(h->cfg.tls, pem, why, sizeof why);
	free(pem);
	return rc == 0;
}

static enum MHD_Result collect_arg(void *cls, enum MHD_ValueKind kind, const char *key,
                                   const char *value)
{
	srv_http_query *q = cls;
	(void)kind;
	if (strcmp(key, "verbose") == 0)
		q->verbose = true;
	else if (strcmp(key, "exclude") == 0 && value != NULL && q->n_exclude < SRV_HTTP_MAX_ALARMS)
		q->exclude[q->n_exclude++] = value;
	return MHD_YES;
}

void srv_http_cors(struct MHD_Response *resp)
{
	MHD_add_response_header(resp, "Access-Control-Allow-Headers",
	                        "accept, content-type, authorization");
	MHD_add_response_header(resp, "Access-Control-Allow-Methods",
	                        "POST, GET, OPTIONS, PUT, DELETE");
	MHD_add_response_header(resp, "Access-Control-Allow-Origin", "*");
}

/* Send @r (and free its body). */
static enum MHD_Result queue_reply(const daemon_ctx *dc, struct MHD_Connection *c,
                                   srv_http_reply *r)
{
	struct MHD_Response *resp = MHD_create_response_from_buffer(
	        r->body.len, r->body.len ? r->body.p : (void *)"", MHD_RESPMEM_MUST_COPY);
	srv_mbuf_free(&r->body);
	if (resp == NULL)
		return MHD_NO;
	MHD_add_response_header(resp, "Content-Type", r->content_type);
	if (r->nosniff)
		MHD_add_response_header(resp, "X-Content-Type-Options", "nosniff");
	if (r->allow != NULL)
		MHD_add_response_header(resp, "Allow", r->allow);
	if (dc->mux == SRV_HTTP_CLIENT) /* etcd's CORS wrapper on client URLs */
		srv_http_cors(resp);
	enum MHD_Result ret = MHD_queue_response(c, (unsigned)r->status, resp);
	MHD_destroy_response(resp);
	return ret;
}

static void health_main(void *arg)
{
	health_job *j = arg;
	srv_http *h = j->h;
	srv_http_route(&h->cfg, j->dc->mux, j->method, "/health", &j->q, &j->r);
	pthread_mutex_lock(&h->mu);
	j->done = true;
	MHD_resume_connection(j->c);
	pthread_mutex_unlock(&h->mu);
}

/*
 * /health with a quorum read: the first call suspends the connection and
 * starts a worker; the call after the worker resumed it sends the answer.
 * MHD_NO when nothing can be started (the caller then routes inline).
 */
static enum MHD_Result health_async(daemon_ctx *dc, struct MHD_Connection *c, const char *method,
                                    const srv_http_query *q, void **con_cls)
{
	srv_http *h = dc->http;
	health_job *j = *con_cls;
	if (j != NULL) {
		pthread_mutex_lock(&h->mu);
		bool done = j->done;
		pthread_mutex_unlock(&h->mu);
		if (!done)
			return MHD_YES; /* not expected: resumed before the worker finished */
		enum MHD_Result ret = queue_reply(dc, c, &j->r);
		*con_cls = NULL;
		free(j);
		return ret;
	}
	j = calloc(1, sizeof(*j));
	if (j == NULL)
		return MHD_NO;
	*j = (health_job){.tag = &health_tag, .h = h, .dc = dc, .c = c, .q = *q};
	snprintf(j->method, sizeof j->method, "%s", method);
	if (srv_jobs_enter(&h->jobs) != SRV_JOBS_OK) { /* stopping, or enough workers */
		free(j);
		return MHD_NO;
	}
	/* suspended before the worker exists: its resume always comes after */
	MHD_suspend_connection(c);
	if (srv_jobs_run(&h->jobs, health_main, j) != SRV_JOBS_OK) {
		MHD_resume_connection(c);
		srv_jobs_leave(&h->jobs);
		free(j);
		return MHD_NO;
	}
	*con_cls = j;
	return MHD_YES;
}

/* A request is over: the gateway's state, if it kept any, goes. */
static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
	daemon_ctx *dc = cls;
	(void)c, (void)toe;
	health_job *j = *con_cls;
	if (j != NULL && j->tag == &health_tag) {
		/* ended before its answer was sent: the worker is done (it resumed
		 * the connection) */
		srv_mbuf_free(&j->r.body);
		free(j);
		*con_cls = NULL;
		return;
	}
	for (size_t i = 0; dc != NULL && i < SRV_HTTP_MAX_EXT; i++) {
		const srv_http_ext *x = &dc->http->cfg.ext[i];
		if (x->match != NULL && x->completed != NULL)
			x->completed(x->ctx, con_cls);
	}
	srv_gateway_completed(con_cls);
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_data_size, void **con_cls)
{
	daemon_ctx *dc = cls;
	srv_http *h = dc->http;
	(void)version;
	for (size_t i = 0; dc->mux == SRV_HTTP_CLIENT && i < SRV_HTTP_MAX_EXT; i++) {
		const srv_http_ext *x = &h->cfg.ext[i];
		if (x->match == NULL || !x->match(url))
			continue;
		if (dc->tls && *con_cls == NULL && !client_cert_ok(h, c))
			return MHD_NO;
		return x->serve(x->ctx, c, url, method, upload_data, upload_data_size, con_cls,
		                dc->tls);
	}
	if (dc->mux == SRV_HTTP_CLIENT && h->gw != NULL && srv_gateway_path(url)) {
		if (dc->tls && *con_cls == NULL && !client_cert_ok(h, c))
			return MHD_NO;
		bool cn = dc->tls && h->cfg.auth_by_cn != NULL && h->cfg.auth_by_cn(h->cfg.ctx);
		return srv_gateway_serve(h->gw, c, url, method, upload_data, upload_data_size,
		                         con_cls, cn);
	}
	if (*upload_data_size != 0) { /* a body: nothing here reads one */
		*upload_data_size = 0;
		return MHD_YES;
	}
	if (dc->tls && !client_cert_ok(h, c))
		return MHD_NO; /* close without a reply, as a refused handshake */
	srv_http_query q = {0};
	MHD_get_connection_values(c, MHD_GET_ARGUMENT_KIND, collect_arg, &q);
	if (h->cfg.quorum_read != NULL && strcmp(url, "/health") == 0 && strcmp(method, "GET") == 0) {
		if (*con_cls != NULL) /* resumed: its answer */
			return health_async(dc, c, method, &q, con_cls);
		if (health_async(dc, c, method, &q, con_cls) == MHD_YES)
			return MHD_YES; /* suspended; else answered inline below */
	}
	srv_http_reply r = {0};
	srv_http_route(&h->cfg, dc->mux, method, url, &q, &r);
	return queue_reply(dc, c, &r);
}

int srv_http_start(const srv_http_config *cfg, srv_http **out, char *err, size_t errlen)
{
	*out = NULL;
	srv_http *h = calloc(1, sizeof *h);
	if (h == NULL) {
		srv_errf(err, errlen, "out of memory");
		return -1;
	}
	pthread_mutex_init(&h->mu, NULL);
	srv_jobs_init(&h->jobs, MAX_HEALTH_WORKERS);
	h->cfg = *cfg;
	atomic_init(&h->stopping, false);
	srv_tls_ref(h->cfg.tls);
	for (unsigned k = 0; k < N_KINDS; k++) {
		daemon_ctx *dc = &h->dm[k];
		dc->http = h;
		dc->mux = (srv_http_mux)(k / 2);
		dc->tls = (k & 1) != 0;
		if (!(cfg->kinds & (1u << k)))
			continue;
		unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ITC |
		                 MHD_USE_NO_LISTEN_SOCKET | MHD_USE_AUTO | MHD_ALLOW_SUSPEND_RESUME;
		if (!dc->tls) {
			dc->d = MHD_start_daemon(flags, 0, NULL, NULL, on_request, dc,
			                         MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)300,
			                         MHD_OPTION_NOTIFY_COMPLETED, on_completed, dc,
			                         MHD_OPTION_END);
		} else if (cfg->tls == NULL) {
			srv_errf(err, errlen, "https:// URL without a TLS certificate and key");
			srv_http_stop(h);
			return -1;
		} else {
			const char *cert, *key, *ca;
			srv_tls_pems(cfg->tls, &cert, &key, &ca);
			/* TLS 1.2 and 1.3 only, as etcd (Go's minimum 1.2). */
			const char *prio = "NORMAL:-VERS-ALL:+VERS-TLS1.3:+VERS-TLS1.2";
			if (ca != NULL)
				dc->d = MHD_start_daemon(
				        flags | MHD_USE_TLS, 0, NULL, NULL, on_request, dc,
				        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)300,
				        MHD_OPTION_NOTIFY_COMPLETED, on_completed, dc,
				        MHD_OPTION_HTTPS_MEM_KEY, key, MHD_OPTION_HTTPS_MEM_CERT,
				        cert, MHD_OPTION_HTTPS_MEM_TRUST, ca,
				        MHD_OPTION_HTTPS_PRIORITIES, prio, MHD_OPTION_END);
			else
				dc->d = MHD_start_daemon(
				        flags | MHD_USE_TLS, 0, NULL, NULL, on_request, dc,
				        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)300,
				        MHD_OPTION_NOTIFY_COMPLETED, on_completed, dc,
				        MHD_OPTION_HTTPS_MEM_KEY, key, MHD_OPTION_HTTPS_MEM_CERT,
				        cert, MHD_OPTION_HTTPS_PRIORITIES, prio, MHD_OPTION_END);
		}
		if (dc->d == NULL) {
			srv_errf(err, errlen, "cannot start the HTTP server%s",
			        dc->tls ? " (TLS: libmicrohttpd refused the certificate or key)"
			                : "");
			srv_http_stop(h);
			return -1;
		}
	}
	if (cfg->rpc != NULL && (cfg->kinds & (SRV_HTTP_KIND(SRV_HTTP_CLIENT, false) |
	                                        SRV_HTTP_KIND(SRV_HTTP_CLIENT, true))) &&
	    srv_gateway_start(cfg->rpc, &h->gw, err, errlen) != 0) {
		srv_http_stop(h);
		return -1;
	}
	*out = h;
	return 0;
}

int srv_http_add(srv_http *h, int fd, srv_http_mux mux, bool tls)
{
	unsigned k = (unsigned)mux * 2u + (tls ? 1u : 0u);
	if (h == NULL || k >= N_KINDS || h->dm[k].d == NULL || atomic_load(&h->stopping)) {
		close(fd);
		return -1;
	}
	struct sockaddr_storage ss;
	socklen_t len = sizeof ss;
	memset(&ss, 0, sizeof ss);
	if (getpeername(fd, (struct sockaddr *)&ss, &len) != 0 ||
	    (ss.ss_family != AF_INET && ss.ss_family != AF_INET6)) {
		/* a unix socket's peer is unnamed: say loopback */
		struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
		memset(&ss, 0, sizeof ss);
		sin->sin_family = AF_INET;
		sin->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		len = sizeof *sin;
	}
	/* libmicrohttpd closes @fd itself when it refuses it */
	return MHD_add_connection(h->dm[k].d, fd, (struct sockaddr *)&ss, len) == MHD_YES ? 0 : -1;
}

void srv_http_stop(srv_http *h)
{
	if (h == NULL)
		return;
	atomic_store(&h->stopping, true);
	srv_gateway_quiesce(h->gw); /* no suspended connection may outlive this */
	srv_jobs_stop(&h->jobs, -1);
	for (size_t i = 0; i < SRV_HTTP_MAX_EXT; i++)
		if (h->cfg.ext[i].match != NULL && h->cfg.ext[i].quiesce != NULL)
			h->cfg.ext[i].quiesce(h->cfg.ext[i].ctx);
	for (unsigned k = 0; k < N_KINDS; k++)
		if (h->dm[k].d != NULL)
			MHD_stop_daemon(h->dm[k].d);
	srv_gateway_free(h->gw);
	srv_tls_unref(h->cfg.tls);
	pthread_mutex_destroy(&h->mu);
	srv_jobs_destroy(&h->jobs);
	free(h);
}
