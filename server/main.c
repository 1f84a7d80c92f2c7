/*
 * main: the metastore process. Parses etcd's flags, opens the data dir, settles
 * this member's identity (persisted on first start, as etcd does: later starts
 * ignore --initial-cluster), replays the log, starts the node loop and the gRPC
 * servers, and on SIGINT/SIGTERM shuts down in the order that loses nothing:
 * stop taking calls and let in-flight ones finish (they need the node), then stop
 * the node (which finishes every queued proposal), then close storage.
 */
#include <errno.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "etcdcompat/ec_auth.h"
#include "etcdcompat/ec_cluster.h"
#include "etcdcompat/ec_errors.h"
#include "etcdcompat/ec_kv.h"
#include "etcdcompat/ec_lease.h"
#include "etcdcompat/ec_member.h"
#include "etcdcompat/ec_token.h"
#include "ms_version.h"
#include "server/srv_app.h"
#include "server/srv_auth.h"
#include "server/srv_cluster.h"
#include "server/srv_election.h"
#include "server/srv_config.h"
#include "server/srv_defer.h"
#include "server/srv_handlers.h"
#include "server/srv_http.h"
#include "server/srv_listen.h"
#include "server/srv_tlsfront.h"
#include "server/srv_metrics.h"
#include "server/srv_identity.h"
#include "server/srv_restore.h"
#include "server/srv_grpcproxy.h"
#include "server/srv_snapshot.h"
#include "server/srv_lease.h"
#include "server/srv_compactor.h"
#include "server/srv_maint.h"
#include "server/srv_log.h"
#include "server/srv_watch.h"
#include "server/srv_methods.h"
#include "server/srv_node.h"
#include "server/srv_peer.h"
#include "server/srv_rpc.h"
#include "server/srv_tcpproxy.h"
#include "server/srv_tls.h"
#include "server/srv_v2admin.h"
#include "server/srv_v2.h"
#include "server/srv_wait.h"
#include "storage/st_db.h"
#include "storage/st_mvcc.h"

/* The identity records (st_meta names) and the initial member set:
 * server/srv_identity.h, shared with `metastore snapshot restore`. */
#define META_MEMBER_ID SRV_META_MEMBER_ID
#define META_CLUSTER_ID SRV_META_CLUSTER_ID
#define META_PEER_URLS SRV_META_PEER_URLS

static void put_be64(uint8_t *b, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		b[i] = (uint8_t)(v >> (56 - 8 * i));
}

static uint64_t get_be64(const uint8_t *b)
{
	uint64_t v = 0;
	for (int i = 0; i < 8; i++)
		v = v << 8 | b[i];
	return v;
}

static int meta_get_u64(st_db *db, const char *name, uint64_t *out)
{
	void *val = NULL;
	size_t len = 0;
	int rc = st_meta_get(db, name, &val, &len);
	if (rc != 0)
		return rc;
	if (len != 8) {
		free(val);
		return ST_ECORRUPT;
	}
	*out = get_be64(val);
	free(val);
	return 0;
}

/*
 * A joining member (--initial-cluster-state existing) asks the members named
 * in --initial-cluster for the cluster (etcd: GetClusterFromRemotePeers) and
 * finds itself in it by its peer URLs. Returns the set (caller frees) and the
 * ids, or NULL after logging why.
 */
/* ---- TLS (srv_tls.h): the two sides, settled once at start ---------------- */

static srv_tls *g_client_tls, *g_peer_tls; /* NULL: that side is plaintext */

static void tls_log(void *ctx, const char *level, const char *line)
{
	(void)ctx;
	srv_log_level lvl = SRV_LOG_INFO;
	(void)srv_log_level_parse(level, &lvl);
	srv_log(lvl, line);
}

/*
 * As etcd's embed sets up its listeners: the cipher suites (before any
 * credentials: the core reads them once), then the peer side, then the client
 * side (auto-TLS certificates, etcd's warnings, every file read and checked).
 * Returns 0, or -1 after logging why; nothing listens yet either way.
 */
static int setup_tls(const srv_config *cfg)
{
	char err[1024] = "";
	if (srv_tls_use_cipher_suites(cfg->cipher_suites, tls_log, NULL, err, sizeof err) != 0) {
		srv_logf(SRV_LOG_FATAL, "%s", err);
		return -1;
	}
	srv_tls_side peer = {
		.side = "peer", .cert_file = cfg->peer_cert_file, .key_file = cfg->peer_key_file,
		.trusted_ca_file = cfg->peer_trusted_ca_file, .crl_file = cfg->peer_crl_file,
		.client_cert_auth = cfg->peer_client_cert_auth,
		.allowed_cn = cfg->peer_cert_allowed_cn,
		.allowed_hostname = cfg->peer_cert_allowed_hostname,
		.skip_client_san = cfg->peer_skip_client_san, .auto_tls = cfg->peer_auto_tls,
		.data_dir = cfg->data_dir, .listen_urls = (const char *const *)cfg->listen_peer.url,
		.n_listen = cfg->listen_peer.n, .log = tls_log,
	};
	srv_tls_side client = {
		.side = "client", .cert_file = cfg->cert_file, .key_file = cfg->key_file,
		.trusted_ca_file = cfg->trusted_ca_file, .crl_file = cfg->client_crl_file,
		.client_cert_auth = cfg->client_cert_auth,
		.allowed_hostname = cfg->client_cert_allowed_hostname, .auto_tls = cfg->auto_tls,
		.data_dir = cfg->data_dir, .listen_urls = (const char *const *)cfg->listen_client.url,
		.n_listen = cfg->listen_client.n, .log = tls_log,
	};
	if (srv_tls_setup(&peer, &g_peer_tls, err, sizeof err) != 0 ||
	    srv_tls_setup(&client, &g_client_tls, err, sizeof err) != 0) {
		srv_logf(SRV_LOG_FATAL, "%s", err);
		srv_tls_unref(g_peer_tls);
		g_peer_tls = NULL;
		return -1;
	}
	/* A member that refuses this one's certificate says so with a TLS alert,
	 * which only the core's log lines tell: watch them (srv_tls.h). */
	if (g_peer_tls != NULL)
		srv_tls_watch_core_log(tls_log, NULL);
	return 0;
}

