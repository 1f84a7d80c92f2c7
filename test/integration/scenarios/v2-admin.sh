#!/usr/bin/env bash
# v2-admin: etcd 3.4's v2 HTTP API other than /v2/keys, with --enable-v2, through
# Debian's etcdctl (ETCDCTL_API=2) and curl, with etcd 3.4's answers:
#   members   GET /v2/members (etcd's JSON), /v2/members/leader, /v2/machines,
#             error texts (415 bad Content-Type, 404 unknown or malformed id, 405);
#   stats     /v2/stats/self, /v2/stats/leader, /v2/stats/store fields; 405 for POST;
#   auth      etcdctl role add/grant/get/list, user add/grant/get/list, the
#             "duplicate" error of a second grant, auth enable without and with a
#             root user, 401 "Insufficient credentials" without or with wrong
#             basic-auth credentials once enabled, root's built-in role, the guest
#             role made by enable, all of it kept across a restart, auth disable;
#   cn        https with --client-cert-auth: the client certificate chain's CN
#             (etcd's fixtures: the CA's CN "ca") names the user for /v2/keys
#             and auth calls, basic auth wins over it;
#   off       without --enable-v2 every /v2 path is 404 "404 page not found";
#   cluster   3 members: etcdctl cluster-health healthy; a user added on one
#             member appears on the others; /v2/stats/leader 403 "not
#             current leader" on a follower and two followers on the leader; POST
#             /v2/members adds a member (201), PUT updates its peer URLs (204), a
#             duplicate peer URL is 409 "membership: peerURL exists", DELETE removes
#             it (204) and a second DELETE is 410/404; cluster-health "cluster is
#             degraded" with one member down and "cluster is unavailable" with two.
. "$(dirname "$0")/../lib.sh"

# v2ctl ENDPOINT ARGS...: etcdctl's v2 API.
v2ctl() {
    local ep=$1
    shift
    ETCDCTL_API=2 etcdctl --endpoints "$ep" --total-timeout 20s "$@"
}

# http_check NAME WANT-CODE WANT-BODY curl-args...: status and exact body.
http_check() {
    local name=$1 code=$2 body=$3 out got
    shift 3
    out=$(curl -s -o "$_IT_TMP/body" -w '%{http_code}' --max-time 10 "$@" 2>"$_IT_TMP/curl.err")
    got=$(cat "$_IT_TMP/body" 2>/dev/null)
    if [ "$out" = "$code" ] && [ "$got" = "$body" ]; then
        pass "$name"
    else
        fail "$name" "status $out, want $code" "body: $(_short "$got")" "want: $(_short "$body")"
    fi
}

# ---- one member, --enable-v2
start_server -- --enable-v2 || { fail start "server did not start"; exit 1; }
pass start
EP=$SRV_CLIENT_URL
MID=$(ectl -w json endpoint status | jget '"%x" % d[0]["Status"]["header"]["member_id"]')

check_eq members-json "[{\"id\": \"$MID\", \"name\": \"it-member\", \"peerURLs\": [\"$SRV_PEER_URL\"], \"clientURLs\": [\"$EP\"]}]" \
    "$(curl -s "$EP/v2/members" | jget 'json.dumps(d["members"])')"
check_eq members-leader "$MID it-member" "$(curl -s "$EP/v2/members/leader" | jget 'd["id"] + " " + d["name"]')"
check_eq machines "$EP" "$(curl -s "$EP/v2/machines")"
http_check members-bad-ctype 415 '{"message":"Bad Content-Type text/plain, accept application/json"}' \
    -X POST -H 'Content-Type: text/plain' -d '{}' "$EP/v2/members"
http_check members-bad-id 404 '{"message":"No such member: zz"}' -X DELETE "$EP/v2/members/zz"
http_check members-unknown-id 404 '{"message":"No such member: 123"}' -X DELETE "$EP/v2/members/123"
http_check members-delete-no-id 405 'Method Not Allowed' -X DELETE "$EP/v2/members"
http_check members-patch 405 'Method Not Allowed' -X PATCH "$EP/v2/members"
http_check members-sub-unknown 404 '{"message":"Not found"}' "$EP/v2/members/foo"

