/*
 * ec_cluster: the replicated member set and etcd's rules for changing it.
 *
 * Every member holds the same set because only applied log entries change it:
 * who is in the cluster (id, name, peer URLs, client URLs, learner flag) and
 * which ids were removed (an id is never reused, and a removed member's messages
 * are ignored). The set is stored as one record (st_rmeta "members",
 * metastore.MemberSet) written in the apply group of the entry that changed it,
 * so it always matches the applied index and travels inside raft snapshots.
 *
 * The checks (ec_cluster_check_*) are etcd's: they run on the leader before a
 * change is proposed and return the ec_err etcd sends (exact texts in
 * ec_errors.h). Raft-level validity (a quorum stays) is raft's business.
 *
 * Threading: apply and bootstrap functions run on the node thread; readers
 * (member list, lookups) on any thread; one mutex guards the in-memory copy.
 */
#ifndef METASTORE_EC_CLUSTER_H
#define METASTORE_EC_CLUSTER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "internal.pb-c.h"
#include "rpc.pb-c.h"
#include "storage/st_db.h"

/* etcd 3.4's limit on learners in a cluster (membership.maxLearners). */
#define EC_MAX_LEARNERS 1

typedef struct ec_cluster ec_cluster;

/*
 * ec_cluster_open - load the member set of @db (empty when none was stored yet:
 * a fresh data dir, a member that has not joined, or a pre-cluster data dir).
 * @db is borrowed and must outlive the handle. Returns 0, or ST_ECORRUPT /
 * ST_EIO / ST_ENOMEM.
 */
int ec_cluster_open(st_db *db, ec_cluster **out);
void ec_cluster_close(ec_cluster *c);

/* ec_cluster_count - members in the set (voters and learners). */
size_t ec_cluster_count(ec_cluster *c);

/*
 * ec_cluster_replace - make @set the member set and persist it (st_rmeta_put:
 * staged in an open apply group, else written synced). Used to bootstrap a new
 * cluster's initial members and by a joining member that fetched the set. @set
 * is copied. Returns 0 or an ST_* code.
 */
int ec_cluster_replace(ec_cluster *c, const Metastore__MemberSet *set);

/* ec_cluster_reload - re-read the stored set (after a snapshot was installed, or
 * an apply group was dropped). Outside an apply group only. Returns as
 * ec_cluster_open (also ST_EFORMAT: a record of another format). */
int ec_cluster_reload(ec_cluster *c);

/*
 * ec_cluster_copy - a deep copy of the current set, for member lists and for a
 * joining member's fetch; free with metastore__member_set__free_unpacked(, NULL).
 * Members are sorted by id, as etcd lists them. NULL when out of memory.
 */
Metastore__MemberSet *ec_cluster_copy(ec_cluster *c);

/* ec_cluster_pack - the current set packed (metastore.MemberSet) in a malloc'd
 * *@buf. Returns 0 or ST_ENOMEM. */
int ec_cluster_pack(ec_cluster *c, uint8_t **buf, size_t *len);

/*
 * ec_cluster_get - copy member @id's fields into the caller's variables: any of
 * @learner / @peer_urls (a malloc'd NULL-terminated array of malloc'd strings,
 * free with ec_cluster_strv_free) may be NULL. Returns true if @id is a member.
 */
bool ec_cluster_get(ec_cluster *c, uint64_t id, bool *learner, char ***peer_urls);
void ec_cluster_strv_free(char **v);

/* ec_cluster_is_removed - whether @id was removed from the cluster. */
bool ec_cluster_is_removed(ec_cluster *c, uint64_t id);

/* ec_cluster_find_by_peer_urls - the id of the member whose peer URLs equal
 * @urls (any order), or 0. */
uint64_t ec_cluster_find_by_peer_urls(ec_cluster *c, const char *const *urls, size_t n);

/*
 * Checks before a change is proposed (etcd's v3rpc + membership rules). Each
 * returns EC_OK or the ec_err to send:
 * add:     EC_MEMBER_BAD_URLS (not http(s)://host:port), EC_PEER_URL_EXIST,
 *          EC_TOO_MANY_LEARNERS (adding a learner beyond EC_MAX_LEARNERS).
 * remove:  EC_MEMBER_NOT_FOUND.
 * update:  EC_MEMBER_BAD_URLS, EC_MEMBER_NOT_FOUND, EC_PEER_URL_EXIST (a URL of
 *          another member).
 * promote: EC_MEMBER_NOT_FOUND, EC_MEMBER_NOT_LEARNER.
 */
int ec_cluster_check_add(ec_cluster *c, char *const *urls, size_t n, bool learner);
int ec_cluster_check_remove(ec_cluster *c, uint64_t id);
int ec_cluster_check_update(ec_cluster *c, uint64_t id, char *const *urls, size_t n);
int ec_cluster_check_promote(ec_cluster *c, uint64_t id);

/* ec_peer_urls_valid - etcd's types.NewURLs rule for member URLs: at least one,
 * each http:// or https:// with host:port and no path. */
bool ec_peer_urls_valid(char *const *urls, size_t n);

/*
 * Apply (node thread, inside the apply group of the entry; each persists the new
 * set with st_rmeta_put). The in-memory set changes at once, before the group is
 * written: a caller whose group is aborted or fails to commit must call
 * ec_cluster_reload() so readers do not see what was never written. An apply that does not fit the set (a duplicate add, an
 * unknown id) changes nothing and returns EC_MEMBER_EXIST / EC_MEMBER_NOT_FOUND:
 * every member applies the same entry the same way. Storage errors come back as
 * negative ST_* codes (-ST_EIO, ...), fatal for the member.
 * add:     @m is copied (its learner flag says voter or learner).
 * remove:  the id joins the removed list.
 * promote: the learner becomes a voter.
 * update:  new peer URLs.
 * attr:    name and client URLs a member published (etcd's publish).
 */
int ec_cluster_apply_add(ec_cluster *c, const Etcdserverpb__Member *m);
int ec_cluster_apply_remove(ec_cluster *c, uint64_t id);
int ec_cluster_apply_promote(ec_cluster *c, uint64_t id);
int ec_cluster_apply_update(ec_cluster *c, uint64_t id, char *const *urls, size_t n);
int ec_cluster_apply_attr(ec_cluster *c, const Metastore__MemberAttr *a);

#endif
