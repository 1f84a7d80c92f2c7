/*
 * srv_node: the node loop — the one thread that owns the log and applies it.
 *
 * Handlers propose internal requests; the node thread drains every proposal
 * waiting, appends them to the log with the hard state in ONE synced RocksDB
 * batch (group commit: a hundred concurrent puts share one fdatasync), applies
 * the committed entries in order through ec_kv, and completes each waiting call
 * through the wait table by request id. This is the single-member form of the
 * write path; the cluster issue puts raft/ between "drain" and "persist" without
 * changing the handler-facing API.
 *
 * Start-up replays log entries past the applied index (kill -9 recovery), then
 * begins a new term with a no-op entry, as a Raft leader does on election.
 */
#ifndef METASTORE_SRV_NODE_H
#define METASTORE_SRV_NODE_H

#include <stdint.h>

#include "etcdcompat/ec_kv.h"
#include "server/srv_wait.h"
#include "storage/st_db.h"

typedef struct srv_node srv_node;

typedef struct srv_node_config {
	st_db *db;            /* borrowed; outlives the node */
	ec_kv *kv;            /* borrowed; outlives the node */
	uint64_t member_id;
	uint64_t cluster_id;
	uint64_t max_request_bytes; /* encoded proposal limit (etcd --max-request-bytes) */
} srv_node_config;

typedef struct srv_node_status {
	uint64_t term;
	uint64_t last_index;
	uint64_t commit_index;
	uint64_t applied_index;
	uint64_t batches;  /* synced log writes so far (group-commit rounds) */
	uint64_t entries;  /* entries written by those rounds */
} srv_node_status;

/*
 * srv_node_start - replay the log past the applied index, start a new term and the
 * node thread. @errbuf receives a one-line reason on failure.
 * Returns 0, or -1 (storage error during replay or term start, or no memory).
 */
int srv_node_start(const srv_node_config *cfg, srv_node **out, char *errbuf, size_t errlen);

/*
 * srv_node_propose - submit @req (its id field is set here) and return at once.
 * @fn(@ctx, err, resp) runs exactly once on the node thread after the entry is
 * durable and applied (resp: the apply response, owned by @fn), or with an error.
 * @req must stay valid until @fn runs (the leader applies it without decoding).
 * Returns EC_OK (fn will run), or an ec_err without calling @fn:
 * EC_REQUEST_TOO_LARGE, EC_STOPPED, EC_NOMEM.
 */
int srv_node_propose(srv_node *n, Metastore__InternalRequest *req, srv_wait_fn fn, void *ctx);

/* srv_node_hdr - the header identity (cluster, member, current term). */
ec_hdr srv_node_hdr(srv_node *n);

/* srv_node_get_status - a consistent snapshot of the node's raft-ish counters. */
void srv_node_get_status(srv_node *n, srv_node_status *st);

/* srv_node_failed - non-zero once a storage failure poisoned the node (the
 * process should exit; nothing unacknowledged was acknowledged). */
int srv_node_failed(srv_node *n);

/*
 * srv_node_stop - refuse new proposals, finish every proposal already queued
 * (persist, apply, complete), join the thread and free @n. NULL is ok.
 */
void srv_node_stop(srv_node *n);

#endif
