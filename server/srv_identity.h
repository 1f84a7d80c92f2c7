/*
 * srv_identity: a member's identity as a data dir records it, and the initial
 * member set that --initial-cluster describes. Shared by main() (first start
 * of a member) and `metastore snapshot restore` (server/srv_restore.c), which
 * both turn etcd's bootstrap flags into the same member and cluster ids.
 */
#ifndef METASTORE_SRV_IDENTITY_H
#define METASTORE_SRV_IDENTITY_H

#include <stddef.h>
#include <stdint.h>

#include "internal.pb-c.h"
#include "server/srv_config.h"
#include "storage/st_db.h"

/* The local (st_meta) records of a member's identity: BE64 member id, BE64
 * cluster id, the advertised peer URLs as a comma list. */
#define SRV_META_MEMBER_ID "member_id"
#define SRV_META_CLUSTER_ID "cluster_id"
#define SRV_META_PEER_URLS "peer_urls"

/*
 * srv_identity_initial_members - the members of @initial_cluster (etcd's
 * --initial-cluster: comma separated name=url, a name may repeat for several
 * URLs) as a member set: ids derived as etcd derives them (sorted peer URLs +
 * @token), names, peer URLs; no client URLs until each member publishes them.
 * *@cid receives the cluster id. Returns NULL (with a reason in @err) on a
 * malformed list or out of memory; free with
 * metastore__member_set__free_unpacked.
 */
Metastore__MemberSet *srv_identity_initial_members(const char *initial_cluster, const char *token,
						   uint64_t *cid, char *err, size_t errlen);

/*
 * srv_identity_persist - record member id @mid, cluster id @cid and the peer
 * URLs @peer in @db; the member id last and synced, so that its presence
 * marks a complete identity (and a complete data dir). Returns 0 or an ST_*
 * code.
 */
int srv_identity_persist(st_db *db, uint64_t mid, uint64_t cid, const srv_urls *peer);

#endif
