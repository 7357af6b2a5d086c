"""The all-at-once pass: input hooks on the whole model, one forward per batch.

Every distinct linear input's ``in x in`` float32 accumulator stays alive until the end
(for a 7B Llama about 21 GB); :mod:`mergekit_arm.calibration.layer_pass` computes the
same statistics one decoder layer at a time.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress

import torch
from tqdm.auto import tqdm

from mergekit_arm.calibration.data import iter_batches
from mergekit_arm.calibration.eigen import finalise_moments
from mergekit_arm.calibration.layout import (
    StopForward,
    assemble_content,
    decoder_stack,
    linear_modules,
    require_every_layer_ran,
    resident_probe,
    stop_forward,
)
from mergekit_arm.calibration.moments import InputSecondMoments
from mergekit_arm.errors import CalibrationError
from mergekit_arm.statistics import StatisticsContent


@contextmanager
def skip_logits(model: torch.nn.Module) -> Iterator[None]:
    """For a decoder-stack layout (:func:`~mergekit_arm.calibration.layout.decoder_stack`),
    end each forward in a pre-hook of ``lm_head`` that runs after the input hooks: the
    model's own forward computes everything up to ``lm_head``'s input, and the logits (vocab
    x tokens, ~21% of SmolLM2-135M's forward) are never computed. Other layouts run in full."""
    stack = decoder_stack(model)
    if stack is None:
        yield
        return
    handle = stack.head.register_forward_pre_hook(stop_forward)  # after the input hooks
    try:
        yield
    finally:
        handle.remove()


def collect_statistics_all_at_once(
    model: torch.nn.Module,
    token_lists: Sequence[Sequence[int]],
    pad_id: int,
    rank: int = 64,
    batch_size: int = 8,
    progress: bool = True,
) -> tuple[StatisticsContent, dict[str, float]]:
    """Hook every linear of ``model``, run it over the token lists, eigendecompose at the end.

    Returns the statistics content (no file I/O) and the timings ``forward`` / ``eigen``.
    """
    modules = linear_modules(model)
    if not modules:
        raise CalibrationError("the model has no nn.Linear layers to calibrate")
    device = next(model.parameters()).device
    timings = {"forward": 0.0, "eigen": 0.0}
    moments = InputSecondMoments(modules)
    start = time.perf_counter()
    bar = tqdm(total=len(token_lists), unit="sample", desc="calibration", disable=not progress)
    with torch.inference_mode(), moments, skip_logits(model):
        for ids, mask in iter_batches(token_lists, batch_size, pad_id):
            moments.set_mask(mask)
            with suppress(StopForward):
                model(input_ids=ids.to(device), attention_mask=mask.to(device), use_cache=False)
            bar.update(ids.shape[0])
    bar.close()
    timings["forward"] = time.perf_counter() - start

    start = time.perf_counter()
    layers = finalise_moments(moments, rank)
    timings["eigen"] = time.perf_counter() - start

    require_every_layer_ran(modules, layers, moments.aliases)
    probes = {name: resident_probe(model, name) for name in modules}
    content = assemble_content(model, modules, layers, moments.aliases, probes)
    return content, timings


__all__ = ["collect_statistics_all_at_once", "skip_logits"]
