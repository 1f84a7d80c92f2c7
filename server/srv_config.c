/*
 * srv_config: parse etcd 3.4's flags and ETCD_* variables into srv_config (see
 * srv_config.h for the syntax and the three kinds of flag). One table drives
 * parsing, defaults, the no-effect list and --help, so a flag is declared once.
 * Validation follows etcdmain's order: flags, then the environment (or, with
 * --config-file, etcd's YAML file instead, read through srv_yaml), then
 * embed.Config.Validate's checks, then the TLS flags as embed's listener set-up
 * checks them (validate_tls), then what metastore refuses (modes it lacks).
 */
#include "server/srv_config.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "ms_version.h"
#include "server/srv_log.h"
#include "server/srv_tls.h"
#include "server/srv_yaml.h"

extern char **environ;

typedef enum {
	F_STR,     /* any text */
	F_INT,     /* Go Int64Var / IntVar: signed, base prefixes 0x 0o 0b 0 */
	F_UINT,    /* Go UintVar / Uint64Var */
	F_UINT32,  /* etcd's Uint32Value */
	F_BOOL,    /* Go BoolVar: takes no separate argument */
	F_DUR,     /* Go DurationVar ("5s", "2h45m"), stored in milliseconds */
	F_URLS,    /* etcd's UniqueURLs: "" keeps the current list */
	F_CHOICE,  /* etcd's SelectiveStringValue: one of .choices */
	F_IGNORED, /* etcd's IgnoredFlag: boolean-like, warns, no value kept */
} flag_kind;

typedef enum {
	U_USED,   /* acted upon by metastore today */
	U_LATER,  /* stored for the cluster/storage work; no effect yet */
	U_NONE,   /* accepted; no meaning in metastore */
	U_REFUSE, /* a mode metastore lacks: refused unless given its default */
} flag_use;

#define NOSTORE SIZE_MAX

typedef struct flag_def {
	const char *name;
	flag_kind kind;
	flag_use use;
	size_t off;          /* field in srv_config, or NOSTORE */
	const char *def;     /* default, as text; NULL = derived after parsing */
	const char *choices; /* F_CHOICE: "a|b|c" */
	const char *why;     /* U_REFUSE: the reason, completing "--flag=value: " */
	const char *help;
} flag_def;

#define OFF(f) offsetof(srv_config, f)

