"""The calibration options: one pydantic model for the API, ``arm-stream`` and ``arm-calibrate``.

:class:`CalibrationSettings` holds what every model of a run must share (the text, how it is
cut and the pass); :class:`CalibrationOptions` adds where and how one model is run. The
stream config's ``calibration:`` section is :class:`CalibrationSettings`;
:func:`add_calibration_options` derives the click options of ``arm-calibrate`` from the
fields of :class:`CalibrationOptions` (names, types, defaults and help), the way
``mergekit.options.add_merge_options`` derives its CLI from ``MergeOptions``.
"""

from __future__ import annotations

import functools
import re
import typing
from collections.abc import Callable
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

TextMode = Literal["paragraph", "line"]
CalibrationMode = Literal["auto", "all-at-once", "layer-sequential"]
CalibrationDtype = Literal["auto", "float32", "bfloat16", "float16"]

_DEVICE = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")


class CalibrationSettings(BaseModel):
    """Calibration text and pass (the same for every model, as the method requires)."""

    model_config = ConfigDict(extra="forbid")

    data: str | None = Field(
        None, description="Calibration text: .txt, .jsonl, .json, .parquet or a saved dataset "
        "folder. Default: the corpus shipped with mergekit-arm.")
    samples: int = Field(128, ge=1, description="Number of texts to use.")
    max_length: int = Field(512, ge=2, description="Tokens per text (longer texts are truncated).")
    batch_size: int = Field(8, ge=1, description="Texts per forward batch.")
    rank: int = Field(64, ge=1, description="Eigenvectors stored per linear input (the most a "
                      "merge can use).")
    text_mode: TextMode = Field("paragraph", description="For .txt data: one sample per "
                                "paragraph or per line.")
    mode: CalibrationMode = Field(
        "auto", description="all-at-once: one forward of the whole model per batch; "
        "layer-sequential: one decoder layer on the device at a time, layers read lazily from "
        "disk (models larger than the GPU or RAM); auto: layer-sequential from 100M parameters "
        "or when all-at-once would not fit.")


class CalibrationOptions(CalibrationSettings):
    """Options of one calibration pass (the flags of ``arm-calibrate``)."""

    device: str = Field("auto", description="auto | cpu | cuda | cuda:N.")
    dtype: CalibrationDtype = Field("auto", description="dtype to run the model in (auto: the "
                                    "checkpoint's).")
    tokenizer: str | None = Field(None, description="Tokenizer folder, when MODEL has none "
                                  "(default: MODEL).")
    trust_remote_code: bool = Field(False, description="Run the model's own code from its "
                                    "folder (transformers trust_remote_code).")

    @field_validator("device")
    @classmethod
    def _known_device(cls, value: str) -> str:
        return known_device(value)


def known_device(value: str) -> str:
    """``value`` when it is a device calibration takes (auto, cpu, cuda, cuda:N), else a
    ValueError naming it (the validator of every config's ``device``)."""
    if not _DEVICE.match(value):
        raise ValueError(f"unknown device {value!r}; use auto, cpu, cuda or cuda:N")
    return value


def _click_type(annotation: Any):
    """The click type of a field annotation (``Literal`` -> Choice, ``X | None`` -> X)."""
    import click

    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if typing.get_origin(annotation) is Literal:
        return click.Choice(list(typing.get_args(annotation)))
    if args and typing.get_origin(annotation) is not Literal and len(args) == 1:
        return _click_type(args[0])
    return {int: int, float: float, str: str, bool: bool}.get(annotation, str)


def _ge(info) -> int | None:
    for item in info.metadata:
        if hasattr(item, "ge"):
            return item.ge
    return None


def add_calibration_options(f: Callable) -> Callable:
    """Decorate a click command with one ``--option`` per :class:`CalibrationOptions` field.

    The command receives ``calibration_options=CalibrationOptions(...)`` instead of the
    individual values; validation errors are reported by click as bad parameters.
    """
    import click

    @functools.wraps(f)
    def wrapper(*args, **kwargs):
        values = {name: kwargs.pop(name) for name in CalibrationOptions.model_fields}
        try:
            kwargs["calibration_options"] = CalibrationOptions(**values)
        except ValidationError as error:
            problems = "; ".join(
                f"--{'-'.join(str(p) for p in e['loc']).replace('_', '-')}: "
                f"{str(e['msg']).removeprefix('Value error, ')}"
                for e in error.errors()
            )
            raise click.UsageError(problems) from None
        return f(*args, **kwargs)

    for name, info in reversed(CalibrationOptions.model_fields.items()):
        flag = name.replace("_", "-")
        kind = _click_type(info.annotation)
        extra: dict[str, Any] = {}
        if kind is bool:
            extra["is_flag"] = True
        elif kind is int and _ge(info) is not None:
            kind = click.IntRange(min=_ge(info))
        wrapper = click.option(
            f"--{flag}", name, type=kind, default=info.default, help=info.description,
            show_default=info.default is not None and kind is not bool, **extra,
        )(wrapper)
    return wrapper


__all__ = [
    "CalibrationDtype",
    "CalibrationMode",
    "CalibrationOptions",
    "CalibrationSettings",
    "TextMode",
    "add_calibration_options",
]
