/*
 * ec_cluster: the replicated member set (see ec_cluster.h).
 *
 * The in-memory copy is the unpacked metastore.MemberSet itself. Every change
 * builds the next set as an array of (shallow) member pointers, packs it — the
 * packed bytes are what gets persisted anyway — and unpacks those bytes into
 * the new in-memory copy, so there is exactly one encoding and no hand-written
 * deep copy.
 */
#include "etcdcompat/ec_cluster.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "etcdcompat/ec_errors.h"
#include "storage/st_mvcc.h"

#define MEMBERS_RECORD "members"

struct ec_cluster {
	st_db *db;
	pthread_mutex_t mu; /* guards set (replaced whole, never mutated in place) */
	Metastore__MemberSet *set;
};

static Metastore__MemberSet *empty_set(void)
{
	Metastore__MemberSet init = METASTORE__MEMBER_SET__INIT;
	uint8_t buf[8];
	init.format = 1;
	size_t n = metastore__member_set__pack(&init, buf);
	return metastore__member_set__unpack(NULL, n, buf);
}

static int load(st_db *db, Metastore__MemberSet **out)
{
	void *v = NULL;
	size_t len = 0;
	int rc = st_rmeta_get(db, MEMBERS_RECORD, &v, &len);
	if (rc == ST_ENOTFOUND) {
		*out = empty_set();
		return *out ? ST_OK : ST_ENOMEM;
	}
	if (rc != ST_OK)
		return rc;
	*out = metastore__member_set__unpack(NULL, len, v);
	free(v);
	if (*out == NULL)
		return ST_ECORRUPT;
	if ((*out)->format != 1) {
		metastore__member_set__free_unpacked(*out, NULL);
		*out = NULL;
		return ST_EFORMAT;
	}
	return ST_OK;
}

int ec_cluster_open(st_db *db, ec_cluster **out)
{
	ec_cluster *c = calloc(1, sizeof(*c));
	if (c == NULL)
		return ST_ENOMEM;
	c->db = db;
	int rc = load(db, &c->set);
	if (rc != ST_OK) {
		free(c);
		return rc;
	}
	pthread_mutex_init(&c->mu, NULL);
	*out = c;
	return ST_OK;
}

void ec_cluster_close(ec_cluster *c)
{
	if (c == NULL)
		return;
	metastore__member_set__free_unpacked(c->set, NULL);
	pthread_mutex_destroy(&c->mu);
	free(c);
}

int ec_cluster_reload(ec_cluster *c)
{
	Metastore__MemberSet *s = NULL;
	int rc = load(c->db, &s);
	if (rc != ST_OK)
		return rc;
	pthread_mutex_lock(&c->mu);
	Metastore__MemberSet *old = c->set;
	c->set = s;
	pthread_mutex_unlock(&c->mu);
	metastore__member_set__free_unpacked(old, NULL);
	return ST_OK;
}

size_t ec_cluster_count(ec_cluster *c)
{
	pthread_mutex_lock(&c->mu);
	size_t n = c->set->n_members;
	pthread_mutex_unlock(&c->mu);
	return n;
}

static int cmp_member(const void *a, const void *b)
{
	const Etcdserverpb__Member *x = *(Etcdserverpb__Member *const *)a;
	const Etcdserverpb__Member *y = *(Etcdserverpb__Member *const *)b;
	return x->id < y->id ? -1 : x->id > y->id;
}

/*
 * Make the set {@members (sorted here), @removed} current: pack, persist,
 * unpack as the new copy. Node thread only (the only writer), so reading
 * c->set without the mutex here is safe. Returns 0 or an ST_* code.
 */
static int commit_set(ec_cluster *c, Etcdserverpb__Member **members, size_t n, uint64_t *removed,
		      size_t nr)
{
	qsort(members, n, sizeof(*members), cmp_member);
	Metastore__MemberSet s = METASTORE__MEMBER_SET__INIT;
	s.format = 1;
	s.members = members;
	s.n_members = n;
	s.removed = removed;
	s.n_removed = nr;
	size_t len = metastore__member_set__get_packed_size(&s);
	uint8_t *buf = malloc(len ? len : 1);
	if (buf == NULL)
		return ST_ENOMEM;
	metastore__member_set__pack(&s, buf);
	int rc = st_rmeta_put(c->db, MEMBERS_RECORD, buf, len);
	Metastore__MemberSet *next = NULL;
	if (rc == ST_OK && (next = metastore__member_set__unpack(NULL, len, buf)) == NULL)
		rc = ST_ENOMEM;
	free(buf);
	if (rc != ST_OK)
		return rc;
	pthread_mutex_lock(&c->mu);
	Metastore__MemberSet *old = c->set;
	c->set = next;
	pthread_mutex_unlock(&c->mu);
	metastore__member_set__free_unpacked(old, NULL);
	return ST_OK;
}

