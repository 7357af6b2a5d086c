"""The shipped YAML examples run with plain ``mergekit-yaml`` (a subprocess: registration
through the installed start-up hook) on tiny models, compared tensor by tensor with an
independent float64 implementation of the spec."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from mergekit_arm.calibration import CalibrationOptions, calibrate
from mergekit_arm.rotation import select_subspace
from mergekit_arm.statistics import ActivationStatistics

from .helpers import load_state_dict
from .reference import reference_arm_step

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "yaml_examples"
MERGEKIT_YAML = shutil.which("mergekit-yaml") or str(Path(sys.executable).parent / "mergekit-yaml")


def _demo_world(root: Path, base: Path, sft: dict[int, Path], texts) -> Path:
    """``root/arm-demo`` laid out like ``arm-demo-models`` does, from fixture models."""
    demo = root / "arm-demo"
    models = demo / "models"
    models.mkdir(parents=True)
    links = {"base": base, "sft-step-10": sft[5], "sft-step-20": sft[10]}
    for name, target in links.items():
        shutil.copytree(target, models / name)
    options = CalibrationOptions(samples=16, max_length=48, rank=16, batch_size=8)
    for name in ("base", "sft-step-20"):
        calibrate(models / name, demo / "stats" / f"{name}.safetensors", options, texts=texts,
                  progress=False)
    return demo


def _run_mergekit(config: Path, out: Path, cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "MERGEKIT_ARM_NO_AUTOREGISTER"}
    env["HF_HUB_OFFLINE"] = "1"
    return subprocess.run([MERGEKIT_YAML, str(config), str(out)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def _expected(config: dict, cwd: Path) -> dict[str, torch.Tensor]:
    """Every output tensor computed from the YAML by the float64 reference."""
    params = config["parameters"]
    base = (cwd / config["base_model"]).resolve()
    entries = [(cwd / m["model"]).resolve() for m in config["models"]]
    per_model = {(cwd / m["model"]).resolve(): m.get("parameters", {}) for m in config["models"]}
    origin = next(p for p in entries if per_model[p].get("origin"))
    targets = [p for p in entries if p not in (origin, base)] or [base]
    weights = [per_model.get(p, {}).get("weight", 1.0) for p in targets]
    states = {p: load_state_dict(p) for p in {base, origin, *targets}}
    cur_stats = ActivationStatistics(cwd / params["activations"])
    from_stats = ActivationStatistics(cwd / per_model[origin]["activations"])
    rank, eta = params.get("rank", 64), params["learning_rate"]
    out = {}
    for name, w_cur in states[base].items():
        s_from = s_cur = None
        if name in cur_stats:
            lc, lf = cur_stats[name], from_stats[name]
            s_cur = select_subspace(lc.basis, lc.eigenvalues, lc.trace, rank)
            s_from = select_subspace(lf.basis, lf.eigenvalues, lf.trace, rank)
        out[name] = reference_arm_step(
            w_cur, states[origin][name], [states[t][name] for t in targets], weights,
            s_from, s_cur, eta, gamma=params.get("rotation_strength", 1.0),
            beta=params.get("off_subspace", 1.0), normalize=params.get("normalize", True),
        )
    return out


def _relative_error(got: torch.Tensor, want: torch.Tensor) -> float:
    return float((got.double() - want).norm() / want.norm().clamp_min(1e-12))


@pytest.mark.slow
@pytest.mark.parametrize("arch", ["llama", "qwen3"])
@pytest.mark.parametrize("example", ["arm-single.yml", "arm-reference.yml"])
def test_shipped_example_matches_independent_implementation(request, tmp_path, arch, example,
                                                            calibration_texts):
    base = request.getfixturevalue(f"tiny_{arch}")
    sft = request.getfixturevalue(f"tiny_{arch}_sft")
    _demo_world(tmp_path, base, sft, calibration_texts[:16])
    out = tmp_path / "merged"
    proc = _run_mergekit(EXAMPLES / example, out, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]

    from transformers import AutoModelForCausalLM

    AutoModelForCausalLM.from_pretrained(out)  # a loadable Hugging Face folder
    card = (out / "README.md").read_text()
    assert "ARM (Activation-guided Rotation-aware Merging)" in card
    assert "https://arxiv.org/abs/2602.03237" in card

    config = yaml.safe_load((EXAMPLES / example).read_text())
    expected = _expected(config, tmp_path)
    merged = load_state_dict(out)
    out_dtype = getattr(torch, config.get("out_dtype", "float32"))
    tolerance = 1e-4 if out_dtype == torch.float32 else 1e-2
    assert set(merged) == set(expected)
    rotated = 0
    for name, want in expected.items():
        assert merged[name].dtype == out_dtype, name
        error = _relative_error(merged[name], want)
        assert error < tolerance, f"{name}: relative error {error:.2e}"
        rotated += name.endswith("proj.weight")
    assert rotated > 0
    # The rotation really did something: the result is not plain extrapolation.
    name = "model.layers.0.self_attn.q_proj.weight"
    plain = reference_arm_step(load_state_dict(base)[name] * 0 + load_state_dict(
        tmp_path / config["base_model"])[name], load_state_dict(base)[name],
        [load_state_dict(tmp_path / config["base_model"])[name]], [1.0], None, None,
        config["parameters"]["learning_rate"])
    if example == "arm-single.yml":
        assert _relative_error(merged[name], plain) > 1e-4


@pytest.mark.slow
def test_missing_learning_rate_fails_and_leaves_no_model(tmp_path, tiny_llama, tiny_llama_sft,
                                                         calibration_texts):
    _demo_world(tmp_path, tiny_llama, tiny_llama_sft, calibration_texts[:16])
    config = yaml.safe_load((EXAMPLES / "arm-single.yml").read_text())
    del config["parameters"]["learning_rate"]
    path = tmp_path / "no-lr.yml"
    path.write_text(yaml.safe_dump(config))
    proc = _run_mergekit(path, tmp_path / "out", cwd=tmp_path)
    assert proc.returncode != 0
    assert "learning_rate" in proc.stderr
    assert not (tmp_path / "out" / "config.json").exists()


@pytest.mark.slow
def test_statistics_of_wrong_model_fail_in_mergekit_yaml(tmp_path, tiny_llama, tiny_llama_sft,
                                                         calibration_texts):
    demo = _demo_world(tmp_path, tiny_llama, tiny_llama_sft, calibration_texts[:16])
    # swap the two statistics files: each now describes the other model
    a, b = demo / "stats" / "base.safetensors", demo / "stats" / "sft-step-20.safetensors"
    tmp = a.with_suffix(".tmp")
    a.rename(tmp)
    b.rename(a)
    tmp.rename(b)
    proc = _run_mergekit(EXAMPLES / "arm-single.yml", tmp_path / "out", cwd=tmp_path)
    assert proc.returncode != 0
    assert "was computed from" in proc.stderr and "arm-calibrate" in proc.stderr
    assert not (tmp_path / "out" / "config.json").exists()


@pytest.mark.slow
def test_mergekit_multi_accepts_arm(tmp_path, tiny_llama, tiny_llama_sft, calibration_texts):
    _demo_world(tmp_path, tiny_llama, tiny_llama_sft, calibration_texts[:16])
    config = yaml.safe_load((EXAMPLES / "arm-single.yml").read_text())
    config["name"] = "arm-step"
    (tmp_path / "multi.yml").write_text(yaml.safe_dump(config))
    multi = str(Path(MERGEKIT_YAML).with_name("mergekit-multi"))
    env = {k: v for k, v in os.environ.items() if k != "MERGEKIT_ARM_NO_AUTOREGISTER"}
    proc = subprocess.run([multi, "multi.yml", "-I", "intermediate", "--no-write-model-card"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    single = _run_mergekit(EXAMPLES / "arm-single.yml", tmp_path / "single", cwd=tmp_path)
    assert single.returncode == 0, single.stderr[-3000:]
    a = load_state_dict(tmp_path / "intermediate" / "arm-step")
    b = load_state_dict(tmp_path / "single")
    assert all(torch.equal(a[k], b[k]) for k in b)
