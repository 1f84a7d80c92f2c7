/*
 * Unit tests for ec_token (etcd's --auth-token providers): simple tokens
 * (format, TTL renewed on use, expiry, forgetting), the option string as
 * etcd's auth/options.go parses it, and JWTs signed and verified with real
 * keys made at test time by the openssl command line tool (RS*, PS*, ES*, HS*),
 * including tampering, algorithm confusion, expiry, verify-only members and
 * certificates as public keys. Tokens are decoded here independently and
 * compared byte for byte with what etcd's golang-jwt produces.
 */
#include <criterion/criterion.h>
#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "etcdcompat/ec_errors.h"
#include "etcdcompat/ec_token.h"
#include "test/storage/st_testutil.h"

static char *dir;
static char path_buf[8][4096];
static int path_next;
static char err[512];

static void setup(void)
{
	dir = tu_tmpdir();
	cr_assert_not_null(dir);
	err[0] = '\0';
	path_next = 0;
}

static void teardown(void)
{
	tu_rmrf(dir);
	free(dir);
}

TestSuite(token, .init = setup, .fini = teardown);

/* A file name in the test's temp dir (rotating static buffers). */
static const char *in_dir(const char *name)
{
	char *p = path_buf[path_next++ % 8];
	snprintf(p, 4096, "%s/%s", dir, name);
	return p;
}

/* Run a shell command in the temp dir; the test fails if it fails. */
static void sh(const char *fmt, ...)
{
	char cmd[2048];
	int n = snprintf(cmd, sizeof(cmd), "cd '%s' && (", dir);
	va_list ap;
	va_start(ap, fmt);
	n += vsnprintf(cmd + n, sizeof(cmd) - (size_t)n, fmt, ap);
	va_end(ap);
	snprintf(cmd + n, sizeof(cmd) - (size_t)n, ") >/dev/null 2>&1");
	cr_assert_eq(system(cmd), 0, "command failed: %s", cmd);
}

/* Make key pair @name (@alg: "rsa" or an EC curve name): @name.key (PKCS#8)
 * and @name.pub (SubjectPublicKeyInfo). */
static void keypair(const char *name, const char *alg)
{
	if (strcmp(alg, "rsa") == 0)
		sh("openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out %s.key",
		   name);
	else
		sh("openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:%s -out %s.key", alg,
		   name);
	sh("openssl pkey -in %s.key -pubout -out %s.pub", name, name);
}

static void write_file(const char *name, const char *content)
{
	FILE *f = fopen(in_dir(name), "wb");
	cr_assert_not_null(f);
	fwrite(content, 1, strlen(content), f);
	fclose(f);
}

static ec_tokens *open_ok(const char *fmt, ...)
{
	char spec[2048];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(spec, sizeof(spec), fmt, ap);
	va_end(ap);
	ec_tokens *t = NULL;
	err[0] = '\0';
	cr_assert_eq(ec_tokens_open(spec, 0, &t, err, sizeof(err)), 0, "%s: %s", spec, err);
	cr_assert_not_null(t);
	return t;
}

/* Open must fail with a message containing @want. */
static void open_fails(const char *want, const char *fmt, ...)
{
	char spec[2048];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(spec, sizeof(spec), fmt, ap);
	va_end(ap);
	ec_tokens *t = (ec_tokens *)&t;
	err[0] = '\0';
	cr_assert_eq(ec_tokens_open(spec, 0, &t, err, sizeof(err)), -1, "%s opened", spec);
	cr_assert_null(t);
	cr_assert(strstr(err, want) != NULL, "%s: got \"%s\", want \"%s\"", spec, err, want);
}

#define NOW 1700000000123LL /* ms */

/* ---- base64url, independent of the module ---------------------------------------- */

static int b64v(char c)
{
	const char *a = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
	const char *p = strchr(a, c);
	return c && p ? (int)(p - a) : -1;
}

/* Decode @n chars of unpadded base64url into @out; returns the length. */
static size_t unb64(const char *in, size_t n, uint8_t *out)
{
	size_t o = 0;
	uint32_t acc = 0;
	int bits = 0;
	for (size_t i = 0; i < n; i++) {
		int v = b64v(in[i]);
		cr_assert_geq(v, 0, "not base64url: '%c'", in[i]);
		acc = acc << 6 | (uint32_t)v;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			out[o++] = (uint8_t)(acc >> bits);
		}
	}
	return o;
}

static size_t b64(const uint8_t *in, size_t n, char *out)
{
	const char *a = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
	size_t o = 0;
	uint32_t acc = 0;
	int bits = 0;
	for (size_t i = 0; i < n; i++) {
		acc = acc << 8 | in[i];
		bits += 8;
		while (bits >= 6) {
			bits -= 6;
			out[o++] = a[(acc >> bits) & 63];
		}
	}
	if (bits > 0)
		out[o++] = a[(acc << (6 - bits)) & 63];
	out[o] = '\0';
	return o;
}

/* The three segments of @tok decoded (header and claims NUL-terminated). */
typedef struct parts {
	char head[512];
	char claims[2048];
	uint8_t sig[1024];
	size_t siglen;
} parts;

static void split(const char *tok, parts *p)
{
	const char *d1 = strchr(tok, '.');
	cr_assert_not_null(d1);
	const char *d2 = strchr(d1 + 1, '.');
	cr_assert_not_null(d2);
	cr_assert_null(strchr(d2 + 1, '.'));
	size_t n = unb64(tok, (size_t)(d1 - tok), (uint8_t *)p->head);
	p->head[n] = '\0';
	n = unb64(d1 + 1, (size_t)(d2 - d1 - 1), (uint8_t *)p->claims);
	p->claims[n] = '\0';
	p->siglen = unb64(d2 + 1, strlen(d2 + 1), p->sig);
}

/* Sign header.claims (JSON texts) with PEM private key file @keyfile and
 * digest @md using PKCS#1 v1.5 (RS*) or raw HMAC with @secret: a test-side
 * signer for hand-made claims. Returns a malloc'd token. */
