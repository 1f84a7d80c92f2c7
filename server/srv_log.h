/*
 * srv_log: the process's one logger. Every line the server writes goes through
 * srv_log(), which renders it, by default, as etcd 3.5's zap logger does: one
 * JSON object per line,
 *   {"level":"info","ts":"2006-01-02T15:04:05.000000Z0700","caller":"dir/file.c:123",
 *    "msg":"...", then the fields in the order given}
 * (ts in local time with microseconds, caller as zap's ShortCallerEncoder: the
 * last directory and the file), strings escaped as zap escapes them (\" \\ \n
 * \r \t, other control bytes as \u00XX, invalid UTF-8 as \ufffd). With
 * --logger=capnslog a line is etcd 3.4's text instead:
 *   2006-01-02 15:04:05.000000 I | pkg: msg key=value key=value
 *
 * Usage:
 *   srv_log_info("published local member to cluster through raft",
 *                SRV_LF_ID("local-member-id", id), SRV_LF_STR("request-path", p));
 *   srv_log_warn("lost the leader");            (no fields)
 *   srv_logf(SRV_LOG_INFO, "%s became leader at term %llu", who, term);  (text only)
 * The level is checked before anything is formatted (a filtered line costs one
 * atomic load). A line is built in memory and written to each output with one
 * write() under a mutex, so lines of concurrent threads never interleave.
 *
 * Threads: srv_log*() from any thread at any time, also before srv_log_setup
 * (defaults: zap, info, stderr). srv_log_setup / srv_log_reset are called by one
 * thread while no other thread logs (at start and in tests).
 */
#ifndef METASTORE_SRV_LOG_H
#define METASTORE_SRV_LOG_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Levels, lowest first (etcd's --log-level names: srv_log_level_name). */
typedef enum {
	SRV_LOG_DEBUG,
	SRV_LOG_INFO,
	SRV_LOG_WARN,
	SRV_LOG_ERROR,
	SRV_LOG_PANIC,
	SRV_LOG_FATAL,
} srv_log_level;

typedef enum {
	SRV_LF_NONE_, /* internal: the array's leading placeholder */
	SRV_LF_STR,   /* "key":"text" (NULL prints "") */
	SRV_LF_INT,   /* "key":-12 */
	SRV_LF_UINT,  /* "key":12 */
	SRV_LF_BOOL,  /* "key":true */
	SRV_LF_STRS,  /* "key":["a","b"] */
	SRV_LF_ID,    /* "key":"8e9e05c52164694d" (etcd's types.ID: hex, no padding) */
	SRV_LF_DUR,   /* "key":"1.5s" (Go's time.Duration.String of nanoseconds) */
} srv_log_kind;

typedef struct srv_log_field {
	const char *key;
	srv_log_kind kind;
	union {
		const char *s;
		int64_t i;
		uint64_t u;
		bool b;
		struct {
			const char *const *v;
			size_t n;
		} a;
	} v;
} srv_log_field;

/* Field constructors (compound literals; the values are read during the call). */
#define SRV_LF_STR(k, x) ((srv_log_field){.key = (k), .kind = SRV_LF_STR, .v.s = (x)})
#define SRV_LF_INT(k, x) ((srv_log_field){.key = (k), .kind = SRV_LF_INT, .v.i = (int64_t)(x)})
#define SRV_LF_UINT(k, x) ((srv_log_field){.key = (k), .kind = SRV_LF_UINT, .v.u = (uint64_t)(x)})
#define SRV_LF_BOOL(k, x) ((srv_log_field){.key = (k), .kind = SRV_LF_BOOL, .v.b = (x)})
#define SRV_LF_STRS(k, arr, cnt)                                                                   \
	((srv_log_field){.key = (k), .kind = SRV_LF_STRS, .v.a = {(const char *const *)(arr), (cnt)}})
#define SRV_LF_ID(k, x) ((srv_log_field){.key = (k), .kind = SRV_LF_ID, .v.u = (uint64_t)(x)})
#define SRV_LF_DUR_NS(k, ns) ((srv_log_field){.key = (k), .kind = SRV_LF_DUR, .v.i = (int64_t)(ns)})
#define SRV_LF_DUR_MS(k, ms) SRV_LF_DUR_NS(k, (int64_t)(ms) * 1000000)
/* zap.Error(err): "error":"text". */
#define SRV_LF_ERR(x) SRV_LF_STR("error", (x))

/* The lowest level written; read by srv_log_enabled. Internal. */
extern _Atomic int srv_log_min_;

