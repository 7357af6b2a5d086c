"""arm-stream: schedules, config errors, the loop's invariants, resume, line search,
watch mode, per-step YAML replay and the non-finite stop. Tiny models, CPU."""

from __future__ import annotations

import copy
import json
import math
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import get_origin

import pytest
import torch
from click.testing import CliRunner
from helpers import assert_state_dicts_close, load_state_dict
from stream_helpers import independent_loss, one_thread_env, stream_config

from mergekit_arm.errors import ArmConfigError, ArmError
from mergekit_arm.stream import StreamConfig, load_config, parse_config, run_stream
from mergekit_arm.stream.config import ScheduleConfig
from mergekit_arm.stream.loop import best_step, kept_step, patience_left
from mergekit_arm.stream.report import read_trajectory
from mergekit_arm.stream.schedule import decayed_rate, line_search_candidates, step_candidates
from mergekit_arm.stream.state import config_diff
from mergekit_arm.stream.watch import CheckpointWatcher, checkpoint_number, is_complete

REPO = Path(__file__).resolve().parent.parent
HELPERS = Path(__file__).resolve().parent / "stream_helpers.py"


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture
def config_for(tiny_llama, tiny_llama_sft, calibration_jsonl):
    """``config_for(checkpoints=[5, (10, 2.0)], **overrides)`` -> a small config dict."""

    def make(checkpoints=(10,), **overrides):
        items = [
            (tiny_llama_sft[c[0]], c[1]) if isinstance(c, tuple) else tiny_llama_sft[c]
            for c in checkpoints
        ]
        return stream_config(tiny_llama, items, calibration_jsonl, **overrides)

    return make


def _weights(folder: Path) -> dict[str, torch.Tensor]:
    return load_state_dict(folder)


