/*
 * srv_peer_int.h: what srv_peer.c and srv_peer_codec.c share, and nothing else
 * includes (tests excepted): the raft_message <-> RaftMessage codec.
 */
#ifndef METASTORE_SRV_PEER_INT_H
#define METASTORE_SRV_PEER_INT_H

#include <stddef.h>
#include <stdint.h>

#include "peer.pb-c.h"
#include "raft/raft.h"

/*
 * srv_peer_codec_encode - pack @m as a RaftMessage into one malloc'd buffer.
 * The first @prefix bytes of *@buf are left for the caller (a field key and
 * length); the encoding follows, *@len bytes (prefix excluded). A snapshot is
 * described (index, term, conf, has_data, data_len) but its data is not packed:
 * it travels in chunks. Reads blob data only; takes no references.
 * Returns 0, SRV_PEER_EINVAL (a conf array longer than RAFT_MAX_NODES) or
 * SRV_PEER_ENOMEM.
 */
int srv_peer_codec_encode(const raft_message *m, size_t prefix, uint8_t **buf, size_t *len);

/*
 * srv_peer_codec_decode - build a heap raft_message from @pm (see
 * srv_peer_msg_free). Entry payloads are copied into new blobs. @snapdata (may be
 * NULL) becomes the snapshot's data: its reference passes to the message on
 * success and stays the caller's on failure. A snapshot whose has_data is false
 * gets NULL data (and @snapdata must be NULL).
 * Returns 0, SRV_PEER_EPROTO (unknown message or entry type, conf too long) or
 * SRV_PEER_ENOMEM.
 */
int srv_peer_codec_decode(const Metastore__RaftMessage *pm, raft_blob *snapdata,
                          raft_message **out);

#endif
