#!/usr/bin/env bash
# test/e2e/ready-shim.sh: a measuring aid for test/e2e/run.sh --ready-shim, never
# a fix. etcd's e2e suite treats a member as started once its output shows two
# lines containing "enabled capabilities for version" or "published". Until
# metastore prints those itself, this wrapper runs metastore ($METASTORE_BIN) with
# the given flags and, when metastore logs "ready to serve client requests",
# prints the two lines etcd would, so the rest of a test measures the API.
# metastore is exec'd (the suite's SIGKILL reaches it); a reader on a fifo copies
# its output through.
set -u
bin=${METASTORE_BIN:?METASTORE_BIN not set}
name=default
prev=
for a in "$@"; do
	case "$prev" in --name|-name) name=$a ;; esac
	case "$a" in --name=*|-name=*) name=${a#*=} ;; esac
	prev=$a
done
fifo=$(mktemp -u "${TMPDIR:-/tmp}/ready-shim.XXXXXX")
mkfifo "$fifo" || exit 1
(
	said=0
	while IFS= read -r line; do
		printf '%s\n' "$line"
		if [ $said = 0 ] && [[ $line == *"ready to serve client requests"* ]]; then
			said=1
			echo "ready-shim: enabled capabilities for version 3.4"
			echo "ready-shim: published {Name:$name} to cluster (metastore)"
		fi
	done <"$fifo"
	rm -f "$fifo"
) &
exec "$bin" "$@" >"$fifo" 2>&1
