/*
 * srv_config: metastore's command line, spelled as etcd 3.4's (--name, --data-dir,
 * --listen-client-urls, ...) with etcd's defaults, so a metastore member starts
 * from the same flags and ETCD_* environment variables as an etcd member.
 *
 * Syntax is etcd's (Go's "flag" package, which etcdmain uses): "-flag" or
 * "--flag"; "--flag=value" or "--flag value"; a boolean flag takes no separate
 * value ("--flag" means true, "--flag=false" to turn it off); "--" or the first
 * non-flag argument ends the flags and is then an error ("'x' is not a valid
 * flag"), as etcd has no positional arguments. Each flag --foo-bar not given on
 * the command line may come from ETCD_FOO_BAR (a non-empty value); the same
 * setting given both ways is an error, an ETCD_* variable that names no flag a
 * warning (pkg/flags.SetFlagsFromEnv).
 *
 * Every flag of `etcd --help` is accepted. Each is one of:
 *   - used by metastore: stored in a field below;
 *   - stored for the cluster work but not yet acted upon, or without meaning
 *     here (v2 API, pprof, log format, bbolt tuning...): accepted, and listed by
 *     srv_config_ignored() when given with a value other than its default, so
 *     main() can log that it has no effect;
 *   - bootstrap modes metastore lacks (--discovery, --discovery-srv, --proxy
 *     on|readonly): parsing fails with a one-line reason unless the flag
 *     carries its default (e.g. --proxy=off).
 *
 * --config-file FILE (or ETCD_CONFIG_FILE when that flag is absent) is etcd
 * 3.4's YAML file: the flags are still parsed (a bad one is still an error) but
 * then every setting comes from the file over the defaults, and no other ETCD_*
 * variable is read, as etcdmain does. Its keys are the flags' names, with the
 * TLS flags in two blocks, client-transport-security and
 * peer-transport-security (cert-file, key-file, client-cert-auth,
 * trusted-ca-file, auto-tls); each value must have the type etcd's Go field has
 * (a string, URL lists as one comma-separated string; true/false; an integer,
 * durations such as grpc-keepalive-min-time in nanoseconds; a list of strings
 * for cipher-suites and log-outputs); null keeps the default; unknown keys are
 * ignored with a warning. Each value then passes the same checks as the flag.
 *
 * TLS (the Security group, https:// and unixs:// URLs) is used: the flags are
 * stored below and checked here as far as no file has to be read (etcd's
 * messages: "TLS key/cert (--cert-file, --key-file) must be provided for client
 * url ... with HTTPS scheme", "cannot listen on TLS for ...: KeyFile and
 * CertFile are not presented", "AllowedCN and AllowedHostname are mutually
 * exclusive ...", "unexpected TLS cipher suite ..."); srv_tls reads and checks
 * the files at start.
 */
#ifndef METASTORE_SRV_CONFIG_H
#define METASTORE_SRV_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define SRV_MAX_URLS 16
/* Room for every flag of the table in srv_config.c (checked at compile time). */
#define SRV_CONFIG_MAX_FLAGS    160
#define SRV_CONFIG_MAX_WARNINGS 32

typedef struct srv_urls {
	size_t n;
	char *url[SRV_MAX_URLS];  /* as given, e.g. "http://localhost:2379" */
	char *addr[SRV_MAX_URLS]; /* host:port for gRPC, e.g. "localhost:2379" */
} srv_urls;

