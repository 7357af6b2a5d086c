"""Helpers of tests/test_stream.py: small stream configs, a held-out loss computed
independently of the driver, and a CLI entry point that stalls in step 2 (so a test
can SIGKILL it mid-step after step 1 was committed).

Run as a script: ``python tests/stream_helpers.py CONFIG OUT`` behaves like
``arm-stream CONFIG OUT -q`` except that every merge after the first committed step
sleeps for a minute first.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch


def one_thread_env() -> dict[str, str]:
    """The environment for a subprocess with one OpenMP/MKL thread (as the tests' torch)."""
    return {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def stream_config(
    origin: Path,
    checkpoints: Sequence[Path | tuple[Path, float]],
    calibration: Path,
    **overrides: Any,
) -> dict[str, Any]:
    """A fast config dict (8 calibration texts of <= 32 tokens, rank 8, CPU)."""
    entries = []
    for item in checkpoints:
        path, weight = item if isinstance(item, tuple) else (item, 1.0)
        entries.append({"model": str(path), "weight": weight})
    config: dict[str, Any] = {
        "origin": str(origin),
        "checkpoints": entries,
        "steps": 2,
        "schedule": {"kind": "constant", "learning_rate": 0.5},
        "calibration": {"data": str(calibration), "samples": 8, "max_length": 32, "rank": 8},
        "arm": {"rank": 4},
        "device": "cpu",
    }
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(config.get(key), dict):
            config[key] = {**config[key], **value}
        else:
            config[key] = value
    return config


@torch.no_grad()
def independent_loss(model: torch.nn.Module, tokenizer, texts: Sequence[str], max_length: int) -> float:
    """Mean next-token loss via the model's own ``labels`` loss, one text at a time."""
    total, count = 0.0, 0
    for text in texts:
        ids = tokenizer(text, truncation=True, max_length=max_length, return_tensors="pt")["input_ids"]
        n = ids.shape[1] - 1
        if n <= 0:
            continue
        loss = model(input_ids=ids, labels=ids, use_cache=False).loss
        total += float(loss) * n
        count += n
    return total / count


def _stall_after_first_step() -> None:
    """Every merge after the first one sleeps (one candidate per step: step 2 stalls)."""
    from mergekit_arm.stream import step

    original = step.merge_candidate
    calls = [0]

    def merge(*args, **kwargs):
        calls[0] += 1
        if calls[0] >= 2:
            Path(os.environ["STREAM_TEST_STALLED"]).touch()
            time.sleep(60)
        return original(*args, **kwargs)

    step.merge_candidate = merge


if __name__ == "__main__":
    _stall_after_first_step()
    from mergekit_arm.scripts.stream import main

    sys.argv = ["arm-stream", *sys.argv[1:]]
    main()
