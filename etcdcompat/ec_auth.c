/*
 * ec_auth: etcd's auth store and permission checks (see ec_auth.h).
 *
 * The in-memory store is an immutable snapshot: the unpacked
 * metastore.AuthState plus, for every user, the union of its permission
 * intervals merged into sorted disjoint intervals, one list for READ and one for
 * WRITE (etcd's rangePermCache, rebuilt on every change as etcd does). Apply
 * never edits a snapshot in place: it builds the next state from shallow copies
 * (a "draft"), packs it — the packed bytes are what st_rmeta_put stages anyway
 * — unpacks those bytes into a new snapshot and swaps it in under the write
 * lock, so there is one encoding and no hand-written deep copy. Readers hold
 * the read lock only while they look; bcrypt runs outside it.
 *
 * Interval endpoints follow etcd's adt.BytesAffineComparable: an empty byte
 * string is greater than every other one (+infinity), so a from-key range end
 * ("\0") is stored as the empty end, and a single key k is [k, k+"\0").
 */
#include "etcdcompat/ec_auth.h"

#include <crypt.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "etcdcompat/ec_errors.h"
#include "storage/st_mvcc.h"

#define AUTH_RECORD "auth"
#define AUTH_FORMAT 1
#define ROOT        "root"

/* Longest stored password hash check_password copies (bcrypt's are 60). */
#define HASH_MAX 128

/* ---- interval endpoints ------------------------------------------------ */

/* A key-range endpoint: bytes p[0..n), followed by one 0x00 byte when z (the
 * end of a single-key range). n == 0 && !z is the empty string: +infinity. */
typedef struct ep {
	const uint8_t *p;
	size_t n;
	bool z;
} ep;

static ep ep_of(const uint8_t *p, size_t n)
{
	ep e = {p, n, false};
	return e;
}

/* etcd's BytesAffineComparable.Compare: bytewise, the empty string last. */
static int ep_cmp(const ep *a, const ep *b)
{
	size_t la = a->n + a->z, lb = b->n + b->z;
	if (la == 0)
		return lb == 0 ? 0 : 1;
	if (lb == 0)
		return -1;
	size_t m = a->n < b->n ? a->n : b->n;
	int c = m ? memcmp(a->p, b->p, m) : 0;
	if (c != 0)
		return c < 0 ? -1 : 1;
	/* Past the common real bytes: the rest is at most one virtual 0x00 on
	 * the shorter side, compared with the longer side's next byte. */
	size_t lim = la < lb ? la : lb;
	for (size_t i = m; i < lim; i++) {
		uint8_t ca = i < a->n ? a->p[i] : 0;
		uint8_t cb = i < b->n ? b->p[i] : 0;
		if (ca != cb)
			return ca < cb ? -1 : 1;
	}
	return la < lb ? -1 : la > lb;
}

typedef struct ivl {
	ep b, e; /* [b, e) */
} ivl;

typedef struct ivls {
	ivl *v; /* sorted by b, disjoint, not adjacent */
	size_t n;
} ivls;

/* A user's merged permissions, parallel to the snapshot's users. */
typedef struct uperm {
	ivls rd, wr;
} uperm;

typedef struct snap {
	Metastore__AuthState *st;
	uperm *perms;
} snap;

struct ec_auth {
	st_db *db;
	ec_auth_hooks hooks;
	pthread_rwlock_t lock; /* guards cur (replaced whole, never mutated) */
	snap *cur;
	/* cur's enabled flag, readable without the lock: with auth off (the
	 * common case) every check returns at once, taking no lock. */
	atomic_bool enabled;
};

/* ---- names ------------------------------------------------------------- */

static int bin_cmp(const uint8_t *a, size_t na, const uint8_t *b, size_t nb)
{
	size_t m = na < nb ? na : nb;
	int c = m ? memcmp(a, b, m) : 0;
	if (c != 0)
		return c;
	return na < nb ? -1 : na > nb;
}

static bool bin_eq(ProtobufCBinaryData a, ProtobufCBinaryData b)
{
	return a.len == b.len && (a.len == 0 || memcmp(a.data, b.data, a.len) == 0);
}

/* Index of the user named @name in @st (users sorted by name), or -1; *@pos
 * (may be NULL) gets where it would be inserted. */
static long find_user(const Metastore__AuthState *st, const char *name, size_t *pos)
{
	size_t lo = 0, hi = st->n_users, n = strlen(name);
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		const ProtobufCBinaryData *u = &st->users[mid]->name;
		int c = bin_cmp(u->data, u->len, (const uint8_t *)name, n);
		if (c == 0)
			return (long)mid;
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	if (pos)
		*pos = lo;
	return -1;
}

static long find_role(const Metastore__AuthState *st, const char *name, size_t *pos)
{
	size_t lo = 0, hi = st->n_roles, n = strlen(name);
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		const ProtobufCBinaryData *r = &st->roles[mid]->name;
		int c = bin_cmp(r->data, r->len, (const uint8_t *)name, n);
		if (c == 0)
			return (long)mid;
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	if (pos)
		*pos = lo;
	return -1;
}

static bool user_has_role(const Authpb__User *u, const char *role)
{
	for (size_t i = 0; i < u->n_roles; i++)
		if (strcmp(u->roles[i], role) == 0)
			return true;
	return false;
}

static bool user_nopw(const Authpb__User *u)
{
	return u->options != NULL && u->options->no_password;
}

/* ---- snapshots ---------------------------------------------------------- */

static int cmp_ivl(const void *x, const void *y)
{
	const ivl *a = x, *b = y;
	int c = ep_cmp(&a->b, &b->b);
	return c ? c : ep_cmp(&a->e, &b->e);
}

/* Sort @l and merge overlapping or adjacent intervals in place. */
static void merge(ivls *l)
{
	if (l->n < 2)
		return;
	qsort(l->v, l->n, sizeof(*l->v), cmp_ivl);
	size_t out = 0;
	for (size_t i = 1; i < l->n; i++) {
		ivl *cur = &l->v[out];
		if (ep_cmp(&l->v[i].b, &cur->e) <= 0) {
			if (ep_cmp(&l->v[i].e, &cur->e) > 0)
				cur->e = l->v[i].e;
		} else {
			l->v[++out] = l->v[i];
		}
	}
	l->n = out + 1;
}

/*
 * The interval of permission @p as etcd's getMergedPerms builds it, or false
 * when it can never cover a key: an empty key begins at +infinity, and an end
 * at or before the begin is empty (etcd's interval tree never finds either as
 * covering a well-formed range).
 */
static bool perm_ivl(const Authpb__Permission *p, ivl *out)
{
	if (p->key.len == 0)
		return false;
	out->b = ep_of(p->key.data, p->key.len);
	if (p->range_end.len == 0) {
		out->e = out->b;
		out->e.z = true;
	} else if (p->range_end.len == 1 && p->range_end.data[0] == 0) {
		out->e = ep_of(NULL, 0);
	} else {
		out->e = ep_of(p->range_end.data, p->range_end.len);
	}
	return ep_cmp(&out->b, &out->e) < 0;
}

static void perms_free(uperm *pm, size_t n)
{
	if (pm == NULL)
		return;
	for (size_t i = 0; i < n; i++) {
		free(pm[i].rd.v);
		free(pm[i].wr.v);
	}
	free(pm);
}

