/*
 * ec_base64: the one base64 codec of the project, with the variants etcd's Go
 * code uses: jsonpb's bytes (standard alphabet, padded out; in, either alphabet,
 * padding optional, CR/LF skipped, as Go's jsonpb), JWT segments (URL alphabet,
 * no padding: Go's RawURLEncoding) and HTTP basic auth (standard alphabet,
 * padded: Go's StdEncoding). Unused trailing bits are ignored, as Go's
 * non-strict decoders do.
 */
#ifndef METASTORE_EC_BASE64_H
#define METASTORE_EC_BASE64_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum {
	EC_B64_STD, /* A-Z a-z 0-9 + / */
	EC_B64_URL, /* A-Z a-z 0-9 - _ */
} ec_b64_alphabet;

/* ec_b64_encoded_len - characters ec_b64_encode writes for @n bytes. */
size_t ec_b64_encoded_len(size_t n, bool pad);

/*
 * ec_b64_encode - @n bytes at @in into @out (room for ec_b64_encoded_len + 1),
 * NUL-terminated; '=' padding when @pad. Returns the characters written.
 */
size_t ec_b64_encode(const uint8_t *in, size_t n, ec_b64_alphabet a, bool pad, char *out);

/* Decoding rules (flags). */
#define EC_B64_IN_STD 0x1        /* accept '+' and '/' */
#define EC_B64_IN_URL 0x2        /* accept '-' and '_' */
#define EC_B64_PAD_REQUIRED 0x4  /* a partial last quantum must be padded */
#define EC_B64_PAD_REFUSED 0x8   /* '=' is an error */
#define EC_B64_SKIP_NEWLINES 0x10 /* CR and LF are skipped */

/*
 * ec_b64_decode - @n characters at @in into @out (room for n / 4 * 3 + 3
 * bytes), *@outlen the bytes decoded. Returns 0, or -1 for text that is not
 * base64 by @flags, with *@bad (may be NULL) the input offset Go reports
 * ("illegal base64 data at input byte N"): the first bad character, or the
 * start of the unfinished quantum when the text ends early.
 */
int ec_b64_decode(const char *in, size_t n, unsigned flags, uint8_t *out, size_t *outlen,
                  size_t *bad);

#endif
