"""Layer-sequential calibration equals the all-at-once pass; one decoder layer resident at a time.

Also: the automatic mode choice, the ``--mode`` flag, and calibrating a model that
accelerate dispatched with CPU and disk offload (the "larger than one device" path,
exercised on the CPU).
"""

from __future__ import annotations

import pytest
import torch
from click.testing import CliRunner

from mergekit_arm.calibration import (
    CalibrationOptions,
    TokenBatches,
    calibrate,
    choose_mode,
    collect_statistics,
    collect_statistics_layerwise,
    decoder_stack,
    load_lazy_causal_lm,
    model_fingerprint,
    tokenize_texts,
)
from mergekit_arm.calibration import mode as mode_choice
from mergekit_arm.errors import CalibrationError
from mergekit_arm.models import load_causal_lm, load_tokenizer
from mergekit_arm.scripts.calibrate import main as calibrate_cli
from mergekit_arm.statistics import ActivationStatistics

ARCHS = ["tiny_llama", "tiny_qwen3"]
RANK = 16


def _tokens(model_dir, texts, max_length=48):
    tokenizer = load_tokenizer(model_dir)
    return tokenize_texts(tokenizer, texts, max_length), tokenizer.pad_token_id


def _leading_ks(eigenvalues: torch.Tensor, rel_gap: float = 1e-3) -> list[int]:
    """Every k whose eigenvalue gap (relative to the largest) makes the top-k span well defined."""
    ev = eigenvalues.double()
    gaps = (ev[:-1] - ev[1:]) / ev[0]
    return [int(k) + 1 for k in torch.nonzero(gaps > rel_gap).flatten()]


def assert_same_statistics(a, b, rtol=1e-4, atol=1e-6, projector_atol=1e-4):
    """Two StatisticsContent objects agree to float32 tolerance (eigenvectors up to
    rotations within degenerate eigenspaces: projectors are compared at eigengaps)."""
    assert set(a.layers) == set(b.layers)
    assert a.aliases == b.aliases
    assert sorted(a.transposed) == sorted(b.transposed)
    assert sorted(a.other_2d_weights) == sorted(b.other_2d_weights)
    assert set(a.probes) == set(b.probes)
    for name in a.probes:
        torch.testing.assert_close(a.probes[name], b.probes[name], rtol=0, atol=0)
    for name, x in a.layers.items():
        y = b.layers[name]
        assert x.basis.shape == y.basis.shape, name
        torch.testing.assert_close(x.eigenvalues, y.eigenvalues, rtol=rtol, atol=atol, msg=name)
        torch.testing.assert_close(x.trace, y.trace, rtol=rtol, atol=atol, msg=name)
        ks = _leading_ks(x.eigenvalues)
        assert ks, f"{name}: no eigengap in the top {RANK}"
        for k in ks:
            px = x.basis[:, :k].double() @ x.basis[:, :k].double().T
            py = y.basis[:, :k].double() @ y.basis[:, :k].double().T
            torch.testing.assert_close(px, py, rtol=0, atol=projector_atol, msg=f"{name} k={k}")


# -- equality with the all-at-once pass ---------------------------------------------------


@pytest.mark.parametrize("arch", ARCHS)
def test_layer_sequential_equals_all_at_once(request, arch, calibration_texts):
    model_dir = request.getfixturevalue(arch)
    tokens, pad = _tokens(model_dir, calibration_texts[:12])
    model = load_causal_lm(model_dir, "float32", "cpu")
    full, _ = collect_statistics(model, tokens, pad, RANK, 4, False, mode="all-at-once")
    seq, timings = collect_statistics(model, tokens, pad, RANK, 4, False, mode="layer-sequential")
    assert_same_statistics(full, seq)
    assert seq.metadata["model_fingerprint"] == model_fingerprint(model)
    assert {"forward", "eigen"} <= set(timings)
    # Every linear has statistics or an alias, the lm_head included.
    assert "lm_head.weight" in seq.layers
    assert seq.aliases["model.layers.1.self_attn.v_proj.weight"] == (
        "model.layers.1.self_attn.q_proj.weight")


