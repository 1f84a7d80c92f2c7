#!/usr/bin/env bash
# gateway: etcd's JSON gateway (/v3/... over HTTP/1.1 on the client URL, and
# the /v3beta/ alias) driven with curl, with the same expectations for etcd and
# metastore. Response bodies are compared exactly after dropping the fields
# that legitimately differ between servers (cluster_id, member_id, raft_term,
# member ids, sizes):
#   kv        put / range / deleterange (prev_kv) / unknown fields ignored /
#             /v3beta/; etcd's e2e v3_curl_test requests (PutGet, Txn and its
#             malformed txn, Watch);
#   txn       compares and ops, a nested txn, a failing compare;
#   compact   compaction, then a range at a compacted revision (400, code 11,
#             etcd's exact message, the Grpc-Trailer-Content-Type trailer);
#   lease     grant (given id, ttl), put with lease, timetolive with keys on
#             both paths, leases on both paths, keepalive (one request, one
#             {"result":...} line), revoke, revoke again (404, code 5): etcd's
#             e2e v3_curl_lease_test requests;
#   watch     create with start_revision: the created line, then the events;
#             a live event; several requests in one body (watch, keepalive);
#   cluster   member list, maintenance status, alarm list, hash;
#   errors    truncated and invalid JSON (400, code 3), a watch whose first
#             request does not parse (500, code 2), GET on a POST path (405),
#             unknown /v3 path (404), OPTIONS preflight, CORS headers;
#   auth      users and roles over the gateway, auth enable, a put without a
#             token, with a bad token, authenticate, a put with the token in
#             Authorization (etcd's e2e v3_curl_test Auth), auth disable;
#   streams   --max-concurrent-streams 2, two watches open: a third request
#             waits (curl times out; Grpc-Timeout: 504, code 4) and is served
#             once a watch is closed (etcd's e2e v3_curl_maxstream_test).
. "$(dirname "$0")/../lib.sh"

# norm [KEY...]: JSON on stdin, compact, with cluster_id, member_id, raft_term
# and the given keys removed at every depth (one document per line).
norm() {
    python3 -c '
import json, sys
drop = {"cluster_id", "member_id", "raft_term"} | set(sys.argv[1:])
def strip(v):
    if isinstance(v, dict):
        return {k: strip(x) for k, x in v.items() if k not in drop}
    if isinstance(v, list):
        return [strip(x) for x in v]
    return v
for line in sys.stdin.read().splitlines():
    line = line.strip()
    if not line:
        continue
    try:
        print(json.dumps(strip(json.loads(line)), separators=(",", ":")))
    except ValueError:
        print("NOT JSON: " + line)
' "$@"
}

# gw PATH BODY [curl args...]: POST BODY to the gateway; sets GW_CODE and GW_BODY.
gw() {
    local path=$1 body=$2
    shift 2
    GW_CODE=$(curl -s -o "$_IT_TMP/gw.body" -w '%{http_code}' --max-time 10 "$@" \
        -X POST -d "$body" "$URL$path" 2>"$_IT_TMP/curl.err")
    GW_BODY=$(cat "$_IT_TMP/gw.body")
}

# gw_check NAME WANT-CODE WANT-NORMALISED-BODY PATH BODY [curl args...]
# (set GW_DROP=(keys...) to drop more keys in the comparison)
GW_DROP=()
gw_check() {
    local name=$1 code=$2 want=$3 path=$4 body=$5 got
    shift 5
    gw "$path" "$body" "$@"
    got=$(printf '%s\n' "$GW_BODY" | norm "${GW_DROP[@]}")
    if [ "$GW_CODE" = "$code" ] && [ "$got" = "$want" ]; then
        pass "$name"
    else
        fail "$name" "status $GW_CODE, want $code"
        _diff_diag "$want" "$got"
    fi
    GW_DROP=()
}

# gw_raw NAME WANT-CODE WANT-BODY PATH BODY [curl args...]: exact body, no JSON.
gw_raw() {
    local name=$1 code=$2 want=$3 path=$4 body=$5
    shift 5
    gw "$path" "$body" "$@"
    if [ "$GW_CODE" = "$code" ] && [ "$GW_BODY" = "$want" ]; then
        pass "$name"
    else
        fail "$name" "status $GW_CODE, want $code"
        _diff_diag "$want" "$GW_BODY"
    fi
}

