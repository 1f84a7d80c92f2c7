/*
 * Unit tests for st_db: opening data dirs (fresh, reopen, locked, unwritable,
 * foreign or corrupt), the Raft log (append, replace, truncate, entries, term,
 * compact, reset), the hard state and meta records. Real RocksDB in a temp dir.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <rocksdb/c.h>

#include "storage/st_db.h"
#include "test/storage/st_testutil.h"

static char *dir;
static st_db *db;

static st_db *open_db(void)
{
	st_options o = {.create_if_missing = true};
	char err[512];
	st_db *d = NULL;
	int rc = st_db_open(dir, &o, &d, err, sizeof(err));
	cr_assert_eq(rc, ST_OK, "open %s: %s (%s)", dir, st_strerror(rc), err);
	return d;
}

static void setup(void)
{
	dir = tu_tmpdir();
	cr_assert_not_null(dir);
	db = open_db();
}

static void teardown(void)
{
	st_db_close(db);
	db = NULL;
	tu_rmrf(dir);
	free(dir);
}

static void reopen(void)
{
	st_db_close(db);
	db = open_db();
}

TestSuite(st_db, .init = setup, .fini = teardown);

Test(st_db, strerror_names_codes)
{
	cr_assert_str_eq(st_strerror(ST_OK), "ok");
	cr_assert_str_eq(st_strerror(ST_ELOCKED), "data dir is locked by another process");
	cr_assert_str_eq(st_strerror(ST_EFORMAT), "unsupported on-disk format version");
	cr_assert_str_eq(st_strerror(-1), "unknown storage error");
	cr_assert_str_eq(st_strerror(ST__COUNT), "unknown storage error");
}

Test(st_db, fresh_db_is_empty)
{
	cr_assert_eq(st_log_first_index(db), 1);
	cr_assert_eq(st_log_last_index(db), 0);
	uint64_t term = 99;
	cr_assert_eq(st_log_term(db, 0, &term), ST_OK);
	cr_assert_eq(term, 0);
	cr_assert_eq(st_log_term(db, 1, &term), ST_EUNAVAILABLE);
	st_hardstate hs = {1, 2, 3};
	cr_assert_eq(st_hardstate_load(db, &hs), ST_OK);
	cr_assert_eq(hs.term + hs.vote + hs.commit, 0);
	int64_t total = 0, used = -1;
	st_db_size(db, &total, &used);
	cr_assert_gt(total, 0);
	cr_assert_geq(used, 0);
}

static void mk_entries(st_entry *e, size_t n, uint64_t first, uint64_t term, const char *tag)
{
	for (size_t i = 0; i < n; i++) {
		char *s = malloc(32);
		int len = snprintf(s, 32, "%s-%llu", tag, (unsigned long long)(first + i));
		e[i] = (st_entry){.term = term, .index = first + i, .type = 0, .data = (uint8_t *)s,
				  .len = (size_t)len};
	}
}

static void free_mk(st_entry *e, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(e[i].data);
}

static void expect_entry(const st_entry *e, uint64_t index, uint64_t term, const char *tag)
{
	char want[32];
	snprintf(want, sizeof(want), "%s-%llu", tag, (unsigned long long)index);
	cr_assert_eq(e->index, index);
	cr_assert_eq(e->term, term, "entry %llu term %llu want %llu", (unsigned long long)index,
		     (unsigned long long)e->term, (unsigned long long)term);
	cr_assert_eq(e->len, strlen(want));
	cr_assert_eq(memcmp(e->data, want, e->len), 0);
}

Test(st_db, log_append_read_and_hardstate_in_one_batch)
{
	st_entry e[10];
	mk_entries(e, 10, 1, 1, "a");
	st_hardstate hs = {.term = 1, .vote = 7, .commit = 4};
	cr_assert_eq(st_log_append(db, e, 10, &hs, true), ST_OK);
	free_mk(e, 10);
	cr_assert_eq(st_log_first_index(db), 1);
	cr_assert_eq(st_log_last_index(db), 10);

	st_entry *out;
	size_t n;
	cr_assert_eq(st_log_entries(db, 3, 8, UINT64_MAX, &out, &n), ST_OK);
	cr_assert_eq(n, 5);
	for (size_t i = 0; i < n; i++)
		expect_entry(&out[i], 3 + i, 1, "a");
	st_entries_free(out, n);

	/* max_bytes: entries 1-9 hold 3 bytes each; at least one entry always comes back */
	cr_assert_eq(st_log_entries(db, 1, 11, 0, &out, &n), ST_OK);
	cr_assert_eq(n, 1);
	st_entries_free(out, n);
	cr_assert_eq(st_log_entries(db, 1, 11, 8, &out, &n), ST_OK);
	cr_assert_eq(n, 2, "got %zu", n); /* "a-1" + "a-2" = 6 bytes, + "a-3" = 9 > 8 */
	st_entries_free(out, n);
	cr_assert_eq(st_log_entries(db, 1, 11, 9, &out, &n), ST_OK);
	cr_assert_eq(n, 3, "got %zu", n); /* exactly 9 fits */
	st_entries_free(out, n);

	cr_assert_eq(st_log_entries(db, 5, 12, UINT64_MAX, &out, &n), ST_EUNAVAILABLE);
	cr_assert_eq(st_log_entries(db, 0, 3, UINT64_MAX, &out, &n), ST_ECOMPACTED);

	reopen();
	cr_assert_eq(st_log_last_index(db), 10);
	st_hardstate got;
	cr_assert_eq(st_hardstate_load(db, &got), ST_OK);
	cr_assert_eq(got.term, 1);
	cr_assert_eq(got.vote, 7);
	cr_assert_eq(got.commit, 4);
	uint64_t term;
	cr_assert_eq(st_log_term(db, 10, &term), ST_OK);
	cr_assert_eq(term, 1);
}

