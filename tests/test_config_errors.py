"""Hostile, sloppy or out-of-range configs and data end in one line naming the key (or row)
and the fix, exit 2, through the commands' shared handler; nothing is expanded, nothing
half-read. Backs the issue-23 rows of docs/faults.md."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from click.testing import CliRunner

from mergekit_arm._yaml import MAX_NODES, load_yaml_file, load_yaml_text
from mergekit_arm.errors import ArmConfigError, CalibrationError, ModelLoadError, arm_excepthook

REPO = Path(__file__).resolve().parent.parent


def _bomb(levels: int = 9) -> str:
    """The billion laughs: 9 ** levels strings once every alias is expanded."""
    lines = ['l0: &l0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    lines += [f"l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * 9) + "]" for i in range(1, levels)]
    return "\n".join(lines) + f"\norigin: *l{levels - 1}\n"


STREAM_OK = """\
origin: ./base
checkpoints:
  - {model: ./sft-1, weight: 1.0}
  - {model: ./sft-2, weight: 2.0}
steps: 2
schedule: {kind: constant, learning_rate: 0.5}
"""

# (case, command, config text (bytes: written as is), words the one-line message must hold)
CASES = [
    ("alias-bomb", "arm-stream", _bomb(), ["not valid YAML", f"more than {MAX_NODES} values",
                                           "without expanding it"]),
    ("alias-bomb", "arm-choose", _bomb(), ["arm-choose config", "without expanding it"]),
    ("recursive-alias", "arm-stream", "origin: &a [*a]\n", ["recursive structure", "line 1"]),
    ("duplicate-key", "arm-stream", STREAM_OK + "steps: 3\n",
     ["key `steps` is given twice", "line 7", "first on line 5"]),
    ("duplicate-key", "arm-choose",
     "validation: {data: v.jsonl}\ncandidates: []\nvalidation: {data: w.jsonl}\n",
     ["key `validation` is given twice", "line 3"]),
    ("python-tag", "arm-stream", "origin: !!python/object/apply:os.system ['echo hi']\n",
     ["not valid YAML", "line 1, column 9", "python/object/apply"]),
    ("binary", "arm-stream", bytes(range(256)) * 8, ["not a UTF-8 text file", "byte 128"]),
    ("binary", "arm-choose", b"\x89PNG\r\n\x1a\n" + bytes(64), ["not a UTF-8 text file"]),
    ("weights-sum-to-0", "arm-stream",
     STREAM_OK.replace("weight: 2.0", "weight: -1.0"), ["sum to 0", "normalize: false"]),
    ("zero-weight-alone", "arm-stream",
     STREAM_OK.replace("weight: 2.0", "weight: 0").replace("steps: 2", "mode: checkpoints"),
     ["`checkpoints[1].weight` is 0"]),
    ("seed-1e23", "arm-stream", STREAM_OK + "seed: 1e23\n", ["`seed`"]),
    ("seed-huge-int", "arm-stream", STREAM_OK + f"seed: {10 ** 23}\n",
     ["`seed`", "less than or equal to 4294967295"]),
    ("seed-negative", "arm-stream", STREAM_OK + "seed: -1\n", ["`seed`"]),
    ("device-cpu-0", "arm-stream", STREAM_OK + "device: cpu:0\n",
     ["`device`", "unknown device 'cpu:0'", "cuda:N"]),
    ("device-tpu", "arm-stream", STREAM_OK + "device: tpu\n", ["`device`", "unknown device 'tpu'"]),
    ("learning-rate-0-in-float32", "arm-stream", STREAM_OK.replace("0.5}", "1.0e-320}"),
     ["`schedule.learning_rate`", "is 0 in float32"]),
    ("learning-rate-1e308", "arm-stream", STREAM_OK.replace("0.5}", "1.0e308}"),
     ["`schedule.learning_rate`", "at most 1e+45"]),
    ("final-learning-rate-1e300", "arm-stream",
     STREAM_OK.replace("constant, learning_rate: 0.5}",
                       "linear, learning_rate: 0.5, final_learning_rate: 1.0e300}"),
     ["`schedule.final_learning_rate`", "at most 1e+45"]),
    ("candidate-multiplier-1e300", "arm-stream",
     STREAM_OK.replace("{kind: constant, learning_rate: 0.5}",
                       "{kind: line_search, learning_rate: 0.5, candidates: [1.0e300, 1.0]}")
     + "validation: {data: v.jsonl}\n", ["`schedule.candidates`", "at most 1e+06"]),
    ("mergekit-learning-rate-misspelt", "arm-choose",
     "validation: {data: VALIDATION}\ncandidates:\n  - name: typo\n    mergekit:\n"
     "      merge_method: arm\n      base_model: ./sft\n      models:\n"
     "        - {model: ./base, parameters: {origin: true}}\n        - model: ./sft\n"
     "      parameters: {learning_rat: 0.5}\n",
     ["candidate `typo`", "unknown parameter `learning_rat`", "did you mean `learning_rate`?"]),
]


@pytest.mark.parametrize(("case", "command", "content", "words"), CASES,
                         ids=[f"{c[1]}-{c[0]}" for c in CASES])
def test_bad_configs_end_in_one_line_and_exit_2(tmp_path, monkeypatch, case, command, content,
                                                words):
    import importlib

    monkeypatch.chdir(tmp_path)
    (tmp_path / "v.jsonl").write_text(json.dumps({"text": "held out"}) + "\n")
    config = tmp_path / "config.yml"
    if isinstance(content, bytes):
        config.write_bytes(content)
    else:
        config.write_text(content.replace("VALIDATION", str(tmp_path / "v.jsonl")))
    name = command.removeprefix("arm-")
    main = importlib.import_module(f"mergekit_arm.scripts.{name}").main
    importlib.import_module(f"mergekit_arm.{name}")  # imported before the clock starts
    started = time.perf_counter()
    result = CliRunner().invoke(main, [str(config), str(tmp_path / "out")])
    seconds = time.perf_counter() - started
    assert result.exit_code == 2, (result.output, result.exception)
    message = result.stderr.strip()
    assert "Traceback" not in message and len(message.splitlines()) == 1, message
    assert message.startswith(f"{command}: error: ") and len(message) < 1000, message
    for word in words:
        assert word in message, message
    assert seconds < (1.0 if case == "alias-bomb" else 30.0), seconds
    assert not (tmp_path / "out" / "model").exists()


def test_yaml_loader_reads_every_shipped_config_as_safe_load():
    files = sorted((REPO / "yaml_examples").glob("*.yml")) + sorted(
        (REPO / "examples").glob("*.yml"))
    assert files
    for file in files:
        assert load_yaml_file(file, "config") == yaml.safe_load(file.read_text()), file
    anchors = "base: &b {x: 1, y: [1, 2]}\nmerged:\n  <<: *b\n  x: 3\nagain: *b\n"
    assert load_yaml_text(anchors, "f", "config") == yaml.safe_load(anchors)  # aliases, <<


def test_arm_verify_reads_a_merges_bomb_config_without_expanding_it(tmp_path):
    from mergekit_arm.model_files import merge_sources

    (tmp_path / "mergekit_config.yml").write_text(_bomb())  # safe_load + walk: 9^9 visits
    started = time.perf_counter()
    assert merge_sources(tmp_path) == []
    assert time.perf_counter() - started < 1.0


def test_a_wide_config_within_the_bound_is_read():
    def wide(aliases: int) -> str:  # 1 + aliases * 1001 values once expanded
        return ("rows: &r [" + ", ".join(["1"] * 1000) + "]\nmore: ["
                + ", ".join(["*r"] * aliases) + "]\n")

    assert MAX_NODES == 100_000
    assert len(load_yaml_text(wide(90), "f", "config")["more"]) == 90
    with pytest.raises(ArmConfigError, match="expands to more than"):
        load_yaml_text(wide(110), "f", "config")


@pytest.mark.parametrize(("text", "words"), [
    ("[" * 100_000, ["nested more than 64 deep"]),  # was a RecursionError
    ("{a: " * 70 + "1" + "}" * 70, ["nested more than 64 deep"]),
    ("".join(f"k{i}: {i}\n" for i in range(600)), ["holds more than 1000 values"]),
    ("a: 1\x00\n", ["unacceptable character #x0000"]),
], ids=["deep-sequence", "deep-mapping", "too-many-values", "control-character"])
def test_deep_or_huge_documents_are_refused_early(monkeypatch, text, words):
    monkeypatch.setattr("mergekit_arm._yaml.MAX_NODES", 1000)  # the same check, fewer values
    with pytest.raises(ArmConfigError) as error:
        load_yaml_text(text, "f.yml", "stream config")
    message = str(error.value)
    assert "\n" not in message and all(word in message for word in words), message


def test_shipped_arm_recipes_pass_the_parameter_check():
    from mergekit.config import MergeConfiguration

    from mergekit_arm.merge_methods.arm_parameters import check_merge_parameters

    checked = 0
    for file in sorted((REPO / "yaml_examples").glob("*.yml")):
        data = yaml.safe_load(file.read_text())
        if isinstance(data, dict) and data.get("merge_method") == "arm":
            check_merge_parameters(MergeConfiguration.model_validate(data))
            checked += 1
    assert checked >= 2


@pytest.mark.parametrize(("parameters", "models", "words"), [
    ({"learning_rat": 0.5}, None, ["unknown parameter `learning_rat`", "did you mean `learning_rate`"]),
    ({"rank": 4}, None, ["needs `learning_rate`", "parameters: {learning_rate: 0.5}"]),
    ({"rank": 4}, {"learning_rate": 0.5}, ["`learning_rate` is set in a model's parameters",
                                           "move it to the top-level `parameters`"]),
    ({"learning_rate": 0.5, "ranks": 4}, None, ["unknown parameter `ranks`", "`rank`"]),
], ids=["misspelt", "missing", "per-model", "other-misspelt"])
def test_arm_parameter_check_names_the_key(parameters, models, words):
    from mergekit.config import MergeConfiguration

    from mergekit_arm.merge_methods.arm_parameters import (
        MergeParameterError,
        check_merge_parameters,
    )

    config = MergeConfiguration.model_validate({
        "merge_method": "arm", "base_model": "./sft", "parameters": parameters,
        "models": [{"model": "./base", "parameters": {"origin": True, **(models or {})}},
                   {"model": "./sft"}]})
    with pytest.raises(MergeParameterError) as error:
        check_merge_parameters(config)
    for word in words:
        assert word in str(error.value)
    check_merge_parameters(config.model_copy(update={"merge_method": "linear"}))  # not ours


def test_mergekits_missing_learning_rate_error_says_what_to_do(capsys, monkeypatch):
    monkeypatch.delenv("MERGEKIT_ARM_TRACEBACK", raising=False)
    error = RuntimeError("Missing required parameter learning_rate for model.layers.0.mlp.up_proj")
    arm_excepthook(RuntimeError, error, None)
    first = capsys.readouterr().err.splitlines()[0]
    assert first.startswith("mergekit-arm: merge_method arm needs `learning_rate` for tensor "
                            "model.layers.0.mlp.up_proj") and "without a filter" in first


@pytest.mark.parametrize("device", ["tpu", "gpu", ""])
def test_an_unknown_device_is_named_not_torchs_list(device):
    """arm-choose's `device: gpu` reached torch.device: a traceback listing torch's types."""
    from mergekit_arm.models import resolve_device

    with pytest.raises(ModelLoadError, match=rf"unknown device '{device}'; use auto, cpu, cuda"):
        resolve_device(device)


@pytest.mark.parametrize(("method", "ours"), [("arm", True), ("linear", False)])
def test_mergekits_type_error_on_an_arm_parameter_names_it(capsys, monkeypatch, method, ours):
    """`learning_rate: abc`: MergeKit's pydantic error names no parameter; its frames do."""
    from types import SimpleNamespace

    from pydantic import TypeAdapter, ValidationError

    monkeypatch.delenv("MERGEKIT_ARM_TRACEBACK", raising=False)

    def resolve_parameter(parameter, settings, *, tensor_name):  # MergeKit's frames, by name
        TypeAdapter(float).validate_python("abc")

    def run_merge(merge_config):
        resolve_parameter(SimpleNamespace(name="learning_rate"), [], tensor_name="lm_head.weight")

    with pytest.raises(ValidationError) as caught:
        run_merge(SimpleNamespace(merge_method=method))
    arm_excepthook(ValidationError, caught.value, caught.value.__traceback__)
    err = capsys.readouterr().err
    if ours:
        first = err.splitlines()[0]
        assert first.startswith("mergekit-arm: merge_method arm: parameter `learning_rate` "
                                "(tensor lm_head.weight)") and "'abc'" in first, err
    else:  # another method's error goes to the previous hook as it is
        assert "mergekit-arm:" not in err and "Traceback" in err


