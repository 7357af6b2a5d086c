"""ARMCallback: Streaming Merging inside a transformers Trainer (and TRL's SFTTrainer).

Every run fine-tunes the tiny Llama fixture for 8 steps on the CPU, saving every 2 steps;
the callback's stream is compared with ``arm-stream`` run afterwards in ``checkpoints``
mode over the same saved checkpoints.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from datasets import Dataset
from safetensors.torch import load_file
from transformers import PrinterCallback, Trainer, TrainerCallback, TrainingArguments
from transformers.trainer_callback import TrainerState

from mergekit_arm.demo.tiny_models import load_model_dir
from mergekit_arm.demo.tokenizer import encode_texts
from mergekit_arm.demo.training import PadRight
from mergekit_arm.errors import ArmConfigError
from mergekit_arm.integrations.transformers import ARMCallback, callback_config
from mergekit_arm.stream import run_stream

STEPS, SAVE_STEPS = 8, 2
SAVED = [2, 4, 6, 8]
COMPARED = ("step", "accepted", "leg", "learning_rate", "scheduled_learning_rate", "val_loss",
            "val_loss_before", "line_search", "kept", "angle_mean_deg", "angle_max_deg", "yaml")


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def stream_files(tmp_path_factory, demo_records, calibration_jsonl) -> dict[str, Path]:
    """Calibration texts and held-out math texts (after the 24 the runs train on)."""
    math_texts = [r["text"] for r in demo_records if r.get("domain") == "math"]
    held_out = math_texts[64:80] if len(math_texts) >= 72 else math_texts[-8:]
    path = tmp_path_factory.mktemp("heldout") / "heldout.jsonl"
    path.write_text("".join(json.dumps({"text": t}) + "\n" for t in held_out), encoding="utf-8")
    return {"calibration": calibration_jsonl, "validation": path}


def _config(stream_files, origin: Path | None, **overrides) -> dict:
    """A fast callback config: line search over two rates, keep-best, rank 4."""
    config = {
        "schedule": {"kind": "line_search", "learning_rate": 1.0, "candidates": [0.5, 1.5]},
        "calibration": {"data": str(stream_files["calibration"]), "samples": 8,
                        "max_length": 32, "rank": 8},
        "validation": {"data": str(stream_files["validation"]), "samples": 8, "max_length": 32},
        "arm": {"rank": 4},
        **overrides,
    }
    if origin is not None:
        config["origin"] = str(origin)
    return config


def _train(base: Path, output_dir: Path, texts, callbacks=(), resume=None, trainer_cls=Trainer,
           **extra) -> Trainer:
    model, tokenizer = load_model_dir(base)
    data = Dataset.from_dict({"input_ids": encode_texts(tokenizer, list(texts), 48)})
    args = TrainingArguments(
        output_dir=str(output_dir), max_steps=STEPS, per_device_train_batch_size=4,
        learning_rate=3e-3, lr_scheduler_type="cosine", warmup_steps=1, save_strategy="steps",
        save_steps=SAVE_STEPS, logging_steps=1, report_to=[], disable_tqdm=True,
        log_level="error", use_cpu=True, dataloader_pin_memory=False, seed=0, data_seed=0,
    )
    trainer = trainer_cls(model=model, args=args, train_dataset=data,
                          data_collator=PadRight(tokenizer.pad_token_id),
                          processing_class=tokenizer, callbacks=list(callbacks), **extra)
    trainer.remove_callback(PrinterCallback)
    trainer.train(resume_from_checkpoint=None if resume is None else str(resume))
    return trainer


def _losses(trainer: Trainer) -> list[tuple[int, float]]:
    return [(e["step"], e["loss"]) for e in trainer.state.log_history if "loss" in e]


def _weights(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(str(folder / "model.safetensors"))


def _assert_same_weights(a: Path, b: Path) -> None:
    wa, wb = _weights(a), _weights(b)
    assert wa.keys() == wb.keys()
    for name in wa:
        assert torch.equal(wa[name], wb[name]), name


def _compared(records) -> list[dict]:
    return [{key: r.get(key) for key in COMPARED} for r in records]


def _trajectory(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "trajectory.jsonl").read_text().splitlines()]


def _arm_stream_over(config: dict, checkpoints: list[Path], out: Path):
    """arm-stream in checkpoints mode over the same saved checkpoints."""
    same = {**config, "mode": "checkpoints", "device": "cpu",
            "checkpoints": [str(c) for c in checkpoints]}
    return run_stream(same, out, progress=False)


class Probe(TrainerCallback):
    """At every save: the RNG states and the trained model's weights (clones)."""

    def __init__(self) -> None:
        self.seen: list[tuple] = []

    def on_save(self, args, state, control, model=None, **kwargs):
        self.seen.append((torch.get_rng_state(), np.random.get_state()[1].copy(),
                          random.getstate(),
                          {k: v.detach().clone() for k, v in model.state_dict().items()}))


