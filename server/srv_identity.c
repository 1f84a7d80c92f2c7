/*
 * srv_identity: member identity records and the initial member set
 * (srv_identity.h), moved out of main.c so that `metastore snapshot restore`
 * derives ids exactly as a first start does.
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "etcdcompat/ec_member.h"
#include "server/srv_identity.h"

static void put_be64(uint8_t *b, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		b[i] = (uint8_t)(v >> (56 - 8 * i));
}

Metastore__MemberSet *srv_identity_initial_members(const char *initial_cluster, const char *token,
						   uint64_t *cid, char *err, size_t errlen)
{
	Metastore__MemberSet tmp = METASTORE__MEMBER_SET__INIT;
	Etcdserverpb__Member ms[64], *mp[64];
	srv_urls urls[64];
	char *names[64];
	size_t n = 0;
	uint64_t ids[64];
	char *ic = strdup(initial_cluster), *save = NULL;
	if (ic == NULL)
		return NULL;
	for (char *tok = strtok_r(ic, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		char *eq = strchr(tok, '=');
		if (!eq) {
			snprintf(err, errlen, "--initial-cluster: \"%s\" is not name=url", tok);
			goto bad;
		}
		*eq = '\0';
		bool dup = false;
		for (size_t i = 0; i < n; i++)
			dup |= strcmp(names[i], tok) == 0;
		if (dup)
			continue;
		if (n == 64) {
			snprintf(err, errlen, "--initial-cluster: more than 64 members");
			goto bad;
		}
		memset(&urls[n], 0, sizeof(urls[n]));
		srv_config_peer_urls_of(initial_cluster, tok, &urls[n]);
		names[n] = tok;
		etcdserverpb__member__init(&ms[n]);
		ms[n].id = ec_member_id((const char *const *)urls[n].url, urls[n].n,
					token, 0);
		ms[n].name = tok;
		ms[n].peerurls = urls[n].url;
		ms[n].n_peerurls = urls[n].n;
		ids[n] = ms[n].id;
		mp[n] = &ms[n];
		n++;
	}
	tmp.format = 1;
	tmp.members = mp;
	tmp.n_members = n;
	*cid = ec_cluster_id(ids, n);
	size_t len = metastore__member_set__get_packed_size(&tmp);
	uint8_t *buf = malloc(len ? len : 1);
	Metastore__MemberSet *out = NULL;
	if (buf) {
		metastore__member_set__pack(&tmp, buf);
		out = metastore__member_set__unpack(NULL, len, buf);
		free(buf);
	}
	for (size_t i = 0; i < n; i++)
		srv_urls_free(&urls[i]);
	free(ic);
	return out;
bad:
	for (size_t i = 0; i < n; i++)
		srv_urls_free(&urls[i]);
	free(ic);
	return NULL;
}

int srv_identity_persist(st_db *db, uint64_t mid, uint64_t cid, const srv_urls *peer)
{
	uint8_t b[8];
	char joined[4096] = "";
	for (size_t i = 0; i < peer->n; i++) {
		if (i)
			strncat(joined, ",", sizeof(joined) - strlen(joined) - 1);
		strncat(joined, peer->url[i], sizeof(joined) - strlen(joined) - 1);
	}
	int rc;
	put_be64(b, cid);
	if ((rc = st_meta_put(db, SRV_META_CLUSTER_ID, b, 8, false)) == 0 &&
	    (rc = st_meta_put(db, SRV_META_PEER_URLS, joined, strlen(joined), false)) == 0) {
		put_be64(b, mid);
		/* member_id last and synced: its presence marks a complete identity. */
		rc = st_meta_put(db, SRV_META_MEMBER_ID, b, 8, true);
	}
	return rc;
}
