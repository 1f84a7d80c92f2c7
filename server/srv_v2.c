/*
 * srv_v2.c: /v2/keys over libmicrohttpd and the v2 proposals (srv_v2.h).
 *
 * One v2_req per HTTP request, kept in *con_cls and in the module's list (so
 * that completed() can tell ours from other handlers' and quiesce can find
 * suspended ones). Its state moves NEW → (WAITING: suspended on a proposal,
 * a ReadIndex round or a watcher) → DONE (answer ready, connection resumed)
 * → SENT. The node thread fills the answer under r->mu and resumes; the next
 * access-handler call queues it.
 */
#include "server/srv_v2.h"

#include <errno.h>
#include <poll.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "etcdcompat/ec_errors.h"
#include "server/srv_log.h"

#define KEYS_PREFIX "/v2/keys"
#define SYNC_PERIOD_MS 500
#define HANGUP_PERIOD_MS 250 /* how often suspended watches look for a hang-up */
#define MAX_FORM 64

/* REQ_STREAM: a watch whose headers went out at once (etcd flushes them
 * before the event: clients time out waiting for headers); its body comes
 * from stream_read once the watcher fires. */
typedef enum { REQ_NEW, REQ_WAITING, REQ_STREAM, REQ_DONE, REQ_SENT } req_state;

typedef struct v2_req {
	srv_v2 *v;
	struct MHD_Connection *conn;
	pthread_mutex_t mu;
	req_state state;
	char *body;
	size_t blen;
	bool body_oom;
	/* the request */
	Metastore__V2Request rq;
	char *path, *val, *prev_value;
	bool head;
	protobuf_c_boolean no_value; /* noValueOnSuccess */
	uint64_t watch_id;
	bool watching;
	uint64_t watch_index; /* X-Etcd-Index of a watch: the index when it began */
	size_t sent;          /* bytes of the event body stream_read handed out */
	/* the answer */
	Metastore__V2Response *resp;
	int err; /* an ec_err when no resp */
	struct v2_req *next, *prev;
} v2_req;

struct srv_v2 {
	srv_app *app;
	pthread_mutex_t mu; /* the list, stopping */
	v2_req *reqs;
	bool stopping;
	bool (*key_check)(void *ctx, struct MHD_Connection *c, const char *method, const char *key,
	                  bool recursive);
	void *key_ctx;
	pthread_t timer;
	bool timer_started;
	pthread_cond_t cv;
	bool sync_in_flight;
	Metastore__V2Request sync_req;
};

static int64_t wall_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* ---- proposals ------------------------------------------------------------------ */

typedef struct v2_prop {
	Metastore__InternalRequest ir;
	srv_v2_done_fn fn;
	void *ctx;
} v2_prop;

static void prop_done(void *ctx, int err, void *resp)
{
	v2_prop *p = ctx;
	if (err != EC_OK) {
		ec_msg_free(resp);
		resp = NULL;
	}
	p->fn(p->ctx, err, resp);
	free(p);
}

int srv_v2_do(srv_app *app, Metastore__V2Request *req, srv_v2_done_fn fn, void *ctx)
{
	v2_prop *p = malloc(sizeof *p);
	if (p == NULL)
		return EC_NOMEM;
	metastore__internal_request__init(&p->ir);
	if (req->time == 0)
		req->time = wall_ns();
	p->ir.request_case = METASTORE__INTERNAL_REQUEST__REQUEST_V2;
	p->ir.v2 = req;
	p->fn = fn;
	p->ctx = ctx;
	int err = srv_node_propose(app->node, &p->ir, prop_done, p);
	if (err != EC_OK)
		free(p);
	return err;
}

/* ---- the member records under /0 ------------------------------------------------ */

/* A JSON array of @n strings. */
static void json_urls(char *out, size_t cap, size_t *at, char **urls, size_t n)
{
	*at += (size_t)snprintf(out + *at, *at < cap ? cap - *at : 0, "[");
	for (size_t i = 0; i < n; i++)
		*at += (size_t)snprintf(out + *at, *at < cap ? cap - *at : 0, "%s\"%s\"", i ? "," : "",
		                        urls[i]);
	*at += (size_t)snprintf(out + *at, *at < cap ? cap - *at : 0, "]");
}