/* In etcd --help order. */
static const flag_def flags[] = {
        {"config-file", F_STR, U_USED, OFF(config_file), "", NULL, NULL,
         "Path to the server configuration file (etcd's YAML). When given (or ETCD_CONFIG_FILE), "
         "every other flag and ETCD_* variable is ignored."},
        /* Member. */
        {"name", F_STR, U_USED, OFF(name), "default", NULL, NULL,
         "Human-readable name for this member."},
        {"data-dir", F_STR, U_USED, OFF(data_dir), NULL, NULL, NULL,
         "Path to the data directory (default \"${name}.metastore\")."},
        {"wal-dir", F_STR, U_NONE, OFF(wal_dir), "", NULL, NULL,
         "Path to the dedicated wal directory (metastore keeps its log in the data dir)."},
        {"snapshot-count", F_UINT, U_USED, OFF(snapshot_count), "10000", NULL, NULL,
         "Number of committed transactions to trigger a snapshot to disk (etcd 3.6's default)."},
        {"heartbeat-interval", F_UINT, U_USED, OFF(heartbeat_interval_ms), "100", NULL, NULL,
         "Time (in milliseconds) of a heartbeat interval."},
        {"election-timeout", F_UINT, U_USED, OFF(election_timeout_ms), "1000", NULL, NULL,
         "Time (in milliseconds) for an election to timeout."},
        {"initial-election-tick-advance", F_BOOL, U_LATER, OFF(initial_election_tick_advance),
         "true", NULL, NULL,
         "Whether to fast-forward initial election ticks on boot for faster election."},
        {"listen-peer-urls", F_URLS, U_USED, OFF(listen_peer), "http://localhost:2380", NULL, NULL,
         "List of URLs to listen on for peer traffic."},
        {"listen-client-urls", F_URLS, U_USED, OFF(listen_client), "http://localhost:2379", NULL,
         NULL, "List of URLs to listen on for client traffic."},
        {"max-snapshots", F_UINT, U_LATER, OFF(max_snapshots), "5", NULL, NULL,
         "Maximum number of snapshot files to retain (0 is unlimited)."},
        {"max-wals", F_UINT, U_LATER, OFF(max_wals), "5", NULL, NULL,
         "Maximum number of wal files to retain (0 is unlimited)."},
        {"quota-backend-bytes", F_INT, U_USED, OFF(quota_backend_bytes), "0", NULL, NULL,
         "Raise alarms when backend size exceeds the given quota (0 defaults to low space quota)."},
        {"backend-batch-interval", F_DUR, U_NONE, NOSTORE, "0s", NULL, NULL,
         "Maximum time before committing the backend transaction (bbolt tuning)."},
        {"backend-batch-limit", F_INT, U_NONE, NOSTORE, "0", NULL, NULL,
         "Maximum operations before committing the backend transaction (bbolt tuning)."},
        {"max-txn-ops", F_UINT, U_USED, OFF(max_txn_ops), "128", NULL, NULL,
         "Maximum number of operations permitted in a transaction."},
        {"max-request-bytes", F_UINT, U_USED, OFF(max_request_bytes), "1572864", NULL, NULL,
         "Maximum client request size in bytes the server will accept."},
        {"max-concurrent-streams", F_UINT32, U_USED, OFF(max_concurrent_streams), "4294967295",
         NULL, NULL, "Maximum concurrent streams that each client can open at a time."},
        {"grpc-keepalive-min-time", F_DUR, U_USED, OFF(grpc_keepalive_min_time_ms), "5s", NULL,
         NULL, "Minimum duration interval that a client should wait before pinging server."},
        {"grpc-keepalive-interval", F_DUR, U_USED, OFF(grpc_keepalive_interval_ms), "2h", NULL,
         NULL,
         "Frequency duration of server-to-client ping to check if a connection is alive (0 to "
         "disable)."},
        {"grpc-keepalive-timeout", F_DUR, U_USED, OFF(grpc_keepalive_timeout_ms), "20s", NULL,
         NULL,
         "Additional duration of wait before closing a non-responsive connection (0 to disable)."},
        /* Clustering. */
        {"initial-advertise-peer-urls", F_URLS, U_USED, OFF(initial_advertise_peer),
         "http://localhost:2380", NULL, NULL,
         "List of this member's peer URLs to advertise to the rest of the cluster."},
        {"initial-cluster", F_STR, U_USED, OFF(initial_cluster), NULL, NULL, NULL,
         "Initial cluster configuration for bootstrapping (default "
         "\"${name}=${initial-advertise-peer-urls}\")."},
        {"initial-cluster-state", F_CHOICE, U_USED, OFF(initial_cluster_state), "new",
         "new|existing", NULL, "Initial cluster state ('new' or 'existing')."},
        {"initial-cluster-token", F_STR, U_USED, OFF(initial_cluster_token), "etcd-cluster", NULL,
         NULL, "Initial cluster token for the cluster during bootstrap."},
        {"advertise-client-urls", F_URLS, U_USED, OFF(advertise_client), "http://localhost:2379",
         NULL, NULL, "List of this member's client URLs to advertise to the public."},
        {"discovery", F_STR, U_REFUSE, OFF(discovery), "", NULL,
         "discovery is not supported yet; bootstrap with --initial-cluster",
         "Discovery URL used to bootstrap the cluster (not supported yet)."},
        {"discovery-fallback", F_CHOICE, U_NONE, OFF(discovery_fallback), "proxy", "exit|proxy",
         NULL, "Expected behavior ('exit' or 'proxy') when discovery services fails."},
        {"discovery-proxy", F_STR, U_NONE, OFF(discovery_proxy), "", NULL, NULL,
         "HTTP proxy to use for traffic to discovery service."},
        {"discovery-srv", F_STR, U_REFUSE, OFF(discovery_srv), "", NULL,
         "DNS discovery is not supported yet; bootstrap with --initial-cluster",
         "DNS srv domain used to bootstrap the cluster (not supported yet)."},
        {"discovery-srv-name", F_STR, U_NONE, OFF(discovery_srv_name), "", NULL, NULL,
         "Suffix to the dns srv name queried when bootstrapping."},
        {"strict-reconfig-check", F_BOOL, U_USED, OFF(strict_reconfig_check), "true", NULL, NULL,
         "Reject reconfiguration requests that would cause quorum loss."},
        {"pre-vote", F_BOOL, U_USED, OFF(pre_vote), "false", NULL, NULL,
         "Enable to run an additional Raft election phase."},
        {"auto-compaction-retention", F_STR, U_USED, OFF(auto_compaction_retention), "0", NULL,
         NULL, "Auto compaction retention length. 0 means disable auto compaction."},
        {"auto-compaction-mode", F_STR, U_USED, OFF(auto_compaction_mode), "periodic", NULL, NULL,
         "Interpret 'auto-compaction-retention' one of: periodic|revision."},
        {"enable-v2", F_BOOL, U_USED, OFF(enable_v2), "false", NULL, NULL,
         "Accept etcd V2 client requests."},
        /* Security (srv_tls.h). */
        {"cert-file", F_STR, U_USED, OFF(cert_file), "", NULL, NULL,
         "Path to the client server TLS cert file."},
        {"key-file", F_STR, U_USED, OFF(key_file), "", NULL, NULL,
         "Path to the client server TLS key file."},
        {"client-cert-auth", F_BOOL, U_USED, OFF(client_cert_auth), "false", NULL, NULL,
         "Enable client cert authentication."},
        {"client-crl-file", F_STR, U_USED, OFF(client_crl_file), "", NULL, NULL,
         "Path to the client certificate revocation list file."},
        {"client-cert-allowed-hostname", F_STR, U_USED, OFF(client_cert_allowed_hostname), "",
         NULL, NULL, "Allowed TLS hostname for client cert authentication."},
        {"trusted-ca-file", F_STR, U_USED, OFF(trusted_ca_file), "", NULL, NULL,
         "Path to the client server TLS trusted CA cert file."},
        {"auto-tls", F_BOOL, U_USED, OFF(auto_tls), "false", NULL, NULL,
         "Client TLS using generated certificates."},
        {"peer-cert-file", F_STR, U_USED, OFF(peer_cert_file), "", NULL, NULL,
         "Path to the peer server TLS cert file."},
        {"peer-key-file", F_STR, U_USED, OFF(peer_key_file), "", NULL, NULL,
         "Path to the peer server TLS key file."},
        {"peer-client-cert-auth", F_BOOL, U_USED, OFF(peer_client_cert_auth), "false", NULL, NULL,
         "Enable peer client cert authentication."},
        {"peer-trusted-ca-file", F_STR, U_USED, OFF(peer_trusted_ca_file), "", NULL, NULL,
         "Path to the peer server TLS trusted CA file."},
        {"peer-cert-allowed-cn", F_STR, U_USED, OFF(peer_cert_allowed_cn), "", NULL, NULL,
         "Required CN for client certs connecting to the peer endpoint."},
        {"peer-cert-allowed-hostname", F_STR, U_USED, OFF(peer_cert_allowed_hostname), "", NULL,
         NULL, "Allowed TLS hostname for inter peer authentication."},
        {"peer-auto-tls", F_BOOL, U_USED, OFF(peer_auto_tls), "false", NULL, NULL,
         "Peer TLS using self-generated certificates if --peer-key-file and --peer-cert-file are "
         "not provided."},
        {"peer-crl-file", F_STR, U_USED, OFF(peer_crl_file), "", NULL, NULL,
         "Path to the peer certificate revocation list file."},
        {"cipher-suites", F_STR, U_USED, OFF(cipher_suites), "", NULL, NULL,
         "Comma-separated list of supported TLS cipher suites between client/server and peers "
         "(Go's names; they restrict TLS 1.2)."},
        {"experimental-peer-skip-client-san-verification", F_BOOL, U_USED,
         OFF(peer_skip_client_san), "false", NULL, NULL,
         "Skip verification of SAN field in client certificate for peer connections."},
        {"cors", F_STR, U_NONE, NOSTORE, "*", NULL, NULL,
         "Comma-separated whitelist of origins for CORS (empty or * means allow all)."},
        {"host-whitelist", F_STR, U_NONE, NOSTORE, "*", NULL, NULL,
         "Acceptable hostnames from HTTP client requests, if server is not secure (empty or * "
         "means allow all)."},
        /* Auth. */
        {"auth-token", F_STR, U_USED, OFF(auth_token), "simple", NULL, NULL,
         "Specify a v3 authentication token type and its options ('simple' or 'jwt')."},
        {"bcrypt-cost", F_UINT, U_USED, OFF(bcrypt_cost), "10", NULL, NULL,
         "Specify the cost / strength of the bcrypt algorithm for hashing auth passwords."},
        {"auth-token-ttl", F_UINT, U_USED, OFF(auth_token_ttl), "300", NULL, NULL,
         "Time (in seconds) of the auth-token-ttl."},
        /* Profiling and monitoring. */
        {"enable-pprof", F_BOOL, U_NONE, OFF(enable_pprof), "false", NULL, NULL,
         "Enable runtime profiling data via HTTP server (Go only; no effect)."},
        {"metrics", F_CHOICE, U_LATER, OFF(metrics), "basic", "basic|extensive", NULL,
         "Set level of detail for exported metrics, specify 'extensive' to include histogram "
         "metrics."},
        {"listen-metrics-urls", F_URLS, U_USED, OFF(listen_metrics), "", NULL, NULL,
         "List of URLs to listen on for the metrics and health endpoints."},
        /* Logging. */
        {"logger", F_STR, U_USED, OFF(logger), "zap", NULL, NULL,
         "Specify 'zap' for structured logging or 'capnslog' (etcd 3.5's default, zap JSON lines; "
         "etcd 3.4's is capnslog)."},
        {"log-output", F_STR, U_NONE, NOSTORE, "default", NULL, NULL,
         "[TO BE DEPRECATED IN v3.5] use '--log-outputs'."},
        {"log-outputs", F_STR, U_USED, OFF(log_outputs), "default", NULL, NULL,
         "Specify 'stdout' or 'stderr' to skip journald logging even when running under systemd, "
         "or list of comma separated output targets."},
        {"log-level", F_STR, U_USED, OFF(log_level), "info", NULL, NULL,
         "Configures log level. Only supports debug, info, warn, error, panic, or fatal."},
        {"debug", F_BOOL, U_USED, NOSTORE, "false", NULL, NULL,
         "Enable debug-level logging for etcd. Use '--log-level=debug' instead."},
        {"log-package-levels", F_STR, U_NONE, NOSTORE, "", NULL, NULL,
         "Specify a particular log level for each etcd package."},
        /* v2 proxy. */
        {"proxy", F_CHOICE, U_REFUSE, OFF(proxy), "off", "off|readonly|on",
         "the v2 proxy is not supported (only --proxy=off)",
         "Proxy mode setting ('off', 'readonly' or 'on')."},
        {"proxy-failure-wait", F_UINT, U_NONE, OFF(proxy_failure_wait_ms), "5000", NULL, NULL,
         "Time (in milliseconds) an endpoint will be held in a failed state."},
        {"proxy-refresh-interval", F_UINT, U_NONE, OFF(proxy_refresh_interval_ms), "30000", NULL,
         NULL, "Time (in milliseconds) of the endpoints refresh interval."},
        {"proxy-dial-timeout", F_UINT, U_NONE, OFF(proxy_dial_timeout_ms), "1000", NULL, NULL,
         "Time (in milliseconds) for a dial to timeout."},
        {"proxy-write-timeout", F_UINT, U_NONE, OFF(proxy_write_timeout_ms), "5000", NULL, NULL,
         "Time (in milliseconds) for a write to timeout."},
        {"proxy-read-timeout", F_UINT, U_NONE, OFF(proxy_read_timeout_ms), "0", NULL, NULL,
         "Time (in milliseconds) for a read to timeout."},
        /* Version. */
        {"version", F_BOOL, U_USED, NOSTORE, "false", NULL, NULL, "Print the version and exit."},
        /* Experimental. */
        {"experimental-initial-corrupt-check", F_BOOL, U_USED,
         OFF(experimental_initial_corrupt_check), "false", NULL, NULL,
         "Enable to check data corruption before serving any client/peer traffic."},
        {"experimental-corrupt-check-time", F_DUR, U_USED, OFF(experimental_corrupt_check_time_ms),
         "0s", NULL, NULL, "Duration of time between cluster corruption check passes."},
        {"experimental-enable-v2v3", F_STR, U_NONE, NOSTORE, "", NULL, NULL,
         "Serve v2 requests through the v3 backend under a given prefix."},
        {"experimental-backend-bbolt-freelist-type", F_STR, U_NONE, NOSTORE, "array", NULL, NULL,
         "The type of freelist that boltdb backend uses (bbolt tuning)."},
        {"experimental-enable-lease-checkpoint", F_BOOL, U_NONE, NOSTORE, "false", NULL, NULL,
         "Enable the primary lessor to persist lease remainingTTL."},
        {"experimental-enable-lease-checkpoint-persist", F_BOOL, U_NONE, NOSTORE, "false", NULL,
         NULL, "Enable persisting remainingTTL (requires --experimental-enable-lease-checkpoint)."},
        {"experimental-compaction-batch-limit", F_INT, U_NONE, NOSTORE, "1000", NULL, NULL,
         "Sets the maximum revisions deleted in each compaction batch."},
        {"experimental-watch-progress-notify-interval", F_DUR, U_USED, OFF(watch_progress_notify_ms), "10m", NULL, NULL,
         "Duration of periodical watch progress notification."},
        {"experimental-warning-apply-duration", F_DUR, U_NONE, NOSTORE, "100ms", NULL, NULL,
         "Warning is generated if requests take more than this duration."},
        /* Unsafe. */
        {"unsafe-no-fsync", F_BOOL, U_LATER, OFF(unsafe_no_fsync), "false", NULL, NULL,
         "Disables fsync, unsafe, will cause data loss."},
        {"force-new-cluster", F_BOOL, U_LATER, OFF(force_new_cluster), "false", NULL, NULL,
         "Force to create a new one-member cluster."},
        /* metastore's own. */
        {"grpc-threads", F_INT, U_USED, OFF(grpc_threads), "2", NULL, NULL,
         "metastore: completion-queue threads serving clients."},
        /* etcd's "ignored" flags (pre-v2 names): accepted with a warning. */
        {"cluster-active-size", F_IGNORED, U_NONE, NOSTORE, NULL, NULL, NULL, NULL},
        {"cluster-remove-delay", F_IGNORED, U_NONE, NOSTORE, NULL, NULL, NULL, NULL},
        {"cluster-sync-interval", F_IGNORED, U_NONE, NOSTORE, NULL, NULL, NULL, NULL},
        {"config", F_IGNORED, U_NONE, NOSTORE, NULL, NULL, NULL, NULL},
        {"force", F_IGNORED, U_NONE, NOSTORE, NULL, NULL, NULL, NULL},
        {"max-result-buffer", F_IGNORED, U_NONE, NOSTORE, NULL, NULL, NULL, NULL},
        {"max-retry-attempts", F_IGNORED, U_NONE, NOSTORE, NULL, NULL, NULL, NULL},
        {"peer-heartbeat-interval", F_IGNORED, U_NONE, NOSTORE, NULL, NULL, NULL, NULL},
        {"peer-election-timeout", F_IGNORED, U_NONE, NOSTORE, NULL, NULL, NULL, NULL},
        {"retry-interval", F_IGNORED, U_NONE, NOSTORE, NULL, NULL, NULL, NULL},
        {"snapshot", F_IGNORED, U_NONE, NOSTORE, NULL, NULL, NULL, NULL},
        {"v", F_IGNORED, U_NONE, NOSTORE, NULL, NULL, NULL, NULL},
        {"vv", F_IGNORED, U_NONE, NOSTORE, NULL, NULL, NULL, NULL},
        {"test.coverprofile", F_IGNORED, U_NONE, NOSTORE, NULL, NULL, NULL, NULL},
        {"test.outputdir", F_IGNORED, U_NONE, NOSTORE, NULL, NULL, NULL, NULL},
};
#define NFLAGS (sizeof(flags) / sizeof(flags[0]))
_Static_assert(NFLAGS <= SRV_CONFIG_MAX_FLAGS, "raise SRV_CONFIG_MAX_FLAGS");

