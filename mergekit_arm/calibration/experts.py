"""Mixture-of-experts calibration: the inputs of every expert and of the router.

transformers 5 stores the experts of a Mixtral / Qwen3-MoE style block as stacked
tensors (``experts.gate_up_proj`` ``(E, 2I, H)``, ``experts.down_proj`` ``(E, H, I)``) in
one module decorated by ``use_experts_implementation`` (attributes ``has_gate``,
``has_bias``, ``is_transposed``), called as ``experts(hidden (T, H), top_k_index (T, k),
top_k_weights (T, k))``; the router (``gate``, ``weight`` ``(E, H)``) is no ``nn.Linear``.

Measured (docs/method.md, "Mixture-of-experts"):

* router: ``E[x x^T]`` over every token of the MoE block input (its own entry);
* ``gate_up_proj`` of expert ``e``: over the tokens the router sends to ``e``
  (``x_t`` with ``e`` in ``top_k_index[t]``), entry ``expert_entry(name, e)``;
* ``down_proj`` of expert ``e``: over its input on those tokens,
  ``act(x W_gate^T) * (x W_up^T)`` (recomputed in the hook with the expert's own weights,
  whatever experts implementation the model's forward dispatches to).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from mergekit_arm.errors import CalibrationError
from mergekit_arm.statistics import weight_probe
from mergekit_arm.weight_inputs import expert_entry, stacked_input


@dataclass
class ExpertsModule:
    """One stacked-experts module and the names of its two weights."""

    module: torch.nn.Module
    up_name: str  # "<prefix>.gate_up_proj" (or "<prefix>.up_proj" without a gate)
    down_name: str  # "<prefix>.down_proj"
    num_experts: int

    def entries(self) -> list[str]:
        """Every statistics entry of this module (both weights, every expert)."""
        return [entry for name in (self.up_name, self.down_name)
                for entry in stacked_input(name, self.num_experts).entries]


def _is_experts(module: torch.nn.Module) -> bool:
    down = getattr(module, "down_proj", None)
    return (hasattr(module, "has_gate") and isinstance(down, torch.nn.Parameter)
            and down.ndim == 3)


def experts_modules(model: torch.nn.Module) -> dict[str, ExpertsModule]:
    """``prefix -> ExpertsModule`` for every stacked-experts module of ``model``."""
    found = {}
    for prefix, module in model.named_modules():
        if not _is_experts(module):
            continue
        if not getattr(module, "is_concatenated", True):
            raise CalibrationError(
                f"{prefix} stores its experts' gate and up projections interleaved; mergekit-arm "
                "measures only the concatenated [gate; up] layout (Mixtral, Qwen3-MoE); this "
                "architecture is not supported: merge it with another method"
            )
        up = "gate_up_proj" if module.has_gate else "up_proj"
        found[prefix] = ExpertsModule(module, f"{prefix}.{up}", f"{prefix}.down_proj",
                                      int(module.down_proj.shape[0]))
    return found


def router_modules(model: torch.nn.Module) -> dict[str, tuple[torch.nn.Module, bool]]:
    """``weight name -> (router, False)``: every childless sibling of an experts module
    holding a 2-D ``weight`` of ``num_experts`` rows that is not an ``nn.Linear`` (the
    transformers 5 routers); its input is the MoE block input of every token."""
    names = {id(m): n for n, m in model.named_modules()}
    found = {}
    for prefix, spec in experts_modules(model).items():
        parent_name = prefix.rpartition(".")[0]
        parent = model.get_submodule(parent_name) if parent_name else model
        for child in parent.children():
            weight = getattr(child, "weight", None)
            if (child is spec.module or isinstance(child, torch.nn.Linear)
                    or any(True for _ in child.children())
                    or not isinstance(weight, torch.nn.Parameter) or weight.ndim != 2
                    or weight.shape[0] != spec.num_experts):
                continue
            found[f"{names[id(child)]}.weight"] = (child, False)
    return found


def _expert_weight(module: torch.nn.Module, attr: str, expert: int) -> torch.Tensor:
    return getattr(module, attr)[expert]


def _linear(module: torch.nn.Module, x: torch.Tensor, attr: str, expert: int) -> torch.Tensor:
    """``x W_e^T (+ b_e)`` in the module's layout (``is_transposed``: ``W_e`` is ``(in, out)``)."""
    weight = _expert_weight(module, attr, expert)
    out = x @ weight if getattr(module, "is_transposed", False) else x @ weight.T
    if getattr(module, "has_bias", False):
        out = out + getattr(module, f"{attr}_bias")[expert]
    return out


def expert_inputs(spec: ExpertsModule, hidden: torch.Tensor, top_k_index: torch.Tensor,
                  keep: torch.Tensor | None):
    """Yield ``(entry, x)`` for the up and down projection inputs of every expert that got
    tokens: the routed rows of ``hidden`` and ``act(gate) * up`` on them."""
    module = spec.module
    up_attr = spec.up_name.rpartition(".")[2]
    routed = top_k_index.reshape(hidden.shape[0], -1)
    for e in range(spec.num_experts):
        rows = (routed == e).any(dim=-1)
        if keep is not None:
            rows &= keep
        if not bool(rows.any()):
            continue
        x = hidden[rows]
        yield expert_entry(spec.up_name, e), x
        projected = _linear(module, x, up_attr, e)
        inner = module._apply_gate(projected) if module.has_gate else module.act_fn(projected)
        yield expert_entry(spec.down_name, e), inner


def expert_probes(model: torch.nn.Module, experts: dict[str, ExpertsModule]) -> dict[str, torch.Tensor]:
    """``entry -> probe`` of every expert slice (onloaded if accelerate offloaded it)."""
    probes = {}
    for spec in experts.values():
        for name in (spec.up_name, spec.down_name):
            attr = name.rpartition(".")[2]
            param = getattr(spec.module, attr)
            if param.device.type == "meta":
                from accelerate.utils import align_module_device

                with align_module_device(spec.module):
                    param = getattr(spec.module, attr)
                    sliced = {e: weight_probe(param[e]) for e in range(spec.num_experts)}
            else:
                sliced = {e: weight_probe(param[e]) for e in range(spec.num_experts)}
            probes.update({expert_entry(name, e): p for e, p in sliced.items()})
    return probes


def require_every_expert_ran(experts: dict[str, ExpertsModule], measured) -> None:
    """Raise unless every expert of every experts module got tokens (is in ``measured``)."""
    for spec in experts.values():
        missing = [e for e in range(spec.num_experts)
                   if expert_entry(spec.up_name, e) not in measured]
        if missing:
            raise CalibrationError(
                f"the router of {spec.up_name.rpartition('.')[0]} sent none of the calibration "
                f"tokens to expert(s) {missing} of {spec.num_experts}, so their inputs cannot be "
                "measured (each expert is measured on the tokens routed to it); calibrate on "
                "more or more varied text (arm-calibrate: --samples, --max-length, --data; "
                "arm-stream: calibration.samples, calibration.max_length, calibration.data)"
            )


__all__ = [
    "ExpertsModule",
    "expert_inputs",
    "expert_probes",
    "experts_modules",
    "require_every_expert_ran",
    "router_modules",
]
