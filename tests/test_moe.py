"""Mixture-of-experts models (Mixtral, Qwen3-MoE, transformers 5 stacked experts) end to end:
calibration in both modes, ``arm-calibrate --check``, the ``mergekit-yaml`` merge against an
independent float64 reference that rotates each expert slice with its own entry, the stream's
in-memory merge, and refusals (no statistics for experts, an expert no token reached)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
import yaml
from click.testing import CliRunner
from safetensors import safe_open
from safetensors.torch import save_file

from .moe_models import MOE_ARCHITECTURES, make_tiny_moe, perturbed_copy
from .reference import reference_arm_step

pytestmark = pytest.mark.usefixtures("one_torch_thread")

RANK = 8
LEARNING_RATE = 0.5
MODES = ("all-at-once", "layer-sequential")


@dataclass
class MoeWorld:
    """A tiny MoE origin, a perturbed sibling, and each one's statistics in both modes."""

    arch: str
    origin: Path
    sibling: Path
    stats: dict[tuple[str, str], Path]  # (which, mode) -> statistics file
    root: Path


@pytest.fixture(scope="module")
def moe_worlds(tmp_path_factory, demo_tokenizer, calibration_texts) -> dict[str, MoeWorld]:
    from mergekit_arm.calibration import CalibrationOptions, calibrate

    worlds = {}
    for arch in MOE_ARCHITECTURES:
        root = tmp_path_factory.mktemp(f"moe_{arch}")
        origin = make_tiny_moe(root / "origin", arch, demo_tokenizer, seed=0)
        sibling = perturbed_copy(origin, root / "sibling", scale=0.05, seed=1)
        stats = {}
        for which, folder in (("origin", origin), ("sibling", sibling)):
            for mode in MODES:
                out = root / f"{which}-{mode}.safetensors"
                calibrate(folder, out, CalibrationOptions(mode=mode, samples=24, max_length=64),
                          texts=calibration_texts, progress=False)
                stats[which, mode] = out
        worlds[arch] = MoeWorld(arch, origin, sibling, stats, root)
    return worlds


