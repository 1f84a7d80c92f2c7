#!/usr/bin/env bash
# snapshot-errors: bad snapshot files are refused with etcdctl's words by the
# target's restore tool (`metastore snapshot restore`; etcdctl's for --target
# etcd) — a damaged file ("expected sha256 ..."), a truncated one ("snapshot
# missing hash but --skip-hash-check=false"), an existing data dir — and
# metastore leaves no data dir behind (etcdctl leaves a partial one); and with
# auth on only root may take a snapshot (etcd's TestCtlV3AuthSnapshot).
. "$(dirname "$0")/../lib.sh"

restore_tool() {
    if [ "$IT_TARGET" = metastore ]; then "$IT_SERVER" snapshot restore "$@"
    else etcdctl snapshot restore "$@"; fi
}

# refused NAME MESSAGE-REGEX FILE [flags]: the restore fails, says MESSAGE, and
# (metastore) creates nothing.
refused() {
    local name=$1 msg=$2 file=$3 dir=$_IT_TMP/restored-$1 out rc
    shift 3
    out=$(restore_tool "$file" --name r --data-dir "$dir" \
        --initial-cluster r=http://127.0.0.1:2380 --initial-advertise-peer-urls http://127.0.0.1:2380 "$@" 2>&1)
    rc=$?
    check_true "$name-fails" "exit status 0" test $rc -ne 0
    check_match "$name-says" "(.*
)?Error: $msg(
.*)?" "$out"
    if [ "$IT_TARGET" = metastore ]; then
        check_true "$name-leaves-nothing" "$(ls -d "$dir"* 2>/dev/null)" test -z "$(ls -d "$dir"* 2>/dev/null)"
    fi
}

start_server || { fail start "server did not start"; exit 1; }
ectl put k1 v1 >/dev/null
ectl put k2 v2 >/dev/null
SNAP=$_IT_TMP/good.snapshot
check_out save "Snapshot saved at $SNAP" ectl snapshot save "$SNAP"

# etcd's TestCtlV3SnapshotCorrupt: 512 zero bytes over the start of the file
BAD=$_IT_TMP/corrupt.snapshot
cp "$SNAP" "$BAD"
dd if=/dev/zero of="$BAD" bs=512 count=1 conv=notrunc status=none
refused corrupt 'expected sha256 \[[0-9 ]+\], got \[[0-9 ]+\]' "$BAD"
out=$(etcdctl snapshot restore --data-dir "$_IT_TMP/snap.etcd" "$BAD" 2>&1)
check_match etcdctl-corrupt '(.*
)?Error: expected sha256 .*' "$out"

TRUNC=$_IT_TMP/truncated.snapshot
head -c 10000 "$SNAP" >"$TRUNC"
refused truncated 'snapshot missing hash but --skip-hash-check=false' "$TRUNC"

if [ "$IT_TARGET" = metastore ]; then
    NOTBOLT=$_IT_TMP/not-bolt.snapshot
    head -c 8192 /dev/urandom >"$NOTBOLT"
    refused not-bolt '.* is not a bbolt database .*' "$NOTBOLT" --skip-hash-check
fi

EXISTS=$_IT_TMP/exists
mkdir "$EXISTS"
out=$(restore_tool "$SNAP" --data-dir "$EXISTS" 2>&1)
check_match exists "(.*
)?Error: data-dir \"$EXISTS\" exists" "$out"

# a good file restores (status before restore leaves the file intact: etcd's
# TestCtlV3SnapshotStatusBeforeRestore)
etcdctl snapshot status "$SNAP" >/dev/null 2>&1
out=$(restore_tool "$SNAP" --data-dir "$_IT_TMP/good" 2>&1)
check_match good-restore '(.*
)?.*"msg":"added member".*' "$out"

# --- auth: only root may take a snapshot
ectl user add root:root >/dev/null
ectl role add root >/dev/null
ectl user grant-role root root >/dev/null
ectl user add test-user:pass >/dev/null
ectl role add test-role >/dev/null
ectl user grant-role test-user test-role >/dev/null
ectl auth enable >/dev/null
ASNAP=$_IT_TMP/auth.snapshot
out=$(ectl --user test-user:pass snapshot save "$ASNAP" 2>&1)
rc=$?
check_true auth-non-root-refused "saved: $out" test $rc -ne 0
check_match auth-non-root-says '(.*
)?Error: rpc error: code = Unknown desc = auth: permission denied' "$out"
check_true auth-non-root-no-file "a file was left" test ! -e "$ASNAP"
check_out auth-root "Snapshot saved at $ASNAP" ectl --user root:root snapshot save "$ASNAP"
j=$(etcdctl -w json snapshot status "$ASNAP" 2>/dev/null)
check_eq auth-status-revision 3 "$(printf '%s' "$j" | jget 'd["revision"]')"
stop_server
finish
