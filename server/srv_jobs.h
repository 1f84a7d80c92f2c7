/*
 * srv_jobs: a count of the detached workers one component has running, so
 * that the component can stop taking new ones and wait for the last to end
 * before it frees what they use. srv_maint's hashes and defragments, the
 * /health checks of srv_http and the v2 admin API's requests run on detached
 * threads this way: a worker still hashing the store when the server shuts
 * down would otherwise read a closed database.
 *
 * Thread-safe. Embed an srv_jobs in the owner; the owner may free it once
 * srv_jobs_stop has returned 0 (a worker's last touch of it is its leave).
 */
#ifndef METASTORE_SRV_JOBS_H
#define METASTORE_SRV_JOBS_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>

/* Why a job was not taken. */
enum {
	SRV_JOBS_OK = 0,
	SRV_JOBS_ESTOPPED, /* srv_jobs_stop has begun */
	SRV_JOBS_EFULL,    /* the owner's limit of running jobs is reached */
	SRV_JOBS_ETHREAD,  /* no thread could be started */
};

typedef struct srv_jobs {
	pthread_mutex_t mu;
	pthread_cond_t cv; /* broadcast when running drops */
	size_t running;
	size_t max; /* 0: no limit */
	bool stopping;
} srv_jobs;

/* srv_jobs_init - an empty set that takes at most @max jobs at once (0: any
 * number). */
void srv_jobs_init(srv_jobs *j, size_t max);

/* srv_jobs_destroy - free what srv_jobs_init made; no job may be running. */
void srv_jobs_destroy(srv_jobs *j);

/*
 * srv_jobs_enter - count one more job, run by the caller or by a thread the
 * caller starts; every 0 return is paired with one srv_jobs_leave. Returns 0,
 * SRV_JOBS_ESTOPPED or SRV_JOBS_EFULL (nothing counted).
 */
int srv_jobs_enter(srv_jobs *j);

/* srv_jobs_leave - the job counted by srv_jobs_enter has ended. */
void srv_jobs_leave(srv_jobs *j);

/*
 * srv_jobs_run - @fn(@arg) on a new detached thread for a job the caller has
 * entered; the thread leaves when @fn returns. Returns 0 (@arg belongs to @fn
 * now) or SRV_JOBS_ETHREAD (nothing started, the job still counted: the
 * caller leaves).
 */
int srv_jobs_run(srv_jobs *j, void (*fn)(void *arg), void *arg);

/*
 * srv_jobs_start - srv_jobs_enter, then @fn(@arg) on a new detached thread,
 * counted until @fn returns. Returns 0 (@arg belongs to @fn now) or an
 * SRV_JOBS_E* code (nothing started; @arg is still the caller's).
 */
int srv_jobs_start(srv_jobs *j, void (*fn)(void *arg), void *arg);

/*
 * srv_jobs_stop - refuse every later enter (SRV_JOBS_ESTOPPED) and wait until
 * no job runs, at most @timeout_ms milliseconds (negative: no limit).
 * Returns how many jobs still run (0 unless it timed out). May be called more
 * than once.
 */
size_t srv_jobs_stop(srv_jobs *j, long timeout_ms);

/* srv_jobs_strerror - static text for an SRV_JOBS_* code. */
const char *srv_jobs_strerror(int err);

#endif
