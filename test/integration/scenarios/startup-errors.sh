#!/usr/bin/env bash
# startup-errors: a data dir the server cannot use must stop it at start with a
# clear error and a non-zero exit, and must be left exactly as it was:
#   locked      another running member holds the data dir (it keeps serving, its
#               data unchanged);
#   corrupt     RocksDB's CURRENT file overwritten with garbage (no silent repair:
#               the dir is byte-for-byte unchanged);
#   not-a-dir   --data-dir names a regular file, or a path below one;
#   no-perm     the data dir's parent is not writable by the server's user (run
#               as "nobody" when we are root, since root ignores permissions);
#   other-cluster  the data dir of one cluster started with flags that describe
#               another (metastore only: etcd ignores the flags then);
# plus the positive control that the same data dir, once freed, starts and
# still holds its data. Both targets must refuse each case; the exact wording
# is checked for metastore (etcd words its own).
. "$(dirname "$0")/../lib.sh"

# run_bad NAME DATA-DIR [runner...]: start the server on DATA-DIR (fresh free ports)
# and expect it to exit non-zero within 20 s. Leaves its output in $_IT_TMP/$NAME.out.
# With MAY_BLOCK=1 a server that is still running then passes if it never served
# a client (etcd 3.4 waits forever for a locked bbolt file instead of exiting).
run_bad() {
    local name=$1 dir=$2 cport pport pid i rc
    shift 2
    read -r cport pport < <(free_ports 2)
    "$@" "$IT_SERVER" --name bad --data-dir "$dir" \
        --listen-client-urls "http://127.0.0.1:$cport" --advertise-client-urls "http://127.0.0.1:$cport" \
        --listen-peer-urls "http://127.0.0.1:$pport" --initial-advertise-peer-urls "http://127.0.0.1:$pport" \
        --initial-cluster "bad=http://127.0.0.1:$pport" >"$_IT_TMP/$name.out" 2>&1 &
    pid=$!
    track_pid "$pid"
    for i in $(seq 1 100); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.2
    done
    if kill -0 "$pid" 2>/dev/null; then
        if [ "${MAY_BLOCK:-0}" = 1 ] && ! etcdctl --endpoints="127.0.0.1:$cport" --dial-timeout=1s \
                --command-timeout=2s endpoint health >/dev/null 2>&1; then
            echo "# $name: $IT_TARGET blocks (never serves) instead of exiting"
            pass "$name-refused"
        else
            fail "$name-refused" "server still running 20 s after start" "output: $(_short "$(cat "$_IT_TMP/$name.out")")"
        fi
        _it_stop_pid "$pid" KILL 2>/dev/null
        untrack_pid "$pid"
        return 1
    fi
    wait "$pid"
    rc=$?
    untrack_pid "$pid"
    if [ $rc -eq 0 ]; then
        fail "$name-refused" "server exited with status 0"
        return 1
    fi
    pass "$name-refused"
}

# check_says NAME REGEX: metastore's output for case NAME contains a line matching REGEX.
check_says() {
    [ "$IT_TARGET" = metastore ] || return 0
    if grep -Eq "$2" "$_IT_TMP/$1.out"; then
        pass "$1-message"
    else
        fail "$1-message" "no line matching /$2/" "output: $(_short "$(cat "$_IT_TMP/$1.out")")"
    fi
}

# dir_sum DIR: names, sizes and contents of every file under DIR (for "unchanged").
dir_sum() {
    (cd "$1" && find . -type f ! -name LOCK -print0 | sort -z | xargs -0 sha256sum) 2>/dev/null
}

# --- locked: a second member on a running member's data dir
start_server || { fail start "server did not start"; exit 1; }
check_out locked-setup "OK" ectl put keep me
rev=$(cur_rev)
if [ "$IT_TARGET" = etcd ]; then MAY_BLOCK=1 run_bad locked "$SRV_DATA"; else run_bad locked "$SRV_DATA"; fi
check_says locked "\"level\":\"fatal\",.*\"msg\":\"cannot open data dir .*locked by another process"
check_out locked-first-still-serves "me" ectl get keep --print-value-only
check_eq locked-first-revision-unchanged "$rev" "$(cur_rev)"

