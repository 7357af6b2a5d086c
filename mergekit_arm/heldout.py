"""Held-out texts as loss batches, shared by ``arm-stream`` and ``arm-choose``
(``quiet_transformers`` is re-exported from :mod:`mergekit_arm.quiet`).

Both commands score models on a section of held-out texts (a ``ValidationConfig``: texts
``offset .. offset + samples`` of ``data``); the loss itself is
:func:`mergekit_arm.evaluation.heldout_loss`. This module sits below ``stream`` and
``choose`` so neither imports the other for it.
"""

from __future__ import annotations

from typing import Any

import torch

from mergekit_arm.calibration import TextRole, load_calibration_texts, tokenize_texts
from mergekit_arm.calibration.limits import effective_max_length
from mergekit_arm.errors import ArmConfigError
from mergekit_arm.evaluation import LossBatch, loss_batches
from mergekit_arm.quiet import quiet_transformers


def heldout_batches(section: Any, name: str, tokenizer: Any, device: torch.device,
                    max_length: int, role: TextRole, model_config: Any = None) -> list[LossBatch]:
    """Loss batches of a held-out section (a ``ValidationConfig``: texts
    ``offset .. offset + samples`` of ``data``, ``max_length`` tokens unless it sets its own);
    ``name`` is the section's key in the messages, ``role`` names the file in them.

    With ``model_config`` the length is cut at the positions it states, as calibration
    cuts it (:func:`~mergekit_arm.calibration.limits.effective_max_length`): a text longer
    than the model's position table would end the forward in an ``IndexError``."""
    texts = load_calibration_texts(section.data, None, section.text_mode, role)[section.offset:]
    texts = texts[: section.samples]
    source = section.data or "the shipped corpus"
    if not texts:
        raise ArmConfigError(
            f"`{name}`: {source} has no texts after `{name}.offset` ({section.offset})"
        )
    length = section.max_length or max_length
    tokens = tokenize_texts(tokenizer, texts, length)
    if model_config is not None:
        cut = effective_max_length(length, model_config, max((len(t) for t in tokens), default=0))
        if cut < length:
            tokens = tokenize_texts(tokenizer, texts, cut)
    if sum(max(len(ids) - 1, 0) for ids in tokens) == 0:
        raise ArmConfigError(
            f"`{name}.data`: {source} yields no tokens to predict with this tokenizer "
            "(every text is shorter than 2 tokens); use longer held-out texts"
        )
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    return loss_batches(tokens, section.batch_size, pad, device=device)


__all__ = ["heldout_batches", "quiet_transformers"]