# gw_contains NAME WANT-CODE SUBSTRING PATH BODY [curl args...] (etcd's e2e cURLPost)
gw_contains() {
    local name=$1 code=$2 want=$3 path=$4 body=$5
    shift 5
    gw "$path" "$body" "$@"
    if [ "$GW_CODE" = "$code" ] && [[ "$GW_BODY" == *"$want"* ]]; then
        pass "$name"
    else
        fail "$name" "status $GW_CODE, want $code, body without $want" "body: $(_short "$GW_BODY")"
    fi
}

# b64 TEXT
b64() { printf '%s' "$1" | base64 -w0; }

if ! start_server; then
    fail start "server did not start"
    finish
    exit 1
fi
pass start
URL=$SRV_CLIENT_URL
ERRC='{"error":"etcdserver: mvcc: required revision has been compacted","message":"etcdserver: mvcc: required revision has been compacted","code":11}'

# --- kv (revision 1 is the empty store's)
gw_check kv-put 200 '{"header":{"revision":"2"}}' /v3/kv/put '{"key":"Zm9v","value":"YmFy"}'
gw_check kv-range 200 \
    '{"header":{"revision":"2"},"kvs":[{"key":"Zm9v","create_revision":"2","mod_revision":"2","version":"1","value":"YmFy"}],"count":"1"}' \
    /v3/kv/range '{"key":"Zm9v"}'
gw_check kv-range-unknown-field 200 \
    '{"header":{"revision":"2"},"kvs":[{"key":"Zm9v","create_revision":"2","mod_revision":"2","version":"1","value":"YmFy"}],"count":"1"}' \
    /v3/kv/range '{"key":"Zm9v","no_such_field":{"x":[1,2]},"keysOnly":false}'
gw_check kv-range-camel-names 200 '{"header":{"revision":"2"},"count":"1"}' \
    /v3/kv/range '{"key":"Zm9v","countOnly":true}'
gw_check kv-v3beta-put 200 '{"header":{"revision":"3"}}' /v3beta/kv/put '{"key":"a2V5Mg==","value":"djI="}'
gw_check kv-v3beta-range 200 \
    '{"header":{"revision":"3"},"kvs":[{"key":"a2V5Mg==","create_revision":"3","mod_revision":"3","version":"1","value":"djI="}],"count":"1"}' \
    /v3beta/kv/range '{"key":"a2V5Mg=="}'
gw_check kv-deleterange 200 \
    '{"header":{"revision":"4"},"deleted":"1","prev_kvs":[{"key":"a2V5Mg==","create_revision":"3","mod_revision":"3","version":"1","value":"djI="}]}' \
    /v3/kv/deleterange '{"key":"a2V5Mg==","prev_kv":true}'
gw_check kv-range-prefix 200 '{"header":{"revision":"4"},"count":"1"}' \
    /v3/kv/range "{\"key\":\"$(b64 f)\",\"range_end\":\"$(b64 g)\",\"count_only\":true}"
# etcd's e2e testV3CurlPutGet: Go's json.Marshal of PutRequest/RangeRequest
for p in /v3 /v3beta; do
    gw_contains "e2e-putget-put${p//\//-}" 200 '"revision":"' "$p/kv/put" '{"key":"Zm9v","value":"YmFy"}'
    gw_contains "e2e-putget-range${p//\//-}" 200 '"value":"' "$p/kv/range" '{"key":"Zm9v"}'
done
# now revision 6: foo at version 3

# --- txn
gw_check txn-e2e 200 \
    '{"header":{"revision":"7"},"succeeded":true,"responses":[{"response_put":{"header":{"revision":"7"}}}]}' \
    /v3/kv/txn "{\"compare\":[{\"key\":\"$(b64 txnk)\",\"target\":\"CREATE\",\"createRevision\":\"0\"}],\"success\":[{\"requestPut\":{\"key\":\"$(b64 txnk)\",\"value\":\"YmFy\"}}]}"
# e2e: "was crashing etcd server"
gw_check txn-e2e-malformed 400 \
    '{"error":"etcdserver: key not found","message":"etcdserver: key not found","code":3}' \
    /v3/kv/txn '{"compare":[{"result":0,"target":1,"key":"Zm9v","TargetUnion":null}],"success":[{"Request":{"RequestPut":{"key":"Zm9v","value":"YmFy"}}}]}'
