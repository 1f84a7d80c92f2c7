/*
 * raft.h - metastore's Raft consensus core: the whole public interface and its manual.
 *
 * The library is a pure, deterministic state machine. It has no clock, no threads,
 * no sockets and no disk: the caller (server/'s node loop, or test/raft's simulator)
 * feeds it events with raft_step(), collects the work it asks for with raft_get_ready(),
 * performs that work in the documented order, and acknowledges it with
 * raft_advance(). docs/raft.md states the durability contract in full; in short:
 *
 *     loop:
 *         raft_step(r, ev)            for every event waiting (messages, ticks, ...)
 *         if raft_has_ready(r):
 *             raft_get_ready(r, &rd)
 *             1. persist rd.snapshot, rd.entries and rd.hard_state (one synced batch)
 *             2. send rd.messages
 *             3. apply rd.snapshot (if any), then rd.committed in order; call
 *                raft_apply_conf_change() for every conf-change entry applied
 *             4. raft_advance(r, &rd)
 *
 * Time is measured in ticks (raft_time): the caller steps RAFT_EV_TICK at a fixed
 * interval; election and heartbeat timeouts are whole numbers of ticks. Randomness
 * (election timeouts) comes from a seeded generator in raft_config, so a given
 * sequence of events always produces the same outputs.
 *
 * Threading: a raft handle, and the reference counts of the blobs it hands out, must
 * be used from one thread at a time (the node loop thread).
 *
 * Errors are positive integers (RAFT_OK is 0) named by raft_strerror(). A handle that
 * hits an error it cannot recover from (a storage failure or a corrupt log) becomes
 * poisoned: every later call returns RAFT_EPOISONED and the caller must rebuild the
 * member from its persisted state.
 */
#ifndef METASTORE_RAFT_H
#define METASTORE_RAFT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ------------------------------------------------------------------ types -- */

typedef uint64_t raft_id;    /* member id; 0 means "none" and is never a member */
typedef uint64_t raft_term;  /* election term, starts at 0 */
typedef uint64_t raft_index; /* log index, the first real entry is index 1 */
typedef uint64_t raft_time;  /* logical time, counted in ticks */

/* Maximum number of members (voters + learners, across a joint configuration). */
#define RAFT_MAX_NODES 64

/* Maximum number of single changes in one raft_confchange. */
#define RAFT_MAX_CONF_CHANGES 16

/* ----------------------------------------------------------------- errors -- */

#define RAFT_ERRORS(X)                                                                 \
	X(RAFT_OK, "ok")                                                                   \
	X(RAFT_ENOMEM, "out of memory")                                                    \
	X(RAFT_EINVAL, "invalid argument")                                                 \
	X(RAFT_ECOMPACTED, "requested index is unavailable due to compaction")             \
	X(RAFT_EUNAVAILABLE, "requested entry at index is unavailable")                    \
	X(RAFT_ESNAPTEMPUNAVAILABLE, "snapshot is temporarily unavailable")                \
	X(RAFT_ESTORAGE, "storage callback failed")                                        \
	X(RAFT_ENOLEADER, "no leader: proposal or request cannot be forwarded")           \
	X(RAFT_ENOTLEADER, "this member is not the leader")                                \
	X(RAFT_EPROPOSALDROPPED, "proposal dropped")                                       \
	X(RAFT_ETOOLARGE, "proposal exceeds the maximum entry size")                       \
	X(RAFT_EUNCOMMITTEDFULL, "too many uncommitted bytes: proposal dropped")           \
	X(RAFT_ETRANSFERRING, "leadership transfer in progress: proposal dropped")         \
	X(RAFT_ECONFPENDING, "a configuration change is already pending")                  \
	X(RAFT_ECONFINVALID, "configuration change is invalid")                            \
	X(RAFT_ECONFLEADER, "the leader cannot remove or demote itself: transfer first")   \
	X(RAFT_ENOTMEMBER, "this member is not in the configuration")                      \
	X(RAFT_EBUSY, "a ready is outstanding: call raft_advance first")                   \
	X(RAFT_ECORRUPT, "malformed encoding")                                             \
	X(RAFT_EFORMAT, "unsupported encoding version")                                    \
	X(RAFT_ECONFLICT, "log conflicts with a committed entry")                          \
	X(RAFT_EPOISONED, "raft handle is poisoned by an earlier fatal error")