/* Put @val at @path unless it is there already (applied in the open group). */
static void put_if_changed(ec_v2_store *s, const char *path, const char *val)
{
	Metastore__V2Response *cur = NULL;
	if (ec_v2_get(s, path, false, false, 0, &cur) == EC_OK && cur != NULL && cur->code == 0 &&
	    cur->value != NULL && strcmp(cur->value, val) == 0) {
		ec_msg_free(cur);
		return;
	}
	ec_msg_free(cur);
	Metastore__V2Request rq = METASTORE__V2_REQUEST__INIT;
	rq.method = (char *)"PUT";
	rq.path = (char *)path;
	rq.val = (char *)val;
	Metastore__V2Response *out = NULL;
	if (ec_v2_apply(s, &rq, &out) != 0)
		srv_logf(SRV_LOG_WARN, "v2 store: cannot record %s", path);
	ec_msg_free(out);
}

void srv_v2_sync_members(srv_app *app)
{
	if (app->v2store == NULL || app->cluster == NULL)
		return;
	Metastore__MemberSet *set = ec_cluster_copy(app->cluster);
	if (set == NULL)
		return;
	for (size_t i = 0; i < set->n_members; i++) {
		const Etcdserverpb__Member *m = set->members[i];
		char path[96], val[4096];
		size_t at = 0;
		snprintf(path, sizeof path, "/0/members/%" PRIx64 "/raftAttributes", m->id);
		at += (size_t)snprintf(val, sizeof val, "{\"peerURLs\":");
		json_urls(val, sizeof val, &at, m->peerurls, m->n_peerurls);
		at += (size_t)snprintf(val + at, at < sizeof val ? sizeof val - at : 0, "%s}",
		                       m->islearner ? ",\"isLearner\":true" : "");
		if (at < sizeof val)
			put_if_changed(app->v2store, path, val);
		if (m->name == NULL || m->name[0] == '\0')
			continue; /* not published yet */
		at = 0;
		snprintf(path, sizeof path, "/0/members/%" PRIx64 "/attributes", m->id);
		at += (size_t)snprintf(val, sizeof val, "{\"name\":\"%s\",\"clientURLs\":", m->name);
		json_urls(val, sizeof val, &at, m->clienturls, m->n_clienturls);
		at += (size_t)snprintf(val + at, at < sizeof val ? sizeof val - at : 0, "}");
		if (at < sizeof val)
			put_if_changed(app->v2store, path, val);
	}
	metastore__member_set__free_unpacked(set, NULL);
}

static void drop_hung_up(srv_v2 *v);

/* ---- the SYNC timer (leader only) ----------------------------------------------- */

static void sync_done(void *ctx, int err, Metastore__V2Response *resp)
{
	srv_v2 *v = ctx;
	(void)err;
	ec_msg_free(resp);
	pthread_mutex_lock(&v->mu);
	v->sync_in_flight = false;
	pthread_mutex_unlock(&v->mu);
}

static void *timer_main(void *arg)
{
	srv_v2 *v = arg;
	unsigned ticks = 0;
	pthread_mutex_lock(&v->mu);
	while (!v->stopping) {
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_nsec += HANGUP_PERIOD_MS * 1000000L;
		ts.tv_sec += ts.tv_nsec / 1000000000L;
		ts.tv_nsec %= 1000000000L;
		pthread_cond_timedwait(&v->cv, &v->mu, &ts);
		if (v->stopping)
			continue;
		drop_hung_up(v); /* with v->mu held */
		if (++ticks < SYNC_PERIOD_MS / HANGUP_PERIOD_MS || v->sync_in_flight)
			continue;
		ticks = 0;
		pthread_mutex_unlock(&v->mu);
		srv_node_status st;
		srv_node_get_status(v->app->node, &st);
		int64_t next = ec_v2_next_expiry(v->app->v2store);
		int64_t now = wall_ns();
		bool go = st.is_leader && next != 0 && next <= now;
		pthread_mutex_lock(&v->mu);
		if (go && !v->stopping) {
			metastore__v2_request__init(&v->sync_req);
			v->sync_req.method = (char *)"SYNC";
			v->sync_req.time = now;
			v->sync_in_flight = true;
			pthread_mutex_unlock(&v->mu);
			int err = srv_v2_do(v->app, &v->sync_req, sync_done, v);
			pthread_mutex_lock(&v->mu);
			if (err != EC_OK)
				v->sync_in_flight = false;
		}
	}
	pthread_mutex_unlock(&v->mu);
	return NULL;
}

int srv_v2_new(srv_app *app, srv_v2 **out)
{
	*out = NULL;
	srv_v2 *v = calloc(1, sizeof *v);
	if (v == NULL)
		return -1;
	v->app = app;
	pthread_mutex_init(&v->mu, NULL);
	pthread_cond_init(&v->cv, NULL);
	if (pthread_create(&v->timer, NULL, timer_main, v) != 0) {
		srv_v2_free(v);
		return -1;
	}
	v->timer_started = true;
	*out = v;
	return 0;
}

