"""The model's own limits, checked before any forward: positions, vocabulary, and the rank
the calibration tokens support.

* :func:`effective_max_length`: ``--max-length`` clamped to the positions the config states
  (``max_position_embeddings``, GPT-2's ``n_positions``, ...), with a warning; a model whose
  config states none (ALiBi, some rotary models) is not clamped.
* :func:`check_token_ids`: refuses ids that the input embedding has no row for (a
  ``--tokenizer`` with a larger vocabulary than the model's) before the forward fails with
  ``IndexError: index out of range in self``.
* :func:`report_supported_ranks`: warns when an entry's tokens support fewer directions
  than ``--rank`` (:func:`~mergekit_arm.rotation.supported_rank`) and returns the fewest.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

import torch

from mergekit_arm.errors import CalibrationError
from mergekit_arm.rotation import SUPPORTED_EIGENVALUE_FLOOR
from mergekit_arm.statistics import LayerStatistics

LOG = logging.getLogger(__name__)

#: Config fields that state how many positions a model embeds, in the order they are read.
POSITION_FIELDS = ("max_position_embeddings", "n_positions", "max_sequence_length",
                   "max_seq_len", "seq_length", "n_ctx")


def _text_config(config):
    get = getattr(config, "get_text_config", None)
    return get() if callable(get) else config


def position_limit(config) -> tuple[int, str] | None:
    """``(limit, field)``: the first of :data:`POSITION_FIELDS` the (text) config sets to a
    positive integer, ``field`` as config.json names it (GPT-2: ``n_positions``); None when
    it states no limit."""
    text = _text_config(config)
    for field in POSITION_FIELDS:
        value = getattr(text, field, None)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value, getattr(text, "attribute_map", {}).get(field, field)  # as config.json
    return None


def effective_max_length(max_length: int, config, longest: int) -> int:
    """``min(max_length, position limit)``; a warning naming both numbers when it cuts a text
    (``longest``: tokens of the longest text at ``max_length``), else a debug line."""
    stated = position_limit(config)
    if stated is None or max_length <= stated[0]:
        return max_length
    limit, field = stated
    log = LOG.warning if longest > limit else LOG.debug
    log("max_length %d is more than the model's %d positions (config %s = %d): calibrating "
        "with max_length %d (longer texts are cut there), which the statistics file records",
        max_length, limit, field, limit, limit)
    return limit


def embedding_rows(model: torch.nn.Module) -> int | None:
    """Rows of the model's input embedding (its ``vocab_size`` when it has no module)."""
    get = getattr(model, "get_input_embeddings", None)
    try:
        embedding = get() if callable(get) else None
    except (AttributeError, NotImplementedError):
        embedding = None
    rows = getattr(embedding, "num_embeddings", None)
    if rows is None and getattr(embedding, "weight", None) is not None and embedding.weight.ndim == 2:
        rows = int(embedding.weight.shape[0])
    if rows is None:
        rows = getattr(_text_config(getattr(model, "config", None)), "vocab_size", None)
    return int(rows) if isinstance(rows, int) else None


def check_token_ids(token_lists: Sequence[Sequence[int]], rows: int | None, tokenizer_size: int,
                    tokenizer_option: str | None, *, given: bool = False) -> None:
    """Refuse token ids that the input embedding (``rows`` rows) has no row for.

    With ``--tokenizer`` (``tokenizer_option``) a vocabulary larger than ``rows`` is refused
    even when these texts stay below it: it is not the model's tokenizer. The model's own
    tokenizer, or one ``given`` with a loaded model (``arm-stream``), is refused only when
    the ids of the texts exceed the embedding.
    """
    if rows is None:
        return
    largest = max((max(ids) for ids in token_lists if ids), default=-1)
    if largest < rows and (tokenizer_option is None or tokenizer_size <= rows):
        return
    if tokenizer_option:
        what = f"the tokenizer {tokenizer_option} (--tokenizer)"
        fix = ("Use the model's own tokenizer: leave out --tokenizer, or pass the tokenizer "
               "the model was trained with")
    elif given:
        what = "the tokenizer given with the model"
        fix = ("Use the model's own tokenizer (arm-stream: the config's `tokenizer:`, by "
               "default the origin's folder)")
    else:
        what = "the model folder's own tokenizer"
        fix = ("The checkpoint's tokenizer and embedding disagree: resize the embedding "
               "(model.resize_token_embeddings) or pass the tokenizer the model was trained "
               "with as --tokenizer")
    raise CalibrationError(
        f"{what} has {tokenizer_size} tokens and gives ids up to {largest} on the calibration "
        f"text, but the model's input embedding has {rows} rows (ids 0..{rows - 1}); ids beyond "
        f"it would fail inside the forward ('index out of range'). {fix}"
    )


def pad_id_within(pad_id: int, rows: int | None) -> int:
    """``pad_id``, or 0 when the embedding has no row for it: padding is masked out of the
    statistics and, on the right of causal attention, never seen by the real tokens."""
    return pad_id if rows is None or 0 <= pad_id < rows else 0


def report_supported_ranks(layers: Mapping[str, LayerStatistics], rank: int) -> int | None:
    """The fewest directions any entry supports; a warning, naming the tokens behind it, when
    a merge at some rank up to ``rank`` would be capped for an entry
    (:func:`~mergekit_arm.rotation.cap_to_supported`: ``supported < min(rank, width - 1)``;
    one short of the width, as a bias-free LayerNorm leaves it, caps nothing). None: no entries."""
    if not layers:
        return None
    short = {name: layer for name, layer in layers.items()
             if layer.supported_rank < min(rank, layer.in_features - 1)}
    fewest = min(layer.supported_rank for layer in layers.values())
    if short:
        name, layer = min(short.items(), key=lambda item: item[1].supported_rank)
        tokens = layer.tokens
        cause = (f"only {tokens} tokens reached it" if tokens is not None and tokens < min(
            rank, layer.in_features) else "its inputs span fewer directions")
        LOG.warning(
            "%d of %d statistics entries support fewer directions than --rank %d (eigenvalues "
            "above %g of the largest, at most the tokens behind the entry); the fewest: %s "
            "supports %d of %d (%s). The file records supported_rank %d; a merge with a larger "
            "`rank` caps each such weight to its supported rank. Calibrate on more text "
            "(--samples, longer texts) for more", len(short), len(layers), rank,
            SUPPORTED_EIGENVALUE_FLOOR, name,
            layer.supported_rank, min(rank, layer.in_features), cause, fewest)
    return fewest


__all__ = ["POSITION_FIELDS", "check_token_ids", "effective_max_length", "embedding_rows",
           "pad_id_within", "position_limit", "report_supported_ranks"]
