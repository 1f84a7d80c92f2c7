/*
 * srv_log: renders log lines as etcd's zap JSON (or capnslog text) and writes
 * each with one write() per output under one mutex (see srv_log.h). A line is
 * built in a stack buffer that spills to the heap for long lines; nothing is
 * formatted for a filtered level.
 */
#include "server/srv_log.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define MAX_OUTPUTS 16

_Atomic int srv_log_min_ = SRV_LOG_INFO;

typedef struct {
	int fd;
	bool owned; /* a file we opened (closed by reset) */
} log_out;

static pthread_mutex_t log_mu = PTHREAD_MUTEX_INITIALIZER;
static _Atomic bool log_capnslog;
static log_out log_outs[MAX_OUTPUTS] = {{STDERR_FILENO, false}};
static size_t log_nouts = 1;

static const char *const level_names[] = {"debug", "info", "warn", "error", "panic", "fatal"};

const char *srv_log_level_name(srv_log_level lvl)
{
	return (unsigned)lvl < sizeof(level_names) / sizeof(level_names[0]) ? level_names[lvl]
	                                                                  : "info";
}

int srv_log_level_parse(const char *name, srv_log_level *out)
{
	for (size_t i = 0; i < sizeof(level_names) / sizeof(level_names[0]); i++)
		if (strcmp(name, level_names[i]) == 0) {
			*out = (srv_log_level)i;
			return 0;
		}
	if (strcmp(name, "dpanic") == 0) {
		*out = SRV_LOG_ERROR;
		return 0;
	}
	return -1;
}

/* ---- the line buffer ------------------------------------------------------ */

typedef struct {
	char *p;
	size_t len, cap;
	bool heap, failed;
	char stack[2048];
} lbuf;

static void lb_init(lbuf *b)
{
	b->p = b->stack;
	b->len = 0;
	b->cap = sizeof(b->stack);
	b->heap = b->failed = false;
}

static bool lb_room(lbuf *b, size_t n)
{
	if (b->failed)
		return false;
	if (b->len + n <= b->cap)
		return true;
	size_t cap = b->cap * 2;
	while (cap < b->len + n)
		cap *= 2;
	char *p = b->heap ? realloc(b->p, cap) : malloc(cap);
	if (p == NULL) {
		b->failed = true;
		return false;
	}
	if (!b->heap)
		memcpy(p, b->p, b->len);
	b->p = p;
	b->cap = cap;
	b->heap = true;
	return true;
}

static void lb_add(lbuf *b, const char *s, size_t n)
{
	if (lb_room(b, n)) {
		memcpy(b->p + b->len, s, n);
		b->len += n;
	}
}

static void lb_str(lbuf *b, const char *s)
{
	lb_add(b, s, strlen(s));
}

static void lb_vprintf(lbuf *b, const char *fmt, va_list ap)
{
	va_list ap2;
	va_copy(ap2, ap);
	char tmp[256];
	int n = vsnprintf(tmp, sizeof tmp, fmt, ap2);
	va_end(ap2);
	if (n < 0)
		return;
	if ((size_t)n < sizeof tmp) {
		lb_add(b, tmp, (size_t)n);
	} else if (lb_room(b, (size_t)n + 1)) {
		vsnprintf(b->p + b->len, (size_t)n + 1, fmt, ap);
		b->len += (size_t)n;
	}
}