@pytest.mark.parametrize("rate", [1e308, float("inf")])
def test_trajectory_plot_survives_rates_it_cannot_draw(tmp_path, rate):
    from mergekit_arm.stream.report import plot_trajectory

    record = {"step": 1, "accepted": False, "learning_rate": None,
              "scheduled_learning_rate": rate, "angle_mean_deg": 3.0, "angle_max_deg": 4.0}
    plot_trajectory(tmp_path / "t.png", [record])  # a lone 1e308 broke matplotlib's ticks
    assert (tmp_path / "t.png").read_bytes().startswith(b"\x89PNG")


def test_kernel_refuses_weights_summing_to_zero_naming_the_fix():
    from mergekit.merge_methods import merge_tensors

    import mergekit_arm

    mergekit_arm.register()
    origin = torch.randn(4, 6, generator=torch.Generator().manual_seed(0))
    parameters = {"learning_rate": 0.5, "origin": {"origin": True, "a": False},
                  "weight": {"origin": 1.0, "a": 0.0}, "missing_statistics": "plain"}
    with pytest.raises(ArmConfigError, match=r"weights \[0\.0\] sum to 0 .*`normalize: false`"):
        merge_tensors([origin, origin + 0.1], "arm", ids=["origin", "a"], base_index=1,
                      name="model.layers.0.mlp.down_proj.weight", parameters=parameters)


