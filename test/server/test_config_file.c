/*
 * Unit tests for srv_config's --config-file (etcd 3.4's YAML file, through
 * srv_yaml): a full file in the shape of etcd's sample, the two TLS blocks,
 * unknown keys, values of the wrong YAML type, bad YAML, a missing file, and
 * other flags and ETCD_* variables being ignored once a file is given. Files
 * are written to a temp dir.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "server/srv_config.h"

static char *const no_env[] = {NULL};
static char dir[] = "/tmp/ms-cfgfile-XXXXXX";

static void setup(void)
{
	cr_assert_not_null(mkdtemp(dir));
}

static void teardown(void)
{
	char cmd[64];
	snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
	cr_expect_eq(system(cmd), 0);
}

TestSuite(config_file, .init = setup, .fini = teardown);

/* Write @text to DIR/@name; returns the path (static buffer). */
static const char *write_file(const char *name, const char *text)
{
	static char path[128];
	snprintf(path, sizeof path, "%s/%s", dir, name);
	FILE *f = fopen(path, "w");
	cr_assert_not_null(f);
	fputs(text, f);
	fclose(f);
	return path;
}

/* Parse "metastore --config-file PATH [extra]" with @env. */
static int parse_file(srv_config *c, const char *path, const char *extra, char *const *env,
                      char *err, size_t errlen)
{
	char flag[160];
	snprintf(flag, sizeof flag, "--config-file=%s", path);
	char *argv[] = {"metastore", flag, (char *)extra, NULL};
	return srv_config_parse_env(c, extra ? 3 : 2, argv, env, err, errlen);
}

/* Expect the file @text to be refused with @want in a one-line message. */
static void expect_file_error(const char *text, const char *want)
{
	srv_config c;
	char err[512];
	const char *path = write_file("bad.yml", text);
	int rc = parse_file(&c, path, NULL, no_env, err, sizeof err);
	cr_expect_eq(rc, SRV_CONFIG_ERROR, "\"%s\": expected an error containing \"%s\"", text,
	             want);
	cr_expect(strstr(err, want) != NULL, "error \"%s\" lacks \"%s\"", err, want);
	cr_expect(strstr(err, path) != NULL || strstr(err, "--") != NULL,
	          "error \"%s\" names neither the file nor a flag", err);
	cr_expect(strchr(err, '\n') == NULL, "one line: %s", err);
	srv_config_free(&c);
}

static bool has_warning(const srv_config *c, const char *want)
{
	const char *lines[SRV_CONFIG_MAX_WARNINGS];
	size_t n = srv_config_warnings(c, lines, SRV_CONFIG_MAX_WARNINGS);
	for (size_t i = 0; i < n && i < SRV_CONFIG_MAX_WARNINGS; i++)
		if (strstr(lines[i], want))
			return true;
	return false;
}

/* etcd's sample (etcd.conf.yml.sample) has this shape: every key, many nulls,
 * quoted strings, a list, and the two TLS blocks. Values changed here and there. */
static const char full_sample[] =
        "# This is a configuration file.\n"
        "name: 'm1'\n"
        "data-dir: /tmp/m1.data\n"
        "wal-dir:\n"
        "snapshot-count: 5000\n"
        "heartbeat-interval: 50\n"
        "election-timeout: 500\n"
        "quota-backend-bytes: 0x100000\n"
        "listen-peer-urls: http://127.0.0.1:32380\n"
        "listen-client-urls: http://127.0.0.1:32379,http://127.0.0.1:32378\n"
        "max-snapshots: 5\n"
        "max-wals: 5\n"
        "cors:\n"
        "initial-advertise-peer-urls: http://127.0.0.1:32380\n"
        "advertise-client-urls: http://127.0.0.1:32379\n"
        "discovery:\n"
        "discovery-fallback: 'proxy'\n"
        "discovery-proxy:\n"
        "discovery-srv:\n"
        "initial-cluster:\n"
        "initial-cluster-token: 'tok-1'\n"
        "initial-cluster-state: 'new'\n"
        "strict-reconfig-check: false\n"
        "enable-v2: true\n"
        "enable-pprof: true\n"
        "proxy: 'off'\n"
        "proxy-failure-wait: 5000\n"
        "proxy-refresh-interval: 30000\n"
        "proxy-dial-timeout: 1000\n"
        "proxy-write-timeout: 5000\n"
        "proxy-read-timeout: 0\n"
        "client-transport-security:\n"
        "  cert-file:\n"
        "  key-file:\n"
        "  client-cert-auth: false\n"
        "  trusted-ca-file:\n"
        "  auto-tls: false\n"
        "peer-transport-security:\n"
        "  cert-file:\n"
        "  key-file:\n"
        "  client-cert-auth: false\n"
        "  trusted-ca-file:\n"
        "  auto-tls: false\n"
        "debug: false\n"
        "logger: zap\n"
        "log-outputs: [stderr]\n"
        "force-new-cluster: false\n"
        "auto-compaction-mode: periodic\n"
        "auto-compaction-retention: \"1\"\n"
        "grpc-keepalive-min-time: 3000000000\n"
        "max-txn-ops: 256\n";

