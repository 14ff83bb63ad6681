"""The local cluster the benchmarks run on (scripts/local-cluster with a
state directory of its own and a free port), the commands they send it
through splitctl, and the memory counters of its pComponents."""

import hashlib
import json
import os
import socket
import subprocess
import time
from pathlib import Path

from common import SOURCE, BenchError


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

    @staticmethod
    def purge(build, state):
        """Stops the cluster an earlier run may have left in STATE and
        removes its state."""
        subprocess.run([str(SOURCE / "scripts/local-cluster"), "down", "--purge",
                        "--state", str(state)],
                       env=dict(os.environ, SK_BUILD_DIR=str(build)), capture_output=True)

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


COUNTER_NAMES = ["faults", "zero_fills", "fetched_pages", "prefetched_pages", "evicted_pages",
                 "written_back_pages", "parked_faults"]


def counter_delta(before, after):
    """The memory counters one run caused: the difference of two
    memory_stats(), with that run's fault latency percentiles and mean
    fetch time; None when either is None."""
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
