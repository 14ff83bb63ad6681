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
    mount and pid namespaces holding /proc, /dev and /tmp as the integration
    tests' compare_native does (tests/integration/lib.sh), entered with
    nsenter for each run. vNode: `splitctl run VNODE -- ...`.
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

import argparse
import ctypes
import datetime
import hashlib
import json
import math
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SOURCE = Path(__file__).resolve().parent.parent
NATIVE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
MIB = 1 << 20
TIME_LINE = re.compile(r"^([a-z_]+): time ([a-z0-9_]+)_ns=([0-9]+)$")

# The sizes of a full run and of a quick one. The GEMM is C = A (N x K) * B
# (K x N): a small N and a long K give a large working set for little
# arithmetic, and each of the N / BLOCK row blocks sweeps all of B, the reuse
# the ExCache has to hold (tests/workloads/matmul.c).
FULL = {
    "reps": 3,
    "budget_s": 1080,
    "pi_samples": 400_000_000,
    "gemm": (256, 64, 131072),  # N, BLOCK, K: 512.5 MiB
    "hash_mib": 512,
    "hash_probes": 100_000,
    "cache_pcts": [100, 50, 25, 12.5],
    "scan_mib": 256,
    "scan_cache_mib": 64,
    "scan_passes": 3,
    "random_probes": 50_000,
    "getppid_calls": 5_000_000,
    "mmap_calls": 20_000,
    "seq_mib": 256,
    "small_files": 10_000,
    "startup_reps": 10,
    "fabric_rounds": 5000,
    "fabric_bulk_mib": 256,
}
QUICK = {
    "reps": 3,
    "budget_s": 110,
    "pi_samples": 100_000_000,
    "gemm": (128, 64, 16384),  # 32.1 MiB
    "hash_mib": 32,
    "hash_probes": 20_000,
    "cache_pcts": [100, 25],
    "scan_mib": 32,
    "scan_cache_mib": 8,
    "scan_passes": 3,
    "random_probes": 20_000,
    "getppid_calls": 1_000_000,
    "mmap_calls": 5_000,
    "seq_mib": 32,
    "small_files": 1000,
    "startup_reps": 5,
    "fabric_rounds": 2000,
    "fabric_bulk_mib": 64,
}

WORKLOADS = ["pi", "matmul", "memtouch", "hashprobe", "syscalls", "filebench"]
MEMORY_WORKLOADS = ["matmul", "hashprobe", "memtouch"]

# Published LegoOS numbers (OSDI'18) the README sets ours against.
LEGOOS = {
    "fetch_4k_us": 6.5,
    "tensorflow_25pct": 1.68,
    "phoenix_25pct": 1.34,
}


def log(message):
    print(message, flush=True)


def loud(message):
    bar = "!" * 78
    print(f"{bar}\n!!! {message}\n{bar}", file=sys.stderr, flush=True)


class BenchError(Exception):
    pass


# ---------------------------------------------------------------- numbers


def fmt_ns(ns):
    if ns is None:
        return "—"
    if ns >= 10e9:
        return f"{ns / 1e9:.1f} s"
    if ns >= 1e9:
        return f"{ns / 1e9:.2f} s"
    if ns >= 1e6:
        return f"{ns / 1e6:.1f} ms"
    if ns >= 1e4:
        return f"{ns / 1e3:.1f} µs"
    if ns >= 1e3:
        return f"{ns / 1e3:.2f} µs"
    return f"{ns:.0f} ns"


def fmt_value(value, unit):
    if value is None:
        return "—"
    if unit == "ns":
        return fmt_ns(value)
    if value >= 1e6:
        return f"{value / 1e6:.2f} M{unit}"
    if value >= 1e4:
        return f"{value / 1e3:.1f} k{unit}"
    return f"{value:.1f} {unit}"


