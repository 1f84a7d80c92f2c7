#!/usr/bin/env bash
# cluster-concurrency: clientv3/concurrency recipes against a 3-member cluster
# (go/concur), each across a kill -9 of the leader (restarted afterwards):
#   - Mutex: 3 processes x 15 increments of a shared counter under the lock (write
#     guarded by If(IsOwner)); final counter == 45, and no process ever saw the counter
#     change while it held the lock;
#   - Election: 3 campaigners for ~14 s (hold ~300 ms, resign): terms never overlap
#     in time, every leader's Leader() names itself, leadership moves between them.
. "$(dirname "$0")/../lib.sh"

[ -x "$IT_GOBIN/concur" ] || { fail build "concur binary missing"; exit 1; }
start_cluster 3 || { fail start "3-member cluster did not start"; exit 1; }
pass start
EPS=$(all_endpoints)

# ---- mutex
pids=()
for id in 1 2 3; do
    "$IT_GOBIN/concur" mutex -endpoints "$EPS" -id "$id" -n 15 -prefix cmx/ >"$_IT_TMP/mx.$id.out" 2>"$_IT_TMP/mx.$id.err" &
    pids+=($!)
    track_pid "$!"
done
for i in $(seq 1 100); do
    v=$(cl_ectl_all get cmx/counter --print-value-only 2>/dev/null)
    [ "${v:-0}" -ge 10 ] && break
    sleep 0.1
done
ldr=$(leader_index)
kill_member "$ldr" KILL
echo "# mutex: killed leader m$ldr at counter ${v:-0}"
sleep 3
restart_member "$ldr" --nowait
for id in 1 2 3; do
    p=${pids[$((id - 1))]}
    wait_pid_exit "$p" 180 || { fail "mutex-$id-ended" "still running"; kill -KILL "$p"; }
    wait "$p"; rc=$?
    untrack_pid "$p"
    cat "$_IT_TMP/mx.$id.out"
    grep -c . "$_IT_TMP/mx.$id.err" | sed "s/^/# mutex $id: retried calls: /"
    check_eq "mutex-$id-exit" 0 "$rc"
done
check_true healthy-after-mutex "cluster not healthy" wait_cluster_healthy
check_out mutex-counter 45 cl_ectl_all get cmx/counter --print-value-only
check_out mutex-lock-keys-gone "" cl_ectl_all get cmx/lock --prefix --keys-only

# ---- election
pids=()
for id in 1 2 3; do
    "$IT_GOBIN/concur" election -endpoints "$EPS" -id "$id" -duration 14s -prefix cel/ >"$_IT_TMP/el.$id.out" 2>"$_IT_TMP/el.$id.err" &
    pids+=($!)
    track_pid "$!"
done
sleep 5
ldr=$(leader_index)
kill_member "$ldr" KILL
echo "# election: killed leader m$ldr"
sleep 3
restart_member "$ldr" --nowait
for id in 1 2 3; do
    p=${pids[$((id - 1))]}
    wait_pid_exit "$p" 120 || { fail "election-$id-ended" "still running"; kill -KILL "$p"; }
    wait "$p" 2>/dev/null
    untrack_pid "$p"
done
"$IT_GOBIN/concur" check-election "$_IT_TMP"/el.*.out >"$_IT_TMP/el.check" 2>&1
cat "$_IT_TMP/el.check"
IT_CHECKS=$((IT_CHECKS + $(grep -c '^ok \|^not ok ' "$_IT_TMP/el.check")))
IT_FAILS=$((IT_FAILS + $(grep -c '^not ok ' "$_IT_TMP/el.check")))
check_true healthy-after-election "cluster not healthy" wait_cluster_healthy
# Election keys live under "<prefix>/" (clientv3 appends the slash)
check_out election-keys-gone "" cl_ectl_all get cel// --prefix --keys-only
stop_cluster
finish
