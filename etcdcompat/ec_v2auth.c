/*
 * ec_v2auth.c: etcd 3.4's v2 auth rules over an ec_v2a_store (ec_v2auth.h).
 *
 * Documents are decoded and encoded with jansson in the shapes Go's
 * encoding/json gives etcd's structs (a nil slice is null, an empty one []).
 * Every write first makes sure the "/2", "/2/users/", "/2/roles/" directories
 * and "/2/enabled" exist, as etcd's ensureAuthDirectories does, once per
 * handle lifetime at most per success.
 */
#include "etcdcompat/ec_v2auth.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "etcdcompat/ec_auth.h"

#define ROOT  "root"
#define GUEST "guest"

/* ---- small helpers -------------------------------------------------------------- */

static void set_err(ec_v2a_err *e, int status, const char *fmt, ...)
{
	va_list ap;
	e->status = status;
	va_start(ap, fmt);
	vsnprintf(e->msg, sizeof e->msg, fmt, ap);
	va_end(ap);
}

/* An "auth: ..." error as etcd's authErr builds it. */
#define auth_err(e, status, ...) set_err_auth((e), (status), __VA_ARGS__)
static void set_err_auth(ec_v2a_err *e, int status, const char *fmt, ...)
{
	char buf[220];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof buf, fmt, ap);
	va_end(ap);
	set_err(e, status, "auth: %s", buf);
}

/* A store failure that is none of the codes etcd maps: 500 with its text. */
static void store_err(ec_v2a_err *e, int rc, const char *msg)
{
	if (msg != NULL)
		set_err(e, 500, "%s", msg);
	else
		set_err(e, 500, "v2 store error %d", rc);
}

void ec_v2a_strv_free(ec_v2a_strv *s)
{
	if (s == NULL)
		return;
	for (size_t i = 0; i < s->n; i++)
		free(s->v[i]);
	free(s->v);
	s->v = NULL;
	s->n = 0;
}

void ec_v2a_user_free(ec_v2a_user *u)
{
	if (u == NULL)
		return;
	free(u->name);
	if (u->password != NULL) {
		memset(u->password, 0, strlen(u->password));
		free(u->password);
	}
	ec_v2a_strv_free(&u->roles);
	ec_v2a_strv_free(&u->grant);
	ec_v2a_strv_free(&u->revoke);
	memset(u, 0, sizeof *u);
}

static void perms_free(ec_v2a_perms *p)
{
	ec_v2a_strv_free(&p->read);
	ec_v2a_strv_free(&p->write);
}

void ec_v2a_role_free(ec_v2a_role *r)
{
	if (r == NULL)
		return;
	free(r->name);
	perms_free(&r->perms);
	perms_free(&r->grant);
	perms_free(&r->revoke);
	memset(r, 0, sizeof *r);
}

static bool strv_has(const ec_v2a_strv *s, const char *x)
{
	for (size_t i = 0; i < s->n; i++)
		if (strcmp(s->v[i], x) == 0)
			return true;
	return false;
}

static int strv_add(ec_v2a_strv *s, const char *x)
{
	char **nv = realloc(s->v, (s->n + 1) * sizeof *nv);
	if (nv == NULL)
		return -1;
	s->v = nv;
	if ((s->v[s->n] = strdup(x)) == NULL)
		return -1;
	s->n++;
	return 0;
}