static char *forge(const char *head, const char *claims, const char *keyfile, const char *md,
                   const char *secret)
{
	char *tok = malloc(8192);
	size_t n = b64((const uint8_t *)head, strlen(head), tok);
	tok[n++] = '.';
	n += b64((const uint8_t *)claims, strlen(claims), tok + n);
	uint8_t sig[1024];
	size_t sl = sizeof(sig);
	if (secret != NULL) {
		unsigned int l = 0;
		cr_assert_not_null(HMAC(EVP_get_digestbyname(md), secret, (int)strlen(secret),
		                        (const uint8_t *)tok, n, sig, &l));
		sl = l;
	} else if (keyfile != NULL) {
		FILE *f = fopen(keyfile, "r");
		cr_assert_not_null(f);
		EVP_PKEY *k = PEM_read_PrivateKey(f, NULL, NULL, NULL);
		fclose(f);
		cr_assert_not_null(k);
		EVP_MD_CTX *c = EVP_MD_CTX_new();
		cr_assert_eq(EVP_DigestSignInit(c, NULL, EVP_get_digestbyname(md), NULL, k), 1);
		cr_assert_eq(EVP_DigestSign(c, sig, &sl, (const uint8_t *)tok, n), 1);
		EVP_MD_CTX_free(c);
		EVP_PKEY_free(k);
	} else {
		sl = 0;
	}
	tok[n++] = '.';
	b64(sig, sl, tok + n);
	return tok;
}

static int info(ec_tokens *t, const char *tok, int64_t now, char *user, uint64_t *rev)
{
	return ec_token_info(t, tok, strlen(tok), 777, now, user, 257, rev);
}

/* ---- simple tokens ---------------------------------------------------------------- */

Test(token, simple_new_is_16_letters)
{
	char a[17], b[17];
	cr_assert_eq(ec_token_simple_new(a, sizeof(a)), 0);
	cr_assert_eq(strlen(a), 16);
	for (int i = 0; i < 16; i++)
		cr_assert((a[i] >= 'a' && a[i] <= 'z') || (a[i] >= 'A' && a[i] <= 'Z'), "%s", a);
	cr_assert_eq(ec_token_simple_new(b, sizeof(b)), 0);
	cr_assert_str_neq(a, b);
	cr_assert_eq(ec_token_simple_new(a, 16), -1, "no room for the NUL");
	/* Both halves of the alphabet show up over many draws. */
	bool lower = false, upper = false;
	for (int i = 0; i < 50; i++) {
		cr_assert_eq(ec_token_simple_new(a, sizeof(a)), 0);
		for (int j = 0; j < 16; j++) {
			lower |= a[j] >= 'a' && a[j] <= 'z';
			upper |= a[j] >= 'A' && a[j] <= 'Z';
		}
	}
	cr_assert(lower && upper);
}

Test(token, simple_assign_and_info)
{
	ec_tokens *t = open_ok("simple");
	cr_assert(ec_tokens_is_simple(t));
	char *tok = NULL;
	cr_assert_eq(ec_token_assign(t, "alice", 5, "abcdefghijklmnop", 1234, NOW, &tok), EC_OK);
	cr_assert_str_eq(tok, "abcdefghijklmnop.1234");
	char user[257];
	uint64_t rev = 0;
	cr_assert_eq(info(t, tok, NOW + 1, user, &rev), EC_OK);
	cr_assert_str_eq(user, "alice");
	cr_assert_eq(rev, 777, "simple tokens report the store's current revision");
	/* Not NUL-terminated input is fine: only @len bytes count. */
	char buf[64];
	snprintf(buf, sizeof(buf), "%sXYZ", tok);
	cr_assert_eq(ec_token_info(t, buf, strlen(tok), 9, NOW, user, sizeof(user), &rev), EC_OK);
	cr_assert_eq(rev, 9);
	cr_assert_eq(ec_token_info(t, buf, strlen(tok) + 1, 9, NOW, user, sizeof(user), &rev),
	             EC_INVALID_AUTH_TOKEN);
	cr_assert_eq(ec_token_info(t, tok, strlen(tok) - 1, 9, NOW, user, sizeof(user), &rev),
	             EC_INVALID_AUTH_TOKEN);
	cr_assert_eq(info(t, "abcdefghijklmnop.1235", NOW, user, &rev), EC_INVALID_AUTH_TOKEN);
	cr_assert_eq(info(t, "", NOW, user, &rev), EC_INVALID_AUTH_TOKEN);
	/* A user buffer too small: refused rather than cut. */
	cr_assert_eq(ec_token_info(t, tok, strlen(tok), 9, NOW, user, 5, &rev),
	             EC_INVALID_AUTH_TOKEN);
	cr_assert_eq(ec_token_info(t, tok, strlen(tok), 9, NOW, user, 6, &rev), EC_OK);
	/* Many tokens (the table grows) all stay findable. */
	for (int i = 0; i < 500; i++) {
		char *x = NULL, name[16];
		snprintf(name, sizeof(name), "u%d", i);
		cr_assert_eq(ec_token_assign(t, name, 1, "QQQQQQQQQQQQQQQQ", (uint64_t)i + 5000,
		                             NOW, &x),
		             EC_OK);
		free(x);
	}
	for (int i = 0; i < 500; i += 7) {
		char want[16], tk[64];
		snprintf(want, sizeof(want), "u%d", i);
		snprintf(tk, sizeof(tk), "QQQQQQQQQQQQQQQQ.%d", i + 5000);
		cr_assert_eq(info(t, tk, NOW, user, &rev), EC_OK);
		cr_assert_str_eq(user, want);
	}
	cr_assert_eq(info(t, tok, NOW, user, &rev), EC_OK);
	free(tok);
	ec_tokens_close(t);
}

Test(token, simple_ttl_renews_on_use_and_expires)
{
	ec_tokens *t = NULL;
	cr_assert_eq(ec_tokens_open("simple", 2, &t, err, sizeof(err)), 0, "%s", err);
	char *a = NULL, *b = NULL;
	cr_assert_eq(ec_token_assign(t, "a", 1, "aaaaaaaaaaaaaaaa", 1, NOW, &a), EC_OK);
	cr_assert_eq(ec_token_assign(t, "b", 1, "bbbbbbbbbbbbbbbb", 2, NOW, &b), EC_OK);
	char user[257];
	uint64_t rev;
	/* a is used at +1.5 s: its expiry moves to +3.5 s. */
	cr_assert_eq(info(t, a, NOW + 1500, user, &rev), EC_OK);
	cr_assert_eq(info(t, b, NOW + 2000, user, &rev), EC_OK, "expiry is inclusive");
	/* b's expiry moved to +4 s by that use; a's is +3.5 s: a sweep at
	 * +3.4 s keeps both, and the use of a moves it to +5.4 s. */
	ec_token_expire(t, NOW + 3400);
	cr_assert_eq(info(t, a, NOW + 3400, user, &rev), EC_OK);
	ec_token_expire(t, NOW + 5401);
	cr_assert_eq(info(t, a, NOW + 3400, user, &rev), EC_INVALID_AUTH_TOKEN, "swept");
	cr_assert_eq(info(t, b, NOW + 5000, user, &rev), EC_INVALID_AUTH_TOKEN);
	/* An expired token is refused even before a sweep. */
	char *c = NULL;
	cr_assert_eq(ec_token_assign(t, "c", 1, "cccccccccccccccc", 3, NOW, &c), EC_OK);
	cr_assert_eq(info(t, c, NOW + 2001, user, &rev), EC_INVALID_AUTH_TOKEN);
	cr_assert_eq(info(t, c, NOW + 1, user, &rev), EC_INVALID_AUTH_TOKEN, "and is gone");
	free(a);
	free(b);
	free(c);
	ec_tokens_close(t);
}