@pytest.mark.parametrize("arch", ARCHS)
def test_lazy_model_from_disk_equals_all_at_once(request, arch, calibration_texts):
    model_dir = request.getfixturevalue(arch)
    tokens, pad = _tokens(model_dir, calibration_texts[:12])
    model = load_causal_lm(model_dir, "float32", "cpu")
    full, _ = collect_statistics(model, tokens, pad, RANK, 4, False, mode="all-at-once")
    lazy = load_lazy_causal_lm(model_dir, "float32")
    assert all(p.device.type == "meta" for p in decoder_stack(lazy).layers.parameters())
    seq, _ = collect_statistics_layerwise(lazy, TokenBatches(tokens, pad, 4), RANK, progress=False)
    assert_same_statistics(full, seq)
    assert seq.metadata["model_fingerprint"] == model_fingerprint(model)
    # Layers are given back after the pass.
    assert all(p.device.type == "meta" for p in decoder_stack(lazy).layers.parameters())


def test_lazy_model_with_tied_embeddings(tmp_path, demo_tokenizer, calibration_texts):
    """lm_head tied to the embeddings (not stored in the checkpoint) is tied in the lazy model."""
    from mergekit_arm.demo import make_tiny_model

    model_dir = make_tiny_model(tmp_path / "tied", "llama", tokenizer=demo_tokenizer, seed=2,
                                tie_word_embeddings=True)
    tokens, pad = _tokens(model_dir, calibration_texts[:6], 32)
    model = load_causal_lm(model_dir, "float32", "cpu")
    full, _ = collect_statistics(model, tokens, pad, RANK, 3, False, mode="all-at-once")
    lazy = load_lazy_causal_lm(model_dir, "float32")
    assert lazy.lm_head.weight is lazy.model.embed_tokens.weight
    seq, _ = collect_statistics_layerwise(lazy, TokenBatches(tokens, pad, 3), RANK, progress=False)
    assert_same_statistics(full, seq)
    assert seq.metadata["model_fingerprint"] == model_fingerprint(model)


def test_sliding_window_layers_get_their_own_mask(tmp_path, demo_tokenizer, calibration_texts):
    """Qwen3 with sliding-window layers passes different masks to different layers; the
    capture keeps each layer's own arguments."""
    from mergekit_arm.demo import make_tiny_model

    model_dir = make_tiny_model(tmp_path / "swa", "qwen3", tokenizer=demo_tokenizer, seed=1,
                                num_layers=3, use_sliding_window=True, sliding_window=4,
                                max_window_layers=1)
    model = load_causal_lm(model_dir, "float32", "cpu")
    assert len(set(model.config.layer_types)) == 2
    tokens, pad = _tokens(model_dir, calibration_texts[:8], 40)
    full, _ = collect_statistics(model, tokens, pad, RANK, 4, False, mode="all-at-once")
    seq, _ = collect_statistics(model, tokens, pad, RANK, 4, False, mode="layer-sequential")
    assert_same_statistics(full, seq)


