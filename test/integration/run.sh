#!/usr/bin/env bash
# test/integration/run.sh — integration driver: real server processes, real etcdctl,
# real Go clientv3 programs.
#
#   test/integration/run.sh --target etcd                       # Debian's etcd from PATH
#   test/integration/run.sh --target metastore --bin build/server/metastore
#   test/integration/run.sh --target etcd --only etcdctl-txn    # one scenario (repeatable)
#   test/integration/run.sh --list                              # scenario names
#
# Prints "ok NAME" / "not ok NAME (reason)" per check ("#" lines are diagnostics),
# then exactly one summary line "integration: N passed, M failed"; exits 1 if M > 0.

set -u

IT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
SCEN_DIR=$IT_DIR/scenarios

usage() {
    sed -n '2,11p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
    exit 2
}

target=
bin=
only=()
gobin=$IT_DIR/bin
while [ $# -gt 0 ]; do
    case $1 in
        --target) target=${2:-}; shift 2 ;;
        --target=*) target=${1#*=}; shift ;;
        --bin) bin=${2:-}; shift 2 ;;
        --bin=*) bin=${1#*=}; shift ;;
        --only) only+=("${2:-}"); shift 2 ;;
        --only=*) only+=("${1#*=}"); shift ;;
        --gobin) gobin=${2:-}; shift 2 ;;
        --list)
            for f in "$SCEN_DIR"/*.sh; do basename "${f%.sh}"; done
            exit 0 ;;
        -h|--help) usage ;;
        *) echo "run.sh: unknown argument: $1" >&2; usage ;;
    esac
done

case $target in
    etcd)
        [ -n "$bin" ] || bin=$(command -v etcd || true)
        ;;
    metastore)
        [ -n "$bin" ] || { echo "run.sh: --target metastore needs --bin PATH" >&2; exit 2; }
        ;;
    *) echo "run.sh: --target must be etcd or metastore" >&2; usage ;;
esac
if [ -z "$bin" ] || [ ! -x "$bin" ]; then
    echo "run.sh: server binary not found or not executable: '${bin}'" >&2
    echo "integration: 0 passed, 1 failed"
    exit 1
fi
bin=$(cd "$(dirname "$bin")" && pwd)/$(basename "$bin")
command -v etcdctl >/dev/null || { echo "run.sh: etcdctl not in PATH (apt-get install etcd-client)" >&2; exit 2; }
command -v python3 >/dev/null || { echo "run.sh: python3 not in PATH" >&2; exit 2; }

passed=0
failed=0
tally() {   # read scenario output on stdin, echo it, count ok / not ok lines
    local line
    while IFS= read -r line; do
        printf '%s\n' "$line"
        case $line in
            "ok "*) passed=$((passed + 1)) ;;
            "not ok "*) failed=$((failed + 1)) ;;
        esac
    done
}

# ---------------------------------------------------------------- Go programs
# Built offline against Debian's etcd 3.4 sources (golang-etcd-server-dev).
build_go() {
    local name=$1 src=$IT_DIR/go/$1
    mkdir -p "$gobin"
    if [ -x "$gobin/$name" ] && [ -z "$(find "$src" -newer "$gobin/$name" -name '*.go')" ]; then
        return 0
    fi
    (cd "$src" && GO111MODULE=off GOPATH=/usr/share/gocode GOFLAGS="" \
        go build -o "$gobin/$name" .) >"$gobin/$name.build.log" 2>&1
}

selected=()
if [ ${#only[@]} -gt 0 ]; then
    for s in "${only[@]}"; do
        if [ ! -f "$SCEN_DIR/$s.sh" ]; then
            echo "not ok $s (no such scenario; see --list)"
            failed=$((failed + 1))
            continue
        fi
        selected+=("$s")
    done
else
    for f in "$SCEN_DIR"/*.sh; do selected+=("$(basename "${f%.sh}")"); done
fi

for prog in kvcheck durability lincheck concur watchcheck elect; do
    need=0
    for s in "${selected[@]}"; do
        grep -q "IT_GOBIN/$prog" "$SCEN_DIR/$s.sh" && need=1
    done
    [ $need -eq 1 ] || continue
    if build_go "$prog"; then
        echo "ok build/$prog"
        passed=$((passed + 1))
    else
        echo "not ok build/$prog (go build failed; see $gobin/$prog.build.log)"
        sed 's/^/#   /' "$gobin/$prog.build.log" | head -n 40
        failed=$((failed + 1))
    fi
done

export IT_TARGET=$target IT_SERVER=$bin IT_GOBIN=$gobin
echo "# target=$target server=$bin"
for s in "${selected[@]}"; do
    echo "# --- $s"
    before=$failed
    t_start=$SECONDS
    rc_file=$(mktemp)
    tally < <(IT_SCENARIO=$s bash "$SCEN_DIR/$s.sh" 2>&1; echo $? >"$rc_file")
    rc=$(cat "$rc_file"); rc=${rc:-1}
    rm -f "$rc_file"
    if [ "$rc" -ne 0 ] && [ $failed -eq $before ]; then
        echo "not ok $s (scenario exited with status $rc without a failing check)"
        failed=$((failed + 1))
    fi
    echo "# $s: $((SECONDS - t_start)) s"
done

echo "integration: $passed passed, $failed failed"
[ $failed -eq 0 ]
