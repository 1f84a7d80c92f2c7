/*
 * Unit tests for srv_v2admin's HTTP side: srv_http with srv_v2a in an
 * extension slot, clients on one end of a socketpair (no network), v2 auth data
 * in a small in-memory ec_v2a_store. What is checked: routing (srv_v2a_path),
 * the worker round trip (suspend, answer, resume), etcd 3.4's status codes,
 * bodies and headers for /v2/auth (201/200/409/401/404/405, Allow,
 * X-Etcd-Cluster-ID, json.Encoder's trailing newline), basic-auth parsing
 * (good, wrong password, malformed base64), and that a request whose client
 * vanished is freed. Members and stats need a running node: the integration
 * scenario v2-admin.sh covers them.
 */
#include <criterion/criterion.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "server/srv_http.h"
#include "server/srv_v2admin.h"

/* ---- a map store (leaves and directories by path) ---- */

#define MAXN 64
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static char *paths[MAXN], *vals[MAXN];
static int nn;

static char *norm(const char *p)
{
	char *s = strdup(p);
	size_t n = strlen(s);
	while (n > 1 && s[n - 1] == '/')
		s[--n] = '\0';
	return s;
}

static int idx(const char *p)
{
	for (int i = 0; i < nn; i++)
		if (strcmp(paths[i], p) == 0)
			return i;
	return -1;
}

static int m_get(void *ctx, const char *path, bool q, char **value, const char **msg)
{
	(void)ctx, (void)q, (void)msg;
	char *p = norm(path);
	pthread_mutex_lock(&mu);
	int i = idx(p), rc = EC_V2A_KEY_NOT_FOUND;
	if (i >= 0 && vals[i] != NULL) {
		*value = strdup(vals[i]);
		rc = 0;
	}
	pthread_mutex_unlock(&mu);
	free(p);
	return rc;
}

static int m_list(void *ctx, const char *path, char ***names, size_t *n, const char **msg)
{
	(void)ctx, (void)msg;
	char *p = norm(path);
	size_t pl = strlen(p);
	pthread_mutex_lock(&mu);
	int rc = idx(p) >= 0 ? 0 : EC_V2A_KEY_NOT_FOUND;
	*names = rc == 0 ? calloc(MAXN, sizeof(char *)) : NULL;
	*n = 0;
	for (int i = 0; rc == 0 && i < nn; i++)
		if (strncmp(paths[i], p, pl) == 0 && paths[i][pl] == '/' &&
		    strchr(paths[i] + pl + 1, '/') == NULL)
			(*names)[(*n)++] = strdup(paths[i] + pl + 1);
	pthread_mutex_unlock(&mu);
	free(p);
	return rc;
}

static int m_put(const char *path, const char *value, int prev)
{
	char *p = norm(path);
	pthread_mutex_lock(&mu);
	int i = idx(p), rc = 0;
	if (i >= 0 && prev == 0) {
		rc = EC_V2A_NODE_EXIST;
	} else if (i < 0 && prev == 1) {
		rc = EC_V2A_KEY_NOT_FOUND;
	} else if (i >= 0) {
		free(vals[i]);
		vals[i] = value ? strdup(value) : NULL;
	} else {
		paths[nn] = p;
		p = NULL;
		vals[nn++] = value ? strdup(value) : NULL;
	}
	pthread_mutex_unlock(&mu);
	free(p);
	return rc;
}

static int m_set(void *ctx, const char *path, const char *value, int prev, const char **msg)
{
	(void)ctx, (void)msg;
	return m_put(path, value, prev);
}

static int m_mkdir(void *ctx, const char *path, const char **msg)
{
	(void)ctx, (void)msg;
	return m_put(path, NULL, 0);
}

static int m_del(void *ctx, const char *path, const char **msg)
{
	(void)ctx, (void)msg;
	char *p = norm(path);
	pthread_mutex_lock(&mu);
	int i = idx(p), rc = EC_V2A_KEY_NOT_FOUND;
	if (i >= 0) {
		free(paths[i]);
		free(vals[i]);
		paths[i] = paths[nn - 1];
		vals[i] = vals[nn - 1];
		nn--;
		rc = 0;
	}
	pthread_mutex_unlock(&mu);
	free(p);
	return rc;
}

/* ---- the server ---- */

static srv_app app;
static srv_v2a *v2a;
static srv_http *http;

