"""Which files of a Hugging Face folder make up the model, and what kind of folder it is.

Three kinds of folder hold a model (``docs/faults.md``, "What a finished folder holds"):

* a **merge** (``mergekit-yaml``): weights, ``config.json``, the model card
  (``README.md`` + ``mergekit_config.yml``) and the tokenizer, written in that order;
* a **Trainer checkpoint** (``checkpoint-N``): weights, ``config.json``, the training state
  (``optimizer.pt``, ``scheduler.pt``, ``rng_state*.pth``, ``training_args.bin``,
  ``scaler.pt``; ``trainer_state.json`` written last); a tokenizer only when the Trainer
  had one;
* a **saved model** (``save_pretrained``, ``arm-stream``'s ``OUT/model``): weights,
  ``config.json`` and the tokenizer.

:func:`model_files` lists what a copy of the model needs (``arm-choose``'s ``OUT/model``):
weights, configs, tokenizer files, the card and custom code, never training state.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Literal

from mergekit_arm._yaml import load_yaml_file
from mergekit_arm.errors import ArmError

FolderKind = Literal["merge", "trainer", "adapter", "model"]

INDEX_FILES = ("model.safetensors.index.json", "pytorch_model.bin.index.json")
SINGLE_FILES = ("model.safetensors", "pytorch_model.bin")
CONFIG_FILES = ("config.json", "generation_config.json")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                   "vocab.json", "merges.txt", "tokenizer.model", "added_tokens.json",
                   "vocab.txt", "spiece.model", "chat_template.jinja", "chat_template.json")
# the names of TOKENIZER_FILES plus their variants (tokenizer_*.json, vocab.bpe, *.tiktoken)
_TOKENIZER = re.compile(r"^(tokenizer[._].+|vocab\..+|chat_template\..+|.+\.tiktoken"
                        r"|special_tokens_map\.json|added_tokens\.json|merges\.txt"
                        r"|spiece\.model)$")
CARD_FILES = ("README.md", "mergekit_config.yml", "trajectory.png", "trajectory.jsonl")
MERGE_CARD = ("README.md", "mergekit_config.yml")  # MergeKit writes both, before the tokenizer
TRAINER_STATE = "trainer_state.json"  # written last by transformers' Trainer._save_checkpoint
ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors", "adapter_model.bin")
_TRAINING = re.compile(
    r"^(optimizer|scheduler|scaler)\.(pt|bin)$|^rng_state(_\d+)?\.pth$"
    r"|^training_args\.bin$|^trainer_state\.json$|^random_states_\d+\.pkl$"
)
_CUSTOM_CODE = re.compile(r"^(configuration|modeling|tokenization)_\w+\.py$")


def is_training_file(name: str) -> bool:
    """Whether ``name`` is Trainer/Accelerate training state (optimizer, scheduler, RNG,
    grad scaler, arguments, ``trainer_state.json``): never model weights."""
    return bool(_TRAINING.match(name))


def is_known_non_weight(name: str) -> bool:
    """Training state or PEFT adapter files: ``.bin``/``.safetensors`` files that are not
    shards of the model's weights."""
    return is_training_file(name) or name in ADAPTER_FILES


def is_tokenizer_file(name: str) -> bool:
    """Whether ``name`` is a tokenizer file (:data:`TOKENIZER_FILES` or a variant)."""
    return bool(_TOKENIZER.match(name))


def tokenizer_files(folder: Path) -> list[Path]:
    """The tokenizer files in ``folder``, sorted by name (the one definition of "the
    tokenizer" for arm-verify, ``OUT/model`` copies and folded adapters)."""
    return sorted(path for path in folder.iterdir()
                  if path.is_file() and is_tokenizer_file(path.name)) if folder.is_dir() else []


def has_tokenizer(folder: Path) -> bool:
    """Whether any tokenizer file is in ``folder``."""
    return bool(tokenizer_files(folder))


