"""Loading causal language models and their tokenizers, with clear errors."""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

import torch

from mergekit_arm.errors import ModelLoadError

DTYPES = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
    "float16": torch.float16,
    "fp16": torch.float16,
}


def resolve_device(device: str) -> torch.device:
    """``auto`` -> CUDA when available, else CPU; ``cuda`` without a GPU is an error."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ModelLoadError(f"--device {device} was asked for but no CUDA GPU is available; use cpu")
    try:
        return torch.device(device)
    except (RuntimeError, TypeError, ValueError):  # `tpu`, `gpu`, `cuda0`: torch's long list
        raise ModelLoadError(
            f"unknown device {device!r}; use auto, cpu, cuda or cuda:N (N the GPU's index)"
        ) from None


def resolve_dtype(dtype: str | torch.dtype | None) -> torch.dtype | str:
    """``auto`` (or None) keeps the checkpoint's dtype; names map to torch dtypes."""
    if dtype is None or dtype == "auto":
        return "auto"
    if isinstance(dtype, torch.dtype):
        return dtype
    try:
        return DTYPES[dtype]
    except KeyError:
        raise ModelLoadError(f"unknown dtype {dtype!r}; use one of auto, {', '.join(DTYPES)}") from None


def check_model_folder(path: str | os.PathLike, trust_remote_code: bool = False) -> Path:
    """The folder of the model ``path`` names (a local folder, or a Hub id / ``base+adapter``
    resolved by :func:`mergekit_arm.model_refs.resolve_model`); raise unless it is a folder
    with a ``config.json`` (a Hugging Face model)."""
    from mergekit_arm.model_refs import adapter_hint, model_folder

    folder = model_folder(path, trust_remote_code=trust_remote_code)
    if not folder.exists():
        raise ModelLoadError(f"model path {folder} does not exist")
    if not folder.is_dir() or not (folder / "config.json").is_file():
        hint = adapter_hint(folder) if folder.is_dir() else None
        raise ModelLoadError(hint or (
            f"{folder} is not a Hugging Face model folder (no config.json); pass the folder "
            "written by save_pretrained / the Trainer"))
    return folder


def load_model_config(folder: Path, trust_remote_code: bool = False):
    """The transformers config of a model folder; ModelLoadError when it cannot be read."""
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(folder, trust_remote_code=trust_remote_code)
    except Exception as error:
        raise ModelLoadError(f"cannot read the config of {folder}: {error}") from error


def not_a_causal_lm(folder: Path, config, error: Exception) -> ModelLoadError:
    """The error for a config transformers cannot build a causal LM from."""
    return ModelLoadError(
        f"{folder} is not a causal language model that transformers can load "
        f"(model_type={getattr(config, 'model_type', '?')!r}): {error}"
    )


def load_causal_lm(
    path: str | os.PathLike,
    dtype: str | torch.dtype | None = "auto",
    device: str = "cpu",
    trust_remote_code: bool = False,
):
    """Load a causal LM from a local folder in eval mode, on ``device``."""
    from transformers import AutoModelForCausalLM

    folder = check_model_folder(path, trust_remote_code)
    config = load_model_config(folder, trust_remote_code)
    try:
        model = AutoModelForCausalLM.from_pretrained(
            folder,
            config=config,
            dtype=resolve_dtype(dtype),
            trust_remote_code=trust_remote_code,
            local_files_only=True,
        )
    except ValueError as error:
        raise not_a_causal_lm(folder, config, error) from error
    except (OSError, RuntimeError) as error:
        raise ModelLoadError(f"cannot load the weights of {folder}: {error}") from error
    return model.to(resolve_device(device)).eval()


def load_tokenizer(path: str | os.PathLike, trust_remote_code: bool = False,
                   fix: str = "pass --tokenizer"):
    """The model folder's tokenizer, with a pad token (eos) if it had none; ``fix`` is the
    remedy a missing tokenizer's message offers besides copying the files."""
    from transformers import AutoTokenizer

    folder = Path(path).expanduser()
    try:
        tokenizer = AutoTokenizer.from_pretrained(
            folder, trust_remote_code=trust_remote_code, local_files_only=True
        )
    except Exception as error:
        raise ModelLoadError(
            f"cannot load a tokenizer from {folder} ({error}); copy the tokenizer files into the "
            f"model folder or {fix}"
        ) from error
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is None:
            raise ModelLoadError(f"the tokenizer of {folder} has neither a pad nor an eos token")
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "right"
    return tokenizer


def safetensors_shapes(path: str | os.PathLike) -> dict[str, tuple[int, ...]]:
    """Tensor name -> shape of one safetensors file, from its header (no tensor is read;
    cached per path, modification time and size)."""
    info = os.stat(path)
    return dict(_header_shapes(os.fspath(path), info.st_mtime_ns, info.st_size))


@lru_cache(maxsize=64)
def _header_shapes(path: str, _mtime_ns: int, _size: int) -> dict[str, tuple[int, ...]]:
    from safetensors import safe_open

    with safe_open(path, framework="pt") as handle:
        return {name: tuple(handle.get_slice(name).get_shape()) for name in handle.keys()}  # noqa: SIM118