Test(token, simple_default_ttl_is_300s)
{
	ec_tokens *t = open_ok("simple");
	char *a = NULL;
	cr_assert_eq(ec_token_assign(t, "a", 1, "aaaaaaaaaaaaaaaa", 1, NOW, &a), EC_OK);
	char user[257];
	uint64_t rev;
	ec_token_expire(t, NOW + 300000);
	cr_assert_eq(info(t, a, NOW + 300000, user, &rev), EC_OK);
	ec_token_expire(t, NOW + 600001);
	cr_assert_eq(info(t, a, NOW + 300000, user, &rev), EC_INVALID_AUTH_TOKEN);
	free(a);
	ec_tokens_close(t);
}

Test(token, simple_forget_user_and_all)
{
	ec_tokens *t = open_ok("simple");
	char *a1 = NULL, *a2 = NULL, *b = NULL;
	cr_assert_eq(ec_token_assign(t, "alice", 1, "aaaaaaaaaaaaaaaa", 1, NOW, &a1), EC_OK);
	cr_assert_eq(ec_token_assign(t, "alice", 1, "AAAAAAAAAAAAAAAA", 2, NOW, &a2), EC_OK);
	cr_assert_eq(ec_token_assign(t, "bob", 1, "bbbbbbbbbbbbbbbb", 3, NOW, &b), EC_OK);
	char user[257];
	uint64_t rev;
	ec_token_forget_user(t, "alic");
	cr_assert_eq(info(t, a1, NOW, user, &rev), EC_OK);
	ec_token_forget_user(t, "alice");
	cr_assert_eq(info(t, a1, NOW, user, &rev), EC_INVALID_AUTH_TOKEN);
	cr_assert_eq(info(t, a2, NOW, user, &rev), EC_INVALID_AUTH_TOKEN);
	cr_assert_eq(info(t, b, NOW, user, &rev), EC_OK);
	cr_assert_str_eq(user, "bob");
	ec_token_forget_all(t);
	cr_assert_eq(info(t, b, NOW, user, &rev), EC_INVALID_AUTH_TOKEN);
	/* New tokens work after forgetting. */
	char *c = NULL;
	cr_assert_eq(ec_token_assign(t, "carol", 1, "cccccccccccccccc", 4, NOW, &c), EC_OK);
	cr_assert_eq(info(t, c, NOW, user, &rev), EC_OK);
	free(a1);
	free(a2);
	free(b);
	free(c);
	ec_tokens_close(t);
}

Test(token, nop_provider)
{
	/* etcd's --auth-token "" is the nop provider: no tokens at all. */
	ec_tokens *t = open_ok("%s", "");
	cr_assert_not(ec_tokens_is_simple(t));
	char *tok = (char *)1;
	cr_assert_eq(ec_token_assign(t, "root", 1, "x", 1, NOW, &tok), EC_AUTH_FAILED);
	cr_assert_null(tok);
	char user[257];
	uint64_t rev;
	cr_assert_eq(info(t, "x.1", NOW, user, &rev), EC_INVALID_AUTH_TOKEN);
	ec_token_forget_all(t);
	ec_tokens_close(t);
	ec_tokens_close(NULL);
}

/* ---- the option string ------------------------------------------------------------- */

Test(token, option_string_errors)
{
	keypair("rsa", "rsa");
	const char *k = in_dir("rsa.key");
	open_fails("auth: invalid auth options", "bogus");
	open_fails("auth: invalid auth options", "Simple");
	open_fails("auth: invalid auth options", "jwt,sign-method");
	open_fails("auth: invalid auth options", "jwt,sign-method=RS256,priv-key=%s,", k);
	open_fails("auth: invalid auth options", "jwt,sign-method=RS256,priv-key=a=b");
	open_fails("auth: invalid auth options",
	           "jwt,sign-method=RS256,sign-method=RS256,priv-key=%s", k);
	open_fails("auth: invalid auth options", "jwt,priv-key=%s", k);
	open_fails("auth: invalid auth options", "jwt,sign-method=,priv-key=%s", k);
	open_fails("invalid auth signature method", "jwt,sign-method=rs256,priv-key=%s", k);
	open_fails("unsupported signing method", "jwt,sign-method=none,priv-key=%s", k);
	open_fails("unsupported signing method", "jwt,sign-method=EdDSA,priv-key=%s", k);
	open_fails("auth: invalid auth options", "jwt,sign-method=RS256,priv-key=%s/nope", dir);
	open_fails("auth: invalid auth options", "jwt,sign-method=RS256,pub-key=%s/nope", dir);
	open_fails("auth: invalid auth options", "jwt,sign-method=RS256,priv-key=%s,ttl=5", k);
	open_fails("auth: invalid auth options", "jwt,sign-method=RS256,priv-key=%s,ttl=5x", k);
	open_fails("auth: invalid auth options", "jwt,sign-method=RS256,priv-key=%s,ttl=1..5s", k);
	open_fails("auth: missing key data", "jwt,sign-method=RS256");
	open_fails("auth: missing key data", "jwt,sign-method=HS256");
	/* simple ignores options it is given (etcd parses, then ignores them). */
	ec_tokens *t = open_ok("simple,foo=bar");
	cr_assert(ec_tokens_is_simple(t));
	ec_tokens_close(t);
	/* Unknown JWT options only warn, as in etcd. */
	t = open_ok("jwt,sign-method=RS256,priv-key=%s,colour=blue", k);
	cr_assert(strstr(err, "unknown JWT options") && strstr(err, "colour"), "%s", err);
	ec_tokens_close(t);
	t = open_ok("jwt,sign-method=RS256,priv-key=%s", k);
	cr_assert_str_eq(err, "", "no warning: %s", err);
	cr_assert_not(ec_tokens_is_simple(t));
	ec_tokens_close(t);
}

