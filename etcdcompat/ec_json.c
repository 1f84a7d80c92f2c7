/*
 * ec_json: etcd's protobuf messages <-> the JSON of etcd's HTTP gateway.
 *
 * Both directions walk protobuf-c's descriptors, so one implementation serves
 * every message of proto/. Jansson parses the input and writes the output;
 * this file holds the protobuf mapping and the few places where Go's writer
 * and jansson's disagree:
 *
 *   - Output order is the descriptor's, which protoc-c sorts by field number.
 *     jsonpb writes Go struct order, the .proto declaration order; the two are
 *     the same for every message of etcd's rpc.proto, kv.proto and auth.proto
 *     (Compare declares range_end = 64 last, after its oneof). The C struct's
 *     offsets are no better a key: protoc-c puts oneof unions at the struct's
 *     end.
 *   - Go's json escapes <, >, & and U+2028/2029 and writes \u0008, \u000c and
 *     lower-case hex; jansson writes the first raw and the rest as \b, \f and
 *     upper-case hex. go_escape() rewrites jansson's text, which is sound
 *     because those bytes occur in JSON text only inside strings.
 *   - Jansson cannot parse an integer above INT64_MAX, the upper half of a
 *     uint64 (member ids): big_rewrite() turns such literals into marked
 *     strings before parsing, and the integer decoder reads them back as
 *     numbers.
 *
 * Known differences from etcd 3.4's gateway (checked against the real one):
 *   - Input: URL-safe and unpadded base64 are accepted (Go: standard,
 *     padded); text after the object is an error (Go ignores it); empty text
 *     is the error "EOF" (the gateway reads an empty body as {}); two members
 *     of one oneof are an error (jsonpb keeps either); invalid UTF-8, lone
 *     surrogates and \u0000 are errors (Go substitutes U+FFFD, keeps NUL).
 *   - Output: float and double, which etcd's API does not use, are written by
 *     jansson (%.17g), not in Go's shortest form; in a message whose strings
 *     hold all 32 noncharacters U+FDD0..U+FDEF, a byte that is not UTF-8
 *     comes out as a raw U+FFFD where Go writes \ufffd (see ectx).
 */
#include "etcdcompat/ec_json.h"

#include <inttypes.h>
#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "etcdcompat/ec_base64.h"
#include "etcdcompat/ec_errors.h"
#include "storage/st_db.h"

/* ------------------------------------------------------------------------- */
/* Shared helpers                                                            */

/* Go's type name of a protobuf message or enum: "etcdserverpb.Compare_CompareResult". */
static void go_name(const char *full, const char *pkg, char *buf, size_t n)
{
	size_t pl = pkg ? strlen(pkg) : 0;
	size_t o = 0;
	const char *rest = full;
	if (pl && strncmp(full, pkg, pl) == 0 && full[pl] == '.') {
		rest = full + pl + 1;
		o = (size_t)snprintf(buf, n, "%s.", pkg);
		if (o >= n)
			return;
	}
	for (; *rest && o + 1 < n; rest++)
		buf[o++] = *rest == '.' ? '_' : *rest;
	buf[o] = '\0';
}

/* Go's name for the type a field decodes into (for error reasons). */
static void go_field_type(const ProtobufCFieldDescriptor *f, char *buf, size_t n)
{
	const char *s = "?";
	switch (f->type) {
	case PROTOBUF_C_TYPE_INT32:
	case PROTOBUF_C_TYPE_SINT32:
	case PROTOBUF_C_TYPE_SFIXED32:
		s = "int32";
		break;
	case PROTOBUF_C_TYPE_UINT32:
	case PROTOBUF_C_TYPE_FIXED32:
		s = "uint32";
		break;
	case PROTOBUF_C_TYPE_INT64:
	case PROTOBUF_C_TYPE_SINT64:
	case PROTOBUF_C_TYPE_SFIXED64:
		s = "int64";
		break;
	case PROTOBUF_C_TYPE_UINT64:
	case PROTOBUF_C_TYPE_FIXED64:
		s = "uint64";
		break;
	case PROTOBUF_C_TYPE_FLOAT:
		s = "float32";
		break;
	case PROTOBUF_C_TYPE_DOUBLE:
		s = "float64";
		break;
	case PROTOBUF_C_TYPE_BOOL:
		s = "bool";
		break;
	case PROTOBUF_C_TYPE_STRING:
		s = "string";
		break;
	case PROTOBUF_C_TYPE_BYTES:
		s = "[]uint8";
		break;
	case PROTOBUF_C_TYPE_ENUM: {
		const ProtobufCEnumDescriptor *ed = f->descriptor;
		go_name(ed->name, ed->package_name, buf, n);
		return;
	}
	case PROTOBUF_C_TYPE_MESSAGE: {
		const ProtobufCMessageDescriptor *md = f->descriptor;
		go_name(md->name, md->package_name, buf, n);
		return;
	}
	}
	snprintf(buf, n, "%s", s);
}

