/*
 * srv_v2auth.c: the v2 auth half of srv_v2admin (srv_v2admin.h) — etcd 3.4's
 * /v2/auth/enable, /v2/auth/users[/NAME], /v2/auth/roles[/NAME], the
 * credentials of a request (HTTP basic auth; with --client-cert-auth the CN of
 * the verified client chain), etcd's root-access rule for admin calls, the
 * /v2/keys permission check, and the callbacks that put v2 auth data in the
 * replicated v2 store (reads local or QGET, writes through srv_v2_do, waited
 * for on the request's worker thread). The rules themselves are
 * etcdcompat/ec_v2auth.c.
 */
#include "server/srv_v2admin_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <gnutls/gnutls.h>
#include <gnutls/x509.h>
#include <jansson.h>

#include "etcdcompat/ec_base64.h"
#include "etcdcompat/ec_errors.h"
#include "etcdcompat/ec_v2store.h"
#include "server/srv_v2.h"
#include "server/srv_wait.h"

/* ---- the replicated v2 store (etcdcompat/ec_v2store.h, server/srv_v2.h) ------------------ */

/* A v2 write in flight, shared with the node thread (two references). */
typedef struct v2_wait {
	srv_waitone base; /* first: the callback gets the v2_wait */
	Metastore__V2Response *resp;
	Metastore__V2Request req;
	char *path, *val;
} v2_wait;

static void v2_wait_release(srv_waitone *base)
{
	v2_wait *w = (v2_wait *)base;
	if (w->resp != NULL)
		metastore__v2_response__free_unpacked(w->resp, NULL);
	free(w->path);
	if (w->val != NULL) {
		memset(w->val, 0, strlen(w->val));
		free(w->val);
	}
	free(w);
}

static void v2_done(void *ctx, int err, Metastore__V2Response *resp)
{
	v2_wait *w = ctx;
	w->resp = resp;
	srv_waitone_post(&w->base, err);
}

/* Propose @method @path (@val, @dir, @prev_exist -1/0/1) and wait: the v2
 * code, or -1 with *@msg. @value (may be NULL) gets the node's value. */
static int v2_write(srv_app *app, const char *method, const char *path, const char *val, bool dir,
                    int prev_exist, char **value, const char **msg)
{
	v2_wait *w = calloc(1, sizeof *w);
	if (w == NULL) {
		*msg = "out of memory";
		return -1;
	}
	srv_waitone_init(&w->base, v2_wait_release);
	Metastore__V2Request init = METASTORE__V2_REQUEST__INIT;
	w->req = init;
	w->path = strdup(path);
	w->val = strdup(val != NULL ? val : "");
	if (w->path == NULL || w->val == NULL) {
		srv_waitone_abandon(&w->base);
		*msg = "out of memory";
		return -1;
	}
	w->req.method = (char *)method;
	w->req.path = w->path;
	w->req.val = w->val;
	w->req.dir = dir;
	w->req.quorum = strcmp(method, "QGET") == 0;
	if (prev_exist >= 0) {
		w->req.prev_exist_set_case = METASTORE__V2_REQUEST__PREV_EXIST_SET_PREV_EXIST;
		w->req.prev_exist = prev_exist == 1;
	}
	int err = srv_v2_do(app, &w->req, v2_done, w);
	if (err != EC_OK) {
		srv_waitone_abandon(&w->base);
		*msg = ec_strerror(err);
		return -1;
	}
	err = srv_waitone_wait(&w->base, SRV_V2A_WAIT_MS, EC_TIMEOUT);
	int rc;
	if (err != EC_OK) {
		*msg = ec_strerror(err);
		rc = -1;
	} else if (w->resp == NULL) {
		*msg = "no response";
		rc = -1;
	} else {
		rc = (int)w->resp->code;
		if (rc == 0 && value != NULL &&
		    (*value = strdup(w->resp->value ? w->resp->value : "")) == NULL) {
			*msg = "out of memory";
			rc = -1;
		}
	}
	srv_waitone_unref(&w->base);
	return rc;
}

