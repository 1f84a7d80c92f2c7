/*
 * test_tls.c: srv_tls (TLS as etcd does it) and its use by srv_rpc, with a
 * throw-away PKI made by the openssl CLI in a temp dir: what srv_tls_setup
 * refuses and says, auto-TLS certificates, the cipher-suite table, and real
 * TLS connections from a C-core client to srv_rpc ports: client certificates
 * required and verified, the CN seen by srv_call_peer_cn, CRL refusal, the
 * peer side's per-call SAN check, and the peer channel credentials (host name,
 * allowed CN, auto-TLS without verification); the peer port's own TLS server
 * (srv_tlsfront) with OpenSSL and C-core clients: the allowed CN refused in
 * the handshake with alert bad_certificate, checkSAN after it, plaintext
 * relayed to srv_rpc, and the core's alert log line in Go's words.
 */
#include <criterion/criterion.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include <grpc/grpc.h>
#include <grpc/grpc_security.h>

#include "rpc.pb-c.h"
#include "server/srv_rpc.h"
#include "server/srv_tls.h"
#include "server/srv_tlsfront.h"
#include "tc_client.h"

#define M_WHO "/test.Tls/Who"

static char g_dir[256];

/* The PKI (see tls_make_certs in test/integration/lib.sh for the same set). */
static void make_pki(void)
{
	/* getaddrinfo for "localhost" targets: c-ares keeps a few bytes for good,
	 * which LeakSanitizer reports. */
	setenv("GRPC_DNS_RESOLVER", "native", 1);
	snprintf(g_dir, sizeof g_dir, "/tmp/ms-test-tls.XXXXXX");
	cr_assert_not_null(mkdtemp(g_dir));
	char cmd[8192];
	snprintf(
	        cmd, sizeof cmd,
	        "set -e; cd '%s'; mkdir db; : >db/index.txt; echo 1000 >db/serial; echo 1000 "
	        ">db/crlnumber\n"
	        "cat >ca.cnf <<EOF\n"
	        "[ca]\ndefault_ca=c\n[c]\ndir=db\ndatabase=db/index.txt\nserial=db/serial\n"
	        "crlnumber=db/crlnumber\nnew_certs_dir=db\ncertificate=ca.crt\nprivate_key=ca.key\n"
	        "default_md=sha256\ndefault_days=30\ndefault_crl_days=30\npolicy=p\n"
	        "unique_subject=no\n[p]\ncommonName=supplied\n[req]\ndistinguished_name=d\n"
	        "prompt=no\n[d]\nCN=x\n[v3_ca]\nbasicConstraints=critical,CA:TRUE\n"
	        "keyUsage=critical,keyCertSign,cRLSign\n"
	        "[srv]\nextendedKeyUsage=serverAuth,clientAuth\n"
	        "subjectAltName=DNS:localhost,IP:127.0.0.1\n"
	        "[cli]\nextendedKeyUsage=clientAuth\n"
	        "[badsan]\nextendedKeyUsage=serverAuth,clientAuth\nsubjectAltName=IP:10.9.9.9\n"
	        "EOF\n"
	        "key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out $1; "
	        "}\n"
	        "leaf() { key $1.key; openssl req -new -config ca.cnf -key $1.key -subj /CN=$2 "
	        "-out $1.csr; shift 2; openssl ca -batch -notext -config ca.cnf -in ${1}.csr "
	        "-out ${1}.crt \"$@\"; }\n"
	        "key ca.key; openssl req -new -x509 -config ca.cnf -extensions v3_ca -key ca.key "
	        "-subj /CN=it-ca -days 30 -out ca.crt\n"
	        "key server.key; openssl req -new -config ca.cnf -key server.key -subj "
	        "/CN=example.com -out server.csr; openssl ca -batch -notext -config ca.cnf "
	        "-extensions srv -in server.csr -out server.crt\n"
	        "key client.key; openssl req -new -config ca.cnf -key client.key -subj "
	        "/CN=it-client "
	        "-out client.csr; openssl ca -batch -notext -config ca.cnf -extensions cli -in "
	        "client.csr -out client.crt\n"
	        "key revoked.key; openssl req -new -config ca.cnf -key revoked.key -subj "
	        "/CN=it-revoked -out revoked.csr; openssl ca -batch -notext -config ca.cnf "
	        "-extensions cli -in revoked.csr -out revoked.crt\n"
	        "key badsan.key; openssl req -new -config ca.cnf -key badsan.key -subj /CN=badsan "
	        "-out badsan.csr; openssl ca -batch -notext -config ca.cnf -extensions badsan -in "
	        "badsan.csr -out badsan.crt\n"
	        "key cnbadsan.key; openssl req -new -config ca.cnf -key cnbadsan.key -subj "
	        "/CN=example.com -out cnbadsan.csr; openssl ca -batch -notext -config ca.cnf "
	        "-extensions badsan -in cnbadsan.csr -out cnbadsan.crt\n"
	        "key expired.key; openssl req -new -config ca.cnf -key expired.key -subj "
	        "/CN=example.com -out expired.csr; openssl ca -batch -notext -config ca.cnf "
	        "-extensions srv -startdate 20200101000000Z -enddate 20200102000000Z -in "
	        "expired.csr -out expired.crt\n"
	        "openssl ca -batch -config ca.cnf -revoke revoked.crt\n"
	        "openssl ca -batch -config ca.cnf -gencrl -out crl.pem\n"
	        "key mismatch.key; echo 'not a certificate' >bad.crt\n",
	        g_dir);
	char sh[8400];
	snprintf(sh, sizeof sh, "bash -c \"$(cat <<'SCRIPT'\n%s\nSCRIPT\n)\" >/dev/null 2>&1", cmd);
	cr_assert_eq(system(sh), 0, "openssl could not make the PKI in %s", g_dir);
}