/* Bytes one element of a repeated field of type @t takes in its C array. */
static size_t elem_size(ProtobufCType t)
{
	switch (t) {
	case PROTOBUF_C_TYPE_INT32:
	case PROTOBUF_C_TYPE_SINT32:
	case PROTOBUF_C_TYPE_SFIXED32:
	case PROTOBUF_C_TYPE_UINT32:
	case PROTOBUF_C_TYPE_FIXED32:
	case PROTOBUF_C_TYPE_ENUM:
		return 4;
	case PROTOBUF_C_TYPE_FLOAT:
		return sizeof(float);
	case PROTOBUF_C_TYPE_INT64:
	case PROTOBUF_C_TYPE_SINT64:
	case PROTOBUF_C_TYPE_SFIXED64:
	case PROTOBUF_C_TYPE_UINT64:
	case PROTOBUF_C_TYPE_FIXED64:
		return 8;
	case PROTOBUF_C_TYPE_DOUBLE:
		return sizeof(double);
	case PROTOBUF_C_TYPE_BOOL:
		return sizeof(protobuf_c_boolean);
	case PROTOBUF_C_TYPE_STRING:
		return sizeof(char *);
	case PROTOBUF_C_TYPE_BYTES:
		return sizeof(ProtobufCBinaryData);
	case PROTOBUF_C_TYPE_MESSAGE:
		return sizeof(ProtobufCMessage *);
	}
	return 0;
}

/* ------------------------------------------------------------------------- */
/* Base64 (standard alphabet, padded, on output; both alphabets on input)    */


/* @n bytes at @p as padded standard base64 in a new NUL-terminated buffer. */
static char *b64_encode(const uint8_t *p, size_t n)
{
	char *out = malloc(ec_b64_encoded_len(n, true) + 1);
	if (out)
		ec_b64_encode(p, n, EC_B64_STD, true, out);
	return out;
}

/*
 * Decode @n characters of base64 at @s into @out (data malloc'd, NULL when
 * empty), as Go's jsonpb: the standard and URL-safe alphabets, padding or
 * none, CR/LF skipped. Returns EC_OK, EC_NOMEM, or EC_BAD_REQUEST with *@bad
 * the offset of the offending character.
 */
static int b64_decode(const char *s, size_t n, ProtobufCBinaryData *out, size_t *bad)
{
	uint8_t *buf = malloc(n / 4 * 3 + 3);
	if (!buf)
		return EC_NOMEM;
	size_t o;
	if (ec_b64_decode(s, n, EC_B64_IN_STD | EC_B64_IN_URL | EC_B64_SKIP_NEWLINES, buf, &o,
	                  bad) != 0) {
		free(buf);
		return EC_BAD_REQUEST;
	}
	if (o == 0) {
		free(buf);
		buf = NULL;
	}
	out->data = buf;
	out->len = o;
	return EC_OK;
}

/* ------------------------------------------------------------------------- */
/* Encoding                                                                  */

/* Length of the valid UTF-8 sequence at @s (at most @n bytes), 0 if none. */
static size_t utf8_len(const unsigned char *s, size_t n)
{
	unsigned char c = s[0];
	if (c < 0x80)
		return 1;
	size_t len;
	unsigned char lo = 0x80, hi = 0xbf;
	if (c >= 0xc2 && c <= 0xdf)
		len = 2;
	else if (c >= 0xe0 && c <= 0xef) {
		len = 3;
		if (c == 0xe0)
			lo = 0xa0;
		else if (c == 0xed)
			hi = 0x9f; /* no surrogates */
	} else if (c >= 0xf0 && c <= 0xf4) {
		len = 4;
		if (c == 0xf0)
			lo = 0x90;
		else if (c == 0xf4)
			hi = 0x8f;
	} else
		return 0;
	if (n < len || s[1] < lo || s[1] > hi)
		return 0;
	for (size_t i = 2; i < len; i++)
		if (s[i] < 0x80 || s[i] > 0xbf)
			return 0;
	return len;
}

/*
 * What one encoding learns about its strings. Go writes each byte that is not
 * UTF-8 as the escape \ufffd but a real U+FFFD raw; jansson refuses such
 * bytes. So they go to jansson as a noncharacter (U+FDD0 + marker) that no
 * string of the message holds, and go_escape() turns it into \ufffd.
 */
typedef struct {
	uint32_t seen; /* which of U+FDD0..U+FDEF the strings hold */
	bool invalid;  /* a string held bytes that are not UTF-8 */
	int marker;    /* -1: none picked (invalid bytes become a raw U+FFFD) */
} ectx;

/* A jansson string of @s, with bytes that are not UTF-8 replaced as ectx says. */
static json_t *enc_string(ectx *e, const char *s)
{
	if (!s)
		return json_string("");
	const unsigned char *u = (const unsigned char *)s;
	size_t n = strlen(s), bad = 0;
	for (size_t i = 0; i < n;) {
		size_t l = utf8_len(u + i, n - i);
		if (l == 3 && u[i] == 0xef && u[i + 1] == 0xb7 && u[i + 2] >= 0x90 &&
		    u[i + 2] <= 0xaf)
			e->seen |= 1u << (u[i + 2] - 0x90);
		bad += l == 0;
		i += l ? l : 1;
	}
	if (!bad)
		return json_stringn_nocheck(s, n);
	e->invalid = true;
	char repl[3] = {'\xef', '\xbf', '\xbd'};
	if (e->marker >= 0) {
		repl[1] = '\xb7';
		repl[2] = (char)(0x90 + e->marker);
	}
	char *fixed = malloc(n + 2 * bad);
	if (!fixed)
		return NULL;
	size_t o = 0;
	for (size_t i = 0; i < n;) {
		size_t l = utf8_len((const unsigned char *)s + i, n - i);
		if (l) {
			memcpy(fixed + o, s + i, l);
			o += l;
			i += l;
		} else {
			memcpy(fixed + o, repl, 3);
			o += 3;
			i++;
		}
	}
	json_t *j = json_stringn_nocheck(fixed, o);
	free(fixed);
	return j;
}

