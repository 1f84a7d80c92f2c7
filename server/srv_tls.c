/*
 * srv_tls.c: etcd's TLS behaviour (see srv_tls.h) on OpenSSL and the gRPC
 * core's TLS credentials.
 *
 * Files are parsed with OpenSSL once, at setup, and handed to the core
 * re-encoded (certificates as PEM, the key as PKCS#8 PEM) through a static
 * certificate provider, so the core never sees a file we did not check. The
 * checks the core cannot express (CRL serials without signature or date
 * checks, allowed CN / hostname) run in an external certificate verifier,
 * which the core calls once the TLS handshake has verified the chain; the
 * client side of peer channels chains the core's own host name verifier
 * behind it. etcd's checkSAN needs the connection's address, which a verifier
 * is not told: it runs per call (srv_tls_check_client_addr) on the auth
 * context's SAN properties and the call's peer address.
 *
 * The same checks serve srv_tlsfront's OpenSSL server (names_allowed in its
 * verify callback, crl_check and san_check after its handshake), and the
 * core's log lines pass through core_log, which turns a TLS alert received
 * by the core into Go's words.
 */
#include "server/srv_log.h"
#include "server/srv_tls.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netdb.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/support/alloc.h>
#include <grpc/support/log.h>
#include <grpc/support/string_util.h>

#define SAN_CACHE_SLOTS 16
#define SAN_CACHE_MS    10000 /* how long a DNS-based checkSAN verdict is reused */
#define LOG_REPEAT_MS   5000  /* the same log line is not repeated sooner */
#define LOG_RECENT      8     /* lines remembered for that */

typedef struct san_entry {
	char key[512]; /* "address|dns names" */
	int64_t at_ms;
	bool ok;
	char why[256];
} san_entry;

struct srv_tls {
	atomic_int refs;
	char side[8];    /* "client" | "peer" */
	char *cert_file; /* as used: given, or the auto-TLS path */
	char *key_file;
	char *ca_file;         /* "" when none */
	char *crl_file;        /* "" when none */
	char *cert_pem;        /* leaf and chain */
	char *key_pem;         /* PKCS#8; cleansed when freed */
	char *ca_pem;          /* roots for the other end's certificate; NULL = none loaded */
	bool client_cert_auth; /* as given (etcd's TLSInfo.ClientCertAuth) */
	bool require_client;   /* server ports request, require and verify client certs */
	char *allowed_cn;      /* "" when none */
	char *allowed_hostname;
	bool skip_client_san;
	bool self_cert; /* auto-TLS: peers and clients skip verifying it */
	srv_tls_log_fn log;
	void *log_ctx;

	pthread_mutex_t crl_mu; /* guards the CRL cache */
	X509_CRL *crl;
	struct stat crl_st;

	pthread_mutex_t san_mu; /* guards the checkSAN cache */
	san_entry san[SAN_CACHE_SLOTS];
	size_t san_next;

	pthread_mutex_t log_mu; /* guards the repeat filter */
	struct {
		char line[512];
		int64_t at_ms;
	} recent[LOG_RECENT];
	size_t recent_next;
};

/* ---- small helpers ---------------------------------------------------------- */

static void side_log(srv_tls_log_fn log, void *ctx, const char *level, const char *fmt, ...)
        __attribute__((format(printf, 4, 5)));
static void side_log(srv_tls_log_fn log, void *ctx, const char *level, const char *fmt, ...)
{
	if (log == NULL)
		return;
	char line[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(line, sizeof line, fmt, ap);
	va_end(ap);
	log(ctx, level, line);
}

/* A log line from a handshake or call check: a line logged within the last
 * LOG_REPEAT_MS is not logged again (a refused peer reconnects every second). */
static void tls_log(srv_tls *t, const char *level, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));
static void tls_log(srv_tls *t, const char *level, const char *fmt, ...)
{
	if (t->log == NULL)
		return;
	char line[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(line, sizeof line, fmt, ap);
	va_end(ap);
	int64_t now = srv_mono_ms();
	bool repeat = false;
	pthread_mutex_lock(&t->log_mu);
	for (size_t i = 0; i < LOG_RECENT && !repeat; i++)
		repeat = t->recent[i].at_ms != 0 && now - t->recent[i].at_ms < LOG_REPEAT_MS &&
		         strcmp(t->recent[i].line, line) == 0;
	if (!repeat) {
		size_t slot = t->recent_next++ % LOG_RECENT;
		snprintf(t->recent[slot].line, sizeof t->recent[slot].line, "%s", line);
		t->recent[slot].at_ms = now;
	}
	pthread_mutex_unlock(&t->log_mu);
	if (!repeat)
		t->log(t->log_ctx, level, line);
}

static bool given(const char *s)
{
	return s != NULL && *s != '\0';
}

static char *dup_or_empty(const char *s)
{
	return strdup(s != NULL ? s : "");
}

/* The flag names of one side, for messages. */
typedef struct side_flags {
	const char *cert, *key, *ca, *crl;
} side_flags;

static side_flags flags_of(const char *side)
{
	if (strcmp(side, "peer") == 0)
		return (side_flags){"--peer-cert-file", "--peer-key-file", "--peer-trusted-ca-file",
		                    "--peer-crl-file"};
	return (side_flags){"--cert-file", "--key-file", "--trusted-ca-file", "--client-crl-file"};
}

/* Read all of @path into a NUL-terminated malloc'd buffer. */
static int read_file(const char *flag, const char *path, char **out, size_t *len, char *err,
                     size_t errlen)
{
	FILE *f = fopen(path, "rb");
	if (f == NULL) {
		srv_errf(err, errlen, "%s=%s: cannot open the file: %s", flag, path,
		        strerror(errno));
		return -1;
	}
	size_t cap = 8192, n = 0;
	char *buf = malloc(cap + 1);
	while (buf != NULL) {
		size_t got = fread(buf + n, 1, cap - n, f);
		n += got;
		if (n < cap)
			break;
		char *nb = realloc(buf, cap * 2 + 1);
		if (nb == NULL) {
			free(buf);
			buf = NULL;
			break;
		}
		buf = nb;
		cap *= 2;
	}
	int rerr = ferror(f) ? errno : 0;
	fclose(f);
	if (buf == NULL) {
		srv_errf(err, errlen, "%s=%s: out of memory", flag, path);
		return -1;
	}
	if (rerr != 0) {
		free(buf);
		srv_errf(err, errlen, "%s=%s: cannot read the file: %s", flag, path, strerror(rerr));
		return -1;
	}
	buf[n] = '\0';
	*out = buf;
	*len = n;
	return 0;
}

/* No passphrase prompts: an encrypted key is refused. */
static int no_password(char *buf, int size, int rwflag, void *u)
{
	(void)buf, (void)size, (void)rwflag, (void)u;
	return 0;
}

/* Every PEM certificate in @data (other PEM blocks are skipped, as Go does). */
static STACK_OF(X509) * parse_certs(const char *data, size_t len)
{
	STACK_OF(X509) *sk = sk_X509_new_null();
	BIO *b = BIO_new_mem_buf(data, (int)len);
	if (sk == NULL || b == NULL) {
		sk_X509_free(sk);
		BIO_free(b);
		return NULL;
	}
	X509 *x;
	while ((x = PEM_read_bio_X509(b, NULL, no_password, NULL)) != NULL) {
		if (!sk_X509_push(sk, x)) {
			X509_free(x);
			break;
		}
	}
	ERR_clear_error(); /* the end of the input reads as an error */
	BIO_free(b);
	return sk;
}

static int load_certs(const char *flag, const char *path, STACK_OF(X509) * *out, char *err,
                      size_t errlen)
{
	char *data = NULL;
	size_t len = 0;
	if (read_file(flag, path, &data, &len, err, errlen) != 0)
		return -1;
	STACK_OF(X509) *sk = parse_certs(data, len);
	free(data);
	if (sk == NULL) {
		srv_errf(err, errlen, "%s=%s: out of memory", flag, path);
		return -1;
	}
	if (sk_X509_num(sk) == 0) {
		sk_X509_free(sk);
		srv_errf(err, errlen, "%s=%s: no PEM certificate in the file", flag, path);
		return -1;
	}
	*out = sk;
	return 0;
}

static int load_key(const char *flag, const char *path, EVP_PKEY **out, char *err, size_t errlen)
{
	char *data = NULL;
	size_t len = 0;
	if (read_file(flag, path, &data, &len, err, errlen) != 0)
		return -1;
	BIO *b = BIO_new_mem_buf(data, (int)len);
	EVP_PKEY *k = b != NULL ? PEM_read_bio_PrivateKey(b, NULL, no_password, NULL) : NULL;
	ERR_clear_error();
	BIO_free(b);
	OPENSSL_cleanse(data, len);
	free(data);
	if (k == NULL) {
		srv_errf(err, errlen,
		        "%s=%s: no PEM private key in the file (or it is encrypted, which is not "
		        "supported)",
		        flag, path);
		return -1;
	}
	*out = k;
	return 0;
}

/* The file's CRL, PEM or DER (Go's x509.ParseCRL takes both). NULL if neither. */
static X509_CRL *parse_crl(const char *data, size_t len)
{
	BIO *b = BIO_new_mem_buf(data, (int)len);
	X509_CRL *crl = b != NULL ? PEM_read_bio_X509_CRL(b, NULL, no_password, NULL) : NULL;
	BIO_free(b);
	if (crl == NULL) {
		const unsigned char *p = (const unsigned char *)data;
		crl = d2i_X509_CRL(NULL, &p, (long)len);
	}
	ERR_clear_error();
	return crl;
}

static int load_crl(const char *flag, const char *path, X509_CRL **out, struct stat *st, char *err,
                    size_t errlen)
{
	char *data = NULL;
	size_t len = 0;
	if (stat(path, st) != 0) {
		srv_errf(err, errlen, "%s=%s: cannot open the file: %s", flag, path,
		        strerror(errno));
		return -1;
	}
	if (read_file(flag, path, &data, &len, err, errlen) != 0)
		return -1;
	X509_CRL *crl = parse_crl(data, len);
	free(data);
	if (crl == NULL) {
		srv_errf(err, errlen, "%s=%s: not a certificate revocation list (PEM or DER)", flag,
		        path);
		return -1;
	}
	*out = crl;
	return 0;
}

/* ASN1 time as text ("Jan  2 00:00:00 2020 GMT"). */
static void asn1_time_text(const ASN1_TIME *t, char *buf, size_t len)
{
	BIO *b = BIO_new(BIO_s_mem());
	buf[0] = '\0';
	if (b == NULL)
		return;
	if (ASN1_TIME_print(b, t)) {
		int n = BIO_read(b, buf, (int)len - 1);
		buf[n > 0 ? n : 0] = '\0';
	}
	BIO_free(b);
}

/* The last CN of @x's subject (Go's pkix.Name.CommonName), or "". */
static void subject_cn(X509 *x, char *buf, size_t len)
{
	buf[0] = '\0';
	X509_NAME *nm = X509_get_subject_name(x);
	int idx = -1, last = -1;
	while ((idx = X509_NAME_get_index_by_NID(nm, NID_commonName, idx)) >= 0)
		last = idx;
	if (last < 0)
		return;
	ASN1_STRING *s = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(nm, last));
	unsigned char *u = NULL;
	int n = ASN1_STRING_to_UTF8(&u, s);
	if (n >= 0) {
		snprintf(buf, len, "%.*s", n, (const char *)u);
		OPENSSL_free(u);
	}
}

