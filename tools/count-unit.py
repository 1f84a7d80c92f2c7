#!/usr/bin/env python3
"""Sum Criterion JSON reports of a meson build dir into "passed failed".

Every unit test executable writes <builddir>/unit-reports/<name>.json. An
executable that meson ran but that left no report (it crashed before Criterion
could write one) counts as one failure, read from meson's own test log.
"""
import json
import os
import sys

build = sys.argv[1]
reports = os.path.join(build, "unit-reports")
passed = failed = 0
seen = set()
for name in sorted(os.listdir(reports)) if os.path.isdir(reports) else []:
    if not name.endswith(".json"):
        continue
    seen.add(name[:-5])
    try:
        with open(os.path.join(reports, name)) as f:
            r = json.load(f)
    except (OSError, ValueError):
        failed += 1
        continue
    passed += int(r.get("passed", 0))
    failed += int(r.get("failed", 0)) + int(r.get("errored", 0))

log = os.path.join(build, "meson-logs", "testlog.json")
if os.path.exists(log):
    with open(log) as f:
        for line in f:
            try:
                t = json.loads(line)
            except ValueError:
                continue
            # meson may name it "project:suite / name": the report is "name"
            name = str(t.get("name", "")).split(" / ")[-1]
            if name not in seen and t.get("result") not in ("OK", "SKIP", "EXPECTEDFAIL"):
                failed += 1
print(passed, failed)
