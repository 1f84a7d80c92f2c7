#!/usr/bin/env bash
# logging: the server's log lines as etcd's zap logger writes them, and the
# logging flags (--logger, --log-level, --log-outputs).
#   zap-lines      every line of a start / put / stop is one JSON object whose
#                  first keys are level, ts, caller, msg (etcd's encoder config),
#                  and the lines tools wait for are there with etcd's msg text and
#                  fields: "starting local member" (local-member-id as hex, the
#                  id member list reports), "published local member to cluster
#                  through raft", "enabled capabilities for version",
#                  "serving client traffic insecurely...", "finished scheduled
#                  compaction" (after a physical Compact), "received signal;
#                  shutting down". etcd 3.4 defaults to capnslog, so etcd gets
#                  --logger=zap here; metastore gets no flag (zap is its default,
#                  as etcd 3.5's) and must also say "ready to serve client
#                  requests" (etcd 3.5's line; 3.4 prints it only with capnslog).
#   file-output    --log-outputs=FILE: the lines go to the file, stderr stays empty;
#                  --log-outputs=stderr,FILE: both get the same lines.
#   level-warn     --log-level=warn: no debug or info line.
#   bad-level      --log-level=bogus: the server refuses to start with etcd's text
#                  (unknown level "bogus").
#   bad-output     --log-outputs=/missing/dir/x.log: refused, etcd's "open sink".
#   capnslog       --logger=capnslog: etcd 3.4's text lines
#                  ("2006-01-02 15:04:05.000000 I | pkg: message") with the
#                  messages tools wait for.
. "$(dirname "$0")/../lib.sh"

if [ "$IT_TARGET" = etcd ]; then ZAP=(--logger=zap); else ZAP=(); fi

# log_lines FILE: the server's lines of FILE (lib.sh's "### ... start:" headers
# dropped). etcd's gRPC library logs its warnings past zap, in its own text
# ("WARNING: 2006/01/02 15:04:05 [core] grpc: ..."), e.g. when its gateway's
# connection to itself breaks at shutdown: not checked (etcd only).
log_lines() {
    if [ "$IT_TARGET" = etcd ]; then
        grep -v '^### ' "$1" | grep -Ev '^(WARNING|ERROR|INFO): [0-9]{4}/[0-9]{2}/[0-9]{2} '
    else
        grep -v '^### ' "$1"
    fi
}

# zap_check FILE: every line a zap JSON line; prints problems (nothing if fine).
zap_check() {
    log_lines "$1" | python3 -c '
import json, re, sys
ts_re = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.(\d{3}|\d{6})(Z|[+-]\d{4})$")
caller_re = re.compile(r"^[^/ ]+/[^/: ]+:\d+$")
n = 0
for line in sys.stdin:
    line = line.rstrip("\n")
    n += 1
    try:
        d = json.loads(line)
    except ValueError:
        print("not JSON: " + line[:200]); continue
    if not isinstance(d, dict):
        print("not an object: " + line[:200]); continue
    keys = list(d)[:4]
    if keys != ["level", "ts", "caller", "msg"]:
        print("first keys %s: %s" % (keys, line[:200])); continue
    if d["level"] not in ("debug", "info", "warn", "error", "dpanic", "panic", "fatal"):
        print("level: " + line[:200])
    if not ts_re.match(d["ts"]):
        print("ts: " + d["ts"])
    if not caller_re.match(d["caller"]):
        print("caller: " + d["caller"])
if n == 0:
    print("no lines")
'
}

# zap_has FILE PYEXPR: some line d (a parsed JSON object) satisfies PYEXPR.
zap_has() {
    log_lines "$1" | python3 -c '
import json, sys
expr = sys.argv[1]
for line in sys.stdin:
    try:
        d = json.loads(line)
    except ValueError:
        continue
    try:
        if eval(expr, {"d": d}):
            sys.exit(0)
    except Exception:
        pass
sys.exit(1)
' "$2"
}

# --- zap-lines: start, put, stop
if start_server -- "${ZAP[@]}"; then
    pass zap-start
    check_out zap-put OK ectl put log/k v
    check_out zap-put2 OK ectl put log/k v2
    crev=$(cur_rev)
    check_out zap-compact "compacted revision $crev" ectl compact --physical "$crev"
    mid=$(ectl member list -w json | jget '"%x" % d["members"][0]["ID"]')
    cid=$(ectl member list -w json | jget '"%x" % d["header"]["cluster_id"]')
    stop_server
    bad=$(zap_check "$SRV_LOG")
    check_eq zap-every-line-json "" "$bad"
    check_true zap-starting-local-member "no \"starting local member\" with local-member-id $mid" \
        zap_has "$SRV_LOG" "d['msg'] == 'starting local member' and d['local-member-id'] == '$mid' and d['cluster-id'] == '$cid'"
    check_true zap-published "no \"published local member to cluster through raft\" line" \
        zap_has "$SRV_LOG" "d['msg'] == 'published local member to cluster through raft' and d['local-member-id'] == '$mid' and d['local-member-attributes'] == '{Name:$SRV_NAME ClientURLs:[$SRV_CLIENT_URL]}' and d['request-path'] == '/0/members/$mid/attributes'"
    check_true zap-enabled-capabilities "no \"enabled capabilities for version\" line" \
        zap_has "$SRV_LOG" "d['msg'] == 'enabled capabilities for version' and d['cluster-version'] == '3.4'"
    check_true zap-serving-client "no \"serving client traffic insecurely\" line" \
        zap_has "$SRV_LOG" "d['msg'] == 'serving client traffic insecurely; this is strongly discouraged!' and d['address'] == '$SRV_ENDPOINT'"
    check_true zap-finished-compaction "no \"finished scheduled compaction\" line for $crev" \
        zap_has "$SRV_LOG" "d['msg'] == 'finished scheduled compaction' and d['compact-revision'] == $crev and d['took'][-1] == 's'"
    check_true zap-received-signal "no \"received signal; shutting down\" line" \
        zap_has "$SRV_LOG" "d['msg'] == 'received signal; shutting down' and d['signal'] == 'terminated'"
    if [ "$IT_TARGET" = metastore ]; then
        check_true zap-ready-to-serve "no \"ready to serve client requests\" line" \
            zap_has "$SRV_LOG" "d['msg'] == 'ready to serve client requests'"
        check_true zap-leader "no \"became leader at term\" line" \
            zap_has "$SRV_LOG" "d['msg'].startswith('$mid became leader at term ')"
    fi