static void warnf(srv_config *cfg, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void warnf(srv_config *cfg, const char *fmt, ...)
{
	if (cfg->n_warnings_ == SRV_CONFIG_MAX_WARNINGS)
		return;
	char line[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	char *s = strdup(line);
	if (s)
		cfg->warnings_[cfg->n_warnings_++] = s;
}

void srv_urls_free(srv_urls *u)
{
	for (size_t i = 0; i < u->n; i++) {
		free(u->url[i]);
		free(u->addr[i]);
		u->url[i] = u->addr[i] = NULL;
	}
	u->n = 0;
}

/* Trim ASCII white space (Go's strings.TrimSpace for our purposes). */
static char *trimmed_dup(const char *p, size_t len)
{
	while (len && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')) {
		p++;
		len--;
	}
	while (len && (p[len - 1] == ' ' || p[len - 1] == '\t' || p[len - 1] == '\n' ||
	               p[len - 1] == '\r'))
		len--;
	return strndup(p, len);
}

/*
 * One URL as etcd's types.NewURLs checks it: scheme http, https, unix or unixs;
 * a "host:port" authority; no path. Stores the authority in *@addr. Returns 0 or
 * -1 with etcd's message in @err.
 */
static int check_url(const char *url, char **addr, char *err, size_t errlen)
{
	const char *sep = strstr(url, "://");
	size_t sl = sep ? (size_t)(sep - url) : 0;
	if (!sep || !((sl == 4 && strncmp(url, "http", 4) == 0) ||
	              (sl == 5 && strncmp(url, "https", 5) == 0) ||
	              (sl == 4 && strncmp(url, "unix", 4) == 0) ||
	              (sl == 5 && strncmp(url, "unixs", 5) == 0))) {
		srv_errf(err, errlen, "URL scheme must be http, https, unix, or unixs: %s", url);
		return -1;
	}
	const char *hp = sep + 3;
	size_t hl = strcspn(hp, "/?#");
	/* host:port, host may be [v6]; the port must be present. */
	const char *colon;
	if (hl && hp[0] == '[') {
		const char *rb = memchr(hp, ']', hl);
		colon = rb && (size_t)(rb - hp) + 1 < hl && rb[1] == ':' ? rb + 1 : NULL;
	} else {
		colon = memchr(hp, ':', hl);
		if (colon && memchr(colon + 1, ':', hl - (size_t)(colon + 1 - hp)))
			colon = NULL; /* too many colons */
	}
	if (!colon || colon + 1 == hp + hl) {
		srv_errf(err, errlen, "URL address does not have the form \"host:port\": %s", url);
		return -1;
	}
	if (hp[hl] == '/') {
		srv_errf(err, errlen, "URL must not contain a path: %s", url);
		return -1;
	}
	*addr = strndup(hp, hl);
	if (!*addr) {
		srv_errf(err, errlen, "out of memory");
		return -1;
	}
	return 0;
}

/* A comma-separated URL list into @u (replacing it). "" leaves @u unchanged, as
 * etcd's UniqueURLs treats its "" exception. */
static int parse_urls(const char *val, srv_urls *u, char *err, size_t errlen)
{
	if (*val == '\0')
		return 0;
	srv_urls nu = {0};
	const char *p = val;
	for (;;) {
		const char *end = strchr(p, ',');
		size_t len = end ? (size_t)(end - p) : strlen(p);
		if (nu.n == SRV_MAX_URLS) {
			srv_errf(err, errlen, "too many URLs (at most %d): %s", SRV_MAX_URLS, val);
			goto fail;
		}
		char *url = trimmed_dup(p, len);
		if (!url) {
			srv_errf(err, errlen, "out of memory");
			goto fail;
		}
		char *addr = NULL;
		if (check_url(url, &addr, err, errlen) != 0) {
			free(url);
			goto fail;
		}
		/* Unique, as etcd's UniqueURLs: a repeated URL is kept once. */
		bool dup = false;
		for (size_t i = 0; i < nu.n; i++)
			dup = dup || strcmp(nu.url[i], url) == 0;
		if (dup) {
			free(url);
			free(addr);
		} else {
			nu.url[nu.n] = url;
			nu.addr[nu.n] = addr;
			nu.n++;
		}
		if (!end)
			break;
		p = end + 1;
	}
	srv_urls_free(u);
	*u = nu;
	return 0;
fail:
	srv_urls_free(&nu);
	return -1;
}

int srv_config_parse_bool(const char *s, bool *out)
{
	static const char *const yes[] = {"1", "t", "T", "true", "TRUE", "True"};
	static const char *const no[] = {"0", "f", "F", "false", "FALSE", "False"};
	for (size_t i = 0; i < 6; i++) {
		if (strcmp(s, yes[i]) == 0) {
			*out = true;
			return 0;
		}
		if (strcmp(s, no[i]) == 0) {
			*out = false;
			return 0;
		}
	}
	return -1;
}

int srv_config_parse_num(const char *s, bool is_signed, uint64_t max, int64_t *out)
{
	bool neg = false;
	if (is_signed && (*s == '+' || *s == '-'))
		neg = *s++ == '-';
	if (!*s)
		return -1;
	unsigned base = 10;
	bool prefixed = false;
	if (s[0] == '0' && s[1]) {
		prefixed = true;
		if (s[1] == 'x' || s[1] == 'X')
			base = 16, s += 2;
		else if (s[1] == 'o' || s[1] == 'O')
			base = 8, s += 2;
		else if (s[1] == 'b' || s[1] == 'B')
			base = 2, s += 2;
		else
			base = 8, s += 1;
	}
	if (!*s)
		return -1;
	uint64_t v = 0;
	bool range = false, digits = false;
	for (; *s; s++) {
		if (*s == '_' && prefixed)
			continue;
		unsigned d;
		if (*s >= '0' && *s <= '9')
			d = (unsigned)(*s - '0');
		else if (*s >= 'a' && *s <= 'f')
			d = (unsigned)(*s - 'a' + 10);
		else if (*s >= 'A' && *s <= 'F')
			d = (unsigned)(*s - 'A' + 10);
		else
			return -1;
		if (d >= base)
			return -1;
		digits = true;
		if (v > (UINT64_MAX - d) / base)
			range = true;
		else
			v = v * base + d;
	}
	if (!digits)
		return -1;
	uint64_t lim = neg ? max + 1 : max;
	if (range || v > lim)
		return -2;
	*out = neg ? (int64_t)(0 - v) : (int64_t)v;
	return 0;
}

bool srv_flag_value(int argc, char **argv, int *i, const char *name, const char **out)
{
	const char *a = argv[*i];
	if (a[0] != '-')
		return false;
	a += a[1] == '-' ? 2 : 1;
	size_t n = strlen(name);
	if (strncmp(a, name, n) != 0)
		return false;
	if (a[n] == '=') {
		*out = a + n + 1;
		return true;
	}
	if (a[n] != '\0' || *i + 1 >= argc)
		return false;
	*out = argv[++*i];
	return true;
}

bool srv_flag_bool(const char *arg, const char *name, bool *out)
{
	if (arg[0] != '-')
		return false;
	arg += arg[1] == '-' ? 2 : 1;
	size_t n = strlen(name);
	if (strncmp(arg, name, n) != 0)
		return false;
	if (arg[n] == '\0' || strcmp(arg + n, "=true") == 0) {
		*out = true;
		return true;
	}
	if (strcmp(arg + n, "=false") == 0) {
		*out = false;
		return true;
	}
	return false;
}

int srv_config_parse_duration_ms(const char *s, int64_t *out_ms)
{
	static const struct {
		const char *u;
		double ns;
	} units[] = {{"ns", 1},   {"us", 1e3}, {"\xc2\xb5s", 1e3}, {"\xce\xbcs", 1e3},
	             {"ms", 1e6}, {"s", 1e9},  {"m", 60e9},        {"h", 3600e9}};
	bool neg = false;
	if (*s == '+' || *s == '-')
		neg = *s++ == '-';
	if (strcmp(s, "0") == 0) {
		*out_ms = 0;
		return 0;
	}
	if (!*s)
		return -1;
	double total = 0;
	while (*s) {
		const char *start = s;
		double v = 0, scale = 1;
		bool digits = false;
		while (*s >= '0' && *s <= '9')
			v = v * 10 + (*s++ - '0'), digits = true;
		if (*s == '.') {
			s++;
			while (*s >= '0' && *s <= '9')
				scale /= 10, v += (*s++ - '0') * scale, digits = true;
		}
		if (!digits || s == start)
			return -1;
		size_t ul = 0;
		while (s[ul] && !(s[ul] >= '0' && s[ul] <= '9') && s[ul] != '.')
			ul++;
		if (ul == 0)
			return -1; /* missing unit */
		double mult = 0;
		for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++)
			if (strlen(units[i].u) == ul && strncmp(s, units[i].u, ul) == 0)
				mult = units[i].ns;
		if (mult == 0)
			return -1; /* unknown unit */
		total += v * mult;
		s += ul;
	}
	if (total > 9.2e18)
		return -1;
	*out_ms = (int64_t)(total / 1e6) * (neg ? -1 : 1);
	return 0;
}

static bool choice_ok(const char *choices, const char *val)
{
	size_t vl = strlen(val);
	for (const char *p = choices; p && *p;) {
		const char *bar = strchr(p, '|');
		size_t l = bar ? (size_t)(bar - p) : strlen(p);
		if (l == vl && strncmp(p, val, l) == 0)
			return true;
		p = bar ? bar + 1 : NULL;
	}
	return false;
}

static int set_str(char **s, const char *val, char *err, size_t errlen)
{
	char *n = strdup(val);
	if (!n) {
		srv_errf(err, errlen, "out of memory");
		return -1;
	}
	free(*s);
	*s = n;
	return 0;
}

/*
 * Set flag @f from text @val. On failure @err holds the reason Go's flag.Value
 * Set gives ("parse error", "value out of range", "invalid value", or a URL
 * message); the caller frames it with the flag or variable name.
 */
static int set_flag(srv_config *cfg, const flag_def *f, const char *val, char *err, size_t errlen)
{
	char *base = f->off == NOSTORE ? NULL : (char *)cfg + f->off;
	switch (f->kind) {
	case F_STR:
		return base ? set_str((char **)base, val, err, errlen) : 0;
	case F_CHOICE:
		if (!choice_ok(f->choices, val)) {
			srv_errf(err, errlen, "invalid value");
			return -1;
		}
		return base ? set_str((char **)base, val, err, errlen) : 0;
	case F_INT:
	case F_UINT:
	case F_UINT32: {
		int64_t v;
		uint64_t max = f->kind == F_UINT32 ? UINT32_MAX
		               : f->kind == F_UINT ? (uint64_t)INT64_MAX
		                                   : INT64_MAX;
		if (base && f->off == OFF(grpc_threads))
			max = INT_MAX;
		int rc = srv_config_parse_num(val, f->kind == F_INT, max, &v);
		if (rc != 0) {
			srv_errf(err, errlen, rc == -2 ? "value out of range" : "parse error");
			return -1;
		}
		if (!base)
			return 0;
		if (f->off == OFF(grpc_threads))
			*(int *)base = (int)v;
		else
			*(int64_t *)base = v;
		return 0;
	}
	case F_BOOL: {
		bool b;
		if (srv_config_parse_bool(val, &b) != 0) {
			srv_errf(err, errlen, "parse error");
			return -1;
		}
		if (base)
			*(bool *)base = b;
		return 0;
	}
	case F_DUR: {
		int64_t ms;
		if (srv_config_parse_duration_ms(val, &ms) != 0) {
			srv_errf(err, errlen, "parse error");
			return -1;
		}
		if (base)
			*(int64_t *)base = ms;
		return 0;
	}
	case F_URLS:
		return parse_urls(val, (srv_urls *)base, err, errlen);
	case F_IGNORED:
		warnf(cfg, "flag \"-%s\" is no longer supported - ignoring.", f->name);
		return 0;
	}
	return -1;
}

/* Whether @val differs from @f's default (booleans compared by value). */
static bool is_nondefault(const flag_def *f, const char *val)
{
	if (f->kind == F_IGNORED)
		return false;
	if (!f->def)
		return *val != '\0';
	if (f->kind == F_BOOL) {
		bool a = false, b = false;
		srv_config_parse_bool(val, &a);
		srv_config_parse_bool(f->def, &b);
		return a != b;
	}
	if (f->kind == F_URLS && *val == '\0')
		return false;
	if (f->kind == F_DUR) {
		int64_t a = 0, b = 0;
		srv_config_parse_duration_ms(val, &a);
		srv_config_parse_duration_ms(f->def, &b);
		return a != b;
	}
	if (f->kind == F_INT || f->kind == F_UINT || f->kind == F_UINT32) {
		int64_t a = 0, b = 0;
		srv_config_parse_num(val, true, INT64_MAX, &a);
		srv_config_parse_num(f->def, true, INT64_MAX, &b);
		return a != b;
	}
	return strcmp(val, f->def) != 0;
}

static const flag_def *find_flag(const char *name, size_t len)
{
	for (size_t i = 0; i < NFLAGS; i++)
		if (strlen(flags[i].name) == len && strncmp(flags[i].name, name, len) == 0)
			return &flags[i];
	return NULL;
}

static const flag_def *flag_named(const char *name)
{
	return find_flag(name, strlen(name));
}

/* ETCD_FOO_BAR for foo-bar (pkg/flags.FlagToEnv); "test.coverprofile" keeps its dot. */
static void env_key(const char *name, char *out, size_t outlen)
{
	size_t o = (size_t)snprintf(out, outlen, "ETCD_");
	for (const char *p = name; *p && o + 1 < outlen; p++)
		out[o++] = *p == '-' ? '_' : (char)(*p >= 'a' && *p <= 'z' ? *p - 'a' + 'A' : *p);
	out[o] = '\0';
}

static const char *env_get(char *const *envp, const char *key)
{
	size_t kl = strlen(key);
	for (char *const *e = envp; e && *e; e++)
		if (strncmp(*e, key, kl) == 0 && (*e)[kl] == '=')
			return *e + kl + 1;
	return NULL;
}

/* Remember the first flag metastore refuses (given, not with its default). */
static void note_refusal(const flag_def *f, bool nondef, const char *val, char *refused,
                         size_t rlen)
{
	if (f->use == U_REFUSE && nondef && !*refused)
		snprintf(refused, rlen, "--%s=%s: %s", f->name, val, f->why);
}

/* Apply command-line argv[1..] (Go flag.FlagSet.Parse). */
static int parse_args(srv_config *cfg, int argc, char **argv, char *refused, size_t rlen, char *err,
                      size_t errlen)
{
	int i;
	for (i = 1; i < argc; i++) {
		const char *a = argv[i];
		if (a[0] != '-' || a[1] == '\0')
			break; /* first non-flag argument */
		const char *name = a + 1;
		if (*name == '-') {
			name++;
			if (*name == '\0') { /* "--" ends the flags */
				i++;
				break;
			}
		}
		if (*name == '-' || *name == '=') {
			srv_errf(err, errlen, "bad flag syntax: %s", a);
			return SRV_CONFIG_ERROR;
		}
		const char *eq = strchr(name, '=');
		size_t nlen = eq ? (size_t)(eq - name) : strlen(name);
		if ((nlen == 1 && name[0] == 'h') || (nlen == 4 && strncmp(name, "help", 4) == 0))
			return SRV_CONFIG_HELP;
		const flag_def *f = find_flag(name, nlen);
		if (!f) {
			srv_errf(err, errlen, "flag provided but not defined: -%.*s", (int)nlen, name);
			return SRV_CONFIG_ERROR;
		}
		const char *val = eq ? eq + 1 : NULL;
		char why[256] = "";
		if (f->kind == F_BOOL || f->kind == F_IGNORED) {
			if (!val)
				val = "true";
			if (set_flag(cfg, f, val, why, sizeof(why)) != 0) {
				srv_errf(err, errlen, "invalid boolean value \"%s\" for -%s: %s", val,
				     f->name, why);
				return SRV_CONFIG_ERROR;
			}
		} else {
			if (!val) {
				if (i + 1 >= argc) {
					srv_errf(err, errlen, "flag needs an argument: -%s", f->name);
					return SRV_CONFIG_ERROR;
				}
				val = argv[++i];
			}
			if (set_flag(cfg, f, val, why, sizeof(why)) != 0) {
				srv_errf(err, errlen, "invalid value \"%s\" for flag -%s: %s", val,
				     f->name, why);
				return SRV_CONFIG_ERROR;
			}
		}
		size_t idx = (size_t)(f - flags);
		cfg->given_[idx] = 1;
		cfg->nondef_[idx] = is_nondefault(f, val);
		note_refusal(f, cfg->nondef_[idx], val, refused, rlen);
	}
	if (i < argc) {
		srv_errf(err, errlen, "'%s' is not a valid flag", argv[i]);
		return SRV_CONFIG_ERROR;
	}
	return 0;
}

/* pkg/flags.SetFlagsFromEnv: ETCD_* for flags not given, then verifyEnv. */
static int parse_env(srv_config *cfg, char *const *envp, char *refused, size_t rlen, char *err,
                     size_t errlen)
{
	char key[96];
	bool used[SRV_CONFIG_MAX_FLAGS] = {0};
	for (size_t i = 0; i < NFLAGS; i++) {
		const flag_def *f = &flags[i];
		if (cfg->given_[i] || strcmp(f->name, "version") == 0)
			continue;
		env_key(f->name, key, sizeof(key));
		const char *val = env_get(envp, key);
		if (!val || !*val)
			continue;
		char why[256] = "";
		if (set_flag(cfg, f, val, why, sizeof(why)) != 0) {
			srv_errf(err, errlen, "invalid value \"%s\" for %s: %s", val, key, why);
			return SRV_CONFIG_ERROR;
		}
		used[i] = true;
		cfg->given_[i] = 2;
		cfg->nondef_[i] = is_nondefault(f, val);
		note_refusal(f, cfg->nondef_[i], val, refused, rlen);
		warnf(cfg, "recognized and used environment variable %s=%s", key, val);
	}
	for (char *const *e = envp; e && *e; e++) {
		const char *eq = strchr(*e, '=');
		size_t kl = eq ? (size_t)(eq - *e) : strlen(*e);
		if (kl < 5 || strncmp(*e, "ETCD_", 5) != 0)
			continue;
		const flag_def *match = NULL;
		for (size_t i = 0; i < NFLAGS && !match; i++) {
			env_key(flags[i].name, key, sizeof(key));
			if (strlen(key) == kl && strncmp(key, *e, kl) == 0)
				match = &flags[i];
		}
		size_t idx = match ? (size_t)(match - flags) : 0;
		if (match && used[idx])
			continue;
		if (match && cfg->given_[idx] == 1) {
			srv_errf(err, errlen,
			     "conflicting environment variable \"%.*s\" is shadowed by "
			     "corresponding command-line flag "
			     "(either unset environment variable or disable flag)",
			     (int)kl, *e);
			return SRV_CONFIG_ERROR;
		}
		warnf(cfg, "unrecognized environment variable %s", *e);
	}
	return 0;
}

/* Every flag with a default set to it. */
static int set_defaults(srv_config *cfg, char *err, size_t errlen)
{
	for (size_t i = 0; i < NFLAGS; i++)
		if (flags[i].def && flags[i].kind != F_IGNORED &&
		    set_flag(cfg, &flags[i], flags[i].def, err, errlen) != 0)
			return -1;
	return 0;
}

/* Free the flags' strings and URL lists (fields left NULL / empty). */
static void free_flag_values(srv_config *cfg)
{
	for (size_t i = 0; i < NFLAGS; i++) {
		if (flags[i].off == NOSTORE)
			continue;
		char *base = (char *)cfg + flags[i].off;
		if (flags[i].kind == F_STR || flags[i].kind == F_CHOICE) {
			free(*(char **)base);
			*(char **)base = NULL;
		} else if (flags[i].kind == F_URLS) {
			srv_urls_free((srv_urls *)base);
		}
	}
}

/*
 * etcd 3.4's configuration file (embed.ConfigFromFile, etcdmain's
 * configFromFile): a YAML mapping whose keys are the flags' names, read as Go's
 * encoding/json reads them into etcd's Config (sigs.k8s.io/yaml): keys match
 * without regard to case, unknown keys are ignored, null keeps the default, and
 * each value must have its field's Go type: a string (URL lists are one
 * comma-separated string), true/false, an integer (durations in nanoseconds), or
 * for three fields a list of strings. Every value then goes through set_flag as
 * the command line's text would.
 */

/* The TLS settings live in two nested blocks, five keys each in etcd 3.4. */
static const struct {
	const char *block, *key, *flag;
} file_tls_keys[] = {
        {"client-transport-security", "cert-file", "cert-file"},
        {"client-transport-security", "key-file", "key-file"},
        {"client-transport-security", "client-cert-auth", "client-cert-auth"},
        {"client-transport-security", "trusted-ca-file", "trusted-ca-file"},
        {"client-transport-security", "auto-tls", "auto-tls"},
        {"peer-transport-security", "cert-file", "peer-cert-file"},
        {"peer-transport-security", "key-file", "peer-key-file"},
        {"peer-transport-security", "client-cert-auth", "peer-client-cert-auth"},
        {"peer-transport-security", "trusted-ca-file", "peer-trusted-ca-file"},
        {"peer-transport-security", "auto-tls", "peer-auto-tls"},
};

/* Flags that are no top-level key of etcd's file (the file ignores them). */
static const char *const file_not_keys[] = {
        "config-file", "version", "cert-file", "key-file", "client-cert-auth", "client-crl-file",
        "client-cert-allowed-hostname", "trusted-ca-file", "auto-tls", "peer-cert-file",
        "peer-key-file", "peer-client-cert-auth", "peer-trusted-ca-file", "peer-cert-allowed-cn",
        "peer-cert-allowed-hostname", "peer-auto-tls", "peer-crl-file",
        "experimental-peer-skip-client-san-verification", NULL};

/* Go []string fields: a YAML list, joined with commas into the flag's text. */
static const char *const file_lists[] = {"cipher-suites", "log-outputs", "log-output", NULL};

/* etcdmain's configProxy strings, which sigs.k8s.io/yaml also fills from
 * numbers and booleans (as their text: "proxy: off" is "false"). */
static const char *const file_loose_strings[] = {"proxy", "discovery-fallback", NULL};

static bool name_in(const char *name, const char *const *list)
{
	for (; *list; list++)
		if (strcmp(name, *list) == 0)
			return true;
	return false;
}

/* The flag top-level key @key sets, or NULL for a key etcd's file ignores. */
static const flag_def *file_flag(const char *key)
{
	for (size_t i = 0; i < NFLAGS; i++)
		if (flags[i].kind != F_IGNORED && strcasecmp(flags[i].name, key) == 0 &&
		    !name_in(flags[i].name, file_not_keys))
			return &flags[i];
	return NULL;
}

typedef struct file_ctx {
	srv_config *cfg;
	const srv_yaml *y;
	const char *path;
	char *refused;
	size_t rlen;
	char *err;
	size_t errlen;
} file_ctx;

/* "config file PATH: line N: " and @fmt into fc->err (@warn: a warning
 * instead), N being the line of @node. */
static void file_note(file_ctx *fc, bool warn, int node, const char *fmt, ...)
        __attribute__((format(printf, 4, 5)));
static void file_note(file_ctx *fc, bool warn, int node, const char *fmt, ...)
{
	char msg[384];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	if (warn)
		warnf(fc->cfg, "config file %s: line %lu: %s", fc->path, srv_yaml_line(fc->y, node),
		      msg);
	else
		srv_errf(fc->err, fc->errlen, "config file %s: line %lu: %s", fc->path,
		         srv_yaml_line(fc->y, node), msg);
}

/* The items of list @node joined with commas, malloc'd; NULL with @err set. */
static char *file_join(file_ctx *fc, const char *key, int node)
{
	size_t n = srv_yaml_len(fc->y, node), len = 1;
	for (size_t i = 0; i < n; i++) {
		int it = srv_yaml_item(fc->y, node, i);
		if (srv_yaml_kind_of(fc->y, it) != SRV_YAML_STR) {
			file_note(fc, false, it,
			          "key \"%s\": expected a list of strings, found %s in it", key,
			          srv_yaml_kind_name(srv_yaml_kind_of(fc->y, it)));
			return NULL;
		}
		len += strlen(srv_yaml_text(fc->y, it)) + 1;
	}
	char *s = calloc(1, len);
	if (!s) {
		srv_errf(fc->err, fc->errlen, "out of memory");
		return NULL;
	}
	for (size_t i = 0; i < n; i++) {
		if (i)
			strcat(s, ",");
		strcat(s, srv_yaml_text(fc->y, srv_yaml_item(fc->y, node, i)));
	}
	return s;
}

/* Set flag @f from the value @node of key @key (as written, for messages). */
static int file_set(file_ctx *fc, const flag_def *f, const char *key, int node)
{
	srv_yaml_kind k = srv_yaml_kind_of(fc->y, node);
	if (k == SRV_YAML_NULL)
		return 0;
	const char *want = NULL, *val = srv_yaml_text(fc->y, node);
	char *owned = NULL;
	if (name_in(f->name, file_lists)) {
		if (k != SRV_YAML_SEQ)
			want = "a list of strings";
		else if (srv_yaml_len(fc->y, node) == 0)
			return 0;
		else if (!(val = owned = file_join(fc, key, node)))
			return -1;
	} else if (f->kind == F_BOOL) {
		if (k != SRV_YAML_BOOL)
			want = "true or false";
	} else if (f->kind == F_INT || f->kind == F_UINT || f->kind == F_UINT32) {
		if (k != SRV_YAML_INT)
			want = "an integer";
	} else if (f->kind == F_DUR) {
		if (k != SRV_YAML_INT)
			want = "an integer (nanoseconds)";
		else if (!(owned = malloc(strlen(val) + 3))) {
			srv_errf(fc->err, fc->errlen, "out of memory");
			return -1;
		} else {
			sprintf(owned, "%sns", val);
			val = owned;
		}
	} else if (k != SRV_YAML_STR &&
	           !(name_in(f->name, file_loose_strings) &&
	             (k == SRV_YAML_BOOL || k == SRV_YAML_INT || k == SRV_YAML_FLOAT))) {
		want = "a string";
	}
	if (want) {
		file_note(fc, false, node, "key \"%s\": expected %s, found %s", key, want,
		          srv_yaml_kind_name(k));
		return -1;
	}
	/* etcd takes an empty state for "new" */
	if (strcmp(f->name, "initial-cluster-state") == 0 && *val == '\0')
		return 0;
	char why[256] = "";
	if (set_flag(fc->cfg, f, val, why, sizeof why) != 0) {
		file_note(fc, false, node, "key \"%s\": invalid value \"%s\": %s", key, val, why);
		free(owned);
		return -1;
	}
	size_t idx = (size_t)(f - flags);
	fc->cfg->given_[idx] = 3;
	fc->cfg->nondef_[idx] = is_nondefault(f, val);
	note_refusal(f, fc->cfg->nondef_[idx], val, fc->refused, fc->rlen);
	free(owned);
	return 0;
}

/* Apply one of the two TLS blocks (@node, the value of key @block). */
static int file_tls_block(file_ctx *fc, const char *block, int node)
{
	srv_yaml_kind k = srv_yaml_kind_of(fc->y, node);
	if (k == SRV_YAML_NULL)
		return 0;
	if (k != SRV_YAML_MAP) {
		file_note(fc, false, node, "key \"%s\": expected a mapping, found %s", block,
		          srv_yaml_kind_name(k));
		return -1;
	}
	for (size_t i = 0; i < srv_yaml_len(fc->y, node); i++) {
		int kn = srv_yaml_key(fc->y, node, i), vn = srv_yaml_value(fc->y, node, i);
		const char *key = srv_yaml_text(fc->y, kn);
		const flag_def *f = NULL;
		for (size_t j = 0; j < sizeof file_tls_keys / sizeof file_tls_keys[0] && !f; j++)
			if (strcasecmp(file_tls_keys[j].block, block) == 0 &&
			    strcasecmp(file_tls_keys[j].key, key) == 0)
				f = flag_named(file_tls_keys[j].flag);
		char full[160];
		snprintf(full, sizeof full, "%s.%s", block, key);
		if (!f)
			file_note(fc, true, kn, "unknown key \"%s\" ignored", full);
		else if (file_set(fc, f, full, vn) != 0)
			return -1;
	}
	return 0;
}

/* Read file @path into @cfg (whose flags hold their defaults). */
static int file_apply(file_ctx *fc)
{
	srv_yaml *y;
	char why[512];
	if (srv_yaml_load(fc->path, &y, why, sizeof why) != 0) {
		srv_errf(fc->err, fc->errlen, "config file %s", why);
		return -1;
	}
	fc->y = y;
	int root = srv_yaml_root(y), rc = 0;
	srv_yaml_kind rk = srv_yaml_kind_of(y, root);
	if (rk != SRV_YAML_NONE && rk != SRV_YAML_NULL && rk != SRV_YAML_MAP) {
		file_note(fc, false, root, "expected a mapping of settings, found %s",
		          srv_yaml_kind_name(rk));
		rc = -1;
	}
	for (size_t i = 0; rc == 0 && rk == SRV_YAML_MAP && i < srv_yaml_len(y, root); i++) {
		int kn = srv_yaml_key(y, root, i), vn = srv_yaml_value(y, root, i);
		srv_yaml_kind kk = srv_yaml_kind_of(y, kn);
		const char *key = srv_yaml_text(y, kn);
		const flag_def *f = file_flag(key);
		if (kk == SRV_YAML_SEQ || kk == SRV_YAML_MAP) {
			file_note(fc, false, kn, "a key must be a string, found %s",
			          srv_yaml_kind_name(kk));
			rc = -1;
		} else if (strcasecmp(key, "client-transport-security") == 0 ||
		           strcasecmp(key, "peer-transport-security") == 0) {
			rc = file_tls_block(fc, key, vn);
		} else if (!f) {
			file_note(fc, true, kn, "unknown key \"%s\" ignored", key);
		} else {
			rc = file_set(fc, f, key, vn);
		}
	}
	srv_yaml_free(y);
	return rc;
}

/*
 * etcdmain with a configuration file: the flags were parsed (so a bad flag is
 * still an error) but every setting is the file's over etcd's defaults;
 * ETCD_* variables are not read.
 */
static int load_config_file(srv_config *cfg, const char *file, unsigned char how, char *refused,
                            size_t rlen, char *err, size_t errlen)
{
	char *path = strdup(file);
	if (!path) {
		srv_errf(err, errlen, "out of memory");
		return -1;
	}
	free_flag_values(cfg);
	memset(cfg->given_, 0, sizeof cfg->given_);
	memset(cfg->nondef_, 0, sizeof cfg->nondef_);
	refused[0] = '\0';
	int rc = set_defaults(cfg, err, errlen);
	if (rc == 0)
		rc = set_str(&cfg->config_file, path, err, errlen);
	if (rc == 0) {
		size_t idx = (size_t)(flag_named("config-file") - flags);
		cfg->given_[idx] = how;
		cfg->nondef_[idx] = 1;
		warnf(cfg,
		      "loaded server configuration from %s; other command-line flags and "
		      "environment variables are ignored",
		      path);
		file_ctx fc = {cfg, NULL, path, refused, rlen, err, errlen};
		rc = file_apply(&fc);
	}
	free(path);
	return rc;
}

/* etcd's checkBindURLs: a listen URL's host is "localhost" or an IP address. */
static int check_bind(const srv_urls *u, char *err, size_t errlen)
{
	for (size_t i = 0; i < u->n; i++) {
		if (strncmp(u->url[i], "unix", 4) == 0)
			continue;
		const char *a = u->addr[i];
		char host[256];
		size_t hl = (size_t)(strrchr(a, ':') - a);
		if (a[0] == '[' && hl >= 2)
			snprintf(host, sizeof(host), "%.*s", (int)(hl - 2), a + 1);
		else
			snprintf(host, sizeof(host), "%.*s", (int)hl, a);
		unsigned char buf[16];
		if (strcmp(host, "localhost") == 0 || inet_pton(AF_INET, host, buf) == 1 ||
		    inet_pton(AF_INET6, host, buf) == 1)
			continue;
		srv_errf(err, errlen, "expected IP in URL for binding (%s)", u->url[i]);
		return -1;
	}
	return 0;
}

/* etcd's checkHostURLs for an advertised list. */
static int check_host(const srv_urls *u, const char *flag, char *err, size_t errlen)
{
	for (size_t i = 0; i < u->n; i++) {
		if (u->addr[i][0] != ':')
			continue;
		char joined[1024] = "";
		for (size_t j = 0; j < u->n; j++) {
			if (j)
				strncat(joined, ",", sizeof(joined) - strlen(joined) - 1);
			strncat(joined, u->addr[j], sizeof(joined) - strlen(joined) - 1);
		}
		srv_errf(err, errlen, "--%s \"%s\" must be \"host:port\" (unexpected empty host (%s))",
		     flag, joined, u->url[i]);
		return -1;
	}
	return 0;
}

/* embed.Config.Validate and etcdmain's checks, in etcd's order. */
static int validate(srv_config *cfg, char *err, size_t errlen)
{
	if (strcmp(cfg->logger, "capnslog") != 0 && strcmp(cfg->logger, "zap") != 0) {
		srv_errf(err, errlen, "unknown logger option \"%s\"", cfg->logger);
		return -1;
	}
	if (check_bind(&cfg->listen_peer, err, errlen) ||
	    check_bind(&cfg->listen_client, err, errlen) ||
	    check_bind(&cfg->listen_metrics, err, errlen))
		return -1;
	if (check_host(&cfg->initial_advertise_peer, "initial-advertise-peer-urls", err, errlen) ||
	    check_host(&cfg->advertise_client, "advertise-client-urls", err, errlen))
		return -1;
	int nset = (*cfg->discovery != '\0') + (*cfg->initial_cluster != '\0') +
	           (*cfg->discovery_srv != '\0');
	if (nset > 1) {
		srv_errf(err, errlen,
		     "multiple discovery or bootstrap flags are set. Choose one of "
		     "\"initial-cluster\", \"discovery\" or "
		     "\"discovery-srv\"");
		return -1;
	}
	if (cfg->heartbeat_interval_ms <= 0) {
		srv_errf(err, errlen, "--heartbeat-interval must be >0 (set to %lldms)",
		     (long long)cfg->heartbeat_interval_ms);
		return -1;
	}
	if (cfg->election_timeout_ms <= 0) {
		srv_errf(err, errlen, "--election-timeout must be >0 (set to %lldms)",
		     (long long)cfg->election_timeout_ms);
		return -1;
	}
	if (5 * cfg->heartbeat_interval_ms > cfg->election_timeout_ms) {
		srv_errf(err, errlen,
		     "--election-timeout[%lldms] should be at least as 5 times as "
		     "--heartbeat-interval[%lldms]",
		     (long long)cfg->election_timeout_ms, (long long)cfg->heartbeat_interval_ms);
		return -1;
	}
	if (cfg->election_timeout_ms > 50000) {
		srv_errf(err, errlen,
		     "--election-timeout[%lldms] is too long, and should be set less than 50000ms",
		     (long long)cfg->election_timeout_ms);
		return -1;
	}
	/* etcdmain drops the default advertise URL when only the listen URL is set
	 * (on the command line: a configuration file keeps it). */
	if (!*cfg->config_file && srv_config_is_set(cfg, "listen-client-urls") &&
	    !srv_config_is_set(cfg, "advertise-client-urls") && strcmp(cfg->proxy, "off") == 0) {
		srv_errf(err, errlen,
		     "--advertise-client-urls is required when --listen-client-urls is set "
		     "explicitly");
		return -1;
	}
	if (*cfg->auto_compaction_mode && strcmp(cfg->auto_compaction_mode, "periodic") != 0 &&
	    strcmp(cfg->auto_compaction_mode, "revision") != 0) {
		srv_errf(err, errlen, "unknown auto-compaction-mode \"%s\"", cfg->auto_compaction_mode);
		return -1;
	}
	int64_t retention;
	if (srv_config_compaction_retention(cfg, &retention) != 0) {
		srv_errf(err, errlen, "error parsing CompactionRetention: time: invalid duration \"%s\"",
		     cfg->auto_compaction_retention);
		return -1;
	}
	if (cfg->nondef_[flag_named("experimental-enable-lease-checkpoint-persist") - flags] &&
	    !cfg->nondef_[flag_named("experimental-enable-lease-checkpoint") - flags]) {
		srv_errf(err, errlen,
		     "setting experimental-enable-lease-checkpoint-persist requires "
		     "experimental-enable-lease-checkpoint");
		return -1;
	}
	return 0;
}

bool srv_config_url_secure(const char *url)
{
	return strncmp(url, "https://", 8) == 0 || strncmp(url, "unixs://", 8) == 0;
}

/*
 * The TLS flags, as embed's listener set-up checks them before any file is
 * read, in its order (peers, then clients): the cipher suite names; both of
 * cert and key; https:// or unixs:// listen URLs need a certificate (or
 * auto-TLS); --peer-cert-allowed-cn excludes --peer-cert-allowed-hostname.
 * A client address given both as http:// and https:// is served on one port,
 * both ways, as etcd's (srv_listen).
 */
static int validate_tls(const srv_config *cfg, char *err, size_t errlen)
{
	char list[2048];
	if (srv_tls_cipher_list(cfg->cipher_suites, list, sizeof list, err, errlen) < 0)
		return -1;
	bool pcert = *cfg->peer_cert_file != '\0', pkey = *cfg->peer_key_file != '\0';
	if (pcert != pkey) {
		srv_errf(err, errlen, "--peer-cert-file and --peer-key-file must both be given (key: \"%s\", "
		     "cert: \"%s\")", cfg->peer_key_file, cfg->peer_cert_file);
		return -1;
	}
	/* Auto-TLS without files replaces the peer TLSInfo, allowed names included. */
	if (pcert && *cfg->peer_cert_allowed_cn && *cfg->peer_cert_allowed_hostname) {
		srv_errf(err, errlen,
		     "AllowedCN and AllowedHostname are mutually exclusive (cn=\"%s\", hostname=\"%s\")",
		     cfg->peer_cert_allowed_cn, cfg->peer_cert_allowed_hostname);
		return -1;
	}
	for (size_t i = 0; i < cfg->listen_peer.n; i++) {
		if (srv_config_url_secure(cfg->listen_peer.url[i]) && !pcert && !cfg->peer_auto_tls) {
			srv_errf(err, errlen,
			     "cannot listen on TLS for %s: KeyFile and CertFile are not presented",
			     cfg->listen_peer.addr[i]);
			return -1;
		}
	}
	bool ccert = *cfg->cert_file != '\0', ckey = *cfg->key_file != '\0';
	for (size_t i = 0; i < cfg->listen_client.n; i++) {
		if (srv_config_url_secure(cfg->listen_client.url[i]) && !ccert && !ckey && !cfg->auto_tls) {
			srv_errf(err, errlen,
			     "TLS key/cert (--cert-file, --key-file) must be provided for client url %s "
			     "with HTTPS scheme",
			     cfg->listen_client.url[i]);
			return -1;
		}
	}
	if (ccert != ckey) {
		srv_errf(err, errlen, "--cert-file and --key-file must both be given (key: \"%s\", cert: "
		     "\"%s\")", cfg->key_file, cfg->cert_file);
		return -1;
	}
	return 0;
}

/* What metastore refuses: flags it cannot honour safely. */
static int refuse_unsupported(const srv_config *cfg, const char *refused, char *err, size_t errlen)
{
	(void)cfg;
	if (*refused) {
		srv_errf(err, errlen, "%s", refused);
		return -1;
	}
	return 0;
}

static int derive_defaults(srv_config *cfg, char *err, size_t errlen)
{
	if (!cfg->data_dir) {
		size_t l = strlen(cfg->name) + sizeof(".metastore");
		cfg->data_dir = malloc(l);
		if (!cfg->data_dir) {
			srv_errf(err, errlen, "out of memory");
			return -1;
		}
		snprintf(cfg->data_dir, l, "%s.metastore", cfg->name);
	}
	/* etcdmain: with discovery and no explicit --initial-cluster, there is none. */
	bool discovering = *cfg->discovery || *cfg->discovery_srv || *cfg->discovery_srv_name;
	if (!cfg->initial_cluster && discovering) {
		cfg->initial_cluster = strdup("");
	} else if (!cfg->initial_cluster) {
		/* name=url for each advertised peer URL, as etcd derives it. */
		size_t l = 1;
		for (size_t i = 0; i < cfg->initial_advertise_peer.n; i++)
			l += strlen(cfg->name) + strlen(cfg->initial_advertise_peer.url[i]) + 2;
		cfg->initial_cluster = calloc(1, l);
		if (cfg->initial_cluster) {
			for (size_t i = 0; i < cfg->initial_advertise_peer.n; i++) {
				if (i)
					strcat(cfg->initial_cluster, ",");
				strcat(cfg->initial_cluster, cfg->name);
				strcat(cfg->initial_cluster, "=");
				strcat(cfg->initial_cluster, cfg->initial_advertise_peer.url[i]);
			}
		}
	}
	if (!cfg->initial_cluster) {
		srv_errf(err, errlen, "out of memory");
		return -1;
	}
	/* --debug is --log-level=debug unless a level was given. */
	const flag_def *dbg = flag_named("debug");
	if (cfg->nondef_[dbg - flags] && !srv_config_is_set(cfg, "log-level") &&
	    set_str(&cfg->log_level, "debug", err, errlen) != 0)
		return -1;
	/* etcd's ConvertToZapLevel panics with this text; the outputs are opened
	 * (and checked) by srv_log_setup in main. */
	srv_log_level lvl;
	if (srv_log_level_parse(cfg->log_level, &lvl) != 0) {
		srv_errf(err, errlen, "unknown level \"%s\"", cfg->log_level);
		return -1;
	}
	return 0;
}

int srv_config_parse_env(srv_config *cfg, int argc, char **argv, char *const *envp, char *err,
                         size_t errlen)
{
	memset(cfg, 0, sizeof(*cfg));
	if (errlen)
		err[0] = '\0';
	if (set_defaults(cfg, err, errlen) != 0)
		return SRV_CONFIG_ERROR;

	char refused[512] = "";
	int rc = parse_args(cfg, argc, argv, refused, sizeof(refused), err, errlen);
	if (rc != 0)
		return rc;
	if (cfg->nondef_[flag_named("version") - flags])
		return SRV_CONFIG_VERSION;
	/* ETCD_CONFIG_FILE is read first, on its own, to know whether the other
	 * variables count (etcdmain). */
	unsigned char how = 1;
	const char *file = cfg->config_file;
	if (!*file) {
		file = env_get(envp, "ETCD_CONFIG_FILE");
		how = 2;
	}
	if (file && *file) {
		if (load_config_file(cfg, file, how, refused, sizeof(refused), err, errlen) != 0)
			return SRV_CONFIG_ERROR;
	} else if (parse_env(cfg, envp, refused, sizeof(refused), err, errlen) != 0) {
		return SRV_CONFIG_ERROR;
	}
	if (derive_defaults(cfg, err, errlen) != 0 || validate(cfg, err, errlen) != 0 ||
	    validate_tls(cfg, err, errlen) != 0 || refuse_unsupported(cfg, refused, err, errlen) != 0)
		return SRV_CONFIG_ERROR;
	if (cfg->max_request_bytes == 0 || cfg->max_txn_ops == 0 || cfg->grpc_threads <= 0) {
		srv_errf(err, errlen,
		     "--max-request-bytes, --max-txn-ops and --grpc-threads must be positive");
		return SRV_CONFIG_ERROR;
	}
	if (cfg->listen_client.n == 0 || cfg->listen_peer.n == 0) {
		srv_errf(err, errlen,
		     "--listen-client-urls and --listen-peer-urls must name at least one URL");
		return SRV_CONFIG_ERROR;
	}
	return 0;
}

int srv_config_parse(srv_config *cfg, int argc, char **argv, char *err, size_t errlen)
{
	return srv_config_parse_env(cfg, argc, argv, environ, err, errlen);
}

void srv_config_free(srv_config *cfg)
{
	free_flag_values(cfg);
	for (size_t i = 0; i < cfg->n_warnings_; i++)
		free(cfg->warnings_[i]);
	cfg->n_warnings_ = 0;
}

int srv_config_compaction_retention(const srv_config *cfg, int64_t *out)
{
	/* etcd's parseCompactionRetention: a non-negative integer is hours
	 * (periodic) or revisions; anything else is a Go duration */
	const char *s = cfg->auto_compaction_retention ? cfg->auto_compaction_retention : "0";
	char *end = NULL;
	errno = 0;
	long long h = *s ? strtoll(s, &end, 10) : -1;
	bool revision = cfg->auto_compaction_mode && strcmp(cfg->auto_compaction_mode, "revision") == 0;
	if (*s && *end == '\0' && errno == 0 && h >= 0 && !isspace((unsigned char)*s)) {
		if (revision)
			*out = h;
		else
			*out = h > INT64_MAX / 3600000 ? INT64_MAX : h * 3600000;
		return 0;
	}
	int64_t ms;
	if (srv_config_parse_duration_ms(s, &ms) != 0)
		return -1;
	/* a duration in revision mode counts its nanoseconds, as etcd's does */
	*out = revision ? (ms > INT64_MAX / 1000000 ? INT64_MAX : ms * 1000000) : ms;
	return 0;
}

size_t srv_config_ignored(const srv_config *cfg, const char **names, size_t cap)
{
	size_t n = 0;
	for (size_t i = 0; i < NFLAGS; i++) {
		if ((flags[i].use != U_LATER && flags[i].use != U_NONE) ||
		    flags[i].kind == F_IGNORED || !cfg->given_[i] || !cfg->nondef_[i])
			continue;
		if (n < cap)
			names[n] = flags[i].name;
		n++;
	}
	return n;
}

size_t srv_config_warnings(const srv_config *cfg, const char **lines, size_t cap)
{
	for (size_t i = 0; i < cfg->n_warnings_ && i < cap; i++)
		lines[i] = cfg->warnings_[i];
	return cfg->n_warnings_;
}

bool srv_config_is_set(const srv_config *cfg, const char *name)
{
	const flag_def *f = flag_named(name);
	return f && cfg->given_[f - flags] != 0;
}

size_t srv_urls_split(const char *list, srv_urls *out)
{
	memset(out, 0, sizeof(*out));
	const char *p = list;
	while (p && *p && out->n < SRV_MAX_URLS) {
		const char *end = strchr(p, ',');
		size_t len = end ? (size_t)(end - p) : strlen(p);
		if (len && (out->url[out->n] = strndup(p, len)) != NULL)
			out->n++;
		p = end ? end + 1 : NULL;
	}
	return out->n;
}

size_t srv_config_peer_urls_of(const char *initial_cluster, const char *name, srv_urls *out)
{
	memset(out, 0, sizeof(*out));
	const char *p = initial_cluster;
	size_t nl = strlen(name);
	while (p && *p) {
		const char *end = strchr(p, ',');
		size_t len = end ? (size_t)(end - p) : strlen(p);
		const char *eq = memchr(p, '=', len);
		if (eq && (size_t)(eq - p) == nl && strncmp(p, name, nl) == 0 &&
		    out->n < SRV_MAX_URLS) {
			out->url[out->n] = strndup(eq + 1, len - (size_t)(eq - p) - 1);
			out->addr[out->n] = NULL;
			if (out->url[out->n])
				out->n++;
		}
		p = end ? end + 1 : NULL;
	}
	return out->n;
}

void srv_config_usage(FILE *out)
{
	fprintf(out,
	        "Usage:\n\n  metastore [flags]\n\n"
	        "  metastore " MS_VERSION " — an etcd v3 API server (etcd %s compatible).\n\n"
	        "Flags are etcd's, with etcd's defaults; each may also be given as ETCD_<FLAG>\n"
	        "(e.g. ETCD_DATA_DIR). [later]: accepted, acted upon by the cluster work;\n"
	        "[no effect]: accepted, without meaning here; [refused]: only the default is "
	        "accepted.\n\n",
	        MS_ETCD_VERSION);
	for (size_t i = 0; i < NFLAGS; i++) {
		const flag_def *f = &flags[i];
		if (f->kind == F_IGNORED)
			continue;
		fprintf(out, "  --%s", f->name);
		if (f->def)
			fprintf(out, " '%s'", f->def);
		static const char *const tag[] = {"", " [later]", " [no effect]", " [refused]"};
		fprintf(out, "%s\n      %s\n", tag[f->use], f->help);
	}
	fprintf(out, "  -h, --help\n      Show this help.\n");
}