check_eq stats-self "it-member $MID StateLeader $MID" \
    "$(curl -s "$EP/v2/stats/self" | jget 'd["name"] + " " + d["id"] + " " + d["state"] + " " + d["leaderInfo"]["leader"]')"
check_eq stats-self-fields "leaderInfo name recvAppendRequestCnt sendAppendRequestCnt startTime" \
    "$(curl -s "$EP/v2/stats/self" | jget '" ".join(sorted(k for k in d if k not in ("id","state")))')"
check_eq stats-leader "$MID {}" "$(curl -s "$EP/v2/stats/leader" | jget 'd["leader"] + " " + json.dumps(d["followers"])')"
check_eq stats-store "compareAndDeleteFail compareAndDeleteSuccess compareAndSwapFail compareAndSwapSuccess createFail createSuccess deleteFail deleteSuccess expireCount getsFail getsSuccess setsFail setsSuccess updateFail updateSuccess watchers" \
    "$(curl -s "$EP/v2/stats/store" | jget '" ".join(sorted(d))')"
http_check stats-post 405 'Method Not Allowed' -X POST "$EP/v2/stats/self"

# auth through etcdctl v2
check_eq role-add "Role foo created" "$(v2ctl "$EP" role add foo 2>&1)"
check_eq user-add "User username created" "$(v2ctl "$EP" user add username:password 2>&1)"
check_eq user-grant "User username updated" "$(v2ctl "$EP" user grant --roles foo username 2>&1)"
check_eq user-get "User: username
Roles:  foo" "$(v2ctl "$EP" user get username 2>&1)"
out=$(v2ctl "$EP" user grant --roles foo username 2>&1)
rc=$?
check_eq user-grant-duplicate "1 auth: Granting duplicate role foo for user username" "$rc $out"
check_eq role-grant "Role foo updated" "$(v2ctl "$EP" role grant --rw --path=/foo foo 2>&1)"
check_eq role-get "Role: foo
KV Read:
	/foo
KV Write:
	/foo" "$(v2ctl "$EP" role get foo 2>&1)"
check_eq role-list "foo
root" "$(v2ctl "$EP" role list 2>&1)"
check_eq users-json '{"users": [{"user": "username", "roles": [{"role": "foo", "permissions": {"kv": {"read": ["/foo"], "write": ["/foo"]}}}]}]}' \
    "$(curl -s "$EP/v2/auth/users" | jget 'json.dumps(d)')"
http_check auth-enabled-false 200 '{"enabled":false}' "$EP/v2/auth/enable"
out=$(v2ctl "$EP" auth enable 2>&1)
check_eq auth-enable-no-root "auth: No root user available, please create one" "$out"
check_eq user-add-root "User root created" "$(v2ctl "$EP" user add root:123 2>&1)"
check_eq user-list "root
username" "$(v2ctl "$EP" user list 2>&1)"
check_eq auth-enable "Authentication Enabled" "$(v2ctl "$EP" auth enable 2>&1)"
http_check auth-enabled-true 200 '{"enabled":true}' "$EP/v2/auth/enable"
http_check users-no-creds 401 '{"message":"Insufficient credentials"}' "$EP/v2/auth/users"
http_check users-wrong-password 401 '{"message":"Insufficient credentials"}' -u root:nope "$EP/v2/auth/users"
http_check users-non-root 401 '{"message":"Insufficient credentials"}' -u username:password "$EP/v2/auth/users"
check_eq users-root "root username" "$(curl -s -u root:123 "$EP/v2/auth/users" | jget '" ".join(u["user"] for u in d["users"])')"
check_eq guest-role '{"role": "guest", "permissions": {"kv": {"read": ["/*"], "write": ["/*"]}}}' \
    "$(curl -s -u root:123 "$EP/v2/auth/roles/guest" | jget 'json.dumps(d)')"
http_check root-role-delete 403 '{"message":"auth: Cannot modify role root: is root role."}' \
    -u root:123 -X DELETE "$EP/v2/auth/roles/root"
http_check root-user-delete 403 '{"message":"auth: Cannot delete root user while auth is enabled."}' \
    -u root:123 -X DELETE "$EP/v2/auth/users/root"
http_check members-write-needs-root 401 '{"message":"Insufficient credentials"}' \
    -X DELETE "$EP/v2/members/123"
