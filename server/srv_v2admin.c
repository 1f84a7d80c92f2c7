/*
 * srv_v2admin.c: etcd 3.4's /v2/members, /v2/machines, /v2/stats and /v2/auth
 * on libmicrohttpd (srv_v2admin.h).
 *
 * A request lives in a v2req from its first access-handler call to its
 * response: the body is collected, then the connection is suspended and a
 * detached worker thread routes the request (route()), which may wait on the
 * node (membership) or on the v2 store (replicated writes). The worker stores
 * status, headers and body in the v2req and resumes the connection; the next
 * access-handler call queues the response and frees the v2req. Every v2req is
 * on the handle's list, so srv_v2a_completed can tell its own requests from
 * the gateway's and srv_v2a_quiesce can wait for the workers.
 *
 * The v2 auth endpoints, a request's credentials and the v2 store callbacks
 * are in srv_v2auth.c; the two share srv_v2admin_int.h.
 *
 * What etcd answers, reproduced: the texts and codes of v2http's client.go
 * and client_auth.go (httptypes.HTTPError {"message":...}, Go's http.Error
 * for 405 with an Allow list joined by ","), json.Encoder's trailing newline on
 * success bodies, X-Etcd-Cluster-ID on members and auth responses, etcd's CORS
 * headers. /v2/stats report what metastore measures; the rest (follower
 * latencies and counts, append-request counters and rates, the v2 store's
 * operation counters) is reported with zero values, as a fresh etcd would.
 */
#include "server/srv_v2admin_int.h"
#include "server/srv_wait.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "etcdcompat/ec_cluster.h"
#include "etcdcompat/ec_errors.h"
#include "etcdcompat/ec_member.h"
#include "server/srv_log.h"
#include "server/srv_metrics.h"
#include "server/srv_node.h"

#define MAX_BODY ((size_t)1 << 20)

/* ---- the handle and its requests --------------------------------------------------- */

int srv_v2a_new(srv_app *app, const ec_v2a_store *store, srv_v2a **out)
{
	*out = NULL;
	srv_v2a *a = calloc(1, sizeof *a);
	if (a == NULL)
		return -1;
	a->app = app;
	if (store != NULL) {
		a->st = *store;
	} else if (app->v2store != NULL) {
		srv_v2a__replicated_store(app, &a->st);
	} else {
		free(a);
		return -1;
	}
	pthread_mutex_init(&a->mu, NULL);
	srv_jobs_init(&a->jobs, SRV_V2A_MAX_WORKERS);
	a->auth.st = &a->st;
	a->auth.bcrypt_cost = 0;
	clock_gettime(CLOCK_REALTIME, &a->start);
	a->lead_since = a->start;
	*out = a;
	return 0;
}

void srv_v2a_quiesce(srv_v2a *a)
{
	if (a == NULL)
		return;
	srv_jobs_stop(&a->jobs, 10000);
}

static void req_free(v2req *rq)
{
	free(rq->method);
	free(rq->url);
	free(rq->body);
	if (rq->authz != NULL) {
		memset(rq->authz, 0, strlen(rq->authz));
		free(rq->authz);
	}
	free(rq->ctype);
	for (size_t i = 0; i < rq->n_cns; i++)
		free(rq->cns[i]);
	free(rq->resp);
	free(rq);
}

void srv_v2a_free(srv_v2a *a)
{
	if (a == NULL)
		return;
	size_t w = srv_jobs_stop(&a->jobs, 0);
	pthread_mutex_lock(&a->mu);
	v2req *r = w == 0 ? a->reqs : NULL;
	a->reqs = NULL;
	pthread_mutex_unlock(&a->mu);
	if (w > 0)
		return; /* a worker outlived the quiesce: leak rather than race */
	while (r != NULL) {
		v2req *nx = r->next;
		req_free(r);
		r = nx;
	}
	srv_jobs_destroy(&a->jobs);
	pthread_mutex_destroy(&a->mu);
	free(a);
}

static bool has_prefix_path(const char *url, const char *p)
{
	size_t n = strlen(p);
	return strncmp(url, p, n) == 0 && (url[n] == '\0' || url[n] == '/');
}

bool srv_v2a_path(const char *url)
{
	return has_prefix_path(url, "/v2/members") || strcmp(url, "/v2/machines") == 0 ||
	       strncmp(url, "/v2/stats/", 10) == 0 || strncmp(url, "/v2/auth/", 9) == 0;
}

/* ---- replies ------------------------------------------------------------------------- */

void srv_v2a__reply(v2req *rq, int status, const char *ctype, char *body)
{
	rq->status = status;
	rq->resp_ctype = ctype;
	free(rq->resp);
	rq->resp = body;
}

/* httptypes.HTTPError: {"message":M} (json.Marshal, no newline). */
void srv_v2a__reply_error(v2req *rq, int status, const char *msg)
{
	json_t *j = json_pack("{s:s}", "message", msg);
	char *s = j ? json_dumps(j, JSON_COMPACT) : NULL;
	json_decref(j);
	srv_v2a__reply(rq, status, APP_JSON, s);
}

