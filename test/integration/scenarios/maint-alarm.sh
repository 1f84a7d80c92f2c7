#!/usr/bin/env bash
# maint-alarm: alarms and the backend quota on one member, as etcd's
# TestCtlV3Alarm (tests/e2e/ctl_v3_alarm_test.go) with 13 pages of quota:
# no alarm at first; 4 KiB puts until "etcdserver: mvcc: database space
# exceeded" (ResourceExhausted); `alarm list` and `endpoint status` errors name
# "memberID:<id> alarm:NOSPACE"; puts, a txn with a put and a lease grant are
# refused with the same text; reads, deletes and a txn without puts still work;
# compact + defrag make dbSize fall; `alarm disarm` prints the alarm, the list
# is empty again and a put succeeds. The alarm survives a restart.
. "$(dirname "$0")/../lib.sh"

NOSPACE="etcdserver: mvcc: database space exceeded"
start_server -- --quota-backend-bytes=$((13 * 4096)) || { fail start "server did not start"; exit 1; }
pass start
check_out no-alarm "" ectl alarm list
check_out small-put OK ectl put 1st_test "$(printf 'a%.0s' $(seq 1 64))"
id=$(ectl -w json endpoint status | jget 'd[0]["Status"]["header"]["member_id"]')

buf=$(head -c 4096 /dev/zero | tr '\0' b)
filled=0 err=
for i in $(seq 1 300); do
    if ! err=$(ectl put 2nd_test "$buf" 2>&1 >/dev/null); then filled=1; break; fi
done
check_eq fill-until-nospace "1 Error: $NOSPACE" "$filled $(printf '%s\n' "$err" | tail -n 1)"
check_out alarm-list "memberID:$id alarm:NOSPACE " ectl alarm list
check_eq status-errors "['memberID:$id alarm:NOSPACE ']" \
    "$(ectl -w json endpoint status | jget 'd[0]["Status"].get("errors")')"
check_etcdctl_error put-refused ResourceExhausted "$NOSPACE" ectl put 3rd_test x
check_etcdctl_error txn-put-refused ResourceExhausted "$NOSPACE" \
    ectl txn <<<$'\nput t x\n\n'
check_etcdctl_error lease-refused ResourceExhausted "$NOSPACE" \
    --line "Error: failed to grant lease ($NOSPACE)" ectl lease grant 100
check_eq get-works 4097 "$(ectl get 2nd_test --print-value-only | wc -c)"
check_eq txn-get-works SUCCESS "$(ectl txn <<<$'\nget 1st_test\n\n' | head -n 1)"
check_out delete-works 1 ectl del 1st_test

# the alarm is replicated state: it survives a restart
stop_server
restart_server || { fail restart "server did not restart"; exit 1; }
check_out alarm-after-restart "memberID:$id alarm:NOSPACE " ectl alarm list
check_etcdctl_error put-refused-after-restart ResourceExhausted "$NOSPACE" ectl put 3rd_test x

size_before=$(ectl -w json endpoint status | jget 'd[0]["Status"]["dbSize"]')
rev=$(cur_rev)
check_out compact "compacted revision $rev" ectl compact "$rev" --physical
check_out defrag "Finished defragmenting etcd member[$SRV_ENDPOINT]" ectl defrag
st=$(ectl -w json endpoint status)
size_after=$(printf '%s' "$st" | jget 'd[0]["Status"]["dbSize"]')
in_use=$(printf '%s' "$st" | jget 'd[0]["Status"]["dbSizeInUse"]')
check_true dbsize-falls "before $size_before after $size_after" [ "$size_after" -lt "$size_before" ]
check_true in-use-le-size "in use $in_use size $size_after" [ "$in_use" -le "$size_after" ]
check_out disarm "memberID:$id alarm:NOSPACE " ectl alarm disarm
check_out no-alarm-after-disarm "" ectl alarm list
check_eq status-no-errors null "$(ectl -w json endpoint status | jget 'd[0]["Status"].get("errors")')"
check_out put-after-disarm OK ectl put 4th_test "$(printf 'a%.0s' $(seq 1 64))"
check_out disarm-nothing "" ectl alarm disarm
stop_server
finish
