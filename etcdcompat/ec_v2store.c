/*
 * ec_v2store.c: etcd 3.4's v2 store (ec_v2store.h). A tree of nodes, each
 * directory holding its children in an array sorted by name; an event ring of
 * the last EC_V2_HISTORY events (their JSON already rendered) for waitIndex;
 * a list of pending watchers; and the record "ms.r.v2store" rewritten whole
 * after every change. Every function that touches the tree holds s->mu.
 */
#include "etcdcompat/ec_v2store.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "etcdcompat/ec_errors.h"
#include "storage/st_mvcc.h"

#define V2_RECORD "v2store"
#define KEYS_NS "/1"

typedef struct v2_node {
	char *path; /* full internal path, "/" for the root */
	bool dir;
	char *value; /* files only (malloc'd, never NULL for a file) */
	uint64_t created, modified;
	int64_t expire; /* unix ns, 0: permanent */
	struct v2_node *parent;
	struct v2_node **kids; /* sorted by name */
	size_t nkids, capkids;
} v2_node;

typedef struct v2_event {
	uint64_t index;
	char *key;      /* internal path of the event's node */
	bool dir_gone;  /* a delete/expire of a directory */
	char *body;     /* the rendered JSON */
	uint32_t status;
} v2_event;

typedef struct v2_watcher {
	uint64_t id;
	char *path;
	bool recursive;
	uint64_t since;
	ec_v2_watch_fn fn;
	void *ctx;
	struct v2_watcher *next;
} v2_watcher;

struct ec_v2_store {
	pthread_mutex_t mu;
	st_db *db;
	v2_node *root;
	uint64_t index;
	v2_event ring[EC_V2_HISTORY];
	size_t ring_start, ring_n;
	v2_watcher *watchers;
	uint64_t next_wid;
};

/* ---- a growable string ---------------------------------------------------------- */

typedef struct sbuf {
	char *p;
	size_t len, cap;
	bool oom;
} sbuf;

static void sb_add(sbuf *b, const char *s, size_t n)
{
	if (b->oom)
		return;
	if (b->len + n + 1 > b->cap) {
		size_t c = b->cap ? b->cap * 2 : 256;
		while (c < b->len + n + 1)
			c *= 2;
		char *np = realloc(b->p, c);
		if (np == NULL) {
			b->oom = true;
			return;
		}
		b->p = np;
		b->cap = c;
	}
	memcpy(b->p + b->len, s, n);
	b->len += n;
	b->p[b->len] = '\0';
}

static void sb_puts(sbuf *b, const char *s)
{
	sb_add(b, s, strlen(s));
}

__attribute__((format(printf, 2, 3))) static void sb_printf(sbuf *b, const char *fmt, ...)
{
	char tmp[128];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
	va_end(ap);
	if (n > 0)
		sb_add(b, tmp, (size_t)n < sizeof tmp ? (size_t)n : sizeof tmp - 1);
}

/* A JSON string as Go's encoding/json writes it (<, >, & and U+2028/9 escaped). */
static void sb_json_str(sbuf *b, const char *s)
{
	static const char hex[] = "0123456789abcdef";
	sb_add(b, "\"", 1);
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		unsigned char c = *p;
		if (c == '"' || c == '\\') {
			char e[2] = {'\\', (char)c};
			sb_add(b, e, 2);
		} else if (c == '\n') {
			sb_add(b, "\\n", 2);
		} else if (c == '\r') {
			sb_add(b, "\\r", 2);
		} else if (c == '\t') {
			sb_add(b, "\\t", 2);
		} else if (c < 0x20 || c == '<' || c == '>' || c == '&') {
			char e[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
			sb_add(b, e, 6);
		} else if (c == 0xe2 && p[1] == 0x80 && (p[2] == 0xa8 || p[2] == 0xa9)) {
			sb_add(b, p[2] == 0xa8 ? "\\u2028" : "\\u2029", 6);
			p += 2;
		} else {
			sb_add(b, (const char *)p, 1);
		}
	}
	sb_add(b, "\"", 1);
}

/* ---- paths ---------------------------------------------------------------------- */

/* Go's path.Clean("/" + @in), malloc'd. */
static char *clean_path(const char *in)
{
	size_t n = strlen(in);
	char *out = malloc(n + 2);
	if (out == NULL)
		return NULL;
	size_t o = 0;
	const char *p = in;
	out[o++] = '/';
	while (*p) {
		while (*p == '/')
			p++;
		const char *seg = p;
		while (*p && *p != '/')
			p++;
		size_t sl = (size_t)(p - seg);
		if (sl == 0 || (sl == 1 && seg[0] == '.'))
			continue;
		if (sl == 2 && seg[0] == '.' && seg[1] == '.') {
			if (o > 1) {
				o--;
				while (o > 1 && out[o - 1] != '/')
					o--;
				if (o > 1)
					o--;
			}
			continue;
		}
		if (o > 1)
			out[o++] = '/';
		memcpy(out + o, seg, sl);
		o += sl;
	}
	out[o] = '\0';
	return out;
}

/* The path clients see: "/1/foo" → "/foo", "/1" → "/"; others unchanged. */
static const char *external(const char *path)
{
	size_t n = strlen(KEYS_NS);
	if (strncmp(path, KEYS_NS, n) == 0) {
		if (path[n] == '\0')
			return "";
		if (path[n] == '/')
			return path + n;
	}
	return path;
}

static const char *base_name(const char *path)
{
	const char *s = strrchr(path, '/');
	return s ? s + 1 : path;
}

static char *join(const char *dir, const char *name)
{
	size_t dl = strlen(dir), nl = strlen(name);
	bool slash = !(dl > 0 && dir[dl - 1] == '/');
	char *out = malloc(dl + nl + 2);
	if (out == NULL)
		return NULL;
	memcpy(out, dir, dl);
	if (slash)
		out[dl++] = '/';
	memcpy(out + dl, name, nl + 1);
	return out;
}

/* ---- nodes ---------------------------------------------------------------------- */

static void node_free(v2_node *n)
{
	if (n == NULL)
		return;
	for (size_t i = 0; i < n->nkids; i++)
		node_free(n->kids[i]);
	free(n->kids);
	free(n->path);
	free(n->value);
	free(n);
}

