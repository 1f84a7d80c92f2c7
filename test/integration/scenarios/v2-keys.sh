#!/usr/bin/env bash
# v2-keys: etcd 3.4's /v2/keys with --enable-v2, through Debian's etcdctl
# (ETCDCTL_API=2) and curl, with etcd 3.4's answers (indexes are compared
# relative to each other: etcd's own member records move the v2 index):
#   one member  etcdctl set/get/mk/update/rm/mkdir/rmdir/ls, curl set (201 then
#               200 with prevNode), prevExist=false (412 105), compareAndSwap
#               (412 101 with etcd's cause, then 200), compareAndDelete, POST
#               in-order keys (20-digit names, sorted), hidden keys left out of
#               listings, recursive get, a non-empty dir (403 108), bad
#               parameters (400 203 / 209 / 201), X-Etcd-Index = modifiedIndex,
#               a TTL key expiring (404 100), wait=true answered by the next
#               write, waitIndex answered from the history, and the store
#               surviving a restart;
#   3 members   a write on one member read on another (quorum=true at once,
#               a local read once it applied), a watch on a third member woken
#               by that write, a TTL key expiring on every member, and a member
#               that was down catching up (metastore: through a raft snapshot,
#               --snapshot-count 20) with every v2 key and the same v2 index.
. "$(dirname "$0")/../lib.sh"

v2ctl() {
    local ep=$1
    shift
    ETCDCTL_API=2 etcdctl --endpoints "$ep" --total-timeout 20s "$@"
}

# req NAME-OF-OUT METHOD URL [curl args...]: status in $CODE, body in $BODY,
# headers in $_IT_TMP/hdr.
req() {
    local method=$1 url=$2
    shift 2
    CODE=$(curl -s -D "$_IT_TMP/hdr" -o "$_IT_TMP/body" -w '%{http_code}' --max-time 10 \
        -X "$method" "$@" "$url")
    BODY=$(cat "$_IT_TMP/body")
}

# the node's fields without indexes, as "key=value ..." (python over $BODY)
fields() {
    printf '%s' "$BODY" | jget "$1"
}

# ---------------------------------------------------------------- one member
start_server -- --enable-v2 || { fail start "server did not start"; exit 1; }
pass start
EP=$SRV_CLIENT_URL

check_eq ctl-set "bar" "$(v2ctl "$EP" set /foo bar 2>&1)"
check_eq ctl-get "bar" "$(v2ctl "$EP" get /foo 2>&1)"
check_match ctl-mk-exists 'Error:  105: Key already exists \(/foo\) \[[0-9]+\]' "$(v2ctl "$EP" mk /foo bar 2>&1)"
check_eq ctl-update "baz" "$(v2ctl "$EP" update /foo baz 2>&1)"
check_match ctl-update-missing 'Error:  100: Key not found \(/nope\) \[[0-9]+\]' "$(v2ctl "$EP" update /nope x 2>&1)"

req PUT "$EP/v2/keys/k1" -d value=one
check_eq curl-set-new "201 set /k1 one" "$CODE $(fields 'd["action"] + " " + d["node"]["key"] + " " + d["node"]["value"]')"
IDX1=$(fields 'd["node"]["modifiedIndex"]')
check_eq curl-set-index-header "$IDX1" "$(tr -d '\r' <"$_IT_TMP/hdr" | sed -n 's/^X-Etcd-Index: //ip')"
check_eq curl-set-created-eq-modified "$IDX1" "$(fields 'd["node"]["createdIndex"]')"
check_eq curl-set-content-type "application/json" "$(tr -d '\r' <"$_IT_TMP/hdr" | sed -n 's/^Content-Type: //ip')"
req PUT "$EP/v2/keys/k1" -d value=two
check_eq curl-set-replace "200 set two one $((IDX1 + 1))" \
    "$CODE $(fields 'd["action"] + " " + d["node"]["value"] + " " + d["prevNode"]["value"] + " " + str(d["node"]["modifiedIndex"])')"
