#!/usr/bin/env bash
# auth-cluster: authentication in a 3-member cluster (etcd's own clustering flags):
# users / roles made and auth enabled through member 1; every member then refuses a
# request without a user and shows identical user / role state (etcdctl --user root
# via each endpoint); a simple token from any member works for a Get on every member
# (raw gRPC with the "token" metadata, go/authcheck cluster), also when used the moment
# Authenticate returned (etcd checks the token of a linearizable Get after the member
# applied everything committed before it; 20 fresh tokens per pair); a permission change or a
# new user / password made through one member is enforced by the others at once; a
# member that was down while the auth state changed catches up on restart; auth
# disabled through member 3 is disabled everywhere.
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

start_cluster 3 || { fail start "3-member cluster did not start"; exit 1; }
pass start-3

RP=rootpw
# m K ARGS...: etcdctl as root through member K; a K ARGS...: as alice
m() { local k=$1; shift; cl_ectl "$k" --user "root:$RP" "$@"; }
a() { local k=$1; shift; cl_ectl "$k" --user alice:apw "$@"; }

# --- set up and enable through member 1
check_out m1-user-add-root "User root created" cl_ectl 1 user add "root:$RP" --interactive=false
check_out m1-role-add-root "Role root created" cl_ectl 1 role add root
check_out m1-grant-root "Role root is granted to user root" cl_ectl 1 user grant-role root root
check_out m1-user-add-alice "User alice created" cl_ectl 1 user add alice:apw --interactive=false
check_out m1-role-add-app "Role app created" cl_ectl 1 role add app
check_out m1-grant-permission "Role app updated" cl_ectl 1 role grant-permission app readwrite --prefix a/
check_out m1-grant-role "Role app is granted to user alice" cl_ectl 1 user grant-role alice app
check_out m1-put "OK" cl_ectl 1 put a/1 v1
check_out m1-auth-enable "Authentication Enabled" cl_ectl 1 auth enable

APP_ROLE="Role app
KV Read:
	[a/, a0) (prefix a/)
KV Write:
	[a/, a0) (prefix a/)"
for k in 1 2 3; do
    check_etcdctl_error "m$k-no-user-refused" InvalidArgument "etcdserver: user name is empty" cl_ectl "$k" get a/1
    check_out "m$k-user-list" "alice
root" m "$k" user list
    check_out "m$k-role-list" "app
root" m "$k" role list
    check_out "m$k-role-get" "$APP_ROLE" m "$k" role get app
    check_out "m$k-user-get" "User: alice
Roles: app" m "$k" user get alice
    check_out "m$k-alice-get" "v1" a "$k" get a/1 --print-value-only
    check_etcdctl_error "m$k-alice-denied" PermissionDenied "etcdserver: permission denied" a "$k" get b/1
done

# --- simple tokens from each member, used on every member (raw gRPC "token" metadata)
eps="${CL_EP[1]},${CL_EP[2]},${CL_EP[3]}"
timeout 120 "$AUTHCHECK" cluster -endpoints "$eps" -key a/1 -want v1 >"$_IT_TMP/cluster.out" 2>&1
rc=$?
cat "$_IT_TMP/cluster.out"
IT_CHECKS=$((IT_CHECKS + $(grep -c '^ok \|^not ok ' "$_IT_TMP/cluster.out")))
IT_FAILS=$((IT_FAILS + $(grep -c '^not ok ' "$_IT_TMP/cluster.out")))
if [ $rc -ne 0 ] && ! grep -q '^not ok ' "$_IT_TMP/cluster.out"; then
    fail cluster/exit "authcheck cluster exited with status $rc"
fi
# the same with a token etcdctl-independent: Authenticate at m1, print the token
tok=$(timeout 60 "$AUTHCHECK" token -endpoints "${CL_EP[1]}" -user alice -password apw)
check_match m1-token-simple '[a-zA-Z]{16}\.[0-9]+' "$tok"

# --- a permission change through member 2 is enforced by members 3 and 1
check_out m2-revoke-permission "Permission of range [a/, a0) is revoked from role app" \
    m 2 role revoke-permission app a/ --prefix
