"""Lazy layers: a model whose decoder layers are read from its safetensors files on demand.

:func:`load_lazy_causal_lm` builds the model on the meta device and reads only the
embeddings, the final norm and ``lm_head``; :class:`LazyPlacement` reads one decoder
layer's weights while the layer-sequential pass runs it and drops them right after, so a
model larger than RAM can be calibrated.
"""

from __future__ import annotations

import functools
import json
import os
import re
from contextlib import contextmanager
from pathlib import Path

import torch

from mergekit_arm.calibration.layout import decoder_stack
from mergekit_arm.errors import CalibrationError, ModelLoadError

#: The layer prefix of a tensor name (``model.layers.3.``): converted tensors of a layer are
#: read from that layer's stored tensors only.
_LAYER_PREFIX = re.compile(r"^.*?\.\d+\.")


def is_statistics_file(path: Path) -> bool:
    """Whether a ``.safetensors`` file is an ``arm-calibrate`` statistics file (its header
    says so): one stored inside the model folder it describes is not a weight shard."""
    from safetensors import safe_open

    from mergekit_arm.statistics import FORMAT

    try:
        with safe_open(str(path), framework="pt") as handle:
            return (handle.metadata() or {}).get("format") == FORMAT
    except Exception:
        return False  # not readable as safetensors: left to the weight reader's own error


def no_safetensors_message(folder: Path) -> str:
    """Why a model folder without safetensors weights cannot be read, and how to convert it."""
    bins = sorted(p.name for p in folder.glob("*.bin") if p.name != "training_args.bin")
    held = f"holds PyTorch weights only ({', '.join(bins[:3])})" if bins else \
        "has no .safetensors weight files"
    return (f"{folder} {held}; mergekit-arm reads safetensors. Convert the model once, e.g. "
            "python -c \"from transformers import AutoModelForCausalLM as M; "
            f"M.from_pretrained('{folder}').save_pretrained('{folder}')\" (adds "
            "model.safetensors next to the .bin files)")


class LazyCheckpoint:
    """Tensors of a model folder's safetensors files, read one at a time on demand.

    Every read opens its file and closes it again: a handle kept open keeps every page it
    has read mapped into the process, so resident memory would grow with the model.
    A name the files do not hold is read through transformers' checkpoint conversion
    mapping of the folder's ``model_type``, as MergeKit reads it (e.g. Mixtral's
    ``block_sparse_moe.experts.N.w1/w3.weight`` -> ``mlp.experts.gate_up_proj``).
    """

    def __init__(self, folder: str | os.PathLike) -> None:
        self.folder = Path(folder)
        index = self.folder / "model.safetensors.index.json"
        if index.is_file():
            weight_map = json.loads(index.read_text())["weight_map"]
            files = sorted(set(weight_map.values()))
        else:
            files = sorted(p.name for p in self.folder.glob("*.safetensors")
                           if not is_statistics_file(p))
            weight_map = None
        if not files:
            raise ModelLoadError(no_safetensors_message(self.folder))
        self.files = files
        if weight_map is None:
            weight_map = {}
            for f in files:
                with self._open(f) as handle:
                    weight_map.update(dict.fromkeys(handle.keys(), f))
        self.weight_map: dict[str, str] = weight_map
        self.dtype: torch.dtype | None = None  # the dtype the layers are read in
        config = self.folder / "config.json"
        try:
            self.model_type: str | None = json.loads(config.read_text()).get("model_type")
        except (OSError, ValueError, AttributeError):
            self.model_type = None

    def __contains__(self, name: object) -> bool:
        return name in self.weight_map

    def _sources(self, name: str) -> list[str]:
        """The stored names a converted tensor ``name`` can come from: those of its layer
        (``model.layers.3.``) when it has one, else every stored name."""
        match = _LAYER_PREFIX.match(name)
        if match is None:
            return list(self.weight_map)
        return [key for key in self.weight_map if key.startswith(match.group(0))]

    def can_read(self, name: str) -> bool:
        """Whether ``name`` is stored or can be converted from stored tensors."""
        if name in self.weight_map:
            return True
        from mergekit.architecture.conversion import can_convert_checkpoint_keys

        return can_convert_checkpoint_keys(self.model_type, set(self._sources(name)), name)

    def _converted(self, name: str) -> torch.Tensor | None:
        from mergekit.architecture.conversion import convert_checkpoint_tensors

        sources = {key: (lambda key=key: self._get_stored(key)) for key in self._sources(name)}
        return convert_checkpoint_tensors(self.model_type, sources, name)

    def _open(self, file: str):
        from safetensors import safe_open

        return safe_open(str(self.folder / file), framework="pt", device="cpu")

    def _file_of(self, name: str) -> str:
        try:
            return self.weight_map[name]
        except KeyError:
            raise ModelLoadError(f"{name} is not in the safetensors files of {self.folder}") from None

    def _get_stored(self, name: str) -> torch.Tensor:
        with self._open(self._file_of(name)) as handle:
            return handle.get_tensor(name)

    def get(self, name: str) -> torch.Tensor:
        """Tensor ``name`` (a copy in memory; the file is closed again), converted from the
        stored tensors when the files hold it under its checkpoint names."""
        if name not in self.weight_map and self.model_type:
            converted = self._converted(name)
            if converted is not None:
                return converted
        return self._get_stored(name)

    def shape(self, name: str) -> tuple[int, ...]:
        """The shape of tensor ``name``, read from the file header only (converted
        tensors are read)."""
        if name not in self.weight_map and self.model_type:
            return tuple(self.get(name).shape)
        with self._open(self._file_of(name)) as handle:
            return tuple(handle.get_slice(name).get_shape())

    def nbytes(self) -> int:
        return sum((self.folder / f).stat().st_size for f in self.files)