Test(token, key_errors)
{
	keypair("rsa", "rsa");
	keypair("rsb", "rsa");
	keypair("ec", "P-256");
	keypair("ec384", "P-384");
	write_file("junk.pem", "this is not a key\n");
	const char *rsa = in_dir("rsa.key"), *rsapub = in_dir("rsa.pub"),
	           *rsbpub = in_dir("rsb.pub");
	const char *ec = in_dir("ec.key"), *ecpub = in_dir("ec.pub"), *junk = in_dir("junk.pem");
	open_fails("auth: public and private keys don't match",
	           "jwt,sign-method=RS256,priv-key=%s,pub-key=%s", rsa, rsbpub);
	open_fails("auth: public and private keys don't match",
	           "jwt,sign-method=ES256,priv-key=%s,pub-key=%s", ec, in_dir("ec384.pub"));
	open_fails("key is not a valid RSA private key", "jwt,sign-method=RS256,priv-key=%s", ec);
	open_fails("key is not a valid RSA public key", "jwt,sign-method=PS256,pub-key=%s", ecpub);
	open_fails("key is not a valid ECDSA private key", "jwt,sign-method=ES256,priv-key=%s",
	           rsa);
	open_fails("key is not a valid ECDSA public key", "jwt,sign-method=ES256,pub-key=%s",
	           rsapub);
	open_fails("Key must be a PEM encoded", "jwt,sign-method=RS256,priv-key=%s", junk);
	open_fails("Key must be a PEM encoded", "jwt,sign-method=RS256,pub-key=%s", junk);
	open_fails("Key must be a PEM encoded", "jwt,sign-method=RS256,priv-key=%s", rsapub);
	open_fails("key is invalid", "jwt,sign-method=ES384,priv-key=%s", ec);
	/* An empty key file counts as no key, as in etcd. */
	write_file("empty", "");
	open_fails("auth: missing key data", "jwt,sign-method=RS256,priv-key=%s", in_dir("empty"));
	ec_tokens *t = open_ok("jwt,sign-method=RS256,priv-key=%s,pub-key=%s", rsa, rsapub);
	ec_tokens_close(t);
	/* An encrypted key is refused, never prompted for. */
	sh("openssl pkey -in rsa.key -aes128 -passout pass:x -out enc.key");
	open_fails("Key must be a PEM encoded", "jwt,sign-method=RS256,priv-key=%s",
	           in_dir("enc.key"));
}

/* ---- JWT ------------------------------------------------------------------------- */

/* Assign a token for @user at @rev, check its exact header and claims, that
 * it verifies, and return it (malloc'd). */
static char *jwt_check(ec_tokens *t, const char *alg, const char *user, uint64_t rev, int64_t exp_s,
                       size_t siglen)
{
	char *tok = NULL;
	cr_assert_eq(ec_token_assign(t, user, rev, "ignored", 99, NOW, &tok), EC_OK);
	cr_assert_not_null(tok);
	parts p;
	split(tok, &p);
	char want[256];
	snprintf(want, sizeof(want), "{\"alg\":\"%s\",\"typ\":\"JWT\"}", alg);
	cr_assert_str_eq(p.head, want);
	char wc[512];
	snprintf(wc, sizeof(wc), "{\"exp\":%lld,\"revision\":%llu,\"username\":\"%s\"}",
	         (long long)exp_s, (unsigned long long)rev, user);
	cr_assert_str_eq(p.claims, wc);
	if (siglen)
		cr_assert_eq(p.siglen, siglen, "%s signature of %zu bytes", alg, p.siglen);
	cr_assert_null(strchr(tok, '='), "no padding");
	char got[257];
	uint64_t r = 0;
	cr_assert_eq(info(t, tok, NOW, got, &r), EC_OK, "%s token does not verify", alg);
	cr_assert_str_eq(got, user);
	cr_assert_eq(r, rev, "the revision is the signed claim, not the current one");
	return tok;
}

/* Flip one bit of the signature's first byte: must not verify. */
static void assert_tamper_sig(ec_tokens *t, const char *tok)
{
	char *x = strdup(tok);
	char *s = strrchr(x, '.') + 1;
	s[0] = s[0] == 'A' ? 'B' : 'A';
	char user[257];
	uint64_t rev;
	cr_assert_eq(info(t, x, NOW, user, &rev), EC_INVALID_AUTH_TOKEN, "tampered sig accepted");
	free(x);
}

