/*
 * ec_errors: the one table that maps metastore's client-visible errors to etcd's
 * gRPC status code and exact message text.
 *
 * etcd clients (etcdctl, clientv3, other SDKs) recognise errors by the message text
 * of the gRPC status, so each row here carries the text etcd 3.4 sends, byte for
 * byte, and the numeric gRPC status code (the standard values from grpc's
 * status.h; etcdcompat does not include grpc headers, so the numbers are spelled
 * out). Every room returns ec_err values for anything a client will see; server/
 * turns them into a gRPC status with ec_grpc_code() and ec_strerror().
 */
#ifndef METASTORE_EC_ERRORS_H
#define METASTORE_EC_ERRORS_H

#include <stddef.h>

/* gRPC status codes (grpc/status.h values). */
enum {
	EC_GRPC_OK = 0,
	EC_GRPC_CANCELLED = 1,
	EC_GRPC_UNKNOWN = 2,
	EC_GRPC_INVALID_ARGUMENT = 3,
	EC_GRPC_DEADLINE_EXCEEDED = 4,
	EC_GRPC_NOT_FOUND = 5,
	EC_GRPC_ALREADY_EXISTS = 6,
	EC_GRPC_PERMISSION_DENIED = 7,
	EC_GRPC_RESOURCE_EXHAUSTED = 8,
	EC_GRPC_FAILED_PRECONDITION = 9,
	EC_GRPC_ABORTED = 10,
	EC_GRPC_OUT_OF_RANGE = 11,
	EC_GRPC_UNIMPLEMENTED = 12,
	EC_GRPC_INTERNAL = 13,
	EC_GRPC_UNAVAILABLE = 14,
	EC_GRPC_DATA_LOSS = 15,
	EC_GRPC_UNAUTHENTICATED = 16,
};

