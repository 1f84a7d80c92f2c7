#!/usr/bin/env bash
# etcdctl-txn: `etcdctl txn` in its stdin form (compares / success ops / failure ops,
# blank-line separated).  Compares on value, version, create and mod revision with
# =, !=, <, >; success and failure branches; exact output; one revision per write
# txn, none for a read-only txn or a txn whose writes change nothing.
#
# Not covered here: lease("k") compares.  etcdctl 3.4 builds them as
# Compare(Cmp{Target: LEASE}, op, "<string>") which panics client-side ("panic: bad
# value") before anything is sent, so LEASE compares are covered by kvcheck (Go).
. "$(dirname "$0")/../lib.sh"

start_server || { fail start "server did not start"; exit 1; }

ectl put k1 v1 >/dev/null            # 2
ectl put k2 v2 >/dev/null            # 3
ectl put k1 v1b >/dev/null           # 4  (k1: create 2, mod 4, version 2)
check_eq setup-revision 4 "$(cur_rev)"

# txn_body COMPARES SUCCESS-OPS FAILURE-OPS: the stdin text etcdctl txn reads — each
# section is newline-separated lines ending with one blank line (an empty section is
# just the blank line).  etcdctl needs all three terminators or it fails with "Error: EOF".
txn_body() {
    local sec
    for sec in "$@"; do
        if [ -n "$sec" ]; then printf '%s\n\n' "$sec"; else printf '\n'; fi
    done
}

# txn_case NAME EXPECTED-OUTPUT EXPECTED-REVISION-AFTER COMPARES SUCCESS FAILURE
txn_case() {
    local name=$1 exp=$2 exprev=$3 out rc
    out=$(txn_body "$4" "$5" "$6" | ectl txn 2>"$_IT_TMP/stderr")
    rc=$?
    if [ $rc -ne 0 ]; then
        fail "$name" "etcdctl txn exit status $rc" "stderr: $(cat "$_IT_TMP/stderr")"
        return
    fi
    check_eq "$name" "$exp" "$out"
    check_eq "$name-revision" "$exprev" "$(cur_rev)"
}

txn_case value-eq-success "$(printf 'SUCCESS\n\nOK\n\nk1\nv1b')" 5 \
    'val("k1") = "v1b"' \
    'put k3 "three 3"
get k1' \
    'put k3 never'
check_out value-eq-success-applied "$(printf 'k3\nthree 3')" ectl get k3

txn_case value-eq-failure "$(printf 'FAILURE\n\nOK\n\nk2\nv2')" 6 \
    'val("k1") = "nope"' \
    'put k4 never' \
    'put k4 failure-branch
get k2'
check_out value-eq-failure-applied "$(printf 'k4\nfailure-branch')" ectl get --prefix k4

txn_case value-ne "$(printf 'SUCCESS\n\nOK')" 7 \
    'value("k1") != "v1"' \
    'put k5 ne' \
    ''

txn_case value-lt-gt "$(printf 'SUCCESS\n\nOK')" 8 \
    'val("k1") > "v1a"
val("k1") < "v1c"' \
    'put k6 ltgt' \
    ''

txn_case version-eq "$(printf 'SUCCESS\n\nOK')" 9 \
    'ver("k1") = "2"' \
    'put k1 v1c' \
    ''

txn_case version-gt-fails "$(printf 'FAILURE\n\nk1\nv1c')" 9 \
    'version("k1") > "3"' \
    'put k1 never' \
    'get k1'

txn_case version-missing-key-is-0 "$(printf 'SUCCESS\n\nOK')" 10 \
    'ver("missing") = "0"' \
    'put missing created' \
    ''

txn_case create-eq "$(printf 'SUCCESS\n\n1\nk2\nv2')" 11 \
    'c("k2") = "3"' \
    'del k2 --prev-kv' \
    ''

txn_case create-lt-mod-gt "$(printf 'SUCCESS\n\nOK\n\nOK')" 12 \
    'create("k1") < "3"
mod("k1") > "8"
m("k1") != "0"' \
    'put t1 a
put t2 b' \
    ''
j=$(ectl -w json get --prefix t)
check_eq txn-one-revision-for-all-ops "12 12" \
    "$(printf '%s' "$j" | jget '" ".join(str(kv["mod_revision"]) for kv in d["kvs"])')"

txn_case mod-eq-fails "$(printf 'FAILURE')" 12 \
    'mod("k1") = "4"' \
    'put k1 never' \
    ''

txn_case multiple-compares-one-false "$(printf 'FAILURE\n\nOK')" 13 \
    'val("k1") = "v1c"
ver("k1") = "99"' \
    'put never x' \
    'put k7 else'

txn_case read-only-no-revision "$(printf 'SUCCESS\n\nk1\nv1c\n\nt1\na\nt2\nb')" 13 \
    'val("k1") = "v1c"' \
    'get k1
get --prefix t' \
    ''

txn_case delete-nothing-no-revision "$(printf 'SUCCESS\n\n0')" 13 \
    '' \
    'del nosuchkey' \
    ''

txn_case empty-compare-put-del "$(printf 'SUCCESS\n\nOK\n\n2\nt1\na\nt2\nb\n\nk1\nv1c')" 14 \
    '' \
    'put k8 v8
del --prefix t --prev-kv
get k1' \
    ''
check_out empty-compare-put-del-result "" ectl get --prefix t

# Overwrite in a txn bumps version once and records the txn revision.
txn_case put-then-get-in-txn "$(printf 'SUCCESS\n\nOK\n\nk1\nv1d')" 15 \
    'val("k1") = "v1c"' \
    'put k1 v1d
get k1' \
    ''
j=$(ectl -w json get k1)
check_eq txn-put-kv-fields "v1d 2 15 4" \
    "$(printf '%s' "$j" | jget '"%s %d %d %d" % (b(d["kvs"][0]["value"]), d["kvs"][0]["create_revision"], d["kvs"][0]["mod_revision"], d["kvs"][0]["version"])')"

# -w json of a txn: succeeded flag, header revision, sub-response headers.
j=$(txn_body 'val("k1") = "v1d"' 'put k9 x
get k1' '' | ectl -w json txn)
check_eq txn-json-succeeded-revision "true 16 2" \
    "$(printf '%s' "$j" | jget '"%s %d %d" % (str(d.get("succeeded", False)).lower(), d["header"]["revision"], len(d["responses"]))')"
check_eq txn-json-subresponses "put:16 range:16:v1d" \
    "$(printf '%s' "$j" | jget '"put:%d range:%d:%s" % (d["responses"][0]["Response"]["ResponsePut"]["header"]["revision"], d["responses"][1]["Response"]["ResponseRange"]["header"]["revision"], b(d["responses"][1]["Response"]["ResponseRange"]["kvs"][0]["value"]))')"
j=$(txn_body 'val("k1") = "zzz"' '' 'get k1' | ectl -w json txn)
check_eq txn-json-failed-has-no-succeeded "false 16" \
    "$(printf '%s' "$j" | jget '"%s %d" % (str(d.get("succeeded", False)).lower(), d["header"]["revision"])')"

# Malformed compare lines are rejected by etcdctl itself (exit 3, nothing sent).
out=$(txn_body 'bogus' '' '' | ectl txn 2>&1)
rc=$?
check_eq malformed-compare-rc 3 "$rc"
check_eq malformed-compare-msg "Error: malformed comparison: bogus" "$out"
check_eq final-revision 16 "$(cur_rev)"

stop_server
finish