static v2_node *node_new(const char *path, bool dir, const char *value, uint64_t idx, int64_t expire)
{
	v2_node *n = calloc(1, sizeof *n);
	if (n == NULL)
		return NULL;
	n->path = strdup(path);
	n->dir = dir;
	if (!dir)
		n->value = strdup(value ? value : "");
	n->created = n->modified = idx;
	n->expire = expire;
	if (n->path == NULL || (!dir && n->value == NULL)) {
		node_free(n);
		return NULL;
	}
	return n;
}

/* Index of child @name in @d, or where it would go (*@found false). */
static size_t kid_pos(const v2_node *d, const char *name, bool *found)
{
	size_t lo = 0, hi = d->nkids;
	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		int c = strcmp(base_name(d->kids[mid]->path), name);
		if (c == 0) {
			*found = true;
			return mid;
		}
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	*found = false;
	return lo;
}

static v2_node *kid_get(const v2_node *d, const char *name)
{
	bool f;
	size_t i = kid_pos(d, name, &f);
	return f ? d->kids[i] : NULL;
}

static bool kid_add(v2_node *d, v2_node *k)
{
	bool f;
	size_t i = kid_pos(d, base_name(k->path), &f);
	if (f)
		return false;
	if (d->nkids == d->capkids) {
		size_t c = d->capkids ? d->capkids * 2 : 4;
		v2_node **nk = realloc(d->kids, c * sizeof *nk);
		if (nk == NULL)
			return false;
		d->kids = nk;
		d->capkids = c;
	}
	memmove(d->kids + i + 1, d->kids + i, (d->nkids - i) * sizeof *d->kids);
	d->kids[i] = k;
	d->nkids++;
	k->parent = d;
	return true;
}

static void kid_unlink(v2_node *k)
{
	v2_node *d = k->parent;
	if (d == NULL)
		return;
	bool f;
	size_t i = kid_pos(d, base_name(k->path), &f);
	if (f) {
		memmove(d->kids + i, d->kids + i + 1, (d->nkids - i - 1) * sizeof *d->kids);
		d->nkids--;
	}
	k->parent = NULL;
}

/* The node at clean internal path @path, or NULL with *@code (100 or 104) and
 * *@cause (a malloc'd internal path; may stay NULL when out of memory). */
static v2_node *lookup(ec_v2_store *s, const char *path, int *code, char **cause)
{
	v2_node *n = s->root;
	const char *p = path;
	*cause = NULL;
	while (*p == '/')
		p++;
	while (*p) {
		const char *seg = p;
		while (*p && *p != '/')
			p++;
		size_t sl = (size_t)(p - seg);
		while (*p == '/')
			p++;
		if (!n->dir) {
			*code = EC_V2_NOT_DIR;
			*cause = strdup(n->path);
			return NULL;
		}
		char *name = strndup(seg, sl);
		if (name == NULL) {
			*code = EC_V2_KEY_NOT_FOUND; /* reported as not found; cause left NULL */
			return NULL;
		}
		v2_node *k = kid_get(n, name);
		if (k == NULL) {
			*code = EC_V2_KEY_NOT_FOUND;
			*cause = join(n->path, name);
			free(name);
			return NULL;
		}
		free(name);
		n = k;
	}
	return n;
}

static bool is_hidden_name(const char *path)
{
	return base_name(path)[0] == '_';
}

/* ---- rendering ------------------------------------------------------------------ */

/* Go's time.Time JSON (RFC 3339 with nanoseconds, trailing zeros trimmed), UTC. */
static void sb_time(sbuf *b, int64_t ns)
{
	time_t sec = (time_t)(ns / 1000000000);
	long frac = (long)(ns % 1000000000);
	if (frac < 0) {
		frac += 1000000000;
		sec--;
	}
	struct tm tm;
	gmtime_r(&sec, &tm);
	char t[64];
	strftime(t, sizeof t, "%Y-%m-%dT%H:%M:%S", &tm);
	sb_puts(b, "\"");
	sb_puts(b, t);
	if (frac) {
		char f[16];
		snprintf(f, sizeof f, ".%09ld", frac);
		size_t l = strlen(f);
		while (l > 1 && f[l - 1] == '0')
			f[--l] = '\0';
		sb_puts(b, f);
	}
	sb_puts(b, "Z\"");
}

/* The "expiration","ttl" pair of a node as of @now (etcd rounds ttl up). */
static void sb_ttl(sbuf *b, int64_t expire, int64_t now)
{
	if (expire == 0)
		return;
	int64_t left = expire - now;
	int64_t ttl = left / 1000000000;
	if (left % 1000000000 > 0)
		ttl++;
	sb_puts(b, ",\"expiration\":");
	sb_time(b, expire);
	if (ttl != 0)
		sb_printf(b, ",\"ttl\":%" PRId64, ttl);
}

/* Opens a NodeExtern: {"key":K — the caller continues with ',' fields. Go's
 * omitempty drops an empty key; here the object may start with a comma-less
 * field, so a flag tracks whether a field was written. */
typedef struct obj {
	sbuf *b;
	bool any;
} obj;

static void obj_field(obj *o, const char *name)
{
	sb_puts(o->b, o->any ? ",\"" : "\"");
	sb_puts(o->b, name);
	sb_puts(o->b, "\":");
	o->any = true;
}

/* NodeExtern of @n: value (unless !@with_value) or dir, expiration/ttl
 * (unless !@with_value), children (levels: 0 none, 1 one level, -1 all),
 * indexes; @mod/@created override when non-zero. */
