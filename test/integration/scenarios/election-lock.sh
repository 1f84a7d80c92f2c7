#!/usr/bin/env bash
# election-lock: the server-side concurrency services (v3election, v3lock)
# over the JSON gateway with curl, then through their gRPC clients (go/elect),
# with the same expectations for etcd and metastore:
#   campaign   /v3/election/campaign without a lease: a leader key
#              "<name>/<lease in hex>" with a fresh lease, at revision 2;
#   leader     /v3/election/leader names it, with the campaign's value;
#   observe    /v3/election/observe streams it as a {"result":...} line;
#   proclaim   a new value at the next revision; a stale leader key fails
#              "election: not leader" (500, code 2); etcd's e2e requests
#              without a leader key (Proclaim, Resign): "\"leader\" field must
#              be provided" (500, code 2);
#   resign     the key goes; leader then fails "election: no leader";
#   lock       /v3/lock/lock answers a key under the name, /v3/lock/unlock
#              deletes it; the /v3beta/ aliases;
#   auth       with auth on: no token is refused as etcd refuses it (user name
#              is empty), a user without permission on the prefix gets
#              permission denied, one with it campaigns and locks; etcd passes
#              the errors of its inner KV calls on with code Unknown (500);
#   grpc       go/elect: Campaign/Leader/Observe/Proclaim/Resign/Lock/Unlock
#              through v3electionpb/v3lockpb, a second Campaign and a second
#              Lock block until the first resigns/unlocks, Observe streams the
#              new leader, a Campaign given up at its deadline removes its key.
. "$(dirname "$0")/../lib.sh"

[ -x "$IT_GOBIN/elect" ] || { fail build "elect binary missing"; exit 1; }

# post PATH BODY [curl args...]: POST BODY; sets CODE and BODY.
post() {
    local path=$1 body=$2
    shift 2
    CODE=$(curl -s -o "$_IT_TMP/body" -w '%{http_code}' --max-time 10 "$@" \
        -X POST -d "$body" "$URL$path" 2>/dev/null)
    BODY=$(cat "$_IT_TMP/body")
}

# b64 TEXT
b64() { printf '%s' "$1" | base64 -w0; }

# err_body MSG CODE: the gateway's error document.
err_body() { printf '{"error":"%s","message":"%s","code":%s}' "$1" "$1" "$2"; }

if ! start_server; then
    fail start "server did not start"
    finish
    exit 1
fi
URL=$SRV_CLIENT_URL
NAME=$(b64 el/gw)

# ---- campaign / leader / observe
post /v3/election/campaign "{\"name\":\"$NAME\",\"value\":\"$(b64 v1)\"}"
LEADER=$(printf '%s' "$BODY" | jget 'json.dumps(d["leader"], separators=(",", ":"))' 2>/dev/null)
LEASE=$(printf '%s' "$BODY" | jget 'd["leader"]["lease"]' 2>/dev/null)
KEY=$(printf '%s' "$BODY" | jget 'b(d["leader"]["key"])' 2>/dev/null)
HEX=$(python3 -c 'import sys; print("%x" % int(sys.argv[1]))' "${LEASE:-0}" 2>/dev/null)
check_eq campaign "200 el/gw 2 2 el/gw/$HEX" \
    "$CODE $(printf '%s' "$BODY" | jget '"%s %s %s" % (b(d["leader"]["name"]), d["leader"]["rev"], d["header"]["revision"])' 2>/dev/null) $KEY"
ectl lease timetolive "$HEX" >"$_IT_TMP/ttl" 2>&1
check_match campaign-lease ".*remaining\\(([1-5][0-9]|60)s\\).*" "$(cat "$_IT_TMP/ttl")"

post /v3/election/leader "{\"name\":\"$NAME\"}"
check_eq leader "200 el/gw/$HEX v1 2 $LEASE" \
    "$CODE $(printf '%s' "$BODY" | jget '"%s %s %s %s" % (b(d["kv"]["key"]), b(d["kv"]["value"]), d["kv"]["create_revision"], d["kv"]["lease"])' 2>/dev/null)"

curl -s -N --max-time 2 -X POST -d "{\"name\":\"$NAME\"}" "$URL/v3/election/observe" \
    >"$_IT_TMP/observe" 2>/dev/null
check_eq observe "el/gw/$HEX=v1" \
    "$(head -n 1 "$_IT_TMP/observe" | jget '"%s=%s" % (b(d["result"]["kv"]["key"]), b(d["result"]["kv"]["value"]))' 2>/dev/null)"

# ---- proclaim
post /v3/election/proclaim "{\"leader\":$LEADER,\"value\":\"$(b64 v2)\"}"
check_eq proclaim "200 3" "$CODE $(printf '%s' "$BODY" | jget 'd["header"]["revision"]' 2>/dev/null)"
post /v3/election/leader "{\"name\":\"$NAME\"}"
check_eq proclaim-leader "v2 2 3" \
    "$(printf '%s' "$BODY" | jget '"%s %s %s" % (b(d["kv"]["value"]), d["kv"]["create_revision"], d["kv"]["mod_revision"])' 2>/dev/null)"
