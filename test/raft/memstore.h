/*
 * memstore.h - an in-memory raft_storage for the raft tests, simulator and benchmark.
 *
 * It is a complete implementation of the storage contract in raft.h (not a stub):
 * what a node "persisted" lives here and survives a simulated crash, while
 * everything in the raft handle is lost. Layout follows the contract: ents[0] is a
 * dummy entry at snapshot index holding the snapshot term, real entries follow.
 */
#ifndef METASTORE_TEST_RAFT_MEMSTORE_H
#define METASTORE_TEST_RAFT_MEMSTORE_H

#include "raft/raft.h"

typedef struct memstore {
	raft_term term;
	raft_id vote;
	raft_index commit;
	raft_snapshot snap;      /* latest snapshot (conf as of snap.index); data ref */
	raft_conf_state conf;    /* configuration reported by initial_state */
	raft_entry *ents;        /* ents[0] = dummy {snap.index, snap.term} */
	size_t n;
	size_t cap;
	int fail_next;           /* test hook: next callback returns this error */
} memstore;

void ms_init(memstore *ms);
void ms_free(memstore *ms);
/* persist entries: replace everything from e[0].index on. */
void ms_append(memstore *ms, const raft_entry *e, size_t n);
void ms_set_hard_state(memstore *ms, const raft_hard_state *hs);
/* install a snapshot received from a leader: the whole log is replaced. */
void ms_apply_snapshot(memstore *ms, const raft_snapshot *s);
/* make a snapshot at @index (must be <= last) with @conf and @data, then drop
 * entries before @keep_from (keep_from <= index + 1). */
void ms_snapshot_and_compact(memstore *ms, raft_index index, const raft_conf_state *conf,
                             raft_blob *data, raft_index keep_from);
raft_index ms_first(const memstore *ms);
raft_index ms_last(const memstore *ms);
/* a raft_storage bound to @ms */
raft_storage ms_storage(memstore *ms);
/* bootstrap: a snapshot at index 1, term 1 holding @voters. */
void ms_bootstrap(memstore *ms, const raft_id *voters, size_t n);

#endif