/* @sk as one PEM string (malloc'd), or NULL. */
static char *certs_pem(STACK_OF(X509) * sk)
{
	BIO *b = BIO_new(BIO_s_mem());
	if (b == NULL)
		return NULL;
	bool ok = true;
	for (int i = 0; i < sk_X509_num(sk) && ok; i++)
		ok = PEM_write_bio_X509(b, sk_X509_value(sk, i)) == 1;
	char *out = NULL;
	char *p = NULL;
	long n = BIO_get_mem_data(b, &p);
	if (ok && n > 0 && (out = malloc((size_t)n + 1)) != NULL) {
		memcpy(out, p, (size_t)n);
		out[n] = '\0';
	}
	BIO_free(b);
	return out;
}

static char *key_pem(EVP_PKEY *k)
{
	BIO *b = BIO_new(BIO_s_secmem());
	if (b == NULL)
		b = BIO_new(BIO_s_mem());
	if (b == NULL)
		return NULL;
	char *out = NULL;
	if (PEM_write_bio_PrivateKey(b, k, NULL, NULL, 0, NULL, NULL) == 1) {
		char *p = NULL;
		long n = BIO_get_mem_data(b, &p);
		if (n > 0 && (out = malloc((size_t)n + 1)) != NULL) {
			memcpy(out, p, (size_t)n);
			out[n] = '\0';
		}
	}
	BIO_free(b);
	return out;
}

/* The system's CA bundle as PEM (Go's system pool: SSL_CERT_FILE, else
 * OpenSSL's default file), read once per process; NULL if none is readable.
 * Owned by this file. */
static char *sys_roots_pem;
static pthread_once_t sys_roots_once = PTHREAD_ONCE_INIT;

static void sys_roots_load(void)
{
	const char *cands[3] = {getenv(X509_get_default_cert_file_env()),
	                        X509_get_default_cert_file(), "/etc/ssl/certs/ca-certificates.crt"};
	for (size_t i = 0; i < 3 && sys_roots_pem == NULL; i++) {
		if (!given(cands[i]))
			continue;
		char *data = NULL;
		size_t len = 0;
		char e[8];
		if (read_file("", cands[i], &data, &len, e, sizeof e) != 0)
			continue;
		STACK_OF(X509) *sk = parse_certs(data, len);
		free(data);
		if (sk != NULL && sk_X509_num(sk) > 0)
			sys_roots_pem = certs_pem(sk);
		sk_X509_pop_free(sk, X509_free);
	}
}

static const char *system_roots(void)
{
	pthread_once(&sys_roots_once, sys_roots_load);
	return sys_roots_pem;
}

/* ---- life ------------------------------------------------------------------- */

void srv_tls_ref(srv_tls *t)
{
	if (t != NULL)
		atomic_fetch_add(&t->refs, 1);
}

void srv_tls_unref(srv_tls *t)
{
	if (t == NULL || atomic_fetch_sub(&t->refs, 1) != 1)
		return;
	free(t->cert_file);
	free(t->key_file);
	free(t->ca_file);
	free(t->crl_file);
	free(t->cert_pem);
	if (t->key_pem != NULL) {
		OPENSSL_cleanse(t->key_pem, strlen(t->key_pem));
		free(t->key_pem);
	}
	free(t->ca_pem);
	free(t->allowed_cn);
	free(t->allowed_hostname);
	X509_CRL_free(t->crl);
	pthread_mutex_destroy(&t->crl_mu);
	pthread_mutex_destroy(&t->san_mu);
	pthread_mutex_destroy(&t->log_mu);
	free(t);
}

void srv_tls_describe(const srv_tls *t, char *buf, size_t len)
{
	snprintf(buf, len,
	         "cert = %s, key = %s, trusted-ca = %s, client-cert-auth = %s, crl-file = %s",
	         t->cert_file, t->key_file, t->ca_file, t->client_cert_auth ? "true" : "false",
	         t->crl_file);
}

bool srv_tls_checks_client_addr(const srv_tls *t)
{
	return t != NULL && strcmp(t->side, "peer") == 0 && !t->skip_client_san;
}

/* ---- auto-TLS ------------------------------------------------------------- */

/* mkdir -p with mode 0700 (etcd's fileutil.TouchDirAll). */
static int mkdir_all(const char *dir, char *err, size_t errlen)
{
	char p[PATH_MAX];
	if (snprintf(p, sizeof p, "%s", dir) >= (int)sizeof p) {
		srv_errf(err, errlen, "%s: path too long", dir);
		return -1;
	}
	for (char *s = p + 1; *s; s++) {
		if (*s != '/')
			continue;
		*s = '\0';
		if (mkdir(p, 0700) != 0 && errno != EEXIST) {
			srv_errf(err, errlen, "cannot create cert directory %s: %s", p,
			        strerror(errno));
			return -1;
		}
		*s = '/';
	}
	if (mkdir(p, 0700) != 0 && errno != EEXIST) {
		srv_errf(err, errlen, "cannot create cert directory %s: %s", p, strerror(errno));
		return -1;
	}
	return 0;
}

/* "host:port" -> host (brackets of an IPv6 literal removed). */
static void host_of(const char *hostport, char *host, size_t len)
{
	const char *colon = strrchr(hostport, ':');
	size_t n = colon != NULL ? (size_t)(colon - hostport) : strlen(hostport);
	if (n >= 2 && hostport[0] == '[' && hostport[n - 1] == ']') {
		hostport++;
		n -= 2;
	}
	snprintf(host, len, "%.*s", (int)n, hostport);
}

static bool is_ip(const char *s)
{
	unsigned char b[16];
	return inet_pton(AF_INET, s, b) == 1 || inet_pton(AF_INET6, s, b) == 1;
}

static int add_ext(X509 *x, int nid, const char *value)
{
	X509V3_CTX ctx;
	X509V3_set_ctx_nodb(&ctx);
	X509V3_set_ctx(&ctx, x, x, NULL, NULL, 0);
	X509_EXTENSION *e = X509V3_EXT_conf_nid(NULL, &ctx, nid, value);
	if (e == NULL)
		return -1;
	int ok = X509_add_ext(x, e, -1);
	X509_EXTENSION_free(e);
	return ok == 1 ? 0 : -1;
}