STALE=$(printf '%s' "$LEADER" | jget 'json.dumps(dict(d, rev="1"), separators=(",", ":"))')
post /v3/election/proclaim "{\"leader\":$STALE,\"value\":\"$(b64 v3)\"}"
check_eq proclaim-stale "500 $(err_body 'election: not leader' 2)" "$CODE $BODY"
post /v3/election/proclaim "{\"value\":\"$(b64 v2)\"}"
check_eq proclaim-no-leader-key "500 $(err_body '\"leader\" field must be provided' 2)" "$CODE $BODY"
post /v3beta/election/resign '{}'
check_eq resign-no-leader-key "500 $(err_body '\"leader\" field must be provided' 2)" "$CODE $BODY"

# ---- resign
post /v3/election/resign "{\"leader\":$LEADER}"
check_eq resign "200 4" "$CODE $(printf '%s' "$BODY" | jget 'd["header"]["revision"]' 2>/dev/null)"
post /v3/election/leader "{\"name\":\"$NAME\"}"
check_eq leader-none "500 $(err_body 'election: no leader' 2)" "$CODE $BODY"
post /v3/election/resign "{\"leader\":$LEADER}"
check_eq resign-again "200 4" "$CODE $(printf '%s' "$BODY" | jget 'd["header"]["revision"]' 2>/dev/null)"

# ---- lock / unlock (and the /v3beta/ aliases)
post /v3beta/lock/lock "{\"name\":\"$(b64 el/lk)\"}"
LKEY=$(printf '%s' "$BODY" | jget 'b(d["key"])' 2>/dev/null)
check_match lock "200 el/lk/[0-9a-f]+ 5" "$CODE $LKEY $(printf '%s' "$BODY" | jget 'd["header"]["revision"]' 2>/dev/null)"
check_eq lock-key "el/lk/$LKEY" "el/lk/$(ectl get --prefix el/lk/ --keys-only | head -n 1)"
post /v3/lock/unlock "{\"key\":\"$(b64 "$LKEY")\"}"
check_eq unlock "200 6" "$CODE $(printf '%s' "$BODY" | jget 'd["header"]["revision"]' 2>/dev/null)"
check_eq unlock-gone "" "$(ectl get --prefix el/lk/ --keys-only)"
post /v3beta/election/campaign "{\"name\":\"$(b64 el/beta)\",\"value\":\"$(b64 x)\"}"
check_eq campaign-beta "200 7" "$CODE $(printf '%s' "$BODY" | jget 'd["leader"]["rev"]' 2>/dev/null)"

# ---- auth: the services call KV/Lease with the caller's token
ectl user add root:toor >/dev/null
ectl user add alice:pw >/dev/null
ectl role add el >/dev/null
ectl role grant-permission el --prefix=true readwrite el/ok/ >/dev/null
ectl user grant-role alice el >/dev/null
ectl auth enable >/dev/null 2>&1
post /v3/auth/authenticate '{"name":"alice","password":"pw"}'
TOKEN=$(printf '%s' "$BODY" | jget 'd.get("token", "")' 2>/dev/null)
post /v3/election/campaign "{\"name\":\"$(b64 el/ok)\",\"value\":\"$(b64 a)\"}"
check_eq auth-no-token "500 $(err_body 'etcdserver: user name is empty' 2)" "$CODE $BODY"
post /v3/election/campaign "{\"name\":\"$(b64 el/no)\",\"value\":\"$(b64 a)\"}" -H "Authorization: $TOKEN"
check_eq auth-denied "500 $(err_body 'etcdserver: permission denied' 2)" "$CODE $BODY"
post /v3/election/campaign "{\"name\":\"$(b64 el/ok)\",\"value\":\"$(b64 a)\"}" -H "Authorization: $TOKEN"
check_eq auth-campaign "200 el/ok" "$CODE $(printf '%s' "$BODY" | jget 'b(d["leader"]["name"])' 2>/dev/null)"
post /v3/lock/lock "{\"name\":\"$(b64 el/ok/lk)\"}" -H "Authorization: $TOKEN"
check_eq auth-lock "200" "$CODE"
ectl --user root:toor auth disable >/dev/null

# ---- gRPC clients
if "$IT_GOBIN/elect" -endpoint "$SRV_ENDPOINT" -prefix el/grpc >"$_IT_TMP/elect.out" 2>&1; then :; fi
while IFS= read -r line; do
    case $line in
        "ok elect/"*) pass "grpc/${line#ok elect/}" ;;
        "not ok elect/"*) n=${line#not ok elect/}; fail "grpc/${n%% *}" "${n#* }" ;;
        *) echo "# $line" ;;
    esac
done <"$_IT_TMP/elect.out"
check_eq grpc-checks 10 "$(grep -c '^ok elect/' "$_IT_TMP/elect.out")"

stop_server
finish
