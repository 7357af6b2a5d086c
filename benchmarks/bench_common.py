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


def peak_rss_gib() -> float | None:
    """This process's peak resident memory so far (``VmHWM``), in GiB; None off Linux."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 2**20
    except OSError:
        pass
    return None


def return_freed_heap_every(seconds: float) -> bool:
    """Start a daemon thread that calls glibc's ``malloc_trim(0)`` every ``seconds``.

    PyTorch's CPU tensors come from ``malloc``; glibc keeps the pages of freed ones in its
    heap (it only gives back the top of the heap), so after an SFT run of variable-length
    batches most of the resident memory is free heap, not tensors (SmolLM2: 4.6 GiB
    resident after three training steps, 0.9 GiB after one ``malloc_trim``). Trimming
    releases those pages to the OS; it changes no value a tensor holds. Returns False
    (and does nothing) where glibc's ``malloc_trim`` is not available or ``seconds <= 0``.
    """
    import threading
    import time

    from mergekit_arm.calibration.lazy import return_freed_memory

    if seconds <= 0 or not return_freed_memory():
        return False

    def loop() -> None:
        while True:
            time.sleep(seconds)
            return_freed_memory()  # the GIL is released for the call: the run goes on

    threading.Thread(target=loop, name="malloc-trim", daemon=True).start()
    return True
