"""The parameters of ``merge_method: arm``: one typed definition, used everywhere.

* :class:`ARMParameters`: every shared (top-level) kernel parameter except the per-step
  ``learning_rate``. The kernel validates its arguments with it, the stream config's
  ``arm:`` section *is* it, and README's parameter table is checked against it.
* :class:`ARMInputParameters`: the per-model parameters (``origin``, ``weight``,
  ``activations``; a top-level ``activations`` is ``base_model``'s).
* :data:`LearningRate`: ``eta`` in ``W_new = W_cur + eta d_A``, required, finite, > 0
  (``0`` would be a silent no-op, a negative one steps away from the checkpoints), the
  same rule for ``mergekit-yaml`` and ``arm-stream``.
"""

from __future__ import annotations

import difflib
import math
from functools import lru_cache
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    field_validator,
)

from mergekit_arm._yaml import short_repr
from mergekit_arm.errors import ArmConfigError, ArmError

Pairing = Literal["subspace", "energy"]
MissingStatistics = Literal["error", "plain"]

FLOAT32_SMALLEST = 2.0 ** -149  # the smallest positive float32 (subnormal); half of it rounds to 0


def nonzero_in_float32(value: float) -> float:
    """``value`` unless it rounds to 0 in float32, the dtype of the step: a rate below
    ``2^-150`` would leave every weight unchanged without a word."""
    if 0 < value <= FLOAT32_SMALLEST / 2:
        raise ValueError(f"is 0 in float32 (the step's dtype; the smallest rate is {FLOAT32_SMALLEST:.1e})")
    return value


LearningRate = Annotated[
    float,
    Field(gt=0, allow_inf_nan=False,
          description="eta in W_new = W_cur + eta d_A; required, finite and > 0"),
    AfterValidator(nonzero_in_float32),
]


def _finite(value: float) -> float:
    if not math.isfinite(value):
        raise ValueError("must be a finite number")
    return value