/* A jansson value as json.Encoder writes it (with a newline); steals @j. */
void srv_v2a__reply_json(v2req *rq, int status, json_t *j)
{
	char *s = j ? json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
	json_decref(j);
	if (s == NULL) {
		srv_v2a__reply_error(rq, 500, "Internal Server Error");
		return;
	}
	size_t n = strlen(s);
	char *t = realloc(s, n + 2);
	if (t == NULL) {
		free(s);
		srv_v2a__reply_error(rq, 500, "Internal Server Error");
		return;
	}
	t[n] = '\n';
	t[n + 1] = '\0';
	srv_v2a__reply(rq, status, APP_JSON, t);
}

/* A body that is already JSON (malloc'd @s), with json.Encoder's newline. */
void srv_v2a__reply_json_text(v2req *rq, int status, char *s)
{
	if (s == NULL) {
		srv_v2a__reply_error(rq, 500, "Internal Server Error");
		return;
	}
	json_t *j = json_loads(s, JSON_DECODE_ANY, NULL);
	free(s);
	srv_v2a__reply_json(rq, status, j);
}

/* Go's allowMethod: 405 "Method Not Allowed" with Allow: the list. */
bool srv_v2a__allow_method(v2req *rq, const char *allow_list, ...)
{
	va_list ap;
	va_start(ap, allow_list);
	const char *m;
	bool ok = false;
	while ((m = va_arg(ap, const char *)) != NULL)
		if (strcmp(rq->method, m) == 0)
			ok = true;
	va_end(ap);
	if (!ok) {
		srv_v2a__reply(rq, 405, TEXT_PLAIN, strdup("Method Not Allowed\n"));
		rq->nosniff = true;
		rq->allow = allow_list;
	}
	return ok;
}

void srv_v2a__reply_not_found_page(v2req *rq)
{
	srv_v2a__reply(rq, 404, TEXT_PLAIN, strdup("404 page not found\n"));
	rq->nosniff = true;
}

/* ---- /v2/members, /v2/machines ---------------------------------------------------------- */

static json_t *strs_json(char *const *v, size_t n)
{
	json_t *a = json_array();
	for (size_t i = 0; a != NULL && i < n; i++)
		json_array_append_new(a, json_string(v[i]));
	return a;
}

static json_t *member_json(const Etcdserverpb__Member *m)
{
	char id[24];
	snprintf(id, sizeof id, "%" PRIx64, m->id);
	json_t *o = json_object();
	json_object_set_new(o, "id", json_string(id));
	json_object_set_new(o, "name", json_string(m->name ? m->name : ""));
	json_object_set_new(o, "peerURLs", strs_json(m->peerurls, m->n_peerurls));
	json_object_set_new(o, "clientURLs", strs_json(m->clienturls, m->n_clienturls));
	return o;
}

/* Content-Type must be application/json (parameters ignored). */
static bool json_body(v2req *rq)
{
	char ct[128] = "";
	if (rq->ctype != NULL)
		snprintf(ct, sizeof ct, "%s", rq->ctype);
	char *semi = strchr(ct, ';');
	if (semi != NULL) {
		*semi = '\0';
		char *s = ct;
		while (*s == ' ' || *s == '\t')
			s++;
		memmove(ct, s, strlen(s) + 1);
		size_t n = strlen(ct);
		while (n > 0 && (ct[n - 1] == ' ' || ct[n - 1] == '\t'))
			ct[--n] = '\0';
		for (char *p = ct; *p; p++)
			if (*p >= 'A' && *p <= 'Z')
				*p = (char)(*p - 'A' + 'a');
	}
	if (strcmp(ct, "application/json") != 0) {
		char msg[200];
		snprintf(msg, sizeof msg, "Bad Content-Type %s, accept application/json", ct);
		srv_v2a__reply_error(rq, 415, msg);
		return false;
	}
	return true;
}

/* A 400 for a body that is not a JSON object, in the words of Go's decoder
 * for the common cases (empty input, a character no JSON value starts with). */
static void go_json_error(v2req *rq, json_t *parsed)
{
	const char *p = rq->body ? rq->body : "";
	size_t i = 0;
	while (i < rq->len && (p[i] == ' ' || p[i] == '\t' || p[i] == '\n' || p[i] == '\r'))
		i++;
	char msg[128];
	if (i >= rq->len)
		snprintf(msg, sizeof msg, "unexpected end of JSON input");
	else if (parsed != NULL)
		snprintf(msg, sizeof msg, "json: cannot unmarshal %s into Go value of type struct",
		         json_is_array(parsed)     ? "array"
		         : json_is_string(parsed)  ? "string"
		         : json_is_number(parsed)  ? "number"
		         : json_is_boolean(parsed) ? "bool"
		                                   : "null");
	else if (strchr("{[\"-0123456789tfn", p[i]) == NULL)
		snprintf(msg, sizeof msg, "invalid character '%c' looking for beginning of value",
		         p[i]);
	else
		snprintf(msg, sizeof msg, "unexpected end of JSON input");
	srv_v2a__reply_error(rq, 400, msg);
}

