"""Issue 22, items 2 and 3: statistics follow each input's SOURCE weight, and a tied
embedding matrix is rotated by one rule on every path.

* MergeKit ``slices:`` / ``layer_range`` with an offset: output layer ``i`` built from
  source layer ``j`` is rotated with layer ``j``'s statistics of each model (each source
  of a slice has its own ``layer_range``); merges are compared with the float64
  reference; the verification message names the source layer, the output tensor and the
  model, and never contradicts itself.
* Tied embeddings: the statistics file declares the tie (``tied_weights``); the kernel
  rotates the tied matrix with ``lm_head``'s input statistics under either name; every
  ``steps/step-K.yml`` of a stream on a tied Llama replays to ``steps/step-K`` exactly.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
import yaml
from safetensors import safe_open

from mergekit_arm.errors import StatisticsError

from .helpers import load_state_dict, reference_merge, relative_error
from .reference import reference_arm_step

pytestmark = pytest.mark.usefixtures("one_torch_thread")

RANK, LEARNING_RATE = 4, 0.5
VOCAB = 520  # rows of the tied models' embeddings (the demo tokenizer has 512 ids)
TINY = {"hidden_size": 32, "intermediate_size": 64}


def _perturbed_copy(source: Path, out: Path, seed: int, scale: float = 0.05,
                    only: str = "") -> Path:
    """``source`` with every parameter (whose name starts with ``only``) moved by ``scale``
    times its mean magnitude in a seeded random direction (a stand-in for fine-tuning; a
    tie stays a tie)."""
    from mergekit_arm.demo.tiny_models import load_model_dir, save_model_dir

    model, tokenizer = load_model_dir(source)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if not name.startswith(only):
                continue
            noise = torch.randn(param.shape, generator=generator)
            param.add_(scale * param.abs().mean() * noise)
    return save_model_dir(model, tokenizer, out, torch.float32)


def _calibrate(folder: Path, out: Path, texts: list[str], mode: str = "auto") -> Path:
    from mergekit_arm.calibration import CalibrationOptions, calibrate

    options = CalibrationOptions(samples=12, max_length=32, rank=8, batch_size=4, device="cpu",
                                 mode=mode)
    return calibrate(folder, out, options, texts=texts, progress=False).path


def _run_merge(config: dict, out: Path) -> dict[str, torch.Tensor]:
    """MergeKit's own ``run_merge`` (what ``mergekit-yaml`` runs) in this process."""
    from mergekit.config import MergeConfiguration
    from mergekit.merge import run_merge
    from mergekit.options import MergeOptions

    run_merge(MergeConfiguration.model_validate(config), str(out), options=MergeOptions(
        copy_tokenizer=False, write_model_card=False, quiet=True))
    return load_state_dict(out)


# -- slices ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pair(tmp_path_factory, demo_tokenizer, calibration_texts):
    """A tiny untied 2-layer Llama (the origin), a perturbed sibling (the base), and the
    statistics of each."""
    from mergekit_arm.demo import make_tiny_model

    root = tmp_path_factory.mktemp("slices")
    origin = make_tiny_model(root / "origin", "llama", tokenizer=demo_tokenizer, seed=0, **TINY)
    sibling = _perturbed_copy(origin, root / "sibling", seed=1)
    return {
        "root": root, "origin": origin, "sibling": sibling,
        "origin_stats": _calibrate(origin, root / "origin.st", calibration_texts),
        "sibling_stats": _calibrate(sibling, root / "sibling.st", calibration_texts),
    }


def _slices_config(pair: dict, slices: list[tuple[list[int], list[int]]],
                   base: Path | None = None) -> dict:
    """An ``arm`` config with one output slice per ``(origin layer_range, base layer_range)``
    (``base``: another base model, still given the sibling's statistics)."""
    origin_stats, base_stats = pair["origin_stats"], pair["sibling_stats"]
    base = base or pair["sibling"]
    return {
        "merge_method": "arm", "base_model": str(base),
        "slices": [{"sources": [
            {"model": str(pair["origin"]), "layer_range": from_range,
             "parameters": {"origin": True, "activations": str(origin_stats)}},
            {"model": str(base), "layer_range": cur_range},
        ]} for from_range, cur_range in slices],
        "parameters": {"learning_rate": LEARNING_RATE, "rank": RANK,
                       "activations": str(base_stats)},
        "dtype": "float32", "out_dtype": "float32",
    }


