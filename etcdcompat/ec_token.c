/*
 * ec_token: etcd's auth token providers (see ec_token.h).
 *
 * Three providers behind one handle, picked by the --auth-token value the way
 * etcd's NewTokenProvider does: "simple" (a table of opaque tokens kept in
 * memory with a sliding expiry), "jwt,..." (stateless signed tokens, libcrypto
 * EVP), and "" (etcd's nop provider: no token is ever made or accepted).
 *
 * The JWT pieces are written to match what etcd produces with golang-jwt:
 * header {"alg":"<method>","typ":"JWT"} and claims
 * {"exp":<unix s>,"revision":<n>,"username":"<name>"} (Go's encoding/json
 * sorts map keys and escapes strings as below), base64url without padding,
 * ECDSA signatures as the JWS raw r||s pair, RSA-PSS signed with a salt as
 * long as the hash and verified with any salt length. Parsing accepts any
 * well-formed JWT of the configured method whose claims are valid at the
 * given time (exp, nbf, iat as golang-jwt v4 checks them).
 */
#include "etcdcompat/ec_token.h"

#include <errno.h>
#include <inttypes.h>
#include <locale.h>
#include <openssl/bn.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "etcdcompat/ec_base64.h"
#include "etcdcompat/ec_errors.h"
#include "storage/st_db.h"

/* Largest key file read (PEM keys and certificates are a few KiB). */
#define KEY_FILE_MAX (1 << 20)

enum { TOK_NOP, TOK_SIMPLE, TOK_JWT };
enum { FAM_RS, FAM_PS, FAM_ES, FAM_HS };

/* A simple token: its text, its user and when it stops working. */
typedef struct stok {
	struct stok *next;
	int64_t expiry_ms;
	char *user;
	size_t len;
	char tok[]; /* NUL-terminated */
} stok;

struct ec_tokens {
	int kind;

	/* simple */
	pthread_mutex_t mu; /* guards the table */
	int64_t ttl_ms;
	stok **tab;
	size_t nb, count;

	/* jwt (read-only after open: no lock) */
	int fam;
	char alg[8];
	const EVP_MD *md;
	int ec_bytes;  /* ES: bytes of r and of s */
	EVP_PKEY *key; /* signs (private) or only verifies (public) */
	bool verify_only;
	unsigned char *hmac;
	size_t hmac_len;
	int64_t ttl_ns;
};

/* ---- small helpers ----------------------------------------------------- */

/* ---- Go's time.ParseDuration ------------------------------------------- */

typedef struct unit {
	const char *name;
	uint64_t ns;
} unit;

static const unit units[] = {
        {"ns", 1ULL},
        {"us", 1000ULL},
        {"\xc2\xb5s", 1000ULL}, /* U+00B5 micro sign */
        {"\xce\xbcs", 1000ULL}, /* U+03BC Greek mu */
        {"ms", 1000000ULL},
        {"s", 1000000000ULL},
        {"m", 60ULL * 1000000000ULL},
        {"h", 3600ULL * 1000000000ULL},
};

/*
 * Parse @s as Go's time.ParseDuration does ("300ms", "-1.5h", "2h45m"; a bare
 * "0" is the only unit-less value) into *@ns. Returns false on a bad or
 * overflowing duration.
 */
static bool parse_duration(const char *s, int64_t *ns)
{
	const uint64_t lim = 1ULL << 63;
	bool neg = false;
	if (*s == '-' || *s == '+')
		neg = *s++ == '-';
	if (strcmp(s, "0") == 0) {
		*ns = 0;
		return true;
	}
	if (*s == '\0')
		return false;
	uint64_t d = 0;
	while (*s) {
		if (!(*s == '.' || (*s >= '0' && *s <= '9')))
			return false;
		uint64_t v = 0, f = 0;
		double scale = 1;
		const char *st = s;
		for (; *s >= '0' && *s <= '9'; s++) {
			if (v > lim / 10)
				return false;
			v = v * 10 + (uint64_t)(*s - '0');
			if (v > lim)
				return false;
		}
		bool pre = s != st, post = false;
		if (*s == '.') {
			s++;
			st = s;
			bool over = false;
			for (; *s >= '0' && *s <= '9'; s++) {
				if (over)
					continue;
				if (f > (lim - 1) / 10) {
					over = true;
					continue;
				}
				uint64_t y = f * 10 + (uint64_t)(*s - '0');
				if (y > lim) {
					over = true;
					continue;
				}
				f = y;
				scale *= 10;
			}
			post = s != st;
		}
		if (!pre && !post)
			return false;
		size_t ul = 0;
		while (s[ul] && s[ul] != '.' && !(s[ul] >= '0' && s[ul] <= '9'))
			ul++;
		if (ul == 0)
			return false; /* missing unit */
		const unit *u = NULL;
		for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++)
			if (strlen(units[i].name) == ul && memcmp(units[i].name, s, ul) == 0)
				u = &units[i];
		if (u == NULL)
			return false; /* unknown unit */
		s += ul;
		if (v > lim / u->ns)
			return false;
		v *= u->ns;
		if (f > 0) {
			v += (uint64_t)((double)f * ((double)u->ns / scale));
			if (v > lim)
				return false;
		}
		d += v;
		if (d > lim)
			return false;
	}
	if (neg) {
		*ns = d == lim ? INT64_MIN : -(int64_t)d;
		return true;
	}
	if (d > lim - 1)
		return false;
	*ns = (int64_t)d;
	return true;
}

/* ---- base64url ----------------------------------------------------------- */

/* Append base64url (no padding) of @in to @out (room for 4 * (@n + 2) / 3 + 1,
 * the NUL it also writes). */
static size_t b64_enc(const uint8_t *in, size_t n, char *out)
{
	return ec_b64_encode(in, n, EC_B64_URL, false, out);
}

/* Decode unpadded base64url @in (Go's RawURLEncoding: no '=', a length of
 * 4k+1 is invalid, unused trailing bits ignored) into malloc'd *@out. */
static bool b64_dec(const char *in, size_t n, uint8_t **out, size_t *olen)
{
	uint8_t *b = malloc(n / 4 * 3 + 3);
	if (b == NULL)
		return false;
	if (ec_b64_decode(in, n, EC_B64_IN_URL | EC_B64_PAD_REFUSED, b, olen, NULL) != 0) {
		free(b);
		return false;
	}
	*out = b;
	return true;
}

