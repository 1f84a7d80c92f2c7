#!/usr/bin/env bash
# tls-client: TLS on the client port, with etcd's flags and etcd's behaviour
# (a throw-away PKI from tls_make_certs; everything on 127.0.0.1):
#   mtls        --cert-file/--key-file/--trusted-ca-file/--client-cert-auth/
#               --client-crl-file: etcdctl with a client certificate works
#               (put, get, txn, watch, lease); refused: no client certificate,
#               a certificate from another CA, a revoked one (CRL), plaintext
#               to the TLS port; the revocation is logged; a Go clientv3
#               program over mutual TLS (tlscheck: put, get, watch, TLS >= 1.2
#               with ALPN h2, refusals);
#   ca-only     --trusted-ca-file alone also requires client certificates (etcd's
#               RequireAndVerifyClientCert); server-only TLS (no CA) takes
#               clients without certificates;
#   allowed-hostname  --client-cert-allowed-hostname: a client certificate
#               whose SANs match works, one without SANs is refused;
#   auto-tls    --auto-tls: a self-signed ECDSA P-521 certificate in
#               <data-dir>/fixtures/client (key mode 0600, SAN of the listen
#               host), etcdctl --insecure-skip-tls-verify works, a client that
#               verifies against the test CA is refused, a restart keeps it;
#   mixed       http:// and https:// listen URLs on two ports serve both, and the
#               warnings etcd logs for http:// URLs with certificates and
#               --client-cert-auth;
#   unix        unix:// and unixs:// client URLs (sockets named host:port in the
#               server's working directory, as etcd);
#   env         the TLS flags as ETCD_* variables;
#   ciphers     --cipher-suites restricts TLS 1.2 (openssl s_client); unknown
#               names are refused with etcd's message;
#   bad-start   a missing cert file, a key that does not match, a file that is
#               not PEM, https without a cert: exit non-zero; metastore also
#               refuses an expired certificate (etcd serves it) and names flag
#               and file, and leaves no data dir behind.
. "$(dirname "$0")/../lib.sh"

TLS_DIR=$_IT_TMP/pki
if ! tls_make_certs "$TLS_DIR"; then
    fail pki "openssl could not make the test certificates" "$(tail -n 5 "$TLS_DIR/openssl.log")"
    finish
    exit 1
fi
pass pki
CA=$TLS_DIR/ca.crt
MTLS=(--cacert="$CA" --cert="$TLS_DIR/client.crt" --key="$TLS_DIR/client.key")

# refused NAME URL [etcdctl args...]: a put through URL must fail as etcdctl
# reports a connection that never comes up ("Error: context deadline exceeded").
refused() {
    local name=$1 url=$2 out rc last
    shift 2
    out=$(etcdctl --endpoints="$url" --dial-timeout=2s --command-timeout=3s "$@" put tls/refused x 2>&1)
    rc=$?
    last=$(printf '%s\n' "$out" | tail -n 1)
    if [ $rc -ne 0 ] && [ "$last" = "Error: context deadline exceeded" ]; then
        pass "$name"
    else
        fail "$name" "expected the connection to be refused" "exit $rc: $(_short "$out")"
    fi
}

# log_says NAME REGEX: the server log has a line matching REGEX (bounded wait:
# the server logs a refused handshake asynchronously).
log_says() {
    local i
    for i in $(seq 1 20); do
        if grep -Eq -- "$2" "$SRV_LOG"; then pass "$1"; return 0; fi
        sleep 0.25
    done
    fail "$1" "no log line matching /$2/" "log tail: $(_short "$(tail -n 8 "$SRV_LOG")")"
}

# --- mtls: certificates, client-cert-auth, CRL
if start_tls_server -- --cert-file "$TLS_DIR/server.crt" --key-file "$TLS_DIR/server.key" \
        --trusted-ca-file "$CA" --client-cert-auth --client-crl-file "$TLS_DIR/crl.pem"; then
    pass mtls-start
    EP=$SRV_ENDPOINT
    check_out mtls-put OK tls_ectl "$EP" put tls/k v1
    check_out mtls-get "tls/k
