"""Bad inputs the ``arm`` kernel must refuse by name (issue 12): results that overflow the
written dtype, statistics lacking entries, inputs or statistics of the wrong shape."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from mergekit.merge_methods import merge_tensors
from safetensors.torch import load_file, save_file

import mergekit_arm
from mergekit_arm.errors import NonFiniteError, StatisticsError
from mergekit_arm.merge_methods.arm_checks import InputShapeError, check_representable
from mergekit_arm.statistics import (
    ActivationStatistics,
    LayerStatistics,
    StatisticsContent,
    load_statistics,
    weight_probe,
    write_statistics,
)

from .reference import nearby_subspace, random_subspace

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module", autouse=True)
def _registered():
    mergekit_arm.register()


# -- the written dtype ------------------------------------------------------------------------

REPRESENTABLE = [
    # (value, dtype, fits)
    pytest.param(65504.0, torch.float16, True, id="fp16-max"),
    pytest.param(70000.0, torch.float16, False, id="fp16-overflow"),
    pytest.param(-70000.0, torch.float16, False, id="fp16-negative-overflow"),
    pytest.param(70000.0, torch.bfloat16, True, id="bf16-wide"),
    pytest.param(3.0e38, torch.float32, True, id="fp32-large"),
    pytest.param(float("inf"), torch.float32, False, id="inf"),
    pytest.param(float("nan"), torch.bfloat16, False, id="nan"),
]


@pytest.mark.parametrize(("value", "dtype", "ok"), REPRESENTABLE)
def test_check_representable(value, dtype, ok):
    tensor = torch.zeros(5, 7)
    tensor[2, 3] = value
    if ok:
        check_representable(tensor, dtype, "w")
    else:
        with pytest.raises(NonFiniteError, match="tensor w"):
            check_representable(tensor, dtype, "w")


def _tiny_model(folder: Path, seed: int, hidden: int = 32, vocab: int = 64,
                base: dict[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
    from transformers import LlamaConfig

    config = LlamaConfig(hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=1, head_dim=hidden // 2,
                         vocab_size=vocab, tie_word_embeddings=False,
                         architectures=["LlamaForCausalLM"])
    shapes = {
        "model.embed_tokens.weight": (vocab, hidden), "lm_head.weight": (vocab, hidden),
        "model.norm.weight": (hidden,),
        "model.layers.0.input_layernorm.weight": (hidden,),
        "model.layers.0.post_attention_layernorm.weight": (hidden,),
        "model.layers.0.self_attn.q_proj.weight": (hidden, hidden),
        "model.layers.0.self_attn.k_proj.weight": (hidden // 2, hidden),
        "model.layers.0.self_attn.v_proj.weight": (hidden // 2, hidden),
        "model.layers.0.self_attn.o_proj.weight": (hidden, hidden),
        "model.layers.0.mlp.gate_proj.weight": (2 * hidden, hidden),
        "model.layers.0.mlp.up_proj.weight": (2 * hidden, hidden),
        "model.layers.0.mlp.down_proj.weight": (hidden, 2 * hidden),
    }
    g = torch.Generator().manual_seed(seed)
    tensors = {}
    for name, shape in shapes.items():
        fresh = 0.02 * torch.randn(shape, generator=g)
        tensors[name] = fresh if base is None else base[name] + 0.1 * fresh
    folder.mkdir(parents=True)
    config.save_pretrained(folder)
    save_file(tensors, str(folder / "model.safetensors"), metadata={"format": "pt"})
    return tensors


def _mergekit_yaml(tmp_path: Path, config: dict) -> subprocess.CompletedProcess:
    path = tmp_path / "merge.yml"
    path.write_text(yaml.safe_dump(config))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "mergekit.scripts.run_yaml", str(path), str(tmp_path / "out"),
         "--no-copy-tokenizer", "--no-write-model-card"],
        capture_output=True, text=True, env=env, timeout=300)


def test_result_overflowing_out_dtype_fails_mergekit_yaml(tmp_path):
    """Finite in float32, Inf in float16: refused by name, no model written."""
    origin = _tiny_model(tmp_path / "origin", 0)
    _tiny_model(tmp_path / "ckpt", 1, base=origin)
    config = {
        "merge_method": "arm", "dtype": "float32", "out_dtype": "float16",
        "base_model": str(tmp_path / "ckpt"),
        "models": [{"model": str(tmp_path / "origin"), "parameters": {"origin": True}}],
        "parameters": {"learning_rate": 1.0e8, "missing_statistics": "plain"},
    }
    done = _mergekit_yaml(tmp_path, config)
    assert done.returncode != 0, done.stdout + done.stderr
    named = re.search(r"tensor (\S+\.weight) has values up to \S+, beyond float16's largest",
                      done.stderr)
    assert named, done.stderr[-2000:]
    assert not (tmp_path / "out" / "config.json").exists()
    # the same merge written as bfloat16 fits, and holds no Inf
    config["out_dtype"] = "bfloat16"
    done = _mergekit_yaml(tmp_path, config)
    assert done.returncode == 0, done.stderr
    merged = load_file(str(tmp_path / "out" / "model.safetensors"))
    assert all(bool(torch.isfinite(t.float()).all()) for t in merged.values())


def test_result_overflowing_the_input_dtype_is_refused():
    """A float16 merge (``dtype: float16``) returns float16: checked in float16."""
    a = torch.zeros(6, dtype=torch.float16)
    b = torch.full((6,), 1000.0, dtype=torch.float16)
    with pytest.raises(NonFiniteError, match="float16's largest finite value"):
        merge_tensors([a, b], "arm", ids=["a", "b"], base_index=1, name="model.norm.weight",
                      parameters={"learning_rate": 100.0, "origin": {"a": True, "b": False}})


# -- statistics lacking entries -----------------------------------------------------------------


def _stats_file(path: Path, weights: dict[str, torch.Tensor], bases: dict[str, torch.Tensor],
                other_2d=("model.embed_tokens.weight",)) -> str:
    layers = {}
    for name, basis in bases.items():
        eig = torch.linspace(2.0, 1.0, basis.shape[1])
        layers[name] = LayerStatistics(basis, eig, eig.sum() + 1.0)
    content = StatisticsContent(
        layers=layers, probes={n: weight_probe(weights[n]) for n in bases},
        other_2d_weights=list(other_2d),
        metadata={"calibration_fingerprint": "same", "probe_dtype": "float32"})
    return str(write_statistics(path, content))


def _arm_merge(tmp_path: Path, origin: str, base: str, origin_parameters: dict | None = None,
               parameters: dict | None = None, **options) -> None:
    """A MergeKit ``arm`` merge of ``tmp_path/origin`` (the origin) into ``tmp_path/base``,
    written to ``tmp_path/out`` (learning rate 0.5; ``options``: more MergeOptions)."""
    from mergekit.config import MergeConfiguration
    from mergekit.merge import run_merge
    from mergekit.options import MergeOptions

    config = MergeConfiguration.model_validate({
        "merge_method": "arm", "dtype": "float32", "base_model": str(tmp_path / base),
        "models": [{"model": str(tmp_path / origin),
                    "parameters": {"origin": True, **(origin_parameters or {})}}],
        "parameters": {"learning_rate": 0.5, **(parameters or {})},
    })
    run_merge(config, str(tmp_path / "out"), options=MergeOptions(
        copy_tokenizer=False, write_model_card=False, quiet=True, **options))


def test_lm_head_without_statistics_is_refused_in_a_merge(tmp_path):
    """lm_head has a vocabulary axis but is a linear map: a file without its entry is
    refused under the default `missing_statistics: error` (it used to take the plain step)."""
    origin = _tiny_model(tmp_path / "origin", 0)
    ckpt = _tiny_model(tmp_path / "ckpt", 1, base=origin)
    g = torch.Generator().manual_seed(0)
    linear = [n for n, t in origin.items() if t.ndim == 2 and "embed" not in n and "lm_head" not in n]
    bases = {n: random_subspace(origin[n].shape[1], 4, g) for n in linear}
    from_stats = _stats_file(tmp_path / "o.st", origin, bases)
    cur_stats = _stats_file(tmp_path / "c.st", ckpt, {n: nearby_subspace(b, 0.2, g) for n, b in bases.items()})
    with pytest.raises(StatisticsError, match=r"lm_head\.weight: not found in"):
        _arm_merge(tmp_path, "origin", "ckpt", {"activations": from_stats},
                   {"activations": cur_stats})
    assert not (tmp_path / "out" / "config.json").exists()


def _dangling_alias_file(tmp_path: Path) -> Path:
    """A statistics file whose k_proj aliases a q_proj entry that is not stored."""
    g = torch.Generator().manual_seed(0)
    weight = torch.randn(8, 8, generator=g)
    path = tmp_path / "good.st"
    _stats_file(path, {"model.layers.0.self_attn.o_proj.weight": weight},
                {"model.layers.0.self_attn.o_proj.weight": random_subspace(8, 2, g)})
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        tensors = {k: handle.get_tensor(k) for k in handle.keys()}  # noqa: SIM118 - safe_open is no dict
        metadata = dict(handle.metadata())
    metadata["aliases"] = json.dumps({"model.layers.0.self_attn.k_proj.weight":
                                      "model.layers.0.self_attn.q_proj.weight"})
    broken = tmp_path / "broken.st"
    save_file(tensors, str(broken), metadata=metadata)
    return broken


def test_alias_to_a_missing_entry_is_a_statistics_error(tmp_path):
    broken = _dangling_alias_file(tmp_path)
    with pytest.raises(StatisticsError, match=r"k_proj\.weight.*q_proj\.weight.*re-run arm-calibrate"):
        ActivationStatistics(broken)
    with pytest.raises(StatisticsError, match="q_proj"):
        load_statistics(broken)


# -- shapes -------------------------------------------------------------------------------------


def test_inputs_of_different_widths_name_the_models(tmp_path):
    _tiny_model(tmp_path / "narrow", 0, hidden=32)
    _tiny_model(tmp_path / "wide", 1, hidden=48)
    with pytest.raises(InputShapeError, match=r"different shapes: .*narrow.*wide|different shapes: .*wide.*narrow"):
        _arm_merge(tmp_path, "narrow", "wide", parameters={"missing_statistics": "plain"},
                   allow_crimes=True)


def test_wrong_sized_statistics_without_verification_name_the_file(tmp_path):
    name = "model.layers.0.mlp.down_proj.weight"
    g = torch.Generator().manual_seed(0)
    origin = torch.randn(6, 8, generator=g)
    ckpt = origin + 0.1 * torch.randn(6, 8, generator=g)
    good = _stats_file(tmp_path / "good.st", {name: ckpt}, {name: random_subspace(8, 2, g)})
    wide = _stats_file(tmp_path / "wide.st", {name: torch.randn(6, 12)}, {name: random_subspace(12, 2, g)})
    with pytest.raises(StatisticsError, match=r"down_proj\.weight in .*wide\.st .*input size 12"):
        merge_tensors([origin, ckpt], "arm", ids=["o", "c"], base_index=1, name=name,
                      parameters={"learning_rate": 0.5, "verify_statistics": False,
                                  "origin": {"o": True, "c": False},
                                  "activations": {"o": wide, "c": good}})


def test_vocabulary_difference_is_named_before_mergekits_message(tmp_path, caplog):
    """Vocabularies may be aligned by `tokenizer:`, so only logged, naming both models."""
    _tiny_model(tmp_path / "small", 0, vocab=64)
    _tiny_model(tmp_path / "large", 1, vocab=80)
    with caplog.at_level("WARNING"), pytest.raises(ValueError, match="Tensor size mismatch"):
        _arm_merge(tmp_path, "small", "large", parameters={"missing_statistics": "plain"})
    warned = [r.getMessage() for r in caplog.records if "vocabulary sizes" in r.getMessage()]
    assert warned and "small" in warned[0] and "large" in warned[0]
