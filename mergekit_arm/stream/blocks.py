"""Per-block step sizes: one ``eta_g`` per group of tensors, by coordinate search.

The groups are defined by MergeKit ``filter`` lists, so the replay YAML resolves
exactly the same rate per tensor as the stream: MergeKit 0.1.5 gives a tensor the value
of the *first* condition whose ``filter`` is a substring of its name (a condition
without ``filter`` matches every tensor), and :func:`tensor_group` applies that rule.

* ``groups: kind``: ``embed_tokens`` and ``lm_head`` (embeddings+head), ``self_attn``
  (attention), ``mlp``, everything else (norms: other);
* ``groups: depth``: decoder layer ``i`` of ``n`` (``layers.i.``) in quarter
  ``floor(4 i / n) + 1``; everything outside the layers (embeddings, head, final norm).

Search (:func:`block_search`): start with every ``eta_g = eta`` (the step's rate), then
for each group in order try ``eta_g = m * eta`` for every multiplier ``m`` (the others
fixed at their current values) and keep a try only when it lowers the selection loss;
``sweeps`` passes. ``W' = W + sum_g eta_g * R(d)_g`` is one ARM merge with a per-tensor
``learning_rate``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from mergekit_arm.errors import NonFiniteError
from mergekit_arm.stream.recipe_config import BlockSearchConfig
from mergekit_arm.stream.step import Leg, Score, StateDict, merge_candidate

Filters = list[tuple[str | None, str]]  # (filter substring or None = every tensor, group)

_KIND_FILTERS: Filters = [("embed_tokens", "embeddings+head"), ("lm_head", "embeddings+head"),
                          ("self_attn", "attention"), ("mlp", "mlp"), (None, "other")]
_LAYER = re.compile(r"(?:^|\.)layers\.(\d+)\.")


def group_filters(names: Sequence[str], groups: str) -> Filters:
    """The ordered MergeKit filters that define the groups of ``names``."""
    if groups == "kind":
        return list(_KIND_FILTERS)
    if groups != "depth":
        raise ValueError(f"unknown block groups {groups!r}; use kind or depth")
    layers = sorted({int(m.group(1)) for name in names if (m := _LAYER.search(name))})
    n = len(layers)
    filters: Filters = [(f"layers.{i}.", f"layers q{4 * k // n + 1}")
                        for k, i in enumerate(layers)]
    return filters + [(None, "embeddings+head+norms")]


def tensor_group(name: str, filters: Filters) -> str:
    """The group of ``name``: the first filter that is a substring (MergeKit's rule)."""
    for pattern, group in filters:
        if pattern is None or pattern == "*" or pattern in name:
            return group
    raise ValueError(f"no block group matches {name}")


def group_names(names: Sequence[str], filters: Filters) -> list[str]:
    """The groups that hold at least one of ``names``, in filter order."""
    used = {tensor_group(name, filters) for name in names}
    return [g for g in dict.fromkeys(group for _, group in filters) if g in used]


def tensor_rates(names: Sequence[str], filters: Filters,
                 rates: dict[str, float]) -> dict[str, float]:
    """``eta`` of every tensor name from the rates of the groups."""
    return {name: float(rates[tensor_group(name, filters)]) for name in names}


def filter_list(filters: Filters, rates: dict[str, float]) -> list[dict[str, Any]]:
    """The replay YAML's ``learning_rate: [{filter: ..., value: ...}, ..., {value: ...}]``
    (filters of groups without tensors are dropped; the catch-all comes last)."""
    out = []
    for pattern, group in filters:
        if group not in rates:
            continue
        out.append({"value": rates[group]} if pattern is None else
                   {"filter": pattern, "value": rates[group]})
    return out


@dataclass
class BlockSearch:
    """The searched per-group rates, the selection loss and weights they give, every try."""

    rates: dict[str, float]
    loss: float
    weights: dict[str, torch.Tensor] | None = field(default=None, repr=False)
    tries: list[dict[str, Any]] = field(default_factory=list)


def block_search(
    current: StateDict,
    current_statistics: Path | None,
    leg: Leg,
    rate: float,
    parameters: dict[str, Any],
    search: BlockSearchConfig,
    score: Score,
    start_loss: float,
    start_weights: dict[str, torch.Tensor],
    written_dtype: torch.dtype = torch.float32,
) -> BlockSearch:
    """Coordinate search of ``eta_g`` from ``eta_g = rate`` (whose merge is
    ``start_weights`` with selection loss ``start_loss``); see the module docstring. A try
    that is not finite in ``written_dtype`` is recorded with its error and never kept."""
    names = list(current)
    filters = group_filters(names, search.groups)
    rates = dict.fromkeys(group_names(names, filters), float(rate))
    best = BlockSearch(dict(rates), float(start_loss), start_weights)
    for sweep in range(search.sweeps):
        for group in rates:
            for multiplier in search.multipliers:
                value = float(multiplier) * float(rate)
                if value == best.rates[group]:
                    continue
                trial = best.rates | {group: value}
                entry: dict[str, Any] = {"sweep": sweep + 1, "group": group,
                                         "learning_rate": value, "loss": None}
                best.tries.append(entry)
                try:
                    merged = merge_candidate(current, current_statistics, leg,
                                             tensor_rates(names, filters, trial), parameters,
                                             written_dtype)
                except NonFiniteError as error:
                    entry["error"] = str(error)
                    continue
                loss = float(score(merged))
                if not math.isfinite(loss):
                    entry["error"] = f"held-out loss is {loss}"
                    continue
                entry["loss"] = loss
                if loss < best.loss:
                    best.rates, best.loss, best.weights = trial, loss, merged
                del merged
    return best


__all__ = ["BlockSearch", "Filters", "block_search", "filter_list", "group_filters",
           "group_names", "tensor_group", "tensor_rates"]
