"""The sections of an ``arm-stream`` config (``checkpoints`` entries, ``schedule``,
``validation``/``selection``, ``watch``), their value types and limits; every section
rejects unknown keys. The top-level :class:`~mergekit_arm.stream.config.StreamConfig`
and loading are :mod:`mergekit_arm.stream.config`.
"""

from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from mergekit_arm.merge_methods.arm_parameters import nonzero_in_float32
from mergekit_arm.stream.recipe_config import check_multipliers

Mode = Literal["fixed", "checkpoints", "watch", "toward"]
ScheduleKind = Literal["constant", "linear", "cosine", "average", "line_search"]
DecayKind = Literal["constant", "linear", "cosine", "average"]
OutDtype = Literal["float32", "bfloat16", "float16"]
Select = Literal["best", "last"]
WatchLegs = Literal["previous", "toward"]

DEFAULT_CANDIDATES = (0.25, 0.5, 1.0, 2.0)
MAX_LEARNING_RATE = 1e45
"""The largest ``learning_rate``/``final_learning_rate`` a stream config accepts."""
MAX_SEED = 2**32 - 1
"""Seeds are 0 .. 2^32-1 (what torch, numpy and random all accept)."""


class _Section(BaseModel):
    """Base of every config section: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid")


ACTIVATIONS_HELP = ("statistics file of this model (`arm-calibrate MODEL FILE` with the "
                    "stream's calibration settings): used instead of calibrating the model")
ORIGIN_KEYS = ("activations", "model")
INTERNAL_KEYS = frozenset({"origin_activations"})
"""Fields written through another key's form (``origin: {model, activations}``; dumps and
saved states hold them flat), left out of the keys an error lists."""


class CheckpointEntry(_Section):
    """One checkpoint: a model folder, its weight ``w_j`` in the displacement and,
    optionally, its statistics file (not recalibrated then)."""

    model: str = Field(description="model folder (Hugging Face format)")
    activations: str | None = Field(None, description=ACTIVATIONS_HELP)
    weight: float = Field(1.0, description="w_j in d = sum_j w_j (c_j - from) / sum_j w_j")

    @field_validator("weight")
    @classmethod
    def _finite(cls, value: float) -> float:
        if not math.isfinite(value):
            raise ValueError("must be a finite number")
        return value


class ScheduleConfig(_Section):
    """How the learning rate (merging coefficient) ``eta_k`` of step ``k`` is chosen."""

    kind: ScheduleKind = Field(
        "constant", description="constant | linear | cosine | average | line_search")
    learning_rate: float = Field(
        gt=0, description="eta at the first step (required; average: default 1, eta_k = lr / k)")
    final_learning_rate: float = Field(
        0.0, ge=0, description="linear/cosine: the rate the decay reaches after the last step"
    )
    decay: DecayKind = Field(
        "constant", description="line_search: the schedule of the rate the candidates multiply"
    )
    candidates: list[float] = Field(
        default_factory=lambda: list(DEFAULT_CANDIDATES),
        min_length=1,
        description="line_search: multipliers of the scheduled rate tried at every step",
    )

    @model_validator(mode="before")
    @classmethod
    def _average_default_rate(cls, data: Any) -> Any:
        """``kind: average`` (or ``decay: average``) needs no rate: eta_k = 1 / k."""
        if isinstance(data, dict) and "learning_rate" not in data and "average" in (
                data.get("kind"), data.get("decay")):
            return {**data, "learning_rate": 1.0}
        return data

    @field_validator("learning_rate", "final_learning_rate")
    @classmethod
    def _finite_rate(cls, value: float, info: ValidationInfo) -> float:
        if not math.isfinite(value):
            raise ValueError("must be a finite number")
        if info.field_name == "learning_rate":
            nonzero_in_float32(value)
        if value > MAX_LEARNING_RATE:
            raise ValueError(
                f"must be at most {MAX_LEARNING_RATE:.0e}: a larger rate moves any weight that "
                "changes by 1e-6 beyond float32's largest value (typical rates are 0.1 to 2)")
        return value

    @field_validator("candidates")
    @classmethod
    def _positive_candidates(cls, values: list[float]) -> list[float]:
        return check_multipliers(values)

    @model_validator(mode="after")
    def _keys_fit_kind(self) -> ScheduleConfig:
        if self.kind != "line_search":
            for key in ("decay", "candidates"):
                if key in self.model_fields_set:
                    raise ValueError(
                        f"`{key}` is only used with kind: line_search (kind is {self.kind})"
                    )
        if self.decay_kind in ("constant", "average") and "final_learning_rate" in self.model_fields_set:
            raise ValueError("`final_learning_rate` needs a decaying schedule (linear/cosine)")
        return self

    @property
    def decay_kind(self) -> DecayKind:
        """The decay of the scheduled rate (``decay`` for line_search, else ``kind``)."""
        return self.decay if self.kind == "line_search" else self.kind  # type: ignore[return-value]


class ValidationConfig(_Section):
    """Held-out text whose mean token loss is measured after every step."""

    data: str | None = Field(None, description="text file/folder; null = the shipped corpus")
    samples: int = Field(64, ge=1, description="number of texts")
    offset: int = Field(0, ge=0, description="skip this many texts first (disjoint from calibration)")
    max_length: int | None = Field(None, ge=2, description="tokens per text; null = calibration's")
    batch_size: int = Field(8, ge=1)
    text_mode: Literal["paragraph", "line"] = "paragraph"


class WatchConfig(_Section):
    """``--watch DIR``: follow a training run's output folder."""

    dir: str | None = Field(None, description="folder to watch; --watch DIR overrides")
    pattern: str = Field("checkpoint-*", description="glob of checkpoint folder names")
    settle_seconds: float = Field(10.0, ge=0, description="a folder must be unchanged this long")
    poll_seconds: float = Field(2.0, gt=0, description="how often the folder is scanned")
    idle_timeout: float = Field(
        1800.0, gt=0, description="stop after this long without a new complete checkpoint"
    )
    max_steps: int | None = Field(None, ge=1, description="stop after this many steps")
    legs: WatchLegs = Field(
        "previous", description="previous: step k goes c_{k-1} -> c_k (origin -> c_1 first); "
        "toward: step k moves the current model toward c_k, W + eta_k R(c_k - W) (with "
        "schedule kind average: the running mean of the saves)")