def summary(values):
    """Median and spread (half the range relative to the median, in %)."""
    if not values:
        return None
    median = statistics.median(values)
    spread = (max(values) - min(values)) / 2 / median * 100 if median else 0.0
    return {"median": median, "spread_pct": round(spread, 2), "values": values}


def histogram_percentile(buckets, fraction):
    """Histogram::percentile (kernel/histogram.h) over {upper bound: count}."""
    total = sum(buckets.values())
    if total == 0:
        return None
    target = fraction * total
    seen = 0
    for high in sorted(buckets):
        count = buckets[high]
        if count > 0 and seen + count >= target:
            low = 0 if high == 2 else high // 2
            return low + (high - low) * ((target - seen) / count)
        seen += count
    return max(buckets)


# ---------------------------------------------------------------- cluster


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Cluster:
    """A local cluster of our own (scripts/local-cluster with --state)."""

    def __init__(self, build, state, excache, memory):
        self.build = build
        self.bin = build / "bin"
        self.state = state
        self.port = free_port()
        self.excache = excache
        self.memory = memory
        self.monitor = None
        self.env = dict(os.environ, SK_BUILD_DIR=str(build))
        # A vNode program gets TERM and LANG from splitctl when it has them;
        # the native runs get neither (env -i), so neither does splitctl.
        self.run_env = {k: v for k, v in self.env.items() if k not in ("TERM", "LANG")}

    def script(self, *args, check=True):
        command = [str(SOURCE / "scripts/local-cluster"), *args, "--state", str(self.state)]
        result = subprocess.run(command, env=self.env, capture_output=True, text=True)
        if check and result.returncode != 0:
            raise BenchError(
                f"local-cluster {args[0]} failed ({result.returncode}):\n"
                f"{result.stdout}{result.stderr}")
        return result

    def up(self):
        self.state.mkdir(parents=True, exist_ok=True)
        # vNode programs run as unprivileged host uids and must be able to
        # walk into the state directory.
        os.chmod(self.state, 0o755)
        result = self.script("up", "--port", str(self.port), "--excache", self.excache,
                             "--memory", self.memory)
        last = result.stdout.strip().splitlines()[-1]
        if not last.startswith("SPLIT_MONITOR="):
            raise BenchError(f"local-cluster up printed '{last}' last")
        self.monitor = last.split("=", 1)[1]

    def down(self):
        self.script("down", "--purge", check=False)
        # local-cluster keeps the pComponents' vNode root mount points in a
        # directory of their own (see run_dir there); remove it when `down`
        # left it empty (never anything but empty directories).
        digest = hashlib.md5(str(self.state.resolve()).encode()).hexdigest()[:12]
        run_dir = Path(os.environ.get("SPLIT_RUN", "/run/splitkernel")) / f"local-{digest}"
        if run_dir.is_dir():
            for path, _dirs, _files in sorted(os.walk(run_dir), key=lambda w: -len(w[0])):
                try:
                    os.rmdir(path)
                except OSError:
                    pass

    def splitctl(self, *args, stdin=None, timeout=120):
        command = [str(self.bin / "splitctl"), "--monitor", self.monitor, *args]
        return subprocess.run(command, env=self.run_env, stdin=stdin, capture_output=True,
                              timeout=timeout)

    def json(self, *args):
        result = self.splitctl("--json", *args)
        if result.returncode != 0:
            raise BenchError(f"splitctl {' '.join(args)}: {result.stderr.decode().strip()}")
        return json.loads(result.stdout)

    def vnode_create(self, name, cache_mib=None, memory_mib=None):
        args = ["vnode", "create", name]
        if cache_mib:
            args += ["--cache", f"{cache_mib}M"]
        if memory_mib:
            args += ["--memory", f"{memory_mib}M"]
        result = self.splitctl(*args, timeout=300)
        if result.returncode != 0:
            raise BenchError(f"splitctl {' '.join(args)}: {result.stderr.decode().strip()}")

    def wait_ready(self, name, seconds=60):
        deadline = time.monotonic() + seconds
        while True:
            result = self.splitctl("run", name, "--", "true", stdin=subprocess.DEVNULL)
            if result.returncode == 0:
                return
            if time.monotonic() > deadline:
                raise BenchError(f"vNode {name} does not run 'true': "
                                 f"{result.stderr.decode().strip()}")
            time.sleep(0.5)

    def install(self, vnode, host_file, path):
        """Copies a binary into the vNode the way a user would: through it."""
        with open(host_file, "rb") as f:
            result = self.splitctl("run", vnode, "--", "sh", "-c",
                                   f"cat > '{path}' && chmod 755 '{path}'", stdin=f)
        if result.returncode != 0:
            raise BenchError(f"installing {host_file} on {vnode}: "
                             f"{result.stderr.decode().strip()}")

    def memory_stats(self):
        """The "memory" counters summed over the pComponents, or None when
        no pComponent reports any (the memory manager is not attached)."""
        total = None
        for node in self.json("stats"):
            group = node.get("counters", {}).get("memory")
            if group is None:
                continue
            total = total or {}
            for name, value in group.items():
                total[name] = total.get(name, 0) + value
        return total


