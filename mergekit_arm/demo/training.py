"""The demo's fine-tuning: a plain ``transformers.Trainer`` run on the CPU.

AdamW, linear warmup then cosine decay to zero (transformers' ``cosine`` schedule),
gradient norm clipped to 1, causal-LM loss on every token but padding. With
``save_steps`` the Trainer writes its ordinary ``checkpoint-{k}`` folders (model,
tokenizer, optimizer and scheduler state, ``trainer_state.json``).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from datasets import Dataset
from transformers import PrinterCallback, Trainer, TrainingArguments

from mergekit_arm.demo.runtime import preserved_rng, quiet_runtime
from mergekit_arm.demo.tiny_models import load_model_dir
from mergekit_arm.demo.tokenizer import encode_texts
from mergekit_arm.evaluation import loss_batches

DEMO_MAX_LENGTH = 64


class PadRight:
    """Data collator: right-pad ``input_ids``; labels are the ids, ``-100`` on padding
    (the batches of :func:`mergekit_arm.evaluation.loss_batches`)."""

    def __init__(self, pad_id: int) -> None:
        self.pad_id = pad_id

    def __call__(self, features: list[dict]) -> dict:
        (batch,) = loss_batches([f["input_ids"] for f in features], len(features), self.pad_id)
        return {"input_ids": batch.input_ids, "attention_mask": batch.attention_mask,
                "labels": batch.labels}


def fine_tune(
    model_path: str | os.PathLike,
    out_dir: str | os.PathLike,
    texts: Sequence[str],
    steps: int,
    learning_rate: float = 3e-3,
    batch_size: int = 8,
    max_length: int = DEMO_MAX_LENGTH,
    save_steps: int | None = None,
    warmup_steps: int | None = None,
    seed: int = 0,
    num_threads: int | None = None,
) -> dict[int, Path]:
    """Train the saved model on ``texts`` for ``steps`` optimizer steps with ``Trainer``.

    With ``save_steps``, returns ``{k: out_dir/checkpoint-k}`` for every checkpoint the
    Trainer wrote (every ``save_steps`` steps and at the last step); without, the final
    model is saved in ``out_dir`` itself and ``{steps: out_dir}`` is returned.
    ``warmup_steps`` defaults to a tenth of ``steps``. Weights are trained and saved in
    float32. The run is seeded by ``seed`` (initial data order included) and leaves the
    global RNGs as they were: same seed, same torch build and thread count, same bits.
    ``num_threads`` sets torch's thread count for the run only (``None``: leave it).
    """
    if steps < 1:
        raise ValueError("steps must be at least 1")
    if save_steps is not None and not 1 <= save_steps <= steps:
        raise ValueError(f"save_steps must be in 1..{steps}, got {save_steps}")
    if not texts:
        raise ValueError("fine_tune needs at least one text")
    out_dir = Path(out_dir)
    model, tokenizer = load_model_dir(model_path)
    data = Dataset.from_dict({"input_ids": encode_texts(tokenizer, list(texts), max_length)})
    args = TrainingArguments(
        output_dir=str(out_dir),
        max_steps=steps,
        per_device_train_batch_size=batch_size,
        learning_rate=learning_rate,
        lr_scheduler_type="cosine",
        warmup_steps=max(1, steps // 10) if warmup_steps is None else warmup_steps,
        weight_decay=0.0,
        max_grad_norm=1.0,
        optim="adamw_torch",
        save_strategy="steps" if save_steps else "no",
        save_steps=save_steps or steps,
        logging_strategy="no",
        report_to=[],
        disable_tqdm=True,
        log_level="error",
        use_cpu=True,
        dataloader_pin_memory=False,
        seed=seed,
        data_seed=seed,
    )
    with preserved_rng(), quiet_runtime(num_threads):
        trainer = Trainer(model=model, args=args, train_dataset=data,
                          data_collator=PadRight(tokenizer.pad_token_id),
                          processing_class=tokenizer)
        trainer.remove_callback(PrinterCallback)  # no metrics dict printed at the end
        trainer.train()
        if not save_steps:
            trainer.save_model(str(out_dir))
            return {steps: out_dir}
    found = {int(p.name.rsplit("-", 1)[1]): p for p in out_dir.glob("checkpoint-*")
             if p.name.rsplit("-", 1)[1].isdigit()}
    return dict(sorted(found.items()))


__all__ = ["DEMO_MAX_LENGTH", "PadRight", "fine_tune"]