def _source(name: str, output_layer_to_source: dict[int, int]) -> str:
    """The source name of output tensor ``name`` (``model.layers.I.`` -> ``model.layers.J.``)."""
    match = re.match(r"model\.layers\.(\d+)\.(.*)", name)
    if match is None:
        return name
    return f"model.layers.{output_layer_to_source[int(match[1])]}.{match[2]}"


def _subspace(stats: Path, name: str) -> torch.Tensor | None:
    """The top-RANK basis of entry ``name`` (aliases resolved), read independently."""
    with safe_open(str(stats), "pt") as handle:
        stored = json.loads(handle.metadata()["aliases"]).get(name, name)
        if f"{stored}::basis" not in set(handle.keys()):
            return None
        return handle.get_tensor(f"{stored}::basis")[:, :RANK]


def _slices_reference(pair: dict, slices: list[tuple[list[int], list[int]]]) -> dict:
    """Every output tensor in float64: output layer ``k`` of slice ``s`` reads origin layer
    ``from_range[0] + i`` and base layer ``cur_range[0] + i``, each rotated with its own
    model's statistics of its own source layer."""
    origin, cur = load_state_dict(pair["origin"]), load_state_dict(pair["sibling"])
    to_from, to_cur, k = {}, {}, 0
    for from_range, cur_range in slices:
        for i in range(from_range[1] - from_range[0]):
            to_from[k], to_cur[k] = from_range[0] + i, cur_range[0] + i
            k += 1
    names = [n for n in cur if not n.startswith("model.layers.")] + [
        n for n in cur if n.startswith("model.layers.0.")]
    out = {}
    for layer in range(k):
        for name in names:
            output = name.replace("model.layers.0.", f"model.layers.{layer}.")
            from_name, cur_name = _source(output, to_from), _source(output, to_cur)
            s_from = _subspace(pair["origin_stats"], from_name)
            s_cur = _subspace(pair["sibling_stats"], cur_name)
            assert (s_from is None) == (s_cur is None)
            out[output] = reference_arm_step(cur[cur_name], origin[from_name], [cur[cur_name]],
                                             [1.0], s_from, s_cur, LEARNING_RATE)
    return out


SLICE_CASES = {
    # output layer 0 <- layer 1 of both models
    "offset": [([1, 2], [1, 2])],
    # output layer 0 <- origin layer 0 and base layer 1: each model its own source layer
    "per-model-layer": [([0, 1], [1, 2])],
    # two output slices in reverse order: output 0 <- layer 1, output 1 <- layer 0
    "reversed": [([1, 2], [1, 2]), ([0, 1], [0, 1])],
    # layer 1 duplicated (outputs 1 and 2 both read it)
    "duplicated": [([0, 2], [0, 2]), ([1, 2], [1, 2])],
}


@pytest.mark.parametrize("case", sorted(SLICE_CASES))
def test_slices_use_each_models_source_layer_statistics(pair, tmp_path, case):
    slices = SLICE_CASES[case]
    merged = _run_merge(_slices_config(pair, slices), tmp_path / "out")
    expected = _slices_reference(pair, slices)
    assert sorted(merged) == sorted(expected)
    for name, want in expected.items():
        error = relative_error(merged[name], want)
        assert error < 1e-4, f"{case}: {name}: relative error {error:.2e}"


def test_slices_verification_names_source_layer_output_and_model(pair, tmp_path):
    """A base that differs from the model its statistics came from in layer 1 only, merged
    from layer_range [1, 2]: the refusal names the source layer that was read
    (model.layers.1), the output tensor it was read for (model.layers.0) and both models
    (it said "computed from M, not from M", about layer 0)."""
    changed = _perturbed_copy(pair["sibling"], tmp_path / "changed", seed=5,
                              only="model.layers.1.")
    config = _slices_config(pair, [([1, 2], [1, 2])], base=changed)
    with pytest.raises(StatisticsError) as raised:
        _run_merge(config, tmp_path / "out")
    message = str(raised.value)
    assert re.search(r"the values of model\.layers\.1\.\S+, read for MergeKit's output "
                     r"tensor model\.layers\.0\.", message), message
    assert f"computed from {pair['sibling']}, not from {changed}" in message, message