def _assert_bit_identical(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert sorted(a) == sorted(b)
    for name in a:
        assert torch.equal(a[name], b[name]), f"{name} differs"


# -- schedules and config (pure) ------------------------------------------------------------


def test_schedules():
    assert decayed_rate("constant", 0.5, 0.0, 3, 4) == 0.5
    assert [decayed_rate("linear", 1.0, 0.0, k, 4) for k in range(1, 5)] == [1.0, 0.75, 0.5, 0.25]
    cosine = [decayed_rate("cosine", 1.0, 0.2, k, 2) for k in (1, 2)]
    assert cosine[0] == pytest.approx(1.0) and cosine[1] == pytest.approx(0.6)
    assert line_search_candidates(0.5, [0.5, 2]) == [(0.5, 0.25), (2.0, 1.0)]
    search = ScheduleConfig(kind="line_search", learning_rate=1.0, decay="linear",
                            candidates=[1, 2])
    assert step_candidates(search, 2, 2) == [(1.0, 0.5), (2.0, 1.0)]
    with pytest.raises(ArmError, match="needs the total number of steps"):
        decayed_rate("cosine", 1.0, 0.0, 1, None)


def test_config_errors_name_the_key(tmp_path, config_for):
    def error_of(data) -> str:
        path = tmp_path / "stream.yml"
        path.write_text(json.dumps(data))
        with pytest.raises(ArmConfigError) as caught:
            load_config(path)
        assert str(path) in str(caught.value)
        return str(caught.value)

    good = config_for()
    assert isinstance(parse_config(good), StreamConfig)
    assert "unknown key `learning_rat`" in error_of({**good, "learning_rat": 1})
    message = error_of({**good, "schedule": {"kind": "cosine", "lerning_rate": 0.5}})
    assert "unknown key `schedule.lerning_rate`" in message
    assert "missing required key `schedule.learning_rate`" in message
    assert "`steps`" in error_of({**good, "steps": "many"})
    assert "`checkpoints[0].weight`" in error_of(
        {**good, "checkpoints": [{"model": "x", "weight": "heavy"}]})
    assert "`schedule.kind`" in error_of({**good, "schedule": {"kind": "adam", "learning_rate": 1}})
    assert "candidates" in error_of({**good, "schedule": {"learning_rate": 1, "candidates": [1]}})
    assert "validation" in error_of({**good, "schedule": {"kind": "line_search", "learning_rate": 1}})
    assert "arm.rank" in error_of({**good, "arm": {"rank": 99}})

    missing = {**good, "checkpoints": [good["checkpoints"][0], {"model": str(tmp_path / "nope")}]}
    with pytest.raises(ArmConfigError, match=r"`checkpoints\[1\]\.model`: model path .*nope"):
        run_stream(missing, tmp_path / "out", progress=False)

    from mergekit_arm.scripts.stream import main

    path = tmp_path / "cli.yml"
    path.write_text(json.dumps({**good, "steps": "many"}))
    result = CliRunner().invoke(main, [str(path), str(tmp_path / "cli-out"), "-q"])
    assert result.exit_code == 2
    assert result.output.startswith("arm-stream: error: invalid stream config")
    assert "`steps`" in result.output


def test_examples_load_and_reference_documents_every_key():
    from pydantic import BaseModel

    from mergekit_arm.stream.config import _section_model

    for name in ("stream-fixed-set.yml", "stream-checkpoints.yml", "stream-reference.yml"):
        load_config(REPO / "yaml_examples" / name)
    reference = (REPO / "yaml_examples" / "stream-reference.yml").read_text()
    docs = (REPO / "docs" / "streaming.md").read_text()

    def keys(model: type[BaseModel], prefix: str = "") -> list[str]:
        found = []
        for key, field in model.model_fields.items():
            found.append(prefix + key)
            inner = _section_model(field.annotation)
            if inner is not None:
                is_list = get_origin(field.annotation) is list
                found += keys(inner, f"{prefix}{key}{'[]' if is_list else ''}.")
        return found

    for key in keys(StreamConfig):
        assert f"{key.rsplit('.', 1)[-1]}:" in reference, f"{key} missing in stream-reference.yml"
        assert f"`{key}`" in docs, f"{key} missing in docs/streaming.md"


def test_config_diff():
    old = {"schedule": {"learning_rate": 0.5}, "steps": 2, "checkpoints": [{"model": "a"}]}
    new = {"schedule": {"learning_rate": 0.25}, "steps": 2, "checkpoints": [{"model": "b"}]}
    assert config_diff(old, new) == [
        "checkpoints[0].model: 'a' -> 'b'",
        "schedule.learning_rate: 0.5 -> 0.25",
    ]


# -- errors about the inputs ---------------------------------------------------------------


def test_shape_mismatch_names_checkpoint_and_tensor(tmp_path, config_for, demo_tokenizer):
    from mergekit_arm.demo import make_tiny_model

    other = make_tiny_model(tmp_path / "wide", "llama", tokenizer=demo_tokenizer,
                            intermediate_size=96)
    config = config_for()
    config["checkpoints"].append({"model": str(other), "weight": 1.0})
    with pytest.raises(ArmConfigError, match=r"checkpoints\[1\] .*wide: tensor model\.layers\.0\.mlp"):
        run_stream(config, tmp_path / "out", progress=False)
    config = config_for(mode="checkpoints", steps=None)
    config["checkpoints"].append({"model": str(other), "weight": 1.0})
    with pytest.raises(ArmConfigError, match=r"checkpoints\[1\] .*wide: tensor model\.layers"):
        run_stream(config, tmp_path / "out2", progress=False)


def test_validation_without_tokens(tmp_path, config_for):
    data = tmp_path / "tiny.jsonl"
    data.write_text(json.dumps({"text": "a"}) + "\n" + json.dumps({"text": "b"}) + "\n")
    config = config_for(validation={"data": str(data)})
    with pytest.raises(ArmConfigError, match="validation.data.*no tokens"):
        run_stream(config, tmp_path / "out", progress=False)


# -- the loop ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def plain_run(tmp_path_factory, tiny_llama, tiny_llama_sft, calibration_jsonl):
    """Rotation off, constant eta = 0.5, 3 steps from the step-10 checkpoint."""
    config = stream_config(tiny_llama, [tiny_llama_sft[10]], calibration_jsonl, steps=3,
                           arm={"rotation_strength": 0.0})
    out = tmp_path_factory.mktemp("plain") / "out"
    return config, out, run_stream(config, out, progress=False)


def test_rotation_off_k_steps_equal_one_step_of_k_eta(plain_run, tiny_llama, tiny_llama_sft):
    _, out, result = plain_run
    assert result.status == "finished" and result.steps == 3
    origin, ckpt = _weights(tiny_llama), _weights(tiny_llama_sft[10])
    expected = {name: ckpt[name] + 3 * 0.5 * (ckpt[name] - origin[name]) for name in ckpt}
    assert_state_dicts_close(_weights(result.model), expected, rtol=1e-5, atol=1e-6)

    records = read_trajectory(out / "trajectory.jsonl")
    assert [r["step"] for r in records] == [1, 2, 3]
    for record in records:
        assert record["learning_rate"] == 0.5 and record["accepted"]
        assert 0.0 <= record["angle_mean_deg"] <= record["angle_max_deg"] <= 90.0
        assert set(record["seconds"]) >= {"calibration", "merge", "other"}
    assert (out / "trajectory.png").read_bytes()[:4] == b"\x89PNG"

    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(result.model)
    assert model.config.model_type == "llama"
    # the origin's tokenizer is saved with the model: same vocabulary, same encoding
    saved, origin_tokenizer = (AutoTokenizer.from_pretrained(result.model),
                               AutoTokenizer.from_pretrained(tiny_llama))
    assert saved.get_vocab() == origin_tokenizer.get_vocab()
    assert saved("2 + 3 = 5")["input_ids"] == origin_tokenizer("2 + 3 = 5")["input_ids"]
    card = (result.model / "README.md").read_text()
    assert "## Trajectory" in card and "| 3 | 0.5 |" in card
    # no validation: the last step is kept, and the card says so
    assert result.kept_step == 3 and "kept the last step (no validation set)" in card
    assert "kept the last step (3; no validation set)" in (out / "arm-stream.log").read_text()
    assert [r["kept"] for r in records] == [False, False, True]


def test_rerun_returns_result_and_changed_config_is_refused(plain_run):
    config, out, first = plain_run
    again = run_stream(config, out, progress=False)
    assert again.records == first.records and again.status == "finished"
    changed = {**config, "schedule": {"kind": "constant", "learning_rate": 0.25}}
    with pytest.raises(ArmConfigError, match=r"schedule\.learning_rate: 0\.5 -> 0\.25.*--restart"):
        run_stream(changed, out, progress=False)


def test_restart_discards_previous_run(tmp_path, config_for):
    out = tmp_path / "out"
    run_stream(config_for(steps=1), out, progress=False)
    result = run_stream(config_for(steps=1, schedule={"learning_rate": 0.25},
                                   out_dtype="bfloat16"), out, restart=True, progress=False)
    assert [r["learning_rate"] for r in result.records] == [0.25]
    assert json.loads((result.model / "config.json").read_text())["dtype"] == "bfloat16"
    assert all(t.dtype == torch.bfloat16 for t in _weights(result.model).values())


def test_out_that_is_not_a_stream_folder_is_refused(tmp_path, config_for):
    out = tmp_path / "taken"
    out.mkdir()
    (out / "something.txt").write_text("mine")
    with pytest.raises(ArmError, match="not an arm-stream output folder"):
        run_stream(config_for(), out, progress=False)


def test_line_search_keeps_lowest_held_out_loss(
    tmp_path, config_for, tiny_llama, tiny_llama_sft, validation_jsonl, validation_texts
):
    multipliers = [0.5, 2.0, 8.0, 64.0]
    config = config_for(
        steps=1, arm={"rotation_strength": 0.0},
        schedule={"kind": "line_search", "learning_rate": 1.0, "candidates": multipliers},
        validation={"data": str(validation_jsonl), "samples": 16},
    )
    result = run_stream(config, tmp_path / "out", progress=False)
    (record,) = read_trajectory(tmp_path / "out" / "trajectory.jsonl")
    tries = record["line_search"]
    assert [t["multiplier"] for t in tries] == multipliers
    logged = {t["learning_rate"]: t["val_loss"] for t in tries}
    assert record["learning_rate"] == min(logged, key=logged.get)
    assert record["val_loss"] == min(logged.values())

    # Independently: build every candidate by hand (rotation off: W + eta (W_ckpt - W_origin)),
    # score it with the model's own loss, and compare.
    from transformers import AutoModelForCausalLM, AutoTokenizer

    origin, ckpt = _weights(tiny_llama), _weights(tiny_llama_sft[10])
    tokenizer = AutoTokenizer.from_pretrained(tiny_llama_sft[10])
    model = AutoModelForCausalLM.from_pretrained(tiny_llama_sft[10]).eval()
    independent = {}
    for rate in logged:
        model.load_state_dict({n: ckpt[n] + rate * (ckpt[n] - origin[n]) for n in ckpt})
        independent[rate] = independent_loss(model, tokenizer, validation_texts[:16], 32)
    for rate, loss in logged.items():
        assert loss == pytest.approx(independent[rate], rel=1e-4), rate
    assert min(independent, key=independent.get) == record["learning_rate"]
    assert len({round(v, 3) for v in independent.values()}) == len(multipliers)
    chosen = record["learning_rate"]
    expected = {n: ckpt[n] + chosen * (ckpt[n] - origin[n]) for n in ckpt}
    assert_state_dicts_close(_weights(result.model), expected)


def test_non_finite_result_stops_and_keeps_last_good_step(tmp_path, config_for, validation_jsonl):
    # step 2's rate (5e40) overflows float32: the merge itself is non-finite
    config = config_for(
        steps=2, save_every=1,
        schedule={"kind": "linear", "learning_rate": 0.5, "final_learning_rate": 1e41},
        validation={"data": str(validation_jsonl), "samples": 4},
    )
    out = tmp_path / "out"
    result = run_stream(config, out, progress=False)
    assert result.status == "stopped" and result.steps == 1
    assert "step 2" in result.stop_reason
    assert "the step with the lowest held-out loss (step 1)" in result.stop_reason
    records = read_trajectory(out / "trajectory.jsonl")
    assert [r["accepted"] for r in records] == [True, False]
    assert records[0]["learning_rate"] == 0.5
    assert records[1]["val_loss"] is None and "NaN/Inf" in records[1]["error"]
    _assert_bit_identical(_weights(result.model), _weights(out / "steps" / "step-1"))
    assert "Stopped" in (out / "arm-stream.log").read_text()
    assert "stopped early" in (result.model / "README.md").read_text()
    assert run_stream(config, out, progress=False).status == "stopped"  # final: not retried


def test_result_overflowing_the_written_dtype_is_refused(tmp_path, config_for, validation_jsonl):
    # step 2's rate (1e8) is finite in float32 but overflows float16, the dtype written
    config = config_for(
        steps=2, out_dtype="float16",
        schedule={"kind": "linear", "learning_rate": 0.5, "final_learning_rate": 2e8},
        validation={"data": str(validation_jsonl), "samples": 4},
    )
    out = tmp_path / "out"
    result = run_stream(config, out, progress=False)
    assert result.status == "stopped" and result.steps == 1
    record = read_trajectory(out / "trajectory.jsonl")[1]
    assert not record["accepted"] and "beyond float16's largest finite value" in record["error"]
    weights = _weights(result.model)
    assert all(t.dtype == torch.float16 and bool(torch.isfinite(t).all())
               for t in weights.values() if t.is_floating_point())


@pytest.mark.parametrize(("case", "words"), [
    ("empty-validation", ["validation data", "is empty", "`validation.data` in the stream config"]),
    ("empty-calibration", ["calibration data", "is empty", "`calibration.data` in the stream config"]),
    ("no-tokenizer", ["cannot load a tokenizer", "set `tokenizer:` in the stream config"]),
])
def test_stream_data_errors_name_their_section(tmp_path, config_for, tiny_llama, case, words):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    config = config_for(steps=1, validation={"data": str(tmp_path / "held.jsonl"), "samples": 2})
    (tmp_path / "held.jsonl").write_text('{"text": "held-out text for the loss"}\n')
    if case == "empty-validation":
        config["validation"]["data"] = str(empty)
    elif case == "empty-calibration":
        config["calibration"]["data"] = str(empty)
    else:  # an origin folder with weights and config but no tokenizer files
        bare = tmp_path / "bare-origin"
        bare.mkdir()
        for name in ("config.json", "model.safetensors"):
            shutil.copy(tiny_llama / name, bare / name)
        config["origin"] = str(bare)
    with pytest.raises(ArmError) as raised:
        run_stream(config, tmp_path / "out", progress=False)
    message = str(raised.value)
    assert all(w in message for w in words), message
    assert "--tokenizer" not in message and "--data" not in message


def test_non_finite_held_out_loss_stops(tmp_path, config_for, validation_jsonl, monkeypatch):
    from mergekit_arm.stream import runner

    real = runner.heldout_loss
    calls = []

    def loss(module, batches, parameters=None):
        value = real(module, batches, parameters)
        if parameters is not None:
            calls.append(value)
        return math.nan if len(calls) == 2 else value

    monkeypatch.setattr(runner, "heldout_loss", loss)
    config = config_for(steps=3, validation={"data": str(validation_jsonl), "samples": 4})
    result = run_stream(config, tmp_path / "out", progress=False)
    assert result.status == "stopped" and result.steps == 1
    assert "held-out loss is nan" in result.stop_reason
    assert result.final_loss == result.records[0]["val_loss"]


@pytest.mark.slow
def test_step_yaml_replays_with_mergekit_yaml(tmp_path, config_for):
    config = config_for(checkpoints=[5, (10, 2.0)], steps=2, save_every=1,
                        arm={"rotation_strength": 1.0})
    out = tmp_path / "out"
    run_stream(config, out, progress=False)
    # step 1 starts from the last checkpoint, also a target: its base is the saved step-0
    assert "base_model: " + str(out / "steps" / "step-0") in (out / "steps" / "step-1.yml").read_text()
    replay = tmp_path / "replay"
    subprocess.run(
        ["mergekit-yaml", str(out / "steps" / "step-2.yml"), str(replay), "--quiet"],
        check=True, env=one_thread_env(), capture_output=True, timeout=300,
    )
    assert_state_dicts_close(_weights(replay), _weights(out / "steps" / "step-2"),
                             rtol=1e-5, atol=1e-7)


# -- keep-best and early stop --------------------------------------------------------------


def test_kept_step_rules():
    records = [{"step": 1, "accepted": True, "val_loss": 4.0},
               {"step": 2, "accepted": True, "val_loss": 3.5},
               {"step": 3, "accepted": True, "val_loss": 3.5},
               {"step": 4, "accepted": False, "val_loss": None}]
    assert best_step(5.0, records) == 2  # ties: the earlier step
    assert best_step(3.0, records) == 0  # nothing beat the start
    assert best_step(3.0, records, min_step=1) == 2
    assert kept_step("last", 3.0, records) == 3 and kept_step("best", 3.0, records) == 0
    assert best_step(None, [{"step": 1, "accepted": True, "val_loss": None}]) == 1
    assert patience_left(2, 5.0, records) and not patience_left(1, 5.0, records)
    assert patience_left(None, 3.0, records)


def test_stream_step_in_memory(tiny_llama, tiny_llama_sft, validation_texts):
    """The in-memory step: one candidate per rate, each scored; the lowest finite loss wins."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    import mergekit_arm
    from mergekit_arm.evaluation import heldout_loss, loss_batches
    from mergekit_arm.merge_methods.arm_parameters import ARMParameters
    from mergekit_arm.stream import Leg, stream_step

    mergekit_arm.register()
    model = AutoModelForCausalLM.from_pretrained(tiny_llama_sft[10]).eval()
    origin = AutoModelForCausalLM.from_pretrained(tiny_llama).state_dict()
    current = {k: v.clone() for k, v in model.state_dict().items()}
    tokenizer = AutoTokenizer.from_pretrained(tiny_llama_sft[10])
    ids = [tokenizer(t, truncation=True, max_length=32)["input_ids"] for t in validation_texts[:8]]
    batches = loss_batches(ids, 4, tokenizer.pad_token_id or 0)
    leg = Leg(origin, None, ((current, 1.0),), "origin -> step-10")
    parameters = ARMParameters(rank=4, rotation_strength=0.0).merge_parameters()
    rates = [(1.0, 0.5), (2.0, 1.0), (3.0, 1e40)]
    result = stream_step(current, None, leg, rates, parameters,
                         score=lambda w: heldout_loss(model, batches, w))
    assert [c.learning_rate for c in result.candidates] == [0.5, 1.0, 1e40]
    assert result.candidates[2].val_loss is None and "NaN/Inf" in result.candidates[2].error
    for candidate in result.candidates[:2]:
        by_hand = {k: current[k] + candidate.learning_rate * (current[k] - origin[k])
                   for k in current}
        assert candidate.val_loss == pytest.approx(heldout_loss(model, batches, by_hand),
                                                   rel=1e-6)
    chosen = min(result.candidates[:2], key=lambda c: c.val_loss)
    assert result.chosen is chosen and chosen.weights is not None
    assert all(c.weights is None for c in result.candidates if c is not chosen)
    expected = {k: current[k] + chosen.learning_rate * (current[k] - origin[k]) for k in current}
    assert_state_dicts_close(chosen.weights, expected, rtol=1e-5, atol=1e-6)
    assert torch.equal(model.state_dict()["model.embed_tokens.weight"],
                       current["model.embed_tokens.weight"])  # the model is not changed


def _rotation_off_step(origin, ckpt, steps: int, eta: float) -> dict[str, torch.Tensor]:
    """Rotation off, fixed set from the checkpoint: ``c + k eta (c - origin)``."""
    return {name: ckpt[name] + steps * eta * (ckpt[name] - origin[name]) for name in ckpt}


BEST_RUN_ETA = 2.0


@pytest.fixture(scope="module")
def best_run(tmp_path_factory, tiny_llama, tiny_llama_sft, calibration_jsonl, validation_texts):
    """Rotation off, eta 2, 4 steps: on the fixture models the held-out loss falls until
    step 2, then rises (5.77 -> 5.34 -> 5.31 -> 5.48 -> 5.76 when this was written)."""
    validation = tmp_path_factory.mktemp("best-validation") / "heldout.jsonl"
    validation.write_text("".join(json.dumps({"text": t}) + "\n" for t in validation_texts))
    config = stream_config(tiny_llama, [tiny_llama_sft[10]], calibration_jsonl, steps=4,
                           arm={"rotation_strength": 0.0},
                           schedule={"kind": "constant", "learning_rate": BEST_RUN_ETA},
                           validation={"data": str(validation), "samples": 8})
    out = tmp_path_factory.mktemp("best") / "out"
    return config, out, run_stream(config, out, progress=False)


def test_keep_best_returns_lowest_held_out_loss(best_run, tiny_llama, tiny_llama_sft):
    config, out, result = best_run
    losses = [result.start_loss] + [r["val_loss"] for r in result.records]
    best = min(range(len(losses)), key=losses.__getitem__)
    assert best not in (0, 4), losses  # the case this test is about: neither start nor last
    assert result.kept_step == best and result.final_loss == losses[best]
    expected = _rotation_off_step(_weights(tiny_llama), _weights(tiny_llama_sft[10]), best,
                                  BEST_RUN_ETA)
    assert_state_dicts_close(_weights(result.model), expected, rtol=1e-5, atol=1e-6)

    records = read_trajectory(out / "trajectory.jsonl")
    assert [r["kept"] for r in records] == [r["step"] == best for r in records]
    assert read_trajectory(result.model / "trajectory.jsonl") == records  # the copy
    card = (result.model / "README.md").read_text()
    assert f"This model is step {best} of 4, the lowest held-out loss ({losses[best]:.4f}" in card
    assert f"| {best} | {BEST_RUN_ETA:g} | {losses[best]:.4f} | yes |" in card
    assert "| 0 (start) |  | " in card
    assert not list((out / ".arm-stream").glob("current-*.safetensors"))  # removed at the end


def test_select_last_and_patience(tmp_path, best_run, tiny_llama, tiny_llama_sft):
    config, _, first = best_run
    origin, ckpt = _weights(tiny_llama), _weights(tiny_llama_sft[10])
    last = run_stream({**config, "select": "last"}, tmp_path / "last", progress=False)
    assert last.kept_step == 4 and [r["val_loss"] for r in last.records] == [
        r["val_loss"] for r in first.records]
    assert_state_dicts_close(_weights(last.model), _rotation_off_step(origin, ckpt, 4, BEST_RUN_ETA),
                             rtol=1e-5, atol=1e-6)

    early = run_stream({**config, "patience": 1}, tmp_path / "patience", progress=False)
    best = first.kept_step
    assert [r["step"] for r in early.records] == list(range(1, best + 2))  # one step past best
    assert early.status == "finished" and "stopped early (patience)" in early.stop_reason
    assert early.kept_step == best
    assert_state_dicts_close(_weights(early.model), _weights(first.model), rtol=0, atol=0)
    assert "stopped early (patience)" in (early.model / "README.md").read_text()


def test_start_model_kept_when_no_step_beats_it(tmp_path, config_for, validation_jsonl,
                                                tiny_llama_sft):
    config = config_for(steps=2, arm={"rotation_strength": 0.0},
                        schedule={"kind": "constant", "learning_rate": 10.0},
                        validation={"data": str(validation_jsonl), "samples": 8})
    result = run_stream(config, tmp_path / "out", progress=False)
    assert all(r["val_loss"] > result.start_loss for r in result.records)
    assert result.kept_step == 0 and result.final_loss == result.start_loss
    _assert_bit_identical(_weights(result.model), _weights(tiny_llama_sft[10]))
    assert not any(r["kept"] for r in result.records)
    card = (result.model / "README.md").read_text()
    assert "This model is the **start model**" in card and "| 0 (start) |  | " in card


def test_resume_keeps_the_best_weights(tmp_path, best_run, monkeypatch, tiny_llama,
                                       tiny_llama_sft):
    config, _, reference = best_run
    best = reference.kept_step
    assert 1 <= best <= 2  # the best step's weights must outlive the step after it
    from mergekit_arm.stream import step

    original, calls = step.merge_candidate, [0]

    def interrupted(*args, **kwargs):
        calls[0] += 1
        if calls[0] == best + 2:  # killed during the second step after the best one
            raise KeyboardInterrupt
        return original(*args, **kwargs)

    monkeypatch.setattr(step, "merge_candidate", interrupted)
    out = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt):
        run_stream(config, out, progress=False)
    internal = out / ".arm-stream"
    assert sorted(p.name for p in internal.glob("current-*.safetensors")) == [
        f"current-{best}.safetensors", f"current-{best + 1}.safetensors"]
    monkeypatch.setattr(step, "merge_candidate", original)
    resumed = run_stream(config, out, progress=False)
    assert [r["step"] for r in resumed.records] == [1, 2, 3, 4] and resumed.kept_step == best
    assert [r["val_loss"] for r in resumed.records] == [r["val_loss"] for r in reference.records]
    _assert_bit_identical(_weights(resumed.model), _weights(reference.model))


def test_selection_needs_validation(config_for):
    for key, value in (("select", "best"), ("patience", 2)):
        with pytest.raises(ArmConfigError, match=f"`{key}` compares held-out losses"):
            parse_config(config_for(**{key: value}))


def test_eigengap_reaches_the_kernel(tmp_path, config_for, monkeypatch):
    from mergekit_arm.stream import step

    seen, original = [], step.merge_candidate

    def spy(current, statistics, leg, rate, parameters, *args):
        seen.append(dict(parameters))
        return original(current, statistics, leg, rate, parameters, *args)

    monkeypatch.setattr(step, "merge_candidate", spy)
    run_stream(config_for(steps=1, arm={"eigengap": True}), tmp_path / "out", progress=False)
    assert seen and all(p["eigengap"] is True for p in seen)
    assert "eigengap: true" in (tmp_path / "out" / "steps" / "step-1.yml").read_text()


def test_log_names_the_model_and_card_only_applicable_keys(best_run):
    _, out, _ = best_run
    log = (out / "arm-stream.log").read_text()
    assert "calibrating the current model (input of step 1: the start model " in log
    assert "calibrating the current model (input of step 2: the result of step 1)" in log
    assert f"calibrating {out} " not in log and f"calibrating {out}\n" not in log
    card = (out / "model" / "README.md").read_text()
    config_section = card.split("## Stream configuration")[1]
    for key in ("candidates:", "decay:", "final_learning_rate:", "watch:", "patience:"):
        assert key not in config_section, key
    assert "select: best" in config_section


@pytest.mark.slow
def test_step_one_replays_in_checkpoints_mode_without_save_every(tmp_path, config_for):
    config = config_for(checkpoints=[5, 10], mode="checkpoints", steps=1, out_dtype="float32")
    out = tmp_path / "out"
    result = run_stream(config, out, progress=False)
    text = (out / "steps" / "step-1.yml").read_text()
    assert "NOT replayable" not in text
    assert "base_model: " + str(out / "steps" / "step-0") in text  # start = origin, an input
    replay = tmp_path / "replay"
    subprocess.run(["mergekit-yaml", str(out / "steps" / "step-1.yml"), str(replay), "--quiet"],
                   check=True, env=one_thread_env(), capture_output=True, timeout=300)
    assert_state_dicts_close(_weights(replay), _weights(result.model), rtol=1e-5, atol=1e-7)


# -- resume --------------------------------------------------------------------------------


def test_a_stream_saved_before_a_new_key_resumes(tmp_path, config_for):
    """A state.json written by an earlier version lacks keys added since (here
    ``watch.legs``): it resumes when it reads back equal (the new key at its default); a
    changed value is still refused."""
    from mergekit_arm.errors import ArmConfigError
    from mergekit_arm.stream.state import config_hash

    config = config_for(steps=1)
    out = tmp_path / "out"
    run_stream(config, out, progress=False)
    state_file = out / ".arm-stream" / "state.json"
    state = json.loads(state_file.read_text())
    full = copy.deepcopy(state["config"])
    del state["config"]["watch"]["legs"]
    state["config_hash"] = config_hash(state["config"])
    state_file.write_text(json.dumps(state))
    run_stream(config, out, progress=False)  # resumes: nothing to do, no refusal
    assert json.loads(state_file.read_text())["config"] == full

    state = json.loads(state_file.read_text())
    state["config"]["schedule"]["learning_rate"] = 0.123
    state["config_hash"] = config_hash(state["config"])
    state_file.write_text(json.dumps(state))
    with pytest.raises(ArmConfigError, match=r"schedule\.learning_rate: 0\.123"):
        run_stream(config, out, progress=False)


@pytest.mark.slow
def test_resume_after_sigkill_is_bit_identical(tmp_path, config_for, validation_jsonl):
    config = config_for(
        checkpoints=[5, 10], mode="checkpoints", steps=None,
        schedule={"kind": "cosine", "learning_rate": 1.5, "final_learning_rate": 0.5},
        validation={"data": str(validation_jsonl), "samples": 4},
    )
    path = tmp_path / "stream.yml"
    path.write_text(json.dumps(config))
    out = tmp_path / "out"
    stalled = tmp_path / "stalled"
    env = {**one_thread_env(), "STREAM_TEST_STALLED": str(stalled)}
    process = subprocess.Popen([sys.executable, str(HELPERS), str(path), str(out), "-q"],
                               env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 240
        while not stalled.exists():  # step 1 committed, step 2 calibrated, merging
            assert process.poll() is None, process.stdout.read().decode()
            assert time.monotonic() < deadline, "the stream never reached step 2"
            time.sleep(0.1)
        state = json.loads((out / ".arm-stream" / "state.json").read_text())
        assert state["step"] == 1 and state["status"] == "running"
        process.send_signal(signal.SIGKILL)
    finally:
        process.kill()
        process.wait()
    assert not (out / "model").exists()  # no final model before the end

    # the same command again (in-process, to save a second interpreter start-up)
    from mergekit_arm.scripts.stream import main

    resumed = CliRunner().invoke(main, [str(path), str(out), "-q"])
    assert resumed.exit_code == 0, resumed.output
    assert "finished after 2 step(s)" in resumed.output
    assert json.loads((out / ".arm-stream" / "state.json").read_text())["status"] == "finished"

    reference = run_stream(config, tmp_path / "uninterrupted", progress=False)
    _assert_bit_identical(_weights(out / "model"), _weights(reference.model))
    strip = [{k: v for k, v in r.items() if k not in ("seconds", "statistics", "yaml")}
             for r in read_trajectory(out / "trajectory.jsonl")]
    assert strip == [{k: v for k, v in r.items() if k not in ("seconds", "statistics", "yaml")}
                     for r in reference.records]
    assert [r["from"] for r in reference.records] == [config["origin"],
                                                      config["checkpoints"][0]["model"]]


# -- watch mode ----------------------------------------------------------------------------


def test_is_complete_and_settling(tmp_path, tiny_llama):
    folder = tmp_path / "checkpoint-3"
    folder.mkdir()
    (folder / "config.json").write_text((tiny_llama / "config.json").read_text())
    assert not is_complete(folder)  # config but no weights
    data = (tiny_llama / "model.safetensors").read_bytes()
    (folder / "model.safetensors").write_bytes(data[: len(data) // 2])
    assert not is_complete(folder)  # weights still growing
    (folder / "model.safetensors").write_bytes(data)
    assert is_complete(folder)
    (folder / "model.safetensors.index.json").write_text(
        json.dumps({"weight_map": {"a": "model-00001-of-00002.safetensors"}}))
    assert not is_complete(folder)  # the index names a shard that is not there
    (folder / "model.safetensors.index.json").unlink()

    now = [0.0]
    watcher = CheckpointWatcher(tmp_path, settle_seconds=5, clock=lambda: now[0])
    assert watcher.candidates(None) == [folder] and watcher.candidates(3) == []
    assert checkpoint_number(folder) == 3
    assert not watcher.ready(folder)
    now[0] = 4.0
    assert not watcher.ready(folder)
    now[0] = 5.0
    assert watcher.ready(folder)


def _copy_slowly(source: Path, target: Path, delay: float) -> None:
    """Create ``target`` like a trainer would: config first, then weights in two writes."""
    target.mkdir()
    shutil.copy(source / "config.json", target / "config.json")
    time.sleep(delay)
    data = (source / "model.safetensors").read_bytes()
    with open(target / "model.safetensors", "wb") as handle:
        handle.write(data[: len(data) // 2])
        handle.flush()
        time.sleep(delay)
        handle.write(data[len(data) // 2 :])
    for name in ("tokenizer.json", "tokenizer_config.json", "generation_config.json"):
        if (source / name).exists():
            shutil.copy(source / name, target / name)


def test_watch_merges_checkpoints_as_they_appear(tmp_path, config_for, tiny_llama_sft):
    watched = tmp_path / "trainer"
    watched.mkdir()
    (watched / "checkpoint-99").mkdir()  # never completes: config only
    shutil.copy(tiny_llama_sft[5] / "config.json", watched / "checkpoint-99" / "config.json")
    errors: list[BaseException] = []

    def trainer() -> None:
        try:
            time.sleep(0.3)
            _copy_slowly(tiny_llama_sft[5], watched / "checkpoint-5", 0.4)
            time.sleep(0.5)
            _copy_slowly(tiny_llama_sft[10], watched / "checkpoint-10", 0.8)
        except BaseException as error:  # pragma: no cover
            errors.append(error)

    config = config_for(steps=None, watch={"settle_seconds": 0.6, "poll_seconds": 0.05,
                                           "idle_timeout": 4.0})
    config["checkpoints"] = []
    thread = threading.Thread(target=trainer)
    thread.start()
    try:
        result = run_stream(config, tmp_path / "out", watch=watched, progress=False)
    finally:
        thread.join()
    assert not errors
    assert [r["to"][0]["model"] for r in result.records] == [
        str(watched / "checkpoint-5"), str(watched / "checkpoint-10")]
    assert "no new complete checkpoint" in result.stop_reason

    # the same merges as a stream over the finished folders
    same = config_for(mode="checkpoints", steps=None)
    same["checkpoints"] = [{"model": str(watched / f"checkpoint-{n}"), "weight": 1.0} for n in (5, 10)]
    reference = run_stream(same, tmp_path / "reference", progress=False)
    _assert_bit_identical(_weights(result.model), _weights(reference.model))


def test_watch_with_no_checkpoint_says_so(tmp_path, config_for):
    watched = tmp_path / "empty"
    watched.mkdir()
    config = config_for(steps=None, watch={"poll_seconds": 0.05, "idle_timeout": 0.3})
    config["checkpoints"] = []
    with pytest.raises(ArmError, match="no complete checkpoint appeared"):
        run_stream(config, tmp_path / "out", watch=watched, progress=False)


def test_records_name_their_statistics(plain_run):
    _, out, result = plain_run
    first = result.records[0]
    assert math.isfinite(first["angle_mean_deg"])
    assert (out / first["statistics"]["current"]).is_file()
    assert (out / first["statistics"]["from"]).is_file()
