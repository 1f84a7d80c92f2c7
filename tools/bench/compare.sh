#!/usr/bin/env bash
# compare.sh: run the same msbench scenarios against Debian's real etcd and against
# metastore on this machine, one server at a time, and write a markdown report with
# ops/s, p50 and p99 for each, the ratio metastore/etcd, the CPU used by the load
# generator and by the server, the disk's fdatasync cost, the date and the versions.
#
#   tools/bench/compare.sh [options] /path/to/metastore
#   tools/bench/compare.sh [options] --etcd-only
#
# Each server gets fresh data dirs under one temp dir (same disk for both), free
# 127.0.0.1 ports, and is stopped by pid when its scenarios are done (and on any exit).
# See docs/benchmarks.md for what each scenario measures.
set -euo pipefail

usage() {
	cat <<'EOF'
usage: compare.sh [options] METASTORE_BINARY
       compare.sh [options] --etcd-only
options:
  --etcd-only          measure only etcd; metastore columns say "pending"
  --msbench PATH       msbench binary   [$MSBENCH, else <repo>/build*/tools/bench/msbench]
  --etcd PATH          etcd binary      [etcd from PATH]
  --repeat R           runs per scenario; the run with the median ops/s is reported [3]
  --scale F            multiply every scenario's op count by F (e.g. 0.1 for a smoke run) [1]
  --workdir DIR        parent for the temp dir holding data dirs and logs [$TMPDIR or /tmp]
  --out FILE           also write the markdown report to FILE
  --keep               keep the temp dir (data dirs, server logs, raw msbench output)
  --quiet-wait SEC     before each run, wait up to SEC s for the machine to be idle
                       (other processes using < 0.3 cores; the idle server counts) [60]
Exit status: 0 if every run was clean, 2 if any run had failed operations, 1 on setup errors.
EOF
}

die() { echo "compare.sh: ERROR: $*" >&2; exit 1; }
log() { echo "compare.sh: $*" >&2; }

# ---- arguments -------------------------------------------------------------------
ETCD_ONLY=0
METASTORE=""
MSBENCH="${MSBENCH:-}"
ETCD_BIN="$(command -v etcd || true)"
REPEAT=3
SCALE=1
WORKPARENT="${TMPDIR:-/tmp}"
OUT=""
KEEP=0
QUIET_WAIT=60
while [ $# -gt 0 ]; do
	case "$1" in
	--etcd-only) ETCD_ONLY=1 ;;
	--msbench) MSBENCH="$2"; shift ;;
	--etcd) ETCD_BIN="$2"; shift ;;
	--repeat) REPEAT="$2"; shift ;;
	--scale) SCALE="$2"; shift ;;
	--workdir) WORKPARENT="$2"; shift ;;
	--out) OUT="$2"; shift ;;
	--keep) KEEP=1 ;;
	--quiet-wait) QUIET_WAIT="$2"; shift ;;
	-h|--help) usage; exit 0 ;;
	-*) usage >&2; die "unknown option $1" ;;
	*) [ -z "$METASTORE" ] || die "only one metastore binary"; METASTORE="$1" ;;
	esac
	shift
done

REPO="$(cd "$(dirname "$0")/../.." && pwd)"
if [ -z "$MSBENCH" ]; then
	for cand in "$REPO"/build*/tools/bench/msbench /tmp/build-bench/tools/bench/msbench; do
		if [ -x "$cand" ]; then MSBENCH="$cand"; break; fi
	done
fi
if [ -z "$MSBENCH" ] || [ ! -x "$MSBENCH" ]; then
	die "msbench not found: build it (ninja -C BUILD tools/bench/msbench) and pass --msbench"
fi
if [ -z "$ETCD_BIN" ] || [ ! -x "$ETCD_BIN" ]; then
	die "etcd not found (apt-get install etcd-server) or pass --etcd"
fi
if [ "$ETCD_ONLY" = 0 ]; then
	[ -n "$METASTORE" ] || { usage >&2; die "give the metastore binary or --etcd-only"; }
	[ -x "$METASTORE" ] || die "metastore binary '$METASTORE' is not executable"
	METASTORE="$(cd "$(dirname "$METASTORE")" && pwd)/$(basename "$METASTORE")"
