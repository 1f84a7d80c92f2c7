/*
 * Unit tests for srv_log: lines written to a file output and read back, checked
 * with a small strict JSON parser (every line one object; keys level, ts,
 * caller, msg first, then the fields in order); zap's escaping of quotes,
 * backslashes, control bytes and invalid UTF-8; level filtering (and that a
 * filtered call does not evaluate into formatting); typed fields (ids,
 * durations as Go prints them, string arrays); the caller; several outputs;
 * capnslog text; etcd's errors for bad flags; and lines of concurrent threads
 * never interleaving.
 */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "server/srv_log.h"

/* ---- a small strict JSON checker ----------------------------------------- */

typedef struct {
	const char *p;
	char keys[32][64]; /* top-level keys in order */
	size_t nkeys;
	int depth;
} jp;

static bool j_value(jp *j);

static void j_ws(jp *j)
{
	while (*j->p == ' ' || *j->p == '\t')
		j->p++;
}

/* A JSON string; its decoded ASCII-ish text (escapes kept as is) into @out. */
static bool j_string(jp *j, char *out, size_t cap)
{
	if (*j->p != '"')
		return false;
	j->p++;
	size_t n = 0;
	while (*j->p != '"') {
		unsigned char c = (unsigned char)*j->p;
		if (c == '\0' || c < 0x20)
			return false;
		if (c == '\\') {
			j->p++;
			if (strchr("\"\\/bfnrt", *j->p) && *j->p) {
				j->p++;
			} else if (*j->p == 'u') {
				for (int i = 1; i <= 4; i++)
					if (!strchr("0123456789abcdefABCDEF", j->p[i]) || !j->p[i])
						return false;
				j->p += 5;
			} else {
				return false;
			}
			continue;
		}
		if (out && n + 1 < cap)
			out[n++] = (char)c;
		j->p++;
	}
	j->p++;
	if (out && cap)
		out[n] = '\0';
	return true;
}

static bool j_object(jp *j)
{
	j->p++;
	j->depth++;
	j_ws(j);
	if (*j->p == '}') {
		j->p++;
		j->depth--;
		return true;
	}
	for (;;) {
		char key[64];
		j_ws(j);
		if (!j_string(j, key, sizeof key))
			return false;
		if (j->depth == 1 && j->nkeys < 32)
			snprintf(j->keys[j->nkeys++], sizeof j->keys[0], "%s", key);
		j_ws(j);
		if (*j->p++ != ':')
			return false;
		if (!j_value(j))
			return false;
		j_ws(j);
		if (*j->p == ',') {
			j->p++;
			continue;
		}
		if (*j->p++ != '}')
			return false;
		j->depth--;
		return true;
	}
}

static bool j_value(jp *j)
{
	j_ws(j);
	char c = *j->p;
	if (c == '{')
		return j_object(j);
	if (c == '"')
		return j_string(j, NULL, 0);
	if (c == '[') {
		j->p++;
		j_ws(j);
		if (*j->p == ']') {
			j->p++;
			return true;
		}
		for (;;) {
			if (!j_value(j))
				return false;
			j_ws(j);
			if (*j->p == ',') {
				j->p++;
				continue;
			}
			return *j->p++ == ']';
		}
	}
	if (strncmp(j->p, "true", 4) == 0 || strncmp(j->p, "null", 4) == 0) {
		j->p += 4;
		return true;
	}
	if (strncmp(j->p, "false", 5) == 0) {
		j->p += 5;
		return true;
	}
	const char *s = j->p;
	if (*j->p == '-')
		j->p++;
	while (*j->p >= '0' && *j->p <= '9')
		j->p++;
	return j->p > s && j->p[-1] != '-';
}

/* @line is exactly one JSON object; its top-level keys land in @j. */
static bool json_line(const char *line, jp *j)
{
	memset(j, 0, sizeof *j);
	j->p = line;
	j_ws(j);
	if (*j->p != '{' || !j_object(j))
		return false;
	j_ws(j);
	return *j->p == '\0';
}

/* ---- fixtures -------------------------------------------------------------- */