static void setup(void)
{
	memset(&app, 0, sizeof app);
	app.cluster_id = 0xabcdef;
	static const ec_v2a_store st = {m_get, m_list, m_set, m_mkdir, m_del, NULL};
	cr_assert_eq(srv_v2a_new(&app, &st, &v2a), 0);
	srv_http_config hc = {.kinds = SRV_HTTP_KIND(SRV_HTTP_CLIENT, false)};
	srv_v2a_http_ext(v2a, &hc.ext[1]);
	char err[256];
	cr_assert_eq(srv_http_start(&hc, &http, err, sizeof err), 0, "%s", err);
}

static void teardown(void)
{
	srv_http_stop(http);
	srv_v2a_free(v2a);
	for (int i = 0; i < nn; i++) {
		free(paths[i]);
		free(vals[i]);
	}
	nn = 0;
}

/* Send @method @path (@hdrs: extra "Name: v\r\n" lines, @body may be NULL) and
 * read the whole response into @out (@cap bytes). Returns the status. */
static int request(const char *method, const char *path, const char *hdrs, const char *body,
                   char *out, size_t cap)
{
	int sv[2];
	cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	cr_assert_eq(srv_http_add(http, sv[0], SRV_HTTP_CLIENT, false), 0);
	char req[4096];
	int n = snprintf(
	        req, sizeof req,
	        "%s %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n%sContent-Length: %zu\r\n\r\n%s",
	        method, path, hdrs ? hdrs : "", body ? strlen(body) : 0, body ? body : "");
	cr_assert_eq(write(sv[1], req, (size_t)n), n);
	size_t got = 0;
	ssize_t r;
	while (got + 1 < cap && (r = read(sv[1], out + got, cap - 1 - got)) > 0)
		got += (size_t)r;
	out[got] = '\0';
	close(sv[1]);
	int status = 0;
	sscanf(out, "HTTP/1.1 %d", &status);
	return status;
}

static const char *body_of(const char *resp)
{
	const char *b = strstr(resp, "\r\n\r\n");
	return b ? b + 4 : "";
}

#define ROOT_AUTH "Authorization: Basic cm9vdDpyb290cHc=\r\n" /* root:rootpw */

TestSuite(server_v2admin, .init = setup, .fini = teardown, .timeout = 60);

Test(server_v2admin, paths)
{
	cr_assert(srv_v2a_path("/v2/members"));
	cr_assert(srv_v2a_path("/v2/members/abc"));
	cr_assert(srv_v2a_path("/v2/machines"));
	cr_assert(srv_v2a_path("/v2/stats/self"));
	cr_assert(srv_v2a_path("/v2/auth/users"));
	cr_assert_not(srv_v2a_path("/v2/keys/foo"));
	cr_assert_not(srv_v2a_path("/v2/membersx"));
	cr_assert_not(srv_v2a_path("/v2/machines/"));
	cr_assert_not(srv_v2a_path("/v3/kv/range"));
}

Test(server_v2admin, user_lifecycle_and_headers)
{
	char r[8192];
	cr_assert_eq(request("PUT", "/v2/auth/users/bob", NULL,
	                     "{\"user\":\"bob\",\"password\":\"pw\"}", r, sizeof r),
	             201);
	cr_assert_str_eq(body_of(r), "{\"user\":\"bob\",\"roles\":null}\n");
	cr_assert_not_null(strstr(r, "Content-Type: application/json\r\n"));
	cr_assert_not_null(strstr(r, "X-Etcd-Cluster-ID: abcdef\r\n"));
	cr_assert_not_null(strstr(r, "Access-Control-Allow-Origin: *\r\n"));
	cr_assert_eq(request("PUT", "/v2/auth/users/bob", NULL,
	                     "{\"user\":\"bob\",\"grant\":[\"r\"]}", r, sizeof r),
	             200);
	cr_assert_str_eq(body_of(r), "{\"user\":\"bob\",\"roles\":[\"r\"]}\n");
	cr_assert_eq(request("PUT", "/v2/auth/users/bob", NULL,
	                     "{\"user\":\"bob\",\"grant\":[\"r\"]}", r, sizeof r),
	             409);
	cr_assert_str_eq(body_of(r),
	                 "{\"message\":\"auth: Granting duplicate role r for user bob\"}");
	cr_assert_eq(request("PUT", "/v2/auth/users/bob", NULL, "nope", r, sizeof r), 400);
	cr_assert_str_eq(body_of(r), "{\"message\":\"Invalid JSON in request body.\"}");
	cr_assert_eq(request("PUT", "/v2/auth/users/bob", NULL, "{\"user\":\"al\"}", r, sizeof r),
	             400);
	cr_assert_str_eq(body_of(r),
	                 "{\"message\":\"User JSON name does not match the name in the URL\"}");
	cr_assert_eq(request("GET", "/v2/auth/users/a/b", NULL, NULL, r, sizeof r), 400);
	cr_assert_str_eq(body_of(r), "{\"message\":\"Invalid path\"}");
	cr_assert_eq(request("POST", "/v2/auth/users", NULL, NULL, r, sizeof r), 405);
	cr_assert_not_null(strstr(r, "Allow: GET\r\n"));
	cr_assert_str_eq(body_of(r), "Method Not Allowed\n");
	cr_assert_null(strstr(r, "X-Etcd-Cluster-ID"), "etcd checks the method first");
	cr_assert_eq(request("GET", "/v2/auth/nothing", NULL, NULL, r, sizeof r), 404);
	cr_assert_str_eq(body_of(r), "404 page not found\n");
	cr_assert_eq(request("DELETE", "/v2/auth/users/bob", NULL, NULL, r, sizeof r), 200);
	cr_assert_str_eq(body_of(r), "");
	cr_assert_eq(request("DELETE", "/v2/auth/users/bob", NULL, NULL, r, sizeof r), 404);
	cr_assert_str_eq(body_of(r), "{\"message\":\"auth: User bob does not exist\"}");
}