/* ---- JSON ---------------------------------------------------------------- */

/* Length of the valid UTF-8 sequence at @p (of @n bytes), or 0. */
static size_t utf8_len(const uint8_t *p, size_t n)
{
	uint8_t c = p[0];
	size_t len;
	uint32_t cp;
	if (c < 0x80)
		return 1;
	if (c >= 0xc2 && c <= 0xdf) {
		len = 2;
		cp = c & 0x1f;
	} else if (c >= 0xe0 && c <= 0xef) {
		len = 3;
		cp = c & 0x0f;
	} else if (c >= 0xf0 && c <= 0xf4) {
		len = 4;
		cp = c & 0x07;
	} else {
		return 0;
	}
	if (n < len)
		return 0;
	for (size_t i = 1; i < len; i++) {
		if ((p[i] & 0xc0) != 0x80)
			return 0;
		cp = cp << 6 | (p[i] & 0x3f);
	}
	if ((len == 3 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) ||
	    (len == 4 && (cp < 0x10000 || cp > 0x10ffff)))
		return 0;
	return len;
}

/*
 * Write @s as a JSON string the way Go's encoding/json does (HTML-safe:
 * <, >, & as \u003c...; U+2028/2029 escaped; invalid UTF-8 as \ufffd) into
 * @out, which has room for 6 * strlen(@s) + 3 bytes. Returns the length.
 */
static size_t json_str(const char *s, char *out)
{
	static const char hex[] = "0123456789abcdef";
	const uint8_t *p = (const uint8_t *)s;
	size_t n = strlen(s), o = 0;
	out[o++] = '"';
	for (size_t i = 0; i < n;) {
		uint8_t c = p[i];
		if (c < 0x80) {
			if (c == '"' || c == '\\') {
				out[o++] = '\\';
				out[o++] = (char)c;
			} else if (c == '\n' || c == '\r' || c == '\t') {
				out[o++] = '\\';
				out[o++] = c == '\n' ? 'n' : c == '\r' ? 'r' : 't';
			} else if (c < 0x20 || c == '<' || c == '>' || c == '&') {
				memcpy(out + o, "\\u00", 4);
				o += 4;
				out[o++] = hex[c >> 4];
				out[o++] = hex[c & 15];
			} else {
				out[o++] = (char)c;
			}
			i++;
			continue;
		}
		size_t l = utf8_len(p + i, n - i);
		if (l == 0) {
			memcpy(out + o, "\\ufffd", 6);
			o += 6;
			i++;
		} else if (l == 3 && p[i] == 0xe2 && p[i + 1] == 0x80 &&
		           (p[i + 2] == 0xa8 || p[i + 2] == 0xa9)) {
			memcpy(out + o, p[i + 2] == 0xa8 ? "\\u2028" : "\\u2029", 6);
			o += 6;
			i += 3;
		} else {
			memcpy(out + o, p + i, l);
			o += l;
			i += l;
		}
	}
	out[o++] = '"';
	return o;
}

typedef struct jp {
	const char *p, *end;
	int depth;
} jp;

