"""The model's limits (issue 22, items 4-5): positions, vocabulary, and the rank the
calibration tokens support, in ``arm-calibrate`` and in the merge."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from mergekit.merge_methods import merge_tensors
from safetensors.torch import load_file

import mergekit_arm
from mergekit_arm.rotation import cap_to_supported, supported_rank
from mergekit_arm.scripts.calibrate import main as arm_calibrate
from mergekit_arm.statistics import ActivationStatistics

POSITIONS = 64  # the tiny GPT-2's n_positions; the default --max-length is 512
LIMITS = "mergekit_arm.calibration.limits"
KERNEL = "mergekit_arm.merge_methods.arm"


@pytest.fixture(scope="module")
def folders(tmp_path_factory, demo_tokenizer, demo_records) -> dict[str, Path]:
    """A tiny GPT-2 (32 wide, 1 layer, 64 positions), two tiny Llamas (seeds 0 and 1), a
    tokenizer with more ids than their 512 embedding rows, and the calibration texts."""
    from transformers import GPT2Config, GPT2LMHeadModel

    from mergekit_arm.demo import make_tiny_model

    root = tmp_path_factory.mktemp("limits")
    tok = demo_tokenizer
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        gpt2 = GPT2LMHeadModel(GPT2Config(
            n_embd=32, n_layer=1, n_head=2, vocab_size=512, n_positions=POSITIONS,
            bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id))
    gpt2.save_pretrained(root / "gpt2")
    tok.save_pretrained(root / "gpt2")
    small = {"hidden_size": 32, "num_layers": 1, "intermediate_size": 64}
    paths = {"gpt2": root / "gpt2"}
    for seed in (0, 1):
        paths[f"llama{seed}"] = make_tiny_model(root / f"llama{seed}", "llama", tokenizer=tok,
                                                seed=seed, **small)
    big = tok.__class__.from_pretrained(root / "gpt2")
    big.add_tokens([f"<extra_{i}>" for i in range(600 - len(big))])
    big.save_pretrained(root / "big_tokenizer")
    paths["big_tokenizer"] = root / "big_tokenizer"
    longest = sorted((r["text"] for r in demo_records), key=len)[-4:]
    paths["long"] = root / "long.jsonl"
    paths["long"].write_text("".join(json.dumps({"text": t}) + "\n" for t in longest))
    paths["two_tokens"] = root / "hi.txt"
    paths["two_tokens"].write_text("hi\n")
    return paths


def _calibrate(model: Path, out: Path, *args: str):
    return CliRunner().invoke(arm_calibrate, [str(model), str(out), "-q", *args])


def _warnings(caplog, logger: str) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.name == logger and r.levelno == logging.WARNING]


def test_long_texts_on_gpt2_are_cut_at_its_positions(folders, tmp_path, caplog):
    """Was: ``IndexError: index out of range in self`` inside GPT-2's position embedding."""
    out = tmp_path / "gpt2.safetensors"
    with caplog.at_level(logging.WARNING):
        result = _calibrate(folders["gpt2"], out, "--data", str(folders["long"]))
    assert result.exit_code == 0, result.output
    (message,) = _warnings(caplog, LIMITS)  # the positions; no supported-rank warning
    assert "max_length 512" in message and f"{POSITIONS} positions" in message
    assert "n_positions" in message
    stats = ActivationStatistics(out)
    assert stats.metadata["max_length"] == str(POSITIONS)
    assert stats.num_tokens == 4 * POSITIONS  # every text was longer, each cut at 64


@pytest.mark.parametrize(("config", "expected"), [
    pytest.param({"model_type": "gpt2", "n_positions": 64}, (64, "n_positions"), id="gpt2"),
    pytest.param({"model_type": "opt"}, (2048, "max_position_embeddings"), id="opt"),
    pytest.param({"model_type": "llama", "max_position_embeddings": 256},
                 (256, "max_position_embeddings"), id="rotary-stated"),
    pytest.param({"model_type": "bloom"}, None, id="alibi-none"),
])
def test_position_limit_is_what_the_config_states(config, expected):
    from transformers import AutoConfig

    from mergekit_arm.calibration.limits import position_limit

    model_type = config.pop("model_type")
    assert position_limit(AutoConfig.for_model(model_type, **config)) == expected


def test_a_model_without_a_position_limit_is_not_clamped(caplog):
    from transformers import PretrainedConfig

    from mergekit_arm.calibration.limits import effective_max_length

    with caplog.at_level(logging.DEBUG):
        assert effective_max_length(4096, PretrainedConfig(), longest=4096) == 4096
        assert effective_max_length(512, PretrainedConfig(max_position_embeddings=256),
                                    longest=100) == 256  # no text cut: no warning
    assert not _warnings(caplog, LIMITS)


