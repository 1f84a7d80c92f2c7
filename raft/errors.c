/*
 * errors.c - raft_strerror() and raft_msg_type_name(), generated from the X-macro
 * tables in raft.h so that codes and texts cannot drift apart.
 */
#include "raft/raft.h"

#define RAFT_MSG_ROW_(name, msg) [name] = msg,
static const char *const raft_error_text[] = {RAFT_ERRORS(RAFT_MSG_ROW_)};
#undef RAFT_MSG_ROW_

const char *raft_strerror(int err)
{
	if (err < 0 || err >= RAFT__ERROR_COUNT)
		return "unknown raft error";
	return raft_error_text[err];
}

#define RAFT_TYPE_ROW_(name) [name] = #name,
static const char *const raft_type_text[] = {RAFT_MESSAGE_TYPES(RAFT_TYPE_ROW_)};
#undef RAFT_TYPE_ROW_

const char *raft_msg_type_name(int type)
{
	if (type < 0 || type >= RAFT__MSG_COUNT)
		return "?";
	return raft_type_text[type];
}
