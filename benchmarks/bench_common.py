"""Helpers shared by the performance benchmarks (``bench_*.py``)."""

from __future__ import annotations

import os

import torch


def table(rows: list[list[str]], header: list[str]) -> str:
    """A right-aligned plain-text table."""
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]

    def line(row: list[str]) -> str:
        return "  ".join(str(x).rjust(w) for x, w in zip(row, widths))

    return "\n".join([line(header), line(["-" * w for w in widths]), *map(line, rows)])


def warn_if_oversubscribed() -> None:
    """Multi-threaded LAPACK/BLAS calls stall when other processes hold the cores."""
    load, cores = os.getloadavg()[0], os.cpu_count() or 1
    if load > cores and torch.get_num_threads() > 1:
        print(f"WARNING: load average {load:.1f} on {cores} cores with "
              f"{torch.get_num_threads()} torch threads: timings of small eigen/SVD calls "
              "stall while threads wait for each other; consider --threads 1")
