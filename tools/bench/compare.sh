#!/usr/bin/env bash
# compare.sh: run the same msbench scenarios against Debian's real etcd and against
# metastore on this machine, one server at a time, and write a markdown report with
# ops/s, p50 and p99 for each, the ratio metastore/etcd, the CPU used by the load
# generator and by the server, the disk's fdatasync cost, the date and the versions.
# Two parts: one-member servers, then 3-member clusters (all members on this machine);
# with --watch a third: the Watch API on fresh one-member servers (events delivered
# per second, commit-to-delivery latency, memory per idle watcher, catch-up time);
# with --load a fourth: 1M keys loaded into a fresh one-member server (load rate, peak
# RSS, put and range throughput over that store, restart to first linearizable read).
#
#   tools/bench/compare.sh [options] /path/to/metastore
#   tools/bench/compare.sh [options] --etcd-only
#
# Each server (each member of a cluster) gets a fresh data dir under one temp dir
# (same disk for all; the load part restarts its servers on their own), free 127.0.0.1
# ports, and is stopped by pid when its scenarios are done (and on any exit). Only one
# server or cluster runs at a time.
# See docs/benchmarks.md for what each scenario measures.
set -euo pipefail

usage() {
	cat <<'EOF'
usage: compare.sh [options] METASTORE_BINARY
       compare.sh [options] --etcd-only
options:
  --etcd-only          measure only etcd; metastore columns say "pending"
  --msbench PATH       msbench binary   [$MSBENCH, else <repo>/build/tools/bench/msbench, then build*/]
  --etcd PATH          etcd binary      [etcd from PATH]
  --etcdctl PATH       etcdctl, used to find a cluster's leader [etcdctl from PATH]
  --single-only        run only the one-member scenarios (and the watch/load parts if asked)
  --cluster-only       run only the 3-member cluster scenarios (and the watch/load parts if asked)
  --watch              also run the watch scenarios (fresh one-member servers, after the rest)
  --watch-only         run only the watch scenarios
  --load               also run the load part (fresh one-member servers, after the rest):
                       1M keys loaded, put/range over them, restart to first read
  --load-only          run only the load part
  --repeat R           runs per scenario; the run with the median ops/s is reported [3]
                       (load part: the load runs once, put/range and the restart R times)
  --scale F            multiply every scenario's op count by F (e.g. 0.1 for a smoke run;
                       watch scenarios: their write duration and catch-up history;
                       load part: the key count too) [1]
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
ETCDCTL_BIN="$(command -v etcdctl || true)"
RUN_SINGLE=1
RUN_CLUSTER=1
RUN_WATCH=0
WATCH_ONLY=0
RUN_LOAD=0
LOAD_ONLY=0
CLUSTER_SIZE=3
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
	--etcdctl) ETCDCTL_BIN="$2"; shift ;;
	--single-only) RUN_CLUSTER=0 ;;
	--cluster-only) RUN_SINGLE=0 ;;
	--watch) RUN_WATCH=1 ;;
	--watch-only) WATCH_ONLY=1 ;;
	--load) RUN_LOAD=1 ;;
	--load-only) LOAD_ONLY=1 ;;
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
	# the release build first: a sanitizer build's msbench would measure itself
	for cand in "$REPO"/build/tools/bench/msbench "$REPO"/build*/tools/bench/msbench \
		/tmp/build-bench/tools/bench/msbench; do
		if [ -x "$cand" ]; then MSBENCH="$cand"; break; fi
	done
fi
if [ -z "$MSBENCH" ] || [ ! -x "$MSBENCH" ]; then
	die "msbench not found: build it (ninja -C BUILD tools/bench/msbench) and pass --msbench"
fi
if [ -z "$ETCD_BIN" ] || [ ! -x "$ETCD_BIN" ]; then
	die "etcd not found (apt-get install etcd-server) or pass --etcd"
fi
[ "$RUN_SINGLE" = 1 ] || [ "$RUN_CLUSTER" = 1 ] || die "--single-only and --cluster-only exclude each other"
if [ "$LOAD_ONLY" = 1 ]; then
	if [ "$RUN_SINGLE" = 0 ] || [ "$RUN_CLUSTER" = 0 ] || [ "$RUN_WATCH" = 1 ] || [ "$WATCH_ONLY" = 1 ]; then
		die "--load-only excludes --single-only, --cluster-only, --watch and --watch-only"
	fi
	RUN_SINGLE=0; RUN_CLUSTER=0; RUN_LOAD=1
fi
if [ "$WATCH_ONLY" = 1 ]; then
	if [ "$RUN_SINGLE" = 0 ] || [ "$RUN_CLUSTER" = 0 ]; then
		die "--watch-only excludes --single-only and --cluster-only"
	fi
	RUN_SINGLE=0; RUN_CLUSTER=0; RUN_WATCH=1
fi
if [ "$RUN_CLUSTER" = 1 ] && { [ -z "$ETCDCTL_BIN" ] || [ ! -x "$ETCDCTL_BIN" ]; }; then
	die "etcdctl not found (apt-get install etcd-client; it finds a cluster's leader) or pass --etcdctl"
fi
if [ "$ETCD_ONLY" = 0 ]; then
	[ -n "$METASTORE" ] || { usage >&2; die "give the metastore binary or --etcd-only"; }
	[ -x "$METASTORE" ] || die "metastore binary '$METASTORE' is not executable"
	METASTORE="$(cd "$(dirname "$METASTORE")" && pwd)/$(basename "$METASTORE")"
fi
case "$REPEAT" in ''|*[!0-9]*|0) die "--repeat needs a positive integer" ;; esac
case "$QUIET_WAIT" in ''|*[!0-9]*) die "--quiet-wait needs a number of seconds" ;; esac
awk -v s="$SCALE" 'BEGIN { exit !(s + 0 > 0) }' || die "--scale needs a positive number"
for tool in jq ss awk; do
	command -v "$tool" >/dev/null || die "needs $tool"
done