static json_t *enc_bytes(const ProtobufCBinaryData *b)
{
	char *s = b64_encode(b->data, b->len);
	if (!s)
		return NULL;
	json_t *j = json_string_nocheck(s);
	free(s);
	return j;
}

static json_t *enc_float(double d)
{
	if (isnan(d))
		return json_string("NaN");
	if (isinf(d))
		return json_string(d > 0 ? "Infinity" : "-Infinity");
	return json_real(d);
}

static json_t *enc_msg(ectx *e, const ProtobufCMessage *m);

/* One value of field @f stored at @p (a struct member or an array element). */
static json_t *enc_value(ectx *e, const ProtobufCFieldDescriptor *f, const void *p)
{
	char buf[24];
	switch (f->type) {
	case PROTOBUF_C_TYPE_INT32:
	case PROTOBUF_C_TYPE_SINT32:
	case PROTOBUF_C_TYPE_SFIXED32:
		return json_integer(*(const int32_t *)p);
	case PROTOBUF_C_TYPE_UINT32:
	case PROTOBUF_C_TYPE_FIXED32:
		return json_integer(*(const uint32_t *)p);
	case PROTOBUF_C_TYPE_INT64:
	case PROTOBUF_C_TYPE_SINT64:
	case PROTOBUF_C_TYPE_SFIXED64:
		snprintf(buf, sizeof(buf), "%" PRId64, *(const int64_t *)p);
		return json_string_nocheck(buf);
	case PROTOBUF_C_TYPE_UINT64:
	case PROTOBUF_C_TYPE_FIXED64:
		snprintf(buf, sizeof(buf), "%" PRIu64, *(const uint64_t *)p);
		return json_string_nocheck(buf);
	case PROTOBUF_C_TYPE_FLOAT:
		return enc_float(*(const float *)p);
	case PROTOBUF_C_TYPE_DOUBLE:
		return enc_float(*(const double *)p);
	case PROTOBUF_C_TYPE_BOOL:
		return json_boolean(*(const protobuf_c_boolean *)p);
	case PROTOBUF_C_TYPE_ENUM: {
		int v = *(const int *)p;
		const ProtobufCEnumValue *ev =
		        protobuf_c_enum_descriptor_get_value(f->descriptor, v);
		/* jsonpb writes an unknown value as a bare number */
		return ev ? json_string(ev->name) : json_integer(v);
	}
	case PROTOBUF_C_TYPE_STRING:
		return enc_string(e, *(char *const *)p);
	case PROTOBUF_C_TYPE_BYTES:
		return enc_bytes(p);
	case PROTOBUF_C_TYPE_MESSAGE: {
		const ProtobufCMessage *sub = *(ProtobufCMessage *const *)p;
		return sub ? enc_msg(e, sub) : json_null();
	}
	}
	return NULL;
}

/* True when a LABEL_NONE (proto3) field holds its zero value. */
static bool is_zero(const ProtobufCFieldDescriptor *f, const void *p)
{
	switch (f->type) {
	case PROTOBUF_C_TYPE_INT32:
	case PROTOBUF_C_TYPE_SINT32:
	case PROTOBUF_C_TYPE_SFIXED32:
	case PROTOBUF_C_TYPE_UINT32:
	case PROTOBUF_C_TYPE_FIXED32:
		return *(const uint32_t *)p == 0;
	case PROTOBUF_C_TYPE_ENUM:
		return *(const int *)p == 0;
	case PROTOBUF_C_TYPE_INT64:
	case PROTOBUF_C_TYPE_SINT64:
	case PROTOBUF_C_TYPE_SFIXED64:
	case PROTOBUF_C_TYPE_UINT64:
	case PROTOBUF_C_TYPE_FIXED64:
		return *(const uint64_t *)p == 0;
	case PROTOBUF_C_TYPE_FLOAT:
		return *(const float *)p == 0;
	case PROTOBUF_C_TYPE_DOUBLE:
		return *(const double *)p == 0;
	case PROTOBUF_C_TYPE_BOOL:
		return !*(const protobuf_c_boolean *)p;
	case PROTOBUF_C_TYPE_STRING: {
		const char *s = *(char *const *)p;
		return !s || !*s;
	}
	case PROTOBUF_C_TYPE_BYTES:
		return ((const ProtobufCBinaryData *)p)->len == 0;
	case PROTOBUF_C_TYPE_MESSAGE:
		return *(ProtobufCMessage *const *)p == NULL;
	}
	return true;
}

/*
 * Whether jsonpb (EmitDefaults off) writes field @f of @m: a set oneof member
 * always, even at its zero value; a proto3 field when not zero; a proto2
 * optional when present; a repeated field when not empty.
 */
