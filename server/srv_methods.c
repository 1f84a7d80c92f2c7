/*
 * srv_methods.c: expands SRV_ETCD_METHODS (srv_methods.h) into etcd's method
 * table. Handlers are plugged in by the caller by method id.
 */
#include "server/srv_methods.h"

#include <string.h>

#include "rpc.pb-c.h"
#include "v3election.pb-c.h"
#include "v3lock.pb-c.h"

#define SRV_M_TABLE_ROW(id, svc, meth, kind_, req_, resp_)                                   \
	[SRV_M_##id] = {.name = "/etcdserverpb." #svc "/" #meth,                             \
			.kind = kind_,                                                       \
			.req = &etcdserverpb__##req_##__descriptor,                          \
			.resp = &etcdserverpb__##resp_##__descriptor},
#define SRV_M_TABLE_ROW_PKG(id, pkg, svc, meth, kind_, req_, resp_)                          \
	[SRV_M_##id] = {.name = "/" #pkg "." #svc "/" #meth,                                 \
			.kind = kind_,                                                       \
			.req = &pkg##__##req_##__descriptor,                                 \
			.resp = &pkg##__##resp_##__descriptor},
static const srv_method srv_etcd_table[SRV_M__COUNT] = {
        SRV_ETCD_METHODS(SRV_M_TABLE_ROW) SRV_CONCURRENCY_METHODS(SRV_M_TABLE_ROW_PKG)};
#undef SRV_M_TABLE_ROW
#undef SRV_M_TABLE_ROW_PKG

void srv_etcd_methods(srv_method out[SRV_M__COUNT])
{
	memcpy(out, srv_etcd_table, sizeof srv_etcd_table);
}

int srv_etcd_method_find(const char *name)
{
	for (int i = 0; i < SRV_M__COUNT; i++)
		if (strcmp(srv_etcd_table[i].name, name) == 0)
			return i;
	return -1;
}