static int rs_get(void *ctx, const char *path, bool quorum, char **value, const char **msg)
{
	srv_app *app = ctx;
	if (quorum)
		return v2_write(app, "QGET", path, NULL, false, -1, value, msg);
	struct timespec now;
	clock_gettime(CLOCK_REALTIME, &now);
	Metastore__V2Response *r = NULL;
	if (app->v2store == NULL ||
	    ec_v2_get(app->v2store, path, false, false,
	              (int64_t)now.tv_sec * 1000000000LL + now.tv_nsec, &r) != EC_OK) {
		*msg = "out of memory";
		return -1;
	}
	int rc = (int)r->code;
	if (rc == 0 && (*value = strdup(r->value ? r->value : "")) == NULL) {
		*msg = "out of memory";
		rc = -1;
	}
	metastore__v2_response__free_unpacked(r, NULL);
	return rc;
}

static int rs_list(void *ctx, const char *path, char ***names, size_t *n, const char **msg)
{
	srv_app *app = ctx;
	if (app->v2store == NULL) {
		*msg = "no v2 store";
		return -1;
	}
	int rc = ec_v2_list(app->v2store, path, names, n);
	if (rc == EC_NOMEM) {
		*msg = "out of memory";
		return -1;
	}
	return rc;
}

static int rs_set(void *ctx, const char *path, const char *value, int prev_exist, const char **msg)
{
	return v2_write(ctx, "PUT", path, value, false, prev_exist, NULL, msg);
}

static int rs_mkdir(void *ctx, const char *path, const char **msg)
{
	return v2_write(ctx, "PUT", path, NULL, true, 0, NULL, msg);
}

static int rs_del(void *ctx, const char *path, const char **msg)
{
	return v2_write(ctx, "DELETE", path, NULL, false, 1, NULL, msg);
}

/* ---- credentials ---------------------------------------------------------------------- */

/* Standard base64 (with padding, Go's StdEncoding) of @in into malloc'd,
 * NUL-terminated *@out; -1 if malformed or if it decodes to a NUL byte. */
static int b64_decode(const char *in, char **out)
{
	size_t n = strlen(in), k;
	char *o = malloc(n / 4 * 3 + 4);
	if (o == NULL)
		return -1;
	if (ec_b64_decode(in, n, EC_B64_IN_STD | EC_B64_PAD_REQUIRED, (uint8_t *)o, &k, NULL) != 0 ||
	    memchr(o, '\0', k) != NULL) {
		free(o);
		return -1;
	}
	o[k] = '\0';
	*out = o;
	return 0;
}

/* Go's Request.BasicAuth: "Basic " (any case) + base64("user:pass"). On 0,
 * *@user is malloc'd and *@pass points into it. */
static int basic_auth(const char *authz, char **user, const char **pass)
{
	if (authz == NULL || strncasecmp(authz, "Basic ", 6) != 0)
		return -1;
	char *dec = NULL;
	if (b64_decode(authz + 6, &dec) != 0)
		return -1;
	char *colon = strchr(dec, ':');
	if (colon == NULL) {
		free(dec);
		return -1;
	}
	*colon = '\0';
	*user = dec;
	*pass = colon + 1;
	return 0;
}

/* The CNs of the TLS client's verified chain on @c, leaf first, as etcd walks
 * Go's VerifiedChains: every certificate presented, then the CA that signed
 * the last one (its issuer CN; the root itself is not sent by clients). */