@pytest.fixture(scope="module")
def plain_training(tmp_path_factory, tiny_llama, math_texts):
    """The same fine-tune without the callback."""
    return _train(tiny_llama, tmp_path_factory.mktemp("plain") / "run", math_texts[:24])


@pytest.fixture(scope="module")
def callback_run(tmp_path_factory, tiny_llama, math_texts, stream_files):
    """The fine-tune with ARMCallback between two probes."""
    output_dir = tmp_path_factory.mktemp("with_callback") / "run"
    before, after = Probe(), Probe()
    callback = ARMCallback(_config(stream_files, tiny_llama))
    trainer = _train(tiny_llama, output_dir, math_texts[:24], [before, callback, after])
    return SimpleNamespace(output_dir=output_dir, out=output_dir / "arm-stream",
                           callback=callback, trainer=trainer, before=before, after=after)


def test_callback_stream_equals_arm_stream_on_the_same_checkpoints(callback_run, tiny_llama,
                                                                   stream_files, tmp_path):
    run = callback_run
    result = run.callback.result
    assert result is not None and result.status == "finished"
    assert [r["to"][0]["model"] for r in result.records] == [
        str(run.output_dir / f"checkpoint-{n}") for n in SAVED]
    reference = _arm_stream_over(_config(stream_files, tiny_llama),
                                 [run.output_dir / f"checkpoint-{n}" for n in SAVED],
                                 tmp_path / "arm-stream")
    assert _compared(_trajectory(run.out)) == _compared(reference.records)
    assert result.kept_step == reference.kept_step
    assert [r["leg"] for r in result.records][0] == f"{tiny_llama.name} -> checkpoint-2"
    _assert_same_weights(run.out / "model", reference.model)
    # the outputs arm-stream writes: model with card and tokenizer, plot, replay YAMLs
    model = run.out / "model"
    for name in ("config.json", "README.md", "tokenizer.json", "trajectory.jsonl",
                 "trajectory.png"):
        assert (model / name).is_file(), name
    assert f"step {result.kept_step}" in (model / "README.md").read_text()
    for step in range(1, len(SAVED) + 1):
        assert (run.out / "steps" / f"step-{step}.yml").is_file()
    assert (run.out / "trajectory.png").is_file()
    # the wall time of every save's step: measured by the callback, and in the trajectory
    assert sorted(run.callback.step_seconds) == SAVED
    assert all(s > 0 for s in run.callback.step_seconds.values())
    assert all(r["seconds"]["total"] > 0 for r in _trajectory(run.out))
    assert "ARM stream step 4" in (run.out / "arm-stream.log").read_text()


def test_training_is_not_disturbed(callback_run, plain_training):
    run = callback_run
    assert _losses(run.trainer) == _losses(plain_training)
    assert len(_losses(run.trainer)) == STEPS
    assert len(run.before.seen) == len(run.after.seen) == len(SAVED)
    for (cpu_a, np_a, py_a, model_a), (cpu_b, np_b, py_b, model_b) in zip(
            run.before.seen, run.after.seen):
        assert torch.equal(cpu_a, cpu_b) and np.array_equal(np_a, np_b) and py_a == py_b
        assert all(torch.equal(model_a[k], model_b[k]) for k in model_a)
    _assert_same_weights(run.output_dir / "checkpoint-8",  # the trained model itself
                         Path(plain_training.args.output_dir) / "checkpoint-8")