static void j_ws(jp *j)
{
	while (j->p < j->end && (*j->p == ' ' || *j->p == '\t' || *j->p == '\n' || *j->p == '\r'))
		j->p++;
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

static bool j_hex4(jp *j, uint32_t *v)
{
	if (j->end - j->p < 4)
		return false;
	*v = 0;
	for (int i = 0; i < 4; i++) {
		int h = hexval(j->p[i]);
		if (h < 0)
			return false;
		*v = *v << 4 | (uint32_t)h;
	}
	j->p += 4;
	return true;
}

static size_t put_utf8(uint32_t cp, char *o)
{
	if (cp < 0x80) {
		o[0] = (char)cp;
		return 1;
	}
	if (cp < 0x800) {
		o[0] = (char)(0xc0 | cp >> 6);
		o[1] = (char)(0x80 | (cp & 0x3f));
		return 2;
	}
	if (cp < 0x10000) {
		o[0] = (char)(0xe0 | cp >> 12);
		o[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
		o[2] = (char)(0x80 | (cp & 0x3f));
		return 3;
	}
	o[0] = (char)(0xf0 | cp >> 18);
	o[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
	o[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
	o[3] = (char)(0x80 | (cp & 0x3f));
	return 4;
}

/*
 * Parse a JSON string at j->p. With @out (room for the raw string's length + 1:
 * decoding never grows it... except an invalid byte, 1 -> 3, so callers give
 * 3x), the decoded bytes and a NUL; *@olen their count. Decoding follows Go:
 * an unpaired surrogate or invalid UTF-8 becomes U+FFFD.
 */
static bool j_string(jp *j, char *out, size_t *olen)
{
	if (j->p >= j->end || *j->p != '"')
		return false;
	j->p++;
	size_t o = 0;
	while (j->p < j->end) {
		uint8_t c = (uint8_t)*j->p;
		if (c == '"') {
			j->p++;
			if (out) {
				out[o] = '\0';
				*olen = o;
			}
			return true;
		}
		if (c < 0x20)
			return false;
		if (c == '\\') {
			j->p++;
			if (j->p >= j->end)
				return false;
			char e = *j->p++;
			char ch;
			switch (e) {
			case '"':
				ch = '"';
				break;
			case '\\':
				ch = '\\';
				break;
			case '/':
				ch = '/';
				break;
			case 'b':
				ch = '\b';
				break;
			case 'f':
				ch = '\f';
				break;
			case 'n':
				ch = '\n';
				break;
			case 'r':
				ch = '\r';
				break;
			case 't':
				ch = '\t';
				break;
			case 'u': {
				uint32_t cp;
				if (!j_hex4(j, &cp))
					return false;
				if (cp >= 0xd800 && cp < 0xdc00) {
					uint32_t lo;
					const char *save = j->p;
					if (j->end - j->p >= 6 && j->p[0] == '\\' &&
					    j->p[1] == 'u') {
						j->p += 2;
						if (j_hex4(j, &lo) && lo >= 0xdc00 && lo < 0xe000)
							cp = 0x10000 + ((cp - 0xd800) << 10) +
							     (lo - 0xdc00);
						else {
							j->p = save;
							cp = 0xfffd;
						}
					} else {
						cp = 0xfffd;
					}
				} else if (cp >= 0xdc00 && cp < 0xe000) {
					cp = 0xfffd;
				}
				if (out)
					o += put_utf8(cp, out + o);
				continue;
			}
			default:
				return false;
			}
			if (out)
				out[o++] = ch;
			continue;
		}
		if (c < 0x80) {
			if (out)
				out[o++] = (char)c;
			j->p++;
			continue;
		}
		size_t l = utf8_len((const uint8_t *)j->p, (size_t)(j->end - j->p));
		if (l == 0) {
			if (out)
				o += put_utf8(0xfffd, out + o);
			j->p++;
		} else {
			if (out)
				memcpy(out + o, j->p, l);
			o += out ? l : 0;
			j->p += l;
		}
	}
	return false;
}

static locale_t c_locale;
static pthread_once_t c_locale_once = PTHREAD_ONCE_INIT;

static void make_c_locale(void)
{
	c_locale = newlocale(LC_NUMERIC_MASK, "C", (locale_t)0);
}

/* Parse a JSON number (strict grammar) into *@v (may be NULL). */
static bool j_number(jp *j, double *v)
{
	const char *s = j->p, *p = s;
	if (p < j->end && *p == '-')
		p++;
	if (p >= j->end)
		return false;
	if (*p == '0') {
		p++;
	} else if (*p >= '1' && *p <= '9') {
		while (p < j->end && *p >= '0' && *p <= '9')
			p++;
	} else {
		return false;
	}
	if (p < j->end && *p == '.') {
		p++;
		if (p >= j->end || !(*p >= '0' && *p <= '9'))
			return false;
		while (p < j->end && *p >= '0' && *p <= '9')
			p++;
	}
	if (p < j->end && (*p == 'e' || *p == 'E')) {
		p++;
		if (p < j->end && (*p == '+' || *p == '-'))
			p++;
		if (p >= j->end || !(*p >= '0' && *p <= '9'))
			return false;
		while (p < j->end && *p >= '0' && *p <= '9')
			p++;
	}
	j->p = p;
	if (v == NULL)
		return true;
	size_t n = (size_t)(p - s);
	char *tmp = malloc(n + 1);
	if (tmp == NULL)
		return false;
	memcpy(tmp, s, n);
	tmp[n] = '\0';
	pthread_once(&c_locale_once, make_c_locale);
	*v = c_locale != (locale_t)0 ? strtod_l(tmp, NULL, c_locale) : strtod(tmp, NULL);
	free(tmp);
	return true;
}

static bool j_lit(jp *j, const char *w)
{
	size_t n = strlen(w);
	if ((size_t)(j->end - j->p) < n || memcmp(j->p, w, n) != 0)
		return false;
	j->p += n;
	return true;
}

static bool j_skip(jp *j);

static bool j_skip_container(jp *j, char close)
{
	if (++j->depth > 64)
		return false;
	j->p++;
	j_ws(j);
	if (j->p < j->end && *j->p == close) {
		j->p++;
		j->depth--;
		return true;
	}
	for (;;) {
		j_ws(j);
		if (close == '}') {
			if (!j_string(j, NULL, NULL))
				return false;
			j_ws(j);
			if (j->p >= j->end || *j->p != ':')
				return false;
			j->p++;
		}
		if (!j_skip(j))
			return false;
		j_ws(j);
		if (j->p >= j->end)
			return false;
		if (*j->p == ',') {
			j->p++;
			continue;
		}
		if (*j->p != close)
			return false;
		j->p++;
		j->depth--;
		return true;
	}
}

/* Skip one JSON value. */
static bool j_skip(jp *j)
{
	j_ws(j);
	if (j->p >= j->end)
		return false;
	switch (*j->p) {
	case '{':
		return j_skip_container(j, '}');
	case '[':
		return j_skip_container(j, ']');
	case '"':
		return j_string(j, NULL, NULL);
	case 't':
		return j_lit(j, "true");
	case 'f':
		return j_lit(j, "false");
	case 'n':
		return j_lit(j, "null");
	default:
		return j_number(j, NULL);
	}
}

/* The last value seen for one member name of interest. */
typedef struct jfield {
	const char *name;
	bool seen;
	bool is_num, is_str;
	double num;
	char *str; /* malloc'd */
	size_t slen;
} jfield;

/*
 * Parse @n bytes at @s as one JSON object (nothing but whitespace after it)
 * and fill the @nf fields named in @f with their last value (Go's maps keep
 * the last duplicate). Returns false if it is not such an object.
 */
static bool j_object(const char *s, size_t n, jfield *f, size_t nf)
{
	jp j = {s, s + n, 0};
	j_ws(&j);
	if (j.p >= j.end || *j.p != '{')
		return false;
	j.p++;
	j_ws(&j);
	bool first = true;
	while (j.p < j.end && *j.p != '}') {
		if (!first) {
			if (*j.p != ',')
				return false;
			j.p++;
			j_ws(&j);
		}
		first = false;
		const char *ks = j.p;
		char key[3 * 24 + 1]; /* decoding at most triples a byte */
		size_t klen = 0;
		if (!j_string(&j, NULL, NULL))
			return false;
		/* Decode the name again only when it is short enough to be one of
		 * ours (raw length, quotes included, at most 24). */
		jfield *hit = NULL;
		if (j.p - ks <= 24) {
			jp k = {ks, j.p, 0};
			j_string(&k, key, &klen);
			for (size_t i = 0; i < nf; i++)
				if (strlen(f[i].name) == klen && memcmp(f[i].name, key, klen) == 0)
					hit = &f[i];
		}
		j_ws(&j);
		if (j.p >= j.end || *j.p != ':')
			return false;
		j.p++;
		j_ws(&j);
		if (hit == NULL) {
			if (!j_skip(&j))
				return false;
		} else {
			hit->seen = true;
			hit->is_num = hit->is_str = false;
			free(hit->str);
			hit->str = NULL;
			if (j.p < j.end && *j.p == '"') {
				const char *vs = j.p;
				if (!j_skip(&j))
					return false;
				size_t raw = (size_t)(j.p - vs);
				if ((hit->str = malloc(raw * 3 + 1)) == NULL)
					return false;
				jp v = {vs, j.p, 0};
				j_string(&v, hit->str, &hit->slen);
				hit->is_str = true;
			} else if (j.p < j.end && (*j.p == '-' || (*j.p >= '0' && *j.p <= '9'))) {
				if (!j_number(&j, &hit->num))
					return false;
				hit->is_num = true;
			} else if (!j_skip(&j)) {
				return false;
			}
		}
		j_ws(&j);
	}
	if (j.p >= j.end)
		return false;
	j.p++;
	j_ws(&j);
	return j.p == j.end;
}

static void jfields_free(jfield *f, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(f[i].str);
}

/* ---- JWT keys ------------------------------------------------------------ */

typedef struct method {
	const char *name;
	int fam;
	const char *md;
	int ec_bits;
} method;

static const method methods[] = {
        {"RS256", FAM_RS, "SHA256", 0},   {"RS384", FAM_RS, "SHA384", 0},
        {"RS512", FAM_RS, "SHA512", 0},   {"PS256", FAM_PS, "SHA256", 0},
        {"PS384", FAM_PS, "SHA384", 0},   {"PS512", FAM_PS, "SHA512", 0},
        {"ES256", FAM_ES, "SHA256", 256}, {"ES384", FAM_ES, "SHA384", 384},
        {"ES512", FAM_ES, "SHA512", 521}, {"HS256", FAM_HS, "SHA256", 0},
        {"HS384", FAM_HS, "SHA384", 0},   {"HS512", FAM_HS, "SHA512", 0},
};

static int no_passphrase(char *buf, int size, int rw, void *u)
{
	(void)buf;
	(void)size;
	(void)rw;
	(void)u;
	return -1; /* never prompt on the terminal for an encrypted key */
}

/* Read all of @path into malloc'd *@buf. Returns 0 or an errno value. */
static int read_file(const char *path, unsigned char **buf, size_t *len)
{
	FILE *f = fopen(path, "rb");
	if (f == NULL)
		return errno;
	unsigned char *b = malloc(KEY_FILE_MAX + 1);
	if (b == NULL) {
		fclose(f);
		return ENOMEM;
	}
	size_t n = fread(b, 1, KEY_FILE_MAX + 1, f);
	int e = ferror(f) ? EIO : 0;
	fclose(f);
	if (e == 0 && n > KEY_FILE_MAX)
		e = EFBIG;
	if (e) {
		free(b);
		return e;
	}
	*buf = b;
	*len = n;
	return 0;
}

static EVP_PKEY *pem_private(const unsigned char *b, size_t n)
{
	BIO *bio = BIO_new_mem_buf(b, (int)n);
	if (bio == NULL)
		return NULL;
	EVP_PKEY *k = PEM_read_bio_PrivateKey(bio, NULL, no_passphrase, NULL);
	BIO_free(bio);
	return k;
}

/* A PUBLIC KEY block, else the key of a CERTIFICATE block (etcd's e2e tests
 * use server.crt as pub-key). */
static EVP_PKEY *pem_public(const unsigned char *b, size_t n)
{
	BIO *bio = BIO_new_mem_buf(b, (int)n);
	if (bio == NULL)
		return NULL;
	EVP_PKEY *k = PEM_read_bio_PUBKEY(bio, NULL, no_passphrase, NULL);
	BIO_free(bio);
	if (k != NULL)
		return k;
	if ((bio = BIO_new_mem_buf(b, (int)n)) == NULL)
		return NULL;
	X509 *x = PEM_read_bio_X509(bio, NULL, no_passphrase, NULL);
	BIO_free(bio);
	if (x == NULL)
		return NULL;
	k = X509_get_pubkey(x);
	X509_free(x);
	return k;
}

static const char *key_kind(int fam)
{
	return fam == FAM_ES ? "ECDSA" : "RSA";
}

/* etcd's jwtOptions.Key(): load and check the keys for the method. */
static int load_keys(ec_tokens *t, const unsigned char *pub, size_t publen,
                     const unsigned char *priv, size_t privlen, char *err, size_t errlen)
{
	static const char pem_msg[] = "invalid key: Key must be a PEM encoded PKCS1 or PKCS8 key";
	if (t->fam == FAM_HS) {
		if (privlen == 0) {
			st_errf(err, errlen, "auth: missing key data");
			return -1;
		}
		if ((t->hmac = malloc(privlen)) == NULL) {
			st_errf(err, errlen, "auth: out of memory");
			return -1;
		}
		memcpy(t->hmac, priv, privlen);
		t->hmac_len = privlen;
		return 0;
	}
	int want = t->fam == FAM_ES ? EVP_PKEY_EC : EVP_PKEY_RSA;
	EVP_PKEY *sk = NULL, *pk = NULL;
	int rc = -1;
	if (privlen > 0) {
		if ((sk = pem_private(priv, privlen)) == NULL) {
			st_errf(err, errlen, "%s (priv-key)", pem_msg);
			goto out;
		}
		if (EVP_PKEY_get_base_id(sk) != want) {
			st_errf(err, errlen, "key is not a valid %s private key", key_kind(t->fam));
			goto out;
		}
	}
	if (publen > 0) {
		if ((pk = pem_public(pub, publen)) == NULL) {
			st_errf(err, errlen, "%s (pub-key)", pem_msg);
			goto out;
		}
		if (EVP_PKEY_get_base_id(pk) != want) {
			st_errf(err, errlen, "key is not a valid %s public key", key_kind(t->fam));
			goto out;
		}
	}
	if (sk == NULL && pk == NULL) {
		st_errf(err, errlen, "auth: missing key data");
		goto out;
	}
	if (sk != NULL && pk != NULL && EVP_PKEY_eq(sk, pk) != 1) {
		st_errf(err, errlen, "auth: public and private keys don't match");
		goto out;
	}
	EVP_PKEY *k = sk ? sk : pk;
	if (t->fam == FAM_ES) {
		int bits = EVP_PKEY_get_bits(k);
		const method *m = NULL;
		for (size_t i = 0; i < sizeof(methods) / sizeof(methods[0]); i++)
			if (strcmp(methods[i].name, t->alg) == 0)
				m = &methods[i];
		if (m == NULL || bits != m->ec_bits) {
			st_errf(err, errlen, "key is invalid: %s needs a P-%d key, not %d bits",
			     t->alg, m ? m->ec_bits : 0, bits);
			goto out;
		}
		t->ec_bytes = (bits + 7) / 8;
	}
	t->verify_only = sk == NULL;
	t->key = k;
	if (k == sk)
		sk = NULL;
	else
		pk = NULL;
	rc = 0;
out:
	EVP_PKEY_free(sk);
	EVP_PKEY_free(pk);
	ERR_clear_error();
	return rc;
}

/* ---- option string --------------------------------------------------------- */

#define MAX_OPTS 16

typedef struct kv {
	char *k, *v;
} kv;

static const char *opt_get(const kv *o, size_t n, const char *k)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(o[i].k, k) == 0)
			return o[i].v;
	return "";
}

static int open_jwt(ec_tokens *t, const kv *o, size_t no, char *err, size_t errlen)
{
	static const char inv[] = "auth: invalid auth options";
	/* jwtOptions.ParseWithDefaults: ttl, pub-key, priv-key, sign-method;
	 * any failure there is "auth: invalid auth options" in etcd. */
	const char *ttl = opt_get(o, no, "ttl");
	t->ttl_ns = (int64_t)EC_TOKEN_JWT_DEFAULT_TTL_MS * 1000000;
	if (ttl[0] && !parse_duration(ttl, &t->ttl_ns)) {
		st_errf(err, errlen, "%s (time: invalid duration \"%s\")", inv, ttl);
		return -1;
	}
	unsigned char *pub = NULL, *priv = NULL;
	size_t publen = 0, privlen = 0;
	int rc = -1;
	const char *pubf = opt_get(o, no, "pub-key"), *privf = opt_get(o, no, "priv-key");
	int e;
	if (pubf[0] && (e = read_file(pubf, &pub, &publen)) != 0) {
		st_errf(err, errlen, "%s (open %s: %s)", inv, pubf, strerror(e));
		goto out;
	}
	if (privf[0] && (e = read_file(privf, &priv, &privlen)) != 0) {
		st_errf(err, errlen, "%s (open %s: %s)", inv, privf, strerror(e));
		goto out;
	}
	const char *sm = opt_get(o, no, "sign-method");
	const method *m = NULL;
	for (size_t i = 0; i < sizeof(methods) / sizeof(methods[0]); i++)
		if (strcmp(methods[i].name, sm) == 0)
			m = &methods[i];
	if (m == NULL) {
		if (strcmp(sm, "none") == 0 || strcmp(sm, "EdDSA") == 0)
			st_errf(err, errlen, "unsupported signing method: %s", sm);
		else
			st_errf(err, errlen, "%s (auth: invalid auth signature method \"%s\")", inv,
			     sm);
		goto out;
	}
	t->fam = m->fam;
	snprintf(t->alg, sizeof(t->alg), "%s", m->name);
	if ((t->md = EVP_get_digestbyname(m->md)) == NULL) {
		st_errf(err, errlen, "the requested hash function is unavailable");
		goto out;
	}
	rc = load_keys(t, pub, publen, priv, privlen, err, errlen);
	if (rc == 0 && err && errlen) {
		/* etcd only warns about options it does not know. */
		char unk[256] = "";
		size_t used = 0;
		for (size_t i = 0; i < no; i++) {
			const char *k = o[i].k;
			if (strcmp(k, "ttl") && strcmp(k, "pub-key") && strcmp(k, "priv-key") &&
			    strcmp(k, "sign-method") && used < sizeof(unk))
				used += (size_t)snprintf(unk + used, sizeof(unk) - used, "%s%s",
				                         used ? " " : "", k);
		}
		if (unk[0])
			st_errf(err, errlen, "unknown JWT options: [%s]", unk);
	}
out:
	if (priv)
		OPENSSL_cleanse(priv, privlen);
	free(pub);
	free(priv);
	return rc;
}

int ec_tokens_open(const char *spec, unsigned ttl_s, ec_tokens **out, char *err, size_t errlen)
{
	static const char inv[] = "auth: invalid auth options";
	if (err && errlen)
		err[0] = '\0';
	*out = NULL;
	char *s = strdup(spec ? spec : "");
	if (s == NULL) {
		st_errf(err, errlen, "auth: out of memory");
		return -1;
	}
	/* etcd's decomposeOpts: "type,k=v,k=v"; each option exactly one '=',
	 * no key twice. */
	kv o[MAX_OPTS];
	size_t no = 0;
	char *type = s, *rest = strchr(s, ',');
	int rc = -1;
	if (rest)
		*rest++ = '\0';
	while (rest != NULL) {
		char *next = strchr(rest, ',');
		if (next)
			*next++ = '\0';
		char *eq = strchr(rest, '=');
		if (eq == NULL || strchr(eq + 1, '=') != NULL || no == MAX_OPTS) {
			st_errf(err, errlen, "%s (invalid token option \"%s\")", inv, rest);
			goto out;
		}
		*eq = '\0';
		for (size_t i = 0; i < no; i++) {
			if (strcmp(o[i].k, rest) == 0) {
				st_errf(err, errlen, "%s (duplicated option \"%s\")", inv, rest);
				goto out;
			}
		}
		o[no].k = rest;
		o[no].v = eq + 1;
		no++;
		rest = next;
	}
	ec_tokens *t = calloc(1, sizeof(*t));
	if (t == NULL) {
		st_errf(err, errlen, "auth: out of memory");
		goto out;
	}
	pthread_mutex_init(&t->mu, NULL);
	t->ttl_ms = (ttl_s ? (int64_t)ttl_s : EC_TOKEN_DEFAULT_TTL_S) * 1000;
	if (strcmp(type, "simple") == 0) {
		t->kind = TOK_SIMPLE;
	} else if (strcmp(type, "jwt") == 0) {
		t->kind = TOK_JWT;
		if (open_jwt(t, o, no, err, errlen) != 0) {
			ec_tokens_close(t);
			goto out;
		}
	} else if (type[0] == '\0') {
		t->kind = TOK_NOP;
	} else {
		st_errf(err, errlen, "%s (unknown token type \"%s\")", inv, type);
		ec_tokens_close(t);
		goto out;
	}
	*out = t;
	rc = 0;
out:
	free(s);
	return rc;
}

static void table_clear(ec_tokens *t)
{
	for (size_t i = 0; i < t->nb; i++) {
		stok *e = t->tab[i];
		while (e) {
			stok *n = e->next;
			free(e->user);
			free(e);
			e = n;
		}
		t->tab[i] = NULL;
	}
	t->count = 0;
}

void ec_tokens_close(ec_tokens *t)
{
	if (t == NULL)
		return;
	table_clear(t);
	free(t->tab);
	EVP_PKEY_free(t->key);
	if (t->hmac)
		OPENSSL_cleanse(t->hmac, t->hmac_len);
	free(t->hmac);
	pthread_mutex_destroy(&t->mu);
	free(t);
}

bool ec_tokens_is_simple(const ec_tokens *t)
{
	return t != NULL && t->kind == TOK_SIMPLE;
}

/* ---- simple tokens --------------------------------------------------------- */

int ec_token_simple_new(char *out, size_t cap)
{
	static const char letters[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
	if (out == NULL || cap < 17)
		return -1;
	size_t n = 0;
	while (n < 16) {
		unsigned char r[32];
		if (RAND_bytes(r, sizeof(r)) != 1)
			return -1;
		/* 52 * 4 = 208: bytes below it map uniformly onto the letters. */
		for (size_t i = 0; i < sizeof(r) && n < 16; i++)
			if (r[i] < 208)
				out[n++] = letters[r[i] % 52];
	}
	out[16] = '\0';
	return 0;
}

static uint64_t fnv(const char *s, size_t n)
{
	uint64_t h = 1469598103934665603ULL;
	for (size_t i = 0; i < n; i++) {
		h ^= (uint8_t)s[i];
		h *= 1099511628211ULL;
	}
	return h;
}

/* The slot holding token @tok (or where it would go). Under t->mu. */
static stok **slot(ec_tokens *t, const char *tok, size_t len)
{
	stok **p = &t->tab[fnv(tok, len) % t->nb];
	while (*p && ((*p)->len != len || memcmp((*p)->tok, tok, len) != 0))
		p = &(*p)->next;
	return p;
}

static int grow(ec_tokens *t)
{
	size_t nb = t->nb ? t->nb * 2 : 64;
	stok **tab = calloc(nb, sizeof(*tab));
	if (tab == NULL)
		return -1;
	for (size_t i = 0; i < t->nb; i++) {
		stok *e = t->tab[i];
		while (e) {
			stok *n = e->next;
			size_t b = fnv(e->tok, e->len) % nb;
			e->next = tab[b];
			tab[b] = e;
			e = n;
		}
	}
	free(t->tab);
	t->tab = tab;
	t->nb = nb;
	return 0;
}

static int simple_assign(ec_tokens *t, const char *user, const char *simple, uint64_t index,
                         int64_t now_ms, char **token)
{
	char idx[24];
	int il = snprintf(idx, sizeof(idx), "%" PRIu64, index);
	size_t sl = strlen(simple ? simple : ""), len = sl + 1 + (size_t)il;
	stok *e = malloc(sizeof(*e) + len + 1);
	char *copy = malloc(len + 1);
	char *u = strdup(user);
	if (e == NULL || copy == NULL || u == NULL) {
		free(e);
		free(copy);
		free(u);
		return EC_NOMEM;
	}
	memcpy(e->tok, simple ? simple : "", sl);
	e->tok[sl] = '.';
	memcpy(e->tok + sl + 1, idx, (size_t)il + 1);
	e->len = len;
	e->user = u;
	e->expiry_ms = now_ms + t->ttl_ms;
	memcpy(copy, e->tok, len + 1);
	pthread_mutex_lock(&t->mu);
	if ((t->count + 1 > t->nb * 2 || t->nb == 0) && grow(t) != 0 && t->nb == 0) {
		pthread_mutex_unlock(&t->mu);
		free(e->user);
		free(e);
		free(copy);
		return EC_NOMEM;
	}
	stok **p = slot(t, e->tok, len);
	if (*p) {
		/* The same token twice (etcd panics): the newer one wins. */
		stok *old = *p;
		e->next = old->next;
		free(old->user);
		free(old);
		t->count--;
	} else {
		e->next = NULL;
	}
	*p = e;
	t->count++;
	pthread_mutex_unlock(&t->mu);
	*token = copy;
	return EC_OK;
}

static int simple_info(ec_tokens *t, const char *tok, size_t len, int64_t now_ms, char *user,
                       size_t cap)
{
	int err = EC_INVALID_AUTH_TOKEN;
	pthread_mutex_lock(&t->mu);
	if (t->nb) {
		stok **p = slot(t, tok, len);
		stok *e = *p;
		if (e && e->expiry_ms < now_ms) {
			*p = e->next;
			free(e->user);
			free(e);
			t->count--;
		} else if (e) {
			size_t ul = strlen(e->user);
			if (ul < cap) {
				memcpy(user, e->user, ul + 1);
				e->expiry_ms = now_ms + t->ttl_ms;
				err = EC_OK;
			}
		}
	}
	pthread_mutex_unlock(&t->mu);
	return err;
}

/* Drop the entries for which @drop says so. Under t->mu. */
static void sweep(ec_tokens *t, bool (*drop)(const stok *, const void *), const void *arg)
{
	for (size_t i = 0; i < t->nb; i++) {
		stok **p = &t->tab[i];
		while (*p) {
			stok *e = *p;
			if (drop(e, arg)) {
				*p = e->next;
				free(e->user);
				free(e);
				t->count--;
			} else {
				p = &e->next;
			}
		}
	}
}

static bool of_user(const stok *e, const void *user)
{
	return strcmp(e->user, user) == 0;
}

static bool expired(const stok *e, const void *now)
{
	return e->expiry_ms < *(const int64_t *)now;
}

void ec_token_forget_user(ec_tokens *t, const char *user)
{
	if (t == NULL || t->kind != TOK_SIMPLE || user == NULL)
		return;
	pthread_mutex_lock(&t->mu);
	sweep(t, of_user, user);
	pthread_mutex_unlock(&t->mu);
}

void ec_token_forget_all(ec_tokens *t)
{
	if (t == NULL || t->kind != TOK_SIMPLE)
		return;
	pthread_mutex_lock(&t->mu);
	table_clear(t);
	pthread_mutex_unlock(&t->mu);
}

void ec_token_expire(ec_tokens *t, int64_t now_ms)
{
	if (t == NULL || t->kind != TOK_SIMPLE)
		return;
	pthread_mutex_lock(&t->mu);
	sweep(t, expired, &now_ms);
	pthread_mutex_unlock(&t->mu);
}

/* ---- JWT sign / verify ----------------------------------------------------- */

/* Sign @in with the configured method into malloc'd *@sig (JWS form). */
static int jwt_sign(ec_tokens *t, const char *in, size_t n, uint8_t **sig, size_t *slen)
{
	*sig = NULL;
	if (t->fam == FAM_HS) {
		uint8_t *b = malloc(EVP_MAX_MD_SIZE);
		unsigned int l = 0;
		if (b == NULL)
			return EC_NOMEM;
		if (HMAC(t->md, t->hmac, (int)t->hmac_len, (const unsigned char *)in, n, b, &l) ==
		    NULL) {
			free(b);
			return EC_INTERNAL;
		}
		*sig = b;
		*slen = l;
		return EC_OK;
	}
	int err = EC_INTERNAL;
	EVP_MD_CTX *c = EVP_MD_CTX_new();
	EVP_PKEY_CTX *pc = NULL;
	uint8_t *der = NULL;
	size_t dl = 0;
	if (c == NULL || EVP_DigestSignInit(c, &pc, t->md, NULL, t->key) != 1)
		goto out;
	if (t->fam == FAM_PS && (EVP_PKEY_CTX_set_rsa_padding(pc, RSA_PKCS1_PSS_PADDING) != 1 ||
	                         EVP_PKEY_CTX_set_rsa_pss_saltlen(pc, RSA_PSS_SALTLEN_DIGEST) != 1))
		goto out;
	if (EVP_DigestSign(c, NULL, &dl, (const unsigned char *)in, n) != 1)
		goto out;
	if ((der = malloc(dl)) == NULL) {
		err = EC_NOMEM;
		goto out;
	}
	if (EVP_DigestSign(c, der, &dl, (const unsigned char *)in, n) != 1)
		goto out;
	if (t->fam != FAM_ES) {
		*sig = der;
		*slen = dl;
		der = NULL;
		err = EC_OK;
		goto out;
	}
	/* ECDSA: DER SEQUENCE { r, s } -> r || s, each padded to the key size. */
	const unsigned char *p = der;
	ECDSA_SIG *es = d2i_ECDSA_SIG(NULL, &p, (long)dl);
	if (es == NULL)
		goto out;
	const BIGNUM *r, *s;
	ECDSA_SIG_get0(es, &r, &s);
	uint8_t *raw = malloc((size_t)t->ec_bytes * 2);
	if (raw != NULL && BN_bn2binpad(r, raw, t->ec_bytes) == t->ec_bytes &&
	    BN_bn2binpad(s, raw + t->ec_bytes, t->ec_bytes) == t->ec_bytes) {
		*sig = raw;
		*slen = (size_t)t->ec_bytes * 2;
		err = EC_OK;
	} else {
		free(raw);
	}
	ECDSA_SIG_free(es);
out:
	free(der);
	EVP_MD_CTX_free(c);
	ERR_clear_error();
	return err;
}

static bool jwt_verify(ec_tokens *t, const char *in, size_t n, const uint8_t *sig, size_t slen)
{
	if (t->fam == FAM_HS) {
		uint8_t b[EVP_MAX_MD_SIZE];
		unsigned int l = 0;
		if (HMAC(t->md, t->hmac, (int)t->hmac_len, (const unsigned char *)in, n, b, &l) ==
		    NULL)
			return false;
		return slen == l && CRYPTO_memcmp(b, sig, l) == 0;
	}
	bool ok = false;
	uint8_t *der = NULL;
	int dl = 0;
	if (t->fam == FAM_ES) {
		if (slen != (size_t)t->ec_bytes * 2)
			return false;
		ECDSA_SIG *es = ECDSA_SIG_new();
		BIGNUM *r = BN_bin2bn(sig, t->ec_bytes, NULL);
		BIGNUM *s = BN_bin2bn(sig + t->ec_bytes, t->ec_bytes, NULL);
		if (es == NULL || r == NULL || s == NULL || ECDSA_SIG_set0(es, r, s) != 1) {
			BN_free(r);
			BN_free(s);
			ECDSA_SIG_free(es);
			ERR_clear_error();
			return false;
		}
		dl = i2d_ECDSA_SIG(es, &der);
		ECDSA_SIG_free(es);
		if (dl <= 0) {
			ERR_clear_error();
			return false;
		}
		sig = der;
		slen = (size_t)dl;
	}
	EVP_MD_CTX *c = EVP_MD_CTX_new();
	EVP_PKEY_CTX *pc = NULL;
	if (c == NULL || EVP_DigestVerifyInit(c, &pc, t->md, NULL, t->key) != 1)
		goto out;
	if (t->fam == FAM_PS && (EVP_PKEY_CTX_set_rsa_padding(pc, RSA_PKCS1_PSS_PADDING) != 1 ||
	                         EVP_PKEY_CTX_set_rsa_pss_saltlen(pc, RSA_PSS_SALTLEN_AUTO) != 1))
		goto out;
	ok = EVP_DigestVerify(c, sig, slen, (const unsigned char *)in, n) == 1;
out:
	EVP_MD_CTX_free(c);
	OPENSSL_free(der);
	ERR_clear_error();
	return ok;
}

/* Floor division of @a by positive @b. */
static int64_t floor_div(int64_t a, int64_t b)
{
	int64_t q = a / b;
	return (a % b != 0 && a < 0) ? q - 1 : q;
}

static int jwt_assign(ec_tokens *t, const char *user, uint64_t rev, int64_t now_ms, char **token)
{
	/* etcd: "auth: token signing attempted with verify-only key". */
	if (t->verify_only)
		return EC_INVALID_AUTH_MGMT;
	/* Go: time.Now().Add(ttl).Unix(). */
	int64_t q = floor_div(now_ms, 1000), r = now_ms - q * 1000;
	int64_t tq = floor_div(t->ttl_ns, 1000000000), tr = t->ttl_ns - tq * 1000000000;
	int64_t exp = q + tq + (r * 1000000 + tr) / 1000000000;
	char head[64];
	int hl = snprintf(head, sizeof(head), "{\"alg\":\"%s\",\"typ\":\"JWT\"}", t->alg);
	size_t ul = strlen(user);
	/* The fixed part is at most 73 bytes; json_str needs 6 * ul + 2. */
	char *claims = malloc(ul * 6 + 128);
	if (claims == NULL)
		return EC_NOMEM;
	int cl = snprintf(claims, 100,
	                  "{\"exp\":%" PRId64 ",\"revision\":%" PRIu64 ",\"username\":", exp, rev);
	cl += (int)json_str(user, claims + cl);
	claims[cl++] = '}';
	size_t cap = 4 * ((size_t)hl + (size_t)cl + 2) / 3 + 8;
	char *in = malloc(cap);
	if (in == NULL) {
		free(claims);
		return EC_NOMEM;
	}
	size_t n = b64_enc((const uint8_t *)head, (size_t)hl, in);
	in[n++] = '.';
	n += b64_enc((const uint8_t *)claims, (size_t)cl, in + n);
	free(claims);
	uint8_t *sig = NULL;
	size_t sl = 0;
	int err = jwt_sign(t, in, n, &sig, &sl);
	if (err != EC_OK) {
		free(in);
		return err;
	}
	char *tok = malloc(n + 1 + 4 * (sl + 2) / 3 + 1);
	if (tok == NULL) {
		free(in);
		free(sig);
		return EC_NOMEM;
	}
	memcpy(tok, in, n);
	tok[n] = '.';
	size_t tl = n + 1 + b64_enc(sig, sl, tok + n + 1);
	tok[tl] = '\0';
	free(in);
	free(sig);
	*token = tok;
	return EC_OK;
}

/* A time claim as golang-jwt v4 checks it against @now (whole seconds):
 * absent or 0 passes; a non-number fails. */
static bool time_ok(const jfield *f, bool (*cmp)(double claim, double now), double now)
{
	if (!f->seen)
		return true;
	if (!f->is_num)
		return false;
	return f->num == 0 || cmp(f->num, now);
}

static bool exp_ok(double exp, double now)
{
	return now < exp; /* time.Unix(now).Before(exp) */
}

static bool not_before_ok(double t, double now)
{
	return now >= t; /* iat and nbf: now is at or after */
}

static int jwt_info(ec_tokens *t, const char *tok, size_t len, int64_t now_ms, char *user,
                    size_t cap, uint64_t *rev)
{
	const char *d1 = memchr(tok, '.', len);
	const char *d2 = d1 ? memchr(d1 + 1, '.', len - (size_t)(d1 + 1 - tok)) : NULL;
	if (d2 == NULL || memchr(d2 + 1, '.', len - (size_t)(d2 + 1 - tok)) != NULL)
		return EC_INVALID_AUTH_TOKEN;
	int err = EC_INVALID_AUTH_TOKEN;
	uint8_t *hb = NULL, *cb = NULL, *sb = NULL;
	size_t hl, cl, sl;
	jfield hf[] = {{.name = "alg"}};
	jfield cf[] = {{.name = "exp"},
	               {.name = "iat"},
	               {.name = "nbf"},
	               {.name = "username"},
	               {.name = "revision"}};
	if (!b64_dec(tok, (size_t)(d1 - tok), &hb, &hl) ||
	    !b64_dec(d1 + 1, (size_t)(d2 - d1 - 1), &cb, &cl) ||
	    !b64_dec(d2 + 1, len - (size_t)(d2 + 1 - tok), &sb, &sl))
		goto out;
	/* The header names the method: it must be the configured one (so "none"
	 * and any other algorithm are refused). */
	if (!j_object((const char *)hb, hl, hf, 1) || !hf[0].is_str ||
	    strcmp(hf[0].str, t->alg) != 0 || strlen(t->alg) != hf[0].slen)
		goto out;
	if (!j_object((const char *)cb, cl, cf, 5))
		goto out;
	double now = (double)floor_div(now_ms, 1000);
	if (!time_ok(&cf[0], exp_ok, now) || !time_ok(&cf[1], not_before_ok, now) ||
	    !time_ok(&cf[2], not_before_ok, now))
		goto out;
	if (!jwt_verify(t, tok, (size_t)(d2 - tok), sb, sl))
		goto out;
	/* etcd reads username as a string and revision as a number. */
	const jfield *u = &cf[3], *r = &cf[4];
	if (!u->is_str || u->slen >= cap || memchr(u->str, '\0', u->slen) != NULL || !r->is_num ||
	    !(r->num >= 0) || r->num >= 18446744073709551616.0)
		goto out;
	memcpy(user, u->str, u->slen + 1);
	*rev = (uint64_t)r->num;
	err = EC_OK;
out:
	jfields_free(hf, 1);
	jfields_free(cf, 5);
	free(hb);
	free(cb);
	free(sb);
	return err;
}

/* ---- the provider interface ------------------------------------------------ */

int ec_token_assign(ec_tokens *t, const char *user, uint64_t rev, const char *simple,
                    uint64_t index, int64_t now_ms, char **token)
{
	*token = NULL;
	if (user == NULL)
		return EC_AUTH_FAILED;
	switch (t->kind) {
	case TOK_SIMPLE:
		return simple_assign(t, user, simple, index, now_ms, token);
	case TOK_JWT:
		return jwt_assign(t, user, rev, now_ms, token);
	default:
		return EC_AUTH_FAILED; /* etcd's nop provider */
	}
}

int ec_token_info(ec_tokens *t, const char *tok, size_t len, uint64_t cur_rev, int64_t now_ms,
                  char *user, size_t cap, uint64_t *rev)
{
	if (tok == NULL || len == 0 || len > EC_TOKEN_MAX || user == NULL || cap == 0)
		return EC_INVALID_AUTH_TOKEN;
	switch (t->kind) {
	case TOK_SIMPLE: {
		int e = simple_info(t, tok, len, now_ms, user, cap);
		if (e == EC_OK && rev)
			*rev = cur_rev;
		return e;
	}
	case TOK_JWT: {
		uint64_t r = 0;
		int e = jwt_info(t, tok, len, now_ms, user, cap, &r);
		if (e == EC_OK && rev)
			*rev = r;
		return e;
	}
	default:
		return EC_INVALID_AUTH_TOKEN;
	}
}
