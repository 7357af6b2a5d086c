"""Calibration: statistics equal a direct computation, padding excluded, data formats, errors."""

from __future__ import annotations

import json

import pytest
import torch
from click.testing import CliRunner

from mergekit_arm.calibration import (
    CalibrationOptions,
    calibrate,
    load_calibration_texts,
    tokenize_texts,
)
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

    folder = tmp_path / "vit"  # OUT beside it: one inside MODEL is refused first
    ViTConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
              intermediate_size=64).save_pretrained(folder)
    with pytest.raises(ModelLoadError, match="not a causal language model"):
        load_causal_lm(folder)
    result = CliRunner().invoke(calibrate_cli, [str(folder), str(tmp_path / "o.st"), "-q"])
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
    """Wide inputs (70B down_proj) stay in float32 even when their spread would call for
    float64 (memory); narrower ones with the same spread are redone in float64."""
    import mergekit_arm.calibration.eigen as cal

    c = _heavy_tailed_moment(24, 300.0)
    calls = _record_eigh(monkeypatch)
    exact = cal.principal_subspace(c, 6)
    assert calls == [torch.float32, torch.float64]
    calls.clear()
    monkeypatch.setattr(cal, "FLOAT64_EIGH_MAX_DIM", 8)
    wide = cal.principal_subspace(c, 6)
    assert calls == [torch.float32]
    torch.testing.assert_close(wide.eigenvalues, exact.eigenvalues, rtol=1e-3, atol=1e-6)
    assert float(wide.trace) == pytest.approx(float(torch.trace(c)), rel=1e-5)


# -- the accumulator and the eigendecomposition ------------------------------------------------


