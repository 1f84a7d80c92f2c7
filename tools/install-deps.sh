#!/usr/bin/env bash
# Install what metastore needs to build, test and benchmark on Debian 12, from
# Debian's own packages. Idempotent: when everything is present it does nothing
# (no apt-get update), so the run and test commands stay fast on a set-up machine.
set -euo pipefail

pkgs=(
  meson ninja-build pkg-config gcc clang libclang-rt-14-dev python3
  libgrpc-dev libprotobuf-c-dev protobuf-c-compiler librocksdb-dev libcriterion-dev
  libssl-dev libcrypt-dev openssl libmicrohttpd-dev libgnutls28-dev libjansson-dev libyaml-dev
  libjemalloc-dev
  etcd-client etcd-server golang-go golang-etcd-server-dev
  jq iproute2 python3-prometheus-client curl
)

missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
  echo "install-deps: missing packages: ${missing[*]}; run as root (or install them)" >&2
  exit 1
fi
echo "install-deps: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
# Debian's etcd-server package may start a system etcd on 2379/2380; metastore's
# defaults are the same ports, so make sure it is not running.
if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet etcd 2>/dev/null; then
  systemctl stop etcd || true
  systemctl disable etcd >/dev/null 2>&1 || true
fi
