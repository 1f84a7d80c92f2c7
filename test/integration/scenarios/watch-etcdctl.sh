#!/usr/bin/env bash
# watch-etcdctl: the real `etcdctl watch` (etcd-client 3.4) against the server's Watch
# service, outputs compared exactly (simple format, and -w json reduced to a canonical
# text by jw below):
#   - single key without --rev: starts at the current revision (older values never
#     shown), other keys ignored, PUT / DELETE lines;
#   - --prefix, `watch a c` ([a, c) range), --prev-kv (none on a create), --rev in the
#     past (history replay: all events in ONE response whose header is the current
#     revision) and in the future (nothing before it);
#   - -w json: header revision == event revision for a live watcher, cluster/member id
#     and raft term == endpoint status, kv create/mod revision, version, lease, prev_kv,
#     the fields etcdctl omits (zero), one response per revision;
#   - a Txn writing several keys: ONE response, events in op order; a DeleteRange
#     (--prev-kv): ONE response, key order, prev values; a lease revoke: ONE response,
#     key order, prev_kv carrying the lease;
#   - --interactive: "watch K", "watch --prefix P", "progress" (prints
#     "progress notify: REV" once per watch on the stream), invalid lines, EOF;
#   - an empty range (`watch c a`) and a watch from a compacted revision: the exact
#     "watch was canceled (...)" + "Error: watch is canceled by the server" lines,
#     exit status 5; -w json of the compacted response (CompactRevision, Canceled, no
#     header revision, "Events":[]); watching from exactly the compact revision works.
# Every etcdctl watch runs in the background writing to a file (pid tracked, stopped by
# pid); expected output is awaited with bounded polls only.  Outputs were read from
# real etcd 3.4.23.
. "$(dirname "$0")/../lib.sh"

start_server || { fail start "server did not start"; exit 1; }

# ------------------------------------------------------------------ helpers
declare -A W_PID=()

# bg_watch NAME ARGS...: `etcdctl watch ARGS` in the background; stdout to
# $_IT_TMP/NAME.out, stderr to NAME.err.
bg_watch() {
    local name=$1
    shift
    : >"$_IT_TMP/$name.out"
    etcdctl --endpoints="$SRV_ENDPOINT" --dial-timeout=5s watch "$@" \
        >"$_IT_TMP/$name.out" 2>"$_IT_TMP/$name.err" &
    W_PID[$name]=$!
    track_pid "${W_PID[$name]}"
}

# stop_watch NAME: stop that etcdctl by pid.
stop_watch() {
    local pid=${W_PID[$1]:-}
    [ -n "$pid" ] || return 0
    kill -TERM "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
    untrack_pid "$pid"
    W_PID[$1]=
}

# check_wout CHECK EXPECTED NAME: the watch's stdout must be exactly EXPECTED,
# trailing newlines included (a DELETE prints an empty value line).
check_wout() {
    local s
    s=$(cat "$_IT_TMP/$3.out"; echo x)
    check_eq "$1" "$2" "${s%x}"
}

# nlines NAME: number of stdout lines so far.
nlines() { wc -l <"$_IT_TMP/$1.out"; }

# wait_lines NAME N: bounded poll (30 s) until stdout has at least N lines.
wait_lines() {
    local end=$((SECONDS + 30))
    while [ $SECONDS -lt $end ]; do
        [ "$(nlines "$1")" -ge "$2" ] && return 0
        kill -0 "${W_PID[$1]}" 2>/dev/null || break
        sleep 0.1
    done
    [ "$(nlines "$1")" -ge "$2" ]
}