# ---- scenarios ---------------------------------------------------------------------
# name|op|clients|conns|ops|extra msbench flags|reported?|target
# target: "one" (the only member), "leader" (the cluster's leader, looked up right
# before every run), "all" (every member's client URL; msbench spreads its channels
# round-robin over them, so 10 conns over 3 members are 4/3/3).
# "prefill" writes keys 0..9999 once (never scaled) so the range scenarios read keys
# that exist; it also warms the server up. Reads run before the bulk of the writes so
# that they see the same small store whatever --repeat is (a store with more history
# reads slower). Every reported scenario runs REPEAT times. put-1000 runs last among
# the one-member scenarios so that the ones before it see the same history as in
# earlier reports.
# shellcheck disable=SC2034  # used through run_scenarios' and the tables' namerefs
SCENARIOS=(
	"prefill|put|100|10|10000|--sequential --key-space 10000|no|one"
	"range-100|range|100|10|50000|--key-space 10000|yes|one"
	"range-serializable-100|range-serializable|100|10|50000|--key-space 10000|yes|one"
	"put-1|put|1|1|5000|--key-space 100000|yes|one"
	"put-100|put|100|10|50000|--key-space 100000|yes|one"
	"txn-100|txn|100|10|30000|--key-space 100000|yes|one"
	"put-1000|put|1000|100|50000|--key-space 100000|yes|one"
)
# The same against 3-member clusters. Writes go to the leader (a follower would only
# forward them), except put-100-all, which shows what forwarding costs; linearizable
# reads go to all members (each member answers them itself after a ReadIndex round
# with the leader).
# shellcheck disable=SC2034  # used through namerefs, as SCENARIOS
CLUSTER_SCENARIOS=(
	"prefill|put|100|10|10000|--sequential --key-space 10000|no|leader"
	"range-100|range|100|10|50000|--key-space 10000|yes|all"
	"put-100|put|100|10|30000|--key-space 100000|yes|leader"
	"put-1000|put|1000|100|40000|--key-space 100000|yes|leader"
	"put-100-all|put|100|10|30000|--key-space 100000|yes|all"
)
# The watch part (--watch), on a fresh one-member server of each kind:
# name|msbench op|scaled flag|its amount at scale 1|other msbench flags|reported
# "scaled flag" is the one --scale multiplies ("-": none). Watcher i of N watches key
# number i mod (key space / watch range) (R keys from there when --watch-range R), and
# consecutive watchers share a stream, so one key's watchers are on different streams.
# watch-idle runs once and first: the server's RSS only means something before any
# other watch run has grown (and freed) its heap. watch-10k: 10 000 watchers on 100
# streams, 10 per key, 100 writers as fast as they go; watch-10k-rate: the same at a
# fixed 1000 puts/s (10 000 events/s), so both servers are timed at the same offered
# load; watch-catchup: 1000 range watchers (10 keys each) created 100 000 revisions
# back, each must receive its ~1000 events. msbench reads the server's CPU and RSS by
# pid itself, over the measured window only (watch-catchup: the catch-up, not the
# history writes).
# shellcheck disable=SC2034  # used through the tables' loops
WATCH_SCENARIOS=(
	"watch-idle|watch-idle|-|0|--streams 100 --watchers 10000 --key-space 10000 --settle 2|once"
	"watch-10k|watch|--duration|5|--streams 100 --watchers 10000 --key-space 1000 --clients 100 --conns 10|yes"
	"watch-10k-rate|watch|--duration|5|--streams 100 --watchers 10000 --key-space 1000 --clients 20 --conns 2 --rate 1000|yes"
	"watch-catchup|watch-catchup|--revisions|100000|--streams 10 --watchers 1000 --key-space 1000 --watch-range 10 --clients 100 --conns 10 --timeout 120|yes"
)
# The load part (--load), on a fresh one-member server of each kind, same flags as the
# other one-member runs: "load" writes keys 0..N-1 once each (N = 1 000 000 × scale; it
# runs once, with no repeat); then, over those N keys, the reads (before the updates,
# as in the one-member part, so they see the same store whatever --repeat is) and
# put-100 as updates of existing keys. Same format as SCENARIOS; "load" in the reported
# column: run once at exactly that count, shown in the load tables.
LOAD_KEYS=$(awk -v s="$SCALE" 'BEGIN { t = int(1000000 * s); print (t < 1 ? 1 : t) }')
# shellcheck disable=SC2034  # used through run_scenarios' and the tables' namerefs
LOAD_FILL=(
	"load|put|100|10|$LOAD_KEYS|--sequential --key-space $LOAD_KEYS|load|one"
)
# shellcheck disable=SC2034  # used through namerefs, as SCENARIOS
LOAD_SCENARIOS=(
	"range-100|range|100|10|50000|--key-space $LOAD_KEYS|yes|one"
	"put-100|put|100|10|50000|--key-space $LOAD_KEYS|yes|one"
)
# shellcheck disable=SC2034  # used through the tables' namerefs
LOAD_ALL=("${LOAD_FILL[@]}" "${LOAD_SCENARIOS[@]}")
# The longest a restarted server may take to answer its first linearizable Range.
RESTART_LIMIT=300
COMMON_FLAGS="--key-size 8 --val-size 256"
# Flags every member of every server gets besides its name, dirs and URLs: etcd's own
# defaults, spelled out so both servers surely run with the same ones.
RAFT_FLAGS="--heartbeat-interval 100 --election-timeout 1000"