int srv_tls_self_cert(const char *dir, const char *const *hosts, size_t n, char *err, size_t errlen)
{
	if (mkdir_all(dir, err, errlen) != 0)
		return -1;
	char certp[PATH_MAX + 16], keyp[PATH_MAX + 16];
	if (strlen(dir) >= PATH_MAX) {
		srv_errf(err, errlen, "%s: path too long", dir);
		return -1;
	}
	snprintf(certp, sizeof certp, "%s/cert.pem", dir);
	snprintf(keyp, sizeof keyp, "%s/key.pem", dir);
	struct stat st;
	if (stat(certp, &st) == 0 && stat(keyp, &st) == 0)
		return 0; /* kept from an earlier start, as etcd keeps them */

	int rc = -1;
	EVP_PKEY *pk = EVP_EC_gen("P-521");
	X509 *x = X509_new();
	BIGNUM *serial = BN_new(), *limit = BN_new();
	char *san = NULL;
	FILE *cf = NULL, *kf = NULL;
	if (pk == NULL || x == NULL || serial == NULL || limit == NULL) {
		srv_errf(err, errlen, "cannot generate ECDSA key");
		goto out;
	}
	/* A serial below 2^128, as etcd's. */
	if (!BN_lshift(limit, BN_value_one(), 128) || !BN_rand_range(serial, limit) ||
	    BN_to_ASN1_INTEGER(serial, X509_get_serialNumber(x)) == NULL) {
		srv_errf(err, errlen, "cannot generate random number");
		goto out;
	}
	X509_set_version(x, X509_VERSION_3);
	X509_NAME *nm = X509_get_subject_name(x);
	X509_NAME_add_entry_by_txt(nm, "O", MBSTRING_ASC, (const unsigned char *)"etcd", -1, -1, 0);
	X509_set_issuer_name(x, nm);
	X509_gmtime_adj(X509_getm_notBefore(x), 0);
	X509_gmtime_adj(X509_getm_notAfter(x), 365L * 24 * 3600);
	X509_set_pubkey(x, pk);
	size_t cap = 1;
	for (size_t i = 0; i < n; i++)
		cap += strlen(hosts[i]) + 8;
	san = calloc(1, cap);
	if (san == NULL) {
		srv_errf(err, errlen, "out of memory");
		goto out;
	}
	for (size_t i = 0; i < n; i++) {
		char h[256];
		host_of(hosts[i], h, sizeof h);
		if (h[0] == '\0')
			continue;
		if (san[0])
			strcat(san, ",");
		strcat(san, is_ip(h) ? "IP:" : "DNS:");
		strcat(san, h);
	}
	if (add_ext(x, NID_basic_constraints, "critical,CA:FALSE") != 0 ||
	    add_ext(x, NID_key_usage, "critical,digitalSignature,keyEncipherment") != 0 ||
	    add_ext(x, NID_ext_key_usage, "serverAuth") != 0 ||
	    (san[0] && add_ext(x, NID_subject_alt_name, san) != 0) ||
	    X509_sign(x, pk, EVP_sha512()) == 0) {
		srv_errf(err, errlen, "cannot generate x509 certificate");
		goto out;
	}
	cf = fopen(certp, "w");
	if (cf == NULL) {
		srv_errf(err, errlen, "cannot create cert file %s: %s", certp, strerror(errno));
		goto out;
	}
	int kfd = open(keyp, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	kf = kfd >= 0 ? fdopen(kfd, "w") : NULL;
	if (kf == NULL) {
		srv_errf(err, errlen, "cannot create key file %s: %s", keyp, strerror(errno));
		if (kfd >= 0)
			close(kfd);
		goto out;
	}
	BIO *kb = BIO_new_fp(kf, BIO_NOCLOSE);
	int kok = kb != NULL &&
	          PEM_write_bio_PrivateKey_traditional(kb, pk, NULL, NULL, 0, NULL, NULL) == 1 &&
	          BIO_flush(kb) == 1;
	BIO_free(kb);
	if (PEM_write_X509(cf, x) != 1 || !kok) {
		srv_errf(err, errlen, "cannot write %s / %s", certp, keyp);
		goto out;
	}
	rc = 0;
out:
	if (cf != NULL && fclose(cf) != 0 && rc == 0) {
		srv_errf(err, errlen, "cannot write cert file %s: %s", certp, strerror(errno));
		rc = -1;
	}
	if (kf != NULL && fclose(kf) != 0 && rc == 0) {
		srv_errf(err, errlen, "cannot write key file %s: %s", keyp, strerror(errno));
		rc = -1;
	}
	if (rc != 0) { /* never leave half a pair that a later start would reuse */
		unlink(certp);
		unlink(keyp);
	}
	ERR_clear_error();
	free(san);
	BN_free(serial);
	BN_free(limit);
	X509_free(x);
	EVP_PKEY_free(pk);
	return rc;
}

/* ---- setup ------------------------------------------------------------------ */

/* The part of a listen URL after "scheme://" (its "host:port"). */
static const char *url_rest(const char *url)
{
	const char *sep = strstr(url, "://");
	return sep != NULL ? sep + 3 : url;
}

static bool scheme_is(const char *url, const char *scheme)
{
	size_t n = strlen(scheme);
	return strncmp(url, scheme, n) == 0 && strncmp(url + n, "://", 3) == 0;
}

/* etcd's warnings for listen URLs that stay plaintext while TLS is configured. */
static void warn_plain_urls(const srv_tls_side *s, bool have_certs, bool cca)
{
	bool peer = strcmp(s->side, "peer") == 0;
	for (size_t i = 0; i < s->n_listen; i++) {
		const char *u = s->listen_urls[i];
		bool plain = scheme_is(u, "http") || (!peer && scheme_is(u, "unix"));
		if (!plain)
			continue;
		if (have_certs && peer)
			side_log(s->log, s->log_ctx, "warn",
			         "The scheme of peer url %s is HTTP while peer key/cert files are "
			         "presented. Ignored peer key/cert files.",
			         u);
		else if (have_certs)
			side_log(s->log, s->log_ctx, "warn",
			         "The scheme of client url %s is HTTP while peer key/cert files are "
			         "presented. Ignored key/cert files.",
			         u);
		if (cca)
			side_log(s->log, s->log_ctx, "warn",
			         "The scheme of %s url %s is HTTP while client cert auth "
			         "(--%sclient-cert-auth) is enabled. Ignored client cert auth for "
			         "this url.",
			         peer ? "peer" : "client", u, peer ? "peer-" : "");
	}
}

/* Check and load the files of @t (paths already set). */
static int load_files(srv_tls *t, const side_flags *fl, bool check_dates, char *err, size_t errlen)
{
	STACK_OF(X509) *chain = NULL;
	EVP_PKEY *key = NULL;
	int rc = -1;
	if (load_certs(fl->cert, t->cert_file, &chain, err, errlen) != 0 ||
	    load_key(fl->key, t->key_file, &key, err, errlen) != 0)
		goto out;
	X509 *leaf = sk_X509_value(chain, 0);
	if (X509_check_private_key(leaf, key) != 1) {
		ERR_clear_error();
		srv_errf(err, errlen,
		        "%s=%s: the private key does not match the certificate in %s=%s", fl->key,
		        t->key_file, fl->cert, t->cert_file);
		goto out;
	}
	if (check_dates) {
		char when[64], cn[128];
		subject_cn(leaf, cn, sizeof cn);
		if (X509_cmp_current_time(X509_get0_notAfter(leaf)) < 0) {
			asn1_time_text(X509_get0_notAfter(leaf), when, sizeof when);
			srv_errf(err, errlen, "%s=%s: the certificate (CN \"%s\") expired on %s",
			        fl->cert, t->cert_file, cn, when);
			goto out;
		}
		if (X509_cmp_current_time(X509_get0_notBefore(leaf)) > 0) {
			asn1_time_text(X509_get0_notBefore(leaf), when, sizeof when);
			srv_errf(err, errlen,
			        "%s=%s: the certificate (CN \"%s\") is not valid before %s",
			        fl->cert, t->cert_file, cn, when);
			goto out;
		}
	}
	t->cert_pem = certs_pem(chain);
	t->key_pem = key_pem(key);
	if (t->cert_pem == NULL || t->key_pem == NULL) {
		srv_errf(err, errlen, "%s=%s: cannot re-encode the certificate or key", fl->cert,
		        t->cert_file);
		goto out;
	}
	if (given(t->ca_file)) {
		STACK_OF(X509) *ca = NULL;
		if (load_certs(fl->ca, t->ca_file, &ca, err, errlen) != 0)
			goto out;
		t->ca_pem = certs_pem(ca);
		sk_X509_pop_free(ca, X509_free);
		if (t->ca_pem == NULL) {
			srv_errf(err, errlen, "%s=%s: out of memory", fl->ca, t->ca_file);
			goto out;
		}
	} else if (t->require_client) {
		t->ca_pem = system_roots() != NULL ? strdup(system_roots()) : NULL;
		if (t->ca_pem == NULL) {
			srv_errf(err, errlen,
			        "--%sclient-cert-auth without %s needs the system's CA bundle "
			        "(%s), which cannot be read",
			        strcmp(t->side, "peer") == 0 ? "peer-" : "", fl->ca,
			        X509_get_default_cert_file());
			goto out;
		}
	}
	if (given(t->crl_file) &&
	    load_crl(fl->crl, t->crl_file, &t->crl, &t->crl_st, err, errlen) != 0)
		goto out;
	rc = 0;
out:
	sk_X509_pop_free(chain, X509_free);
	EVP_PKEY_free(key);
	return rc;
}

int srv_tls_setup(const srv_tls_side *s, srv_tls **out, char *err, size_t errlen)
{
	*out = NULL;
	bool peer = strcmp(s->side, "peer") == 0;
	side_flags fl = flags_of(s->side);
	const char *certf = given(s->cert_file) ? s->cert_file : NULL;
	const char *keyf = given(s->key_file) ? s->key_file : NULL;
	char autodir[PATH_MAX], autocert[PATH_MAX + 16], autokey[PATH_MAX + 16];
	bool self = false;
	if (s->auto_tls && (certf != NULL || keyf != NULL)) {
		side_log(s->log, s->log_ctx, "warn", "ignoring %s auto TLS since certs given",
		         s->side);
	} else if (s->auto_tls) {
		int w = snprintf(autodir, sizeof autodir, "%s/fixtures/%s",
		                 s->data_dir ? s->data_dir : ".", s->side);
		if (w < 0 || (size_t)w >= sizeof autodir) {
			srv_errf(err, errlen,
			        "failed to get %s self-signed certs: data dir path too long",
			        s->side);
			return -1;
		}
		const char *hosts[64];
		size_t nh = 0;
		for (size_t i = 0; i < s->n_listen && nh < 64; i++)
			hosts[nh++] = url_rest(s->listen_urls[i]);
		char why[512] = "";
		if (srv_tls_self_cert(autodir, hosts, nh, why, sizeof why) != 0) {
			srv_errf(err, errlen, "failed to get %s self-signed certs: %s", s->side,
			        why);
			return -1;
		}
		snprintf(autocert, sizeof autocert, "%s/cert.pem", autodir);
		snprintf(autokey, sizeof autokey, "%s/key.pem", autodir);
		certf = autocert;
		keyf = autokey;
		self = true;
	}
	/* Auto-TLS replaces the whole TLSInfo: nothing else of the side applies. */
	bool cca = self ? false : s->client_cert_auth;
	if (certf == NULL && keyf == NULL) {
		warn_plain_urls(s, false, cca);
		return 0;
	}
	if (certf == NULL || keyf == NULL) {
		srv_errf(err, errlen, "%s and %s must both be given (%s \"%s\", %s \"%s\")", fl.cert,
		        fl.key, fl.cert, certf ? certf : "", fl.key, keyf ? keyf : "");
		return -1;
	}

	srv_tls *t = calloc(1, sizeof *t);
	if (t == NULL) {
		srv_errf(err, errlen, "out of memory");
		return -1;
	}
	atomic_init(&t->refs, 1);
	snprintf(t->side, sizeof t->side, "%s", peer ? "peer" : "client");
	pthread_mutex_init(&t->crl_mu, NULL);
	pthread_mutex_init(&t->san_mu, NULL);
	pthread_mutex_init(&t->log_mu, NULL);
	t->log = s->log;
	t->log_ctx = s->log_ctx;
	t->self_cert = self;
	t->client_cert_auth = cca;
	t->cert_file = strdup(certf);
	t->key_file = strdup(keyf);
	t->ca_file = dup_or_empty(self ? NULL : s->trusted_ca_file);
	t->crl_file = dup_or_empty(self ? NULL : s->crl_file);
	t->allowed_cn = dup_or_empty(self || !peer ? NULL : s->allowed_cn);
	t->allowed_hostname = dup_or_empty(self ? NULL : s->allowed_hostname);
	t->skip_client_san = self ? false : s->skip_client_san;
	t->require_client = given(t->ca_file) || cca;
	if (!t->cert_file || !t->key_file || !t->ca_file || !t->crl_file || !t->allowed_cn ||
	    !t->allowed_hostname) {
		srv_tls_unref(t);
		srv_errf(err, errlen, "out of memory");
		return -1;
	}
	if (given(t->allowed_cn) && given(t->allowed_hostname)) {
		srv_errf(err, errlen,
		        "AllowedCN and AllowedHostname are mutually exclusive (cn=\"%s\", "
		        "hostname=\"%s\")",
		        t->allowed_cn, t->allowed_hostname);
		srv_tls_unref(t);
		return -1;
	}
	char desc[1024];
	srv_tls_describe(t, desc, sizeof desc);
	if (peer)
		side_log(s->log, s->log_ctx, "info", "peerTLS: %s", desc);
	warn_plain_urls(s, true, cca);
	/* An auto-TLS certificate is never verified by anyone: etcd serves an
	 * expired one too, so only given certificates have their dates checked. */
	if (load_files(t, &fl, !self, err, errlen) != 0) {
		srv_tls_unref(t);
		return -1;
	}
	if (!peer)
		side_log(s->log, s->log_ctx, "info", "ClientTLS: %s", desc);
	*out = t;
	return 0;
}

/* ---- handshake checks --------------------------------------------------------- */

/* Go's %x of a serial's big-endian magnitude bytes. */
static void serial_hex(const ASN1_INTEGER *ai, char *buf, size_t len)
{
	buf[0] = '\0';
	BIGNUM *bn = ASN1_INTEGER_to_BN(ai, NULL);
	if (bn == NULL)
		return;
	char *h = BN_is_zero(bn) ? NULL : BN_bn2hex(bn);
	if (h != NULL) {
		const char *p = h[0] == '-' ? h + 1 : h;
		size_t i = 0;
		for (; p[i] && i + 1 < len; i++)
			buf[i] = (char)(p[i] >= 'A' && p[i] <= 'F' ? p[i] - 'A' + 'a' : p[i]);
		buf[i] = '\0';
		OPENSSL_free(h);
	}
	BN_free(bn);
}

/* Whether any of @certs is in the CRL (re-read first if the file changed).
 * Returns 0 (none), 1 (revoked: @why), -1 (CRL unreadable: @why). */
static int crl_check(srv_tls *t, STACK_OF(X509) * certs, char *why, size_t whylen)
{
	int rc = 0;
	pthread_mutex_lock(&t->crl_mu);
	struct stat st;
	if (stat(t->crl_file, &st) != 0) {
		srv_errf(why, whylen, "open %s: %s", t->crl_file, strerror(errno));
		rc = -1;
		goto out;
	}
	if (t->crl == NULL || st.st_mtim.tv_sec != t->crl_st.st_mtim.tv_sec ||
	    st.st_mtim.tv_nsec != t->crl_st.st_mtim.tv_nsec || st.st_size != t->crl_st.st_size ||
	    st.st_ino != t->crl_st.st_ino) {
		X509_CRL *crl = NULL;
		struct stat nst;
		char e[512];
		side_flags fl = flags_of(t->side);
		if (load_crl(fl.crl, t->crl_file, &crl, &nst, e, sizeof e) != 0) {
			srv_errf(why, whylen, "%s", e);
			rc = -1;
			goto out;
		}
		X509_CRL_free(t->crl);
		t->crl = crl;
		t->crl_st = nst;
	}
	STACK_OF(X509_REVOKED) *revs = X509_CRL_get_REVOKED(t->crl);
	for (int i = 0; i < sk_X509_num(certs) && rc == 0; i++) {
		const ASN1_INTEGER *sn = X509_get0_serialNumber(sk_X509_value(certs, i));
		for (int j = 0; j < sk_X509_REVOKED_num(revs); j++) {
			const X509_REVOKED *r = sk_X509_REVOKED_value(revs, j);
			if (ASN1_INTEGER_cmp(X509_REVOKED_get0_serialNumber(r), sn) == 0) {
				char hex[128];
				serial_hex(sn, hex, sizeof hex);
				srv_errf(why, whylen, "transport: certificate serial %s revoked",
				        hex);
				rc = 1;
				break;
			}
		}
	}
out:
	pthread_mutex_unlock(&t->crl_mu);
	return rc;
}

/* Go's cert.VerifyHostname(@h) for the allowed-hostname checks (SANs only). */
static bool cert_matches_host(X509 *x, const char *h)
{
	int r = is_ip(h) ? X509_check_ip_asc(x, h, 0)
	                 : X509_check_host(x, h, strlen(h), X509_CHECK_FLAG_NEVER_CHECK_SUBJECT,
	                                   NULL);
	ERR_clear_error();
	return r == 1;
}

/* Go's %q of a string list: ["a" "b"]. */
static void quote_list(char *const *v, size_t n, char *buf, size_t len)
{
	size_t o = (size_t)snprintf(buf, len, "[");
	for (size_t i = 0; i < n && o < len; i++)
		o += (size_t)snprintf(buf + o, len - o, "%s\"%s\"", i ? " " : "", v[i]);
	if (o < len)
		snprintf(buf + o, len - o, "]");
}

/* Whether @leaf passes --peer-cert-allowed-cn (its CN) or the allowed hostname
 * (its SANs); true when neither is set. */
static bool names_allowed(const srv_tls *t, X509 *leaf)
{
	if (given(t->allowed_cn)) {
		char cn[256];
		subject_cn(leaf, cn, sizeof cn);
		return strcmp(cn, t->allowed_cn) == 0;
	}
	return !given(t->allowed_hostname) || cert_matches_host(leaf, t->allowed_hostname);
}

/*
 * The checks the core leaves to us, on the other end's certificate: allowed
 * CN / hostname (both sides, as etcd's baseConfig.VerifyPeerCertificate) and,
 * on the server side, the CRL. 0 or -1 with @why.
 */
static int check_peer_cert(srv_tls *t, bool server, const char *pem, const char *chain, char *why,
                           size_t whylen)
{
	bool want_names = given(t->allowed_cn) || given(t->allowed_hostname);
	bool want_crl = server && given(t->crl_file);
	if (!want_names && !want_crl)
		return 0;
	if (pem == NULL || *pem == '\0') {
		if (!want_names || server)
			return 0; /* nothing presented where nothing was required */
		srv_errf(why, whylen, "client certificate authentication failed");
		return -1;
	}
	STACK_OF(X509) *certs = parse_certs(pem, strlen(pem));
	if (certs == NULL || sk_X509_num(certs) == 0) {
		sk_X509_free(certs);
		srv_errf(why, whylen, "cannot parse the peer certificate");
		return -1;
	}
	int rc = names_allowed(t, sk_X509_value(certs, 0)) ? 0 : -1;
	if (rc != 0) {
		srv_errf(why, whylen, "client certificate authentication failed");
	} else if (want_crl) {
		/* etcd checks every certificate the client sent: the leaf and its chain. */
		if (chain != NULL && *chain != '\0') {
			STACK_OF(X509) *more = parse_certs(chain, strlen(chain));
			for (int i = 0; more != NULL && i < sk_X509_num(more); i++)
				if (sk_X509_push(certs, sk_X509_value(more, i)))
					X509_up_ref(sk_X509_value(more, i));
			sk_X509_pop_free(more, X509_free);
		}
		if (crl_check(t, certs, why, whylen) != 0)
			rc = -1;
	}
	sk_X509_pop_free(certs, X509_free);
	return rc;
}

typedef struct tls_verifier {
	grpc_tls_certificate_verifier_external ext; /* its user_data is this struct */
	srv_tls *tls;
	bool server;                             /* verifying clients (else servers) */
	grpc_tls_certificate_verifier *hostname; /* client side: the core's host check */
} tls_verifier;

static int verifier_verify(void *user_data, grpc_tls_custom_verification_check_request *req,
                           grpc_tls_on_custom_verification_check_done_cb cb, void *cb_arg,
                           grpc_status_code *sync_status, char **sync_details)
{
	tls_verifier *v = user_data;
	char why[512] = "";
	if (check_peer_cert(v->tls, v->server, req->peer_info.peer_cert,
	                    req->peer_info.peer_cert_full_chain, why, sizeof why) != 0) {
		const struct san_names *sn = &req->peer_info.san_names;
		char ips[256], dns[256];
		quote_list(sn->ip_names, sn->ip_names_size, ips, sizeof ips);
		quote_list(sn->dns_names, sn->dns_names_size, dns, sizeof dns);
		if (v->server)
			tls_log(v->tls, "info",
			        "rejected connection on the %s port (error \"%s\", CN \"%s\", "
			        "IPAddresses %s, DNSNames %s)",
			        v->tls->side, why,
			        req->peer_info.common_name ? req->peer_info.common_name : "", ips,
			        dns);
		else
			tls_log(v->tls, "warn",
			        "TLS handshake with %s refused (error \"%s\", CN \"%s\", "
			        "IPAddresses %s, "
			        "DNSNames %s)",
			        req->target_name ? req->target_name : "?", why,
			        req->peer_info.common_name ? req->peer_info.common_name : "", ips,
			        dns);
		*sync_status = GRPC_STATUS_UNAUTHENTICATED;
		*sync_details = gpr_strdup(why);
		return 1;
	}
	if (v->hostname != NULL)
		return grpc_tls_certificate_verifier_verify(v->hostname, req, cb, cb_arg,
		                                            sync_status, sync_details);
	*sync_status = GRPC_STATUS_OK;
	*sync_details = NULL;
	return 1;
}

static void verifier_cancel(void *user_data, grpc_tls_custom_verification_check_request *req)
{
	(void)user_data, (void)req; /* verification is synchronous: nothing in flight */
}

static void verifier_destruct(void *user_data)
{
	tls_verifier *v = user_data;
	if (v->hostname != NULL)
		grpc_tls_certificate_verifier_release(v->hostname);
	srv_tls_unref(v->tls);
	free(v);
}

/* Our verifier for @t (one reference to @t held by it), or NULL. */
static grpc_tls_certificate_verifier *verifier_new(srv_tls *t, bool server)
{
	tls_verifier *v = calloc(1, sizeof *v);
	if (v == NULL)
		return NULL;
	v->ext.user_data = v;
	v->ext.verify = verifier_verify;
	v->ext.cancel = verifier_cancel;
	v->ext.destruct = verifier_destruct;
	v->server = server;
	if (!server) {
		v->hostname = grpc_tls_certificate_verifier_host_name_create();
		if (v->hostname == NULL) {
			free(v);
			return NULL;
		}
	}
	srv_tls_ref(t);
	v->tls = t;
	grpc_tls_certificate_verifier *gv = grpc_tls_certificate_verifier_external_create(&v->ext);
	if (gv == NULL)
		verifier_destruct(v);
	return gv;
}

void srv_tls_pems(const srv_tls *t, const char **cert, const char **key, const char **ca)
{
	*cert = t->cert_pem;
	*key = t->key_pem;
	*ca = t->require_client ? t->ca_pem : NULL;
}

int srv_tls_check_client_pem(srv_tls *t, const char *pem, char *why, size_t whylen)
{
	if (check_peer_cert(t, true, pem, NULL, why, whylen) == 0)
		return 0;
	tls_log(t, "info", "rejected connection on the %s port (error \"%s\")", t->side, why);
	return -1;
}

/* ---- credentials ---------------------------------------------------------------- */

struct grpc_server_credentials *srv_tls_server_creds(srv_tls *t)
{
	/* The verifier first: options cannot be destroyed once made (no such API). */
	grpc_tls_certificate_verifier *v = NULL;
	if (t->require_client && (v = verifier_new(t, true)) == NULL)
		return NULL;
	grpc_tls_credentials_options *o = grpc_tls_credentials_options_create();
	grpc_tls_identity_pairs *pairs = grpc_tls_identity_pairs_create();
	grpc_tls_identity_pairs_add_pair(pairs, t->key_pem, t->cert_pem);
	grpc_tls_certificate_provider *p = grpc_tls_certificate_provider_static_data_create(
	        t->require_client ? t->ca_pem : NULL, pairs);
	grpc_tls_credentials_options_set_certificate_provider(o, p);
	grpc_tls_certificate_provider_release(p);
	grpc_tls_credentials_options_watch_identity_key_cert_pairs(o);
	if (t->require_client) {
		grpc_tls_credentials_options_watch_root_certs(o);
		grpc_tls_credentials_options_set_cert_request_type(
		        o, GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY);
		grpc_tls_credentials_options_set_certificate_verifier(o, v);
		grpc_tls_certificate_verifier_release(v);
	} else {
		grpc_tls_credentials_options_set_cert_request_type(
		        o, GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE);
	}
	return grpc_tls_server_credentials_create(o);
}

/*
 * Channel credentials presenting @key_pem/@cert_pem (both NULL: no client
 * certificate) and trusting @roots, with verifier @v (its reference passes to
 * the credentials); !@verify: the server's certificate is not checked at all.
 */
static struct grpc_channel_credentials *channel_creds(const char *key_pem, const char *cert_pem,
                                                      const char *roots, bool verify,
                                                      grpc_tls_certificate_verifier *v)
{
	grpc_tls_credentials_options *o = grpc_tls_credentials_options_create();
	grpc_tls_identity_pairs *pairs = NULL;
	if (cert_pem != NULL) {
		pairs = grpc_tls_identity_pairs_create();
		grpc_tls_identity_pairs_add_pair(pairs, key_pem, cert_pem);
	}
	/* The core's static provider needs roots or an identity (it asserts). */
	if (roots != NULL || pairs != NULL) {
		grpc_tls_certificate_provider *p =
		        grpc_tls_certificate_provider_static_data_create(roots, pairs);
		grpc_tls_credentials_options_set_certificate_provider(o, p);
		grpc_tls_certificate_provider_release(p);
	}
	if (pairs != NULL)
		grpc_tls_credentials_options_watch_identity_key_cert_pairs(o);
	if (roots != NULL)
		grpc_tls_credentials_options_watch_root_certs(o);
	grpc_tls_credentials_options_set_verify_server_cert(o, verify ? 1 : 0);
	if (!verify)
		grpc_tls_credentials_options_set_check_call_host(o, 0);
	grpc_tls_credentials_options_set_certificate_verifier(o, v);
	grpc_tls_certificate_verifier_release(v);
	return grpc_tls_credentials_create(o);
}

struct grpc_channel_credentials *srv_tls_channel_creds(srv_tls *t)
{
	bool verify = t == NULL || !t->self_cert;
	grpc_tls_certificate_verifier *v;
	if (!verify)
		v = grpc_tls_certificate_verifier_no_op_create();
	else if (t != NULL)
		v = verifier_new(t, false);
	else
		v = grpc_tls_certificate_verifier_host_name_create();
	if (v == NULL)
		return NULL;
	const char *roots = NULL;
	if (verify)
		roots = t != NULL && given(t->ca_file) ? t->ca_pem : system_roots();
	/* !verify: etcd's InsecureSkipVerify for its own self-signed certificates. */
	return channel_creds(t ? t->key_pem : NULL, t ? t->cert_pem : NULL, roots, verify, v);
}

int srv_tls_file_cn(const char *flag, const char *path, char *cn, size_t cnlen, char *err,
                    size_t errlen)
{
	STACK_OF(X509) *sk = NULL;
	if (load_certs(flag, path, &sk, err, errlen) != 0)
		return -1;
	subject_cn(sk_X509_value(sk, 0), cn, cnlen);
	sk_X509_pop_free(sk, X509_free);
	return 0;
}

struct grpc_channel_credentials *srv_tls_dial_creds(const srv_tls_dial *d, char *err,
                                                    size_t errlen)
{
	STACK_OF(X509) *chain = NULL, *ca = NULL;
	EVP_PKEY *key = NULL;
	char *cert_pem = NULL, *key_pem_s = NULL, *ca_pem = NULL;
	struct grpc_channel_credentials *c = NULL;
	if (given(d->cert_file) != given(d->key_file)) {
		srv_errf(err, errlen, "%s and %s must both be given (%s \"%s\", %s \"%s\")",
		        d->cert_flag, d->key_flag, d->cert_flag, d->cert_file ? d->cert_file : "",
		        d->key_flag, d->key_file ? d->key_file : "");
		return NULL;
	}
	if (given(d->cert_file)) {
		if (load_certs(d->cert_flag, d->cert_file, &chain, err, errlen) != 0 ||
		    load_key(d->key_flag, d->key_file, &key, err, errlen) != 0)
			goto out;
		if (X509_check_private_key(sk_X509_value(chain, 0), key) != 1) {
			ERR_clear_error();
			srv_errf(err, errlen,
			        "%s=%s: the private key does not match the certificate in %s=%s",
			        d->key_flag, d->key_file, d->cert_flag, d->cert_file);
			goto out;
		}
		cert_pem = certs_pem(chain);
		key_pem_s = key_pem(key);
		if (cert_pem == NULL || key_pem_s == NULL) {
			srv_errf(err, errlen, "%s=%s: cannot re-encode the certificate or key",
			        d->cert_flag, d->cert_file);
			goto out;
		}
	}
	if (given(d->ca_file)) {
		if (load_certs(d->ca_flag, d->ca_file, &ca, err, errlen) != 0)
			goto out;
		if ((ca_pem = certs_pem(ca)) == NULL) {
			srv_errf(err, errlen, "%s=%s: out of memory", d->ca_flag, d->ca_file);
			goto out;
		}
	}
	grpc_tls_certificate_verifier *v = d->skip_verify
	                                           ? grpc_tls_certificate_verifier_no_op_create()
	                                           : grpc_tls_certificate_verifier_host_name_create();
	const char *roots = d->skip_verify ? NULL : ca_pem != NULL ? ca_pem : system_roots();
	if (v == NULL || (c = channel_creds(key_pem_s, cert_pem, roots, !d->skip_verify, v)) == NULL)
		srv_errf(err, errlen, "out of memory");
out:
	sk_X509_pop_free(chain, X509_free);
	sk_X509_pop_free(ca, X509_free);
	EVP_PKEY_free(key);
	free(cert_pem);
	free(ca_pem);
	if (key_pem_s != NULL) {
		OPENSSL_cleanse(key_pem_s, strlen(key_pem_s));
		free(key_pem_s);
	}
	return c;
}

/* ---- per-call checks ------------------------------------------------------------- */

/* Every value of auth property @name, as NUL-terminated copies in @out (at most
 * @cap; each malloc'd). Returns how many. */
static size_t auth_values(grpc_auth_context *ctx, const char *name, char **out, size_t cap)
{
	size_t n = 0;
	grpc_auth_property_iterator it = grpc_auth_context_find_properties_by_name(ctx, name);
	const grpc_auth_property *p;
	while ((p = grpc_auth_property_iterator_next(&it)) != NULL && n < cap) {
		char *s = malloc(p->value_length + 1);
		if (s == NULL)
			break;
		memcpy(s, p->value, p->value_length);
		s[p->value_length] = '\0';
		out[n++] = s;
	}
	return n;
}

static void free_values(char **v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(v[i]);
}

static bool has_property(grpc_auth_context *ctx, const char *name)
{
	grpc_auth_property_iterator it = grpc_auth_context_find_properties_by_name(ctx, name);
	return grpc_auth_property_iterator_next(&it) != NULL;
}

/* The host of grpc_call_get_peer's "ipv4:1.2.3.4:5" / "ipv6:[::1]:5" (also
 * "%5B::1%5D"). false for other kinds (unix sockets). */
static bool peer_host(const char *peer, char *host, size_t len)
{
	const char *p;
	if (strncmp(peer, "ipv4:", 5) == 0) {
		p = peer + 5;
		const char *colon = strrchr(p, ':');
		snprintf(host, len, "%.*s", (int)(colon ? colon - p : (long)strlen(p)), p);
		return true;
	}
	if (strncmp(peer, "ipv6:", 5) == 0) {
		p = peer + 5;
		size_t skip = p[0] == '[' ? 1 : strncmp(p, "%5B", 3) == 0 ? 3 : 0;
		p += skip;
		const char *end = strstr(p, skip == 3 ? "%5D" : "]");
		if (end == NULL)
			return false;
		snprintf(host, len, "%.*s", (int)(end - p), p);
		char *pct = strchr(host, '%'); /* a zone, e.g. fe80::1%25eth0 */
		if (pct != NULL)
			*pct = '\0';
		return true;
	}
	return false;
}

static bool same_ip(const char *a, const char *b)
{
	unsigned char x[16], y[16];
	if (inet_pton(AF_INET, a, x) == 1)
		return inet_pton(AF_INET, b, y) == 1 && memcmp(x, y, 4) == 0;
	if (inet_pton(AF_INET6, a, x) == 1)
		return inet_pton(AF_INET6, b, y) == 1 && memcmp(x, y, 16) == 0;
	return false;
}

static bool suffix_is(const char *s, const char *suf)
{
	size_t a = strlen(s), b = strlen(suf);
	return a >= b && strcasecmp(s + a - b, suf) == 0;
}

/* etcd's isHostInDNS: the reverse lookup of @host names one of @names (a
 * "*.x" wildcard matching by suffix), or a forward lookup of one of the
 * non-wildcard names gives @host. */
static bool host_in_dns(const char *host, char *const *names, size_t n)
{
	struct addrinfo hints = {.ai_flags = AI_NUMERICHOST}, *ai = NULL;
	if (getaddrinfo(host, NULL, &hints, &ai) == 0 && ai != NULL) {
		char name[NI_MAXHOST];
		if (getnameinfo(ai->ai_addr, ai->ai_addrlen, name, sizeof name, NULL, 0,
		                NI_NAMEREQD) == 0) {
			size_t l = strlen(name);
			if (l > 0 && name[l - 1] == '.')
				name[l - 1] = '\0';
			for (size_t i = 0; i < n; i++) {
				if (strncmp(names[i], "*.", 2) == 0 ? suffix_is(name, names[i] + 1)
				                                    : strcmp(names[i], name) == 0) {
					freeaddrinfo(ai);
					return true;
				}
			}
		}
		freeaddrinfo(ai);
	}
	for (size_t i = 0; i < n; i++) {
		if (strncmp(names[i], "*.", 2) == 0)
			continue;
		struct addrinfo h2 = {.ai_socktype = SOCK_STREAM}, *res = NULL;
		if (getaddrinfo(names[i], NULL, &h2, &res) != 0)
			continue;
		for (struct addrinfo *r = res; r != NULL; r = r->ai_next) {
			char a[INET6_ADDRSTRLEN];
			const void *src =
			        r->ai_family == AF_INET
			                ? (const void *)&((struct sockaddr_in *)r->ai_addr)
			                          ->sin_addr
			                : (const void *)&((struct sockaddr_in6 *)r->ai_addr)
			                          ->sin6_addr;
			if (inet_ntop(r->ai_family, src, a, sizeof a) != NULL && same_ip(a, host)) {
				freeaddrinfo(res);
				return true;
			}
		}
		freeaddrinfo(res);
	}
	return false;
}

/*
 * etcd's checkCertSAN for a client at @host whose certificate has the IP SANs
 * @ips and the DNS SANs @dns (at least one of either): 0, or -1 with Go's
 * reason in @why. Verdicts on DNS lookups are cached for SAN_CACHE_MS.
 */
static int san_check(srv_tls *t, const char *host, char *const *ips, size_t nip,
                     char *const *dns, size_t ndns, char *why, size_t whylen)
{
	for (size_t i = 0; i < nip; i++)
		if (same_ip(ips[i], host))
			return 0;
	if (ndns == 0) {
		char list[256] = "";
		for (size_t i = 0; i < nip; i++)
			snprintf(list + strlen(list), sizeof list - strlen(list), "%s%s",
			         i ? ", " : "", ips[i]);
		srv_errf(why, whylen, "x509: certificate is valid for %s, not %s", list, host);
		return -1;
	}
	/* DNS SANs: lookups, with a short-lived cache of verdicts. */
	char key[512], list[256];
	quote_list(dns, ndns, list, sizeof list);
	snprintf(key, sizeof key, "%s|%s", host, list);
	int64_t now = srv_mono_ms();
	pthread_mutex_lock(&t->san_mu);
	for (size_t i = 0; i < SAN_CACHE_SLOTS; i++) {
		san_entry *e = &t->san[i];
		if (e->at_ms != 0 && now - e->at_ms < SAN_CACHE_MS && strcmp(e->key, key) == 0) {
			int rc = e->ok ? 0 : -1;
			srv_errf(why, whylen, "%s", e->why);
			pthread_mutex_unlock(&t->san_mu);
			return rc;
		}
	}
	pthread_mutex_unlock(&t->san_mu);
	bool ok = host_in_dns(host, dns, ndns);
	if (!ok)
		srv_errf(why, whylen, "tls: \"%s\" does not match any of DNSNames %s", host, list);
	pthread_mutex_lock(&t->san_mu);
	san_entry *e = &t->san[t->san_next++ % SAN_CACHE_SLOTS];
	snprintf(e->key, sizeof e->key, "%s", key);
	snprintf(e->why, sizeof e->why, "%s", ok ? "" : why);
	e->ok = ok;
	e->at_ms = now;
	pthread_mutex_unlock(&t->san_mu);
	return ok ? 0 : -1;
}

/* etcd's "rejected connection from ..." line for a refused client at @peer. */
static void log_rejected(srv_tls *t, const char *peer, const char *why, char *const *ips,
                         size_t nip, char *const *dns, size_t ndns)
{
	char ipl[256], dnl[256];
	quote_list(ips, nip, ipl, sizeof ipl);
	quote_list(dns, ndns, dnl, sizeof dnl);
	tls_log(t, "info",
	        "rejected connection from \"%s\" (error \"%s\", ServerName \"\", IPAddresses %s, "
	        "DNSNames %s)",
	        peer, why, ipl, dnl);
}

int srv_tls_check_client_addr(srv_tls *t, struct grpc_call *call, char *why, size_t whylen)
{
	if (!srv_tls_checks_client_addr(t) || call == NULL)
		return 0;
	grpc_auth_context *ctx = grpc_call_auth_context(call);
	if (ctx == NULL)
		return 0;
	int rc = 0;
	char *ips[32], *dns[32];
	size_t nip = 0, ndns = 0;
	char *peer = NULL;
	if (!has_property(ctx, GRPC_X509_PEM_CERT_PROPERTY_NAME))
		goto out; /* plaintext, or no client certificate */
	nip = auth_values(ctx, GRPC_PEER_IP_PROPERTY_NAME, ips, 32);
	ndns = auth_values(ctx, GRPC_PEER_DNS_PROPERTY_NAME, dns, 32);
	if (nip == 0 && ndns == 0)
		goto out;
	peer = grpc_call_get_peer(call);
	char host[INET6_ADDRSTRLEN + 8];
	if (peer == NULL || !peer_host(peer, host, sizeof host)) {
		srv_errf(why, whylen, "address %s: missing port in address", peer ? peer : "");
		rc = -1;
	} else {
		rc = san_check(t, host, ips, nip, dns, ndns, why, whylen);
	}
	if (rc != 0)
		log_rejected(t, peer ? peer : "", why, ips, nip, dns, ndns);
out:
	free_values(ips, nip);
	free_values(dns, ndns);
	if (peer != NULL)
		gpr_free(peer);
	grpc_auth_context_release(ctx);
	return rc;
}

int srv_tls_call_cn(struct grpc_call *call, char *buf, size_t cap)
{
	if (call == NULL)
		return -1;
	grpc_auth_context *ctx = grpc_call_auth_context(call);
	if (ctx == NULL)
		return -1;
	int rc = -1;
	if (has_property(ctx, GRPC_X509_PEM_CERT_PROPERTY_NAME)) {
		grpc_auth_property_iterator it =
		        grpc_auth_context_find_properties_by_name(ctx, GRPC_X509_CN_PROPERTY_NAME);
		const grpc_auth_property *p = grpc_auth_property_iterator_next(&it);
		size_t n = p != NULL ? p->value_length : 0;
		if (n + 1 > cap) {
			rc = -2;
		} else {
			if (n > 0)
				memcpy(buf, p->value, n);
			buf[n] = '\0';
			rc = (int)n;
		}
	}
	if (rc == -2 && cap > 0)
		buf[0] = '\0';
	grpc_auth_context_release(ctx);
	return rc;
}

/* ---- metastore's own TLS server (srv_tlsfront) ----------------------------------- */

bool srv_tls_wants_front(const srv_tls *t)
{
	return t != NULL && strcmp(t->side, "peer") == 0 && t->require_client &&
	       (given(t->allowed_cn) || given(t->allowed_hostname));
}

/* The handshake's verify callback: after OpenSSL verified the chain, the leaf
 * must pass the allowed CN / hostname; a refusal is X509_V_ERR_CERT_REJECTED,
 * which OpenSSL sends as alert bad_certificate (as Go does for an error from
 * VerifyPeerCertificate). */
static int front_verify(int ok, X509_STORE_CTX *xs)
{
	if (!ok || X509_STORE_CTX_get_error_depth(xs) != 0)
		return ok;
	SSL *ssl = X509_STORE_CTX_get_ex_data(xs, SSL_get_ex_data_X509_STORE_CTX_idx());
	const srv_tls *t = ssl != NULL ? SSL_CTX_get_app_data(SSL_get_SSL_CTX(ssl)) : NULL;
	if (t == NULL || names_allowed(t, X509_STORE_CTX_get_current_cert(xs)))
		return 1;
	X509_STORE_CTX_set_error(xs, X509_V_ERR_CERT_REJECTED);
	return 0;
}

/* ALPN: an HTTP/2 protocol the client offers ("grpc-exp" first, as the core's
 * server); a client offering neither gets no ALPN (and HTTP/2 all the same). */
static int front_alpn(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                      const unsigned char *in, unsigned inlen, void *arg)
{
	(void)ssl, (void)arg;
	static const unsigned char ours[] = "\x08grpc-exp\x02h2";
	unsigned char *sel = NULL;
	if (SSL_select_next_proto(&sel, outlen, ours, sizeof ours - 1, in, inlen) !=
	    OPENSSL_NPN_NEGOTIATED)
		return SSL_TLSEXT_ERR_NOACK;
	*out = sel;
	return SSL_TLSEXT_ERR_OK;
}

/* Load @t's certificate chain, key and client CAs into @ctx. 0 or -1. */
static int front_load(srv_tls *t, SSL_CTX *ctx)
{
	int rc = -1;
	STACK_OF(X509) *chain = parse_certs(t->cert_pem, strlen(t->cert_pem));
	STACK_OF(X509) *ca = parse_certs(t->ca_pem, strlen(t->ca_pem));
	BIO *kb = BIO_new_mem_buf(t->key_pem, -1);
	EVP_PKEY *key = kb != NULL ? PEM_read_bio_PrivateKey(kb, NULL, no_password, NULL) : NULL;
	if (chain == NULL || sk_X509_num(chain) == 0 || ca == NULL || key == NULL ||
	    SSL_CTX_use_certificate(ctx, sk_X509_value(chain, 0)) != 1 ||
	    SSL_CTX_use_PrivateKey(ctx, key) != 1 || SSL_CTX_check_private_key(ctx) != 1)
		goto out;
	for (int i = 1; i < sk_X509_num(chain); i++)
		if (SSL_CTX_add1_chain_cert(ctx, sk_X509_value(chain, i)) != 1)
			goto out;
	X509_STORE *store = SSL_CTX_get_cert_store(ctx);
	for (int i = 0; i < sk_X509_num(ca); i++) {
		X509 *x = sk_X509_value(ca, i);
		if (X509_STORE_add_cert(store, x) != 1 || SSL_CTX_add_client_CA(ctx, x) != 1)
			goto out;
	}
	rc = 0;
out:
	sk_X509_pop_free(chain, X509_free);
	sk_X509_pop_free(ca, X509_free);
	EVP_PKEY_free(key);
	BIO_free(kb);
	return rc;
}

struct ssl_ctx_st *srv_tls_front_ctx(srv_tls *t, char *err, size_t errlen)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
	const char *ciphers = getenv("GRPC_SSL_CIPHER_SUITES"); /* srv_tls_use_cipher_suites */
	if (ctx == NULL || !t->require_client || t->ca_pem == NULL ||
	    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) != 1 ||
	    SSL_CTX_set_max_proto_version(ctx, TLS1_2_VERSION) != 1 ||
	    (given(ciphers) && SSL_CTX_set_cipher_list(ctx, ciphers) != 1) ||
	    front_load(t, ctx) != 0) {
		unsigned long e = ERR_peek_last_error();
		srv_errf(err, errlen, "%s TLS server: %s", t->side,
		        e != 0 ? ERR_reason_error_string(e) : "no client certificates required");
		ERR_clear_error();
		SSL_CTX_free(ctx);
		return NULL;
	}
	/* Every connection is verified afresh: no resumption. */
	SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET | SSL_OP_NO_RENEGOTIATION);
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
	SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, front_verify);
	SSL_CTX_set_alpn_select_cb(ctx, front_alpn, NULL);
	SSL_CTX_set_app_data(ctx, t);
	return ctx;
}