req PUT "$EP/v2/keys/k1?prevExist=false" -d value=x
check_eq create-exists "412 {\"errorCode\":105,\"message\":\"Key already exists\",\"cause\":\"/k1\",\"index\":$((IDX1 + 1))}" "$CODE $BODY"
req PUT "$EP/v2/keys/k1?prevValue=wrong" -d value=x
check_eq cas-fail "412 {\"errorCode\":101,\"message\":\"Compare failed\",\"cause\":\"[wrong != two]\",\"index\":$((IDX1 + 1))}" "$CODE $BODY"
req PUT "$EP/v2/keys/k1?prevValue=two" -d value=three
check_eq cas-ok "200 compareAndSwap three two" "$CODE $(fields 'd["action"] + " " + d["node"]["value"] + " " + d["prevNode"]["value"]')"
req PUT "$EP/v2/keys/k1?prevIndex=1" -d value=x
check_eq cas-index-fail "412 101 [1 != $((IDX1 + 2))]" "$CODE $(fields 'str(d["errorCode"]) + " " + d["cause"]')"
req DELETE "$EP/v2/keys/k1?prevValue=nope"
check_eq cad-fail "412 101" "$CODE $(fields 'str(d["errorCode"])')"
req DELETE "$EP/v2/keys/k1?prevIndex=$((IDX1 + 2))"
check_eq cad-ok "200 compareAndDelete /k1 three" "$CODE $(fields 'd["action"] + " " + d["node"]["key"] + " " + d["prevNode"]["value"]')"
req GET "$EP/v2/keys/k1"
check_eq get-deleted "404 100 Key not found /k1" "$CODE $(fields 'str(d["errorCode"]) + " " + d["message"] + " " + d["cause"]')"

# in-order keys, hidden keys, listings
req POST "$EP/v2/keys/queue" -d value=first
Q1=$(fields 'd["node"]["key"]')
check_match post-inorder '201 /queue/[0-9]{20}' "$CODE $Q1"
req POST "$EP/v2/keys/queue" -d value=second
Q2=$(fields 'd["node"]["key"]')
check_true post-inorder-increasing "$Q2 <= $Q1" test "$Q2" \> "$Q1"
v2ctl "$EP" set /queue/_hidden h >/dev/null 2>&1
req GET "$EP/v2/keys/queue?sorted=true"
check_eq list-sorted-hidden "first second" "$(fields '" ".join(n["value"] for n in d["node"]["nodes"])')"
check_eq get-hidden "h" "$(v2ctl "$EP" get /queue/_hidden 2>&1)"
v2ctl "$EP" mkdir /dir >/dev/null 2>&1
v2ctl "$EP" set /dir/sub/leaf x >/dev/null 2>&1
check_eq ctl-ls "/dir
/foo
/queue" "$(v2ctl "$EP" ls --sort / 2>&1)"
check_eq ctl-ls-recursive "/dir/sub
/dir/sub/leaf" "$(v2ctl "$EP" ls --sort --recursive /dir 2>&1)"
req GET "$EP/v2/keys/dir?recursive=true"
check_eq get-recursive "/dir True /dir/sub /dir/sub/leaf x" \
    "$(fields 'd["node"]["key"] + " " + str(d["node"]["dir"]) + " " + d["node"]["nodes"][0]["key"] + " " + d["node"]["nodes"][0]["nodes"][0]["key"] + " " + d["node"]["nodes"][0]["nodes"][0]["value"]')"
req DELETE "$EP/v2/keys/dir?dir=true"
check_eq rmdir-not-empty "403 108 Directory not empty /dir" "$CODE $(fields 'str(d["errorCode"]) + " " + d["message"] + " " + d["cause"]')"
req DELETE "$EP/v2/keys/dir"
check_eq rm-dir-not-file "403 102 Not a file" "$CODE $(fields 'str(d["errorCode"]) + " " + d["message"]')"
check_eq ctl-rm-recursive "" "$(v2ctl "$EP" rm --recursive /dir 2>&1)"
check_match ctl-get-gone 'Error:  100: Key not found \(/dir\) \[[0-9]+\]' "$(v2ctl "$EP" get /dir/sub/leaf 2>&1)"
check_eq ctl-rm "PrevNode.Value: baz" "$(v2ctl "$EP" rm /foo 2>&1)"

