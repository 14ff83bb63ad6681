"""Running the cases: each repetition is one native run and one vNode run
of the same command, alternating which goes first, checked against each
other; the repetitions of all cases are spread over the run in rounds
within the time budget, and each case's metrics become rows of the
results."""

import json
import math
import re
import statistics
import subprocess
import time

from cases import MEMORY_WORKLOADS, WORKLOADS, build_cases, fault_cases
from cluster import Cluster, counter_delta
from common import MIB, fmt_ns, fmt_value, log, loud
from native import Native, make_native_root

TIME_LINE = re.compile(r"^([a-z_]+): time ([a-z0-9_]+)_ns=([0-9]+)$")


class Run:
    """One run of a case on one side ("native" or "vnode"): its exit status,
    output and wall time, the phase times it printed on stderr ("NAME: time
    PHASE_ns=N", see tests/workloads/workload.h) and, on the vNode, the
    memory counters it caused."""

    def __init__(self, side, status, stdout, stderr, wall_ns):
        self.side = side
        self.status = status
        self.stdout = stdout
        self.stderr = stderr
        self.wall_ns = wall_ns
        self.times = {}
        rest = []
        for line in stderr.decode(errors="replace").splitlines():
            match = TIME_LINE.match(line)
            if match:
                self.times[match.group(2)] = int(match.group(3))
            else:
                rest.append(line)
        self.stderr_rest = "\n".join(rest)
        self.counters = None


def execute(argv, env, timeout):
    """Runs argv with stdin from /dev/null; (status, stdout, stderr, wall ns).
    A run that takes longer than timeout seconds is killed: status -1."""
    start = time.perf_counter_ns()
    try:
        result = subprocess.run(argv, env=env, stdin=subprocess.DEVNULL, capture_output=True,
                                timeout=timeout)
        status, out, err = result.returncode, result.stdout, result.stderr
    except subprocess.TimeoutExpired as expired:
        status, out, err = -1, expired.stdout or b"", (expired.stderr or b"") + (
            f"\n(bench: killed after {timeout} s)".encode())
    return status, out, err, time.perf_counter_ns() - start


def same_result(native, vnode):
    """'' when both runs agree, else what differs."""
    differs = []
    if native.status != vnode.status:
        differs.append(f"exit status {native.status} natively, {vnode.status} on the vNode")
    if native.stdout != vnode.stdout:
        differs.append("stdout:\n  native: " + native.stdout.decode(errors="replace")[:600] +
                       "\n  vnode:  " + vnode.stdout.decode(errors="replace")[:600])
    if native.stderr_rest != vnode.stderr_rest:
        differs.append("stderr (timing lines removed):\n  native: " + native.stderr_rest[:600] +
                       "\n  vnode:  " + vnode.stderr_rest[:600])
    if native.status != 0 and not differs:
        differs.append(f"both exited {native.status}: {native.stderr_rest[:600]}")
    return "\n".join(differs)


def summary(values):
    """Median and spread (half the range relative to the median, in %)."""
    if not values:
        return None
    median = statistics.median(values)
    spread = (max(values) - min(values)) / 2 / median * 100 if median else 0.0
    return {"median": median, "spread_pct": round(spread, 2), "values": values}