def return_freed_memory() -> bool:
    """Ask glibc to return freed heap pages to the system (``malloc_trim(0)``).

    A layer's weights are freed after it runs, but glibc keeps freed blocks for reuse, so
    without this the resident memory of a layer-sequential pass grows with depth. A no-op
    where the C library has no ``malloc_trim`` (macOS, musl, Windows); returns whether it
    could trim.
    """
    trim = _malloc_trim()
    if trim is not None:
        trim(0)  # ctypes releases the GIL for the call
    return trim is not None


@functools.cache
def _malloc_trim():
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    try:
        trim = getattr(ctypes.CDLL(name), "malloc_trim", None) if name else None
    except OSError:
        return None
    if trim is not None:
        trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    return trim


class LazyPlacement:
    """Parameters live on the meta device; the active module's are read from disk."""

    def __init__(self, model: torch.nn.Module, checkpoint: LazyCheckpoint, device: torch.device,
                 dtype: torch.dtype | None) -> None:
        self.model = model
        self.checkpoint = checkpoint
        self.device = device
        self.dtype = dtype

    def load(self, prefix: str, module: torch.nn.Module, device: torch.device) -> None:
        from accelerate.utils import set_module_tensor_to_device

        for name, param in module.named_parameters():
            if param.device.type != "meta":
                continue
            full = f"{prefix}.{name}" if prefix else name
            value = self.checkpoint.get(full)
            dtype = self.dtype if value.is_floating_point() and self.dtype is not None else None
            set_module_tensor_to_device(module, name, device, value=value, dtype=dtype)

    def release(self, module: torch.nn.Module) -> None:
        """Put the module's parameters back on the meta device and hand the freed memory
        back to the system (:func:`return_freed_memory`)."""
        from accelerate.utils import set_module_tensor_to_device

        for name, _ in list(module.named_parameters()):
            set_module_tensor_to_device(module, name, "meta")
        return_freed_memory()

    @contextmanager
    def place(self, prefix: str, module: torch.nn.Module):
        self.load(prefix, module, self.device)
        try:
            yield
        finally:
            self.release(module)


