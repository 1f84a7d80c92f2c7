/*
 * srv_snapshot: Maintenance.Snapshot (srv_snapshot.h). One detached thread per
 * call exports the store to a temp file, then streams it; a small shared
 * context, freed by whichever of the thread and on_close lets go last,
 * carries the cancellation flag and the drain wake-up between them.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "etcdcompat/ec_errors.h"
#include "etcdcompat/ec_snapshot.h"
#include "rpc.pb-c.h"
#include "server/srv_app.h"
#include "server/srv_auth.h"
#include "server/srv_handlers.h"
#include "server/srv_log.h"
#include "server/srv_snapshot.h"

/* etcd's snapshotSendBufferSize. */
#define CHUNK (32 * 1024)
/* Bytes queued on the stream before the thread waits for a drain. */
#define WINDOW (1024 * 1024)

typedef struct snap_ctx {
	srv_stream *st;  /* the thread's reference */
	srv_app *app;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	bool closed;     /* on_close ran: stop */
	atomic_int refs; /* the thread + the stream callbacks */
	char path[4096];
} snap_ctx;

static atomic_uint g_seq;
static atomic_bool g_swept;

/* Remove the temp files of snapshots an earlier process of this data dir
 * left behind (killed mid-stream); once per process, before the first. */
static void sweep_stale(const char *dir)
{
	if (atomic_exchange(&g_swept, true))
		return;
	DIR *d = opendir(dir);
	if (d == NULL)
		return;
	char mine[64];
	snprintf(mine, sizeof mine, "snapshot-%ld-", (long)getpid());
	struct dirent *e;
	while ((e = readdir(d)) != NULL) {
		size_t n = strlen(e->d_name);
		if (strncmp(e->d_name, "snapshot-", 9) != 0 || n < 4 ||
		    strcmp(e->d_name + n - 4, ".tmp") != 0 || strncmp(e->d_name, mine, strlen(mine)) == 0)
			continue;
		char p[4200];
		snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
		unlink(p);
	}
	closedir(d);
}

static void ctx_unref(snap_ctx *c)
{
	if (atomic_fetch_sub(&c->refs, 1) != 1)
		return;
	pthread_cond_destroy(&c->cv);
	pthread_mutex_destroy(&c->mu);
	free(c);
}

static void on_drain(srv_stream *st, void *ctx)
{
	(void)st;
	snap_ctx *c = ctx;
	pthread_mutex_lock(&c->mu);
	pthread_cond_signal(&c->cv);
	pthread_mutex_unlock(&c->mu);
}

static void on_close(srv_stream *st, void *ctx, bool cancelled)
{
	(void)st;
	(void)cancelled;
	snap_ctx *c = ctx;
	pthread_mutex_lock(&c->mu);
	c->closed = true;
	pthread_cond_signal(&c->cv);
	pthread_mutex_unlock(&c->mu);
	ctx_unref(c);
}

/* Wait until the queue is below the window or the stream closed; false when closed. */
static bool wait_room(snap_ctx *c)
{
	pthread_mutex_lock(&c->mu);
	while (!c->closed && srv_stream_queued_bytes(c->st) >= WINDOW) {
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_nsec += 100 * 1000000L; /* a drain between the check and the wait */
		if (ts.tv_nsec >= 1000000000L) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000L;
		}
		pthread_cond_timedwait(&c->cv, &c->mu, &ts);
	}
	bool open = !c->closed;
	pthread_mutex_unlock(&c->mu);
	return open;
}

static bool send_blob(snap_ctx *c, const uint8_t *p, size_t n, uint64_t remaining)
{
	Etcdserverpb__SnapshotResponse r = ETCDSERVERPB__SNAPSHOT_RESPONSE__INIT;
	r.remaining_bytes = remaining;
	r.blob.data = (uint8_t *)p;
	r.blob.len = n;
	return srv_stream_send(c->st, &r.base) == 0;
}

/* Stream the file at c->path, then its sha256. Returns EC_OK, or the error to
 * finish with (-1: the stream is gone, nothing to finish). */
