"""How ``merge_method: arm`` steps one tensor group: the roles of its inputs
(:func:`assign_roles`) and the :class:`StepPlan` built from the activation statistics
(:func:`statistics_plan`: the subspaces and rotation of each weight, cached per pair of
statistics entries, and the checks of the statistics against the weights).

The kernel that takes the step is :mod:`mergekit_arm.merge_methods.arm`.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Hashable, Mapping
from dataclasses import dataclass

import torch
from mergekit.merge_methods.base import PerInput, TensorEntry, TensorGroup

from mergekit_arm.errors import ArmConfigError, NonFiniteError, StatisticsError
from mergekit_arm.low_rank_update import UpdateFactors, update_factors
from mergekit_arm.merge_methods.arm_parameters import ARMParameters
from mergekit_arm.merge_methods.arm_sources import vocabulary_realigned
from mergekit_arm.rotation import (
    SUPPORTED_EIGENVALUE_FLOOR,
    RotationInputs,
    cap_to_supported,
    select_subspace,
)
from mergekit_arm.statistics import (
    ActivationStatistics,
    LayerStatistics,
    load_statistics,
    same_model,
)
from mergekit_arm.weight_inputs import parse_entry, weight_input

# the kernel's logger, as before the plan moved here (the warnings name the method's module)
LOG = logging.getLogger("mergekit_arm.merge_methods.arm")


@dataclass(frozen=True)
class ArmRoles:
    """Which entry of a tensor group plays which part in the step."""

    cur: TensorEntry
    origin: TensorEntry  # may be ``cur`` itself
    targets: tuple[TensorEntry, ...]


def _label(entry: TensorEntry) -> str:
    return str(entry.id)


def assign_roles(group: TensorGroup, origin: dict) -> ArmRoles:
    """Split a group into current model, origin and targets (see
    :mod:`mergekit_arm.merge_methods.arm`)."""
    cur = group.base
    if cur is None:
        raise ArmConfigError(
            "merge_method: arm needs `base_model:` (the model the step is applied to)"
        )
    origins = [entry for entry in group.entries if origin[entry.id]]
    if len(origins) > 1:
        names = ", ".join(_label(e) for e in origins)
        raise ArmConfigError(
            f"merge_method: arm: {len(origins)} inputs are marked `origin: true` ({names}); "
            "mark exactly one (the model the displacement starts from), or none to use base_model"
        )
    origin_entry = origins[0] if origins else cur
    targets = tuple(
        entry for entry in group.entries if entry is not cur and entry is not origin_entry
    )
    if not targets:
        if origin_entry is cur:
            raise ArmConfigError(
                "merge_method: arm has nothing to merge: the only input is base_model. Add the "
                "origin model (with `origin: true`) and/or the checkpoints to step towards"
            )
        targets = (cur,)
    return ArmRoles(cur=cur, origin=origin_entry, targets=targets)


def check_finite(entry: TensorEntry, name: str) -> None:
    tensor = entry.tensor
    if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
        bad = int((~torch.isfinite(tensor)).sum())
        raise NonFiniteError(
            f"tensor {name} of model {_label(entry)} holds {bad} NaN/Inf values; "
            "the checkpoint is corrupt or diverged: use another checkpoint"
        )


def _open_statistics(path: str | None, entry: TensorEntry, role: str) -> ActivationStatistics | None:
    if path is None or path == "":
        return None
    try:
        return load_statistics(path)
    except StatisticsError as error:
        raise StatisticsError(f"{error} (the `activations` of {role} {_label(entry)})") from error


_FACTORS_LOCK = threading.Lock()
_FACTORS: OrderedDict[tuple, UpdateFactors | None] = OrderedDict()
_FACTORS_SIZE = 16


def _update_factors(from_stats: ActivationStatistics, from_key: str,
                    cur_stats: ActivationStatistics, cur_key: str,
                    params: ARMParameters, device: torch.device) -> UpdateFactors | None:
    """Subspaces and rotation of one weight from entry ``from_key`` of the origin's file and
    ``cur_key`` of the base's (they differ under MergeKit ``slices:``), computed once per
    pair of entries (weights sharing an input, q/k/v and gate/up, share them)."""
    key = (from_stats, from_stats.aliases.get(from_key, from_key), cur_stats,
           cur_stats.aliases.get(cur_key, cur_key), params, str(device))
    with _FACTORS_LOCK:
        if key in _FACTORS:
            _FACTORS.move_to_end(key)
            return _FACTORS[key]
    cur_layer, from_layer = cur_stats[cur_key], from_stats[from_key]
    rank = _supported_rank(params.rank, cur_key,
                           ((cur_stats, cur_layer), (from_stats, from_layer)))
    if rank == 0:  # no direction is supported by the tokens: the plain step (warned)
        return None
    select = {"rank": rank, "energy": params.energy, "eigengap": params.eigengap}
    s_cur = select_subspace(cur_layer.basis, cur_layer.eigenvalues, cur_layer.trace, **select)
    s_from = select_subspace(from_layer.basis, from_layer.eigenvalues, from_layer.trace, **select)
    inputs = RotationInputs(s_from.to(device), s_cur.to(device), params.rotation_strength,
                            pairing=params.pairing, eig_from=from_layer.eigenvalues.to(device),
                            eig_cur=cur_layer.eigenvalues.to(device))
    factors = update_factors(inputs, params.off_subspace)
    with _FACTORS_LOCK:
        _FACTORS[key] = factors
        while len(_FACTORS) > _FACTORS_SIZE:
            _FACTORS.popitem(last=False)
    return factors


_CAPPED_LOCK = threading.Lock()
_CAPPED: set[tuple[str, int]] = set()  # (statistics file, rank) already warned about


def _supported_rank(rank: int, name: str,
                    entries: tuple[tuple[ActivationStatistics, LayerStatistics], ...]) -> int:
    """``rank``, capped to the fewest directions the entries' tokens support
    (:func:`~mergekit_arm.rotation.cap_to_supported`); one warning per file and rank."""
    capped = rank
    for stats, layer in entries:
        supported = layer.supported_rank
        entry_cap = cap_to_supported(rank, layer.rank, layer.in_features, supported)
        if entry_cap >= rank:
            continue
        capped = min(capped, entry_cap)
        with _CAPPED_LOCK:
            if (str(stats.path), rank) in _CAPPED:
                continue
            _CAPPED.add((str(stats.path), rank))
        LOG.warning(
            "arm: `rank: %d` is more than the statistics in %s support for some weights (e.g. "
            "%s: %d directions, from %s tokens; eigenvalues above %g of the largest): each such "
            "weight is merged with the rank its statistics support (0: the plain step). "
            "Calibrate on more text (arm-calibrate --samples, longer texts) for the full rank",
            rank, stats.path, name, supported, layer.tokens if layer.tokens is not None else "?",
            SUPPORTED_EIGENVALUE_FLOOR)
    return capped


@dataclass(frozen=True)
class StepPlan:
    """How one weight is stepped: ``factors`` per 2-D matrix (one, or one per expert of a
    stacked ``(E, out, in)`` tensor; None: the plain step), and whether the matrices are
    stored ``(in, out)`` (GPT-2 ``Conv1D``)."""

    factors: tuple[UpdateFactors | None, ...]
    transposed: bool = False
    stacked: bool = False


_PLAIN = StepPlan((None,))


def _plain_plan(tensor: torch.Tensor) -> StepPlan:
    if tensor.ndim == 3:
        return StepPlan((None,) * tensor.shape[0], stacked=True)
    return _PLAIN


def _described(source: str, key: str, output: str) -> str:
    """A weight as messages name it: its name in its own model, the statistics entry it
    takes where that differs (a tied embedding), MergeKit's output tensor where that differs
    (``slices:``)."""
    text = source if key == source else f"{source} (tied to {key}, whose statistics it takes)"
    return text if source == output else f"{text}, read for MergeKit's output tensor {output}"


def _missing_entry_advice(stats: ActivationStatistics, roles: ArmRoles) -> str:
    """The fix for a file with no entry for a weight: calibrate the model, unless the file
    was computed from that very model (then calibration measured no weight of that name:
    an older mergekit-arm, or a checkpoint name transformers renames at run time)."""
    model = next((_label(r) for r in (roles.cur, roles.origin)
                  if same_model(stats.model, _label(r))), None)
    if model is None:
        return "Run arm-calibrate on the model(s) and set `activations`"
    return (f"The file was computed from this very model ({model}), so either an older "
            "mergekit-arm wrote it (run arm-calibrate again: it records a weight transformers "
            "renames at run time under its checkpoint name too, e.g. GPT-NeoX's embed_out), "
            "or the architecture stores this weight in a layout transformers converts at run "
            "time in a way calibration cannot follow, which is not supported yet (README, "
            "Supported architectures)")


def statistics_plan(group: TensorGroup, roles: ArmRoles, activations: PerInput[str | None],
                     params: ARMParameters, name: str,
                     sources: Mapping[Hashable, str] | None = None) -> StepPlan:
    """The :class:`StepPlan` of this weight; its entries come from
    :func:`mergekit_arm.weight_inputs.weight_input`, asked with each input's own name of
    the tensor (``sources``: :func:`~mergekit_arm.merge_methods.arm_sources.source_names`;
    under MergeKit ``slices:`` the base and the origin may read different layers)."""
    cur_tensor = roles.cur.tensor
    rotates = roles.origin is not roles.cur and (
        params.rotation_strength != 0.0 or params.off_subspace != 1.0)
    if cur_tensor.ndim not in (2, 3) or not (rotates or params.off_subspace != 1.0):
        return _plain_plan(cur_tensor)
    cur_path = activations[roles.cur.id]
    from_path = activations[roles.origin.id] if roles.origin is not roles.cur else cur_path
    if rotates and from_path and from_path == cur_path:
        raise ArmConfigError(
            f"arm: the origin {_label(roles.origin)} uses the same `activations` file as "
            f"base_model ({cur_path}); it most likely inherited the top-level value because "
            "it sets none of its own, which would turn the rotation off. Give the origin its "
            "own statistics: `parameters: {origin: true, activations: <origin stats>}`"
        )
    cur_stats = _open_statistics(cur_path, roles.cur, "base_model")
    from_stats = _open_statistics(from_path, roles.origin, "origin") if rotates else cur_stats
    have = [s for s in (cur_stats, from_stats) if s is not None]
    sources = sources or {}
    cur_name = sources.get(roles.cur.id, name)
    from_name = sources.get(roles.origin.id, name)
    mapping = {  # a tie is the architecture's: either file may declare it (older ones do not)
        "not_linear": frozenset().union(*(s.other_2d_weights for s in have)),
        "have_statistics": bool(have), "vocabulary_axis": group.metadata.vocabulary_axis,
        "tied": {k: v for s in reversed(have) for k, v in s.tied_weights.items()},
    }
    target = weight_input(cur_name, tuple(cur_tensor.shape), **mapping)
    origin_target = weight_input(from_name, tuple(cur_tensor.shape), **mapping)
    if target is None or origin_target is None:
        return _plain_plan(cur_tensor)
    missing_file = cur_stats is None or from_stats is None
    lacking = [] if missing_file else [
        (stats, entry) for stats, entries in ((cur_stats, target.entries),
                                              (from_stats, origin_target.entries))
        for entry in entries if entry not in stats]
    if missing_file or lacking:
        if params.missing_statistics == "error":
            where = (
                "no `activations` file was given for "
                + ("base_model" if cur_stats is None else f"the origin {_label(roles.origin)}")
                if missing_file
                else ("" if lacking[0][1] in (cur_name, from_name) else
                      f"its entry {lacking[0][1]} ") + f"not found in {lacking[0][0].path}"
            )
            kind = (f"the stacked experts weight ({len(target.entries)} experts)"
                    if target.stacked else "the linear weight")
            raise StatisticsError(
                f"arm: no activation statistics for {kind} "
                f"{_described(cur_name, cur_name, name)}: {where}. "
                + ("Run arm-calibrate on the model(s) and set `activations`" if missing_file
                   else _missing_entry_advice(lacking[0][0], roles))
                + ", or set `missing_statistics: plain` to take the plain step W_cur + eta*d "
                "for it"
            )
        return _plain_plan(cur_tensor)
    if params.strict_calibration and rotates and (
        cur_stats.calibration_fingerprint != from_stats.calibration_fingerprint
    ):
        raise StatisticsError(
            f"arm: {cur_stats.path} and {from_stats.path} were computed on different "
            "calibration tokens; subspaces from different samples differ by noise about as "
            "large as the SFT drift. Re-run arm-calibrate on both models with the same "
            "--data/--samples/--max-length (or set strict_calibration: false)"
        )
    transposed = target.entries[0] in cur_stats.transposed  # GPT-2 Conv1D (in, out): W^T
    realigned = vocabulary_realigned(group)
    factors = []
    for index, (entry, from_entry) in enumerate(zip(target.entries, origin_target.entries)):
        cur_matrix = target.matrix(cur_tensor, index)
        checks = ((cur_stats, entry, roles.cur, cur_name),
                  (from_stats, from_entry, roles.origin, from_name))
        if params.verify_statistics and not realigned:  # realigned rows: no probe to compare
            for stats, key, role, source in checks[:2 if rotates else 1]:
                _check_weight(stats, key, role, target.matrix(role.tensor, index),
                              _described(source, parse_entry(key)[0], name))
        in_features = cur_matrix.shape[0 if transposed else 1]
        for stats, key, role, source in checks:
            if stats[key].in_features != in_features:
                raise StatisticsError(
                    f"arm: statistics for {key} in {stats.path} (the `activations` of "
                    f"{_label(role)}) have input size {stats[key].in_features}, but the "
                    f"weight {_described(source, source, name)} is {tuple(cur_matrix.shape)}: "
                    "the file comes from another architecture; run arm-calibrate on this model"
                )
        factors.append(_update_factors(from_stats, from_entry, cur_stats, entry, params,
                                       cur_tensor.device))
    return StepPlan(tuple(factors), transposed, target.stacked)


def _check_weight(stats: ActivationStatistics, name: str, entry: TensorEntry,
                  matrix: torch.Tensor | None = None, described: str | None = None) -> None:
    """``stats.check_weight`` of entry ``name`` against ``matrix`` (default: the input's
    tensor; an expert's slice for stacked experts), the weight named as ``described`` (see
    :func:`_described`); a probe mismatch caused by NaN/Inf weights is reported as such."""
    try:
        stats.check_weight(name, entry.tensor if matrix is None else matrix, _label(entry),
                           tensor=described)
    except StatisticsError:
        check_finite(entry, described or name)
        raise

