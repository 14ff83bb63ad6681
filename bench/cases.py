"""The benchmark cases: what each runs (the same command natively and on a
vNode), which numbers it takes from a run, the targets they are held to,
and the sizes of a full and of a quick run."""

from common import MIB

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