# the v2 store is durable: users, roles and the flag survive a restart
stop_server
restart_server || fail restart "server did not restart"
check_eq restart-users "root username" "$(curl -s -u root:123 "$EP/v2/auth/users" | jget '" ".join(u["user"] for u in d["users"])')"
http_check restart-still-enabled 200 '{"enabled":true}' "$EP/v2/auth/enable"
check_eq auth-disable "Authentication Disabled" "$(v2ctl "$EP" -u root:123 auth disable 2>&1)"
http_check auth-enabled-false-again 200 '{"enabled":false}' "$EP/v2/auth/enable"
stop_server

# ---- https with --client-cert-auth: a certificate's CN names the v2 user (etcd
# walks the verified chain: the leaf's CN, then its CA's). etcd's own test
# fixtures: server.crt (CN example.com) signed by ca.crt (CN ca).
FX=/usr/share/gocode/src/go.etcd.io/etcd/integration/fixtures
if [ -r "$FX/server.key.insecure" ]; then
    read -r cp pp < <(free_ports 2)
    TD=$(mktemp -d "$_IT_TMP/cn.XXXXXX")
    rmdir "$TD"
    "$IT_SERVER" --name cn --data-dir "$TD" --listen-client-urls "https://127.0.0.1:$cp" \
        --advertise-client-urls "https://127.0.0.1:$cp" --listen-peer-urls "http://127.0.0.1:$pp" \
        --initial-advertise-peer-urls "http://127.0.0.1:$pp" --initial-cluster "cn=http://127.0.0.1:$pp" \
        --enable-v2 --client-cert-auth --trusted-ca-file "$FX/ca.crt" --cert-file "$FX/server.crt" \
        --key-file "$FX/server.key.insecure" >"$TD.log" 2>&1 &
    CNPID=$!
    track_pid "$CNPID"
    CNEP=https://127.0.0.1:$cp
    cnctl() { v2ctl "$CNEP" --ca-file "$FX/ca.crt" --cert-file "$FX/server.crt" --key-file "$FX/server.key.insecure" "$@"; }
    for i in $(seq 1 40); do
        curl -s --cacert "$FX/ca.crt" --cert "$FX/server.crt" --key "$FX/server.key.insecure" "$CNEP/health" | grep -q true && break
        sleep 0.25
    done
    cnctl role add r >/dev/null 2>&1
    cnctl role grant --rw --path=/foo r >/dev/null 2>&1
    cnctl user add root:123 >/dev/null 2>&1
    cnctl user add ca:1 >/dev/null 2>&1
    cnctl user grant --roles r ca >/dev/null 2>&1
    check_eq cn-auth-enable "Authentication Enabled" "$(cnctl auth enable 2>&1)"
    check_eq cn-allowed-key "x" "$(cnctl set /foo x 2>&1)"
    out=$(cnctl set /bar x 2>&1)
    check_eq cn-refused-key "4 Error:  110: The request requires user authentication (Insufficient credentials) [0]" "$? $out"
    check_eq cn-not-root "Insufficient credentials" "$(cnctl user list 2>&1)"
    check_eq cn-basic-auth-wins "ca
root" "$(cnctl -u root:123 user list 2>&1)"
    _it_stop_pid "$CNPID" TERM
    untrack_pid "$CNPID"
else
    echo "# skip cn: $FX missing (golang-etcd-server-dev)"
fi

# ---- without --enable-v2
start_server || { fail start-nov2 "server did not start"; exit 1; }
for p in members machines stats/self auth/enable auth/users; do
    http_check "off-$(echo "$p" | tr / -)" 404 '404 page not found' "$SRV_CLIENT_URL/v2/$p"
done
stop_server

# ---- three members
start_cluster 3 --enable-v2 || { fail cluster-start "3-member cluster did not start"; finish; exit; }
pass cluster-start
EPS="${CL_CURL[1]},${CL_CURL[2]},${CL_CURL[3]}"
check_eq cluster-health "cluster is healthy" "$(v2ctl "$EPS" cluster-health 2>&1 | tail -1)"
check_eq cluster-members "3" "$(curl -s "${CL_CURL[2]}/v2/members" | jget 'len(d["members"])')"
L=$(wait_leader) || L=1
F=1
[ "$L" = 1 ] && F=2
http_check stats-leader-follower 403 '{"message":"not current leader"}' "${CL_CURL[$F]}/v2/stats/leader"
check_eq stats-leader-followers 2 "$(curl -s "${CL_CURL[$L]}/v2/stats/leader" | jget 'len(d["followers"])')"
check_eq stats-self-follower StateFollower "$(curl -s "${CL_CURL[$F]}/v2/stats/self" | jget 'd["state"]')"

