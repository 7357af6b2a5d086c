"""``watch.legs: toward``: a watched stream that moves the current model toward each new
save, so ``schedule: {kind: average}`` keeps the running mean of the saves; its rotated
variant, resume, the config checks, and ARMCallback(stop_training=True) keeping the best
running average. Tiny models, CPU, one thread."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from helpers import assert_state_dicts_close, load_state_dict
from stream_helpers import stream_config

from mergekit_arm.errors import ArmConfigError
from mergekit_arm.integrations.transformers import ARMCallback
from mergekit_arm.stream import parse_config, run_stream
from tests.test_callback import _config as _callback_config
from tests.test_callback import stream_files  # noqa: F401 - a fixture
from tests.test_callback_stop import ASKED, SAVE_STEPS, _train

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SAVES = (5, 10, 5)  # the fixture checkpoints copied as checkpoint-1, -2, -3


@pytest.fixture(scope="module")
def watched(tmp_path_factory, tiny_llama_sft) -> Path:
    """A finished training folder: checkpoint-1..3 = copies of c5, c10, c5 (with the
    Trainer's trainer_state.json, so they are complete at once)."""
    folder = tmp_path_factory.mktemp("watched") / "run"
    folder.mkdir()
    for number, source in enumerate(SAVES, start=1):
        shutil.copytree(tiny_llama_sft[source], folder / f"checkpoint-{number}")
    return folder


def _config(tiny_llama, calibration_jsonl, **overrides) -> dict:
    config = stream_config(tiny_llama, [], calibration_jsonl, mode="watch", steps=None,
                           save_every=1,
                           watch={"legs": "toward", "settle_seconds": 0, "poll_seconds": 0.05,
                                  "idle_timeout": 0.3}, **overrides)
    config.pop("steps")
    config["schedule"] = {"kind": "average"}  # eta_k = 1 / k
    return config


def _mean_of_saves(tiny_llama_sft, count: int) -> dict[str, torch.Tensor]:
    """(c_1 + ... + c_count) / count in float64, then float32 (independent of the kernel)."""
    saves = [load_state_dict(tiny_llama_sft[n]) for n in SAVES[:count]]
    return {name: (sum(s[name].double() for s in saves) / count).float() for name in saves[0]}


@pytest.fixture(scope="module")
def plain_average(tmp_path_factory, watched, tiny_llama, calibration_jsonl):
    out = tmp_path_factory.mktemp("plain") / "out"
    config = _config(tiny_llama, calibration_jsonl)
    return config, out, run_stream(config, out, watch=watched, progress=False)


def test_toward_legs_keep_the_mean_of_the_saves(plain_average, watched, tiny_llama_sft):
    _, out, result = plain_average
    assert [r["learning_rate"] for r in result.records] == [1.0, 0.5, 1 / 3]
    assert [r["from"] for r in result.records] == ["current"] * 3
    assert [r["to"][0]["model"] for r in result.records] == [
        str(watched / f"checkpoint-{n}") for n in (1, 2, 3)]
    # off_subspace 1 (R = I): no calibration pass, no statistics at all
    assert all(r["statistics"] == {"current": None, "from": None} for r in result.records)
    assert not list((out / ".arm-stream" / "stats").glob("step-*.safetensors"))
    for step in (1, 2, 3):  # every step is the running mean of the saves so far
        assert_state_dicts_close(load_state_dict(out / "steps" / f"step-{step}"),
                                 _mean_of_saves(tiny_llama_sft, step), rtol=1e-5, atol=1e-6)
    assert_state_dicts_close(load_state_dict(result.model), _mean_of_saves(tiny_llama_sft, 3),
                             rtol=1e-5, atol=1e-6)
    assert "watch.legs: toward" in (result.model / "README.md").read_text()


def test_rotated_toward_legs_run_and_differ(tmp_path, plain_average, watched, tiny_llama,
                                            calibration_jsonl, tiny_llama_sft):
    config = _config(tiny_llama, calibration_jsonl, arm={"rank": 4, "off_subspace": 0.5})
    out = tmp_path / "out"
    result = run_stream(config, out, watch=watched, progress=False)
    assert [r["learning_rate"] for r in result.records] == [1.0, 0.5, 1 / 3]
    # the current model is calibrated every step; the saves never are (no `from`)
    assert [r["statistics"]["current"] for r in result.records] == [
        f".arm-stream/stats/step-{k}.safetensors" for k in (1, 2, 3)]
    assert all(r["statistics"]["from"] is None for r in result.records)
    rotated, plain = load_state_dict(result.model), load_state_dict(plain_average[2].model)
    assert all(torch.isfinite(t).all() for t in rotated.values())
    differs = [n for n in rotated if not torch.allclose(rotated[n], plain[n], rtol=1e-4,
                                                         atol=1e-5)]
    assert differs, "off_subspace 0.5 gave the plain average"
    # the origin and the saves were not calibrated (no statistics cache entries)
    assert not list((out / ".arm-stream" / "stats" / "cache").glob("*.safetensors"))


def test_resumed_toward_watch_continues_the_average(tmp_path, monkeypatch, plain_average,
                                                    watched, tiny_llama_sft):
    config, _, reference = plain_average
    from mergekit_arm.stream import step

    original, calls = step.merge_candidate, [0]

    def interrupted(*args, **kwargs):
        calls[0] += 1
        if calls[0] == 3:  # in step 3, after steps 1 and 2 were committed
            raise KeyboardInterrupt
        return original(*args, **kwargs)

    monkeypatch.setattr(step, "merge_candidate", interrupted)
    out = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt):
        run_stream(config, out, watch=watched, progress=False)
    monkeypatch.setattr(step, "merge_candidate", original)
    # the last merged save is gone (save_total_limit): a toward resume never reads it
    shutil.rmtree(watched / "checkpoint-2")
    try:
        resumed = run_stream(config, out, watch=watched, progress=False)
    finally:
        shutil.copytree(tiny_llama_sft[SAVES[1]], watched / "checkpoint-2")
    assert [r["learning_rate"] for r in resumed.records] == [1.0, 0.5, 1 / 3]  # eta_3 = 1/3
    a, b = load_state_dict(resumed.model), load_state_dict(reference.model)
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize(("change", "message"), [
    ({"mode": "checkpoints"}, r"`watch.legs: toward` chooses the legs of mode watch, but "
                              r"mode is checkpoints"),
    ({"watch": {"legs": "back"}}, r"`watch.legs`: Input should be 'previous' or 'toward'"),
    ({"schedule": {"kind": "cosine", "learning_rate": 1.0}},
     r"a cosine decay needs a known number of steps: set `watch.max_steps`"),
])
def test_watch_legs_config_errors(tiny_llama, calibration_jsonl, change, message):
    config = {**_config(tiny_llama, calibration_jsonl), **change}
    if change.get("mode") == "checkpoints":
        config["checkpoints"] = [str(tiny_llama)]
    with pytest.raises(ArmConfigError, match=message):
        parse_config(config)