fi
case "$REPEAT" in ''|*[!0-9]*|0) die "--repeat needs a positive integer" ;; esac
case "$QUIET_WAIT" in ''|*[!0-9]*) die "--quiet-wait needs a number of seconds" ;; esac
for tool in jq ss awk; do
	command -v "$tool" >/dev/null || die "needs $tool"
done

# ---- scenarios ---------------------------------------------------------------------
# name|op|clients|conns|ops|extra msbench flags|reported?
# "prefill" writes keys 0..9999 once (never scaled) so the range scenarios read keys
# that exist; it also warms the server up. Reads run before the bulk of the writes so
# that they see the same small store whatever --repeat is (a store with more history
# reads slower). Every reported scenario runs REPEAT times.
SCENARIOS=(
	"prefill|put|100|10|10000|--sequential --key-space 10000|no"
	"range-100|range|100|10|50000|--key-space 10000|yes"
	"range-serializable-100|range-serializable|100|10|50000|--key-space 10000|yes"
	"put-1|put|1|1|5000|--key-space 100000|yes"
	"put-100|put|100|10|50000|--key-space 100000|yes"
	"txn-100|txn|100|10|30000|--key-space 100000|yes"
)
COMMON_FLAGS="--key-size 8 --val-size 256"

# ---- temp dir, cleanup -------------------------------------------------------------
WORK="$(mktemp -d "$WORKPARENT/msbench-compare.XXXXXX")"
SERVER_PID=""
# shellcheck disable=SC2317  # called through the EXIT trap
stop_server() {
	[ -n "$SERVER_PID" ] || return 0
	local pid="$SERVER_PID"
	SERVER_PID=""
	if kill -0 "$pid" 2>/dev/null; then
		kill -TERM "$pid" 2>/dev/null || true
		for _ in $(seq 1 150); do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.1
		done
		if kill -0 "$pid" 2>/dev/null; then
			log "server pid $pid ignored SIGTERM for 15 s; sending SIGKILL"
			kill -KILL "$pid" 2>/dev/null || true
		fi
	fi
	wait "$pid" 2>/dev/null || true
}
# shellcheck disable=SC2317  # called through the EXIT trap
cleanup() {
	stop_server
	if [ "$KEEP" = 1 ]; then
		log "kept $WORK"
	else
		rm -rf "$WORK"
	fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# A TCP port on 127.0.0.1 with no socket at all (listening, connected or TIME_WAIT),
# different from $1.
pick_port() {
	local p
	for _ in $(seq 1 500); do
		p=$(( 20000 + RANDOM % 30000 ))
		[ "$p" != "${1:-}" ] || continue
		if [ -z "$(ss -Htan "( sport = :$p or dport = :$p )")" ]; then
			echo "$p"
			return 0
		fi
	done
	return 1
}

# Server CPU time so far in seconds (utime + stime of the process).
proc_cpu() {
	awk -v hz="$(getconf CLK_TCK)" '{ sub(/^.*\) /, ""); print ($12 + $13) / hz }' "/proc/$1/stat"
}

now() { date +%s.%N; }

# Busy CPU seconds of the whole machine so far (user+nice+system+irq+softirq, all CPUs).
machine_busy() {
	awk -v hz="$(getconf CLK_TCK)" '/^cpu / { print ($2 + $3 + $4 + $7 + $8) / hz; exit }' /proc/stat
}

# wait_quiet: the machine is shared; wait (up to QUIET_WAIT s) until a 1 s sample
# shows less than 0.3 cores busy, so other people's builds don't skew a run.
wait_quiet() {
	local waited=0 b0 b1
	while :; do
		b0=$(machine_busy); sleep 1; b1=$(machine_busy)
		if awk -v a="$b0" -v b="$b1" 'BEGIN { exit !(b - a < 0.3) }'; then
			return 0
		fi
		waited=$((waited + 1))
		if [ "$waited" -ge "$QUIET_WAIT" ]; then
			log "machine still busy ($(awk -v a="$b0" -v b="$b1" 'BEGIN { printf "%.2f", b - a }') cores) after $QUIET_WAIT s; running anyway"
			return 0
		fi
		[ "$waited" != 1 ] || log "machine busy ($(awk -v a="$b0" -v b="$b1" 'BEGIN { printf "%.2f", b - a }') cores); waiting up to $QUIET_WAIT s"
	done
}

# start_server NAME BINARY: fresh data dir, free ports, wait until a Put succeeds.
# Sets SERVER_PID and ENDPOINT.
start_server() {
	local name="$1" bin="$2" dir="$WORK/$1" cport pport i
	mkdir -p "$dir"
	cport="$(pick_port)" || die "no free port"
	pport="$(pick_port "$cport")" || die "no free port"
	"$bin" --name bench --data-dir "$dir/data" \
		--listen-client-urls "http://127.0.0.1:$cport" \
		--advertise-client-urls "http://127.0.0.1:$cport" \
		--listen-peer-urls "http://127.0.0.1:$pport" \
		--initial-advertise-peer-urls "http://127.0.0.1:$pport" \
		--initial-cluster "bench=http://127.0.0.1:$pport" \
		>"$dir/server.log" 2>&1 &
	SERVER_PID=$!
	ENDPOINT="127.0.0.1:$cport"
	log "$name: pid $SERVER_PID, client $ENDPOINT, peer 127.0.0.1:$pport, data $dir/data"
	# It must be *our* process listening on the client port, not someone else's server.
	for i in $(seq 1 300); do
		kill -0 "$SERVER_PID" 2>/dev/null || { tail -20 "$dir/server.log" >&2; die "$name exited during startup (log above)"; }
		if ss -Htlnp "( sport = :$cport )" | grep -q "pid=$SERVER_PID,"; then
			break
		fi
		if [ -n "$(ss -Htln "( sport = :$cport )")" ] && [ "$i" -gt 50 ]; then
			die "port $cport is listened on, but not by $name pid $SERVER_PID"
		fi
		sleep 0.1
	done
	[ "$i" -lt 300 ] || die "$name did not listen on $ENDPOINT within 30 s"
	for i in $(seq 1 30); do
		if "$MSBENCH" --endpoints "$ENDPOINT" --op put --total 1 --key-space 1 --val-size 1 \
			--connect-timeout 1 --timeout 2 >"$dir/probe.out" 2>&1; then
			return 0
		fi
		kill -0 "$SERVER_PID" 2>/dev/null || { tail -20 "$dir/server.log" >&2; die "$name exited during startup"; }
		sleep 1
	done
	grep -i error "$dir/probe.out" >&2 || true
	die "$name does not accept a Put on $ENDPOINT after 30 s"
}

# run_scenarios NAME: every scenario against the running server; raw output under
# $WORK/results/NAME-SCENARIO-REP.{txt,json}, one line per run in $WORK/results/NAME.tsv:
# name scenario rep reported ops/s p50 p99 errors client_cores server_cores cmd
# first_error range_kvs ok machine_busy_cores (no field may be empty: bash's read
# collapses adjacent tabs).
ANY_ERRORS=0
run_scenarios() {
	local name="$1" line sname op clients conns ops extra reported reps rep total
	local out cpu0 cpu1 t0 t1 rc busy0 busy1 srv_cores mach_cores
	mkdir -p "$WORK/results"
	for line in "${SCENARIOS[@]}"; do
		IFS='|' read -r sname op clients conns ops extra reported <<<"$line"
		reps=$REPEAT
		total=$ops
		if [ "$reported" = yes ]; then
			total=$(awk -v n="$ops" -v s="$SCALE" 'BEGIN { t = int(n * s); print (t < 1 ? 1 : t) }')
		else
			reps=1   # the prefill must cover its whole key space
		fi
		for rep in $(seq 1 "$reps"); do
			out="$WORK/results/$name-$sname-$rep"
			[ "$QUIET_WAIT" = 0 ] || wait_quiet
			busy0=$(machine_busy); cpu0=$(proc_cpu "$SERVER_PID"); t0=$(now)
			rc=0
			# shellcheck disable=SC2086
			"$MSBENCH" --endpoints "$ENDPOINT" --op "$op" --clients "$clients" \
				--conns "$conns" --total "$total" $COMMON_FLAGS $extra \
				--label "$name $sname" >"$out.txt" 2>"$out.err" || rc=$?
			t1=$(now); cpu1=$(proc_cpu "$SERVER_PID"); busy1=$(machine_busy)
			grep '^{' "$out.txt" >"$out.json" || true
			if [ "$rc" -ne 0 ] || [ ! -s "$out.json" ]; then
				cat "$out.err" >&2
				ANY_ERRORS=1
				log "!!! $name $sname run $rep FAILED (msbench exit $rc) !!!"
				[ -s "$out.json" ] || echo '{"ops_per_s":0,"p50_ms":0,"p99_ms":0,"errors":-1,"client_cores":0,"first_error":"msbench produced no result"}' >"$out.json"
			fi
			kill -0 "$SERVER_PID" 2>/dev/null || { tail -20 "$WORK/$name/server.log" >&2; die "$name died during $sname"; }
			srv_cores=$(awk -v a="$cpu0" -v b="$cpu1" -v t0="$t0" -v t1="$t1" 'BEGIN { printf "%.2f", (b - a) / (t1 - t0) }')
			mach_cores=$(awk -v a="$busy0" -v b="$busy1" -v t0="$t0" -v t1="$t1" 'BEGIN { printf "%.2f", (b - a) / (t1 - t0) }')
			jq -r --arg n "$name" --arg s "$sname" --arg r "$rep" --arg sc "$srv_cores" --arg mc "$mach_cores" \
				--arg rep "$reported" --arg cmd "--op $op --clients $clients --conns $conns --total $total $COMMON_FLAGS $extra" \
				'[$n, $s, $r, $rep, .ops_per_s, .p50_ms, .p99_ms, .errors, .client_cores, $sc, $cmd, (.first_error // "" | if . == "" then "-" else . end), (.range_kvs // 0), (.ok // 0), $mc] | @tsv' \
				"$out.json" >>"$WORK/results/$name.tsv"
			log "$name $sname #$rep: $(sed -n 2p "$out.txt" | sed 's/^msbench: //'); server $srv_cores cores, whole machine $mach_cores cores busy"
		done
	done
}

# median_row NAME SCENARIO: the TSV row of the run with the median ops/s, chosen among
# the undisturbed runs (other processes < 0.3 cores) if there are any, else among all.
median_row() {
	local rows quiet
	rows=$(awk -F'\t' -v s="$2" '$2 == s' "$WORK/results/$1.tsv")
	quiet=$(awk -F'\t' '$15 - $9 - $10 < 0.3' <<<"$rows")
	[ -z "$quiet" ] || rows=$quiet
	sort -t$'\t' -k5,5g <<<"$rows" | awk -v n="$(wc -l <<<"$rows")" 'NR == int((n + 1) / 2)'
}

# ---- machine facts -----------------------------------------------------------------
log "work dir $WORK"
NPROC=$(nproc)
CPU_MODEL=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)
KERNEL=$(uname -r)
FS=$(df -PT "$WORK" | awk 'NR == 2 { print $1 " (" $2 ")" }')
FSYNC_LINE=$("$MSBENCH" --fsync-probe "$WORK" --total 2000 --fsync-block 4096 | grep '^{')
FSYNC_P50=$(jq -r .p50_ms <<<"$FSYNC_LINE")
FSYNC_P99=$(jq -r .p99_ms <<<"$FSYNC_LINE")
FSYNC_RATE=$(jq -r '.syncs_per_s | floor' <<<"$FSYNC_LINE")
log "fdatasync (4 KiB pwrite + fdatasync, preallocated file): p50 $FSYNC_P50 ms, p99 $FSYNC_P99 ms, $FSYNC_RATE/s"
ETCD_VERSION=$("$ETCD_BIN" --version 2>/dev/null | awk '/etcd Version/ { print $3 }')
ETCD_PKG=$(dpkg-query -W -f '${Version}' etcd-server 2>/dev/null || echo "?")
GRPC_PKG=$(dpkg-query -W -f '${Version}' libgrpc-dev 2>/dev/null || echo "?")
PBC_PKG=$(dpkg-query -W -f '${Version}' libprotobuf-c-dev 2>/dev/null || echo "?")
GIT_REV=$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo "?")
GIT_DIRTY=""
if [ -n "$(git -C "$REPO" status --porcelain 2>/dev/null)" ]; then GIT_DIRTY="+dirty"; fi
if [ "$ETCD_ONLY" = 0 ]; then
	MS_VERSION=$(timeout 3 "$METASTORE" --version 2>&1 </dev/null | head -1 || true)
	[ -n "$MS_VERSION" ] || MS_VERSION="(no --version output)"