typedef struct srv_config {
	char *config_file; /* --config-file / ETCD_CONFIG_FILE: the YAML file read ("" = none) */

	/* Member. */
	char *name;                         /* --name "default" */
	char *data_dir;                     /* --data-dir, default "${name}.metastore" */
	char *wal_dir;                      /* --wal-dir "" (no effect: one RocksDB) */
	srv_urls listen_client;             /* --listen-client-urls */
	srv_urls advertise_client;          /* --advertise-client-urls */
	srv_urls listen_peer;               /* --listen-peer-urls */
	srv_urls initial_advertise_peer;    /* --initial-advertise-peer-urls */
	srv_urls listen_metrics;            /* --listen-metrics-urls (may be empty) */
	int64_t max_snapshots;              /* --max-snapshots 5 (0 = unlimited) */
	int64_t max_wals;                   /* --max-wals 5 (0 = unlimited) */
	int64_t snapshot_count;             /* --snapshot-count 10000 (etcd 3.6's default) */
	int64_t heartbeat_interval_ms;      /* --heartbeat-interval 100 */
	int64_t election_timeout_ms;        /* --election-timeout 1000 */
	bool initial_election_tick_advance; /* --initial-election-tick-advance true */
	int64_t quota_backend_bytes;        /* --quota-backend-bytes 0 (= etcd's 2 GiB) */
	int64_t max_request_bytes;          /* --max-request-bytes 1572864 */
	int64_t max_txn_ops;                /* --max-txn-ops 128 */
	int64_t max_concurrent_streams;     /* --max-concurrent-streams 4294967295 */
	int64_t grpc_keepalive_min_time_ms; /* --grpc-keepalive-min-time 5s */
	int64_t grpc_keepalive_interval_ms; /* --grpc-keepalive-interval 2h (0 = off) */
	int64_t grpc_keepalive_timeout_ms;  /* --grpc-keepalive-timeout 20s (0 = off) */

	/* Clustering. */
	char *initial_cluster;       /* default "${name}=${initial-advertise-peer-urls}" */
	char *initial_cluster_state; /* "new" | "existing" */
	char *initial_cluster_token; /* "etcd-cluster" */
	char *discovery;             /* --discovery "" (non-empty refused) */
	char *discovery_fallback;    /* "proxy" | "exit" */
	char *discovery_proxy;
	char *discovery_srv; /* non-empty refused */
	char *discovery_srv_name;
	bool strict_reconfig_check;      /* --strict-reconfig-check true */
	bool pre_vote;                   /* --pre-vote false (etcd 3.4) */
	bool enable_v2;                  /* --enable-v2 false: no v2 API here */
	char *auto_compaction_mode;      /* "periodic" | "revision" */
	char *auto_compaction_retention; /* "0" = off; hours, a duration, or revisions */
	bool force_new_cluster;          /* --force-new-cluster false */

	/* Security (srv_tls.h): "" = not given. */
	char *cert_file;                    /* --cert-file */
	char *key_file;                     /* --key-file */
	bool client_cert_auth;              /* --client-cert-auth */
	char *client_crl_file;              /* --client-crl-file */
	char *client_cert_allowed_hostname; /* --client-cert-allowed-hostname */
	char *trusted_ca_file;              /* --trusted-ca-file */
	bool auto_tls;                      /* --auto-tls */
	char *peer_cert_file;               /* --peer-cert-file */
	char *peer_key_file;                /* --peer-key-file */
	bool peer_client_cert_auth;         /* --peer-client-cert-auth */
	char *peer_trusted_ca_file;         /* --peer-trusted-ca-file */
	char *peer_cert_allowed_cn;         /* --peer-cert-allowed-cn */
	char *peer_cert_allowed_hostname;   /* --peer-cert-allowed-hostname */
	bool peer_auto_tls;                 /* --peer-auto-tls */
	char *peer_crl_file;                /* --peer-crl-file */
	char *cipher_suites;                /* --cipher-suites: Go's names, comma separated */
	bool peer_skip_client_san;          /* --experimental-peer-skip-client-san-verification */

	/* v2 proxy: only "off" is served. */
	char *proxy; /* "off" | "readonly" | "on" */
	int64_t proxy_failure_wait_ms, proxy_refresh_interval_ms, proxy_dial_timeout_ms,
	        proxy_write_timeout_ms, proxy_read_timeout_ms;

	/* Auth. */
	char *auth_token;        /* --auth-token "simple" | "jwt,pub-key=..,priv-key=..,sign-method=..,ttl=.." */
	int64_t bcrypt_cost;     /* --bcrypt-cost 10 */
	int64_t auth_token_ttl;  /* --auth-token-ttl 300 (seconds, simple tokens) */

	/* Logging and monitoring. */
	char *logger;      /* "zap" (default, etcd 3.5's) | "capnslog" */
	char *log_outputs; /* comma list, "default" */
	char *log_level;   /* debug|info|warn|error|panic|fatal; --debug = debug */
	bool enable_pprof;
	char *metrics; /* "basic" | "extensive" */

	/* Experimental / unsafe, stored for the cluster and storage work. */
	bool experimental_initial_corrupt_check;
	int64_t experimental_corrupt_check_time_ms;
	int64_t watch_progress_notify_ms; /* --experimental-watch-progress-notify-interval 10m */
	bool unsafe_no_fsync;

	/* metastore's own. */
	int grpc_threads; /* --grpc-threads 2 */

	/* Book-keeping (read through the functions below). */
	unsigned char given_[SRV_CONFIG_MAX_FLAGS];  /* 1 command line, 2 environment, 3 file */
	unsigned char nondef_[SRV_CONFIG_MAX_FLAGS]; /* given with a non-default value */
	size_t n_warnings_;
	char *warnings_[SRV_CONFIG_MAX_WARNINGS];
} srv_config;

/* Outcomes of srv_config_parse besides 0 (run the server). */
enum { SRV_CONFIG_HELP = 1, SRV_CONFIG_VERSION = 2, SRV_CONFIG_ERROR = -1 };

