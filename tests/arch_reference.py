"""Independent helpers of tests/test_architectures.py: which weights of a transformers model
are linear maps (read off its modules), the second moments of their inputs measured with
float64 forward hooks, statistics files read with safetensors alone, and the float64 ARM
reference merge built on :func:`tests.reference.reference_arm_step`. Nothing here uses the
package's calibration, statistics or rotation code."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import safe_open

from .reference import reference_arm_step


def read_entry(path: Path, entry: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(basis, eigenvalues, trace)`` of ``entry``, read with safetensors (aliases followed)."""
    with safe_open(str(path), "pt") as f:
        aliases = json.loads((f.metadata() or {}).get("aliases", "{}"))
        stored = aliases.get(entry, entry)
        return tuple(f.get_tensor(f"{stored}::{part}") for part in ("basis", "eigenvalues",
                                                                       "trace"))


def entry_names(path: Path) -> set[str]:
    """Every entry of a statistics file (stored and aliased), read with safetensors."""
    with safe_open(str(path), "pt") as f:
        aliases = json.loads((f.metadata() or {}).get("aliases", "{}"))
        stored = {key.split("::")[0] for key in f.keys() if key.endswith("::basis")}  # noqa: SIM118
        return stored | set(aliases)


def linear_maps(model: torch.nn.Module) -> dict[str, str]:
    """``parameter name -> kind`` of every weight that is a linear map of an input:
    ``linear`` (``y = W x``), ``conv1d`` (GPT-2, ``y = x W``), ``experts`` (stacked
    ``(E, out, in)``), ``router`` (an MoE gate that is not an ``nn.Linear``)."""
    from transformers.pytorch_utils import Conv1D

    found = {}
    for name, module in model.named_modules():
        prefix = f"{name}." if name else ""
        if isinstance(module, torch.nn.Linear):
            found[prefix + "weight"] = "linear"
        elif isinstance(module, Conv1D):
            found[prefix + "weight"] = "conv1d"
        elif type(module).__name__.endswith("Experts"):
            for attr in ("gate_up_proj", "down_proj"):
                if isinstance(getattr(module, attr, None), torch.nn.Parameter):
                    found[prefix + attr] = "experts"
        elif type(module).__name__.endswith("Router") and isinstance(
                getattr(module, "weight", None), torch.nn.Parameter):
            found[prefix + "weight"] = "router"
    return found


def runtime_state(folder: Path, eager_experts: bool = False
                   ) -> tuple[torch.nn.Module, dict[str, torch.Tensor]]:
    """The model of ``folder`` in float32 and its parameters under the runtime names
    (``eager_experts``: MoE experts run as the plain per-expert loop, which float64 allows)."""
    from transformers import AutoModelForCausalLM

    from mergekit_arm.demo.runtime import quiet_runtime

    kwargs = {"experts_implementation": "eager"} if eager_experts else {}
    with quiet_runtime():
        model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32, **kwargs).eval()
    return model, {n: p.detach().clone() for n, p in model.named_parameters()}


def tied_embedding(model: torch.nn.Module) -> tuple[str, str] | None:
    """``(input embedding name, head weight name)`` when the two are one tensor."""
    head, embedding = model.get_output_embeddings(), model.get_input_embeddings()
    if head is None or head.weight is not embedding.weight:
        return None
    names = {id(m): n for n, m in model.named_modules()}
    return f"{names[id(embedding)]}.weight", f"{names[id(head)]}.weight"


def rotated_weights(model: torch.nn.Module) -> dict[str, str]:
    """:func:`linear_maps` under the parameter names: a tied head is its input embedding
    (one matrix, the head's weight, so the head's input statistics rotate it)."""
    maps, tied = linear_maps(model), tied_embedding(model)
    if tied is not None:
        maps[tied[0]] = maps.pop(tied[1])
    return maps


def subspace(path: Path, entry: str, rank: int) -> torch.Tensor:
    """The first ``rank`` stored eigenvectors of ``entry``."""
    basis, eigenvalues, _ = read_entry(path, entry)
    return basis[:, : min(rank, eigenvalues.shape[0])]


def reference_merge(cur_folder: Path, origin_folder: Path, cur_stats: Path, from_stats: Path,
                    rank: int, learning_rate: float) -> dict[str, torch.Tensor]:
    """``W_cur + eta * rotate(W_cur - W_origin)`` for every parameter, in float64: linear
    maps rotated on their input side with their own statistics entry (stacked experts
    expert by expert, ``name[e]``; Conv1D on ``W^T``; a tied embedding with the head's),
    subspaces the first ``rank`` stored eigenvectors; everything else the plain step."""
    model, cur = runtime_state(cur_folder)
    _, origin = runtime_state(origin_folder)
    maps, tied = rotated_weights(model), tied_embedding(model)
    entries = entry_names(cur_stats)
    out = {}
    for name, w_cur in cur.items():
        kind = maps.get(name)

        def step(wc, wf, entry):
            if entry is None:
                return reference_arm_step(wc, wf, [wc], [1.0], None, None, learning_rate)
            assert entry in entries, f"{cur_folder}: no statistics for {entry}"
            return reference_arm_step(wc, wf, [wc], [1.0], subspace(from_stats, entry, rank),
                                      subspace(cur_stats, entry, rank), learning_rate)

        if tied is not None and name == tied[0]:
            out[name] = step(w_cur, origin[name], tied[1])
        elif kind == "experts":
            out[name] = torch.stack([step(w_cur[e], origin[name][e], f"{name}[{e}]")
                                     for e in range(w_cur.shape[0])])
        elif kind == "conv1d":
            out[name] = step(w_cur.T, origin[name].T, name).T
        else:
            out[name] = step(w_cur, origin[name], name if kind else None)
    return out