def _runtime_state(folder: Path) -> dict[str, torch.Tensor]:
    """Parameters of the model in ``folder`` under transformers' (and MergeKit's) names."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    return {name: p.detach().clone() for name, p in model.named_parameters()}


def _entries(path: Path) -> dict[str, torch.Tensor]:
    with safe_open(str(path), framework="pt") as handle:
        return {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118


def _metadata(path: Path) -> dict[str, str]:
    with safe_open(str(path), framework="pt") as handle:
        return dict(handle.metadata())


def _experts(state: dict[str, torch.Tensor]) -> list[str]:
    return sorted(name for name, t in state.items() if t.ndim == 3)


def _routers(state: dict[str, torch.Tensor]) -> list[str]:
    return sorted(name for name in state if name.endswith("mlp.gate.weight"))


# -- calibration -------------------------------------------------------------------------


@pytest.mark.parametrize("arch", MOE_ARCHITECTURES)
def test_both_modes_agree_and_every_expert_has_its_own_entry(moe_worlds, arch):
    """All-at-once and layer-sequential write the same file content; every expert slice of
    ``gate_up_proj``/``down_proj`` has an entry ``name[e]`` measured on its routed tokens
    (``entry_tokens``: the experts of a layer share out top_k x the tokens, each expert's
    two weights saw the same tokens) and every router one measured on all tokens."""
    world = moe_worlds[arch]
    whole, layered = (world.stats["origin", mode] for mode in MODES)
    a, b = _entries(whole), _entries(layered)
    assert sorted(a) == sorted(b)
    for key in a:
        assert torch.allclose(a[key], b[key], rtol=1e-5, atol=1e-6), key
    state = _runtime_state(world.origin)
    counts = json.loads(_metadata(whole)["entry_tokens"])
    assert counts == json.loads(_metadata(layered)["entry_tokens"])
    tokens = int(_metadata(whole)["num_tokens"])
    for router in _routers(state):
        assert f"{router}::basis" in a and counts[router] == tokens
    for name in _experts(state):
        experts = state[name].shape[0]
        per_expert = [counts[f"{name}[{e}]"] for e in range(experts)]
        assert all(f"{name}[{e}]::probe" in a for e in range(experts))
        assert sum(per_expert) == 2 * tokens  # top-2 routing
        assert all(0 < n < tokens for n in per_expert)
        partner = name.replace("down_proj", "gate_up_proj")
        assert per_expert == [counts[f"{partner}[{e}]"] for e in range(experts)]


def test_an_expert_no_token_reached_is_refused_by_name(moe_worlds):
    """One token routed top-2 reaches 2 of 4 experts: the others cannot be measured."""
    from transformers import AutoModelForCausalLM

    from mergekit_arm.calibration import collect_statistics
    from mergekit_arm.errors import CalibrationError

    model = AutoModelForCausalLM.from_pretrained(moe_worlds["mixtral"].origin, dtype=torch.float32)
    for mode in MODES:
        with pytest.raises(CalibrationError, match=r"sent none of the calibration tokens to "
                                                   r"expert\(s\) \[.*\] of 4.*--samples.*"
                                                   r"arm-stream: calibration\.samples"):
            collect_statistics(model, [[5]], pad_id=0, rank=8, progress=False, mode=mode)


# -- arm-calibrate --check ----------------------------------------------------------------


@pytest.mark.parametrize("arch", MOE_ARCHITECTURES)
def test_check_accepts_the_file_of_its_moe_model_and_refuses_others(moe_worlds, arch, tmp_path):
    from mergekit_arm.scripts.calibrate import main as calibrate_cli

    world = moe_worlds[arch]
    for mode in MODES:
        ok = CliRunner().invoke(calibrate_cli, [str(world.origin),
                                                str(world.stats["origin", mode]), "--check"])
        assert ok.exit_code == 0, ok.output
    other = CliRunner().invoke(calibrate_cli, [str(world.origin),
                                               str(world.stats["sibling", "all-at-once"]), "--check"])
    assert other.exit_code == 2 and "not from" in other.output, other.output
    # A file without one expert's entry (as written before experts were measured) is refused.
    tensors = _entries(world.stats["origin", "all-at-once"])
    dropped = next(k.split("::")[0] for k in sorted(tensors) if "down_proj[" in k)
    partial = tmp_path / "partial.safetensors"
    save_file({k: v for k, v in tensors.items() if not k.startswith(dropped + "::")}, str(partial),
              metadata=_metadata(world.stats["origin", "all-at-once"]))
    missing = CliRunner().invoke(calibrate_cli, [str(world.origin), str(partial), "--check"])
    assert missing.exit_code == 2 and "has no entries for 1 weights" in missing.output
    assert dropped in missing.output, missing.output


# -- the merge -----------------------------------------------------------------------------


def _config(world: MoeWorld, **parameters) -> dict:
    return {
        "merge_method": "arm",
        "base_model": str(world.sibling),
        "models": [{"model": str(world.origin), "parameters": {
            "origin": True, "activations": str(world.stats["origin", "all-at-once"])}}],
        "parameters": {"learning_rate": LEARNING_RATE, "rank": RANK,
                       "activations": str(world.stats["sibling", "layer-sequential"]),
                       **parameters},
        "dtype": "float32",
    }


def _mergekit_yaml(config: dict, out: Path) -> dict[str, torch.Tensor]:
    from mergekit.scripts.run_yaml import main

    path = out.parent / f"{out.name}.yml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    result = CliRunner().invoke(main, [str(path), str(out), "--no-write-model-card"])
    if result.exit_code != 0:
        raise AssertionError(f"mergekit-yaml failed ({result.exit_code}): {result.exception}\n"
                             f"{result.output[-3000:]}") from result.exception
    return _runtime_state(out)


def _reference(world: MoeWorld, gamma: float) -> dict[str, torch.Tensor]:
    """float64: every 2-D linear weight and router with its entry, each expert slice ``e``
    of a stacked weight with entry ``name[e]``, norms and embeddings the plain step."""
    from mergekit_arm.rotation import select_subspace
    from mergekit_arm.statistics import ActivationStatistics

    cur, origin = _runtime_state(world.sibling), _runtime_state(world.origin)
    cur_stats = ActivationStatistics(world.stats["sibling", "layer-sequential"])
    from_stats = ActivationStatistics(world.stats["origin", "all-at-once"])

    def step(w_cur, w_from, entry):
        s_from = s_cur = None
        if entry is not None:
            lc, lf = cur_stats[entry], from_stats[entry]
            s_cur = select_subspace(lc.basis, lc.eigenvalues, lc.trace, RANK)
            s_from = select_subspace(lf.basis, lf.eigenvalues, lf.trace, RANK)
        return reference_arm_step(w_cur, w_from, [w_cur], [1.0], s_from, s_cur, LEARNING_RATE,
                                  gamma=gamma)

    out = {}
    for name, w in cur.items():
        if w.ndim == 3:
            out[name] = torch.stack([step(w[e], origin[name][e], f"{name}[{e}]")
                                     for e in range(w.shape[0])])
        else:
            out[name] = step(w, origin[name], name if w.ndim == 2 and name in cur_stats else None)
    return out


@pytest.mark.parametrize("arch", MOE_ARCHITECTURES)
def test_merge_rotates_each_expert_and_the_router_as_the_reference(moe_worlds, arch, tmp_path):
    """``mergekit-yaml`` equals the float64 reference (1e-4 relative) at rotation_strength 1
    and 0, and the two differ on every expert slice and router (before: identical)."""
    world = moe_worlds[arch]
    merged = {}
    for gamma in (1.0, 0.0):
        got = _mergekit_yaml(_config(world, rotation_strength=gamma), tmp_path / f"g{gamma}")
        want = _reference(world, gamma)
        assert sorted(got) == sorted(want)
        for name, expected in want.items():
            error = float((got[name].double() - expected).norm() / expected.norm())
            assert error < 1e-4, f"{arch} gamma={gamma}: {name}: relative error {error:.2e}"
        merged[gamma] = got
    for name in _experts(merged[1.0]) + _routers(merged[1.0]):
        a, b = merged[1.0][name].double(), merged[0.0][name].double()
        slices = range(a.shape[0]) if a.ndim == 3 else [None]
        for e in slices:
            x, y = (a, b) if e is None else (a[e], b[e])
            assert float((x - y).norm() / y.norm()) > 1e-4, f"{name}[{e}] was not rotated"


@pytest.mark.parametrize("arch", MOE_ARCHITECTURES)
def test_stream_merge_equals_mergekit_yaml(moe_worlds, arch, tmp_path):
    """The stream's in-memory merge (``merge_state_dicts`` on ``state_dict()``s) gives the
    ``mergekit-yaml`` result on every tensor."""
    from mergekit_arm.merge_methods.arm_parameters import ARMParameters
    from mergekit_arm.stream.step import Leg, merge_candidate

    world = moe_worlds[arch]
    want = _mergekit_yaml(_config(world), tmp_path / "yaml")
    leg = Leg(_runtime_state(world.origin), world.stats["origin", "all-at-once"],
              ((_runtime_state(world.sibling), 1.0),))
    params = ARMParameters(rank=RANK).merge_parameters()
    got = merge_candidate(_runtime_state(world.sibling), world.stats["sibling", "layer-sequential"],
                          leg, LEARNING_RATE, params)
    assert sorted(got) == sorted(want)
    for name, expected in want.items():
        assert torch.allclose(got[name], expected, rtol=1e-5, atol=1e-6), name


def test_experts_without_statistics_are_refused(moe_worlds, tmp_path):
    """``missing_statistics: error`` (default) refuses stacked experts whose entries the
    file lacks (before: the plain step, exit 0); ``plain`` takes the plain step for them."""
    world = moe_worlds["mixtral"]
    partial = {}
    for which in ("origin", "sibling"):
        source = world.stats[which, "all-at-once"]
        tensors = {k: v for k, v in _entries(source).items() if "experts.down_proj[" not in k}
        partial[which] = tmp_path / f"{which}-no-experts.safetensors"
        save_file(tensors, str(partial[which]), metadata=_metadata(source))
    config = _config(world)
    config["models"][0]["parameters"]["activations"] = str(partial["origin"])
    config["parameters"]["activations"] = str(partial["sibling"])
    with pytest.raises(AssertionError, match=r"no activation statistics for the stacked experts "
                                             r"weight \(4 experts\) model\.layers\.\d\.mlp\.experts"
                                             r"\.down_proj"):
        _mergekit_yaml(config, tmp_path / "refused")
    config["parameters"]["missing_statistics"] = "plain"
    got = _mergekit_yaml(config, tmp_path / "plain")
    cur, origin = _runtime_state(world.sibling), _runtime_state(world.origin)
    name = "model.layers.0.mlp.experts.down_proj"
    plain = cur[name] + LEARNING_RATE * (cur[name] - origin[name])
    assert torch.allclose(got[name], plain, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("arch", MOE_ARCHITECTURES)
def test_auto_mode_counts_the_experts(arch):
    """``mode: auto`` sees a 115M-parameter MoE as 115M (it counted one expert: 23M), so it
    goes layer-sequential like a dense model of that size; the layer-sequential pass then
    reads the checkpoint's own expert names (tested above)."""
    from accelerate import init_empty_weights
    from transformers import AutoModelForCausalLM

    from mergekit_arm.calibration.mode import LARGE_MODEL_PARAMETERS, choose_mode, parameter_count

    from .moe_models import moe_config

    sizes = {"hidden_size": 512, "num_hidden_layers": 5, "num_attention_heads": 8, "head_dim": 64}
    config = moe_config(arch, 512, **sizes)
    if arch == "mixtral":
        config.num_local_experts, config.intermediate_size = 8, 1792
    else:
        config.num_experts, config.moe_intermediate_size = 8, 1792
    with init_empty_weights():
        model = AutoModelForCausalLM.from_config(config)
    actual = sum(p.numel() for p in model.parameters())
    assert actual > LARGE_MODEL_PARAMETERS
    assert abs(parameter_count(config) - actual) < 0.01 * actual
    mode, reason = choose_mode(config, "cpu", weight_bytes=4 * actual, weights_on_device=False,
                               batch_size=8, max_length=64)
    assert mode == "layer-sequential", reason


