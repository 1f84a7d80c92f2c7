#!/usr/bin/env bash
# maint-hashkv: Maintenance.HashKV (`etcdctl endpoint hashkv`) is etcd's
# HashByRev value for value: the expected hashes below are what Debian's etcd
# 3.4.23 reports for this exact history (puts, a delete, compactions, a
# delete of every key — etcd's "no live key" case — and a later put), at the
# current and at older revisions; compact_revision is -1 before any
# compaction; a compacted revision is OutOfRange "required revision has been
# compacted", a future one "required revision is a future revision" (etcd's
# hash depends on its background compaction having finished, so every
# compaction here is --physical). Hashes
# do not change across a restart. Hash (`etcdctl` has no command for it) is
# not checked here: its value is metastore's own (docs/compatibility.md).
. "$(dirname "$0")/../lib.sh"

start_server || { fail start "server did not start"; exit 1; }
pass start
# hkv [--rev=N]: "revision hash compact_revision"
hkv() {
    ectl -w json endpoint hashkv "$@" |
        jget '"%d %d %d" % (d[0]["HashKV"]["header"]["revision"], d[0]["HashKV"]["hash"], d[0]["HashKV"]["compact_revision"])'
}
# check_hkv_error NAME MSG ARGS: `endpoint hashkv ARGS` fails (OutOfRange) with
# etcdctl's per-endpoint line and "Error: MSG" last.
check_hkv_error() {
    local name=$1 msg=$2 out rc
    shift 2
    out=$(ectl endpoint hashkv "$@" 2>&1)
    rc=$?
    check_eq "$name" "1|rpc error: code = OutOfRange desc = $msg|Failed to get the hash of endpoint $SRV_ENDPOINT ($msg)|Error: $msg" \
        "$([ $rc -ne 0 ] && echo 1 || echo 0)|$(printf '%s\n' "$out" | sed -n 's/.*"error":"\([^"]*\)".*/\1/p' | head -n 1)|$(printf '%s\n' "$out" | tail -n 2 | paste -sd '|')"
}
check_eq empty "1 1084519789 -1" "$(hkv)"
for kv in "a 1" "b 2" "a 3"; do ectl put $kv >/dev/null; done
ectl del b >/dev/null
ectl put c 4 >/dev/null
check_eq rev6 "6 2750537463 -1" "$(hkv)"
check_eq at-rev3 "6 1827592406 -1" "$(hkv --rev=3)"
check_eq at-rev2 "6 2587454935 -1" "$(hkv --rev=2)"
ectl put lk v >/dev/null
ectl compact 4 --physical >/dev/null
check_eq compacted4 "7 626074390 4" "$(hkv)"
check_eq compacted4-at5 "7 1468967122 4" "$(hkv --rev=5)"
check_hkv_error at-compacted "etcdserver: mvcc: required revision has been compacted" --rev=4
ectl put d 5 >/dev/null
ectl put a 6 >/dev/null
check_eq rev9 "9 513957599 4" "$(hkv)"
ectl compact 7 --physical >/dev/null
check_eq compacted7 "9 3251037376 7" "$(hkv)"
ectl del "" --prefix >/dev/null
check_eq no-live-key "10 3552795875 7" "$(hkv)"
ectl compact 9 --physical >/dev/null
check_eq compacted9 "10 1855171817 9" "$(hkv)"
ectl put z 1 >/dev/null
check_eq rev11 "11 1900039198 9" "$(hkv)"
check_hkv_error future "etcdserver: mvcc: required revision is a future revision" --rev=100
check_out table "$(printf '+%s+%s+\n|%s|%s|\n+%s+%s+\n| %s | 1900039198 |\n+%s+%s+' \
    "$(printf -- '-%.0s' $(seq 1 $((${#SRV_ENDPOINT} + 2))))" "------------" \
    "$(printf '%*s' $(( (${#SRV_ENDPOINT} + 2 + 8) / 2 )) ENDPOINT)$(printf '%*s' $(( (${#SRV_ENDPOINT} + 2 - 8 + 1) / 2 )) '')" \
    "    HASH    " \
    "$(printf -- '-%.0s' $(seq 1 $((${#SRV_ENDPOINT} + 2))))" "------------" "$SRV_ENDPOINT" \
    "$(printf -- '-%.0s' $(seq 1 $((${#SRV_ENDPOINT} + 2))))" "------------")" \
    ectl endpoint hashkv -w table
stop_server
restart_server || { fail restart "server did not restart"; exit 1; }
check_eq after-restart "11 1900039198 9" "$(hkv)"
check_eq after-restart-at10 "11 1855171817 9" "$(hkv --rev=10)"
check_out simple "$SRV_ENDPOINT, 1900039198" ectl endpoint hashkv
stop_server
finish