#define RAFT_ENUM_ROW_(name, msg) name,
enum raft_error { RAFT_ERRORS(RAFT_ENUM_ROW_) RAFT__ERROR_COUNT };
#undef RAFT_ENUM_ROW_

/*
 * raft_strerror - static, human-readable text for a raft error code.
 * Unknown codes return "unknown raft error". Never NULL.
 */
const char *raft_strerror(int err);

/* ------------------------------------------------------------- allocation -- */

/*
 * Every allocation the library makes goes through this pair of hooks, so a test can
 * count allocations or inject out-of-memory faults. realloc(ud, NULL, n) allocates;
 * realloc(ud, p, n) resizes (n > 0 always); free(ud, NULL) must be a no-op.
 */
typedef struct raft_allocator {
	void *(*realloc)(void *ud, void *ptr, size_t size);
	void (*free)(void *ud, void *ptr);
	void *ud;
} raft_allocator;

/*
 * raft_set_allocator - install allocation hooks for the whole process, or restore
 * libc's with NULL. Call it only while no raft handle or blob exists.
 */
void raft_set_allocator(const raft_allocator *a);

/* --------------------------------------------------------------- blobs -- */

/*
 * raft_blob - an immutable, reference-counted byte buffer: the payload of an entry
 * and the data of a snapshot. Every holder (the log, a ready, a storage, the caller)
 * owns one reference. Counts are not atomic (see Threading above).
 * @refs: reference count, managed by raft_blob_ref/unref.
 * @len:  number of bytes in @data.
 */
typedef struct raft_blob {
	size_t refs;
	size_t len;
	unsigned char data[];
} raft_blob;

/*
 * raft_blob_new - allocate a blob of @len bytes (contents uninitialised) with one
 * reference owned by the caller. Returns NULL on out-of-memory.
 */
raft_blob *raft_blob_new(size_t len);

/* raft_blob_copy - raft_blob_new(@len) filled with a copy of @p. NULL on OOM. */
raft_blob *raft_blob_copy(const void *p, size_t len);

/* raft_blob_ref - take another reference to @b (NULL is ignored); returns @b. */
raft_blob *raft_blob_ref(raft_blob *b);

/* raft_blob_unref - drop one reference; the blob is freed at zero. NULL is ok. */
void raft_blob_unref(raft_blob *b);

/* -------------------------------------------------------- log entries -- */

typedef enum raft_entry_type {
	RAFT_ENTRY_NORMAL = 0,      /* opaque caller data (or none: a leader's no-op) */
	RAFT_ENTRY_CONF_CHANGE = 1, /* data is a raft_confchange_encode() encoding */
} raft_entry_type;

/*
 * raft_entry - one log record.
 * @term, @index: position in the log.
 * @type:         see raft_entry_type.
 * @data:         payload, or NULL for an empty entry. Whoever holds the entry struct
 *                holds one reference to @data (rules per structure below).
 */
typedef struct raft_entry {
	raft_term term;
	raft_index index;
	raft_entry_type type;
	raft_blob *data;
} raft_entry;

/* raft_entry_size - the bytes an entry counts for in size limits (its data length). */
static inline size_t raft_entry_size(const raft_entry *e)
{
	return e->data ? e->data->len : 0;
}

/* ----------------------------------------------------- configurations -- */

/*
 * raft_conf_state - a membership configuration, as persisted with snapshots and
 * returned by raft_apply_conf_change(). In a joint configuration @voters_outgoing is
 * non-empty and decisions need a majority of @voters AND of @voters_outgoing.
 * @learners_next are members that become learners when the joint state is left
 * (they are voters in the outgoing configuration meanwhile).
 * @auto_leave: the leader proposes leaving the joint state by itself once it is
 * applied.
 */
