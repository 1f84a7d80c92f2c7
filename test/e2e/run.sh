#!/usr/bin/env bash
# test/e2e/run.sh: etcd 3.4's own end-to-end suite (go.etcd.io/etcd/tests/e2e, as
# Debian's golang-etcd-server-dev ships it) run against metastore or real etcd, as
# a yardstick of compatibility.
#
# The suite's test binary runs "<bin-dir>/etcd" with etcd's flags for each member
# and "<bin-dir>/etcdctl" as the client. We build that binary once offline
# (GO111MODULE=off, GOPATH=/usr/share/gocode) into a cache dir, make a bin dir
# whose "etcd" is the server under test and whose "etcdctl" is Debian's, and run
# every selected test as its own process with a time limit. A member counts as
# started when its output (stdout and stderr share one pty) has shown two lines
# containing "enabled capabilities for version" or "published".
#
# Output: one line per test, "ok NAME (SECS s)" or "not ok NAME (REASON)", then
# "e2e: N passed, M failed". Exit status 0 only if every test passed.
#
# Usage: test/e2e/run.sh [options] [TEST...]
#   --target etcd|metastore   server under test (default metastore)
#   --bin PATH                the server binary (default: /usr/bin/etcd for
#                             --target etcd, else build/server/metastore)
#   --etcdctl PATH            client (default /usr/bin/etcdctl)
#   --only REGEX              run the tests whose name matches (grep -E)
#   --list-file FILE          run the tests named in FILE (one a line, # comments)
#   --timeout SECS            per-test limit (default 120); the test and every
#                             server it started are killed when it runs out
#   --results FILE            also write "NAME<TAB>ok|fail<TAB>SECS<TAB>REASON" lines
#   --table FILE              write a markdown table of the results
#   --baseline FILE           a --results file of another run (e.g. --target etcd)
#                             shown as an extra column of the table
#   --cache DIR               build and scratch dir (default /tmp/metastore-e2e)
#   --ready-shim              metastore only, a measuring aid: run it through
#                             test/e2e/ready-shim.sh, which prints the two ready
#                             lines when metastore says "ready to serve client
#                             requests" (for servers that do not print them yet)
#   --list                    print the selected test names and exit
# With no selection, all tests of the suite run (about 240; slow).
#
# TestEtcdExampleConfig starts a member with "--config-file
# ../../etcd.conf.yml.sample", etcd's sample file at the top of its source tree.
# Debian's golang-etcd-server-dev does not install that file, but the Debian
# source package it is built from holds it: when the test is selected, the tree
# gets $E2E_EXAMPLE_CONFIG if set, else $ETCD_SRC/etcd.conf.yml.sample if a
# package ships it there, else the file from that source package (apt-get
# source, fetched once into the cache dir; the system's apt setup is read, not
# changed).
set -u

ETCD_SRC=/usr/share/gocode/src/go.etcd.io/etcd
target=metastore
bin=
ctl=/usr/bin/etcdctl
only=
list_file=
timeout_s=120
results=
table=
baseline=
cache=${E2E_CACHE:-/tmp/metastore-e2e}
list_only=0
shim=0
names=()
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)

die() { echo "e2e: $*" >&2; exit 2; }

while [ $# -gt 0 ]; do
	case "$1" in
	--target) target=$2; shift 2 ;;
	--target=*) target=${1#*=}; shift ;;
	--bin) bin=$2; shift 2 ;;
	--bin=*) bin=${1#*=}; shift ;;
	--etcdctl) ctl=$2; shift 2 ;;
	--only) only=$2; shift 2 ;;
	--only=*) only=${1#*=}; shift ;;
	--list-file) list_file=$2; shift 2 ;;
	--list-file=*) list_file=${1#*=}; shift ;;
	--timeout) timeout_s=$2; shift 2 ;;
	--results) results=$2; shift 2 ;;
	--table) table=$2; shift 2 ;;
	--table=*) table=${1#*=}; shift ;;
	--baseline) baseline=$2; shift 2 ;;
	--cache) cache=$2; shift 2 ;;
	--list) list_only=1; shift ;;
	--ready-shim) shim=1; shift ;;
	-h|--help) sed -n '2,/^set -u/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
	-*) die "unknown option $1" ;;
	*) names+=("$1"); shift ;;
	esac
done

