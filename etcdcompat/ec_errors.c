/*
 * ec_errors: expands the EC_ERRORS table into the message and code lookups.
 * See ec_errors.h; this file holds no strings of its own.
 */
#include "etcdcompat/ec_errors.h"

#include <stdio.h>
#include <string.h>

#define EC_MSG_ROW(name, code, msg) [name] = msg,
static const char *const ec_messages[EC__COUNT] = {EC_ERRORS(EC_MSG_ROW)};
#undef EC_MSG_ROW

#define EC_CODE_ROW(name, code, msg) [name] = EC_GRPC_##code,
static const int ec_codes[EC__COUNT] = {EC_ERRORS(EC_CODE_ROW)};
#undef EC_CODE_ROW

const char *ec_strerror(int err)
{
	if (err > 0 && (err & EC_AS_UNKNOWN))
		err &= ~EC_AS_UNKNOWN;
	if (err < 0 || err >= EC__COUNT)
		return "etcdserver: unknown error";
	return ec_messages[err];
}

int ec_grpc_code(int err)
{
	if (err > 0 && (err & EC_AS_UNKNOWN))
		return EC_GRPC_UNKNOWN;
	if (err < 0 || err >= EC__COUNT)
		return EC_GRPC_UNKNOWN;
	return ec_codes[err];
}

int ec_err_passed_on(int code, const char *msg, size_t len)
{
	if (code == EC_GRPC_OK)
		return EC_INTERNAL;
	for (int i = 1; i < EC__COUNT; i++)
		if (strlen(ec_messages[i]) == len && memcmp(ec_messages[i], msg, len) == 0)
			return i | EC_AS_UNKNOWN;
	return EC_INTERNAL;
}

int ec_auth_raw(int err)
{
	switch (err) {
	case EC_USER_EMPTY:
		return EC_RAW_USER_EMPTY;
	case EC_USER_NOT_FOUND:
		return EC_RAW_USER_NOT_FOUND;
	case EC_PERMISSION_DENIED:
		return EC_RAW_PERMISSION_DENIED;
	case EC_INVALID_AUTH_TOKEN:
		return EC_RAW_INVALID_AUTH_TOKEN;
	default:
		return err;
	}
}

/* Go's codes.Code names (google.golang.org/grpc/codes, code_string.go). */
static const char *const code_names[] = {
        "OK",       "Canceled",         "Unknown",           "InvalidArgument",
        "DeadlineExceeded", "NotFound", "AlreadyExists",     "PermissionDenied",
        "ResourceExhausted", "FailedPrecondition", "Aborted", "OutOfRange",
        "Unimplemented", "Internal",    "Unavailable",       "DataLoss",
        "Unauthenticated",
};

char *ec_status_string(int err, char *buf, size_t cap)
{
	int code = ec_grpc_code(err);
	const char *name = code >= 0 && code < (int)(sizeof code_names / sizeof code_names[0])
	                   ? code_names[code] : "Unknown";
	if (cap > 0)
		snprintf(buf, cap, "rpc error: code = %s desc = %s", name, ec_strerror(err));
	return buf;
}