static void rm_pki(void)
{
	char cmd[300];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
	if (system(cmd) != 0)
		fprintf(stderr, "could not remove %s\n", g_dir);
}

/* DIR/name; each call has its own buffer (enough for one test's calls). */
static const char *path(const char *name)
{
	static char buf[128][512];
	static int i;
	cr_assert_lt(i, 128);
	char *p = buf[i++];
	snprintf(p, 512, "%s/%s", g_dir, name);
	return p;
}

static char *slurp(const char *file)
{
	FILE *f = fopen(file, "rb");
	cr_assert_not_null(f, "%s", file);
	char *buf = calloc(1, 1 << 20);
	size_t n = fread(buf, 1, (1 << 20) - 1, f);
	buf[n] = 0;
	fclose(f);
	return buf;
}

static int n_logs;
static char last_log[1024];
static void test_log(void *ctx, const char *level, const char *line)
{
	(void)ctx, (void)level;
	n_logs++;
	snprintf(last_log, sizeof last_log, "%s", line);
}

static srv_tls_side side(const char *which)
{
	srv_tls_side s = {.side = which, .log = test_log};
	return s;
}

static void expect_setup_error(const srv_tls_side *s, const char *want)
{
	srv_tls *t = (srv_tls *)1;
	char err[1024] = "";
	cr_expect_eq(srv_tls_setup(s, &t, err, sizeof err), -1, "no error, want \"%s\"", want);
	cr_expect_null(t);
	cr_expect(strstr(err, want) != NULL, "error \"%s\" lacks \"%s\"", err, want);
}

Test(tls, setup_refuses_bad_files_naming_flag_and_file, .init = make_pki, .fini = rm_pki)
{
	srv_tls_side s = side("client");
	char want[1024];
	s.cert_file = path("nope.crt");
	s.key_file = path("server.key");
	snprintf(want, sizeof want, "--cert-file=%s: cannot open the file: No such file",
	         path("nope.crt"));
	expect_setup_error(&s, want);

	s.cert_file = path("bad.crt");
	snprintf(want, sizeof want, "--cert-file=%s: no PEM certificate in the file",
	         path("bad.crt"));
	expect_setup_error(&s, want);

	s.cert_file = path("server.crt");
	s.key_file = path("bad.crt");
	snprintf(want, sizeof want, "--key-file=%s: no PEM private key", path("bad.crt"));
	expect_setup_error(&s, want);

	s.key_file = path("mismatch.key");
	snprintf(want, sizeof want,
	         "--key-file=%s: the private key does not match the certificate in --cert-file=%s",
	         path("mismatch.key"), path("server.crt"));
	expect_setup_error(&s, want);

	s.cert_file = path("expired.crt");
	s.key_file = path("expired.key");
	snprintf(want, sizeof want,
	         "--cert-file=%s: the certificate (CN \"example.com\") expired on Jan  2 00:00:00 "
	         "2020 GMT",
	         path("expired.crt"));
	expect_setup_error(&s, want);

	s.cert_file = path("server.crt");
	s.key_file = path("server.key");
	s.trusted_ca_file = path("bad.crt");
	snprintf(want, sizeof want, "--trusted-ca-file=%s: no PEM certificate", path("bad.crt"));
	expect_setup_error(&s, want);

	s.trusted_ca_file = path("ca.crt");
	s.crl_file = path("bad.crt");
	snprintf(want, sizeof want, "--client-crl-file=%s: not a certificate revocation list",
	         path("bad.crt"));
	expect_setup_error(&s, want);

	srv_tls_side p = side("peer");
	p.cert_file = path("server.crt");
	p.key_file = path("nope.key");
	snprintf(want, sizeof want, "--peer-key-file=%s: cannot open the file", path("nope.key"));
	expect_setup_error(&p, want);
	p.key_file = NULL;
	expect_setup_error(&p, "--peer-cert-file and --peer-key-file must both be given");
	p.key_file = path("server.key");
	p.allowed_cn = "a";
	p.allowed_hostname = "b";
	expect_setup_error(&p, "AllowedCN and AllowedHostname are mutually exclusive");

	/* No certificate: plaintext, no error, no srv_tls. */
	srv_tls_side none = side("client");
	srv_tls *t = (srv_tls *)1;
	char err[256];
	cr_assert_eq(srv_tls_setup(&none, &t, err, sizeof err), 0);
	cr_assert_null(t);
}

