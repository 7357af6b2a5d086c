"""The ``arm`` MergeKit kernel on in-memory tensors with synthetic statistics files."""

from __future__ import annotations

import pytest
import torch
from mergekit.merge_methods import merge_tensors

import mergekit_arm
from mergekit_arm.errors import ArmConfigError, NonFiniteError, StatisticsError
from mergekit_arm.statistics import (
    LayerStatistics,
    StatisticsContent,
    weight_probe,
    write_statistics,
)

from .reference import nearby_subspace, random_subspace, reference_arm_step

NAME = "model.layers.0.mlp.down_proj.weight"
OUT, IN, R = 12, 16, 4


@pytest.fixture(scope="module", autouse=True)
def _registered():
    mergekit_arm.register()


def _stats(path, weight, basis, fingerprint="same-tokens", name=NAME, extra=None):
    eig = torch.linspace(2.0, 1.0, basis.shape[1])
    layers = {name: LayerStatistics(basis, eig, eig.sum() + 1.0)}
    content = StatisticsContent(
        layers=layers,
        probes={name: weight_probe(weight)},
        other_2d_weights=["model.embed_tokens.weight"],
        metadata={"calibration_fingerprint": fingerprint, "model": str(path), "probe_dtype": "float32"},
    )
    if extra:
        content.layers.update(extra)
    return str(write_statistics(path, content))


@pytest.fixture()
def world(tmp_path):
    g = torch.Generator().manual_seed(0)
    origin = torch.randn(OUT, IN, generator=g)
    ckpt_a = origin + 0.1 * torch.randn(OUT, IN, generator=g)
    ckpt_b = origin + 0.1 * torch.randn(OUT, IN, generator=g)
    s_from = random_subspace(IN, R, g)
    s_cur = nearby_subspace(s_from, 0.3, g)
    return {
        "origin": origin, "a": ckpt_a, "b": ckpt_b, "s_from": s_from, "s_cur": s_cur,
        "from_stats": _stats(tmp_path / "origin.st", origin, s_from),
        "cur_stats": _stats(tmp_path / "a.st", ckpt_a, s_cur),
        "tmp": tmp_path,
    }


def _merge(tensors, ids, base, params, name=NAME):
    return merge_tensors(tensors, "arm", ids=ids, base_index=ids.index(base), name=name,
                         parameters=params)


# (rotation_strength, off_subspace, learning_rate, rank)
PARAMS = [
    pytest.param(1.0, 1.0, 0.5, 64, id="default"),
    pytest.param(0.5, 1.0, 1.0, 64, id="half-rotation"),
    pytest.param(1.0, 0.0, 0.3, 64, id="in-subspace-only"),
    pytest.param(1.0, 0.5, 2.0, 2, id="rank-2"),
    pytest.param(0.0, 1.0, 0.5, 64, id="no-rotation"),
]


@pytest.mark.parametrize(("gamma", "beta", "eta", "rank"), PARAMS)
def test_single_shot_matches_reference(world, gamma, beta, eta, rank):
    """base = checkpoint, origin marked, no other input: d = W_cur - W_origin (ExPO-like)."""
    out = _merge([world["origin"], world["a"]], ["origin", "a"], "a", {
        "learning_rate": eta, "rotation_strength": gamma, "off_subspace": beta, "rank": rank,
        "origin": {"origin": True, "a": False},
        "activations": {"origin": world["from_stats"], "a": world["cur_stats"]},
    })
    expected = reference_arm_step(world["a"], world["origin"], [world["a"]], [1.0],
                                  world["s_from"][:, :rank], world["s_cur"][:, :rank], eta,
                                  gamma=gamma, beta=beta)
    torch.testing.assert_close(out.double(), expected, atol=1e-5, rtol=1e-4)


def test_weighted_targets_matches_reference(world):
    out = _merge([world["origin"], world["b"], world["a"]], ["origin", "b", "a"], "a", {
        "learning_rate": 0.7,
        "origin": {"origin": True, "b": False, "a": False},
        "weight": {"origin": 1.0, "b": 3.0, "a": 1.0},
        "activations": {"origin": world["from_stats"], "b": None, "a": world["cur_stats"]},
    })
    expected = reference_arm_step(world["a"], world["origin"], [world["b"]], [3.0],
                                  world["s_from"], world["s_cur"], 0.7)
    torch.testing.assert_close(out.double(), expected, atol=1e-5, rtol=1e-4)