int ec_cluster_replace(ec_cluster *c, const Metastore__MemberSet *set)
{
	Etcdserverpb__Member **m = malloc((set->n_members + 1) * sizeof(*m));
	if (m == NULL)
		return ST_ENOMEM;
	if (set->n_members)
		memcpy(m, set->members, set->n_members * sizeof(*m));
	int rc = commit_set(c, m, set->n_members, set->removed, set->n_removed);
	free(m);
	return rc;
}

Metastore__MemberSet *ec_cluster_copy(ec_cluster *c)
{
	uint8_t *buf = NULL;
	size_t len = 0;
	if (ec_cluster_pack(c, &buf, &len) != ST_OK)
		return NULL;
	Metastore__MemberSet *s = metastore__member_set__unpack(NULL, len, buf);
	free(buf);
	return s;
}

int ec_cluster_pack(ec_cluster *c, uint8_t **buf, size_t *len)
{
	pthread_mutex_lock(&c->mu);
	*len = metastore__member_set__get_packed_size(c->set);
	*buf = malloc(*len ? *len : 1);
	if (*buf != NULL)
		metastore__member_set__pack(c->set, *buf);
	pthread_mutex_unlock(&c->mu);
	return *buf ? ST_OK : ST_ENOMEM;
}

/* Index of member @id in @s, or -1. */
static long find(const Metastore__MemberSet *s, uint64_t id)
{
	for (size_t i = 0; i < s->n_members; i++)
		if (s->members[i]->id == id)
			return (long)i;
	return -1;
}

static char **strv_dup(char *const *v, size_t n)
{
	char **out = calloc(n + 1, sizeof(*out));
	if (out == NULL)
		return NULL;
	for (size_t i = 0; i < n; i++) {
		if ((out[i] = strdup(v[i])) == NULL) {
			ec_cluster_strv_free(out);
			return NULL;
		}
	}
	return out;
}

void ec_cluster_strv_free(char **v)
{
	if (v == NULL)
		return;
	for (char **p = v; *p; p++)
		free(*p);
	free(v);
}

bool ec_cluster_get(ec_cluster *c, uint64_t id, bool *learner, char ***peer_urls)
{
	pthread_mutex_lock(&c->mu);
	long i = find(c->set, id);
	if (i >= 0) {
		const Etcdserverpb__Member *m = c->set->members[i];
		if (learner)
			*learner = m->islearner;
		if (peer_urls)
			*peer_urls = strv_dup(m->peerurls, m->n_peerurls);
	}
	pthread_mutex_unlock(&c->mu);
	return i >= 0;
}

bool ec_cluster_is_removed(ec_cluster *c, uint64_t id)
{
	bool r = false;
	pthread_mutex_lock(&c->mu);
	for (size_t i = 0; i < c->set->n_removed && !r; i++)
		r = c->set->removed[i] == id;
	pthread_mutex_unlock(&c->mu);
	return r;
}

/* Whether the URL lists are equal as sets. */
static bool same_urls(char *const *a, size_t na, const char *const *b, size_t nb)
{
	if (na != nb)
		return false;
	for (size_t i = 0; i < na; i++) {
		bool hit = false;
		for (size_t j = 0; j < nb && !hit; j++)
			hit = strcmp(a[i], b[j]) == 0;
		if (!hit)
			return false;
	}
	return true;
}

uint64_t ec_cluster_find_by_peer_urls(ec_cluster *c, const char *const *urls, size_t n)
{
	uint64_t id = 0;
	pthread_mutex_lock(&c->mu);
	for (size_t i = 0; i < c->set->n_members && !id; i++) {
		const Etcdserverpb__Member *m = c->set->members[i];
		if (same_urls(m->peerurls, m->n_peerurls, urls, n))
			id = m->id;
	}
	pthread_mutex_unlock(&c->mu);
	return id;
}

bool ec_peer_urls_valid(char *const *urls, size_t n)
{
	if (n == 0)
		return false;
	for (size_t i = 0; i < n; i++) {
		const char *u = urls[i], *rest;
		if (strncmp(u, "http://", 7) == 0)
			rest = u + 7;
		else if (strncmp(u, "https://", 8) == 0)
			rest = u + 8;
		else
			return false;
		const char *colon = strrchr(rest, ':');
		if (colon == NULL || colon == rest || colon[1] == '\0' || strchr(rest, '/'))
			return false;
		for (const char *p = colon + 1; *p; p++)
			if (*p < '0' || *p > '9')
				return false;
	}
	return true;
}

/* Whether any member other than @except uses one of @urls. Under c->mu. */
static bool url_taken(const Metastore__MemberSet *s, char *const *urls, size_t n, uint64_t except)
{
	for (size_t i = 0; i < s->n_members; i++) {
		const Etcdserverpb__Member *m = s->members[i];
		if (m->id == except)
			continue;
		for (size_t j = 0; j < m->n_peerurls; j++)
			for (size_t k = 0; k < n; k++)
				if (strcmp(m->peerurls[j], urls[k]) == 0)
					return true;
	}
	return false;
}