# ---- temp dir, cleanup -------------------------------------------------------------
WORK="$(mktemp -d "$WORKPARENT/msbench-compare.XXXXXX")"
SERVER_PIDS=()    # every member of the server or cluster now running
ENDPOINTS=()      # their client endpoints, host:port, same order
MEMBERS=()        # their member names, same order
PEER_PORTS=()     # their peer ports, same order
INITIAL_CLUSTER="" # the --initial-cluster every member got
SERVER_BIN=""     # the binary they run
SERVER_NAME=""    # the run name (etcd, metastore, etcd-x3, metastore-x3)
# shellcheck disable=SC2317  # called through the EXIT trap
stop_server() {
	[ "${#SERVER_PIDS[@]}" -gt 0 ] || return 0
	local pids=("${SERVER_PIDS[@]}") pid alive
	SERVER_PIDS=()
	for pid in "${pids[@]}"; do
		kill -TERM "$pid" 2>/dev/null || true
	done
	for _ in $(seq 1 150); do
		alive=0
		for pid in "${pids[@]}"; do
			if kill -0 "$pid" 2>/dev/null; then alive=1; fi
		done
		[ "$alive" = 1 ] || break
		sleep 0.1
	done
	for pid in "${pids[@]}"; do
		if kill -0 "$pid" 2>/dev/null; then
			log "server pid $pid ignored SIGTERM for 15 s; sending SIGKILL"
			kill -KILL "$pid" 2>/dev/null || true
		fi
		wait "$pid" 2>/dev/null || true
	done
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
# different from every port given as an argument.
pick_port() {
	local p x taken
	for _ in $(seq 1 500); do
		p=$(( 20000 + RANDOM % 30000 ))
		taken=0
		for x in "$@"; do
			[ "$p" != "$x" ] || taken=1
		done
		[ "$taken" = 0 ] || continue
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
# The CPU seconds of every running member, space-separated, in SERVER_PIDS order.
members_cpu() {
	local pid out=""
	for pid in "${SERVER_PIDS[@]}"; do
		out="$out $(proc_cpu "$pid")"
	done
	echo "${out# }"
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

# check_members WHEN: if a member is gone, show its log and stop the script.
check_members() {
	local i
	for i in "${!SERVER_PIDS[@]}"; do
		if ! kill -0 "${SERVER_PIDS[$i]}" 2>/dev/null; then
			tail -20 "$WORK/$SERVER_NAME/${MEMBERS[$i]}/server.log" >&2
			die "$SERVER_NAME member ${MEMBERS[$i]} (pid ${SERVER_PIDS[$i]}) exited $1 (log above)"
		fi
	done
}

# listening_by PORT PID: true if process PID listens on 127.0.0.1:PORT.
listening_by() {
	ss -Htlnp "( sport = :$1 )" | grep -q "pid=$2,"
}

# launch_member I: start member I of the current server (SERVER_BIN, MEMBERS,
# ENDPOINTS, PEER_PORTS, INITIAL_CLUSTER) in the background on its data dir, with the
# flags every member of every server gets; its output goes to the end of its
# server.log. Sets SERVER_PIDS[I].
launch_member() {
	local i="$1" m="${MEMBERS[$1]}" mdir="$WORK/$SERVER_NAME/${MEMBERS[$1]}"
	mkdir -p "$mdir"
	# shellcheck disable=SC2086  # RAFT_FLAGS is a list of flags
	"$SERVER_BIN" --name "$m" --data-dir "$mdir/data" \
		--listen-client-urls "http://${ENDPOINTS[$i]}" \
		--advertise-client-urls "http://${ENDPOINTS[$i]}" \
		--listen-peer-urls "http://127.0.0.1:${PEER_PORTS[$i]}" \
		--initial-advertise-peer-urls "http://127.0.0.1:${PEER_PORTS[$i]}" \
		--initial-cluster "$INITIAL_CLUSTER" --initial-cluster-state new \
		--initial-cluster-token msbench-compare $RAFT_FLAGS \
		>>"$mdir/server.log" 2>&1 &
	SERVER_PIDS[i]=$!
	log "$SERVER_NAME $m: pid $!, client ${ENDPOINTS[$i]}, peer 127.0.0.1:${PEER_PORTS[$i]}, data $mdir/data"
}

# start_server NAME BINARY N: a fresh N-member cluster, every member with its own data
# dir and free ports, identical flags for every server; wait until each member listens
# (by its own pid) and accepts a Put. One member is named "bench" (as in every earlier
# report), members of a bigger cluster m1..mN. Sets SERVER_PIDS, ENDPOINTS, MEMBERS,
# PEER_PORTS, INITIAL_CLUSTER, SERVER_BIN.
start_server() {
	local name="$1" bin="$2" n="$3" dir="$WORK/$1" i used=() cports=() ic=""
	local m c p t
	SERVER_NAME="$name"
	SERVER_BIN="$bin"
	SERVER_PIDS=(); ENDPOINTS=(); MEMBERS=(); PEER_PORTS=()
	mkdir -p "$dir"
	for i in $(seq 1 "$n"); do
		c="$(pick_port "${used[@]}")" || die "no free port"
		used+=("$c")
		p="$(pick_port "${used[@]}")" || die "no free port"
		used+=("$p")
		cports+=("$c"); PEER_PORTS+=("$p")
		if [ "$n" = 1 ]; then m=bench; else m="m$i"; fi
		MEMBERS+=("$m")
		ENDPOINTS+=("127.0.0.1:$c")
		ic="$ic,$m=http://127.0.0.1:$p"
	done
	INITIAL_CLUSTER="${ic#,}"
	for i in $(seq 0 $((n - 1))); do
		launch_member "$i"
	done
	# It must be *our* process listening on each client port, not someone else's server.
	for i in $(seq 0 $((n - 1))); do
		for t in $(seq 1 300); do
			check_members "during startup"
			if listening_by "${cports[$i]}" "${SERVER_PIDS[$i]}"; then
				break
			fi
			if [ -n "$(ss -Htln "( sport = :${cports[$i]} )")" ] && [ "$t" -gt 50 ]; then
				die "port ${cports[$i]} is listened on, but not by $name ${MEMBERS[$i]} pid ${SERVER_PIDS[$i]}"
			fi
			sleep 0.1
		done
		[ "$t" -lt 300 ] || die "$name ${MEMBERS[$i]} did not listen on ${ENDPOINTS[$i]} within 30 s"
	done
	# Every member must take a Put (a follower's goes through the leader).
	for i in $(seq 0 $((n - 1))); do
		for t in $(seq 1 31); do
			[ "$t" -le 30 ] || { grep -i error "$dir/probe.out" >&2 || true; die "$name ${MEMBERS[$i]} does not accept a Put on ${ENDPOINTS[$i]} after 30 s"; }
			if "$MSBENCH" --endpoints "${ENDPOINTS[$i]}" --op put --total 1 --key-space 1 --val-size 1 \
				--connect-timeout 1 --timeout 2 >"$dir/probe.out" 2>&1; then
				break
			fi
			check_members "during startup"
			sleep 1
		done
	done
	if [ "$n" -gt 1 ]; then
		local st lead term
		st=$(cluster_status_wait) || exit 1
		read -r lead term <<<"$st"
		log "$name: leader ${MEMBERS[$lead]} (${ENDPOINTS[$lead]}), raft term $term"
	fi
}

# cluster_status: "LEADER TERM": LEADER is the index in ENDPOINTS of the member that
# says it leads (-1 unless exactly one does and every member answered), TERM the
# highest raft term any member reported. Asked with etcdctl endpoint status (gRPC
# Maintenance.Status, which both servers answer).
cluster_status() {
	local eps
	eps=$(IFS=,; echo "${ENDPOINTS[*]}")
	{ ETCDCTL_API=3 "$ETCDCTL_BIN" --endpoints "$eps" --dial-timeout 2s --command-timeout 3s \
		endpoint status -w simple 2>/dev/null || true; } |
		awk -F', ' -v eps="$eps" '
			BEGIN { n = split(eps, e, ","); for (i = 1; i <= n; i++) idx[e[i]] = i - 1; lead = -1; term = 0 }
			$1 in idx { seen++; if ($7 + 0 > term) term = $7 + 0; if ($5 == "true") { leaders++; lead = idx[$1] } }
			END { if (leaders != 1 || seen != n) lead = -1; printf "%d %d\n", lead, term }'
}
# cluster_status_wait: cluster_status, retried for up to 15 s until there is a leader.
cluster_status_wait() {
	local st
	for _ in $(seq 1 15); do
		st=$(cluster_status)
		if [ "${st%% *}" -ge 0 ]; then echo "$st"; return 0; fi
		check_members "while looking for a leader" >&2
		sleep 1
	done
	die "$SERVER_NAME has no single leader after 15 s (etcdctl endpoint status: $st)"
}

# run_scenarios NAME SCENARIO_ARRAY: every scenario against the running server;
# raw output under $WORK/results/NAME-SCENARIO-REP.{txt,json}, one line per run in
# $WORK/results/NAME.tsv:
#  1 name  2 scenario  3 rep  4 reported  5 ops/s  6 p50  7 p99  8 errors
#  9 client_cores  10 server_cores (sum over members)  11 cmd  12 first_error
#  13 range_kvs  14 ok  15 machine_busy_cores  16 server CPU µs per successful op
#  (sum over members)  17 per-member server cores, leader marked with *  18 target
#  19 leader/term change during the run  20 fdatasync p50/p99 ms just before the run
#  21 client CPU % of the machine  22 loopback TCP round trip p50 ms just before the run
# (no field may be empty: bash's read collapses adjacent tabs).
ANY_ERRORS=0
run_scenarios() {
	local name="$1" line sname op clients conns ops extra reported target reps rep total
	local out t0 t1 rc busy0 busy1 srv_cores mach_cores eps tdesc lead0 term0 lead1 term1
	local event fsync_col rtt_col cpu0 cpu1 srv_s per_member us_op st fsync_note
	local -n scen="$2"
	mkdir -p "$WORK/results"
	for line in "${scen[@]}"; do
		IFS='|' read -r sname op clients conns ops extra reported target <<<"$line"
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
			fsync_col="-"; rtt_col="-"
			if [ "$sname" = put-1 ]; then
				# the disk's sync cost and the network's round trip right now,
				# beside the single-client put latency (issue 10's put-1 target)
				fsync_col=$("$MSBENCH" --fsync-probe "$WORK" --total 500 --fsync-block 4096 |
					grep '^{' | jq -r '"\(.p50_ms)/\(.p99_ms)"' || true)
				[ -n "$fsync_col" ] || fsync_col="-"
				rtt_col=$("$MSBENCH" --rtt-probe --total 2000 | grep '^{' | jq -r '.p50_ms' || true)
				[ -n "$rtt_col" ] || rtt_col="-"
			fi
			lead0=0; term0=0
			if [ "${#SERVER_PIDS[@]}" -gt 1 ]; then
				st=$(cluster_status_wait) || exit 1
				read -r lead0 term0 <<<"$st"
			fi
			case "$target" in
			one) eps="${ENDPOINTS[0]}"; tdesc="one member" ;;
			leader) eps="${ENDPOINTS[$lead0]}"; tdesc="leader ${MEMBERS[$lead0]}" ;;
			all) eps=$(IFS=,; echo "${ENDPOINTS[*]}"); tdesc="all ${#ENDPOINTS[@]} members" ;;
			*) die "scenario $sname: unknown target $target" ;;
			esac
			busy0=$(machine_busy); cpu0=$(members_cpu); t0=$(now)
			rc=0
			# shellcheck disable=SC2086
			"$MSBENCH" --endpoints "$eps" --op "$op" --clients "$clients" \
				--conns "$conns" --total "$total" $COMMON_FLAGS $extra \
				--label "$name $sname" >"$out.txt" 2>"$out.err" || rc=$?
			t1=$(now); cpu1=$(members_cpu); busy1=$(machine_busy)
			grep '^{' "$out.txt" >"$out.json" || true
			if [ "$rc" -ne 0 ] || [ ! -s "$out.json" ]; then
				cat "$out.err" >&2
				ANY_ERRORS=1
				log "!!! $name $sname run $rep FAILED (msbench exit $rc) !!!"
				[ -s "$out.json" ] || echo '{"ops_per_s":0,"p50_ms":0,"p99_ms":0,"errors":-1,"client_cores":0,"first_error":"msbench produced no result"}' >"$out.json"
			fi
			check_members "during $sname"
			event="-"
			if [ "${#SERVER_PIDS[@]}" -gt 1 ]; then
				st=$(cluster_status_wait) || exit 1
				read -r lead1 term1 <<<"$st"
				if [ "$lead1" != "$lead0" ] || [ "$term1" != "$term0" ]; then
					event="leader ${MEMBERS[$lead0]} term $term0 -> leader ${MEMBERS[$lead1]} term $term1"
					log "!!! $name $sname run $rep: $event !!!"
				fi
			fi
			srv_s=$(awk -v a="$cpu0" -v b="$cpu1" 'BEGIN { n = split(a, x, " "); split(b, y, " "); for (i = 1; i <= n; i++) s += y[i] - x[i]; printf "%.4f", s }')
			per_member=$(awk -v a="$cpu0" -v b="$cpu1" -v t="$(awk -v t0="$t0" -v t1="$t1" 'BEGIN { print t1 - t0 }')" -v l="$lead0" '
				BEGIN { n = split(a, x, " "); split(b, y, " ")
					for (i = 1; i <= n; i++) printf "%s%s%.2f", (i > 1 ? "/" : ""), (n > 1 && i - 1 == l ? "*" : ""), (y[i] - x[i]) / t }')
			srv_cores=$(awk -v s="$srv_s" -v t0="$t0" -v t1="$t1" 'BEGIN { printf "%.2f", s / (t1 - t0) }')
			mach_cores=$(awk -v a="$busy0" -v b="$busy1" -v t0="$t0" -v t1="$t1" 'BEGIN { printf "%.2f", (b - a) / (t1 - t0) }')
			us_op=$(jq -r --arg s "$srv_s" '(.ok // 0) as $ok | if $ok > 0 then ($s | tonumber) * 1e6 / $ok else 0 end' "$out.json")
			jq -r --arg n "$name" --arg s "$sname" --arg r "$rep" --arg sc "$srv_cores" --arg mc "$mach_cores" \
				--arg rep "$reported" --arg cmd "--op $op --clients $clients --conns $conns --total $total $COMMON_FLAGS $extra" \
				--arg us "$us_op" --arg pm "$per_member" --arg tg "$tdesc" --arg ev "$event" --arg fs "$fsync_col" --arg rt "$rtt_col" \
				'[$n, $s, $r, $rep, .ops_per_s, .p50_ms, .p99_ms, .errors, .client_cores, $sc, $cmd, (.first_error // "" | if . == "" then "-" else . end), (.range_kvs // 0), (.ok // 0), $mc, $us, $pm, $tg, $ev, $fs, (.client_cpu_share_pct // 0), $rt] | @tsv' \
				"$out.json" >>"$WORK/results/$name.tsv"
			fsync_note=""
			[ "$fsync_col" = "-" ] || fsync_note=", fdatasync p50/p99 $fsync_col ms and loopback round trip p50 $rtt_col ms just before"
			log "$name $sname #$rep ($tdesc): $(sed -n 2p "$out.txt" | sed 's/^msbench: //'); server $srv_cores cores ($per_member), whole machine $mach_cores cores busy$fsync_note"
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

# run_watch_scenarios NAME: every watch scenario against the running one-member server;
# raw output as in run_scenarios, one line per run in $WORK/results/NAME.tsv, laid out
# so that median_row and the report's error, election and busy checks read it as they
# read the others (msbench measured CPU, machine and RSS over its measured window):
#  1 name  2 scenario  3 rep  4 reported (yes; "once" for watch-idle)  5 events/s
#  (watch-catchup: events / catch-up time)  6 p50  7 p99 (commit-to-delivery ms)
#  8 errors (failed calls, ended streams, event mismatches)  9 client_cores
#  10 server_cores  11 cmd  12 first_error  13 events expected  14 events received
#  15 machine_busy_cores  16 server CPU µs per delivered event  17 bytes per idle
#  watcher  18 catch-up s  19 "-" (one member: no elections)  20 puts/s
#  21 bytes per stream  22 s until every Created  23 events per response
#  24 % of events that arrived before their put's response
run_watch_scenarios() {
	local name="$1" line sname op sflag samount extra reported reps rep out rc args amount
	mkdir -p "$WORK/results"
	for line in "${WATCH_SCENARIOS[@]}"; do
		IFS='|' read -r sname op sflag samount extra reported <<<"$line"
		reps=$REPEAT
		[ "$reported" = yes ] || reps=1
		args="--op $op $extra"
		if [ "$sflag" != "-" ]; then
			amount=$(awk -v n="$samount" -v s="$SCALE" 'BEGIN { t = int(n * s); print (t < 1 ? 1 : t) }')
			args="--op $op $sflag $amount $extra"
		fi
		for rep in $(seq 1 "$reps"); do
			out="$WORK/results/$name-$sname-$rep"
			[ "$QUIET_WAIT" = 0 ] || wait_quiet
			rc=0
			# shellcheck disable=SC2086
			"$MSBENCH" $args --endpoints "${ENDPOINTS[0]}" $COMMON_FLAGS \
				--server-pid "${SERVER_PIDS[0]}" --label "$name $sname" \
				>"$out.txt" 2>"$out.err" || rc=$?
			grep '^{' "$out.txt" >"$out.json" || true
			if [ "$rc" -ne 0 ] || [ ! -s "$out.json" ]; then
				cat "$out.err" >&2
				ANY_ERRORS=1
				log "!!! $name $sname run $rep FAILED (msbench exit $rc) !!!"
				[ -s "$out.json" ] || echo '{"errors":-1,"first_error":"msbench produced no result"}' >"$out.json"
			fi
			check_members "during $sname"
			jq -r --arg n "$name" --arg s "$sname" --arg r "$rep" --arg rep "$reported" \
				--arg cmd "$args $COMMON_FLAGS" \
				'def num(f): (f // 0) | if . < 0 then 0 else . end;
				[$n, $s, $r, $rep, num(.events_per_s), (.p50_ms // 0), (.p99_ms // 0), (.errors // -1),
				 num(.client_cores), num(.server_cores), $cmd,
				 (.first_error // "" | if . == "" then "-" else . end),
				 (.expected // 0), (.received // 0), num(.machine_cores),
				 (if (.received // 0) > 0 and (.server_cpu_s // -1) >= 0 then .server_cpu_s * 1e6 / .received else 0 end),
				 (.bytes_per_watcher // 0), (.catchup_s // 0), "-", num(.puts_per_s),
				 (.bytes_per_stream // 0), num(.create_s), num(.events_per_response), num(.before_ack_pct)] | @tsv' \
				"$out.json" >>"$WORK/results/$name.tsv"
			log "$name $sname #$rep: $(jq -r '
				if .errors != 0 then "FAILED: \(.first_error)"
				elif .op == "watch-idle" then "\(.bytes_per_watcher | floor) bytes per idle watcher, \(.bytes_per_stream | floor) per stream"
				elif .op == "watch-catchup" then "caught up in \(.catchup_s) s (\(.received) events), server \(.server_cores) cores"
				else "\(.events_per_s) events/s (\(.received) of \(.expected)), commit-to-delivery p50 \(.p50_ms) p99 \(.p99_ms) ms, server \(.server_cores) cores" end' "$out.json")"
		done
	done
}

# proc_status_kb PID FIELD: a field of /proc/PID/status given in kB (VmHWM, VmRSS).
proc_status_kb() {
	awk -v f="$2:" '$1 == f { print $2; exit }' "/proc/$1/status"
}

# since T0: seconds from T0 (a now) until now, 3 decimals.
since() {
	awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.3f", b - a }'
}

# first_read OUT: one linearizable Range of an existing key with short deadlines against
# the one-member server; true if it succeeded (msbench's output in OUT).
first_read() {
	"$MSBENCH" --endpoints "${ENDPOINTS[0]}" --op range --total 1 --key-space "$LOAD_KEYS" \
		--connect-timeout 2 --timeout 2 >"$1" 2>&1
}

# restart_timed NAME REP: stop the running one-member server (SIGTERM, wait for its
# exit), start the same binary again with the same flags, ports and data dir, and time
# from just before the exec until a linearizable Range first succeeds: probes start
# once the new pid listens on the client port (before that a connect would only enter
# gRPC's reconnect backoff) and are retried every 20 ms. Appends to
# $WORK/results/NAME.restart (space-separated): rep, seconds (or "failed" after
# RESTART_LIMIT s), seconds the same probe takes against the running server (msbench's
# own start-up, connect and one call), VmRSS kB after the first read, probes sent.
restart_timed() {
	local name="$1" rep="$2" out="$WORK/results/$1-restart-$2" port t0 t1 secs=failed own=0 rss=0 probes=0
	port="${ENDPOINTS[0]##*:}"
	stop_server
	t0=$(now)
	launch_member 0
	while :; do
		check_members "after the restart"
		if listening_by "$port" "${SERVER_PIDS[0]}"; then
			probes=$((probes + 1))
			if first_read "$out.txt"; then
				secs=$(since "$t0")
				break
			fi
		fi
		if awk -v s="$(since "$t0")" -v l="$RESTART_LIMIT" 'BEGIN { exit !(s > l) }'; then
			cat "$out.txt" >&2 2>/dev/null || true
			ANY_ERRORS=1
			log "!!! $name restart $rep: no linearizable Range served within $RESTART_LIMIT s !!!"
			break
		fi
		sleep 0.02
	done
	if [ "$secs" != failed ]; then
		rss=$(proc_status_kb "${SERVER_PIDS[0]}" VmRSS)
		t1=$(now)
		first_read "$out-own.txt" || true
		own=$(since "$t1")
	fi
	echo "$rep $secs $own $rss $probes" >>"$WORK/results/$name.restart"
	log "$name restart #$rep: first linearizable Range after $secs s ($probes probes; the probe alone takes $own s), VmRSS $rss kB"
}

# run_load NAME BINARY: the load part against a fresh one-member server of BINARY: the
# load, then the reads and updates over the loaded keys (run_scenarios, results in
# $WORK/results/NAME.tsv), RSS readings in $WORK/results/NAME.rss (VmHWM and VmRSS kB
# after the load, VmHWM and VmRSS kB after the reads and updates), then REPEAT timed
# restarts (restart_timed); stops the server.
run_load() {
	local name="$1" pid hwm rss rep
	start_server "$name" "$2" 1
	pid="${SERVER_PIDS[0]}"
	run_scenarios "$name" LOAD_FILL
	hwm=$(proc_status_kb "$pid" VmHWM); rss=$(proc_status_kb "$pid" VmRSS)
	log "$name after loading $LOAD_KEYS keys: VmHWM $hwm kB, VmRSS $rss kB"
	run_scenarios "$name" LOAD_SCENARIOS
	echo "$hwm $rss $(proc_status_kb "$pid" VmHWM) $(proc_status_kb "$pid" VmRSS)" >"$WORK/results/$name.rss"
	for rep in $(seq 1 "$REPEAT"); do
		restart_timed "$name" "$rep"
	done
	stop_server
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
	# the checkout may have moved on since the binary was built: say when it was
	MS_VERSION="$MS_VERSION, binary built $(date -u -r "$METASTORE" '+%Y-%m-%d %H:%M UTC')"
fi
DATE=$(date -u '+%Y-%m-%d %H:%M UTC')
T_START=$(date +%s)

# ---- run -----------------------------------------------------------------------------
# One server or cluster at a time: etcd, metastore, etcd x3, metastore x3, then (--watch)
# etcd and metastore again, fresh, for the watch scenarios, then (--load) once more for
# the load part.
if [ "$RUN_SINGLE" = 1 ]; then
	start_server etcd "$ETCD_BIN" 1
	run_scenarios etcd SCENARIOS
	stop_server
	if [ "$ETCD_ONLY" = 0 ]; then
		start_server metastore "$METASTORE" 1
		run_scenarios metastore SCENARIOS
		stop_server
	fi
fi
if [ "$RUN_CLUSTER" = 1 ]; then
	start_server etcd-x3 "$ETCD_BIN" "$CLUSTER_SIZE"
	run_scenarios etcd-x3 CLUSTER_SCENARIOS
	stop_server
	if [ "$ETCD_ONLY" = 0 ]; then
		start_server metastore-x3 "$METASTORE" "$CLUSTER_SIZE"
		run_scenarios metastore-x3 CLUSTER_SCENARIOS
		stop_server
	fi
fi
if [ "$RUN_WATCH" = 1 ]; then
	start_server etcd-watch "$ETCD_BIN" 1
	run_watch_scenarios etcd-watch
	stop_server
	if [ "$ETCD_ONLY" = 0 ]; then
		start_server metastore-watch "$METASTORE" 1
		run_watch_scenarios metastore-watch
		stop_server
	fi
fi
if [ "$RUN_LOAD" = 1 ]; then
	run_load etcd-load "$ETCD_BIN"
	if [ "$ETCD_ONLY" = 0 ]; then
		run_load metastore-load "$METASTORE"
	fi
fi
ELAPSED=$(( $(date +%s) - T_START ))

# ---- report --------------------------------------------------------------------------
fmt_ops() { awk -v x="$1" 'BEGIN { printf "%.0f", x }'; }
fmt_ms() { awk -v x="$1" 'BEGIN { printf "%.2f", x }'; }
# put1_floor NAME ROW...: a put-1 run's p50 against what one durable write over the
# network must at least cost, fdatasync p50 + loopback TCP round trip p50, both
# measured just before that run (issue 10 wants p50 <= 1.3x that floor).
put1_floor() {
	local name="$1"; shift
	local -a r=("$@")
	local f="${r[19]%%/*}" t="${r[21]:--}"
	if [ "$f" = "-" ] || [ "$t" = "-" ]; then return 0; fi
	awk -v n="$name" -v p="${r[5]}" -v f="$f" -v t="$t" 'BEGIN {
		printf "- put-1 floor, %s: p50 %.3f ms = %.2f x (fdatasync p50 %.3f + loopback round trip p50 %.3f = %.3f ms)\n", n, p, p / (f + t), f, t, f + t }'
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }'; }
other_cores() { awk -v m="$1" -v c="$2" -v s="$3" 'BEGIN { o = m - c - s; printf "%.2f", (o < 0 ? 0 : o) }'; }
flag_errors() { # errors first_error
	if [ "$1" != 0 ]; then printf ' ⚠ %s errors' "$1"; fi
}

# results_table ETCD_NAME MS_NAME SCENARIO_ARRAY WITH_TARGET: ops/s, p50, p99, ratios.
results_table() {
	local en="$1" mn="$2" with_target="$4" line sname op clients conns ops extra reported target e m
	local -n scen="$3"
	if [ "$with_target" = 1 ]; then
		echo "| scenario | sent to | etcd ops/s | etcd p50 ms | etcd p99 ms | metastore ops/s | metastore p50 ms | metastore p99 ms | ops/s ratio ms/etcd | p99 ratio ms/etcd |"
		echo "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"
	else
		echo "| scenario | etcd ops/s | etcd p50 ms | etcd p99 ms | metastore ops/s | metastore p50 ms | metastore p99 ms | ops/s ratio ms/etcd | p99 ratio ms/etcd |"
		echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|"
	fi
	for line in "${scen[@]}"; do
		IFS='|' read -r sname op clients conns ops extra reported target <<<"$line"
		case "$reported" in yes|load) ;; *) continue ;; esac
		IFS=$'\t' read -r -a e <<<"$(median_row "$en" "$sname")"
		printf '| %s |' "$sname"
		if [ "$with_target" = 1 ]; then
			case "${e[17]}" in leader*) printf ' leader |' ;; *) printf ' %s |' "${e[17]}" ;; esac
		fi
		printf ' %s%s | %s | %s |' "$(fmt_ops "${e[4]}")" "$(flag_errors "${e[7]}")" \
			"$(fmt_ms "${e[5]}")" "$(fmt_ms "${e[6]}")"
		if [ "$ETCD_ONLY" = 1 ]; then
			printf ' pending | pending | pending | pending | pending |\n'
		else
			IFS=$'\t' read -r -a m <<<"$(median_row "$mn" "$sname")"
			printf ' %s%s | %s | %s | %s | %s |\n' "$(fmt_ops "${m[4]}")" "$(flag_errors "${m[7]}")" \
				"$(fmt_ms "${m[5]}")" "$(fmt_ms "${m[6]}")" \
				"$(ratio "${m[4]}" "${e[4]}")" "$(ratio "${m[6]}" "${e[6]}")"
		fi
	done
}

# cpu_table ETCD_NAME MS_NAME SCENARIO_ARRAY: client / server / other cores and server
# CPU per op for the reported runs.
cpu_table() {
	local en="$1" mn="$2" line sname op clients conns ops extra reported target e m
	local -n scen="$3"
	echo "| scenario | msbench flags | etcd: client / server / other cores | etcd server µs/op | metastore: client / server / other cores | metastore server µs/op |"
	echo "|---|---|---:|---:|---:|---:|"
	for line in "${scen[@]}"; do
		IFS='|' read -r sname op clients conns ops extra reported target <<<"$line"
		case "$reported" in yes|load) ;; *) continue ;; esac
		IFS=$'\t' read -r -a e <<<"$(median_row "$en" "$sname")"
		# shellcheck disable=SC2016  # the backquotes are markdown
		printf '| %s | `%s` | %.2f / %.2f / %.2f | %.0f |' "$sname" "${e[10]}" "${e[8]}" "${e[9]}" \
			"$(other_cores "${e[14]}" "${e[8]}" "${e[9]}")" "${e[15]}"
		if [ "$ETCD_ONLY" = 1 ]; then
			printf ' pending | pending |\n'
		else
			IFS=$'\t' read -r -a m <<<"$(median_row "$mn" "$sname")"
			printf ' %.2f / %.2f / %.2f | %.0f |\n' "${m[8]}" "${m[9]}" \
				"$(other_cores "${m[14]}" "${m[8]}" "${m[9]}")" "${m[15]}"
		fi
	done
}

# wratio A B ERRORS_A ERRORS_B: A / B, or n/a if either run failed.
wratio() {
	if [ "$3" != 0 ] || [ "$4" != 0 ]; then echo "n/a"; else ratio "$1" "$2"; fi
}
# wcell VALUE ERRORS PRINTF_FORMAT: the value, or "failed" if the run had errors.
wcell() {
	if [ "$2" != 0 ]; then printf 'failed (%s errors)' "$2"; else awk -v x="$1" -v f="$3" 'BEGIN { printf f, x }'; fi
}

# watch_tables: the watch part of the report (median runs, as for the other parts).
watch_tables() {
	local line sname op sflag samount extra reported e m
	echo "| scenario | etcd events/s | etcd p50 ms | etcd p99 ms | metastore events/s | metastore p50 ms | metastore p99 ms | events/s ratio ms/etcd | p99 ratio ms/etcd |"
	echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|"
	for line in "${WATCH_SCENARIOS[@]}"; do
		IFS='|' read -r sname op sflag samount extra reported <<<"$line"
		[ "$op" = watch ] || continue
		IFS=$'\t' read -r -a e <<<"$(median_row etcd-watch "$sname")"
		printf '| %s | %s%s | %s | %s |' "$sname" "$(fmt_ops "${e[4]}")" "$(flag_errors "${e[7]}")" \
			"$(fmt_ms "${e[5]}")" "$(fmt_ms "${e[6]}")"
		if [ "$ETCD_ONLY" = 1 ]; then
			printf ' pending | pending | pending | pending | pending |\n'
		else
			IFS=$'\t' read -r -a m <<<"$(median_row metastore-watch "$sname")"
			printf ' %s%s | %s | %s | %s | %s |\n' "$(fmt_ops "${m[4]}")" "$(flag_errors "${m[7]}")" \
				"$(fmt_ms "${m[5]}")" "$(fmt_ms "${m[6]}")" \
				"$(wratio "${m[4]}" "${e[4]}" "${m[7]}" "${e[7]}")" "$(wratio "${m[6]}" "${e[6]}" "${m[7]}" "${e[7]}")"
		fi
	done
	echo
	echo "| measure | etcd | metastore | ratio ms/etcd |"
	echo "|---|---:|---:|---:|"
	# measure label|scenario|0-based TSV column|printf format
	local spec label col fmt
	for spec in "server RSS per idle watcher, bytes|watch-idle|16|%.0f" \
		    "server RSS per open stream (with its connection), bytes|watch-idle|20|%.0f" \
		    "catch-up time, s (until every watcher has every event)|watch-catchup|17|%.3f" \
		    "catch-up events/s|watch-catchup|4|%.0f" \
		    "watch-catchup: s until every Created response|watch-catchup|21|%.3f"; do
		IFS='|' read -r label sname col fmt <<<"$spec"
		IFS=$'\t' read -r -a e <<<"$(median_row etcd-watch "$sname")"
		printf '| %s | %s |' "$label" "$(wcell "${e[$col]}" "${e[7]}" "$fmt")"
		if [ "$ETCD_ONLY" = 1 ]; then
			printf ' pending | pending |\n'
		else
			IFS=$'\t' read -r -a m <<<"$(median_row metastore-watch "$sname")"
			printf ' %s | %s |\n' "$(wcell "${m[$col]}" "${m[7]}" "$fmt")" \
				"$(wratio "${m[$col]}" "${e[$col]}" "${m[7]}" "${e[7]}")"
		fi
	done
	echo
	echo "CPU over msbench's measured window (watch-10k*: from the first put until the last event" \
		"arrived; watch-catchup: from the first create request until every watcher caught up), in" \
		"cores (of $NPROC): msbench / server / everything else." \
		"Server µs/event: server CPU time in that window ÷ events delivered."
	echo
	echo "| scenario | msbench flags | etcd: client / server / other cores | etcd server µs/event | metastore: client / server / other cores | metastore server µs/event |"
	echo "|---|---|---:|---:|---:|---:|"
	for line in "${WATCH_SCENARIOS[@]}"; do
		IFS='|' read -r sname op sflag samount extra reported <<<"$line"
		[ "$reported" = yes ] || continue
		IFS=$'\t' read -r -a e <<<"$(median_row etcd-watch "$sname")"
		# shellcheck disable=SC2016  # the backquotes are markdown
		printf '| %s | `%s` | %.2f / %.2f / %.2f | %.1f |' "$sname" "${e[10]}" "${e[8]}" "${e[9]}" \
			"$(other_cores "${e[14]}" "${e[8]}" "${e[9]}")" "${e[15]}"
		if [ "$ETCD_ONLY" = 1 ]; then
			printf ' pending | pending |\n'
		else
			IFS=$'\t' read -r -a m <<<"$(median_row metastore-watch "$sname")"
			if [ "${m[7]}" != 0 ]; then
				printf ' failed | failed |\n'
			else
				printf ' %.2f / %.2f / %.2f | %.1f |\n' "${m[8]}" "${m[9]}" \
					"$(other_cores "${m[14]}" "${m[8]}" "${m[9]}")" "${m[15]}"
			fi
		fi
	done
}

# restart_row NAME: the line of NAME.restart with the median restart time ("failed"
# rows count as slowest), or nothing if there is none.
restart_row() {
	[ -f "$WORK/results/$1.restart" ] || return 0
	awk '{ print ($2 == "failed" ? 1e9 : $2), $0 }' "$WORK/results/$1.restart" | sort -g |
		awk '{ $1 = ""; sub(/^ /, ""); r[NR] = $0 } END { if (NR) print r[int((NR + 1) / 2)] }'
}
# mib KB: kB as MiB, one decimal.
mib() { awk -v x="$1" 'BEGIN { printf "%.1f", x / 1024 }'; }
# restart_failed LINE: 1 if the .restart line is missing or its restart failed, else 0.
restart_failed() {
	awk -v l="$1" 'BEGIN { split(l, f, " "); print (f[2] == "" || f[2] == "failed") ? 1 : 0 }'
}
# restart_cell LINE FIELD UNIT: field FIELD (1-based) of a .restart line, seconds (s)
# or kB shown as MiB (kB); "failed" if that restart failed.
restart_cell() {
	if [ "$(restart_failed "$1")" = 1 ]; then echo failed; return 0; fi
	awk -v l="$1" -v i="$2" -v u="$3" 'BEGIN { split(l, f, " "); if (u == "kB") printf "%.1f", f[i] / 1024; else printf "%.3f", f[i] }'
}

# load_tables: the load part of the report.
load_tables() {
	local line sname op clients conns ops extra reported target b c spec label i f ers mrs er mr=""
	results_table etcd-load metastore-load LOAD_ALL 0
	echo
	if [ "$RUN_SINGLE" = 1 ]; then
		echo "The same scenarios beside their run in the one-member part above (range-100 there reads a" \
			"store of 10 000 keys; put-100 there writes random keys of 100 000 into it), median runs;" \
			"\"loaded ÷ 10k\" = ops/s with $LOAD_KEYS keys ÷ ops/s there (1.00: the cost does not grow with the data)."
		echo
		echo "| scenario | etcd ops/s: one-member part / $LOAD_KEYS keys | etcd loaded ÷ 10k | etcd server µs/op: one-member part / $LOAD_KEYS keys | metastore ops/s: one-member part / $LOAD_KEYS keys | metastore loaded ÷ 10k | metastore server µs/op: one-member part / $LOAD_KEYS keys |"
		echo "|---|---:|---:|---:|---:|---:|---:|"
		for line in "${LOAD_SCENARIOS[@]}"; do
			IFS='|' read -r sname op clients conns ops extra reported target <<<"$line"
			for f in etcd metastore; do
				if [ "$f" = metastore ] && [ "$ETCD_ONLY" = 1 ]; then
					printf ' pending | pending | pending |'
					continue
				fi
				IFS=$'\t' read -r -a b <<<"$(median_row "$f" "$sname")"
				IFS=$'\t' read -r -a c <<<"$(median_row "$f-load" "$sname")"
				[ "$f" = metastore ] || printf '| %s |' "$sname"
				printf ' %s / %s | %s | %.0f / %.0f |' "$(fmt_ops "${b[4]}")" "$(fmt_ops "${c[4]}")" \
					"$(wratio "${c[4]}" "${b[4]}" "${c[7]}" "${b[7]}")" "${b[15]}" "${c[15]}"
			done
			echo
		done
		echo
	fi
	echo "| measure | etcd | metastore | ratio ms/etcd |"
	echo "|---|---:|---:|---:|"
	read -r -a ers <<<"$(cat "$WORK/results/etcd-load.rss")"
	mrs=()
	[ "$ETCD_ONLY" = 1 ] || read -r -a mrs <<<"$(cat "$WORK/results/metastore-load.rss")"
	# label|index in the .rss line
	for spec in "peak RSS after the load (VmHWM), MiB|0" "RSS after the load (VmRSS), MiB|1" \
		    "peak RSS after the reads and updates too (VmHWM), MiB|2" "RSS after the reads and updates (VmRSS), MiB|3"; do
		IFS='|' read -r label i <<<"$spec"
		printf '| %s | %s |' "$label" "$(mib "${ers[$i]}")"
		if [ "$ETCD_ONLY" = 1 ]; then
			printf ' pending | pending |\n'
		else
			printf ' %s | %s |\n' "$(mib "${mrs[$i]}")" "$(ratio "${mrs[$i]}" "${ers[$i]}")"
		fi
	done
	er=$(restart_row etcd-load)
	[ "$ETCD_ONLY" = 1 ] || mr=$(restart_row metastore-load)
	# label|field of the .restart line|unit
	for spec in "restart: exec to first linearizable Range, s (median of $REPEAT)|2|s" \
		    "the probe alone (the same msbench call against the running server), s|3|s" \
		    "RSS after the restart's first read (VmRSS), MiB|4|kB"; do
		IFS='|' read -r label i f <<<"$spec"
		printf '| %s | %s |' "$label" "$(restart_cell "$er" "$i" "$f")"
		if [ "$ETCD_ONLY" = 1 ]; then
			printf ' pending | pending |\n'
		else
			printf ' %s | %s |\n' "$(restart_cell "$mr" "$i" "$f")" \
				"$(wratio "$(cut -d' ' -f"$i" <<<"$mr")" "$(cut -d' ' -f"$i" <<<"$er")" \
					"$(restart_failed "$mr")" "$(restart_failed "$er")")"
		fi
	done
	echo
	echo "CPU during the load part's runs, in cores (of $NPROC): load generator (msbench, getrusage) /" \
		"server (/proc/PID/stat) / everything else on the machine. Server µs/op: server CPU time during" \
		"the run ÷ successful operations."
	echo
	cpu_table etcd-load metastore-load LOAD_ALL
}

report() {
	local e m
	echo "### metastore vs etcd, $DATE"
	echo
	if [ "$ETCD_ONLY" = 1 ]; then
		echo "**etcd-only baseline run** (\`compare.sh --etcd-only\`): metastore columns are pending."
		echo
	fi
	echo "- Machine: $NPROC CPUs ($CPU_MODEL), kernel $KERNEL, data dirs on $FS;" \
		"load generator and server(s) share these $NPROC CPUs."
	echo "- Disk: 4 KiB pwrite + fdatasync into a preallocated file (\`msbench --fsync-probe\`):" \
		"p50 $FSYNC_P50 ms, p99 $FSYNC_P99 ms, $FSYNC_RATE syncs/s."
	echo "- Versions: etcd $ETCD_VERSION (Debian etcd-server $ETCD_PKG);" \
		"metastore ${MS_VERSION:-pending} (checkout at run time: $GIT_REV$GIT_DIRTY);" \
		"msbench from the same tree, gRPC core $GRPC_PKG, protobuf-c $PBC_PKG."
	echo "- Each scenario ran $REPEAT times per server (scale $SCALE; the load part's load once); the run with the median ops/s is shown" \
		"(among the runs no other process disturbed, if any)." \
		"Keys 8 B, values 256 B. One server (or cluster) at a time, fresh data dirs each (the load part's restarts reuse theirs);" \
		"every member started with \`--initial-cluster-state new --initial-cluster-token msbench-compare $RAFT_FLAGS\`." \
		"Whole run: $ELAPSED s."
	echo
	if [ "$RUN_SINGLE" = 1 ]; then
		echo "#### One member"
		echo
		results_table etcd metastore SCENARIOS 0
		echo
		IFS=$'\t' read -r -a e <<<"$(median_row etcd put-1)"
		printf -- '- put-1 beside the disk: fdatasync p50/p99 %s ms measured just before etcd'"'"'s put-1 run (p50 %s ms)' \
			"${e[19]}" "$(fmt_ms "${e[5]}")"
		if [ "$ETCD_ONLY" = 0 ]; then
			IFS=$'\t' read -r -a m <<<"$(median_row metastore put-1)"
			printf ', %s ms just before metastore'"'"'s (p50 %s ms)' "${m[19]}" "$(fmt_ms "${m[5]}")"
		fi
		echo "."
		put1_floor etcd "${e[@]}"
		[ "$ETCD_ONLY" = 1 ] || put1_floor metastore "${m[@]}"
		echo
		echo "CPU during the reported runs, in cores (of $NPROC): load generator (msbench, getrusage) /" \
			"server (/proc/PID/stat) / everything else on the machine (/proc/stat busy minus both;" \
			"kernel network and disk work not charged to a process lands here too)." \
			"Server µs/op: server CPU time during the run ÷ successful operations."
		echo
		cpu_table etcd metastore SCENARIOS
		echo
	fi
	if [ "$RUN_CLUSTER" = 1 ]; then
		echo "#### $CLUSTER_SIZE members"
		echo
		echo "$CLUSTER_SIZE members of one server on this machine (127.0.0.1, one data dir each on the same disk)." \
			"\"leader\": every connection to the member that led when the run started (looked up with" \
			"\`etcdctl endpoint status\` before each run); \"all\": connections round-robin over the" \
			"$CLUSTER_SIZE members' client URLs (10 connections: 4/3/3), so two thirds of the calls reach a follower."
		echo
		results_table etcd-x3 metastore-x3 CLUSTER_SCENARIOS 1
		echo
		echo "CPU during the reported runs, in cores (of $NPROC), as above; \"server\" is the sum over" \
			"the $CLUSTER_SIZE members and server µs/op is the members' CPU time together ÷ successful operations." \
			"Per member (leader marked *) in the list of all runs below."
		echo
		cpu_table etcd-x3 metastore-x3 CLUSTER_SCENARIOS
		echo
	fi
	if [ "$RUN_WATCH" = 1 ]; then
		echo "#### Watch (one member)"
		echo
		echo "A fresh one-member server of each kind. Watchers on bidi Watch streams (\`msbench --op watch*\`);" \
			"writers are put clients. Every event is checked (a put on the watcher's keys, revisions" \
			"increasing, none missing or extra: \"events expected\" = the puts msbench got a response for," \
			"per watcher, must equal what arrived) and timed against the put whose response carried its" \
			"revision: commit-to-delivery = event arrival − that put's response arrival, so it is negative" \
			"when the server sent the event before the put's reply (etcd notifies watchers while applying," \
			"before it replies). events/s = events ÷ (last event − first put). Memory: the server's VmRSS" \
			"before and after opening 100 streams and creating 10 000 idle watchers, 2 s settle each" \
			"(Go's RSS includes GC headroom). Catch-up: 100 000 puts over 1000 keys, then 1000 watchers of" \
			"10 keys each with start_revision = last revision − 100 000 + 1; time from the first create" \
			"request until every watcher has all of its events. watch-idle runs once; the others $REPEAT times."
		echo
		watch_tables
		echo
	fi
	if [ "$RUN_LOAD" = 1 ]; then
		echo "#### $LOAD_KEYS keys loaded (one member)"
		echo
		echo "A fresh one-member server of each kind, with the flags every server gets. load: $LOAD_KEYS puts" \
			"of the keys 0..$((LOAD_KEYS - 1)) in order (\`--sequential\`), 100 clients, 10 conns, each key written" \
			"once (1 000 000 × scale; it runs once). Then, over those keys, range-100 (linearizable Range" \
			"of a random existing key) and put-100 (updates of random existing keys), each run $REPEAT× (reads" \
			"first). RSS from the server's /proc/PID/status: VmHWM (the peak resident set so far) and VmRSS," \
			"read right after the load and again after the reads and updates; both count the file pages" \
			"the server has mapped in (etcd mmaps its bbolt file). Restart (done $REPEAT×): SIGTERM, wait until" \
			"the process has exited, start the same binary with the same flags, ports and data dir, and" \
			"time from just before the exec until one linearizable Range succeeds (\`msbench --op range" \
			"--total 1\`, 2 s deadlines, retried every 20 ms once the new pid listens on its client port);" \
			"that includes one msbench start-up and connect, shown beside it as the same call against the" \
			"running server. The median restart is shown."
		echo
		load_tables
		echo
	fi
	local errs
	errs=$(awk -F'\t' '$8 != 0 { printf "- %s %s run %s: %s errors, first: %s\n", $1, $2, $3, $8, $12 }' "$WORK"/results/*.tsv)
	if [ "$RUN_LOAD" = 1 ]; then
		errs="$errs$(for f in "$WORK"/results/*.restart; do
			[ -f "$f" ] || continue
			awk -v n="$(basename "$f" .restart)" -v l="$RESTART_LIMIT" '$2 == "failed" { printf "\n- %s restart %s: no linearizable Range served within %s s", n, $1, l }' "$f"
		done)"
		errs="${errs#$'\n'}"
	fi
	if [ -n "$errs" ]; then
		echo "**WARNING: some runs had failed operations; their numbers are not valid:**"
		echo
		echo "$errs"
		echo
	fi
	local elect
	elect=$(awk -F'\t' '$19 != "-" { printf "- %s %s run %s: %s\n", $1, $2, $3, $19 }' "$WORK"/results/*.tsv)
	if [ -n "$elect" ]; then
		echo "**WARNING: the leader or the raft term changed during some cluster runs (an election):**"
		echo
		echo "$elect"
		echo
	fi
	local busy
	busy=$(awk -F'\t' '($4 == "yes" || $4 == "load") && $15 - $9 - $10 > 0.3 { printf "%s %s #%s (%.2f cores), ", $1, $2, $3, $15 - $9 - $10 }' "$WORK"/results/*.tsv)
	if [ -n "$busy" ]; then
		echo "**Note: other processes were busy during some runs (more than 0.3 cores besides msbench and the server): ${busy%, }. Those runs may be disturbed; rerun on a quiet machine.**"
		echo
	fi
	local f
	if [ "$RUN_SINGLE" = 1 ] || [ "$RUN_CLUSTER" = 1 ] || [ "$RUN_LOAD" = 1 ]; then
		echo "All runs (ops/s, p50 ms, p99 ms, cores: client/server/other, server µs/op; clusters: cores per member, * = leader):"
		echo
		echo '```'
		for f in etcd metastore etcd-x3 metastore-x3 etcd-load metastore-load; do
			[ -f "$WORK/results/$f.tsv" ] || continue
			awk -F'\t' '{ o = $15 - $9 - $10; if (o < 0) o = 0
				printf "%-14s %-22s #%s %8.1f ops/s  p50 %7.3f  p99 %7.3f  errors %s  cpu %.2f/%.2f/%.2f  %4.0f µs/op", $1, $2, $3, $5, $6, $7, $8, $9, $10, o, $16
				if ($17 ~ /\//) printf "  members %s", $17
				if ($2 ~ /^range/ && $14 > 0) printf "  keys found %.1f%%", 100 * $13 / $14
				if ($20 != "-") printf "  fdatasync p50/p99 %s ms", $20
				if ($22 != "" && $22 != "-") printf "  loopback RTT p50 %s ms", $22
				if ($19 != "-") printf "  ELECTION: %s", $19
				printf "\n" }' "$WORK/results/$f.tsv"
		done
		for f in etcd-load metastore-load; do
			[ -f "$WORK/results/$f.restart" ] || continue
			awk -v n="$f" '{ printf "%-14s %-22s #%s  first linearizable Range after %s s (%s probes; probe alone %s s)  VmRSS %.1f MiB\n", n, "restart", $1, $2, $5, $3, $4 / 1024 }' "$WORK/results/$f.restart"
		done
		for f in etcd-load metastore-load; do
			[ -f "$WORK/results/$f.rss" ] || continue
			awk -v n="$f" '{ printf "%-14s %-22s VmHWM/VmRSS after the load %.1f/%.1f MiB, after the reads and updates %.1f/%.1f MiB\n", n, "rss", $1 / 1024, $2 / 1024, $3 / 1024, $4 / 1024 }' "$WORK/results/$f.rss"
		done
		echo '```'
	fi
	if [ "$RUN_WATCH" = 1 ]; then
		if [ "$RUN_SINGLE" = 1 ] || [ "$RUN_CLUSTER" = 1 ] || [ "$RUN_LOAD" = 1 ]; then
			echo
		fi
		echo "All watch runs (watch: events/s, commit-to-delivery p50/p99 ms, events expected/received," \
			"% of events before their put's response; cores client/server/other over msbench's window;" \
			"server µs per event):"
		echo
		echo '```'
		for f in etcd-watch metastore-watch; do
			[ -f "$WORK/results/$f.tsv" ] || continue
			awk -F'\t' '{ o = $15 - $9 - $10; if (o < 0) o = 0
				printf "%-16s %-15s #%s", $1, $2, $3
				if ($2 == "watch-idle")
					printf "  %6.0f bytes/watcher  %6.0f bytes/stream  created in %.3f s", $17, $21, $22
				else if ($2 ~ /catchup/)
					printf "  caught up in %7.3f s  %9.0f events/s  created in %.3f s  expected %s received %s  %.1f events/response  cpu %.2f/%.2f/%.2f  %5.2f µs/event", $18, $5, $22, $13, $14, $23, $9, $10, o, $16
				else
					printf "  %9.1f events/s  p50 %7.3f  p99 %7.3f  expected %s received %s%s  %4.1f%% before ack  %7.1f puts/s  cpu %.2f/%.2f/%.2f  %5.2f µs/event", $5, $6, $7, $13, $14, ($13 == $14 ? "" : " MISMATCH"), $24, $20, $9, $10, o, $16
				printf "  errors %s", $8
				if ($8 != 0) printf "  first error: %s", $12
				printf "\n" }' "$WORK/results/$f.tsv"
		done
		echo '```'
	fi
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