class ARMParameters(BaseModel):
    """Shared parameters of one ARM merge (``parameters:`` at the top level of a MergeKit
    config, or the ``arm:`` section of an ``arm-stream`` config)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    rank: int = Field(64, ge=1, description="leading eigen-directions used (capped by the file)")
    energy: float | None = Field(
        None, gt=0, le=1,
        description="smallest r reaching this fraction of E[|x|^2], capped by rank; null = off",
    )
    eigengap: bool = Field(
        False, description="then move the cut to the largest relative gap l_k/l_{k+1}, k in [r/2, r]"
    )
    rotation_strength: float = Field(
        1.0, description="gamma, scales every principal angle; 0 = no rotation"
    )
    off_subspace: float = Field(
        1.0, ge=0, description="beta, share of the rotated displacement kept outside span(S_cur)"
    )
    pairing: Pairing = Field(
        "subspace",
        description="subspace: principal-vector direct rotation; energy: energy-weighted Procrustes",
    )
    normalize: bool = Field(True, description="divide d by sum_j w_j")
    missing_statistics: MissingStatistics = Field(
        "error", description="plain: a linear weight without statistics takes the plain step"
    )
    strict_calibration: bool = Field(
        True, description="refuse statistics computed on different calibration tokens"
    )
    verify_statistics: bool = Field(
        True, description="check each statistics file belongs to the model it is given"
    )

    @field_validator("rotation_strength", "off_subspace")
    @classmethod
    def _finite_factor(cls, value: float) -> float:
        return _finite(value)

    def merge_parameters(self) -> dict[str, Any]:
        """The top-level MergeKit ``parameters`` dict (add ``learning_rate`` and
        ``activations`` per step)."""
        return self.model_dump()


class ARMInputParameters(BaseModel):
    """Per-model parameters (``models: - model: ... parameters: {...}``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    origin: bool = Field(
        False, description="marks W_from; at most one input; none: base_model is the origin"
    )
    weight: float = Field(1.0, description="w_j of a target in d = sum_j w_j (W_to_j - W_from)")
    activations: str | None = Field(
        None, description="statistics file of that model; top level = base_model's"
    )

    @field_validator("weight")
    @classmethod
    def _finite_weight(cls, value: float) -> float:
        return _finite(value)


DEFAULTS = ARMParameters()
INPUT_DEFAULTS = ARMInputParameters()
_LEARNING_RATE = TypeAdapter(LearningRate)


def describe_errors(error: ValidationError, prefix: str = "arm") -> str:
    """``arm: `rank`: Input should be greater than or equal to 1 (got 0)``, one per problem."""
    lines = []
    for item in error.errors():
        key = ".".join(str(part) for part in item.get("loc", ())) or "(parameters)"
        message = str(item.get("msg", "invalid")).removeprefix("Value error, ")
        if item.get("type") == "extra_forbidden":
            message = f"unknown parameter (allowed: {', '.join(ARMParameters.model_fields)})"
        lines.append(f"`{key}`: {message} (got {short_repr(item.get('input'))})")
    return f"{prefix}: " + "; ".join(lines)


def validate_learning_rate(value: Any) -> float:
    """``value`` as a valid learning rate, else :class:`ArmConfigError` naming it."""
    try:
        return _LEARNING_RATE.validate_python(value)
    except ValidationError as error:
        message = str(error.errors()[0].get("msg", "invalid"))
        raise ArmConfigError(
            f"arm: `learning_rate`: {message} (got {short_repr(value)}); eta must be finite and > 0 "
            "(0 would leave base_model unchanged, a negative rate steps away from the targets)"
        ) from None


class MergeParameterError(ArmError):
    """A ``merge_method: arm`` config sets an unknown parameter, sets a shared one where
    MergeKit does not read it, or lacks ``learning_rate``. Not a ``ValueError``: raised
    while MergeKit plans, it must reach the user as is."""


SHARED_KEYS = ("learning_rate", *ARMParameters.model_fields)
INPUT_KEYS = tuple(ARMInputParameters.model_fields)
_EXAMPLE = "`parameters: {learning_rate: 0.5}` at the top level of the config"


def _parameter_scopes(config: Any) -> list[tuple[str, dict[str, Any], bool]]:
    """``(where, settings, shared)`` for every ``parameters`` mapping of a MergeKit config
    (``shared``: MergeKit reads the shared parameters, e.g. ``learning_rate``, there)."""
    scopes: list[tuple[str, dict[str, Any], bool]] = []

    def add(where: str, holder: Any, shared: bool) -> None:
        settings = getattr(holder, "parameters", None)
        if settings:
            scopes.append((f"{where}parameters", dict(settings), shared))

    def add_group(prefix: str, group: Any) -> None:
        add(prefix, group, True)
        for i, model in enumerate(getattr(group, "models", None) or []):
            add(f"{prefix}models[{i}].", model, False)
        for i, out_slice in enumerate(getattr(group, "slices", None) or []):
            add(f"{prefix}slices[{i}].", out_slice, True)
            for j, source in enumerate(out_slice.sources):
                add(f"{prefix}slices[{i}].sources[{j}].", source, False)

    add_group("", config)
    for name, module in (getattr(config, "modules", None) or {}).items():
        add_group(f"modules.{name}.", module)
    return scopes


def check_merge_parameters(config: Any) -> None:
    """Refuse, naming the key and the fix, a MergeKit config of ``merge_method: arm`` whose
    parameters MergeKit would ignore or miss: an unknown key (a misspelling), a shared
    parameter set per model (MergeKit reads those only in shared scopes), no
    ``learning_rate`` in any shared scope. Other methods' configs pass unchecked."""
    if getattr(config, "merge_method", None) != "arm":
        return
    rate_set = False
    for where, settings, shared in _parameter_scopes(config):
        for key in settings:
            if key not in SHARED_KEYS and key not in INPUT_KEYS:
                close = difflib.get_close_matches(str(key), SHARED_KEYS + INPUT_KEYS, n=1)
                hint = f"did you mean `{close[0]}`? " if close else ""
                raise MergeParameterError(
                    f"merge_method arm: unknown parameter `{key}` in `{where}`: {hint}arm's "
                    f"parameters are {', '.join(SHARED_KEYS + INPUT_KEYS)}")
            if key in SHARED_KEYS and not shared:
                raise MergeParameterError(
                    f"merge_method arm: `{key}` is set in a model's parameters (`{where}`), "
                    f"where MergeKit never reads it (per model it reads only "
                    f"{', '.join(INPUT_KEYS)}): move it to the top-level `parameters`")
            rate_set = rate_set or (shared and key == "learning_rate")
    if not rate_set:
        raise MergeParameterError(
            "merge_method arm needs `learning_rate` (eta in W_new = W_cur + eta d_A, finite "
            f"and > 0), and the config sets none: add {_EXAMPLE}")


@lru_cache(maxsize=256)
def kernel_parameters(**values: Any) -> ARMParameters:
    """:class:`ARMParameters` from the kernel's arguments (cached: called once per tensor),
    :class:`ArmConfigError` naming every bad one."""
    try:
        return ARMParameters(**values)
    except ValidationError as error:
        raise ArmConfigError(describe_errors(error)) from None


__all__ = [
    "ARMInputParameters",
    "ARMParameters",
    "DEFAULTS",
    "INPUT_DEFAULTS",
    "INPUT_KEYS",
    "SHARED_KEYS",
    "LearningRate",
    "MergeParameterError",
    "check_merge_parameters",
    "describe_errors",
    "kernel_parameters",
    "validate_learning_rate",
]