case "$target" in
etcd) : "${bin:=/usr/bin/etcd}" ;;
metastore) : "${bin:=$repo/build/server/metastore}" ;;
*) die "--target must be etcd or metastore" ;;
esac
[ -x "$bin" ] || die "server binary $bin not found (give --bin)"
[ -x "$ctl" ] || die "etcdctl $ctl not found (apt-get install etcd-client)"
[ -d "$ETCD_SRC/tests/e2e" ] || die "$ETCD_SRC/tests/e2e missing (apt-get install golang-etcd-server-dev)"
command -v go >/dev/null || die "go not found (apt-get install golang-go)"
bin=$(readlink -f "$bin")
ctl=$(readlink -f "$ctl")

mkdir -p "$cache" || die "cannot create $cache"
cache=$(cd "$cache" && pwd)
test_bin=$cache/e2e.test

# 1. The suite's test binary, built once.
if [ ! -x "$test_bin" ]; then
	echo "# building $test_bin (once; about a minute)" >&2
	if ! GO111MODULE=off GOPATH=/usr/share/gocode GOCACHE=$cache/gocache GOFLAGS= \
		go test -c -o "$test_bin.tmp" go.etcd.io/etcd/tests/e2e >"$cache/build.log" 2>&1; then
		tail -20 "$cache/build.log" >&2
		die "building the e2e test binary failed (log: $cache/build.log)"
	fi
	mv "$test_bin.tmp" "$test_bin"
fi

# 2. The bin dir the suite runs servers and clients from.
bindir=$cache/bin-$target
[ $shim = 0 ] || bindir=$cache/bin-$target-shim
mkdir -p "$bindir"
if [ $shim = 1 ]; then
	[ "$target" = metastore ] || die "--ready-shim is for --target metastore"
	rm -f "$bindir/etcd"
	printf '#!/bin/sh\nMETASTORE_BIN=%s exec %s "$@"\n' "$bin" "$here/ready-shim.sh" >"$bindir/etcd"
	chmod +x "$bindir/etcd"
else
	ln -sfn "$bin" "$bindir/etcd"
fi
ln -sfn "$ctl" "$bindir/etcdctl"

# 3. A working dir shaped like the source tree: some tests name certificates
# relative to tests/e2e ("../../integration/fixtures/...").
work=$cache/tree
mkdir -p "$work/tests/e2e" "$work/integration"
ln -sfn "$ETCD_SRC/integration/fixtures" "$work/integration/fixtures"
rm -f "$work/etcd.conf.yml.sample"

# fetch_example_config: etcd.conf.yml.sample out of the Debian source package of
# the installed etcd sources, into $cache (once). apt-get runs with its own
# lists and cache under $cache/apt and deb-src twins of the system's sources.
fetch_example_config() {
	local out=$cache/etcd.conf.yml.sample apt=$cache/apt src ver f
	[ -s "$out" ] && return 0
	src=$(dpkg-query -W -f='${source:Package}' golang-etcd-server-dev 2>/dev/null) &&
		ver=$(dpkg-query -W -f='${source:Version}' golang-etcd-server-dev 2>/dev/null) || return 1
	rm -rf "$apt"
	mkdir -p "$apt/parts" "$apt/lists/partial" "$apt/cache/archives/partial" "$apt/src"
	: >"$apt/sources.list"
	[ ! -r /etc/apt/sources.list ] || sed -n 's/^deb /deb-src /p' /etc/apt/sources.list >"$apt/parts/system.list"
	for f in /etc/apt/sources.list.d/*.sources /etc/apt/sources.list.d/*.list; do
		[ -r "$f" ] || continue
		case "$f" in
		*.sources) sed 's/^Types:.*/Types: deb-src/' "$f" >"$apt/parts/${f##*/}" ;;
		*) sed -n 's/^deb /deb-src /p' "$f" >"$apt/parts/${f##*/}" ;;
		esac
	done
	local o=(-q -o "Dir::Etc::SourceList=$apt/sources.list" -o "Dir::Etc::SourceParts=$apt/parts"
		-o "Dir::State::Lists=$apt/lists" -o "Dir::Cache=$apt/cache" -o Debug::NoLocking=1
		-o APT::Sandbox::User=root)
	apt-get "${o[@]}" update >"$apt/log" 2>&1
	(cd "$apt/src" && apt-get "${o[@]}" source --download-only "$src=$ver") >>"$apt/log" 2>&1 &&
		for f in "$apt/src/"*.orig.tar.*; do
			tar -xf "$f" -O --wildcards '*/etcd.conf.yml.sample' >"$out.tmp" 2>>"$apt/log" && break
		done
	if [ -s "$out.tmp" ]; then
		mv "$out.tmp" "$out"
		rm -rf "$apt"
		return 0
	fi
	rm -f "$out.tmp"
	echo "# e2e: could not get etcd.conf.yml.sample from source package $src $ver (log: $apt/log)" >&2
	return 1
}

