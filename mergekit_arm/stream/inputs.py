"""Input models of a stream: path checks, loading, and architecture checks against the origin.

Every input (checkpoints, start) must have the origin's model type and tensor shapes;
the checks run before anything is calibrated so a wrong path fails in seconds.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from mergekit_arm.checks import check_finite_state
from mergekit_arm.errors import ArmConfigError, ModelLoadError
from mergekit_arm.models import DTYPES, load_causal_lm, safetensors_shapes
from mergekit_arm.paths import PathRole, input_roles, reference_roles
from mergekit_arm.stream.config import StreamConfig
from mergekit_arm.stream.watch import weight_files

logger = logging.getLogger("mergekit_arm.stream")


@dataclass
class InputModel:
    """An input model held once in memory (float32) with its statistics file (only models
    that serve as a step's ``from`` need one; fixed-set targets have none)."""

    path: Path
    label: str
    module: torch.nn.Module
    statistics: Path | None


def check_paths(config: StreamConfig) -> None:
    """Raise an error naming the config key of every path that does not exist."""
    start = None if config.starts_from_average() else config.start
    models = [("origin", config.origin), ("start", start)]
    models += [(f"checkpoints[{i}].model", c.model) for i, c in enumerate(config.checkpoints)]
    for key, value in models:
        if value is None:
            continue
        path = Path(value)
        if not path.exists():
            raise ArmConfigError(f"`{key}`: model path {path} does not exist")
        if not (path / "config.json").is_file():
            raise ArmConfigError(
                f"`{key}`: {path} is not a Hugging Face model folder (no config.json)"
            )
    others = [("tokenizer", config.tokenizer), ("calibration.data", config.calibration.data)]
    if config.validation is not None:
        others.append(("validation.data", config.validation.data))
    if config.selection is not None:
        others.append(("selection.data", config.selection.data))
    if config.mode == "watch":
        others.append(("watch.dir (--watch)", config.watch.dir))
    for key, value in others:
        if value is not None and not Path(value).exists():
            raise ArmConfigError(f"`{key}`: {value} does not exist")


def input_paths(config: StreamConfig, prefix: str = "") -> list[PathRole]:
    """Every path the stream reads, named by its config key (``prefix`` before each): the
    models, tokenizer and texts, and the watched run (its ``checkpoint-*`` folders only)."""
    start = None if config.starts_from_average() else config.start
    pairs = [("origin", config.origin), ("start", start), ("tokenizer", config.tokenizer),
             ("calibration.data", config.calibration.data)]
    pairs += [(f"checkpoints[{i}].model", c.model) for i, c in enumerate(config.checkpoints)]
    pairs += [(f"{key}.activations", file) for key, _, file in config.given_statistics()]
    for section in ("validation", "selection"):
        if getattr(config, section) is not None:
            pairs.append((f"{section}.data", getattr(config, section).data))
    roles = input_roles((f"{prefix}`{key}`", path) for key, path in pairs)
    if config.mode == "watch":
        roles += input_roles([(f"{prefix}`watch.dir`", config.watch.dir)], kind="run")
    return roles


def reference_inputs(data: Any) -> list[PathRole]:
    """The base and adapter folders of the ``base+adapter`` models of an unresolved config
    mapping (``origin``, ``start``, ``checkpoints``): the resolved config names only their
    folded folder."""
    if not isinstance(data, dict):
        return []
    origin = data.get("origin")  # or {model, activations}
    pairs = [("origin", origin.get("model") if isinstance(origin, dict) else origin),
             ("start", data.get("start"))]
    for index, entry in enumerate(data.get("checkpoints") or []):
        model = entry.get("model") if isinstance(entry, dict) else entry
        pairs.append((f"checkpoints[{index}].model", model))
    return [role for key, value in pairs for role in reference_roles(f"`{key}`", value)]


def saved_dtype(folder: Path) -> torch.dtype:
    """The dtype a model folder's config.json declares (float32 if none)."""
    try:
        data = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return torch.float32
    name = data.get("dtype") or data.get("torch_dtype") or "float32"
    return DTYPES.get(str(name).replace("torch.", ""), torch.float32)


def file_shapes(folder: Path) -> dict[str, tuple[int, ...]]:
    """Tensor shapes from a model folder's safetensors headers (no tensor is read)."""
    shapes: dict[str, tuple[int, ...]] = {}
    for file in weight_files(folder) or []:
        if file.suffix != ".safetensors" or not file.is_file():
            continue
        shapes.update(safetensors_shapes(file))
    return shapes


class ModelLoader:
    """Loads input models in float32 on one device and checks them against the origin."""

    def __init__(self, origin: Path, device: torch.device, trust_remote_code: bool) -> None:
        self.origin = origin
        self.device = device
        self.trust_remote_code = trust_remote_code
        self.origin_type: str | None = None
        self.origin_shapes: dict[str, tuple[int, ...]] = {}

    def load(self, path: Path, label: str) -> torch.nn.Module:
        """The model in ``path`` (float32); errors name ``label``."""
        try:
            module = load_causal_lm(path, torch.float32, str(self.device), self.trust_remote_code)
        except ModelLoadError as error:
            raise ModelLoadError(f"{label}: {error}") from None
        check_finite_state(module, f"{label} {path}")
        return module

    def load_origin(self) -> torch.nn.Module:
        """The origin; every later input is checked against its type and shapes."""
        module = self.load(self.origin, "origin")
        self.origin_type = getattr(module.config, "model_type", None)
        self.origin_shapes = {n: tuple(t.shape) for n, t in module.state_dict().items()}
        return module

    def load_checked(self, path: Path, label: str) -> torch.nn.Module:
        """``load`` followed by :meth:`check_module`."""
        module = self.load(path, label)
        self.check_module(module, path, label)
        return module

    def _check_type(self, model_type: str | None, path: Path, label: str) -> None:
        if model_type != self.origin_type:
            raise ArmConfigError(
                f"{label} {path} is a {model_type!r} model but the origin {self.origin} is "
                f"{self.origin_type!r}: every checkpoint must have the origin's architecture"
            )

    def _check_shape(self, name: str, shape: tuple[int, ...], path: Path, label: str) -> None:
        expected = self.origin_shapes.get(name)
        if expected is not None and shape != expected:
            raise ArmConfigError(
                f"{label} {path}: tensor {name} has shape {shape} but {expected} in the "
                f"origin {self.origin}; checkpoints must have the origin's shapes"
            )

    def check_module(self, module: torch.nn.Module, path: Path, label: str) -> None:
        """Same model type, tensor names and shapes as the origin."""
        self._check_type(getattr(module.config, "model_type", None), path, label)
        shapes = {name: tuple(t.shape) for name, t in module.state_dict().items()}
        missing = sorted(set(self.origin_shapes) - set(shapes))
        extra = sorted(set(shapes) - set(self.origin_shapes))
        if missing or extra:
            name, where = (missing[0], "has no tensor") if missing else (extra[0], "has a tensor")
            side = "that the origin has" if missing else "that the origin lacks"
            raise ArmConfigError(
                f"{label} {path} {where} {name} {side} ({len(missing)} missing, {len(extra)} "
                f"extra): it is not a checkpoint of the origin {self.origin}'s architecture"
            )
        for name, shape in shapes.items():
            self._check_shape(name, shape, path, label)

    def check_header(self, path: Path, label: str) -> None:
        """Fail fast: a checkpoint's config and weight-file shapes against the origin's."""
        try:
            config = json.loads((path / "config.json").read_text(encoding="utf-8"))
        except (OSError, ValueError) as error:
            raise ArmConfigError(f"{label} {path}: unreadable config.json ({error})") from None
        self._check_type(config.get("model_type"), path, label)
        origin_files = file_shapes(self.origin)
        for name, shape in file_shapes(path).items():
            if name in origin_files and origin_files[name] != shape:
                raise ArmConfigError(
                    f"{label} {path}: tensor {name} has shape {shape} but {origin_files[name]} "
                    f"in the origin {self.origin}; checkpoints must have the origin's shapes"
                )


__all__ = ["InputModel", "ModelLoader", "check_paths", "file_shapes", "input_paths",
           "reference_inputs", "saved_dtype"]
