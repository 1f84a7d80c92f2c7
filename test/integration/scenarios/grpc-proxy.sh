#!/usr/bin/env bash
# grpc-proxy: `<server> grpc-proxy start` (etcd 3.4's gRPC proxy) in front of a
# 1-member and a 3-member cluster, driven with etcdctl through the proxy only,
# with the same expectations for etcd and metastore:
#   start     the proxy logs "listening for gRPC proxy client requests" and
#             "started gRPC proxy" with its address; unknown flags exit non-zero;
#   kv        put / get / del, a txn (compare, then and else), a watch that sees
#             a put made meanwhile (through the proxy too);
#   lease     grant, keep-alive --once (a stream), timetolive;
#   cluster   member list through the proxy: the proxy itself (etcd's
#             cluster proxy with the default --advertise-client-url); endpoint
#             status names the member behind it;
#   auth      root user and role, a user with a role on one key; with auth on,
#             --user root:pw works through the proxy, the user is refused on
#             another key with etcd's "permission denied" (metastore: code and
#             message unchanged; etcd's proxy: the message, code Unknown), no
#             user: "user name is empty"; auth off;
#   cn        --cert with a Common Name: exit non-zero with "cert has non empty
#             Common Name (it-client)"; a certificate without a CN: it starts;
#   3-member  writes through the proxy (endpoints = all three) read back from
#             every member; with --advertise-client-url "" the member list is
#             the cluster's (three); a watch through the proxy;
#   stop      the proxy is stopped by pid (SIGTERM) and is gone.
. "$(dirname "$0")/../lib.sh"

GP_PID=
GP_EP=
GP_LOG=

# start_gp LOGNAME [flags...]: start the proxy on a free port; waits for its
# "started gRPC proxy" line (bounded). Sets GP_PID, GP_EP, GP_LOG.
start_gp() {
    local name=$1 port i
    shift
    read -r port < <(free_ports 1)
    GP_EP=127.0.0.1:$port
    GP_LOG=$_IT_TMP/$name.log
    "$IT_SERVER" grpc-proxy start --listen-addr "$GP_EP" "$@" >"$GP_LOG" 2>&1 &
    GP_PID=$!
    track_pid "$GP_PID"
    for i in $(seq 1 100); do
        kill -0 "$GP_PID" 2>/dev/null || return 1
        grep -q '"started gRPC proxy"' "$GP_LOG" && return 0
        sleep 0.1
    done
    return 1
}

# stop_gp: SIGTERM the proxy by pid; true when it is gone.
stop_gp() {
    local pid=$GP_PID
    [ -n "$pid" ] || return 0
    kill -TERM "$pid" 2>/dev/null
    wait_pid_exit "$pid" 20 >/dev/null 2>&1 || _it_stop_pid "$pid" KILL
    wait "$pid" 2>/dev/null
    untrack_pid "$pid"
    GP_PID=
    ! kill -0 "$pid" 2>/dev/null
}

# pctl ARGS...: etcdctl through the proxy.
pctl() {
    etcdctl --endpoints="$GP_EP" --dial-timeout=5s --command-timeout=30s "$@"
}

# check_watch NAME KEY: a watch on KEY through the proxy sees a put made
# meanwhile (through the proxy too; repeated until seen, bounded).
check_watch() {
    local name=$1 key=$2 out=$_IT_TMP/watch-$1.out wpid i
    # etcdctl itself in the background (not the pctl function's subshell), so
    # that $! is the process to stop
    etcdctl --endpoints="$GP_EP" --dial-timeout=5s --command-timeout=30s watch "$key" >"$out" 2>&1 &
    wpid=$!
    track_pid "$wpid"
    for i in $(seq 1 50); do
        pctl put "$key" v$i >/dev/null 2>&1
        grep -q "^v" "$out" && break
        sleep 0.2
    done
    _it_stop_pid "$wpid" TERM
    untrack_pid "$wpid"
    check_eq "$name" "PUT $key" "$(head -n 2 "$out" | tr '\n' ' ' | sed 's/ $//')"
}

# etcd's proxy turns the errors of its clientv3 calls into plain Go errors:
# the message passes, the gRPC code becomes Unknown. metastore's forwards the
# status unchanged (clientv3 and etcdctl match errors by message, so both read
# the same error).
if [ "$IT_TARGET" = etcd ]; then
    CODE_DENIED=Unknown CODE_NO_USER=Unknown
else
    CODE_DENIED=PermissionDenied CODE_NO_USER=InvalidArgument
fi

# ---------------------------------------------------------------- one member

start_server || { fail start-server "server did not start"; finish; exit 1; }

if start_gp proxy1 --endpoints "$SRV_ENDPOINT"; then
    pass start
else
    fail start "the proxy did not start" "$(tail -n 20 "$GP_LOG")"
    finish
    exit 1
fi
check_true start-listening-line "no listening line with the address" grep -q "\"listening for gRPC proxy client requests\".*\"address\":\"$GP_EP\"" "$GP_LOG"

out=$("$IT_SERVER" grpc-proxy start --listen-addr 127.0.0.1:0 --no-such-flag 2>&1)
rc=$?
check_true unknown-flag-status "exit status 0" [ $rc -ne 0 ]
check_match unknown-flag-text ".*unknown flag: --no-such-flag.*" "$out"

