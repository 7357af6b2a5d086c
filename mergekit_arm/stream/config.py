"""The ``arm-stream`` configuration: pydantic models and YAML loading with clear errors.

Every section rejects unknown keys (``extra="forbid"``); :func:`load_config` turns a
validation error into one :class:`~mergekit_arm.errors.ArmConfigError` that names the
file and the dotted key path (``schedule.learning_rate``, ``checkpoints[1].model``).
Paths are relative to the current directory (as in ``mergekit-yaml``);
:meth:`StreamConfig.resolved` makes them absolute. The sections (``schedule``,
``validation``, ``watch``, ``checkpoints`` entries) are
:mod:`mergekit_arm.stream.config_sections`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, get_args

from pydantic import (
    BaseModel,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from mergekit_arm._yaml import load_yaml_file, short_repr
from mergekit_arm.calibration.options import CalibrationSettings, known_device
from mergekit_arm.errors import ArmConfigError
from mergekit_arm.merge_methods.arm_parameters import ARMParameters
from mergekit_arm.stream.config_sections import (  # noqa: F401 (re-exported: their old home)
    ACTIVATIONS_HELP,
    DEFAULT_CANDIDATES,
    INTERNAL_KEYS,
    MAX_LEARNING_RATE,
    MAX_SEED,
    ORIGIN_KEYS,
    CheckpointEntry,
    DecayKind,
    Mode,
    OutDtype,
    ScheduleConfig,
    ScheduleKind,
    Select,
    ValidationConfig,
    WatchConfig,
    _Section,
)
from mergekit_arm.stream.recipe_config import (
    START_AVERAGE,
    BlockSearchConfig,
    selection_problem,
)


class StreamConfig(_Section):
    """A Streaming Merging run: which models, how many steps, which step sizes."""

    mode: Mode = Field("fixed", description="fixed | checkpoints | watch | toward")
    origin: str = Field(description="the model SFT started from (W_from of the first step); "
                        "or {model: PATH, activations: FILE}")
    origin_activations: str | None = Field(
        None, description="set by `origin: {model, activations}`: the origin's statistics file")
    checkpoints: list[CheckpointEntry] = Field(default_factory=list)
    start: str | None = Field(
        None, description="model the trajectory starts from; null = mode's default"
    )
    steps: int | None = Field(None, ge=1, description="number of steps")
    schedule: ScheduleConfig
    calibration: CalibrationSettings = Field(default_factory=CalibrationSettings)
    validation: ValidationConfig | None = None
    selection: ValidationConfig | None = Field(
        None, description="held-out text the in-step searches (line search, blocks) are "
        "scored on; null = validation. Must differ from validation")
    blocks: BlockSearchConfig | None = Field(
        None, description="per-block step sizes by coordinate search (needs `selection`)")
    arm: ARMParameters = Field(
        default_factory=ARMParameters, description="the merge_method: arm parameters of every step"
    )
    watch: WatchConfig = Field(default_factory=WatchConfig)
    select: Select | None = Field(
        None, description="final model: best (lowest held-out loss, step 0 included) or last; "
        "null = best with validation, last without"
    )
    patience: int | None = Field(
        None, ge=1, description="stop after this many steps without a lower held-out loss"
    )
    save_every: int | None = Field(
        None, ge=1, description="save the current model as out/steps/step-k every N steps"
    )
    tokenizer: str | None = Field(None, description="tokenizer folder; null = origin's")
    out_dtype: OutDtype | None = Field(None, description="dtype of out/model; null = origin's")
    device: str = Field("auto", description="auto | cpu | cuda | cuda:N")
    seed: int = Field(0, ge=0, le=MAX_SEED, description="torch RNG seed of the run, 0 to 2^32-1")
    trust_remote_code: bool = False

    @field_validator("device")
    @classmethod
    def _known_device(cls, value: str) -> str:
        """The forms calibration takes (``cpu:0`` passed here, then failed in calibration)."""
        return known_device(value)

    @model_validator(mode="before")
    @classmethod
    def _origin_entry(cls, data: Any) -> Any:
        """``origin: {model: PATH, activations: FILE}`` -> ``origin`` and its statistics file."""
        if not isinstance(data, dict):
            return data
        origin = data.get("origin")
        if not isinstance(origin, dict):
            return data
        unknown = sorted(str(key) for key in origin if key not in ORIGIN_KEYS)
        if unknown:
            raise ValueError(f"unknown key `origin.{unknown[0]}` (allowed here: "
                             f"{', '.join(ORIGIN_KEYS)})")
        if not isinstance(origin.get("model"), str):
            raise ValueError("`origin` as a mapping needs `model: PATH` (and optionally "
                             "`activations: FILE`)")
        data = {**data, "origin": origin["model"]}
        if origin.get("activations") is not None:
            data["origin_activations"] = origin["activations"]
        return data

    @field_validator("checkpoints", mode="before")
    @classmethod
    def _bare_paths(cls, value: Any) -> Any:
        """Allow ``- /path`` as a shorthand for ``- model: /path``."""
        if isinstance(value, list):
            return [{"model": v} if isinstance(v, str) else v for v in value]
        return value

    @model_validator(mode="after")
    def _consistent(self) -> StreamConfig:
        if self.mode == "fixed":
            if not self.checkpoints:
                raise ValueError("mode fixed needs at least one entry in `checkpoints`")
            if self.steps is None:
                raise ValueError("mode fixed needs `steps` (the number of merge steps)")
        elif self.mode in ("checkpoints", "toward"):
            if not self.checkpoints:
                raise ValueError(
                    f"mode {self.mode} needs the checkpoints in order in `checkpoints`")
            if self.steps is not None and self.steps > len(self.checkpoints):
                raise ValueError(
                    f"`steps` is {self.steps} but mode {self.mode} has only "
                    f"{len(self.checkpoints)} checkpoints (one step per checkpoint)"
                )
        else:  # watch
            if self.checkpoints:
                raise ValueError(
                    "mode watch takes its checkpoints from the watched folder; remove `checkpoints`"
                )
            if self.steps is not None:
                raise ValueError("mode watch: use `watch.max_steps` instead of `steps`")
            if (self.schedule.decay_kind not in ("constant", "average")  # eta_k = lr / k
                    and self.watch.max_steps is None):
                raise ValueError(
                    f"a {self.schedule.decay_kind} decay needs a known number of steps: "
                    "set `watch.max_steps`"
                )
        if self.mode != "watch" and self.watch.legs == "toward":
            raise ValueError(
                f"`watch.legs: toward` chooses the legs of mode watch, but mode is {self.mode}: "
                "remove it (mode toward moves toward each listed checkpoint)")
        self._check_weights()
        if self.start == START_AVERAGE and self.mode != "fixed":
            raise ValueError("`start: average` (the average of the fixed set) needs mode fixed")
        self._check_selection()
        if self.schedule.kind == "line_search" and self.validation is None:
            raise ValueError("schedule kind line_search needs a `validation` section (held-out text)")
        if self.validation is None:
            for key in ("patience",) + (("select",) if self.select == "best" else ()):
                if key in self.model_fields_set:
                    raise ValueError(
                        f"`{key}` compares held-out losses: it needs a `validation` section"
                    )
        if self.arm.rank > self.calibration.rank:
            raise ValueError(
                f"arm.rank ({self.arm.rank}) exceeds calibration.rank ({self.calibration.rank}), "
                "the number of directions stored; raise calibration.rank or lower arm.rank"
            )
        return self

    def _check_weights(self) -> None:
        """With ``arm.normalize``, d divides by the sum of the weights combined in one step
        (all of them in mode fixed, each one alone otherwise): that sum must not be 0."""
        if not self.arm.normalize or not self.checkpoints:
            return
        weights = [c.weight for c in self.checkpoints]
        if self.mode == "fixed" and sum(weights) == 0:
            raise ValueError(
                f"the checkpoints' weights {weights} sum to 0, and arm.normalize divides the "
                "displacement by that sum: change a weight, or set `arm: {normalize: false}`")
        zero = [i for i, w in enumerate(weights) if w == 0]
        if self.mode != "fixed" and zero:
            raise ValueError(
                f"`checkpoints[{zero[0]}].weight` is 0, and mode {self.mode} merges each "
                "checkpoint alone, dividing by its weight (arm.normalize): give it a non-zero "
                "weight or remove it")

    def _check_selection(self) -> None:
        problem = selection_problem(self.selection, self.validation, self.schedule.kind,
                                    self.blocks is not None)
        if problem is not None:
            raise ValueError(problem)

    # -- derived --------------------------------------------------------------------
    def start_path(self) -> str:
        """The model the trajectory starts from (``start``, else the mode's default)."""
        if self.start is not None:
            return self.start
        if self.mode == "fixed":
            return self.checkpoints[-1].model
        return self.origin

    def toward_legs(self) -> bool:
        """Whether step k moves the current model toward the k-th checkpoint (``source=None``):
        mode toward, or mode watch with ``watch.legs: toward``."""
        return self.mode == "toward" or (self.mode == "watch" and self.watch.legs == "toward")

    def total_steps(self) -> int | None:
        """Number of steps (None: watch mode without ``max_steps``, until idle)."""
        if self.mode == "fixed":
            return self.steps
        if self.mode in ("checkpoints", "toward"):
            return self.steps if self.steps is not None else len(self.checkpoints)
        return self.watch.max_steps

    def starts_from_average(self) -> bool:
        """``start: average``: the trajectory starts at the weighted mean of the fixed set."""
        return self.start == START_AVERAGE

    def select_rule(self) -> Select:
        """Which step becomes the final model (``select``, else best iff validated)."""
        if self.select is not None:
            return self.select
        return "best" if self.validation is not None else "last"

    def validation_max_length(self) -> int:
        """Tokens per validation text."""
        assert self.validation is not None
        return self.validation.max_length or self.calibration.max_length

    def given_statistics(self) -> list[tuple[str, str, str]]:
        """``(config key, model, statistics file)`` of every model given with ``activations``."""
        given = [("origin", self.origin, self.origin_activations)]
        given += [(f"checkpoints[{i}]", c.model, c.activations) for i, c in enumerate(self.checkpoints)]
        return [(key, model, file) for key, model, file in given if file is not None]

    def resolved(self) -> StreamConfig:
        """A copy with every path made absolute (relative to the current directory); model
        references (Hub ids, ``base+adapter``) replaced by their local folders."""
        from mergekit_arm.model_refs import local_model_path

        def absolute(path: str | None) -> str | None:
            return None if path is None else str(Path(path).expanduser().resolve())

        def local(value: Any, key: str) -> Any:  # Hub ids and base+adapter: their folders
            if isinstance(value, dict) and isinstance(value.get("model"), str):
                return {**value, "model": local(value["model"], f"{key}.model")}
            if not isinstance(value, str):
                return value
            return local_model_path(value, f"`{key}`", trust_remote_code=self.trust_remote_code)

        data = self.model_dump(exclude_unset=True)  # keeps which keys the user set
        for key in ("origin", "start"):
            if data.get(key) is not None and not (key == "start" and data[key] == START_AVERAGE):
                data[key] = local(data[key], key)
        if data.get("tokenizer") is not None:
            data["tokenizer"] = absolute(data["tokenizer"])
        if data.get("origin_activations") is not None:  # from origin: {model, activations}
            data["origin_activations"] = absolute(data["origin_activations"])
        for index, entry in enumerate(data.get("checkpoints", [])):
            entry["model"] = local(entry["model"], f"checkpoints[{index}].model")
            if entry.get("activations") is not None:
                entry["activations"] = absolute(entry["activations"])
        for section in ("calibration", "validation", "selection", "watch"):
            key = "dir" if section == "watch" else "data"
            if isinstance(data.get(section), dict) and data[section].get(key) is not None:
                data[section][key] = absolute(data[section][key])
        return StreamConfig.model_validate(data)


# -- loading ----------------------------------------------------------------------------


def _key_path(loc: tuple[Any, ...]) -> str:
    """``('checkpoints', 1, 'model')`` -> ``checkpoints[1].model``."""
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
    return text


def _section_model(annotation: Any) -> type[BaseModel] | None:
    """The config section class inside an annotation (``X``, ``X | None``, ``list[X]``)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in get_args(annotation):
        found = _section_model(arg)
        if found is not None:
            return found
    return None


def with_added_defaults(saved: Any, model: type[BaseModel] | None = None) -> Any:
    """A resolved config dump saved by an earlier version, with every key added since set
    to its default (JSON form): the keys of ``model`` (default :class:`StreamConfig`)
    missing from ``saved``, recursively through its sections and lists of sections."""
    from pydantic_core import PydanticUndefined, to_jsonable_python

    model = model or StreamConfig
    if not isinstance(saved, dict):
        return saved
    filled = dict(saved)
    for name, field in model.model_fields.items():
        section = _section_model(field.annotation)
        if name not in filled:
            if field.default is not PydanticUndefined:
                filled[name] = to_jsonable_python(field.default)
            elif field.default_factory is not None:
                filled[name] = to_jsonable_python(field.default_factory())
        elif section is not None and isinstance(filled[name], list):
            filled[name] = [with_added_defaults(item, section) for item in filled[name]]
        elif section is not None:
            filled[name] = with_added_defaults(filled[name], section)
    return filled


def _allowed_keys(loc: tuple[Any, ...], root: type[BaseModel]) -> list[str]:
    """Keys accepted by the section of ``root`` that holds the key at ``loc``."""
    model: type[BaseModel] | None = root
    for part in loc[:-1]:
        if isinstance(part, int):
            continue
        field = model.model_fields.get(part) if model is not None else None
        model = _section_model(field.annotation) if field is not None else None
        if model is None:
            return []
    return sorted(set(model.model_fields) - INTERNAL_KEYS) if model is not None else []


def describe_validation_error(error: ValidationError, source: str,
                              root: type[BaseModel] | None = None,
                              what: str = "stream config") -> str:
    """One message per problem of the ``what`` ``source`` (validated as ``root``, default
    :class:`StreamConfig`), each naming the key path."""
    root = root or StreamConfig
    lines = []
    for item in error.errors():
        loc = tuple(item.get("loc", ()))
        key = _key_path(loc) or "(top level)"
        kind = item.get("type", "")
        if kind == "extra_forbidden":
            allowed = _allowed_keys(loc, root)
            hint = f" (allowed here: {', '.join(allowed)})" if allowed else ""
            lines.append(f"unknown key `{key}`{hint}")
        elif kind == "missing":
            lines.append(f"missing required key `{key}`")
        else:
            message = str(item.get("msg", "invalid")).removeprefix("Value error, ")
            value = item.get("input")
            shown = "" if isinstance(value, dict) else f" (got {short_repr(value)})"
            where = f"`{key}`: " if loc else ""
            lines.append(f"{where}{message}{shown}")
    head = f"invalid {what} {source}: "
    return head + ("; ".join(lines) if len(lines) == 1 else "\n  - " + "\n  - ".join(lines))


def validate_mapping(root: type[BaseModel], data: Any, source: str, what: str,
                     keys: str) -> Any:
    """``data`` (e.g. parsed YAML) validated as ``root``; any problem becomes one
    :class:`ArmConfigError` naming ``what`` ``source`` and the key paths (``keys``: the
    top-level keys the mapping message lists)."""
    if not isinstance(data, dict):
        raise ArmConfigError(
            f"{what} {source} must be a mapping of keys ({keys}, ...), got {type(data).__name__}"
        )
    try:
        return root.model_validate(data)
    except ValidationError as error:
        raise ArmConfigError(describe_validation_error(error, source, root, what)) from None


def parse_config(data: Any, source: str = "<config>") -> StreamConfig:
    """Validate a mapping (e.g. parsed YAML) into a :class:`StreamConfig`."""
    return validate_mapping(StreamConfig, data, source, "stream config",
                            "origin, checkpoints, schedule")


def read_config_file(path: str | os.PathLike) -> Any:
    """The parsed YAML of a stream config file (not validated yet)."""
    return load_yaml_file(path, "stream config")


def load_config(path: str | os.PathLike) -> StreamConfig:
    """Read and validate a stream config YAML file."""
    return parse_config(read_config_file(path), str(Path(path).expanduser()))


__all__ = [
    "with_added_defaults",
    "MAX_LEARNING_RATE",
    "MAX_SEED",
    "ARMParameters",
    "START_AVERAGE",
    "BlockSearchConfig",
    "CheckpointEntry",
    "ScheduleConfig",
    "StreamConfig",
    "ValidationConfig",
    "WatchConfig",
    "describe_validation_error",
    "load_config",
    "parse_config",
    "read_config_file",
    "validate_mapping",
]