/* etcd's types.NewURLs checks of one URL: true with a 400 set when @u fails. */
static bool url_error(v2req *rq, const char *u)
{
	char msg[600];
	const char *sep = strstr(u, "://");
	size_t sl = sep ? (size_t)(sep - u) : 0;
	bool scheme_ok = sep != NULL && ((sl == 4 && strncmp(u, "http", 4) == 0) ||
	                                 (sl == 5 && strncmp(u, "https", 5) == 0) ||
	                                 (sl == 4 && strncmp(u, "unix", 4) == 0) ||
	                                 (sl == 5 && strncmp(u, "unixs", 5) == 0));
	if (!scheme_ok) {
		snprintf(msg, sizeof msg, "URL scheme must be http, https, unix, or unixs: %.500s",
		         u);
		srv_v2a__reply_error(rq, 400, msg);
		return true;
	}
	const char *host = sep + 3;
	const char *slash = strchr(host, '/');
	size_t hl = slash ? (size_t)(slash - host) : strlen(host);
	const char *colon = memchr(host, ':', hl);
	if (hl > 0 && host[0] == '[') { /* [v6]:port */
		const char *rb = memchr(host, ']', hl);
		colon = rb != NULL && rb + 1 < host + hl && rb[1] == ':' ? rb + 1 : NULL;
	}
	if (colon == NULL || colon + 1 >= host + hl) {
		snprintf(msg, sizeof msg,
		         "URL address does not have the form \"host:port\": %.500s", u);
		srv_v2a__reply_error(rq, 400, msg);
		return true;
	}
	if (slash != NULL && slash[1] != '\0') {
		snprintf(msg, sizeof msg, "URL must not contain a path: %.500s", u);
		srv_v2a__reply_error(rq, 400, msg);
		return true;
	}
	return false;
}

/* {"peerURLs":[...]} into a malloc'd vector; a 400 on failure. */
static char **parse_peer_urls(v2req *rq, size_t *n)
{
	*n = 0;
	json_error_t je;
	json_t *j = json_loadb(rq->body ? rq->body : "", rq->len, JSON_DECODE_ANY, &je);
	if (j == NULL || !json_is_object(j)) {
		go_json_error(rq, j);
		json_decref(j);
		return NULL;
	}
	json_t *arr = json_object_get(j, "peerURLs");
	size_t cnt = json_is_array(arr) ? json_array_size(arr) : 0;
	char **v = calloc(cnt + 1, sizeof *v);
	for (size_t i = 0; v != NULL && i < cnt; i++) {
		json_t *s = json_array_get(arr, i);
		if (!json_is_string(s)) {
			srv_v2a__reply_error(rq, 400,
			                     "json: cannot unmarshal into peerURLs of type string");
			goto fail;
		}
		if ((v[i] = strdup(json_string_value(s))) == NULL)
			goto fail;
		(*n)++;
	}
	for (size_t i = 0; v != NULL && i < *n; i++)
		if (url_error(rq, v[i]))
			goto fail;
	if (v == NULL || !ec_peer_urls_valid(v, *n)) {
		if (v != NULL && rq->status == 0)
			srv_v2a__reply_error(rq, 400, "etcdserver: given member URLs are invalid");
		goto fail;
	}
	json_decref(j);
	return v;
fail:
	if (rq->status == 0)
		srv_v2a__reply_error(rq, 500, "Internal Server Error");
	for (size_t i = 0; v != NULL && i < cnt; i++)
		free(v[i]);
	free(v);
	json_decref(j);
	*n = 0;
	return NULL;
}

static void strv_free(char **v, size_t n)
{
	for (size_t i = 0; v != NULL && i < n; i++)
		free(v[i]);
	free(v);
}

/* A wait for a node callback, shared with the node thread (two references). */
typedef struct node_wait {
	srv_waitone base; /* first: the callback gets the node_wait */
	Metastore__MemberSet *set;
	Metastore__InternalRequest ir; /* a proposal's request (MemberUpdate) */
	Metastore__MemberUpdate mu_req;
	char **urls;
	size_t n_urls;
} node_wait;

static void node_wait_release(srv_waitone *base)
{
	node_wait *w = (node_wait *)base;
	if (w->set != NULL)
		metastore__member_set__free_unpacked(w->set, NULL);
	strv_free(w->urls, w->n_urls);
	free(w);
}

static void node_wait_unref(node_wait *w)
{
	srv_waitone_unref(&w->base);
}