/* The SANs of @x: IP addresses as text and DNS names, malloc'd (at most @cap
 * of each). */
static void cert_sans(X509 *x, char **ips, size_t *nip, char **dns, size_t *ndns, size_t cap)
{
	*nip = *ndns = 0;
	GENERAL_NAMES *gens = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
	for (int i = 0; gens != NULL && i < sk_GENERAL_NAME_num(gens); i++) {
		const GENERAL_NAME *g = sk_GENERAL_NAME_value(gens, i);
		char buf[INET6_ADDRSTRLEN];
		if (g->type == GEN_IPADD && *nip < cap) {
			int len = ASN1_STRING_length(g->d.iPAddress);
			const unsigned char *p = ASN1_STRING_get0_data(g->d.iPAddress);
			if ((len == 4 || len == 16) &&
			    inet_ntop(len == 4 ? AF_INET : AF_INET6, p, buf, sizeof buf) != NULL &&
			    (ips[*nip] = strdup(buf)) != NULL)
				(*nip)++;
		} else if (g->type == GEN_DNS && *ndns < cap) {
			int len = ASN1_STRING_length(g->d.dNSName);
			char *s = malloc((size_t)len + 1);
			if (s != NULL) {
				memcpy(s, ASN1_STRING_get0_data(g->d.dNSName), (size_t)len);
				s[len] = '\0';
				dns[(*ndns)++] = s;
			}
		}
	}
	GENERAL_NAMES_free(gens);
}

