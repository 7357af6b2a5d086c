"""Issue 24's rough edges: --version on every command, a light ``arm-calibrate --help``,
ARMCallback's line per save, no MergeKit ``torch_dtype`` deprecation in our merges, no
loading bars, the README's Python API snippets run, the leaderboard header and the
stream's patience line."""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from click.testing import CliRunner

from mergekit_arm import __version__

COMMANDS = ["calibrate", "stream", "choose", "verify", "demo"]


@pytest.mark.parametrize("script", COMMANDS)
def test_every_command_has_version(script):
    from importlib import import_module

    main = import_module(f"mergekit_arm.scripts.{script}").main
    result = CliRunner().invoke(main, ["--version"])
    assert result.exit_code == 0, result.output
    assert result.output.strip().endswith(f"(mergekit-arm) {__version__}")


@pytest.mark.parametrize("script", COMMANDS)
def test_help_imports_neither_torch_nor_transformers(script):
    """``COMMAND --help`` builds the command without torch (arm-calibrate took 2-4 s)."""
    code = (f"import sys, mergekit_arm.scripts.{script}; "
            "print(sorted(m for m in ('torch', 'transformers', 'mergekit.merge') "
            "if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True)
    assert done.stdout.strip() == "[]", done.stdout + done.stderr


def test_callback_prints_one_line_per_save_unless_logging_shows_it(capsys):
    """ARMCallback's line per merged save reaches the user without any logging set up
    (printed, as the Trainer prints its logs), and only once when a console handler shows
    the INFO record."""
    import logging

    from mergekit_arm.integrations.transformers import announce, console_shows, logger

    assert not console_shows(logger)  # nothing configured: WARNING and above only
    announce("ARM stream step %d (%s) took %.2f s", 3, "a -> b", 1.5)
    assert capsys.readouterr().out == "ARM stream step 3 (a -> b) took 1.50 s\n"

    handler = logging.StreamHandler()
    owner = logging.getLogger("mergekit_arm")
    level = owner.level
    owner.addHandler(handler)
    owner.setLevel(logging.INFO)
    try:
        assert console_shows(logger)
        announce("step %d", 4)
        captured = capsys.readouterr()
        assert captured.out == "" and "step 4" in captured.err  # the handler's line only
    finally:
        owner.removeHandler(handler)
        owner.setLevel(level)
    file_only = logging.FileHandler(Path(tempfile.mkdtemp()) / "log.txt")
    owner.addHandler(file_only)
    owner.setLevel(logging.INFO)
    owner.propagate = False  # (pytest's own capture handlers sit on the root logger)
    try:
        assert not console_shows(logger)  # a log file is no console: still printed
    finally:
        owner.propagate = True
        owner.removeHandler(file_only)
        file_only.close()
        owner.setLevel(level)


@pytest.fixture(scope="module")
def calibrated(tmp_path_factory, tiny_llama, tiny_llama_sft, calibration_jsonl):
    """``arm-calibrate -q`` of the tiny base and its checkpoint-10: (folder, outputs)."""
    from mergekit_arm.scripts.calibrate import main

    root = tmp_path_factory.mktemp("rough")
    outputs = []
    for name, model in (("base", tiny_llama), ("sft", tiny_llama_sft[10])):
        result = CliRunner().invoke(main, [str(model), str(root / f"{name}.safetensors"), "-q",
                                           "--data", str(calibration_jsonl), "--samples", "8",
                                           "--max-length", "32", "--rank", "8"])
        assert result.exit_code == 0, result.output
        outputs.append(result.output)
    return root, outputs


def test_calibrate_shows_no_weight_loading_bars(calibrated):
    for output in calibrated[1]:
        assert "Loading weights" not in output and "it/s" not in output, output
        assert output.startswith("wrote ")


def test_arm_merge_does_not_print_mergekits_torch_dtype_deprecation(
        calibrated, tiny_llama, tiny_llama_sft):
    root, _ = calibrated
    config = root / "arm.yml"
    config.write_text(
        f"merge_method: arm\nbase_model: {tiny_llama_sft[10]}\nmodels:\n"
        f"  - model: {tiny_llama}\n    parameters:\n      origin: true\n"
        f"      activations: {root / 'base.safetensors'}\n"
        f"parameters:\n  learning_rate: 0.5\n  activations: {root / 'sft.safetensors'}\n"
        "  rank: 4\ndtype: float32\nout_dtype: float32\n")
    done = subprocess.run([str(Path(sys.executable).parent / "mergekit-yaml"), str(config),
                           str(root / "merged"), "--quiet"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert (root / "merged" / "config.json").is_file()
    assert "torch_dtype" not in done.stdout + done.stderr


def test_dtype_filter_drops_only_mergekits_warning():
    """The same deprecation from anyone else's code still reaches the user."""
    import logging

    from mergekit_arm.quiet import TORCH_DTYPE_DEPRECATED, MergeKitDtypeFilter

    record = logging.LogRecord("transformers.configuration_utils", logging.WARNING, __file__,
                               1, f"{TORCH_DTYPE_DEPRECATED}! Use `dtype` instead!", None, None)
    assert MergeKitDtypeFilter().filter(record)  # called from this test: kept
    other = logging.LogRecord("transformers.configuration_utils", logging.WARNING, __file__,
                              1, "something else", None, None)
    assert MergeKitDtypeFilter().filter(other)


REPO = Path(__file__).resolve().parent.parent


def python_api_blocks() -> list[str]:
    """The ```python blocks of the README's "Python API" section."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = text.split("\n## Python API\n", 1)[1].split("\n## ", 1)[0]
    return [block.split("\n```", 1)[0] for block in section.split("```python\n")[1:]]


@pytest.fixture(scope="module")
def demo_folder(tmp_path_factory, tiny_llama, tiny_llama_sft, validation_jsonl):
    """A quick-start-like ``arm-demo`` of the tiny fixtures (models linked, two statistics
    files), beside a link to the repository's yaml_examples."""
    from mergekit_arm.calibration import CalibrationOptions, calibrate

    root = tmp_path_factory.mktemp("readme")
    models = root / "arm-demo" / "models"
    models.mkdir(parents=True)
    links = {"base": tiny_llama, "sft-step-10": tiny_llama_sft[5],
             "sft-step-20": tiny_llama_sft[5], "sft-step-40": tiny_llama_sft[10]}
    for name, target in links.items():
        (models / name).symlink_to(target, target_is_directory=True)
    (root / "yaml_examples").symlink_to(REPO / "yaml_examples", target_is_directory=True)
    (root / "arm-demo" / "heldout-math.jsonl").symlink_to(validation_jsonl)
    options = CalibrationOptions(samples=16, max_length=64, rank=32, device="cpu")
    for name in ("base", "sft-step-20"):
        calibrate(str(models / name), root / "arm-demo" / "stats" / f"{name}.safetensors",
                  options, progress=False)
    return root


def test_readme_python_api_runs_as_written(demo_folder, monkeypatch):
    """The calibrate/load_statistics block and the stream_step block run as written (from
    a folder laid out as after the quick start); the run_stream/run_choose block compiles
    and names configs that exist (the quick start's models make it a minutes-long run)."""
    blocks = python_api_blocks()
    assert len(blocks) == 3, blocks
    calibration, streams, one_step = blocks
    monkeypatch.chdir(demo_folder)
    namespace: dict = {}
    exec(compile(calibration, "README.md (Python API, block 1)", "exec"), namespace)
    assert (demo_folder / "arm-demo" / "stats" / "sft-step-40.safetensors").is_file()
    compile(streams, "README.md (Python API, block 2)", "exec")
    for config in ("yaml_examples/stream-fixed-set.yml", "yaml_examples/choose.yml"):
        assert f'"{config}"' in streams and (REPO / config).is_file()
    assert '"out' not in streams  # nothing written into the repository
    exec(compile(one_step, "README.md (Python API, block 3)", "exec"), namespace)
    step = namespace["step"]
    assert step.chosen is not None and step.chosen.learning_rate == 0.5
    assert set(step.chosen.weights) == set(namespace["current"])


def test_stream_step_takes_paths_or_loaded_statistics_and_refuses_others(demo_folder):
    from mergekit_arm.errors import ArmConfigError
    from mergekit_arm.statistics import load_statistics
    from mergekit_arm.stream.step import statistics_file

    path = demo_folder / "arm-demo" / "stats" / "base.safetensors"
    assert statistics_file(path, "x") == str(path)
    assert Path(statistics_file(load_statistics(path), "x")).resolve() == path.resolve()
    assert statistics_file(None, "x") is None
    with pytest.raises(ArmConfigError, match="Leg.source_statistics must be a statistics file: "
                                             "its path .* or the object load_statistics"):
        statistics_file({"basis": 1}, "Leg.source_statistics")


def test_leaderboard_header_says_max_length_is_a_cap():
    from mergekit_arm.choose.config import parse_choose_config
    from mergekit_arm.choose.report import _validation_line

    config = parse_choose_config({"validation": {"data": "v.jsonl", "samples": 4},
                                  "candidates": [{"name": "a", "model": "m"}]})
    line = _validation_line(config)
    assert f"at most {config.max_length} tokens each (longer texts are cut)" in line


STOPS = [
    # (stop_reason, status, what the last line ends with)
    ("no lower held-out loss in the 2 step(s) after step 1: stopped early (patience)",
     "finished", "(held-out loss 4.0000 -> 3.5000); no lower held-out loss in the 2 step(s) "
                 "after step 1: stopped early (patience)"),
    (None, "finished", "(held-out loss 4.0000 -> 3.5000)"),
    ("step 3 produced no finite result", "stopped", "(held-out loss 4.0000 -> 3.5000)"),
]


@pytest.mark.parametrize("reason,status,ending", STOPS)
def test_stream_last_line_says_why_it_ended(reason, status, ending):
    from mergekit_arm.scripts.stream import summary_line
    from mergekit_arm.stream.result import StreamResult

    records = [{"step": 1, "accepted": True, "val_loss": 3.5},
               {"step": 2, "accepted": True, "val_loss": 3.6},
               {"step": 3, "accepted": status == "finished", "val_loss": 3.7}]
    result = StreamResult(Path("out"), Path("out/model"), records, status, reason, 4.0, 1)
    line = summary_line(result)
    assert line.startswith(f"{status} after ") and " is step 1 " in line
    assert line.endswith(ending), line


def test_calibrate_api_shows_no_weight_loading_bar(tiny_llama, calibration_jsonl, tmp_path, capfd):
    from mergekit_arm.calibration import CalibrationOptions, calibrate

    options = CalibrationOptions(data=str(calibration_jsonl), samples=4, max_length=16, rank=4,
                                 device="cpu")
    calibrate(str(tiny_llama), tmp_path / "s.safetensors", options, progress=False)
    captured = capfd.readouterr()
    assert "Loading weights" not in captured.err + captured.out