Test(tls, setup_logs_etcds_lines, .init = make_pki, .fini = rm_pki)
{
	const char *urls[] = {"http://127.0.0.1:1", "https://127.0.0.1:2"};
	srv_tls_side s = side("client");
	s.cert_file = path("server.crt");
	s.key_file = path("server.key");
	s.client_cert_auth = true;
	s.trusted_ca_file = path("ca.crt");
	s.listen_urls = urls;
	s.n_listen = 2;
	n_logs = 0;
	srv_tls *t = NULL;
	char err[512] = "";
	cr_assert_eq(srv_tls_setup(&s, &t, err, sizeof err), 0, "%s", err);
	cr_expect_eq(n_logs, 3, "two warnings for the http:// URL and the ClientTLS line");
	char want[1024];
	snprintf(want, sizeof want,
	         "ClientTLS: cert = %s, key = %s, trusted-ca = %s, client-cert-auth = true, "
	         "crl-file = ",
	         path("server.crt"), path("server.key"), path("ca.crt"));
	cr_expect_str_eq(last_log, want);
	srv_tls_unref(t);
}

Test(tls, self_cert_as_etcd, .init = make_pki, .fini = rm_pki)
{
	char dir[512];
	snprintf(dir, sizeof dir, "%s/data/fixtures/client", g_dir);
	const char *hosts[] = {"127.0.0.1:2379", "localhost:2380", "[::1]:2381"};
	char err[512] = "";
	cr_assert_eq(srv_tls_self_cert(dir, hosts, 3, err, sizeof err), 0, "%s", err);
	char cp[600], kp[600];
	snprintf(cp, sizeof cp, "%s/cert.pem", dir);
	snprintf(kp, sizeof kp, "%s/key.pem", dir);
	struct stat st;
	cr_assert_eq(stat(kp, &st), 0);
	cr_expect_eq(st.st_mode & 0777, 0600);
	cr_assert_eq(stat(dir, &st), 0);
	cr_expect_eq(st.st_mode & 0777, 0700);
	char *key = slurp(kp);
	cr_expect(strncmp(key, "-----BEGIN EC PRIVATE KEY-----", 30) == 0, "%.40s", key);
	free(key);

	FILE *f = fopen(cp, "r");
	X509 *x = PEM_read_X509(f, NULL, NULL, NULL);
	fclose(f);
	cr_assert_not_null(x);
	EVP_PKEY *pk = X509_get0_pubkey(x);
	char group[64] = "";
	size_t gl = 0;
	EVP_PKEY_get_utf8_string_param(pk, "group", group, sizeof group, &gl);
	cr_expect_str_eq(group, "secp521r1");
	cr_expect_eq(X509_check_ip_asc(x, "127.0.0.1", 0), 1);
	cr_expect_eq(X509_check_ip_asc(x, "::1", 0), 1);
	cr_expect_eq(X509_check_host(x, "localhost", 0, 0, NULL), 1);
	cr_expect_eq(X509_check_ca(x), 0);
	cr_expect(X509_get_extended_key_usage(x) & XKU_SSL_SERVER);
	int days = 0, secs = 0;
	ASN1_TIME_diff(&days, &secs, X509_get0_notBefore(x), X509_get0_notAfter(x));
	cr_expect_eq(days, 365);
	X509_free(x);

	/* Kept on the next start. */
	char *before = slurp(cp);
	cr_assert_eq(srv_tls_self_cert(dir, hosts, 3, err, sizeof err), 0, "%s", err);
	char *after = slurp(cp);
	cr_expect_str_eq(before, after);
	free(before);
	free(after);

	/* Through setup: auto-TLS drops the side's other settings (etcd replaces the TLSInfo). */
	char data[512];
	snprintf(data, sizeof data, "%s/data2", g_dir);
	const char *urls[] = {"https://127.0.0.1:2379"};
	srv_tls_side s = side("client");
	s.auto_tls = true;
	s.client_cert_auth = true;
	s.trusted_ca_file = path("ca.crt");
	s.data_dir = data;
	s.listen_urls = urls;
	s.n_listen = 1;
	srv_tls *t = NULL;
	cr_assert_eq(srv_tls_setup(&s, &t, err, sizeof err), 0, "%s", err);
	char desc[2048], want[2048];
	srv_tls_describe(t, desc, sizeof desc);
	snprintf(want, sizeof want,
	         "cert = %s/fixtures/client/cert.pem, key = %s/fixtures/client/key.pem, trusted-ca "
	         "= , "
	         "client-cert-auth = false, crl-file = ",
	         data, data);
	cr_expect_str_eq(desc, want);
	srv_tls_unref(t);
}

Test(tls, cipher_suites_map_to_openssl)
{
	char out[512], err[256];
	cr_expect_eq(
	        srv_tls_cipher_list("TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,"
	                            "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305,TLS_AES_128_GCM_SHA256",
	                            out, sizeof out, err, sizeof err),
	        2);
	cr_expect_str_eq(out, "ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-CHACHA20-POLY1305");
	cr_expect_eq(srv_tls_cipher_list("", out, sizeof out, err, sizeof err), 0);
	cr_expect_str_eq(out, "");
	cr_expect_eq(srv_tls_cipher_list("TLS_RSA_WITH_3DES_EDE_CBC_SHA,nope", out, sizeof out, err,
	                                 sizeof err),
	             -1);
	cr_expect_str_eq(err, "unexpected TLS cipher suite \"nope\"");
}

