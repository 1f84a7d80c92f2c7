#!/usr/bin/env bash
# auth-cert-cn: a client certificate's CommonName as the user (https, --client-cert-auth,
# auth enabled), as etcd 3.4 does it: etcdctl with --cert/--key of a cert whose CN is
# "alice" (a user with a role) and no --user acts withcert alice (her keys work, others are
# refused, she may read herself but not list users); with --user root:PASSWORD as well
# the user wins (a token goes before the certificate); a wrong --user password fails
# even with a good cert; a --no-password user logs in by certificate; CN "root" is
# admin; a CN naming no user is refused (permission denied for keys, "user name not
# found" for admin calls); auth disabled through the root cert opens everything again.
# Certificates: lib.sh's tls_make_certs when present (plus leaf certs for alice, nopw and
# root signed by its CA), else a small PKI made here with the openssl CLI.
# For --target metastore only: if the server refuses https:// at start, the scenario
# prints "# skip" lines and counts nothing.
. "$(dirname "$0")/../lib.sh"

TLS_DIR=$_IT_TMP/pki
mkdir -p "$TLS_DIR"
LOG=$TLS_DIR/openssl-auth.log

# own_pki: ca, server (SAN 127.0.0.1 / localhost, serverAuth+clientAuth), client
# (CN=it-client) when lib.sh has no tls_make_certs.
own_pki() {
    cat >"$TLS_DIR/ext.cnf" <<'CNF'
[ v3_server ]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,keyEncipherment
extendedKeyUsage = serverAuth,clientAuth
subjectAltName = DNS:localhost,IP:127.0.0.1
[ v3_client ]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,keyEncipherment
extendedKeyUsage = clientAuth
CNF
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 3650 \
        -subj /CN=it-ca -keyout "$TLS_DIR/ca.key" -out "$TLS_DIR/ca.crt" >>"$LOG" 2>&1 &&
        leaf server example.com v3_server &&
        leaf client it-client v3_client
}

# leaf NAME CN EXT: NAME.key / NAME.crt signed by ca (EXT from ext.cnf)
leaf() {
    openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=$2" \
        -keyout "$TLS_DIR/$1.key" -out "$TLS_DIR/$1.csr" >>"$LOG" 2>&1 &&
        openssl x509 -req -in "$TLS_DIR/$1.csr" -CA "$TLS_DIR/ca.crt" -CAkey "$TLS_DIR/ca.key" \
            -CAcreateserial -days 365 -extfile "$TLS_DIR/ext.cnf" -extensions "$3" \
            -out "$TLS_DIR/$1.crt" >>"$LOG" 2>&1
}

if declare -F tls_make_certs >/dev/null; then
    tls_make_certs "$TLS_DIR" || { fail pki "tls_make_certs failed" "$(tail -n 20 "$TLS_DIR/openssl.log")"; exit 1; }
    cat >"$TLS_DIR/ext.cnf" <<'CNF'
[ v3_client ]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,keyEncipherment
extendedKeyUsage = clientAuth
CNF
else
    own_pki || { fail pki "openssl failed" "$(tail -n 20 "$LOG")"; exit 1; }
fi
for u in alice nopw root; do
    leaf "$u" "$u" v3_client || { fail "pki-$u" "openssl failed" "$(tail -n 20 "$LOG")"; exit 1; }
done

# --- one member, https client URL, client certificates required
read -r CPORT PPORT < <(free_ports 2)
EP=127.0.0.1:$CPORT
DATA=$_IT_TMP/tls.data
SLOG=$_IT_TMP/tls.log
"$IT_SERVER" --name it-tls --data-dir "$DATA" \
    --listen-client-urls "https://$EP" --advertise-client-urls "https://$EP" \
    --listen-peer-urls "http://127.0.0.1:$PPORT" --initial-advertise-peer-urls "http://127.0.0.1:$PPORT" \
    --initial-cluster "it-tls=http://127.0.0.1:$PPORT" --initial-cluster-state new \
    --cert-file "$TLS_DIR/server.crt" --key-file "$TLS_DIR/server.key" \
    --trusted-ca-file "$TLS_DIR/ca.crt" --client-cert-auth >>"$SLOG" 2>&1 &
SPID=$!
track_pid "$SPID"
up=0
if declare -F wait_tls_healthy >/dev/null; then
    wait_tls_healthy "$SPID" "$EP" --cacert="$TLS_DIR/ca.crt" --cert="$TLS_DIR/client.crt" --key="$TLS_DIR/client.key" && up=1
