/*
 * srv_app: what the etcd service handlers share — the open database, the KV
 * state machine, the node loop and this member's identity. One instance lives
 * in main() and is handed to the gRPC runtime as its app pointer.
 */
#ifndef METASTORE_SRV_APP_H
#define METASTORE_SRV_APP_H

#include <stdbool.h>
#include <stdint.h>

#include "etcdcompat/ec_alarm.h"
#include "etcdcompat/ec_auth.h"
#include "etcdcompat/ec_cluster.h"
#include "etcdcompat/ec_kv.h"
#include "etcdcompat/ec_lease.h"
#include "etcdcompat/ec_token.h"
#include "server/srv_config.h"
#include "server/srv_defer.h"
#include "server/srv_node.h"
#include "storage/st_db.h"

/* Kinds of srv_peer_forward requests between members (main.c serves them). */
enum {
	SRV_FWD_CLUSTER = 1,   /* a joining member asks for the member set */
	SRV_FWD_PROMOTE = 2,   /* is learner <BE64 id> caught up? (asked of the leader) */
	SRV_FWD_KEEPALIVE = 3, /* renew lease <BE64 id> (served by the leader) */
	SRV_FWD_TIMETOLIVE = 4, /* a packed LeaseTimeToLiveRequest (the leader knows
	                         * the remaining TTL) */
	SRV_FWD_HASHKV = 5,    /* a packed HashKVRequest (the corruption checks;
	                        * srv_maint_serve_hashkv) */
};

typedef struct srv_watch srv_watch;
typedef struct srv_maint srv_maint;
typedef struct srv_election srv_election;

typedef struct srv_app {
	const srv_config *cfg;
	st_db *db;
	ec_kv *kv;
	ec_kv_config kv_cfg;
	srv_node *node;
	srv_defer *replies;  /* sends the answers of applied writes (srv_defer.c) */
	ec_lessor *lessor; /* leases (srv_lease.c) */
	ec_cluster *cluster; /* the replicated member set */
	srv_watch *watch;    /* the Watch service (srv_watch.c) */
	ec_auth *auth;       /* users, roles, permissions (srv_auth.c) */
	ec_alarms *alarms;   /* the replicated alarm set (etcdcompat/ec_alarm.c) */
	struct ec_v2_store *v2store; /* the v2 store (etcdcompat/ec_v2store.h), always open */
	struct srv_v2 *v2;   /* /v2/keys and v2 proposals (srv_v2.h); set once the node runs */
	srv_maint *maint;    /* quota and corruption checks (srv_maint.c) */
	srv_election *election; /* the Election and Lock services (srv_election.c) */
	ec_tokens *tokens;   /* the --auth-token provider */
	bool client_cert_auth; /* --client-cert-auth: a verified client certificate's
	                        * CN names the user when no token is sent */
	void *peer;          /* the peer transport (srv_peer), NULL until started */
	uint64_t member_id;
	uint64_t cluster_id;
	const char *name;
	srv_urls peer_urls;          /* this member's advertised peer URLs */
	const char *token;           /* --initial-cluster-token (member ids of MemberAdd) */
	const srv_urls *client_urls; /* this member's advertised client URLs */
} srv_app;

#endif
