"""One definition of the ARM parameters: the kernel, the stream config and README agree."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest
import torch
from mergekit.merge_methods import merge_tensors

import mergekit_arm
from mergekit_arm.errors import ArmConfigError
from mergekit_arm.merge_methods.arm import arm_kernel
from mergekit_arm.merge_methods.arm_parameters import ARMInputParameters, ARMParameters
from mergekit_arm.stream.config import parse_config

README = Path(__file__).resolve().parents[1] / "README.md"
PER_STEP = {"learning_rate"}


def _readme_rows() -> dict[str, tuple[str, str]]:
    """name -> (scope, default) of README's `merge_method: arm` parameter table."""
    text = README.read_text(encoding="utf-8")
    section = text.split("### `merge_method: arm` parameters", 1)[1].split("\n#", 1)[0]
    rows = {}
    for line in section.splitlines():
        match = re.match(r"\| `(\w+)` \| ([^|]+) \| ([^|]+) \|", line)
        if match:
            rows[match[1]] = (match[2].strip(), match[3].strip())
    return rows


def _shown(value) -> str:
    """A default as README writes it: YAML scalars in backticks."""
    if value is None:
        return "`null`"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    return f"`{value}`"


def test_readme_table_lists_exactly_the_model_fields_with_their_defaults():
    rows = _readme_rows()
    shared, per_input = ARMParameters.model_fields, ARMInputParameters.model_fields
    assert set(rows) == set(shared) | set(per_input) | PER_STEP
    for name, field in shared.items():
        assert rows[name] == ("top level", _shown(field.default)), name
    for name, field in per_input.items():
        assert rows[name][0].startswith("per model"), name
        assert rows[name][1] == _shown(field.default), name
    assert rows["learning_rate"] == ("top level", "**required**")


def test_kernel_signature_defaults_are_the_model_defaults():
    signature = inspect.signature(arm_kernel).parameters
    defaults = {**ARMParameters().model_dump(), **ARMInputParameters().model_dump()}
    kernel = {name: p.default for name, p in list(signature.items())[1:]}
    assert kernel.pop("learning_rate") is inspect.Parameter.empty  # required, no default
    assert kernel == defaults


def test_merge_parameters_are_the_top_level_dict():
    params = ARMParameters(eigengap=True, rank=8).merge_parameters()
    assert params == {**ARMParameters().model_dump(), "eigengap": True, "rank": 8}
    assert set(params) <= set(inspect.signature(arm_kernel).parameters)


STREAM = {"origin": "o", "checkpoints": ["c"], "steps": 1, "schedule": {"learning_rate": 0.5}}


def test_stream_arm_section_accepts_every_kernel_parameter():
    config = parse_config({**STREAM, "arm": {"eigengap": True, "verify_statistics": False}})
    assert isinstance(config.arm, ARMParameters)
    assert config.arm.merge_parameters()["eigengap"] is True
    assert config.arm.merge_parameters()["verify_statistics"] is False


# (invalid ARM parameters, the field, the message after it): one table for both entry points,
# the stream's `arm:` section (`arm.<field>`) and the kernel's parameters (`<field>`)
INVALID = [
    pytest.param({"rank": 0}, "rank", "Input should be greater than or equal to 1", id="rank-0"),
    pytest.param({"energy": 0}, "energy", "Input should be greater than 0", id="energy-0"),
    pytest.param({"energy": 1.5}, "energy", "Input should be less than or equal to 1",
                 id="energy-above-1"),
    pytest.param({"off_subspace": -0.5}, "off_subspace", "Input should be greater than",
                 id="negative-beta"),
    pytest.param({"rotation_strength": float("inf")}, "rotation_strength", "must be a finite",
                 id="inf-gamma"),
    pytest.param({"rotation_strength": float("nan")}, "rotation_strength", "must be a finite",
                 id="gamma-nan"),
    pytest.param({"pairing": "procrustes"}, "pairing", "Input should be 'subspace' or 'energy'",
                 id="bad-pairing"),
    pytest.param({"missing_statistics": "ignore"}, "missing_statistics",
                 "Input should be 'error' or 'plain'", id="bad-missing"),
]


@pytest.mark.parametrize(("arm", "field", "message"), INVALID)
def test_stream_arm_section_errors(arm, field, message):
    with pytest.raises(ArmConfigError, match=re.escape(f"`arm.{field}`: {message}")):
        parse_config({**STREAM, "arm": arm})


@pytest.mark.parametrize(("arm", "fragment"), [
    pytest.param({"eigen_gap": True}, "unknown key `arm.eigen_gap`", id="typo"),
    pytest.param({"learning_rate": 0.5}, "unknown key `arm.learning_rate`", id="per-step-key"),
])
def test_stream_arm_section_unknown_keys(arm, fragment):
    with pytest.raises(ArmConfigError, match=re.escape(fragment)):
        parse_config({**STREAM, "arm": arm})


OUT, IN = 6, 8
NAME = "model.layers.0.mlp.down_proj.weight"

# (kernel parameters, expected message fragment): the per-step rate, then the shared table
KERNEL_ERRORS = [
    pytest.param({"learning_rate": 0.0}, "`learning_rate`: Input should be greater than 0", id="lr-0"),
    pytest.param({"learning_rate": -0.5}, "`learning_rate`: Input should be greater than 0",
                 id="lr-negative"),
    pytest.param({"learning_rate": float("inf")}, "`learning_rate`: Input should be a finite",
                 id="lr-inf"),
] + [pytest.param(p.values[0], f"`{p.values[1]}`: {p.values[2]}", id=p.id) for p in INVALID]


@pytest.mark.parametrize(("params", "fragment"), KERNEL_ERRORS)
def test_kernel_parameter_errors(params, fragment):
    mergekit_arm.register()
    a, b = torch.zeros(OUT, IN), torch.ones(OUT, IN)
    with pytest.raises(ArmConfigError, match=re.escape(fragment)):
        merge_tensors([a, b], "arm", ids=["a", "b"], base_index=1, name=NAME,
                      parameters={"learning_rate": 0.5, "origin": {"a": True, "b": False},
                                  "missing_statistics": "plain", **params})