# ---------------------------------------------------------------- native side


NATIVE_SETUP = r'''
root=$1
mount -t proc proc "$root/proc"
mount -t tmpfs -o mode=755,size=1m tmpfs "$root/dev"
for name in null zero full random urandom tty; do
  : > "$root/dev/$name"
  mount --bind "/dev/$name" "$root/dev/$name"
done
ln -s /proc/self/fd "$root/dev/fd"
ln -s /proc/self/fd/0 "$root/dev/stdin"
ln -s /proc/self/fd/1 "$root/dev/stdout"
ln -s /proc/self/fd/2 "$root/dev/stderr"
mkdir -m 1777 "$root/dev/shm"
mount -t tmpfs -o mode=1777 tmpfs "$root/dev/shm"
mount -t tmpfs -o mode=1777 tmpfs "$root/tmp"
echo ready
exec sleep infinity
'''


class Native:
    """Runs programs natively in a chroot of a copy of the image, in mount
    and pid namespaces set up once (as compare_native sets them up for each
    run) and entered with nsenter for each run."""

    def __init__(self, root):
        self.root = root
        self.helper = None
        self.target = None

    def start(self):
        # The namespaces die with this script, however it ends: unshare gets
        # SIGKILL when we die, and --kill-child passes that on.
        libc = ctypes.CDLL(None, use_errno=True)
        pr_set_pdeathsig = 1

        def die_with_parent():
            libc.prctl(pr_set_pdeathsig, signal.SIGKILL)

        self.helper = subprocess.Popen(
            ["unshare", "--mount", "--propagation", "private", "--pid", "--fork",
             "--kill-child", "bash", "-c", NATIVE_SETUP, "native", str(self.root)],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, text=True,
            preexec_fn=die_with_parent)
        line = self.helper.stdout.readline().strip()
        if line != "ready":
            raise BenchError("the native namespaces could not be set up")
        children = Path(f"/proc/{self.helper.pid}/task/{self.helper.pid}/children")
        self.target = int(children.read_text().split()[0])

    def argv(self, command):
        return ["nsenter", "--target", str(self.target), "--mount", "--pid", "--",
                "chroot", str(self.root), "env", "--default-signal", "-i",
                f"PATH={NATIVE_PATH}", "HOME=/root", *command]

    def stop(self):
        if self.helper is not None and self.helper.poll() is None:
            self.helper.kill()
            self.helper.wait()


# ---------------------------------------------------------------- runs


class Run:
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


COUNTER_NAMES = ["faults", "zero_fills", "fetched_pages", "prefetched_pages", "evicted_pages",
                 "written_back_pages", "parked_faults"]