class Bench:
    def __init__(self, args, cfg):
        self.args = args
        self.cfg = cfg
        self.build = args.build
        self.rows = []
        self.failed_checks = []
        self.memory_seen = False
        self.start = time.monotonic()
        self.deadline = None  # set once the set-up is done: the budget is the cases'
        self.cluster = None
        self.native = None
        self.fault = None

    def elapsed(self):
        return time.monotonic() - self.start

    def progress(self, message):
        log(f"[{self.elapsed():6.1f}s] {message}")

    # One native run and one vNode run of the case; returns (native, vnode).
    def pair(self, case, order):
        runs = {}
        for side in order:
            if side == "native":
                status, out, err, ns = execute(self.native.argv(case.command), None,
                                               self.args.run_timeout)
                runs[side] = Run(side, status, out, err, ns)
            else:
                before = self.cluster.memory_stats() if case.counters else None
                argv = [str(self.cluster.bin / "splitctl"), "--monitor", self.cluster.monitor,
                        "run", case.vnode, "--", *case.command]
                status, out, err, ns = execute(argv, self.cluster.run_env, self.args.run_timeout)
                run = Run(side, status, out, err, ns)
                if case.counters:
                    run.counters = counter_delta(before, self.cluster.memory_stats())
                runs[side] = run
        return runs["native"], runs["vnode"]

    def run_rep(self, case, rep):
        """One alternating pair of the case (native first on even reps, the
        vNode first on odd ones), checked; False when the check failed."""
        if rep == 0:
            self.progress(f"{case.group}: {case.title}, {case.params or '-'}: "
                          f"{' '.join(case.command)} on {case.vnode}")
            if case.warmup:
                self.pair(case, ["native", "vnode"])
        order = ["native", "vnode"] if rep % 2 == 0 else ["vnode", "native"]
        t0 = time.monotonic()
        native, vnode = self.pair(case, order)
        case.pair_s = time.monotonic() - t0
        differs = same_result(native, vnode)
        if not differs:
            try:
                for metric in case.metrics:
                    metric.value(native), metric.value(vnode)
            except KeyError as missing:
                differs = f"a run printed no timing line for {missing}"
        if differs:
            case.failure = differs
            loud(f"CHECK FAILED: {case.key} ({' '.join(case.command)}): native and vNode "
                 f"runs differ:\n{differs}")
            return False
        case.pairs.append((native, vnode))
        first = case.metrics[0]
        nv, vv = first.value(native), first.value(vnode)
        self.progress(f"  {case.key} rep {rep + 1}/{case.reps}: {first.name}: native "
                      f"{fmt_value(nv, first.unit)}, vNode {fmt_value(vv, first.unit)}"
                      f" (wall {fmt_ns(native.wall_ns)} / {fmt_ns(vnode.wall_ns)})")
        if vnode.counters and any(vnode.counters.get(n) for n in
                                  ("fetched_pages", "evicted_pages", "zero_fills")):
            self.memory_seen = True
            c = vnode.counters
            self.progress(f"    memory: faults {c['faults']}, fetched {c['fetched_pages']}"
                          f" (+{c['prefetched_pages']} prefetched), evicted "
                          f"{c['evicted_pages']}, written back {c['written_back_pages']}")
        return True

    def run_cases(self, cases):
        """Round robin: one pair of every case, then a second of every case
        that wants more, and so on; a case whose next pair would not fit in
        the time left (as long as its last pair took) is left with fewer
        repetitions. Spreading a case's repetitions over the run also
        spreads them over the machine's load."""
        for case in cases:
            case.pairs, case.failure, case.pair_s = [], "", 0.0
        rounds = max(case.reps for case in cases)
        for rep in range(rounds):
            if rep > 0:
                self.progress(f"round {rep + 1}/{rounds} "
                              f"({self.deadline - time.monotonic():.0f} s of the budget left)")
            for case in cases:
                if rep >= case.reps or case.failure:
                    continue
                if rep > 0 and time.monotonic() + case.pair_s > self.deadline:
                    self.progress(f"  {case.key}: no time for rep {rep + 1} "
                                  f"(a pair takes {case.pair_s:.1f} s)")
                    continue
                self.run_rep(case, rep)
                if rep == 0 and case.key == "fault-random":
                    # Nothing was fetched before (every earlier vNode ran
                    # within its ExCache), so the pComponent's cumulative
                    # fetch latencies are this run's single-page faults.
                    self.fault = self.fault_path()
        for case in cases:
            self.record(case, case.pairs, case.failure)

    def record(self, case, pairs, failure):
        for index, metric in enumerate(case.metrics):
            row = {
                "case": case.key,
                "group": case.group,
                "title": case.title,
                "metric": metric.name,
                "params": metric.params or case.params,
                "command": case.command,
                "vnode": case.vnode,
                "unit": metric.unit,
                "reps": len(pairs),
                "check": "FAILED" if failure else "ok",
                "primary": index == 0,
            }
            if failure:
                row["failure"] = failure
            if pairs:
                native = summary([metric.value(n) for n, _ in pairs])
                vnode = summary([metric.value(v) for _, v in pairs])
                row["native"], row["vnode"] = native, vnode
                if metric.unit == "ns":
                    row["ratio"] = vnode["median"] / native["median"]
                else:
                    row["ratio"] = native["median"] / vnode["median"]
                row["over_native"] = vnode["median"] - native["median"]
            if metric.target:
                kind, value = metric.target
                row["target"] = {"kind": kind, "value": value}
                if pairs and not failure:
                    if kind == "ratio":
                        row["met"] = row["ratio"] <= value
                    else:
                        row["met"] = row["over_native"] <= value
            if case.counters and pairs:
                counters = [v.counters for _, v in pairs if v.counters]
                if counters:
                    row["counters"] = {
                        name: statistics.median([c[name] for c in counters
                                                 if c.get(name) is not None])
                        for name in counters[0] if any(c.get(name) is not None
                                                       for c in counters)}
            self.rows.append(row)
        if failure:
            self.failed_checks.append(case.key)

    # ------------------------------------------------------------ set-up

    def setup(self):
        cfg = self.cfg
        n, _, k = cfg["gemm"]
        work_mib = max(8 * (n * n + 2 * n * k) / MIB, cfg["hash_mib"])
        biggest = math.ceil(work_mib)
        # The pComponent's ExCache must hold the largest vNode cache; the
        # mComponent must hold a whole working set and then some.
        excache = f"{max(512, biggest + 256)}M"
        memory = f"{max(2048, 4 * biggest)}M"
        state = self.args.state
        if state.exists():
            Cluster.purge(self.build, state)
        self.cluster = Cluster(self.build, state, excache, memory)
        self.progress(f"starting a local cluster (state {state}, ExCache {excache}, "
                      f"mComponent {memory})")
        self.cluster.up()
        self.progress(f"cluster up at {self.cluster.monitor}")

        workloads = self.build / "workloads"
        native_root = state / "native-root"
        make_native_root(native_root, [workloads / f"{name}-static" for name in WORKLOADS])
        self.native = Native(native_root)
        self.native.start()

        # vNodes: `default` (made by local-cluster up) for compute, system
        # calls, files and start-up; one per ExCache fraction for memory; one
        # for the sequential scan of the fault path.
        vnodes = {}
        memory_mib = biggest + 512
        wanted = [("bench-scan", cfg["scan_cache_mib"])]
        for pct in cfg["cache_pcts"]:
            cache = math.ceil(work_mib * pct / 100)
            name = f"bench-mem{str(pct).replace('.', '_')}"
            vnodes[pct] = (name, cache)
            wanted.append((name, cache))
        self.cluster.wait_ready("default")
        for name in WORKLOADS:
            self.cluster.install("default", workloads / f"{name}-static",
                                 f"/usr/local/bin/{name}-static")
        for name, cache in wanted:
            t0 = time.monotonic()
            self.cluster.vnode_create(name, cache_mib=cache, memory_mib=memory_mib)
            self.cluster.wait_ready(name)
            for workload in MEMORY_WORKLOADS:
                self.cluster.install(name, workloads / f"{workload}-static",
                                     f"/usr/local/bin/{workload}-static")
            self.progress(f"vNode {name}: ExCache {cache} MiB, memory {memory_mib} MiB "
                          f"({time.monotonic() - t0:.1f} s)")
        self.work_mib = work_mib
        return vnodes

    def fabric(self):
        self.progress("fabric: raw round trips and throughput (fabric_bench, tcp)")
        result = subprocess.run(
            [str(self.build / "bin/fabric_bench"), "--rounds", str(self.cfg["fabric_rounds"]),
             "--bulk-mib", str(self.cfg["fabric_bulk_mib"])],
            capture_output=True, text=True, timeout=300)
        if result.returncode != 0:
            loud(f"fabric_bench failed: {result.stderr.strip()}")
            return None
        fabric = json.loads(result.stdout)
        self.progress(f"  4 KiB RPC p50 {fmt_ns(fabric['rpc_4k_p50_ns'])} p99 "
                      f"{fmt_ns(fabric['rpc_4k_p99_ns'])}; one-sided 4 KiB read p50 "
                      f"{fmt_ns(fabric['read_4k_p50_ns'])}; 1 MiB read "
                      f"{fabric['read_1m_mib_s']:.0f} MiB/s, write {fabric['write_1m_mib_s']:.0f}"
                      f" MiB/s, RPC {fabric['rpc_1m_mib_s']:.0f} MiB/s")
        return fabric

    def run(self):
        vnodes = self.setup()
        self.deadline = time.monotonic() + self.cfg["budget_s"]
        fabric = self.fabric()
        cases = fault_cases(self.cfg, "bench-scan") + build_cases(self.cfg, vnodes)
        if self.args.only:
            wanted = set(self.args.only.split(","))
            cases = [c for c in cases if c.key in wanted or c.group in wanted]
        if self.args.reps:
            for case in cases:
                case.reps = self.args.reps if case.group != "startup" else max(
                    self.args.reps, case.reps)
        self.run_cases(cases)
        return fabric, self.fault

    def fault_path(self):
        stats = self.cluster.memory_stats()
        if not stats:
            return None
        return {name: stats.get(name) for name in
                ("fetch_count", "fetch_p50_ns", "fetch_p99_ns", "fetch_mean_ns", "fault_count",
                 "fault_p50_ns", "fault_p99_ns", "zero_fill_count", "zero_fill_p50_ns",
                 "zero_fill_p99_ns", "fetched_pages", "prefetched_pages")}

    def teardown(self):
        if self.native is not None:
            self.native.stop()
        if self.cluster is not None and self.cluster.monitor is not None:
            self.progress("stopping the cluster")
            self.cluster.down()
        elif self.cluster is not None:
            self.cluster.down()
