/*
 * srv_auth: the Auth service's handlers and srv_auth_info (see srv_auth.h).
 *
 * Three shapes of call:
 *   - plain writes (enable, disable, user delete/grant/revoke, role add/delete/
 *     grant/revoke): proposed as they are through srv_propose_write, which
 *     stamps the sender; apply decides;
 *   - writes with a password (user add, change password) and Authenticate:
 *     bcrypt runs on a detached worker thread, then the job proposes a copy of
 *     the request that carries only the hash (or, for Authenticate, the simple
 *     token's random part); the job is freed when the call completes;
 *   - reads (user/role get and list, status): a ReadIndex barrier, then the
 *     applied store answers.
 */
#include "server/srv_auth.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "etcdcompat/ec_errors.h"
#include "etcdcompat/ec_token.h"
#include "server/srv_app.h"
#include "server/srv_handlers.h"

/* Tokens expire on the wall clock (a jwt's exp is Unix time). */
static int64_t wall_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* When expired simple tokens were last dropped (about once a second). */
static _Atomic int64_t last_sweep_ms;

int srv_auth_info(const srv_call *call, ec_auth_info *ai)
{
	srv_app *app = srv_call_app(call);
	ai->user[0] = '\0';
	ai->revision = 0;
	if (app->auth == NULL || !ec_auth_enabled(app->auth))
		return EC_OK;
	int64_t now = wall_ms();
	int64_t last = atomic_load(&last_sweep_ms);
	if (now - last >= 1000 && atomic_compare_exchange_strong(&last_sweep_ms, &last, now))
		ec_token_expire(app->tokens, now);
	size_t len = 0;
	const char *tok = srv_call_metadata(call, "token", &len);
	if (tok == NULL) /* etcd's AuthInfoFromCtx: the gateway's Authorization header */
		tok = srv_call_metadata(call, "authorization", &len);
	if (tok != NULL)
		return ec_token_info(app->tokens, tok, len, ec_auth_revision(app->auth), now,
				     ai->user, sizeof ai->user, &ai->revision);
	if (app->client_cert_auth &&
	    srv_call_peer_cn(call, ai->user, sizeof ai->user) > 0) {
		ai->revision = ec_auth_revision(app->auth);
		return EC_OK;
	}
	ai->user[0] = '\0';
	return EC_OK;
}

bool srv_auth_token_may_lag(const srv_call *call, int err)
{
	srv_app *app = srv_call_app(call);
	return err == EC_INVALID_AUTH_TOKEN && app->tokens != NULL && ec_tokens_is_simple(app->tokens);
}

int srv_auth_maint_admin(const srv_call *call)
{
	return ec_auth_raw(srv_auth_admin(call));
}

int srv_auth_admin(const srv_call *call)
{
	srv_app *app = srv_call_app(call);
	ec_auth_info ai;
	int err = srv_auth_info(call, &ai);
	if (err == EC_OK)
		err = ec_auth_check_admin(app->auth, &ai);
	return err;
}

char *srv_auth_token_for(void *appv, const char *user, uint64_t rev, const char *simple,
			 uint64_t index)
{
	srv_app *app = appv;
	char *tok = NULL;
	if (ec_token_assign(app->tokens, user, rev, simple, index, wall_ms(), &tok) != EC_OK)
		return NULL;
	return tok;
}

/* ---- plain writes --------------------------------------------------------- */

#define PROPOSE(fn, kase)                                                                  \
	void fn(srv_call *call, const ProtobufCMessage *req)                              \
	{                                                                                  \
		srv_propose_write(call, EC_OK, METASTORE__INTERNAL_REQUEST__REQUEST_##kase,   \
				  (ProtobufCMessage *)req);                                   \
	}

PROPOSE(srv_auth_enable, AUTH_ENABLE)
PROPOSE(srv_auth_disable, AUTH_DISABLE)
PROPOSE(srv_auth_user_delete, USER_DELETE)
PROPOSE(srv_auth_user_grant_role, USER_GRANT_ROLE)
PROPOSE(srv_auth_user_revoke_role, USER_REVOKE_ROLE)
PROPOSE(srv_auth_role_add, ROLE_ADD)
PROPOSE(srv_auth_role_delete, ROLE_DELETE)
PROPOSE(srv_auth_role_grant_permission, ROLE_GRANT_PERMISSION)
PROPOSE(srv_auth_role_revoke_permission, ROLE_REVOKE_PERMISSION)

