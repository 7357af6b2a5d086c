"""Process-wide settings a demo run changes for its duration only (progress bars, threads, RNG)."""

from __future__ import annotations

import contextlib
import random
from collections.abc import Iterator

import numpy as np
import torch


@contextlib.contextmanager
def quiet_runtime(num_threads: int | None = None) -> Iterator[None]:
    """Hide transformers' progress bars and warnings and optionally use ``num_threads``
    torch threads, restoring all of them afterwards."""
    from transformers.utils import logging as hf_logging

    bars = hf_logging.is_progress_bar_enabled()
    verbosity = hf_logging.get_verbosity()
    threads = torch.get_num_threads()
    if num_threads is not None and num_threads < 1:
        raise ValueError("num_threads must be at least 1")
    if bars:
        hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    if num_threads is not None:
        torch.set_num_threads(num_threads)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()


@contextlib.contextmanager
def preserved_rng() -> Iterator[None]:
    """Restore the global torch, ``random`` and NumPy RNG states on exit (the Trainer
    reseeds all three)."""
    python_state, numpy_state = random.getstate(), np.random.get_state()
    with torch.random.fork_rng(devices=[]):
        try:
            yield
        finally:
            random.setstate(python_state)
            np.random.set_state(numpy_state)


__all__ = ["preserved_rng", "quiet_runtime"]
