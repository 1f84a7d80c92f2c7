/*
 * srv_restore: `metastore snapshot restore|status` and the import of an etcd
 * data dir on first start (srv_restore.h). Both build a metastore store the
 * same way (build_store): import the bbolt file (etcdcompat/ec_snapshot),
 * then bootstrap a new cluster's membership from etcd's flags exactly as a
 * first start does (srv_identity, srv_node_bootstrap), identity last.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "etcdcompat/ec_cluster.h"
#include "etcdcompat/ec_member.h"
#include "etcdcompat/ec_snapshot.h"
#include "server/srv_config.h"
#include "server/srv_identity.h"
#include "server/srv_log.h"
#include "server/srv_node.h"
#include "server/srv_restore.h"
#include "storage/st_db.h"
#include "storage/st_mvcc.h"

/* The applied index (and log base, term 1) of a restored store. */
#define RESTORED_INDEX 2

/* etcdctl snapshot restore's defaults. */
#define DEF_NAME "default"
#define DEF_PEER_URL "http://localhost:2380"
#define DEF_TOKEN "etcd-cluster"

/* What a store is built from. */
typedef struct restore_spec {
	const char *file;
	bool skip_hash_check;
	const char *name;
	const char *initial_cluster;
	const char *token;
	const char *peer_urls; /* --initial-advertise-peer-urls (comma list) */
} restore_spec;

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/*
 * etcd's VerifyBootstrap for a new member: @name is in --initial-cluster and
 * its URLs there are the advertised ones. *@self receives them.
 */
static int verify_bootstrap(const restore_spec *s, srv_urls *self, char *err, size_t errlen)
{
	memset(self, 0, sizeof(*self));
	if (srv_config_peer_urls_of(s->initial_cluster, s->name, self) == 0) {
		snprintf(err, errlen, "couldn't find local name \"%s\" in the initial cluster configuration",
			 s->name);
		return -1;
	}
	srv_urls adv = {0};
	srv_urls_split(s->peer_urls, &adv);
	char *a[SRV_MAX_URLS], *b[SRV_MAX_URLS];
	memcpy(a, self->url, self->n * sizeof(char *));
	memcpy(b, adv.url, adv.n * sizeof(char *));
	qsort(a, self->n, sizeof(char *), cmp_str);
	qsort(b, adv.n, sizeof(char *), cmp_str);
	bool same = adv.n == self->n;
	for (size_t i = 0; same && i < adv.n; i++)
		same = strcmp(a[i], b[i]) == 0;
	int rc = 0;
	if (!same) {
		char joined[1024] = "";
		for (size_t i = 0; i < adv.n; i++)
			snprintf(joined + strlen(joined), sizeof joined - strlen(joined), "%s%s",
				 i ? "," : "", b[i]);
		snprintf(err, errlen,
			 "--initial-cluster has %s=%s but missing from --initial-advertise-peer-urls=%s",
			 s->name, a[0], joined);
		rc = -1;
	}
	srv_urls_free(&adv);
	return rc;
}

/*
 * Build a complete metastore store of @s in @dir (created; it must hold no
 * store yet): the file's state, then a new cluster of --initial-cluster, then
 * this member's identity (last, synced: it marks the store complete).
 */
static int build_store(const char *dir, const restore_spec *s, ec_snapshot_info *info, char *err,
		       size_t errlen)
{
	srv_urls self = {0};
	if (verify_bootstrap(s, &self, err, errlen) != 0)
		return -1;
	uint64_t cid = 0;
	Metastore__MemberSet *set =
		srv_identity_initial_members(s->initial_cluster, s->token, &cid, err, errlen);
	if (set == NULL) {
		if (!err[0])
			snprintf(err, errlen, "out of memory");
		srv_urls_free(&self);
		return -1;
	}
	uint64_t mid = ec_member_id((const char *const *)self.url, self.n, s->token, 0);
	st_options o = {.create_if_missing = true};
	st_db *db = NULL;
	ec_cluster *cl = NULL;
	int rc = st_db_open(dir, &o, &db, err, errlen);
	if (rc == 0)
		rc = ec_snapshot_import(db, s->file, s->skip_hash_check, info, err, errlen);
	if (rc == 0 && (rc = ec_cluster_open(db, &cl)) != 0)
		snprintf(err, errlen, "opening the member set: %s", st_strerror(rc));
	if (rc == 0 && (rc = srv_node_bootstrap(db, cl, SRV_BOOT_NEW, mid, set, err, errlen)) != 0)
		rc = -1;
	/* A new cluster's bootstrap snapshot (index 1) stands for an empty
	 * keyspace, which this one is not: start the log after index 2 instead, so
	 * that a member added later is sent an image of the imported store. */
	st_hardstate hs = {1, 0, RESTORED_INDEX};
	if (rc == 0 && ((rc = st_log_reset(db, RESTORED_INDEX, 1)) != 0 ||
			(rc = st_mvcc_set_applied(db, RESTORED_INDEX)) != 0 ||
			(rc = st_log_append(db, NULL, 0, &hs, true)) != 0))
		snprintf(err, errlen, "preparing the raft state: %s", st_strerror(rc));
	if (rc == 0 && (rc = srv_identity_persist(db, mid, cid, &self)) != 0)
		snprintf(err, errlen, "writing the member identity: %s", st_strerror(rc));
	if (rc == 0) {
		/* etcd's restore logs one line per member of the new cluster */
		for (size_t i = 0; i < set->n_members; i++) {
			const Etcdserverpb__Member *m = set->members[i];
			char c[20], l[20], a[20];
			snprintf(c, sizeof c, "%" PRIx64, cid);
			snprintf(l, sizeof l, "%" PRIx64, mid);
			snprintf(a, sizeof a, "%" PRIx64, m->id);
			srv_log_info("added member", SRV_LF_STR("cluster-id", c),
				     SRV_LF_STR("local-member-id", l), SRV_LF_STR("added-peer-id", a),
				     SRV_LF_STRS("added-peer-peer-urls", m->peerurls, m->n_peerurls));
		}
	}
	ec_cluster_close(cl);
	st_db_close(db);
	metastore__member_set__free_unpacked(set, NULL);
	srv_urls_free(&self);
	return rc == 0 ? 0 : -1;
}