/* Build @u's merged READ and WRITE intervals from its roles in @st. */
static int build_user(const Metastore__AuthState *st, const Authpb__User *u, uperm *out)
{
	size_t total = 0;
	for (size_t i = 0; i < u->n_roles; i++) {
		long r = find_role(st, u->roles[i], NULL);
		if (r >= 0)
			total += st->roles[r]->n_keypermission;
	}
	if (total == 0)
		return ST_OK;
	out->rd.v = malloc(total * sizeof(ivl));
	out->wr.v = malloc(total * sizeof(ivl));
	if (out->rd.v == NULL || out->wr.v == NULL)
		return ST_ENOMEM;
	for (size_t i = 0; i < u->n_roles; i++) {
		long r = find_role(st, u->roles[i], NULL);
		if (r < 0)
			continue;
		const Authpb__Role *role = st->roles[r];
		for (size_t j = 0; j < role->n_keypermission; j++) {
			const Authpb__Permission *p = role->keypermission[j];
			ivl v;
			if (!perm_ivl(p, &v))
				continue;
			switch (p->permtype) {
			case EC_PERM_READ:
				out->rd.v[out->rd.n++] = v;
				break;
			case EC_PERM_WRITE:
				out->wr.v[out->wr.n++] = v;
				break;
			case EC_PERM_READWRITE:
				out->rd.v[out->rd.n++] = v;
				out->wr.v[out->wr.n++] = v;
				break;
			default:
				break; /* an unknown type grants nothing, as in etcd */
			}
		}
	}
	merge(&out->rd);
	merge(&out->wr);
	return ST_OK;
}

static void snap_free(snap *s)
{
	if (s == NULL)
		return;
	if (s->st != NULL) {
		perms_free(s->perms, s->st->n_users);
		metastore__auth_state__free_unpacked(s->st, NULL);
	}
	free(s);
}

static int cmp_user(const void *x, const void *y)
{
	const Authpb__User *a = *(Authpb__User *const *)x, *b = *(Authpb__User *const *)y;
	return bin_cmp(a->name.data, a->name.len, b->name.data, b->name.len);
}

static int cmp_role(const void *x, const void *y)
{
	const Authpb__Role *a = *(Authpb__Role *const *)x, *b = *(Authpb__Role *const *)y;
	return bin_cmp(a->name.data, a->name.len, b->name.data, b->name.len);
}

static int cmp_str(const void *x, const void *y)
{
	return strcmp(*(char *const *)x, *(char *const *)y);
}

/* Stable insertion sort of a role's permissions by key (what Go's sort does
 * for the small slices roles have; qsort is not stable). */
static void sort_perms(Authpb__Permission **p, size_t n)
{
	for (size_t i = 1; i < n; i++) {
		Authpb__Permission *x = p[i];
		size_t j = i;
		while (j > 0 && bin_cmp(x->key.data, x->key.len, p[j - 1]->key.data,
		                        p[j - 1]->key.len) < 0) {
			p[j] = p[j - 1];
			j--;
		}
		p[j] = x;
	}
}

/* Make a loaded state keep the invariants apply relies on (sorted users,
 * roles, user roles, permissions); a no-op for states this file wrote. */
static void normalize(Metastore__AuthState *st)
{
	if (st->n_users > 1)
		qsort(st->users, st->n_users, sizeof(*st->users), cmp_user);
	if (st->n_roles > 1)
		qsort(st->roles, st->n_roles, sizeof(*st->roles), cmp_role);
	for (size_t i = 0; i < st->n_users; i++)
		if (st->users[i]->n_roles > 1)
			qsort(st->users[i]->roles, st->users[i]->n_roles, sizeof(char *), cmp_str);
	for (size_t i = 0; i < st->n_roles; i++)
		sort_perms(st->roles[i]->keypermission, st->roles[i]->n_keypermission);
}

/* A snapshot that takes ownership of @st. Returns NULL when out of memory (@st
 * is freed then). */
static snap *snap_make(Metastore__AuthState *st)
{
	snap *s = calloc(1, sizeof(*s));
	if (s == NULL) {
		metastore__auth_state__free_unpacked(st, NULL);
		return NULL;
	}
	s->st = st;
	s->perms = calloc(st->n_users ? st->n_users : 1, sizeof(uperm));
	if (s->perms == NULL) {
		snap_free(s);
		return NULL;
	}
	for (size_t i = 0; i < st->n_users; i++) {
		if (build_user(st, st->users[i], &s->perms[i]) != ST_OK) {
			snap_free(s);
			return NULL;
		}
	}
	return s;
}

/* A snapshot from packed metastore.AuthState bytes. *@rc: ST_OK, ST_ECORRUPT,
 * ST_EFORMAT or ST_ENOMEM. */
static snap *snap_unpack(const uint8_t *buf, size_t len, int *rc)
{
	Metastore__AuthState *st = metastore__auth_state__unpack(NULL, len, buf);
	if (st == NULL) {
		*rc = ST_ECORRUPT;
		return NULL;
	}
	if (st->format != AUTH_FORMAT) {
		metastore__auth_state__free_unpacked(st, NULL);
		*rc = ST_EFORMAT;
		return NULL;
	}
	normalize(st);
	snap *s = snap_make(st);
	*rc = s ? ST_OK : ST_ENOMEM;
	return s;
}

/* The store of a data dir that recorded none: empty, disabled, revision 1
 * (etcd's NewAuthStore commits revision 1 on a fresh backend). */
static snap *snap_empty(int *rc)
{
	Metastore__AuthState init = METASTORE__AUTH_STATE__INIT;
	init.format = AUTH_FORMAT;
	init.revision = 1;
	uint8_t buf[32];
	size_t n = metastore__auth_state__pack(&init, buf);
	return snap_unpack(buf, n, rc);
}

static int load(st_db *db, snap **out)
{
	void *v = NULL;
	size_t len = 0;
	int rc = st_rmeta_get(db, AUTH_RECORD, &v, &len);
	if (rc == ST_ENOTFOUND) {
		*out = snap_empty(&rc);
		return rc;
	}
	if (rc != ST_OK)
		return rc;
	*out = snap_unpack(v, len, &rc);
	free(v);
	return rc;
}

/* ---- open / close / reload ---------------------------------------------- */

int ec_auth_open(st_db *db, const ec_auth_hooks *hooks, ec_auth **out)
{
	ec_auth *a = calloc(1, sizeof(*a));
	if (a == NULL)
		return ST_ENOMEM;
	a->db = db;
	if (hooks)
		a->hooks = *hooks;
	int rc = load(db, &a->cur);
	if (rc != ST_OK) {
		free(a);
		return rc;
	}
	atomic_init(&a->enabled, a->cur->st->enabled);
	pthread_rwlock_init(&a->lock, NULL);
	*out = a;
	return ST_OK;
}

void ec_auth_close(ec_auth *a)
{
	if (a == NULL)
		return;
	snap_free(a->cur);
	pthread_rwlock_destroy(&a->lock);
	free(a);
}

/* Swap in @next (node thread: the only writer); returns the old snapshot for
 * the caller to free once it is done comparing. */
static snap *swap_in(ec_auth *a, snap *next)
{
	pthread_rwlock_wrlock(&a->lock);
	snap *old = a->cur;
	a->cur = next;
	atomic_store(&a->enabled, next->st->enabled);
	pthread_rwlock_unlock(&a->lock);
	return old;
}

/* After a reload: tell the hooks what may have changed between @old and @cur
 * (a user deleted or with a new password hash loses its tokens). */
static void reload_hooks(ec_auth *a, const snap *old, const snap *cur)
{
	const ec_auth_hooks *h = &a->hooks;
	const Metastore__AuthState *o = old->st, *n = cur->st;
	if (h->user_gone) {
		for (size_t i = 0; i < o->n_users; i++) {
			const Authpb__User *u = o->users[i];
			char *name = strndup((const char *)u->name.data, u->name.len);
			if (name == NULL)
				continue;
			long j = find_user(n, name, NULL);
			if (j < 0 || !bin_eq(n->users[j]->password, u->password))
				h->user_gone(h->arg, name);
			free(name);
		}
	}
	if (o->enabled && !n->enabled && h->disabled)
		h->disabled(h->arg);
	if ((o->revision != n->revision || o->enabled != n->enabled) && h->changed)
		h->changed(h->arg);
}

int ec_auth_reload(ec_auth *a)
{
	snap *next = NULL;
	int rc = load(a->db, &next);
	if (rc != ST_OK)
		return rc;
	snap *old = swap_in(a, next);
	reload_hooks(a, old, next);
	snap_free(old);
	return ST_OK;
}

bool ec_auth_enabled(ec_auth *a)
{
	return a != NULL && atomic_load(&a->enabled);
}

