#!/usr/bin/env bash
# etcdctl-kv: put / get / del through the real etcdctl, full output compared.
# Covers get (exact, range, --prefix, --from-key, --limit, --rev, --sort-by x --order
# for every target, --keys-only, --print-value-only, --consistency=s, --hex, -w json
# revisions/count/more), put (--prev-kv, --ignore-value, --ignore-lease, --lease),
# del (--prev-kv, --prefix, --from-key, range), and the revision arithmetic of each.
. "$(dirname "$0")/../lib.sh"

start_server || { fail start "server did not start"; exit 1; }

# A fresh store is at revision 1.
check_eq fresh-revision 1 "$(cur_rev)"

check_out put-a "OK" ectl put a 1
check_out put-b "OK" ectl put b 2
check_out put-c "OK" ectl put c 3
check_out put-a-again "OK" ectl put a 11          # rev 5, a version 2
check_out put-d1 "OK" ectl put d/1 x              # 6
check_out put-d2 "OK" ectl put d/2 y              # 7
check_out put-d3 "OK" ectl put d/3 z              # 8
check_out put-spaces "OK" ectl put e "hello world"  # 9
check_eq revision-after-8-puts 9 "$(cur_rev)"

check_out get-exact "$(printf 'a\n11')" ectl get a
check_out get-missing "" ectl get nosuchkey
check_out get-range "$(printf 'a\n11\nb\n2')" ectl get a c
check_out get-prefix "$(printf 'd/1\nx\nd/2\ny\nd/3\nz')" ectl get --prefix d/
check_out get-prefix-all-keys "$(printf 'a\n\nb\n\nc\n\nd/1\n\nd/2\n\nd/3\n\ne\n')" \
    ectl get --prefix "" --keys-only
check_out get-from-key "$(printf 'd/2\ny\nd/3\nz\ne\nhello world')" ectl get --from-key d/2
check_out get-limit "$(printf 'a\n11\nb\n2')" ectl get --prefix "" --limit 2
check_out get-print-value-only "$(printf 'x\ny\nz')" ectl get --prefix d/ --print-value-only
check_out get-keys-only "$(printf 'a\n')" ectl get a --keys-only
check_out get-serializable "$(printf 'a\n11')" ectl get a --consistency=s
check_out get-hex '\x61
\x31\x31' ectl get a --hex
check_out get-rev-old "$(printf 'a\n1')" ectl get a --rev=2
check_out get-rev-prefix "$(printf 'a\n1\nb\n2')" ectl get --prefix "" --rev=3
check_out get-rev-before-create "" ectl get d/1 --rev=5
check_out get-rev-current "$(printf 'a\n11')" ectl get a --rev=9

# -w json: revisions, version, count, more.
j=$(ectl -w json get a)
check_eq json-a-fields "a 11 2 5 2 0 1 9" \
    "$(printf '%s' "$j" | jget '" ".join(str(x) for x in [b(d["kvs"][0]["key"]), b(d["kvs"][0]["value"]), d["kvs"][0]["create_revision"], d["kvs"][0]["mod_revision"], d["kvs"][0]["version"], d["kvs"][0].get("lease", 0), d["count"], d["header"]["revision"]])')"
check_eq json-header-ids-nonzero "true" \
    "$(printf '%s' "$j" | jget 'd["header"]["cluster_id"] > 0 and d["header"]["member_id"] > 0 and d["header"]["raft_term"] > 0')"
j=$(ectl -w json get --prefix "" --limit 2)
check_eq json-limit-more-count "2 true 7" \
    "$(printf '%s' "$j" | jget '"%d %s %d" % (len(d["kvs"]), str(d.get("more", False)).lower(), d["count"])')"
j=$(ectl -w json get --prefix "" --limit 7)
check_eq json-limit-exact-no-more "7 false 7" \
    "$(printf '%s' "$j" | jget '"%d %s %d" % (len(d["kvs"]), str(d.get("more", False)).lower(), d["count"])')"