static char path[64];

static void setup_file(void)
{
	snprintf(path, sizeof path, "/tmp/test_log.XXXXXX");
	int fd = mkstemp(path);
	cr_assert_geq(fd, 0);
	close(fd);
}

static void teardown_file(void)
{
	srv_log_reset();
	unlink(path);
}

static void use(const char *logger, const char *level)
{
	char err[256];
	cr_assert_eq(srv_log_setup(logger, level, path, err, sizeof err), 0, "%s", err);
}

/* The file's lines (without newlines), NULL-terminated; free with free_lines. */
static char **read_lines(const char *p, size_t *n)
{
	FILE *f = fopen(p, "r");
	cr_assert_not_null(f);
	char **v = calloc(100001, sizeof *v);
	size_t k = 0, cap = 0;
	char *line = NULL;
	ssize_t len;
	while ((len = getline(&line, &cap, f)) >= 0 && k < 100000) {
		cr_assert(len > 0 && line[len - 1] == '\n', "line %zu has no newline", k);
		line[len - 1] = '\0';
		v[k++] = strdup(line);
	}
	free(line);
	fclose(f);
	*n = k;
	return v;
}

static void free_lines(char **v)
{
	for (size_t i = 0; v[i]; i++)
		free(v[i]);
	free(v);
}

static char *only_line(void)
{
	size_t n;
	char **v = read_lines(path, &n);
	cr_assert_eq(n, 1, "want one line, got %zu", n);
	char *s = strdup(v[0]);
	free_lines(v);
	return s;
}

/* ---- tests ------------------------------------------------------------------ */

TestSuite(log, .init = setup_file, .fini = teardown_file);

Test(log, zap_line_shape_and_fields_in_order)
{
	use("zap", "info");
	const char *urls[] = {"http://127.0.0.1:2380", "http://10.0.0.1:2380"};
	srv_log_info("starting local member", SRV_LF_ID("local-member-id", 0x8e9e05c52164694dULL),
	             SRV_LF_ID("cluster-id", 0xfULL), SRV_LF_STRS("peer-urls", urls, 2),
	             SRV_LF_INT("n", -12), SRV_LF_UINT("u", 18446744073709551615ULL),
	             SRV_LF_BOOL("ok", true), SRV_LF_BOOL("no", false),
	             SRV_LF_DUR_MS("timeout", 1500), SRV_LF_STR("empty", NULL));
	int line = __LINE__ - 5;
	char *s = only_line();
	jp j;
	cr_assert(json_line(s, &j), "not JSON: %s", s);
	const char *want[] = {"level", "ts",  "caller", "msg", "local-member-id", "cluster-id",
	                      "peer-urls", "n", "u",   "ok",     "no",  "timeout", "empty"};
	cr_assert_eq(j.nkeys, sizeof want / sizeof want[0], "%s", s);
	for (size_t i = 0; i < j.nkeys; i++)
		cr_assert_str_eq(j.keys[i], want[i]);
	char caller[64];
	snprintf(caller, sizeof caller, "\"caller\":\"server/test_log.c:%d\"", line);
	cr_assert(strstr(s, caller), "%s not in %s", caller, s);
	cr_assert(strncmp(s, "{\"level\":\"info\",\"ts\":\"", 22) == 0, "%s", s);
	cr_assert(strstr(s, ",\"msg\":\"starting local member\","), "%s", s);
	cr_assert(strstr(s, "\"local-member-id\":\"8e9e05c52164694d\",\"cluster-id\":\"f\""), "%s", s);
	cr_assert(strstr(s, "\"peer-urls\":[\"http://127.0.0.1:2380\",\"http://10.0.0.1:2380\"]"),
	          "%s", s);
	cr_assert(strstr(s, "\"n\":-12,\"u\":18446744073709551615,\"ok\":true,\"no\":false"), "%s", s);
	cr_assert(strstr(s, "\"timeout\":\"1.5s\",\"empty\":\"\"}"), "%s", s);
	free(s);
}