@pytest.mark.parametrize("arch", ARCHS)
def test_calibrate_files_equal_across_modes(request, arch, calibration_texts, tmp_path):
    model_dir = request.getfixturevalue(arch)
    texts = calibration_texts[:10]
    files = {}
    for mode in ("all-at-once", "layer-sequential"):
        options = CalibrationOptions(rank=RANK, max_length=48, batch_size=3, mode=mode)
        result = calibrate(model_dir, tmp_path / f"{mode}.st", options, texts=texts, progress=False)
        assert result.mode == mode
        files[mode] = ActivationStatistics(result.path)
    a, b = files["all-at-once"], files["layer-sequential"]
    assert b.metadata["calibration_mode"] == "layer-sequential"
    for key in ("model_fingerprint", "calibration_fingerprint", "num_tokens", "num_samples",
                "probe_dtype", "aliases", "transposed", "other_2d_weights"):
        assert a.metadata[key] == b.metadata[key], key
    assert a.weight_names == b.weight_names
    for name in a.weight_names:
        x, y = a[name], b[name]
        torch.testing.assert_close(x.eigenvalues, y.eigenvalues, rtol=1e-4, atol=1e-6)
        torch.testing.assert_close(x.trace, y.trace, rtol=1e-4, atol=1e-6)
        torch.testing.assert_close(x.probe, y.probe, rtol=0, atol=0)
        for k in _leading_ks(x.eigenvalues):
            torch.testing.assert_close(x.basis[:, :k] @ x.basis[:, :k].T,
                                       y.basis[:, :k] @ y.basis[:, :k].T, rtol=0, atol=1e-4)
    b.validate_all()


# -- one layer at a time ----------------------------------------------------------------------


def _resident_layers(layers) -> int:
    return sum(any(p.device.type != "meta" for p in layer.parameters()) for layer in layers)


def test_one_decoder_layer_resident_at_a_time(tmp_path, demo_tokenizer, calibration_texts):
    """With the layers read lazily, count (with hooks) how many decoder layers hold real
    weights while each one runs: always exactly one, for 2 and for 6 layers."""
    from mergekit_arm.demo import make_tiny_model

    for depth in (2, 6):
        model_dir = make_tiny_model(tmp_path / f"d{depth}", "llama", tokenizer=demo_tokenizer,
                                    seed=0, num_layers=depth)
        tokens, pad = _tokens(model_dir, calibration_texts[:6], 32)
        model = load_lazy_causal_lm(model_dir, "float32")
        layers = decoder_stack(model).layers
        seen: list[tuple[int, int]] = []
        handles = [
            layer.register_forward_pre_hook(
                lambda module, args, i=i, seen=seen, layers=layers: seen.append(
                    (i, _resident_layers(layers))))
            for i, layer in enumerate(layers)
        ]
        try:
            collect_statistics_layerwise(model, TokenBatches(tokens, pad, 2), 8, progress=False)
        finally:
            for handle in handles:
                handle.remove()
        batches = (len(tokens) + 1) // 2
        assert len(seen) == depth * batches
        assert {resident for _, resident in seen} == {1}
        # All batches of layer i run before layer i+1 starts.
        order = [i for i, _ in seen]
        assert order == sorted(order)
        assert _resident_layers(layers) == 0


def test_in_memory_model_runs_layer_by_layer(tiny_llama, calibration_texts):
    """In-memory model: each layer finishes every batch before the next layer starts (so
    only that layer has to be on the compute device); all-at-once interleaves them."""
    tokens, pad = _tokens(tiny_llama, calibration_texts[:6], 32)
    model = load_causal_lm(tiny_llama, "float32", "cpu")
    for mode, expect_sorted in (("layer-sequential", True), ("all-at-once", False)):
        order: list[int] = []
        handles = [layer.register_forward_pre_hook(lambda m, a, i=i, order=order: order.append(i))
                   for i, layer in enumerate(model.model.layers)]
        try:
            collect_statistics(model, tokens, pad, 8, 2, False, mode=mode)
        finally:
            for handle in handles:
                handle.remove()
        assert len(order) == 2 * 3
        assert (order == sorted(order)) is expect_sorted, (mode, order)


# -- choosing the mode ------------------------------------------------------------------------