size_t srv_v2a__peer_cns(struct MHD_Connection *c, char **cns, size_t cap)
{
	const union MHD_ConnectionInfo *ci =
	        MHD_get_connection_info(c, MHD_CONNECTION_INFO_GNUTLS_SESSION);
	if (ci == NULL || ci->tls_session == NULL)
		return 0;
	unsigned n = 0;
	const gnutls_datum_t *der =
	        gnutls_certificate_get_peers((gnutls_session_t)ci->tls_session, &n);
	size_t k = 0;
	for (unsigned i = 0; der != NULL && i < n && k < cap; i++) {
		gnutls_x509_crt_t crt;
		if (gnutls_x509_crt_init(&crt) != 0)
			continue;
		char buf[256];
		size_t len = sizeof buf;
		bool ok = gnutls_x509_crt_import(crt, &der[i], GNUTLS_X509_FMT_DER) == 0;
		if (ok &&
		    gnutls_x509_crt_get_dn_by_oid(crt, GNUTLS_OID_X520_COMMON_NAME, 0, 0, buf,
		                                  &len) == 0 &&
		    (cns[k] = strdup(buf)) != NULL)
			k++;
		char ibuf[256];
		size_t ilen = sizeof ibuf;
		if (ok && i + 1 == n && k < cap &&
		    gnutls_x509_crt_get_issuer_dn_by_oid(crt, GNUTLS_OID_X520_COMMON_NAME, 0, 0,
		                                         ibuf, &ilen) == 0 &&
		    (k == 0 || strcmp(cns[k - 1], ibuf) != 0) && (cns[k] = strdup(ibuf)) != NULL)
			k++;
		gnutls_x509_crt_deinit(crt);
	}
	return k;
}

/* The request's user as etcd 3.4 finds it: the basic-auth user whose password
 * matches, or (@by_cert: no Authorization header and --client-cert-auth) the
 * first certificate CN naming a user. *@out filled on true. */
static bool find_user(srv_v2a *a, const char *authz, char *const *cns, size_t n_cns, bool by_cert,
                      ec_v2a_user *out)
{
	ec_v2a_err e;
	if (by_cert) {
		for (size_t i = 0; i < n_cns; i++)
			if (ec_v2a_get_user(&a->auth, cns[i], false, out, &e) == 0)
				return true;
		return false;
	}
	char *user = NULL;
	const char *pass = NULL;
	if (basic_auth(authz, &user, &pass) != 0)
		return false;
	bool ok = ec_v2a_get_user(&a->auth, user, false, out, &e) == 0;
	if (ok && !ec_v2a_check_password(out, pass)) {
		ec_v2a_user_free(out);
		ok = false;
	}
	memset(user, 0, strlen(user) + 1 + strlen(pass));
	free(user);
	return ok;
}

/* etcd's hasRootAccess. */
bool srv_v2a__root_access(v2req *rq)
{
	srv_v2a *a = rq->a;
	if (!ec_v2a_enabled(&a->auth))
		return true;
	bool by_cert = (rq->authz == NULL || rq->authz[0] == '\0') && a->app->client_cert_auth;
	ec_v2a_user u;
	if (!find_user(a, rq->authz, rq->cns, rq->n_cns, by_cert, &u))
		return false;
	bool ok = ec_v2a_has_root(&u);
	ec_v2a_user_free(&u);
	return ok;
}

bool srv_v2a__write_root_access(v2req *rq)
{
	if (strcmp(rq->method, "GET") == 0 || strcmp(rq->method, "HEAD") == 0)
		return true;
	return srv_v2a__root_access(rq);
}

void srv_v2a__reply_no_auth(v2req *rq)
{
	srv_v2a__reply_error(rq, 401, "Insufficient credentials");
}

bool srv_v2a_key_allowed(srv_v2a *a, struct MHD_Connection *c, const char *method, const char *key,
                         bool recursive)
{
	if (a == NULL || !ec_v2a_enabled(&a->auth))
		return true;
	const char *authz = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization");
	bool write = strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0;
	ec_v2a_user u;
	bool found;
	if (authz == NULL || authz[0] == '\0') {
		found = false;
		if (a->app->client_cert_auth) {
			char *cns[SRV_V2A_MAX_CNS];
			size_t n = srv_v2a__peer_cns(c, cns, SRV_V2A_MAX_CNS);
			found = find_user(a, NULL, cns, n, true, &u);
			for (size_t i = 0; i < n; i++)
				free(cns[i]);
		}
		if (!found)
			return ec_v2a_guest_allows(&a->auth, key, write);
	} else if (!find_user(a, authz, NULL, 0, false, &u)) {
		return false;
	}
	bool ok = ec_v2a_user_allows(&a->auth, &u, key, write, recursive);
	ec_v2a_user_free(&u);
	return ok;
}

/* ---- /v2/auth -------------------------------------------------------------------------- */

static void reply_auth_err(v2req *rq, const ec_v2a_err *e)
{
	srv_v2a__reply_error(rq, e->status ? e->status : 500,
	                     e->status ? e->msg : "Internal Server Error");
}