void srv_v2_free(srv_v2 *v)
{
	if (v == NULL)
		return;
	pthread_mutex_lock(&v->mu);
	v->stopping = true;
	pthread_cond_broadcast(&v->cv);
	pthread_mutex_unlock(&v->mu);
	if (v->timer_started)
		pthread_join(v->timer, NULL);
	/* a SYNC still in flight completes (EC_STOPPED at the latest) when the node
	 * stops, which happens after this: wait for it briefly */
	for (int i = 0; i < 500; i++) {
		pthread_mutex_lock(&v->mu);
		bool busy = v->sync_in_flight;
		pthread_mutex_unlock(&v->mu);
		if (!busy)
			break;
		usleep(10000);
	}
	pthread_cond_destroy(&v->cv);
	pthread_mutex_destroy(&v->mu);
	free(v);
}

void srv_v2_set_key_check(srv_v2 *v,
                          bool (*fn)(void *ctx, struct MHD_Connection *c, const char *method,
                                     const char *key, bool recursive),
                          void *ctx)
{
	v->key_check = fn;
	v->key_ctx = ctx;
}

/* ---- requests ------------------------------------------------------------------- */

static void req_free(v2_req *r)
{
	free(r->body);
	free(r->path);
	free(r->val);
	free(r->prev_value);
	ec_msg_free(r->resp);
	pthread_mutex_destroy(&r->mu);
	free(r);
}

/* Answer @r with @resp / @err from another thread (or the handler itself). */
static void finish(v2_req *r, int err, Metastore__V2Response *resp)
{
	pthread_mutex_lock(&r->mu);
	r->err = err;
	r->resp = resp;
	bool resume = r->state == REQ_WAITING;
	r->state = REQ_DONE;
	if (resume) /* under r->mu: never before the matching suspend */
		MHD_resume_connection(r->conn);
	pthread_mutex_unlock(&r->mu);
}

static void on_proposed(void *ctx, int err, Metastore__V2Response *resp)
{
	finish(ctx, err, resp);
}

/* @r's watch is over (an event @ev, or @err): it is no longer watching. */
static void watch_done(v2_req *r, int err, Metastore__V2Response *ev)
{
	pthread_mutex_lock(&r->mu);
	r->watching = false;
	pthread_mutex_unlock(&r->mu);
	finish(r, err, ev);
}

static void on_watch(void *ctx, Metastore__V2Response *ev)
{
	watch_done(ctx, EC_OK, ev);
}

static void local_get(v2_req *r)
{
	Metastore__V2Response *resp = NULL;
	int e = ec_v2_get(r->v->app->v2store, r->path, r->rq.recursive, r->rq.sorted, wall_ns(), &resp);
	finish(r, e, resp);
}

static void on_read(void *ctx, int err)
{
	v2_req *r = ctx;
	if (err != EC_OK)
		finish(r, err, NULL);
	else
		local_get(r);
}

/* ---- form parsing --------------------------------------------------------------- */

typedef struct form {
	const char *k[MAX_FORM];
	const char *val[MAX_FORM];
	size_t n;
	char *owned; /* the decoded body */
} form;

static int hexval(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* Decode application/x-www-form-urlencoded @s in place; false on a bad escape. */
static bool url_decode(char *s)
{
	char *o = s;
	for (char *p = s; *p; p++) {
		if (*p == '+') {
			*o++ = ' ';
		} else if (*p == '%') {
			int h = hexval((unsigned char)p[1]), l = h >= 0 ? hexval((unsigned char)p[2]) : -1;
			if (h < 0 || l < 0)
				return false;
			*o++ = (char)(h * 16 + l);
			p += 2;
		} else {
			*o++ = *p;
		}
	}
	*o = '\0';
	return true;
}

static bool parse_body(form *f, char *body)
{
	f->owned = body;
	char *save = NULL;
	for (char *tok = strtok_r(body, "&", &save); tok; tok = strtok_r(NULL, "&", &save)) {
		char *eq = strchr(tok, '=');
		const char *v = "";
		if (eq) {
			*eq = '\0';
			v = eq + 1;
		}
		if (!url_decode(tok) || !url_decode((char *)v))
			return false;
		if (f->n < MAX_FORM) {
			f->k[f->n] = tok;
			f->val[f->n] = v;
			f->n++;
		}
	}
	return true;
}

static enum MHD_Result collect_query(void *cls, enum MHD_ValueKind kind, const char *key,
                                     const char *value)
{
	form *f = cls;
	(void)kind;
	if (f->n < MAX_FORM) {
		f->k[f->n] = key;
		f->val[f->n] = value ? value : "";
		f->n++;
	}
	return MHD_YES;
}

/* The first value of @k, or NULL when absent. */
static const char *form_get(const form *f, const char *k)
{
	for (size_t i = 0; i < f->n; i++)
		if (strcmp(f->k[i], k) == 0)
			return f->val[i];
	return NULL;
}

/* Go's strconv.ParseBool. */
static bool parse_bool(const char *s, bool *out)
{
	static const char *t[] = {"1", "t", "T", "TRUE", "true", "True"};
	static const char *fl[] = {"0", "f", "F", "FALSE", "false", "False"};
	for (size_t i = 0; i < 6; i++) {
		if (strcmp(s, t[i]) == 0) {
			*out = true;
			return true;
		}
		if (strcmp(s, fl[i]) == 0) {
			*out = false;
			return true;
		}
	}
	return false;
}

static bool parse_u64(const char *s, uint64_t *out)
{
	if (s[0] == '\0' || s[0] == '-' || s[0] == '+')
		return false;
	char *end;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 10);
	if (errno != 0 || *end != '\0')
		return false;
	*out = v;
	return true;
}

