/*
 * ec_alarm: the replicated alarm set, etcd's alarm appliers and the backend
 * quota (see ec_alarm.h).
 *
 * The set is small (one entry per member and type at most), so it is a sorted
 * array rewritten whole on every change: packed as metastore.AlarmSet, staged
 * with st_rmeta_put in the entry's apply group. A bitmask of the active types
 * is kept in an atomic word beside it for the lock-free readers (/health, the
 * apply gate).
 */
#include "etcdcompat/ec_alarm.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "etcdcompat/ec_errors.h"
#include "storage/st_mvcc.h"

#define ALARMS_RECORD "alarms"

/* etcd's kvOverhead and leaseOverhead (etcdserver/quota.go). */
#define KV_OVERHEAD 256
#define LEASE_OVERHEAD 64

typedef struct alarm_entry {
	uint64_t member;
	int type;
} alarm_entry;

struct ec_alarms {
	st_db *db;
	pthread_mutex_t mu; /* guards set/n */
	alarm_entry *set;   /* sorted by (type, member) */
	size_t n;
	atomic_uint mask;   /* bit t set: an alarm of type t is active */
};

static int cmp_entry(const void *x, const void *y)
{
	const alarm_entry *a = x, *b = y;
	if (a->type != b->type)
		return a->type < b->type ? -1 : 1;
	return a->member < b->member ? -1 : a->member > b->member;
}

static unsigned mask_of(const alarm_entry *set, size_t n)
{
	unsigned m = 0;
	for (size_t i = 0; i < n; i++)
		if (set[i].type > 0 && set[i].type < 32)
			m |= 1u << set[i].type;
	return m;
}

/* Read the stored set into a malloc'd sorted array. */
static int load(st_db *db, alarm_entry **out, size_t *n)
{
	*out = NULL;
	*n = 0;
	void *v = NULL;
	size_t len = 0;
	int rc = st_rmeta_get(db, ALARMS_RECORD, &v, &len);
	if (rc == ST_ENOTFOUND)
		return ST_OK;
	if (rc != ST_OK)
		return rc;
	Metastore__AlarmSet *s = metastore__alarm_set__unpack(NULL, len, v);
	free(v);
	if (s == NULL)
		return ST_ECORRUPT;
	if (s->format != 1) {
		metastore__alarm_set__free_unpacked(s, NULL);
		return ST_EFORMAT;
	}
	alarm_entry *set = s->n_alarms ? calloc(s->n_alarms, sizeof(*set)) : NULL;
	if (s->n_alarms && set == NULL) {
		metastore__alarm_set__free_unpacked(s, NULL);
		return ST_ENOMEM;
	}
	for (size_t i = 0; i < s->n_alarms; i++) {
		set[i].member = s->alarms[i]->memberid;
		set[i].type = (int)s->alarms[i]->alarm;
	}
	*n = s->n_alarms;
	metastore__alarm_set__free_unpacked(s, NULL);
	qsort(set, *n, sizeof(*set), cmp_entry);
	*out = set;
	return ST_OK;
}

int ec_alarms_open(st_db *db, ec_alarms **out)
{
	ec_alarms *a = calloc(1, sizeof(*a));
	if (a == NULL)
		return ST_ENOMEM;
	a->db = db;
	int rc = load(db, &a->set, &a->n);
	if (rc != ST_OK) {
		free(a);
		return rc;
	}
	pthread_mutex_init(&a->mu, NULL);
	atomic_init(&a->mask, mask_of(a->set, a->n));
	*out = a;
	return ST_OK;
}

void ec_alarms_close(ec_alarms *a)
{
	if (a == NULL)
		return;
	free(a->set);
	pthread_mutex_destroy(&a->mu);
	free(a);
}

/* Make @set (@n entries, malloc'd, sorted; ownership passes) current. */
static void install(ec_alarms *a, alarm_entry *set, size_t n)
{
	pthread_mutex_lock(&a->mu);
	alarm_entry *old = a->set;
	a->set = set;
	a->n = n;
	atomic_store(&a->mask, mask_of(set, n));
	pthread_mutex_unlock(&a->mu);
	free(old);
}