check_out kv-put "OK" pctl put gp/a 1
check_out kv-get "$(printf 'gp/a\n1')" pctl get gp/a
check_out kv-get-direct "$(printf 'gp/a\n1')" ectl get gp/a
check_out kv-txn-then "$(printf 'SUCCESS\n\nOK')" pctl txn <<<$'value("gp/a") = "1"\n\nput gp/b then\n\n'
check_out kv-txn-else "$(printf 'FAILURE\n\nOK')" pctl txn <<<$'value("gp/a") = "2"\n\nput gp/b then2\n\nput gp/b else\n'
check_out kv-txn-result "$(printf 'gp/b\nelse')" pctl get gp/b
check_out kv-del "1" pctl del gp/b

check_watch watch-event gp/w

lease=$(pctl lease grant 60 2>&1 | awk '/granted/ {print $2}')
check_match lease-grant '^[0-9a-f]+$' "$lease"
check_out lease-keepalive-once "lease $lease keepalived with TTL(60)" pctl lease keep-alive --once "$lease"
check_match lease-timetolive "lease $lease granted with TTL\\(60s\\), remaining\\([0-9]+s\\)" "$(pctl lease timetolive "$lease" 2>&1)"

# etcd's cluster proxy answers MemberList itself while --advertise-client-url
# is set (its default): the proxy as the only member, named after the host.
check_eq member-list-self "0, started, $(hostname), , 127.0.0.1:23790, false" "$(pctl member list 2>&1)"
direct_id=$(ectl endpoint status -w json | jget 'd[0]["Status"]["header"]["member_id"]')
proxy_id=$(pctl endpoint status -w json | jget 'd[0]["Status"]["header"]["member_id"]')
check_eq endpoint-status-member "$direct_id" "$proxy_id"

# Auth through the proxy.
pctl user add root:rootpw >/dev/null 2>&1
pctl user grant-role root root >/dev/null 2>&1
pctl role add gp-r >/dev/null 2>&1
pctl role grant-permission gp-r readwrite gp/u >/dev/null 2>&1
pctl user add gp-u:upw >/dev/null 2>&1
pctl user grant-role gp-u gp-r >/dev/null 2>&1
check_out auth-enable "Authentication Enabled" pctl auth enable
check_out auth-root-put "OK" pctl --user root:rootpw put gp/x 1
check_out auth-user-put "OK" pctl --user gp-u:upw put gp/u 1
check_etcdctl_error auth-permission-denied "$CODE_DENIED" "etcdserver: permission denied" \
    pctl --user gp-u:upw put gp/x 2
check_etcdctl_error auth-no-user "$CODE_NO_USER" "etcdserver: user name is empty" \
    pctl put gp/x 3
check_out auth-disable "Authentication Disabled" pctl --user root:rootpw auth disable

check_true stop "the proxy is still running" stop_gp

# ---------------------------------------------------------------- the CN check

TLS_DIR=$_IT_TMP/pki
mkdir -p "$TLS_DIR"
if tls_make_certs "$TLS_DIR" &&
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 -subj /O=etcd \
        -keyout "$TLS_DIR/nocn.key" -out "$TLS_DIR/nocn.crt" >>"$TLS_DIR/openssl.log" 2>&1; then
    out=$(timeout 20 "$IT_SERVER" grpc-proxy start --listen-addr 127.0.0.1:0 \
        --endpoints "$SRV_ENDPOINT" --cert "$TLS_DIR/client.crt" --key "$TLS_DIR/client.key" \
        --cacert "$TLS_DIR/ca.crt" 2>&1)
    rc=$?
    check_true cn-refused-status "exit status $rc" [ $rc -ne 0 -a $rc -ne 124 ]
    check_match cn-refused-text ".*cert has non empty Common Name \\(it-client\\).*" "$out"
    if start_gp proxy-nocn --endpoints "$SRV_ENDPOINT" --cert "$TLS_DIR/nocn.crt" \
        --key "$TLS_DIR/nocn.key" --cacert "$TLS_DIR/ca.crt"; then
        pass cn-empty-starts
    else
        fail cn-empty-starts "the proxy did not start" "$(tail -n 10 "$GP_LOG")"
    fi
    stop_gp >/dev/null
else
    fail pki "openssl failed" "$(tail -n 20 "$TLS_DIR/openssl.log")"
fi

stop_server

# ---------------------------------------------------------------- three members

if ! start_cluster 3; then
    fail cluster-start "the 3-member cluster did not start"
    finish
    exit 1
fi
if start_gp proxy3 --endpoints "${CL_EP[1]},${CL_EP[2]},${CL_EP[3]}" --advertise-client-url ""; then
    pass cluster-proxy-start
else
    fail cluster-proxy-start "the proxy did not start" "$(tail -n 20 "$GP_LOG")"
    finish
    exit 1
fi
for i in 1 2 3 4 5; do pctl put gp/c$i v$i >/dev/null 2>&1; done
for k in 1 2 3; do
    check_out "cluster-read-m$k" "v5" cl_ectl "$k" get gp/c5 --print-value-only
done
check_eq cluster-member-count "3" "$(pctl member list 2>/dev/null | wc -l)"
check_eq cluster-member-list "$(cl_ectl 1 member list 2>&1)" "$(pctl member list 2>&1)"
check_match cluster-endpoint-status "$GP_EP, [0-9a-f]+, .*" "$(pctl endpoint status 2>&1)"
check_watch cluster-watch gp/cw
check_true cluster-stop "the proxy is still running" stop_gp

finish
