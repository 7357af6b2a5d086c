"""The ``arm-choose`` configuration: candidate recipes and the held-out set that picks one.

Every candidate is one of three kinds, named by its key:

* ``model``: an existing model folder (a checkpoint kept as it is);
* ``mergekit``: a ``mergekit-yaml`` config (a file, or the mapping inline), run with
  ``mergekit.merge.run_merge``;
* ``stream``: an ``arm-stream`` config file, run with :func:`mergekit_arm.stream.run_stream`.

Paths are relative to the current directory, as in ``mergekit-yaml`` and ``arm-stream``;
:meth:`ChooseConfig.resolved` makes them absolute.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from mergekit_arm._yaml import load_yaml_file
from mergekit_arm.choose.standard import STANDARD_RECIPES, StandardRecipe, standard_candidates
from mergekit_arm.errors import ArmConfigError
from mergekit_arm.stream.config import (
    ValidationConfig,
    describe_validation_error,
    validate_mapping,
)
from mergekit_arm.stream.recipe_config import texts_overlap

CandidateKind = Literal["model", "mergekit", "stream"]
Keep = Literal["all", "best"]
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
DEFAULT_MAX_LENGTH = 512


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CandidateEntry(_Section):
    """One recipe: exactly one of ``model``, ``mergekit`` or ``stream``."""

    name: str = Field(description="folder name under OUT/candidates/ and the leaderboard row")
    model: str | None = Field(None, description="an existing model folder, scored as it is")
    mergekit: str | dict[str, Any] | None = Field(
        None, description="a mergekit-yaml config: a file path or the mapping inline")
    stream: str | dict[str, Any] | None = Field(
        None, description="an arm-stream config: a file path or the mapping inline")

    @field_validator("name")
    @classmethod
    def _folder_name(cls, value: str) -> str:
        if not _NAME.match(value):
            raise ValueError("must be a plain folder name (letters, digits, '.', '_', '-'; "
                             "not starting with '.' or '-')")
        return value

    @model_validator(mode="after")
    def _one_kind(self) -> CandidateEntry:
        given = [kind for kind in ("model", "mergekit", "stream") if getattr(self, kind) is not None]
        if len(given) != 1:
            raise ValueError(
                f"candidate `{self.name}` needs exactly one of `model`, `mergekit` or `stream` "
                f"(got {', '.join(given) or 'none'})"
            )
        return self

    @property
    def kind(self) -> CandidateKind:
        """Which of the three kinds this candidate is."""
        return next(k for k in ("model", "mergekit", "stream") if getattr(self, k) is not None)


class GuardConfig(ValidationConfig):
    """A held-out set the choice must not regress on (``guards.NAME``): its texts (the keys
    of ``validation``) and how far a candidate's loss there may exceed the reference's."""

    max_regression: float = Field(
        ge=0, description="how much higher than the reference's a candidate's loss on this "
        "set may be: nats (absolute), or a fraction of the reference's loss (`relative`)")
    relative: bool = Field(False, description="`max_regression` is a fraction of the "
                           "reference's loss (0.02 = 2 %)")
    against: str = Field("origin", description="the reference: `origin`, or a candidate's name")


class ChooseConfig(_Section):
    """Build every candidate, score each on ``validation``, keep the lowest loss (among the
    candidates within every guard, when ``guards`` are set)."""

    validation: ValidationConfig = Field(
        description="held-out text that scores the candidates (mean token loss); "
        f"`max_length` null = {DEFAULT_MAX_LENGTH}")
    candidates: list[CandidateEntry] = Field(
        default_factory=list, description="recipes of your own (besides `standard`)")
    origin: str | None = Field(None, description="the model SFT started from (`standard`)")
    checkpoints: list[str] = Field(
        default_factory=list, description="the checkpoints, oldest first (`standard`)")
    standard: list[StandardRecipe] | Literal["all"] | None = Field(
        None, description="standard candidates written out from origin and checkpoints: "
        f"all, or a list of {', '.join(STANDARD_RECIPES)}")
    tuning: ValidationConfig | None = Field(
        None, description="held-out texts the standard stream tunes on (its line search "
        "and kept step); must not overlap `validation`. null = validation (then flagged)")
    keep: Keep = Field("all", description="all: every build stays under OUT/candidates/; "
                       "best: the other builds are removed once OUT/model is written")
    tokenizer: str | None = Field(
        None, description="tokenizer folder; null = the first candidate model's")
    device: str = Field("auto", description="auto | cpu | cuda | cuda:N (scoring and streams "
                        "use their own `device`)")
    dtype: Literal["float32", "bfloat16", "float16"] = Field(
        "float32", description="dtype the candidates are scored in")
    trust_remote_code: bool = False
    primary: str = Field("validation", description="the name of the `validation` set (the "
                         "one that decides) in the leaderboard")
    guards: dict[str, GuardConfig] = Field(
        default_factory=dict, description="named held-out sets no chosen candidate may "
        "regress on by more than their `max_regression`")

    @field_validator("guards")
    @classmethod
    def _guard_names(cls, values: dict[str, GuardConfig]) -> dict[str, GuardConfig]:
        for name in values:
            if not _NAME.match(name):
                raise ValueError(f"guard name {name!r} must be a plain name (letters, digits, "
                                 "'.', '_', '-')")
        return values

    @field_validator("candidates")
    @classmethod
    def _distinct_names(cls, values: list[CandidateEntry]) -> list[CandidateEntry]:
        names = [c.name for c in values]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ValueError(f"candidate names must be distinct; repeated: {', '.join(repeated)}")
        return values

    @model_validator(mode="after")
    def _guards_apart(self) -> ChooseConfig:
        if self.primary in self.guards:
            raise ValueError(f"guard `{self.primary}` has the name of the primary set "
                             "(`primary`); name the guard otherwise")
        for name, guard in self.guards.items():
            if guard.against == "origin" and self.origin is None:
                raise ValueError(f"guard `{name}` is against the origin (`against` "
                                 "defaults to origin): set `origin:` to the model SFT "
                                 "started from, or `against:` to a candidate's name")
        return self

    @model_validator(mode="after")
    def _recipes_have_models(self) -> ChooseConfig:
        if self.standard is None:
            if not self.candidates:
                raise ValueError("no candidates: list `candidates`, or `standard` with "
                                 "`origin` and `checkpoints`")
            return self
        if self.origin is None or not self.checkpoints:
            raise ValueError("`standard` needs `origin` and at least one of `checkpoints`")
        if isinstance(self.standard, list) and "model-stock" in self.standard \
                and len(self.checkpoints) < 2:
            raise ValueError("`standard: model-stock` needs two or more `checkpoints`")
        if self.tuning is not None and texts_overlap(self.tuning, self.validation):
            raise ValueError("`tuning` and `validation` read the same texts: the choice would "
                             "be made on the texts the stream tuned on. Use another file or "
                             "disjoint offsets")
        return self

    def standard_recipes(self) -> tuple[StandardRecipe, ...]:
        """The standard recipes requested (``all``: model-stock only with 2+ checkpoints)."""
        if self.standard is None:
            return ()
        if self.standard == "all":
            return tuple(r for r in STANDARD_RECIPES
                         if r != "model-stock" or len(self.checkpoints) >= 2)
        return tuple(r for r in STANDARD_RECIPES if r in self.standard)

    def expanded(self) -> ChooseConfig:
        """The config with the ``standard`` recipes written out as candidates (first)."""
        if self.standard is None:
            return self
        tuning = (self.tuning or self.validation).model_dump(mode="json")
        if tuning.get("max_length") is None:
            tuning["max_length"] = self.max_length
        entries = [CandidateEntry.model_validate(entry) for entry in standard_candidates(
            self.standard_recipes(), self.origin, self.checkpoints, tuning, self.device)]
        try:
            return ChooseConfig.model_validate(
                self.model_dump() | {"candidates": [*entries, *self.candidates], "standard": None})
        except ValidationError as error:
            raise ArmConfigError(describe_validation_error(
                error, "(with the standard candidates)", ChooseConfig, "arm-choose config")) from None

    def check_guard_references(self) -> None:
        """Every guard's ``against`` is ``origin`` or a candidate (after :meth:`expanded`)."""
        names = [entry.name for entry in self.candidates]
        for name, guard in self.guards.items():
            if guard.against != "origin" and guard.against not in names:
                raise ArmConfigError(
                    f"arm-choose config: `guards.{name}.against` is {guard.against!r}, which "
                    f"is neither `origin` nor a candidate; the candidates are "
                    f"{', '.join(names)}")

    @property
    def max_length(self) -> int:
        """Tokens per held-out text."""
        return self.validation.max_length or DEFAULT_MAX_LENGTH

    def resolved(self) -> ChooseConfig:
        """The config with every path absolute (relative paths are from the current folder)."""

        from mergekit_arm.model_refs import absolute_reference, local_model_path

        def absolute(path: str | None) -> str | None:
            return None if path is None else str(Path(path).expanduser().resolve())

        def local(path: str | None, key: str) -> str | None:  # Hub ids, base+adapter too
            return None if path is None else local_model_path(
                path, f"`{key}`", trust_remote_code=self.trust_remote_code)

        entries = []
        for entry in self.candidates:
            mergekit = entry.mergekit
            stream = entry.stream
            entries.append(entry.model_copy(update={
                # resolved when built (candidate_model), after the config's own checks
                "model": None if entry.model is None else absolute_reference(entry.model),
                "stream": absolute(stream) if isinstance(stream, str) else stream,
                "mergekit": absolute(mergekit) if isinstance(mergekit, str) else mergekit,
            }))
        def held_out(section: ValidationConfig | None) -> ValidationConfig | None:
            return None if section is None else section.model_copy(
                update={"data": absolute(section.data)})

        return self.model_copy(update={
            "candidates": entries, "validation": held_out(self.validation),
            "tuning": held_out(self.tuning), "tokenizer": absolute(self.tokenizer),
            "guards": {name: held_out(guard) for name, guard in self.guards.items()},
            "origin": local(self.origin, "origin"),
            "checkpoints": [local(c, f"checkpoints[{i}]") for i, c in enumerate(self.checkpoints)]})


def parse_choose_config(data: Any, source: str = "<config>") -> ChooseConfig:
    """Validate a mapping (parsed YAML) into a :class:`ChooseConfig`."""
    return validate_mapping(ChooseConfig, data, source, "arm-choose config",
                            "validation, candidates")


def load_choose_config(path: str | os.PathLike) -> ChooseConfig:
    """Read and validate an ``arm-choose`` YAML file."""
    file = Path(path).expanduser()
    return parse_choose_config(load_yaml_file(file, "arm-choose config"), str(file))


__all__ = ["DEFAULT_MAX_LENGTH", "CandidateEntry", "CandidateKind", "ChooseConfig", "GuardConfig",
           "load_choose_config", "parse_choose_config"]
