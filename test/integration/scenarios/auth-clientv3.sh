#!/usr/bin/env bash
# auth-clientv3: the Go clientv3 program go/authcheck (built here: run.sh's own list does
# not name it) against fresh servers; its "ok authcheck/SUB/NAME" lines are this
# scenario's checks:
#   - simple tokens (default): enable (AuthEnable refused without root user / root
#     role, Authenticate while disabled, users and roles created, auth enabled), client
#     (a: clientv3 Username/Password inside and outside the permissions, errors ==
#     rpctypes values, raw Authenticate / token / status codes; etcd 3.4.23's txn RBAC
#     holes - nested txn, prev_kv and lease of a txn put - are printed as "# observed"
#     lines, not checked), watch (b: an open watch outlives the revocation of its
#     permission, new watches are refused with etcd's cancel_reason text), rolechange
#     (c: role granted / revoked, password changed, user deleted under an open client),
#     wrongpw (e: bad credentials at clientv3.New);
#   - --auth-token-ttl 2: ttl (d: a token in use is kept, an idle one expires, an idle
#     clientv3 client re-authenticates);
#   - --auth-token jwt,pub-key=..,priv-key=..,sign-method=RS256,ttl=2s with an RSA 2048
#     key pair made by the openssl CLI here: jwt (f: token shape and claims, tampered
#     tokens, expiry, re-authentication), rolechange -jwt (a JWT carries its auth
#     revision: old tokens get "revision of auth store is old").
. "$(dirname "$0")/../lib.sh"

# lib.sh's build_go_prog prints the binary's path (or the build log as "#" lines)
if bout=$(build_go_prog authcheck); then
    AUTHCHECK=$(printf '%s\n' "$bout" | tail -n 1)
    [ -x "$AUTHCHECK" ] || AUTHCHECK=$IT_GOBIN/authcheck
    pass build-authcheck
else
    printf '%s\n' "$bout"
    fail build-authcheck "go build of go/authcheck failed"
    exit 1
fi

# acheck SUB ARGS...: run `authcheck SUB -endpoints <server> ARGS` (bounded), pass its
# lines through and count them.
acheck() {
    local cmd=$1 out=$1 a prev=
    shift
    for a in "$@"; do
        [ "$prev" = -as ] && out=$a
        prev=$a
    done
    timeout 300 "$AUTHCHECK" "$cmd" -endpoints "$SRV_ENDPOINT" "$@" >"$_IT_TMP/$out.out" 2>&1 &
    local pid=$!
    track_pid "$pid"
    wait "$pid"
    local rc=$?
    untrack_pid "$pid"
    cat "$_IT_TMP/$out.out"
    IT_CHECKS=$((IT_CHECKS + $(grep -c '^ok \|^not ok ' "$_IT_TMP/$out.out")))
    IT_FAILS=$((IT_FAILS + $(grep -c '^not ok ' "$_IT_TMP/$out.out")))
    if [ $rc -ne 0 ] && ! grep -q '^not ok ' "$_IT_TMP/$out.out"; then
        fail "$out/exit" "authcheck $cmd exited with status $rc"
    fi
    return $rc
}

# --- simple tokens
start_server || { fail start "server did not start"; exit 1; }
if acheck enable; then
    acheck client
    acheck watch
    acheck rolechange
    acheck wrongpw
fi
stop_server

# --- simple tokens with a 2 s TTL
start_server -- --auth-token-ttl 2 || { fail start-ttl "server did not start"; exit 1; }
acheck enable -as enable-ttl && acheck ttl
stop_server

# --- JWT (RS256), keys made now
KEYS=$_IT_TMP/jwt
mkdir -p "$KEYS"
if openssl genrsa -out "$KEYS/priv.pem" 2048 >"$KEYS/openssl.log" 2>&1 &&
    openssl rsa -in "$KEYS/priv.pem" -pubout -out "$KEYS/pub.pem" >>"$KEYS/openssl.log" 2>&1; then
    pass jwt-keys
else
    fail jwt-keys "openssl failed" "$(cat "$KEYS/openssl.log")"
    exit 1
fi
start_server -- --auth-token "jwt,pub-key=$KEYS/pub.pem,priv-key=$KEYS/priv.pem,sign-method=RS256,ttl=2s" ||
    { fail start-jwt "server did not start"; exit 1; }
if acheck enable -as enable-jwt; then
    acheck jwt
    acheck rolechange -jwt -as rolechange-jwt
fi
stop_server
finish