Test(config_file, full_sample)
{
	srv_config c;
	char err[512];
	const char *path = write_file("etcd.yml", full_sample);
	cr_assert_eq(parse_file(&c, path, NULL, no_env, err, sizeof err), 0, "%s", err);
	cr_expect_str_eq(c.config_file, path);
	cr_expect_str_eq(c.name, "m1");
	cr_expect_str_eq(c.data_dir, "/tmp/m1.data");
	cr_expect_str_eq(c.wal_dir, "");
	cr_expect_eq(c.snapshot_count, 5000);
	cr_expect_eq(c.heartbeat_interval_ms, 50);
	cr_expect_eq(c.election_timeout_ms, 500);
	cr_expect_eq(c.quota_backend_bytes, 0x100000);
	cr_expect_eq(c.max_txn_ops, 256);
	cr_assert_eq(c.listen_client.n, 2);
	cr_expect_str_eq(c.listen_client.addr[0], "127.0.0.1:32379");
	cr_expect_str_eq(c.listen_client.addr[1], "127.0.0.1:32378");
	cr_expect_str_eq(c.listen_peer.url[0], "http://127.0.0.1:32380");
	cr_expect_str_eq(c.advertise_client.url[0], "http://127.0.0.1:32379");
	/* initial-cluster null: derived from the name and the advertised peer URL */
	cr_expect_str_eq(c.initial_cluster, "m1=http://127.0.0.1:32380");
	cr_expect_str_eq(c.initial_cluster_token, "tok-1");
	cr_expect_str_eq(c.initial_cluster_state, "new");
	cr_expect_not(c.strict_reconfig_check);
	cr_expect(c.enable_v2);
	cr_expect_str_eq(c.proxy, "off");
	cr_expect_str_eq(c.log_outputs, "stderr");
	cr_expect_str_eq(c.auto_compaction_mode, "periodic");
	cr_expect_str_eq(c.auto_compaction_retention, "1");
	cr_expect_eq(c.grpc_keepalive_min_time_ms, 3000); /* nanoseconds in the file */
	cr_expect_str_eq(c.cert_file, "");
	cr_expect_not(c.auto_tls);
	/* set in the file: counts as given; etcd's defaults elsewhere */
	cr_expect(srv_config_is_set(&c, "name"));
	cr_expect(srv_config_is_set(&c, "config-file"));
	cr_expect_not(srv_config_is_set(&c, "max-request-bytes"));
	cr_expect_eq(c.max_request_bytes, 1572864);
	cr_expect(has_warning(&c, "loaded server configuration from"));
	/* settings without effect are listed as such flags are */
	const char *names[SRV_CONFIG_MAX_FLAGS];
	size_t n = srv_config_ignored(&c, names, SRV_CONFIG_MAX_FLAGS);
	bool v2 = false, pprof = false;
	for (size_t i = 0; i < n && i < SRV_CONFIG_MAX_FLAGS; i++) {
		v2 = v2 || strcmp(names[i], "enable-v2") == 0;
		pprof = pprof || strcmp(names[i], "enable-pprof") == 0;
	}
	cr_expect(pprof, "enable-pprof: true is listed as having no effect");
	cr_expect(!v2, "enable-v2 is acted upon (/v2/keys): not listed");
	srv_config_free(&c);
}

Test(config_file, empty_file_gives_defaults)
{
	srv_config c;
	char err[512];
	const char *path = write_file("empty.yml", "# nothing\n");
	cr_assert_eq(parse_file(&c, path, NULL, no_env, err, sizeof err), 0, "%s", err);
	cr_expect_str_eq(c.name, "default");
	cr_expect_str_eq(c.data_dir, "default.metastore");
	cr_expect_str_eq(c.listen_client.url[0], "http://localhost:2379");
	srv_config_free(&c);
}

