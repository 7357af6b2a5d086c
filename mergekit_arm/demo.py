"""Tiny local models for demos and tests; nothing is ever downloaded.

The quick-start world of :func:`make_demo`: a byte-level BPE tokenizer trained on the
package's default calibration texts, a tiny random model briefly "pretrained" on the
english and code texts (``models/base``), and a short "SFT" run on the math texts whose
early checkpoints (``models/sft-step-10``, ``models/sft-step-20``) and final checkpoint
(``models/sft-step-{N}``) are what ARM merges. Everything runs on a CPU in seconds.
"""

from __future__ import annotations

import contextlib
import copy
import inspect
import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
import transformers
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    LlamaConfig,
    PreTrainedTokenizerBase,
    PreTrainedTokenizerFast,
    Qwen3Config,
)

__all__ = [
    "ARCHITECTURES",
    "DOMAINS",
    "default_demo_records",
    "demo_heldout_texts",
    "default_demo_texts",
    "evaluate_loss",
    "fine_tune",
    "is_complete_model_dir",
    "make_demo",
    "make_tiny_model",
    "tiny_config",
    "train_tokenizer",
]

ARCHITECTURES = ("llama", "qwen3")
DOMAINS = ("english", "math", "code")
EOS_TOKEN = "<|endoftext|>"

# Settings of the quick-start world (small enough for well under a minute on 2 cores).
DEMO_VOCAB_SIZE = 512
DEMO_MAX_LENGTH = 64
DEMO_PRETRAIN_STEPS = 60
DEMO_EARLY_STEPS = (10, 20)
# The last math texts are never trained on: the quick start reports loss on them.
DEMO_HELDOUT = 32


# ------------------------------------------------------------------------- runtime


@contextlib.contextmanager
def _quiet_runtime(num_threads: int | None = None) -> Iterator[None]:
    """Hide transformers' progress bars and optionally use ``num_threads`` torch threads,
    restoring both afterwards (the thread count is process-wide while this runs)."""
    from transformers.utils import logging as hf_logging

    bars = hf_logging.is_progress_bar_enabled()
    threads = torch.get_num_threads()
    if bars:
        hf_logging.disable_progress_bar()
    if num_threads is not None:
        if num_threads < 1:
            raise ValueError("num_threads must be at least 1")
        torch.set_num_threads(num_threads)
    try:
        yield
    finally:
        if num_threads is not None:
            torch.set_num_threads(threads)
        if bars:
            hf_logging.enable_progress_bar()


# --------------------------------------------------------------------------- texts


def _default_calibration_path() -> Path:
    """Path of the default calibration corpus (``calibration/default.jsonl``)."""
    try:
        from mergekit_arm.calibration import default_calibration_path
    except ImportError:
        pass
    else:
        return Path(default_calibration_path())
    package = Path(__file__).resolve().parent
    candidates = [
        package.parent / "calibration" / "default.jsonl",  # source checkout / editable
        package / "_calibration" / "default.jsonl",  # installed wheel
    ]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(
        "the default calibration corpus was not found; looked at "
        + ", ".join(str(c) for c in candidates)
    )


def default_demo_records() -> list[dict[str, Any]]:
    """Records (``{"text": ..., "domain": ...}``) of the package's default calibration file."""
    path = _default_calibration_path()
    records = []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            record = json.loads(line)
            if not isinstance(record, dict) or not isinstance(record.get("text"), str):
                raise ValueError(f"{path}:{number}: expected a JSON object with a 'text' string")
            records.append(record)
    if not records:
        raise ValueError(f"{path} holds no texts")
    return records


def demo_heldout_texts() -> list[str]:
    """Math texts of the corpus that ``make_demo``'s fine-tune never sees."""
    math = [r["text"] for r in default_demo_records() if r.get("domain") == "math"]
    return math[-DEMO_HELDOUT:]


