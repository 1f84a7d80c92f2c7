#!/usr/bin/env bash
# README "run" command: install what is missing, build a release binary, and start
# a single-member metastore with etcd's defaults (name "default", data dir
# ./default.metastore, clients on localhost:2379, peers on localhost:2380).
# Extra arguments are passed to metastore (etcd's flags).
set -euo pipefail
cd "$(dirname "$0")/.."
tools/install-deps.sh
[ -f build/build.ninja ] || meson setup build --buildtype=release -Dtests=disabled >/dev/null
ninja -C build server/metastore >/dev/null
exec build/server/metastore "$@"
