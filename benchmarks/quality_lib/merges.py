"""Candidates built from early checkpoints: linear baselines, mergekit methods, ARM.

ARM steps go through MergeKit exactly as a user's merge would: statistics are written
by :func:`mergekit_arm.calibration.calibrate` and the step is
``mergekit.merge_methods.merge_state_dicts(..., "arm", ...)``. The iterated driver
here mirrors ``arm-stream`` (fixed-set mode, a schedule or a line search) in memory,
so that a benchmark can run a dozen streams without writing model folders.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .train import StateDict, load_state

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
                                     device="cpu", dtype="float32")
        result = calibrate(self.model, path, options, tokenizer=self.tokenizer,
                           texts=texts if texts is not None else self.texts, model_label=label,
                           progress=False)
        self.tokens[label] = result.num_tokens
        self.seconds += time.perf_counter() - start
        self.calls += 1
        return path


def arm_merge(cur: StateDict, origin: StateDict, targets: Sequence[StateDict],
              cur_stats: Path | None, origin_stats: Path | None, learning_rate: float,
              rank: int, energy: float | None = None, rotation_strength: float = 1.0,
              off_subspace: float = 1.0, pairing: str = "subspace",
              eigengap: bool = False) -> StateDict:
    """One ARM step through mergekit (``merge_method: arm``); targets empty = the base.

    ``cur_stats`` and ``origin_stats`` must be different files (the kernel refuses one
    file for both, since that is what an inherited top-level ``activations`` looks like).
    """
    from mergekit.merge_methods import merge_state_dicts

    _register()
    inputs: dict[str, StateDict] = {"cur": cur, "origin": origin}
    inputs |= {f"t{i}": t for i, t in enumerate(targets)}
    activations = {k: None for k in inputs}
    activations["cur"] = str(cur_stats) if cur_stats else None
    activations["origin"] = str(origin_stats) if origin_stats else None
    params = {
        "learning_rate": float(learning_rate),
        "origin": {k: k == "origin" for k in inputs},
        "activations": activations,
        "rank": int(rank),
        "energy": energy,
        "rotation_strength": float(rotation_strength),
        "off_subspace": float(off_subspace),
        "pairing": pairing,
        "eigengap": bool(eigengap),
        "missing_statistics": "plain",
    }
    with torch.no_grad():
        merged = merge_state_dicts(inputs, "arm", parameters=params, base="cur",
                                   dtype=torch.float32, out_dtype=torch.float32)
    return {k: merged.get(k, cur[k]) for k in cur}


# ------------------------------------------------------------------ diagnostics


def _layers(path: Path):
    from mergekit_arm.statistics import load_statistics

    return load_statistics(path)


def angle_summary(stats_a: Path, stats_b: Path, rank: int, energy: float | None = None,
                  eigengap: bool = False) -> dict:
    """Principal angles (degrees) between the top subspaces of every linear input."""
    from mergekit_arm.rotation import principal_angles, select_subspace

    a, b = _layers(stats_a), _layers(stats_b)
    seen: set[int] = set()
    angles = []
    for name in sorted(a.weight_names & b.weight_names):
        la, lb = a[name], b[name]
        key = id(la.basis)
        if key in seen:  # q/k/v and gate/up share an input: count it once
            continue
        seen.add(key)
        sa = select_subspace(la.basis, la.eigenvalues, la.trace, rank, energy, eigengap)
        sb = select_subspace(lb.basis, lb.eigenvalues, lb.trace, rank, energy, eigengap)
        r = min(sa.shape[1], sb.shape[1])
        angles.append(torch.rad2deg(principal_angles(sa[:, :r], sb[:, :r])))
    return summarize_angles(torch.cat(angles) if angles else torch.zeros(0))


def summarize_angles(deg: torch.Tensor) -> dict:
    if deg.numel() == 0:
        return {"n": 0}
    q = torch.quantile(deg, torch.tensor([0.1, 0.5, 0.9]))
    return {"n": int(deg.numel()), "mean": float(deg.mean()), "p10": float(q[0]),
            "median": float(q[1]), "p90": float(q[2]),
            "frac_gt_45": float((deg > 45).float().mean()),
            "frac_gt_80": float((deg > 80).float().mean())}


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


@dataclass
class StreamRun:
    best_state: StateDict
    best_step: int
    best_val: float
    trajectory: list[dict]


def cosine_rates(eta0: float, steps: int) -> list[float]:
    """``eta_k = eta0 (1 + cos(pi k / K)) / 2`` for k = 0..K-1 (decay towards zero)."""
    return [eta0 * 0.5 * (1 + math.cos(math.pi * k / steps)) for k in range(steps)]


@dataclass(frozen=True)
class Leg:
    """What one stream step moves along: ``d = mean_j (targets_j - source)``, rotated from
    ``source``'s activation subspace (``source_stats``) into the current model's."""

    source: StateDict
    source_stats: Path | None
    targets: tuple[StateDict, ...]
    label: str = ""


def fixed_legs(origin: StateDict, origin_stats: Path | None, targets: Sequence[StateDict],
               steps: int) -> list[Leg]:
    """``mode: fixed``: every step from = origin, to = the targets."""
    return [Leg(origin, origin_stats, tuple(targets), "origin->targets")] * steps


def checkpoint_legs(origin: StateDict, origin_stats: Path | None,
                    checkpoints: Sequence[tuple[str, StateDict, Path]]) -> list[Leg]:
    """``mode: checkpoints``: step t from = c_{t-1} (origin for t = 1), to = c_t."""
    legs, prev, prev_stats, prev_name = [], origin, origin_stats, "origin"
    for name, state, stats in checkpoints:
        legs.append(Leg(prev, prev_stats, (state,), f"{prev_name}->{name}"))
        prev, prev_stats, prev_name = state, stats, name
    return legs


def arm_stream(
    start: StateDict,
    legs: Sequence[Leg],
    calibrator: Calibrator | None,
    val_loss: Callable[[StateDict], float],
    *,
    min_steps: int = 0,
    rates: Sequence[float] | None = None,
    line_search: Sequence[float] | None = None,
    base_rate: float = 0.5,
    rank: int,
    energy: float | None = None,
    rotation_strength: float = 1.0,
    off_subspace: float = 1.0,
    pairing: str = "subspace",
    start_stats: Path | None = None,
    diagnostics: Callable[[int, StateDict, Path | None, Leg], dict] | None = None,
    label: str = "arm",
    log: Callable[[str], None] = print,
) -> StreamRun:
    """Streaming Merging in memory: step k applies ``W <- W + eta_k d_A`` along ``legs[k]``.

    The current model is calibrated before every step (``start_stats``, if given, are the
    start's statistics and save the first pass). ``rates`` is the schedule; with
    ``line_search`` each step tries ``base_rate * m`` for every multiplier and keeps the
    lowest validation loss, stopping early when no candidate improves on the current
    model. The step kept is the one with the lowest validation loss among steps
    ``>= min_steps`` (step 0 = the start).
    """
    import shutil

    needs_stats = rotation_strength != 0.0 or off_subspace != 1.0
    cur = start
    best = StreamRun(start, 0, val_loss(start), [])
    current_val = best.best_val
    best.trajectory.append({"step": 0, "val": current_val})
    for k, leg in enumerate(legs):
        stats = None
        if needs_stats:
            if k == 0 and start_stats is not None:
                # A copy: the kernel refuses one file for base_model and origin.
                stats = calibrator.folder / f"{label}-step0-{Path(start_stats).name}"
                shutil.copyfile(start_stats, stats)
            else:
                stats = calibrator(cur, f"{label}-step{k}")
        record: dict = {"step": k + 1, "leg": leg.label}
        if diagnostics is not None:
            record["diagnostics"] = diagnostics(k, cur, stats, leg)
        targets = list(leg.targets)

        def step(rate: float, cur=cur, stats=stats, leg=leg, targets=targets) -> StateDict:
            return arm_merge(cur, leg.source, targets, stats, leg.source_stats, rate, rank,
                             energy, rotation_strength, off_subspace, pairing)

        if line_search:
            tried = []
            for m in line_search:
                cand = step(base_rate * m)
                tried.append((val_loss(cand), base_rate * m, cand))
            tried.sort(key=lambda t: t[0])
            loss, rate, cand = tried[0]
            record["tried"] = [(r, v) for v, r, _ in tried]
            if loss >= current_val and k + 1 > min_steps:
                record.update({"stopped": True, "val": current_val})
                best.trajectory.append(record)
                log(f"  {label} step {k + 1}: no step size improves validation; stop")
                break
            cur, current_val = cand, loss
        else:
            rate = rates[k]
            cur = step(rate)
            current_val = val_loss(cur)
        record.update({"rate": rate, "val": current_val})
        best.trajectory.append(record)
        log(f"  {label} step {k + 1} ({leg.label}): eta {rate:.4g} val {current_val:.4f}")
        if current_val < best.best_val or best.best_step < min_steps:
            best.best_state, best.best_step, best.best_val = cur, k + 1, current_val
        if not math.isfinite(current_val):
            break
    from mergekit_arm.statistics import clear_cache

    clear_cache()
    return best