Test(config_file, tls_blocks)
{
	srv_config c;
	char err[512];
	const char *path =
	        write_file("tls.yml", "listen-client-urls: https://127.0.0.1:32379\n"
	                              "advertise-client-urls: https://127.0.0.1:32379\n"
	                              "listen-peer-urls: https://127.0.0.1:32380\n"
	                              "initial-advertise-peer-urls: https://127.0.0.1:32380\n"
	                              "client-transport-security:\n"
	                              "  cert-file: /certs/server.crt\n"
	                              "  key-file: /certs/server.key\n"
	                              "  client-cert-auth: true\n"
	                              "  trusted-ca-file: /certs/ca.crt\n"
	                              "  crl-file: /certs/revoked.crl\n"
	                              "peer-transport-security: {auto-tls: yes, "
	                              "client-cert-auth: on}\n"
	                              "cipher-suites: [TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,\n"
	                              "  TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384]\n");
	cr_assert_eq(parse_file(&c, path, NULL, no_env, err, sizeof err), 0, "%s", err);
	cr_expect_str_eq(c.cert_file, "/certs/server.crt");
	cr_expect_str_eq(c.key_file, "/certs/server.key");
	cr_expect(c.client_cert_auth);
	cr_expect_str_eq(c.trusted_ca_file, "/certs/ca.crt");
	/* crl-file is no key of etcd 3.4's block: ignored, with a warning */
	cr_expect_str_eq(c.client_crl_file, "");
	cr_expect(has_warning(&c, "client-transport-security.crl-file"));
	cr_expect(c.peer_auto_tls);
	cr_expect(c.peer_client_cert_auth);
	cr_expect_str_eq(c.peer_cert_file, "");
	cr_expect_str_eq(
	        c.cipher_suites,
	        "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384");
	srv_config_free(&c);

	/* The blocks feed the same TLS checks as the flags. */
	expect_file_error("listen-client-urls: https://127.0.0.1:32379\n"
	                  "advertise-client-urls: https://127.0.0.1:32379\n",
	                  "TLS key/cert (--cert-file, --key-file) must be provided");
	expect_file_error("client-transport-security:\n  cert-file: /a.crt\n",
	                  "--cert-file and --key-file must both be given");
	expect_file_error("client-transport-security: /a.crt\n",
	                  "key \"client-transport-security\": expected a mapping, found a string");
	expect_file_error(
	        "peer-transport-security:\n  auto-tls: 'true'\n",
	        "key \"peer-transport-security.auto-tls\": expected true or false, found a "
	        "string");
}

Test(config_file, unknown_keys_ignored)
{
	srv_config c;
	char err[512];
	/* top-level TLS flag names are no keys of etcd's file either */
	const char *path = write_file("unknown.yml", "name: u1\n"
	                                             "no-such-setting: [1, 2]\n"
	                                             "cert-file: /x.crt\n"
	                                             "Heartbeat-Interval: 90\n"
	                                             "election-timeout: 900\n");
	cr_assert_eq(parse_file(&c, path, NULL, no_env, err, sizeof err), 0, "%s", err);
	cr_expect_str_eq(c.name, "u1");
	cr_expect_str_eq(c.cert_file, "");
	cr_expect_eq(c.heartbeat_interval_ms, 90); /* keys match regardless of case */
	cr_expect(has_warning(&c, "line 2: unknown key \"no-such-setting\" ignored"));
	cr_expect(has_warning(&c, "unknown key \"cert-file\""));
	srv_config_free(&c);
}

Test(config_file, bad_types)
{
	expect_file_error(
	        "name: m1\nheartbeat-interval: \"100\"\n",
	        "line 2: key \"heartbeat-interval\": expected an integer, found a string");
	expect_file_error("heartbeat-interval: 1.5\n", "expected an integer, found a number");
	expect_file_error("name: 123\n", "key \"name\": expected a string, found a number");
	expect_file_error("name: [a]\n", "key \"name\": expected a string, found a list");
	expect_file_error("auto-compaction-retention: 1\n", "expected a string, found a number");
	expect_file_error("strict-reconfig-check: 1\n", "expected true or false, found a number");
	expect_file_error("grpc-keepalive-min-time: 5s\n",
	                  "expected an integer (nanoseconds), found a string");
	expect_file_error("log-outputs: stderr\n", "expected a list of strings, found a string");
	expect_file_error("log-outputs: [1]\n", "expected a list of strings, found a number in it");
	/* The flag's own checks, framed with the file and key. */
	expect_file_error("heartbeat-interval: -1\n",
	                  "key \"heartbeat-interval\": invalid value \"-1\"");
	expect_file_error(
	        "listen-client-urls: localhost:2379\n",
	        "key \"listen-client-urls\": invalid value \"localhost:2379\": URL scheme "
	        "must be http, https, unix, or unixs");
	expect_file_error("initial-cluster-state: bad\n",
	                  "key \"initial-cluster-state\": invalid value");
	/* etcdmain's proxy string takes a YAML boolean as its text */
	expect_file_error("proxy: on\n", "key \"proxy\": invalid value \"true\"");
	expect_file_error("proxy: readonly\n", "the v2 proxy is not supported");
	/* and etcd's own validation after the file */
	expect_file_error("heartbeat-interval: 200\nelection-timeout: 300\n",
	                  "--election-timeout[300ms] should be at least as 5 times as "
	                  "--heartbeat-interval[200ms]");
}