static void lb_printf(lbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void lb_printf(lbuf *b, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	lb_vprintf(b, fmt, ap);
	va_end(ap);
}

/* Length of the valid UTF-8 sequence at @s (of @n bytes), or 0 if invalid
 * (Go's utf8.DecodeRuneInString: no overlongs, surrogates or > U+10FFFF). */
static size_t utf8_len(const unsigned char *s, size_t n)
{
	unsigned c = s[0];
	size_t len;
	unsigned lo = 0x80, hi = 0xBF;
	if (c >= 0xC2 && c <= 0xDF)
		len = 2;
	else if (c >= 0xE0 && c <= 0xEF) {
		len = 3;
		if (c == 0xE0)
			lo = 0xA0;
		else if (c == 0xED)
			hi = 0x9F;
	} else if (c >= 0xF0 && c <= 0xF4) {
		len = 4;
		if (c == 0xF0)
			lo = 0x90;
		else if (c == 0xF4)
			hi = 0x8F;
	} else
		return 0;
	if (n < len || s[1] < lo || s[1] > hi)
		return 0;
	for (size_t i = 2; i < len; i++)
		if (s[i] < 0x80 || s[i] > 0xBF)
			return 0;
	return len;
}

/* A JSON string body, escaped as zap's JSON encoder does. */
static void lb_json_text(lbuf *b, const char *text)
{
	static const char hex[] = "0123456789abcdef";
	const unsigned char *s = (const unsigned char *)(text ? text : "");
	size_t n = strlen((const char *)s), i = 0;
	while (i < n) {
		size_t run = i;
		while (run < n && s[run] >= 0x20 && s[run] < 0x80 && s[run] != '"' && s[run] != '\\')
			run++;
		lb_add(b, (const char *)s + i, run - i);
		i = run;
		if (i >= n)
			break;
		unsigned c = s[i];
		if (c < 0x80) {
			char esc[6] = {'\\', 0};
			size_t el = 2;
			switch (c) {
			case '"': esc[1] = '"'; break;
			case '\\': esc[1] = '\\'; break;
			case '\n': esc[1] = 'n'; break;
			case '\r': esc[1] = 'r'; break;
			case '\t': esc[1] = 't'; break;
			default:
				memcpy(esc + 1, "u00", 3);
				esc[4] = hex[c >> 4];
				esc[5] = hex[c & 15];
				el = 6;
			}
			lb_add(b, esc, el);
			i++;
			continue;
		}
		size_t ul = utf8_len(s + i, n - i);
		if (ul == 0) {
			lb_add(b, "\\ufffd", 6);
			i++;
		} else {
			lb_add(b, (const char *)s + i, ul);
			i += ul;
		}
	}
}

static void lb_json_str(lbuf *b, const char *text)
{
	lb_add(b, "\"", 1);
	lb_json_text(b, text);
	lb_add(b, "\"", 1);
}

/* ---- durations ------------------------------------------------------------ */

/* @v as a decimal with @prec fraction digits, trailing zeros (and the point)
 * dropped: fmt_frac(1500, 3) = "1.5". */
static size_t fmt_frac(char *buf, size_t cap, uint64_t v, int prec)
{
	uint64_t div = 1;
	for (int i = 0; i < prec; i++)
		div *= 10;
	uint64_t ip = v / div, fp = v % div;
	if (fp == 0)
		return (size_t)snprintf(buf, cap, "%llu", (unsigned long long)ip);
	char frac[16];
	snprintf(frac, sizeof frac, "%0*llu", prec, (unsigned long long)fp);
	size_t fl = strlen(frac);
	while (fl > 0 && frac[fl - 1] == '0')
		fl--;
	frac[fl] = '\0';
	return (size_t)snprintf(buf, cap, "%llu.%s", (unsigned long long)ip, frac);
}

size_t srv_log_format_duration(int64_t ns, char *buf, size_t cap)
{
	if (cap == 0)
		return 0;
	if (ns == 0)
		return (size_t)snprintf(buf, cap, "0s");
	const char *sign = ns < 0 ? "-" : "";
	uint64_t u = ns < 0 ? (uint64_t)0 - (uint64_t)ns : (uint64_t)ns;
	char num[48];
	if (u < 1000ULL) {
		return (size_t)snprintf(buf, cap, "%s%lluns", sign, (unsigned long long)u);
	} else if (u < 1000000ULL) {
		fmt_frac(num, sizeof num, u, 3);
		return (size_t)snprintf(buf, cap, "%s%s\xc2\xb5s", sign, num);
	} else if (u < 1000000000ULL) {
		fmt_frac(num, sizeof num, u, 6);
		return (size_t)snprintf(buf, cap, "%s%sms", sign, num);
	}
	uint64_t secs = u / 1000000000ULL, h = secs / 3600, m = secs / 60 % 60;
	fmt_frac(num, sizeof num, secs % 60 * 1000000000ULL + u % 1000000000ULL, 9);
	if (h > 0)
		return (size_t)snprintf(buf, cap, "%s%lluh%llum%ss", sign, (unsigned long long)h,
		                        (unsigned long long)m, num);
	if (m > 0)
		return (size_t)snprintf(buf, cap, "%s%llum%ss", sign, (unsigned long long)m, num);
	return (size_t)snprintf(buf, cap, "%s%ss", sign, num);
}

/* ---- rendering ------------------------------------------------------------ */

/* zap's ShortCallerEncoder: the last directory and the file name. */
static const char *short_file(const char *file)
{
	const char *last = strrchr(file, '/');
	if (last == NULL)
		return file;
	const char *p = last;
	while (p > file && p[-1] != '/')
		p--;
	return p;
}

/* The capnslog package a file logs as (etcd's package names where one fits). */
static const char *capnslog_pkg(const char *file)
{
	static const struct {
		const char *file, *pkg;
	} map[] = {
	        {"main.c", "etcdmain"},        {"srv_node.c", "etcdserver"},
	        {"srv_peer.c", "rafthttp"},    {"srv_rpc.c", "grpc"},
	        {"srv_tls.c", "embed"},        {"srv_watch.c", "v3rpc"},
	        {"srv_lease.c", "lease"},      {"srv_auth.c", "auth"},
	        {"srv_cluster.c", "membership"}, {"srv_handlers.c", "v3rpc"},
	        {"srv_maint.c", "etcdserver"}, {"srv_snapshot.c", "etcdserver"},
	        {"srv_compactor.c", "compactor"}, {"srv_identity.c", "etcdserver"},
	        {"srv_http.c", "etcdhttp"},    {"srv_listen.c", "embed"},
	        {"srv_metrics.c", "etcdserver"},
	};
	const char *base = strrchr(file, '/');
	base = base ? base + 1 : file;
	for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++)
		if (strcmp(base, map[i].file) == 0)
			return map[i].pkg;
	return "metastore";
}

