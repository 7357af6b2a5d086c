"""ARMCallback(stop_training=True): the Trainer stops once the stream's patience has run out.

The tiny Llama trains with a constant rate of 3e-2 for up to 16 steps, saving every 2:
the stream's held-out loss improves up to step 4 (checkpoint-8) and not at step 5
(checkpoint-10), so with ``patience: 1`` training stops at step 10 of 16.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
from datasets import Dataset
from transformers import PrinterCallback, Trainer, TrainingArguments

from mergekit_arm.demo.tiny_models import load_model_dir
from mergekit_arm.demo.tokenizer import encode_texts
from mergekit_arm.demo.training import PadRight
from mergekit_arm.errors import ArmConfigError
from mergekit_arm.integrations.early_stop import saved_compute
from mergekit_arm.integrations.transformers import ARMCallback
from mergekit_arm.stream.loop import patience_left
from tests.test_callback import (  # noqa: F401 - stream_files is a fixture
    StopAt,
    _assert_same_weights,
    _compared,
    _config,
    _trajectory,
    stream_files,
)

ASKED, SAVE_STEPS, STOPPED_AT = 16, 2, 10

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _train(base: Path, output_dir: Path, texts, callbacks, resume=None) -> Trainer:
    model, tokenizer = load_model_dir(base)
    data = Dataset.from_dict({"input_ids": encode_texts(tokenizer, list(texts), 48)})
    args = TrainingArguments(
        output_dir=str(output_dir), max_steps=ASKED, per_device_train_batch_size=4,
        learning_rate=3e-2, lr_scheduler_type="constant", save_strategy="steps",
        save_steps=SAVE_STEPS, logging_steps=1, report_to=[], disable_tqdm=True,
        log_level="error", use_cpu=True, dataloader_pin_memory=False, seed=0, data_seed=0,
    )
    trainer = Trainer(model=model, args=args, train_dataset=data,
                      data_collator=PadRight(tokenizer.pad_token_id),
                      processing_class=tokenizer, callbacks=list(callbacks))
    trainer.remove_callback(PrinterCallback)
    trainer.train(resume_from_checkpoint=None if resume is None else str(resume))
    return trainer


@pytest.fixture(scope="module")
def stopped_run(tmp_path_factory, tiny_llama, math_texts, stream_files):  # noqa: F811
    output_dir = tmp_path_factory.mktemp("stopped") / "run"
    config = _config(stream_files, tiny_llama, patience=1)
    callback = ARMCallback(config, stop_training=True)
    trainer = _train(tiny_llama, output_dir, math_texts[:24], [callback])
    return SimpleNamespace(output_dir=output_dir, out=output_dir / "arm-stream", config=config,
                           callback=callback, trainer=trainer)


def test_training_stops_when_patience_runs_out(stopped_run):
    run = stopped_run
    assert run.trainer.state.global_step == STOPPED_AT  # not the 16 steps asked
    assert sorted(int(p.name.split("-")[1]) for p in run.output_dir.glob("checkpoint-*")) == [
        *range(SAVE_STEPS, STOPPED_AT + 1, SAVE_STEPS)]
    result = run.callback.result
    records = result.records
    # patience (1) ran out at the last merged save and not before
    assert all(patience_left(1, result.start_loss, records[:k]) for k in range(len(records)))
    assert not patience_left(1, result.start_loss, records)
    assert records[-1]["to"][0]["model"] == str(run.output_dir / f"checkpoint-{STOPPED_AT}")
    # the saved compute: on the callback, on the last record, in both trajectory files
    field = {"steps_trained": STOPPED_AT, "steps_asked": ASKED, "fraction_saved": 0.375}
    assert run.callback.training_stop == field == records[-1]["training_stop"]
    for trajectory in (run.out / "trajectory.jsonl", result.model / "trajectory.jsonl"):
        lines = [json.loads(line) for line in trajectory.read_text().splitlines()]
        assert lines[-1]["training_stop"] == field
        assert all("training_stop" not in line for line in lines[:-1])
    # the kept model is the best step, as without the stop
    assert result.kept_step == min(records, key=lambda r: r["val_loss"])["step"] < len(records)
    assert json.loads((run.out / ".arm-stream" / "state.json").read_text())["status"] == "finished"


def test_resumed_trainer_honours_the_stop(tmp_path, tiny_llama, math_texts, stopped_run):
    """Killed at the save that exhausts patience (before the stream took it): the resumed
    Trainer's stream catches up on it, and training stops after one step; resumed again,
    the ended stream stops it at once too."""
    output_dir = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        _train(tiny_llama, output_dir, math_texts[:24],
               [StopAt(STOPPED_AT), ARMCallback(stopped_run.config, stop_training=True)])
    callback = ARMCallback(stopped_run.config, stop_training=True)
    trainer = _train(tiny_llama, output_dir, math_texts[:24], [callback],
                     resume=output_dir / f"checkpoint-{STOPPED_AT}")
    # the Trainer runs one optimizer step before it first reads should_training_stop
    assert trainer.state.global_step == STOPPED_AT + 1
    assert sorted(callback.step_seconds) == [STOPPED_AT]
    assert _compared(callback.result.records) == _compared(stopped_run.callback.result.records)
    assert callback.training_stop == saved_compute(STOPPED_AT + 1, ASKED)
    _assert_same_weights(callback.result.model, stopped_run.callback.result.model)
    # resumed once more: the stream has ended (patience), so training stops at once again
    before = _trajectory(output_dir / "arm-stream")
    again = ARMCallback(stopped_run.config, stop_training=True)
    trainer = _train(tiny_llama, output_dir, math_texts[:24], [again],
                     resume=output_dir / f"checkpoint-{STOPPED_AT}")
    assert trainer.state.global_step == STOPPED_AT + 1 and not again.step_seconds
    assert again.training_stop == saved_compute(STOPPED_AT + 1, ASKED)
    assert _trajectory(output_dir / "arm-stream") == before  # the ended stream is untouched
    _assert_same_weights(callback.result.model, stopped_run.callback.result.model)


def test_stop_training_needs_patience(tiny_llama, stream_files):  # noqa: F811
    with pytest.raises(ArmConfigError, match="stop_training=True .* sets no `patience`"):
        ARMCallback(_config(stream_files, tiny_llama), stop_training=True)
    ARMCallback(_config(stream_files, tiny_llama, patience=2), stop_training=True)


@pytest.mark.parametrize(("trained", "asked", "saved"), [(10, 16, 0.375), (16, 16, 0.0),
                                                          (3, 0, 0.0), (1, 3, 0.6667)])
def test_saved_compute(trained, asked, saved):
    assert saved_compute(trained, asked)["fraction_saved"] == saved
