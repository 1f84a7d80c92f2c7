#!/usr/bin/env bash
# http-endpoints: etcd's HTTP/1.1 endpoints beside gRPC on the same client port,
# and on --listen-metrics-urls, with etcd 3.4's answers (curl; everything on
# 127.0.0.1):
#   plain     http:// client URL: /health {"health":"true"}, /version's exact
#             JSON, 404 "404 page not found" for other paths, 405 for a POST to
#             /health, etcd's CORS headers; etcdctl keeps working on the same
#             port; the metrics URL serves /health and /metrics and 404s
#             /version (as etcd's metrics mux);
#   probes    /livez and /readyz (etcd 3.6's; etcd 3.4 answers 404 there, so the
#             expectation differs by target);
#   metrics   /metrics from the client and the metrics URL parsed by Prometheus'
#             own parser (test/integration/metrics_check.py with Debian's
#             python3-prometheus-client): etcd's names and types, etcd's disk
#             buckets, counters that move after puts (proposals, grpc_server_*
#             for Put/OK, the fsync and backend-commit histograms);
#   tls       https:// client and metrics URLs with --client-cert-auth and a
#             CRL: curl with a client certificate gets the same answers, curl
#             without one, with a revoked one or with one from another CA gets
#             nothing; etcdctl over mutual TLS on the same port works;
#   unix      a unix:// client URL answers curl --unix-socket and etcdctl.
. "$(dirname "$0")/../lib.sh"

PY=/usr/bin/python3
CHECK_PY=$IT_LIB_DIR/metrics_check.py

# http_check NAME WANT-CODE WANT-BODY curl-args...: status and body of one request.
http_check() {
    local name=$1 code=$2 body=$3 out got
    shift 3
    out=$(curl -s -o "$_IT_TMP/body" -w '%{http_code}' --max-time 10 "$@" 2>"$_IT_TMP/curl.err")
    got=$(cat "$_IT_TMP/body" 2>/dev/null)
    if [ "$out" = "$code" ] && [ "$got" = "$body" ]; then
        pass "$name"
    else
        fail "$name" "status $out, want $code" "body: $(_short "$got")" "want: $(_short "$body")" \
            "curl: $(_short "$(cat "$_IT_TMP/curl.err")")"
    fi
}

# header_check NAME HEADER-LINE curl-args...: the response carries that header.
header_check() {
    local name=$1 line=$2
    shift 2
    if curl -s -D - -o /dev/null --max-time 10 "$@" | tr -d '\r' | grep -qixF -- "$line"; then
        pass "$name"
    else
        fail "$name" "no header \"$line\""
    fi
}

# curl_refused NAME curl-args...: the request gets no HTTP answer at all.
curl_refused() {
    local name=$1 code
    shift
    code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 10 "$@")
    if [ "$code" = "000" ]; then pass "$name"; else fail "$name" "answered with status $code"; fi
}

# metrics_check NAME URL curl-args...: scrape, put 5 keys, scrape again until the
# Python checks pass (bounded: etcd commits its backend every 100 ms).
metrics_check() {
    local name=$1 url=$2 i out rc
    shift 2
    curl -s --max-time 10 "$@" "$url/metrics" >"$_IT_TMP/before.prom"
    for i in 1 2 3 4 5; do
        "${PUT_CMD[@]}" put "metrics/k$i" "v$i" >/dev/null
    done
    for i in $(seq 1 20); do
        curl -s --max-time 10 "$@" "$url/metrics" >"$_IT_TMP/after.prom"
        out=$($PY "$CHECK_PY" "$_IT_TMP/before.prom" "$_IT_TMP/after.prom" 5 2>&1)
        rc=$?
        [ $rc -eq 0 ] && break
        sleep 0.25
    done
    if [ $rc -eq 0 ]; then
        pass "$name"
    else
        fail "$name" "metrics checks failed" "$(printf '%s\n' "$out" | grep -v '^ok ')"
    fi
}

if ! $PY -c 'import prometheus_client.parser' 2>/dev/null; then
    fail setup "Debian's python3-prometheus-client is not installed (tools/install-deps.sh)"
    finish
    exit 1
fi

HEALTH_OK='{"health":"true"}'
VERSION='{"etcdserver":"3.4.23","etcdcluster":"3.4.0"}'
NOT_FOUND='404 page not found'

# --- plain: http:// client and metrics URLs
read -r MPORT < <(free_ports 1)
MURL=http://127.0.0.1:$MPORT
if start_server -- --listen-metrics-urls "$MURL"; then
    pass plain-start
    CURL=$SRV_CLIENT_URL
    PUT_CMD=(ectl)
    check_out plain-etcdctl-put OK ectl put http/k v
    http_check plain-health 200 "$HEALTH_OK" "$CURL/health"
    http_check plain-version 200 "$VERSION" "$CURL/version"
    http_check plain-404 404 "$NOT_FOUND" "$CURL/no/such/path"
    http_check plain-404-healthz 404 "$NOT_FOUND" "$CURL/healthz"
    http_check plain-health-post 405 "Method Not Allowed" -X POST "$CURL/health"
    header_check plain-health-allow "Allow: GET" -X POST "$CURL/health"
    header_check plain-version-json "Content-Type: application/json" "$CURL/version"
    header_check plain-cors "Access-Control-Allow-Origin: *" "$CURL/health"
    header_check plain-metrics-type "Content-Type: text/plain; version=0.0.4; charset=utf-8" \
        "$CURL/metrics"
    check_out plain-etcdctl-get v ectl get http/k --print-value-only
    http_check plain-metrics-url-health 200 "$HEALTH_OK" "$MURL/health"
    http_check plain-metrics-url-version 404 "$NOT_FOUND" "$MURL/version"
    http_check plain-metrics-url-404 404 "$NOT_FOUND" "$MURL/nope"

    # --- probes: /livez and /readyz are etcd 3.6's; 3.4 has none
    if [ "$IT_TARGET" = etcd ]; then
        http_check probes-livez-3.4 404 "$NOT_FOUND" "$CURL/livez"
        http_check probes-readyz-3.4 404 "$NOT_FOUND" "$CURL/readyz"
    else
        http_check probes-livez 200 "ok" "$CURL/livez"
        http_check probes-readyz 200 "ok" "$CURL/readyz"
        http_check probes-readyz-verbose 200 "[+]data_corruption ok
