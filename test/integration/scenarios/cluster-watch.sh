#!/usr/bin/env bash
# cluster-watch: watches in a 3-member cluster.
#   - `etcdctl watch -w json --prev-kv` on the leader and on a follower from the same
#     revision: identical responses (same events, same grouping per revision, header
#     revision = the event revision), each header naming its own member;
#   - go/watchcheck compare: clientv3 watchers on the leader and on a follower under 4
#     concurrent writers (through both): every acknowledged write once, in order, and
#     the same event lists (prev_kv included) on both members;
#   - go/watchcheck failover: a WithRequireLeader watcher on a follower that survives,
#     writers through every member; kill -9 the leader (a new one is elected, writes
#     go on); then kill the other survivor too: the lone member has no leader, and
#     etcd ends the watch stream — the watch channel yields Err() "etcdserver: no
#     leader" and closes; the watcher re-watches from its last revision + 1 until a
#     leader is back (the killed member restarted); in the end it has seen every
#     acknowledged write exactly once, in revision order, and nothing never written;
#   - the old leader restarted rejoins, and a watch from the start of that history on
#     it replays the same events as on the follower.
. "$(dirname "$0")/../lib.sh"

[ -x "$IT_GOBIN/watchcheck" ] || { fail build "watchcheck binary missing ($IT_GOBIN/watchcheck)"; exit 1; }
start_cluster 3 || { fail start "3-member cluster did not start"; exit 1; }
pass start

# count the ok / not ok lines of a watchcheck output file
count_lines() {
    cat "$1"
    IT_CHECKS=$((IT_CHECKS + $(grep -c '^ok \|^not ok ' "$1")))
    IT_FAILS=$((IT_FAILS + $(grep -c '^not ok ' "$1")))
    if [ "$2" -ne 0 ] && ! grep -q '^not ok ' "$1"; then
        fail "$3/exit" "watchcheck $3 exited with status $2"
    fi
}

# jevents FILE: the events of a -w json watch output, one line per response:
# "<header revision> <events as JSON>" (member-specific header fields left out).
jevents() {
    python3 -c '
import json, sys
for l in open(sys.argv[1]):
    l = l.strip()
    if l:
        d = json.loads(l)
        print(d["Header"].get("revision"), json.dumps(d["Events"], sort_keys=True))' "$1"
}
jmembers() {
    python3 -c '
import json, sys
print(" ".join(sorted({"%x" % json.loads(l)["Header"]["member_id"] for l in open(sys.argv[1]) if l.strip()})))' "$1"
}
jcount() {
    python3 -c '
import json, sys
print(sum(len(json.loads(l).get("Events") or []) for l in open(sys.argv[1]) if l.strip()))' "$1"
}

ldr=$(leader_index)
f=$(follower_index)
o=
for k in 1 2 3; do [ "$k" != "$ldr" ] && [ "$k" != "$f" ] && o=$k; done
check_true roles "leader m$ldr, followers m$f m$o" test -n "$ldr" -a -n "$f" -a -n "$o"

# ------------------------------------------------------------------ etcdctl on both
R=$(cl_ectl "$f" -w json get __probe | jget 'd["header"]["revision"]')
wpids=()
for k in "$ldr" "$f"; do
    : >"$_IT_TMP/cw-m$k.out"
    etcdctl --endpoints="${CL_EP[$k]}" --dial-timeout=5s watch -w json --prev-kv --prefix cw/ --rev $((R + 1)) \
        >"$_IT_TMP/cw-m$k.out" 2>"$_IT_TMP/cw-m$k.err" &
    wpids+=($!)
    track_pid $!
done
# a first put seen by both proves both watches established (after it they are live),
# then writes through the follower (forwarded to the leader) and through the leader
cl_ectl "$f" put cw/sync 0 >/dev/null
for k in "$ldr" "$f"; do
    for i in $(seq 1 300); do
        [ "$(jcount "$_IT_TMP/cw-m$k.out")" -ge 1 ] && break
        sleep 0.1
    done
done
cl_ectl "$f" put cw/a 1 >/dev/null
cl_ectl "$ldr" put cw/b 2 >/dev/null
cl_ectl "$f" put cw/a 3 >/dev/null
printf '\nput cw/c 4\nput cw/d 5\ndel cw/b\n\n\n' | cl_ectl "$ldr" txn >/dev/null
cl_ectl "$f" del --prefix cw/ >/dev/null          # cw/a cw/c cw/d cw/sync
nexp=11
for k in "$ldr" "$f"; do
    for i in $(seq 1 300); do
        [ "$(jcount "$_IT_TMP/cw-m$k.out")" -ge $nexp ] && break
        sleep 0.1
    done
done
sleep 0.3
for p in "${wpids[@]}"; do kill -TERM "$p" 2>/dev/null; wait "$p" 2>/dev/null; untrack_pid "$p"; done
check_eq etcdctl-leader-events $nexp "$(jcount "$_IT_TMP/cw-m$ldr.out")"
check_eq etcdctl-same-responses-on-leader-and-follower "$(jevents "$_IT_TMP/cw-m$ldr.out")" "$(jevents "$_IT_TMP/cw-m$f.out")"
check_eq etcdctl-responses-per-revision "$((R + 1)) $((R + 2)) $((R + 3)) $((R + 4)) $((R + 5)) $((R + 6))" \
    "$(jevents "$_IT_TMP/cw-m$f.out" | awk '{print $1}' | tr '\n' ' ' | sed 's/ $//')"