# -- inputs measured here (float64 forward hooks, one unpadded text at a time) ---------


def measured_inputs(folder: Path, tokens: list[list[int]], moe: bool) -> dict[str, torch.Tensor]:
    """``entry -> E[x x^T]`` (float64) of the input of every linear map of the model in
    ``folder``: ``nn.Linear``/``Conv1D``/router inputs, and per expert ``e`` of a stacked
    ``gate_up_proj`` / ``down_proj`` the input of the tokens routed to it (``name[e]``)."""
    model, _ = runtime_state(folder, eager_experts=moe)
    model = model.double()
    maps = linear_maps(model)
    sums: dict[str, torch.Tensor] = {}
    counts: dict[str, int] = {}

    def add(entry: str, x: torch.Tensor) -> None:
        x = x.reshape(-1, x.shape[-1]).double()
        sums[entry] = sums.get(entry, 0) + x.T @ x
        counts[entry] = counts.get(entry, 0) + x.shape[0]

    hooks = []
    for module_name, module in model.named_modules():
        prefix = f"{module_name}." if module_name else ""
        kinds = {n[len(prefix):]: k for n, k in maps.items()
                 if n.startswith(prefix) and "." not in n[len(prefix):]}
        if kinds.get("weight") in ("linear", "conv1d", "router"):
            hooks.append(module.register_forward_pre_hook(
                lambda m, args, name=prefix + "weight": add(name, args[0])))
        elif "gate_up_proj" in kinds:
            def experts_hook(m, args, prefix=prefix):
                hidden, top_k_index = args[0], args[1]
                for e in range(m.gate_up_proj.shape[0]):
                    rows = (top_k_index == e).any(dim=-1)
                    if not rows.any():
                        continue
                    x = hidden[rows]
                    add(f"{prefix}gate_up_proj[{e}]", x)
                    gate, up = torch.nn.functional.linear(x, m.gate_up_proj[e]).chunk(2, dim=-1)
                    add(f"{prefix}down_proj[{e}]", m.act_fn(gate) * up)

            hooks.append(module.register_forward_pre_hook(experts_hook))
    with torch.no_grad():
        for ids in tokens:
            model(input_ids=torch.tensor([ids]), use_cache=False)
    for hook in hooks:
        hook.remove()
    return {entry: sums[entry] / counts[entry] for entry in sums}


def assert_statistics_match(path: Path, measured: dict[str, torch.Tensor], label: str) -> None:
    """Every linear map's entry holds the top eigenpairs of its measured input moment:
    eigenvalues and trace to 1e-3 (relative), ``|C B - B diag(l)| <= 1e-3 |C|``."""
    entries = entry_names(path)
    missing = sorted(set(measured) - entries)
    assert not missing, f"{label}: no statistics for {len(missing)} linear maps: {missing[:4]}"
    for entry, moment in measured.items():
        basis, eigenvalues, trace = (t.double() for t in read_entry(path, entry))
        want = torch.linalg.eigvalsh(moment).flip(0)[: eigenvalues.shape[0]]
        scale = float(want[0])
        assert torch.allclose(eigenvalues, want, rtol=1e-3, atol=1e-6 * scale), (
            f"{label}: {entry}: eigenvalues {eigenvalues[:4].tolist()} measured "
            f"{want[:4].tolist()}")
        assert abs(float(trace) - float(moment.trace())) <= 1e-3 * float(moment.trace()), entry
        residual = (moment @ basis - basis * eigenvalues).norm() / moment.norm()
        assert residual < 1e-3, f"{label}: {entry}: basis is not an eigenbasis ({residual:.1e})"


def assert_files_agree(a: Path, b: Path) -> None:
    """Two statistics files of one model: same entries, eigenpairs to 1e-4."""
    assert entry_names(a) == entry_names(b)
    for entry in sorted(entry_names(a)):
        (ba, la, ta), (bb, lb, tb) = read_entry(a, entry), read_entry(b, entry)
        assert torch.allclose(la, lb, rtol=1e-4, atol=1e-6 * float(la[0])), entry
        assert torch.allclose(ta, tb, rtol=1e-4), entry
        overlap = torch.linalg.svdvals(ba.double().T @ bb.double())
        assert float(overlap.min()) > 1 - 1e-4, f"{entry}: subspaces differ ({overlap.min():.6f})"