static Metastore__MemberSet *fetch_cluster(const srv_config *cfg, const srv_urls *self_urls,
					   uint64_t *mid, uint64_t *cid)
{
	Metastore__MemberSet *init = NULL;
	uint64_t dummy;
	char err[256] = "";
	if ((init = srv_identity_initial_members(cfg->initial_cluster, cfg->initial_cluster_token,
						 &dummy, err, sizeof(err))) == NULL) {
		srv_logf(SRV_LOG_FATAL, "%s", err[0] ? err : "out of memory");
		return NULL;
	}
	const char *urls[256];
	size_t nu = 0;
	for (size_t i = 0; i < init->n_members; i++)
		for (size_t j = 0; j < init->members[i]->n_peerurls && nu < 256; j++) {
			bool mine = false;
			for (size_t k = 0; k < self_urls->n; k++)
				mine |= strcmp(self_urls->url[k], init->members[i]->peerurls[j]) == 0;
			if (!mine)
				urls[nu++] = init->members[i]->peerurls[j];
		}
	Metastore__MemberSet *set = NULL;
	for (int attempt = 0; attempt < 10 && set == NULL; attempt++) {
		uint8_t *out = NULL;
		size_t outlen = 0;
		int rc = srv_peer_fetch(urls, nu, g_peer_tls, SRV_FWD_CLUSTER, NULL, 0, 2000, &out,
					&outlen);
		if (rc == 0) {
			Metastore__ForwardReply *fr = metastore__forward_reply__unpack(NULL, outlen, out);
			if (fr && fr->err == 0) {
				set = metastore__member_set__unpack(NULL, fr->data.len, fr->data.data);
				*cid = fr->cluster_id;
			}
			if (fr)
				metastore__forward_reply__free_unpacked(fr, NULL);
		}
		free(out);
		if (set == NULL) {
			srv_logf(SRV_LOG_WARN, "could not get cluster response from %zu peer URL(s): %s", nu,
			      rc ? srv_peer_strerror(rc) : "bad answer");
			struct timespec ts = {0, 500 * 1000000L};
			nanosleep(&ts, NULL);
		}
	}
	metastore__member_set__free_unpacked(init, NULL);
	if (set == NULL) {
		srv_logf(SRV_LOG_FATAL, "cannot fetch cluster info from peer urls: could not retrieve cluster "
			       "information from the given URLs");
		return NULL;
	}
	*mid = 0;
	for (size_t i = 0; i < set->n_members && !*mid; i++) {
		const Etcdserverpb__Member *m = set->members[i];
		size_t hit = 0;
		for (size_t j = 0; j < m->n_peerurls; j++)
			for (size_t k = 0; k < self_urls->n; k++)
				hit += strcmp(m->peerurls[j], self_urls->url[k]) == 0;
		if (hit && hit == self_urls->n)
			*mid = m->id;
	}
	if (*mid == 0) {
		srv_logf(SRV_LOG_FATAL, "error validating peerURLs: member with peer URLs %s is not in the "
			       "cluster (add it with 'etcdctl member add' first)",
		      self_urls->n ? self_urls->url[0] : "");
		metastore__member_set__free_unpacked(set, NULL);
		return NULL;
	}
	return set;
}

/* A BE64 identity record of the data dir in @dir, read without opening it
 * for writing; 0 when absent or unreadable. */
static uint64_t peek_u64(const char *dir, const char *name)
{
	void *v = NULL;
	size_t len = 0;
	uint64_t out = 0;
	if (st_db_peek_meta(dir, name, &v, &len) == 0 && len == 8)
		out = get_be64(v);
	free(v);
	return out;
}

/*
 * A data dir that holds a member of a cluster is never taken over by flags that
 * describe another one (another token, or an --initial-cluster without this
 * member): refuse before the dir is even opened for writing, so nothing in it
 * changes. (etcd 3.4 ignores the flags then; a joined member's id, assigned by
 * MemberAdd, cannot be recomputed, so only "new" flags are compared.) Returns 0
 * when the start may go on.
 */
static int check_flags_match_dir(const srv_config *cfg)
{
	if (strcmp(cfg->initial_cluster_state, "existing") == 0 ||
	    !srv_config_is_set(cfg, "initial-cluster"))
		return 0;
	uint64_t mid = peek_u64(cfg->data_dir, META_MEMBER_ID);
	uint64_t cid = peek_u64(cfg->data_dir, META_CLUSTER_ID);
	if (mid == 0 || cid == 0)
		return 0;
	char err[256] = "";
	uint64_t fcid = 0;
	Metastore__MemberSet *init = srv_identity_initial_members(
		cfg->initial_cluster, cfg->initial_cluster_token, &fcid, err, sizeof(err));
	bool found = false;
	for (size_t i = 0; init && i < init->n_members; i++)
		found |= init->members[i]->id == mid;
	if (init)
		metastore__member_set__free_unpacked(init, NULL);
	if (found && fcid == cid)
		return 0;
	srv_logf(SRV_LOG_FATAL,
	      "data dir %s belongs to member %016" PRIx64 " of cluster %016" PRIx64
	      ", but --initial-cluster/--initial-cluster-token describe cluster %016" PRIx64
	      "%s; refusing to start (nothing was changed)",
	      cfg->data_dir, mid, cid, fcid, found ? "" : " without this member");
	return -1;
}

/*
 * Settle member and cluster id and prepare the raft state: a data dir that
 * holds a member restarts as it is (after checking that the flags describe the
 * same cluster); an empty one becomes an initial member of a new cluster or
 * joins a running one, as --initial-cluster-state says. Returns 0, -1 (logged
 * fatal) or 1 when the data dir's member has been removed from the cluster.
 */
static int settle_identity(srv_app *app, const srv_config *cfg)
{
	uint64_t mid = 0, cid = 0;
	char err[512] = "";
	bool is_new = strcmp(cfg->initial_cluster_state, "existing") != 0;
	int rc = meta_get_u64(app->db, META_MEMBER_ID, &mid);
	if (rc == 0 && (rc = meta_get_u64(app->db, META_CLUSTER_ID, &cid)) == 0) {
		void *urls = NULL;
		size_t len = 0;
		if (st_meta_get(app->db, META_PEER_URLS, &urls, &len) == 0) {
			char *s = strndup(urls, len);
			if (s)
				srv_urls_split(s, &app->peer_urls);
			free(s);
			free(urls);
		}
		app->member_id = mid;
		app->cluster_id = cid;
		if (ec_cluster_open(app->db, &app->cluster) != 0 ||
		    srv_node_bootstrap(app->db, app->cluster, SRV_BOOT_RESTART, mid, NULL, err,
				       sizeof(err)) != 0) {
			srv_logf(SRV_LOG_FATAL, "restarting member in %s: %s", cfg->data_dir,
			      err[0] ? err : "cannot read the member set");
			return -1;
		}
		if (ec_cluster_count(app->cluster) == 0) {
			/* A single member from before the cluster work: it is its own set. */
			Etcdserverpb__Member self = ETCDSERVERPB__MEMBER__INIT, *sp = &self;
			Metastore__MemberSet set = METASTORE__MEMBER_SET__INIT;
			self.id = mid;
			self.name = (char *)cfg->name;
			self.peerurls = app->peer_urls.url;
			self.n_peerurls = app->peer_urls.n;
			set.format = 1;
			set.members = &sp;
			set.n_members = 1;
			if (ec_cluster_replace(app->cluster, &set) != 0) {
				srv_logf(SRV_LOG_FATAL, "upgrading %s: cannot write the member set", cfg->data_dir);
				return -1;
			}
		}
		if (ec_cluster_is_removed(app->cluster, mid)) {
			/* it applied its own removal before it stopped: nothing would ever
			 * talk to it again (etcd learns it from its peers' "410 Gone") */
			srv_logf(SRV_LOG_WARN, "%s; stopping", ec_strerror(EC_MEMBER_REMOVED));
			return 1;
		}
		srv_log_info("restarting local member", SRV_LF_ID("cluster-id", cid),
		             SRV_LF_ID("local-member-id", mid));
		return 0;
	}
	if (rc != ST_ENOTFOUND) {
		srv_logf(SRV_LOG_FATAL, "reading member identity from %s: %s", cfg->data_dir, st_strerror(rc));
		return -1;
	}

	if (srv_config_peer_urls_of(cfg->initial_cluster, app->name, &app->peer_urls) == 0) {
		srv_logf(SRV_LOG_FATAL, "couldn't find local name \"%s\" in the initial cluster configuration",
		      app->name);
		return -1;
	}
	Metastore__MemberSet *set = NULL;
	srv_boot_mode mode;
	if (is_new) {
		set = srv_identity_initial_members(cfg->initial_cluster, cfg->initial_cluster_token,
						   &cid, err, sizeof(err));
		if (set == NULL) {
			srv_logf(SRV_LOG_FATAL, "%s", err[0] ? err : "out of memory");
			return -1;
		}
		mid = ec_member_id((const char *const *)app->peer_urls.url, app->peer_urls.n,
				   cfg->initial_cluster_token, 0);
		mode = SRV_BOOT_NEW;
	} else {
		set = fetch_cluster(cfg, &app->peer_urls, &mid, &cid);
		if (set == NULL)
			return -1;
		mode = SRV_BOOT_JOIN;
	}
	rc = ec_cluster_open(app->db, &app->cluster);
	if (rc != 0 || srv_node_bootstrap(app->db, app->cluster, mode, mid, set, err, sizeof(err)) != 0 ||
	    (rc = srv_identity_persist(app->db, mid, cid, &app->peer_urls)) != 0) {
		srv_logf(SRV_LOG_FATAL, "initialising %s: %s", cfg->data_dir, err[0] ? err : st_strerror(rc));
		metastore__member_set__free_unpacked(set, NULL);
		return -1;
	}
	metastore__member_set__free_unpacked(set, NULL);
	app->member_id = mid;
	app->cluster_id = cid;
	srv_log_info("starting local member", SRV_LF_ID("local-member-id", mid),
	             SRV_LF_ID("cluster-id", cid));
	return 0;
}

