#!/usr/bin/env bash
# cluster-move-leader: `etcdctl move-leader <follower id>` against the leader's
# endpoint transfers leadership ("Leadership transferred from <old> to <new>", ids
# %x); every member then names the target as leader; moving it back works too;
# a target that is not a member is refused (FailedPrecondition "etcdserver: bad
# leader transferee"); etcdctl given only a follower's endpoint refuses locally
# ("Error: no leader endpoint given at [<ep>]", exit 128 — etcdctl's own check).
. "$(dirname "$0")/../lib.sh"

start_cluster 3 || { fail start "3-member cluster did not start"; exit 1; }
pass start
l=$(leader_index)
f=$(follower_index)
check_out move-to-follower "Leadership transferred from ${CL_ID[$l]} to ${CL_ID[$f]}" \
    cl_ectl "$l" move-leader "${CL_ID[$f]}"
nl=$(wait_leader 30)
check_eq leader-moved "m$f" "m$nl"
j=$(cluster_status_json)
check_eq all-agree "$(u64 "${CL_ID[$f]}")" "$(printf '%s' "$j" | jget '" ".join(sorted({str(e["Status"]["leader"]) for e in d}))')"
check_out put-after-move OK cl_ectl_all put ml/k v
# all endpoints given: etcdctl finds the leader itself
check_out move-back "Leadership transferred from ${CL_ID[$f]} to ${CL_ID[$l]}" \
    cl_ectl_all move-leader "${CL_ID[$l]}"
nl=$(wait_leader 30)
check_eq leader-moved-back "m$l" "m$nl"
check_etcdctl_error non-member-target FailedPrecondition "etcdserver: bad leader transferee" \
    cl_ectl "$l" move-leader 1234
f=$(follower_index)
out=$(cl_ectl "$f" move-leader "${CL_ID[$l]}" 2>&1)
rc=$?
check_eq follower-endpoint-only "128 Error: no leader endpoint given at [${CL_EP[$f]}]" "$rc $out"
check_eq leader-unchanged "m$l" "m$(leader_index)"
stop_cluster
finish