/*
 * srv_config_parse - fill @cfg from argv and the process environment (ETCD_*),
 * with etcd's defaults for what is absent, and validate it as etcd does.
 * Returns 0, SRV_CONFIG_HELP / SRV_CONFIG_VERSION (caller prints and exits 0), or
 * SRV_CONFIG_ERROR with a one-line reason in @err: etcd's own text where etcd has
 * one ("flag provided but not defined: -x", "invalid value \"x\" for flag -y:
 * parse error", "--election-timeout[400ms] should be at least as 5 times as
 * --heartbeat-interval[100ms]", a conflicting ETCD_* variable, ...), else a
 * metastore sentence (a mode that is not supported, a configuration file that
 * cannot be read: "config file PATH: line N: key \"K\": expected an integer,
 * found a string", ...). @cfg is always
 * initialised: call srv_config_free() whatever the outcome. Strings in @cfg are
 * owned by @cfg.
 */
int srv_config_parse(srv_config *cfg, int argc, char **argv, char *err, size_t errlen);

/* srv_config_parse_env - as srv_config_parse, with the environment taken from
 * @envp (NULL-terminated "KEY=value" strings) instead of the process's. */
int srv_config_parse_env(srv_config *cfg, int argc, char **argv, char *const *envp, char *err,
                         size_t errlen);

void srv_config_free(srv_config *cfg);

/* srv_config_usage - the --help text. */
void srv_config_usage(FILE *out);

/* srv_config_parse_bool - Go's strconv.ParseBool ("1", "t", "T", "true",
 * "TRUE", "True" and their false forms). 0, or -1 for anything else. */
int srv_config_parse_bool(const char *s, bool *out);

/*
 * srv_config_parse_num - Go's strconv.ParseInt (@is_signed) / ParseUint with
 * base 0 (prefixes 0x, 0o, 0b, a leading 0 for octal; underscores after a
 * prefix); @max bounds the magnitude. 0, -1 "invalid syntax", -2 "value out
 * of range".
 */
int srv_config_parse_num(const char *s, bool is_signed, uint64_t max, int64_t *out);

/*
 * srv_config_parse_duration_ms - Go's time.ParseDuration ("1m", "1.5s",
 * "300ms", "2h45m", "0") in milliseconds, rounded toward zero. 0, or -1 when
 * @s is not a duration.
 */
int srv_config_parse_duration_ms(const char *s, int64_t *out_ms);

/*
 * Flags of the subcommands (snapshot, gateway), parsed as Go's pflag does:
 * "-name" or "--name", the value as "--name=v" or as the next argument.
 * srv_flag_value: true when argv[*i] is flag @name, with *@out its value (and
 * *@i moved past a separate value argument). srv_flag_bool: true when @arg is
 * bool flag @name ("--name", "--name=true", "--name=false"), with *@out set.
 */
bool srv_flag_value(int argc, char **argv, int *i, const char *name, const char **out);
bool srv_flag_bool(const char *arg, const char *name, bool *out);

/*
 * srv_config_ignored - names (without dashes, e.g. "enable-pprof") of the flags
 * that were given, on the command line or as ETCD_*, with a value other than
 * their default, and that metastore accepts without acting on them. Stores up to
 * @cap pointers to static strings in @names; returns how many such flags there
 * are (may exceed @cap). main() logs one line per name, e.g.
 * "flag --enable-pprof has no effect in metastore (ignored)".
 */
size_t srv_config_ignored(const srv_config *cfg, const char **names, size_t cap);

/*
 * srv_config_warnings - the warnings parsing produced, one line each, as etcd
 * prints them: "unrecognized environment variable ETCD_FOO=bar", "recognized and
 * used environment variable ETCD_NAME=n1", "flag \"-v\" is no longer supported -
 * ignoring.". Stores up to @cap pointers (owned by @cfg) and returns the count.
 */
size_t srv_config_warnings(const srv_config *cfg, const char **lines, size_t cap);

/* srv_config_is_set - whether flag @name (no dashes) was given on the command
 * line, through its ETCD_* variable, or in the configuration file. Unknown
 * names: false. */
bool srv_config_is_set(const srv_config *cfg, const char *name);

/* srv_config_url_secure - whether @url is a TLS URL (https:// or unixs://). */
bool srv_config_url_secure(const char *url);

/*
 * srv_config_compaction_retention - --auto-compaction-retention as etcd reads
 * it: in periodic mode the retention in milliseconds (a bare integer is
 * hours: "1" = 1h; else a Go duration, "30m", "2s"), in revision mode the
 * number of revisions to keep. 0 = auto-compaction off. Returns 0, or -1 for
 * a value etcd refuses ("error parsing CompactionRetention").
 */
int srv_config_compaction_retention(const srv_config *cfg, int64_t *out);

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