v1" tls_ectl "$EP" get tls/k
    printf 'value("tls/k") = "v1"\n\nput tls/k v2\n\n\n' >"$_IT_TMP/txn.in"
    check_out mtls-txn "SUCCESS

OK" bash -c "etcdctl --endpoints=https://$EP ${MTLS[*]} --command-timeout=10s txn <'$_IT_TMP/txn.in'"
    # A watch from an old revision replays the event at once; stopped after 3 s.
    check_eq mtls-watch-rev "PUT
tls/k
v2" "$(timeout 3 etcdctl --endpoints="https://$EP" "${MTLS[@]}" watch tls/k --rev=3 2>/dev/null)"
    lease=$(tls_ectl "$EP" lease grant 60 | awk '{print $2}')
    check_match mtls-lease-grant '[0-9a-f]+' "$lease"
    check_out mtls-lease-put OK tls_ectl "$EP" put tls/leased x --lease="$lease"
    check_out mtls-endpoint-health-exit 0 bash -c \
        "etcdctl --endpoints=https://$EP ${MTLS[*]} endpoint health >/dev/null 2>&1; echo \$?"
    refused mtls-no-client-cert "https://$EP" --cacert="$CA"
    refused mtls-wrong-ca-client-cert "https://$EP" --cacert="$CA" \
        --cert="$TLS_DIR/wrong-client.crt" --key="$TLS_DIR/wrong-client.key"
    refused mtls-revoked-client-cert "https://$EP" --cacert="$CA" \
        --cert="$TLS_DIR/revoked.crt" --key="$TLS_DIR/revoked.key"
    log_says mtls-revoked-logged 'rejected connection .*transport: certificate serial 1003 revoked'
    refused mtls-plaintext-to-tls-port "http://$EP"
    refused mtls-server-unknown-to-client "https://$EP" --cacert="$TLS_DIR/wrongca.crt" \
        --cert="$TLS_DIR/client.crt" --key="$TLS_DIR/client.key"
    check_out mtls-unchanged "v2" tls_ectl "$EP" get tls/k --print-value-only
    # The Go SDK over mutual TLS.
    if tc=$(build_go_prog tlscheck); then
        out=$("$tc" -endpoint "$EP" -cacert "$CA" -cert "$TLS_DIR/client.crt" -key "$TLS_DIR/client.key" 2>&1)
        printf '%s\n' "$out" | grep -E '^(ok|not ok) ' | sed "s|^ok |ok $IT_SCENARIO/|; s|^not ok |not ok $IT_SCENARIO/|"
        n_ok=$(printf '%s\n' "$out" | grep -c '^ok ')
        n_bad=$(printf '%s\n' "$out" | grep -c '^not ok ')
        IT_CHECKS=$((IT_CHECKS + n_ok + n_bad))
        IT_FAILS=$((IT_FAILS + n_bad))
        [ "$n_ok" -gt 0 ] || fail tlscheck-ran "tlscheck printed no checks" "$(_short "$out")"
    else
        fail tlscheck-build "go build failed"
    fi
    stop_server
else
    fail mtls-start "server with client TLS did not start"
fi

# --- ca-only: a trusted CA alone requires certificates; no CA takes any client
if start_tls_server -- --cert-file "$TLS_DIR/server.crt" --key-file "$TLS_DIR/server.key" \
        --trusted-ca-file "$CA"; then
    pass ca-only-start
    check_out ca-only-with-cert OK tls_ectl "$SRV_ENDPOINT" put tls/ca-only yes
    refused ca-only-no-client-cert "https://$SRV_ENDPOINT" --cacert="$CA"
    stop_server
else
    fail ca-only-start "server did not start"
