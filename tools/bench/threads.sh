#!/bin/bash
#
# threads.sh: where a server's time goes between its threads during one msbench
# run. For each thread of the server process it prints the CPU share of the
# run's wall time and the context switches per completed operation (voluntary:
# the thread blocked, e.g. waited for work or an fdatasync; involuntary: it was
# preempted), from /proc/PID/task/*/{stat,status} read before and after the
# run, plus the totals. Thread hand-offs are the hidden cost of a request path
# on a 2-CPU machine: each voluntary switch is a sleep and a wake-up elsewhere.
# The server is any already running etcd-compatible process (metastore, etcd).
#
# usage: threads.sh --pid PID --msbench PATH [--endpoints H:P] -- MSBENCH-ARGS...
#   e.g. threads.sh --pid 1234 --msbench build/tools/bench/msbench -- \
#            --op put --total 50000 --clients 100 --conns 10
# A warm-up of 5000 operations with the same arguments runs first. Exit status:
# msbench's (0 ok), 1 on usage errors.
set -u

pid=
msbench=
endpoints=127.0.0.1:2379
while [ $# -gt 0 ]; do
	case "$1" in
	--pid) pid=$2; shift 2 ;;
	--msbench) msbench=$2; shift 2 ;;
	--endpoints) endpoints=$2; shift 2 ;;
	--) shift; break ;;
	*) echo "threads.sh: unknown argument $1" >&2; exit 1 ;;
	esac
done
if [ -z "$pid" ] || [ -z "$msbench" ] || [ ! -d "/proc/$pid" ] || [ ! -x "$msbench" ]; then
	echo "usage: threads.sh --pid PID --msbench PATH [--endpoints H:P] -- MSBENCH-ARGS..." >&2
	exit 1
fi

# One line per thread: tid name cpu-ticks voluntary involuntary (joined on
# tid, before and after: $3-$5 before, $7-$9 after).
snapshot() {
	local t
	for t in /proc/"$pid"/task/*; do
		[ -r "$t/stat" ] || continue
		printf '%s %s %s %s\n' "${t##*/}" "$(tr ' ' _ < "$t/comm")" \
			"$(awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "$t/stat")" \
			"$(awk '/^voluntary_ctxt_switches/ { v = $2 } /^nonvoluntary_ctxt_switches/ { n = $2 } END { print v, n }' "$t/status")"
	done | sort
}

"$msbench" --endpoints "$endpoints" "$@" --total 5000 > /dev/null 2>&1
before=$(mktemp) && after=$(mktemp) && result=$(mktemp) || exit 1
trap 'rm -f "$before" "$after" "$result"' EXIT
snapshot > "$before"
t0=$(date +%s%N)
"$msbench" --endpoints "$endpoints" "$@" > "$result" 2>/dev/null
rc=$?
t1=$(date +%s%N)
out=$(tail -1 "$result")
snapshot > "$after"
ok=$(printf '%s' "$out" | sed -n 's/.*"ok":\([0-9]*\).*/\1/p')
ops=$(printf '%s' "$out" | sed -n 's/.*"ops_per_s":\([0-9.]*\).*/\1/p')
if [ -z "$ok" ] || [ "$ok" -eq 0 ]; then
	echo "threads.sh: msbench completed no operation" >&2
	exit "${rc:-1}"
fi
echo "ops: $ok in $(( (t1 - t0) / 1000000 )) ms, $ops ops/s"
# Threads that started or ended during the run have no pair and are left out.
joined=$(join "$before" "$after")
report() {
	printf '%s\n' "$joined" | awk -v ok="$ok" -v wall_ns=$((t1 - t0)) -v hz="$(getconf CLK_TCK)" -v total="$1" '
		{
			cpu = ($7 - $3) / hz; vol = $8 - $4; inv = $9 - $5
			tc += cpu; tv += vol; ti += inv
			if (!total && (cpu > 0 || vol + inv > 0))
				printf "%-8s %-16s cpu %6.1f%%  switches/op voluntary %6.3f involuntary %6.3f\n",
					$1, $2, 100 * cpu * 1e9 / wall_ns, vol / ok, inv / ok
		}
		END {
			if (total)
				printf "%-25s cpu %6.1f%%  switches/op voluntary %6.3f involuntary %6.3f  cpu/op %.1f us\n",
					"total", 100 * tc * 1e9 / wall_ns, tv / ok, ti / ok, 1e6 * tc / ok
		}'
}
report 0 | sort -k4 -rn
report 1
exit "$rc"