/* A request error (etcd's NewRequestError: index 0). */
static void req_error(v2_req *r, int code, const char *cause)
{
	Metastore__V2Response *resp = malloc(sizeof *resp);
	char *j = ec_v2_error_json(code, cause, 0);
	if (resp == NULL || j == NULL) {
		free(resp);
		free(j);
		finish(r, EC_NOMEM, NULL);
		return;
	}
	metastore__v2_response__init(resp);
	resp->code = (uint32_t)code;
	resp->http_status = (uint32_t)ec_v2_error_status(code);
	resp->body = j;
	finish(r, EC_OK, resp);
}

static bool get_flag(v2_req *r, const form *f, const char *name, protobuf_c_boolean *out)
{
	const char *s = form_get(f, name);
	bool b = false;
	*out = 0;
	if (s == NULL)
		return true;
	if (parse_bool(s, &b)) {
		*out = b;
		return true;
	}
	char cause[64];
	snprintf(cause, sizeof cause, "invalid value for \"%s\"", name);
	req_error(r, EC_V2_INVALID_FIELD, cause);
	return false;
}

/* Parse the request (etcd's parseKeyRequest) and start it. */
static void start(v2_req *r, const char *url, const char *method)
{
	srv_v2 *v = r->v;
	form f = {0};
	const char *ct = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, "Content-Type");
	bool form_body = (strcmp(method, "PUT") == 0 || strcmp(method, "POST") == 0) &&
	                 r->body != NULL &&
	                 (ct == NULL || strncasecmp(ct, "application/x-www-form-urlencoded", 33) == 0);
	if (r->body_oom) {
		finish(r, EC_NOMEM, NULL);
		return;
	}
	if (form_body) {
		char *b = r->body;
		r->body = NULL;
		if (!parse_body(&f, b)) {
			free(f.owned);
			req_error(r, EC_V2_INVALID_FORM, "invalid URL escape");
			return;
		}
	}
	MHD_get_connection_values(r->conn, MHD_GET_ARGUMENT_KIND, collect_query, &f);

	Metastore__V2Request *q = &r->rq;
	metastore__v2_request__init(q);
	const char *key = url + strlen(KEYS_PREFIX);
	size_t kl = strlen(key);
	r->path = malloc(kl + 4);
	if (r->path == NULL) {
		free(f.owned);
		finish(r, EC_NOMEM, NULL);
		return;
	}
	snprintf(r->path, kl + 4, "/1%s%s", key[0] == '/' ? "" : "/", key);
	q->path = r->path;
	q->method = (char *)(strcmp(method, "HEAD") == 0 ? "GET" : method);
	r->head = strcmp(method, "HEAD") == 0;

	const char *s;
	bool ok = true;
	if (ok && (s = form_get(&f, "prevIndex")) != NULL && !parse_u64(s, &q->prev_index)) {
		req_error(r, EC_V2_INDEX_NAN, "invalid value for \"prevIndex\"");
		ok = false;
	}
	if (ok && (s = form_get(&f, "waitIndex")) != NULL && !parse_u64(s, &q->since)) {
		req_error(r, EC_V2_INDEX_NAN, "invalid value for \"waitIndex\"");
		ok = false;
	}
	ok = ok && get_flag(r, &f, "recursive", &q->recursive) && get_flag(r, &f, "sorted", &q->sorted) &&
	     get_flag(r, &f, "wait", &q->wait) && get_flag(r, &f, "dir", &q->dir) &&
	     get_flag(r, &f, "quorum", &q->quorum) && get_flag(r, &f, "stream", &q->stream);
	if (ok && q->wait && strcmp(method, "GET") != 0) {
		req_error(r, EC_V2_INVALID_FIELD, "\"wait\" can only be used with GET requests");
		ok = false;
	}
	const char *pv = ok ? form_get(&f, "prevValue") : NULL;
	if (ok && pv != NULL && pv[0] == '\0') {
		req_error(r, EC_V2_PREV_VALUE_REQUIRED, "\"prevValue\" cannot be empty");
		ok = false;
	}
	ok = ok && get_flag(r, &f, "noValueOnSuccess", &r->no_value);
	uint64_t ttl = 0;
	bool has_ttl = false;
	if (ok && (s = form_get(&f, "ttl")) != NULL && s[0] != '\0') {
		if (!parse_u64(s, &ttl)) {
			req_error(r, EC_V2_TTL_NAN, "invalid value for \"ttl\"");
			ok = false;
		}
		has_ttl = true;
	}
	if (ok && (s = form_get(&f, "prevExist")) != NULL) {
		bool b;
		if (!parse_bool(s, &b)) {
			req_error(r, EC_V2_INVALID_FIELD, "invalid value for prevExist");
			ok = false;
		} else {
			q->prev_exist_set_case = METASTORE__V2_REQUEST__PREV_EXIST_SET_PREV_EXIST;
			q->prev_exist = b;
		}
	}
	if (ok && (s = form_get(&f, "refresh")) != NULL) {
		bool b;
		if (!parse_bool(s, &b)) {
			req_error(r, EC_V2_INVALID_FIELD, "invalid value for refresh");
			ok = false;
		} else {
			q->refresh_set_case = METASTORE__V2_REQUEST__REFRESH_SET_REFRESH;
			q->refresh = b;
			const char *val = form_get(&f, "value");
			if (b && val != NULL && val[0] != '\0') {
				req_error(r, EC_V2_REFRESH_VALUE, "A value was provided on a refresh");
				ok = false;
			} else if (b && !has_ttl) {
				req_error(r, EC_V2_REFRESH_TTL_REQUIRED, "No TTL value set");
				ok = false;
			}
		}
	}
	if (ok) {
		const char *val = form_get(&f, "value");
		r->val = strdup(val ? val : "");
		r->prev_value = strdup(pv ? pv : "");
		if (r->val == NULL || r->prev_value == NULL) {
			finish(r, EC_NOMEM, NULL);
			ok = false;
		}
		q->val = r->val;
		q->prev_value = r->prev_value;
	}
	free(f.owned);
	if (!ok)
		return;

	int64_t now = wall_ns();
	q->time = now;
	if (has_ttl)
		q->expiration = now + (int64_t)ttl * 1000000000;

	if (v->key_check != NULL &&
	    !v->key_check(v->key_ctx, r->conn, method, key, q->recursive)) {
		Metastore__V2Response *resp = malloc(sizeof *resp);
		char *j = ec_v2_error_json(EC_V2_UNAUTHORIZED, "Insufficient credentials", 0);
		if (resp == NULL || j == NULL) {
			free(resp);
			free(j);
			finish(r, EC_NOMEM, NULL);
			return;
		}
		metastore__v2_response__init(resp);
		resp->code = EC_V2_UNAUTHORIZED;
		resp->http_status = 401;
		resp->body = j;
		finish(r, EC_OK, resp);
		return;
	}

	bool is_get = strcmp(q->method, "GET") == 0;
	if (is_get && !q->wait && !q->quorum) {
		local_get(r);
		return;
	}
	int err;
	if (is_get && q->wait) {
		Metastore__V2Response *now_ev = NULL;
		r->watch_index = ec_v2_index(v->app->v2store);
		pthread_mutex_lock(&r->mu);
		r->watching = true;
		pthread_mutex_unlock(&r->mu);
		err = ec_v2_watch(v->app->v2store, r->path, q->recursive, q->since, on_watch, r, &now_ev,
		                  &r->watch_id);
		if (err != EC_OK || now_ev != NULL) {
			watch_done(r, err, now_ev);
			return;
		}
		pthread_mutex_lock(&r->mu);
		if (r->state == REQ_NEW) /* else the event came already: answered whole */
			r->state = REQ_STREAM;
		pthread_mutex_unlock(&r->mu);
		return;
	}
	/* everything else waits: suspended before anything can answer it (finish
	 * resumes under r->mu, so never ahead of this suspend) */
	pthread_mutex_lock(&r->mu);
	r->state = REQ_WAITING;
	MHD_suspend_connection(r->conn);
	pthread_mutex_unlock(&r->mu);
	if (is_get)
		err = srv_node_read(v->app->node, on_read, r);
	else
		err = srv_v2_do(v->app, q, on_proposed, r);
	if (err != EC_OK)
		finish(r, err, NULL);
}