j=$(ectl -w json get nosuchkey)
check_eq json-missing-no-kvs-no-count "[] 0 false 9" \
    "$(printf '%s' "$j" | jget '"%s %d %s %d" % (d.get("kvs", []), d.get("count", 0), str(d.get("more", False)).lower(), d["header"]["revision"])')"
j=$(ectl -w json get a --rev=2)
check_eq json-rev-read-header-is-current "1 2 2 1 9" \
    "$(printf '%s' "$j" | jget '" ".join(str(x) for x in [b(d["kvs"][0]["value"]), d["kvs"][0]["create_revision"], d["kvs"][0]["mod_revision"], d["kvs"][0]["version"], d["header"]["revision"]])')"
j=$(ectl -w json get a --keys-only)
check_eq json-keys-only-has-revisions "a 2 5 2 novalue" \
    "$(printf '%s' "$j" | jget '" ".join(str(x) for x in [b(d["kvs"][0]["key"]), d["kvs"][0]["create_revision"], d["kvs"][0]["mod_revision"], d["kvs"][0]["version"], "novalue" if not d["kvs"][0].get("value") else "value"])')"

# Sorting: a dataset under s/ whose every sort target gives a different, tie-free order.
#   creates: s/c(10) s/a(11) s/d(12) s/b(13)
#   updates: s/b(14) s/a(15) s/a(16) s/b(17) s/a(18) s/d(19)
#   => version c1 d2 b3 a4; mod c10 b17 a18 d19; value a=3 b=1 c=4 d=2
for kv in "s/c 4" "s/a v" "s/d v" "s/b v" "s/b v" "s/a v" "s/a v" "s/b 1" "s/a 3" "s/d 2"; do
    # shellcheck disable=SC2086
    ectl put $kv >/dev/null || fail sort-setup "put $kv failed"
done
check_eq sort-setup-revision 19 "$(cur_rev)"
sortcase() {   # target order expected-keys
    local out
    out=$(ectl get --prefix s/ --keys-only --sort-by="$1" ${2:+--order=$2} | sed '/^$/d' | tr '\n' ' ')
    check_eq "sort-$1-${2:-default}" "$3" "${out% }"
}
sortcase KEY ASCEND "s/a s/b s/c s/d"
sortcase KEY DESCEND "s/d s/c s/b s/a"
sortcase VERSION ASCEND "s/c s/d s/b s/a"
sortcase VERSION DESCEND "s/a s/b s/d s/c"
sortcase VERSION "" "s/c s/d s/b s/a"
sortcase CREATE ASCEND "s/c s/a s/d s/b"
sortcase CREATE DESCEND "s/b s/d s/a s/c"
sortcase MODIFY ASCEND "s/c s/b s/a s/d"
sortcase MODIFY DESCEND "s/d s/a s/b s/c"
sortcase VALUE ASCEND "s/b s/d s/a s/c"
sortcase VALUE DESCEND "s/c s/a s/d s/b"
check_out get-order-descend-only "$(printf 's/d\n2\ns/c\n4\ns/b\n1\ns/a\n3')" ectl get --prefix s/ --order=DESCEND
# Sort happens before limit: top two by value, descending.
check_out sort-then-limit "$(printf 's/c\n4\ns/a\n3')" ectl get --prefix s/ --sort-by=VALUE --order=DESCEND --limit 2
j=$(ectl -w json get --prefix s/ --sort-by=VALUE --order=DESCEND --limit 2)
check_eq sort-then-limit-json "2 true 4" \
    "$(printf '%s' "$j" | jget '"%d %s %d" % (len(d["kvs"]), str(d.get("more", False)).lower(), d["count"])')"
j=$(ectl -w json get s/a)
check_eq sort-data-s/a "3 11 18 4" \
    "$(printf '%s' "$j" | jget '" ".join(str(x) for x in [b(d["kvs"][0]["value"]), d["kvs"][0]["create_revision"], d["kvs"][0]["mod_revision"], d["kvs"][0]["version"]])')"