def test_plain_step_for_1d_and_embeddings(world):
    bias_o, bias_a = torch.randn(IN), torch.randn(IN)
    out = _merge([bias_o, bias_a], ["origin", "a"], "a", {
        "learning_rate": 0.5, "origin": {"origin": True, "a": False},
        "activations": {"origin": world["from_stats"], "a": world["cur_stats"]},
    }, name="model.norm.weight")
    torch.testing.assert_close(out, bias_a + 0.5 * (bias_a - bias_o))
    emb = _merge([world["origin"], world["a"]], ["origin", "a"], "a", {
        "learning_rate": 0.5, "origin": {"origin": True, "a": False},
        "activations": {"origin": world["from_stats"], "a": world["cur_stats"]},
    }, name="model.embed_tokens.weight")
    torch.testing.assert_close(emb, world["a"] + 0.5 * (world["a"] - world["origin"]))


def test_output_keeps_input_dtype(world):
    out = _merge([world["origin"].bfloat16(), world["a"].bfloat16()], ["origin", "a"], "a", {
        "learning_rate": 0.5, "origin": {"origin": True, "a": False},
        "activations": {"origin": world["from_stats"], "a": world["cur_stats"]},
        "verify_statistics": False,
    })
    assert out.dtype == torch.bfloat16


def test_bf16_calibration_matches_fp32_merge_of_same_checkpoint(tmp_path):
    """A probe taken in bf16 still identifies the same (bf16-stored) checkpoint in fp32."""
    g = torch.Generator().manual_seed(1)
    w = torch.randn(OUT, IN, generator=g).bfloat16()
    s = random_subspace(IN, R, g)
    content = StatisticsContent(layers={NAME: LayerStatistics(s, torch.ones(R), torch.tensor(5.0))},
                                probes={NAME: weight_probe(w)}, metadata={"probe_dtype": "bfloat16"})
    from mergekit_arm.statistics import ActivationStatistics

    stats = ActivationStatistics(write_statistics(tmp_path / "bf16.st", content))
    stats.check_weight(NAME, w.float(), "m")  # no error
    with pytest.raises(StatisticsError, match="differ"):
        stats.check_weight(NAME, w.float() + 0.05, "m")


# -- errors --------------------------------------------------------------------------------

def _params(world, **over):
    params = {
        "learning_rate": 0.5, "origin": {"origin": True, "a": False},
        "activations": {"origin": world["from_stats"], "a": world["cur_stats"]},
    }
    params.update(over)
    return params


ERRORS = [
    pytest.param(lambda w: {"origin": {"origin": True, "a": True}}, ArmConfigError, "2 inputs are marked", id="two-origins"),
    pytest.param(lambda w: {"activations": {"origin": w["cur_stats"], "a": w["cur_stats"]}}, ArmConfigError, "inherited", id="inherited-activations"),
    pytest.param(lambda w: {"activations": {"origin": None, "a": w["cur_stats"]}}, StatisticsError, "no `activations` file was given for the origin", id="origin-without-stats"),
    pytest.param(lambda w: {"activations": {"origin": str(w["tmp"] / "nope.st"), "a": w["cur_stats"]}}, StatisticsError, "does not exist", id="missing-file"),
    pytest.param(lambda w: {"rank": 0}, ArmConfigError, "rank", id="bad-rank"),
    pytest.param(lambda w: {"energy": 1.5}, ArmConfigError, "energy", id="bad-energy"),
    pytest.param(lambda w: {"off_subspace": -1.0}, ArmConfigError, "off_subspace", id="bad-beta"),
    pytest.param(lambda w: {"missing_statistics": "ignore"}, ArmConfigError, "missing_statistics", id="bad-choice"),
    pytest.param(lambda w: {"learning_rate": float("nan")}, ArmConfigError, "learning_rate", id="nan-lr"),
    pytest.param(lambda w: {"pairing": "procrustes"}, ArmConfigError, "pairing", id="bad-pairing"),
]