def default_demo_texts(domains: str | Iterable[str] | None = None) -> list[str]:
    """Texts of the default calibration corpus, optionally only the given domain(s)."""
    records = default_demo_records()
    if domains is None:
        return [r["text"] for r in records]
    wanted = {domains} if isinstance(domains, str) else set(domains)
    texts = [r["text"] for r in records if r.get("domain") in wanted]
    if not texts:
        raise ValueError(f"the default corpus has no texts in domain(s) {sorted(wanted)}")
    return texts


# ----------------------------------------------------------------------- tokenizer


def train_tokenizer(
    texts: list[str], vocab_size: int = DEMO_VOCAB_SIZE, model_max_length: int = 1024
) -> PreTrainedTokenizerFast:
    """Train a byte-level BPE tokenizer offline on ``texts``.

    ``<|endoftext|>`` is the bos, eos and pad token; no special tokens are added to
    encoded text automatically; padding is on the right.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    if not texts:
        raise ValueError("train_tokenizer needs at least one text")
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[EOS_TOKEN],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token=EOS_TOKEN,
        eos_token=EOS_TOKEN,
        pad_token=EOS_TOKEN,
        padding_side="right",
        model_max_length=model_max_length,
        clean_up_tokenization_spaces=False,
    )


# -------------------------------------------------------------------------- models


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


def _dtype_kwarg(dtype: torch.dtype) -> dict[str, torch.dtype]:
    """``dtype=`` for transformers >= 4.56, ``torch_dtype=`` before."""
    major, minor = (int(p) for p in transformers.__version__.split(".")[:2])
    return {"dtype": dtype} if (major, minor) >= (4, 56) else {"torch_dtype": dtype}


def _save_model(model: torch.nn.Module, path: Path) -> None:
    """``save_pretrained`` as safetensors (the only format of transformers 5)."""
    kwargs: dict[str, Any] = {}
    if "safe_serialization" in inspect.signature(model.save_pretrained).parameters:
        kwargs["safe_serialization"] = True
    model.save_pretrained(path, **kwargs)


def is_complete_model_dir(path: str | os.PathLike) -> bool:
    """Whether ``path`` holds a saved model (config.json, model.safetensors, tokenizer)."""
    path = Path(path)
    return all((path / name).is_file() for name in
               ("config.json", "model.safetensors", "tokenizer.json"))


def _replace_dir(src: Path, dst: Path) -> None:
    """Move the finished folder ``src`` to ``dst``, replacing an incomplete leftover."""
    if dst.exists():
        shutil.rmtree(dst)
    os.replace(src, dst)


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
    path = Path(path)
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
    return _save_checkpoint(model, tokenizer, path, dtype)


# ------------------------------------------------------------------------ training


def _encode(
    tokenizer: PreTrainedTokenizerBase, texts: Sequence[str], max_length: int
) -> dict[str, torch.Tensor]:
    """Tokenise ``texts`` (eos appended), pad right; labels mask padding with -100."""
    eos = tokenizer.eos_token or ""
    batch = tokenizer(
        [t + eos for t in texts],
        max_length=max_length,
        truncation=True,
        padding=True,
        return_tensors="pt",
    )
    labels = batch["input_ids"].clone()
    labels[batch["attention_mask"] == 0] = -100
    return {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"],
            "labels": labels}


def _load_for_training(
    model_path: Path,
) -> tuple[torch.nn.Module, PreTrainedTokenizerBase, torch.dtype]:
    with _quiet_runtime():
        model = AutoModelForCausalLM.from_pretrained(model_path, **_dtype_kwarg(torch.float32))
    saved_dtype = getattr(model.config, "dtype", None) or getattr(model.config, "torch_dtype", None)
    if isinstance(saved_dtype, str):
        saved_dtype = getattr(torch, saved_dtype, torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "right"
    return model, tokenizer, saved_dtype or torch.float32


@torch.no_grad()
def evaluate_loss(
    model_path: str | os.PathLike,
    texts: Sequence[str],
    max_length: int = DEMO_MAX_LENGTH,
    batch_size: int = 8,
    num_threads: int | None = None,
) -> float:
    """Mean causal-LM loss per predicted token of the saved model on ``texts``
    (each text followed by eos, truncated to ``max_length`` tokens)."""
    model, tokenizer, _ = _load_for_training(Path(model_path))
    model.eval()
    total, count = 0.0, 0
    with _quiet_runtime(num_threads):
        for start in range(0, len(texts), batch_size):
            batch = _encode(tokenizer, texts[start:start + batch_size], max_length)
            n = int((batch["labels"][:, 1:] != -100).sum())
            if n == 0:
                continue
            total += float(model(**batch, use_cache=False).loss) * n
            count += n
    if count == 0:
        raise ValueError("no tokens to evaluate")
    return total / count


def fine_tune(
    model_path: str | os.PathLike,
    out_dir: str | os.PathLike,
    texts: Sequence[str],
    steps: int,
    learning_rate: float = 3e-3,
    batch_size: int = 8,
    max_length: int = DEMO_MAX_LENGTH,
    save_at: list[int] | None = None,
    seed: int = 0,
    num_threads: int | None = None,
) -> dict[int, Path]:
    """Train the saved model on ``texts`` (AdamW, causal-LM loss) on the CPU.

    Saves a full model folder (weights in the model's saved dtype, config, tokenizer)
    as ``out_dir/step-{k}`` for each ``k`` in ``save_at`` (default: only ``steps``) and
    returns ``{k: path}``. The data order comes from a generator seeded with ``seed``
    and the global torch RNG is left as it was, so a run is reproducible (bit for bit
    with the same torch build and thread count). ``num_threads`` sets torch's thread
    count for the run only (``None``: leave it); one thread is fastest for tiny models
    on a busy machine.
    """
    if steps < 1:
        raise ValueError("steps must be at least 1")
    if not texts:
        raise ValueError("fine_tune needs at least one text")
    save_steps = sorted(set(save_at if save_at is not None else [steps]))
    bad = [k for k in save_steps if not 1 <= k <= steps]
    if bad:
        raise ValueError(f"save_at steps {bad} are outside 1..{steps}")
    out_dir = Path(out_dir)
    model, tokenizer, saved_dtype = _load_for_training(Path(model_path))
    data = _encode(tokenizer, list(texts), max_length)
    n = data["input_ids"].shape[0]
    generator = torch.Generator().manual_seed(seed)
    order: list[int] = []
    saved: dict[int, Path] = {}
    with torch.random.fork_rng(devices=[]), _quiet_runtime(num_threads):
        torch.manual_seed(seed)
        optimizer = torch.optim.AdamW(model.parameters(), lr=learning_rate, weight_decay=0.0)
        model.train()
        for step in range(1, steps + 1):
            if len(order) < batch_size:
                order += torch.randperm(n, generator=generator).tolist() * max(
                    1, -(-batch_size // n))
            idx, order = order[:batch_size], order[batch_size:]
            batch = {k: v[idx] for k, v in data.items()}
            width = int(batch["attention_mask"].sum(dim=1).max())
            batch = {k: v[:, :width] for k, v in batch.items()}
            loss = model(**batch, use_cache=False).loss
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            if step in save_steps:
                saved[step] = _save_checkpoint(model, tokenizer, out_dir / f"step-{step}",
                                               saved_dtype)
    return saved


def _save_checkpoint(
    model: torch.nn.Module, tokenizer: PreTrainedTokenizerBase, path: Path, dtype: torch.dtype
) -> Path:
    """Save ``model`` in ``dtype`` (a converted copy; ``model`` is left as it is) with the
    tokenizer into ``path``."""
    to_save = model if model.dtype == dtype else copy.deepcopy(model).to(dtype)
    to_save.config.dtype = dtype
    path.mkdir(parents=True, exist_ok=True)
    with _quiet_runtime():
        _save_model(to_save, path)
    tokenizer.save_pretrained(path)
    return path


# ---------------------------------------------------------------------- demo world


def make_demo(
    root: str | os.PathLike,
    arch: str = "llama",
    sft_steps: int = 40,
    seed: int = 0,
    num_threads: int | None = 1,
) -> dict[str, Path]:
    """Build (or reuse) the quick-start models under ``root/models``.

    Returns ``{"base": ..., "sft-step-10": ..., "sft-step-20": ..., f"sft-step-{sft_steps}":
    ...}`` (early steps above ``sft_steps`` are left out). ``base`` is a tiny random model
    pretrained for a few steps on the english and code texts; the ``sft-step-*`` folders
    are checkpoints of fine-tuning ``base`` on the math texts (the last one plays the
    "converged" SFT model, the early ones are what ARM merges). Complete folders
    (config.json, model.safetensors, tokenizer.json) are reused, not retrained.
    ``root/heldout-math.jsonl`` receives the math texts the fine-tune never sees
    (:func:`demo_heldout_texts`), for held-out losses.
    Training uses ``num_threads`` torch threads (restored afterwards; ``None``: leave as is).
    """
    if arch not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {arch!r}; choose one of {ARCHITECTURES}")
    if sft_steps < 1:
        raise ValueError("sft_steps must be at least 1")
    models = Path(root) / "models"
    base = models / "base"
    sft_at = sorted({k for k in DEMO_EARLY_STEPS if k < sft_steps} | {sft_steps})
    paths: dict[str, Path] = {"base": base}
    paths.update({f"sft-step-{k}": models / f"sft-step-{k}" for k in sft_at})
    if is_complete_model_dir(base):
        found = json.loads((base / "config.json").read_text(encoding="utf-8")).get("model_type")
        if found != arch:
            raise ValueError(f"{base} holds a {found!r} model, not {arch!r}; "
                             "use another root folder for another architecture")
    heldout = Path(root) / "heldout-math.jsonl"
    if not heldout.is_file():
        from mergekit_arm._io import write_text_atomic

        write_text_atomic(heldout, "".join(json.dumps({"text": t}) + "\n"
                                           for t in demo_heldout_texts()))
    if all(is_complete_model_dir(p) for p in paths.values()):
        return paths

    models.mkdir(parents=True, exist_ok=True)
    records = default_demo_records()
    math = [r["text"] for r in records if r.get("domain") == "math"][:-DEMO_HELDOUT]
    general = [r["text"] for r in records if r.get("domain") in ("english", "code")]
    if not math or not general:
        raise ValueError("the demo corpus needs math texts and english or code texts")

    with tempfile.TemporaryDirectory(prefix=".demo-", dir=models) as tmp_name:
        tmp = Path(tmp_name)
        if not is_complete_model_dir(base):
            tokenizer = train_tokenizer([r["text"] for r in records], DEMO_VOCAB_SIZE,
                                        model_max_length=DEMO_MAX_LENGTH)
            init = make_tiny_model(tmp / "init", arch, tokenizer, seed=seed,
                                   vocab_size=DEMO_VOCAB_SIZE)
            pretrained = fine_tune(init, tmp / "pretrain", general, DEMO_PRETRAIN_STEPS,
                                   learning_rate=3e-3, max_length=DEMO_MAX_LENGTH, seed=seed,
                                   num_threads=num_threads)
            _replace_dir(pretrained[DEMO_PRETRAIN_STEPS], base)
        checkpoints = fine_tune(base, tmp / "sft", math, sft_steps, learning_rate=3e-3,
                                max_length=DEMO_MAX_LENGTH, save_at=sft_at, seed=seed + 1,
                                num_threads=num_threads)
        for k, path in checkpoints.items():
            _replace_dir(path, paths[f"sft-step-{k}"])
    return paths