def load_lazy_causal_lm(
    path: str | os.PathLike,
    dtype: str | torch.dtype | None = "auto",
    trust_remote_code: bool = False,
) -> torch.nn.Module:
    """A causal LM whose decoder layers stay on the meta device until calibration reads them.

    Embeddings, the final norm and ``lm_head`` are read into CPU memory; every decoder
    layer's weights are read from the safetensors files only while that layer runs in
    :func:`~mergekit_arm.calibration.layer_pass.collect_statistics_layerwise` and dropped
    right after. So a model larger than RAM can be calibrated. The returned module carries
    the reader as ``model.arm_lazy_checkpoint`` (:func:`lazy_checkpoint`) and runs only
    through the layer-sequential pass.
    """
    from accelerate import init_empty_weights
    from transformers import AutoModelForCausalLM

    from mergekit_arm.models import (
        check_model_folder,
        load_model_config,
        not_a_causal_lm,
        resolve_dtype,
    )

    folder = check_model_folder(path)
    config = load_model_config(folder, trust_remote_code)
    checkpoint = LazyCheckpoint(folder)
    wanted = resolve_dtype(dtype)
    if wanted == "auto":
        wanted = getattr(config, "dtype", None) or getattr(config, "torch_dtype", None)
        if isinstance(wanted, str):
            wanted = getattr(torch, wanted)
        if not isinstance(wanted, torch.dtype):
            first = next(iter(checkpoint.weight_map))
            wanted = checkpoint.get(first).dtype
    try:
        with init_empty_weights(include_buffers=False):
            model = AutoModelForCausalLM.from_config(
                config, dtype=wanted, trust_remote_code=trust_remote_code
            )
    except ValueError as error:
        raise not_a_causal_lm(folder, config, error) from error
    text_config = getattr(config, "get_text_config", lambda: config)()
    if getattr(text_config, "tie_word_embeddings", False) or getattr(config, "tie_word_embeddings", False):
        model.tie_weights()  # init_empty_weights skips the tying that from_config does
    stack = decoder_stack(model)
    if stack is None:
        raise CalibrationError(
            f"{folder} ({type(model).__name__}) does not have the model.model.layers / "
            "model.model.norm / model.lm_head layout that layer-sequential calibration needs; "
            "calibrate it with --mode all-at-once (or auto, which picks it for this layout)"
        )
    placement = LazyPlacement(model, checkpoint, torch.device("cpu"), wanted)
    layer_params = {id(p) for p in stack.layers.parameters()}
    head = model.get_output_embeddings()
    tied = head is not None and head.weight is model.get_input_embeddings().weight
    for module_name, module in model.named_modules():
        for name, param in list(module.named_parameters(recurse=False)):
            if id(param) in layer_params or param.device.type != "meta":
                continue
            full = f"{module_name}.{name}" if module_name else name
            if full not in checkpoint and module is head and not tied:
                raise ModelLoadError(f"{full} is missing from the checkpoint in {folder}")
            if full in checkpoint:
                _load_only(placement, module_name, module, name)
    if head is not None and head.weight.device.type == "meta":
        # lm_head is tied to the embeddings and not stored separately.
        head.weight = model.get_input_embeddings().weight
    model.eval()
    checkpoint.dtype = wanted
    model.arm_lazy_checkpoint = checkpoint
    return model


def lazy_checkpoint(model: torch.nn.Module) -> LazyCheckpoint | None:
    """The reader of a model opened by :func:`load_lazy_causal_lm` (None for any other)."""
    return getattr(model, "arm_lazy_checkpoint", None)


def _load_only(placement: LazyPlacement, prefix: str, module: torch.nn.Module, name: str) -> None:
    from accelerate.utils import set_module_tensor_to_device

    value = placement.checkpoint.get(f"{prefix}.{name}" if prefix else name)
    set_module_tensor_to_device(module, name, "cpu", value=value, dtype=placement.dtype)


__all__ = ["LazyCheckpoint", "LazyPlacement", "lazy_checkpoint", "load_lazy_causal_lm"]
