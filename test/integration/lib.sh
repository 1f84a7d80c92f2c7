# test/integration/lib.sh — shared helpers for the integration scenarios.
#
# Sourced by every scenario script (never executed).  The driver (run.sh) exports:
#   IT_TARGET   etcd | metastore
#   IT_SERVER   path of the server binary to start (etcd from PATH, or metastore)
#   IT_GOBIN    directory holding the built Go programs (kvcheck, durability)
#   IT_SCENARIO name of the running scenario (prefix of every check name)
#
# A scenario starts its own server(s) with start_server, runs checks that print
# "ok NAME" / "not ok NAME (reason)" (plus "#" diagnostic lines), and exits non-zero
# if any check failed.  Every process started here is recorded by pid and stopped
# by pid on EXIT; temp dirs are removed on EXIT.

set -u

export ETCDCTL_API=3

: "${IT_TARGET:=etcd}"
: "${IT_SERVER:=etcd}"
: "${IT_SCENARIO:=$(basename "${0%.sh}")}"
: "${IT_GOBIN:=}"

IT_FAILS=0
IT_CHECKS=0
_IT_PIDS=()
_IT_TMP=$(mktemp -d "${TMPDIR:-/tmp}/metastore-it.XXXXXX")

_it_cleanup() {
    local rc=$?
    local p
    for p in "${_IT_PIDS[@]}"; do
        _it_stop_pid "$p" TERM
    done
    if [ -n "${_IT_TMP:-}" ] && [ -d "$_IT_TMP" ]; then
        rm -rf "$_IT_TMP"
    fi
    exit $rc
}
trap _it_cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---------------------------------------------------------------- reporting

# pass NAME
pass() {
    IT_CHECKS=$((IT_CHECKS + 1))
    echo "ok $IT_SCENARIO/$1"
}

# fail NAME REASON [diagnostic lines...]
fail() {
    local name=$1 reason=$2
    shift 2
    IT_CHECKS=$((IT_CHECKS + 1))
    IT_FAILS=$((IT_FAILS + 1))
    echo "not ok $IT_SCENARIO/$name ($reason)"
    local l
    for l in "$@"; do
        printf '%s\n' "$l" | sed 's/^/#   /'
    done
}

# Print expected/actual as diagnostic blocks (multi-line values are shown in full).
_diff_diag() {
    local n
    printf '#   expected:\n'
    printf '%s\n' "$1" | head -n 40 | sed 's/^/#     |/'
    n=$(printf '%s\n' "$1" | wc -l)
    [ "$n" -le 40 ] || printf '#     ... (%d lines)\n' "$n"
    printf '#   actual:\n'
    printf '%s\n' "$2" | head -n 40 | sed 's/^/#     |/'
    n=$(printf '%s\n' "$2" | wc -l)
    [ "$n" -le 40 ] || printf '#     ... (%d lines)\n' "$n"
}

# check_eq NAME EXPECTED ACTUAL
check_eq() {
    if [ "$2" == "$3" ]; then
        pass "$1"
    else
        fail "$1" "value mismatch"
        _diff_diag "$2" "$3"
    fi
}

# check_match NAME REGEX ACTUAL   (bash ERE, whole string)
check_match() {
    if [[ "$3" =~ ^$2$ ]]; then
        pass "$1"
    else
        fail "$1" "no match"
        _diff_diag "/^$2\$/" "$3"
    fi
}

# check_true NAME REASON-IF-FALSE cmd...
check_true() {
    local name=$1 reason=$2
    shift 2
    if "$@"; then pass "$name"; else fail "$name" "$reason"; fi
}

# finish: last line of every scenario.
finish() {
    if [ "$IT_CHECKS" -eq 0 ]; then
        fail "no-checks" "scenario ran no checks"
    fi
    [ "$IT_FAILS" -eq 0 ]
}

# ---------------------------------------------------------------- ports / processes

# free_ports N: print N distinct free 127.0.0.1 TCP ports (bound to 0 together, then released).
free_ports() {
    python3 - "$1" <<'PY'
import socket, sys
n = int(sys.argv[1])
socks = []
for _ in range(n):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
for s in socks:
    s.close()
PY
}

_it_stop_pid() {
    local pid=$1 sig=${2:-TERM} i
    kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null; return 0; }
    kill -"$sig" "$pid" 2>/dev/null
    for i in $(seq 1 100); do          # up to ~20 s for a clean stop
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.2
    done
    if kill -0 "$pid" 2>/dev/null; then
        kill -KILL "$pid" 2>/dev/null
    fi
    wait "$pid" 2>/dev/null
    return 0
}

_it_forget_pid() {
    local p keep=()
    for p in "${_IT_PIDS[@]}"; do
        [ "$p" = "$1" ] || keep+=("$p")
    done
    _IT_PIDS=("${keep[@]}")
}