int srv_tls_front_check(srv_tls *t, struct ssl_st *ssl, const char *host, const char *peer,
                        char *why, size_t whylen)
{
	X509 *leaf = SSL_get0_peer_certificate(ssl);
	if (leaf == NULL)
		return 0; /* never: the front requires one */
	int rc = 0;
	char *ips[32], *dns[32];
	size_t nip = 0, ndns = 0;
	cert_sans(leaf, ips, &nip, dns, &ndns, 32);
	if (given(t->crl_file)) {
		/* etcd checks every certificate the client sent (the server side's
		 * peer chain lacks the leaf). */
		STACK_OF(X509) *sent = SSL_get_peer_cert_chain(ssl);
		STACK_OF(X509) *certs = sk_X509_new_null();
		if (certs == NULL || !sk_X509_push(certs, leaf)) {
			srv_errf(why, whylen, "out of memory");
			rc = -1;
		}
		for (int i = 0; rc == 0 && sent != NULL && i < sk_X509_num(sent); i++)
			if (X509_cmp(sk_X509_value(sent, i), leaf) != 0)
				sk_X509_push(certs, sk_X509_value(sent, i));
		if (rc == 0 && crl_check(t, certs, why, whylen) != 0)
			rc = -1;
		sk_X509_free(certs); /* the certificates stay the connection's */
	}
	if (rc == 0 && !t->skip_client_san && (nip > 0 || ndns > 0)) {
		if (host == NULL) {
			srv_errf(why, whylen, "address %s: missing port in address", peer);
			rc = -1;
		} else {
			rc = san_check(t, host, ips, nip, dns, ndns, why, whylen);
		}
	}
	if (rc != 0)
		log_rejected(t, peer, why, ips, nip, dns, ndns);
	free_values(ips, nip);
	free_values(dns, ndns);
	return rc;
}