def counter_delta(before, after):
    if before is None or after is None:
        return None
    delta = {name: after.get(name, 0) - before.get(name, 0) for name in COUNTER_NAMES}
    # The fault-latency histogram's buckets of this run, and the mean time of
    # this run's fetches (from the cumulative means and counts).
    buckets = {}
    for name, value in after.items():
        if name.startswith("fault_ns_lt_"):
            high = int(name[len("fault_ns_lt_"):])
            diff = value - before.get(name, 0)
            if diff > 0:
                buckets[high] = diff
    delta["fault_p50_ns"] = histogram_percentile(buckets, 0.5)
    delta["fault_p99_ns"] = histogram_percentile(buckets, 0.99)
    count = after.get("fetch_count", 0) - before.get("fetch_count", 0)
    if count > 0:
        total = (after.get("fetch_mean_ns", 0) * after.get("fetch_count", 0) -
                 before.get("fetch_mean_ns", 0) * before.get("fetch_count", 0))
        delta["fetch_count"] = count
        delta["fetch_mean_ns"] = total / count
    return delta


# ---------------------------------------------------------------- cases


class Metric:
    """One number taken from each run of a case, one row of the table.
    value(run) is ns (unit "ns": lower is better) or a rate (higher is
    better). target: ("ratio", X) met when the ratio is at most X;
    ("over_ns", X) met when the vNode median is at most X ns above native."""

    def __init__(self, name, unit, value, target=None, params=""):
        self.name = name
        self.unit = unit
        self.value = value
        self.target = target
        self.params = params


class Case:
    def __init__(self, key, group, title, command, vnode, metrics, reps,
                 warmup=False, counters=False, params=""):
        self.key = key
        self.group = group
        self.title = title
        self.command = command
        self.vnode = vnode
        self.metrics = metrics
        self.reps = reps
        self.warmup = warmup
        self.counters = counters
        self.params = params


def phase(*names):
    return lambda run: sum(run.times[name] for name in names)


def per_call(name, calls):
    return lambda run: run.times[name] / calls


def rate(amount, *names):
    """amount per second of the phases' time."""
    return lambda run: amount / (max(1, sum(run.times[n] for n in names)) / 1e9)


def wall(run):
    return run.wall_ns