# track_pid PID: have the EXIT trap stop PID (for helper processes a scenario starts).
track_pid() { _IT_PIDS+=("$1"); }
untrack_pid() { _it_forget_pid "$1"; }

# Server state (one server per scenario at a time):
SRV_PID=
SRV_NAME=
SRV_DATA=
SRV_LOG=
SRV_CPORT=
SRV_PPORT=
SRV_ENDPOINT=
SRV_CLIENT_URL=
SRV_PEER_URL=
SRV_ADV_PEER_URL=
SRV_TOKEN=
SRV_EXTRA=()

# start_server [--name NAME] [--advertise-peer URL] [--token TOKEN] [-- extra server flags...]
# Starts one member on fresh free client+peer ports and a fresh data dir; waits
# until `etcdctl endpoint health` succeeds.  Returns non-zero (after printing the
# log tail) if the server does not become healthy.
start_server() {
    SRV_NAME=it-member
    SRV_ADV_PEER_URL=
    SRV_TOKEN=
    SRV_EXTRA=()
    while [ $# -gt 0 ]; do
        case $1 in
            --name) SRV_NAME=$2; shift 2 ;;
            --advertise-peer) SRV_ADV_PEER_URL=$2; shift 2 ;;
            --token) SRV_TOKEN=$2; shift 2 ;;
            --) shift; SRV_EXTRA=("$@"); break ;;
            *) echo "start_server: bad argument $1" >&2; return 2 ;;
        esac
    done
    local attempt
    for attempt in 1 2 3; do
        SRV_DATA=$(mktemp -d "$_IT_TMP/data.XXXXXX")
        rmdir "$SRV_DATA"   # let the server create it (etcd wants it absent or 0700)
        read -r SRV_CPORT SRV_PPORT < <(free_ports 2)
        SRV_ENDPOINT=127.0.0.1:$SRV_CPORT
        SRV_CLIENT_URL=http://127.0.0.1:$SRV_CPORT
        SRV_PEER_URL=http://127.0.0.1:$SRV_PPORT
        [ -n "$SRV_ADV_PEER_URL" ] || SRV_ADV_PEER_URL=$SRV_PEER_URL
        if _launch_server && wait_healthy; then
            return 0
        fi
        # A process that exited at once may have lost a port race (free_ports
        # releases the ports before the server binds them): retry on new ports.
        # A server that stays up but never becomes healthy is not retried.
        if [ $attempt -lt 3 ] && ! kill -0 "$SRV_PID" 2>/dev/null; then
            echo "# start_server: $IT_TARGET exited during startup (attempt $attempt); retrying on new ports"
            tail -n 5 "$SRV_LOG" 2>/dev/null | sed 's/^/#     /'
            stop_server
            continue
        fi
        break
    done
    echo "# start_server: $IT_TARGET did not become healthy; log tail:"
    tail -n 30 "$SRV_LOG" 2>/dev/null | sed 's/^/#     /'
    stop_server
    return 1
}

_server_args() {
    local args=(
        --name "$SRV_NAME"
        --data-dir "$SRV_DATA"
        --listen-client-urls "$SRV_CLIENT_URL"
        --advertise-client-urls "$SRV_CLIENT_URL"
        --listen-peer-urls "$SRV_PEER_URL"
        --initial-advertise-peer-urls "$SRV_ADV_PEER_URL"
        --initial-cluster "$SRV_NAME=$SRV_ADV_PEER_URL"
        --initial-cluster-state new
    )
    [ -z "$SRV_TOKEN" ] || args+=(--initial-cluster-token "$SRV_TOKEN")
    printf '%s\0' "${args[@]}" "${SRV_EXTRA[@]}"
}

_launch_server() {
    local args=()
    mapfile -d '' args < <(_server_args)
    SRV_LOG=$SRV_DATA.log
    echo "### $(date -u +%FT%TZ) start: $IT_SERVER ${args[*]}" >>"$SRV_LOG"
    "$IT_SERVER" "${args[@]}" >>"$SRV_LOG" 2>&1 &
    SRV_PID=$!
    _IT_PIDS+=("$SRV_PID")
}

# restart_server: start again on the same data dir and ports (after stop/kill).
restart_server() {
    _launch_server
    if wait_healthy; then return 0; fi
    echo "# restart_server: $IT_TARGET did not become healthy; log tail:"
    tail -n 30 "$SRV_LOG" 2>/dev/null | sed 's/^/#     /'
    return 1
}

# wait_healthy: poll `etcdctl endpoint health` (generous 60 s bound only to avoid hangs).
wait_healthy() {
    local i
    for i in $(seq 1 120); do
        if ! kill -0 "$SRV_PID" 2>/dev/null; then
            wait "$SRV_PID" 2>/dev/null
            return 1
        fi
        if etcdctl --endpoints="$SRV_ENDPOINT" --dial-timeout=1s --command-timeout=2s \
                endpoint health >/dev/null 2>&1; then
            return 0
        fi
        sleep 0.5
    done
    return 1
}