/* ---- removing what a failed build left ---------------------------------- */

static int rm_tree(const char *path)
{
	struct stat sb;
	if (lstat(path, &sb) != 0)
		return errno == ENOENT ? 0 : -1;
	if (!S_ISDIR(sb.st_mode))
		return unlink(path);
	DIR *d = opendir(path);
	if (d == NULL)
		return -1;
	struct dirent *e;
	int rc = 0;
	while ((e = readdir(d)) != NULL) {
		if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
			continue;
		char sub[4096];
		snprintf(sub, sizeof sub, "%s/%s", path, e->d_name);
		rc |= rm_tree(sub);
	}
	closedir(d);
	return rc | rmdir(path);
}

static void fsync_dir(const char *path)
{
	int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd >= 0) {
		fsync(fd);
		close(fd);
	}
}

/* The directory part of @path ("." when none) into @out. */
static void parent_of(const char *path, char *out, size_t cap)
{
	snprintf(out, cap, "%s", path);
	char *sl = strrchr(out, '/');
	if (sl == NULL)
		snprintf(out, cap, ".");
	else if (sl == out)
		sl[1] = '\0';
	else
		*sl = '\0';
}

/* ---- metastore snapshot restore ------------------------------------------ */

static int restore_cmd(const restore_spec *s, const char *data_dir)
{
	char err[1024] = "";
	struct stat sb;
	if (stat(data_dir, &sb) == 0) {
		fprintf(stderr, "Error: data-dir \"%s\" exists\n", data_dir);
		return 1;
	}
	char parent[4096], tmp[4200];
	parent_of(data_dir, parent, sizeof parent);
	if (mkdir(parent, 0700) != 0 && errno != EEXIST) {
		fprintf(stderr, "Error: mkdir %s: %s\n", parent, strerror(errno));
		return 1;
	}
	snprintf(tmp, sizeof tmp, "%s.restore-%ld.tmp", data_dir, (long)getpid());
	rm_tree(tmp);
	srv_log_info("restoring snapshot", SRV_LF_STR("path", s->file),
		     SRV_LF_STR("data-dir", data_dir));
	ec_snapshot_info info;
	if (build_store(tmp, s, &info, err, sizeof err) != 0) {
		rm_tree(tmp);
		fprintf(stderr, "Error: %s\n", err);
		return 1;
	}
	if (rename(tmp, data_dir) != 0) {
		fprintf(stderr, "Error: rename %s to %s: %s\n", tmp, data_dir, strerror(errno));
		rm_tree(tmp);
		return 1;
	}
	fsync_dir(parent);
	srv_log_info("restored snapshot", SRV_LF_STR("path", s->file),
		     SRV_LF_STR("data-dir", data_dir), SRV_LF_INT("revision", info.rev),
		     SRV_LF_INT("compact-revision", info.compact_rev),
		     SRV_LF_UINT("key-records", info.records), SRV_LF_UINT("leases", info.leases));
	return 0;
}

/* ---- metastore snapshot status ------------------------------------------- */

