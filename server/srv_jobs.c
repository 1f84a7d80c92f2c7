/*
 * srv_jobs: the running count of a component's detached workers, a gate that
 * closes on stop, and the wait for the count to reach zero (see srv_jobs.h).
 */
#include "server/srv_jobs.h"

#include <errno.h>
#include <stdlib.h>
#include <time.h>

void srv_jobs_init(srv_jobs *j, size_t max)
{
	pthread_mutex_init(&j->mu, NULL);
	pthread_cond_init(&j->cv, NULL);
	j->running = 0;
	j->max = max;
	j->stopping = false;
}

void srv_jobs_destroy(srv_jobs *j)
{
	pthread_mutex_destroy(&j->mu);
	pthread_cond_destroy(&j->cv);
}

int srv_jobs_enter(srv_jobs *j)
{
	pthread_mutex_lock(&j->mu);
	int rc = SRV_JOBS_OK;
	if (j->stopping)
		rc = SRV_JOBS_ESTOPPED;
	else if (j->max != 0 && j->running >= j->max)
		rc = SRV_JOBS_EFULL;
	else
		j->running++;
	pthread_mutex_unlock(&j->mu);
	return rc;
}

void srv_jobs_leave(srv_jobs *j)
{
	pthread_mutex_lock(&j->mu);
	if (j->running > 0)
		j->running--;
	if (j->running == 0)
		pthread_cond_broadcast(&j->cv);
	pthread_mutex_unlock(&j->mu);
}

typedef struct job {
	srv_jobs *jobs;
	void (*fn)(void *arg);
	void *arg;
} job;

static void *job_main(void *p)
{
	job x = *(job *)p;
	free(p);
	x.fn(x.arg);
	srv_jobs_leave(x.jobs);
	return NULL;
}

int srv_jobs_run(srv_jobs *j, void (*fn)(void *arg), void *arg)
{
	job *x = malloc(sizeof(*x));
	pthread_attr_t at;
	bool attr = pthread_attr_init(&at) == 0;
	bool started = false;
	if (x != NULL && attr) {
		*x = (job){j, fn, arg};
		pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
		pthread_t t;
		started = pthread_create(&t, &at, job_main, x) == 0;
	}
	if (attr)
		pthread_attr_destroy(&at);
	if (started)
		return SRV_JOBS_OK;
	free(x);
	return SRV_JOBS_ETHREAD;
}

int srv_jobs_start(srv_jobs *j, void (*fn)(void *arg), void *arg)
{
	int rc = srv_jobs_enter(j);
	if (rc == SRV_JOBS_OK && (rc = srv_jobs_run(j, fn, arg)) != SRV_JOBS_OK)
		srv_jobs_leave(j);
	return rc;
}

size_t srv_jobs_stop(srv_jobs *j, long timeout_ms)
{
	struct timespec until;
	clock_gettime(CLOCK_REALTIME, &until);
	if (timeout_ms > 0) {
		until.tv_sec += timeout_ms / 1000;
		until.tv_nsec += (timeout_ms % 1000) * 1000000L;
		if (until.tv_nsec >= 1000000000L) {
			until.tv_sec++;
			until.tv_nsec -= 1000000000L;
		}
	}
	pthread_mutex_lock(&j->mu);
	j->stopping = true;
	while (j->running > 0) {
		if (timeout_ms < 0)
			pthread_cond_wait(&j->cv, &j->mu);
		else if (pthread_cond_timedwait(&j->cv, &j->mu, &until) == ETIMEDOUT)
			break;
	}
	size_t left = j->running;
	pthread_mutex_unlock(&j->mu);
	return left;
}

const char *srv_jobs_strerror(int err)
{
	switch (err) {
	case SRV_JOBS_OK:
		return "ok";
	case SRV_JOBS_ESTOPPED:
		return "stopping";
	case SRV_JOBS_EFULL:
		return "too many jobs running";
	case SRV_JOBS_ETHREAD:
		return "cannot start a thread";
	default:
		return "unknown srv_jobs error";
	}
}