int ec_alarms_reload(ec_alarms *a)
{
	alarm_entry *set = NULL;
	size_t n = 0;
	int rc = load(a->db, &set, &n);
	if (rc == ST_OK)
		install(a, set, n);
	return rc;
}

/* Stage @set (@n entries, sorted) as the stored record. */
static int persist(ec_alarms *a, const alarm_entry *set, size_t n)
{
	Etcdserverpb__AlarmMember *ms = n ? calloc(n, sizeof(*ms)) : NULL;
	Etcdserverpb__AlarmMember **mp = n ? calloc(n, sizeof(*mp)) : NULL;
	if (n && (ms == NULL || mp == NULL)) {
		free(ms);
		free(mp);
		return ST_ENOMEM;
	}
	for (size_t i = 0; i < n; i++) {
		etcdserverpb__alarm_member__init(&ms[i]);
		ms[i].memberid = set[i].member;
		ms[i].alarm = (Etcdserverpb__AlarmType)set[i].type;
		mp[i] = &ms[i];
	}
	Metastore__AlarmSet s = METASTORE__ALARM_SET__INIT;
	s.format = 1;
	s.alarms = mp;
	s.n_alarms = n;
	size_t len = metastore__alarm_set__get_packed_size(&s);
	uint8_t *buf = malloc(len ? len : 1);
	int rc = ST_ENOMEM;
	if (buf != NULL) {
		metastore__alarm_set__pack(&s, buf);
		rc = st_rmeta_put(a->db, ALARMS_RECORD, buf, len);
	}
	free(buf);
	free(ms);
	free(mp);
	return rc;
}

/* Count of entries of @type in the current set (node thread: no lock needed,
 * it is the only writer; taken anyway for clarity of the invariant). */
static size_t count_type(ec_alarms *a, int type)
{
	size_t c = 0;
	pthread_mutex_lock(&a->mu);
	for (size_t i = 0; i < a->n; i++)
		c += a->set[i].type == type;
	pthread_mutex_unlock(&a->mu);
	return c;
}

/* Append (@member, @type) to @resp's alarm list. Returns 0 or ST_ENOMEM. */
static int resp_add(Etcdserverpb__AlarmResponse *resp, uint64_t member, int type)
{
	Etcdserverpb__AlarmMember **v =
		realloc(resp->alarms, (resp->n_alarms + 1) * sizeof(*resp->alarms));
	if (v == NULL)
		return ST_ENOMEM;
	resp->alarms = v;
	Etcdserverpb__AlarmMember *m = malloc(sizeof(*m));
	if (m == NULL)
		return ST_ENOMEM;
	etcdserverpb__alarm_member__init(m);
	m->memberid = member;
	m->alarm = (Etcdserverpb__AlarmType)type;
	resp->alarms[resp->n_alarms++] = m;
	return ST_OK;
}

/* A copy of the set with (@member, @type) added (@add) or removed; *@changed
 * tells whether it differs. */
static int next_set(ec_alarms *a, uint64_t member, int type, bool add, alarm_entry **out,
		    size_t *n, bool *changed)
{
	pthread_mutex_lock(&a->mu);
	size_t cap = a->n + 1;
	alarm_entry *set = malloc(cap * sizeof(*set));
	if (set == NULL) {
		pthread_mutex_unlock(&a->mu);
		return ST_ENOMEM;
	}
	size_t k = 0;
	bool found = false;
	for (size_t i = 0; i < a->n; i++) {
		if (a->set[i].member == member && a->set[i].type == type) {
			found = true;
			if (!add)
				continue;
		}
		set[k++] = a->set[i];
	}
	pthread_mutex_unlock(&a->mu);
	if (add && !found)
		set[k++] = (alarm_entry){.member = member, .type = type};
	qsort(set, k, sizeof(*set), cmp_entry);
	*changed = add ? !found : found;
	*out = set;
	*n = k;
	return ST_OK;
}