/* ---- real connections ----------------------------------------------------- */

/* The handler: reply with the caller's certificate CN as kvs[0].key and
 * srv_call_peer_cn's result as count. */
static void who(srv_call *call, const ProtobufCMessage *req)
{
	(void)req;
	char cn[128];
	int rc = srv_call_peer_cn(call, cn, sizeof cn);
	Etcdserverpb__RangeResponse resp = ETCDSERVERPB__RANGE_RESPONSE__INIT;
	Mvccpb__KeyValue kv = MVCCPB__KEY_VALUE__INIT, *kvp = &kv;
	kv.key.data = (uint8_t *)cn;
	kv.key.len = rc > 0 ? (size_t)rc : 0;
	resp.kvs = &kvp;
	resp.n_kvs = 1;
	resp.count = rc;
	srv_call_reply(call, &resp.base);
}

static const srv_method who_table[] = {
        {M_WHO, SRV_UNARY, &etcdserverpb__range_request__descriptor,
         &etcdserverpb__range_response__descriptor, who, NULL},
};

static srv_tls *must_setup(const srv_tls_side *s)
{
	srv_tls *t = NULL;
	char err[1024] = "";
	cr_assert_eq(srv_tls_setup(s, &t, err, sizeof err), 0, "%s", err);
	cr_assert_not_null(t);
	return t;
}

/* A server on https://127.0.0.1:0 and http://127.0.0.1:0 with @t. */
static srv_rpc *serve(srv_tls *t, int *tls_port, int *plain_port)
{
	static const char *const addrs[] = {"https://127.0.0.1:0", "http://127.0.0.1:0"};
	srv_rpc_config cfg = {.listen = addrs, .n_listen = 2, .tls = t, .threads = 2};
	srv_rpc *rpc = NULL;
	char err[256] = "";
	cr_assert_eq(srv_rpc_start(&cfg, who_table, 1, NULL, &rpc, err, sizeof err), 0, "%s", err);
	*tls_port = srv_rpc_port(rpc, 0);
	if (plain_port != NULL)
		*plain_port = srv_rpc_port(rpc, 1);
	return rpc;
}

/* Call Who through @cr on @host:@port. Returns the status code; *@cn and *@rc get
 * the answer when it is OK. */
static grpc_status_code ask(grpc_channel_credentials *cr, const char *host, int port, char *cn,
                            size_t cnlen, int64_t *rc, char *msg, size_t msglen)
{
	char target[128];
	snprintf(target, sizeof target, "%s:%d", host, port);
	tc_conn *c = tc_connect_creds(target, cr, NULL);
	Etcdserverpb__RangeRequest req = ETCDSERVERPB__RANGE_REQUEST__INIT;
	ProtobufCMessage *resp = NULL;
	tc_status st = {0};
	tc_unary(c, M_WHO, &req.base, NULL, 0, &etcdserverpb__range_response__descriptor, &resp,
	         &st, 5000, NULL, 0);
	if (resp != NULL) {
		Etcdserverpb__RangeResponse *r = (Etcdserverpb__RangeResponse *)resp;
		snprintf(cn, cnlen, "%.*s", (int)r->kvs[0]->key.len,
		         (const char *)r->kvs[0]->key.data);
		*rc = r->count;
		protobuf_c_message_free_unpacked(resp, NULL);
	}
	if (msg != NULL)
		snprintf(msg, msglen, "%s", st.msg);
	tc_close(c);
	return st.code;
}

/* Plain C-core SSL client credentials: @ca roots, optional @cert/@key. */
static grpc_channel_credentials *ssl_creds(const char *ca, const char *cert, const char *key)
{
	char *roots = slurp(path(ca));
	grpc_ssl_pem_key_cert_pair pair = {0};
	char *c = NULL, *k = NULL;
	if (cert != NULL) {
		c = slurp(path(cert));
		k = slurp(path(key));
		pair.cert_chain = c;
		pair.private_key = k;
	}
	grpc_channel_credentials *cr =
	        grpc_ssl_credentials_create(roots, cert != NULL ? &pair : NULL, NULL, NULL);
	free(roots);
	free(c);
	free(k);
	return cr;
}

