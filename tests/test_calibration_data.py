"""Calibration data that cannot be used is refused with a message naming the file and the fix;
``arm-calibrate --check MODEL FILE`` checks the file against MODEL."""

from __future__ import annotations

import json
import shutil

import pytest
from click.testing import CliRunner

from mergekit_arm.calibration import load_calibration_texts
from mergekit_arm.errors import CalibrationError
from mergekit_arm.scripts.calibrate import main as calibrate_cli

# (file name, content, words the message must contain besides the file's path)
EMPTY_CASES = [
    ("empty.txt", "", ["is empty (no text at all)", "one sample per paragraph", "--data"]),
    ("blank.txt", "\n\n   \n", ["is empty (no text at all)", "one sample per paragraph"]),
    ("empty.jsonl", "", ["is empty (no text at all)", '{"text": "..."}']),
    ("newline.jsonl", "\n", ["is empty (no text at all)", '{"text": "..."}']),
    ("empty.json", "", ["is empty (no text at all)", '"text" field']),
    ("no_rows.json", "[]", ["is empty (no rows)", '"text" field']),
    ("other_field.jsonl", json.dumps({"body": "hello"}) + "\n",
     ["no usable text field", "['body']", "rename the field holding the text to `text`"]),
    ("half_pair.jsonl", json.dumps({"prompt": "hello"}) + "\n",
     ["no usable text field", "prompt+response"]),
    ("blank_text.jsonl", json.dumps({"text": "  "}) + "\n" + json.dumps({"text": None}) + "\n",
     ["is empty", "`text` field is blank or null in every row"]),
    ("blank_pair.jsonl", json.dumps({"question": " ", "answer": ""}) + "\n",
     ["is empty", "`question`+`answer` pair is blank"]),
]


@pytest.mark.parametrize(("name", "content", "words"), EMPTY_CASES, ids=[c[0] for c in EMPTY_CASES])
def test_unusable_calibration_files_are_named_with_the_fix(tmp_path, name, content, words):
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(CalibrationError) as error:
        load_calibration_texts(path)
    message = str(error.value)
    assert str(path) in message
    for word in words:
        assert word in message, message


def test_folder_of_empty_files(tmp_path):
    for i in range(2):
        (tmp_path / f"part{i}.txt").write_text("")
    with pytest.raises(CalibrationError, match=r"every file \(2, e\.g\. .*part0\.txt\) is empty"):
        load_calibration_texts(tmp_path)
    (tmp_path / "part1.txt").write_text("one paragraph\n\nanother")
    assert load_calibration_texts(tmp_path) == ["one paragraph", "another"]


def test_cli_empty_txt_exits_2_naming_the_file(tiny_llama, tmp_path):
    data = tmp_path / "empty.txt"
    data.write_text("")
    out = tmp_path / "s.st"
    result = CliRunner().invoke(calibrate_cli, [str(tiny_llama), str(out), "--data", str(data), "-q"])
    assert result.exit_code == 2
    assert f"calibration data {data} is empty" in result.output
    assert not out.exists()


# -- arm-calibrate --check MODEL FILE ---------------------------------------------------------


@pytest.fixture(scope="module")
def llama_stats(tiny_llama, calibration_jsonl, tmp_path_factory):
    out = tmp_path_factory.mktemp("check") / "llama.st"
    result = CliRunner().invoke(calibrate_cli, [str(tiny_llama), str(out), "--data",
                                str(calibration_jsonl), "--samples", "4", "--max-length", "24",
                                "--rank", "4", "-q"])
    assert result.exit_code == 0, result.output
    return out


def test_check_accepts_the_file_of_its_model(tiny_llama, llama_stats):
    result = CliRunner().invoke(calibrate_cli, [str(tiny_llama), str(llama_stats), "--check"])
    assert result.exit_code == 0, result.output
    assert f"ok (computed from {tiny_llama})" in result.output


@pytest.mark.parametrize("layers", [2, 3])
def test_check_refuses_another_models_file(tmp_path, demo_tokenizer, llama_stats, layers):
    from mergekit_arm.demo import make_tiny_model

    other = make_tiny_model(tmp_path / "other", "llama", tokenizer=demo_tokenizer, seed=1,
                            num_layers=layers)
    result = CliRunner().invoke(calibrate_cli, [str(other), str(llama_stats), "--check"])
    assert result.exit_code == 2, result.output
    assert "arm-calibrate: error:" in result.output and "the values of" in result.output
    assert str(other) in result.output


@pytest.mark.parametrize(("dropped", "message"), [
    ("model.layers.0.mlp.down_proj.weight",
     "has no entries for 1 weights of {model} (e.g. model.layers.0.mlp.down_proj.weight)"),
    ("model.layers.0.self_attn.q_proj.weight",  # the alias target of k_proj and v_proj
     "shared-input aliases point to entries the file does not hold "
     "(model.layers.0.self_attn.k_proj.weight -> model.layers.0.self_attn.q_proj.weight"),
])
def test_check_refuses_a_file_missing_a_weight(tiny_llama, llama_stats, tmp_path, dropped, message):
    from safetensors import safe_open
    from safetensors.torch import save_file

    with safe_open(str(llama_stats), framework="pt") as handle:
        metadata = handle.metadata()
        tensors = {k: handle.get_tensor(k) for k in handle.keys()  # noqa: SIM118
                   if not k.startswith(dropped + "::")}
    partial = tmp_path / "partial.st"
    save_file(tensors, str(partial), metadata=metadata)
    result = CliRunner().invoke(calibrate_cli, [str(tiny_llama), str(partial), "--check"])
    assert result.exit_code == 2, result.output
    assert message.format(model=tiny_llama) in result.output


def test_check_refuses_the_same_architecture_with_other_weights(tiny_llama, llama_stats, tmp_path):
    import torch
    from safetensors.torch import load_file, save_file

    other = tmp_path / "other"
    shutil.copytree(tiny_llama, other)
    weights = load_file(str(other / "model.safetensors"))
    name = "model.layers.1.mlp.down_proj.weight"
    weights[name] = weights[name] + torch.randn_like(weights[name])
    save_file(weights, str(other / "model.safetensors"), metadata={"format": "pt"})
    result = CliRunner().invoke(calibrate_cli, [str(other), str(llama_stats), "--check"])
    assert result.exit_code == 2
    assert f"the values of {name} differ" in result.output


def test_check_refuses_a_model_path_that_does_not_exist(tmp_path, llama_stats):
    missing = tmp_path / "no-such-model"
    result = CliRunner().invoke(calibrate_cli, [str(missing), str(llama_stats), "--check"])
    assert result.exit_code == 2
    assert f"model path {missing} does not exist" in result.output