static void render_time(lbuf *b, bool capnslog)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	struct tm tm;
	localtime_r(&ts.tv_sec, &tm);
	char when[40];
	strftime(when, sizeof when, capnslog ? "%Y-%m-%d %H:%M:%S" : "%Y-%m-%dT%H:%M:%S", &tm);
	lb_printf(b, "%s.%06ld", when, ts.tv_nsec / 1000);
	if (capnslog)
		return;
	long off = tm.tm_gmtoff;
	if (off == 0) {
		lb_add(b, "Z", 1);
	} else {
		char sign = off < 0 ? '-' : '+';
		if (off < 0)
			off = -off;
		lb_printf(b, "%c%02ld%02ld", sign, off / 3600, off / 60 % 60);
	}
}

static void render_value_json(lbuf *b, const srv_log_field *f)
{
	char num[48];
	switch (f->kind) {
	case SRV_LF_STR:
		lb_json_str(b, f->v.s);
		break;
	case SRV_LF_INT:
		lb_printf(b, "%lld", (long long)f->v.i);
		break;
	case SRV_LF_UINT:
		lb_printf(b, "%llu", (unsigned long long)f->v.u);
		break;
	case SRV_LF_BOOL:
		lb_str(b, f->v.b ? "true" : "false");
		break;
	case SRV_LF_STRS:
		lb_add(b, "[", 1);
		for (size_t i = 0; i < f->v.a.n; i++) {
			if (i)
				lb_add(b, ",", 1);
			lb_json_str(b, f->v.a.v[i]);
		}
		lb_add(b, "]", 1);
		break;
	case SRV_LF_ID:
		lb_printf(b, "\"%llx\"", (unsigned long long)f->v.u);
		break;
	case SRV_LF_DUR:
		srv_log_format_duration(f->v.i, num, sizeof num);
		lb_json_str(b, num);
		break;
	default:
		lb_str(b, "null");
	}
}