typedef struct raft_conf_state {
	raft_id voters[RAFT_MAX_NODES];
	size_t n_voters;
	raft_id voters_outgoing[RAFT_MAX_NODES];
	size_t n_voters_outgoing;
	raft_id learners[RAFT_MAX_NODES];
	size_t n_learners;
	raft_id learners_next[RAFT_MAX_NODES];
	size_t n_learners_next;
	bool auto_leave;
} raft_conf_state;

typedef enum raft_confchange_type {
	RAFT_CC_ADD_NODE = 0,    /* add a voter, or promote a learner to voter */
	RAFT_CC_REMOVE_NODE = 1, /* remove a voter or learner */
	RAFT_CC_ADD_LEARNER = 2, /* add a learner, or demote a voter (joint only) */
} raft_confchange_type;

typedef enum raft_cc_transition {
	/* One voter changed: apply directly. More: joint consensus, left automatically. */
	RAFT_CC_TRANSITION_AUTO = 0,
	/* Always use joint consensus, left automatically by the leader. */
	RAFT_CC_TRANSITION_JOINT_IMPLICIT = 1,
	/* Always use joint consensus; the caller proposes the leave (an empty change). */
	RAFT_CC_TRANSITION_JOINT_EXPLICIT = 2,
} raft_cc_transition;

typedef struct raft_confchange_single {
	raft_confchange_type type;
	raft_id node_id;
} raft_confchange_single;

/*
 * raft_confchange - a membership change proposal. Zero @n_changes means "leave the
 * current joint configuration". @context is opaque caller bytes carried through the
 * log (e.g. the new member's URLs); after raft_confchange_decode() it points into
 * the decoded buffer and lives as long as that buffer.
 */
typedef struct raft_confchange {
	raft_cc_transition transition;
	raft_confchange_single changes[RAFT_MAX_CONF_CHANGES];
	size_t n_changes;
	const void *context;
	size_t context_len;
} raft_confchange;

/*
 * raft_confchange_encode - write @cc in the versioned binary format (docs/raft.md).
 * @buf may be NULL when @cap is 0, to learn the size. *@len always receives the size
 * needed. Returns 0, RAFT_EINVAL (bad type/transition/count), or RAFT_ENOMEM when
 * @cap is too small (nothing useful is written).
 */
int raft_confchange_encode(const raft_confchange *cc, void *buf, size_t cap, size_t *len);

/*
 * raft_confchange_decode - parse @len bytes at @buf into *@out (whose @context then
 * points into @buf). Returns 0, RAFT_EFORMAT (unknown version byte) or RAFT_ECORRUPT
 * (truncated, trailing bytes, bad type/transition, too many changes, node id 0).
 */
int raft_confchange_decode(const void *buf, size_t len, raft_confchange *out);

/* ------------------------------------------------------------ snapshot -- */

/*
 * raft_snapshot - a point-in-time image of the state machine.
 * @index, @term: the last log entry the image includes.
 * @conf:         the configuration as of @index.
 * @data:         caller-defined image bytes (may be NULL); one reference is held by
 *                whoever holds the struct.
 */
typedef struct raft_snapshot {
	raft_index index;
	raft_term term;
	raft_conf_state conf;
	raft_blob *data;
} raft_snapshot;

/* ------------------------------------------------------------- storage -- */

/*
 * raft_storage - the caller's durable log, read-only to raft. All callbacks receive
 * @ud. The storage reflects exactly what the caller has persisted from readies:
 * entries replace any stored entries at or after their first index; a persisted
 * snapshot replaces the whole log, after which first_index is snapshot.index + 1 and
 * term(snapshot.index) is snapshot.term. Compaction (the caller's choice, behind a
 * snapshot it made) discards entries below some index but must keep the term of the
 * entry just before the first remaining one.
 *
 * initial_state: the persisted hard state and configuration (a fresh member returns
 *     zeros and an empty configuration). Errors: any non-zero → RAFT_ESTORAGE.
 * first_index:   index of the first entry available (snapshot.index + 1, or 1).
 * last_index:    index of the last entry (snapshot.index when there is none).
 * term:          term of entry @i for first_index-1 <= i <= last_index; returns
 *                RAFT_ECOMPACTED below that range and RAFT_EUNAVAILABLE above.
 * entries:       copy entries [@lo, @hi) into @out (capacity @cap >= 1): stop after
 *                @cap entries or before the first entry that would make the total
 *                raft_entry_size exceed @max_bytes, but always return at least one.
 *                Each returned entry carries a new blob reference that raft takes
 *                over. Sets *@n. Errors: RAFT_ECOMPACTED if @lo < first_index,
 *                RAFT_EUNAVAILABLE if @hi > last_index + 1.
 * snapshot:      the most recent snapshot, with a new reference to its data that raft
 *                takes over, or RAFT_ESNAPTEMPUNAVAILABLE while one is being made.
 * Any other error code makes raft return RAFT_ESTORAGE and poison the handle.
 */
