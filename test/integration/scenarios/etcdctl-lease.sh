#!/usr/bin/env bash
# etcdctl-lease: etcdctl's lease commands as etcd 3.4 answers them — grant (TTL
# below the minimum raised to it, too large refused), list (soonest expiry
# first), timetolive (with --keys, -w json, unknown lease), keep-alive --once
# (known and unknown), revoke (attached keys deleted in one revision); expiry
# (an unrenewed lease is revoked by the server and its keys deleted), a running
# keep-alive keeping a short lease alive, and leases and attachments surviving
# a restart. Outputs were read from real etcd 3.4.23.
. "$(dirname "$0")/../lib.sh"

start_server || { fail start "server did not start"; exit 1; }

lid() { printf '%s\n' "$1" | awk '/^lease [0-9a-f]+ granted/ {print $2}'; }

# --- grant
g=$(ectl lease grant 60)
check_match grant-60 'lease [0-9a-f]{16} granted with TTL\(60s\)' "$g"
L60=$(lid "$g")
g=$(ectl lease grant 1)
check_match grant-below-min-raised 'lease [0-9a-f]{16} granted with TTL\(2s\)' "$g"
check_match revoke-unused "lease $(lid "$g") revoked" "$(ectl lease revoke "$(lid "$g")")"
L300=$(lid "$(ectl lease grant 300)")
L120=$(lid "$(ectl lease grant 120)")
j=$(ectl lease grant -w json 30)
check_eq grant-json "30 True" "$(printf '%s' "$j" | jget '"%d %s" % (d["TTL"], d["ID"] > 0 and d["Error"] == "")')"
L30=$(printf '%016x' "$(printf '%s' "$j" | jget 'd["ID"]')")
check_eq grant-leaves-revision 1 "$(cur_rev)"
check_etcdctl_error grant-too-large OutOfRange "etcdserver: too large lease TTL" \
    --line "Error: failed to grant lease (etcdserver: too large lease TTL)" ectl lease grant 9000000001

# --- list: soonest expiry first (30 s, 60 s, 120 s, 300 s)
check_out list "found 4 leases
$L30
$L60
$L120
$L300" ectl lease list
j=$(ectl lease list -w json)
check_eq list-json "$(u64 "$L30") $(u64 "$L60") $(u64 "$L120") $(u64 "$L300")" \
    "$(printf '%s' "$j" | jget '" ".join(str(x["id"]) for x in d["leases"])')"

# --- attach keys, timetolive
check_out put-k1 OK ectl put k1 v1 --lease="$L60"
check_out put-k2 OK ectl put k2 v2 --lease="$L60"
# remaining: whole seconds left, truncated; a little time has passed since the grant
check_match timetolive "lease $L60 granted with TTL\(60s\), remaining\(5[0-9]s\)" "$(ectl lease timetolive "$L60")"
check_match timetolive-keys "lease $L60 granted with TTL\(60s\), remaining\(5[0-9]s\), attached keys\(\[(k1 k2|k2 k1)\]\)" \
    "$(ectl lease timetolive --keys "$L60")"
j=$(ectl lease timetolive -w json --keys "$L60")
check_eq timetolive-json "$(u64 "$L60") 60 True k1,k2 3" \
    "$(printf '%s' "$j" | jget '"%d %d %s %s %d" % (d["id"], d["granted-ttl"], 50 <= d["ttl"] < 60, ",".join(sorted(b(k) for k in d["keys"])), d["revision"])')"
check_out timetolive-unknown "lease 0000000000001234 already expired" ectl lease timetolive 1234

# --- keep-alive --once
check_out keepalive-once "lease $L60 keepalived with TTL(60)" ectl lease keep-alive --once "$L60"
out=$(ectl lease keep-alive --once 1234 2>&1)
rc=$?
check_eq keepalive-once-unknown "1 Error: etcdserver: requested lease not found" \
    "$([ $rc -ne 0 ] && echo 1 || echo 0) $(printf '%s\n' "$out" | tail -n 1)"

# --- restart: leases, TTLs and attachments survive
stop_server
restart_server || { fail restart "server did not restart"; exit 1; }
pass restart
# etcd lists attached keys in Go map order (any order); metastore in key order.
check_match restart-timetolive-keys "lease $L60 granted with TTL\(60s\), remaining\([0-9]+s\), attached keys\(\[(k1 k2|k2 k1)\]\)" \
    "$(ectl lease timetolive --keys "$L60")"
j=$(ectl -w json get k1)
check_eq restart-key-lease "$(u64 "$L60")" "$(printf '%s' "$j" | jget 'd["kvs"][0]["lease"]')"

# --- expiry: a 2 s lease nobody renews is revoked by the server, with its key
g=$(ectl lease grant 2)
LX=$(lid "$g")
check_out expiry-put OK ectl put ek ev --lease="$LX"
rev_before=$(cur_rev)
gone=0
for i in $(seq 1 60); do       # bound only: expiry is due ~2 s after the grant
    [ -z "$(ectl get ek --print-value-only)" ] && { gone=1; break; }
    sleep 0.25
done
check_eq expiry-key-deleted 1 "$gone"
check_out expiry-timetolive "lease $LX already expired" ectl lease timetolive "$LX"
check_eq expiry-one-revision "$((rev_before + 1))" "$(cur_rev)"
check_out expiry-other-leases-kept "v1" ectl get k1 --print-value-only

# --- a running keep-alive keeps a 2 s lease alive well past its TTL
g=$(ectl lease grant 2)
LK=$(lid "$g")
check_out keepalive-put OK ectl put kk kv --lease="$LK"
# etcdctl itself, not the ectl function: $! must be etcdctl's pid to stop it.
etcdctl --endpoints="$SRV_ENDPOINT" lease keep-alive "$LK" >"$_IT_TMP/ka.out" 2>&1 &
kapid=$!
track_pid "$kapid"
sleep 5
check_out keepalive-key-kept "kv" ectl get kk --print-value-only
check_match keepalive-stream-output "(lease $LK keepalived with TTL\(2\)
)*lease $LK keepalived with TTL\(2\)" "$(cat "$_IT_TMP/ka.out")"
kill "$kapid" 2>/dev/null
wait "$kapid" 2>/dev/null
untrack_pid "$kapid"
gone=0
for i in $(seq 1 60); do
    [ -z "$(ectl get kk --print-value-only)" ] && { gone=1; break; }
    sleep 0.25
done
check_eq keepalive-stopped-then-expired 1 "$gone"

# --- revoke deletes every attached key in one revision
rev_before=$(cur_rev)
check_out revoke "lease $L60 revoked" ectl lease revoke "$L60"
check_out revoke-keys-deleted "" ectl get k --prefix --keys-only
check_eq revoke-one-revision "$((rev_before + 1))" "$(cur_rev)"
check_out revoke-timetolive "lease $L60 already expired" ectl lease timetolive "$L60"
check_etcdctl_error revoke-again NotFound "etcdserver: requested lease not found" \
    --line "Error: failed to revoke lease (etcdserver: requested lease not found)" ectl lease revoke "$L60"

stop_server
finish