static node_wait *node_wait_new(void)
{
	node_wait *w = calloc(1, sizeof *w);
	if (w != NULL)
		srv_waitone_init(&w->base, node_wait_release);
	return w;
}

static void node_done(void *ctx, int err, void *resp)
{
	node_wait *w = ctx;
	w->set = resp;
	srv_waitone_post(&w->base, err);
}

/* Wait for @w's callback; returns its error (EC_TIMEOUT if it never came). */
static int node_wait_for(node_wait *w)
{
	return srv_waitone_wait(&w->base, SRV_V2A_WAIT_MS, EC_TIMEOUT);
}

/* An error of a membership change as etcd's v2 members handler answers it. */
static void member_error(v2req *rq, int err, uint64_t id)
{
	char msg[128];
	switch (err) {
	case EC_MEMBER_EXIST:
		srv_v2a__reply_error(rq, 409, "membership: ID exists");
		break;
	case EC_PEER_URL_EXIST:
		srv_v2a__reply_error(rq, 409, "membership: peerURL exists");
		break;
	case EC_MEMBER_NOT_FOUND:
		if (ec_cluster_is_removed(rq->a->app->cluster, id)) {
			snprintf(msg, sizeof msg, "Member permanently removed: %" PRIx64, id);
			srv_v2a__reply_error(rq, 410, msg);
		} else {
			snprintf(msg, sizeof msg, "No such member: %" PRIx64, id);
			srv_v2a__reply_error(rq, 404, msg);
		}
		break;
	default:
		srv_log_warn("v2 members request failed", SRV_LF_STR("error", ec_strerror(err)));
		srv_v2a__reply_error(rq, 500, "Internal Server Error");
		break;
	}
}

/* etcd's getID: the hex id after /v2/members/; false with the reply set. */
static bool member_id(v2req *rq, const char *rest, uint64_t *id)
{
	if (rest[0] == '\0') {
		srv_v2a__reply(rq, 405, TEXT_PLAIN, strdup("Method Not Allowed\n"));
		rq->nosniff = true;
		return false;
	}
	char *end = NULL;
	errno = 0;
	unsigned long long v = strtoull(rest, &end, 16);
	if (errno != 0 || end == rest || *end != '\0' || rest[0] == '-' || rest[0] == '+' ||
	    rest[0] == ' ') {
		char msg[300];
		snprintf(msg, sizeof msg, "No such member: %.200s", rest);
		srv_v2a__reply_error(rq, 404, msg);
		return false;
	}
	*id = (uint64_t)v;
	return true;
}

static void members_get(v2req *rq, const char *rest)
{
	srv_app *app = rq->a->app;
	if (rest[0] == '\0') {
		Metastore__MemberSet *set = ec_cluster_copy(app->cluster);
		if (set == NULL) {
			srv_v2a__reply_error(rq, 500, "Internal Server Error");
			return;
		}
		json_t *arr = json_array();
		for (size_t i = 0; i < set->n_members; i++)
			json_array_append_new(arr, member_json(set->members[i]));
		metastore__member_set__free_unpacked(set, NULL);
		json_t *o = json_object();
		json_object_set_new(o, "members", arr);
		srv_v2a__reply_json(rq, 200, o);
		return;
	}
	if (strcmp(rest, "leader") == 0) {
		srv_node_status st;
		srv_node_get_status(app->node, &st);
		if (st.lead == 0) {
			srv_v2a__reply_error(rq, 503, "During election");
			return;
		}
		Metastore__MemberSet *set = ec_cluster_copy(app->cluster);
		if (set == NULL) {
			srv_v2a__reply_error(rq, 500, "Internal Server Error");
			return;
		}
		json_t *o = NULL;
		for (size_t i = 0; i < set->n_members; i++)
			if (set->members[i]->id == st.lead)
				o = member_json(set->members[i]);
		metastore__member_set__free_unpacked(set, NULL);
		if (o == NULL) { /* etcd would encode a nil member; say so plainly */
			srv_v2a__reply_error(rq, 503, "During election");
			return;
		}
		srv_v2a__reply_json(rq, 200, o);
		return;
	}
	srv_v2a__reply_error(rq, 404, "Not found");
}

static void members_post(v2req *rq)
{
	srv_app *app = rq->a->app;
	if (!json_body(rq))
		return;
	size_t n = 0;
	char **urls = parse_peer_urls(rq, &n);
	if (urls == NULL)
		return;
	Etcdserverpb__Member m = ETCDSERVERPB__MEMBER__INIT;
	m.id = ec_member_id((const char *const *)urls, n, app->token, (int64_t)time(NULL));
	m.peerurls = urls;
	m.n_peerurls = n;
	node_wait *w = node_wait_new();
	int err =
	        w != NULL ? srv_node_member(app->node, SRV_MEMBER_ADD, &m, node_done, w) : EC_NOMEM;
	if (err != EC_OK) {
		if (w != NULL)
			srv_waitone_abandon(&w->base);
		member_error(rq, err, m.id);
		strv_free(urls, n);
		return;
	}
	err = node_wait_for(w);
	if (err != EC_OK) {
		member_error(rq, err, m.id);
	} else {
		json_t *o = member_json(&m);
		srv_v2a__reply_json(rq, 201, o);
	}
	node_wait_unref(w);
	strv_free(urls, n);
}