def test_verification_of_a_changed_model_does_not_contradict_itself(pair):
    """A file checked against the model it names, whose values changed since: the
    message says so instead of "computed from M, not from M"."""
    from mergekit_arm.statistics import load_statistics

    stats = load_statistics(pair["sibling_stats"])
    name = "model.layers.1.self_attn.q_proj.weight"
    weight = load_state_dict(pair["sibling"])[name] + 1.0
    with pytest.raises(StatisticsError) as raised:
        stats.check_weight(name, weight, stats.model)
    message = str(raised.value)
    assert "not from" not in message and "changed after calibration" in message, message
    assert "verify_statistics: false" not in message


# -- tied embeddings -----------------------------------------------------------------------


def _tied_config(arch: str, ids: dict):
    from transformers import GemmaConfig, GPT2Config, LlamaConfig

    # VOCAB rows, more than the tokenizer's ids: MergeKit's tokenizer alignment re-indexes them
    common = {"vocab_size": VOCAB, "num_hidden_layers": 2, "num_attention_heads": 4,
              "num_key_value_heads": 2, "head_dim": 8, "max_position_embeddings": 128, **TINY}
    if arch == "gpt2":
        return GPT2Config(vocab_size=VOCAB, n_embd=32, n_layer=2, n_head=4, n_positions=128, **ids)
    if arch == "gemma":
        return GemmaConfig(**common, **ids)
    return LlamaConfig(**common, tie_word_embeddings=arch == "llama-tied", **ids)


def _save_tiny(arch: str, out: Path, tokenizer) -> Path:
    from transformers import AutoModelForCausalLM

    from mergekit_arm.demo.tiny_models import save_model_dir

    ids = {k: getattr(tokenizer, k) for k in ("bos_token_id", "eos_token_id", "pad_token_id")}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = AutoModelForCausalLM.from_config(_tied_config(arch, ids))
    return save_model_dir(model, tokenizer, out, torch.float32)


TIES = {  # (architecture, calibration mode) -> the tie its statistics file must declare
    ("llama-tied", "all-at-once"): {"model.embed_tokens.weight": "lm_head.weight"},
    ("llama-tied", "layer-sequential"): {"model.embed_tokens.weight": "lm_head.weight"},
    ("llama", "layer-sequential"): {},
    ("gpt2", "all-at-once"): {"transformer.wte.weight": "lm_head.weight"},
    ("gemma", "layer-sequential"): {"model.embed_tokens.weight": "lm_head.weight"},
}


@pytest.mark.parametrize(("arch", "mode"), sorted(TIES))
def test_statistics_declare_the_tied_embedding(tmp_path, demo_tokenizer, calibration_texts,
                                               arch, mode):
    from mergekit_arm.statistics import load_statistics

    folder = _save_tiny(arch, tmp_path / arch, demo_tokenizer)
    stats = load_statistics(_calibrate(folder, tmp_path / "stats.st", calibration_texts, mode))
    assert stats.tied_weights == TIES[arch, mode]
    for embedding, head in stats.tied_weights.items():
        assert embedding in stats.other_2d_weights and head in stats


@pytest.fixture(scope="module")
def tied_pair(tmp_path_factory, demo_tokenizer, calibration_texts):
    """A tiny tied Llama (the origin), a perturbed sibling (the base), their statistics."""
    root = tmp_path_factory.mktemp("tied")
    origin = _save_tiny("llama-tied", root / "origin", demo_tokenizer)
    sibling = _perturbed_copy(origin, root / "sibling", seed=3)
    return {"root": root, "origin": origin, "sibling": sibling,
            "stats": {k: _calibrate(p, root / f"{k}.st", calibration_texts)
                      for k, p in (("origin", origin), ("sibling", sibling))}}


def _tied_expected(tied_pair: dict, name: str, rotated: bool = True) -> torch.Tensor:
    """The reference step of the tied matrix: lm_head's subspaces (``rotated``) or none."""
    cur = load_state_dict(tied_pair["sibling"])["model.embed_tokens.weight"]
    origin = load_state_dict(tied_pair["origin"])["model.embed_tokens.weight"]
    stats = tied_pair["stats"]
    s_from, s_cur = ((_subspace(stats["origin"], "lm_head.weight"),
                      _subspace(stats["sibling"], "lm_head.weight")) if rotated else (None, None))
    return reference_arm_step(cur, origin, [cur], [1.0], s_from, s_cur, LEARNING_RATE)