static void strv_remove(ec_v2a_strv *s, const char *x)
{
	for (size_t i = 0; i < s->n; i++)
		if (strcmp(s->v[i], x) == 0) {
			free(s->v[i]);
			memmove(&s->v[i], &s->v[i + 1], (s->n - i - 1) * sizeof *s->v);
			s->n--;
			return;
		}
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static void strv_sort(ec_v2a_strv *s)
{
	if (s->n > 1)
		qsort(s->v, s->n, sizeof *s->v, cmp_str);
}

static int strv_copy(ec_v2a_strv *dst, const ec_v2a_strv *src)
{
	memset(dst, 0, sizeof *dst);
	for (size_t i = 0; i < src->n; i++)
		if (strv_add(dst, src->v[i]) != 0)
			return -1;
	return 0;
}

/* Same members, in any order (both without duplicates). */
static bool strv_same(const ec_v2a_strv *a, const ec_v2a_strv *b)
{
	if (a->n != b->n)
		return false;
	for (size_t i = 0; i < a->n; i++)
		if (!strv_has(b, a->v[i]))
			return false;
	return true;
}

/* ---- JSON --------------------------------------------------------------------- */

/* A JSON array of strings (or null/absent) into @out. -1 on a wrong type. */
static int strv_from_json(json_t *j, ec_v2a_strv *out)
{
	if (j == NULL || json_is_null(j))
		return 0;
	if (!json_is_array(j))
		return -1;
	if (out->v == NULL && (out->v = calloc(1, sizeof(char *))) == NULL)
		return -1; /* [] stays apart from null, as Go's decoder keeps it */
	size_t i;
	json_t *v;
	json_array_foreach(j, i, v)
	{
		if (!json_is_string(v) || strv_add(out, json_string_value(v)) != 0)
			return -1;
	}
	return 0;
}

static json_t *strv_to_json(const ec_v2a_strv *s, bool null_if_empty)
{
	if (s->v == NULL && null_if_empty)
		return json_null();
	json_t *a = json_array();
	for (size_t i = 0; a != NULL && i < s->n; i++)
		json_array_append_new(a, json_string(s->v[i]));
	return a;
}

static int str_from_json(json_t *j, char **out)
{
	if (j == NULL || json_is_null(j))
		return 0;
	if (!json_is_string(j))
		return -1;
	return (*out = strdup(json_string_value(j))) != NULL ? 0 : -1;
}

/* @len bytes at @text as a JSON object (the caller decrefs), or NULL. */
static json_t *object_load(const char *text, size_t len)
{
	json_t *j = json_loadb(text, len, JSON_DECODE_ANY, NULL);
	if (j != NULL && !json_is_object(j)) {
		json_decref(j);
		j = NULL;
	}
	return j;
}

int ec_v2a_user_parse(const char *text, size_t len, ec_v2a_user *out)
{
	memset(out, 0, sizeof *out);
	json_t *j = object_load(text, len);
	if (j == NULL)
		return -1;
	int rc = 0;
	rc |= str_from_json(json_object_get(j, "user"), &out->name);
	rc |= str_from_json(json_object_get(j, "password"), &out->password);
	rc |= strv_from_json(json_object_get(j, "roles"), &out->roles);
	rc |= strv_from_json(json_object_get(j, "grant"), &out->grant);
	rc |= strv_from_json(json_object_get(j, "revoke"), &out->revoke);
	json_decref(j);
	if (rc != 0) {
		ec_v2a_user_free(out);
		return -1;
	}
	if (out->name == NULL && (out->name = strdup("")) == NULL)
		return -1;
	return 0;
}

/* {"kv":{"read":[..],"write":[..]}} into @p; *@present whether @j was an object. */
static int perms_from_json(json_t *j, ec_v2a_perms *p, bool *present)
{
	if (present)
		*present = false;
	if (j == NULL || json_is_null(j))
		return 0;
	if (!json_is_object(j))
		return -1;
	if (present)
		*present = true;
	json_t *kv = json_object_get(j, "kv");
	if (kv == NULL || json_is_null(kv))
		return 0;
	if (!json_is_object(kv))
		return -1;
	if (strv_from_json(json_object_get(kv, "read"), &p->read) != 0 ||
	    strv_from_json(json_object_get(kv, "write"), &p->write) != 0)
		return -1;
	return 0;
}

int ec_v2a_role_parse(const char *text, size_t len, ec_v2a_role *out)
{
	memset(out, 0, sizeof *out);
	json_t *j = object_load(text, len);
	if (j == NULL)
		return -1;
	int rc = 0;
	rc |= str_from_json(json_object_get(j, "role"), &out->name);
	rc |= perms_from_json(json_object_get(j, "permissions"), &out->perms, NULL);
	rc |= perms_from_json(json_object_get(j, "grant"), &out->grant, &out->has_grant);
	rc |= perms_from_json(json_object_get(j, "revoke"), &out->revoke, &out->has_revoke);
	json_decref(j);
	if (rc != 0) {
		ec_v2a_role_free(out);
		return -1;
	}
	if (out->name == NULL && (out->name = strdup("")) == NULL)
		return -1;
	return 0;
}

static char *dump(json_t *j)
{
	char *s = j != NULL ? json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
	json_decref(j);
	return s;
}

char *ec_v2a_user_json(const ec_v2a_user *u, bool with_password)
{
	json_t *j = json_object();
	if (j == NULL)
		return NULL;
	json_object_set_new(j, "user", json_string(u->name ? u->name : ""));
	if (with_password && u->password != NULL && u->password[0] != '\0')
		json_object_set_new(j, "password", json_string(u->password));
	json_object_set_new(j, "roles", strv_to_json(&u->roles, true));
	return dump(j);
}

static json_t *perms_to_json(const ec_v2a_perms *p)
{
	json_t *kv = json_object();
	json_t *o = json_object();
	if (kv == NULL || o == NULL) {
		json_decref(kv);
		json_decref(o);
		return NULL;
	}
	json_object_set_new(kv, "read", strv_to_json(&p->read, true));
	json_object_set_new(kv, "write", strv_to_json(&p->write, true));
	json_object_set_new(o, "kv", kv);
	return o;
}

/* A role as a jansson object (for lists that embed roles). */
static json_t *role_to_json(const ec_v2a_role *r)
{
	json_t *j = json_object();
	if (j == NULL)
		return NULL;
	json_object_set_new(j, "role", json_string(r->name ? r->name : ""));
	json_object_set_new(j, "permissions", perms_to_json(&r->perms));
	return j;
}

char *ec_v2a_role_json(const ec_v2a_role *r)
{
	return dump(role_to_json(r));
}

/* ---- permissions --------------------------------------------------------------- */

bool ec_v2a_match(const char *pattern, const char *key)
{
	size_t n = strlen(pattern);
	if (n == 0)
		return false;
	if (pattern[n - 1] == '*')
		return strncmp(key, pattern, n - 1) == 0;
	return strcmp(key, pattern) == 0;
}

bool ec_v2a_prefix_match(const char *pattern, const char *key)
{
	size_t n = strlen(pattern);
	if (n == 0 || pattern[n - 1] != '*')
		return false;
	return strncmp(key, pattern, n - 1) == 0;
}

bool ec_v2a_role_allows(const ec_v2a_role *r, const char *key, bool write, bool recursive)
{
	if (r->name != NULL && strcmp(r->name, ROOT) == 0)
		return true;
	const ec_v2a_strv *list = write ? &r->perms.write : &r->perms.read;
	for (size_t i = 0; i < list->n; i++)
		if (recursive ? ec_v2a_prefix_match(list->v[i], key)
		              : ec_v2a_match(list->v[i], key))
			return true;
	return false;
}

/* ---- the store ----------------------------------------------------------------- */

static int fill_builtin(ec_v2a_role *out, const char *name)
{
	memset(out, 0, sizeof *out);
	if ((out->name = strdup(name)) == NULL || strv_add(&out->perms.read, "/*") != 0 ||
	    strv_add(&out->perms.write, "/*") != 0) {
		ec_v2a_role_free(out);
		return -1;
	}
	return 0;
}

/* etcd's attachRootRole. */
static int attach_root(ec_v2a_user *u)
{
	if (strv_has(&u->roles, ROOT))
		return 0;
	return strv_add(&u->roles, ROOT);
}

static int ensure_dirs(ec_v2a *a, ec_v2a_err *err)
{
	static const char *const dirs[] = {"/2", "/2/users/", "/2/roles/"};
	const char *msg = NULL;
	for (size_t i = 0; i < 3; i++) {
		int rc = a->st->mkdir(a->st->ctx, dirs[i], &msg);
		if (rc != 0 && rc != EC_V2A_NODE_EXIST) {
			store_err(err, rc, msg);
			return -1;
		}
	}
	int rc = a->st->set(a->st->ctx, "/2/enabled", "false", 0, &msg);
	if (rc != 0 && rc != EC_V2A_NODE_EXIST) {
		store_err(err, rc, msg);
		return -1;
	}
	return 0;
}

static int list_names(ec_v2a *a, const char *dir, ec_v2a_strv *out, ec_v2a_err *err)
{
	const char *msg = NULL;
	char **names = NULL;
	size_t n = 0;
	int rc = a->st->list(a->st->ctx, dir, &names, &n, &msg);
	if (rc == EC_V2A_KEY_NOT_FOUND)
		return 0;
	if (rc != 0) {
		store_err(err, rc, msg);
		return -1;
	}
	int ret = 0;
	for (size_t i = 0; i < n; i++) {
		if (ret == 0 && strv_add(out, names[i]) != 0) {
			set_err(err, 500, "out of memory");
			ret = -1;
		}
		free(names[i]);
	}
	free(names);
	strv_sort(out);
	return ret;
}

int ec_v2a_all_users(ec_v2a *a, ec_v2a_strv *out, ec_v2a_err *err)
{
	memset(out, 0, sizeof *out);
	memset(err, 0, sizeof *err);
	return list_names(a, "/2/users", out, err);
}

int ec_v2a_all_roles(ec_v2a *a, ec_v2a_strv *out, ec_v2a_err *err)
{
	memset(out, 0, sizeof *out);
	memset(err, 0, sizeof *err);
	if (list_names(a, "/2/roles", out, err) != 0)
		return -1;
	if (!strv_has(out, ROOT) && strv_add(out, ROOT) != 0) {
		set_err(err, 500, "out of memory");
		return -1;
	}
	strv_sort(out);
	return 0;
}

/* A name that is a single path element (no '/', not empty, not "." or ".."). */
static bool name_ok(const char *name)
{
	return name != NULL && name[0] != '\0' && strchr(name, '/') == NULL &&
	       strcmp(name, ".") != 0 && strcmp(name, "..") != 0;
}

static int get_doc(ec_v2a *a, const char *kind, const char *name, bool quorum, char **value,
                   ec_v2a_err *err, const char *what)
{
	char path[512];
	const char *msg = NULL;
	if (!name_ok(name) || strlen(name) > 400) {
		auth_err(err, 404, "%s %s does not exist.", what, name ? name : "");
		return -1;
	}
	snprintf(path, sizeof path, "/2/%s/%s", kind, name);
	int rc = a->st->get(a->st->ctx, path, quorum, value, &msg);
	if (rc == EC_V2A_KEY_NOT_FOUND) {
		auth_err(err, 404, "%s %s does not exist.", what, name);
		return -1;
	}
	if (rc != 0) {
		store_err(err, rc, msg);
		return -1;
	}
	return 0;
}

int ec_v2a_get_user(ec_v2a *a, const char *name, bool quorum, ec_v2a_user *out, ec_v2a_err *err)
{
	memset(out, 0, sizeof *out);
	memset(err, 0, sizeof *err);
	char *v = NULL;
	if (get_doc(a, "users", name, quorum, &v, err, "User") != 0)
		return -1;
	int rc = ec_v2a_user_parse(v, strlen(v), out);
	free(v);
	if (rc != 0) {
		set_err(err, 500, "invalid user document for %s", name);
		return -1;
	}
	if (strcmp(out->name, ROOT) == 0 && attach_root(out) != 0) {
		ec_v2a_user_free(out);
		set_err(err, 500, "out of memory");
		return -1;
	}
	return 0;
}

int ec_v2a_get_role(ec_v2a *a, const char *name, bool quorum, ec_v2a_role *out, ec_v2a_err *err)
{
	memset(out, 0, sizeof *out);
	memset(err, 0, sizeof *err);
	if (name != NULL && strcmp(name, ROOT) == 0) {
		if (fill_builtin(out, ROOT) != 0) {
			set_err(err, 500, "out of memory");
			return -1;
		}
		return 0;
	}
	char *v = NULL;
	if (get_doc(a, "roles", name, quorum, &v, err, "Role") != 0)
		return -1;
	int rc = ec_v2a_role_parse(v, strlen(v), out);
	free(v);
	if (rc != 0) {
		set_err(err, 500, "invalid role document for %s", name);
		return -1;
	}
	return 0;
}

/* Write a user or role document (@prev_exist as ec_v2a_store.set). Returns the
 * store's code (0, 100, 105) or -1 with *@err set for anything else. */
static int put_doc(ec_v2a *a, const char *kind, const char *name, const char *doc, int prev_exist,
                   ec_v2a_err *err)
{
	char path[512];
	const char *msg = NULL;
	if (!name_ok(name) || strlen(name) > 400) {
		set_err(err, 400, "Invalid path");
		return -1;
	}
	if (ensure_dirs(a, err) != 0)
		return -1;
	snprintf(path, sizeof path, "/2/%s/%s", kind, name);
	int rc = a->st->set(a->st->ctx, path, doc, prev_exist, &msg);
	if (rc != 0 && rc != EC_V2A_KEY_NOT_FOUND && rc != EC_V2A_NODE_EXIST) {
		store_err(err, rc, msg);
		return -1;
	}
	return rc;
}

static int hash_into(ec_v2a *a, const char *clear, char **out, ec_v2a_err *err)
{
	char h[128];
	int cost = a->bcrypt_cost > 0 ? a->bcrypt_cost : EC_AUTH_BCRYPT_DEFAULT_COST;
	if (ec_auth_hash_password(clear, cost, h, sizeof h) != 0 || (*out = strdup(h)) == NULL) {
		set_err(err, 500, "cannot hash the password");
		return -1;
	}
	return 0;
}

/* etcd's CreateUser (createUserInternal). @in has a clear password; *@out gets
 * the stored user. */
static int create_user(ec_v2a *a, const ec_v2a_user *in, ec_v2a_user *out, ec_v2a_err *err)
{
	memset(out, 0, sizeof *out);
	if ((out->name = strdup(in->name)) == NULL || strv_copy(&out->roles, &in->roles) != 0)
		goto oom;
	if (in->roles.v != NULL && out->roles.v == NULL)
		out->roles.v = calloc(1, sizeof(char *)); /* keep [] apart from null */
	if (strcmp(in->name, ROOT) == 0 && attach_root(out) != 0)
		goto oom;
	if (in->password == NULL || in->password[0] == '\0') {
		auth_err(err, 400, "Cannot create user %s with an empty password", in->name);
		return -1;
	}
	if (hash_into(a, in->password, &out->password, err) != 0)
		return -1;
	char *doc = ec_v2a_user_json(out, true);
	if (doc == NULL)
		goto oom;
	int rc = put_doc(a, "users", in->name, doc, 0, err);
	free(doc);
	if (rc == EC_V2A_NODE_EXIST) {
		auth_err(err, 409, "User %s already exists.", in->name);
		return -1;
	}
	return rc == 0 ? 0 : -1;
oom:
	set_err(err, 500, "out of memory");
	return -1;
}

/* etcd's UpdateUser: merge @in (password, grant, revoke) into the stored user. */
static int update_user(ec_v2a *a, const ec_v2a_user *in, ec_v2a_user *out, ec_v2a_err *err)
{
	ec_v2a_user old;
	if (ec_v2a_get_user(a, in->name, true, &old, err) != 0)
		return -1;
	memset(out, 0, sizeof *out);
	int ret = -1;
	if ((out->name = strdup(old.name)) == NULL || strv_copy(&out->roles, &old.roles) != 0) {
		set_err(err, 500, "out of memory");
		goto done;
	}
	bool new_password = in->password != NULL && in->password[0] != '\0';
	if (new_password) {
		if (hash_into(a, in->password, &out->password, err) != 0)
			goto done;
	} else if (old.password != NULL && (out->password = strdup(old.password)) == NULL) {
		set_err(err, 500, "out of memory");
		goto done;
	}
	for (size_t i = 0; i < in->grant.n; i++) {
		if (strv_has(&out->roles, in->grant.v[i])) {
			auth_err(err, 409, "Granting duplicate role %s for user %s", in->grant.v[i],
			         in->name);
			goto done;
		}
		if (strv_add(&out->roles, in->grant.v[i]) != 0) {
			set_err(err, 500, "out of memory");
			goto done;
		}
	}
	for (size_t i = 0; i < in->revoke.n; i++) {
		if (!strv_has(&out->roles, in->revoke.v[i])) {
			auth_err(err, 409, "Revoking ungranted role %s for user %s",
			         in->revoke.v[i], in->name);
			goto done;
		}
		strv_remove(&out->roles, in->revoke.v[i]);
	}
	strv_sort(&out->roles);
	if (out->roles.v == NULL)
		out->roles.v = calloc(1, sizeof(char *)); /* Go's set.Values(): [] */
	if (!new_password && strv_same(&old.roles, &out->roles)) {
		auth_err(err, 400,
		         "User not updated. Use grant/revoke/password to update the user.");
		goto done;
	}
	char *doc = ec_v2a_user_json(out, true);
	if (doc == NULL) {
		set_err(err, 500, "out of memory");
		goto done;
	}
	int rc = put_doc(a, "users", in->name, doc, 1, err);
	free(doc);
	if (rc == EC_V2A_KEY_NOT_FOUND)
		auth_err(err, 404, "User %s doesn't exist.", in->name);
	else if (rc == 0)
		ret = 0;
done:
	ec_v2a_user_free(&old);
	if (ret != 0)
		ec_v2a_user_free(out);
	return ret;
}

int ec_v2a_put_user(ec_v2a *a, const ec_v2a_user *in, ec_v2a_user *out, bool *created,
                    ec_v2a_err *err)
{
	memset(err, 0, sizeof *err);
	memset(out, 0, sizeof *out);
	*created = false;
	int rc;
	if (in->grant.n == 0 && in->revoke.n == 0) {
		if (in->roles.n != 0) {
			rc = create_user(a, in, out, err);
		} else {
			ec_v2a_user old;
			ec_v2a_err gerr;
			if (ec_v2a_get_user(a, in->name, true, &old, &gerr) == 0) {
				ec_v2a_user_free(&old);
				rc = update_user(a, in, out, err);
			} else if (gerr.status == 404) {
				rc = create_user(a, in, out, err);
				*created = rc == 0;
			} else {
				*err = gerr;
				rc = -1;
			}
		}
	} else if (in->roles.n != 0) {
		set_err(err, 400, "User JSON contains both roles and grant/revoke");
		rc = -1;
	} else {
		rc = update_user(a, in, out, err);
	}
	if (rc != 0) {
		ec_v2a_user_free(out);
		return -1;
	}
	if (out->password != NULL) {
		memset(out->password, 0, strlen(out->password));
		free(out->password);
		out->password = NULL;
	}
	return 0;
}

static bool perms_empty(const ec_v2a_perms *p)
{
	return p->read.n == 0 && p->write.n == 0;
}

/* etcd's RWPermission.Grant into @dst (a copy of the old lists). */
static int grant_list(ec_v2a_strv *dst, const ec_v2a_strv *add, const char *what, ec_v2a_err *err)
{
	for (size_t i = 0; i < add->n; i++) {
		if (strv_has(dst, add->v[i])) {
			auth_err(err, 409, "Granting duplicate %s permission %s", what, add->v[i]);
			return -1;
		}
		if (strv_add(dst, add->v[i]) != 0) {
			set_err(err, 500, "out of memory");
			return -1;
		}
	}
	strv_sort(dst);
	if (dst->v == NULL)
		dst->v = calloc(1, sizeof(char *));
	return 0;
}

static void revoke_list(ec_v2a_strv *dst, const ec_v2a_strv *rm)
{
	for (size_t i = 0; i < rm->n; i++)
		strv_remove(dst, rm->v[i]);
	strv_sort(dst);
	if (dst->v == NULL)
		dst->v = calloc(1, sizeof(char *));
}

static int role_doc_put(ec_v2a *a, const ec_v2a_role *r, int prev_exist, ec_v2a_err *err)
{
	char *doc = ec_v2a_role_json(r);
	if (doc == NULL) {
		set_err(err, 500, "out of memory");
		return -1;
	}
	int rc = put_doc(a, "roles", r->name, doc, prev_exist, err);
	free(doc);
	return rc;
}

/* etcd's CreateRole. */
static int create_role(ec_v2a *a, const ec_v2a_role *r, ec_v2a_err *err)
{
	if (strcmp(r->name, ROOT) == 0) {
		auth_err(err, 403, "Cannot modify role %s: is root role.", r->name);
		return -1;
	}
	int rc = role_doc_put(a, r, 0, err);
	if (rc == EC_V2A_NODE_EXIST) {
		auth_err(err, 409, "Role %s already exists.", r->name);
		return -1;
	}
	return rc == 0 ? 0 : -1;
}

int ec_v2a_put_role(ec_v2a *a, const ec_v2a_role *in, ec_v2a_role *out, bool *created,
                    ec_v2a_err *err)
{
	memset(err, 0, sizeof *err);
	memset(out, 0, sizeof *out);
	*created = false;
	if (perms_empty(&in->grant) && perms_empty(&in->revoke)) {
		ec_v2a_role r = {.name = in->name, .perms = in->perms};
		if (create_role(a, &r, err) != 0)
			return -1;
		*created = true;
		if ((out->name = strdup(in->name)) == NULL ||
		    strv_copy(&out->perms.read, &in->perms.read) != 0 ||
		    strv_copy(&out->perms.write, &in->perms.write) != 0) {
			ec_v2a_role_free(out);
			set_err(err, 500, "out of memory");
			return -1;
		}
		return 0;
	}
	if (!perms_empty(&in->perms)) {
		set_err(err, 400, "Role JSON contains both permissions and grant/revoke");
		return -1;
	}
	if (strcmp(in->name, ROOT) == 0) {
		auth_err(err, 403, "Cannot modify role %s: is root role.", in->name);
		return -1;
	}
	ec_v2a_role old;
	if (ec_v2a_get_role(a, in->name, true, &old, err) != 0)
		return -1;
	int ret = -1;
	if ((out->name = strdup(old.name)) == NULL ||
	    strv_copy(&out->perms.read, &old.perms.read) != 0 ||
	    strv_copy(&out->perms.write, &old.perms.write) != 0) {
		set_err(err, 500, "out of memory");
		goto done;
	}
	if (in->has_grant && (grant_list(&out->perms.read, &in->grant.read, "read", err) != 0 ||
	                      grant_list(&out->perms.write, &in->grant.write, "write", err) != 0))
		goto done;
	if (in->has_revoke) {
		revoke_list(&out->perms.read, &in->revoke.read);
		revoke_list(&out->perms.write, &in->revoke.write);
	}
	if (strv_same(&old.perms.read, &out->perms.read) &&
	    strv_same(&old.perms.write, &out->perms.write)) {
		auth_err(err, 400, "Role not updated. Use grant/revoke to update the role.");
		goto done;
	}
	int rc = role_doc_put(a, out, 1, err);
	if (rc == EC_V2A_KEY_NOT_FOUND)
		auth_err(err, 404, "Role %s doesn't exist.", in->name);
	else if (rc == 0)
		ret = 0;
done:
	ec_v2a_role_free(&old);
	if (ret != 0)
		ec_v2a_role_free(out);
	return ret;
}

static int del_doc(ec_v2a *a, const char *kind, const char *name, ec_v2a_err *err)
{
	char path[512];
	const char *msg = NULL;
	if (!name_ok(name) || strlen(name) > 400)
		return EC_V2A_KEY_NOT_FOUND;
	if (ensure_dirs(a, err) != 0)
		return -1;
	snprintf(path, sizeof path, "/2/%s/%s", kind, name);
	int rc = a->st->del(a->st->ctx, path, &msg);
	if (rc != 0 && rc != EC_V2A_KEY_NOT_FOUND) {
		store_err(err, rc, msg);
		return -1;
	}
	return rc;
}

int ec_v2a_delete_user(ec_v2a *a, const char *name, ec_v2a_err *err)
{
	memset(err, 0, sizeof *err);
	if (strcmp(name, ROOT) == 0 && ec_v2a_enabled(a)) {
		auth_err(err, 403, "Cannot delete root user while auth is enabled.");
		return -1;
	}
	int rc = del_doc(a, "users", name, err);
	if (rc == EC_V2A_KEY_NOT_FOUND)
		auth_err(err, 404, "User %s does not exist", name);
	return rc == 0 ? 0 : -1;
}

int ec_v2a_delete_role(ec_v2a *a, const char *name, ec_v2a_err *err)
{
	memset(err, 0, sizeof *err);
	if (strcmp(name, ROOT) == 0) {
		auth_err(err, 403, "Cannot modify role %s: is root role.", name);
		return -1;
	}
	int rc = del_doc(a, "roles", name, err);
	if (rc == EC_V2A_KEY_NOT_FOUND)
		auth_err(err, 404, "Role %s doesn't exist.", name);
	return rc == 0 ? 0 : -1;
}

bool ec_v2a_enabled(ec_v2a *a)
{
	char *v = NULL;
	const char *msg = NULL;
	if (a->st->get(a->st->ctx, "/2/enabled", false, &v, &msg) != 0)
		return false;
	bool on = v != NULL && strcmp(v, "true") == 0;
	free(v);
	return on;
}

static int set_enabled(ec_v2a *a, bool on, ec_v2a_err *err)
{
	const char *msg = NULL;
	if (ensure_dirs(a, err) != 0)
		return -1;
	int rc = a->st->set(a->st->ctx, "/2/enabled", on ? "true" : "false", 1, &msg);
	if (rc != 0) {
		store_err(err, rc, msg);
		return -1;
	}
	return 0;
}

int ec_v2a_enable(ec_v2a *a, ec_v2a_err *err)
{
	memset(err, 0, sizeof *err);
	if (ec_v2a_enabled(a)) {
		auth_err(err, 409, "already enabled");
		return -1;
	}
	ec_v2a_user root;
	ec_v2a_err e2;
	if (ec_v2a_get_user(a, ROOT, true, &root, &e2) != 0) {
		auth_err(err, 409, "No root user available, please create one");
		return -1;
	}
	ec_v2a_user_free(&root);
	ec_v2a_role guest;
	if (ec_v2a_get_role(a, GUEST, true, &guest, &e2) == 0) {
		ec_v2a_role_free(&guest);
	} else {
		if (fill_builtin(&guest, GUEST) != 0) {
			set_err(err, 500, "out of memory");
			return -1;
		}
		int rc = create_role(a, &guest, err);
		ec_v2a_role_free(&guest);
		if (rc != 0)
			return -1;
	}
	return set_enabled(a, true, err);
}

int ec_v2a_disable(ec_v2a *a, ec_v2a_err *err)
{
	memset(err, 0, sizeof *err);
	if (!ec_v2a_enabled(a)) {
		auth_err(err, 409, "already disabled");
		return -1;
	}
	return set_enabled(a, false, err);
}

bool ec_v2a_check_password(const ec_v2a_user *u, const char *password)
{
	return u->password != NULL && ec_auth_hash_matches(u->password, password);
}

bool ec_v2a_has_root(const ec_v2a_user *u)
{
	return strv_has(&u->roles, ROOT);
}

bool ec_v2a_user_allows(ec_v2a *a, const ec_v2a_user *u, const char *key, bool write,
                        bool recursive)
{
	for (size_t i = 0; i < u->roles.n; i++) {
		ec_v2a_role r;
		ec_v2a_err e;
		if (ec_v2a_get_role(a, u->roles.v[i], false, &r, &e) != 0)
			continue;
		bool ok = ec_v2a_role_allows(&r, key, write, recursive);
		ec_v2a_role_free(&r);
		if (ok)
			return true;
	}
	return false;
}

bool ec_v2a_guest_allows(ec_v2a *a, const char *key, bool write)
{
	ec_v2a_role r;
	ec_v2a_err e;
	if (ec_v2a_get_role(a, GUEST, false, &r, &e) != 0)
		return false;
	bool ok = ec_v2a_role_allows(&r, key, write, false);
	ec_v2a_role_free(&r);
	return ok;
}

/* {"user":NAME,"roles":[role objects]} (roles omitted when none); a missing
 * role is skipped when @skip_missing, else an error (etcd's list vs get). */
static json_t *user_with_roles(ec_v2a *a, const char *name, bool skip_missing, ec_v2a_err *err)
{
	ec_v2a_user u;
	if (ec_v2a_get_user(a, name, false, &u, err) != 0)
		return NULL;
	json_t *o = json_object();
	json_object_set_new(o, "user", json_string(u.name));
	json_t *roles = NULL;
	for (size_t k = 0; k < u.roles.n; k++) {
		ec_v2a_role r;
		ec_v2a_err e;
		if (ec_v2a_get_role(a, u.roles.v[k], false, &r, &e) != 0) {
			if (skip_missing)
				continue;
			*err = e;
			json_decref(roles);
			json_decref(o);
			ec_v2a_user_free(&u);
			return NULL;
		}
		if (roles == NULL)
			roles = json_array();
		json_array_append_new(roles, role_to_json(&r));
		ec_v2a_role_free(&r);
	}
	if (roles != NULL) /* omitempty */
		json_object_set_new(o, "roles", roles);
	ec_v2a_user_free(&u);
	return o;
}

char *ec_v2a_user_get_json(ec_v2a *a, const char *name, ec_v2a_err *err)
{
	memset(err, 0, sizeof *err);
	json_t *o = user_with_roles(a, name, false, err);
	return o != NULL ? dump(o) : NULL;
}

char *ec_v2a_users_list_json(ec_v2a *a, ec_v2a_err *err)
{
	ec_v2a_strv names;
	if (ec_v2a_all_users(a, &names, err) != 0)
		return NULL;
	json_t *arr = names.n ? json_array() : json_null();
	for (size_t i = 0; i < names.n; i++) {
		json_t *o = user_with_roles(a, names.v[i], true, err);
		if (o == NULL) {
			json_decref(arr);
			ec_v2a_strv_free(&names);
			return NULL;
		}
		json_array_append_new(arr, o);
	}
	ec_v2a_strv_free(&names);
	json_t *j = json_object();
	json_object_set_new(j, "users", arr);
	return dump(j);
}

char *ec_v2a_roles_list_json(ec_v2a *a, ec_v2a_err *err)
{
	ec_v2a_strv names;
	if (ec_v2a_all_roles(a, &names, err) != 0)
		return NULL;
	json_t *arr = json_array();
	for (size_t i = 0; i < names.n; i++) {
		ec_v2a_role r;
		if (ec_v2a_get_role(a, names.v[i], false, &r, err) != 0) {
			json_decref(arr);
			ec_v2a_strv_free(&names);
			return NULL;
		}
		json_array_append_new(arr, role_to_json(&r));
		ec_v2a_role_free(&r);
	}
	ec_v2a_strv_free(&names);
	json_t *j = json_object();
	json_object_set_new(j, "roles", arr);
	return dump(j);
}