/* Answer a member change of @id whose start returned @err, with its waiter @w
 * (NULL when none could be made): 204 once applied, else etcd's error. */
static void member_finish(v2req *rq, node_wait *w, int err, uint64_t id)
{
	if (err == EC_OK) {
		err = node_wait_for(w);
		node_wait_unref(w);
	} else if (w != NULL) {
		srv_waitone_abandon(&w->base);
	}
	if (err != EC_OK)
		member_error(rq, err, id);
	else
		srv_v2a__reply(rq, 204, NULL, NULL);
}

static void members_delete(v2req *rq, const char *rest)
{
	uint64_t id;
	if (!member_id(rq, rest, &id))
		return;
	srv_app *app = rq->a->app;
	if (ec_cluster_is_removed(app->cluster, id)) {
		member_error(rq, EC_MEMBER_NOT_FOUND, id);
		return;
	}
	Etcdserverpb__Member m = ETCDSERVERPB__MEMBER__INIT;
	m.id = id;
	node_wait *w = node_wait_new();
	int err = w != NULL ? srv_node_member(app->node, SRV_MEMBER_REMOVE, &m, node_done, w)
	                    : EC_NOMEM;
	member_finish(rq, w, err, id);
}

static void members_put(v2req *rq, const char *rest)
{
	uint64_t id;
	if (!member_id(rq, rest, &id) || !json_body(rq))
		return;
	size_t n = 0;
	char **urls = parse_peer_urls(rq, &n);
	if (urls == NULL)
		return;
	srv_app *app = rq->a->app;
	int err = ec_cluster_check_update(app->cluster, id, urls, n);
	if (err != EC_OK) {
		member_error(rq, err, id);
		strv_free(urls, n);
		return;
	}
	node_wait *w = node_wait_new();
	if (w == NULL) {
		member_error(rq, EC_NOMEM, id);
		strv_free(urls, n);
		return;
	}
	Metastore__InternalRequest ir = METASTORE__INTERNAL_REQUEST__INIT;
	Metastore__MemberUpdate mu = METASTORE__MEMBER_UPDATE__INIT;
	w->ir = ir;
	w->mu_req = mu;
	w->urls = urls;
	w->n_urls = n;
	w->mu_req.member_id = id;
	w->mu_req.peer_urls = urls;
	w->mu_req.n_peer_urls = n;
	w->ir.request_case = METASTORE__INTERNAL_REQUEST__REQUEST_MEMBER_UPDATE;
	w->ir.member_update = &w->mu_req;
	member_finish(rq, w, srv_node_propose(app->node, &w->ir, node_done, w), id);
}

