"""The shipped YAML examples run with plain ``mergekit-yaml`` (a subprocess: registration
through the installed start-up hook) on tiny models, compared tensor by tensor with an
independent float64 implementation of the step (``run_and_check_arm``)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import torch
import yaml

from mergekit_arm.calibration import CalibrationOptions, calibrate

from .helpers import (
    load_state_dict,
    mergekit_env,
    reference_merge,
    relative_error,
    run_and_check_arm,
    run_mergekit_yaml,
    tool,
)

EXAMPLES = Path(__file__).resolve().parent.parent / "yaml_examples"


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


@pytest.mark.slow
@pytest.mark.parametrize("arch", ["llama", "qwen3"])
@pytest.mark.parametrize("example", ["arm-single.yml", "arm-reference.yml"])
def test_shipped_example_matches_independent_implementation(request, tmp_path, arch, example,
                                                            calibration_texts):
    base = request.getfixturevalue(f"tiny_{arch}")
    sft = request.getfixturevalue(f"tiny_{arch}_sft")
    _demo_world(tmp_path, base, sft, calibration_texts[:16])
    out = tmp_path / "merged"
    merged = run_and_check_arm(EXAMPLES / example, out, tmp_path)

    card = (out / "README.md").read_text()
    assert "ARM (Activation-guided Rotation-aware Merging)" in card
    assert "https://arxiv.org/abs/2602.03237" in card
    if example == "arm-single.yml":
        # The rotation really did something: the result is not plain extrapolation.
        config = yaml.safe_load((EXAMPLES / example).read_text())
        plain = {**config, "parameters": {
            k: v for k, v in config["parameters"].items() if k != "activations"}}
        name = "model.layers.0.self_attn.q_proj.weight"
        assert relative_error(merged[name], reference_merge(plain, tmp_path)[name]) > 1e-4


@pytest.mark.slow
def test_run_and_check_arm_catches_a_wrong_merge(tmp_path, tiny_llama, tiny_llama_sft,
                                                 calibration_texts):
    """The helper fails when MergeKit's output differs from the reference (here: the YAML
    it is compared against asks for another learning rate than the one merged)."""
    _demo_world(tmp_path, tiny_llama, tiny_llama_sft, calibration_texts[:16])
    config = yaml.safe_load((EXAMPLES / "arm-single.yml").read_text())
    out = tmp_path / "merged"
    proc = run_mergekit_yaml(EXAMPLES / "arm-single.yml", out, tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    config["parameters"]["learning_rate"] += 0.5
    from .helpers import assert_matches_reference

    with pytest.raises(AssertionError, match="relative error"):
        assert_matches_reference(load_state_dict(out), reference_merge(config, tmp_path),
                                 torch.float32)
    config["parameters"]["eigengap"] = True
    with pytest.raises(NotImplementedError, match="eigengap"):
        reference_merge(config, tmp_path)


@pytest.mark.slow
def test_missing_learning_rate_fails_and_leaves_no_model(tmp_path, tiny_llama, tiny_llama_sft,
                                                         calibration_texts):
    _demo_world(tmp_path, tiny_llama, tiny_llama_sft, calibration_texts[:16])
    config = yaml.safe_load((EXAMPLES / "arm-single.yml").read_text())
    del config["parameters"]["learning_rate"]
    path = tmp_path / "no-lr.yml"
    path.write_text(yaml.safe_dump(config))
    proc = run_mergekit_yaml(path, tmp_path / "out", tmp_path)
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
    proc = run_mergekit_yaml(EXAMPLES / "arm-single.yml", tmp_path / "out", tmp_path)
    assert proc.returncode != 0
    assert "was computed from" in proc.stderr and "arm-calibrate" in proc.stderr
    assert not (tmp_path / "out" / "config.json").exists()


@pytest.mark.slow
def test_mergekit_multi_accepts_arm(tmp_path, tiny_llama, tiny_llama_sft, calibration_texts):
    """``mergekit-multi`` gives the same bits as ``mergekit-yaml``, and both the reference's."""
    _demo_world(tmp_path, tiny_llama, tiny_llama_sft, calibration_texts[:16])
    config = yaml.safe_load((EXAMPLES / "arm-single.yml").read_text())
    config["name"] = "arm-step"
    (tmp_path / "multi.yml").write_text(yaml.safe_dump(config))
    proc = subprocess.run([tool("mergekit-multi"), "multi.yml", "-I", "intermediate",
                           "--no-write-model-card"], cwd=tmp_path, env=mergekit_env(),
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    single = run_and_check_arm(EXAMPLES / "arm-single.yml", tmp_path / "single", tmp_path)
    multi = load_state_dict(tmp_path / "intermediate" / "arm-step")
    assert set(multi) == set(single)
    assert all(torch.equal(multi[k], single[k]) for k in single)
