"""arm-stream reuses statistics a user computed (``origin: {model, activations}``,
``checkpoints[i].activations``): not recalibrated, bit-identical result, mismatched files
refused before anything is calibrated. Tiny Llama, CPU."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import pytest
import torch
from helpers import load_state_dict
from stream_helpers import stream_config

from mergekit_arm.calibration import CalibrationOptions, calibrate
from mergekit_arm.errors import ArmError
from mergekit_arm.statistics import load_statistics
from mergekit_arm.stream import run_stream

pytestmark = pytest.mark.usefixtures("one_torch_thread")

CAL = {"samples": 8, "max_length": 32, "rank": 8}  # stream_config's calibration settings


def _config(tiny_llama, tiny_llama_sft, calibration_jsonl, origin=None, first=None,
            second=None):
    """Mode checkpoints over two checkpoints: the origin's statistics are those of ``from``
    in step 1 and of the current model in step 1 (it starts at the origin); checkpoints[0]'s
    are those of ``from`` in step 2 (checkpoints[1] is calibrated too, as the next ``from``)."""
    config = stream_config(tiny_llama, [tiny_llama_sft[5], tiny_llama_sft[10]],
                           calibration_jsonl, mode="checkpoints", steps=None)
    if origin is not None:
        config["origin"] = {"model": str(tiny_llama), "activations": str(origin)}
    if first is not None:
        config["checkpoints"][0]["activations"] = str(first)
    if second is not None:
        config["checkpoints"][1]["activations"] = str(second)
    return config


@pytest.fixture(scope="module")
def computed(tmp_path_factory, tiny_llama, tiny_llama_sft, calibration_jsonl):
    """A stream that computed every statistics itself, and its inputs' files copied out of
    its cache (as a user's arm-calibrate files)."""
    root = tmp_path_factory.mktemp("reuse")
    out = root / "computed"
    run_stream(_config(tiny_llama, tiny_llama_sft, calibration_jsonl), out, progress=False)
    files = {}
    for path in (out / ".arm-stream" / "stats" / "cache").glob("*.safetensors"):
        model = Path(load_statistics(path).model).resolve()
        names = {tiny_llama.resolve(): "origin", tiny_llama_sft[5].resolve(): "first",
                 tiny_llama_sft[10].resolve(): "second"}
        files[names[model]] = shutil.copyfile(path, root / f"{names[model]}.safetensors")
    assert sorted(files) == ["first", "origin", "second"]
    return root, out, files


def test_given_statistics_give_the_same_stream(computed, tiny_llama, tiny_llama_sft,
                                               calibration_jsonl, caplog):
    root, out, files = computed
    config = _config(tiny_llama, tiny_llama_sft, calibration_jsonl, files["origin"], files["first"],
                     files["second"])
    with caplog.at_level(logging.INFO, logger="mergekit_arm.stream"):
        run_stream(config, root / "given", progress=False)
    logged = [r.getMessage() for r in caplog.records if r.name == "mergekit_arm.stream"]
    reused = [line for line in logged if "(not recalibrated)" in line]
    assert any("`origin.activations`" in line and "the origin" in line for line in reused)
    assert any("`origin.activations`" in line and "input of step 1" in line for line in reused)
    assert any("`checkpoints[0].activations`" in line for line in reused)
    assert any("`checkpoints[1].activations`" in line for line in reused)
    # only the current model of step 2 (the result of step 1) is calibrated
    assert [line for line in logged if line.startswith("calibrating")] == [
        line for line in logged if line.startswith("calibrating") and "step 2" in line]
    assert sum(line.startswith("calibrating") for line in logged) == 1
    a, b = load_state_dict(out / "model"), load_state_dict(root / "given" / "model")
    assert sorted(a) == sorted(b)
    for name in a:
        assert torch.equal(a[name], b[name]), f"{name} differs"


def test_arm_calibrate_with_the_suggested_settings_writes_the_streams_file(
        computed, tiny_llama, calibration_jsonl, tmp_path):
    """What the errors tell the user to run (the stream's settings, float32) reproduces
    the statistics the stream computes, tensor for tensor."""
    _, _, files = computed
    options = CalibrationOptions(data=str(calibration_jsonl), device="cpu", dtype="float32", **CAL)
    path = calibrate(str(tiny_llama), tmp_path / "user.safetensors", options, progress=False).path
    ours, theirs = load_statistics(path), load_statistics(files["origin"])
    assert ours.calibration_fingerprint == theirs.calibration_fingerprint
    assert ours.model_fingerprint == theirs.model_fingerprint
    assert ours.weight_names == theirs.weight_names
    for name in sorted(ours.weight_names):
        assert torch.equal(ours[name].basis, theirs[name].basis), name
        assert torch.equal(ours[name].eigenvalues, theirs[name].eigenvalues), name


def _user_file(tmp_path, model, calibration_jsonl, **settings) -> Path:
    options = CalibrationOptions(**{"data": str(calibration_jsonl), "device": "cpu",
                                    "dtype": "float32", **CAL, **settings})
    return calibrate(str(model), tmp_path / "user.safetensors", options, progress=False).path


def _norm_changed(tmp_path, model) -> Path:
    """A copy of ``model`` whose final norm differs (every linear weight unchanged)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    module = AutoModelForCausalLM.from_pretrained(model, dtype=torch.float32)
    with torch.no_grad():
        module.model.norm.weight.mul_(1.5)
    folder = tmp_path / "norm-changed"
    module.save_pretrained(folder)
    AutoTokenizer.from_pretrained(model).save_pretrained(folder)
    return folder


MISMATCHES = [
    # (case, what to break, message)
    ("another model's file", "sft", r"`origin.activations`: .* is not the statistics of .*"
                                    r"values of .* differ.*Run `arm-calibrate "),
    ("rank below calibration.rank", {"rank": 4},
     r"stores 4 directions per input .* `calibration.rank` is 8.*--rank 8"),
    ("fewer samples", {"samples": 4},
     r"other calibration tokens .*the file: 4 samples.*the stream: 8 samples.*--samples 8"),
    ("other max_length", {"max_length": 16},
     r"other calibration tokens .*max_length 16.*max_length 32.*--max-length 32"),
    ("missing file", "missing", r"statistics file .* does not exist. Create it with `arm-calibrate"),
    ("not a statistics file", "garbage", r"`origin.activations`: .*(safetensors|not a mergekit)"),
    ("a norm differs", "norm", r"parameters differ from .* model fingerprint.*a norm"),
    ("bfloat16 pass of a float32 model", {"dtype": "bfloat16"},
     r"computed in bfloat16 from a float32 checkpoint.*--dtype float32"),
]


@pytest.mark.parametrize("case,broken,message", MISMATCHES, ids=[m[0] for m in MISMATCHES])
def test_mismatched_statistics_are_refused(case, broken, message, tmp_path, tiny_llama,
                                           tiny_llama_sft, calibration_jsonl, computed):
    origin = tiny_llama
    if broken == "sft":
        file = computed[2]["first"]  # checkpoints[0]'s statistics given as the origin's
    elif broken == "missing":
        file = tmp_path / "nothing.safetensors"
    elif broken == "garbage":
        file = tmp_path / "garbage.safetensors"
        file.write_bytes(b"not a statistics file")
    elif broken == "norm":
        origin, file = _norm_changed(tmp_path, tiny_llama), computed[2]["origin"]
    else:
        file = _user_file(tmp_path, tiny_llama, calibration_jsonl, **broken)
    config = _config(origin, tiny_llama_sft, calibration_jsonl)
    config["origin"] = {"model": str(origin), "activations": str(file)}
    with pytest.raises(ArmError, match=message):
        run_stream(config, tmp_path / "out", progress=False)
    assert not (tmp_path / "out" / "model").exists()
    assert not list((tmp_path / "out").glob(".arm-stream/stats/**/*.safetensors"))  # none computed


def test_arm_callback_reuses_the_origins_statistics(computed, tmp_path, tiny_llama, math_texts,
                                                    calibration_jsonl, caplog):
    """``ARMCallback`` with ``origin: {model, activations}``: the origin is not recalibrated
    and the stream equals ``arm-stream`` computing every statistics over the same saves."""
    from test_callback import SAVED, _train

    from mergekit_arm.integrations.transformers import ARMCallback

    config = {"schedule": {"kind": "constant", "learning_rate": 0.5},
              "calibration": {"data": str(calibration_jsonl), **CAL}, "arm": {"rank": 4},
              "origin": {"model": str(tiny_llama), "activations": str(computed[2]["origin"])}}
    callback = ARMCallback(config)
    with caplog.at_level(logging.INFO, logger="mergekit_arm.stream"):
        _train(tiny_llama, tmp_path / "run", math_texts[:24], [callback])
    logged = [r.getMessage() for r in caplog.records]
    assert any("`origin.activations`" in m and "not recalibrated" in m for m in logged)
    assert not any(m.startswith("calibrating the origin") for m in logged)
    saves = [tmp_path / "run" / f"checkpoint-{n}" for n in SAVED]
    plain = {key: value for key, value in config.items() if key != "origin"}
    reference = run_stream({**plain, "origin": str(tiny_llama), "mode": "checkpoints",
                            "device": "cpu", "checkpoints": [str(s) for s in saves]},
                           tmp_path / "reference", progress=False)
    a = load_state_dict(tmp_path / "run" / "arm-stream" / "model")
    b = load_state_dict(reference.model)
    assert sorted(a) == sorted(b)
    for name in a:
        assert torch.equal(a[name], b[name]), f"{name} differs"