typedef struct raft_storage {
	int (*initial_state)(void *ud, raft_term *term, raft_id *vote, raft_index *commit,
	                     raft_conf_state *conf);
	int (*first_index)(void *ud, raft_index *out);
	int (*last_index)(void *ud, raft_index *out);
	int (*term)(void *ud, raft_index i, raft_term *out);
	int (*entries)(void *ud, raft_index lo, raft_index hi, size_t max_bytes, raft_entry *out,
	               size_t cap, size_t *n);
	int (*snapshot)(void *ud, raft_snapshot *out);
	void *ud;
} raft_storage;

/* ------------------------------------------------------------ messages -- */

#define RAFT_MESSAGE_TYPES(X)                                                          \
	X(RAFT_MSG_APPEND)          /* leader → follower: entries after index/log_term */ \
	X(RAFT_MSG_APPEND_RESP)     /* follower → leader: index accepted or reject */     \
	X(RAFT_MSG_VOTE)            /* candidate → voter: vote for me in term */          \
	X(RAFT_MSG_VOTE_RESP)       /* voter → candidate: reject or grant */              \
	X(RAFT_MSG_PREVOTE)         /* pre-candidate → voter: would you vote in term? */  \
	X(RAFT_MSG_PREVOTE_RESP)    /* voter → pre-candidate */                           \
	X(RAFT_MSG_HEARTBEAT)       /* leader → all: commit + read round context */       \
	X(RAFT_MSG_HEARTBEAT_RESP)  /* echo of the heartbeat context */                   \
	X(RAFT_MSG_SNAPSHOT)        /* leader → follower: install snapshot */             \
	X(RAFT_MSG_PROPOSE)         /* follower → leader: forwarded proposal entries */   \
	X(RAFT_MSG_READ_INDEX)      /* follower → leader: read request, context = id */   \
	X(RAFT_MSG_READ_INDEX_RESP) /* leader → follower: index to read at */             \
	X(RAFT_MSG_TRANSFER_LEADER) /* follower → leader: forwarded transfer request */   \
	X(RAFT_MSG_TIMEOUT_NOW)     /* leader → transferee: campaign now */

#define RAFT_MSG_ENUM_ROW_(name) name,
typedef enum raft_msg_type { RAFT_MESSAGE_TYPES(RAFT_MSG_ENUM_ROW_) RAFT__MSG_COUNT } raft_msg_type;
#undef RAFT_MSG_ENUM_ROW_

/* raft_msg_type_name - static name of a message type ("RAFT_MSG_APPEND"), or "?". */
const char *raft_msg_type_name(int type);

