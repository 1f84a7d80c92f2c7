/*
 * main: the metastore process. Parses etcd's flags, opens the data dir, settles
 * this member's identity (persisted on first start, as etcd does: later starts
 * ignore --initial-cluster), replays the log, starts the node loop and the gRPC
 * servers, and on SIGINT/SIGTERM shuts down in the order that loses nothing:
 * stop taking calls and let in-flight ones finish (they need the node), then stop
 * the node (which finishes every queued proposal), then close storage.
 */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "etcdcompat/ec_kv.h"
#include "etcdcompat/ec_lease.h"
#include "etcdcompat/ec_member.h"
#include "ms_version.h"
#include "server/srv_app.h"
#include "server/srv_config.h"
#include "server/srv_handlers.h"
#include "server/srv_lease.h"
#include "server/srv_methods.h"
#include "server/srv_node.h"
#include "server/srv_rpc.h"
#include "storage/st_db.h"

#define META_MEMBER_ID "member_id"
#define META_CLUSTER_ID "cluster_id"
#define META_PEER_URLS "peer_urls"

static void logf_(const char *level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void logf_(const char *level, const char *fmt, ...)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	struct tm tm;
	gmtime_r(&ts.tv_sec, &tm);
	char when[32];
	strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%S", &tm);
	fprintf(stderr, "%s.%03ldZ %s metastore: ", when, ts.tv_nsec / 1000000, level);
	va_list ap;
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

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
 * Settle member and cluster id: read them from the data dir, or on first start
 * derive them from --initial-cluster as etcd does and persist them.
 */
static int settle_identity(srv_app *app, const srv_config *cfg)
{
	uint64_t mid = 0, cid = 0;
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
		logf_("info", "restarting member %016" PRIx64 " in cluster %016" PRIx64, mid, cid);
		return 0;
	}
	if (rc != ST_ENOTFOUND) {
		logf_("fatal", "reading member identity from %s: %s", cfg->data_dir, st_strerror(rc));
		return -1;
	}

	if (srv_config_peer_urls_of(cfg->initial_cluster, app->name, &app->peer_urls) == 0) {
		logf_("fatal", "couldn't find local name \"%s\" in the initial cluster configuration",
		      app->name);
		return -1;
	}
	/* Every member of the initial cluster, for the cluster id. */
	uint64_t ids[64];
	size_t nids = 0;
	char *ic = strdup(cfg->initial_cluster);
	char *save = NULL;
	char *names_seen[64];
	for (char *tok = strtok_r(ic, ",", &save); tok && nids < 64; tok = strtok_r(NULL, ",", &save)) {
		char *eq = strchr(tok, '=');
		if (!eq)
			continue;
		*eq = '\0';
		int dup = 0;
		for (size_t i = 0; i < nids; i++)
			if (strcmp(names_seen[i], tok) == 0)
				dup = 1;
		if (dup)
			continue;
		srv_urls u;
		srv_config_peer_urls_of(cfg->initial_cluster, tok, &u);
		ids[nids] = ec_member_id((const char *const *)u.url, u.n, cfg->initial_cluster_token, 0);
		names_seen[nids++] = tok;
		srv_urls_free(&u);
	}
	mid = ec_member_id((const char *const *)app->peer_urls.url, app->peer_urls.n,
			   cfg->initial_cluster_token, 0);
	cid = ec_cluster_id(ids, nids);
	free(ic);

	uint8_t b[8];
	char joined[4096] = "";
	for (size_t i = 0; i < app->peer_urls.n; i++) {
		if (i)
			strncat(joined, ",", sizeof(joined) - strlen(joined) - 1);
		strncat(joined, app->peer_urls.url[i], sizeof(joined) - strlen(joined) - 1);
	}
	put_be64(b, cid);
	if ((rc = st_meta_put(app->db, META_CLUSTER_ID, b, 8, false)) == 0 &&
	    (rc = st_meta_put(app->db, META_PEER_URLS, joined, strlen(joined), false)) == 0) {
		put_be64(b, mid);
		/* member_id last and synced: its presence marks a complete identity. */
		rc = st_meta_put(app->db, META_MEMBER_ID, b, 8, true);
	}
	if (rc != 0) {
		logf_("fatal", "persisting member identity: %s", st_strerror(rc));
		return -1;
	}
	app->member_id = mid;
	app->cluster_id = cid;
	logf_("info", "starting member %016" PRIx64 " in cluster %016" PRIx64, mid, cid);
	return 0;
}

