/*
 * Unit tests for srv_config: etcd 3.4's flags and defaults, Go flag syntax
 * (booleans, both dashes, "--"), ETCD_* variables and their conflicts, etcd's
 * validation texts, the no-effect list, and refusal of TLS/auth settings unless
 * they carry their defaults.
 */
#include <criterion/criterion.h>
#include <string.h>

#include "server/srv_config.h"

#define ARGV(...)                              \
	(char *[])                             \
	{                                      \
		"metastore", __VA_ARGS__, NULL \
	}
#define ARGC(a) ((int)(sizeof(a) / sizeof(a[0])) - 1)

static char *const no_env[] = {NULL};

/* Parse @argv (NULL-terminated) with environment @env; returns the outcome. */
static int parse(srv_config *c, char **argv, char *const *env, char *err, size_t errlen)
{
	int argc = 0;
	while (argv[argc])
		argc++;
	return srv_config_parse_env(c, argc, argv, env, err, errlen);
}

/* Expect @argv to fail with @want inside the message. */
static void expect_error(char **argv, char *const *env, const char *want)
{
	srv_config c;
	char err[512];
	int rc = parse(&c, argv, env, err, sizeof(err));
	cr_expect_eq(rc, SRV_CONFIG_ERROR, "%s: expected an error containing \"%s\"", argv[1],
	             want);
	cr_expect(strstr(err, want) != NULL, "error \"%s\" lacks \"%s\"", err, want);
	cr_expect(strchr(err, '\n') == NULL, "one line: %s", err);
	srv_config_free(&c);
}

static void expect_ok(char **argv, char *const *env)
{
	srv_config c;
	char err[512];
	int rc = parse(&c, argv, env, err, sizeof(err));
	cr_expect_eq(rc, 0, "%s: %s", argv[1], err);
	srv_config_free(&c);
}

Test(config, etcd_defaults)
{
	srv_config c;
	char err[256];
	char *argv[] = {"metastore", NULL};
	cr_assert_eq(parse(&c, argv, no_env, err, sizeof(err)), 0, "%s", err);
	cr_assert_str_eq(c.name, "default");
	cr_assert_str_eq(c.data_dir, "default.metastore");
	cr_assert_eq(c.listen_client.n, 1);
	cr_assert_str_eq(c.listen_client.url[0], "http://localhost:2379");
	cr_assert_str_eq(c.listen_client.addr[0], "localhost:2379");
	cr_assert_str_eq(c.advertise_client.url[0], "http://localhost:2379");
	cr_assert_str_eq(c.listen_peer.addr[0], "localhost:2380");
	cr_assert_eq(c.listen_metrics.n, 0);
	cr_assert_str_eq(c.initial_cluster, "default=http://localhost:2380");
	cr_assert_str_eq(c.initial_cluster_token, "etcd-cluster");
	cr_assert_str_eq(c.initial_cluster_state, "new");
	cr_assert_eq(c.max_request_bytes, 1572864);
	cr_assert_eq(c.max_txn_ops, 128);
	cr_assert_eq(c.heartbeat_interval_ms, 100);
	cr_assert_eq(c.election_timeout_ms, 1000);
	cr_assert_eq(c.snapshot_count, 10000); /* etcd 3.6's default, not 3.4's 100000 */
	cr_assert_eq(c.max_snapshots, 5);
	cr_assert_eq(c.max_wals, 5);
	cr_assert_eq(c.quota_backend_bytes, 0);
	cr_assert_eq(c.max_concurrent_streams, 4294967295LL);
	cr_assert_eq(c.grpc_keepalive_min_time_ms, 5000);
	cr_assert_eq(c.grpc_keepalive_interval_ms, 2 * 3600 * 1000);
	cr_assert_eq(c.grpc_keepalive_timeout_ms, 20000);
	cr_assert(c.strict_reconfig_check);
	cr_assert(c.initial_election_tick_advance);
	cr_assert(!c.pre_vote);
	cr_assert(!c.enable_v2);
	cr_assert(!c.force_new_cluster);
	cr_assert(!c.experimental_initial_corrupt_check);
	cr_assert(!c.enable_pprof);
	cr_assert_str_eq(c.auto_compaction_mode, "periodic");
	cr_assert_str_eq(c.auto_compaction_retention, "0");
	cr_assert_str_eq(c.logger, "zap");
	cr_assert_str_eq(c.log_outputs, "default");
	cr_assert_str_eq(c.log_level, "info");
	cr_assert_str_eq(c.metrics, "basic");
	cr_assert_str_eq(c.proxy, "off");
	cr_assert_str_eq(c.discovery, "");
	cr_assert_str_eq(c.discovery_fallback, "proxy");
	cr_assert_eq(c.proxy_failure_wait_ms, 5000);
	cr_assert_eq(c.proxy_refresh_interval_ms, 30000);
	cr_assert_eq(c.grpc_threads, 2);
	const char *names[8];
	cr_assert_eq(srv_config_ignored(&c, names, 8), 0);
	cr_assert(!srv_config_is_set(&c, "name"));
	srv_config_free(&c);
}

