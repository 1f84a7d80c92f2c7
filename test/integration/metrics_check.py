#!/usr/bin/python3
"""metrics_check: parse two /metrics scrapes with Prometheus' own text parser.

Usage: metrics_check.py BEFORE AFTER PUTS

BEFORE and AFTER are files holding a scrape taken before and after PUTS
`etcdctl put` calls. Run with Debian's /usr/bin/python3 (python3-prometheus-
client). Prints "ok NAME" / "not ok NAME (reason)" lines, one per check, and
exits 1 if any failed. The checks hold for etcd 3.4 and metastore alike:
  - both scrapes parse (prometheus_client.parser.text_string_to_metric_families);
  - every family dashboards use exists with etcd's type;
  - the disk histograms have etcd's buckets (0.001 * 2^n s, 14 of them, +Inf);
  - counters move: proposals committed/applied by at least PUTS,
    grpc_server_handled_total{grpc_method="Put",grpc_code="OK"} and
    grpc_server_started_total{grpc_method="Put"} by exactly PUTS, the WAL fsync
    histogram's count by at least one; etcd_server_has_leader is 1.
"""
import sys

from prometheus_client.parser import text_string_to_metric_families

REQUIRED = {
    "etcd_server_has_leader": "gauge",
    "etcd_server_is_leader": "gauge",
    "etcd_server_leader_changes_seen_total": "counter",
    "etcd_server_proposals_committed_total": "gauge",
    "etcd_server_proposals_applied_total": "gauge",
    "etcd_server_proposals_pending": "gauge",
    "etcd_server_proposals_failed_total": "counter",
    "etcd_server_version": "gauge",
    "etcd_mvcc_db_total_size_in_bytes": "gauge",
    "etcd_mvcc_db_total_size_in_use_in_bytes": "gauge",
    "etcd_debugging_mvcc_keys_total": "gauge",
    "etcd_disk_wal_fsync_duration_seconds": "histogram",
    "etcd_disk_backend_commit_duration_seconds": "histogram",
    "grpc_server_started_total": "counter",
    "grpc_server_handled_total": "counter",
    "grpc_server_msg_received_total": "counter",
    "grpc_server_msg_sent_total": "counter",
    "process_cpu_seconds_total": "counter",
    "process_resident_memory_bytes": "gauge",
    "process_virtual_memory_bytes": "gauge",
    "process_open_fds": "gauge",
    "process_max_fds": "gauge",
    "process_start_time_seconds": "gauge",
}

ETCD_DISK_BUCKETS = ["%g" % (0.001 * 2 ** i) for i in range(14)] + ["+Inf"]

FAILS = 0


def check(name, ok, reason=""):
    global FAILS
    if ok:
        print("ok %s" % name)
    else:
        FAILS += 1
        print("not ok %s (%s)" % (name, reason))


def parse(path):
    """Families by name (counters under their _total name, as exposed)."""
    with open(path) as f:
        text = f.read()
    fams = {}
    for fam in text_string_to_metric_families(text):
        name = fam.name
        # newer parsers drop a counter's _total suffix from the family name
        if fam.type == "counter" and not name.endswith("_total") and any(
                s.name == name + "_total" for s in fam.samples):
            name += "_total"
        fams[name] = fam
    return fams


def value(fams, family, sample, **labels):
    fam = fams.get(family)
    if fam is None:
        return None
    for s in fam.samples:
        if s.name == sample and all(s.labels.get(k) == v for k, v in labels.items()):
            return s.value
    return None


def main():
    before_path, after_path, puts = sys.argv[1], sys.argv[2], int(sys.argv[3])
    try:
        before, after = parse(before_path), parse(after_path)
    except Exception as e:  # the parser's errors name the bad line
        check("parse", False, "%s: %s" % (type(e).__name__, e))
        return 1
    check("parse", True)
    for name, typ in sorted(REQUIRED.items()):
        fam = after.get(name)
        check("type/" + name, fam is not None and fam.type == typ,
              "missing" if fam is None else "type %s, want %s" % (fam.type, typ))
    for h in ("etcd_disk_wal_fsync_duration_seconds", "etcd_disk_backend_commit_duration_seconds"):
        fam = after.get(h)
        les = [s.labels.get("le") for s in fam.samples if s.name == h + "_bucket"] if fam else []
        les = ["%g" % float(x) if x != "+Inf" else x for x in les]
        check("buckets/" + h, les == ETCD_DISK_BUCKETS, "le %s" % les)

    def delta(family, sample, **labels):
        b, a = value(before, family, sample, **labels), value(after, family, sample, **labels)
        return None if a is None else a - (b or 0)

    check("has-leader", value(after, "etcd_server_has_leader", "etcd_server_has_leader") == 1,
          "etcd_server_has_leader is not 1")
    for g in ("etcd_server_proposals_committed_total", "etcd_server_proposals_applied_total"):
        d = delta(g, g)
        check("moves/" + g, d is not None and d >= puts, "moved by %s, want >= %d" % (d, puts))
    d = delta("grpc_server_handled_total", "grpc_server_handled_total", grpc_method="Put",
              grpc_code="OK", grpc_service="etcdserverpb.KV", grpc_type="unary")
    check("moves/grpc_server_handled_total-Put-OK", d == puts, "moved by %s, want %d" % (d, puts))
    d = delta("grpc_server_started_total", "grpc_server_started_total", grpc_method="Put",
              grpc_service="etcdserverpb.KV", grpc_type="unary")
    check("moves/grpc_server_started_total-Put", d == puts, "moved by %s, want %d" % (d, puts))
    d = delta("etcd_disk_wal_fsync_duration_seconds", "etcd_disk_wal_fsync_duration_seconds_count")
    check("moves/wal_fsync_count", d is not None and d >= 1, "moved by %s" % d)
    d = delta("etcd_disk_backend_commit_duration_seconds",
              "etcd_disk_backend_commit_duration_seconds_count")
    check("moves/backend_commit_count", d is not None and d >= 1, "moved by %s" % d)
    keys = value(after, "etcd_debugging_mvcc_keys_total", "etcd_debugging_mvcc_keys_total")
    check("keys_total", keys is not None and keys >= 1, "keys_total %s" % keys)
    return 1 if FAILS else 0


if __name__ == "__main__":
    sys.exit(main())