@pytest.mark.parametrize(("override", "error", "match"), ERRORS)
def test_bad_configuration_is_named(world, override, error, match):
    with pytest.raises(error, match=match):
        _merge([world["origin"], world["a"]], ["origin", "a"], "a", _params(world, **override(world)))


def test_nothing_to_merge(world):
    with pytest.raises(ArmConfigError, match="nothing to merge"):
        merge_tensors([world["a"]], "arm", ids=["a"], base_index=0, name=NAME,
                      parameters={"learning_rate": 0.5})


def test_nan_input_names_tensor_and_model(world):
    bad = world["origin"].clone()
    bad[0, 0] = float("nan")
    with pytest.raises(NonFiniteError, match=f"{NAME}.*origin"):
        _merge([bad, world["a"]], ["origin", "a"], "a", _params(world))


def test_statistics_of_another_model_are_refused(world):
    params = _params(world, activations={"origin": world["from_stats"], "a": world["cur_stats"]})
    with pytest.raises(StatisticsError, match="not from b"):
        _merge([world["origin"], world["b"]], ["origin", "b"], "b",
               {**params, "origin": {"origin": True, "b": False},
                "activations": {"origin": world["from_stats"], "b": world["cur_stats"]}})
    # the check can be switched off explicitly
    _merge([world["origin"], world["b"]], ["origin", "b"], "b",
           {**params, "origin": {"origin": True, "b": False}, "verify_statistics": False,
            "activations": {"origin": world["from_stats"], "b": world["cur_stats"]}})


def test_shape_mismatch_is_refused(world, tmp_path):
    wide = torch.randn(OUT, IN + 4)
    other = _stats(tmp_path / "wide.st", wide, random_subspace(IN + 4, R, torch.Generator()))
    with pytest.raises(StatisticsError, match="input size"):
        _merge([world["origin"], world["a"]], ["origin", "a"], "a",
               _params(world, activations={"origin": world["from_stats"], "a": other}))


def test_different_calibration_tokens_are_refused(world, tmp_path):
    other = _stats(tmp_path / "other.st", world["origin"], world["s_from"], fingerprint="other-tokens")
    params = _params(world, activations={"origin": other, "a": world["cur_stats"]})
    with pytest.raises(StatisticsError, match="different calibration tokens"):
        _merge([world["origin"], world["a"]], ["origin", "a"], "a", params)
    _merge([world["origin"], world["a"]], ["origin", "a"], "a", {**params, "strict_calibration": False})


def test_linear_weight_without_statistics(world):
    name = "model.layers.1.self_attn.o_proj.weight"
    with pytest.raises(StatisticsError, match=f"{name}.*missing_statistics: plain"):
        _merge([world["origin"], world["a"]], ["origin", "a"], "a", _params(world), name=name)
    out = _merge([world["origin"], world["a"]], ["origin", "a"], "a",
                 _params(world, missing_statistics="plain"), name=name)
    torch.testing.assert_close(out, world["a"] + 0.5 * (world["a"] - world["origin"]))


@pytest.mark.parametrize("content", [b"not a safetensors file", b""], ids=["garbage", "empty"])
def test_unreadable_statistics_file(world, tmp_path, content):
    bad = tmp_path / "bad.st"
    bad.write_bytes(content)
    with pytest.raises(StatisticsError, match="cannot read"):
        _merge([world["origin"], world["a"]], ["origin", "a"], "a",
               _params(world, activations={"origin": str(bad), "a": world["cur_stats"]}))


def test_safetensors_file_of_another_format(world, tmp_path):
    from safetensors.torch import save_file

    other = tmp_path / "weights.safetensors"
    save_file({"x": torch.zeros(2)}, str(other))
    with pytest.raises(StatisticsError, match="not a mergekit-arm statistics file"):
        _merge([world["origin"], world["a"]], ["origin", "a"], "a",
               _params(world, activations={"origin": str(other), "a": world["cur_stats"]}))


def test_non_orthonormal_basis_is_refused(world, tmp_path):
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    path = tmp_path / "corrupt.st"
    tensors = load_file(world["from_stats"])
    with safe_open(world["from_stats"], "pt") as handle:
        meta = handle.metadata()
    tensors[f"{NAME}::basis"] = tensors[f"{NAME}::basis"] * 2.0
    save_file(tensors, str(path), metadata=meta)
    with pytest.raises(StatisticsError, match="not orthonormal"):
        _merge([world["origin"], world["a"]], ["origin", "a"], "a",
               _params(world, activations={"origin": str(path), "a": world["cur_stats"]}))