static bool is_present(const ProtobufCMessage *m, const ProtobufCFieldDescriptor *f)
{
	const char *base = (const char *)m;
	const void *p = base + f->offset;
	if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF)
		return *(const uint32_t *)(base + f->quantifier_offset) == f->id;
	switch (f->label) {
	case PROTOBUF_C_LABEL_REQUIRED:
		return true;
	case PROTOBUF_C_LABEL_OPTIONAL:
		if (f->type == PROTOBUF_C_TYPE_MESSAGE || f->type == PROTOBUF_C_TYPE_STRING) {
			const void *ptr = *(void *const *)p;
			return ptr && ptr != f->default_value;
		}
		return *(const protobuf_c_boolean *)(base + f->quantifier_offset);
	case PROTOBUF_C_LABEL_NONE:
		return !is_zero(f, p);
	case PROTOBUF_C_LABEL_REPEATED:
		return *(const size_t *)(base + f->quantifier_offset) > 0;
	}
	return false;
}

static json_t *enc_repeated(ectx *e, const ProtobufCMessage *m, const ProtobufCFieldDescriptor *f)
{
	const char *base = (const char *)m;
	size_t n = *(const size_t *)(base + f->quantifier_offset);
	const char *arr = *(char *const *)(base + f->offset);
	size_t es = elem_size(f->type);
	json_t *a = json_array();
	if (!a)
		return NULL;
	for (size_t i = 0; i < n; i++) {
		if (json_array_append_new(a, enc_value(e, f, arr + i * es))) {
			json_decref(a);
			return NULL;
		}
	}
	return a;
}

static json_t *enc_msg(ectx *e, const ProtobufCMessage *m)
{
	const ProtobufCMessageDescriptor *d = m->descriptor;
	json_t *o = json_object();
	if (!o)
		return NULL;
	for (unsigned i = 0; i < d->n_fields; i++) {
		const ProtobufCFieldDescriptor *f = &d->fields[i];
		if (!is_present(m, f))
			continue;
		json_t *v = f->label == PROTOBUF_C_LABEL_REPEATED
		                    ? enc_repeated(e, m, f)
		                    : enc_value(e, f, (const char *)m + f->offset);
		/* json_object_set_new takes v, and drops it on failure */
		if (json_object_set_new_nocheck(o, f->name, v)) {
			json_decref(o);
			return NULL;
		}
	}
	return o;
}

/* json_dump_callback's sink: the text goes into an st_buf. */
static int dump_put(const char *s, size_t n, void *data)
{
	return st_buf_add(data, s, n) == ST_OK ? 0 : -1;
}

/*
 * Jansson's compact text (@in, @n bytes) as Go's encoding/json writes it:
 * <, >, & and U+2028/2029 escaped, \b and \f as \u0008 and \u000c, hex in
 * lower case, and the noncharacter U+FDD0 + @marker (when >= 0) as \ufffd.
 * Returns a new NUL-terminated buffer or NULL.
 */
static char *go_escape(const char *in, size_t n, int marker, size_t *outlen)
{
	const unsigned char mk = (unsigned char)(0x90 + (marker >= 0 ? marker : 0));
	size_t extra = 0;
	for (size_t i = 0; i < n; i++) {
		char ch = in[i];
		if (ch == '<' || ch == '>' || ch == '&')
			extra += 5;
		else if (ch == '\\') {
			i++;
			if (i < n && (in[i] == 'b' || in[i] == 'f'))
				extra += 4;
		} else if ((unsigned char)ch == 0xe2 && i + 2 < n &&
		           (unsigned char)in[i + 1] == 0x80 &&
		           ((unsigned char)in[i + 2] == 0xa8 || (unsigned char)in[i + 2] == 0xa9))
			extra += 3;
		else if (marker >= 0 && (unsigned char)ch == 0xef && i + 2 < n &&
		         (unsigned char)in[i + 1] == 0xb7 && (unsigned char)in[i + 2] == mk)
			extra += 3;
	}
	char *out = malloc(n + extra + 1);
	if (!out)
		return NULL;
	size_t o = 0;
	for (size_t i = 0; i < n; i++) {
		unsigned char ch = (unsigned char)in[i];
		if (ch == '<' || ch == '>' || ch == '&') {
			o += (size_t)sprintf(out + o, "\\u%04x", ch);
		} else if (ch == '\\' && i + 1 < n) {
			char e = in[++i];
			if (e == 'b' || e == 'f') {
				o += (size_t)sprintf(out + o, "\\u%04x", e == 'b' ? 8 : 12);
			} else if (e == 'u' && i + 4 < n) {
				out[o++] = '\\';
				out[o++] = 'u';
				for (int k = 0; k < 4; k++) {
					char h = in[++i];
					out[o++] =
					        (h >= 'A' && h <= 'F') ? (char)(h - 'A' + 'a') : h;
				}
			} else {
				out[o++] = '\\';
				out[o++] = e;
			}
		} else if (ch == 0xe2 && i + 2 < n && (unsigned char)in[i + 1] == 0x80 &&
		           ((unsigned char)in[i + 2] == 0xa8 || (unsigned char)in[i + 2] == 0xa9)) {
			o += (size_t)sprintf(out + o, "\\u%04x",
			                     0x2000 + ((unsigned char)in[i + 2] - 0x80));
			i += 2;
		} else if (marker >= 0 && ch == 0xef && i + 2 < n &&
		           (unsigned char)in[i + 1] == 0xb7 && (unsigned char)in[i + 2] == mk) {
			memcpy(out + o, "\\ufffd", 6);
			o += 6;
			i += 2;
		} else {
			out[o++] = (char)ch;
		}
	}
	out[o] = '\0';
	if (outlen)
		*outlen = o;
	return out;
}

