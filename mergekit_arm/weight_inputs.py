"""The one mapping from a weight MergeKit hands the method to the statistics of its input.

Used by calibration (which entries it writes), ``arm-calibrate --check`` (which entries a
model needs), the kernel and the stream (which entries rotate a weight), so all four agree.

A weight ``W`` (``y = W x``) is rotated with the principal subspace of ``E[x x^T]`` of
its input ``x``. The statistics file keys that subspace ("entry") by the weight's name in
the *source* model (under MergeKit ``slices:`` the output name may differ):

* a 2-D linear weight ``(out, in)`` (or GPT-2 ``Conv1D`` ``(in, out)``, listed as
  ``transposed`` in the file): one entry, the weight's own name;
* a stacked-experts tensor ``(E, out, in)`` (transformers 5 / MergeKit 0.1.5 read
  Mixtral / Qwen3-MoE experts as ``mlp.experts.gate_up_proj`` and ``mlp.experts.down_proj``):
  one entry per expert, :func:`expert_entry` ``(name, e)``, measured on the tokens the
  router sends to expert ``e`` (docs/method.md, "Mixture-of-experts");
* everything else (1-D norms and biases, 2-D weights the file lists as no linear map, e.g.
  untied input embeddings): no entry, the plain step;
* a tied input embedding (the file's ``tied_weights``): the head's entry, since the
  matrix is the head's weight.

A weight the checkpoint stores under another name than transformers 5 loads it as (GPT-NeoX
``embed_out.weight`` is ``lm_head.weight``) needs nothing here: calibration records the
checkpoint name as an alias of the runtime entry (``calibration/renames.py``), so either
name is its own entry.

The MoE router (``mlp.gate.weight``, ``(E, hidden)``, not an ``nn.Linear`` in
transformers 5) is a 2-D linear map of the MoE block input and has its own entry.
"""

from __future__ import annotations

import re
from collections.abc import Container, Mapping, Sequence
from dataclasses import dataclass

import torch

_EXPERT_ENTRY = re.compile(r"^(?P<name>.+)\[(?P<expert>\d+)\]$")


def expert_entry(name: str, expert: int) -> str:
    """Statistics entry of expert ``expert`` of a stacked weight: ``f"{name}[{expert}]"``."""
    return f"{name}[{int(expert)}]"


def parse_entry(entry: str) -> tuple[str, int | None]:
    """``(weight name, expert)`` of a statistics entry; ``expert`` is None for a 2-D weight."""
    match = _EXPERT_ENTRY.match(entry)
    if match is None:
        return entry, None
    return match["name"], int(match["expert"])


@dataclass(frozen=True)
class WeightInput:
    """The statistics entries of the input(s) that one weight MergeKit hands the method acts on."""

    name: str  # the weight's name in its SOURCE model (== statistics key)
    entries: tuple[str, ...]  # (name,) for a 2-D weight, expert_entry(name, e) per expert
    stacked: bool  # a 3-D stacked-experts tensor (E, out, in)

    def matrix(self, tensor: torch.Tensor, index: int) -> torch.Tensor:
        """The 2-D matrix that entry ``index`` belongs to: the tensor itself or expert ``index``."""
        if not self.stacked:
            return tensor
        return tensor[index]

    def matrices(self, tensor: torch.Tensor) -> list[tuple[str, torch.Tensor]]:
        """``(entry, 2-D matrix)`` for every entry of this weight (views, no copies)."""
        if self.stacked and tensor.ndim != 3:
            raise ValueError(f"{self.name}: expected a stacked (E, out, in) tensor, got {tuple(tensor.shape)}")
        if self.stacked and tensor.shape[0] != len(self.entries):
            raise ValueError(f"{self.name}: {tensor.shape[0]} experts, {len(self.entries)} entries")
        return [(entry, self.matrix(tensor, i)) for i, entry in enumerate(self.entries)]


def stacked_input(name: str, num_experts: int) -> WeightInput:
    """The :class:`WeightInput` of a stacked-experts weight with ``num_experts`` experts."""
    return WeightInput(name, tuple(expert_entry(name, e) for e in range(num_experts)), True)


def weight_input(
    source_name: str,
    shape: Sequence[int],
    *,
    not_linear: Container[str] = frozenset(),
    have_statistics: bool = True,
    vocabulary_axis: int | None = None,
    tied: Mapping[str, str] | None = None,
) -> WeightInput | None:
    """The entries that rotate weight ``source_name`` of ``shape``; None: not a linear map of
    ours (the plain step).

    ``not_linear``: the 2-D weights the statistics files list as no linear map
    (``other_2d_weights``: embeddings). Without a file to ask (``have_statistics=False``) a
    2-D weight with a vocabulary axis (MergeKit's ``vocabulary_axis``) is taken for an
    embedding. (``lm_head`` has one and is a linear map: calibration measures its input.)

    ``tied``: the files' ``tied_weights`` (a tied input embedding -> the head's entry). A
    tied matrix is one linear map, the head acting on the final hidden states, under every
    name it is handed (``model.embed_tokens.weight`` by ``mergekit-yaml``, also
    ``lm_head.weight`` by a state dict): its entry is the head's (docs/method.md, "Tied
    embeddings"), so every path rotates it alike.
    """
    ndim = len(shape)
    if ndim == 3:
        return stacked_input(source_name, int(shape[0]))
    if ndim != 2:
        return None
    if tied and source_name in tied:
        return WeightInput(source_name, (tied[source_name],), False)
    if have_statistics:
        if source_name in not_linear:
            return None
    elif vocabulary_axis is not None:
        return None
    return WeightInput(source_name, (source_name,), False)


__all__ = [
    "WeightInput",
    "expert_entry",
    "parse_entry",
    "stacked_input",
    "weight_input",
]