gw_check txn-nested 200 \
    '{"header":{"revision":"8"},"succeeded":true,"responses":[{"response_range":{"header":{"revision":"7"},"kvs":[{"key":"Zm9v","create_revision":"2","mod_revision":"6","version":"3","value":"YmFy"}],"count":"1"}},{"response_txn":{"header":{},"succeeded":true,"responses":[{"response_put":{"header":{"revision":"8"}}},{"response_delete_range":{"header":{"revision":"8"},"deleted":"1"}}]}}]}' \
    /v3/kv/txn "{\"compare\":[{\"key\":\"Zm9v\",\"target\":\"VALUE\",\"result\":\"EQUAL\",\"value\":\"YmFy\"},{\"key\":\"Zm9v\",\"target\":\"VERSION\",\"result\":\"GREATER\",\"version\":\"1\"}],\"success\":[{\"request_range\":{\"key\":\"Zm9v\"}},{\"request_txn\":{\"compare\":[{\"key\":\"$(b64 txnk)\",\"target\":\"MOD\",\"result\":\"LESS\",\"mod_revision\":\"100\"}],\"success\":[{\"request_put\":{\"key\":\"$(b64 nest)\",\"value\":\"MQ==\"}},{\"request_delete_range\":{\"key\":\"$(b64 txnk)\"}}]}}],\"failure\":[{\"request_put\":{\"key\":\"Zm9v\",\"value\":\"bm8=\"}}]}"
gw_check txn-failure 200 \
    '{"header":{"revision":"9"},"responses":[{"response_put":{"header":{"revision":"9"},"prev_kv":{"key":"bmVzdA==","create_revision":"8","mod_revision":"8","version":"1","value":"MQ=="}}}]}' \
    /v3/kv/txn "{\"compare\":[{\"key\":\"$(b64 nest)\",\"target\":\"VALUE\",\"result\":\"NOT_EQUAL\",\"value\":\"MQ==\"}],\"success\":[{\"request_range\":{\"key\":\"Zm9v\"}}],\"failure\":[{\"request_put\":{\"key\":\"$(b64 nest)\",\"value\":\"Mg==\",\"prev_kv\":true}}]}"