Test(tls, client_port_mutual_tls_cn_and_crl, .init = make_pki, .fini = rm_pki)
{
	grpc_init();
	srv_tls_side s = side("client");
	s.cert_file = path("server.crt");
	s.key_file = path("server.key");
	s.trusted_ca_file = path("ca.crt");
	s.client_cert_auth = true;
	s.crl_file = path("crl.pem");
	srv_tls *t = must_setup(&s);
	int tp = 0, pp = 0;
	srv_rpc *rpc = serve(t, &tp, &pp);
	srv_tls_unref(t); /* the server keeps its own reference */

	char cn[128] = "";
	int64_t rc = 99;
	grpc_channel_credentials *good = ssl_creds("ca.crt", "client.crt", "client.key");
	cr_expect_eq(ask(good, "127.0.0.1", tp, cn, sizeof cn, &rc, NULL, 0), GRPC_STATUS_OK);
	cr_expect_str_eq(cn, "it-client");
	cr_expect_eq(rc, 9);
	/* "localhost" is in the server certificate's SANs too. */
	cr_expect_eq(ask(good, "localhost", tp, cn, sizeof cn, &rc, NULL, 0), GRPC_STATUS_OK);
	grpc_channel_credentials_release(good);

	grpc_channel_credentials *revoked = ssl_creds("ca.crt", "revoked.crt", "revoked.key");
	cr_expect_neq(ask(revoked, "127.0.0.1", tp, cn, sizeof cn, &rc, NULL, 0), GRPC_STATUS_OK);
	grpc_channel_credentials_release(revoked);
	cr_expect(strstr(last_log, "rejected connection on the client port (error \"transport: "
	                           "certificate serial 100") != NULL &&
	                  strstr(last_log, " revoked\", CN \"it-revoked\"") != NULL,
	          "%s", last_log);

	grpc_channel_credentials *nocert = ssl_creds("ca.crt", NULL, NULL);
	cr_expect_neq(ask(nocert, "127.0.0.1", tp, cn, sizeof cn, &rc, NULL, 0), GRPC_STATUS_OK);
	grpc_channel_credentials_release(nocert);

	/* The plaintext port of the same server: no certificate, -1. */
	grpc_channel_credentials *plain = grpc_insecure_credentials_create();
	rc = 99;
	cr_expect_eq(ask(plain, "127.0.0.1", pp, cn, sizeof cn, &rc, NULL, 0), GRPC_STATUS_OK);
	cr_expect_eq(rc, -1);
	grpc_channel_credentials_release(plain);
	srv_rpc_shutdown(rpc);
	grpc_shutdown();
}

Test(tls, server_only_tls_takes_any_client, .init = make_pki, .fini = rm_pki)
{
	grpc_init();
	srv_tls_side s = side("client");
	s.cert_file = path("server.crt");
	s.key_file = path("server.key");
	srv_tls *t = must_setup(&s);
	int tp = 0;
	srv_rpc *rpc = serve(t, &tp, NULL);
	srv_tls_unref(t);
	char cn[128];
	int64_t rc = 0;
	grpc_channel_credentials *nocert = ssl_creds("ca.crt", NULL, NULL);
	cr_expect_eq(ask(nocert, "127.0.0.1", tp, cn, sizeof cn, &rc, NULL, 0), GRPC_STATUS_OK);
	cr_expect_eq(rc, -1, "no client certificate requested");
	grpc_channel_credentials_release(nocert);
	srv_rpc_shutdown(rpc);
	grpc_shutdown();
}

Test(tls, peer_port_checks_client_san_per_call, .init = make_pki, .fini = rm_pki)
{
	grpc_init();
	srv_tls_side s = side("peer");
	s.cert_file = path("server.crt");
	s.key_file = path("server.key");
	s.trusted_ca_file = path("ca.crt");
	s.client_cert_auth = true;
	srv_tls *t = must_setup(&s);
	int tp = 0;
	srv_rpc *rpc = serve(t, &tp, NULL);
	srv_tls_unref(t);
	char cn[128], msg[512];
	int64_t rc = 0;
	grpc_channel_credentials *ok = ssl_creds("ca.crt", "server.crt", "server.key");
	cr_expect_eq(ask(ok, "127.0.0.1", tp, cn, sizeof cn, &rc, NULL, 0), GRPC_STATUS_OK);
	cr_expect_str_eq(cn, "example.com");
	grpc_channel_credentials_release(ok);
	grpc_channel_credentials *bad = ssl_creds("ca.crt", "badsan.crt", "badsan.key");
	cr_expect_eq(ask(bad, "127.0.0.1", tp, cn, sizeof cn, &rc, msg, sizeof msg),
	             GRPC_STATUS_UNAVAILABLE);
	cr_expect_str_eq(msg, "x509: certificate is valid for 10.9.9.9, not 127.0.0.1");
	/* A certificate without IP/DNS SANs passes (etcd's checkSAN). */
	grpc_channel_credentials *nosan = ssl_creds("ca.crt", "client.crt", "client.key");
	cr_expect_eq(ask(nosan, "127.0.0.1", tp, cn, sizeof cn, &rc, NULL, 0), GRPC_STATUS_OK);
	grpc_channel_credentials_release(nosan);
	srv_rpc_shutdown(rpc);

	/* --experimental-peer-skip-client-san-verification */
	s.skip_client_san = true;
	t = must_setup(&s);
	rpc = serve(t, &tp, NULL);
	srv_tls_unref(t);
	cr_expect_eq(ask(bad, "127.0.0.1", tp, cn, sizeof cn, &rc, NULL, 0), GRPC_STATUS_OK);
	cr_expect_str_eq(cn, "badsan");
	grpc_channel_credentials_release(bad);
	srv_rpc_shutdown(rpc);
	grpc_shutdown();
}

