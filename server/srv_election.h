/*
 * srv_election: etcd's v3election (Campaign, Proclaim, Leader, Observe,
 * Resign) and v3lock (Lock, Unlock) services, served as etcd 3.4 serves them:
 * as a client of this member's own KV, Lease and Watch services. An election
 * or a lock is a key prefix; each contender puts "<name>/<lease id in hex>"
 * with its lease, and the contender whose key has the lowest create revision
 * leads (holds the lock). Campaign and Lock wait until every older key under
 * the prefix is gone; Observe streams the leader key's values and changes.
 *
 * The calls go over the gRPC core's in-process channel (srv_rpc_inproc_channel)
 * with the caller's "token" and "authorization" metadata and deadline, so
 * auth, quotas, leader checks and errors are the KV/Lease/Watch handlers' own:
 * an error from one of them reaches the client unchanged, as in etcd.
 * Nothing blocks a gRPC thread: each client call is a small state machine
 * driven from this module's completion queue, on its own thread.
 *
 * Campaign and Lock are registered as server-streaming rows (one response,
 * then the status: on the wire the same as a unary call) so that the module
 * learns when the client gives up a wait: it then removes the key it put, as
 * etcd's Campaign resigns and Lock unlocks when the caller's context ends.
 *
 * Order in main(): srv_election_new and srv_election_register before
 * srv_rpc_start; srv_election_bind after it; srv_election_stop before
 * srv_rpc_shutdown. Calls arriving before the bind fail "etcdserver: server
 * stopped".
 */
#ifndef METASTORE_SRV_ELECTION_H
#define METASTORE_SRV_ELECTION_H

#include <stddef.h>

#include "server/srv_methods.h"
#include "server/srv_rpc.h"

typedef struct srv_election srv_election;

/*
 * srv_election_new - create the module and start its completion-queue
 * thread. Returns 0 and *@out, or -1 with @err (out of memory, no thread).
 */
int srv_election_new(srv_election **out, char *err, size_t errlen);

/*
 * srv_election_register - plug the handlers into @tab (srv_etcd_methods rows)
 * and turn the Campaign and Lock rows into server streams (see above). The
 * handlers find the module through the app pointer: a srv_app whose election
 * field is set.
 */
void srv_election_register(srv_method tab[SRV_M__COUNT]);

/*
 * srv_election_bind - open the in-process channel into @rpc that the calls
 * use. Returns 0, or -1 (the server is stopping). Once.
 */
int srv_election_bind(srv_election *el, srv_rpc *rpc);

/*
 * srv_election_stop - fail every call in progress with "etcdserver: server
 * stopped" (cancelling its waits; keys already put stay until their lease
 * expires), wait up to 5 s for the inner calls to return, destroy the
 * channel, join the thread and free @el. NULL is ignored. If calls are still
 * out after 5 s, @el is leaked (logged) so that their completions stay safe.
 */
void srv_election_stop(srv_election *el);

#endif