/*
 * raft_message - one message between members. The server translates it to and from
 * its wire format field by field; every field must travel.
 * @type:        raft_msg_type.
 * @from, @to:   sender and recipient ids.
 * @term:        sender's term (0 only for messages that never leave a member).
 * @log_term:    APPEND: term of entry @index. VOTE/PREVOTE: term of the candidate's
 *               last entry. APPEND_RESP with @reject: term of entry @reject_hint.
 * @index:       APPEND: index preceding @entries. APPEND_RESP: last index accepted,
 *               or the rejected APPEND's @index. VOTE/PREVOTE: candidate's last index.
 *               READ_INDEX_RESP: the read index.
 * @commit:      APPEND/HEARTBEAT: leader's commit index (for heartbeats, capped at
 *               what the follower is known to have).
 * @entries, @n_entries: APPEND and PROPOSE payload.
 * @snapshot:    SNAPSHOT payload (NULL otherwise).
 * @reject:      APPEND_RESP/VOTE_RESP/PREVOTE_RESP: refusal.
 * @reject_hint: APPEND_RESP with @reject: the follower's guess of the last index the
 *               logs may agree on (fast back-off).
 * @context:     HEARTBEAT(_RESP): read round number. READ_INDEX(_RESP): the caller's
 *               request id. VOTE/PREVOTE: 1 when caused by leadership transfer.
 *
 * Ownership: messages in a ready (and the entries, snapshot and blob references they
 * point to) belong to the ready and stay valid until raft_advance(); the caller that
 * needs them longer takes its own blob references. A message passed to raft_step()
 * is only borrowed for the call; raft takes its own references to anything it keeps.
 */
typedef struct raft_message {
	raft_msg_type type;
	raft_id from;
	raft_id to;
	raft_term term;
	raft_term log_term;
	raft_index index;
	raft_index commit;
	raft_entry *entries;
	size_t n_entries;
	raft_snapshot *snapshot;
	bool reject;
	raft_index reject_hint;
	uint64_t context;
} raft_message;

/* --------------------------------------------------------------- events -- */

typedef enum raft_event_type {
	RAFT_EV_RECEIVE,            /* a message from a peer */
	RAFT_EV_TICK,               /* @tick.n ticks of logical time passed */
	RAFT_EV_PROPOSE,            /* append normal entries with the given payloads */
	RAFT_EV_PROPOSE_CONF_CHANGE,/* append one conf-change entry */
	RAFT_EV_READ_INDEX,         /* linearizable read request with id @read_index.ctx */
	RAFT_EV_TRANSFER,           /* move leadership to @transfer.target */
	RAFT_EV_CAMPAIGN,           /* start an election now (tests, bootstrapping) */
	RAFT_EV_UNREACHABLE,        /* the transport failed to reach @peer.id */
	RAFT_EV_SNAPSHOT_STATUS,    /* a snapshot send to @peer.id finished or failed */
} raft_event_type;

typedef struct raft_event {
	raft_event_type type;
	union {
		struct {
			const raft_message *msg;
		} receive;
		struct {
			unsigned n;
		} tick;
		struct {
			raft_blob *const *data; /* @n payloads; each may be NULL (empty entry) */
			size_t n;
		} propose;
		struct {
			const raft_confchange *cc;
		} conf_change;
		struct {
			uint64_t ctx;
		} read_index;
		struct {
			raft_id target;
		} transfer;
		struct {
			raft_id id;
			bool failed; /* SNAPSHOT_STATUS only */
		} peer;
	};
} raft_event;

/* ---------------------------------------------------------------- ready -- */

typedef enum raft_role {
	RAFT_FOLLOWER = 0,
	RAFT_PRECANDIDATE = 1,
	RAFT_CANDIDATE = 2,
	RAFT_LEADER = 3,
} raft_role;

/* raft_hard_state - what must be durable before messages are sent. */
typedef struct raft_hard_state {
	raft_term term;
	raft_id vote;
	raft_index commit;
} raft_hard_state;

/* raft_soft_state - volatile state worth reporting: who leads, and our role. */
typedef struct raft_soft_state {
	raft_id lead;
	raft_role role;
} raft_soft_state;

/* raft_read_state - a read request (@ctx) may be served once applied >= @index. */
typedef struct raft_read_state {
	raft_index index;
	uint64_t ctx;
} raft_read_state;

/*
 * raft_ready - one batch of work. Everything it points to is owned by the handle and
 * valid until raft_advance(r, rd).
 * @has_soft_state/@soft:   leader or role changed since the last ready.
 * @has_hard_state/@hard:   must be persisted (with @entries, same synced batch).
 * @entries:                to persist, in order; they replace stored entries from
 *                          entries[0].index on.
 * @snapshot:               to persist, then apply to the state machine (NULL if none).
 * @messages:               to send after persisting.
 * @committed:              to apply in order, after @snapshot.
 * @read_states:            reads that may be served once applied >= index.
 * @must_sync:              the persist step must fsync (a term/vote change or
 *                          entries are present).
 */
