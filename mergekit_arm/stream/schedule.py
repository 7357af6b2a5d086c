"""Step-size schedules of a stream: pure functions of the step index.

Steps are numbered ``k = 1..K``. With ``progress p = (k - 1) / K`` the decays are

* constant: ``eta_k = eta``
* linear:   ``eta_k = eta + (eta_end - eta) * p``
* cosine:   ``eta_k = eta + (eta_end - eta) * (1 - cos(pi p)) / 2``
* average:  ``eta_k = eta / k`` (``eta = 1``: moving toward checkpoint ``c_k`` by ``1 / k``
  keeps the running mean of ``c_1..c_k``)

so the first step always uses ``eta`` and the rate would reach ``eta_end`` one step
after the last (like the usual warm-up-free LR schedulers; the last step is not
wasted on a zero rate). ``line_search`` tries ``m * eta_k`` for every multiplier
``m`` of its ``candidates`` around the rate of its ``decay``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from mergekit_arm.errors import ArmConfigError
from mergekit_arm.stream.config import ScheduleConfig


def decayed_rate(
    kind: str, learning_rate: float, final_learning_rate: float, step: int, total: int | None
) -> float:
    """``eta_k`` of a constant, linear, cosine or average decay at step ``step`` (1-based)
    of ``total``."""
    if step < 1:
        raise ValueError(f"steps are numbered from 1, got {step}")
    if kind == "constant":
        return float(learning_rate)
    if kind == "average":
        return float(learning_rate) / step
    if total is None:
        raise ArmConfigError(f"a {kind} decay needs the total number of steps")
    if step > total:
        raise ValueError(f"step {step} is past the last step {total}")
    progress = (step - 1) / total
    change = final_learning_rate - learning_rate  # written so that step 1 is exactly eta
    if kind == "linear":
        return float(learning_rate + change * progress)
    if kind == "cosine":
        return float(learning_rate + change * 0.5 * (1.0 - math.cos(math.pi * progress)))
    raise ValueError(f"unknown decay {kind!r}; use constant, linear, cosine or average")


def scheduled_rate(schedule: ScheduleConfig, step: int, total: int | None) -> float:
    """The schedule's rate at ``step`` (for line_search: the rate the multipliers scale)."""
    return decayed_rate(
        schedule.decay_kind, schedule.learning_rate, schedule.final_learning_rate, step, total
    )


def line_search_candidates(rate: float, multipliers: Sequence[float]) -> list[tuple[float, float]]:
    """``(multiplier, multiplier * rate)`` pairs in the order given."""
    return [(float(m), float(m) * rate) for m in multipliers]


def step_candidates(schedule: ScheduleConfig, step: int, total: int | None) -> list[tuple[float, float]]:
    """Rates to try at ``step``: one ``(1.0, eta_k)`` pair, or the line-search pairs."""
    rate = scheduled_rate(schedule, step, total)
    if schedule.kind == "line_search":
        return line_search_candidates(rate, schedule.candidates)
    return [(1.0, rate)]


__all__ = ["decayed_rate", "line_search_candidates", "scheduled_rate", "step_candidates"]
