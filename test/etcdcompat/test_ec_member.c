/*
 * Unit tests for ec_member: SHA-1 against FIPS 180 test vectors, and member and
 * cluster ids against the values etcd 3.4 reports for the same flags.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "etcdcompat/ec_member.h"

static void hex(const uint8_t d[20], char out[41])
{
	for (int i = 0; i < 20; i++)
		sprintf(out + 2 * i, "%02x", d[i]);
}

Test(sha1, fips_vectors)
{
	uint8_t d[20];
	char h[41];
	ec_sha1("abc", 3, d);
	hex(d, h);
	cr_assert_str_eq(h, "a9993e364706816aba3e25717850c26c9cd0d89d");
	ec_sha1("", 0, d);
	hex(d, h);
	cr_assert_str_eq(h, "da39a3ee5e6b4b0d3255bfef95601890afd80709");
	const char *two = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"; /* 56 bytes: two pad blocks */
	ec_sha1(two, strlen(two), d);
	hex(d, h);
	cr_assert_str_eq(h, "84983e441c3bd26ebaae4aa1f95129e5e54670f1");
}

Test(sha1, million_a)
{
	static char buf[1000000];
	memset(buf, 'a', sizeof(buf));
	uint8_t d[20];
	char h[41];
	ec_sha1(buf, sizeof(buf), d);
	hex(d, h);
	cr_assert_str_eq(h, "34aa973cd4c4daa4f61eeb2bdbad27316534016f");
}

/* etcd 3.4 with default flags: member 8e9e05c52164694d, cluster cdf818194e3a8c32. */
Test(member, etcd_default_ids)
{
	const char *urls[] = {"http://localhost:2380"};
	uint64_t m = ec_member_id(urls, 1, "etcd-cluster", 0);
	cr_assert_eq(m, 0x8e9e05c52164694dULL);
	cr_assert_eq(ec_cluster_id(&m, 1), 0xcdf818194e3a8c32ULL);
}

Test(member, url_order_does_not_matter)
{
	const char *a[] = {"http://10.0.0.1:2380", "http://10.0.0.2:2380"};
	const char *b[] = {"http://10.0.0.2:2380", "http://10.0.0.1:2380"};
	cr_assert_eq(ec_member_id(a, 2, "tok", 0), ec_member_id(b, 2, "tok", 0));
	cr_assert_neq(ec_member_id(a, 2, "tok", 0), ec_member_id(a, 2, "other", 0));
	cr_assert_neq(ec_member_id(a, 2, "tok", 0), ec_member_id(a, 2, "tok", 1700000000));
}

Test(member, cluster_id_is_order_independent)
{
	uint64_t x[] = {3, 1, 2}, y[] = {1, 2, 3};
	cr_assert_eq(ec_cluster_id(x, 3), ec_cluster_id(y, 3));
	cr_assert_eq(x[0], 3, "input must not be reordered");
	cr_assert_neq(ec_cluster_id(x, 3), ec_cluster_id(x, 2));
}