def test_moe_with_dense_first_layers_is_refused_before_mergekit_drops_experts(
        tmp_path, demo_tokenizer, calibration_texts):
    """A Qwen2-MoE whose layer 0 is dense (``mlp_only_layers``, as DeepSeek-V2/V3's
    ``first_k_dense_replace``): MergeKit 0.1.5 infers its architecture, marks the stacked
    experts optional (layer 0 lacks them) and skips them, as the checkpoint stores them one
    by one; the merge exited 0 without layer 1's experts, which the merged model then
    initialised at random (any merge method). Now refused while MergeKit plans, naming them;
    nothing is written."""
    from transformers import AutoModelForCausalLM, Qwen2MoeConfig

    from mergekit_arm.calibration import CalibrationOptions, calibrate
    from mergekit_arm.demo.tiny_models import save_model_dir

    config = Qwen2MoeConfig(vocab_size=512, hidden_size=32, intermediate_size=48,
                            moe_intermediate_size=24, shared_expert_intermediate_size=24,
                            num_experts=4, num_experts_per_tok=2, num_hidden_layers=2,
                            num_attention_heads=4, num_key_value_heads=2,
                            decoder_sparse_step=1, mlp_only_layers=[0],
                            pad_token_id=demo_tokenizer.pad_token_id)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = AutoModelForCausalLM.from_config(config)
    origin = save_model_dir(model, demo_tokenizer, tmp_path / "origin", torch.float32)
    sibling = perturbed_copy(origin, tmp_path / "sibling", scale=0.05, seed=1)
    stats = {}
    for which, folder in (("origin", origin), ("sibling", sibling)):
        stats[which] = calibrate(folder, tmp_path / f"{which}.st",
                                 CalibrationOptions(samples=8, max_length=32, rank=RANK),
                                 texts=calibration_texts, progress=False).path
    world = MoeWorld("qwen2_moe", origin, sibling, {("origin", "all-at-once"): stats["origin"],
                     ("sibling", "layer-sequential"): stats["sibling"]}, tmp_path)
    with pytest.raises(AssertionError, match=r"MergeKit would leave model\.layers\.1\.mlp\."
                                             r"experts\.(down|gate_up)_proj"):
        _mergekit_yaml(_config(world), tmp_path / "refused")
    assert not (tmp_path / "refused" / "config.json").exists()
