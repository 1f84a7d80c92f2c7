/*
 * Unit tests for srv_grpcproxy's pure parts: `grpc-proxy start` flags (etcd
 * 3.4's names and defaults, pflag syntax, cobra's errors, etcd's checkArgs),
 * the endpoint list → channel target mapping, and etcd's empty-CN check on the
 * --cert certificate, against certificates the openssl CLI makes in a temp
 * dir. The proxying itself is driven end to end by
 * test/integration/scenarios/grpc-proxy.sh.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "server/srv_grpcproxy.h"

/* Parse the NULL-terminated @argv; returns the outcome, @o filled. */
static int parse(srv_gp_opts *o, char **argv, char *err, size_t errlen)
{
	int argc = 0;
	while (argv[argc])
		argc++;
	err[0] = '\0';
	return srv_gp_parse(argc, argv, o, err, errlen);
}

#define ARGV(...) ((char *[]){"grpc-proxy", __VA_ARGS__, NULL})

Test(grpcproxy_flags, defaults)
{
	srv_gp_opts o;
	char err[256];
	cr_assert_eq(parse(&o, ARGV("start"), err, sizeof err), 0, "%s", err);
	cr_assert_str_eq(o.listen_addr, "127.0.0.1:23790");
	cr_assert_str_eq(o.endpoints, "127.0.0.1:2379");
	cr_assert_str_eq(o.advertise_client_url, "127.0.0.1:23790");
	cr_assert_str_eq(o.data_dir, "default.proxy");
	cr_assert_eq(o.max_send_bytes, 1536 * 1024);
	cr_assert_eq(o.max_recv_bytes, 2147483647);
	cr_assert_eq(o.max_concurrent_streams, 4294967295LL);
	cr_assert(!o.auto_tls && !o.debug && !o.insecure_skip_tls_verify);
	cr_assert_str_eq(o.listen_cipher_suites, "");
	srv_gp_opts_free(&o);
}

Test(grpcproxy_flags, syntax)
{
	srv_gp_opts o;
	char err[256];
	cr_assert_eq(parse(&o,
	                   ARGV("start", "--listen-addr=127.0.0.1:1", "-endpoints", "a:1,b:2",
	                        "--endpoints", "c:3", "--auto-tls", "--debug=false",
	                        "--max-send-bytes", "10", "-insecure-skip-tls-verify=true",
	                        "--listen-cipher-suites", "X", "--listen-cipher-suites=Y",
	                        "--cert", "c.pem", "--key=k.pem", "--cacert", "ca.pem"),
	                   err, sizeof err),
	             0, "%s", err);
	cr_assert_str_eq(o.listen_addr, "127.0.0.1:1");
	cr_assert_str_eq(o.endpoints, "a:1,b:2,c:3"); /* the default replaced, then appended */
	cr_assert(o.auto_tls);
	cr_assert(!o.debug);
	cr_assert(o.insecure_skip_tls_verify);
	cr_assert_eq(o.max_send_bytes, 10);
	cr_assert_str_eq(o.listen_cipher_suites, "X,Y");
	cr_assert_str_eq(o.cert, "c.pem");
	cr_assert_str_eq(o.key, "k.pem");
	cr_assert_str_eq(o.cacert, "ca.pem");
	srv_gp_opts_free(&o);

	/* An empty --listen-cipher-suites is "not given" (etcd's e2e passes ""). */
	cr_assert_eq(parse(&o, ARGV("start", "--listen-cipher-suites", ""), err, sizeof err), 0);
	cr_assert_str_eq(o.listen_cipher_suites, "");
	srv_gp_opts_free(&o);
}

/* Expect @argv to fail with @want in the message. */
static void fails(char **argv, const char *want)
{
	srv_gp_opts o;
	char err[256];
	cr_assert_eq(parse(&o, argv, err, sizeof err), -1, "accepted; wanted \"%s\"", want);
	cr_assert(strstr(err, want) != NULL, "\"%s\" lacks \"%s\"", err, want);
	srv_gp_opts_free(&o);
}

Test(grpcproxy_flags, errors)
{
	fails(ARGV("start", "--bogus"), "unknown flag: --bogus");
	fails(ARGV("start", "-x"), "unknown shorthand flag: 'x' in -x");
	fails(ARGV("start", "--listen-addr"), "flag needs an argument: --listen-addr");
	fails(ARGV("start", "--max-send-bytes", "ten"),
	      "invalid argument \"ten\" for \"--max-send-bytes\" flag");
	fails(ARGV("start", "--max-concurrent-streams", "-1"), "--max-concurrent-streams");
	fails(ARGV("start", "--debug=maybe"), "strconv.ParseBool");
	fails(ARGV("stop"), "unknown command \"stop\" for \"metastore grpc-proxy\"");
	/* etcd's checkArgs */
	fails(ARGV("start", "--resolver-prefix", "p"), "invalid resolver-ttl 0");
	fails(ARGV("start", "--resolver-ttl", "5"), "invalid resolver-prefix \"\"");
	fails(ARGV("start", "--resolver-prefix", "p", "--resolver-ttl", "5",
	           "--advertise-client-url", ""),
	      "invalid advertise-client-url \"\"");
}

