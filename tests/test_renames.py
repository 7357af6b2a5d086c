"""Weights a checkpoint stores under another name than transformers 5 loads them as
(mergekit_arm/calibration/renames.py): found from transformers' conversion mapping, plain
renamings only, and recorded in the statistics content as aliases of the runtime entry."""

from __future__ import annotations

import pytest
import torch

from mergekit_arm.calibration.renames import add_checkpoint_names, renamed_weights
from mergekit_arm.statistics import LayerStatistics, StatisticsContent

pytestmark = pytest.mark.usefixtures("one_torch_thread")

_SMALL = dict(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
              num_attention_heads=2)


def _model(kind: str) -> torch.nn.Module:
    import transformers
    from accelerate import init_empty_weights

    extra = {"MixtralConfig": dict(num_key_value_heads=1, num_local_experts=2)}.get(kind, {})
    config = getattr(transformers, kind)(**_SMALL, **extra)
    with init_empty_weights():
        return transformers.AutoModelForCausalLM.from_config(config)


@pytest.mark.parametrize(("kind", "stored", "want"), [
    # in memory: the names save_pretrained writes
    ("GPTNeoXConfig", None, {"embed_out.weight": "lm_head.weight"}),
    ("LlamaConfig", None, {}),
    # Mixtral's router is renamed (block_sparse_moe -> mlp); its stacked experts are built
    # by a WeightConverter from per-expert tensors: no renaming, no alias
    ("MixtralConfig", None, {"model.layers.0.block_sparse_moe.gate.weight":
                             "model.layers.0.mlp.gate.weight"}),
    # a checkpoint's own names: only those it holds, and never a parameter's own name
    ("GPTNeoXConfig", ["embed_out.weight", "gpt_neox.embed_in.weight"],
     {"embed_out.weight": "lm_head.weight"}),
    ("GPTNeoXConfig", ["lm_head.weight", "gpt_neox.embed_in.weight"], {}),
    ("MixtralConfig", ["model.layers.0.block_sparse_moe.experts.0.w1.weight",
                       "model.layers.0.mlp.gate.weight"], {}),
])
def test_renamed_weights(kind, stored, want):
    assert renamed_weights(_model(kind), stored) == want


def _layer(n: int = 4) -> LayerStatistics:
    return LayerStatistics(basis=torch.eye(n)[:, :2], eigenvalues=torch.tensor([2.0, 1.0]),
                           trace=torch.tensor(3.0))


def test_checkpoint_names_become_aliases_of_the_runtime_entries():
    """A renamed linear weight: an alias with its own probe (a copy: safetensors refuses
    shared storage) and the ``transposed`` mark; a renamed stacked tensor: one alias per
    expert entry; a renamed embedding: listed as no linear map, and its tie kept; an alias
    of an alias points at the stored entry; a name already in the file is left alone."""
    probe = torch.arange(3.0)
    content = StatisticsContent(
        layers={"lm_head.weight": _layer(), "q.weight": _layer(), "experts.up[0]": _layer(),
                "experts.up[1]": _layer(), "kept.weight": _layer()},
        probes={"lm_head.weight": probe, "k.weight": probe + 1},
        aliases={"k.weight": "q.weight"},
        transposed=["lm_head.weight"],
        other_2d_weights=["embed.weight"],
        tied_weights={"embed.weight": "lm_head.weight"},
    )
    add_checkpoint_names(content, {"embed_out.weight": "lm_head.weight", "old_k.weight": "k.weight",
                                   "old.up": "experts.up", "old_embed.weight": "embed.weight",
                                   "kept.weight": "q.weight"})
    assert content.aliases == {"k.weight": "q.weight", "embed_out.weight": "lm_head.weight",
                               "old_k.weight": "q.weight", "old.up[0]": "experts.up[0]",
                               "old.up[1]": "experts.up[1]"}
    assert torch.equal(content.probes["embed_out.weight"], probe)
    assert content.probes["embed_out.weight"].data_ptr() != probe.data_ptr()
    assert torch.equal(content.probes["old_k.weight"], probe + 1)
    assert "embed_out.weight" in content.transposed
    assert "old_embed.weight" in content.other_2d_weights
    assert content.tied_weights["old_embed.weight"] == "lm_head.weight"