# 4. The selection.
all=$(cd "$work/tests/e2e" && "$test_bin" -test.list '.*' 2>/dev/null | grep '^Test')
[ -n "$all" ] || die "the test binary lists no tests"
selected=$all
if [ ${#names[@]} -gt 0 ]; then
	selected=$(printf '%s\n' "${names[@]}")
fi
if [ -n "$list_file" ]; then
	[ -r "$list_file" ] || die "cannot read $list_file"
	selected=$(sed 's/#.*//; s/[[:space:]]//g; /^$/d' "$list_file")
fi
if [ -n "$only" ]; then
	selected=$(printf '%s\n' "$selected" | grep -E -- "$only")
fi
# Keep only names the binary has, in the order given. "Test/sub" names one
# subtest of Test (go test's -run matches each level separately).
missing=0
selected=$(printf '%s\n' "$selected" | while read -r t; do
	[ -n "$t" ] || continue
	if printf '%s\n' "$all" | grep -qx -- "${t%%/*}"; then echo "$t"; else echo "e2e: no such test: $t" >&2; fi
done)
for t in $(sed 's/#.*//; s/[[:space:]]//g; /^$/d' "${list_file:-/dev/null}"); do
	printf '%s\n' "$selected" | grep -qx -- "$t" || missing=$((missing + 1))
done
[ -n "$selected" ] || die "no test selected"
if [ "$list_only" != 1 ] && printf '%s\n' "$selected" | grep -qx TestEtcdExampleConfig; then
	example=${E2E_EXAMPLE_CONFIG:-$ETCD_SRC/etcd.conf.yml.sample}
	if [ ! -r "$example" ] && fetch_example_config; then
		example=$cache/etcd.conf.yml.sample
	fi
	[ ! -r "$example" ] || ln -sfn "$(readlink -f "$example")" "$work/etcd.conf.yml.sample"
fi
if [ "$list_only" = 1 ]; then
	printf '%s\n' "$selected"
	exit 0
fi

logs=$cache/logs-$target
[ $shim = 0 ] || logs=$cache/logs-$target-shim
mkdir -p "$logs"
res_tmp=$logs/results.tsv
: >"$res_tmp"

# Kill, by pid, every process that carries this run's marker in its environment
# (the test binary and the servers and clients it spawned in their own sessions).
kill_marked() {
	local marker=$1 sig=$2 p pids=()
	for p in /proc/[0-9]*; do
		if grep -qxzF -- "$marker" "$p/environ" 2>/dev/null; then
			pids+=("${p#/proc/}")
		fi
	done
	[ ${#pids[@]} -eq 0 ] && return 1
	kill "-$sig" "${pids[@]}" 2>/dev/null
	return 0
}

# The first line of a failed test's log that says why; when a member did not
# start, the server's last words too (EXPECT_DEBUG=1 puts the output of every
# spawned process in the log, each line prefixed "<path>-<pid>: ").
reason_of() {
	local log=$1 r srv
	r=$(grep -m1 -E '^[[:space:]]+[a-z_0-9]+\.go:[0-9]+: ' "$log" | sed 's/^[[:space:]]*//')
	if printf '%s' "$r" | grep -q "could not start etcd process cluster"; then
		srv=$(grep -E "^$bindir/etcd-[0-9]+: " "$log" | grep -v -E " I \\| | info |Run '.* --help'|ready-shim:" | tail -1 |
			sed -E "s|^$bindir/etcd-[0-9]+: ||")
		if [ -n "$srv" ]; then
			r="member did not start: $srv"
		else
			r="member did not start: $(printf '%s' "$r" | sed 's/.*could not start etcd process cluster/could not start/')"
		fi
	fi
	[ -n "$r" ] || r=$(grep -m1 -E '^panic: |FAIL|Error|error' "$log" | sed 's/^[[:space:]]*//')
	# A client that got a gRPC error: name it, it is usually the point.
	local rpc
	rpc=$(grep -m1 -o -E 'Error: rpc error: code = [A-Za-z]+ desc = [^"\\]*' "$log" | sed 's/^Error: //; s/[[:space:]]*$//')
	if [ -n "$rpc" ] && ! printf '%s' "$r" | grep -q "member did not start"; then
		r="$rpc; $(printf '%s' "$r" | cut -c1-100)"
	fi
	[ -n "$r" ] || r="failed (see $log)"
	printf '%s' "$r" | tr -d '\r' | tr '\t|\n' '   ' | sed 's/[[:space:]]*$//' | cut -c1-220
}

passed=0
failed=$missing
[ "$missing" -eq 0 ] || echo "not ok e2e-list ($missing listed test(s) not in the suite)"
start_all=$(date +%s.%N)
echo "# e2e: target $target ($bin), $(printf '%s\n' "$selected" | wc -l) tests, timeout ${timeout_s}s each" >&2
while read -r t; do
	[ -n "$t" ] || continue
	log=$logs/${t//\//_}.log
	scratch=$cache/scratch/${t//\//_}
	rm -rf "$scratch"
	mkdir -p "$scratch"
	# etcd's sample file leaves data-dir empty: a member in the test's cwd
	rm -rf "$work/tests/e2e/default.etcd" "$work/tests/e2e/default.metastore"
	marker="METASTORE_E2E_RUN=$$-${t//\//_}"
	t0=$(date +%s.%N)
	(
		cd "$work/tests/e2e" &&
			exec env "$marker" TMPDIR="$scratch" EXPECT_DEBUG=1 "$test_bin" -bin-dir "$bindir" \
				-cert-dir "$ETCD_SRC/integration/fixtures" \
				-test.run "^${t}\$" -test.v -test.timeout "$((timeout_s + 30))s"
	) >"$log" 2>&1 </dev/null &
	pid=$!
	timed_out=0
	deadline=$(($(date +%s) + timeout_s))
	while kill -0 "$pid" 2>/dev/null; do
		if [ "$(date +%s)" -ge "$deadline" ]; then
			timed_out=1
			kill_marked "$marker" TERM
			sleep 2
			kill_marked "$marker" KILL
			break
		fi
		sleep 0.2
	done
	wait "$pid"
	rc=$?
	# Servers the test left behind (killed test, or a bug): never leak them.
	kill_marked "$marker" KILL && sleep 0.2
	secs=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
	if [ $timed_out = 1 ]; then
		status=fail
		reason="timeout after ${timeout_s}s: $(reason_of "$log")"
		grep -q -- "--- " "$log" || reason="timeout after ${timeout_s}s: no member printed etcd's ready lines"
	elif [ $rc -eq 0 ] && grep -qE -- "--- PASS: $t \(" "$log"; then
		status=ok
		reason=
	elif grep -qE -- "--- PASS: $t \(" "$log" && ! grep -qE -- "--- FAIL" "$log" &&
		grep -q "^Too many goroutines running after all test" "$log"; then
		# The test passed; the suite's own goroutine-leak check of the test
		# binary (testutil.MustTestMainWithLeakDetection) then failed the
		# process, which is about the client side, not the server.
		status=ok
		reason=
	elif [ $rc -eq 0 ] && grep -qE "^ *--- SKIP: $t " "$log"; then
		status=skip
		reason="skipped: $(grep -A1 -m1 "^--- SKIP" "$log" | tail -1 | sed 's/^[[:space:]]*//' | cut -c1-120)"
	else
		status=fail
		reason=$(reason_of "$log")
	fi
	case $status in
	ok) passed=$((passed + 1)); echo "ok $t ($secs s)" ;;
	skip) passed=$((passed + 1)); echo "ok $t ($secs s) # $reason" ;;
	*) failed=$((failed + 1)); echo "not ok $t ($reason)" ;;
	esac
	printf '%s\t%s\t%s\t%s\n' "$t" "$status" "$secs" "$reason" >>"$res_tmp"
	rm -rf "$scratch"
done <<<"$selected"
total_s=$(awk -v a="$start_all" -v b="$(date +%s.%N)" 'BEGIN { printf "%.0f", b - a }')

[ -z "$results" ] || cp "$res_tmp" "$results"
if [ -n "$table" ]; then
	{
		if [ -n "$baseline" ]; then
			echo "| test | etcd 3.4.23 | $target | $target: why not |"
			echo "| --- | --- | --- | --- |"
		else
			echo "| test | $target | secs | why not |"
			echo "| --- | --- | --- | --- |"
		fi
		while IFS=$'\t' read -r t s secs r; do
			if [ -n "$baseline" ]; then
				b=$(awk -F'\t' -v t="$t" '$1 == t { print $2 " (" $3 " s)" }' "$baseline")
				echo "| $t | ${b:-not run} | $s ($secs s) | $r |"
			else
				echo "| $t | $s | $secs | $r |"
			fi
		done <"$res_tmp"
	} >"$table"
fi
echo "e2e: $passed passed, $failed failed (${total_s}s)"
[ "$failed" -eq 0 ]