def build_cases(cfg, vnodes):
    cases = []
    reps = cfg["reps"]
    bin_ = "/usr/local/bin/"

    # 1. Compute.
    for threads in (1, 2):
        cases.append(Case(
            f"pi-{threads}t", "compute", f"Monte Carlo π, {threads} thread(s)",
            [bin_ + "pi-static", "--time", str(cfg["pi_samples"]), str(threads)], "default",
            [Metric("kernel time", "ns", phase("count"), ("ratio", 1.02)),
             Metric("wall time", "ns", wall)],
            reps, warmup=True,
            params=f"{cfg['pi_samples'] / 1e6:.0f}M samples"))

    # 4. System calls.
    calls, maps = cfg["getppid_calls"], cfg["mmap_calls"]
    cases.append(Case(
        "syscalls", "syscalls", "system calls",
        [bin_ + "syscalls-static", "--time", str(calls), str(maps)], "default",
        [Metric("getppid (not intercepted), per call", "ns", per_call("getppid", calls),
                ("over_ns", 50), params=f"{calls / 1e6:.0f}M calls"),
         Metric("mmap+munmap 4 KiB (intercepted), per pair", "ns",
                per_call("mmap_munmap", maps), params=f"{maps} pairs")],
        reps, warmup=True))

    # 2. Memory: GEMM and hash probes with the ExCache at a fraction of the
    # working set, one vNode per fraction.
    n, block, k = cfg["gemm"]
    gemm_bytes = 8 * (n * n + 2 * n * k)
    hash_bytes = cfg["hash_mib"] * MIB
    gemm_targets = {100: 1.05, 50: 1.2, 25: 1.5}
    for pct in cfg["cache_pcts"]:
        vnode, cache_mib = vnodes[pct]
        cases.append(Case(
            f"gemm-{pct}", "memory", f"GEMM, ExCache {pct:g}%",
            [bin_ + "matmul-static", "--time", str(n), str(block), str(k)], vnode,
            [Metric("init + multiply", "ns", phase("init", "multiply"),
                    ("ratio", gemm_targets[pct]) if pct in gemm_targets else None),
             Metric("wall time", "ns", wall)],
            reps, counters=True,
            params=f"{n}x{k}·{k}x{n}, {gemm_bytes / MIB:.1f} MiB, cache {cache_mib} MiB"))
        touch_mib = cfg["hash_mib"]
        cases.append(Case(
            f"memtouch-{pct}", "memory", f"memory toucher, ExCache {pct:g}%",
            [bin_ + "memtouch-static", "--time", str(touch_mib), "2"], vnode,
            [Metric("touch + 1 pass + recheck", "ns", phase("pass0", "pass1", "recheck")),
             Metric("wall time", "ns", wall)],
            reps, counters=True,
            params=f"{touch_mib} MiB, 2 passes, cache {cache_mib} MiB"))
        cases.append(Case(
            f"hash-{pct}", "memory", f"hash probes, ExCache {pct:g}%",
            [bin_ + "hashprobe-static", "--time", str(cfg["hash_mib"]), str(cfg["hash_probes"])],
            vnode,
            [Metric("build + probes", "ns", phase("build", "probe")),
             Metric("probes alone", "ns", phase("probe")),
             Metric("wall time", "ns", wall)],
            reps, counters=True,
            params=f"{cfg['hash_mib']} MiB table, {cfg['hash_probes'] // 1000}k probes, "
                   f"cache {cache_mib} MiB"))

    # 5. Files, in /root: the vNode's goes through FUSE to the sComponent's
    # disk; the native one is the image copy's, on the same disk.
    seq, small = cfg["seq_mib"], cfg["small_files"]
    cases.append(Case(
        "files-seq", "files", "sequential file",
        [bin_ + "filebench-static", "--time", "seq", "/root", str(seq)], "default",
        [Metric("write + fsync", "MiB/s", rate(seq, "write"), params=f"{seq} MiB, 1 MiB writes"),
         Metric("read", "MiB/s", rate(seq, "read"), params=f"{seq} MiB, 1 MiB reads")],
        reps))
    cases.append(Case(
        "files-small", "files", "small files",
        [bin_ + "filebench-static", "--time", "small", "/root", str(small)], "default",
        [Metric("create+stat+read+unlink", "files/s",
                rate(small, "create", "stat", "read", "unlink"), params=f"{small} files"),
         Metric("create", "files/s", rate(small, "create"), params=f"{small} files"),
         Metric("stat", "files/s", rate(small, "stat"), params=f"{small} files"),
         Metric("read", "files/s", rate(small, "read"), params=f"{small} files"),
         Metric("unlink", "files/s", rate(small, "unlink"), params=f"{small} files")],
        reps))

    # 6. Start-up: the whole run's wall time is the number.
    for key, command, title in (("true", ["/bin/true"], "/bin/true"),
                                ("python", ["python3", "-c", "pass"], "python3 -c pass")):
        cases.append(Case(
            f"startup-{key}", "startup", f"start-up: {title}", command, "default",
            [Metric("wall time", "ns", wall, ("ratio", 3.0))],
            cfg["startup_reps"], warmup=True))
    return cases


