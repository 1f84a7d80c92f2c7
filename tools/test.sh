#!/usr/bin/env bash
# README "test" command (and what .ci/run calls): install what is missing, build
# the unit tests with ASan/UBSan and a release server, run every unit suite and
# every integration scenario against real metastore processes, the listed tests
# of etcd's own e2e suite (test/e2e/ci.list), then print one
# line "N passed, M failed" summing all suites. Exits non-zero on any failure.
#
#   tools/test.sh              everything
#   tools/test.sh --unit       unit tests only (+ the raft fuzz smoke run)
#   tools/test.sh --integration  integration tests only
#
# The raft fuzz smoke run (test/raft/fuzz/smoke.sh, libFuzzer under ASan/UBSan in
# build-fuzz) fuzzes for RAFT_FUZZ_SECONDS (default 30) and counts as one test.
set -uo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
tools/install-deps.sh || exit 1

want_unit=1 want_int=1
case "${1:-}" in
  --unit) want_int=0 ;;
  --integration) want_unit=0 ;;
esac

passed=0 failed=0
fail_note() { echo "test.sh: $*" >&2; failed=$((failed + 1)); }

if [ $want_unit = 1 ]; then
  if [ ! -f build-asan/build.ninja ]; then
    meson setup build-asan -Db_sanitize=address,undefined -Db_lundef=false \
      --buildtype=debug >/dev/null || { fail_note "meson setup (asan) failed"; }
  fi
  if ninja -C build-asan >build-asan.log 2>&1; then
    rm -rf build-asan/unit-reports && mkdir -p build-asan/unit-reports
    # Leaks in third-party libraries' one-time initialisation are not ours.
    export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}
    export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
    meson test -C build-asan --suite unit --print-errorlogs --num-processes 2 >build-asan/unit.log 2>&1
    meson_rc=$?
    tail -n 25 build-asan/unit.log
    read -r up uf < <(python3 tools/count-unit.py build-asan)
    passed=$((passed + up)); failed=$((failed + uf))
    if [ $meson_rc -ne 0 ] && [ "$uf" -eq 0 ]; then
      fail_note "meson test failed without a failing Criterion test (see build-asan/unit.log)"
    fi
    # Criterion runs each test in a forked child and does not always count a
    # sanitizer report at the child's exit as a failure: look for them ourselves.
    san=$(grep -cE 'ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:' \
          build-asan/meson-logs/testlog.txt 2>/dev/null)
    if [ "${san:-0}" -gt 0 ]; then
      grep -nE -A5 'ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:' build-asan/meson-logs/testlog.txt | head -60
      fail_note "$san sanitizer report(s) in the unit tests (build-asan/meson-logs/testlog.txt)"
    fi
  else
    tail -n 40 build-asan.log
    fail_note "unit test build failed (build-asan.log)"
  fi
fi

if [ $want_unit = 1 ]; then
  fz=$(test/raft/fuzz/smoke.sh "$root/build-fuzz")
  echo "$fz"
  case $fz in
    "ok "*) passed=$((passed + 1)) ;;
    *) failed=$((failed + 1)) ;;
  esac
fi

if [ $want_int = 1 ]; then
  if [ ! -f build/build.ninja ]; then
    meson setup build --buildtype=release -Dtests=disabled >/dev/null || fail_note "meson setup (release) failed"
  fi
  if ninja -C build >build.log 2>&1; then
    out=$(mktemp)
    test/integration/run.sh --target metastore --bin "$root/build/server/metastore" 2>&1 | tee "$out"
    line=$(grep -E '^integration: [0-9]+ passed, [0-9]+ failed' "$out" | tail -n 1)
    if [ -n "$line" ]; then
      ip=$(echo "$line" | sed -E 's/^integration: ([0-9]+) passed.*/\1/')
      if_=$(echo "$line" | sed -E 's/.* ([0-9]+) failed.*/\1/')
      passed=$((passed + ip)); failed=$((failed + if_))
    else
      fail_note "integration run printed no summary"
    fi
    rm -f "$out"
    # etcd's own e2e suite (Debian's golang-etcd-server-dev), the tests listed in
    # test/e2e/ci.list, against the same binary.
    out=$(mktemp)
    test/e2e/run.sh --target metastore --bin "$root/build/server/metastore" \
      --list-file test/e2e/ci.list --timeout 120 2>&1 | tee "$out"
    line=$(grep -E '^e2e: [0-9]+ passed, [0-9]+ failed' "$out" | tail -n 1)
    if [ -n "$line" ]; then
      ep=$(echo "$line" | sed -E 's/^e2e: ([0-9]+) passed.*/\1/')
      ef=$(echo "$line" | sed -E 's/.* ([0-9]+) failed.*/\1/')
      passed=$((passed + ep)); failed=$((failed + ef))
    else
      fail_note "e2e run printed no summary"
    fi
    rm -f "$out"
  else
    tail -n 40 build.log
    fail_note "release build failed (build.log)"
  fi
fi

echo "$passed passed, $failed failed"
[ $failed -eq 0 ] && [ $passed -gt 0 ]