# put --prev-kv / --ignore-value / --ignore-lease / --lease
check_out put-prev-kv "$(printf 'OK\na\n11')" ectl put a 111 --prev-kv          # 20
check_out put-prev-kv-new-key "OK" ectl put newkey v --prev-kv                  # 21
check_out put-ignore-value "OK" ectl put a --ignore-value                       # 22
check_out put-ignore-value-kept "$(printf 'a\n111')" ectl get a
j=$(ectl -w json get a)
check_eq put-ignore-value-revs "111 22 4" \
    "$(printf '%s' "$j" | jget '"%s %d %d" % (b(d["kvs"][0]["value"]), d["kvs"][0]["mod_revision"], d["kvs"][0]["version"])')"

grant=$(ectl lease grant 600)
check_match lease-grant-output 'lease [0-9a-f]{16} granted with TTL\(600s\)' "$grant"
lid=$(printf '%s' "$grant" | awk '{print $2}')
check_out put-with-lease "OK" ectl put leased v1 --lease="$lid"                 # 23
j=$(ectl -w json get leased)
check_eq put-with-lease-json "$(u64 "$lid") 23" \
    "$(printf '%s' "$j" | jget '"%d %d" % (d["kvs"][0]["lease"], d["kvs"][0]["mod_revision"])')"
check_out put-ignore-lease "OK" ectl put leased v2 --ignore-lease               # 24
j=$(ectl -w json get leased)
check_eq put-ignore-lease-kept "v2 $(u64 "$lid") 24 2" \
    "$(printf '%s' "$j" | jget '"%s %d %d %d" % (b(d["kvs"][0]["value"]), d["kvs"][0]["lease"], d["kvs"][0]["mod_revision"], d["kvs"][0]["version"])')"
check_out put-lease-dropped "OK" ectl put leased v3                             # 25
j=$(ectl -w json get leased)
check_eq put-without-lease-detaches "0" "$(printf '%s' "$j" | jget 'd["kvs"][0].get("lease", 0)')"
check_out put-reattach "OK" ectl put leased v4 --lease="$lid"                  # 26
check_match lease-revoke-output "lease $lid revoked" "$(ectl lease revoke "$lid")"   # 27 (deletes leased)
check_out lease-revoke-deleted-key "" ectl get leased
check_eq lease-revoke-one-revision 27 "$(cur_rev)"

# del
check_out del-missing "0" ectl del nosuchkey
check_eq del-missing-no-revision 27 "$(cur_rev)"
check_out del-one "1" ectl del newkey                                          # 28
check_out del-prev-kv "$(printf '1\nb\n2')" ectl del b --prev-kv                # 29
check_out del-prefix "3" ectl del --prefix d/                                   # 30
check_out del-prefix-gone "" ectl get --prefix d/
check_out del-range-prev-kv "$(printf '2\ns/a\n3\ns/b\n1')" ectl del s/a s/c --prev-kv   # 31
check_out del-from-key-prev-kv "$(printf '2\ns/c\n4\ns/d\n2')" ectl del --from-key s/c --prev-kv  # 32
check_out remaining-keys "$(printf 'a\n111\nc\n3\ne\nhello world')" ectl get --prefix ""
check_eq final-revision 32 "$(cur_rev)"
# History is still there below the deletes.
check_out get-deleted-at-old-rev "$(printf 'd/2\ny')" ectl get d/2 --rev=29
# Re-creating a deleted key restarts version at 1 with a new create_revision.
check_out recreate "OK" ectl put b again                                        # 33
j=$(ectl -w json get b)
check_eq recreate-version-reset "33 33 1" \
    "$(printf '%s' "$j" | jget '"%d %d %d" % (d["kvs"][0]["create_revision"], d["kvs"][0]["mod_revision"], d["kvs"][0]["version"])')"

stop_server
finish
