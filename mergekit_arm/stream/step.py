"""One Streaming Merging step in memory: current weights + a leg -> scored candidates.

A *leg* is what a step moves along: the displacement
``d = sum_j w_j (W_to_j - W_from) / sum_j w_j`` from a ``source`` (``W_from``, with its
activation statistics) to weighted targets. For every step size ``eta`` the candidate is
one ARM merge through MergeKit's in-memory API,
``W' = W + eta * ARM(d; from subspaces -> current subspaces)``
(``merge_state_dicts(..., "arm", base="current")``), scored by a held-out loss.
A *toward* leg (``source=None``) starts at the current model itself:
``W' = W + eta * R(sum_j w_j (W_to_j - W) / sum_j w_j)``; the kernel then has no origin
(``origin`` marks nobody, so its origin is ``base_model``), the two frames coincide and
``R`` only damps the part outside the current subspace by ``off_subspace`` (identity at
``off_subspace: 1``). ``arm-stream`` and the quality benchmark both call :func:`stream_step`.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from mergekit_arm.errors import ArmConfigError, NonFiniteError
from mergekit_arm.merge_methods.arm_checks import check_representable
from mergekit_arm.rotation import principal_angles, select_subspace
from mergekit_arm.statistics import ActivationStatistics, load_statistics

StateDict = Mapping[str, torch.Tensor]
Score = Callable[[dict[str, torch.Tensor]], float]

CURRENT, FROM = "current", "from"


Rate = float | Mapping[str, float]  # one eta, or one per tensor name (per-block steps)
Statistics = str | os.PathLike | ActivationStatistics | None
"""A statistics file: its path (as ``arm-calibrate`` writes it) or the object
:func:`~mergekit_arm.statistics.load_statistics` returns; None: none."""


def statistics_file(value: Any, what: str) -> str | None:
    """The path of the statistics ``value`` (a path, or a loaded
    :class:`~mergekit_arm.statistics.ActivationStatistics`); ``what`` names it in errors."""
    if value is None:
        return None
    if isinstance(value, ActivationStatistics):
        return str(value.path)
    if isinstance(value, (str, os.PathLike)):
        return os.fspath(value)
    raise ArmConfigError(
        f"{what} must be a statistics file: its path (as arm-calibrate writes it) or the object "
        f"load_statistics(path) returns, not a {type(value).__name__}")


@dataclass(frozen=True)
class Leg:
    """``source`` (``W_from``; None: the current model, a toward leg) and its statistics,
    and the weighted targets ``W_to_j``."""

    source: StateDict | None
    source_statistics: Statistics  # path or load_statistics(path)
    targets: tuple[tuple[StateDict, float], ...]
    label: str = ""


def per_tensor_rates(names: Sequence[str], learning_rate: Rate) -> Any:
    """The kernel's ``learning_rate``: a float, or MergeKit's per-tensor ``PerGroupValues``
    in the order of ``names`` (names missing from a mapping are an error)."""
    if isinstance(learning_rate, Mapping):
        from mergekit.merge_methods.base import PerGroupValues

        return PerGroupValues([float(learning_rate[name]) for name in names])
    return float(learning_rate)


def merge_candidate(
    current: StateDict,
    current_statistics: Statistics,
    leg: Leg,
    learning_rate: Rate,
    parameters: Mapping[str, Any],
    written_dtype: torch.dtype = torch.float32,
) -> dict[str, torch.Tensor]:
    """``W + eta * ARM(d)`` for every tensor of ``current`` (which is not changed).

    Raises :class:`NonFiniteError` when a result tensor is not finite once cast to
    ``written_dtype`` (the dtype the stream writes its models in).

    ``parameters`` are the kernel's top-level parameters (``ARMParameters.merge_parameters()``);
    statistics may be None when the rotation is off (``rotation_strength: 0``; a toward
    leg needs none unless ``off_subspace != 1``). ``learning_rate``: one eta, or a
    mapping tensor name -> eta.
    """
    from mergekit.merge_methods import merge_state_dicts

    models: dict[str, StateDict] = {CURRENT: current}
    weights = {CURRENT: 1.0}
    cur_stats = statistics_file(current_statistics, "the current model's statistics")
    activations: dict[str, str | None] = {CURRENT: cur_stats}
    if leg.source is not None:
        models[FROM] = leg.source
        weights[FROM] = 1.0
        activations[FROM] = statistics_file(leg.source_statistics, "Leg.source_statistics")
    for index, (target, weight) in enumerate(leg.targets):
        key = f"to-{index}"
        models[key] = target
        weights[key] = float(weight)
        activations[key] = cur_stats  # as a YAML's inherited top-level value; not read
    merge = {
        **parameters,
        "learning_rate": per_tensor_rates(list(current), learning_rate),
        "origin": {key: key == FROM for key in models},
        "weight": weights,
        "activations": activations,
    }
    with torch.no_grad():
        merged = merge_state_dicts(dict(models), "arm", base=CURRENT, parameters=merge,
                                   dtype=torch.float32, out_dtype=torch.float32)
    result = {name: merged.get(name, tensor) for name, tensor in current.items()}
    if written_dtype != torch.float32:
        for name, tensor in result.items():
            check_representable(tensor, written_dtype, name)
    return result


@dataclass
class Candidate:
    """One step size tried at a step: its rate, held-out loss, and (if finite) weights."""

    multiplier: float
    learning_rate: float
    val_loss: float | None = None
    error: str | None = None
    weights: dict[str, torch.Tensor] | None = field(default=None, repr=False)

    def record(self) -> dict[str, Any]:
        """The JSON record of the try (``trajectory.jsonl``'s ``line_search`` entries)."""
        out: dict[str, Any] = {"multiplier": self.multiplier, "learning_rate": self.learning_rate,
                               "val_loss": self.val_loss}
        if self.error is not None:
            out["error"] = self.error
        return out


@dataclass
class StepResult:
    """Every candidate of a step and the chosen one (None: no finite candidate)."""

    candidates: list[Candidate]
    chosen: Candidate | None
    seconds: dict[str, float]

    def failure(self, step: int) -> str:
        """Why no candidate was usable."""
        reason = "; ".join(f"learning rate {c.learning_rate:.4g}: {c.error or 'non-finite'}"
                           for c in self.candidates)
        return f"step {step} produced no finite result ({reason})"


def stream_step(
    current: StateDict,
    current_statistics: Statistics,
    leg: Leg,
    rates: Sequence[tuple[float, float]],
    parameters: Mapping[str, Any],
    score: Score | None = None,
    written_dtype: torch.dtype = torch.float32,
) -> StepResult:
    """Merge one candidate per ``(multiplier, eta)`` of ``rates`` and score each.

    ``current`` and the leg's models are state dicts; ``current_statistics`` and
    ``leg.source_statistics`` are statistics files: paths (``arm-calibrate MODEL FILE``) or
    what :func:`~mergekit_arm.statistics.load_statistics` returns.

    The chosen candidate has the lowest finite held-out loss ``score(W')`` (without
    ``score``: the first finite merge). A merge with NaN/Inf weights or loss is recorded
    with its error and never chosen, and so is one that overflows ``written_dtype``.
    Only the chosen candidate's weights are kept.
    """
    seconds = {"merge": 0.0, "evaluation": 0.0}
    candidates: list[Candidate] = []
    chosen: Candidate | None = None
    for multiplier, rate in rates:
        candidate = Candidate(float(multiplier), float(rate))
        candidates.append(candidate)
        start = time.perf_counter()
        try:
            merged = merge_candidate(current, current_statistics, leg, rate, parameters,
                                     written_dtype)
        except NonFiniteError as error:
            candidate.error = str(error)
            continue
        finally:
            seconds["merge"] += time.perf_counter() - start
        if score is not None:
            start = time.perf_counter()
            loss = float(score(merged))
            seconds["evaluation"] += time.perf_counter() - start
            if not math.isfinite(loss):
                candidate.error = f"held-out loss is {loss}"
                continue
            candidate.val_loss = loss
        better = chosen is None or (
            candidate.val_loss is not None and chosen.val_loss is not None
            and candidate.val_loss < chosen.val_loss
        )
        if better:
            if chosen is not None:
                chosen.weights = None
            candidate.weights, chosen = merged, candidate
        del merged
    return StepResult(candidates, chosen, seconds)


def angle_summary(
    from_statistics: Statistics, current_statistics: Statistics, rank: int,
    energy: float | None = None,
    eigengap: bool = False,
) -> dict[str, float]:
    """Principal angles (degrees) between the ``from`` and current subspaces of every linear
    input (an input shared by several weights counts once), at the kernel's rank rule.

    Returns ``n`` (angles), ``mean``, ``max``, ``p10``, ``median``, ``p90`` and the
    fractions above 45 and 80 degrees; ``{"n": 0}`` when no input has both statistics.
    """
    before, after = (load_statistics(statistics_file(s, "statistics"))
                     for s in (from_statistics, current_statistics))
    angles = []
    for name in sorted(after.weight_names):
        if name in after.aliases or name not in before:
            continue
        a, b = before[name], after[name]
        s_from = select_subspace(a.basis, a.eigenvalues, a.trace, rank, energy, eigengap)
        s_cur = select_subspace(b.basis, b.eigenvalues, b.trace, rank, energy, eigengap)
        r = min(s_from.shape[1], s_cur.shape[1])
        angles.append(principal_angles(s_from[:, :r], s_cur[:, :r]))
    if not angles:
        return {"n": 0}
    deg = torch.rad2deg(torch.cat(angles).double())
    q = torch.quantile(deg, torch.tensor([0.1, 0.5, 0.9], dtype=torch.float64))
    return {"n": int(deg.numel()), "mean": float(deg.mean()), "max": float(deg.max()),
            "p10": float(q[0]), "median": float(q[1]), "p90": float(q[2]),
            "frac_gt_45": float((deg > 45).double().mean()),
            "frac_gt_80": float((deg > 80).double().mean())}


__all__ = ["Candidate", "Leg", "Rate", "Statistics", "StepResult", "angle_summary", "merge_candidate",
           "per_tensor_rates", "statistics_file", "stream_step"]
