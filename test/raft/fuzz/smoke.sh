#!/usr/bin/env bash
# smoke.sh - a bounded libFuzzer run of the raft target (test/raft/fuzz/fuzz_step.c).
#
# Usage: test/raft/fuzz/smoke.sh [BUILD_DIR]
#
#   BUILD_DIR  a meson build dir configured with -Dfuzz=true. If it does not exist it
#              is created with
#                CC=clang meson setup BUILD_DIR -Dfuzz=true \
#                  -Db_sanitize=address,undefined -Db_lundef=false --buildtype=debugoptimized
#              Default: build-fuzz in the source root. Only the fuzz target is built
#              (ninja -C BUILD_DIR test/raft/raft-fuzz), not the whole project.
#
# Environment:
#   RAFT_FUZZ_SECONDS  how long to fuzz (default 30)
#   RAFT_FUZZ_RSS_MB   libFuzzer -rss_limit_mb (default 2048)
#   RAFT_FUZZ_CORPUS   corpus dir, kept between runs (default BUILD_DIR/raft-fuzz-corpus)
#
# Prints exactly one line on stdout:
#   ok raft-fuzz-smoke (N execs)
#   not ok raft-fuzz-smoke (reason)
# and exits 0 only in the first case: libFuzzer finished its time without a crash,
# sanitizer report (ASan, UBSan, LeakSanitizer), per-input timeout or out-of-memory.
# Everything else (build output, the fuzzer's log) goes to BUILD_DIR/raft-fuzz-smoke.log;
# a failing input is saved under BUILD_DIR/raft-fuzz-artifacts/ and can be replayed
# with BUILD_DIR/test/raft/raft-fuzz <file>.
# Needs clang with libFuzzer (Debian 12: clang, libclang-rt-14-dev; tools/install-deps.sh).
set -u

name=raft-fuzz-smoke
say_not_ok() {
	echo "not ok $name ($1)"
	exit 1
}

src=$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd) ||
	say_not_ok "cannot find the source root"
build=${1:-$src/build-fuzz}
case $build in /*) ;; *) build=$PWD/$build ;; esac
secs=${RAFT_FUZZ_SECONDS:-30}
rss=${RAFT_FUZZ_RSS_MB:-2048}
case $secs in '' | *[!0-9]*) say_not_ok "RAFT_FUZZ_SECONDS must be a number of seconds" ;; esac
case $rss in '' | *[!0-9]*) say_not_ok "RAFT_FUZZ_RSS_MB must be a whole number" ;; esac
[ "$secs" -gt 0 ] || say_not_ok "RAFT_FUZZ_SECONDS must be positive"

for tool in meson ninja timeout; do
	command -v "$tool" >/dev/null 2>&1 ||
		say_not_ok "$tool not found (run tools/install-deps.sh)"
done

# 1. the build dir: use it if it exists, else create a fuzz build there
if [ ! -e "$build" ]; then
	command -v clang >/dev/null 2>&1 || say_not_ok "clang not found (run tools/install-deps.sh)"
	setup_log=$(mktemp "${TMPDIR:-/tmp}/$name.XXXXXX") || say_not_ok "mktemp failed"
	if ! (cd "$src" && CC=clang meson setup "$build" -Dfuzz=true \
		-Db_sanitize=address,undefined -Db_lundef=false --buildtype=debugoptimized) \
		>"$setup_log" 2>&1; then
		say_not_ok "meson setup $build failed, see $setup_log"
	fi
	mv "$setup_log" "$build/$name.log" 2>/dev/null || true
fi
[ -f "$build/build.ninja" ] || say_not_ok "$build is not a meson build dir"
build=$(cd "$build" && pwd)
log=$build/$name.log
: >>"$log" || say_not_ok "cannot write $log"
ninja -C "$build" -t targets all 2>/dev/null | grep -q '^test/raft/raft-fuzz:' ||
	say_not_ok "$build is not configured with -Dfuzz=true (and CC=clang)"

# 2. build the target alone
if ! ninja -C "$build" test/raft/raft-fuzz >>"$log" 2>&1; then
	say_not_ok "building test/raft/raft-fuzz failed, see $log"
fi
bin=$build/test/raft/raft-fuzz
[ -x "$bin" ] || say_not_ok "$bin was not built"

# 3. fuzz for a bounded time
corpus=${RAFT_FUZZ_CORPUS:-$build/raft-fuzz-corpus}
art=$build/raft-fuzz-artifacts
mkdir -p "$corpus" "$art" || say_not_ok "cannot create $corpus or $art"
flog=$(mktemp "$build/$name.run.XXXXXX") || say_not_ok "mktemp failed"
# UBSan only reports by default; make it fatal so libFuzzer keeps the input
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}
timeout -k 10 $((secs + 120)) "$bin" -max_total_time="$secs" -rss_limit_mb="$rss" \
	-timeout=25 -print_final_stats=1 -artifact_prefix="$art/" "$corpus" >"$flog" 2>&1
rc=$?
cat "$flog" >>"$log"

execs=$(sed -n 's/^stat::number_of_executed_units: *\([0-9][0-9]*\).*/\1/p' "$flog" | tail -n 1)
[ -n "$execs" ] || execs=$(sed -n 's/^Done \([0-9][0-9]*\) runs.*/\1/p' "$flog" | tail -n 1)
artifact=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$flog" | tail -n 1)
where="log $log${artifact:+, input $artifact}"

reason=
if grep -q 'ERROR: libFuzzer: timeout' "$flog"; then
	reason="timeout: an input ran longer than 25 s"
elif grep -q 'ERROR: libFuzzer: out-of-memory' "$flog"; then
	reason="out-of-memory: RSS above $rss MB"
elif grep -qE 'ERROR: LeakSanitizer|libFuzzer: detected memory leaks' "$flog"; then
	reason="memory leak"
elif grep -q 'ERROR: AddressSanitizer' "$flog"; then
	reason="crash: $(grep -m1 -o 'AddressSanitizer: [a-z-]*' "$flog")"
elif grep -q 'runtime error:' "$flog"; then
	reason="undefined behaviour: $(grep -m1 -o 'runtime error: .*' "$flog" | cut -c1-100)"
elif grep -qE 'ERROR: libFuzzer: (deadly signal|fuzz target exited)' "$flog"; then
	what=$(grep -m1 -oE 'libFuzzer: (deadly signal|fuzz target exited)' "$flog")
	reason="crash or broken invariant: $what"
elif grep -q 'ERROR: ' "$flog"; then
	reason="$(grep -m1 -o 'ERROR: .*' "$flog" | cut -c1-100)"
elif [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
	reason="the fuzzer did not stop after $secs s"
elif [ "$rc" -ne 0 ]; then
	reason="the fuzzer exited with status $rc"
elif [ -z "$execs" ]; then
	reason="no run statistics in the fuzzer's output"
fi
rm -f "$flog"
[ -z "$reason" ] || say_not_ok "$reason; $where"
echo "ok $name ($execs execs)"
exit 0
