"""Calibration: statistics equal a direct computation, padding excluded, data formats, errors."""

from __future__ import annotations

import json

import pytest
import torch
from click.testing import CliRunner

from mergekit_arm.calibrate import CalibrationOptions, calibrate, tokenize_texts
from mergekit_arm.data import load_calibration_texts
from mergekit_arm.errors import CalibrationError, ModelLoadError
from mergekit_arm.models import load_causal_lm, load_tokenizer
from mergekit_arm.scripts.calibrate import main as calibrate_cli
from mergekit_arm.statistics import ActivationStatistics

ARCHS = ["tiny_llama", "tiny_qwen3"]


def _direct_second_moments(model_dir, texts, max_length):
    """E[x x^T] of each layer's attention input, MLP input and lm_head input, by hand.

    Built from ``output_hidden_states`` and the model's own norms, one text at a time
    (so there is no padding at all), independent of the library's hooks.
    """
    model = load_causal_lm(model_dir, "float32", "cpu")
    tokenizer = load_tokenizer(model_dir)
    sums, count = {}, 0
    with torch.no_grad():
        for ids in tokenize_texts(tokenizer, texts, max_length):
            ids = torch.tensor([ids])
            out = model(input_ids=ids, output_hidden_states=True)
            hidden = out.hidden_states
            for i, layer in enumerate(model.model.layers):
                h = hidden[i][0]
                attn_in = layer.input_layernorm(h)
                sums.setdefault(f"model.layers.{i}.self_attn.q_proj.weight", []).append(attn_in)
            final = hidden[-1][0]  # already normed by model.norm
            sums.setdefault("lm_head.weight", []).append(final)
            count += ids.shape[1]
    return {k: torch.cat(v).T @ torch.cat(v) / count for k, v in sums.items()}, count


@pytest.mark.parametrize("arch", ARCHS)
def test_statistics_equal_direct_second_moment(request, arch, calibration_texts, tmp_path):
    model_dir = request.getfixturevalue(arch)
    texts = calibration_texts[:10]
    out = tmp_path / "stats.safetensors"
    result = calibrate(model_dir, out, CalibrationOptions(rank=16, max_length=48, batch_size=4),
                       texts=texts, progress=False)
    direct, count = _direct_second_moments(model_dir, texts, 48)
    assert result.num_tokens == count
    stats = ActivationStatistics(out)
    for name, c in direct.items():
        layer = stats[name]
        evals, evecs = torch.linalg.eigh(c.double())
        top = evals.flip(0)[:16]
        torch.testing.assert_close(layer.eigenvalues.double(), top, rtol=2e-4, atol=1e-6)
        assert float(layer.trace) == pytest.approx(float(torch.trace(c)), rel=1e-4)
        # Same leading subspace: compare projectors on directions with a clear eigengap.
        gaps = (top[:-1] - top[1:]) / top[0]
        k = int(torch.nonzero(gaps > 1e-3)[0, 0]) + 1 if bool((gaps > 1e-3).any()) else 1
        p_lib = layer.basis[:, :k].double() @ layer.basis[:, :k].double().T
        p_ref = evecs.flip(1)[:, :k] @ evecs.flip(1)[:, :k].T
        torch.testing.assert_close(p_lib, p_ref, atol=5e-3, rtol=0)


def test_padding_is_excluded(tiny_llama, calibration_texts, tmp_path):
    texts = calibration_texts[:8]
    one = calibrate(tiny_llama, tmp_path / "b1.st", CalibrationOptions(rank=8, batch_size=1,
                    max_length=64), texts=texts, progress=False)
    four = calibrate(tiny_llama, tmp_path / "b4.st", CalibrationOptions(rank=8, batch_size=4,
                     max_length=64), texts=texts, progress=False)
    a, b = ActivationStatistics(one.path), ActivationStatistics(four.path)
    assert a.calibration_fingerprint == b.calibration_fingerprint
    for name in a.weight_names:
        torch.testing.assert_close(a[name].eigenvalues, b[name].eigenvalues, rtol=1e-3, atol=1e-6)


def test_shared_inputs_are_stored_once(tiny_llama, calibration_texts, tmp_path):
    res = calibrate(tiny_llama, tmp_path / "s.st", CalibrationOptions(rank=4, max_length=32),
                    texts=calibration_texts[:4], progress=False)
    stats = ActivationStatistics(res.path)
    q = "model.layers.0.self_attn.q_proj.weight"
    assert stats.aliases["model.layers.0.self_attn.k_proj.weight"] == q
    assert stats.aliases["model.layers.0.self_attn.v_proj.weight"] == q
    assert stats.aliases["model.layers.1.mlp.up_proj.weight"] == "model.layers.1.mlp.gate_proj.weight"
    assert "model.layers.0.self_attn.o_proj.weight" not in stats.aliases
    assert "model.layers.0.mlp.down_proj.weight" in stats
    assert "model.embed_tokens.weight" in stats.other_2d_weights
    assert torch.equal(stats["model.layers.0.self_attn.k_proj.weight"].basis, stats[q].basis)
    stats.validate_all()


# -- data formats ---------------------------------------------------------------------------

def _write(path, rows):
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return path


