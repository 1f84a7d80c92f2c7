/*
 * ec_kv: etcd's KV semantics over the MVCC keyspace. Validates requests before
 * they are proposed, applies committed internal requests (Put, DeleteRange, Txn,
 * Compaction) deterministically, and serves Range. Network-free and
 * deterministic: two members applying the same log produce the same keyspace and
 * the same responses.
 *
 * Response messages are protobuf-c messages whose every pointer field is a
 * separate malloc allocation, so ec_msg_free() (protobuf_c_message_free_unpacked
 * with the default allocator) releases them. Headers are filled completely:
 * revision from the keyspace, cluster_id/member_id/raft_term from ec_hdr.
 */
#ifndef METASTORE_EC_KV_H
#define METASTORE_EC_KV_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "internal.pb-c.h"
#include "rpc.pb-c.h"
#include "storage/st_db.h"
#include "storage/st_mvcc.h"

typedef struct ec_kv ec_kv;

/* Identity placed into every response header. */
typedef struct ec_hdr {
	uint64_t cluster_id;
	uint64_t member_id;
	uint64_t raft_term;
} ec_hdr;

typedef struct ec_kv_config {
	int64_t max_txn_ops; /* etcd --max-txn-ops, default 128 */
} ec_kv_config;

/*
 * ec_kv_open - bind the KV state machine to an open database (reads the applied
 * index, current and compacted revision; O(1), no scan). @db stays owned by the
 * caller and must outlive the ec_kv. Returns 0, or an ST_* code on storage error.
 */
int ec_kv_open(st_db *db, const ec_kv_config *cfg, ec_kv **out);
void ec_kv_close(ec_kv *kv);

/* Last applied log index; current revision; compacted revision (0 if never). */
uint64_t ec_kv_applied_index(ec_kv *kv);
int64_t ec_kv_revision(ec_kv *kv);
int64_t ec_kv_compact_revision(ec_kv *kv);

/*
 * Stateless checks done before proposing, as etcd's v3rpc layer does them
 * (empty key, ignore_value with a value, ignore_lease with a lease, too many txn
 * ops, duplicate keys in a txn branch, ...). Return EC_OK or the ec_err to send.
 */
int ec_check_range(const Etcdserverpb__RangeRequest *r);
int ec_check_put(const Etcdserverpb__PutRequest *r);
int ec_check_delete(const Etcdserverpb__DeleteRangeRequest *r);
int ec_check_txn(const Etcdserverpb__TxnRequest *r, const ec_kv_config *cfg);
int ec_check_compact(const Etcdserverpb__CompactionRequest *r);

/*
 * ec_kv_apply - apply one committed internal request that sits at log @index.
 * State change and applied index = @index are written in one atomic batch; an
 * @index at or below the applied index is skipped (replay after a crash), with
 * *@resp NULL and *@err EC_OK. A request that fails in etcd's apply (compacted or
 * future revision, unknown lease, ...) changes nothing but the applied index and
 * sets *@err. On success *@resp is the response (PutResponse, DeleteRangeResponse,
 * TxnResponse or CompactionResponse), owned by the caller (ec_msg_free).
 * Returns 0, or an ST_* storage error (fatal for the member: state is unknown).
 */
int ec_kv_apply(ec_kv *kv, uint64_t index, const Metastore__InternalRequest *req, const ec_hdr *hdr,
		ProtobufCMessage **resp, int *err);

/*
 * ec_kv_range - serve a Range against the current applied state (or r->revision),
 * from a consistent snapshot; safe to call from any thread concurrently with
 * ec_kv_apply. Returns EC_OK and sets *@out (caller frees with ec_msg_free), or
 * EC_COMPACTED / EC_FUTURE_REV / EC_INTERNAL.
 */
int ec_kv_range(ec_kv *kv, const Etcdserverpb__RangeRequest *r, const ec_hdr *hdr,
		Etcdserverpb__RangeResponse **out);

/*
 * ec_kv_stats - storage calls made since ec_kv_open, counted as etcd 3.4's mvcc
 * metrics count them (etcd_mvcc_range_total, _put_total, _delete_total,
 * _txn_total): each Range, compare and prev-version read is one range, each
 * Put one put, each DeleteRange one delete, failed requests included; a
 * request that made more than one call also counts one txn. Keys deleted by a
 * lease revoke are not counted (etcd counts one delete per key there).
 */
typedef struct ec_kv_stats {
	uint64_t ranges, puts, deletes, txns;
} ec_kv_stats;

