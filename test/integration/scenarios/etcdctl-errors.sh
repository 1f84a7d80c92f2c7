#!/usr/bin/env bash
# etcdctl-errors: every rejected request prints etcdctl's {"level":"warn",...} retry
# log line(s) carrying "rpc error: code = CODE desc = MESSAGE" and a final
# "Error: MESSAGE" line on stderr, exits non-zero, and changes nothing (revision and
# data unchanged).  Also positive controls at the limits, and the --max-request-bytes /
# --max-txn-ops server flags.
. "$(dirname "$0")/../lib.sh"

start_server || { fail start "server did not start"; exit 1; }

ectl put a 1 >/dev/null
ectl put b 2 >/dev/null
rev=$(cur_rev)
check_eq setup-revision 3 "$rev"

# errcase NAME CODE MESSAGE cmd... : error + revision unchanged + data unchanged
errcase() {
    local name=$1
    check_etcdctl_error "$@"
    check_rev_unchanged "$name-revision-unchanged" "$rev"
}

errcase put-empty-key InvalidArgument "etcdserver: key is not provided" ectl put "" x
errcase get-empty-key InvalidArgument "etcdserver: key is not provided" ectl get ""
errcase del-empty-key InvalidArgument "etcdserver: key is not provided" ectl del ""
errcase put-unknown-lease NotFound "etcdserver: requested lease not found" ectl put k v --lease=1234
check_out put-unknown-lease-no-key "" ectl get k
errcase lease-revoke-unknown NotFound "etcdserver: requested lease not found" \
    --line "Error: failed to revoke lease (etcdserver: requested lease not found)" ectl lease revoke 1234
errcase put-ignore-value-missing-key InvalidArgument "etcdserver: key not found" ectl put nokey --ignore-value
errcase put-ignore-lease-missing-key InvalidArgument "etcdserver: key not found" ectl put nokey v --ignore-lease
errcase get-future-rev OutOfRange "etcdserver: mvcc: required revision is a future revision" ectl get a --rev=$((rev + 1))

# Request size: etcd's default --max-request-bytes is 1572864 (1.5 MiB).
head -c 1500000 /dev/zero | tr '\0' 'x' >"$_IT_TMP/v-ok"
head -c 1600000 /dev/zero | tr '\0' 'y' >"$_IT_TMP/v-big"
errcase put-too-large InvalidArgument "etcdserver: request is too large" ectl put big <"$_IT_TMP/v-big"
check_out put-too-large-no-key "" ectl get big --keys-only
check_out put-just-under-limit "OK" ectl put big <"$_IT_TMP/v-ok"
rev=$((rev + 1))
check_eq put-just-under-limit-revision "$rev" "$(cur_rev)"
check_eq put-just-under-limit-size 1500000 "$(ectl get big --print-value-only | tr -d '\n' | wc -c)"
ectl del big >/dev/null
rev=$((rev + 1))

# Txn ops: etcd's default --max-txn-ops is 128 (counted per branch).
ops129=$(for i in $(seq 1 129); do echo "put many/$i v"; done)
ops128=$(for i in $(seq 1 128); do echo "put many/$i v"; done)
errcase txn-too-many-ops InvalidArgument "etcdserver: too many operations in txn request" \
    sh -c 'printf "\n%s\n\n\n" "$1" | "$0" --endpoints="$2" txn' etcdctl "$ops129" "$SRV_ENDPOINT"
check_out txn-too-many-ops-no-keys "" ectl get --prefix many/ --keys-only
out=$(printf '\n%s\n\n\n' "$ops128" | ectl txn)
check_eq txn-128-ops-ok "SUCCESS" "$(printf '%s\n' "$out" | head -n 1)"
rev=$((rev + 1))
check_eq txn-128-ops-one-revision "$rev" "$(cur_rev)"
check_eq txn-128-ops-count 128 "$(ectl get --prefix many/ --keys-only | sed '/^$/d' | wc -l)"

# Duplicate keys in one txn branch.
errcase txn-duplicate-put InvalidArgument "etcdserver: duplicate key given in txn request" \
    sh -c 'printf "\nput dup 1\nput dup 2\n\n\n" | "$0" --endpoints="$1" txn' etcdctl "$SRV_ENDPOINT"
errcase txn-duplicate-put-del InvalidArgument "etcdserver: duplicate key given in txn request" \
    sh -c 'printf "\nput dup 1\ndel --prefix du\n\n\n" | "$0" --endpoints="$1" txn' etcdctl "$SRV_ENDPOINT"
errcase txn-duplicate-in-failure-branch InvalidArgument "etcdserver: duplicate key given in txn request" \
    sh -c 'printf "\n\nput dup 1\nput dup 2\n\n" | "$0" --endpoints="$1" txn' etcdctl "$SRV_ENDPOINT"
check_out txn-duplicate-no-key "" ectl get dup
# Same key in the success and the failure branch is fine (only one branch runs).
out=$(printf 'val("a") = "1"\n\nput dup s\n\nput dup f\n\n' | ectl txn)
check_eq txn-same-key-both-branches "$(printf 'SUCCESS\n\nOK')" "$out"
rev=$((rev + 1))
# A put with an unknown lease inside a txn fails the whole txn.
errcase txn-put-unknown-lease NotFound "etcdserver: requested lease not found" \
    sh -c 'printf "\nput x 1\nput y 2 --lease=1234\n\n\n" | "$0" --endpoints="$1" txn' etcdctl "$SRV_ENDPOINT"
check_out txn-put-unknown-lease-nothing-written "" ectl get x

# Compaction errors.
errcase compact-future OutOfRange "etcdserver: mvcc: required revision is a future revision" ectl compact $((rev + 10))
check_out compact-ok "compacted revision $rev" ectl compact "$rev"
errcase compact-again OutOfRange "etcdserver: mvcc: required revision has been compacted" ectl compact "$rev"
errcase compact-below OutOfRange "etcdserver: mvcc: required revision has been compacted" ectl compact 2
errcase get-compacted OutOfRange "etcdserver: mvcc: required revision has been compacted" ectl get a --rev=2
check_out data-intact "$(printf 'a\n1\nb\n2\ndup\ns')" ectl get a e
stop_server

# Server flags --max-request-bytes / --max-txn-ops are honoured.
start_server -- --max-request-bytes 2048 --max-txn-ops 4 || { fail start-limits "server did not start"; finish; exit; }
rev=$(cur_rev)
head -c 1000 /dev/zero | tr '\0' 's' >"$_IT_TMP/v-small"
head -c 3000 /dev/zero | tr '\0' 'l' >"$_IT_TMP/v-large"
errcase flag-max-request-bytes InvalidArgument "etcdserver: request is too large" ectl put k <"$_IT_TMP/v-large"
check_out flag-max-request-bytes-small-ok "OK" ectl put k <"$_IT_TMP/v-small"
rev=$((rev + 1))
errcase flag-max-txn-ops InvalidArgument "etcdserver: too many operations in txn request" \
    sh -c 'printf "\nput 1 1\nput 2 2\nput 3 3\nput 4 4\nput 5 5\n\n\n" | "$0" --endpoints="$1" txn' etcdctl "$SRV_ENDPOINT"
out=$(printf '\nput 1 1\nput 2 2\nput 3 3\nput 4 4\n\n\n' | ectl txn | head -n 1)
check_eq flag-max-txn-ops-at-limit-ok "SUCCESS" "$out"
stop_server
finish