Test(config, both_spellings_and_derived_values)
{
	srv_config c;
	char err[256];
	char **argv =
	        ARGV("--name", "n1", "--listen-client-urls=http://127.0.0.1:1,http://127.0.0.1:2",
	             "-advertise-client-urls", "http://127.0.0.1:1", "-initial-advertise-peer-urls",
	             "http://127.0.0.1:3", "--max-txn-ops=7");
	cr_assert_eq(parse(&c, argv, no_env, err, sizeof(err)), 0, "%s", err);
	cr_assert_str_eq(c.data_dir, "n1.metastore");
	cr_assert_eq(c.listen_client.n, 2);
	cr_assert_str_eq(c.listen_client.addr[1], "127.0.0.1:2");
	cr_assert_str_eq(c.initial_cluster, "n1=http://127.0.0.1:3");
	cr_assert_eq(c.max_txn_ops, 7);
	cr_assert(srv_config_is_set(&c, "name"));
	cr_assert(!srv_config_is_set(&c, "data-dir"));
	srv_urls u;
	cr_assert_eq(srv_config_peer_urls_of("a=http://x:1,b=http://y:2,a=http://z:3", "a", &u), 2);
	cr_assert_str_eq(u.url[1], "http://z:3");
	srv_urls_free(&u);
	srv_config_free(&c);
}

