/*
 * srv_node: the node loop — the one thread that owns raft/ and applies the log.
 *
 * DESIGN.md's loop on raft's Ready contract: inputs (proposals from handlers,
 * messages from peers, read-index requests, membership changes, transport
 * reports) queue up under one mutex; the node thread drains everything waiting
 * and steps it into raft, ticks raft every tick_ms, then for each ready:
 * persists entries + hard state in ONE synced RocksDB batch (group commit),
 * sends the messages through the caller's transport hook, applies the committed
 * entries in one apply group through ec_kv / ec_cluster, advances, and
 * completes waiters (request id → pending call) once the group is written.
 *
 * Writes are matched to their waiting call by the request id inside the entry
 * (the proposer's decoded request is reused when the entry is its own, else the
 * entry is decoded from the log). A proposal that cannot commit (no leader, a
 * forwarded proposal lost with its leader) fails after the request timeout with
 * etcd's "request timed out". Linearizable reads go through raft's ReadIndex,
 * batched: every read that arrives while a round is being confirmed shares the
 * next one; a member that is the only voter and leader serves them at once.
 *
 * The raft storage is storage/'s log (st_log_*), the hard state, the applied
 * configuration (st_rmeta "conf") and the local snapshot record; start-up state
 * (bootstrap of a new cluster, a joining member's empty log, the upgrade of a
 * pre-cluster data dir) is prepared by srv_node_bootstrap before srv_node_start.
 */
#ifndef METASTORE_SRV_NODE_H
#define METASTORE_SRV_NODE_H

#include <stdbool.h>
#include <stdint.h>

#include "etcdcompat/ec_alarm.h"
#include "etcdcompat/ec_auth.h"
#include "etcdcompat/ec_cluster.h"
#include "etcdcompat/ec_kv.h"
#include "raft/raft.h"
#include "server/srv_defer.h"
#include "server/srv_wait.h"
#include "storage/st_db.h"

typedef struct srv_node srv_node;

typedef struct srv_node_config {
	st_db *db;              /* borrowed; outlives the node */
	ec_kv *kv;              /* borrowed */
	ec_cluster *cluster;    /* borrowed: the replicated member set */
	ec_auth *auth;          /* borrowed, may be NULL: Auth entries and the
	                         * apply-time permission checks of writes */
	ec_alarms *alarms;      /* borrowed, may be NULL: Alarm entries and the
	                         * NOSPACE / CORRUPT refusals (ec_alarms_gate) */
	uint64_t member_id;
	uint64_t cluster_id;
	uint64_t max_request_bytes; /* encoded proposal limit (etcd --max-request-bytes) */
	unsigned tick_ms;           /* raft tick; default 10 */
	unsigned heartbeat_ticks;   /* default 10 (100 ms at 10 ms ticks) */
	unsigned election_ticks;    /* default 100 */
	unsigned request_timeout_ms; /* default 5000 + 2 x election timeout, as etcd */
	bool pre_vote;               /* raft pre-vote (thesis 9.6) */
	bool strict_reconfig_check;  /* refuse removing a voter when the active voters
	                              * left would not be a quorum (etcd's default) */
	uint64_t snapshot_count;     /* compact the log every this many applied entries,
	                              * keeping min(5000, snapshot_count) behind for
	                              * slow followers; default 10000 (etcd 3.6) */
	/* Transport hook (may be NULL for a member that has no peers): send the
	 * messages of a ready; must copy what it needs and never block. */
	void (*send)(void *ctx, const raft_message *msgs, size_t n);
	/* Leadership changed: @leader is whether this member now leads (the lessor
	 * promotes its leases when it becomes leader). Node thread. May be NULL. */
	void (*on_leader)(void *ctx, bool leader);
	/* The member set changed (apply of a conf change or a member update): the
	 * transport re-reads peer URLs. Node thread. May be NULL. */
	void (*on_members)(void *ctx);
	/* A raft snapshot replaced the keyspace (a lagging or new member): reload
	 * what is cached from it (the lessor's leases). Node thread. May be NULL. */
	void (*on_restore)(void *ctx);
	/* An authenticate entry was applied: make the token for @user (auth
	 * revision @rev, entry @index, @simple the proposer's random part), a
	 * malloc'd string, or NULL on failure. Node thread. May be NULL. */
	char *(*on_authenticate)(void *ctx, const char *user, uint64_t rev, const char *simple,
	                         uint64_t index);
	void *ctx;
	/* etcd's quotaApplierV3: after a Put, Txn or LeaseGrant applied without
	 * error, true makes its caller's answer EC_NO_SPACE (the write stays
	 * applied). Node thread; called with @quota_ctx. May be NULL. */
	bool (*over_quota)(void *quota_ctx, const Metastore__InternalRequest *req);
	void *quota_ctx;
	/* Borrowed, may be NULL: the worker the waiters' completions post replies
	 * to. The node brackets the completions of each apply group with
	 * srv_defer_hold/release, so a group's replies leave as one burst from the
	 * worker (a group of one from the node thread) while the node goes on to
	 * its next log write. */
	srv_defer *replies;
} srv_node_config;