code=
for i in $(seq 1 40); do   # etcd refuses reconfiguration for ~5 s after start (500)
    code=$(curl -s -o "$_IT_TMP/dup.json" -w '%{http_code}' -X POST -H 'Content-Type: application/json' \
        -d "{\"peerURLs\":[\"${CL_PURL[1]}\"]}" "${CL_CURL[$L]}/v2/members")
    [ "$code" = 500 ] || break
    sleep 0.5
done
check_eq member-add-dup '409 {"message":"membership: peerURL exists"}' "$code $(cat "$_IT_TMP/dup.json")"
# v2 auth data is replicated: a user added on one member is seen on the others
check_eq cluster-user-add "User alice created" "$(v2ctl "${CL_CURL[1]}" --no-sync user add alice:pw 2>&1)"
for k in 2 3; do
    got=
    for i in $(seq 1 40); do
        got=$(curl -s "${CL_CURL[$k]}/v2/auth/users/alice")
        [ "$got" = '{"user":"alice"}' ] && break
        sleep 0.25
    done
    check_eq "cluster-user-on-m$k" '{"user":"alice"}' "$got"
done
read -r np1 np2 < <(free_ports 2)
NEWURL=http://127.0.0.1:$np1
code=
for i in $(seq 1 40); do   # etcd refuses reconfiguration for ~5 s after start
    code=$(curl -s -o "$_IT_TMP/add.json" -w '%{http_code}' -X POST -H 'Content-Type: application/json' \
        -d "{\"peerURLs\":[\"$NEWURL\"]}" "${CL_CURL[$F]}/v2/members")
    [ "$code" = 201 ] && break
    sleep 0.5
done
check_eq member-add "201 [\"$NEWURL\"] [] " "$code $(jget 'json.dumps(d["peerURLs"]) + " " + json.dumps(d["clientURLs"]) + " " + d["name"]' <"$_IT_TMP/add.json")"
NID=$(jget 'd["id"]' <"$_IT_TMP/add.json")
check_eq member-listed "1" "$(curl -s "${CL_CURL[1]}/v2/members" | jget 'len([m for m in d["members"] if m["id"] == "'"$NID"'"])')"
http_check member-update 204 '' -X PUT -H 'Content-Type: application/json' \
    -d "{\"peerURLs\":[\"http://127.0.0.1:$np2\"]}" "${CL_CURL[$L]}/v2/members/$NID"
check_eq member-updated "[\"http://127.0.0.1:$np2\"]" \
    "$(curl -s "${CL_CURL[$L]}/v2/members" | jget 'json.dumps([m["peerURLs"] for m in d["members"] if m["id"] == "'"$NID"'"][0])')"
code=
for i in $(seq 1 40); do
    code=$(curl -s -o /dev/null -w '%{http_code}' -X DELETE "${CL_CURL[$L]}/v2/members/$NID")
    [ "$code" = 204 ] && break
    sleep 0.5
done
check_eq member-remove 204 "$code"
code=$(curl -s -o /dev/null -w '%{http_code}' -X DELETE "${CL_CURL[$L]}/v2/members/$NID")
check_match member-remove-again '(404|410)' "$code"

kill_member 1
out=
for i in $(seq 1 20); do
    out=$(v2ctl "$EPS" cluster-health 2>&1 | tail -1)
    [ "$out" = "cluster is degraded" ] && break
    sleep 0.5
done
check_eq cluster-degraded "cluster is degraded" "$out"
kill_member 2
out=
for i in $(seq 1 20); do
    out=$(v2ctl "$EPS" cluster-health 2>&1 | tail -1)
    [ "$out" = "cluster is unavailable" ] && break
    sleep 0.5
done
check_eq cluster-unavailable "cluster is unavailable" "$out"
finish