# --- watch: etcd's e2e testV3CurlWatch and a start_revision catch-up
WOUT=$(curl -s --max-time 2 -X POST -d '{"create_request" : {"key":"Zm9v","start_revision":1}}' "$URL/v3/watch" | norm)
check_eq watch-e2e '{"result":{"header":{"revision":"9"},"created":true}}
{"result":{"header":{"revision":"9"},"events":[{"kv":{"key":"Zm9v","create_revision":"2","mod_revision":"2","version":"1","value":"YmFy"}},{"kv":{"key":"Zm9v","create_revision":"2","mod_revision":"5","version":"2","value":"YmFy"}},{"kv":{"key":"Zm9v","create_revision":"2","mod_revision":"6","version":"3","value":"YmFy"}}]}}' "$WOUT"
WOUT=$(curl -s --max-time 2 -X POST -d "{\"create_request\":{\"key\":\"$(b64 nest)\",\"start_revision\":\"8\",\"prev_kv\":true}}" "$URL/v3beta/watch" | norm)
check_eq watch-start-revision '{"result":{"header":{"revision":"9"},"created":true}}
{"result":{"header":{"revision":"9"},"events":[{"kv":{"key":"bmVzdA==","create_revision":"8","mod_revision":"8","version":"1","value":"MQ=="}},{"kv":{"key":"bmVzdA==","create_revision":"8","mod_revision":"9","version":"2","value":"Mg=="},"prev_kv":{"key":"bmVzdA==","create_revision":"8","mod_revision":"8","version":"1","value":"MQ=="}}]}}' "$WOUT"
# several requests in one body, in order; a value that does not decode ends them
WOUT=$(curl -s --max-time 2 -X POST -d '{"create_request":{"key":"eHg="}} {"create_request":{"key":"eXk=","watch_id":7}}
{"progress_request":{}} garbage {"create_request":{"key":"eno="}}' "$URL/v3/watch" | norm)
check_eq watch-multi '{"result":{"header":{"revision":"9"},"created":true}}
{"result":{"header":{"revision":"9"},"watch_id":"7","created":true}}
{"result":{"header":{"revision":"9"},"watch_id":"-1"}}' "$WOUT"
KA=$(curl -s --max-time 5 -X POST -d '{"ID":1}{"ID":2}' "$URL/v3/lease/keepalive" | norm)
check_eq keepalive-multi '{"result":{"header":{"revision":"9"},"ID":"1"}}
{"result":{"header":{"revision":"9"},"ID":"2"}}' "$KA"
# a live event: the watch is open before the put
curl -s --max-time 3 -X POST -d "{\"create_request\":{\"key\":\"$(b64 live)\"}}" "$URL/v3/watch" >"$_IT_TMP/live.out" &
wpid=$!
sleep 1
gw /v3/kv/put "{\"key\":\"$(b64 live)\",\"value\":\"eA==\"}"
wait "$wpid"
check_eq watch-live '{"result":{"header":{"revision":"9"},"created":true}}
{"result":{"header":{"revision":"10"},"events":[{"kv":{"key":"bGl2ZQ==","create_revision":"10","mod_revision":"10","version":"1","value":"eA=="}}]}}' "$(norm <"$_IT_TMP/live.out")"

# --- compact
gw_check compact 200 '{"header":{"revision":"10"}}' /v3/kv/compaction '{"revision":"9","physical":true}'
gw_raw compact-range-compacted 400 "$ERRC" /v3/kv/range '{"key":"Zm9v","revision":"3"}'
if curl -s -D - -o /dev/null --max-time 10 -X POST -d '{"key":"Zm9v","revision":"3"}' "$URL/v3/kv/range" |
        tr -d '\r' | grep -qixF 'Trailer: Grpc-Trailer-Content-Type'; then
    pass compact-error-trailer
else
    fail compact-error-trailer "no Trailer: Grpc-Trailer-Content-Type header"
fi
WOUT=$(curl -s --max-time 2 -X POST -d '{"create_request":{"key":"Zm9v","start_revision":"2"}}' "$URL/v3/watch" | norm)
check_eq watch-compacted '{"result":{"header":{"revision":"10"},"created":true}}
{"result":{"header":{},"canceled":true,"compact_revision":"9"}}' "$WOUT"

# --- lease: etcd's e2e v3_curl_lease_test (Go's json.Marshal bodies)
gw_check lease-grant-id 200 '{"header":{"revision":"10"},"ID":"4242","TTL":"60"}' /v3/lease/grant '{"TTL":60,"ID":4242}'
GW_DROP=(ID)
gw_check lease-grant-ttl 200 '{"header":{"revision":"10"},"TTL":"20"}' /v3/lease/grant '{"TTL":20}'
gw_check lease-put 200 '{"header":{"revision":"11"}}' /v3/kv/put "{\"key\":\"$(b64 lk)\",\"value\":\"$(b64 lv)\",\"lease\":4242}"
for p in /v3/lease/timetolive /v3/kv/lease/timetolive; do
    GW_DROP=(TTL)
    gw_check "lease-timetolive${p//\//-}" 200 '{"header":{"revision":"11"},"ID":"4242","grantedTTL":"60","keys":["bGs="]}' \
        "$p" '{"ID":4242,"keys":true}'
done
for p in /v3/lease/leases /v3/kv/lease/leases; do
    gw_contains "lease-leases${p//\//-}" 200 '{"ID":"4242"}' "$p" '{}'
done
KA=$(curl -s --max-time 5 -X POST -d '{"ID":4242}' "$URL/v3/lease/keepalive" | head -n 1 | norm)
check_eq lease-keepalive '{"result":{"header":{"revision":"11"},"ID":"4242","TTL":"60"}}' "$KA"
gw_check lease-keepalive-unknown 200 '{"result":{"header":{"revision":"11"},"ID":"99"}}' /v3/lease/keepalive '{"ID":99}'
gw_check lease-revoke 200 '{"header":{"revision":"12"}}' /v3/lease/revoke '{"ID":4242}'
gw_check lease-revoke-again 404 \
    '{"error":"etcdserver: requested lease not found","message":"etcdserver: requested lease not found","code":5}' \
    /v3/kv/lease/revoke '{"ID":4242}'
gw_check lease-key-gone 200 '{"header":{"revision":"12"}}' /v3/kv/range "{\"key\":\"$(b64 lk)\"}"

# --- cluster and maintenance
GW_DROP=(ID peerURLs)
gw_check member-list 200 "{\"header\":{},\"members\":[{\"name\":\"$SRV_NAME\",\"clientURLs\":[\"$SRV_CLIENT_URL\"]}]}" \
    /v3/cluster/member/list '{}'
gw /v3/cluster/member/list '{}'
MID=$(printf '%s' "$GW_BODY" | jget 'd["header"]["member_id"]')
check_eq member-list-id "$MID" "$(printf '%s' "$GW_BODY" | jget 'd["members"][0]["ID"]')"
check_eq member-list-peer "$SRV_PEER_URL" "$(printf '%s' "$GW_BODY" | jget 'd["members"][0]["peerURLs"][0]')"
gw /v3/maintenance/status '{}'
check_eq status-fields "3.4.23 $MID true" \
    "$(printf '%s' "$GW_BODY" | jget '" ".join([d["version"], d["leader"], str(int(d["raftIndex"]) > 0).lower()])')"
gw_check alarm-list 200 '{}' /v3/maintenance/alarm '{"action":"GET"}'
GW_DROP=(hash)
gw_check hash 200 '{"header":{"revision":"12"}}' /v3/maintenance/hash '{}'
# every line a {"result":{...,"blob"}}; the blobs are etcd's db with its sha256 trailer
gw /v3/maintenance/snapshot '{}'
check_eq snapshot-stream "200 true" "$GW_CODE $(printf '%s\n' "$GW_BODY" | python3 -c '
import base64, hashlib, json, sys
data = b"".join(base64.b64decode(json.loads(l)["result"]["blob"]) for l in sys.stdin if l.strip())
print(str(len(data) > 32 and hashlib.sha256(data[:-32]).digest() == data[-32:]).lower())')"

# --- errors
gw_raw err-truncated-json 400 '{"error":"unexpected EOF","message":"unexpected EOF","code":3}' /v3/kv/range '{"key":'
gw /v3/kv/range '{"key":x}'
check_eq err-bad-json "400 3 true" "$GW_CODE $(printf '%s' "$GW_BODY" | jget '"%s %s" % (d["code"], str(d["error"] == d["message"] and len(d["error"]) > 0).lower())')"
gw_raw err-bad-base64 400 \
    '{"error":"illegal base64 data at input byte 0","message":"illegal base64 data at input byte 0","code":3}' \
    /v3/kv/range '{"key":"!!!"}'
gw /v3/watch '{"create_request":x}'
check_eq err-watch-bad-json "500 2" "$GW_CODE $(printf '%s' "$GW_BODY" | jget 'd["code"]')"
gw_check err-empty-key 400 '{"error":"etcdserver: key is not provided","message":"etcdserver: key is not provided","code":3}' \
    /v3/kv/put '{"value":"YmFy"}'
# Grpc-Timeout: the deadline; a stream past it ends with an error chunk (etcd's
# grpc_code is 4 or, racing in grpc-go, 2: only the message is compared)
gw /v3/watch '{"create_request":{"key":"Zm9v"}}' -H 'Grpc-Timeout: 300m'
check_eq err-stream-deadline "200 true context deadline exceeded" "$GW_CODE $(printf '%s\n' "$GW_BODY" |
    python3 -c 'import json,sys; l=[json.loads(x) for x in sys.stdin if x.strip()]; print(str(l[0]["result"].get("created", False)).lower(), l[-1]["error"]["message"])')"