/* capnslog text: strings as they are, arrays as [a b], as Go's %v prints them. */
static void render_value_text(lbuf *b, const srv_log_field *f)
{
	char num[48];
	switch (f->kind) {
	case SRV_LF_STR:
		lb_str(b, f->v.s ? f->v.s : "");
		break;
	case SRV_LF_STRS:
		lb_add(b, "[", 1);
		for (size_t i = 0; i < f->v.a.n; i++) {
			if (i)
				lb_add(b, " ", 1);
			lb_str(b, f->v.a.v[i] ? f->v.a.v[i] : "");
		}
		lb_add(b, "]", 1);
		break;
	case SRV_LF_DUR:
		srv_log_format_duration(f->v.i, num, sizeof num);
		lb_str(b, num);
		break;
	case SRV_LF_ID:
		lb_printf(b, "%llx", (unsigned long long)f->v.u);
		break;
	default:
		render_value_json(b, f);
	}
}

static void emit(lbuf *b)
{
	if (b->failed || !lb_room(b, 1)) {
		if (b->heap)
			free(b->p);
		return;
	}
	b->p[b->len++] = '\n';
	pthread_mutex_lock(&log_mu);
	for (size_t o = 0; o < log_nouts; o++) {
		size_t off = 0;
		while (off < b->len) {
			ssize_t w = write(log_outs[o].fd, b->p + off, b->len - off);
			if (w < 0 && errno == EINTR)
				continue;
			if (w <= 0)
				break;
			off += (size_t)w;
		}
	}
	pthread_mutex_unlock(&log_mu);
	if (b->heap)
		free(b->p);
}

/* Everything before the fields; @msg is appended by the caller for zap (so a
 * printf message needs no copy) — returns with the msg value open. */
static void render_head(lbuf *b, srv_log_level lvl, const char *file, int line)
{
	if (log_capnslog) {
		static const char letters[] = "DIWECC";
		render_time(b, true);
		lb_printf(b, " %c | %s: ", letters[lvl], capnslog_pkg(file));
		return;
	}
	lb_str(b, "{\"level\":\"");
	lb_str(b, srv_log_level_name(lvl));
	lb_str(b, "\",\"ts\":\"");
	render_time(b, false);
	lb_str(b, "\",\"caller\":");
	char caller[256];
	snprintf(caller, sizeof caller, "%s:%d", short_file(file), line);
	lb_json_str(b, caller);
	lb_str(b, ",\"msg\":\"");
}

static void render_fields(lbuf *b, const srv_log_field *fields, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		const srv_log_field *f = &fields[i];
		if (log_capnslog) {
			lb_add(b, " ", 1);
			lb_str(b, f->key ? f->key : "");
			lb_add(b, "=", 1);
			render_value_text(b, f);
		} else {
			lb_add(b, ",", 1);
			lb_json_str(b, f->key);
			lb_add(b, ":", 1);
			render_value_json(b, f);
		}
	}
	if (!log_capnslog)
		lb_add(b, "}", 1);
}

void srv_log_write(srv_log_level lvl, const char *file, int line, const char *msg,
                   const srv_log_field *fields, size_t nfields)
{
	if (!srv_log_enabled(lvl))
		return;
	lbuf b;
	lb_init(&b);
	render_head(&b, lvl, file, line);
	if (log_capnslog) {
		lb_str(&b, msg ? msg : "");
	} else {
		lb_json_text(&b, msg);
		lb_add(&b, "\"", 1);
	}
	render_fields(&b, fields, nfields);
	emit(&b);
}

