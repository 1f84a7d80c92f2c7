/*
 * srv_restore: metastore data dirs made from etcd snapshot files.
 *
 *   metastore snapshot restore FILE [--name N] [--data-dir D]
 *       [--initial-cluster C] [--initial-cluster-token T]
 *       [--initial-advertise-peer-urls U] [--skip-hash-check]
 *   metastore snapshot status FILE [-w simple|json]
 *
 * `restore` is `etcdctl snapshot restore` (same flags and defaults, except
 * that the data dir defaults to "<name>.metastore", metastore's own default):
 * it builds, in a temp dir next to D, a metastore data dir holding the file's
 * keyspace, leases, auth and alarms (etcdcompat/ec_snapshot) and a new
 * cluster's membership from the flags (ids as etcd derives them), then
 * renames it to D. `metastore --name N --initial-cluster C ... --data-dir D`
 * then serves it as the restarted member of that new cluster (the flags must
 * describe the same cluster; --initial-cluster-state is not consulted again).
 *
 * etcd's own procedure works too: a data dir made by `etcdctl snapshot
 * restore` (etcd's layout: member/snap/db, member/wal) is imported by
 * srv_restore_etcd_dir when metastore first starts on it.
 */
#ifndef METASTORE_SRV_RESTORE_H
#define METASTORE_SRV_RESTORE_H

#include "server/srv_config.h"

/* srv_restore_main - the `metastore snapshot ...` subcommands; @argv[0] is
 * "snapshot". Returns the process exit code (0 ok, 1 failure, 2 bad usage). */
int srv_restore_main(int argc, char **argv);

/*
 * srv_restore_etcd_dir - before the data dir is opened: when cfg->data_dir
 * holds etcd's layout (member/snap/db) and no metastore member yet, import
 * member/snap/db into a metastore store in the same dir, with the membership
 * --name / --initial-cluster / --initial-cluster-token describe (what
 * `etcdctl snapshot restore` was given, which is what etcd's restored member
 * starts from). etcd's files stay where they are (member/); a later start
 * finds the metastore member and does not import again. An import that
 * failed or crashed half-way leaves no metastore member, so the next start
 * discards what it wrote and imports again. Returns 0 (nothing to do, or
 * imported), -1 after logging why the start must stop.
 */
int srv_restore_etcd_dir(const srv_config *cfg);

#endif
