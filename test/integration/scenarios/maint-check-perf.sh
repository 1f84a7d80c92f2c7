#!/usr/bin/env bash
# maint-check-perf: `etcdctl check perf --load=s` (150 puts/s from 50 clients
# for 60 s under /etcdctl-check-perf/, then a prefix delete; throughput >= 90%,
# slowest request <= 0.5 s, stddev <= 0.1 s) passes — prints its four PASS
# lines and "PASS", exit 0 — on one member and on a 3-member cluster, and
# leaves no key under the prefix. About 2 minutes.
. "$(dirname "$0")/../lib.sh"

# perf_ok NAME ETCDCTL-ARGS...: run check perf, expect etcd's PASS report.
perf_ok() {
    local name=$1 out rc
    shift
    out=$(timeout 180 etcdctl "$@" --command-timeout=60s check perf --load=s 2>&1)
    rc=$?
    local report
    report=$(printf '%s\n' "$out" | grep -E '^(PASS|FAIL|Slowest|Stddev)' | sed -E 's/[0-9.]+/N/g' | paste -sd '|')
    check_eq "$name" "0 PASS: Throughput is N writes/s|PASS: Slowest request took Ns|PASS: Stddev is Ns|PASS" \
        "$rc $report"
    [ "$rc" -eq 0 ] || printf '%s\n' "$out" | tail -n 8 | sed 's/^/#   /'
}

start_server || { fail start "server did not start"; exit 1; }
pass start
perf_ok one-member --endpoints="$SRV_ENDPOINT"
check_out one-member-prefix-empty "" ectl get --prefix /etcdctl-check-perf/ --keys-only
stop_server

start_cluster 3 || { fail start-cluster "3-member cluster did not start"; exit 1; }
pass start-cluster
perf_ok cluster --endpoints="$(all_endpoints)"
check_out cluster-prefix-empty "" cl_ectl_all get --prefix /etcdctl-check-perf/ --keys-only
stop_cluster
finish