# bad parameters
req PUT "$EP/v2/keys/p?prevIndex=abc" -d value=x
check_eq bad-prev-index "400 {\"errorCode\":203,\"message\":\"The given index in POST form is not a number\",\"cause\":\"invalid value for \\\"prevIndex\\\"\",\"index\":0}" "$CODE $BODY"
req GET "$EP/v2/keys/p?recursive=maybe"
check_eq bad-bool "400 209 invalid value for \"recursive\"" "$CODE $(fields 'str(d["errorCode"]) + " " + d["cause"]')"
req PUT "$EP/v2/keys/p?prevValue=" -d value=x
check_eq empty-prev-value "400 201" "$CODE $(fields 'str(d["errorCode"])')"
req PUT "$EP/v2/keys/p?ttl=x" -d value=x
check_eq bad-ttl "400 202" "$CODE $(fields 'str(d["errorCode"])')"
req PATCH "$EP/v2/keys/p"
check_eq method-not-allowed "405" "$CODE"

# TTL
req PUT "$EP/v2/keys/ttlkey" -d value=t -d ttl=1
check_eq ttl-set "201 1" "$CODE $(fields 'str(d["node"]["ttl"])')"
got=
for i in $(seq 1 40); do
    req GET "$EP/v2/keys/ttlkey"
    got="$CODE $(fields 'str(d.get("errorCode"))')"
    [ "$got" = "404 100" ] && break
    sleep 0.25
done
check_eq ttl-expired "404 100" "$got"

# wait=true: answered by the next write; waitIndex: from the history
curl -s --max-time 15 "$EP/v2/keys/watched?wait=true" >"$_IT_TMP/watch1" 2>/dev/null &
WPID=$!
sleep 1
req PUT "$EP/v2/keys/watched" -d value=hello
WIDX=$(fields 'd["node"]["modifiedIndex"]')
wait "$WPID"
BODY=$(cat "$_IT_TMP/watch1")
check_eq watch-live "set /watched hello $WIDX" "$(fields 'd["action"] + " " + d["node"]["key"] + " " + d["node"]["value"] + " " + str(d["node"]["modifiedIndex"])')"
req PUT "$EP/v2/keys/watched" -d value=later
req GET "$EP/v2/keys/watched?wait=true&waitIndex=$WIDX"
check_eq watch-history "200 hello $WIDX" "$CODE $(fields 'd["node"]["value"] + " " + str(d["node"]["modifiedIndex"])')"
curl -s --max-time 15 "$EP/v2/keys/wdir?wait=true&recursive=true" >"$_IT_TMP/watch2" 2>/dev/null &
WPID=$!
sleep 1
v2ctl "$EP" set /wdir/_hidden x >/dev/null 2>&1
v2ctl "$EP" set /wdir/a/b y >/dev/null 2>&1
wait "$WPID"
BODY=$(cat "$_IT_TMP/watch2")
check_eq watch-recursive-skips-hidden "/wdir/a/b y" "$(fields 'd["node"]["key"] + " " + d["node"]["value"]')"

# restart
stop_server
restart_server || fail restart "server did not restart"
check_eq restart-get "later" "$(v2ctl "$EP" get /watched 2>&1)"
check_eq restart-queue "first second" "$(curl -s "$EP/v2/keys/queue?sorted=true" | jget '" ".join(n["value"] for n in d["node"]["nodes"])')"
stop_server

