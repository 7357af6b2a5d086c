"""The quick-start world of ``arm-demo-models ROOT``: tiny models made offline on a CPU.

* ``ROOT/models/base``: a tiny random model briefly "pretrained" on the english and
  code texts of the default corpus;
* ``ROOT/sft-run/checkpoint-{10,20,...,N}``: the Trainer's checkpoints of an "SFT" run
  of ``base`` on the math texts (what ``arm-stream --watch`` follows);
* ``ROOT/models/sft-step-{10,20,N}``: the model files of those checkpoints (what the
  YAML examples merge; the last one plays the "converged" SFT model);
* ``ROOT/heldout-math.jsonl``: math texts the SFT never sees.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

from mergekit_arm.demo import corpus
from mergekit_arm.demo.tiny_models import (
    ARCHITECTURES,
    MODEL_FILES,
    is_complete_model_dir,
    make_tiny_model,
)
from mergekit_arm.demo.tokenizer import DEMO_VOCAB_SIZE, train_tokenizer
from mergekit_arm.demo.training import DEMO_MAX_LENGTH, fine_tune

# Settings of the quick-start world (well under a minute on 2 cores).
DEMO_PRETRAIN_STEPS = 60
DEMO_SAVE_STEPS = 10
DEMO_EARLY_STEPS = (10, 20)
SFT_RUN = "sft-run"


def _replace_dir(src: Path, dst: Path) -> None:
    """Move the finished folder ``src`` to ``dst``, replacing an incomplete leftover."""
    if dst.exists():
        shutil.rmtree(dst)
    os.replace(src, dst)


def _copy_model_files(checkpoint: Path, dst: Path) -> Path:
    """The model folder inside a Trainer checkpoint (no optimizer or trainer state)."""
    keep = {*MODEL_FILES, "generation_config.json", "tokenizer_config.json",
            "special_tokens_map.json", "chat_template.jinja"}
    dst.mkdir(parents=True)
    for file in checkpoint.iterdir():
        if file.name in keep:
            shutil.copy2(file, dst / file.name)
    return dst


def make_demo(
    root: str | os.PathLike,
    arch: str = "llama",
    sft_steps: int = 40,
    seed: int = 0,
    num_threads: int | None = 1,
) -> dict[str, Path]:
    """Build (or reuse) the quick-start models under ``root`` (see the module docstring).

    Returns ``{"base": ..., "sft-step-10": ..., "sft-step-20": ..., f"sft-step-{sft_steps}":
    ...}`` (early steps above ``sft_steps`` are left out). Complete folders are reused,
    not retrained; each new folder appears only once finished. Training uses
    ``num_threads`` torch threads (restored afterwards; ``None``: leave as is).
    """
    if arch not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {arch!r}; choose one of {ARCHITECTURES}")
    if sft_steps < 1:
        raise ValueError("sft_steps must be at least 1")
    root = Path(root)
    models, run = root / "models", root / SFT_RUN
    base = models / "base"
    sft_at = sorted({k for k in DEMO_EARLY_STEPS if k < sft_steps} | {sft_steps})
    paths: dict[str, Path] = {"base": base}
    paths.update({f"sft-step-{k}": models / f"sft-step-{k}" for k in sft_at})
    if is_complete_model_dir(base):
        found = json.loads((base / "config.json").read_text(encoding="utf-8")).get("model_type")
        if found != arch:
            raise ValueError(f"{base} holds a {found!r} model, not {arch!r}; "
                             "use another root folder for another architecture")
    heldout = root / "heldout-math.jsonl"
    if not heldout.is_file():
        from mergekit_arm._io import write_text_atomic

        write_text_atomic(heldout, "".join(json.dumps({"text": t}) + "\n"
                                           for t in corpus.demo_heldout_texts()))
    checkpoints = [run / f"checkpoint-{k}" for k in sft_at]
    if all(is_complete_model_dir(p) for p in [*paths.values(), *checkpoints]):
        return paths

    models.mkdir(parents=True, exist_ok=True)
    math = corpus.demo_sft_texts()
    general = corpus.default_demo_texts(("english", "code"))
    with tempfile.TemporaryDirectory(prefix=".demo-", dir=root) as tmp_name:
        tmp = Path(tmp_name)
        if not is_complete_model_dir(base):
            tokenizer = train_tokenizer(corpus.default_demo_texts(), DEMO_VOCAB_SIZE,
                                        model_max_length=DEMO_MAX_LENGTH)
            init = make_tiny_model(tmp / "init", arch, tokenizer, seed=seed,
                                   vocab_size=DEMO_VOCAB_SIZE)
            pretrained = fine_tune(init, tmp / "pretrain", general, DEMO_PRETRAIN_STEPS,
                                   seed=seed, num_threads=num_threads)
            _replace_dir(_copy_model_files(pretrained[DEMO_PRETRAIN_STEPS], tmp / "base"), base)
        saved = fine_tune(base, tmp / SFT_RUN, math, sft_steps, save_steps=DEMO_SAVE_STEPS,
                          seed=seed + 1, num_threads=num_threads)
        for k in sft_at:
            copied = _copy_model_files(saved[k], tmp / f"sft-step-{k}")
            _replace_dir(copied, paths[f"sft-step-{k}"])
        _replace_dir(tmp / SFT_RUN, run)
    return paths


__all__ = ["DEMO_EARLY_STEPS", "DEMO_PRETRAIN_STEPS", "DEMO_SAVE_STEPS", "SFT_RUN", "make_demo"]