void srv_tls_front_refused(srv_tls *t, const char *peer, const char *why)
{
	tls_log(t, "info", "rejected connection from \"%s\" (error \"%s\", ServerName \"\")", peer,
	        why);
}

/* ---- TLS alerts in Go's words --------------------------------------------------- */

/* Go's crypto/tls alert texts (alert.go), by alert number. */
static const struct {
	unsigned char alert;
	const char *go;
} alerts[] = {
        {10, "unexpected message"},       {20, "bad record MAC"},
        {21, "decryption failed"},        {22, "record overflow"},
        {30, "decompression failure"},    {40, "handshake failure"},
        {42, "bad certificate"},          {43, "unsupported certificate"},
        {44, "revoked certificate"},      {45, "expired certificate"},
        {46, "unknown certificate"},      {47, "illegal parameter"},
        {48, "unknown certificate authority"}, {49, "access denied"},
        {50, "error decoding message"},   {51, "error decrypting message"},
        {70, "protocol version not supported"}, {71, "insufficient security level"},
        {80, "internal error"},           {86, "inappropriate fallback"},
        {90, "user canceled"},            {100, "no renegotiation"},
        {109, "missing extension"},       {110, "unsupported extension"},
        {112, "unrecognized name"},       {113, "bad certificate status response"},
        {115, "unknown PSK identity"},    {116, "certificate required"},
        {120, "no application protocol"},
};
#define N_ALERTS (sizeof alerts / sizeof alerts[0])

