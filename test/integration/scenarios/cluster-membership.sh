#!/usr/bin/env bash
# cluster-membership: runtime reconfiguration as etcd 3.4 does it.
#   - member add --learner; the learner started with --initial-cluster-state existing
#     (and the ETCD_INITIAL_CLUSTER etcdctl printed) catches up: a serializable get
#     on it sees the data; member list marks it isLearner;
#   - the learner refuses writes, linearizable reads and stream RPCs (lease
#     keep-alive, watch): Unavailable "etcdserver: rpc not supported for learner";
#   - member promote (retried while etcd answers "etcdserver: can only promote a
#     learner member which is in sync with leader"); then it takes writes;
#   - member add as a voter; member update of a member's peer URLs (the member is
#     restarted listening on the new URL and rejoins);
#   - member remove of a follower and of the leader: a new leader is elected among the
#     rest, the removed members' processes stop on their own (etcd exits 0);
#   - a removed member started again stops with status 0: one that applied its
#     removal at once, one removed while it was down (it never applies its removal)
#     once its peers refuse it ("the member has been permanently removed from the
#     cluster");
#   - error texts: unknown member, an existing peer URL, promoting a voter;
#   - snapshot catch-up: members started with --snapshot-count 100; after
#     IT_SNAP_WRITES (default 5500) writes a new member joins and must catch up —
#     etcd keeps 5 000 entries after a snapshot, so fewer writes would be replayed
#     from the log instead.
# etcd refuses reconfiguration for ~5 s after a member connects ("etcdserver:
# unhealthy cluster", Unavailable); add_member retries that.
. "$(dirname "$0")/../lib.sh"

start_cluster 3 || { fail start "3-member cluster did not start"; exit 1; }
pass start
for i in $(seq 1 20); do cl_ectl_all put "mem/k$i" "v$i" >/dev/null || fail "seed-$i" "put failed"; done
CID=$(cl_ectl 1 -w json member list | jget '"%x" % d["header"]["cluster_id"]')

# check_removed_exits TAG K: removed member K stops on its own within 60 s with
# status 0 (etcd's exit); its log tail is shown, and it is killed, if it does not.
check_removed_exits() {
    local tag=$1 k=$2 pid=${CL_PID[$2]} rc
    check_true "$tag-stops" "m$k still running after 60 s" wait_pid_exit "$pid" 60
    if kill -0 "$pid" 2>/dev/null; then
        tail -n 8 "${CL_LOG[$k]}" | sed "s/^/# m$k log: /"
        kill -KILL "$pid" 2>/dev/null   # never wait forever
    fi
    wait "$pid" 2>/dev/null; rc=$?
    check_eq "$tag-exit-status" 0 "$rc"
    _it_forget_pid "$pid"; CL_PID[$k]=
}

# ---- learner
if add_member --learner; then
    L4=$ADD_INDEX
    pass add-learner
    check_match add-learner-output "Member $(id16 "${CL_ID[$L4]}") added to cluster $(id16 "$CID")

ETCD_NAME=\"m$L4\"
ETCD_INITIAL_CLUSTER=\"[^\"]*m$L4=${CL_PURL[$L4]}[^\"]*\"
ETCD_INITIAL_ADVERTISE_PEER_URLS=\"${CL_PURL[$L4]}\"
ETCD_INITIAL_CLUSTER_STATE=\"existing\"" "$ADD_OUT"
else
    fail add-learner "member add --learner failed" "$ADD_OUT"
    exit 1
fi
check_true learner-up "learner did not answer a serializable get" wait_member_up "$L4"
n=0
for i in $(seq 1 120); do
    n=$(cl_ectl "$L4" get mem/ --prefix --consistency=s --keys-only 2>/dev/null | grep -c .)
    [ "$n" -ge 20 ] && break
    sleep 0.5
done
check_eq learner-caught-up 20 "$n"
check_eq learner-serializable-value v7 "$(cl_ectl "$L4" get mem/k7 --consistency=s --print-value-only)"
check_eq member-list-learner "${CL_ID[$L4]}, unstarted-or-started, m$L4, ${CL_PURL[$L4]}, true" \
    "$(cl_ectl 1 member list | awk -F', ' -v id="${CL_ID[$L4]}" '$1 == id {print $1 ", unstarted-or-started, " $3 ", " $4 ", " $6}')"
check_eq member-list-json-learner "true" \
    "$(cl_ectl 2 -w json member list | jget '[m.get("isLearner", False) for m in d["members"] if "%x" % m["ID"] == "'"${CL_ID[$L4]}"'"][0]')"
check_etcdctl_error learner-refuses-put Unavailable "etcdserver: rpc not supported for learner" \
    cl_ectl "$L4" put mem/x y
check_etcdctl_error learner-refuses-linearizable-get Unavailable "etcdserver: rpc not supported for learner" \
    cl_ectl "$L4" --command-timeout=10s get mem/k1
