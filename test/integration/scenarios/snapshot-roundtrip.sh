#!/usr/bin/env bash
# snapshot-roundtrip: snapshots move between the target and Debian's etcd 3.4
# with every key, revision (create/mod/version), lease and the compacted
# revision intact:
#   (a) target -> `etcdctl snapshot save` -> `snapshot status` -> `etcdctl
#       snapshot restore` -> etcd serves it;
#   (b) etcd -> snapshot save -> the target's restore tool (`metastore snapshot
#       restore`; etcdctl's for --target etcd) -> the target serves it;
#   (c) `etcdctl snapshot restore` -> the target started on that etcd-layout
#       data dir serves it (metastore imports it on first start, not again on a
#       restart), and a member added afterwards gets the data (etcd's
#       TestIssue6361).
. "$(dirname "$0")/../lib.sh"

ETCD_BIN=${IT_ETCD:-$(command -v etcd)}

# The target's own restore command (same flags as etcdctl's).
restore_tool() {
    if [ "$IT_TARGET" = metastore ]; then "$IT_SERVER" snapshot restore "$@"
    else etcdctl snapshot restore "$@"; fi
}

# pick_ports: fresh client/peer ports for the next server (before its restore).
pick_ports() {
    read -r SRV_CPORT SRV_PPORT < <(free_ports 2)
    SRV_ENDPOINT=127.0.0.1:$SRV_CPORT
    SRV_CLIENT_URL=http://127.0.0.1:$SRV_CPORT
    SRV_PEER_URL=http://127.0.0.1:$SRV_PPORT
    SRV_ADV_PEER_URL=$SRV_PEER_URL
}

# serve BIN NAME DATA TOKEN: start BIN as member NAME on the prepared DATA
# (ports from pick_ports) and wait until it is healthy.
serve() {
    local keep=$IT_SERVER
    IT_SERVER=$1 SRV_NAME=$2 SRV_DATA=$3 SRV_TOKEN=$4 SRV_EXTRA=()
    _launch_server
    IT_SERVER=$keep
    if wait_healthy; then return 0; fi
    echo "# serve: $1 did not become healthy on $3; log tail:"
    tail -n 20 "$SRV_LOG" 2>/dev/null | sed 's/^/#     /'
    return 1
}

write_data() {
    ectl put a 1 >/dev/null                    # 2
    ectl put b 2 >/dev/null                    # 3
    ectl put a 3 >/dev/null                    # 4
    ectl del b >/dev/null                      # 5
    LEASE=$(ectl lease grant 600 | awk '/granted/ {print $2}')
    ectl put --lease="$LEASE" leased yes >/dev/null   # 6
    printf '\nput t1 x\nput t2 y\n\n\n' | ectl txn >/dev/null   # 7: two changes
    ectl compact 4 >/dev/null
    ectl put c 4 >/dev/null                    # 8
}

EXPECT_KVS="8|a 2 4 2 0|c 8 8 1 0|leased 6 6 1 L|t1 7 7 1 0|t2 7 7 1 0"

# check_state PREFIX: the served data is what write_data made.
check_state() {
    local p=$1 j
    j=$(ectl -w json get --prefix "")
    check_eq "$p-kvs" "$EXPECT_KVS" "$(printf '%s' "$j" | jget '"|".join([str(d["header"]["revision"])] + ["%s %d %d %d %s" % (b(k["key"]), k["create_revision"], k["mod_revision"], k["version"], "L" if k.get("lease") else "0") for k in d["kvs"]])')"
    j=$(ectl -w json get leased)
    check_eq "$p-lease-id" "$(u64 "$LEASE")" "$(printf '%s' "$j" | jget 'd["kvs"][0]["lease"]')"
    check_out "$p-at-compact-rev" "$(printf 'a\n3')" ectl get a --rev=4
    check_etcdctl_error "$p-below-compact-rev" OutOfRange \
        "etcdserver: mvcc: required revision has been compacted" ectl get a --rev=3
    check_out "$p-lease-list" "found 1 leases
$LEASE" ectl lease list
    check_match "$p-lease-ttl" "lease $LEASE granted with TTL\(600s\), remaining\([0-9]+s\), attached keys\(\[leased\]\)" \
        "$(ectl lease timetolive "$LEASE" --keys)"
    check_out "$p-next-write" "OK" ectl put __probe__ x
    check_eq "$p-next-revision" 9 "$(cur_rev)"
    ectl del __probe__ >/dev/null
}

