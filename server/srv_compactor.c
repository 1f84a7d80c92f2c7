/*
 * srv_compactor: etcd's periodic and revision auto-compaction (see
 * srv_compactor.h). One thread sleeps on a condition variable between steps,
 * so stop is immediate; a compaction in flight is abandoned after ~100 ms by
 * srv_maint_compact's stop flag (the proposal itself still completes).
 */
#include "server/srv_compactor.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "etcdcompat/ec_errors.h"
#include "server/srv_log.h"
#include "server/srv_maint.h"

#define HOUR_MS INT64_C(3600000)
#define REVISION_INTERVAL_MS (5 * 60 * 1000) /* etcd's revInterval */

struct srv_compactor {
	srv_app *app;
	bool revision_mode;
	int64_t retention; /* periodic: ms; revision: revisions */
	int64_t interval_ms; /* revision mode's check interval */
	pthread_t thread;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	atomic_bool stop;
};

/* Sleep @ms or until stopped; returns false once stopped. */
static bool nap(srv_compactor *c, int64_t ms)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += ms / 1000;
	ts.tv_nsec += (long)(ms % 1000) * 1000000L;
	if (ts.tv_nsec >= 1000000000L) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000L;
	}
	pthread_mutex_lock(&c->mu);
	while (!atomic_load(&c->stop) && pthread_cond_timedwait(&c->cv, &c->mu, &ts) == 0)
		;
	pthread_mutex_unlock(&c->mu);
	return !atomic_load(&c->stop);
}

/* etcd pauses the compactor while the member does not lead. */
static bool leads(srv_app *app)
{
	srv_node_status st;
	srv_node_get_status(app->node, &st);
	return st.is_leader;
}

static void periodic(srv_compactor *c)
{
	srv_app *app = c->app;
	int64_t period = c->retention;
	int64_t compact_every = period > HOUR_MS ? HOUR_MS : period;
	int64_t retry = compact_every / 10;
	if (retry <= 0)
		retry = 1;
	size_t keep = (size_t)(period / retry) + 1;
	int64_t *revs = calloc(keep, sizeof(*revs));
	if (revs == NULL)
		return;
	size_t n = 0;
	int64_t last_ok = srv_mono_ms(), base = period;
	for (;;) {
		if (n == keep) {
			/* revs[0] is always the revision of about one period ago */
			memmove(revs, revs + 1, (n - 1) * sizeof(*revs));
			n--;
		}
		revs[n++] = ec_kv_revision(app->kv);
		if (!nap(c, retry))
			break;
		if (!leads(app) || srv_mono_ms() - last_ok < base)
			continue;
		if (base == period)
			base = compact_every;
		int64_t rev = revs[0];
		srv_log_info("starting auto periodic compaction", SRV_LF_INT("revision", rev),
			     SRV_LF_DUR_MS("compact-period", period));
		int err = srv_maint_compact(app, rev, &c->stop);
		if (err == EC_OK || err == EC_COMPACTED) {
			srv_log_info("completed auto periodic compaction", SRV_LF_INT("revision", rev),
				     SRV_LF_DUR_MS("compact-period", period),
				     SRV_LF_DUR_MS("took", srv_mono_ms() - last_ok));
			last_ok = srv_mono_ms();
		} else if (err != EC_STOPPED || !atomic_load(&c->stop)) {
			srv_log_warn("failed auto periodic compaction", SRV_LF_INT("revision", rev),
				     SRV_LF_DUR_MS("compact-period", period),
				     SRV_LF_DUR_MS("retry-interval", retry), SRV_LF_ERR(ec_strerror(err)));
		}
	}
	free(revs);
}

static void revision(srv_compactor *c)
{
	srv_app *app = c->app;
	int64_t prev = 0;
	while (nap(c, c->interval_ms)) {
		if (!leads(app))
			continue;
		int64_t rev = ec_kv_revision(app->kv) - c->retention;
		if (rev <= 0 || rev == prev)
			continue;
		int64_t start = srv_mono_ms();
		srv_log_info("starting auto revision compaction", SRV_LF_INT("revision", rev),
			     SRV_LF_INT("revision-compaction-retention", c->retention));
		int err = srv_maint_compact(app, rev, &c->stop);
		if (err == EC_OK || err == EC_COMPACTED) {
			prev = rev;
			srv_log_info("completed auto revision compaction", SRV_LF_INT("revision", rev),
				     SRV_LF_INT("revision-compaction-retention", c->retention),
				     SRV_LF_DUR_MS("took", srv_mono_ms() - start));
		} else if (err != EC_STOPPED || !atomic_load(&c->stop)) {
			srv_log_warn("failed auto revision compaction", SRV_LF_INT("revision", rev),
				     SRV_LF_INT("revision-compaction-retention", c->retention),
				     SRV_LF_DUR_MS("retry-interval", c->interval_ms),
				     SRV_LF_ERR(ec_strerror(err)));
		}
	}
}

static void *compactor_main(void *arg)
{
	srv_compactor *c = arg;
	if (c->revision_mode)
		revision(c);
	else
		periodic(c);
	return NULL;
}

int srv_compactor_start(srv_app *app, srv_compactor **out)
{
	*out = NULL;
	int64_t retention = 0;
	if (srv_config_compaction_retention(app->cfg, &retention) != 0 || retention <= 0)
		return 0;
	srv_compactor *c = calloc(1, sizeof(*c));
	if (c == NULL)
		return -1;
	c->app = app;
	c->revision_mode = strcmp(app->cfg->auto_compaction_mode, "revision") == 0;
	c->retention = retention;
	c->interval_ms = REVISION_INTERVAL_MS;
	const char *env = getenv("METASTORE_TEST_COMPACTOR_INTERVAL_MS");
	if (env != NULL && atoll(env) > 0)
		c->interval_ms = atoll(env);
	pthread_mutex_init(&c->mu, NULL);
	pthread_cond_init(&c->cv, NULL);
	atomic_init(&c->stop, false);
	if (pthread_create(&c->thread, NULL, compactor_main, c) != 0) {
		pthread_mutex_destroy(&c->mu);
		pthread_cond_destroy(&c->cv);
		free(c);
		return -1;
	}
	*out = c;
	return 0;
}

void srv_compactor_stop(srv_compactor *c)
{
	if (c == NULL)
		return;
	pthread_mutex_lock(&c->mu);
	atomic_store(&c->stop, true);
	pthread_cond_broadcast(&c->cv);
	pthread_mutex_unlock(&c->mu);
	pthread_join(c->thread, NULL);
	pthread_mutex_destroy(&c->mu);
	pthread_cond_destroy(&c->cv);
	free(c);
}