# stream RPCs too (etcd's stream interceptor): keep-alive --once fails at once;
# clientv3's watch retries the refusal quietly, so a watch on the learner shows
# nothing, even for a write made meanwhile (bounded by `timeout`, not timed)
LID=$(cl_ectl 1 lease grant 60 | awk '/granted/ {print $2}')
check_match learner-test-lease '[0-9a-f]{16}' "$LID"
KA_OUT=$(timeout 30 etcdctl --endpoints="${CL_EP[$L4]}" --command-timeout=5s lease keep-alive --once "$LID" 2>&1)
check_eq learner-refuses-keepalive "rc=2 Error: etcdserver: rpc not supported for learner" "rc=$? $KA_OUT"
timeout 6 etcdctl --endpoints="${CL_EP[$L4]}" watch mem/w >"$_IT_TMP/lw.out" 2>&1 &
lwp=$!
track_pid "$lwp"
sleep 1
cl_ectl 1 put mem/w seen >/dev/null
wait "$lwp"
untrack_pid "$lwp"
check_eq learner-refuses-watch "" "$(cat "$_IT_TMP/lw.out")"
check_etcdctl_error promote-voter-refused FailedPrecondition "etcdserver: can only promote a learner member" \
    reconf cl_ectl_all member promote "${CL_ID[1]}"

# ---- promote (retry while not in sync)
promoted=0
notsync=0
for i in $(seq 1 60); do
    out=$(reconf cl_ectl_all member promote "${CL_ID[$L4]}" 2>&1)
    if [ $? -eq 0 ]; then promoted=1; break; fi
    case $out in
        *"etcdserver: can only promote a learner member which is in sync with leader"*) notsync=$((notsync + 1)) ;;
        *) echo "# promote: $(_short "$out")" ;;
    esac
    sleep 1
done
echo "# promote: refused $notsync time(s) as not in sync before succeeding"
check_eq promote-output "1 Member $(id16 "${CL_ID[$L4]}") promoted in cluster $(id16 "$CID")" "$promoted $out"
CL_LEARNER[$L4]=0
check_out promoted-takes-put OK cl_ectl "$L4" put mem/after-promote yes
check_out promoted-linearizable-get yes cl_ectl "$L4" get mem/after-promote --print-value-only
check_eq member-list-promoted "false" \
    "$(cl_ectl 1 member list | awk -F', ' -v id="${CL_ID[$L4]}" '$1 == id {print $6}')"

# ---- error texts
check_etcdctl_error remove-unknown NotFound "etcdserver: member not found" reconf cl_ectl_all member remove 1234
check_etcdctl_error add-existing-peer-url FailedPrecondition "etcdserver: Peer URLs already exists" \
    reconf cl_ectl_all member add dup --peer-urls="${CL_PURL[2]}"
check_etcdctl_error promote-voter-refused-2 FailedPrecondition "etcdserver: can only promote a learner member" \
    reconf cl_ectl_all member promote "${CL_ID[$L4]}"

# ---- add a voter
if add_member; then
    V5=$ADD_INDEX
    pass add-voter
else
    fail add-voter "member add failed" "$ADD_OUT"
    exit 1
fi
check_true voter-joined "cluster not healthy with 5 members" wait_cluster_healthy
check_eq voter-sees-data v20 "$(cl_ectl "$V5" get mem/k20 --print-value-only)"
check_eq five-members 5 "$(cl_ectl 1 member list | grep -c ', started, ')"

# ---- member update: move m$V5's peer URL to a new port, restart it listening there
read -r newp < <(free_ports 1)
out=$(reconf cl_ectl_all member update "${CL_ID[$V5]}" --peer-urls="http://127.0.0.1:$newp" 2>&1)
check_eq member-update "Member $(id16 "${CL_ID[$V5]}") updated in cluster $(id16 "$CID")" "$out"
check_eq member-update-listed "http://127.0.0.1:$newp" \
    "$(cl_ectl 1 member list | awk -F', ' -v id="${CL_ID[$V5]}" '$1 == id {print $4}')"
kill_member "$V5" TERM
CL_PPORT[$V5]=$newp
CL_APORT[$V5]=$newp
CL_PURL[$V5]=http://127.0.0.1:$newp
restart_member "$V5" || fail update-restart "member did not restart on its new peer URL"
check_true update-rejoined "cluster not healthy after the update" wait_cluster_healthy
check_out updated-member-put OK cl_ectl "$V5" put mem/after-update yes
check_eq updated-member-get yes "$(cl_ectl 1 get mem/after-update --print-value-only)"

# ---- remove a follower
ldr=$(leader_index)
f=
for k in $(voting_members); do [ "$k" != "$ldr" ] && f=$k; done
out=$(reconf cl_ectl "$ldr" member remove "${CL_ID[$f]}" 2>&1)
check_eq remove-follower "Member $(id16 "${CL_ID[$f]}") removed from cluster $(id16 "$CID")" "$out"
CL_GONE[$f]=1
check_removed_exits removed-follower "$f"
check_eq member-list-after-remove 4 "$(cl_ectl "$ldr" member list | wc -l)"

