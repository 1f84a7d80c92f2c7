/*
 * test_jobs: counted detached workers (server/srv_jobs) and their use by
 * srv_maint. A job holds the count until its function returns; stop refuses
 * later jobs and waits for the running ones (or gives up after its timeout
 * and says how many still run); the limit refuses jobs past it. srv_maint
 * answers a peer's HashKV until srv_maint_stop, then refuses it with
 * EC_STOPPED. Real threads, a real RocksDB store in a temp dir.
 */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "etcdcompat/ec_errors.h"
#include "rpc.pb-c.h"
#include "server/srv_app.h"
#include "server/srv_jobs.h"
#include "server/srv_maint.h"
#include "storage/st_mvcc.h"

/* A job that blocks until the test opens its gate. */
typedef struct gated {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	bool open;
	atomic_int started;
	atomic_int finished;
} gated;

static void gated_init(gated *g)
{
	pthread_mutex_init(&g->mu, NULL);
	pthread_cond_init(&g->cv, NULL);
	g->open = false;
	atomic_init(&g->started, 0);
	atomic_init(&g->finished, 0);
}

static void gated_open(gated *g)
{
	pthread_mutex_lock(&g->mu);
	g->open = true;
	pthread_cond_broadcast(&g->cv);
	pthread_mutex_unlock(&g->mu);
}

static void gated_job(void *arg)
{
	gated *g = arg;
	atomic_fetch_add(&g->started, 1);
	pthread_mutex_lock(&g->mu);
	while (!g->open)
		pthread_cond_wait(&g->cv, &g->mu);
	pthread_mutex_unlock(&g->mu);
	usleep(20 * 1000); /* still inside the job while stop waits */
	atomic_fetch_add(&g->finished, 1);
}

static void wait_started(gated *g, int n)
{
	for (int i = 0; i < 5000 && atomic_load(&g->started) < n; i++)
		usleep(1000);
	cr_assert_eq(atomic_load(&g->started), n, "every job started");
}

typedef struct stopper {
	srv_jobs *j;
	atomic_bool returned;
	size_t left;
} stopper;

static void *stop_main(void *arg)
{
	stopper *s = arg;
	s->left = srv_jobs_stop(s->j, -1);
	atomic_store(&s->returned, true);
	return NULL;
}

Test(jobs, stop_waits_for_every_running_job_and_refuses_new_ones)
{
	srv_jobs j;
	srv_jobs_init(&j, 0);
	gated g;
	gated_init(&g);
	for (int i = 0; i < 3; i++)
		cr_assert_eq(srv_jobs_start(&j, gated_job, &g), SRV_JOBS_OK);
	wait_started(&g, 3);

	stopper s = {.j = &j};
	atomic_init(&s.returned, false);
	pthread_t t;
	cr_assert_eq(pthread_create(&t, NULL, stop_main, &s), 0);
	usleep(100 * 1000);
	cr_assert(!atomic_load(&s.returned), "stop returned while jobs still ran");
	cr_assert_eq(srv_jobs_enter(&j), SRV_JOBS_ESTOPPED, "a job entered after stop began");
	cr_assert_eq(srv_jobs_start(&j, gated_job, &g), SRV_JOBS_ESTOPPED);

	gated_open(&g);
	pthread_join(t, NULL);
	cr_assert_eq(s.left, 0);
	cr_assert_eq(atomic_load(&g.finished), 3, "stop returned before a job had ended");
	cr_assert_eq(atomic_load(&g.started), 3, "a refused job ran");
	cr_assert_eq(srv_jobs_stop(&j, -1), 0, "a second stop");
	srv_jobs_destroy(&j);
}

Test(jobs, stop_with_a_timeout_reports_the_jobs_still_running)
{
	srv_jobs j;
	srv_jobs_init(&j, 0);
	gated g;
	gated_init(&g);
	cr_assert_eq(srv_jobs_start(&j, gated_job, &g), SRV_JOBS_OK);
	cr_assert_eq(srv_jobs_start(&j, gated_job, &g), SRV_JOBS_OK);
	wait_started(&g, 2);
	cr_assert_eq(srv_jobs_stop(&j, 0), 2, "no wait at all");
	cr_assert_eq(srv_jobs_stop(&j, 50), 2, "gave up after 50 ms");
	gated_open(&g);
	cr_assert_eq(srv_jobs_stop(&j, 10000), 0);
	cr_assert_eq(atomic_load(&g.finished), 2);
	srv_jobs_destroy(&j);
}