@pytest.mark.parametrize("value", [float("nan"), float("inf")], ids=["nan", "inf"])
def test_nonfinite_basis_is_refused_as_such(world, tmp_path, value):
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    path = tmp_path / "corrupt.st"
    tensors = load_file(world["from_stats"])
    with safe_open(world["from_stats"], "pt") as handle:
        meta = handle.metadata()
    tensors[f"{NAME}::basis"][1, 0] = value
    save_file(tensors, str(path), metadata=meta)
    with pytest.raises(StatisticsError, match=f"{NAME} in .*corrupt.st: basis holds NaN or Inf"):
        _merge([world["origin"], world["a"]], ["origin", "a"], "a",
               _params(world, activations={"origin": str(path), "a": world["cur_stats"]}))


def test_register_is_idempotent():
    from mergekit.merge_methods import get

    mergekit_arm.register()
    mergekit_arm.register()
    assert get("arm").spec.reference_url == "https://arxiv.org/abs/2602.03237"


def test_energy_pairing_is_plumbed_through(world):
    from mergekit_arm.rotation import energy_weighted_rotation, rotate_rows_in_span

    out = _merge([world["origin"], world["a"]], ["origin", "a"], "a", _params(world, pairing="energy"))
    eig = torch.linspace(2.0, 1.0, R)
    rotation = energy_weighted_rotation(world["s_from"], eig, world["s_cur"], eig)
    d = world["a"] - world["origin"]
    torch.testing.assert_close(out, world["a"] + 0.5 * rotate_rows_in_span(d, rotation))
    plain = world["a"] + 0.5 * d
    assert (out - plain).norm() > 1e-4


def test_square_conv1d_weight_is_rotated_on_its_input_axis(tmp_path):
    """GPT-2 Conv1D stores (in, out); a square one must still be rotated on axis 0."""
    g = torch.Generator().manual_seed(7)
    origin = torch.randn(IN, IN, generator=g)
    ckpt = origin + 0.1 * torch.randn(IN, IN, generator=g)
    s_from = random_subspace(IN, R, g)
    s_cur = nearby_subspace(s_from, 0.3, g)
    paths = {}
    for key, weight, basis in (("origin", origin, s_from), ("a", ckpt, s_cur)):
        content = StatisticsContent(
            layers={NAME: LayerStatistics(basis, torch.linspace(2.0, 1.0, R), torch.tensor(4.0))},
            probes={NAME: weight_probe(weight)}, transposed=[NAME],
            metadata={"calibration_fingerprint": "same", "probe_dtype": "float32"})
        paths[key] = str(write_statistics(tmp_path / f"{key}.st", content))
    out = _merge([origin, ckpt], ["origin", "a"], "a", {
        "learning_rate": 0.5, "origin": {"origin": True, "a": False}, "activations": paths})
    expected = reference_arm_step(ckpt.T, origin.T, [ckpt.T], [1.0], s_from, s_cur, 0.5).T
    torch.testing.assert_close(out.double(), expected, atol=1e-5, rtol=1e-4)


# -- NaN/Inf: the result is checked once, the inputs only to name the culprit -----------------

# (parameters, description): every code path of the kernel's step
NONFINITE_VARIANTS = [
    pytest.param({}, id="default"),
    pytest.param({"rotation_strength": 0.5}, id="half-rotation"),
    pytest.param({"rotation_strength": 0.0, "off_subspace": 0.5}, id="guidance-only"),
    pytest.param({"off_subspace": 0.0}, id="off-subspace-0"),
    pytest.param({"pairing": "energy"}, id="energy"),
    pytest.param({"pairing": "energy", "off_subspace": 0.3}, id="energy-guided"),
    pytest.param({"learning_rate": 1e-40}, id="learning-rate-subnormal"),  # eta*beta underflows
    pytest.param({"normalize": False}, id="no-normalize"),
]