Test(tls, peer_channel_creds_verify_as_etcd, .init = make_pki, .fini = rm_pki)
{
	grpc_init();
	srv_tls_side s = side("peer");
	s.cert_file = path("server.crt");
	s.key_file = path("server.key");
	s.trusted_ca_file = path("ca.crt");
	s.client_cert_auth = true;
	s.allowed_cn = "example.com";
	srv_tls *t = must_setup(&s);
	int tp = 0;
	srv_rpc *rpc = serve(t, &tp, NULL);
	char cn[128];
	int64_t rc = 0;
	/* The member's own channel credentials: its cert, the CA, host and CN checks. */
	grpc_channel_credentials *cr = srv_tls_channel_creds(t);
	cr_expect_eq(ask(cr, "127.0.0.1", tp, cn, sizeof cn, &rc, NULL, 0), GRPC_STATUS_OK);
	cr_expect_str_eq(cn, "example.com");
	cr_expect_eq(ask(cr, "localhost", tp, cn, sizeof cn, &rc, NULL, 0), GRPC_STATUS_OK);
	grpc_channel_credentials_release(cr);
	srv_tls_unref(t);

	/* Another allowed CN: the client side refuses the server's certificate. */
	s.allowed_cn = "other.example.com";
	srv_tls *other = must_setup(&s);
	cr = srv_tls_channel_creds(other);
	cr_expect_neq(ask(cr, "127.0.0.1", tp, cn, sizeof cn, &rc, NULL, 0), GRPC_STATUS_OK);
	grpc_channel_credentials_release(cr);
	srv_tls_unref(other);

	/* No srv_tls: system roots only, which do not know the test CA. */
	cr = srv_tls_channel_creds(NULL);
	cr_expect_neq(ask(cr, "127.0.0.1", tp, cn, sizeof cn, &rc, NULL, 0), GRPC_STATUS_OK);
	grpc_channel_credentials_release(cr);
	srv_rpc_shutdown(rpc);

	/* Auto-TLS on both ends: nothing is verified, the connection works. */
	char data[512];
	snprintf(data, sizeof data, "%s/auto", g_dir);
	const char *urls[] = {"https://127.0.0.1:0"};
	srv_tls_side a = side("peer");
	a.auto_tls = true;
	a.data_dir = data;
	a.listen_urls = urls;
	a.n_listen = 1;
	srv_tls *at = must_setup(&a);
	rpc = serve(at, &tp, NULL);
	cr = srv_tls_channel_creds(at);
	rc = 0;
	cr_expect_eq(ask(cr, "127.0.0.1", tp, cn, sizeof cn, &rc, NULL, 0), GRPC_STATUS_OK);
	cr_expect_eq(rc, -1, "auto-TLS requests no client certificate");
	grpc_channel_credentials_release(cr);
	srv_tls_unref(at);
	srv_rpc_shutdown(rpc);
	grpc_shutdown();
}

/* ---- the peer port's own TLS server (srv_tlsfront) ------------------------------- */

/* The log lines of the front's threads (the last 64). */
static pthread_mutex_t lines_mu = PTHREAD_MUTEX_INITIALIZER;
static char lines[64][512];
static int n_lines;
static void front_log(void *ctx, const char *level, const char *line)
{
	(void)ctx, (void)level;
	pthread_mutex_lock(&lines_mu);
	snprintf(lines[n_lines % 64], sizeof lines[0], "%s", line);
	n_lines++;
	pthread_mutex_unlock(&lines_mu);
}

static void forget_lines(void)
{
	pthread_mutex_lock(&lines_mu);
	n_lines = 0;
	pthread_mutex_unlock(&lines_mu);
}

/* Whether a line containing @want is logged within 3 s (the front logs from
 * its own threads, maybe after the client has seen the outcome). */
static bool saw_line(const char *want)
{
	for (int tries = 0; tries < 300; tries++) {
		bool seen = false;
		pthread_mutex_lock(&lines_mu);
		for (int i = 0; i < n_lines && i < 64 && !seen; i++)
			seen = strstr(lines[i], want) != NULL;
		pthread_mutex_unlock(&lines_mu);
		if (seen)
			return true;
		usleep(10000);
	}
	return false;
}

/* A peer side that checks --peer-cert-allowed-cn example.com (and, unless
 * @skip_san, the client's SANs against its address). */
static srv_tls *front_tls(bool skip_san)
{
	srv_tls_side s = side("peer");
	s.log = front_log;
	s.cert_file = path("server.crt");
	s.key_file = path("server.key");
	s.trusted_ca_file = path("ca.crt");
	s.client_cert_auth = true;
	s.allowed_cn = "example.com";
	s.skip_client_san = skip_san;
	return must_setup(&s);
}

/* The front on https://127.0.0.1:0 before a srv_rpc that serves who_table on
 * adopted connections only. */