Test(jobs, the_limit_counts_jobs_entered_by_hand_and_started)
{
	srv_jobs j;
	srv_jobs_init(&j, 2);
	gated g;
	gated_init(&g);
	cr_assert_eq(srv_jobs_enter(&j), SRV_JOBS_OK); /* run by the caller */
	cr_assert_eq(srv_jobs_start(&j, gated_job, &g), SRV_JOBS_OK);
	cr_assert_eq(srv_jobs_enter(&j), SRV_JOBS_EFULL);
	cr_assert_eq(srv_jobs_start(&j, gated_job, &g), SRV_JOBS_EFULL);
	srv_jobs_leave(&j);
	cr_assert_eq(srv_jobs_enter(&j), SRV_JOBS_OK, "a place came free");
	/* a job entered by hand runs on a thread started for it */
	cr_assert_eq(srv_jobs_run(&j, gated_job, &g), SRV_JOBS_OK);
	cr_assert_eq(srv_jobs_enter(&j), SRV_JOBS_EFULL);
	wait_started(&g, 2);
	gated_open(&g);
	cr_assert_eq(srv_jobs_stop(&j, 10000), 0, "the threads left when their jobs ended");
	cr_assert_eq(atomic_load(&g.finished), 2);
	cr_assert_str_eq(srv_jobs_strerror(SRV_JOBS_EFULL), "too many jobs running");
	srv_jobs_destroy(&j);
}

/* ---- srv_maint's workers ------------------------------------------------------ */

static uint8_t *hashkv_request(int64_t rev, size_t *len)
{
	Etcdserverpb__HashKVRequest r = ETCDSERVERPB__HASH_KVREQUEST__INIT;
	r.revision = rev;
	*len = etcdserverpb__hash_kvrequest__get_packed_size(&r);
	uint8_t *p = malloc(*len ? *len : 1);
	cr_assert_not_null(p);
	etcdserverpb__hash_kvrequest__pack(&r, p);
	return p;
}

Test(jobs, a_peers_hashkv_is_answered_until_maint_stops_then_refused)
{
	char tmpl[] = "/tmp/ms-test-jobs-XXXXXX";
	char *dir = mkdtemp(tmpl);
	cr_assert_not_null(dir);
	char err[256];
	st_options o = {.create_if_missing = true};
	srv_app app;
	memset(&app, 0, sizeof(app));
	cr_assert_eq(st_db_open(dir, &o, &app.db, err, sizeof(err)), 0, "%s", err);
	app.cluster_id = 0x1234;
	app.member_id = 0x99;
	cr_assert_eq(srv_maint_new(&app), 0);

	size_t inlen;
	uint8_t *in = hashkv_request(0, &inlen);
	uint8_t *out = NULL;
	size_t outlen = 0;
	/* no reply handle: hashed on the calling thread, counted all the same */
	cr_assert_eq(srv_maint_serve_hashkv(&app, in, inlen, &out, &outlen, NULL), 0);
	Metastore__ForwardReply *fr = metastore__forward_reply__unpack(NULL, outlen, out);
	cr_assert_not_null(fr);
	cr_assert_eq(fr->err, EC_OK);
	cr_assert_eq(fr->cluster_id, 0x1234);
	Etcdserverpb__HashKVResponse *hr =
	        etcdserverpb__hash_kvresponse__unpack(NULL, fr->data.len, fr->data.data);
	cr_assert_not_null(hr);
	cr_assert_eq(hr->header->member_id, 0x99);
	etcdserverpb__hash_kvresponse__free_unpacked(hr, NULL);
	metastore__forward_reply__free_unpacked(fr, NULL);
	free(out);

	srv_maint_stop(&app);
	out = NULL;
	outlen = 0;
	cr_assert_eq(srv_maint_serve_hashkv(&app, in, inlen, &out, &outlen, NULL), EC_STOPPED,
	             "a peer's HashKV after srv_maint_stop");
	cr_assert_null(out);
	cr_assert_str_eq(ec_strerror(EC_STOPPED), "etcdserver: server stopped");

	free(in);
	srv_maint_free(&app);
	st_db_close(app.db);
	char cmd[300];
	snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
	cr_assert_eq(system(cmd), 0);
}