/* How a background physical compaction ended (storage's report; etcd's text
 * for a finished one). */
static void compact_report(void *ctx, int64_t rev, int rc, int64_t took_ns)
{
	(void)ctx;
	if (rc == ST_OK)
		srv_log_info("finished scheduled compaction", SRV_LF_INT("compact-revision", rev),
		             SRV_LF_DUR_NS("took", took_ns));
	else
		srv_log_error("failed scheduled compaction; it is finished at the next start",
		              SRV_LF_INT("compact-revision", rev), SRV_LF_ERR(st_strerror(rc)));
}

/* ---- glue between the node, the transport and the lessor ---------------- */

typedef struct glue {
	srv_app *app;
	srv_peer *peer;
	srv_lease *lease;
	atomic_bool leader;
} glue;

static void glue_send(void *ctx, const raft_message *msgs, size_t n)
{
	glue *g = ctx;
	if (g->peer)
		srv_peer_send(g->peer, msgs, n);
}

static void glue_on_leader(void *ctx, bool leader)
{
	glue *g = ctx;
	atomic_store(&g->leader, leader);
	srv_lease_set_leader(g->lease, leader);
}

/* The member set changed: give the transport every other member's URLs. */
static void glue_on_members(void *ctx)
{
	glue *g = ctx;
	srv_v2_sync_members(g->app); /* etcd's /0/members records in the v2 store */
	if (!g->peer)
		return;
	Metastore__MemberSet *set = ec_cluster_copy(g->app->cluster);
	if (!set)
		return;
	for (size_t i = 0; i < set->n_members; i++) {
		const Etcdserverpb__Member *m = set->members[i];
		if (m->id != g->app->member_id)
			srv_peer_add(g->peer, m->id, (const char *const *)m->peerurls, m->n_peerurls);
	}
	for (size_t i = 0; i < set->n_removed; i++)
		srv_peer_remove(g->peer, set->removed[i]);
	metastore__member_set__free_unpacked(set, NULL);
}

/* A raft snapshot replaced the keyspace: the lessor re-reads its leases, the
 * auth store its users and roles. */
static void glue_on_restore(void *ctx)
{
	glue *g = ctx;
	if (ec_lessor_reload(g->app->lessor) != 0)
		srv_logf(SRV_LOG_WARN, "reloading leases after a snapshot failed");
	if (ec_auth_reload(g->app->auth) != 0)
		srv_logf(SRV_LOG_WARN, "reloading the auth store after a snapshot failed");
	if (g->app->v2store != NULL && ec_v2_reload(g->app->v2store) != 0)
		srv_logf(SRV_LOG_WARN, "reloading the v2 store after a snapshot failed");
	srv_watch_resync(g->app->watch);
}

static char *glue_on_authenticate(void *ctx, const char *user, uint64_t rev, const char *simple,
				  uint64_t index)
{
	glue *g = ctx;
	return srv_auth_token_for(g->app, user, rev, simple, index);
}

/* Auth store hooks (node thread): tokens that must stop working. */
static void auth_user_gone(void *arg, const char *user)
{
	srv_app *app = arg;
	ec_token_forget_user(app->tokens, user);
}

static void auth_disabled(void *arg)
{
	srv_app *app = arg;
	ec_token_forget_all(app->tokens);
}

/* Open the token provider (--auth-token: jwt keys are read now) and the auth
 * store. Returns 0, or -1 after logging why. */
static int open_auth(srv_app *app, srv_config *cfg)
{
	char err[256] = "";
	if (cfg->bcrypt_cost < EC_AUTH_BCRYPT_MIN_COST || cfg->bcrypt_cost > EC_AUTH_BCRYPT_MAX_COST) {
		srv_logf(SRV_LOG_WARN, "Use default bcrypt-cost %d instead of the invalid value %" PRId64,
		      EC_AUTH_BCRYPT_DEFAULT_COST, cfg->bcrypt_cost);
		cfg->bcrypt_cost = EC_AUTH_BCRYPT_DEFAULT_COST;
	}
	if (ec_tokens_open(cfg->auth_token, (unsigned)cfg->auth_token_ttl, &app->tokens, err,
			   sizeof err) != 0) {
		srv_logf(SRV_LOG_FATAL, "--auth-token=%s: %s", cfg->auth_token, err);
		return -1;
	}
	ec_auth_hooks hooks = {.user_gone = auth_user_gone, .disabled = auth_disabled, .arg = app};
	int rc = ec_auth_open(app->db, &hooks, &app->auth);
	if (rc != 0) {
		srv_logf(SRV_LOG_FATAL, "opening the auth store in %s: %s", cfg->data_dir, st_strerror(rc));
		return -1;
	}
	return 0;
}

static bool peer_is_removed(void *ctx, uint64_t id)
{
	glue *g = ctx;
	return ec_cluster_is_removed(g->app->cluster, id);
}

static void peer_on_message(void *ctx, raft_message *msg)
{
	glue *g = ctx;
	if (g->app->node == NULL || peer_is_removed(ctx, msg->from)) {
		srv_peer_msg_free(msg);
		return;
	}
	srv_node_step_message(g->app->node, msg, srv_peer_msg_free);
}

static void peer_on_unreachable(void *ctx, uint64_t to)
{
	glue *g = ctx;
	if (g->app->node)
		srv_node_report_unreachable(g->app->node, to);
}

static void peer_on_removed(void *ctx, uint64_t by)
{
	glue *g = ctx;
	if (g->app->node)
		srv_node_report_removed(g->app->node, by);
}

static void peer_on_snapshot_status(void *ctx, uint64_t to, bool failed)
{
	glue *g = ctx;
	if (g->app->node)
		srv_node_report_snapshot(g->app->node, to, failed);
}

static int forward_reply(int err, const uint8_t *data, size_t len, uint64_t cid, uint8_t **out,
			 size_t *outlen)
{
	Metastore__ForwardReply fr = METASTORE__FORWARD_REPLY__INIT;
	fr.err = err;
	fr.data.data = (uint8_t *)data;
	fr.data.len = len;
	fr.cluster_id = cid;
	*outlen = metastore__forward_reply__get_packed_size(&fr);
	*out = malloc(*outlen ? *outlen : 1);
	if (*out == NULL)
		return EC_NOMEM;
	metastore__forward_reply__pack(&fr, *out);
	return 0;
}