#undef PROPOSE

/* ---- password jobs -------------------------------------------------------- */

typedef enum { JOB_USER_ADD, JOB_CHANGE_PASSWORD, JOB_AUTHENTICATE } job_kind;

/* One password job; what it proposes lives here until the call completes. */
typedef struct pw_job {
	srv_call *call;
	job_kind kind;
	const ProtobufCMessage *req; /* the call's request */
	char hash[128];
	char simple[32];
	Etcdserverpb__AuthUserAddRequest add;
	Etcdserverpb__AuthUserChangePasswordRequest chg;
	Metastore__InternalAuthenticate au;
} pw_job;

/* Hash @password into @j->hash at the configured cost. */
static int job_hash(pw_job *j, const char *password)
{
	srv_app *app = srv_call_app(j->call);
	return ec_auth_hash_password(password, (int)app->cfg->bcrypt_cost, j->hash, sizeof j->hash);
}

/* Run @j (on its worker thread): bcrypt, then propose; the proposal owns @j. */
static void job_run(pw_job *j)
{
	srv_app *app = srv_call_app(j->call);
	int err = EC_OK;
	Metastore__InternalRequest__RequestCase which = METASTORE__INTERNAL_REQUEST__REQUEST__NOT_SET;
	ProtobufCMessage *msg = NULL;
	switch (j->kind) {
	case JOB_USER_ADD: {
		const Etcdserverpb__AuthUserAddRequest *r = (const void *)j->req;
		Etcdserverpb__AuthUserAddRequest init = ETCDSERVERPB__AUTH_USER_ADD_REQUEST__INIT;
		j->add = init;
		j->add.name = r->name;
		j->add.options = r->options;
		bool nopass = r->options != NULL && r->options->no_password;
		if (!nopass && r->name[0] != '\0') {
			err = job_hash(j, r->password);
			j->add.hashedpassword = j->hash;
		}
		which = METASTORE__INTERNAL_REQUEST__REQUEST_USER_ADD;
		msg = &j->add.base;
		break;
	}
	case JOB_CHANGE_PASSWORD: {
		const Etcdserverpb__AuthUserChangePasswordRequest *r = (const void *)j->req;
		Etcdserverpb__AuthUserChangePasswordRequest init =
		        ETCDSERVERPB__AUTH_USER_CHANGE_PASSWORD_REQUEST__INIT;
		j->chg = init;
		j->chg.name = r->name;
		err = job_hash(j, r->password);
		j->chg.hashedpassword = j->hash;
		which = METASTORE__INTERNAL_REQUEST__REQUEST_USER_CHANGE_PASSWORD;
		msg = &j->chg.base;
		break;
	}
	case JOB_AUTHENTICATE: {
		const Etcdserverpb__AuthenticateRequest *r = (const void *)j->req;
		err = ec_auth_check_password(app->auth, r->name, r->password, NULL);
		Metastore__InternalAuthenticate init = METASTORE__INTERNAL_AUTHENTICATE__INIT;
		j->au = init;
		j->au.name = r->name;
		if (err == EC_OK && ec_tokens_is_simple(app->tokens)) {
			if (ec_token_simple_new(j->simple, sizeof j->simple) != 0)
				err = EC_INTERNAL;
			j->au.simple_token = j->simple;
		}
		which = METASTORE__INTERNAL_REQUEST__REQUEST_AUTHENTICATE;
		msg = &j->au.base;
		break;
	}
	}
	srv_propose_owned(j->call, err, which, msg, j);
}

static void *job_main(void *arg)
{
	job_run(arg);
	return NULL;
}

/* Start @j on a worker thread (inline if no thread can be made). */
static void job_start(pw_job *j)
{
	pthread_t t;
	pthread_attr_t at;
	bool started = false;
	if (pthread_attr_init(&at) == 0) {
		pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
		started = pthread_create(&t, &at, job_main, j) == 0;
		pthread_attr_destroy(&at);
	}
	if (!started)
		job_run(j);
}