static void render_node(sbuf *b, const v2_node *n, int levels, int64_t now, bool with_value,
                        uint64_t mod, uint64_t created)
{
	sb_puts(b, "{");
	obj o = {b, false};
	const char *key = external(n->path);
	if (key[0]) {
		obj_field(&o, "key");
		sb_json_str(b, key);
	}
	if (!n->dir && with_value) {
		obj_field(&o, "value");
		sb_json_str(b, n->value);
	}
	if (n->dir) {
		obj_field(&o, "dir");
		sb_puts(b, "true");
	}
	if (n->expire && with_value) { /* a removed node's event shows neither */
		if (!o.any) {
			/* sb_ttl starts with a comma: write the first field by hand */
			obj_field(&o, "expiration");
			sb_time(b, n->expire);
			int64_t left = n->expire - now;
			int64_t ttl = left / 1000000000 + (left % 1000000000 > 0);
			if (ttl != 0)
				sb_printf(b, ",\"ttl\":%" PRId64, ttl);
		} else {
			sb_ttl(b, n->expire, now);
		}
	}
	if (n->dir && levels != 0) {
		size_t shown = 0;
		for (size_t i = 0; i < n->nkids; i++) {
			const v2_node *k = n->kids[i];
			if (is_hidden_name(k->path))
				continue;
			if (shown == 0) {
				obj_field(&o, "nodes");
				sb_puts(b, "[");
			} else {
				sb_puts(b, ",");
			}
			shown++;
			render_node(b, k, levels < 0 ? -1 : 0, now, true, 0, 0);
		}
		if (shown)
			sb_puts(b, "]");
	}
	uint64_t m = mod ? mod : n->modified, c = created ? created : n->created;
	if (m) {
		obj_field(&o, "modifiedIndex");
		sb_printf(b, "%" PRIu64, m);
	}
	if (c) {
		obj_field(&o, "createdIndex");
		sb_printf(b, "%" PRIu64, c);
	}
	sb_puts(b, "}");
}

static const char *v2_message(int code)
{
	switch (code) {
	case 100: return "Key not found";
	case 101: return "Compare failed";
	case 102: return "Not a file";
	case 103: return "Reached the max number of peers in the cluster";
	case 104: return "Not a directory";
	case 105: return "Key already exists";
	case 106: return "The prefix of given key is a keyword in etcd";
	case 107: return "Root is read only";
	case 108: return "Directory not empty";
	case 109: return "Peer address has existed";
	case 110: return "The request requires user authentication";
	case 200: return "Value is Required in POST form";
	case 201: return "PrevValue is Required in POST form";
	case 202: return "The given TTL in POST form is not a number";
	case 203: return "The given index in POST form is not a number";
	case 204: return "Value or TTL is required in POST form";
	case 205: return "The given timeout in POST form is not a number";
	case 206: return "Name is required in POST form";
	case 207: return "Index or value is required";
	case 208: return "Index and value cannot both be specified";
	case 209: return "Invalid field";
	case 210: return "Invalid POST form";
	case 211: return "Value provided on refresh";
	case 212: return "A TTL must be provided on refresh";
	case 300: return "Raft Internal Error";
	case 301: return "During Leader Election";
	case 400: return "watcher is cleared due to etcd recovery";
	case 401: return "The event in requested index is outdated and cleared";
	case 402: return "Standby Internal Error";
	case 403: return "Invalid active size";
	case 404: return "Standby remove delay";
	case 500: return "Client Internal Error";
	default: return "";
	}
}

int ec_v2_error_status(int code)
{
	switch (code) {
	case 100: return 404;
	case 102:
	case 108: return 403;
	case 110: return 401;
	case 101:
	case 105: return 412;
	case 300:
	case 301: return 500;
	default: return 400;
	}
}

char *ec_v2_error_json(int code, const char *cause, uint64_t index)
{
	sbuf b = {0};
	sb_printf(&b, "{\"errorCode\":%d,\"message\":", code);
	sb_json_str(&b, v2_message(code));
	if (cause != NULL && cause[0]) {
		sb_puts(&b, ",\"cause\":");
		sb_json_str(&b, cause);
	}
	sb_printf(&b, ",\"index\":%" PRIu64 "}", index);
	if (b.oom) {
		free(b.p);
		return NULL;
	}
	return b.p;
}

/* ---- responses ------------------------------------------------------------------ */

static Metastore__V2Response *resp_new(void)
{
	Metastore__V2Response *r = malloc(sizeof *r);
	if (r != NULL)
		metastore__v2_response__init(r);
	return r;
}

static void resp_free(Metastore__V2Response *r)
{
	if (r != NULL)
		protobuf_c_message_free_unpacked(&r->base, NULL);
}

/* Set a malloc'd copy of @s into a protobuf string slot (left as the shared
 * empty string when @s is empty). False when out of memory. */
static bool set_str(char **slot, const char *s)
{
	if (s == NULL || s[0] == '\0')
		return true;
	char *c = strdup(s);
	if (c == NULL)
		return false;
	*slot = c;
	return true;
}

/* An error response for @code with internal @cause path (shown trimmed). */
static Metastore__V2Response *resp_error(int code, const char *cause, uint64_t index)
{
	Metastore__V2Response *r = resp_new();
	if (r == NULL)
		return NULL;
	char *j = ec_v2_error_json(code, cause ? (code == EC_V2_ROOT_RONLY ? cause : external(cause))
	                                       : NULL,
	                           index);
	if (j == NULL) {
		resp_free(r);
		return NULL;
	}
	r->code = (uint32_t)code;
	r->http_status = (uint32_t)ec_v2_error_status(code);
	r->etcd_index = index;
	r->body = j;
	return r;
}

/* ---- the event ring and watchers ------------------------------------------------ */

static bool under(const char *path, const char *dir)
{
	size_t dl = strlen(dir);
	if (dl == 1 && dir[0] == '/')
		return path[0] == '/' && path[1] != '\0';
	return strncmp(path, dir, dl) == 0 && path[dl] == '/';
}

/* Whether a component of @key below @watch starts with '_' (etcd's isHidden). */
static bool hidden_below(const char *watch, const char *key)
{
	size_t wl = strlen(watch);
	if (wl > strlen(key))
		return false;
	const char *rest = key + (wl == 1 ? 0 : wl);
	return strstr(rest, "/_") != NULL;
}

static bool ev_matches(const v2_event *e, const char *path, bool recursive, bool check_hidden)
{
	if (strcmp(e->key, path) == 0)
		return true;
	if (recursive && under(e->key, path) && !(check_hidden && hidden_below(path, e->key)))
		return true;
	if (e->dir_gone && under(path, e->key))
		return true;
	return false;
}