def fault_cases(cfg, vnode):
    """3. The fault path, first of all the cases: random probes of a table
    four times the ExCache (each miss is one remote fault of one page, plus
    the eviction that makes room for it), then a sequential scan (faults
    with prefetch windows)."""
    mib, passes, cache = cfg["scan_mib"], cfg["scan_passes"], cfg["scan_cache_mib"]
    pages = mib * MIB // 4096
    later = [f"pass{p}" for p in range(1, passes)]
    probes = cfg["random_probes"]
    return [
        Case("fault-random", "fault path", "random faults (hashprobe)",
             ["/usr/local/bin/hashprobe-static", "--time", str(mib), str(probes)], vnode,
             [Metric("probes, per probe", "ns", per_call("probe", probes)),
              Metric("build (sequential first touch)", "pages/s", rate(pages, "build"))],
             cfg["reps"], counters=True,
             params=f"{mib} MiB table, {probes // 1000}k probes, cache {cache} MiB"),
        Case("scan", "fault path", "sequential scan (memtouch)",
             ["/usr/local/bin/memtouch-static", "--time", str(mib), str(passes)], vnode,
             [Metric("first touch (pass 0)", "pages/s", rate(pages, "pass0")),
              Metric("later passes", "pages/s", rate(pages * len(later), *later))],
             cfg["reps"], counters=True,
             params=f"{mib} MiB, {passes} passes, cache {cache} MiB"),
    ]


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
            subprocess.run([str(SOURCE / "scripts/local-cluster"), "down", "--purge",
                            "--state", str(state)],
                           env=dict(os.environ, SK_BUILD_DIR=str(self.build)),
                           capture_output=True)
        self.cluster = Cluster(self.build, state, excache, memory)
        self.progress(f"starting a local cluster (state {state}, ExCache {excache}, "
                      f"mComponent {memory})")
        self.cluster.up()
        self.progress(f"cluster up at {self.cluster.monitor}")

        # The native root: a copy of the image with the workloads in it.
        rootfs = subprocess.run([str(SOURCE / "scripts/build-image"), "--print-path"],
                                capture_output=True, text=True, check=True).stdout.split()[-1]
        native_root = state / "native-root"
        subprocess.run(["cp", "-a", rootfs, str(native_root)], check=True)
        workloads = self.build / "workloads"
        for name in WORKLOADS:
            shutil.copy2(workloads / f"{name}-static", native_root / "usr/local/bin")
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


# ---------------------------------------------------------------- reports


def git_describe():
    def git(*args):
        r = subprocess.run(["git", "-C", str(SOURCE), *args], capture_output=True, text=True)
        return r.stdout.strip() if r.returncode == 0 else ""
    commit = git("rev-parse", "--short", "HEAD")
    dirty = git("status", "--porcelain", "--untracked-files=no")
    return commit + ("+dirty" if dirty else "")


def target_text(row):
    target = row.get("target")
    if not target:
        return "—"
    if target["kind"] == "ratio":
        return f"≤ {target['value']:g}x"
    return f"≤ +{target['value']:g} ns"


def met_text(row):
    if row["check"] == "FAILED":
        return "**CHECK FAILED**"
    if "met" not in row:
        return "—"
    return "yes" if row["met"] else "**no**"


def side_text(row, side):
    s = row.get(side)
    if not s:
        return "—"
    return f"{fmt_value(s['median'], row['unit'])} ±{s['spread_pct']:.0f}%"


def counters_text(row):
    c = row.get("counters")
    if not c:
        return ""
    parts = []
    for name, label in (("fetched_pages", "fetched"), ("prefetched_pages", "prefetched"),
                        ("evicted_pages", "evicted"), ("written_back_pages", "written back")):
        if c.get(name):
            parts.append(f"{label} {c[name]:,.0f}")
    if c.get("faults"):
        parts.append(f"faults {c['faults']:,.0f} (zero-fill {c.get('zero_fills', 0):,.0f}; "
                     f"p50 {fmt_ns(c.get('fault_p50_ns'))}, p99 {fmt_ns(c.get('fault_p99_ns'))})")
    return ", ".join(parts) if parts else "no remote paging"


