"""Tiny random mixture-of-experts models (Mixtral, Qwen3-MoE) saved as Hugging Face folders.

hidden 32, 2 layers, 4 experts, top-2, float32; ``save_pretrained`` writes the checkpoint
names transformers' conversion mapping reads back (Mixtral: ``block_sparse_moe.experts.N.w1``,
Qwen3-MoE: ``mlp.experts.N.gate_proj``), as MergeKit 0.1.5 reads them.
"""

from __future__ import annotations

from pathlib import Path

import torch

MOE_ARCHITECTURES = ("mixtral", "qwen3_moe")


def moe_config(arch: str, vocab_size: int, **overrides):
    """Config of a tiny Mixtral or Qwen3-MoE (hidden 32, 2 layers, 4 experts, top-2)."""
    from transformers import MixtralConfig, Qwen3MoeConfig

    common = dict(vocab_size=vocab_size, hidden_size=32, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=2, head_dim=8,
                  max_position_embeddings=256, num_experts_per_tok=2, tie_word_embeddings=False)
    common.update(overrides)
    if arch == "mixtral":
        return MixtralConfig(intermediate_size=48, num_local_experts=4, **common)
    if arch == "qwen3_moe":
        return Qwen3MoeConfig(intermediate_size=48, moe_intermediate_size=24, num_experts=4,
                              decoder_sparse_step=1, **common)
    raise ValueError(f"unknown MoE architecture {arch!r}; choose one of {MOE_ARCHITECTURES}")


def make_tiny_moe(path: Path, arch: str, tokenizer, seed: int = 0, **overrides) -> Path:
    """Save a seeded random tiny MoE model plus ``tokenizer`` into ``path``."""
    from transformers import AutoModelForCausalLM

    from mergekit_arm.demo.tiny_models import save_model_dir

    config = moe_config(arch, max(512, len(tokenizer)), bos_token_id=tokenizer.bos_token_id,
                        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
                        **overrides)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = AutoModelForCausalLM.from_config(config)
    return save_model_dir(model, tokenizer, Path(path), torch.float32)


def perturbed_copy(source: Path, out: Path, scale: float, seed: int) -> Path:
    """``source`` with every weight moved by seeded Gaussian noise of relative size ``scale``
    (a stand-in for a fine-tuned checkpoint)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from mergekit_arm.demo.tiny_models import save_model_dir

    model = AutoModelForCausalLM.from_pretrained(source, dtype=torch.float32)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(scale * p.std().clamp_min(1e-3) * torch.randn(p.shape, generator=generator))
    return save_model_dir(model, AutoTokenizer.from_pretrained(source), Path(out), torch.float32)