@pytest.mark.parametrize("variant", NONFINITE_VARIANTS)
@pytest.mark.parametrize("bad", ["origin", "a", "b", "c"])
@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")], ids=["nan", "inf", "-inf"])
def test_nonfinite_input_is_named_on_every_path(world, variant, bad, value):
    """origin, base (a), a target of weight 0 (b) and one of weight 2 (c): a NaN/Inf in any
    of them names the tensor and that model, whatever the parameters."""
    tensors = {"origin": world["origin"].clone(), "a": world["a"].clone(), "b": world["b"].clone(),
               "c": world["b"].flip(0).clone()}
    tensors[bad][3, 5] = value
    ids = ["origin", "b", "c", "a"]
    params = {
        "learning_rate": 0.5, "origin": {k: k == "origin" for k in ids},
        "weight": {"origin": 1.0, "a": 1.0, "b": 0.0, "c": 2.0},
        "activations": {"origin": world["from_stats"], "a": world["cur_stats"], "b": None, "c": None},
        **variant,
    }
    with pytest.raises(NonFiniteError, match=f"tensor {NAME} of model {bad} holds 1 NaN/Inf"):
        _merge([tensors[k] for k in ids], ids, "a", params)


@pytest.mark.parametrize("name", [NAME, "model.norm.weight"], ids=["linear", "1-D"])
def test_nonfinite_single_shot_and_plain_step(world, name):
    bad = world["a"].clone()
    bad[0, 1] = float("inf")
    tensors = [world["origin"], bad] if name == NAME else [world["origin"][0], bad[0]]
    with pytest.raises(NonFiniteError, match=f"tensor {name} of model a holds 1"):
        _merge(tensors, ["origin", "a"], "a", _params(world), name=name)


def test_overflow_of_finite_inputs_is_reported_as_produced(world):
    origin, ckpt = world["origin"].clone(), world["a"].clone()
    origin[3, 5], ckpt[3, 5] = -3e38, 3e38  # finite, but W_cur - W_from overflows
    with pytest.raises(NonFiniteError, match="arm produced NaN/Inf"):
        _merge([origin, ckpt], ["origin", "a"], "a", _params(world, verify_statistics=False))
    # a learning rate beyond float32 overflows the step: reported as produced, not a crash
    with pytest.raises(NonFiniteError, match="arm produced NaN/Inf.*learning_rate=1e"):
        _merge([world["origin"], world["a"]], ["origin", "a"], "a", _params(world, learning_rate=1e39))


def test_nan_weight_at_a_probe_position_is_reported_as_nan(world):
    """The statistics' weight probes would not match a NaN weight; the NaN is what is named."""
    from mergekit_arm.statistics import probe_indices

    bad = world["a"].clone()
    flat = probe_indices(bad.shape)[0]
    bad.view(-1)[flat] = float("nan")
    with pytest.raises(NonFiniteError, match=f"tensor {NAME} of model a"):
        _merge([world["origin"], bad], ["origin", "a"], "a", _params(world))


def test_aliases_share_one_validated_read(tmp_path, monkeypatch):
    """q/k/v (gate/up) share one stored entry: it is read and validated once, for any alias."""
    from mergekit_arm import statistics as st

    q, k = "model.layers.0.self_attn.q_proj.weight", "model.layers.0.self_attn.k_proj.weight"
    basis = random_subspace(IN, R, torch.Generator().manual_seed(4))
    w = torch.randn(OUT, IN)
    content = StatisticsContent(
        layers={q: LayerStatistics(basis, torch.linspace(2.0, 1.0, R), torch.tensor(4.0))},
        probes={q: weight_probe(w), k: weight_probe(2 * w)}, aliases={k: q},
        metadata={"calibration_fingerprint": "same", "probe_dtype": "float32"})
    path = write_statistics(tmp_path / "alias.st", content)
    calls = []
    validate = st._validate_layer
    monkeypatch.setattr(st, "_validate_layer", lambda *a, **kw: (calls.append(a[0]), validate(*a, **kw)))
    stats = st.ActivationStatistics(path)
    first, second = stats[k], stats[q]
    assert calls == [k]
    assert first.basis is second.basis
    torch.testing.assert_close(first.probe, weight_probe(2 * w))
    torch.testing.assert_close(second.probe, weight_probe(w))
