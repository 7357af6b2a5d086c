"""Held-out loss: the one definition used by ``arm-stream``, the demo and the benchmarks.

The loss of a batch is the mean next-token cross-entropy over the positions whose label
is not ``-100`` (nats per predicted token): padding never counts, and with
``prompt_lengths`` only the response tokens count (response-only loss, as in SFT).
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F  # noqa: N812

from mergekit_arm.errors import ArmConfigError

IGNORE_INDEX = -100


@dataclass(frozen=True)
class LossBatch:
    """One padded batch: ``labels[i, t]`` is the token predicted at ``t`` (``-100``: not scored)."""

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    labels: torch.Tensor

    def to(self, device: torch.device | str) -> LossBatch:
        """The batch on ``device``."""
        return LossBatch(self.input_ids.to(device), self.attention_mask.to(device),
                         self.labels.to(device))

    @property
    def predicted_tokens(self) -> int:
        """Number of scored next-token predictions (labels after the first position)."""
        return int((self.labels[:, 1:] != IGNORE_INDEX).sum())


def loss_batches(
    token_ids: Sequence[Sequence[int]],
    batch_size: int,
    pad_id: int,
    prompt_lengths: Sequence[int] | None = None,
    device: torch.device | str = "cpu",
) -> list[LossBatch]:
    """Right-padded batches of ``token_ids`` (in the given order).

    Labels are the tokens themselves, ``-100`` on padding and, with ``prompt_lengths``,
    on the first ``prompt_lengths[i]`` tokens of text ``i`` (response-only loss).
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if prompt_lengths is not None and len(prompt_lengths) != len(token_ids):
        raise ValueError("prompt_lengths must have one entry per text")
    batches = []
    for start in range(0, len(token_ids), batch_size):
        rows = [list(ids) for ids in token_ids[start:start + batch_size]]
        width = max((len(ids) for ids in rows), default=0)
        if width == 0:
            continue
        ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        labels = torch.full((len(rows), width), IGNORE_INDEX, dtype=torch.long)
        for i, row in enumerate(rows):
            n = len(row)
            ids[i, :n] = torch.tensor(row, dtype=torch.long)
            mask[i, :n] = 1
            skip = 0 if prompt_lengths is None else min(int(prompt_lengths[start + i]), n)
            labels[i, skip:n] = ids[i, skip:n]
        batches.append(LossBatch(ids, mask, labels).to(device))
    return batches


@torch.inference_mode()
def heldout_loss(
    module: torch.nn.Module,
    batches: Sequence[LossBatch],
    parameters: dict[str, torch.Tensor] | None = None,
    autocast_dtype: torch.dtype | None = None,
) -> float:
    """Mean next-token loss ``sum CE / #scored`` over ``batches`` (float64 accumulation).

    With ``parameters`` the module runs with those tensors in place of its own
    (``torch.func.functional_call``), so a candidate is scored without loading it.
    ``autocast_dtype`` (e.g. ``torch.bfloat16``) runs the forward under autocast.
    """
    was_training = module.training
    module.eval()
    total = torch.zeros((), dtype=torch.float64)
    count = 0
    try:
        for batch in batches:
            kwargs = {"input_ids": batch.input_ids, "attention_mask": batch.attention_mask,
                      "use_cache": False}
            device_type = batch.input_ids.device.type
            autocast = (torch.autocast(device_type, dtype=autocast_dtype)
                        if autocast_dtype is not None else contextlib.nullcontext())
            with autocast:
                if parameters is None:
                    output = module(**kwargs)
                else:
                    output = torch.func.functional_call(
                        module, parameters, args=(), kwargs=kwargs, tie_weights=False,
                        strict=False,
                    )
            logits = output.logits[:, :-1, :].float()
            labels = batch.labels[:, 1:]
            loss = F.cross_entropy(
                logits.reshape(-1, logits.shape[-1]), labels.reshape(-1),
                ignore_index=IGNORE_INDEX, reduction="sum",
            )
            total += loss.double().cpu()
            count += int((labels != IGNORE_INDEX).sum())
    finally:
        module.train(was_training)
    if count == 0:
        raise ArmConfigError(
            "the held-out set yields no tokens to predict (every text is shorter than 2 "
            "tokens, or every token is a prompt token); use longer held-out texts"
        )
    return float(total / count)


__all__ = ["IGNORE_INDEX", "LossBatch", "heldout_loss", "loss_batches"]