fi
if start_tls_server --health --cacert="$CA" -- --cert-file "$TLS_DIR/server.crt" \
        --key-file "$TLS_DIR/server.key"; then
    pass server-tls-only-start
    check_out server-tls-only-no-client-cert OK \
        etcdctl --endpoints="https://$SRV_ENDPOINT" --cacert="$CA" --command-timeout=10s put tls/s v
    check_out server-tls-only-with-client-cert "v" tls_ectl "$SRV_ENDPOINT" get tls/s --print-value-only
    refused server-tls-only-untrusted "https://$SRV_ENDPOINT" --cacert="$TLS_DIR/wrongca.crt"
    stop_server
else
    fail server-tls-only-start "server did not start"
fi

# --- allowed-hostname: --client-cert-allowed-hostname checks the client
# certificate's SANs (not its CN)
if start_tls_server --health --cacert="$CA" --health --cert="$TLS_DIR/server.crt" \
        --health --key="$TLS_DIR/server.key" -- --cert-file "$TLS_DIR/server.crt" \
        --key-file "$TLS_DIR/server.key" --trusted-ca-file "$CA" --client-cert-auth \
        --client-cert-allowed-hostname localhost; then
    pass allowed-hostname-start
    check_out allowed-hostname-san-matches OK etcdctl --endpoints="https://$SRV_ENDPOINT" \
        --cacert="$CA" --cert="$TLS_DIR/server.crt" --key="$TLS_DIR/server.key" \
        --command-timeout=10s put tls/h h
    refused allowed-hostname-no-san "https://$SRV_ENDPOINT" "${MTLS[@]}"
    log_says allowed-hostname-logged 'client certificate authentication failed'
    stop_server
else
    fail allowed-hostname-start "server with --client-cert-allowed-hostname did not start"
fi

