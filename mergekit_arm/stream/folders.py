"""Model folders a stream writes (steps/step-K/, model/): loadable Hugging Face folders."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from mergekit_arm._io import atomic_directory


def save_model_folder(
    module: torch.nn.Module,
    tokenizer: Any,
    folder: Path,
    dtype: torch.dtype = torch.float32,
    extra_files: dict[str, str | bytes] | None = None,
) -> None:
    """Write a loadable Hugging Face folder (weights in ``dtype``, tokenizer) atomically."""
    with atomic_directory(folder, overwrite=True) as tmp:
        state = None
        if dtype != torch.float32:
            state = {name: t.to(dtype) for name, t in module.state_dict().items()}
        module.save_pretrained(tmp, state_dict=state)
        # save_pretrained records the module's (float32) dtype; declare the written one
        config_file = tmp / "config.json"
        config = json.loads(config_file.read_text(encoding="utf-8"))
        config["dtype"] = str(dtype).replace("torch.", "")
        config_file.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        tokenizer.save_pretrained(tmp)
        for name, content in (extra_files or {}).items():
            target = tmp / name
            if isinstance(content, bytes):
                target.write_bytes(content)
            else:
                target.write_text(content, encoding="utf-8")


__all__ = ["save_model_folder"]