int ec_alarms_apply(ec_alarms *a, const Etcdserverpb__AlarmRequest *r,
                    Etcdserverpb__AlarmResponse **resp, bool *activated, bool *deactivated)
{
	if (activated)
		*activated = false;
	if (deactivated)
		*deactivated = false;
	Etcdserverpb__AlarmResponse *out = malloc(sizeof(*out));
	if (out == NULL)
		return -ST_ENOMEM;
	etcdserverpb__alarm_response__init(out);
	*resp = out;
	int type = (int)r->alarm;
	int rc = ST_OK;
	switch (r->action) {
	case ETCDSERVERPB__ALARM_REQUEST__ALARM_ACTION__GET: {
		Etcdserverpb__AlarmMember *list = NULL;
		size_t n = 0;
		rc = ec_alarms_list(a, type, &list, &n);
		for (size_t i = 0; i < n && rc == ST_OK; i++)
			rc = resp_add(out, list[i].memberid, (int)list[i].alarm);
		free(list);
		break;
	}
	case ETCDSERVERPB__ALARM_REQUEST__ALARM_ACTION__ACTIVATE:
	case ETCDSERVERPB__ALARM_REQUEST__ALARM_ACTION__DEACTIVATE: {
		bool add = r->action == ETCDSERVERPB__ALARM_REQUEST__ALARM_ACTION__ACTIVATE;
		if (add && type == ETCDSERVERPB__ALARM_TYPE__NONE)
			break; /* etcd stores it but switches nothing; NONE is not an alarm here */
		size_t before = count_type(a, type);
		alarm_entry *set = NULL;
		size_t n = 0;
		bool changed = false;
		rc = next_set(a, r->memberid, type, add, &set, &n, &changed);
		if (rc != ST_OK)
			break;
		if (!changed) {
			free(set);
			/* etcd: Activate returns the existing member; Deactivate nil */
			if (add)
				rc = resp_add(out, r->memberid, type);
			break;
		}
		rc = persist(a, set, n);
		if (rc != ST_OK) {
			free(set);
			break;
		}
		install(a, set, n);
		size_t after = count_type(a, type);
		if (add && activated)
			*activated = before == 0 && after == 1;
		if (!add && deactivated)
			*deactivated = before > 0 && after == 0;
		rc = resp_add(out, r->memberid, type);
		break;
	}
	default:
		break;
	}
	if (rc != ST_OK) {
		etcdserverpb__alarm_response__free_unpacked(out, NULL);
		*resp = NULL;
		return -rc;
	}
	return 0;
}

int ec_alarms_gate(ec_alarms *a, const Metastore__InternalRequest *req)
{
	unsigned m = atomic_load(&a->mask);
	if (m == 0)
		return EC_OK;
	switch (req->request_case) {
	case METASTORE__INTERNAL_REQUEST__REQUEST_PUT:
	case METASTORE__INTERNAL_REQUEST__REQUEST_DELETE_RANGE:
	case METASTORE__INTERNAL_REQUEST__REQUEST_TXN:
	case METASTORE__INTERNAL_REQUEST__REQUEST_COMPACTION:
	case METASTORE__INTERNAL_REQUEST__REQUEST_LEASE_GRANT:
	case METASTORE__INTERNAL_REQUEST__REQUEST_LEASE_REVOKE:
		break;
	default:
		return EC_OK;
	}
	if (m & (1u << ETCDSERVERPB__ALARM_TYPE__CORRUPT))
		return EC_CORRUPT;
	if (m & (1u << ETCDSERVERPB__ALARM_TYPE__NOSPACE)) {
		switch (req->request_case) {
		case METASTORE__INTERNAL_REQUEST__REQUEST_PUT:
		case METASTORE__INTERNAL_REQUEST__REQUEST_LEASE_GRANT:
			return EC_NO_SPACE;
		case METASTORE__INTERNAL_REQUEST__REQUEST_TXN:
			return ec_quota_cost(req) > 0 ? EC_NO_SPACE : EC_OK;
		default:
			return EC_OK;
		}
	}
	return EC_OK;
}

bool ec_alarms_any(const ec_alarms *a)
{
	return a != NULL && atomic_load(&((ec_alarms *)a)->mask) != 0;
}