int main(int argc, char **argv)
{
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

	/* Signals are taken by sigwait in this thread only; set the mask before any
	 * other thread exists so they all inherit it. */
	sigset_t sigs;
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGINT);
	sigaddset(&sigs, SIGTERM);
	pthread_sigmask(SIG_BLOCK, &sigs, NULL);
	signal(SIGPIPE, SIG_IGN);

	int exit_code = 1;
	srv_app app = {0};
	app.cfg = &cfg;
	app.name = cfg.name;
	app.client_urls = &cfg.advertise_client;
	app.kv_cfg.max_txn_ops = cfg.max_txn_ops;
	srv_rpc *rpc = NULL, *peer_rpc = NULL;
	srv_lease *lease_expiry = NULL;

	st_options sopts = {.create_if_missing = true};
	int rc = st_db_open(cfg.data_dir, &sopts, &app.db, err, sizeof(err));
	if (rc != 0) {
		logf_("fatal", "cannot open data dir %s: %s", cfg.data_dir, err[0] ? err : st_strerror(rc));
		goto out;
	}
	if (settle_identity(&app, &cfg) != 0)
		goto out;
	rc = ec_kv_open(app.db, &app.kv_cfg, &app.kv);
	if (rc != 0) {
		logf_("fatal", "opening the keyspace in %s: %s", cfg.data_dir, st_strerror(rc));
		goto out;
	}
	/* The lessor before the node: log replay applies lease entries. */
	ec_lessor_config lcfg = {
		.min_ttl = ec_lease_min_ttl(cfg.heartbeat_interval_ms, cfg.election_timeout_ms),
		.now_ms = srv_lease_now_ms,
	};
	rc = ec_lessor_open(app.db, app.kv, &lcfg, &app.lessor);
	if (rc != 0) {
		logf_("fatal", "opening the leases in %s: %s", cfg.data_dir, st_strerror(rc));
		goto out;
	}
	srv_node_config ncfg = {
		.db = app.db,
		.kv = app.kv,
		.member_id = app.member_id,
		.cluster_id = app.cluster_id,
		.max_request_bytes = (uint64_t)cfg.max_request_bytes,
	};
	if (srv_node_start(&ncfg, &app.node, err, sizeof(err)) != 0) {
		logf_("fatal", "starting the node: %s", err);
		goto out;
	}
	if (srv_lease_start(app.lessor, app.node, &lease_expiry) != 0) {
		logf_("fatal", "starting the lease expiry thread: out of memory or threads");
		goto out;
	}

	srv_rpc_config rcfg = {0};
	rcfg.listen = (const char *const *)cfg.listen_client.addr;
	rcfg.n_listen = cfg.listen_client.n;
	rcfg.threads = cfg.grpc_threads;
	rcfg.max_request_bytes = (size_t)cfg.max_request_bytes;
	srv_method methods[SRV_M__COUNT];
	srv_etcd_methods(methods);
	methods[SRV_M_KV_RANGE].unary = srv_kv_range;
	methods[SRV_M_KV_PUT].unary = srv_kv_put;
	methods[SRV_M_KV_DELETE_RANGE].unary = srv_kv_delete_range;
	methods[SRV_M_KV_TXN].unary = srv_kv_txn;
	methods[SRV_M_KV_COMPACT].unary = srv_kv_compact;
	methods[SRV_M_STATUS].unary = srv_maint_status;
	methods[SRV_M_MEMBER_LIST].unary = srv_cluster_member_list;
	methods[SRV_M_LEASE_GRANT].unary = srv_lease_grant;
	methods[SRV_M_LEASE_REVOKE].unary = srv_lease_revoke;
	methods[SRV_M_LEASE_TIME_TO_LIVE].unary = srv_lease_time_to_live;
	methods[SRV_M_LEASE_LEASES].unary = srv_lease_leases;
	methods[SRV_M_LEASE_KEEP_ALIVE].stream = srv_lease_keep_alive;
	if (srv_rpc_start(&rcfg, methods, SRV_M__COUNT, &app, &rpc, err, sizeof(err)) != 0) {
		logf_("fatal", "cannot serve clients: %s", err);
		goto out;
	}
	/* The peer port is claimed now so a second member cannot take it; it answers
	 * UNIMPLEMENTED until the cluster transport lands. */
	srv_rpc_config pcfg = rcfg;
	pcfg.listen = (const char *const *)cfg.listen_peer.addr;
	pcfg.n_listen = cfg.listen_peer.n;
	pcfg.threads = 1;
	srv_method none[SRV_M__COUNT];
	srv_etcd_methods(none);
	if (srv_rpc_start(&pcfg, none, SRV_M__COUNT, &app, &peer_rpc, err, sizeof(err)) != 0) {
		logf_("fatal", "cannot listen for peers: %s", err);
		goto out;
	}
	for (size_t i = 0; i < cfg.listen_client.n; i++)
		logf_("info", "ready to serve client requests on %s", cfg.listen_client.url[i]);
	for (size_t i = 0; i < cfg.listen_peer.n; i++)
		logf_("info", "listening for peers on %s", cfg.listen_peer.url[i]);

	/* Wait for a signal, checking once a second that storage is still healthy. */
	exit_code = 0;
	for (;;) {
		struct timespec tick = {1, 0};
		int sig = sigtimedwait(&sigs, NULL, &tick);
		if (sig == SIGINT || sig == SIGTERM) {
			logf_("info", "received %s, shutting down", sig == SIGINT ? "interrupt" : "terminated");
			break;
		}
		if (srv_node_failed(app.node)) {
			logf_("fatal", "storage failed; stopping (no unacknowledged write was acknowledged)");
			exit_code = 1;
			break;
		}
	}

out:
	srv_rpc_shutdown(peer_rpc);
	srv_rpc_shutdown(rpc);
	srv_lease_stop(lease_expiry);
	srv_node_stop(app.node);
	ec_lessor_close(app.lessor);
	ec_kv_close(app.kv);
	st_db_close(app.db);
	srv_urls_free(&app.peer_urls);
	srv_config_free(&cfg);
	return exit_code;
}