class StopAt(TrainerCallback):
    """Raise at the save of ``step`` (placed before ARMCallback: the checkpoint is saved,
    the stream has not taken it) to simulate a killed run."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_save(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            raise KeyboardInterrupt


def test_resumed_trainer_continues_the_stream(tmp_path, tiny_llama, math_texts, stream_files,
                                              callback_run):
    output_dir = tmp_path / "run"
    config = _config(stream_files, tiny_llama)
    with pytest.raises(KeyboardInterrupt):  # killed after checkpoint-6 was saved
        _train(tiny_llama, output_dir, math_texts[:24], [StopAt(6), ARMCallback(config)])
    out = output_dir / "arm-stream"
    state = json.loads((out / ".arm-stream" / "state.json").read_text())
    assert state["step"] == 2 and not (out / "model").exists()
    changed = _config(stream_files, tiny_llama,
                      schedule={"kind": "line_search", "learning_rate": 0.5,
                                "candidates": [0.5, 1.5]})
    with pytest.raises(ArmConfigError, match=r"changed: schedule\.learning_rate: 1\.0 -> 0\.5"):
        _train(tiny_llama, output_dir, math_texts[:24], [ARMCallback(changed)],
               resume=output_dir / "checkpoint-6")
    # resumed at checkpoint-6: the stream takes checkpoint-6 first (missed by the kill)
    callback = ARMCallback(config)
    _train(tiny_llama, output_dir, math_texts[:24], [callback],
           resume=output_dir / "checkpoint-6")
    assert callback.result is not None
    assert [r["to"][0]["model"] for r in callback.result.records] == [
        str(output_dir / f"checkpoint-{n}") for n in SAVED]
    assert sorted(callback.step_seconds) == [6, 8]
    assert _compared(_trajectory(out)) == _compared(_trajectory(callback_run.out))
    _assert_same_weights(out / "model", callback_run.out / "model")


def test_kill_inside_a_stream_step_then_resume(tmp_path, tiny_llama, math_texts, stream_files,
                                               callback_run, monkeypatch):
    from mergekit_arm.stream import step

    original, calls = step.merge_candidate, [0]

    def interrupted(*args, **kwargs):
        calls[0] += 1
        if calls[0] == 6:  # two tries per step: the second try of step 3 (checkpoint-6)
            raise KeyboardInterrupt
        return original(*args, **kwargs)

    monkeypatch.setattr(step, "merge_candidate", interrupted)
    output_dir = tmp_path / "run"
    config = _config(stream_files, tiny_llama)
    with pytest.raises(KeyboardInterrupt):
        _train(tiny_llama, output_dir, math_texts[:24], [ARMCallback(config)])
    monkeypatch.setattr(step, "merge_candidate", original)
    callback = ARMCallback(config)  # same process: the killed run's stream was closed
    _train(tiny_llama, output_dir, math_texts[:24], [callback],
           resume=output_dir / "checkpoint-6")
    assert sorted(callback.step_seconds) == [6, 8]
    assert _compared(callback.result.records) == _compared(callback_run.callback.result.records)
    _assert_same_weights(output_dir / "arm-stream" / "model", callback_run.out / "model")


def test_resume_from_an_earlier_checkpoint_skips_consumed_ones(tmp_path, tiny_llama, math_texts,
                                                               stream_files, callback_run):
    output_dir = tmp_path / "run"
    config = _config(stream_files, tiny_llama)
    with pytest.raises(KeyboardInterrupt):  # the stream merged 2, 4, 6 before the kill
        _train(tiny_llama, output_dir, math_texts[:24], [ARMCallback(config), StopAt(6)])
    callback = ARMCallback(config)
    _train(tiny_llama, output_dir, math_texts[:24], [callback],
           resume=output_dir / "checkpoint-4")
    assert sorted(callback.step_seconds) == [8]  # checkpoint-6 (saved again) was skipped
    assert len(callback.result.records) == len(SAVED)
    _assert_same_weights(output_dir / "arm-stream" / "model", callback_run.out / "model")


def test_max_steps_and_a_decaying_schedule(tmp_path, tiny_llama, math_texts, stream_files):
    config = _config(stream_files, tiny_llama, validation=None, watch={"max_steps": 2},
                     schedule={"kind": "cosine", "learning_rate": 1.0,
                               "final_learning_rate": 0.25})
    output_dir = tmp_path / "run"
    callback = ARMCallback(config)
    _train(tiny_llama, output_dir, math_texts[:24], [callback])
    assert sorted(callback.step_seconds) == [2, 4]  # saves 6 and 8 come after max_steps
    assert [r["learning_rate"] for r in callback.result.records] == [1.0, 0.625]
    reference = _arm_stream_over({k: v for k, v in config.items() if k != "watch"},
                                 [output_dir / "checkpoint-2", output_dir / "checkpoint-4"],
                                 tmp_path / "reference")
    assert _compared(callback.result.records) == _compared(reference.records)
    _assert_same_weights(callback.result.model, reference.model)


class BreakSave(TrainerCallback):
    """Before ARMCallback: leave checkpoint-4 with a truncated weight file and
    checkpoint-6 without trainer_state.json (saves that failed half way)."""

    def on_save(self, args, state, control, **kwargs):
        folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        if state.global_step == 4:
            weights = folder / "model.safetensors"
            weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
        elif state.global_step == 6:
            (folder / "trainer_state.json").unlink()


def test_half_written_checkpoints_are_never_read(tmp_path, tiny_llama, math_texts, stream_files,
                                                 monkeypatch):
    from mergekit_arm.stream import inputs

    loaded: list[str] = []
    original = inputs.load_causal_lm

    def recording(path, *args, **kwargs):
        loaded.append(Path(path).name)
        return original(path, *args, **kwargs)

    monkeypatch.setattr(inputs, "load_causal_lm", recording)
    output_dir = tmp_path / "run"
    callback = ARMCallback(_config(stream_files, tiny_llama))
    _train(tiny_llama, output_dir, math_texts[:24], [BreakSave(), callback])
    assert "checkpoint-4" not in loaded and "checkpoint-6" not in loaded
    assert "checkpoint-2" in loaded and "checkpoint-8" in loaded
    assert [r["leg"] for r in callback.result.records] == [
        f"{tiny_llama.name} -> checkpoint-2", "checkpoint-2 -> checkpoint-8"]
    assert (output_dir / "arm-stream" / "model" / "config.json").is_file()


def test_trl_sft_trainer(tmp_path, tiny_llama, math_texts, stream_files):
    trl = pytest.importorskip("trl")
    model, tokenizer = load_model_dir(tiny_llama)
    args = trl.SFTConfig(
        output_dir=str(tmp_path / "sft"), max_steps=4, per_device_train_batch_size=4,
        learning_rate=3e-3, save_strategy="steps", save_steps=2, logging_steps=1,
        report_to=[], disable_tqdm=True, log_level="error", use_cpu=True,
        dataloader_pin_memory=False, seed=0, max_length=48, packing=False,
    )
    data = Dataset.from_dict({"text": list(math_texts[:16])})
    callback = ARMCallback(_config(stream_files, None))  # origin: the model's own folder
    trainer = trl.SFTTrainer(model=model, args=args, train_dataset=data,
                             processing_class=tokenizer, callbacks=[callback])
    trainer.train()
    result = callback.result
    assert result is not None and [r["leg"] for r in result.records] == [
        f"{tiny_llama.name} -> checkpoint-2", "checkpoint-2 -> checkpoint-4"]
    reference = _arm_stream_over(_config(stream_files, tiny_llama),
                                 [tmp_path / "sft" / f"checkpoint-{n}" for n in (2, 4)],
                                 tmp_path / "reference")
    assert _compared(result.records) == _compared(reference.records)
    _assert_same_weights(result.model, reference.model)


def test_config_defaults(tmp_path, tiny_llama, stream_files):
    run = (tmp_path / "run").resolve()
    config = callback_config(_config(stream_files, tiny_llama), "<dict>", run)
    assert (config.mode, config.watch.dir, config.device) == ("watch", str(run), "cpu")
    asked = callback_config(_config(stream_files, tiny_llama, device="auto"), "<dict>", run)
    assert asked.device == "auto"  # the training device only when the config asks
    model = SimpleNamespace(config=SimpleNamespace(name_or_path=str(tiny_llama)))
    assert callback_config(_config(stream_files, None), "<dict>", run, model).origin == str(
        tiny_llama.resolve())


def test_config_errors(tmp_path, tiny_llama, stream_files):
    with pytest.raises(ArmConfigError, match="mode watch"):
        ARMCallback(_config(stream_files, tiny_llama, mode="checkpoints",
                            checkpoints=[str(tiny_llama)]))
    with pytest.raises(ArmConfigError, match="unknown key `schedule.lerning_rate`"):
        ARMCallback({**_config(stream_files, tiny_llama), "schedule": {"lerning_rate": 1}})
    args = SimpleNamespace(output_dir=str(tmp_path / "run"), save_strategy="steps")
    state = TrainerState()
    no_origin = ARMCallback(_config(stream_files, None))
    model = SimpleNamespace(config=SimpleNamespace(name_or_path=str(tmp_path / "no-model")))
    with pytest.raises(ArmConfigError, match="set `origin:`"):  # neither a folder nor a Hub id
        no_origin.on_train_begin(args, state, None, model=model)
    elsewhere = ARMCallback(_config(stream_files, tiny_llama, watch={"dir": str(tmp_path)}))
    with pytest.raises(ArmConfigError, match="leave `watch.dir` out"):
        elsewhere.on_train_begin(args, state, None)


def test_other_ranks_do_nothing(tmp_path, tiny_llama, stream_files):
    args = SimpleNamespace(output_dir=str(tmp_path / "run"), save_strategy="steps")
    state = TrainerState(is_world_process_zero=False, global_step=2)
    callback = ARMCallback(_config(stream_files, tiny_llama))
    callback.on_train_begin(args, state, None)
    callback.on_save(args, state, None)
    callback.on_train_end(args, state, None)
    assert callback.session is None and not (tmp_path / "run").exists()


def test_fresh_training_into_a_streamed_folder_is_refused(callback_run, tiny_llama, stream_files):
    from mergekit_arm.errors import ArmError

    args = SimpleNamespace(output_dir=str(callback_run.output_dir), save_strategy="steps")
    callback = ARMCallback(_config(stream_files, tiny_llama))
    with pytest.raises(ArmError, match="already merged checkpoint-8 .* pass restart=True"):
        callback.on_train_begin(args, TrainerState(), None)
    assert callback.session is None
    # the lock was released: the same stream opens again (a resumed Trainer: a warning only)
    callback.on_train_begin(args, TrainerState(global_step=8), None)
    assert callback.session is None and callback.result.kept_step == callback_run.callback.result.kept_step