static inline bool srv_log_enabled(srv_log_level lvl)
{
	return (int)lvl >= atomic_load_explicit(&srv_log_min_, memory_order_relaxed);
}

/*
 * srv_log(level, msg, fields...) - write one line if @level is enabled. @msg is
 * the message text (not a format); the fields follow in order (zero or more
 * SRV_LF_* values). Never fails visibly: a line that cannot be written is lost.
 */
#define srv_log(lvl, msg, ...)                                                                     \
	do {                                                                                       \
		if (srv_log_enabled(lvl)) {                                                        \
			const srv_log_field srv_lf_arr_[] = {{.kind = SRV_LF_NONE_}, __VA_ARGS__}; \
			srv_log_write((lvl), __FILE__, __LINE__, (msg), srv_lf_arr_ + 1,           \
			              sizeof(srv_lf_arr_) / sizeof(srv_lf_arr_[0]) - 1);          \
		}                                                                                  \
	} while (0)
#define srv_log_debug(...) srv_log(SRV_LOG_DEBUG, __VA_ARGS__)
#define srv_log_info(...) srv_log(SRV_LOG_INFO, __VA_ARGS__)
#define srv_log_warn(...) srv_log(SRV_LOG_WARN, __VA_ARGS__)
#define srv_log_error(...) srv_log(SRV_LOG_ERROR, __VA_ARGS__)
#define srv_log_fatal(...) srv_log(SRV_LOG_FATAL, __VA_ARGS__)

/* srv_logf(level, fmt, ...) - a line whose message is printf-formatted (etcd's
 * raft and capnslog-era lines: "%x became leader at term %d"); no fields. */
#define srv_logf(lvl, ...)                                                                         \
	do {                                                                                       \
		if (srv_log_enabled(lvl))                                                          \
			srv_log_writef((lvl), __FILE__, __LINE__, __VA_ARGS__);                    \
	} while (0)

/* The functions behind the macros: @file/@line name the caller. */
void srv_log_write(srv_log_level lvl, const char *file, int line, const char *msg,
                   const srv_log_field *fields, size_t nfields);
void srv_log_writef(srv_log_level lvl, const char *file, int line, const char *fmt, ...)
        __attribute__((format(printf, 4, 5)));

/* srv_mono_ms - CLOCK_MONOTONIC in milliseconds: the server's one clock for
 * deadlines, timeouts and intervals (never wall time). */
int64_t srv_mono_ms(void);

/*
 * srv_log_setup - configure from etcd's flags: @logger "zap" | "capnslog",
 * @level "debug" | "info" | "warn" | "error" | "panic" | "fatal" (etcd's
 * ConvertToZapLevel also takes "dpanic", as error here), @outputs a comma list
 * of "default" (= stderr), "stderr", "stdout" or file paths (opened for append,
 * created 0666 & umask, as zap). Checks as etcd's setupLogging:
 *   - a bad level: "unknown level \"x\""
 *   - a bad logger: "unknown logger option \"x\""
 *   - zap: "default" with other outputs: "multi logoutput for \"default\" is not
 *     supported yet"; "systemd/journal": not supported by metastore;
 *     an unopenable file: "open sink \"P\": open P: <strerror>"
 *   - capnslog: exactly one output of default|stderr|stdout.
 * Duplicate outputs are written once. Returns 0, or -1 with the reason in @err;
 * on failure the previous configuration stays.
 */
int srv_log_setup(const char *logger, const char *level, const char *outputs, char *err,
                  size_t errlen);

/* srv_log_reset - close file outputs and return to the defaults (zap, info,
 * stderr). */
void srv_log_reset(void);

/*
 * srv_errf - format an error reason into @err (@errlen bytes, always
 * terminated); does nothing when @err is NULL or @errlen is 0. The one helper
 * every server file uses to fill its callers' err buffers.
 */
void srv_errf(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* srv_log_level_parse - @name as --log-level takes it → *@out. Returns 0 or -1. */
int srv_log_level_parse(const char *name, srv_log_level *out);

/* srv_log_level_name - "debug", "info", "warn", "error", "panic", "fatal". */
const char *srv_log_level_name(srv_log_level lvl);

/*
 * srv_log_format_duration - Go's time.Duration.String() of @ns nanoseconds into
 * @buf (at least 32 bytes): "0s", "1.5s", "100ms", "1.449108ms", "2m30s",
 * "1h0m0s", "12µs", "-3ns". Returns the length.
 */
size_t srv_log_format_duration(int64_t ns, char *buf, size_t cap);

#endif