# jw NAME: a -w json watch's stdout as canonical text: one line per response
#   "R<header.revision|-> n=<events>[ compact=C][ canceled][ created][ events=null]
#    [ hdr=<ids>]" (hdr only if cluster_id/member_id/raft_term differ from the
#   server's), then one line per event: "  PUT|DELETE <key> cr= mod= ver= val= lease=
#   [prev(...)]" where a field etcdctl omitted (zero) is not printed.
jw() {
    python3 - "$_IT_TMP/$1.out" "$SRV_CID" "$SRV_MID" "$SRV_TERM" <<'PY'
import base64, json, sys
path, cid, mid, term = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
def s(v): return base64.b64decode(v).decode("utf-8", "replace")
def kv(k):
    out = [s(k["key"]) if "key" in k else "<nokey>"]
    for f, n in (("create_revision", "cr"), ("mod_revision", "mod"), ("version", "ver"),
                 ("value", "val"), ("lease", "lease")):
        if f in k:
            out.append("%s=%s" % (n, s(k[f]) if f == "value" else k[f]))
    out += ["?%s=%r" % (f, v) for f, v in sorted(k.items())
            if f not in ("key", "create_revision", "mod_revision", "version", "value", "lease")]
    return " ".join(out)
for line in open(path):
    line = line.strip()
    if not line:
        continue
    d = json.loads(line)
    h = d.get("Header", {})
    r = ["R%s" % h.get("revision", "-")]
    evs = d.get("Events")
    r.append("n=%d" % len(evs or []))
    if d.get("CompactRevision"): r.append("compact=%d" % d["CompactRevision"])
    if d.get("Canceled"): r.append("canceled")
    if d.get("Created"): r.append("created")
    if evs is None: r.append("events=null")
    if (h.get("cluster_id"), h.get("member_id"), h.get("raft_term")) != (cid, mid, term):
        r.append("hdr=%s/%s/%s" % (h.get("cluster_id"), h.get("member_id"), h.get("raft_term")))
    extra = sorted(set(d) - {"Header", "Events", "CompactRevision", "Canceled", "Created"})
    if extra: r.append("?fields=" + ",".join(extra))
    print(" ".join(r))
    for e in evs or []:
        t = {0: "PUT", 1: "DELETE"}.get(e.get("type", 0), "?%s" % e.get("type"))
        l = "  %s %s" % (t, kv(e.get("kv", {})))
        if "prev_kv" in e:
            l += " prev(%s)" % kv(e["prev_kv"])
        rest = sorted(set(e) - {"type", "kv", "prev_kv"})
        if rest: l += " ?fields=" + ",".join(rest)
        print(l)
PY
}

# jn NAME: number of events in a -w json watch's stdout so far.
jn() {
    python3 -c '
import json, sys
n = 0
for l in open(sys.argv[1]):
    l = l.strip()
    if l:
        try: n += len(json.loads(l).get("Events") or [])
        except ValueError: pass
print(n)' "$_IT_TMP/$1.out"
}

# wait_events NAME N: bounded poll (30 s) until a -w json watch printed N events.
wait_events() {
    local end=$((SECONDS + 30))
    while [ $SECONDS -lt $end ]; do
        [ "$(jn "$1")" -ge "$2" ] && return 0
        kill -0 "${W_PID[$1]}" 2>/dev/null || break
        sleep 0.1
    done
    [ "$(jn "$1")" -ge "$2" ]
}

put() { ectl put "$@" >/dev/null; }

j=$(ectl endpoint status -w json)
SRV_CID=$(printf '%s' "$j" | jget 'd[0]["Status"]["header"]["cluster_id"]')
SRV_MID=$(printf '%s' "$j" | jget 'd[0]["Status"]["header"]["member_id"]')
SRV_TERM=$(printf '%s' "$j" | jget 'd[0]["Status"]["raftTerm"]')

# ------------------------------------------------------------------ single key, no --rev
put k old                                  # rev 2
put k older                                # rev 3
bg_watch single k
# The watch starts at the revision current when the server creates it, which this
# script cannot see: put k sync-1, sync-2, ... until one is printed; then wait for
# the last one (events arrive in order), so everything after it is deterministic.
i=0
synced=0
while [ $i -lt 60 ]; do
    i=$((i + 1))
    put k "sync-$i"
    for t in $(seq 1 10); do
        grep -q '^sync-' "$_IT_TMP/single.out" && { synced=1; break; }
        sleep 0.1
    done
    [ $synced = 1 ] && break
done
check_eq single-established 1 "$synced"
for t in $(seq 1 300); do
    grep -qx "sync-$i" "$_IT_TMP/single.out" && break
    sleep 0.1