/* ---- answering ------------------------------------------------------------------ */

static enum MHD_Result send_answer(v2_req *r)
{
	srv_v2 *v = r->v;
	Metastore__V2Response *resp = r->resp;
	char *fallback = NULL;
	const char *body;
	int status;
	uint64_t index;
	if (resp == NULL) {
		/* a server error: etcd's 300 Raft Internal Error with the error's text */
		fallback = ec_v2_error_json(EC_V2_RAFT_INTERNAL, ec_strerror(r->err), 0);
		body = fallback ? fallback : "";
		status = 500;
		index = 0;
	} else {
		body = resp->body ? resp->body : "";
		status = resp->http_status ? (int)resp->http_status : 200;
		index = r->watching || r->rq.wait ? r->watch_index : resp->etcd_index;
		if (r->rq.wait && resp->code != 0)
			index = resp->etcd_index;
	}
	char small[64];
	if (resp != NULL && resp->code == 0 && r->no_value && strcmp(r->rq.method, "GET") != 0) {
		/* noValueOnSuccess: only the action */
		const char *a = strstr(body, "\"action\":\"");
		const char *e = a ? strchr(a + 10, '"') : NULL;
		if (e != NULL && (size_t)(e - a) < sizeof small - 2) {
			snprintf(small, sizeof small, "{%.*s}", (int)(e + 1 - a), a);
			body = small;
		}
	}
	size_t bl = strlen(body);
	char *out = malloc(bl + 2);
	if (out == NULL) {
		free(fallback);
		return MHD_NO;
	}
	memcpy(out, body, bl);
	out[bl] = '\n';
	out[bl + 1] = '\0';
	free(fallback);
	struct MHD_Response *mr =
	        MHD_create_response_from_buffer(r->head ? 0 : bl + 1, out, MHD_RESPMEM_MUST_FREE);
	if (mr == NULL) {
		free(out);
		return MHD_NO;
	}
	char buf[32];
	MHD_add_response_header(mr, "Content-Type", "application/json");
	snprintf(buf, sizeof buf, "%" PRIx64, v->app->cluster_id);
	MHD_add_response_header(mr, "X-Etcd-Cluster-Id", buf);
	snprintf(buf, sizeof buf, "%" PRIu64, index);
	MHD_add_response_header(mr, "X-Etcd-Index", buf);
	if (resp != NULL && resp->code == 0) {
		srv_node_status st;
		srv_node_get_status(v->app->node, &st);
		snprintf(buf, sizeof buf, "%" PRIu64, st.commit_index);
		MHD_add_response_header(mr, "X-Raft-Index", buf);
		snprintf(buf, sizeof buf, "%" PRIu64, st.term);
		MHD_add_response_header(mr, "X-Raft-Term", buf);
	}
	srv_http_cors(mr);
	enum MHD_Result ret = MHD_queue_response(r->conn, (unsigned)status, mr);
	MHD_destroy_response(mr);
	r->state = REQ_SENT;
	return ret;
}

