"""Second-moment accumulation: ``sum_t x_t x_t^T`` of every distinct linear input, in float32.

Forward pre-hooks (:class:`InputSecondMoments`) accumulate, over the non-padding tokens of
each batch, the lower block triangle of ``x^T x`` (row panels: ``(p + 1) / 2p`` of the flops
of the full product); :meth:`Accumulator.second_moment` completes it to
``E[x x^T] = (1/N) sum_t x_t x_t^T``. Linears fed the very same input tensor (q/k/v,
gate/up) are measured once and recorded as aliases.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from mergekit_arm.calibration.experts import expert_inputs
from mergekit_arm.errors import CalibrationError

#: ``x^T x`` is accumulated as row panels of its lower block triangle, one panel per
#: ``PANEL_WIDTH`` input features, at most ``MAX_PANELS``: ``(p + 1) / 2p`` of the flops of
#: the full product. Measured on one CPU thread (docs/performance.md): 8 panels cut the
#: accumulation of a 1536-wide input by ~37% and of a 576-wide one by ~32%; more panels
#: gain nothing (smaller matmuls), and below 64 features per panel the split does not pay.
PANEL_WIDTH = 64
MAX_PANELS = 8


def lower_panels(dim: int) -> list[tuple[int, int]]:
    """Row ranges ``[r0, r1)`` of the panels that cover the lower block triangle."""
    panels = min(MAX_PANELS, max(1, dim // PANEL_WIDTH))
    edges = [round(i * dim / panels) for i in range(panels + 1)]
    return list(zip(edges[:-1], edges[1:]))


def accumulate_lower_gram(total: torch.Tensor, x: torch.Tensor, panels: list[tuple[int, int]]) -> None:
    """``total[r0:r1, :r1] += x[:, r0:r1]^T x[:, :r1]`` per panel: the lower block triangle of
    ``x^T x`` (diagonal blocks in full); :func:`symmetrise_lower` completes it."""
    for r0, r1 in panels:
        total[r0:r1, :r1].addmm_(x[:, r0:r1].T, x[:, :r1])


def symmetrise_lower(total: torch.Tensor, panels: list[tuple[int, int]]) -> torch.Tensor:
    """Copy the lower off-diagonal blocks onto the upper ones, in place: ``x^T x`` in full."""
    for r0, r1 in panels[1:]:
        total[:r0, r0:r1].copy_(total[r0:r1, :r0].T)
    return total


def symmetrise_in_place(c: torch.Tensor) -> torch.Tensor:
    """``C <- (C + C^T) / 2`` in place, one row panel at a time (temporary: one panel)."""
    for r0, r1 in lower_panels(c.shape[0]):
        mean = c[r0:r1, :r1].add(c[:r1, r0:r1].T).mul_(0.5)
        c[r0:r1, :r1].copy_(mean)
        c[:r1, r0:r1].copy_(mean.T)
    return c


@dataclass
class Accumulator:
    """The running sum of one input's ``x x^T`` and the number of tokens in it."""

    total: torch.Tensor  # lower block triangle of sum_t x_t x_t^T, float32
    panels: list[tuple[int, int]]
    count: int = 0

    def second_moment(self) -> torch.Tensor:
        """``E[x x^T] = sum / count`` in full, computed in place (the accumulator is spent)."""
        return symmetrise_lower(self.total, self.panels).div_(self.count)


class InputSecondMoments:
    """Forward pre-hooks accumulating ``sum x x^T`` per distinct linear input.

    Call :meth:`set_mask` with the batch's attention mask before each forward so
    padding tokens are excluded. A module whose input is the very tensor object the
    previous hooked module received (q/k/v, gate/up) is recorded as an alias.
    """

    def __init__(self, modules: dict[str, tuple[torch.nn.Module, bool]],
                 experts: dict | None = None) -> None:
        self.modules = modules
        self.experts = experts or {}  # prefix -> calibration.experts.ExpertsModule
        self.accumulators: dict[str, Accumulator] = {}
        self.counts: dict[str, int] = {}  # tokens behind each entry (kept after finalising)
        self.aliases: dict[str, str] = {}
        self._mask: torch.Tensor | None = None
        self._last_input: torch.Tensor | None = None
        self._last_owner: str | None = None
        self._handles: list = []

    def __enter__(self) -> InputSecondMoments:
        for name, (module, _) in self.modules.items():
            self._handles.append(module.register_forward_pre_hook(self._hook(name)))
        for spec in self.experts.values():
            self._handles.append(spec.module.register_forward_pre_hook(
                self._experts_hook(spec), with_kwargs=True))
        return self

    def __exit__(self, *exc) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        self._last_input = None

    def set_mask(self, mask: torch.Tensor) -> None:
        self._mask = mask.bool()
        self._last_input = None

    def _select_tokens(self, x: torch.Tensor) -> torch.Tensor:
        mask = self._mask
        if mask is not None:
            if x.ndim == 3 and tuple(x.shape[:2]) == tuple(mask.shape):
                return x[mask.to(x.device)]
            if x.ndim == 2 and x.shape[0] == mask.numel():
                return x[mask.reshape(-1).to(x.device)]
        return x.reshape(-1, x.shape[-1])

    def _hook(self, name: str):
        def hook(module, args):
            if not args:
                return
            x = args[0]
            if x is self._last_input and self._last_owner is not None:
                owner = self._last_owner
                if self.aliases.setdefault(name, owner) != owner:
                    raise CalibrationError(f"input sharing of {name} changed between batches")
                return
            self._last_input, self._last_owner = x, name
            if name in self.aliases:
                raise CalibrationError(f"input sharing of {name} changed between batches")
            self.add(name, self._select_tokens(x.detach()))

        return hook

    def add(self, name: str, tokens: torch.Tensor) -> None:
        """Accumulate ``sum_t x_t x_t^T`` of the rows of ``tokens`` (T, in) into entry ``name``."""
        tokens = tokens.to(torch.float32)
        acc = self.accumulators.get(name)
        if acc is None:
            dim = tokens.shape[-1]
            with torch.inference_mode(False):  # a normal tensor: finalised in place later
                total = torch.zeros(dim, dim, dtype=torch.float32, device=tokens.device)
            acc = Accumulator(total, lower_panels(dim))
            self.accumulators[name] = acc
        accumulate_lower_gram(acc.total, tokens, acc.panels)
        acc.count += int(tokens.shape[0])
        self.counts[name] = acc.count

    def _experts_hook(self, spec):
        """Pre-hook of a stacked-experts module: each expert's inputs on its routed tokens
        (:func:`mergekit_arm.calibration.experts.expert_inputs`)."""
        def hook(module, args, kwargs):
            values = list(args) + [kwargs[k] for k in ("hidden_states", "top_k_index") if k in kwargs]
            if len(values) < 2:
                raise CalibrationError(f"{spec.up_name}: the experts were called without routing")
            hidden, top_k_index = values[0].detach(), values[1]
            mask = self._mask
            keep = None
            if mask is not None and hidden.shape[:-1].numel() == mask.numel():
                keep = mask.reshape(-1).to(hidden.device)
            hidden = hidden.reshape(-1, hidden.shape[-1])
            for entry, x in expert_inputs(spec, hidden, top_k_index, keep):
                self.add(entry, x)

        return hook


__all__ = [
    "MAX_PANELS",
    "PANEL_WIDTH",
    "Accumulator",
    "InputSecondMoments",
    "accumulate_lower_gram",
    "lower_panels",
    "symmetrise_in_place",
    "symmetrise_lower",
]