static void auth_enable(v2req *rq)
{
	srv_v2a *a = rq->a;
	if (!srv_v2a__allow_method(rq, "GET,PUT,DELETE", "GET", "PUT", "DELETE", NULL))
		return;
	if (!srv_v2a__write_root_access(rq)) {
		srv_v2a__reply_no_auth(rq);
		return;
	}
	rq->cluster_hdr = true;
	ec_v2a_err e;
	if (strcmp(rq->method, "GET") == 0) {
		srv_v2a__reply_json(rq, 200,
		                    json_pack("{s:b}", "enabled", ec_v2a_enabled(&a->auth)));
	} else if (strcmp(rq->method, "PUT") == 0) {
		if (ec_v2a_enable(&a->auth, &e) != 0)
			reply_auth_err(rq, &e);
		else
			srv_v2a__reply(rq, 200, APP_JSON, NULL);
	} else {
		if (ec_v2a_disable(&a->auth, &e) != 0)
			reply_auth_err(rq, &e);
		else
			srv_v2a__reply(rq, 200, APP_JSON, NULL);
	}
}

/* path.Clean of @sub ("/users/x/"), split on '/': the element count and the
 * third element into @name. */
static int split_sub(const char *sub, char *name, size_t cap)
{
	char buf[1024];
	snprintf(buf, sizeof buf, "%s", sub);
	int n = 1; /* the empty first element */
	char *save = NULL;
	name[0] = '\0';
	for (char *t = strtok_r(buf, "/", &save); t != NULL; t = strtok_r(NULL, "/", &save)) {
		if (strcmp(t, ".") == 0)
			continue;
		n++;
		if (n == 3)
			snprintf(name, cap, "%s", t);
	}
	return n;
}

/*
 * What /v2/auth/users/NAME and /v2/auth/roles/NAME differ in (etcd's forUser
 * and forRole are otherwise the same handler). put parses @body, checks that
 * its name is @name and applies it: 0 with *@json (malloc'd) and *@created,
 * -1 with @e set, -2 when @body is not a document of that kind, -3 when its
 * name differs.
 */
typedef struct entity_ops {
	const char *name_mismatch; /* etcd's 400 text for -3 */
	char *(*list_json)(ec_v2a *a, ec_v2a_err *e); /* GET of the collection */
	bool json_ctype;           /* Content-Type set before the answer (forUser) */
	char *(*get_json)(ec_v2a *a, const char *name, ec_v2a_err *e);
	int (*del)(ec_v2a *a, const char *name, ec_v2a_err *e);
	int (*put)(ec_v2a *a, const char *body, size_t len, const char *name, char **json,
	           bool *created, ec_v2a_err *e);
} entity_ops;

static int user_put(ec_v2a *a, const char *body, size_t len, const char *name, char **json,
                    bool *created, ec_v2a_err *e)
{
	ec_v2a_user in, out;
	if (ec_v2a_user_parse(body, len, &in) != 0)
		return -2;
	int rc = strcmp(in.name, name) != 0 ? -3 : ec_v2a_put_user(a, &in, &out, created, e);
	if (rc == 0) {
		*json = ec_v2a_user_json(&out, false);
		ec_v2a_user_free(&out);
	}
	ec_v2a_user_free(&in);
	return rc;
}

static char *role_get_json(ec_v2a *a, const char *name, ec_v2a_err *e)
{
	ec_v2a_role r;
	if (ec_v2a_get_role(a, name, false, &r, e) != 0)
		return NULL;
	char *s = ec_v2a_role_json(&r);
	ec_v2a_role_free(&r);
	return s;
}

static int role_put(ec_v2a *a, const char *body, size_t len, const char *name, char **json,
                    bool *created, ec_v2a_err *e)
{
	ec_v2a_role in, out;
	if (ec_v2a_role_parse(body, len, &in) != 0)
		return -2;
	int rc = strcmp(in.name, name) != 0 ? -3 : ec_v2a_put_role(a, &in, &out, created, e);
	if (rc == 0) {
		*json = ec_v2a_role_json(&out);
		ec_v2a_role_free(&out);
	}
	ec_v2a_role_free(&in);
	return rc;
}