# stop_server: SIGTERM, then SIGKILL after a timeout.
stop_server() {
    [ -n "$SRV_PID" ] || return 0
    _it_stop_pid "$SRV_PID" TERM
    _it_forget_pid "$SRV_PID"
    SRV_PID=
}

# kill9_server: SIGKILL at once (crash).
kill9_server() {
    [ -n "$SRV_PID" ] || return 0
    kill -KILL "$SRV_PID" 2>/dev/null
    wait "$SRV_PID" 2>/dev/null
    _it_forget_pid "$SRV_PID"
    SRV_PID=
}

# ---------------------------------------------------------------- etcdctl helpers

# ectl ARGS...: etcdctl against the current server.
ectl() {
    etcdctl --endpoints="$SRV_ENDPOINT" --dial-timeout=5s --command-timeout=30s "$@"
}

# jget EXPR: evaluate a python expression over the JSON document on stdin (bound to d).
# Helpers available: b(s) base64-decodes to str.  Prints str() of the result
# (True/False/None print as true/false/null).
jget() {
    python3 -c '
import base64, json, sys
def b(s): return base64.b64decode(s).decode("utf-8", "replace")
raw = sys.stdin.read()
d = json.loads(raw)
r = eval(sys.argv[1])
if r is True: r = "true"
elif r is False: r = "false"
elif r is None: r = "null"
print(r)
' "$1"
}

# u64 HEX: unsigned decimal of a hex id (bash arithmetic is signed 64-bit).
u64() { python3 -c 'import sys; print(int(sys.argv[1], 16))' "$1"; }

# cur_rev: current store revision (header of a Range on a key nobody uses).
cur_rev() {
    ectl -w json get __it_rev_probe__ | jget 'd["header"]["revision"]'
}

# _short TEXT: first 300 characters on one line (for diagnostics).
_short() {
    local t=${1//$'\n'/\\n}
    [ ${#t} -le 300 ] || t="${t:0:300}..."
    printf '%s' "$t"
}

# check_out NAME EXPECTED-STDOUT cmd...: command must succeed and print exactly EXPECTED.
check_out() {
    local name=$1 exp=$2 out rc
    shift 2
    out=$("$@" 2>"$_IT_TMP/stderr")
    rc=$?
    if [ $rc -ne 0 ]; then
        fail "$name" "exit status $rc" "command: $(_short "$*")" "stderr: $(cat "$_IT_TMP/stderr")"
        return 1
    fi
    check_eq "$name" "$exp" "$out"
}

# check_etcdctl_error NAME GRPC-CODE MESSAGE [--line ERROR-LINE] cmd...
# The etcdctl command must exit non-zero with empty stdout, its stderr must end
# with exactly "Error: MESSAGE" (or ERROR-LINE when etcdctl words it differently),
# and every other stderr line must be etcdctl's {"level":"warn",...} retry log
# carrying "rpc error: code = GRPC-CODE desc = MESSAGE".
check_etcdctl_error() {
    local name=$1 code=$2 msg=$3 out rc err errline
    shift 3
    errline="Error: $msg"
    if [ "$1" = "--line" ]; then errline=$2; shift 2; fi
    out=$("$@" 2>"$_IT_TMP/stderr")
    rc=$?
    err=$(cat "$_IT_TMP/stderr")
    if [ $rc -eq 0 ]; then
        fail "$name" "command succeeded, expected error" "command: $(_short "$*")" "stdout: $(_short "$out")"
        return 1
    fi
    if [ -n "$out" ]; then
        fail "$name" "unexpected stdout" "stdout: $out"
        return 1
    fi
    local last
    last=$(printf '%s\n' "$err" | tail -n 1)
    if [ "$last" != "$errline" ]; then
        fail "$name" "wrong Error line"
        _diff_diag "$errline" "$err"
        return 1
    fi
    local bad
    bad=$(printf '%s\n' "$err" | sed '$d' | python3 -c '
import json, sys
want = "rpc error: code = %s desc = %s" % (sys.argv[1], sys.argv[2])
bad = []
n = 0
for line in sys.stdin:
    line = line.rstrip("\n")
    if not line:
        continue
    try:
        j = json.loads(line)
    except ValueError:
        bad.append("not a JSON log line: " + line); continue
    n += 1
    if j.get("level") != "warn":
        bad.append("level is not warn: " + line)
    if j.get("error") != want:
        bad.append("error field %r != %r" % (j.get("error"), want))
if n == 0:
    bad.append("no {\"level\":\"warn\"...} line before the Error line")
print("\n".join(bad))
' "$code" "$msg")
    if [ -n "$bad" ]; then
        fail "$name" "unexpected stderr log lines" "$bad" "stderr: $err"
        return 1
    fi
    pass "$name"
}

# check_rev_unchanged NAME BEFORE: current revision must still be BEFORE.
check_rev_unchanged() {
    check_eq "$1" "$2" "$(cur_rev)"
}