check_eq etcdctl-leader-header-member "${CL_ID[$ldr]}" "$(jmembers "$_IT_TMP/cw-m$ldr.out")"
check_eq etcdctl-follower-header-member "${CL_ID[$f]}" "$(jmembers "$_IT_TMP/cw-m$f.out")"

# ------------------------------------------------------------------ clientv3 compare
timeout 300 "$IT_GOBIN/watchcheck" compare -endpoints "${CL_EP[$ldr]}" -endpoints2 "${CL_EP[$f]}" \
    >"$_IT_TMP/compare.out" 2>&1 &
p=$!
track_pid $p
wait $p
rc=$?
untrack_pid $p
count_lines "$_IT_TMP/compare.out" $rc compare

# ------------------------------------------------------------------ failover
R0=$(cl_ectl "$f" -w json get __probe | jget 'd["header"]["revision"]')
st=$_IT_TMP/fo.status
stop=$_IT_TMP/fo.stop
: >"$st"
timeout 600 "$IT_GOBIN/watchcheck" failover -endpoints "${CL_EP[$f]}" -all "$(all_endpoints)" \
    -status "$st" -stop "$stop" >"$_IT_TMP/failover.out" 2>&1 &
fpid=$!
track_pid $fpid

acks() { awk '/^acks / {n = $2} END {print n + 0}' "$st"; }
# wait_acks N: bounded wait (90 s) for at least N acknowledged writes.
wait_acks() {
    local end=$((SECONDS + 90))
    while [ $SECONDS -lt $end ]; do
        [ "$(acks)" -ge "$1" ] && return 0
        kill -0 $fpid 2>/dev/null || return 1
        sleep 0.1
    done
    return 1
}
check_true load-running "fewer than 200 acks: $(tail -n 3 "$st")" wait_acks 200
a=$(acks)
kill_member "$ldr" KILL
new=$(wait_leader 30 "$f" "$o")
check_true new-leader "no leader among m$f m$o within 30 s" [ -n "$new" ]
check_true writes-after-leader-kill "acks stuck at $(acks) (kill at $a)" wait_acks $((a + 200))

# quorum loss: the watcher's member alone has no leader; etcd cancels its
# require-leader streams after 3 election timeouts without a leader
a=$(acks)
kill_member "$o" KILL
got=0
for i in $(seq 1 600); do
    grep -q 'err=etcdserver: no leader$' "$st" && { got=1; break; }
    sleep 0.1
done
check_eq watch-closed-no-leader 1 "$got"
grep -m1 '^closed ' "$st" | sed 's/^/# first close: /'
restart_member "$o" || fail restart-other "m$o did not restart"
new=$(wait_leader 60 "$f" "$o")
check_true leader-after-restart "no leader among m$f m$o within 60 s" [ -n "$new" ]
a=$(acks)
check_true writes-after-quorum-back "acks stuck at $(acks)" wait_acks $((a + 200))
touch "$stop"
wait $fpid
rc=$?
untrack_pid $fpid
count_lines "$_IT_TMP/failover.out" $rc failover
sed 's/^/# status: /' "$st" | grep -v '^# status: acks' | head -n 8

# ------------------------------------------------------------------ the old leader rejoins
restart_member "$ldr" || fail restart-old-leader "m$ldr did not restart"
check_true healthy "cluster not healthy" wait_cluster_healthy
n=$(cl_ectl "$f" -w json get --prefix fo/ --keys-only | jget 'd.get("count", 0)')
wpids=()
for k in "$ldr" "$f"; do
    : >"$_IT_TMP/re-m$k.out"
    etcdctl --endpoints="${CL_EP[$k]}" --dial-timeout=5s watch -w json --prefix fo/ --rev $((R0 + 1)) \
        >"$_IT_TMP/re-m$k.out" 2>"$_IT_TMP/re-m$k.err" &
    wpids+=($!)
    track_pid $!
done
for k in "$ldr" "$f"; do
    for i in $(seq 1 600); do
        [ "$(jcount "$_IT_TMP/re-m$k.out")" -ge "$n" ] && break
        sleep 0.1
    done
done
sleep 0.3
for p in "${wpids[@]}"; do kill -TERM "$p" 2>/dev/null; wait "$p" 2>/dev/null; untrack_pid "$p"; done
# replayed history: every put of a distinct key once (a response per replay batch)
events() {
    python3 -c '
import base64, json, sys
for l in open(sys.argv[1]):
    if l.strip():
        for e in json.loads(l)["Events"]:
            print(e.get("type", 0), base64.b64decode(e["kv"]["key"]).decode(), e["kv"]["mod_revision"], e["kv"].get("version"))' "$1"
}
check_eq rejoined-history-count "$n" "$(jcount "$_IT_TMP/re-m$ldr.out")"
check_eq rejoined-history-same-events "$(events "$_IT_TMP/re-m$f.out")" "$(events "$_IT_TMP/re-m$ldr.out")"
stop_cluster
finish