char *ec_json_encode(const ProtobufCMessage *msg, size_t *len)
{
	ectx e = {.marker = -1};
	json_t *j = enc_msg(&e, msg);
	if (j && e.invalid && e.seen != UINT32_MAX) {
		/* again, with a marker for the bytes that are not UTF-8 */
		json_decref(j);
		while (e.seen & (1u << ++e.marker))
			;
		j = enc_msg(&e, msg);
	}
	if (!j)
		return NULL;
	st_buf b = {0};
	int rc = json_dump_callback(j, dump_put, &b, JSON_COMPACT);
	json_decref(j);
	if (rc) {
		free(b.p);
		return NULL;
	}
	char *out = go_escape((const char *)b.p, b.len, e.marker, len);
	free(b.p);
	return out;
}

/* ------------------------------------------------------------------------- */
/* Decoding                                                                  */

/* The marker big_rewrite() puts before the digits of a too-big integer. */
#define BIG_MARK '\x01'

typedef struct {
	char *err;
	size_t errlen;
	bool big; /* big_rewrite() changed the text: marked strings are numbers */
} dctx;

static int bad(dctx *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Writes the reason for EC_BAD_REQUEST into the caller's buffer; returns EC_BAD_REQUEST. */
static int bad(dctx *c, const char *fmt, ...)
{
	if (c->err && c->errlen) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(c->err, c->errlen, fmt, ap);
		va_end(ap);
	}
	return EC_BAD_REQUEST;
}

/*
 * A copy of @t (@n bytes) in which every integer literal above INT64_MAX,
 * outside strings, is replaced by the string "\u0001<digits>"; NULL when
 * there is none (or *@nomem when out of memory). Replacing one value token
 * by another keeps valid text valid and invalid text invalid.
 */
static char *big_rewrite(const char *t, size_t n, size_t *outn, bool *nomem)
{
	static const char max[] = "9223372036854775807";
	char *out = NULL;
	size_t o = 0;
	*nomem = false;
	for (int pass = 0; pass < 2; pass++) {
		size_t count = 0, last = 0;
		for (size_t i = 0; i < n;) {
			if (t[i] == '"') {
				for (i++; i < n && t[i] != '"'; i++)
					if (t[i] == '\\')
						i++;
				i++;
				continue;
			}
			if (!(t[i] == '-' || (t[i] >= '0' && t[i] <= '9'))) {
				i++;
				continue;
			}
			size_t s = i;
			bool digits = true;
			for (; i < n && ((t[i] >= '0' && t[i] <= '9') || t[i] == '-' ||
			                 t[i] == '+' || t[i] == '.' || t[i] == 'e' || t[i] == 'E');
			     i++)
				digits &= t[i] >= '0' && t[i] <= '9';
			size_t l = i - s;
			if (!digits || t[s] == '0' || l < sizeof(max) - 1 ||
			    (l == sizeof(max) - 1 && memcmp(t + s, max, l) <= 0))
				continue;
			count++;
			if (pass == 1) {
				memcpy(out + o, t + last, s - last);
				o += s - last;
				memcpy(out + o, "\"\\u0001", 7);
				o += 7;
				memcpy(out + o, t + s, l);
				o += l;
				out[o++] = '"';
				last = i;
			}
		}
		if (pass == 0) {
			if (count == 0)
				return NULL;
			out = malloc(n + 8 * count + 1);
			if (!out) {
				*nomem = true;
				return NULL;
			}
		} else {
			memcpy(out + o, t + last, n - last);
			o += n - last;
		}
	}
	out[o] = '\0';
	*outn = o;
	return out;
}

/*
 * The literal digits of a string big_rewrite() made, or NULL. A client string
 * "\u0001<digits>" in a text that also holds a too-big integer reads as that
 * number too: the one input the marker misreads.
 */
static const char *big_digits(const dctx *c, const json_t *v)
{
	if (!c->big || !json_is_string(v))
		return NULL;
	const char *s = json_string_value(v);
	if (s[0] != BIG_MARK || !s[1])
		return NULL;
	for (const char *p = s + 1; *p; p++)
		if (*p < '0' || *p > '9')
			return NULL;
	return s + 1;
}

/* Go's word for the JSON kind of @v ("cannot unmarshal <kind> into ..."). */
static const char *kind(const dctx *c, const json_t *v)
{
	if (big_digits(c, v))
		return "number";
	switch (json_typeof(v)) {
	case JSON_OBJECT:
		return "object";
	case JSON_ARRAY:
		return "array";
	case JSON_STRING:
		return "string";
	case JSON_INTEGER:
	case JSON_REAL:
		return "number";
	case JSON_TRUE:
	case JSON_FALSE:
		return "bool";
	case JSON_NULL:
		return "null";
	}
	return "value";
}

static int wrong_type(dctx *c, const ProtobufCFieldDescriptor *f, const json_t *v, bool repeated)
{
	char t[160];
	go_field_type(f, t, sizeof(t));
	return bad(c, "json: cannot unmarshal %s into Go value of type %s%s", kind(c, v),
	           repeated ? "[]" : "", t);
}

