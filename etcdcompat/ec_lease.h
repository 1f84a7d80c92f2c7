/*
 * ec_lease: the lessor — etcd's leases over the MVCC keyspace, as etcd 3.4's
 * lease/lessor.go and the lease parts of etcdserver/apply.go and v3_server.go.
 *
 * What is replicated and durable: the lease records (id, granted TTL) and the
 * keys attached to each lease, written by apply through storage's "lease" column
 * family in the same batch as the keyspace (storage/st_mvcc.h, disk-format.md).
 * LeaseGrant and LeaseRevoke are applied here through the ec_kv lessor hook, so
 * every member applying the same log ends with the same leases and keys.
 *
 * What is not replicated: expiry. Each lease's deadline lives in memory only, in
 * milliseconds of a monotonic clock that the server hands in (ec_lessor_config
 * .now_ms): this module reads no clock of its own. Opening the lessor (start-up,
 * and in the cluster the moment this member becomes leader) sets every deadline
 * to now + granted TTL, as etcd's Promote does, so a restart or failover never
 * mass-expires leases. Expired leases are not deleted here: the server asks
 * ec_lessor_expired() which ones to revoke and proposes a LeaseRevoke for each
 * through the log (DESIGN.md: only the leader expires leases).
 *
 * Threading: apply runs on the node thread; renew, time-to-live, leases and
 * expired may be called from any thread concurrently (one internal mutex).
 */
#ifndef METASTORE_EC_LEASE_H
#define METASTORE_EC_LEASE_H

#include <stddef.h>
#include <stdint.h>

#include "etcdcompat/ec_kv.h"
#include "rpc.pb-c.h"
#include "storage/st_db.h"

/* etcd's lease.MaxLeaseTTL: a larger TTL is refused (EC_LEASE_TTL_TOO_LARGE). */
#define EC_LEASE_MAX_TTL 9000000000LL

/* etcd's expiredLeaseRetryInterval: an expired lease whose revoke was handed
 * out but is still present is handed out again after this long. */
#define EC_LEASE_REVOKE_RETRY_MS 3000

typedef struct ec_lessor ec_lessor;

typedef struct ec_lessor_config {
	/* Minimum TTL in seconds: a smaller granted TTL is raised to it. etcd:
	 * ceil(((3 * election ticks) / 2) * heartbeat), 2 s with its defaults;
	 * ec_lease_min_ttl() computes it. Values < 1 mean 1. */
	int64_t min_ttl;
	/* Monotonic clock in milliseconds; required. */
	int64_t (*now_ms)(void *arg);
	void *clock_arg;
} ec_lessor_config;

/*
 * ec_lease_min_ttl - etcd's minimum lease TTL for a heartbeat interval and an
 * election timeout in milliseconds (election ticks = election / heartbeat).
 */
int64_t ec_lease_min_ttl(int64_t heartbeat_ms, int64_t election_ms);

/*
 * ec_lessor_open - load every lease record of @db, give each the deadline
 * now + granted TTL, and install the lessor hooks on @kv (Put/Txn lease checks
 * and LeaseGrant/LeaseRevoke apply). @db and @kv are borrowed and must outlive
 * the lessor. Returns 0 and *@out, or an ST_* code (ST_ENOMEM, ST_ECORRUPT,
 * ST_EIO, ST_EINVAL when @cfg has no clock).
 */
int ec_lessor_open(st_db *db, ec_kv *kv, const ec_lessor_config *cfg, ec_lessor **out);

/* ec_lessor_close - remove the hooks from the ec_kv and free @l (NULL ok). Not
 * concurrently with ec_kv_apply. */
void ec_lessor_close(ec_lessor *l);

/*
 * Apply (normally reached through ec_kv_apply; exposed for the hook table):
 * LeaseGrant — ID 0 picks a free id from the request id (request id with the
 * sign bit cleared, the next free one upward: deterministic for a given log);
 * an existing ID → EC_LEASE_EXIST; TTL > EC_LEASE_MAX_TTL →
 * EC_LEASE_TTL_TOO_LARGE; TTL below the minimum is raised to it; the revision
 * does not move. LeaseRevoke — unknown → EC_LEASE_NOT_FOUND; every attached key
 * is deleted in ONE new revision (none: no new revision).
 */
int ec_lessor_apply(ec_lessor *l, st_txn *t, const Metastore__InternalRequest *req,
		    const ec_hdr *hdr, ProtobufCMessage **resp, int *st_err);

/* ec_lessor_exists - is lease @id granted (expired-but-unrevoked counts). */
bool ec_lessor_exists(ec_lessor *l, int64_t id);

/*
 * ec_lessor_renew - a keep-alive: the deadline becomes now + granted TTL and
 * *@ttl the granted TTL. Returns EC_OK, or EC_LEASE_NOT_FOUND when @id is not
 * granted or already expired (its revoke is on the way; etcd waits for that
 * revoke and then answers not-found too).
 */
int ec_lessor_renew(ec_lessor *l, int64_t id, int64_t *ttl);

/*
 * ec_lessor_time_to_live - etcd's LeaseTimeToLive: ID, TTL = remaining whole
 * seconds (truncated; 0 once expired and not yet revoked), grantedTTL, and with
 * r->keys the attached keys in key order. An unknown lease is not an error, as
 * in etcd's v3rpc layer: TTL -1 and grantedTTL 0. Header from @hdr with the
 * current revision. Returns EC_OK and *@out (ec_msg_free), EC_NOMEM or
 * EC_INTERNAL.
 */
int ec_lessor_time_to_live(ec_lessor *l, const Etcdserverpb__LeaseTimeToLiveRequest *r,
			   const ec_hdr *hdr, Etcdserverpb__LeaseTimeToLiveResponse **out);

/* ec_lessor_leases - every granted lease id, soonest deadline first (etcd's
 * order). Returns EC_OK and *@out (ec_msg_free) or EC_NOMEM. */
int ec_lessor_leases(ec_lessor *l, const ec_hdr *hdr, Etcdserverpb__LeaseLeasesResponse **out);

/*
 * ec_lessor_expired - up to @max ids of leases whose deadline has passed and
 * that were not handed out in the last EC_LEASE_REVOKE_RETRY_MS, into @ids;
 * each is marked handed out now. Returns how many.
 */
size_t ec_lessor_expired(ec_lessor *l, int64_t *ids, size_t max);

/* ec_lessor_reload - re-read every lease record after the keyspace was
 * replaced by a raft snapshot; each lease gets a full TTL. Node thread.
 * Returns 0 or an ST_* code (the old leases are kept then). */
int ec_lessor_reload(ec_lessor *l);

/* ec_lessor_promote - this member became leader: every lease's deadline
 * becomes now + its granted TTL (etcd's Promote), so a failover never
 * mass-expires leases. Any thread. */
void ec_lessor_promote(ec_lessor *l);

/* ec_lessor_next_deadline - the soonest deadline (ms on the configured clock)
 * among leases not handed out for revoking, or INT64_MAX when there is none. */
int64_t ec_lessor_next_deadline(ec_lessor *l);

/* ec_lessor_count - number of granted leases. */
size_t ec_lessor_count(ec_lessor *l);

#endif
