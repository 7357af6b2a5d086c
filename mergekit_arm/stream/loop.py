"""The loop over stream steps, and which step is kept (``select``, ``patience``).

Step ``k = 1..K`` calibrates the current model (``statistics``), takes one
:func:`~mergekit_arm.stream.step.stream_step` along leg ``k`` with the schedule's
rates, and continues from the chosen candidate. Step 0 is the start model.

Keep-best: the *best* step is the one with the lowest held-out loss among step 0 and the
accepted steps (ties: the earlier step); ``select: best`` returns it, ``select: last``
the last accepted step. ``patience: N`` stops once ``N`` steps followed the best one.
Two held-out sets (``report``): the in-step choices (line-search tries, the per-block
search of ``blocks``) are scored by ``score`` on the *selection* set, and ``report`` then
measures the chosen model on the *validation* set, the ``val_loss`` that keep-best and
patience compare; without ``report`` one set does both.
``arm-stream`` (:mod:`mergekit_arm.stream.runner`) and the quality benchmark run
:func:`run_steps`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch

from mergekit_arm.stream.blocks import block_search
from mergekit_arm.stream.config import ScheduleConfig
from mergekit_arm.stream.recipe_config import BlockSearchConfig
from mergekit_arm.stream.schedule import scheduled_rate, step_candidates
from mergekit_arm.stream.step import Leg, Score, StateDict, StepResult, angle_summary, stream_step

logger = logging.getLogger("mergekit_arm.stream")

Record = dict[str, Any]
Statistics = Callable[[int, StateDict], Path | None]
Describe = Callable[[int, Leg, StepResult, Record], None]
Commit = Callable[[int, Record, dict[str, torch.Tensor] | None], StateDict | None]


def best_step(start_loss: float | None, records: Sequence[Record], min_step: int = 0) -> int:
    """The accepted step (0 = start) with the lowest ``val_loss``, among steps ``>= min_step``
    (ties: the earlier); without losses, the last accepted step."""
    steps = [(0, start_loss)] + [(r["step"], r.get("val_loss")) for r in records
                                 if r.get("accepted")]
    eligible = [(s, loss) for s, loss in steps if s >= min_step] or steps[-1:]
    scored = [(loss, s) for s, loss in eligible if loss is not None]
    if not scored:
        return eligible[-1][0]
    return min(scored)[1]


def kept_step(select: Literal["best", "last"], start_loss: float | None,
              records: Sequence[Record], min_step: int = 0) -> int:
    """The step the final model is: :func:`best_step`, or the last accepted one."""
    if select == "best":
        return best_step(start_loss, records, min_step)
    accepted = [r["step"] for r in records if r.get("accepted")]
    return accepted[-1] if accepted else 0


def patience_left(patience: int | None, start_loss: float | None,
                  records: Sequence[Record], min_step: int = 0) -> bool:
    """False once ``patience`` steps followed the best step without beating it."""
    accepted = [r["step"] for r in records if r.get("accepted")]
    if patience is None or not accepted:
        return True
    return accepted[-1] - best_step(start_loss, records, min_step) < patience


def mark_kept(records: Sequence[Record], kept: int) -> list[Record]:
    """Copies of ``records`` with ``kept: true`` on the kept step, false elsewhere."""
    return [{**r, "kept": r["step"] == kept and bool(r.get("accepted"))} for r in records]


@dataclass
class StreamTrace:
    """What :func:`run_steps` did: the new records, the kept step, why it stopped."""

    records: list[Record]
    kept_step: int
    kept_loss: float | None
    kept_weights: StateDict | None = field(default=None, repr=False)
    stop_reason: str | None = None
    failed: bool = False


def run_steps(
    current: StateDict,
    legs: Iterable[Leg],
    *,
    schedule: ScheduleConfig,
    total: int | None,
    parameters: Mapping[str, Any],
    statistics: Statistics,
    score: Score | None = None,
    start_loss: float | None = None,
    select: Literal["best", "last"] = "last",
    patience: int | None = None,
    min_step: int = 0,
    history: Sequence[Record] = (),
    describe: Describe | None = None,
    commit: Commit | None = None,
    diagnostics: Callable[[int, StateDict, Path | None, Leg], dict] | None = None,
    keep_weights: bool = False,
    written_dtype: torch.dtype = torch.float32,
    blocks: BlockSearchConfig | None = None,
    report: Score | None = None,
) -> StreamTrace:
    """Run steps ``len(history) + 1, ...``, one per leg, until the legs end, a step fails,
    the last step ``total`` is done or ``patience`` runs out.

    ``statistics(k, W)`` gives the statistics file of the current model before step ``k``
    (None: the rotation is off); ``score(W')`` the held-out loss. Each record is passed
    to ``describe`` (to add fields) and then, with the chosen weights, to ``commit``,
    which may return the tensors to continue from (e.g. those of a module it loaded
    them into). ``history``: records of steps already done (resume).
    ``keep_weights``: hold the kept step's weights in memory (``StreamTrace.kept_weights``).
    ``blocks``: per-block step sizes searched on ``score`` after the step's rate is chosen
    (:func:`~mergekit_arm.stream.blocks.block_search`); ``report``: the validation loss of
    the chosen model when ``score`` is a separate selection set (module docstring).
    """
    done = list(history)
    records: list[Record] = []
    accepted = [r for r in done if r.get("accepted")]
    last_loss = accepted[-1].get("val_loss") if accepted else start_loss
    kept_weights = current if keep_weights else None
    stop_reason, failed = None, False
    step = done[-1]["step"] if done else 0
    upcoming = iter(legs)
    while patience_left(patience, start_loss, done, min_step) and (total is None or step < total):
        leg = next(upcoming, None)  # (watch mode: waits for the next checkpoint)
        if leg is None:
            break
        step += 1
        started = time.perf_counter()
        calibration = time.perf_counter()
        stats = statistics(step, current)
        calibration = time.perf_counter() - calibration
        record: Record = {"step": step, "leg": leg.label}
        angles: dict[str, float] = {"n": 0}
        if stats is not None and leg.source_statistics is not None:
            angles = angle_summary(leg.source_statistics, stats, int(parameters["rank"]),
                                   parameters.get("energy"), bool(parameters.get("eigengap")))
        if diagnostics is not None:
            record["diagnostics"] = diagnostics(step, current, stats, leg)
        result = stream_step(current, stats, leg, step_candidates(schedule, step, total),
                             parameters, score, written_dtype)
        chosen = result.chosen
        choice = _refine(current, stats, leg, chosen, parameters, blocks, score, report,
                         written_dtype)
        record.update({
            "accepted": chosen is not None,
            "learning_rate": None if chosen is None else chosen.learning_rate,
            "scheduled_learning_rate": scheduled_rate(schedule, step, total),
            "val_loss": None if chosen is None else chosen.val_loss,
            "val_loss_before": last_loss,
            "line_search": ([c.record() for c in result.candidates]
                            if schedule.kind == "line_search" else None),
            "angle_mean_deg": angles.get("mean"),
            "angle_max_deg": angles.get("max"),
            **choice,
        })
        if chosen is None:
            record["error"] = result.failure(step)
            for candidate in result.candidates:
                logger.warning("step %d: learning rate %.4g: %s", step, candidate.learning_rate,
                               candidate.error)
        if describe is not None:
            describe(step, leg, result, record)
        seconds = {"calibration": calibration, **result.seconds}
        seconds["other"] = time.perf_counter() - started - sum(seconds.values())
        seconds["total"] = time.perf_counter() - started
        record["seconds"] = {k: round(v, 4) for k, v in seconds.items()}
        weights = None if chosen is None else chosen.weights
        result.candidates.clear()
        replacement = commit(step, record, weights) if commit is not None else None
        done.append(record)
        records.append(record)
        if chosen is None:
            stop_reason, failed = record["error"], True
            break
        current = replacement if replacement is not None else weights
        last_loss = record["val_loss"]
        if keep_weights and best_step(start_loss, done, min_step) == step:
            kept_weights = current
        del weights, chosen, result
    if not failed and not patience_left(patience, start_loss, done, min_step):
        best = best_step(start_loss, done, min_step)
        stop_reason = (f"no lower held-out loss in the {patience} step(s) after step {best}: "
                       "stopped early (patience)")
    kept = kept_step(select, start_loss, done, min_step)
    kept_loss = start_loss if kept == 0 else next(r.get("val_loss") for r in done
                                                  if r["step"] == kept)
    if keep_weights and select == "last":
        kept_weights = current
    return StreamTrace(records, kept, kept_loss, kept_weights, stop_reason, failed)


def _refine(current: StateDict, stats: Path | None, leg: Leg, chosen: Any,
            parameters: Mapping[str, Any], blocks: BlockSearchConfig | None,
            score: Score | None, report: Score | None,
            written_dtype: torch.dtype = torch.float32) -> Record:
    """Per-block search on the chosen candidate, then its validation loss (``report``);
    updates ``chosen`` in place and returns the record fields."""
    if chosen is None or (blocks is None and report is None):
        return {}
    fields: Record = {}
    if blocks is not None:
        assert score is not None and chosen.val_loss is not None
        found = block_search(current, stats, leg, chosen.learning_rate, dict(parameters),
                             blocks, score, chosen.val_loss, chosen.weights, written_dtype)
        chosen.weights, chosen.val_loss = found.weights, found.loss
        fields.update({"block_rates": found.rates, "block_search": found.tries})
    if report is not None:
        fields["selection_loss"] = chosen.val_loss
        chosen.val_loss = float(report(chosen.weights))
    return fields


__all__ = ["StreamTrace", "best_step", "kept_step", "mark_kept", "patience_left", "run_steps"]