Test(grpcproxy_flags, help)
{
	srv_gp_opts o;
	char err[256];
	cr_assert_eq(parse(&o, ARGV("start", "--help"), err, sizeof err), SRV_GP_HELP);
	srv_gp_opts_free(&o);
	cr_assert_eq(parse(&o, ARGV("-h"), err, sizeof err), SRV_GP_HELP);
	srv_gp_opts_free(&o);
	char *only[] = {"grpc-proxy", NULL};
	cr_assert_eq(parse(&o, only, err, sizeof err), SRV_GP_HELP);
	srv_gp_opts_free(&o);
}

Test(grpcproxy_target, lists)
{
	char t[512], a[128], err[256];
	bool tls = true;
	cr_assert_eq(srv_gp_target("127.0.0.1:2379", t, sizeof t, a, sizeof a, &tls, err,
	                           sizeof err),
	             0, "%s", err);
	cr_assert_str_eq(t, "dns:///127.0.0.1:2379");
	cr_assert_str_eq(a, "127.0.0.1:2379");
	cr_assert(!tls);
	cr_assert_eq(srv_gp_target("http://127.0.0.1:1,https://127.0.0.2:2/", t, sizeof t, a,
	                           sizeof a, &tls, err, sizeof err),
	             0, "%s", err);
	cr_assert_str_eq(t, "ipv4:127.0.0.1:1,127.0.0.2:2");
	cr_assert_str_eq(a, "127.0.0.1:1");
	cr_assert(tls);
	cr_assert_eq(srv_gp_target("[::1]:5,[::1]:6", t, sizeof t, a, sizeof a, &tls, err,
	                           sizeof err),
	             0, "%s", err);
	cr_assert_str_eq(t, "ipv6:[::1]:5,[::1]:6");
	cr_assert_eq(srv_gp_target("127.0.0.1", t, sizeof t, a, sizeof a, &tls, err, sizeof err),
	             -1);
	cr_assert(strstr(err, "not host:port") != NULL, "%s", err);
	cr_assert_eq(srv_gp_target(",", t, sizeof t, a, sizeof a, &tls, err, sizeof err), -1);
	cr_assert(strstr(err, "no endpoint") != NULL, "%s", err);
	cr_assert_eq(srv_gp_target("127.0.0.1:1,[::1]:2", t, sizeof t, a, sizeof a, &tls, err,
	                           sizeof err),
	             -1);
}

/* ---- the CN check, on certificates made now ---- */

static char g_dir[] = "/tmp/test-grpcproxy-XXXXXX";

static void make_certs(void)
{
	cr_assert_not_null(mkdtemp(g_dir));
	char sh[2048];
	snprintf(sh, sizeof sh,
	         "cd %s && { "
	         "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes "
	         "-keyout cn.key -out cn.crt -days 2 -subj /CN=proxy-client && "
	         "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes "
	         "-keyout nocn.key -out nocn.crt -days 2 -subj /O=etcd && "
	         "echo garbage > bad.crt; } >/dev/null 2>&1",
	         g_dir);
	cr_assert_eq(system(sh), 0, "openssl could not make certificates in %s", g_dir);
}

static void drop_certs(void)
{
	char sh[600];
	snprintf(sh, sizeof sh, "rm -rf %s", g_dir);
	(void)!system(sh);
}

TestSuite(grpcproxy_cn, .init = make_certs, .fini = drop_certs);

Test(grpcproxy_cn, refuses_a_common_name)
{
	char path[512], err[512] = "";
	snprintf(path, sizeof path, "%s/cn.crt", g_dir);
	cr_assert_eq(srv_gp_check_cert(path, err, sizeof err), -1);
	cr_assert_str_eq(err, "cert has non empty Common Name (proxy-client)");
}

Test(grpcproxy_cn, accepts_an_empty_common_name)
{
	char path[512], err[512] = "";
	snprintf(path, sizeof path, "%s/nocn.crt", g_dir);
	cr_assert_eq(srv_gp_check_cert(path, err, sizeof err), 0, "%s", err);
}

Test(grpcproxy_cn, unreadable_files)
{
	char path[512], err[512] = "";
	snprintf(path, sizeof path, "%s/bad.crt", g_dir);
	cr_assert_eq(srv_gp_check_cert(path, err, sizeof err), -1);
	cr_assert(strstr(err, "--cert=") != NULL && strstr(err, "no PEM certificate") != NULL,
	          "%s", err);
	snprintf(path, sizeof path, "%s/missing.crt", g_dir);
	cr_assert_eq(srv_gp_check_cert(path, err, sizeof err), -1);
	cr_assert(strstr(err, "--cert=") != NULL, "%s", err);
}