uint64_t ec_auth_revision(ec_auth *a)
{
	pthread_rwlock_rdlock(&a->lock);
	uint64_t r = a->cur->st->revision;
	pthread_rwlock_unlock(&a->lock);
	return r;
}

bool ec_auth_is_request(Metastore__InternalRequest__RequestCase c)
{
	return c >= METASTORE__INTERNAL_REQUEST__REQUEST_AUTH_ENABLE &&
	       c <= METASTORE__INTERNAL_REQUEST__REQUEST_ROLE_REVOKE_PERMISSION;
}

/* ---- permission checks (on a snapshot, no locking) ---------------------- */

/* Copy @ai's user name into @name (EC_AUTH_NAME_MAX + 1 bytes); "" for no
 * @ai. A name that fills the whole array without a NUL is cut short to
 * EC_AUTH_NAME_MAX + 1 bytes' worth of "no such user": no stored name is that
 * long, so *@toolong tells the caller to treat it as unknown. */
static void ai_name(const ec_auth_info *ai, char *name, bool *toolong)
{
	size_t n = ai ? strnlen(ai->user, sizeof(ai->user)) : 0;
	*toolong = n > EC_AUTH_NAME_MAX;
	if (*toolong)
		n = 0;
	memcpy(name, ai ? ai->user : "", n);
	name[n] = '\0';
}

/* Whether merged intervals @l cover [key, end) (@elen 0: the key alone; "\0":
 * to +infinity). A range that ends at or before its key covers only the key
 * itself in etcd's interval tree, so it is checked as that key. */