# ---------------------------------------------------------------- three members
start_cluster 3 --enable-v2 --snapshot-count 20 || { fail cluster-start "3-member cluster did not start"; finish; exit; }
pass cluster-start
req PUT "${CL_CURL[1]}/v2/keys/cfoo" -d value=cbar
CIDX=$(fields 'd["node"]["modifiedIndex"]')
check_eq cluster-set "201 cbar" "$CODE $(fields 'd["node"]["value"]')"
check_eq cluster-quorum-get "cbar" "$(v2ctl "${CL_CURL[2]}" --no-sync get --quorum /cfoo 2>&1)"
got=
for i in $(seq 1 40); do
    got=$(curl -s "${CL_CURL[3]}/v2/keys/cfoo" | jget 'd["node"]["value"] + " " + str(d["node"]["modifiedIndex"])' 2>/dev/null)
    [ "$got" = "cbar $CIDX" ] && break
    sleep 0.25
done
check_eq cluster-local-get "cbar $CIDX" "$got"
curl -s --max-time 15 "${CL_CURL[3]}/v2/keys/cw?wait=true" >"$_IT_TMP/watch3" 2>/dev/null &
WPID=$!
sleep 1
v2ctl "${CL_CURL[1]}" --no-sync set /cw woken >/dev/null 2>&1
wait "$WPID"
BODY=$(cat "$_IT_TMP/watch3")
check_eq cluster-watch "set woken" "$(fields 'd["action"] + " " + d["node"]["value"]')"
req PUT "${CL_CURL[2]}/v2/keys/cttl" -d value=t -d ttl=1
all=
for i in $(seq 1 40); do
    all=
    for k in 1 2 3; do
        all="$all $(curl -s -o /dev/null -w '%{http_code}' "${CL_CURL[$k]}/v2/keys/cttl")"
    done
    [ "$all" = " 404 404 404" ] && break
    sleep 0.25
done
check_eq cluster-ttl-expired " 404 404 404" "$all"

# a member that was down catches up (metastore: by a raft snapshot, the log having
# been compacted past it; etcd keeps 5000 entries for it) with the v2 store
kill_member 3
# m3 may have been the leader: a put can fail until a new one is elected, so
# each put is retried until it is acknowledged
for i in $(seq 1 60); do
    for try in $(seq 1 40); do
        code=$(curl -s -o /dev/null -w '%{http_code}' -X PUT "${CL_CURL[1]}/v2/keys/snap/k$i" -d value=v$i)
        [ "$code" = 200 ] || [ "$code" = 201 ] && break
        sleep 0.25
    done
done
req GET "${CL_CURL[1]}/v2/keys/snap/k60"
SIDX=$(fields 'd["node"]["modifiedIndex"]')
restart_member 3 || fail member-restart "member 3 did not restart"
got=
for i in $(seq 1 60); do
    got=$(curl -s "${CL_CURL[3]}/v2/keys/snap/k60" | jget 'd["node"]["value"] + " " + str(d["node"]["modifiedIndex"])' 2>/dev/null)
    [ "$got" = "v60 $SIDX" ] && break
    sleep 0.25
done
check_eq snapshot-catch-up "v60 $SIDX" "$got"
echo "# m3 installed a raft snapshot: $(grep -c "applied incoming Raft snapshot" "${CL_LOG[3]}") time(s)"
check_eq snapshot-catch-up-all "60 v1" "$(curl -s "${CL_CURL[3]}/v2/keys/snap?sorted=true" | jget 'str(len(d["node"]["nodes"])) + " " + [n["value"] for n in d["node"]["nodes"] if n["key"] == "/snap/k1"][0]')"
check_eq snapshot-same-index "$(curl -s -D - -o /dev/null "${CL_CURL[1]}/v2/keys/snap" | tr -d '\r' | sed -n 's/^X-Etcd-Index: //ip')" \
    "$(curl -s -D - -o /dev/null "${CL_CURL[3]}/v2/keys/snap" | tr -d '\r' | sed -n 's/^X-Etcd-Index: //ip')"
finish