/* X(name, grpc code, etcd message). Order is free; EC_OK must stay 0. */
#define EC_ERRORS(X)                                                                     \
	X(EC_OK, OK, "ok")                                                                   \
	X(EC_EMPTY_KEY, INVALID_ARGUMENT, "etcdserver: key is not provided")                 \
	X(EC_KEY_NOT_FOUND, INVALID_ARGUMENT, "etcdserver: key not found")                   \
	X(EC_VALUE_PROVIDED, INVALID_ARGUMENT, "etcdserver: value is provided")              \
	X(EC_LEASE_PROVIDED, INVALID_ARGUMENT, "etcdserver: lease is provided")              \
	X(EC_TOO_MANY_OPS, INVALID_ARGUMENT, "etcdserver: too many operations in txn request") \
	X(EC_DUPLICATE_KEY, INVALID_ARGUMENT, "etcdserver: duplicate key given in txn request") \
	X(EC_COMPACTED, OUT_OF_RANGE, "etcdserver: mvcc: required revision has been compacted") \
	X(EC_FUTURE_REV, OUT_OF_RANGE, "etcdserver: mvcc: required revision is a future revision") \
	X(EC_NO_SPACE, RESOURCE_EXHAUSTED, "etcdserver: mvcc: database space exceeded")     \
	X(EC_LEASE_NOT_FOUND, NOT_FOUND, "etcdserver: requested lease not found")            \
	X(EC_LEASE_EXIST, FAILED_PRECONDITION, "etcdserver: lease already exists")           \
	X(EC_LEASE_TTL_TOO_LARGE, OUT_OF_RANGE, "etcdserver: too large lease TTL")           \
	X(EC_WATCH_CANCELED, CANCELLED, "etcdserver: watch canceled")                        \
	X(EC_MEMBER_EXIST, FAILED_PRECONDITION, "etcdserver: member ID already exist")       \
	X(EC_PEER_URL_EXIST, FAILED_PRECONDITION, "etcdserver: Peer URLs already exists")    \
	X(EC_MEMBER_NOT_ENOUGH_STARTED, FAILED_PRECONDITION,                                 \
	  "etcdserver: re-configuration failed due to not enough started members")          \
	X(EC_MEMBER_BAD_URLS, INVALID_ARGUMENT, "etcdserver: given member URLs are invalid") \
	X(EC_MEMBER_NOT_FOUND, NOT_FOUND, "etcdserver: member not found")                    \
	X(EC_MEMBER_NOT_LEARNER, FAILED_PRECONDITION, "etcdserver: can only promote a learner member") \
	X(EC_LEARNER_NOT_READY, FAILED_PRECONDITION,                                         \
	  "etcdserver: can only promote a learner member which is in sync with leader")      \
	X(EC_TOO_MANY_LEARNERS, FAILED_PRECONDITION, "etcdserver: too many learner members in cluster") \
	X(EC_REQUEST_TOO_LARGE, INVALID_ARGUMENT, "etcdserver: request is too large")        \
	X(EC_TOO_MANY_REQUESTS, RESOURCE_EXHAUSTED, "etcdserver: too many requests")         \
	X(EC_ROOT_USER_NOT_EXIST, FAILED_PRECONDITION, "etcdserver: root user does not exist") \
	X(EC_ROOT_ROLE_NOT_EXIST, FAILED_PRECONDITION, "etcdserver: root user does not have root role") \
	X(EC_USER_ALREADY_EXIST, FAILED_PRECONDITION, "etcdserver: user name already exists") \
	X(EC_USER_EMPTY, INVALID_ARGUMENT, "etcdserver: user name is empty")                 \
	X(EC_USER_NOT_FOUND, FAILED_PRECONDITION, "etcdserver: user name not found")         \
	X(EC_ROLE_ALREADY_EXIST, FAILED_PRECONDITION, "etcdserver: role name already exists") \
	X(EC_ROLE_NOT_FOUND, FAILED_PRECONDITION, "etcdserver: role name not found")         \
	X(EC_ROLE_EMPTY, INVALID_ARGUMENT, "etcdserver: role name is empty")                 \
	X(EC_AUTH_FAILED, INVALID_ARGUMENT,                                                  \
	  "etcdserver: authentication failed, invalid user ID or password")                  \
	X(EC_PERMISSION_DENIED, PERMISSION_DENIED, "etcdserver: permission denied")          \
	X(EC_ROLE_NOT_GRANTED, FAILED_PRECONDITION, "etcdserver: role is not granted to the user") \
	X(EC_PERMISSION_NOT_GRANTED, FAILED_PRECONDITION,                                    \
	  "etcdserver: permission is not granted to the role")                               \
	X(EC_AUTH_NOT_ENABLED, FAILED_PRECONDITION, "etcdserver: authentication is not enabled") \
	X(EC_INVALID_AUTH_TOKEN, UNAUTHENTICATED, "etcdserver: invalid auth token")          \
	X(EC_INVALID_AUTH_MGMT, INVALID_ARGUMENT, "etcdserver: invalid auth management")     \
	X(EC_AUTH_OLD_REVISION, INVALID_ARGUMENT, "etcdserver: revision of auth store is old") \
	X(EC_NO_LEADER, UNAVAILABLE, "etcdserver: no leader")                                \
	X(EC_NOT_LEADER, FAILED_PRECONDITION, "etcdserver: not leader")                      \
	X(EC_LEADER_CHANGED, UNAVAILABLE, "etcdserver: leader changed")                      \
	X(EC_NOT_CAPABLE, UNAVAILABLE, "etcdserver: not capable")                            \
	X(EC_STOPPED, UNAVAILABLE, "etcdserver: server stopped")                             \
	X(EC_TIMEOUT, UNAVAILABLE, "etcdserver: request timed out")                          \
	X(EC_TIMEOUT_LEADER_FAIL, UNAVAILABLE,                                               \
	  "etcdserver: request timed out, possibly due to previous leader failure")          \
	X(EC_TIMEOUT_CONN_LOST, UNAVAILABLE,                                                 \
	  "etcdserver: request timed out, possibly due to connection lost")                  \
	X(EC_TIMEOUT_WAIT_APPLIED, UNAVAILABLE,                                              \
	  "etcdserver: request timed out, waiting for the applied index took too long")      \
	X(EC_TIMEOUT_LEADER_TRANSFER, UNAVAILABLE,                                          \
	  "etcdserver: request timed out, leader transfer took too long")                    \
	X(EC_UNHEALTHY, UNAVAILABLE, "etcdserver: unhealthy cluster")                        \
	X(EC_CORRUPT, DATA_LOSS, "etcdserver: corrupt cluster")                              \
	X(EC_NOT_SUPPORTED_FOR_LEARNER, UNAVAILABLE, "etcdserver: rpc not supported for learner") \
	X(EC_BAD_LEADER_TRANSFEREE, FAILED_PRECONDITION, "etcdserver: bad leader transferee") \
	/* Peer port only: a removed member's Raft stream is refused with rafthttp's text. */ \
	X(EC_MEMBER_REMOVED, FAILED_PRECONDITION,                                           \
	  "the member has been permanently removed from the cluster")                       \
	/* The auth store's own errors, which etcd 3.4 sends unconverted (code Unknown): \
	 * from CheckPassword, and from the Maintenance service's admin check        \
	 * (ec_auth_raw maps the converted rows to these). */                         \
	X(EC_NO_PASSWORD_USER, UNKNOWN,                                                      \
	  "auth: authentication failed, password was given for no password user")           \
	X(EC_RAW_USER_EMPTY, UNKNOWN, "auth: user name is empty")                            \
	X(EC_RAW_USER_NOT_FOUND, UNKNOWN, "auth: user not found")                            \
	X(EC_RAW_PERMISSION_DENIED, UNKNOWN, "auth: permission denied")                      \
	X(EC_RAW_INVALID_AUTH_TOKEN, UNKNOWN, "auth: invalid auth token")                    \
	/* The concurrency services' own errors (clientv3/concurrency, v3election),  \
	 * which etcd sends as plain Go errors (code Unknown). */                     \
	X(EC_ELECTION_NOT_LEADER, UNKNOWN, "election: not leader")                           \
	X(EC_ELECTION_NO_LEADER, UNKNOWN, "election: no leader")                             \
	X(EC_ELECTION_NO_LEADER_KEY, UNKNOWN, "\"leader\" field must be provided")           \
	X(EC_LOST_WATCHER, UNKNOWN, "lost watcher waiting for delete")                       \
	/* Not etcd rpctypes rows, but statuses etcd's gRPC layer also produces. */          \
	X(EC_UNIMPLEMENTED, UNIMPLEMENTED, "unknown method")                                 \
	X(EC_NOMEM, RESOURCE_EXHAUSTED, "etcdserver: out of memory")                         \
	X(EC_INTERNAL, UNKNOWN, "etcdserver: internal error")                                \
	X(EC_BAD_REQUEST, INVALID_ARGUMENT, "etcdserver: malformed request")

