/*
 * ec_member: etcd-compatible member/cluster id derivation (see ec_member.h),
 * including a small self-contained SHA-1 — the ids are defined by it, not used
 * for security.
 */
#include "etcdcompat/ec_member.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static uint32_t sha1_rol(uint32_t x, int n)
{
	return (x << n) | (x >> (32 - n));
}

/* Process one 64-byte block into the five-word state @h. */
static void sha1_block(uint32_t h[5], const uint8_t *p)
{
	uint32_t w[80];
	for (int i = 0; i < 16; i++)
		w[i] = (uint32_t)p[4 * i] << 24 | (uint32_t)p[4 * i + 1] << 16 |
		       (uint32_t)p[4 * i + 2] << 8 | p[4 * i + 3];
	for (int i = 16; i < 80; i++)
		w[i] = sha1_rol(w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16], 1);
	uint32_t a = h[0], b = h[1], c = h[2], d = h[3], e = h[4];
	for (int i = 0; i < 80; i++) {
		uint32_t f, k;
		if (i < 20) {
			f = (b & c) | (~b & d);
			k = 0x5A827999;
		} else if (i < 40) {
			f = b ^ c ^ d;
			k = 0x6ED9EBA1;
		} else if (i < 60) {
			f = (b & c) | (b & d) | (c & d);
			k = 0x8F1BBCDC;
		} else {
			f = b ^ c ^ d;
			k = 0xCA62C1D6;
		}
		uint32_t t = sha1_rol(a, 5) + f + e + k + w[i];
		e = d;
		d = c;
		c = sha1_rol(b, 30);
		b = a;
		a = t;
	}
	h[0] += a;
	h[1] += b;
	h[2] += c;
	h[3] += d;
	h[4] += e;
}

void ec_sha1(const void *data, size_t len, uint8_t out[20])
{
	uint32_t h[5] = {0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476, 0xC3D2E1F0};
	const uint8_t *p = data;
	size_t left = len;
	while (left >= 64) {
		sha1_block(h, p);
		p += 64;
		left -= 64;
	}
	/* Final block(s): the tail, 0x80, zero padding, 64-bit big-endian bit length. */
	uint8_t tail[128] = {0};
	memcpy(tail, p, left);
	tail[left] = 0x80;
	size_t tlen = left + 9 <= 64 ? 64 : 128;
	uint64_t bits = (uint64_t)len * 8;
	for (int i = 0; i < 8; i++)
		tail[tlen - 1 - i] = (uint8_t)(bits >> (8 * i));
	for (size_t off = 0; off < tlen; off += 64)
		sha1_block(h, tail + off);
	for (int i = 0; i < 5; i++) {
		out[4 * i] = (uint8_t)(h[i] >> 24);
		out[4 * i + 1] = (uint8_t)(h[i] >> 16);
		out[4 * i + 2] = (uint8_t)(h[i] >> 8);
		out[4 * i + 3] = (uint8_t)h[i];
	}
}

static uint64_t be64_prefix(const uint8_t *d)
{
	uint64_t v = 0;
	for (int i = 0; i < 8; i++)
		v = v << 8 | d[i];
	return v;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

uint64_t ec_member_id(const char *const *urls, size_t n, const char *token, int64_t now)
{
	const char **sorted = malloc((n ? n : 1) * sizeof(*sorted));
	if (!sorted)
		return 0;
	memcpy(sorted, urls, n * sizeof(*sorted));
	qsort(sorted, n, sizeof(*sorted), cmp_str);

	char nowbuf[24] = "";
	if (now)
		snprintf(nowbuf, sizeof(nowbuf), "%lld", (long long)now);
	size_t total = strlen(token) + strlen(nowbuf);
	for (size_t i = 0; i < n; i++)
		total += strlen(sorted[i]);
	char *buf = malloc(total + 1);
	if (!buf) {
		free(sorted);
		return 0;
	}
	size_t off = 0;
	for (size_t i = 0; i < n; i++) {
		size_t l = strlen(sorted[i]);
		memcpy(buf + off, sorted[i], l);
		off += l;
	}
	memcpy(buf + off, token, strlen(token));
	off += strlen(token);
	memcpy(buf + off, nowbuf, strlen(nowbuf));
	off += strlen(nowbuf);

	uint8_t digest[20];
	ec_sha1(buf, off, digest);
	free(buf);
	free(sorted);
	return be64_prefix(digest);
}

uint64_t ec_cluster_id(const uint64_t *ids, size_t n)
{
	uint64_t *sorted = malloc((n ? n : 1) * sizeof(*sorted));
	uint8_t *bytes = malloc((n ? n : 1) * 8);
	uint64_t id = 0;
	if (sorted && bytes) {
		memcpy(sorted, ids, n * sizeof(*sorted));
		qsort(sorted, n, sizeof(*sorted), cmp_u64);
		for (size_t i = 0; i < n; i++)
			for (int b = 0; b < 8; b++)
				bytes[8 * i + b] = (uint8_t)(sorted[i] >> (56 - 8 * b));
		uint8_t digest[20];
		ec_sha1(bytes, n * 8, digest);
		id = be64_prefix(digest);
	}
	free(sorted);
	free(bytes);
	return id;
}