static int peer_on_forward(void *ctx, uint64_t from, uint32_t kind, const uint8_t *in, size_t inlen,
			   uint8_t **out, size_t *outlen, srv_peer_reply *reply)
{
	glue *g = ctx;
	srv_app *app = g->app;
	(void)from;
	switch (kind) {
	case SRV_FWD_CLUSTER: {
		uint8_t *buf = NULL;
		size_t len = 0;
		if (ec_cluster_pack(app->cluster, &buf, &len) != 0)
			return EC_NOMEM;
		int rc = forward_reply(0, buf, len, app->cluster_id, out, outlen);
		free(buf);
		return rc;
	}
	case SRV_FWD_PROMOTE:
		if (inlen != 8 || app->node == NULL)
			return EC_BAD_REQUEST;
		return forward_reply(srv_node_learner_ready(app->node, get_be64(in)), NULL, 0,
				     app->cluster_id, out, outlen);
	case SRV_FWD_KEEPALIVE: {
		if (inlen != 8)
			return EC_BAD_REQUEST;
		if (!atomic_load(&g->leader))
			return forward_reply(EC_NOT_LEADER, NULL, 0, app->cluster_id, out, outlen);
		int64_t ttl = 0;
		int e = ec_lessor_renew(app->lessor, (int64_t)get_be64(in), &ttl);
		uint8_t b[8];
		put_be64(b, (uint64_t)ttl);
		return forward_reply(e, b, 8, app->cluster_id, out, outlen);
	}
	case SRV_FWD_HASHKV:
		return srv_maint_serve_hashkv(app, in, inlen, out, outlen, reply);
	case SRV_FWD_TIMETOLIVE: {
		if (!atomic_load(&g->leader))
			return forward_reply(EC_NOT_LEADER, NULL, 0, app->cluster_id, out, outlen);
		Etcdserverpb__LeaseTimeToLiveRequest *r =
			etcdserverpb__lease_time_to_live_request__unpack(NULL, inlen, in);
		if (r == NULL)
			return EC_BAD_REQUEST;
		ec_hdr hdr = srv_node_hdr(app->node);
		Etcdserverpb__LeaseTimeToLiveResponse *resp = NULL;
		int e = ec_lessor_time_to_live(app->lessor, r, &hdr, &resp);
		etcdserverpb__lease_time_to_live_request__free_unpacked(r, NULL);
		size_t len = resp ? etcdserverpb__lease_time_to_live_response__get_packed_size(resp) : 0;
		uint8_t *buf = malloc(len ? len : 1);
		if (buf && resp)
			etcdserverpb__lease_time_to_live_response__pack(resp, buf);
		int rc = buf ? forward_reply(e, buf, len, app->cluster_id, out, outlen) : EC_NOMEM;
		free(buf);
		ec_msg_free(resp);
		return rc;
	}
	default:
		return EC_BAD_REQUEST;
	}
}

/* ---- publish: make this member's name and client URLs known ------------ */

/* A publish that failed is proposed again this long after its answer. */
#define PUBLISH_RETRY_MS 1000

typedef struct publish_req {
	srv_app *app;
	Metastore__InternalRequest ir;
	Metastore__MemberAttr attr;
	atomic_bool done;
	atomic_bool inflight; /* a publish proposal is waiting: never reuse ir then */
} publish_req;

static void publish_done(void *ctx, int err, void *resp)
{
	publish_req *pr = ctx;
	atomic_store(&pr->inflight, false);
	if (resp)
		metastore__member_set__free_unpacked(resp, NULL);
	/* etcd's fields: "{Name:n ClientURLs:[u1 u2]}", "/0/members/<id>/attributes". */
	char attrs[1024], path[64];
	size_t al = (size_t)snprintf(attrs, sizeof attrs, "{Name:%s ClientURLs:[", pr->attr.name);
	for (size_t i = 0; i < pr->attr.n_client_urls && al < sizeof attrs; i++)
		al += (size_t)snprintf(attrs + al, sizeof attrs - al, "%s%s", i ? " " : "",
		                       pr->attr.client_urls[i]);
	if (al < sizeof attrs)
		snprintf(attrs + al, sizeof attrs - al, "]}");
	snprintf(path, sizeof path, "/0/members/%" PRIx64 "/attributes", pr->app->member_id);
	if (err == EC_OK) {
		/* etcd's text: tools (and etcd's e2e suite) wait for "published". */
		srv_log_info("published local member to cluster through raft",
		             SRV_LF_ID("local-member-id", pr->app->member_id),
		             SRV_LF_STR("local-member-attributes", attrs),
		             SRV_LF_STR("request-path", path),
		             SRV_LF_ID("cluster-id", pr->app->cluster_id),
		             SRV_LF_DUR_MS("publish-timeout", PUBLISH_RETRY_MS));
		atomic_store(&pr->done, true);
		return;
	}
	srv_log_warn("failed to publish local member to cluster through raft",
	             SRV_LF_ID("local-member-id", pr->app->member_id),
	             SRV_LF_STR("local-member-attributes", attrs), SRV_LF_STR("request-path", path),
	             SRV_LF_DUR_MS("publish-timeout", PUBLISH_RETRY_MS), SRV_LF_ERR(ec_strerror(err)));
	atomic_store(&pr->done, false);
}

static void publish(publish_req *pr)
{
	Metastore__InternalRequest ir = METASTORE__INTERNAL_REQUEST__INIT;
	pr->ir = ir;
	pr->ir.request_case = METASTORE__INTERNAL_REQUEST__REQUEST_MEMBER_ATTR;
	pr->ir.member_attr = &pr->attr;
	atomic_store(&pr->inflight, true);
	if (srv_node_propose(pr->app->node, &pr->ir, publish_done, pr) != EC_OK) {
		atomic_store(&pr->inflight, false);
		atomic_store(&pr->done, false);
	}
}

/* ---- HTTP endpoints and /metrics (srv_http.h, srv_listen.h) ---------------- */

typedef struct http_src {
	srv_app *app;
	srv_rpc *rpc; /* the client server, for grpc_server_*; set before HTTP starts */
} http_src;

static bool http_has_leader(void *ctx)
{
	http_src *hs = ctx;
	srv_node_status st;
	srv_node_get_status(hs->app->node, &st);
	return st.lead != 0;
}

/* /health's linearizable check (etcd 3.4 proposes a QGET with a 1 s timeout):
 * a ReadIndex round, waited for at most a second. srv_http runs it on a worker
 * thread; the node's callback may come after the wait gave up. */
static void health_read_release(srv_waitone *w)
{
	free(w);
}

static void health_read_done(void *ctx, int err)
{
	srv_waitone_post(ctx, err);
}

static bool http_quorum_read(void *ctx)
{
	http_src *hs = ctx;
	srv_waitone *w = malloc(sizeof(*w));
	if (w == NULL)
		return false;
	srv_waitone_init(w, health_read_release);
	if (srv_node_read(hs->app->node, health_read_done, w) != EC_OK) {
		srv_waitone_abandon(w);
		return false;
	}
	bool ok = srv_waitone_wait(w, 1000, EC_TIMEOUT) == EC_OK;
	srv_waitone_unref(w);
	return ok;
}

/* /v3 gateway: a client certificate's CN would name the user (etcd refuses
 * CN certificates on the gateway then). */
static bool http_auth_by_cn(void *ctx)
{
	http_src *hs = ctx;
	return hs->app->client_cert_auth && hs->app->auth != NULL && ec_auth_enabled(hs->app->auth);
}

/* The one place /health and /readyz learn of alarms (ec_alarm.h). */
static size_t http_alarms(void *ctx, const char **names, size_t cap)
{
	http_src *hs = ctx;
	size_t n = 0;
	if (hs->app->alarms == NULL)
		return 0;
	if (n < cap && ec_alarms_active(hs->app->alarms, ETCDSERVERPB__ALARM_TYPE__NOSPACE))
		names[n++] = "NOSPACE";
	if (n < cap && ec_alarms_active(hs->app->alarms, ETCDSERVERPB__ALARM_TYPE__CORRUPT))
		names[n++] = "CORRUPT";
	return n;
}

