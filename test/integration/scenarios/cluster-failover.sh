#!/usr/bin/env bash
# cluster-failover: kill -9 the leader of a 3-member cluster under a write load
# (go/durability load -keep-going over all endpoints: 8 writers, every 5th op a
# 2-key txn, failed ops left in doubt); the two survivors elect a new leader (bounded
# wait of a few election timeouts, never asserted as a speed); no acknowledged write
# is lost (durability check through each survivor: value, create/mod revision, no
# phantoms, in-doubt txns all-or-nothing); the old leader restarted on its data dir
# rejoins as a follower and serves every acknowledged write; then all members are
# stopped with SIGTERM and restarted: everything is back.
. "$(dirname "$0")/../lib.sh"

[ -x "$IT_GOBIN/durability" ] || { fail build "durability binary missing"; exit 1; }
start_cluster 3 || { fail start "3-member cluster did not start"; exit 1; }
pass start

dcheck() {   # dcheck LABEL ENDPOINT ACKS...
    local label=$1 ep=$2
    shift 2
    "$IT_GOBIN/durability" check -endpoint "$ep" -label "$label" "$@" >"$_IT_TMP/check.out" 2>&1
    local crc=$?
    cat "$_IT_TMP/check.out"
    IT_CHECKS=$((IT_CHECKS + $(grep -c '^ok \|^not ok ' "$_IT_TMP/check.out")))
    IT_FAILS=$((IT_FAILS + $(grep -c '^not ok ' "$_IT_TMP/check.out")))
    if [ $crc -ne 0 ] && ! grep -q '^not ok ' "$_IT_TMP/check.out"; then
        fail "$label/check" "checker exited with status $crc"
    fi
}

acks=$_IT_TMP/fo.acks
: >"$acks"
"$IT_GOBIN/durability" load -endpoint "$(all_endpoints)" -out "$acks" -prefix fo/ -workers 8 \
    -txn-every 5 -keep-going -max-time 8s 2>"$_IT_TMP/fo.load.log" &
lpid=$!
track_pid "$lpid"
for i in $(seq 1 300); do
    [ "$(grep -c '^A ' "$acks")" -ge 300 ] && break
    kill -0 "$lpid" 2>/dev/null || break
    sleep 0.1
done
old=$(leader_index)
check_match leader-before "[123]" "$old"
n_kill=$(grep -c '^A ' "$acks")
alive=0; kill -0 "$lpid" 2>/dev/null && alive=1
kill_member "$old" KILL
t0=$SECONDS
check_eq killed-mid-load 1 "$alive"
rest=()
for k in 1 2 3; do [ "$k" != "$old" ] && rest+=("$k"); done
new=$(wait_leader 30 "${rest[@]}")
check_true new-leader "no leader among m${rest[0]},m${rest[1]} within 30 s" [ -n "$new" ]
check_true new-leader-differs "leader m$new" [ -n "$new" ] && [ "$new" != "$old" ]
echo "# killed leader m$old after $n_kill acks; survivors agree on leader m$new after ~$((SECONDS - t0)) s"
wait_pid_exit "$lpid" 60 || { fail loader-stopped "loader still running"; kill -KILL "$lpid"; }
wait "$lpid" 2>/dev/null
untrack_pid "$lpid"
echo "# $(cat "$_IT_TMP/fo.load.log")"
n_after=$(grep -c '^A ' "$acks")
check_true writes-continue-after-kill "no write acknowledged after the kill ($n_kill before, $n_after total)" \
    [ "$n_after" -gt "$n_kill" ]
for k in "${rest[@]}"; do dcheck "survivor-m$k" "${CL_EP[$k]}" "$acks"; done

# the old leader comes back as a follower with everything
restart_member "$old" || fail old-leader-restart "old leader did not restart"
check_true rejoined "cluster not healthy after the old leader's restart" wait_cluster_healthy
l=$(leader_index)
check_true old-leader-is-follower "m$old leads again right after rejoining (leader m$l)" [ -n "$l" ] && [ "$l" != "$old" ]
dcheck "rejoined-m$old" "${CL_EP[$old]}" "$acks"
cnt=$(cl_ectl "${rest[0]}" get fo/ --prefix --keys-only | grep -c .)
check_eq rejoined-serializable-count "$cnt" "$(cl_ectl "$old" get fo/ --prefix --keys-only --consistency=s | grep -c .)"

# stop everything cleanly, restart everything
stop_cluster
for k in 1 2 3; do restart_member "$k" --nowait; done
check_true restart-all "cluster not healthy after restarting every member" wait_cluster_healthy
for k in 1 2 3; do dcheck "restart-all-m$k" "${CL_EP[$k]}" "$acks"; done
stop_cluster
finish