def test_a_tokenizer_larger_than_the_embedding_is_refused(folders, tmp_path):
    out = tmp_path / "refused.safetensors"
    result = _calibrate(folders["llama0"], out, "--tokenizer", str(folders["big_tokenizer"]),
                        "--data", str(folders["two_tokens"]))
    assert result.exit_code == 2, result.output
    assert "arm-calibrate: error:" in result.output
    for part in ("has 600 tokens", "512 rows", "leave out --tokenizer"):
        assert part in " ".join(result.output.split()), result.output
    assert not out.exists()


@pytest.mark.parametrize(("eigenvalues", "tokens", "expected"), [
    pytest.param([4.0, 2.0, 1.0], None, 3, id="full"),
    pytest.param([4.0, 2.0, 1.0], 2, 2, id="capped-by-tokens"),
    pytest.param([4.0, 1e-3, 5e-6, 3e-6, 0.0], None, 3, id="noise-floor"),
    pytest.param([0.0, 0.0], 10, 0, id="zero-input"),
])
def test_supported_rank(eigenvalues, tokens, expected):
    assert supported_rank(torch.tensor(eigenvalues), tokens) == expected


@pytest.mark.parametrize(("rank", "stored", "width", "supported", "expected"), [
    pytest.param(16, 32, 32, 3, 3, id="capped"),
    pytest.param(2, 32, 32, 3, 2, id="within"),
    pytest.param(32, 32, 32, 31, 32, id="full-width-spans-everything"),
    pytest.param(64, 16, 64, 8, 8, id="stored-fewer-than-rank"),
])
def test_cap_to_supported(rank, stored, width, supported, expected):
    assert cap_to_supported(rank, stored, width, supported) == expected


@pytest.fixture(scope="module")
def two_token_stats(folders, tmp_path_factory) -> dict[str, object]:
    """Both Llamas calibrated on one 2-token line (one bos + ``hi``), plus the warnings."""
    root = tmp_path_factory.mktemp("two_token_stats")
    paths, warned = {}, []
    handler = logging.Handler()
    handler.emit = lambda record: warned.append(record.getMessage())  # type: ignore[method-assign]
    logger = logging.getLogger(LIMITS)
    logger.addHandler(handler)
    try:
        for seed in (0, 1):
            paths[seed] = root / f"llama{seed}.safetensors"
            result = _calibrate(folders[f"llama{seed}"], paths[seed], "--data",
                                str(folders["two_tokens"]), "--text-mode", "line", "--rank", "32")
            assert result.exit_code == 0, result.output
    finally:
        logger.removeHandler(handler)
    return {"paths": paths, "warnings": warned}


def test_two_token_calibration_warns_and_records_the_supported_rank(two_token_stats):
    stats = ActivationStatistics(two_token_stats["paths"][0])
    tokens = stats.num_tokens
    assert tokens <= 3
    assert stats.metadata["supported_rank"] == str(tokens)
    assert set(stats.entry_tokens.values()) == {tokens}
    for name in stats.weight_names:
        layer = stats[name]
        assert layer.tokens == tokens and layer.supported_rank == tokens
        assert float(layer.eigenvalues[tokens]) < 1e-6 * float(layer.eigenvalues[0])  # noise
    warned = [m for m in two_token_stats["warnings"] if "support fewer directions" in m]
    assert len(warned) == 2  # one per calibration
    assert f"supports {tokens} of 32 (only {tokens} tokens reached it)" in warned[0]


def _merge(folders, stats, name: str, rank: int) -> torch.Tensor:
    weights = [load_file(folders[f"llama{s}"] / "model.safetensors")[name] for s in (0, 1)]
    return merge_tensors(weights, "arm", ids=["a", "b"], base_index=1, name=name, parameters={
        "learning_rate": 0.5, "rank": rank, "origin": {"a": True, "b": False},
        "activations": {"a": str(stats[0]), "b": str(stats[1])}})


def test_the_merge_caps_rank_to_the_supported_rank(folders, two_token_stats, caplog):
    """rank 16 on 2-3 supported directions: merged as at the supported rank, one warning per
    file; rank = width spans the whole input space and is not capped."""
    mergekit_arm.register()
    paths = two_token_stats["paths"]
    tokens = ActivationStatistics(paths[0]).num_tokens
    names = ["model.layers.0.self_attn.q_proj.weight", "model.layers.0.mlp.down_proj.weight"]
    with caplog.at_level(logging.WARNING):
        capped = {n: _merge(folders, paths, n, 16) for n in names}
    warned = _warnings(caplog, KERNEL)
    assert len(warned) == 2, warned  # once per file, not per weight
    assert all("`rank: 16` is more than" in m and f"{tokens} directions" in m for m in warned)
    for name in names:
        assert torch.equal(capped[name], _merge(folders, paths, name, tokens)), name
    full = _merge(folders, paths, names[0], 32)  # q_proj is 32 wide: the whole space
    assert not torch.equal(full, capped[names[0]])


