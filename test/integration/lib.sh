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

# ================================================================ clusters
#
# start_cluster [--proxy] [--token T] N [extra server flags...]
#   Starts members m1..mN (fresh data dirs, free 127.0.0.1 ports) with etcd's own
#   clustering flags and waits until every member is healthy and exactly one leader
#   exists.  Extra flags go to every member; --heartbeat-interval 100 and
#   --election-timeout 1000 are added unless the extra flags set them.
#   --proxy: every member's advertised peer URL is a faultproxy.py route that
#   forwards to the member's real (listening) peer port, so scenarios can cut,
#   delay or blackhole peer traffic (see partition_member / proxy_ctl).
#   CL_PSCHEME (default http): the scheme of the members' peer URLs; set it to
#   https before start_cluster / add_member for a peer-TLS cluster (the TLS flags
#   go in the extra flags).
# Per-member state, indexed 1..CL_N (a removed member keeps its index):
#   CL_NAME CL_EP (host:port) CL_CURL (client URL) CL_PURL (advertised peer URL)
#   CL_PPORT (listening peer port) CL_APORT (advertised peer port) CL_DATA CL_LOG
#   CL_PID (empty when not running) CL_ID (member id, hex, once known)
#   CL_LEARNER (1 while a learner) CL_GONE (1 once removed from the cluster)
CL_N=0
CL_GEN=0
CL_TOKEN=
CL_EXTRA=()
CL_PROXY=0
CL_PROXY_PID=
CL_PROXY_SOCK=
CL_ELECTION_MS=1000
declare -a CL_NAME=() CL_EP=() CL_CURL=() CL_PURL=() CL_PPORT=() CL_APORT=() CL_DATA=() \
    CL_LOG=() CL_PID=() CL_ID=() CL_LEARNER=() CL_GONE=() CL_STATE=() CL_ICLUSTER=()

IT_LIB_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

# proxy_ctl CMD...: send one command to the cluster's fault proxy; prints its answer.
proxy_ctl() {
    python3 "$IT_LIB_DIR/faultproxy.py" ctl "$CL_PROXY_SOCK" "$@"
}

_cl_start_proxy() {
    CL_PROXY_SOCK=$_IT_TMP/proxy.sock
    python3 "$IT_LIB_DIR/faultproxy.py" serve --control "$CL_PROXY_SOCK" >>"$_IT_TMP/proxy.log" 2>&1 &
    CL_PROXY_PID=$!
    _IT_PIDS+=("$CL_PROXY_PID")
    local i
    for i in $(seq 1 50); do
        [ -S "$CL_PROXY_SOCK" ] && proxy_ctl ping >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    echo "# faultproxy did not start; log:"
    sed 's/^/#     /' "$_IT_TMP/proxy.log"
    return 1
}

# _cl_alloc K: fresh ports and data dir for member K.
_cl_alloc() {
    local k=$1 c p a j used try
    # Ports handed to other members are not bound yet (a member starts after
    # all are allocated) while the fault proxy binds its ports at once: never
    # hand out one of those again.
    for try in $(seq 1 20); do
        read -r c p a < <(free_ports 3)
        used=0
        for j in "${!CL_EP[@]}"; do
            [ "$j" = "$k" ] && continue
            case " ${CL_EP[$j]#127.0.0.1:} ${CL_PPORT[$j]:-} ${CL_APORT[$j]:-} " in
                *" $c "* | *" $p "* | *" $a "*) used=1 ;;
            esac
        done
        [ $used = 0 ] && break
    done
    CL_NAME[$k]=m$k
    CL_EP[$k]=127.0.0.1:$c
    CL_CURL[$k]=http://127.0.0.1:$c
    CL_PPORT[$k]=$p
    if [ "$CL_PROXY" = 1 ]; then CL_APORT[$k]=$a; else CL_APORT[$k]=$p; fi
    CL_PURL[$k]=${CL_PSCHEME:-http}://127.0.0.1:${CL_APORT[$k]}
    CL_DATA[$k]=$_IT_TMP/c$CL_GEN-m$k.data
    CL_LOG[$k]=$_IT_TMP/c$CL_GEN-m$k.log
    CL_PID[$k]=
    CL_ID[$k]=
    CL_LEARNER[$k]=0
    CL_GONE[$k]=0
    if [ "$CL_PROXY" = 1 ]; then
        proxy_ctl route "m$k" "${CL_APORT[$k]}" "$p" >/dev/null ||
            { echo "# proxy route for m$k failed"; return 1; }
    fi
}

