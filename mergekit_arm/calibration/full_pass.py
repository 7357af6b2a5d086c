"""The all-at-once pass: input hooks on the whole model, one forward per batch.

Every distinct linear input's ``in x in`` float32 accumulator stays alive until the end
(for a 7B Llama about 21 GB); :mod:`mergekit_arm.calibration.layer_pass` computes the
same statistics one decoder layer at a time.
"""

from __future__ import annotations

import time
from contextlib import suppress

import torch
from tqdm.auto import tqdm

from mergekit_arm.calibration.data import TokenBatches
from mergekit_arm.calibration.eigen import finalise_moments
from mergekit_arm.calibration.experts import expert_probes, experts_modules
from mergekit_arm.calibration.layout import (
    StopForward,
    assemble_content,
    linear_modules,
    resident_probe,
    skip_logits,
)
from mergekit_arm.calibration.moments import InputSecondMoments
from mergekit_arm.errors import CalibrationError
from mergekit_arm.statistics import StatisticsContent


def collect_statistics_all_at_once(
    model: torch.nn.Module,
    batches: TokenBatches,
    rank: int = 64,
    progress: bool = True,
) -> tuple[StatisticsContent, dict[str, float]]:
    """Hook every linear of ``model``, run it over the batches, eigendecompose at the end.

    Returns the statistics content (no file I/O) and the timings ``forward`` / ``eigen``.
    """
    modules = linear_modules(model)
    if not modules:
        raise CalibrationError("the model has no nn.Linear layers to calibrate")
    device = next(model.parameters()).device
    timings = {"forward": 0.0, "eigen": 0.0}
    experts = experts_modules(model)
    moments = InputSecondMoments(modules, experts)
    start = time.perf_counter()
    bar = tqdm(total=len(batches), unit="sample", desc="calibration", disable=not progress)
    with torch.inference_mode(), moments, skip_logits(model):
        for ids, mask in batches:
            moments.set_mask(mask)
            with suppress(StopForward):
                model(input_ids=ids.to(device), attention_mask=mask.to(device), use_cache=False)
            bar.update(ids.shape[0])
    bar.close()
    timings["forward"] = time.perf_counter() - start

    start = time.perf_counter()
    layers = finalise_moments(moments, rank)
    timings["eigen"] = time.perf_counter() - start

    probes = {name: resident_probe(model, name) for name in modules}
    probes.update(expert_probes(model, experts))
    content = assemble_content(model, modules, layers, moments.aliases, probes, experts,
                               moments.counts)
    return content, timings


__all__ = ["collect_statistics_all_at_once"]