Test(config_file, bad_yaml)
{
	expect_file_error("name: m1\nx: : :\n", "line 2: mapping values are not allowed");
	expect_file_error("name: [\n", "did not find expected node content");
	expect_file_error("- a\n- b\n", "line 1: expected a mapping of settings, found a list");
	expect_file_error("? [a]\n: b\n", "a key must be a string, found a list");
}

Test(config_file, missing_file)
{
	srv_config c;
	char err[512];
	int rc = parse_file(&c, "/nonexistent/dir/etcd.yml", NULL, no_env, err, sizeof err);
	cr_expect_eq(rc, SRV_CONFIG_ERROR);
	cr_expect_str_eq(err,
	                 "config file open /nonexistent/dir/etcd.yml: No such file or directory");
	srv_config_free(&c);
	/* a directory opens but does not read */
	cr_expect_eq(parse_file(&c, dir, NULL, no_env, err, sizeof err), SRV_CONFIG_ERROR);
	cr_expect(strstr(err, "Is a directory") != NULL, "%s", err);
	srv_config_free(&c);
}

Test(config_file, flags_and_env_ignored)
{
	srv_config c;
	char err[512];
	const char *path = write_file("m.yml", "name: from-file\nheartbeat-interval: 50\n");
	char *const env[] = {"ETCD_ELECTION_TIMEOUT=5000", "ETCD_NAME=from-env", "ETCD_BOGUS=1",
	                     NULL};
	cr_assert_eq(parse_file(&c, path, "--name=from-flag", env, err, sizeof err), 0, "%s", err);
	cr_expect_str_eq(c.name, "from-file");
	cr_expect_eq(c.election_timeout_ms, 1000);
	cr_expect_eq(c.heartbeat_interval_ms, 50);
	cr_expect_not(srv_config_is_set(&c, "election-timeout"));
	cr_expect_not(has_warning(&c, "ETCD_BOGUS"), "ETCD_* variables are not read");
	srv_config_free(&c);

	/* a flag the file ignores must still parse */
	cr_expect_eq(parse_file(&c, path, "--heartbeat-interval=abc", no_env, err, sizeof err),
	             SRV_CONFIG_ERROR);
	cr_expect(strstr(err, "invalid value \"abc\" for flag -heartbeat-interval"), "%s", err);
	srv_config_free(&c);
	cr_expect_eq(parse_file(&c, path, "--bogus", no_env, err, sizeof err), SRV_CONFIG_ERROR);
	cr_expect(strstr(err, "flag provided but not defined: -bogus"), "%s", err);
	srv_config_free(&c);
	/* a flag metastore refuses does not count once the file is in force */
	cr_expect_eq(parse_file(&c, path, "--proxy=on", no_env, err, sizeof err), 0, "%s", err);
	srv_config_free(&c);
}

Test(config_file, etcd_config_file_variable)
{
	srv_config c;
	char err[512];
	const char *path = write_file("env.yml", "name: via-env\n");
	char var[160];
	snprintf(var, sizeof var, "ETCD_CONFIG_FILE=%s", path);
	char *const env[] = {var, "ETCD_NAME=ignored", NULL};
	char *argv[] = {"metastore", "--data-dir=/ignored", NULL};
	cr_assert_eq(srv_config_parse_env(&c, 2, argv, env, err, sizeof err), 0, "%s", err);
	cr_expect_str_eq(c.name, "via-env");
	cr_expect_str_eq(c.data_dir, "via-env.metastore");
	cr_expect_str_eq(c.config_file, path);
	srv_config_free(&c);

	/* --config-file wins over ETCD_CONFIG_FILE, with no conflict */
	const char *other = write_file("flag.yml", "name: via-flag\n");
	char *const env2[] = {"ETCD_CONFIG_FILE=/nonexistent.yml", NULL};
	cr_assert_eq(parse_file(&c, other, NULL, env2, err, sizeof err), 0, "%s", err);
	cr_expect_str_eq(c.name, "via-flag");
	srv_config_free(&c);
}
