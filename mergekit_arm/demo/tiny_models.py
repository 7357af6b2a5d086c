"""Tiny random Llama / Qwen3 models saved as ordinary Hugging Face folders."""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

import torch
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    LlamaConfig,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    Qwen3Config,
)

from mergekit_arm.demo.corpus import default_demo_texts
from mergekit_arm.demo.runtime import quiet_runtime
from mergekit_arm.demo.tokenizer import DEMO_VOCAB_SIZE, train_tokenizer

ARCHITECTURES = ("llama", "qwen3")
MODEL_FILES = ("config.json", "model.safetensors", "tokenizer.json")


def tiny_config(
    arch: str = "llama",
    vocab_size: int = DEMO_VOCAB_SIZE,
    hidden_size: int = 64,
    num_layers: int = 2,
    intermediate_size: int = 128,
    **overrides: Any,
) -> LlamaConfig | Qwen3Config:
    """Config of a tiny Llama or Qwen3 model (4 heads, 2 KV heads, untied lm_head)."""
    num_heads = overrides.pop("num_attention_heads", 4)
    kwargs: dict[str, Any] = {
        "vocab_size": vocab_size,
        "hidden_size": hidden_size,
        "intermediate_size": intermediate_size,
        "num_hidden_layers": num_layers,
        "num_attention_heads": num_heads,
        "num_key_value_heads": 2,
        "max_position_embeddings": 256,
        "tie_word_embeddings": False,
        "head_dim": hidden_size // num_heads,
    }
    kwargs.update(overrides)
    if arch == "llama":
        return LlamaConfig(**kwargs)
    if arch == "qwen3":
        return Qwen3Config(**kwargs)
    raise ValueError(f"unknown architecture {arch!r}; choose one of {ARCHITECTURES}")


def is_complete_model_dir(path: str | os.PathLike) -> bool:
    """Whether ``path`` holds a saved model (config.json, model.safetensors, tokenizer)."""
    return all((Path(path) / name).is_file() for name in MODEL_FILES)


def save_model_dir(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, path: Path, dtype: torch.dtype
) -> Path:
    """Save ``model`` in ``dtype`` (a converted copy; ``model`` is left as it is) with the
    tokenizer into ``path``."""
    to_save = model if model.dtype == dtype else copy.deepcopy(model).to(dtype)
    to_save.config.dtype = dtype
    path.mkdir(parents=True, exist_ok=True)
    with quiet_runtime():
        to_save.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def load_model_dir(model_path: str | os.PathLike) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """The saved model in float32 and its tokenizer (pad token set, padding on the right)."""
    with quiet_runtime():
        model = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "right"
    return model, tokenizer


def make_tiny_model(
    path: str | os.PathLike,
    arch: str = "llama",
    tokenizer: PreTrainedTokenizerBase | None = None,
    seed: int = 0,
    dtype: torch.dtype = torch.float32,
    **config_overrides: Any,
) -> Path:
    """Save a seeded, randomly initialised tiny model plus its tokenizer into ``path``.

    Without ``tokenizer`` one is trained on the default demo texts. The vocabulary
    size defaults to ``max(512, len(tokenizer))``. The global torch RNG is left as it was.
    """
    if tokenizer is None:
        tokenizer = train_tokenizer(default_demo_texts())
    config_overrides.setdefault("vocab_size", max(DEMO_VOCAB_SIZE, len(tokenizer)))
    if config_overrides["vocab_size"] < len(tokenizer):
        raise ValueError(f"vocab_size {config_overrides['vocab_size']} is smaller than the "
                         f"tokenizer's {len(tokenizer)} tokens")
    for name in ("bos_token_id", "eos_token_id", "pad_token_id"):
        config_overrides.setdefault(name, getattr(tokenizer, name))
    config = tiny_config(arch, **config_overrides)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = AutoModelForCausalLM.from_config(config)
    return save_model_dir(model, tokenizer, Path(path), dtype)


__all__ = ["ARCHITECTURES", "MODEL_FILES", "is_complete_model_dir", "load_model_dir",
           "make_tiny_model", "save_model_dir", "tiny_config"]