/* @s (@n bytes) as -?(0|[1-9][0-9]*): sign and magnitude; false if not one or > UINT64_MAX. */
static bool parse_int(const char *s, size_t n, bool *neg, uint64_t *mag)
{
	size_t i = 0;
	*neg = false;
	*mag = 0;
	if (i < n && s[i] == '-') {
		*neg = true;
		i++;
	}
	if (i == n || (s[i] == '0' && i + 1 != n))
		return false;
	for (; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return false;
		unsigned d = (unsigned)(s[i] - '0');
		if (*mag > (UINT64_MAX - d) / 10)
			return false;
		*mag = *mag * 10 + d;
	}
	return true;
}

/*
 * An integer field: a JSON integer, a string holding one (jsonpb strips the
 * quotes of any number), or a too-big literal from big_rewrite(). Range-checks
 * for @f's type and stores it at @p.
 */
static int dec_int(dctx *c, const ProtobufCFieldDescriptor *f, const json_t *v, void *p)
{
	char t[160], lit[32];
	const char *text;
	size_t tn;
	bool neg;
	uint64_t mag;
	go_field_type(f, t, sizeof(t));
	const char *big = big_digits(c, v);
	if (big) {
		text = big;
		tn = strlen(big);
		if (!parse_int(text, tn, &neg, &mag))
			return bad(c, "json: cannot unmarshal number %s into Go value of type %s",
			           big, t);
	} else if (json_is_integer(v)) {
		json_int_t x = json_integer_value(v);
		neg = x < 0;
		mag = neg ? (uint64_t)0 - (uint64_t)x : (uint64_t)x;
		snprintf(lit, sizeof(lit), "%" JSON_INTEGER_FORMAT, x);
		text = lit;
	} else if (json_is_string(v)) {
		text = json_string_value(v);
		tn = json_string_length(v);
		if (!parse_int(text, tn, &neg, &mag)) {
			if (tn == 0)
				return bad(c, "unexpected end of JSON input");
			if (text[0] != '-' && (text[0] < '0' || text[0] > '9'))
				return bad(c,
				           "invalid character '%c' looking for beginning of value",
				           text[0]);
			return bad(c, "json: cannot unmarshal number %s into Go value of type %s",
			           text, t);
		}
	} else if (json_is_real(v)) {
		return bad(c, "json: cannot unmarshal number %.17g into Go value of type %s",
		           json_real_value(v), t);
	} else {
		return wrong_type(c, f, v, false);
	}
	bool ok;
	switch (f->type) {
	case PROTOBUF_C_TYPE_INT32:
	case PROTOBUF_C_TYPE_SINT32:
	case PROTOBUF_C_TYPE_SFIXED32:
	case PROTOBUF_C_TYPE_ENUM:
		ok = neg ? mag <= (uint64_t)INT32_MAX + 1 : mag <= INT32_MAX;
		if (ok)
			*(int32_t *)p = neg ? (int32_t)(0 - (int64_t)mag) : (int32_t)mag;
		break;
	case PROTOBUF_C_TYPE_UINT32:
	case PROTOBUF_C_TYPE_FIXED32:
		ok = (!neg || mag == 0) && mag <= UINT32_MAX;
		if (ok)
			*(uint32_t *)p = (uint32_t)mag;
		break;
	case PROTOBUF_C_TYPE_INT64:
	case PROTOBUF_C_TYPE_SINT64:
	case PROTOBUF_C_TYPE_SFIXED64:
		ok = neg ? mag <= (uint64_t)INT64_MAX + 1 : mag <= INT64_MAX;
		if (ok)
			*(int64_t *)p = neg ? (int64_t)(0 - mag) : (int64_t)mag;
		break;
	case PROTOBUF_C_TYPE_UINT64:
	case PROTOBUF_C_TYPE_FIXED64:
		ok = !neg || mag == 0;
		if (ok)
			*(uint64_t *)p = mag;
		break;
	default:
		ok = false;
	}
	if (!ok)
		return bad(c, "json: cannot unmarshal number %s into Go value of type %s", text, t);
	return EC_OK;
}

/* An enum: its value name as a string, or any int32 as a number (not a quoted one). */
static int dec_enum(dctx *c, const ProtobufCFieldDescriptor *f, const json_t *v, void *p)
{
	if (json_is_string(v) && !big_digits(c, v)) {
		const ProtobufCEnumDescriptor *ed = f->descriptor;
		const ProtobufCEnumValue *ev =
		        protobuf_c_enum_descriptor_get_value_by_name(ed, json_string_value(v));
		if (!ev) {
			char t[160];
			go_name(ed->name, ed->package_name, t, sizeof(t));
			return bad(c, "unknown value \"%s\" for enum %s", json_string_value(v), t);
		}
		*(int *)p = ev->value;
		return EC_OK;
	}
	if (json_is_string(v) || json_is_integer(v) || json_is_real(v))
		return dec_int(c, f, v, p);
	return wrong_type(c, f, v, false);
}

/* A quoted float: JSON number characters only, finite. */
static bool parse_double(const char *s, double *d)
{
	size_t n = strlen(s);
	if (n == 0 || strspn(s, "-+.eE0123456789") != n)
		return false;
	char *end;
	*d = strtod(s, &end);
	return *end == '\0' && isfinite(*d);
}