for k in 3 1; do
    check_etcdctl_error "m$k-after-m2-revoke-get" PermissionDenied "etcdserver: permission denied" a "$k" get a/1
    check_etcdctl_error "m$k-after-m2-revoke-put" PermissionDenied "etcdserver: permission denied" a "$k" put a/1 x
done
check_out m3-grant-read "Role app updated" m 3 role grant-permission app read --prefix a/
for k in 1 2; do
    check_out "m$k-after-m3-grant-read" "v1" a "$k" get a/1 --print-value-only
    check_etcdctl_error "m$k-after-m3-grant-read-put" PermissionDenied "etcdserver: permission denied" a "$k" put a/1 x
done
check_out m1-grant-readwrite "Role app updated" m 1 role grant-permission app readwrite --prefix a/
for k in 2 3; do
    check_out "m$k-after-m1-grant-readwrite" OK a "$k" put "a/from-m$k" x
done

# --- users and passwords across members
check_out m3-user-add "User bob created" m 3 user add bob:bpw --interactive=false
check_out m3-grant-bob "Role app is granted to user bob" m 3 user grant-role bob app
check_out m1-bob-works "v1" cl_ectl 1 --user bob:bpw get a/1 --print-value-only
check_out m2-passwd-bob "Password updated" bash -c "printf 'bpw2\n' | etcdctl --endpoints=${CL_EP[2]} --user root:$RP user passwd bob --interactive=false"
for k in 1 3; do
    check_ctl_output "m$k-bob-old-password" 2 "" InvalidArgument \
        "etcdserver: authentication failed, invalid user ID or password" \
        "Error: etcdserver: authentication failed, invalid user ID or password" \
        cl_ectl "$k" --user bob:bpw get a/1
    check_out "m$k-bob-new-password" "v1" cl_ectl "$k" --user bob:bpw2 get a/1 --print-value-only
done

# --- a member down while the auth state changes catches up when it comes back
kill_member 3 TERM
check_out m1-while-m3-down-role-add "Role ro created" m 1 role add ro
check_out m1-while-m3-down-grant "Role ro updated" m 1 role grant-permission ro read --prefix r/
check_out m1-while-m3-down-user-add "User carol created" m 1 user add carol:cpw --interactive=false
check_out m1-while-m3-down-grant-role "Role ro is granted to user carol" m 1 user grant-role carol ro
check_out m1-while-m3-down-revoke-bob "Role app is revoked from user bob" m 1 user revoke-role bob app
restart_member 3 --nowait
up=0
end=$((SECONDS + 90))
while [ $SECONDS -lt $end ]; do
    kill -0 "${CL_PID[3]}" 2>/dev/null || break
    if m 3 endpoint health >/dev/null 2>&1; then up=1; break; fi
    sleep 0.5
done
check_eq m3-restarted-with-auth 1 "$up"
if [ "$up" = 1 ]; then
    check_out m3-caught-up-users "alice
bob
carol
root" m 3 user list
    check_out m3-caught-up-role "Role ro
KV Read:
	[r/, r0) (prefix r/)
KV Write:" m 3 role get ro
    check_out m3-caught-up-user-roles "User: carol
Roles: ro" m 3 user get carol
    check_etcdctl_error m3-caught-up-revocation PermissionDenied "etcdserver: permission denied" \
        cl_ectl 3 --user bob:bpw2 get a/1
    check_etcdctl_error m3-still-enabled InvalidArgument "etcdserver: user name is empty" cl_ectl 3 get a/1
fi

# --- auth disabled through member 3: disabled everywhere
check_out m3-auth-disable "Authentication Disabled" m 3 auth disable
for k in 1 2 3; do
    check_out "m$k-disabled-no-user-get" "v1" cl_ectl "$k" get a/1 --print-value-only
    check_out "m$k-disabled-no-user-user-list" "alice
bob
carol
root" cl_ectl "$k" user list
done

stop_cluster
finish