typedef struct srv_node_status {
	uint64_t term;
	uint64_t lead;      /* current leader id, 0 if none known */
	bool is_leader;
	bool is_learner;
	uint64_t last_index;
	uint64_t commit_index;
	uint64_t applied_index;
	uint64_t batches;   /* synced log writes so far (group-commit rounds) */
	uint64_t entries;   /* entries written by those rounds */
	bool removed;       /* this member was removed from the cluster */
} srv_node_status;

/* How srv_node_bootstrap prepares a data dir. */
typedef enum {
	SRV_BOOT_RESTART = 0, /* the dir already holds a cluster member: use it */
	SRV_BOOT_NEW,         /* first start of an initial member of a new cluster */
	SRV_BOOT_JOIN,        /* first start of a member added to a running cluster */
} srv_boot_mode;

/*
 * srv_node_bootstrap - prepare the raft state of a data dir before start.
 * NEW: @initial (the members of --initial-cluster, with names and peer URLs)
 *   becomes the member set and the voters; the log starts after a snapshot at
 *   index 1, term 1 (docs/raft.md, Bootstrapping).
 * JOIN: @initial is the member set fetched from the running cluster; the log is
 *   empty and the leader will send a snapshot.
 * RESTART: nothing, except that a data dir written before the cluster work (a
 *   single member with no stored configuration) is upgraded in place: it
 *   becomes a one-voter cluster of @self.
 * Returns 0, or -1 with a reason in @errbuf (storage error).
 */
int srv_node_bootstrap(st_db *db, ec_cluster *cluster, srv_boot_mode mode, uint64_t self,
                       const Metastore__MemberSet *initial, char *errbuf, size_t errlen);

/*
 * srv_node_start - create raft from storage and start the node thread (which
 * re-applies committed entries past the applied index first: kill -9 recovery).
 * Returns 0, or -1 with a one-line reason in @errbuf.
 */
int srv_node_start(const srv_node_config *cfg, srv_node **out, char *errbuf, size_t errlen);

/*
 * srv_node_propose - submit @req (its id field is set here) and return at once.
 * @fn(@ctx, err, resp) runs exactly once on the node thread after the entry is
 * durable and applied (resp: the apply response, owned by @fn), or with an error
 * (EC_TIMEOUT after the request timeout, EC_STOPPED at shutdown, EC_INTERNAL).
 * @req must stay valid until @fn runs. Returns EC_OK (fn will run), or an ec_err
 * without calling @fn: EC_REQUEST_TOO_LARGE, EC_STOPPED, EC_NOMEM.
 */
int srv_node_propose(srv_node *n, Metastore__InternalRequest *req, srv_wait_fn fn, void *ctx);

/*
 * srv_node_propose_within - srv_node_propose for a client whose own deadline is
 * @timeout_ms from now (a negative value: none, use the request timeout). A
 * proposal still waiting for a leader when the client has given up is dropped,
 * never proposed later (as etcd, whose proposals live in the client's context):
 * a write the client was told failed cannot appear after a partition heals.
 */
int srv_node_propose_within(srv_node *n, Metastore__InternalRequest *req, int64_t timeout_ms,
                            srv_wait_fn fn, void *ctx);

