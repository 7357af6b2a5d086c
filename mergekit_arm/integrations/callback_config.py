"""The config of :class:`~mergekit_arm.integrations.transformers.ARMCallback`: the stream
config resolved for mode ``watch`` on the Trainer's ``output_dir``
(:func:`callback_config`), and the check that the Trainer's model starts at the config's
``origin`` (:func:`check_starts_at_origin`).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch

from mergekit_arm._yaml import short_repr
from mergekit_arm.errors import ArmConfigError
from mergekit_arm.stream.config import StreamConfig, parse_config

logger = logging.getLogger("mergekit_arm.stream.callback")


def callback_config(
    data: Any, source: str, output_dir: Path | None, model: Any = None
) -> StreamConfig:
    """The resolved stream config of a callback: mode ``watch`` on ``output_dir``.

    Defaults that differ from ``arm-stream``: ``mode: watch`` (the only mode allowed),
    ``device: cpu`` (off the training device unless asked), and ``origin`` taken from
    the trained model's ``name_or_path`` when that is a local model folder.
    ``output_dir`` None: validate only (the folder is not known yet).
    """
    if not isinstance(data, dict):
        return parse_config(data, source)  # raises the config's own "must be a mapping"
    data = dict(data)
    mode = data.setdefault("mode", "watch")
    if mode != "watch":
        raise ArmConfigError(
            f"ARMCallback config {source}: `mode` is {short_repr(mode)}, but the callback takes its "
            "checkpoints from the Trainer's saves (mode watch); leave `mode` out, or run "
            "arm-stream for a fixed list of models"
        )
    section = data.get("watch") or {}
    if output_dir is not None and isinstance(section, dict):
        given = section.get("dir")
        if given is not None and Path(given).expanduser().resolve() != output_dir:
            raise ArmConfigError(
                f"ARMCallback config {source}: `watch.dir` is {given}, but the Trainer saves "
                f"to {output_dir}; leave `watch.dir` out"
            )
        data["watch"] = {**section, "dir": str(output_dir)}
    data.setdefault("device", "cpu")
    if "origin" not in data and model is not None:
        data["origin"] = _model_origin(model, source)
    return parse_config(data, source).resolved()


def _model_origin(model: Any, source: str) -> str:
    """The trained model's ``name_or_path`` when it is a local model folder or a Hub id
    (resolved as every model reference, :mod:`mergekit_arm.model_refs`)."""
    from mergekit_arm.model_refs import is_reference

    name = str(getattr(getattr(model, "config", None), "name_or_path", "") or "")
    if name and ((Path(name) / "config.json").is_file() or is_reference(name)):
        return name
    raise ArmConfigError(
        f"ARMCallback config {source}: set `origin:` (the model folder or Hub id training "
        f"started from); the trained model's name_or_path {name!r} is neither"
    )


ORIGIN_PROBES = 8  # tensors compared between the trained model and `origin`


def check_starts_at_origin(model: Any, origin: Path, source: str) -> None:
    """Refuse a Trainer whose model, before its first step, is not ``origin``: up to
    :data:`ORIGIN_PROBES` tensors (same name and shape in the model and in origin's
    safetensors, spread over the model) must hold origin's probe values, compared at the
    coarser of the two dtypes. The stream's first step measures ``c_1 - origin``: from
    another model it would add that model's difference to every merge.
    Nothing is compared when no tensor pairs up (renamed, quantized, ``.bin`` weights)."""
    from safetensors import safe_open

    from mergekit_arm.statistics import probes_match, weight_probe

    state_dict = getattr(model, "state_dict", None)
    if state_dict is None:
        return
    weights = {name: tensor for name, tensor in state_dict().items()
               if torch.is_tensor(tensor) and tensor.is_floating_point()}
    files = sorted(origin.glob("*.safetensors"))
    pairs: list[tuple[str, Path]] = []
    for file in files:
        with safe_open(str(file), framework="pt") as handle:
            pairs += [(name, file) for name in handle.keys()  # noqa: SIM118 - not a dict
                      if name in weights and tuple(handle.get_slice(name).get_shape())
                      == tuple(weights[name].shape)]
    if not pairs:
        logger.info("ARMCallback: no tensor of %s pairs up with the trained model's; the "
                    "model training starts from is not compared with it", origin)
        return
    chosen = [pairs[round(i * (len(pairs) - 1) / max(1, ORIGIN_PROBES - 1))]
              for i in range(min(ORIGIN_PROBES, len(pairs)))]
    for name, file in dict(chosen).items():
        with safe_open(str(file), framework="pt") as handle:
            stored = handle.get_tensor(name)
        if not probes_match(weight_probe(stored), weights[name], stored.dtype):
            raise ArmConfigError(
                f"ARMCallback config {source}: the Trainer's model is not `origin` "
                f"{origin}: tensor {name} differs before the first training step. The "
                "stream measures each checkpoint against origin, so set `origin:` to the "
                "folder the model was loaded from (or save the model with save_pretrained "
                "before training and point `origin:` there)")


__all__ = ["ORIGIN_PROBES", "callback_config", "check_starts_at_origin"]