# --- corrupt: garbage in CURRENT (the first member stopped cleanly first)
data=$SRV_DATA
stop_server
if [ "$IT_TARGET" = metastore ]; then
    cur=$data/CURRENT
else
    cur=$data/member/snap/db      # etcd keeps its keyspace in one bbolt file
fi
cp -a "$data" "$_IT_TMP/data-good"
printf 'garbage\n' >"$cur"
before=$(dir_sum "$data")
run_bad corrupt "$data"
check_says corrupt "\"level\":\"fatal\",.*\"msg\":\"cannot open data dir .*(Corruption|corrupt)"
check_eq corrupt-dir-unchanged "$before" "$(dir_sum "$data")"

# --- positive control: the saved good copy starts and still holds the data
rm -rf "$data"
mv "$_IT_TMP/data-good" "$data"
if restart_server; then
    pass restart-good-copy
    check_out restart-good-copy-data "me" ectl get keep --print-value-only
    check_eq restart-good-copy-revision "$rev" "$(cur_rev)"
    stop_server
else
    fail restart-good-copy "server did not start on the intact data dir"
fi

# --- another cluster's data dir: flags that describe a different cluster (other
# member name and peer URL, so other member and cluster ids) must not take it
# over. etcd 3.4 ignores --initial-cluster once a data dir exists (it would
# serve the old cluster under the new flags), so this case is metastore's own.
if [ "$IT_TARGET" = metastore ]; then
    before=$(dir_sum "$data")
    run_bad other-cluster "$data"
    check_says other-cluster "\"level\":\"fatal\",.*\"msg\":\"data dir .* belongs to member [0-9a-f]{16} of cluster [0-9a-f]{16}, but --initial-cluster"
    check_eq other-cluster-dir-unchanged "$before" "$(dir_sum "$data")"
fi

# --- not a directory
: >"$_IT_TMP/plain-file"
run_bad file "$_IT_TMP/plain-file"
check_says file "\"level\":\"fatal\",.*\"msg\":\"cannot open data dir .*not a directory"
check_eq file-untouched "0" "$(stat -c %s "$_IT_TMP/plain-file")"
run_bad below-file "$_IT_TMP/plain-file/data"
check_says below-file "\"level\":\"fatal\",.*\"msg\":\"cannot open data dir .*Not a directory"

# --- no permission to create the data dir
mkdir -p "$_IT_TMP/ro"
if [ "$(id -u)" -eq 0 ]; then
    chmod 0755 "$_IT_TMP" "$_IT_TMP/ro"    # nobody may traverse, not write
    # nobody may not reach the server where it was built (a checkout under a 0700
    # dir, as mktemp -d makes): run a copy from the scenario's own temp dir.
    mkdir -p "$_IT_TMP/bin"
    cp "$IT_SERVER" "$_IT_TMP/bin/"
    chmod 0755 "$_IT_TMP/bin" "$_IT_TMP/bin/$(basename "$IT_SERVER")"
    if ! runuser -u nobody -- test -x "$_IT_TMP/bin/$(basename "$IT_SERVER")"; then
        fail no-perm-setup "user nobody cannot execute $_IT_TMP/bin (is \$TMPDIR private?)"
    fi
    IT_SERVER=$_IT_TMP/bin/$(basename "$IT_SERVER") run_bad no-perm "$_IT_TMP/ro/data" runuser -u nobody --
else
    chmod 0555 "$_IT_TMP/ro"
    run_bad no-perm "$_IT_TMP/ro/data"
    chmod 0755 "$_IT_TMP/ro"
fi
check_says no-perm "\"level\":\"fatal\",.*\"msg\":\"cannot open data dir .*Permission denied"
check_true no-perm-nothing-created "the data dir was created" test ! -e "$_IT_TMP/ro/data"

finish