# --- the source: the target itself
start_server --name src || { fail start "server did not start"; exit 1; }
write_data
SNAP=$_IT_TMP/target.snapshot
check_out save-from-target "Snapshot saved at $SNAP" ectl snapshot save "$SNAP"
j=$(etcdctl -w json snapshot status "$SNAP" 2>/dev/null)
check_eq status-revision 8 "$(printf '%s' "$j" | jget 'd["revision"]')"
check_true status-total-keys "fewer keys than the records" \
    test "$(printf '%s' "$j" | jget 'd["totalKey"]')" -ge 7
if [ "$IT_TARGET" = metastore ]; then
    check_eq metastore-status-as-etcdctl "$(etcdctl snapshot status "$SNAP" 2>/dev/null)" \
        "$("$IT_SERVER" snapshot status "$SNAP")"
fi
stop_server

# --- (a) target -> etcd
pick_ports
DATA_A=$_IT_TMP/to-etcd
out=$(etcdctl snapshot restore "$SNAP" --name ea --data-dir "$DATA_A" \
    --initial-cluster "ea=$SRV_PEER_URL" --initial-advertise-peer-urls "$SRV_PEER_URL" 2>&1)
check_match etcdctl-restore-added-member '.*"msg":"added member".*' "$out"
if serve "$ETCD_BIN" ea "$DATA_A" ""; then
    check_state to-etcd
    SNAP2=$_IT_TMP/etcd.snapshot
    ectl put d 5 >/dev/null      # 11 on etcd (check_state wrote 9 and 10)
    check_out save-from-etcd "Snapshot saved at $SNAP2" ectl snapshot save "$SNAP2"
    ectl del d >/dev/null                              # (not in the snapshot)
    stop_server
else
    fail to-etcd-serve "etcd did not serve the restored snapshot"
    finish; exit
fi

# --- (b) etcd -> target's restore tool -> target
pick_ports
DATA_B=$_IT_TMP/from-etcd
restore_tool "$SNAP2" --name mb --data-dir "$DATA_B" \
    --initial-cluster "mb=$SRV_PEER_URL" --initial-advertise-peer-urls "$SRV_PEER_URL" \
    >"$_IT_TMP/restore.out" 2>&1
check_eq restore-tool-exit 0 $?
check_true restore-tool-added-member "no \"added member\" line" grep -q '"msg":"added member"' "$_IT_TMP/restore.out"
# revision 11 has d; a write after the restore is revision 12
EXPECT_KVS="11|a 2 4 2 0|c 8 8 1 0|d 11 11 1 0|leased 6 6 1 L|t1 7 7 1 0|t2 7 7 1 0"
if serve "$IT_SERVER" mb "$DATA_B" ""; then
    j=$(ectl -w json get --prefix "")
    check_eq from-etcd-kvs "$EXPECT_KVS" "$(printf '%s' "$j" | jget '"|".join([str(d["header"]["revision"])] + ["%s %d %d %d %s" % (b(k["key"]), k["create_revision"], k["mod_revision"], k["version"], "L" if k.get("lease") else "0") for k in d["kvs"]])')"
    check_out from-etcd-at-compact-rev "$(printf 'a\n3')" ectl get a --rev=4
    check_etcdctl_error from-etcd-below-compact-rev OutOfRange \
        "etcdserver: mvcc: required revision has been compacted" ectl get a --rev=3
    check_match from-etcd-lease-ttl "lease $LEASE granted with TTL\(600s\), remaining\([0-9]+s\), attached keys\(\[leased\]\)" \
        "$(ectl lease timetolive "$LEASE" --keys)"
    check_out from-etcd-next-write "OK" ectl put e 6
    check_eq from-etcd-next-revision 12 "$(cur_rev)"
    stop_server
    restart_server || fail from-etcd-restart "did not restart"
    check_out from-etcd-after-restart "$(printf 'e\n6')" ectl get e
    stop_server