static Metastore__V2Response *ev_resp(const v2_event *e)
{
	Metastore__V2Response *r = resp_new();
	if (r == NULL)
		return NULL;
	r->http_status = 200;
	r->etcd_index = e->index;
	r->found = true;
	if (!set_str(&r->body, e->body)) {
		resp_free(r);
		return NULL;
	}
	return r;
}

/* Record event @e (its strings pass to the ring) and fire matching watchers. */
static void history_add(ec_v2_store *s, v2_event *e)
{
	if (s->ring_n == EC_V2_HISTORY) {
		v2_event *old = &s->ring[s->ring_start];
		free(old->key);
		free(old->body);
		s->ring_start = (s->ring_start + 1) % EC_V2_HISTORY;
		s->ring_n--;
	}
	s->ring[(s->ring_start + s->ring_n) % EC_V2_HISTORY] = *e;
	s->ring_n++;
	v2_watcher **pp = &s->watchers;
	while (*pp) {
		v2_watcher *w = *pp;
		if (e->index >= w->since && ev_matches(e, w->path, w->recursive, true)) {
			Metastore__V2Response *r = ev_resp(e);
			if (r != NULL) {
				*pp = w->next;
				w->fn(w->ctx, r);
				free(w->path);
				free(w);
				continue;
			}
		}
		pp = &w->next;
	}
}

/* ---- persistence ---------------------------------------------------------------- */

static size_t count_nodes(const v2_node *n)
{
	size_t c = 1;
	for (size_t i = 0; i < n->nkids; i++)
		c += count_nodes(n->kids[i]);
	return c;
}

static void flatten(v2_node *n, Metastore__V2Node *arr, Metastore__V2Node **ptrs, size_t *i)
{
	Metastore__V2Node *m = &arr[*i];
	metastore__v2_node__init(m);
	m->path = n->path;
	m->dir = n->dir;
	m->value = n->value ? n->value : (char *)"";
	m->created_index = n->created;
	m->modified_index = n->modified;
	m->expire_ns = n->expire;
	ptrs[*i] = m;
	(*i)++;
	for (size_t k = 0; k < n->nkids; k++)
		flatten(n->kids[k], arr, ptrs, i);
}

/* Stage the whole store into the open apply group. */
static int persist(ec_v2_store *s)
{
	if (s->db == NULL)
		return ST_OK;
	size_t n = count_nodes(s->root) - 1; /* the root is implicit */
	Metastore__V2Node *arr = calloc(n + 1, sizeof *arr);
	Metastore__V2Node **ptrs = calloc(n + 1, sizeof *ptrs);
	int rc = ST_ENOMEM;
	if (arr != NULL && ptrs != NULL) {
		size_t i = 0;
		for (size_t k = 0; k < s->root->nkids; k++)
			flatten(s->root->kids[k], arr, ptrs, &i);
		Metastore__V2Store st = METASTORE__V2_STORE__INIT;
		st.format = 1;
		st.current_index = s->index;
		st.nodes = ptrs;
		st.n_nodes = i;
		size_t len = metastore__v2_store__get_packed_size(&st);
		uint8_t *buf = malloc(len ? len : 1);
		if (buf != NULL) {
			metastore__v2_store__pack(&st, buf);
			rc = st_rmeta_put(s->db, V2_RECORD, buf, len);
			free(buf);
		}
	}
	free(arr);
	free(ptrs);
	return rc;
}

/* Insert @path (parents first) into the tree under construction. */
static int load_node(v2_node *root, const Metastore__V2Node *m)
{
	if (m->path == NULL || m->path[0] != '/' || strcmp(m->path, "/") == 0)
		return EC_INTERNAL;
	char *parent_path = strdup(m->path);
	if (parent_path == NULL)
		return EC_NOMEM;
	char *slash = strrchr(parent_path, '/');
	if (slash == parent_path)
		slash[1] = '\0';
	else
		*slash = '\0';
	int code;
	char *cause;
	ec_v2_store tmp = {.root = root};
	v2_node *p = lookup(&tmp, parent_path, &code, &cause);
	free(cause);
	free(parent_path);
	if (p == NULL || !p->dir)
		return EC_INTERNAL;
	v2_node *existing = kid_get(p, base_name(m->path));
	if (existing != NULL) { /* the namespace dirs made at creation */
		existing->created = m->created_index;
		existing->modified = m->modified_index;
		existing->expire = m->expire_ns;
		return EC_OK;
	}
	v2_node *n = node_new(m->path, m->dir, m->value, m->created_index, m->expire_ns);
	if (n == NULL)
		return EC_NOMEM;
	n->modified = m->modified_index;
	if (!kid_add(p, n)) {
		node_free(n);
		return EC_NOMEM;
	}
	return EC_OK;
}

static v2_node *fresh_root(void)
{
	v2_node *root = node_new("/", true, NULL, 0, 0);
	if (root == NULL)
		return NULL;
	static const char *ns[] = {"/0", KEYS_NS};
	for (size_t i = 0; i < 2; i++) {
		v2_node *d = node_new(ns[i], true, NULL, 0, 0);
		if (d == NULL || !kid_add(root, d)) {
			node_free(d);
			node_free(root);
			return NULL;
		}
	}
	return root;
}

/* Build a tree from @db's record into *@root / *@index (fresh when absent). */
static int load(st_db *db, v2_node **root, uint64_t *index)
{
	*root = fresh_root();
	*index = 0;
	if (*root == NULL)
		return EC_NOMEM;
	if (db == NULL)
		return EC_OK;
	void *v = NULL;
	size_t len = 0;
	int rc = st_rmeta_get(db, V2_RECORD, &v, &len);
	if (rc == ST_ENOTFOUND)
		return EC_OK;
	if (rc != ST_OK)
		return rc == ST_ENOMEM ? EC_NOMEM : EC_INTERNAL;
	Metastore__V2Store *st = metastore__v2_store__unpack(NULL, len, v);
	free(v);
	if (st == NULL || st->format != 1) {
		if (st)
			metastore__v2_store__free_unpacked(st, NULL);
		return EC_INTERNAL;
	}
	int e = EC_OK;
	for (size_t i = 0; i < st->n_nodes && e == EC_OK; i++)
		e = load_node(*root, st->nodes[i]);
	*index = st->current_index;
	metastore__v2_store__free_unpacked(st, NULL);
	return e;
}