static int stream_file(snap_ctx *c)
{
	int fd = open(c->path, O_RDONLY | O_CLOEXEC);
	struct stat sb;
	if (fd < 0 || fstat(fd, &sb) != 0) {
		srv_log_error("failed to open snapshot file", SRV_LF_STR("path", c->path),
			      SRV_LF_ERR(strerror(errno)));
		if (fd >= 0)
			close(fd);
		return EC_INTERNAL;
	}
	uint8_t *buf = malloc(CHUNK);
	EVP_MD_CTX *h = EVP_MD_CTX_new();
	int rc = buf && h && EVP_DigestInit_ex(h, EVP_sha256(), NULL) == 1 ? EC_OK : EC_NOMEM;
	uint64_t size = (uint64_t)sb.st_size, sent = 0;
	while (rc == EC_OK && sent < size) {
		size_t want = size - sent < CHUNK ? (size_t)(size - sent) : CHUNK;
		ssize_t n = pread(fd, buf, want, (off_t)sent);
		if (n <= 0) {
			rc = EC_INTERNAL;
			break;
		}
		sent += (uint64_t)n;
		EVP_DigestUpdate(h, buf, (size_t)n);
		if (!wait_room(c) || !send_blob(c, buf, (size_t)n, size - sent))
			rc = -1;
	}
	uint8_t sha[32];
	unsigned sl = 0;
	if (rc == EC_OK && EVP_DigestFinal_ex(h, sha, &sl) != 1)
		rc = EC_NOMEM;
	if (rc == EC_OK && (!wait_room(c) || !send_blob(c, sha, sizeof sha, 0)))
		rc = -1;
	EVP_MD_CTX_free(h);
	free(buf);
	close(fd);
	if (rc == EC_OK)
		srv_log_info("sending database sha256 checksum to gRPC stream",
			     SRV_LF_UINT("total-bytes", size));
	return rc;
}

static void *snap_main(void *arg)
{
	snap_ctx *c = arg;
	char err[512] = "";
	ec_snapshot_info info;
	int rc = EC_OK;
	srv_log_info("sending database snapshot to client",
		     SRV_LF_STR("path", c->path));
	if (ec_snapshot_export(c->app->db, c->path, false, &info, err, sizeof err) != 0) {
		srv_log_error("failed to write a snapshot", SRV_LF_ERR(err));
		rc = EC_INTERNAL;
	} else {
		rc = stream_file(c);
	}
	unlink(c->path);
	if (rc != -1)
		srv_stream_finish(c->st, rc);
	srv_stream_unref(c->st);
	ctx_unref(c);
	return NULL;
}

void srv_maint_snapshot(srv_stream *st, const ProtobufCMessage *req)
{
	(void)req;
	srv_app *app = srv_stream_app(st);
	int err = srv_is_learner(app) ? EC_NOT_SUPPORTED_FOR_LEARNER
					: srv_auth_maint_admin(srv_stream_call(st));
	snap_ctx *c = err == EC_OK ? calloc(1, sizeof(*c)) : NULL;
	if (err == EC_OK && c == NULL)
		err = EC_NOMEM;
	if (err != EC_OK) {
		srv_stream_finish(st, err);
		srv_stream_unref(st);
		return;
	}
	c->st = st;
	c->app = app;
	pthread_mutex_init(&c->mu, NULL);
	pthread_cond_init(&c->cv, NULL);
	atomic_init(&c->refs, 2);
	sweep_stale(app->cfg->data_dir);
	snprintf(c->path, sizeof c->path, "%s/snapshot-%ld-%u.tmp", app->cfg->data_dir,
		 (long)getpid(), atomic_fetch_add(&g_seq, 1));
	srv_stream_ops ops = {.on_drain = on_drain, .on_close = on_close};
	srv_stream_set_ops(st, &ops, c);
	pthread_t th;
	pthread_attr_t at;
	pthread_attr_init(&at);
	pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
	if (pthread_create(&th, &at, snap_main, c) != 0) {
		pthread_attr_destroy(&at);
		/* on_close will release the callbacks' reference */
		srv_stream_finish(st, EC_NOMEM);
		srv_stream_unref(st);
		ctx_unref(c);
		return;
	}
	pthread_attr_destroy(&at);
}