_cl_has_flag() {   # _cl_has_flag FLAG: is FLAG among CL_EXTRA?
    local f
    for f in "${CL_EXTRA[@]}"; do
        [ "$f" = "$1" ] || [[ "$f" == "$1="* ]] && return 0
    done
    return 1
}

_cl_launch() {
    local k=$1
    local args=(
        --name "${CL_NAME[$k]}"
        --data-dir "${CL_DATA[$k]}"
        --listen-client-urls "${CL_CURL[$k]}"
        --advertise-client-urls "${CL_CURL[$k]}"
        --listen-peer-urls "${CL_PSCHEME:-http}://127.0.0.1:${CL_PPORT[$k]}"
        --initial-advertise-peer-urls "${CL_PURL[$k]}"
        --initial-cluster "${CL_ICLUSTER[$k]}"
        --initial-cluster-state "${CL_STATE[$k]}"
        --initial-cluster-token "$CL_TOKEN"
    )
    _cl_has_flag --heartbeat-interval || args+=(--heartbeat-interval 100)
    _cl_has_flag --election-timeout || args+=(--election-timeout 1000)
    echo "### $(date -u +%FT%TZ) start: $IT_SERVER ${args[*]} ${CL_EXTRA[*]}" >>"${CL_LOG[$k]}"
    "$IT_SERVER" "${args[@]}" "${CL_EXTRA[@]}" >>"${CL_LOG[$k]}" 2>&1 &
    CL_PID[$k]=$!
    _IT_PIDS+=("${CL_PID[$k]}")
    if [ "$CL_PROXY" = 1 ]; then
        proxy_ctl pid "m$k" "${CL_PID[$k]}" >/dev/null
    fi
}