Test(server_v2admin, enable_and_basic_auth)
{
	char r[8192];
	cr_assert_eq(request("PUT", "/v2/auth/enable", NULL, NULL, r, sizeof r), 409);
	cr_assert_str_eq(body_of(r),
	                 "{\"message\":\"auth: No root user available, please create one\"}");
	cr_assert_eq(request("PUT", "/v2/auth/users/root", NULL,
	                     "{\"user\":\"root\",\"password\":\"rootpw\"}", r, sizeof r),
	             201);
	cr_assert_str_eq(body_of(r), "{\"user\":\"root\",\"roles\":[\"root\"]}\n");
	cr_assert_eq(request("PUT", "/v2/auth/enable", NULL, NULL, r, sizeof r), 200);
	cr_assert_eq(request("GET", "/v2/auth/enable", NULL, NULL, r, sizeof r), 200);
	cr_assert_str_eq(body_of(r), "{\"enabled\":true}\n");
	cr_assert_eq(request("GET", "/v2/auth/users", NULL, NULL, r, sizeof r), 401);
	cr_assert_str_eq(body_of(r), "{\"message\":\"Insufficient credentials\"}");
	cr_assert_eq(request("GET", "/v2/auth/users", "Authorization: Basic cm9vdDp4\r\n", NULL, r,
	                     sizeof r),
	             401, "root:x, a wrong password");
	cr_assert_eq(request("GET", "/v2/auth/users", "Authorization: Basic !!!!\r\n", NULL, r,
	                     sizeof r),
	             401, "malformed base64");
	cr_assert_eq(request("GET", "/v2/auth/users", ROOT_AUTH, NULL, r, sizeof r), 200);
	cr_assert_str_eq(body_of(r),
	                 "{\"users\":[{\"user\":\"root\",\"roles\":[{\"role\":\"root\","
	                 "\"permissions\":{\"kv\":{\"read\":[\"/*\"],\"write\":[\"/*\"]}}}]}]}\n");
	cr_assert_eq(request("GET", "/v2/auth/roles", ROOT_AUTH, NULL, r, sizeof r), 200);
	cr_assert_not_null(strstr(body_of(r), "{\"role\":\"guest\""), "enable made the guest role");
	cr_assert_eq(request("DELETE", "/v2/auth/enable", ROOT_AUTH, NULL, r, sizeof r), 200);
	cr_assert_eq(request("DELETE", "/v2/auth/enable", NULL, NULL, r, sizeof r), 409);
	cr_assert_str_eq(body_of(r), "{\"message\":\"auth: already disabled\"}");
}

Test(server_v2admin, client_gone_while_running)
{
	/* a request whose client closes at once: the worker still answers, the
	 * request is freed (ASan would report a leak or a use after free) */
	for (int i = 0; i < 8; i++) {
		int sv[2];
		cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
		cr_assert_eq(srv_http_add(http, sv[0], SRV_HTTP_CLIENT, false), 0);
		const char req[] = "GET /v2/auth/roles HTTP/1.1\r\nHost: x\r\n\r\n";
		cr_assert_eq(write(sv[1], req, sizeof req - 1), (ssize_t)(sizeof req - 1));
		close(sv[1]);
	}
	char r[4096];
	cr_assert_eq(request("GET", "/v2/auth/roles", NULL, NULL, r, sizeof r), 200);
}