[+]serializable_read ok
[+]linearizable_read ok
ok" "$CURL/readyz?verbose"
        http_check probes-livez-check 200 "ok" "$MURL/livez/serializable_read"
        http_check probes-readyz-unknown-check 404 "$NOT_FOUND" "$CURL/readyz/nope"
    fi

    # --- metrics: Prometheus' parser on both URLs
    metrics_check metrics-client-url "$CURL"
    metrics_check metrics-metrics-url "$MURL"
    stop_server
else
    fail plain-start "server did not start"
fi

# --- tls: https:// client and metrics URLs with client certificates and a CRL
TLS_DIR=$_IT_TMP/pki
if ! tls_make_certs "$TLS_DIR"; then
    fail pki "openssl could not make the test certificates" "$(tail -n 5 "$TLS_DIR/openssl.log")"
    finish
    exit 1
fi
CA=$TLS_DIR/ca.crt
CCERT=(--cacert "$CA" --cert "$TLS_DIR/client.crt" --key "$TLS_DIR/client.key")
read -r MPORT < <(free_ports 1)
MURL=https://127.0.0.1:$MPORT
if start_tls_server -- --cert-file "$TLS_DIR/server.crt" --key-file "$TLS_DIR/server.key" \
        --trusted-ca-file "$CA" --client-cert-auth --client-crl-file "$TLS_DIR/crl.pem" \
        --listen-metrics-urls "$MURL"; then
    pass tls-start
    CURL=https://$SRV_ENDPOINT
    PUT_CMD=(tls_ectl "$SRV_ENDPOINT")
    check_out tls-etcdctl-put OK tls_ectl "$SRV_ENDPOINT" put https/k v
    http_check tls-health 200 "$HEALTH_OK" "${CCERT[@]}" "$CURL/health"
    http_check tls-version 200 "$VERSION" "${CCERT[@]}" "$CURL/version"
    http_check tls-404 404 "$NOT_FOUND" "${CCERT[@]}" "$CURL/nope"
    http_check tls-health-http2-offer 200 "$HEALTH_OK" --http2 "${CCERT[@]}" "$CURL/health"
    curl_refused tls-no-client-cert --cacert "$CA" "$CURL/health"
    curl_refused tls-revoked-cert --cacert "$CA" --cert "$TLS_DIR/revoked.crt" \
        --key "$TLS_DIR/revoked.key" "$CURL/health"
    curl_refused tls-other-ca-cert --cacert "$CA" --cert "$TLS_DIR/wrong-client.crt" \
        --key "$TLS_DIR/wrong-client.key" "$CURL/health"
    curl_refused tls-plaintext-to-tls "http://$SRV_ENDPOINT/health"
    check_out tls-etcdctl-get v tls_ectl "$SRV_ENDPOINT" get https/k --print-value-only
    http_check tls-metrics-url-health 200 "$HEALTH_OK" "${CCERT[@]}" "$MURL/health"
    curl_refused tls-metrics-url-no-client-cert --cacert "$CA" "$MURL/health"
    metrics_check tls-metrics-client-url "$CURL" "${CCERT[@]}"
    metrics_check tls-metrics-metrics-url "$MURL" "${CCERT[@]}"
    stop_server
else
    fail tls-start "TLS server did not start"
fi

# --- unix: a unix:// client URL (the socket "localhost:PORT" in the working dir)
udir=$_IT_TMP/unix
mkdir -p "$udir"
read -r u1 up < <(free_ports 2)
(cd "$udir" && exec "$IT_SERVER" --name unix --data-dir "$udir/data" \
    --listen-client-urls "unix://localhost:$u1" --advertise-client-urls "unix://localhost:$u1" \
    --listen-peer-urls "http://127.0.0.1:$up" --initial-advertise-peer-urls "http://127.0.0.1:$up" \
    --initial-cluster "unix=http://127.0.0.1:$up" >"$udir/server.log" 2>&1) &
upid=$!
track_pid "$upid"
ok=0
for i in $(seq 1 120); do
    kill -0 "$upid" 2>/dev/null || break
    if (cd "$udir" && etcdctl --endpoints="unix://localhost:$u1" --dial-timeout=1s \
            --command-timeout=2s endpoint health >/dev/null 2>&1); then
        ok=1
        break
    fi
    sleep 0.5
done
if [ $ok = 1 ]; then
    pass unix-start
    http_check unix-health 200 "$HEALTH_OK" --unix-socket "$udir/localhost:$u1" http://localhost/health
    http_check unix-version 200 "$VERSION" --unix-socket "$udir/localhost:$u1" http://localhost/version
    check_out unix-etcdctl-put OK bash -c "cd '$udir' && etcdctl --endpoints=unix://localhost:$u1 --command-timeout=10s put unix/k u"
else
    fail unix-start "server on a unix socket did not start" "$(_short "$(tail -n 5 "$udir/server.log")")"
fi
_it_stop_pid "$upid" TERM
untrack_pid "$upid"

finish