int ec_cluster_check_add(ec_cluster *c, char *const *urls, size_t n, bool learner)
{
	if (!ec_peer_urls_valid(urls, n))
		return EC_MEMBER_BAD_URLS;
	int err = EC_OK;
	pthread_mutex_lock(&c->mu);
	if (url_taken(c->set, urls, n, 0)) {
		err = EC_PEER_URL_EXIST;
	} else if (learner) {
		size_t nl = 0;
		for (size_t i = 0; i < c->set->n_members; i++)
			nl += c->set->members[i]->islearner;
		if (nl + 1 > EC_MAX_LEARNERS)
			err = EC_TOO_MANY_LEARNERS;
	}
	pthread_mutex_unlock(&c->mu);
	return err;
}

int ec_cluster_check_remove(ec_cluster *c, uint64_t id)
{
	return ec_cluster_get(c, id, NULL, NULL) ? EC_OK : EC_MEMBER_NOT_FOUND;
}

int ec_cluster_check_update(ec_cluster *c, uint64_t id, char *const *urls, size_t n)
{
	if (!ec_peer_urls_valid(urls, n))
		return EC_MEMBER_BAD_URLS;
	int err = EC_OK;
	pthread_mutex_lock(&c->mu);
	if (find(c->set, id) < 0)
		err = EC_MEMBER_NOT_FOUND;
	else if (url_taken(c->set, urls, n, id))
		err = EC_PEER_URL_EXIST;
	pthread_mutex_unlock(&c->mu);
	return err;
}

int ec_cluster_check_promote(ec_cluster *c, uint64_t id)
{
	bool learner = false;
	if (!ec_cluster_get(c, id, &learner, NULL))
		return EC_MEMBER_NOT_FOUND;
	return learner ? EC_OK : EC_MEMBER_NOT_LEARNER;
}

/*
 * Build the next set from the current one with member @id replaced by @repl
 * (NULL: removed), or @repl appended when @id is 0, plus @extra_removed (0 for
 * none) added to the removed list; then commit it. Node thread only.
 */
static int change(ec_cluster *c, uint64_t id, Etcdserverpb__Member *repl, uint64_t extra_removed)
{
	const Metastore__MemberSet *s = c->set;
	Etcdserverpb__Member **m = malloc((s->n_members + 1) * sizeof(*m));
	uint64_t *rm = malloc((s->n_removed + 1) * sizeof(*rm));
	if (m == NULL || rm == NULL) {
		free(m);
		free(rm);
		return -ST_ENOMEM;
	}
	size_t n = 0;
	for (size_t i = 0; i < s->n_members; i++) {
		if (id != 0 && s->members[i]->id == id) {
			if (repl)
				m[n++] = repl;
		} else {
			m[n++] = s->members[i];
		}
	}
	if (id == 0 && repl)
		m[n++] = repl;
	if (s->n_removed)
		memcpy(rm, s->removed, s->n_removed * sizeof(*rm));
	size_t nr = s->n_removed;
	if (extra_removed)
		rm[nr++] = extra_removed;
	int rc = commit_set(c, m, n, rm, nr);
	free(m);
	free(rm);
	return rc == ST_OK ? EC_OK : -rc;
}

int ec_cluster_apply_add(ec_cluster *c, const Etcdserverpb__Member *m)
{
	if (find(c->set, m->id) >= 0 || ec_cluster_is_removed(c, m->id))
		return EC_MEMBER_EXIST;
	Etcdserverpb__Member copy = *m;
	return change(c, 0, &copy, 0);
}

int ec_cluster_apply_remove(ec_cluster *c, uint64_t id)
{
	if (find(c->set, id) < 0)
		return EC_MEMBER_NOT_FOUND;
	return change(c, id, NULL, id);
}

int ec_cluster_apply_promote(ec_cluster *c, uint64_t id)
{
	long i = find(c->set, id);
	if (i < 0)
		return EC_MEMBER_NOT_FOUND;
	Etcdserverpb__Member copy = *c->set->members[i];
	copy.islearner = 0;
	return change(c, id, &copy, 0);
}

int ec_cluster_apply_update(ec_cluster *c, uint64_t id, char *const *urls, size_t n)
{
	long i = find(c->set, id);
	if (i < 0)
		return EC_MEMBER_NOT_FOUND;
	Etcdserverpb__Member copy = *c->set->members[i];
	copy.peerurls = (char **)urls;
	copy.n_peerurls = n;
	return change(c, id, &copy, 0);
}

int ec_cluster_apply_attr(ec_cluster *c, const Metastore__MemberAttr *a)
{
	long i = find(c->set, a->member_id);
	if (i < 0)
		return EC_MEMBER_NOT_FOUND;
	Etcdserverpb__Member copy = *c->set->members[i];
	copy.name = a->name;
	copy.clienturls = a->client_urls;
	copy.n_clienturls = a->n_client_urls;
	return change(c, a->member_id, &copy, 0);
}
