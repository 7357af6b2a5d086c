"""Candidates built from early checkpoints: linear baselines, mergekit methods, ARM.

ARM goes through the product's own code: statistics are written by
:func:`mergekit_arm.calibration.calibrate`, a single merge is
:func:`mergekit_arm.stream.merge_candidate` (``merge_state_dicts(..., "arm", ...)``) and a
stream is :func:`mergekit_arm.stream.run_steps`, the loop ``arm-stream`` runs (fixed-set
or checkpoint legs, the package's schedules, keep-best and patience), in memory.
"""

from __future__ import annotations

import math
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from mergekit_arm.merge_methods.arm_parameters import ARMParameters
from mergekit_arm.stream import Leg, StreamTrace, merge_candidate, run_steps
from mergekit_arm.stream.config import ScheduleConfig
from mergekit_arm.stream.recipe_config import BlockSearchConfig

from .train import StateDict, load_state, model_device

_REGISTERED = False


def _register() -> None:
    global _REGISTERED
    if not _REGISTERED:
        import mergekit_arm

        mergekit_arm.register()
        _REGISTERED = True


def linear_combo(base: StateDict, terms: Sequence[tuple[float, StateDict, StateDict]]) -> StateDict:
    """``base + sum_i a_i (x_i - y_i)`` for every floating tensor."""
    out = {}
    for k, v in base.items():
        if not v.is_floating_point():
            out[k] = v.clone()
            continue
        acc = v.clone()
        for a, x, y in terms:
            acc.add_(x[k] - y[k], alpha=a)
        out[k] = acc
    return out


def expo(origin: StateDict, ckpt: StateDict, alpha: float) -> StateDict:
    """ExPO: ``c + alpha (c - origin)``."""
    return linear_combo(ckpt, [(alpha, ckpt, origin)])


def average(states: Sequence[StateDict]) -> StateDict:
    out = {}
    for k, v in states[0].items():
        out[k] = sum(s[k] for s in states) / len(states) if v.is_floating_point() else v.clone()
    return out


def greedy_soup(states: Sequence[StateDict], val_loss: Callable[[StateDict], float]
                ) -> tuple[StateDict, list[int]]:
    """Greedy soup (Wortsman et al. 2022): sort the models by validation loss, then add
    each in that order to the uniform soup if the soup's validation loss does not get
    worse. Returns the soup and the indices of its ingredients (in the order added)."""
    order = sorted(range(len(states)), key=lambda i: val_loss(states[i]))
    kept = [order[0]]
    soup, best = states[order[0]], val_loss(states[order[0]])
    for index in order[1:]:
        trial = average([states[i] for i in kept + [index]])
        loss = val_loss(trial)
        if loss <= best:
            kept, soup, best = kept + [index], trial, loss
    return soup, kept


def mergekit_merge(method: str, origin: StateDict, models: Sequence[StateDict],
                   parameters: dict) -> StateDict:
    """A mergekit method with ``origin`` as the base model and ``models`` as the inputs."""
    from mergekit.merge_methods import merge_state_dicts

    _register()
    inputs = {"origin": origin} | {f"m{i}": m for i, m in enumerate(models)}
    with torch.no_grad():
        merged = merge_state_dicts(inputs, method, parameters=parameters, base="origin",
                                   dtype=torch.float32, out_dtype=torch.float32)
    return {k: merged.get(k, origin[k]) for k in origin}


# ------------------------------------------------------------------- statistics


@dataclass
class Calibrator:
    """Writes activation statistics of a state dict (all on the same calibration texts)."""

    model: torch.nn.Module
    tokenizer: object
    texts: list[str]
    folder: Path
    samples: int
    max_length: int
    rank: int
    batch_size: int = 8
    seconds: float = 0.0
    calls: int = 0
    tokens: dict[str, int] = field(default_factory=dict)  # label -> calibration tokens
    _counter: int = field(default=0)

    def __call__(self, state: StateDict, label: str, texts: list[str] | None = None,
                 samples: int | None = None) -> Path:
        from mergekit_arm.calibration import CalibrationOptions, calibrate

        start = time.perf_counter()
        load_state(self.model, state)
        self._counter += 1
        path = self.folder / f"{self._counter:04d}-{label}.safetensors"
        options = CalibrationOptions(samples=samples or self.samples, max_length=self.max_length,
                                     rank=self.rank, batch_size=self.batch_size,
                                     device=str(model_device(self.model)), dtype="float32")
        result = calibrate(self.model, path, options, tokenizer=self.tokenizer,
                           texts=texts if texts is not None else self.texts, model_label=label,
                           progress=False)
        self.tokens[label] = result.num_tokens
        self.seconds += time.perf_counter() - start
        self.calls += 1
        return path