def test_kernel_rotates_the_tied_matrix_alike_under_both_names(tied_pair):
    """A tied Llama merged in memory (the stream's path: the state dict holds the matrix as
    model.embed_tokens.weight and lm_head.weight): both names give the same tensor, the
    head's rotation; without the tie in the files, the embedding took the plain step."""
    from mergekit.merge_methods import merge_state_dicts

    states = {}
    for key in ("origin", "sibling"):
        state = load_state_dict(tied_pair[key])
        state["lm_head.weight"] = state["model.embed_tokens.weight"]
        states[key] = state
    parameters = {"learning_rate": LEARNING_RATE, "rank": RANK,
                  "origin": {"origin": True, "sibling": False},
                  "activations": {k: str(v) for k, v in tied_pair["stats"].items()}}
    with torch.no_grad():
        merged = merge_state_dicts(states, "arm", base="sibling", parameters=parameters,
                                   dtype=torch.float32, out_dtype=torch.float32)
    name = "model.embed_tokens.weight"
    assert torch.equal(merged[name], merged["lm_head.weight"])
    assert relative_error(merged[name], _tied_expected(tied_pair, name)) < 1e-4
    # the rotation is visible: the plain step is measurably different
    assert relative_error(merged[name], _tied_expected(tied_pair, name, rotated=False)) > 1e-3


@pytest.mark.parametrize("tokenizer_source", [None, "base"])
def test_mergekit_rotates_the_tied_matrix_like_the_reference(tied_pair, demo_tokenizer,
                                                             tokenizer_source):
    """mergekit-yaml's path (the checkpoint stores only model.embed_tokens.weight; MergeKit
    skips the optional lm_head): every tensor equals the float64 reference, whose tied
    embedding takes lm_head's subspaces. With ``tokenizer_source`` MergeKit hands the
    kernel the embedding cut to the tokenizer's ids (no longer the checkpoint's rows: the
    probe check is skipped, it refused with "the model was changed after calibration")."""
    config = {
        "merge_method": "arm", "base_model": str(tied_pair["sibling"]),
        "models": [{"model": str(tied_pair["origin"]),
                    "parameters": {"origin": True,
                                   "activations": str(tied_pair["stats"]["origin"])}}],
        "parameters": {"learning_rate": LEARNING_RATE, "rank": RANK,
                       "activations": str(tied_pair["stats"]["sibling"])},
        "dtype": "float32", "out_dtype": "float32",
    }
    expected = reference_merge(config, tied_pair["root"])
    if tokenizer_source is not None:
        config["tokenizer_source"] = tokenizer_source
        rows = len(demo_tokenizer)
        assert rows < VOCAB
        expected = {n: t[:rows] if n == "model.embed_tokens.weight" else t
                    for n, t in expected.items()}
    merged = _run_merge(config, tied_pair["root"] / f"merged-{tokenizer_source}")
    assert sorted(merged) == sorted(expected)
    for name, want in expected.items():
        assert relative_error(merged[name], want) < 1e-4, name
    name = "model.embed_tokens.weight"
    want = _tied_expected(tied_pair, name)[: expected[name].shape[0]]
    assert relative_error(expected[name], want) < 1e-6


@pytest.mark.slow
def test_every_stream_step_of_a_tied_llama_replays_exactly(tmp_path, demo_tokenizer,
                                                           calibration_jsonl):
    """arm-stream on a tied Llama (2 steps, save_every 1): each steps/step-K.yml, run by
    MergeKit, gives steps/step-K bit for bit (it differed by 13-15% in the embedding)."""
    from stream_helpers import stream_config

    from mergekit_arm.stream import run_stream

    origin = _save_tiny("llama-tied", tmp_path / "origin", demo_tokenizer)
    checkpoints = [_perturbed_copy(origin, tmp_path / f"ckpt-{i}", seed=10 + i) for i in (0, 1)]
    out = tmp_path / "stream"
    run_stream(stream_config(origin, checkpoints, calibration_jsonl, steps=2, save_every=1,
                             arm={"rank": RANK, "rotation_strength": 1.0}),
               out, progress=False)
    for step in (1, 2):
        config = yaml.safe_load((out / "steps" / f"step-{step}.yml").read_text())
        replay = _run_merge(config, tmp_path / f"replay-{step}")
        saved = load_state_dict(out / "steps" / f"step-{step}")
        assert sorted(replay) == sorted(saved)
        for name, tensor in saved.items():
            assert torch.equal(replay[name], tensor), (
                f"step {step}: {name} differs by {relative_error(replay[name], tensor):.2e}")