def test_watch_legs_default_is_previous(tiny_llama, calibration_jsonl):
    config = _config(tiny_llama, calibration_jsonl)
    del config["watch"]["legs"]
    parsed = parse_config(config)  # kind average in watch mode needs no max_steps
    assert parsed.watch.legs == "previous" and not parsed.toward_legs()
    assert parse_config(_config(tiny_llama, calibration_jsonl)).toward_legs()


# -- ARMCallback(stop_training=True) keeping the best running average -----------------------


def test_callback_stops_training_on_the_running_average(tmp_path, tiny_llama, math_texts,
                                                        stream_files):  # noqa: F811
    config = _callback_config(stream_files, tiny_llama, patience=1, save_every=1,
                              schedule={"kind": "average"}, watch={"legs": "toward"})
    callback = ARMCallback(config, stop_training=True)
    output_dir = tmp_path / "run"
    trainer = _train(tiny_llama, output_dir, math_texts[:24], [callback])
    result = callback.result
    records = result.records
    assert trainer.state.global_step < ASKED  # stopped early
    assert callback.training_stop["steps_trained"] == trainer.state.global_step
    assert [r["learning_rate"] for r in records] == [1 / k for k in range(1, len(records) + 1)]
    assert result.kept_step == min(records, key=lambda r: r["val_loss"])["step"]
    kept = result.kept_step
    assert kept >= 1
    # out/model is the best step's model, and that is the mean of the saves up to it
    final = load_state_dict(result.model)
    assert all(torch.equal(final[k], v) for k, v in
               load_state_dict(output_dir / "arm-stream" / "steps" / f"step-{kept}").items())
    saves = [load_state_dict(output_dir / f"checkpoint-{SAVE_STEPS * k}")
             for k in range(1, kept + 1)]
    mean = {name: (sum(s[name].double() for s in saves) / kept).float() for name in saves[0]}
    assert_state_dicts_close(final, mean, rtol=1e-5, atol=1e-6)


def test_example_config_is_the_running_average_with_a_stop():
    from mergekit_arm._yaml import load_yaml_file
    from mergekit_arm.integrations.early_stop import check_stop_config

    path = Path(__file__).resolve().parents[1] / "examples" / "arm-callback-average.yml"
    data = load_yaml_file(path, "stream config")
    check_stop_config(data, str(path))  # sets patience: stop_training=True accepts it
    parsed = parse_config({**data, "mode": "watch"}, str(path))
    assert parsed.toward_legs() and parsed.schedule.kind == "average"
    assert parsed.select_rule() == "best" and parsed.patience is not None