/* ---- lifecycle ------------------------------------------------------------------ */

int ec_v2_new(st_db *db, ec_v2_store **out)
{
	*out = NULL;
	ec_v2_store *s = calloc(1, sizeof *s);
	if (s == NULL)
		return EC_NOMEM;
	pthread_mutex_init(&s->mu, NULL);
	s->db = db;
	s->next_wid = 1;
	int e = load(db, &s->root, &s->index);
	if (e != EC_OK) {
		ec_v2_free(s);
		return e;
	}
	*out = s;
	return EC_OK;
}

static void ring_clear(ec_v2_store *s)
{
	for (size_t i = 0; i < s->ring_n; i++) {
		v2_event *e = &s->ring[(s->ring_start + i) % EC_V2_HISTORY];
		free(e->key);
		free(e->body);
	}
	s->ring_start = s->ring_n = 0;
}

void ec_v2_free(ec_v2_store *s)
{
	if (s == NULL)
		return;
	node_free(s->root);
	ring_clear(s);
	while (s->watchers) {
		v2_watcher *w = s->watchers;
		s->watchers = w->next;
		free(w->path);
		free(w);
	}
	pthread_mutex_destroy(&s->mu);
	free(s);
}

int ec_v2_reload(ec_v2_store *s)
{
	v2_node *root;
	uint64_t index;
	int e = load(s->db, &root, &index);
	if (e != EC_OK) {
		node_free(root);
		return e;
	}
	pthread_mutex_lock(&s->mu);
	node_free(s->root);
	s->root = root;
	s->index = index;
	ring_clear(s);
	while (s->watchers) {
		v2_watcher *w = s->watchers;
		s->watchers = w->next;
		Metastore__V2Response *r = resp_error(400, NULL, index);
		if (r != NULL)
			w->fn(w->ctx, r);
		free(w->path);
		free(w);
	}
	pthread_mutex_unlock(&s->mu);
	return EC_OK;
}

/* ---- the actions ---------------------------------------------------------------- */

/* One action in progress: the response under construction. */
typedef struct act {
	ec_v2_store *s;
	const Metastore__V2Request *r;
	int64_t now;
	Metastore__V2Response *out;
	bool changed;
} act;

static bool readonly_path(const char *p)
{
	return strcmp(p, "/") == 0 || strcmp(p, "/0") == 0 || strcmp(p, KEYS_NS) == 0;
}

static int fail(act *a, int code, const char *cause)
{
	a->out = resp_error(code, cause, a->s->index);
	return a->out ? 0 : ST_ENOMEM;
}

/* Finish a successful event: render {"action":A,"node":N,"prevNode":P},
 * record it, notify. @node_json / @prev_json are rendered objects (prev may
 * be NULL). @key is the event's internal path. */
static int emit(act *a, const char *action, const char *key, bool dir_gone, const char *node_json,
                const char *prev_json, uint32_t status, const char *value, bool refresh)
{
	sbuf b = {0};
	sb_puts(&b, "{\"action\":");
	sb_json_str(&b, action);
	sb_puts(&b, ",\"node\":");
	sb_puts(&b, node_json);
	if (prev_json) {
		sb_puts(&b, ",\"prevNode\":");
		sb_puts(&b, prev_json);
	}
	if (refresh)
		sb_puts(&b, ",\"refresh\":true");
	sb_puts(&b, "}");
	Metastore__V2Response *r = resp_new();
	char *k = strdup(key);
	if (b.oom || r == NULL || k == NULL || !set_str(&r->value, value) ||
	    !set_str(&r->body, b.p)) {
		free(b.p);
		free(k);
		resp_free(r);
		return ST_ENOMEM;
	}
	r->http_status = status;
	r->etcd_index = a->s->index;
	r->modified_index = a->s->index;
	r->found = true;
	a->out = r;
	a->changed = true;
	if (!refresh) {
		v2_event e = {.index = a->s->index, .key = k, .dir_gone = dir_gone, .body = b.p,
		              .status = status};
		history_add(a->s, &e);
	} else {
		free(k);
		free(b.p);
	}
	return 0;
}

/* Render @n into a malloc'd string (NULL when out of memory). */
static char *node_json(const v2_node *n, int levels, int64_t now, bool with_value, uint64_t mod,
                       uint64_t created)
{
	sbuf b = {0};
	render_node(&b, n, levels, now, with_value, mod, created);
	if (b.oom) {
		free(b.p);
		return NULL;
	}
	return b.p;
}

/* etcd's walk with checkDir: the directory @dir, created (with the next index)
 * where missing. NULL with *@code and *@cause on a file in the way. */
static v2_node *make_dirs(act *a, const char *dir, int *code, char **cause, bool *oom)
{
	v2_node *n = a->s->root;
	const char *p = dir;
	*cause = NULL;
	*oom = false;
	while (*p == '/')
		p++;
	while (*p) {
		const char *seg = p;
		while (*p && *p != '/')
			p++;
		size_t sl = (size_t)(p - seg);
		while (*p == '/')
			p++;
		char *name = strndup(seg, sl);
		if (name == NULL) {
			*oom = true;
			return NULL;
		}
		v2_node *k = kid_get(n, name);
		if (k != NULL && !k->dir) {
			free(name);
			*code = EC_V2_NOT_DIR;
			*cause = strdup(k->path);
			return NULL;
		}
		if (k == NULL) {
			char *kp = join(n->path, name);
			k = kp ? node_new(kp, true, NULL, a->s->index + 1, 0) : NULL;
			free(kp);
			free(name);
			name = NULL;
			if (k == NULL || !kid_add(n, k)) {
				node_free(k);
				*oom = true;
				return NULL;
			}
		}
		free(name);
		n = k;
	}
	return n;
}

static char *parent_of(const char *path)
{
	char *p = strdup(path);
	if (p == NULL)
		return NULL;
	char *slash = strrchr(p, '/');
	if (slash == p)
		slash[1] = '\0';
	else
		*slash = '\0';
	return p;
}