else
    for i in $(seq 1 120); do
        kill -0 "$SPID" 2>/dev/null || break
        etcdctl --endpoints="https://$EP" --cacert="$TLS_DIR/ca.crt" --cert="$TLS_DIR/client.crt" \
            --key="$TLS_DIR/client.key" --dial-timeout=1s --command-timeout=2s endpoint health >/dev/null 2>&1 &&
            { up=1; break; }
        sleep 0.5
    done
fi
if [ $up = 0 ]; then
    if [ "$IT_TARGET" = metastore ]; then
        echo "# skip auth-cert-cn: metastore did not serve https:// (no TLS support yet?); log tail:"
        tail -n 10 "$SLOG" | sed 's/^/# skip   /'
        exit 0
    fi
    fail start "server did not start with https"
    tail -n 30 "$SLOG" | sed 's/^/#     /'
    exit 1
fi
pass start-https

# withcert NAME ARGS...: etcdctl over https presenting NAME's certificate (NAME.crt / NAME.key)
withcert() {
    local n=$1
    shift
    etcdctl --endpoints="https://$EP" --cacert="$TLS_DIR/ca.crt" --cert="$TLS_DIR/$n.crt" \
        --key="$TLS_DIR/$n.key" --dial-timeout=5s --command-timeout=30s "$@"
}
RP=rootpw
DENIED=(PermissionDenied "etcdserver: permission denied")

# --- users and roles (auth still disabled: any certificate may do this)
check_out user-add-root "User root created" withcert client user add "root:$RP" --interactive=false
check_out role-add-root "Role root created" withcert client role add root
check_out grant-root "Role root is granted to user root" withcert client user grant-role root root
check_out user-add-alice "User alice created" withcert client user add alice:apw --interactive=false
check_out role-add-app "Role app created" withcert client role add app
check_out grant-app "Role app updated" withcert client role grant-permission app readwrite --prefix a/
check_out grant-alice "Role app is granted to user alice" withcert client user grant-role alice app
check_out user-add-nopw "User nopw created" withcert client user add nopw --no-password
check_out grant-nopw "Role app is granted to user nopw" withcert client user grant-role nopw app
check_out put-b "OK" withcert client put b/1 vb
check_out auth-enable "Authentication Enabled" withcert client auth enable

# --- CN alice, no --user: alice
check_out cn-put-permitted OK withcert alice put a/1 v1
check_out cn-get-permitted "v1" withcert alice get a/1 --print-value-only
check_etcdctl_error cn-get-denied "${DENIED[@]}" withcert alice get b/1
check_etcdctl_error cn-put-denied "${DENIED[@]}" withcert alice put b/1 x
check_out cn-user-get-self "User: alice
Roles: app" withcert alice user get alice
check_etcdctl_error cn-user-list-denied "${DENIED[@]}" withcert alice user list
check_ctl_output cn-watch-denied 5 "" - - \
    "watch was canceled (rpc error: code = PermissionDenied desc = etcdserver: permission denied)
Error: watch is canceled by the server" timeout 30 etcdctl --endpoints="https://$EP" \
    --cacert="$TLS_DIR/ca.crt" --cert="$TLS_DIR/alice.crt" --key="$TLS_DIR/alice.key" watch b/1

# --- CN alice with --user: the user wins
check_out cn-and-root-user-list "alice
nopw
root" withcert alice --user "root:$RP" user list
check_out cn-and-root-get-b "vb" withcert alice --user "root:$RP" get b/1 --print-value-only
check_ctl_output cn-and-wrong-password 2 "" InvalidArgument \
    "etcdserver: authentication failed, invalid user ID or password" \
    "Error: etcdserver: authentication failed, invalid user ID or password" \
    withcert alice --user alice:wrong get a/1
# root's certificate with alice's credentials: alice
check_etcdctl_error root-cn-and-alice-user "${DENIED[@]}" withcert root --user alice:apw get b/1

# --- a --no-password user logs in by certificate only
check_out cn-no-password-user "v1" withcert nopw get a/1 --print-value-only
check_etcdctl_error cn-no-password-user-denied "${DENIED[@]}" withcert nopw get b/1

# --- CN root is admin
check_out cn-root-user-list "alice
nopw
root" withcert root user list
check_out cn-root-get-b "vb" withcert root get b/1 --print-value-only

# --- a CN naming no user
check_etcdctl_error cn-unknown-user-get "${DENIED[@]}" withcert client get a/1
check_etcdctl_error cn-unknown-user-admin FailedPrecondition "etcdserver: user name not found" withcert client user list

# --- auth disabled with the root certificate
check_out cn-root-auth-disable "Authentication Disabled" withcert root auth disable
check_out disabled-any-cert "vb" withcert client get b/1 --print-value-only

_it_stop_pid "$SPID" TERM
untrack_pid "$SPID"
finish
