"""Held-out loss of a saved demo model, through :mod:`mergekit_arm.evaluation`."""

from __future__ import annotations

import os
from collections.abc import Sequence

from mergekit_arm.demo.runtime import quiet_runtime
from mergekit_arm.demo.tiny_models import load_model_dir
from mergekit_arm.demo.tokenizer import encode_texts
from mergekit_arm.demo.training import DEMO_MAX_LENGTH
from mergekit_arm.evaluation import heldout_loss, loss_batches


def saved_model_loss(
    model_path: str | os.PathLike,
    texts: Sequence[str],
    max_length: int = DEMO_MAX_LENGTH,
    batch_size: int = 8,
    num_threads: int | None = None,
) -> float:
    """:func:`~mergekit_arm.evaluation.heldout_loss` of the saved model on ``texts``
    (each followed by eos and truncated to ``max_length`` tokens): nats per predicted token."""
    model, tokenizer = load_model_dir(model_path)
    batches = loss_batches(encode_texts(tokenizer, texts, max_length), batch_size,
                           tokenizer.pad_token_id)
    with quiet_runtime(num_threads):
        return heldout_loss(model, batches)


__all__ = ["saved_model_loss"]
