#!/usr/bin/env bash
# durability: kill -9 mid-load, restart on the same data dir, verify.
# Each round:
#   1. write a key, compact at the current revision (physical on odd rounds);
#   2. start go/durability load: 32 concurrent writers (puts of distinct keys, every
#      5th op a 2-key txn) recording every ACKNOWLEDGED write (op, keys, values, rev);
#   3. once enough writes are acknowledged, SIGKILL the server at a random moment
#      (round 2: SIGTERM instead — a clean shutdown under load must lose nothing
#      either, and metastore must exit 0);
#   4. restart on the same data dir and ports;
#   5. go/durability check over the acks of THIS and ALL EARLIER rounds: every
#      acknowledged write present with its value and mod/create revision, no phantom
#      keys, in-doubt txns all-or-nothing, new revisions above every acknowledged one;
#   6. the compaction of step 1 is still in force (read below it → compacted error,
#      read at it → the value), and the compacted revision cannot be compacted again.
# Rounds: IT_DUR_ROUNDS (default 4).
. "$(dirname "$0")/../lib.sh"

ROUNDS=${IT_DUR_ROUNDS:-4}
[ -x "$IT_GOBIN/durability" ] || { fail build "durability binary missing ($IT_GOBIN/durability)"; exit 1; }
start_server || { fail start "server did not start"; exit 1; }

acks_files=()
for round in $(seq 1 "$ROUNDS"); do
    r=round$round
    # 1. compaction before the crash
    check_out "$r/pre-put" "OK" ectl put "pre/$round" "before-compact-$round"
    crev=$(cur_rev)
    check_out "$r/pre-put-2" "OK" ectl put "pre/$round" "overwritten-$round"
    if [ $((round % 2)) -eq 1 ]; then phys=--physical; else phys=; fi
    check_out "$r/compact" "compacted revision $crev" ectl compact "$crev" $phys

    # 2. load
    acks=$_IT_TMP/acks.$round
    : >"$acks"
    acks_files+=("$acks")
    "$IT_GOBIN/durability" load -endpoint "$SRV_ENDPOINT" -out "$acks" -prefix "r$round/" \
        -workers 32 -txn-every 5 2>"$_IT_TMP/load.$round.log" &
    lpid=$!
    track_pid "$lpid"

    # 3. wait for some acknowledged writes (bounded), then a random extra delay, then kill -9
    want=$((200 + RANDOM % 800))
    for i in $(seq 1 600); do
        n=$(grep -c '^A ' "$acks")
        [ "$n" -ge "$want" ] && break
        kill -0 "$lpid" 2>/dev/null || break
        sleep 0.1
    done
    sleep "0.$((RANDOM % 10))$((RANDOM % 10))"
    n_before_kill=$(grep -c '^A ' "$acks")
    loader_alive=0
    kill -0 "$lpid" 2>/dev/null && loader_alive=1
    if [ "$round" -eq 2 ]; then
        how=sigterm
        kill -TERM "$SRV_PID"
        src=0
        wait "$SRV_PID" || src=$?
        _it_forget_pid "$SRV_PID"
        SRV_PID=
        if [ "$IT_TARGET" = metastore ]; then
            check_eq "$r/sigterm-exit-status" 0 "$src"
        fi
    else
        how=killed
        kill9_server
    fi
    if [ $loader_alive = 1 ]; then
        pass "$r/$how-mid-load"
    else
        fail "$r/$how-mid-load" "the loader ended before the kill" "loader: $(cat "$_IT_TMP/load.$round.log")"
    fi
    # the loader's workers stop at their first error; bound the wait to avoid hangs
    for i in $(seq 1 300); do
        kill -0 "$lpid" 2>/dev/null || break
        sleep 0.2
    done
    if kill -0 "$lpid" 2>/dev/null; then
        fail "$r/loader-stopped" "loader still running 60 s after the kill"
        kill -KILL "$lpid" 2>/dev/null
    fi
    wait "$lpid" 2>/dev/null
    untrack_pid "$lpid"
    echo "# $r: $how after ~$n_before_kill acks; $(cat "$_IT_TMP/load.$round.log")"

    # 4. restart on the same data dir
    if ! restart_server; then
        fail "$r/restart" "server did not restart on its data dir"
        break
    fi
    pass "$r/restart"

    # 5. check every round's acknowledged writes
    "$IT_GOBIN/durability" check -endpoint "$SRV_ENDPOINT" -label "$r" "${acks_files[@]}" >"$_IT_TMP/check.out" 2>&1
    crc=$?
    cat "$_IT_TMP/check.out"
    IT_CHECKS=$((IT_CHECKS + $(grep -c '^ok \|^not ok ' "$_IT_TMP/check.out")))
    IT_FAILS=$((IT_FAILS + $(grep -c '^not ok ' "$_IT_TMP/check.out")))
    if [ $crc -ne 0 ] && ! grep -q '^not ok ' "$_IT_TMP/check.out"; then
        fail "$r/check" "checker exited with status $crc"
    fi

    # 6. compactions done before crashes are still in force
    check_etcdctl_error "$r/compacted-below" OutOfRange "etcdserver: mvcc: required revision has been compacted" \
        ectl get "pre/$round" --rev=$((crev - 1))
    check_out "$r/read-at-compact-rev" "before-compact-$round" ectl get "pre/$round" --rev="$crev" --print-value-only
    check_etcdctl_error "$r/compact-again-refused" OutOfRange "etcdserver: mvcc: required revision has been compacted" \
        ectl compact "$crev"
    check_out "$r/latest-pre-value" "overwritten-$round" ectl get "pre/$round" --print-value-only
done

stop_server
finish