#define EC_ENUM_ROW(name, code, msg) name,
typedef enum { EC_ERRORS(EC_ENUM_ROW) EC__COUNT } ec_err;
#undef EC_ENUM_ROW

/*
 * ec_strerror - the exact etcd message for @err.
 * Returns a static string; an out-of-range @err gives "etcdserver: unknown error".
 */
const char *ec_strerror(int err);

/*
 * ec_auth_raw - the unconverted form of an auth error (EC_PERMISSION_DENIED ->
 * EC_RAW_PERMISSION_DENIED, EC_USER_EMPTY, EC_USER_NOT_FOUND,
 * EC_INVALID_AUTH_TOKEN likewise), for the calls where etcd forgets to convert
 * them (its Maintenance service); any other @err is returned as is.
 */
int ec_auth_raw(int err);

/*
 * ec_status_string - Go's status.Error(code, msg).Error() of @err into @buf
 * (@cap bytes, NUL-terminated, truncated if need be): "rpc error: code =
 * PermissionDenied desc = etcdserver: permission denied". etcd sends this text
 * where it puts an error into a message field (a watch's cancel_reason).
 * Returns @buf.
 */
char *ec_status_string(int err, char *buf, size_t cap);

/*
 * EC_AS_UNKNOWN | err: @err's message, sent with gRPC code Unknown. etcd's
 * services built on its own client (v3election, v3lock) pass the error of a
 * call they made on as a plain Go error (clientv3's toErr), which its gRPC
 * layer sends as Unknown: "etcdserver: permission denied" arrives with code 2,
 * not 7. ec_strerror and ec_grpc_code understand the flag.
 */
#define EC_AS_UNKNOWN 0x10000

/*
 * ec_err_passed_on - what a service built on metastore's own calls answers
 * when one of them failed with gRPC status @code and the @len bytes of
 * message at @msg (not NUL-terminated), as etcd's does: the row with that
 * message, flagged EC_AS_UNKNOWN; EC_INTERNAL when no row has it (and for
 * @code 0).
 */
int ec_err_passed_on(int code, const char *msg, size_t len);

/*
 * ec_grpc_code - the numeric gRPC status code for @err (EC_GRPC_*).
 * An out-of-range @err maps to EC_GRPC_UNKNOWN.
 */
int ec_grpc_code(int err);

#endif