@pytest.mark.parametrize("dim", [1, 63, 64, 130, 600])
def test_lower_panel_accumulation_equals_full_gram(dim):
    """The lower block triangle, accumulated over batches and symmetrised once, equals
    x^T x computed in full (float64 reference) to float32 rounding."""
    import mergekit_arm.calibration.moments as cal

    g = torch.Generator().manual_seed(dim)
    batches = [torch.randn(n, dim, generator=g) * torch.linspace(5.0, 0.1, dim) for n in (7, 300, 41)]
    panels = cal.lower_panels(dim)
    assert panels[0][0] == 0 and panels[-1][1] == dim
    assert len(panels) == min(cal.MAX_PANELS, max(1, dim // cal.PANEL_WIDTH))
    total = torch.zeros(dim, dim)
    for x in batches:
        cal.accumulate_lower_gram(total, x, panels)
    full = cal.symmetrise_lower(total, panels)
    x = torch.cat(batches).double()
    expected = x.T @ x
    scale = expected.diagonal().sqrt()
    torch.testing.assert_close(full.double() / torch.outer(scale, scale),
                               expected / torch.outer(scale, scale), atol=2e-6, rtol=0)
    assert torch.equal(full, full.T)


def test_hooks_accumulate_second_moment_of_selected_tokens():
    """InputSecondMoments (lower panels) gives E[x x^T] over the unmasked tokens."""
    from mergekit_arm.calibration.moments import InputSecondMoments

    g = torch.Generator().manual_seed(0)
    layer = torch.nn.Linear(200, 3)
    xs = [torch.randn(2, 9, 200, generator=g) for _ in range(3)]
    masks = [torch.ones(2, 9, dtype=torch.long) for _ in range(3)]
    masks[1][1, 4:] = 0
    moments = InputSecondMoments({"w": (layer, False)})
    with torch.inference_mode(), moments:
        for x, mask in zip(xs, masks):
            moments.set_mask(mask)
            layer(x)
    acc = moments.accumulators["w"]
    kept = torch.cat([x[m.bool()] for x, m in zip(xs, masks)]).double()
    assert acc.count == kept.shape[0]
    torch.testing.assert_close(acc.second_moment().double(), kept.T @ kept / kept.shape[0],
                               atol=1e-5, rtol=1e-5)


def test_symmetrise_in_place():
    from mergekit_arm.calibration.moments import symmetrise_in_place

    g = torch.Generator().manual_seed(1)
    c = torch.randn(300, 300, generator=g)
    expected = (c + c.T) / 2
    out = symmetrise_in_place(c)
    assert out is c
    torch.testing.assert_close(c, expected, atol=0, rtol=0)


def _heavy_tailed_moment(n: int, outlier: float, seed: int = 0) -> torch.Tensor:
    """E[x x^T] of features with a power-law spread and two 'massive activation' features."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(4 * n, n, generator=g) @ torch.randn(n, n, generator=g) / n**0.5
    x = x * torch.arange(1, n + 1, dtype=torch.float32) ** -0.5
    x[:, :2] *= outlier
    return x.T @ x / x.shape[0]


def _record_eigh(monkeypatch) -> list[torch.dtype]:
    calls: list[torch.dtype] = []
    eigh = torch.linalg.eigh

    def recording(c, *args, **kwargs):
        calls.append(c.dtype)
        return eigh(c, *args, **kwargs)

    monkeypatch.setattr(torch.linalg, "eigh", recording)
    return calls


def _subspace_error_deg(basis: torch.Tensor, reference: torch.Tensor) -> float:
    a, b = reference.double(), basis.double()
    sines = torch.linalg.svdvals(b - a @ (a.T @ b))
    return float(torch.rad2deg(torch.asin(sines.max().clamp(max=1.0))))


def _float64_top(c: torch.Tensor, r: int) -> tuple[torch.Tensor, torch.Tensor]:
    e, v = torch.linalg.eigh(c.double())
    return e.flip(0)[:r], v.flip(1)[:, :r]


@pytest.mark.parametrize(("outlier", "expected_dtypes"), [
    (1.0, [torch.float32]),                      # spread ~1e2: float32 suffices
    (300.0, [torch.float32, torch.float64]),     # massive activations: redone in float64
])
def test_principal_subspace_matches_float64(monkeypatch, outlier, expected_dtypes):
    import mergekit_arm.calibration.eigen as cal

    c = _heavy_tailed_moment(256, outlier)
    ref_e, ref_v = _float64_top(c, 32)
    before = c.clone()
    calls = _record_eigh(monkeypatch)
    stats = cal.principal_subspace(c, 32)
    assert calls == expected_dtypes
    assert torch.equal(c, before)  # overwrite=False leaves the input alone
    torch.testing.assert_close(stats.eigenvalues.double(), ref_e, rtol=1e-4, atol=0)
    assert _subspace_error_deg(stats.basis, ref_v) < 0.5
    assert float(stats.trace) == pytest.approx(float(torch.trace(c.double())), rel=1e-5)
    assert stats.basis.dtype == torch.float32 and stats.basis.is_contiguous()


def test_float32_eigh_is_not_enough_for_massive_activations():
    """Why the float64 fallback exists: the same heavy-tailed matrix in float32 eigh."""
    c = _heavy_tailed_moment(256, 300.0)
    e32, v32 = torch.linalg.eigh(c)
    ref_e, ref_v = _float64_top(c, 32)
    assert float(e32[-1] / e32[-32]) > 1e3  # the spread the fallback tests for
    errors = (e32.flip(0)[:32].double() - ref_e).abs() / ref_e
    assert float(errors.max()) > 1e-3 or _subspace_error_deg(v32.flip(1)[:, :32], ref_v) > 1.0


def test_principal_subspace_overwrite_uses_the_input(monkeypatch):
    import mergekit_arm.calibration.eigen as cal

    work = _heavy_tailed_moment(128, 1.0)
    work[3, 7] += 1e-3  # asymmetric: symmetrised in place
    reference = cal.principal_subspace((work + work.T) / 2, 8)
    stats = cal.principal_subspace(work, 8, overwrite=True)
    assert float(work[3, 7]) == float(work[7, 3])
    torch.testing.assert_close(stats.eigenvalues, reference.eigenvalues, rtol=1e-5, atol=0)
    torch.testing.assert_close(stats.basis, reference.basis, rtol=0, atol=1e-4)


# -- the top-r solver ------------------------------------------------------------------------


def _record_eigh_shapes(monkeypatch) -> list[tuple[int, torch.dtype]]:
    calls: list[tuple[int, torch.dtype]] = []
    eigh = torch.linalg.eigh

    def recording(c, *args, **kwargs):
        calls.append((c.shape[0], c.dtype))
        return eigh(c, *args, **kwargs)

    monkeypatch.setattr(torch.linalg, "eigh", recording)
    return calls


def _power_law_moment(n: int, alpha: float, outlier: float = 1.0, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    basis = torch.linalg.qr(torch.randn(n, n, generator=g))[0]
    x = torch.randn(4 * n, n, generator=g) @ (basis * torch.arange(1, n + 1) ** (-alpha / 2)).T
    x[:, :2] *= outlier
    return x.T @ x / x.shape[0]


@pytest.mark.parametrize(("alpha", "outlier", "float64"), [
    (0.5, 1.0, False),   # flat spectrum: slowest convergence
    (1.0, 1.0, False),
    (1.0, 30.0, False),  # massive activations, spread still <= 1e3
    (3.0, 1.0, True),    # spread 16^3 > 1e3: the solver is redone in float64
])
def test_top_r_solver_matches_float64_eigh(monkeypatch, alpha, outlier, float64):
    """Wide inputs go through the subspace iteration (no n x n eigh at all); eigenvalues and
    subspace match float64 eigh; ill-conditioned spectra are finished in float64."""
    import mergekit_arm.calibration.eigen as eigen

    n, r = 512, 16
    assert eigen.use_subspace_iteration(n, r)
    c = _power_law_moment(n, alpha, outlier)
    ref_e, ref_v = _float64_top(c, r)
    calls = _record_eigh_shapes(monkeypatch)
    stats = eigen.principal_subspace(c, r)
    assert calls and all(size == eigen.subspace_block(n, r) for size, _ in calls)
    assert (torch.float64 in {dtype for _, dtype in calls}) == float64
    torch.testing.assert_close(stats.eigenvalues.double(), ref_e, rtol=1e-4, atol=0)
    assert _subspace_error_deg(stats.basis, ref_v) < 0.2
    assert float(stats.trace) == pytest.approx(float(torch.trace(c.double())), rel=1e-5)
    again = eigen.principal_subspace(c, r)  # deterministic: resume / mode equality rely on it
    assert torch.equal(again.basis, stats.basis) and torch.equal(again.eigenvalues, stats.eigenvalues)


def test_top_r_solver_residuals_meet_the_tolerance():
    from mergekit_arm.calibration.eigen import SUBSPACE_TOL, subspace_eigenpairs

    c = _power_law_moment(400, 1.0).double()
    found = subspace_eigenpairs(c, 10, tol=SUBSPACE_TOL)
    assert found.converged and found.steps > 1
    residual = (c @ found.vectors - found.vectors * found.eigenvalues).norm(dim=0)
    assert bool((residual <= SUBSPACE_TOL * found.eigenvalues).all())
    assert torch.allclose(found.vectors.T @ found.vectors, torch.eye(10, dtype=c.dtype), atol=1e-10)
    stopped = subspace_eigenpairs(c, 10, tol=SUBSPACE_TOL, max_steps=1)
    assert not stopped.converged


@pytest.mark.parametrize(("n", "r", "max_steps"), [
    (512, 64, None),   # rank close to the width (block 128 > 512 / 12): full eigh
    (512, 16, 1),      # the solver does not converge: full eigh
])
def test_top_r_solver_falls_back_to_full_eigh(monkeypatch, n, r, max_steps):
    import mergekit_arm.calibration.eigen as eigen

    if max_steps is not None:
        monkeypatch.setattr(eigen, "SUBSPACE_MAX_STEPS", max_steps)
    c = _power_law_moment(n, 1.0)
    ref_e, ref_v = _float64_top(c, r)
    calls = _record_eigh_shapes(monkeypatch)
    stats = eigen.principal_subspace(c, r)
    assert (n, torch.float32) in calls
    torch.testing.assert_close(stats.eigenvalues.double(), ref_e, rtol=1e-4, atol=0)
    assert _subspace_error_deg(stats.basis, ref_v) < 0.2