Test(log, ts_is_etcds_format)
{
	setenv("TZ", "UTC", 1);
	tzset();
	use("zap", "info");
	srv_log_info("x");
	char *s = only_line();
	/* "2006-01-02T15:04:05.000000Z" */
	const char *ts = strstr(s, "\"ts\":\"");
	cr_assert_not_null(ts);
	ts += 6;
	const char *shape = "dddd-dd-ddTdd:dd:dd.ddddddZ\"";
	for (size_t i = 0; shape[i]; i++) {
		if (shape[i] == 'd')
			cr_assert(ts[i] >= '0' && ts[i] <= '9', "ts %.30s", ts);
		else
			cr_assert_eq(ts[i], shape[i], "ts %.30s at %zu", ts, i);
	}
	free(s);
	setenv("TZ", "EST5", 1);
	tzset();
	srv_log_reset();
	use("zap", "info");
	cr_assert_eq(truncate(path, 0), 0);
	srv_log_info("y");
	s = only_line();
	cr_assert(strstr(s, "-0500\",\"caller\""), "offset as Z0700: %s", s);
	free(s);
	unsetenv("TZ");
	tzset();
}

Test(log, escaping_as_zap)
{
	use("zap", "info");
	/* quote, backslash, \n \r \t, other controls, DEL, valid UTF-8, bad UTF-8
	 * (lone continuation, truncated sequence, overlong, surrogate, > U+10FFFF). */
	const char *nasty = "a\"b\\c\nd\re\tf\x01g\x1fh\x7fi\xc3\xa9j\xe2\x82\xack\xf0\x9f\x98\x80l"
	                    "\x80m\xe2\x82n\xc0\xafo\xed\xa0\x80p\xf4\x90\x80\x80q";
	srv_log_warn(nasty, SRV_LF_STR(nasty, nasty));
	char *s = only_line();
	jp j;
	cr_assert(json_line(s, &j), "not JSON: %s", s);
	const char *want = "a\\\"b\\\\c\\nd\\re\\tf\\u0001g\\u001fh\x7fi\xc3\xa9j\xe2\x82\xack"
	                   "\xf0\x9f\x98\x80l\\ufffdm\\ufffd\\ufffdn\\ufffd\\ufffdo\\ufffd\\ufffd"
	                   "\\ufffdp\\ufffd\\ufffd\\ufffd\\ufffdq";
	char exp[1024];
	snprintf(exp, sizeof exp, "\"msg\":\"%s\",\"%s\":\"%s\"}", want, want, want);
	cr_assert(strstr(s, exp), "got %s\nwant ...%s", s, exp);
	cr_assert(strstr(s, "\"level\":\"warn\""));
	free(s);
}

Test(log, durations_as_go_prints_them)
{
	static const struct {
		int64_t ns;
		const char *s;
	} cases[] = {
	        {0, "0s"},
	        {1, "1ns"},
	        {999, "999ns"},
	        {1000, "1\xc2\xb5s"},
	        {1500, "1.5\xc2\xb5s"},
	        {1449108, "1.449108ms"},
	        {100000000, "100ms"},
	        {900000000, "900ms"},
	        {1000000000, "1s"},
	        {1500000000, "1.5s"},
	        {7000000000, "7s"},
	        {150000000000, "2m30s"},
	        {3600000000000, "1h0m0s"},
	        {3723000000001, "1h2m3.000000001s"},
	        {-1500000000, "-1.5s"},
	        {-3, "-3ns"},
	        {INT64_MIN, "-2562047h47m16.854775808s"},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		char buf[64];
		size_t n = srv_log_format_duration(cases[i].ns, buf, sizeof buf);
		cr_assert_str_eq(buf, cases[i].s, "%lld", (long long)cases[i].ns);
		cr_assert_eq(n, strlen(cases[i].s));
	}
}

static int evaluated;

static const char *side_effect(void)
{
	evaluated++;
	return "v";
}