static pw_job *job_new(srv_call *call, job_kind kind, const ProtobufCMessage *req)
{
	pw_job *j = calloc(1, sizeof(*j));
	if (j == NULL) {
		srv_call_fail(call, EC_NOMEM);
		return NULL;
	}
	j->call = call;
	j->kind = kind;
	j->req = req;
	return j;
}

void srv_auth_user_add(srv_call *call, const ProtobufCMessage *req)
{
	pw_job *j = job_new(call, JOB_USER_ADD, req);
	if (j)
		job_start(j);
}

void srv_auth_user_change_password(srv_call *call, const ProtobufCMessage *req)
{
	pw_job *j = job_new(call, JOB_CHANGE_PASSWORD, req);
	if (j)
		job_start(j);
}

/* Authenticate: etcd checks the password against a current store. */
static void authenticate_ready(srv_call *call, void *arg, int err)
{
	pw_job *j = arg;
	if (err != EC_OK) {
		srv_call_fail(call, err);
		free(j);
		return;
	}
	job_start(j);
}

void srv_auth_authenticate(srv_call *call, const ProtobufCMessage *req)
{
	pw_job *j = job_new(call, JOB_AUTHENTICATE, req);
	if (j)
		srv_read_barrier(call, authenticate_ready, j);
}

/* ---- reads ---------------------------------------------------------------- */

typedef enum { RD_USER_GET, RD_USER_LIST, RD_ROLE_GET, RD_ROLE_LIST, RD_STATUS } read_kind;

typedef struct auth_read {
	read_kind kind;
	const ProtobufCMessage *req;
	ec_auth_info ai;
} auth_read;

static void read_ready(srv_call *call, void *arg, int err)
{
	auth_read *ar = arg;
	srv_app *app = srv_call_app(call);
	if (err == EC_OK && ar->kind != RD_STATUS)
		err = srv_auth_info(call, &ar->ai); /* once the state is current */
	ec_hdr hdr = srv_node_hdr(app->node);
	int64_t rev = ec_kv_revision(app->kv);
	void *resp = NULL;
	if (err == EC_OK) {
		switch (ar->kind) {
		case RD_USER_GET:
			err = ec_auth_user_get(app->auth, &ar->ai, (const void *)ar->req, &hdr, rev,
					       (Etcdserverpb__AuthUserGetResponse **)&resp);
			break;
		case RD_USER_LIST:
			err = ec_auth_user_list(app->auth, &ar->ai, &hdr, rev,
						(Etcdserverpb__AuthUserListResponse **)&resp);
			break;
		case RD_ROLE_GET:
			err = ec_auth_role_get(app->auth, &ar->ai, (const void *)ar->req, &hdr, rev,
					       (Etcdserverpb__AuthRoleGetResponse **)&resp);
			break;
		case RD_ROLE_LIST:
			err = ec_auth_role_list(app->auth, &ar->ai, &hdr, rev,
						(Etcdserverpb__AuthRoleListResponse **)&resp);
			break;
		case RD_STATUS:
			err = ec_auth_status(app->auth, &hdr, rev,
					     (Etcdserverpb__AuthStatusResponse **)&resp);
			break;
		}
	}
	srv_finish(call, err, resp);
	free(ar);
}

static void read_start(srv_call *call, read_kind kind, const ProtobufCMessage *req)
{
	auth_read *ar = malloc(sizeof(*ar));
	if (ar == NULL) {
		srv_call_fail(call, EC_NOMEM);
		return;
	}
	ar->kind = kind;
	ar->req = req;
	srv_read_barrier(call, read_ready, ar);
}

void srv_auth_user_get(srv_call *call, const ProtobufCMessage *req)
{
	read_start(call, RD_USER_GET, req);
}

void srv_auth_user_list(srv_call *call, const ProtobufCMessage *req)
{
	read_start(call, RD_USER_LIST, req);
}

void srv_auth_role_get(srv_call *call, const ProtobufCMessage *req)
{
	read_start(call, RD_ROLE_GET, req);
}

void srv_auth_role_list(srv_call *call, const ProtobufCMessage *req)
{
	read_start(call, RD_ROLE_LIST, req);
}

void srv_auth_status(srv_call *call, const ProtobufCMessage *req)
{
	read_start(call, RD_STATUS, req);
}
