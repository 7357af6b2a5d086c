"""One typed definition of the calibration options, shared by the API, the stream config and
``arm-calibrate``; the calibration package's structure (no cycles, no private names across
modules, small modules)."""

from __future__ import annotations

import ast
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from mergekit_arm.calibration import CalibrationOptions, CalibrationSettings
from mergekit_arm.calibration.options import add_calibration_options
from mergekit_arm.scripts.calibrate import main as calibrate_cli
from mergekit_arm.stream.config import StreamConfig, parse_config

PACKAGE = Path(__file__).resolve().parent.parent / "mergekit_arm" / "calibration"


def _options_by_name(command: click.Command) -> dict[str, click.Option]:
    return {p.name: p for p in command.params if isinstance(p, click.Option)}


def test_every_field_is_a_cli_option_with_its_default_and_help():
    options = _options_by_name(calibrate_cli)
    for name, info in CalibrationOptions.model_fields.items():
        assert name in options, f"CalibrationOptions.{name} has no arm-calibrate option"
        option = options[name]
        assert option.opts == [f"--{name.replace('_', '-')}"]
        assert option.default == info.default, name
        assert option.help == info.description and info.description, name


def test_cli_values_arrive_as_one_calibration_options():
    seen = []

    @click.command()
    @add_calibration_options
    def probe(calibration_options):
        seen.append(calibration_options)

    result = CliRunner().invoke(probe, ["--samples", "7", "--mode", "layer-sequential",
                                        "--device", "cuda:1", "--trust-remote-code"])
    assert result.exit_code == 0, result.output
    assert seen == [CalibrationOptions(samples=7, mode="layer-sequential", device="cuda:1",
                                       trust_remote_code=True)]
    seen.clear()
    assert CliRunner().invoke(probe, []).exit_code == 0
    assert seen == [CalibrationOptions()]


@pytest.mark.parametrize(("args", "message"), [
    (["--device", "tpu"], "--device: unknown device 'tpu'"),
    (["--samples", "0"], "--samples"),
    (["--mode", "sideways"], "--mode"),
    (["--dtype", "int8"], "--dtype"),
])
def test_cli_rejects_bad_option_values(tmp_path, args, message):
    result = CliRunner().invoke(calibrate_cli, [str(tmp_path), str(tmp_path / "o.st"), *args])
    assert result.exit_code == 2
    assert message in result.output
    assert not (tmp_path / "o.st").exists()


def test_stream_calibration_section_is_the_shared_settings():
    field = StreamConfig.model_fields["calibration"]
    assert field.annotation is CalibrationSettings
    assert issubclass(CalibrationOptions, CalibrationSettings)
    base = {"origin": "a", "checkpoints": ["b"], "steps": 1, "schedule": {"learning_rate": 1.0}}
    config = parse_config({**base, "calibration": {"samples": 4, "mode": "layer-sequential"}})
    assert config.calibration == CalibrationSettings(samples=4, mode="layer-sequential")
    # Same keys and defaults as the API's options (minus the per-model ones).
    settings = CalibrationSettings().model_dump()
    assert CalibrationOptions().model_dump(include=set(settings)) == settings


@pytest.mark.parametrize(("section", "message"), [
    ({"device": "cpu"}, "unknown key `calibration.device` (allowed here: batch_size, data, "
                        "max_length, mode, rank, samples, text_mode)"),
    ({"samples": 0}, "`calibration.samples`"),
    ({"mode": "sideways"}, "`calibration.mode`"),
])
def test_stream_calibration_section_errors(section, message):
    from mergekit_arm.errors import ArmConfigError

    base = {"origin": "a", "checkpoints": ["b"], "steps": 1, "schedule": {"learning_rate": 1.0}}
    with pytest.raises(ArmConfigError) as error:
        parse_config({**base, "calibration": section})
    assert message in str(error.value)


# -- package structure -------------------------------------------------------------------


def _imports(path: Path) -> list[tuple[str, list[str]]]:
    """``(module, names)`` of every ``from mergekit_arm... import names`` in a file."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("mergekit_arm"):
            found.append((node.module, [alias.name for alias in node.names]))
    return found


def test_calibration_package_structure():
    modules = sorted(PACKAGE.glob("*.py"))
    assert {p.stem for p in modules} >= {"api", "data", "eigen", "full_pass", "layer_pass",
                                         "layout", "lazy", "mode", "moments", "options"}
    graph: dict[str, set[str]] = {}
    for path in modules:
        assert len(path.read_text().splitlines()) <= 400, f"{path.name} is over 400 lines"
        deps = set()
        for module, names in _imports(path):
            private = [n for n in names if n.startswith("_") and n != "__version__"]
            assert not private, f"{path.name} imports private {private} from {module}"
            if module.startswith("mergekit_arm.calibration."):
                deps.add(module.rsplit(".", 1)[1])
        graph[path.stem] = deps

    def visit(node: str, stack: tuple[str, ...]) -> None:
        assert node not in stack, f"import cycle: {' -> '.join((*stack, node))}"
        for dep in graph.get(node, ()):
            visit(dep, (*stack, node))

    for name in graph:
        visit(name, ())
    # The old flat modules are gone.
    for old in ("calibrate.py", "layerwise.py", "data.py"):
        assert not (PACKAGE.parent / old).exists()
