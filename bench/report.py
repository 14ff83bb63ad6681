"""The reports: the Markdown table (OUT.md), the gnuplot plot of the ratios
(OUT.svg) and the table printed at the end, all from the results that
OUT.json holds."""

import shutil
import subprocess
import tempfile
from pathlib import Path

from common import SOURCE, fmt_ns, fmt_value, log, loud

# Published LegoOS numbers (OSDI'18) the README sets ours against.
LEGOOS = {
    "fetch_4k_us": 6.5,
    "tensorflow_25pct": 1.68,
    "phoenix_25pct": 1.34,
}


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