else
    fail zap-start "server did not start"
fi

# --- file-output: only the file gets the lines
LOGF=$_IT_TMP/server-log.json
if start_server -- "${ZAP[@]}" --log-outputs="$LOGF"; then
    pass file-start
    check_out file-put OK ectl put log/f v
    stop_server
    check_eq file-stderr-quiet "" "$(log_lines "$SRV_LOG")"
    check_eq file-every-line-json "" "$(zap_check "$LOGF")"
    check_true file-published "no published line in $LOGF" \
        zap_has "$LOGF" "d['msg'] == 'published local member to cluster through raft'"
else
    fail file-start "server did not start with --log-outputs=FILE"
fi

LOGF2=$_IT_TMP/server-log2.json
if start_server -- "${ZAP[@]}" --log-outputs="stderr,$LOGF2"; then
    pass two-outputs-start
    stop_server
    check_eq two-outputs-same-lines "$(log_lines "$SRV_LOG" | python3 -c 'import sys,json; print(sorted(json.loads(l)["msg"] for l in sys.stdin))')" \
        "$(python3 -c 'import sys,json; print(sorted(json.loads(l)["msg"] for l in open(sys.argv[1])))' "$LOGF2")"
else
    fail two-outputs-start "server did not start with --log-outputs=stderr,FILE"
fi

# --- level-warn: nothing below warn
if start_server -- "${ZAP[@]}" --log-level=warn; then
    pass warn-start
    check_out warn-put OK ectl put log/w v
    stop_server
    check_eq warn-every-line-json "" "$(zap_check "$SRV_LOG" | grep -v '^no lines$')"
    check_true warn-no-info "an info or debug line with --log-level=warn" \
        bash -c "! grep -q '\"level\":\"\\(info\\|debug\\)\"' '$SRV_LOG'"
else
    fail warn-start "server did not start with --log-level=warn"
fi

# run_refused NAME FLAGS...: the server must exit non-zero at start (output in
# $_IT_TMP/NAME.out).
run_refused() {
    local name=$1 cport pport pid i rc
    shift
    read -r cport pport < <(free_ports 2)
    "$IT_SERVER" --name bad --data-dir "$_IT_TMP/$name.data" \
        --listen-client-urls "http://127.0.0.1:$cport" --advertise-client-urls "http://127.0.0.1:$cport" \
        --listen-peer-urls "http://127.0.0.1:$pport" --initial-advertise-peer-urls "http://127.0.0.1:$pport" \
        --initial-cluster "bad=http://127.0.0.1:$pport" "$@" >"$_IT_TMP/$name.out" 2>&1 &
    pid=$!
    track_pid "$pid"
    for i in $(seq 1 100); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.2
    done
    if kill -0 "$pid" 2>/dev/null; then
        fail "$name-refused" "server still running 20 s after start"
        _it_stop_pid "$pid" KILL 2>/dev/null
        untrack_pid "$pid"
        return 1
    fi
    wait "$pid"
    rc=$?
    untrack_pid "$pid"
    if [ $rc -eq 0 ]; then fail "$name-refused" "exit status 0"; else pass "$name-refused"; fi
}

says() {
    if grep -Fq -- "$2" "$_IT_TMP/$1.out"; then
        pass "$1-message"
    else
        fail "$1-message" "no line with '$2'" "output: $(_short "$(cat "$_IT_TMP/$1.out")")"
    fi
}

# --- bad-level, bad-output
run_refused bad-level "${ZAP[@]}" --log-level=bogus
says bad-level 'unknown level "bogus"'
run_refused bad-output "${ZAP[@]}" --log-outputs=/nonexistent-dir/x.log
says bad-output 'open sink "/nonexistent-dir/x.log"'
check_true bad-output-nothing-created "the data dir was created" \
    bash -c "[ ! -e '$_IT_TMP/bad-output.data' ]"

# --- capnslog: etcd 3.4's text lines
if start_server -- --logger=capnslog; then
    pass capnslog-start
    check_out capnslog-put OK ectl put log/c v
    stop_server
    # etcd 3.4 also writes its deprecation warning, and its raft package logs
    # through Go's "log" ("raft2006/01/02 15:04:05 INFO: ...") under capnslog.
    bad=$(log_lines "$SRV_LOG" | grep -v "^\[WARNING\] Deprecated '--logger=capnslog'" |
        grep -Ev '^raft[0-9]{4}/[0-9]{2}/[0-9]{2} ' |
        grep -Ev '^[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{6} [CEWNID] \| [a-z0-9/]+: ' | head -n 5)
    check_eq capnslog-line-shape "" "$bad"
    for what in "ready to serve client requests" "published" "enabled capabilities for version"; do
        check_true "capnslog-says-${what// /-}" "no line with '$what'" grep -Eq " I \\| [a-z/]+: .*$what" "$SRV_LOG"
    done
else
    fail capnslog-start "server did not start with --logger=capnslog"
fi

finish