static void gauge(srv_mbuf *b, const char *name, const char *help, const char *labels, double v)
{
	srv_metrics_family(b, name, help, "gauge");
	srv_metrics_sample(b, name, labels, v);
}

static void counter(srv_mbuf *b, const char *name, const char *help, double v)
{
	srv_metrics_family(b, name, help, "counter");
	srv_metrics_sample(b, name, NULL, v);
}

/* Every family of /metrics: what the node, storage and the process report now,
 * then the counters kept as events happen (srv_mserver, the client gRPC
 * server's table). */
static void http_metrics(void *ctx, srv_mbuf *b)
{
	http_src *hs = ctx;
	srv_app *app = hs->app;
	srv_node_status st;
	srv_node_get_status(app->node, &st);
	int64_t total = 0, in_use = 0;
	st_db_size(app->db, &total, &in_use);
	/* etcd keeps a live-key gauge; metastore counts at scrape time */
	int64_t nkeys = 0;
	if (ec_kv_count_keys(app->kv, &nkeys) == EC_OK)
		gauge(b, "etcd_debugging_mvcc_keys_total", "Total number of keys.", NULL,
		      (double)nkeys);
	ec_kv_stats ks;
	ec_kv_stats_get(app->kv, &ks);
	counter(b, "etcd_mvcc_delete_total", "Total number of deletes seen by this member.",
	        (double)ks.deletes);
	counter(b, "etcd_mvcc_put_total", "Total number of puts seen by this member.",
	        (double)ks.puts);
	counter(b, "etcd_mvcc_range_total", "Total number of ranges seen by this member.",
	        (double)ks.ranges);
	counter(b, "etcd_mvcc_txn_total", "Total number of txns seen by this member.",
	        (double)ks.txns);
	gauge(b, "etcd_mvcc_db_total_size_in_bytes",
	      "Total size of the underlying database physically allocated in bytes.", NULL,
	      (double)total);
	gauge(b, "etcd_mvcc_db_total_size_in_use_in_bytes",
	      "Total size of the underlying database logically in use in bytes.", NULL,
	      (double)in_use);
	srv_metrics_server_render(b);
	gauge(b, "etcd_server_has_leader", "Whether or not a leader exists. 1 is existence, 0 is not.",
	      NULL, st.lead != 0);
	gauge(b, "etcd_server_is_leader",
	      "Whether or not this member is a leader. 1 if is, 0 otherwise.", NULL, st.is_leader);
	gauge(b, "etcd_server_is_learner",
	      "Whether or not this member is a learner. 1 if is, 0 otherwise.", NULL, st.is_learner);
	gauge(b, "etcd_server_proposals_applied_total",
	      "The total number of consensus proposals applied.", NULL, (double)st.applied_index);
	gauge(b, "etcd_server_proposals_committed_total",
	      "The total number of consensus proposals committed.", NULL, (double)st.commit_index);
	gauge(b, "etcd_cluster_version",
	      "Which version is running. 1 for 'cluster_version' label with current cluster version",
	      "cluster_version=\"" MS_CLUSTER_VERSION "\"", 1);
	gauge(b, "etcd_server_version",
	      "Which version is running. 1 for 'server_version' label with current version.",
	      "server_version=\"" MS_ETCD_VERSION "\"", 1);
	srv_metrics_grpc_render(srv_rpc_metrics(hs->rpc), b);
	srv_metrics_process(b);
}