int srv_tls_remote_alert_text(unsigned long ossl_err, char *buf, size_t len)
{
	if (ERR_GET_LIB(ossl_err) != ERR_LIB_SSL)
		return -1;
	int reason = ERR_GET_REASON(ossl_err) - SSL_AD_REASON_OFFSET;
	if (reason < 0 || reason > 255)
		return -1;
	for (size_t i = 0; i < N_ALERTS; i++)
		if (alerts[i].alert == reason) {
			snprintf(buf, len, "remote error: tls: %s", alerts[i].go);
			return 0;
		}
	snprintf(buf, len, "remote error: tls: alert(%d)", reason);
	return 0;
}

/* ---- the core's log lines (gpr_log) ------------------------------------------------ */

#define CORE_ALERT_REPEAT_MS 5000

static srv_tls_log_fn core_log_fn;
static void *core_log_ctx;
static gpr_log_severity core_log_min; /* what the core printed before us */
static bool core_log_none;            /* GRPC_VERBOSITY=NONE */
static char core_alert_ossl[N_ALERTS][64]; /* OpenSSL's reason text per alert */
static pthread_mutex_t core_log_mu = PTHREAD_MUTEX_INITIALIZER;
static int64_t core_alert_at[N_ALERTS];

/* A line the core would have printed, as its default log function prints it
 * (gRPC 1.51): "E1203 15:26:44.191408000   12345 file.cc:382]" padded to 70
 * columns, a space and the message, on stderr. */
