/*
 * Unit tests for srv_config: etcd's defaults, both flag spellings, derived
 * defaults (data dir, initial cluster), and clear errors for bad input.
 */
#include <criterion/criterion.h>
#include <string.h>

#include "server/srv_config.h"

#define ARGV(...) (char *[]){"metastore", __VA_ARGS__, NULL}

Test(config, etcd_defaults)
{
	srv_config c;
	char err[256];
	char *argv[] = {"metastore", NULL};
	cr_assert_eq(srv_config_parse(&c, 1, argv, err, sizeof(err)), 0);
	cr_assert_str_eq(c.name, "default");
	cr_assert_str_eq(c.data_dir, "default.metastore");
	cr_assert_eq(c.listen_client.n, 1);
	cr_assert_str_eq(c.listen_client.url[0], "http://localhost:2379");
	cr_assert_str_eq(c.listen_client.addr[0], "localhost:2379");
	cr_assert_str_eq(c.listen_peer.addr[0], "localhost:2380");
	cr_assert_str_eq(c.initial_cluster, "default=http://localhost:2380");
	cr_assert_str_eq(c.initial_cluster_token, "etcd-cluster");
	cr_assert_str_eq(c.initial_cluster_state, "new");
	cr_assert_eq(c.max_request_bytes, 1572864);
	cr_assert_eq(c.max_txn_ops, 128);
	cr_assert_eq(c.heartbeat_interval_ms, 100);
	cr_assert_eq(c.election_timeout_ms, 1000);
	srv_config_free(&c);
}

Test(config, both_spellings_and_derived_values)
{
	srv_config c;
	char err[256];
	char **argv = ARGV("--name", "n1", "--listen-client-urls=http://127.0.0.1:1,http://127.0.0.1:2",
			   "-initial-advertise-peer-urls", "http://127.0.0.1:3", "--max-txn-ops=7");
	cr_assert_eq(srv_config_parse(&c, 7, argv, err, sizeof(err)), 0, "%s", err);
	cr_assert_str_eq(c.data_dir, "n1.metastore");
	cr_assert_eq(c.listen_client.n, 2);
	cr_assert_str_eq(c.listen_client.addr[1], "127.0.0.1:2");
	cr_assert_str_eq(c.initial_cluster, "n1=http://127.0.0.1:3");
	cr_assert_eq(c.max_txn_ops, 7);
	srv_urls u;
	cr_assert_eq(srv_config_peer_urls_of("a=http://x:1,b=http://y:2,a=http://z:3", "a", &u), 2);
	cr_assert_str_eq(u.url[1], "http://z:3");
	srv_urls_free(&u);
	srv_config_free(&c);
}

Test(config, bad_input_is_a_clear_error)
{
	srv_config c;
	char err[256];
	char **a1 = ARGV("--no-such-flag=1");
	cr_assert_eq(srv_config_parse(&c, 1 + 1, a1, err, sizeof(err)), SRV_CONFIG_ERROR);
	cr_assert(strstr(err, "unknown flag: --no-such-flag"), "%s", err);
	srv_config_free(&c);
	char **a2 = ARGV("--max-request-bytes", "lots");
	cr_assert_eq(srv_config_parse(&c, 3, a2, err, sizeof(err)), SRV_CONFIG_ERROR);
	cr_assert(strstr(err, "--max-request-bytes"), "%s", err);
	srv_config_free(&c);
	char **a3 = ARGV("--listen-client-urls", "localhost:2379");
	cr_assert_eq(srv_config_parse(&c, 3, a3, err, sizeof(err)), SRV_CONFIG_ERROR);
	cr_assert(strstr(err, "scheme"), "%s", err);
	srv_config_free(&c);
	char **a4 = ARGV("--initial-cluster-state", "maybe");
	cr_assert_eq(srv_config_parse(&c, 3, a4, err, sizeof(err)), SRV_CONFIG_ERROR);
	srv_config_free(&c);
	char **a5 = ARGV("--name");
	cr_assert_eq(srv_config_parse(&c, 2, a5, err, sizeof(err)), SRV_CONFIG_ERROR);
	cr_assert(strstr(err, "needs an argument"), "%s", err);
	srv_config_free(&c);
	char **a6 = ARGV("--version");
	cr_assert_eq(srv_config_parse(&c, 2, a6, err, sizeof(err)), SRV_CONFIG_VERSION);
	srv_config_free(&c);
}