/* Start watching again after a streamed event (stream=true): the next event
 * after @next. Called and returns with r->mu held; drops it meanwhile (the
 * store's lock is taken before r->mu by watcher callbacks). */
static void rewatch(v2_req *r, uint64_t next)
{
	ec_msg_free(r->resp);
	r->resp = NULL;
	r->sent = 0;
	r->state = REQ_STREAM;
	r->watching = true;
	pthread_mutex_unlock(&r->mu);
	Metastore__V2Response *now = NULL;
	uint64_t wid = 0;
	int err = ec_v2_watch(r->v->app->v2store, r->path, r->rq.recursive, next, on_watch, r, &now,
	                      &wid);
	pthread_mutex_lock(&r->mu);
	r->watch_id = wid;
	if (err != EC_OK || now != NULL) {
		r->watching = false;
		r->resp = now;
		r->err = err;
		r->state = REQ_DONE;
	}
}

/* The body of a REQ_STREAM watch: the event when it is there, else suspend;
 * with stream=true, every event in turn until the client goes. */
static ssize_t stream_read(void *cls, uint64_t pos, char *buf, size_t max)
{
	v2_req *r = cls;
	(void)pos;
	ssize_t n = 0;
	pthread_mutex_lock(&r->mu);
	for (;;) {
		if (r->state != REQ_DONE && __atomic_load_n(&r->v->stopping, __ATOMIC_ACQUIRE)) {
			n = MHD_CONTENT_READER_END_OF_STREAM; /* quiesce is past: never suspend */
			break;
		}
		if (r->state != REQ_DONE) {
			r->state = REQ_WAITING;
			MHD_suspend_connection(r->conn);
			break;
		}
		if (r->resp == NULL || r->resp->body == NULL) {
			n = MHD_CONTENT_READER_END_OF_STREAM;
			break;
		}
		const char *b = r->resp->body;
		size_t bl = strlen(b) + 1; /* with etcd's trailing newline */
		if (r->sent < bl) {
			size_t k = bl - r->sent < max ? bl - r->sent : max;
			for (size_t i = 0; i < k; i++) {
				size_t at = r->sent + i;
				buf[i] = at + 1 == bl ? '\n' : b[at];
			}
			r->sent += k;
			n = (ssize_t)k;
			break;
		}
		if (!r->rq.stream || r->resp->code != 0) {
			n = MHD_CONTENT_READER_END_OF_STREAM;
			break;
		}
		rewatch(r, r->resp->etcd_index + 1);
	}
	pthread_mutex_unlock(&r->mu);
	return n;
}

