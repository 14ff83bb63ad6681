#!/usr/bin/env python3
"""splitkernel benchmarks: the same static binaries, with the same arguments,
run natively and on vNodes of a local cluster (tcp fabric), alternating
native and vNode runs so that both see the same machine load.

    bench/run.py [--build DIR] [--quick] [--reps N] [--only CASE,...]

`make bench` / `make bench-quick` run this. It starts its own local cluster
(a state directory of its own and a free port), stops it at the end even on
failure, and writes OUT.json, OUT.md (a Markdown table) and OUT.svg (a
gnuplot plot of the ratios), OUT being bench/results (bench/results-quick
with --quick) unless --out says otherwise.

What is compared with what:
  - Every workload (tests/workloads, the -static builds) prints its own
    timing of the kernel of its work on stderr when given --time
    ("NAME: time PHASE_ns=N", see workload.h), so process start-up is not in
    that number; the wall time of the whole run (splitctl run, or the
    native chroot) is measured here as well.
  - Native: the same binary in a chroot of a copy of the vNode image, inside
    mount and pid namespaces holding /proc, /dev and /tmp, set up once by
    scripts/run-native (which the integration tests' compare_native uses
    for every run) and entered with nsenter for each run. vNode:
    `splitctl run VNODE -- ...`.
  - Every run's stdout and exit status, and its stderr without the timing
    lines, must be the same natively and on the vNode; a difference is
    reported loudly, the row is marked FAILED and the exit status is 1.
  - Ratios are vNode / native of medians from the same run (for a
    throughput, native / vNode, so > 1 always means slower on the vNode).
    The spread is half the range of the repetitions, relative to their
    median.
  - Memory counters are the difference of `splitctl stats --json` (group
    "memory", summed over pComponents) before and after each vNode run.
"""

# The parts: cases.py (what is run and measured, the sizes), cluster.py (the
# local cluster and splitctl), native.py (the native side, through
# scripts/run-native), runner.py (the pairs of runs, their checks and the
# rows), report.py (the table and the plot); this file only reads the
# command line and writes the results.

import argparse
import datetime
import json
import os
import platform
import signal
import subprocess
import sys
from pathlib import Path

from cases import FULL, QUICK, WORKLOADS
from common import SOURCE, BenchError, log, loud
from report import LEGOOS, git_describe, report
from runner import Bench


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--build", type=Path, default=SOURCE / "build",
                        help="build directory with bin/ and workloads/ (default: build)")
    parser.add_argument("--quick", action="store_true", help="smaller sizes, fewer cases")
    parser.add_argument("--reps", type=int, help="repetitions of each case (default 3)")
    parser.add_argument("--only", help="comma-separated case keys or groups (compute, "
                        "syscalls, memory, files, startup, fault path)")
    parser.add_argument("--budget", type=float, help="seconds the cases may take in all")
    parser.add_argument("--run-timeout", type=float, default=600,
                        help="seconds one run may take before it is killed")
    parser.add_argument("--state", type=Path,
                        help="the cluster's state directory (default BUILD/bench-cluster)")
    parser.add_argument("--out", type=Path,
                        help="output path prefix (default bench/results, or "
                             "bench/results-quick with --quick)")
    parser.add_argument("--from-json", type=Path, metavar="JSON",
                        help="only write the table and the plot again from a results file")
    args = parser.parse_args()
    if args.from_json:
        return report(json.loads(args.from_json.read_text()),
                      args.out or args.from_json.with_suffix(""))
    args.build = args.build.resolve()
    args.state = (args.state or args.build / "bench-cluster").resolve()
    out = args.out or SOURCE / "bench" / ("results-quick" if args.quick else "results")
    cfg = dict(QUICK if args.quick else FULL)
    if args.budget:
        cfg["budget_s"] = args.budget

    for needed in ["bin/splitctl", "bin/fabric_bench"] + [f"workloads/{w}-static"
                                                          for w in WORKLOADS]:
        if not (args.build / needed).exists():
            sys.exit(f"bench: {args.build / needed} is missing: build first (make)")

    # SIGTERM and SIGHUP end the run like Ctrl-C: the cluster is stopped.
    def interrupted(signum, _frame):
        raise KeyboardInterrupt(f"signal {signum}")
    signal.signal(signal.SIGTERM, interrupted)
    signal.signal(signal.SIGHUP, interrupted)

    bench = Bench(args, cfg)
    mode = "quick" if args.quick else "full"
    log(f"bench: {mode} run, build {args.build}, results to {out}.{{json,md,svg}}")
    fabric = fault = None
    try:
        fabric, fault = bench.run()
    except KeyboardInterrupt:
        loud("interrupted: stopping the cluster; no results written")
        bench.teardown()
        return 130
    except (BenchError, subprocess.SubprocessError, OSError) as error:
        loud(f"bench failed: {error}")
        bench.teardown()
        return 1
    bench.teardown()

    meta = {
        "mode": mode,
        "date": datetime.date.today().isoformat(),
        "time": datetime.datetime.now().isoformat(timespec="seconds"),
        "host": platform.node(),
        "kernel": platform.release(),
        "cpus": os.cpu_count(),
        "commit": git_describe(),
        "fabric": "tcp",
        "duration_s": bench.elapsed(),
        "memory_remote": bench.memory_seen,
        "config": {k: v for k, v in cfg.items()},
        "legoos": LEGOOS,
    }
    results = {"meta": meta, "fabric": fabric, "fault_path": fault, "rows": bench.rows,
               "failed_checks": bench.failed_checks}
    out.parent.mkdir(parents=True, exist_ok=True)
    Path(f"{out}.json").write_text(json.dumps(results, indent=1) + "\n")
    report(results, out)
    log(f"bench: wrote {out}.json, {out}.md, {out}.svg in {bench.elapsed():.0f} s")
    if bench.failed_checks:
        loud(f"OUTPUT CHECKS FAILED for: {', '.join(bench.failed_checks)} "
             "(native and vNode runs differ; see above)")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