def test_auto_mode_choice(tiny_llama, monkeypatch):
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(tiny_llama)
    kwargs = {"weight_bytes": 10**6, "weights_on_device": False, "batch_size": 8, "max_length": 512}
    assert choose_mode(config, "cpu", **kwargs)[0] == "all-at-once"
    monkeypatch.setattr(mode_choice, "free_memory", lambda device: 10**6)
    mode, reason = choose_mode(config, "cpu", **kwargs)
    assert mode == "layer-sequential" and "GiB" in reason
    monkeypatch.undo()
    big = AutoConfig.from_pretrained(tiny_llama)
    big.update({"hidden_size": 4096, "intermediate_size": 11008, "num_hidden_layers": 32,
                "num_attention_heads": 32, "num_key_value_heads": 32, "head_dim": 128,
                "vocab_size": 32000})
    assert mode_choice.parameter_count(big) == pytest.approx(6.7e9, rel=0.02)
    # A 7B Llama keeps ~21 GB of float32 accumulators in the all-at-once pass.
    assert mode_choice.accumulator_bytes(big) == pytest.approx(21e9, rel=0.05)
    monkeypatch.setattr(mode_choice, "free_memory", lambda device: 10**15)
    assert choose_mode(big, "cpu", **kwargs)[0] == "layer-sequential"
    # The speed threshold: SmolLM2-135M's shape runs layer by layer, its 8-layer cut does not.
    smol = AutoConfig.from_pretrained(tiny_llama)
    smol.update({"hidden_size": 576, "intermediate_size": 1536, "num_hidden_layers": 30,
                 "num_attention_heads": 9, "num_key_value_heads": 3, "head_dim": 64,
                 "vocab_size": 49152, "tie_word_embeddings": True})
    assert mode_choice.parameter_count(smol) == pytest.approx(134.5e6, rel=0.01)
    mode, reason = choose_mode(smol, "cpu", **kwargs)
    assert mode == "layer-sequential" and "M parameters (>= 100M" in reason
    smol.update({"num_hidden_layers": 8})
    assert choose_mode(smol, "cpu", **kwargs)[0] == "all-at-once"


def test_auto_calibrates_tiny_model_all_at_once(tiny_llama, calibration_texts, tmp_path):
    result = calibrate(tiny_llama, tmp_path / "auto.st", CalibrationOptions(rank=8, max_length=32),
                       texts=calibration_texts[:4], progress=False)
    assert result.mode == "all-at-once"
    assert ActivationStatistics(result.path).metadata["calibration_mode"] == "all-at-once"


def test_unsupported_layout(tmp_path, calibration_texts, demo_tokenizer):
    """GPT-2 (Conv1D, model.transformer.h): auto falls back to all-at-once; forcing
    layer-sequential is a clear error."""
    from transformers import GPT2Config, GPT2LMHeadModel

    model = GPT2LMHeadModel(GPT2Config(n_embd=32, n_layer=2, n_head=2, vocab_size=512)).eval()
    assert decoder_stack(model) is None
    tokens = tokenize_texts(demo_tokenizer, calibration_texts[:3], 16)
    content, _ = collect_statistics(model, tokens, 0, 4, 2, False, mode="auto")
    assert "transformer.h.0.attn.c_attn.weight" in content.layers
    with pytest.raises(CalibrationError, match="all-at-once"):
        collect_statistics(model, tokens, 0, 4, 2, False, mode="layer-sequential")


def test_cli_mode_flag(tiny_qwen3, calibration_jsonl, tmp_path):
    out = tmp_path / "cli.st"
    result = CliRunner().invoke(calibrate_cli, [str(tiny_qwen3), str(out), "--data",
                                str(calibration_jsonl), "--samples", "4", "--max-length", "24",
                                "--rank", "4", "--mode", "layer-sequential", "-q"])
    assert result.exit_code == 0, result.output
    assert "layer-sequential" in result.output
    assert ActivationStatistics(out).metadata["calibration_mode"] == "layer-sequential"
    bad = CliRunner().invoke(calibrate_cli, [str(tiny_qwen3), str(out), "--mode", "sideways"])
    assert bad.exit_code != 0


# -- a model split across devices by accelerate (CPU + disk offload) -----------------------------