gw_raw err-deadline 504 \
    '{"error":"context deadline exceeded","message":"context deadline exceeded","code":4}' \
    /v3/kv/range '{"key":"Zm9v"}' -H 'Grpc-Timeout: 1n'
gw_raw err-bad-timeout 400 \
    '{"error":"invalid grpc-timeout: xx","message":"invalid grpc-timeout: xx","code":3}' \
    /v3/kv/range '{"key":"Zm9v"}' -H 'Grpc-Timeout: xx'
GW_CODE=$(curl -s -o "$_IT_TMP/b" -w '%{http_code}' --max-time 10 "$URL/v3/kv/range")
check_eq err-get-on-post "405 Method Not Allowed" "$GW_CODE $(cat "$_IT_TMP/b")"
gw_raw err-unknown-path 404 'Not Found' /v3/kv/nope '{}'
gw_raw err-unknown-service 404 'Not Found' /v3/nope/nope '{}'
gw_raw err-v3-redirect 301 '' /v3 '{}'
gw_raw err-v3beta-root 404 '404 page not found' /v3beta '{}'
OPT=$(curl -s -o /dev/null -w '%{http_code}' --max-time 10 -X OPTIONS "$URL/v3/kv/range")
check_eq options-preflight 200 "$OPT"
if curl -s -D - -o /dev/null --max-time 10 -X POST -d '{}' "$URL/v3/kv/range" | tr -d '\r' |
        grep -qixF 'Access-Control-Allow-Origin: *'; then
    pass cors
