"""What every part of the benchmarks shares: where the source tree is, the
progress and alarm lines, the one error type, and how numbers are printed."""

import sys
from pathlib import Path

SOURCE = Path(__file__).resolve().parent.parent
MIB = 1 << 20


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
