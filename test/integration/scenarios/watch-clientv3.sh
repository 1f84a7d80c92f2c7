#!/usr/bin/env bash
# watch-clientv3: the Go clientv3 program go/watchcheck against fresh servers, one run
# per subcommand (its "ok watchcheck/SUB/NAME" lines are this scenario's checks):
#   - reflector (plain server): paged list pinned to the first page's revision
#     (WithLimit + WithRev + range / from-key continuation) under concurrent writers,
#     watch from rev+1 (prefix, prev_kv, progress_notify): every acknowledged write
#     once, in revision order, prev_kv/version/create_revision consistent with the
#     cache; RequestProgress -> progress notification at the current revision;
#     compaction: a watch from an old revision ends with CompactRevision = the compact
#     revision and Err() == rpctypes.ErrCompacted, the live watch on the same stream
#     keeps going, a watch from exactly the compact revision works; relist + rewatch;
#   - many (same server): 200 watches on one client (one stream): keys, overlapping
#     prefixes and ranges each get exactly their events; cancelling half closes their
#     channels and stops their events, the rest go on; on a raw stream: ids 0,1,2...,
#     the cancel response, an unknown cancel ignored, RequestProgress (watch id -1),
#     an empty range refused (created+canceled, id -1, "mvcc: watcher range is empty");
#   - stall (same server): a clientv3 reader and a raw-stream reader that stop
#     reading while 20000 puts of 1 KiB go on and a live reader on another client
#     sees them all; the stalled readers then get every event once, in order;
#   - progress (--experimental-watch-progress-notify-interval=1s): an idle
#     progress_notify watch gets notifications at the current revision (the watch's
#     own id on the wire), a watch without progress_notify gets none;
#   - fragment (--max-request-bytes 65536, then 1048576): fragment=true watches get
#     responses of >= max-request-bytes + 512 KiB split into greedy fragments, smaller
#     ones whole; clientv3 reassembles one response per revision; watches without
#     fragment get every response whole.
. "$(dirname "$0")/../lib.sh"

[ -x "$IT_GOBIN/watchcheck" ] || { fail build "watchcheck binary missing ($IT_GOBIN/watchcheck)"; exit 1; }

# wcheck SUB ARGS...: run `watchcheck SUB -endpoints <server> ARGS` (bounded), pass its
# lines through and count them.
wcheck() {
    local sub=$1
    shift
    timeout 600 "$IT_GOBIN/watchcheck" "$sub" -endpoints "$SRV_ENDPOINT" "$@" >"$_IT_TMP/$sub.out" 2>&1 &
    local pid=$!
    track_pid "$pid"
    wait "$pid"
    local rc=$?
    untrack_pid "$pid"
    cat "$_IT_TMP/$sub.out"
    IT_CHECKS=$((IT_CHECKS + $(grep -c '^ok \|^not ok ' "$_IT_TMP/$sub.out")))
    IT_FAILS=$((IT_FAILS + $(grep -c '^not ok ' "$_IT_TMP/$sub.out")))
    if [ $rc -ne 0 ] && ! grep -q '^not ok ' "$_IT_TMP/$sub.out"; then
        fail "$sub/exit" "watchcheck $sub exited with status $rc"
    fi
}

start_server || { fail start "server did not start"; exit 1; }
wcheck reflector
wcheck many
wcheck stall
stop_server

start_server -- --experimental-watch-progress-notify-interval=1s ||
    { fail start-progress "server did not start"; exit 1; }
wcheck progress
stop_server

start_server -- --max-request-bytes 65536 || { fail start-fragment-64k "server did not start"; exit 1; }
wcheck fragment -max-request-bytes 65536
stop_server

start_server -- --max-request-bytes 1048576 || { fail start-fragment-1m "server did not start"; exit 1; }
wcheck fragment -max-request-bytes 1048576
stop_server
finish