int main(int argc, char **argv)
{
	if (argc > 1 && strcmp(argv[1], "grpc-proxy") == 0)
		return srv_gp_main(argc - 1, argv + 1);
	if (argc > 1 && strcmp(argv[1], "snapshot") == 0)
		return srv_restore_main(argc - 1, argv + 1);
	if (argc > 1 && strcmp(argv[1], "gateway") == 0)
		return srv_tp_main(argc - 1, argv + 1);
	srv_config cfg;
	char err[512] = "";
	int prc = srv_config_parse(&cfg, argc, argv, err, sizeof(err));
	if (prc == SRV_CONFIG_HELP) {
		srv_config_usage(stdout);
		srv_config_free(&cfg);
		return 0;
	}
	if (prc == SRV_CONFIG_VERSION) {
		printf("metastore Version: %s\netcd API Version: %s\n", MS_VERSION, MS_ETCD_VERSION);
		srv_config_free(&cfg);
		return 0;
	}
	if (prc != 0) {
		fprintf(stderr, "metastore: %s\nRun 'metastore --help' for usage.\n", err);
		srv_config_free(&cfg);
		return 2;
	}
	if (srv_log_setup(cfg.logger, cfg.log_level, cfg.log_outputs, err, sizeof err) != 0) {
		fprintf(stderr, "metastore: error verifying flags, %s\nRun 'metastore --help' for usage.\n",
		        err);
		srv_config_free(&cfg);
		return 2;
	}
	srv_log_info("starting an etcd server", SRV_LF_STR("etcd-version", MS_ETCD_VERSION),
	             SRV_LF_STR("metastore-version", MS_VERSION), SRV_LF_STR("name", cfg.name),
	             SRV_LF_STR("data-dir", cfg.data_dir),
	             SRV_LF_STRS("initial-advertise-peer-urls", cfg.initial_advertise_peer.url,
	                         cfg.initial_advertise_peer.n),
	             SRV_LF_STRS("listen-peer-urls", cfg.listen_peer.url, cfg.listen_peer.n),
	             SRV_LF_STRS("advertise-client-urls", cfg.advertise_client.url,
	                         cfg.advertise_client.n),
	             SRV_LF_STRS("listen-client-urls", cfg.listen_client.url, cfg.listen_client.n),
	             SRV_LF_STR("initial-cluster", cfg.initial_cluster),
	             SRV_LF_STR("initial-cluster-state", cfg.initial_cluster_state),
	             SRV_LF_STR("initial-cluster-token", cfg.initial_cluster_token),
	             SRV_LF_DUR_MS("heartbeat-interval", cfg.heartbeat_interval_ms),
	             SRV_LF_DUR_MS("election-timeout", cfg.election_timeout_ms),
	             SRV_LF_UINT("snapshot-count", cfg.snapshot_count),
	             SRV_LF_INT("max-request-bytes", cfg.max_request_bytes),
	             SRV_LF_STR("log-level", cfg.log_level));
	{
		const char *lines[SRV_CONFIG_MAX_WARNINGS];
		size_t nw = srv_config_warnings(&cfg, lines, SRV_CONFIG_MAX_WARNINGS);
		for (size_t i = 0; i < nw && i < SRV_CONFIG_MAX_WARNINGS; i++)
			srv_logf(SRV_LOG_WARN, "%s", lines[i]);
		const char *names[SRV_CONFIG_MAX_FLAGS];
		size_t ni = srv_config_ignored(&cfg, names, SRV_CONFIG_MAX_FLAGS);
		for (size_t i = 0; i < ni && i < SRV_CONFIG_MAX_FLAGS; i++)
			srv_logf(SRV_LOG_WARN, "flag --%s has no effect in metastore (ignored)", names[i]);
	}
	if (setup_tls(&cfg) != 0) {
		srv_config_free(&cfg);
		return 1;
	}

	/* Signals are taken by sigwait in this thread only; set the mask before any
	 * other thread exists so they all inherit it. */
	sigset_t sigs;
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGINT);
	sigaddset(&sigs, SIGTERM);
	pthread_sigmask(SIG_BLOCK, &sigs, NULL);
	signal(SIGPIPE, SIG_IGN);
	srv_rpc_tune_runtime(); /* before any thread takes a gRPC core lock */

	int exit_code = 1;
	srv_app app = {0};
	app.cfg = &cfg;
	app.name = cfg.name;
	app.token = cfg.initial_cluster_token;
	app.client_cert_auth = cfg.client_cert_auth;
	app.client_urls = &cfg.advertise_client;
	app.kv_cfg.max_txn_ops = cfg.max_txn_ops;
	srv_rpc *rpc = NULL, *peer_rpc = NULL;
	srv_tlsfront *peer_front = NULL; /* the peer port's own TLS, when it has one */
	srv_listen *client_listen = NULL, *metrics_listen = NULL;
	srv_http *http = NULL;
	srv_v2a *v2a = NULL;
	http_src hsrc = {.app = &app};
	srv_compactor *compactor = NULL;
	glue g = {.app = &app};
	atomic_init(&g.leader, false);
	publish_req pub = {.app = &app};
	atomic_init(&pub.done, false);
	atomic_init(&pub.inflight, false);

	if (srv_restore_etcd_dir(&cfg) != 0 || check_flags_match_dir(&cfg) != 0)
		goto out;
	st_options sopts = {.create_if_missing = true};
	int rc = st_db_open(cfg.data_dir, &sopts, &app.db, err, sizeof(err));
	if (rc != 0) {
		srv_logf(SRV_LOG_FATAL, "cannot open data dir %s: %s", cfg.data_dir, err[0] ? err : st_strerror(rc));
		goto out;
	}
	if ((rc = settle_identity(&app, &cfg)) != 0) {
		if (rc > 0) /* this member was removed from the cluster */
			exit_code = 0;
		goto out;
	}
	/* Physical compaction off the node thread (the log loop never waits for it). */
	st_mvcc_set_compact_report(app.db, compact_report, NULL);
	st_mvcc_set_background(app.db, true);
	rc = ec_kv_open(app.db, &app.kv_cfg, &app.kv);
	if (rc != 0) {
		srv_logf(SRV_LOG_FATAL, "opening the keyspace in %s: %s", cfg.data_dir, st_strerror(rc));
		goto out;
	}
	/* The lessor before the node: log replay applies lease entries. */
	ec_lessor_config lcfg = {
		.min_ttl = ec_lease_min_ttl(cfg.heartbeat_interval_ms, cfg.election_timeout_ms),
		.now_ms = srv_lease_now_ms,
	};
	rc = ec_lessor_open(app.db, app.kv, &lcfg, &app.lessor);
	if (rc != 0) {
		srv_logf(SRV_LOG_FATAL, "opening the leases in %s: %s", cfg.data_dir, st_strerror(rc));
		goto out;
	}
	/* The auth store before the node too: log replay applies auth entries. */
	if (open_auth(&app, &cfg) != 0)
		goto out;
	/* The v2 store as well (replayed v2 entries); kept with or without
	 * --enable-v2, as etcd's, so that every member applies the same log. */
	if ((rc = ec_v2_new(app.db, &app.v2store)) != 0) {
		srv_logf(SRV_LOG_FATAL, "opening the v2 store in %s: %s", cfg.data_dir, ec_strerror(rc));
		goto out;
	}
	ec_kv_set_v2_hook(app.kv, ec_v2_apply_hook, app.v2store);
	/* The alarms too (replayed Alarm entries); the quota and checks with them. */
	if ((rc = ec_alarms_open(app.db, &app.alarms)) != 0 || srv_maint_new(&app) != 0) {
		srv_logf(SRV_LOG_FATAL, "opening the alarms in %s: %s", cfg.data_dir, st_strerror(rc));
		goto out;
	}

	/* The peer transport and its port, before the node: raft talks at once. */
	srv_peer_config tcfg = {
		.self_id = app.member_id,
		.cluster_id = app.cluster_id,
		.on_message = peer_on_message,
		.on_unreachable = peer_on_unreachable,
		.on_snapshot_status = peer_on_snapshot_status,
		.is_removed = peer_is_removed,
		.on_removed = peer_on_removed,
		.on_forward = peer_on_forward,
		.ctx = &g,
		.tls = g_peer_tls,
	};
	if (srv_peer_new(&tcfg, &g.peer) != 0) {
		srv_logf(SRV_LOG_FATAL, "cannot start the peer transport: out of memory");
		goto out;
	}
	app.peer = g.peer;
	srv_rpc_config pcfg = {0};
	pcfg.listen = (const char *const *)cfg.listen_peer.url;
	pcfg.tls = g_peer_tls;
	pcfg.n_listen = cfg.listen_peer.n;
	pcfg.threads = 2;
	/* The client port's workers poll every socket (docs/architecture.md, "Who
	 * polls"); idle peer-port pollers only took turns as the poller. */
	pcfg.no_polling = true;
	pcfg.max_request_bytes = SRV_PEER_MAX_REQUEST_BYTES;
	/* Allowed CN / hostname: metastore's own TLS server takes the https://
	 * and unixs:// peer URLs (srv_tlsfront.h), the core the plaintext behind. */
	const char *peer_tls_urls[SRV_MAX_URLS], *peer_plain_urls[SRV_MAX_URLS];
	size_t n_peer_tls = 0, n_peer_plain = 0;
	if (srv_tls_wants_front(g_peer_tls)) {
		for (size_t i = 0; i < cfg.listen_peer.n; i++) {
			const char *u = cfg.listen_peer.url[i];
			if (srv_config_url_secure(u))
				peer_tls_urls[n_peer_tls++] = u;
			else
				peer_plain_urls[n_peer_plain++] = u;
		}
		srv_tlsfront_config fcfg = {.urls = peer_tls_urls, .n_urls = n_peer_tls,
		                            .tls = g_peer_tls};
		if (n_peer_tls > 0 && srv_tlsfront_bind(&fcfg, &peer_front, err, sizeof(err)) != 0) {
			srv_logf(SRV_LOG_FATAL, "cannot listen for peers: %s", err);
			goto out;
		}
		pcfg.listen = peer_plain_urls;
		pcfg.n_listen = n_peer_plain;
		pcfg.tls = NULL;
		pcfg.adopt_fds = true;
	}
	srv_method prows[SRV_PEER_N_METHODS];
	size_t np = srv_peer_methods(prows, SRV_PEER_N_METHODS);
	if (srv_rpc_start(&pcfg, prows, np, g.peer, &peer_rpc, err, sizeof(err)) != 0) {
		srv_logf(SRV_LOG_FATAL, "cannot listen for peers: %s", err);
		goto out;
	}
	if (peer_front != NULL && srv_tlsfront_start(peer_front, peer_rpc) != 0) {
		srv_logf(SRV_LOG_FATAL, "cannot listen for peers: out of threads");
		goto out;
	}
	glue_on_members(&g);

	/* Raft ticks at a tenth of the heartbeat interval (finer timing than etcd's
	 * one tick per heartbeat, same timeouts). */
	unsigned tick = (unsigned)(cfg.heartbeat_interval_ms / 10);
	if (tick == 0)
		tick = 1;
	srv_node_config ncfg = {
		.db = app.db,
		.kv = app.kv,
		.cluster = app.cluster,
		.auth = app.auth,
		.alarms = app.alarms,
		.over_quota = srv_maint_over_quota,
		.quota_ctx = &app,
		.on_authenticate = glue_on_authenticate,
		.member_id = app.member_id,
		.cluster_id = app.cluster_id,
		.max_request_bytes = (uint64_t)cfg.max_request_bytes,
		.tick_ms = tick,
		.heartbeat_ticks = (unsigned)(cfg.heartbeat_interval_ms / tick),
		.election_ticks = (unsigned)(cfg.election_timeout_ms / tick),
		.send = glue_send,
		.on_leader = glue_on_leader,
		.on_members = glue_on_members,
		.on_restore = glue_on_restore,
		.snapshot_count = (uint64_t)cfg.snapshot_count,
		/* etcd 3.4 defaults pre-vote off, 3.6 on: on unless the flag says */
		.pre_vote = srv_config_is_set(&cfg, "pre-vote") ? cfg.pre_vote : true,
		.strict_reconfig_check = cfg.strict_reconfig_check,
		.ctx = &g,
	};
	srv_watch_config wcfg = {
		.db = app.db,
		.max_request_bytes = (size_t)cfg.max_request_bytes,
		.progress_ms = cfg.watch_progress_notify_ms,
		.election_ms = cfg.election_timeout_ms,
	};
	if (srv_watch_start(&wcfg, &app.watch) != 0) {
		srv_logf(SRV_LOG_FATAL, "starting the watch thread: out of memory or threads");
		goto out;
	}
	if (srv_maint_initial_check(&app) != 0) /* etcd: before the member starts */
		goto out;
	if (srv_defer_start("ms-reply", &app.replies) != 0) {
		srv_logf(SRV_LOG_FATAL, "starting the reply thread: out of memory or threads");
		goto out;
	}
	ncfg.replies = app.replies;
	if (srv_node_start(&ncfg, &app.node, err, sizeof(err)) != 0) {
		srv_logf(SRV_LOG_FATAL, "starting the node: %s", err);
		goto out;
	}
	srv_watch_set_node(app.watch, app.node);
	if (srv_v2_new(&app, &app.v2) != 0) {
		srv_logf(SRV_LOG_FATAL, "starting the v2 store timer: out of memory or threads");
		goto out;
	}
	if (srv_maint_start(&app) != 0) {
		srv_logf(SRV_LOG_FATAL, "starting the corruption check: out of threads");
		goto out;
	}
	if (srv_compactor_start(&app, &compactor) != 0) {
		srv_logf(SRV_LOG_FATAL, "starting the auto-compactor: out of memory or threads");
		goto out;
	}
	if (srv_lease_start(app.lessor, app.node, &g.lease) != 0) {
		srv_logf(SRV_LOG_FATAL, "starting the lease expiry thread: out of memory or threads");
		goto out;
	}
	srv_lease_set_leader(g.lease, atomic_load(&g.leader));

	/* Client and metrics URLs: our listeners (gRPC and HTTP on one port,
	 * srv_listen.h), bound before anything serves so a port in use stops the
	 * start. TLS gRPC clients are relayed to the core's own TLS listener on an
	 * abstract unix socket named after this process. */
	char tls_grpc[96];
	snprintf(tls_grpc, sizeof tls_grpc, "metastore.%ld.%016" PRIx64 ".grpc-tls", (long)getpid(),
	         app.member_id);
	char tls_grpc_addr[128];
	snprintf(tls_grpc_addr, sizeof tls_grpc_addr, "unixs-abstract:%s", tls_grpc);
	const char *tls_grpc_listen[1] = {tls_grpc_addr};
	unsigned http_kinds = 0;
	for (size_t i = 0; i < cfg.listen_client.n; i++)
		http_kinds |= SRV_HTTP_KIND(SRV_HTTP_CLIENT,
		                            srv_config_url_secure(cfg.listen_client.url[i]));
	for (size_t i = 0; i < cfg.listen_metrics.n; i++)
		http_kinds |= SRV_HTTP_KIND(SRV_HTTP_METRICS,
		                            srv_config_url_secure(cfg.listen_metrics.url[i]));
	srv_listen_config lcfg_client = {
		.urls = (const char *const *)cfg.listen_client.url,
		.n_urls = cfg.listen_client.n,
		.mux = SRV_HTTP_CLIENT,
		.tls_grpc_addr = tls_grpc,
	};
	if (srv_listen_bind(&lcfg_client, &client_listen, err, sizeof(err)) != 0) {
		srv_logf(SRV_LOG_FATAL, "cannot serve clients: %s", err);
		goto out;
	}
	srv_listen_config lcfg_metrics = {
		.urls = (const char *const *)cfg.listen_metrics.url,
		.n_urls = cfg.listen_metrics.n,
		.mux = SRV_HTTP_METRICS,
	};
	if (cfg.listen_metrics.n > 0 &&
	    srv_listen_bind(&lcfg_metrics, &metrics_listen, err, sizeof(err)) != 0) {
		srv_logf(SRV_LOG_FATAL, "cannot serve metrics: %s", err);
		goto out;
	}

	srv_rpc_config rcfg = {0};
	rcfg.listen = tls_grpc_listen;
	rcfg.tls = g_client_tls;
	rcfg.n_listen = (http_kinds & SRV_HTTP_KIND(SRV_HTTP_CLIENT, true)) ? 1 : 0;
	rcfg.adopt_fds = true;
	rcfg.metrics = true;
	rcfg.threads = cfg.grpc_threads;
	rcfg.max_request_bytes = (size_t)cfg.max_request_bytes;
	rcfg.keepalive_min_time_ms = (int)cfg.grpc_keepalive_min_time_ms;
	rcfg.keepalive_time_ms = (int)cfg.grpc_keepalive_interval_ms;
	rcfg.keepalive_timeout_ms = (int)cfg.grpc_keepalive_timeout_ms;
	rcfg.max_concurrent_streams = (uint32_t)cfg.max_concurrent_streams;
	srv_method methods[SRV_M__COUNT];
	srv_etcd_methods(methods);
	methods[SRV_M_KV_RANGE].unary = srv_kv_range;
	methods[SRV_M_KV_PUT].unary = srv_kv_put;
	methods[SRV_M_KV_DELETE_RANGE].unary = srv_kv_delete_range;
	methods[SRV_M_KV_TXN].unary = srv_kv_txn;
	methods[SRV_M_KV_COMPACT].unary = srv_kv_compact;
	methods[SRV_M_STATUS].unary = srv_maint_status;
	methods[SRV_M_DEFRAGMENT].unary = srv_maint_defragment;
	methods[SRV_M_ALARM].unary = srv_maint_alarm;
	methods[SRV_M_HASH].unary = srv_maint_hash;
	methods[SRV_M_HASH_KV].unary = srv_maint_hash_kv;
	methods[SRV_M_MOVE_LEADER].unary = srv_maint_move_leader;
	methods[SRV_M_SNAPSHOT].stream = srv_maint_snapshot;
	methods[SRV_M_MEMBER_LIST].unary = srv_cluster_member_list;
	methods[SRV_M_MEMBER_ADD].unary = srv_cluster_member_add;
	methods[SRV_M_MEMBER_REMOVE].unary = srv_cluster_member_remove;
	methods[SRV_M_MEMBER_UPDATE].unary = srv_cluster_member_update;
	methods[SRV_M_MEMBER_PROMOTE].unary = srv_cluster_member_promote;
	methods[SRV_M_LEASE_GRANT].unary = srv_lease_grant;
	methods[SRV_M_LEASE_REVOKE].unary = srv_lease_revoke;
	methods[SRV_M_LEASE_TIME_TO_LIVE].unary = srv_lease_time_to_live;
	methods[SRV_M_LEASE_LEASES].unary = srv_lease_leases;
	methods[SRV_M_LEASE_KEEP_ALIVE].stream = srv_lease_keep_alive;
	methods[SRV_M_WATCH].stream = srv_watch_stream;
	methods[SRV_M_AUTH_ENABLE].unary = srv_auth_enable;
	methods[SRV_M_AUTH_DISABLE].unary = srv_auth_disable;
	methods[SRV_M_AUTH_STATUS].unary = srv_auth_status;
	methods[SRV_M_AUTHENTICATE].unary = srv_auth_authenticate;
	methods[SRV_M_USER_ADD].unary = srv_auth_user_add;
	methods[SRV_M_USER_GET].unary = srv_auth_user_get;
	methods[SRV_M_USER_LIST].unary = srv_auth_user_list;
	methods[SRV_M_USER_DELETE].unary = srv_auth_user_delete;
	methods[SRV_M_USER_CHANGE_PASSWORD].unary = srv_auth_user_change_password;
	methods[SRV_M_USER_GRANT_ROLE].unary = srv_auth_user_grant_role;
	methods[SRV_M_USER_REVOKE_ROLE].unary = srv_auth_user_revoke_role;
	methods[SRV_M_ROLE_ADD].unary = srv_auth_role_add;
	methods[SRV_M_ROLE_GET].unary = srv_auth_role_get;
	methods[SRV_M_ROLE_LIST].unary = srv_auth_role_list;
	methods[SRV_M_ROLE_DELETE].unary = srv_auth_role_delete;
	methods[SRV_M_ROLE_GRANT_PERMISSION].unary = srv_auth_role_grant_permission;
	methods[SRV_M_ROLE_REVOKE_PERMISSION].unary = srv_auth_role_revoke_permission;
	srv_election_register(methods);
	if (srv_election_new(&app.election, err, sizeof(err)) != 0 ||
	    srv_rpc_start(&rcfg, methods, SRV_M__COUNT, &app, &rpc, err, sizeof(err)) != 0) {
		srv_logf(SRV_LOG_FATAL, "cannot serve clients: %s", err);
		goto out;
	}
	srv_election_bind(app.election, rpc);
	hsrc.rpc = rpc;
	srv_http_config hcfg = {
		.tls = g_client_tls, /* etcd serves https metrics URLs with the client TLS too */
		.kinds = http_kinds,
		.has_leader = http_has_leader,
		.quorum_read = http_quorum_read,
		.alarms = http_alarms,
		.metrics = http_metrics,
		.ctx = &hsrc,
		.rpc = rpc,
		.auth_by_cn = http_auth_by_cn,
		.server_version = MS_ETCD_VERSION,
		.cluster_version = MS_CLUSTER_VERSION ".0",
	};
	/* --enable-v2: /v2/members, /v2/machines, /v2/stats, /v2/auth (srv_v2admin.h)
	 * in ext slot 1 (slot 0: /v2/keys). */
	if (cfg.enable_v2) {
		if (srv_v2a_new(&app, NULL, &v2a) != 0) {
			srv_logf(SRV_LOG_FATAL, "cannot serve clients: out of memory");
			goto out;
		}
		srv_v2a_http_ext(v2a, &hcfg.ext[1]);
		srv_v2_http_ext(app.v2, &hcfg.ext[0]); /* /v2/keys */
		srv_v2_set_key_check(app.v2, srv_v2a_key_check, v2a);
	}
	if (srv_http_start(&hcfg, &http, err, sizeof(err)) != 0 ||
	    srv_listen_start(client_listen, rpc, http) != 0 ||
	    (metrics_listen != NULL && srv_listen_start(metrics_listen, NULL, http) != 0)) {
		srv_logf(SRV_LOG_FATAL, "cannot serve clients: %s", err[0] ? err : "out of threads");
		goto out;
	}
	for (size_t i = 0; i < cfg.listen_metrics.n; i++)
		srv_log_info("serving metrics", SRV_LF_STR("address", cfg.listen_metrics.url[i]));
	for (size_t i = 0; i < cfg.listen_peer.n; i++)
		srv_log_info("serving peer traffic", SRV_LF_STR("address", cfg.listen_peer.addr[i]));
	/* etcd's text: tools wait for "ready to serve client requests". */
	srv_log_info("ready to serve client requests");
	for (size_t i = 0; i < cfg.listen_client.n; i++) {
		const char *u = cfg.listen_client.url[i];
		bool secure = strncmp(u, "https:", 6) == 0 || strncmp(u, "unixs:", 6) == 0;
		srv_log_info(secure ? "serving client traffic securely"
		                    : "serving client traffic insecurely; this is strongly discouraged!",
		             SRV_LF_STR("address", cfg.listen_client.addr[i]));
	}

	/* Publish name + client URLs through the log (etcd's publish), retried until
	 * it is applied; then the member counts as started. */
	pub.attr = (Metastore__MemberAttr)METASTORE__MEMBER_ATTR__INIT;
	pub.attr.member_id = app.member_id;
	pub.attr.name = (char *)cfg.name;
	pub.attr.client_urls = cfg.advertise_client.url;
	pub.attr.n_client_urls = cfg.advertise_client.n;
	publish(&pub);
	bool announced = false;

	/* Wait for a signal, checking that storage is healthy and the member is
	 * still in the cluster. */
	exit_code = 0;
	unsigned since_publish = 0;
	for (;;) {
		struct timespec tick_ts = {0, 100 * 1000000L};
		int sig = sigtimedwait(&sigs, NULL, &tick_ts);
		if (sig == SIGINT || sig == SIGTERM) {
			srv_log_info("received signal; shutting down",
			             SRV_LF_STR("signal", sig == SIGINT ? "interrupt" : "terminated"));
			break;
		}
		if (srv_node_failed(app.node)) {
			srv_node_status st;
			srv_node_get_status(app.node, &st);
			if (st.removed) {
				srv_logf(SRV_LOG_WARN, "%s; stopping", ec_strerror(EC_MEMBER_REMOVED));
				exit_code = 0;
			} else {
				srv_logf(SRV_LOG_FATAL, "storage failed; stopping (no unacknowledged write was "
					       "acknowledged)");
				exit_code = 1;
			}
			break;
		}
		if (atomic_load(&pub.done) && !announced) {
			announced = true;
			/* etcd's text: etcd's e2e suite waits for it. */
			srv_log_info("enabled capabilities for version",
			             SRV_LF_STR("cluster-version", MS_CLUSTER_VERSION));
		}
		/* A publish that failed (timed out: no leader yet) is proposed again
		 * a second after its answer. */
		if (!atomic_load(&pub.done) && !atomic_load(&pub.inflight) && ++since_publish >= 10) {
			since_publish = 0;
			publish(&pub);
		}
	}