/* etcd's internalCreate: set (@replace), create, POST (@unique). */
static int do_create(act *a, const char *path_in, bool dir, const char *value, bool unique,
                     bool replace, const char *action)
{
	ec_v2_store *s = a->s;
	uint64_t next = s->index + 1;
	char *path;
	if (unique) {
		char uniq[32];
		snprintf(uniq, sizeof uniq, "%020" PRIu64, next);
		char *j = join(path_in, uniq);
		path = j ? clean_path(j) : NULL;
		free(j);
	} else {
		path = clean_path(path_in);
	}
	if (path == NULL)
		return ST_ENOMEM;
	int rc;
	if (readonly_path(path)) {
		rc = fail(a, EC_V2_ROOT_RONLY, "/");
		free(path);
		return rc;
	}
	char *dpath = parent_of(path);
	if (dpath == NULL) {
		free(path);
		return ST_ENOMEM;
	}
	int code;
	char *cause;
	bool oom;
	v2_node *d = make_dirs(a, dpath, &code, &cause, &oom);
	free(dpath);
	if (d == NULL) {
		rc = oom ? ST_ENOMEM : fail(a, code, cause);
		free(cause);
		free(path);
		return rc;
	}
	v2_node *old = kid_get(d, base_name(path));
	char *prev = NULL;
	if (old != NULL) {
		if (!replace) {
			rc = fail(a, EC_V2_NODE_EXIST, path);
			free(path);
			return rc;
		}
		if (old->dir) {
			rc = fail(a, EC_V2_NOT_FILE, path);
			free(path);
			return rc;
		}
		prev = node_json(old, 0, a->now, true, 0, 0);
		if (prev == NULL) {
			free(path);
			return ST_ENOMEM;
		}
	}
	int64_t expire = a->r->expiration;
	v2_node *n = node_new(path, dir, value, next, expire);
	if (n == NULL) {
		free(prev);
		free(path);
		return ST_ENOMEM;
	}
	if (old != NULL) {
		kid_unlink(old);
		node_free(old);
	}
	if (!kid_add(d, n)) {
		node_free(n);
		free(prev);
		free(path);
		return ST_ENOMEM;
	}
	s->index = next;
	char *nj = node_json(n, 0, a->now, true, 0, 0);
	rc = nj ? emit(a, action, path, false, nj, prev, prev == NULL ? 201 : 200,
	               dir ? NULL : value, false)
	        : ST_ENOMEM;
	free(nj);
	free(prev);
	free(path);
	return rc;
}

/* Find @path's node for update/CAS/CAD, or answer the error. */
static v2_node *find(act *a, const char *path, int *rc)
{
	int code;
	char *cause;
	v2_node *n = lookup(a->s, path, &code, &cause);
	*rc = 0;
	if (n == NULL)
		*rc = fail(a, code, cause);
	free(cause);
	return n;
}

static int do_update(act *a, const char *path, const char *value, bool refresh)
{
	int rc;
	if (readonly_path(path))
		return fail(a, EC_V2_ROOT_RONLY, "/");
	v2_node *n = find(a, path, &rc);
	if (n == NULL)
		return rc;
	if (n->dir && value[0] != '\0')
		return fail(a, EC_V2_NOT_FILE, path);
	char *prev = node_json(n, 0, a->now, true, 0, 0);
	if (prev == NULL)
		return ST_ENOMEM;
	if (!n->dir && !refresh) {
		char *v = strdup(value);
		if (v == NULL) {
			free(prev);
			return ST_ENOMEM;
		}
		free(n->value);
		n->value = v;
	}
	a->s->index++;
	n->modified = a->s->index;
	n->expire = a->r->expiration;
	char *nj = node_json(n, 0, a->now, true, 0, 0);
	rc = nj ? emit(a, "update", path, false, nj, prev, 200, n->value, refresh) : ST_ENOMEM;
	free(nj);
	free(prev);
	return rc;
}

/* etcd's compareFailCause; 0 when @n matches. */
static bool compare(act *a, const v2_node *n, const char *pv, uint64_t pi, int *rc)
{
	bool im = pi == 0 || n->modified == pi;
	bool vm = pv[0] == '\0' || strcmp(n->value, pv) == 0;
	if (im && vm)
		return true;
	sbuf b = {0};
	if (!im && vm)
		sb_printf(&b, "[%" PRIu64 " != %" PRIu64 "]", pi, n->modified);
	else if (im && !vm) {
		sb_puts(&b, "[");
		sb_puts(&b, pv);
		sb_puts(&b, " != ");
		sb_puts(&b, n->value);
		sb_puts(&b, "]");
	} else {
		sb_puts(&b, "[");
		sb_puts(&b, pv);
		sb_puts(&b, " != ");
		sb_puts(&b, n->value);
		sb_printf(&b, "] [%" PRIu64 " != %" PRIu64 "]", pi, n->modified);
	}
	if (b.oom) {
		free(b.p);
		*rc = ST_ENOMEM;
		return false;
	}
	a->out = resp_new();
	char *j = ec_v2_error_json(EC_V2_TEST_FAILED, b.p, a->s->index);
	free(b.p);
	if (a->out == NULL || j == NULL) {
		free(j);
		resp_free(a->out);
		a->out = NULL;
		*rc = ST_ENOMEM;
		return false;
	}
	a->out->body = j;
	a->out->code = EC_V2_TEST_FAILED;
	a->out->http_status = 412;
	a->out->etcd_index = a->s->index;
	*rc = 0;
	return false;
}

static int do_cas(act *a, const char *path, const char *pv, uint64_t pi, const char *value,
                  bool refresh)
{
	int rc;
	if (readonly_path(path))
		return fail(a, EC_V2_ROOT_RONLY, "/");
	v2_node *n = find(a, path, &rc);
	if (n == NULL)
		return rc;
	if (n->dir)
		return fail(a, EC_V2_NOT_FILE, path);
	if (!compare(a, n, pv, pi, &rc))
		return rc;
	char *prev = node_json(n, 0, a->now, true, 0, 0);
	char *v = strdup(refresh ? n->value : value);
	if (prev == NULL || v == NULL) {
		free(prev);
		free(v);
		return ST_ENOMEM;
	}
	free(n->value);
	n->value = v;
	a->s->index++;
	n->modified = a->s->index;
	n->expire = a->r->expiration;
	char *nj = node_json(n, 0, a->now, true, 0, 0);
	rc = nj ? emit(a, "compareAndSwap", path, false, nj, prev, 200, n->value, refresh)
	        : ST_ENOMEM;
	free(nj);
	free(prev);
	return rc;
}

