#!/usr/bin/env bash
# etcdctl-cluster: endpoint health, endpoint status (simple and -w json), member list
# (simple and -w json), and etcd's member/cluster id derivation:
#   member id  = first 8 bytes (big endian) of sha1(sorted peer URLs joined + token)
#   cluster id = first 8 bytes of sha1(sorted member ids as 8-byte big endian)
# Values below were read from real etcd 3.4.23.  Servers listen on free 127.0.0.1
# ports but advertise fixed peer URLs (never dialled by a one-member cluster), so the
# ids are deterministic.
. "$(dirname "$0")/../lib.sh"

# cluster_case LABEL NAME ADVERTISED-PEER-URL TOKEN MEMBER-ID-HEX CLUSTER-ID-HEX
cluster_case() {
    local label=$1 name=$2 adv=$3 token=$4 mid=$5 cid=$6 j out
    local tokargs=()
    [ -z "$token" ] || tokargs=(--token "$token")
    start_server --name "$name" --advertise-peer "$adv" "${tokargs[@]}" ||
        { fail "$label-start" "server did not start"; return; }

    # endpoint health: simple output goes to stderr in etcdctl 3.4; -w json to stdout.
    out=$(ectl endpoint health 2>&1 >/dev/null)
    check_match "$label-health" "$SRV_ENDPOINT is healthy: successfully committed proposal: took = [0-9.]+(ns|µs|us|ms|s)" "$out"
    j=$(ectl endpoint health -w json)
    check_eq "$label-health-json" "$SRV_ENDPOINT True str" \
        "$(printf '%s' "$j" | jget '"%s %s %s" % (d[0]["endpoint"], d[0]["health"], type(d[0]["took"]).__name__)')"

    # member list
    check_out "$label-member-list" "$mid, started, $name, $adv, $SRV_CLIENT_URL, false" ectl member list
    j=$(ectl -w json member list)
    check_eq "$label-member-list-json" "$(u64 "$mid") $name ['$adv'] ['$SRV_CLIENT_URL'] 1" \
        "$(printf '%s' "$j" | jget '"%d %s %s %s %d" % (d["members"][0]["ID"], d["members"][0]["name"], d["members"][0]["peerURLs"], d["members"][0]["clientURLs"], len(d["members"]))')"
    # etcd's MemberList header carries ids and term but no revision.
    check_eq "$label-member-list-json-header" "$(u64 "$cid") $(u64 "$mid") True no-revision" \
        "$(printf '%s' "$j" | jget '"%d %d %s %s" % (d["header"]["cluster_id"], d["header"]["member_id"], d["header"]["raft_term"] > 0, "revision=%d" % d["header"]["revision"] if "revision" in d["header"] else "no-revision")')"
    check_eq "$label-member-list-json-not-learner" "false" \
        "$(printf '%s' "$j" | jget 'd["members"][0].get("isLearner", False)')"

    # endpoint status -w json: fields present, ids, leader == self, revision == store revision.
    ectl put status-probe x >/dev/null
    local rev
    rev=$(cur_rev)
    j=$(ectl -w json endpoint status)
    check_eq "$label-status-json-keys" \
        "Endpoint,Status Status:dbSize,dbSizeInUse,header,leader,raftAppliedIndex,raftIndex,raftTerm,version header:cluster_id,member_id,raft_term,revision" \
        "$(printf '%s' "$j" | jget '"%s Status:%s header:%s" % (",".join(sorted(d[0])), ",".join(sorted(d[0]["Status"])), ",".join(sorted(d[0]["Status"]["header"])))')"
    check_eq "$label-status-json-values" \
        "$SRV_ENDPOINT $(u64 "$cid") $(u64 "$mid") $(u64 "$mid") $rev True True True True True" \
        "$(printf '%s' "$j" | jget '"%s %d %d %d %d %s %s %s %s %s" % (d[0]["Endpoint"], d[0]["Status"]["header"]["cluster_id"], d[0]["Status"]["header"]["member_id"], d[0]["Status"]["leader"], d[0]["Status"]["header"]["revision"], d[0]["Status"]["raftTerm"] == d[0]["Status"]["header"]["raft_term"] > 0, 0 < d[0]["Status"]["raftAppliedIndex"] <= d[0]["Status"]["raftIndex"], d[0]["Status"]["dbSize"] > 0, d[0]["Status"]["dbSizeInUse"] > 0, len(d[0]["Status"]["version"]) > 0)')"
    # simple form: endpoint, id (%x), version, db size, is leader, is learner, term, index, applied index, errors
    out=$(ectl endpoint status)
    check_match "$label-status-simple" "$SRV_ENDPOINT, $mid, [^,]+, [0-9.]+ [kMG]?B, true, false, [1-9][0-9]*, [1-9][0-9]*, [1-9][0-9]*, " "$out"
    # raft index moves forward with writes.
    local idx1 idx2
    idx1=$(printf '%s' "$j" | jget 'd[0]["Status"]["raftIndex"]')
    ectl put status-probe y >/dev/null
    idx2=$(ectl -w json endpoint status | jget 'd[0]["Status"]["raftIndex"]')
    check_true "$label-status-raft-index-advances" "raftIndex $idx1 -> $idx2" [ "$idx2" -gt "$idx1" ]

    # Every header agrees on the ids.
    j=$(ectl -w json get status-probe)
    check_eq "$label-range-header-ids" "$(u64 "$cid") $(u64 "$mid")" \
        "$(printf '%s' "$j" | jget '"%d %d" % (d["header"]["cluster_id"], d["header"]["member_id"])')"
    stop_server
}

# etcd's defaults: --name default, peer http://localhost:2380, token etcd-cluster.
cluster_case default default http://localhost:2380 "" 8e9e05c52164694d cdf818194e3a8c32
# A named member with its own token (cluster id prints as 15 hex digits: %x, no padding).
cluster_case infra1 it-node http://127.0.0.1:12380 it-token 526a558efb2b287f 436e39897384a26
finish