fi
DATE=$(date -u '+%Y-%m-%d %H:%M UTC')

# ---- run -----------------------------------------------------------------------------
start_server etcd "$ETCD_BIN"
run_scenarios etcd
stop_server
if [ "$ETCD_ONLY" = 0 ]; then
	start_server metastore "$METASTORE"
	run_scenarios metastore
	stop_server
fi

# ---- report --------------------------------------------------------------------------
fmt_ops() { awk -v x="$1" 'BEGIN { printf "%.0f", x }'; }
fmt_ms() { awk -v x="$1" 'BEGIN { printf "%.2f", x }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }'; }
other_cores() { awk -v m="$1" -v c="$2" -v s="$3" 'BEGIN { o = m - c - s; printf "%.2f", (o < 0 ? 0 : o) }'; }
flag_errors() { # errors first_error
	if [ "$1" != 0 ]; then printf ' ⚠ %s errors' "$1"; fi
}

report() {
	local line sname op clients conns ops extra reported e m
	echo "### metastore vs etcd, $DATE"
	echo
	if [ "$ETCD_ONLY" = 1 ]; then
		echo "**etcd-only baseline run** (\`compare.sh --etcd-only\`): metastore columns are pending."
		echo
	fi
	echo "- Machine: $NPROC CPUs ($CPU_MODEL), kernel $KERNEL, data dirs on $FS;" \
		"load generator and server share these $NPROC CPUs."
	echo "- Disk: 4 KiB pwrite + fdatasync into a preallocated file (\`msbench --fsync-probe\`):" \
		"p50 $FSYNC_P50 ms, p99 $FSYNC_P99 ms, $FSYNC_RATE syncs/s."
	echo "- Versions: etcd $ETCD_VERSION (Debian etcd-server $ETCD_PKG);" \
		"metastore ${MS_VERSION:-pending} (repo $GIT_REV$GIT_DIRTY);" \
		"msbench from the same tree, gRPC core $GRPC_PKG, protobuf-c $PBC_PKG."
	echo "- Each scenario ran $REPEAT times per server (scale $SCALE); the run with the median ops/s is shown" \
		"(among the runs no other process disturbed, if any)." \
		"Keys 8 B, values 256 B. One server at a time, fresh data dir each."
	echo
	echo "| scenario | etcd ops/s | etcd p50 ms | etcd p99 ms | metastore ops/s | metastore p50 ms | metastore p99 ms | ops/s ratio ms/etcd | p99 ratio ms/etcd |"
	echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|"
	for line in "${SCENARIOS[@]}"; do
		IFS='|' read -r sname op clients conns ops extra reported <<<"$line"
		[ "$reported" = yes ] || continue
		IFS=$'\t' read -r -a e <<<"$(median_row etcd "$sname")"
		printf '| %s | %s%s | %s | %s |' "$sname" "$(fmt_ops "${e[4]}")" "$(flag_errors "${e[7]}")" \
			"$(fmt_ms "${e[5]}")" "$(fmt_ms "${e[6]}")"
		if [ "$ETCD_ONLY" = 1 ]; then
			printf ' pending | pending | pending | pending | pending |\n'
		else
			IFS=$'\t' read -r -a m <<<"$(median_row metastore "$sname")"
			printf ' %s%s | %s | %s | %s | %s |\n' "$(fmt_ops "${m[4]}")" "$(flag_errors "${m[7]}")" \
				"$(fmt_ms "${m[5]}")" "$(fmt_ms "${m[6]}")" \
				"$(ratio "${m[4]}" "${e[4]}")" "$(ratio "${m[6]}" "${e[6]}")"
		fi
	done
	echo
	echo "CPU during the reported runs, in cores (of $NPROC): load generator (msbench, getrusage) /" \
		"server (/proc/PID/stat) / everything else on the machine (/proc/stat busy minus both;" \
		"kernel network and disk work not charged to a process lands here too)."
	echo
	echo "| scenario | msbench flags | etcd: client / server / other | metastore: client / server / other |"
	echo "|---|---|---:|---:|"
	for line in "${SCENARIOS[@]}"; do
		IFS='|' read -r sname op clients conns ops extra reported <<<"$line"
		[ "$reported" = yes ] || continue
		IFS=$'\t' read -r -a e <<<"$(median_row etcd "$sname")"
		# shellcheck disable=SC2016  # the backquotes are markdown
		printf '| %s | `%s` | %.2f / %.2f / %.2f |' "$sname" "${e[10]}" "${e[8]}" "${e[9]}" \
			"$(other_cores "${e[14]}" "${e[8]}" "${e[9]}")"
		if [ "$ETCD_ONLY" = 1 ]; then
			printf ' pending |\n'
		else
			IFS=$'\t' read -r -a m <<<"$(median_row metastore "$sname")"
			printf ' %.2f / %.2f / %.2f |\n' "${m[8]}" "${m[9]}" \
				"$(other_cores "${m[14]}" "${m[8]}" "${m[9]}")"
		fi
	done
	echo
	local errs
	errs=$(awk -F'\t' '$8 != 0 { printf "- %s %s run %s: %s errors, first: %s\n", $1, $2, $3, $8, $12 }' "$WORK"/results/*.tsv)
	if [ -n "$errs" ]; then
		echo "**WARNING: some runs had failed operations; their numbers are not valid:**"
		echo
		echo "$errs"
		echo
	fi
	local busy
	busy=$(awk -F'\t' '$4 == "yes" && $15 - $9 - $10 > 0.3 { printf "%s %s #%s (%.2f cores), ", $1, $2, $3, $15 - $9 - $10 }' "$WORK"/results/*.tsv)
	if [ -n "$busy" ]; then
		echo "**Note: other processes were busy during some runs (more than 0.3 cores besides msbench and the server): ${busy%, }. Those runs may be disturbed; rerun on a quiet machine.**"
		echo
	fi
	echo "All runs (ops/s, p50 ms, p99 ms, cores: client/server/other):"
	echo
	echo '```'
	awk -F'\t' '{ o = $15 - $9 - $10; if (o < 0) o = 0
		printf "%-10s %-24s #%s %10.1f ops/s  p50 %7.3f  p99 %7.3f  errors %s  cpu %.2f/%.2f/%.2f", $1, $2, $3, $5, $6, $7, $8, $9, $10, o
		if ($2 ~ /^range/ && $14 > 0) printf "  keys found %.1f%%", 100 * $13 / $14
		printf "\n" }' "$WORK"/results/*.tsv
	echo '```'
}

REPORT=$(report)
echo "$REPORT"
if [ -n "$OUT" ]; then
	echo "$REPORT" >"$OUT"
	log "report written to $OUT"
fi
if [ "$ANY_ERRORS" = 1 ] || awk -F'\t' '$8 != 0 { bad = 1 } END { exit !bad }' "$WORK"/results/*.tsv; then
	log "!!! SOME RUNS HAD FAILED OPERATIONS — see the WARNING in the report !!!"
	exit 2
fi
exit 0