# --- auto-tls: etcd's self-signed certificate
SKIP=(--insecure-transport=false --insecure-skip-tls-verify)
if start_tls_server --health --insecure-transport=false --health --insecure-skip-tls-verify -- --auto-tls; then
    pass auto-tls-start
    EP=$SRV_ENDPOINT
    check_out auto-tls-put OK etcdctl --endpoints="https://$EP" "${SKIP[@]}" --command-timeout=10s put tls/auto a
    check_out auto-tls-get a etcdctl --endpoints="https://$EP" "${SKIP[@]}" --command-timeout=10s \
        get tls/auto --print-value-only
    refused auto-tls-verifying-client "https://$EP" --cacert="$CA"
    fx=$SRV_DATA/fixtures/client
    check_true auto-tls-files "no $fx/cert.pem and key.pem" [ -s "$fx/cert.pem" -a -s "$fx/key.pem" ]
    check_eq auto-tls-key-mode 600 "$(stat -c %a "$fx/key.pem" 2>/dev/null)"
    check_eq auto-tls-dir-mode 700 "$(stat -c %a "$fx" 2>/dev/null)"
    check_match auto-tls-key-pem '-----BEGIN EC PRIVATE KEY-----' "$(head -n 1 "$fx/key.pem")"
    txt=$(openssl x509 -in "$fx/cert.pem" -noout -text 2>&1)
    check_eq auto-tls-cert-fields "secp521r1 O = etcd IP Address:127.0.0.1 TLS Web Server Authentication CA:FALSE" \
        "$(printf '%s\n' "$txt" | grep -o 'secp521r1' | head -n 1) $(openssl x509 -in "$fx/cert.pem" -noout -subject | sed 's/^subject=//') $(printf '%s\n' "$txt" | grep -o 'IP Address:127.0.0.1') $(printf '%s\n' "$txt" | grep -o 'TLS Web Server Authentication') $(printf '%s\n' "$txt" | grep -o 'CA:FALSE')"
    days=$(python3 -c '
import subprocess, sys, datetime
def d(flag):
    s = subprocess.check_output(["openssl", "x509", "-in", sys.argv[1], "-noout", flag], text=True).split("=", 1)[1].strip()
    return datetime.datetime.strptime(s, "%b %d %H:%M:%S %Y GMT")
print((d("-enddate") - d("-startdate")).days)' "$fx/cert.pem" 2>&1)
    check_eq auto-tls-valid-days 365 "$days"
    sum=$(sha256sum "$fx/cert.pem" | cut -d' ' -f1)
    stop_server
    if restart_tls_server; then
        check_eq auto-tls-restart-keeps-cert "$sum" "$(sha256sum "$fx/cert.pem" | cut -d' ' -f1)"
        check_out auto-tls-restart-get a etcdctl --endpoints="https://$EP" "${SKIP[@]}" \
            --command-timeout=10s get tls/auto --print-value-only
    else
        fail auto-tls-restart-keeps-cert "server did not restart"
    fi
    stop_server
    # Certificates given win over --auto-tls (etcd logs that it ignores it).
    if start_tls_server -- --auto-tls --cert-file "$TLS_DIR/server.crt" --key-file "$TLS_DIR/server.key" \
            --trusted-ca-file "$CA"; then
        check_out auto-tls-ignored-with-certs OK tls_ectl "$SRV_ENDPOINT" put tls/k2 v
        log_says auto-tls-ignored-logged 'ignoring client auto TLS since certs given'
        check_true auto-tls-ignored-no-fixtures "fixtures written" [ ! -e "$SRV_DATA/fixtures/client/cert.pem" ]
        stop_server
    else
        fail auto-tls-ignored-with-certs "server did not start"
    fi
else
    fail auto-tls-start "auto-TLS server did not start"
fi

# --- mixed: http:// and https:// on two ports, and etcd's warnings
# Both listen URLs on their own ports (one port for both is the next section).
hport=
mixed_start() {
    local c p attempt
    for attempt in 1 2 3; do
        read -r c p hport < <(free_ports 3)
        SRV_NAME=mixed
        SRV_DATA=$_IT_TMP/mixed-$attempt.data
        SRV_LOG=$SRV_DATA.log
        SRV_ENDPOINT=127.0.0.1:$c
        SRV_HEALTH=()
        "$IT_SERVER" --name mixed --data-dir "$SRV_DATA" \
            --listen-client-urls "https://127.0.0.1:$c,http://127.0.0.1:$hport" \
            --advertise-client-urls "https://127.0.0.1:$c" \
            --listen-peer-urls "http://127.0.0.1:$p" --initial-advertise-peer-urls "http://127.0.0.1:$p" \
            --initial-cluster "mixed=http://127.0.0.1:$p" \
            --cert-file "$TLS_DIR/server.crt" --key-file "$TLS_DIR/server.key" \
            --trusted-ca-file "$CA" --client-cert-auth >>"$SRV_LOG" 2>&1 &
        SRV_PID=$!
        track_pid "$SRV_PID"
        wait_tls_healthy "$SRV_PID" "$SRV_ENDPOINT" && return 0
        stop_server
    done
    return 1
}
if mixed_start; then
    pass mixed-start
    check_out mixed-https-put OK tls_ectl "$SRV_ENDPOINT" put tls/mixed both
    check_out mixed-http-get both etcdctl --endpoints="http://127.0.0.1:$hport" --command-timeout=10s \
        get tls/mixed --print-value-only
    refused mixed-https-needs-cert "https://$SRV_ENDPOINT" --cacert="$CA"
    log_says mixed-warn-certs "The scheme of client url http://127.0.0.1:$hport is HTTP while peer key/cert files are presented. Ignored key/cert files."
    log_says mixed-warn-client-cert-auth "The scheme of client url http://127.0.0.1:$hport is HTTP while client cert auth \(--client-cert-auth\) is enabled. Ignored client cert auth for this url."
    stop_server
else
    fail mixed-start "server with http and https client URLs did not start"
fi

# --- one port: http:// and https:// on the same address, as etcd serves them
# (a connection's first byte tells TLS from plaintext): gRPC and HTTP both ways.
oneport_start() {
    local c p attempt
    for attempt in 1 2 3; do
        read -r c p < <(free_ports 2)
        SRV_NAME=oneport
        SRV_DATA=$_IT_TMP/oneport-$attempt.data
        SRV_LOG=$SRV_DATA.log
        SRV_ENDPOINT=127.0.0.1:$c
        SRV_HEALTH=()
        "$IT_SERVER" --name oneport --data-dir "$SRV_DATA" \
            --listen-client-urls "http://127.0.0.1:$c,https://127.0.0.1:$c" \
            --advertise-client-urls "https://127.0.0.1:$c" \
            --listen-peer-urls "http://127.0.0.1:$p" --initial-advertise-peer-urls "http://127.0.0.1:$p" \
            --initial-cluster "oneport=http://127.0.0.1:$p" \
            --cert-file "$TLS_DIR/server.crt" --key-file "$TLS_DIR/server.key" >>"$SRV_LOG" 2>&1 &
        SRV_PID=$!
        track_pid "$SRV_PID"
        wait_tls_healthy "$SRV_PID" "$SRV_ENDPOINT" && return 0
        stop_server
    done
    return 1
}
if oneport_start; then
    pass oneport-start
    check_out oneport-https-put OK tls_ectl "$SRV_ENDPOINT" put tls/oneport both
    # plaintext gRPC on the shared port: metastore serves it; Debian's etcd 3.4
    # does not (its insecure gRPC never gets a connection there: etcdctl times out)
    if [ "$IT_TARGET" = metastore ]; then
        check_out oneport-http-get both etcdctl --endpoints="http://$SRV_ENDPOINT" --command-timeout=10s \
            get tls/oneport --print-value-only
    fi
    check_out oneport-http-health '{"health":"true"}' curl -sS --max-time 10 "http://$SRV_ENDPOINT/health"
    check_out oneport-https-health '{"health":"true"}' curl -sS --max-time 10 --cacert "$CA" \
        "https://$SRV_ENDPOINT/health"
    # TLS still checks the server: without the CA the handshake is refused
    refused oneport-https-needs-ca "https://$SRV_ENDPOINT"
    stop_server
else
    fail oneport-start "server with http and https client URLs on one port did not start"
fi

# --- unix: unix:// and unixs:// client URLs (paths relative to the working dir)
udir=$_IT_TMP/unix
mkdir -p "$udir"
read -r u1 u2 up < <(free_ports 3)
(cd "$udir" && exec "$IT_SERVER" --name unix --data-dir "$udir/data" \
    --listen-client-urls "unix://localhost:$u1,unixs://localhost:$u2" \
    --advertise-client-urls "unix://localhost:$u1" \
    --listen-peer-urls "http://127.0.0.1:$up" --initial-advertise-peer-urls "http://127.0.0.1:$up" \
    --initial-cluster "unix=http://127.0.0.1:$up" \
    --cert-file "$TLS_DIR/server.crt" --key-file "$TLS_DIR/server.key" >"$udir/server.log" 2>&1) &
upid=$!
track_pid "$upid"
up_ok=0
for i in $(seq 1 60); do
    kill -0 "$upid" 2>/dev/null || break
    if (cd "$udir" && etcdctl --endpoints="unix://localhost:$u1" --dial-timeout=1s --command-timeout=2s \
            endpoint health >/dev/null 2>&1); then
        up_ok=1
        break
    fi
    sleep 0.5
done
if [ $up_ok = 1 ]; then
    pass unix-start
    check_true unix-socket-file "no socket $udir/localhost:$u1" [ -S "$udir/localhost:$u1" ]
    check_true unixs-socket-file "no socket $udir/localhost:$u2" [ -S "$udir/localhost:$u2" ]
    check_out unix-put OK bash -c "cd '$udir' && etcdctl --endpoints=unix://localhost:$u1 --command-timeout=10s put tls/unix u"
    check_out unixs-get u bash -c "cd '$udir' && etcdctl --endpoints=unixs://localhost:$u2 --cacert='$CA' --command-timeout=10s get tls/unix --print-value-only"
    log_says_unix() { grep -Eq -- "$1" "$udir/server.log"; }
    check_true unix-warn-certs "no warning for the unix:// URL" log_says_unix \
        "The scheme of client url unix://localhost:$u1 is HTTP while peer key/cert files are presented"
else
    fail unix-start "server on unix sockets did not start" "$(_short "$(tail -n 5 "$udir/server.log")")"
fi
_it_stop_pid "$upid" TERM
untrack_pid "$upid"

# --- env: the TLS flags as ETCD_* variables
if ETCD_CERT_FILE=$TLS_DIR/server.crt ETCD_KEY_FILE=$TLS_DIR/server.key ETCD_TRUSTED_CA_FILE=$CA \
        ETCD_CLIENT_CERT_AUTH=true start_tls_server; then
    pass env-start
    check_out env-put OK tls_ectl "$SRV_ENDPOINT" put tls/env e
    refused env-no-client-cert "https://$SRV_ENDPOINT" --cacert="$CA"
    stop_server
else
    fail env-start "server with TLS from ETCD_* did not start"
fi

# --- ciphers: --cipher-suites restricts TLS 1.2 (the certificates are ECDSA)
# s_client_cipher CIPHER: the cipher a TLS 1.2 handshake offering only CIPHER
# (and ALPN h2, as a gRPC client) agreed on, as s_client prints it ("(NONE)"
# when the server refused). Not its exit status: the server may close the
# connection first.
s_client_cipher() {
    openssl s_client -connect "$SRV_ENDPOINT" -tls1_2 -cipher "$1" -alpn h2 -CAfile "$CA" \
        </dev/null 2>/dev/null | sed -n 's/^New, [^,]*, Cipher is //p' | head -n 1
}
if start_tls_server --health --cacert="$CA" -- --cert-file "$TLS_DIR/server.crt" \
        --key-file "$TLS_DIR/server.key" --cipher-suites TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256; then
    pass ciphers-start
    check_eq ciphers-listed-accepted ECDHE-ECDSA-AES128-GCM-SHA256 \
        "$(s_client_cipher ECDHE-ECDSA-AES128-GCM-SHA256)"
    check_eq ciphers-other-refused "(NONE)" "$(s_client_cipher ECDHE-ECDSA-AES256-GCM-SHA384)"
    check_out ciphers-etcdctl OK etcdctl --endpoints="https://$SRV_ENDPOINT" --cacert="$CA" \
        --command-timeout=10s put tls/c c
    stop_server
else
    fail ciphers-start "server with --cipher-suites did not start"
fi

# --- bad-start: refused at start
# bad_start NAME [flags...]: a server with an https client URL and FLAGS must exit
# non-zero within 20 s; its output is left in $_IT_TMP/NAME.out, its data dir
# path in BAD_DATA.
BAD_DATA=
bad_start() {
    local name=$1 c p pid i rc
    shift
    read -r c p < <(free_ports 2)
    BAD_DATA=$_IT_TMP/$name.data
    "$IT_SERVER" --name bad --data-dir "$BAD_DATA" \
        --listen-client-urls "https://127.0.0.1:$c" --advertise-client-urls "https://127.0.0.1:$c" \
        --listen-peer-urls "http://127.0.0.1:$p" --initial-advertise-peer-urls "http://127.0.0.1:$p" \
        --initial-cluster "bad=http://127.0.0.1:$p" "$@" >"$_IT_TMP/$name.out" 2>&1 &
    pid=$!
    track_pid "$pid"
    for i in $(seq 1 100); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.2
    done
    if kill -0 "$pid" 2>/dev/null; then
        _it_stop_pid "$pid" KILL
        untrack_pid "$pid"
        fail "$name-refused" "server still running 20 s after start" \
            "output: $(_short "$(tail -n 5 "$_IT_TMP/$name.out")")"
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
# says NAME REGEX [all]: the output of case NAME has a line matching REGEX
# (metastore's wording unless "all": then etcd prints the same).
says() {
    [ "${3:-}" = all ] || [ "$IT_TARGET" = metastore ] || return 0
    if grep -Eq -- "$2" "$_IT_TMP/$1.out"; then
        pass "$1-message"
    else
        fail "$1-message" "no line matching /$2/" "output: $(_short "$(tail -n 5 "$_IT_TMP/$1.out")")"
    fi
}
# nothing_started NAME: metastore refuses before it creates the data dir.
nothing_started() {
    [ "$IT_TARGET" = metastore ] || return 0
    check_true "$1-no-data-dir" "$BAD_DATA was created" [ ! -e "$BAD_DATA" ]
}

bad_start missing-cert --cert-file "$TLS_DIR/nope.crt" --key-file "$TLS_DIR/server.key"
says missing-cert "\"level\":\"fatal\",.*\"msg\":\"--cert-file=$TLS_DIR/nope.crt: cannot open the file: No such file or directory"
nothing_started missing-cert
bad_start key-mismatch --cert-file "$TLS_DIR/server.crt" --key-file "$TLS_DIR/mismatch.key"
says key-mismatch "\"level\":\"fatal\",.*\"msg\":\"--key-file=$TLS_DIR/mismatch.key: the private key does not match the certificate in --cert-file=$TLS_DIR/server.crt"
nothing_started key-mismatch
bad_start not-pem --cert-file "$TLS_DIR/bad.crt" --key-file "$TLS_DIR/server.key"
says not-pem "\"level\":\"fatal\",.*\"msg\":\"--cert-file=$TLS_DIR/bad.crt: no PEM certificate in the file"
nothing_started not-pem
bad_start key-not-pem --cert-file "$TLS_DIR/server.crt" --key-file "$TLS_DIR/bad.crt"
says key-not-pem "\"level\":\"fatal\",.*\"msg\":\"--key-file=$TLS_DIR/bad.crt: no PEM private key in the file"
bad_start missing-ca --cert-file "$TLS_DIR/server.crt" --key-file "$TLS_DIR/server.key" \
    --trusted-ca-file "$TLS_DIR/nope-ca.crt"
says missing-ca "\"level\":\"fatal\",.*\"msg\":\"--trusted-ca-file=$TLS_DIR/nope-ca.crt: cannot open the file"
bad_start no-cert-https
says no-cert-https 'TLS key/cert \(--cert-file, --key-file\) must be provided for client url https://127\.0\.0\.1:[0-9]+ with HTTPS scheme' all
bad_start bad-cipher --cert-file "$TLS_DIR/server.crt" --key-file "$TLS_DIR/server.key" \
    --cipher-suites FOO,TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256
says bad-cipher 'unexpected TLS cipher suite "FOO"' all
# An expired certificate: etcd 3.4 serves it (Go checks no dates when loading a
# key pair); metastore refuses to start with it.
if [ "$IT_TARGET" = metastore ]; then
    bad_start expired --cert-file "$TLS_DIR/expired.crt" --key-file "$TLS_DIR/expired.key"
    says expired "\"level\":\"fatal\",.*\"msg\":\"--cert-file=$TLS_DIR/expired.crt: the certificate \(CN .{1,2}example.com.{1,2}\) expired on Jan  2 00:00:00 2020 GMT"
    nothing_started expired
    bad_start bad-crl --cert-file "$TLS_DIR/server.crt" --key-file "$TLS_DIR/server.key" \
        --trusted-ca-file "$CA" --client-crl-file "$TLS_DIR/bad.crt"
    says bad-crl "\"level\":\"fatal\",.*\"msg\":\"--client-crl-file=$TLS_DIR/bad.crt: not a certificate revocation list"
fi

finish