out:
	/* Listeners first (no new connection reaches the core or srv_http), then
	 * the HTTP daemons, then the calls in flight. */
	srv_listen_stop(client_listen);
	srv_listen_stop(metrics_listen);
	srv_http_stop(http);
	srv_v2a_free(v2a);
	srv_v2_free(app.v2); /* before the node: a SYNC in flight completes */
	app.v2 = NULL;
	srv_election_stop(app.election); /* its in-process channel goes before the server */
	app.election = NULL;
	srv_rpc_shutdown(rpc);
	srv_lease_stop(g.lease);
	g.lease = NULL;
	srv_compactor_stop(compactor);
	srv_maint_stop(&app);
	srv_node_stop(app.node);
	app.node = NULL;
	srv_defer_stop(app.replies); /* after the node: it sends the last answers */
	app.replies = NULL;
	srv_watch_stop(app.watch); /* after the node: no commit reaches its hook */
	app.watch = NULL;
	srv_tlsfront_stop(peer_front); /* before the core: no new peer connection */
	srv_rpc_shutdown(peer_rpc);
	srv_peer_stop(g.peer);
	srv_maint_free(&app); /* after the peer port: a peer's HashKV reaches it */
	srv_tls_unref(g_client_tls);
	srv_tls_unref(g_peer_tls);
	ec_lessor_close(app.lessor);
	ec_auth_close(app.auth);
	ec_alarms_close(app.alarms);
	ec_v2_free(app.v2store);
	ec_tokens_close(app.tokens);
	ec_kv_close(app.kv);
	ec_cluster_close(app.cluster);
	st_db_close(app.db);
	srv_urls_free(&app.peer_urls);
	srv_config_free(&cfg);
	return exit_code;
}