static void route_members(v2req *rq)
{
	if (!srv_v2a__allow_method(rq, "GET,POST,DELETE,PUT", "GET", "POST", "DELETE", "PUT", NULL))
		return;
	if (!srv_v2a__write_root_access(rq)) {
		srv_v2a__reply_no_auth(rq);
		return;
	}
	rq->cluster_hdr = true;
	const char *rest = rq->url + strlen("/v2/members");
	if (*rest == '/')
		rest++;
	if (strcmp(rq->method, "GET") == 0)
		members_get(rq, rest);
	else if (strcmp(rq->method, "POST") == 0)
		members_post(rq);
	else if (strcmp(rq->method, "DELETE") == 0)
		members_delete(rq, rest);
	else
		members_put(rq, rest);
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static void route_machines(v2req *rq)
{
	if (!srv_v2a__allow_method(rq, "GET,HEAD", "GET", "HEAD", NULL))
		return;
	Metastore__MemberSet *set = ec_cluster_copy(rq->a->app->cluster);
	if (set == NULL) {
		srv_v2a__reply_error(rq, 500, "Internal Server Error");
		return;
	}
	size_t total = 0;
	for (size_t i = 0; i < set->n_members; i++)
		total += set->members[i]->n_clienturls;
	char **all = calloc(total + 1, sizeof *all);
	size_t k = 0;
	for (size_t i = 0; all != NULL && i < set->n_members; i++)
		for (size_t j = 0; j < set->members[i]->n_clienturls; j++)
			all[k++] = set->members[i]->clienturls[j];
	if (all != NULL)
		qsort(all, k, sizeof *all, cmp_str); /* etcd's ClientURLs are sorted */
	srv_mbuf b = {0};
	srv_mbuf_printf(&b, "%s", "");
	for (size_t i = 0; all != NULL && i < k; i++)
		srv_mbuf_printf(&b, "%s%s", i ? ", " : "", all[i]);
	free(all);
	metastore__member_set__free_unpacked(set, NULL);
	if (b.oom) {
		srv_mbuf_free(&b);
		srv_v2a__reply_error(rq, 500, "Internal Server Error");
		return;
	}
	srv_v2a__reply(rq, 200, TEXT_PLAIN, b.p != NULL ? b.p : strdup(""));
}

/* ---- /v2/stats ------------------------------------------------------------------------- */

/* Go's time.Time JSON (RFC 3339 with nanoseconds, trailing zeros dropped). */
static json_t *time_json(const struct timespec *ts)
{
	struct tm tm;
	time_t s = ts->tv_sec;
	gmtime_r(&s, &tm);
	char base[40], frac[16] = "";
	strftime(base, sizeof base, "%Y-%m-%dT%H:%M:%S", &tm);
	if (ts->tv_nsec != 0) {
		snprintf(frac, sizeof frac, ".%09ld", ts->tv_nsec);
		size_t n = strlen(frac);
		while (n > 1 && frac[n - 1] == '0')
			frac[--n] = '\0';
	}
	char out[64];
	snprintf(out, sizeof out, "%s%sZ", base, frac);
	return json_string(out);
}

/* Go's Duration.String for a non-negative duration of @ns. */
static void go_duration(int64_t ns, char *out, size_t cap)
{
	if (ns == 0) {
		snprintf(out, cap, "0s");
		return;
	}
	if (ns < 1000) {
		snprintf(out, cap, "%" PRId64 "ns", ns);
		return;
	}
	if (ns < 1000000) {
		snprintf(out, cap, "%g\xc2\xb5s", (double)ns / 1e3);
		return;
	}
	if (ns < 1000000000) {
		snprintf(out, cap, "%gms", (double)ns / 1e6);
		return;
	}
	int64_t h = ns / 3600000000000LL;
	int64_t m = ns / 60000000000LL % 60;
	int64_t sec = ns / 1000000000LL % 60;
	int64_t frac = ns % 1000000000LL;
	char fs[16] = "";
	if (frac != 0) {
		snprintf(fs, sizeof fs, ".%09" PRId64, frac);
		size_t n = strlen(fs);
		while (n > 1 && fs[n - 1] == '0')
			fs[--n] = '\0';
	}
	if (h > 0)
		snprintf(out, cap, "%" PRId64 "h%" PRId64 "m%" PRId64 "%ss", h, m, sec, fs);
	else if (m > 0)
		snprintf(out, cap, "%" PRId64 "m%" PRId64 "%ss", m, sec, fs);
	else
		snprintf(out, cap, "%" PRId64 "%ss", sec, fs);
}

static void route_stats(v2req *rq)
{
	srv_v2a *a = rq->a;
	srv_app *app = a->app;
	const char *what = rq->url + strlen("/v2/stats/");
	bool self = strcmp(what, "self") == 0, leader = strcmp(what, "leader") == 0,
	     store = strcmp(what, "store") == 0;
	if (!self && !leader && !store) {
		srv_v2a__reply_not_found_page(rq);
		return;
	}
	if (!srv_v2a__allow_method(rq, "GET", "GET", NULL))
		return;
	srv_node_status st;
	srv_node_get_status(app->node, &st);
	char id[24], lead[24];
	snprintf(id, sizeof id, "%" PRIx64, app->member_id);
	snprintf(lead, sizeof lead, "%" PRIx64, st.lead);
	struct timespec now;
	clock_gettime(CLOCK_REALTIME, &now);
	pthread_mutex_lock(&a->mu);
	if (st.lead != a->seen_lead) {
		a->seen_lead = st.lead;
		a->lead_since = now;
	}
	struct timespec since = a->lead_since;
	pthread_mutex_unlock(&a->mu);
	if (store) {
		/* metastore's v2 store keeps no operation counters: zeros, as a fresh etcd */
		static const char *const fields[] = {"getsSuccess",
		                                     "getsFail",
		                                     "setsSuccess",
		                                     "setsFail",
		                                     "deleteSuccess",
		                                     "deleteFail",
		                                     "updateSuccess",
		                                     "updateFail",
		                                     "createSuccess",
		                                     "createFail",
		                                     "compareAndSwapSuccess",
		                                     "compareAndSwapFail",
		                                     "compareAndDeleteSuccess",
		                                     "compareAndDeleteFail",
		                                     "expireCount",
		                                     "watchers"};
		json_t *o = json_object();
		for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++)
			json_object_set_new(o, fields[i], json_integer(0));
		char *s = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
		json_decref(o);
		srv_v2a__reply(rq, 200, APP_JSON,
		               s); /* etcd writes these bytes without a newline */
		return;
	}
	if (self) {
		json_t *o = json_object();
		json_object_set_new(o, "name", json_string(app->name ? app->name : ""));
		json_object_set_new(o, "id", json_string(id));
		json_object_set_new(o, "state",
		                    json_string(st.is_leader   ? "StateLeader"
		                                : st.lead != 0 ? "StateFollower"
		                                               : "StateCandidate"));
		json_object_set_new(o, "startTime", time_json(&a->start));
		json_t *li = json_object();
		char up[64];
		int64_t ns = (int64_t)(now.tv_sec - since.tv_sec) * 1000000000LL +
		             (now.tv_nsec - since.tv_nsec);
		go_duration(ns > 0 ? ns : 0, up, sizeof up);
		json_object_set_new(li, "leader", json_string(st.lead ? lead : ""));
		json_object_set_new(li, "uptime", json_string(up));
		json_object_set_new(li, "startTime", time_json(&since));
		json_object_set_new(o, "leaderInfo", li);
		/* not counted by metastore's transport: zero */
		json_object_set_new(o, "recvAppendRequestCnt", json_integer(0));
		json_object_set_new(o, "sendAppendRequestCnt", json_integer(0));
		char *s = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
		json_decref(o);
		srv_v2a__reply(rq, 200, APP_JSON, s);
		return;
	}
	if (!st.is_leader) {
		srv_v2a__reply_error(rq, 403, "not current leader");
		return;
	}
	json_t *o = json_object();
	json_object_set_new(o, "leader", json_string(id));
	json_t *fol = json_object();
	Metastore__MemberSet *set = ec_cluster_copy(app->cluster);
	for (size_t i = 0; set != NULL && i < set->n_members; i++) {
		if (set->members[i]->id == app->member_id)
			continue;
		char fid[24];
		snprintf(fid, sizeof fid, "%" PRIx64, set->members[i]->id);
		/* latencies and counts are not measured by metastore: zero */
		json_t *f = json_pack("{s:{s:f,s:f,s:f,s:f,s:f},s:{s:i,s:i}}", "latency", "current",
		                      0.0, "average", 0.0, "standardDeviation", 0.0, "minimum", 0.0,
		                      "maximum", 0.0, "counts", "fail", 0, "success", 0);
		json_object_set_new(fol, fid, f);
	}
	if (set != NULL)
		metastore__member_set__free_unpacked(set, NULL);
	json_object_set_new(o, "followers", fol);
	char *s = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
	json_decref(o);
	srv_v2a__reply(rq, 200, APP_JSON, s);
}

