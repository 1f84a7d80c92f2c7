/*
 * srv_config: metastore's command line, spelled as etcd's (--name, --data-dir,
 * --listen-client-urls, ...) with etcd's defaults, so a metastore member starts
 * from the same flags as an etcd member. Both "--flag value" and "--flag=value"
 * are accepted, as etcd (pflag) does.
 */
#ifndef METASTORE_SRV_CONFIG_H
#define METASTORE_SRV_CONFIG_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define SRV_MAX_URLS 16

typedef struct srv_urls {
	size_t n;
	char *url[SRV_MAX_URLS];  /* as given, e.g. "http://localhost:2379" */
	char *addr[SRV_MAX_URLS]; /* host:port for gRPC, e.g. "localhost:2379" */
} srv_urls;

typedef struct srv_config {
	char *name;
	char *data_dir;
	srv_urls listen_client;
	srv_urls advertise_client;
	srv_urls listen_peer;
	srv_urls initial_advertise_peer;
	char *initial_cluster;
	char *initial_cluster_state; /* "new" | "existing" */
	char *initial_cluster_token;
	int64_t heartbeat_interval_ms;
	int64_t election_timeout_ms;
	int64_t snapshot_count;
	int64_t quota_backend_bytes;
	int64_t max_request_bytes;
	int64_t max_txn_ops;
	char *auto_compaction_mode;
	char *auto_compaction_retention;
	int grpc_threads;
} srv_config;

/* Outcomes of srv_config_parse besides 0 (run the server). */
enum { SRV_CONFIG_HELP = 1, SRV_CONFIG_VERSION = 2, SRV_CONFIG_ERROR = -1 };

/*
 * srv_config_parse - fill @cfg from argv with etcd's defaults for what is absent.
 * Returns 0, SRV_CONFIG_HELP / SRV_CONFIG_VERSION (caller prints and exits 0), or
 * SRV_CONFIG_ERROR with a one-line reason in @err (unknown flag, bad number, bad
 * URL, bad --initial-cluster-state). Strings in @cfg are owned by @cfg; free
 * with srv_config_free().
 */
int srv_config_parse(srv_config *cfg, int argc, char **argv, char *err, size_t errlen);
void srv_config_free(srv_config *cfg);

/* srv_config_usage - the --help text. */
void srv_config_usage(FILE *out);

/*
 * srv_config_peer_urls_of - the peer URLs that --initial-cluster gives for member
 * @name (comma separated name=url pairs). Returns the number found (0 if the
 * name is absent) and stores up to SRV_MAX_URLS malloc'd strings in @out->url.
 */
size_t srv_config_peer_urls_of(const char *initial_cluster, const char *name, srv_urls *out);
void srv_urls_free(srv_urls *u);

/* srv_urls_split - split a comma-separated URL list into @out->url (malloc'd
 * copies; addr left NULL). Returns the number stored (at most SRV_MAX_URLS). */
size_t srv_urls_split(const char *list, srv_urls *out);

#endif