Test(log, level_filtering)
{
	use("zap", "warn");
	cr_assert(!srv_log_enabled(SRV_LOG_INFO));
	cr_assert(srv_log_enabled(SRV_LOG_WARN));
	evaluated = 0;
	srv_log_debug("hidden-debug", SRV_LF_STR("k", side_effect()));
	srv_log_info("hidden-info", SRV_LF_STR("k", side_effect()));
	srv_logf(SRV_LOG_INFO, "hidden %s", side_effect());
	cr_assert_eq(evaluated, 0, "a filtered line evaluated its fields");
	srv_log_warn("shown-warn");
	srv_log_error("shown-error");
	srv_logf(SRV_LOG_FATAL, "shown %d", 3);
	size_t n;
	char **v = read_lines(path, &n);
	cr_assert_eq(n, 3);
	cr_assert(strstr(v[0], "\"level\":\"warn\"") && strstr(v[0], "\"msg\":\"shown-warn\""));
	cr_assert(strstr(v[1], "\"level\":\"error\"") && strstr(v[1], "\"msg\":\"shown-error\""));
	cr_assert(strstr(v[2], "\"level\":\"fatal\"") && strstr(v[2], "\"msg\":\"shown 3\"}"));
	free_lines(v);
	srv_log_reset();
	use("zap", "debug");
	srv_log_debug("now-debug");
	v = read_lines(path, &n);
	cr_assert_eq(n, 4);
	cr_assert(strstr(v[3], "\"level\":\"debug\""));
	free_lines(v);
}

Test(log, bad_flags_get_etcds_errors)
{
	char err[256];
	cr_assert_eq(srv_log_setup("zap", "bogus", "stderr", err, sizeof err), -1);
	cr_assert_str_eq(err, "unknown level \"bogus\"");
	cr_assert_eq(srv_log_setup("syslog", "info", "stderr", err, sizeof err), -1);
	cr_assert_str_eq(err, "unknown logger option \"syslog\"");
	cr_assert_eq(srv_log_setup("zap", "info", "default,/tmp/x", err, sizeof err), -1);
	cr_assert_str_eq(err, "multi logoutput for \"default\" is not supported yet");
	cr_assert_eq(srv_log_setup("zap", "info", "/nonexistent-dir/x.log", err, sizeof err), -1);
	cr_assert_str_eq(err, "open sink \"/nonexistent-dir/x.log\": open /nonexistent-dir/x.log: "
	                      "No such file or directory");
	cr_assert_eq(srv_log_setup("capnslog", "info", "stderr,stdout", err, sizeof err), -1);
	cr_assert(strstr(err, "--logger=capnslog supports only 1 value in '--log-outputs'"), "%s",
	          err);
	cr_assert_eq(srv_log_setup("capnslog", "info", path, err, sizeof err), -1);
	cr_assert(strstr(err, "unknown log-output"), "%s", err);
	/* The failures left the defaults. */
	cr_assert(srv_log_enabled(SRV_LOG_INFO) && !srv_log_enabled(SRV_LOG_DEBUG));
	srv_log_level l;
	cr_assert_eq(srv_log_level_parse("dpanic", &l), 0);
	cr_assert_eq(srv_log_level_parse("WARN", &l), -1);
}

Test(log, several_outputs_and_duplicates)
{
	char second[80];
	snprintf(second, sizeof second, "%s.2", path);
	char outs[300], err[256];
	snprintf(outs, sizeof outs, "%s,%s,%s", path, second, path);
	cr_assert_eq(srv_log_setup("zap", "info", outs, err, sizeof err), 0, "%s", err);
	srv_log_info("both");
	size_t n1, n2;
	char **a = read_lines(path, &n1), **b = read_lines(second, &n2);
	cr_assert_eq(n1, 1, "a duplicate output is written once");
	cr_assert_eq(n2, 1);
	cr_assert_str_eq(a[0], b[0]);
	free_lines(a);
	free_lines(b);
	srv_log_reset();
	unlink(second);
}