@pytest.mark.slow
def test_mergekit_yaml_with_misspelt_learning_rate_starts_with_the_fix(tmp_path, tiny_llama):
    config = {"merge_method": "arm", "base_model": str(tiny_llama),
              "models": [{"model": str(tiny_llama), "parameters": {"origin": True}}],
              "parameters": {"learning_rat": 0.5, "missing_statistics": "plain"},
              "dtype": "float32"}
    path = tmp_path / "merge.yml"
    path.write_text(yaml.safe_dump(config))
    env = {k: v for k, v in os.environ.items()
           if k not in ("MERGEKIT_ARM_NO_AUTOREGISTER", "MERGEKIT_ARM_TRACEBACK")}
    env.update(HF_HUB_OFFLINE="1",
               PYTHONPATH=os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep))
    mergekit_yaml = Path(sys.executable).parent / "mergekit-yaml"
    proc = subprocess.run([str(mergekit_yaml), str(path), str(tmp_path / "out")], env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    ours = [line for line in proc.stderr.splitlines() if line.startswith("mergekit-arm: ")]
    assert ours and "unknown parameter `learning_rat`" in ours[0] \
        and "did you mean `learning_rate`" in ours[0], proc.stderr[-3000:]
    assert not (tmp_path / "out" / "config.json").exists()


# -- data rows -------------------------------------------------------------------------------
# (case, rows, the texts read, or None and the words of the error)
ROWS = [
    ("mixed-forms", [{"text": "a b"}, {"prompt": "p", "response": "r"}, {"text": "c"},
                     {"question": "q", "answer": "x"}], ["a b", "p\nr", "c", "q\nx"], []),
    ("null-text-is-blank", [{"text": "a"}, {"text": None}], ["a"], []),
    ("number-text", [{"text": "a"}, {"text": 5}], None,
     ["row 2", "`text` of type int", "quoted string"]),
    ("list-text", [{"text": ["a", "b"]}], None, ["row 1", "`text` of type list"]),
    ("number-response", [{"prompt": "a", "response": 3}], None,
     ["row 1", "`response` of type int"]),
    ("half-pair", [{"text": "a"}, {"prompt": "p"}], None, ["row 2", "`prompt` but no `response`"]),
    ("neither-form", [{"text": "a"}, {"body": "b"}], None,
     ["row 2", "no `text` and no prompt/response", "(its fields: body)"]),
]


@pytest.mark.parametrize(("case", "rows", "texts", "words"), ROWS, ids=[r[0] for r in ROWS])
def test_data_rows_are_read_by_form_or_refused_naming_the_row(tmp_path, case, rows, texts, words):
    from mergekit_arm.calibration import load_calibration_texts

    path = tmp_path / "data.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    if texts is not None:
        assert load_calibration_texts(path) == texts
        return
    with pytest.raises(CalibrationError) as error:
        load_calibration_texts(path)
    for word in [str(path), *words]:
        assert word in str(error.value), str(error.value)


# -- ARMCallback origin and .bin-only models -------------------------------------------------
def test_callback_refuses_a_trainer_model_that_is_not_origin(tiny_llama, tiny_llama_sft):
    from transformers import AutoModelForCausalLM

    from mergekit_arm.integrations.transformers import check_starts_at_origin

    model = AutoModelForCausalLM.from_pretrained(tiny_llama, dtype=torch.bfloat16)
    check_starts_at_origin(model, Path(tiny_llama), "<dict>")  # origin in a coarser dtype: same
    with pytest.raises(ArmConfigError, match=r"the Trainer's model is not `origin` .*set `origin:`"):
        check_starts_at_origin(model, Path(tiny_llama_sft[10]), "<dict>")


def test_bin_only_model_names_the_conversion(tmp_path, tiny_llama):
    from safetensors.torch import load_file

    from mergekit_arm.calibration.lazy import LazyCheckpoint
    from mergekit_arm.scripts.calibrate import main as calibrate_cli

    folder = tmp_path / "bin-only"
    folder.mkdir()
    for file in Path(tiny_llama).iterdir():
        if file.suffix != ".safetensors":
            (folder / file.name).write_bytes(file.read_bytes())
    torch.save(load_file(str(Path(tiny_llama) / "model.safetensors")), folder / "pytorch_model.bin")
    with pytest.raises(ModelLoadError, match=r"PyTorch weights only \(pytorch_model.bin\).*"
                                             r"save_pretrained"):
        LazyCheckpoint(folder)
    stats = tmp_path / "s.safetensors"
    result = CliRunner().invoke(calibrate_cli, [str(tiny_llama), str(stats), "--samples", "2",
                                                "--max-length", "16", "--rank", "2", "-q"])
    assert result.exit_code == 0, result.output
    result = CliRunner().invoke(calibrate_cli, [str(folder), str(stats), "--check"])
    assert result.exit_code == 2 and "save_pretrained" in result.stderr, result.output


@pytest.mark.parametrize("rate, refused", [(1e-320, True), (2.0 ** -151, True),
                                           (2.0 ** -149, False), (1e-30, False)])
def test_a_learning_rate_that_is_0_in_float32_is_refused(rate, refused):
    """The step runs in float32: a rate that rounds to 0 there left base_model unchanged
    with exit 0; the smallest positive float32 still moves a weight."""
    from mergekit_arm.errors import ArmConfigError
    from mergekit_arm.merge_methods.arm_parameters import validate_learning_rate

    if refused:
        with pytest.raises(ArmConfigError, match="is 0 in float32"):
            validate_learning_rate(rate)
    else:
        assert validate_learning_rate(rate) == rate