else
    fail cors "no Access-Control-Allow-Origin: * header"
fi
if curl -s -D - -o /dev/null --max-time 10 -X POST -d '{"key":"Zm9v"}' "$URL/v3/kv/range" | tr -d '\r' |
        grep -qixF 'Grpc-Metadata-Content-Type: application/grpc'; then
    pass grpc-metadata-header
else
    fail grpc-metadata-header "no Grpc-Metadata-Content-Type header"
fi

# --- auth: etcd's e2e testV3CurlAuth (Go's json.Marshal bodies)
i=0
for u in root:toor nonroot:pass nooption:pass; do
    name=${u%%:*} pw=${u#*:}
    if [ "$name" = nooption ]; then body="{\"name\":\"$name\",\"password\":\"$pw\"}"; else body="{\"name\":\"$name\",\"password\":\"$pw\",\"options\":{}}"; fi
    gw_contains "auth-user-add-$name" 200 revision /v3/auth/user/add "$body"
done
gw_contains auth-role-add 200 revision /v3/auth/role/add '{"name":"root"}'
for name in root nonroot nooption; do
    gw_contains "auth-grant-$name" 200 revision /v3/auth/user/grant "{\"user\":\"$name\",\"role\":\"root\"}"
done
gw_contains auth-enable 200 revision /v3/auth/enable '{}'
gw_raw auth-put-no-token 400 \
    '{"error":"etcdserver: user name is empty","message":"etcdserver: user name is empty","code":3}' \
    /v3/kv/put '{"key":"Zm9vMA==","value":"YmFyMA=="}'
gw_raw auth-put-bad-token 401 \
    '{"error":"etcdserver: invalid auth token","message":"etcdserver: invalid auth token","code":16}' \
    /v3/kv/put '{"key":"Zm9vMA==","value":"YmFyMA=="}' -H 'Authorization: not-a-token'
gw_raw auth-bad-password 400 \
    '{"error":"etcdserver: authentication failed, invalid user ID or password","message":"etcdserver: authentication failed, invalid user ID or password","code":3}' \
    /v3/auth/authenticate '{"name":"root","password":"wrong"}'
i=0
TOKEN=
for u in root:toor nonroot:pass nooption:pass; do
    name=${u%%:*} pw=${u#*:}
    gw /v3/auth/authenticate "{\"name\":\"$name\",\"password\":\"$pw\"}"
    tok=$(printf '%s' "$GW_BODY" | jget 'd.get("token", "")' 2>/dev/null)
    if [ "$GW_CODE" = 200 ] && [ -n "$tok" ]; then pass "auth-authenticate-$name"; else
        fail "auth-authenticate-$name" "status $GW_CODE, no token" "body: $(_short "$GW_BODY")"; fi
    [ "$name" = root ] && TOKEN=$tok
    gw_contains "auth-put-with-token-$name" 200 '"revision":"' /v3/kv/put \
        "{\"key\":\"$(b64 "foo$i")\",\"value\":\"$(b64 "bar$i")\"}" -H "Authorization: $tok"
    i=$((i + 1))
done
gw_check auth-range-with-token 200 '{"header":{"revision":"15"},"kvs":[{"key":"Zm9vMA==","create_revision":"13","mod_revision":"13","version":"1","value":"YmFyMA=="}],"count":"1"}' \
    /v3/kv/range '{"key":"Zm9vMA=="}' -H "Authorization: $TOKEN"
gw_check auth-token-metadata-header 200 '{"header":{"revision":"15"},"count":"1"}' \
    /v3/kv/range '{"key":"Zm9vMA==","count_only":true}' -H "Grpc-Metadata-Token: $TOKEN"
gw_check auth-user-list 200 '{"header":{"revision":"15"},"users":["nonroot","nooption","root"]}' \
    /v3/auth/user/list '{}' -H "Authorization: $TOKEN"
gw_check auth-watch-no-token 200 '{"result":{"header":{"revision":"15"},"watch_id":"-1","created":true,"canceled":true,"cancel_reason":"rpc error: code = InvalidArgument desc = etcdserver: user name is empty"}}' \
    /v3/watch '{"create_request":{"key":"Zm9v"}}' --max-time 2
gw_contains auth-disable 200 revision /v3/auth/disable '{}' -H "Authorization: $TOKEN"
gw_contains auth-put-after-disable 200 '"revision":"' /v3/kv/put '{"key":"Zm9v","value":"YmFy"}'

stop_server

# --- streams: --max-concurrent-streams 2 with two watches open. etcd's gateway
# is one gRPC connection to the server, so a third request waits for a stream
# (etcd's e2e v3_curl_maxstream_test: curl times out), its Grpc-Timeout ends
# the wait (504, code 4), and once a watch is closed the next request is served.
if start_server -- --max-concurrent-streams 2; then
    pass streams-start
    URL=$SRV_CLIENT_URL
    MW=()
    for i in 0 1; do
        curl -s -N --max-time 60 -X POST -d '{"create_request":{"key":"Zm9v"}}' "$URL/v3/watch" \
            >"$_IT_TMP/mw$i.out" 2>/dev/null &
        MW[$i]=$!
        track_pid "${MW[$i]}"
    done
    sleep 2 # both watches created
    check_true streams-watches-created "a watch did not answer created" \
        grep -q '"created":true' "$_IT_TMP/mw0.out" "$_IT_TMP/mw1.out"
    curl -s -o /dev/null --max-time 2 -X POST -d '{"key":"Zm9v"}' "$URL/v3/kv/range"
    check_eq streams-third-waits "28 (curl: operation timed out)" "$? (curl: operation timed out)"
    gw_check streams-wait-deadline 504 \
        '{"error":"context deadline exceeded","message":"context deadline exceeded","code":4}' \
        /v3/kv/range '{"key":"Zm9v"}' -H 'Grpc-Timeout: 1S'
    # a request queued behind the watches, then one watch ends: served
    curl -s -o "$_IT_TMP/mq.out" -w '%{http_code}' --max-time 10 -X POST -d '{"key":"Zm9v"}' \
        "$URL/v3/kv/range" >"$_IT_TMP/mq.code" 2>/dev/null &
    MQ=$!
    track_pid "$MQ"
    sleep 1
    check_true streams-queued-waits "the queued request was answered early" kill -0 "$MQ"
    _it_stop_pid "${MW[0]}" TERM
    untrack_pid "${MW[0]}"
    wait "$MQ"
    untrack_pid "$MQ"
    check_eq streams-queued-served-after-close '200 {"header":{"revision":"1"}}' \
        "$(cat "$_IT_TMP/mq.code") $(norm <"$_IT_TMP/mq.out")"
    gw_contains streams-served-after-close 200 '"revision":"1"' /v3/kv/range '{"key":"Zm9v"}'
    _it_stop_pid "${MW[1]}" TERM
    untrack_pid "${MW[1]}"
    stop_server
else
    fail streams-start "server with --max-concurrent-streams 2 did not start"
fi

# --- tls: https client URL, --client-cert-auth (etcd's e2e TestV3CurlPutGetClientTLS
# and TestV3CurlAuthClientTLSCertAuth with a certificate without CN)
TLS_DIR=$_IT_TMP/pki
if ! tls_make_certs "$TLS_DIR"; then
    fail tls-pki "openssl could not make the test certificates" "$(tail -n 5 "$TLS_DIR/openssl.log")"
    finish
    exit 1
fi
# nocn: a client certificate whose subject has no CommonName
if ! { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$TLS_DIR/nocn.key" &&
        openssl req -new -key "$TLS_DIR/nocn.key" -subj "/O=it-nocn" -out "$TLS_DIR/nocn.csr" &&
        openssl x509 -req -in "$TLS_DIR/nocn.csr" -CA "$TLS_DIR/ca.crt" -CAkey "$TLS_DIR/ca.key" \
            -CAcreateserial -days 365 -extfile "$TLS_DIR/openssl.cnf" -extensions v3_client \
            -out "$TLS_DIR/nocn.crt"; } >>"$TLS_DIR/openssl.log" 2>&1; then
    fail tls-pki-nocn "openssl could not make the no-CN certificate" "$(tail -n 5 "$TLS_DIR/openssl.log")"
    finish
    exit 1
fi
CN=(--cacert "$TLS_DIR/ca.crt" --cert "$TLS_DIR/client.crt" --key "$TLS_DIR/client.key")
NOCN=(--cacert "$TLS_DIR/ca.crt" --cert "$TLS_DIR/nocn.crt" --key "$TLS_DIR/nocn.key")
CN_MSG='CommonName of client sending a request against gateway will be ignored and not used as expected'
if start_tls_server -- --cert-file "$TLS_DIR/server.crt" --key-file "$TLS_DIR/server.key" \
        --trusted-ca-file "$TLS_DIR/ca.crt" --client-cert-auth; then
    pass tls-start
    URL=https://$SRV_ENDPOINT
    gw_contains tls-put-cn 200 '"revision":"' /v3/kv/put '{"key":"Zm9v","value":"YmFy"}' "${CN[@]}"
    gw_contains tls-range-nocn 200 '"value":"YmFy"' /v3beta/kv/range '{"key":"Zm9v"}' "${NOCN[@]}"
    WOUT=$(curl -s --max-time 2 "${CN[@]}" -X POST -d '{"create_request":{"key":"Zm9v","start_revision":"2"}}' \
        "$URL/v3/watch" | norm)
    check_eq tls-watch '{"result":{"header":{"revision":"2"},"created":true}}
{"result":{"header":{"revision":"2"},"events":[{"kv":{"key":"Zm9v","create_revision":"2","mod_revision":"2","version":"1","value":"YmFy"}}]}}' "$WOUT"
    KA=$(curl -s --max-time 5 "${NOCN[@]}" -X POST -d '{"ID":5}' "$URL/v3/lease/keepalive" | norm)
    check_eq tls-keepalive '{"result":{"header":{"revision":"2"},"ID":"5"}}' "$KA"
    GW_CODE=$(curl -s -o /dev/null -w '%{http_code}' --max-time 10 --cacert "$TLS_DIR/ca.crt" \
        -X POST -d '{"key":"Zm9v"}' "$URL/v3/kv/range")
    check_eq tls-no-client-cert 000 "$GW_CODE"
    gw_contains tls-user-add 200 revision /v3/auth/user/add '{"name":"root","password":"toor"}' "${CN[@]}"
    gw_contains tls-role-add 200 revision /v3/auth/role/add '{"name":"root"}' "${CN[@]}"
    gw_contains tls-grant 200 revision /v3/auth/user/grant '{"user":"root","role":"root"}' "${CN[@]}"
    gw_contains tls-auth-enable 200 revision /v3/auth/enable '{}' "${CN[@]}"
    # auth on: a CN certificate is refused on /v3 (the gateway would not pass the CN on)
    gw_raw tls-cn-refused 400 "$CN_MSG" /v3/kv/range '{"key":"Zm9v"}' "${CN[@]}"
    gw_raw tls-cn-refused-authenticate 400 "$CN_MSG" /v3/auth/authenticate \
        '{"name":"root","password":"toor"}' "${CN[@]}"
    # no token through a CN-less certificate: nobody. etcd's gateway connection
    # carries the server's own certificate, but auth ignores its CN on gateway
    # calls (AuthInfoFromTLS, the grpcgateway-accept metadata); metastore's
    # in-process call carries no certificate at all
    gw_raw tls-nocn-no-token 400 \
        '{"error":"etcdserver: user name is empty","message":"etcdserver: user name is empty","code":3}' \
        /v3/kv/range '{"key":"Zm9v"}' "${NOCN[@]}"
    gw /v3/auth/authenticate '{"name":"root","password":"toor"}' "${NOCN[@]}"
    TOKEN=$(printf '%s' "$GW_BODY" | jget 'd.get("token", "")' 2>/dev/null)
    check_true tls-nocn-authenticate "status $GW_CODE, no token" test "$GW_CODE" = 200 -a -n "$TOKEN"
    gw_contains tls-nocn-put-token 200 '"revision":"' /v3/kv/put '{"key":"Zm9v","value":"YmF6"}' \
        "${NOCN[@]}" -H "Authorization: $TOKEN"
    gw_contains tls-nocn-auth-disable 200 revision /v3/auth/disable '{}' "${NOCN[@]}" -H "Authorization: $TOKEN"
    gw_contains tls-put-cn-auth-off 200 '"revision":"' /v3/kv/put '{"key":"Zm9v","value":"YmFy"}' "${CN[@]}"
    stop_server
else
    fail tls-start "TLS server did not start"
fi

finish