Test(log, capnslog_text)
{
	/* capnslog takes only stderr/stdout: point stdout at the file. */
	fflush(stdout);
	int saved = dup(STDOUT_FILENO);
	FILE *f = fopen(path, "w");
	cr_assert_not_null(f);
	dup2(fileno(f), STDOUT_FILENO);
	char err[256];
	cr_assert_eq(srv_log_setup("capnslog", "info", "stdout", err, sizeof err), 0, "%s", err);
	const char *urls[] = {"http://a:1", "http://b:2"};
	srv_log_warn("published", SRV_LF_ID("local-member-id", 0xabcULL),
	             SRV_LF_STRS("urls", urls, 2), SRV_LF_DUR_MS("took", 2));
	srv_log_reset();
	dup2(saved, STDOUT_FILENO);
	close(saved);
	fclose(f);
	char *s = only_line();
	/* "2006-01-02 15:04:05.000000 W | pkg: message" */
	const char *shape = "dddd-dd-dd dd:dd:dd.dddddd W | ";
	for (size_t i = 0; shape[i]; i++) {
		if (shape[i] == 'd')
			cr_assert(s[i] >= '0' && s[i] <= '9', "%s", s);
		else
			cr_assert_eq(s[i], shape[i], "%s at %zu", s, i);
	}
	cr_assert_str_eq(s + strlen(shape),
	                 "metastore: published local-member-id=abc urls=[http://a:1 http://b:2] "
	                 "took=2ms");
	free(s);
}

Test(log, long_lines_and_many_lines_are_valid_json)
{
	use("zap", "info");
	size_t big = 100000;
	char *v = malloc(big + 1);
	for (size_t i = 0; i < big; i++)
		v[i] = (char)(i % 255 + 1); /* every byte value but NUL, incl. bad UTF-8 */
	v[big] = '\0';
	srv_log_info("big", SRV_LF_STR("v", v));
	for (int i = 0; i < 500; i++)
		srv_logf(SRV_LOG_INFO, "line %d %.*s", i, i % 200, v + i);
	free(v);
	size_t n;
	char **lines = read_lines(path, &n);
	cr_assert_eq(n, 501);
	for (size_t i = 0; i < n; i++) {
		jp j;
		cr_assert(json_line(lines[i], &j), "line %zu is not JSON: %.200s", i, lines[i]);
		cr_assert(j.nkeys >= 4 && strcmp(j.keys[0], "level") == 0 &&
		          strcmp(j.keys[1], "ts") == 0 && strcmp(j.keys[2], "caller") == 0 &&
		          strcmp(j.keys[3], "msg") == 0);
	}
	free_lines(lines);
}

#define THREADS 8
#define PER_THREAD 2000

static void *writer(void *arg)
{
	long id = (long)arg;
	char pad[600];
	memset(pad, 'a' + (int)id, sizeof pad - 1);
	pad[sizeof pad - 1] = '\0';
	for (int i = 0; i < PER_THREAD; i++)
		srv_log_info("concurrent", SRV_LF_INT("thread", id), SRV_LF_INT("i", i),
		             SRV_LF_STR("pad", pad));
	return NULL;
}

Test(log, threads_never_interleave)
{
	use("zap", "info");
	pthread_t t[THREADS];
	for (long i = 0; i < THREADS; i++)
		cr_assert_eq(pthread_create(&t[i], NULL, writer, (void *)i), 0);
	for (int i = 0; i < THREADS; i++)
		pthread_join(t[i], NULL);
	size_t n;
	char **lines = read_lines(path, &n);
	cr_assert_eq(n, THREADS * PER_THREAD);
	int next[THREADS] = {0};
	for (size_t k = 0; k < n; k++) {
		jp j;
		cr_assert(json_line(lines[k], &j), "line %zu: %.120s", k, lines[k]);
		long id;
		int i;
		cr_assert_eq(sscanf(strstr(lines[k], "\"thread\":"), "\"thread\":%ld,\"i\":%d", &id, &i),
		             2);
		cr_assert(id >= 0 && id < THREADS);
		cr_assert_eq(i, next[id], "thread %ld's lines out of order", id);
		next[id]++;
		char want[8];
		snprintf(want, sizeof want, "%c%c%c\"}", 'a' + (int)id, 'a' + (int)id, 'a' + (int)id);
		cr_assert(strstr(lines[k], want), "pad of another thread in line %zu", k);
	}
	free_lines(lines);
}