else
    fail from-etcd-serve "the target did not serve its restore of etcd's snapshot"
fi

# --- (c) etcdctl snapshot restore -> target started on etcd's layout
pick_ports
DATA_C=$_IT_TMP/etcd-layout
etcdctl snapshot restore "$SNAP2" --name infra1 --data-dir "$DATA_C" \
    --initial-cluster "infra1=$SRV_PEER_URL" --initial-cluster-token new \
    --initial-advertise-peer-urls "$SRV_PEER_URL" >/dev/null 2>&1
check_true etcd-layout-made "no member/snap/db" test -f "$DATA_C/member/snap/db"
if serve "$IT_SERVER" infra1 "$DATA_C" new; then
    j=$(ectl -w json get --prefix "")
    check_eq etcd-layout-kvs "$EXPECT_KVS" "$(printf '%s' "$j" | jget '"|".join([str(d["header"]["revision"])] + ["%s %d %d %d %s" % (b(k["key"]), k["create_revision"], k["mod_revision"], k["version"], "L" if k.get("lease") else "0") for k in d["kvs"]])')"
    check_etcdctl_error etcd-layout-below-compact-rev OutOfRange \
        "etcdserver: mvcc: required revision has been compacted" ectl get a --rev=3
    check_match etcd-layout-lease "lease $LEASE granted with TTL\(600s\), remaining\([0-9]+s\), attached keys\(\[leased\]\)" \
        "$(ectl lease timetolive "$LEASE" --keys)"
    check_out etcd-layout-write "OK" ectl put f 7
    stop_server
    restart_server || fail etcd-layout-restart "did not restart"
    check_out etcd-layout-restart-keeps-writes "$(printf 'f\n7')" ectl get f
    check_eq etcd-layout-restart-revision 12 "$(cur_rev)"
    if [ "$IT_TARGET" = metastore ]; then
        check_eq etcd-layout-imported-once 1 "$(grep -c 'imported the etcd data dir' "$SRV_LOG")"
    fi
    # etcd's TestIssue6361: a member added now starts from a snapshot of this one
    read -r NCPORT NPPORT < <(free_ports 2)
    NPEER=http://127.0.0.1:$NPPORT
    NCLIENT=http://127.0.0.1:$NCPORT
    out=$(ectl member add newmember --peer-urls="$NPEER" 2>&1)
    check_match member-add '.* added to cluster .*' "$out"
    NDATA=$_IT_TMP/newmember
    "$IT_SERVER" --name newmember --data-dir "$NDATA" --listen-client-urls "$NCLIENT" \
        --advertise-client-urls "$NCLIENT" --listen-peer-urls "$NPEER" \
        --initial-advertise-peer-urls "$NPEER" \
        --initial-cluster "infra1=$SRV_PEER_URL,newmember=$NPEER" \
        --initial-cluster-state existing --initial-cluster-token new >"$NDATA.log" 2>&1 &
    NPID=$!
    track_pid "$NPID"
    got=
    for _ in $(seq 1 60); do
        got=$(etcdctl --endpoints="127.0.0.1:$NCPORT" --dial-timeout=1s --command-timeout=2s \
            get a --print-value-only 2>/dev/null) && [ -n "$got" ] && break
        sleep 0.5
    done
    check_eq new-member-has-data 3 "$got" || tail -n 20 "$NDATA.log" | sed 's/^/#     /'
    check_out new-member-has-later-write "$(printf 'f\n7')" \
        etcdctl --endpoints="127.0.0.1:$NCPORT" --command-timeout=10s get f
    kill "$NPID" 2>/dev/null; wait "$NPID" 2>/dev/null; untrack_pid "$NPID"
    stop_server
else
    fail etcd-layout-serve "the target did not serve the etcdctl-restored data dir"
fi
finish
