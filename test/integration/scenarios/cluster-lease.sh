#!/usr/bin/env bash
# cluster-lease: leases in a 3-member cluster across a leader kill.
#   - lease A (TTL 4 s) kept alive by `etcdctl lease keep-alive` talking to a
#     FOLLOWER only; its key survives the leader's kill -9 and many TTLs after it;
#   - keep-alive --once through a follower answers "lease <id> keepalived with TTL(4)",
#     and so does one keep-alive over the JSON gateway (request, then half-close);
#   - lease B (TTL 5 s) never renewed: its key is deleted.  etcd's new leader
#     re-arms every lease on promotion (remaining = TTL + election timeout), so B goes
#     within TTL + a few election timeouts after the new leader appears; the bound
#     checked is that + 10 s of slack, never a speed;
#   - timetolive through every member agrees (A alive, B gone: TTL -1).
. "$(dirname "$0")/../lib.sh"

start_cluster 3 || { fail start "3-member cluster did not start"; exit 1; }
pass start
lid() { printf '%s\n' "$1" | awk '/^lease [0-9a-f]+ granted/ {print $2}'; }
ldr=$(leader_index)
f=
for k in 1 2 3; do [ "$k" != "$ldr" ] && f=$k; done   # a follower that will survive

A=$(lid "$(cl_ectl "$f" lease grant 4)")
B=$(lid "$(cl_ectl "$f" lease grant 5)")
check_match grant-a '[0-9a-f]{16}' "$A"
check_match grant-b '[0-9a-f]{16}' "$B"
check_out put-a OK cl_ectl "$f" put lease/a a --lease="$A"
check_out put-b OK cl_ectl "$f" put lease/b b --lease="$B"
check_out keepalive-once-follower "lease $A keepalived with TTL(4)" cl_ectl "$f" lease keep-alive --once "$A"
# The JSON gateway's keepalive sends one request and half-closes at once: the
# follower forwards it to the leader and must answer before ending the stream.
ka_json=$(curl -s -m 10 -X POST "${CL_EP[$f]}/v3/lease/keepalive" -d "{\"ID\":$((16#$A))}")
check_match keepalive-gateway-follower '.*"TTL":"4".*' "$ka_json"

etcdctl --endpoints="${CL_EP[$f]}" lease keep-alive "$A" >"$_IT_TMP/ka.out" 2>&1 &
kpid=$!
track_pid "$kpid"
sleep 1
kill_member "$ldr" KILL
rest=()
for k in 1 2 3; do [ "$k" != "$ldr" ] && rest+=("$k"); done
new=$(wait_leader 30 "${rest[@]}")
check_true new-leader "no new leader" [ -n "$new" ]
t_new=$SECONDS

# B must go within TTL + a few election timeouts (+ slack) of the new leader
gone=0
for i in $(seq 1 $(((5 + 3 + 10) * 4))); do
    [ -z "$(cl_ectl "$f" get lease/b --print-value-only 2>/dev/null)" ] && { gone=1; break; }
    sleep 0.25
done
check_eq abandoned-lease-expired 1 "$gone"
echo "# abandoned lease B gone ~$((SECONDS - t_new)) s after the new leader appeared"
for k in "${rest[@]}"; do
    check_out "abandoned-timetolive-m$k" "lease $B already expired" cl_ectl "$k" lease timetolive "$B"
done

# A stays: wait several TTLs after the kill
sleep 10
check_true keepalive-process-running "etcdctl lease keep-alive exited: $(tail -n 3 "$_IT_TMP/ka.out")" kill -0 "$kpid"
for k in "${rest[@]}"; do
    check_out "kept-alive-key-m$k" a cl_ectl "$k" get lease/a --print-value-only
    check_match "kept-alive-timetolive-m$k" "lease $A granted with TTL\(4s\), remaining\([1-4]s\)" \
        "$(cl_ectl "$k" lease timetolive "$A")"
done
check_true keepalive-responses "no keepalived lines" grep -q "lease $A keepalived with TTL(4)" "$_IT_TMP/ka.out"

# the old leader comes back and agrees
restart_member "$ldr" || fail restart "old leader did not restart"
check_true healthy "cluster not healthy" wait_cluster_healthy
check_out old-leader-sees-a a cl_ectl "$ldr" get lease/a --print-value-only
check_out old-leader-b-gone "" cl_ectl "$ldr" get lease/b --print-value-only
kill "$kpid" 2>/dev/null; wait "$kpid" 2>/dev/null; untrack_pid "$kpid"
# once nobody renews A it expires too
gone=0
for i in $(seq 1 $(((4 + 3 + 10) * 4))); do
    [ -z "$(cl_ectl_all get lease/a --print-value-only 2>/dev/null)" ] && { gone=1; break; }
    sleep 0.25
done
check_eq a-expires-without-keepalive 1 "$gone"
stop_cluster
finish