void srv_log_writef(srv_log_level lvl, const char *file, int line, const char *fmt, ...)
{
	if (!srv_log_enabled(lvl))
		return;
	char small[512];
	char *msg = small;
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(small, sizeof small, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	if ((size_t)n >= sizeof small) {
		msg = malloc((size_t)n + 1);
		if (msg == NULL)
			return;
		va_start(ap, fmt);
		vsnprintf(msg, (size_t)n + 1, fmt, ap);
		va_end(ap);
	}
	srv_log_write(lvl, file, line, msg, NULL, 0);
	if (msg != small)
		free(msg);
}

/* ---- configuration -------------------------------------------------------- */

void srv_errf(char *err, size_t errlen, const char *fmt, ...)
{
	if (err == NULL || errlen == 0)
		return;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

static void close_outs(log_out *outs, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (outs[i].owned)
			close(outs[i].fd);
}

int srv_log_setup(const char *logger, const char *level, const char *outputs, char *err,
                  size_t errlen)
{
	srv_log_level lvl;
	if (srv_log_level_parse(level ? level : "info", &lvl) != 0) {
		srv_errf(err, errlen, "unknown level \"%s\"", level);
		return -1;
	}
	bool capnslog;
	if (logger == NULL || strcmp(logger, "zap") == 0) {
		capnslog = false;
	} else if (strcmp(logger, "capnslog") == 0) {
		capnslog = true;
	} else {
		srv_errf(err, errlen, "unknown logger option \"%s\"", logger);
		return -1;
	}
	char *list = strdup(outputs && *outputs ? outputs : "default");
	if (list == NULL) {
		srv_errf(err, errlen, "out of memory");
		return -1;
	}
	const char *names[MAX_OUTPUTS];
	size_t nn = 0;
	bool has_default = false;
	char *save = NULL;
	int rc = -1;
	for (char *tok = strtok_r(list, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		if (nn == MAX_OUTPUTS) {
			srv_errf(err, errlen, "--log-outputs: more than %d outputs", MAX_OUTPUTS);
			goto out;
		}
		has_default |= strcmp(tok, "default") == 0;
		names[nn++] = tok;
	}
	if (nn == 0)
		names[nn++] = "default", has_default = true;
	if (capnslog) {
		if (nn != 1) {
			srv_errf(err, errlen,
			        "--logger=capnslog supports only 1 value in '--log-outputs', got %s",
			        outputs);
			goto out;
		}
		if (strcmp(names[0], "default") != 0 && strcmp(names[0], "stderr") != 0 &&
		    strcmp(names[0], "stdout") != 0) {
			srv_errf(err, errlen,
			        "unknown log-output \"%s\" (only supports \"default\", \"stderr\", "
			        "\"stdout\")",
			        names[0]);
			goto out;
		}
	} else if (nn > 1 && has_default) {
		srv_errf(err, errlen, "multi logoutput for \"default\" is not supported yet");
		goto out;
	}
	log_out outs[MAX_OUTPUTS];
	const char *paths[MAX_OUTPUTS];
	size_t no = 0;
	for (size_t i = 0; i < nn; i++) {
		const char *p = names[i];
		if (strcmp(p, "default") == 0)
			p = "stderr";
		bool dup = false;
		for (size_t j = 0; j < no && !dup; j++)
			dup = strcmp(paths[j], p) == 0;
		if (dup)
			continue;
		if (strcmp(p, "systemd/journal") == 0) {
			close_outs(outs, no);
			srv_errf(err, errlen,
			        "--log-outputs=systemd/journal: journald output is not supported by "
			        "metastore; use stderr (journald captures it under systemd)");
			goto out;
		}
		int fd;
		bool owned = false;
		if (strcmp(p, "stderr") == 0) {
			fd = STDERR_FILENO;
		} else if (strcmp(p, "stdout") == 0) {
			fd = STDOUT_FILENO;
		} else {
			fd = open(p, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0666);
			if (fd < 0) {
				int e = errno;
				close_outs(outs, no);
				srv_errf(err, errlen, "open sink \"%s\": open %s: %s", p, p, strerror(e));
				goto out;
			}
			owned = true;
		}
		paths[no] = p;
		outs[no].fd = fd;
		outs[no].owned = owned;
		no++;
	}
	pthread_mutex_lock(&log_mu);
	close_outs(log_outs, log_nouts);
	memcpy(log_outs, outs, no * sizeof outs[0]);
	log_nouts = no;
	log_capnslog = capnslog;
	atomic_store(&srv_log_min_, (int)lvl);
	pthread_mutex_unlock(&log_mu);
	rc = 0;
out:
	free(list);
	return rc;
}

void srv_log_reset(void)
{
	pthread_mutex_lock(&log_mu);
	close_outs(log_outs, log_nouts);
	log_outs[0].fd = STDERR_FILENO;
	log_outs[0].owned = false;
	log_nouts = 1;
	log_capnslog = false;
	atomic_store(&srv_log_min_, SRV_LOG_INFO);
	pthread_mutex_unlock(&log_mu);
}

int64_t srv_mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}
