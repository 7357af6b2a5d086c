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

import math
from functools import lru_cache
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, field_validator

from mergekit_arm.errors import ArmConfigError

Pairing = Literal["subspace", "energy"]
MissingStatistics = Literal["error", "plain"]

LearningRate = Annotated[
    float,
    Field(gt=0, allow_inf_nan=False,
          description="eta in W_new = W_cur + eta d_A; required, finite and > 0"),
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
        lines.append(f"`{key}`: {message} (got {item.get('input')!r})")
    return f"{prefix}: " + "; ".join(lines)


def validate_learning_rate(value: Any) -> float:
    """``value`` as a valid learning rate, else :class:`ArmConfigError` naming it."""
    try:
        return _LEARNING_RATE.validate_python(value)
    except ValidationError as error:
        message = str(error.errors()[0].get("msg", "invalid"))
        raise ArmConfigError(
            f"arm: `learning_rate`: {message} (got {value!r}); eta must be finite and > 0 "
            "(0 would leave base_model unchanged, a negative rate steps away from the targets)"
        ) from None


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
    "LearningRate",
    "describe_errors",
    "kernel_parameters",
    "validate_learning_rate",
]
