#!/usr/bin/env bash
# etcdctl-compaction: compaction keeps the latest version of every key at or below
# the compact revision, reads below it fail with the exact compacted error, reads at
# or above it (and the current state) are intact, compaction adds no revision, and
# --physical behaves the same to clients.
. "$(dirname "$0")/../lib.sh"

start_server || { fail start "server did not start"; exit 1; }

ectl put k v1 >/dev/null        # 2
ectl put k v2 >/dev/null        # 3
ectl put gone x >/dev/null      # 4
ectl put k v3 >/dev/null        # 5
ectl del gone >/dev/null        # 6
ectl put k v4 >/dev/null        # 7
ectl put other o >/dev/null     # 8
check_eq setup-revision 8 "$(cur_rev)"

check_out compact-5 "compacted revision 5" ectl compact 5
check_eq compact-adds-no-revision 8 "$(cur_rev)"
check_etcdctl_error get-rev-4-compacted OutOfRange "etcdserver: mvcc: required revision has been compacted" ectl get k --rev=4
check_etcdctl_error get-rev-1-compacted OutOfRange "etcdserver: mvcc: required revision has been compacted" ectl get k --rev=1
check_etcdctl_error get-prefix-rev-2-compacted OutOfRange "etcdserver: mvcc: required revision has been compacted" ectl get --prefix "" --rev=2
check_out get-at-compact-rev "$(printf 'k\nv3')" ectl get k --rev=5
check_out get-at-compact-rev-all "$(printf 'gone\nx\nk\nv3')" ectl get --prefix "" --rev=5
check_out get-rev-6-deleted-key "" ectl get gone --rev=6
check_out get-rev-7 "$(printf 'k\nv4')" ectl get k --rev=7
check_out get-latest "$(printf 'k\nv4\nother\no')" ectl get --prefix ""
j=$(ectl -w json get k --rev=5)
check_eq json-at-compact-rev "v3 2 5 3 8" \
    "$(printf '%s' "$j" | jget '"%s %d %d %d %d" % (b(d["kvs"][0]["value"]), d["kvs"][0]["create_revision"], d["kvs"][0]["mod_revision"], d["kvs"][0]["version"], d["header"]["revision"])')"
j=$(ectl -w json get k)
check_eq json-latest-keeps-version "v4 2 7 4" \
    "$(printf '%s' "$j" | jget '"%s %d %d %d" % (b(d["kvs"][0]["value"]), d["kvs"][0]["create_revision"], d["kvs"][0]["mod_revision"], d["kvs"][0]["version"])')"
check_etcdctl_error get-future OutOfRange "etcdserver: mvcc: required revision is a future revision" ectl get k --rev=9

# Writes continue from the same revision; a second (physical) compaction.
check_out put-after-compact "OK" ectl put k v5       # 9
check_eq revision-continues 9 "$(cur_rev)"
check_out compact-physical-8 "compacted revision 8" ectl compact 8 --physical
check_eq physical-adds-no-revision 9 "$(cur_rev)"
check_etcdctl_error get-rev-7-compacted OutOfRange "etcdserver: mvcc: required revision has been compacted" ectl get k --rev=7
check_out get-rev-8-after-physical "$(printf 'k\nv4\nother\no')" ectl get --prefix "" --rev=8
check_out get-latest-after-physical "$(printf 'k\nv5\nother\no')" ectl get --prefix ""
check_etcdctl_error compact-backwards OutOfRange "etcdserver: mvcc: required revision has been compacted" ectl compact 6
check_out compact-current "compacted revision 9" ectl compact 9
check_out get-at-current-after-compact "$(printf 'k\nv5')" ectl get k --rev=9

# endpoint status still reports the current revision.
j=$(ectl -w json endpoint status)
check_eq status-revision 9 "$(printf '%s' "$j" | jget 'd[0]["Status"]["header"]["revision"]')"

# Compaction survives a clean restart.
stop_server
restart_server || { fail restart "server did not restart"; finish; exit; }
check_etcdctl_error restart-still-compacted OutOfRange "etcdserver: mvcc: required revision has been compacted" ectl get k --rev=8
check_out restart-latest "$(printf 'k\nv5\nother\no')" ectl get --prefix ""
check_eq restart-revision 9 "$(cur_rev)"
stop_server
finish
