/*
 * srv_compactor: --auto-compaction-mode / --auto-compaction-retention, as etcd
 * 3.4's v3compactor.
 *
 * periodic (retention R, a duration; a bare number is hours): every R/10
 * (R capped at 1 h for the interval) the current revision is recorded; once R
 * has passed since the last compaction (the first time: since start), the
 * revision recorded about R ago is compacted; afterwards one compaction per
 * min(R, 1 h).
 * revision (retention N): every 5 minutes, compact at current revision - N
 * unless that is <= 0 or the revision compacted last time.
 *
 * Only the leader proposes (the compactor runs on every member and is paused
 * on followers, as etcd's Pause/Resume on leadership); the Compaction is an
 * ordinary log entry (srv_maint_compact), so every member compacts alike. The
 * log lines are etcd's ("starting auto periodic compaction", "completed auto
 * revision compaction", ...).
 *
 * One thread, started and stopped by main.
 */
#ifndef METASTORE_SRV_COMPACTOR_H
#define METASTORE_SRV_COMPACTOR_H

#include "server/srv_app.h"

typedef struct srv_compactor srv_compactor;

/*
 * srv_compactor_start - start the compactor @app->cfg asks for (*@out NULL
 * when the retention is 0: off). Needs app->node. The revision mode's
 * interval can be shortened for tests with the environment variable
 * METASTORE_TEST_COMPACTOR_INTERVAL_MS. Returns 0, or -1 (out of memory or
 * threads).
 */
int srv_compactor_start(srv_app *app, srv_compactor **out);

/* srv_compactor_stop - stop the thread (an in-flight compaction is waited for
 * at most ~100 ms, then abandoned), free @c. Call before the node stops.
 * NULL is ok. */
void srv_compactor_stop(srv_compactor *c);

#endif
