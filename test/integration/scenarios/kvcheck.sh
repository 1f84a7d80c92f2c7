#!/usr/bin/env bash
# kvcheck: the Go clientv3 program go/kvcheck against a fresh server — every field of
# Range/Put/DeleteRange/Txn/Compact, headers, exact error messages and gRPC codes.
. "$(dirname "$0")/../lib.sh"

[ -x "$IT_GOBIN/kvcheck" ] || { fail build "kvcheck binary missing ($IT_GOBIN/kvcheck)"; exit 1; }
start_server || { fail start "server did not start"; exit 1; }

"$IT_GOBIN/kvcheck" -endpoint "$SRV_ENDPOINT" &
kpid=$!
track_pid "$kpid"
wait "$kpid"
rc=$?
untrack_pid "$kpid"
# kvcheck printed its own ok / not ok lines; its exit status must agree.
if [ $rc -ne 0 ]; then
    IT_FAILS=$((IT_FAILS + 1))
fi
IT_CHECKS=1
stop_server
finish
