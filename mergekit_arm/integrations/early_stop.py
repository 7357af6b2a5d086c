"""Early stop of a Trainer run by its ARM stream (``ARMCallback(..., stop_training=True)``).

The stream keeps the step with the lowest held-out loss; ``patience: N`` ends it once
``N`` steps followed that best step without beating it
(:func:`~mergekit_arm.stream.loop.patience_left`). From then on no later checkpoint can
change the kept model, so training further only costs compute: the callback sets the
Trainer's ``control.should_training_stop`` and the run ends after the save that exhausted
patience. The compute saved is ``1 - steps_trained / steps_asked`` (optimizer steps,
``TrainerState.global_step`` / ``max_steps``), logged and written as ``training_stop`` on
the last record of ``trajectory.jsonl``.

With several training processes only rank 0 streams; its decision is broadcast so that
every rank stops at the same step (a rank that trained on alone would wait forever in the
next collective).
"""

from __future__ import annotations

import logging
from typing import Any

import torch

from mergekit_arm.errors import ArmConfigError
from mergekit_arm.stream.loop import mark_kept, patience_left
from mergekit_arm.stream.report import write_trajectory
from mergekit_arm.stream.runner import StreamRunner
from mergekit_arm.stream.state import save_state

logger = logging.getLogger("mergekit_arm.stream.callback")

TRAINING_STOP = "training_stop"  # the record field


def check_stop_config(data: Any, source: str) -> None:
    """``stop_training=True`` needs ``patience`` (which itself needs ``validation``)."""
    patience = data.get("patience") if isinstance(data, dict) else None
    if patience is None:
        raise ArmConfigError(
            f"ARMCallback config {source}: stop_training=True stops the Trainer when the "
            "stream's `patience` runs out, but the config sets no `patience`; add e.g. "
            "`patience: 2` (saves without a better merge before training stops) and a "
            "`validation` section, or leave stop_training out")


def patience_exhausted(runner: StreamRunner) -> bool:
    """Whether ``patience`` steps followed the stream's best step without beating it."""
    state, config = runner.state, runner.config
    return config.patience is not None and not patience_left(
        config.patience, state.start_loss, state.records)


def agree_across_ranks(stop: bool, device: Any) -> bool:
    """Rank 0's ``stop`` on every rank (a broadcast where several processes train)."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() < 2:
        return stop
    flag = torch.tensor([1 if stop else 0], device=device)
    dist.broadcast(flag, src=0)
    return bool(flag.item())


def saved_compute(steps_trained: int, steps_asked: int) -> dict[str, Any]:
    """The ``training_stop`` record: steps trained, steps asked, ``1 - trained / asked``."""
    fraction = 1.0 - steps_trained / steps_asked if steps_asked > 0 else 0.0
    return {"steps_trained": int(steps_trained), "steps_asked": int(steps_asked),
            "fraction_saved": round(max(0.0, fraction), 4)}


def record_stop(runner: StreamRunner, steps_trained: int, steps_asked: int) -> dict[str, Any]:
    """Write :func:`saved_compute` as ``training_stop`` on the stream's last record (state
    and ``trajectory.jsonl``, both atomic) and log it; returns the field."""
    field = saved_compute(steps_trained, steps_asked)
    state = runner.state
    if state.records:
        state.records[-1][TRAINING_STOP] = field
        save_state(runner.layout, state)
        write_trajectory(runner.layout.trajectory_jsonl,
                         mark_kept(state.records, runner.kept_step()))
    logger.info("ARMCallback stopped training: %d of %d steps trained (%.0f%% of the "
                "asked steps saved); %d stream step(s) followed the kept one (step %d) "
                "without a lower held-out loss (patience %s)",
                field["steps_trained"], field["steps_asked"], 100 * field["fraction_saved"],
                state.step - runner.kept_step(), runner.kept_step(), runner.config.patience)
    return field


__all__ = ["TRAINING_STOP", "agree_across_ranks", "check_stop_config", "patience_exhausted",
           "record_stop", "saved_compute"]