static const entity_ops USER_OPS = {
        .name_mismatch = "User JSON name does not match the name in the URL",
        .json_ctype = true,
        .list_json = ec_v2a_users_list_json,
        .get_json = ec_v2a_user_get_json,
        .del = ec_v2a_delete_user,
        .put = user_put,
};

static const entity_ops ROLE_OPS = {
        .name_mismatch = "Role JSON name does not match the name in the URL",
        .list_json = ec_v2a_roles_list_json,
        .get_json = role_get_json,
        .del = ec_v2a_delete_role,
        .put = role_put,
};

/* The root-access rule of every users/roles call: false after answering 401. */
static bool root_only(v2req *rq)
{
	if (!srv_v2a__root_access(rq)) {
		srv_v2a__reply_no_auth(rq);
		return false;
	}
	rq->cluster_hdr = true;
	return true;
}

/* GET /v2/auth/users, /v2/auth/roles (etcd's baseUsers, baseRoles). */
static void base_entity(v2req *rq, const entity_ops *ops)
{
	if (!srv_v2a__allow_method(rq, "GET", "GET", NULL) || !root_only(rq))
		return;
	ec_v2a_err e;
	char *s = ops->list_json(&rq->a->auth, &e);
	if (s == NULL)
		reply_auth_err(rq, &e);
	else
		srv_v2a__reply_json_text(rq, 200, s);
}

static void for_entity(v2req *rq, const char *name, const entity_ops *ops)
{
	ec_v2a *auth = &rq->a->auth;
	if (!srv_v2a__allow_method(rq, "GET,PUT,DELETE", "GET", "PUT", "DELETE", NULL) ||
	    !root_only(rq))
		return;
	if (ops->json_ctype)
		rq->resp_ctype = APP_JSON;
	ec_v2a_err e;
	if (strcmp(rq->method, "GET") == 0) {
		char *s = ops->get_json(auth, name, &e);
		if (s == NULL)
			reply_auth_err(rq, &e);
		else
			srv_v2a__reply_json_text(rq, 200, s);
		return;
	}
	if (strcmp(rq->method, "DELETE") == 0) {
		if (ops->del(auth, name, &e) != 0)
			reply_auth_err(rq, &e);
		else
			srv_v2a__reply(rq, 200, APP_JSON, NULL);
		return;
	}
	char *json = NULL;
	bool created = false;
	switch (ops->put(auth, rq->body ? rq->body : "", rq->len, name, &json, &created, &e)) {
	case 0:
		srv_v2a__reply_json_text(rq, created ? 201 : 200, json);
		break;
	case -2:
		srv_v2a__reply_error(rq, 400, "Invalid JSON in request body.");
		break;
	case -3:
		srv_v2a__reply_error(rq, 400, ops->name_mismatch);
		break;
	default:
		reply_auth_err(rq, &e);
		break;
	}
}

void srv_v2a__route_auth(v2req *rq)
{
	const char *sub = rq->url + strlen("/v2/auth");
	char name[512];
	if (strcmp(sub, "/enable") == 0) {
		auth_enable(rq);
	} else if (strcmp(sub, "/users") == 0 || strcmp(sub, "/roles") == 0) {
		base_entity(rq, sub[1] == 'u' ? &USER_OPS : &ROLE_OPS);
	} else if (strncmp(sub, "/users/", 7) == 0 || strncmp(sub, "/roles/", 7) == 0) {
		const entity_ops *ops = sub[1] == 'u' ? &USER_OPS : &ROLE_OPS;
		int n = split_sub(sub, name, sizeof name);
		if (n == 2)
			base_entity(rq, ops);
		else if (n != 3)
			srv_v2a__reply_error(rq, 400, "Invalid path");
		else
			for_entity(rq, name, ops);
	} else {
		srv_v2a__reply_not_found_page(rq);
	}
}

void srv_v2a__replicated_store(srv_app *app, ec_v2a_store *out)
{
	*out = (ec_v2a_store){rs_get, rs_list, rs_set, rs_mkdir, rs_del, app};
}