/* Remove @n (already checked) and emit @action for it. */
static int remove_node(act *a, v2_node *n, const char *action)
{
	char *prev = node_json(n, 0, a->now, true, 0, 0);
	if (prev == NULL)
		return ST_ENOMEM;
	a->s->index++;
	char *nj = node_json(n, 0, a->now, false, a->s->index, 0);
	char *path = strdup(n->path);
	bool dir = n->dir;
	int rc = ST_ENOMEM;
	if (nj != NULL && path != NULL) {
		kid_unlink(n);
		node_free(n);
		rc = emit(a, action, path, dir, nj, prev, 200, NULL, false);
	} else {
		a->s->index--;
	}
	free(nj);
	free(prev);
	free(path);
	return rc;
}

static int do_delete(act *a, const char *path, bool dir, bool recursive)
{
	int rc;
	if (recursive)
		dir = true;
	if (readonly_path(path))
		return fail(a, EC_V2_ROOT_RONLY, "/");
	v2_node *n = find(a, path, &rc);
	if (n == NULL)
		return rc;
	if (n->dir) {
		if (!dir)
			return fail(a, EC_V2_NOT_FILE, path);
		if (n->nkids > 0 && !recursive)
			return fail(a, EC_V2_DIR_NOT_EMPTY, path);
	}
	return remove_node(a, n, "delete");
}

static int do_cad(act *a, const char *path, const char *pv, uint64_t pi)
{
	int rc;
	if (readonly_path(path))
		return fail(a, EC_V2_ROOT_RONLY, "/");
	v2_node *n = find(a, path, &rc);
	if (n == NULL)
		return rc;
	if (n->dir)
		return fail(a, EC_V2_NOT_FILE, path);
	if (!compare(a, n, pv, pi, &rc))
		return rc;
	return remove_node(a, n, "compareAndDelete");
}

/* The first node (depth first, key order) that expired by @now. */
static v2_node *first_expired(v2_node *n, int64_t now)
{
	if (n->expire != 0 && n->expire <= now && n->parent != NULL)
		return n;
	for (size_t i = 0; i < n->nkids; i++) {
		v2_node *e = first_expired(n->kids[i], now);
		if (e)
			return e;
	}
	return NULL;
}

static int64_t min_expiry(const v2_node *n)
{
	int64_t m = n->expire;
	for (size_t i = 0; i < n->nkids; i++) {
		int64_t k = min_expiry(n->kids[i]);
		if (k != 0 && (m == 0 || k < m))
			m = k;
	}
	return m;
}

/* etcd's DeleteExpiredKeys: an "expire" event per expired node, in order. */
static int do_sync(act *a)
{
	v2_node *n;
	while ((n = first_expired(a->s->root, a->now)) != NULL) {
		Metastore__V2Response *keep = a->out;
		a->out = NULL;
		int rc = remove_node(a, n, "expire");
		resp_free(keep);
		if (rc != 0)
			return rc;
	}
	if (a->out == NULL) {
		a->out = resp_new();
		if (a->out == NULL)
			return ST_ENOMEM;
		a->out->http_status = 200;
		a->out->etcd_index = a->s->index;
	}
	return 0;
}

/* A get's response (lock held). */
static int get_locked(ec_v2_store *s, const char *path, bool recursive, int64_t now,
                      Metastore__V2Response **out)
{
	act a = {.s = s, .now = now};
	int rc;
	v2_node *n = find(&a, path, &rc);
	if (n == NULL) {
		*out = a.out;
		return rc == 0 ? EC_OK : EC_NOMEM;
	}
	sbuf b = {0};
	sb_puts(&b, "{\"action\":\"get\",\"node\":");
	render_node(&b, n, recursive ? -1 : 1, now, true, 0, 0);
	sb_puts(&b, "}");
	Metastore__V2Response *r = resp_new();
	if (b.oom || r == NULL || !set_str(&r->body, b.p) || (!n->dir && !set_str(&r->value, n->value))) {
		free(b.p);
		resp_free(r);
		return EC_NOMEM;
	}
	free(b.p);
	r->http_status = 200;
	r->etcd_index = s->index;
	r->modified_index = n->modified;
	r->found = true;
	*out = r;
	return EC_OK;
}

int ec_v2_apply(ec_v2_store *s, const Metastore__V2Request *r, Metastore__V2Response **out)
{
	*out = NULL;
	char *path = clean_path(r->path ? r->path : "/");
	if (path == NULL)
		return ST_ENOMEM;
	pthread_mutex_lock(&s->mu);
	act a = {.s = s, .r = r, .now = r->time};
	const char *m = r->method ? r->method : "";
	const char *val = r->val ? r->val : "";
	const char *pv = r->prev_value ? r->prev_value : "";
	bool refresh = r->refresh_set_case == METASTORE__V2_REQUEST__REFRESH_SET_REFRESH && r->refresh;
	int rc = 0;
	if (strcmp(m, "POST") == 0) {
		rc = do_create(&a, path, r->dir, val, true, false, "create");
	} else if (strcmp(m, "PUT") == 0) {
		bool has_exist = r->prev_exist_set_case == METASTORE__V2_REQUEST__PREV_EXIST_SET_PREV_EXIST;
		if (has_exist && r->prev_exist) {
			if (r->prev_index == 0 && pv[0] == '\0')
				rc = do_update(&a, path, val, refresh);
			else
				rc = do_cas(&a, path, pv, r->prev_index, val, refresh);
		} else if (has_exist) {
			rc = do_create(&a, path, r->dir, val, false, false, "create");
		} else if (r->prev_index > 0 || pv[0] != '\0') {
			rc = do_cas(&a, path, pv, r->prev_index, val, refresh);
		} else {
			rc = do_create(&a, path, r->dir, val, false, true, "set");
		}
	} else if (strcmp(m, "DELETE") == 0) {
		if (r->prev_index > 0 || pv[0] != '\0')
			rc = do_cad(&a, path, pv, r->prev_index);
		else
			rc = do_delete(&a, path, r->dir, r->recursive);
	} else if (strcmp(m, "QGET") == 0 || strcmp(m, "GET") == 0) {
		int e = get_locked(s, path, r->recursive, r->time, &a.out);
		rc = e == EC_OK ? 0 : ST_ENOMEM;
	} else if (strcmp(m, "SYNC") == 0) {
		rc = do_sync(&a);
	} else {
		rc = fail(&a, EC_V2_INVALID_FIELD, NULL);
	}
	if (rc == 0 && a.changed)
		rc = persist(s);
	pthread_mutex_unlock(&s->mu);
	free(path);
	if (rc != 0) {
		resp_free(a.out);
		return rc;
	}
	*out = a.out;
	return 0;
}