typedef struct raft_ready {
	bool has_soft_state;
	raft_soft_state soft;
	bool has_hard_state;
	raft_hard_state hard;
	raft_entry *entries;
	size_t n_entries;
	raft_snapshot *snapshot;
	raft_message *messages;
	size_t n_messages;
	raft_entry *committed;
	size_t n_committed;
	raft_read_state *read_states;
	size_t n_read_states;
	bool must_sync;
} raft_ready;

/* --------------------------------------------------------------- handle -- */

typedef struct raft raft;

/*
 * raft_config - parameters of raft_create(). Zero fields take the default noted.
 * @id:                 this member's id (required, non-zero).
 * @election_tick:      election timeout in ticks (default 10); a follower campaigns
 *                      after a random timeout in [election_tick, 2*election_tick).
 * @heartbeat_tick:     leader heartbeat interval in ticks (default 1); must be less
 *                      than @election_tick.
 * @applied:            last index the caller's state machine has applied (restart);
 *                      committed entries after it are handed out again.
 * @max_msg_bytes:      byte budget of entries per APPEND (default 1 MiB; at least one
 *                      entry is always sent).
 * @max_inflight:       APPEND messages in flight per follower in replicate state
 *                      (default 256).
 * @max_uncommitted_bytes: leader refuses proposals beyond this many bytes of
 *                      uncommitted entries (default 0 = unlimited).
 * @max_entry_bytes:    largest single proposal payload (default 0 = unlimited).
 * @max_committed_bytes: byte budget of committed entries per ready (default 64 MiB).
 * @pre_vote:           run a pre-vote round before disrupting the term (thesis 9.6).
 * @check_quorum:       a leader steps down when it did not hear from a quorum within
 *                      an election timeout; members ignore votes while in a lease.
 * @disable_forwarding: followers refuse proposals instead of forwarding them.
 * @seed:               seed of the election-timeout generator (mix in @id yourself or
 *                      not: the library mixes it).
 * @storage:            the caller's storage; copied, must outlive the handle.
 */
typedef struct raft_config {
	raft_id id;
	unsigned election_tick;
	unsigned heartbeat_tick;
	raft_index applied;
	size_t max_msg_bytes;
	size_t max_inflight;
	size_t max_uncommitted_bytes;
	size_t max_entry_bytes;
	size_t max_committed_bytes;
	bool pre_vote;
	bool check_quorum;
	bool disable_forwarding;
	uint64_t seed;
	raft_storage storage;
} raft_config;

/*
 * raft_create - build a member from @cfg and what its storage holds (restart) or an
 * empty storage (a member joining an existing cluster, which learns the cluster from
 * a snapshot). A new cluster is bootstrapped by giving every initial member a storage
 * whose snapshot (index 1, term 1, data optional) carries the initial configuration
 * (docs/raft.md, "Bootstrapping").
 * Returns 0 and sets *@out (free with raft_destroy), or RAFT_EINVAL (bad config, or a
 * hard state whose commit is outside the log), RAFT_ESTORAGE, RAFT_ENOMEM.
 */
int raft_create(const raft_config *cfg, raft **out);

/* raft_destroy - free @r and drop every reference it holds (including an outstanding
 * ready's). NULL is ok. */
void raft_destroy(raft *r);

