#!/usr/bin/env bash
# maint-corrupt: the corruption checks on a 3-member cluster started with
# --experimental-initial-corrupt-check and --experimental-corrupt-check-time=1s.
# Healthy: the leader's periodic check runs ("finished peer corruption check")
# and raises nothing; a restarted member passes the initial check and serves.
# Damaged (metastore only: tools/corrupt/ms-corrupt writes a revision into a
# stopped follower's keyspace that never went through raft, and the cluster
# moves on by one revision meanwhile): the follower refuses to start ("found
# data inconsistency with peers"); started without the initial check, the
# leader's periodic check raises CORRUPT (member 0, as etcd 3.4.23) and then
# every member refuses writes with "etcdserver: corrupt cluster" (DataLoss)
# while reads still work, as etcd's applierV3Corrupt.
. "$(dirname "$0")/../lib.sh"

# wait_log K PATTERN BOUND-S: poll member K's log for an extended regex.
wait_log() {
    local end=$((SECONDS + $3))
    while [ $SECONDS -lt $end ]; do
        grep -Eq "$2" "${CL_LOG[$1]}" 2>/dev/null && return 0
        sleep 0.5
    done
    return 1
}

start_cluster 3 --experimental-initial-corrupt-check --experimental-corrupt-check-time=1s ||
    { fail start "3-member cluster did not start"; exit 1; }
pass start
for i in $(seq 1 10); do cl_ectl_all put "cc/k$i" "v$i" >/dev/null; done
l=$(leader_index)
check_true periodic-check-runs "no finished check in the leader's log" \
    wait_log "$l" 'finished peer corruption check' 60
check_out no-alarm "" cl_ectl_all alarm list
f=$(follower_index)
kill_member "$f" TERM
restart_member "$f" || { fail restart "m$f did not restart"; exit 1; }
check_true initial-check-passes "no passed initial check in m$f's log" \
    wait_log "$f" 'initial corruption checking passed|succeeded on initial corruption checking' 10
check_out no-alarm-after-restart "" cl_ectl_all alarm list

if [ "$IT_TARGET" != metastore ]; then
    echo "# damage part skipped on $IT_TARGET (needs metastore's tools/corrupt/ms-corrupt)"
    stop_cluster
    finish
    exit
fi
CORRUPT_TOOL=$(dirname "$IT_SERVER")/../tools/corrupt/ms-corrupt
l=$(leader_index)
f=$(follower_index)
kill_member "$f" TERM
check_match damage 'wrote cc/forged at revision [0-9]+ .*' "$("$CORRUPT_TOOL" "${CL_DATA[$f]}" cc/forged bad 2>&1)"
check_out put-while-down OK cl_ectl "$l" put cc/legit v
restart_member "$f" --nowait
pid=${CL_PID[$f]}
check_true damaged-refuses-start "m$f still running" wait_pid_exit "$pid" 60
wait "$pid" 2>/dev/null
rc=$?
_it_forget_pid "$pid"
CL_PID[$f]=
check_true damaged-exit-status "exit status $rc" [ "$rc" -ne 0 ]
check_true inconsistency-logged "no inconsistency line in m$f's log" \
    grep -q 'found data inconsistency with peers' "${CL_LOG[$f]}"

# without the initial check the damaged member starts; the leader notices
saved=("${CL_EXTRA[@]}")
CL_EXTRA=(--experimental-corrupt-check-time=1s)
restart_member "$f" || { fail restart-damaged "m$f did not start"; exit 1; }
CL_EXTRA=("${saved[@]}")
alarm=
end=$((SECONDS + 60))
while [ $SECONDS -lt $end ]; do
    alarm=$(cl_ectl "$l" alarm list 2>/dev/null)
    [ -n "$alarm" ] && break
    sleep 0.5
done
check_eq corrupt-alarm "alarm:CORRUPT " "$alarm"   # member 0: omitted in the text form
for k in 1 2 3; do
    check_etcdctl_error "put-refused-m$k" DataLoss "etcdserver: corrupt cluster" cl_ectl "$k" put cc/x y
done
check_out get-works v1 cl_ectl "$l" get cc/k1 --print-value-only
check_true status-errors "no CORRUPT in status errors" \
    sh -c "$(printf '%q ' etcdctl --endpoints="${CL_EP[$l]}" -w json endpoint status) | grep -q 'alarm:CORRUPT'"
stop_cluster
finish
