/*
 * test_compaction_flags: --auto-compaction-retention read as etcd 3.4's
 * parseCompactionRetention (srv_config_compaction_retention): a bare
 * non-negative integer is hours in periodic mode and revisions in revision
 * mode, anything else a Go duration, and a value etcd refuses stops the parse
 * with etcd's message.
 */
#include <criterion/criterion.h>
#include <string.h>

#include "server/srv_config.h"

static char *const no_env[] = {NULL};

/* Parse "metastore --auto-compaction-mode=@mode --auto-compaction-retention=@ret". */
static int parse(srv_config *c, const char *mode, const char *ret, char *err, size_t errlen)
{
	char m[64], r[64];
	snprintf(m, sizeof m, "--auto-compaction-mode=%s", mode);
	snprintf(r, sizeof r, "--auto-compaction-retention=%s", ret);
	char *argv[] = {"metastore", m, r, NULL};
	return srv_config_parse_env(c, 3, argv, no_env, err, errlen);
}

static int64_t retention(const char *mode, const char *ret)
{
	srv_config c;
	char err[256] = "";
	cr_assert_eq(parse(&c, mode, ret, err, sizeof err), 0, "%s %s: %s", mode, ret, err);
	int64_t v = -1;
	cr_assert_eq(srv_config_compaction_retention(&c, &v), 0);
	srv_config_free(&c);
	return v;
}

Test(compaction_flags, periodic)
{
	cr_expect_eq(retention("periodic", "0"), 0, "0 = off");
	cr_expect_eq(retention("periodic", "1"), 3600000, "a bare number is hours");
	cr_expect_eq(retention("periodic", "24"), 24 * 3600000);
	cr_expect_eq(retention("periodic", "30m"), 30 * 60000);
	cr_expect_eq(retention("periodic", "2s"), 2000);
	cr_expect_eq(retention("periodic", "1h30m"), 90 * 60000);
}

Test(compaction_flags, revision)
{
	cr_expect_eq(retention("revision", "1000"), 1000, "a bare number is revisions");
	cr_expect_eq(retention("revision", "0"), 0);
	/* etcd: a duration in revision mode counts its nanoseconds */
	cr_expect_eq(retention("revision", "1s"), 1000000000);
}

Test(compaction_flags, refused)
{
	const char *bad[] = {"abc", "-1", "5x", ""};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		srv_config c;
		char err[256] = "";
		cr_expect_neq(parse(&c, "periodic", bad[i], err, sizeof err), 0, "\"%s\" accepted", bad[i]);
		cr_expect(strstr(err, "error parsing CompactionRetention") != NULL, "\"%s\": %s", bad[i], err);
		srv_config_free(&c);
	}
}