def _index_metadata(folder: Path) -> dict:
    for name in INDEX_FILES:
        try:
            data = json.loads((folder / name).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        metadata = data.get("metadata") if isinstance(data, dict) else None
        return metadata if isinstance(metadata, dict) else {}
    return {}


def has_full_weights(folder: Path) -> bool:
    """Whether ``folder`` has a weight index or a single weight file."""
    return any((folder / name).is_file() for name in (*INDEX_FILES, *SINGLE_FILES))


def folder_kind(folder: str | Path) -> FolderKind:
    """``trainer`` (any training-state file), ``merge`` (MergeKit's ``mergekit_config.yml``,
    or an index MergeKit wrote), ``adapter`` (PEFT adapter files and no full weights) or
    ``model``."""
    folder = Path(folder)
    names = {path.name for path in folder.iterdir()} if folder.is_dir() else set()
    if "adapter_config.json" in names and not has_full_weights(folder):
        return "adapter"  # a PEFT Trainer's checkpoint too: training state beside an adapter
    if any(is_training_file(name) for name in names):
        return "trainer"
    if "mergekit_config.yml" in names or "mergekit_version" in _index_metadata(folder):
        return "merge"  # (a card naming mergekit is no sign: arm-stream's card is tagged so)
    return "model"


def merge_sources(folder: Path) -> list[str]:
    """``base_model`` then every ``model`` named in a merge's ``mergekit_config.yml`` (where
    MergeKit copies the tokenizer from); empty when it is missing or unreadable."""
    try:  # the bounded loader: a hostile file (an alias bomb) is refused, not walked
        data = load_yaml_file(folder / "mergekit_config.yml", "merge config")
    except ArmError:
        return []
    found: list[str] = []

    def walk(node: object) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key in ("base_model", "model") and isinstance(value, str):
                    found.append(value)
                else:
                    walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    if isinstance(data, dict) and isinstance(data.get("base_model"), str):
        found.append(data["base_model"])
    walk(data)
    return list(dict.fromkeys(found))


def read_weight_index(folder: Path) -> tuple[str | None, list[str] | None]:
    """``(index file name, the weight files it names)`` of a sharded folder (names None
    when the index cannot be read: being written, or broken); ``(None, [the single weight
    file])`` otherwise (``[]`` when there is none). The one reader of the index, for the
    files a copy needs and for the watcher's "complete yet?"."""
    for name in INDEX_FILES:
        index = folder / name
        if index.is_file():
            try:
                weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
                return name, sorted(set(map(str, weight_map.values())))
            except (OSError, ValueError, KeyError, TypeError, AttributeError):
                return name, None
    return None, [name for name in SINGLE_FILES if (folder / name).is_file()][:1]


def weight_file_names(folder: Path) -> list[str]:
    """The weight files the index names (and the index), or the single weight file."""
    index, names = read_weight_index(folder)
    return [index, *(names or [])] if index is not None else list(names or [])


def model_files(folder: str | Path) -> list[Path]:
    """The files a copy of the model in ``folder`` needs: weights (and index), configs,
    tokenizer files, the card (and the files it shows) and custom code; no training state,
    adapter, log or hidden file, no sub-folder."""
    folder = Path(folder)
    wanted = {*weight_file_names(folder), *CONFIG_FILES, *CARD_FILES}
    return [path for path in sorted(folder.iterdir())
            if path.is_file() and (path.name in wanted or is_tokenizer_file(path.name)
                                   or _CUSTOM_CODE.match(path.name))]


__all__ = ["ADAPTER_FILES", "CARD_FILES", "CONFIG_FILES", "INDEX_FILES", "MERGE_CARD",
           "SINGLE_FILES", "TOKENIZER_FILES", "TRAINER_STATE", "FolderKind", "folder_kind",
           "has_full_weights", "has_tokenizer", "is_known_non_weight", "is_tokenizer_file",
           "is_training_file", "merge_sources", "model_files", "read_weight_index",
           "tokenizer_files",
           "weight_file_names"]