def test_txt_paragraph_and_line_modes(tmp_path):
    txt = tmp_path / "a.txt"
    txt.write_text("first line\nsecond line\n\nthird paragraph\n\n\nfourth\n")
    assert len(load_calibration_texts(txt, text_mode="paragraph")) == 3
    assert len(load_calibration_texts(txt, text_mode="line")) == 4


def test_jsonl_text_and_pairs(tmp_path):
    assert load_calibration_texts(_write(tmp_path / "t.jsonl", [{"text": "a b"}, {"text": "c"}])) == ["a b", "c"]
    pairs = load_calibration_texts(_write(tmp_path / "p.jsonl", [{"prompt": "Q?", "response": "A."}]))
    assert pairs == ["Q?\nA."]
    with pytest.raises(CalibrationError, match="columns"):
        load_calibration_texts(_write(tmp_path / "x.jsonl", [{"foo": "bar"}]))


def test_parquet_and_saved_dataset(tmp_path):
    import datasets

    ds = datasets.Dataset.from_dict({"text": ["one", "two", "three"]})
    ds.to_parquet(str(tmp_path / "d.parquet"))
    assert load_calibration_texts(tmp_path / "d.parquet", samples=2) == ["one", "two"]
    ds.save_to_disk(str(tmp_path / "saved"))
    assert load_calibration_texts(tmp_path / "saved") == ["one", "two", "three"]


def test_default_corpus_is_shipped_and_varied():
    texts = load_calibration_texts(None)
    assert len(texts) >= 200
    assert len(set(texts)) == len(texts)


@pytest.mark.parametrize("content", ["", "\n\n   \n"], ids=["empty", "blank"])
def test_empty_calibration_data(tmp_path, content):
    path = tmp_path / "empty.txt"
    path.write_text(content)
    with pytest.raises(CalibrationError):
        load_calibration_texts(path)


# -- CLI and errors -------------------------------------------------------------------------

def test_cli_writes_file_and_check_reads_it(tiny_llama, calibration_jsonl, tmp_path):
    out = tmp_path / "cli.safetensors"
    result = CliRunner().invoke(calibrate_cli, [str(tiny_llama), str(out), "--data",
                                str(calibration_jsonl), "--samples", "6", "--max-length", "32",
                                "--rank", "8", "-q"])
    assert result.exit_code == 0, result.output
    stats = ActivationStatistics(out)
    assert stats.metadata["num_samples"] == "6"
    assert stats["model.layers.0.self_attn.q_proj.weight"].rank == 8
    check = CliRunner().invoke(calibrate_cli, [str(tiny_llama), str(out), "--check"])
    assert check.exit_code == 0 and "ok" in check.output


def test_cli_empty_data_fails_without_writing(tiny_llama, tmp_path):
    data = tmp_path / "empty.jsonl"
    data.write_text(json.dumps({"text": "   "}) + "\n")
    out = tmp_path / "never.safetensors"
    result = CliRunner().invoke(calibrate_cli, [str(tiny_llama), str(out), "--data", str(data), "-q"])
    assert result.exit_code == 2
    assert "empty" in result.output
    assert not out.exists() and not list(tmp_path.glob(".never*"))


def test_not_a_model_folder(tmp_path):
    with pytest.raises(ModelLoadError, match="no config.json"):
        load_causal_lm(tmp_path)
    with pytest.raises(ModelLoadError, match="does not exist"):
        load_causal_lm(tmp_path / "missing")


def test_not_a_causal_lm(tmp_path):
    from transformers import ViTConfig

    ViTConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
              intermediate_size=64).save_pretrained(tmp_path)
    with pytest.raises(ModelLoadError, match="not a causal language model"):
        load_causal_lm(tmp_path)
    result = CliRunner().invoke(calibrate_cli, [str(tmp_path), str(tmp_path / "o.st"), "-q"])
    assert result.exit_code == 2 and "causal language model" in result.output


def test_nan_weights_are_named(tiny_llama, calibration_texts, tmp_path):
    import shutil

    from safetensors.torch import load_file, save_file

    broken = tmp_path / "broken"
    shutil.copytree(tiny_llama, broken)
    weights = load_file(str(broken / "model.safetensors"))
    weights["model.layers.0.self_attn.o_proj.weight"][0, 0] = float("nan")
    save_file(weights, str(broken / "model.safetensors"), metadata={"format": "pt"})
    out = tmp_path / "s.st"
    with pytest.raises(CalibrationError, match="NaN"):
        calibrate(broken, out, CalibrationOptions(rank=4, max_length=16), texts=calibration_texts[:2],
                  progress=False)
    assert not out.exists()


def test_principal_subspace_float32_path_for_wide_inputs(monkeypatch):
    """Wide inputs (70B down_proj) eigendecompose in float32; same leading subspace."""
    import mergekit_arm.calibrate as cal

    g = torch.Generator().manual_seed(0)
    x = torch.randn(200, 24, generator=g) * torch.linspace(3.0, 0.1, 24)
    c = x.T @ x / 200
    wide = None
    exact = cal.principal_subspace(c, 6)
    monkeypatch.setattr(cal, "FLOAT64_EIGH_MAX_DIM", 8)
    wide = cal.principal_subspace(c, 6)
    torch.testing.assert_close(wide.eigenvalues, exact.eigenvalues, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(wide.basis.abs(), exact.basis.abs(), atol=1e-3, rtol=0)
    assert float(wide.trace) == pytest.approx(float(torch.trace(c)), rel=1e-5)
