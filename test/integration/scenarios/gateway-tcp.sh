#!/usr/bin/env bash
# gateway-tcp: `SERVER gateway start`, etcd's TCP gateway, in front of a 3-member
# cluster. etcdctl through the gateway only: put/get/txn/watch/lease work and
# each new connection lands on the next member (the answering member_id goes
# round the three); with a member killed, connections skip it (it is logged
# "deactivated endpoint") and everything still works; the gateway's start-up
# checks refuse what etcd's refuse, with etcd's texts; SIGTERM stops it.
. "$(dirname "$0")/../lib.sh"

start_cluster 3 || { fail start "3-member cluster did not start"; exit 1; }
pass start-3

read -r GW_PORT < <(free_ports 1)
GW_LOG=$_IT_TMP/gateway.log
eps="${CL_CURL[1]},${CL_EP[2]},${CL_EP[3]}"   # a URL (scheme dropped) and host:port forms
"$IT_SERVER" gateway --endpoints="$eps" start --listen-addr "127.0.0.1:$GW_PORT" \
    --retry-delay 30s >"$GW_LOG" 2>&1 &
GW_PID=$!
track_pid "$GW_PID"
for i in $(seq 1 50); do
    grep -q "ready to proxy client requests" "$GW_LOG" 2>/dev/null && break
    sleep 0.1
done
check_true gateway-ready "no ready line: $(tail -n 3 "$GW_LOG")" grep -q "ready to proxy client requests" "$GW_LOG"

gw() { etcdctl --endpoints="127.0.0.1:$GW_PORT" --command-timeout=10s "$@"; }

check_out put-through-gateway OK gw put gw/a 1
check_out get-through-gateway "gw/a
1" gw get gw/a
check_out txn-through-gateway "SUCCESS

OK" gw txn <<<'value("gw/a") = "1"

put gw/b 2

'
check_out get-txn-result "2" gw get gw/b --print-value-only

# every etcdctl run is a new TCP connection: round-robin over the members
ids=()
for i in 1 2 3 4 5 6; do
    ids+=("$(gw -w json get gw/a | jget 'd["header"]["member_id"]')")
done
check_eq round-robin-members 3 "$(printf '%s\n' "${ids[@]}" | sort -u | wc -l)"

# watch through the gateway sees a put made directly on a member
wout=$_IT_TMP/watch.out
# etcdctl itself in the background (not gw's subshell): $! is what to stop
etcdctl --endpoints="127.0.0.1:$GW_PORT" --command-timeout=10s watch gw/w >"$wout" 2>&1 &
wpid=$!
track_pid "$wpid"
sleep 1
cl_ectl 2 put gw/w hello >/dev/null
for i in $(seq 1 50); do grep -q hello "$wout" && break; sleep 0.1; done
check_eq watch-through-gateway "PUT
gw/w
hello" "$(head -n 3 "$wout")"
kill "$wpid" 2>/dev/null; wait "$wpid" 2>/dev/null; untrack_pid "$wpid"

lease=$(gw lease grant 30 | awk '{print $2}')
check_match lease-grant-through-gateway '^[0-9a-f]+$' "$lease"
check_out lease-put OK gw put gw/l x --lease="$lease"
check_eq lease-timetolive 30 "$(gw -w json lease timetolive "$lease" | jget 'd["granted-ttl"]')"

# a dead member is skipped: every connection still succeeds
kill_member 1
ok=0
for i in $(seq 1 6); do
    [ "$(gw get gw/a --print-value-only 2>/dev/null)" = 1 ] && ok=$((ok + 1))
done
check_eq dead-member-skipped 6 "$ok"
check_true dead-member-logged "$(tail -n 3 "$GW_LOG")" grep -q '"deactivated endpoint"\|deactivated endpoint' "$GW_LOG"
check_out put-after-member-died OK gw put gw/c 3

_it_stop_pid "$GW_PID" TERM
untrack_pid "$GW_PID"
check_true gateway-stopped "still running" bash -c "! kill -0 $GW_PID 2>/dev/null"

# start-up checks, as etcd's gateway
gw_err() { "$IT_SERVER" gateway start "$@" 2>&1 | tail -n 1; }
check_eq bad-listen-addr "failed to validate listen address: nope" "$(gw_err --listen-addr nope)"
check_eq bad-endpoint 'error parsing endpoint "127.0.0.1"' "$(gw_err --endpoints 127.0.0.1 --listen-addr 127.0.0.1:$GW_PORT)"
check_eq endpoint-is-listen-addr \
    "SRV or endpoint (127.0.0.1:$GW_PORT->127.0.0.1:$GW_PORT) should not resolve to the gateway listen addr (127.0.0.1:$GW_PORT)" \
    "$(gw_err --endpoints "127.0.0.1:$GW_PORT" --listen-addr "127.0.0.1:$GW_PORT")"
"$IT_SERVER" gateway start --listen-addr nope >/dev/null 2>&1
check_eq bad-listen-exit-status 1 "$?"

finish