static void front_serve(srv_tls *t, srv_rpc **rpc, srv_tlsfront **f, int *port)
{
	srv_rpc_config cfg = {.adopt_fds = true, .threads = 2};
	char err[256] = "";
	cr_assert_eq(srv_rpc_start(&cfg, who_table, 1, NULL, rpc, err, sizeof err), 0, "%s", err);
	static const char *const urls[] = {"https://127.0.0.1:0"};
	srv_tlsfront_config fc = {.urls = urls, .n_urls = 1, .tls = t, .handshake_timeout_ms = 2000};
	cr_assert_eq(srv_tlsfront_bind(&fc, f, err, sizeof err), 0, "%s", err);
	cr_assert_eq(srv_tlsfront_start(*f, *rpc), 0);
	*port = srv_tlsfront_port(*f, 0);
	cr_assert_gt(*port, 0);
}

/* An OpenSSL client (TLS 1.2 or 1.3 offered, the test CA trusted) with
 * @cert/@key (NULL: none) to 127.0.0.1:@port. Returns 0 when the handshake
 * succeeded, else the first OpenSSL error (its text in @text). With a
 * handshake, *@closed tells whether the server then closed without a byte. */
static unsigned long ossl_client(int port, const char *cert, const char *key, bool *closed,
                                 char *text, size_t textlen)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
	cr_assert_not_null(ctx);
	cr_assert_eq(SSL_CTX_load_verify_locations(ctx, path("ca.crt"), NULL), 1);
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
	if (cert != NULL) {
		cr_assert_eq(SSL_CTX_use_certificate_chain_file(ctx, path(cert)), 1);
		cr_assert_eq(SSL_CTX_use_PrivateKey_file(ctx, path(key), SSL_FILETYPE_PEM), 1);
	}
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
	inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
	cr_assert_eq(connect(fd, (struct sockaddr *)&sa, sizeof sa), 0);
	SSL *ssl = SSL_new(ctx);
	SSL_set_fd(ssl, fd);
	ERR_clear_error();
	unsigned long e = 0;
	text[0] = '\0';
	if (SSL_connect(ssl) != 1) {
		e = ERR_peek_error();
		ERR_error_string_n(e, text, textlen);
		if (e == 0)
			e = (unsigned long)-1;
	} else if (closed != NULL) {
		char b;
		*closed = SSL_read(ssl, &b, 1) <= 0; /* the server speaks no first */
	}
	ERR_clear_error();
	SSL_free(ssl);
	close(fd);
	SSL_CTX_free(ctx);
	return e;
}

Test(tlsfront, wanted_only_with_allowed_names_and_client_certs, .init = make_pki, .fini = rm_pki)
{
	srv_tls *t = front_tls(false);
	cr_expect(srv_tls_wants_front(t));
	srv_tls_unref(t);
	srv_tls_side s = side("peer");
	s.cert_file = path("server.crt");
	s.key_file = path("server.key");
	s.trusted_ca_file = path("ca.crt");
	s.client_cert_auth = true;
	t = must_setup(&s); /* no allowed CN / hostname */
	cr_expect_not(srv_tls_wants_front(t));
	srv_tls_unref(t);
	s.allowed_hostname = "localhost";
	t = must_setup(&s);
	cr_expect(srv_tls_wants_front(t));
	srv_tls_unref(t);
	s.trusted_ca_file = NULL;
	s.client_cert_auth = false; /* no client certificates: nothing to judge */
	t = must_setup(&s);
	cr_expect_not(srv_tls_wants_front(t));
	srv_tls_unref(t);
	s = side("client");
	s.cert_file = path("server.crt");
	s.key_file = path("server.key");
	s.trusted_ca_file = path("ca.crt");
	s.allowed_hostname = "localhost";
	t = must_setup(&s);
	cr_expect_not(srv_tls_wants_front(t));
	srv_tls_unref(t);
	cr_expect_not(srv_tls_wants_front(NULL));
}

