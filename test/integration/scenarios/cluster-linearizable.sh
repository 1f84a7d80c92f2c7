#!/usr/bin/env bash
# cluster-linearizable: go/lincheck.  First its self-test (known non-linearizable
# histories — stale read after an acknowledged write, reads going back in time, two
# CAS from one value, an unknown write seen then unseen, ... — must be rejected,
# linearizable ones accepted).  Then 5 clients over all endpoints of a 3-member
# cluster behind the fault proxy do put / get / CAS on 3 keys for ~IT_LIN_SECONDS
# (default 24) while this script kills the leader (and restarts it), isolates the
# leader, then a follower, healing each time.  The history must be linearizable
# (register model per key) and every acknowledged write must be in every member's
# history at its revision.
. "$(dirname "$0")/../lib.sh"

[ -x "$IT_GOBIN/lincheck" ] || { fail build "lincheck binary missing"; exit 1; }
"$IT_GOBIN/lincheck" selftest >"$_IT_TMP/self.out" 2>&1
cat "$_IT_TMP/self.out"
IT_CHECKS=$((IT_CHECKS + $(grep -c '^ok \|^not ok ' "$_IT_TMP/self.out")))
IT_FAILS=$((IT_FAILS + $(grep -c '^not ok ' "$_IT_TMP/self.out")))

start_cluster --proxy 3 || { fail start "3-member cluster behind the proxy did not start"; exit 1; }
pass start
DUR=${IT_LIN_SECONDS:-24}
"$IT_GOBIN/lincheck" run -endpoints "$(all_endpoints)" -clients 5 -keys 3 -duration "${DUR}s" \
    -history "$_IT_TMP/history" >"$_IT_TMP/lin.out" 2>"$_IT_TMP/lin.err" &
lpid=$!
track_pid "$lpid"
step=$((DUR / 6))
[ "$step" -ge 2 ] || step=2
sleep "$step"
l=$(leader_index); kill_member "$l" KILL; echo "# t+${step}s: killed leader m$l"
sleep "$step"
restart_member "$l" --nowait; echo "# restarted m$l"
sleep "$step"
l=$(leader_index); if [ -n "$l" ]; then partition_member "$l"; echo "# isolated leader m$l"; fi
sleep "$step"
heal_partitions; echo "# healed"
wait_leader 30 >/dev/null
f=$(follower_index); if [ -n "$f" ]; then partition_member "$f"; echo "# isolated follower m$f"; fi
sleep "$step"
heal_partitions; echo "# healed"
wait_cluster_healthy >/dev/null || echo "# cluster not healthy yet after the last heal"
wait_pid_exit "$lpid" 600 || { fail lincheck-ended "lincheck still running after 10 min"; kill -KILL "$lpid"; }
wait "$lpid"; rc=$?
untrack_pid "$lpid"
cat "$_IT_TMP/lin.out"
IT_CHECKS=$((IT_CHECKS + $(grep -c '^ok \|^not ok ' "$_IT_TMP/lin.out")))
IT_FAILS=$((IT_FAILS + $(grep -c '^not ok ' "$_IT_TMP/lin.out")))
if [ $rc -ne 0 ] && ! grep -q '^not ok ' "$_IT_TMP/lin.out"; then
    fail lincheck "exited with status $rc" "$(tail -n 5 "$_IT_TMP/lin.err")"
fi
if grep -q '^not ok ' "$_IT_TMP/lin.out"; then
    mkdir -p "$IT_LIB_DIR/bin" && cp "$_IT_TMP/history" "$IT_LIB_DIR/bin/cluster-linearizable.history" &&
        echo "# history kept in test/integration/bin/cluster-linearizable.history (lincheck check FILE)"
fi
stop_cluster
finish