Test(st_db, log_conflicting_append_replaces_tail)
{
	st_entry e[10];
	mk_entries(e, 10, 1, 1, "a");
	cr_assert_eq(st_log_append(db, e, 10, NULL, false), ST_OK);
	free_mk(e, 10);
	/* a new leader overwrites from index 6 with 2 entries of term 2 */
	mk_entries(e, 2, 6, 2, "b");
	cr_assert_eq(st_log_append(db, e, 2, NULL, true), ST_OK);
	free_mk(e, 2);
	cr_assert_eq(st_log_last_index(db), 7);
	st_entry *out;
	size_t n;
	cr_assert_eq(st_log_entries(db, 1, 8, UINT64_MAX, &out, &n), ST_OK);
	cr_assert_eq(n, 7);
	for (size_t i = 0; i < 5; i++)
		expect_entry(&out[i], 1 + i, 1, "a");
	expect_entry(&out[5], 6, 2, "b");
	expect_entry(&out[6], 7, 2, "b");
	st_entries_free(out, n);
	cr_assert_eq(st_log_entries(db, 1, 9, UINT64_MAX, &out, &n), ST_EUNAVAILABLE);

	reopen(); /* the removed tail stays removed */
	cr_assert_eq(st_log_last_index(db), 7);
	uint64_t term;
	cr_assert_eq(st_log_term(db, 8, &term), ST_EUNAVAILABLE);
	cr_assert_eq(st_log_term(db, 6, &term), ST_OK);
	cr_assert_eq(term, 2);

	/* gaps and non-consecutive batches are refused and write nothing */
	mk_entries(e, 1, 9, 2, "c");
	cr_assert_eq(st_log_append(db, e, 1, NULL, false), ST_EINVAL);
	free_mk(e, 1);
	st_entry bad[2];
	mk_entries(bad, 2, 8, 2, "c");
	bad[1].index = 10;
	cr_assert_eq(st_log_append(db, bad, 2, NULL, false), ST_EINVAL);
	free_mk(bad, 2);
	cr_assert_eq(st_log_last_index(db), 7);
}

Test(st_db, log_compact_and_reset)
{
	st_entry e[20];
	mk_entries(e, 20, 1, 3, "a");
	cr_assert_eq(st_log_append(db, e, 20, NULL, false), ST_OK);
	free_mk(e, 20);
	cr_assert_eq(st_log_compact(db, 12), ST_OK);
	cr_assert_eq(st_log_first_index(db), 13);
	cr_assert_eq(st_log_last_index(db), 20);
	uint64_t term;
	cr_assert_eq(st_log_term(db, 12, &term), ST_OK); /* the compaction point answers */
	cr_assert_eq(term, 3);
	cr_assert_eq(st_log_term(db, 11, &term), ST_ECOMPACTED);
	st_entry *out;
	size_t n;
	cr_assert_eq(st_log_entries(db, 12, 15, UINT64_MAX, &out, &n), ST_ECOMPACTED);
	cr_assert_eq(st_log_entries(db, 13, 21, UINT64_MAX, &out, &n), ST_OK);
	cr_assert_eq(n, 8);
	expect_entry(&out[0], 13, 3, "a");
	st_entries_free(out, n);
	cr_assert_eq(st_log_compact(db, 5), ST_OK); /* behind: no-op */
	cr_assert_eq(st_log_compact(db, 21), ST_EUNAVAILABLE);

	reopen();
	cr_assert_eq(st_log_first_index(db), 13);
	cr_assert_eq(st_log_last_index(db), 20);
	cr_assert_eq(st_log_term(db, 12, &term), ST_OK);
	cr_assert_eq(term, 3);

	/* compact everything: empty log, base = last */
	cr_assert_eq(st_log_compact(db, 20), ST_OK);
	cr_assert_eq(st_log_first_index(db), 21);
	cr_assert_eq(st_log_last_index(db), 20);
	mk_entries(e, 1, 21, 4, "b");
	cr_assert_eq(st_log_append(db, e, 1, NULL, false), ST_OK);
	free_mk(e, 1);
	cr_assert_eq(st_log_last_index(db), 21);

	/* snapshot install: the log restarts after (100, 7) */
	cr_assert_eq(st_log_reset(db, 100, 7), ST_OK);
	reopen();
	cr_assert_eq(st_log_first_index(db), 101);
	cr_assert_eq(st_log_last_index(db), 100);
	cr_assert_eq(st_log_term(db, 100, &term), ST_OK);
	cr_assert_eq(term, 7);
	cr_assert_eq(st_log_term(db, 21, &term), ST_ECOMPACTED);
	mk_entries(e, 1, 101, 7, "c");
	cr_assert_eq(st_log_append(db, e, 1, NULL, false), ST_OK);
	free_mk(e, 1);
	cr_assert_eq(st_log_entries(db, 101, 102, UINT64_MAX, &out, &n), ST_OK);
	expect_entry(&out[0], 101, 7, "c");
	st_entries_free(out, n);
}