done
first=$(grep -m1 '^sync-' "$_IT_TMP/single.out")
first=${first#sync-}
exp_sync=
for x in $(seq "$first" "$i"); do exp_sync+=$(printf 'PUT\nk\nsync-%s\n' "$x")$'\n'; done
check_wout single-sync-events "$exp_sync" single
base=$(nlines single)
put k2 other                               # another key: not shown
put kk other                               # a longer key: not a prefix watch
put k v1
ectl del k >/dev/null
ectl del k >/dev/null                      # deletes nothing: no event
put k v2
wait_lines single $((base + 9))
sleep 0.3                                  # let anything unexpected show up too
stop_watch single
check_wout single-key "${exp_sync}PUT
k
v1
DELETE
k

PUT
k
v2
" single
check_eq single-no-older-values 0 "$(grep -c '^old' "$_IT_TMP/single.out")"

# ------------------------------------------------------------------ --prefix
R=$(cur_rev)
bg_watch prefix --prefix p/ --rev $((R + 1))
put p/a 1
put p 2                                    # not under p/
put p0 3                                   # not under p/
put p/ 4                                   # the prefix itself is under it
put p/b/c 5
put q/a 6
ectl del --prefix p >/dev/null             # deletes p p/ p/a p/b/c p0: 3 events for p/
wait_lines prefix 18
sleep 0.3
stop_watch prefix
check_wout prefix "PUT
p/a
1
PUT
p/
4
PUT
p/b/c
5
DELETE
p/

DELETE
p/a

DELETE
p/b/c

" prefix

# ------------------------------------------------------------------ range [a, c)
R=$(cur_rev)
bg_watch range a c --rev $((R + 1))
for key in A 0 a ab b b/x bzzz c ca d; do put "$key" "v-$key"; done
wait_lines range 15
sleep 0.3
stop_watch range
exp=
for key in a ab b b/x bzzz; do exp+=$(printf 'PUT\n%s\nv-%s\n' "$key" "$key")$'\n'; done
check_wout range-a-c "$exp" range

# ------------------------------------------------------------------ --prev-kv
R=$(cur_rev)
bg_watch prevkv --prev-kv pk --rev $((R + 1))
put pk a
put pk b
ectl del pk >/dev/null
put pk c
wait_lines prevkv 16
sleep 0.3
stop_watch prevkv
check_wout prev-kv "PUT
pk
a
PUT
pk
a
pk
b
DELETE
pk
b
pk

PUT
pk
c
" prevkv

# ------------------------------------------------------------------ --rev: history
put h 1
H1=$(cur_rev)
put h 2
ectl del h >/dev/null
put h 3
put other-key x
NOW=$(cur_rev)
bg_watch hist h --rev "$H1"
wait_lines hist 12
sleep 0.3
stop_watch hist
check_wout rev-history-replay "PUT
h
1
PUT
h
2
DELETE
h

PUT
h
3
" hist
bg_watch hist2 h --rev $((H1 + 2))
wait_lines hist2 6
sleep 0.3
stop_watch hist2
check_wout rev-history-from-delete "DELETE
h

PUT
h
3
" hist2
bg_watch histj -w json --prev-kv h --rev "$H1"
wait_events histj 4
sleep 0.3
stop_watch histj
# A watcher catching up on history gets the events in one response whose header
# revision is the store's current revision (not the last event's).
check_eq rev-history-json-one-response "R$NOW n=4
  PUT h cr=$H1 mod=$H1 ver=1 val=1
  PUT h cr=$H1 mod=$((H1 + 1)) ver=2 val=2 prev(h cr=$H1 mod=$H1 ver=1 val=1)
  DELETE h mod=$((H1 + 2)) prev(h cr=$H1 mod=$((H1 + 1)) ver=2 val=2)
  PUT h cr=$((H1 + 3)) mod=$((H1 + 3)) ver=1 val=3" "$(jw histj)"

# ------------------------------------------------------------------ --rev: future
R=$(cur_rev)
bg_watch future f --rev $((R + 3))
put f 1                                    # R+1
put f 2                                    # R+2
put f 3                                    # R+3
put f 4                                    # R+4
wait_lines future 6
sleep 0.3
stop_watch future
check_wout rev-future "PUT
f
3
PUT
f
4
" future

# ------------------------------------------------------------------ -w json fields
L=$(ectl lease grant 600 | awk '/granted/ {print $2}')
LD=$(u64 "$L")
R=$(cur_rev)
bg_watch json -w json --prev-kv j --rev $((R + 1))
put j a                                    # R+1
wait_events json 1
put j b --lease="$L"                       # R+2
wait_events json 2
ectl del j >/dev/null                      # R+3
wait_events json 3
put j c                                    # R+4
wait_events json 4
sleep 0.3
check_eq json-fields "R$((R + 1)) n=1
  PUT j cr=$((R + 1)) mod=$((R + 1)) ver=1 val=a
R$((R + 2)) n=1
  PUT j cr=$((R + 1)) mod=$((R + 2)) ver=2 val=b lease=$LD prev(j cr=$((R + 1)) mod=$((R + 1)) ver=1 val=a)
R$((R + 3)) n=1
  DELETE j mod=$((R + 3)) prev(j cr=$((R + 1)) mod=$((R + 2)) ver=2 val=b lease=$LD)
R$((R + 4)) n=1
  PUT j cr=$((R + 4)) mod=$((R + 4)) ver=1 val=c" "$(jw json)"
check_eq json-raw-flags "0 false false" \
    "$(head -n 1 "$_IT_TMP/json.out" | jget '"%d %s %s" % (d["CompactRevision"], str(d["Canceled"]).lower(), str(d["Created"]).lower())')"
# The watcher is now live: writes in quick succession still come one response per
# revision, each header carrying its own revision.
put j d                                    # R+5
put j e                                    # R+6
put j f                                    # R+7
wait_events json 7
sleep 0.3
stop_watch json
check_eq json-live-one-response-per-revision "R$((R + 5)) n=1 R$((R + 6)) n=1 R$((R + 7)) n=1" \
    "$(jw json | grep '^R' | tail -n 3 | tr '\n' ' ' | sed 's/ $//')"

# ------------------------------------------------------------------ Txn: one response
put tx/d old
R=$(cur_rev)
bg_watch txn -w json --prev-kv --prefix tx/ --rev "$R"
wait_events txn 1
out=$(printf '\nput tx/c 1\nput tx/a 2\nput tx/b 3\ndel tx/d\ndel tx/none\nput other-key y\n\n\n' | ectl txn)
check_eq txn-ok "$(printf 'SUCCESS\n\nOK\n\nOK\n\nOK\n\n1\n\n0\n\nOK')" "$out"
wait_events txn 5
sleep 0.3
stop_watch txn
T=$((R + 1))
check_eq txn-one-response-op-order "R$R n=1
  PUT tx/d cr=$R mod=$R ver=1 val=old
R$T n=4
  PUT tx/c cr=$T mod=$T ver=1 val=1
  PUT tx/a cr=$T mod=$T ver=1 val=2
  PUT tx/b cr=$T mod=$T ver=1 val=3
  DELETE tx/d mod=$T prev(tx/d cr=$R mod=$R ver=1 val=old)" "$(jw txn)"

# ------------------------------------------------------------------ DeleteRange --prev-kv
put dr/b 2
put dr/a 1
put dr/c 3
put drx 4
R=$(cur_rev)
bg_watch dr --prev-kv --prefix dr/ --rev $((R + 1))
bg_watch drj -w json --prev-kv --prefix dr/ --rev $((R + 1))
check_out delete-range "4" ectl del --prefix dr   # dr/a dr/b dr/c drx
wait_lines dr 15
wait_events drj 3
sleep 0.3
stop_watch dr
stop_watch drj
check_wout delete-range-prev-kv "DELETE
dr/a
1
dr/a

DELETE
dr/b
2
dr/b

DELETE
dr/c
3
dr/c

" dr
D=$((R + 1))
check_eq delete-range-one-response "R$D n=3
  DELETE dr/a mod=$D prev(dr/a cr=$((R - 2)) mod=$((R - 2)) ver=1 val=1)
  DELETE dr/b mod=$D prev(dr/b cr=$((R - 3)) mod=$((R - 3)) ver=1 val=2)
  DELETE dr/c mod=$D prev(dr/c cr=$((R - 1)) mod=$((R - 1)) ver=1 val=3)" "$(jw drj)"

# ------------------------------------------------------------------ lease revoke
L=$(ectl lease grant 600 | awk '/granted/ {print $2}')
LD=$(u64 "$L")
put ls/y y --lease="$L"
put ls/x x --lease="$L"
put ls/z z
R=$(cur_rev)
bg_watch lease -w json --prev-kv --prefix ls/ --rev $((R + 1))
check_out lease-revoke "lease $L revoked" ectl lease revoke "$L"
wait_events lease 2
sleep 0.3
stop_watch lease
D=$((R + 1))
check_eq lease-revoke-one-response "R$D n=2
  DELETE ls/x mod=$D prev(ls/x cr=$((R - 1)) mod=$((R - 1)) ver=1 val=x lease=$LD)
  DELETE ls/y mod=$D prev(ls/y cr=$((R - 2)) mod=$((R - 2)) ver=1 val=y lease=$LD)" "$(jw lease)"

# ------------------------------------------------------------------ --interactive
R=$(cur_rev)
fifo=$_IT_TMP/inter.fifo
mkfifo "$fifo"
: >"$_IT_TMP/inter.out"
etcdctl --endpoints="$SRV_ENDPOINT" --dial-timeout=5s watch --interactive \
    <"$fifo" >"$_IT_TMP/inter.out" 2>"$_IT_TMP/inter.err" &
W_PID[inter]=$!
track_pid "${W_PID[inter]}"
exec 7>"$fifo"
# etcdctl creates each watch before reading the next line; "progress" asks the server
# for a progress notification on the stream, which every watch on it prints.  So a
# "progress notify" line proves the watches above it are established.
printf 'watch ik1\nprogress\n' >&7
wait_lines inter 1
printf 'watch --prefix ip/\nprogress\n' >&7
wait_lines inter 3
put ik1 a
wait_lines inter 6
put ip/x b
wait_lines inter 9
put ik2 c                                  # not watched
put ip/y d
wait_lines inter 12
printf 'watch --prev-kv --rev %s ik1\n' "$((R + 1))" >&7   # a third watch, replaying ik1
wait_lines inter 15
printf 'bogus\n' >&7
printf 'watch\n' >&7
printf 'progress\n' >&7
wait_lines inter 18
exec 7>&-                                  # EOF on stdin: etcdctl exits
wait "${W_PID[inter]}"
rc=$?
untrack_pid "${W_PID[inter]}"
check_wout interactive-stdout "progress notify: $R
progress notify: $R
progress notify: $R
PUT
ik1
a
PUT
ip/x
b
PUT
ip/y
d
PUT
ik1
a
progress notify: $((R + 4))
progress notify: $((R + 4))
progress notify: $((R + 4))
" inter
check_eq interactive-stderr "Invalid command bogus (only support watch)
Invalid command watch (command type or key is not provided)
Error: Error reading watch request line: EOF" "$(cat "$_IT_TMP/inter.err")"
check_eq interactive-eof-exit-status 3 "$rc"

# ------------------------------------------------------------------ empty range
out=$(timeout 60 etcdctl --endpoints="$SRV_ENDPOINT" --dial-timeout=5s watch c a 2>"$_IT_TMP/empty.err")
rc=$?
check_eq empty-range-canceled "5|||watch was canceled (mvcc: watcher range is empty)
Error: watch is canceled by the server" "$rc|$out||$(cat "$_IT_TMP/empty.err")"

# ------------------------------------------------------------------ compaction
put ck 1
C1=$(cur_rev)
put ck 2
C=$(cur_rev)
put ck 3
check_out compact "compacted revision $C" ectl compact "$C"
out=$(timeout 60 etcdctl --endpoints="$SRV_ENDPOINT" --dial-timeout=5s watch ck --rev "$C1" 2>"$_IT_TMP/c.err")
rc=$?
check_eq compacted-canceled "5|||watch was canceled (etcdserver: mvcc: required revision has been compacted)
Error: watch is canceled by the server" "$rc|$out||$(cat "$_IT_TMP/c.err")"
timeout 60 etcdctl --endpoints="$SRV_ENDPOINT" --dial-timeout=5s watch -w json --prefix "" --rev 1 \
    >"$_IT_TMP/cj.out" 2>"$_IT_TMP/cj.err"
rc=$?
check_eq compacted-json "5|R- n=0 compact=$C canceled" "$rc|$(jw cj)"
check_eq compacted-json-raw '{"Events":[],"CompactRevision":'"$C"',"Canceled":true,"Created":false}' \
    "$(python3 -c '
import json, sys
d = json.loads(open(sys.argv[1]).read())
d.pop("Header")
print(json.dumps(d, separators=(",", ":")))' "$_IT_TMP/cj.out")"
check_eq compacted-json-stderr "watch was canceled (etcdserver: mvcc: required revision has been compacted)
Error: watch is canceled by the server" "$(cat "$_IT_TMP/cj.err")"
bg_watch atcompact ck --rev "$C"
wait_lines atcompact 6
sleep 0.3
stop_watch atcompact
check_wout watch-at-compact-revision "PUT
ck
2
PUT
ck
3
" atcompact

stop_server
finish
