/*
 * ec_errors: expands the EC_ERRORS table into the message and code lookups.
 * See ec_errors.h; this file holds no strings of its own.
 */
#include "etcdcompat/ec_errors.h"

#define EC_MSG_ROW(name, code, msg) [name] = msg,
static const char *const ec_messages[EC__COUNT] = {EC_ERRORS(EC_MSG_ROW)};
#undef EC_MSG_ROW

#define EC_CODE_ROW(name, code, msg) [name] = EC_GRPC_##code,
static const int ec_codes[EC__COUNT] = {EC_ERRORS(EC_CODE_ROW)};
#undef EC_CODE_ROW

const char *ec_strerror(int err)
{
	if (err < 0 || err >= EC__COUNT)
		return "etcdserver: unknown error";
	return ec_messages[err];
}

int ec_grpc_code(int err)
{
	if (err < 0 || err >= EC__COUNT)
		return EC_GRPC_UNKNOWN;
	return ec_codes[err];
}
