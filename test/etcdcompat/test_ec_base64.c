/*
 * test_ec_base64.c: the shared base64 codec (etcdcompat/ec_base64) against
 * RFC 4648's vectors and the three sets of decoding rules its callers use:
 * jsonpb's lenient one (either alphabet, padding optional, newlines skipped,
 * Go's error offsets), JWT's raw URL encoding and basic auth's padded
 * standard encoding.
 */
#include <criterion/criterion.h>

#include <string.h>

#include "etcdcompat/ec_base64.h"

#define JSONPB (EC_B64_IN_STD | EC_B64_IN_URL | EC_B64_SKIP_NEWLINES)
#define RAWURL (EC_B64_IN_URL | EC_B64_PAD_REFUSED)
#define STDPAD (EC_B64_IN_STD | EC_B64_PAD_REQUIRED)

static void enc(const char *in, ec_b64_alphabet a, bool pad, const char *want)
{
	char out[64];
	size_t n = strlen(in);
	size_t k = ec_b64_encode((const uint8_t *)in, n, a, pad, out);
	cr_assert_str_eq(out, want, "encode \"%s\"", in);
	cr_assert_eq(k, strlen(want));
	cr_assert_eq(ec_b64_encoded_len(n, pad), strlen(want));
}

/* Decodes to @want (a string) under @flags. */
static void dec_ok(const char *in, unsigned flags, const char *want)
{
	uint8_t out[64];
	size_t k = 99;
	cr_assert_eq(ec_b64_decode(in, strlen(in), flags, out, &k, NULL), 0, "decode \"%s\"", in);
	cr_assert_eq(k, strlen(want), "\"%s\": %zu bytes", in, k);
	cr_assert_eq(memcmp(out, want, k), 0, "\"%s\"", in);
}

/* Refused under @flags, Go's offset @at. */
static void dec_bad(const char *in, unsigned flags, size_t at)
{
	uint8_t out[64];
	size_t k, bad = 999;
	cr_assert_eq(ec_b64_decode(in, strlen(in), flags, out, &k, &bad), -1, "\"%s\" accepted", in);
	cr_assert_eq(bad, at, "\"%s\": offset %zu", in, bad);
}

Test(base64, rfc4648_vectors)
{
	static const char *plain[] = {"", "f", "fo", "foo", "foob", "fooba", "foobar"};
	static const char *padded[] = {"", "Zg==", "Zm8=", "Zm9v", "Zm9vYg==", "Zm9vYmE=", "Zm9vYmFy"};
	static const char *raw[] = {"", "Zg", "Zm8", "Zm9v", "Zm9vYg", "Zm9vYmE", "Zm9vYmFy"};
	for (size_t i = 0; i < 7; i++) {
		enc(plain[i], EC_B64_STD, true, padded[i]);
		enc(plain[i], EC_B64_URL, false, raw[i]);
		dec_ok(padded[i], JSONPB, plain[i]);
		dec_ok(raw[i], JSONPB, plain[i]);
		dec_ok(raw[i], RAWURL, plain[i]);
		dec_ok(padded[i], STDPAD, plain[i]);
	}
}

Test(base64, alphabets)
{
	const uint8_t b[] = {0xfb, 0xff, 0xbf};
	char out[8];
	ec_b64_encode(b, 3, EC_B64_STD, true, out);
	cr_assert_str_eq(out, "+/+/");
	ec_b64_encode(b, 3, EC_B64_URL, false, out);
	cr_assert_str_eq(out, "-_-_");
	uint8_t d[8];
	size_t k;
	cr_assert_eq(ec_b64_decode("-_-_", 4, JSONPB, d, &k, NULL), 0);
	cr_assert_eq(ec_b64_decode("+/+/", 4, JSONPB, d, &k, NULL), 0);
	cr_assert_eq(memcmp(d, b, 3), 0);
	dec_bad("+/+/", RAWURL, 0);
	dec_bad("-_-_", STDPAD, 0);
}

Test(base64, padding_and_errors_as_go)
{
	dec_ok("Zm9v\r\nYg==", JSONPB, "foob");
	dec_bad("Zm9v\nYg==", STDPAD, 4);  /* newlines only where asked */
	dec_bad("Zm9vY", JSONPB, 4);      /* a lone character: the quantum's start */
	dec_bad("Zm9v=Yg", JSONPB, 5);    /* data after padding */
	dec_bad("Zg=", JSONPB, 2);        /* padding that does not finish the quantum */
	dec_bad("Zg===", JSONPB, 2);
	dec_bad("Zg==", RAWURL, 2);       /* no padding in raw encodings */
	dec_bad("Zg", STDPAD, 0);         /* padding needed */
	dec_bad("Zm9v!", JSONPB, 4);
}
