#!/usr/bin/env bash
# maint-cluster: the Maintenance service on a 3-member cluster. Status is true
# on every member (one leader named by all, same term, raft indexes, not a
# learner, dbSizeInUse <= dbSize); `endpoint hashkv --cluster` gives one hash
# for all members, unchanged after a follower restarts; with a small
# --quota-backend-bytes, filling the store raises NOSPACE (one alarm per
# member whose backend is over the quota, as etcd), and then a put through
# EVERY member fails with "etcdserver: mvcc: database space exceeded" while
# gets and deletes work; compact + `defrag --cluster` + `alarm disarm` let
# writes through again on every member.
. "$(dirname "$0")/../lib.sh"

NOSPACE="etcdserver: mvcc: database space exceeded"
start_cluster 3 --quota-backend-bytes=$((64 * 4096)) || { fail start "3-member cluster did not start"; exit 1; }
pass start
for i in $(seq 1 20); do cl_ectl_all put "mc/k$i" "v$i" >/dev/null; done
cl_ectl_all get mc/k20 >/dev/null   # every member has applied it once the quorum read returns
l=$(leader_index)
j=$(cluster_status_json)
check_eq one-leader "$(u64 "${CL_ID[$l]}")" \
    "$(printf '%s' "$j" | jget '" ".join(sorted({str(e["Status"]["leader"]) for e in d}))')"
check_eq same-term 1 "$(printf '%s' "$j" | jget 'len({e["Status"]["raftTerm"] for e in d})')"
check_eq no-learner "false false false" \
    "$(printf '%s' "$j" | jget '" ".join("true" if e["Status"].get("isLearner") else "false" for e in d)')"
check_eq sizes-sane "true" "$(printf '%s' "$j" | jget 'all(0 < e["Status"]["dbSizeInUse"] <= e["Status"]["dbSize"] for e in d)')"
check_eq indexes-sane "true" \
    "$(printf '%s' "$j" | jget 'all(e["Status"]["raftAppliedIndex"] <= e["Status"]["raftIndex"] and e["Status"]["raftAppliedIndex"] > 20 for e in d)')"
check_eq version "3.4.23" "$(printf '%s' "$j" | jget '" ".join(sorted({e["Status"]["version"] for e in d}))')"

# HashKV: the same on every member at the same revision
hashes() {
    cl_ectl_all -w json endpoint hashkv --cluster |
        jget '" ".join(sorted({"%d/%d" % (e["HashKV"]["header"]["revision"], e["HashKV"]["hash"]) for e in d})) + " n=%d" % len(d)'
}
h=$(hashes)
check_match hashkv-equal '^[0-9]+/[0-9]+ n=3$' "$h"
f=$(follower_index)
kill_member "$f" TERM
restart_member "$f" || { fail restart "m$f did not restart"; exit 1; }
cl_ectl_all get mc/k20 >/dev/null
check_eq hashkv-after-restart "$h" "$(hashes)"

# NOSPACE on every member
buf=$(head -c 4096 /dev/zero | tr '\0' b)
filled=0 err=
for i in $(seq 1 400); do
    if ! err=$(cl_ectl "$l" put mc/big "$buf" 2>&1 >/dev/null); then filled=1; break; fi
done
check_eq fill-until-nospace "1 Error: $NOSPACE" "$filled $(printf '%s\n' "$err" | tail -n 1)"
# every line "memberID:<id> alarm:NOSPACE " (which members raise one depends on
# whose backend crossed the quota first)
nospace_lines() {
    python3 -c 'import re, sys; ls = sys.argv[1].split("\n"); print("ok" if 1 <= len(ls) <= 3 and all(re.fullmatch(r"memberID:[0-9]+ alarm:NOSPACE ", x) for x in ls) else "bad: %r" % ls)' "$1" "$2"
}
check_eq alarm-list ok "$(nospace_lines "$(cl_ectl_all alarm list)" "$(u64 "${CL_ID[$l]}")")"
for k in 1 2 3; do
    check_etcdctl_error "put-refused-m$k" ResourceExhausted "$NOSPACE" cl_ectl "$k" put mc/x y
    check_out "get-works-m$k" v1 cl_ectl "$k" get mc/k1 --print-value-only
done
check_out delete-works 1 cl_ectl "$f" del mc/k1
sizes() { cluster_status_json | jget '" ".join(str(e["Status"]["dbSize"]) for e in d)'; }
before=$(sizes)
rev=$(cl_ectl_all -w json get mc/none | jget 'd["header"]["revision"]')
check_out compact "compacted revision $rev" cl_ectl_all compact "$rev" --physical
out=$(cl_ectl_all defrag --cluster 2>&1)
check_eq defrag-all 3 "$(printf '%s\n' "$out" | grep -c '^Finished defragmenting etcd member')"
after=$(sizes)
check_true dbsize-falls "before [$before] after [$after]" \
    python3 -c 'import sys; b, a = [list(map(int, x.split())) for x in sys.argv[1:]]; sys.exit(0 if all(y < x for x, y in zip(b, a)) else 1)' "$before" "$after"
alarms=$(cl_ectl_all alarm list)
check_eq alarms-before-disarm ok "$(nospace_lines "$alarms" "$(u64 "${CL_ID[$l]}")")"
check_eq disarm "$(sort <<<"$alarms")" "$(cl_ectl_all alarm disarm | sort)"  # etcd: map order
check_out no-alarm "" cl_ectl_all alarm list
for k in 1 2 3; do
    check_out "put-after-disarm-m$k" OK cl_ectl "$k" put "mc/after$k" v
done
stop_cluster
finish
