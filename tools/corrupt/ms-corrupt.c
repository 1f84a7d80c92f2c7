/*
 * ms-corrupt: damage a stopped member's data on purpose, for testing the
 * corruption checks (--experimental-initial-corrupt-check,
 * --experimental-corrupt-check-time).
 *
 *   ms-corrupt DATA_DIR KEY VALUE
 *
 * writes KEY=VALUE into the member's keyspace as one new revision that never
 * went through raft: the applied log index stays as it was, so the member
 * replays and applies the cluster's log normally afterwards, one revision
 * ahead of (and different from) every other member. Refuses a data dir another
 * process has open. Exit status 0 on success, 1 on any error (printed).
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "storage/st_db.h"
#include "storage/st_mvcc.h"

int main(int argc, char **argv)
{
	if (argc != 4) {
		fprintf(stderr, "usage: ms-corrupt DATA_DIR KEY VALUE\n");
		return 2;
	}
	st_db *db = NULL;
	char err[512] = "";
	int rc = st_db_open(argv[1], NULL, &db, err, sizeof err);
	if (rc != ST_OK) {
		fprintf(stderr, "ms-corrupt: opening %s: %s\n", argv[1], err[0] ? err : st_strerror(rc));
		return 1;
	}
	st_kv_state ks;
	st_kv_state_get(db, &ks);
	st_txn *t = NULL;
	if ((rc = st_txn_begin(db, true, &t)) == ST_OK &&
	    (rc = st_txn_put(t, (const uint8_t *)argv[2], strlen(argv[2]), (const uint8_t *)argv[3],
	                     strlen(argv[3]), 0)) == ST_OK) {
		rc = st_txn_commit(t, ks.applied);
		t = NULL;
	}
	st_txn_abort(t);
	if (rc != ST_OK) {
		fprintf(stderr, "ms-corrupt: writing %s: %s\n", argv[2], st_strerror(rc));
		st_db_close(db);
		return 1;
	}
	printf("wrote %s at revision %" PRId64 " (applied index %" PRIu64 " kept)\n", argv[2],
	       ks.rev + 1, ks.applied);
	st_db_close(db);
	return 0;
}
