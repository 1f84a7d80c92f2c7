/*
 * rpc_etcd_table_serve: serve etcd's method table with no handlers, for poking
 * the runtime with real clients by hand (every method answers UNIMPLEMENTED).
 *
 *   rpc_etcd_table_serve [ADDR]     default ADDR 127.0.0.1:0
 *
 * Prints "port N" once listening; stops gracefully on SIGINT/SIGTERM.
 */
#include <signal.h>
#include <stdio.h>
#include <time.h>

#include "server/srv_methods.h"
#include "server/srv_rpc.h"

int main(int argc, char **argv)
{
	const char *addr = argc > 1 ? argv[1] : "127.0.0.1:0";
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	pthread_sigmask(SIG_BLOCK, &set, NULL); /* before any thread starts */

	srv_method tab[SRV_M__COUNT];
	srv_etcd_methods(tab);
	srv_rpc_config cfg = {.listen = &addr, .n_listen = 1};
	srv_rpc *rpc;
	char err[256];
	if (srv_rpc_start(&cfg, tab, SRV_M__COUNT, NULL, &rpc, err, sizeof err) != 0) {
		fprintf(stderr, "rpc_etcd_table_serve: %s\n", err);
		return 1;
	}
	printf("port %d\n", srv_rpc_port(rpc, 0));
	fflush(stdout);
	int sig;
	sigwait(&set, &sig);
	struct timespec t0, t1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	srv_rpc_shutdown(rpc);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	fprintf(stderr, "rpc_etcd_table_serve: stopped in %ld ms\n",
		(long)((t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000));
	return 0;
}
