/*
 * ec_alarm: etcd's alarms (the v3alarm store and the appliers they switch on)
 * and the backend quota that raises NOSPACE.
 *
 * The alarm set is replicated state: only applied Alarm entries change it, so
 * every member holds the same set. It is stored as one record (st_rmeta
 * "alarms", metastore.AlarmSet) in the apply group of the entry that changed
 * it, so it travels inside raft snapshots and survives restarts.
 *
 * While an alarm is active, apply refuses requests the way etcd's appliers do
 * (ec_alarms_gate): CORRUPT (applierV3Corrupt) refuses Put, DeleteRange, Txn,
 * Compaction, LeaseGrant and LeaseRevoke with "etcdserver: corrupt cluster";
 * NOSPACE (applierV3Capped) refuses Put, a Txn with a put in either branch and
 * LeaseGrant with "etcdserver: mvcc: database space exceeded". Every member
 * applies the same entry against the same set, so all refuse alike.
 *
 * The quota (ec_quota_*) is etcd's backendQuota: a request costs
 * 256 + |key| + |value| per put (a Txn costs its larger branch), 64 for a lease
 * grant, 0 otherwise; it fits while backend size + cost < the quota.
 *
 * Threading: apply, open and reload run on the node thread (or before it
 * starts); every reader (lists, ec_alarms_any, the gate) may run on any thread.
 * A mutex guards the set; ec_alarms_any and ec_alarms_active read one atomic
 * word and take no lock.
 */
#ifndef METASTORE_EC_ALARM_H
#define METASTORE_EC_ALARM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "internal.pb-c.h"
#include "rpc.pb-c.h"
#include "storage/st_db.h"

/* etcd 3.4's quota defaults (etcdserver/quota.go). */
#define EC_QUOTA_DEFAULT_BYTES (INT64_C(2) * 1024 * 1024 * 1024) /* used when 0 is given */
#define EC_QUOTA_MAX_BYTES (INT64_C(8) * 1024 * 1024 * 1024)     /* larger: a warning */

typedef struct ec_alarms ec_alarms;

/*
 * ec_alarms_open - load the alarm set of @db (empty when none was stored).
 * @db is borrowed and must outlive the handle. Returns 0, or ST_ECORRUPT /
 * ST_EFORMAT (a record of another format) / ST_EIO / ST_ENOMEM.
 */
int ec_alarms_open(st_db *db, ec_alarms **out);
void ec_alarms_close(ec_alarms *a);

/* ec_alarms_reload - re-read the stored set (after a raft snapshot was
 * installed, or an apply group was dropped). Returns as ec_alarms_open. */
int ec_alarms_reload(ec_alarms *a);

/*
 * ec_alarms_apply - apply an Alarm entry (node thread, inside the entry's apply
 * group), as etcd's applierV3backend.Alarm:
 *   GET:        the alarms of type r->alarm (NONE: all);
 *   ACTIVATE:   (r->memberid, r->alarm) joins the set (already there: no
 *               change); the response lists it. NONE is not an alarm: nothing
 *               changes and the response is empty;
 *   DEACTIVATE: (r->memberid, r->alarm) leaves the set; the response lists it,
 *               or nothing when it was not active.
 *   another action: an empty response.
 * *@resp (an AlarmResponse, no header, as etcd's) is owned by the caller
 * (ec_msg_free). *@activated / *@deactivated (may be NULL) tell whether this
 * entry raised the first alarm of its type / cleared the last one, for the
 * caller's log lines ("alarm raised", "alarm disarmed"). Returns 0, or a
 * negative ST_* code (-ST_ENOMEM, -ST_EIO: fatal for the member). The in-memory
 * set changes at once: a caller whose group is dropped calls ec_alarms_reload.
 */
int ec_alarms_apply(ec_alarms *a, const Etcdserverpb__AlarmRequest *r,
                    Etcdserverpb__AlarmResponse **resp, bool *activated, bool *deactivated);

/*
 * ec_alarms_gate - what apply answers for @req while the current alarms are
 * active: EC_CORRUPT, EC_NO_SPACE (see the top of this file), or EC_OK to apply
 * it. Requests of other kinds (auth, members, alarms) always get EC_OK.
 */
int ec_alarms_gate(ec_alarms *a, const Metastore__InternalRequest *req);

/* ec_alarms_any - whether any alarm is active (etcd's /health turns false).
 * Lock-free; any thread. */
bool ec_alarms_any(const ec_alarms *a);

/* ec_alarms_active - whether an alarm of type @type (ETCDSERVERPB__ALARM_TYPE__*)
 * is active for any member. Lock-free; any thread. */
bool ec_alarms_active(const ec_alarms *a, int type);

/*
 * ec_alarms_list - a copy of the active alarms of type @type (NONE: all),
 * sorted by (type, member id), in a malloc'd array *@out of *@n entries (NULL
 * and 0 when none). Returns 0 or ST_ENOMEM.
 */
int ec_alarms_list(ec_alarms *a, int type, Etcdserverpb__AlarmMember **out, size_t *n);

/*
 * ec_alarm_string - Go's String() of an AlarmMember (gogoproto's compact text
 * form), which etcd puts in Status.errors: "memberID:<decimal> alarm:NOSPACE ".
 * Writes at most @cap bytes to @buf, NUL-terminated; returns @buf.
 */
char *ec_alarm_string(const Etcdserverpb__AlarmMember *m, char *buf, size_t cap);

/* ec_alarm_type_name - etcd's name of alarm @type ("NONE", "NOSPACE",
 * "CORRUPT"), or NULL for a type etcd does not know. */
const char *ec_alarm_type_name(int type);

/* ec_quota_bytes - the effective quota for --quota-backend-bytes @flag: the
 * default (2 GiB) for 0, -1 (no quota) for a negative value, else @flag. */
int64_t ec_quota_bytes(int64_t flag);

/*
 * ec_quota_cost - etcd's Cost of a request carried by @req: Put 256 + key +
 * value bytes, Txn the larger of its branches' put costs (nested txns are not
 * counted, as etcd), LeaseGrant 64, anything else 0.
 */
int64_t ec_quota_cost(const Metastore__InternalRequest *req);

/* ec_quota_fits - etcd's Available: true when @cost is 0, @quota is negative
 * (none), or @size + @cost < @quota. */
bool ec_quota_fits(int64_t quota, int64_t size, int64_t cost);

#endif