def arm_parameters(rank: int, energy: float | None = None, rotation_strength: float = 1.0,
                   off_subspace: float = 1.0, pairing: str = "subspace",
                   eigengap: bool = False) -> dict:
    """The kernel parameters of a stream's ``arm:`` section with these values (tensors
    without statistics get a plain step: ``missing_statistics: plain``)."""
    return ARMParameters(rank=rank, energy=energy, rotation_strength=rotation_strength,
                         off_subspace=off_subspace, pairing=pairing, eigengap=eigengap,
                         missing_statistics="plain").merge_parameters()


def arm_merge(cur: StateDict, origin: StateDict, targets: Sequence[StateDict],
              cur_stats: Path | None, origin_stats: Path | None, learning_rate: float,
              rank: int, energy: float | None = None, rotation_strength: float = 1.0,
              off_subspace: float = 1.0, pairing: str = "subspace",
              eigengap: bool = False) -> StateDict:
    """One ARM step (``merge_method: arm``, base = ``cur``); targets empty = the base.

    ``cur_stats`` and ``origin_stats`` must be different files (the kernel refuses one
    file for both, since that is what an inherited top-level ``activations`` looks like).
    """
    _register()
    leg = Leg(origin, origin_stats, tuple((t, 1.0) for t in targets))
    params = arm_parameters(rank, energy, rotation_strength, off_subspace, pairing, eigengap)
    return merge_candidate(cur, cur_stats, leg, learning_rate, params)


# ------------------------------------------------------------------ diagnostics


def _layers(path: Path):
    from mergekit_arm.statistics import load_statistics

    return load_statistics(path)


MapFn = Callable[[torch.Tensor, str], torch.Tensor]


def direction_cosines(d: StateDict, future: StateDict, from_stats: Path, cur_stats: Path,
                      rank: int, energy: float | None = None, rotation_strength: float = 1.0,
                      off_subspace: float = 1.0, pairing: str = "subspace",
                      eigengap: bool = False,
                      extra_maps: dict[str, MapFn] | None = None) -> dict:
    """Cosine, over all linear weights with statistics, between the displacement ``d``
    (unrotated, and rotated/guided as ARM does) and the update ``future`` SFT made later."""
    from mergekit_arm.rotation import arm_direction, select_subspace

    fs, cs = _layers(from_stats), _layers(cur_stats)
    names = sorted(n for n in cs.weight_names & fs.weight_names if n in d and n in future)
    dots = {"unrotated": 0.0, "rotated": 0.0} | {k: 0.0 for k in (extra_maps or {})}
    norms = dict.fromkeys(dots, 0.0)
    fut_norm = 0.0
    for name in names:
        dd, ff = d[name].float(), future[name].float()
        if name in cs.transposed:
            dd, ff = dd.T, ff.T
        lf, lc = fs[name], cs[name]
        s_from = select_subspace(lf.basis, lf.eigenvalues, lf.trace, rank, energy, eigengap)
        s_cur = select_subspace(lc.basis, lc.eigenvalues, lc.trace, rank, energy, eigengap)
        rotated = arm_direction(dd, s_from, s_cur, rotation_strength, off_subspace,
                                pairing=pairing, eig_from=lf.eigenvalues, eig_cur=lc.eigenvalues)
        variants = {"unrotated": dd, "rotated": rotated}
        for key, fn in (extra_maps or {}).items():
            variants[key] = fn(dd, name)
        for key, v in variants.items():
            dots[key] += float((v * ff).sum())
            norms[key] += float((v * v).sum())
        fut_norm += float((ff * ff).sum())
    out = {k: dots[k] / math.sqrt(norms[k] * fut_norm) if norms[k] > 0 and fut_norm > 0 else 0.0
           for k in dots}
    out["weights"] = len(names)
    return out


def diff(a: StateDict, b: StateDict) -> StateDict:
    return {k: a[k] - b[k] for k in a if a[k].is_floating_point()}


# ------------------------------------------------------------------- iteration


def fixed_legs(origin: StateDict, origin_stats: Path | None, targets: Sequence[StateDict],
               steps: int) -> list[Leg]:
    """``mode: fixed``: every step from = origin, to = the targets."""
    return [Leg(origin, origin_stats, tuple((t, 1.0) for t in targets), "origin->targets")] * steps


def checkpoint_legs(origin: StateDict, origin_stats: Path | None,
                    checkpoints: Sequence[tuple[str, StateDict, Path | None]]) -> list[Leg]:
    """``mode: checkpoints``: step t from = c_{t-1} (origin for t = 1), to = c_t."""
    legs, prev, prev_stats, prev_name = [], origin, origin_stats, "origin"
    for name, state, stats in checkpoints:
        legs.append(Leg(prev, prev_stats, ((state, 1.0),), f"{prev_name}->{name}"))
        prev, prev_stats, prev_name = state, stats, name
    return legs