/*
 * srv_node_read - wait until a linearizable read may be served from local state
 * (applied index >= a read index confirmed by a quorum, raft §6.4). @fn(@ctx,
 * err) runs exactly once: EC_OK, then the caller reads; or EC_TIMEOUT /
 * EC_STOPPED. It runs at once on the calling thread when this member is the only
 * voter and leads, else later on the node thread.
 * Returns EC_OK (fn will run) or EC_NOMEM / EC_STOPPED without calling @fn.
 */
typedef void (*srv_read_fn)(void *ctx, int err);
int srv_node_read(srv_node *n, srv_read_fn fn, void *ctx);

/* srv_node_is_node_thread - whether the caller is @n's node thread (callbacks
 * use it to hand work elsewhere). */
bool srv_node_is_node_thread(srv_node *n);

/* Membership operations (etcd's MemberAdd/Remove/Promote). */
typedef enum {
	SRV_MEMBER_ADD = 1,
	SRV_MEMBER_REMOVE,
	SRV_MEMBER_PROMOTE,
	SRV_MEMBER_PROMOTE_CHECKED, /* the leader already said the learner is ready */
} srv_member_op;

/*
 * srv_node_member - run a membership change on the node thread: etcd's checks
 * (ec_cluster_check_*; promote also needs the learner caught up, which only the
 * leader knows: a follower answers EC_NOT_LEADER and the caller forwards), then
 * a raft conf change whose context carries @m (for ADD, @m->id is the new id).
 * @fn(@ctx, err, resp) runs once on the node thread: resp is a Metastore__MemberSet
 * (the set after the change was applied here; @fn owns it) or err is an ec_err.
 * @m is copied. Returns EC_OK or EC_NOMEM / EC_STOPPED without calling @fn.
 */
int srv_node_member(srv_node *n, srv_member_op op, const Etcdserverpb__Member *m,
                    srv_wait_fn fn, void *ctx);

/*
 * srv_node_learner_ready - the leader's answer to "may learner @id be promoted":
 * EC_OK when its log matches at least 90% of the leader's (etcd's rule),
 * EC_LEARNER_NOT_READY, EC_MEMBER_NOT_FOUND (not a learner here), or
 * EC_NOT_LEADER. Any thread (reads what the node thread last published).
 */
int srv_node_learner_ready(srv_node *n, uint64_t id);

/*
 * srv_node_transfer - move leadership to @target (etcd's MoveLeader): @fn(@ctx,
 * err, NULL) once the new leader is @target (EC_OK), or EC_NOT_LEADER (this
 * member does not lead), EC_BAD_LEADER_TRANSFEREE (not a voter),
 * EC_TIMEOUT_LEADER_TRANSFER. Returns EC_OK or EC_NOMEM / EC_STOPPED.
 */
int srv_node_transfer(srv_node *n, uint64_t target, srv_wait_fn fn, void *ctx);

/* srv_node_step_message - hand a message from a peer to the node (ownership of
 * @msg passes: it is freed with @free_msg once stepped). Any thread. */
void srv_node_step_message(srv_node *n, raft_message *msg, void (*free_msg)(raft_message *));

/* Transport reports, any thread: @id could not be reached; a snapshot to @id
 * finished (@failed false) or failed. */
void srv_node_report_unreachable(srv_node *n, uint64_t id);
void srv_node_report_snapshot(srv_node *n, uint64_t id, bool failed);

/* srv_node_report_removed - peer @by refused this member's Raft stream because
 * it applied this member's removal (one this member may never apply itself when
 * the leader stopped replicating to it first): the node stops as on applying
 * its own removal (srv_node_get_status().removed, srv_node_failed()). Any
 * thread. */
void srv_node_report_removed(srv_node *n, uint64_t by);

/* srv_node_hdr - the header identity (cluster, member, current term). */
ec_hdr srv_node_hdr(srv_node *n);

/* srv_node_get_status - a consistent snapshot of the node's counters. */
void srv_node_get_status(srv_node *n, srv_node_status *st);

/* srv_node_failed - non-zero once a storage failure poisoned the node, or the
 * member was removed from the cluster (the process should exit). */
int srv_node_failed(srv_node *n);

/*
 * srv_node_stop - refuse new proposals, commit what is queued when a leader is
 * at hand (a single member always is), fail what remains with EC_STOPPED, join
 * the thread and free @n. NULL is ok.
 */
void srv_node_stop(srv_node *n);

#endif
