#!/usr/bin/env bash
# config-file: a member started from etcd 3.4's YAML configuration file
# (--config-file, and ETCD_CONFIG_FILE) takes every setting from the file: its
# name, data dir, client and peer URLs and token; etcdctl can put and get on the
# configured client URL and `member list` shows the configured name and peer
# URL. Other flags and ETCD_* variables given beside the file are ignored (as
# etcd does). A broken file (bad YAML, a value of the wrong type, a missing
# file) makes the server exit non-zero without creating its data dir. The same
# checks run against etcd and metastore; metastore's one-line message is checked
# for naming the file and the key.
. "$(dirname "$0")/../lib.sh"

# write_config FILE NAME DATA-DIR CLIENT-PORT PEER-PORT: a file in the shape of
# etcd's sample (quoted strings, nulls, a list, the two TLS blocks).
write_config() {
    cat >"$1" <<EOF
# metastore integration test: etcd 3.4 configuration file
name: '$2'
data-dir: $3
wal-dir:
snapshot-count: 10000
heartbeat-interval: 100
election-timeout: 1000
listen-peer-urls: http://127.0.0.1:$5
listen-client-urls: http://127.0.0.1:$4
initial-advertise-peer-urls: http://127.0.0.1:$5
advertise-client-urls: http://127.0.0.1:$4
initial-cluster:
initial-cluster-token: 'cfg-file-token'
initial-cluster-state: 'new'
strict-reconfig-check: true
proxy: 'off'
client-transport-security:
  cert-file:
  key-file:
  client-cert-auth: false
  auto-tls: false
peer-transport-security:
  client-cert-auth: false
  auto-tls: false
logger: zap
log-outputs: [stderr]
auto-compaction-retention: "0"
an-unknown-key: 1
EOF
}

# start_from_file LABEL RUNNER...: start "RUNNER..." (which names the file) and
# wait until the configured client URL is healthy.
start_from_file() {
    local label=$1
    shift
    SRV_LOG=$_IT_TMP/$label.log
    "$@" >"$SRV_LOG" 2>&1 &
    SRV_PID=$!
    track_pid "$SRV_PID"
    SRV_ENDPOINT=127.0.0.1:$cport
    if wait_healthy; then
        pass "$label-started"
        return 0
    fi
    fail "$label-started" "server did not become healthy on $SRV_ENDPOINT" \
        "log: $(_short "$(tail -n 5 "$SRV_LOG")")"
    stop_server
    return 1
}

# --- a member from the file; flags and variables beside it are ignored
read -r cport pport < <(free_ports 2)
cfg=$_IT_TMP/etcd.conf.yml
data=$_IT_TMP/cf-data
write_config "$cfg" cf-one "$data" "$cport" "$pport"
if start_from_file file env ETCD_NAME=from-env ETCD_INITIAL_CLUSTER_TOKEN=env-token \
        "$IT_SERVER" --config-file "$cfg" --name from-flag --data-dir "$_IT_TMP/flag-data"; then
    check_out file-put "OK" ectl put cfgkey cfgval
    check_out file-get "cfgval" ectl get cfgkey --print-value-only
    members=$(ectl member list 2>&1)
    check_match file-member-name "[0-9a-f]+, started, cf-one, http://127\.0\.0\.1:$pport, http://127\.0\.0\.1:$cport(, false)?" "$members"
    check_true file-data-dir "the configured data dir $data was not created" test -d "$data"
    check_true file-flag-data-dir-ignored "--data-dir beside --config-file was used" \
        test ! -e "$_IT_TMP/flag-data"
    stop_server
fi

# --- the same file through ETCD_CONFIG_FILE (a second member on fresh ports)
read -r cport pport < <(free_ports 2)
write_config "$cfg" cf-env "$_IT_TMP/cf-env-data" "$cport" "$pport"
if start_from_file env env ETCD_CONFIG_FILE="$cfg" "$IT_SERVER"; then
    check_out env-put "OK" ectl put k2 v2
    check_match env-member-name "[0-9a-f]+, started, cf-env, http://127\.0\.0\.1:$pport, http://127\.0\.0\.1:$cport(, false)?" "$(ectl member list 2>&1)"
    stop_server
fi

# run_bad_file NAME FILE: the server given --config-file FILE must exit non-zero
# within 20 s and leave no data dir. Output in $_IT_TMP/NAME.out.
run_bad_file() {
    local name=$1 file=$2 pid i rc
    "$IT_SERVER" --config-file "$file" >"$_IT_TMP/$name.out" 2>&1 &
    pid=$!
    track_pid "$pid"
    for i in $(seq 1 100); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.2
    done
    if kill -0 "$pid" 2>/dev/null; then
        fail "$name-refused" "server still running 20 s after start" \
            "output: $(_short "$(cat "$_IT_TMP/$name.out")")"
        _it_stop_pid "$pid" KILL
        untrack_pid "$pid"
        return 1
    fi
    wait "$pid"
    rc=$?
    untrack_pid "$pid"
    if [ $rc -eq 0 ]; then
        fail "$name-refused" "server exited with status 0"
    else
        pass "$name-refused"
    fi
    check_true "$name-nothing-created" "a data dir was created" test ! -e "$_IT_TMP/bad-data"
}

# check_says NAME REGEX: metastore's output for case NAME has a line matching REGEX.
check_says() {
    [ "$IT_TARGET" = metastore ] || return 0
    if grep -Eq "$2" "$_IT_TMP/$1.out"; then
        pass "$1-message"
    else
        fail "$1-message" "no line matching /$2/" "output: $(_short "$(cat "$_IT_TMP/$1.out")")"
    fi
}

read -r cport pport < <(free_ports 2)
bad=$_IT_TMP/bad.yml
write_config "$bad" bad "$_IT_TMP/bad-data" "$cport" "$pport"
printf 'listen-client-urls: [http://127.0.0.1:%s\n' "$cport" >>"$bad"
run_bad_file bad-yaml "$bad"
check_says bad-yaml "^metastore: config file $bad: line [0-9]+: "

write_config "$bad" bad "$_IT_TMP/bad-data" "$cport" "$pport"
printf 'max-txn-ops: "many"\n' >>"$bad"
run_bad_file bad-type "$bad"
check_says bad-type "^metastore: config file $bad: line [0-9]+: key \"max-txn-ops\": expected an integer, found a string$"

write_config "$bad" bad "$_IT_TMP/bad-data" "$cport" "$pport"
printf 'listen-peer-urls: 127.0.0.1:%s\n' "$pport" >>"$bad"
run_bad_file bad-url "$bad"
check_says bad-url "^metastore: config file $bad: line [0-9]+: key \"listen-peer-urls\": invalid value \"127\.0\.0\.1:$pport\": URL scheme must be http, https, unix, or unixs"

run_bad_file missing-file "$_IT_TMP/no-such.yml"
check_says missing-file "^metastore: config file open $_IT_TMP/no-such.yml: No such file or directory$"

finish
