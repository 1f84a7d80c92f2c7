/*
 * srv_v2admin_int: what server/srv_v2admin.c (requests, members, machines,
 * stats, the libmicrohttpd glue) and server/srv_v2auth.c (v2 auth endpoints,
 * credentials, the replicated-store callbacks) share. Not for other modules.
 *
 * A v2req is one HTTP request from its first access-handler call to its
 * response; a worker thread fills its answer fields through the reply helpers
 * below (each replaces any answer set before).
 */
#ifndef METASTORE_SRV_V2ADMIN_INT_H
#define METASTORE_SRV_V2ADMIN_INT_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include <jansson.h>

#include "server/srv_jobs.h"
#include "server/srv_v2admin.h"

#define SRV_V2A_MAX_CNS 8     /* certificate CNs kept per request */
#define SRV_V2A_WAIT_MS 10000 /* longest wait for the node or a v2 write */
#define APP_JSON        "application/json"
#define TEXT_PLAIN      "text/plain; charset=utf-8"

typedef enum { RQ_READING = 0, RQ_RUNNING, RQ_DONE } rq_state;

typedef struct v2req {
	srv_v2a *a;
	struct MHD_Connection *c;
	rq_state state;
	char *method, *url;
	char *body;
	size_t len;
	bool too_big;
	char *authz;                /* Authorization header, NULL if none */
	char *ctype;                /* Content-Type header */
	char *cns[SRV_V2A_MAX_CNS]; /* client certificate CNs, leaf first */
	size_t n_cns;
	/* the answer */
	int status;
	const char *resp_ctype;
	const char *allow;
	bool nosniff;
	bool cluster_hdr;
	char *resp;
	struct v2req *next;
} v2req;

struct srv_v2a {
	srv_app *app;
	ec_v2a_store st;
	ec_v2a auth;
	pthread_mutex_t mu; /* the request list, each request's state */
	v2req *reqs;
	srv_jobs jobs;      /* the workers routing requests */
	/* stats */
	struct timespec start;
	uint64_t seen_lead;
	struct timespec lead_since;
};

/* Answers (srv_v2admin.c). @body is malloc'd and owned by @rq from here. */
void srv_v2a__reply(v2req *rq, int status, const char *ctype, char *body);
/* httptypes.HTTPError: {"message":M}, no trailing newline. */
void srv_v2a__reply_error(v2req *rq, int status, const char *msg);
/* A JSON value as Go's json.Encoder writes it (newline added); steals @j. */
void srv_v2a__reply_json(v2req *rq, int status, json_t *j);
/* The same for malloc'd JSON text @s (taken). */
void srv_v2a__reply_json_text(v2req *rq, int status, char *s);
/* Go's allowMethod over the NULL-terminated methods after @allow_list: false
 * with a 405 (Allow: @allow_list, a static string) when @rq's is not one. */
bool srv_v2a__allow_method(v2req *rq, const char *allow_list, ...);
/* Go's mux NotFound: 404 "404 page not found". */
void srv_v2a__reply_not_found_page(v2req *rq);

/* Credentials and v2 auth (srv_v2auth.c). */
/* The CNs of @c's verified client chain, leaf first (malloc'd, at most @cap). */
size_t srv_v2a__peer_cns(struct MHD_Connection *c, char **cns, size_t cap);
/* etcd's hasRootAccess / hasWriteRootAccess (GET and HEAD pass). */
bool srv_v2a__root_access(v2req *rq);
bool srv_v2a__write_root_access(v2req *rq);
/* 401 {"message":"Insufficient credentials"}. */
void srv_v2a__reply_no_auth(v2req *rq);
/* Everything under /v2/auth. */
void srv_v2a__route_auth(v2req *rq);
/* The callbacks over @app's replicated v2 store (app->v2store, srv_v2_do). */
void srv_v2a__replicated_store(srv_app *app, ec_v2a_store *out);

#endif