Test(tlsfront, refuses_other_cn_in_handshake_and_relays_the_allowed, .init = make_pki,
     .fini = rm_pki)
{
	srv_tls_watch_core_log(front_log, NULL);
	grpc_init();
	srv_tls *t = front_tls(false);
	srv_rpc *rpc = NULL;
	srv_tlsfront *f = NULL;
	int port = 0;
	front_serve(t, &rpc, &f, &port);

	/* The member's own dial (its channel credentials, CN example.com) gets
	 * through to the server; the core sees a plaintext connection. */
	char cn[128] = "x", text[256];
	int64_t rc = 99;
	grpc_channel_credentials *cr = srv_tls_channel_creds(t);
	cr_expect_eq(ask(cr, "127.0.0.1", port, cn, sizeof cn, &rc, NULL, 0), GRPC_STATUS_OK);
	cr_expect_eq(rc, -1, "no client certificate behind the front");
	grpc_channel_credentials_release(cr);

	/* Another CN: alert bad_certificate inside the handshake. */
	unsigned long e = ossl_client(port, "client.crt", "client.key", NULL, text, sizeof text);
	cr_expect_eq(ERR_GET_REASON(e), SSL_R_SSLV3_ALERT_BAD_CERTIFICATE, "%s", text);
	cr_expect(strstr(text, "alert bad certificate") != NULL, "%s", text);
	cr_expect(saw_line("(error \"client certificate authentication failed\", ServerName"));

	/* No certificate at all: refused in the handshake too. */
	forget_lines();
	e = ossl_client(port, NULL, NULL, NULL, text, sizeof text);
	cr_expect_neq(e, 0, "a client without a certificate got through");
	cr_expect(saw_line("tls: client didn't provide a certificate"));

	/* The allowed CN but SANs that do not match the address: etcd's checkSAN
	 * after the handshake, which closes the connection. */
	forget_lines();
	bool closed = false;
	e = ossl_client(port, "cnbadsan.crt", "cnbadsan.key", &closed, text, sizeof text);
	cr_expect_eq(e, 0, "%s", text);
	cr_expect(closed);
	cr_expect(saw_line("x509: certificate is valid for 10.9.9.9, not 127.0.0.1"));

	/* A core client refused by the front: the core's log line comes out in
	 * Go's words. */
	forget_lines();
	cr = ssl_creds("ca.crt", "client.crt", "client.key");
	cr_expect_neq(ask(cr, "127.0.0.1", port, cn, sizeof cn, &rc, NULL, 0), GRPC_STATUS_OK);
	grpc_channel_credentials_release(cr);
	cr_expect(saw_line("TLS handshake failed: remote error: tls: bad certificate"));

	/* The allowed again, with a request of 1 MiB (the relay's backpressure),
	 * then stop the front with the connection up. */
	cr = srv_tls_channel_creds(t);
	char target[64];
	snprintf(target, sizeof target, "127.0.0.1:%d", port);
	tc_conn *c = tc_connect_creds(target, cr, NULL);
	Etcdserverpb__RangeRequest req = ETCDSERVERPB__RANGE_REQUEST__INIT;
	req.key.len = 1 << 20;
	req.key.data = calloc(1, req.key.len);
	ProtobufCMessage *resp = NULL;
	tc_status st = {0};
	for (int i = 0; i < 3; i++) {
		cr_expect_eq(tc_unary(c, M_WHO, &req.base, NULL, 0,
		                      &etcdserverpb__range_response__descriptor, &resp, &st, 5000,
		                      NULL, 0),
		             0, "%s", st.msg);
		if (resp != NULL)
			protobuf_c_message_free_unpacked(resp, NULL);
		resp = NULL;
	}
	free(req.key.data);
	srv_tlsfront_stop(f);
	tc_close(c);
	grpc_channel_credentials_release(cr);
	srv_rpc_shutdown(rpc);
	srv_tls_unref(t);
	grpc_shutdown();
}

Test(tlsfront, skip_client_san_and_bind_errors, .init = make_pki, .fini = rm_pki)
{
	grpc_init();
	srv_tls *t = front_tls(true);
	srv_rpc *rpc = NULL;
	srv_tlsfront *f = NULL;
	int port = 0;
	front_serve(t, &rpc, &f, &port);
	bool closed = true;
	char text[256];
	/* --experimental-peer-skip-client-san-verification: the SANs do not matter. */
	unsigned long e = ossl_client(port, "cnbadsan.crt", "cnbadsan.key", &closed, text,
	                              sizeof text);
	cr_expect_eq(e, 0, "%s", text);

	/* The port in use, and a URL that is not TLS. */
	char url[64], err[256] = "";
	snprintf(url, sizeof url, "https://127.0.0.1:%d", port);
	const char *urls[] = {url};
	srv_tlsfront_config fc = {.urls = urls, .n_urls = 1, .tls = t};
	srv_tlsfront *g = NULL;
	cr_expect_eq(srv_tlsfront_bind(&fc, &g, err, sizeof err), -1);
	cr_expect(strstr(err, "cannot listen on https://127.0.0.1:") != NULL, "%s", err);
	urls[0] = "http://127.0.0.1:0";
	cr_expect_eq(srv_tlsfront_bind(&fc, &g, err, sizeof err), -1);
	cr_expect(strstr(err, "not an https:// or unixs:// URL") != NULL, "%s", err);
	srv_tlsfront_stop(f);
	srv_rpc_shutdown(rpc);
	srv_tls_unref(t);
	grpc_shutdown();
}

Test(tlsfront, remote_alerts_in_gos_words)
{
	char buf[128] = "";
	cr_expect_eq(srv_tls_remote_alert_text(ERR_PACK(ERR_LIB_SSL, 0,
	                                                SSL_R_SSLV3_ALERT_BAD_CERTIFICATE),
	                                       buf, sizeof buf),
	             0);
	cr_expect_str_eq(buf, "remote error: tls: bad certificate");
	cr_expect_eq(srv_tls_remote_alert_text(ERR_PACK(ERR_LIB_SSL, 0, SSL_R_TLSV1_ALERT_UNKNOWN_CA),
	                                       buf, sizeof buf),
	             0);
	cr_expect_str_eq(buf, "remote error: tls: unknown certificate authority");
	cr_expect_eq(srv_tls_remote_alert_text(ERR_PACK(ERR_LIB_SSL, 0,
	                                                SSL_R_CERTIFICATE_VERIFY_FAILED),
	                                       buf, sizeof buf),
	             -1);
}