def sequential_fetch(rows):
    """Mean fetch time per page of the sequential scan (its faults fetch
    prefetch windows): (fetch_mean * fetch_count) / fetched_pages, and the
    mean window."""
    for row in rows:
        c = row.get("counters") or {}
        if row["case"] == "scan" and c.get("fetch_count") and c.get("fetched_pages"):
            total = c["fetch_mean_ns"] * c["fetch_count"]
            return total / c["fetched_pages"], c["fetched_pages"] / c["fetch_count"]
    return None, None


def markdown(meta, rows, fabric, fault):
    out = []
    out.append(f"Benchmarks of splitkernel, {meta['mode']} run, {meta['date']} on {meta['host']} "
               f"({meta['cpus']} CPUs, Linux {meta['kernel']}), commit {meta['commit']}, "
               f"local cluster on the tcp fabric, {meta['duration_s']:.0f} s.")
    out.append("")
    if not meta["memory_remote"]:
        out.append("**vNode memory was local in this run** (the pComponent reported no remote "
                   "paging: no pages fetched, evicted or zero-filled through the memory "
                   "manager), so the memory and fault-path rows measure a vNode without "
                   "disaggregated memory.")
        out.append("")
    out.append("Median of the repetitions ± half their range; ratio = vNode / native time "
               "(native / vNode for rates), so > 1 is slower on the vNode; counters are per "
               "vNode run (medians).")
    out.append("")
    out.append("| case | parameters | metric | native | vNode | ratio | target | met | reps | "
               "counters |")
    out.append("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for row in rows:
        ratio = f"{row['ratio']:.2f}x" if "ratio" in row else "—"
        if row.get("target", {}).get("kind") == "over_ns" and "over_native" in row:
            ratio += f" ({row['over_native']:+.0f} ns)"
        out.append(f"| {row['title']} | {row['params']} | {row['metric']} | "
                   f"{side_text(row, 'native')} | {side_text(row, 'vnode')} | {ratio} | "
                   f"{target_text(row)} | {met_text(row)} | {row['reps']} | "
                   f"{counters_text(row)} |")
    out.append("")
    missed = [r for r in rows if r.get("met") is False]
    failed = [r for r in rows if r["check"] == "FAILED"]
    if missed:
        out.append("Targets missed: " + "; ".join(
            f"{r['title']} / {r['metric']} ({r['ratio']:.2f}x, target {target_text(r)})"
            for r in missed) + ".")
        out.append("")
    if failed:
        out.append("**Output checks FAILED** (native and vNode runs differ): " +
                   ", ".join(sorted({r['case'] for r in failed})) + ".")
        out.append("")
    out.append("Fault path and fabric (one-sided/RPC on the tcp fabric, loopback, "
               "one operation in flight):")
    out.append("")
    out.append("| quantity | p50 | p99 | mean | compare |")
    out.append("| --- | --- | --- | --- | --- |")
    if fault and fault.get("fetch_count"):
        out.append(f"| remote fault service time, random access: fault → page fetched and "
                   f"installed ({fault['fetch_count']:,} faults of the first random-faults run)"
                   f" | {fmt_ns(fault['fetch_p50_ns'])} | "
                   f"{fmt_ns(fault['fetch_p99_ns'])} | {fmt_ns(fault['fetch_mean_ns'])} | "
                   f"LegoOS: {LEGOOS['fetch_4k_us']} µs per 4 KiB fetch (InfiniBand) |")
    else:
        out.append("| remote fault service time | — | — | — | "
                   "no remote fetches in this run |")
    if fault and fault.get("zero_fill_count"):
        out.append(f"| first touch (zero-filled here, no round trip), "
                   f"{fault['zero_fill_count']:,} faults | {fmt_ns(fault['zero_fill_p50_ns'])}"
                   f" | {fmt_ns(fault['zero_fill_p99_ns'])} | — | |")
    per_page, window = sequential_fetch(rows)
    if per_page:
        out.append(f"| sequential scan, fetch time per page (prefetch windows of "
                   f"{window:.0f} pages on average) | — | — | {fmt_ns(per_page)} | |")
    if fabric:
        out.append(f"| fabric 4 KiB RPC round trip (P2M_PAGE_READ shape) | "
                   f"{fmt_ns(fabric['rpc_4k_p50_ns'])} | {fmt_ns(fabric['rpc_4k_p99_ns'])} | "
                   f"{fmt_ns(fabric['rpc_4k_mean_ns'])} | |")
        out.append(f"| fabric one-sided 4 KiB read | {fmt_ns(fabric['read_4k_p50_ns'])} | "
                   f"{fmt_ns(fabric['read_4k_p99_ns'])} | {fmt_ns(fabric['read_4k_mean_ns'])} | |")
        out.append(f"| fabric 1 MiB one-sided read / write / RPC | "
                   f"{fabric['read_1m_mib_s']:.0f} / {fabric['write_1m_mib_s']:.0f} / "
                   f"{fabric['rpc_1m_mib_s']:.0f} MiB/s | | | the files rows' yardstick |")
    out.append("")
    return "\n".join(out)


def plot(rows, svg_path, title):
    """A gnuplot SVG of each row's ratio (log scale, bars from 1), with the
    targets as marks."""
    gnuplot = shutil.which("gnuplot")
    if gnuplot is None:
        loud("gnuplot is missing (scripts/install-deps installs gnuplot-nox): no plot")
        return False
    plotted = [r for r in rows if "ratio" in r and (r["primary"] or r["metric"] != "wall time")]
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "ratios.dat"
        with open(data, "w") as f:
            for i, r in enumerate(plotted):
                label = f"{r['case']}: {r['metric']}".replace('"', "'")[:44]
                target = "NaN"
                if r.get("target", {}).get("kind") == "ratio":
                    target = str(r["target"]["value"])
                color = "0xc0392b" if r.get("met") is False else "0x2e86c1"
                f.write(f"{i} {max(r['ratio'], 1e-3):.6g} {target} {color} \"{label}\"\n")
        ymax = max([r["ratio"] for r in plotted] + [3.5]) * 1.5
        ymin = min([r["ratio"] for r in plotted] + [0.8]) / 1.25
        tics = ", ".join(f'"{t:g}" {t:g}' for t in (0.25, 0.5, 0.75, 1, 1.5, 2, 3, 5, 10, 20, 50,
                                                    100, 200, 500, 1000)
                         if ymin <= t <= ymax)
        script = f'''
set terminal svg size {max(900, 34 * len(plotted) + 200)},680 dynamic font "sans,11"
set output "{svg_path}"
set title "{title}"
set logscale y
set yrange [{ymin:.3g}:{ymax:.3g}]
set ytics ({tics})
set ylabel "vNode / native (time; native / vNode for rates)"
set xrange [-0.7:{len(plotted) - 0.3}]
set xtics rotate by -50 left noenhanced font ",9"
set bmargin 15
set grid ytics
set key top left
set style fill solid 0.85 noborder
plot "{data}" using 1:(sqrt($2)):($1-0.38):($1+0.38):(1):2:4:xtic(5) \\
       with boxxyerror lc rgb variable notitle, \\
     "{data}" using 1:3 with points pt 9 ps 1.3 lc rgb "black" title "target", \\
     1 with lines lc rgb "gray40" dt 2 title "native"
'''
        result = subprocess.run([gnuplot], input=script, text=True, capture_output=True)
        if result.returncode != 0:
            loud(f"gnuplot failed: {result.stderr.strip()}")
            return False
    return True


def report(results, out):
    """Writes OUT.md and OUT.svg from the results and prints the table."""
    meta = results["meta"]
    table = markdown(meta, results["rows"], results["fabric"], results["fault_path"])
    Path(f"{out}.md").write_text(table)
    plot(results["rows"], f"{out}.svg",
         f"splitkernel: vNode vs native, {meta['mode']} run, {meta['date']}, {meta['host']}")
    log("")
    log(table)
    return 1 if results.get("failed_checks") else 0


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