Test(token, jwt_rsa_methods)
{
	keypair("rsa", "rsa");
	const char *k = in_dir("rsa.key");
	const char *algs[] = {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"};
	for (size_t i = 0; i < 6; i++) {
		ec_tokens *t = open_ok("jwt,sign-method=%s,priv-key=%s", algs[i], k);
		cr_assert_not(ec_tokens_is_simple(t));
		/* ttl default 5 min: exp = floor((NOW + 300 s) / 1 s). */
		char *tok = jwt_check(t, algs[i], "alice", 12, NOW / 1000 + 300, 256);
		assert_tamper_sig(t, tok);
		free(tok);
		ec_tokens_close(t);
	}
}

Test(token, jwt_pss_is_randomised_and_verifies_openssl_signature)
{
	keypair("rsa", "rsa");
	ec_tokens *t = open_ok("jwt,sign-method=PS256,priv-key=%s", in_dir("rsa.key"));
	char *a = jwt_check(t, "PS256", "u", 1, NOW / 1000 + 300, 256);
	char *b = jwt_check(t, "PS256", "u", 1, NOW / 1000 + 300, 256);
	cr_assert_str_neq(a, b, "PSS signatures use a random salt");
	/* Verify the PSS signature with the openssl tool (salt = hash length). */
	parts p;
	split(a, &p);
	const char *dot = strrchr(a, '.');
	FILE *f = fopen(in_dir("msg"), "wb");
	fwrite(a, 1, (size_t)(dot - a), f);
	fclose(f);
	f = fopen(in_dir("sig"), "wb");
	fwrite(p.sig, 1, p.siglen, f);
	fclose(f);
	sh("openssl dgst -sha256 -sigopt rsa_padding_mode:pss -sigopt rsa_pss_saltlen:32 "
	   "-verify rsa.pub -signature sig msg");
	free(a);
	free(b);
	ec_tokens_close(t);
}

Test(token, jwt_ecdsa_methods)
{
	keypair("e256", "P-256");
	keypair("e384", "P-384");
	keypair("e521", "P-521");
	struct {
		const char *alg, *key;
		size_t sig;
	} c[] = {{"ES256", "e256", 64}, {"ES384", "e384", 96}, {"ES512", "e521", 132}};
	for (size_t i = 0; i < 3; i++) {
		char kf[64];
		snprintf(kf, sizeof(kf), "%s.key", c[i].key);
		ec_tokens *t = open_ok("jwt,sign-method=%s,priv-key=%s,pub-key=%s.pub", c[i].alg,
		                       in_dir(kf), in_dir(c[i].key));
		/* JWS wants the raw r||s pair, not DER. */
		char *tok = jwt_check(t, c[i].alg, "bob", 3, NOW / 1000 + 300, c[i].sig);
		assert_tamper_sig(t, tok);
		/* The same signature in DER (what OpenSSL makes) is refused. */
		parts p;
		split(tok, &p);
		ECDSA_SIG *es = ECDSA_SIG_new();
		size_t half = p.siglen / 2;
		ECDSA_SIG_set0(es, BN_bin2bn(p.sig, (int)half, NULL),
		               BN_bin2bn(p.sig + half, (int)half, NULL));
		unsigned char *der = NULL;
		int dl = i2d_ECDSA_SIG(es, &der);
		cr_assert_gt(dl, 0);
		ECDSA_SIG_free(es);
		char *x = malloc(strlen(tok) + 512);
		const char *d2 = strrchr(tok, '.');
		memcpy(x, tok, (size_t)(d2 - tok) + 1);
		b64(der, (size_t)dl, x + (d2 - tok) + 1);
		OPENSSL_free(der);
		char user[257];
		uint64_t rev;
		cr_assert_eq(info(t, x, NOW, user, &rev), EC_INVALID_AUTH_TOKEN, "%s DER",
		             c[i].alg);
		/* r||s with one byte too many is refused too. */
		p.sig[p.siglen] = 0;
		b64(p.sig, p.siglen + 1, x + (d2 - tok) + 1);
		cr_assert_eq(info(t, x, NOW, user, &rev), EC_INVALID_AUTH_TOKEN, "%s +1", c[i].alg);
		b64(p.sig, p.siglen, x + (d2 - tok) + 1);
		cr_assert_eq(info(t, x, NOW, user, &rev), EC_OK, "%s re-encoded", c[i].alg);
		free(x);
		free(tok);
		ec_tokens_close(t);
	}
	/* A traditional SEC1 "EC PRIVATE KEY" file works too. */
	sh("openssl ec -in e256.key -out e256.sec1");
	ec_tokens *t = open_ok("jwt,sign-method=ES256,priv-key=%s", in_dir("e256.sec1"));
	free(jwt_check(t, "ES256", "x", 1, NOW / 1000 + 300, 64));
	ec_tokens_close(t);
}

Test(token, jwt_hmac)
{
	write_file("secret", "s3cr3t-key\n");
	write_file("other", "s3cr3t-kez\n");
	ec_tokens *t = open_ok("jwt,sign-method=HS256,priv-key=%s", in_dir("secret"));
	char *tok = jwt_check(t, "HS256", "h", 2, NOW / 1000 + 300, 32);
	assert_tamper_sig(t, tok);
	/* The whole file is the secret (trailing newline included, as etcd). */
	char *f = forge("{\"alg\":\"HS256\",\"typ\":\"JWT\"}",
	                "{\"exp\":9999999999,\"revision\":2,\"username\":\"h\"}", NULL, "SHA256",
	                "s3cr3t-key\n");
	char user[257];
	uint64_t rev;
	cr_assert_eq(info(t, f, NOW, user, &rev), EC_OK);
	free(f);
	ec_tokens *o = open_ok("jwt,sign-method=HS256,priv-key=%s", in_dir("other"));
	cr_assert_eq(info(o, tok, NOW, user, &rev), EC_INVALID_AUTH_TOKEN);
	ec_tokens_close(o);
	o = open_ok("jwt,sign-method=HS512,priv-key=%s", in_dir("secret"));
	free(jwt_check(o, "HS512", "h", 2, NOW / 1000 + 300, 64));
	cr_assert_eq(info(o, tok, NOW, user, &rev), EC_INVALID_AUTH_TOKEN, "HS256 token, HS512");
	ec_tokens_close(o);
	free(tok);
	ec_tokens_close(t);
}

Test(token, jwt_rejects_tampering_and_confusion)
{
	keypair("rsa", "rsa");
	const char *k = in_dir("rsa.key"), *pub = in_dir("rsa.pub");
	ec_tokens *t = open_ok("jwt,sign-method=RS256,priv-key=%s", k);
	char *tok = jwt_check(t, "RS256", "alice", 4, NOW / 1000 + 300, 256);
	char user[257];
	uint64_t rev;
	/* Claims changed, signature kept. */
	parts p;
	split(tok, &p);
	char claims[256], seg[512], *x = malloc(strlen(tok) + 64);
	snprintf(claims, sizeof(claims), "{\"exp\":%lld,\"revision\":4,\"username\":\"root\"}",
	         (long long)(NOW / 1000 + 300));
	b64((const uint8_t *)claims, strlen(claims), seg);
	const char *d1 = strchr(tok, '.'), *d2 = strrchr(tok, '.');
	sprintf(x, "%.*s.%s%s", (int)(d1 - tok), tok, seg, d2);
	cr_assert_eq(info(t, x, NOW, user, &rev), EC_INVALID_AUTH_TOKEN);
	/* alg "none" with no signature. */
	char *n = forge("{\"alg\":\"none\",\"typ\":\"JWT\"}", claims, NULL, NULL, NULL);
	cr_assert_eq(info(t, n, NOW, user, &rev), EC_INVALID_AUTH_TOKEN);
	free(n);
	/* HS256 keyed with the RSA public key file (the classic confusion). */
	FILE *f = fopen(pub, "r");
	char pubtext[4096];
	size_t pl = fread(pubtext, 1, sizeof(pubtext) - 1, f);
	fclose(f);
	pubtext[pl] = '\0';
	n = forge("{\"alg\":\"HS256\",\"typ\":\"JWT\"}", claims, NULL, "SHA256", pubtext);
	cr_assert_eq(info(t, n, NOW, user, &rev), EC_INVALID_AUTH_TOKEN);
	free(n);
	/* The right key but another algorithm than configured. */
	n = forge("{\"alg\":\"RS384\",\"typ\":\"JWT\"}", claims, k, "SHA384", NULL);
	cr_assert_eq(info(t, n, NOW, user, &rev), EC_INVALID_AUTH_TOKEN);
	ec_tokens *t384 = open_ok("jwt,sign-method=RS384,priv-key=%s", k);
	cr_assert_eq(info(t384, n, NOW, user, &rev), EC_OK, "fine for an RS384 member");
	cr_assert_str_eq(user, "root");
	cr_assert_eq(info(t384, tok, NOW, user, &rev), EC_INVALID_AUTH_TOKEN);
	ec_tokens_close(t384);
	free(n);
	/* The header must name the configured method even when the signature
	 * is one the method would accept. */
	n = forge("{\"alg\":\"RS384\",\"typ\":\"JWT\"}", claims, k, "SHA256", NULL);
	cr_assert_eq(info(t, n, NOW, user, &rev), EC_INVALID_AUTH_TOKEN, "RS384 header, RS256 sig");
	free(n);
	n = forge("{\"alg\":\"none\",\"typ\":\"JWT\"}", claims, k, "SHA256", NULL);
	cr_assert_eq(info(t, n, NOW, user, &rev), EC_INVALID_AUTH_TOKEN, "none header, RS256 sig");
	free(n);
	n = forge("{\"alg\":\"RS256\",\"typ\":\"JWT\"}", claims, k, "SHA256", NULL);
	cr_assert_eq(info(t, n, NOW, user, &rev), EC_OK, "the control: RS256 header, RS256 sig");
	free(n);
	/* Same key, PS256 member: an RS256 token is refused. */
	ec_tokens *ps = open_ok("jwt,sign-method=PS256,priv-key=%s", k);
	cr_assert_eq(info(ps, tok, NOW, user, &rev), EC_INVALID_AUTH_TOKEN);
	ec_tokens_close(ps);
	/* Another key. */
	keypair("rsb", "rsa");
	ec_tokens *o = open_ok("jwt,sign-method=RS256,priv-key=%s", in_dir("rsb.key"));
	cr_assert_eq(info(o, tok, NOW, user, &rev), EC_INVALID_AUTH_TOKEN);
	ec_tokens_close(o);
	/* Malformed. */
	const char *bad[] = {"", "a", "a.b", "a.b.c.d", "...", "!!.!!.!!", tok + 1};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		cr_assert_eq(info(t, bad[i], NOW, user, &rev), EC_INVALID_AUTH_TOKEN, "%s", bad[i]);
	sprintf(x, "%s.", tok);
	cr_assert_eq(info(t, x, NOW, user, &rev), EC_INVALID_AUTH_TOKEN);
	sprintf(x, "%s=", tok);
	cr_assert_eq(info(t, x, NOW, user, &rev), EC_INVALID_AUTH_TOKEN,
	             "padding is not base64url");
	cr_assert_eq(info(t, tok, NOW, user, &rev), EC_OK, "the original still verifies");
	/* Too long. */
	char *big = malloc(EC_TOKEN_MAX + 2);
	memset(big, 'A', EC_TOKEN_MAX + 1);
	big[EC_TOKEN_MAX + 1] = '\0';
	cr_assert_eq(info(t, big, NOW, user, &rev), EC_INVALID_AUTH_TOKEN);
	free(big);
	free(x);
	free(tok);
	ec_tokens_close(t);
}

Test(token, jwt_claims_as_golang_jwt_checks_them)
{
	keypair("rsa", "rsa");
	const char *k = in_dir("rsa.key");
	ec_tokens *t = open_ok("jwt,sign-method=RS256,priv-key=%s", k);
	const char *H = "{\"alg\":\"RS256\",\"typ\":\"JWT\"}";
	int64_t now_s = NOW / 1000;
	struct {
		const char *claims;
		int want;
		const char *user;
		uint64_t rev;
	} c[] = {
	        {"{\"revision\":5,\"username\":\"a\"}", EC_OK, "a", 5}, /* exp not required */
	        {"{\"exp\":0,\"revision\":5,\"username\":\"a\"}", EC_OK, "a", 5},
	        {"{\"exp\":\"9999999999\",\"revision\":5,\"username\":\"a\"}",
	         EC_INVALID_AUTH_TOKEN, NULL, 0},
	        {"{\"exp\":null,\"revision\":5,\"username\":\"a\"}", EC_INVALID_AUTH_TOKEN, NULL,
	         0},
	        {"{\"exp\":9999999999,\"username\":\"a\"}", EC_INVALID_AUTH_TOKEN, NULL, 0},
	        {"{\"exp\":9999999999,\"revision\":5}", EC_INVALID_AUTH_TOKEN, NULL, 0},
	        {"{\"exp\":9999999999,\"revision\":\"5\",\"username\":\"a\"}",
	         EC_INVALID_AUTH_TOKEN, NULL, 0},
	        {"{\"exp\":9999999999,\"revision\":5,\"username\":7}", EC_INVALID_AUTH_TOKEN, NULL,
	         0},
	        {"{\"exp\":9999999999,\"revision\":-1,\"username\":\"a\"}", EC_INVALID_AUTH_TOKEN,
	         NULL, 0},
	        {"{\"exp\":9999999999,\"revision\":5.0,\"username\":\"a\"}", EC_OK, "a", 5},
	        {"{\"exp\":9999999999,\"revision\":5e1,\"username\":\"a\"}", EC_OK, "a", 50},
	        {" { \"username\" : \"\\u0072oot\" , \"revision\" : 1 , \"x\" : [1, {\"y\": null}] "
	         "} ",
	         EC_OK, "root", 1},
	        {"{\"username\":\"a\",\"username\":\"b\",\"revision\":1}", EC_OK, "b", 1},
	        {"{\"username\":\"a\",\"revision\":1} x", EC_INVALID_AUTH_TOKEN, NULL, 0},
	        {"{\"username\":\"a\",\"revision\":1,}", EC_INVALID_AUTH_TOKEN, NULL, 0},
	        {"{\"username\":\"a\",\"revision\":01}", EC_INVALID_AUTH_TOKEN, NULL, 0},
	        {"[\"username\"]", EC_INVALID_AUTH_TOKEN, NULL, 0},
	        {"{\"username\":\"a\\u0000b\",\"revision\":1}", EC_INVALID_AUTH_TOKEN, NULL, 0},
	        {"{\"nbf\":9999999999,\"revision\":1,\"username\":\"a\"}", EC_INVALID_AUTH_TOKEN,
	         NULL, 0},
	        {"{\"iat\":9999999999,\"revision\":1,\"username\":\"a\"}", EC_INVALID_AUTH_TOKEN,
	         NULL, 0},
	        {"{\"nbf\":1,\"iat\":1,\"revision\":1,\"username\":\"a\"}", EC_OK, "a", 1},
	        {"{\"nbf\":\"1\",\"revision\":1,\"username\":\"a\"}", EC_INVALID_AUTH_TOKEN, NULL,
	         0},
	};
	for (size_t i = 0; i < sizeof(c) / sizeof(c[0]); i++) {
		char *tok = forge(H, c[i].claims, k, "SHA256", NULL);
		char user[257] = "";
		uint64_t rev = 0;
		int e = info(t, tok, NOW, user, &rev);
		cr_expect_eq(e, c[i].want, "%s: %s", c[i].claims, ec_strerror(e));
		if (e == EC_OK && c[i].want == EC_OK) {
			cr_expect_str_eq(user, c[i].user, "%s", c[i].claims);
			cr_expect_eq(rev, c[i].rev, "%s", c[i].claims);
		}
		free(tok);
	}
	/* exp at the second boundary: valid while now < exp. */
	char cl[128];
	snprintf(cl, sizeof(cl), "{\"exp\":%lld,\"revision\":1,\"username\":\"a\"}",
	         (long long)now_s + 1);
	char *tok = forge(H, cl, k, "SHA256", NULL);
	char user[257];
	uint64_t rev;
	cr_assert_eq(info(t, tok, (now_s + 1) * 1000 - 1, user, &rev), EC_OK);
	cr_assert_eq(info(t, tok, (now_s + 1) * 1000, user, &rev), EC_INVALID_AUTH_TOKEN);
	free(tok);
	/* Header variants. */
	const char *cl2 = "{\"revision\":1,\"username\":\"a\"}";
	tok = forge("{\"typ\":\"JWT\",\"alg\":\"RS256\",\"kid\":\"x\"}", cl2, k, "SHA256", NULL);
	cr_assert_eq(info(t, tok, NOW, user, &rev), EC_OK, "key order and extra fields are fine");
	free(tok);
	tok = forge("{\"typ\":\"JWT\"}", cl2, k, "SHA256", NULL);
	cr_assert_eq(info(t, tok, NOW, user, &rev), EC_INVALID_AUTH_TOKEN, "no alg");
	free(tok);
	tok = forge("{\"alg\":\"RS2567\"}", cl2, k, "SHA256", NULL);
	cr_assert_eq(info(t, tok, NOW, user, &rev), EC_INVALID_AUTH_TOKEN);
	free(tok);
	tok = forge("{\"alg\":\"RS25\"}", cl2, k, "SHA256", NULL);
	cr_assert_eq(info(t, tok, NOW, user, &rev), EC_INVALID_AUTH_TOKEN);
	free(tok);
	ec_tokens_close(t);
}

Test(token, jwt_ttl_option_and_expiry)
{
	keypair("rsa", "rsa");
	const char *k = in_dir("rsa.key");
	struct {
		const char *ttl;
		int64_t exp; /* from NOW = ...000.123 s */
	} c[] = {
	        {"1s", NOW / 1000 + 1},        {"1h30m", NOW / 1000 + 5400},
	        {"1.5s", NOW / 1000 + 1},      {"877ms", NOW / 1000 + 1},
	        {"876ms", NOW / 1000},         {"0", NOW / 1000},
	        {"-1s", NOW / 1000 - 1},       {"2h45m30.5s", NOW / 1000 + 9930},
	        {"1000000us", NOW / 1000 + 1},
	};
	for (size_t i = 0; i < sizeof(c) / sizeof(c[0]); i++) {
		ec_tokens *t = open_ok("jwt,sign-method=RS256,priv-key=%s,ttl=%s", k, c[i].ttl);
		char *tok = NULL;
		cr_assert_eq(ec_token_assign(t, "a", 1, NULL, 0, NOW, &tok), EC_OK);
		parts p;
		split(tok, &p);
		char want[128];
		snprintf(want, sizeof(want), "{\"exp\":%lld,", (long long)c[i].exp);
		cr_expect(strncmp(p.claims, want, strlen(want)) == 0, "ttl %s: %s", c[i].ttl,
		          p.claims);
		free(tok);
		ec_tokens_close(t);
	}
	/* A 1 s token: fine until its exp second begins. */
	ec_tokens *t = open_ok("jwt,sign-method=RS256,priv-key=%s,ttl=1s", k);
	int64_t start = 1700000000000LL;
	char *tok = NULL;
	cr_assert_eq(ec_token_assign(t, "a", 1, NULL, 0, start, &tok), EC_OK);
	char user[257];
	uint64_t rev;
	cr_assert_eq(info(t, tok, start + 999, user, &rev), EC_OK);
	cr_assert_eq(info(t, tok, start + 1000, user, &rev), EC_INVALID_AUTH_TOKEN);
	cr_assert_eq(info(t, tok, start + 60000, user, &rev), EC_INVALID_AUTH_TOKEN);
	free(tok);
	ec_tokens_close(t);
	/* ttl=0: tokens are born expired (etcd does the same). */
	t = open_ok("jwt,sign-method=RS256,priv-key=%s,ttl=0s", k);
	cr_assert_eq(ec_token_assign(t, "a", 1, NULL, 0, start, &tok), EC_OK);
	cr_assert_eq(info(t, tok, start, user, &rev), EC_INVALID_AUTH_TOKEN);
	free(tok);
	ec_tokens_close(t);
}

Test(token, jwt_username_escaping)
{
	keypair("rsa", "rsa");
	ec_tokens *t = open_ok("jwt,sign-method=RS256,priv-key=%s", in_dir("rsa.key"));
	const char *name = "a\"b\\c<d>&e\n\t\x01 \xc3\xa9\xe2\x80\xa8/";
	char *tok = NULL;
	cr_assert_eq(ec_token_assign(t, name, 1, NULL, 0, NOW, &tok), EC_OK);
	parts p;
	split(tok, &p);
	/* Go's encoding/json: HTML-safe escapes, U+2028 escaped, '/' as is. */
	char want[512];
	snprintf(want, sizeof(want),
	         "{\"exp\":%lld,\"revision\":1,\"username\":"
	         "\"a\\\"b\\\\c\\u003cd\\u003e\\u0026e\\n\\t\\u0001 \xc3\xa9\\u2028/\"}",
	         (long long)(NOW / 1000 + 300));
	cr_assert_str_eq(p.claims, want);
	char user[257];
	uint64_t rev;
	cr_assert_eq(info(t, tok, NOW, user, &rev), EC_OK);
	cr_assert_str_eq(user, name, "round trip");
	free(tok);
	/* A large revision is written as an integer and read back exactly. */
	free(jwt_check(t, "RS256", "big", 1ULL << 40, NOW / 1000 + 300, 256));
	/* Invalid UTF-8 becomes U+FFFD, as Go writes it. */
	cr_assert_eq(ec_token_assign(t, "x\xffy", 1, NULL, 0, NOW, &tok), EC_OK);
	split(tok, &p);
	cr_assert(strstr(p.claims, "\"x\\ufffdy\"") != NULL, "%s", p.claims);
	cr_assert_eq(info(t, tok, NOW, user, &rev), EC_OK);
	cr_assert_str_eq(user, "x\xef\xbf\xbdy");
	free(tok);
	ec_tokens_close(t);
}

Test(token, jwt_verify_only_member)
{
	keypair("rsa", "rsa");
	keypair("ec", "P-256");
	ec_tokens *signer = open_ok("jwt,sign-method=RS256,priv-key=%s", in_dir("rsa.key"));
	ec_tokens *verifier = open_ok("jwt,sign-method=RS256,pub-key=%s", in_dir("rsa.pub"));
	char *tok = jwt_check(signer, "RS256", "v", 8, NOW / 1000 + 300, 256);
	char user[257];
	uint64_t rev;
	cr_assert_eq(info(verifier, tok, NOW, user, &rev), EC_OK);
	cr_assert_str_eq(user, "v");
	cr_assert_eq(rev, 8);
	assert_tamper_sig(verifier, tok);
	char *none = (char *)1;
	cr_assert_eq(ec_token_assign(verifier, "v", 1, NULL, 0, NOW, &none), EC_INVALID_AUTH_MGMT);
	cr_assert_null(none);
	free(tok);
	ec_tokens_close(verifier);
	ec_tokens_close(signer);
	/* The same for ECDSA. */
	signer = open_ok("jwt,sign-method=ES256,priv-key=%s", in_dir("ec.key"));
	verifier = open_ok("jwt,sign-method=ES256,pub-key=%s", in_dir("ec.pub"));
	tok = jwt_check(signer, "ES256", "e", 2, NOW / 1000 + 300, 64);
	cr_assert_eq(info(verifier, tok, NOW, user, &rev), EC_OK);
	free(tok);
	ec_tokens_close(verifier);
	ec_tokens_close(signer);
}

Test(token, jwt_certificate_as_public_key)
{
	keypair("rsa", "rsa");
	sh("openssl req -x509 -new -key rsa.key -subj /CN=jwt -days 2 -out rsa.crt");
	ec_tokens *signer = open_ok("jwt,sign-method=RS256,priv-key=%s,pub-key=%s",
	                            in_dir("rsa.key"), in_dir("rsa.crt"));
	ec_tokens *verifier = open_ok("jwt,sign-method=RS256,pub-key=%s", in_dir("rsa.crt"));
	char *tok = jwt_check(signer, "RS256", "c", 1, NOW / 1000 + 300, 256);
	char user[257];
	uint64_t rev;
	cr_assert_eq(info(verifier, tok, NOW, user, &rev), EC_OK);
	free(tok);
	ec_tokens_close(verifier);
	ec_tokens_close(signer);
	/* A certificate of another key does not match. */
	keypair("rsb", "rsa");
	open_fails("auth: public and private keys don't match",
	           "jwt,sign-method=RS256,priv-key=%s,pub-key=%s", in_dir("rsb.key"),
	           in_dir("rsa.crt"));
}

#define FIX "/usr/share/gocode/src/go.etcd.io/etcd/integration/fixtures/"

Test(token, jwt_with_etcd_fixture_keys)
{
	if (access(FIX "server.crt", R_OK) != 0 || access(FIX "server.key.insecure", R_OK) != 0) {
		cr_log_warn("etcd fixtures not installed; skipped");
		return;
	}
	/* etcd's e2e tests: --auth-token jwt,pub-key=server.crt,priv-key=
	 * server.key.insecure,sign-method=RS256,ttl=1s */
	ec_tokens *t = open_ok("jwt,pub-key=" FIX "server.crt,priv-key=" FIX
	                       "server.key.insecure,sign-method=RS256,ttl=1s");
	char *tok = jwt_check(t, "RS256", "root", 1, NOW / 1000 + 1, 0);
	ec_tokens *v = open_ok("jwt,pub-key=" FIX "server.crt,sign-method=RS256");
	char user[257];
	uint64_t rev;
	cr_assert_eq(info(v, tok, NOW, user, &rev), EC_OK);
	cr_assert_eq(info(v, tok, NOW + 1000, user, &rev), EC_INVALID_AUTH_TOKEN);
	free(tok);
	ec_tokens_close(v);
	ec_tokens_close(t);
	if (access(FIX "server-ecdsa.crt", R_OK) == 0) {
		t = open_ok("jwt,pub-key=" FIX "server-ecdsa.crt,priv-key=" FIX
		            "server-ecdsa.key.insecure,sign-method=ES256");
		free(jwt_check(t, "ES256", "root", 1, NOW / 1000 + 300, 64));
		ec_tokens_close(t);
	}
}

/* ---- threads ---------------------------------------------------------------------- */

static ec_tokens *shared;

static void *worker(void *arg)
{
	long id = (long)arg;
	for (int i = 0; i < 200; i++) {
		char *tok = NULL, name[32], user[257];
		uint64_t rev;
		snprintf(name, sizeof(name), "w%ld", id);
		if (ec_token_assign(shared, name, 1, "ABCDEFGHIJKLMNOP", (uint64_t)(id * 1000 + i),
		                    NOW, &tok) != EC_OK)
			return (void *)1;
		if (ec_token_info(shared, tok, strlen(tok), 1, NOW, user, sizeof(user), &rev) !=
		            EC_OK ||
		    strcmp(user, name) != 0) {
			free(tok);
			return (void *)2;
		}
		free(tok);
		if (i % 50 == 0)
			ec_token_expire(shared, NOW);
	}
	return NULL;
}

Test(token, simple_tokens_from_many_threads)
{
	shared = open_ok("simple");
	pthread_t th[4];
	for (long i = 0; i < 4; i++)
		cr_assert_eq(pthread_create(&th[i], NULL, worker, (void *)i), 0);
	for (int i = 0; i < 4; i++) {
		void *rv = NULL;
		pthread_join(th[i], &rv);
		cr_assert_null(rv, "worker failed: %p", rv);
	}
	ec_tokens_close(shared);
}
