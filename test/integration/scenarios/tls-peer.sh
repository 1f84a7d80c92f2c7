#!/usr/bin/env bash
# tls-peer: TLS between members, with etcd's flags (a throw-away PKI from
# tls_make_certs; clients stay on http://; everything on 127.0.0.1):
#   certs       a 3-member cluster on https:// peer URLs with --peer-cert-file,
#               --peer-key-file, --peer-trusted-ca-file, --peer-client-cert-auth:
#               one leader, writes through any member replicate to every member,
#               member list shows the https:// peer URLs, each member logs its
#               "peerTLS: ..." line; a member added with `member add` joins over
#               TLS (it fetches the cluster from the others) and catches up; a
#               member killed and restarted catches up;
#   allowed-cn  --peer-cert-allowed-cn: two members whose certificates carry the
#               allowed CN form the cluster; a third whose certificate has
#               another CN is refused (a rejection is logged), never sees the
#               cluster's writes and never becomes healthy;
#   auto-tls    --peer-auto-tls: self-signed peer certificates in
#               <data-dir>/fixtures/peer (SAN 127.0.0.1), a 3-member cluster
#               that replicates writes.
. "$(dirname "$0")/../lib.sh"

TLS_DIR=$_IT_TMP/pki
if ! tls_make_certs "$TLS_DIR"; then
    fail pki "openssl could not make the test certificates" "$(tail -n 5 "$TLS_DIR/openssl.log")"
    finish
    exit 1
fi
pass pki
CA=$TLS_DIR/ca.crt
PEER=(--peer-cert-file "$TLS_DIR/server.crt" --peer-key-file "$TLS_DIR/server.key"
    --peer-trusted-ca-file "$CA" --peer-client-cert-auth)
CL_PSCHEME=https

# replicated NAME KEY VALUE K...: a serializable get of KEY on each member K
# returns VALUE (bounded wait: followers apply a moment after the leader).
replicated() {
    local name=$1 key=$2 want=$3 k got i
    shift 3
    for k in "$@"; do
        for i in $(seq 1 40); do
            got=$(cl_ectl "$k" get "$key" --print-value-only --consistency=s 2>/dev/null)
            [ "$got" = "$want" ] && break
            sleep 0.25
        done
        check_eq "$name-m$k" "$want" "$got"
    done
}

# --- certs: peer TLS with client certificates
if start_cluster 3 "${PEER[@]}"; then
    pass certs-start
    check_out certs-put OK cl_ectl 1 put tls/peer one
    replicated certs-replicated tls/peer one 1 2 3
    check_out certs-put-via-m3 OK cl_ectl 3 put tls/peer3 three
    check_out certs-linearizable-get-m2 three cl_ectl 2 get tls/peer3 --print-value-only
    check_eq certs-member-list-peer-urls "$(printf '%s\n' "${CL_PURL[1]}" "${CL_PURL[2]}" "${CL_PURL[3]}" | sort | paste -sd' ')" \
        "$(cl_ectl 1 -w json member list | jget '" ".join(sorted(u for m in d["members"] for u in m["peerURLs"]))')"
    check_match certs-peer-urls-https 'https://127\.0\.0\.1:[0-9]+' "${CL_PURL[1]}"
    for k in 1 2 3; do
        check_true "certs-peertls-logged-m$k" "no peerTLS line in ${CL_LOG[$k]}" grep -Fq \
            "peerTLS: cert = $TLS_DIR/server.crt, key = $TLS_DIR/server.key, trusted-ca = $CA, client-cert-auth = true, crl-file = " \
            "${CL_LOG[$k]}"
    done
    # A fourth member joins over TLS (it fetches the member set from the others).
    if add_member; then
        k=$ADD_INDEX
        if wait_member_up "$k"; then
            pass certs-member-add-joins
            replicated certs-member-add-caught-up tls/peer3 three "$k"
            check_out certs-member-add-put OK cl_ectl "$k" put tls/peer4 four
            replicated certs-member-add-replicates tls/peer4 four 1 2 3
        else
            fail certs-member-add-joins "the added member did not come up"
            cluster_log_tails
        fi
    else
        fail certs-member-add-joins "member add failed" "$(_short "$ADD_OUT")"
    fi
    # A follower restarted over TLS catches up with what it missed.
    f=$(follower_index)
    kill_member "$f" TERM
    check_out certs-put-while-down OK cl_ectl_all put tls/missed m
    if restart_member "$f"; then
        replicated certs-restart-caught-up tls/missed m "$f"
    else
        fail certs-restart-caught-up "member $f did not restart"
    fi
    stop_cluster
