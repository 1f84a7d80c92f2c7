#!/usr/bin/env bash
# cluster-basic: a 3-member cluster started with etcd's own clustering flags
# (--initial-cluster m1=..,m2=..,m3=.. --initial-cluster-state new --initial-cluster-token):
# a put through each member is visible through every member (linearizable get, then
# serializable get); every header carries the answering member's member_id and the
# same cluster_id and revision; `endpoint status --cluster` shows exactly one leader
# that every member agrees on; `member list` (simple and -w json) shows the three
# members with their peer/client URLs and isLearner false; then a 5-member cluster
# replicates a write to every member and has one leader.
. "$(dirname "$0")/../lib.sh"

start_cluster 3 || { fail start "3-member cluster did not start"; exit 1; }
pass start-3

for k in 1 2 3; do
    check_out "put-via-m$k" OK cl_ectl "$k" put "basic/k$k" "v$k-from-m$k"
done
for k in 1 2 3; do
    check_out "get-linearizable-m$k" "basic/k1
v1-from-m1
basic/k2
v2-from-m2
basic/k3
v3-from-m3" cl_ectl "$k" get basic/ --prefix
    check_out "get-serializable-m$k" "v1-from-m1 v2-from-m2 v3-from-m3" \
        bash -c "etcdctl --endpoints=${CL_EP[$k]} --command-timeout=10s get basic/ --prefix --print-value-only --consistency=s | paste -sd' '"
done

# headers: member_id of the member that answered, one cluster_id, one revision (1 + 3 puts)
cids=()
for k in 1 2 3; do
    j=$(cl_ectl "$k" -w json get basic/k1)
    check_eq "header-member-id-m$k" "$(u64 "${CL_ID[$k]}") 4 True" \
        "$(printf '%s' "$j" | jget '"%d %d %s" % (d["header"]["member_id"], d["header"]["revision"], d["header"]["raft_term"] > 0)')"
    cids+=("$(printf '%s' "$j" | jget 'd["header"]["cluster_id"]')")
    j=$(cl_ectl "$k" -w json get basic/k1 --consistency=s)
    check_eq "header-serializable-m$k" "$(u64 "${CL_ID[$k]}") 4" \
        "$(printf '%s' "$j" | jget '"%d %d" % (d["header"]["member_id"], d["header"]["revision"])')"
done
check_eq header-same-cluster-id "${cids[0]} ${cids[0]} ${cids[0]}" "${cids[*]}"
check_true header-cluster-id-nonzero "cluster id 0" [ "${cids[0]}" != 0 ]
check_true member-ids-distinct "ids ${CL_ID[*]}" \
    [ "$(printf '%s\n' "${CL_ID[@]:1}" | sort -u | wc -l)" = 3 ]

# endpoint status --cluster: every member, one leader, all agree
j=$(cl_ectl 1 -w json endpoint status --cluster)
check_eq status-cluster "3 1 1 True ${cids[0]}" "$(printf '%s' "$j" | jget '"%d %d %d %s %s" % (
    len(d),
    len({e["Status"]["leader"] for e in d}),
    sum(1 for e in d if e["Status"]["leader"] == e["Status"]["header"]["member_id"]),
    len({e["Status"]["header"]["revision"] for e in d}) == 1 and len({e["Status"]["raftTerm"] for e in d}) == 1,
    " ".join(sorted({str(e["Status"]["header"]["cluster_id"]) for e in d})))')"
# with --cluster, etcdctl lists the members' client URLs (from member list) as Endpoint
check_eq status-cluster-endpoints "$(printf '%s\n' "${CL_CURL[1]}" "${CL_CURL[2]}" "${CL_CURL[3]}" | sort | paste -sd' ')" \
    "$(printf '%s' "$j" | jget '" ".join(sorted(e["Endpoint"] for e in d))')"
ldr=$(leader_index)
check_match leader-index '[123]' "$ldr"
out=$(cl_ectl 1 endpoint status --cluster)
check_eq status-cluster-simple-one-leader "1 3" \
    "$(printf '%s\n' "$out" | awk -F', ' '$5 == "true" {n++} END {print n+0}') $(printf '%s\n' "$out" | awk -F', ' '$6 == "false" {n++} END {print n+0}')"

# member list: simple and json, from every member
want=$(for k in 1 2 3; do echo "${CL_ID[$k]}, started, m$k, ${CL_PURL[$k]}, ${CL_CURL[$k]}, false"; done | sort)
for k in 1 2 3; do
    check_eq "member-list-m$k" "$want" "$(cl_ectl "$k" member list | sort)"
done
j=$(cl_ectl 2 -w json member list)
wantj=$(for k in 1 2 3; do echo "$(u64 "${CL_ID[$k]}") m$k ['${CL_PURL[$k]}'] ['${CL_CURL[$k]}'] False"; done | sort)
check_eq member-list-json "$wantj" "$(printf '%s' "$j" | jget '"\n".join(sorted("%d %s %s %s %s" % (m["ID"], m["name"], m["peerURLs"], m["clientURLs"], m.get("isLearner", False)) for m in d["members"]))')"
check_eq member-list-json-header "${cids[0]} $(u64 "${CL_ID[2]}")" \
    "$(printf '%s' "$j" | jget '"%d %d" % (d["header"]["cluster_id"], d["header"]["member_id"])')"

# the members agree on one leader as seen by every member's status
check_true one-leader "no single leader" eval "leader_index >/dev/null"
stop_cluster

# ---- 5 members
start_cluster 5 || { fail start-5 "5-member cluster did not start"; exit 1; }
pass start-5
check_out five-put OK cl_ectl 1 put five/k v5
check_out five-put-m5 OK cl_ectl 5 put five/k2 w5
for k in 1 2 3 4 5; do
    check_out "five-get-m$k" "v5 w5" bash -c "etcdctl --endpoints=${CL_EP[$k]} --command-timeout=10s get five/ --prefix --print-value-only | paste -sd' '"
    check_out "five-get-serializable-m$k" "v5 w5" bash -c "etcdctl --endpoints=${CL_EP[$k]} --command-timeout=10s get five/ --prefix --print-value-only --consistency=s | paste -sd' '"
done
j=$(cl_ectl 3 -w json endpoint status --cluster)
check_eq five-status-one-leader "5 1 1" "$(printf '%s' "$j" | jget '"%d %d %d" % (len(d), len({e["Status"]["leader"] for e in d}), sum(1 for e in d if e["Status"]["leader"] == e["Status"]["header"]["member_id"]))')"
check_eq five-member-list 5 "$(cl_ectl 4 member list | wc -l)"
stop_cluster
finish
