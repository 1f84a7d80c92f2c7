/*
 * ec_base64.c: base64 as Go's encoding/base64 reads and writes it (see
 * ec_base64.h). Decoding walks the text once, six bits a character, and
 * checks padding at the end as Go does: at most two '=', completing a
 * quantum, and nothing but padding after the first.
 */
#include "etcdcompat/ec_base64.h"

static const char std_chars[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
static const char url_chars[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

size_t ec_b64_encoded_len(size_t n, bool pad)
{
	return pad ? (n + 2) / 3 * 4 : n / 3 * 4 + (n % 3 ? n % 3 + 1 : 0);
}

size_t ec_b64_encode(const uint8_t *in, size_t n, ec_b64_alphabet a, bool pad, char *out)
{
	const char *chars = a == EC_B64_URL ? url_chars : std_chars;
	size_t o = 0, i = 0;
	for (; i + 3 <= n; i += 3) {
		uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
		out[o++] = chars[v >> 18];
		out[o++] = chars[(v >> 12) & 63];
		out[o++] = chars[(v >> 6) & 63];
		out[o++] = chars[v & 63];
	}
	if (i < n) {
		uint32_t v = (uint32_t)in[i] << 16;
		if (i + 1 < n)
			v |= (uint32_t)in[i + 1] << 8;
		out[o++] = chars[v >> 18];
		out[o++] = chars[(v >> 12) & 63];
		if (i + 1 < n)
			out[o++] = chars[(v >> 6) & 63];
		else if (pad)
			out[o++] = '=';
		if (pad)
			out[o++] = '=';
	}
	out[o] = '\0';
	return o;
}

static int char_val(unsigned char ch, unsigned flags)
{
	if (ch >= 'A' && ch <= 'Z')
		return ch - 'A';
	if (ch >= 'a' && ch <= 'z')
		return ch - 'a' + 26;
	if (ch >= '0' && ch <= '9')
		return ch - '0' + 52;
	if ((flags & EC_B64_IN_STD) && ch == '+')
		return 62;
	if ((flags & EC_B64_IN_STD) && ch == '/')
		return 63;
	if ((flags & EC_B64_IN_URL) && ch == '-')
		return 62;
	if ((flags & EC_B64_IN_URL) && ch == '_')
		return 63;
	return -1;
}

int ec_b64_decode(const char *in, size_t n, unsigned flags, uint8_t *out, size_t *outlen,
                  size_t *bad)
{
	size_t ignore;
	if (bad == NULL)
		bad = &ignore;
	uint32_t acc = 0;
	unsigned bits = 0;
	size_t o = 0, data = 0, pad = 0, quantum = 0;
	*outlen = 0;
	for (size_t i = 0; i < n; i++) {
		unsigned char ch = (unsigned char)in[i];
		if ((flags & EC_B64_SKIP_NEWLINES) && (ch == '\r' || ch == '\n'))
			continue;
		if (ch == '=') {
			if (flags & EC_B64_PAD_REFUSED) {
				*bad = i;
				return -1;
			}
			if (pad == 0)
				*bad = i;
			pad++;
			continue;
		}
		int v = char_val(ch, flags);
		if (v < 0 || pad) {
			*bad = i;
			return -1;
		}
		if (data % 4 == 0)
			quantum = i;
		data++;
		acc = acc << 6 | (uint32_t)v;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			out[o++] = (uint8_t)(acc >> bits);
			acc &= (1u << bits) - 1;
		}
	}
	bool short_quantum = data % 4 == 1;
	bool bad_pad = pad && (pad > 2 || (data + pad) % 4 != 0);
	bool missing_pad = !pad && data % 4 != 0 && (flags & EC_B64_PAD_REQUIRED);
	if (short_quantum || bad_pad || missing_pad) {
		if (short_quantum || !pad)
			*bad = quantum;
		return -1;
	}
	*outlen = o;
	return 0;
}