/* A float or double: a number, "NaN", "Infinity", "-Infinity", or a quoted number. */
static int dec_float(dctx *c, const ProtobufCFieldDescriptor *f, const json_t *v, void *p)
{
	double d;
	const char *big = big_digits(c, v);
	if (big) {
		d = strtod(big, NULL);
	} else if (json_is_number(v)) {
		d = json_number_value(v);
	} else if (json_is_string(v)) {
		const char *s = json_string_value(v);
		if (strcmp(s, "NaN") == 0)
			d = NAN;
		else if (strcmp(s, "Infinity") == 0)
			d = INFINITY;
		else if (strcmp(s, "-Infinity") == 0)
			d = -INFINITY;
		else if (!parse_double(s, &d))
			return bad(c,
			           "json: cannot unmarshal string \"%s\" into Go value of type %s",
			           s, f->type == PROTOBUF_C_TYPE_FLOAT ? "float32" : "float64");
	} else {
		return wrong_type(c, f, v, false);
	}
	if (f->type == PROTOBUF_C_TYPE_FLOAT)
		*(float *)p = (float)d;
	else
		*(double *)p = d;
	return EC_OK;
}

static int dec_msg(dctx *c, const ProtobufCMessageDescriptor *d, const json_t *v,
                   ProtobufCMessage **out);

/*
 * One value of field @f into @p (a struct member or an array element). JSON
 * null reaches here only as an array element: it stores the zero value (an
 * empty message, an empty string). On failure @p is left as it was.
 */
static int dec_value(dctx *c, const ProtobufCFieldDescriptor *f, const json_t *v, void *p)
{
	switch (f->type) {
	case PROTOBUF_C_TYPE_INT32:
	case PROTOBUF_C_TYPE_SINT32:
	case PROTOBUF_C_TYPE_SFIXED32:
	case PROTOBUF_C_TYPE_UINT32:
	case PROTOBUF_C_TYPE_FIXED32:
	case PROTOBUF_C_TYPE_INT64:
	case PROTOBUF_C_TYPE_SINT64:
	case PROTOBUF_C_TYPE_SFIXED64:
	case PROTOBUF_C_TYPE_UINT64:
	case PROTOBUF_C_TYPE_FIXED64:
		return json_is_null(v) ? EC_OK : dec_int(c, f, v, p);
	case PROTOBUF_C_TYPE_ENUM:
		return json_is_null(v) ? EC_OK : dec_enum(c, f, v, p);
	case PROTOBUF_C_TYPE_FLOAT:
	case PROTOBUF_C_TYPE_DOUBLE:
		return json_is_null(v) ? EC_OK : dec_float(c, f, v, p);
	case PROTOBUF_C_TYPE_BOOL:
		if (json_is_null(v))
			return EC_OK;
		if (!json_is_boolean(v))
			return wrong_type(c, f, v, false);
		*(protobuf_c_boolean *)p = json_is_true(v);
		return EC_OK;
	case PROTOBUF_C_TYPE_STRING: {
		if (!json_is_null(v) && (!json_is_string(v) || big_digits(c, v)))
			return wrong_type(c, f, v, false);
		size_t n = json_is_null(v) ? 0 : json_string_length(v);
		char *s = malloc(n + 1);
		if (!s)
			return EC_NOMEM;
		if (n)
			memcpy(s, json_string_value(v), n);
		s[n] = '\0';
		*(char **)p = s;
		return EC_OK;
	}
	case PROTOBUF_C_TYPE_BYTES: {
		if (json_is_null(v))
			return EC_OK;
		if (!json_is_string(v) || big_digits(c, v))
			return wrong_type(c, f, v, false);
		size_t at = 0;
		int rc = b64_decode(json_string_value(v), json_string_length(v), p, &at);
		if (rc == EC_BAD_REQUEST)
			return bad(c, "illegal base64 data at input byte %zu", at);
		return rc;
	}
	case PROTOBUF_C_TYPE_MESSAGE:
		return dec_msg(c, f->descriptor, v, (ProtobufCMessage **)p);
	}
	return bad(c, "field %s: unsupported type", f->name);
}

static int dec_repeated(dctx *c, ProtobufCMessage *m, const ProtobufCFieldDescriptor *f,
                        const json_t *v)
{
	if (!json_is_array(v))
		return wrong_type(c, f, v, true);
	size_t n = json_array_size(v);
	if (n == 0)
		return EC_OK;
	size_t es = elem_size(f->type);
	char *arr = calloc(n, es);
	if (!arr)
		return EC_NOMEM;
	char *base = (char *)m;
	size_t *np = (size_t *)(base + f->quantifier_offset);
	*(char **)(base + f->offset) = arr;
	*np = 0;
	for (size_t i = 0; i < n; i++) {
		int rc = dec_value(c, f, json_array_get(v, i), arr + i * es);
		if (rc) {
			if (*np == 0) {
				free(arr);
				*(char **)(base + f->offset) = NULL;
			}
			return rc;
		}
		*np = i + 1;
	}
	return EC_OK;
}

/* Whether @key is protoc's lowerCamel JSON name of the .proto field @name. */
static bool json_name_eq(const char *name, const char *key)
{
	bool up = false;
	for (; *name; name++) {
		if (*name == '_') {
			up = true;
			continue;
		}
		char ch = *name;
		if (up && ch >= 'a' && ch <= 'z')
			ch = (char)(ch - 'a' + 'A');
		up = false;
		if (*key++ != ch)
			return false;
	}
	return *key == '\0';
}