/*
 * raft_step - feed one event.
 * RECEIVE: @msg is borrowed for the call. Stale, unknown or misaddressed messages are
 *     dropped and return 0 (the network may deliver anything).
 * TICK: advances logical time; may start an election or send heartbeats.
 * PROPOSE: appends @n entries when leader, forwards them when follower. raft takes
 *     its own reference to each payload; the caller keeps its own. Errors:
 *     RAFT_EINVAL (n == 0), RAFT_ETOOLARGE, RAFT_EUNCOMMITTEDFULL, RAFT_ETRANSFERRING,
 *     RAFT_ENOLEADER (no leader known, or forwarding disabled), RAFT_ENOTMEMBER (a
 *     leader removed from the configuration). A forwarded proposal can still be lost.
 * PROPOSE_CONF_CHANGE: as PROPOSE for one encoded @cc; additionally RAFT_ECONFPENDING
 *     (a conf change is not applied yet) and RAFT_ECONFINVALID (e.g. entering a joint
 *     state while joint, or leaving when not). Validation of members happens when
 *     applied (raft_apply_conf_change), except that RAFT_ECONFLEADER refuses a change
 *     that would leave the leader out of the incoming voters (transfer leadership
 *     first, as etcd's server does).
 * READ_INDEX: a read state with @ctx appears in a later ready once leadership is
 *     confirmed; requests arriving while a heartbeat round is in flight share the next
 *     round. Errors: RAFT_ENOLEADER. Requests are lost on leader change: retry on
 *     timeout.
 * TRANSFER: leader only (followers forward it); ignored when @target is not a voter.
 * CAMPAIGN: start an election (ignored by leaders and non-voters).
 * UNREACHABLE / SNAPSHOT_STATUS: transport reports for a peer.
 * Always: RAFT_ENOMEM (state stays consistent; some messages may be dropped),
 * RAFT_ESTORAGE and RAFT_ECONFLICT (both poison the handle), RAFT_EPOISONED.
 * Stepping while a ready is outstanding is allowed.
 */
int raft_step(raft *r, const raft_event *ev);

/* raft_has_ready - whether raft_get_ready() would hand out any work. */
bool raft_has_ready(const raft *r);

/*
 * raft_get_ready - hand out the pending work in *@rd (see raft_ready). Returns 0,
 * RAFT_EBUSY (a ready is outstanding), RAFT_ENOMEM (nothing handed out; retry),
 * RAFT_ESTORAGE, RAFT_EPOISONED.
 */
int raft_get_ready(raft *r, raft_ready *rd);

/*
 * raft_advance - acknowledge that everything in @rd was persisted, sent and applied;
 * releases @rd's memory and references. @rd must be the outstanding ready.
 * Returns 0, RAFT_EINVAL (no ready outstanding), RAFT_EPOISONED.
 */
int raft_advance(raft *r, raft_ready *rd);

/*
 * raft_apply_conf_change - the caller applies a committed conf-change entry it has
 * decoded: raft switches to the new configuration. Call it while applying the entry
 * (before raft_advance). *@out (may be NULL) receives the resulting configuration,
 * which the caller persists with its applied state. Returns 0 or RAFT_ECONFINVALID
 * (the change is refused, the configuration is unchanged; every member refuses the
 * same change the same way, so the caller simply treats the entry as a no-op),
 * RAFT_EPOISONED.
 */
int raft_apply_conf_change(raft *r, const raft_confchange *cc, raft_conf_state *out);

/* raft_status - a snapshot of a member's state for observers and tests. */
typedef struct raft_status {
	raft_id id;
	raft_role role;
	raft_id lead;
	raft_term term;
	raft_id vote;
	raft_index commit;
	raft_index applied;
	raft_index first_index;
	raft_index last_index;
	raft_id lead_transferee;
	raft_conf_state conf;
} raft_status;

/* raft_get_status - fill *@st. Never fails. */
void raft_get_status(const raft *r, raft_status *st);

/*
 * raft_progress - what the leader knows of member @id's log: *@match, the highest
 * index known replicated there, and *@active, whether it was heard from within
 * the last election timeout. Meaningful on the leader only (membership checks:
 * is a learner caught up, would enough members stay active). Returns 0, or
 * RAFT_ENOTMEMBER (@id is not in the configuration) or RAFT_ENOTLEADER.
 */
int raft_progress(const raft *r, raft_id id, raft_index *match, bool *active);

/*
 * raft_log_term - term of entry @i as raft sees it (including entries not yet
 * persisted). Returns 0, RAFT_ECOMPACTED or RAFT_EUNAVAILABLE; sets *@out on 0.
 */
int raft_log_term(raft *r, raft_index i, raft_term *out);

#endif