start_cluster() {
    CL_TOKEN=it-cluster-$$-$RANDOM
    CL_PROXY=0
    while [ $# -gt 0 ]; do
        case $1 in
            --proxy) CL_PROXY=1; shift ;;
            --token) CL_TOKEN=$2; shift 2 ;;
            *) break ;;
        esac
    done
    local n=$1
    shift
    CL_EXTRA=("$@")
    CL_ELECTION_MS=1000
    local i
    for ((i = 0; i < ${#CL_EXTRA[@]}; i++)); do
        case ${CL_EXTRA[$i]} in
            --election-timeout) CL_ELECTION_MS=${CL_EXTRA[$((i + 1))]} ;;
            --election-timeout=*) CL_ELECTION_MS=${CL_EXTRA[$i]#*=} ;;
        esac
    done
    if [ "$CL_PROXY" = 1 ] && [ -z "$CL_PROXY_PID" ]; then
        _cl_start_proxy || return 1
    fi
    CL_N=$n
    CL_GEN=$((CL_GEN + 1))
    local k ic=
    for k in $(seq 1 "$n"); do
        _cl_alloc "$k" || return 1
        ic=${ic:+$ic,}m$k=${CL_PURL[$k]}
    done
    for k in $(seq 1 "$n"); do
        CL_ICLUSTER[$k]=$ic
        CL_STATE[$k]=new
        _cl_launch "$k"
    done
    if wait_cluster_healthy; then
        for k in $(seq 1 "$n"); do CL_ID[$k]=$(member_id "$k"); done
        return 0
    fi
    echo "# start_cluster: the $n-member cluster did not become healthy"
    cluster_log_tails
    return 1
}

# cluster_log_tails [LINES]: print the tail of every member's log as diagnostics.
cluster_log_tails() {
    local k
    for k in $(seq 1 "$CL_N"); do
        echo "#   --- m$k (pid ${CL_PID[$k]:-none}) ${CL_LOG[$k]}"
        tail -n "${1:-15}" "${CL_LOG[$k]}" 2>/dev/null | cut -c1-400 | sed 's/^/#     /'
    done
}

# cl_ectl K ARGS...: etcdctl against member K only.
cl_ectl() {
    local k=$1
    shift
    etcdctl --endpoints="${CL_EP[$k]}" --dial-timeout=5s --command-timeout=30s "$@"
}

# running_members: indexes of members whose process runs (and was not removed).
running_members() {
    local k out=()
    for k in $(seq 1 "$CL_N"); do
        [ -n "${CL_PID[$k]}" ] && [ "${CL_GONE[$k]}" != 1 ] && out+=("$k")
    done
    echo "${out[*]}"
}

# voting_members: running members that are not learners.
voting_members() {
    local k out=()
    for k in $(running_members); do
        [ "${CL_LEARNER[$k]}" = 1 ] || out+=("$k")
    done
    echo "${out[*]}"
}

# all_endpoints: comma list of the running voting members' endpoints.
all_endpoints() {
    local k out=
    for k in $(voting_members); do out=${out:+$out,}${CL_EP[$k]}; done
    echo "$out"
}

# cl_ectl_all ARGS...: etcdctl against every running voting member (clientv3 balances).
cl_ectl_all() {
    etcdctl --endpoints="$(all_endpoints)" --dial-timeout=5s --command-timeout=30s "$@"
}

# cluster_status_json [K...]: `endpoint status -w json` over the given members
# (default: all running members).
cluster_status_json() {
    local ks=("$@") eps= k
    [ ${#ks[@]} -gt 0 ] || read -r -a ks <<<"$(running_members)"
    for k in "${ks[@]}"; do eps=${eps:+$eps,}${CL_EP[$k]}; done
    etcdctl --endpoints="$eps" --dial-timeout=2s --command-timeout=3s -w json endpoint status 2>/dev/null
}

# _cl_one_leader K...: exit 0 if every given member answers status and all name the
# same non-zero leader, which is one of them; prints that leader's index.
_cl_one_leader() {
    local j
    j=$(cluster_status_json "$@") || return 1
    local map= k
    for k in "$@"; do map="$map ${CL_EP[$k]}=$k"; done
    printf '%s' "$j" | python3 -c '
import json, sys
want = dict(x.split("=") for x in sys.argv[1].split())
d = json.loads(sys.stdin.read())
seen = {e["Endpoint"]: e["Status"] for e in d}
if set(seen) != set(want):
    sys.exit(1)
leaders = {s.get("leader", 0) for s in seen.values()}
ids = {s["header"]["member_id"]: want[ep] for ep, s in seen.items()}
if len(leaders) != 1:
    sys.exit(1)
l = leaders.pop()
if l == 0 or l not in ids:
    sys.exit(1)
print(ids[l])
' "$map"
}

# wait_cluster_healthy [TIMEOUT-S]: every running voting member answers `endpoint
# health`, every running learner a serializable get, and all running members report
# the same single leader (one of them).  Bounded (default 90 s).
wait_cluster_healthy() {
    local limit=${1:-90} i k okk voters learners
    local end=$((SECONDS + limit))
    while [ $SECONDS -lt $end ]; do
        okk=1
        for k in $(running_members); do
            if ! kill -0 "${CL_PID[$k]}" 2>/dev/null; then okk=0; break; fi
            if [ "${CL_LEARNER[$k]}" = 1 ]; then
                etcdctl --endpoints="${CL_EP[$k]}" --dial-timeout=1s --command-timeout=2s \
                    get --consistency=s health >/dev/null 2>&1 || { okk=0; break; }
            else
                etcdctl --endpoints="${CL_EP[$k]}" --dial-timeout=1s --command-timeout=2s \
                    endpoint health >/dev/null 2>&1 || { okk=0; break; }
            fi
        done
        if [ $okk = 1 ]; then
            read -r -a voters <<<"$(running_members)"
            _cl_one_leader "${voters[@]}" >/dev/null && return 0
        fi
        sleep 0.5
    done
    return 1
}

# leader_index [K...]: index of the member all given (default: running) members name
# as leader; empty + status 1 if there is no single agreed leader right now.
leader_index() {
    local ks=("$@")
    [ ${#ks[@]} -gt 0 ] || read -r -a ks <<<"$(running_members)"
    _cl_one_leader "${ks[@]}"
}

# wait_leader [TIMEOUT-S] [K...]: poll leader_index until the given members agree.
wait_leader() {
    local limit=${1:-60} l
    shift || true
    local end=$((SECONDS + limit))
    while [ $SECONDS -lt $end ]; do
        l=$(leader_index "$@") && { echo "$l"; return 0; }
        sleep 0.25
    done
    return 1
}

# member_id K: member K's id in hex as etcdctl prints it (%x), from its status header.
member_id() {
    cluster_status_json "$1" | jget '"%x" % d[0]["Status"]["header"]["member_id"]'
}

# follower_index: some running voting member that is not the leader.
follower_index() {
    local l k
    l=$(leader_index) || return 1
    for k in $(voting_members); do
        [ "$k" != "$l" ] && { echo "$k"; return 0; }
    done
    return 1
}

# kill_member K [SIG]: signal member K (default KILL) and reap it (SIGTERM: bounded
# wait, then SIGKILL).  Its data dir and ports are kept for restart_member.
kill_member() {
    local k=$1 sig=${2:-KILL} pid=${CL_PID[$1]}
    [ -n "$pid" ] || return 0
    if [ "$sig" = KILL ] || [ "$sig" = 9 ]; then
        kill -KILL "$pid" 2>/dev/null
        wait "$pid" 2>/dev/null
    else
        _it_stop_pid "$pid" "$sig"
    fi
    _it_forget_pid "$pid"
    CL_PID[$k]=
}

# restart_member K [--nowait]: start member K again on its data dir and ports; waits
# until it answers endpoint health (serializable get for a learner) unless --nowait.
restart_member() {
    local k=$1 i
    _cl_launch "$k"
    [ "${2:-}" = --nowait ] && return 0
    wait_member_up "$k"
}

# wait_member_up K [TIMEOUT-S]: member K answers (health, or a serializable get when learner).
wait_member_up() {
    local k=$1 limit=${2:-90}
    local end=$((SECONDS + limit))
    while [ $SECONDS -lt $end ]; do
        kill -0 "${CL_PID[$k]}" 2>/dev/null || return 1
        if [ "${CL_LEARNER[$k]}" = 1 ]; then
            etcdctl --endpoints="${CL_EP[$k]}" --dial-timeout=1s --command-timeout=2s \
                get --consistency=s health >/dev/null 2>&1 && return 0
        else
            etcdctl --endpoints="${CL_EP[$k]}" --dial-timeout=1s --command-timeout=2s \
                endpoint health >/dev/null 2>&1 && return 0
        fi
        sleep 0.5
    done
    return 1
}

# add_member [--learner] [--no-start]: `etcdctl member add` a new member m(CL_N+1)
# through the running voters, then start it with --initial-cluster-state existing and
# the ETCD_INITIAL_CLUSTER etcdctl printed.  Sets ADD_INDEX, ADD_OUT (etcdctl's
# stdout+stderr) and CL_ID of the new member.  Returns non-zero if `member add` failed.
ADD_INDEX=
ADD_OUT=
add_member() {
    local learner=() start=1
    while [ $# -gt 0 ]; do
        case $1 in
            --learner) learner=(--learner); shift ;;
            --no-start) start=0; shift ;;
            *) echo "add_member: bad argument $1" >&2; return 2 ;;
        esac
    done
    local k=$((CL_N + 1))
    _cl_alloc "$k" || return 1
    # etcd refuses reconfiguration for ~5 s after a member (re)connects (strict
    # reconfig check: "etcdserver: unhealthy cluster"); retry that, bounded.
    local rc try
    for try in $(seq 1 60); do
        ADD_OUT=$(cl_ectl_all member add "m$k" --peer-urls="${CL_PURL[$k]}" "${learner[@]}" 2>&1)
        rc=$?
        [ $rc -ne 0 ] && [[ "$ADD_OUT" == *"etcdserver: unhealthy cluster"* ]] || break
        sleep 1
    done
    if [ $rc -ne 0 ]; then
        if [ "$CL_PROXY" = 1 ]; then proxy_ctl unroute "m$k" >/dev/null; fi
        return $rc
    fi
    CL_N=$k
    ADD_INDEX=$k
    CL_ID[$k]=$(printf '%s\n' "$ADD_OUT" | awk '/^Member +[0-9a-f]+ added/ {print $2; exit}')
    CL_ICLUSTER[$k]=$(printf '%s\n' "$ADD_OUT" | sed -n 's/^ETCD_INITIAL_CLUSTER="\(.*\)"$/\1/p')
    CL_STATE[$k]=existing
    [ ${#learner[@]} -eq 0 ] || CL_LEARNER[$k]=1
    [ $start = 1 ] && _cl_launch "$k"
    return 0
}

# start_added_member K: launch a member added with add_member --no-start.
start_added_member() { _cl_launch "$1"; }

# wait_pid_exit PID TIMEOUT-S: bounded wait for a process to end on its own.
wait_pid_exit() {
    local end=$((SECONDS + $2))
    while [ $SECONDS -lt $end ]; do
        kill -0 "$1" 2>/dev/null || return 0
        sleep 0.25
    done
    return 1
}

# stop_cluster: SIGTERM every running member (bounded), keep data dirs.
stop_cluster() {
    local k
    for k in $(seq 1 "$CL_N"); do kill_member "$k" TERM; done
}

# ---------------------------------------------------------------- partitions (--proxy)
# Member K's proxy route "mK" carries every peer connection dialled TO member K; the
# proxy tells connections FROM member J apart by the dialling process (pid registered
# at launch).  partition_member K cuts both directions between K and everyone else.
partition_member() {
    local k=$1 j
    proxy_ctl set "m$k" drop >/dev/null || return 1
    for j in $(seq 1 "$CL_N"); do
        [ "$j" = "$k" ] && continue
        proxy_ctl set "m$j" drop from "m$k" >/dev/null || return 1
    done
}

# heal_partitions: clear every proxy rule (all routes pass traffic again).
heal_partitions() { proxy_ctl heal >/dev/null; }

# reconf CMD...: run an etcdctl reconfiguration command, retrying (bounded, 60 s)
# while etcd answers "etcdserver: unhealthy cluster" (its strict reconfig check
# refuses changes until every member has been connected for ~5 s).  Passes the
# last attempt's stdout, stderr and exit status through.
reconf() {
    local out rc try
    for try in $(seq 1 60); do
        out=$("$@" 2>"$_IT_TMP/reconf.err")
        rc=$?
        if [ $rc -ne 0 ] && grep -q 'etcdserver: unhealthy cluster' "$_IT_TMP/reconf.err"; then
            sleep 1
            continue
        fi
        break
    done
    [ -z "$out" ] || printf '%s\n' "$out"
    cat "$_IT_TMP/reconf.err" >&2
    return $rc
}

# id16 HEX: a member id as etcdctl's member add/remove/update/promote lines print
# it (%16x: space-padded to 16 characters).
id16() { printf '%16s' "$1"; }

# ================================================================ TLS
#
# tls_make_certs DIR: a throw-away PKI made with the openssl CLI in DIR (created;
# ECDSA P-256 keys, SHA-256 signatures). Prints nothing; returns non-zero (and
# leaves DIR/openssl.log) if openssl failed. Files (.crt certificate, .key key):
#   ca              the CA ("CN=it-ca") that signs everything below unless noted
#   server          CN=example.com, SAN DNS:localhost IP:127.0.0.1, serverAuth and
#                   clientAuth (client port, peer port, and a client cert)
#   peer-other      as server, CN=other.example.com (refused by --peer-cert-allowed-cn)
#   client          CN=it-client, clientAuth (a client certificate; the CN is the user)
#   revoked         CN=it-revoked, clientAuth; its serial is listed in crl.pem
#   crl.pem         the CA's CRL revoking "revoked" (PEM)
#   wrongca         another CA ("CN=it-wrong-ca"); wrong-client is signed by it
#   wrong-client    CN=it-client from the wrong CA
#   expired         as server, but valid only from 2020-01-01 to 2020-01-02
#   mismatch.key    a key that belongs to no certificate here
#   bad.crt         a file that is not PEM
tls_make_certs() {
    local d=$1 log
    mkdir -p "$d/ca-db" || return 1
    log=$d/openssl.log
    : >"$d/ca-db/index.txt"
    echo 1000 >"$d/ca-db/serial"
    echo 1000 >"$d/ca-db/crlnumber"
    cat >"$d/openssl.cnf" <<CNF
[ ca ]
default_ca = it_ca
[ it_ca ]
dir = $d/ca-db
database = \$dir/index.txt
serial = \$dir/serial
crlnumber = \$dir/crlnumber
new_certs_dir = \$dir
certificate = $d/ca.crt
private_key = $d/ca.key
default_md = sha256
default_days = 365
default_crl_days = 365
policy = it_policy
copy_extensions = none
unique_subject = no
[ it_policy ]
commonName = supplied
[ req ]
distinguished_name = it_dn
prompt = no
[ it_dn ]
CN = placeholder
[ v3_ca ]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign,digitalSignature
subjectKeyIdentifier = hash
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
    _tls_key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" >>"$log" 2>&1; }
    _tls_ca() {   # _tls_ca NAME CN
        _tls_key "$d/$1.key" &&
            openssl req -new -x509 -config "$d/openssl.cnf" -extensions v3_ca -key "$d/$1.key" \
                -subj "/CN=$2" -days 3650 -out "$d/$1.crt" >>"$log" 2>&1
    }
    # _tls_leaf NAME CN EXT [openssl ca options...]: a key and a certificate signed by ca
    _tls_leaf() {
        local name=$1 cn=$2 ext=$3
        shift 3
        _tls_key "$d/$name.key" &&
            openssl req -new -config "$d/openssl.cnf" -key "$d/$name.key" -subj "/CN=$cn" \
                -out "$d/$name.csr" >>"$log" 2>&1 &&
            openssl ca -batch -notext -config "$d/openssl.cnf" -extensions "$ext" \
                -in "$d/$name.csr" -out "$d/$name.crt" "$@" >>"$log" 2>&1
    }
    _tls_ca ca it-ca &&
        _tls_leaf server example.com v3_server &&
        _tls_leaf peer-other other.example.com v3_server &&
        _tls_leaf client it-client v3_client &&
        _tls_leaf revoked it-revoked v3_client &&
        _tls_leaf expired example.com v3_server -startdate 20200101000000Z -enddate 20200102000000Z &&
        openssl ca -batch -config "$d/openssl.cnf" -revoke "$d/revoked.crt" >>"$log" 2>&1 &&
        openssl ca -batch -config "$d/openssl.cnf" -gencrl -out "$d/crl.pem" >>"$log" 2>&1 &&
        _tls_ca wrongca it-wrong-ca &&
        _tls_key "$d/wrong-client.key" &&
        openssl req -new -config "$d/openssl.cnf" -key "$d/wrong-client.key" -subj "/CN=it-client" \
            -out "$d/wrong-client.csr" >>"$log" 2>&1 &&
        openssl x509 -req -in "$d/wrong-client.csr" -CA "$d/wrongca.crt" -CAkey "$d/wrongca.key" \
            -CAcreateserial -days 365 -extfile "$d/openssl.cnf" -extensions v3_client \
            -out "$d/wrong-client.crt" >>"$log" 2>&1 &&
        _tls_key "$d/mismatch.key" &&
        printf 'this is not a certificate\n' >"$d/bad.crt"
}

# tls_ectl ENDPOINT [etcdctl args...]: etcdctl over https to ENDPOINT (host:port)
# trusting TLS_DIR/ca.crt, presenting TLS_DIR/client.crt (set TLS_DIR first).
tls_ectl() {
    local ep=$1
    shift
    etcdctl --endpoints="https://$ep" --cacert="$TLS_DIR/ca.crt" --cert="$TLS_DIR/client.crt" \
        --key="$TLS_DIR/client.key" --dial-timeout=5s --command-timeout=30s "$@"
}

# wait_tls_healthy PID ENDPOINT [etcdctl TLS args...]: poll `etcdctl endpoint health`
# over https (default: tls_ectl's CA and client cert) while PID runs; bounded (60 s).
wait_tls_healthy() {
    local pid=$1 ep=$2 i
    shift 2
    local args=("$@")
    [ ${#args[@]} -gt 0 ] || args=(--cacert="$TLS_DIR/ca.crt" --cert="$TLS_DIR/client.crt" --key="$TLS_DIR/client.key")
    for i in $(seq 1 120); do
        kill -0 "$pid" 2>/dev/null || return 1
        etcdctl --endpoints="https://$ep" "${args[@]}" --dial-timeout=1s --command-timeout=2s \
            endpoint health >/dev/null 2>&1 && return 0
        sleep 0.5
    done
    return 1
}

# ================================================================ auth (auth-* scenarios)

# wait_healthy_as USER:PASSWORD: wait_healthy for a server with authentication enabled
# (`endpoint health` without a user is "unhealthy": etcdserver: user name is empty).
wait_healthy_as() {
    local i
    for i in $(seq 1 120); do
        if ! kill -0 "$SRV_PID" 2>/dev/null; then
            wait "$SRV_PID" 2>/dev/null
            return 1
        fi
        if etcdctl --endpoints="$SRV_ENDPOINT" --dial-timeout=1s --command-timeout=2s \
                --user "$1" endpoint health >/dev/null 2>&1; then
            return 0
        fi
        sleep 0.5
    done
    return 1
}

# restart_server_as USER:PASSWORD: restart_server, waiting with credentials.
restart_server_as() {
    _launch_server
    if wait_healthy_as "$1"; then return 0; fi
    echo "# restart_server_as: $IT_TARGET did not become healthy; log tail:"
    tail -n 30 "$SRV_LOG" 2>/dev/null | sed 's/^/#     /'
    return 1
}

# check_ctl_output NAME RC EXPECTED-STDOUT CODE MESSAGE EXPECTED-STDERR cmd...
# The command must exit with status RC and print exactly EXPECTED-STDOUT; on stderr,
# etcdctl's {"level":"warn",...} retry lines must all carry "rpc error: code = CODE
# desc = MESSAGE" (at least one unless CODE is "-", which means none at all),
# {"level":"info",...} lines are ignored, and the remaining lines must be exactly
# EXPECTED-STDERR (or match it as a bash ERE when it starts with "re:").
check_ctl_output() {
    local name=$1 rc=$2 exp_out=$3 code=$4 msg=$5 exp_err=$6 out err got
    shift 6
    out=$("$@" 2>"$_IT_TMP/stderr")
    got=$?
    err=$(cat "$_IT_TMP/stderr")
    if [ "$got" != "$rc" ]; then
        fail "$name" "exit status $got, expected $rc" "command: $(_short "$*")" \
            "stdout: $(_short "$out")" "stderr: $(_short "$err")"
        return 1
    fi
    if [ "$out" != "$exp_out" ]; then
        fail "$name" "stdout mismatch" "command: $(_short "$*")"
        _diff_diag "$exp_out" "$out"
        return 1
    fi
    local res
    res=$(printf '%s\n' "$err" | python3 -c '
import json, sys
code, msg = sys.argv[1], sys.argv[2]
want = "rpc error: code = %s desc = %s" % (code, msg)
bad, rest, n = [], [], 0
for line in sys.stdin.read().split("\n"):
    j = None
    if line.startswith("{"):
        try:
            j = json.loads(line)
        except ValueError:
            j = None
    if not isinstance(j, dict):
        rest.append(line)
        continue
    if j.get("level") == "info":
        continue
    n += 1
    if j.get("level") != "warn":
        bad.append("level is not warn: " + line)
    elif code == "-":
        bad.append("unexpected warn line: " + line)
    elif j.get("error") != want:
        bad.append("error field %r != %r" % (j.get("error"), want))
if code != "-" and n == 0:
    bad.append("no {\"level\":\"warn\"...} line carrying %r" % want)
while rest and rest[-1] == "":
    rest.pop()
print("BAD " + json.dumps(bad))
print("\n".join(rest))
' "$code" "$msg")
    local badl rest
    badl=$(printf '%s\n' "$res" | head -n 1)
    rest=$(printf '%s\n' "$res" | sed '1d')
    if [ "$badl" != "BAD []" ]; then
        fail "$name" "unexpected stderr log lines" "${badl#BAD }" "stderr: $err"
        return 1
    fi
    if [[ "$exp_err" == re:* ]]; then
        if [[ "$rest" =~ ^${exp_err#re:}$ ]]; then pass "$name"; return 0; fi
        fail "$name" "stderr does not match"
        _diff_diag "/^${exp_err#re:}\$/" "$rest"
        return 1
    fi
    if [ "$rest" != "$exp_err" ]; then
        fail "$name" "stderr mismatch"
        _diff_diag "$exp_err" "$rest"
        return 1
    fi
    pass "$name"
}

# start_tls_server [--client-scheme S] [--peer-scheme S] [--name N] [--health ARG]... [-- FLAGS...]
#   As start_server, with client URL S://127.0.0.1:PORT (default https) and peer
#   URL scheme (default http); FLAGS (the TLS flags) go to the server. Healthy
#   means `etcdctl endpoint health` over https with the --health arguments
#   (default: TLS_DIR's CA and client certificate). Sets the same SRV_* state,
#   so ectl-like helpers, stop_server and restart_tls_server work.
SRV_HEALTH=()
start_tls_server() {
    local cs=https ps=http attempt
    SRV_NAME=it-member
    SRV_ADV_PEER_URL=
    SRV_TOKEN=
    SRV_EXTRA=()
    SRV_HEALTH=()
    while [ $# -gt 0 ]; do
        case $1 in
            --client-scheme) cs=$2; shift 2 ;;
            --peer-scheme) ps=$2; shift 2 ;;
            --name) SRV_NAME=$2; shift 2 ;;
            --health) SRV_HEALTH+=("$2"); shift 2 ;;
            --) shift; SRV_EXTRA=("$@"); break ;;
            *) echo "start_tls_server: bad argument $1" >&2; return 2 ;;
        esac
    done
    for attempt in 1 2 3; do
        SRV_DATA=$(mktemp -d "$_IT_TMP/data.XXXXXX")
        rmdir "$SRV_DATA"
        read -r SRV_CPORT SRV_PPORT < <(free_ports 2)
        SRV_ENDPOINT=127.0.0.1:$SRV_CPORT
        SRV_CLIENT_URL=$cs://127.0.0.1:$SRV_CPORT
        SRV_PEER_URL=$ps://127.0.0.1:$SRV_PPORT
        SRV_ADV_PEER_URL=$SRV_PEER_URL
        if _launch_server && wait_tls_healthy "$SRV_PID" "$SRV_ENDPOINT" "${SRV_HEALTH[@]}"; then
            return 0
        fi
        if [ $attempt -lt 3 ] && ! kill -0 "$SRV_PID" 2>/dev/null; then
            echo "# start_tls_server: $IT_TARGET exited during startup (attempt $attempt); retrying on new ports"
            tail -n 5 "$SRV_LOG" 2>/dev/null | sed 's/^/#     /'
            stop_server
            continue
        fi
        break
    done
    echo "# start_tls_server: $IT_TARGET did not become healthy; log tail:"
    tail -n 30 "$SRV_LOG" 2>/dev/null | sed 's/^/#     /'
    stop_server
    return 1
}

# restart_tls_server: start the last start_tls_server's member again (same data
# dir, ports and flags) and wait until it is healthy over https.
restart_tls_server() {
    _launch_server
    if wait_tls_healthy "$SRV_PID" "$SRV_ENDPOINT" "${SRV_HEALTH[@]}"; then return 0; fi
    echo "# restart_tls_server: $IT_TARGET did not become healthy; log tail:"
    tail -n 30 "$SRV_LOG" 2>/dev/null | sed 's/^/#     /'
    return 1
}

# build_go_prog NAME: build test/integration/go/NAME into IT_GOBIN (or a temp
# dir) offline, as run.sh builds its programs, unless the binary is newer than
# its sources; prints the binary's path. Returns non-zero (log on stdout as "#"
# lines) if go build failed.
build_go_prog() {
    local name=$1 src=$IT_LIB_DIR/go/$1 dir=${IT_GOBIN:-$_IT_TMP/gobin}
    mkdir -p "$dir"
    if [ -x "$dir/$name" ] && [ -z "$(find "$src" -newer "$dir/$name" -name '*.go')" ]; then
        echo "$dir/$name"
        return 0
    fi
    if (cd "$src" && GO111MODULE=off GOPATH=/usr/share/gocode GOFLAGS="" \
            go build -o "$dir/$name" .) >"$dir/$name.build.log" 2>&1; then
        echo "$dir/$name"
        return 0
    fi
    sed 's/^/# /' "$dir/$name.build.log" | head -n 40
    return 1
}
