#!/usr/bin/env bash
# cluster-partition: first faultproxy.py's own self-test (pass, delay, blackhole each
# direction, drop of open and new connections, per-source rules, heal).  Then a
# 3-member cluster whose peer traffic all goes through the proxy (advertised peer
# URLs are proxy routes): isolate the leader (no peer traffic to or from it): the
# other two elect a new leader and take writes; the isolated member's linearizable
# get fails (etcd: "context deadline exceeded" when the client's timeout ends; any
# failure is accepted) while its serializable get answers from its own (stale) data;
# heal: one leader, the member catches up.  Same for an isolated follower (the
# majority keeps a leader throughout).  Finally 150 ms of delay each way on every
# peer route: writes still commit.
. "$(dirname "$0")/../lib.sh"

python3 "$IT_LIB_DIR/faultproxy.py" selftest >"$_IT_TMP/selftest.out" 2>"$_IT_TMP/selftest.err"
cat "$_IT_TMP/selftest.out"
IT_CHECKS=$((IT_CHECKS + $(grep -c '^ok \|^not ok ' "$_IT_TMP/selftest.out")))
IT_FAILS=$((IT_FAILS + $(grep -c '^not ok ' "$_IT_TMP/selftest.out")))

start_cluster --proxy 3 || { fail start "3-member cluster behind the proxy did not start"; exit 1; }
pass start
check_out seed OK cl_ectl_all put part/seed s

isolate_case() {   # isolate_case LABEL K
    local label=$1 k=$2 rest=() j new out rc
    for j in $(voting_members); do [ "$j" != "$k" ] && rest+=("$j"); done
    partition_member "$k" || { fail "$label-partition" "proxy refused the rules"; return; }
    new=$(wait_leader 60 "${rest[@]}")
    check_true "$label-majority-has-leader" "no leader among m${rest[0]},m${rest[1]}" [ -n "$new" ]
    echo "# $label: isolated m$k; majority leader m$new"
    local eps="${CL_EP[${rest[0]}]},${CL_EP[${rest[1]}]}"
    check_out "$label-majority-put" OK etcdctl --endpoints="$eps" --command-timeout=30s put "part/$label" during
    check_out "$label-majority-get" during etcdctl --endpoints="$eps" --command-timeout=30s get "part/$label" --print-value-only
    out=$(cl_ectl "$k" --command-timeout=5s get part/seed 2>&1)
    rc=$?
    check_true "$label-isolated-linearizable-get-fails" "succeeded: $out" [ $rc -ne 0 ]
    echo "# $label: isolated member's linearizable get: $(printf '%s\n' "$out" | tail -n 1)"
    check_out "$label-isolated-serializable-get" s cl_ectl "$k" get part/seed --consistency=s --print-value-only
    check_out "$label-isolated-misses-new-write" "" cl_ectl "$k" get "part/$label" --consistency=s --print-value-only
    out=$(cl_ectl "$k" --command-timeout=5s put "part/$label-isolated" x 2>&1)
    rc=$?
    check_true "$label-isolated-put-fails" "succeeded: $out" [ $rc -ne 0 ]
    echo "# $label: isolated member's put: $(printf '%s\n' "$out" | tail -n 1)"
    heal_partitions
    check_true "$label-healed" "cluster not healthy after healing" wait_cluster_healthy
    local v=
    for j in $(seq 1 120); do
        v=$(cl_ectl "$k" get "part/$label" --consistency=s --print-value-only 2>/dev/null)
        [ "$v" = during ] && break
        sleep 0.5
    done
    check_eq "$label-caught-up" during "$v"
    check_out "$label-linearizable-again" during cl_ectl "$k" get "part/$label" --print-value-only
    check_out "$label-failed-put-absent" "" cl_ectl_all get "part/$label-isolated" --print-value-only
}

isolate_case leader "$(leader_index)"
isolate_case follower "$(follower_index)"

# delay on every peer route: slower, still correct
for k in 1 2 3; do proxy_ctl set "m$k" delay 150 150 >/dev/null; done
check_out delayed-put OK cl_ectl_all put part/delayed yes
check_out delayed-get yes cl_ectl_all get part/delayed --print-value-only
heal_partitions
check_true delayed-healthy "cluster not healthy after removing the delay" wait_cluster_healthy
proxy_ctl stats | sed 's/^/# proxy: /'
stop_cluster
finish