static void route(v2req *rq)
{
	if (rq->too_big) {
		srv_v2a__reply_error(rq, 413, "request body too large");
		return;
	}
	if (has_prefix_path(rq->url, "/v2/members"))
		route_members(rq);
	else if (strcmp(rq->url, "/v2/machines") == 0)
		route_machines(rq);
	else if (strncmp(rq->url, "/v2/stats/", 10) == 0)
		route_stats(rq);
	else
		srv_v2a__route_auth(rq);
}

/* ---- libmicrohttpd glue ---------------------------------------------------------------- */

static void worker(void *arg)
{
	v2req *rq = arg;
	srv_v2a *a = rq->a;
	route(rq);
	if (rq->status == 0)
		srv_v2a__reply_error(rq, 500, "Internal Server Error");
	pthread_mutex_lock(&a->mu);
	rq->state = RQ_DONE;
	MHD_resume_connection(rq->c);
	pthread_mutex_unlock(&a->mu);
}

static bool is_mine(srv_v2a *a, const void *p)
{
	for (v2req *r = a->reqs; r != NULL; r = r->next)
		if (r == p)
			return true;
	return false;
}

static void unlink_req(srv_v2a *a, v2req *rq)
{
	for (v2req **pp = &a->reqs; *pp != NULL; pp = &(*pp)->next)
		if (*pp == rq) {
			*pp = rq->next;
			return;
		}
}

static char *dup_header(struct MHD_Connection *c, const char *name)
{
	const char *v = MHD_lookup_connection_value(c, MHD_HEADER_KIND, name);
	return v != NULL ? strdup(v) : NULL;
}

static enum MHD_Result queue(srv_v2a *a, struct MHD_Connection *c, v2req *rq)
{
	const char *body = rq->resp != NULL ? rq->resp : "";
	size_t len = strlen(body);
	struct MHD_Response *resp =
	        MHD_create_response_from_buffer(len, (void *)body, MHD_RESPMEM_MUST_COPY);
	if (resp == NULL)
		return MHD_NO;
	if (rq->resp_ctype != NULL)
		MHD_add_response_header(resp, "Content-Type", rq->resp_ctype);
	if (rq->nosniff)
		MHD_add_response_header(resp, "X-Content-Type-Options", "nosniff");
	if (rq->allow != NULL)
		MHD_add_response_header(resp, "Allow", rq->allow);
	if (rq->cluster_hdr) {
		char cid[24];
		snprintf(cid, sizeof cid, "%" PRIx64, a->app->cluster_id);
		MHD_add_response_header(resp, "X-Etcd-Cluster-ID", cid);
	}
	srv_http_cors(resp);
	enum MHD_Result ret = MHD_queue_response(c, (unsigned)rq->status, resp);
	MHD_destroy_response(resp);
	return ret;
}