static void core_log_print(const gpr_log_func_args *a)
{
	const char *file = strrchr(a->file, '/');
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	struct tm tm;
	localtime_r(&ts.tv_sec, &tm);
	char when[32], prefix[160];
	strftime(when, sizeof when, "%m%d %H:%M:%S", &tm);
	snprintf(prefix, sizeof prefix, "%s%s.%09ld %7ld %s:%d]",
	         gpr_log_severity_string(a->severity), when, ts.tv_nsec, (long)syscall(SYS_gettid),
	         file != NULL ? file + 1 : a->file, a->line);
	fprintf(stderr, "%-70s %s\n", prefix, a->message);
}

static void core_log(gpr_log_func_args *a)
{
	if (a->message != NULL && strstr(a->message, "alert") != NULL) {
		for (size_t i = 0; i < N_ALERTS; i++) {
			if (core_alert_ossl[i][0] == '\0' || strstr(a->message, core_alert_ossl[i]) == NULL)
				continue;
			int64_t now = srv_mono_ms();
			pthread_mutex_lock(&core_log_mu);
			bool say = core_alert_at[i] == 0 || now - core_alert_at[i] >= CORE_ALERT_REPEAT_MS;
			if (say)
				core_alert_at[i] = now;
			pthread_mutex_unlock(&core_log_mu);
			if (say)
				side_log(core_log_fn, core_log_ctx, "warn",
				         "TLS handshake failed: remote error: tls: %s", alerts[i].go);
			return; /* said in our words instead, and not at every retry */
		}
	}
	if (!core_log_none && a->severity >= core_log_min)
		core_log_print(a);
}

void srv_tls_watch_core_log(srv_tls_log_fn log, void *log_ctx)
{
	core_log_fn = log;
	core_log_ctx = log_ctx;
	const char *v = getenv("GRPC_VERBOSITY");
	core_log_min = GPR_LOG_SEVERITY_ERROR;
	if (v != NULL && strcasecmp(v, "DEBUG") == 0)
		core_log_min = GPR_LOG_SEVERITY_DEBUG;
	else if (v != NULL && strcasecmp(v, "INFO") == 0)
		core_log_min = GPR_LOG_SEVERITY_INFO;
	core_log_none = v != NULL && strcasecmp(v, "NONE") == 0;
	OPENSSL_init_ssl(OPENSSL_INIT_LOAD_SSL_STRINGS, NULL);
	for (size_t i = 0; i < N_ALERTS; i++) {
		const char *r = ERR_reason_error_string(
		        ERR_PACK(ERR_LIB_SSL, 0, SSL_AD_REASON_OFFSET + alerts[i].alert));
		snprintf(core_alert_ossl[i], sizeof core_alert_ossl[i], "%s", r != NULL ? r : "");
	}
	gpr_set_log_function(core_log);
	gpr_set_log_verbosity(core_log_min < GPR_LOG_SEVERITY_INFO ? core_log_min
	                                                           : GPR_LOG_SEVERITY_INFO);
}

/* ---- cipher suites ---------------------------------------------------------------- */

/* Go's crypto/tls names (tls.CipherSuites, tls.InsecureCipherSuites and
 * etcd's two aliases) and OpenSSL's; NULL: a TLS 1.3 suite. */
static const struct {
	const char *go, *ossl;
} ciphers[] = {
        {"TLS_AES_128_GCM_SHA256", NULL},
        {"TLS_AES_256_GCM_SHA384", NULL},
        {"TLS_CHACHA20_POLY1305_SHA256", NULL},
        {"TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA", "ECDHE-ECDSA-AES128-SHA"},
        {"TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA", "ECDHE-ECDSA-AES256-SHA"},
        {"TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA", "ECDHE-RSA-AES128-SHA"},
        {"TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA", "ECDHE-RSA-AES256-SHA"},
        {"TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256", "ECDHE-ECDSA-AES128-GCM-SHA256"},
        {"TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384", "ECDHE-ECDSA-AES256-GCM-SHA384"},
        {"TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256", "ECDHE-RSA-AES128-GCM-SHA256"},
        {"TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384", "ECDHE-RSA-AES256-GCM-SHA384"},
        {"TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256", "ECDHE-RSA-CHACHA20-POLY1305"},
        {"TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256", "ECDHE-ECDSA-CHACHA20-POLY1305"},
        {"TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305", "ECDHE-RSA-CHACHA20-POLY1305"},
        {"TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305", "ECDHE-ECDSA-CHACHA20-POLY1305"},
        {"TLS_RSA_WITH_RC4_128_SHA", "RC4-SHA"},
        {"TLS_RSA_WITH_3DES_EDE_CBC_SHA", "DES-CBC3-SHA"},
        {"TLS_RSA_WITH_AES_128_CBC_SHA", "AES128-SHA"},
        {"TLS_RSA_WITH_AES_256_CBC_SHA", "AES256-SHA"},
        {"TLS_RSA_WITH_AES_128_CBC_SHA256", "AES128-SHA256"},
        {"TLS_RSA_WITH_AES_128_GCM_SHA256", "AES128-GCM-SHA256"},
        {"TLS_RSA_WITH_AES_256_GCM_SHA384", "AES256-GCM-SHA384"},
        {"TLS_ECDHE_ECDSA_WITH_RC4_128_SHA", "ECDHE-ECDSA-RC4-SHA"},
        {"TLS_ECDHE_RSA_WITH_RC4_128_SHA", "ECDHE-RSA-RC4-SHA"},
        {"TLS_ECDHE_RSA_WITH_3DES_EDE_CBC_SHA", "ECDHE-RSA-DES-CBC3-SHA"},
        {"TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256", "ECDHE-ECDSA-AES128-SHA256"},
        {"TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256", "ECDHE-RSA-AES128-SHA256"},
};

int srv_tls_cipher_list(const char *go_names, char *out, size_t outlen, char *err, size_t errlen)
{
	if (outlen == 0)
		return -1;
	out[0] = '\0';
	int n = 0;
	size_t o = 0;
	for (const char *p = go_names; p != NULL && *p;) {
		const char *comma = strchr(p, ',');
		size_t len = comma != NULL ? (size_t)(comma - p) : strlen(p);
		size_t i = 0;
		for (; i < sizeof ciphers / sizeof ciphers[0]; i++)
			if (strlen(ciphers[i].go) == len && strncmp(ciphers[i].go, p, len) == 0)
				break;
		if (i == sizeof ciphers / sizeof ciphers[0]) {
			srv_errf(err, errlen, "unexpected TLS cipher suite \"%.*s\"", (int)len, p);
			return -1;
		}
		if (ciphers[i].ossl != NULL) {
			int w = snprintf(out + o, outlen - o, "%s%s", o ? ":" : "",
			                 ciphers[i].ossl);
			if (w < 0 || (size_t)w >= outlen - o) {
				srv_errf(err, errlen, "--cipher-suites: too long");
				return -1;
			}
			o += (size_t)w;
			n++;
		}
		p = comma != NULL ? comma + 1 : NULL;
	}
	return n;
}

int srv_tls_use_cipher_suites(const char *go_names, srv_tls_log_fn log, void *log_ctx, char *err,
                              size_t errlen)
{
	if (!given(go_names))
		return 0;
	char list[2048];
	int n = srv_tls_cipher_list(go_names, list, sizeof list, err, errlen);
	if (n < 0)
		return -1;
	if (n == 0) {
		side_log(
		        log, log_ctx, "warn",
		        "--cipher-suites=%s names only TLS 1.3 suites, which cannot be restricted; "
		        "TLS 1.2 keeps the default ciphers",
		        go_names);
		return 0;
	}
	if (setenv("GRPC_SSL_CIPHER_SUITES", list, 1) != 0) {
		srv_errf(err, errlen, "--cipher-suites: setenv: %s", strerror(errno));
		return -1;
	}
	side_log(log, log_ctx, "info",
	         "cipher suites for TLS 1.2: %s (TLS 1.3 suites are not restricted)", list);
	return 0;
}