/* The command line etcd's e2e suite gives each member (cluster_test.go). */
Test(config, e2e_member_command_line)
{
	srv_config c;
	char err[256];
	char **argv =
	        ARGV("--name", "testname0", "--listen-client-urls", "http://localhost:20000",
	             "--advertise-client-urls", "http://localhost:20000", "--listen-peer-urls",
	             "http://localhost:20001", "--initial-advertise-peer-urls",
	             "http://localhost:20001", "--initial-cluster-token", "new", "--data-dir",
	             "/tmp/testname0.etcd123", "--snapshot-count", "100000",
	             "--quota-backend-bytes", "8388608", "--strict-reconfig-check=false",
	             "--enable-v2", "--experimental-initial-corrupt-check", "--listen-metrics-urls",
	             "http://localhost:20002", "--max-concurrent-streams", "1", "--initial-cluster",
	             "testname0=http://localhost:20001,testname1=http://localhost:20006");
	cr_assert_eq(parse(&c, argv, no_env, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(c.snapshot_count, 100000);
	cr_assert_eq(c.quota_backend_bytes, 8388608);
	cr_assert(!c.strict_reconfig_check);
	cr_assert(c.enable_v2);
	cr_assert(c.experimental_initial_corrupt_check);
	cr_assert_eq(c.listen_metrics.n, 1);
	cr_assert_str_eq(c.listen_metrics.addr[0], "localhost:20002");
	cr_assert_eq(c.max_concurrent_streams, 1);
	cr_assert_str_eq(c.initial_cluster_token, "new");
	/* Given, non-default, and not acted upon today: main logs them. */
	const char *names[16];
	size_t n = srv_config_ignored(&c, names, 16);
	bool v2 = false, snap = false, name = false;
	for (size_t i = 0; i < n && i < 16; i++) {
		v2 = v2 || strcmp(names[i], "enable-v2") == 0;
		snap = snap || strcmp(names[i], "snapshot-count") == 0; /* used now */
		name = name || strcmp(names[i], "name") == 0;
	}
	/* --enable-v2 serves /v2/keys (server/srv_v2.c): acted upon, not listed */
	cr_assert(!v2 && !snap && !name, "ignored list: %zu names", n);
	srv_config_free(&c);
}

Test(config, boolean_forms)
{
	srv_config c;
	char err[256];
	char **a1 =
	        ARGV("--pre-vote", "--force-new-cluster=true", "-strict-reconfig-check=0",
	             "--initial-election-tick-advance=F", "--enable-pprof=T", "--enable-v2=false");
	cr_assert_eq(parse(&c, a1, no_env, err, sizeof(err)), 0, "%s", err);
	cr_assert(c.pre_vote && c.force_new_cluster && c.enable_pprof);
	cr_assert(!c.strict_reconfig_check && !c.initial_election_tick_advance && !c.enable_v2);
	srv_config_free(&c);
	/* A boolean takes no separate argument: "false" is then a stray argument. */
	expect_error(ARGV("--pre-vote", "false"), no_env, "'false' is not a valid flag");
	expect_error(ARGV("--pre-vote=maybe"), no_env,
	             "invalid boolean value \"maybe\" for -pre-vote: parse error");
}

Test(config, numbers_and_durations)
{
	srv_config c;
	char err[256];
	char **a1 = ARGV("--snapshot-count=0x10", "--max-wals", "0", "--quota-backend-bytes=-1",
	                 "--grpc-keepalive-min-time=1.5s", "--grpc-keepalive-interval=0",
	                 "--grpc-keepalive-timeout=1h2m", "--experimental-corrupt-check-time=250ms",
	                 "--max-snapshots=0o17");
	cr_assert_eq(parse(&c, a1, no_env, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(c.snapshot_count, 16);
	cr_assert_eq(c.max_wals, 0);
	cr_assert_eq(c.max_snapshots, 15);
	cr_assert_eq(c.quota_backend_bytes, -1);
	cr_assert_eq(c.grpc_keepalive_min_time_ms, 1500);
	cr_assert_eq(c.grpc_keepalive_interval_ms, 0);
	cr_assert_eq(c.grpc_keepalive_timeout_ms, 3720000);
	cr_assert_eq(c.experimental_corrupt_check_time_ms, 250);
	srv_config_free(&c);
	expect_error(ARGV("--max-request-bytes", "lots"), no_env,
	             "invalid value \"lots\" for flag -max-request-bytes: parse error");
	expect_error(ARGV("--snapshot-count=-1"), no_env,
	             "invalid value \"-1\" for flag -snapshot-count: parse error");
	expect_error(ARGV("--max-concurrent-streams=4294967296"), no_env,
	             "invalid value \"4294967296\" for flag -max-concurrent-streams: value out of "
	             "range");
	expect_error(ARGV("--grpc-keepalive-min-time=5"), no_env,
	             "invalid value \"5\" for flag -grpc-keepalive-min-time: parse error");
	expect_error(ARGV("--grpc-keepalive-timeout=3x"), no_env, "parse error");
}

Test(config, go_flag_syntax_errors)
{
	expect_error(ARGV("--no-such-flag=1"), no_env,
	             "flag provided but not defined: -no-such-flag");
	expect_error(ARGV("--name"), no_env, "flag needs an argument: -name");
	expect_error(ARGV("---name=x"), no_env, "bad flag syntax: ---name=x");
	expect_error(ARGV("serve"), no_env, "'serve' is not a valid flag");
	expect_error(ARGV("--name=a", "--", "--name=b"), no_env, "'--name=b' is not a valid flag");
	srv_config c;
	char err[256];
	cr_assert_eq(parse(&c, ARGV("--version"), no_env, err, sizeof(err)), SRV_CONFIG_VERSION);
	srv_config_free(&c);
	cr_assert_eq(parse(&c, ARGV("-h"), no_env, err, sizeof(err)), SRV_CONFIG_HELP);
	srv_config_free(&c);
	cr_assert_eq(parse(&c, ARGV("--help"), no_env, err, sizeof(err)), SRV_CONFIG_HELP);
	srv_config_free(&c);
	/* --version=false is no request for the version. */
	cr_assert_eq(parse(&c, ARGV("--version=false"), no_env, err, sizeof(err)), 0, "%s", err);
	srv_config_free(&c);
}

Test(config, etcd_validation_texts)
{
	expect_error(ARGV("--initial-cluster-state", "maybe"), no_env,
	             "invalid value \"maybe\" for flag -initial-cluster-state: invalid value");
	expect_error(ARGV("--proxy=sideways"), no_env,
	             "invalid value \"sideways\" for flag -proxy: invalid value");
	expect_error(ARGV("--election-timeout=400"), no_env,
	             "--election-timeout[400ms] should be at least as 5 times as "
	             "--heartbeat-interval[100ms]");
	expect_error(ARGV("--heartbeat-interval=0"), no_env,
	             "--heartbeat-interval must be >0 (set to 0ms)");
	expect_error(ARGV("--election-timeout=0"), no_env,
	             "--election-timeout must be >0 (set to 0ms)");
	expect_error(
	        ARGV("--election-timeout=60000"), no_env,
	        "--election-timeout[60000ms] is too long, and should be set less than 50000ms");
	expect_ok(ARGV("--heartbeat-interval=10", "--election-timeout=50"), no_env);
	expect_error(ARGV("--auto-compaction-mode=hourly"), no_env,
	             "unknown auto-compaction-mode \"hourly\"");
	expect_error(ARGV("--logger=syslog"), no_env, "unknown logger option \"syslog\"");
	expect_error(ARGV("--log-level=verbose"), no_env, "unknown level \"verbose\"");
	char *const env_lvl[] = {"ETCD_LOG_LEVEL=loud", NULL};
	expect_error(ARGV("--name=x"), env_lvl, "unknown level \"loud\"");
	expect_error(
	        ARGV("--listen-client-urls", "http://127.0.0.1:2379"), no_env,
	        "--advertise-client-urls is required when --listen-client-urls is set explicitly");
	expect_error(ARGV("--listen-client-urls", "localhost:2379", "--advertise-client-urls",
	                  "http://x:1"),
	             no_env, "URL scheme must be http, https, unix, or unixs: localhost:2379");
	expect_error(ARGV("--listen-peer-urls", "http://localhost"), no_env,
	             "URL address does not have the form \"host:port\": http://localhost");
	expect_error(ARGV("--listen-peer-urls", "http://localhost:2380/x"), no_env,
	             "URL must not contain a path: http://localhost:2380/x");
	expect_error(ARGV("--listen-peer-urls", "http://example.com:2380"), no_env,
	             "expected IP in URL for binding (http://example.com:2380)");
	expect_ok(ARGV("--listen-peer-urls", "http://[::1]:2380"), no_env);
	expect_error(ARGV("--initial-advertise-peer-urls", "http://:2380"), no_env,
	             "--initial-advertise-peer-urls \":2380\" must be \"host:port\" (unexpected "
	             "empty host (http://:2380))");
	expect_error(ARGV("--experimental-enable-lease-checkpoint-persist"), no_env,
	             "setting experimental-enable-lease-checkpoint-persist requires "
	             "experimental-enable-lease-checkpoint");
	expect_error(ARGV("--discovery", "http://d.example/x", "--initial-cluster",
	                  "a=http://1.2.3.4:2380"),
	             no_env, "multiple discovery or bootstrap flags are set");
	expect_error(ARGV("--max-txn-ops=0"), no_env, "must be positive");
}

Test(config, tls_flags_stored_and_checked)
{
	srv_config c;
	char err[512];
	char **a = ARGV("--cert-file", "/x/server.crt", "--key-file=/x/server.key",
	                "--trusted-ca-file=/x/ca.crt", "--client-cert-auth", "--client-crl-file=/x/c.crl",
	                "--client-cert-allowed-hostname=client.example", "--auto-tls",
	                "--peer-cert-file=/p/c", "--peer-key-file=/p/k", "--peer-trusted-ca-file=/p/ca",
	                "--peer-client-cert-auth", "--peer-crl-file=/p/crl",
	                "--peer-cert-allowed-cn=etcd", "--peer-auto-tls",
	                "--cipher-suites=TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
	                "--experimental-peer-skip-client-san-verification",
	                "--listen-client-urls=https://127.0.0.1:2379,http://127.0.0.1:2381",
	                "--advertise-client-urls=https://127.0.0.1:2379",
	                "--listen-peer-urls=https://127.0.0.1:2380",
	                "--initial-advertise-peer-urls=https://127.0.0.1:2380");
	cr_assert_eq(parse(&c, a, no_env, err, sizeof(err)), 0, "%s", err);
	cr_expect_str_eq(c.cert_file, "/x/server.crt");
	cr_expect_str_eq(c.key_file, "/x/server.key");
	cr_expect_str_eq(c.trusted_ca_file, "/x/ca.crt");
	cr_expect(c.client_cert_auth && c.auto_tls && c.peer_client_cert_auth && c.peer_auto_tls);
	cr_expect_str_eq(c.client_crl_file, "/x/c.crl");
	cr_expect_str_eq(c.client_cert_allowed_hostname, "client.example");
	cr_expect_str_eq(c.peer_cert_file, "/p/c");
	cr_expect_str_eq(c.peer_key_file, "/p/k");
	cr_expect_str_eq(c.peer_trusted_ca_file, "/p/ca");
	cr_expect_str_eq(c.peer_crl_file, "/p/crl");
	cr_expect_str_eq(c.peer_cert_allowed_cn, "etcd");
	cr_expect_str_eq(c.cipher_suites, "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256");
	cr_expect(c.peer_skip_client_san);
	cr_expect_str_eq(c.initial_cluster, "default=https://127.0.0.1:2380");
	const char *names[8];
	cr_expect_eq(srv_config_ignored(&c, names, 8), 0, "TLS flags are acted upon");
	srv_config_free(&c);

	/* Every flag from the environment too. */
	char *const env[] = {"ETCD_PEER_AUTO_TLS=true", "ETCD_CLIENT_CERT_AUTH=1",
	                     "ETCD_PEER_CERT_ALLOWED_HOSTNAME=h.example", NULL};
	cr_assert_eq(parse(&c, ARGV("--name=x"), env, err, sizeof(err)), 0, "%s", err);
	cr_expect(c.peer_auto_tls && c.client_cert_auth);
	cr_expect_str_eq(c.peer_cert_allowed_hostname, "h.example");
	srv_config_free(&c);

	/* unix:// and unixs:// URLs are accepted as etcd accepts them. */
	expect_ok(ARGV("--listen-client-urls=unix://localhost:2379",
	               "--advertise-client-urls=unix://localhost:2379",
	               "--listen-peer-urls=unix://localhost:2380",
	               "--initial-advertise-peer-urls=unix://localhost:2380"),
	          no_env);
	expect_ok(ARGV("--listen-client-urls=unixs://localhost:2379",
	               "--advertise-client-urls=unixs://localhost:2379", "--auto-tls"),
	          no_env);
	/* Defaults pass: tools that spell every flag out keep working. */
	expect_ok(ARGV("--auto-tls=false", "--client-cert-auth=false", "--peer-auto-tls=false",
	               "--peer-client-cert-auth=false", "--cert-file=", "--key-file=",
	               "--trusted-ca-file=", "--cipher-suites="),
	          no_env);
}

Test(config, tls_errors_are_etcds)
{
	expect_error(ARGV("--listen-client-urls=https://127.0.0.1:2379",
	                  "--advertise-client-urls=https://127.0.0.1:2379"),
	             no_env,
	             "TLS key/cert (--cert-file, --key-file) must be provided for client url "
	             "https://127.0.0.1:2379 with HTTPS scheme");
	expect_error(ARGV("--listen-client-urls=unixs://localhost:2379",
	                  "--advertise-client-urls=unixs://localhost:2379"),
	             no_env, "must be provided for client url unixs://localhost:2379 with HTTPS");
	expect_error(ARGV("--listen-peer-urls=https://127.0.0.1:2380",
	                  "--initial-advertise-peer-urls=https://127.0.0.1:2380"),
	             no_env,
	             "cannot listen on TLS for 127.0.0.1:2380: KeyFile and CertFile are not presented");
	expect_ok(ARGV("--listen-peer-urls=https://127.0.0.1:2380",
	               "--initial-advertise-peer-urls=https://127.0.0.1:2380", "--peer-auto-tls"),
	          no_env);
	expect_error(ARGV("--peer-cert-file=/p/c", "--peer-key-file=/p/k",
	                  "--peer-cert-allowed-cn=a", "--peer-cert-allowed-hostname=b"),
	             no_env,
	             "AllowedCN and AllowedHostname are mutually exclusive (cn=\"a\", hostname=\"b\")");
	/* Auto-TLS alone replaces the peer TLSInfo: the allowed names are dropped. */
	expect_ok(ARGV("--peer-auto-tls", "--peer-cert-allowed-cn=a",
	               "--peer-cert-allowed-hostname=b"),
	          no_env);
	expect_error(ARGV("--cipher-suites=FOO,TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"), no_env,
	             "unexpected TLS cipher suite \"FOO\"");
	expect_error(ARGV("--cert-file=/x/c"), no_env, "--cert-file and --key-file must both be given");
	expect_error(ARGV("--peer-key-file=/x/k"), no_env,
	             "--peer-cert-file and --peer-key-file must both be given");
	/* one port for both schemes, as etcd (srv_listen tells them apart) */
	expect_ok(ARGV("--listen-client-urls=http://127.0.0.1:2379,https://127.0.0.1:2379",
	               "--advertise-client-urls=http://127.0.0.1:2379", "--auto-tls"),
	          no_env);
	char *const env[] = {"ETCD_CIPHER_SUITES=BAR", NULL};
	expect_error(ARGV("--name=x"), env, "unexpected TLS cipher suite \"BAR\"");
}

Test(config, modes_refused_unless_default)
{
	/* Auth flags are served (the token provider checks jwt options at start). */
	expect_ok(ARGV("--auth-token=jwt,pub-key=a,priv-key=b", "--auth-token-ttl=10",
	               "--bcrypt-cost=4"),
	          no_env);
	expect_error(ARGV("--bcrypt-cost=x"), no_env, "invalid value \"x\" for flag -bcrypt-cost");
	expect_error(ARGV("--discovery-srv=example.com"), no_env,
	             "DNS discovery is not supported yet");
	expect_error(ARGV("--proxy=on"), no_env, "the v2 proxy is not supported");
	/* --config-file is read (test_config_file.c); a missing file is an error. */
	expect_error(ARGV("--config-file=/nonexistent/etcd.yml"), no_env,
	             "config file open /nonexistent/etcd.yml");
	/* Defaults pass: tools that spell every flag out keep working. */
	expect_ok(ARGV("--auth-token=simple", "--auth-token-ttl=300", "--proxy=off", "--discovery=",
	               "--config-file="),
	          no_env);
}

Test(config, environment_variables)
{
	srv_config c;
	char err[512];
	char *const env[] = {"PATH=/bin",
	                     "ETCD_NAME=envname",
	                     "ETCD_SNAPSHOT_COUNT=42",
	                     "ETCD_PRE_VOTE=true",
	                     "ETCD_UNSUPPORTED_ARCH=amd64",
	                     "ETCD_MAX_TXN_OPS=",
	                     NULL};
	cr_assert_eq(parse(&c, ARGV("--max-wals=3"), env, err, sizeof(err)), 0, "%s", err);
	cr_assert_str_eq(c.name, "envname");
	cr_assert_str_eq(c.data_dir, "envname.metastore");
	cr_assert_eq(c.snapshot_count, 42);
	cr_assert(c.pre_vote);
	cr_assert_eq(c.max_wals, 3);
	cr_assert_eq(c.max_txn_ops, 128); /* empty: not used */
	cr_assert(srv_config_is_set(&c, "name"));
	const char *w[16];
	size_t n = srv_config_warnings(&c, w, 16);
	bool used = false, unrec = false;
	for (size_t i = 0; i < n && i < 16; i++) {
		used = used ||
		       strcmp(w[i], "recognized and used environment variable ETCD_NAME=envname") ==
		               0;
		unrec = unrec ||
		        strcmp(w[i],
		               "unrecognized environment variable ETCD_UNSUPPORTED_ARCH=amd64") ==
		                0;
	}
	cr_assert(used && unrec, "%zu warnings", n);
	srv_config_free(&c);

	/* The command line wins over nothing: both ways is etcd's fatal conflict. */
	char *const env2[] = {"ETCD_NAME=envname", NULL};
	expect_error(ARGV("--name=cli"), env2,
	             "conflicting environment variable \"ETCD_NAME\" is shadowed by corresponding "
	             "command-line flag "
	             "(either unset environment variable or disable flag)");
	char *const env3[] = {"ETCD_MAX_TXN_OPS=many", NULL};
	expect_error(ARGV("--name=x"), env3,
	             "invalid value \"many\" for ETCD_MAX_TXN_OPS: parse error");
	char *const env4[] = {"ETCD_CERT_FILE=/x.crt", NULL};
	expect_error(ARGV("--name=x"), env4, "--cert-file and --key-file must both be given");
	char *const env5[] = {"ETCD_ELECTION_TIMEOUT=300", NULL};
	expect_error(ARGV("--name=x"), env5,
	             "--election-timeout[300ms] should be at least as 5 times");
}

Test(config, ignored_and_no_effect_flags)
{
	srv_config c;
	char err[256];
	char **a =
	        ARGV("--enable-pprof", "--logger=zap", "--log-outputs=stderr",
	             "--metrics=extensive", "--cors=*", "--wal-dir=/w", "--v",
	             "--peer-heartbeat-interval=5", "--max-snapshots=5", "--enable-v2=false",
	             "--backend-batch-limit=10", "--experimental-backend-bbolt-freelist-type=map");
	cr_assert_eq(parse(&c, a, no_env, err, sizeof(err)), 0, "%s", err);
	const char *names[32];
	size_t n = srv_config_ignored(&c, names, 32);
	const char *want[] = {"enable-pprof",
	                      "metrics",
	                      "wal-dir",
	                      "backend-batch-limit",
	                      "experimental-backend-bbolt-freelist-type"};
	cr_assert_eq(n, sizeof(want) / sizeof(want[0]), "%zu", n);
	for (size_t i = 0; i < n; i++) {
		bool found = false;
		for (size_t j = 0; j < sizeof(want) / sizeof(want[0]); j++)
			found = found || strcmp(names[i], want[j]) == 0;
		cr_assert(found, "unexpected %s", names[i]);
	}
	const char *w[8];
	size_t nw = srv_config_warnings(&c, w, 8);
	cr_assert_eq(nw, 2);
	cr_assert_str_eq(w[0], "flag \"-v\" is no longer supported - ignoring.");
	srv_config_free(&c);
	/* The derived cap: fewer slots than names still reports the count. */
	cr_assert_eq(parse(&c, a, no_env, err, sizeof(err)), 0);
	cr_assert_eq(srv_config_ignored(&c, names, 1), n);
	srv_config_free(&c);
	/* --debug means --log-level=debug. */
	cr_assert_eq(parse(&c, ARGV("--debug"), no_env, err, sizeof(err)), 0);
	cr_assert_str_eq(c.log_level, "debug");
	srv_config_free(&c);
	/* An explicit level wins over --debug; the logging flags are used (not listed). */
	cr_assert_eq(parse(&c, ARGV("--debug", "--log-level=warn"), no_env, err, sizeof(err)), 0);
	cr_assert_str_eq(c.log_level, "warn");
	cr_assert_eq(srv_config_ignored(&c, names, 32), 0);
	srv_config_free(&c);
}

Test(config, logging_flags_from_the_environment)
{
	srv_config c;
	char err[256];
	char *const env[] = {"ETCD_LOGGER=capnslog", "ETCD_LOG_LEVEL=error",
	                     "ETCD_LOG_OUTPUTS=stdout", NULL};
	cr_assert_eq(parse(&c, ARGV("--name=x"), env, err, sizeof(err)), 0, "%s", err);
	cr_assert_str_eq(c.logger, "capnslog");
	cr_assert_str_eq(c.log_level, "error");
	cr_assert_str_eq(c.log_outputs, "stdout");
	srv_config_free(&c);
	char *const env2[] = {"ETCD_DEBUG=true", NULL};
	cr_assert_eq(parse(&c, ARGV("--name=x"), env2, err, sizeof(err)), 0, "%s", err);
	cr_assert_str_eq(c.log_level, "debug");
	srv_config_free(&c);
}

Test(config, url_lists)
{
	srv_config c;
	char err[256];
	char **a = ARGV("--listen-client-urls",
	                "http://127.0.0.1:1, http://127.0.0.1:1,http://[::1]:3",
	                "--advertise-client-urls", "http://h:1", "--listen-peer-urls", "");
	cr_assert_eq(parse(&c, a, no_env, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(c.listen_client.n, 2); /* unique, trimmed */
	cr_assert_str_eq(c.listen_client.addr[1], "[::1]:3");
	cr_assert_str_eq(c.listen_peer.url[0], "http://localhost:2380"); /* "" keeps the list */
	srv_config_free(&c);
}

Test(config, usage_lists_every_flag)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);
	srv_config_usage(f);
	fclose(f);
	const char *some[] = {"--snapshot-count '10000'",
	                      "--strict-reconfig-check 'true'",
	                      "--auto-tls",
	                      "--proxy-read-timeout",
	                      "--experimental-warning-apply-duration",
	                      "--force-new-cluster",
	                      "--listen-metrics-urls",
	                      "--log-level 'info'"};
	for (size_t i = 0; i < sizeof(some) / sizeof(some[0]); i++)
		cr_expect(strstr(buf, some[i]) != NULL, "usage lacks %s", some[i]);
	free(buf);
}

/* The subcommands' flag helpers (snapshot restore, gateway start). */
Test(config, subcommand_flags_and_durations)
{
	char **argv = ARGV("--listen-addr", "a:1", "-endpoints=e:2", "--retry-delay",
	                   "--insecure-discovery", "--debug=false", "--name");
	int argc = 8, i = 1;
	const char *v = NULL;
	cr_assert(srv_flag_value(argc, argv, &i, "listen-addr", &v));
	cr_assert_str_eq(v, "a:1");
	cr_assert_eq(i, 2, "moved past the separate value");
	i = 3;
	cr_assert(srv_flag_value(argc, argv, &i, "endpoints", &v));
	cr_assert_str_eq(v, "e:2");
	cr_assert_eq(i, 3);
	cr_assert(!srv_flag_value(argc, argv, &i, "end", &v), "a prefix is not the flag");
	i = 7;
	cr_assert(!srv_flag_value(argc, argv, &i, "name", &v), "no value after the last flag");
	bool b = false;
	cr_assert(srv_flag_bool(argv[5], "insecure-discovery", &b) && b);
	cr_assert(srv_flag_bool(argv[6], "debug", &b) && !b);
	cr_assert(!srv_flag_bool(argv[6], "deb", &b));
	cr_assert(!srv_flag_bool("debug", "debug", &b), "not a flag");

	int64_t ms = -1;
	cr_assert_eq(srv_config_parse_duration_ms("1m", &ms), 0);
	cr_assert_eq(ms, 60000);
	cr_assert_eq(srv_config_parse_duration_ms("1.5s", &ms), 0);
	cr_assert_eq(ms, 1500);
	cr_assert_eq(srv_config_parse_duration_ms("2h45m", &ms), 0);
	cr_assert_eq(ms, 9900000);
	cr_assert_eq(srv_config_parse_duration_ms("0", &ms), 0);
	cr_assert_eq(ms, 0);
	cr_assert_eq(srv_config_parse_duration_ms("5", &ms), -1, "a unit is needed");
	cr_assert_eq(srv_config_parse_duration_ms("5x", &ms), -1);
	cr_assert_eq(srv_config_parse_duration_ms("", &ms), -1);
}
