"""``merge_method: arm``: thin MergeKit glue around :mod:`mergekit_arm.rotation`.

Roles of the inputs of one tensor group:

* ``base_model`` is ``W_cur``, the model that is updated;
* the input with ``origin: true`` is ``W_from`` (none: the base is its own origin);
* every other input is a target ``W_to_j`` with ``weight`` ``w_j``; with no such
  input the base itself is the single target (single-shot, ExPO-like use).

``W_new = W_cur + learning_rate * d_A`` with ``d_A`` the displacement rotated from
the origin's activation subspace into the base's (see ``docs/method.md``). The roles
and the per-weight plan from the statistics are :mod:`mergekit_arm.merge_methods.arm_plan`.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence

import torch
from mergekit.merge_methods.base import (
    BasePolicy,
    FunctionalGroupMergeMethod,
    InputContract,
    OptionalTensorPolicy,
    PerInput,
    TensorGroup,
)
from mergekit.merge_methods.easy_define import merge_method

from mergekit_arm.errors import ArmConfigError, NonFiniteError
from mergekit_arm.low_rank_update import UpdateFactors, apply_update, step_overflows
from mergekit_arm.merge_methods.arm_checks import (
    check_input_shapes,
    fits,
    narrowest,
    range_problem,
    running_merge_config,
    value_range,
    written_dtype,
)
from mergekit_arm.merge_methods.arm_parameters import (
    DEFAULTS,
    INPUT_DEFAULTS,
    check_merge_parameters,
    kernel_parameters,
    validate_learning_rate,
)
from mergekit_arm.merge_methods.arm_plan import (  # noqa: F401 (re-exported: their old home)
    LOG,
    ArmRoles,
    StepPlan,
    assign_roles,
    statistics_plan,
)
from mergekit_arm.merge_methods.arm_plan import check_finite as _check_finite
from mergekit_arm.merge_methods.arm_skipped import check_no_weight_skipped
from mergekit_arm.merge_methods.arm_sources import source_names
from mergekit_arm.rotation import combine_displacements

PAPER_URL = "https://arxiv.org/abs/2602.03237"


def _result_shows_bad_inputs(learning_rate: float, off_subspace: float) -> bool:
    """Whether a NaN/Inf in any input is sure to reach the result, so that checking the
    result once stands for checking every input.

    ``W_new = (W_cur + eta beta d) + eta C V^T`` (:func:`arm_update`): ``W_cur`` enters
    by addition, and ``d`` by subtractions and real multiplications (``0 * Inf = NaN``,
    :func:`combine_displacements`), so a non-finite input makes ``W_cur`` or ``d``
    non-finite at that element; ``eta beta d`` keeps it there when the float32 factor
    ``eta beta`` is nonzero. Where ``eta beta`` is 0 in float32 (``off_subspace: 0``, or
    a learning rate so small it underflows) the inputs are checked directly.
    """
    return abs(learning_rate * off_subspace) >= torch.finfo(torch.float32).tiny


def _check_result(result: torch.Tensor, group: TensorGroup, name: str, learning_rate: float,
                  off_subspace: float, written: torch.dtype) -> None:
    """NaN/Inf (naming the input that holds it, if one does) and values that overflow the
    dtype the result is written in; one pass over the result."""
    low, high = value_range(result)
    finite = fits(low, high, torch.float64)
    if not finite or not _result_shows_bad_inputs(learning_rate, off_subspace):
        for entry in group.entries:
            _check_finite(entry, name)
    if not finite:
        raise NonFiniteError(
            f"arm produced NaN/Inf for {name} (learning_rate={learning_rate}); lower the "
            "learning rate or check the inputs"
        )
    problem = range_problem(name, low, high, written)
    if problem is not None:
        raise NonFiniteError(f"arm: {problem} (learning_rate={learning_rate})")


def arm_kernel(
    group: TensorGroup,
    learning_rate: float,
    origin: PerInput[bool] = INPUT_DEFAULTS.origin,
    weight: PerInput[float] = INPUT_DEFAULTS.weight,
    activations: PerInput[str | None] = INPUT_DEFAULTS.activations,
    rank: int = DEFAULTS.rank,
    energy: float | None = DEFAULTS.energy,
    rotation_strength: float = DEFAULTS.rotation_strength,
    off_subspace: float = DEFAULTS.off_subspace,
    normalize: bool = DEFAULTS.normalize,
    missing_statistics: str = DEFAULTS.missing_statistics,
    strict_calibration: bool = DEFAULTS.strict_calibration,
    verify_statistics: bool = DEFAULTS.verify_statistics,
    pairing: str = DEFAULTS.pairing,
    eigengap: bool = DEFAULTS.eigengap,
) -> torch.Tensor:
    """One ARM step for one output tensor (see module docstring and docs/method.md).

    The shared parameters are :class:`~mergekit_arm.merge_methods.arm_parameters.ARMParameters`
    (defaults taken from it), validated by it on every call.
    """
    validate_learning_rate(learning_rate)
    params = kernel_parameters(
        rank=rank, energy=energy, rotation_strength=rotation_strength, off_subspace=off_subspace,
        normalize=normalize, missing_statistics=missing_statistics,
        strict_calibration=strict_calibration, verify_statistics=verify_statistics,
        pairing=pairing, eigengap=eigengap,
    )
    name = group.metadata.name or "<unnamed tensor>"
    roles = assign_roles(group, origin)
    cur_tensor = roles.cur.tensor
    target_weights = [float(weight[entry.id]) for entry in roles.targets]
    if normalize and sum(target_weights) == 0:
        raise ArmConfigError(
            f"arm: the targets' weights {target_weights} sum to 0 for {name}, and normalize "
            "divides the displacement by that sum: change a model's `weight`, or set "
            "`normalize: false` in the top-level parameters")
    d = combine_displacements(  # a new float32 tensor: the result is written into it
        roles.origin.tensor,
        [entry.tensor for entry in roles.targets],
        target_weights,
        normalize=normalize,
    )
    plan = statistics_plan(group, roles, activations, params, name, source_names(group))
    if plan.stacked:  # (E, out, in): expert by expert, each with its own entry's factors
        result = d
        for e, factors in enumerate(plan.factors):
            stepped = _step(cur_tensor[e], d[e], factors, plan.transposed, learning_rate,
                            off_subspace)
            if stepped.data_ptr() != result[e].data_ptr():
                result[e].copy_(stepped)
    else:
        result = _step(cur_tensor, d, plan.factors[0], plan.transposed, learning_rate,
                       off_subspace)
    _check_result(result, group, name, learning_rate, off_subspace,
                  written=narrowest(cur_tensor.dtype, written_dtype()))
    return result.to(dtype=cur_tensor.dtype).contiguous()


def _step(w_cur: torch.Tensor, d: torch.Tensor, factors: UpdateFactors | None, transposed: bool,
          learning_rate: float, off_subspace: float) -> torch.Tensor:
    """``W_cur + eta d_A`` of one 2-D matrix, written into ``d`` where the fused step runs."""
    w_cur, d = (w_cur.T, d.T) if transposed else (w_cur, d)
    if step_overflows(learning_rate, off_subspace):  # eta beyond float32: unfused, overflows
        direction = apply_update(torch.zeros_like(d), d, factors, 1.0, off_subspace)
        result = w_cur.to(torch.float32) + float(learning_rate) * direction
    else:
        result = apply_update(w_cur, d, factors, learning_rate, off_subspace, overwrite_d=True)
    return result.T if transposed else result



class ARMMergeMethod(FunctionalGroupMergeMethod):
    """The ``arm`` method: MergeKit's typed-function method, plus a check of the inputs'
    shapes from their checkpoints' headers, done when MergeKit validates a tensor's inputs
    (at planning), so a mismatch names the models before MergeKit's own size check."""

    def validate_inputs(self, input_ids: Sequence[Hashable], base_id: Hashable | None = None, *,
                        group_name: str | None = None) -> None:
        config = running_merge_config()
        if config is not None:
            check_merge_parameters(config)
        super().validate_inputs(input_ids, base_id, group_name=group_name)
        models = list(input_ids) + ([base_id] if base_id is not None and base_id not in input_ids else [])
        check_no_weight_skipped(models)  # once per planned merge: tensors MergeKit would drop
        check_input_shapes(models, group_name)


_TYPED = merge_method(
    arm_kernel,
    name="arm",
    pretty_name="ARM (Activation-guided Rotation-aware Merging)",
    reference_url=PAPER_URL,
    contract=InputContract(base=BasePolicy.REQUIRED, min_inputs=1),
    optional_tensor_policy=OptionalTensorPolicy.PASSTHROUGH_BASE_SINGLETON,
)
arm_merge_method = ARMMergeMethod(_TYPED.spec, arm_kernel)
