"""Streaming Merging: iterate ARM merges into a trajectory (``arm-stream``).

>>> from mergekit_arm.stream import run_stream
>>> result = run_stream("yaml_examples/stream-fixed-set.yml", "out/")  # doctest: +SKIP
>>> result.model, result.kept_step, result.final_loss                  # doctest: +SKIP

In memory (no files): :func:`stream_step` merges and scores the candidates of one step,
:func:`run_steps` runs the steps and keeps the best one; ``run_stream`` and the quality
benchmark both use them. See ``docs/streaming.md``.
"""

from __future__ import annotations

from mergekit_arm.stream.config import StreamConfig, load_config, parse_config
from mergekit_arm.stream.driver import run_stream
from mergekit_arm.stream.loop import StreamTrace, best_step, kept_step, run_steps
from mergekit_arm.stream.result import StreamResult
from mergekit_arm.stream.step import (
    Candidate,
    Leg,
    StepResult,
    angle_summary,
    merge_candidate,
    stream_step,
)

__all__ = [
    "Candidate",
    "Leg",
    "StepResult",
    "StreamConfig",
    "StreamResult",
    "StreamTrace",
    "angle_summary",
    "best_step",
    "kept_step",
    "load_config",
    "merge_candidate",
    "parse_config",
    "run_steps",
    "run_stream",
    "stream_step",
]
