"""Fine-tune the demo model with ``transformers.Trainer`` and stream ARM merges at every save.

    python examples/train_with_arm_callback.py            # CPU, about a minute
    python examples/train_with_arm_callback.py --lora     # a PEFT LoRA run instead

Builds the quick-start models (``arm-demo-models ./arm-demo``) if they are missing, then
fine-tunes ``./arm-demo/models/base`` on the demo's math texts for 40 steps, saving a
checkpoint every 10 steps. :class:`~mergekit_arm.integrations.transformers.ARMCallback`
(configured by ``examples/arm-callback.yml``) merges each checkpoint as the next stream
step when the Trainer has written it; at the end of training
``./arm-demo/callback-run/arm-stream/model`` is the kept model (the lowest held-out loss),
next to ``trajectory.jsonl``, ``trajectory.png`` and the replay YAMLs in ``steps/``.
Every run starts over (training and stream) in ``./arm-demo/callback-run``.

``--lora`` trains a PEFT LoRA adapter (rank 8 on every linear layer) instead of the full
model: at each save the callback folds the adapter into a CPU copy of the base, and that
full model is the stream's checkpoint; the script prints the folding time and the
process's peak memory above its level before each save.

``--stop-training`` stops training once the stream's held-out loss has not improved for
``--patience`` saves (``ARMCallback(..., stop_training=True)``; ``--steps`` is then an
upper bound) and prints the steps trained of those asked; ``trajectory.jsonl`` records
them as ``training_stop`` on its last step::

    python examples/train_with_arm_callback.py --stop-training --steps 600 --save-steps 20

(measured: stopped at step 300 of 600, the held-out loss having risen for 2 saves after
checkpoint-260; docs/streaming.md).

``--config PATH`` picks the stream config; ``examples/arm-callback-average.yml`` keeps the
running average of the saves (``watch.legs: toward``, ``schedule: {kind: average}``) and
stops training when the average stops improving::

    python examples/train_with_arm_callback.py --stop-training --config examples/arm-callback-average.yml
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import threading
import time
from pathlib import Path

import torch
from datasets import Dataset
from transformers import PrinterCallback, Trainer, TrainerCallback, TrainingArguments
from transformers.utils import logging as hf_logging

from mergekit_arm._yaml import load_yaml_file
from mergekit_arm.demo import make_demo
from mergekit_arm.demo.corpus import demo_sft_texts
from mergekit_arm.demo.tiny_models import load_model_dir
from mergekit_arm.demo.tokenizer import encode_texts
from mergekit_arm.demo.training import DEMO_MAX_LENGTH, PadRight
from mergekit_arm.integrations.transformers import ARMCallback

REPO = Path(__file__).resolve().parent.parent


class SaveMemory:
    """Peak resident memory of the process during each save, above its level before it
    (sampled every 5 ms): ``start`` runs before ARMCallback's ``on_save``, ``stop`` after."""

    def __init__(self) -> None:
        import psutil

        self.process = psutil.Process()
        self.peaks: dict[int, float] = {}  # global step -> MiB
        self.start, self.stop = self._Start(self), self._Stop(self)

    def _sample(self, before: int, done: threading.Event, step: int) -> None:
        peak = before
        while not done.wait(0.005):
            peak = max(peak, self.process.memory_info().rss)
        self.peaks[step] = (max(peak, self.process.memory_info().rss) - before) / 2**20

    class _Start(TrainerCallback):
        def __init__(self, owner: SaveMemory) -> None:
            self.owner = owner

        def on_save(self, args, state, control, **kwargs):
            owner = self.owner
            owner.done = threading.Event()
            owner.thread = threading.Thread(target=owner._sample, daemon=True, args=(
                owner.process.memory_info().rss, owner.done, state.global_step))
            owner.thread.start()

    class _Stop(TrainerCallback):
        def __init__(self, owner: SaveMemory) -> None:
            self.owner = owner

        def on_save(self, args, state, control, **kwargs):
            self.owner.done.set()
            self.owner.thread.join()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", default="examples/arm-callback.yml",
                        help="the stream config (examples/arm-callback-average.yml: the "
                             "running average of the saves)")
    parser.add_argument("--steps", type=int, default=40, help="optimizer steps")
    parser.add_argument("--save-steps", type=int, default=10, help="steps between checkpoints")
    parser.add_argument("--lora", action="store_true", help="train a PEFT LoRA adapter")
    parser.add_argument("--stop-training", action="store_true",
                        help="stop training when merging stops helping (--steps: at most)")
    parser.add_argument("--patience", type=int, default=2,
                        help="with --stop-training, when the config sets no `patience`: saves "
                             "without a lower held-out loss before training stops")
    args = parser.parse_args()
    if Path(args.config).expanduser().is_file():  # relative to where it was run from
        args.config = str(Path(args.config).expanduser().resolve())
    os.chdir(REPO)  # the config's paths are relative to the repository root
    torch.set_num_threads(min(2, os.cpu_count() or 1))
    hf_logging.disable_progress_bar()  # the Trainer's per-save bars
    log = logging.getLogger("mergekit_arm.stream.callback")  # one line per save
    log.addHandler(logging.StreamHandler())
    log.setLevel(logging.INFO)

    started = time.perf_counter()
    paths = make_demo("./arm-demo")  # reuses complete folders
    output_dir = Path("./arm-demo/callback-run")
    shutil.rmtree(output_dir, ignore_errors=True)  # a fresh run (and stream) every time
    model, tokenizer = load_model_dir(paths["base"])
    if args.lora:
        import peft

        model = peft.get_peft_model(model, peft.LoraConfig(
            r=8, lora_alpha=16, target_modules="all-linear", task_type="CAUSAL_LM"))
    data = Dataset.from_dict(
        {"input_ids": encode_texts(tokenizer, demo_sft_texts(), DEMO_MAX_LENGTH)})
    training = TrainingArguments(
        output_dir=str(output_dir), max_steps=args.steps, per_device_train_batch_size=8,
        learning_rate=3e-3, lr_scheduler_type="cosine", warmup_steps=max(1, args.steps // 10),
        save_strategy="steps", save_steps=args.save_steps, logging_steps=args.save_steps,
        report_to=[], disable_tqdm=True, use_cpu=True, dataloader_pin_memory=False, seed=1,
    )
    config = args.config
    if args.stop_training:  # patience is what stops training: set it if the file has none
        config = load_yaml_file(args.config, "stream config")
        if isinstance(config, dict):
            config.setdefault("patience", args.patience)
    callback = ARMCallback(config, stop_training=args.stop_training)  # <output_dir>/arm-stream
    memory = SaveMemory()
    trainer = Trainer(model=model, args=training, train_dataset=data,
                      data_collator=PadRight(tokenizer.pad_token_id),
                      processing_class=tokenizer,
                      callbacks=[memory.start, callback, memory.stop])
    trainer.remove_callback(PrinterCallback)
    trainer.train()

    result = callback.result
    if result is None:
        raise SystemExit("the stream wrote no model (see the log above)")
    print(f"\ntraining + streaming took {time.perf_counter() - started:.0f} s; merge time per "
          f"save: {', '.join(f'{s:.1f}' for s in callback.step_seconds.values()) or '-'} s")
    if callback.fold_seconds:
        print("of which folding the adapter into the base: "
              f"{', '.join(f'{s:.2f}' for s in callback.fold_seconds.values())} s")
    print("peak memory above the level before each save: "
          f"{', '.join(f'{m:.0f}' for m in memory.peaks.values()) or '-'} MiB")
    print(f"held-out loss: base {result.start_loss:.4f}")
    for record in result.records:
        print(f"  step {record['step']} ({record['leg']}): eta {record['learning_rate']:g}, "
              f"held-out loss {record['val_loss']:.4f}" + ("  <- kept" if record["kept"] else ""))
    print(f"{result.model} is step {result.kept_step} (held-out loss {result.final_loss:.4f}); "
          f"see {result.out / 'trajectory.png'}")
    if args.stop_training:
        stop = callback.training_stop
        print(f"trained {trainer.state.global_step} of {args.steps} steps asked" + (
            f": stopped early, {100 * stop['fraction_saved']:.0f}% of the steps saved"
            if stop else ": the stream's patience never ran out"))


if __name__ == "__main__":
    main()