static bool covered(const ivls *l, const uint8_t *key, size_t klen, const uint8_t *end, size_t elen)
{
	if (klen == 0 || l->n == 0)
		return false; /* an empty key is +infinity: nothing covers it */
	ep b = ep_of(key, klen), e;
	if (elen == 0) {
		e = b;
		e.z = true;
	} else if (elen == 1 && end[0] == 0) {
		e = ep_of(NULL, 0);
	} else {
		e = ep_of(end, elen);
		if (ep_cmp(&e, &b) <= 0) {
			e = b;
			e.z = true;
		}
	}
	/* The last interval beginning at or before the key. */
	size_t lo = 0, hi = l->n;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (ep_cmp(&l->v[mid].b, &b) <= 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	if (lo == 0)
		return false;
	const ivl *m = &l->v[lo - 1];
	return ep_cmp(&m->e, &e) >= 0;
}

/* etcd's isOpPermitted, @write picking the WRITE set over the READ set. */
static int check_key(const snap *s, const ec_auth_info *ai, const uint8_t *key, size_t klen,
                     const uint8_t *end, size_t elen, bool write)
{
	if (!s->st->enabled)
		return EC_OK;
	char name[EC_AUTH_NAME_MAX + 1];
	bool toolong;
	ai_name(ai, name, &toolong);
	if ((name[0] == '\0' && !toolong) || ai->revision == 0)
		return EC_USER_EMPTY;
	if (ai->revision < s->st->revision)
		return EC_AUTH_OLD_REVISION;
	long i = toolong ? -1 : find_user(s->st, name, NULL);
	if (i < 0)
		return EC_PERMISSION_DENIED;
	if (user_has_role(s->st->users[i], ROOT))
		return EC_OK;
	const ivls *l = write ? &s->perms[i].wr : &s->perms[i].rd;
	return covered(l, key, klen, end, elen) ? EC_OK : EC_PERMISSION_DENIED;
}

/* etcd's IsAdminPermitted. */
static int check_admin(const snap *s, const ec_auth_info *ai)
{
	if (!s->st->enabled)
		return EC_OK;
	char name[EC_AUTH_NAME_MAX + 1];
	bool toolong;
	ai_name(ai, name, &toolong);
	if (name[0] == '\0' && !toolong)
		return EC_USER_EMPTY;
	long i = toolong ? -1 : find_user(s->st, name, NULL);
	if (i < 0)
		return EC_USER_NOT_FOUND;
	return user_has_role(s->st->users[i], ROOT) ? EC_OK : EC_PERMISSION_DENIED;
}

static int check_txn(const snap *s, const ec_auth_info *ai, const Etcdserverpb__TxnRequest *r);

/* etcd's checkTxnReqsPermission, plus nested txns (etcd 3.4 skips them; 3.5
 * checks them: a nested txn must not be a way around the checks). */
static int check_ops(const snap *s, const ec_auth_info *ai, Etcdserverpb__RequestOp *const *ops,
                     size_t n)
{
	for (size_t i = 0; i < n; i++) {
		const Etcdserverpb__RequestOp *op = ops[i];
		int e = EC_OK;
		switch (op->request_case) {
		case ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_RANGE: {
			const Etcdserverpb__RangeRequest *q = op->request_range;
			if (q != NULL)
				e = check_key(s, ai, q->key.data, q->key.len, q->range_end.data,
				              q->range_end.len, false);
			break;
		}
		case ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_PUT: {
			const Etcdserverpb__PutRequest *p = op->request_put;
			if (p != NULL)
				e = check_key(s, ai, p->key.data, p->key.len, NULL, 0, true);
			break;
		}
		case ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_DELETE_RANGE: {
			const Etcdserverpb__DeleteRangeRequest *d = op->request_delete_range;
			if (d == NULL)
				break;
			if (d->prev_kv)
				e = check_key(s, ai, d->key.data, d->key.len, d->range_end.data,
				              d->range_end.len, false);
			if (e == EC_OK)
				e = check_key(s, ai, d->key.data, d->key.len, d->range_end.data,
				              d->range_end.len, true);
			break;
		}
		case ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_TXN:
			if (op->request_txn != NULL)
				e = check_txn(s, ai, op->request_txn);
			break;
		default:
			break;
		}
		if (e != EC_OK)
			return e;
	}
	return EC_OK;
}

/* etcd's checkTxnAuth: every compare (read), then both branches. */
static int check_txn(const snap *s, const ec_auth_info *ai, const Etcdserverpb__TxnRequest *r)
{
	for (size_t i = 0; i < r->n_compare; i++) {
		const Etcdserverpb__Compare *c = r->compare[i];
		int e = check_key(s, ai, c->key.data, c->key.len, c->range_end.data,
		                  c->range_end.len, false);
		if (e != EC_OK)
			return e;
	}
	int e = check_ops(s, ai, r->success, r->n_success);
	return e != EC_OK ? e : check_ops(s, ai, r->failure, r->n_failure);
}

/* Write permission on every key attached to a lease (etcd's checkLeasePuts). */
typedef struct lease_check {
	const snap *s;
	const ec_auth_info *ai;
	int err;
} lease_check;

static int lease_key_visit(void *arg, const uint8_t *key, size_t klen)
{
	lease_check *lc = arg;
	lc->err = check_key(lc->s, lc->ai, key, klen, NULL, 0, true);
	return lc->err != EC_OK;
}

static int check_lease(const snap *s, const ec_auth_info *ai, int64_t id,
                       ec_auth_lease_keys_fn lease_keys, void *lease_arg)
{
	if (lease_keys == NULL || id == 0)
		return EC_OK;
	lease_check lc = {s, ai, EC_OK};
	int rc = lease_keys(lease_arg, id, lease_key_visit, &lc);
	if (lc.err != EC_OK)
		return lc.err;
	return rc == 0 ? EC_OK : EC_INTERNAL;
}

/* The sender of a log entry as an ec_auth_info (no auth: no user). */
static void req_info(const Metastore__InternalRequest *req, ec_auth_info *ai)
{
	ai->user[0] = '\0';
	ai->revision = 0;
	if (req->auth == NULL)
		return;
	const char *u = req->auth->username ? req->auth->username : "";
	size_t n = strlen(u);
	if (n > EC_AUTH_NAME_MAX) {
		/* No stored user has such a name (UserAdd refuses it): leave the
		 * array without a NUL, which ai_name reads as "too long". */
		memset(ai->user, 'x', sizeof(ai->user));
	} else {
		memcpy(ai->user, u, n + 1);
	}
	ai->revision = req->auth->auth_revision;
}

int ec_auth_check_write(ec_auth *a, const Metastore__InternalRequest *req,
                        ec_auth_lease_keys_fn lease_keys, void *lease_arg)
{
	if (!ec_auth_enabled(a))
		return EC_OK;
	ec_auth_info ai;
	req_info(req, &ai);
	pthread_rwlock_rdlock(&a->lock);
	const snap *s = a->cur;
	int e = EC_OK;
	switch (req->request_case) {
	case METASTORE__INTERNAL_REQUEST__REQUEST_PUT: {
		const Etcdserverpb__PutRequest *p = req->put;
		if (p == NULL)
			break;
		e = check_key(s, &ai, p->key.data, p->key.len, NULL, 0, true);
		if (e == EC_OK && s->st->enabled)
			e = check_lease(s, &ai, p->lease, lease_keys, lease_arg);
		if (e == EC_OK && p->prev_kv)
			e = check_key(s, &ai, p->key.data, p->key.len, NULL, 0, false);
		break;
	}
	case METASTORE__INTERNAL_REQUEST__REQUEST_DELETE_RANGE: {
		const Etcdserverpb__DeleteRangeRequest *d = req->delete_range;
		if (d == NULL)
			break;
		e = check_key(s, &ai, d->key.data, d->key.len, d->range_end.data, d->range_end.len,
		              true);
		if (e == EC_OK && d->prev_kv)
			e = check_key(s, &ai, d->key.data, d->key.len, d->range_end.data,
			              d->range_end.len, false);
		break;
	}
	case METASTORE__INTERNAL_REQUEST__REQUEST_TXN:
		if (req->txn != NULL)
			e = check_txn(s, &ai, req->txn);
		break;
	case METASTORE__INTERNAL_REQUEST__REQUEST_LEASE_REVOKE:
		if (req->lease_revoke != NULL && s->st->enabled)
			e = check_lease(s, &ai, req->lease_revoke->id, lease_keys, lease_arg);
		break;
	default:
		break;
	}
	pthread_rwlock_unlock(&a->lock);
	return e;
}

int ec_auth_check_range(ec_auth *a, const ec_auth_info *ai, const uint8_t *key, size_t klen,
                        const uint8_t *end, size_t elen)
{
	if (!ec_auth_enabled(a))
		return EC_OK;
	pthread_rwlock_rdlock(&a->lock);
	int e = check_key(a->cur, ai, key, klen, end, elen, false);
	pthread_rwlock_unlock(&a->lock);
	return e;
}

int ec_auth_check_put(ec_auth *a, const ec_auth_info *ai, const uint8_t *key, size_t klen)
{
	pthread_rwlock_rdlock(&a->lock);
	int e = check_key(a->cur, ai, key, klen, NULL, 0, true);
	pthread_rwlock_unlock(&a->lock);
	return e;
}

int ec_auth_check_txn(ec_auth *a, const ec_auth_info *ai, const Etcdserverpb__TxnRequest *r)
{
	if (!ec_auth_enabled(a))
		return EC_OK;
	pthread_rwlock_rdlock(&a->lock);
	int e = check_txn(a->cur, ai, r);
	pthread_rwlock_unlock(&a->lock);
	return e;
}

int ec_auth_check_admin(ec_auth *a, const ec_auth_info *ai)
{
	pthread_rwlock_rdlock(&a->lock);
	int e = check_admin(a->cur, ai);
	pthread_rwlock_unlock(&a->lock);
	return e;
}

bool ec_auth_has_role(ec_auth *a, const char *user, const char *role)
{
	pthread_rwlock_rdlock(&a->lock);
	long i = find_user(a->cur->st, user, NULL);
	bool r = i >= 0 && user_has_role(a->cur->st->users[i], role);
	pthread_rwlock_unlock(&a->lock);
	return r;
}

bool ec_auth_user_exists(ec_auth *a, const char *user)
{
	pthread_rwlock_rdlock(&a->lock);
	bool r = find_user(a->cur->st, user, NULL) >= 0;
	pthread_rwlock_unlock(&a->lock);
	return r;
}

/* ---- passwords ----------------------------------------------------------- */

int ec_auth_hash_password(const char *password, int cost, char *out, size_t cap)
{
	if (cost < EC_AUTH_BCRYPT_MIN_COST || cost > EC_AUTH_BCRYPT_MAX_COST)
		return EC_BAD_REQUEST;
	if (password == NULL || out == NULL || cap < 64)
		return EC_BAD_REQUEST;
	unsigned char rnd[16];
	char salt[CRYPT_GENSALT_OUTPUT_SIZE];
	if (RAND_bytes(rnd, sizeof(rnd)) != 1)
		return EC_INTERNAL;
	int err = EC_INTERNAL;
	if (crypt_gensalt_rn("$2b$", (unsigned long)cost, (const char *)rnd, sizeof(rnd), salt,
	                     sizeof(salt)) == NULL)
		goto out;
	struct crypt_data *cd = calloc(1, sizeof(*cd));
	if (cd == NULL) {
		err = EC_NOMEM;
		goto out;
	}
	const char *h = crypt_r(password, salt, cd);
	size_t n = h ? strlen(h) : 0;
	if (h != NULL && strncmp(h, "$2b$", 4) == 0 && n < cap) {
		memcpy(out, h, n + 1);
		err = EC_OK;
	}
	OPENSSL_cleanse(cd, sizeof(*cd));
	free(cd);
out:
	OPENSSL_cleanse(rnd, sizeof(rnd));
	return err;
}

/*
 * Whether @password matches bcrypt hash @hash. Go's bcrypt (which made the
 * hashes of a store restored from etcd) ignores the minor version letter and
 * always runs the correct algorithm, so every "$2?$" hash is checked as
 * "$2b$" (libxcrypt's $2a$ differs for some 8-bit passwords). The result is
 * compared in constant time.
 */
static bool bcrypt_ok(const char *hash, const char *password)
{
	size_t n = strlen(hash);
	if (n != 60 || hash[0] != '$' || hash[1] != '2' || hash[3] != '$')
		return false;
	if (hash[2] != 'a' && hash[2] != 'b' && hash[2] != 'x' && hash[2] != 'y')
		return false;
	char want[61];
	memcpy(want, hash, 61);
	want[2] = 'b';
	struct crypt_data *cd = calloc(1, sizeof(*cd));
	if (cd == NULL)
		return false;
	const char *got = crypt_r(password, want, cd);
	bool ok = got != NULL && strlen(got) == 60 && CRYPTO_memcmp(got, want, 60) == 0;
	OPENSSL_cleanse(cd, sizeof(*cd));
	free(cd);
	return ok;
}

bool ec_auth_hash_matches(const char *hash, const char *password)
{
	return hash != NULL && bcrypt_ok(hash, password ? password : "");
}

int ec_auth_check_password(ec_auth *a, const char *user, const char *password, uint64_t *rev)
{
	char hash[HASH_MAX + 1];
	uint64_t seen = 0;
	int err = EC_OK;
	pthread_rwlock_rdlock(&a->lock);
	const Metastore__AuthState *st = a->cur->st;
	long i = st->enabled ? find_user(st, user ? user : "", NULL) : -1;
	if (!st->enabled) {
		err = EC_AUTH_NOT_ENABLED;
	} else if (i >= 0 && user_nopw(st->users[i])) {
		err = EC_NO_PASSWORD_USER; /* etcd's unmapped ErrNoPasswordUser */
	} else if (i < 0 || st->users[i]->password.len > HASH_MAX) {
		err = EC_AUTH_FAILED;
	} else {
		const ProtobufCBinaryData *p = &st->users[i]->password;
		if (p->len)
			memcpy(hash, p->data, p->len);
		hash[p->len] = '\0';
		seen = st->revision;
	}
	pthread_rwlock_unlock(&a->lock);
	if (err != EC_OK)
		return err;
	if (!bcrypt_ok(hash, password ? password : ""))
		return EC_AUTH_FAILED;
	if (rev)
		*rev = seen;
	return EC_OK;
}

/* ---- responses ----------------------------------------------------------- */

/* A malloc'd, initialised response of type @d whose "header" field is set. */
static void *new_resp(const ProtobufCMessageDescriptor *d, int64_t kv_rev, const ec_hdr *hdr)
{
	ProtobufCMessage *m = malloc(d->sizeof_message);
	if (m == NULL)
		return NULL;
	d->message_init(m);
	const ProtobufCFieldDescriptor *f =
	        protobuf_c_message_descriptor_get_field_by_name(d, "header");
	if (f != NULL) {
		Etcdserverpb__ResponseHeader *h = ec_hdr_new(kv_rev, hdr);
		if (h == NULL) {
			free(m);
			return NULL;
		}
		*(Etcdserverpb__ResponseHeader **)((char *)m + f->offset) = h;
	}
	return m;
}

/* A malloc'd NUL-terminated copy of binary @d. */
static char *bin_strdup(ProtobufCBinaryData d)
{
	return strndup(d.len ? (const char *)d.data : "", d.len);
}

static bool bin_dup(ProtobufCBinaryData *dst, ProtobufCBinaryData src)
{
	dst->len = 0;
	dst->data = NULL;
	if (src.len == 0)
		return true;
	if ((dst->data = malloc(src.len)) == NULL)
		return false;
	memcpy(dst->data, src.data, src.len);
	dst->len = src.len;
	return true;
}

/* ---- apply --------------------------------------------------------------- */

/* The next state, built from shallow copies of the current one. */
typedef struct draft {
	bool enabled;
	uint64_t rev;
	Authpb__User **u;
	size_t nu;
	Authpb__Role **r;
	size_t nr;
} draft;

static int draft_init(draft *d, const Metastore__AuthState *st)
{
	d->enabled = st->enabled;
	d->rev = st->revision;
	d->u = malloc((st->n_users + 1) * sizeof(*d->u));
	d->r = malloc((st->n_roles + 1) * sizeof(*d->r));
	if (d->u == NULL || d->r == NULL) {
		free(d->u);
		free(d->r);
		return ST_ENOMEM;
	}
	if (st->n_users)
		memcpy(d->u, st->users, st->n_users * sizeof(*d->u));
	if (st->n_roles)
		memcpy(d->r, st->roles, st->n_roles * sizeof(*d->r));
	d->nu = st->n_users;
	d->nr = st->n_roles;
	return ST_OK;
}

static void draft_free(draft *d)
{
	free(d->u);
	free(d->r);
}

/* Pack @d, stage it with st_rmeta_put, make it the current snapshot. */
static int commit(ec_auth *a, const draft *d)
{
	Metastore__AuthState s = METASTORE__AUTH_STATE__INIT;
	s.format = AUTH_FORMAT;
	s.enabled = d->enabled;
	s.revision = d->rev;
	s.users = d->u;
	s.n_users = d->nu;
	s.roles = d->r;
	s.n_roles = d->nr;
	size_t len = metastore__auth_state__get_packed_size(&s);
	uint8_t *buf = malloc(len ? len : 1);
	if (buf == NULL)
		return ST_ENOMEM;
	metastore__auth_state__pack(&s, buf);
	int rc = st_rmeta_put(a->db, AUTH_RECORD, buf, len);
	snap *next = NULL;
	if (rc == ST_OK) {
		next = snap_unpack(buf, len, &rc);
		if (rc == ST_ECORRUPT || rc == ST_EFORMAT)
			rc = ST_ENOMEM; /* we just packed it: only memory can fail */
	}
	free(buf);
	if (rc != ST_OK)
		return rc;
	snap_free(swap_in(a, next));
	return ST_OK;
}

/* What an apply case decided: an etcd error, or a change to commit. */
typedef struct outcome {
	int err;          /* EC_* */
	bool change;      /* commit the draft */
	const char *gone; /* user whose tokens stop working */
	bool disabled;    /* auth was turned off */
} outcome;

static void op_enable(const Metastore__AuthState *st, draft *d, outcome *o)
{
	if (st->enabled)
		return; /* already enabled: etcd ignores the request */
	long i = find_user(st, ROOT, NULL);
	if (i < 0) {
		o->err = EC_ROOT_USER_NOT_EXIST;
		return;
	}
	if (!user_has_role(st->users[i], ROOT)) {
		o->err = EC_ROOT_ROLE_NOT_EXIST;
		return;
	}
	/* etcd's AuthEnable does not commit a new auth revision. */
	d->enabled = true;
	o->change = true;
}

static void op_disable(const Metastore__AuthState *st, draft *d, outcome *o)
{
	if (!st->enabled)
		return;
	d->enabled = false;
	d->rev++;
	o->change = true;
	o->disabled = true;
}

static void op_authenticate(const Metastore__AuthState *st,
                            const Metastore__InternalAuthenticate *r, outcome *o)
{
	if (!st->enabled) {
		o->err = EC_AUTH_NOT_ENABLED;
		return;
	}
	long i = find_user(st, r->name ? r->name : "", NULL);
	if (i < 0 || user_nopw(st->users[i]))
		o->err = EC_AUTH_FAILED;
}

/* Insert @p at @pos of pointer array @v (of @n, with room for one more). */
static void ins_ptr(void **v, size_t n, size_t pos, void *p)
{
	memmove(v + pos + 1, v + pos, (n - pos) * sizeof(*v));
	v[pos] = p;
}

static void del_ptr(void **v, size_t n, size_t pos)
{
	memmove(v + pos, v + pos + 1, (n - pos - 1) * sizeof(*v));
}

/* Storage the draft points into until the commit; freed after it. */
typedef struct scratch {
	Authpb__User user;
	Authpb__UserAddOptions opts;
	Authpb__Role role;
	Authpb__Permission perm;
	Authpb__User *users; /* RoleDelete: copies of every user */
	void **ptrs;         /* arrays the copies point to */
	size_t nptrs;
} scratch;

static void scratch_free(scratch *sc)
{
	for (size_t i = 0; i < sc->nptrs; i++)
		free(sc->ptrs[i]);
	free(sc->ptrs);
	free(sc->users);
}

/* Remember malloc'd @p for scratch_free (frees @p on failure). */
static void *keep(scratch *sc, void *p, int *rc)
{
	if (p == NULL) {
		*rc = ST_ENOMEM;
		return NULL;
	}
	void **np = realloc(sc->ptrs, (sc->nptrs + 1) * sizeof(*np));
	if (np == NULL) {
		free(p);
		*rc = ST_ENOMEM;
		return NULL;
	}
	sc->ptrs = np;
	sc->ptrs[sc->nptrs++] = p;
	return p;
}

static int op_user_add(const Metastore__AuthState *st, const Etcdserverpb__AuthUserAddRequest *r,
                       draft *d, scratch *sc, outcome *o)
{
	const char *name = r->name ? r->name : "";
	if (name[0] == '\0') {
		o->err = EC_USER_EMPTY;
		return ST_OK;
	}
	if (strlen(name) > EC_AUTH_NAME_MAX) {
		o->err = EC_BAD_REQUEST;
		return ST_OK;
	}
	size_t pos = 0;
	if (find_user(st, name, &pos) >= 0) {
		o->err = EC_USER_ALREADY_EXIST;
		return ST_OK;
	}
	bool nopw = r->options != NULL && r->options->no_password;
	const char *h = r->hashedpassword ? r->hashedpassword : "";
	if (!nopw && h[0] == '\0') {
		o->err = EC_BAD_REQUEST; /* the proposer must hash (ec_auth_hash_password) */
		return ST_OK;
	}
	authpb__user__init(&sc->user);
	authpb__user_add_options__init(&sc->opts);
	sc->opts.no_password = nopw;
	sc->user.name.data = (uint8_t *)name;
	sc->user.name.len = strlen(name);
	if (!nopw) {
		sc->user.password.data = (uint8_t *)h;
		sc->user.password.len = strlen(h);
	}
	sc->user.options = &sc->opts;
	ins_ptr((void **)d->u, d->nu++, pos, &sc->user);
	d->rev++;
	o->change = true;
	return ST_OK;
}

static void op_user_delete(const Metastore__AuthState *st,
                           const Etcdserverpb__AuthUserDeleteRequest *r, draft *d, outcome *o)
{
	const char *name = r->name ? r->name : "";
	if (st->enabled && strcmp(name, ROOT) == 0) {
		o->err = EC_INVALID_AUTH_MGMT;
		return;
	}
	long i = find_user(st, name, NULL);
	if (i < 0) {
		o->err = EC_USER_NOT_FOUND;
		return;
	}
	del_ptr((void **)d->u, d->nu--, (size_t)i);
	d->rev++;
	o->change = true;
	o->gone = name;
}

static void op_user_passwd(const Metastore__AuthState *st,
                           const Etcdserverpb__AuthUserChangePasswordRequest *r, draft *d,
                           scratch *sc, outcome *o)
{
	const char *name = r->name ? r->name : "";
	long i = find_user(st, name, NULL);
	if (i < 0) {
		o->err = EC_USER_NOT_FOUND;
		return;
	}
	const char *h = r->hashedpassword ? r->hashedpassword : "";
	if (h[0] == '\0') {
		o->err = EC_BAD_REQUEST;
		return;
	}
	sc->user = *st->users[i];
	sc->user.password.data = (uint8_t *)h;
	sc->user.password.len = strlen(h);
	d->u[i] = &sc->user;
	d->rev++;
	o->change = true;
	o->gone = name;
}

static int op_grant_role(const Metastore__AuthState *st,
                         const Etcdserverpb__AuthUserGrantRoleRequest *r, draft *d, scratch *sc,
                         outcome *o)
{
	const char *user = r->user ? r->user : "", *role = r->role ? r->role : "";
	long i = find_user(st, user, NULL);
	if (i < 0) {
		o->err = EC_USER_NOT_FOUND;
		return ST_OK;
	}
	/* "root" needs no RoleAdd: etcd grants it without looking it up. */
	if (strcmp(role, ROOT) != 0 && find_role(st, role, NULL) < 0) {
		o->err = EC_ROLE_NOT_FOUND;
		return ST_OK;
	}
	const Authpb__User *u = st->users[i];
	if (user_has_role(u, role))
		return ST_OK; /* already granted: success, nothing changes */
	int rc = ST_OK;
	char **roles = keep(sc, malloc((u->n_roles + 1) * sizeof(char *)), &rc);
	if (roles == NULL)
		return rc;
	size_t pos = 0;
	while (pos < u->n_roles && strcmp(u->roles[pos], role) < 0)
		pos++;
	if (u->n_roles)
		memcpy(roles, u->roles, u->n_roles * sizeof(char *));
	ins_ptr((void **)roles, u->n_roles, pos, (void *)role);
	sc->user = *u;
	sc->user.roles = roles;
	sc->user.n_roles = u->n_roles + 1;
	d->u[i] = &sc->user;
	d->rev++;
	o->change = true;
	return ST_OK;
}

/* @u's roles without @role, into a kept array; *@n the new count. */
static char **roles_without(const Authpb__User *u, const char *role, scratch *sc, size_t *n,
                            int *rc)
{
	char **v = keep(sc, malloc((u->n_roles + 1) * sizeof(char *)), rc);
	if (v == NULL)
		return NULL;
	*n = 0;
	for (size_t i = 0; i < u->n_roles; i++)
		if (strcmp(u->roles[i], role) != 0)
			v[(*n)++] = u->roles[i];
	return v;
}

static int op_revoke_role(const Metastore__AuthState *st,
                          const Etcdserverpb__AuthUserRevokeRoleRequest *r, draft *d, scratch *sc,
                          outcome *o)
{
	const char *user = r->name ? r->name : "", *role = r->role ? r->role : "";
	if (st->enabled && strcmp(user, ROOT) == 0 && strcmp(role, ROOT) == 0) {
		o->err = EC_INVALID_AUTH_MGMT;
		return ST_OK;
	}
	long i = find_user(st, user, NULL);
	if (i < 0) {
		o->err = EC_USER_NOT_FOUND;
		return ST_OK;
	}
	const Authpb__User *u = st->users[i];
	if (!user_has_role(u, role)) {
		o->err = EC_ROLE_NOT_GRANTED;
		return ST_OK;
	}
	int rc = ST_OK;
	size_t n = 0;
	char **v = roles_without(u, role, sc, &n, &rc);
	if (v == NULL)
		return rc;
	sc->user = *u;
	sc->user.roles = v;
	sc->user.n_roles = n;
	d->u[i] = &sc->user;
	d->rev++;
	o->change = true;
	return ST_OK;
}

static int op_role_add(const Metastore__AuthState *st, const Etcdserverpb__AuthRoleAddRequest *r,
                       draft *d, scratch *sc, outcome *o)
{
	const char *name = r->name ? r->name : "";
	if (name[0] == '\0') {
		o->err = EC_ROLE_EMPTY;
		return ST_OK;
	}
	size_t pos = 0;
	if (find_role(st, name, &pos) >= 0) {
		o->err = EC_ROLE_ALREADY_EXIST;
		return ST_OK;
	}
	authpb__role__init(&sc->role);
	sc->role.name.data = (uint8_t *)name;
	sc->role.name.len = strlen(name);
	ins_ptr((void **)d->r, d->nr++, pos, &sc->role);
	d->rev++;
	o->change = true;
	return ST_OK;
}

static int op_role_delete(const Metastore__AuthState *st,
                          const Etcdserverpb__AuthRoleDeleteRequest *r, draft *d, scratch *sc,
                          outcome *o)
{
	const char *name = r->role ? r->role : "";
	if (st->enabled && strcmp(name, ROOT) == 0) {
		o->err = EC_INVALID_AUTH_MGMT;
		return ST_OK;
	}
	long i = find_role(st, name, NULL);
	if (i < 0) {
		o->err = EC_ROLE_NOT_FOUND;
		return ST_OK;
	}
	del_ptr((void **)d->r, d->nr--, (size_t)i);
	/* etcd also takes the role away from every user holding it. */
	if (st->n_users && (sc->users = calloc(st->n_users, sizeof(*sc->users))) == NULL)
		return ST_ENOMEM;
	for (size_t j = 0; j < st->n_users; j++) {
		const Authpb__User *u = st->users[j];
		if (!user_has_role(u, name))
			continue;
		int rc = ST_OK;
		size_t n = 0;
		char **v = roles_without(u, name, sc, &n, &rc);
		if (v == NULL)
			return rc;
		sc->users[j] = *u;
		sc->users[j].roles = v;
		sc->users[j].n_roles = n;
		d->u[j] = &sc->users[j];
	}
	d->rev++;
	o->change = true;
	return ST_OK;
}

static int op_grant_perm(const Metastore__AuthState *st,
                         const Etcdserverpb__AuthRoleGrantPermissionRequest *r, draft *d,
                         scratch *sc, outcome *o)
{
	long i = find_role(st, r->name ? r->name : "", NULL);
	if (i < 0) {
		o->err = EC_ROLE_NOT_FOUND;
		return ST_OK;
	}
	if (r->perm == NULL) {
		o->err = EC_BAD_REQUEST;
		return ST_OK;
	}
	const Authpb__Role *role = st->roles[i];
	const Authpb__Permission *np = r->perm;
	size_t n = role->n_keypermission;
	int rc = ST_OK;
	Authpb__Permission **v = keep(sc, malloc((n + 1) * sizeof(*v)), &rc);
	if (v == NULL)
		return rc;
	if (n)
		memcpy(v, role->keypermission, n * sizeof(*v));
	/* etcd: the first permission whose key is >= the new key; if it has the
	 * same key and range end its type is replaced, else the new permission
	 * is appended and the list sorted by key (stably, see sort_perms). */
	size_t idx = 0;
	while (idx < n && bin_cmp(v[idx]->key.data, v[idx]->key.len, np->key.data, np->key.len) < 0)
		idx++;
	sc->perm = *np;
	if (idx < n && bin_eq(v[idx]->key, np->key) && bin_eq(v[idx]->range_end, np->range_end)) {
		sc->perm = *v[idx];
		sc->perm.permtype = np->permtype;
		v[idx] = &sc->perm;
	} else {
		size_t pos = 0;
		while (pos < n &&
		       bin_cmp(v[pos]->key.data, v[pos]->key.len, np->key.data, np->key.len) <= 0)
			pos++;
		ins_ptr((void **)v, n, pos, &sc->perm);
		n++;
	}
	sc->role = *role;
	sc->role.keypermission = v;
	sc->role.n_keypermission = n;
	d->r[i] = &sc->role;
	d->rev++;
	o->change = true;
	return ST_OK;
}

static int op_revoke_perm(const Metastore__AuthState *st,
                          const Etcdserverpb__AuthRoleRevokePermissionRequest *r, draft *d,
                          scratch *sc, outcome *o)
{
	long i = find_role(st, r->role ? r->role : "", NULL);
	if (i < 0) {
		o->err = EC_ROLE_NOT_FOUND;
		return ST_OK;
	}
	const Authpb__Role *role = st->roles[i];
	int rc = ST_OK;
	Authpb__Permission **v = keep(sc, malloc((role->n_keypermission + 1) * sizeof(*v)), &rc);
	if (v == NULL)
		return rc;
	size_t n = 0;
	for (size_t j = 0; j < role->n_keypermission; j++) {
		Authpb__Permission *p = role->keypermission[j];
		if (!bin_eq(p->key, r->key) || !bin_eq(p->range_end, r->range_end))
			v[n++] = p;
	}
	if (n == role->n_keypermission) {
		o->err = EC_PERMISSION_NOT_GRANTED;
		return ST_OK;
	}
	sc->role = *role;
	sc->role.keypermission = v;
	sc->role.n_keypermission = n;
	d->r[i] = &sc->role;
	d->rev++;
	o->change = true;
	return ST_OK;
}

static const ProtobufCMessageDescriptor *resp_desc(Metastore__InternalRequest__RequestCase c)
{
	switch (c) {
	case METASTORE__INTERNAL_REQUEST__REQUEST_AUTH_ENABLE:
		return &etcdserverpb__auth_enable_response__descriptor;
	case METASTORE__INTERNAL_REQUEST__REQUEST_AUTH_DISABLE:
		return &etcdserverpb__auth_disable_response__descriptor;
	case METASTORE__INTERNAL_REQUEST__REQUEST_AUTHENTICATE:
		return &etcdserverpb__authenticate_response__descriptor;
	case METASTORE__INTERNAL_REQUEST__REQUEST_USER_ADD:
		return &etcdserverpb__auth_user_add_response__descriptor;
	case METASTORE__INTERNAL_REQUEST__REQUEST_USER_DELETE:
		return &etcdserverpb__auth_user_delete_response__descriptor;
	case METASTORE__INTERNAL_REQUEST__REQUEST_USER_CHANGE_PASSWORD:
		return &etcdserverpb__auth_user_change_password_response__descriptor;
	case METASTORE__INTERNAL_REQUEST__REQUEST_USER_GRANT_ROLE:
		return &etcdserverpb__auth_user_grant_role_response__descriptor;
	case METASTORE__INTERNAL_REQUEST__REQUEST_USER_REVOKE_ROLE:
		return &etcdserverpb__auth_user_revoke_role_response__descriptor;
	case METASTORE__INTERNAL_REQUEST__REQUEST_ROLE_ADD:
		return &etcdserverpb__auth_role_add_response__descriptor;
	case METASTORE__INTERNAL_REQUEST__REQUEST_ROLE_DELETE:
		return &etcdserverpb__auth_role_delete_response__descriptor;
	case METASTORE__INTERNAL_REQUEST__REQUEST_ROLE_GRANT_PERMISSION:
		return &etcdserverpb__auth_role_grant_permission_response__descriptor;
	case METASTORE__INTERNAL_REQUEST__REQUEST_ROLE_REVOKE_PERMISSION:
		return &etcdserverpb__auth_role_revoke_permission_response__descriptor;
	default:
		return NULL;
	}
}

int ec_auth_apply(ec_auth *a, const Metastore__InternalRequest *req, const ec_hdr *hdr,
                  int64_t kv_rev, ProtobufCMessage **resp, int *err)
{
	*resp = NULL;
	*err = EC_OK;
	const ProtobufCMessageDescriptor *rd = req ? resp_desc(req->request_case) : NULL;
	if (rd == NULL) {
		*err = EC_UNIMPLEMENTED;
		return ST_OK;
	}
	/* Node thread: the only writer, so the current snapshot is stable. */
	const Metastore__AuthState *st = a->cur->st;
	outcome o = {EC_OK, false, NULL, false};
	if (req->request_case != METASTORE__INTERNAL_REQUEST__REQUEST_AUTHENTICATE) {
		ec_auth_info ai;
		req_info(req, &ai);
		if ((o.err = check_admin(a->cur, &ai)) != EC_OK) {
			*err = o.err;
			return ST_OK;
		}
	}
	draft d;
	int rc = draft_init(&d, st);
	if (rc != ST_OK)
		return rc;
	scratch sc;
	memset(&sc, 0, sizeof(sc));
	/* Every case but enable/disable carries a message; all of them share
	 * the oneof's one pointer slot, so one check covers them. */
	bool bare = req->request_case == METASTORE__INTERNAL_REQUEST__REQUEST_AUTH_ENABLE ||
	            req->request_case == METASTORE__INTERNAL_REQUEST__REQUEST_AUTH_DISABLE;
	if (!bare && req->user_add == NULL)
		o.err = EC_BAD_REQUEST;
	else switch (req->request_case) {
	case METASTORE__INTERNAL_REQUEST__REQUEST_AUTH_ENABLE:
		op_enable(st, &d, &o);
		break;
	case METASTORE__INTERNAL_REQUEST__REQUEST_AUTH_DISABLE:
		op_disable(st, &d, &o);
		break;
	case METASTORE__INTERNAL_REQUEST__REQUEST_AUTHENTICATE:
		op_authenticate(st, req->authenticate, &o);
		break;
	case METASTORE__INTERNAL_REQUEST__REQUEST_USER_ADD:
		rc = op_user_add(st, req->user_add, &d, &sc, &o);
		break;
	case METASTORE__INTERNAL_REQUEST__REQUEST_USER_DELETE:
		op_user_delete(st, req->user_delete, &d, &o);
		break;
	case METASTORE__INTERNAL_REQUEST__REQUEST_USER_CHANGE_PASSWORD:
		op_user_passwd(st, req->user_change_password, &d, &sc, &o);
		break;
	case METASTORE__INTERNAL_REQUEST__REQUEST_USER_GRANT_ROLE:
		rc = op_grant_role(st, req->user_grant_role, &d, &sc, &o);
		break;
	case METASTORE__INTERNAL_REQUEST__REQUEST_USER_REVOKE_ROLE:
		rc = op_revoke_role(st, req->user_revoke_role, &d, &sc, &o);
		break;
	case METASTORE__INTERNAL_REQUEST__REQUEST_ROLE_ADD:
		rc = op_role_add(st, req->role_add, &d, &sc, &o);
		break;
	case METASTORE__INTERNAL_REQUEST__REQUEST_ROLE_DELETE:
		rc = op_role_delete(st, req->role_delete, &d, &sc, &o);
		break;
	case METASTORE__INTERNAL_REQUEST__REQUEST_ROLE_GRANT_PERMISSION:
		rc = op_grant_perm(st, req->role_grant_permission, &d, &sc, &o);
		break;
	case METASTORE__INTERNAL_REQUEST__REQUEST_ROLE_REVOKE_PERMISSION:
		rc = op_revoke_perm(st, req->role_revoke_permission, &d, &sc, &o);
		break;
	default:
		o.err = EC_UNIMPLEMENTED;
		break;
	}
	if (rc == ST_OK && o.err == EC_OK && o.change)
		rc = commit(a, &d);
	draft_free(&d);
	scratch_free(&sc);
	if (rc != ST_OK)
		return rc;
	if (o.err != EC_OK) {
		*err = o.err;
		return ST_OK;
	}
	const ec_auth_hooks *h = &a->hooks;
	if (o.change) {
		if (o.gone && h->user_gone)
			h->user_gone(h->arg, o.gone);
		if (o.disabled && h->disabled)
			h->disabled(h->arg);
		if (h->changed)
			h->changed(h->arg);
	}
	if ((*resp = new_resp(rd, kv_rev, hdr)) == NULL)
		*err = EC_NOMEM;
	return ST_OK;
}

/* ---- reads --------------------------------------------------------------- */

/* Admin permission, or (UserGet/RoleGet) the caller's own user or role. */
static int read_perm(const snap *s, const ec_auth_info *ai, const char *own_user,
                     const char *own_role)
{
	int e = check_admin(s, ai);
	if (e == EC_OK)
		return EC_OK;
	char name[EC_AUTH_NAME_MAX + 1];
	bool toolong;
	ai_name(ai, name, &toolong);
	if (toolong)
		return e;
	if (own_user != NULL && strcmp(own_user, name) == 0)
		return EC_OK;
	if (own_role != NULL) {
		long i = find_user(s->st, name, NULL);
		if (i >= 0 && user_has_role(s->st->users[i], own_role))
			return EC_OK;
	}
	return e;
}

int ec_auth_user_get(ec_auth *a, const ec_auth_info *ai, const Etcdserverpb__AuthUserGetRequest *r,
                     const ec_hdr *hdr, int64_t kv_rev, Etcdserverpb__AuthUserGetResponse **out)
{
	*out = NULL;
	const char *name = r && r->name ? r->name : "";
	pthread_rwlock_rdlock(&a->lock);
	const snap *s = a->cur;
	int e = read_perm(s, ai, name, NULL);
	long i = e == EC_OK ? find_user(s->st, name, NULL) : -1;
	if (e == EC_OK && i < 0)
		e = EC_USER_NOT_FOUND;
	Etcdserverpb__AuthUserGetResponse *m = NULL;
	if (e == EC_OK) {
		m = new_resp(&etcdserverpb__auth_user_get_response__descriptor, kv_rev, hdr);
		const Authpb__User *u = s->st->users[i];
		if (m != NULL && u->n_roles &&
		    (m->roles = calloc(u->n_roles, sizeof(char *))) == NULL) {
			ec_msg_free(m);
			m = NULL;
		}
		for (size_t j = 0; m != NULL && j < u->n_roles; j++) {
			if ((m->roles[j] = strdup(u->roles[j])) == NULL) {
				ec_msg_free(m);
				m = NULL;
				break;
			}
			m->n_roles = j + 1;
		}
		if (m == NULL)
			e = EC_NOMEM;
	}
	pthread_rwlock_unlock(&a->lock);
	*out = m;
	return e;
}

/* A list of names into (*@v, *@n): users (@users) or roles. */
static int names(const Metastore__AuthState *st, bool users, char ***v, size_t *n)
{
	size_t cnt = users ? st->n_users : st->n_roles;
	*n = 0;
	*v = NULL;
	if (cnt == 0)
		return EC_OK;
	if ((*v = calloc(cnt, sizeof(char *))) == NULL)
		return EC_NOMEM;
	for (size_t i = 0; i < cnt; i++) {
		ProtobufCBinaryData nm = users ? st->users[i]->name : st->roles[i]->name;
		/* etcd lists roles with a bucket range ["\x00", "\xff"): a name
		 * beginning with byte 0xff is left out. */
		if (!users && nm.len && nm.data[0] == 0xff)
			continue;
		if (((*v)[*n] = bin_strdup(nm)) == NULL)
			return EC_NOMEM;
		(*n)++;
	}
	return EC_OK;
}

/* UserList and RoleList: the same response shape (header, count, names) of
 * type @d, whose count and array sit at @n_off and @v_off. */
static int name_list(ec_auth *a, const ec_auth_info *ai, const ec_hdr *hdr, int64_t kv_rev,
                     bool users, const ProtobufCMessageDescriptor *d, size_t n_off,
                     size_t v_off, void **out)
{
	*out = NULL;
	pthread_rwlock_rdlock(&a->lock);
	int e = check_admin(a->cur, ai);
	ProtobufCMessage *m = NULL;
	if (e == EC_OK) {
		m = new_resp(d, kv_rev, hdr);
		if (m == NULL || names(a->cur->st, users, (char ***)((char *)m + v_off),
		                       (size_t *)((char *)m + n_off)) != EC_OK) {
			ec_msg_free(m);
			m = NULL;
			e = EC_NOMEM;
		}
	}
	pthread_rwlock_unlock(&a->lock);
	*out = m;
	return e;
}

int ec_auth_user_list(ec_auth *a, const ec_auth_info *ai, const ec_hdr *hdr, int64_t kv_rev,
                      Etcdserverpb__AuthUserListResponse **out)
{
	return name_list(a, ai, hdr, kv_rev, true, &etcdserverpb__auth_user_list_response__descriptor,
	                 offsetof(Etcdserverpb__AuthUserListResponse, n_users),
	                 offsetof(Etcdserverpb__AuthUserListResponse, users), (void **)out);
}

int ec_auth_role_list(ec_auth *a, const ec_auth_info *ai, const ec_hdr *hdr, int64_t kv_rev,
                      Etcdserverpb__AuthRoleListResponse **out)
{
	return name_list(a, ai, hdr, kv_rev, false, &etcdserverpb__auth_role_list_response__descriptor,
	                 offsetof(Etcdserverpb__AuthRoleListResponse, n_roles),
	                 offsetof(Etcdserverpb__AuthRoleListResponse, roles), (void **)out);
}

int ec_auth_role_get(ec_auth *a, const ec_auth_info *ai, const Etcdserverpb__AuthRoleGetRequest *r,
                     const ec_hdr *hdr, int64_t kv_rev, Etcdserverpb__AuthRoleGetResponse **out)
{
	*out = NULL;
	const char *name = r && r->role ? r->role : "";
	pthread_rwlock_rdlock(&a->lock);
	const snap *s = a->cur;
	int e = read_perm(s, ai, NULL, name);
	long i = e == EC_OK ? find_role(s->st, name, NULL) : -1;
	if (e == EC_OK && i < 0)
		e = EC_ROLE_NOT_FOUND;
	Etcdserverpb__AuthRoleGetResponse *m = NULL;
	if (e == EC_OK) {
		const Authpb__Role *role = s->st->roles[i];
		m = new_resp(&etcdserverpb__auth_role_get_response__descriptor, kv_rev, hdr);
		size_t n = role->n_keypermission;
		if (m != NULL && n && (m->perm = calloc(n, sizeof(*m->perm))) == NULL) {
			ec_msg_free(m);
			m = NULL;
		}
		for (size_t j = 0; m != NULL && j < n; j++) {
			const Authpb__Permission *p = role->keypermission[j];
			Authpb__Permission *c = malloc(sizeof(*c));
			if (c != NULL) {
				authpb__permission__init(c);
				c->permtype = p->permtype;
				m->perm[j] = c;
				m->n_perm = j + 1;
			}
			if (c == NULL || !bin_dup(&c->key, p->key) ||
			    !bin_dup(&c->range_end, p->range_end)) {
				ec_msg_free(m);
				m = NULL;
			}
		}
		if (m == NULL)
			e = EC_NOMEM;
	}
	pthread_rwlock_unlock(&a->lock);
	*out = m;
	return e;
}

int ec_auth_status(ec_auth *a, const ec_hdr *hdr, int64_t kv_rev,
                   Etcdserverpb__AuthStatusResponse **out)
{
	Etcdserverpb__AuthStatusResponse *m =
	        new_resp(&etcdserverpb__auth_status_response__descriptor, kv_rev, hdr);
	*out = m;
	if (m == NULL)
		return EC_NOMEM;
	pthread_rwlock_rdlock(&a->lock);
	m->enabled = a->cur->st->enabled;
	m->authrevision = a->cur->st->revision;
	pthread_rwlock_unlock(&a->lock);
	return EC_OK;
}