/* go-humanize's Bytes: SI units, one decimal below 10. */
static void humanize_bytes(uint64_t n, char *out, size_t cap)
{
	static const char *const units[] = {"B", "kB", "MB", "GB", "TB", "PB", "EB"};
	if (n < 10) {
		snprintf(out, cap, "%" PRIu64 " B", n);
		return;
	}
	int e = 0;
	double v = (double)n;
	while (v >= 1000 && e < 6) {
		v /= 1000;
		e++;
	}
	double r = (double)(int64_t)(v * 10 + 0.5) / 10;
	snprintf(out, cap, r < 10 ? "%.1f %s" : "%.0f %s", r, units[e]);
}

static int status_cmd(const char *file, const char *fmt)
{
	ec_snapshot_status st;
	char err[1024] = "";
	if (ec_snapshot_file_status(file, &st, err, sizeof err) != 0) {
		fprintf(stderr, "Error: %s\n", err);
		return 1;
	}
	char size[32];
	humanize_bytes(st.total_size, size, sizeof size);
	if (strcmp(fmt, "json") == 0)
		printf("{\"hash\":%u,\"revision\":%" PRId64 ",\"totalKey\":%" PRIu64
		       ",\"totalSize\":%" PRIu64 "}\n",
		       st.hash, st.revision, st.total_keys, st.total_size);
	else if (strcmp(fmt, "table") == 0)
		printf("+----------+----------+------------+------------+\n"
		       "|   HASH   | REVISION | TOTAL KEYS | TOTAL SIZE |\n"
		       "+----------+----------+------------+------------+\n"
		       "| %8x | %8" PRId64 " | %10" PRIu64 " | %10s |\n"
		       "+----------+----------+------------+------------+\n",
		       st.hash, st.revision, st.total_keys, size);
	else
		printf("%x, %" PRId64 ", %" PRIu64 ", %s\n", st.hash, st.revision, st.total_keys, size);
	return 0;
}

/* ---- argument parsing ---------------------------------------------------- */

static void usage(FILE *f)
{
	fprintf(f, "Usage:\n"
		   "  metastore snapshot restore <filename> [--name N] [--data-dir D]\n"
		   "      [--initial-cluster C] [--initial-cluster-token T]\n"
		   "      [--initial-advertise-peer-urls U] [--skip-hash-check]\n"
		   "  metastore snapshot status <filename> [-w simple|json|table]\n"
		   "\n"
		   "Defaults as etcdctl 3.4's, except --data-dir: <name>.metastore.\n");
}

/* Match "--flag value" or "--flag=value" (also "-flag"); *@i advances. */
int srv_restore_main(int argc, char **argv)
{
	if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
		usage(argc < 2 ? stderr : stdout);
		return argc < 2 ? 2 : 0;
	}
	const char *cmd = argv[1];
	restore_spec s = {.name = DEF_NAME, .token = DEF_TOKEN, .peer_urls = DEF_PEER_URL};
	const char *data_dir = NULL, *ic = NULL, *fmt = "simple", *wal = NULL;
	for (int i = 2; i < argc; i++) {
		const char *a = argv[i];
		if (srv_flag_value(argc, argv, &i, "name", &s.name) ||
		    srv_flag_value(argc, argv, &i, "data-dir", &data_dir) ||
		    srv_flag_value(argc, argv, &i, "wal-dir", &wal) ||
		    srv_flag_value(argc, argv, &i, "initial-cluster-token", &s.token) ||
		    srv_flag_value(argc, argv, &i, "initial-cluster", &ic) ||
		    srv_flag_value(argc, argv, &i, "initial-advertise-peer-urls", &s.peer_urls) ||
		    srv_flag_value(argc, argv, &i, "write-out", &fmt) ||
		    srv_flag_value(argc, argv, &i, "w", &fmt) ||
		    srv_flag_bool(a, "skip-hash-check", &s.skip_hash_check))
			continue;
		if (a[0] == '-') {
			fprintf(stderr, "Error: unknown flag: %s\n", a);
			return 2;
		}
		if (s.file != NULL) {
			fprintf(stderr, "Error: snapshot %s requires exactly one argument\n", cmd);
			return 2;
		}
		s.file = a;
	}
	if (s.file == NULL) {
		fprintf(stderr, "Error: snapshot %s requires exactly one argument\n", cmd);
		return 2;
	}
	if (strcmp(cmd, "status") == 0)
		return status_cmd(s.file, fmt);
	if (strcmp(cmd, "restore") != 0) {
		fprintf(stderr, "Error: unknown command \"%s\" for \"metastore snapshot\"\n", cmd);
		usage(stderr);
		return 2;
	}
	if (wal != NULL) {
		fprintf(stderr, "Error: --wal-dir: metastore keeps its log inside the data dir\n");
		return 2;
	}
	char icbuf[1024], ddbuf[4096];
	if (ic == NULL) {
		snprintf(icbuf, sizeof icbuf, "%s=%s", s.name, DEF_PEER_URL);
		ic = icbuf;
	}
	s.initial_cluster = ic;
	if (data_dir == NULL || !data_dir[0]) {
		snprintf(ddbuf, sizeof ddbuf, "%s.metastore", s.name);
		data_dir = ddbuf;
	}
	return restore_cmd(&s, data_dir);
}