/* The fields of @obj into @m (initialised, owned by the caller, freed by it on failure). */
static int dec_fields(dctx *c, ProtobufCMessage *m, const json_t *obj)
{
	const ProtobufCMessageDescriptor *d = m->descriptor;
	const json_t *local[32];
	bool local_camel[32];
	const json_t **vals = local;
	bool *camel = local_camel;
	int rc = EC_OK;
	if (d->n_fields > 32) {
		vals = calloc(d->n_fields, sizeof(*vals));
		camel = calloc(d->n_fields, sizeof(*camel));
		if (!vals || !camel) {
			rc = EC_NOMEM;
			goto out;
		}
	} else {
		memset(local, 0, sizeof(local));
		memset(local_camel, 0, sizeof(local_camel));
	}

	/* Which value each field gets: by .proto name or JSON name; the JSON name wins. */
	for (void *it = json_object_iter((json_t *)obj); it;
	     it = json_object_iter_next((json_t *)obj, it)) {
		const char *key = json_object_iter_key(it);
		json_t *v = json_object_iter_value(it);
		bool is_camel = false;
		const ProtobufCFieldDescriptor *f =
		        protobuf_c_message_descriptor_get_field_by_name(d, key);
		for (unsigned i = 0; !f && i < d->n_fields; i++) {
			if (json_name_eq(d->fields[i].name, key)) {
				f = &d->fields[i];
				is_camel = true;
			}
		}
		if (!f)
			continue; /* the gateway's AllowUnknownFields: skipped */
		size_t idx = (size_t)(f - d->fields);
		if (vals[idx] && camel[idx])
			continue;
		vals[idx] = v;
		camel[idx] = is_camel;
	}

	char *base = (char *)m;
	for (unsigned i = 0; i < d->n_fields; i++) {
		const ProtobufCFieldDescriptor *f = &d->fields[i];
		if (!vals[i] || json_is_null(vals[i]))
			continue; /* null: not set */
		if (f->label == PROTOBUF_C_LABEL_REPEATED) {
			rc = dec_repeated(c, m, f, vals[i]);
		} else if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) {
			uint32_t *cs = (uint32_t *)(base + f->quantifier_offset);
			if (*cs) {
				const ProtobufCFieldDescriptor *o =
				        protobuf_c_message_descriptor_get_field(d, *cs);
				char t[160];
				go_name(d->name, d->package_name, t, sizeof(t));
				rc = bad(c,
				         "fields \"%s\" and \"%s\" of %s are members of one oneof",
				         o ? o->name : "?", f->name, t);
			} else {
				rc = dec_value(c, f, vals[i], base + f->offset);
				if (!rc)
					*cs = f->id;
			}
		} else {
			rc = dec_value(c, f, vals[i], base + f->offset);
			if (!rc && f->label == PROTOBUF_C_LABEL_OPTIONAL &&
			    f->type != PROTOBUF_C_TYPE_MESSAGE && f->type != PROTOBUF_C_TYPE_STRING)
				*(protobuf_c_boolean *)(base + f->quantifier_offset) = 1;
		}
		if (rc)
			goto out;
	}
out:
	if (vals != local)
		free(vals);
	if (camel != local_camel)
		free(camel);
	return rc;
}

/*
 * A new message of type @d from the object @v (null: an empty message) into
 * *@out; on failure *@out is untouched and nothing is left allocated.
 */
static int dec_msg(dctx *c, const ProtobufCMessageDescriptor *d, const json_t *v,
                   ProtobufCMessage **out)
{
	if (!json_is_object(v) && !json_is_null(v)) {
		char t[160];
		go_name(d->name, d->package_name, t, sizeof(t));
		return bad(c, "json: cannot unmarshal %s into Go value of type %s", kind(c, v), t);
	}
	ProtobufCMessage *m = malloc(d->sizeof_message);
	if (!m)
		return EC_NOMEM;
	d->message_init(m);
	if (json_is_object(v)) {
		int rc = dec_fields(c, m, v);
		if (rc) {
			protobuf_c_message_free_unpacked(m, NULL);
			return rc;
		}
	}
	*out = m;
	return EC_OK;
}

int ec_json_decode(const ProtobufCMessageDescriptor *desc, const char *text, size_t len,
                   ProtobufCMessage **out, char *err, size_t errlen)
{
	dctx c = {.err = err, .errlen = errlen};
	*out = NULL;
	if (err && errlen)
		err[0] = '\0';
	size_t ws = 0;
	while (ws < len &&
	       (text[ws] == ' ' || text[ws] == '\t' || text[ws] == '\r' || text[ws] == '\n'))
		ws++;
	if (ws == len)
		return bad(&c, "EOF"); /* what Go's decoder says; etcd's gateway reads it as {} */

	bool nomem;
	size_t n2 = 0;
	char *rewritten = big_rewrite(text, len, &n2, &nomem);
	if (nomem)
		return EC_NOMEM;
	c.big = rewritten != NULL;

	json_error_t je;
	json_t *root = json_loadb(rewritten ? rewritten : text, rewritten ? n2 : len,
	                          JSON_DECODE_ANY, &je);
	free(rewritten);
	if (!root) {
		switch (json_error_code(&je)) {
		case json_error_out_of_memory:
			return EC_NOMEM;
		case json_error_premature_end_of_input:
			return bad(&c, "unexpected EOF");
		default:
			return bad(&c, "invalid JSON at byte %d: %s", je.position, je.text);
		}
	}
	int rc = dec_msg(&c, desc, root, out);
	json_decref(root);
	return rc;
}