# ---- the removed member started again on its data dir: its peers refuse its raft
# messages ("the member has been permanently removed from the cluster") and it stops
# with status 0, as etcd does, without disturbing the cluster
restart_member "$f" --nowait
check_removed_exits removed-member-restart "$f"
check_eq removed-member-restart-leader-kept "$ldr" "$(leader_index)"
check_out put-after-removed-restart OK cl_ectl "$ldr" put mem/after-removed-restart yes

# ---- remove the leader (through another member)
other=
for k in $(voting_members); do [ "$k" != "$ldr" ] && other=$k; done
out=$(reconf cl_ectl "$other" member remove "${CL_ID[$ldr]}" 2>&1)
check_eq remove-leader "Member $(id16 "${CL_ID[$ldr]}") removed from cluster $(id16 "$CID")" "$out"
CL_GONE[$ldr]=1
check_removed_exits removed-leader "$ldr"
nl=$(wait_leader 60)
check_true new-leader-after-leader-removal "no leader among the remaining members" [ -n "$nl" ]
check_true new-leader-is-another-member "leader m$nl" [ -n "$nl" ] && [ "$nl" != "$ldr" ]
check_out put-after-leader-removal OK cl_ectl_all put mem/after-leader-removal yes
check_eq three-left 3 "$(cl_ectl_all member list | wc -l)"
for k in $(voting_members); do
    check_eq "data-on-m$k" "v1 yes yes" "$( (cl_ectl "$k" get mem/k1 --print-value-only; cl_ectl "$k" get mem/after-update --print-value-only; cl_ectl "$k" get mem/after-leader-removal --print-value-only) | paste -sd' ')"
done 2>/dev/null

# ---- a member removed while it was down never applies its removal: started
# again, it is refused by its peers and stops with status 0
ldr=$(leader_index)
g=
for k in $(voting_members); do [ "$k" != "$ldr" ] && g=$k; done
kill_member "$g" KILL
out=$(reconf cl_ectl "$ldr" member remove "${CL_ID[$g]}" 2>&1)
check_eq remove-down-member "Member $(id16 "${CL_ID[$g]}") removed from cluster $(id16 "$CID")" "$out"
CL_GONE[$g]=1
restart_member "$g" --nowait
check_removed_exits down-removed-member "$g"
check_true down-removed-member-logs "no removal line in its log" \
    grep -q 'the member has been permanently removed from the cluster' "${CL_LOG[$g]}"
check_out put-after-down-removal OK cl_ectl "$ldr" put mem/after-down-removal yes
check_eq two-left 2 "$(cl_ectl "$ldr" member list | wc -l)"
stop_cluster

# ---- snapshot catch-up
WR=${IT_SNAP_WRITES:-5500}
start_cluster 3 --snapshot-count 100 || { fail snap-start "cluster with --snapshot-count 100 did not start"; exit 1; }
pass snap-start
acks=$_IT_TMP/snap.acks
workers=16
"$IT_GOBIN/durability" load -endpoint "$(all_endpoints)" -out "$acks" -prefix snap/ -workers $workers \
    -txn-every 0 -max-ops $(((WR + workers - 1) / workers)) 2>"$_IT_TMP/snap.load.log"
echo "# $(cat "$_IT_TMP/snap.load.log")"
check_true snap-writes "fewer acknowledged writes than $WR" [ "$(grep -c '^A ' "$acks")" -ge "$WR" ]
if add_member; then
    S=$ADD_INDEX
    pass snap-add
else
    fail snap-add "member add failed" "$ADD_OUT"
    exit 1
fi
check_true snap-joined "cluster not healthy after the add" wait_cluster_healthy 120
"$IT_GOBIN/durability" check -endpoint "${CL_EP[$S]}" -label "snap-new-member" "$acks" >"$_IT_TMP/check.out" 2>&1
cat "$_IT_TMP/check.out"
IT_CHECKS=$((IT_CHECKS + $(grep -c '^ok \|^not ok ' "$_IT_TMP/check.out")))
IT_FAILS=$((IT_FAILS + $(grep -c '^not ok ' "$_IT_TMP/check.out")))
n=$(cl_ectl "$S" get snap/ --prefix --consistency=s --keys-only | grep -c .)
check_eq snap-serializable-count "$(grep -c '^A ' "$acks")" "$n"
if [ "$IT_TARGET" = etcd ]; then
    # etcd logs the snapshot transfer on the new member
    check_true snap-by-snapshot "no snapshot received by the new member (see its log)" \
        grep -q 'applied incoming snapshot\|received and saved database snapshot' "${CL_LOG[$S]}"
else
    grep -i 'snapshot' "${CL_LOG[$S]}" | head -n 5 | sed 's/^/# new member log: /'
fi
stop_cluster
finish