Test(st_db, meta_roundtrip)
{
	void *v;
	size_t len;
	cr_assert_eq(st_meta_get(db, "member_id", &v, &len), ST_ENOTFOUND);
	uint64_t id = 0x8e9e05c52164694dULL;
	cr_assert_eq(st_meta_put(db, "member_id", &id, sizeof(id), true), ST_OK);
	cr_assert_eq(st_meta_put(db, "empty", "", 0, false), ST_OK);
	reopen();
	cr_assert_eq(st_meta_get(db, "member_id", &v, &len), ST_OK);
	cr_assert_eq(len, sizeof(id));
	cr_assert_eq(memcmp(v, &id, len), 0);
	free(v);
	cr_assert_eq(st_meta_get(db, "empty", &v, &len), ST_OK);
	cr_assert_eq(len, 0);
	free(v);
	/* user names cannot reach internal records */
	cr_assert_eq(st_meta_get(db, "ms.format", &v, &len), ST_ENOTFOUND);
	cr_assert_eq(st_meta_put(db, "", "x", 1, false), ST_EINVAL);
}

Test(st_db, second_open_in_process_is_locked)
{
	st_options o = {.create_if_missing = true};
	char err[512];
	st_db *d2 = NULL;
	cr_assert_eq(st_db_open(dir, &o, &d2, err, sizeof(err)), ST_ELOCKED, "%s", err);
	cr_assert_null(d2);
	cr_assert_not_null(strstr(err, "locked"), "%s", err);
	cr_assert_not_null(strstr(err, dir), "%s", err);
}

Test(st_db, open_by_another_process_is_locked)
{
	/* the parent holds the db open; a child process tries to open it */
	pid_t pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		st_options o = {.create_if_missing = true};
		char err[512];
		st_db *d2 = NULL;
		int rc = st_db_open(dir, &o, &d2, err, sizeof(err));
		_exit(rc);
	}
	int status;
	waitpid(pid, &status, 0);
	cr_assert(WIFEXITED(status));
	cr_assert_eq(WEXITSTATUS(status), ST_ELOCKED, "child got %d", WEXITSTATUS(status));
}

Test(st_db, missing_dir_without_create)
{
	char path[4200];
	snprintf(path, sizeof(path), "%s/nope", dir);
	st_options o = {.create_if_missing = false};
	char err[512];
	st_db *d2 = NULL;
	cr_assert_eq(st_db_open(path, &o, &d2, err, sizeof(err)), ST_ENOTFOUND);
	cr_assert_eq(st_db_open(path, NULL, &d2, err, sizeof(err)), ST_ENOTFOUND);
	/* nested creation works */
	snprintf(path, sizeof(path), "%s/a/b/c", dir);
	o.create_if_missing = true;
	cr_assert_eq(st_db_open(path, &o, &d2, err, sizeof(err)), ST_OK, "%s", err);
	st_db_close(d2);
}

Test(st_db, unwritable_dir_is_eperm)
{
	char path[4200];
	snprintf(path, sizeof(path), "%s/ro", dir);
	cr_assert_eq(mkdir(path, 0700), 0);
	char path2[4300];
	snprintf(path2, sizeof(path2), "%s/sub", path);
	chmod(dir, 0755);
	/* root ignores modes, so the check runs in a child that drops to nobody */
	pid_t pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		if (getuid() == 0 && setuid(65534) != 0)
			_exit(100);
		st_options o = {.create_if_missing = true};
		char err[512];
		st_db *d2 = NULL;
		int rc1 = st_db_open(path, &o, &d2, err, sizeof(err));   /* existing, no access */
		int rc2 = st_db_open(path2, &o, &d2, err, sizeof(err));  /* cannot create */
		_exit(rc1 == ST_EPERM && rc2 == ST_EPERM ? 0 : 10 + rc1 * 16 + rc2);
	}
	int status;
	waitpid(pid, &status, 0);
	cr_assert(WIFEXITED(status));
	cr_assert_eq(WEXITSTATUS(status), 0, "child status %d", WEXITSTATUS(status));
}