/* ec_kv_stats_get - the counters now; any thread (relaxed reads). */
void ec_kv_stats_get(ec_kv *kv, ec_kv_stats *out);

/* ec_kv_count_keys - the number of live keys at the applied revision, into
 * *@n, without counting as a range (the keys_total gauge). Any thread. Returns
 * EC_OK, EC_NOMEM or EC_INTERNAL. */
int ec_kv_count_keys(ec_kv *kv, int64_t *n);

/*
 * ec_hdr_new - a malloc'ed response header with revision @rev and, when @h is
 * not NULL, its cluster_id/member_id/raft_term (NULL: only the revision, as
 * etcd's sub-response headers inside a Txn). Freed with the message that holds
 * it by ec_msg_free. Returns NULL when out of memory.
 */
Etcdserverpb__ResponseHeader *ec_hdr_new(int64_t rev, const ec_hdr *h);

/* ec_msg_free - free a response built by this module (NULL is ok). */
void ec_msg_free(void *msg);

/*
 * ec_txn_is_readonly - etcd's isTxnReadonly: every op of both branches is a
 * Range (a nested Txn counts as a write). Such a txn is served by
 * ec_kv_txn_read without a log entry, as etcd does.
 */
bool ec_txn_is_readonly(const Etcdserverpb__TxnRequest *r);

/*
 * ec_kv_txn_read - evaluate a read-only Txn (ec_txn_is_readonly) against one
 * consistent snapshot; any thread. Returns EC_OK and *@out (ec_msg_free),
 * EC_BAD_REQUEST if the txn writes, EC_COMPACTED / EC_FUTURE_REV from a Range op,
 * or EC_INTERNAL.
 */
int ec_kv_txn_read(ec_kv *kv, const Etcdserverpb__TxnRequest *r, const ec_hdr *hdr,
		   Etcdserverpb__TxnResponse **out);

/*
 * ec_kv_set_applied - record that log @index was applied without a KV request
 * (no-op or conf-change entries), keeping replay idempotent. An @index at or below
 * the applied index is ignored. Returns 0 or an ST_* storage error.
 */
int ec_kv_set_applied(ec_kv *kv, uint64_t index);

/*
 * The lessor hook. Until a lessor is attached every non-zero lease is unknown
 * (Put with a lease fails with EC_LEASE_NOT_FOUND, as etcd without that lease).
 * @exists answers "is lease @id granted"; @attach/@detach (may be NULL) are told,
 * on the node thread during apply, when a key gains or loses a lease.
 */
typedef struct ec_lease_hooks {
	void *arg;
	bool (*exists)(void *arg, int64_t id);
	void (*attach)(void *arg, int64_t id, const uint8_t *key, size_t klen);
	void (*detach)(void *arg, int64_t id, const uint8_t *key, size_t klen);
	/*
	 * @apply (may be NULL: lease requests then fail with EC_UNIMPLEMENTED) runs
	 * a LeaseGrant / LeaseRevoke request inside ec_kv_apply's write txn @t, which
	 * ec_kv_apply commits (with the applied index) when it returns EC_OK and
	 * aborts otherwise. Sets *@resp on success; on a storage error sets *@st_err
	 * to the ST_* code. Returns an ec_err.
	 */
	int (*apply)(void *arg, st_txn *t, const Metastore__InternalRequest *req, const ec_hdr *hdr,
		     ProtobufCMessage **resp, int *st_err);
} ec_lease_hooks;

/* ec_kv_set_lease_hooks - install (or with NULL remove) the lessor hooks. Call
 * before applying; not thread-safe against a concurrent ec_kv_apply. */
void ec_kv_set_lease_hooks(ec_kv *kv, const ec_lease_hooks *hooks);

/*
 * ec_kv_set_v2_hook - who applies v2 store writes (InternalRequest.v2):
 * @fn(@arg, req, resp) runs inside ec_kv_apply, within the open apply group,
 * sets *@resp (a V2Response) and returns an ST_* code; ec_kv_apply then records
 * the applied index. Without a hook such entries answer EC_UNIMPLEMENTED.
 * Call before applying (node thread). ec_v2_apply_hook (ec_v2store.h) is one.
 */
typedef int (*ec_kv_v2_apply_fn)(void *arg, const Metastore__V2Request *req,
                                 ProtobufCMessage **resp);
void ec_kv_set_v2_hook(ec_kv *kv, ec_kv_v2_apply_fn fn, void *arg);

#endif