bool ec_alarms_active(const ec_alarms *a, int type)
{
	if (a == NULL || type <= 0 || type >= 32)
		return false;
	return (atomic_load(&((ec_alarms *)a)->mask) & (1u << type)) != 0;
}

int ec_alarms_list(ec_alarms *a, int type, Etcdserverpb__AlarmMember **out, size_t *n)
{
	*out = NULL;
	*n = 0;
	pthread_mutex_lock(&a->mu);
	Etcdserverpb__AlarmMember *v = a->n ? calloc(a->n, sizeof(*v)) : NULL;
	if (a->n && v == NULL) {
		pthread_mutex_unlock(&a->mu);
		return ST_ENOMEM;
	}
	size_t k = 0;
	for (size_t i = 0; i < a->n; i++) {
		if (type != ETCDSERVERPB__ALARM_TYPE__NONE && a->set[i].type != type)
			continue;
		etcdserverpb__alarm_member__init(&v[k]);
		v[k].memberid = a->set[i].member;
		v[k].alarm = (Etcdserverpb__AlarmType)a->set[i].type;
		k++;
	}
	pthread_mutex_unlock(&a->mu);
	if (k == 0) {
		free(v);
		v = NULL;
	}
	*out = v;
	*n = k;
	return ST_OK;
}

const char *ec_alarm_type_name(int type)
{
	switch (type) {
	case ETCDSERVERPB__ALARM_TYPE__NONE:
		return "NONE";
	case ETCDSERVERPB__ALARM_TYPE__NOSPACE:
		return "NOSPACE";
	case ETCDSERVERPB__ALARM_TYPE__CORRUPT:
		return "CORRUPT";
	default:
		return NULL;
	}
}

char *ec_alarm_string(const Etcdserverpb__AlarmMember *m, char *buf, size_t cap)
{
	if (cap == 0)
		return buf;
	/* gogoproto's compact text omits zero fields and ends each with a space */
	char member[48] = "", alarm[32] = "";
	if (m->memberid != 0)
		snprintf(member, sizeof member, "memberID:%" PRIu64 " ", m->memberid);
	const char *name = ec_alarm_type_name((int)m->alarm);
	if (m->alarm != 0) {
		if (name)
			snprintf(alarm, sizeof alarm, "alarm:%s ", name);
		else
			snprintf(alarm, sizeof alarm, "alarm:%d ", (int)m->alarm);
	}
	snprintf(buf, cap, "%s%s", member, alarm);
	return buf;
}

int64_t ec_quota_bytes(int64_t flag)
{
	if (flag < 0)
		return -1;
	return flag == 0 ? EC_QUOTA_DEFAULT_BYTES : flag;
}

static int64_t cost_put(const Etcdserverpb__PutRequest *p)
{
	return KV_OVERHEAD + (int64_t)p->key.len + (int64_t)p->value.len;
}

static int64_t cost_branch(Etcdserverpb__RequestOp *const *ops, size_t n)
{
	int64_t c = 0;
	for (size_t i = 0; i < n; i++)
		if (ops[i]->request_case == ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_PUT)
			c += cost_put(ops[i]->request_put);
	return c;
}

int64_t ec_quota_cost(const Metastore__InternalRequest *req)
{
	switch (req->request_case) {
	case METASTORE__INTERNAL_REQUEST__REQUEST_PUT:
		return cost_put(req->put);
	case METASTORE__INTERNAL_REQUEST__REQUEST_TXN: {
		int64_t s = cost_branch(req->txn->success, req->txn->n_success);
		int64_t f = cost_branch(req->txn->failure, req->txn->n_failure);
		return f > s ? f : s;
	}
	case METASTORE__INTERNAL_REQUEST__REQUEST_LEASE_GRANT:
		return LEASE_OVERHEAD;
	default:
		return 0;
	}
}

bool ec_quota_fits(int64_t quota, int64_t size, int64_t cost)
{
	if (cost == 0 || quota < 0)
		return true;
	return size + cost < quota;
}