def test_normal_calibration_is_not_capped(folders, calibration_jsonl, tmp_path, caplog):
    out = tmp_path / "normal.safetensors"
    with caplog.at_level(logging.WARNING):
        result = _calibrate(folders["llama0"], out, "--data", str(calibration_jsonl),
                            "--samples", "8", "--max-length", "32", "--rank", "16")
    assert result.exit_code == 0, result.output
    assert not _warnings(caplog, LIMITS)
    stats = ActivationStatistics(out)
    assert stats.metadata["max_length"] == "32"
    assert stats.metadata["supported_rank"] == "16"
    for name in stats.weight_names:
        layer = stats[name]
        assert cap_to_supported(16, layer.rank, layer.in_features, layer.supported_rank) == 16


def test_the_stream_reuses_statistics_cut_at_the_positions(folders, tmp_path, caplog):
    """``arm-stream``'s cache key and reuse check use the tokens calibrate() feeds the model
    (cut at its 256 positions), not those at ``calibration.max_length`` (512): reused."""
    from mergekit_arm.demo.tiny_models import load_model_dir
    from mergekit_arm.stream.config import parse_config
    from mergekit_arm.stream.measure import StatisticsStore

    from .stream_helpers import stream_config

    data = stream_config(folders["llama0"], [folders["llama1"]], folders["long"])
    data["calibration"].update(samples=4, max_length=512)
    config = parse_config(data)
    module, tokenizer = load_model_dir(folders["llama0"])
    store = StatisticsStore(config, tokenizer, torch.device("cpu"), tmp_path / "cache", False)
    first = store.cached(module, "origin")
    written = first.stat().st_mtime_ns
    stats = ActivationStatistics(first)
    assert stats.metadata["max_length"] == "256"
    assert stats.calibration_fingerprint == store.fingerprint_for(module) != store.fingerprint
    assert store.cached(module, "origin") == first
    assert first.stat().st_mtime_ns == written  # reused, not calibrated again


@pytest.mark.parametrize(("text", "refused"), [
    pytest.param("<extra_3> hi", True, id="ids-past-the-embedding"),
    pytest.param("hi there", False, id="ids-within"),
])
def test_a_tokenizer_given_with_a_loaded_model(folders, tmp_path, text, refused):
    """A loaded model with its tokenizer (``arm-stream``'s path) is refused only when the
    texts' ids pass the embedding; the message names the tokenizer as given."""
    from transformers import AutoTokenizer

    from mergekit_arm.calibration import CalibrationOptions, calibrate
    from mergekit_arm.demo.tiny_models import load_model_dir
    from mergekit_arm.errors import CalibrationError

    module, _ = load_model_dir(folders["llama0"])
    big = AutoTokenizer.from_pretrained(folders["big_tokenizer"])
    out = tmp_path / "given.safetensors"
    if refused:
        with pytest.raises(CalibrationError, match="given with the model has 600 tokens"):
            calibrate(module, out, CalibrationOptions(), tokenizer=big, texts=[text],
                      progress=False)
        assert not out.exists()
    else:
        calibrate(module, out, CalibrationOptions(), tokenizer=big, texts=[text], progress=False)
        assert ActivationStatistics(out).num_tokens > 0


def test_held_out_texts_are_cut_at_the_model_positions(folders, demo_tokenizer, caplog):
    """arm-stream's validation and arm-choose's scoring build their batches with the
    model's config: long held-out texts on the 64-position GPT-2 score instead of ending in
    ``IndexError: index out of range in self`` (the default max_length is 512)."""
    from transformers import AutoConfig, AutoModelForCausalLM

    from mergekit_arm.calibration import TextRole
    from mergekit_arm.evaluation import heldout_loss
    from mergekit_arm.heldout import heldout_batches
    from mergekit_arm.stream.config import ValidationConfig

    section = ValidationConfig(data=str(folders["long"]), samples=4)
    config = AutoConfig.from_pretrained(folders["gpt2"])
    model = AutoModelForCausalLM.from_pretrained(folders["gpt2"])
    role = TextRole("validation data", "validation.data")
    uncut = heldout_batches(section, "validation", demo_tokenizer, torch.device("cpu"), 512, role)
    assert max(b.input_ids.shape[1] for b in uncut) > POSITIONS  # the texts are long enough
    with pytest.raises(IndexError):
        heldout_loss(model, uncut)
    with caplog.at_level(logging.WARNING, logger=LIMITS):
        cut = heldout_batches(section, "validation", demo_tokenizer, torch.device("cpu"), 512,
                              role, config)
    assert max(b.input_ids.shape[1] for b in cut) == POSITIONS
    assert any("64 positions" in m for m in _warnings(caplog, LIMITS))
    assert torch.isfinite(torch.tensor(heldout_loss(model, cut)))