/* Headers now, the event later (etcd's handleKeyWatch). */
static enum MHD_Result send_stream(v2_req *r)
{
	srv_v2 *v = r->v;
	struct MHD_Response *mr =
	        MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 4096, stream_read, r, NULL);
	if (mr == NULL)
		return MHD_NO;
	char buf[32];
	MHD_add_response_header(mr, "Content-Type", "application/json");
	snprintf(buf, sizeof buf, "%" PRIx64, v->app->cluster_id);
	MHD_add_response_header(mr, "X-Etcd-Cluster-Id", buf);
	snprintf(buf, sizeof buf, "%" PRIu64, r->watch_index);
	MHD_add_response_header(mr, "X-Etcd-Index", buf);
	srv_node_status st;
	srv_node_get_status(v->app->node, &st);
	snprintf(buf, sizeof buf, "%" PRIu64, st.commit_index);
	MHD_add_response_header(mr, "X-Raft-Index", buf);
	snprintf(buf, sizeof buf, "%" PRIu64, st.term);
	MHD_add_response_header(mr, "X-Raft-Term", buf);
	srv_http_cors(mr);
	enum MHD_Result ret = MHD_queue_response(r->conn, 200, mr);
	MHD_destroy_response(mr);
	return ret;
}

static enum MHD_Result method_not_allowed(struct MHD_Connection *c)
{
	static const char msg[] = "Method Not Allowed\n";
	struct MHD_Response *mr =
	        MHD_create_response_from_buffer(sizeof msg - 1, (void *)msg, MHD_RESPMEM_PERSISTENT);
	if (mr == NULL)
		return MHD_NO;
	MHD_add_response_header(mr, "Allow", "HEAD,GET,PUT,POST,DELETE");
	MHD_add_response_header(mr, "Content-Type", "text/plain; charset=utf-8");
	MHD_add_response_header(mr, "X-Content-Type-Options", "nosniff");
	enum MHD_Result ret = MHD_queue_response(c, 405, mr);
	MHD_destroy_response(mr);
	return ret;
}

static bool v2_match(const char *url)
{
	size_t n = strlen(KEYS_PREFIX);
	return strncmp(url, KEYS_PREFIX, n) == 0 && (url[n] == '\0' || url[n] == '/');
}