def toward_legs(checkpoints: Sequence[tuple[str, StateDict]]) -> list[Leg]:
    """``mode: toward``: step t moves the current model toward c_t (source = current)."""
    return [Leg(None, None, ((state, 1.0),), f"current->{name}") for name, state in checkpoints]


def average_schedule() -> ScheduleConfig:
    """``kind: average``: eta_t = 1 / t (the running mean of the checkpoints)."""
    return ScheduleConfig(kind="average")


def average_line_search(multipliers: Sequence[float]) -> ScheduleConfig:
    """``kind: line_search, decay: average``: try m / t for every multiplier."""
    return ScheduleConfig(kind="line_search", decay="average", candidates=list(multipliers))


def cosine(eta0: float) -> ScheduleConfig:
    """The package's cosine decay from ``eta0`` towards 0."""
    return ScheduleConfig(kind="cosine", learning_rate=eta0)


def constant(eta: float) -> ScheduleConfig:
    return ScheduleConfig(kind="constant", learning_rate=eta)


def line_search(base_rate: float, multipliers: Sequence[float]) -> ScheduleConfig:
    """Try ``m * base_rate`` for every multiplier at every step."""
    return ScheduleConfig(kind="line_search", learning_rate=base_rate,
                          candidates=list(multipliers))


@dataclass
class StreamRun:
    """A stream's kept step (lowest validation loss among steps ``>= min_steps``)."""

    best_state: StateDict
    best_step: int
    best_val: float
    trajectory: list[dict] = field(default_factory=list)
    trace: StreamTrace | None = None


def stream(
    start: StateDict,
    legs: Sequence[Leg],
    calibrator: Calibrator | None,
    val_loss: Callable[[StateDict], float],
    *,
    schedule: ScheduleConfig,
    parameters: dict,
    min_steps: int = 0,
    patience: int | None = None,
    start_stats: Path | None = None,
    diagnostics: Callable[[int, StateDict, Path | None, Leg], dict] | None = None,
    label: str = "arm",
    log: Callable[[str], None] = print,
    blocks: BlockSearchConfig | None = None,
    selection_loss: Callable[[StateDict], float] | None = None,
) -> StreamRun:
    """Streaming Merging in memory through :func:`mergekit_arm.stream.run_steps`.

    The current model is calibrated before every step (``start_stats``, if given, are the
    start's statistics and save the first pass; no pass when the rotation is off). The
    kept step is the lowest validation loss among steps ``>= min_steps`` (step 0 = the
    start); ``patience: 1`` stops at the first step that does not improve on it.
    ``selection_loss``: the in-step searches (line search, ``blocks``) score on it, and
    ``val_loss`` only reports and keeps steps (as ``arm-stream``'s ``selection`` section).
    """
    toward = all(leg.source is None for leg in legs)
    needs_stats = parameters["off_subspace"] != 1.0 or (
        not toward and parameters["rotation_strength"] != 0.0)

    def statistics(step: int, current: StateDict) -> Path | None:
        if not needs_stats:
            return None
        if step == 1 and start_stats is not None:
            # A copy: the kernel refuses one file for base_model and origin.
            copy = calibrator.folder / f"{label}-step0-{Path(start_stats).name}"
            shutil.copyfile(start_stats, copy)
            return copy
        return calibrator(current, f"{label}-step{step - 1}")

    _register()
    start_val = val_loss(start)
    trace = run_steps(start, legs, schedule=schedule, total=len(legs), parameters=parameters,
                      statistics=statistics, score=selection_loss or val_loss,
                      report=val_loss if selection_loss is not None else None,
                      start_loss=start_val, select="best", patience=patience,
                      min_step=min_steps, diagnostics=diagnostics, keep_weights=True,
                      blocks=blocks)
    trajectory: list[dict] = [{"step": 0, "val": start_val}]
    for record in trace.records:
        val = record["val_loss"] if record["accepted"] else float("inf")
        trajectory.append({"step": record["step"], "leg": record["leg"],
                           "rate": record["learning_rate"], "val": val,
                           "tried": [(c["learning_rate"], c["val_loss"])
                                     for c in record["line_search"] or []],
                           "block_rates": record.get("block_rates"),
                           "diagnostics": record.get("diagnostics", {})})
        log(f"  {label} step {record['step']} ({record['leg']}): eta "
            f"{record['learning_rate'] or float('nan'):.4g} val {val:.4f}")
    if trace.stop_reason:
        log(f"  {label}: {trace.stop_reason}")
    from mergekit_arm.statistics import clear_cache

    clear_cache()
    assert trace.kept_weights is not None
    return StreamRun(dict(trace.kept_weights), trace.kept_step, trace.kept_loss, trajectory, trace)