Test(st_db, foreign_rocksdb_is_eformat)
{
	char path[4200];
	snprintf(path, sizeof(path), "%s/foreign", dir);
	rocksdb_options_t *o = rocksdb_options_create();
	rocksdb_options_set_create_if_missing(o, 1);
	char *err = NULL;
	rocksdb_t *r = rocksdb_open(o, path, &err);
	cr_assert_null(err);
	rocksdb_close(r);
	rocksdb_options_destroy(o);
	st_options so = {.create_if_missing = true};
	char ebuf[512];
	st_db *d2 = NULL;
	cr_assert_eq(st_db_open(path, &so, &d2, ebuf, sizeof(ebuf)), ST_EFORMAT, "%s", ebuf);
	cr_assert_not_null(strstr(ebuf, "not a metastore data dir"), "%s", ebuf);
}

/* Rewrite one default-family record behind st_db's back. */
static void poke_meta(const char *key, const void *val, size_t len)
{
	st_db_close(db);
	db = NULL;
	char *err = tu_poke_default(dir, key, val, len);
	cr_assert_null(err, "%s", err);
}

Test(st_db, future_format_version_is_refused)
{
	uint8_t v3[4] = {0, 0, 0, 3};
	poke_meta("ms.format", v3, 4);
	st_options o = {.create_if_missing = true};
	char err[512];
	cr_assert_eq(st_db_open(dir, &o, &db, err, sizeof(err)), ST_EFORMAT);
	cr_assert_null(db);
	cr_assert_not_null(strstr(err, "format version 3"), "%s", err);
}

Test(st_db, format_1_opens_and_is_upgraded_by_set_format)
{
	st_options o = {.create_if_missing = true};
	char err[512];
	cr_assert_eq(st_db_format(db), 2, "a new data dir is format 2");
	uint8_t v1[4] = {0, 0, 0, 1};
	poke_meta("ms.format", v1, 4);
	cr_assert_eq(st_db_open(dir, &o, &db, err, sizeof(err)), ST_OK, "%s", err);
	cr_assert_eq(st_db_format(db), 1);
	cr_assert_eq(st_db_set_format(db, 9), ST_EINVAL);
	cr_assert_eq(st_db_set_format(db, 2), ST_OK);
	st_db_close(db);
	cr_assert_eq(st_db_open(dir, &o, &db, err, sizeof(err)), ST_OK, "%s", err);
	cr_assert_eq(st_db_format(db), 2, "the upgrade is durable");
}

Test(st_db, malformed_meta_is_corrupt)
{
	poke_meta("ms.kvstate", "short", 5);
	st_options o = {.create_if_missing = true};
	char err[512];
	cr_assert_eq(st_db_open(dir, &o, &db, err, sizeof(err)), ST_ECORRUPT, "%s", err);
}

Test(st_db, garbage_current_file_is_corrupt)
{
	st_db_close(db);
	db = NULL;
	char path[4200];
	snprintf(path, sizeof(path), "%s/CURRENT", dir);
	FILE *f = fopen(path, "w");
	cr_assert_not_null(f);
	fputs("garbage", f);
	fclose(f);
	st_options o = {.create_if_missing = true};
	char err[512];
	int rc = st_db_open(dir, &o, &db, err, sizeof(err));
	cr_assert_eq(rc, ST_ECORRUPT, "%s: %s", st_strerror(rc), err);
}

Test(st_db, peek_meta_reads_without_changing_the_dir)
{
	void *v = NULL;
	size_t len = 0;
	cr_assert_eq(st_db_peek_meta("/nonexistent/metastore", "member_id", &v, &len), ST_ENOTFOUND);
	cr_assert_eq(st_meta_put(db, "member_id", "12345678", 8, true), ST_OK);
	st_db_close(db);
	db = NULL;
	char *before = tu_dir_listing(dir);
	cr_assert_eq(st_db_peek_meta(dir, "member_id", &v, &len), ST_OK);
	cr_assert_eq(len, 8);
	cr_assert_eq(memcmp(v, "12345678", 8), 0);
	free(v);
	cr_assert_eq(st_db_peek_meta(dir, "absent", &v, &len), ST_ENOTFOUND);
	char *after = tu_dir_listing(dir);
	cr_assert_str_eq(before, after, "peeking wrote to the data dir");
	free(before);
	free(after);
	db = open_db();
}