static enum MHD_Result v2_serve(void *ctx, struct MHD_Connection *c, const char *url,
                                const char *method, const char *upload_data,
                                size_t *upload_data_size, void **con_cls, bool tls)
{
	srv_v2 *v = ctx;
	(void)tls;
	v2_req *r = *con_cls;
	if (r == NULL) {
		static const char *ok[] = {"HEAD", "GET", "PUT", "POST", "DELETE"};
		bool allowed = false;
		for (size_t i = 0; i < 5; i++)
			allowed |= strcmp(method, ok[i]) == 0;
		if (!allowed) {
			if (*upload_data_size != 0) {
				*upload_data_size = 0;
				return MHD_YES;
			}
			return method_not_allowed(c);
		}
		r = calloc(1, sizeof *r);
		if (r == NULL)
			return MHD_NO;
		r->v = v;
		r->conn = c;
		pthread_mutex_init(&r->mu, NULL);
		pthread_mutex_lock(&v->mu);
		bool stopping = v->stopping;
		if (!stopping) {
			r->next = v->reqs;
			if (v->reqs)
				v->reqs->prev = r;
			v->reqs = r;
		}
		pthread_mutex_unlock(&v->mu);
		if (stopping) {
			req_free(r);
			return MHD_NO;
		}
		*con_cls = r;
		return MHD_YES;
	}
	if (*upload_data_size != 0) {
		if (r->state == REQ_NEW && !r->body_oom) {
			char *nb = realloc(r->body, r->blen + *upload_data_size + 1);
			if (nb == NULL) {
				r->body_oom = true;
			} else {
				memcpy(nb + r->blen, upload_data, *upload_data_size);
				r->blen += *upload_data_size;
				nb[r->blen] = '\0';
				r->body = nb;
			}
		}
		*upload_data_size = 0;
		return MHD_YES;
	}
	pthread_mutex_lock(&r->mu);
	req_state st = r->state;
	pthread_mutex_unlock(&r->mu);
	if (st == REQ_NEW) {
		start(r, url, method);
		pthread_mutex_lock(&r->mu);
		st = r->state;
		pthread_mutex_unlock(&r->mu);
	}
	if (st == REQ_DONE && r->rq.wait && r->rq.stream && r->resp != NULL && r->resp->code == 0)
		return send_stream(r); /* an event from the history, then the rest */
	if (st == REQ_DONE)
		return send_answer(r);
	if (st == REQ_STREAM)
		return send_stream(r);
	return MHD_YES; /* suspended (or already answered) */
}

static void v2_completed(void *ctx, void **con_cls)
{
	srv_v2 *v = ctx;
	v2_req *r = con_cls ? *con_cls : NULL;
	if (r == NULL)
		return;
	pthread_mutex_lock(&v->mu);
	bool mine = false;
	for (v2_req *x = v->reqs; x; x = x->next)
		if (x == r) {
			mine = true;
			break;
		}
	if (mine) {
		if (r->prev)
			r->prev->next = r->next;
		else
			v->reqs = r->next;
		if (r->next)
			r->next->prev = r->prev;
	}
	pthread_mutex_unlock(&v->mu);
	if (!mine)
		return;
	*con_cls = NULL;
	pthread_mutex_lock(&r->mu);
	bool watching = r->watching;
	pthread_mutex_unlock(&r->mu);
	if (watching)
		ec_v2_unwatch(v->app->v2store, r->watch_id);
	req_free(r);
}

/* A suspended watch whose client hung up (etcd's CloseNotify) gives up its
 * watcher and is resumed, so libmicrohttpd sees the closed socket and
 * completes it. Called with v->mu held (the list cannot change). */
static void drop_hung_up(srv_v2 *v)
{
	for (v2_req *r = v->reqs; r; r = r->next) {
		pthread_mutex_lock(&r->mu);
		bool check = r->state == REQ_WAITING && r->watching;
		pthread_mutex_unlock(&r->mu);
		if (!check)
			continue;
		const union MHD_ConnectionInfo *ci =
		        MHD_get_connection_info(r->conn, MHD_CONNECTION_INFO_CONNECTION_FD);
		if (ci == NULL)
			continue;
		struct pollfd pf = {.fd = ci->connect_fd, .events = POLLRDHUP};
		if (poll(&pf, 1, 0) <= 0 || !(pf.revents & (POLLRDHUP | POLLHUP | POLLERR)))
			continue;
		if (ec_v2_unwatch(v->app->v2store, r->watch_id))
			watch_done(r, EC_STOPPED, NULL);
	}
}

/* Resume every suspended request before the daemons stop: watchers are
 * dropped (the client hears 300), proposals and reads are waited for. */
static void v2_quiesce(void *ctx)
{
	srv_v2 *v = ctx;
	for (int round = 0; round < 500; round++) {
		bool waiting = false;
		pthread_mutex_lock(&v->mu);
		__atomic_store_n(&v->stopping, true, __ATOMIC_RELEASE);
		for (v2_req *r = v->reqs; r; r = r->next) {
			pthread_mutex_lock(&r->mu);
			bool w = r->state == REQ_WAITING;
			bool watching = r->watching;
			pthread_mutex_unlock(&r->mu);
			if (!w)
				continue;
			if (watching && ec_v2_unwatch(v->app->v2store, r->watch_id)) {
				watch_done(r, EC_STOPPED, NULL);
			} else {
				waiting = true;
			}
		}
		pthread_mutex_unlock(&v->mu);
		if (!waiting)
			return;
		usleep(10000);
	}
}

void srv_v2_http_ext(srv_v2 *v, srv_http_ext *out)
{
	out->match = v2_match;
	out->serve = v2_serve;
	out->completed = v2_completed;
	out->quiesce = v2_quiesce;
	out->ctx = v;
}