/* ---- etcd's layout on first start ---------------------------------------- */

/* Whether @name (a file in a data dir) is one of RocksDB's own. */
static bool rocksdb_file(const char *name)
{
	static const char *const exact[] = {"CURRENT", "IDENTITY", "LOCK", "LOG"};
	for (size_t i = 0; i < sizeof exact / sizeof *exact; i++)
		if (strcmp(name, exact[i]) == 0)
			return true;
	static const char *const prefix[] = {"MANIFEST-", "OPTIONS-", "LOG.old.", "snapshot-"};
	for (size_t i = 0; i < sizeof prefix / sizeof *prefix; i++)
		if (strncmp(name, prefix[i], strlen(prefix[i])) == 0)
			return true;
	size_t n = strlen(name);
	static const char *const suffix[] = {".sst", ".log", ".blob", ".dbtmp"};
	for (size_t i = 0; i < sizeof suffix / sizeof *suffix; i++) {
		size_t k = strlen(suffix[i]);
		if (n > k && strcmp(name + n - k, suffix[i]) == 0)
			return true;
	}
	return false;
}

/* Remove the RocksDB files of a half-made store in @dir (etcd's member/ stays). */
static int discard_partial_store(const char *dir)
{
	DIR *d = opendir(dir);
	if (d == NULL)
		return -1;
	struct dirent *e;
	int rc = 0;
	while ((e = readdir(d)) != NULL) {
		if (!rocksdb_file(e->d_name))
			continue;
		char p[4096];
		snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
		struct stat sb;
		if (lstat(p, &sb) == 0 && S_ISREG(sb.st_mode))
			rc |= unlink(p);
	}
	closedir(d);
	fsync_dir(dir);
	return rc;
}

int srv_restore_etcd_dir(const srv_config *cfg)
{
	char db[4200];
	snprintf(db, sizeof db, "%s/member/snap/db", cfg->data_dir);
	struct stat sb;
	if (stat(db, &sb) != 0 || !S_ISREG(sb.st_mode))
		return 0; /* not etcd's layout */
	void *v = NULL;
	size_t len = 0;
	int rc = st_db_peek_meta(cfg->data_dir, SRV_META_MEMBER_ID, &v, &len);
	free(v);
	if (rc != ST_ENOTFOUND)
		return 0; /* a metastore member (or a dir the real open will report on) */
	char cur[4200];
	snprintf(cur, sizeof cur, "%s/CURRENT", cfg->data_dir);
	if (stat(cur, &sb) == 0) {
		srv_log_warn("discarding an unfinished import of the etcd data dir",
			     SRV_LF_STR("data-dir", cfg->data_dir));
		if (discard_partial_store(cfg->data_dir) != 0) {
			srv_log_fatal("cannot remove the unfinished import",
				      SRV_LF_STR("data-dir", cfg->data_dir), SRV_LF_ERR(strerror(errno)));
			return -1;
		}
	}
	srv_log_info("found an etcd data dir (member/snap/db): importing it",
		     SRV_LF_STR("data-dir", cfg->data_dir), SRV_LF_STR("backend", db));
	char peers[2048] = "";
	srv_urls self = {0};
	srv_config_peer_urls_of(cfg->initial_cluster, cfg->name, &self);
	for (size_t i = 0; i < self.n; i++)
		snprintf(peers + strlen(peers), sizeof peers - strlen(peers), "%s%s", i ? "," : "",
			 self.url[i]);
	srv_urls_free(&self);
	restore_spec s = {
		.file = db, .skip_hash_check = true, .name = cfg->name,
		.initial_cluster = cfg->initial_cluster, .token = cfg->initial_cluster_token,
		.peer_urls = peers,
	};
	char err[1024] = "";
	ec_snapshot_info info;
	if (build_store(cfg->data_dir, &s, &info, err, sizeof err) != 0) {
		srv_log_fatal("cannot import the etcd data dir", SRV_LF_STR("data-dir", cfg->data_dir),
			      SRV_LF_ERR(err));
		discard_partial_store(cfg->data_dir);
		return -1;
	}
	srv_log_info("imported the etcd data dir; etcd's files are kept in member/",
		     SRV_LF_STR("data-dir", cfg->data_dir), SRV_LF_INT("revision", info.rev),
		     SRV_LF_INT("compact-revision", info.compact_rev),
		     SRV_LF_UINT("key-records", info.records), SRV_LF_UINT("leases", info.leases),
		     SRV_LF_UINT("consistent-index", info.applied));
	return 0;
}
