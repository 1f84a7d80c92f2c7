/*
 * ec_member: member and cluster identity as etcd derives it, so that the same
 * flags give the same ids on metastore as on etcd (etcdctl member list and every
 * response header show them).
 *
 * member id  = first 8 bytes (big-endian) of SHA-1(sorted peer URLs concatenated
 *              + cluster token [+ decimal unix time for a member added later])
 * cluster id = first 8 bytes (big-endian) of SHA-1(the member ids, sorted
 *              ascending, each as 8 big-endian bytes)
 */
#ifndef METASTORE_EC_MEMBER_H
#define METASTORE_EC_MEMBER_H

#include <stddef.h>
#include <stdint.h>

/* ec_sha1 - SHA-1 (FIPS 180-4) of @len bytes at @data into @out. */
void ec_sha1(const void *data, size_t len, uint8_t out[20]);

/*
 * ec_member_id - the id etcd gives a member with these peer URLs.
 * @urls/@n: the member's peer URLs (order does not matter; they are sorted).
 * @token: --initial-cluster-token. @now: unix seconds for a member added at
 * runtime (MemberAdd), or 0 for a member of the initial cluster.
 * Returns the id; 0 only if the allocation for sorting fails.
 */
uint64_t ec_member_id(const char *const *urls, size_t n, const char *token, int64_t now);

/* ec_cluster_id - the cluster id of the members @ids (any order; not modified). */
uint64_t ec_cluster_id(const uint64_t *ids, size_t n);

#endif