@pytest.mark.parametrize("mode", ["all-at-once", "layer-sequential"])
def test_accelerate_dispatched_model(tmp_path, demo_tokenizer, calibration_texts, mode):
    """``infer_auto_device_map`` with a CPU budget of half the model puts the later layers,
    the final norm and lm_head on "disk"; ``dispatch_model`` runs them through offload
    hooks. Both modes give the plain model's statistics and fingerprint."""
    from accelerate import dispatch_model, infer_auto_device_map
    from accelerate.utils import compute_module_sizes

    from mergekit_arm.demo import make_tiny_model

    model_dir = make_tiny_model(tmp_path / "m", "llama", tokenizer=demo_tokenizer, seed=0,
                                num_layers=4)
    tokens, pad = _tokens(model_dir, calibration_texts[:8], 40)
    plain = load_causal_lm(model_dir, "float32", "cpu")
    reference, _ = collect_statistics(plain, tokens, pad, RANK, 4, False, mode="all-at-once")

    model = load_causal_lm(model_dir, "float32", "cpu")
    total = compute_module_sizes(model)[""]
    device_map = infer_auto_device_map(model, max_memory={"cpu": total // 2, "disk": 10 * total},
                                       no_split_module_classes=["LlamaDecoderLayer"])
    assert "disk" in set(device_map.values()) and "cpu" in set(device_map.values())
    model = dispatch_model(model, device_map=device_map, offload_dir=str(tmp_path / "offload"))
    assert any(p.device.type == "meta" for p in model.parameters())

    content, _ = collect_statistics(model, tokens, pad, RANK, 4, False, mode=mode)
    assert_same_statistics(reference, content)
    assert model_fingerprint(model) == model_fingerprint(plain)


# -- all-at-once without the logits ----------------------------------------------------------


@pytest.mark.parametrize("arch", ARCHS)
def test_all_at_once_skips_logits_and_equals_full_forward(request, arch, calibration_texts):
    """For decoder-stack layouts the all-at-once pass ends each forward at lm_head's input
    (its matmul never runs); the statistics equal those of hooks on full forwards."""
    from mergekit_arm.calibration import iter_batches, linear_modules
    from mergekit_arm.calibration.eigen import finalise_moments
    from mergekit_arm.calibration.moments import InputSecondMoments

    model_dir = request.getfixturevalue(arch)
    tokens, pad = _tokens(model_dir, calibration_texts[:10])
    model = load_causal_lm(model_dir, "float32", "cpu")
    moments = InputSecondMoments(linear_modules(model))
    with torch.inference_mode(), moments:
        for ids, mask in iter_batches(tokens, 4, pad):
            moments.set_mask(mask)
            model(input_ids=ids, attention_mask=mask, use_cache=False)
    full_layers = finalise_moments(moments, RANK)
    head_calls = []
    handle = model.lm_head.register_forward_hook(lambda m, a, o: head_calls.append(1))
    try:
        content, _ = collect_statistics(model, tokens, pad, RANK, 4, False, mode="all-at-once")
    finally:
        handle.remove()
    assert head_calls == []
    assert set(content.layers) == set(full_layers)
    for name, layer in full_layers.items():
        assert torch.equal(content.layers[name].eigenvalues, layer.eigenvalues), name
        assert torch.equal(content.layers[name].basis, layer.basis), name
    assert model.lm_head._forward_pre_hooks == {}  # the stop hook is removed


def test_gpt2_all_at_once_runs_the_full_forward(demo_tokenizer, calibration_texts):
    from transformers import GPT2Config, GPT2LMHeadModel

    model = GPT2LMHeadModel(GPT2Config(n_embd=32, n_layer=2, n_head=2, vocab_size=512)).eval()
    tokens = tokenize_texts(demo_tokenizer, calibration_texts[:3], 16)
    head_calls = []
    handle = model.lm_head.register_forward_hook(lambda m, a, o: head_calls.append(1))
    try:
        content, _ = collect_statistics(model, tokens, 0, 4, 2, False, mode="all-at-once")
    finally:
        handle.remove()
    assert len(head_calls) == 2 and "lm_head.weight" in content.layers