else
    fail certs-start "3-member peer-TLS cluster did not start"
fi

# --- allowed-cn: a member with another CN is refused by the others
CL_TOKEN=it-cluster-cn-$$
CL_N=3
CL_GEN=$((CL_GEN + 1))
ic=
for k in 1 2 3; do
    _cl_alloc "$k"
    ic=${ic:+$ic,}m$k=${CL_PURL[$k]}
done
for k in 1 2 3; do
    CL_ICLUSTER[$k]=$ic
    CL_STATE[$k]=new
done
CL_EXTRA=("${PEER[@]}" --peer-cert-allowed-cn example.com)
_cl_launch 1
_cl_launch 2
CL_EXTRA=(--peer-cert-file "$TLS_DIR/peer-other.crt" --peer-key-file "$TLS_DIR/peer-other.key"
    --peer-trusted-ca-file "$CA" --peer-client-cert-auth --peer-cert-allowed-cn other.example.com)
_cl_launch 3
if wait_member_up 1 && wait_member_up 2 && wait_leader 60 1 2 >/dev/null; then
    pass allowed-cn-two-members-up
    check_out allowed-cn-put OK cl_ectl 1 put tls/cn yes
    replicated allowed-cn-replicated tls/cn yes 1 2
    sleep 2
    check_eq allowed-cn-refused-member-has-nothing "" \
        "$(cl_ectl 3 --command-timeout=3s get tls/cn --print-value-only --consistency=s 2>/dev/null)"
    check_true allowed-cn-refused-member-unhealthy "m3 is healthy" bash -c \
        "! etcdctl --endpoints=${CL_EP[3]} --dial-timeout=1s --command-timeout=2s endpoint health >/dev/null 2>&1"
    check_true allowed-cn-refused-member-runs "m3 exited" kill -0 "${CL_PID[3]}"
    check_true allowed-cn-rejection-logged "no rejection in m1/m2 logs" grep -Eq \
        'rejected connection .*(remote error: tls: bad certificate|client certificate authentication failed)' \
        "${CL_LOG[1]}" "${CL_LOG[2]}"
    # The refusal is a TLS alert in the handshake: the refused member says so
    # in Go's words (what etcd's e2e TestEtcdPeerCNAuth waits for).
    check_true allowed-cn-refused-member-sees-alert "no bad certificate alert in m3's log" \
        grep -Fq 'remote error: tls: bad certificate' "${CL_LOG[3]}"
else
    fail allowed-cn-two-members-up "m1 and m2 did not form a cluster"
    cluster_log_tails
fi
stop_cluster
CL_EXTRA=()

# --- auto-tls: self-signed peer certificates
if start_cluster 3 --peer-auto-tls; then
    pass auto-tls-start
    check_out auto-tls-put OK cl_ectl 2 put tls/auto peer
    replicated auto-tls-replicated tls/auto peer 1 2 3
    for k in 1 2 3; do
        cert=${CL_DATA[$k]}/fixtures/peer/cert.pem
        check_eq "auto-tls-cert-m$k" "IP Address:127.0.0.1" \
            "$(openssl x509 -in "$cert" -noout -ext subjectAltName 2>/dev/null | grep -o 'IP Address:127.0.0.1')"
    done
    check_true auto-tls-peertls-logged "no peerTLS line" grep -Fq \
        "peerTLS: cert = ${CL_DATA[1]}/fixtures/peer/cert.pem, key = ${CL_DATA[1]}/fixtures/peer/key.pem, trusted-ca = , client-cert-auth = false, crl-file = " \
        "${CL_LOG[1]}"
    stop_cluster
else
    fail auto-tls-start "3-member peer auto-TLS cluster did not start"
fi

finish