enum MHD_Result srv_v2a_serve(srv_v2a *a, struct MHD_Connection *c, const char *url,
                              const char *method, const char *upload_data, size_t *upload_data_size,
                              void **con_cls, bool tls)
{
	v2req *rq = *con_cls;
	if (rq == NULL) {
		rq = calloc(1, sizeof *rq);
		if (rq == NULL)
			return MHD_NO;
		rq->a = a;
		rq->c = c;
		rq->method = strdup(method);
		rq->url = strdup(url);
		if (rq->method == NULL || rq->url == NULL) {
			req_free(rq);
			return MHD_NO;
		}
		pthread_mutex_lock(&a->mu);
		rq->next = a->reqs;
		a->reqs = rq;
		pthread_mutex_unlock(&a->mu);
		*con_cls = rq;
		return MHD_YES;
	}
	if (*upload_data_size != 0) {
		size_t n = *upload_data_size;
		*upload_data_size = 0;
		if (rq->too_big || rq->len + n > MAX_BODY) {
			rq->too_big = true;
			return MHD_YES;
		}
		char *nb = realloc(rq->body, rq->len + n + 1);
		if (nb == NULL)
			return MHD_NO;
		memcpy(nb + rq->len, upload_data, n);
		rq->body = nb;
		rq->len += n;
		rq->body[rq->len] = '\0';
		return MHD_YES;
	}
	if (rq->state == RQ_READING) {
		rq->authz = dup_header(c, "Authorization");
		rq->ctype = dup_header(c, "Content-Type");
		if (tls)
			rq->n_cns = srv_v2a__peer_cns(c, rq->cns, SRV_V2A_MAX_CNS);
		/* refused when stopping or with enough workers running */
		if (srv_jobs_enter(&a->jobs) == SRV_JOBS_OK) {
			/* suspended before the worker exists: its resume comes after */
			pthread_mutex_lock(&a->mu);
			rq->state = RQ_RUNNING;
			MHD_suspend_connection(c);
			pthread_mutex_unlock(&a->mu);
			if (srv_jobs_run(&a->jobs, worker, rq) == SRV_JOBS_OK)
				return MHD_YES;
			pthread_mutex_lock(&a->mu);
			MHD_resume_connection(c);
			pthread_mutex_unlock(&a->mu);
			srv_jobs_leave(&a->jobs);
		}
		srv_v2a__reply_error(rq, 503, "Service Unavailable");
		pthread_mutex_lock(&a->mu);
		rq->state = RQ_DONE;
		pthread_mutex_unlock(&a->mu);
	}
	pthread_mutex_lock(&a->mu);
	rq_state st = rq->state;
	pthread_mutex_unlock(&a->mu);
	if (st != RQ_DONE)
		return MHD_YES; /* not expected: resumed before the worker finished */
	enum MHD_Result ret = queue(a, c, rq);
	pthread_mutex_lock(&a->mu);
	unlink_req(a, rq);
	pthread_mutex_unlock(&a->mu);
	req_free(rq);
	*con_cls = NULL;
	return ret;
}

void srv_v2a_completed(srv_v2a *a, void **con_cls)
{
	if (a == NULL || con_cls == NULL || *con_cls == NULL)
		return;
	pthread_mutex_lock(&a->mu);
	v2req *rq = *con_cls;
	bool mine = is_mine(a, rq);
	bool free_it = mine && rq->state != RQ_RUNNING;
	if (free_it)
		unlink_req(a, rq);
	pthread_mutex_unlock(&a->mu);
	if (!mine)
		return;
	*con_cls = NULL;
	if (free_it)
		req_free(rq);
	/* a running request is freed with the handle (its worker still writes to it) */
}

/* ---- srv_http's extension slot ------------------------------------------------------- */

static enum MHD_Result ext_serve(void *ctx, struct MHD_Connection *c, const char *url,
                                 const char *method, const char *upload_data,
                                 size_t *upload_data_size, void **con_cls, bool tls)
{
	return srv_v2a_serve(ctx, c, url, method, upload_data, upload_data_size, con_cls, tls);
}

static void ext_completed(void *ctx, void **con_cls)
{
	srv_v2a_completed(ctx, con_cls);
}

static void ext_quiesce(void *ctx)
{
	srv_v2a_quiesce(ctx);
}

void srv_v2a_http_ext(srv_v2a *a, srv_http_ext *out)
{
	*out = (srv_http_ext){srv_v2a_path, ext_serve, ext_completed, ext_quiesce, a};
}

bool srv_v2a_key_check(void *ctx, struct MHD_Connection *c, const char *method, const char *key,
                       bool recursive)
{
	return srv_v2a_key_allowed(ctx, c, method, key, recursive);
}
