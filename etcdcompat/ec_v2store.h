/*
 * ec_v2store: etcd 3.4's v2 store — the tree of directories and keys behind
 * /v2/keys (and v2 auth data), deterministic and network-free.
 *
 * The tree is held in memory and mirrored whole, after every change, into the
 * replicated record "ms.r.v2store" (a metastore.V2Store) staged in the apply
 * group of the entry that made the change, so it survives restarts and
 * travels in raft snapshots with the rest of the "ms.r." records. Internal
 * namespaces as etcd 3.4: "/1" holds what /v2/keys shows, "/2" the v2 auth
 * data; rendered JSON shows keys under "/1" without that prefix.
 *
 * Writes (etcd's v2 Request: PUT/POST/DELETE/SYNC) arrive only through
 * ec_v2_apply on the node thread; every member applies the same entries with
 * the same proposer-stamped times, so every member holds the same tree and the
 * same index. Reads (ec_v2_get, ec_v2_list) and watches run on any thread: a
 * mutex guards the store. The last 1000 events are kept in memory (not on
 * disk, as etcd) for waitIndex; watchers are per member and fire during apply.
 */
#ifndef METASTORE_EC_V2STORE_H
#define METASTORE_EC_V2STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "internal.pb-c.h"
#include "storage/st_db.h"

typedef struct ec_v2_store ec_v2_store;

/* etcd's v2 error codes (v2error/error.go). */
enum {
	EC_V2_KEY_NOT_FOUND = 100,
	EC_V2_TEST_FAILED = 101,
	EC_V2_NOT_FILE = 102,
	EC_V2_NOT_DIR = 104,
	EC_V2_NODE_EXIST = 105,
	EC_V2_ROOT_RONLY = 107,
	EC_V2_DIR_NOT_EMPTY = 108,
	EC_V2_UNAUTHORIZED = 110,
	EC_V2_PREV_VALUE_REQUIRED = 201,
	EC_V2_TTL_NAN = 202,
	EC_V2_INDEX_NAN = 203,
	EC_V2_INVALID_FIELD = 209,
	EC_V2_INVALID_FORM = 210,
	EC_V2_REFRESH_VALUE = 211,
	EC_V2_REFRESH_TTL_REQUIRED = 212,
	EC_V2_RAFT_INTERNAL = 300,
	EC_V2_LEADER_ELECT = 301,
	EC_V2_EVENT_INDEX_CLEARED = 401,
};

/* How many events the history keeps (etcd: 1000). */
#define EC_V2_HISTORY 1000

/*
 * ec_v2_new - an empty store ("/", "/1" and "/2" present, index 0) bound to
 * @db (may be NULL: nothing is persisted, for tests), then loaded from @db's
 * "ms.r.v2store" when present. Returns EC_OK and *@out (ec_v2_free), EC_NOMEM,
 * or EC_INTERNAL (the record does not decode or has an unknown format).
 */
int ec_v2_new(st_db *db, ec_v2_store **out);

/* ec_v2_free - free @s; pending watchers are dropped without a call. NULL ok. */
void ec_v2_free(ec_v2_store *s);

/*
 * ec_v2_reload - replace the tree with @db's "ms.r.v2store" (a raft snapshot
 * was installed). The history is cleared and every pending watcher is fired
 * with etcd's 400 "watcher is cleared due to etcd recovery". Node thread.
 * Returns EC_OK, EC_NOMEM, EC_INTERNAL.
 */
int ec_v2_reload(ec_v2_store *s);

/*
 * ec_v2_apply - apply the v2 write @r (method PUT, POST, DELETE, QGET, SYNC;
 * @r->path an internal path such as "/1/foo") as etcd's applierV2 does, with
 * @r->time as the clock. On a change the store is staged into the open apply
 * group (st_rmeta_put) and watchers fire. Node thread.
 * Returns 0 and *@out (a V2Response; free with ec_msg_free: etcd's event or
 * error JSON, the HTTP status and X-Etcd-Index), or an ST_* storage error
 * (ST_ENOMEM, ST_EIO) with nothing changed.
 */
int ec_v2_apply(ec_v2_store *s, const Metastore__V2Request *r, Metastore__V2Response **out);

/* ec_v2_apply_hook - ec_v2_apply with ec_kv_set_v2_hook's signature (@arg is
 * the store). */
int ec_v2_apply_hook(void *arg, const Metastore__V2Request *r, ProtobufCMessage **resp);

/*
 * ec_v2_get - etcd's Get of internal path @path as of @now_ns (unix ns; used
 * for "ttl"): one level of children for a directory, every level when
 * @recursive, sorted by key when @sorted (children are always listed in key
 * order here). Any thread. Returns EC_OK and *@out (ec_msg_free) — its code is
 * 0 or 100 — or EC_NOMEM.
 */
int ec_v2_get(ec_v2_store *s, const char *path, bool recursive, bool sorted, int64_t now_ns,
              Metastore__V2Response **out);

/*
 * ec_v2_list - the names (last component, hidden ones included) of the
 * children of directory @dir, sorted, in a malloc'd array of malloc'd strings
 * (free each and the array). Any thread. Returns EC_OK, EC_V2_KEY_NOT_FOUND,
 * EC_V2_NOT_DIR or EC_NOMEM.
 */
int ec_v2_list(ec_v2_store *s, const char *dir, char ***names, size_t *n);

/* ec_v2_index - the store's current index (etcd's X-Etcd-Index). Any thread. */
uint64_t ec_v2_index(ec_v2_store *s);

/* ec_v2_next_expiry - the earliest expiration (unix ns) of any node, 0 when
 * none expires. Any thread (the leader's SYNC timer). */
int64_t ec_v2_next_expiry(ec_v2_store *s);

/*
 * Watches (etcd's wait=true). ec_v2_watch looks for the first event at index
 * >= @since (0: the next event) on @path (and below it when @recursive; hidden
 * keys below @path excepted, as etcd) in the history; when there is one it
 * sets *@now (a V2Response with the event, ec_msg_free) and registers
 * nothing. When @since is older than the history it sets *@now to etcd's 401
 * error. Otherwise it registers @fn: it runs once, on the node thread with the
 * store locked (it must not call back into the store), with the matching event
 * (owned by @fn); *@wid names the watch for ec_v2_unwatch. Returns EC_OK or
 * EC_NOMEM.
 */
typedef void (*ec_v2_watch_fn)(void *ctx, Metastore__V2Response *ev);
int ec_v2_watch(ec_v2_store *s, const char *path, bool recursive, uint64_t since,
                ec_v2_watch_fn fn, void *ctx, Metastore__V2Response **now, uint64_t *wid);

/* ec_v2_unwatch - drop watch @wid; true when it was still pending (its @fn
 * will never run), false when it already fired. Any thread. */
bool ec_v2_unwatch(ec_v2_store *s, uint64_t wid);

/* ec_v2_error_json - etcd's error body for @code (v2error's message table)
 * with @cause and @index, a malloc'd string, or NULL when out of memory. */
char *ec_v2_error_json(int code, const char *cause, uint64_t index);

/* ec_v2_error_status - the HTTP status etcd answers @code with. */
int ec_v2_error_status(int code);

#endif