int ec_v2_get(ec_v2_store *s, const char *path, bool recursive, bool sorted, int64_t now_ns,
              Metastore__V2Response **out)
{
	(void)sorted; /* children are kept in key order */
	*out = NULL;
	char *p = clean_path(path ? path : "/");
	if (p == NULL)
		return EC_NOMEM;
	pthread_mutex_lock(&s->mu);
	int e = get_locked(s, p, recursive, now_ns, out);
	pthread_mutex_unlock(&s->mu);
	free(p);
	return e;
}

int ec_v2_list(ec_v2_store *s, const char *dir, char ***names, size_t *n)
{
	*names = NULL;
	*n = 0;
	char *p = clean_path(dir ? dir : "/");
	if (p == NULL)
		return EC_NOMEM;
	pthread_mutex_lock(&s->mu);
	int code;
	char *cause;
	v2_node *d = lookup(s, p, &code, &cause);
	free(cause);
	free(p);
	int e = EC_OK;
	if (d == NULL) {
		e = code;
	} else if (!d->dir) {
		e = EC_V2_NOT_DIR;
	} else if (d->nkids > 0) {
		char **arr = calloc(d->nkids, sizeof *arr);
		if (arr == NULL)
			e = EC_NOMEM;
		for (size_t i = 0; arr != NULL && i < d->nkids; i++) {
			arr[i] = strdup(base_name(d->kids[i]->path));
			if (arr[i] == NULL) {
				for (size_t k = 0; k < i; k++)
					free(arr[k]);
				free(arr);
				arr = NULL;
				e = EC_NOMEM;
			}
		}
		if (arr != NULL) {
			*names = arr;
			*n = d->nkids;
		}
	}
	pthread_mutex_unlock(&s->mu);
	return e;
}

uint64_t ec_v2_index(ec_v2_store *s)
{
	pthread_mutex_lock(&s->mu);
	uint64_t i = s->index;
	pthread_mutex_unlock(&s->mu);
	return i;
}

int64_t ec_v2_next_expiry(ec_v2_store *s)
{
	pthread_mutex_lock(&s->mu);
	int64_t m = min_expiry(s->root);
	pthread_mutex_unlock(&s->mu);
	return m;
}

int ec_v2_watch(ec_v2_store *s, const char *path, bool recursive, uint64_t since,
                ec_v2_watch_fn fn, void *ctx, Metastore__V2Response **now, uint64_t *wid)
{
	*now = NULL;
	*wid = 0;
	char *p = clean_path(path ? path : "/");
	if (p == NULL)
		return EC_NOMEM;
	pthread_mutex_lock(&s->mu);
	if (since == 0)
		since = s->index + 1;
	uint64_t start = s->ring_n ? s->ring[s->ring_start].index : 0;
	int e = EC_OK;
	if (since < start) {
		char cause[96];
		snprintf(cause, sizeof cause, "the requested history has been cleared [%" PRIu64 "/%" PRIu64 "]",
		         start, since);
		*now = resp_error(EC_V2_EVENT_INDEX_CLEARED, NULL, s->index);
		if (*now != NULL) {
			free((*now)->body);
			(*now)->body = ec_v2_error_json(EC_V2_EVENT_INDEX_CLEARED, cause, s->index);
			if ((*now)->body == NULL) {
				(*now)->body = (char *)protobuf_c_empty_string;
				resp_free(*now);
				*now = NULL;
			}
		}
		e = *now ? EC_OK : EC_NOMEM;
		free(p);
	} else {
		for (size_t i = 0; i < s->ring_n; i++) {
			const v2_event *ev = &s->ring[(s->ring_start + i) % EC_V2_HISTORY];
			if (ev->index >= since && ev_matches(ev, p, recursive, false)) {
				*now = ev_resp(ev);
				e = *now ? EC_OK : EC_NOMEM;
				break;
			}
		}
		if (*now != NULL || e != EC_OK) {
			free(p);
		} else {
			v2_watcher *w = calloc(1, sizeof *w);
			if (w == NULL) {
				free(p);
				e = EC_NOMEM;
			} else {
				w->id = s->next_wid++;
				w->path = p;
				w->recursive = recursive;
				w->since = since;
				w->fn = fn;
				w->ctx = ctx;
				w->next = s->watchers;
				s->watchers = w;
				*wid = w->id;
			}
		}
	}
	pthread_mutex_unlock(&s->mu);
	return e;
}

bool ec_v2_unwatch(ec_v2_store *s, uint64_t wid)
{
	bool found = false;
	pthread_mutex_lock(&s->mu);
	for (v2_watcher **pp = &s->watchers; *pp; pp = &(*pp)->next) {
		if ((*pp)->id == wid) {
			v2_watcher *w = *pp;
			*pp = w->next;
			free(w->path);
			free(w);
			found = true;
			break;
		}
	}
	pthread_mutex_unlock(&s->mu);
	return found;
}

int ec_v2_apply_hook(void *arg, const Metastore__V2Request *r, ProtobufCMessage **resp)
{
	Metastore__V2Response *out = NULL;
	int rc = ec_v2_apply(arg, r, &out);
	*resp = (ProtobufCMessage *)out;
	return rc;
}
